/* Unit tests for the routing map (controller/web/map.c).
 *
 * The map is what an operator looks at in the middle of the night, so these
 * tests check what would mislead or break it: every site drawn exactly once
 * with its hub, link and load classes; moves drawn once with the right share
 * text and unknown slugs skipped; every name escaped (and broken bytes
 * cleaned) so the document stays parseable; tags that balance; no text below
 * 11px and no absurdly overlapping labels for the 31-province network; the
 * same bytes for the same input; and sane output for no sites at all.
 *
 * The 31 sites come from scenario/provinces.json under NIRC_SOURCE_DIR (set
 * by CTest). When NIRC_BUILD_DIR is set, a sample map is written there as
 * map-sample.svg for a person to look at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "mapgroup.h"
#include "mapsvg.h"
#include "safetext.h"
#include "report.h"

#define N_PROV 31

/* ---- fixture: the shipped provinces ----------------------------------- */

static json_t *g_root;            /* owns the strings the sites point to */
static map_site_t g_prov[N_PROV]; /* pristine copy; tests work on copies */

static int load_provinces(void **state) {
  (void)state;
  const char *root = getenv("NIRC_SOURCE_DIR");
  if (!root || !*root) {
    fprintf(stderr, "NIRC_SOURCE_DIR is not set; run with NIRC_SOURCE_DIR=<repository root>\n");
    return -1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/scenario/provinces.json", root);
  json_error_t err;
  g_root = json_load_file(path, 0, &err);
  if (!g_root) {
    fprintf(stderr, "%s:%d: %s\n", path, err.line, err.text);
    return -1;
  }
  json_t *arr = json_object_get(g_root, "sites");
  if (!json_is_array(arr) || json_array_size(arr) != N_PROV) {
    fprintf(stderr, "%s: expected %d sites\n", path, N_PROV);
    return -1;
  }
  for (size_t i = 0; i < N_PROV; i++) {
    json_t *s = json_array_get(arr, i);
    /* A spread of loads and queues so the sample shows every colour. */
    g_prov[i] = (map_site_t){
        .slug = json_string_value(json_object_get(s, "slug")),
        .name_en = json_string_value(json_object_get(s, "name_en")),
        .name_zh = json_string_value(json_object_get(s, "name_zh")),
        .lat = json_real_value(json_object_get(s, "lat")),
        .lon = json_real_value(json_object_get(s, "lon")),
        .link = "online",
        .occupancy = i % 7 == 6 ? -1 : (double)(i % 10) / 10.0,
        .in_queue = i % 6 == 0 ? (unsigned)(i + 2) : 0,
        .is_hub = json_is_true(json_object_get(s, "is_hub")),
    };
    if (!g_prov[i].slug || !g_prov[i].name_en || !g_prov[i].name_zh) return -1;
  }
  return 0;
}

static int free_provinces(void **state) {
  (void)state;
  json_decref(g_root);
  return 0;
}

static void copy_prov(map_site_t *out) {
  memcpy(out, g_prov, sizeof g_prov);
}

static map_site_t *site_by_slug(map_site_t *v, size_t n, const char *slug) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].slug, slug) == 0) return &v[i];
  fail_msg("no site %s", slug);
  return NULL;
}

/* ---- helpers ---------------------------------------------------------- */

static size_t count(const char *hay, const char *needle) {
  size_t n = 0, len = strlen(needle);
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += len)
    n++;
  return n;
}

/* The whole tag `<circle ... data-slug="slug" ...>` into buf. */
static void site_tag(const char *svg, const char *slug, char *buf, size_t len) {
  char key[128];
  snprintf(key, sizeof key, "data-slug=\"%s\"", slug);
  const char *p = strstr(svg, key);
  if (!p) fail_msg("no element for %s", slug);
  const char *start = p, *end = strchr(p, '>');
  while (start > svg && *start != '<')
    start--;
  assert_non_null(end);
  size_t n = (size_t)(end - start + 1);
  assert_true(n < len);
  memcpy(buf, start, n);
  buf[n] = '\0';
}

/* A tiny well-formedness check, not an XML parser: tags nest and close in
 * order, no raw '<' sits inside a tag or '>' in text, quotes pair up in
 * every tag, and every '&' starts one of the entities the map uses. Fails
 * the test with the offending position. */
static void check_well_formed(const char *s) {
  char stack[64][32];
  int depth = 0;
  const char *p = s;
  while (*p) {
    if (*p == '&') {
      static const char *const ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
      bool ok = false;
      for (size_t k = 0; k < 5; k++)
        ok = ok || strncmp(p, ent[k], strlen(ent[k])) == 0;
      if (!ok) fail_msg("bare '&' at offset %td: %.30s", p - s, p);
      p++;
      continue;
    }
    if (*p == '>') fail_msg("raw '>' in text at offset %td: %.30s", p - s, p);
    if (*p != '<') {
      p++;
      continue;
    }
    if (strncmp(p, "<?", 2) == 0) {
      const char *q = strstr(p, "?>");
      if (!q) fail_msg("unterminated processing instruction");
      p = q + 2;
      continue;
    }
    const char *end = strchr(p, '>');
    if (!end) fail_msg("unterminated tag at offset %td", p - s);
    size_t quotes = 0;
    for (const char *q = p + 1; q < end; q++) {
      if (*q == '<') fail_msg("raw '<' inside a tag at offset %td: %.40s", q - s, p);
      if (*q == '"') quotes++;
    }
    if (quotes % 2) fail_msg("unpaired quote in tag at offset %td: %.60s", p - s, p);
    bool closing = p[1] == '/', self = end[-1] == '/';
    const char *name = p + (closing ? 2 : 1);
    size_t nl = strcspn(name, " \t\n/>");
    if (nl == 0 || nl >= sizeof stack[0]) fail_msg("bad tag name at offset %td", p - s);
    if (closing) {
      if (depth == 0) fail_msg("</%.*s> closes nothing", (int)nl, name);
      depth--;
      if (strlen(stack[depth]) != nl || strncmp(stack[depth], name, nl) != 0)
        fail_msg("</%.*s> closes <%s> at offset %td", (int)nl, name, stack[depth], p - s);
    } else if (!self) {
      if (depth == 64) fail_msg("nesting too deep");
      memcpy(stack[depth], name, nl);
      stack[depth][nl] = '\0';
      depth++;
    }
    p = end + 1;
  }
  if (depth != 0) fail_msg("<%s> never closed", stack[depth - 1]);
}

static void check_document(const char *svg) {
  assert_non_null(svg);
  assert_true(strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0);
  size_t n = strlen(svg);
  while (n > 0 && (svg[n - 1] == '\n' || svg[n - 1] == ' '))
    n--;
  assert_true(n >= 6);
  assert_memory_equal(svg + n - 6, "</svg>", 6);
  check_well_formed(svg);
}

static char *render(const map_site_t *s, size_t n, const map_move_t *m, size_t nm) {
  char *svg = map_render_svg(s, n, m, nm, "NIRC routing test");
  check_document(svg);
  return svg;
}

/* ---- document and sites ----------------------------------------------- */

static void test_document_shape(void **state) {
  (void)state;
  char *svg = render(g_prov, N_PROV, NULL, 0);
  assert_non_null(strstr(svg, "xmlns=\"http://www.w3.org/2000/svg\""));
  assert_non_null(strstr(svg, "viewBox=\"0 0 960 720\""));
  assert_non_null(strstr(svg, ">NIRC routing test</text>"));
  assert_non_null(strstr(svg, "class=\"legend\""));
  free(svg);
}

static void test_every_site_once_hubs_marked(void **state) {
  (void)state;
  char *svg = render(g_prov, N_PROV, NULL, 0);
  assert_int_equal(count(svg, "<circle class=\"site "), N_PROV);
  size_t hubs = 0;
  for (size_t i = 0; i < N_PROV; i++)
    hubs += g_prov[i].is_hub;
  assert_true(hubs >= 2);
  assert_int_equal(count(svg, "<circle class=\"site hub "), hubs);
  assert_int_equal(count(svg, "<circle class=\"hub-ring\""), hubs);
  char tag[1024];
  site_tag(svg, "shaanxi", tag, sizeof tag);
  assert_non_null(strstr(tag, "class=\"site hub "));
  site_tag(svg, "henan", tag, sizeof tag);
  assert_non_null(strstr(tag, "class=\"site hub "));
  site_tag(svg, "hubei", tag, sizeof tag);
  assert_non_null(strstr(tag, "class=\"site "));
  assert_null(strstr(tag, " hub ")); /* "hubei" itself contains "hub" */
  /* both names of every site are on the map */
  for (size_t i = 0; i < N_PROV; i++) {
    char want[128];
    snprintf(want, sizeof want, ">%s</tspan>", g_prov[i].name_en);
    assert_non_null(strstr(svg, want));
    snprintf(want, sizeof want, ">%s</tspan>", g_prov[i].name_zh);
    assert_non_null(strstr(svg, want));
  }
  free(svg);
}

static void test_link_and_load_classes(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  site_by_slug(s, N_PROV, "hubei")->link = "stale";
  site_by_slug(s, N_PROV, "fujian")->link = "offline";
  site_by_slug(s, N_PROV, "xizang")->link = "never-seen";
  site_by_slug(s, N_PROV, "guizhou")->link = "sideways";
  site_by_slug(s, N_PROV, "hebei")->occupancy = 0.5;
  site_by_slug(s, N_PROV, "jilin")->occupancy = 0.7;
  site_by_slug(s, N_PROV, "anhui")->occupancy = 0.89;
  site_by_slug(s, N_PROV, "hunan")->occupancy = 0.9;
  site_by_slug(s, N_PROV, "gansu")->occupancy = -1;
  site_by_slug(s, N_PROV, "qinghai")->occupancy = NAN;
  char *svg = render(s, N_PROV, NULL, 0);
  static const char *const want[][2] = {
      {"hubei", "link-stale"},     {"fujian", "link-offline"},  {"xizang", "link-never-seen"},
      {"guizhou", "link-unknown"}, {"beijing", "link-online"},  {"hebei", "load-ok"},
      {"jilin", "load-high"},      {"anhui", "load-high"},      {"hunan", "load-full"},
      {"gansu", "load-unknown"},   {"qinghai", "load-unknown"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char tag[1024];
    site_tag(svg, want[i][0], tag, sizeof tag);
    if (!strstr(tag, want[i][1])) fail_msg("%s: no %s in %s", want[i][0], want[i][1], tag);
  }
  /* the state is spelled out next to the name, not only drawn */
  assert_non_null(strstr(svg, ">stale</tspan>"));
  assert_non_null(strstr(svg, ">offline</tspan>"));
  assert_non_null(strstr(svg, ">never connected</tspan>"));
  assert_non_null(strstr(svg, "27 online"));
  /* an offline site is faded, with a dashed outline */
  char tag[1024];
  site_tag(svg, "fujian", tag, sizeof tag);
  assert_non_null(strstr(tag, "stroke-dasharray"));
  assert_null(strstr(tag, "opacity=\"1\""));
  site_tag(svg, "beijing", tag, sizeof tag);
  assert_null(strstr(tag, "stroke-dasharray"));
  free(svg);
}

static void test_queue_counts(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  size_t queued = 0;
  for (size_t i = 0; i < N_PROV; i++) {
    s[i].in_queue = i % 4 == 1 ? (unsigned)(10 * i) : 0;
    queued += s[i].in_queue > 0;
  }
  char *svg = render(s, N_PROV, NULL, 0);
  assert_int_equal(count(svg, " in queue</tspan>"), queued);
  assert_non_null(strstr(svg, ">10 in queue</tspan>"));
  assert_non_null(strstr(svg, ">290 in queue</tspan>"));
  free(svg);
}

/* ---- moves -------------------------------------------------------------- */

static void test_full_move(void **state) {
  (void)state;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false}};
  char *svg = render(g_prov, N_PROV, mv, 1);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 1);
  assert_int_equal(count(svg, "<g class=\"move\" data-from=\"hubei\" data-to=\"shaanxi\">"), 1);
  assert_int_equal(count(svg, ">100%</text>"), 1);
  assert_int_equal(count(svg, "marker-end=\"url(#nirc-map-head-0)\""), 1);
  assert_non_null(strstr(svg, " Q")); /* a curve, not a straight line */
  free(svg);
}

static void test_partial_move(void **state) {
  (void)state;
  map_move_t mv[] = {{"guizhou", "shaanxi", 300, false}};
  char *svg = render(g_prov, N_PROV, mv, 1);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 1);
  assert_int_equal(count(svg, ">300\xE2\x80\xB0</text>"), 1);
  assert_null(strstr(svg, ">100%</text>"));
  free(svg);
}

static void test_arrow_width_follows_share(void **state) {
  (void)state;
  map_move_t mv[] = {{"guizhou", "shaanxi", 100, false}, {"hubei", "shaanxi", 1000, false}};
  char *svg = render(g_prov, N_PROV, mv, 2);
  double w[2] = {0};
  const char *p = svg;
  for (int k = 0; k < 2; k++) {
    p = strstr(p, "class=\"move-arrow\"");
    assert_non_null(p);
    const char *sw = strstr(p, "stroke-width=\"");
    assert_non_null(sw);
    w[k] = strtod(sw + 14, NULL);
    p = sw;
  }
  /* thick first (drawn underneath), so the first is the 1000 one */
  assert_true(w[0] > w[1] + 2);
  free(svg);
}

static void test_unknown_slugs_skipped(void **state) {
  (void)state;
  map_move_t mv[] = {
      {"atlantis", "shaanxi", 500, false}, {"hubei", "atlantis", 1000, false},
      {NULL, "shaanxi", 1000, false},      {"hubei", NULL, 1000, false},
      {"hubei", "hubei", 1000, false},     {"fujian", "henan", 0, false},
      {"fujian", "henan", 200, false},
  };
  char *svg = render(g_prov, N_PROV, mv, sizeof mv / sizeof mv[0]);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 1);
  assert_non_null(strstr(svg, "data-from=\"fujian\" data-to=\"henan\""));
  assert_non_null(strstr(svg, "1 move shown"));
  free(svg);
  /* moves but no sites at all */
  svg = render(NULL, 0, mv, sizeof mv / sizeof mv[0]);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 0);
  free(svg);
}

/* ---- text safety -------------------------------------------------------- */

static void test_names_escaped(void **state) {
  (void)state;
  map_site_t s[] = {
      {.slug = "a&b",
       .name_en = "A&B <x>",
       .name_zh = "\"\xE5\xBC\x95\" 'q'",
       .lat = 30,
       .lon = 110,
       .link = "online",
       .occupancy = 0.5,
       .in_queue = 3},
      {.slug = "bad",
       .name_en = "bad\xFF\x01name\xE5\xBC",
       .name_zh = NULL,
       .lat = 35,
       .lon = 115,
       .link = NULL,
       .occupancy = -1,
       .is_hub = true},
  };
  map_move_t mv[] = {{"a&b", "bad", 1000, false}};
  char *svg = map_render_svg(s, 2, mv, 1, "Night <test> & \"quotes\" 'x'");
  check_document(svg);
  assert_null(strstr(svg, "A&B <x>"));
  assert_null(strstr(svg, "<x>"));
  assert_non_null(strstr(svg, ">A&amp;B &lt;x&gt;</tspan>"));
  assert_non_null(strstr(svg, "&quot;\xE5\xBC\x95&quot; &apos;q&apos;"));
  assert_non_null(strstr(svg, "data-slug=\"a&amp;b\""));
  assert_non_null(strstr(svg, "data-from=\"a&amp;b\""));
  assert_non_null(strstr(svg, "Night &lt;test&gt; &amp; &quot;quotes&quot; &apos;x&apos;"));
  assert_null(strstr(svg, "<test>"));
  /* broken bytes and control characters never reach the document */
  assert_null(strchr(svg, '\xFF'));
  assert_null(strchr(svg, '\x01'));
  assert_non_null(strstr(svg, "bad\xEF\xBF\xBD name\xEF\xBF\xBD"));
  free(svg);
}

/* A name from the database may hold anything safetext forbids: DEL, C1
 * (U+009B, a CSI), a line separator and the bidirectional controls that
 * show the label reordered; each becomes a space, as C0 does. */
static void test_names_lose_controls_and_bidi(void **state) {
  (void)state;
  map_site_t s[] = {{.slug = "q",
                     .name_en = "a\x7f"
                                "b\xC2\x9B"
                                "c\xE2\x80\xA8"
                                "d\xE2\x80\xAE"
                                "e\xE2\x81\xA6"
                                "f",
                     .name_zh = "\xD8\x9C"
                                "g\xE2\x80\x8F"
                                "h",
                     .lat = 30,
                     .lon = 110,
                     .link = "online"}};
  char *svg = map_render_svg(s, 1, NULL, 0, "t\xE2\x80\xAE");
  check_document(svg);
  /* Nothing safetext forbids but the document's own line ends. */
  safetext_hit_t hit;
  for (const char *p = svg; safetext_find(p, &hit); p += hit.at + 1)
    if (hit.cp != '\n')
      fail_msg("U+%04X at byte %zu", (unsigned)hit.cp, (size_t)(p - svg) + hit.at);
  assert_non_null(strstr(svg, "a b c d e f"));
  assert_non_null(strstr(svg, " g h"));
  free(svg);
}

static void test_long_names_cut(void **state) {
  (void)state;
  char longname[2000];
  memset(longname, 'W', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  map_site_t s[] = {{.slug = "x", .name_en = longname, .lat = 30, .lon = 110, .link = "online"}};
  char *svg = map_render_svg(s, 1, NULL, 0, longname);
  check_document(svg);
  assert_null(
      strstr(svg, "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"));
  assert_non_null(strstr(svg, "W\xE2\x80\xA6")); /* cut with an ellipsis */
  free(svg);
}

/* No text smaller than 11px anywhere (font-size attributes, in px). */
static void test_min_font_size(void **state) {
  (void)state;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false}};
  char *svg = render(g_prov, N_PROV, mv, 1);
  size_t seen = 0;
  for (const char *p = svg; (p = strstr(p, "font-size=\"")) != NULL; p++) {
    double px = strtod(p + 11, NULL);
    if (px < 11) fail_msg("font-size %g at offset %td", px, p - svg);
    seen++;
  }
  assert_true(seen >= 3);
  free(svg);
}

/* ---- label overlap ------------------------------------------------------ */

typedef struct {
  double x0, y0, x1, y1;
} rect_t;

/* Rough box of a site's name line from the SVG: x, y, anchor and the text
 * (Latin letters ~7.5px, CJK ~12px at 12px bold/regular). Independent of the
 * module's own estimate on purpose. */
static size_t name_boxes(const char *svg, rect_t *out, size_t max) {
  size_t n = 0;
  for (const char *p = svg; (p = strstr(p, "<text class=\"site-label\"")) != NULL && n < max; p++) {
    double x = strtod(strstr(p, " x=\"") + 4, NULL), y = strtod(strstr(p, " y=\"") + 4, NULL);
    const char *anchor = strstr(p, "text-anchor=\"") + 13;
    const char *end = strstr(p, "</text>");
    double w = 0;
    bool in_tag = false;
    for (const char *q = strchr(p, '>') + 1; q < end; q++) {
      if (*q == '<')
        in_tag = true;
      else if (*q == '>')
        in_tag = false;
      else if (!in_tag && ((unsigned char)*q < 0x80))
        w += 7.0;
      else if (!in_tag && ((unsigned char)*q & 0xC0) == 0xC0)
        w += 12;
    }
    double x0 = strncmp(anchor, "start", 5) == 0 ? x
                : strncmp(anchor, "end", 3) == 0 ? x - w
                                                 : x - w / 2;
    out[n++] = (rect_t){x0, y - 11, x0 + w, y + 3};
  }
  return n;
}

static void test_labels_do_not_pile_up(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  for (size_t i = 0; i < N_PROV; i++)
    s[i].in_queue = 0;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false}, {"guizhou", "shaanxi", 300, false}};
  char *svg = render(s, N_PROV, mv, 2);
  rect_t r[N_PROV];
  assert_int_equal(name_boxes(svg, r, N_PROV), N_PROV);
  double worst = 0;
  for (size_t i = 0; i < N_PROV; i++)
    for (size_t j = i + 1; j < N_PROV; j++) {
      double w = fmin(r[i].x1, r[j].x1) - fmax(r[i].x0, r[j].x0);
      double h = fmin(r[i].y1, r[j].y1) - fmax(r[i].y0, r[j].y0);
      if (w > 0 && h > 0) worst = fmax(worst, w * h);
    }
  /* a sliver of overlap from the rough estimate is fine, a name on a name
   * is not */
  if (worst > 40) fail_msg("two names overlap by %.0f px^2", worst);
  for (size_t i = 0; i < N_PROV; i++)
    assert_true(r[i].x0 >= 0 && r[i].x1 <= 960 && r[i].y0 >= 60 && r[i].y1 <= 720);
  free(svg);
}

/* ---- determinism, edges, sample --------------------------------------- */

static void test_deterministic(void **state) {
  (void)state;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false}, {"fujian", "henan", 600, false}};
  char *a = render(g_prov, N_PROV, mv, 2);
  char *other = render(g_prov, 5, NULL, 0); /* no state carried between calls */
  char *b = render(g_prov, N_PROV, mv, 2);
  assert_string_equal(a, b);
  assert_string_not_equal(a, other);
  free(a);
  free(b);
  free(other);
}

static void test_zero_sites(void **state) {
  (void)state;
  char *svg = map_render_svg(NULL, 0, NULL, 0, NULL);
  check_document(svg);
  assert_int_equal(count(svg, "<circle class=\"site "), 0);
  assert_non_null(strstr(svg, "No sites to show"));
  assert_non_null(strstr(svg, "NIRC routing map")); /* the default title */
  free(svg);
  /* NULL sites with a count, and an empty title, are treated as none */
  svg = map_render_svg(NULL, 5, NULL, 3, "");
  check_document(svg);
  assert_int_equal(count(svg, "<circle class=\"site "), 0);
  free(svg);
}

static void test_one_site_and_bad_coordinates(void **state) {
  (void)state;
  char *svg = render(g_prov, 1, NULL, 0);
  assert_int_equal(count(svg, "<circle class=\"site "), 1);
  free(svg);
  map_site_t s[N_PROV];
  copy_prov(s);
  s[3].lat = NAN;
  s[4].lon = 500;
  map_move_t mv[] = {{s[3].slug, "shaanxi", 1000, false}};
  svg = render(s, N_PROV, mv, 1);
  assert_int_equal(count(svg, "<circle class=\"site "), N_PROV - 2);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 0);
  assert_non_null(strstr(svg, "2 without coordinates"));
  assert_null(strstr(svg, "=\"nan"));
  assert_null(strstr(svg, "=\"-nan"));
  assert_null(strstr(svg, "inf\""));
  free(svg);
}

static void test_too_many_sites_refused(void **state) {
  (void)state;
  size_t n = 100000;
  map_site_t *s = calloc(n, sizeof *s);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++)
    s[i] = g_prov[i % N_PROV];
  /* far beyond what fits the output cap: refused before any work */
  assert_null(map_render_svg(s, n, NULL, 0, "too big"));
  free(s);
}

/* The output has a hard cap (1 MiB): a thousand sites with the longest
 * names the map keeps (32 CJK characters each) do not fit, and the answer
 * is NULL rather than a truncated document. */
static void test_output_cap(void **state) {
  (void)state;
  size_t n = 1000;
  char name[32 * 3 + 1] = "";
  for (int k = 0; k < 32; k++)
    strcat(name, "\xE6\xB9\x96"); /* 湖 */
  map_site_t *s = calloc(n, sizeof *s);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++)
    s[i] = (map_site_t){.slug = name,
                        .name_en = name,
                        .name_zh = name,
                        .lat = 20 + (double)(i / 40),
                        .lon = 80 + (double)(i % 40) * 1.3,
                        .link = "online",
                        .occupancy = 0.5,
                        .in_queue = 7};
  assert_null(map_render_svg(s, n, NULL, 0, "cap"));
  free(s);
}

/* The map a person looks at: all 31 sites, three moves, every state. */
/* The box of the legend group at g (its first rect). */
static void legend_box(const char *g, double *x, double *y, double *w, double *h) {
  assert_int_equal(sscanf(strstr(g, "<rect "),
                          "<rect x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", x, y, w, h),
                   4);
}

/* No site's dot is under a box of the legend: a site nobody sees. */
static void no_dot_under_legend(const char *svg) {
  for (const char *g = strstr(svg, "<g class=\"legend"); g;
       g = strstr(g + 1, "<g class=\"legend")) {
    double x, y, w, h;
    legend_box(g, &x, &y, &w, &h);
    for (const char *p = strstr(svg, "<circle class=\"site"); p;
         p = strstr(p + 1, "<circle class=\"site")) {
      double cx, cy, r;
      const char *c = strstr(p, " cx=\"");
      assert_non_null(c);
      assert_int_equal(sscanf(c, " cx=\"%lf\" cy=\"%lf\" r=\"%lf\"", &cx, &cy, &r), 3);
      if (cx + r > x && cx - r < x + w && cy + r > y && cy - r < y + h)
        fail_msg("a dot under the legend (%g..%g, %g..%g): %.80s", x, x + w, y, y + h, p);
    }
  }
}

/* Every line of the legend ends inside its box, across (estimated as the
 * map estimates its labels, mapsvg_text_width at 11 px) and down. */
static void legend_text_fits(const char *svg) {
  for (const char *g = strstr(svg, "<g class=\"legend"); g;
       g = strstr(g + 1, "<g class=\"legend")) {
    const char *end = strstr(g, "</g>");
    double x, y, w, h;
    assert_non_null(end);
    legend_box(g, &x, &y, &w, &h);
    for (const char *p = strstr(g, "<text "); p && p < end; p = strstr(p + 1, "<text ")) {
      double tx, ty;
      assert_int_equal(sscanf(strstr(p, " x=\""), " x=\"%lf\" y=\"%lf\"", &tx, &ty), 2);
      char text[256];
      size_t n = 0;
      bool tag = false;
      for (const char *c = strchr(p, '>') + 1; strncmp(c, "</text>", 7) != 0 && n + 1 < sizeof text;
           c++) {
        if (*c == '<' || *c == '>')
          tag = *c == '<';
        else if (!tag)
          text[n++] = *c;
      }
      text[n] = '\0';
      double right = tx + mapsvg_text_width(text, 11, false);
      if (right > x + w - 4)
        fail_msg("legend line past its box (%g > %g): %s", right, x + w - 4, text);
      if (ty > y + h - 4 || ty - 11 < y)
        fail_msg("legend line out of its box (y %g): %s", ty, text);
    }
  }
}

/* Writes svg as NIRC_BUILD_DIR/name when NIRC_BUILD_DIR is set. */
static void write_sample(const char *svg, const char *name) {
  const char *dir = getenv("NIRC_BUILD_DIR");
  if (!dir || !*dir) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fwrite(svg, 1, strlen(svg), f), strlen(svg));
  assert_int_equal(fclose(f), 0);
}

static void test_write_sample(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  site_by_slug(s, N_PROV, "hubei")->link = "stale";
  site_by_slug(s, N_PROV, "xinjiang")->link = "offline";
  site_by_slug(s, N_PROV, "xinjiang")->occupancy = -1;
  site_by_slug(s, N_PROV, "hainan")->link = "never-seen";
  site_by_slug(s, N_PROV, "hainan")->occupancy = -1;
  site_by_slug(s, N_PROV, "shaanxi")->occupancy = 0.93;
  site_by_slug(s, N_PROV, "shaanxi")->in_queue = 14;
  site_by_slug(s, N_PROV, "hubei")->in_queue = 9;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false},
                     {"guizhou", "shaanxi", 300, false},
                     {"fujian", "henan", 1000, false}};
  char *svg = map_render_svg(s, N_PROV, mv, 3, "NIRC routing \xE2\x80\x94 sample (UTC+8)");
  check_document(svg);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 3);
  write_sample(svg, "map-sample.svg");
  free(svg);
}

/* A night's map with every route mark at once, written as map-marks.svg
 * for a person to look at (rendered to PNG: the marks must be seen, not
 * only found in the text): sites not heard from after a takeover, one
 * whose route nobody confirmed, an unverified move and an unverified
 * home (its dashed ring), a site held home, beside ordinary moves. */
static void test_write_marks_sample(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  site_by_slug(s, N_PROV, "hubei")->route_unknown = 1;
  site_by_slug(s, N_PROV, "hubei")->route_unheard = 1;
  site_by_slug(s, N_PROV, "gansu")->route_unknown = 1;
  site_by_slug(s, N_PROV, "gansu")->route_unheard = 1;
  site_by_slug(s, N_PROV, "hunan")->route_unknown = 1;
  site_by_slug(s, N_PROV, "guizhou")->route_unverified = 1;
  site_by_slug(s, N_PROV, "anhui")->route_unverified = 1; /* home: the dashed ring */
  site_by_slug(s, N_PROV, "hainan")->link = "offline";
  site_by_slug(s, N_PROV, "zhejiang")->held_home = 1;
  map_move_t mv[] = {{"guizhou", "shaanxi", 1000, true},
                     {"fujian", "henan", 1000, false},
                     {"jiangxi", "henan", 600, false},
                     {"hubei", "shaanxi", 1000, false}}; /* not heard: not drawn */
  char *svg = map_render_svg(s, N_PROV, mv, 4, "NIRC routing \xE2\x80\x94 marks (UTC+8)");
  check_document(svg);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 3);
  assert_int_equal(count(svg, "<circle class=\"route-unverified-home\""), 1);
  no_dot_under_legend(svg);
  legend_text_fits(svg);
  /* A corner is free for the marks' rows: the map keeps its scale, every
   * dot where the map without them puts it. */
  char *plain = render(g_prov, N_PROV, NULL, 0), a[512], b[512];
  for (size_t i = 0; i < N_PROV; i++) {
    double ax, ay, bx, by;
    site_tag(plain, g_prov[i].slug, a, sizeof a);
    site_tag(svg, g_prov[i].slug, b, sizeof b);
    assert_int_equal(sscanf(strstr(a, " cx="), " cx=\"%lf\" cy=\"%lf\"", &ax, &ay), 2);
    assert_int_equal(sscanf(strstr(b, " cx="), " cx=\"%lf\" cy=\"%lf\"", &bx, &by), 2);
    if (ax != bx || ay != by)
      fail_msg("%s drawn at %g,%g, not %g,%g", g_prov[i].slug, bx, by, ax, ay);
  }
  free(plain);
  write_sample(svg, "map-marks.svg");
  free(svg);
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* 20,031 sites (the provinces and 20,000 spread over China, as the scale
 * test generates them) cannot be drawn one by one: mapgroup draws one
 * marker per grid cell and says so under the title; a move between two
 * groups is an arrow, a move inside one is counted, not dropped. Up to
 * MAPGROUP_DETAIL_MAX sites nothing changes. */
static void test_aggregated_beyond_what_fits(void **state) {
  (void)state;
  size_t n = N_PROV + 20000;
  map_site_t *s = calloc(n, sizeof *s);
  char(*slug)[16] = calloc(n, sizeof *slug);
  assert_non_null(s);
  assert_non_null(slug);
  for (size_t i = 0; i < N_PROV; i++)
    s[i] = g_prov[i];
  for (size_t i = N_PROV; i < n; i++) {
    size_t k = i - N_PROV + 1;
    snprintf(slug[i], sizeof slug[i], "gen-%05zu", k);
    double u = fmod(k * 0.618034, 1.0), v = fmod(k * 0.414214, 1.0);
    s[i] = (map_site_t){.slug = slug[i],
                        .name_en = "Generated",
                        .name_zh = "生成",
                        .lat = 22 + 22 * u,
                        .lon = 90 + 34 * v,
                        .link = "never-seen",
                        .occupancy = -1,
                        .queue_unknown = true};
  }
  /* gen-00001 (around 35.6N 104.1E) to the first province, far away;
   * gen-00001 to itself-ish: a site in the same cell. */
  size_t same = SIZE_MAX;
  for (size_t i = N_PROV + 1; i < n && same == SIZE_MAX; i++)
    if (floor(s[i].lat / 2) == floor(s[N_PROV].lat / 2) &&
        floor(s[i].lon / 2) == floor(s[N_PROV].lon / 2))
      same = i;
  assert_true(same != SIZE_MAX);
  map_move_t mv[2] = {{"gen-00001", g_prov[0].slug, 1000, false},
                      {"gen-00001", s[same].slug, 0, false}};
  mv[1].permille = 500;
  mv[0].permille = 500;
  char *svg = mapgroup_render(s, n, mv, 2, "NIRC routing");
  assert_non_null(svg);
  assert_non_null(strstr(svg, "AGGREGATED: 20,0"));
  assert_non_null(strstr(svg, " sites in "));
  size_t markers = count_of(svg, "<circle class=\"site");
  assert_true(markers > 10 && markers <= MAPGROUP_GROUPS_MAX);
  assert_int_equal(count_of(svg, "<g class=\"move\""), 1);
  assert_non_null(strstr(svg, "1 move between groups drawn, 1 within a group not drawn"));
  free(svg);
  /* gen-00001 measures 7 calls waiting, the others of its cell nothing:
   * the group's queue is a lower bound, said so, not "7 in queue" (as a
   * province's cell with generated sites that measure nothing). */
  s[N_PROV].queue_unknown = false;
  s[N_PROV].in_queue = 7;
  svg = mapgroup_render(s, n, mv, 2, "NIRC routing");
  assert_non_null(svg);
  assert_non_null(strstr(svg, " in queue (not all measured)"));
  assert_non_null(strstr(svg, "+ in queue</tspan>"));
  free(svg);
  /* The provinces alone: one marker each, no aggregation. */
  svg = mapgroup_render(s, N_PROV, NULL, 0, "NIRC routing");
  assert_non_null(svg);
  assert_null(strstr(svg, "AGGREGATED"));
  assert_int_equal(count_of(svg, "<circle class=\"site"), N_PROV);
  free(svg);
  free(s);
  free(slug);
}

/* Unknown is not zero: a site without a report, whose PBX could not be
 * read, or whose report leaves the queue or the agents out, has no queue
 * figure (no "0 in queue" in its tooltip, no queue label) and its tooltip
 * says why its load is unknown. map_site_load is what the status page and
 * `nircctl map` fill the sites with. */
static void test_unmeasured_load_is_unknown(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  static const struct {
    const char *slug;
    bool report, unreadable;
    unsigned nm, logged_in, talking, queue;
    const char *tip;
  } cases[] = {
      {"anhui", false, false, 0, 0, 0, 0, "no load report, queue not measured</title>"},
      /* An unreadable PBX's report carries zeros (and here a queue). */
      {"hubei", true, true, 0, 0, 0, 7, "PBX unreadable, queue not measured</title>"},
      {"henan", true, false, REPORT_NM_PROXY, 0, 0, 0,
       "agents not measured, queue not measured</title>"},
      {"hunan", true, false, REPORT_NM_TALKING, 40, 0, 3,
       "agents not measured, 3 in queue</title>"},
      {"jiangxi", true, false, 0, 0, 0, 0, "no agents logged in, 0 in queue</title>"},
      {"shaanxi", true, false, 0, 40, 10, 2, "25% of agents busy, 2 in queue</title>"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    map_site_load(site_by_slug(s, N_PROV, cases[k].slug), cases[k].report, cases[k].unreadable,
                  cases[k].nm, cases[k].logged_in, cases[k].talking, cases[k].queue);
  char *svg = render(s, N_PROV, NULL, 0);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char key[64];
    snprintf(key, sizeof key, "(%s)", cases[k].slug);
    const char *tip = strstr(svg, key);
    assert_non_null(tip);
    const char *end = strstr(tip, "</title>");
    assert_non_null(end);
    char got[256];
    snprintf(got, sizeof got, "%.*s", (int)(end - tip + 8), tip);
    if (!strstr(got, cases[k].tip))
      fail_msg("%s: '%s', expected '%s'", cases[k].slug, got, cases[k].tip);
  }
  /* The unreadable PBX's 7 is not a figure: no label says it. */
  assert_null(strstr(svg, ">7 in queue</tspan>"));
  assert_non_null(strstr(svg, ">3 in queue</tspan>"));
  free(svg);
}

/* The tooltip (<title>…</title>) of the site `slug` into buf. */
static void site_tip(const char *svg, const char *slug, char *buf, size_t len) {
  char key[64];
  snprintf(key, sizeof key, "(%s)", slug);
  const char *tip = strstr(svg, key), *end = tip ? strstr(tip, "</title>") : NULL;
  if (!end) fail_msg("no tooltip for %s", slug);
  snprintf(buf, len, "%.*s", (int)(end - tip), tip);
}

/* A route applied by an adapter that cannot read the PBX back is not drawn
 * as a fact: its arrow is dashed, says so on hover, the legend explains it
 * and the summary counts it. A map without one has none of it. */
static void test_unverified_route_dashed(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  map_move_t mv[] = {{"guizhou", "shaanxi", 300, false}, {"fujian", "henan", 1000, false}};
  char *svg = render(s, N_PROV, mv, 2);
  assert_null(strstr(svg, "unverified"));
  assert_null(strstr(svg, "not read back"));
  free(svg);
  site_by_slug(s, N_PROV, "guizhou")->route_unverified = 1;
  site_by_slug(s, N_PROV, "anhui")->route_unverified = 1; /* home, unverified: no arrow */
  mv[0].unverified = true;
  svg = render(s, N_PROV, mv, 2);
  assert_int_equal(count(svg, "<g class=\"move move-unverified\" data-from=\"guizhou\""), 1);
  assert_int_equal(count(svg, "<g class=\"move\" data-from=\"fujian\""), 1);
  assert_int_equal(count(svg, "<title>applied, not read back from the PBX</title>"), 1);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 2);
  assert_int_equal(count(svg, "stroke-dasharray=\"6 4\" marker-end"), 1);
  assert_int_equal(count(svg, "class=\"legend-unverified\""), 1);
  assert_non_null(strstr(svg, "unverified: not read back from the PBX</text>"));
  assert_non_null(strstr(svg, "; 2 routes unverified; 2 moves shown"));
  char tip[512];
  site_tip(svg, "anhui", tip, sizeof tip);
  assert_non_null(strstr(tip, "; route applied, not read back from the PBX"));
  /* Anhui draws no arrow (all its calls home): a dashed ring marks it on
   * the map, with its legend row; guizhou's dashed arrow says it already. */
  assert_int_equal(count(svg, "<circle class=\"route-unverified-home\""), 1);
  assert_int_equal(count(svg, "class=\"legend-unverified-home\""), 1);
  assert_non_null(strstr(svg, "routed home, not read back from the PBX</text>"));
  site_tip(svg, "fujian", tip, sizeof tip);
  assert_null(strstr(tip, "route"));
  assert_null(strstr(svg, "route unknown"));
  free(svg);
}

/* A route nobody confirmed at the PBX is not drawn at all, not as the last
 * route nor as home: the site says "route unknown" on the map and on
 * hover, the legend explains it and the summary counts it. Its name stays
 * escaped. */
static void test_unknown_route_not_drawn(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  map_site_t *h = site_by_slug(s, N_PROV, "hubei");
  h->route_unknown = 1;
  h->route_unverified = 1; /* the last known one was; unknown wins */
  h->name_en = "Hu<b>ei & Co";
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, true}}; /* the route it held: not in force */
  char *svg = render(s, N_PROV, mv, 1);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 0);
  assert_non_null(strstr(svg, ">route unknown</tspan>"));
  char tip[512];
  site_tip(svg, "hubei", tip, sizeof tip);
  assert_non_null(strstr(tip, "; route unknown: its agent has not confirmed a route at the PBX"));
  assert_null(strstr(tip, "not read back"));
  assert_non_null(strstr(svg, "Hu&lt;b&gt;ei &amp; Co"));
  assert_int_equal(count(svg, "class=\"legend-route-unknown\""), 1);
  assert_null(strstr(svg, "legend-unverified"));
  assert_non_null(strstr(svg, ">1 route unknown</tspan>; 0 moves shown"));
  free(svg);
}

/* Aggregated, a group says how many of its sites' routes are unknown or
 * unverified; an arrow that sums an unverified move is dashed, one from a
 * site whose route is unknown is not drawn, and the summary counts both. */
static void test_aggregated_route_marks(void **state) {
  (void)state;
  enum { NA = 300, NB = 10, NC = 10, N = NA + NB + NC };
  map_site_t *s = calloc(N, sizeof *s);
  char(*slug)[16] = calloc(N, sizeof *slug);
  assert_non_null(s);
  assert_non_null(slug);
  for (size_t i = 0; i < N; i++) {
    snprintf(slug[i], sizeof slug[i], "s-%03zu", i);
    double lat = i < NA ? 30.1 : i < NA + NB ? 40.1 : 25.1, lon = i < NA ? 110.1 : 100.1;
    s[i] = (map_site_t){.slug = slug[i],
                        .name_en = "Site",
                        .lat = lat,
                        .lon = lon,
                        .link = "online",
                        .occupancy = 0.5};
  }
  for (size_t i = 0; i < 3; i++)
    s[i].route_unverified = 1;
  s[10].route_unknown = s[11].route_unknown = 1;
  map_move_t mv[] = {{"s-000", "s-300", 500, true},
                     {"s-301", "s-001", 400, false},
                     {"s-010", "s-310", 1000, false}}; /* unknown route: not drawn */
  char *svg = mapgroup_render(s, N, mv, 3, "NIRC routing");
  check_document(svg);
  assert_non_null(strstr(svg, "AGGREGATED: 320 sites in 3 groups"));
  assert_non_null(
      strstr(svg, "2 moves between groups drawn; 2 routes unknown, 3 routes unverified"));
  assert_non_null(strstr(svg, ">2 routes unknown, 3 unverified</tspan>"));
  assert_int_equal(count(svg, "<g class=\"move move-unverified\""), 1);
  assert_int_equal(count(svg, "<g class=\"move\""), 1);
  assert_non_null(strstr(svg, "<title>at least part applied, not read back from the PBX</title>"));
  assert_non_null(strstr(svg, "; 2 routes unknown (not confirmed at the PBX); 3 routes applied, "
                              "not read back from the PBX</title>"));
  assert_int_equal(count(svg, "class=\"legend-route-unknown\""), 1);
  assert_int_equal(count(svg, "class=\"legend-unverified\""), 1);
  free(svg);
  free(s);
  free(slug);
}

/* TWO_GROUPS sites, online and half busy, in two grid cells (300 and 20):
 * aggregated (mapgroup.c). Names go into slug; the caller frees the array. */
#define TWO_GROUPS 320
static map_site_t *two_groups(char (*slug)[16]) {
  map_site_t *g = calloc(TWO_GROUPS, sizeof *g);
  assert_non_null(g);
  for (size_t i = 0; i < TWO_GROUPS; i++) {
    snprintf(slug[i], sizeof slug[i], "s-%03zu", i);
    g[i] = (map_site_t){.slug = slug[i],
                        .name_en = "Site",
                        .lat = i < 300 ? 30.1 : 40.1,
                        .lon = 110.1,
                        .link = "online",
                        .occupancy = 0.5};
  }
  return g;
}

/* A site whose agent has not said Hello to this controller since it took
 * over: its route is not known here (not the last one, not home). No
 * arrow leaves it, its label says "not heard", its tooltip what to check,
 * the legend has its own row (not "not confirmed at the PBX", which is
 * another site's case) and the summary counts it. Aggregated, its group
 * counts it too. Before, it showed as "route unknown ... not confirmed
 * at the PBX", or as home. */
static void test_unheard_route_not_drawn(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  map_site_t *h = site_by_slug(s, N_PROV, "hubei");
  h->route_unknown = 1;
  h->route_unheard = 1;
  map_move_t mv[] = {{"hubei", "shaanxi", 1000, false}}; /* what it held before: not in force */
  char *svg = render(s, N_PROV, mv, 1);
  assert_int_equal(count(svg, "class=\"move-arrow\""), 0);
  assert_non_null(strstr(svg, ">not heard</tspan>"));
  assert_null(strstr(svg, ">route unknown</tspan>"));
  char tip[512];
  site_tip(svg, "hubei", tip, sizeof tip);
  assert_non_null(strstr(tip, "; route unknown: its agent has not said Hello to this controller "
                              "since it took over (check the agent)"));
  assert_int_equal(count(svg, "class=\"legend-unheard\""), 1);
  assert_int_equal(count(svg, "class=\"legend-route-unknown\""), 0);
  assert_non_null(strstr(svg, ">1 route unknown</tspan> (1 not heard from); 0 moves shown"));
  free(svg);
  /* With another site unknown for its agent's reason: both legend rows. */
  site_by_slug(s, N_PROV, "hunan")->route_unknown = 1;
  svg = render(s, N_PROV, mv, 1);
  assert_int_equal(count(svg, "class=\"legend-unheard\""), 1);
  assert_int_equal(count(svg, "class=\"legend-route-unknown\""), 1);
  assert_non_null(strstr(svg, ">2 routes unknown</tspan> (1 not heard from)"));
  free(svg);
  /* Aggregated: the group and the summary count the sites not heard from. */
  char slug[TWO_GROUPS][16];
  map_site_t *g = two_groups(slug);
  g[10].route_unknown = g[11].route_unknown = g[12].route_unknown = 1;
  g[10].route_unheard = g[11].route_unheard = 1;
  svg = mapgroup_render(g, TWO_GROUPS, NULL, 0, "NIRC routing");
  check_document(svg);
  assert_non_null(strstr(svg, "; 3 routes unknown (2 not heard from)"));
  assert_non_null(strstr(svg, ">3 routes unknown (2 not heard)</tspan>"));
  assert_non_null(strstr(svg, "; 3 routes unknown (2 not heard from since this controller took "
                              "over)</title>"));
  assert_int_equal(count(svg, "class=\"legend-unheard\""), 1);
  free(svg);
  free(g);
}

/* Sites in every corner of the map and the route marks' rows: no corner
 * is free for the legend nor for the marks' box, so the map is drawn
 * smaller until no dot is under the legend (legend_clear). */
static void test_legend_never_covers_a_dot(void **state) {
  (void)state;
  map_site_t s[N_PROV + 4];
  copy_prov(s);
  static const char *const slug[4] = {"nw", "ne", "sw", "se"};
  for (size_t k = 0; k < 4; k++)
    s[N_PROV + k] = (map_site_t){.slug = slug[k],
                                 .name_en = slug[k],
                                 .lat = k < 2 ? 54 : 18,
                                 .lon = k % 2 ? 135 : 73,
                                 .link = "online",
                                 .occupancy = 0.5};
  s[0].route_unknown = s[0].route_unheard = s[1].route_unknown = 1;
  s[2].held_home = s[3].route_unverified = 1;
  char *svg = render(s, N_PROV + 4, NULL, 0);
  assert_int_equal(count(svg, "<g class=\"legend"), 1); /* no corner for the marks alone */
  no_dot_under_legend(svg);
  legend_text_fits(svg);
  write_sample(svg, "map-corners.svg");
  free(svg);
}

/* A site held home after its agent's early returns draws no arrow while
 * its rule would move it: its label says "held home" (why it is home),
 * its tooltip the cause and the fix, the legend has a row and the summary
 * counts it; aggregated, its group and the summary count it. A map
 * without one says nothing of it. Before, the site looked like any site at
 * home. */
static void test_held_home_marked(void **state) {
  (void)state;
  map_site_t s[N_PROV];
  copy_prov(s);
  char *svg = render(s, N_PROV, NULL, 0);
  assert_null(strstr(svg, "held"));
  free(svg);
  site_by_slug(s, N_PROV, "zhejiang")->held_home = 1;
  svg = render(s, N_PROV, NULL, 0);
  assert_non_null(strstr(svg, "<tspan class=\"route-mark\" fill=\"#9a5200\" "
                              "font-weight=\"bold\">held home</tspan>"));
  char tip[512];
  site_tip(svg, "zhejiang", tip, sizeof tip);
  assert_non_null(strstr(tip, "; held home: its agent keeps going home early (its clock runs "
                              "ahead); fix its clock (NTP), then nircctl readmit"));
  assert_int_equal(count(svg, "class=\"legend-held\""), 1);
  assert_non_null(strstr(svg, ">1 held home</tspan>; 0 moves shown"));
  legend_text_fits(svg);
  free(svg);
  /* Not heard and held (a new leader loads the hold before the Hello). */
  site_by_slug(s, N_PROV, "zhejiang")->route_unknown = 1;
  site_by_slug(s, N_PROV, "zhejiang")->route_unheard = 1;
  svg = render(s, N_PROV, NULL, 0);
  assert_non_null(strstr(svg, ">not heard, held home</tspan>"));
  free(svg);
  char slug[TWO_GROUPS][16];
  map_site_t *g = two_groups(slug);
  g[7].held_home = g[8].held_home = 1;
  svg = mapgroup_render(g, TWO_GROUPS, NULL, 0, "NIRC routing");
  check_document(svg);
  assert_non_null(strstr(svg, ">2 held home</tspan>"));
  assert_non_null(strstr(svg, "; 2 held home</text>"));
  assert_non_null(strstr(svg, "; 2 held home after their agents&apos; early returns"));
  assert_int_equal(count(svg, "class=\"legend-held\""), 1);
  free(svg);
  free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_document_shape),
      cmocka_unit_test(test_every_site_once_hubs_marked),
      cmocka_unit_test(test_link_and_load_classes),
      cmocka_unit_test(test_queue_counts),
      cmocka_unit_test(test_unmeasured_load_is_unknown),
      cmocka_unit_test(test_full_move),
      cmocka_unit_test(test_partial_move),
      cmocka_unit_test(test_arrow_width_follows_share),
      cmocka_unit_test(test_unknown_slugs_skipped),
      cmocka_unit_test(test_names_escaped),
      cmocka_unit_test(test_names_lose_controls_and_bidi),
      cmocka_unit_test(test_long_names_cut),
      cmocka_unit_test(test_min_font_size),
      cmocka_unit_test(test_labels_do_not_pile_up),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_zero_sites),
      cmocka_unit_test(test_one_site_and_bad_coordinates),
      cmocka_unit_test(test_too_many_sites_refused),
      cmocka_unit_test(test_output_cap),
      cmocka_unit_test(test_write_sample),
      cmocka_unit_test(test_write_marks_sample),
      cmocka_unit_test(test_aggregated_beyond_what_fits),
      cmocka_unit_test(test_unverified_route_dashed),
      cmocka_unit_test(test_unknown_route_not_drawn),
      cmocka_unit_test(test_aggregated_route_marks),
      cmocka_unit_test(test_unheard_route_not_drawn),
      cmocka_unit_test(test_held_home_marked),
      cmocka_unit_test(test_legend_never_covers_a_dot),
  };
  return cmocka_run_group_tests(tests, load_provinces, free_provinces);
}
