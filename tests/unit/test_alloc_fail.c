/* Fault injection: every operation on a peer's bytes, the agent's state
 * file and the operator's input is run again and again with its 1st, 2nd,
 * 3rd ... allocation failing (curl's torture tests), until it runs through
 * without reaching the failing one. For every N the operation must return
 * an error; it must never crash and never report success with part of its
 * result missing: whenever it succeeds, its result is checked complete. The
 * ASan build (LeakSanitizer) shows that no error path leaks.
 *
 * How allocations are made to fail, in the plain and the ASan build alike:
 *   - NIRC's own code is linked with -Wl,--wrap=malloc,calloc,realloc and
 *     strdup (tests/CMakeLists.txt): its calls land in the __wrap_*
 *     functions below, which count them and fail the chosen one, and call
 *     __real_* (libc's or ASan's allocator) otherwise. Nothing is
 *     interposed globally, so ASan keeps its own interceptors.
 *   - jansson and protobuf-c allocate inside their shared libraries, out of
 *     the linker's reach: jansson gets the same functions through
 *     json_set_alloc_funcs, protobuf-c through frame_allocator, the
 *     allocator frame.c unpacks envelopes with.
 *   - Allocations inside libc itself (fopen, setenv, getaddrinfo) and inih
 *     are not counted: those callers already handle their failure as an
 *     I/O or parse error.
 *
 * Operations covered: frame decode + Envelope unpack and frame encode of
 * each of the eleven message types; LoadReport validation and aggregation
 * into a registry loaded from the scenario; the scenario file; the report
 * as JSON; routes to and from JSON; nircd's configuration; the
 * controller's parsing of operator requests and nircctl's parsing of its
 * command line; the agent's state file, saved and loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "ctl_args.h"
#include "engine.h"
#include "err.h"
#include "frame.h"
#include "jsonio.h"
#include "report.h"
#include "route.h"
#include "rules.h"
#include "scenario.h"
#include "sites.h"
#include "state.h"
#include "util.h"

/* ---- the failing allocator ------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long alloc_count;   /* allocations since the operation started */
static long alloc_fail_at; /* the one that fails; 0: none */

static bool alloc_fails(void) {
  return ++alloc_count == alloc_fail_at;
}

void *__wrap_malloc(size_t n) {
  return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size) {
  return alloc_fails() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
  return alloc_fails() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s) {
  return alloc_fails() ? NULL : __real_strdup(s);
}

static void *pb_alloc(void *data, size_t n) {
  return __wrap_malloc(n);
}

static void pb_free(void *data, void *p) {
  free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

/* An operation: run() under injection returns 0 or a negative error; on
 * success check() (injection off) asserts the result is complete; done()
 * releases whatever run() left, success or not. `absorbs` names the one
 * place where a failed allocation may legitimately go unnoticed: jansson's
 * json_unpack ignores a failure to record a key in the set it keeps for
 * strict ("!") formats, which NIRC does not use; the result is still
 * whole. Such an operation may succeed despite a failure, but then its
 * result must pass check(). */
typedef struct {
  const char *name;
  int (*run)(void *ctx);
  void (*check)(void *ctx);
  void (*done)(void *ctx);
  void *ctx;
  const char *absorbs;
} op_t;

/* Runs `op` with allocation 1, 2, ... failing until it no longer reaches
 * the failing one; returns how many allocations it makes. */
static long torture(const op_t *op) {
  long absorbed = 0;
  for (long n = 1;; n++) {
    alloc_count = 0;
    alloc_fail_at = n;
    int rc = op->run(op->ctx);
    alloc_fail_at = 0;
    bool injected = alloc_count >= n;
    if (!injected) {
      if (rc != 0)
        fail_msg("%s: fails (%s) with no allocation failing", op->name, nirc_errname(rc));
      if (op->check) op->check(op->ctx);
      if (op->done) op->done(op->ctx);
      char note[64] = "";
      if (absorbed) snprintf(note, sizeof note, " (%ld absorbed, result whole)", absorbed);
      if (n == 1)
        print_message("%s: no allocation through NIRC's wrappers\n", op->name);
      else
        print_message("%s: %ld allocations, each failure refused%s\n", op->name, n - 1, note);
      return n - 1;
    }
    if (rc == 0 && !op->absorbs)
      fail_msg("%s: allocation %ld of %ld failed, yet the operation reported success", op->name, n,
               alloc_count);
    if (rc == 0) {
      if (op->check) op->check(op->ctx); /* whole, or the test fails here */
      absorbed++;
    }
    if (op->done) op->done(op->ctx);
    if (n > 200000) fail_msg("%s: does not finish", op->name);
  }
}

static int setup(void **state) {
  json_set_alloc_funcs(__wrap_malloc, free);
  frame_allocator = &pb_allocator;
  return 0;
}

static const char *source_dir(void) {
  const char *d = getenv("NIRC_SOURCE_DIR");
  if (!d) fail_msg("NIRC_SOURCE_DIR is not set; run through ctest");
  return d;
}

/* ---- the messages ------------------------------------------------------ */

typedef struct {
  Nirc__Envelope env;
  Nirc__Error error;
  Nirc__Hello hello;
  Nirc__Welcome welcome;
  Nirc__LoadReport report;
  Nirc__Directive directive;
  Nirc__RouteShare shares[2], inbound[2];
  Nirc__RouteShare *share_ptrs[2], *inbound_ptrs[2];
  char *inbound_names[2];
  Nirc__DirectiveAck ack;
  Nirc__Ping ping;
  Nirc__Pong pong;
  Nirc__OperatorRequest req;
  Nirc__ScheduleRequest sched;
  Nirc__ScheduleSpec spec;
  char *sources[2], *hubs[2], *exceptions[2];
  Nirc__OperatorReply rep;
  Nirc__Error rep_error;
  Nirc__StatusReply status;
  Nirc__SiteStatus sites[2];
  Nirc__SiteStatus *site_ptrs[2];
  Nirc__Progress progress;
} msgs_t;

static void fill_report(Nirc__LoadReport *r, const char *site) {
  nirc__load_report__init(r);
  r->site = (char *)site;
  r->timestamp_ms = 1579701001000LL;
  r->interval_ms = 1000;
  r->calls_offered = 12;
  r->calls_answered = 10;
  r->calls_abandoned = 1;
  r->calls_in_queue = 4;
  r->calls_in_queue_peak = 6;
  r->longest_wait_ms = 31000;
  r->agents_logged_in = 40;
  r->agents_ready = 3;
  r->agents_talking = 33;
  r->agents_not_ready = 4;
  r->aht_ms = 185000;
  r->answered_within_threshold = 8;
  r->sl_threshold_s = 20;
  r->calls_from_other_sites = 2;
  r->calls_routed_away = 1;
  r->pbx_error = "";
}

static void fill_msgs(msgs_t *m) {
  memset(m, 0, sizeof *m);
  nirc__error__init(&m->error);
  m->error.code = NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER;
  m->error.message = "this controller is a standby";
  m->error.leader_hint = "10.0.0.2:7443";

  nirc__directive__init(&m->directive);
  m->directive.site = "hubei";
  m->directive.epoch = 7;
  m->directive.version = 12;
  m->directive.reason = "Wuhan lockdown 武汉封城";
  m->directive.revert_at_ms = 1579960800000LL;
  m->directive.issued_at_ms = 1579701000000LL;
  static const char *const share_site[2] = {"hubei", "shaanxi"};
  static const char *const in_site[2] = {"guizhou", "fujian"};
  for (int i = 0; i < 2; i++) {
    nirc__route_share__init(&m->shares[i]);
    m->shares[i].site = (char *)share_site[i];
    m->shares[i].permille = i ? 300 : 700;
    m->share_ptrs[i] = &m->shares[i];
    nirc__route_share__init(&m->inbound[i]);
    m->inbound[i].site = (char *)in_site[i];
    m->inbound[i].permille = 1000;
    m->inbound_ptrs[i] = &m->inbound[i];
    m->inbound_names[i] = (char *)in_site[i];
  }
  m->directive.route = m->share_ptrs;
  m->directive.n_route = 2;
  m->directive.inbound = m->inbound_ptrs;
  m->directive.n_inbound = 2;
  m->directive.inbound_sources = m->inbound_names;
  m->directive.n_inbound_sources = 2;

  nirc__hello__init(&m->hello);
  m->hello.protocol_version = 1;
  m->hello.software_version = "0.1.0";
  m->hello.site = "hubei";
  m->hello.adapter = "kamailio";
  m->hello.trunk_capacity = 120;
  m->hello.agent_seats = 60;
  m->hello.applied = &m->directive;

  nirc__welcome__init(&m->welcome);
  m->welcome.controller_node = "nircd-1";
  m->welcome.epoch = 7;
  m->welcome.report_interval_ms = 1000;
  m->welcome.server_time_ms = 1579701000000LL;

  fill_report(&m->report, "hubei");

  nirc__directive_ack__init(&m->ack);
  m->ack.site = "hubei";
  m->ack.epoch = 7;
  m->ack.version = 12;
  m->ack.result = NIRC__ACK_RESULT__ACK_RESULT_REJECTED;
  m->ack.detail = "superseded by a newer directive";

  nirc__ping__init(&m->ping);
  m->ping.nonce = 99;
  nirc__pong__init(&m->pong);
  m->pong.nonce = 99;

  m->sources[0] = "hubei";
  m->sources[1] = "guizhou";
  m->hubs[0] = "shaanxi";
  m->hubs[1] = "henan";
  m->exceptions[0] = "2020-01-24";
  m->exceptions[1] = "2020-02-29";
  nirc__schedule_spec__init(&m->spec);
  m->spec.name = "night";
  m->spec.sources = m->sources;
  m->spec.n_sources = 2;
  m->spec.hubs = m->hubs;
  m->spec.n_hubs = 2;
  m->spec.start = "22:00";
  m->spec.end = "08:00";
  m->spec.days = "daily";
  m->spec.tz = "Asia/Shanghai";
  m->spec.exceptions = m->exceptions;
  m->spec.n_exceptions = 2;
  m->spec.wave_size = 5;
  nirc__schedule_request__init(&m->sched);
  m->sched.op = NIRC__RULE_OP__RULE_OP_ADD;
  m->sched.spec = &m->spec;
  nirc__operator_request__init(&m->req);
  m->req.request_id = 4242;
  m->req.body_case = NIRC__OPERATOR_REQUEST__BODY_SCHEDULE;
  m->req.schedule = &m->sched;

  nirc__status_reply__init(&m->status);
  m->status.controller_node = "nircd-1";
  m->status.epoch = 7;
  m->status.server_time_ms = 1579701000000LL;
  for (int i = 0; i < 2; i++) {
    Nirc__SiteStatus *s = &m->sites[i];
    nirc__site_status__init(s);
    s->slug = i ? "shaanxi" : "hubei";
    s->name_en = i ? "Shaanxi" : "Hubei";
    s->name_zh = i ? "陕西" : "湖北";
    s->is_hub = i == 1;
    s->link_state = NIRC__LINK_STATE__LINK_STATE_ONLINE;
    s->last_report_ms = 1579701001000LL;
    s->report_age_ms = 400;
    s->last_report = &m->report;
    s->route = m->share_ptrs;
    s->n_route = 2;
    s->active_rule = "cutover 2000001: Wuhan lockdown";
    s->peer_address = "10.1.0.5:40000";
    s->lat = 30.6;
    s->lon = 114.3;
    m->site_ptrs[i] = s;
  }
  m->status.sites = m->site_ptrs;
  m->status.n_sites = 2;
  nirc__error__init(&m->rep_error);
  m->rep_error.code = NIRC__ERROR_CODE__ERROR_CODE_UNAVAILABLE;
  m->rep_error.message = "audit record not yet committed";
  nirc__operator_reply__init(&m->rep);
  m->rep.request_id = 4242;
  m->rep.ok = 1;
  m->rep.error = &m->rep_error;
  m->rep.body_case = NIRC__OPERATOR_REPLY__BODY_STATUS;
  m->rep.status = &m->status;

  nirc__progress__init(&m->progress);
  m->progress.request_id = 4242;
  m->progress.line = "hubei: applied v12 in 41 ms";
}

/* Points m->env at message `c`. */
static void set_env(msgs_t *m, Nirc__Envelope__MsgCase c) {
  nirc__envelope__init(&m->env);
  m->env.msg_case = c;
  switch (c) {
  case NIRC__ENVELOPE__MSG_ERROR: m->env.error = &m->error; break;
  case NIRC__ENVELOPE__MSG_HELLO: m->env.hello = &m->hello; break;
  case NIRC__ENVELOPE__MSG_WELCOME: m->env.welcome = &m->welcome; break;
  case NIRC__ENVELOPE__MSG_LOAD_REPORT: m->env.load_report = &m->report; break;
  case NIRC__ENVELOPE__MSG_DIRECTIVE: m->env.directive = &m->directive; break;
  case NIRC__ENVELOPE__MSG_DIRECTIVE_ACK: m->env.directive_ack = &m->ack; break;
  case NIRC__ENVELOPE__MSG_PING: m->env.ping = &m->ping; break;
  case NIRC__ENVELOPE__MSG_PONG: m->env.pong = &m->pong; break;
  case NIRC__ENVELOPE__MSG_OPERATOR_REQUEST: m->env.operator_request = &m->req; break;
  case NIRC__ENVELOPE__MSG_OPERATOR_REPLY: m->env.operator_reply = &m->rep; break;
  case NIRC__ENVELOPE__MSG_PROGRESS: m->env.progress = &m->progress; break;
  default: fail_msg("no message %d", c);
  }
}

static const Nirc__Envelope__MsgCase all_cases[] = {
    NIRC__ENVELOPE__MSG_ERROR,
    NIRC__ENVELOPE__MSG_HELLO,
    NIRC__ENVELOPE__MSG_WELCOME,
    NIRC__ENVELOPE__MSG_LOAD_REPORT,
    NIRC__ENVELOPE__MSG_DIRECTIVE,
    NIRC__ENVELOPE__MSG_DIRECTIVE_ACK,
    NIRC__ENVELOPE__MSG_PING,
    NIRC__ENVELOPE__MSG_PONG,
    NIRC__ENVELOPE__MSG_OPERATOR_REQUEST,
    NIRC__ENVELOPE__MSG_OPERATOR_REPLY,
    NIRC__ENVELOPE__MSG_PROGRESS,
};

/* The frame of m->env, packed without the allocator under test. */
static size_t pack_frame(const Nirc__Envelope *env, uint8_t *buf, size_t cap) {
  size_t n = nirc__envelope__get_packed_size(env);
  assert_true(n + FRAME_HEADER_LEN <= cap);
  buf[0] = (uint8_t)(n >> 24);
  buf[1] = (uint8_t)(n >> 16);
  buf[2] = (uint8_t)(n >> 8);
  buf[3] = (uint8_t)n;
  nirc__envelope__pack(env, buf + FRAME_HEADER_LEN);
  return n + FRAME_HEADER_LEN;
}

/* ---- frame decode and encode ------------------------------------------ */

typedef struct {
  uint8_t frame[8192];
  size_t len;
  Nirc__Envelope__MsgCase want;
  Nirc__Envelope *env; /* decoded */
  uint8_t *out;        /* encoded */
  size_t outlen;
  const Nirc__Envelope *src;
} codec_t;

static int on_payload(void *arg, const uint8_t *payload, size_t len) {
  codec_t *c = arg;
  return frame_decode_envelope(payload, len, &c->env);
}

/* As link.c feeds it: the frame in two reads, split inside the payload so
 * the decoder has to allocate its body buffer. */
static int decode_run(void *ctx) {
  codec_t *c = ctx;
  frame_decoder_t d;
  frame_decoder_init(&d);
  size_t half = FRAME_HEADER_LEN + (c->len - FRAME_HEADER_LEN) / 2;
  int rc = frame_decoder_feed(&d, c->frame, half, on_payload, c);
  if (rc == 0) rc = frame_decoder_feed(&d, c->frame + half, c->len - half, on_payload, c);
  frame_decoder_free(&d);
  if (rc == 0 && !c->env) rc = NIRC_EFRAME_MALFORMED;
  return rc;
}

static void decode_check(void *ctx) {
  codec_t *c = ctx;
  assert_non_null(c->env);
  assert_int_equal(c->env->msg_case, c->want);
  /* Everything came through: packed again, it is the same frame. */
  uint8_t again[8192];
  size_t n = pack_frame(c->env, again, sizeof again);
  assert_int_equal(n, c->len);
  assert_memory_equal(again, c->frame, n);
}

static void decode_done(void *ctx) {
  codec_t *c = ctx;
  frame_envelope_free(c->env);
  c->env = NULL;
}

static int encode_run(void *ctx) {
  codec_t *c = ctx;
  return frame_encode(c->src, &c->out, &c->outlen);
}

static void encode_check(void *ctx) {
  codec_t *c = ctx;
  assert_int_equal(c->outlen, c->len);
  assert_memory_equal(c->out, c->frame, c->len);
}

static void encode_done(void *ctx) {
  codec_t *c = ctx;
  free(c->out);
  c->out = NULL;
}

static void test_frames(void **state) {
  static msgs_t m;
  fill_msgs(&m);
  for (size_t i = 0; i < sizeof all_cases / sizeof all_cases[0]; i++) {
    codec_t c = {.want = all_cases[i]};
    set_env(&m, all_cases[i]);
    c.len = pack_frame(&m.env, c.frame, sizeof c.frame);
    c.src = &m.env;
    char name[2][64];
    snprintf(name[0], sizeof name[0], "decode envelope %d", all_cases[i]);
    snprintf(name[1], sizeof name[1], "encode envelope %d", all_cases[i]);
    op_t dec = {name[0], decode_run, decode_check, decode_done, &c, NULL};
    op_t enc = {name[1], encode_run, encode_check, encode_done, &c, NULL};
    assert_true(torture(&dec) >= 2); /* the body buffer, then protobuf-c's */
    assert_int_equal(torture(&enc), 1);
  }
}

/* ---- scenario, registry, reports ----------------------------------------- */

typedef struct {
  char path[1024];
  scenario_t sc;
  bool loaded;
  sites_t sites;
  site_minute_t flushed;
  bool have_flushed;
  json_t *json;
} registry_t;

static int scenario_run(void *ctx) {
  registry_t *g = ctx;
  char err[512];
  int rc = scenario_load(g->path, &g->sc, err, sizeof err);
  g->loaded = rc == 0;
  return rc;
}

static void scenario_check(void *ctx) {
  registry_t *g = ctx;
  assert_int_equal(g->sc.count, 31);
  assert_string_equal(g->sc.primary_hub, "shaanxi");
  const scenario_site_t *s = scenario_find(&g->sc, "hubei");
  assert_non_null(s);
  assert_string_equal(s->name_zh, "湖北");
  assert_true(s->day_calls > 0 && s->agents_day > 0);
}

static void scenario_done(void *ctx) {
  registry_t *g = ctx;
  if (g->loaded) scenario_free(&g->sc);
  g->loaded = false;
}

/* The registry from the scenario, then three reports into it: two in one
 * business minute, the third closes it. */
static int registry_run(void *ctx) {
  registry_t *g = ctx;
  char err[512];
  int rc = scenario_load(g->path, &g->sc, err, sizeof err);
  if (rc != 0) return rc;
  g->loaded = true;
  sites_init(&g->sites, 3000);
  for (size_t i = 0; i < g->sc.count; i++) {
    const scenario_site_t *s = &g->sc.sites[i];
    rc = sites_add(&g->sites, s->slug, s->name_en, s->name_zh, s->is_hub);
    if (rc != 0) return rc;
  }
  site_t *site = sites_find(&g->sites, "hubei");
  if (!site) return NIRC_ENOTFOUND;
  sites_on_hello(site, 1579701000000LL);
  Nirc__LoadReport r;
  fill_report(&r, "hubei");
  for (int k = 0; k < 3; k++) {
    rc = sites_validate_report(&r, err, sizeof err);
    if (rc != 0) return rc;
    if (sites_on_report(site, &r, 1579701001000LL + k * 1000, 1579701030000LL + k * 20000,
                        &g->flushed))
      g->have_flushed = true;
  }
  return 0;
}

static void registry_check(void *ctx) {
  registry_t *g = ctx;
  assert_int_equal(g->sites.n, 31);
  site_t *site = sites_find(&g->sites, "hubei");
  assert_true(g->have_flushed);
  assert_int_equal(g->flushed.reports, 2);
  assert_int_equal(g->flushed.offered, 24);
  assert_int_equal(site->minute.reports, 1);
  assert_int_equal(site->last.offered, 12);
  assert_int_equal(site->state, SITE_ONLINE);
}

static void registry_done(void *ctx) {
  registry_t *g = ctx;
  sites_free(&g->sites);
  scenario_done(g);
  g->have_flushed = false;
}

static int report_json_run(void *ctx) {
  registry_t *g = ctx;
  Nirc__LoadReport r;
  fill_report(&r, "hubei");
  g->json = report_to_json(&r);
  return g->json ? 0 : NIRC_ENOMEM;
}

static void report_json_check(void *ctx) {
  registry_t *g = ctx;
  static const char *const keys[] = {"site",
                                     "timestamp_ms",
                                     "interval_ms",
                                     "calls_offered",
                                     "calls_answered",
                                     "calls_abandoned",
                                     "calls_in_queue",
                                     "longest_wait_ms",
                                     "agents_logged_in",
                                     "agents_ready",
                                     "agents_talking",
                                     "agents_not_ready",
                                     "aht_ms",
                                     "answered_within_threshold",
                                     "sl_threshold_s",
                                     "calls_from_other_sites",
                                     "pbx_unreadable",
                                     "calls_routed_away",
                                     "routed_to",
                                     "routing_measured",
                                     "calls_in_queue_peak",
                                     "service_level",
                                     "not_measured"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!json_object_get(g->json, keys[i])) fail_msg("report JSON lacks %s", keys[i]);
  assert_int_equal(json_object_size(g->json), sizeof keys / sizeof keys[0]);
}

static void report_json_done(void *ctx) {
  registry_t *g = ctx;
  json_decref(g->json);
  g->json = NULL;
}

static void test_registry(void **state) {
  static registry_t g;
  snprintf(g.path, sizeof g.path, "%s/scenario/provinces.json", source_dir());
  op_t sc = {"scenario file", scenario_run, scenario_check, scenario_done, &g, NULL};
  op_t reg = {
      "registry and report aggregation", registry_run, registry_check, registry_done, &g, NULL};
  op_t js = {"report as JSON", report_json_run, report_json_check, report_json_done, &g, NULL};
  assert_true(torture(&sc) > 31);
  assert_true(torture(&reg) > 31);
  torture(&js);
}

/* ---- routes as JSON, the agent's state file --------------------------------- */

typedef struct {
  route_t route, back;
  json_t *json;
  char *text;
  char dir[64], path[128], corrupt[160], tmp[160];
  char saved_before[4096]; /* the file's content before the operation */
} route_ctx_t;

static void sample_route(route_t *r) {
  memset(r, 0, sizeof *r);
  r->epoch = 7;
  r->version = 12;
  r->revert_at_ms = 1579960800000LL;
  snprintf(r->reason, sizeof r->reason, "Wuhan lockdown 武汉封城");
  static const char *const shares[] = {"hubei", "shaanxi", "henan"};
  static const uint32_t pm[] = {500, 300, 200};
  for (unsigned i = 0; i < 3; i++) {
    snprintf(r->share[i].site, sizeof r->share[i].site, "%s", shares[i]);
    r->share[i].permille = pm[i];
  }
  r->n_share = 3;
  static const char *const in[] = {"guizhou", "fujian", "hunan", "jiangxi"};
  for (unsigned i = 0; i < 4; i++) {
    snprintf(r->inbound[i].site, sizeof r->inbound[i].site, "%s", in[i]);
    r->inbound[i].permille = 250 * (i + 1);
  }
  r->n_inbound = 4;
}

static void assert_route_equal(const route_t *a, const route_t *b) {
  assert_true(route_same(a, b));
  assert_int_equal(route_compare_version(a, b), 0);
  assert_int_equal(a->n_share, b->n_share);
  assert_int_equal(a->n_inbound, b->n_inbound);
  assert_string_equal(a->reason, b->reason);
  assert_int_equal(a->revert_at_ms, b->revert_at_ms);
}

static int route_print_run(void *ctx) {
  route_ctx_t *c = ctx;
  c->json = route_to_json(&c->route);
  return c->json ? 0 : NIRC_ENOMEM;
}

static void route_print_check(void *ctx) {
  route_ctx_t *c = ctx;
  char err[256];
  route_t back;
  assert_int_equal(route_from_json(c->json, &back, err, sizeof err), 0);
  assert_route_equal(&back, &c->route);
}

static void route_print_done(void *ctx) {
  route_ctx_t *c = ctx;
  json_decref(c->json);
  c->json = NULL;
}

static int route_parse_run(void *ctx) {
  route_ctx_t *c = ctx;
  char err[256];
  json_error_t je;
  json_t *j = jsonio_loadb(c->text, strlen(c->text), JSON_REJECT_DUPLICATES, &je);
  if (!j) return NIRC_ENOMEM;
  int rc = route_from_json(j, &c->back, err, sizeof err);
  json_decref(j);
  return rc;
}

static void route_parse_check(void *ctx) {
  route_ctx_t *c = ctx;
  assert_route_equal(&c->back, &c->route);
}

static void read_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* A save that fails leaves the previous state and no temporary file. */
static int state_save_run(void *ctx) {
  route_ctx_t *c = ctx;
  char err[512];
  int rc = state_save(c->path, "hubei", &c->route, err, sizeof err);
  if (rc != 0) {
    char now[4096];
    read_file(c->path, now, sizeof now);
    assert_string_equal(now, c->saved_before);
    assert_int_equal(access(c->tmp, F_OK), -1);
  }
  return rc;
}

static void state_save_check(void *ctx) {
  route_ctx_t *c = ctx;
  char err[512];
  route_t back;
  assert_int_equal(state_load(c->path, "hubei", &back, err, sizeof err), 0);
  assert_route_equal(&back, &c->route);
}

/* A load that fails for want of memory leaves the file where it is: it is
 * not corrupt, and the next start must find it. */
static int state_load_run(void *ctx) {
  route_ctx_t *c = ctx;
  char err[512];
  int rc = state_load(c->path, "hubei", &c->back, err, sizeof err);
  if (rc != 0) {
    if (access(c->path, F_OK) != 0)
      fail_msg("state_load with a failed allocation moved a good state file aside: %s", err);
    char now[4096];
    read_file(c->path, now, sizeof now);
    assert_string_equal(now, c->saved_before);
  }
  return rc;
}

static void test_routes_and_state(void **state) {
  static route_ctx_t c;
  sample_route(&c.route);
  char err[256];
  assert_int_equal(route_validate(&c.route, err, sizeof err), 0);
  op_t print = {"route to JSON", route_print_run, route_print_check, route_print_done, &c, NULL};
  torture(&print);

  json_t *j = route_to_json(&c.route);
  assert_non_null(j);
  c.text = json_dumps(j, JSON_INDENT(2));
  json_decref(j);
  assert_non_null(c.text);
  op_t parse = {"route from JSON", route_parse_run, route_parse_check, NULL, &c, "json_unpack"};
  torture(&parse);
  free(c.text);

  snprintf(c.dir, sizeof c.dir, "/tmp/nirc-test-alloc.XXXXXX");
  assert_non_null(mkdtemp(c.dir));
  snprintf(c.path, sizeof c.path, "%s/state.json", c.dir);
  snprintf(c.tmp, sizeof c.tmp, "%s.tmp", c.path);
  snprintf(c.corrupt, sizeof c.corrupt, "%s.corrupt", c.path);
  /* The previous state: home. */
  route_t home;
  route_home(&home, "hubei");
  assert_int_equal(state_save(c.path, "hubei", &home, err, sizeof err), 0);
  read_file(c.path, c.saved_before, sizeof c.saved_before);
  op_t save = {"state file save", state_save_run, state_save_check, NULL, &c, NULL};
  torture(&save);
  read_file(c.path, c.saved_before, sizeof c.saved_before);
  op_t load = {"state file load", state_load_run, route_parse_check, NULL, &c, "json_unpack"};
  torture(&load);
  unlink(c.path);
  unlink(c.corrupt);
  rmdir(c.dir);
}

/* ---- configuration, operator requests, nircctl ---------------------------- */

typedef struct {
  char path[128];
  nircd_conf_t conf;
  msgs_t m;
  uint8_t payload[8192];
  size_t len;
  cutover_t cut;
  schedule_t sched;
  overflow_rule_t ovf;
  sites_t sites;
  ctl_args_t args;
} ops_ctx_t;

static int conf_run(void *ctx) {
  ops_ctx_t *o = ctx;
  char err[1024];
  memset(&o->conf, 0, sizeof o->conf);
  return conf_nircd_load(o->path, &o->conf, err, sizeof err);
}

static void conf_check(void *ctx) {
  ops_ctx_t *o = ctx;
  assert_string_equal(o->conf.node, "nircd-1");
  assert_int_equal(o->conf.listen.count, 1);
  assert_string_equal(o->conf.conninfo, "host=127.0.0.1 user=nirc dbname=nirc");
  assert_int_equal(o->conf.report_interval_ms, 1000);
}

static bool site_exists(void *arg, const char *slug, bool *is_hub) {
  ops_ctx_t *o = arg;
  site_t *s = sites_find(&o->sites, slug);
  if (s && is_hub) *is_hub = s->is_hub;
  return s != NULL;
}

/* What engine_op_schedule and engine_op_cutover do with a request before
 * anything moves, from the Envelope as link.c hands it over. */
static int request_run(void *ctx) {
  ops_ctx_t *o = ctx;
  char err[512];
  rules_env_t env = {site_exists, o, NULL};
  Nirc__Envelope *e = NULL;
  int rc = frame_decode_envelope(o->payload, o->len, &e);
  if (rc != 0) return rc;
  const Nirc__OperatorRequest *req = e->operator_request;
  rc = engine_schedule_from_spec(req->schedule->spec, &o->sched, err, sizeof err);
  if (rc == 0) rc = rules_validate_schedule(&o->sched, &env, err, sizeof err);
  Nirc__CutoverRequest cr = NIRC__CUTOVER_REQUEST__INIT;
  cr.sources = req->schedule->spec->sources;
  cr.n_sources = req->schedule->spec->n_sources;
  cr.hubs = req->schedule->spec->hubs;
  cr.n_hubs = req->schedule->spec->n_hubs;
  cr.reason = req->schedule->spec->name;
  cr.expires_in_ms = 3600000;
  if (rc == 0)
    rc = engine_cutover_from_request(&cr, "operator:alice", 1579701000000LL, &o->cut, err,
                                     sizeof err);
  if (rc == 0) rc = rules_validate_cutover(&o->cut, &env, 1579701000000LL, err, sizeof err);
  frame_envelope_free(e);
  return rc;
}

static void request_check(void *ctx) {
  ops_ctx_t *o = ctx;
  assert_string_equal(o->sched.name, "night");
  assert_int_equal(o->sched.sources.n, 2);
  assert_int_equal(o->sched.hubs.n, 2);
  assert_int_equal(o->sched.start_min, 22 * 60);
  assert_int_equal(o->sched.n_exceptions, 2);
  assert_int_equal(o->sched.exceptions[1], 20200229);
  assert_int_equal(o->cut.sources.n, 2);
  assert_int_equal(o->cut.expires_ms, 1579701000000LL + 3600000);
}

static char *ctl_argv_src[] = {
    "nircctl",        "--json", "cutover", "hubei,guizhou", "--to", "shaanxi", "--reason",
    "Wuhan lockdown", "--for",  "72h",     "--share",       "300",  NULL};

static int ctl_run(void *ctx) {
  ops_ctx_t *o = ctx;
  char *argv[sizeof ctl_argv_src / sizeof ctl_argv_src[0]];
  memcpy(argv, ctl_argv_src, sizeof argv);
  return ctl_args_parse((int)(sizeof argv / sizeof argv[0]) - 1, argv, &o->args) == CTL_ARGS_REQUEST
             ? 0
             : NIRC_EINVAL;
}

static void ctl_check(void *ctx) {
  ops_ctx_t *o = ctx;
  const Nirc__CutoverRequest *c = o->args.req.cutover;
  assert_int_equal(o->args.req.body_case, NIRC__OPERATOR_REQUEST__BODY_CUTOVER);
  assert_int_equal(c->n_sources, 2);
  assert_string_equal(c->sources[1], "guizhou");
  assert_int_equal(c->expires_in_ms, 72LL * 3600000);
  assert_int_equal(c->share_permille, 300);
}

static void test_config_and_requests(void **state) {
  static ops_ctx_t o;
  char dir[] = "/tmp/nirc-test-alloc-conf.XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(o.path, sizeof o.path, "%s/nircd.conf", dir);
  FILE *f = fopen(o.path, "w");
  assert_non_null(f);
  fputs("[controller]\nnode = nircd-1\nlisten = 127.0.0.1:7443\n"
        "[tls]\nca = ca.crt\ncert = nircd.crt\nkey = nircd.key\n"
        "[database]\nconninfo = host=127.0.0.1 user=nirc dbname=nirc\n",
        f);
  fclose(f);
  op_t conf = {"nircd configuration", conf_run, conf_check, NULL, &o, NULL};
  torture(&conf);
  unlink(o.path);
  rmdir(dir);

  /* The sites the rules are checked against, built without injection. */
  char path[1024], err[512];
  scenario_t sc;
  snprintf(path, sizeof path, "%s/scenario/provinces.json", source_dir());
  assert_int_equal(scenario_load(path, &sc, err, sizeof err), 0);
  sites_init(&o.sites, 3000);
  for (size_t i = 0; i < sc.count; i++)
    assert_int_equal(sites_add(&o.sites, sc.sites[i].slug, sc.sites[i].name_en, sc.sites[i].name_zh,
                               sc.sites[i].is_hub),
                     0);
  scenario_free(&sc);
  fill_msgs(&o.m);
  set_env(&o.m, NIRC__ENVELOPE__MSG_OPERATOR_REQUEST);
  o.len = nirc__envelope__get_packed_size(&o.m.env);
  assert_true(o.len <= sizeof o.payload);
  nirc__envelope__pack(&o.m.env, o.payload);
  op_t req = {"operator request", request_run, request_check, NULL, &o, NULL};
  assert_true(torture(&req) > 0);
  sites_free(&o.sites);

  op_t ctl = {"nircctl command line", ctl_run, ctl_check, NULL, &o, NULL};
  torture(&ctl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_frames, setup),
      cmocka_unit_test_setup(test_registry, setup),
      cmocka_unit_test_setup(test_routes_and_state, setup),
      cmocka_unit_test_setup(test_config_and_requests, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
