/* Unit tests for where nirc-swarm's simulated agent goes next
 * (tests/tools/swarm_retry.c).
 *
 * Issue 15, point 7: an agent whose controller list starts with the
 * standby, and which has used its redirects (the leader it was sent to
 * shed its handshake), rotated on from the leader's address back to the
 * standby, was named the leader again, rotated again, and never reached
 * the leader. It must go to the named leader after a backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include "../tools/swarm_retry.h"

enum { STANDBY = 0, LEADER = 1, NADDRS = 2 };

static void test_fresh_redirect_followed_at_once(void **state) {
  (void)state;
  sw_retry_t r = sw_retry_next(true, LEADER, 0, LEADER, NADDRS);
  assert_int_equal(r.idx, LEADER);
  assert_true(r.use_redirect);
  assert_true(r.at_once);
  assert_int_equal(r.redirects, 1);
}

static void test_used_up_redirects_still_go_to_the_leader(void **state) {
  (void)state;
  sw_retry_t r = sw_retry_next(true, LEADER, SW_MAX_REDIRECTS, LEADER, NADDRS);
  assert_int_equal(r.idx, LEADER);
  assert_true(r.use_redirect);
  assert_false(r.at_once); /* after a backoff: two standbys naming each other cannot spin */
  assert_int_equal(r.redirects, SW_MAX_REDIRECTS);
}

/* The whole loop of point 7: the standby (first in the list) names the
 * leader every time, the leader sheds every handshake. The agent must
 * keep reaching the leader, not settle on the standby. */
static void test_standby_first_does_not_trap_the_agent(void **state) {
  (void)state;
  unsigned idx = STANDBY, redirects = 0, at_leader = 0;
  bool redirect = false;
  for (int attempt = 0; attempt < 40; attempt++) {
    /* The attempt goes to idx (a redirect in the list points idx at it). */
    if (idx == STANDBY) {
      redirect = true; /* NOT_LEADER, hint: the leader */
      idx = LEADER;
    } else {
      at_leader++;
      redirect = false; /* shed: closed in the handshake, no hint */
    }
    sw_retry_t r = sw_retry_next(redirect, idx, redirects, idx, NADDRS);
    idx = r.idx;
    redirects = r.redirects;
  }
  /* Every other attempt at least reaches the leader. */
  assert_true(at_leader >= 19);
}

static void test_no_hint_rotates(void **state) {
  (void)state;
  sw_retry_t r = sw_retry_next(false, 0, 0, 1, 3);
  assert_int_equal(r.idx, 2);
  assert_false(r.use_redirect);
  assert_false(r.at_once);
  r = sw_retry_next(false, 0, 0, 2, 3);
  assert_int_equal(r.idx, 0);
}

/* A hint outside the list (hint_idx == naddrs) keeps idx and uses the
 * hinted address itself. */
static void test_hint_outside_the_list(void **state) {
  (void)state;
  sw_retry_t r = sw_retry_next(true, NADDRS, 0, STANDBY, NADDRS);
  assert_int_equal(r.idx, STANDBY);
  assert_true(r.use_redirect);
  assert_true(r.at_once);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_redirect_followed_at_once),
      cmocka_unit_test(test_used_up_redirects_still_go_to_the_leader),
      cmocka_unit_test(test_standby_first_does_not_trap_the_agent),
      cmocka_unit_test(test_no_hint_rotates),
      cmocka_unit_test(test_hint_outside_the_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
