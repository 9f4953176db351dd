#include "agent.h"

#include "err.h"
#include "log.h"
#include "report.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#define NIRC_PROTOCOL_VERSION 1

#define O(f) offsetof(agent_conf_t, f)
#define S(f) sizeof(((agent_conf_t *)0)->f)
const config_opt_t agent_conf_opts[] = {
    {"agent", "site", CFG_STRING, O(site), S(site), 0, 0, "", 0,
     "site slug; optional, must match the certificate (site:<slug>)"},
    {"agent", "controllers", CFG_LIST, O(controllers), 0, 0, 0, NULL, 1,
     "controller addresses, tried in order"},
    {"agent", "adapter", CFG_STRING, O(adapter), S(adapter), 0, 0, "sim", 0, "PBX adapter: sim"},
    {"agent", "report_log", CFG_STRING, O(report_log), S(report_log), 0, 0, "", 0,
     "file to append every sent report to, as JSON lines (debugging, tests)"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, NULL, 1, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, NULL, 1, "this site's certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, NULL, 1, "this site's private key"},
    {"timing", "backoff_min", CFG_DURATION, O(backoff_min_ms), 0, 10, 600000, "500ms", 0,
     "smallest reconnect delay"},
    {"timing", "backoff_max", CFG_DURATION, O(backoff_max_ms), 0, 10, 3600000, "30s", 0,
     "largest reconnect delay"},
    {"timing", "connect_timeout", CFG_DURATION, O(connect_timeout_ms), 0, 100, 120000, "5s", 0,
     "time allowed for TCP connect and TLS handshake"},
    {"timing", "link_idle_timeout", CFG_DURATION, O(idle_timeout_ms), 0, 500, 600000, "5s", 0,
     "a link with no frame for this long is dead"},
    {"timing", "report_interval", CFG_DURATION, O(report_interval_ms), 0, 100, 60000, "1s", 0,
     "report interval until the controller sets one"},
    {"sim", "scenario", CFG_STRING, O(scenario), S(scenario), 0, 0, "", 0,
     "scenario file for the sim adapter"},
    {"sim", "seed", CFG_UINT, O(seed), 0, 0, 4294967295.0, "0", 0,
     "random seed; 0 derives one from the site"},
    CONFIG_CLOCK_OPTS(agent_conf_t, clock),
    CONFIG_LOG_OPTS(agent_conf_t, log),
    {0},
};

int agent_conf_load(const char *path, agent_conf_t *c, char *err, size_t errlen) {
  int rc = config_load(path, agent_conf_opts, c, err, errlen);
  if (rc) return rc;
  if (c->controllers.count == 0) {
    snprintf(err, errlen, "%s: [agent] controllers needs at least one address", path);
    return NIRC_ECONFIG;
  }
  if (c->backoff_max_ms < c->backoff_min_ms) {
    snprintf(err, errlen, "%s: [timing] backoff_max must be at least backoff_min", path);
    return NIRC_ECONFIG;
  }
  if (!adapter_find(c->adapter)) {
    snprintf(err, errlen, "%s: [agent] adapter '%s' is unknown (known: %s)", path, c->adapter,
             adapter_names());
    return NIRC_ECONFIG;
  }
  if (config_check_clock(&c->clock, path, err, errlen) != 0) return NIRC_ECONFIG;
  if (config_check_log(&c->log, path, err, errlen) != 0) return NIRC_ECONFIG;
  return 0;
}

static const char *const agent_state_names[] = {
    [AGENT_IDLE] = "idle",
    [AGENT_CONNECTING] = "connecting",
    [AGENT_HELLO_SENT] = "hello-sent",
    [AGENT_REPORTING] = "reporting",
    [AGENT_BACKOFF] = "backoff",
    [AGENT_STOPPING] = "stopping",
};

const char *agent_state_name(agent_state_t s) {
  return (unsigned)s <= AGENT_STOPPING ? agent_state_names[s] : "?";
}

static void agent_set_state(agent_t *a, agent_state_t to) {
  if (a->state == AGENT_STOPPING) return; /* terminal */
  log_debug(LOG_AGENT, a->slug, "%s -> %s", agent_state_name(a->state), agent_state_name(to));
  a->state = to;
}

static void agent_connect(agent_t *a);

static void agent_on_retry(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state == AGENT_BACKOFF) agent_connect(a);
}

static void agent_schedule_retry(agent_t *a) {
  if (a->state == AGENT_STOPPING) return;
  agent_set_state(a, AGENT_BACKOFF);
  /* Rotate through the address list, so a dead first controller does not
   * keep us away from a live second one. */
  a->idx = (a->idx + 1) % a->naddrs;
  uint32_t delay = backoff_next(&a->backoff);
  log_info(LOG_AGENT, a->slug, "next attempt in %u ms to %s", delay,
           a->conf->controllers.item[a->idx]);
  uv_timer_start(&a->retry, agent_on_retry, delay, 0);
}

static void agent_log_report(agent_t *a, const Nirc__LoadReport *r) {
  if (!a->report_log) return;
  json_t *o = report_to_json(r);
  if (!o) return;
  char *line = json_dumps(o, JSON_COMPACT);
  if (line) {
    fprintf(a->report_log, "%s\n", line);
    fflush(a->report_log);
    free(line);
  }
  json_decref(o);
}

static void agent_on_report_timer(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state != AGENT_REPORTING || !a->link) return;
  int64_t now = clock_now_ms(&a->clock);
  adapter_load_t load;
  memset(&load, 0, sizeof load);
  a->adapter.ops->collect(a->adapter.impl, now, &load);

  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = a->slug;
  r.timestamp_ms = now;
  int64_t iv = a->last_report_business_ms ? now - a->last_report_business_ms : 0;
  r.interval_ms = iv > 0 && iv < 600000 ? (uint32_t)iv : a->report_interval_ms;
  a->last_report_business_ms = now;
  if (load.unreadable) {
    r.pbx_unreadable = 1;
    r.pbx_error = load.error;
  } else {
    r.calls_offered = load.offered;
    r.calls_answered = load.answered;
    r.calls_abandoned = load.abandoned;
    r.calls_in_queue = load.in_queue;
    r.longest_wait_ms = load.longest_wait_ms;
    r.agents_logged_in = load.logged_in;
    r.agents_ready = load.ready;
    r.agents_talking = load.talking;
    r.agents_not_ready = load.not_ready;
    r.aht_ms = load.aht_ms;
    r.answered_within_threshold = load.answered_within;
    r.sl_threshold_s = load.sl_threshold_s;
    r.calls_from_other_sites = load.from_other_sites;
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  if (link_send(a->link, &env) == 0) {
    a->reports_sent++;
    agent_log_report(a, &r);
  }
}

static void agent_on_open(link_t *l) {
  agent_t *a = link_data(l);
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = NIRC_PROTOCOL_VERSION;
  h.software_version = NIRC_VERSION;
  h.site = a->slug;
  h.adapter = (char *)a->conf->adapter;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (link_send(l, &env) == 0) agent_set_state(a, AGENT_HELLO_SENT);
}

static void agent_on_welcome(agent_t *a, const Nirc__Welcome *w) {
  uint32_t iv = w->report_interval_ms;
  if (iv < 100 || iv > 60000) iv = (uint32_t)a->conf->report_interval_ms;
  a->report_interval_ms = iv;
  a->epoch = w->epoch;
  a->connects++;
  backoff_reset(&a->backoff);
  agent_set_state(a, AGENT_REPORTING);
  log_info(LOG_AGENT, a->slug, "connected to %s (%s, epoch %llu), reporting every %u ms",
           a->conf->controllers.item[a->idx], w->controller_node ? w->controller_node : "?",
           (unsigned long long)w->epoch, iv);
  uv_timer_start(&a->report, agent_on_report_timer, iv, iv);
}

static void agent_on_message(link_t *l, Nirc__Envelope *env) {
  agent_t *a = link_data(l);
  switch (env->msg_case) {
  case NIRC__ENVELOPE__MSG_WELCOME:
    if (a->state != AGENT_HELLO_SENT) {
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, "unexpected Welcome");
      return;
    }
    agent_on_welcome(a, env->welcome);
    return;
  case NIRC__ENVELOPE__MSG_ERROR:
    /* The controller explains a refusal before closing: say it loudly, it
     * is usually a deployment mistake (wrong certificate, unknown site). */
    log_error(LOG_AGENT, a->slug, "controller refused: %.200s",
              env->error->message ? env->error->message : "(no reason)");
    return;
  case NIRC__ENVELOPE__MSG_DIRECTIVE: {
    /* Applying routes arrives with the routing engine and PBX adapters;
     * until then say so instead of pretending. */
    Nirc__DirectiveAck ack = NIRC__DIRECTIVE_ACK__INIT;
    ack.site = a->slug;
    ack.epoch = env->directive->epoch;
    ack.version = env->directive->version;
    ack.result = NIRC__ACK_RESULT__ACK_RESULT_FAILED;
    ack.detail = "this agent version cannot apply directives";
    Nirc__Envelope out = NIRC__ENVELOPE__INIT;
    out.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE_ACK;
    out.directive_ack = &ack;
    link_send(l, &out);
    return;
  }
  default:
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
              "message type %d is not valid from a controller", env->msg_case);
    return;
  }
}

static void agent_on_close(link_t *l, int err, const char *why, int was_open) {
  agent_t *a = link_data(l);
  a->link = NULL;
  uv_timer_stop(&a->report);
  if (a->state == AGENT_STOPPING) return;
  log_warn(LOG_AGENT, a->slug, "link to %s closed: %s", a->conf->controllers.item[a->idx],
           why && *why ? why : nirc_strerror(err));
  agent_schedule_retry(a);
}

static const link_cbs_t agent_link_cbs = {
    .on_open = agent_on_open,
    .on_message = agent_on_message,
    .on_close = agent_on_close,
};

static void agent_connect(agent_t *a) {
  agent_set_state(a, AGENT_CONNECTING);
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)a->conf->connect_timeout_ms;
  o.idle_timeout_ms = (uint32_t)a->conf->idle_timeout_ms;
  o.expect_kind = PEER_CONTROLLER;
  log_debug(LOG_AGENT, a->slug, "connecting to %s", a->conf->controllers.item[a->idx]);
  link_connect(a->loop, (struct sockaddr *)&a->addrs[a->idx], a->tls, &o, &agent_link_cbs, a,
               &a->link);
}

int agent_init(agent_t *a, uv_loop_t *loop, const agent_conf_t *conf, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  a->loop = loop;
  a->conf = conf;
  peer_identity_t me;
  if (tls_file_identity(conf->cert, &me, err, errlen) != 0) return NIRC_ECONFIG;
  if (me.kind != PEER_SITE) {
    snprintf(err, errlen, "%s is a %s certificate; an agent needs a site:<slug> certificate",
             conf->cert, tls_kind_name(me.kind));
    return NIRC_ECONFIG;
  }
  if (conf->site[0] && strcmp(conf->site, me.name) != 0) {
    snprintf(err, errlen, "[agent] site is '%s' but the certificate %s is for site '%s'",
             conf->site, conf->cert, me.name);
    return NIRC_ECONFIG;
  }
  nirc_strlcpy(a->slug, me.name, sizeof a->slug);
  int rc = tls_ctx_new(TLS_CLIENT, conf->ca, conf->cert, conf->key, &a->tls, err, errlen);
  if (rc) return rc;
  for (unsigned i = 0; i < conf->controllers.count; i++) {
    char why[256];
    if (nirc_parse_addr(conf->controllers.item[i], &a->addrs[i], why, sizeof why) != 0) {
      snprintf(err, errlen, "[agent] controllers: %s", why);
      return NIRC_ECONFIG;
    }
  }
  a->naddrs = conf->controllers.count;

  clock_setup(&a->clock, conf->clock.speed, conf->clock.start, conf->clock.anchor);
  if (conf->scenario[0]) {
    if (scenario_load(conf->scenario, &a->scenario, err, errlen) != 0) return NIRC_ECONFIG;
    a->have_scenario = 1;
  }
  a->adapter.ops = adapter_find(conf->adapter);
  uint64_t seed = conf->seed;
  if (seed == 0)
    for (const char *p = a->slug; *p; p++)
      seed = seed * 131 + (unsigned char)*p;
  adapter_env_t env = {
      .slug = a->slug,
      .scenario = a->have_scenario ? &a->scenario : NULL,
      .business_now_ms = clock_now_ms(&a->clock),
      .seed = seed,
  };
  char why[256];
  rc = a->adapter.ops->start(&env, &a->adapter.impl, why, sizeof why);
  if (rc) {
    snprintf(err, errlen, "adapter %s: %s", conf->adapter, why);
    return rc;
  }
  if (conf->report_log[0]) {
    a->report_log = fopen(conf->report_log, "a");
    if (!a->report_log) {
      snprintf(err, errlen, "%s: cannot open report log", conf->report_log);
      return NIRC_EIO;
    }
  }
  a->report_interval_ms = (uint32_t)conf->report_interval_ms;
  backoff_init(&a->backoff, (uint32_t)conf->backoff_min_ms, (uint32_t)conf->backoff_max_ms, 0);
  uv_timer_init(loop, &a->retry);
  uv_timer_init(loop, &a->report);
  a->retry.data = a->report.data = a;
  return 0;
}

static void agent_on_signal(uv_signal_t *s, int signum) {
  agent_t *a = s->data;
  log_info(LOG_AGENT, a->slug, "signal %d: stopping", signum);
  agent_stop(a);
}

void agent_start(agent_t *a) {
  uv_signal_init(a->loop, &a->sig_int);
  uv_signal_init(a->loop, &a->sig_term);
  a->sig_int.data = a->sig_term.data = a;
  uv_signal_start(&a->sig_int, agent_on_signal, SIGINT);
  uv_signal_start(&a->sig_term, agent_on_signal, SIGTERM);
  log_info(LOG_AGENT, a->slug, "site agent for %s starting (adapter %s)", a->slug,
           a->conf->adapter);
  sd_notify(0, "READY=1");
  agent_connect(a);
}

void agent_stop(agent_t *a) {
  if (a->state == AGENT_STOPPING) return;
  a->state = AGENT_STOPPING;
  sd_notify(0, "STOPPING=1");
  uv_close((uv_handle_t *)&a->retry, NULL);
  uv_close((uv_handle_t *)&a->report, NULL);
  uv_close((uv_handle_t *)&a->sig_int, NULL);
  uv_close((uv_handle_t *)&a->sig_term, NULL);
  if (a->link) link_close(a->link, 0, "agent stopping");
}

void agent_free(agent_t *a) {
  if (a->adapter.ops && a->adapter.impl) a->adapter.ops->stop(a->adapter.impl);
  if (a->have_scenario) scenario_free(&a->scenario);
  if (a->report_log) fclose(a->report_log);
  SSL_CTX_free(a->tls);
}
