/* Unit tests for nircctl's audit-trail output (controller/ctl_history.c):
 * a reply that holds only the newest entries of those that matched says
 * so, names the --before-id that reads the page before, and keeps the
 * notes out of the CSV; the JSON says it with complete and next_before_id;
 * a controller too old to say is "not known", never "complete"; and on an
 * accelerated clock the window's clock is named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_history.h"

static Nirc__AuditEntry ents[3];
static Nirc__AuditEntry *ptrs[3];

/* Three entries, ids 7-9, each on the business clock `skew_ms` ahead. */
static Nirc__HistoryReply reply(int64_t skew_ms) {
  Nirc__HistoryReply h = NIRC__HISTORY_REPLY__INIT;
  for (int i = 0; i < 3; i++) {
    nirc__audit_entry__init(&ents[i]);
    ents[i].id = 7 + (uint64_t)i;
    ents[i].at_ms = 1579752000000LL + i * 1000;
    ents[i].business_at_ms = ents[i].at_ms + skew_ms;
    ents[i].actor = "operator:alice";
    ents[i].action = "cutover";
    ents[i].target = "hubei";
    ents[i].detail_json = "{\"reason\":\"drill\"}";
    ptrs[i] = &ents[i];
  }
  h.entries = ptrs;
  h.n_entries = 3;
  h.limit = 3;
  h.business_clock = true;
  return h;
}

static char *notes(const Nirc__HistoryReply *h, bool window) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_notes(f, h, window);
  fclose(f);
  return text;
}

static void test_more_is_said_with_the_next_page(void **state) {
  (void)state;
  Nirc__HistoryReply h = reply(0);
  h.more = true;
  char *t = notes(&h, false);
  assert_string_equal(t, "note: showing the newest 3 matching entries; older ones match too: "
                         "--before-id 7 reads the page before (or narrow --until, or raise "
                         "--limit, at most 500)\n");
  free(t);
  h.limit = 500; /* already the most: not offered */
  t = notes(&h, false);
  assert_null(strstr(t, "--limit"));
  free(t);
  h.limit = 3;
  json_t *j = ctl_history_json(&h);
  assert_true(json_is_false(json_object_get(j, "complete")));
  assert_int_equal(json_integer_value(json_object_get(j, "next_before_id")), 7);
  assert_string_equal(json_string_value(json_object_get(j, "window_clock")), "business");
  assert_int_equal(json_array_size(json_object_get(j, "entries")), 3);
  json_decref(j);
  /* The CSV itself holds only the header and the entries. */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_print(f, &h, CTL_HISTORY_CSV, "UTC");
  fclose(f);
  assert_null(strstr(text, "note"));
  size_t lines = 0;
  for (char *p = text; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 4);
  free(text);
}

static void test_complete_says_nothing(void **state) {
  (void)state;
  Nirc__HistoryReply h = reply(0);
  char *t = notes(&h, true);
  assert_string_equal(t, "");
  free(t);
  json_t *j = ctl_history_json(&h);
  assert_true(json_is_true(json_object_get(j, "complete")));
  assert_true(json_is_null(json_object_get(j, "next_before_id")));
  json_decref(j);
}

/* An older controller sends no limit: whether more matched is not known. */
static void test_older_controller_is_not_known(void **state) {
  (void)state;
  Nirc__HistoryReply h = reply(0);
  h.limit = 0;
  h.business_clock = false;
  char *t = notes(&h, false);
  assert_non_null(strstr(t, "does not say whether older entries match"));
  free(t);
  json_t *j = ctl_history_json(&h);
  assert_true(json_is_null(json_object_get(j, "complete")));
  assert_true(json_is_null(json_object_get(j, "next_before_id")));
  assert_string_equal(json_string_value(json_object_get(j, "window_clock")), "real");
  json_decref(j);
}

/* Where the two clocks differ, a window names the one it was on. */
static void test_window_clock_named_when_clocks_differ(void **state) {
  (void)state;
  Nirc__HistoryReply h = reply(-3600000LL * 24 * 365);
  char *t = notes(&h, true);
  assert_string_equal(t, "note: --since/--until were compared with the BUSINESS time\n");
  free(t);
  t = notes(&h, false);
  assert_string_equal(t, "");
  free(t);
  h = reply(0);
  t = notes(&h, true);
  assert_string_equal(t, "");
  free(t);
}

static char *printed(const Nirc__HistoryReply *h, ctl_history_fmt_t fmt) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_print(f, h, fmt, "UTC");
  fclose(f);
  return text;
}

/* An entry stamped when it happened (an agent's return no controller
 * heard), recorded 10 min later, comes by id after entries timed later.
 * The table marks it with when it was recorded and says why in a note;
 * the CSV's last column and the JSON's recorded_at_ms say it; the other
 * entries get nothing. Before, it stood there with an earlier time and
 * nothing said why. */
static void test_a_late_entry_is_marked(void **state) {
  (void)state;
  Nirc__HistoryReply h = reply(0);
  ents[2].action = "route";
  ents[2].at_ms = ents[2].business_at_ms = 1579751400000LL; /* 03:50:00 UTC */
  ents[2].detail_json = "{\"cause\":\"cutover-end\",\"before\":\"shaanxi\",\"after\":\"home\","
                        "\"why\":\"went home\",\"recorded_at_ms\":1579752002500,"
                        "\"recorded_business_at_ms\":1579752002600}";
  char *t = printed(&h, CTL_HISTORY_TABLE);
  assert_non_null(
      strstr(t, "2020-01-23 03:50:00 operator:alice         route          hubei            "
                "(recorded late, at 04:00:02) shaanxi -> home: cutover-end: went home\n"));
  assert_non_null(strstr(t, "\nnote: entries are listed in the order they were recorded; one "
                            "marked \"recorded late\" is timed when it happened, so its time may "
                            "be earlier than those above it: the controller learnt of it only at "
                            "the time in the mark\n"));
  free(t);
  /* Recorded on another day than it happened: the date too. */
  ents[2].at_ms = ents[2].business_at_ms = 1579734000000LL; /* 2020-01-22 23:00:00 UTC */
  t = printed(&h, CTL_HISTORY_TABLE);
  assert_non_null(strstr(t, "(recorded late, at 2020-01-23 04:00:02) shaanxi"));
  free(t);
  t = printed(&h, CTL_HISTORY_CSV);
  assert_non_null(strstr(t, ",cause,detail,recorded_at\n"));
  assert_non_null(strstr(t, "shaanxi -> home: cutover-end: went home,2020-01-23 04:00:02\n"));
  assert_non_null(strstr(t, "\n7,2020-01-23 04:00:00,2020-01-23 04:00:00,UTC,operator:alice,"
                            "cutover,hubei,,drill,\n"));
  assert_null(strstr(t, "note"));
  free(t);
  json_t *j = ctl_history_json(&h);
  json_t *late = json_array_get(json_object_get(j, "entries"), 2);
  assert_int_equal(json_integer_value(json_object_get(late, "recorded_at_ms")), 1579752002500LL);
  assert_int_equal(json_integer_value(json_object_get(late, "recorded_business_at_ms")),
                   1579752002600LL);
  json_t *first = json_array_get(json_object_get(j, "entries"), 0);
  assert_null(json_object_get(first, "recorded_at_ms"));
  assert_null(json_object_get(first, "recorded_business_at_ms"));
  json_decref(j);
  /* None late: no mark, no note. */
  h = reply(0);
  t = printed(&h, CTL_HISTORY_TABLE);
  assert_null(strstr(t, "recorded late"));
  assert_null(strstr(t, "note"));
  free(t);
}

/* The pager of --all pins the window the first page was compared with
 * (a duration resolved once), pages back from the oldest id, bounds the
 * last page by --limit, and refuses what it cannot do honestly: more than
 * CTL_HISTORY_ALL_MAX without --limit, a controller that does not count. */
static void test_pager(void **state) {
  (void)state;
  Nirc__HistoryRequest hq = NIRC__HISTORY_REQUEST__INIT;
  hq.since_ago_ms = 3600000;
  ctl_history_pager_t p;
  ctl_history_pager_init(&p, &hq, 0, false);
  assert_true(hq.count);
  assert_int_equal(hq.limit, CTL_HISTORY_PAGE);
  Nirc__HistoryReply h = reply(0);
  h.more = true;
  h.window_known = true;
  h.since_ms = 1579748400000LL;
  h.counted = true;
  h.matching = 1100;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_MORE);
  assert_int_equal(hq.since_ago_ms, 0);
  assert_int_equal(hq.since_ms, 1579748400000LL);
  assert_false(hq.count);
  assert_int_equal(hq.before_id, 7);
  assert_int_equal(p.n, 3);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_pager_progress(f, &p);
  fclose(f);
  assert_string_equal(text, "nircctl: read 3 of ~1100 entries...\n");
  free(text);
  h.more = false;
  h.counted = false; /* only the first page is counted */
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_DONE);
  /* Merged oldest first: the second page (older) before the first. */
  const Nirc__HistoryReply *pages[2] = {&h, &h};
  Nirc__HistoryReply m;
  Nirc__AuditEntry **all = ctl_history_pager_merge(&p, pages, 2, &m);
  assert_int_equal(m.n_entries, 6);
  assert_false(m.more);
  free(all);
  /* --limit 4: the second page asks for the one left, then stops. */
  ctl_history_pager_init(&p, &hq, 4, false);
  assert_int_equal(hq.limit, 4);
  hq.limit = 3;
  h.more = true;
  h.counted = true;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_MORE);
  assert_int_equal(hq.limit, 1);
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_DONE);
  assert_true(p.more);
  /* Too many without --limit; a controller that cannot count or pin. */
  ctl_history_pager_init(&p, &hq, 0, false);
  h.matching = CTL_HISTORY_ALL_MAX + 1;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_TOO_MANY);
  ctl_history_pager_init(&p, &hq, 0, false);
  h.counted = false;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_OLD);
  h.counted = true;
  h.window_known = false;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_OLD);
}

/* --csv streams: each page is written and freed, so any number of
 * matches is read (the bound holds the table and JSON only), and past
 * CTL_HISTORY_ALL_MAX entries the progress comes every 20 pages. */
static void test_pager_stream_is_not_bounded(void **state) {
  (void)state;
  Nirc__HistoryRequest hq = NIRC__HISTORY_REQUEST__INIT;
  ctl_history_pager_t p;
  ctl_history_pager_init(&p, &hq, 0, true);
  Nirc__HistoryReply h = reply(0);
  h.more = true;
  h.window_known = true;
  h.counted = true;
  h.matching = 5000000;
  assert_int_equal(ctl_history_pager_take(&p, &hq, &h), CTL_HISTORY_PAGE_MORE);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_pager_progress(f, &p); /* 3 entries: said */
  p.n = CTL_HISTORY_ALL_MAX + 1;
  p.pages = 201;
  ctl_history_pager_progress(f, &p); /* not a 20th page: quiet */
  p.pages = 220;
  ctl_history_pager_progress(f, &p);
  fclose(f);
  assert_string_equal(text, "nircctl: read 3 of ~5000000 entries...\n"
                            "nircctl: read 100001 of ~5000000 entries...\n");
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_more_is_said_with_the_next_page),
      cmocka_unit_test(test_pager_stream_is_not_bounded),
      cmocka_unit_test(test_complete_says_nothing),
      cmocka_unit_test(test_older_controller_is_not_known),
      cmocka_unit_test(test_window_clock_named_when_clocks_differ),
      cmocka_unit_test(test_pager),
      cmocka_unit_test(test_a_late_entry_is_marked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
