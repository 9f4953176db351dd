/* libFuzzer: what a site agent (hubei) does with the messages its
 * controller sends, as agent.c handles them. The input is the byte stream
 * from the controller, framed and decoded as link.c does:
 *
 *   Welcome raises the newest epoch seen (agent_on_welcome);
 *   Directive is decided by agent_check_directive against the agent's
 *     state in memory: acknowledged at once, applied, or waited for;
 *   Error is logged; anything else closes the link (the rest of the input
 *     is the next link, the agent's state carries over).
 *
 * The adapter is modelled as agent_apply_start and agent_on_applied drive
 * it: one apply in flight, the newest request queued behind it (an older
 * queued directive is acknowledged REJECTED as superseded). An apply
 * succeeds after 0-3 more messages have been handled: the low bits of the
 * directive's issued_at_ms, which the agent does not use, say how many,
 * so the fuzzer chooses how slow the PBX is. What
 * the agent promises is checked (abort() on a violation, which the fuzzer
 * reports): the routes it applies are valid and their (epoch, version)
 * only moves forward, a directive it acknowledged as rejected is never
 * applied after all, and every applied route survives the state file's
 * JSON (route_to_json, route_from_json) unchanged, as fail-static needs. */
#include "agent.h"
#include "err.h"
#include "frame.h"
#include "log.h"
#include "route.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_SELF       "hubei"
#define FUZZ_MAX_REJECT 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  agent_t a;
  unsigned in_flight_left; /* messages the apply in flight still takes */
  unsigned pending_delay;  /* and the one queued behind it, once started */
  /* (epoch, version) the agent acknowledged as rejected while queued. */
  uint64_t rejected[FUZZ_MAX_REJECT][2];
  unsigned n_rejected;
} fuzz_agent_t;

static fuzz_agent_t fa;

static void fuzz_check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_directive: invariant broken: %s\n", what);
    abort();
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_set_level(LOG_LVL_ERROR);
  return 0;
}

static void fuzz_rejected(fuzz_agent_t *f, const route_t *r) {
  if (f->n_rejected < FUZZ_MAX_REJECT) {
    f->rejected[f->n_rejected][0] = r->epoch;
    f->rejected[f->n_rejected][1] = r->version;
    f->n_rejected++;
  }
}

/* agent_apply_start for a directive; the PBX takes `delay` messages. */
static void fuzz_apply_start(fuzz_agent_t *f, const route_t *r, unsigned delay) {
  agent_t *a = &f->a;
  if (a->applying) {
    if (a->pending && a->pending_purpose == APPLY_DIRECTIVE)
      fuzz_rejected(f, &a->pending_route); /* "superseded by a newer directive" */
    a->pending = true;
    a->pending_route = *r;
    a->pending_purpose = APPLY_DIRECTIVE;
    f->pending_delay = delay;
    return;
  }
  a->applying = true;
  a->applying_route = *r;
  a->applying_purpose = APPLY_DIRECTIVE;
  f->in_flight_left = delay;
}

/* The state file's record of `r`, read back. */
static void fuzz_check_persisted(const route_t *r) {
  char why[256];
  json_t *j = route_to_json(r);
  fuzz_check(j != NULL, "an applied route has a state-file record");
  char *text = json_dumps(j, JSON_INDENT(2));
  json_decref(j);
  fuzz_check(text != NULL, "an applied route's record can be written");
  json_error_t je;
  j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  free(text);
  fuzz_check(j != NULL, "an applied route's record can be read");
  route_t back;
  fuzz_check(route_from_json(j, &back, why, sizeof why) == 0 && route_same(&back, r) &&
                 route_compare_version(&back, r) == 0 && strcmp(back.reason, r->reason) == 0 &&
                 back.revert_at_ms == r->revert_at_ms,
             "an applied route reads back unchanged from the state file");
  json_decref(j);
}

/* agent_on_applied when the PBX took the route and the state file was
 * written. */
static void fuzz_applied(fuzz_agent_t *f) {
  agent_t *a = &f->a;
  route_t r = a->applying_route;
  char why[256];
  a->applying = false;
  fuzz_check(route_validate(&r, why, sizeof why) == 0, "only valid routes are applied");
  fuzz_check(route_compare_version(&r, &a->applied) > 0,
             "the applied (epoch, version) only moves forward");
  for (unsigned k = 0; k < f->n_rejected; k++)
    fuzz_check(f->rejected[k][0] != r.epoch || f->rejected[k][1] != r.version,
               "a directive acknowledged as rejected is not applied");
  fuzz_check_persisted(&r);
  a->applied = r;
  if (r.epoch > a->max_epoch) a->max_epoch = r.epoch;
  if (a->pending) {
    a->pending = false;
    fuzz_apply_start(f, &a->pending_route, f->pending_delay);
  }
}

static int fuzz_message(void *arg, const uint8_t *payload, size_t len) {
  fuzz_agent_t *f = arg;
  agent_t *a = &f->a;
  if (a->applying && f->in_flight_left-- == 0) fuzz_applied(f);
  Nirc__Envelope *env = NULL;
  if (frame_decode_envelope(payload, len, &env) != 0) return 0; /* the link closes */
  switch (env->msg_case) {
  case NIRC__ENVELOPE__MSG_WELCOME:
    if (env->welcome->epoch > a->max_epoch) a->max_epoch = env->welcome->epoch;
    break;
  case NIRC__ENVELOPE__MSG_DIRECTIVE: {
    route_t r;
    Nirc__AckResult res;
    char why[256] = "";
    switch (agent_check_directive(a, env->directive, &r, &res, why, sizeof why)) {
    case AGENT_DIRECTIVE_APPLY:
      fuzz_apply_start(f, &r, (unsigned)(env->directive->issued_at_ms & 3));
      break;
    case AGENT_DIRECTIVE_WAIT:
      fuzz_check(a->applying, "only a route in flight is waited for");
      break;
    case AGENT_DIRECTIVE_ACK:
      fuzz_check(why[0] != '\0', "every immediate acknowledgement says why");
      if (res == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) {
        fuzz_check(route_compare_version(&r, &a->applied) == 0 && route_same(&r, &a->applied),
                   "APPLIED at once only for the route already applied");
        if (env->directive->epoch > a->max_epoch) a->max_epoch = env->directive->epoch;
      }
      break;
    }
    break;
  }
  default: break; /* Error is logged; anything else closes the link */
  }
  frame_envelope_free(env);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  memset(&fa, 0, sizeof fa);
  nirc_strlcpy_utf8(fa.a.slug, FUZZ_SELF, sizeof fa.a.slug);
  route_home(&fa.a.applied, FUZZ_SELF);
  fa.a.route_state = AGENT_ROUTE_KNOWN; /* running, home applied */
  frame_decoder_t d;
  frame_decoder_init(&d);
  frame_decoder_feed(&d, data, size, fuzz_message, &fa);
  frame_decoder_free(&d);
  /* The PBX answers whatever is still in flight. */
  while (fa.a.applying)
    fuzz_applied(&fa);
  return 0;
}
