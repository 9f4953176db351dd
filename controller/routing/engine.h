/* engine: the routing engine of the running controller.
 *
 * It owns the rules in memory (cutovers, schedules, overflow rules), runs
 * the planner on every tick and event, and turns the difference between
 * the plan and what each site has acknowledged into directives:
 *
 *   plan (desired) --wave gating--> target --directive--> agent --ack--> acked
 *
 * Moves away from home go in waves per rule (a schedule's wave_size, all at
 * once for a cutover); the next wave of a rule starts only when the
 * previous one is verified: every source acknowledged and its hubs stayed
 * online for the verification window. Returns home are never held back.
 * A directive not acknowledged within ack_timeout is resent (same epoch and
 * version: agents treat it idempotently) up to max_resends times, then
 * marked failed and alarmed; a source whose move failed is rolled back home
 * and excluded from that rule until the rule changes.
 *
 * Ownership: engine_t is owned by the server; it borrows the server's
 * sites registry, database client and connections. */
#ifndef NIRC_ENGINE_H
#define NIRC_ENGINE_H

#include "planner.h"
#include "route.h"
#include "rules.h"
#include "scenario.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct server server_t;
typedef struct conn conn_t;
typedef struct engine engine_t;

typedef enum {
  DIR_IDLE = 0, /* target acknowledged (or nothing sent yet) */
  DIR_PENDING,  /* sent, waiting for the ack */
  DIR_FAILED,   /* rejected, failed or never acknowledged */
} dir_state_t;

/* Per-site directive bookkeeping (index = site index in the registry). */
typedef struct {
  route_t target; /* what the site should route by; version = last sent */
  route_t acked;  /* what it acknowledged (or reported in Hello) */
  bool known;     /* acked is known (the site said Hello this epoch) */
  dir_state_t state;
  unsigned resends;
  uint64_t sent_mono_ms; /* first send of this version */
  uint64_t last_send_mono_ms;
  rule_kind_t kind; /* rule behind the target */
  uint64_t rule_id;
  uint64_t excluded_rule; /* a failed move of this rule was rolled back (0: none) */
  rule_kind_t excluded_kind;
} site_dir_t;

typedef struct {
  uint32_t ack_timeout_ms;   /* default 2000 */
  uint32_t max_resends;      /* default 3 */
  uint32_t verify_window_ms; /* default 10000 */
  double sl_target;          /* default 0.80 */
  double sl_threshold_s;     /* default 20 */
  /* Expected demand by hour for scheduled moves (borrowed; may be NULL:
   * live demand is used). The scenario file stands in for load history. */
  const scenario_t *forecast;
} engine_opts_t;

/* Counters for the metrics endpoint (monotonic since start). */
#define ENGINE_LATENCY_BUCKETS 12
typedef struct {
  uint64_t directives_sent, resends, timeouts, rollbacks;
  uint64_t acks_applied, acks_rejected, acks_failed;
  /* Directive sent -> ack, cumulative histogram: le 1,2,5,10,20,50,100,200,
   * 500,1000,2000 ms and +Inf. */
  uint64_t latency_bucket[ENGINE_LATENCY_BUCKETS];
  double latency_sum_ms;
  uint64_t latency_count;
} engine_stats_t;
extern const double engine_latency_le_ms[ENGINE_LATENCY_BUCKETS - 1];
const engine_stats_t *engine_stats(const engine_t *e);

int engine_new(server_t *srv, const engine_opts_t *opts, engine_t **out);
void engine_free(engine_t *e);

/* Rules loaded when this instance becomes leader, after srv->epoch is set
 * (copied). */
int engine_load_rules(engine_t *e, const cutover_t *c, size_t nc, const schedule_t *s, size_t ns,
                      const overflow_rule_t *o, size_t no, uint64_t max_rule_id);

/* This instance just became leader: plan nothing until every site is back
 * or settle_ms has passed (see engine_settling in engine.c). */
void engine_start_leading(engine_t *e, uint32_t settle_ms);

/* An audit record from outside the engine (leadership changes). */
void engine_note(engine_t *e, const char *actor, const char *action, const char *target,
                 const char *why);

/* Events from the server. */
void engine_on_hello(engine_t *e, size_t site_index, const route_t *applied_or_null);
void engine_on_ack(engine_t *e, size_t site_index, const Nirc__DirectiveAck *ack);
void engine_on_link_down(engine_t *e, size_t site_index);
/* Called on every server tick: re-plan, gate waves, resend, time out. */
void engine_tick(engine_t *e);

/* Operator requests (ops.c dispatches here); each sends its reply on `c`,
 * immediately or when the move completes. */
void engine_op_cutover(engine_t *e, conn_t *c, uint64_t request_id,
                       const Nirc__CutoverRequest *req);
void engine_op_restore(engine_t *e, conn_t *c, uint64_t request_id,
                       const Nirc__RestoreRequest *req);
void engine_op_plan(engine_t *e, conn_t *c, uint64_t request_id, const Nirc__PlanRequest *req);
void engine_op_schedule(engine_t *e, conn_t *c, uint64_t request_id,
                        const Nirc__ScheduleRequest *req);
void engine_op_overflow(engine_t *e, conn_t *c, uint64_t request_id,
                        const Nirc__OverflowRequest *req);
/* The first step of those requests, pure so the fuzzers reach it: a
 * request's rule as the wire gives it, copied into the rule type with its
 * sizes checked (not yet validated against the sites: rules_validate_*
 * does that). 0, or NIRC_EINVAL with a reason for the operator. */
int engine_cutover_from_request(const Nirc__CutoverRequest *req, const char *operator_name,
                                int64_t now_ms, cutover_t *out, char *err, size_t errlen);
int engine_schedule_from_spec(const Nirc__ScheduleSpec *sp, schedule_t *out, char *err,
                              size_t errlen);
int engine_overflow_from_spec(const Nirc__OverflowSpec *sp, overflow_rule_t *out, char *err,
                              size_t errlen);
/* The connection is going away: forget waiting requests bound to it. */
void engine_on_conn_closed(engine_t *e, conn_t *c);

/* For status: the site's acknowledged route and active rule text. */
const site_dir_t *engine_site_dir(const engine_t *e, size_t site_index);
const char *engine_active_reason(const engine_t *e, size_t site_index);

#endif
