/* statusq (controller/routing/statusq.c): the filters and paging of
 * `nircctl status` and /status.json, evaluated by the controller. A small
 * network is described by hand; the last test pages through 20,031 sites
 * and checks every one comes back exactly once. */
#include "statusq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N 6
/* hubei -> shaanxi (moved); henan offline, with a note; gen-001 stale;
 * gen-002 never seen, alarmed; gen-003 removed (routes to shaanxi: not
 * counted). */
static route_t routes[N];
static statusq_site_t net[N];

static size_t find(void *ctx, const char *slug) {
  (void)ctx;
  for (size_t i = 0; i < N; i++)
    if (strcmp(net[i].slug, slug) == 0) return i;
  return SIZE_MAX;
}

static void setup_net(void) {
  static const char *slugs[N] = {"hubei", "shaanxi", "henan", "gen-001", "gen-002", "gen-003"};
  static const site_state_t st[N] = {SITE_ONLINE, SITE_ONLINE,     SITE_OFFLINE,
                                     SITE_STALE,  SITE_NEVER_SEEN, SITE_ONLINE};
  for (size_t i = 0; i < N; i++) {
    route_home(&routes[i], slugs[i]);
    net[i] =
        (statusq_site_t){.slug = slugs[i], .state = st[i], .share = routes[i].share, .n_share = 1};
  }
  routes[0].share[0] = (route_share_t){"shaanxi", 1000};
  routes[5].share[0] = (route_share_t){"shaanxi", 1000};
  net[2].has_note = true;
  net[4].alarmed = true;
  net[5].removed = true;
}

static void run(const statusq_filter_t *f, statusq_result_t *r) {
  assert_int_equal(statusq_run(net, N, find, NULL, f, r), 0);
}

/* The slugs of the rows, space-separated. */
static const char *rows(const statusq_result_t *r) {
  static char buf[256];
  size_t u = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < r->n_rows; i++)
    u += (size_t)snprintf(buf + u, sizeof buf - u, "%s%s", i ? " " : "", net[r->rows[i]].slug);
  return buf;
}

static void test_no_filter_lists_live_sites_and_counts(void **state) {
  (void)state;
  setup_net();
  statusq_result_t r;
  run(&(statusq_filter_t){0}, &r);
  assert_string_equal(rows(&r), "hubei shaanxi henan gen-001 gen-002");
  assert_int_equal(r.matched, 5);
  assert_int_equal(r.live, 5);
  assert_int_equal(r.count[SITE_ONLINE], 2);
  assert_int_equal(r.count[SITE_STALE], 1);
  assert_int_equal(r.count[SITE_OFFLINE], 1);
  assert_int_equal(r.count[SITE_NEVER_SEEN], 1);
  /* A removed site's route sends nothing: shaanxi has one sender. */
  assert_int_equal(r.senders[1], 1);
  assert_int_equal(r.senders[0], 0);
  statusq_result_free(&r);
}

static void test_each_filter_keeps_exactly_its_sites(void **state) {
  (void)state;
  setup_net();
  statusq_result_t r;
  run(&(statusq_filter_t){.states = statusq_state_bit("offline") | statusq_state_bit("never")}, &r);
  assert_string_equal(rows(&r), "henan gen-002");
  statusq_result_free(&r);
  run(&(statusq_filter_t){.problems = true}, &r);
  assert_string_equal(rows(&r), "henan gen-001 gen-002");
  statusq_result_free(&r);
  run(&(statusq_filter_t){.moved = true}, &r);
  assert_string_equal(rows(&r), "hubei shaanxi");
  statusq_result_free(&r);
  run(&(statusq_filter_t){.hub = "shaanxi"}, &r);
  assert_string_equal(rows(&r), "hubei");
  statusq_result_free(&r);
  run(&(statusq_filter_t){.prefix = "gen-"}, &r);
  assert_string_equal(rows(&r), "gen-001 gen-002");
  assert_int_equal(r.count[SITE_ONLINE], 2); /* the counts ignore the filters */
  statusq_result_free(&r);
  run(&(statusq_filter_t){.only = "henan"}, &r);
  assert_string_equal(rows(&r), "henan");
  statusq_result_free(&r);
  /* All given must hold. */
  run(&(statusq_filter_t){.moved = true, .states = statusq_state_bit("online"), .hub = "shaanxi"},
      &r);
  assert_string_equal(rows(&r), "hubei");
  statusq_result_free(&r);
  assert_int_equal(statusq_state_bit("never-seen"), 1u << SITE_NEVER_SEEN);
  assert_int_equal(statusq_state_bit("down"), 0);
}

/* A site whose route is not known (its agent not heard here, or unsure of
 * its PBX) is neither home nor away: the route filters take only known
 * routes, its stale shares send nothing, and route_unknown counts it so
 * the reply can say how many the filters could not judge. */
static void test_route_not_known_is_counted_apart(void **state) {
  (void)state;
  setup_net();
  /* gen-001's acked still names shaanxi (from before): not a fact. */
  routes[3].share[0] = (route_share_t){"shaanxi", 1000};
  net[3].route_unknown = true;
  net[4].route_unknown = true;
  statusq_result_t r;
  run(&(statusq_filter_t){.moved = true}, &r);
  assert_string_equal(rows(&r), "hubei shaanxi");
  assert_int_equal(r.senders[1], 1); /* hubei only */
  assert_int_equal(r.route_unknown, 2);
  statusq_result_free(&r);
  run(&(statusq_filter_t){.hub = "shaanxi"}, &r);
  assert_string_equal(rows(&r), "hubei");
  statusq_result_free(&r);
  /* A hub whose own route is not known still receives its known senders. */
  net[1].route_unknown = true;
  run(&(statusq_filter_t){.moved = true}, &r);
  assert_string_equal(rows(&r), "hubei shaanxi");
  assert_int_equal(r.route_unknown, 3);
  statusq_result_free(&r);
  /* A removed site is not counted. */
  net[5].route_unknown = true;
  run(&(statusq_filter_t){0}, &r);
  assert_int_equal(r.route_unknown, 3);
  statusq_result_free(&r);
}

static void test_page_is_a_window_of_the_matching_sites(void **state) {
  (void)state;
  setup_net();
  statusq_result_t r;
  run(&(statusq_filter_t){.offset = 1, .limit = 2}, &r);
  assert_string_equal(rows(&r), "shaanxi henan");
  assert_int_equal(r.matched, 5);
  statusq_result_free(&r);
  run(&(statusq_filter_t){.problems = true, .offset = 2, .limit = 2}, &r);
  assert_string_equal(rows(&r), "gen-002");
  assert_int_equal(r.matched, 3);
  statusq_result_free(&r);
  run(&(statusq_filter_t){.offset = 9, .limit = 2}, &r);
  assert_int_equal(r.n_rows, 0);
  assert_int_equal(r.matched, 5);
  statusq_result_free(&r);
}

/* 20,031 sites, pages of 1,000: every site exactly once, in order. */
#define BIG 20031
static statusq_site_t big[BIG];
static char big_slug[BIG][16];

static size_t find_big(void *ctx, const char *slug) {
  (void)ctx;
  unsigned long i = strtoul(slug + 4, NULL, 10);
  return i < BIG ? i : SIZE_MAX;
}

static void test_paging_returns_every_site_once(void **state) {
  (void)state;
  for (size_t i = 0; i < BIG; i++) {
    snprintf(big_slug[i], sizeof big_slug[i], "gen-%05zu", i);
    big[i] = (statusq_site_t){.slug = big_slug[i], .state = i % 7 ? SITE_NEVER_SEEN : SITE_ONLINE};
  }
  static unsigned char seen[BIG];
  size_t total = 0, offset = 0;
  for (;;) {
    statusq_result_t r;
    statusq_filter_t f = {.offset = offset, .limit = 1000};
    assert_int_equal(statusq_run(big, BIG, find_big, NULL, &f, &r), 0);
    assert_int_equal(r.matched, BIG);
    assert_int_equal(r.count[SITE_ONLINE], (BIG + 6) / 7);
    for (size_t k = 0; k < r.n_rows; k++) {
      assert_int_equal(r.rows[k], offset + k);
      seen[r.rows[k]]++;
    }
    total += r.n_rows;
    size_t got = r.n_rows;
    statusq_result_free(&r);
    if (got == 0 || offset + got >= BIG) break;
    offset += got;
  }
  assert_int_equal(total, BIG);
  for (size_t i = 0; i < BIG; i++)
    assert_int_equal(seen[i], 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_filter_lists_live_sites_and_counts),
      cmocka_unit_test(test_each_filter_keeps_exactly_its_sites),
      cmocka_unit_test(test_route_not_known_is_counted_apart),
      cmocka_unit_test(test_page_is_a_window_of_the_matching_sites),
      cmocka_unit_test(test_paging_returns_every_site_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
