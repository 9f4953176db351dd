/* nircctl's words for a move's outcome (controller/ctl_move.c), on
 * hand-made replies: each verdict is one the counts bear out ("partially
 * applied" only when some site applied it), and its exit code. */
#include "ctl_args.h"
#include "ctl_move.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_SITES 8

typedef struct {
  Nirc__MoveReply m;
  Nirc__SiteOutcome o[MAX_SITES], *op[MAX_SITES];
} fixture_t;

/* One outcome per character of `results`: 'a' applied, 'f' failed,
 * 'p' pending, 'H' applied by a site the reply marks as a hub; the sites
 * are named s0, s1, ... except the first, shaanxi. */
static void make(fixture_t *f, const char *results) {
  static char names[MAX_SITES][8];
  memset(f, 0, sizeof *f);
  nirc__move_reply__init(&f->m);
  f->m.cutover_id = 1000001;
  f->m.elapsed_ms = 10053;
  for (size_t i = 0; results[i] && i < MAX_SITES; i++) {
    Nirc__SiteOutcome *o = &f->o[i];
    nirc__site_outcome__init(o);
    snprintf(names[i], sizeof names[i], "s%zu", i);
    o->site = i == 0 ? "shaanxi" : names[i];
    o->detail = "";
    switch (results[i]) {
    case 'H':
      o->hub = 1;
      /* fall through */
    case 'a':
      o->result = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
      f->m.applied++;
      break;
    case 'f':
      o->result = NIRC__ACK_RESULT__ACK_RESULT_FAILED;
      o->detail = "site is offline: directive not delivered";
      f->m.failed++;
      break;
    default:
      o->pending = 1;
      o->detail = "not delivered: the site is offline";
      f->m.pending++;
    }
    f->op[i] = o;
    f->m.n_outcomes++;
  }
  f->m.outcomes = f->op;
}

/* What ctl_move_print and ctl_move_say write, in one string. */
static char *words(const fixture_t *f) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_move_print(out, &f->m, "Asia/Shanghai");
  ctl_move_say(out, &f->m);
  fclose(out);
  return text;
}

static void expect(const char *results, ctl_move_verdict_t verdict, int code, const char *said,
                   const char *counts) {
  fixture_t f;
  make(&f, results);
  assert_int_equal(ctl_move_verdict(&f.m), verdict);
  assert_int_equal(ctl_move_exit(&f.m, false), code);
  char *text = words(&f);
  if (said && !strstr(text, said)) fail_msg("%s: no '%s' in:\n%s", results, said, text);
  if (!strstr(text, counts)) fail_msg("%s: no '%s' in:\n%s", results, counts, text);
  /* "partially" only when some site applied the move. */
  if (f.m.applied == 0 && strstr(text, "partially"))
    fail_msg("%s: 'partially' with nothing applied:\n%s", results, text);
  if (!said && strstr(text, "nircctl:"))
    fail_msg("%s: a verdict for a done move:\n%s", results, text);
  free(text);
}

static void test_each_verdict_is_true(void **state) {
  (void)state;
  /* The audit's case: it said "partially applied" (exit 4) for this. */
  expect("ff", CTL_MOVE_NOT_APPLIED, EXIT_NOT_APPLIED,
         "nircctl: not applied: no site applied it, all 2 failed", "0 applied, 2 failed in");
  expect("aa", CTL_MOVE_APPLIED, EXIT_DONE, NULL, "cutover 1000001: 2 applied, 0 failed in");
  /* The hub applied, every source failed: the verdict names the hub. */
  expect("afff", CTL_MOVE_PARTIAL, EXIT_PARTIAL,
         "nircctl: partially applied: applied at shaanxi; 3 failed (the lines above say why)",
         "1 applied, 3 failed in 10053 ms");
  expect("ap", CTL_MOVE_PARTIAL, EXIT_PARTIAL, "partially applied: applied at shaanxi; 1 pending",
         "1 applied, 0 failed, 1 pending");
  expect("pp", CTL_MOVE_PENDING, EXIT_PARTIAL, "nircctl: not applied yet: all 2 pending",
         "0 applied, 0 failed, 2 pending");
  expect("fp", CTL_MOVE_NOT_YET, EXIT_PARTIAL,
         "nircctl: not applied: no site applied it yet; 1 failed, 1 pending",
         "0 applied, 1 failed, 1 pending");
  /* A restore that had nothing to send. */
  expect("", CTL_MOVE_APPLIED, EXIT_DONE, NULL, "0 applied, 0 failed in");
}

/* When the reply says which site is the hub, the hub's "applied" alone is
 * not the move applied: no calls moved. Before, "Hfff" said "partially
 * applied" (exit 4) although every source had failed. */
static void test_a_hub_alone_applied_is_not_the_move(void **state) {
  (void)state;
  expect("Hfff", CTL_MOVE_NOT_APPLIED, EXIT_NOT_APPLIED,
         "nircctl: not applied: no calls moved: no source applied it, 3 failed (the lines above "
         "say why); only the hub part was applied, at shaanxi",
         "1 applied, 3 failed in");
  expect("Hfp", CTL_MOVE_NOT_YET, EXIT_PARTIAL, "no source applied it yet; 1 failed, 1 pending",
         "1 applied, 1 failed, 1 pending");
  expect("Haf", CTL_MOVE_PARTIAL, EXIT_PARTIAL, "partially applied: applied at shaanxi, s1",
         "2 applied, 1 failed");
  expect("Ha", CTL_MOVE_APPLIED, EXIT_DONE, NULL, "2 applied, 0 failed");
  /* Only hubs in the reply (their sources had nothing to change): judged
   * on them all. */
  expect("H", CTL_MOVE_APPLIED, EXIT_DONE, NULL, "1 applied, 0 failed");
}

/* Done everywhere but not recorded durably is not done; nothing applied
 * stays "not applied" whatever the record. */
static void test_not_durable(void **state) {
  (void)state;
  fixture_t f;
  make(&f, "aa");
  assert_int_equal(ctl_move_exit(&f.m, true), EXIT_PARTIAL);
  make(&f, "ff");
  assert_int_equal(ctl_move_exit(&f.m, true), EXIT_NOT_APPLIED);
}

/* The sites that did not apply, one line each, escaped; the applied ones
 * named in the verdict, at most five. */
static void test_lines_and_names(void **state) {
  (void)state;
  fixture_t f;
  make(&f, "aaaaaaaf");
  f.o[7].detail = "PBX \x1b[31mdown";
  char *text = words(&f);
  assert_non_null(strstr(text, "  s7           failed: PBX \\x1b[31mdown\n"));
  assert_null(strstr(text, "s1           "));
  assert_non_null(strstr(text, "applied at shaanxi, s1, s2, s3, s4 and 2 more; 1 failed"));
  free(text);
  assert_string_equal(ctl_move_outcome_word(&f.o[0]), "applied");
  make(&f, "p");
  assert_string_equal(ctl_move_outcome_word(&f.o[0]), "pending");
}

/* A cutover with an end says it ("until ... (zone)"), as status and next
 * do; an open-ended one says what ends it; a reply of no cutover (restore,
 * readmit) says neither. */
static void test_cutover_end_said(void **state) {
  (void)state;
  fixture_t f;
  make(&f, "aa");
  f.m.expires_ms = 1579752000000LL + 90 * 60000; /* 2020-01-23 13:30 +08:00 */
  char *text = words(&f);
  const char *want = "cutover 1000001: 2 applied, 0 failed in 10053 ms; until 2020-01-23 13:30 "
                     "(Asia/Shanghai)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  f.m.expires_ms = 0;
  text = words(&f);
  want = "; open-ended (`nircctl restore --cutover 1000001` ends it)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  /* Restored while its sites acknowledged: no end, and not "open-ended". */
  f.m.cutover_ended = "restored";
  text = words(&f);
  want = "cutover 1000001: 2 applied, 0 failed in 10053 ms; since ended: restored (nircctl "
         "history says by whom)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  f.m.cutover_ended = "expired";
  f.m.expires_ms = 1579752000000LL + 90 * 60000;
  text = words(&f);
  want = "; since ended: expired at 2020-01-23 13:30 (Asia/Shanghai)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  f.m.cutover_ended = "";
  f.m.cutover_id = 0;
  text = words(&f);
  if (strstr(text, "until")) fail_msg("an end for no cutover:\n%s", text);
  free(text);
}

/* An exec apply_cmd killed at its timeout may have written the route
 * before it hung; without a read-back its agent says "outcome unknown".
 * Before, nircctl said "no calls moved" of such a source (found from
 * outside: the PBX had taken the route). */
static void test_outcome_unknown_is_not_no_calls_moved(void **state) {
  (void)state;
  fixture_t f;
  make(&f, "Hf");
  f.o[1].detail = "agent failed: outcome unknown: apply_cmd killed after 1000 ms timeout and the "
                  "PBX cannot be read back (unverified): it may have taken the route";
  f.o[1].outcome_unknown = 1; /* the agent's mark, which the verdict goes by */
  char *text = words(&f);
  if (strstr(text, "no calls moved")) fail_msg("said no calls moved:\n%s", text);
  if (!strstr(text, "nircctl: not applied: outcome unknown at s1"))
    fail_msg("does not say the outcome is unknown:\n%s", text);
  if (!strstr(text, "  s1           failed, outcome unknown (the PBX may have taken it): agent"))
    fail_msg("the site's line does not say the outcome is unknown:\n%s", text);
  free(text);
}

/* An apply the agent could not read back (an exec adapter without
 * verify_cmd) has its own line: "applied, unverified". Before, applied
 * sites had no line and only the history said unverified (audit T6a). */
static void test_unverified_apply_has_its_line(void **state) {
  (void)state;
  fixture_t f;
  make(&f, "aa");
  f.o[1].unverified = 1;
  f.o[1].detail = "unverified: no verify_cmd configured";
  char *text = words(&f);
  if (!strstr(text, "  s1           applied, unverified (no read-back of the PBX): unverified: no "
                    "verify_cmd configured\n"))
    fail_msg("does not say s1's apply is unverified:\n%s", text);
  if (strstr(text, "  shaanxi")) fail_msg("a verified apply got a line:\n%s", text);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cutover_end_said),
      cmocka_unit_test(test_each_verdict_is_true),
      cmocka_unit_test(test_not_durable),
      cmocka_unit_test(test_a_hub_alone_applied_is_not_the_move),
      cmocka_unit_test(test_lines_and_names),
      cmocka_unit_test(test_outcome_unknown_is_not_no_calls_moved),
      cmocka_unit_test(test_unverified_apply_has_its_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
