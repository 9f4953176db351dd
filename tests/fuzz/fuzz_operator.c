/* libFuzzer: the controller's checks of an operator's request, the part of
 * ops.c and engine.c that needs neither the database nor a link. The input
 * is one Envelope payload as link.c hands it over; an OperatorRequest in it
 * goes through what engine_op_* do before anything moves:
 *
 *   cutover: engine_cutover_from_request, rules_validate_cutover;
 *   schedule add: engine_schedule_from_spec, rules_validate_schedule, the
 *     conflict check against the demo's night schedule, and the calendar
 *     (rules_schedule_window, rules_schedule_next_start) in its time zone;
 *   overflow add: engine_overflow_from_spec, rules_validate_overflow and
 *     the conflict check against an overflow rule for guangdong;
 *   status: the site filter (ops_status).
 *
 * Sites come from the shipped scenario. The request id stands for the
 * controller's clock, so the fuzzer moves "now" through the calendar. What
 * an accepted rule promises is checked (abort() on a violation): its text
 * goes into the audit trail as JSON, an expiry is in the future, conflicts
 * are symmetric, and the calendar's answers are consistent with "now". */
#include "engine.h"
#include "err.h"
#include "frame.h"
#include "log.h"
#include "rules.h"
#include "scenario.h"
#include "sites.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2020-01-22 13:50:00 UTC and the span "now" may be moved over: ten years. */
#define FUZZ_T0   1579701000000LL
#define FUZZ_SPAN (3650LL * 86400000LL)
#define FUZZ_DAY  86400000LL

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sites_t reg;
static schedule_t night;
static overflow_rule_t gd_peak;

static void fuzz_check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_operator: invariant broken: %s\n", what);
    abort();
  }
}

static bool fuzz_site_exists(void *arg, const char *slug, bool *is_hub) {
  site_t *s = sites_find(&reg, slug);
  if (s && is_hub) *is_hub = s->is_hub;
  return s != NULL;
}

static const rules_env_t fuzz_env = {fuzz_site_exists, NULL, NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_set_level(LOG_LVL_ERROR);
  scenario_t sc;
  char err[512];
  if (scenario_load(NIRC_SCENARIO_FILE, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "fuzz_operator: %s\n", err);
    abort();
  }
  sites_init(&reg, 3000);
  for (size_t i = 0; i < sc.count; i++)
    if (sites_add(&reg, sc.sites[i].slug, sc.sites[i].name_en, sc.sites[i].name_zh,
                  sc.sites[i].is_hub) != 0)
      abort();
  scenario_free(&sc);
  /* The rules already in force that a new one is checked against. */
  night = (schedule_t){.id = 1,
                       .name = "night",
                       .start_min = 22 * 60,
                       .end_min = 8 * 60,
                       .days = 0x7f,
                       .tz = "Asia/Shanghai",
                       .wave_size = 5,
                       .enabled = true};
  if (rules_parse_slug_list("hubei,guizhou,fujian", &night.sources, err, sizeof err) ||
      rules_parse_slug_list("shaanxi,henan", &night.hubs, err, sizeof err) ||
      rules_validate_schedule(&night, &fuzz_env, err, sizeof err))
    abort();
  gd_peak = (overflow_rule_t){.id = 2,
                              .name = "gd-peak",
                              .source = "guangdong",
                              .trigger_wait_s = 60,
                              .release_wait_s = 15,
                              .share_cap_permille = 300,
                              .min_hold_s = 600,
                              .enabled = true};
  if (rules_parse_slug_list("sichuan,henan", &gd_peak.hubs, err, sizeof err) ||
      rules_validate_overflow(&gd_peak, &fuzz_env, err, sizeof err))
    abort();
  return 0;
}

static void fuzz_cutover(const Nirc__CutoverRequest *req, int64_t now) {
  char err[512];
  cutover_t cut;
  if (engine_cutover_from_request(req, "operator:alice", now, &cut, err, sizeof err) != 0) return;
  cut.id = 1000001;
  if (rules_validate_cutover(&cut, &fuzz_env, now, err, sizeof err) != 0) return;
  fuzz_check(cut.expires_ms == 0 || cut.expires_ms > now, "an accepted expiry is in the future");
  fuzz_check(cut.share_permille <= 1000, "an accepted share is at most the whole");
  /* engine_op_cutover audits the move as JSON; the cutovers table takes
   * the reason as text. */
  json_t *j = json_pack("{s:s, s:s}", "reason", cut.reason, "operator", cut.operator_name);
  fuzz_check(j != NULL, "an accepted reason can be audited");
  json_decref(j);
}

static void fuzz_schedule(const Nirc__ScheduleRequest *req, int64_t now) {
  char err[512], why[512];
  schedule_t s;
  if (req->op != NIRC__RULE_OP__RULE_OP_ADD) return;
  if (engine_schedule_from_spec(req->spec, &s, err, sizeof err) != 0 ||
      rules_validate_schedule(&s, &fuzz_env, err, sizeof err) != 0)
    return;
  s.id = 1000002;
  bool ab = rules_schedules_conflict(&s, &night, why, sizeof why);
  bool ba = rules_schedules_conflict(&night, &s, why, sizeof why);
  fuzz_check(ab == ba, "schedule conflicts are symmetric");
  int64_t start = 0, end = 0;
  if (rules_schedule_window(&s, now, &start, &end))
    fuzz_check(start <= now && now < end && end - start <= FUZZ_DAY + 3600000,
               "a window in force holds now and lasts at most a day");
  int64_t next = rules_schedule_next_start(&s, now);
  fuzz_check(next == 0 || next > now, "the next start is after now");
}

static void fuzz_overflow(const Nirc__OverflowRequest *req) {
  char err[512], why[512];
  overflow_rule_t o;
  if (req->op != NIRC__RULE_OP__RULE_OP_ADD) return;
  if (engine_overflow_from_spec(req->spec, &o, err, sizeof err) != 0 ||
      rules_validate_overflow(&o, &fuzz_env, err, sizeof err) != 0)
    return;
  o.id = 1000003;
  fuzz_check(o.share_cap_permille >= 1 && o.share_cap_permille <= 1000,
             "an accepted share cap is 1-1000");
  bool ab = rules_overflows_conflict(&o, &gd_peak, why, sizeof why);
  bool ba = rules_overflows_conflict(&gd_peak, &o, why, sizeof why);
  fuzz_check(ab == ba, "overflow conflicts are symmetric");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Nirc__Envelope *env = NULL;
  if (frame_decode_envelope(data, size, &env) != 0) return 0;
  if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REQUEST) {
    const Nirc__OperatorRequest *req = env->operator_request;
    int64_t now = FUZZ_T0 + (int64_t)(req->request_id % (uint64_t)FUZZ_SPAN);
    switch (req->body_case) {
    case NIRC__OPERATOR_REQUEST__BODY_STATUS:
      if (req->status->site && *req->status->site) sites_find(&reg, req->status->site);
      break;
    case NIRC__OPERATOR_REQUEST__BODY_CUTOVER: fuzz_cutover(req->cutover, now); break;
    case NIRC__OPERATOR_REQUEST__BODY_SCHEDULE: fuzz_schedule(req->schedule, now); break;
    case NIRC__OPERATOR_REQUEST__BODY_OVERFLOW: fuzz_overflow(req->overflow); break;
    default: break;
    }
  }
  frame_envelope_free(env);
  return 0;
}
