#include "route.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

void route_home(route_t *r, const char *self) {
  memset(r, 0, sizeof *r);
  nirc_strlcpy(r->share[0].site, self, sizeof r->share[0].site);
  r->share[0].permille = 1000;
  r->n_share = 1;
}

int route_validate(const route_t *r, char *err, size_t errlen) {
  if (r->n_share == 0 || r->n_share > ROUTE_MAX_SHARES) {
    snprintf(err, errlen, "a route needs 1 to %d shares, got %u", ROUTE_MAX_SHARES, r->n_share);
    return NIRC_EINVAL;
  }
  uint32_t sum = 0;
  for (unsigned i = 0; i < r->n_share; i++) {
    const route_share_t *s = &r->share[i];
    if (!nirc_slug_valid(s->site)) {
      snprintf(err, errlen, "route names an invalid site '%.40s'", s->site);
      return NIRC_EINVAL;
    }
    if (s->permille == 0 || s->permille > 1000) {
      snprintf(err, errlen, "share of %s is %u permille; each share must be 1-1000", s->site,
               s->permille);
      return NIRC_EINVAL;
    }
    for (unsigned j = 0; j < i; j++) {
      if (strcmp(r->share[j].site, s->site) == 0) {
        snprintf(err, errlen, "route lists %s twice", s->site);
        return NIRC_EINVAL;
      }
    }
    sum += s->permille;
  }
  if (sum != 1000) {
    snprintf(err, errlen, "route shares sum to %u permille, not 1000", sum);
    return NIRC_EINVAL;
  }
  if (r->n_inbound > ROUTE_MAX_INBOUND) {
    snprintf(err, errlen, "too many inbound sources (%u)", r->n_inbound);
    return NIRC_EINVAL;
  }
  for (unsigned i = 0; i < r->n_inbound; i++) {
    const route_share_t *s = &r->inbound[i];
    if (!nirc_slug_valid(s->site) || s->permille == 0 || s->permille > 1000) {
      snprintf(err, errlen, "inbound entry %u ('%.40s', %u permille) is invalid", i, s->site,
               s->permille);
      return NIRC_EINVAL;
    }
    for (unsigned j = 0; j < i; j++) {
      if (strcmp(r->inbound[j].site, s->site) == 0) {
        snprintf(err, errlen, "inbound lists %s twice", s->site);
        return NIRC_EINVAL;
      }
    }
  }
  return 0;
}

uint32_t route_share_of(const route_t *r, const char *site) {
  for (unsigned i = 0; i < r->n_share; i++)
    if (strcmp(r->share[i].site, site) == 0) return r->share[i].permille;
  return 0;
}

static bool route_list_same(const route_share_t *a, unsigned na, const route_share_t *b,
                            unsigned nb) {
  if (na != nb) return false;
  for (unsigned i = 0; i < na; i++) {
    bool found = false;
    for (unsigned j = 0; j < nb && !found; j++)
      found = strcmp(a[i].site, b[j].site) == 0 && a[i].permille == b[j].permille;
    if (!found) return false;
  }
  return true;
}

bool route_shares_same(const route_t *a, const route_t *b) {
  return route_list_same(a->share, a->n_share, b->share, b->n_share);
}

void route_copy(route_t *dst, const route_t *src) {
  if (dst == src) return;
  unsigned ns = src->n_share < ROUTE_MAX_SHARES ? src->n_share : ROUTE_MAX_SHARES;
  unsigned ni = src->n_inbound < ROUTE_MAX_INBOUND ? src->n_inbound : ROUTE_MAX_INBOUND;
  dst->epoch = src->epoch;
  dst->version = src->version;
  memcpy(dst->share, src->share, ns * sizeof src->share[0]);
  dst->n_share = src->n_share;
  memcpy(dst->inbound, src->inbound, ni * sizeof src->inbound[0]);
  dst->n_inbound = src->n_inbound;
  dst->revert_at_ms = src->revert_at_ms;
  memcpy(dst->reason, src->reason, sizeof dst->reason);
}

bool route_same(const route_t *a, const route_t *b) {
  return route_list_same(a->share, a->n_share, b->share, b->n_share) &&
         route_list_same(a->inbound, a->n_inbound, b->inbound, b->n_inbound);
}

void route_format(const route_t *r, const char *self, char *buf, size_t len) {
  buf[0] = '\0';
  if (r->n_share == 1 && r->share[0].permille == 1000) {
    snprintf(buf, len, "%s", strcmp(r->share[0].site, self) == 0 ? "home" : r->share[0].site);
    return;
  }
  size_t used = 0;
  for (unsigned i = 0; i < r->n_share; i++) {
    int n = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", r->share[i].site,
                     r->share[i].permille);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
  }
}

int route_compare_version(const route_t *a, const route_t *b) {
  if (a->epoch != b->epoch) return a->epoch > b->epoch ? 1 : -1;
  if (a->version != b->version) return a->version > b->version ? 1 : -1;
  return 0;
}

static int route_copy_share(route_share_t *dst, const Nirc__RouteShare *src, char *err,
                            size_t errlen) {
  if (!src->site || nirc_strlcpy(dst->site, src->site, sizeof dst->site) >= sizeof dst->site) {
    snprintf(err, errlen, "a route entry has a missing or over-long site name");
    return NIRC_EINVAL;
  }
  dst->permille = src->permille;
  return 0;
}

int route_from_directive(const Nirc__Directive *d, route_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (d->n_route > ROUTE_MAX_SHARES) {
    snprintf(err, errlen, "directive has %zu shares; at most %d", d->n_route, ROUTE_MAX_SHARES);
    return NIRC_EINVAL;
  }
  if (d->n_inbound > ROUTE_MAX_INBOUND) {
    snprintf(err, errlen, "directive has %zu inbound sources; at most %d", d->n_inbound,
             ROUTE_MAX_INBOUND);
    return NIRC_EINVAL;
  }
  /* The protocol carries uint64, the controller's database and the state
   * file store a signed 64-bit integer: a value above INT64_MAX would be
   * read back negative (once as -1, and the agent lost its route), so it
   * is refused here, where every directive and Hello route comes in. */
  if (d->epoch > INT64_MAX || d->version > INT64_MAX) {
    snprintf(err, errlen, "epoch %llu / version %llu out of range: at most %lld",
             (unsigned long long)d->epoch, (unsigned long long)d->version, (long long)INT64_MAX);
    return NIRC_ERANGE;
  }
  out->epoch = d->epoch;
  out->version = d->version;
  out->revert_at_ms = d->revert_at_ms;
  nirc_strlcpy_utf8(out->reason, d->reason ? d->reason : "", sizeof out->reason);
  for (size_t i = 0; i < d->n_route; i++)
    if (route_copy_share(&out->share[out->n_share++], d->route[i], err, errlen)) return NIRC_EINVAL;
  for (size_t i = 0; i < d->n_inbound; i++)
    if (route_copy_share(&out->inbound[out->n_inbound++], d->inbound[i], err, errlen))
      return NIRC_EINVAL;
  return 0;
}

/* One list of (site, permille) entries as RouteShares pointing into it. */
static void route_list_to_pb(const route_share_t *l, unsigned n, Nirc__RouteShare *pb,
                             Nirc__RouteShare **pp) {
  for (unsigned i = 0; i < n; i++) {
    nirc__route_share__init(&pb[i]);
    pb[i].site = (char *)l[i].site;
    pb[i].permille = l[i].permille;
    pp[i] = &pb[i];
  }
}

void route_to_directive(const route_t *r, route_pb_t *pb, Nirc__Directive *d) {
  d->epoch = r->epoch;
  d->version = r->version;
  d->revert_at_ms = r->revert_at_ms;
  d->reason = (char *)r->reason;
  route_list_to_pb(r->share, r->n_share, pb->share, pb->share_p);
  d->route = pb->share_p;
  d->n_route = r->n_share;
  route_list_to_pb(r->inbound, r->n_inbound, pb->inbound, pb->inbound_p);
  for (unsigned i = 0; i < r->n_inbound; i++)
    pb->inbound_names[i] = (char *)r->inbound[i].site;
  d->inbound = pb->inbound_p;
  d->n_inbound = r->n_inbound;
  d->inbound_sources = pb->inbound_names;
  d->n_inbound_sources = r->n_inbound;
}

static json_t *route_list_json(const route_share_t *l, unsigned n) {
  json_t *a = json_array();
  for (unsigned i = 0; a && i < n; i++) {
    /* All or nothing: a list missing an entry is another route. */
    if (json_array_append_new(a, json_pack("{s:s, s:I}", "site", l[i].site, "permille",
                                           (json_int_t)l[i].permille)) != 0) {
      json_decref(a);
      a = NULL;
    }
  }
  return a;
}

json_t *route_to_json(const route_t *r) {
  return json_pack("{s:I, s:I, s:o, s:o, s:I, s:s}", "epoch", (json_int_t)r->epoch, "version",
                   (json_int_t)r->version, "route", route_list_json(r->share, r->n_share),
                   "inbound", route_list_json(r->inbound, r->n_inbound), "revert_at_ms",
                   (json_int_t)r->revert_at_ms, "reason", r->reason);
}

static int route_list_from_json(const json_t *a, route_share_t *l, unsigned *n, unsigned max,
                                const char *what, char *err, size_t errlen) {
  if (!json_is_array(a) || json_array_size(a) > max) {
    snprintf(err, errlen, "'%s' must be an array of at most %u entries", what, max);
    return NIRC_EINVAL;
  }
  *n = 0;
  size_t i;
  json_t *e;
  json_array_foreach(a, i, e) {
    const char *site = NULL;
    json_int_t pm = -1;
    json_error_t je;
    int urc = json_unpack_ex(e, &je, 0, "{s:s, s:I}", "site", &site, "permille", &pm);
    if (urc != 0 && json_error_code(&je) == json_error_out_of_memory) {
      snprintf(err, errlen, "out of memory reading '%s'", what);
      return NIRC_ENOMEM;
    }
    if (urc != 0 || pm < 0 || pm > 1000 ||
        nirc_strlcpy(l[*n].site, site, sizeof l[*n].site) >= sizeof l[*n].site) {
      snprintf(err, errlen, "'%s' entry %zu is not {site, permille}", what, i);
      return NIRC_EINVAL;
    }
    l[*n].permille = (uint32_t)pm;
    (*n)++;
  }
  return 0;
}

int route_from_json(const json_t *j, route_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  json_int_t epoch, version, revert;
  json_t *route, *inbound;
  const char *reason;
  json_error_t je;
  if (json_unpack_ex((json_t *)j, &je, 0, "{s:I, s:I, s:o, s:o, s:I, s:s}", "epoch", &epoch,
                     "version", &version, "route", &route, "inbound", &inbound, "revert_at_ms",
                     &revert, "reason", &reason) != 0) {
    snprintf(err, errlen, "not a route record: %s", je.text);
    /* Running out of memory says nothing about the record: the caller must
     * not take it for a corrupt one. */
    return json_error_code(&je) == json_error_out_of_memory ? NIRC_ENOMEM : NIRC_EINVAL;
  }
  if (epoch < 0 || version < 0) {
    snprintf(err, errlen, "negative epoch or version");
    return NIRC_EINVAL;
  }
  out->epoch = (uint64_t)epoch;
  out->version = (uint64_t)version;
  out->revert_at_ms = revert;
  nirc_strlcpy_utf8(out->reason, reason, sizeof out->reason);
  int rc = route_list_from_json(route, out->share, &out->n_share, ROUTE_MAX_SHARES, "route", err,
                                errlen);
  if (rc == 0)
    rc = route_list_from_json(inbound, out->inbound, &out->n_inbound, ROUTE_MAX_INBOUND, "inbound",
                              err, errlen);
  if (rc != 0) return rc;
  return route_validate(out, err, errlen);
}
