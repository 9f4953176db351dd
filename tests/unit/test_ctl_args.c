/* Unit tests for nircctl's command line (controller/ctl_args.c), parsed
 * without a controller: each command line gives the request nircctl would
 * send, or what nircctl would say and do (usage, help, version, refusal).
 * Covers the global options, a full cutover, repeated --except options (an
 * earlier --except's dates were overwritten by a later one's), the limits
 * on lists, that parsing twice starts afresh (getopt's state), and that
 * control characters in any text are refused before a connection, named
 * and never quoted back raw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_args.h"
#include "ctl_history.h"
#include "tz.h"
#include "util.h"

static ctl_args_t args;

/* Parses a NULL-terminated argv after "nircctl" (copied: getopt permutes). */
static ctl_args_result_t parse(const char *const *words) {
  static char *argv[256];
  int argc = 0;
  argv[argc++] = "nircctl";
  for (size_t i = 0; words[i]; i++)
    argv[argc++] = (char *)words[i];
  argv[argc] = NULL;
  return ctl_args_parse(argc, argv, &args);
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_cutover_request(void **state) {
  assert_int_equal(
      parse(ARGV("--json", "--controller", "10.0.0.1:7443", "--controller", "10.0.0.2:7443",
                 "cutover", "hubei,henan", "--to", "shaanxi", "--reason", "Wuhan lockdown", "--for",
                 "72h", "--share", "300", "--dry-run")),
      CTL_ARGS_REQUEST);
  assert_int_equal(args.json, 1);
  assert_int_equal(args.ncontrollers, 2);
  assert_string_equal(args.controllers[1], "10.0.0.2:7443");
  assert_int_equal(args.cmd->id, CTL_CMD_CUTOVER);
  assert_int_equal(args.cmd->wait_ms, 60000);
  const Nirc__CutoverRequest *c = args.req.cutover;
  assert_int_equal(args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_CUTOVER);
  assert_int_equal(c->n_sources, 2);
  assert_string_equal(c->sources[0], "hubei");
  assert_string_equal(c->sources[1], "henan");
  assert_int_equal(c->n_hubs, 1);
  assert_string_equal(c->reason, "Wuhan lockdown");
  assert_int_equal(c->expires_in_ms, 72LL * 3600000);
  assert_int_equal(c->share_permille, 300);
  assert_true(c->dry_run);
  assert_string_equal(args.msg, "");
}

/* status: the filters and the page go to the controller; --limit 0 is
 * --all; a bad state, --all with a page, or a filter on `site` is refused
 * before any connection. */
static void test_status_filters_and_paging(void **state) {
  (void)state;
  assert_int_equal(parse(ARGV("status", "--state", "offline,never", "--hub", "shaanxi", "--match",
                              "gen-", "--limit", "50", "--offset", "100", "--moved")),
                   CTL_ARGS_REQUEST);
  const Nirc__StatusRequest *q = args.req.status;
  assert_int_equal(q->n_states, 2);
  assert_int_equal(q->states[0], NIRC__LINK_STATE__LINK_STATE_OFFLINE);
  assert_int_equal(q->states[1], NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN);
  assert_string_equal(q->hub, "shaanxi");
  assert_string_equal(q->match, "gen-");
  assert_int_equal(q->limit, 50);
  assert_int_equal(q->offset, 100);
  assert_true(q->moved && !q->problems);
  assert_true(args.paged && !args.all);
  assert_int_equal(parse(ARGV("status", "--limit", "0")), CTL_ARGS_REQUEST);
  assert_true(args.all && !args.paged);
  assert_int_equal(parse(ARGV("status")), CTL_ARGS_REQUEST); /* afresh: nothing left over */
  assert_true(!args.all && !args.paged && args.req.status->n_states == 0);
  assert_int_equal(parse(ARGV("status", "--state", "down")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--state 'down': one of online, stale, offline, never"));
  assert_int_equal(parse(ARGV("status", "--all", "--offset", "5")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--all lists every site"));
  assert_int_equal(parse(ARGV("status", "--limit", "many")), CTL_ARGS_ERROR);
  assert_int_equal(parse(ARGV("site", "hubei", "--state", "online")), CTL_ARGS_ERROR);
}

static void test_refusals_say_why(void **state) {
  assert_int_equal(parse(ARGV("cutover", "hubei", "--to", "shaanxi")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "nircctl: usage: cutover SRC"));
  assert_int_equal(parse(ARGV("cutover", "Hubei", "--to", "shaanxi", "--reason", "x")),
                   CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: 'Hubei' is not a site slug (lowercase, e.g. hubei)\n");
  /* Both complaints, in order, as nircctl printed them. */
  assert_int_equal(
      parse(ARGV("cutover", "hubei", "--to", "shaanxi", "--reason", "x", "--share", "lots")),
      CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: --share (permille) must be a whole number up to 1000000\n"
                                "nircctl: --share must be a number of permille, 1-1000\n");
  assert_int_equal(parse(ARGV("frobnicate")), CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: unknown command 'frobnicate' (try: nircctl help)\n");
}

/* Text the controller would refuse is refused here first (exit 2), and a
 * complaint that quotes an argument quotes it escaped. */
static void test_control_characters_refused(void **state) {
  assert_int_equal(
      parse(ARGV("cutover", "hubei", "--to", "shaanxi", "--reason", "peak\xe2\x80\xae")),
      CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: the reason contains a control character (U+202E at byte "
                                "5); remove it\n");
  assert_int_equal(parse(ARGV("restore", "hubei", "--reason", "done\n12:00 forged")),
                   CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "the reason contains a control character (U+000A at byte 5)"));
  assert_int_equal(parse(ARGV("schedule", "add", "night\xc2\x9b", "--sources", "hubei", "--to",
                              "shaanxi", "--start", "22:00", "--end", "08:00")),
                   CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "the schedule name contains a control character (U+009B"));
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei", "--to", "shaanxi",
                              "--start", "22:00", "--end", "08:00", "--tz", "Asia/\x1b[2J")),
                   CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "the time zone contains a control character (U+001B"));
  assert_int_equal(parse(ARGV("overflow", "rm", "gd\xe2\x81\xa6")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "the overflow rule name contains a control character (U+2066"));
  assert_int_equal(parse(ARGV("history", "--actor", "alice\xff")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "not UTF-8 (0xFF at byte 6)"));
  /* Quoted back escaped: the terminal sees \x1b, not an escape. */
  assert_int_equal(parse(ARGV("cutover", "hu\x1b[31mbei", "--to", "shaanxi", "--reason", "x")),
                   CTL_ARGS_ERROR);
  assert_string_equal(args.msg,
                      "nircctl: 'hu\\x1b[31mbei' is not a site slug (lowercase, e.g. hubei)\n");
  assert_int_equal(parse(ARGV("frob\nnicate")), CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: unknown command 'frob\\nnicate' (try: nircctl help)\n");
  /* Chinese is text, not a control. */
  assert_int_equal(parse(ARGV("cutover", "hubei", "--to", "shaanxi", "--reason", "武汉封城")),
                   CTL_ARGS_REQUEST);
}

static void test_help_usage_and_version(void **state) {
  assert_int_equal(parse(ARGV("--help")), CTL_ARGS_HELP);
  assert_int_equal(parse(ARGV("help")), CTL_ARGS_HELP);
  assert_int_equal(parse(ARGV("--version")), CTL_ARGS_VERSION);
  assert_int_equal(parse(ARGV("--json")), CTL_ARGS_USAGE);
  assert_int_equal(parse(ARGV("schedule", "add", "--help")), CTL_ARGS_CMD_HELP);
  assert_int_equal(args.cmd->id, CTL_CMD_SCHEDULE);
  opterr = 0; /* the unknown option is getopt's to report */
  assert_int_equal(parse(ARGV("--frobnicate", "status")), CTL_ARGS_USAGE);
  opterr = 1;
}

static void test_too_many_controllers(void **state) {
  const char *words[2 * CONFIG_LIST_MAX + 4];
  size_t n = 0;
  for (int i = 0; i <= CONFIG_LIST_MAX; i++) {
    words[n++] = "--controller";
    words[n++] = "127.0.0.1:7443";
  }
  words[n++] = "status";
  words[n] = NULL;
  assert_int_equal(parse(words), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--controller options"));
}

/* Regression: every --except used the start of one buffer, so a second
 * --except rewrote the dates the first pointed at. */
static void test_repeated_except_keeps_every_date(void **state) {
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei,guizhou", "--to",
                              "shaanxi", "--start", "22:00", "--end", "08:00", "--except",
                              "2020-01-24", "--except", "2020-02-01,2020-02-02")),
                   CTL_ARGS_REQUEST);
  const Nirc__ScheduleSpec *sp = args.req.schedule->spec;
  assert_int_equal(sp->n_exceptions, 3);
  assert_string_equal(sp->exceptions[0], "2020-01-24");
  assert_string_equal(sp->exceptions[1], "2020-02-01");
  assert_string_equal(sp->exceptions[2], "2020-02-02");
  assert_string_equal(sp->days, "daily");
  assert_string_equal(sp->tz, "Asia/Shanghai");
}

/* schedule set sends only the options given: no default days or zone
 * (they would overwrite the schedule's), and needs at least one. */
static void test_schedule_set_sends_only_what_changes(void **state) {
  assert_int_equal(parse(ARGV("schedule", "set", "night", "--end", "08:30", "--dry-run")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.schedule->op, NIRC__RULE_OP__RULE_OP_SET);
  assert_string_equal(args.req.schedule->name, "night");
  assert_true(args.req.schedule->dry_run);
  const Nirc__ScheduleSpec *sp = args.req.schedule->spec;
  assert_string_equal(sp->end, "08:30");
  assert_string_equal(sp->start, "");
  assert_string_equal(sp->days, "");
  assert_string_equal(sp->tz, "");
  assert_int_equal(sp->n_sources, 0);
  assert_int_equal(sp->n_hubs, 0);
  assert_int_equal(parse(ARGV("schedule", "set", "night", "--to", "henan,sichuan")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.schedule->spec->n_hubs, 2);
  assert_false(args.req.schedule->dry_run);
  assert_int_equal(parse(ARGV("schedule", "set", "night")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "at least one change"));
  /* add takes --dry-run (its capacity check, nothing added) and --force. */
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei", "--to", "shaanxi",
                              "--start", "22:00", "--end", "08:00", "--dry-run")),
                   CTL_ARGS_REQUEST);
  assert_true(args.req.schedule->dry_run);
  assert_false(args.req.schedule->force);
  assert_int_equal(parse(ARGV("schedule", "set", "night", "--end", "08:30", "--force")),
                   CTL_ARGS_REQUEST);
  assert_true(args.req.schedule->force);
  /* enable is capacity-checked: --force takes it past a refusal; disable
   * takes no option. */
  assert_int_equal(parse(ARGV("schedule", "enable", "night", "--force")), CTL_ARGS_REQUEST);
  assert_true(args.req.schedule->force);
  assert_int_equal(parse(ARGV("schedule", "enable", "night")), CTL_ARGS_REQUEST);
  assert_false(args.req.schedule->force);
  assert_int_not_equal(parse(ARGV("schedule", "disable", "night", "--force")), CTL_ARGS_REQUEST);
  /* add without --start or --end is a usage error here (protobuf-c sets an
   * unset string to "", not NULL: it went to the controller as "" before). */
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei", "--to", "shaanxi",
                              "--end", "08:00")),
                   CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "usage: schedule add"));
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei", "--to", "shaanxi",
                              "--start", "22:00")),
                   CTL_ARGS_ERROR);
  /* overflow set: no default hold (add's 5m would overwrite the rule's). */
  assert_int_equal(parse(ARGV("overflow", "set", "gd", "--cap", "200")), CTL_ARGS_REQUEST);
  assert_int_equal(args.req.overflow->op, NIRC__RULE_OP__RULE_OP_SET);
  assert_int_equal(args.req.overflow->spec->share_cap_permille, 200);
  assert_int_equal(args.req.overflow->spec->min_hold_s, 0);
  assert_int_equal(args.req.overflow->spec->n_hubs, 0);
  assert_int_equal(parse(ARGV("overflow", "set", "gd")), CTL_ARGS_ERROR);
}

/* More dates than a request holds are refused, not silently dropped. */
static void test_too_many_except_dates(void **state) {
  static char dates[65 * 11 + 1];
  size_t used = 0;
  for (int i = 0; i < 65; i++)
    used += (size_t)snprintf(dates + used, sizeof dates - used, "%s2020-01-%02d", i ? "," : "",
                             i % 28 + 1);
  assert_int_equal(parse(ARGV("schedule", "add", "night", "--sources", "hubei", "--to", "shaanxi",
                              "--start", "22:00", "--end", "08:00", "--except", dates)),
                   CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: at most 64 --except dates\n");
}

static void test_watch_map_and_a_fresh_start(void **state) {
  assert_int_equal(parse(ARGV("watch", "--interval", "5s")), CTL_ARGS_REQUEST);
  assert_int_equal(args.watch_interval_ms, 5000);
  assert_int_equal(args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_STATUS);
  assert_int_equal(parse(ARGV("map", "-o", "net.svg")), CTL_ARGS_REQUEST);
  assert_string_equal(args.map_output, "net.svg");
  /* Nothing carries over from the previous parse. */
  assert_int_equal(args.watch_interval_ms, 2000);
  assert_int_equal(parse(ARGV("status", "hubei")), CTL_ARGS_REQUEST);
  assert_null(args.map_output);
  assert_string_equal(args.req.status->site, "hubei");
  assert_int_equal(parse(ARGV("restore", "--cutover", "2000001")), CTL_ARGS_REQUEST);
  assert_int_equal(args.req.restore->cutover_id, 2000001);
  assert_int_equal(args.req.restore->n_sources, 0);
}

static void test_readmit_request(void **state) {
  assert_int_equal(parse(ARGV("readmit", "guangdong,hainan", "--reason", "trunk fixed")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_RESTORE);
  assert_true(args.req.restore->readmit);
  assert_int_equal(args.req.restore->n_sources, 2);
  assert_string_equal(args.req.restore->sources[1], "hainan");
  assert_string_equal(args.req.restore->reason, "trunk fixed");
  assert_int_equal(args.req.restore->cutover_id, 0);
  /* A site is required; restore stays what it was. */
  assert_int_not_equal(parse(ARGV("readmit")), CTL_ARGS_REQUEST);
  assert_int_equal(parse(ARGV("restore", "hubei")), CTL_ARGS_REQUEST);
  assert_false(args.req.restore->readmit);
}

static void test_amend_request(void **state) {
  assert_int_equal(parse(ARGV("cutover", "--amend", "2000001", "--share", "500")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_CUTOVER);
  assert_int_equal(args.req.cutover->amend_id, 2000001);
  assert_int_equal(args.req.cutover->share_permille, 500);
  assert_int_equal(args.req.cutover->n_sources, 0);
  /* Sources do not go with --amend; something must change; an id. */
  assert_int_not_equal(parse(ARGV("cutover", "hubei", "--amend", "2000001", "--share", "500")),
                       CTL_ARGS_REQUEST);
  assert_int_not_equal(parse(ARGV("cutover", "--amend", "2000001")), CTL_ARGS_REQUEST);
  assert_int_not_equal(parse(ARGV("cutover", "--amend", "x", "--share", "5")), CTL_ARGS_REQUEST);
  /* A plain cutover still needs its sources, hubs and reason. */
  assert_int_equal(parse(ARGV("cutover", "hubei", "--to", "shaanxi", "--reason", "r")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.cutover->amend_id, 0);
}

/* history: filters by cause and time range, a zone for times, CSV. */
static void test_history_filters(void **state) {
  (void)state;
  assert_int_equal(
      parse(ARGV("history", "--site", "hubei", "--cause", "hub-lost", "--since",
                 "2020-01-23T03:00+08:00", "--until", "2020-01-23T04:00Z", "--tz", "UTC", "--csv")),
      CTL_ARGS_REQUEST);
  const Nirc__HistoryRequest *h = args.req.history;
  assert_string_equal(h->site, "hubei");
  assert_string_equal(h->cause, "hub-lost");
  assert_int_equal(h->since_ms, 1579719600000LL); /* 2020-01-22T19:00Z */
  assert_int_equal(h->until_ms, 1579752000000LL); /* 2020-01-23T04:00Z */
  assert_string_equal(args.tz, "UTC");
  assert_int_equal(args.csv, 1);
  /* Without an offset: the local time of the zone. */
  int64_t ms;
  assert_int_equal(ctl_parse_when("2020-01-23T12:00", "Asia/Shanghai", 0, &ms, NULL, 0), 0);
  assert_int_equal(ms, 1579752000000LL);
  assert_int_equal(ctl_parse_when("2h", "UTC", 7200000 * 3, &ms, NULL, 0), 0);
  assert_int_equal(ms, 7200000 * 2);
  assert_int_equal(ctl_parse_when("2020-02-30x", "UTC", 0, &ms, NULL, 0), -1);
  assert_int_equal(ctl_parse_when("2020-02-30T00:00", "UTC", 0, &ms, NULL, 0), -1);
  /* Mistakes are usage errors that say what would be right. */
  assert_int_equal(parse(ARGV("history", "--cause", "agent-return")), CTL_ARGS_REQUEST);
  assert_string_equal(args.req.history->cause, "agent-return");
  assert_int_equal(parse(ARGV("history", "--cause", "hub-lsot")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "did you mean hub-lost?"));
  assert_int_equal(parse(ARGV("history", "--tz", "Mars/Olympus")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "is not a time zone"));
  assert_int_equal(parse(ARGV("history", "--since", "1h", "--until", "2h")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--until must be later than --since"));
  assert_int_equal(parse(ARGV("history", "--since", "yesterday")), CTL_ARGS_ERROR);
}

/* A local time around a daylight-saving change resolves to the instant
 * the engine's schedules use (tz_from_local): a time the clocks skipped is
 * the moment they jumped, not an hour later (mktime's answer); a repeated
 * time is its first occurrence, not the second. nircctl says which it took
 * and how to name the other. */
static void test_history_when_around_dst(void **state) {
  (void)state;
  int64_t ms, engine;
  char note[300];
  /* Berlin, 2026-03-29: 02:00 CET jumped to 03:00 CEST (01:00Z). */
  assert_int_equal(ctl_parse_when("2026-03-29T02:30", "Europe/Berlin", 0, &ms, note, sizeof note),
                   0);
  assert_int_equal(ms, 1774746000000LL); /* 2026-03-29T01:00Z */
  tz_local_t gap = {.year = 2026, .month = 3, .day = 29, .hour = 2, .minute = 30};
  assert_int_equal(tz_from_local("Europe/Berlin", &gap, &engine), 0);
  assert_int_equal(ms, engine);
  assert_non_null(strstr(note, "2026-03-29T02:30 does not exist in Europe/Berlin"));
  assert_non_null(strstr(note, "2026-03-29T03:00:00+02:00"));
  /* 2026-10-25: 03:00 CEST went back to 02:00 CET; 02:30 happened at
   * 00:30Z and again at 01:30Z. */
  assert_int_equal(ctl_parse_when("2026-10-25T02:30", "Europe/Berlin", 0, &ms, note, sizeof note),
                   0);
  assert_int_equal(ms, 1792888200000LL); /* 2026-10-25T00:30Z */
  tz_local_t twice = {.year = 2026, .month = 10, .day = 25, .hour = 2, .minute = 30};
  assert_int_equal(tz_from_local("Europe/Berlin", &twice, &engine), 0);
  assert_int_equal(ms, engine);
  assert_non_null(strstr(note, "happens twice"));
  assert_non_null(strstr(note, "2026-10-25T02:30+02:00"));
  assert_non_null(strstr(note, "for the second write 2026-10-25T02:30+01:00"));
  int64_t second;
  assert_int_equal(ctl_parse_when("2026-10-25T02:30+01:00", "UTC", 0, &second, NULL, 0), 0);
  assert_int_equal(second - ms, 3600000);
  /* An ordinary time: no note. */
  assert_int_equal(ctl_parse_when("2026-10-25T04:30", "Europe/Berlin", 0, &ms, note, sizeof note),
                   0);
  assert_int_equal(ms, 1792899000000LL); /* 03:30Z */
  assert_string_equal(note, "");
}

/* --tz takes a civil zone only, by the engine's own check (tz_valid): not
 * a directory of zones, the default-rules file, or the leap-second tree
 * (27 s off civil time). */
static void test_history_tz_must_be_a_zone(void **state) {
  (void)state;
  static const char *const bad[] = {"Europe", "posixrules", "right/Europe/Berlin", "localtime",
                                    "Factory"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(ARGV("history", "--tz", bad[i])), CTL_ARGS_ERROR);
    assert_non_null(strstr(args.msg, "is not a time zone"));
    assert_false(tz_valid(bad[i]));
  }
  assert_int_equal(parse(ARGV("history", "--tz", "Europe/Berlin")), CTL_ARGS_REQUEST);
  assert_int_equal(parse(ARGV("history", "--tz", "UTC")), CTL_ARGS_REQUEST);
  /* A time without an offset in a zone that is not one is refused too. */
  int64_t ms;
  assert_int_equal(ctl_parse_when("2026-03-29T02:30", "Europe", 0, &ms, NULL, 0), -1);
}

/* history pages back with --before-id; its window is on the business clock,
 * a duration counted back by the controller. */
static void test_history_paging_request(void **state) {
  (void)state;
  assert_int_equal(parse(ARGV("history", "--before-id", "1234", "--since", "2h")),
                   CTL_ARGS_REQUEST);
  const Nirc__HistoryRequest *h = args.req.history;
  assert_int_equal(h->before_id, 1234);
  assert_true(h->business_clock);
  assert_int_equal(h->since_ago_ms, 7200000);
  assert_int_equal(h->until_ago_ms, 0);
  assert_int_equal(parse(ARGV("history", "--until", "2020-01-23T04:00Z")), CTL_ARGS_REQUEST);
  assert_int_equal(args.req.history->before_id, 0);
  assert_int_equal(args.req.history->until_ago_ms, 0);
  assert_int_equal(args.req.history->until_ms, 1579752000000LL);
  static const char *const bad[] = {"0", "x", "-3", "12a", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(ARGV("history", "--before-id", bad[i])), CTL_ARGS_ERROR);
    assert_non_null(strstr(args.msg, "--before-id takes an entry's id"));
  }
}

/* The order of --since and --until is checked where both are known on
 * one clock: two times or two durations here; a time and a duration only
 * on the controller, whose business now nircctl does not know (an
 * accelerated clock is years behind the real one in the demo). */
static void test_history_window_order(void **state) {
  (void)state;
  /* Against the real now, 10m ago is years after 2020: refused here
   * before, although on the demo's clock the window holds an hour. */
  assert_int_equal(parse(ARGV("history", "--since", "10m", "--until", "2020-01-23T04:00Z")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.history->since_ago_ms, 600000);
  assert_int_equal(args.req.history->until_ms, 1579752000000LL);
  assert_int_equal(parse(ARGV("history", "--since", "2020-01-23T03:00Z", "--until", "10m")),
                   CTL_ARGS_REQUEST);
  assert_int_equal(args.req.history->until_ago_ms, 600000);
  /* Two durations: the later must be nearer now. */
  assert_int_equal(parse(ARGV("history", "--since", "2h", "--until", "1h")), CTL_ARGS_REQUEST);
  assert_int_equal(parse(ARGV("history", "--since", "2h", "--until", "2h")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--since 2h --until 2h is an empty window"));
  /* Two times, once their zone is known: with --tz here, else once nircctl
   * has read [ctl] tz (an offset on one of them makes the zone matter). */
  assert_int_equal(parse(ARGV("history", "--since", "2020-01-23T04:00Z", "--until",
                              "2020-01-23T03:00Z", "--tz", "UTC")),
                   CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--until must be later than --since"));
  /* 05:00 in Shanghai is before 03:00Z, in New York after. */
  assert_int_equal(
      parse(ARGV("history", "--since", "2020-01-23T03:00Z", "--until", "2020-01-23T05:00")),
      CTL_ARGS_REQUEST);
  args.history.until_ms = 1579773600000LL; /* nircctl re-read it in America/New_York */
  assert_false(ctl_history_window_empty(&args, true));
  args.history.until_ms = 1579726800000LL; /* in Asia/Shanghai: 2020-01-22T21:00Z */
  assert_true(ctl_history_window_empty(&args, true));
  assert_non_null(strstr(args.msg, "--until must be later than --since"));
}

/* history --all: every match, page by page; its --limit bounds them all
 * (not a page: above 500 is fine), without --all --limit stays 1-500. */
static void test_history_all_args(void **state) {
  (void)state;
  assert_int_equal(parse(ARGV("history", "--all", "--since", "2h")), CTL_ARGS_REQUEST);
  assert_true(args.all);
  assert_int_equal(args.history_all_limit, 0);
  assert_int_equal(parse(ARGV("history", "--limit", "700", "--all")), CTL_ARGS_REQUEST);
  assert_int_equal(args.history_all_limit, 700);
  assert_int_equal(args.req.history->limit, 0);
  assert_int_equal(parse(ARGV("history", "--limit", "700")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--limit must be 1-500"));
  assert_int_equal(parse(ARGV("history", "--all", "--limit", "0")), CTL_ARGS_ERROR);
  assert_int_equal(parse(ARGV("history", "--all", "--limit", "2000000")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--limit with --all must be 1-1000000"));
}

/* A mistyped command or name gets the closest real one. */
static void test_suggestions(void **state) {
  (void)state;
  assert_int_equal(parse(ARGV("stauts")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "did you mean 'status'?"));
  assert_int_equal(parse(ARGV("frobnicate")), CTL_ARGS_ERROR);
  assert_null(strstr(args.msg, "did you mean"));
  const char *sites[] = {"hubei", "hunan", "henan", "hainan", "shanxi", "shaanxi"};
  assert_string_equal(nirc_closest("hubie", sites, 6), "hubei");
  assert_string_equal(nirc_closest("shaanxii", sites, 6), "shaanxi");
  assert_null(nirc_closest("xyz", sites, 6));
  const char *twins[] = {"henan", "hunan"};
  assert_null(nirc_closest("hanan", twins, 2)); /* as close to both: no guess */
}

/* The DETAIL of a route change says what moved where and why; CSV quotes
 * what needs it and keeps every record on one line. */
static void test_history_output(void **state) {
  (void)state;
  char buf[400];
  ctl_history_detail("route",
                     "{\"cause\":\"hub-lost\",\"before\":\"shaanxi 1000\u2030\",\"after\":"
                     "\"henan 1000\u2030\",\"reason\":\"schedule 7 (night)\",\"why\":\"shaanxi "
                     "lost (not healthy for 15 s): re-homed to henan\"}",
                     buf, sizeof buf);
  assert_string_equal(buf, "shaanxi 1000\u2030 -> henan 1000\u2030: hub-lost: shaanxi lost (not "
                           "healthy for 15 s): re-homed to henan");
  Nirc__AuditEntry e = NIRC__AUDIT_ENTRY__INIT, *ep = &e;
  e.id = 7;
  e.at_ms = 1579752000000LL; /* 12:00 in Shanghai, 04:00 UTC */
  e.business_at_ms = e.at_ms;
  e.actor = "operator:alice";
  e.action = "cutover";
  e.target = "hubei";
  e.detail_json = "{\"reason\":\"Wuhan, lockdown \\\"A\\\"\\nforged\"}";
  Nirc__HistoryReply h = NIRC__HISTORY_REPLY__INIT;
  h.entries = &ep;
  h.n_entries = 1;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ctl_history_print(f, &h, CTL_HISTORY_CSV, "Asia/Shanghai");
  fclose(f);
  assert_string_equal(
      text, "id,time,business_time,time_zone,actor,action,target,cause,detail,recorded_at\n"
            "7,2020-01-23 12:00:00,2020-01-23 12:00:00,Asia/Shanghai,"
            "operator:alice,cutover,hubei,,\"Wuhan, lockdown \"\"A\"\"\\nforged\",\n");
  free(text);
  f = open_memstream(&text, &len);
  ctl_history_print(f, &h, CTL_HISTORY_TABLE, "UTC");
  fclose(f);
  assert_non_null(strstr(text, "TIME (UTC)"));
  assert_non_null(strstr(text, "2020-01-23 04:00:00"));
  assert_null(strstr(text, "BUSINESS")); /* the same clock: no column */
  free(text);
}

/* plan shares cutover's option parser, but its request has no share,
 * expiry or force: each of cutover's options is refused (exit 2) rather
 * than dropped, which predicted another move (a full one for --share 10),
 * and the refusal names the dry run that does predict it. */
static void test_plan_refuses_cutover_options(void **state) {
  (void)state;
  assert_int_equal(parse(ARGV("plan", "hubei", "--to", "shaanxi", "--share", "10")),
                   CTL_ARGS_ERROR);
  assert_string_equal(args.msg, "nircctl: plan does not take --share; `nircctl cutover SRC --to "
                                "HUB --share N --reason TEXT --dry-run` shows that move's "
                                "prediction\n");
  static const char *const refused[][3] = {
      {"--for", "1h", "plan does not take --for;"},
      {"--until", "2020-01-23T18:00:00+08:00", "plan does not take --until;"},
      {"--force", NULL, "plan does not take --force;"},
      {"--amend", "2000001", "plan does not take --amend;"},
      {"--reason", "x", "plan does not take --reason:"},
      {"--dry-run", NULL, "plan does not take --dry-run:"},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    const char *w[7] = {"plan", "hubei", "--to", "shaanxi", refused[i][0], refused[i][1], NULL};
    assert_int_equal(parse(w), CTL_ARGS_ERROR);
    assert_non_null(strstr(args.msg, refused[i][2]));
  }
  /* Before the sources, too (getopt permutes). */
  assert_int_equal(parse(ARGV("plan", "--force", "hubei", "--to", "shaanxi")), CTL_ARGS_ERROR);
  assert_non_null(strstr(args.msg, "--force"));
  /* Without them, the request is the move. */
  assert_int_equal(parse(ARGV("plan", "hubei,henan", "--to", "shaanxi")), CTL_ARGS_REQUEST);
  assert_int_equal(args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_PLAN);
  assert_int_equal(args.req.plan->n_sources, 2);
  assert_int_equal(parse(ARGV("plan", "--schedule", "night")), CTL_ARGS_REQUEST);
  assert_string_equal(args.req.plan->schedule_name, "night");
}

/* history --csv: a cell an operator's text begins with = + - or @ is
 * written as text ('=...), or a spreadsheet opening the audit trail runs
 * it as a formula; other cells are unchanged. */
static void test_history_csv_neutralises_formulas(void **state) {
  (void)state;
  Nirc__AuditEntry e = NIRC__AUDIT_ENTRY__INIT, *ep = &e;
  e.id = 6;
  e.at_ms = 1579752000000LL;
  e.business_at_ms = e.at_ms;
  e.actor = "@alice";
  e.action = "cutover";
  e.target = "xizang";
  Nirc__HistoryReply h = NIRC__HISTORY_REPLY__INIT;
  h.entries = &ep;
  h.n_entries = 1;
  static const char *const reasons[][2] = {
      {"{\"reason\":\"=HYPERLINK(\\\"http://evil.example/\\\",\\\"open\\\")\"}",
       "\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"open\"\")\""},
      {"{\"reason\":\"+1+1\"}", "\"'+1+1\""},
      {"{\"reason\":\"-2+3\"}", "\"'-2+3\""},
      {"{\"reason\":\"@SUM(A1)\"}", "\"'@SUM(A1)\""},
      {"{\"reason\":\"a=b, c\"}", "\"a=b, c\""},
      {"{\"reason\":\"drill\"}", "drill"},
  };
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
    e.detail_json = (char *)reasons[i][0];
    char *text = NULL, want[300];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ctl_history_print(f, &h, CTL_HISTORY_CSV, "UTC");
    fclose(f);
    snprintf(want, sizeof want,
             "id,time,business_time,time_zone,actor,action,target,cause,detail,recorded_at\n"
             "6,2020-01-23 04:00:00,2020-01-23 04:00:00,UTC,\"'@alice\",cutover,xizang,,%s,\n",
             reasons[i][1]);
    assert_string_equal(text, want);
    free(text);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cutover_request),
      cmocka_unit_test(test_refusals_say_why),
      cmocka_unit_test(test_status_filters_and_paging),
      cmocka_unit_test(test_help_usage_and_version),
      cmocka_unit_test(test_too_many_controllers),
      cmocka_unit_test(test_repeated_except_keeps_every_date),
      cmocka_unit_test(test_too_many_except_dates),
      cmocka_unit_test(test_schedule_set_sends_only_what_changes),
      cmocka_unit_test(test_watch_map_and_a_fresh_start),
      cmocka_unit_test(test_readmit_request),
      cmocka_unit_test(test_amend_request),
      cmocka_unit_test(test_control_characters_refused),
      cmocka_unit_test(test_history_filters),
      cmocka_unit_test(test_history_when_around_dst),
      cmocka_unit_test(test_history_tz_must_be_a_zone),
      cmocka_unit_test(test_history_paging_request),
      cmocka_unit_test(test_history_window_order),
      cmocka_unit_test(test_history_all_args),
      cmocka_unit_test(test_suggestions),
      cmocka_unit_test(test_history_output),
      cmocka_unit_test(test_history_csv_neutralises_formulas),
      cmocka_unit_test(test_plan_refuses_cutover_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
