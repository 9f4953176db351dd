/* Unit tests for the alarm table (controller/routing/alarm.c).
 *
 * What operators and webhook receivers rely on: a condition raises one
 * alarm however often it is observed and however its words change; it is
 * cleared once, with the same id, only after it has been gone for
 * clear_after (a condition that flickers within that stays one alarm);
 * ids carry the epoch, so two leaders never reuse one; a new leader adopts
 * what the old one left active without raising it again, and clears it
 * when its condition is gone; an acknowledgement is taken once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "alarm.h"
#include "engine-int.h"
#include "err.h"

typedef struct {
  unsigned raised, cleared, acked;
  uint64_t last_id;
  char last_msg[ALARM_MESSAGE_MAX];
} events_t;

static void on_event(void *arg, alarm_event_t ev, const alarm_t *a, int64_t wall) {
  (void)wall;
  events_t *e = arg;
  if (ev == ALARM_EV_RAISED) e->raised++;
  if (ev == ALARM_EV_CLEARED) e->cleared++;
  if (ev == ALARM_EV_ACKED) e->acked++;
  e->last_id = a->id;
  strcpy(e->last_msg, a->message);
}

static void test_flickering_condition_is_one_alarm(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 30000, on_event, &ev);
  alarm_set_epoch(&t, 7, 0);
  /* Observed every 200 ms for a minute, with changing words, and absent
   * for 20 s twice (shorter than clear_after). */
  uint64_t now = 1000;
  for (int i = 0; i < 300; i++, now += 200) {
    if ((i >= 100 && i < 200) || i >= 250) continue;
    char msg[64];
    snprintf(msg, sizeof msg, "hubei would need %d agents", 30 + i % 3);
    assert_non_null(alarm_observe(&t, ALARM_CAPACITY, "hubei", msg, now, 0, 0));
    alarm_sweep(&t, now, 0);
  }
  assert_int_equal(ev.raised, 1);
  assert_int_equal(ev.cleared, 0);
  assert_int_equal(alarm_count(&t), 1);
  assert_int_equal(alarm_at(&t, 0)->id, 7 * ALARM_ID_EPOCH + 1);
  /* Gone for clear_after: cleared once, same id, last words kept. */
  uint64_t last_seen = alarm_at(&t, 0)->last_seen_mono;
  alarm_sweep(&t, last_seen + 29999, 0);
  assert_int_equal(ev.cleared, 0);
  alarm_sweep(&t, last_seen + 30000, 0);
  alarm_sweep(&t, last_seen + 60000, 0);
  assert_int_equal(ev.cleared, 1);
  assert_int_equal(ev.last_id, 7 * ALARM_ID_EPOCH + 1);
  assert_string_equal(ev.last_msg, "hubei would need 30 agents"); /* i = 249, the last seen */
  assert_int_equal(alarm_count(&t), 0);
  /* The condition again: a new alarm, a new id. */
  alarm_observe(&t, ALARM_CAPACITY, "hubei", "again", last_seen + 70000, 0, 0);
  assert_int_equal(ev.raised, 2);
  assert_int_equal(alarm_at(&t, 0)->id, 7 * ALARM_ID_EPOCH + 2);
  alarm_table_free(&t);
}

static void test_kinds_and_subjects_are_separate(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 1000, on_event, &ev);
  alarm_set_epoch(&t, 1, 0);
  alarm_observe(&t, ALARM_SITE_DOWN, "hubei", "down", 10, 0, 0);
  alarm_observe(&t, ALARM_DIRECTIVE, "hubei", "failed", 10, 0, 0);
  alarm_observe(&t, ALARM_SITE_DOWN, "henan", "down", 10, 0, 0);
  assert_int_equal(ev.raised, 3);
  assert_int_equal(alarm_count_kind(&t, ALARM_SITE_DOWN), 2);
  assert_non_null(alarm_find(&t, ALARM_DIRECTIVE, "hubei"));
  assert_null(alarm_find(&t, ALARM_DIRECTIVE, "henan"));
  /* Only henan's goes: the others stay, in the order they were raised. */
  alarm_observe(&t, ALARM_SITE_DOWN, "hubei", "down", 900, 0, 0);
  alarm_observe(&t, ALARM_DIRECTIVE, "hubei", "failed", 900, 0, 0);
  assert_int_equal(alarm_sweep(&t, 1500, 0), 1);
  assert_int_equal(alarm_count(&t), 2);
  assert_string_equal(alarm_at(&t, 0)->subject, "hubei");
  assert_int_equal(alarm_at(&t, 0)->kind, ALARM_SITE_DOWN);
  assert_int_equal(alarm_at(&t, 1)->kind, ALARM_DIRECTIVE);
  alarm_table_free(&t);
}

static void test_new_leader_adopts_and_clears_with_the_old_id(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 5000, on_event, &ev);
  alarm_set_epoch(&t, 3, 0);
  alarm_t old[2] = {{.id = 2 * ALARM_ID_EPOCH + 4, .kind = ALARM_SITE_DOWN},
                    {.id = 2 * ALARM_ID_EPOCH + 9, .kind = ALARM_DATABASE}};
  strcpy(old[0].subject, "xizang");
  strcpy(old[1].subject, "nircd-1");
  old[0].acked_wall_ms = 123;
  strcpy(old[0].acked_by, "operator:olga");
  assert_int_equal(alarm_adopt(&t, old, 2, 100), 0);
  assert_int_equal(ev.raised, 0); /* raised already, by the old leader */
  /* xizang still down: observed, kept, same id and acknowledgement. */
  const alarm_t *a = alarm_observe(&t, ALARM_SITE_DOWN, "xizang", "still down", 4000, 0, 0);
  assert_int_equal(ev.raised, 0);
  assert_int_equal(a->id, 2 * ALARM_ID_EPOCH + 4);
  assert_string_equal(a->acked_by, "operator:olga");
  assert_int_equal(alarm_ack(&t, a->id, "operator:alice", 5), NIRC_EEXISTS);
  /* The database is back: never observed, cleared with the old id. */
  alarm_sweep(&t, 5100, 0);
  assert_int_equal(ev.cleared, 1);
  assert_int_equal(ev.last_id, 2 * ALARM_ID_EPOCH + 9);
  /* Adopting again does not double an active one. */
  assert_int_equal(alarm_adopt(&t, old, 1, 5200), 0);
  assert_int_equal(alarm_count(&t), 1);
  /* New alarms get this epoch's ids. */
  a = alarm_observe(&t, ALARM_CAPACITY, "hubei", "x", 5300, 0, 0);
  assert_int_equal(a->id, 3 * ALARM_ID_EPOCH + 1);
  alarm_table_free(&t);
}

static void test_ack_once(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 5000, on_event, &ev);
  alarm_set_epoch(&t, 1, 0);
  const alarm_t *a = alarm_observe(&t, ALARM_JOURNAL, "nircd-1", "80%", 1, 0, 0);
  uint64_t id = a->id;
  assert_int_equal(alarm_ack(&t, id + 1, "operator:olga", 10), NIRC_ENOTFOUND);
  assert_int_equal(alarm_ack(&t, id, "operator:olga", 10), 0);
  assert_int_equal(alarm_ack(&t, id, "operator:alice", 11), NIRC_EEXISTS);
  assert_int_equal(ev.acked, 1);
  assert_string_equal(alarm_at(&t, 0)->acked_by, "operator:olga");
  assert_int_equal(alarm_at(&t, 0)->acked_wall_ms, 10);
  assert_int_equal(alarm_kind_parse("journal"), ALARM_JOURNAL);
  assert_int_equal(alarm_kind_parse("nonsense"), -1);
  /* A rule load's backend left holding the rule tables' locks: its own
   * kind (the metric label, the stored kind), paged as major. */
  assert_string_equal(alarm_kind_name(ALARM_RULE_LOAD), "rule_load");
  assert_int_equal(alarm_kind_parse("rule_load"), ALARM_RULE_LOAD);
  assert_string_equal(alarm_severity(ALARM_RULE_LOAD), "major");
  alarm_table_free(&t);
}

/* 20,000 sites down, then every other one back: each lookup finds its own
 * alarm through the index as it grows and after sweeps compact the table. */
static void test_many_subjects(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 1000, on_event, &ev);
  alarm_set_epoch(&t, 1, 0);
  enum { N = 20000 };
  char slug[32];
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < N; i++) {
      snprintf(slug, sizeof slug, "site-%d", i);
      if (round == 2 && i % 2) continue; /* odd sites are back in round 2 */
      alarm_observe(&t, ALARM_SITE_DOWN, slug, "down", (uint64_t)round * 600, 0, 0);
    }
  assert_int_equal(ev.raised, N);
  alarm_sweep(&t, 1700, 0); /* odd ones last seen at 600: cleared */
  assert_int_equal(ev.cleared, N / 2);
  assert_int_equal(alarm_count(&t), N / 2);
  for (int i = 0; i < N; i++) {
    snprintf(slug, sizeof slug, "site-%d", i);
    const alarm_t *a = alarm_find(&t, ALARM_SITE_DOWN, slug);
    if (i % 2) {
      assert_null(a);
    } else {
      assert_non_null(a);
      assert_string_equal(a->subject, slug);
      assert_null(alarm_find(&t, ALARM_CAPACITY, slug));
    }
  }
  /* Observing again raises nothing new for the ones still active. */
  snprintf(slug, sizeof slug, "site-%d", 4);
  alarm_observe(&t, ALARM_SITE_DOWN, slug, "down", 1800, 0, 0);
  assert_int_equal(ev.raised, N);
  alarm_table_free(&t);
}

/* A pbx alarm is a warning while its drifts are repaired, critical from
 * the first one that is not, and stays critical until it clears. */
static void test_pbx_severity_follows_the_observation(void **state) {
  (void)state;
  alarm_table_t t;
  events_t ev = {0};
  alarm_table_init(&t, 1000, on_event, &ev);
  alarm_set_epoch(&t, 1, 0);
  assert_string_equal(alarm_kind_name(ALARM_PBX), "pbx");
  assert_int_equal(alarm_kind_parse("pbx"), ALARM_PBX);
  const alarm_t *a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "repaired", false, 0, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "warning");
  a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "NOT repaired", true, 10, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "critical");
  a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "repaired", false, 20, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "critical");
  assert_int_equal(ev.raised, 1);
  a = alarm_observe_sev(&t, ALARM_PBX, "henan", "NOT repaired", true, 20, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "critical");
  assert_int_equal(alarm_sweep(&t, 2000, 0), 2);
  a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "repaired", false, 3000, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "warning");
  a = alarm_observe(&t, ALARM_SITE_DOWN, "hubei", "down", 3000, 0, 0);
  assert_string_equal(alarm_entry_severity(a), "major");
  alarm_table_free(&t);
}

/* A site_down message says how long in words whose last unit is the one
 * that changes: seconds, then minutes after two, then hours after two;
 * the key changes exactly when the words do, so 20,000 sites down are
 * formatted again once a minute, not once a second. */
static void test_down_for_words_and_key(void **state) {
  (void)state;
  char b[32];
  uint32_t k0 = engine_down_for(0, b, sizeof b);
  assert_string_equal(b, "0 s");
  assert_int_not_equal(k0, 0);
  assert_int_equal(engine_down_for(999, b, sizeof b), k0); /* same second, same words */
  uint32_t k1 = engine_down_for(119999, b, sizeof b);
  assert_string_equal(b, "119 s");
  uint32_t k2 = engine_down_for(120000, b, sizeof b);
  assert_string_equal(b, "2 min");
  assert_int_not_equal(k1, k2);
  assert_int_equal(engine_down_for(179999, b, sizeof b), k2); /* still 2 min: not formatted again */
  assert_string_equal(b, "2 min");
  uint32_t k3 = engine_down_for(180000, b, sizeof b);
  assert_string_equal(b, "3 min");
  assert_int_not_equal(k2, k3);
  engine_down_for(7199999, b, sizeof b);
  assert_string_equal(b, "119 min");
  uint32_t k4 = engine_down_for(7200000, b, sizeof b);
  assert_string_equal(b, "2 h");
  assert_int_equal(engine_down_for(10799999, b, sizeof b), k4);
  engine_down_for(76ull * 24 * 3600000, b, sizeof b); /* Wuhan's 76 days */
  assert_string_equal(b, "1824 h");
  /* Keys of different units never meet. */
  assert_int_not_equal(engine_down_for(59000, b, sizeof b),
                       engine_down_for(59 * 60000, b, sizeof b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flickering_condition_is_one_alarm),
      cmocka_unit_test(test_kinds_and_subjects_are_separate),
      cmocka_unit_test(test_new_leader_adopts_and_clears_with_the_old_id),
      cmocka_unit_test(test_ack_once),
      cmocka_unit_test(test_many_subjects),
      cmocka_unit_test(test_pbx_severity_follows_the_observation),
      cmocka_unit_test(test_down_for_words_and_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
