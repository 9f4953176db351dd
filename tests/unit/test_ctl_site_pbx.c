/* A site's recent PBX events: the server's bounded log of them
 * (controller/net/pbxlog.c), those a new leader reads back from
 * link_events merged into it (server_pbxload.c), and how `nircctl site
 * SLUG` shows them, text and --json (controller/ctl_sites.c), on
 * hand-made data. */
#include "ctl_sites.h"
#include "ctl_status.h"
#include "pbxlog.h"
#include "pbxrecent.h"
#include "server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2026-12-05 03:00:00 +08:00 */
#define T0 1796410800000LL

static pbxlog_event_t ev_at(int64_t at_ms, const char *event) {
  pbxlog_event_t e = {.at_ms = at_ms};
  snprintf(e.event, sizeof e.event, "%s", event);
  snprintf(e.detail, sizeof e.detail, "at %lld", (long long)at_ms);
  return e;
}

/* Newest first by when the agent saw it (a late one goes where it
 * belongs), PBXLOG_KEEP at most, and only sites with events cost one. */
static void test_log_keeps_the_newest_in_true_order(void **state) {
  (void)state;
  pbxlog_t l = {0};
  const pbxlog_event_t *got;
  assert_int_equal(pbxlog_get(&l, 5, &got), 0);
  assert_null(got);
  for (int i = 0; i < PBXLOG_KEEP + 3; i++) {
    pbxlog_event_t e = ev_at(T0 + i * 60000, "pbx_drift_repaired");
    assert_int_equal(pbxlog_add(&l, 19999, &e), 0);
  }
  /* Reported late: seen before the two newest, arrived after them. */
  pbxlog_event_t late = ev_at(T0 + (PBXLOG_KEEP + 1) * 60000 - 30000, "pbx_drift_not_repaired");
  late.late_ms = 9 * 60000;
  assert_int_equal(pbxlog_add(&l, 19999, &late), 0);
  /* Older than all kept: not kept. */
  pbxlog_event_t old = ev_at(T0 - 3600000, "route_unconfirmed");
  assert_int_equal(pbxlog_add(&l, 19999, &old), 0);
  size_t n = pbxlog_get(&l, 19999, &got);
  assert_int_equal(n, PBXLOG_KEEP);
  assert_int_equal(got[0].at_ms, T0 + (PBXLOG_KEEP + 2) * 60000);
  assert_int_equal(got[1].at_ms, T0 + (PBXLOG_KEEP + 1) * 60000);
  assert_string_equal(got[2].event, "pbx_drift_not_repaired");
  assert_int_equal(got[2].late_ms, 9 * 60000);
  for (size_t k = 1; k < n; k++)
    assert_true(got[k - 1].at_ms >= got[k].at_ms);
  assert_int_equal(got[n - 1].at_ms, T0 + 4 * 60000); /* 10, 9, 8.5 (late), 8 ... 4 */
  /* One site with events among 20,000: one allocated. */
  size_t allocated = 0;
  for (size_t i = 0; i < l.n; i++)
    allocated += l.by_site[i] != NULL;
  assert_int_equal(allocated, 1);
  assert_int_equal(pbxlog_get(&l, 3, &got), 0);
  pbxlog_free(&l);
  assert_int_equal(l.n, 0);
}

typedef struct {
  Nirc__StatusReply st;
  Nirc__SiteStatus s, *sp[1];
  Nirc__SitePbxEvent e[3], *ep[3];
} fixture_t;

static void make(fixture_t *f) {
  memset(f, 0, sizeof *f);
  nirc__status_reply__init(&f->st);
  f->st.server_time_ms = T0;
  f->st.controller_node = "nircd-1";
  nirc__site_status__init(&f->s);
  f->s.slug = "xizang";
  f->s.name_en = "Xizang";
  f->s.name_zh = "西藏";
  f->s.link_state = NIRC__LINK_STATE__LINK_STATE_ONLINE;
  f->s.report_age_ms = -1;
  f->s.active_rule = "default";
  f->sp[0] = &f->s;
  f->st.sites = f->sp;
  f->st.n_sites = 1;
  f->s.pbx_events_since_ms = T0 - 3600000; /* 02:00 */
  const char *kinds[3] = {"pbx_drift_repaired", "route_unconfirmed", "pbx_from_the_future"};
  for (int i = 0; i < 3; i++) {
    nirc__site_pbx_event__init(&f->e[i]);
    f->e[i].at_ms = T0 - i * 600000;
    f->e[i].event = (char *)kinds[i];
    f->e[i].detail = "the PBX routed xizang, the agent's route is shaanxi";
    f->ep[i] = &f->e[i];
  }
  f->e[0].late_ms = 42000;
  f->e[1].detail = "evil \033[2J text";
  f->e[2].at_or_before = 1;
  f->s.pbx_events = f->ep;
  f->s.n_pbx_events = 3;
}

static char *site_text(fixture_t *f) {
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_site_print(out, &f->st, &o);
  fclose(out);
  return text;
}

static void want_in(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
}

/* Each event at its true time in the ctl zone, its kind in words, when it
 * came late, the detail escaped; since when they are kept and where the
 * earlier ones are. */
static void test_site_lists_its_pbx_events(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  char *text = site_text(&f);
  want_in(text, "PBX events (last 3, newest first, times in Asia/Shanghai; received since this "
                "controller started at 2026-12-05 02:00:00; earlier ones are in the database (its "
                "link_events table))\n");
  want_in(text, "  2026-12-05 03:00:00  drift repaired (reported 42 s later): the PBX routed "
                "xizang, the agent's route is shaanxi\n");
  want_in(text, "  2026-12-05 02:50:00  route unconfirmed (not applied at the PBX): evil "
                "\\x1b[2J text\n");
  want_in(text, "  2026-12-05 02:40:00  pbx_from_the_future (at or before: its agent did not "
                "say when): ");
  assert_null(strchr(text, '\033'));
  free(text);

  f.s.n_pbx_events = 0;
  text = site_text(&f);
  want_in(text, "PBX events: none received since this controller started at 2026-12-05 02:00:00 "
                "(Asia/Shanghai); earlier ones are in the database (its link_events table)\n");
  free(text);

  f.s.pbx_events_since_ms = 0; /* a controller older than the field */
  text = site_text(&f);
  want_in(text, "PBX events: not sent by this controller (older than nircctl)");
  free(text);
}

static void test_site_json_lists_its_pbx_events(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *x = json_array_get(json_object_get(top, "sites"), 0);
  assert_int_equal(json_integer_value(json_object_get(x, "pbx_events_since_ms")), T0 - 3600000);
  json_t *a = json_object_get(x, "pbx_events");
  assert_int_equal(json_array_size(a), 3);
  json_t *e = json_array_get(a, 0);
  assert_int_equal(json_integer_value(json_object_get(e, "at_ms")), T0);
  assert_int_equal(json_integer_value(json_object_get(e, "late_ms")), 42000);
  assert_true(json_is_false(json_object_get(e, "at_or_before")));
  assert_string_equal(json_string_value(json_object_get(e, "event")), "pbx_drift_repaired");
  assert_true(json_is_true(json_object_get(json_array_get(a, 2), "at_or_before")));
  json_decref(top);
  /* A status row (or an older controller) has no such keys. */
  f.s.pbx_events_since_ms = 0;
  top = ctl_status_json(&f.st, &o);
  x = json_array_get(json_object_get(top, "sites"), 0);
  assert_null(json_object_get(x, "pbx_events"));
  assert_null(json_object_get(x, "pbx_events_since_ms"));
  json_decref(top);
}

/* A new leader's read of link_events (server_pbxload.c) merged with the
 * events received while it was in flight: each kept once (the read sees
 * the rows of those received too), in order of when they were seen,
 * PBXLOG_KEEP at most; the log then goes back to the read's window. */
static void test_loaded_events_merge_with_those_received(void **state) {
  (void)state;
  pbxlog_t l = {.since_ms = T0};
  assert_false(pbxlog_set_state(&l, PBXLOG_LOADED)); /* not asked */
  l.from_ms = T0 - 24 * 3600000LL;
  assert_true(pbxlog_set_state(&l, PBXLOG_LOADING));
  /* Received while the read is in flight, to the ms: a late one seen
   * before T0. */
  pbxlog_event_t live[2] = {ev_at(T0 + 60789, "pbx_drift_repaired"),
                            ev_at(T0 - 299995, "route_unconfirmed")};
  live[1].late_ms = 300250;
  for (int i = 0; i < 2; i++)
    assert_int_equal(pbxlog_add(&l, 7, &live[i]), 0);
  /* The read: the same two (link_events stores the second), and older
   * ones of the night. */
  pbxlog_event_t db[4] = {
      ev_at(T0 + 60000, "pbx_drift_repaired"), ev_at(T0 - 300000, "route_unconfirmed"),
      ev_at(T0 - 3600000, "pbx_drift_not_repaired"), ev_at(T0 - 7200000, "agent_reverted")};
  for (int i = 0; i < 4; i++)
    assert_int_equal(pbxlog_merge(&l, 7, &db[i]), 0);
  assert_true(pbxlog_set_state(&l, PBXLOG_LOADED));
  assert_int_equal(l.since_ms, T0 - 24 * 3600000LL);
  assert_false(pbxlog_set_state(&l, PBXLOG_LOADING)); /* once */
  const pbxlog_event_t *got;
  assert_int_equal(pbxlog_get(&l, 7, &got), 4);
  assert_int_equal(got[0].at_ms, T0 + 60789); /* the ones received, kept */
  assert_int_equal(got[1].at_ms, T0 - 299995);
  assert_int_equal(got[1].late_ms, 300250);
  assert_string_equal(got[2].event, "pbx_drift_not_repaired");
  assert_string_equal(got[3].event, "agent_reverted");
  /* A site with more than PBXLOG_KEEP in the window: the newest kept. */
  for (int i = 0; i < PBXLOG_KEEP + 2; i++) {
    pbxlog_event_t e = ev_at(T0 - i * 60000, "pbx_drift_repaired");
    assert_int_equal(pbxlog_merge(&l, 2, &e), 0);
  }
  assert_int_equal(pbxlog_get(&l, 2, &got), PBXLOG_KEEP);
  assert_int_equal(got[0].at_ms, T0);
  pbxlog_free(&l);
  /* A read that failed is tried again; it cannot end twice. */
  pbxlog_t f = {0};
  assert_true(pbxlog_set_state(&f, PBXLOG_LOADING));
  assert_true(pbxlog_set_state(&f, PBXLOG_LOAD_FAILED));
  assert_false(pbxlog_set_state(&f, PBXLOG_LOADED));
  assert_true(pbxlog_set_state(&f, PBXLOG_LOADING));
  assert_string_equal(pbxlog_state_name(f.state), "loading");
}

/* The detail as stored (server_pbx.c: the shown text, then "; " and
 * server_pbx_seen_words's words when not on time) read back as it was
 * shown when received, with its lateness. */
static void test_stored_detail_reads_back_as_received(void **state) {
  (void)state;
  char when[160], stored[600];
  pbxlog_event_t ev = {0};
  server_pbx_seen_t late = server_pbx_seen_ago(true, 42500, T0);
  assert_int_equal(late.state, SERVER_PBX_SEEN_LATE);
  server_pbx_seen_words(&late, when, sizeof when);
  snprintf(stored, sizeof stored,
           "the PBX routed xizang; seen here, the agent's route is shaanxi; %s", when);
  server_pbx_load_detail(stored, &ev);
  assert_string_equal(ev.detail, "the PBX routed xizang; seen here, the agent's route is shaanxi");
  assert_int_equal(ev.late_ms, 42000); /* to the second, as stored */
  assert_false(ev.at_or_before);

  server_pbx_seen_t unsaid = server_pbx_seen_ago(false, 0, T0);
  server_pbx_seen_words(&unsaid, when, sizeof when);
  snprintf(stored, sizeof stored, "the agent confirmed its route shaanxi at the PBX; %s", when);
  server_pbx_load_detail(stored, &ev);
  assert_string_equal(ev.detail, "the agent confirmed its route shaanxi at the PBX");
  assert_int_equal(ev.late_ms, 0);
  assert_true(ev.at_or_before);

  server_pbx_seen_t odd = server_pbx_seen_ago(true, UINT64_MAX / 2, T0);
  assert_int_equal(odd.state, SERVER_PBX_SEEN_IMPLAUSIBLE);
  server_pbx_seen_words(&odd, when, sizeof when);
  snprintf(stored, sizeof stored, "went home at revert_at; %s", when);
  server_pbx_load_detail(stored, &ev);
  assert_string_equal(ev.detail, "went home at revert_at");
  assert_true(ev.at_or_before);

  /* A drift the agent gave no detail of: its words, when in the middle. */
  server_pbx_seen_words(&late, when, sizeof when);
  snprintf(stored, sizeof stored,
           "PBX drift NOT repaired, %s: the PBX routed xizang, the agent's route is ?", when);
  server_pbx_load_detail(stored, &ev);
  assert_string_equal(ev.detail, "the PBX routed xizang, the agent's route is ?");
  assert_int_equal(ev.late_ms, 42000);
  server_pbx_load_detail("PBX drift repaired: the PBX routed a, the agent's route is b", &ev);
  assert_string_equal(ev.detail, "the PBX routed a, the agent's route is b");
  assert_int_equal(ev.late_ms, 0);
  assert_false(ev.at_or_before);

  /* On time, or words that only look like them: as stored. */
  server_pbx_load_detail("evil \\x1b[2J; seen by the agent at x, reported 5 s later", &ev);
  assert_string_equal(ev.detail, "evil \\x1b[2J; seen by the agent at x, reported 5 s later");
  assert_int_equal(ev.late_ms, 0);
}

static char *pbx_text(fixture_t *f) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_site_pbx_print(out, &f->s, "Asia/Shanghai");
  fclose(out);
  return text;
}

/* After a restart or a failover: since when the list goes, read from the
 * database; while it is read; and when reading it failed (never "none"
 * as if there were none). */
static void test_site_says_how_far_back_its_pbx_events_go(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  f.s.pbx_events_from = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_DATABASE;
  f.s.pbx_events_asked_ms = T0 - 600000;                  /* 02:50 */
  f.s.pbx_events_since_ms = T0 - 600000 - 24 * 3600000LL; /* the day before */
  char *text = pbx_text(&f);
  want_in(text, "PBX events (last 3, newest first, times in Asia/Shanghai; since 2026-12-04 "
                "02:50:00; the 24 h before this controller took the lead at 2026-12-05 02:50:00 "
                "read from the database, and those received since; older ones are in its "
                "link_events table)\n");
  free(text);
  f.s.n_pbx_events = 0;
  text = pbx_text(&f);
  want_in(text, "PBX events: none since 2026-12-04 02:50:00 (Asia/Shanghai); the 24 h before ");
  free(text);

  f.s.pbx_events_from = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOADING;
  f.s.pbx_events_since_ms = T0 - 3600000;
  text = pbx_text(&f);
  want_in(text, "PBX events: none received since this controller started at 2026-12-05 02:00:00 "
                "(Asia/Shanghai); earlier ones are still being read from the database (this "
                "controller took the lead at 2026-12-05 02:50:00): ask again in a few seconds\n");
  free(text);

  /* The database down at the takeover: the read waits for it, and says so. */
  f.s.pbx_events_load_error = "the database has been unreachable for 42 s";
  text = pbx_text(&f);
  want_in(text, "PBX events: none received since this controller started at 2026-12-05 02:00:00 "
                "(Asia/Shanghai); earlier ones are not read from the database yet: the database "
                "has been unreachable for 42 s; they are read when it answers (this controller "
                "took the lead at 2026-12-05 02:50:00), and are in its link_events table\n");
  free(text);

  f.s.pbx_events_from = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_LOAD_FAILED;
  f.s.pbx_events_load_error = "connection lost during query; outcome \033[2Junknown";
  f.s.n_pbx_events = 1;
  text = pbx_text(&f);
  want_in(text, "PBX events (last 1, newest first, times in Asia/Shanghai; received since this "
                "controller started at 2026-12-05 02:00:00; reading the earlier ones from the "
                "database failed (connection lost during query; outcome \\x1b[2Junknown): they "
                "are in its link_events table; this controller tries again every 30 s)\n");
  assert_null(strchr(text, '\033'));
  free(text);

  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *x = json_array_get(json_object_get(top, "sites"), 0);
  assert_string_equal(json_string_value(json_object_get(x, "pbx_events_from")), "load_failed");
  assert_int_equal(json_integer_value(json_object_get(x, "pbx_events_asked_ms")), T0 - 600000);
  assert_non_null(
      strstr(json_string_value(json_object_get(x, "pbx_events_load_error")), "connection lost"));
  json_decref(top);
  f.s.pbx_events_from = NIRC__PBX_EVENTS_FROM__PBX_EVENTS_FROM_UNSAID; /* an older controller */
  f.s.pbx_events_asked_ms = 0;
  f.s.pbx_events_load_error = "";
  top = ctl_status_json(&f.st, &o);
  x = json_array_get(json_object_get(top, "sites"), 0);
  assert_string_equal(json_string_value(json_object_get(x, "pbx_events_from")), "received");
  assert_true(json_is_null(json_object_get(x, "pbx_events_asked_ms")));
  assert_null(json_object_get(x, "pbx_events_load_error"));
  json_decref(top);
}

/* A new leader reads back every kind of PBX event server_pbx.c stores and
 * `nircctl site` lists: a kind left out of the query is missing after a
 * failover (the two agent_state kinds were, when they were added). */
static void test_the_read_back_asks_for_every_kind_listed(void **state) {
  (void)state;
  static const char *const kinds[] = {
      "pbx_drift_repaired",    "pbx_drift_not_repaired", "pbx_verify_failed",
      "route_unconfirmed",     "route_confirmed",        "agent_reverted",
      "agent_state_not_saved", "agent_state_saved",      "pbx_events_dropped"};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", kinds[i]);
    if (!strstr(PBXRECENT_SQL, quoted)) fail_msg("PBXRECENT_SQL does not ask for %s", kinds[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_keeps_the_newest_in_true_order),
      cmocka_unit_test(test_site_lists_its_pbx_events),
      cmocka_unit_test(test_site_json_lists_its_pbx_events),
      cmocka_unit_test(test_loaded_events_merge_with_those_received),
      cmocka_unit_test(test_stored_detail_reads_back_as_received),
      cmocka_unit_test(test_site_says_how_far_back_its_pbx_events_go),
      cmocka_unit_test(test_the_read_back_asks_for_every_kind_listed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
