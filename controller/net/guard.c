#include "guard.h"

#include "err.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Distinct failures remembered per address and interval (the cap on
 * hs_shown_per_addr). */
#define GUARD_HS_SHOWN_MAX 8

typedef struct {
  char identity[160];
  unsigned links;
  double tokens;
  int64_t refill_ms;
} guard_op_t;

typedef struct {
  char addr[64];
  int64_t start_ms, last_ms; /* the interval's start; the last failure */
  unsigned shown;            /* stored one by one in this interval */
  uint64_t hashes[GUARD_HS_SHOWN_MAX];
  uint64_t counted; /* not stored, waiting for the summary */
  char last_reason[256];
} guard_hs_t;

struct guard {
  guard_opts_t o;
  guard_op_t *ops; /* owned */
  size_t nops, capops;
  guard_hs_t *hs; /* owned; at most o.hs_max_addrs + 1 (the "other" entry) */
  size_t nhs;
  uint64_t aggregated;
};

int guard_new(const guard_opts_t *opts, guard_t **out) {
  guard_t *g = calloc(1, sizeof *g);
  if (!g) return NIRC_ENOMEM;
  g->o = *opts;
  if (g->o.request_burst == 0) g->o.request_burst = g->o.requests_per_s ? g->o.requests_per_s : 1;
  if (g->o.hs_shown_per_addr > GUARD_HS_SHOWN_MAX) g->o.hs_shown_per_addr = GUARD_HS_SHOWN_MAX;
  if (g->o.hs_max_addrs == 0) g->o.hs_max_addrs = 1;
  g->hs = calloc((size_t)g->o.hs_max_addrs + 1, sizeof *g->hs);
  if (!g->hs) {
    free(g);
    return NIRC_ENOMEM;
  }
  *out = g;
  return 0;
}

void guard_free(guard_t *g) {
  if (!g) return;
  free(g->ops);
  free(g->hs);
  free(g);
}

/* ---- operators ---- */

static void guard_refill(const guard_t *g, guard_op_t *e, int64_t now) {
  if (now > e->refill_ms) e->tokens += (double)(now - e->refill_ms) * g->o.requests_per_s / 1000.0;
  if (e->tokens > g->o.request_burst) e->tokens = g->o.request_burst;
  e->refill_ms = now;
}

static guard_op_t *guard_op_find(const guard_t *g, const char *identity) {
  for (size_t i = 0; i < g->nops; i++)
    if (strcmp(g->ops[i].identity, identity) == 0) return &g->ops[i];
  return NULL;
}

/* Forgets identities with no link and a full bucket: they owe nothing. */
static void guard_op_prune(guard_t *g, int64_t now) {
  for (size_t i = 0; i < g->nops;) {
    guard_op_t *e = &g->ops[i];
    guard_refill(g, e, now);
    if (e->links == 0 && e->tokens >= g->o.request_burst)
      g->ops[i] = g->ops[--g->nops];
    else
      i++;
  }
}

static guard_op_t *guard_op_get(guard_t *g, const char *identity, int64_t now) {
  guard_op_t *e = guard_op_find(g, identity);
  if (e) return e;
  guard_op_prune(g, now);
  if (g->nops == g->capops) {
    size_t ncap = g->capops ? g->capops * 2 : 16;
    guard_op_t *np = realloc(g->ops, ncap * sizeof *np);
    if (!np) return NULL;
    g->ops = np;
    g->capops = ncap;
  }
  e = &g->ops[g->nops++];
  memset(e, 0, sizeof *e);
  nirc_strlcpy(e->identity, identity, sizeof e->identity);
  e->tokens = g->o.request_burst;
  e->refill_ms = now;
  return e;
}

int guard_op_open(guard_t *g, const char *identity, int64_t now_ms) {
  guard_op_t *e = guard_op_get(g, identity, now_ms);
  /* Out of memory: let the link in rather than lock every operator out;
   * the per-link limits still hold. */
  if (!e) return 0;
  if (g->o.max_links && e->links >= g->o.max_links) return NIRC_EFULL;
  e->links++;
  return 0;
}

void guard_op_close(guard_t *g, const char *identity, int64_t now_ms) {
  guard_op_t *e = guard_op_find(g, identity);
  if (e && e->links > 0) e->links--;
  (void)now_ms;
}

unsigned guard_op_links(const guard_t *g, const char *identity) {
  const guard_op_t *e = guard_op_find(g, identity);
  return e ? e->links : 0;
}

bool guard_op_take(guard_t *g, const char *identity, int64_t now_ms) {
  if (g->o.requests_per_s == 0) return true;
  guard_op_t *e = guard_op_get(g, identity, now_ms);
  if (!e) return true;
  guard_refill(g, e, now_ms);
  if (e->tokens < 1.0) return false;
  e->tokens -= 1.0;
  return true;
}

/* ---- failed handshakes ---- */

/* "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1": one entry per host. */
static void guard_host(const char *addr, char *out, size_t len) {
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    size_t n = end ? (size_t)(end - addr - 1) : strlen(addr + 1);
    if (n >= len) n = len - 1;
    memcpy(out, addr + 1, n);
    out[n] = '\0';
    return;
  }
  nirc_strlcpy(out, addr, len);
  char *colon = strchr(out, ':');
  if (colon && !strchr(colon + 1, ':')) *colon = '\0';
}

static uint64_t guard_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static guard_hs_t *guard_hs_get(guard_t *g, const char *host, int64_t now) {
  for (size_t i = 0; i < g->nhs; i++)
    if (strcmp(g->hs[i].addr, host) == 0) return &g->hs[i];
  const char *name = host;
  if (g->nhs >= g->o.hs_max_addrs) {
    /* Full: everyone else shares the last entry, so a spread-out flood
     * still costs one entry, not one per address. */
    name = GUARD_OTHER_ADDRS;
    for (size_t i = 0; i < g->nhs; i++)
      if (strcmp(g->hs[i].addr, name) == 0) return &g->hs[i];
  }
  guard_hs_t *e = &g->hs[g->nhs++];
  memset(e, 0, sizeof *e);
  nirc_strlcpy(e->addr, name, sizeof e->addr);
  e->start_ms = now;
  return e;
}

bool guard_hs_failed(guard_t *g, const char *addr, const char *reason, int64_t now_ms) {
  char host[64];
  guard_host(addr ? addr : "?", host, sizeof host);
  guard_hs_t *e = guard_hs_get(g, host, now_ms);
  if (now_ms - e->start_ms >= (int64_t)g->o.hs_interval_ms && e->counted == 0) {
    /* A new interval (the last one's summary, if any, was written). */
    e->start_ms = now_ms;
    e->shown = 0;
  }
  e->last_ms = now_ms;
  uint64_t h = guard_hash(reason ? reason : "");
  bool seen = false;
  for (unsigned i = 0; i < e->shown && !seen; i++)
    seen = e->hashes[i] == h;
  if (!seen && e->shown < g->o.hs_shown_per_addr) {
    e->hashes[e->shown++] = h;
    return true;
  }
  e->counted++;
  g->aggregated++;
  nirc_strlcpy(e->last_reason, reason ? reason : "", sizeof e->last_reason);
  return false;
}

void guard_hs_flush(guard_t *g, int64_t now_ms, bool all, guard_hs_summary_cb cb, void *arg) {
  for (size_t i = 0; i < g->nhs;) {
    guard_hs_t *e = &g->hs[i];
    bool ended = all || now_ms - e->start_ms >= (int64_t)g->o.hs_interval_ms;
    if (ended && e->counted) {
      cb(arg, e->addr, e->counted, e->last_reason, e->start_ms);
      e->counted = 0;
      e->start_ms = now_ms;
      e->shown = 0;
    }
    if (e->counted == 0 && now_ms - e->last_ms >= (int64_t)g->o.hs_interval_ms)
      g->hs[i] = g->hs[--g->nhs];
    else
      i++;
  }
}

uint64_t guard_hs_aggregated(const guard_t *g) {
  return g->aggregated;
}
