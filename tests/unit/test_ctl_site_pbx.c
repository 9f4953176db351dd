/* A site's recent PBX events: the server's bounded log of them
 * (controller/net/pbxlog.c) and how `nircctl site SLUG` shows them, text
 * and --json (controller/ctl_sites.c), on hand-made data. */
#include "ctl_sites.h"
#include "ctl_status.h"
#include "pbxlog.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* 2026-12-05 03:00:00 +08:00 */
#define T0 1796410800000LL

static pbxlog_event_t ev_at(int64_t at_ms, const char *event) {
  pbxlog_event_t e = {.at_ms = at_ms};
  snprintf(e.event, sizeof e.event, "%s", event);
  snprintf(e.detail, sizeof e.detail, "at %lld", (long long)at_ms);
  return e;
}

/* Newest first by when the agent saw it (a late one goes where it
 * belongs), PBXLOG_KEEP at most, and only sites with events cost one. */
static void test_log_keeps_the_newest_in_true_order(void **state) {
  (void)state;
  pbxlog_t l = {0};
  const pbxlog_event_t *got;
  assert_int_equal(pbxlog_get(&l, 5, &got), 0);
  assert_null(got);
  for (int i = 0; i < PBXLOG_KEEP + 3; i++) {
    pbxlog_event_t e = ev_at(T0 + i * 60000, "pbx_drift_repaired");
    assert_int_equal(pbxlog_add(&l, 19999, &e), 0);
  }
  /* Reported late: seen before the two newest, arrived after them. */
  pbxlog_event_t late = ev_at(T0 + (PBXLOG_KEEP + 1) * 60000 - 30000, "pbx_drift_not_repaired");
  late.late_ms = 9 * 60000;
  assert_int_equal(pbxlog_add(&l, 19999, &late), 0);
  /* Older than all kept: not kept. */
  pbxlog_event_t old = ev_at(T0 - 3600000, "route_unconfirmed");
  assert_int_equal(pbxlog_add(&l, 19999, &old), 0);
  size_t n = pbxlog_get(&l, 19999, &got);
  assert_int_equal(n, PBXLOG_KEEP);
  assert_int_equal(got[0].at_ms, T0 + (PBXLOG_KEEP + 2) * 60000);
  assert_int_equal(got[1].at_ms, T0 + (PBXLOG_KEEP + 1) * 60000);
  assert_string_equal(got[2].event, "pbx_drift_not_repaired");
  assert_int_equal(got[2].late_ms, 9 * 60000);
  for (size_t k = 1; k < n; k++)
    assert_true(got[k - 1].at_ms >= got[k].at_ms);
  assert_int_equal(got[n - 1].at_ms, T0 + 4 * 60000); /* 10, 9, 8.5 (late), 8 ... 4 */
  /* One site with events among 20,000: one allocated. */
  size_t allocated = 0;
  for (size_t i = 0; i < l.n; i++)
    allocated += l.by_site[i] != NULL;
  assert_int_equal(allocated, 1);
  assert_int_equal(pbxlog_get(&l, 3, &got), 0);
  pbxlog_free(&l);
  assert_int_equal(l.n, 0);
}

typedef struct {
  Nirc__StatusReply st;
  Nirc__SiteStatus s, *sp[1];
  Nirc__SitePbxEvent e[3], *ep[3];
} fixture_t;

static void make(fixture_t *f) {
  memset(f, 0, sizeof *f);
  nirc__status_reply__init(&f->st);
  f->st.server_time_ms = T0;
  f->st.controller_node = "nircd-1";
  nirc__site_status__init(&f->s);
  f->s.slug = "xizang";
  f->s.name_en = "Xizang";
  f->s.name_zh = "西藏";
  f->s.link_state = NIRC__LINK_STATE__LINK_STATE_ONLINE;
  f->s.report_age_ms = -1;
  f->s.active_rule = "default";
  f->sp[0] = &f->s;
  f->st.sites = f->sp;
  f->st.n_sites = 1;
  f->s.pbx_events_since_ms = T0 - 3600000; /* 02:00 */
  const char *kinds[3] = {"pbx_drift_repaired", "route_unconfirmed", "pbx_from_the_future"};
  for (int i = 0; i < 3; i++) {
    nirc__site_pbx_event__init(&f->e[i]);
    f->e[i].at_ms = T0 - i * 600000;
    f->e[i].event = (char *)kinds[i];
    f->e[i].detail = "the PBX routed xizang, the agent's route is shaanxi";
    f->ep[i] = &f->e[i];
  }
  f->e[0].late_ms = 42000;
  f->e[1].detail = "evil \033[2J text";
  f->e[2].at_or_before = 1;
  f->s.pbx_events = f->ep;
  f->s.n_pbx_events = 3;
}

static char *site_text(fixture_t *f) {
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_site_print(out, &f->st, &o);
  fclose(out);
  return text;
}

static void want_in(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
}

/* Each event at its true time in the ctl zone, its kind in words, when it
 * came late, the detail escaped; since when they are kept and where the
 * earlier ones are. */
static void test_site_lists_its_pbx_events(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  char *text = site_text(&f);
  want_in(text, "PBX events (last 3, newest first, times in Asia/Shanghai; received since this "
                "controller started at 2026-12-05 02:00:00, earlier ones are in the database: "
                "link_events)\n");
  want_in(text, "  2026-12-05 03:00:00  drift repaired (reported 42 s later): the PBX routed "
                "xizang, the agent's route is shaanxi\n");
  want_in(text, "  2026-12-05 02:50:00  route unconfirmed (not applied at the PBX): evil "
                "\\x1b[2J text\n");
  want_in(text, "  2026-12-05 02:40:00  pbx_from_the_future (at or before: its agent did not "
                "say when): ");
  assert_null(strchr(text, '\033'));
  free(text);

  f.s.n_pbx_events = 0;
  text = site_text(&f);
  want_in(text, "PBX events: none received since this controller started at 2026-12-05 02:00:00 "
                "(Asia/Shanghai); earlier ones are in the database (link_events)\n");
  free(text);

  f.s.pbx_events_since_ms = 0; /* a controller older than the field */
  text = site_text(&f);
  want_in(text, "PBX events: not sent by this controller (older than nircctl)");
  free(text);
}

static void test_site_json_lists_its_pbx_events(void **state) {
  (void)state;
  fixture_t f;
  make(&f);
  ctl_status_opts_t o = {.tz = "Asia/Shanghai"};
  json_t *top = ctl_status_json(&f.st, &o);
  json_t *x = json_array_get(json_object_get(top, "sites"), 0);
  assert_int_equal(json_integer_value(json_object_get(x, "pbx_events_since_ms")), T0 - 3600000);
  json_t *a = json_object_get(x, "pbx_events");
  assert_int_equal(json_array_size(a), 3);
  json_t *e = json_array_get(a, 0);
  assert_int_equal(json_integer_value(json_object_get(e, "at_ms")), T0);
  assert_int_equal(json_integer_value(json_object_get(e, "late_ms")), 42000);
  assert_true(json_is_false(json_object_get(e, "at_or_before")));
  assert_string_equal(json_string_value(json_object_get(e, "event")), "pbx_drift_repaired");
  assert_true(json_is_true(json_object_get(json_array_get(a, 2), "at_or_before")));
  json_decref(top);
  /* A status row (or an older controller) has no such keys. */
  f.s.pbx_events_since_ms = 0;
  top = ctl_status_json(&f.st, &o);
  x = json_array_get(json_object_get(top, "sites"), 0);
  assert_null(json_object_get(x, "pbx_events"));
  assert_null(json_object_get(x, "pbx_events_since_ms"));
  json_decref(top);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_keeps_the_newest_in_true_order),
      cmocka_unit_test(test_site_lists_its_pbx_events),
      cmocka_unit_test(test_site_json_lists_its_pbx_events),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
