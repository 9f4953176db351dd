#include "mapgroup.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAPGROUP_MOVES_MAX 1000 /* map.c's own limit on arrows */

typedef struct {
  int64_t key; /* the grid cell (or MAPGROUP_NOWHERE) */
  size_t site;
} mapgroup_key_t;

typedef struct {
  size_t from, to; /* groups */
  unsigned permille;
  bool unverified; /* at least one of the moves it sums */
} mapgroup_arrow_t;

typedef struct {
  const char *slug;
  size_t site;
} mapgroup_slug_t;

#define MAPGROUP_NOWHERE INT64_MAX /* sites without usable coordinates: one group */

static bool mapgroup_coords_ok(const map_site_t *m) {
  return isfinite(m->lat) && isfinite(m->lon) && m->lat >= -85 && m->lat <= 85 && m->lon >= -180 &&
         m->lon <= 180;
}

static int64_t mapgroup_cell(const map_site_t *m, double deg) {
  if (!mapgroup_coords_ok(m)) return MAPGROUP_NOWHERE;
  int64_t r = (int64_t)floor((m->lat + 90) / deg), c = (int64_t)floor((m->lon + 180) / deg);
  return r * 100000 + c;
}

static int mapgroup_key_cmp(const void *a, const void *b) {
  const mapgroup_key_t *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->site < y->site ? -1 : x->site > y->site;
}

static int mapgroup_slug_cmp(const void *a, const void *b) {
  return strcmp(((const mapgroup_slug_t *)a)->slug, ((const mapgroup_slug_t *)b)->slug);
}

static int mapgroup_arrow_cmp(const void *a, const void *b) {
  const mapgroup_arrow_t *x = a, *y = b;
  if (x->from != y->from) return x->from < y->from ? -1 : 1;
  return x->to < y->to ? -1 : x->to > y->to;
}

static int mapgroup_arrow_bigger(const void *a, const void *b) {
  const mapgroup_arrow_t *x = a, *y = b;
  return x->permille > y->permille ? -1 : x->permille < y->permille;
}

/* Worse link states rank higher: a group shows its worst. */
static int mapgroup_rank(const char *link) {
  if (!link) return 2;
  if (strcmp(link, "online") == 0) return 0;
  if (strcmp(link, "stale") == 0) return 1;
  if (strcmp(link, "offline") == 0) return 3;
  return 2; /* never-seen, unknown */
}

static size_t mapgroup_site_of(const mapgroup_slug_t *idx, size_t n, const char *slug) {
  mapgroup_slug_t k = {slug, 0};
  const mapgroup_slug_t *f = slug ? bsearch(&k, idx, n, sizeof *idx, mapgroup_slug_cmp) : NULL;
  return f ? f->site : SIZE_MAX;
}

/* "20031" as "20,031". */
static void mapgroup_num(size_t n, char *buf, size_t len) {
  char raw[32];
  int l = snprintf(raw, sizeof raw, "%zu", n), o = 0;
  for (int i = 0; i < l && (size_t)o + 2 < len; i++) {
    if (i && (l - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = raw[i];
  }
  buf[o] = '\0';
}

char *mapgroup_render(const map_site_t *sites, size_t n, const map_move_t *moves, size_t nm,
                      const char *title) {
  if (!sites) n = 0;
  if (!moves) nm = 0;
  if (n <= MAPGROUP_DETAIL_MAX && nm <= MAPGROUP_MOVES_MAX)
    return map_render_svg(sites, n, moves, nm, title);
  char *svg = NULL;
  mapgroup_key_t *keys = calloc(n ? n : 1, sizeof *keys);
  size_t *group_of = calloc(n ? n : 1, sizeof *group_of);
  mapgroup_slug_t *idx = calloc(n ? n : 1, sizeof *idx);
  mapgroup_arrow_t *arr = calloc(nm ? nm : 1, sizeof *arr);
  map_site_t *g = calloc(MAPGROUP_GROUPS_MAX + 2, sizeof *g);
  size_t *count = calloc(MAPGROUP_GROUPS_MAX + 2, sizeof *count);
  char(*names)[3][96] = calloc(MAPGROUP_GROUPS_MAX + 2, sizeof *names);
  map_move_t *mv = calloc(MAPGROUP_MOVES_MAX, sizeof *mv);
  if (!keys || !group_of || !idx || !arr || !g || !count || !names || !mv) goto out;

  /* The finest grid (from half a degree, doubling) whose groups fit. */
  double deg = 0.5;
  size_t ng = 0;
  for (;;) {
    for (size_t i = 0; i < n; i++)
      keys[i] = (mapgroup_key_t){mapgroup_cell(&sites[i], deg), i};
    qsort(keys, n, sizeof *keys, mapgroup_key_cmp);
    ng = 0;
    for (size_t i = 0; i < n; i++)
      ng += i == 0 || keys[i].key != keys[i - 1].key;
    if (ng <= MAPGROUP_GROUPS_MAX || deg >= 360) break;
    deg *= 2;
  }
  /* Each group: its count, worst state, hub if any, the mean position
   * of its sites, the queue summed and the occupancy averaged over the
   * sites that measure it. */
  size_t gi = SIZE_MAX, occ_n = 0, q_known = 0, routes_unknown = 0, routes_unverified = 0;
  size_t routes_unheard = 0, held = 0;
  double occ = 0, lat = 0, lon = 0;
  for (size_t k = 0; k <= n; k++) {
    bool new_group = k == n || k == 0 || keys[k].key != keys[k - 1].key;
    if (new_group && gi != SIZE_MAX) { /* close the previous group */
      g[gi].lat = lat / count[gi];
      g[gi].lon = lon / count[gi];
      g[gi].occupancy = occ_n ? occ / occ_n : -1;
      g[gi].queue_unknown = q_known == 0;
      g[gi].queue_partial = q_known > 0 && q_known < count[gi];
      /* Why the group's load is unknown: its one site's reason, or that
       * none of its sites measured it. */
      if (occ_n == 0)
        g[gi].unknown_why = count[gi] == 1 ? sites[keys[k - 1].site].unknown_why
                                           : "not measured at any of its sites";
      const map_site_t *first = &sites[keys[k - count[gi]].site];
      for (size_t j = k - count[gi]; j < k; j++)
        if (sites[keys[j].site].is_hub) {
          first = &sites[keys[j].site];
          break;
        }
      snprintf(names[gi][0], sizeof names[gi][0], "group-%zu", gi + 1);
      if (count[gi] > 1) {
        snprintf(names[gi][1], sizeof names[gi][1], "%.60s +%zu",
                 first->name_en ? first->name_en : "", count[gi] - 1);
        snprintf(names[gi][2], sizeof names[gi][2], "%.60s +%zu",
                 first->name_zh ? first->name_zh : "", count[gi] - 1);
      } else {
        snprintf(names[gi][1], sizeof names[gi][1], "%.60s", first->name_en ? first->name_en : "");
        snprintf(names[gi][2], sizeof names[gi][2], "%.60s", first->name_zh ? first->name_zh : "");
      }
      g[gi].slug = names[gi][0];
      g[gi].name_en = names[gi][1];
      g[gi].name_zh = names[gi][2];
      if (keys[k - 1].key == MAPGROUP_NOWHERE) g[gi].lat = g[gi].lon = NAN; /* not drawn, counted */
    }
    if (k == n) break;
    if (new_group) {
      gi = gi == SIZE_MAX ? 0 : gi + 1;
      g[gi] = (map_site_t){.link = "online", .is_group = true};
      occ_n = q_known = 0;
      occ = lat = lon = 0;
    }
    const map_site_t *s = &sites[keys[k].site];
    group_of[keys[k].site] = gi;
    count[gi]++;
    if (mapgroup_coords_ok(s)) {
      lat += s->lat;
      lon += s->lon;
    }
    if (mapgroup_rank(s->link) > mapgroup_rank(g[gi].link)) g[gi].link = s->link;
    g[gi].is_hub |= s->is_hub;
    /* What the group's label counts: routes nobody confirmed. */
    g[gi].route_unknown += s->route_unknown > 0;
    g[gi].route_unverified += s->route_unverified > 0 && !s->route_unknown;
    g[gi].route_unheard += s->route_unknown > 0 && s->route_unheard > 0;
    routes_unknown += s->route_unknown > 0;
    routes_unheard += s->route_unknown > 0 && s->route_unheard > 0;
    routes_unverified += s->route_unverified > 0 && !s->route_unknown;
    g[gi].held_home += s->held_home > 0;
    held += s->held_home > 0;
    if (s->occupancy >= 0) occ += s->occupancy, occ_n++;
    if (!s->queue_unknown) g[gi].in_queue += s->in_queue, q_known++;
  }
  /* Moves between groups: the share of the source group's calls, its
   * sites weighted alike, at least 1 ‰ so a small move still shows. */
  for (size_t i = 0; i < n; i++)
    idx[i] = (mapgroup_slug_t){sites[i].slug ? sites[i].slug : "", i};
  qsort(idx, n, sizeof *idx, mapgroup_slug_cmp);
  size_t na = 0, within = 0, unknown = 0;
  for (size_t m = 0; m < nm; m++) {
    size_t a = mapgroup_site_of(idx, n, moves[m].from), b = mapgroup_site_of(idx, n, moves[m].to);
    if (a == SIZE_MAX || b == SIZE_MAX) {
      unknown++;
      continue;
    }
    if (sites[a].route_unknown) continue; /* not a route in force (map.h) */
    if (group_of[a] == group_of[b]) {
      within++;
      continue;
    }
    arr[na++] =
        (mapgroup_arrow_t){group_of[a], group_of[b], moves[m].permille, moves[m].unverified};
  }
  qsort(arr, na, sizeof *arr, mapgroup_arrow_cmp);
  size_t nd = 0;
  for (size_t k = 0; k < na; k++) {
    if (nd && arr[nd - 1].from == arr[k].from && arr[nd - 1].to == arr[k].to) {
      arr[nd - 1].permille += arr[k].permille;
      arr[nd - 1].unverified |= arr[k].unverified;
    } else
      arr[nd++] = arr[k];
  }
  for (size_t k = 0; k < nd; k++) {
    unsigned p = (unsigned)(arr[k].permille / count[arr[k].from]);
    arr[k].permille = p ? p : 1;
  }
  size_t left_out = 0;
  if (nd > MAPGROUP_MOVES_MAX) {
    qsort(arr, nd, sizeof *arr, mapgroup_arrow_bigger);
    left_out = nd - MAPGROUP_MOVES_MAX;
    nd = MAPGROUP_MOVES_MAX;
  }
  for (size_t k = 0; k < nd; k++)
    mv[k] =
        (map_move_t){g[arr[k].from].slug, g[arr[k].to].slug, arr[k].permille, arr[k].unverified};
  char total[32], summary[512];
  mapgroup_num(n, total, sizeof total);
  int u = snprintf(summary, sizeof summary,
                   "AGGREGATED: %s sites in %zu groups (%g° cells; a marker's colour is its worst "
                   "state); %zu move%s between groups drawn",
                   total, ng, deg, nd, nd == 1 ? "" : "s");
  if (within && u > 0 && (size_t)u < sizeof summary)
    u +=
        snprintf(summary + u, sizeof summary - (size_t)u, ", %zu within a group not drawn", within);
  if (left_out && u > 0 && (size_t)u < sizeof summary)
    u +=
        snprintf(summary + u, sizeof summary - (size_t)u, ", %zu smaller ones not drawn", left_out);
  if (unknown && u > 0 && (size_t)u < sizeof summary)
    u += snprintf(summary + u, sizeof summary - (size_t)u, ", %zu to unknown sites", unknown);
  if (routes_unknown && u > 0 && (size_t)u < sizeof summary)
    u += snprintf(summary + u, sizeof summary - (size_t)u, "; %zu route%s unknown", routes_unknown,
                  routes_unknown == 1 ? "" : "s");
  if (routes_unheard && u > 0 && (size_t)u < sizeof summary)
    u += snprintf(summary + u, sizeof summary - (size_t)u, " (%zu not heard from)", routes_unheard);
  if (routes_unverified && u > 0 && (size_t)u < sizeof summary)
    u += snprintf(summary + u, sizeof summary - (size_t)u, "%s%zu route%s unverified",
                  routes_unknown ? ", " : "; ", routes_unverified,
                  routes_unverified == 1 ? "" : "s");
  if (held && u > 0 && (size_t)u < sizeof summary)
    snprintf(summary + u, sizeof summary - (size_t)u, "; %zu held home", held);
  svg = map_render_svg_summary(g, ng, mv, nd, title, summary);
out:
  free(keys);
  free(group_of);
  free(idx);
  free(arr);
  free(g);
  free(count);
  free(names);
  free(mv);
  return svg;
}
