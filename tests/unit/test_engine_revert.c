/* Unit tests of an agent's own return home (PbxEvent REVERTED) at the
 * engine (controller/routing/engine_sites.c): the pure classification of
 * the event against the site's directive, case by case and at each
 * boundary (revert_at == now, versions equal, older and newer, the route
 * not known), without an engine. */
#include "engine-int.h" /* engine_revert_classify */
#include "engine.h"
#include "route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define NOW 1579752000000LL

/* hubei's route to shaanxi under (epoch, version), ending at revert_at. */
static route_t away(uint64_t epoch, uint64_t version, int64_t revert_at) {
  route_t r;
  route_home(&r, "hubei");
  snprintf(r.share[0].site, sizeof r.share[0].site, "shaanxi");
  r.epoch = epoch;
  r.version = version;
  r.revert_at_ms = revert_at;
  return r;
}

static route_t home_at(uint64_t epoch, uint64_t version) {
  route_t r;
  route_home(&r, "hubei");
  r.epoch = epoch;
  r.version = version;
  return r;
}

typedef struct {
  const char *what;
  bool known;
  route_t acked, target; /* the site's directive */
  uint64_t ev_epoch, ev_version;
  engine_revert_case_t want;
} revert_row_t;

static void test_the_return_home_is_classified_case_by_case(void **state) {
  (void)state;
  /* The move left: epoch 5, v3, ending at NOW + 60 s unless said. */
  const route_t moved = away(5, 3, NOW + 60000), moved_now = away(5, 3, NOW),
                moved_past = away(5, 3, NOW - 1), moved_next = away(5, 3, NOW + 1),
                moved_open = away(5, 3, 0), home3 = home_at(5, 3), end4 = home_at(5, 4),
                move4 = away(5, 4, NOW + 60000);
  const revert_row_t rows[] = {
      /* The route known here says nothing to compare with. */
      {"acked not known", false, moved, moved, 5, 3, ENGINE_REVERT_NOTHING},
      {"acked not known, revert_at passed", false, moved_past, moved_past, 5, 3,
       ENGINE_REVERT_NOTHING},
      /* Versions: only the one acknowledged counts. */
      {"event older than acked (version)", true, move4, move4, 5, 3, ENGINE_REVERT_NOTHING},
      {"event newer than acked (version)", true, moved, moved, 5, 4, ENGINE_REVERT_NOTHING},
      {"event of an older epoch", true, moved, moved, 4, 3, ENGINE_REVERT_NOTHING},
      {"event of a newer epoch", true, moved, moved, 6, 3, ENGINE_REVERT_NOTHING},
      /* Home already by the agent's word. */
      {"home already, nothing newer", true, home3, home3, 5, 3, ENGINE_REVERT_NOTHING},
      {"home already, the end pending or failed", true, home3, end4, 5, 3,
       ENGINE_REVERT_RESEND_END},
      /* On time here: revert_at <= now, the boundary included. */
      {"revert_at == now, end not carried out", true, moved_now, moved_now, 5, 3,
       ENGINE_REVERT_ON_TIME},
      {"revert_at == now, end carried out", true, moved_now, end4, 5, 3, ENGINE_REVERT_AFTER_END},
      {"revert_at passed, end not carried out", true, moved_past, moved_past, 5, 3,
       ENGINE_REVERT_ON_TIME},
      {"revert_at passed, end carried out", true, moved_past, end4, 5, 3, ENGINE_REVERT_AFTER_END},
      /* Early here: one millisecond is early. */
      {"revert_at 1 ms ahead", true, moved_next, moved_next, 5, 3, ENGINE_REVERT_EARLY},
      {"revert_at 60 s ahead", true, moved, moved, 5, 3, ENGINE_REVERT_EARLY},
      {"revert_at ahead, a newer target", true, moved, move4, 5, 3, ENGINE_REVERT_EARLY},
      {"no revert_at (open-ended move)", true, moved_open, moved_open, 5, 3, ENGINE_REVERT_EARLY},
  };
  for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
    const revert_row_t *r = &rows[k];
    site_dir_t d;
    memset(&d, 0, sizeof d);
    d.known = r->known;
    d.acked = r->acked;
    d.target = r->target;
    route_t home = home_at(r->ev_epoch, r->ev_version);
    engine_revert_case_t got = engine_revert_classify(&d, &home, NOW);
    if (got != r->want)
      fail_msg("%s: %s, want %s", r->what, engine_revert_case_name(got),
               engine_revert_case_name(r->want));
  }
  assert_string_equal(engine_revert_case_name((engine_revert_case_t)99), "?");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_return_home_is_classified_case_by_case),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
