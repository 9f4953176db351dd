#include "support/directive.h"

void tdirective_make(tdirective_t *x, const char *site, uint64_t epoch, uint64_t version,
                     const char *to, bool split, const char *reason) {
  nirc__directive__init(&x->d);
  x->d.site = (char *)site;
  x->d.epoch = epoch;
  x->d.version = version;
  x->d.reason = (char *)reason;
  for (int i = 0; i < 2; i++) {
    nirc__route_share__init(&x->shares[i]);
    x->ptrs[i] = &x->shares[i];
  }
  x->d.route = x->ptrs;
  if (split) {
    x->shares[0].site = (char *)site;
    x->shares[0].permille = 700;
    x->shares[1].site = (char *)to;
    x->shares[1].permille = 300;
    x->d.n_route = 2;
  } else {
    x->shares[0].site = (char *)to;
    x->shares[0].permille = 1000;
    x->d.n_route = 1;
  }
}
