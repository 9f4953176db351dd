/* nircctl: the operators' command-line tool. It talks only to the
 * controller, over the same mutual-TLS link type as the agents, with an
 * operator certificate: every change is attributed to that certificate.
 *
 * Exit codes (SPEC section 9): 0 done, 1 refused, 2 usage, 3 controller
 * unreachable, 4 partially applied. */
#include "config.h"
#include "err.h"
#include "link.h"
#include "log.h"
#include "report.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_DONE = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_PARTIAL = 4 };

typedef struct {
  config_list_t controllers;
  char ca[CONFIG_STR_MAX], cert[CONFIG_STR_MAX], key[CONFIG_STR_MAX];
  uint64_t timeout_ms;
} ctl_conf_t;

#define O(f) offsetof(ctl_conf_t, f)
#define S(f) sizeof(((ctl_conf_t *)0)->f)
static const config_opt_t ctl_opts[] = {
    {"ctl", "controllers", CFG_LIST, O(controllers), 0, 0, 0, "127.0.0.1:7443", 0,
     "controller addresses, tried in order"},
    {"ctl", "timeout", CFG_DURATION, O(timeout_ms), 0, 100, 600000, "5s", 0,
     "how long to wait for the controller"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, "", 0, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, "", 0, "your operator certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, "", 0, "your operator private key"},
    {0},
};

typedef struct {
  uv_loop_t *loop;
  ctl_conf_t *conf;
  SSL_CTX *tls;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  unsigned naddrs, idx;
  link_t *link;
  uv_timer_t deadline;
  Nirc__OperatorRequest *req; /* borrowed */
  Nirc__OperatorReply *reply; /* owned once received: the unpacked envelope */
  Nirc__Envelope *reply_env;
  char errors[1024]; /* why each controller failed */
  int done;
  int exit_code;
} ctl_t;

static void ctl_try_next(ctl_t *c);

static void ctl_note(ctl_t *c, const char *addr, const char *why) {
  size_t used = strlen(c->errors);
  snprintf(c->errors + used, sizeof c->errors - used, "%s  %s: %s", used ? "\n" : "", addr, why);
}

static void ctl_on_open(link_t *l) {
  ctl_t *c = link_data(l);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
  env.operator_request = c->req;
  link_send(l, &env);
}

static void ctl_on_message(link_t *l, Nirc__Envelope *env) {
  ctl_t *c = link_data(l);
  if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REPLY &&
      env->operator_reply->request_id == c->req->request_id) {
    /* The link frees `env` when we return; keep our own copy by
     * re-encoding it (one small reply per nircctl run). */
    size_t n = nirc__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
      nirc__envelope__pack(env, buf);
      c->reply_env = nirc__envelope__unpack(NULL, n, buf);
      free(buf);
    }
    c->reply = c->reply_env ? c->reply_env->operator_reply : NULL;
    c->done = 1;
    link_close(l, 0, "done");
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
    ctl_note(c, link_peer_addr(l), env->error->message ? env->error->message : "error");
    c->done = 1;
    c->exit_code = EXIT_REFUSED;
    link_close(l, 0, "refused");
  }
}

static void ctl_on_close(link_t *l, int err, const char *why, int was_open) {
  ctl_t *c = link_data(l);
  c->link = NULL;
  if (c->done) {
    uv_close((uv_handle_t *)&c->deadline, NULL);
    return;
  }
  ctl_note(c, c->conf->controllers.item[c->idx], why && *why ? why : nirc_strerror(err));
  c->idx++;
  ctl_try_next(c);
}

static const link_cbs_t ctl_cbs = {ctl_on_open, ctl_on_message, ctl_on_close};

static void ctl_try_next(ctl_t *c) {
  if (c->idx >= c->naddrs) {
    c->exit_code = EXIT_UNREACHABLE;
    c->done = 1;
    uv_close((uv_handle_t *)&c->deadline, NULL);
    return;
  }
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)c->conf->timeout_ms;
  o.idle_timeout_ms = (uint32_t)c->conf->timeout_ms;
  o.expect_kind = PEER_CONTROLLER;
  link_connect(c->loop, (struct sockaddr *)&c->addrs[c->idx], c->tls, &o, &ctl_cbs, c, &c->link);
}

static void ctl_on_deadline(uv_timer_t *t) {
  ctl_t *c = t->data;
  if (c->link) link_close(c->link, NIRC_ETIMEOUT, "no answer in time");
}

/* Runs one request against the first controller that answers. Returns the
 * exit code; on success *reply points into c->reply_env. */
static int ctl_request(ctl_t *c, Nirc__OperatorRequest *req) {
  c->req = req;
  uv_timer_init(c->loop, &c->deadline);
  c->deadline.data = c;
  uv_timer_start(&c->deadline, ctl_on_deadline, c->conf->timeout_ms * (c->naddrs + 1), 0);
  ctl_try_next(c);
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (!c->reply && c->exit_code == 0) c->exit_code = EXIT_UNREACHABLE;
  return c->exit_code;
}

/* ---- output ---- */

static int use_colour;

static const char *link_word(Nirc__LinkState s) {
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "online";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "stale";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "offline";
  case NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN: return "never-seen";
  default: return "unknown";
  }
}

static const char *link_colour(Nirc__LinkState s) {
  if (!use_colour) return "";
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "\033[32m";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "\033[33m";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "\033[31m";
  default: return "\033[2m";
  }
}

static void fmt_route(const Nirc__SiteStatus *s, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < s->n_route; i++) {
    const Nirc__RouteShare *r = s->route[i];
    int n;
    if (s->n_route == 1 && r->permille == 1000)
      n = snprintf(buf + used, len - used, "%s", strcmp(r->site, s->slug) == 0 ? "home" : r->site);
    else
      n = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", r->site, r->permille);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
  }
}

static void print_status_table(const Nirc__StatusReply *st) {
  size_t online = 0, stale = 0, offline = 0;
  printf("%-12s %-14s %-10s %6s %6s %8s %12s %6s  %s\n", "SITE", "NAME", "LINK", "AGE", "QUEUE",
         "WAIT", "AGENTS in/rdy", "SL", "ROUTE");
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    const Nirc__LoadReport *r = s->last_report;
    char age[16] = "-", queue[16] = "-", wait[16] = "-", agents[24] = "-", sl[16] = "-";
    char route[160];
    if (s->report_age_ms >= 0) {
      if (s->report_age_ms < 100000)
        snprintf(age, sizeof age, "%.1fs", s->report_age_ms / 1000.0);
      else
        snprintf(age, sizeof age, "%llds", (long long)(s->report_age_ms / 1000));
    }
    if (r && r->pbx_unreadable) {
      snprintf(queue, sizeof queue, "PBX?");
      snprintf(wait, sizeof wait, "PBX?");
      snprintf(agents, sizeof agents, "PBX?");
    } else if (r) {
      snprintf(queue, sizeof queue, "%u", r->calls_in_queue);
      snprintf(wait, sizeof wait, "%.0fs", r->longest_wait_ms / 1000.0);
      snprintf(agents, sizeof agents, "%u/%u", r->agents_logged_in, r->agents_ready);
      if (r->calls_offered > 0)
        snprintf(sl, sizeof sl, "%.0f%%", 100.0 * r->answered_within_threshold / r->calls_offered);
    }
    fmt_route(s, route, sizeof route);
    printf("%-12s %-14.14s %s%-10s%s %6s %6s %8s %12s %6s  %s\n", s->slug, s->name_en,
           link_colour(s->link_state), link_word(s->link_state), use_colour ? "\033[0m" : "", age,
           queue, wait, agents, sl, route);
    if (s->link_state == NIRC__LINK_STATE__LINK_STATE_ONLINE)
      online++;
    else if (s->link_state == NIRC__LINK_STATE__LINK_STATE_STALE)
      stale++;
    else
      offline++;
  }
  printf("\n%zu sites: %zu online, %zu stale, %zu offline or never seen  (controller %s, epoch "
         "%llu)\n",
         st->n_sites, online, stale, offline, st->controller_node, (unsigned long long)st->epoch);
}

static void print_status_json(const Nirc__StatusReply *st) {
  json_t *sites = json_array();
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    json_t *route = json_array();
    for (size_t j = 0; j < s->n_route; j++)
      json_array_append_new(route, json_pack("{s:s, s:I}", "site", s->route[j]->site, "permille",
                                             (json_int_t)s->route[j]->permille));
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:s, s:s, s:o, s:o}", "slug",
                          s->slug, "name_en", s->name_en, "name_zh", s->name_zh, "is_hub",
                          s->is_hub, "link", link_word(s->link_state), "state_since_ms",
                          (json_int_t)s->state_since_ms, "report_age_ms",
                          (json_int_t)s->report_age_ms, "peer", s->peer_address, "active_rule",
                          s->active_rule, "route", route, "load", report_to_json(s->last_report));
    json_array_append_new(sites, o);
  }
  json_t *top = json_pack("{s:s, s:I, s:I, s:o}", "controller", st->controller_node, "epoch",
                          (json_int_t)st->epoch, "server_time_ms", (json_int_t)st->server_time_ms,
                          "sites", sites);
  json_dumpf(top, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
  putchar('\n');
  json_decref(top);
}

/* ---- command line ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: nircctl [OPTIONS] COMMAND [ARGS]\n"
          "\n"
          "Commands:\n"
          "  status [SITE]         every site: link, freshness, queue, wait, agents, SL, route\n"
          "  help                  this help\n"
          "\n"
          "Options:\n"
          "  --controller ADDR     controller address (repeatable; tried in order)\n"
          "  --config FILE         config file (default: $NIRCCTL_CONFIG, ~/.config/nirc/"
          "nircctl.conf,\n"
          "                        /etc/nirc/nircctl.conf)\n"
          "  --ca FILE --cert FILE --key FILE   TLS files (override the config)\n"
          "  --json                machine-readable output\n"
          "  --timeout DURATION    per controller (default 5s)\n"
          "\n"
          "Exit codes: 0 done, 1 refused, 2 usage, 3 controller unreachable, 4 partially applied\n"
          "\n"
          "Examples:\n"
          "  nircctl status\n"
          "  nircctl --json status hubei\n"
          "  nircctl --controller 10.0.0.1:7443 --controller 10.0.0.2:7443 status\n");
}

static const char *default_config(void) {
  const char *env = getenv("NIRCCTL_CONFIG");
  if (env && *env) return env;
  static char home[512];
  const char *h = getenv("HOME");
  if (h) {
    snprintf(home, sizeof home, "%s/.config/nirc/nircctl.conf", h);
    if (access(home, R_OK) == 0) return home;
  }
  if (access("/etc/nirc/nircctl.conf", R_OK) == 0) return "/etc/nirc/nircctl.conf";
  return NULL;
}

int main(int argc, char **argv) {
  log_set_program("nircctl");
  log_set_level(LOG_LVL_ERROR);
  signal(SIGPIPE, SIG_IGN);
  static const struct option longopts[] = {
      {"controller", required_argument, NULL, 'C'}, {"config", required_argument, NULL, 'f'},
      {"ca", required_argument, NULL, 'a'},         {"cert", required_argument, NULL, 'e'},
      {"key", required_argument, NULL, 'k'},        {"json", no_argument, NULL, 'j'},
      {"timeout", required_argument, NULL, 'T'},    {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
  };
  const char *config_path = NULL, *ca = NULL, *cert = NULL, *key = NULL, *timeout = NULL;
  const char *controllers[CONFIG_LIST_MAX];
  unsigned ncontrollers = 0;
  int json = 0, ch;
  /* '+': stop at the first non-option, so command arguments stay the
   * command's. */
  while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
    switch (ch) {
    case 'C':
      if (ncontrollers == CONFIG_LIST_MAX) {
        fprintf(stderr, "nircctl: at most %d --controller options\n", CONFIG_LIST_MAX);
        return EXIT_USAGE;
      }
      controllers[ncontrollers++] = optarg;
      break;
    case 'f': config_path = optarg; break;
    case 'a': ca = optarg; break;
    case 'e': cert = optarg; break;
    case 'k': key = optarg; break;
    case 'j': json = 1; break;
    case 'T': timeout = optarg; break;
    case 'h': usage(stdout); return EXIT_DONE;
    case 'V': printf("nircctl " NIRC_VERSION "\n"); return EXIT_DONE;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[optind];
  int nargs = argc - optind - 1;
  char **args = argv + optind + 1;
  if (strcmp(cmd, "help") == 0) {
    usage(stdout);
    return EXIT_DONE;
  }
  for (int i = 0; i < nargs; i++) {
    if (strcmp(args[i], "--help") == 0 || strcmp(args[i], "-h") == 0) {
      printf("usage: nircctl [OPTIONS] status [SITE]\n\n"
             "Shows every site (or one): link state, age of the last report, calls in queue,\n"
             "longest wait, agents logged in/ready, service level of the last interval and\n"
             "the current route.\n\n"
             "Examples:\n  nircctl status\n  nircctl --json status hubei\n");
      return EXIT_DONE;
    }
  }
  if (strcmp(cmd, "status") != 0) {
    fprintf(stderr, "nircctl: unknown command '%s' (try: nircctl help)\n", cmd);
    return EXIT_USAGE;
  }
  if (nargs > 1) {
    fprintf(stderr, "nircctl: status takes at most one site\n");
    return EXIT_USAGE;
  }
  if (nargs == 1 && !nirc_slug_valid(args[0])) {
    fprintf(stderr, "nircctl: '%s' is not a site slug (lowercase, e.g. hubei)\n", args[0]);
    return EXIT_USAGE;
  }

  ctl_conf_t conf;
  char err[1024];
  if (!config_path) config_path = default_config();
  if (config_path) {
    if (config_load(config_path, ctl_opts, &conf, err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: %s\n", err);
      return EXIT_USAGE;
    }
  } else {
    config_defaults(ctl_opts, &conf, err, sizeof err);
  }
  if (ncontrollers) {
    conf.controllers.count = 0;
    for (unsigned i = 0; i < ncontrollers; i++)
      nirc_strlcpy(conf.controllers.item[conf.controllers.count++], controllers[i],
                   sizeof conf.controllers.item[0]);
  }
  if (ca) nirc_strlcpy(conf.ca, ca, sizeof conf.ca);
  if (cert) nirc_strlcpy(conf.cert, cert, sizeof conf.cert);
  if (key) nirc_strlcpy(conf.key, key, sizeof conf.key);
  if (timeout && config_set(ctl_opts, &conf, "ctl", "timeout", timeout, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: --timeout: %s\n", err);
    return EXIT_USAGE;
  }
  if (!conf.ca[0] || !conf.cert[0] || !conf.key[0]) {
    fprintf(stderr, "nircctl: no operator certificate: give --ca, --cert and --key, or a config "
                    "file with [tls] ca/cert/key (see --config)\n");
    return EXIT_USAGE;
  }

  ctl_t c;
  memset(&c, 0, sizeof c);
  c.conf = &conf;
  c.loop = uv_default_loop();
  for (unsigned i = 0; i < conf.controllers.count; i++) {
    if (nirc_parse_addr(conf.controllers.item[i], &c.addrs[i], err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: --controller %s\n", err);
      return EXIT_USAGE;
    }
  }
  c.naddrs = conf.controllers.count;
  if (tls_ctx_new(TLS_CLIENT, conf.ca, conf.cert, conf.key, &c.tls, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: %s\n", err);
    return EXIT_USAGE;
  }

  Nirc__StatusRequest sreq = NIRC__STATUS_REQUEST__INIT;
  sreq.site = nargs == 1 ? args[0] : "";
  Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
  req.request_id = (uint64_t)getpid();
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
  req.status = &sreq;

  int rc = ctl_request(&c, &req);
  if (rc == EXIT_UNREACHABLE) {
    fprintf(stderr,
            "nircctl: cannot reach a controller:\n%s\nIs nircd running? Check --controller or "
            "[ctl] controllers in %s.\n",
            c.errors, config_path ? config_path : "your config");
  } else if (rc == EXIT_REFUSED && !c.reply) {
    fprintf(stderr, "nircctl: refused by the controller:\n%s\n", c.errors);
  } else if (c.reply && !c.reply->ok) {
    fprintf(stderr, "nircctl: refused: %s\n",
            c.reply->error && c.reply->error->message ? c.reply->error->message : "no reason");
    rc = EXIT_REFUSED;
  } else if (c.reply && c.reply->body_case == NIRC__OPERATOR_REPLY__BODY_STATUS) {
    use_colour = !json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (json)
      print_status_json(c.reply->status);
    else
      print_status_table(c.reply->status);
    rc = EXIT_DONE;
  }
  if (c.reply_env) nirc__envelope__free_unpacked(c.reply_env, NULL);
  SSL_CTX_free(c.tls);
  uv_loop_close(c.loop);
  return rc;
}
