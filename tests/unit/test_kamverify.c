/* kamverify: Kamailio's dispatcher.list answer read back and compared with
 * the set the agent asked for (issue 14: an apply is acknowledged only when
 * Kamailio routes as asked). The answers are Kamailio 5.6's shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "err.h"
#include "kamverify.h"

static json_t *answer(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j) fail_msg("bad test JSON: %s", je.text);
  return j;
}

#define DEST(uri, duid, w, flags)                                                                  \
  "{\"DEST\":{\"URI\":\"" uri "\",\"FLAGS\":\"" flags "\",\"PRIORITY\":0,\"ATTRS\":{\"BODY\":"     \
  "\"duid=" duid ";weight=" #w "\",\"DUID\":\"" duid "\",\"MAXLOAD\":0,\"WEIGHT\":" #w             \
  ",\"RWEIGHT\":0,\"SOCKET\":null}}}"

static const char *const two_sets =
    "{\"NRSETS\":2,\"RECORDS\":["
    "{\"SET\":{\"ID\":2,\"TARGETS\":[" DEST("sip:10.9.0.1:5060", "other", 100,
                                            "AX") "]}},"
                                                  "{\"SET\":{\"ID\":1,\"TARGETS\":[" DEST(
                                                      "sip:10.27.0.5:5060", "shaanxi", 30,
                                                      "AX") "," DEST("sip:10.1.0.5:5060", "hubei",
                                                                     70, "AX") "]}}]}";

static void expect(kamverify_set_t *s, const char *uri, const char *name, unsigned w) {
  kamverify_dest_t *d = &s->d[s->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->uri, sizeof d->uri, "%s", uri);
  snprintf(d->name, sizeof d->name, "%s", name);
  d->weight = w;
}

static void test_parse_and_compare(void **state) {
  (void)state;
  json_t *j = answer(two_sets);
  kamverify_set_t got, want = {0};
  char err[200], text[200];
  assert_int_equal(kamverify_parse(j, 1, &got, err, sizeof err), 0);
  assert_int_equal(got.n, 2);
  kamverify_format(&got, text, sizeof text);
  assert_string_equal(text, "shaanxi 30%, hubei 70%");
  expect(&want, "sip:10.1.0.5:5060", "hubei", 70);
  expect(&want, "sip:10.27.0.5:5060", "shaanxi", 30);
  assert_true(kamverify_same(&got, &want)); /* order does not matter */
  want.d[0].weight = 71;
  assert_false(kamverify_same(&got, &want)); /* a weight does */
  want.d[0].weight = 70;
  snprintf(want.d[1].uri, sizeof want.d[1].uri, "sip:10.27.0.6:5060");
  assert_false(kamverify_same(&got, &want)); /* and where calls go */
  want.n = 1;
  assert_false(kamverify_same(&got, &want));
  /* A set Kamailio does not have: nothing, which matches no route. */
  assert_int_equal(kamverify_parse(j, 3, &got, err, sizeof err), 0);
  assert_int_equal(got.n, 0);
  kamverify_format(&got, text, sizeof text);
  assert_string_equal(text, "nothing (no destination)");
  assert_false(kamverify_same(&got, &want));
  json_decref(j);
}

static void test_inactive_destination_never_matches(void **state) {
  (void)state;
  json_t *j = answer("{\"RECORDS\":[{\"SET\":{\"ID\":1,\"TARGETS\":[" DEST(
      "sip:10.27.0.5:5060", "shaanxi", 100, "IP") "]}}]}");
  kamverify_set_t got, want = {0};
  char err[200], text[200];
  assert_int_equal(kamverify_parse(j, 1, &got, err, sizeof err), 0);
  expect(&want, "sip:10.27.0.5:5060", "shaanxi", 100);
  assert_false(kamverify_same(&got, &want));
  kamverify_format(&got, text, sizeof text);
  assert_string_equal(text, "shaanxi 100% (inactive)");
  json_decref(j);
}

static void test_garbage_is_not_understood(void **state) {
  (void)state;
  const char *const bad[] = {
      "[]",
      "{\"RECORDS\":{}}",
      "{\"RECORDS\":[{\"SET\":{\"ID\":\"1\"}}]}",
      "{\"RECORDS\":[{\"SET\":{\"ID\":1,\"TARGETS\":[{\"DEST\":{\"URI\":5}}]}}]}",
      "{\"RECORDS\":[{\"SET\":{\"ID\":1}}]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *j = answer(bad[i]);
    kamverify_set_t got;
    char err[200] = "";
    assert_int_equal(kamverify_parse(j, 1, &got, err, sizeof err), NIRC_EINVAL);
    assert_non_null(strstr(err, "not understood"));
    json_decref(j);
  }
}

/* A name from the list file is shown, but never with control bytes. */
static void test_names_are_printable(void **state) {
  (void)state;
  json_t *j = answer("{\"RECORDS\":[{\"SET\":{\"ID\":1,\"TARGETS\":[{\"DEST\":{\"URI\":"
                     "\"sip:a\\u001b[31m\",\"FLAGS\":\"AX\",\"ATTRS\":{\"DUID\":\"x\\ny\","
                     "\"WEIGHT\":100}}}]}}]}");
  kamverify_set_t got;
  char err[200], text[200];
  assert_int_equal(kamverify_parse(j, 1, &got, err, sizeof err), 0);
  kamverify_format(&got, text, sizeof text);
  assert_string_equal(text, "x?y 100%");
  assert_null(strchr(got.d[0].uri, 0x1b));
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_compare),
      cmocka_unit_test(test_inactive_destination_never_matches),
      cmocka_unit_test(test_garbage_is_not_understood),
      cmocka_unit_test(test_names_are_printable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
