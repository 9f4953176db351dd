/* map: the routing map as one standalone SVG document.
 *
 * Pure code: sites and moves in, one malloc'd string out. Nothing here does
 * I/O, reads the clock or keeps state between calls, so the same input
 * always gives the same bytes (the status page can be diffed and tested).
 *
 * The reader is an operator at 3 a.m., so the layout favours plain words
 * over symbols wherever a state matters: a stale or offline site says so in
 * its label, the queue is a number, the legend explains every mark.
 *
 * Steps, in order: project the sites' bounding box onto a fixed 960x720
 * page (equirectangular, one scale for both axes so shapes are not
 * stretched); put the legend in the corner the sites use least; build the
 * move arrows, each bowed to the side where it crosses fewest dots and
 * trimmed so that its head stops outside the hub's ring; place the site
 * labels greedily among candidate positions around each dot, scored by what
 * they would cover, then slide each share label along its arrow to a free
 * spot; finally write everything back to front (arrows under dots, labels
 * on top with a white halo).
 *
 * Styling is done with presentation attributes, not a <style> sheet: the
 * controller's status page inlines this SVG into its HTML, where a sheet
 * would leak into the page, and some SVG viewers ignore sheets anyway.
 * Classes are still set on the elements that mean something (site, hub,
 * link-*, load-*, move-arrow) for tests and for anyone scripting the page. */
#include "map-int.h"
#include "mapsvg.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- page geometry ------------------------------------------------------ */

#define PAGE_W 960.0
#define PAGE_H 720.0
#define BAND_H 62.0 /* title and summary line */

/* The map frame: everything below the title band. */
#define FRAME_X0 12.0
#define FRAME_Y0 66.0
#define FRAME_X1 948.0
#define FRAME_Y1 708.0

/* Where dot centres may go. The right margin is wider than the left one
 * because labels prefer the right of their dot; the top margin leaves room
 * for a label above the northernmost site. */
#define PLOT_X0 60.0
#define PLOT_X1 840.0
#define PLOT_Y0 100.0
#define PLOT_Y1 680.0

/* Label lines: the name line (12px) and the status/queue line (11px). 11px
 * is the smallest text on the page; anything smaller is unreadable on a
 * wall screen at night. */
#define LINE1_H    15.0
#define LINE1_BASE 12.0
#define LINE2_H    14.0
#define LINE2_BASE 26.0

#define LEG_W 290.0
#define LEG_H 200.0

/* Hard limits. The output cap (MAPSVG_BUF_MAX, mapsvg.h) keeps a runaway input from eating memory
 * in the controller; the site and move caps are far above anything that fits in the cap anyway and
 * keep the quadratic label placement bounded. */
#define SITES_MAX     MAP_SITES_MAX
#define MOVES_MAX     1000
#define NAME_MAX_CP   32
#define TITLE_MAX_CP  72
#define TEXT_BUF      (NAME_MAX_CP * 4 + 8)
#define TITLE_BUF     (TITLE_MAX_CP * 4 + 8)
#define ARROW_SAMPLES 17
#define FIXED_MAX     40
#define N_CAND        24 /* 8 directions x 3 distances */

#define FONT                                                                                       \
  "'DejaVu Sans', 'Noto Sans', 'Noto Sans CJK SC', 'Source Han Sans SC', 'WenQuanYi Micro Hei', "  \
  "'Microsoft YaHei', 'PingFang SC', sans-serif"

#define C_TEXT          "#1f2933"
#define C_MUTED         "#5b6b7b"
#define C_MOVE          "#1d4ed8"
#define C_HALO          "#ffffff"
#define C_ROUTE         "#9a5200" /* "route unknown": as loud as a stale link */
#define DASH_UNVERIFIED "6 4"     /* a move applied, not read back from the PBX */
#define ROUTE_ROW       18.0      /* each legend row the route marks add */

/* ---- geometry ----------------------------------------------------------- */

typedef struct {
  double x0, y0, x1, y1;
} box_t;

static double overlap(box_t a, box_t b) {
  double w = fmin(a.x1, b.x1) - fmax(a.x0, b.x0);
  double h = fmin(a.y1, b.y1) - fmax(a.y0, b.y0);
  return w > 0 && h > 0 ? w * h : 0;
}

static box_t inflate(box_t a, double d) {
  return (box_t){a.x0 - d, a.y0 - d, a.x1 + d, a.y1 + d};
}

/* Area of `a` that falls off the page (with a small inner margin). */
static double off_page(box_t a) {
  box_t page = {4, 4, PAGE_W - 4, PAGE_H - 4};
  return (a.x1 - a.x0) * (a.y1 - a.y0) - overlap(a, page);
}

/* Distance from (x, y) to the nearest point of `a`; 0 inside. */
static double box_dist(box_t a, double x, double y) {
  return hypot(fmax(fmax(a.x0 - x, x - a.x1), 0), fmax(fmax(a.y0 - y, y - a.y1), 0));
}

static bool inside(box_t a, double x, double y) {
  return x >= a.x0 && x <= a.x1 && y >= a.y0 && y <= a.y1;
}

/* ---- the model the layout works on -------------------------------------- */

typedef enum { LINK_ONLINE, LINK_STALE, LINK_OFFLINE, LINK_NEVER, LINK_UNKNOWN } link_kind_t;

/* How each link state looks. Online is quiet (solid dark); everything else
 * is dashed so it reads as "not normal" even without colour vision, and the
 * states where the site is gone are faded. */
static const struct {
  const char *cls, *word, *stroke, *dash, *word_fill;
  const char *width, *opacity;
} LINK_STYLE[] = {
    [LINK_ONLINE] = {"link-online", "online", "#1f2933", NULL, C_TEXT, "1.6", "1"},
    [LINK_STALE] = {"link-stale", "stale", "#d97706", "3.5 2", "#9a5200", "2.4", "1"},
    [LINK_OFFLINE] = {"link-offline", "offline", "#c62828", "3 2.5", "#b71c1c", "2.2", "0.55"},
    [LINK_NEVER] = {"link-never-seen", "never connected", "#6b7280", "2 2.5", "#4b5563", "2",
                    "0.45"},
    [LINK_UNKNOWN] = {"link-unknown", "link unknown", "#6b7280", "2 2.5", "#4b5563", "2", "0.45"},
};

typedef enum { LOAD_OK, LOAD_HIGH, LOAD_FULL, LOAD_UNKNOWN } load_kind_t;

static const struct {
  const char *cls, *fill;
} LOAD_STYLE[] = {
    [LOAD_OK] = {"load-ok", "#34a853"},
    [LOAD_HIGH] = {"load-high", "#f5a623"},
    [LOAD_FULL] = {"load-full", "#e53935"},
    [LOAD_UNKNOWN] = {"load-unknown", "#c3c8cf"},
};

static link_kind_t link_kind(const char *s) {
  if (!s) return LINK_UNKNOWN;
  if (strcmp(s, "online") == 0) return LINK_ONLINE;
  if (strcmp(s, "stale") == 0) return LINK_STALE;
  if (strcmp(s, "offline") == 0) return LINK_OFFLINE;
  if (strcmp(s, "never-seen") == 0) return LINK_NEVER;
  return LINK_UNKNOWN;
}

/* Thresholds from the brief of the status page: green below 70% busy,
 * amber below 90%, red from 90%. NaN and negatives mean "no report". */
static load_kind_t load_kind(double occ) {
  if (!(occ >= 0)) return LOAD_UNKNOWN;
  if (occ < 0.7) return LOAD_OK;
  if (occ < 0.9) return LOAD_HIGH;
  return LOAD_FULL;
}

typedef struct {
  bool shown;  /* has usable coordinates */
  double x, y; /* dot centre on the page */
  double r;    /* the dot */
  double rr;   /* what labels and arrows keep clear of: the ring or the dot */
  link_kind_t link;
  load_kind_t load;
  unsigned inbound;  /* arrows ending here */
  unsigned outbound; /* arrows leaving here */
} spot_t;

typedef struct {
  char en[TEXT_BUF], zh[TEXT_BUF];
  const char *stat; /* link word when not online, else NULL */
  char route[64];   /* "route unknown", a group's "3 routes unknown, 2 unverified", or "" */
  unsigned queue;
  bool queue_partial; /* a lower bound: "12+ in queue" (map_site_t.queue_partial) */
  double w, h;        /* estimated size of both lines together */
  bool placed;
  box_t box;
  int anchor; /* 1 start, 0 middle, -1 end (text-anchor) */
  double ax;  /* x of the text anchor */
  bool leader;
} label_t;

typedef struct {
  size_t from, to;
  unsigned permille;
  double w;                      /* stroke width */
  double head_l, head_h;         /* arrowhead length and height */
  double sx, sy, cx, cy, ex, ey; /* trimmed quadratic Bezier */
  double pts[ARROW_SAMPLES][2];
  box_t bbox; /* of the samples, widened by the stroke */
  char text[16];
  box_t lbox;      /* the share label */
  bool unverified; /* map_move_t.unverified: dashed */
} arrow_t;

typedef struct {
  size_t n;
  const map_site_t *in;
  spot_t *spot;
  label_t *lab;
  size_t nm;
  arrow_t *arr;
  box_t legend;
  double leg_h; /* LEG_H and a row per route mark shown, or LEG_H with `marks` */
  /* The route marks' rows in a corner of their own, when the legend's
   * corner has no room for them; else empty (x1 == 0). */
  box_t marks;
  bool leg_unverified;    /* an unverified arrow is drawn: its legend row */
  bool leg_unknown;       /* a site's route is unknown: its legend row */
  bool leg_home;          /* a site routed home, unverified, is marked: its legend row */
  bool leg_unheard;       /* a site is not heard from: its legend row */
  bool leg_held;          /* a site is held home: its legend row */
  box_t fixed[FIXED_MAX]; /* graticule labels */
  size_t nfixed;
  /* projection */
  double kx, s, lonc, latc, px, py;
} layout_t;

/* ---- projection ----------------------------------------------------------- */

static bool coords_ok(const map_site_t *m) {
  return isfinite(m->lat) && isfinite(m->lon) && m->lat >= -85 && m->lat <= 85 && m->lon >= -180 &&
         m->lon <= 180;
}

/* Equirectangular around the middle latitude: x = lon * cos(lat0), y = lat,
 * one scale for both so the country keeps its shape. The bounding box of
 * the sites fills the plot area; a minimum span of 4 degrees keeps one or
 * two sites from being blown up to the page size. With no usable site the
 * box is China's, so the empty map still looks like the usual one. */
static void project_setup(layout_t *L) {
  double lon0 = 180, lon1 = -180, lat0 = 85, lat1 = -85;
  bool any = false;
  for (size_t i = 0; i < L->n; i++) {
    if (!coords_ok(&L->in[i])) continue;
    any = true;
    lon0 = fmin(lon0, L->in[i].lon), lon1 = fmax(lon1, L->in[i].lon);
    lat0 = fmin(lat0, L->in[i].lat), lat1 = fmax(lat1, L->in[i].lat);
  }
  if (!any) lon0 = 73, lon1 = 135, lat0 = 18, lat1 = 54;
  L->lonc = (lon0 + lon1) / 2, L->latc = (lat0 + lat1) / 2;
  double span_lon = fmax(lon1 - lon0, 4), span_lat = fmax(lat1 - lat0, 4);
  L->kx = fmax(cos(L->latc * 3.14159265358979323846 / 180), 0.25);
  L->s = fmin((PLOT_X1 - PLOT_X0) / (span_lon * L->kx), (PLOT_Y1 - PLOT_Y0) / span_lat);
  L->px = (PLOT_X0 + PLOT_X1) / 2, L->py = (PLOT_Y0 + PLOT_Y1) / 2;
}

static double proj_x(const layout_t *L, double lon) {
  return L->px + (lon - L->lonc) * L->kx * L->s;
}
static double proj_y(const layout_t *L, double lat) {
  return L->py - (lat - L->latc) * L->s;
}

/* ---- labels --------------------------------------------------------------- */

typedef struct {
  box_t box;
  int anchor;
  double ax, pref;
  bool leader;
} cand_t;

/* Candidate directions in order of preference: right of the dot reads
 * best, then left, then the diagonals, then above and below. */
static const struct {
  signed char dx, dy;
  short pref;
} DIRS[8] = {{1, 0, 0},    {-1, 0, 30}, {1, -1, 45}, {1, 1, 50},
             {-1, -1, 70}, {-1, 1, 75}, {0, -1, 90}, {0, 1, 100}};

/* Candidate k: direction k % 8 at distance k / 8 (next to the dot, a bit
 * away, further away). Away positions cost more and get a leader line. */
static cand_t label_candidate(const spot_t *s, double w, double h, int k) {
  int ring = k / 8;
  double gap = ring == 0 ? 4 : ring == 1 ? 18 : 36;
  int dx = DIRS[k % 8].dx, dy = DIRS[k % 8].dy;
  double diag = dx && dy ? 0.72 : 1.0;
  cand_t c;
  double left, top;
  if (dx > 0) {
    left = s->x + s->rr * diag + gap;
    c.anchor = 1, c.ax = left;
  } else if (dx < 0) {
    left = s->x - s->rr * diag - gap - w;
    c.anchor = -1, c.ax = left + w;
  } else {
    left = s->x - w / 2;
    c.anchor = 0, c.ax = s->x;
  }
  if (dy == 0)
    top = s->y - LINE1_H / 2;
  else if (dy < 0)
    top = s->y - s->rr * diag - (gap - 3) - h;
  else
    top = s->y + s->rr * diag + (gap - 3);
  c.box = (box_t){left, top, left + w, top + h};
  c.pref = DIRS[k % 8].pref + ring * 400.0;
  c.leader = ring > 0;
  return c;
}

static box_t dot_box(const spot_t *s) {
  return (box_t){s->x - s->rr, s->y - s->rr, s->x + s->rr, s->y + s->rr};
}

/* Where site i's label goes when nothing is in the way (right of the dot):
 * what the legend and the share labels try to leave free. */
static box_t default_label_box(const layout_t *L, size_t i) {
  const spot_t *s = &L->spot[i];
  double x0 = s->x + s->rr + 4, y0 = s->y - LINE1_H / 2;
  return (box_t){x0, y0, x0 + L->lab[i].w, y0 + L->lab[i].h};
}

/* How much of `b` the legend's boxes cover. */
static double legend_overlap(const layout_t *L, box_t b) {
  return overlap(b, L->legend) + overlap(b, L->marks);
}

/* What a label at `b` would cover, in weighted px^2: the page edge, the
 * title band, the legend, dots, other labels and arrows.
 * Covering a dot or another label is much worse than crossing an arrow,
 * which stays readable through the label's white halo. */
static double label_cost(const layout_t *L, size_t self, box_t b) {
  box_t band = {0, 0, PAGE_W, BAND_H};
  double c = 60 * off_page(b) + 20 * overlap(b, band) + 20 * legend_overlap(L, b);
  for (size_t f = 0; f < L->nfixed; f++)
    c += 4 * overlap(b, L->fixed[f]);
  box_t bi = inflate(b, 2);
  double own = box_dist(b, L->spot[self].x, L->spot[self].y);
  /* Dots outside `near` can neither be covered nor be mistaken for this
   * label's dot; skipping them cheaply keeps big maps fast. */
  box_t near = inflate(b, fmax(own + 14, 16));
  for (size_t j = 0; j < L->n; j++) {
    const spot_t *s = &L->spot[j];
    if (!s->shown) continue;
    if (j != self && L->lab[j].placed) c += 8 * overlap(bi, L->lab[j].box);
    if (!inside(near, s->x, s->y)) continue;
    c += 14 * overlap(bi, dot_box(s));
    if (j == self) continue;
    /* A label nearer to another site's dot than to its own (give or take
     * 14px) reads as that site's label, the worst thing this map can do. */
    double d = box_dist(b, s->x, s->y);
    if (d < own + 14) c += (own + 14 - d) * 150;
  }
  for (size_t a = 0; a < L->nm; a++) {
    const arrow_t *ar = &L->arr[a];
    if (!overlap(b, ar->bbox)) continue;
    box_t bw = inflate(b, ar->w / 2 + 1);
    /* Near its ends an arrow says where calls come from and go to: hiding
     * that part costs three times as much as crossing the middle. */
    for (int k = 0; k < ARROW_SAMPLES; k++)
      if (inside(bw, ar->pts[k][0], ar->pts[k][1]))
        c += k < 3 || k >= ARROW_SAMPLES - 3 ? 360 : 120;
  }
  return c;
}

/* The leader of a label placed away from its dot: from the dot's edge to
 * the nearest point of the name line. */
static void leader_ends(const spot_t *s, box_t box, double *x0, double *y0, double *x1,
                        double *y1) {
  *x1 = fmin(fmax(s->x, box.x0), box.x1);
  *y1 = fmin(fmax(s->y, box.y0), box.y0 + LINE1_H);
  double d = hypot(*x1 - s->x, *y1 - s->y);
  *x0 = d > 0 ? s->x + (*x1 - s->x) / d * s->rr : s->x;
  *y0 = d > 0 ? s->y + (*y1 - s->y) / d * s->rr : s->y;
}

/* Distance from (px, py) to the segment (x0, y0)-(x1, y1). */
static double seg_dist(double px, double py, double x0, double y0, double x1, double y1) {
  double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
  double t = l2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / l2 : 0;
  t = fmin(fmax(t, 0), 1);
  return hypot(px - (x0 + t * dx), py - (y0 + t * dy));
}

static void label_place(layout_t *L, size_t i) {
  label_t *lb = &L->lab[i];
  double best = INFINITY;
  for (int k = 0; k < N_CAND; k++) {
    cand_t c = label_candidate(&L->spot[i], lb->w, lb->h, k);
    double cost = c.pref + label_cost(L, i, c.box);
    if (c.leader) { /* a leader passing by another dot points at the wrong site */
      double x0, y0, x1, y1;
      leader_ends(&L->spot[i], c.box, &x0, &y0, &x1, &y1);
      for (size_t j = 0; j < L->n; j++)
        if (j != i && L->spot[j].shown &&
            seg_dist(L->spot[j].x, L->spot[j].y, x0, y0, x1, y1) < L->spot[j].rr + 4)
          cost += 5000;
    }
    if (cost < best) { /* strict: the earlier (preferred) candidate wins ties */
      best = cost;
      lb->box = c.box, lb->anchor = c.anchor, lb->ax = c.ax, lb->leader = c.leader;
    }
  }
  lb->placed = true;
}

/* Greedy placement, most crowded dots first (they have the fewest good
 * positions), then two passes where each label may move now that it can
 * see all the others. Ties break on input order, so it is deterministic.
 * Placement is quadratic in the sites: a few ms for the 31 provinces, but
 * the refinement passes are skipped for more than 300 sites (a map that
 * dense is unreadable anyway) so that 1000 sites stay under a second. */
static int place_labels(layout_t *L) {
  size_t *order = calloc(L->n ? L->n : 1, sizeof *order);
  unsigned *crowd = calloc(L->n ? L->n : 1, sizeof *crowd);
  if (!order || !crowd) {
    free(order);
    free(crowd);
    return -1;
  }
  size_t m = 0;
  for (size_t i = 0; i < L->n; i++) {
    if (!L->spot[i].shown) continue;
    for (size_t j = 0; j < L->n; j++)
      if (j != i && L->spot[j].shown &&
          hypot(L->spot[i].x - L->spot[j].x, L->spot[i].y - L->spot[j].y) < 80)
        crowd[i]++;
    /* insertion sort: crowd descending, index ascending */
    size_t k = m++;
    while (k > 0 && crowd[order[k - 1]] < crowd[i]) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = i;
  }
  for (int pass = 0; pass < (m > 300 ? 1 : 3); pass++)
    for (size_t k = 0; k < m; k++)
      label_place(L, order[k]);
  free(order);
  free(crowd);
  return 0;
}

/* ---- arrows --------------------------------------------------------------- */

static size_t find_site(const layout_t *L, const char *slug) {
  if (!slug) return SIZE_MAX;
  for (size_t i = 0; i < L->n; i++)
    if (L->in[i].slug && L->spot[i].shown && strcmp(L->in[i].slug, slug) == 0) return i;
  return SIZE_MAX;
}

static void bez(const arrow_t *a, double t, double *x, double *y) {
  double u = 1 - t;
  *x = u * u * a->sx + 2 * u * t * a->cx + t * t * a->ex;
  *y = u * u * a->sy + 2 * u * t * a->cy + t * t * a->ey;
}

/* A quadratic curve bowing by `bow` (its control point's offset from the
 * middle, as a share of the length; the sign picks the side),
 * trimmed at the
 * source's edge and short of the hub's ring by the arrowhead's length: the
 * head is drawn past the end of the path, and must not vanish under the
 * hub. Width and head grow with the share. */
static void arrow_build(const layout_t *L, arrow_t *a, double bow) {
  const spot_t *f = &L->spot[a->from], *t = &L->spot[a->to];
  double p = a->permille > 1000 ? 1000 : a->permille;
  a->w = 1.25 + 3.25 * p / 1000; /* 1.25 to 4.5 px: 22 full moves must not drown the map */
  a->head_l = 9 + 1.6 * a->w;
  a->head_h = 0.75 * a->head_l;
  double dx = t->x - f->x, dy = t->y - f->y, d = hypot(dx, dy);
  double nx = bow * dy / d, ny = -bow * dx / d;
  double cx = (f->x + t->x) / 2 + nx * d, cy = (f->y + t->y) / 2 + ny * d;
  /* Many arrows into one hub: stop them a little further out so their
   * heads spread over a wider circle instead of piling up on the ring. */
  double crowd = t->inbound > 3 ? fmin(1.5 * (t->inbound - 3), 18) : 0;
  double back = t->rr + 3 + crowd + 0.7 * a->head_l, front = f->rr + 2;
  if (back + front + 6 > d) { /* very close sites: keep a short visible stub */
    front = 0;
    back = fmin(back, d / 2);
  }
  double sl = hypot(cx - f->x, cy - f->y), el = hypot(t->x - cx, t->y - cy);
  a->sx = f->x + (cx - f->x) / sl * front, a->sy = f->y + (cy - f->y) / sl * front;
  a->ex = t->x - (t->x - cx) / el * back, a->ey = t->y - (t->y - cy) / el * back;
  a->cx = cx, a->cy = cy;
  a->bbox = (box_t){INFINITY, INFINITY, -INFINITY, -INFINITY};
  for (int k = 0; k < ARROW_SAMPLES; k++) {
    double x, y;
    bez(a, (double)k / (ARROW_SAMPLES - 1), &x, &y);
    a->pts[k][0] = x, a->pts[k][1] = y;
    a->bbox.x0 = fmin(a->bbox.x0, x), a->bbox.y0 = fmin(a->bbox.y0, y);
    a->bbox.x1 = fmax(a->bbox.x1, x), a->bbox.y1 = fmax(a->bbox.y1, y);
  }
  a->bbox = inflate(a->bbox, a->w / 2 + a->head_h / 2);
  if (a->permille >= 1000)
    snprintf(a->text, sizeof a->text, "100%%");
  else
    snprintf(a->text, sizeof a->text, "%u\xE2\x80\xB0", a->permille); /* ‰ */
}

/* How many points along the arrow fall on other sites' dots or the legend
 * (an arrow drawn under a dot looks like it ends there). Sampled more
 * finely than the stored points so a dot between two samples is not
 * missed. */
static unsigned arrow_hits(const layout_t *L, const arrow_t *a) {
  unsigned hits = 0;
  for (int k = 0; k <= 48; k++) {
    double x, y;
    bez(a, k / 48.0, &x, &y);
    if (inside(inflate(L->legend, a->w), x, y) || inside(inflate(L->marks, a->w), x, y)) hits++;
    for (size_t j = 0; j < L->n; j++)
      if (j != a->from && j != a->to && L->spot[j].shown &&
          inside(inflate(dot_box(&L->spot[j]), a->w / 2 + 3), x, y))
        hits++;
  }
  return hits;
}

/* Picks the bow that crosses the fewest dots, in order of preference: the
 * usual bow first, so that two moves in opposite directions between the
 * same pair bow apart instead of lying on top of each other; ties keep the
 * earlier choice, so the result is deterministic. */
static void arrow_route(const layout_t *L, arrow_t *a) {
  static const double BOWS[] = {0.2, -0.2, 0.1, -0.1, 0.32, -0.32};
  double best_bow = BOWS[0];
  unsigned best = UINT32_MAX;
  for (size_t k = 0; k < sizeof BOWS / sizeof BOWS[0] && best > 0; k++) {
    arrow_build(L, a, BOWS[k]);
    unsigned h = arrow_hits(L, a);
    if (h < best) best = h, best_bow = BOWS[k];
  }
  arrow_build(L, a, best_bow);
}

/* The share label sits on the curve, a little towards the source (where
 * arrows into a busy hub are still apart); it slides along the curve if
 * that spot is taken by a dot, a site label, another share or arrow.
 * It is placed after the site labels because it can move along the whole
 * curve, while a site label has to stay next to its dot. */
static void arrow_label_place(layout_t *L, size_t i) {
  static const double T[] = {0.4, 0.32, 0.5, 0.25, 0.58, 0.2, 0.66, 0.74};
  arrow_t *a = &L->arr[i];
  double w = mapsvg_text_width(a->text, 11, true) + 8, h = 15;
  double best = INFINITY;
  for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
    double x, y;
    bez(a, T[k], &x, &y);
    box_t b = {x - w / 2, y - h / 2, x + w / 2, y + h / 2};
    double c = k * 30.0 + 60 * off_page(b) + 20 * legend_overlap(L, b);
    for (size_t j = 0; j < L->n; j++)
      if (L->spot[j].shown)
        c += 14 * overlap(inflate(b, 2), dot_box(&L->spot[j])) +
             10 * overlap(inflate(b, 1), L->lab[j].box);
    for (size_t j = 0; j < L->nm; j++) {
      if (j < i) c += 10 * overlap(inflate(b, 2), L->arr[j].lbox);
      if (j == i || !overlap(b, L->arr[j].bbox)) continue;
      for (int p = 0; p < ARROW_SAMPLES; p++) /* hiding another arrow */
        if (inside(inflate(b, L->arr[j].w / 2), L->arr[j].pts[p][0], L->arr[j].pts[p][1])) c += 80;
    }
    if (c < best) best = c, a->lbox = b;
  }
}

/* ---- legend --------------------------------------------------------------- */

/* Corner c (bottom-left, bottom-right, top-left, top-right) of the frame
 * for a box `h` high. */
static box_t legend_corner(int c, double h) {
  const double m = 8;
  double x0 = c % 2 ? FRAME_X1 - m - LEG_W : FRAME_X0 + m;
  double y0 = c < 2 ? FRAME_Y1 - m - h : FRAME_Y0 + m;
  return (box_t){x0, y0, x0 + LEG_W, y0 + h};
}

/* What a legend at `b` hides: dots (weighted most), their likely labels,
 * arrows; *dots says whether it covers a dot. */
static double legend_cost(const layout_t *L, box_t b, bool *dots) {
  double cost = 0;
  *dots = false;
  for (size_t i = 0; i < L->n; i++) {
    const spot_t *s = &L->spot[i];
    if (!s->shown) continue;
    double d = overlap(inflate(dot_box(s), 4), b);
    *dots |= d > 0;
    cost += 20 * d + 3 * overlap(default_label_box(L, i), b);
  }
  for (size_t a = 0; a < L->nm; a++)
    for (int k = 0; k < ARROW_SAMPLES; k++)
      if (inside(b, L->arr[a].pts[k][0], L->arr[a].pts[k][1])) cost += 400;
  return cost;
}

/* The best corner, other than `skip`, for a box `h` high. */
static int legend_best(const layout_t *L, double h, int skip, bool *dots) {
  double best = INFINITY;
  int at = 0;
  for (int c = 0; c < 4; c++) {
    bool d = false;
    double cost = c == skip ? INFINITY : legend_cost(L, legend_corner(c, h), &d);
    if (cost < best) best = cost, at = c, *dots = d;
  }
  return at;
}

/* The corner of the frame that the dots, their likely labels and the
 * arrows use least. Ties go to bottom-left, which is empty on a map of
 * China (Tibet's south and the Himalaya). A legend made tall by the route
 * marks' rows may find no corner free of dots: those rows then go to a
 * corner of their own, if one is free (else legend_clear). */
static void legend_place(layout_t *L) {
  bool dots, mdots = true;
  int c = legend_best(L, L->leg_h, -1, &dots);
  L->legend = legend_corner(c, L->leg_h);
  double rows = L->leg_h - LEG_H;
  if (!dots || rows <= 0) return;
  int b = legend_best(L, LEG_H, -1, &dots), m = legend_best(L, rows + 6, b, &mdots);
  if (dots || mdots) return;
  L->leg_h = LEG_H;
  L->legend = legend_corner(b, LEG_H);
  L->marks = legend_corner(m, rows + 6);
}

/* No corner is free when the legend is tall (a row per route mark shown):
 * the one chosen covers dots, and a dot under the legend is a site nobody
 * sees. The map is then drawn smaller, towards the opposite corner of the
 * plot, until no dot is under the legend (by at most LEG_SHRINK_MIN);
 * true when it was. */
#define LEG_SHRINK_MIN 0.6
static bool legend_clear(layout_t *L) {
  box_t g = L->legend;
  bool left = g.x0 < PAGE_W / 2, top = g.y0 < PAGE_H / 2;
  double ax = left ? PLOT_X1 : PLOT_X0, ay = top ? PLOT_Y1 : PLOT_Y0, f = 1;
  for (size_t i = 0; i < L->n; i++) {
    const spot_t *s = &L->spot[i];
    box_t k = inflate(g, s->rr + 4);
    if (!s->shown || !inside(k, s->x, s->y)) continue;
    /* x' = ax + f (x - ax): the factor that takes it past the box's inner
     * edge across, or down (up); the larger one shrinks less. */
    double fx = s->x != ax ? ((left ? k.x1 : k.x0) - ax) / (s->x - ax) : 0;
    double fy = s->y != ay ? ((top ? k.y1 : k.y0) - ay) / (s->y - ay) : 0;
    f = fmin(f, fmax(fmax(fx, fy), 0));
  }
  if (f >= 1) return false;
  f = fmax(f, LEG_SHRINK_MIN);
  L->px = ax + f * (L->px - ax), L->py = ay + f * (L->py - ay), L->s *= f;
  for (size_t i = 0; i < L->n; i++)
    L->spot[i].x = proj_x(L, L->in[i].lon), L->spot[i].y = proj_y(L, L->in[i].lat);
  return true;
}

/* ---- writing -------------------------------------------------------------- */

static void put_header(mapsvg_buf_t *b, const char *title) {
  mapsvg_printf(b,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"nirc-map\" width=\"%d\" "
                "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"%s\" role=\"img\" "
                "aria-label=\"",
                (int)PAGE_W, (int)PAGE_H, (int)PAGE_W, (int)PAGE_H, FONT);
  mapsvg_esc(b, title);
  mapsvg_puts(b, "\">\n<title>");
  mapsvg_esc(b, title);
  mapsvg_puts(b, "</title>\n");
}

/* One arrowhead marker per arrow, sized in page units so a thick arrow
 * gets a proportionate head; refX sits 30% into the head so the path's
 * butt end is hidden inside it. Ids are prefixed because the status page
 * inlines this document into HTML. */
static void put_marker(mapsvg_buf_t *b, const char *id, double l, double h) {
  mapsvg_printf(
      b,
      "<marker id=\"%s\" viewBox=\"0 0 %s %s\" refX=\"%s\" refY=\"%s\" markerWidth=\"%s\" "
      "markerHeight=\"%s\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">"
      "<path d=\"M0,0 L%s,%s L0,%s z\" fill=\"" C_MOVE "\"/></marker>\n",
      id, NUM(l), NUM(h), NUM(0.3 * l), NUM(h / 2), NUM(l), NUM(h), NUM(l), NUM(h / 2), NUM(h));
}

/* One graticule label ("110°E") with its baseline at (x, y), unless the
 * legend covers it; kept as an obstacle the site labels avoid. */
static void grid_label(mapsvg_buf_t *b, layout_t *L, double x, double y, int deg, const char *pos,
                       const char *neg) {
  box_t box = {x - 1, y - 12, x + 40, y + 3};
  if (legend_overlap(L, box) > 0) return;
  mapsvg_printf(b, "<text x=\"%s\" y=\"%s\">%d\xC2\xB0%s</text>\n", NUM(x), NUM(y),
                deg < 0 ? -deg : deg,
                deg < 0   ? neg
                : deg > 0 ? pos
                          : "");
  if (L->nfixed < FIXED_MAX) L->fixed[L->nfixed++] = box;
}

static void put_frame(mapsvg_buf_t *b, layout_t *L) {
  mapsvg_printf(b,
                "<rect class=\"background\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"
                "<rect class=\"frame\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" rx=\"8\" "
                "fill=\"#f3f6f9\" stroke=\"#d5dde5\"/>\n",
                (int)PAGE_W, (int)PAGE_H, NUM(FRAME_X0), NUM(FRAME_Y0), NUM(FRAME_X1 - FRAME_X0),
                NUM(FRAME_Y1 - FRAME_Y0));
  /* A graticule gives a sense of distance and direction without a coastline
   * (which this pure module has no data for). The step keeps it to a few
   * lines whatever the span. */
  double lon_a = L->lonc + (FRAME_X0 - L->px) / (L->kx * L->s);
  double lon_b = L->lonc + (FRAME_X1 - L->px) / (L->kx * L->s);
  double lat_a = L->latc - (FRAME_Y1 - L->py) / L->s;
  double lat_b = L->latc - (FRAME_Y0 - L->py) / L->s;
  static const int STEPS[] = {1, 2, 5, 10, 15, 20, 30, 45, 90};
  int step = 90;
  for (size_t k = 0; k < sizeof STEPS / sizeof STEPS[0]; k++)
    if ((lon_b - lon_a) / STEPS[k] <= 8 && (lat_b - lat_a) / STEPS[k] <= 8) {
      step = STEPS[k];
      break;
    }
  mapsvg_puts(b, "<g class=\"graticule\" stroke=\"#dde4eb\" stroke-width=\"1\">\n");
  for (int g = (int)ceil(lon_a / step) * step; g <= lon_b && g <= 180; g += step) {
    double x = proj_x(L, g);
    if (x < FRAME_X0 + 30 || x > FRAME_X1 - 30) continue;
    mapsvg_printf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", NUM(x), NUM(FRAME_Y0),
                  NUM(x), NUM(FRAME_Y1));
  }
  for (int g = (int)ceil(lat_a / step) * step; g <= lat_b && g <= 90; g += step) {
    double y = proj_y(L, g);
    if (y < FRAME_Y0 + 20 || y > FRAME_Y1 - 20) continue;
    mapsvg_printf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", NUM(FRAME_X0), NUM(y),
                  NUM(FRAME_X1), NUM(y));
  }
  mapsvg_puts(b, "</g>\n<g class=\"graticule-labels\" font-size=\"11\" fill=\"#8795a4\">\n");
  for (int g = (int)ceil(lon_a / step) * step; g <= lon_b && g <= 180; g += step) {
    double x = proj_x(L, g);
    if (x < FRAME_X0 + 30 || x > FRAME_X1 - 30) continue;
    grid_label(b, L, x + 3, FRAME_Y1 - 5, g, "E", "W");
  }
  for (int g = (int)ceil(lat_a / step) * step; g <= lat_b && g <= 90; g += step) {
    double y = proj_y(L, g);
    if (y < FRAME_Y0 + 20 || y > FRAME_Y1 - 20) continue;
    grid_label(b, L, FRAME_X0 + 4, y - 4, g, "N", "S");
  }
  mapsvg_puts(b, "</g>\n");
}

static void put_leaders(mapsvg_buf_t *b, const layout_t *L) {
  mapsvg_puts(b, "<g class=\"leaders\" stroke=\"#8795a4\" stroke-width=\"1\">\n");
  for (size_t i = 0; i < L->n; i++) {
    const spot_t *s = &L->spot[i];
    const label_t *lb = &L->lab[i];
    if (!s->shown || !lb->leader) continue;
    double fx, fy, tx, ty;
    leader_ends(s, lb->box, &fx, &fy, &tx, &ty);
    if (hypot(tx - s->x, ty - s->y) <= s->rr + 1) continue;
    mapsvg_printf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", NUM(fx), NUM(fy), NUM(tx),
                  NUM(ty));
  }
  mapsvg_puts(b, "</g>\n");
}

/* Dots: fill is the load, outline the link, a ring marks a hub. The
 * tooltip (<title>) spells the state out for whoever hovers. */
static void put_sites(mapsvg_buf_t *b, const layout_t *L) {
  mapsvg_puts(b, "<g class=\"sites\">\n");
  for (size_t i = 0; i < L->n; i++) {
    const spot_t *s = &L->spot[i];
    const map_site_t *m = &L->in[i];
    const label_t *lb = &L->lab[i];
    if (!s->shown) continue;
    char slug[TEXT_BUF];
    mapsvg_clean(slug, sizeof slug, m->slug, NAME_MAX_CP);
    const char *dash = LINK_STYLE[s->link].dash;
    char dash_attr[48] = "";
    if (dash) snprintf(dash_attr, sizeof dash_attr, " stroke-dasharray=\"%s\"", dash);
    if (m->is_hub)
      mapsvg_printf(b,
                    "<circle class=\"hub-ring\" cx=\"%s\" cy=\"%s\" r=\"%s\" fill=\"none\" "
                    "stroke=\"%s\" stroke-width=\"1.6\"%s opacity=\"%s\"/>\n",
                    NUM(s->x), NUM(s->y), NUM(s->rr - 1), LINK_STYLE[s->link].stroke, dash_attr,
                    LINK_STYLE[s->link].opacity);
    mapsvg_printf(b, "<circle class=\"site%s %s %s\" data-slug=\"", m->is_hub ? " hub" : "",
                  LINK_STYLE[s->link].cls, LOAD_STYLE[s->load].cls);
    mapsvg_esc(b, slug);
    mapsvg_printf(b,
                  "\" cx=\"%s\" cy=\"%s\" r=\"%s\" fill=\"%s\" stroke=\"%s\" stroke-width=\"%s\"%s "
                  "opacity=\"%s\"><title>",
                  NUM(s->x), NUM(s->y), NUM(s->r), LOAD_STYLE[s->load].fill,
                  LINK_STYLE[s->link].stroke, LINK_STYLE[s->link].width, dash_attr,
                  LINK_STYLE[s->link].opacity);
    /* Unknown is not zero: a site without a report, or whose PBX could
     * not be read, has no queue figure, and says why its load is grey. */
    char tip[3 * TEXT_BUF + 320], occ[48] = "no load report", q[64] = "queue not measured";
    if (s->load != LOAD_UNKNOWN)
      snprintf(occ, sizeof occ, "%ld%% of agents busy", lround(fmin(m->occupancy, 9.99) * 100));
    else if (m->unknown_why)
      mapsvg_clean(occ, sizeof occ, m->unknown_why, 40);
    if (m->queue_partial)
      snprintf(q, sizeof q, "at least %u in queue (not all measured)", m->in_queue);
    else if (!m->queue_unknown)
      snprintf(q, sizeof q, "%u in queue", m->in_queue);
    char route[160];
    map_route_tip(route, sizeof route, m);
    snprintf(tip, sizeof tip, "%s%s%s (%s)%s: %s, %s, %s%s", lb->en, lb->zh[0] ? " " : "", lb->zh,
             slug, m->is_hub ? ", hub" : "", LINK_STYLE[s->link].word, occ, q, route);
    mapsvg_esc(b, tip);
    mapsvg_puts(b, "</title></circle>\n");
  }
  mapsvg_puts(b, "</g>\n");
}

/* A single site whose route is unverified but draws no arrow (all its
 * calls home) would carry the mark only in its tooltip: a dashed ring
 * around it, as dashed as an unverified arrow, shows it on the map. */
static bool unverified_home(const layout_t *L, size_t i) {
  const map_site_t *m = &L->in[i];
  return L->spot[i].shown && !m->is_group && m->route_unverified && !m->route_unknown &&
         L->spot[i].outbound == 0;
}

static void put_unverified_home(mapsvg_buf_t *b, const layout_t *L) {
  for (size_t i = 0; i < L->n; i++) {
    if (!unverified_home(L, i)) continue;
    const spot_t *s = &L->spot[i];
    mapsvg_printf(b,
                  "<circle class=\"route-unverified-home\" cx=\"%s\" cy=\"%s\" r=\"%s\" "
                  "fill=\"none\" stroke=\"" C_MOVE "\" stroke-width=\"1.6\" "
                  "stroke-dasharray=\"" DASH_UNVERIFIED "\"><title>routed home, not read back "
                  "from the PBX</title></circle>\n",
                  NUM(s->x), NUM(s->y), NUM(s->rr + 3));
  }
}

static void put_arrows(mapsvg_buf_t *b, const layout_t *L, const size_t *order) {
  mapsvg_puts(b, "<g class=\"moves\" fill=\"none\" stroke-linecap=\"butt\">\n");
  for (size_t k = 0; k < L->nm; k++) {
    const arrow_t *a = &L->arr[order[k]];
    char from[TEXT_BUF], to[TEXT_BUF];
    mapsvg_clean(from, sizeof from, L->in[a->from].slug, NAME_MAX_CP);
    mapsvg_clean(to, sizeof to, L->in[a->to].slug, NAME_MAX_CP);
    char d[160];
    snprintf(d, sizeof d, "M%s,%s Q%s,%s %s,%s", NUM(a->sx), NUM(a->sy), NUM(a->cx), NUM(a->cy),
             NUM(a->ex), NUM(a->ey));
    mapsvg_puts(b, a->unverified ? "<g class=\"move move-unverified\" data-from=\""
                                 : "<g class=\"move\" data-from=\"");
    mapsvg_esc(b, from);
    mapsvg_puts(b, "\" data-to=\"");
    mapsvg_esc(b, to);
    mapsvg_puts(b, "\">");
    /* Dashed, and said on hover: the PBX accepted it, nobody saw it do it. */
    if (a->unverified)
      mapsvg_puts(b, L->in[a->from].is_group
                         ? "<title>at least part applied, not read back from the PBX</title>"
                         : "<title>applied, not read back from the PBX</title>");
    /* A white casing under the arrow keeps it readable where it crosses
     * the graticule or another arrow. */
    mapsvg_printf(b,
                  "<path class=\"move-casing\" d=\"%s\" stroke=\"#ffffff\" stroke-width=\"%s\"/>"
                  "<path class=\"move-arrow\" d=\"%s\" stroke=\"" C_MOVE "\" stroke-width=\"%s\"%s "
                  "marker-end=\"url(#nirc-map-head-%zu)\"/></g>\n",
                  d, NUM(a->w + 3), d, NUM(a->w),
                  a->unverified ? " stroke-dasharray=\"" DASH_UNVERIFIED "\"" : "", order[k]);
  }
  mapsvg_puts(b, "</g>\n");
}

static void put_labels(mapsvg_buf_t *b, const layout_t *L) {
  /* The white halo (stroke painted under the fill) keeps names legible
   * where they cross an arrow or a grid line. */
  mapsvg_puts(b, "<g class=\"labels\" font-size=\"12\" fill=\"" C_TEXT "\" stroke=\"" C_HALO
                 "\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\">\n");
  for (size_t i = 0; i < L->n; i++) {
    const label_t *lb = &L->lab[i];
    if (!L->spot[i].shown) continue;
    const char *anchor = lb->anchor > 0 ? "start" : lb->anchor < 0 ? "end" : "middle";
    mapsvg_printf(b, "<text class=\"site-label\" x=\"%s\" y=\"%s\" text-anchor=\"%s\">",
                  NUM(lb->ax), NUM(lb->box.y0 + LINE1_BASE), anchor);
    mapsvg_puts(b, "<tspan font-weight=\"bold\">");
    mapsvg_esc(b, lb->en);
    mapsvg_puts(b, "</tspan>");
    if (lb->zh[0]) {
      mapsvg_puts(b, " <tspan class=\"zh\">");
      mapsvg_esc(b, lb->zh);
      mapsvg_puts(b, "</tspan>");
    }
    mapsvg_puts(b, "</text>\n");
    if (!lb->stat && !lb->route[0] && !lb->queue) continue;
    mapsvg_printf(
        b, "<text class=\"site-status\" x=\"%s\" y=\"%s\" text-anchor=\"%s\" font-size=\"11\">",
        NUM(lb->ax), NUM(lb->box.y0 + LINE2_BASE), anchor);
    if (lb->stat)
      mapsvg_printf(b, "<tspan class=\"%s\" fill=\"%s\" font-weight=\"bold\">%s</tspan>",
                    LINK_STYLE[L->spot[i].link].cls, LINK_STYLE[L->spot[i].link].word_fill,
                    lb->stat);
    if (lb->stat && lb->route[0]) mapsvg_puts(b, " \xC2\xB7 "); /* · */
    if (lb->route[0]) /* our own words and counts: nothing to escape */
      mapsvg_printf(
          b, "<tspan class=\"route-mark\" fill=\"" C_ROUTE "\" font-weight=\"bold\">%s</tspan>",
          lb->route);
    if ((lb->stat || lb->route[0]) && lb->queue) mapsvg_puts(b, " \xC2\xB7 ");
    if (lb->queue)
      mapsvg_printf(b, "<tspan class=\"queue\" font-weight=\"bold\">%u%s in queue</tspan>",
                    lb->queue, lb->queue_partial ? "+" : "");
    mapsvg_puts(b, "</text>\n");
  }
  mapsvg_puts(b, "</g>\n");
}

static void put_arrow_labels(mapsvg_buf_t *b, const layout_t *L) {
  mapsvg_puts(b, "<g class=\"move-labels\" font-size=\"11\" font-weight=\"bold\" "
                 "text-anchor=\"middle\">\n");
  for (size_t i = 0; i < L->nm; i++) {
    const arrow_t *a = &L->arr[i];
    mapsvg_printf(b,
                  "<g class=\"move-label\"><rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" "
                  "rx=\"4\" fill=\"#ffffff\" stroke=\"" C_MOVE "\" stroke-width=\"1\"%s/>"
                  "<text x=\"%s\" y=\"%s\" fill=\"" C_MOVE "\">%s</text></g>\n",
                  NUM(a->lbox.x0), NUM(a->lbox.y0), NUM(a->lbox.x1 - a->lbox.x0),
                  NUM(a->lbox.y1 - a->lbox.y0), a->unverified ? " stroke-dasharray=\"3 2\"" : "",
                  NUM((a->lbox.x0 + a->lbox.x1) / 2), NUM(a->lbox.y0 + 11.5), a->text);
  }
  mapsvg_puts(b, "</g>\n");
}

/* One legend row: a sample dot and its words. */
static void legend_dot(mapsvg_buf_t *b, double x, double y, const char *fill, int link,
                       const char *text) {
  char dash_attr[48] = "";
  if (LINK_STYLE[link].dash)
    snprintf(dash_attr, sizeof dash_attr, " stroke-dasharray=\"%s\"", LINK_STYLE[link].dash);
  mapsvg_printf(
      b,
      "<circle class=\"legend-dot\" cx=\"%s\" cy=\"%s\" r=\"6\" fill=\"%s\" stroke=\"%s\" "
      "stroke-width=\"%s\"%s opacity=\"%s\"/><text x=\"%s\" y=\"%s\">%s</text>\n",
      NUM(x), NUM(y - 4), fill, LINK_STYLE[link].stroke, LINK_STYLE[link].width, dash_attr,
      LINK_STYLE[link].opacity, NUM(x + 12), NUM(y), text);
}

static void put_legend(mapsvg_buf_t *b, const layout_t *L) {
  double x = L->legend.x0, y = L->legend.y0, c2 = x + 150, d = x + 18;
  mapsvg_printf(b,
                "<g class=\"legend\" font-size=\"11\" fill=\"" C_TEXT "\">\n"
                "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" rx=\"6\" fill=\"#ffffff\" "
                "stroke=\"#b8c2cc\"/>\n"
                "<text x=\"%s\" y=\"%s\" font-size=\"12\" font-weight=\"bold\">How to read this "
                "map</text>\n"
                "<text x=\"%s\" y=\"%s\" font-weight=\"bold\" fill=\"" C_MUTED
                "\">Fill: share of agents busy</text>\n",
                NUM(x), NUM(y), NUM(LEG_W), NUM(L->leg_h), NUM(x + 10), NUM(y + 19), NUM(x + 10),
                NUM(y + 38));
  legend_dot(b, d, y + 56, LOAD_STYLE[LOAD_OK].fill, LINK_ONLINE, "under 70%");
  legend_dot(b, c2, y + 56, LOAD_STYLE[LOAD_HIGH].fill, LINK_ONLINE, "70% to 90%");
  legend_dot(b, d, y + 74, LOAD_STYLE[LOAD_FULL].fill, LINK_ONLINE, "90% or more");
  legend_dot(b, c2, y + 74, LOAD_STYLE[LOAD_UNKNOWN].fill, LINK_ONLINE, "not measured");
  mapsvg_printf(b,
                "<text x=\"%s\" y=\"%s\" font-weight=\"bold\" fill=\"" C_MUTED
                "\">Outline: link to the controller</text>\n",
                NUM(x + 10), NUM(y + 96));
  legend_dot(b, d, y + 114, "#ffffff", LINK_ONLINE, "online");
  legend_dot(b, c2, y + 114, "#ffffff", LINK_STALE, "stale (late reports)");
  legend_dot(b, d, y + 132, "#ffffff", LINK_OFFLINE, "offline");
  legend_dot(b, c2, y + 132, "#ffffff", LINK_NEVER, "never connected");
  /* hub sample: the same dot-and-ring as on the map */
  mapsvg_printf(b,
                "<circle cx=\"%s\" cy=\"%s\" r=\"12\" fill=\"none\" stroke=\"#1f2933\" "
                "stroke-width=\"1.6\"/><circle cx=\"%s\" cy=\"%s\" r=\"8\" fill=\"%s\" "
                "stroke=\"#1f2933\" stroke-width=\"1.6\"/>"
                "<text x=\"%s\" y=\"%s\">hub: may answer other sites' calls</text>\n",
                NUM(d), NUM(y + 153), NUM(d), NUM(y + 153), LOAD_STYLE[LOAD_OK].fill, NUM(x + 38),
                NUM(y + 157));
  mapsvg_printf(b,
                "<path d=\"M%s,%s Q%s,%s %s,%s\" fill=\"none\" stroke=\"" C_MOVE "\" "
                "stroke-width=\"3\" marker-end=\"url(#nirc-map-head-legend)\"/>"
                "<text x=\"%s\" y=\"%s\">calls moved to a hub; the label is</text>"
                "<text x=\"%s\" y=\"%s\">the share of the source's calls</text>\n",
                NUM(x + 6), NUM(y + 190), NUM(x + 19), NUM(y + 178), NUM(x + 32), NUM(y + 184),
                NUM(x + 48), NUM(y + 180), NUM(x + 48), NUM(y + 194));
  /* The route marks, only when the map shows one: under the rest, or in
   * their own box (legend_place). */
  double r = y + LEG_H - 6; /* baselines 6 px above the frame's edge, as above */
  if (L->marks.x1 > 0) {
    x = L->marks.x0, r = L->marks.y0 - 4;
    mapsvg_printf(b,
                  "</g>\n<g class=\"legend legend-marks\" font-size=\"11\" fill=\"" C_TEXT "\">\n"
                  "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" rx=\"6\" "
                  "fill=\"#ffffff\" stroke=\"#b8c2cc\"/>\n",
                  NUM(x), NUM(L->marks.y0), NUM(LEG_W), NUM(L->marks.y1 - L->marks.y0));
  }
  if (L->leg_unverified) {
    r += ROUTE_ROW;
    mapsvg_printf(b,
                  "<path class=\"legend-unverified\" d=\"M%s,%s L%s,%s\" stroke=\"" C_MOVE
                  "\" stroke-width=\"3\" stroke-dasharray=\"" DASH_UNVERIFIED "\"/>"
                  "<text x=\"%s\" y=\"%s\">unverified: not read back from the PBX</text>\n",
                  NUM(x + 6), NUM(r - 4), NUM(x + 36), NUM(r - 4), NUM(x + 42), NUM(r));
  }
  if (L->leg_home) {
    r += ROUTE_ROW;
    mapsvg_printf(b,
                  "<circle class=\"legend-unverified-home\" cx=\"%s\" cy=\"%s\" r=\"7\" "
                  "fill=\"none\" stroke=\"" C_MOVE "\" stroke-width=\"1.6\" "
                  "stroke-dasharray=\"" DASH_UNVERIFIED "\"/>"
                  "<text x=\"%s\" y=\"%s\">routed home, not read back from the PBX</text>\n",
                  NUM(x + 21), NUM(r - 4), NUM(x + 42), NUM(r));
  }
  if (L->leg_unknown) {
    r += ROUTE_ROW;
    mapsvg_printf(
        b,
        "<text class=\"legend-route-unknown\" x=\"%s\" y=\"%s\"><tspan fill=\"" C_ROUTE
        "\" font-weight=\"bold\">route unknown</tspan>: not confirmed at the PBX</text>\n",
        NUM(x + 10), NUM(r));
  }
  if (L->leg_unheard) {
    r += ROUTE_ROW;
    mapsvg_printf(b,
                  "<text class=\"legend-unheard\" x=\"%s\" y=\"%s\"><tspan fill=\"" C_ROUTE
                  "\" font-weight=\"bold\">not heard</tspan>: no Hello here since the "
                  "takeover</text>\n",
                  NUM(x + 10), NUM(r));
  }
  if (L->leg_held) {
    r += ROUTE_ROW;
    mapsvg_printf(b,
                  "<text class=\"legend-held\" x=\"%s\" y=\"%s\"><tspan fill=\"" C_ROUTE
                  "\" font-weight=\"bold\">held home</tspan>: agent's clock ahead; readmit"
                  "</text>\n",
                  NUM(x + 10), NUM(r));
  }
  mapsvg_puts(b, "</g>\n");
}

/* Title and a one-line summary that counts what needs attention. */
static void put_title(mapsvg_buf_t *b, const layout_t *L, const char *title, size_t n_moves,
                      const char *summary) {
  size_t cnt[5] = {0}, hidden = 0, unknown = 0, unverified = 0, unheard = 0, held = 0;
  for (size_t i = 0; i < L->n; i++) {
    held += L->in[i].held_home;
    unknown += L->in[i].route_unknown;
    unheard += L->in[i].route_unknown ? L->in[i].route_unheard : 0;
    /* a site's unknown route is not also unverified (a group's counts
     * are apart already) */
    unverified += L->in[i].is_group || !L->in[i].route_unknown ? L->in[i].route_unverified : 0;
    if (L->spot[i].shown)
      cnt[L->spot[i].link]++;
    else
      hidden++;
  }
  mapsvg_puts(b, "<text class=\"title\" x=\"20\" y=\"32\" font-size=\"20\" font-weight=\"bold\" "
                 "fill=\"" C_TEXT "\">");
  mapsvg_esc(b, title);
  if (summary) { /* the caller's (an aggregated map says so) */
    mapsvg_puts(b, "</text>\n<text class=\"summary\" x=\"20\" y=\"52\" font-size=\"12\" "
                   "font-weight=\"bold\" fill=\"" C_TEXT "\">");
    mapsvg_esc(b, summary);
    mapsvg_puts(b, "</text>\n");
    return;
  }
  mapsvg_printf(
      b,
      "</text>\n<text class=\"summary\" x=\"20\" y=\"52\" font-size=\"12\" fill=\"" C_MUTED
      "\">%zu site%s: %zu online",
      L->n, L->n == 1 ? "" : "s", cnt[LINK_ONLINE]);
  for (int k = LINK_STALE; k <= LINK_UNKNOWN; k++)
    if (cnt[k])
      mapsvg_printf(b, ", <tspan fill=\"%s\" font-weight=\"bold\">%zu %s</tspan>",
                    LINK_STYLE[k].word_fill, cnt[k], LINK_STYLE[k].word);
  if (hidden) mapsvg_printf(b, ", %zu without coordinates (not drawn)", hidden);
  if (unknown)
    mapsvg_printf(b,
                  "; <tspan fill=\"" C_ROUTE "\" font-weight=\"bold\">%zu route%s unknown</tspan>",
                  unknown, unknown == 1 ? "" : "s");
  if (unheard) mapsvg_printf(b, " (%zu not heard from)", unheard);
  if (unverified)
    mapsvg_printf(b, "%s%zu route%s unverified", unknown ? ", " : "; ", unverified,
                  unverified == 1 ? "" : "s");
  if (held)
    mapsvg_printf(b, "; <tspan fill=\"" C_ROUTE "\" font-weight=\"bold\">%zu held home</tspan>",
                  held);
  mapsvg_printf(b, "; %zu move%s shown</text>\n", n_moves, n_moves == 1 ? "" : "s");
  if (L->n == hidden)
    mapsvg_printf(b,
                  "<text x=\"%s\" y=\"%s\" font-size=\"16\" text-anchor=\"middle\" fill=\"" C_MUTED
                  "\">No sites to show</text>\n",
                  NUM(PAGE_W / 2), NUM(PAGE_H / 2));
}

/* ---- entry point ---------------------------------------------------------- */

static void layout_free(layout_t *L) {
  free(L->spot);
  free(L->lab);
  free(L->arr);
}

/* Fills the dots and label texts of every site. */
static void layout_sites(layout_t *L) {
  for (size_t i = 0; i < L->n; i++) {
    const map_site_t *m = &L->in[i];
    spot_t *s = &L->spot[i];
    label_t *lb = &L->lab[i];
    s->shown = coords_ok(m);
    s->x = proj_x(L, m->lon), s->y = proj_y(L, m->lat);
    s->r = m->is_hub ? 9 : 7;
    s->rr = m->is_hub ? 14 : 8;
    s->link = link_kind(m->link);
    s->load = load_kind(m->occupancy);
    /* a site without an English name is shown by its slug */
    const char *en = m->name_en && *m->name_en ? m->name_en : m->slug;
    mapsvg_clean(lb->en, sizeof lb->en, en ? en : "?", NAME_MAX_CP);
    mapsvg_clean(lb->zh, sizeof lb->zh, m->name_zh, NAME_MAX_CP);
    lb->stat = s->link == LINK_ONLINE ? NULL : LINK_STYLE[s->link].word;
    lb->queue = m->queue_unknown ? 0 : m->in_queue;
    lb->queue_partial = m->queue_partial;
    map_route_word(lb->route, sizeof lb->route, m);
    double w1 = mapsvg_text_width(lb->en, 12, true), w2 = 0;
    if (lb->zh[0]) w1 += 4 + mapsvg_text_width(lb->zh, 12, false);
    if (lb->stat) w2 += mapsvg_text_width(lb->stat, 11, true);
    if (lb->route[0]) w2 += mapsvg_text_width(lb->route, 11, true);
    if (lb->stat && lb->route[0]) w2 += mapsvg_text_width(" . ", 11, false);
    if ((lb->stat || lb->route[0]) && lb->queue) w2 += mapsvg_text_width(" . ", 11, false);
    if (lb->queue) {
      char q[32];
      snprintf(q, sizeof q, "%u%s in queue", lb->queue, lb->queue_partial ? "+" : "");
      w2 += mapsvg_text_width(q, 11, true);
    }
    lb->w = fmax(w1, w2);
    lb->h = w2 > 0 ? LINE1_H + LINE2_H : LINE1_H;
  }
}

char *map_render_svg(const map_site_t *sites, size_t n_sites, const map_move_t *moves,
                     size_t n_moves, const char *title) {
  return map_render_svg_summary(sites, n_sites, moves, n_moves, title, NULL);
}

char *map_render_svg_summary(const map_site_t *sites, size_t n_sites, const map_move_t *moves,
                             size_t n_moves, const char *title, const char *summary) {
  if (!sites) n_sites = 0;
  if (!moves) n_moves = 0;
  if (n_sites > SITES_MAX || n_moves > MOVES_MAX) return NULL;
  layout_t L = {.n = n_sites, .in = sites};
  mapsvg_buf_t b = {0};
  size_t *order = NULL;
  L.spot = calloc(n_sites ? n_sites : 1, sizeof *L.spot);
  L.lab = calloc(n_sites ? n_sites : 1, sizeof *L.lab);
  L.arr = calloc(n_moves ? n_moves : 1, sizeof *L.arr);
  order = calloc(n_moves ? n_moves : 1, sizeof *order);
  if (!L.spot || !L.lab || !L.arr || !order) goto fail;

  project_setup(&L);
  layout_sites(&L);

  /* Moves whose ends are unknown, not drawn, identical or on top of each
   * other are skipped: the map shows what it can and never guesses. So is
   * a move from a site whose route is unknown: it is not the route in
   * force (a single site; a group's arrows sum its other sites). */
  for (size_t i = 0; i < n_moves; i++) {
    size_t f = find_site(&L, moves[i].from), t = find_site(&L, moves[i].to);
    if (f == SIZE_MAX || t == SIZE_MAX || f == t || moves[i].permille == 0) continue;
    if (sites[f].route_unknown && !sites[f].is_group) continue;
    if (hypot(L.spot[t].x - L.spot[f].x, L.spot[t].y - L.spot[f].y) < 1) continue;
    arrow_t *a = &L.arr[L.nm++];
    a->from = f, a->to = t, a->permille = moves[i].permille;
    a->unverified = moves[i].unverified;
    L.leg_unverified |= a->unverified;
    L.spot[t].inbound++;
    L.spot[f].outbound++;
  }
  /* A legend row for each route mark the map shows. */
  for (size_t i = 0; i < n_sites; i++) {
    if (!L.spot[i].shown) continue;
    L.leg_unknown |= sites[i].route_unknown > sites[i].route_unheard;
    L.leg_unheard |= sites[i].route_unknown > 0 && sites[i].route_unheard > 0;
    L.leg_unverified |= sites[i].is_group && sites[i].route_unverified > 0;
    L.leg_home |= unverified_home(&L, i);
    L.leg_held |= sites[i].held_home > 0;
  }
  L.leg_h = LEG_H + ROUTE_ROW * (L.leg_unverified + L.leg_home + L.leg_unknown + L.leg_unheard +
                                 L.leg_held);
  for (size_t i = 0; i < L.nm; i++)
    arrow_build(&L, &L.arr[i], 0.2);
  /* Thick arrows first so thin ones stay visible on top of them. */
  for (size_t i = 0; i < L.nm; i++) {
    size_t k = i;
    while (k > 0 && L.arr[order[k - 1]].w < L.arr[i].w) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = i;
  }

  /* The legend goes where the default arrows are not; then each arrow may
   * bow the other way to miss dots and the legend. */
  legend_place(&L);
  if (legend_clear(&L)) /* the dots moved: so do the arrows */
    for (size_t i = 0; i < L.nm; i++)
      arrow_build(&L, &L.arr[i], 0.2);
  for (size_t i = 0; i < L.nm; i++)
    arrow_route(&L, &L.arr[i]);

  char clean_title[TITLE_BUF];
  mapsvg_clean(clean_title, sizeof clean_title, title && *title ? title : "NIRC routing map",
               TITLE_MAX_CP);
  put_header(&b, clean_title);
  mapsvg_puts(&b, "<defs>\n");
  for (size_t i = 0; i < L.nm; i++) {
    char id[40];
    snprintf(id, sizeof id, "nirc-map-head-%zu", i);
    put_marker(&b, id, L.arr[i].head_l, L.arr[i].head_h);
  }
  put_marker(&b, "nirc-map-head-legend", 9 + 1.6 * 3, 0.75 * (9 + 1.6 * 3));
  mapsvg_puts(&b, "</defs>\n");
  put_frame(&b, &L); /* also records the graticule labels the site labels avoid */
  if (place_labels(&L) != 0) goto fail;
  for (size_t i = 0; i < L.nm; i++)
    arrow_label_place(&L, i);
  put_leaders(&b, &L);
  put_arrows(&b, &L, order);
  put_unverified_home(&b, &L);
  put_sites(&b, &L);
  put_labels(&b, &L);
  put_arrow_labels(&b, &L);
  put_legend(&b, &L);
  put_title(&b, &L, clean_title, L.nm, summary);
  mapsvg_puts(&b, "</svg>\n");
  if (b.failed) goto fail;
  layout_free(&L);
  free(order);
  return b.p;

fail:
  layout_free(&L);
  free(order);
  free(b.p);
  return NULL;
}
