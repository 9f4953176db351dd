#include "statusq.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

bool statusq_problem(const statusq_site_t *v) {
  return v->state != SITE_ONLINE || v->pbx_unreadable || v->excluded || v->has_note || v->alarmed;
}

/* Whether the route is known to send calls (a non-zero share) to another
 * site. */
static bool statusq_routed_away(const statusq_site_t *v) {
  if (v->route_unknown) return false;
  for (unsigned k = 0; k < v->n_share; k++)
    if (v->share[k].permille && strcmp(v->share[k].site, v->slug) != 0) return true;
  return false;
}

static bool statusq_sends_to(const statusq_site_t *v, const char *hub) {
  if (strcmp(v->slug, hub) == 0) return false; /* home is not "routed to" */
  if (v->route_unknown) return false;          /* not known: counted apart */
  for (unsigned k = 0; k < v->n_share; k++)
    if (v->share[k].permille && strcmp(v->share[k].site, hub) == 0) return true;
  return false;
}

static bool statusq_match(const statusq_site_t *v, uint32_t senders, const statusq_filter_t *f) {
  if (f->only && *f->only && strcmp(f->only, v->slug) != 0) return false;
  if (f->states && !(f->states & (1u << v->state))) return false;
  if (f->prefix && *f->prefix && strncmp(v->slug, f->prefix, strlen(f->prefix)) != 0) return false;
  if (f->problems && !statusq_problem(v)) return false;
  if (f->moved && !statusq_routed_away(v) && senders == 0) return false;
  if (f->hub && *f->hub && !statusq_sends_to(v, f->hub)) return false;
  return true;
}

int statusq_run(const statusq_site_t *v, size_t n, statusq_find_fn find, void *ctx,
                const statusq_filter_t *f, statusq_result_t *out) {
  memset(out, 0, sizeof *out);
  out->senders = calloc(n ? n : 1, sizeof *out->senders);
  /* Rows: the page, or every site when there is no limit. */
  size_t cap = f->limit && f->limit < n ? f->limit : n;
  out->rows = calloc(cap ? cap : 1, sizeof *out->rows);
  if (!out->senders || !out->rows) {
    statusq_result_free(out);
    return NIRC_ENOMEM;
  }
  /* Senders first: --moved and "hub for N sites" need them for every
   * site, whichever rows are shown. One lookup per share: linear. */
  for (size_t i = 0; i < n; i++) {
    const statusq_site_t *s = &v[i];
    if (s->removed || s->route_unknown) continue; /* no known sender */
    for (unsigned k = 0; k < s->n_share; k++) {
      const route_share_t *sh = &s->share[k];
      if (!sh->permille || strcmp(sh->site, s->slug) == 0) continue;
      size_t t = find(ctx, sh->site);
      if (t < n && !v[t].removed) out->senders[t]++;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const statusq_site_t *s = &v[i];
    if (s->removed) continue;
    out->live++;
    out->route_unknown += s->route_unknown;
    if ((unsigned)s->state < STATUSQ_NSTATES) out->count[s->state]++;
    if (!statusq_match(s, out->senders[i], f)) continue;
    if (out->matched >= f->offset && out->n_rows < cap) out->rows[out->n_rows++] = i;
    out->matched++;
  }
  return 0;
}

void statusq_result_free(statusq_result_t *r) {
  free(r->rows);
  free(r->senders);
  memset(r, 0, sizeof *r);
}

uint32_t statusq_state_bit(const char *w) {
  if (strcmp(w, "online") == 0) return 1u << SITE_ONLINE;
  if (strcmp(w, "stale") == 0) return 1u << SITE_STALE;
  if (strcmp(w, "offline") == 0) return 1u << SITE_OFFLINE;
  if (strcmp(w, "never") == 0 || strcmp(w, "never-seen") == 0) return 1u << SITE_NEVER_SEEN;
  return 0;
}
