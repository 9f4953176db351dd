/* nircctl's status view (controller/ctl_status.c): display width of
 * Chinese names, the --moved and --problems filters, and the RULE column
 * with its end in the operations room's zone, on a hand-made reply. */
#include "ctl_status.h"
#include "report.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2020-01-23 03:00 +08:00 (business clock) */
#define NOW_MS 1579719600000LL

typedef struct {
  Nirc__StatusReply st;
  Nirc__SiteStatus s[4], *sp[4];
  Nirc__RouteShare r[4], *rp[4];
  Nirc__Alarm a, *ap[1];
} fixture_t;

static void site(fixture_t *f, int i, const char *slug, const char *en, const char *zh,
                 const char *to, Nirc__LinkState link) {
  nirc__site_status__init(&f->s[i]);
  f->s[i].slug = (char *)slug;
  f->s[i].name_en = (char *)en;
  f->s[i].name_zh = (char *)zh;
  f->s[i].link_state = link;
  f->s[i].report_age_ms = -1;
  f->s[i].active_rule = "default";
  nirc__route_share__init(&f->r[i]);
  f->r[i].site = (char *)to;
  f->r[i].permille = 1000;
  f->rp[i] = &f->r[i];
  f->s[i].route = &f->rp[i];
  f->s[i].n_route = 1;
  f->sp[i] = &f->s[i];
}

/* hubei re-homed to henan by the night schedule, xizang cut over to henan
 * until 11:30, henan receiving both, hunan offline with an alarm. */
static void make(fixture_t *f) {
  memset(f, 0, sizeof *f);
  nirc__status_reply__init(&f->st);
  f->st.server_time_ms = NOW_MS;
  f->st.controller_node = "nircd-1";
  site(f, 0, "hubei", "Hubei", "湖北", "henan", NIRC__LINK_STATE__LINK_STATE_ONLINE);
  f->s[0].rule_kind = "schedule";
  f->s[0].rule_id = 1000001;
  f->s[0].rule_name = "night";
  f->s[0].rule_end_ms = NOW_MS + 5 * 3600000LL; /* 08:00 */
  f->s[0].rule_detail = "re-homed: shaanxi offline";
  f->s[0].active_rule = "schedule 1000001 (night)";
  site(f, 1, "henan", "Henan", "河南", "henan", NIRC__LINK_STATE__LINK_STATE_ONLINE);
  f->s[1].is_hub = 1;
  site(f, 2, "xizang", "Xizang", "西藏", "henan", NIRC__LINK_STATE__LINK_STATE_ONLINE);
  f->s[2].rule_kind = "cutover";
  f->s[2].rule_id = 2000017;
  f->s[2].rule_reason = "Wuhan lockdown";
  f->s[2].rule_end_ms = NOW_MS + 8 * 3600000LL + 30 * 60000; /* 11:30 */
  site(f, 3, "hunan", "Hunan", "湖南", "hunan", NIRC__LINK_STATE__LINK_STATE_OFFLINE);
  nirc__alarm__init(&f->a);
  f->a.kind = "site_down";
  f->a.subject = "hunan";
  f->ap[0] = &f->a;
  f->st.alarms = f->ap;
  f->st.n_alarms = 1;
  f->st.sites = f->sp;
  f->st.n_sites = 4;
}

static void test_width(void **state) {
  (void)state;
  assert_int_equal(ctl_text_width("Hubei"), 5);
  assert_int_equal(ctl_text_width("湖北"), 4);
  assert_int_equal(ctl_text_width("内蒙古 Inner"), 12);
  char b[64];
  ctl_text_pad("湖北", 6, b, sizeof b);
  assert_string_equal(b, "湖北  ");
  ctl_text_pad("黑龙江省哈尔滨", 6, b, sizeof b); /* cut on a character */
  assert_string_equal(b, "黑龙江");
  ctl_text_pad("新疆", 5, b, sizeof b); /* a wide character does not fit half */
  assert_string_equal(b, "新疆 ");
}

static void test_filters(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  unsigned in = 9;
  assert_true(ctl_status_moved(&f.st, 0, &in));
  assert_int_equal(in, 0);
  assert_true(ctl_status_moved(&f.st, 1, &in)); /* a hub receiving calls */
  assert_int_equal(in, 2);
  assert_false(ctl_status_moved(&f.st, 3, NULL));
  char why[128];
  assert_false(ctl_status_problem(&f.st, 0, why, sizeof why));
  assert_true(ctl_status_problem(&f.st, 3, why, sizeof why));
  assert_string_equal(why, "offline, alarm site_down");
  f.s[1].note = "not healthy for 4 s: keeps the sources it answers";
  assert_true(ctl_status_problem(&f.st, 1, why, sizeof why));
  assert_string_equal(why, "note");
}

static void test_rule_column(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  char b[300];
  ctl_status_rule(&f.st, 0, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "schedule night until 08:00, re-homed: shaanxi offline");
  ctl_status_rule(&f.st, 0, "Asia/Shanghai", false, b, sizeof b);
  assert_string_equal(b, "schedule night until 08:00");
  ctl_status_rule(&f.st, 0, "UTC", true, b, sizeof b); /* the operator's zone */
  assert_string_equal(b, "schedule night until 00:00, re-homed: shaanxi offline");
  ctl_status_rule(&f.st, 2, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "cutover 2000017 until 11:30: Wuhan lockdown");
  ctl_status_rule(&f.st, 1, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "hub for 2 sites");
  ctl_status_rule(&f.st, 3, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "default");
  /* More than a day ahead: the date too. Open-ended: no "until". */
  f.s[2].rule_end_ms = NOW_MS + 48 * 3600000LL;
  ctl_status_rule(&f.st, 2, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "cutover 2000017 until 01-25 03:00: Wuhan lockdown");
  f.s[2].rule_end_ms = 0;
  f.s[2].rule_reason = "line\x1b[31m";
  ctl_status_rule(&f.st, 2, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "cutover 2000017: line\\x1b[31m"); /* escaped */
  f.s[0].excluded = 1;
  ctl_status_rule(&f.st, 0, "Asia/Shanghai", true, b, sizeof b);
  assert_string_equal(b, "excluded from schedule night after a failed move: nircctl readmit hubei");
}

/* The table with --zh keeps its columns: LINK starts at the same screen
 * column on every row, whatever the bytes of the name; --moved leaves out
 * the site at home. */
static void test_table_zh_aligned(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_opts_t o = {.moved = true, .zh = true, .tz = "Asia/Shanghai"};
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  assert_null(strstr(text, "\nhunan ")); /* no row for it */
  size_t col = 0, rows = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *at = strstr(line, "online");
    if (!at) at = strstr(line, "LINK");
    if (!at || (line[0] >= '0' && line[0] <= '9')) continue; /* the summary lines */
    char head[256];
    snprintf(head, sizeof head, "%.*s", (int)(at - line), line);
    size_t c = ctl_text_width(head);
    if (!col) col = c;
    assert_int_equal(c, col);
    rows++;
  }
  assert_int_equal(rows, 4); /* the header, hubei, henan, xizang */
  free(text);
}

static char *printed(const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, st, o);
  fclose(out);
  return text;
}

/* A page of a larger whole never passes for the whole: it says which rows
 * these are, of how many, and the command for the next page; the counts
 * are the controller's (of every site), not the page's rows. The summary
 * of a network too large to list leads with the counts and says how many
 * problem sites are left. */
static void test_page_and_summary(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.st.matched = 20029;

  f.st.count_online = 2;
  f.st.count_never_seen = 20029;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai", .filters = "--state never-seen", .offset = 100};
  char *text = printed(&f.st, &o);
  assert_non_null(strstr(text, "showing 101-104 of 20,029 matching sites --state never-seen\n"));
  assert_non_null(
      strstr(text, "next page: nircctl status --state never-seen --limit 4 --offset 104"));
  assert_non_null(strstr(text, "20,031 sites: 2 online, 0 stale, 0 offline, 20,029 never seen"));
  free(text);
  assert_false(ctl_status_complete(&f.st, &o));
  assert_int_equal(ctl_status_total(&f.st), 20031);

  o = (ctl_status_opts_t){.tz = "Asia/Shanghai", .summary = true, .problems = true};
  text = printed(&f.st, &o);
  assert_true(strncmp(text, "20,031 sites: 2 online", 22) == 0);
  assert_non_null(strstr(text, "20,029 problem sites, and 20,025 more: nircctl status --problems "
                               "--limit 100 --offset 4"));
  assert_non_null(strstr(text, "nircctl status --all"));
  free(text);

  /* A whole reply (every site matched) has no paging lines. */
  f.st.matched = 4;
  f.st.count_online = 3;
  f.st.count_never_seen = 0;
  f.st.count_offline = 1;
  o = (ctl_status_opts_t){.tz = "Asia/Shanghai"};
  text = printed(&f.st, &o);
  assert_null(strstr(text, "showing"));
  assert_non_null(strstr(text, "4 sites: 3 online, 0 stale, 1 offline or never seen"));
  free(text);
}

/* `site`: the agents line names exactly the figures the report did not
 * measure and shows the ones it did (a ready count was hidden behind
 * "(ready, talking, not ready: not measured)" when only talking and not
 * ready were missing); the queue line likewise. */
static void test_site_names_what_was_not_measured(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  Nirc__LoadReport r;
  nirc__load_report__init(&r);
  r.agents_logged_in = 40;
  r.agents_ready = 5;
  r.agents_talking = 30;
  r.agents_not_ready = 5;
  r.calls_in_queue = 3;
  r.longest_wait_ms = 12000;
  r.aht_ms = 200000;
  f.s[0].last_report = &r;
  f.s[0].report_age_ms = 300;
  static const struct {
    uint32_t nm;
    const char *agents, *queue;
  } cases[] = {
      {0, "40 logged in: 5 ready, 30 talking, 5 not ready", "3 waiting, longest 12 s"},
      {REPORT_NM_TALKING | REPORT_NM_NOT_READY | REPORT_NM_QUEUE,
       "40 logged in: 5 ready (talking, not ready: not measured)",
       "waiting not measured, longest 12 s"},
      {REPORT_NM_READY | REPORT_NM_WAIT,
       "40 logged in: 30 talking, 5 not ready (ready: not measured)",
       "3 waiting, longest not measured"},
      {REPORT_NM_AGENTS & ~REPORT_NM_LOGGED_IN,
       "40 logged in (ready, talking, not ready: not measured)", "3 waiting, longest 12 s"},
      {REPORT_NM_LOGGED_IN | REPORT_NM_TALKING | REPORT_NM_NOT_READY,
       "logged in not measured: 5 ready (talking, not ready: not measured)",
       "3 waiting, longest 12 s"},
      {REPORT_NM_PROXY, "not measured", "not measured"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    r.not_measured = cases[k].nm;
    char *text = NULL, want[200];
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
    ctl_site_print(out, &f.st, &o);
    fclose(out);
    snprintf(want, sizeof want, "\n  agents        %s\n", cases[k].agents);
    if (!strstr(text, want)) fail_msg("case %zu: no '%s' in:\n%s", k, want, text);
    snprintf(want, sizeof want, "\n  queue         %s\n", cases[k].queue);
    if (!strstr(text, want)) fail_msg("case %zu: no '%s' in:\n%s", k, want, text);
    free(text);
  }
}

/* The status table: a figure not measured is "?" and one of a PBX that
 * could not be read "PBX?", each in its column ("not measured" pushed the
 * ROUTE and RULE columns out of line), never 0; the legend under the
 * table says what they mean, and is there only when one is shown. */
static void test_table_unmeasured_aligned(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  Nirc__LoadReport proxy, unreadable, full;
  nirc__load_report__init(&proxy);
  proxy.calls_offered = 5;
  proxy.not_measured = REPORT_NM_PROXY;
  nirc__load_report__init(&unreadable);
  unreadable.pbx_unreadable = 1;
  unreadable.pbx_error = "login refused";
  nirc__load_report__init(&full);
  full.calls_offered = 10;
  full.answered_within_threshold = 8;
  full.calls_in_queue = 3;
  full.longest_wait_ms = 12000;
  full.agents_logged_in = 40;
  full.agents_ready = 5;
  f.s[0].last_report = &proxy;
  f.s[1].last_report = &unreadable;
  f.s[2].last_report = &full;
  for (int i = 0; i < 3; i++)
    f.s[i].report_age_ms = 300;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  const char *head = strstr(text, "SITE");
  assert_non_null(head);
  size_t col = (size_t)(strstr(head, "ROUTE") - head);
  static const struct {
    const char *slug, *cells, *route;
  } rows[] = {
      {"hubei", "     ?        ?             ?      ?", "henan"},
      {"henan", "  PBX?     PBX?          PBX?   PBX?", "home"},
      {"xizang", "     3      12s          40/5    80%", "henan"},
  };
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    char key[32];
    snprintf(key, sizeof key, "\n%s ", rows[k].slug);
    const char *line = strstr(text, key);
    if (!line) fail_msg("no row for %s in:\n%s", rows[k].slug, text);
    line++;
    const char *eol = strchr(line, '\n');
    if (!strstr(line, rows[k].cells) || strstr(line, rows[k].cells) > eol)
      fail_msg("%s: no '%s' in:\n%s", rows[k].slug, rows[k].cells, text);
    if (strncmp(line + col, rows[k].route, strlen(rows[k].route)) != 0)
      fail_msg("%s: ROUTE not at column %zu:\n%s", rows[k].slug, col, text);
  }
  assert_null(strstr(text, "not measured  "));
  assert_non_null(strstr(text, "\n? not measured: "));
  assert_non_null(strstr(text, "\nPBX? the site's PBX could not be read"));
  free(text);
  /* Every figure measured: no legend. */
  f.s[0].last_report = f.s[1].last_report = &full;
  out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  assert_null(strstr(text, "? not measured"));
  assert_null(strstr(text, "PBX? the"));
  free(text);
}

/* --json: a site whose PBX could not be read measured nothing, so every
 * figure of its load is null and named in not_measured (they were 0 with
 * not_measured []); a proxy's calls stay numbers, its missing figures
 * null. */
static void test_json_unreadable_measures_nothing(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  Nirc__LoadReport proxy, unreadable;
  nirc__load_report__init(&proxy);
  proxy.calls_offered = 5;
  proxy.not_measured = REPORT_NM_PROXY;
  nirc__load_report__init(&unreadable);
  unreadable.pbx_unreadable = 1;
  unreadable.pbx_error = "login refused";
  f.s[0].last_report = &proxy;
  f.s[1].last_report = &unreadable;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  json_t *top = ctl_status_json(&f.st, &o);
  assert_non_null(top);
  json_t *sites = json_object_get(top, "sites");
  json_t *bad = json_object_get(json_array_get(sites, 1), "load");
  static const char *const figures[] = {"calls_offered",
                                        "calls_answered",
                                        "calls_abandoned",
                                        "calls_in_queue",
                                        "calls_in_queue_peak",
                                        "longest_wait_ms",
                                        "agents_logged_in",
                                        "agents_ready",
                                        "agents_talking",
                                        "agents_not_ready",
                                        "aht_ms",
                                        "answered_within_threshold",
                                        "sl_threshold_s",
                                        "calls_from_other_sites",
                                        "calls_routed_away"};
  json_t *nm = json_object_get(bad, "not_measured");
  for (size_t k = 0; k < sizeof figures / sizeof figures[0]; k++) {
    json_t *v = json_object_get(bad, figures[k]);
    if (!v || !json_is_null(v)) fail_msg("%s of an unreadable PBX is not null", figures[k]);
    bool named = false;
    for (size_t i = 0; i < json_array_size(nm); i++)
      named |= strcmp(json_string_value(json_array_get(nm, i)), figures[k]) == 0;
    if (!named) fail_msg("%s of an unreadable PBX is not in not_measured", figures[k]);
  }
  assert_int_equal(json_array_size(nm), sizeof figures / sizeof figures[0]);
  assert_true(json_is_null(json_object_get(bad, "service_level")));
  assert_true(json_is_false(json_object_get(bad, "routing_measured")));
  assert_string_equal(json_string_value(json_object_get(bad, "pbx_error")), "login refused");
  json_t *px = json_object_get(json_array_get(sites, 0), "load");
  assert_int_equal(json_integer_value(json_object_get(px, "calls_offered")), 5);
  assert_true(json_is_integer(json_object_get(px, "calls_routed_away")));
  assert_true(json_is_null(json_object_get(px, "agents_logged_in")));
  assert_int_equal(json_array_size(json_object_get(px, "not_measured")), 10);
  json_decref(top);
}

/* Alarm lines under `status` and `site` name the zone of their time, and
 * on an accelerated clock that it is real time, with the business time
 * the RULE column's ends are on beside it (they were bare: "since
 * 2026-12-05 11:12:00", another clock than "until 08:00" on that line). */
static void test_alarm_times_labelled(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.a.id = 7;
  f.a.severity = "warning";
  f.a.message = "hunan offline";
  f.a.raised_ms = 1796440320000LL; /* 2026-12-05 11:12:00 +08:00, real */
  f.a.raised_business_ms = NOW_MS - 3600000LL;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  const char *want = "since 2026-12-05 11:12:00 (Asia/Shanghai, real time; business time "
                     "2020-01-23 02:00:00)";
  char *text = printed(&f.st, &o);
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  f.st.sites = &f.sp[3]; /* nircctl site hunan */
  f.st.n_sites = 1;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_site_print(out, &f.st, &o);
  fclose(out);
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);

  /* One clock: the zone, no words about another. */
  f.a.raised_business_ms = f.a.raised_ms + 30000;
  o.tz = "Europe/Berlin";
  text = printed(&f.st, &o);
  want = "since 2026-12-05 04:12:00 (Europe/Berlin): hunan offline";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
}

/* `nircctl site` and --json of a site whose route its agent applied
 * without a read-back of the PBX (an exec adapter without verify_cmd): the
 * route is shown with "applied, unverified". Before, nothing but the
 * history's JSON said it (audit T6a). */
static void test_site_route_unverified(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s[2].route_unverified = 1;
  f.st.sites = &f.sp[2]; /* nircctl site xizang */
  f.st.n_sites = 1;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_site_print(out, &f.st, &o);
  fclose(out);
  const char *want = "  route         henan: applied, unverified (no read-back of the PBX)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *x = json_array_get(json_object_get(top, "sites"), 0);
  assert_true(json_is_true(json_object_get(x, "route_unverified")));
  json_decref(top);
}

/* The status table marks a route applied without a read-back, as
 * `nircctl site` does: "henan (unverified)", with RULE still in one column
 * and a legend line under the table, there only when a route is marked.
 * Not over an unknown route (unknown says more). Before, only `nircctl
 * site` and --json said it (session 16). */
static void test_table_route_unverified(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s[2].route_unverified = 1;
  f.s[3].route_unverified = 1;
  f.s[3].route_unknown = 1;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  const char *head = strstr(text, "SITE");
  assert_non_null(head);
  size_t col = (size_t)(strstr(head, "ROUTE") - head);
  size_t rcol = (size_t)(strstr(head, "RULE") - head);
  static const struct {
    const char *slug, *route, *rule;
  } rows[] = {
      {"hubei", "henan ", "schedule night"},
      {"xizang", "henan (unverified) ", "cutover 2000017"},
      {"hunan", "unknown ", "default"},
  };
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    char key[32];
    snprintf(key, sizeof key, "\n%s ", rows[k].slug);
    const char *line = strstr(text, key);
    if (!line) fail_msg("no row for %s in:\n%s", rows[k].slug, text);
    line++;
    if (strncmp(line + col, rows[k].route, strlen(rows[k].route)) != 0)
      fail_msg("%s: no '%s' at column %zu:\n%s", rows[k].slug, rows[k].route, col, text);
    if (strncmp(line + rcol, rows[k].rule, strlen(rows[k].rule)) != 0)
      fail_msg("%s: RULE not at column %zu:\n%s", rows[k].slug, rcol, text);
  }
  if (!strstr(text, "\n(unverified) the PBX took the route but could not be read back"))
    fail_msg("no legend for (unverified) in:\n%s", text);
  free(text);
  /* A long split route marked too: RULE stays in its column. */
  f.r[2].permille = 700;
  f.s[2].n_route = 2;
  Nirc__RouteShare other = NIRC__ROUTE_SHARE__INIT, *two[2] = {&f.r[2], &other};
  other.site = "shaanxi";
  other.permille = 300;
  f.s[2].route = two;
  f.s[3].route_unverified = 0;
  out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  head = strstr(text, "SITE");
  rcol = (size_t)(strstr(head, "RULE") - head);
  const char *x = strstr(text, "\nxizang ") + 1, *h = strstr(text, "\nhubei ") + 1;
  if (!strstr(x, "henan 700‰, shaanxi 300‰ (unverified) ") ||
      strncmp(h + rcol, "schedule night", 14) != 0)
    fail_msg("RULE out of line after a long marked route:\n%s", text);
  free(text);
  /* Nothing marked: no legend. */
  f.s[2].route_unverified = 0;
  out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  assert_null(strstr(text, "unverified"));
  free(text);
}

/* A site whose agent has not said Hello to this controller since it took
 * over (route_unheard): its route is not known here (the engine's acked
 * is only the default home), so the table says "unknown (not heard)" with
 * a legend line naming what to check, `nircctl site` says it, and --json
 * has route null, route_unknown and route_unheard true. Before, the table
 * showed the route as a fact (home, by default). Given a route anyway,
 * the client shows none of it. */
static void test_route_unheard(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s[2].route_unheard = 1; /* xizang, whose row still carries "henan" */
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_status_print(out, &f.st, &o);
  fclose(out);
  const char *head = strstr(text, "SITE");
  assert_non_null(head);
  size_t col = (size_t)(strstr(head, "ROUTE") - head);
  size_t rcol = (size_t)(strstr(head, "RULE") - head);
  const char *line = strstr(text, "\nxizang ");
  assert_non_null(line);
  line++;
  if (strncmp(line + col, "unknown (not heard) ", 20) != 0 ||
      strncmp(line + rcol, "cutover 2000017", 15) != 0)
    fail_msg("xizang's ROUTE is not 'unknown (not heard)' in its column:\n%s", text);
  if (!strstr(text, "\n(not heard) its agent has not connected to this controller since it took "
                    "over"))
    fail_msg("no legend for (not heard) in:\n%s", text);
  if (strstr(text, "(unverified)")) fail_msg("an unverified legend without a mark:\n%s", text);
  free(text);
  f.st.sites = &f.sp[2]; /* nircctl site xizang */
  f.st.n_sites = 1;
  char *said = NULL;
  out = open_memstream(&said, &len);
  assert_non_null(out);
  ctl_site_print(out, &f.st, &o);
  fclose(out);
  const char *want = "  route         unknown (not heard: its agent has not connected to this "
                     "controller since it took over; check the agent)\n";
  if (!strstr(said, want)) fail_msg("no '%s' in:\n%s", want, said);
  free(said);
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *x = json_array_get(json_object_get(top, "sites"), 0);
  assert_true(json_is_null(json_object_get(x, "route")));
  assert_true(json_is_true(json_object_get(x, "route_unknown")));
  assert_true(json_is_true(json_object_get(x, "route_unheard")));
  json_decref(top);
  /* Heard from: the route again, no mark, and route_unheard false. */
  f.s[2].route_unheard = 0;
  top = ctl_status_json(&f.st, &o);
  x = json_array_get(json_object_get(top, "sites"), 0);
  assert_true(json_is_array(json_object_get(x, "route")));
  assert_true(json_is_false(json_object_get(x, "route_unheard")));
  json_decref(top);
}

/* A site whose route is not known (not heard here, or unknown at its PBX)
 * is neither moved nor home: --moved does not list it as moved, it is
 * nobody's sender ("hub for N sites" counts the routes known), JSON has
 * counts.route_not_known, and the table says under it how many such sites there are
 * (the controller's count of every site) and that the filter could not
 * judge them. Before, xizang's stale row route made it "moved" and henan
 * "hub for 2 sites", with nothing said of the sites nobody knows. */
static void test_route_not_known_counted_apart(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s[2].route_unheard = 1; /* xizang, whose row still carries "henan" */
  f.st.route_not_known = 3; /* of every live site, beyond this reply */
  unsigned in = 9;
  assert_false(ctl_status_moved(&f.st, 2, NULL));
  assert_true(ctl_status_moved(&f.st, 1, &in));
  assert_int_equal(in, 1); /* hubei only */
  assert_int_equal(ctl_status_not_known(&f.st), 3);
  f.st.route_not_known = 0; /* a controller that does not count: the rows */
  assert_int_equal(ctl_status_not_known(&f.st), 1);
  f.st.route_not_known = 3;
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = printed(&f.st, &o);
  if (!strstr(text, "hub for 1 site\n") || strstr(text, "hub for 2")) /* henan's row */
    fail_msg("henan is not 'hub for 1 site' (routes known):\n%s", text);
  if (!strstr(text, "\n\"hub for N sites\" counts the routes known here: 3 sites' routes are not "
                    "known (not heard, or unknown at the PBX; they are among nircctl status "
                    "--problems)\n"))
    fail_msg("no line on the routes not known under:\n%s", text);
  free(text);
  o.moved = true;
  text = printed(&f.st, &o);
  if (strstr(text, "\nxizang ")) fail_msg("xizang listed as moved:\n%s", text);
  if (!strstr(text, "\n3 sites' routes are not known here (not heard, or unknown at the PBX) and "
                    "not in this list: their calls may be away from home (they are among nircctl "
                    "status --problems)\n"))
    fail_msg("--moved does not say what it left out:\n%s", text);
  free(text);
  /* A hub whose own route is not known but that is known to receive calls
   * is listed: the line counts only those left out. */
  f.s[1].route_unknown = 1;
  text = printed(&f.st, &o);
  if (!strstr(text, "\nhenan ") || !strstr(text, "\n2 sites' routes are not known here"))
    fail_msg("henan (receiving) not listed, or counted as left out:\n%s", text);
  free(text);
  f.s[1].route_unknown = 0;
  /* None not known: no line. */
  f.s[2].route_unheard = 0;
  f.st.route_not_known = 0;
  text = printed(&f.st, &o);
  if (strstr(text, "not known")) fail_msg("a line on routes not known with none:\n%s", text);
  free(text);
  /* JSON: moved as --moved keeps it (not a route not known: route_unknown
   * says that beside it), and the count of every site. */
  f.s[2].route_unknown = 1;
  f.st.route_not_known = 2;
  o.moved = false;
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *sites = json_object_get(top, "sites");
  assert_true(json_is_false(json_object_get(json_array_get(sites, 2), "moved")));
  assert_true(json_is_true(json_object_get(json_array_get(sites, 2), "route_unknown")));
  assert_true(json_is_true(json_object_get(json_array_get(sites, 1), "moved")));
  assert_int_equal(json_integer_value(json_object_get(json_array_get(sites, 1), "receives_from")),
                   1);
  assert_true(json_is_false(json_object_get(json_array_get(sites, 3), "moved")));
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(top, "counts"), "route_not_known")), 2);
  json_decref(top);
}

/* A `next` reply with one event: schedule night's start, hubei to the
 * hubs of `hp` (their slugs in `hubs`, n of each), predicted. The event
 * and reply are the caller's; the arrays are borrowed. */
static char *next_src[] = {"hubei"};
static void next_start(Nirc__NextReply *r, Nirc__NextEvent *ev, Nirc__NextEvent **evp,
                       Nirc__NextHub **hp, char **hubs, size_t n) {
  nirc__next_event__init(ev);
  ev->kind = "schedule-start";
  ev->rule_kind = "schedule";
  ev->rule_name = "night";
  ev->sources = next_src;
  ev->n_sources = 1;
  ev->hubs = hubs;
  ev->n_hubs = n;
  ev->predicted = true;
  ev->predictions = hp;
  ev->n_predictions = n;
  evp[0] = ev;
  nirc__next_reply__init(r);
  r->until_ms = 3600000;
  r->events = evp;
  r->n_events = 1;
}

/* nircctl next: a start's predictions with sites whose route is not
 * known here get the note (what it means, where to look) once; --json
 * gives the count, and null from a controller that did not count. */
static void test_next_notes_routes_not_known(void **state) {
  (void)state;
  Nirc__NextHub h = NIRC__NEXT_HUB__INIT;
  h.hub = "shaanxi";
  h.stable = true;
  h.sl_after = 0.9;
  Nirc__NextHub *hp[] = {&h};
  char *hubs[] = {"shaanxi"}, *unk[] = {"hainan", "hunan"};
  Nirc__NextEvent ev, *evp[1];
  Nirc__NextReply r;
  next_start(&r, &ev, evp, hp, hubs, 1);
  r.route_not_known = 3;
  r.route_not_known_sites = unk;
  r.n_route_not_known_sites = 2;
  r.route_not_known_counted = true;
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ctl_next_print(out, &r, "UTC");
  fclose(out);
  const char *want = "note: route not known at 3 sites (hainan, hunan +1 more): not heard since "
                     "this controller took over, or unknown at the PBX; the predictions above";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  json_t *j = ctl_next_json(&r);
  assert_int_equal(json_integer_value(json_object_get(j, "route_not_known")), 3);
  assert_int_equal(json_array_size(json_object_get(j, "route_not_known_sites")), 2);
  json_decref(j);
  r.route_not_known_counted = false;
  r.route_not_known = 0;
  r.n_route_not_known_sites = 0;
  j = ctl_next_json(&r);
  assert_true(json_is_null(json_object_get(j, "route_not_known")));
  json_decref(j);
  text = NULL;
  out = open_memstream(&text, &len);
  ctl_next_print(out, &r, "UTC");
  fclose(out);
  if (strstr(text, "not known")) fail_msg("a note with none counted:\n%s", text);
  free(text);
}

/* A hub whose agents are neither measured nor configured: `next` says
 * its agents are not known and predicts no service level; --json has
 * agents and sl_after null. Before: "SL 0% predicted (unstable), needs 9
 * agents, has 0 (unknown)" and "agents": 0. A configured hub keeps its
 * figures and says where they come from. */
static void test_next_agents_not_known(void **state) {
  (void)state;
  Nirc__NextHub h = NIRC__NEXT_HUB__INIT, c = NIRC__NEXT_HUB__INIT;
  h.hub = "shaanxi";
  h.agents_needed = 9;
  h.n_sources = 2;
  h.capacity_source = "unknown";
  c.hub = "henan";
  c.stable = true;
  c.sl_after = 0.85;
  c.agents = 28;
  c.agents_needed = 20;
  c.capacity_source = "configured";
  Nirc__NextHub *hp[] = {&h, &c};
  char *hubs[] = {"shaanxi", "henan"};
  Nirc__NextEvent ev, *evp[1];
  Nirc__NextReply r;
  next_start(&r, &ev, evp, hp, hubs, 2);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ctl_next_print(out, &r, "UTC");
  fclose(out);
  const char *want = "shaanxi: SL not predicted, needs 9 agents, agents not known (neither "
                     "measured nor configured), takes 2";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  if (strstr(text, "has 0")) fail_msg("'has 0' in:\n%s", text);
  if (!strstr(text, "henan: SL 85% predicted, needs 20 agents, has 28 (configured)"))
    fail_msg("henan's figures not in:\n%s", text);
  free(text);
  json_t *j = ctl_next_json(&r);
  json_t *pred = json_object_get(json_array_get(json_object_get(j, "events"), 0), "predictions");
  json_t *x = json_array_get(pred, 0), *y = json_array_get(pred, 1);
  assert_true(json_is_null(json_object_get(x, "agents")));
  assert_true(json_is_null(json_object_get(x, "sl_after")));
  assert_int_equal(json_integer_value(json_object_get(x, "agents_needed")), 9);
  assert_int_equal(json_integer_value(json_object_get(y, "agents")), 28);
  assert_true(json_real_value(json_object_get(y, "sl_after")) == 0.85);
  json_decref(j);
}

/* nircctl site of a site never seen since this controller took over: its
 * link has no "since" (state_since_ms 0) and it has no load. Before:
 * "link never-seen (since 0 s)", as if it had just changed. */
static void test_site_never_seen_has_no_since(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s[0].link_state = NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN;
  f.s[0].state_since_ms = 0;
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  ctl_site_print(out, &f.st, &o);
  fclose(out);
  const char *want = "  link          never-seen (not seen since this controller took over)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  if (!strstr(text, "  load          no report yet\n"))
    fail_msg("no 'no report yet' in:\n%s", text);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_site_route_unverified),
      cmocka_unit_test(test_table_route_unverified),
      cmocka_unit_test(test_next_notes_routes_not_known),
      cmocka_unit_test(test_next_agents_not_known),
      cmocka_unit_test(test_site_never_seen_has_no_since),
      cmocka_unit_test(test_route_unheard),
      cmocka_unit_test(test_route_not_known_counted_apart),
      cmocka_unit_test(test_width),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_rule_column),
      cmocka_unit_test(test_table_zh_aligned),
      cmocka_unit_test(test_page_and_summary),
      cmocka_unit_test(test_site_names_what_was_not_measured),
      cmocka_unit_test(test_table_unmeasured_aligned),
      cmocka_unit_test(test_json_unreadable_measures_nothing),
      cmocka_unit_test(test_alarm_times_labelled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
