/* Unit tests for when the controller records what a site's agent saw at
 * its PBX (controller/net/server_pbx.c server_pbx_seen): by the agent's
 * count since (PbxEvent.seen_ago_ms, monotonic) taken from the
 * controller's own clock, never by the agent host's clock (at_ms). Before,
 * every PbxEvent was recorded at its arrival: a drift the agent saw 10
 * minutes before its link came back was recorded as 10 minutes later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_late_event_is_placed_by_the_agents_count),
      cmocka_unit_test(test_event_on_time_says_nothing),
      cmocka_unit_test(test_unsaid_or_implausible_is_at_or_before_arrival),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
