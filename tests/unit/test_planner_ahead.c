/* Unit tests for the overflow check on the load ahead
 * (controller/routing/planner_overflow.c): a spill that starts or grows
 * must fit its hub on the next half hour's forecast of everything the hub
 * would carry, not of the spill alone. The spill's own rise and the hub's
 * are in test_planner.c (test_overflow_checked_on_the_load_ahead). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"
#include "support/planworld.h"

/* henan (50 agents, 10 Erl of its own) takes hunan by `by` (a night
 * schedule, or hunan's own spill of 300 per mille, engaged before), and
 * hubei's spill engages now. Nobody's forecast is above the live load but
 * hunan's, which is `hunan_ahead` Erl; hunan_ahead < 0: no forecast. */
typedef enum { BY_SCHEDULE, BY_OVERFLOW } ahead_by_t;

static pworld_t *ahead_world(ahead_by_t by, double hunan_ahead) {
  pworld_t *w = pworld_new(NIGHT_NOW);
  plan_site_t *all[] = {add_site(w, "hubei", false, 19, 240, 20),
                        add_site(w, "henan", true, 10, 240, 50),
                        add_site(w, "hunan", false, 10, 240, 10)};
  for (int k = 0; k < 3; k++) {
    all[k]->ahead_known = true;
    all[k]->ahead_cps = all[k]->demand_cps;
    all[k]->ahead_aht_s = 240;
  }
  all[2]->ahead_known = hunan_ahead >= 0;
  all[2]->ahead_cps = hunan_ahead / 240;
  if (by == BY_SCHEDULE) {
    add_night(w, 1, "hunan", "henan", "Asia/Shanghai");
  } else {
    add_overflow(w, 1, "hunan", "henan");
    all[2]->wait_s = 61;
    snprintf(all[2]->cur_hub, sizeof all[2]->cur_hub, "henan");
    w->state[0] = (planner_overflow_state_t){1, true, w->now_ms - 60000, 300};
    w->state[1] = (planner_overflow_state_t){.rule_id = 2};
    w->have_state = true;
  }
  add_overflow(w, 2, "hubei", "henan");
  all[0]->wait_s = 61;
  return w;
}

/* The check ahead counts hunan at its forecast: 40 Erl the night (at
 * 10 live), 120 the spill (36 at its share, 3 live), so hubei's spill,
 * which fits live, does not fit the next half hour (before, hunan
 * counted at its live load and hubei spilled). */
static void test_overflow_ahead_counts_the_hubs_other_sources(void **state) {
  (void)state;
  for (int by = BY_SCHEDULE; by <= BY_OVERFLOW; by++) {
    pworld_t *w = ahead_world((ahead_by_t)by, by == BY_SCHEDULE ? 40 : 120);
    plan_t p;
    plan_checked(w, &p);
    assert_route(&p, "hunan", by == BY_SCHEDULE ? "henan:1000" : "henan:300,hunan:700");
    assert_home(&p, "hubei");
    const plan_alarm_t *a = find_alarm(&p, PLAN_ALARM_CAPACITY, "hubei");
    assert_non_null(a);
    assert_non_null(strstr(a->message, "for the load forecast for the next half hour"));
    planner_free(&p);
    free(w);
  }
}

/* hunan has no forecast: the spill goes on the live check, and henan's
 * row says the rise could not be checked, naming hunan; with hunan's
 * forecast not above its live load it is checked, on the live load. */
static void test_overflow_ahead_names_a_source_with_no_forecast(void **state) {
  (void)state;
  for (int by = BY_SCHEDULE; by <= BY_OVERFLOW; by++)
    for (int known = 0; known <= 1; known++) {
      pworld_t *w = ahead_world((ahead_by_t)by, known ? 10 : -1);
      plan_t p;
      plan_checked(w, &p);
      const plan_route_t *r = planner_route(&p, "hubei");
      assert_false(route_is_home(r));
      const plan_capacity_t *pc = find_capacity(&p, "henan");
      assert_non_null(pc);
      if (known) {
        assert_int_equal(pc->load_on.basis, PLAN_LOAD_LIVE);
      } else {
        assert_int_equal(pc->load_on.basis, PLAN_LOAD_UNCHECKED);
        assert_non_null(strstr(pc->load_on.note, "hunan: no forecast"));
        assert_true(pc->load_on.forecast_erl < 0);
      }
      planner_free(&p);
      free(w);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_overflow_ahead_counts_the_hubs_other_sources),
      cmocka_unit_test(test_overflow_ahead_names_a_source_with_no_forecast),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
