/* Schedules that would move calls in a circle (rules_schedule_cycle,
 * controller/routing/rules.c): refused at add and enable, with the other
 * schedules, the circle and the time named, only when the windows of every
 * schedule of the circle are in force together. The audit's case (F15):
 * xian-away moves shaanxi to henan and henan-away henan to shaanxi, both
 * 23:00-01:00 daily; it was accepted, and at run time one of them stood
 * with an alarm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"

#define DAILY 0x7f

static void list(slug_list_t *l, const char *csv) {
  char err[256] = "";
  if (rules_parse_slug_list(csv, l, err, sizeof err) != 0) fail_msg("list '%s': %s", csv, err);
}

static void sched(schedule_t *s, uint64_t id, const char *name, const char *sources,
                  const char *hubs, const char *start, const char *end, uint8_t days) {
  memset(s, 0, sizeof *s);
  s->id = id;
  snprintf(s->name, sizeof s->name, "%s", name);
  list(&s->sources, sources);
  list(&s->hubs, hubs);
  assert_int_equal(rules_parse_hhmm(start, &s->start_min), 0);
  assert_int_equal(rules_parse_hhmm(end, &s->end_min), 0);
  s->days = days;
  snprintf(s->tz, sizeof s->tz, "Asia/Shanghai");
  s->wave_size = 5;
  s->enabled = true;
}

static void has(const char *why, const char *want) {
  if (!strstr(why, want)) fail_msg("no '%s' in: %s", want, why);
}

static void test_two_way_circle_refused(void **state) {
  (void)state;
  schedule_t have[2], add;
  char why[512];
  sched(&have[0], 1, "night", "hubei,hunan", "shaanxi,henan", "22:00", "08:00", DAILY);
  sched(&have[1], 2, "xian-away", "shaanxi", "henan", "23:00", "01:00", DAILY);
  /* night and xian-away: a chain (hubei -> shaanxi -> henan), no circle. */
  assert_int_equal(rules_schedule_cycle(&have[1], have, 1, why, sizeof why), 0);
  sched(&add, 0, "henan-away", "henan", "shaanxi", "23:00", "01:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 1);
  has(why, "would move calls in a circle with schedule 'xian-away': henan -> shaanxi "
           "('henan-away'), shaanxi -> henan ('xian-away'), all in force from mon 23:00 to tue "
           "01:00 (Asia/Shanghai); a site cannot send its calls away");
  has(why, "drop one of these hubs, or move a window so that they do not overlap");
  assert_true(strlen(why) < 480); /* fits a refusal (512 bytes) with its prefix */
  /* Any hub counts: henan's calls could go to shaanxi whenever guangdong
   * cannot take them. */
  list(&add.hubs, "guangdong,shaanxi");
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 1);
  has(why, "henan -> shaanxi ('henan-away'), shaanxi -> henan ('xian-away')");
  /* A hub no other schedule moves: no circle. */
  list(&add.hubs, "guangdong");
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 0);
  /* hubei is night's source: henan -> hubei -> henan. */
  list(&add.hubs, "hubei");
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 1);
  has(why, "with schedule 'night': henan -> hubei ('henan-away'), hubei -> henan ('night')");
}

/* Only windows in force together make a circle; touching is not
 * overlapping; Sunday night runs into Monday. */
static void test_windows_must_overlap(void **state) {
  (void)state;
  schedule_t have, add;
  char why[512];
  sched(&have, 2, "xian-away", "shaanxi", "henan", "23:00", "01:00", DAILY);
  sched(&add, 0, "henan-day", "henan", "shaanxi", "09:00", "17:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 0);
  sched(&add, 0, "henan-late", "henan", "shaanxi", "01:00", "05:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 0);
  sched(&add, 0, "henan-late", "henan", "shaanxi", "00:30", "05:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 1);
  has(why, "all in force from mon 00:30 to mon 01:00");
  /* Other days: Sunday 23:00 runs to Monday 01:00, Tuesday is clear. */
  sched(&have, 2, "xian-away", "shaanxi", "henan", "23:00", "01:00", 0x40);
  sched(&add, 0, "henan-mon", "henan", "shaanxi", "00:00", "02:00", 0x02);
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 0);
  add.days = 0x01;
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 1);
  has(why, "from mon 00:00 to mon 01:00");
}

/* a -> b, b -> c, c -> a: three schedules, in force together only where
 * all three windows overlap. */
static void test_longer_circle(void **state) {
  (void)state;
  schedule_t have[2], add;
  char why[512];
  sched(&have[0], 1, "ab", "anhui", "beijing", "20:00", "02:00", DAILY);
  sched(&have[1], 2, "bc", "beijing", "chongqing", "22:00", "04:00", DAILY);
  sched(&add, 0, "ca", "chongqing", "anhui", "01:00", "06:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 1);
  has(why, "with schedules 'ab', 'bc': chongqing -> anhui ('ca'), anhui -> beijing ('ab'), "
           "beijing -> chongqing ('bc'), all in force from mon 01:00 to mon 02:00");
  /* Each pair overlaps, the three never at once: no circle. */
  sched(&add, 0, "ca", "chongqing", "anhui", "03:00", "21:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, have, 2, why, sizeof why), 0);
}

/* A disabled schedule is never in force; enabling checks again, and a
 * schedule does not form a circle with itself (the copy being enabled). */
static void test_disabled_and_self(void **state) {
  (void)state;
  schedule_t have[2];
  char why[512];
  sched(&have[0], 1, "xian-away", "shaanxi", "henan", "23:00", "01:00", DAILY);
  sched(&have[1], 2, "henan-away", "henan", "shaanxi", "23:00", "01:00", DAILY);
  have[1].enabled = false;
  assert_int_equal(rules_schedule_cycle(&have[0], have, 2, why, sizeof why), 0);
  schedule_t trial = have[1];
  trial.enabled = true;
  assert_int_equal(rules_schedule_cycle(&trial, have, 2, why, sizeof why), 1);
  assert_int_equal(rules_schedule_cycle(&have[0], have, 1, why, sizeof why), 0);
  trial.enabled = false;
  assert_int_equal(rules_schedule_cycle(&trial, have, 2, why, sizeof why), 0);
}

/* Windows in two zones cannot be laid on one clock: the circle is refused
 * as if they overlapped, and the message says so and how to fix it. */
static void test_other_zone(void **state) {
  (void)state;
  schedule_t have, add;
  char why[512];
  sched(&have, 2, "xian-away", "shaanxi", "henan", "23:00", "01:00", DAILY);
  snprintf(have.tz, sizeof have.tz, "Asia/Urumqi");
  sched(&add, 0, "henan-day", "henan", "shaanxi", "09:00", "17:00", DAILY);
  assert_int_equal(rules_schedule_cycle(&add, &have, 1, why, sizeof why), 1);
  has(why, "if 'xian-away' (Asia/Urumqi) is then too: windows in two zones cannot be compared, "
           "so put them in one zone");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_way_circle_refused),
      cmocka_unit_test(test_windows_must_overlap),
      cmocka_unit_test(test_longer_circle),
      cmocka_unit_test(test_disabled_and_self),
      cmocka_unit_test(test_other_zone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
