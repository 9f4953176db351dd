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
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alarm.h"
#include "ctl_alarms.h"
#include "engine-int.h"
#include "err.h"

typedef struct {
  unsigned raised, cleared, acked, backdated;
  uint64_t last_id;
  char last_msg[ALARM_MESSAGE_MAX];
} events_t;

static void on_event(void *arg, alarm_event_t ev, const alarm_t *a, int64_t wall) {
  (void)wall;
  events_t *e = arg;
  if (ev == ALARM_EV_RAISED) e->raised++;
  if (ev == ALARM_EV_CLEARED) e->cleared++;
  if (ev == ALARM_EV_ACKED) e->acked++;
  if (ev == ALARM_EV_BACKDATED) e->backdated++;
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
  assert_string_equal(alarm_kind_name(ALARM_LEADERSHIP), "leadership");
  assert_int_equal(alarm_kind_parse("leadership"), ALARM_LEADERSHIP);
  assert_string_equal(alarm_severity(ALARM_LEADERSHIP), "critical");
  assert_string_equal(alarm_kind_name(ALARM_SITES_LOAD), "sites_load");
  assert_int_equal(alarm_kind_parse("sites_load"), ALARM_SITES_LOAD);
  assert_string_equal(alarm_severity(ALARM_SITES_LOAD), "major");
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

/* An alarm whose condition ended stays active for clear_after (30 s): the
 * demo's night-schedule capacity alarm was listed at 08:02 "since 07:37"
 * as if ongoing, its schedule over. While its condition is observed in its
 * producer's passes it says nothing more; not seen in the latest, it says
 * for how long and when it clears, in nircctl's table, its status lines,
 * its JSON and the page (the same words). */
static void test_quiet_condition_says_when_it_clears(void **state) {
  (void)state;
  alarm_table_t t;
  alarm_table_init(&t, 30000, NULL, NULL);
  alarm_set_epoch(&t, 1, 0);
  const alarm_t *a =
      alarm_observe(&t, ALARM_CAPACITY, "xinjiang", "no hub has the capacity", 10000, 0, 0);
  assert_non_null(a);
  /* Seen in the pass that started at 10000: the condition holds. */
  alarm_seen_t s = alarm_seen(&t, a, 10400, 10000);
  assert_false(s.quiet);
  /* The next pass (10600) did not see it: its schedule ended. */
  s = alarm_seen(&t, a, 10700, 10600);
  assert_true(s.quiet);
  assert_false(s.adopted_unseen);
  assert_int_equal(s.ago_ms, 700);
  assert_int_equal(s.clears_in_ms, 29300);
  char w[200];
  alarm_seen_words(s.quiet, s.adopted_unseen, s.ago_ms, s.clears_in_ms, w, sizeof w);
  assert_string_equal(w,
                      "condition not seen in the latest check: clears in 30 s unless seen again");
  s = alarm_seen(&t, a, 13000, 12800);
  alarm_seen_words(s.quiet, s.adopted_unseen, s.ago_ms, s.clears_in_ms, w, sizeof w);
  assert_string_equal(w, "condition not seen for 3 s: clears in 27 s unless seen again");
  /* Seen again: quiet no more. */
  a = alarm_observe(&t, ALARM_CAPACITY, "xinjiang", NULL, 20000, 0, 0);
  assert_false(alarm_seen(&t, a, 20500, 20000).quiet);
  /* A late sweep: never a negative time left. */
  s = alarm_seen(&t, a, 20000 + 45000, 64000);
  assert_int_equal(s.clears_in_ms, 0);
  alarm_seen_words(false, false, 0, 0, w, sizeof w);
  assert_string_equal(w, "");

  /* Adopted from an earlier leader and not seen since. */
  alarm_table_t t2;
  alarm_table_init(&t2, 30000, NULL, NULL);
  alarm_set_epoch(&t2, 2, 0);
  assert_int_equal(alarm_adopt(&t2, a, 1, 50000), 0);
  s = alarm_seen(&t2, alarm_at(&t2, 0), 61000, 60800);
  assert_true(s.quiet && s.adopted_unseen);
  alarm_seen_words(s.quiet, s.adopted_unseen, s.ago_ms, s.clears_in_ms, w, sizeof w);
  assert_string_equal(w, "condition not seen by this leader in the 11 s since it took the alarm "
                         "over: clears in 19 s unless seen again");

  /* nircctl: the status line and the JSON say it; an observed one does not. */
  Nirc__Alarm pb[2];
  for (int i = 0; i < 2; i++) {
    nirc__alarm__init(&pb[i]);
    pb[i].id = 1000001 + (uint64_t)i;
    pb[i].kind = "capacity";
    pb[i].subject = i ? "hubei" : "xinjiang";
    pb[i].severity = "major";
    pb[i].message = "no hub has the capacity";
    pb[i].raised_ms = 1700000000000;
  }
  pb[0].quiet = true;
  pb[0].quiet_ms = 4200;
  pb[0].clears_in_ms = 25800;
  Nirc__Alarm *v[2] = {&pb[0], &pb[1]};
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  ctl_alarms_summary(f, v, 2, 2, 5, "UTC");
  ctl_alarms_print(f, v, 2, false, "UTC");
  fclose(f);
  assert_non_null(strstr(out, "xinjiang since 2023-11-14 22:13:20 (UTC): no hub has the capacity "
                              "(condition not seen for 4 s: clears in 26 s unless seen again)\n"));
  assert_non_null(strstr(out, "hubei since 2023-11-14 22:13:20 (UTC): no hub has the capacity\n"));
  assert_non_null(strstr(out, "no hub has the capacity (condition not seen for 4 s"));
  free(out);
  json_t *j0 = ctl_alarm_json(&pb[0]), *j1 = ctl_alarm_json(&pb[1]);
  assert_int_equal(json_integer_value(json_object_get(j0, "quiet_ms")), 4200);
  assert_int_equal(json_integer_value(json_object_get(j0, "clears_in_ms")), 25800);
  assert_true(json_is_null(json_object_get(j1, "quiet_ms")));
  assert_true(json_is_null(json_object_get(j1, "clears_in_ms")));
  json_decref(j0);
  json_decref(j1);
  /* A stored record (--all) that cleared says nothing of it. */
  pb[0].cleared_ms = 1700000060000;
  j0 = ctl_alarm_json(&pb[0]);
  assert_true(json_is_null(json_object_get(j0, "quiet_ms")));
  json_decref(j0);
  alarm_table_free(&t);
  alarm_table_free(&t2);
}

/* Brief s21A: a pbx alarm raised at 10:05 by an event heard on time; then
 * a queued event its agent saw at 09:55 arrives. Heard on time it would
 * have raised the alarm then, and the alarm (10 min after each event)
 * would still have stood at 10:05: one alarm, since 09:55, saying it was
 * reported late, and its stored raise moved with it (BACKDATED), not a new
 * raise. Never forward (a later sighting changes nothing), and never back
 * over a gap: a drift seen at 09:30 and over by 09:40 (plus clear_after)
 * is not this alarm's condition. Before, an active alarm kept its own
 * since whatever came later. */
#define T1005 1796637900000LL /* 2026-12-07T10:05:00Z */
static void test_a_late_sighting_moves_an_active_alarm_back(void **state) {
  (void)state;
  events_t ev = {0};
  alarm_table_t t;
  alarm_table_init(&t, 30000, on_event, &ev);
  alarm_set_epoch(&t, 4, 0);
  int64_t min = 60000, hold = 10 * min;
  const alarm_t *a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "PBX drift repaired: on time", false,
                                       1000, T1005, T1005 + 7);
  assert_int_equal(a->raised_wall_ms, T1005);
  const char *when = "seen by the agent at 2026-12-07T09:55:00Z, reported 720 s later";
  alarm_late_t late = {.seen_wall_ms = T1005 - 10 * min,
                       .seen_business_ms = T1005 - 10 * min + 7,
                       .held_wall_ms = T1005 - 10 * min + hold,
                       .when = when};
  a = alarm_observe_late(&t, ALARM_PBX, "hubei",
                         "PBX drift repaired, seen by the agent at "
                         "2026-12-07T09:55:00Z, reported 720 s later: x",
                         false, 3000, T1005 + 2 * min, T1005 + 2 * min, &late);
  assert_int_equal(a->raised_wall_ms, T1005 - 10 * min);
  assert_int_equal(a->raised_business_ms, T1005 - 10 * min + 7);
  assert_int_equal(ev.raised, 1);
  assert_int_equal(ev.backdated, 1);
  assert_int_equal(alarm_count(&t), 1);
  assert_string_equal(a->since_when, when);
  /* Its words say it once; newer words heard on time keep it before them. */
  assert_non_null(strstr(a->message, when));
  assert_null(strstr(a->message, "latest"));
  a = alarm_observe_sev(&t, ALARM_PBX, "hubei", "PBX drift NOT repaired: y", true, 4000, 0, 0);
  assert_string_equal(a->message, "seen by the agent at 2026-12-07T09:55:00Z, reported 720 s "
                                  "later; latest: PBX drift NOT repaired: y");
  /* Later than its since: nothing moves. */
  alarm_late_t later = late;
  later.seen_wall_ms = T1005 - 5 * min;
  later.held_wall_ms = later.seen_wall_ms + hold;
  later.when = "later words";
  a = alarm_observe_late(&t, ALARM_PBX, "hubei", "z", false, 5000, 0, 0, &later);
  assert_int_equal(a->raised_wall_ms, T1005 - 10 * min);
  assert_string_equal(a->since_when, when);
  assert_int_equal(ev.backdated, 1);
  /* Over 30 s before its since (09:30 + 10 min + clear_after < 09:55): a
   * condition that ended, not this one. Held to 30 s before it: joined. */
  alarm_late_t gap = {.seen_wall_ms = T1005 - 35 * min,
                      .seen_business_ms = T1005 - 35 * min,
                      .held_wall_ms = T1005 - 35 * min + hold,
                      .when = "gap"};
  a = alarm_observe_late(&t, ALARM_PBX, "hubei", "w", false, 6000, 0, 0, &gap);
  assert_int_equal(a->raised_wall_ms, T1005 - 10 * min);
  assert_int_equal(ev.backdated, 1);
  gap.held_wall_ms = T1005 - 10 * min - 30000;
  a = alarm_observe_late(&t, ALARM_PBX, "hubei", "w", false, 7000, 0, 0, &gap);
  assert_int_equal(a->raised_wall_ms, T1005 - 35 * min);
  assert_int_equal(ev.backdated, 2);
  assert_int_equal(ev.raised, 1);
  /* Not active: raised since the sighting, saying so. */
  a = alarm_observe_late(&t, ALARM_PBX, "henan", "v", false, 7000, T1005, T1005, &late);
  assert_int_equal(a->raised_wall_ms, T1005 - 10 * min);
  assert_string_equal(a->message, "seen by the agent at 2026-12-07T09:55:00Z, reported 720 s "
                                  "later; latest: v");
  assert_int_equal(ev.backdated, 2);
  alarm_table_free(&t);
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
      cmocka_unit_test(test_quiet_condition_says_when_it_clears),
      cmocka_unit_test(test_a_late_sighting_moves_an_active_alarm_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
