/* Unit tests of route changes the engine learns of late (controller/
 * routing/engine_stable.c, engine_ack.c), found missing from the audit
 * trail in session 16: a site whose agent went home by its own revert_at
 * while its link was down and its cutover was extended meanwhile, and the
 * zone the engine's own times are said in. Driven through the engine's
 * world (tests/unit/support/world.c), like test_engine_said. */
#include "engine.h"
#include "engine-int.h"
#include "route.h"
#include "sites.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* An engine leading epoch 5, every site connected and home, saying its
 * times in the operations room's zone. */
static engine_t *leading_in(world_t *w, const char *ops_tz) {
  engine_opts_t o = world_opts(false);
  snprintf(o.ops_tz, sizeof o.ops_tz, "%s", ops_tz);
  engine_t *e = world_engine_with(w, &o);
  assert_int_equal(engine_load_rules(e, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(e, 5000);
  world_connect_all(w, e, NULL);
  return e;
}

/* The engine says its own times (an expiry's) in the operations room's
 * zone and names it; with none configured, in UTC, named so. Before,
 * they were UTC ("...Z") while nircctl shows the rest in its zone. */
static void test_an_expiry_is_said_in_the_operators_zone(void **state) {
  (void)state;
  const char *zones[] = {"Asia/Shanghai", ""};
  const char *want[] = {"expired at 2020-01-23T12:01:00+08:00 (Asia/Shanghai business time)",
                        "expired at 2020-01-23T04:01:00Z (UTC business time)"};
  for (size_t z = 0; z < 2; z++) {
    world_t *w = world_new();
    engine_t *e = leading_in(w, zones[z]);
    world_cutover_for(w, e, 9, "hubei", "shaanxi", 60000);
    world_ack(w, e, 0, NULL);
    world_flush(w);
    for (int k = 0; k < 400 && world_count_rec(w, ENGINE_REC_AUDIT, "expire") == 0; k++)
      world_tick(w, e, 200);
    const world_rec_t *x = NULL;
    for (size_t k = 0; k < w->n_rec; k++)
      if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "expire") == 0)
        x = &w->rec[k];
    assert_non_null(x);
    if (!strstr(x->detail, want[z])) fail_msg("no '%s' in %s", want[z], x->detail);
    world_flush(w);
    engine_free(e);
    world_free(w);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_expiry_is_said_in_the_operators_zone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
