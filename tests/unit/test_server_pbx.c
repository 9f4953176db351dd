/* Unit tests for when the controller records what a site's agent saw at
 * its PBX (controller/net/server_pbx.c server_pbx_seen): by the agent's
 * count since (PbxEvent.seen_ago_ms, monotonic) taken from the
 * controller's own clock, never by the agent host's clock (at_ms). Before,
 * every PbxEvent was recorded at its arrival: a drift the agent saw 10
 * minutes before its link came back was recorded as 10 minutes later.
 * And the link events' budget per site counts writes as they come: an
 * event stored at its (earlier) time must not refill it backwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "server.h"

#define ARRIVAL 1796673600000LL /* 2026-12-07 20:00:00 UTC */

static Nirc__PbxEvent drift(int64_t host_at_ms) {
  Nirc__PbxEvent ev = NIRC__PBX_EVENT__INIT;
  ev.kind = NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_DRIFT_REPAIRED;
  ev.at_ms = host_at_ms;
  return ev;
}

/* Seen 10 min before the link came back, on a host 5 min ahead: recorded
 * 10 min before arrival, with the lateness in words. */
static void test_late_event_is_placed_by_the_agents_count(void **state) {
  (void)state;
  Nirc__PbxEvent ev = drift(ARRIVAL - 600000 + 300000);
  ev.seen_ago_said = true;
  ev.seen_ago_ms = 600000;
  server_pbx_seen_t s = server_pbx_seen(&ev, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_LATE);
  assert_int_equal(s.at_ms, ARRIVAL - 600000);
  assert_int_equal(s.late_ms, 600000);
  char w[200];
  server_pbx_seen_words(&s, w, sizeof w);
  assert_string_equal(w, "seen by the agent at 2026-12-07T19:50:00Z, reported 600 s later (its "
                         "link was down)");
}

/* Sent at once: its arrival, within a trip; nothing to say. */
static void test_event_on_time_says_nothing(void **state) {
  (void)state;
  Nirc__PbxEvent ev = drift(ARRIVAL + 3600000); /* a host an hour ahead */
  ev.seen_ago_said = true;
  ev.seen_ago_ms = 40;
  server_pbx_seen_t s = server_pbx_seen(&ev, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_ON_TIME);
  assert_int_equal(s.at_ms, ARRIVAL - 40);
  char w[200] = "x";
  server_pbx_seen_words(&s, w, sizeof w);
  assert_string_equal(w, "");
  /* A trip is 2 s: 2.5 s is late. */
  ev.seen_ago_ms = SERVER_PBX_TRIP_MS + 500;
  assert_int_equal(server_pbx_seen(&ev, ARRIVAL).state, SERVER_PBX_SEEN_LATE);
}

/* An older agent does not say: recorded at arrival, and the words say
 * only "at or before" (its at_ms is not believed). So does a count that
 * cannot be. */
static void test_unsaid_or_implausible_is_at_or_before_arrival(void **state) {
  (void)state;
  Nirc__PbxEvent ev = drift(ARRIVAL - 600000);
  server_pbx_seen_t s = server_pbx_seen(&ev, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_UNSAID);
  assert_int_equal(s.at_ms, ARRIVAL);
  char w[200];
  server_pbx_seen_words(&s, w, sizeof w);
  assert_non_null(strstr(w, "at or before it was reported"));
  assert_non_null(strstr(w, "older than this controller"));
  ev.seen_ago_said = true;
  ev.seen_ago_ms = 40ULL * 86400000; /* 40 days */
  s = server_pbx_seen(&ev, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_IMPLAUSIBLE);
  assert_int_equal(s.at_ms, ARRIVAL);
  ev.seen_ago_ms = UINT64_MAX;
  s = server_pbx_seen(&ev, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_IMPLAUSIBLE);
  server_pbx_seen_words(&s, w, sizeof w);
  assert_non_null(strstr(w, "at or before it was reported"));
}

/* Brief s20I: a Hello's route_unconfirmed_ago_ms is placed the same way;
 * its words say when, and that the Hello was the first this controller
 * heard of it (not "its link was down": it may have just taken over). */
static void test_hello_count_is_placed_and_said(void **state) {
  (void)state;
  server_pbx_seen_t s = server_pbx_seen_ago(true, 600000, ARRIVAL);
  assert_int_equal(s.state, SERVER_PBX_SEEN_LATE);
  assert_int_equal(s.at_ms, ARRIVAL - 600000);
  char w[200];
  server_pbx_hello_words(&s, w, sizeof w);
  assert_string_equal(w, "seen by the agent at 2026-12-07T19:50:00Z, 600 s before its Hello to "
                         "this controller");
  s = server_pbx_seen_ago(true, 40, ARRIVAL); /* just failed */
  assert_int_equal(s.state, SERVER_PBX_SEEN_ON_TIME);
  server_pbx_hello_words(&s, w, sizeof w);
  assert_string_equal(w, "");
  s = server_pbx_seen_ago(false, 600000, ARRIVAL); /* an older agent */
  assert_int_equal(s.state, SERVER_PBX_SEEN_UNSAID);
  assert_int_equal(s.at_ms, ARRIVAL);
  server_pbx_hello_words(&s, w, sizeof w);
  assert_string_equal(w, "");
}

static void test_closed(void *arg) {
  *(bool *)arg = true;
}

/* A site's event 10 min late, after an event on time: stored, not counted
 * over the site's budget. Before, the budget was refilled at the event's
 * time, 10 min back: 100 writes owed, so the late drift (the event this
 * is all about) was counted in nirc_link_events_suppressed_total and not
 * stored. No database answers here: whether it was stored is whether it
 * was left out. */
static void test_late_event_is_not_left_out(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  server_t *srv = calloc(1, sizeof *srv);
  assert_non_null(srv);
  assert_int_equal(db_open(&loop, "host=127.0.0.1 port=1 connect_timeout=1", &srv->db), 0);
  int64_t now = clock_real_ms();
  server_record_event(srv, "site", "site:hubei", "hubei", "127.0.0.1:1", "hello", "");
  server_record_event_at(srv, now - 600000, "site", "site:hubei", "hubei", "127.0.0.1:1",
                         "pbx_drift_repaired", "the PBX routed hubei 100% instead of shaanxi");
  assert_int_equal(srv->link_events_suppressed, 0);
  bool closed = false;
  db_close(srv->db, test_closed, &closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(closed);
  free(srv->evbudget);
  free(srv);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* What a site's agent says of its state file (Hello.state_not_saved_why,
 * PbxEvent STATE_NOT_SAVED) is kept, escaped, for the site's `agent`
 * alarm, whose words say what it means first and keep the agent's fix;
 * "" (an older agent, or one that writes again) clears it. Before, the
 * controller did not know. */
static void test_agent_state_is_kept_for_its_alarm(void **state) {
  (void)state;
  server_t *srv = calloc(1, sizeof *srv);
  site_t *site = calloc(1, sizeof *site);
  assert_non_null(srv);
  assert_non_null(site);
  snprintf(site->slug, sizeof site->slug, "hubei");
  server_pbx_agent_state(srv, site,
                         "/var/lib/nirc/state.json\x1b[2J: write failed: No space left on "
                         "device: the file system is full: free space on this host");
  assert_null(strchr(site->agent_state_why, 0x1b)); /* a peer's bytes are never shown raw */
  assert_non_null(strstr(site->agent_state_why, "free space on this host"));
  char w[ALARM_MESSAGE_MAX];
  server_pbx_state_words(site->agent_state_why, w, sizeof w);
  assert_ptr_equal(strstr(w, "its agent cannot write its state file: a route sent to it fails"), w);
  assert_non_null(strstr(w, "No space left on device"));
  server_pbx_agent_state(srv, site, "");
  assert_string_equal(site->agent_state_why, "");
  server_pbx_agent_state(srv, site, NULL);
  assert_string_equal(site->agent_state_why, "");
  assert_string_equal(alarm_kind_name(ALARM_AGENT), "agent");
  free(site);
  free(srv);
}

/* The `agent` alarm's words and severity: a state file the agent cannot
 * write is critical; a certificate ending within 30 days is major, within
 * 7 critical, with the date and the fix; both are said, the shorter first.
 * Before, a site's certificate ended unannounced: its link died, and only
 * site_down said so. */
static void test_agent_alarm_words(void **state) {
  (void)state;
  site_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  snprintf(s->slug, sizeof s->slug, "hubei");
  char w[ALARM_MESSAGE_MAX];
  bool critical = true;
  const int64_t day = 86400000;
  assert_false(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  s->agent_cert_not_after_ms = ARRIVAL + 31 * day; /* far enough */
  assert_false(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));

  s->agent_cert_not_after_ms = ARRIVAL + 12 * day + 3600000;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_false(critical);
  assert_string_equal(w, "its agent's certificate expires in 12 days (2026-12-19T21:00:00Z): "
                         "issue a new one (deploy/pki.sh) and send the agent SIGHUP; cleared "
                         "once it reconnects with it");
  s->agent_cert_not_after_ms = ARRIVAL + 6 * day;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_true(critical);
  assert_non_null(strstr(w, "expires in 6 days"));
  s->agent_cert_not_after_ms = ARRIVAL + 5 * 3600000;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_non_null(strstr(w, "expires in 5 hours"));
  s->agent_cert_not_after_ms = ARRIVAL - 1;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_non_null(strstr(w, "has expired"));

  /* Both: the certificate first, then the state file. */
  s->agent_cert_not_after_ms = ARRIVAL + 20 * day;
  snprintf(s->agent_state_why, sizeof s->agent_state_why, "x: write failed: No space left");
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_true(critical);
  assert_ptr_equal(strstr(w, "its agent's certificate expires in 20 days"), w);
  assert_non_null(strstr(w, "; its agent cannot write its state file"));
  /* A PBX its reports call unreadable: after a minute, with the agent's
   * words escaped; alone, major. */
  s->agent_cert_not_after_ms = 0;
  s->agent_state_why[0] = '\0';
  s->has_report = true;
  s->last.pbx_unreadable = true;
  snprintf(s->last.pbx_error, sizeof s->last.pbx_error, "kamailio RPC: connect\x1b[2J refused");
  s->pbx_unreadable_since_ms = ARRIVAL - 59000;
  assert_false(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  s->pbx_unreadable_since_ms = ARRIVAL - 75000;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_false(critical);
  assert_ptr_equal(strstr(w, "its agent cannot read its PBX for 75 s (its load is unknown): "
                             "kamailio RPC: connect"),
                   w);
  assert_null(strchr(w, 0x1b));
  s->pbx_unreadable_since_ms = 0;
  snprintf(s->agent_state_why, sizeof s->agent_state_why, "x: write failed: No space left");
  /* The state file alone. */
  s->agent_cert_not_after_ms = 0;
  assert_true(server_pbx_agent_words(s, ARRIVAL, w, sizeof w, &critical));
  assert_true(critical);
  assert_ptr_equal(strstr(w, "its agent cannot write its state file"), w);
  free(s);
}

/* Brief s21S: an agent's EVENTS_DROPPED heard 60 s after it saw the
 * first one lost: how many, between when (placed by its counts, not its
 * host's clock), and where to look. Before, the kind was logged as
 * unknown and ignored: nothing said that events were missing. */
static void test_dropped_events_are_said(void **state) {
  (void)state;
  Nirc__PbxEvent ev = NIRC__PBX_EVENT__INIT;
  ev.kind = NIRC__PBX_EVENT_KIND__PBX_EVENT_KIND_EVENTS_DROPPED;
  ev.at_ms = ARRIVAL + 3600000; /* a host clock an hour ahead: not used */
  ev.dropped = 4;
  ev.seen_ago_said = true;
  ev.seen_ago_ms = 60000;
  ev.dropped_last_ago_ms = 57000;
  char w[400];
  server_pbx_dropped_words(&ev, ARRIVAL, w, sizeof w);
  assert_string_equal(w, "4 PBX events seen between 2026-12-07T19:59:00Z and 2026-12-07T19:59:03Z "
                         "were not kept by the agent (its queue of 16 was full while its link "
                         "was down): see the agent host's log");
  ev.dropped = 1;
  ev.dropped_last_ago_ms = 60000;
  server_pbx_dropped_words(&ev, ARRIVAL, w, sizeof w);
  assert_ptr_equal(strstr(w, "1 PBX event seen at 2026-12-07T19:59:00Z was not kept"), w);
  ev.seen_ago_said = false;
  server_pbx_dropped_words(&ev, ARRIVAL, w, sizeof w);
  assert_ptr_equal(strstr(w, "1 PBX event seen before it was reported"), w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_late_event_is_placed_by_the_agents_count),
      cmocka_unit_test(test_event_on_time_says_nothing),
      cmocka_unit_test(test_unsaid_or_implausible_is_at_or_before_arrival),
      cmocka_unit_test(test_late_event_is_not_left_out),
      cmocka_unit_test(test_hello_count_is_placed_and_said),
      cmocka_unit_test(test_agent_state_is_kept_for_its_alarm),
      cmocka_unit_test(test_agent_alarm_words),
      cmocka_unit_test(test_dropped_events_are_said),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
