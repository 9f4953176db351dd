#include "agent.h"

#include "agent-int.h"
#include "err.h"
#include "log.h"
#include "httpd.h"
#include "report.h"
#include "state.h"
#include "watchdog.h"
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
    {"agent", "adapter", CFG_STRING, O(adapter), S(adapter), 0, 0, "sim", 0,
     "PBX adapter: sim (simulator), exec (operator commands) or kamailio"},
    {"agent", "report_log", CFG_STRING, O(report_log), S(report_log), 0, 0, "", 0,
     "file to append every sent report to, as JSON lines (debugging, tests)"},
    {"agent", "state_file", CFG_STRING, O(state_file), S(state_file), 0, 0, "", 0,
     "where the last applied directive is kept (fail-static); empty: not kept"},
    {"agent", "http_listen", CFG_STRING, O(http_listen), S(http_listen), 0, 0, "", 0,
     "address of the read-only Prometheus endpoint (/metrics); empty: off"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, NULL, 1, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, NULL, 1, "this site's certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, NULL, 1, "this site's private key"},
    {"tls", "crl", CFG_STRING, O(crl), S(crl), 0, 0, "", 0,
     "PEM revocation list(s) of the CA: a controller whose certificate is on it is refused in "
     "the handshake; re-read on SIGHUP (empty: none)"},
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
    {"agent", "pbx_check_interval", CFG_DURATION, O(pbx_check_interval_ms), 0, 1000, 86400000,
     "30s", 0,
     "how often the PBX is read back and a drifted route applied again, and the state file "
     "written again (a write that fails is told to the controller)"},
    {"sim", "scenario", CFG_STRING, O(scenario), S(scenario), 0, 0, "", 0,
     "scenario file for the sim adapter"},
    {"sim", "seed", CFG_UINT, O(seed), 0, 0, 4294967295.0, "0", 0,
     "random seed; 0 derives one from the site"},
    {"exec", "apply_cmd", CFG_STRING, O(exec.apply_cmd), S(exec.apply_cmd), 0, 0, "", 0,
     "exec adapter: command that applies a route read as JSON on stdin"},
    {"exec", "collect_cmd", CFG_STRING, O(exec.collect_cmd), S(exec.collect_cmd), 0, 0, "", 0,
     "exec adapter: command that prints the load as JSON on stdout"},
    {"exec", "verify_cmd", CFG_STRING, O(exec.verify_cmd), S(exec.verify_cmd), 0, 0, "", 0,
     "exec adapter: command that prints the route the PBX applies, as JSON; empty: applies "
     "are unverified"},
    {"exec", "timeout", CFG_DURATION, O(exec.timeout_ms), 0, 100, 600000, "5s", 0,
     "exec adapter: a command running longer is killed and counts as failed"},
    {"kamailio", "rpc_socket", CFG_STRING, O(kamailio.rpc_socket), S(kamailio.rpc_socket), 0, 0,
     "/run/kamailio/kamailio_rpc.sock", 0, "kamailio adapter: jsonrpcs datagram socket"},
    {"kamailio", "dispatcher_list", CFG_STRING, O(kamailio.dispatcher_list),
     S(kamailio.dispatcher_list), 0, 0, "", 0,
     "kamailio adapter: dispatcher list file the agent writes and Kamailio reloads"},
    {"kamailio", "set_id", CFG_UINT, O(kamailio.set_id), 0, 1, 65535, "1", 0,
     "kamailio adapter: dispatcher set used for this site's inbound calls"},
    {"kamailio", "targets", CFG_STRING, O(kamailio.targets), S(kamailio.targets), 0, 0, "", 0,
     "kamailio adapter: where each site answers, e.g. hubei=sip:10.1.0.5:5060, ..."},
    {"kamailio", "timeout", CFG_DURATION, O(kamailio.timeout_ms), 0, 100, 60000, "2s", 0,
     "kamailio adapter: time allowed for one RPC call"},
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
  /* nirc_agent_connected follows the link at once, not at the next report
   * (there is none without a link). */
  agent_publish_metrics(a);
}

static void agent_connect(agent_t *a);
static void agent_on_directive(agent_t *a, link_t *l, const Nirc__Directive *d);

static void agent_on_retry(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state == AGENT_BACKOFF) agent_connect(a);
}

static void agent_schedule_retry(agent_t *a) {
  if (a->state == AGENT_STOPPING) return;
  agent_set_state(a, AGENT_BACKOFF);
  /* Rotate through the address list, so a dead first controller does not
   * keep us away from a live second one; a standby's redirect goes first.
   * The backoff ceiling doubles once per round of the list (common/backoff.h). */
  if (a->redirect >= 0) {
    a->idx = (unsigned)a->redirect;
    a->redirect = -1;
  } else {
    a->idx = (a->idx + 1) % a->naddrs;
  }
  uint32_t delay = backoff_next_rotating(&a->backoff, a->naddrs);
  log_info(LOG_AGENT, a->slug, "next attempt in %u ms to %s", delay,
           a->conf->controllers.item[a->idx]);
  uv_timer_start(&a->retry, agent_on_retry, delay, 0);
}

static void agent_log_report(agent_t *a, const Nirc__LoadReport *r) {
  if (!a->report_log) return;
  json_t *o = report_to_json(r);
  if (!o) return;
  /* timestamp_ms is what was sent, on this host's clock (see
   * agent_on_collected); beside it the controller's time then, as the
   * agent measured it, to line the log up with the controller's: null
   * while the offset is not known. */
  int64_t ctl;
  json_object_set_new(o, "controller_time_ms",
                      agent_clock_controller_now(a, r->timestamp_ms, &ctl) ? json_integer(ctl)
                                                                           : json_null());
  char *line = json_dumps(o, JSON_COMPACT);
  if (line) {
    fprintf(a->report_log, "%s\n", line);
    fflush(a->report_log);
    free(line);
  }
  json_decref(o);
}

/* The agent's own figures for Prometheus: what it reports, whether it is
 * connected, what it routes by, and how its PBX has been answering.
 * Published on every change and every second (agent_metrics_start), never
 * only with a report: without a controller there is no report, and that
 * is when the agent routes on its own (restore, revert_at, repairs). */
void agent_publish_metrics(agent_t *a) {
  if (!a->http) return;
  char buf[4096];
  int n = agent_metrics_format(a, clock_real_ms(), buf, sizeof buf);
  if (n > 0)
    httpd_publish(a->http, "/metrics", "text/plain; version=0.0.4; charset=utf-8", buf, (size_t)n);
}

static void agent_on_metrics_timer(uv_timer_t *t) {
  agent_publish_metrics(t->data);
}

/* /metrics from the start, before any controller is met. */
static void agent_metrics_start(agent_t *a) {
  if (!a->http || a->metrics_on) return;
  uv_timer_init(a->loop, &a->metrics);
  a->metrics.data = a;
  a->metrics_on = true;
  agent_publish_metrics(a);
  uv_timer_start(&a->metrics, agent_on_metrics_timer, 1000, 1000);
}

static void agent_on_collected(void *arg, const adapter_load_t *lp) {
  agent_t *a = arg;
  a->collecting = false;
  a->last_load = *lp;
  a->have_load = true;
  if (lp->unreadable) a->collects_unreadable++;
  agent_publish_metrics(a);
  if (a->state != AGENT_REPORTING || !a->link) return;
  adapter_load_t load = *lp;
  int64_t now = a->collect_business_ms;
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  Nirc__SiteCount routed[ADAPTER_ROUTED_MAX], *routed_p[ADAPTER_ROUTED_MAX];
  r.site = a->slug;
  /* This host's business clock, not the controller's as measured: the
   * controller compares it with its own to see this host's offset (its
   * `clock` alarm), which a corrected time would hide; the interval
   * below is a difference on the same clock, unmoved by a new offset. */
  r.timestamp_ms = now;
  /* Business time: with an accelerated clock the interval is longer than
   * the real report period. Counted on the monotonic clock (the simulator:
   * its business clock), so a step of this host's clock is not taken for
   * time with calls in it. The first report falls back to the period. */
  int64_t stepped;
  uint32_t iv =
      agent_clock_interval(a, a->adapter.ops->counts_business_time, a->last_report_business_ms, now,
                           a->last_report_mono_ms, a->collect_mono_ms, &stepped);
  if (stepped)
    log_warn(LOG_AGENT, a->slug,
             "this host's clock moved %+.0f s beyond the time that passed since the last report "
             "(stepped: NTP?); the report's interval is %.1f s%s",
             (double)stepped / 1000.0, (iv ? iv : a->report_interval_ms) / 1000.0,
             a->adapter.ops->counts_business_time ? " on the business clock (the simulator's)"
                                                  : ", the time that passed");
  r.interval_ms = iv ? iv : a->report_interval_ms;
  a->last_report_business_ms = now;
  a->last_report_mono_ms = a->collect_mono_ms;
  if (load.unreadable) {
    r.pbx_unreadable = 1;
    r.pbx_error = load.error;
  } else {
    r.calls_offered = load.offered;
    r.calls_answered = load.answered;
    r.calls_abandoned = load.abandoned;
    r.calls_in_queue = load.in_queue;
    /* A PBX that cannot tell its peak has at least the queue it has now. */
    r.calls_in_queue_peak = load.queue_peak > load.in_queue ? load.queue_peak : load.in_queue;
    r.longest_wait_ms = load.longest_wait_ms;
    r.agents_logged_in = load.logged_in;
    r.agents_ready = load.ready;
    r.agents_talking = load.talking;
    r.agents_not_ready = load.not_ready;
    r.aht_ms = load.aht_ms;
    r.answered_within_threshold = load.answered_within;
    r.sl_threshold_s = load.sl_threshold_s;
    r.calls_from_other_sites = load.from_other_sites;
    r.calls_routed_away = load.routed_away;
    r.n_routed_to = load.n_routed_to < ADAPTER_ROUTED_MAX ? load.n_routed_to : ADAPTER_ROUTED_MAX;
    r.routed_to = routed_p;
    for (size_t i = 0; i < r.n_routed_to; i++) {
      nirc__site_count__init(&routed[i]);
      routed[i].site = load.routed_to[i].site;
      routed[i].calls = load.routed_to[i].calls;
      routed_p[i] = &routed[i];
    }
    r.not_measured = load.not_measured;
    r.routing_measured = load.routing_measured;
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  if (link_send(a->link, &env) == 0) {
    a->reports_sent++;
    agent_log_report(a, &r);
  }
}

static void agent_on_report_timer(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state != AGENT_REPORTING || !a->link) return;
  if (a->collecting) {
    /* The PBX is slower than the report period: skip, do not pile up. */
    log_warn(LOG_ADAPTER, a->slug, "previous collect still running: report skipped");
    return;
  }
  a->collecting = true;
  a->collect_business_ms = clock_now_ms(&a->clock);
  a->collect_mono_ms = clock_mono_ms();
  a->adapter.ops->collect(a->adapter.impl, a->collect_business_ms, agent_on_collected, a);
}

static void agent_on_open(link_t *l) {
  agent_t *a = link_data(l);
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = NIRC_PROTOCOL_VERSION;
  h.software_version = NIRC_VERSION;
  h.site = a->slug;
  h.adapter = (char *)a->conf->adapter;
  Nirc__Directive applied = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  agent_fill_hello_route(a, &h, &applied, &pb);
  /* Told it is unknown: the controller hears when it is known again. */
  if (h.route_unconfirmed) a->route_told = true;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (link_send(l, &env) == 0) agent_set_state(a, AGENT_HELLO_SENT);
}

static void agent_arm_revert(agent_t *a);

/* What an ack marks beyond its result (DirectiveAck.unverified,
 * outcome_unknown). */
#define AGENT_ACK_UNVERIFIED      1u
#define AGENT_ACK_OUTCOME_UNKNOWN 2u
static void agent_send_ack(link_t *l, agent_t *a, uint64_t epoch, uint64_t version,
                           Nirc__AckResult result, const char *detail, unsigned marks);
static void agent_apply_start(agent_t *a, const route_t *r, agent_apply_purpose_t purpose);

/* The route in force became known or unknown: log it once, and tell the
 * controller through a PbxEvent (queued while there is no link) when it
 * goes unknown after an apply failed, and when it is known again after
 * the controller was told it was not. */
static void agent_set_route_state(agent_t *a, agent_route_state_t to, const char *why) {
  agent_route_state_t was = a->route_state;
  char desc[200];
  route_format(&a->applied, a->slug, desc, sizeof desc);
  if (to == AGENT_ROUTE_UNKNOWN) {
    nirc_strlcpy_utf8(a->route_why, why, sizeof a->route_why);
    if (!a->route_unknown_mono_ms) a->route_unknown_mono_ms = clock_mono_ms();
    if (!a->route_told) {
      /* Once per stretch: the retries would fill the event queue. */
      a->route_told = true;
      agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_UNCONFIRMED, "unknown", desc,
                      why);
    }
  }
  if (was == to) return;
  a->route_state = to;
  if (to == AGENT_ROUTE_KNOWN) {
    a->route_why[0] = '\0';
    a->route_unknown_mono_ms = 0;
    uv_timer_stop(&a->route_retry);
    backoff_reset(&a->route_backoff);
    log_info(LOG_AGENT, a->slug, "route in force %s -> %s: the PBX routes %s",
             agent_route_state_name(was), agent_route_state_name(to), desc);
    if (a->route_told) {
      a->route_told = false;
      agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED, desc, desc,
                      a->applied_unverified
                          ? "the route is applied (unverified: the PBX cannot be read back)"
                          : "the route is applied and read back");
    }
  } else {
    log_warn(LOG_AGENT, a->slug, "route in force %s -> %s: %s is not confirmed at the PBX: %s",
             agent_route_state_name(was), agent_route_state_name(to), desc, why);
  }
}

/* Saves `r` as the route in force, with what the file keeps beside it
 * (agent_state_extra). A failure is not only logged (by the caller): the
 * controller is told (agent_state_note), since the next directive's route
 * cannot be made durable and fails until the file can be written. */
static int agent_save_state(agent_t *a, const route_t *r, char *err, size_t errlen) {
  state_extra_t x;
  agent_state_extra(a, r, &x);
  int rc = state_save_ext(a->conf->state_file, a->slug, r, &x, err, errlen);
  agent_state_tell_t tell = agent_state_note(a, rc, err);
  if (tell == AGENT_STATE_TELL_NONE) return rc;
  char desc[200];
  route_format(&a->applied, a->slug, desc, sizeof desc);
  if (tell == AGENT_STATE_TELL_SAVED)
    log_info(LOG_AGENT, a->slug, "state file %s written again", a->conf->state_file);
  agent_pbx_event(
      a,
      tell == AGENT_STATE_TELL_SAVED ? NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_STATE_SAVED
                                     : NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_STATE_NOT_SAVED,
      "", desc, tell == AGENT_STATE_TELL_SAVED ? "the state file is written again" : err);
  return rc;
}

/* Every pbx_check_interval: the route in force written again (the same
 * content), so a state file that can no longer be written (a full disk)
 * is found and told before a directive needs it, and its end is seen. */
static void agent_on_state_check(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state == AGENT_STOPPING) return;
  char serr[400];
  bool was = a->state_unsaved;
  if (agent_save_state(a, &a->applied, serr, sizeof serr) != 0 && !was)
    log_error(LOG_AGENT, a->slug, "the state file cannot be written: %s", serr);
}

static void agent_on_route_retry(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state == AGENT_STOPPING || a->route_state == AGENT_ROUTE_KNOWN) return;
  /* An apply in flight decides again when it ends (agent_on_applied). */
  if (a->applying) return;
  log_info(LOG_AGENT, a->slug, "applying the route in force again (not confirmed at the PBX)");
  agent_apply_start(a, &a->applied, APPLY_RESTORE);
}

/* The adapter finished applying a->applying_route. Persist it, remember
 * it, answer the controller, then start whatever waited. What follows is
 * decided by agent_decide_applied. */
static void agent_on_applied(void *arg, int rc, const char *err) {
  agent_t *a = arg;
  route_t r = a->applying_route;
  agent_apply_purpose_t purpose = a->applying_purpose;
  char why[512];
  snprintf(why, sizeof why, "%s", err ? err : "");
  unsigned marks = a->apply_unverified && rc == 0 ? AGENT_ACK_UNVERIFIED
                   : rc == NIRC_EOUTCOME_UNKNOWN  ? AGENT_ACK_OUTCOME_UNKNOWN
                                                  : 0;
  a->apply_unverified = false;
  a->applying = false;
  if (a->state == AGENT_STOPPING) {
    /* The PBX has it: keep the disk in step even while stopping. */
    if (rc == 0 && purpose != APPLY_UNDO && a->conf->state_file[0]) {
      char serr[400];
      if (agent_save_state(a, &r, serr, sizeof serr) != 0)
        log_error(LOG_AGENT, a->slug, "applied while stopping but not saved: %s", serr);
    }
    return;
  }
  int save_rc = 0;
  char serr[400] = "";
  if (rc == 0 && purpose != APPLY_UNDO && a->conf->state_file[0])
    save_rc = agent_save_state(a, &r, serr, sizeof serr);
  agent_applied_t o = agent_decide_applied(a->route_state, purpose, rc, save_rc);
  if (save_rc != 0) {
    if (o.undo) {
      snprintf(why, sizeof why, "cannot persist the route: %s", serr);
      if (!a->pending) {
        a->pending = true;
        a->pending_route = a->applied;
        a->pending_purpose = APPLY_UNDO;
      }
    } else {
      /* In force whether or not it is saved: a restart puts the saved
       * route (or home, past its revert_at) in force again. */
      log_error(LOG_AGENT, a->slug, "route in force but not saved: %s", serr);
    }
  }
  rc = o.rc;
  if (rc == 0)
    a->applies_ok++;
  else
    a->applies_failed++;
  Nirc__AckResult res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
  a->applied_unverified = agent_route_unverified(a->applied_unverified, purpose, &o,
                                                 (marks & AGENT_ACK_UNVERIFIED) != 0);
  if (o.take) {
    a->applied = r;
    /* A route a directive (or anything but a revert) put in force did
     * not go home on its own. */
    if (strcmp(r.reason, ROUTE_REASON_REVERTED) != 0) {
      a->went_home_ms = 0;
      a->went_home_mono_ms = 0;
    }
    if (r.epoch > a->max_epoch) a->max_epoch = r.epoch;
    agent_arm_revert(a);
  }
  if (rc == 0) {
    char desc[200];
    route_format(&r, a->slug, desc, sizeof desc);
    log_info(LOG_AGENT, a->slug, "%s (%llu, %llu): %s%s%s%s",
             purpose == APPLY_RESTORE
                 ? (r.version ? "restored saved route" : "routing home, applied")
             : purpose == APPLY_REVERT ? "revert_at reached, routing"
             : purpose == APPLY_UNDO   ? "previous route put back"
             : purpose == APPLY_REPAIR ? "applied again after drift"
                                       : "applied directive",
             (unsigned long long)r.epoch, (unsigned long long)r.version, desc,
             r.n_inbound ? " (with inbound sources)" : "", why[0] ? "; " : "", why);
  } else {
    res = rc == NIRC_EUNKNOWN_SITE ? NIRC__ACK_RESULT__ACK_RESULT_REJECTED
                                   : NIRC__ACK_RESULT__ACK_RESULT_FAILED;
    log_warn(LOG_AGENT, a->slug, "%s (%llu, %llu) %s: %s",
             purpose == APPLY_DIRECTIVE ? "directive" : "local route change",
             (unsigned long long)r.epoch, (unsigned long long)r.version,
             res == NIRC__ACK_RESULT__ACK_RESULT_FAILED ? "failed" : "rejected", why);
  }
  /* What the agent did on its own (a REVERTED event) before whether the
   * PBX has it (ROUTE_UNCONFIRMED, ROUTE_CONFIRMED): the controller takes
   * the route first, then whether it is known. */
  agent_pbx_applied(a, purpose, &r, rc, why);
  agent_set_route_state(a, o.route_state, why);
  agent_publish_metrics(a); /* the route's state, just set */
  if (o.retry && !uv_is_active((uv_handle_t *)&a->route_retry)) {
    uint32_t delay = backoff_next(&a->route_backoff);
    log_info(LOG_AGENT, a->slug, "next apply of the route in force in %u ms", delay);
    uv_timer_start(&a->route_retry, agent_on_route_retry, delay, 0);
  }
  /* An applied ack carries a detail only to say the apply is unverified. */
  if (purpose == APPLY_DIRECTIVE && a->link)
    agent_send_ack(a->link, a, r.epoch, r.version, res, why, marks);
  if (purpose == APPLY_RESTORE && a->connect_after_restore) {
    a->connect_after_restore = false;
    agent_connect(a);
  }
  if (a->pending) {
    a->pending = false;
    agent_apply_start(a, &a->pending_route, a->pending_purpose);
  }
}

/* Starts applying `r`, or queues it behind the apply in flight (only the
 * newest waits: an older queued route is superseded). */
static void agent_apply_start(agent_t *a, const route_t *r, agent_apply_purpose_t purpose) {
  if (a->applying) {
    if (a->pending && a->pending_purpose == APPLY_DIRECTIVE && purpose == APPLY_DIRECTIVE &&
        a->link)
      agent_send_ack(a->link, a, a->pending_route.epoch, a->pending_route.version,
                     NIRC__ACK_RESULT__ACK_RESULT_REJECTED, "superseded by a newer directive", 0);
    a->pending = true;
    a->pending_route = *r;
    a->pending_purpose = purpose;
    return;
  }
  a->applying = true;
  a->apply_unverified = false;
  a->applying_route = *r;
  a->applying_purpose = purpose;
  /* May call agent_on_applied before returning. */
  agent_pbx_apply(a, agent_on_applied);
}

/* The drift check found the PBX off the applied route. */
static void agent_repair(agent_t *a, const route_t *r) {
  agent_apply_start(a, r, APPLY_REPAIR);
}

static void agent_on_revert(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->applied.revert_at_ms == 0) return;
  if (a->applying || a->pending) {
    /* A route is on its way to the PBX: the controller's own return home,
     * a newer route, or this revert already (the timer was re-armed by a
     * new clock reading). Queued behind it, a revert would put back the
     * older version; look again once it is done. */
    uv_timer_start(&a->revert, agent_on_revert, 1000, 0);
    return;
  }
  /* revert_at is the controller's time: compare it with the controller's
   * clock as measured, so a host clock ahead does not end a cutover early
   * (nor one behind late). */
  int64_t now = agent_controller_ms(a, clock_now_ms(&a->clock));
  if (now < a->applied.revert_at_ms) {
    agent_arm_revert(a); /* woke early (clock speed rounding, a new offset): sleep again */
    return;
  }
  /* revert_at passed: go home on our own. The controller, if it is there,
   * sends the same; if it is not, this is the fail-static rule. The
   * (epoch, version) stays, so any newer directive still applies. The
   * controller is told (a REVERTED PbxEvent, agent_pbx_applied), so its
   * status does not keep the route the agent left. */
  route_t home;
  route_home(&home, a->slug);
  home.epoch = a->applied.epoch;
  home.version = a->applied.version;
  snprintf(home.reason, sizeof home.reason, "%s", ROUTE_REASON_REVERTED);
  char clk[300];
  agent_clock_describe(a, clock_real_ms(), clk, sizeof clk);
  log_warn(LOG_AGENT, a->slug, "revert_at reached (on %s): routing home", clk);
  agent_clock_went_home(a, clock_now_ms(&a->clock)); /* saved with home, told the controller */
  agent_apply_start(a, &home, APPLY_REVERT);
}

static void agent_arm_revert(agent_t *a) {
  uv_timer_stop(&a->revert);
  if (a->applied.revert_at_ms == 0 || a->state == AGENT_STOPPING) return;
  int64_t left = a->applied.revert_at_ms - agent_controller_ms(a, clock_now_ms(&a->clock));
  double real = left > 0 ? (double)left / (a->clock.speed > 0 ? a->clock.speed : 1.0) : 0;
  uv_timer_start(&a->revert, agent_on_revert, (uint64_t)real + 1, 0);
}

static void agent_send_ack(link_t *l, agent_t *a, uint64_t epoch, uint64_t version,
                           Nirc__AckResult result, const char *detail, unsigned marks) {
  Nirc__DirectiveAck ack = NIRC__DIRECTIVE_ACK__INIT;
  ack.unverified = result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED && (marks & AGENT_ACK_UNVERIFIED);
  ack.outcome_unknown =
      result == NIRC__ACK_RESULT__ACK_RESULT_FAILED && (marks & AGENT_ACK_OUTCOME_UNKNOWN);
  ack.site = a->slug;
  ack.epoch = epoch;
  ack.version = version;
  ack.result = result;
  ack.detail = (char *)detail;
  Nirc__Envelope out = NIRC__ENVELOPE__INIT;
  out.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE_ACK;
  out.directive_ack = &ack;
  link_send(l, &out);
}

agent_directive_action_t agent_check_directive(const agent_t *a, const Nirc__Directive *d,
                                               route_t *r, Nirc__AckResult *res, char *why,
                                               size_t whylen) {
  *res = NIRC__ACK_RESULT__ACK_RESULT_REJECTED;
  if (d->site && *d->site && strcmp(d->site, a->slug) != 0) {
    snprintf(why, whylen, "directive is for site '%.40s', this is %s", d->site, a->slug);
  } else if (route_from_directive(d, r, why, whylen) != 0) {
    /* why is set */
  } else if (d->epoch < a->max_epoch) {
    /* Fencing: a deposed leader must not move traffic. */
    snprintf(why, whylen, "stale epoch %llu: a newer controller (epoch %llu) leads",
             (unsigned long long)d->epoch, (unsigned long long)a->max_epoch);
  } else if (route_compare_version(r, &a->applied) == 0 && !route_same(r, &a->applied)) {
    snprintf(why, whylen, "version %llu reused with a different route",
             (unsigned long long)d->version);
  } else if (route_compare_version(r, &a->applied) == 0 && a->route_state == AGENT_ROUTE_KNOWN) {
    *res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED; /* a resend: idempotent */
    snprintf(why, whylen, "already applied");
  } else if (route_compare_version(r, &a->applied) < 0) {
    snprintf(why, whylen, "stale version (%llu, %llu); applied is (%llu, %llu)",
             (unsigned long long)r->epoch, (unsigned long long)r->version,
             (unsigned long long)a->applied.epoch, (unsigned long long)a->applied.version);
  } else if ((a->applying && route_compare_version(r, &a->applying_route) < 0) ||
             (a->pending && route_compare_version(r, &a->pending_route) < 0)) {
    /* Older than a route already on its way to the PBX: queued behind it,
     * it would take the PBX back once the newer one is in. */
    const route_t *newer =
        a->pending && route_compare_version(&a->pending_route, &a->applying_route) > 0
            ? &a->pending_route
            : &a->applying_route;
    snprintf(why, whylen, "stale version (%llu, %llu); (%llu, %llu) is being applied",
             (unsigned long long)r->epoch, (unsigned long long)r->version,
             (unsigned long long)newer->epoch, (unsigned long long)newer->version);
  } else if (route_validate(r, why, whylen) != 0) {
    /* why is set */
  } else if (a->applying && a->applying_purpose == APPLY_DIRECTIVE &&
             route_compare_version(r, &a->applying_route) == 0) {
    /* Only a directive's apply is acknowledged when it ends: the same
     * route restored at start is applied again after it, for the ack. */
    return AGENT_DIRECTIVE_WAIT;
  } else if (a->pending && a->pending_purpose == APPLY_DIRECTIVE &&
             route_compare_version(r, &a->pending_route) == 0) {
    /* A resend of the directive queued behind the apply in flight (a slow
     * PBX): queueing it again would acknowledge it REJECTED as superseded
     * by itself, and then apply it. Its ack comes when it is applied. */
    return AGENT_DIRECTIVE_WAIT;
  } else {
    return AGENT_DIRECTIVE_APPLY;
  }
  return AGENT_DIRECTIVE_ACK;
}

static void agent_on_directive(agent_t *a, link_t *l, const Nirc__Directive *d) {
  route_t r;
  char why[256] = "";
  Nirc__AckResult res;
  /* The controller's clock as it issued this: the freshest reading. A
   * deposed leader's (an older epoch) does not count. */
  if (d->epoch >= a->max_epoch) {
    agent_clock_sync(a, d->issued_at_ms, clock_now_ms(&a->clock));
    agent_arm_revert(a);
  }
  switch (agent_check_directive(a, d, &r, &res, why, sizeof why)) {
  case AGENT_DIRECTIVE_WAIT:
    return; /* a resend of what is being applied: the ack comes when it is done */
  case AGENT_DIRECTIVE_APPLY:
    /* The ack is sent when the PBX has answered (agent_on_applied). */
    agent_apply_start(a, &r, APPLY_DIRECTIVE);
    return;
  case AGENT_DIRECTIVE_ACK: break;
  }
  if (d->epoch > a->max_epoch && res == NIRC__ACK_RESULT__ACK_RESULT_APPLIED)
    a->max_epoch = d->epoch;
  if (res != NIRC__ACK_RESULT__ACK_RESULT_APPLIED)
    log_warn(LOG_AGENT, a->slug, "directive (%llu, %llu) %s: %s", (unsigned long long)d->epoch,
             (unsigned long long)d->version,
             res == NIRC__ACK_RESULT__ACK_RESULT_FAILED ? "failed" : "rejected", why);
  /* A resend of the route in force says what its first ack said. */
  agent_send_ack(l, a, d->epoch, d->version, res, why,
                 res == NIRC__ACK_RESULT__ACK_RESULT_APPLIED && a->applied_unverified
                     ? AGENT_ACK_UNVERIFIED
                     : 0);
}

int agent_check_welcome(const agent_t *a, const Nirc__Welcome *w, char *why, size_t whylen) {
  if (w->epoch > INT64_MAX) {
    /* The state file (and the controller's database) store a signed
     * 64-bit epoch; a larger one would be saved negative. */
    snprintf(why, whylen, "Welcome epoch %llu out of range: at most %lld",
             (unsigned long long)w->epoch, (long long)INT64_MAX);
    return NIRC_ERANGE;
  }
  if (w->epoch < a->max_epoch) {
    /* Fencing at the door, the same rule as for directives: a leader that
     * was paused past its lease (and kept from the database that would
     * tell it) still welcomes agents, and one that stayed with it would
     * report to it and be lost to the real leader, which then re-homes
     * around the site. max_epoch survives restarts (state file). */
    snprintf(why, whylen,
             "controller %.64s leads epoch %llu, older than epoch %llu this agent has seen: a "
             "deposed leader; %s",
             w->controller_node && *w->controller_node ? w->controller_node : "(unnamed)",
             (unsigned long long)w->epoch, (unsigned long long)a->max_epoch,
             a->naddrs > 1 ? "trying the next controller" : "trying it again after the backoff");
    /* Not the leader, whatever it believes. */
    return NIRC_ENOT_LEADER;
  }
  return 0;
}

static void agent_on_welcome(agent_t *a, const Nirc__Welcome *w) {
  uint32_t iv = w->report_interval_ms;
  if (iv < 100 || iv > 60000) iv = (uint32_t)a->conf->report_interval_ms;
  a->report_interval_ms = iv;
  a->epoch = w->epoch;
  /* From now on revert_at runs on the controller's clock. */
  agent_clock_sync(a, w->server_time_ms, clock_now_ms(&a->clock));
  agent_arm_revert(a);
  if (w->epoch > a->max_epoch) {
    a->max_epoch = w->epoch;
    /* Remember the new leader on disk, so a restart still refuses the
     * deposed one (the route itself may not change for hours). */
    char serr[400];
    if (a->conf->state_file[0] && agent_save_state(a, &a->applied, serr, sizeof serr) != 0)
      log_error(LOG_AGENT, a->slug, "epoch %llu not saved: %s", (unsigned long long)w->epoch, serr);
  }
  a->connects++;
  backoff_reset(&a->backoff);
  agent_set_state(a, AGENT_REPORTING);
  agent_pbx_flush(a); /* what the PBX showed while no controller listened */
  log_info(LOG_AGENT, a->slug, "connected to %s (%s, epoch %llu), reporting every %u ms",
           a->conf->controllers.item[a->idx], w->controller_node ? w->controller_node : "?",
           (unsigned long long)w->epoch, iv);
  uv_timer_start(&a->report, agent_on_report_timer, iv, iv);
}

/* A standby answered: try the leader it names next if that address is in
 * our list (compared as socket addresses, not strings), else the next one.
 * A standby is alive and answering, so this is no reason to back off
 * further: start the backoff over (it stays jittered, so a thousand agents
 * sent to the new leader do not arrive in the same millisecond). */
static void agent_on_standby(agent_t *a, const Nirc__Error *e) {
  const char *hint = e->leader_hint ? e->leader_hint : "";
  a->redirect = -1;
  struct sockaddr_storage ss;
  char why[128];
  if (*hint && nirc_parse_addr(hint, &ss, why, sizeof why) == 0) {
    for (unsigned i = 0; i < a->naddrs; i++)
      if (nirc_sockaddr_equal(&ss, &a->addrs[i])) a->redirect = (int)i;
  }
  log_info(LOG_AGENT, a->slug, "%s is a standby; leader %s%s", a->conf->controllers.item[a->idx],
           *hint ? hint : "not known yet",
           *hint && a->redirect < 0 ? " (not in [agent] controllers: trying the next address)"
                                    : "");
  backoff_reset(&a->backoff);
}

static void agent_on_message(link_t *l, Nirc__Envelope *env) {
  agent_t *a = link_data(l);
  switch (env->msg_case) {
  case NIRC__ENVELOPE__MSG_WELCOME: {
    if (a->state != AGENT_HELLO_SENT) {
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, "unexpected Welcome");
      return;
    }
    char why[256];
    int rc = agent_check_welcome(a, env->welcome, why, sizeof why);
    if (rc) {
      /* The Error tells the controller why we leave; closing logs `why`
       * once (agent_on_close) and moves on to the next address with the
       * usual backoff. The route applied stays as it is. */
      link_fail(l,
                rc == NIRC_ENOT_LEADER ? NIRC__ERROR_CODE__ERROR_CODE_REFUSED
                                       : NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL,
                rc, "%s", why);
      return;
    }
    agent_on_welcome(a, env->welcome);
    return;
  }
  case NIRC__ENVELOPE__MSG_ERROR:
    if (env->error->code == NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER) {
      agent_on_standby(a, env->error);
      return;
    }
    /* The controller explains a refusal before closing: say it loudly, it
     * is usually a deployment mistake (wrong certificate, unknown site). */
    log_error(LOG_AGENT, a->slug, "controller refused: %.200s",
              env->error->message ? env->error->message : "(no reason)");
    return;
  case NIRC__ENVELOPE__MSG_DIRECTIVE: agent_on_directive(a, l, env->directive); return;
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

/* The agent's TLS context: its certificate and key, the CA, and the CA's
 * CRL when [tls] crl is set, so a revoked controller certificate (a
 * stolen controller key) fails the handshake instead of steering the
 * site's calls. The context's store keeps its own references to the CRLs. */
static int agent_tls_new(const agent_conf_t *conf, SSL_CTX **out, char *err, size_t errlen) {
  SSL_CTX *ctx;
  int rc = tls_ctx_new(TLS_CLIENT, conf->ca, conf->cert, conf->key, &ctx, err, errlen);
  if (rc || !conf->crl[0]) {
    if (!rc) *out = ctx;
    return rc;
  }
  tls_revocation_t *rev = NULL;
  rc = tls_revocation_load(conf->ca, conf->crl, NULL, &rev, err, errlen);
  if (!rc) rc = tls_revocation_install(rev, ctx, err, errlen);
  tls_revocation_free(rev);
  if (rc) {
    SSL_CTX_free(ctx);
    return rc;
  }
  *out = ctx;
  return 0;
}

int agent_init(agent_t *a, uv_loop_t *loop, const agent_conf_t *conf, bool check_only, char *err,
               size_t errlen) {
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
  int rc = agent_tls_new(conf, &a->tls, err, errlen);
  if (rc) return rc;
  for (unsigned i = 0; i < conf->controllers.count; i++) {
    char why[256];
    if (nirc_parse_addr(conf->controllers.item[i], &a->addrs[i], why, sizeof why) != 0) {
      snprintf(err, errlen, "[agent] controllers: %s", why);
      return NIRC_ECONFIG;
    }
  }
  a->naddrs = conf->controllers.count;
  a->redirect = -1;

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
      .loop = loop,
      .slug = a->slug,
      .scenario = a->have_scenario ? &a->scenario : NULL,
      .clock = &a->clock,
      .seed = seed,
      .exec = &conf->exec,
      .kamailio = &conf->kamailio,
      /* exec commands run through this binary (execwrap.h), so they die
       * with the agent; the lock beside the state file keeps a restarted
       * agent's apply from overlapping its predecessor's. */
      .exec_wrapper = "/proc/self/exe",
      .exec_lock = a->exec_lock,
      .controller_ms = agent_clock_controller_now,
      .clock_ctx = a,
  };
  if (conf->state_file[0])
    snprintf(a->exec_lock, sizeof a->exec_lock, "%s.apply-lock", conf->state_file);
  char why[256];
  rc = a->adapter.ops->start(&env, &a->adapter.impl, why, sizeof why);
  if (rc) {
    snprintf(err, errlen, "adapter %s: %s", conf->adapter, why);
    return rc;
  }
  /* Fail-static: route as before the restart, before talking to anyone.
   * What the PBX does is not known until that route is applied
   * (agent_start); saying "home" before would be a guess. */
  route_t saved;
  state_extra_t saved_x;
  bool have_saved = false;
  a->route_state = AGENT_ROUTE_UNKNOWN;
  if (conf->state_file[0]) {
    char serr[512];
    rc = state_load_ext(conf->state_file, a->slug, &saved, &saved_x, serr, sizeof serr);
    if (rc == 0) {
      /* Fencing holds across the restart. */
      a->max_epoch = saved_x.seen_epoch;
      have_saved = true;
      snprintf(a->route_why, sizeof a->route_why, "the saved route is not applied yet");
    } else if (rc == NIRC_ENOTFOUND) {
      snprintf(a->route_why, sizeof a->route_why, "no saved route in %.200s: home not applied yet",
               conf->state_file);
      log_info(LOG_AGENT, a->slug, "no saved route in %s: applying home", conf->state_file);
    } else {
      snprintf(a->route_why, sizeof a->route_why,
               "the state file is unusable: home not applied yet");
      log_error(LOG_AGENT, a->slug, "%s: applying home", serr);
    }
  } else {
    snprintf(a->route_why, sizeof a->route_why, "no state file: home not applied yet");
  }
  agent_clock_init(a, clock_real_ms()); /* revert_at's clock, before the start route */
  agent_start_route(have_saved ? &saved : NULL, a->slug,
                    agent_controller_ms(a, clock_now_ms(&a->clock)), &a->applied);
  agent_start_went_home(a, have_saved ? &saved : NULL, have_saved ? &saved_x : NULL,
                        clock_now_ms(&a->clock));
  if (conf->http_listen[0] && !check_only) {
    if (httpd_start(conf->http_listen, &a->http, err, errlen) != 0) return NIRC_EIO;
  }
  if (conf->report_log[0] && !check_only) {
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
  uv_timer_init(loop, &a->revert);
  uv_timer_init(loop, &a->route_retry);
  uv_timer_init(loop, &a->state_check);
  a->retry.data = a->report.data = a->revert.data = a->route_retry.data = a->state_check.data = a;
  backoff_init(&a->route_backoff, (uint32_t)conf->backoff_min_ms, (uint32_t)conf->backoff_max_ms,
               0);
  return 0;
}

/* SIGHUP: a renewed certificate and key (same site) for the next
 * connection. The current link keeps the session it has; a file that
 * does not load leaves the previous pair in use. */
static void agent_on_sighup(uv_signal_t *s, int signum) {
  agent_t *a = s->data;
  const agent_conf_t *conf = a->conf;
  char err[512];
  peer_identity_t me;
  SSL_CTX *ctx;
  if (tls_file_identity(conf->cert, &me, err, sizeof err) != 0) {
    log_error(LOG_AGENT, a->slug, "reload failed, the previous certificate stays in use: %s", err);
    return;
  }
  if (me.kind != PEER_SITE || strcmp(me.name, a->slug) != 0) {
    log_error(LOG_AGENT, a->slug,
              "reload failed, the previous certificate stays in use: %s is '%s', not site:%s "
              "(restart the agent to change site)",
              conf->cert, me.subject, a->slug);
    return;
  }
  if (agent_tls_new(conf, &ctx, err, sizeof err) != 0) {
    log_error(LOG_AGENT, a->slug, "reload failed, the previous certificate stays in use: %s", err);
    return;
  }
  /* The live link's SSL holds its own reference to the old context. */
  SSL_CTX_free(a->tls);
  a->tls = ctx;
  log_info(LOG_AGENT, a->slug,
           "reloaded %s (fingerprint %s) and its key: used from the next connection", conf->cert,
           me.fingerprint);
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
  uv_signal_init(a->loop, &a->sig_hup);
  a->sig_hup.data = a;
  uv_signal_start(&a->sig_hup, agent_on_sighup, SIGHUP);
  watchdog_start(a->loop, &a->watchdog);
  agent_metrics_start(a);
  log_info(LOG_AGENT, a->slug, "site agent for %s starting (adapter %s)", a->slug,
           a->conf->adapter);
  sd_notify(0, "READY=1");
  agent_pbx_start(a, agent_repair);
  /* Fail-static: route as before the restart (home when nothing is saved
   * or revert_at has passed) before talking to anyone; the connection
   * starts when the PBX has answered (agent_on_applied), so the Hello says
   * whether it took the route. If it did not, it is applied again with
   * backoff, and the saved route's revert_at still holds. */
  agent_arm_revert(a);
  a->connect_after_restore = true;
  agent_apply_start(a, &a->applied, APPLY_RESTORE);
  if (a->conf->state_file[0])
    uv_timer_start(&a->state_check, agent_on_state_check, a->conf->pbx_check_interval_ms,
                   a->conf->pbx_check_interval_ms);
}

void agent_stop(agent_t *a) {
  if (a->state == AGENT_STOPPING) return;
  a->state = AGENT_STOPPING;
  sd_notify(0, "STOPPING=1");
  uv_close((uv_handle_t *)&a->retry, NULL);
  uv_close((uv_handle_t *)&a->report, NULL);
  uv_close((uv_handle_t *)&a->revert, NULL);
  uv_close((uv_handle_t *)&a->route_retry, NULL);
  uv_close((uv_handle_t *)&a->state_check, NULL);
  if (a->metrics_on) uv_close((uv_handle_t *)&a->metrics, NULL);
  agent_pbx_stop(a);
  uv_close((uv_handle_t *)&a->watchdog, NULL);
  uv_close((uv_handle_t *)&a->sig_int, NULL);
  uv_close((uv_handle_t *)&a->sig_term, NULL);
  uv_close((uv_handle_t *)&a->sig_hup, NULL);
  if (a->link) link_close(a->link, 0, "agent stopping");
}

void agent_free(agent_t *a) {
  if (a->adapter.ops && a->adapter.impl) a->adapter.ops->stop(a->adapter.impl);
  if (a->have_scenario) scenario_free(&a->scenario);
  if (a->report_log) fclose(a->report_log);
  httpd_stop(a->http);
  SSL_CTX_free(a->tls);
}
