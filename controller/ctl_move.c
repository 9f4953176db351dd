/* ctl_move: nircctl's words for a move's outcome (see ctl_move.h). */
#include "ctl_move.h"

#include "ctl_args.h"
#include "safetext.h"

#include <string.h>

ctl_move_verdict_t ctl_move_verdict(const Nirc__MoveReply *m) {
  if (m->applied > 0) return m->failed || m->pending ? CTL_MOVE_PARTIAL : CTL_MOVE_APPLIED;
  if (m->failed > 0) return m->pending ? CTL_MOVE_NOT_YET : CTL_MOVE_NOT_APPLIED;
  return m->pending ? CTL_MOVE_PENDING : CTL_MOVE_APPLIED;
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

void ctl_move_print(FILE *out, const Nirc__MoveReply *m) {
  for (size_t i = 0; i < m->n_outcomes; i++) {
    const Nirc__SiteOutcome *o = m->outcomes[i];
    if (o->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) continue;
    char site[128], detail[1024];
    safetext_escape(o->site, site, sizeof site);
    safetext_escape(o->detail, detail, sizeof detail);
    fprintf(out, "  %-12s %s: %s\n", site, ctl_move_outcome_word(o), detail);
  }
  if (m->cutover_id) fprintf(out, "cutover %llu: ", (unsigned long long)m->cutover_id);
  fprintf(out, "%u applied, %u failed", m->applied, m->failed);
  if (m->pending) fprintf(out, ", %u pending", m->pending);
  fprintf(out, " in %lld ms\n", (long long)m->elapsed_ms);
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
    fprintf(err,
            "nircctl: not applied: no site applied it, all %u failed (the lines above say "
            "why): %s\n",
            m->failed, see);
    return;
  case CTL_MOVE_NOT_YET:
    fprintf(err,
            "nircctl: not applied: no site applied it yet; %u failed, %u pending (the lines above "
            "say why): %s\n",
            m->failed, m->pending, see);
    return;
  }
}
