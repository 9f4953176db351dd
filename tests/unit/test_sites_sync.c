/* Unit tests of server_sites_sync (controller/net/server_sites.c): how a
 * controller applies a snapshot of the sites table that another writer
 * changed (nircd import-sites, another controller's nircctl site), as the
 * leader and every standby do on each NOTIFY nirc_sites. No loop, no
 * links, no database: a server_t with only its registry. */
#include "server.h"
#include "sites.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void add(sites_t *s, const char *slug, const char *name, bool hub) {
  assert_int_equal(sites_add(s, slug, name, "", hub), 0);
}

/* Changes, additions, removals and additions again are applied; indexes
 * never shift; a row deleted from the table is kept; a site removed
 * elsewhere that this controller never knew is known as removed (its
 * agent is told when and by whom). */
static void test_snapshot_applied(void **state) {
  (void)state;
  server_t *srv = calloc(1, sizeof *srv);
  assert_non_null(srv);
  sites_init(&srv->sites, 3000);
  add(&srv->sites, "hubei", "Hubei", false);
  add(&srv->sites, "shaanxi", "Shaanxi", true);
  add(&srv->sites, "xizang", "Tibet", false);
  add(&srv->sites, "gone", "Gone", false);
  sites_remove(sites_find(&srv->sites, "gone"), 1000, "operator:alice");

  sites_t snap;
  sites_init(&snap, 0);
  add(&snap, "hubei", "Hubei (renamed)", false);
  add(&snap, "shaanxi", "Shaanxi", false); /* made a source */
  add(&snap, "gone", "Gone again", true);  /* added again elsewhere */
  add(&snap, "lemuria", "Lemuria", false); /* new */
  add(&snap, "atlantis", "Atlantis", false);
  sites_remove(sites_find(&snap, "atlantis"), 5000, "operator:bob"); /* never known here */
  /* xizang: deleted from the table by hand (not in the snapshot). */
  snap.taken_mono = 1;
  server_sites_sync(srv, &snap);

  assert_string_equal(sites_find(&srv->sites, "hubei")->name_en, "Hubei (renamed)");
  assert_false(sites_find(&srv->sites, "shaanxi")->is_hub);
  site_t *g = sites_find_live(&srv->sites, "gone");
  assert_non_null(g);
  assert_int_equal(g - srv->sites.v, 3); /* same index */
  assert_true(g->is_hub);
  assert_int_equal(sites_find(&srv->sites, "lemuria") - srv->sites.v, 4);
  site_t *a = sites_find(&srv->sites, "atlantis");
  assert_non_null(a);
  assert_int_equal(a->life, SITE_REMOVED);
  assert_int_equal(a->removed_ms, 5000);
  char why[300];
  server_site_removed_text(a, why, sizeof why);
  assert_non_null(strstr(why, "site atlantis was removed at 1970-01-01T00:00:05Z by operator:bob"));
  assert_non_null(sites_find_live(&srv->sites, "xizang")); /* kept */

  /* Removed in a later snapshot. */
  sites_remove(sites_find(&snap, "lemuria"), 7000, "operator:bob");
  server_sites_sync(srv, &snap);
  assert_null(sites_find_live(&srv->sites, "lemuria"));
  assert_int_equal(sites_live(&srv->sites), 4); /* hubei, shaanxi, xizang, gone */
  sites_free(&snap);
  sites_free(&srv->sites);
  free(srv);
}

/* A change made here and not yet durable, or durable for less than a
 * second before the snapshot was read, is not undone by the snapshot. */
static void test_own_change_not_undone(void **state) {
  (void)state;
  server_t *srv = calloc(1, sizeof *srv);
  assert_non_null(srv);
  sites_init(&srv->sites, 3000);
  add(&srv->sites, "hubei", "Hubei (new name)", false);
  sites_t snap;
  sites_init(&snap, 0);
  add(&snap, "hubei", "Hubei (old name)", false);
  snap.taken_mono = 100000;
  site_t *h = sites_find(&srv->sites, "hubei");
  h->change_pending = 1;
  server_sites_sync(srv, &snap);
  assert_string_equal(h->name_en, "Hubei (new name)");
  h->change_pending = 0;
  h->local_change_mono = 99500; /* durable 0.5 s before the snapshot was read */
  server_sites_sync(srv, &snap);
  assert_string_equal(h->name_en, "Hubei (new name)");
  h->local_change_mono = 98000; /* 2 s before: the snapshot is newer, and wins */
  server_sites_sync(srv, &snap);
  assert_string_equal(h->name_en, "Hubei (old name)");
  sites_free(&snap);
  sites_free(&srv->sites);
  free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_snapshot_applied),
      cmocka_unit_test(test_own_change_not_undone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
