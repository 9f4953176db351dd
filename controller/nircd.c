/* nircd: the NIRC controller.
 *
 *   nircd [-c FILE] [run]          run the controller (default)
 *   nircd [-c FILE] -t             check the configuration and exit
 *   nircd [-c FILE] migrate        bring the database schema up to date
 *   nircd [-c FILE] import-sites SCENARIO.json
 *
 * Start-up fails fast with a message that names the fix (bad
 * configuration, wrong schema version, unreadable certificates); once
 * running, nothing a peer or the database does stops the process. */
#include "admin.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "scenario.h"
#include "httpd.h"
#include "server.h"

#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#define DEFAULT_CONF "/etc/nirc/nircd.conf"

static void usage(FILE *f) {
  fprintf(f, "usage: nircd [-c FILE] [-t] [COMMAND]\n"
             "\n"
             "Commands:\n"
             "  run                     run the controller (default)\n"
             "  migrate                 apply database migrations from schema_dir\n"
             "  import-sites FILE       load sites from a scenario file (scenario/provinces.json)\n"
             "\n"
             "Options:\n"
             "  -c, --config FILE       configuration file (default " DEFAULT_CONF ")\n"
             "  -t, --test              check the configuration and exit\n"
             "  -V, --version           print the version\n"
             "  -h, --help              this help\n"
             "\n"
             "Examples:\n"
             "  nircd -c /etc/nirc/nircd.conf -t\n"
             "  nircd -c /etc/nirc/nircd.conf migrate\n"
             "  nircd -c /etc/nirc/nircd.conf import-sites /usr/share/nirc/provinces.json\n");
}

static int run(const nircd_conf_t *conf) {
  char err[512];
  int rc = 1, started = 0;
  server_t *srv = calloc(1, sizeof *srv);
  if (!srv) return 1;
  uv_loop_t *loop = uv_default_loop();
  sites_init(&srv->sites, (uint32_t)conf->stale_after_ms);
  if (db_admin_check_schema(conf->conninfo, err, sizeof err) != 0 ||
      admin_load_sites(conf->conninfo, &srv->sites, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    goto out;
  }
  if (srv->sites.n == 0)
    log_warn(LOG_MAIN, conf->node,
             "no sites configured: every agent will be refused; run `nircd -c FILE import-sites "
             "SCENARIO.json`");
  if (admin_new_epoch(conf->conninfo, conf->node, &srv->epoch, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    goto out;
  }
  clock_setup(&srv->clock, conf->clock.speed, conf->clock.start, conf->clock.anchor);
  if (conf->forecast[0]) {
    if (scenario_load(conf->forecast, &srv->forecast, err, sizeof err) != 0) {
      fprintf(stderr, "nircd: [routing] forecast: %s\n", err);
      goto out;
    }
    srv->forecast_loaded = 1;
  }
  /* A peer that vanishes mid-write must not kill us with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  started = 1;
  if (server_start(srv, loop, conf, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    goto out;
  }
  admin_rules_t rules;
  if (admin_load_rules(conf->conninfo, &rules, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    goto out;
  }
  int lrc = engine_load_rules(srv->engine, rules.cutovers, rules.n_cutovers, rules.schedules,
                              rules.n_schedules, rules.overflows, rules.n_overflows, rules.max_id);
  log_info(LOG_MAIN, conf->node, "rules: %zu active cutovers, %zu schedules, %zu overflow rules",
           rules.n_cutovers, rules.n_schedules, rules.n_overflows);
  admin_rules_free(&rules);
  if (lrc != 0) {
    fprintf(stderr, "nircd: out of memory loading rules\n");
    goto out;
  }
  log_info(LOG_MAIN, conf->node, "controller %s up: epoch %llu, %zu sites, nircd " NIRC_VERSION,
           conf->node, (unsigned long long)srv->epoch, srv->sites.n);
  sd_notify(0, "READY=1");
  uv_run(loop, UV_RUN_DEFAULT);
  rc = 0;
out:
  /* A failed start may have left handles (listeners, the database client)
   * on the loop: stop them in order and let their close callbacks run. */
  if (started && rc != 0) {
    server_stop(srv);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  httpd_stop(srv->http);
  engine_free(srv->engine);
  if (srv->forecast_loaded) scenario_free(&srv->forecast);
  SSL_CTX_free(srv->tls);
  sites_free(&srv->sites);
  free(srv);
  uv_loop_close(loop);
  if (rc == 0) log_info(LOG_MAIN, conf->node, "stopped");
  return rc;
}

int main(int argc, char **argv) {
  const char *conf_path = DEFAULT_CONF;
  int test_only = 0;
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"test", no_argument, NULL, 't'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int ch;
  while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
    switch (ch) {
    case 'c': conf_path = optarg; break;
    case 't': test_only = 1; break;
    case 'V': printf("nircd " NIRC_VERSION "\n"); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  log_set_program("nircd");
  db_admin_set_conf_path(conf_path);
  const char *cmd = optind < argc ? argv[optind] : "run";

  nircd_conf_t *conf = calloc(1, sizeof *conf);
  char err[1024];
  if (!conf) return 1;
  if (conf_nircd_load(conf_path, conf, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    free(conf);
    return 1;
  }
  if (log_configure(conf->log.level, conf->log.groups, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s: [log] %s\n", conf_path, err);
    free(conf);
    return 1;
  }
  int rc = 0;
  if (test_only) {
    /* -t also proves the certificates load, as nginx -t opens its files. */
    SSL_CTX *ctx;
    if (tls_ctx_new(TLS_SERVER, conf->ca, conf->cert, conf->key, &ctx, err, sizeof err) != 0) {
      fprintf(stderr, "nircd: %s: %s\n", conf_path, err);
      rc = 1;
    } else {
      SSL_CTX_free(ctx);
      printf("nircd: configuration %s is valid\n", conf_path);
    }
  } else if (strcmp(cmd, "run") == 0 && optind + 1 >= argc) {
    rc = run(conf);
  } else if (strcmp(cmd, "migrate") == 0 && optind + 1 == argc) {
    if (db_admin_migrate(conf->conninfo, conf->schema_dir, err, sizeof err) != 0) {
      fprintf(stderr, "nircd: migrate: %s\n", err);
      rc = 1;
    }
  } else if (strcmp(cmd, "import-sites") == 0 && optind + 2 == argc) {
    scenario_t sc;
    if (scenario_load(argv[optind + 1], &sc, err, sizeof err) != 0) {
      fprintf(stderr, "nircd: %s\n", err);
      rc = 1;
    } else {
      if (db_admin_check_schema(conf->conninfo, err, sizeof err) != 0 ||
          admin_import_sites(conf->conninfo, &sc, err, sizeof err) != 0) {
        fprintf(stderr, "nircd: import-sites: %s\n", err);
        rc = 1;
      } else {
        printf("imported %zu sites from %s\n", sc.count, argv[optind + 1]);
      }
      scenario_free(&sc);
    }
  } else {
    fprintf(stderr, "nircd: unknown command or wrong arguments: '%s'\n", cmd);
    usage(stderr);
    rc = 2;
  }
  free(conf);
  return rc;
}
