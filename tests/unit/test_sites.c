/* Unit tests for the controller's site registry (controller/routing/sites.c) and
 * for loading nircd's real configuration table (controller/conf.c).
 *
 * The registry is what operators see: a site's link state (never-seen,
 * online, stale, offline), its route and its per-minute load aggregates.
 * These tests check the state machine allows exactly the transitions of
 * the diagram in sites.h, that freshness turns sites stale at exactly
 * stale_after, and that minute aggregation hands back correct totals. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "sites.h"
#include "util.h"

#define STALE_MS 3000u
/* 2020-01-22 13:50:00 UTC: the start of a business minute. */
#define T0 1579701000000LL

/* ---- helpers ---------------------------------------------------------- */

static site_t *add_site(sites_t *s, const char *slug) {
  int rc = sites_add(s, slug, "Name", "名", false);
  if (rc != 0) fail_msg("sites_add(%s) failed: %s", slug, nirc_errname(rc));
  site_t *site = sites_find(s, slug);
  assert_non_null(site);
  return site;
}

static void normal_report(Nirc__LoadReport *r) {
  nirc__load_report__init(r);
  r->site = "hubei";
  r->timestamp_ms = T0;
  r->interval_ms = 1000;
  r->calls_offered = 10;
  r->calls_answered = 8;
  r->calls_abandoned = 1;
  r->calls_in_queue = 4;
  r->longest_wait_ms = 30000;
  r->agents_logged_in = 12;
  r->agents_ready = 2;
  r->agents_talking = 8;
  r->agents_not_ready = 2;
  r->aht_ms = 180000;
  r->answered_within_threshold = 6;
  r->sl_threshold_s = 20;
  r->calls_from_other_sites = 3;
  r->pbx_unreadable = false;
  r->pbx_error = "";
}

typedef struct {
  int calls;
  site_t *last;
} stale_seen_t;

static void on_stale(void *arg, site_t *site) {
  stale_seen_t *s = arg;
  s->calls++;
  s->last = site;
}

#define MAX_FLUSHED 8
typedef struct {
  int n;
  char slug[MAX_FLUSHED][SCENARIO_SLUG_MAX];
  site_minute_t m[MAX_FLUSHED];
} flushed_t;

static void on_flush(void *arg, const site_t *site, const site_minute_t *m) {
  flushed_t *f = arg;
  assert_true(f->n < MAX_FLUSHED);
  snprintf(f->slug[f->n], sizeof f->slug[0], "%s", site->slug);
  f->m[f->n] = *m;
  f->n++;
}

/* ---- state machine ---------------------------------------------------- */

static void test_transitions_all_pairs(void **state) {
  (void)state;
  /* allowed[from][to], written out from the diagram in sites.h. */
  static const bool allowed[4][4] = {
      /* to:           never  online stale  offline */
      /* never-seen */ {false, true, false, false},
      /* online     */ {false, false, true, true},
      /* stale      */ {false, true, false, true},
      /* offline    */ {false, true, false, false},
  };
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *site = add_site(&s, "hubei");
  int legal = 0;
  for (int from = 0; from < 4; from++) {
    for (int to = 0; to < 4; to++) {
      site->state = (site_state_t)from;
      site->state_since_ms = 111;
      int rc = sites_set_state(site, (site_state_t)to, 222);
      if (allowed[from][to]) {
        legal++;
        if (rc != 0)
          fail_msg("%s -> %s should be allowed, got %d", sites_state_name((site_state_t)from),
                   sites_state_name((site_state_t)to), rc);
        assert_int_equal(site->state, to);
        assert_int_equal(site->state_since_ms, 222);
      } else {
        if (rc != NIRC_EINVAL)
          fail_msg("%s -> %s should be refused, got %d", sites_state_name((site_state_t)from),
                   sites_state_name((site_state_t)to), rc);
        assert_int_equal(site->state, from);
        assert_int_equal(site->state_since_ms, 111);
      }
    }
  }
  assert_int_equal(legal, 6);

  /* A state outside the enum is refused too. */
  site->state = SITE_ONLINE;
  assert_int_equal(sites_set_state(site, (site_state_t)4, 1), NIRC_EINVAL);
  assert_int_equal(sites_set_state(site, (site_state_t)-1, 1), NIRC_EINVAL);
  assert_int_equal(site->state, SITE_ONLINE);

  assert_string_equal(sites_state_name(SITE_NEVER_SEEN), "never-seen");
  assert_string_equal(sites_state_name(SITE_ONLINE), "online");
  assert_string_equal(sites_state_name(SITE_STALE), "stale");
  assert_string_equal(sites_state_name(SITE_OFFLINE), "offline");
  assert_string_equal(sites_state_name((site_state_t)9), "?");
  sites_free(&s);
}

/* The events drive the legal path through the diagram. */
static void test_lifecycle_events(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *site = add_site(&s, "hubei");
  int conn;
  Nirc__LoadReport r;
  normal_report(&r);
  site_minute_t flushed;

  assert_int_equal(site->state, SITE_NEVER_SEEN);
  sites_on_hello(site, 1000);
  site->conn = &conn;
  assert_int_equal(site->state, SITE_ONLINE);
  assert_int_equal(site->state_since_ms, 1000);
  assert_int_equal(site->last_seen_ms, 1000);

  /* A second Hello while online keeps the state and its start time. */
  sites_on_hello(site, 1500);
  assert_int_equal(site->state, SITE_ONLINE);
  assert_int_equal(site->state_since_ms, 1000);
  assert_int_equal(site->last_seen_ms, 1500);

  /* Stale, then a report brings it back online and refreshes it. */
  assert_int_equal(sites_check_stale(&s, 1500 + STALE_MS, NULL, NULL), 1);
  assert_int_equal(site->state, SITE_STALE);
  sites_on_report(site, &r, 5000, T0, &flushed);
  assert_int_equal(site->state, SITE_ONLINE);
  assert_int_equal(site->state_since_ms, 5000);
  assert_int_equal(site->last_seen_ms, 5000);
  assert_int_equal(site->last_report_ms, 5000);
  assert_true(site->has_report);
  assert_int_equal(sites_check_stale(&s, 5000 + STALE_MS - 1, NULL, NULL), 0);
  assert_int_equal(site->state, SITE_ONLINE);

  /* Link down: offline, the borrowed connection forgotten. */
  sites_on_link_down(site, 6000);
  assert_int_equal(site->state, SITE_OFFLINE);
  assert_int_equal(site->state_since_ms, 6000);
  assert_null(site->conn);
  /* Offline sites are not turned stale. */
  assert_int_equal(sites_check_stale(&s, 100000, NULL, NULL), 0);
  assert_int_equal(site->state, SITE_OFFLINE);

  /* Reconnect. */
  sites_on_hello(site, 7000);
  site->conn = &conn;
  assert_int_equal(site->state, SITE_ONLINE);

  /* Stale, then link down: offline too. */
  assert_int_equal(sites_check_stale(&s, 7000 + STALE_MS, NULL, NULL), 1);
  assert_int_equal(site->state, SITE_STALE);
  sites_on_link_down(site, 11000);
  assert_int_equal(site->state, SITE_OFFLINE);
  assert_null(site->conn);

  /* Stale -> hello -> online as well. */
  sites_on_hello(site, 12000);
  assert_int_equal(sites_check_stale(&s, 12000 + STALE_MS, NULL, NULL), 1);
  sites_on_hello(site, 16000);
  assert_int_equal(site->state, SITE_ONLINE);

  /* Link down on a never-seen site: no state change, conn still cleared. */
  site_t *other = add_site(&s, "guizhou");
  other->conn = &conn;
  sites_on_link_down(other, 17000);
  assert_int_equal(other->state, SITE_NEVER_SEEN);
  assert_null(other->conn);
  sites_free(&s);
}

static void test_stale_exactly_at_stale_after(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *a = add_site(&s, "hubei");
  site_t *b = add_site(&s, "guizhou");
  site_t *never = add_site(&s, "fujian");
  site_t *off = add_site(&s, "shanxi");
  const int64_t now = 1000000;
  sites_on_hello(a, now);
  sites_on_hello(b, now + 500); /* heard later: not stale yet when a is */
  sites_on_hello(off, now);
  sites_on_link_down(off, now);

  stale_seen_t seen = {0};
  assert_int_equal(sites_check_stale(&s, now + STALE_MS - 1, on_stale, &seen), 0);
  assert_int_equal(seen.calls, 0);
  assert_int_equal(a->state, SITE_ONLINE);

  assert_int_equal(sites_check_stale(&s, now + STALE_MS, on_stale, &seen), 1);
  assert_int_equal(seen.calls, 1);
  assert_ptr_equal(seen.last, a);
  assert_int_equal(a->state, SITE_STALE);
  assert_int_equal(a->state_since_ms, now + STALE_MS);
  assert_int_equal(b->state, SITE_ONLINE);
  assert_int_equal(never->state, SITE_NEVER_SEEN);
  assert_int_equal(off->state, SITE_OFFLINE);

  /* Already stale: not reported again. b turns stale on its own schedule. */
  assert_int_equal(sites_check_stale(&s, now + STALE_MS + 499, on_stale, &seen), 0);
  assert_int_equal(seen.calls, 1);
  assert_int_equal(sites_check_stale(&s, now + STALE_MS + 500, on_stale, &seen), 1);
  assert_int_equal(seen.calls, 2);
  assert_ptr_equal(seen.last, b);
  assert_int_equal(sites_check_stale(&s, now + 10 * STALE_MS, on_stale, &seen), 0);
  assert_int_equal(seen.calls, 2);

  /* A report keeps a site fresh: stale_after counts from the last report. */
  Nirc__LoadReport r;
  normal_report(&r);
  site_minute_t flushed;
  sites_on_report(a, &r, now + 20000, T0, &flushed);
  assert_int_equal(a->state, SITE_ONLINE);
  assert_int_equal(sites_check_stale(&s, now + 20000 + STALE_MS - 1, on_stale, &seen), 0);
  assert_int_equal(a->state, SITE_ONLINE);
  assert_int_equal(sites_check_stale(&s, now + 20000 + STALE_MS, on_stale, &seen), 1);
  assert_int_equal(a->state, SITE_STALE);
  sites_free(&s);
}

/* ---- registry --------------------------------------------------------- */

static void test_add_validates_and_defaults(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  assert_int_equal(s.stale_after_ms, STALE_MS);

  static const char *const bad[] = {
      "",       "Hubei",   "1hubei",
      "-hubei", "hu bei",  "hu_bei",
      "hubei!", "héilóng", "abcdefghijklmnopqrstuvwxyz012345", /* 32 characters: one too many */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (sites_add(&s, bad[i], "x", "x", false) != NIRC_EINVAL)
      fail_msg("slug '%s' should be refused", bad[i]);
  }
  assert_int_equal(sites_add(&s, NULL, "x", "x", false), NIRC_EINVAL);
  assert_int_equal(s.n, 0);

  assert_int_equal(sites_add(&s, "a", "A", "甲", false), 0);
  assert_int_equal(sites_add(&s, "abcdefghijklmnopqrstuvwxyz01234", "Long", "长", false), 0);
  assert_int_equal(sites_add(&s, "shaanxi", "Shaanxi", "陕西", true), 0);
  assert_int_equal(sites_add(&s, "inner-mongolia2", "Inner Mongolia", "内蒙古", false), 0);
  assert_int_equal(s.n, 4);

  /* Duplicates are refused and do not add a second entry. */
  assert_int_equal(sites_add(&s, "shaanxi", "Other", "其他", false), NIRC_EEXISTS);
  assert_int_equal(s.n, 4);

  site_t *hub = sites_find(&s, "shaanxi");
  assert_non_null(hub);
  assert_string_equal(hub->name_en, "Shaanxi");
  assert_string_equal(hub->name_zh, "陕西");
  assert_true(hub->is_hub);
  assert_int_equal(hub->state, SITE_NEVER_SEEN);
  assert_false(hub->has_report);
  assert_null(hub->conn);
  /* Default route: all of its own traffic to itself. */
  assert_int_equal(hub->route_len, 1);
  assert_string_equal(hub->route[0].site, "shaanxi");
  assert_int_equal(hub->route[0].permille, 1000);
  assert_string_equal(hub->active_rule, "default");
  assert_int_equal(hub->minute.reports, 0);

  assert_null(sites_find(&s, "shanxi"));
  assert_null(sites_find(&s, "shaanx"));
  sites_free(&s);
  assert_int_equal(s.n, 0);
  assert_null(s.v);
}

/* The registry grows past its first allocation and every site stays
 * findable with its own data. */
static void test_many_sites(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  char slug[32];
  for (int i = 0; i < 100; i++) {
    snprintf(slug, sizeof slug, "site-%d", i);
    assert_int_equal(sites_add(&s, slug, slug, slug, i % 10 == 0), 0);
  }
  assert_int_equal(s.n, 100);
  for (int i = 0; i < 100; i++) {
    snprintf(slug, sizeof slug, "site-%d", i);
    site_t *site = sites_find(&s, slug);
    assert_non_null(site);
    assert_string_equal(site->name_en, slug);
    assert_string_equal(site->route[0].site, slug);
    assert_int_equal(site->is_hub, i % 10 == 0);
  }
  sites_free(&s);
}

/* ---- per-minute aggregation ------------------------------------------- */

static void test_minute_aggregation(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *site = add_site(&s, "hubei");
  sites_on_hello(site, 1);
  site_minute_t flushed;
  memset(&flushed, 0xEE, sizeof flushed);
  site_minute_t untouched = flushed;
  Nirc__LoadReport r;

  /* Three reports in the minute starting at T0. */
  normal_report(&r);
  r.calls_offered = 10, r.calls_answered = 8, r.calls_abandoned = 1;
  r.answered_within_threshold = 6, r.calls_from_other_sites = 3;
  r.calls_in_queue = 4, r.longest_wait_ms = 30000;
  r.agents_logged_in = 12, r.agents_ready = 2, r.agents_talking = 8, r.aht_ms = 180000;
  assert_false(sites_on_report(site, &r, 10, T0 + 1000, &flushed));
  assert_memory_equal(&flushed, &untouched, sizeof flushed);

  normal_report(&r);
  r.calls_offered = 20, r.calls_answered = 15, r.calls_abandoned = 2;
  r.answered_within_threshold = 9, r.calls_from_other_sites = 0;
  r.calls_in_queue = 9, r.longest_wait_ms = 10000;
  r.agents_logged_in = 14, r.agents_ready = 0, r.agents_talking = 12, r.aht_ms = 200000;
  assert_false(sites_on_report(site, &r, 20, T0 + 30000, &flushed));

  normal_report(&r);
  r.calls_offered = 5, r.calls_answered = 5, r.calls_abandoned = 0;
  r.answered_within_threshold = 5, r.calls_from_other_sites = 5;
  r.calls_in_queue = 1, r.longest_wait_ms = 45000;
  r.agents_logged_in = 10, r.agents_ready = 4, r.agents_talking = 4, r.aht_ms = 160000;
  assert_false(sites_on_report(site, &r, 30, T0 + 59999, &flushed));
  assert_memory_equal(&flushed, &untouched, sizeof flushed);

  /* The running minute is visible while it fills. */
  assert_int_equal(site->minute.minute_ms, T0);
  assert_int_equal(site->minute.reports, 3);
  /* The last report is kept as a copy. */
  assert_int_equal(site->last.offered, 5);
  assert_int_equal(site->last.longest_wait_ms, 45000);

  /* The first report of the next minute hands back the finished one. */
  normal_report(&r);
  r.calls_offered = 7;
  assert_true(sites_on_report(site, &r, 40, T0 + 60000, &flushed));
  assert_int_equal(flushed.minute_ms, T0);
  assert_int_equal(flushed.reports, 3);
  assert_int_equal(flushed.unreadable, 0);
  assert_int_equal(flushed.offered, 35);
  assert_int_equal(flushed.answered, 28);
  assert_int_equal(flushed.abandoned, 3);
  assert_int_equal(flushed.answered_within, 20);
  assert_int_equal(flushed.from_other_sites, 8);
  assert_int_equal(flushed.max_queue, 9);
  assert_int_equal(flushed.max_wait_ms, 45000);
  /* Averages over the readable reports. */
  unsigned readable = flushed.reports - flushed.unreadable;
  assert_true(flushed.sum_logged_in / readable == 12.0);
  assert_true(flushed.sum_ready / readable == 2.0);
  assert_true(flushed.sum_talking / readable == 8.0);
  assert_true(flushed.sum_aht_ms / readable == 180000.0);

  /* The new minute holds only the new report. */
  assert_int_equal(site->minute.minute_ms, T0 + 60000);
  assert_int_equal(site->minute.reports, 1);
  assert_int_equal(site->minute.offered, 7);

  /* A gap of several minutes: the next report still flushes the old one. */
  normal_report(&r);
  assert_true(sites_on_report(site, &r, 50, T0 + 5 * 60000 + 10, &flushed));
  assert_int_equal(flushed.minute_ms, T0 + 60000);
  assert_int_equal(flushed.reports, 1);
  assert_int_equal(flushed.offered, 7);
  assert_int_equal(site->minute.minute_ms, T0 + 5 * 60000);
  sites_free(&s);
}

static void test_unreadable_report(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *site = add_site(&s, "hubei");
  sites_on_hello(site, 1);
  site_minute_t flushed;
  Nirc__LoadReport r;

  normal_report(&r);
  r.calls_offered = 10, r.calls_in_queue = 4, r.agents_logged_in = 12;
  sites_on_report(site, &r, 10, T0, &flushed);

  /* An unreadable interval carrying junk numbers: counted, numbers ignored. */
  normal_report(&r);
  r.pbx_unreadable = true;
  r.pbx_error = "AMI: connection refused";
  r.calls_offered = 999, r.calls_answered = 999, r.calls_in_queue = 999;
  r.longest_wait_ms = 999999, r.agents_logged_in = 999, r.aht_ms = 999;
  r.calls_from_other_sites = 999, r.answered_within_threshold = 999;
  sites_on_report(site, &r, 20, T0 + 1000, &flushed);
  assert_true(site->last.pbx_unreadable);
  assert_string_equal(site->last.pbx_error, "AMI: connection refused");

  sites_t *sp = &s;
  flushed_t f = {0};
  sites_flush_minutes(sp, T0 + 60000, false, on_flush, &f);
  assert_int_equal(f.n, 1);
  const site_minute_t *m = &f.m[0];
  assert_int_equal(m->reports, 2);
  assert_int_equal(m->unreadable, 1);
  assert_int_equal(m->offered, 10);
  assert_int_equal(m->answered, 8);
  assert_int_equal(m->answered_within, 6);
  assert_int_equal(m->from_other_sites, 3);
  assert_int_equal(m->max_queue, 4);
  assert_int_equal(m->max_wait_ms, 30000);
  assert_true(m->sum_logged_in == 12.0);
  assert_true(m->sum_aht_ms == 180000.0);

  /* A minute of nothing but unreadable reports still exists (it is how the
   * outage shows), with no numbers in it. */
  sites_on_report(site, &r, 30, T0 + 120000, &flushed);
  f.n = 0;
  sites_flush_minutes(sp, 0, true, on_flush, &f);
  assert_int_equal(f.n, 1);
  assert_int_equal(f.m[0].reports, 1);
  assert_int_equal(f.m[0].unreadable, 1);
  assert_int_equal(f.m[0].offered, 0);
  assert_int_equal(f.m[0].max_queue, 0);
  assert_true(f.m[0].sum_logged_in == 0.0);
  sites_free(&s);
}

/* Regression (fuzz_report): the PBX error was cut at 127 bytes in the
 * middle of a character, and kept bytes that are not UTF-8; either took the
 * site out of the status page's and nircctl's JSON. */
static void test_pbx_error_kept_as_text(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *site = add_site(&s, "hubei");
  sites_on_hello(site, 1);
  site_minute_t flushed;
  Nirc__LoadReport r;
  char long_error[400] = "";
  for (int i = 0; i < 60; i++)
    strcat(long_error, "连接"); /* 3 bytes each: 127 falls inside one */
  normal_report(&r);
  r.pbx_unreadable = true;
  r.pbx_error = long_error;
  char why[256];
  assert_int_equal(sites_validate_report(&r, why, sizeof why), 0);
  sites_on_report(site, &r, 10, T0, &flushed);
  assert_true(nirc_utf8_valid(site->last.pbx_error));
  assert_int_equal(strlen(site->last.pbx_error), 126); /* 42 whole characters */

  r.pbx_error = "AMI \xff\xfe refused";
  sites_on_report(site, &r, 20, T0 + 1000, &flushed);
  assert_string_equal(site->last.pbx_error, "AMI ?? refused");
  sites_free(&s);
}

static void test_flush_minutes(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *a = add_site(&s, "hubei");
  site_t *b = add_site(&s, "guizhou");
  add_site(&s, "fujian"); /* never reports: never flushed */
  site_minute_t flushed;
  Nirc__LoadReport r;
  normal_report(&r);
  r.calls_offered = 4;
  sites_on_report(a, &r, 1, T0 + 5000, &flushed);
  sites_on_report(a, &r, 2, T0 + 6000, &flushed);
  r.calls_offered = 9;
  sites_on_report(b, &r, 3, T0 + 60000 + 5000, &flushed);

  /* Inside a's minute: nothing has ended. */
  flushed_t f = {0};
  sites_flush_minutes(&s, T0 + 59999, false, on_flush, &f);
  assert_int_equal(f.n, 0);

  /* At the next minute a's minute has ended; b's is still running. */
  sites_flush_minutes(&s, T0 + 60000, false, on_flush, &f);
  assert_int_equal(f.n, 1);
  assert_string_equal(f.slug[0], "hubei");
  assert_int_equal(f.m[0].minute_ms, T0);
  assert_int_equal(f.m[0].reports, 2);
  assert_int_equal(f.m[0].offered, 8);
  assert_int_equal(a->minute.reports, 0);
  /* Handed back once only. */
  sites_flush_minutes(&s, T0 + 10 * 60000, false, on_flush, &f);
  assert_int_equal(f.n, 2);
  assert_string_equal(f.slug[1], "guizhou");
  assert_int_equal(f.m[1].offered, 9);

  /* force hands back a partial minute that is still running. */
  r.calls_offered = 2;
  sites_on_report(a, &r, 4, T0 + 20 * 60000 + 1, &flushed);
  sites_flush_minutes(&s, T0 + 20 * 60000 + 2, false, on_flush, &f);
  assert_int_equal(f.n, 2);
  sites_flush_minutes(&s, T0 + 20 * 60000 + 2, true, on_flush, &f);
  assert_int_equal(f.n, 3);
  assert_string_equal(f.slug[2], "hubei");
  assert_int_equal(f.m[2].minute_ms, T0 + 20 * 60000);
  assert_int_equal(f.m[2].reports, 1);
  assert_int_equal(f.m[2].offered, 2);
  /* Nothing left afterwards, even with force. */
  sites_flush_minutes(&s, T0 + 30 * 60000, true, on_flush, &f);
  assert_int_equal(f.n, 3);

  /* After a forced flush the next report starts a fresh minute and does not
   * hand back anything. */
  assert_false(sites_on_report(a, &r, 5, T0 + 20 * 60000 + 3, &flushed));
  assert_int_equal(a->minute.reports, 1);
  sites_free(&s);
}

/* ---- report validation ------------------------------------------------ */

static void expect_invalid(const Nirc__LoadReport *r, const char *what) {
  char err[256] = "";
  int rc = sites_validate_report(r, err, sizeof err);
  if (rc != NIRC_ERANGE) fail_msg("%s: expected NIRC_ERANGE, got %d", what, rc);
  if (!err[0]) fail_msg("%s: refused without a reason", what);
}

static void test_validate_report(void **state) {
  (void)state;
  Nirc__LoadReport r;
  char err[256];
  normal_report(&r);
  assert_int_equal(sites_validate_report(&r, err, sizeof err), 0);

  /* Limits are inclusive: equal counts are plausible. */
  normal_report(&r);
  r.agents_ready = r.agents_talking = r.agents_not_ready = r.agents_logged_in;
  r.answered_within_threshold = r.calls_answered;
  r.calls_from_other_sites = r.calls_offered;
  r.interval_ms = 600000;
  assert_int_equal(sites_validate_report(&r, err, sizeof err), 0);
  /* A quiet night: all zeros except the interval. */
  nirc__load_report__init(&r);
  r.interval_ms = 1000;
  assert_int_equal(sites_validate_report(&r, err, sizeof err), 0);

  normal_report(&r);
  r.agents_ready = r.agents_logged_in + 1;
  expect_invalid(&r, "ready > logged_in");
  normal_report(&r);
  r.agents_talking = r.agents_logged_in + 1;
  expect_invalid(&r, "talking > logged_in");
  normal_report(&r);
  r.agents_not_ready = r.agents_logged_in + 1;
  expect_invalid(&r, "not_ready > logged_in");
  normal_report(&r);
  r.answered_within_threshold = r.calls_answered + 1;
  expect_invalid(&r, "answered_within > answered");
  normal_report(&r);
  r.interval_ms = 0;
  expect_invalid(&r, "interval 0");
  normal_report(&r);
  r.interval_ms = 86400001;
  expect_invalid(&r, "interval over a day");
  normal_report(&r);
  r.calls_from_other_sites = r.calls_offered + 1;
  expect_invalid(&r, "from_other_sites > offered");
  normal_report(&r);
  r.calls_offered = 1000001;
  expect_invalid(&r, "offered over a million");
  normal_report(&r);
  r.longest_wait_ms = 86400001u;
  expect_invalid(&r, "wait over a day");
}

/* A source's per-destination counts are checked like the rest of its
 * report, then credited to the hubs they name, and only to those. */
static void test_routed_to_credited_to_hubs(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *hubei = add_site(&s, "hubei");
  site_t *shaanxi = add_site(&s, "shaanxi");
  site_t *henan = add_site(&s, "henan");
  Nirc__LoadReport r;
  Nirc__SiteCount c[3] = {NIRC__SITE_COUNT__INIT, NIRC__SITE_COUNT__INIT, NIRC__SITE_COUNT__INIT};
  Nirc__SiteCount *cp[3] = {&c[0], &c[1], &c[2]};
  normal_report(&r);
  r.calls_routed_away = 10;
  r.routed_to = cp;
  c[0].site = "shaanxi", c[0].calls = 6;
  c[1].site = "henan", c[1].calls = 3;
  r.n_routed_to = 2;
  char err[256];
  assert_int_equal(sites_validate_report(&r, err, sizeof err), 0);
  assert_int_equal(sites_credit_routed(&s, hubei, &r), 9);
  assert_int_equal(sites_credit_routed(&s, hubei, &r), 9);
  assert_int_equal(shaanxi->inbound_credited, 12);
  assert_int_equal(henan->inbound_credited, 6);
  assert_int_equal(hubei->inbound_credited, 0);
  /* Not credited: the source itself, a site nobody knows. */
  c[0].site = "hubei", c[1].site = "xinjiang";
  assert_int_equal(sites_validate_report(&r, err, sizeof err), 0);
  assert_int_equal(sites_credit_routed(&s, hubei, &r), 0);
  assert_int_equal(hubei->inbound_credited, 0);
  /* An unreadable interval credits nothing. */
  c[0].site = "shaanxi", c[1].site = "henan";
  r.pbx_unreadable = true;
  assert_int_equal(sites_credit_routed(&s, hubei, &r), 0);
  assert_int_equal(shaanxi->inbound_credited, 12);
  r.pbx_unreadable = false;
  /* Refused outright: more than was routed away, a name that is not a
   * site, a site twice, too many entries. */
  c[0].calls = 8;
  expect_invalid(&r, "routed_to over routed_away");
  c[0].calls = 6;
  c[1].site = "He\nnan";
  expect_invalid(&r, "routed_to name not a slug");
  c[1].site = NULL;
  expect_invalid(&r, "routed_to without a name");
  c[1].site = "shaanxi", c[1].calls = 1;
  expect_invalid(&r, "routed_to twice");
  r.n_routed_to = SITES_ROUTED_MAX + 1;
  expect_invalid(&r, "routed_to too long");
  sites_free(&s);
}

/* What wave verification takes differences of: a source's reports, those
 * that measured routing, its own arrivals and what it sent to each site;
 * a destination replaced when more than SITES_SENT_MAX were named says its
 * earlier count is lost; the recent flow is known only while measured. */
static void test_source_totals_for_verification(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, STALE_MS);
  site_t *hubei = add_site(&s, "hubei");
  Nirc__LoadReport r;
  Nirc__SiteCount c = NIRC__SITE_COUNT__INIT, *cp = &c;
  site_minute_t flushed;
  normal_report(&r); /* 10 offered, 3 of them from other sites */
  r.calls_routed_away = 6;
  r.routed_to = &cp;
  r.n_routed_to = 1;
  c.site = "shaanxi", c.calls = 6;
  r.routing_measured = true;
  sites_on_report(hubei, &r, 1000, T0, &flushed);
  sites_on_report(hubei, &r, 2000, T0 + 1000, &flushed);
  assert_int_equal(hubei->reports_total, 2);
  assert_int_equal(hubei->routing_measured_total, 2);
  assert_int_equal(hubei->own_calls_total, 2 * (10 - 3 + 6));
  bool known;
  assert_int_equal(sites_sent_to(hubei, "shaanxi", 0, &known), 12);
  assert_true(known);
  assert_int_equal(sites_sent_to(hubei, "henan", 0, &known), 0);
  assert_true(known);
  assert_true(fabs(sites_flow_cps(hubei, &hubei->sent[0]) - 6.0) < 1e-9);
  /* Not measured: counted as a report, not as measured; no rate known. */
  r.routing_measured = false;
  sites_on_report(hubei, &r, 3000, T0 + 2000, &flushed);
  assert_int_equal(hubei->reports_total, 3);
  assert_int_equal(hubei->routing_measured_total, 2);
  assert_false(hubei->routing_measured);
  assert_true(sites_flow_cps(hubei, &hubei->sent[0]) == 0);
  /* Unreadable: nothing counted but the report. */
  r.pbx_unreadable = true;
  sites_on_report(hubei, &r, 4000, T0 + 3000, &flushed);
  assert_int_equal(hubei->own_calls_total, 3 * (10 - 3 + 6));
  r.pbx_unreadable = false;
  r.routing_measured = true;
  /* Nine destinations: the one that grew least recently makes room, and
   * its count since an earlier report is lost. */
  static const char *const names[] = {"henan", "sichuan",   "hunan",   "jiangxi",
                                      "anhui", "chongqing", "guizhou", "yunnan"};
  c.calls = 1;
  for (size_t k = 0; k < 8; k++) {
    c.site = (char *)names[k];
    sites_on_report(hubei, &r, 5000 + (int64_t)k, T0 + 4000, &flushed);
  }
  assert_int_equal(hubei->n_sent, SITES_SENT_MAX);
  assert_int_equal(sites_sent_to(hubei, "shaanxi", 0, &known), 0); /* replaced */
  assert_int_equal(sites_sent_to(hubei, "yunnan", 0, &known), 1);
  assert_false(known); /* counted only from a later report */
  assert_int_equal(sites_sent_to(hubei, "yunnan", hubei->reports_total, &known), 1);
  assert_true(known);
  sites_free(&s);
}

/* ---- nircd's configuration table -------------------------------------- */

static const char *const NIRCD_MINIMAL = "[tls]\n"
                                         "ca = /etc/nirc/ca.crt\n"
                                         "cert = /etc/nirc/nircd.crt\n"
                                         "key = /etc/nirc/nircd.key\n"
                                         "[database]\n"
                                         "conninfo = host=/run/postgresql dbname=nirc\n";

static int load_nircd(const char *text, nircd_conf_t *c, char *err, size_t errlen) {
  char path[] = "/tmp/nirc-test-nircd-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  assert_int_equal(close(fd), 0);
  memset(c, 0, sizeof *c);
  err[0] = '\0';
  int rc = conf_nircd_load(path, c, err, errlen);
  unlink(path);
  return rc;
}

/* An agent stopped for five business minutes (its link died meanwhile)
 * sends, once back, one report of everything since its last: interval_ms
 * says the span, so the calls are a rate over it, not a burst. The
 * demand, the handle time and the smoothed figures stay what they were;
 * a site that really gets busier moves them. */
static void test_catch_up_report_is_a_rate(void **state) {
  (void)state;
  sites_t s;
  sites_init(&s, 3000);
  site_t *site = add_site(&s, "hubei");
  site_minute_t fl;
  Nirc__LoadReport r;
  int64_t t = T0;
  for (int k = 0; k < 30; k++) { /* half an hour: 9 calls a minute */
    normal_report(&r);
    r.interval_ms = 60000, r.calls_offered = r.calls_answered = 9, r.calls_from_other_sites = 0;
    r.answered_within_threshold = 9, r.calls_in_queue = 0, r.longest_wait_ms = 0;
    t += 60000;
    sites_on_report(site, &r, t, t, &fl);
  }
  double cps = sites_demand_cps(site, 0, 0), aht = site->aht_s, wait = site->wait_s;
  assert_true(fabs(cps - 0.15) < 0.01);
  r.interval_ms = 336000, r.calls_offered = r.calls_answered = 48, r.answered_within_threshold = 48;
  t += 336000;
  sites_on_report(site, &r, t, t, &fl);
  assert_true(fabs(sites_demand_cps(site, 0, 0) - cps) < 0.01);
  assert_true(fabs(site->aht_s - aht) < 1e-6 && fabs(site->wait_s - wait) < 1e-6);
  r.interval_ms = 60000, r.calls_offered = r.calls_answered = 48, r.answered_within_threshold = 48;
  for (int k = 0; k < 5; k++) {
    t += 60000;
    sites_on_report(site, &r, t, t, &fl);
  }
  assert_true(sites_demand_cps(site, 0, 0) > 2 * cps);
  sites_free(&s);
}

static void test_nircd_conf_minimal(void **state) {
  (void)state;
  nircd_conf_t c;
  char err[512];
  int rc = load_nircd(NIRCD_MINIMAL, &c, err, sizeof err);
  if (rc != 0) fail_msg("minimal nircd.conf refused: %s", err);
  assert_string_equal(c.node, "nircd");
  assert_int_equal(c.listen.count, 1);
  assert_string_equal(c.listen.item[0], "127.0.0.1:7443");
  assert_string_equal(c.ca, "/etc/nirc/ca.crt");
  assert_string_equal(c.key, "/etc/nirc/nircd.key");
  /* The '=' inside the value belongs to the value. */
  assert_string_equal(c.conninfo, "host=/run/postgresql dbname=nirc");
  assert_int_equal(c.report_interval_ms, 1000);
  assert_int_equal(c.stale_after_ms, 3000);
  assert_true(c.stale_after_ms > c.report_interval_ms);
  assert_true(c.clock.speed == 1.0);
  assert_string_equal(c.log.level, "info");
}

static void test_nircd_conf_stale_after_must_exceed_interval(void **state) {
  (void)state;
  nircd_conf_t c;
  char err[512];
  char text[1024];

  snprintf(text, sizeof text, "%s[timing]\nreport_interval = 2s\nstale_after = 2s\n",
           NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "stale_after"));

  snprintf(text, sizeof text, "%s[timing]\nreport_interval = 5s\nstale_after = 1s\n",
           NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "stale_after"));

  /* Only the default stale_after (3s) against a longer interval. */
  snprintf(text, sizeof text, "%s[timing]\nreport_interval = 3s\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "stale_after"));

  /* Just longer is enough. */
  snprintf(text, sizeof text, "%s[timing]\nreport_interval = 2s\nstale_after = 2001ms\n",
           NIRCD_MINIMAL);
  int rc = load_nircd(text, &c, err, sizeof err);
  if (rc != 0) fail_msg("stale_after 2001ms > report_interval 2s refused: %s", err);
  assert_int_equal(c.stale_after_ms, 2001);
  assert_int_equal(c.report_interval_ms, 2000);
}

static void test_nircd_conf_refusals(void **state) {
  (void)state;
  nircd_conf_t c;
  char err[512];
  char text[1024];

  /* A required option missing is named. */
  assert_int_equal(
      load_nircd("[tls]\nca = a\ncert = b\n[database]\nconninfo = x\n", &c, err, sizeof err),
      NIRC_ECONFIG);
  assert_non_null(strstr(err, "'key'"));
  assert_non_null(strstr(err, "[tls]"));

  snprintf(text, sizeof text, "%s[controller]\nnode = NIRCD_1\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "node"));

  snprintf(text, sizeof text, "%s[controller]\nlisten = 127.0.0.1\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "listen"));

  snprintf(text, sizeof text, "%s[log]\nlevel = loud\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "level"));

  snprintf(text, sizeof text, "%s[clock]\nstart = yesterday\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "start"));

  /* Line 7 is the first line after the six of the minimal file. */
  snprintf(text, sizeof text, "%sreport_interval = 1s\n", NIRCD_MINIMAL);
  assert_int_equal(load_nircd(text, &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, ":7: "));

  /* Two listen addresses, IPv4 and IPv6. */
  snprintf(text, sizeof text,
           "%s[controller]\nnode = nircd-2\nlisten = 127.0.0.1:7443, [::1]:7443\n", NIRCD_MINIMAL);
  int rc = load_nircd(text, &c, err, sizeof err);
  if (rc != 0) fail_msg("two listen addresses refused: %s", err);
  assert_string_equal(c.node, "nircd-2");
  assert_int_equal(c.listen.count, 2);
  assert_string_equal(c.listen.item[1], "[::1]:7443");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transitions_all_pairs),
      cmocka_unit_test(test_lifecycle_events),
      cmocka_unit_test(test_stale_exactly_at_stale_after),
      cmocka_unit_test(test_add_validates_and_defaults),
      cmocka_unit_test(test_many_sites),
      cmocka_unit_test(test_minute_aggregation),
      cmocka_unit_test(test_unreadable_report),
      cmocka_unit_test(test_pbx_error_kept_as_text),
      cmocka_unit_test(test_flush_minutes),
      cmocka_unit_test(test_validate_report),
      cmocka_unit_test(test_routed_to_credited_to_hubs),
      cmocka_unit_test(test_source_totals_for_verification),
      cmocka_unit_test(test_catch_up_report_is_a_rate),
      cmocka_unit_test(test_nircd_conf_minimal),
      cmocka_unit_test(test_nircd_conf_stale_after_must_exceed_interval),
      cmocka_unit_test(test_nircd_conf_refusals),
  };
  return cmocka_run_group_tests(tests, 0, NULL);
}
