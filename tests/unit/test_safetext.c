/* Unit tests for safetext (common/safetext.c): text from peers and
 * operators checked and escaped before it reaches a terminal or a log.
 *
 * The check must find every forbidden class (C0 with tab, newline and
 * carriage return, DEL, C1, the line separators, the bidirectional
 * controls, bytes that are not UTF-8) at the right byte, and let Chinese
 * and punctuation through, including the neighbours of each forbidden
 * range. The escaper must show each of them visibly, leave everything
 * else alone, cut only between characters and escapes, always terminate,
 * and report the length it needed; its output is always clean. msgtext
 * (common/msgtext.c) must find an offender in any string of an operator
 * request, nested or repeated, and name the field for a person. A log
 * record (common/log.c) stays one line whatever its arguments hold. JSON
 * a person may read (common/jsonio.c: nircctl --json, /status.json, the
 * webhooks, the audit) carries DEL, C1 and the other forbidden characters
 * jansson leaves raw as \u escapes, and loads back to the same value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonio.h"
#include "log.h"
#include "msgtext.h"
#include "nirc.pb-c.h"
#include "safetext.h"

/* ---- the check ---------------------------------------------------------- */

static void assert_clean(const char *s) {
  safetext_hit_t hit;
  if (safetext_find(s, &hit))
    fail_msg("'%s' refused: kind %d, U+%04X at %zu", s, hit.kind, (unsigned)hit.cp, hit.at);
  assert_int_equal(hit.kind, SAFETEXT_OK);
}

static void assert_hit(const char *s, safetext_kind_t kind, uint32_t cp, size_t at) {
  safetext_hit_t hit;
  if (!safetext_find(s, &hit)) fail_msg("nothing found in a string with U+%04X", (unsigned)cp);
  assert_int_equal(hit.kind, kind);
  assert_int_equal(hit.cp, cp);
  assert_int_equal(hit.at, at);
}

static void test_clean_text_passes(void **state) {
  assert_clean(NULL);
  assert_clean("");
  assert_clean("Wuhan lockdown");
  assert_clean("武汉封城：全部转西安"); /* Chinese and a full-width colon */
  assert_clean("peak: 30% to Xi'an — \"now\" (C:\\path) <b>&amp;</b> ~`^|{}");
  assert_clean("é ñ ü € 😀"); /* 2-, 3- and 4-byte characters */
  /* The neighbours of each forbidden range are ordinary text. */
  assert_clean(" ~");               /* U+0020, U+007E */
  assert_clean("\xc2\xa0");         /* U+00A0 no-break space, just past C1 */
  assert_clean("\xd8\x9b\xd8\x9d"); /* U+061B, U+061D around U+061C */
  assert_clean("\xe2\x80\x8d");     /* U+200D zero-width joiner */
  assert_clean("\xe2\x80\xa7");     /* U+2027, before the separators */
  assert_clean("\xe2\x80\xaf");     /* U+202F, after the embeddings */
  assert_clean("\xe2\x81\xa5");     /* U+2065, before the isolates */
  assert_clean("\xe2\x81\xaa");     /* U+206A, after them */
  assert_clean("\xef\xbf\xbd");     /* U+FFFD */
  assert_clean("\xf4\x8f\xbf\xbf"); /* U+10FFFF, the last code point */
}

static void test_c0_and_del_found(void **state) {
  assert_hit("a\tb", SAFETEXT_CONTROL, '\t', 1);
  assert_hit("line\nforged", SAFETEXT_CONTROL, '\n', 4);
  assert_hit("\rover", SAFETEXT_CONTROL, '\r', 0);
  assert_hit("red \x1b[31m", SAFETEXT_CONTROL, 0x1b, 4);
  assert_hit("\x01", SAFETEXT_CONTROL, 0x01, 0);
  assert_hit("x\x1f", SAFETEXT_CONTROL, 0x1f, 1);
  assert_hit("del\x7f", SAFETEXT_CONTROL, 0x7f, 3);
  /* The first one wins. */
  assert_hit("a\x7f\n", SAFETEXT_CONTROL, 0x7f, 1);
}

static void test_c1_and_separators_found(void **state) {
  assert_hit("\xc2\x80", SAFETEXT_CONTROL, 0x80, 0);
  assert_hit("csi \xc2\x9b"
             "31m",
             SAFETEXT_CONTROL, 0x9b, 4);
  assert_hit("武\xc2\x9f", SAFETEXT_CONTROL, 0x9f, 3);
  assert_hit("a\xe2\x80\xa8", SAFETEXT_CONTROL, 0x2028, 1);
  assert_hit("\xe2\x80\xa9", SAFETEXT_CONTROL, 0x2029, 0);
}

static void test_bidi_controls_found(void **state) {
  static const struct {
    const char *utf8;
    uint32_t cp;
  } bidi[] = {
      {"\xd8\x9c", 0x061c},     {"\xe2\x80\x8e", 0x200e}, {"\xe2\x80\x8f", 0x200f},
      {"\xe2\x80\xaa", 0x202a}, {"\xe2\x80\xab", 0x202b}, {"\xe2\x80\xac", 0x202c},
      {"\xe2\x80\xad", 0x202d}, {"\xe2\x80\xae", 0x202e}, {"\xe2\x81\xa6", 0x2066},
      {"\xe2\x81\xa7", 0x2067}, {"\xe2\x81\xa8", 0x2068}, {"\xe2\x81\xa9", 0x2069},
  };
  for (size_t i = 0; i < sizeof bidi / sizeof bidi[0]; i++) {
    char s[32];
    snprintf(s, sizeof s, "peak%s!", bidi[i].utf8);
    assert_hit(s, SAFETEXT_BIDI, bidi[i].cp, 4);
  }
}

static void test_bad_utf8_found(void **state) {
  assert_hit("\xff", SAFETEXT_BAD_BYTE, 0xff, 0);
  assert_hit("ok\x80", SAFETEXT_BAD_BYTE, 0x80, 2);           /* lone continuation */
  assert_hit("\xc0\xaf", SAFETEXT_BAD_BYTE, 0xc0, 0);         /* overlong '/' */
  assert_hit("\xc1\xbf", SAFETEXT_BAD_BYTE, 0xc1, 0);         /* overlong */
  assert_hit("\xe0\x80\xaf", SAFETEXT_BAD_BYTE, 0xe0, 0);     /* overlong, 3 bytes */
  assert_hit("\xf0\x80\x80\xaf", SAFETEXT_BAD_BYTE, 0xf0, 0); /* overlong, 4 bytes */
  assert_hit("\xed\xa0\x80", SAFETEXT_BAD_BYTE, 0xed, 0);     /* a surrogate */
  assert_hit("\xf4\x90\x80\x80", SAFETEXT_BAD_BYTE, 0xf4, 0); /* above U+10FFFF */
  assert_hit("\xf5\x80\x80\x80", SAFETEXT_BAD_BYTE, 0xf5, 0);
  assert_hit("武\xe6\xad", SAFETEXT_BAD_BYTE, 0xe6, 3); /* cut at the end */
  assert_hit("\xe6"
             "a",
             SAFETEXT_BAD_BYTE, 0xe6, 0); /* cut by ASCII */
  assert_hit("\xe6\xad\xa6\xe6\xad"
             "x",
             SAFETEXT_BAD_BYTE, 0xe6, 3);
}

static void test_describe_and_check_name_the_fix(void **state) {
  safetext_hit_t hit;
  char buf[96], err[160];
  assert_true(safetext_find("peak\xe2\x80\xae", &hit));
  assert_string_equal(safetext_describe(&hit, buf, sizeof buf),
                      "a control character (U+202E at byte 5)");
  assert_false(safetext_check("peak\xe2\x80\xae", "reason", err, sizeof err));
  assert_string_equal(err, "the reason contains a control character (U+202E at byte 5); remove it");
  assert_false(safetext_check("a\x1b", "schedule name", err, sizeof err));
  assert_string_equal(
      err, "the schedule name contains a control character (U+001B at byte 2); remove it");
  assert_false(safetext_check("ab\xff", "reason", err, sizeof err));
  assert_string_equal(err, "the reason contains a byte that is not UTF-8 (0xFF at byte 3); set "
                           "your terminal to UTF-8 and type it again");
  strcpy(err, "untouched");
  assert_true(safetext_check("武汉封城", "reason", err, sizeof err));
  assert_string_equal(err, "untouched");
  /* A short buffer cuts the message, never overflows it. */
  assert_false(safetext_check("\n", "reason", err, 8));
  assert_string_equal(err, "the rea");
}

/* ---- the escaper --------------------------------------------------------- */

static void assert_escaped(const char *in, const char *want) {
  char out[256];
  size_t need = safetext_escape(in, out, sizeof out);
  assert_string_equal(out, want);
  assert_int_equal(need, strlen(want));
}

static void test_escape_shows_each_class(void **state) {
  assert_escaped(NULL, "");
  assert_escaped("", "");
  assert_escaped("武汉封城 (Wuhan) — 50% \\ 'ok'", "武汉封城 (Wuhan) — 50% \\ 'ok'");
  assert_escaped("a\tb\nc\rd", "a\\tb\\nc\\rd");
  assert_escaped("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m");
  assert_escaped("\x01\x1f\x7f", "\\x01\\x1f\\x7f");
  assert_escaped("\xc2\x80\xc2\x9b"
                 "31m\xc2\x9f",
                 "\\u{80}\\u{9b}31m\\u{9f}");
  assert_escaped("\xe2\x80\xa8\xe2\x80\xa9", "\\u{2028}\\u{2029}");
  assert_escaped("peak\xe2\x80\xae", "peak\\u{202e}");
  assert_escaped("\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f\xe2\x81\xa6\xe2\x81\xa9",
                 "\\u{61c}\\u{200e}\\u{200f}\\u{2066}\\u{2069}");
  assert_escaped("\xff\xfe", "\\xff\\xfe");
  assert_escaped("\xed\xa0\x80", "\\xed\\xa0\\x80"); /* a surrogate: three bad bytes */
  assert_escaped("武\xe6\xad", "武\\xe6\\xad");      /* a character cut short */
  /* A fake log line stays on the line it came in. */
  assert_escaped("trunk down\n12:00:00.000Z info  nircd [ops] forged",
                 "trunk down\\n12:00:00.000Z info  nircd [ops] forged");
}

static void test_escape_cuts_only_between_units(void **state) {
  char out[16];
  /* Exactly fits: "ab\x1b" is 6 bytes escaped, 7 with the NUL. */
  memset(out, '#', sizeof out);
  assert_int_equal(safetext_escape("ab\x1b", out, 7), 6);
  assert_string_equal(out, "ab\\x1b");
  /* One byte short: the whole escape goes, not part of it. */
  memset(out, '#', sizeof out);
  assert_int_equal(safetext_escape("ab\x1b", out, 6), 6);
  assert_string_equal(out, "ab");
  assert_int_equal(safetext_escape("ab\x1b", out, 4), 6);
  assert_string_equal(out, "ab");
  /* \u{202e} is 8 bytes: with 8 of room (9 with the NUL) it fits. */
  assert_int_equal(safetext_escape("\xe2\x80\xae", out, 9), 8);
  assert_string_equal(out, "\\u{202e}");
  assert_int_equal(safetext_escape("\xe2\x80\xae", out, 8), 8);
  assert_string_equal(out, "");
  /* A Chinese character is never split: 武汉 is 6 bytes. */
  assert_int_equal(safetext_escape("武汉", out, 7), 6);
  assert_string_equal(out, "武汉");
  assert_int_equal(safetext_escape("武汉", out, 6), 6);
  assert_string_equal(out, "武");
  assert_int_equal(safetext_escape("武汉", out, 3), 6);
  assert_string_equal(out, "");
  /* Nothing after a cut: a short unit later does not slip in. */
  assert_int_equal(safetext_escape("a\x1b"
                                   "b",
                                   out, 4),
                   6);
  assert_string_equal(out, "a");
  /* The smallest buffers. */
  assert_int_equal(safetext_escape("abc", out, 1), 3);
  assert_string_equal(out, "");
  out[0] = '#';
  assert_int_equal(safetext_escape("abc", out, 0), 3);
  assert_int_equal(out[0], '#'); /* nothing written at all */
  assert_int_equal(safetext_escape("abc", out, 2), 3);
  assert_string_equal(out, "a");
}

/* Whatever goes in, what comes out is clean, terminated, within bounds,
 * and as long as reported when nothing was cut. */
static void test_escape_output_is_always_clean(void **state) {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  char in[64], out[96];
  static const unsigned char pool[] = {0x00, 0x01, '\t', '\n', '\r', 0x1b, '[',  'a',  0x7f,
                                       0x80, 0x9b, 0xc2, 0xe2, 0x80, 0xae, 0xe6, 0xad, 0xa6,
                                       0xf0, 0x9f, 0x98, 0x80, 0xff, 0xed, 0xa0, '\\'};
  for (int round = 0; round < 20000; round++) {
    size_t n = 0;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t len = (size_t)(x % (sizeof in - 1));
    for (; n < len; n++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      in[n] = (char)pool[x % sizeof pool];
      if (in[n] == '\0') in[n] = 'z';
    }
    in[n] = '\0';
    size_t room = 1 + (size_t)((x >> 20) % sizeof out);
    memset(out, '#', sizeof out);
    size_t need = safetext_escape(in, out, room);
    size_t got = strlen(out);
    assert_true(got < room);
    assert_false(safetext_find(out, NULL));
    if (need < room)
      assert_int_equal(got, need);
    else
      assert_true(got < need);
  }
}

/* ---- msgtext: every string of a request ---------------------------------- */

static void test_msgtext_names_the_field(void **state) {
  char err[200];
  char *src[] = {"hubei", "guizhou"}, *hub[] = {"shaanxi"};
  Nirc__CutoverRequest cut = NIRC__CUTOVER_REQUEST__INIT;
  cut.sources = src;
  cut.n_sources = 2;
  cut.hubs = hub;
  cut.n_hubs = 1;
  cut.reason = "武汉封城 Wuhan lockdown";
  Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_CUTOVER;
  req.cutover = &cut;
  assert_true(msgtext_check(&req.base, err, sizeof err));
  assert_true(msgtext_check(NULL, err, sizeof err));

  cut.reason = "peak\xe2\x80\xae";
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_string_equal(err, "the reason contains a control character (U+202E at byte 5); remove it");
  cut.reason = "peak";
  src[1] = "gui\x1bzhou"; /* an element of a repeated field */
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_string_equal(err, "the list of sources contains a control character (U+001B at byte 4); "
                           "remove it");
  src[1] = "guizhou";

  /* A nested message: a schedule's name and time zone. */
  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  sp.name = "night\n";
  sp.tz = "Asia/Shanghai";
  Nirc__ScheduleRequest sr = NIRC__SCHEDULE_REQUEST__INIT;
  sr.op = NIRC__RULE_OP__RULE_OP_ADD;
  sr.spec = &sp;
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_SCHEDULE;
  req.schedule = &sr;
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_string_equal(err, "the schedule name contains a control character (U+000A at byte 6); "
                           "remove it");
  sp.name = "night";
  sp.tz = "Asia/\xc2\x9bShanghai";
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_non_null(strstr(err, "the time zone contains a control character (U+009B at byte 6)"));
  sp.tz = "Asia/Shanghai";
  assert_true(msgtext_check(&req.base, err, sizeof err));
  /* Only the oneof member that is set counts: the cutover is not sent. */
  cut.reason = "\x1b";
  assert_true(msgtext_check(&req.base, err, sizeof err));

  Nirc__OverflowRequest orq = NIRC__OVERFLOW_REQUEST__INIT;
  orq.op = NIRC__RULE_OP__RULE_OP_REMOVE;
  orq.name = "gd\xe2\x81\xa6";
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_OVERFLOW;
  req.overflow = &orq;
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_string_equal(err, "the overflow rule name contains a control character (U+2066 at byte "
                           "3); remove it");

  Nirc__HistoryRequest hq = NIRC__HISTORY_REQUEST__INIT;
  hq.actor = "alice\xff";
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_HISTORY;
  req.history = &hq;
  assert_false(msgtext_check(&req.base, err, sizeof err));
  assert_non_null(strstr(err, "the actor contains a byte that is not UTF-8 (0xFF at byte 6)"));
}

/* ---- a log record is one line --------------------------------------------- */

static void test_log_record_is_one_line(void **state) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  int saved = dup(STDERR_FILENO);
  fflush(stderr);
  dup2(fileno(tmp), STDERR_FILENO);
  log_set_program("nircd");
  log_error(LOG_SITE, "site=xizang\nforged", "directive failed: %s",
            "trunk \x1b[31mdown\n12:00:00.000Z error nircd [ops] forged \xc2\x9b \xe2\x80\xae");
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char buf[1024];
  rewind(tmp);
  size_t n = fread(buf, 1, sizeof buf - 1, tmp);
  fclose(tmp);
  buf[n] = '\0';
  assert_true(n > 0 && buf[n - 1] == '\n');
  assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one newline: the end of the record */
  assert_null(strchr(buf, 0x1b));
  assert_false(safetext_find(strtok(buf, "\n"), NULL));
  assert_non_null(strstr(buf, "site=xizang\\nforged directive failed: trunk \\x1b[31mdown"
                              "\\n12:00:00.000Z error nircd [ops] forged \\u{9b} \\u{202e}"));
}

/* ---- JSON for a reader ---------------------------------------------------- */

/* A rule name and a reason from the database (any bytes an UPDATE put
 * there) with DEL, a CSI (U+009B), a line separator and a bidirectional
 * override: jansson writes them raw, a terminal acts on them. */
static void test_json_text_escapes_controls(void **state) {
  (void)state;
  const char *name = "a\x7f"
                     "b\xc2\x9b"
                     "31m",
             *reason = "\xe2\x80\xa8x\xe2\x80\xae 中文 \\ é";
  json_t *j = json_pack("{s:s, s:s}", "name", name, "reason", reason);
  assert_non_null(j);
  char *t = jsonio_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  assert_non_null(t);
  assert_string_equal(t, "{\"name\":\"a\\u007Fb\\u009B31m\","
                         "\"reason\":\"\\u2028x\\u202E 中文 \\\\ é\"}");
  assert_false(safetext_find(t, NULL));
  json_error_t err;
  json_t *back = jsonio_loadb(t, strlen(t), 0, &err);
  assert_non_null(back);
  assert_string_equal(json_string_value(json_object_get(back, "name")), name);
  assert_string_equal(json_string_value(json_object_get(back, "reason")), reason);
  json_decref(back);
  free(t);
  /* nircctl's and the page's form: jansson escapes the non-ASCII (upper
   * case hex, as jsonio does), DEL is left to jsonio. */
  t = jsonio_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
  assert_non_null(t);
  assert_string_equal(t, "{\"name\":\"a\\u007Fb\\u009B31m\","
                         "\"reason\":\"\\u2028x\\u202E \\u4E2D\\u6587 \\\\ \\u00E9\"}");
  free(t);
  /* Indented (nircctl's documents, the agent's state file): the newlines
   * between tokens stay. */
  t = jsonio_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
  assert_non_null(t);
  assert_string_equal(t, "{\n \"name\": \"a\\u007Fb\\u009B31m\",\n \"reason\": "
                         "\"\\u2028x\\u202E \\u4E2D\\u6587 \\\\ \\u00E9\"\n}");
  free(t);
  /* Clean text is returned as jansson wrote it. */
  json_decref(j);
  j = json_pack("{s:s}", "site", "xizang 西藏");
  t = jsonio_dumps(j, JSON_COMPACT);
  assert_string_equal(t, "{\"site\":\"xizang 西藏\"}");
  free(t);
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clean_text_passes),
      cmocka_unit_test(test_c0_and_del_found),
      cmocka_unit_test(test_c1_and_separators_found),
      cmocka_unit_test(test_bidi_controls_found),
      cmocka_unit_test(test_bad_utf8_found),
      cmocka_unit_test(test_describe_and_check_name_the_fix),
      cmocka_unit_test(test_escape_shows_each_class),
      cmocka_unit_test(test_escape_cuts_only_between_units),
      cmocka_unit_test(test_escape_output_is_always_clean),
      cmocka_unit_test(test_msgtext_names_the_field),
      cmocka_unit_test(test_log_record_is_one_line),
      cmocka_unit_test(test_json_text_escapes_controls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
