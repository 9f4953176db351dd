/* libFuzzer: what the controller does with the messages a site agent sends
 * on its link, in the order server.c handles them. The input is the byte
 * stream from the agent, framed and decoded as link.c does. The certificate
 * says site:hubei; the registry is the shipped 31-province scenario and the
 * routing engine runs on it (no database, no sockets):
 *
 *   before Hello: Hello's claims must match (server_on_hello), then
 *     sites_on_hello and the applied route it carries (route_from_directive,
 *     route_validate) go to engine_on_hello;
 *   after Hello: LoadReport -> claim, sites_validate_report, sites_check_plausible
 *     (against the site's capacity as import-sites configures it), sites_on_report
 *     (minutes flushed as the server's tick does); DirectiveAck -> claim,
 *     engine_on_ack; Error -> logged;
 *   anything else refuses the link: the link goes down (sites_on_link_down)
 *     and the rest of the input is the agent's next link.
 *
 * Beyond "no crash", every accepted message is checked (abort() on a
 * violation, which the fuzzer reports): the registry holds exactly the
 * report's figures, the minute aggregates add up to the accepted reports,
 * the smoothed figures stay finite, text kept for the status page is
 * valid UTF-8, and an accepted applied route survives its JSON record
 * (route_to_json, route_from_json), as the directive table needs. */
#include "engine.h"
#include "err.h"
#include "frame.h"
#include "log.h"
#include "route.h"
#include "scenario.h"
#include "sites.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_SELF  "hubei"
#define FUZZ_EPOCH 7
/* 2020-01-22 13:50:00 UTC, the start of a business minute. */
#define FUZZ_T0 1579701000000LL

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sites_t base;    /* the registry as loaded, never changed */
static site_t work[64]; /* this input's registry */
static sites_t reg;     /* this input's registry: base's sites in work[] */

/* The engine's world, as a controller that does not lead yet sees it: a
 * clock that stands still, no leadership (nothing is sent), no database
 * (records are refused, as with the database client closed). */
static uint64_t fuzz_mono(void *ctx) {
  return 0;
}
static int64_t fuzz_business(void *ctx) {
  return 0;
}
static int64_t fuzz_wall(void *ctx) {
  return 0;
}
static bool fuzz_may_issue(void *ctx) {
  return false;
}
static void fuzz_directive(void *ctx, size_t site, const Nirc__Directive *d) {}
static void fuzz_reply(void *ctx, void *client, const Nirc__OperatorReply *r) {}
static void fuzz_progress(void *ctx, void *client, const Nirc__Progress *p) {}
static int fuzz_store(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg) {
  return NIRC_ECLOSED;
}
static int fuzz_store_ready(void *ctx, char *why, size_t whylen) {
  return 0;
}
static const engine_io_t fuzz_io = {
    .mono_ms = fuzz_mono,
    .now_ms = fuzz_business,
    .wall_ms = fuzz_wall,
    .may_issue = fuzz_may_issue,
    .send_directive = fuzz_directive,
    .send_reply = fuzz_reply,
    .send_progress = fuzz_progress,
    .store = fuzz_store,
    .store_ready = fuzz_store_ready,
};

typedef struct {
  engine_t *engine;
  site_t *site; /* the certificate's site */
  bool hello;   /* this link said Hello */
  int64_t now;  /* real clock of the controller */
  int64_t biz;  /* business clock */
  /* Shadow totals of accepted, readable reports, and what the registry
   * handed back or still holds for them. */
  uint64_t offered, reports, flushed_offered, flushed_reports;
} fuzz_state_t;

static FILE *fuzz_out; /* the real stderr, for what the harness itself says */

static void fuzz_check(bool ok, const char *what) {
  if (!ok) {
    fprintf(fuzz_out, "fuzz_report: invariant broken: %s\n", what);
    abort();
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_set_level(LOG_LVL_ERROR);
  /* With no database the engine logs an error for every record it cannot
   * queue, thousands a second. log.c writes to the stdio stream stderr:
   * point that at /dev/null. Sanitizer and libFuzzer reports write to file
   * descriptor 2 (or libFuzzer's own stream) and stay visible. */
  fuzz_out = stderr;
  FILE *null = fopen("/dev/null", "w");
  if (null) stderr = null;
  scenario_t sc;
  char err[512];
  if (scenario_load(NIRC_SCENARIO_FILE, &sc, err, sizeof err) != 0) {
    fprintf(fuzz_out, "fuzz_report: %s\n", err);
    abort();
  }
  sites_init(&base, 3000);
  for (size_t i = 0; i < sc.count; i++) {
    const scenario_site_t *x = &sc.sites[i];
    if (sites_add(&base, x->slug, x->name_en, x->name_zh, x->is_hub) != 0) abort();
    /* The capacity import-sites gives it: seats as the larger shift. */
    site_t *s = &base.v[base.n - 1];
    s->cap.configured = true;
    s->cap.seats = x->agents_day > x->agents_night ? x->agents_day : x->agents_night;
  }
  scenario_free(&sc);
  if (base.n > sizeof work / sizeof work[0] || !sites_find(&base, FUZZ_SELF)) abort();
  return 0;
}

static void fuzz_on_minute(void *arg, const site_t *site, const site_minute_t *m) {
  fuzz_state_t *st = arg;
  if (site != st->site) return;
  st->flushed_offered += m->offered;
  st->flushed_reports += m->reports - m->unreadable;
}

static void fuzz_check_site(fuzz_state_t *st, const Nirc__LoadReport *r) {
  const site_t *s = st->site;
  const site_report_t *l = &s->last;
  fuzz_check(s->has_report && l->offered == r->calls_offered && l->answered == r->calls_answered &&
                 l->in_queue == r->calls_in_queue && l->queue_peak == r->calls_in_queue_peak &&
                 l->logged_in == r->agents_logged_in && l->interval_ms == r->interval_ms &&
                 l->pbx_unreadable == r->pbx_unreadable,
             "the registry holds the report's figures");
  fuzz_check(memchr(l->pbx_error, '\0', sizeof l->pbx_error) && nirc_utf8_valid(l->pbx_error),
             "the PBX error kept for the status page is UTF-8 text");
  fuzz_check(st->flushed_offered + s->minute.offered == st->offered &&
                 st->flushed_reports + (s->minute.reports - s->minute.unreadable) == st->reports,
             "minute aggregates add up to the accepted reports");
  fuzz_check(isfinite(s->demand_calls) && isfinite(s->demand_secs) && isfinite(s->aht_s) &&
                 isfinite(s->wait_s) && isfinite(s->queue) && isfinite(s->sl),
             "smoothed figures are finite");
  fuzz_check(isfinite(sites_demand_cps(s, 0.01, 900.0)), "demand is finite");
}

/* server_on_hello, minus the link and the database. */
static int fuzz_hello(fuzz_state_t *st, const Nirc__Hello *h) {
  char why[256];
  if (!h->site || strcmp(h->site, FUZZ_SELF) != 0) return -1;
  if (h->protocol_version != 1) return -1;
  if (!st->engine) {
    /* Started at the first accepted Hello: nothing before it reaches the
     * engine, and its tables for 31 sites are the costliest part of a run. */
    engine_opts_t eo = {.ack_timeout_ms = 2000,
                        .max_resends = 3,
                        .verify_window_ms = 10000,
                        .sl_target = 0.8,
                        .sl_threshold_s = 20};
    if (engine_new(&fuzz_io, &reg, &eo, &st->engine) != 0 ||
        engine_load_rules(st->engine, FUZZ_EPOCH, NULL, 0, NULL, 0, NULL, 0, 0) != 0)
      abort();
  }
  sites_on_hello(st->site, st->now);
  route_t applied;
  const route_t *ap = NULL;
  if (h->applied && route_from_directive(h->applied, &applied, why, sizeof why) == 0 &&
      route_validate(&applied, why, sizeof why) == 0) {
    ap = &applied;
    /* The engine records this route (directives, audit) as JSON. */
    json_t *j = route_to_json(&applied);
    fuzz_check(j != NULL, "an accepted applied route has a JSON record");
    route_t back;
    fuzz_check(route_from_json(j, &back, why, sizeof why) == 0 && route_same(&back, &applied) &&
                   route_compare_version(&back, &applied) == 0 &&
                   strcmp(back.reason, applied.reason) == 0 &&
                   back.revert_at_ms == applied.revert_at_ms,
               "an accepted applied route reads back from its JSON record");
    json_decref(j);
  }
  engine_went_home_t went = {.at_ms = h->went_home_at_ms, .clock = h->went_home_clock};
  engine_on_hello(st->engine, (size_t)(st->site - reg.v), ap, h->route_unverified, &went);
  st->hello = true;
  return 0;
}

/* server_on_report, minus the link and the database. */
static int fuzz_report(fuzz_state_t *st, const Nirc__LoadReport *r) {
  char why[256];
  if (r->site && *r->site && strcmp(r->site, FUZZ_SELF) != 0) return -1;
  if (sites_validate_report(r, why, sizeof why) != 0) return -1;
  sites_refusal_t kind;
  if (sites_check_plausible(st->site, r, &kind, why, sizeof why) != 0) {
    fuzz_check(kind < SITES_REFUSED_COUNT && why[0], "an implausible report says why");
    return -1;
  }
  /* The agent reports every interval of business time; the controller's
   * clocks move on by as much. */
  st->now += 1000;
  st->biz += r->interval_ms;
  site_minute_t done;
  if (sites_on_report(st->site, r, st->now, st->biz, &done)) fuzz_on_minute(st, st->site, &done);
  if (!r->pbx_unreadable) {
    st->offered += r->calls_offered;
    st->reports++;
  }
  fuzz_check_site(st, r);
  sites_check_stale(&reg, st->now, NULL, NULL);
  sites_flush_minutes(&reg, st->biz, false, fuzz_on_minute, st);
  return 0;
}

static int fuzz_message(void *arg, const uint8_t *payload, size_t len) {
  fuzz_state_t *st = arg;
  Nirc__Envelope *env = NULL;
  int rc = frame_decode_envelope(payload, len, &env);
  if (rc == 0) {
    if (!st->hello) {
      rc = env->msg_case == NIRC__ENVELOPE__MSG_HELLO ? fuzz_hello(st, env->hello) : -1;
    } else {
      switch (env->msg_case) {
      case NIRC__ENVELOPE__MSG_LOAD_REPORT: rc = fuzz_report(st, env->load_report); break;
      case NIRC__ENVELOPE__MSG_DIRECTIVE_ACK: {
        const Nirc__DirectiveAck *ack = env->directive_ack;
        if (ack->site && *ack->site && strcmp(ack->site, FUZZ_SELF) != 0)
          rc = -1;
        else
          engine_on_ack(st->engine, (size_t)(st->site - reg.v), ack);
        break;
      }
      case NIRC__ENVELOPE__MSG_ERROR: break;
      default: rc = -1; break;
      }
    }
    frame_envelope_free(env);
  }
  if (rc != 0 && st->hello) {
    /* Refused: the link goes; what follows is the agent's next link. */
    sites_on_link_down(st->site, st->now);
    engine_on_link_down(st->engine, (size_t)(st->site - reg.v));
    st->hello = false;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  memcpy(work, base.v, base.n * sizeof work[0]);
  reg = base;
  reg.v = work;
  reg.cap = base.n;
  fuzz_state_t st = {.site = sites_find(&reg, FUZZ_SELF), .now = FUZZ_T0, .biz = FUZZ_T0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  frame_decoder_feed(&d, data, size, fuzz_message, &st);
  frame_decoder_free(&d);
  engine_free(st.engine); /* NULL when no Hello was accepted */
  return 0;
}
