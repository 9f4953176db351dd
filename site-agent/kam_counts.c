#include "kam_counts.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* Kamailio's counters are per process lifetime: a larger value is garbage. */
#define KAMCOUNTS_VALUE_MAX 4000000000ULL
#define KAMCOUNTS_PREFIX    "sent::"

static kamcounts_entry_t *kamcounts_find(kamcounts_t *c, const char *site) {
  for (unsigned i = 0; i < c->n; i++)
    if (strcmp(c->v[i].site, site) == 0) return &c->v[i];
  return NULL;
}

uint64_t kamcounts_get(const kamcounts_t *c, const char *site) {
  for (unsigned i = 0; i < c->n; i++)
    if (strcmp(c->v[i].site, site) == 0) return c->v[i].sent;
  return 0;
}

/* One item of a slot: "sent::<site>" with an integer value. */
static int kamcounts_item(const json_t *item, kamcounts_t *out, char *err, size_t errlen) {
  const json_t *name = json_object_get(item, "name"), *value = json_object_get(item, "value");
  if (!json_is_string(name)) {
    snprintf(err, errlen, "an htable.dump item has no name");
    return NIRC_EPROTOCOL;
  }
  const char *n = json_string_value(name);
  size_t plen = strlen(KAMCOUNTS_PREFIX);
  if (strncmp(n, KAMCOUNTS_PREFIX, plen) != 0) return 0; /* not ours: ignored */
  const char *site = n + plen;
  if (!json_is_integer(value) || json_integer_value(value) < 0 ||
      (uint64_t)json_integer_value(value) > KAMCOUNTS_VALUE_MAX) {
    snprintf(err, errlen, "an htable.dump counter is not a count");
    return NIRC_EPROTOCOL;
  }
  uint64_t v = (uint64_t)json_integer_value(value);
  if (strcmp(site, "unknown") == 0) {
    out->unknown = v;
    return 0;
  }
  if (!nirc_slug_valid(site)) {
    snprintf(err, errlen, "an htable.dump counter is not named sent::<site>");
    return NIRC_EPROTOCOL;
  }
  if (kamcounts_find(out, site)) {
    snprintf(err, errlen, "htable.dump names a site twice");
    return NIRC_EPROTOCOL;
  }
  if (out->n == KAMCOUNTS_MAX) {
    snprintf(err, errlen, "htable.dump counts more than %d sites", KAMCOUNTS_MAX);
    return NIRC_EPROTOCOL;
  }
  kamcounts_entry_t *e = &out->v[out->n++];
  nirc_strlcpy(e->site, site, sizeof e->site);
  e->sent = v;
  return 0;
}

int kamcounts_parse(const json_t *result, kamcounts_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  size_t i, j;
  const json_t *entry, *item;
  if (!json_is_array(result)) {
    snprintf(err, errlen, "Kamailio's htable.dump answer is not a list");
    return NIRC_EPROTOCOL;
  }
  json_array_foreach(result, i, entry) {
    const json_t *slot = json_object_get(entry, "slot");
    if (!json_is_array(slot)) {
      snprintf(err, errlen, "Kamailio's htable.dump answer is not understood");
      return NIRC_EPROTOCOL;
    }
    json_array_foreach(slot, j, item) {
      if (!json_is_object(item)) {
        snprintf(err, errlen, "Kamailio's htable.dump answer is not understood");
        return NIRC_EPROTOCOL;
      }
      int rc = kamcounts_item(item, out, err, errlen);
      if (rc) return rc;
    }
  }
  return 0;
}

static uint32_t kamcounts_clamp(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

bool kamcounts_interval(const kamcounts_t *base, const kamcounts_t *now, const char *self,
                        kamcounts_delta_t *out) {
  /* Counters only grow while Kamailio runs; one that went back or vanished
   * means it restarted, and what it counted since is all new. */
  bool restarted = now->unknown < base->unknown;
  for (unsigned i = 0; i < base->n && !restarted; i++)
    if (kamcounts_get(now, base->v[i].site) < base->v[i].sent) restarted = true;
  static const kamcounts_t zero;
  const kamcounts_t *from = restarted ? &zero : base;
  uint64_t away = now->unknown - from->unknown;
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < now->n; i++) {
    uint64_t d = now->v[i].sent - kamcounts_get(from, now->v[i].site);
    if (strcmp(now->v[i].site, self) == 0) {
      out->home = kamcounts_clamp(d);
      continue;
    }
    away += d;
    if (d == 0 || out->n_to == KAMCOUNTS_ROUTED_MAX) continue;
    kamcounts_entry_t *r = &out->to[out->n_to++];
    nirc_strlcpy(r->site, now->v[i].site, sizeof r->site);
    r->sent = d;
  }
  out->away = kamcounts_clamp(away);
  return restarted;
}
