/* Unit tests of a site's row on the status page and its object in
 * /status.json (controller/web/webrow.c), built from an engine's world
 * (tests/unit/support/world.c) as web.c builds them from nircd's: a site
 * whose agent has not said Hello here (route unknown, not heard), one
 * whose route nobody confirmed (unknown), one whose route the PBX took
 * unread (unverified, away and home), and one held home after its
 * agent's early returns (the engine's words and the fix on the page,
 * held_home in the JSON). An operator reads these at 3 a.m.: none may
 * read as "home" when nobody knows, and a held site must say why it is
 * home while its rule would move it. */
#include "engine.h"
#include "route.h"
#include "support/world.h"
#include "webrow.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

static void row_has(const char *row, const char *want) {
  if (!strstr(row, want)) fail_msg("no '%s' in the row: %s", want, row);
}

static void row_lacks(const char *row, const char *unwanted) {
  if (strstr(row, unwanted)) fail_msg("'%s' in the row: %s", unwanted, row);
}

/* The route cell: the sixth <td> of the row. */
static void route_cell(const char *row, char *out, size_t len) {
  const char *p = row;
  for (int k = 0; k < 6 && p; k++)
    p = strstr(p + 1, "<td");
  const char *start = p ? strchr(p, '>') : NULL, *end = start ? strstr(start, "</td>") : NULL;
  if (!end) fail_msg("no route cell in the row: %s", row);
  snprintf(out, len, "%.*s", (int)(end - start - 1), start + 1);
}

static bool key_true(json_t *x, const char *key) {
  json_t *v = json_object_get(x, key);
  if (!json_is_boolean(v)) fail_msg("%s is not a boolean", key);
  return json_is_true(v);
}

/* Site slug's row and object as the page and /status.json give them. */
static void render(world_t *w, engine_t *e, const char *slug, const char *rule, webrow_site_t *f,
                   char *row, json_t **x) {
  size_t i = world_index(w, slug);
  webrow_facts(e, &w->sites->v[i], i, f);
  f->rule_text = rule;
  webrow_html(f, row, WEBROW_HTML_MAX);
  if (!row[0]) fail_msg("%s: no row", slug);
  *x = webrow_json(f, 0);
  assert_non_null(*x);
}

/* A leader that has not heard from a site's agent knows nothing of its
 * route (an older leader's move, or home by its revert_at): the page says
 * "unknown (not heard ...)" and what to check, never "home"; the JSON has
 * route_unknown and route_unheard. Once its Hello says home: home. */
static void test_a_site_not_heard_is_unknown_not_home(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 6, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  webrow_site_t f;
  char row[WEBROW_HTML_MAX], cell[600];
  json_t *x;
  render(w, e, "guangdong", "default", &f, row, &x);
  route_cell(row, cell, sizeof cell);
  row_has(cell, "unknown (not heard: no Hello from its agent since this controller took over; "
                "check the agent)");
  row_lacks(cell, "home");
  assert_true(key_true(x, "route_unknown"));
  assert_true(key_true(x, "route_unheard"));
  assert_false(key_true(x, "route_unverified"));
  assert_false(key_true(x, "held_home"));
  assert_int_equal(json_array_size(json_object_get(x, "route")), 0);
  json_decref(x);

  world_connect_all(w, e, NULL);
  render(w, e, "guangdong", "default", &f, row, &x);
  route_cell(row, cell, sizeof cell);
  assert_string_equal(cell, "home");
  assert_false(key_true(x, "route_unknown"));
  assert_false(key_true(x, "route_unheard"));
  json_decref(x);
  engine_free(e);
  world_free(w);
}

/* A route the agent has not confirmed at the PBX (heard, not known):
 * "unknown" without the not-heard words; and a route the PBX took but
 * nobody read back: the route with "(unverified: ...)", away or home. */
static void test_unknown_and_unverified_routes(void **state) {
  (void)state;
  world_t *w = world_new();
  site_t *s = &w->sites->v[world_index(w, "hubei")];
  route_t to;
  route_home(&to, "hubei");
  snprintf(to.share[0].site, sizeof to.share[0].site, "shaanxi");
  webrow_site_t f = {.site = s, .rule_text = "cutover 4 until 08:00: storm"};
  char row[WEBROW_HTML_MAX], cell[600];

  webrow_html(&f, row, sizeof row); /* unknown, heard */
  route_cell(row, cell, sizeof cell);
  assert_string_equal(cell, "unknown");
  json_t *x = webrow_json(&f, 0);
  assert_true(key_true(x, "route_unknown"));
  assert_false(key_true(x, "route_unheard"));
  json_decref(x);

  f.route = &to;
  f.unverified = true;
  webrow_html(&f, row, sizeof row);
  route_cell(row, cell, sizeof cell);
  assert_string_equal(cell, "shaanxi (unverified: not read back from the PBX)");
  x = webrow_json(&f, 0);
  assert_false(key_true(x, "route_unknown"));
  assert_true(key_true(x, "route_unverified"));
  json_t *sh = json_array_get(json_object_get(x, "route"), 0);
  assert_string_equal(json_string_value(json_object_get(sh, "site")), "shaanxi");
  json_decref(x);

  route_t home;
  route_home(&home, "hubei");
  f.route = &home;
  webrow_html(&f, row, sizeof row);
  route_cell(row, cell, sizeof cell);
  assert_string_equal(cell, "home (unverified: not read back from the PBX)");
  world_free(w);
}

/* A site held home after its agent's early returns (here as a new leader
 * loads the hold) while a schedule would move it: its row says "held
 * home" with the engine's words (how many returns, the rule, the fix:
 * NTP, then nircctl readmit) before the rule it is kept from, and
 * /status.json has held_home true. Another site has neither. Before, the
 * page showed the site "home" with the schedule as its rule and no
 * reason, and /status.json had no held_home. */
static void test_a_held_site_says_why_it_is_home(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_engine(w);
  assert_int_equal(engine_load_rules(e, 6, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_return_hold_t held = {.site = "hubei",
                               .returns = 3,
                               .span_ms = 20 * 60000,
                               .rule_kind = RULE_SCHEDULE,
                               .rule_id = 2,
                               .early_ms = 42000};
  engine_load_return_holds(e, &held, 1);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  world_schedule_all_day(w, e, 2, "hubei", "shaanxi");
  for (unsigned k = 0; k < 20; k++) {
    world_tick(w, e, 200);
    world_ack(w, e, 0, NULL);
    world_flush(w);
  }
  webrow_site_t f;
  char row[WEBROW_HTML_MAX], cell[600];
  json_t *x;
  render(w, e, "hubei", "schedule night until 08:00", &f, row, &x);
  route_cell(row, cell, sizeof cell);
  assert_string_equal(cell, "home");
  row_has(row, "<tr class=\"site held\" data-slug=\"hubei\">");
  row_has(row, "<span class=\"held\">held home: its agent went home early 3 times in 20 min "
               "(last: schedule 2, 42 s before revert_at");
  row_has(row,
          "fix the host's clock (NTP), then nircctl readmit hubei</span>; its rule: schedule night "
          "until 08:00");
  assert_true(key_true(x, "held_home"));
  assert_false(key_true(x, "route_unknown"));
  json_decref(x);

  render(w, e, "guangdong", "default", &f, row, &x);
  row_has(row, "<tr class=\"site\" data-slug=\"guangdong\">");
  row_lacks(row, "held");
  assert_false(key_true(x, "held_home"));
  json_decref(x);
  engine_free(e);
  world_free(w);
}

/* The rule column is an operator's or an agent's text: escaped. */
static void test_the_rule_text_is_escaped(void **state) {
  (void)state;
  world_t *w = world_new();
  webrow_site_t f = {.site = &w->sites->v[0], .rule_text = "cutover 4: <b>\"storm\" & rain"};
  char row[WEBROW_HTML_MAX];
  webrow_html(&f, row, sizeof row);
  row_has(row, "cutover 4: &lt;b&gt;&quot;storm&quot; &amp; rain");
  world_free(w);
}

/* A site's slug and names come from the database, which does not check
 * them (a row written with psql): escaped for HTML and for the terminal
 * whoever saves the page may cat it on, as the rule is. */
static void test_the_names_are_escaped(void **state) {
  (void)state;
  world_t *w = world_new();
  site_t *s = &w->sites->v[0];
  snprintf(s->name_en, sizeof s->name_en, "<script>x</script>\x1b[31m\x7f");
  snprintf(s->name_zh, sizeof s->name_zh, "\xC2\x9B\xE2\x80\xAE\"&");
  webrow_site_t f = {.site = s, .rule_text = ""};
  char row[WEBROW_HTML_MAX];
  webrow_html(&f, row, sizeof row);
  row_has(row, "<td>&lt;script&gt;x&lt;/script&gt;\\x1b[31m\\x7f \\u{9b}\\u{202e}&quot;&amp;</td>");
  row_lacks(row, "<script>");
  world_free(w);
}

/* The rule cell of a site under no rule counts the senders status counts
 * (known routes), not the hub's planned inbound list, and the page says
 * under the table how many routes that count could not see. */
static void test_hub_for_counts_known_senders(void **state) {
  (void)state;
  char buf[300];
  webrow_idle_text("default", 0, buf, sizeof buf);
  assert_string_equal(buf, "default");
  webrow_idle_text("default", 1, buf, sizeof buf);
  assert_string_equal(buf, "hub for 1 site");
  webrow_idle_text(NULL, 3, buf, sizeof buf);
  assert_string_equal(buf, "hub for 3 sites");
  webrow_not_known_text(2, true, buf, sizeof buf);
  assert_string_equal(buf, "\"hub for N sites\" counts the routes known here: 2 sites' routes are "
                           "not known (not heard since this controller took over, or unknown at "
                           "the PBX), and may send calls to a hub too (nircctl status --problems)");
  webrow_not_known_text(2, false, buf, sizeof buf);
  assert_string_equal(buf, "");
  webrow_not_known_text(0, true, buf, sizeof buf);
  assert_string_equal(buf, "");
}

/* A report with the figures the sim gives, for site `slug`. */
static void full_report(Nirc__LoadReport *r, const char *slug) {
  nirc__load_report__init(r);
  r->site = (char *)slug;
  r->timestamp_ms = WORLD_T0_MS;
  r->interval_ms = 1000;
  r->calls_offered = 10;
  r->calls_answered = 8;
  r->calls_in_queue = 4;
  r->longest_wait_ms = 30000;
  r->agents_logged_in = 12;
  r->agents_ready = 2;
  r->agents_talking = 8;
  r->agents_not_ready = 2;
  r->aht_ms = 180000;
  r->answered_within_threshold = 6;
  r->sl_threshold_s = 20;
  r->pbx_error = "";
}

/* How many of the site's per-site gauges have a sample, and the value of
 * gauge g (-1 when absent). */
static double gauge(const site_t *s, webrow_gauge_t g, int64_t now) {
  double v;
  return webrow_gauge(s, g, now, &v) ? v : -1;
}

/* /metrics: a figure nobody measured has no sample (absent), never 0. A
 * site that has not reported since this controller took over has no
 * per-site gauge at all: before, nirc_site_pbx_unreadable said 0 (its PBX
 * readable) for it. A report whose service-level threshold is 0 s
 * measures no service level: before, nirc_site_service_level said 0
 * (answered-within 0 of 10), /status.json's load service_level 0.0 and
 * nircctl status SL 0%. A demand on a few seconds of reports is no rate
 * yet: before, the first second's calls spread over a minute (prior 0)
 * read as a sixtieth of the demand. */
static void test_metrics_leave_out_what_nobody_measured(void **state) {
  (void)state;
  world_t *w = world_new();
  site_t *s = &w->sites->v[world_index(w, "hubei")];
  int64_t now = WORLD_WALL0_MS;
  for (int g = 0; g < WEBROW_GAUGES; g++)
    assert_true(gauge(s, (webrow_gauge_t)g, now) == -1);

  sites_on_hello(s, now);
  Nirc__LoadReport r;
  site_minute_t flushed;
  full_report(&r, "hubei");
  sites_on_report(s, &r, now, WORLD_T0_MS, &flushed);
  assert_true(gauge(s, WEBROW_G_PBX_UNREADABLE, now) == 0);
  assert_true(gauge(s, WEBROW_G_QUEUE, now) == 4);
  assert_true(gauge(s, WEBROW_G_LOGGED_IN, now) == 12);
  assert_true(gauge(s, WEBROW_G_SL, now) == 0.6);
  /* One second of reports: no demand figure yet (a minute of them,
   * decayed, takes a little more than 60 reports). */
  assert_true(gauge(s, WEBROW_G_DEMAND, now) == -1);
  for (int k = 1; k <= 70; k++) {
    r.timestamp_ms = WORLD_T0_MS + k * 1000;
    sites_on_report(s, &r, now + k * 1000, WORLD_T0_MS + k * 1000, &flushed);
  }
  now += 70000;
  double erl = gauge(s, WEBROW_G_DEMAND, now);
  /* 10 calls a second at 180 s: about 1,800 Erlangs, not a sixtieth. */
  assert_true(erl > 1700 && erl < 1900);

  /* A proxy that does not flag its service level: threshold 0 s. */
  r.sl_threshold_s = 0;
  r.answered_within_threshold = 0;
  sites_on_report(s, &r, now, WORLD_T0_MS + 71000, &flushed);
  assert_true(gauge(s, WEBROW_G_SL, now) == -1);
  webrow_site_t f = {.site = s};
  json_t *x = webrow_json(&f, now);
  json_t *load = json_object_get(x, "load");
  assert_true(json_is_null(json_object_get(load, "service_level")));
  assert_true(json_is_null(json_object_get(load, "answered_within_threshold")));
  json_decref(x);

  /* Stale: only the age is current; whether the PBX could be read stays
   * its last report's. */
  sites_check_stale(w->sites, now + 60000, NULL, NULL);
  assert_int_equal(s->state, SITE_STALE);
  assert_true(gauge(s, WEBROW_G_QUEUE, now + 60000) == -1);
  assert_true(gauge(s, WEBROW_G_AGE, now + 60000) == 60);
  assert_true(gauge(s, WEBROW_G_PBX_UNREADABLE, now + 60000) == 0);
  world_free(w);
}

/* The page: the queue and agents of a site that is not online are its
 * last report's, said with their age. Before, an offline hub showed the
 * queue and agents it had hours ago as if it had them now. */
static void test_the_page_marks_old_figures(void **state) {
  (void)state;
  world_t *w = world_new();
  site_t *s = &w->sites->v[world_index(w, "shaanxi")];
  int64_t now = WORLD_WALL0_MS;
  sites_on_hello(s, now);
  Nirc__LoadReport r;
  site_minute_t flushed;
  full_report(&r, "shaanxi");
  sites_on_report(s, &r, now, WORLD_T0_MS, &flushed);
  webrow_site_t f = {.site = s, .now_real = now + 5000};
  char row[WEBROW_HTML_MAX];
  webrow_html(&f, row, sizeof row);
  row_has(row, "<td>4</td><td>12/2</td>");
  row_lacks(row, "last report");
  sites_on_link_down(s, now + 5000);
  f.now_real = now + 3 * 3600000;
  webrow_html(&f, row, sizeof row);
  row_has(row, "<td>4 (last report, 3 h ago)</td><td>12/2 (last report, 3 h ago)</td>");
  f.now_real = now + 30000;
  webrow_html(&f, row, sizeof row);
  row_has(row, "<td>4 (last report, 30 s ago)</td>");
  f.now_real = 0;
  webrow_html(&f, row, sizeof row);
  row_has(row, "<td>4 (last report)</td>");
  world_free(w);
}

/* The page's "Next 24 h" predictions say a hub's agents are not known
 * when nobody measured or configured them, as nircctl next does. Before:
 * "shaanxi: SL 0% (unstable), needs 9 agents, has 0 (unknown)". */
static void test_next_prediction_agents_not_known(void **state) {
  (void)state;
  engine_next_hub_t hp[2] = {{.hub = "shaanxi", .agents_needed = 9, .cap_source = CAPACITY_UNKNOWN},
                             {.hub = "henan",
                              .sl_after = 0.85,
                              .stable = true,
                              .agents = 28,
                              .agents_needed = 20,
                              .cap_source = CAPACITY_CONFIGURED}};
  char buf[600];
  webrow_next_text(hp, 2, buf, sizeof buf);
  assert_string_equal(buf, "shaanxi: SL not predicted, needs 9 agents, agents not known (neither "
                           "measured nor configured); henan: SL 85%, needs 20 agents, has 28 "
                           "(configured)");
  webrow_next_text(hp, 0, buf, sizeof buf);
  assert_string_equal(buf, "unknown: no hub can be predicted now");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hub_for_counts_known_senders),
      cmocka_unit_test(test_a_site_not_heard_is_unknown_not_home),
      cmocka_unit_test(test_unknown_and_unverified_routes),
      cmocka_unit_test(test_a_held_site_says_why_it_is_home),
      cmocka_unit_test(test_the_rule_text_is_escaped),
      cmocka_unit_test(test_the_names_are_escaped),
      cmocka_unit_test(test_metrics_leave_out_what_nobody_measured),
      cmocka_unit_test(test_the_page_marks_old_figures),
      cmocka_unit_test(test_next_prediction_agents_not_known),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
