/* admit: the decision for a new connection at the unauthenticated cap
 * (see admit.h). No I/O. */
#include "admit.h"

admit_action_t admit_decide(const admit_state_t *s) {
  if (s->nunauth < s->cap) return ADMIT_ACCEPT;
  /* A peer that sends nothing gives way: the flood's places turn over. */
  if (s->stalled) return ADMIT_EVICT;
  /* Waiting pays while handshakes move: bytes arrive on queued links, or
   * one completed lately. Measure from the later of the last completion
   * and the moment the cap filled up, so a storm that just began gets a
   * moment for its ClientHellos to be read. */
  if (s->queue_active) return ADMIT_WAIT;
  int64_t since = s->last_auth_ms > s->full_since_ms ? s->last_auth_ms : s->full_since_ms;
  if (since == 0 || s->now_ms - since < ADMIT_FLOOD_MS) return ADMIT_WAIT;
  return ADMIT_SHED;
}

bool admit_stalled(bool got_bytes, uint64_t idle_ms) {
  return idle_ms >= (got_bytes ? ADMIT_SLOW_MS : ADMIT_STALLED_MS);
}

bool admit_in_progress(bool got_bytes, uint64_t idle_ms) {
  return got_bytes && !admit_stalled(got_bytes, idle_ms);
}

const char *admit_action_name(admit_action_t a) {
  switch (a) {
  case ADMIT_ACCEPT: return "accept";
  case ADMIT_EVICT: return "evict";
  case ADMIT_WAIT: return "wait";
  case ADMIT_SHED: return "shed";
  }
  return "?";
}
