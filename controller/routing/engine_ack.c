/* engine_ack: what the agents tell the engine back — acknowledgements of
 * directives (applied, failed, outcome unknown), the route a Hello says is
 * in force, a lost link — and the resends and failures of directives whose
 * acknowledgement is late. No I/O: records and sends go through
 * engine_io_t (engine.c). */
#include "engine-int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A FAILED directive whose site still differs is retried this much later. */
#define ENGINE_FAILED_RETRY_FACTOR 5

/* ---- acknowledgements, timeouts, waves ---- */

static void engine_record_ack(engine_t *e, size_t i, uint64_t epoch, uint64_t version,
                              const char *result, const char *detail, int64_t latency) {
  engine_rec_t rec = {.kind = ENGINE_REC_ACK,
                      .site = engine_site(e, i)->slug,
                      .epoch = epoch,
                      .version = version,
                      .result = result,
                      .detail = detail ? detail : "",
                      .latency_ms = latency};
  engine_store(e, &rec);
}

static void engine_fail(engine_t *e, size_t i, const char *why, bool outcome_unknown) {
  site_t *s = engine_site(e, i);
  site_dir_t *d = &e->dirs[i];
  d->state = DIR_FAILED;
  e->dirs_unsettled = true;
  log_error(LOG_SITE, s->slug, "directive v%llu failed: %s", (unsigned long long)d->target.version,
            why);
  snprintf(d->failed_why, sizeof d->failed_why, "directive v%llu failed: %s",
           (unsigned long long)d->target.version, why);
  engine_rec_t ev = {.kind = ENGINE_REC_EVENT,
                     .site = s->slug,
                     .peer = s->peer_addr,
                     .action = "directive_failed",
                     .detail = why};
  engine_store(e, &ev);
  engine_progress_site(e, i, "%s: FAILED: %s", s->slug, why);
  if (engine_is_away(&d->target, s->slug)) {
    /* Roll back: the source goes home and this rule leaves it alone until
     * the rule changes or an operator names the site again. */
    e->stats.rollbacks++;
    d->excluded_rule = d->rule_id ? d->rule_id : 1;
    d->excluded_kind = d->kind;
    e->dirs_excluded = true;
    engine_exclusion_text(e, i, why);
    /* Stored before the rollback is audited: a new leader keeps it out
     * too instead of trying the move that failed again. */
    engine_rec_t ex = {.kind = ENGINE_REC_EXCLUDE,
                       .site = s->slug,
                       .rule_kind = d->excluded_kind,
                       .rule_id = d->excluded_rule,
                       .detail = why};
    engine_store(e, &ex);
    engine_audit(e, "engine", "rollback", s->slug,
                 json_pack("{s:s, s:s, s:I, s:s}", "reason", why, "rule", rules_kind_name(d->kind),
                           "rule_id", (json_int_t)d->rule_id, "site", s->slug));
  }
  for (waiter_t *w = e->waiters; w; w = w->next)
    for (unsigned k = 0; k < w->n; k++)
      if (w->sites[k].site == i && !w->sites[k].resolved) {
        w->sites[k].resolved = true;
        w->sites[k].applied = false;
        w->sites[k].outcome_unknown = outcome_unknown;
        nirc_strlcpy_utf8(w->sites[k].detail, why, sizeof w->sites[k].detail);
      }
}

/* Site i's acknowledged route becomes `r` (the target it acknowledged, or
 * what its agent's Hello says it routes by), with the rule its directive
 * was sent under (site_dir_t.acked_kind): the same directive keeps its
 * rule; this leader's target has the rule behind it; an older leader's
 * has the one the database names (engine_prior_rule); any other is not
 * known here. */
static void engine_acked_is(engine_t *e, size_t i, const route_t *r) {
  site_dir_t *d = &e->dirs[i];
  rule_kind_t kind = RULE_NONE;
  uint64_t id = 0;
  if (route_compare_version(r, &d->acked) == 0) {
    kind = d->acked_kind;
    id = d->acked_rule_id;
  } else if (r->epoch == e->epoch && route_compare_version(r, &d->target) == 0) {
    kind = d->kind;
    id = d->rule_id;
  } else if (!engine_prior_rule(e, i, r, &kind, &id)) {
    kind = RULE_NONE;
    id = 0;
  }
  d->acked = *r;
  d->acked_kind = kind;
  d->acked_rule_id = kind == RULE_NONE ? 0 : id;
}

void engine_on_ack(engine_t *e, size_t i, const Nirc__DirectiveAck *ack) {
  if (i >= engine_nsites(e)) return; /* a site the engine could not take in yet (memory) */
  e->eval_dirty = true;
  site_dir_t *d = &e->dirs[i];
  site_t *s = engine_site(e, i);
  int64_t latency = (int64_t)(engine_mono(e) - d->sent_mono_ms);
  const char *result = ack->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED    ? "applied"
                       : ack->result == NIRC__ACK_RESULT__ACK_RESULT_REJECTED ? "rejected"
                                                                              : "failed";
  bool current = ack->epoch == d->target.epoch && ack->version == d->target.version;
  /* Only an ack for a directive this leader sent, and only the first one
   * for each version, becomes a row: a site (or a stolen certificate)
   * cannot grow directive_acks or the journal faster than directives are
   * sent to it. Details are cut to ENGINE_ACK_DETAIL_MAX bytes. */
  bool sent = ack->epoch == e->epoch && d->target.epoch == e->epoch && ack->version >= 1 &&
              ack->version <= d->target.version;
  if (!sent || ack->version <= d->ack_stored) {
    e->stats.acks_refused++;
    log_debug(LOG_SITE, s->slug, "ack for (%llu, %llu) not stored: %s",
              (unsigned long long)ack->epoch, (unsigned long long)ack->version,
              sent ? "already acknowledged" : "no such directive was sent");
    if (!sent) return;
  } else {
    char detail[ENGINE_ACK_DETAIL_MAX];
    nirc_strlcpy_utf8(detail, ack->detail ? ack->detail : "", sizeof detail);
    d->ack_stored = ack->version;
    engine_record_ack(e, i, ack->epoch, ack->version, result, detail, current ? latency : -1);
  }
  if (!current) {
    log_debug(LOG_SITE, s->slug, "ack for superseded directive (%llu, %llu) ignored",
              (unsigned long long)ack->epoch, (unsigned long long)ack->version);
    return;
  }
  if (d->state != DIR_PENDING) return; /* a duplicate ack after a resend */
  if (ack->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) {
    e->stats.acks_applied++;
    unsigned b = 0;
    while (b < ENGINE_LATENCY_BUCKETS - 1 && (double)latency > engine_latency_le_ms[b])
      b++;
    for (unsigned k = b; k < ENGINE_LATENCY_BUCKETS; k++)
      e->stats.latency_bucket[k]++;
    e->stats.latency_sum_ms += (double)latency;
    e->stats.latency_count++;
    engine_inflow_acked(e, i, &d->acked, &d->target);
    engine_acked_is(e, i, &d->target);
    d->known = true;
    /* The agent applied it: its route is confirmed at the PBX. */
    engine_on_route_known(e, i, true, "");
    d->unverified = ack->unverified;
    d->state = DIR_IDLE;
    log_info(LOG_SITE, s->slug, "directive v%llu applied in %lld ms",
             (unsigned long long)ack->version, (long long)latency);
    engine_progress_site(e, i, "%s: applied v%llu in %lld ms%s", s->slug,
                         (unsigned long long)ack->version, (long long)latency,
                         ack->unverified ? ENGINE_UNVERIFIED_WORDS : "");
    for (waiter_t *w = e->waiters; w; w = w->next)
      for (unsigned k = 0; k < w->n; k++)
        if (w->sites[k].site == i && !w->sites[k].resolved && ack->version >= w->sites[k].version) {
          w->sites[k].resolved = true;
          w->sites[k].applied = true;
          w->sites[k].latency_ms = latency;
          w->sites[k].unverified = ack->unverified;
          nirc_strlcpy_utf8(w->sites[k].detail, ack->detail ? ack->detail : "",
                            sizeof w->sites[k].detail);
        }
  } else {
    if (ack->result == NIRC__ACK_RESULT__ACK_RESULT_REJECTED)
      e->stats.acks_rejected++;
    else
      e->stats.acks_failed++;
    /* The agent's text is cut to whole characters and kept UTF-8: it goes
     * into the audit trail's JSON, the exclusion and status. */
    char detail[181], why[220];
    nirc_strlcpy_utf8(detail, ack->detail ? ack->detail : "", sizeof detail);
    snprintf(why, sizeof why, "agent %s: %s", result, detail);
    /* The PBX may have taken the route: its route is unknown, not the old
     * one, until an ack, ROUTE_CONFIRMED or a Hello says what it does. */
    if (ack->outcome_unknown) engine_on_route_known(e, i, false, detail);
    engine_fail(e, i, why, ack->outcome_unknown);
  }
  /* The verification window starts at the last acknowledgement, not at
   * the next tick. */
  engine_check_waves(e);
  engine_waiters_check(e);
}

void engine_on_hello(engine_t *e, size_t i, const route_t *applied, bool unverified,
                     const engine_went_home_t *went_home) {
  if (i >= engine_nsites(e)) return; /* a site the engine could not take in yet (memory) */
  engine_went_home_t settled;
  went_home = engine_went_home_settle(e, went_home, &settled);
  e->eval_dirty = true;
  site_dir_t *d = &e->dirs[i];
  site_t *s = engine_site(e, i);
  /* Said of the route the agent holds now, so it replaces what an ack
   * said before (the agent may have restarted with a verify_cmd). */
  engine_on_route_unverified(e, i, unverified);
  /* A directive of this epoch the site has not acknowledged: it was
   * issued before this first Hello (the agent was down when it was made)
   * or before the link dropped. */
  bool ours = d->target.epoch == e->epoch && d->target.version > 0;
  if (!d->known) {
    /* First contact in this epoch: start from what the agent routes by. */
    if (applied) {
      char desc[200];
      route_format(applied, s->slug, desc, sizeof desc);
      log_info(LOG_SITE, s->slug, "agent routes by (%llu, %llu): %s",
               (unsigned long long)applied->epoch, (unsigned long long)applied->version, desc);
    }
    d->known = true;
    if (applied) engine_acked_is(e, i, applied);
    if (!ours) {
      if (applied) d->target = *applied;
      d->state = DIR_IDLE;
      if (applied) engine_late_revert(e, i, applied, went_home);
      return;
    }
    /* Keep the directive and fall through to send it: replacing it with
     * the agent's route left the rule in force, the site home, and
     * nothing saying so. */
  } else if (applied) {
    engine_hello_reverted(e, i, applied, went_home); /* reads the acknowledged route it replaces */
    engine_acked_is(e, i, applied);
  }
  /* Reconnected: if it does not have our target, send it again. */
  if (!applied || !route_same(applied, &d->target) ||
      route_compare_version(applied, &d->target) != 0) {
    if (ours) {
      d->state = DIR_PENDING;
      e->dirs_unsettled = true;
      engine_send(e, i, SEND_AT_HELLO);
    }
  } else {
    d->state = DIR_IDLE;
  }
}

void engine_on_route_unverified(engine_t *e, size_t i, bool unverified) {
  if (i >= engine_nsites(e)) return;
  site_dir_t *d = &e->dirs[i];
  if (unverified != d->unverified)
    log_info(LOG_SITE, engine_site(e, i)->slug, "the agent's route is %s",
             unverified ? "applied without a read-back of the PBX (unverified)"
                        : "read back from the PBX");
  d->unverified = unverified;
}

void engine_on_link_down(engine_t *e, size_t i) {
  (void)i;
  e->eval_dirty = true;
}

void engine_check_timeouts(engine_t *e) {
  /* Every directive acknowledged: nothing to resend, no scan of 20,000
   * directives per tick. Set wherever one becomes pending or failed. */
  if (!e->dirs_unsettled) return;
  uint64_t now = engine_mono(e);
  bool unsettled = false;
  for (size_t i = 0; i < engine_nsites(e); i++) {
    site_dir_t *d = &e->dirs[i];
    site_t *s = engine_site(e, i);
    unsettled |= d->state != DIR_IDLE;
    if (d->state == DIR_PENDING && s->conn &&
        now - d->last_send_mono_ms >= e->opts.ack_timeout_ms) {
      e->eval_dirty = true; /* a resend or a failure: planned on this tick */
      if (d->resends < e->opts.max_resends) {
        engine_send(e, i, SEND_RESEND);
      } else {
        char why[160];
        snprintf(why, sizeof why, "no acknowledgement after %u resends", d->resends);
        e->stats.timeouts++;
        engine_record_ack(e, i, d->target.epoch, d->target.version, "timeout", why, -1);
        engine_fail(e, i, why, false);
      }
    } else if (d->state == DIR_FAILED && s->conn &&
               (!route_same(&d->target, &d->acked) ||
                route_compare_version(&d->target, &d->acked) > 0) &&
               now - d->last_send_mono_ms >=
                   (uint64_t)e->opts.ack_timeout_ms * ENGINE_FAILED_RETRY_FACTOR) {
      /* Keep trying, slowly: the alarm stands until it works. Also when
       * the site routes as the target under an older version (an agent's
       * own return home at revert_at, taken as its route, before the
       * rule's end it failed): the alarm stands until that version is
       * acknowledged. */
      e->eval_dirty = true;
      d->state = DIR_PENDING;
      d->resends = 0;
      engine_send(e, i, SEND_RETRY_FAILED);
    }
  }
  e->dirs_unsettled = unsettled;
}
