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
#include "guard.h"
#include "admin.h"
#include "conf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "scenario.h"
#include "httpd.h"
#include "leader.h"
#include "ops.h"
#include "server.h"
#include "util.h"
#include "web.h"

#include <getopt.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <unistd.h>
#include <pwd.h>
#include <sys/resource.h>
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
             "  import-sites FILE       load or update sites from a scenario file (live)\n"
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

/* Exit status of a controller that led and lost its leadership: systemd
 * restarts it (Restart=on-failure) and it comes back as a standby. */
#define NIRCD_EXIT_LOST 75

/* The sites table changed (any writer, store/leader.c): on the loop thread. */
static void nircd_on_sites(void *arg, sites_t *snapshot) {
  server_sites_sync(arg, snapshot);
}

/* Leadership changes, on the loop thread. */
static void nircd_on_leader(void *arg, const leader_view_t *v, admin_rules_t *rules) {
  server_t *srv = arg;
  const nircd_conf_t *conf = srv->conf;
  switch (v->state) {
  case LEADER_STANDBY: {
    /* The view changes on every renewal the standby sees (renewals):
     * systemd hears only of a new leader or address. */
    bool named = strcmp(srv->leader_hint, v->hint) != 0 ||
                 strcmp(srv->leader_node, v->holder) != 0 || srv->leader_epoch != v->holder_epoch ||
                 strcmp(srv->leader_why, v->why) != 0 || !srv->standby_notified;
    nirc_strlcpy(srv->leader_hint, v->hint, sizeof srv->leader_hint);
    nirc_strlcpy(srv->leader_why, v->why, sizeof srv->leader_why);
    srv->leader_blocked = (int)v->blocked;
    nirc_strlcpy(srv->leader_node, v->holder, sizeof srv->leader_node);
    srv->leader_epoch = v->holder_epoch;
    srv->leader_suspect = v->suspect;
    srv->leader_renewals = v->renewals;
    if (named && v->why[0])
      sd_notifyf(0, "READY=1\nSTATUS=standby: %s", v->why);
    else if (named)
      sd_notifyf(0, "READY=1\nSTATUS=standby: %s leads%s%s",
                 v->holder[0] ? v->holder : "nobody yet", v->hint[0] ? " at " : "", v->hint);
    srv->standby_notified = 1;
    server_election_changed(srv); /* held agents: welcomed, kept, or sent to a live leader */
    return;
  }
  case LEADER_LEADING:
    if (!rules) {
      log_info(LOG_MAIN, conf->node, "%s",
               v->db_down        ? "database down: routing on memory"
               : v->lock_pending ? "database back, the leader lock not yet: its old session "
                                   "still holds it"
                                 : "database back: leadership confirmed");
      return;
    }
    srv->epoch = v->epoch;
    int lrc = engine_load_rules(srv->engine, srv->epoch, rules->cutovers, rules->n_cutovers,
                                rules->schedules, rules->n_schedules, rules->overflows,
                                rules->n_overflows, rules->max_id);
    engine_load_exclusions(srv->engine, rules->exclusions, rules->n_exclusions);
    engine_load_overflow_state(srv->engine, rules->overflow_states, rules->n_overflows);
    engine_load_holds(srv->engine, rules->holds, rules->n_holds);
    engine_load_return_holds(srv->engine, rules->return_holds, rules->n_return_holds);
    engine_load_hub_history(srv->engine, rules->hubs, rules->n_hubs);
    if (engine_load_alarms(srv->engine, rules->alarms, rules->n_alarms) != 0) lrc = NIRC_ENOMEM;
    /* Without them (memory) a return home no controller saw is not
     * recorded late; routing is the same. */
    if (engine_load_last_directives(srv->engine, rules->last_dirs, rules->n_last_dirs) != 0)
      log_error(LOG_MAIN, conf->node,
                "out of memory loading the last directives: returns home by revert_at while no "
                "controller ran are not recorded");
    /* The load the old leader measured, so capacity is judged on it and
     * not on the forecast alone while reports come in. */
    for (size_t k = 0; k < rules->n_load; k++) {
      site_t *s = sites_find(&srv->sites, rules->load[k].slug);
      if (s) sites_seed_load(s, &rules->load[k], clock_now_ms(&srv->clock));
    }
    /* The capacity as stored now, with the changes the old leader made. */
    for (size_t k = 0; k < rules->n_capacity; k++) {
      site_t *s = sites_find(&srv->sites, rules->capacity[k].slug);
      if (s) s->cap = rules->capacity[k].cap;
    }
    log_info(LOG_MAIN, conf->node,
             "rules: %zu active cutovers, %zu schedules, %zu overflow rules, %zu sites excluded "
             "after a failed move",
             rules->n_cutovers, rules->n_schedules, rules->n_overflows, rules->n_exclusions);
    admin_rules_free(rules);
    if (lrc != 0) {
      log_error(LOG_MAIN, conf->node, "out of memory loading rules: stopping");
      srv->lost = 1;
      server_stop(srv);
      return;
    }
    srv->leader_hint[0] = '\0';
    nirc_strlcpy(srv->leader_node, conf->node, sizeof srv->leader_node);
    srv->leader_epoch = srv->epoch;
    /* Agents of a leader that froze (rather than died) notice only when
     * their link idles out; give them that, plus stale_after, to come back
     * before a site that has not counts as gone. */
    engine_start_leading(srv->engine, (uint32_t)(conf->idle_timeout_ms + conf->stale_after_ms));
    srv->leading = 1;
    {
      char why[64];
      snprintf(why, sizeof why, "epoch %llu", (unsigned long long)srv->epoch);
      engine_note(srv->engine, conf->node, "lead", conf->node, why);
    }
    log_info(LOG_MAIN, conf->node,
             "controller %s leads: epoch %llu, %zu sites, nircd " NIRC_VERSION, conf->node,
             (unsigned long long)srv->epoch, srv->sites.n);
    sd_notifyf(0, "READY=1\nSTATUS=leader, epoch %llu", (unsigned long long)srv->epoch);
    server_election_changed(srv); /* agents held while it ran are welcomed */
    return;
  case LEADER_LOST:
    /* Nothing more may be issued from here: stop serving at once. */
    srv->leading = 0;
    srv->lost = 1;
    log_error(LOG_MAIN, conf->node, "stepping down: %s", v->why);
    engine_note(srv->engine, conf->node, "step-down", conf->node, v->why);
    server_stop(srv);
    return;
  default: return;
  }
}

/* One descriptor per agent link: raise the soft limit to the hard one
 * (systemd's default soft limit is 1,024), and say so when even that is too
 * small, because libuv closes connections it cannot accept without a word. */
static void nircd_raise_nofile(const nircd_conf_t *conf, size_t nsites) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    (void)getrlimit(RLIMIT_NOFILE, &rl);
  }
  rlim_t need = (rlim_t)nsites + 64 + conf->max_unauthenticated;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
    log_warn(LOG_MAIN, conf->node,
             "open-file limit %llu is below the %llu that %zu sites need: agents beyond it will "
             "be refused; raise LimitNOFILE= in the unit (or ulimit -n)",
             (unsigned long long)rl.rlim_cur, (unsigned long long)need, nsites);
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
  if (sites_live(&srv->sites) == 0)
    log_warn(LOG_MAIN, conf->node,
             "no sites configured: every agent is refused until some are: run `nircd -c FILE "
             "import-sites SCENARIO.json` or `nircctl site add` (no restart needed)");
  nircd_raise_nofile(conf, srv->sites.n);
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
  srv->on_operator = ops_dispatch;
  srv->on_publish = web_publish;
  if (server_start(srv, loop, conf, err, sizeof err) != 0) {
    fprintf(stderr, "nircd: %s\n", err);
    goto out;
  }
  /* Leading or standing by is decided by the election; READY follows its
   * first answer (nircd_on_leader). */
  leader_opts_t lo = {conf->conninfo, conf->node, conf->advertise, conf->lease_timeout_ms,
                      nircd_on_sites};
  if (leader_start(loop, &lo, nircd_on_leader, srv, &srv->leader) != 0) {
    fprintf(stderr, "nircd: cannot start the leader election: out of resources\n");
    goto out;
  }
  log_info(LOG_MAIN, conf->node, "controller %s up on %s: electing a leader (lease %llu ms)",
           conf->node, conf->advertise, (unsigned long long)conf->lease_timeout_ms);
  uv_run(loop, UV_RUN_DEFAULT);
  rc = srv->lost ? NIRCD_EXIT_LOST : 0;
out:
  /* A failed start may have left handles (listeners, the database client)
   * on the loop: stop them in order and let their close callbacks run. */
  if (started && rc != 0 && !srv->lost) {
    server_stop(srv);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  httpd_stop(srv->http);
  engine_free(srv->engine);
  guard_free(srv->guard);
  if (srv->forecast_loaded) scenario_free(&srv->forecast);
  SSL_CTX_free(srv->tls);
  tls_revocation_free(srv->revocation);
  sites_free(&srv->sites);
  free(srv->evbudget);
  free(srv->fc_wape);
  pbxlog_free(&srv->pbx_log);
  free(srv);
  uv_loop_close(loop);
  if (rc == 0) log_info(LOG_MAIN, conf->node, "stopped");
  if (rc == NIRCD_EXIT_LOST)
    log_info(LOG_MAIN, conf->node, "stopped after losing the leadership (exit %d)", rc);
  return rc;
}

int main(int argc, char **argv) {
  /* A plan of 20,000 sites allocates and frees tens of MB each time. With
   * glibc's defaults the freed top of the heap goes back to the kernel and
   * every plan faults it in again (page faults were a tenth of an idle
   * controller's CPU): keep up to 512 MB of freed memory in the process. */
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
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
    /* -t also proves the certificates and revocation lists load, as
     * nginx -t opens its files. */
    SSL_CTX *ctx;
    tls_revocation_t *rev;
    if (server_tls_load(conf, &ctx, &rev, err, sizeof err) != 0) {
      fprintf(stderr, "nircd: %s: %s\n", conf_path, err);
      rc = 1;
    } else {
      SSL_CTX_free(ctx);
      tls_revocation_free(rev);
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
      admin_import_t st;
      char actor[96];
      const struct passwd *pw = getpwuid(getuid());
      snprintf(actor, sizeof actor, "import-sites:%s", pw ? pw->pw_name : "?");
      /* The audit row's business time, from the [clock] every controller
       * reads: unknown (none written) when that clock cannot be read here. */
      nirc_clock_t bc;
      clock_setup(&bc, conf->clock.speed, conf->clock.start, conf->clock.anchor);
      int64_t business = clock_now_ms(&bc);
      bool known = clock_reproducible(conf->clock.speed, conf->clock.start, conf->clock.anchor);
      if (db_admin_check_schema(conf->conninfo, err, sizeof err) != 0 ||
          admin_import_sites(conf->conninfo, &sc, actor, argv[optind + 1], known ? &business : NULL,
                             &st, err, sizeof err) != 0) {
        fprintf(stderr, "nircd: import-sites: %s\n", err);
        rc = 1;
      } else {
        printf("imported %zu sites from %s: %zu added, %zu updated\n", sc.count, argv[optind + 1],
               st.added, st.updated);
        if (st.skipped_removed)
          printf("kept removed: %zu site(s) an operator removed: %s (nircctl site add SLUG ... "
                 "brings one back)\n",
                 st.skipped_removed, st.removed);
        if (st.missing)
          printf("not in the file, kept: %zu site(s): %s (nircctl site remove SLUG removes one)\n",
                 st.missing, st.missing_list);
        printf("running controllers pick the change up now (no restart needed)\n");
        if (!known)
          printf("note: [clock] has no anchor: this import's audit entry has no business time "
                 "(nircctl history places it by its real time)\n");
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
