/* swarm_retry.c: where a simulated agent's next attempt goes (see
 * swarm_retry.h). No I/O. */
#include "swarm_retry.h"

sw_retry_t sw_retry_next(bool redirect, unsigned hint_idx, unsigned redirects, unsigned idx,
                         unsigned naddrs) {
  sw_retry_t r = {.idx = idx, .use_redirect = false, .at_once = false, .redirects = redirects};
  if (redirect) {
    /* The hinted address, in the list or not, is where the leader is. */
    if (hint_idx < naddrs) r.idx = hint_idx;
    r.use_redirect = true;
    if (redirects < SW_MAX_REDIRECTS) {
      r.at_once = true;
      r.redirects = redirects + 1;
    }
    return r;
  }
  r.idx = naddrs ? (idx + 1) % naddrs : 0;
  return r;
}
