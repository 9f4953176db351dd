/* ctl_move: nircctl's words for a move's outcome (see ctl_move.h). */
#include "ctl_move.h"

#include "ctl_args.h"
#include "ctl_history.h"
#include "safetext.h"

#include <string.h>

/* The counts a verdict rests on. A hub's "applied" moves no calls (it
 * expects calls its sources send): when the reply names any source, only
 * the sources' applications count as the move applied, while every
 * failure and pending site, hub or source, still counts. A reply with no
 * source (only hubs changed, or from a controller that does not say the
 * role) is judged on all its sites. */
typedef struct {
  unsigned applied, failed, pending, hubs_applied;
} ctl_move_counts_t;

static ctl_move_counts_t ctl_move_counts(const Nirc__MoveReply *m) {
  ctl_move_counts_t c = {m->applied, m->failed, m->pending, 0};
  bool any_source = false;
  unsigned src_applied = 0, hub_applied = 0;
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    bool applied = !o->pending && o->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    any_source |= !o->hub;
    if (applied && o->hub) hub_applied++;
    if (applied && !o->hub) src_applied++;
  }
  if (any_source && m->n_outcomes) {
    c.applied = src_applied;
    c.hubs_applied = hub_applied;
  }
  return c;
}

ctl_move_verdict_t ctl_move_verdict(const Nirc__MoveReply *m) {
  ctl_move_counts_t c = ctl_move_counts(m);
  if (c.applied > 0) return c.failed || c.pending ? CTL_MOVE_PARTIAL : CTL_MOVE_APPLIED;
  if (c.failed > 0) return c.pending ? CTL_MOVE_NOT_YET : CTL_MOVE_NOT_APPLIED;
  return c.pending ? CTL_MOVE_PENDING : CTL_MOVE_APPLIED;
}

int ctl_move_exit(const Nirc__MoveReply *m, bool not_durable) {
  switch (ctl_move_verdict(m)) {
  case CTL_MOVE_APPLIED: return not_durable ? EXIT_PARTIAL : EXIT_DONE;
  case CTL_MOVE_NOT_APPLIED: return EXIT_NOT_APPLIED;
  /* A pending site may still apply it: the outcome is not final. */
  default: return EXIT_PARTIAL;
  }
}

const char *ctl_move_outcome_word(const Nirc__SiteOutcome *o) {
  if (o->pending) return "pending";
  switch (o->result) {
  case NIRC__ACK_RESULT__ACK_RESULT_APPLIED: return "applied";
  case NIRC__ACK_RESULT__ACK_RESULT_REJECTED: return "rejected";
  case NIRC__ACK_RESULT__ACK_RESULT_FAILED: return "failed";
  default: return "unknown";
  }
}

void ctl_move_print(FILE *out, const Nirc__MoveReply *m, const char *tz) {
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    bool applied = o->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    /* An apply nobody read back is not the same statement as "applied":
     * it gets its line too. */
    if (applied && !o->unverified) continue;
    char site[128], detail[1024];
    safetext_escape(o->site, site, sizeof site);
    safetext_escape(o->detail, detail, sizeof detail);
    fprintf(out, "  %-12s %s%s: %s\n", site, ctl_move_outcome_word(o),
            applied && o->unverified         ? ", unverified (no read-back of the PBX)"
            : !applied && o->outcome_unknown ? ", outcome unknown (the PBX may have taken it)"
                                             : "",
            detail);
  }
  if (m->cutover_id) fprintf(out, "cutover %llu: ", (unsigned long long)m->cutover_id);
  fprintf(out, "%u applied, %u failed", m->applied, m->failed);
  if (m->pending) fprintf(out, ", %u pending", m->pending);
  fprintf(out, " in %lld ms", (long long)m->elapsed_ms);
  /* When it ends, as status and next say it: the operator who typed --for
   * sees the end the controller took. */
  bool ended = m->cutover_ended && *m->cutover_ended;
  if (m->cutover_id && ended) {
    /* Restored or expired while its sites acknowledged: the outcomes above
     * are of the move, the cutover itself is over. */
    char end[40] = "", how[32];
    safetext_escape(m->cutover_ended, how, sizeof how);
    if (m->expires_ms) ctl_history_time(m->expires_ms, tz, end, sizeof end);
    if (end[0])
      fprintf(out, "; since ended: %s at %.16s (%s)", how, end, tz);
    else
      fprintf(out, "; since ended: %s (nircctl history says by whom)", how);
  } else if (m->cutover_id && m->expires_ms) {
    char end[40];
    ctl_history_time(m->expires_ms, tz, end, sizeof end);
    fprintf(out, "; until %.16s (%s)", end, tz);
  } else if (m->cutover_id) {
    fprintf(out, "; open-ended (`nircctl restore --cutover %llu` ends it)",
            (unsigned long long)m->cutover_id);
  }
  fputc('\n', out);
}

/* "hubei, shaanxi": the sites that applied, so that "partially applied"
 * says which part (often only the hub, which took on the inbound calls of
 * sources that then failed). */
static void ctl_move_applied_sites(const Nirc__MoveReply *m, char *buf, size_t len) {
  size_t used = 0, shown = 0, total = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    if (o->pending || o->result != NIRC__ACK_RESULT__ACK_RESULT_APPLIED) continue;
    if (total++ >= 5) continue; /* counted for "and N more" */
    char site[128];
    safetext_escape(o->site, site, sizeof site);
    int n = snprintf(buf + used, len - used, "%s%s", shown ? ", " : "", site);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
    shown++;
  }
  if (total > shown) snprintf(buf + used, len - used, " and %zu more", total - shown);
}

/* The sites whose agent could not tell whether its PBX took the route (an
 * apply killed at its timeout with no read-back: SiteOutcome.outcome_unknown,
 * from the agent's ack), or 0: of them NIRC cannot say "no calls moved".
 * The mark, not the detail's words: no released agent says "outcome
 * unknown" without setting it. */
static size_t ctl_move_unknown_sites(const Nirc__MoveReply *m, char *buf, size_t len) {
  size_t used = 0, n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    if (o->pending || o->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED || !o->outcome_unknown)
      continue;
    char site[128];
    safetext_escape(o->site, site, sizeof site);
    int k = snprintf(buf + used, len - used, "%s%s", n ? ", " : "", site);
    if (k > 0 && (size_t)k < len - used) used += (size_t)k;
    n++;
  }
  return n;
}

void ctl_move_say(FILE *err, const Nirc__MoveReply *m) {
  static const char see[] = "see `nircctl alarms` and `nircctl status`";
  static const char wait[] = "an alarm stands until each is applied; `nircctl site SLUG` shows it";
  char at[400];
  switch (ctl_move_verdict(m)) {
  case CTL_MOVE_APPLIED: return;
  case CTL_MOVE_PARTIAL:
    ctl_move_applied_sites(m, at, sizeof at);
    fprintf(err, "nircctl: partially applied: applied at %s", at);
    if (m->failed) fprintf(err, "; %u failed", m->failed);
    if (m->pending) fprintf(err, "; %u pending", m->pending);
    if (m->failed)
      fprintf(err, " (the lines above say why): %s\n", see);
    else
      fprintf(err, " (the lines above say why; %s)\n", wait);
    return;
  case CTL_MOVE_PENDING:
    fprintf(err, "nircctl: not applied yet: all %u pending (the lines above say why; %s)\n",
            m->pending, wait);
    return;
  case CTL_MOVE_NOT_APPLIED:
    if (ctl_move_unknown_sites(m, at, sizeof at)) {
      fprintf(err,
              "nircctl: not applied: outcome unknown at %s: the PBX may have taken the route and "
              "could not be read back (the lines above say why); %u failed: %s\n",
              at, m->failed, see);
      return;
    }
    if (ctl_move_counts(m).hubs_applied) {
      ctl_move_applied_sites(m, at, sizeof at);
      fprintf(err,
              "nircctl: not applied: no calls moved: no source applied it, %u failed (the lines "
              "above say why); only the hub part was applied, at %s: %s\n",
              m->failed, at, see);
      return;
    }
    fprintf(err,
            "nircctl: not applied: no site applied it, all %u failed (the lines above say "
            "why): %s\n",
            m->failed, see);
    return;
  case CTL_MOVE_NOT_YET:
    fprintf(err,
            "nircctl: not applied: no %s applied it yet; %u failed, %u pending (the lines above "
            "say why): %s\n",
            ctl_move_counts(m).hubs_applied ? "source" : "site", m->failed, m->pending, see);
    return;
  }
}
