/* agent_route: the agent's decisions about the route in force (agent.h,
 * agent_route_state_t), free of I/O so they are unit-tested without a
 * loop: which route to apply at start, what follows an apply, and what the
 * Hello says of the route. agent.c does what they decide. */
#include "agent.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *const agent_route_state_names[] = {
    [AGENT_ROUTE_UNKNOWN] = "unknown",
    [AGENT_ROUTE_KNOWN] = "known",
};

const char *agent_route_state_name(agent_route_state_t s) {
  return (unsigned)s <= AGENT_ROUTE_KNOWN ? agent_route_state_names[s] : "?";
}

void agent_start_route(const route_t *saved, const char *slug, int64_t now_ms, route_t *out) {
  if (!saved) {
    route_home(out, slug);
    snprintf(out->reason, sizeof out->reason, "nothing saved");
    return;
  }
  if (saved->revert_at_ms != 0 && now_ms >= saved->revert_at_ms) {
    /* As agent_on_revert does: the (epoch, version) stays, so a newer
     * directive still applies and an older one is still refused. */
    route_home(out, slug);
    out->epoch = saved->epoch;
    out->version = saved->version;
    snprintf(out->reason, sizeof out->reason, "%s", ROUTE_REASON_REVERTED);
    return;
  }
  *out = *saved;
}

void agent_state_extra(const agent_t *a, const route_t *r, state_extra_t *x) {
  *x = (state_extra_t){.seen_epoch = a->max_epoch};
  if (a->went_home_ms <= 0 || strcmp(r->reason, ROUTE_REASON_REVERTED) != 0) return;
  x->went_home_ms = a->went_home_ms;
  nirc_strlcpy(x->went_home_clock, agent_clock_src_name(a->went_home_src),
               sizeof x->went_home_clock);
}

void agent_start_went_home(agent_t *a, const route_t *saved, const state_extra_t *x,
                           int64_t local_ms) {
  a->went_home_ms = 0;
  a->went_home_mono_ms = 0; /* a time loaded from the state file has no count */
  a->went_home_src = AGENT_CLOCK_HOST;
  if (strcmp(a->applied.reason, ROUTE_REASON_REVERTED) != 0) return;
  if (saved && strcmp(saved->reason, ROUTE_REASON_REVERTED) != 0) {
    /* Not running at revert_at: it goes home now, and says so. */
    agent_clock_went_home(a, local_ms);
    return;
  }
  agent_clock_src_t src;
  if (x && x->went_home_ms > 0 && agent_clock_src_parse(x->went_home_clock, &src)) {
    a->went_home_ms = x->went_home_ms;
    a->went_home_src = src;
  }
}

agent_applied_t agent_decide_applied(agent_route_state_t was, agent_apply_purpose_t purpose,
                                     int apply_rc, int save_rc) {
  agent_applied_t o = {.rc = apply_rc, .route_state = was};
  if (apply_rc == 0) {
    if (save_rc != 0 && purpose == APPLY_DIRECTIVE) {
      /* A new route that a restart would silently drop: put the previous
       * one back and fail the directive (the controller tries again). */
      o.rc = NIRC_EIO;
      o.undo = true;
      return o;
    }
    /* The PBX has it (a restore, a revert, a repair or an undo put back a
     * route the disk already has, or whose revert_at has passed). */
    o.take = purpose != APPLY_UNDO;
    o.route_state = AGENT_ROUTE_KNOWN;
    return o;
  }
  switch (purpose) {
  case APPLY_RESTORE:
  case APPLY_REVERT:
    /* The route tried is the one in force: the saved route, or home once
     * revert_at has passed. How the PBX routes is not known. */
    o.take = true;
    o.route_state = AGENT_ROUTE_UNKNOWN;
    break;
  case APPLY_UNDO:
    /* The directive's route may still be in: not known. */
    o.route_state = AGENT_ROUTE_UNKNOWN;
    break;
  case APPLY_DIRECTIVE:
  case APPLY_REPAIR:
    /* The previous routing stays (the adapter's contract); a repair
     * that failed is reported and tried at every drift check. An apply
     * whose outcome is unknown (killed at its timeout, no read-back)
     * broke that contract: the PBX may do either route. */
    if (apply_rc == NIRC_EOUTCOME_UNKNOWN) o.route_state = AGENT_ROUTE_UNKNOWN;
    break;
  }
  /* A directive whose outcome is unknown is not retried with the old
   * route: the controller heard the ack and decides what the site routes
   * by next (its rollback or its retry); putting the old route back on
   * our own would move calls it may be sending elsewhere. */
  o.retry = o.route_state == AGENT_ROUTE_UNKNOWN &&
            !(purpose == APPLY_DIRECTIVE && apply_rc == NIRC_EOUTCOME_UNKNOWN);
  return o;
}

void agent_fill_hello_route(const agent_t *a, Nirc__Hello *h, Nirc__Directive *applied,
                            route_pb_t *pb) {
  /* Tell the controller what we route by, so a new leader starts from the
   * truth rather than from its own assumptions, and whether the PBX is
   * known to do it. */
  if (a->applied.version > 0) {
    route_to_directive(&a->applied, pb, applied);
    applied->site = (char *)a->slug;
    /* The Hello's route never named its inbound sources. */
    applied->inbound_sources = NULL;
    applied->n_inbound_sources = 0;
    h->applied = applied;
    if (a->went_home_ms > 0 && strcmp(a->applied.reason, ROUTE_REASON_REVERTED) == 0) {
      h->went_home_at_ms = a->went_home_ms;
      h->went_home_clock = agent_clock_src_pb(a->went_home_src);
      h->went_home_ago_said =
          agent_clock_went_home_ago(a, a->went_home_mono_ms, &h->went_home_ago_ms);
    }
  }
  /* The state file: whether the next directive can be made durable. */
  if (a->state_unsaved) h->state_not_saved_why = (char *)a->state_why;
  if (a->route_state != AGENT_ROUTE_KNOWN) {
    h->route_unconfirmed = 1;
    h->route_unconfirmed_why = (char *)a->route_why;
    /* Counted now, as the Hello is sent: a controller that hears of the
     * stretch only now (its link was down, or it just took over) places
     * its start by its own clock. */
    if (a->route_unknown_mono_ms > 0) {
      uint64_t now = clock_mono_ms();
      h->route_unconfirmed_ago_said = true;
      h->route_unconfirmed_ago_ms =
          now > a->route_unknown_mono_ms ? now - a->route_unknown_mono_ms : 0;
    }
  } else {
    /* A new leader would otherwise show the route as read back until the
     * next applied acknowledgement. */
    h->route_unverified = a->applied_unverified;
  }
}

agent_state_tell_t agent_state_note(agent_t *a, int save_rc, const char *err) {
  if (save_rc == 0) {
    bool was = a->state_unsaved;
    a->state_unsaved = false;
    a->state_why[0] = '\0';
    return was ? AGENT_STATE_TELL_SAVED : AGENT_STATE_TELL_NONE;
  }
  /* The latest words go in the Hello; the controller is told once per
   * stretch (every failed write would fill the event queue). */
  nirc_strlcpy_utf8(a->state_why, err && *err ? err : "the state file could not be written",
                    sizeof a->state_why);
  if (a->state_unsaved) return AGENT_STATE_TELL_NONE;
  a->state_unsaved = true;
  return AGENT_STATE_TELL_NOT_SAVED;
}

bool agent_route_unverified(bool was, agent_apply_purpose_t purpose, const agent_applied_t *o,
                            bool apply_unverified) {
  /* The route in force was just given to the PBX: taken, or put back by
   * an undo (which applies the route in force again). */
  if (o->rc == 0 && (o->take || purpose == APPLY_UNDO)) return apply_unverified;
  /* A restore or revert the PBX did not take: the route is unknown, which
   * says more than unverified; the apply that makes it known decides. */
  if (o->take) return false;
  /* A failed directive or repair leaves the previous routing in place. */
  return was;
}
