/* Writes the seed corpora of the message harnesses: valid messages as the
 * controller, the agents and nircctl send them, encoded with protobuf-c
 * (fuzz_report and fuzz_directive take framed streams, fuzz_operator one
 * Envelope payload, fuzz_cli argv vectors separated by NUL bytes). The
 * seeds are kept in tests/fuzz/corpus; run this after a protocol change:
 *
 *   build-fuzz/tests/fuzz_mkseeds tests/fuzz/corpus */
#include "frame.h"
#include "support/directive.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  uint8_t buf[65536];
  size_t len;
} seed_t;

static const char *out_dir;

static void seed_frame(seed_t *s, Nirc__Envelope *env) {
  uint8_t *f;
  size_t n;
  if (frame_encode(env, &f, &n) != 0 || s->len + n > sizeof s->buf) {
    fprintf(stderr, "mkseeds: cannot encode a frame\n");
    exit(1);
  }
  memcpy(s->buf + s->len, f, n);
  s->len += n;
  free(f);
}

/* An Envelope payload without the frame header (fuzz_operator's input). */
static void seed_payload(seed_t *s, Nirc__Envelope *env) {
  s->len = nirc__envelope__get_packed_size(env);
  if (s->len > sizeof s->buf) exit(1);
  nirc__envelope__pack(env, s->buf);
}

static void seed_write(const char *corpus, const char *name, const seed_t *s) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", out_dir, corpus);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof path, "%s/%s/%s", out_dir, corpus, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

/* msg (of the type its case names) in an Envelope, framed and added to s. */
static void seed_msg(seed_t *s, Nirc__Envelope__MsgCase c, void *msg) {
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = c;
  switch (c) {
  case NIRC__ENVELOPE__MSG_ERROR: env.error = msg; break;
  case NIRC__ENVELOPE__MSG_HELLO: env.hello = msg; break;
  case NIRC__ENVELOPE__MSG_WELCOME: env.welcome = msg; break;
  case NIRC__ENVELOPE__MSG_LOAD_REPORT: env.load_report = msg; break;
  case NIRC__ENVELOPE__MSG_DIRECTIVE: env.directive = msg; break;
  case NIRC__ENVELOPE__MSG_DIRECTIVE_ACK: env.directive_ack = msg; break;
  case NIRC__ENVELOPE__MSG_PING: env.ping = msg; break;
  default: fprintf(stderr, "mkseeds: no seeds of message case %d\n", (int)c); exit(1);
  }
  seed_frame(s, &env);
}

/* ---- messages ---- */

/* {to: 1000} or {site: 700, to: 300} with (epoch, version), as the
 * controller issues it. */
static void directive(tdirective_t *x, const char *site, uint64_t epoch, uint64_t version,
                      const char *to, bool split, const char *reason, int64_t revert_at) {
  tdirective_make(x, site, epoch, version, to, split, reason);
  x->d.revert_at_ms = revert_at;
  x->d.issued_at_ms = 1579701000000LL;
}

static void load_report(Nirc__LoadReport *r, int64_t ts, bool unreadable) {
  nirc__load_report__init(r);
  r->site = "hubei";
  r->timestamp_ms = ts;
  r->interval_ms = 1000;
  if (unreadable) {
    r->pbx_unreadable = 1;
    r->pbx_error = "PBX unreachable: 连接超时 (timeout)";
    return;
  }
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
}

static void seeds_report(void) {
  seed_t s = {.len = 0};
  Nirc__Hello h = NIRC__HELLO__INIT;
  tdirective_t applied;
  h.protocol_version = 1;
  h.software_version = "0.1.0";
  h.site = "hubei";
  h.adapter = "sim";
  h.trunk_capacity = 120;
  h.agent_seats = 60;
  directive(&applied, "hubei", 7, 3, "shaanxi", false, "Wuhan lockdown", 0);
  h.applied = &applied.d;
  seed_msg(&s, NIRC__ENVELOPE__MSG_HELLO, &h);
  Nirc__LoadReport r;
  load_report(&r, 1579701001000LL, false);
  seed_msg(&s, NIRC__ENVELOPE__MSG_LOAD_REPORT, &r);
  load_report(&r, 1579701002000LL, true);
  seed_msg(&s, NIRC__ENVELOPE__MSG_LOAD_REPORT, &r);
  load_report(&r, 1579701061000LL, false);
  r.interval_ms = 59000;
  seed_msg(&s, NIRC__ENVELOPE__MSG_LOAD_REPORT, &r);
  Nirc__DirectiveAck ack = NIRC__DIRECTIVE_ACK__INIT;
  ack.site = "hubei";
  ack.epoch = 7;
  ack.version = 3;
  ack.result = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
  ack.detail = "already applied";
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE_ACK, &ack);
  Nirc__Error e = NIRC__ERROR__INIT;
  e.code = NIRC__ERROR_CODE__ERROR_CODE_INTERNAL;
  e.message = "adapter restarting";
  seed_msg(&s, NIRC__ENVELOPE__MSG_ERROR, &e);
  seed_write("report", "session", &s);

  /* Reconnect: a Hello on a new link with another route than the
   * controller's target makes it resend; the agent then fails it. */
  s.len = 0;
  directive(&applied, "hubei", 7, 2, "shaanxi", true, "overflow", 1579704600000LL);
  seed_msg(&s, NIRC__ENVELOPE__MSG_HELLO, &h);
  Nirc__Ping ping = NIRC__PING__INIT;
  seed_msg(&s, NIRC__ENVELOPE__MSG_PING, &ping); /* not valid here: the link is refused */
  directive(&applied, "hubei", 7, 4, "henan", false, "night", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_HELLO, &h);
  ack.version = 2;
  ack.result = NIRC__ACK_RESULT__ACK_RESULT_FAILED;
  ack.detail = "dispatcher reload failed";
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE_ACK, &ack);
  seed_write("report", "reconnect", &s);

  /* A report before Hello is refused. */
  s.len = 0;
  load_report(&r, 1579701001000LL, false);
  seed_msg(&s, NIRC__ENVELOPE__MSG_LOAD_REPORT, &r);
  seed_write("report", "no-hello", &s);
}

static void seeds_directive(void) {
  seed_t s = {.len = 0};
  Nirc__Welcome w = NIRC__WELCOME__INIT;
  w.controller_node = "nircd-1";
  w.epoch = 7;
  w.report_interval_ms = 1000;
  w.server_time_ms = 1579701000000LL;
  tdirective_t x;
  seed_msg(&s, NIRC__ENVELOPE__MSG_WELCOME, &w);
  directive(&x, "hubei", 7, 1, "shaanxi", false, "Wuhan lockdown", 1579960800000LL);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d); /* a resend while it is applied */
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d); /* a resend once applied */
  directive(&x, "hubei", 7, 2, "hubei", false, "restored by alice", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  seed_write("directive", "cutover-restore", &s);

  s.len = 0;
  seed_msg(&s, NIRC__ENVELOPE__MSG_WELCOME, &w);
  directive(&x, "hubei", 7, 5, "henan", true, "gd-peak: 30% to Zhengzhou", 0);
  Nirc__RouteShare in_a = NIRC__ROUTE_SHARE__INIT, *inbound[1] = {&in_a};
  char *inbound_names[1] = {"guizhou"};
  in_a.site = "guizhou";
  in_a.permille = 1000;
  x.d.inbound = inbound;
  x.d.n_inbound = 1;
  x.d.inbound_sources = inbound_names;
  x.d.n_inbound_sources = 1;
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  directive(&x, "hubei", 6, 9, "sichuan", false, "from a deposed leader", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  directive(&x, "hunan", 7, 6, "sichuan", false, "for another site", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  directive(&x, "hubei", 7, 4, "sichuan", false, "older version", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  Nirc__Error e = NIRC__ERROR__INIT;
  e.code = NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER;
  e.message = "standby";
  e.leader_hint = "10.0.0.2:7443";
  seed_msg(&s, NIRC__ENVELOPE__MSG_ERROR, &e);
  seed_write("directive", "split-fencing", &s);

  /* A slow PBX: (7,5) is being applied when (7,7) comes, and the
   * controller resends (7,7) before either is acknowledged. */
  s.len = 0;
  seed_msg(&s, NIRC__ENVELOPE__MSG_WELCOME, &w);
  directive(&x, "hubei", 7, 5, "shaanxi", false, "night", 0);
  x.d.issued_at_ms += 3; /* fuzz_directive: the PBX takes three messages */
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  directive(&x, "hubei", 7, 7, "henan", false, "Xi'an lockdown", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  seed_write("directive", "slow-pbx-resend", &s);

  /* An older directive while a newer one is being applied must not be
   * applied after it. */
  s.len = 0;
  seed_msg(&s, NIRC__ENVELOPE__MSG_WELCOME, &w);
  directive(&x, "hubei", 7, 65, "shaanxi", false, "night", 0);
  x.d.issued_at_ms += 2;
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  directive(&x, "hubei", 7, 1, "henan", false, "an old plan", 0);
  seed_msg(&s, NIRC__ENVELOPE__MSG_DIRECTIVE, &x.d);
  seed_write("directive", "older-behind-newer", &s);
}

static void seed_operator(const char *name, Nirc__OperatorRequest *req) {
  seed_t s = {.len = 0};
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
  env.operator_request = req;
  seed_payload(&s, &env);
  seed_write("operator", name, &s);
}

static void seeds_operator(void) {
  static char *srcs[] = {"hubei", "guizhou", "fujian"};
  static char *hubs[] = {"shaanxi", "henan"};
  Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
  req.request_id = 4242;

  Nirc__CutoverRequest c = NIRC__CUTOVER_REQUEST__INIT;
  c.sources = srcs;
  c.n_sources = 1;
  c.hubs = hubs;
  c.n_hubs = 1;
  c.reason = "Wuhan lockdown 武汉封城";
  c.expires_in_ms = 72LL * 3600000;
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_CUTOVER;
  req.cutover = &c;
  seed_operator("cutover", &req);
  c.n_sources = 2;
  c.n_hubs = 2;
  c.expires_in_ms = 0;
  c.expires_ms = 1580000000000LL;
  c.share_permille = 300;
  c.dry_run = 1;
  c.force = 1;
  seed_operator("cutover-share", &req);
  /* Hostile clocks: the furthest expiries either way. */
  c.share_permille = 0;
  c.dry_run = c.force = 0;
  c.expires_in_ms = INT64_MAX;
  seed_operator("cutover-expiry-max", &req);
  c.expires_in_ms = 0;
  c.expires_ms = INT64_MIN + 1;
  seed_operator("cutover-expiry-min", &req);
  c.expires_ms = 0;

  Nirc__ScheduleSpec sp = NIRC__SCHEDULE_SPEC__INIT;
  static char *ex[] = {"2020-01-24", "2020-02-29"};
  sp.name = "night";
  sp.sources = srcs;
  sp.n_sources = 3;
  sp.hubs = hubs;
  sp.n_hubs = 2;
  sp.start = "22:00";
  sp.end = "08:00";
  sp.days = "daily";
  sp.tz = "Asia/Shanghai";
  sp.exceptions = ex;
  sp.n_exceptions = 2;
  sp.wave_size = 5;
  Nirc__ScheduleRequest sr = NIRC__SCHEDULE_REQUEST__INIT;
  sr.op = NIRC__RULE_OP__RULE_OP_ADD;
  sr.spec = &sp;
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_SCHEDULE;
  req.schedule = &sr;
  seed_operator("schedule-night", &req);
  static char *east[] = {"zhejiang"};
  sp.name = "early";
  sp.sources = east;
  sp.n_sources = 1;
  sp.start = "01:30";
  sp.end = "03:00";
  sp.days = "mon-fri,sun";
  sp.tz = "America/New_York";
  sp.n_exceptions = 0;
  req.request_id = 1000ull * 86400000ull + 4242;
  seed_operator("schedule-dst", &req);
  sr.op = NIRC__RULE_OP__RULE_OP_DISABLE;
  sr.spec = NULL;
  sr.name = "night";
  seed_operator("schedule-disable", &req);

  Nirc__OverflowSpec os = NIRC__OVERFLOW_SPEC__INIT;
  static char *ohubs[] = {"sichuan", "henan"};
  os.name = "sc-peak";
  os.source = "chongqing";
  os.hubs = ohubs;
  os.n_hubs = 2;
  os.trigger_wait_s = 60;
  os.release_wait_s = 15;
  os.trigger_queue = 20;
  os.release_queue = 5;
  os.trigger_sl = 0.6;
  os.release_sl = 0.8;
  os.share_cap_permille = 300;
  os.min_hold_s = 600;
  os.margin_s = 10;
  Nirc__OverflowRequest orq = NIRC__OVERFLOW_REQUEST__INIT;
  orq.op = NIRC__RULE_OP__RULE_OP_ADD;
  orq.spec = &os;
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_OVERFLOW;
  req.overflow = &orq;
  seed_operator("overflow", &req);

  Nirc__StatusRequest st = NIRC__STATUS_REQUEST__INIT;
  st.site = "hubei";
  req.body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
  req.status = &st;
  seed_operator("status", &req);
}

/* argv after "nircctl", NUL-separated. */
static void seed_argv(const char *name, const char *const *argv) {
  seed_t s = {.len = 0};
  for (size_t i = 0; argv[i]; i++) {
    size_t n = strlen(argv[i]);
    if (i) s.buf[s.len++] = '\0';
    memcpy(s.buf + s.len, argv[i], n);
    s.len += n;
  }
  seed_write("cli", name, &s);
}

static void seeds_cli(void) {
  seed_argv("status", (const char *const[]){"--json", "status", "hubei", NULL});
  seed_argv("cutover", (const char *const[]){"cutover", "hubei", "--to", "shaanxi", "--reason",
                                             "Wuhan lockdown", "--for", "72h", NULL});
  seed_argv("cutover-share",
            (const char *const[]){"--controller", "10.0.0.1:7443", "--controller", "10.0.0.2:7443",
                                  "cutover", "hubei,henan", "--to", "shaanxi", "--share", "300",
                                  "--until", "2020-01-23T18:00:00+08:00", "--dry-run", "--force",
                                  "--reason", "peak", NULL});
  seed_argv("restore", (const char *const[]){"restore", "--cutover", "2000001", NULL});
  seed_argv("plan", (const char *const[]){"plan", "--schedule", "night", NULL});
  seed_argv("schedule", (const char *const[]){"schedule",
                                              "add",
                                              "night",
                                              "--sources",
                                              "hubei,guizhou,fujian",
                                              "--to",
                                              "shaanxi,henan",
                                              "--start",
                                              "22:00",
                                              "--end",
                                              "08:00",
                                              "--tz",
                                              "Asia/Shanghai",
                                              "--except",
                                              "2020-01-24",
                                              "--except",
                                              "2020-02-01,2020-02-02",
                                              "--days",
                                              "mon-fri",
                                              "--wave-size",
                                              "3",
                                              NULL});
  seed_argv("overflow", (const char *const[]){"overflow",      "add",
                                              "gd-peak",       "--source",
                                              "guangdong",     "--to",
                                              "sichuan,henan", "--cap",
                                              "300",           "--trigger-wait",
                                              "60s",           "--release-wait",
                                              "15s",           "--trigger-sl",
                                              "0.6",           "--release-sl",
                                              "0.8",           "--hold",
                                              "10m",           NULL});
  seed_argv("history", (const char *const[]){"history", "--site", "hubei", "--since", "24h",
                                             "--limit", "500", NULL});
  seed_argv("watch", (const char *const[]){"--timeout", "2s", "watch", "--interval", "5s", NULL});
  seed_argv("map", (const char *const[]){"map", "-o", "network.svg", NULL});
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_mkseeds CORPUS_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  seeds_report();
  seeds_directive();
  seeds_operator();
  seeds_cli();
  return 0;
}
