/* Unit tests for the database client's memory queue (controller/store/
 * query.c): urgent records (rules, directives, the audit trail) go ahead
 * of queued history and reads, behind the urgent ones before them; the
 * rest keep their order; a record sent back goes first; taking records out
 * by hand (the journal spill) keeps the queue's bookkeeping right. No
 * database: the queue does no I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

/* A record named by its statement ("h1": history, "U1": urgent, "r1": a
 * read or any other record, which nothing urgent passes). */
static query_t *rec(const char *name) {
  query_t *q = query_new(query_str(name), 0, NULL, query_str("k"));
  assert_non_null(q);
  q->urgent = name[0] == 'U';
  q->overtakable = name[0] == 'h';
  return q;
}

/* The queue's statements in order, space-separated, and its counts and
 * tail checked against a walk. */
static void expect(query_queue_t *qq, const char *want) {
  char got[256] = "";
  size_t n = 0;
  query_t *last = NULL;
  bool in_tail = false;
  for (query_t *q = qq->head; q; q = q->next) {
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", n ? " " : "", q->sql);
    if (q == qq->overtake) in_tail = true;
    /* Only history in the run urgent records overtake. */
    if (in_tail && !q->overtakable) fail_msg("%s inside the history run: %s", q->sql, got);
    last = q;
    n++;
  }
  assert_string_equal(got, want);
  assert_int_equal(qq->depth, n);
  assert_int_equal(qq->once, n);
  assert_ptr_equal(qq->tail, last);
  if (qq->overtake) assert_true(in_tail);
  /* The record before the history run is the one whose next it is. */
  if (qq->overtake && qq->before_overtake)
    assert_ptr_equal(qq->before_overtake->next, qq->overtake);
  if (qq->overtake && !qq->before_overtake) assert_ptr_equal(qq->head, qq->overtake);
}

static void drain(query_queue_t *qq) {
  while (qq->head)
    query_complete(query_queue_pop(qq), 0, "", NULL);
  assert_null(qq->overtake);
  assert_null(qq->tail);
}

static void test_urgent_overtakes_history_in_order(void **state) {
  (void)state;
  query_queue_t qq = {0};
  query_queue_push(&qq, rec("h1"));
  query_queue_push(&qq, rec("h2"));
  query_queue_push(&qq, rec("U1"));
  query_queue_push(&qq, rec("h3"));
  query_queue_push(&qq, rec("U2"));
  expect(&qq, "U1 U2 h1 h2 h3");
  query_t *q = query_queue_pop(&qq);
  assert_string_equal(q->sql, "U1");
  query_complete(q, 0, "", NULL);
  query_queue_push(&qq, rec("U3"));
  expect(&qq, "U2 U3 h1 h2 h3");
  drain(&qq);
}

static void test_only_urgent_or_only_history_is_fifo(void **state) {
  (void)state;
  query_queue_t qq = {0};
  query_queue_push(&qq, rec("U1"));
  query_queue_push(&qq, rec("U2"));
  expect(&qq, "U1 U2");
  assert_null(qq.overtake);
  drain(&qq);
  query_queue_push(&qq, rec("h1"));
  query_queue_push(&qq, rec("h2"));
  expect(&qq, "h1 h2");
  /* Popping the whole tail leaves nothing to overtake. */
  query_complete(query_queue_pop(&qq), 0, "", NULL);
  query_complete(query_queue_pop(&qq), 0, "", NULL);
  assert_null(qq.overtake);
  query_queue_push(&qq, rec("U1"));
  query_queue_push(&qq, rec("h3"));
  query_queue_push(&qq, rec("U2"));
  expect(&qq, "U1 U2 h3");
  drain(&qq);
}

static void test_sent_back_goes_first(void **state) {
  (void)state;
  query_queue_t qq = {0};
  query_queue_push(&qq, rec("h1"));
  query_queue_push_front(&qq, rec("h0")); /* a history write sent back */
  query_queue_push(&qq, rec("U1"));
  /* h0 was sent before anything urgent arrived: it stays first. */
  expect(&qq, "h0 U1 h1");
  drain(&qq);
  /* Into an empty queue, a history record sent back starts the tail. */
  query_queue_push_front(&qq, rec("h0"));
  query_queue_push(&qq, rec("U1"));
  expect(&qq, "U1 h0");
  drain(&qq);
  query_queue_push_front(&qq, rec("U0"));
  query_queue_push(&qq, rec("U1"));
  query_queue_push(&qq, rec("h1"));
  expect(&qq, "U0 U1 h1");
  drain(&qq);
}

/* A read (or a write that reads history) keeps its place: urgent records
 * queue behind it, and overtake only history queued after it. */
static void test_nothing_urgent_passes_a_read(void **state) {
  (void)state;
  query_queue_t qq = {0};
  query_queue_push(&qq, rec("h1"));
  query_queue_push(&qq, rec("r1"));
  query_queue_push(&qq, rec("U1"));
  expect(&qq, "h1 r1 U1");
  query_queue_push(&qq, rec("h2"));
  query_queue_push(&qq, rec("h3"));
  query_queue_push(&qq, rec("U2"));
  expect(&qq, "h1 r1 U1 U2 h2 h3");
  drain(&qq);
}

/* once_spill takes once-writes out of the middle of the list. */
static void test_taken_out_by_hand(void **state) {
  (void)state;
  query_queue_t qq = {0};
  query_queue_push(&qq, rec("U1"));
  query_queue_push(&qq, rec("h1"));
  query_queue_push(&qq, rec("h2"));
  /* Take h1 (the tail's first) out as once_spill does. */
  query_t *prev = qq.head, *q = prev->next;
  query_queue_unlinked(&qq, prev, q);
  prev->next = q->next;
  qq.depth--;
  qq.once--;
  query_complete(q, 0, "", NULL);
  assert_string_equal(qq.overtake->sql, "h2");
  query_queue_push(&qq, rec("U2"));
  expect(&qq, "U1 U2 h2");
  /* Take U2, the record just before the history, out the same way. */
  prev = qq.head;
  q = prev->next;
  query_queue_unlinked(&qq, prev, q);
  prev->next = q->next;
  qq.depth--;
  qq.once--;
  query_complete(q, 0, "", NULL);
  expect(&qq, "U1 h2");
  query_queue_push(&qq, rec("U3"));
  expect(&qq, "U1 U3 h2");
  /* A record sent back before the history at the head. */
  query_complete(query_queue_pop(&qq), 0, "", NULL);
  query_complete(query_queue_pop(&qq), 0, "", NULL);
  query_queue_push_front(&qq, rec("r0"));
  query_queue_push(&qq, rec("U4"));
  expect(&qq, "r0 U4 h2");
  drain(&qq);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_urgent_overtakes_history_in_order),
      cmocka_unit_test(test_only_urgent_or_only_history_is_fifo),
      cmocka_unit_test(test_sent_back_goes_first),
      cmocka_unit_test(test_nothing_urgent_passes_a_read),
      cmocka_unit_test(test_taken_out_by_hand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
