/* Unit tests for site-agent/kam_counts.c: the per-destination counters of
 * the shipped kamailio.cfg (htable.dump of "nirc") are read strictly, and
 * turned into the calls of one interval: to this site's own PBX, and to
 * each other site. Kamailio's answer is a peer's bytes: anything that is
 * not a clean counter refuses the whole dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "err.h"
#include "kam_counts.h"

static void parse_ok(const char *text, kamcounts_t *c) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j) fail_msg("test bug: %s: %s", text, je.text);
  char err[200] = "";
  if (kamcounts_parse(j, c, err, sizeof err) != 0) fail_msg("%s: refused: %s", text, err);
  json_decref(j);
}

static void parse_bad(const char *text, const char *want) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
  if (!j) fail_msg("test bug: %s: %s", text, je.text);
  kamcounts_t c;
  char err[200] = "";
  if (kamcounts_parse(j, &c, err, sizeof err) == 0) fail_msg("%s: accepted", text);
  if (!strstr(err, want)) fail_msg("%s: error \"%s\" lacks \"%s\"", text, err, want);
  json_decref(j);
}

/* Two slots as Kamailio 5.6 lists them, with an item of someone else's. */
#define DUMP(h, s, u)                                                                              \
  "[{\"entry\": 3, \"size\": 2, \"slot\": [{\"name\": \"sent::hubei\", \"value\": " #h             \
  ", \"type\": \"int\"}, {\"name\": \"other\", \"value\": \"x\", \"type\": \"str\"}]},"            \
  " {\"entry\": 8, \"size\": 2, \"slot\": [{\"name\": \"sent::shaanxi\", \"value\": " #s           \
  ", \"type\": \"int\"}, {\"name\": \"sent::unknown\", \"value\": " #u ", \"type\": \"int\"}]}]"

static void test_parse(void **state) {
  (void)state;
  kamcounts_t c;
  parse_ok(DUMP(7, 5, 1), &c);
  assert_int_equal(c.n, 2);
  assert_int_equal(kamcounts_get(&c, "hubei"), 7);
  assert_int_equal(kamcounts_get(&c, "shaanxi"), 5);
  assert_int_equal(kamcounts_get(&c, "henan"), 0);
  assert_int_equal(c.unknown, 1);
  parse_ok("[]", &c); /* no call yet */
  assert_int_equal(c.n, 0);
}

static void test_parse_refuses_garbage(void **state) {
  (void)state;
  parse_bad("{\"slot\": []}", "not a list");
  parse_bad("[{\"entry\": 1}]", "not understood");
  parse_bad("[{\"slot\": [12]}]", "not understood");
  parse_bad("[{\"slot\": [{\"value\": 1}]}]", "no name");
  parse_bad("[{\"slot\": [{\"name\": \"sent::hubei\", \"value\": \"1\"}]}]", "not a count");
  parse_bad("[{\"slot\": [{\"name\": \"sent::hubei\", \"value\": -1}]}]", "not a count");
  parse_bad("[{\"slot\": [{\"name\": \"sent::hubei\", \"value\": 99999999999}]}]", "not a count");
  parse_bad("[{\"slot\": [{\"name\": \"sent::Hu\\u001bbei\", \"value\": 1}]}]", "sent::<site>");
  parse_bad("[{\"slot\": [{\"name\": \"sent::\", \"value\": 1}]}]", "sent::<site>");
  parse_bad("[{\"slot\": [{\"name\": \"sent::hubei\", \"value\": 1}, {\"name\": \"sent::hubei\","
            " \"value\": 2}]}]",
            "twice");
  /* More sites than a report can carry. */
  char big[16384] = "[{\"slot\": [";
  for (int i = 0; i <= KAMCOUNTS_MAX; i++) {
    char item[64];
    snprintf(item, sizeof item, "%s{\"name\": \"sent::s%d\", \"value\": 1}", i ? ", " : "", i);
    strcat(big, item);
  }
  strcat(big, "]}]");
  parse_bad(big, "more than");
}

static void test_interval(void **state) {
  (void)state;
  kamcounts_t base, now;
  kamcounts_delta_t d;
  parse_ok(DUMP(7, 5, 1), &base);
  parse_ok(DUMP(10, 11, 1), &now);
  assert_false(kamcounts_interval(&base, &now, "hubei", &d));
  assert_int_equal(d.home, 3);
  assert_int_equal(d.away, 6);
  assert_int_equal(d.n_to, 1);
  assert_string_equal(d.to[0].site, "shaanxi");
  assert_int_equal(d.to[0].sent, 6);
  /* Nothing new: no destination named. */
  assert_false(kamcounts_interval(&now, &now, "hubei", &d));
  assert_int_equal(d.home + d.away + d.n_to, 0);
  /* A line with no site name: away, but credited to nobody. */
  parse_ok(DUMP(10, 11, 4), &base);
  assert_false(kamcounts_interval(&now, &base, "hubei", &d));
  assert_int_equal(d.away, 3);
  assert_int_equal(d.n_to, 0);
  /* Seen from the hub's side, hubei is the other site. */
  parse_ok(DUMP(7, 5, 1), &base);
  assert_false(kamcounts_interval(&base, &now, "shaanxi", &d));
  assert_int_equal(d.home, 6);
  assert_int_equal(d.away, 3);
  assert_string_equal(d.to[0].site, "hubei");
  /* A counter went back, or vanished: Kamailio restarted, all is new. */
  parse_ok(DUMP(2, 11, 1), &base);
  assert_true(kamcounts_interval(&now, &base, "hubei", &d));
  assert_int_equal(d.home, 2);
  assert_int_equal(d.away, 12);
  parse_ok("[{\"slot\": [{\"name\": \"sent::hubei\", \"value\": 20}]}]", &base);
  assert_true(kamcounts_interval(&now, &base, "hubei", &d));
  assert_int_equal(d.home, 20);
  assert_int_equal(d.away, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_parse_refuses_garbage),
      cmocka_unit_test(test_interval),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
