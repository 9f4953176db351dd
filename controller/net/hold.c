/* hold: see hold.h. */
#include "hold.h"

hold_verdict_t hold_decide(const hold_view_t *v, uint64_t held_renewals) {
  if (v->stopping) return HOLD_SEND;
  if (v->leading) return HOLD_ADMIT;
  /* Electing: nobody named, or the one named may be dead. */
  if (!v->leader_named || v->suspect) return HOLD_KEEP;
  /* Named and fresh: alive only once renewed after the link arrived. A
   * counter that went back (it cannot: it only grows) keeps the link. */
  if (v->renewals >= held_renewals && v->renewals - held_renewals >= HOLD_PROOF_RENEWALS)
    return HOLD_SEND;
  return HOLD_KEEP;
}

uint64_t hold_expire_after_ms(uint64_t lease_ms) {
  return lease_ms + 2 * (lease_ms / 4) + HOLD_ELECTION_WORK_MS;
}
