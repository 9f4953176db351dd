/* Unit tests of the routing engine (controller/routing/engine*.c) driven
 * without a loop, a socket or a database: the test is the engine's world
 * (tests/unit/support/world.c implements engine_io_t with arrays and plays
 * the agents). */
#include "engine.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "rules.h"
#include "sites.h"
#include "util.h"
#include "support/world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- tests ---- */

/* An engine leading epoch 5 of this world, every site connected, home. */
/* A cutover is sent to the source and its hub, acknowledged, audited and
 * answered only once the audit record is durable. */
static void test_cutover_applied_and_answered(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 41, src, 1, hub, 1, 0);
  assert_int_equal(w->n_sent, 2);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  assert_int_equal(world_last(w, "hubei")->epoch, 5);
  assert_int_equal(world_last(w, "shaanxi")->n_inbound, 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_NEW, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_DIRECTIVE, NULL), 2);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover"), 1);
  world_ack(w, e, 0, NULL);
  /* Both applied, but the audit row is not durable yet: no answer. */
  assert_int_equal(w->n_rep, 0);
  world_flush(w);
  assert_int_equal(w->n_rep, 1);
  assert_int_equal(w->rep[0].request_id, 41);
  assert_true(w->rep[0].ok);
  assert_int_equal(w->rep[0].body, NIRC__OPERATOR_REPLY__BODY_MOVE);
  assert_int_equal(w->rep[0].applied, 2);
  assert_int_equal(w->rep[0].failed, 0);
  assert_int_equal(w->rep[0].code, 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_ACK, NULL), 2);
  assert_true(
      route_same(&engine_site_dir(e, world_index(w, "hubei"))->acked, world_last(w, "hubei")));
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A schedule moves its sources in waves of wave_size: the next wave starts
 * only once the previous one is acknowledged and verified. */
static void test_schedule_moves_in_waves(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "night";
  sp.sources = (char **)world_sources;
  sp.n_sources = 4;
  char *hub[] = {"shaanxi"};
  sp.hubs = hub;
  sp.n_hubs = 1;
  sp.start = "00:00";
  sp.end = "23:59";
  sp.wave_size = 2;
  Nirc__ScheduleRequest rq = NIRC__SCHEDULE_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = 7, .operator_name = "admin:bob", .label = "t"};
  engine_op_schedule(e, &r, &rq);
  assert_int_equal(w->n_rep, 0); /* answered once the schedule is durable */
  world_flush(w);
  assert_int_equal(w->n_rep, 1);
  assert_true(w->rep[0].ok);
  assert_int_equal(w->rep[0].code, 0);
  assert_int_equal(w->n_sch, 1);

  world_tick(w, e, 200);
  unsigned away = 0;
  for (size_t k = 0; k < 4; k++)
    away += world_last(w, world_sources[k]) != NULL;
  assert_int_equal(away, 2); /* the first wave */
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "move"), 1);
  size_t seen = w->n_sent;
  world_ack(w, e, 0, NULL);
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, seen); /* acknowledged, not yet verified */
  world_tick(w, e, 10000);
  away = 0;
  for (size_t k = 0; k < 4; k++)
    away += world_last(w, world_sources[k]) != NULL;
  assert_int_equal(away, 4); /* the second wave, after the window */
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "move"), 2);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A source whose PBX fails the move goes home, is audited as a rollback,
 * and the operator hears one applied and one failed. */
static void test_failed_move_rolls_back(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"guangdong", "hainan"}, *hub[] = {"sichuan"};
  world_cutover(w, e, 9, src, 2, hub, 1, 0);
  assert_int_equal(route_share_of(world_last(w, "guangdong"), "sichuan"), 1000);
  world_ack(w, e, 0, "guangdong");
  world_flush(w);
  assert_int_equal(w->n_rep, 1);
  assert_int_equal(w->rep[0].applied, 2); /* hainan and the hub */
  assert_int_equal(w->rep[0].failed, 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "rollback"), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_EVENT, "directive_failed"), 1);
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "guangdong"), "guangdong"), 1000);
  assert_int_equal(route_share_of(world_last(w, "hainan"), "sichuan"), 1000);
  assert_true(engine_site_dir(e, world_index(w, "guangdong"))->excluded_rule != 0);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* The first hub goes offline: its sources move to the next hub of the
 * rule, and the lost hub is told nothing (it has no link). */
static void test_hub_loss_moves_to_next_hub(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi", "henan"};
  world_cutover(w, e, 3, src, 1, hub, 2, 0);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_ack(w, e, 0, NULL);
  world_link_down(w, e, "shaanxi");
  size_t before = w->n_sent;
  world_tick(w, e, 200);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "henan"), 1000);
  assert_int_equal(route_share_of(world_last(w, "henan"), "henan"), 1000);
  assert_int_equal(world_last(w, "henan")->n_inbound, 1);
  for (size_t k = before; k < w->n_sent; k++)
    assert_int_not_equal(w->sent[k].site, world_index(w, "shaanxi"));
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A new leader loads the rules the old one stored, hears from the agents
 * what they route by, and routes exactly as the old leader did: the same
 * targets, and not one directive. Without the stored rules it would send
 * the sources home, which is what makes this test able to fail. */
static void test_failover_reload_routes_the_same(void **state) {
  world_t *w = world_new();
  engine_t *a = world_engine(w);
  assert_int_equal(engine_load_rules(a, 5, NULL, 0, NULL, 0, NULL, 0, 0), 0);
  engine_start_leading(a, 5000);
  world_connect_all(w, a, NULL);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, a, 1, src, 1, hub, 1, 300);
  const char *src2[] = {"guangdong", "hainan"}, *hub2[] = {"sichuan", "henan"};
  world_cutover(w, a, 2, src2, 2, hub2, 2, 0);
  world_ack(w, a, 0, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 300);
  size_t n = w->sites->n;
  route_t *acked = calloc(n, sizeof *acked);
  assert_non_null(acked);
  for (size_t i = 0; i < n; i++)
    acked[i] = engine_site_dir(a, i)->acked;
  world_flush(w);
  engine_free(a); /* the old leader is gone */

  for (int with_rules = 1; with_rules >= 0; with_rules--) {
    for (size_t i = 0; i < n; i++) {
      sites_on_link_down(&w->sites->v[i], w->now);
      w->sites->v[i].conn = NULL;
    }
    w->n_sent = 0;
    engine_t *b = world_engine(w);
    assert_int_equal(engine_load_rules(b, 6, w->cut, with_rules ? w->n_cut : 0, w->sch,
                                       with_rules ? w->n_sch : 0, NULL, 0, w->max_id),
                     0);
    engine_start_leading(b, 5000);
    world_connect_all(w, b, acked);
    world_tick(w, b, 200);
    world_tick(w, b, 200);
    if (with_rules) {
      assert_int_equal(w->n_sent, 0);
      for (size_t i = 0; i < n; i++)
        assert_true(route_same(&engine_site_dir(b, i)->target, &acked[i]));
    } else {
      assert_true(w->n_sent > 0);
      assert_int_equal(route_share_of(world_last(w, "hubei"), "hubei"), 1000);
    }
    world_flush(w);
    engine_free(b);
  }
  free(acked);
  world_free(w);
}

/* A standby, or a leader whose lease is unconfirmed, sends nothing. */
static void test_no_directive_without_leadership(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  w->leading = false;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 5, src, 1, hub, 1, 0);
  assert_int_equal(w->n_sent, 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_DIRECTIVE, NULL), 0);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* The store cannot make a change durable (journal full): the operator is
 * refused with the store's reason and nothing is routed or recorded. */
static void test_change_refused_when_it_cannot_be_recorded(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  w->store_refuse = NIRC_EFULL;
  snprintf(w->store_why, sizeof w->store_why,
           "the outage journal /var/lib/nirc/nircd.journal is full (64 KiB of 64 KiB)");
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  assert_int_equal(w->n_rep, 1);
  assert_false(w->rep[0].ok);
  assert_int_equal(w->rep[0].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(w->rep[0].msg, "nothing was changed"));
  assert_non_null(strstr(w->rep[0].msg, "nircd.journal is full"));
  world_schedule_all_day(w, e, 2, "hunan", "henan");
  assert_int_equal(w->n_rep, 2);
  assert_false(w->rep[1].ok);
  world_tick(w, e, 200);
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, 0); /* neither moved anything */
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_NEW, NULL), 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_SCHEDULE_NEW, NULL), 0);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A hostile agent's failure text (an escape sequence, a long Chinese
 * message cut mid-character, a byte that is not UTF-8) stays UTF-8 in the
 * rollback's audit record, the exclusion status shows and the reply, so
 * none of them is lost or breaks JSON; escaping it is the printers' job. */
static void test_agent_failure_text_stays_utf8(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  char text[400] = "\x1b[31m";
  while (strlen(text) + 4 < sizeof text)
    strcat(text, "故");
  text[strlen(text) - 1] = '\xff';
  w->fail_detail = text;
  const char *src[] = {"guangdong"}, *hub[] = {"sichuan"};
  world_cutover(w, e, 9, src, 1, hub, 1, 0);
  world_ack(w, e, 0, "guangdong");
  world_flush(w);
  world_tick(w, e, 200);
  const char *shown = engine_active_reason(e, world_index(w, "guangdong"));
  assert_non_null(strstr(shown, "excluded after a failed move"));
  assert_non_null(strstr(shown, "故故"));
  assert_true(nirc_utf8_valid(shown));
  size_t rollbacks = 0;
  for (size_t k = 0; k < w->n_rec; k++) {
    assert_true(nirc_utf8_valid(w->rec[k].detail));
    if (w->rec[k].kind == ENGINE_REC_AUDIT && strcmp(w->rec[k].action, "rollback") == 0) {
      assert_non_null(strstr(w->rec[k].detail, "故故"));
      rollbacks++;
    }
  }
  assert_int_equal(rollbacks, 1);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* Input errors are INVALID (nircctl exits 2), state refusals REFUSED
 * (exit 1); either moves nothing, and what the refusal quotes back (a
 * name the operator typed) reaches the reply and the audit trail
 * escaped, never raw. */
static void test_input_errors_invalid_and_quoted_escaped(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  c.sources = src;
  c.n_sources = 1;
  c.hubs = hub;
  c.n_hubs = 1;
  c.reason = "peak\xe2\x80\xae";
  engine_req_t rq = {.client = w, .request_id = 1, .operator_name = "operator:alice", .label = "t"};
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(w->n_rep, 1);
  assert_false(w->rep[0].ok);
  assert_int_equal(w->rep[0].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  assert_string_equal(w->rep[0].msg,
                      "the reason contains a control character (U+202E at byte 5); remove it");
  c.reason = "drill";
  hub[0] = "atlantis";
  rq.request_id = 2;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(w->rep[1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);

  /* No such schedule: the state says no (REFUSED); the name it quotes is
   * escaped in the reply and in the audit record's target and detail. */
  Nirc__ScheduleRequest sr = NIRC__SCHEDULE_REQUEST__INIT;
  sr.op = NIRC__RULE_OP__RULE_OP_REMOVE;
  sr.name = "\x1b[31mnight\n";
  rq.request_id = 3;
  engine_op_schedule(e, &rq, &sr);
  assert_int_equal(w->rep[2].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(w->rep[2].msg, "no schedule '\\x1b[31mnight\\n'"));
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_NEW, NULL), 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover-refused"), 2);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "schedule-refused"), 1);
  for (size_t k = 0; k < w->n_rec; k++) {
    assert_null(strchr(w->rec[k].site, 0x1b));
    assert_null(strchr(w->rec[k].detail, 0x1b));
    assert_null(strchr(w->rec[k].site, '\n'));
  }
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* The store refuses the rule record itself: the cutover is forgotten and
 * nothing is sent, now or on later ticks. */
static void test_cutover_forgotten_when_its_rule_is_refused(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  w->store_fail_in = 1;
  w->store_fail_rc = NIRC_EIO;
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  assert_int_equal(w->n_rep, 1);
  assert_false(w->rep[0].ok);
  assert_non_null(strstr(w->rep[0].msg, "nothing was changed"));
  w->store_fail_in = 0;
  world_tick(w, e, 200);
  assert_int_equal(w->n_sent, 0);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A record accepted but then lost (the journal's sync failed): the move
 * happened, and the operator is told it is not durable. */
static void test_move_reported_not_durable(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  assert_int_equal(w->n_rep, 0);
  size_t n = w->n_pending;
  w->n_pending = 0;
  for (size_t k = 0; k < n; k++)
    w->pending[k].done(w->pending[k].arg, k == 0 ? NIRC_EIO : 0,
                       k == 0 ? "journal sync failed: No space left on device" : NULL);
  assert_int_equal(w->n_rep, 1);
  assert_true(w->rep[0].ok); /* it moved */
  assert_int_equal(w->rep[0].applied, 2);
  assert_int_equal(w->rep[0].code, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE);
  assert_non_null(strstr(w->rep[0].msg, "NOT recorded durably"));
  assert_non_null(strstr(w->rep[0].msg, "No space left"));
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* Completes every record the store holds as durable in the outage
 * journal only, as store.c reports it ("journaled"). */
static void journal_all(world_t *w) {
  size_t n = w->n_pending;
  w->n_pending = 0;
  for (size_t k = 0; k < n; k++)
    w->pending[k].done(w->pending[k].arg, 0, "journaled");
}

/* A change recorded only in the leader's outage journal names that
 * leader's node: asked through a standby (nircctl follows its redirect),
 * "this controller" read as the standby, whose journal has nothing. */
static void test_journaled_change_names_its_controller(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_opts_t o = world_opts(false);
  snprintf(o.node, sizeof o.node, "nircd-1");
  engine_t *e = world_leading_with(w, &o);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  world_ack(w, e, 0, NULL);
  journal_all(w);
  const world_reply_t *x = &w->rep[w->n_rep - 1];
  assert_true(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE); /* exit 4 */
  assert_non_null(strstr(x->msg, "the change is in force, but recorded only in the outage "
                                 "journal of controller nircd-1, the leader that took it,"));
  assert_null(strstr(x->msg, "this controller"));
  /* A rule change (a deferred reply) says the same. */
  world_schedule_all_day(w, e, 2, "guangdong", "henan");
  journal_all(w);
  x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->request_id, 2);
  assert_non_null(strstr(x->msg, "only in the outage journal of controller nircd-1,"));
  world_flush(w);
  engine_free(e);
  /* Unnamed (no node configured): the leader's, never "this". */
  e = world_leading(w);
  size_t from = w->n_sent;
  world_cutover(w, e, 3, (const char *[]){"hainan"}, 1, hub, 1, 0);
  world_ack(w, e, from, NULL);
  journal_all(w);
  x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->request_id, 3);
  assert_non_null(strstr(x->msg, "recorded only in the leader's outage journal"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A site floods acks: for directives never sent (another epoch, a future
 * version), the same ack again and again, and with 60 KB of detail. Only
 * one row per directive sent is stored, with its detail cut. */
static void test_acks_bounded_by_directives_sent(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 0);
  size_t hubei = world_index(w, "hubei");
  const route_t *sent = world_last(w, "hubei");
  char *big = malloc(60000);
  assert_non_null(big);
  memset(big, 'x', 59999);
  big[59999] = '\0';
  size_t before = world_count_rec(w, ENGINE_REC_ACK, NULL);
  for (unsigned k = 0; k < 10000; k++) {
    Nirc__DirectiveAck a = NIRC__DIRECTIVE_ACK__INIT;
    a.site = "hubei";
    a.epoch = k % 3 == 0 ? 4 : 5;                                   /* an old epoch, or ours */
    a.version = k % 3 == 1 ? sent->version + 1 + k : sent->version; /* never sent, or sent */
    a.result = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    a.detail = big;
    engine_on_ack(e, hubei, &a);
  }
  free(big);
  /* One row: the first ack of the version that was sent. */
  assert_int_equal(world_count_rec(w, ENGINE_REC_ACK, NULL), before + 1);
  assert_true(strlen(w->rec[w->n_rec - 1].detail) < ENGINE_ACK_DETAIL_MAX);
  assert_int_equal(engine_stats(e)->acks_refused, 9999);
  /* And the move is applied all the same. */
  assert_true(route_same(&engine_site_dir(e, hubei)->acked, sent));
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A site excluded after a failed move is readmitted by an operator: it
 * moves with its rule again, audited; readmitting a site that is not
 * excluded is refused. */
static void test_readmit_after_failed_move(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"guangdong", "hainan"}, *hub[] = {"sichuan"};
  world_cutover(w, e, 9, src, 2, hub, 1, 0);
  world_ack(w, e, 0, "guangdong");
  world_flush(w);
  world_tick(w, e, 200);
  size_t gd = world_index(w, "guangdong");
  assert_int_equal(route_share_of(world_last(w, "guangdong"), "guangdong"), 1000);
  assert_true(engine_site_dir(e, gd)->excluded_rule != 0);
  assert_int_equal(world_count_rec(w, ENGINE_REC_EXCLUDE, NULL), 1);
  /* status says why it is home and what ends it */
  const char *shown = engine_active_reason(e, gd);
  assert_non_null(strstr(shown, "excluded after a failed move in cutover"));
  assert_non_null(strstr(shown, "pbx refused the route"));
  assert_non_null(strstr(shown, "nircctl readmit guangdong"));
  world_ack(w, e, 0, NULL);

  char *names[] = {"hainan"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.readmit = 1;
  engine_req_t rq = {.client = w, .request_id = 20, .operator_name = "operator:olga", .label = "t"};
  size_t replies = w->n_rep;
  engine_op_restore(e, &rq, &r);
  assert_int_equal(w->n_rep, replies + 1);
  assert_false(w->rep[replies].ok);
  assert_non_null(strstr(w->rep[replies].msg, "not excluded"));

  names[0] = "guangdong";
  r.reason = "PBX trunk fixed";
  rq.request_id = 21;
  size_t from = w->n_sent;
  engine_op_restore(e, &rq, &r);
  assert_int_equal(engine_site_dir(e, gd)->excluded_rule, 0);
  assert_null(strstr(engine_active_reason(e, gd), "excluded"));
  assert_int_equal(route_share_of(world_last(w, "guangdong"), "sichuan"), 1000);
  assert_int_equal(world_count_rec(w, ENGINE_REC_READMIT, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "readmit"), 1);
  world_ack(w, e, from, NULL);
  world_flush(w);
  assert_int_equal(w->rep[w->n_rep - 1].request_id, 21);
  assert_true(w->rep[w->n_rep - 1].ok);
  assert_int_equal(w->rep[w->n_rep - 1].failed, 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* An active cutover is amended: a larger share, then another hub. The
 * source never routes home on the way, the change is recorded and audited
 * before it takes effect, and the operator hears when it is applied. */
static void test_amend_changes_share_and_hub_in_place(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 1, src, 1, hub, 1, 300);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 300);
  uint64_t id = w->cut[0].id;

  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.amend_id = id;
  c.share_permille = 600;
  c.reason = "peak";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:olga", .label = "t"};
  size_t from = w->n_sent;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 600);
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_AMEND, NULL), 1);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover-amend"), 1);
  assert_int_equal(w->cut[0].share_permille, 600); /* what a new leader loads */
  world_ack(w, e, from, NULL);
  world_flush(w);
  assert_true(w->rep[w->n_rep - 1].ok);
  assert_int_equal(w->rep[w->n_rep - 1].request_id, 2);

  char *to[] = {"henan"};
  c.share_permille = 0;
  c.hubs = to;
  c.n_hubs = 1;
  rq.request_id = 3;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "henan"), 600);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 0);
  /* Never home in between: every directive to hubei moved calls away. */
  size_t hubei = world_index(w, "hubei");
  for (size_t k = 0; k < w->n_sent; k++)
    if (w->sent[k].site == hubei) assert_true(route_share_of(&w->sent[k].route, "hubei") < 1000);
  /* Nothing to amend, or no such cutover: refused. */
  rq.request_id = 4;
  engine_op_cutover(e, &rq, &c);
  assert_false(w->rep[w->n_rep - 1].ok);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "nothing to amend"));
  c.amend_id = 42;
  rq.request_id = 5;
  engine_op_cutover(e, &rq, &c);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "no active cutover 42"));
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* An overflow engaged by a queue, then held by hysteresis while the queue
 * sits between its release and trigger thresholds: a new leader that loads
 * the stored engagement keeps the spill; one that does not (a fresh state)
 * would send the source home. */
static void test_overflow_engagement_survives_a_takeover(void **state) {
  world_t *w = world_new();
  engine_t *a = world_leading(w);
  char *hubs[] = {"shaanxi"};
  Nirc__OverflowSpec sp = NIRC__OVERFLOW_SPEC__INIT;
  sp.name = "hubei-ovf";
  sp.source = "hubei";
  sp.hubs = hubs;
  sp.n_hubs = 1;
  sp.trigger_queue = 20;
  sp.release_queue = 5;
  sp.share_cap_permille = 500;
  sp.min_hold_s = 300;
  Nirc__OverflowRequest rq = NIRC__OVERFLOW_REQUEST__INIT;
  rq.op = NIRC__RULE_OP__RULE_OP_ADD;
  rq.spec = &sp;
  engine_req_t r = {.client = w, .request_id = 1, .operator_name = "admin:bob", .label = "t"};
  engine_op_overflow(a, &r, &rq);
  world_flush(w);
  assert_int_equal(w->n_ovf, 1);
  for (int k = 0; k < 10; k++) { /* a queue of 60 and callers waiting 4 minutes */
    w->now += 60000;
    world_load(w, "hubei", 60, 240000);
    world_tick(w, a, 200);
    world_ack(w, a, 0, NULL);
  }
  assert_true(w->ovf_state[0].engaged);
  uint32_t moved = route_share_of(&engine_site_dir(a, world_index(w, "hubei"))->target, "shaanxi");
  assert_true(moved > 0);
  for (int k = 0; k < 10; k++) { /* calmer, but above the release threshold */
    w->now += 60000;
    world_load(w, "hubei", 10, 30000);
    world_tick(w, a, 200);
    world_ack(w, a, 0, NULL);
  }
  assert_true(w->ovf_state[0].engaged);
  size_t n = w->sites->n;
  route_t *target = calloc(n, sizeof *target), *acked = calloc(n, sizeof *acked);
  assert_non_null(target);
  assert_non_null(acked);
  for (size_t i = 0; i < n; i++) {
    target[i] = engine_site_dir(a, i)->target;
    acked[i] = engine_site_dir(a, i)->acked;
  }
  world_flush(w);
  engine_free(a);
  for (int with_state = 1; with_state >= 0; with_state--) {
    engine_t *b = world_engine(w);
    assert_int_equal(engine_load_rules(b, 6, NULL, 0, NULL, 0, w->ovf, w->n_ovf, w->max_id), 0);
    if (with_state) engine_load_overflow_state(b, w->ovf_state, w->n_ovf);
    engine_start_leading(b, 0);
    for (size_t i = 0; i < n; i++)
      engine_on_hello(b, i, &acked[i], false, NULL);
    engine_tick(b);
    size_t hubei = world_index(w, "hubei");
    if (with_state)
      assert_true(route_same(&engine_site_dir(b, hubei)->target, &target[hubei]));
    else
      assert_int_equal(route_share_of(&engine_site_dir(b, hubei)->target, "shaanxi"), 0);
    world_flush(w);
    engine_free(b);
  }
  free(target);
  free(acked);
  world_free(w);
}

/* ---- plans, dry runs and --force (engine_plan.c) ---- */

/* nircctl plan SRC... --to HUB...: the engine's reply. */
static const Nirc__PlanReply *plan_request(world_t *w, engine_t *e, uint64_t rid, char **src,
                                           size_t ns, char **hubs, size_t nh) {
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.sources = src;
  pq.n_sources = ns;
  pq.hubs = hubs;
  pq.n_hubs = nh;
  engine_req_t rq = {
      .client = w, .request_id = rid, .operator_name = "operator:alice", .label = "t"};
  size_t before = w->n_rep;
  engine_op_plan(e, &rq, &pq);
  assert_int_equal(w->n_rep, before + 1);
  const world_reply_t *x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->body, NIRC__OPERATOR_REPLY__BODY_PLAN);
  assert_non_null(x->full->plan);
  return x->full->plan;
}

/* Whether `s` names a cutover by an id ("cutover 7"): a plan or a dry
 * run has none to name. */
static bool names_a_rule_id(const char *s) {
  for (const char *p = strstr(s, "cutover "); p; p = strstr(p + 1, "cutover "))
    if (p[8] >= '0' && p[8] <= '9') return true;
  return false;
}

static const Nirc__CapacityPrediction *hub_row(const Nirc__PlanReply *p, const char *hub) {
  const Nirc__CapacityPrediction *found = NULL;
  for (size_t k = 0; k < p->n_capacity; k++)
    if (strcmp(p->capacity[k]->hub, hub) == 0) {
      if (found) fail_msg("two capacity rows for %s", hub);
      found = p->capacity[k];
    }
  if (!found) fail_msg("no capacity row for %s", hub);
  return found;
}

/* A cutover request for "drill" of sources to hubs (borrowed). */
static Nirc__CutoverRequest drill(char **src, size_t ns, char **hubs, size_t nh, bool dry_run) {
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = src;
  c.n_sources = ns;
  c.hubs = hubs;
  c.n_hubs = nh;
  c.reason = "drill";
  c.dry_run = dry_run;
  return c;
}

/* Three sources to two hubs that have room for one each: one row per hub
 * (what it takes, and what it turned down), no id for the rule that does
 * not exist, and the source nobody takes named with both hubs' needs;
 * a dry run of the same cutover is refused with the same words. */
static void test_plan_and_dry_run_are_exact(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_staff(w, "shaanxi", 9);
  world_staff(w, "henan", 9);
  char *src[] = {"hubei", "guangdong", "hainan"}, *hubs[] = {"shaanxi", "henan"};
  size_t sent = w->n_sent, recs = w->n_rec;
  const Nirc__PlanReply *p = plan_request(w, e, 1, src, 3, hubs, 2);
  assert_int_equal(p->n_capacity, 2);
  const Nirc__CapacityPrediction *sx = hub_row(p, "shaanxi"), *hn = hub_row(p, "henan");
  assert_int_equal(sx->n_sources, 1);
  assert_string_equal(sx->sources[0], "hubei");
  assert_true(sx->traffic_after_erl > sx->traffic_before_erl);
  assert_true(sx->refused);
  assert_int_equal(sx->n_refused_sources, 2); /* guangdong (then henan's) and hainan */
  assert_non_null(sx->with_refused);
  assert_true(sx->with_refused->traffic_erl > sx->traffic_after_erl);
  assert_true(sx->with_refused->agents_needed > sx->agents);
  assert_int_equal(hn->n_sources, 1);
  assert_string_equal(hn->sources[0], "guangdong");
  assert_int_equal(hn->n_refused_sources, 1);
  assert_string_equal(hn->refused_sources[0], "hainan");
  /* The moves that would happen carry no id. */
  assert_int_equal(p->n_moves, 2);
  for (size_t k = 0; k < p->n_moves; k++)
    assert_string_equal(p->moves[k]->reason, "would be cutover");
  /* Refused: hainan, with each hub's need. */
  assert_true(p->refused);
  assert_int_equal(p->n_sources, 3);
  assert_int_equal(p->n_refused_sources, 1);
  const Nirc__RefusedSource *rs = p->refused_sources[0];
  assert_string_equal(rs->source, "hainan");
  assert_int_equal(rs->n_hubs, 2);
  for (size_t k = 0; k < 2; k++) {
    assert_string_equal(rs->hubs[k]->hub, hubs[k]);
    assert_true(rs->hubs[k]->capacity);
    assert_int_equal(rs->hubs[k]->agents, 9);
    assert_true(rs->hubs[k]->agents_needed > 9);
  }
  char want[512];
  snprintf(want, sizeof want,
           "1 of 3 sources would not move: hainan: shaanxi would need %u agents (has 9), henan "
           "would need %u agents (has 9)",
           rs->hubs[0]->agents_needed, rs->hubs[1]->agents_needed);
  assert_string_equal(p->refusal, want);
  for (size_t k = 0; k < p->n_alarms; k++)
    assert_false(names_a_rule_id(p->alarms[k]));
  assert_int_equal(w->n_sent, sent); /* a plan changes nothing */
  assert_int_equal(w->n_rec, recs);

  /* The dry run of that cutover: refused, every refused source named. */
  Nirc__CutoverRequest c = drill(src, 3, hubs, 2, true);
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:alice", .label = "t"};
  engine_op_cutover(e, &rq, &c);
  const world_reply_t *x = &w->rep[w->n_rep - 1];
  assert_false(x->ok);
  assert_int_equal(x->code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  snprintf(want + strlen(want), sizeof want - strlen(want), " (use --force to move anyway)");
  assert_string_equal(x->msg, want);
  assert_false(names_a_rule_id(x->msg));
  assert_int_equal(x->full->move->plan->n_refused_sources, 1);
  /* Two refused, one hub: both named, in the order given. */
  world_staff(w, "shaanxi", 4);
  char *one[] = {"shaanxi"};
  p = plan_request(w, e, 3, src, 2, one, 1);
  assert_int_equal(p->n_capacity, 1);
  assert_int_equal(p->n_refused_sources, 2);
  assert_non_null(strstr(p->refusal, "2 of 2 sources would not move: hubei: shaanxi would need "));
  assert_non_null(strstr(p->refusal, "; guangdong: shaanxi would need "));
  assert_int_equal(w->n_sent, sent);
  assert_int_equal(world_count_rec(w, ENGINE_REC_CUTOVER_NEW, NULL), 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A dry run or a plan is not an action: refused for capacity, for a bad
 * site, for no such cutover or schedule, it is answered and writes
 * nothing (no *-refused audit entry, which in a database outage went into
 * the outage journal and, that full, counted as a refused write). The
 * same cutover asked for real is refused and audited. */
static void test_refused_dry_runs_and_plans_write_nothing(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_staff(w, "shaanxi", 3);
  char *src[] = {"hubei"}, *hub[] = {"shaanxi"}, *nowhere[] = {"atlantis"};
  Nirc__CutoverRequest c = drill(src, 1, hub, 1, true);
  engine_req_t rq = {.client = w, .request_id = 1, .operator_name = "operator:alice", .label = "t"};
  size_t recs = w->n_rec, sent = w->n_sent;
  engine_op_cutover(e, &rq, &c); /* refused by the capacity check */
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_non_null(strstr(w->rep[w->n_rep - 1].msg, "would need"));
  c.hubs = nowhere; /* refused as invalid */
  rq.request_id = 2;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  c.hubs = hub;
  c.n_sources = 0;
  c.amend_id = 99; /* no such cutover */
  rq.request_id = 3;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  Nirc__PlanRequest pq = NIRC__PLAN_REQUEST__INIT;
  pq.schedule_name = "nope";
  rq.request_id = 4;
  engine_op_plan(e, &rq, &pq);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  pq.schedule_name = NULL;
  pq.sources = src;
  pq.n_sources = 1;
  pq.hubs = nowhere;
  pq.n_hubs = 1;
  rq.request_id = 5;
  engine_op_plan(e, &rq, &pq);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_INVALID);
  world_flush(w);
  assert_int_equal(w->n_rep, 5);
  assert_int_equal(w->n_rec, recs);
  assert_int_equal(w->n_sent, sent);

  /* For real: refused by the check, and that refusal is on record. */
  c.n_sources = 1;
  c.amend_id = 0;
  c.dry_run = 0;
  rq.request_id = 6;
  engine_op_cutover(e, &rq, &c);
  world_flush(w);
  assert_int_equal(w->rep[w->n_rep - 1].code, NIRC__ERROR_CODE__ERROR_CODE_REFUSED);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover-refused"), 1);
  assert_int_equal(w->n_rec, recs + 1);
  engine_free(e);
  world_free(w);
}

/* --force into a hub predicted to fail: the dry run and the real cutover
 * say which prediction they override, and the audit record keeps it; a
 * cutover that passes the check says nothing of the kind. */
static void test_force_past_the_check_warns_and_is_audited(void **state) {
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_staff(w, "shaanxi", 3);
  char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  Nirc__CutoverRequest c = drill(src, 1, hub, 1, true);
  c.force = 1;
  engine_req_t rq = {.client = w, .request_id = 1, .operator_name = "operator:alice", .label = "t"};
  size_t sent = w->n_sent;
  engine_op_cutover(e, &rq, &c);
  const Nirc__MoveReply *m = w->rep[w->n_rep - 1].full->move;
  assert_true(w->rep[w->n_rep - 1].ok);
  assert_true(m->dry_run);
  assert_int_equal(m->n_forced_over, 1);
  const Nirc__CapacityPrediction *f = m->forced_over[0];
  assert_string_equal(f->hub, "shaanxi");
  assert_int_equal(f->agents, 3);
  assert_true(f->agents_needed > 3);
  char want[256];
  snprintf(want, sizeof want,
           "forced past the capacity check: shaanxi predicted SL 0%% (needs %u agents, has 3)",
           f->agents_needed);
  assert_string_equal(m->force_warning, want);
  assert_true(hub_row(m->plan, "shaanxi")->forced);
  assert_string_equal(m->plan->moves[0]->reason, "would be cutover: drill");
  assert_int_equal(w->n_sent, sent);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover"), 0);

  /* The real one: moved, warned, audited with the prediction. */
  c.dry_run = 0;
  rq.request_id = 2;
  engine_op_cutover(e, &rq, &c);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  assert_int_equal(world_count_rec(w, ENGINE_REC_AUDIT, "cutover"), 1);
  const char *detail = NULL;
  for (size_t k = 0; k < w->n_rec; k++)
    if (strcmp(w->rec[k].action, "cutover") == 0) detail = w->rec[k].detail;
  char part[160];
  snprintf(part, sizeof part, "\"forced_over\":[{\"hub\":\"shaanxi\",");
  assert_non_null(strstr(detail, part));
  snprintf(part, sizeof part, "\"agents\":3,\"agents_needed\":%u,\"sl_after\":0.0",
           f->agents_needed);
  assert_non_null(strstr(detail, part));
  world_ack(w, e, sent, NULL);
  world_flush(w);
  const world_reply_t *x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->request_id, 2);
  assert_true(x->ok);
  assert_string_equal(x->full->move->force_warning, want);
  assert_int_equal(x->full->move->n_forced_over, 1);

  /* Forced where the check passes: nothing overridden, nothing said. */
  char *src2[] = {"guangdong"}, *hub2[] = {"henan"};
  c.sources = src2;
  c.hubs = hub2;
  rq.request_id = 3;
  size_t from = w->n_sent;
  engine_op_cutover(e, &rq, &c);
  for (size_t k = 0; k < w->n_rec; k++)
    if (strcmp(w->rec[k].action, "cutover") == 0) detail = w->rec[k].detail;
  assert_non_null(strstr(detail, "\"forced_over\":[]"));
  world_ack(w, e, from, NULL);
  world_flush(w);
  x = &w->rep[w->n_rep - 1];
  assert_int_equal(x->request_id, 3);
  assert_string_equal(x->full->move->force_warning, "");
  assert_int_equal(x->full->move->n_forced_over, 0);
  world_flush(w);
  engine_free(e);
  world_free(w);
}

/* A leader dies between two waves of a schedule: the new one does not
 * start the next wave at once, but verifies the one in place for the
 * verification window first, as the old leader would have (wave progress
 * is not stored; this is its stand-in). */
static void test_takeover_between_waves_verifies_anew(void **state) {
  (void)state;
  schedule_t sc = {
      .id = 7, .start_min = 660, .end_min = 1380, .days = 0x7f, .wave_size = 1, .enabled = true};
  nirc_strlcpy(sc.name, "noon", sizeof sc.name);
  nirc_strlcpy(sc.tz, "Asia/Shanghai", sizeof sc.tz);
  assert_int_equal(rules_parse_slug_list("hubei,guangdong", &sc.sources, NULL, 0), 0);
  assert_int_equal(rules_parse_slug_list("shaanxi", &sc.hubs, NULL, 0), 0);
  world_t *w = world_new();
  engine_t *a = world_engine(w);
  assert_int_equal(engine_load_rules(a, 5, NULL, 0, &sc, 1, NULL, 0, 100), 0);
  engine_start_leading(a, 0);
  world_connect_all(w, a, NULL);
  world_tick(w, a, 200); /* the first wave: one source */
  world_ack(w, a, 0, NULL);
  world_flush(w);
  world_tick(w, a, 2000); /* acknowledged, 8 s of the window to go */
  size_t n = w->sites->n, moved = 0;
  for (size_t i = 0; i < n; i++)
    moved += route_share_of(&w->applied[i], "shaanxi") == 1000 && i != world_index(w, "shaanxi");
  assert_int_equal(moved, 1);
  engine_free(a);

  for (size_t i = 0; i < n; i++) {
    sites_on_link_down(&w->sites->v[i], w->now);
    w->sites->v[i].conn = NULL;
  }
  size_t from = w->n_sent;
  engine_t *b = world_engine(w);
  assert_int_equal(engine_load_rules(b, 6, NULL, 0, &sc, 1, NULL, 0, 100), 0);
  engine_start_leading(b, 0);
  world_connect_all(w, b, w->applied);
  for (int t = 0; t < 45; t++) { /* 9 s: inside the window */
    world_tick(w, b, 200);
    world_ack(w, b, from, NULL);
  }
  moved = 0;
  for (size_t i = 0; i < n; i++)
    moved += route_share_of(&w->applied[i], "shaanxi") == 1000 && i != world_index(w, "shaanxi");
  assert_int_equal(moved, 1);
  world_tick(w, b, 1200); /* past the window: the next wave */
  world_ack(w, b, from, NULL);
  moved = 0;
  for (size_t i = 0; i < n; i++)
    moved += route_share_of(&w->applied[i], "shaanxi") == 1000 && i != world_index(w, "shaanxi");
  assert_int_equal(moved, 2);
  world_flush(w);
  engine_free(b);
  world_free(w);
}

/* An idle registry is not planned on every tick: with no report, link,
 * ack or rule change a tick plans once a second; any input plans on the
 * next tick; a cutover's expiry is acted on in the tick it falls in. */
static void test_idle_ticks_plan_once_a_second(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_tick(w, e, 5000); /* settled: planned */
  uint64_t p0 = engine_stats(e)->plans;
  for (int k = 0; k < 4; k++)
    world_tick(w, e, 200); /* 800 ms after the last plan, nothing new */
  assert_int_equal(engine_stats(e)->plans, p0);
  world_tick(w, e, 200); /* a second: planned again */
  assert_int_equal(engine_stats(e)->plans, p0 + 1);
  /* A report's figures wait for the second (at 20,000 sites reporting
   * every second, a plan per tick for them cost a fifth of a core)... */
  world_staff(w, "henan", 7); /* a report */
  world_tick(w, e, 200);
  assert_int_equal(engine_stats(e)->plans, p0 + 1);
  for (int k = 0; k < 4; k++)
    world_tick(w, e, 200);
  assert_int_equal(engine_stats(e)->plans, p0 + 2);
  /* ...a link lost is planned on at once... */
  world_link_down(w, e, "sichuan");
  world_tick(w, e, 200);
  assert_int_equal(engine_stats(e)->plans, p0 + 3);
  /* ...and so is a PBX that became unreadable. */
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = "henan";
  r.timestamp_ms = w->now;
  r.interval_ms = 60000;
  r.pbx_unreadable = true;
  site_minute_t flushed;
  sites_on_report(sites_find(w->sites, "henan"), &r, w->now, w->now, &flushed);
  world_tick(w, e, 200);
  assert_int_equal(engine_stats(e)->plans, p0 + 4);

  /* A cutover that expires between two ticks: home in that tick. */
  const char *src[] = {"hubei"}, *hub[] = {"shaanxi"};
  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = (char **)src;
  c.n_sources = 1;
  c.hubs = (char **)hub;
  c.n_hubs = 1;
  c.reason = "expires";
  c.expires_in_ms = 3000;
  engine_req_t rq = {.client = w, .request_id = 7, .operator_name = "operator:alice"};
  engine_op_cutover(e, &rq, &c);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  for (int k = 0; k < 14; k++)
    world_tick(w, e, 200); /* 2.8 s */
  assert_int_equal(route_share_of(world_last(w, "hubei"), "shaanxi"), 1000);
  world_tick(w, e, 200); /* 3.0 s: expired, and home at once */
  assert_int_equal(route_share_of(world_last(w, "hubei"), "hubei"), 1000);
  engine_free(e);
  world_free(w);
}

/* A directive nobody acknowledges is resent every ack_timeout (2 s in the
 * test options), the same version, max_resends (3) times; then it fails,
 * its ack is recorded as a timeout and the source is rolled back home.
 * The tick looks for late acks only while some directive is pending (an
 * idle registry is not scanned): this is the path that must not be
 * skipped. */
static size_t sent_to(world_t *w, const char *slug, uint64_t version) {
  size_t n = 0, i = world_index(w, slug);
  for (size_t k = 0; k < w->n_sent; k++)
    n += w->sent[k].site == i && w->sent[k].route.version == version;
  return n;
}

static void test_unacknowledged_directive_resent_then_failed(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_tick(w, e, 5000);
  world_tick(w, e, 5000); /* settled and idle: nothing pending */
  const char *src[] = {"hunan"}, *hub[] = {"shaanxi"};
  world_cutover(w, e, 9, src, 1, hub, 1, 0);
  uint64_t v = engine_site_dir(e, world_index(w, "hunan"))->target.version;
  assert_int_equal(sent_to(w, "hunan", v), 1);
  for (unsigned k = 1; k <= 3; k++) {
    world_tick(w, e, 1800);
    assert_int_equal(sent_to(w, "hunan", v), k); /* not yet */
    world_tick(w, e, 200);
    assert_int_equal(sent_to(w, "hunan", v), k + 1); /* resent, same version */
  }
  assert_int_equal(world_count_rec(w, ENGINE_REC_ACK, NULL), 0);
  world_tick(w, e, 2000); /* out of resends: failed and rolled back */
  assert_int_equal(route_share_of(world_last(w, "hunan"), "hunan"), 1000);
  assert_true(world_count_rec(w, ENGINE_REC_ACK, NULL) >= 1); /* the timeout, recorded */
  /* Both of the move's directives went unanswered: hunan's and the hub's. */
  assert_int_equal(engine_stats(e)->timeouts, 2);
  assert_int_equal(engine_stats(e)->resends, 6);
  world_flush(w); /* the store completes what it took */
  engine_free(e);
  world_free(w);
}

/* A cutover restored while its sites acknowledge: its reply says it has
 * ended, not the end it had ("until ...") nor "open-ended". */
static void test_reply_of_a_cutover_restored_meanwhile(void **state) {
  (void)state;
  world_t *w = world_new();
  engine_t *e = world_leading(w);
  world_cutover_for(w, e, 1, "hubei", "shaanxi", 3600000);
  char *names[] = {"hubei"};
  Nirc__RestoreRequest r = NIRC__RESTORE_REQUEST__INIT;
  r.sources = names;
  r.n_sources = 1;
  r.reason = "drill over";
  engine_req_t rq = {.client = w, .request_id = 2, .operator_name = "operator:bob", .label = "t"};
  engine_op_restore(e, &rq, &r);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  world_ack(w, e, 0, NULL);
  world_flush(w);
  const Nirc__MoveReply *m = NULL;
  for (size_t k = 0; k < w->n_rep; k++)
    if (w->rep[k].request_id == 1 && w->rep[k].full) m = w->rep[k].full->move;
  assert_non_null(m);
  assert_true(m->cutover_id != 0);
  assert_string_equal(m->cutover_ended, "restored");
  assert_true(m->expires_ms == 0);
  engine_free(e);
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reply_of_a_cutover_restored_meanwhile),
      cmocka_unit_test(test_cutover_applied_and_answered),
      cmocka_unit_test(test_schedule_moves_in_waves),
      cmocka_unit_test(test_failed_move_rolls_back),
      cmocka_unit_test(test_hub_loss_moves_to_next_hub),
      cmocka_unit_test(test_failover_reload_routes_the_same),
      cmocka_unit_test(test_takeover_between_waves_verifies_anew),
      cmocka_unit_test(test_no_directive_without_leadership),
      cmocka_unit_test(test_change_refused_when_it_cannot_be_recorded),
      cmocka_unit_test(test_cutover_forgotten_when_its_rule_is_refused),
      cmocka_unit_test(test_move_reported_not_durable),
      cmocka_unit_test(test_acks_bounded_by_directives_sent),
      cmocka_unit_test(test_readmit_after_failed_move),
      cmocka_unit_test(test_amend_changes_share_and_hub_in_place),
      cmocka_unit_test(test_overflow_engagement_survives_a_takeover),
      cmocka_unit_test(test_input_errors_invalid_and_quoted_escaped),
      cmocka_unit_test(test_agent_failure_text_stays_utf8),
      cmocka_unit_test(test_plan_and_dry_run_are_exact),
      cmocka_unit_test(test_refused_dry_runs_and_plans_write_nothing),
      cmocka_unit_test(test_journaled_change_names_its_controller),
      cmocka_unit_test(test_force_past_the_check_warns_and_is_audited),
      cmocka_unit_test(test_idle_ticks_plan_once_a_second),
      cmocka_unit_test(test_unacknowledged_directive_resent_then_failed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
