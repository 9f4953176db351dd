/* Unit tests for routes (common/route.c).
 *
 * A route is what a directive says: (site, permille) shares summing to 1000
 * plus, for a hub, the inbound sources and their shares. These tests check
 * the home route; that validation accepts exactly the well-formed routes
 * and names what is wrong with the others; share lookup; that route_same
 * compares how calls flow and nothing else; (epoch, version) ordering; the
 * operator-facing text; the JSON round trip and the refusal of malformed
 * records; the conversion from a protobuf Directive, which must refuse
 * what does not fit instead of truncating it; and the conversion to one,
 * which must carry every share and inbound source (with their names)
 * through the wire encoding and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "route.h"

/* ---- helpers ---------------------------------------------------------- */

/* A route with no shares, epoch/version 0. */
static void route_empty(route_t *r) {
  memset(r, 0, sizeof *r);
}

static void add_share(route_t *r, const char *site, uint32_t permille) {
  assert_true(r->n_share < ROUTE_MAX_SHARES);
  snprintf(r->share[r->n_share].site, sizeof r->share[r->n_share].site, "%s", site);
  r->share[r->n_share].permille = permille;
  r->n_share++;
}

static void add_inbound(route_t *r, const char *site, uint32_t permille) {
  assert_true(r->n_inbound < ROUTE_MAX_INBOUND);
  snprintf(r->inbound[r->n_inbound].site, sizeof r->inbound[r->n_inbound].site, "%s", site);
  r->inbound[r->n_inbound].permille = permille;
  r->n_inbound++;
}

/* A hub route with every field set: two shares, two inbound sources. */
static void hub_route(route_t *r) {
  route_empty(r);
  r->epoch = 7;
  r->version = 42;
  add_share(r, "shaanxi", 600);
  add_share(r, "sichuan", 400);
  add_inbound(r, "hubei", 700);
  add_inbound(r, "henan", 1000);
  r->revert_at_ms = 1579701000000LL;
  snprintf(r->reason, sizeof r->reason, "%s", "hubei overloaded");
}

/* Field-by-field equality, order included. */
static void assert_route_equal(const route_t *a, const route_t *b) {
  assert_int_equal(a->epoch, b->epoch);
  assert_int_equal(a->version, b->version);
  assert_int_equal(a->n_share, b->n_share);
  for (unsigned i = 0; i < a->n_share; i++) {
    assert_string_equal(a->share[i].site, b->share[i].site);
    assert_int_equal(a->share[i].permille, b->share[i].permille);
  }
  assert_int_equal(a->n_inbound, b->n_inbound);
  for (unsigned i = 0; i < a->n_inbound; i++) {
    assert_string_equal(a->inbound[i].site, b->inbound[i].site);
    assert_int_equal(a->inbound[i].permille, b->inbound[i].permille);
  }
  assert_int_equal(a->revert_at_ms, b->revert_at_ms);
  assert_string_equal(a->reason, b->reason);
}

/* Validation must refuse with NIRC_EINVAL and a message containing `want`. */
static void assert_invalid(const route_t *r, const char *want) {
  char err[256] = "";
  assert_int_equal(route_validate(r, err, sizeof err), NIRC_EINVAL);
  if (!strstr(err, want)) fail_msg("message '%s' does not contain '%s'", err, want);
}

static void assert_valid(const route_t *r) {
  char err[256] = "";
  int rc = route_validate(r, err, sizeof err);
  if (rc != 0) fail_msg("route refused: %s", err);
}

/* ---- route_home ------------------------------------------------------- */

static void test_home(void **state) {
  (void)state;
  route_t r;
  memset(&r, 0xab, sizeof r); /* everything must be overwritten */
  route_home(&r, "hubei");
  assert_int_equal(r.n_share, 1);
  assert_string_equal(r.share[0].site, "hubei");
  assert_int_equal(r.share[0].permille, 1000);
  assert_int_equal(r.n_inbound, 0);
  assert_int_equal(r.epoch, 0);
  assert_int_equal(r.version, 0);
  assert_int_equal(r.revert_at_ms, 0);
  assert_string_equal(r.reason, "");
  assert_valid(&r);
}

/* ---- route_validate --------------------------------------------------- */

static void test_validate_accepts(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  add_share(&r, "a", 1000);
  assert_valid(&r);

  route_empty(&r);
  add_share(&r, "a", 700);
  add_share(&r, "b", 300);
  assert_valid(&r);

  /* The maximum: 8 shares, with a hub's inbound list. */
  route_empty(&r);
  for (int i = 0; i < ROUTE_MAX_SHARES; i++) {
    char site[8];
    snprintf(site, sizeof site, "s%d", i);
    add_share(&r, site, 125);
  }
  add_inbound(&r, "hubei", 1);
  add_inbound(&r, "henan", 1000);
  assert_valid(&r);

  hub_route(&r);
  assert_valid(&r);
}

static void test_validate_refuses_share_count(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  assert_invalid(&r, "1 to 8 shares, got 0");

  /* Nine shares do not fit in the array; a count past it must be refused
   * before any entry is read. */
  route_empty(&r);
  for (int i = 0; i < ROUTE_MAX_SHARES; i++) {
    char site[8];
    snprintf(site, sizeof site, "s%d", i);
    add_share(&r, site, 125);
  }
  r.n_share = ROUTE_MAX_SHARES + 1;
  assert_invalid(&r, "got 9");
}

static void test_validate_refuses_sum(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  add_share(&r, "a", 700);
  add_share(&r, "b", 299);
  assert_invalid(&r, "sum to 999");

  route_empty(&r);
  add_share(&r, "a", 700);
  add_share(&r, "b", 301);
  assert_invalid(&r, "sum to 1001");

  route_empty(&r);
  add_share(&r, "a", 999);
  assert_invalid(&r, "sum to 999");
}

static void test_validate_refuses_bad_share(void **state) {
  (void)state;
  route_t r;
  /* A zero share, even though the sum is right. */
  route_empty(&r);
  add_share(&r, "a", 1000);
  add_share(&r, "b", 0);
  assert_invalid(&r, "b is 0 permille");

  /* A share above 1000 (the uint32 sum wraps back to 1000 here). */
  route_empty(&r);
  add_share(&r, "a", 1001);
  add_share(&r, "b", UINT32_MAX);
  assert_invalid(&r, "a is 1001 permille");

  route_empty(&r);
  add_share(&r, "a", 1001);
  assert_invalid(&r, "1001 permille");
}

static void test_validate_refuses_duplicate_site(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  add_share(&r, "hubei", 500);
  add_share(&r, "hubei", 500);
  assert_invalid(&r, "lists hubei twice");

  route_empty(&r);
  add_share(&r, "hubei", 400);
  add_share(&r, "henan", 200);
  add_share(&r, "hubei", 400);
  assert_invalid(&r, "lists hubei twice");
}

static void test_validate_refuses_invalid_slug(void **state) {
  (void)state;
  static const char *const bad[] = {"", "Hubei", "1hubei", "-hubei", "hu bei", "hu_bei", "hubei!"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    route_t r;
    route_empty(&r);
    add_share(&r, bad[i], 1000);
    assert_invalid(&r, "invalid site");
  }
  /* The longest slug, 31 characters, is fine. */
  route_t r;
  route_empty(&r);
  add_share(&r, "abcdefghijklmnopqrstuvwxyz01234", 1000);
  assert_valid(&r);
}

static void test_validate_refuses_bad_inbound(void **state) {
  (void)state;
  route_t r;
  hub_route(&r);
  add_inbound(&r, "hubei", 300);
  assert_invalid(&r, "inbound lists hubei twice");

  hub_route(&r);
  add_inbound(&r, "anhui", 0);
  assert_invalid(&r, "inbound entry 2");

  hub_route(&r);
  add_inbound(&r, "anhui", 1001);
  assert_invalid(&r, "inbound entry 2");

  hub_route(&r);
  add_inbound(&r, "Anhui", 500);
  assert_invalid(&r, "inbound entry 2");

  hub_route(&r);
  r.n_inbound = ROUTE_MAX_INBOUND + 1;
  assert_invalid(&r, "too many inbound");
}

/* ---- share_of, same, compare_version ---------------------------------- */

static void test_share_of(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  add_share(&r, "hubei", 700);
  add_share(&r, "henan", 300);
  assert_int_equal(route_share_of(&r, "hubei"), 700);
  assert_int_equal(route_share_of(&r, "henan"), 300);
  assert_int_equal(route_share_of(&r, "shaanxi"), 0);
  assert_int_equal(route_share_of(&r, "hube"), 0);
  /* Inbound sources are not shares. */
  add_inbound(&r, "anhui", 500);
  assert_int_equal(route_share_of(&r, "anhui"), 0);

  route_home(&r, "shaanxi");
  assert_int_equal(route_share_of(&r, "shaanxi"), 1000);
}

static void test_same(void **state) {
  (void)state;
  route_t a, b;
  hub_route(&a);
  hub_route(&b);
  assert_true(route_same(&a, &b));

  /* Order of shares and of inbound sources does not matter. */
  route_empty(&b);
  add_share(&b, "sichuan", 400);
  add_share(&b, "shaanxi", 600);
  add_inbound(&b, "henan", 1000);
  add_inbound(&b, "hubei", 700);
  assert_true(route_same(&a, &b));
  assert_true(route_same(&b, &a));

  /* Neither do epoch, version, revert time nor reason. */
  b.epoch = 99;
  b.version = 1;
  b.revert_at_ms = 5;
  snprintf(b.reason, sizeof b.reason, "%s", "another reason");
  assert_true(route_same(&a, &b));

  /* A different share does. */
  hub_route(&b);
  b.share[0].permille = 500;
  b.share[1].permille = 500;
  assert_false(route_same(&a, &b));
  assert_false(route_same(&b, &a));

  /* A different site does. */
  hub_route(&b);
  snprintf(b.share[1].site, sizeof b.share[1].site, "%s", "henan");
  assert_false(route_same(&a, &b));

  /* A missing or extra share does. */
  hub_route(&b);
  b.n_share = 1;
  assert_false(route_same(&a, &b));
  assert_false(route_same(&b, &a));

  /* Inbound: a different permille, a missing source, a different source. */
  hub_route(&b);
  b.inbound[0].permille = 600;
  assert_false(route_same(&a, &b));
  hub_route(&b);
  b.n_inbound = 1;
  assert_false(route_same(&a, &b));
  assert_false(route_same(&b, &a));
  hub_route(&b);
  snprintf(b.inbound[1].site, sizeof b.inbound[1].site, "%s", "anhui");
  assert_false(route_same(&a, &b));

  /* A share is not an inbound source. */
  route_empty(&a);
  add_share(&a, "hubei", 1000);
  route_empty(&b);
  add_share(&b, "hubei", 1000);
  add_inbound(&b, "hubei", 1000);
  assert_false(route_same(&a, &b));
}

static void test_compare_version(void **state) {
  (void)state;
  route_t a, b;
  route_home(&a, "hubei");
  route_home(&b, "hubei");
  assert_int_equal(route_compare_version(&a, &b), 0);

  a.epoch = 1;
  a.version = 5;
  b.epoch = 1;
  b.version = 5;
  assert_int_equal(route_compare_version(&a, &b), 0);

  b.version = 6;
  assert_true(route_compare_version(&a, &b) < 0);
  assert_true(route_compare_version(&b, &a) > 0);

  /* The epoch dominates the version. */
  a.epoch = 2;
  a.version = 1;
  b.epoch = 1;
  b.version = 1000;
  assert_true(route_compare_version(&a, &b) > 0);
  assert_true(route_compare_version(&b, &a) < 0);

  /* Full 64-bit range, no overflow from a subtraction. */
  a.epoch = UINT64_MAX;
  a.version = 0;
  b.epoch = 0;
  b.version = UINT64_MAX;
  assert_true(route_compare_version(&a, &b) > 0);
  assert_true(route_compare_version(&b, &a) < 0);
  a.epoch = 3;
  a.version = UINT64_MAX;
  b.epoch = 3;
  b.version = 0;
  assert_true(route_compare_version(&a, &b) > 0);
  assert_true(route_compare_version(&b, &a) < 0);

  /* The controller's "never set" (0, 0) is older than anything. */
  route_home(&a, "hubei");
  b.epoch = 0;
  b.version = 1;
  assert_true(route_compare_version(&a, &b) < 0);
}

/* ---- route_format ----------------------------------------------------- */

static void test_format(void **state) {
  (void)state;
  char buf[256];
  route_t r;
  route_home(&r, "hubei");
  route_format(&r, "hubei", buf, sizeof buf);
  assert_string_equal(buf, "home");

  route_home(&r, "shaanxi");
  route_format(&r, "hubei", buf, sizeof buf);
  assert_string_equal(buf, "shaanxi");

  route_empty(&r);
  add_share(&r, "hubei", 700);
  add_share(&r, "henan", 300);
  route_format(&r, "hubei", buf, sizeof buf);
  assert_string_equal(buf, "hubei 700‰, henan 300‰");

  /* A short buffer is cut, never overflowed, and stays terminated. */
  char small[12];
  memset(small, 'x', sizeof small);
  route_format(&r, "hubei", small, sizeof small);
  assert_true(memchr(small, '\0', sizeof small) != NULL);
  assert_true(strncmp(small, "hubei", 5) == 0);
}

/* ---- JSON ------------------------------------------------------------- */

static void test_json_round_trip(void **state) {
  (void)state;
  route_t in, out;
  char err[256] = "";

  hub_route(&in);
  json_t *j = route_to_json(&in);
  assert_non_null(j);
  /* Through text too, as the state file and the database see it. */
  char *text = json_dumps(j, 0);
  json_decref(j);
  assert_non_null(text);
  json_error_t je;
  j = json_loads(text, 0, &je);
  free(text);
  assert_non_null(j);
  memset(&out, 0xab, sizeof out);
  int rc = route_from_json(j, &out, err, sizeof err);
  json_decref(j);
  if (rc != 0) fail_msg("round trip refused: %s", err);
  assert_route_equal(&in, &out);

  /* The home route, with no inbound and an empty reason. */
  route_home(&in, "hubei");
  j = route_to_json(&in);
  assert_non_null(j);
  assert_int_equal(route_from_json(j, &out, err, sizeof err), 0);
  json_decref(j);
  assert_route_equal(&in, &out);

  /* The extremes that fit: eight shares, 64 inbound, a full reason. */
  route_empty(&in);
  in.epoch = INT64_MAX;
  in.version = INT64_MAX;
  for (int i = 0; i < ROUTE_MAX_SHARES; i++) {
    char site[8];
    snprintf(site, sizeof site, "s%d", i);
    add_share(&in, site, 125);
  }
  for (int i = 0; i < ROUTE_MAX_INBOUND; i++) {
    char site[8];
    snprintf(site, sizeof site, "in%d", i);
    add_inbound(&in, site, (uint32_t)(i + 1));
  }
  memset(in.reason, 'r', sizeof in.reason - 1);
  in.reason[sizeof in.reason - 1] = '\0';
  in.revert_at_ms = -1;
  j = route_to_json(&in);
  assert_non_null(j);
  rc = route_from_json(j, &out, err, sizeof err);
  json_decref(j);
  if (rc != 0) fail_msg("round trip refused: %s", err);
  assert_route_equal(&in, &out);
}

/* A directive's reason is operator text, often Chinese here. Whatever was
 * stored in a route must still encode to JSON, or the agent cannot persist
 * it and the controller cannot record it. */
static void test_json_long_utf8_reason(void **state) {
  (void)state;
  /* "湖北话务过载" (6 characters, 18 bytes), repeated: 144 bytes. */
  char reason[256] = "";
  for (int i = 0; i < 8; i++)
    strcat(reason, "湖北话务过载");
  Nirc__RouteShare s = NIRC__ROUTE_SHARE__INIT;
  s.site = "shaanxi";
  s.permille = 1000;
  Nirc__RouteShare *shares[] = {&s};
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.site = "hubei";
  d.epoch = 1;
  d.version = 1;
  d.n_route = 1;
  d.route = shares;
  d.reason = reason;
  route_t r;
  char err[256] = "";
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), 0);
  assert_valid(&r);
  json_t *j = route_to_json(&r);
  if (!j)
    fail_msg("route_to_json returned NULL for a route whose reason (%zu bytes) was cut from a "
             "longer UTF-8 text",
             strlen(r.reason));
  json_decref(j);
}

/* route_from_json on a text must return NIRC_EINVAL with `want` in the
 * message. */
static void assert_json_refused(const char *text, const char *want) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
  if (!j) fail_msg("test JSON does not parse: %s: %s", text, je.text);
  route_t out;
  char err[256] = "";
  int rc = route_from_json(j, &out, err, sizeof err);
  json_decref(j);
  if (rc != NIRC_EINVAL) fail_msg("accepted (rc %d): %s", rc, text);
  if (!strstr(err, want)) fail_msg("message '%s' does not contain '%s' for %s", err, want, text);
}

#define SH1000 "[{\"site\": \"hubei\", \"permille\": 1000}]"

static void test_json_refuses_malformed(void **state) {
  (void)state;
  /* The well-formed record the cases below break. */
  const char *good = "{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", \"inbound\": [], "
                     "\"revert_at_ms\": 0, \"reason\": \"\"}";
  json_error_t je;
  json_t *j = json_loads(good, 0, &je);
  assert_non_null(j);
  route_t out;
  char err[256] = "";
  assert_int_equal(route_from_json(j, &out, err, sizeof err), 0);
  json_decref(j);

  /* NULL, and not an object. */
  assert_int_equal(route_from_json(NULL, &out, err, sizeof err), NIRC_EINVAL);
  assert_json_refused("[]", "not a route record");
  assert_json_refused("42", "not a route record");

  /* Missing keys. */
  assert_json_refused("{\"version\": 2, \"route\": " SH1000 ", \"inbound\": [], "
                      "\"revert_at_ms\": 0, \"reason\": \"\"}",
                      "epoch");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"inbound\": [], "
                      "\"revert_at_ms\": 0, \"reason\": \"\"}",
                      "route");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"revert_at_ms\": 0, \"reason\": \"\"}",
                      "inbound");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", \"inbound\": [], "
                      "\"revert_at_ms\": 0}",
                      "reason");
  /* Wrong types. */
  assert_json_refused("{\"epoch\": \"1\", \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "not a route record");
  assert_json_refused("{\"epoch\": 1.5, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "not a route record");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": {}, "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "'route' must be an array");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": null}",
                      "not a route record");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": 5, "
                      "\"permille\": 1000}], \"inbound\": [], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}",
                      "'route' entry 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": \"hubei\", "
                      "\"permille\": \"1000\"}], \"inbound\": [], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}",
                      "'route' entry 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [\"hubei\"], "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "'route' entry 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [{\"site\": \"henan\"}], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}",
                      "'inbound' entry 0");
  /* Negative epoch or version; out-of-range permille. */
  assert_json_refused("{\"epoch\": -1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "negative");
  assert_json_refused("{\"epoch\": 1, \"version\": -2, \"route\": " SH1000 ", "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "negative");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": \"hubei\", "
                      "\"permille\": -1000}], \"inbound\": [], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}",
                      "'route' entry 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": \"hubei\", "
                      "\"permille\": 4294968296}], \"inbound\": [], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}",
                      "'route' entry 0");
  /* Too many entries. */
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": ["
                      "{\"site\": \"a\", \"permille\": 100}, {\"site\": \"b\", \"permille\": 100},"
                      "{\"site\": \"c\", \"permille\": 100}, {\"site\": \"d\", \"permille\": 100},"
                      "{\"site\": \"e\", \"permille\": 100}, {\"site\": \"f\", \"permille\": 100},"
                      "{\"site\": \"g\", \"permille\": 100}, {\"site\": \"h\", \"permille\": 100},"
                      "{\"site\": \"i\", \"permille\": 200}], \"inbound\": [], "
                      "\"revert_at_ms\": 0, \"reason\": \"\"}",
                      "at most 8 entries");
  {
    json_t *rec = json_loads(good, 0, &je);
    assert_non_null(rec);
    json_t *inb = json_object_get(rec, "inbound");
    for (int i = 0; i <= ROUTE_MAX_INBOUND; i++) {
      char site[8];
      snprintf(site, sizeof site, "in%d", i);
      json_array_append_new(inb, json_pack("{s:s, s:i}", "site", site, "permille", 1));
    }
    memset(err, 0, sizeof err);
    assert_int_equal(route_from_json(rec, &out, err, sizeof err), NIRC_EINVAL);
    json_decref(rec);
    if (!strstr(err, "'inbound' must be an array of at most 64"))
      fail_msg("unexpected message: %s", err);
  }
  /* A site name too long for the route (32 characters). */
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": "
                      "\"abcdefghijklmnopqrstuvwxyz012345\", \"permille\": 1000}], "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "'route' entry 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [{\"site\": \"abcdefghijklmnopqrstuvwxyz0123456789abcdefgh\", "
                      "\"permille\": 10}], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "'inbound' entry 0");
  /* Shares not summing to 1000, and the other validation rules. */
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [{\"site\": \"hubei\", "
                      "\"permille\": 600}, {\"site\": \"henan\", \"permille\": 300}], "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "sum to 900");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": [], "
                      "\"inbound\": [], \"revert_at_ms\": 0, \"reason\": \"\"}",
                      "got 0");
  assert_json_refused("{\"epoch\": 1, \"version\": 2, \"route\": " SH1000 ", "
                      "\"inbound\": [{\"site\": \"henan\", \"permille\": 0}], "
                      "\"revert_at_ms\": 0, \"reason\": \"\"}",
                      "inbound entry 0");
}

/* ---- route_from_directive --------------------------------------------- */

static void test_from_directive(void **state) {
  (void)state;
  Nirc__RouteShare s0 = NIRC__ROUTE_SHARE__INIT, s1 = NIRC__ROUTE_SHARE__INIT;
  Nirc__RouteShare i0 = NIRC__ROUTE_SHARE__INIT;
  s0.site = "hubei";
  s0.permille = 700;
  s1.site = "henan";
  s1.permille = 300;
  i0.site = "anhui";
  i0.permille = 250;
  Nirc__RouteShare *route[] = {&s0, &s1};
  Nirc__RouteShare *inbound[] = {&i0};
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.site = "hubei";
  d.epoch = 3;
  d.version = 17;
  d.route = route;
  d.n_route = 2;
  d.inbound = inbound;
  d.n_inbound = 1;
  d.revert_at_ms = 1579701000000LL;
  d.reason = "hubei queue over threshold";

  route_t r, want;
  char err[256] = "";
  memset(&r, 0xab, sizeof r);
  int rc = route_from_directive(&d, &r, err, sizeof err);
  if (rc != 0) fail_msg("refused: %s", err);
  route_empty(&want);
  want.epoch = 3;
  want.version = 17;
  add_share(&want, "hubei", 700);
  add_share(&want, "henan", 300);
  add_inbound(&want, "anhui", 250);
  want.revert_at_ms = 1579701000000LL;
  snprintf(want.reason, sizeof want.reason, "%s", "hubei queue over threshold");
  assert_route_equal(&r, &want);
  assert_valid(&r);

  /* protobuf-c's empty-string default and a NULL reason both give "". */
  d.reason = NULL;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), 0);
  assert_string_equal(r.reason, "");
}

static void test_from_directive_too_many_shares(void **state) {
  (void)state;
  Nirc__RouteShare s[ROUTE_MAX_SHARES + 1];
  Nirc__RouteShare *p[ROUTE_MAX_SHARES + 1];
  static const char *const sites[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
  for (int i = 0; i < ROUTE_MAX_SHARES + 1; i++) {
    nirc__route_share__init(&s[i]);
    s[i].site = (char *)sites[i];
    s[i].permille = i == 0 ? 200 : 100;
    p[i] = &s[i];
  }
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.site = "hubei";
  d.epoch = 1;
  d.version = 1;
  d.route = p;
  d.n_route = ROUTE_MAX_SHARES + 1;
  route_t r;
  char err[256] = "";
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);
  if (!strstr(err, "9 shares")) fail_msg("unexpected message: %s", err);

  /* Eight is fine. */
  s[0].permille = 300;
  d.n_route = ROUTE_MAX_SHARES;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), 0);
  assert_int_equal(r.n_share, ROUTE_MAX_SHARES);
  assert_valid(&r);

  /* Too many inbound sources. */
  Nirc__RouteShare in[ROUTE_MAX_INBOUND + 1];
  Nirc__RouteShare *pin[ROUTE_MAX_INBOUND + 1];
  for (int i = 0; i < ROUTE_MAX_INBOUND + 1; i++) {
    nirc__route_share__init(&in[i]);
    in[i].site = "x";
    in[i].permille = 1;
    pin[i] = &in[i];
  }
  d.inbound = pin;
  d.n_inbound = ROUTE_MAX_INBOUND + 1;
  memset(err, 0, sizeof err);
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);
  if (!strstr(err, "65 inbound")) fail_msg("unexpected message: %s", err);
}

static void test_from_directive_long_site(void **state) {
  (void)state;
  char longsite[101];
  memset(longsite, 'a', 100);
  longsite[100] = '\0';
  Nirc__RouteShare s = NIRC__ROUTE_SHARE__INIT, ok = NIRC__ROUTE_SHARE__INIT;
  s.site = longsite;
  s.permille = 1000;
  ok.site = "shaanxi";
  ok.permille = 1000;
  Nirc__RouteShare *p[] = {&s};
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.site = "hubei";
  d.route = p;
  d.n_route = 1;
  route_t r;
  char err[256] = "";
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);
  if (!strstr(err, "over-long site")) fail_msg("unexpected message: %s", err);

  /* The same in the inbound list. */
  Nirc__RouteShare *pok[] = {&ok};
  d.route = pok;
  d.inbound = p;
  d.n_inbound = 1;
  memset(err, 0, sizeof err);
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);
  if (!strstr(err, "over-long site")) fail_msg("unexpected message: %s", err);

  /* 31 characters fit, 32 do not. */
  longsite[31] = '\0';
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), 0);
  assert_string_equal(r.inbound[0].site, longsite);
  longsite[31] = 'a';
  longsite[32] = '\0';
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);

  /* A NULL site (never from protobuf-c, but cheap to refuse). */
  s.site = NULL;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_EINVAL);
}

/* ---- route_to_directive ----------------------------------------------- */

/* What route_to_directive filled, field by field, and the same route back
 * through the wire encoding and route_from_directive. */
static void assert_directive_carries(const Nirc__Directive *d, const route_t *r) {
  assert_int_equal(d->epoch, r->epoch);
  assert_int_equal(d->version, r->version);
  assert_int_equal(d->revert_at_ms, r->revert_at_ms);
  assert_string_equal(d->reason, r->reason);
  assert_int_equal(d->n_route, r->n_share);
  for (unsigned i = 0; i < r->n_share; i++) {
    assert_string_equal(d->route[i]->site, r->share[i].site);
    assert_int_equal(d->route[i]->permille, r->share[i].permille);
  }
  assert_int_equal(d->n_inbound, r->n_inbound);
  assert_int_equal(d->n_inbound_sources, r->n_inbound);
  for (unsigned i = 0; i < r->n_inbound; i++) {
    assert_string_equal(d->inbound[i]->site, r->inbound[i].site);
    assert_int_equal(d->inbound[i]->permille, r->inbound[i].permille);
    assert_string_equal(d->inbound_sources[i], r->inbound[i].site);
  }

  size_t len = nirc__directive__get_packed_size(d);
  uint8_t *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  assert_int_equal(nirc__directive__pack(d, buf), len);
  Nirc__Directive *back = nirc__directive__unpack(NULL, len, buf);
  free(buf);
  assert_non_null(back);
  assert_int_equal(back->n_inbound_sources, r->n_inbound);
  for (unsigned i = 0; i < r->n_inbound; i++)
    assert_string_equal(back->inbound_sources[i], r->inbound[i].site);
  route_t got;
  char err[256] = "";
  int rc = route_from_directive(back, &got, err, sizeof err);
  nirc__directive__free_unpacked(back, NULL);
  if (rc != 0) fail_msg("refused: %s", err);
  assert_route_equal(&got, r);
}

static void test_to_directive(void **state) {
  (void)state;
  route_t r;
  hub_route(&r);
  route_pb_t pb;
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.site = "shaanxi";
  d.issued_at_ms = 1579701000123LL;
  route_to_directive(&r, &pb, &d);
  assert_directive_carries(&d, &r);
  /* The pointers borrow from the route and from pb. */
  assert_ptr_equal(d.route, pb.share_p);
  assert_ptr_equal(d.route[1], &pb.share[1]);
  assert_ptr_equal(d.inbound, pb.inbound_p);
  assert_ptr_equal(d.inbound[1], &pb.inbound[1]);
  assert_ptr_equal(d.inbound_sources, pb.inbound_names);
  assert_ptr_equal(d.inbound_sources[0], r.inbound[0].site);
  assert_ptr_equal(d.reason, r.reason);
  /* Fields that are not the route's are left as they were. */
  assert_string_equal(d.site, "shaanxi");
  assert_int_equal(d.issued_at_ms, 1579701000123LL);

  /* The home route: one share, no inbound, nothing else. */
  route_home(&r, "hubei");
  Nirc__Directive h = NIRC__DIRECTIVE__INIT;
  route_to_directive(&r, &pb, &h);
  assert_directive_carries(&h, &r);
  assert_int_equal(h.n_inbound, 0);
  assert_int_equal(h.n_inbound_sources, 0);
}

/* As many shares and inbound sources as a route holds. */
static void test_to_directive_full(void **state) {
  (void)state;
  route_t r;
  route_empty(&r);
  r.epoch = 9;
  r.version = UINT64_C(1) << 40;
  r.revert_at_ms = INT64_MAX;
  snprintf(r.reason, sizeof r.reason, "%s", "武汉封城 lockdown");
  char site[32];
  for (unsigned i = 0; i < ROUTE_MAX_SHARES; i++) {
    snprintf(site, sizeof site, "share%u", i);
    add_share(&r, site, i == 0 ? 1000 - (ROUTE_MAX_SHARES - 1) : 1);
  }
  for (unsigned i = 0; i < ROUTE_MAX_INBOUND; i++) {
    snprintf(site, sizeof site, "inbound%u", i);
    add_inbound(&r, site, 1 + i);
  }
  assert_valid(&r);
  route_pb_t pb;
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  route_to_directive(&r, &pb, &d);
  assert_directive_carries(&d, &r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_home),
      cmocka_unit_test(test_validate_accepts),
      cmocka_unit_test(test_validate_refuses_share_count),
      cmocka_unit_test(test_validate_refuses_sum),
      cmocka_unit_test(test_validate_refuses_bad_share),
      cmocka_unit_test(test_validate_refuses_duplicate_site),
      cmocka_unit_test(test_validate_refuses_invalid_slug),
      cmocka_unit_test(test_validate_refuses_bad_inbound),
      cmocka_unit_test(test_share_of),
      cmocka_unit_test(test_same),
      cmocka_unit_test(test_compare_version),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_json_round_trip),
      cmocka_unit_test(test_json_long_utf8_reason),
      cmocka_unit_test(test_json_refuses_malformed),
      cmocka_unit_test(test_from_directive),
      cmocka_unit_test(test_from_directive_too_many_shares),
      cmocka_unit_test(test_from_directive_long_site),
      cmocka_unit_test(test_to_directive),
      cmocka_unit_test(test_to_directive_full),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
