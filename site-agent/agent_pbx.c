#include "agent-int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* The PBX's uptime is read this often (when the adapter knows it): a PBX
 * restarted with an old list is caught within a second or two, not at the
 * next periodic check. */
#define AGENT_PBX_TICK_MS 1000

/* The agent's functions this module calls back; one agent per process,
 * and always the same two functions. */
static void (*agent_pbx_repair)(agent_t *a, const route_t *r);

static void agent_pbx_queue(agent_t *a, Nirc__PbxEventKind kind, const char *found,
                            const char *expected, const char *detail, const route_t *r);

/* ---- verified applies ---- */

static adapter_apply_cb agent_pbx_done;

static void agent_pbx_on_verified(void *arg, adapter_verify_t v, const char *found,
                                  const char *detail) {
  agent_t *a = arg;
  char why[900], want[200];
  if (a->apply_timed_out) {
    /* A command killed at its timeout: what the PBX shows is the outcome.
     * Without a read-back nobody knows, and "failed" would tell the
     * operator that no calls moved. */
    a->apply_timed_out = false;
    if (v == ADAPTER_VERIFY_MATCH) {
      snprintf(why, sizeof why, "%s, but the PBX routes as asked (read back)",
               a->apply_timeout_why);
      agent_pbx_done(a, 0, why);
      return;
    }
    if (v == ADAPTER_VERIFY_MISMATCH) {
      snprintf(why, sizeof why, "%s; read back: %s", a->apply_timeout_why, detail);
      agent_pbx_done(a, NIRC_EIO, why);
      return;
    }
    snprintf(why, sizeof why,
             "outcome unknown: %s and the PBX cannot be read back (%s): it may have taken the "
             "route",
             a->apply_timeout_why, detail);
    /* The code, not the text, is what the ack's outcome_unknown carries. */
    agent_pbx_done(a, NIRC_EOUTCOME_UNKNOWN, why);
    return;
  }
  switch (v) {
  case ADAPTER_VERIFY_MATCH: agent_pbx_done(a, 0, ""); return;
  case ADAPTER_VERIFY_UNVERIFIED:
    /* Applied, but nobody read it back: the ack says so (unverified). */
    a->apply_unverified = true;
    agent_pbx_done(a, 0, detail);
    return;
  case ADAPTER_VERIFY_MISMATCH:
    a->verify_failures++;
    snprintf(why, sizeof why, "%s", detail); /* the adapter says what the PBX does */
    /* A repair reports its own outcome (agent_pbx_applied). */
    if (a->applying_purpose != APPLY_REPAIR) {
      route_format(&a->applying_route, a->slug, want, sizeof want);
      agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_VERIFY_FAILED, found, want, why);
    }
    agent_pbx_done(a, NIRC_EIO, why);
    return;
  case ADAPTER_VERIFY_UNREADABLE:
    a->verify_failures++;
    snprintf(why, sizeof why, "the PBX accepted the route but could not be read back: %s", detail);
    agent_pbx_done(a, NIRC_EIO, why);
    return;
  }
}

static void agent_pbx_on_applied(void *arg, int rc, const char *err) {
  agent_t *a = arg;
  a->apply_timed_out = rc == NIRC_ETIMEOUT && a->state != AGENT_STOPPING;
  if (a->apply_timed_out) {
    /* Killed at its timeout, the command may have written the route
     * before it hung: read the PBX back like after a success. */
    nirc_strlcpy(a->apply_timeout_why, err ? err : "apply timed out", sizeof a->apply_timeout_why);
  } else if (rc != 0 || a->state == AGENT_STOPPING) {
    agent_pbx_done(a, rc, err);
    return;
  }
  /* The PBX said yes: believe what it does, not what it said. An adapter
   * runs one verify at a time: after a drift check still in flight. */
  if (a->drift_verifying) {
    a->verify_deferred = true;
    return;
  }
  a->adapter.ops->verify(a->adapter.impl, &a->applying_route, agent_pbx_on_verified, a);
}

void agent_pbx_apply(agent_t *a, adapter_apply_cb done) {
  agent_pbx_done = done;
  a->adapter.ops->apply(a->adapter.impl, &a->applying_route, agent_pbx_on_applied, a);
}

void agent_pbx_applied(agent_t *a, agent_apply_purpose_t purpose, const route_t *r, int rc,
                       const char *why) {
  if (rc == 0) a->pbx_checked_ms = uv_now(a->loop); /* just read back */
  agent_publish_metrics(a);                         /* the route, and the apply counters */
  /* The home route a failed revert left in force, now taken by the PBX
   * (the retry applies the route in force as a restore). */
  bool retaken = purpose == APPLY_RESTORE && rc == 0 && a->revert_unconfirmed &&
                 strcmp(r->reason, ROUTE_REASON_REVERTED) == 0;
  if (purpose == APPLY_REVERT || retaken) {
    /* The agent changed the route on its own: the controller must hear
     * it, or its status keeps the route the agent left (sent now if the
     * link is up, else queued for the next one). Also when the PBX did
     * not take home: the route in force is home all the same
     * (agent_decide_applied), unknown at the PBX (agent.c queues
     * ROUTE_UNCONFIRMED after this), and a controller that kept the route
     * left would name it in its alarm, then show it as the site's route
     * once the agent confirms home. Said again when the PBX takes it. */
    char detail[1200], clk[300];
    agent_clock_describe(a, clock_real_ms(), clk, sizeof clk);
    int n =
        snprintf(detail, sizeof detail,
                 "revert_at of route (%llu, %llu) passed on %s: the agent routes home on its own",
                 (unsigned long long)r->epoch, (unsigned long long)r->version, clk);
    if (rc != 0 && n > 0 && (size_t)n < sizeof detail)
      snprintf(detail + n, sizeof detail - (size_t)n,
               "; the PBX did not take home (%s): the route is unknown until it does, and the "
               "agent keeps trying",
               why ? why : "no reason given");
    else if (retaken && n > 0 && (size_t)n < sizeof detail)
      snprintf(detail + n, sizeof detail - (size_t)n, "; the PBX has taken home now");
    a->revert_unconfirmed = rc != 0;
    agent_pbx_queue(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED, rc == 0 ? "home" : "unknown",
                    "home", detail, r);
    return;
  }
  /* A newer route is in force: the revert is no longer the news. */
  if (rc == 0) a->revert_unconfirmed = false;
  if (purpose != APPLY_REPAIR) return;
  char want[200], detail[900];
  route_format(r, a->slug, want, sizeof want);
  if (rc == 0) {
    a->drift_repairs++;
    snprintf(detail, sizeof detail,
             "the PBX routed %s instead of %s (restarted or changed behind the agent's back); "
             "the agent applied %s again and read it back",
             a->drift_found, want, want);
    log_warn(LOG_AGENT, a->slug, "drift repaired: %s", detail);
    agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_REPAIRED, a->drift_found, want,
                    detail);
  } else {
    snprintf(detail, sizeof detail,
             "the PBX routes %s instead of %s and applying it again failed: %s", a->drift_found,
             want, why);
    log_error(LOG_AGENT, a->slug, "drift NOT repaired: %s", detail);
    agent_pbx_event(a, NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_NOT_REPAIRED, a->drift_found,
                    want, detail);
  }
}

/* ---- events to the controller ---- */

void agent_pbx_fill(const agent_t *a, const agent_pbx_event_t *e, uint64_t now_mono,
                    Nirc__PbxEvent *ev) {
  nirc__pbx_event__init(ev);
  ev->site = (char *)a->slug;
  ev->kind = e->kind;
  ev->found = (char *)e->found;
  ev->expected = (char *)e->expected;
  ev->detail = (char *)e->detail;
  ev->at_ms = e->at_ms;
  ev->epoch = e->epoch;
  ev->version = e->version;
  ev->unverified = e->unverified;
  ev->went_home_at_ms = e->went_home_ms;
  ev->went_home_clock = e->went_home_ms > 0 ? agent_clock_src_pb(e->went_home_src)
                                            : NIRC__AGENT_CLOCK__AGENT_CLOCK_UNSAID;
  /* Counted now, as it is sent: an event queued while the link was down
   * says how long ago from when the controller hears it. */
  ev->went_home_ago_said = e->went_home_ms > 0 && agent_clock_went_home_ago(a, e->went_home_mono_ms,
                                                                            &ev->went_home_ago_ms);
  /* The same for when it was seen, whatever its kind: the controller
   * places it by its own clock, not by at_ms on this host's. */
  if (e->seen_mono_ms > 0) {
    ev->seen_ago_said = true;
    ev->seen_ago_ms = now_mono > e->seen_mono_ms ? now_mono - e->seen_mono_ms : 0;
  }
}

bool agent_pbx_fill_lost(const agent_t *a, uint64_t now_mono, Nirc__PbxEvent *ev) {
  if (a->lost_n == 0) return false;
  nirc__pbx_event__init(ev);
  ev->site = (char *)a->slug;
  ev->kind = NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_EVENTS_DROPPED;
  ev->dropped = a->lost_n;
  ev->seen_ago_said = true;
  ev->seen_ago_ms = now_mono > a->lost_first_mono_ms ? now_mono - a->lost_first_mono_ms : 0;
  ev->at_ms = clock_real_ms() - (int64_t)ev->seen_ago_ms; /* the first lost, on this host */
  ev->dropped_last_ago_ms = now_mono > a->lost_last_mono_ms ? now_mono - a->lost_last_mono_ms : 0;
  return true;
}

static void agent_pbx_send(agent_t *a, Nirc__PbxEvent *ev) {
  Nirc__Envelope out = NIRC__ENVELOPE__INIT;
  out.msg_case = NIRC__ENVELOPE__MSG_PBX_EVENT;
  out.pbx_event = ev;
  link_send(a->link, &out);
}

void agent_pbx_flush(agent_t *a) {
  if (a->state != AGENT_REPORTING || !a->link) return;
  for (unsigned i = 0; i < a->n_events; i++) {
    Nirc__PbxEvent ev;
    agent_pbx_fill(a, &a->events[i], clock_mono_ms(), &ev);
    agent_pbx_send(a, &ev);
    /* The loss where it happened: after the first event kept. */
    if (i == 0 && agent_pbx_fill_lost(a, clock_mono_ms(), &ev)) agent_pbx_send(a, &ev);
  }
  a->n_events = 0;
  a->lost_n = 0;
}

static void agent_pbx_queue(agent_t *a, Nirc__PbxEventKind kind, const char *found,
                            const char *expected, const char *detail, const route_t *r) {
  if (a->n_events == AGENT_PBX_EVENTS_MAX) {
    /* Full: the first event of the outage says when and how the PBX first
     * went wrong (the first drift), the newest how it is now; what lies
     * between is the least missed. So the oldest but one goes, counted
     * with when it was seen, and the controller is told on the next link
     * (agent_pbx_fill_lost). */
    uint64_t seen = a->events[1].seen_mono_ms;
    if (a->lost_n++ == 0) a->lost_first_mono_ms = seen;
    a->lost_last_mono_ms = seen;
    memmove(&a->events[1], &a->events[2], (AGENT_PBX_EVENTS_MAX - 2) * sizeof a->events[0]);
    a->n_events--;
    a->pbx_events_dropped++;
    log_warn(LOG_AGENT, a->slug,
             "PBX event dropped (%u since the link went down): %d wait for a controller already; "
             "the controller is told how many on the next link",
             a->lost_n, AGENT_PBX_EVENTS_MAX);
  }
  agent_pbx_event_t *e = &a->events[a->n_events++];
  e->kind = kind;
  /* Valid UTF-8 on the wire; the controller escapes the rest. */
  nirc_strlcpy_utf8(e->found, found ? found : "", sizeof e->found);
  nirc_strlcpy_utf8(e->expected, expected ? expected : "", sizeof e->expected);
  nirc_strlcpy_utf8(e->detail, detail ? detail : "", sizeof e->detail);
  e->at_ms = clock_real_ms(); /* this host's clock: said, not what the controller records */
  e->seen_mono_ms = clock_mono_ms();
  e->epoch = r ? r->epoch : 0;
  e->version = r ? r->version : 0;
  /* The route confirmed may be confirmed unread: a controller that heard
   * "unknown" in the Hello has not heard this. So may the home route the
   * agent went to on its own: the controller takes it as the site's
   * route, and must not keep the mark of the route left. (A revert the
   * PBX did not take is unknown, not unverified: applied_unverified is
   * false then.) */
  e->unverified = (kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_ROUTE_CONFIRMED ||
                   kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED) &&
                  a->applied_unverified;
  /* A return home says when it went (agent_clock_went_home). */
  bool home = kind == NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_REVERTED;
  e->went_home_ms = home ? a->went_home_ms : 0;
  e->went_home_src = a->went_home_src;
  e->went_home_mono_ms = home ? a->went_home_mono_ms : 0;
  agent_pbx_flush(a);
}

void agent_pbx_event(agent_t *a, Nirc__PbxEventKind kind, const char *found, const char *expected,
                     const char *detail) {
  agent_pbx_queue(a, kind, found, expected, detail, NULL);
}

/* ---- drift ---- */

static void agent_pbx_on_checked(void *arg, adapter_verify_t v, const char *found,
                                 const char *detail) {
  agent_t *a = arg;
  a->pbx_busy = a->drift_verifying = false;
  if (a->state == AGENT_STOPPING) return;
  if (a->verify_deferred) {
    /* An apply finished meanwhile: its read-back first; this check is
     * stale. */
    a->verify_deferred = false;
    a->adapter.ops->verify(a->adapter.impl, &a->applying_route, agent_pbx_on_verified, a);
    return;
  }
  adapter_verify_t was = a->drift_last;
  a->drift_last = v;
  if (v == ADAPTER_VERIFY_UNVERIFIED) {
    if (was != v) log_info(LOG_AGENT, a->slug, "drift is not checked: %s", detail);
    return;
  }
  if (v == ADAPTER_VERIFY_UNREADABLE) {
    if (was != v) log_warn(LOG_AGENT, a->slug, "drift check: %s", detail);
    return;
  }
  if (v == ADAPTER_VERIFY_MATCH) {
    if (was != v) log_info(LOG_AGENT, a->slug, "the PBX routes as applied (%s)", found);
    return;
  }
  /* The route may have changed while the PBX was read: only a mismatch
   * with the route still applied, and nothing being applied, is drift. */
  if (a->applying || !route_same(&a->checking_route, &a->applied) ||
      route_compare_version(&a->checking_route, &a->applied) != 0)
    return;
  nirc_strlcpy_utf8(a->drift_found, found, sizeof a->drift_found);
  log_warn(LOG_AGENT, a->slug, "the PBX drifted from the applied route: %s; applying it again",
           detail);
  agent_pbx_repair(a, &a->applied);
}

static void agent_pbx_check(agent_t *a, const char *why) {
  log_debug(LOG_AGENT, a->slug, "reading the PBX back (%s)", why);
  a->pbx_busy = a->drift_verifying = true;
  a->pbx_checked_ms = uv_now(a->loop);
  a->checking_route = a->applied;
  a->adapter.ops->verify(a->adapter.impl, &a->checking_route, agent_pbx_on_checked, a);
}

static void agent_pbx_on_uptime(void *arg, int rc, uint64_t up) {
  agent_t *a = arg;
  a->pbx_busy = false;
  if (a->state == AGENT_STOPPING || rc != 0) return;
  bool restarted = a->have_uptime && up < a->pbx_uptime_s;
  uint64_t was = a->pbx_uptime_s;
  a->pbx_uptime_s = up;
  a->have_uptime = true;
  if (!restarted || a->applying || a->route_state != AGENT_ROUTE_KNOWN) return;
  log_warn(LOG_AGENT, a->slug, "the PBX restarted (up %llu s, was up %llu s): checking its routing",
           (unsigned long long)up, (unsigned long long)was);
  agent_pbx_check(a, "PBX restarted");
}

static void agent_pbx_on_tick(uv_timer_t *t) {
  agent_t *a = t->data;
  if (a->state == AGENT_STOPPING || a->pbx_busy || a->applying) return;
  if (a->route_state == AGENT_ROUTE_KNOWN &&
      uv_now(a->loop) - a->pbx_checked_ms >= a->conf->pbx_check_interval_ms) {
    agent_pbx_check(a, "periodic");
    return;
  }
  /* Uptime is followed even before the first apply, so a restart is
   * recognised as one once there is a route to check. */
  if (a->adapter.ops->uptime) {
    a->pbx_busy = true;
    a->adapter.ops->uptime(a->adapter.impl, agent_pbx_on_uptime, a);
  }
}

void agent_pbx_start(agent_t *a, void (*repair)(agent_t *a, const route_t *r)) {
  agent_pbx_repair = repair;
  a->drift_last = ADAPTER_VERIFY_MATCH;
  a->pbx_checked_ms = uv_now(a->loop);
  uv_timer_init(a->loop, &a->pbx_timer);
  a->pbx_timer.data = a;
  uint64_t tick = a->conf->pbx_check_interval_ms < AGENT_PBX_TICK_MS
                      ? a->conf->pbx_check_interval_ms
                      : AGENT_PBX_TICK_MS;
  uv_timer_start(&a->pbx_timer, agent_pbx_on_tick, tick, tick);
}

void agent_pbx_stop(agent_t *a) {
  uv_close((uv_handle_t *)&a->pbx_timer, NULL);
}
