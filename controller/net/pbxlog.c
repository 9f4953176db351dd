/* pbxlog: the recent PBX events of each site (see pbxlog.h). */
#include "pbxlog.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

struct pbxlog_site {
  size_t n;
  pbxlog_event_t ev[PBXLOG_KEEP]; /* newest (largest at_ms) first */
};

int pbxlog_add(pbxlog_t *l, size_t site, const pbxlog_event_t *ev) {
  if (site >= l->n) {
    /* Sites are only added: the table grows with the registry. */
    size_t n = site + 1 > l->n * 2 ? site + 1 : l->n * 2;
    struct pbxlog_site **v = realloc(l->by_site, n * sizeof *v);
    if (!v) return NIRC_ENOMEM;
    memset(v + l->n, 0, (n - l->n) * sizeof *v);
    l->by_site = v;
    l->n = n;
  }
  struct pbxlog_site *s = l->by_site[site];
  if (!s && !(s = l->by_site[site] = calloc(1, sizeof *s))) return NIRC_ENOMEM;
  size_t at = 0;
  while (at < s->n && s->ev[at].at_ms >= ev->at_ms)
    at++;
  if (at == PBXLOG_KEEP) return 0; /* older than every one kept */
  size_t move = (s->n < PBXLOG_KEEP ? s->n : PBXLOG_KEEP - 1) - at;
  memmove(&s->ev[at + 1], &s->ev[at], move * sizeof s->ev[0]);
  s->ev[at] = *ev;
  if (s->n < PBXLOG_KEEP) s->n++;
  return 0;
}

int pbxlog_merge(pbxlog_t *l, size_t site, const pbxlog_event_t *ev) {
  const pbxlog_event_t *kept;
  size_t n = pbxlog_get(l, site, &kept);
  for (size_t k = 0; k < n; k++)
    if (kept[k].at_ms / 1000 == ev->at_ms / 1000 && strcmp(kept[k].event, ev->event) == 0) return 0;
  return pbxlog_add(l, site, ev);
}

bool pbxlog_set_state(pbxlog_t *l, pbxlog_state_t to) {
  bool ok = false;
  switch (l->state) {
  case PBXLOG_RECEIVED:
  case PBXLOG_LOAD_FAILED: ok = to == PBXLOG_LOADING; break;
  case PBXLOG_LOADING: ok = to == PBXLOG_LOADED || to == PBXLOG_LOAD_FAILED; break;
  case PBXLOG_LOADED: break;
  }
  if (!ok) return false;
  l->state = to;
  if (to == PBXLOG_LOADED) l->since_ms = l->from_ms;
  return true;
}

const char *pbxlog_state_name(pbxlog_state_t s) {
  static const char *const names[] = PBXLOG_STATE_NAMES;
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

size_t pbxlog_get(const pbxlog_t *l, size_t site, const pbxlog_event_t **out) {
  const struct pbxlog_site *s = site < l->n ? l->by_site[site] : NULL;
  *out = s ? s->ev : NULL;
  return s ? s->n : 0;
}

void pbxlog_free(pbxlog_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->by_site[i]);
  free(l->by_site);
  l->by_site = NULL;
  l->n = 0;
}
