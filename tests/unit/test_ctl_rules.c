/* nircctl's rule lists (controller/ctl_rules.c) and plan output
 * (controller/ctl_plan.c) on hand-made replies: a site whose route is not
 * known here is neither moved nor home, so `schedule list` says "n/N, M
 * not known" with no verdict word, `overflow list` "not known", each with
 * a line saying what it means, --json carries sources_not_known and
 * route_not_known (moved_permille null: unknown is not zero), and a plan
 * names the sites whose calls its figures place where it sends them. */
#include "ctl_plan.h"
#include "ctl_rules.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char *printed_schedules(const Nirc__ScheduleReply *r) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_schedules_print(out, r, "Asia/Shanghai");
  fclose(out);
  return text;
}

static char *printed_overflows(const Nirc__OverflowReply *r) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  ctl_overflows_print(out, r);
  fclose(out);
  return text;
}

/* The column `word` starts at in the heading (the first line). */
static size_t col_of(const char *text, const char *word) {
  const char *p = strstr(text, word);
  assert_non_null(p);
  return (size_t)(p - text);
}

static void test_schedule_in_force_with_sources_not_known(void **state) {
  (void)state;
  char *src[] = {"hubei", "guizhou", "fujian"}, *hubs[] = {"shaanxi"};
  Nirc__ScheduleSpec a = NIRC__SCHEDULE_SPEC__INIT, b = NIRC__SCHEDULE_SPEC__INIT;
  Nirc__ScheduleSpec *v[] = {&a, &b};
  a.name = "night";
  a.sources = src;
  a.n_sources = 3;
  a.hubs = hubs;
  a.n_hubs = 1;
  a.start = "22:00";
  a.end = "08:00";
  a.days = "daily";
  a.tz = "Asia/Shanghai";
  a.enabled = 1;
  a.in_force = 1;
  a.sources_moved = 1;
  a.sources_not_known = 2;
  b = a;
  b.name = "day";
  b.sources_moved = 3;
  b.sources_not_known = 0;
  Nirc__ScheduleReply r = NIRC__SCHEDULE_REPLY__INIT;
  r.schedules = v;
  r.n_schedules = 2;
  char *text = printed_schedules(&r);
  /* No verdict: one moved, two not known, not "PARTLY". */
  if (!strstr(text, "\nnight ") || !strstr(text, " 1/3, 2 not known ") || strstr(text, "PARTLY"))
    fail_msg("night is not '1/3, 2 not known':\n%s", text);
  if (!strstr(text, " YES 3/3 ")) fail_msg("day is not 'YES 3/3':\n%s", text);
  if (!strstr(text, "\nIN FORCE n/N, M not known: n sources moved by it, M whose route is not "
                    "known here (not heard, or unknown at the PBX): nircctl status --problems\n"))
    fail_msg("no line for 'not known' under:\n%s", text);
  /* NEXT START stays one column: the wider cell widens IN FORCE. */
  size_t next = col_of(text, "NEXT START");
  const char *night = strstr(text, "\nnight ") + 1, *day = strstr(text, "\nday ") + 1;
  if (night[next] != '-' || day[next] != '-' || night[next - 1] != ' ')
    fail_msg("NEXT START not in one column:\n%s", text);
  free(text);
  json_t *j = ctl_schedules_json(&r);
  json_t *x = json_array_get(json_object_get(j, "schedules"), 0);
  assert_int_equal(json_integer_value(json_object_get(x, "sources_moved")), 1);
  assert_int_equal(json_integer_value(json_object_get(x, "sources_not_known")), 2);
  json_decref(j);
  /* None not known: as before, and no line. */
  a.sources_not_known = 0;
  text = printed_schedules(&r);
  if (!strstr(text, " PARTLY 1/3 ") || strstr(text, "not known"))
    fail_msg("night is not 'PARTLY 1/3' with none not known:\n%s", text);
  free(text);
}

/* A schedule refused by its capacity check: the Refusal document carries
 * the check (the text had the figures, --json only the words). */
static void test_refusal_carries_the_check(void **state) {
  (void)state;
  Nirc__ScheduleHubCheck h = NIRC__SCHEDULE_HUB_CHECK__INIT, *hv[] = {&h};
  h.hub = "shaanxi";
  h.known = h.predicted = h.misses = 1;
  h.sl_after = 0.41;
  h.agents_needed = 45;
  h.agents = 30;
  h.forecast = "forecast from 4 weeks of history";
  Nirc__ScheduleCheck c = NIRC__SCHEDULE_CHECK__INIT;
  c.checked = c.refused = 1;
  c.window_start_ms = 1579788000000;
  c.refusal = "its next window would miss the service-level floor (80%): ...";
  c.hubs = hv;
  c.n_hubs = 1;
  Nirc__ScheduleReply sr = NIRC__SCHEDULE_REPLY__INIT;
  sr.check = &c;
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_SCHEDULE;
  rep.schedule = &sr;
  json_t *j = ctl_refusal_json("schedule 'x' not added: ...", json_null(), &rep);
  assert_true(json_is_false(json_object_get(j, "ok")));
  assert_true(json_is_null(json_object_get(j, "plan")));
  json_t *chk = json_object_get(j, "check");
  assert_non_null(chk);
  assert_true(json_is_true(json_object_get(chk, "refused")));
  json_t *hub = json_array_get(json_object_get(chk, "hubs"), 0);
  assert_int_equal(json_integer_value(json_object_get(hub, "agents_needed")), 45);
  json_decref(j);
  /* Partial: said in words, and the sites named in both forms. */
  char *nk[] = {"henan"};
  c.refused = 0;
  c.partial = 1;
  c.not_known_sites = nk;
  c.n_not_known_sites = 1;
  c.not_checked = "no forecast for henan in its next window (no history: live load): its load "
                  "then is not known";
  char *text = printed_schedules(&sr);
  if (!strstr(text, ": passes where known (a PARTIAL check: see not known below)\n") ||
      !strstr(text, "  not known for the window: henan (no forecast for henan"))
    fail_msg("partial check not said:\n%s", text);
  free(text);
  j = ctl_refusal_json("x", json_null(), &rep);
  chk = json_object_get(j, "check");
  assert_true(json_is_true(json_object_get(chk, "partial")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(chk, "not_known_sites"), 0)),
                      "henan");
  assert_non_null(json_string_value(json_object_get(chk, "not_checked")));
  json_decref(j);
  /* A set that leaves an overloaded window no worse: made, and said. */
  c.partial = 0;
  c.n_not_known_sites = 0;
  c.refused = c.no_worse = 1;
  text = printed_schedules(&sr);
  if (!strstr(text, ": MISSES the floor as before: the change adds no load to a hub and does not "
                    "lengthen the window (not refused)\n"))
    fail_msg("no-worse change not said:\n%s", text);
  free(text);
  /* Any other refusal: no check key. */
  Nirc__OperatorReply none = NIRC__OPERATOR_REPLY__INIT;
  j = ctl_refusal_json("needs role admin", json_null(), &none);
  assert_null(json_object_get(j, "check"));
  json_decref(j);
}

/* overflow add/set: where it would spill if it engaged now, in words and
 * as a Plan in --json. */
static void test_overflow_check_shown(void **state) {
  (void)state;
  Nirc__RouteShare a = NIRC__ROUTE_SHARE__INIT, b = NIRC__ROUTE_SHARE__INIT, *rs[] = {&a, &b};
  a.site = "shaanxi";
  a.permille = 150;
  b.site = "hubei";
  b.permille = 850;
  Nirc__PlannedMove m = NIRC__PLANNED_MOVE__INIT, *mv[] = {&m};
  m.site = "hubei";
  m.route = rs;
  m.n_route = 2;
  Nirc__CapacityPrediction c = NIRC__CAPACITY_PREDICTION__INIT, *cv[] = {&c};
  c.hub = "shaanxi";
  c.sl_after = 0.86;
  c.stable_after = 1;
  c.agents_needed = 9;
  c.agents = 10;
  c.load_basis = "forecast";
  c.load_note = "overflow checked on the forecast for the next half hour: 7.0 Erl vs 4.5 Erl live";
  Nirc__PlanReply p = NIRC__PLAN_REPLY__INIT;
  p.moves = mv;
  p.n_moves = 1;
  p.capacity = cv;
  p.n_capacity = 1;
  Nirc__OverflowReply r = NIRC__OVERFLOW_REPLY__INIT;
  r.check = &p;
  char *text = printed_overflows(&r);
  if (!strstr(text, "if it engaged now:\n  hubei -> shaanxi:150 hubei:850\n") ||
      !strstr(text, "  shaanxi      SL  86%  needs 9 agents, has 10  (overflow checked on the "
                    "forecast for the next half hour: 7.0 Erl vs 4.5 Erl live)\n"))
    fail_msg("the check is not shown:\n%s", text);
  free(text);
  json_t *j = ctl_overflows_json(&r);
  json_t *row = json_array_get(json_object_get(json_object_get(j, "check"), "capacity"), 0);
  assert_non_null(row);
  json_decref(j);
}

static void test_overflow_source_route_not_known(void **state) {
  (void)state;
  char *hubs[] = {"shaanxi"};
  Nirc__OverflowSpec o = NIRC__OVERFLOW_SPEC__INIT, *v[] = {&o};
  o.name = "gd-peak";
  o.source = "guangdong";
  o.hubs = hubs;
  o.n_hubs = 1;
  o.share_cap_permille = 500;
  o.triggered = 1;
  o.route_not_known = 1;
  Nirc__OverflowReply r = NIRC__OVERFLOW_REPLY__INIT;
  r.rules = v;
  r.n_rules = 1;
  char *text = printed_overflows(&r);
  if (!strstr(text, " not known ") || strstr(text, "held (0"))
    fail_msg("ENGAGED is not 'not known':\n%s", text);
  if (!strstr(text, "\nENGAGED not known: its source's route is not known here (not heard, or "
                    "unknown at the PBX), so neither is what it moves: nircctl site SOURCE\n"))
    fail_msg("no line for 'not known' under:\n%s", text);
  free(text);
  json_t *j = ctl_overflows_json(&r);
  json_t *x = json_array_get(json_object_get(j, "rules"), 0);
  assert_true(json_is_null(json_object_get(x, "moved_permille")));
  assert_true(json_is_true(json_object_get(x, "route_not_known")));
  assert_true(json_is_false(json_object_get(x, "engaged")));
  json_decref(j);
  o.route_not_known = 0;
  o.engaged = 1;
  o.moved_permille = 350;
  text = printed_overflows(&r);
  if (!strstr(text, "YES 350‰") || strstr(text, "not known")) fail_msg("not YES 350‰:\n%s", text);
  free(text);
  j = ctl_overflows_json(&r);
  x = json_array_get(json_object_get(j, "rules"), 0);
  assert_int_equal(json_integer_value(json_object_get(x, "moved_permille")), 350);
  json_decref(j);
}

/* What ctl_plan_print writes to stdout. */
static char *printed_plan(const Nirc__PlanReply *p) {
  fflush(stdout);
  int keep = dup(STDOUT_FILENO);
  FILE *tmp = tmpfile();
  assert_true(keep >= 0 && tmp);
  dup2(fileno(tmp), STDOUT_FILENO);
  ctl_plan_print(p, "Asia/Shanghai");
  fflush(stdout);
  dup2(keep, STDOUT_FILENO);
  close(keep);
  long n = ftell(tmp);
  char *text = calloc(1, (size_t)n + 1);
  rewind(tmp);
  assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
  fclose(tmp);
  return text;
}

static void test_plan_names_routes_not_known(void **state) {
  (void)state;
  char *names[] = {"hubei", "hunan"};
  Nirc__PlanReply p = NIRC__PLAN_REPLY__INIT;
  p.route_not_known = 12;
  p.route_not_known_sites = names;
  p.n_route_not_known_sites = 2;
  char *text = printed_plan(&p);
  const char *want = "  note  route not known at 12 sites (hubei, hunan +10 more): not heard since "
                     "this controller took over, or unknown at the PBX; the figures count their "
                     "calls where this plan sends them, but their PBX may send them elsewhere "
                     "now, to a hub above too (nircctl status --problems)\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  free(text);
  json_t *j = ctl_plan_json(&p);
  assert_int_equal(json_integer_value(json_object_get(j, "route_not_known")), 12);
  assert_int_equal(json_array_size(json_object_get(j, "route_not_known_sites")), 2);
  json_decref(j);
  p.route_not_known = 0;
  p.n_route_not_known_sites = 0;
  text = printed_plan(&p);
  if (strstr(text, "not known")) fail_msg("a note with every route known:\n%s", text);
  free(text);
}

/* --json's forced_over says what each overridden prediction was made on
 * (load_on, as the plan's Capacity has it), null from a controller that
 * does not say. */
static void test_forced_over_says_its_load(void **state) {
  (void)state;
  Nirc__CapacityPrediction c = NIRC__CAPACITY_PREDICTION__INIT, old = c;
  c.hub = old.hub = "shaanxi";
  c.load_basis = "forecast";
  c.traffic_after_live_erl = 6.0;
  c.traffic_after_forecast_erl = 15.0;
  c.load_note = "on the forecast for 11:30-12:30: load rising at shaanxi, hubei";
  Nirc__CapacityPrediction *v[] = {&c, &old};
  json_t *j = ctl_forced_json(v, 2);
  json_t *on = json_object_get(json_array_get(j, 0), "load_on");
  assert_true(json_is_object(on));
  assert_string_equal(json_string_value(json_object_get(on, "basis")), "forecast");
  assert_true(json_real_value(json_object_get(on, "forecast_erl")) == 15.0);
  assert_true(json_real_value(json_object_get(on, "live_erl")) == 6.0);
  assert_string_equal(json_string_value(json_object_get(on, "note")), c.load_note);
  assert_true(json_is_null(json_object_get(json_array_get(j, 1), "load_on")));
  json_decref(j);
}

/* A hub whose agents are neither measured nor configured (a forced move
 * past it, or a hub that turned a source down for it): the plan says its
 * agents are not known and predicts no service level on them; --json has
 * agents, sl_before, sl_after and occupancy_after null (HubNeed and
 * ForcedOver their agents), never 0. Before: "on 0 agents: SL(20s) 0% ->
 * 0%" and "agents": 0 beside capacity_source "unknown". A measured hub
 * keeps its figures. */
static void test_plan_agents_not_known(void **state) {
  (void)state;
  Nirc__CapacityPrediction c = NIRC__CAPACITY_PREDICTION__INIT, m = c;
  c.hub = "shaanxi";
  c.traffic_before_erl = 3.0;
  c.traffic_after_erl = 9.5;
  c.agents_needed = 14;
  c.sl_target = 0.8;
  c.sl_threshold_s = 20;
  c.forced = 1;
  c.capacity_source = "unknown";
  c.capacity_note = "not measured, not configured";
  m.hub = "henan";
  m.agents = 30;
  m.sl_after = 0.9;
  m.sl_before = 0.95;
  m.occupancy_after = 0.5;
  m.stable_after = 1;
  m.capacity_source = "measured";
  m.capacity_note = "measured, 30 agents";
  Nirc__CapacityPrediction *cp[] = {&c, &m};
  Nirc__HubNeed need = NIRC__HUB_NEED__INIT;
  need.hub = "shaanxi";
  need.why = "is not measured: configure it";
  need.capacity_source = "unknown";
  Nirc__HubNeed *np[] = {&need};
  Nirc__RefusedSource rs = NIRC__REFUSED_SOURCE__INIT;
  rs.source = "hubei";
  rs.why = "shaanxi is not measured: configure it";
  rs.hubs = np;
  rs.n_hubs = 1;
  Nirc__RefusedSource *rsp[] = {&rs};
  Nirc__PlanReply p = NIRC__PLAN_REPLY__INIT;
  p.capacity = cp;
  p.n_capacity = 2;
  p.refused_sources = rsp;
  p.n_refused_sources = 1;
  char *text = printed_plan(&p);
  const char *want = "  hub   shaanxi      load 3.0 -> 9.5 Erl on agents not known: no service "
                     "level predicted; needs 14 agents for 80%; takes no source  [FORCED past "
                     "the capacity check]\n";
  if (!strstr(text, want)) fail_msg("no '%s' in:\n%s", want, text);
  if (strstr(text, "on 0 agents")) fail_msg("'on 0 agents' in:\n%s", text);
  if (!strstr(text, "henan        load 0.0 -> 0.0 Erl on 30 agents"))
    fail_msg("henan's agents not in:\n%s", text);
  free(text);
  json_t *j = ctl_plan_json(&p);
  json_t *x = json_array_get(json_object_get(j, "capacity"), 0);
  const char *nulls[] = {"agents", "sl_before", "sl_after", "occupancy_after", "asa_after_s"};
  for (size_t k = 0; k < sizeof nulls / sizeof *nulls; k++)
    if (!json_is_null(json_object_get(x, nulls[k]))) fail_msg("%s is not null", nulls[k]);
  assert_int_equal(json_integer_value(json_object_get(x, "agents_needed")), 14);
  json_t *y = json_array_get(json_object_get(j, "capacity"), 1);
  assert_int_equal(json_integer_value(json_object_get(y, "agents")), 30);
  assert_true(json_real_value(json_object_get(y, "sl_after")) == 0.9);
  json_t *h = json_array_get(
      json_object_get(json_array_get(json_object_get(j, "refused_sources"), 0), "hubs"), 0);
  assert_true(json_is_null(json_object_get(h, "agents")));
  json_decref(j);
  j = ctl_forced_json(cp, 2);
  assert_true(json_is_null(json_object_get(json_array_get(j, 0), "agents")));
  assert_true(json_is_null(json_object_get(json_array_get(j, 0), "sl_after")));
  assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 1), "agents")), 30);
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schedule_in_force_with_sources_not_known),
      cmocka_unit_test(test_overflow_source_route_not_known),
      cmocka_unit_test(test_overflow_check_shown),
      cmocka_unit_test(test_refusal_carries_the_check),
      cmocka_unit_test(test_plan_names_routes_not_known),
      cmocka_unit_test(test_forced_over_says_its_load),
      cmocka_unit_test(test_plan_agents_not_known),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
