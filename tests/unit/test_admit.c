/* Unit tests for admission at the unauthenticated cap
 * (controller/net/admit.c, issue 15 point 6).
 *
 * What a storm and a flood need: below the cap every connection is
 * accepted; at the cap a stalled link gives way; otherwise newcomers wait
 * in the backlog while handshakes complete (no accept-and-close that sends
 * agents into a growing backoff, no eviction of handshakes in progress),
 * and are shed at once when nothing has completed for ADMIT_STALLED_MS (a
 * flood of half-open connections must not queue agents behind it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "admit.h"

#define CAP 256
#define T0  1000000

static admit_state_t full(void) {
  admit_state_t s = {.nunauth = CAP,
                     .cap = CAP,
                     .stalled = false,
                     .now_ms = T0,
                     .last_auth_ms = 0,
                     .full_since_ms = T0};
  return s;
}

static void test_below_the_cap_accepts(void **state) {
  (void)state;
  admit_state_t s = full();
  s.nunauth = CAP - 1;
  s.stalled = true; /* no eviction needed while a place is free */
  assert_int_equal(admit_decide(&s), ADMIT_ACCEPT);
}

static void test_storm_waits_while_handshakes_complete(void **state) {
  (void)state;
  admit_state_t s = full();
  /* The cap just filled: the first handshakes have not had time to end. */
  assert_int_equal(admit_decide(&s), ADMIT_WAIT);
  /* Long full, but a handshake completed a moment ago. */
  s.full_since_ms = T0 - 30000;
  s.last_auth_ms = T0 - 5;
  assert_int_equal(admit_decide(&s), ADMIT_WAIT);
  s.last_auth_ms = T0 - (ADMIT_FLOOD_MS - 1);
  assert_int_equal(admit_decide(&s), ADMIT_WAIT);
  /* Long since the last completion, but bytes arrive on queued links. */
  s.last_auth_ms = T0 - 30000;
  s.queue_active = true;
  assert_int_equal(admit_decide(&s), ADMIT_WAIT);
}

static void test_stalled_link_gives_way(void **state) {
  (void)state;
  admit_state_t s = full();
  s.stalled = true;
  assert_int_equal(admit_decide(&s), ADMIT_EVICT);
  s.last_auth_ms = T0 - 1; /* even while others complete */
  assert_int_equal(admit_decide(&s), ADMIT_EVICT);
}

static void test_flood_is_shed_when_nothing_completes(void **state) {
  (void)state;
  admit_state_t s = full();
  /* Silent since the cap filled a quarter of a second ago. */
  s.full_since_ms = T0 - ADMIT_FLOOD_MS;
  assert_int_equal(admit_decide(&s), ADMIT_SHED);
  /* The last completion long ago counts no more than none. */
  s.last_auth_ms = T0 - 10 * ADMIT_STALLED_MS;
  assert_int_equal(admit_decide(&s), ADMIT_SHED);
}

/* A half-open connection gives way after a second; a handshake in
 * progress (its ClientHello arrived) only after ADMIT_SLOW_MS of silence. */
static void test_stalled_depends_on_progress(void **state) {
  (void)state;
  assert_false(admit_stalled(false, ADMIT_STALLED_MS - 1));
  assert_true(admit_stalled(false, ADMIT_STALLED_MS));
  assert_false(admit_stalled(true, ADMIT_STALLED_MS));
  assert_false(admit_stalled(true, ADMIT_SLOW_MS - 1));
  assert_true(admit_stalled(true, ADMIT_SLOW_MS));
}

/* A slow storm (peers on a loaded machine): nothing completed for a
 * while, but bytes still arrive on the queued handshakes: wait, do not
 * shed into the agents' backoff. */
static void test_slow_storm_is_not_shed(void **state) {
  (void)state;
  admit_state_t s = full();
  s.full_since_ms = T0 - 10 * ADMIT_STALLED_MS;
  s.queue_active = true;
  assert_int_equal(admit_decide(&s), ADMIT_WAIT);
  s.queue_active = false;
  assert_int_equal(admit_decide(&s), ADMIT_SHED);
}

/* A link that sent its ClientHello and waits for its peer's next flight is
 * progress until it may be evicted, not only for ADMIT_STALLED_MS: the
 * peers of a storm answer late when they share a loaded machine, and
 * taking that for a flood shed 9,700 of 10,000 agents of a cold start. A
 * link that sent nothing is never progress (the half-open flood). */
static void test_slow_peer_is_progress_until_it_may_be_evicted(void **state) {
  (void)state;
  assert_true(admit_in_progress(true, 0));
  assert_true(admit_in_progress(true, ADMIT_STALLED_MS));
  assert_true(admit_in_progress(true, 2 * ADMIT_STALLED_MS));
  assert_true(admit_in_progress(true, ADMIT_SLOW_MS - 1));
  assert_false(admit_in_progress(true, ADMIT_SLOW_MS));
  assert_false(admit_in_progress(false, 0));
  assert_false(admit_in_progress(false, ADMIT_STALLED_MS - 1));
  /* Never both: a link counts either as progress or as stalled. */
  for (uint64_t idle = 0; idle < 2 * ADMIT_SLOW_MS; idle += 50) {
    assert_false(admit_in_progress(true, idle) && admit_stalled(true, idle));
    assert_true(admit_in_progress(true, idle) || admit_stalled(true, idle));
  }
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(admit_action_name(ADMIT_WAIT), "wait");
  assert_string_equal(admit_action_name(ADMIT_SHED), "shed");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_below_the_cap_accepts),
      cmocka_unit_test(test_storm_waits_while_handshakes_complete),
      cmocka_unit_test(test_stalled_link_gives_way),
      cmocka_unit_test(test_flood_is_shed_when_nothing_completes),
      cmocka_unit_test(test_stalled_depends_on_progress),
      cmocka_unit_test(test_slow_storm_is_not_shed),
      cmocka_unit_test(test_slow_peer_is_progress_until_it_may_be_evicted),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
