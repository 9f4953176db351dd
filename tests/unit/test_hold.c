/* Unit tests for the hold decision of a controller that does not lead
 * (controller/net/hold.c, issue 15 point 6).
 *
 * What an agent relies on: a standby never sends it to a leader that
 * may be dead (it would only be refused there and come back, a second
 * full handshake, after a backoff), and it is sent to a live leader
 * within a few lease/4 periods; a leading controller welcomes what it
 * held, and one that stops lets everything go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "hold.h"

static hold_view_t named(uint64_t renewals) {
  hold_view_t v = {.leader_named = true, .renewals = renewals};
  return v;
}

static void test_a_named_leader_is_believed_after_two_renewals(void **state) {
  (void)state;
  hold_view_t v = named(7);
  assert_int_equal(hold_decide(&v, 7), HOLD_KEEP);
  v.renewals = 8;
  assert_int_equal(hold_decide(&v, 7), HOLD_KEEP);
  v.renewals = 9;
  assert_int_equal(hold_decide(&v, 7), HOLD_SEND);
  v.renewals = 30;
  assert_int_equal(hold_decide(&v, 7), HOLD_SEND);
}

static void test_electing_keeps_whatever_was_renewed(void **state) {
  (void)state;
  hold_view_t v = named(20);
  v.suspect = true; /* unrenewed for half a lease: maybe dead */
  assert_int_equal(hold_decide(&v, 1), HOLD_KEEP);
  v.suspect = false;
  v.leader_named = false; /* the lease stood still a whole lease, or none */
  assert_int_equal(hold_decide(&v, 1), HOLD_KEEP);
}

static void test_leading_admits_and_stopping_sends(void **state) {
  (void)state;
  hold_view_t v = {.leading = true};
  assert_int_equal(hold_decide(&v, 0), HOLD_ADMIT);
  v.leading = false;
  v.stopping = true;
  assert_int_equal(hold_decide(&v, 0), HOLD_SEND);
  v.leading = true; /* led and lost: stopping wins */
  assert_int_equal(hold_decide(&v, 0), HOLD_SEND);
}

/* A link is kept until a dead leader's election has surely ended: one
 * that came a lease/4 period before the standby read the last renewal
 * waits a lease from that read, up to a period for the next read, and
 * the work of taking over. With the whole range of leases nircd allows. */
static void test_the_hold_outlasts_the_slowest_election(void **state) {
  (void)state;
  for (uint64_t lease = 500; lease <= 60000; lease += 500) {
    uint64_t period = lease / 4;
    uint64_t slowest = period + lease + period;
    assert_true(hold_expire_after_ms(lease) >= slowest + 1000);
    /* and not for ever: an agent kept past it only waits longer */
    assert_true(hold_expire_after_ms(lease) <= 2 * lease + 2000);
  }
}

static void test_a_counter_behind_the_link_keeps_it(void **state) {
  (void)state;
  hold_view_t v = named(3);
  assert_int_equal(hold_decide(&v, 5), HOLD_KEEP);
}

/* A model of leader.c, to show why two renewals and not one. The leader
 * commits a renewal every MODEL_PERIOD ms from `phase` until it dies at
 * `death`; the standby reads the lease every MODEL_PERIOD ms from `rphase`
 * and counts a renewal when what it reads differs from its last read
 * (leader_standby_step). A link arrives at `arrive`. Sending it to the
 * leader is right only if a renewal was committed after it arrived (the
 * leader was alive then). Every combination of phases and times on a grid
 * of a few ms. */
#define MODEL_PERIOD  750
#define MODEL_HORIZON (8 * MODEL_PERIOD)

typedef struct {
  unsigned sends, wrong;
  int slowest_ms; /* longest wait before a send to a leader that never died */
} model_t;

static model_t model(uint64_t proof) {
  model_t m = {0};
  for (int phase = 0; phase < MODEL_PERIOD; phase += 30)
    for (int rphase = 0; rphase < MODEL_PERIOD; rphase += 30)
      for (int death = MODEL_PERIOD; death <= MODEL_HORIZON; death += 70)
        for (int arrive = MODEL_PERIOD; arrive < 4 * MODEL_PERIOD; arrive += 50) {
          int seen = -1; /* the renewal last read; -1: none yet */
          uint64_t renewals = 0, held = 0;
          bool holding = false;
          for (int t = rphase; t < MODEL_HORIZON; t += MODEL_PERIOD) {
            if (!holding && arrive <= t) {
              holding = true; /* came before this read */
              held = renewals;
            }
            int last = -1; /* the newest renewal committed by t */
            for (int r = phase; r <= t && r < death; r += MODEL_PERIOD)
              last = r;
            if (last != seen) {
              seen = last;
              renewals++;
            }
            if (!holding) continue;
            hold_view_t v = named(renewals);
            bool send = proof == HOLD_PROOF_RENEWALS ? hold_decide(&v, held) == HOLD_SEND
                                                     : renewals - held >= proof;
            if (!send) continue;
            m.sends++;
            bool alive_after = false;
            for (int r = phase; r <= t && r < death; r += MODEL_PERIOD)
              if (r > arrive) alive_after = true;
            if (!alive_after) m.wrong++;
            if (death >= MODEL_HORIZON && t - arrive > m.slowest_ms) m.slowest_ms = t - arrive;
            break;
          }
        }
  return m;
}

static void test_two_renewals_prove_a_leader_alive_after_the_link_came(void **state) {
  (void)state;
  model_t m = model(HOLD_PROOF_RENEWALS);
  assert_true(m.sends > 1000);
  assert_int_equal(m.wrong, 0);
  /* A live leader is believed within two reads of the lease. */
  assert_true(m.slowest_ms <= 2 * MODEL_PERIOD);
  /* One renewal would send links to a leader that died before they came. */
  assert_true(model(1).wrong > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_named_leader_is_believed_after_two_renewals),
      cmocka_unit_test(test_electing_keeps_whatever_was_renewed),
      cmocka_unit_test(test_leading_admits_and_stopping_sends),
      cmocka_unit_test(test_a_counter_behind_the_link_keeps_it),
      cmocka_unit_test(test_the_hold_outlasts_the_slowest_election),
      cmocka_unit_test(test_two_renewals_prove_a_leader_alive_after_the_link_came),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
