/* route: where a site's calls are answered — the content of a directive —
 * with its validation and JSON form (used for the agent's persisted state
 * and the controller's directive records). One definition for everyone.
 *
 * A route is a list of (site, permille) shares summing to 1000, e.g.
 * {shaanxi: 1000} or {hubei: 700, henan: 300}. A hub's route additionally
 * lists the inbound sources that send it calls and the share each sends. */
#ifndef NIRC_ROUTE_H
#define NIRC_ROUTE_H

#include "nirc.pb-c.h"
#include "scenario.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_MAX_SHARES  8
#define ROUTE_MAX_INBOUND 64

typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint32_t permille;
} route_share_t;

typedef struct {
  uint64_t epoch, version; /* (0, 0): never set by a controller */
  route_share_t share[ROUTE_MAX_SHARES];
  unsigned n_share;
  route_share_t inbound[ROUTE_MAX_INBOUND]; /* site = source, permille = its share sent here */
  unsigned n_inbound;
  int64_t revert_at_ms; /* business clock; 0: open-ended */
  char reason[128];
} route_t;

/* The reason an agent gives the route it went home to by itself when its
 * directive's revert_at passed (same epoch and version as that
 * directive): the controller recognises such a return by it. */
#define ROUTE_REASON_REVERTED "revert_at reached"

/* {self: 1000}, no inbound, epoch/version 0. */
void route_home(route_t *r, const char *self);
/* Shares sum to 1000, 1..ROUTE_MAX_SHARES entries, valid distinct slugs,
 * no zero shares; inbound entries valid and distinct, 1..1000 each.
 * 0 or NIRC_EINVAL with a reason. */
int route_validate(const route_t *r, char *err, size_t errlen);
/* Permille of `site` in the route (0 if absent). */
uint32_t route_share_of(const route_t *r, const char *site);
/* True when both route calls the same way (shares and inbound, order
 * ignored); epoch, version, revert_at and reason are not compared. */
bool route_same(const route_t *a, const route_t *b);
/* True when both send calls the same way (shares only, order ignored). */
bool route_shares_same(const route_t *a, const route_t *b);
/* *dst = *src, copying only the entries in use: a route_t is 2.7 KB, most
 * of it the inbound list a source never fills, and the engine copies one
 * per site on every evaluation. Entries of dst past n_share and n_inbound
 * are left as they were (nothing reads them). */
void route_copy(route_t *dst, const route_t *src);
/* "home", "shaanxi", "hubei 700‰, henan 300‰" */
void route_format(const route_t *r, const char *self, char *buf, size_t len);
/* Newer in (epoch, version) order: >0 if a is newer than b. */
int route_compare_version(const route_t *a, const route_t *b);

/* Conversions. from_directive copies and checks sizes (NIRC_EINVAL if the
 * peer sent more entries than fit, or strings too long). from_json returns
 * NIRC_EINVAL for a record that is not a valid route, NIRC_ENOMEM when
 * memory ran out while reading it. */
int route_from_directive(const Nirc__Directive *d, route_t *out, char *err, size_t errlen);

/* Protobuf storage for one route: the arrays a Nirc__Directive points into.
 * Lives as long as the Directive that borrows it (usually on the stack). */
typedef struct {
  Nirc__RouteShare share[ROUTE_MAX_SHARES], *share_p[ROUTE_MAX_SHARES];
  Nirc__RouteShare inbound[ROUTE_MAX_INBOUND], *inbound_p[ROUTE_MAX_INBOUND];
  char *inbound_names[ROUTE_MAX_INBOUND];
} route_pb_t;
/* Fills d's epoch, version, revert_at_ms, reason, route and inbound (and
 * inbound_sources: the inbound sites' names) from r. d must be initialised
 * (NIRC__DIRECTIVE__INIT); pointers in d borrow from r and pb. */
void route_to_directive(const route_t *r, route_pb_t *pb, Nirc__Directive *d);
json_t *route_to_json(const route_t *r);
int route_from_json(const json_t *j, route_t *out, char *err, size_t errlen);

#endif
