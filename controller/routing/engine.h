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
 * The engine is sans-I/O (as nghttp2's session is): it never touches a
 * socket, a timer or the database. Events come in as calls (hello, ack,
 * link down, tick, operator requests, leadership), time comes in through
 * engine_io_t's clocks, and every decision goes out through engine_io_t:
 * directives to send, replies and progress lines for operators, records
 * to store exactly once. net/server.c implements engine_io_t over the
 * links and the store (store/records.c); tests/unit/test_engine.c
 * implements it with arrays and drives thousands of steps without a loop.
 *
 * Ownership: engine_t is owned by its creator (the server). It borrows the
 * sites registry (which must outlive it) and copies engine_io_t. The
 * registry may grow while the engine runs (sites added live): the engine
 * sees sites only up to its own count, and the owner calls
 * engine_sites_grown after every sites_add. Sites are never taken out of
 * the registry (a removed one keeps its index, site_life_t), so indexes
 * never shift. Operator clients are opaque pointers the engine
 * never dereferences; the caller says when one goes away
 * (engine_on_client_closed). */
#ifndef NIRC_ENGINE_H
#define NIRC_ENGINE_H

#include "alarm.h"
#include "forecast.h"
#include "planner.h"
#include "route.h"
#include "rules.h"
#include "scenario.h"
#include "sites.h"
#include "staffing.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct engine engine_t;

typedef enum {
  DIR_IDLE = 0, /* target acknowledged (or nothing sent yet) */
  DIR_PENDING,  /* sent, waiting for the ack */
  DIR_FAILED,   /* rejected, failed or never acknowledged */
} dir_state_t;

/* A site's agent going home on its own before its move's end on this
 * controller's clock (engine_on_agent_reverted, case early): each such
 * return is audited (agent-return) and a rule still in force moves the
 * site again, so an agent whose clock keeps running ahead would bounce
 * its calls between hub and home for as long as the rule lasts. Counted
 * per site (the cause is its agent's clock, whatever the rule), and held
 * once repeated (engine_returns_count). */
typedef enum {
  ENGINE_RETURNS_NONE = 0, /* none counted (or readmitted since) */
  ENGINE_RETURNS_COUNTING, /* n of them since first_mono, fewer than ENGINE_RETURNS_HOLD */
  /* ENGINE_RETURNS_HOLD of them within ENGINE_RETURNS_WINDOW_MS: no move
   * with an end (revert_at) is sent to it until an operator readmits it
   * or names it in a cutover (engine_returns_release) */
  ENGINE_RETURNS_HELD,
} engine_returns_state_t;
const char *engine_returns_state_name(engine_returns_state_t s);

/* How an early return's earliness was measured (engine_early_t). */
typedef enum {
  /* Loaded with a hold from the database, which keeps the figure only
   * (route_return_holds.early_ms): as the leader that held it measured. */
  ENGINE_EARLY_NOT_KEPT = 0,
  ENGINE_EARLY_NO_END,   /* the move had no revert_at: ms 0 */
  ENGINE_EARLY_AT_LEAST, /* revert_at minus when the agent's word arrived here: it went no later */
  /* revert_at minus the agent's own time of its return, believed
   * (engine_home_at_judge): its reading of this controller's clock */
  ENGINE_EARLY_AGENT,
} engine_early_how_t;
const char *engine_early_how_name(engine_early_how_t h);

/* How long before its move's revert_at an agent went home on its own,
 * and how that was measured (`clock`: the agent's reading, with
 * ENGINE_EARLY_AGENT; `elapsed`: its time was this controller's now less
 * the agent's own count since, engine_went_home_t). */
typedef struct {
  int64_t ms;
  engine_early_how_t how;
  Nirc__AgentClock clock;
  bool elapsed;
} engine_early_t;

typedef struct {
  engine_returns_state_t state;
  unsigned n;                     /* early returns counted since first_mono */
  uint64_t first_mono, last_mono; /* monotonic ms */
  /* The rule whose move it left, of the last return whose rule is known
   * here (RULE_NONE: none), and how early the last came (early.ms 0: the
   * move had no revert_at; the database keeps early.ms only). */
  rule_kind_t kind;
  uint64_t rule_id;
  engine_early_t early;
} engine_returns_t;

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
  /* The rule the directive `acked` names (its epoch and version) was sent
   * under, kept while the site routes by it (engine_ack.c): the rule an
   * agent's own return from it ended, whatever rule moves the site since
   * (`kind` is the target's). RULE_NONE: not known here (a route no
   * directive of this leader carried and the database does not name). */
  rule_kind_t acked_kind;
  uint64_t acked_rule_id;
  uint64_t excluded_rule; /* a failed move of this rule was rolled back (0: none) */
  uint64_t ack_stored;    /* newest version of target.epoch whose ack was stored */
  /* The last change of target changed only whom the site answers for
   * (ROUTE_CAUSE_SENDERS): a hub's part of a move, not its own calls. */
  bool senders_only;
  /* Sent home as no rule's (ROUTE_CAUSE_NO_RULE): when (monotonic ms, 0:
   * never) and the older leader's route, for the routing alarm that tells
   * the operator a change of that leader was undone. */
  uint64_t no_rule_mono, no_rule_epoch;
  uint64_t no_rule_version; /* of this epoch's directive that sends it home */
  char no_rule_hub[32];
  /* Such an alarm of an earlier leader was loaded active: its stored
   * words are those it was raised with, reworded here by what this
   * leader knows of the site (engine_alarms.c). */
  bool no_rule_adopted;
  char excluded_why[200]; /* while excluded: which rule, why, and how to readmit */
  rule_kind_t excluded_kind;
  /* Why the engine holds, waits or refuses a move of this site now ("":
   * nothing held back): a held placement, a waiting return, a hub in its
   * grace period, a refusal. Shown by status and `nircctl site`. */
  char note[256];
  char failed_why[160]; /* the last directive failure, for its alarm */
  /* As a source: how its last wave was verified (engine_verify.c), for
   * status; "" when it has had no wave since it last went home. */
  char verify[256];
  /* Its agent has not confirmed `acked` at the PBX (Hello.route_unconfirmed,
   * PbxEvent ROUTE_UNCONFIRMED): status shows the route as unknown and a
   * directive alarm stands, until the agent confirms it (PbxEvent
   * ROUTE_CONFIRMED) or acknowledges a directive applied. */
  bool route_unknown;
  char route_unknown_why[200];
  /* When it went unknown, if its agent reported that late (a PbxEvent
   * ROUTE_UNCONFIRMED queued while its link was down): real and business
   * ms, and the words saying so (server_pbx_seen_words). 0 and "": heard
   * on time, its directive alarm is raised when first observed. */
  int64_t route_unknown_wall_ms, route_unknown_business_ms;
  char route_unknown_when[160];
  /* When the newest word on whether its route is known was true (real
   * ms, placed by its agent's count): a late report older than it is
   * history (engine_on_route_known_late). 0: none yet. */
  int64_t route_said_wall_ms;
  /* Its last applied acknowledgement, its agent's Hello or ROUTE_CONFIRMED
   * said the PBX was not read back (DirectiveAck.unverified,
   * Hello.route_unverified, PbxEvent.unverified: an adapter without a
   * read-back): the route is what the PBX accepted, not what it was seen
   * to do. Changed by the next of these, so a new leader learns it from
   * the Hello (engine_on_route_unverified). */
  bool unverified;
  engine_returns_t returns; /* its agent's early returns home */
} site_dir_t;

/* Why a site's route changed: every change is counted by cause
 * (nirc_route_changes_total) and audited with it. */
typedef enum {
  ROUTE_CAUSE_CUTOVER = 0,  /* a cutover moved it (or changed its share) */
  ROUTE_CAUSE_SCHEDULE,     /* a schedule moved it (a wave) */
  ROUTE_CAUSE_OVERFLOW,     /* an overflow rule engaged or ramped */
  ROUTE_CAUSE_CUTOVER_END,  /* home: its cutover was restored or expired */
  ROUTE_CAUSE_SCHEDULE_END, /* home: its schedule window ended (or the rule changed) */
  ROUTE_CAUSE_OVERFLOW_END, /* home: its overflow released */
  ROUTE_CAUSE_CAPACITY,     /* home or another hub: its hub lacks capacity */
  ROUTE_CAUSE_HUB_LOST,     /* re-homed: its hub was lost past the grace, or moved away */
  ROUTE_CAUSE_HUB_RETURN,   /* back to a recovered hub after its verification window */
  ROUTE_CAUSE_HUB_SWITCH,   /* another hub of its rule, for any other reason */
  ROUTE_CAUSE_ROLLBACK,     /* home after its move failed */
  ROUTE_CAUSE_SENDERS,      /* a hub: the sites it answers for changed */
  /* home: a route of an older leader (learnt from the agent) that no rule
   * in the database explains, as after a change that leader made during a
   * database outage and kept in its journal */
  ROUTE_CAUSE_NO_RULE,
  /* home: its agent went home on its own at its revert_at before the
   * rule's end on this controller's clock (the agent's clock ahead); the
   * rule did not end, and a rule still in force moves it again */
  ROUTE_CAUSE_AGENT_RETURN,
  ROUTE_CAUSE_COUNT,
} route_cause_t;
const char *engine_route_cause_name(route_cause_t c);

typedef struct {
  uint32_t ack_timeout_ms;   /* default 2000 */
  uint32_t max_resends;      /* default 3 */
  uint32_t verify_window_ms; /* default 10000 */
  double sl_target;          /* default 0.80 */
  double sl_threshold_s;     /* default 20 */
  /* A hub lost (not online) for less than hub_grace_ms keeps the sources
   * it answers; after a loss it takes sources again only once healthy for
   * hub_return_ms, doubled for each further loss within the hour. */
  uint32_t hub_grace_ms;  /* default 15000 */
  uint32_t hub_return_ms; /* default 60000 */
  /* Capacity damping (planner.h, Damping): keep and enter margins in
   * service-level points, hold and re-entry waits in business seconds. */
  double keep_margin, enter_margin; /* default 0.05 and 0.05 */
  uint32_t hold_s, reentry_s;       /* default 60 and 120 */
  /* An alarm whose condition has not been seen for this long is cleared
   * (alarm.h): a condition that flickers within it stays one alarm. */
  uint32_t alarm_clear_ms; /* default 30000 */
  /* Expected demand by hour for scheduled moves (borrowed; may be NULL:
   * live demand is used). The scenario file is the fallback when the load
   * history (engine_set_history) does not cover a site and half-hour. */
  const scenario_t *forecast;
  /* The zone of the business clock the history's local dates and
   * half-hours are in (IANA; "" = UTC): [routing] forecast_tz. */
  char forecast_tz[64];
  /* The operations room's zone (IANA; "": forecast_tz, else UTC): [http]
   * tz. The times in the engine's own words (an expiry, a window's end)
   * are said in it, and name it: nircctl shows the rest in its own. */
  char ops_tz[64];
  /* The business clock's speed ([clock] speed; 0: 1): an entry stamped
   * with an agent's time of an event (engine_went_home_t) gets its real
   * time from the business time elapsed since. */
  double clock_speed;
  /* This controller's node ([controller] node; "": unnamed). Replies true
   * only of this controller name it, as they may be read through another
   * (a standby relays nircctl to the leader): its outage journal. */
  char node[64];
} engine_opts_t;

/* ---- the engine's interface to the world (implemented by its owner) ---- */

/* What the engine asks to be stored exactly once. One flat struct rather
 * than a union: each kind names the fields it uses, the rest are zero.
 * Every pointer is borrowed for the duration of the store call only. */
typedef enum {
  ENGINE_REC_AUDIT = 0,       /* audit_log: actor, action, target, detail (JSON text) */
  ENGINE_REC_DIRECTIVE,       /* directives: site, route, rule_kind, rule_id */
  ENGINE_REC_ACK,             /* directive_acks: site, epoch, version, result, detail, latency_ms */
  ENGINE_REC_EVENT,           /* link_events of a site: site, peer, action (the event), detail */
  ENGINE_REC_CUTOVER_NEW,     /* cutovers: cutover */
  ENGINE_REC_CUTOVER_SOURCES, /* a cutover's remaining sources: cutover */
  ENGINE_REC_CUTOVER_END,     /* a cutover ended: id, cutover_state, actor (who ended it) */
  ENGINE_REC_CUTOVER_AMEND,   /* a cutover's hubs, share and expiry changed: cutover */
  ENGINE_REC_SCHEDULE_NEW,    /* schedules: schedule, actor (who) */
  ENGINE_REC_SCHEDULE_REMOVE, /* id */
  ENGINE_REC_SCHEDULE_ENABLE, /* id, enabled */
  ENGINE_REC_OVERFLOW_NEW,    /* overflow_rules: overflow, actor (who) */
  ENGINE_REC_OVERFLOW_REMOVE, /* id */
  ENGINE_REC_OVERFLOW_STATE,  /* an overflow engaged, released or changed its share: id,
                                 enabled (engaged), since_ms, permille */
  ENGINE_REC_EXCLUDE,         /* a site kept out of the rules: site, rule_kind, rule_id, detail */
  ENGINE_REC_READMIT,         /* its exclusion ended: site, actor (who), detail (why) */
  ENGINE_REC_HOLD,            /* a source's capacity damping state changed: site, hold */
  ENGINE_REC_ALARM,           /* an alarm raised, cleared or acknowledged: alarm, alarm_event */
  ENGINE_REC_CAPACITY,        /* a site's configured capacity changed: site, capacity */
  ENGINE_REC_SITE,            /* a site added, changed or removed: site, site_rec */
  /* The forecast a schedule's window is planned on, for one site: id (the
   * schedule), site, win_from_ms/win_to_ms (the window), win_first_ms
   * (its first 30-minute interval), detail (calls per interval as an array
   * literal, NULL where not forecast). Kept once per (schedule, window,
   * site): a second record of the same window is ignored. */
  ENGINE_REC_FORECAST,
  /* A window ended: compare its recorded forecasts with the load minutes
   * and keep each site's accuracy (WAPE): id, win_from_ms, win_to_ms. */
  ENGINE_REC_FORECAST_CLOSE,
  /* A site held home after its agent's early returns (site_dir_t.returns),
   * or its count while held: site, returns. Kept for the next leader. */
  ENGINE_REC_RETURNS_HOLD,
  /* That hold ended: site, actor (who), detail (why). */
  ENGINE_REC_RETURNS_RELEASE,
  /* A schedule changed in place (nircctl schedule set): schedule (its
   * row's id, with every field as it is now), actor (who). */
  ENGINE_REC_SCHEDULE_CHANGE,
  /* An overflow rule changed in place (nircctl overflow set): overflow
   * (its row's id, every field as it is now), actor (who). Its engaged
   * state is not touched: ENGINE_REC_OVERFLOW_STATE keeps that. */
  ENGINE_REC_OVERFLOW_CHANGE,
} engine_rec_kind_t;

/* A sites row as nircctl site writes it (borrowed, like the record). */
typedef struct {
  const char *slug, *name_en, *name_zh;
  const char *city_en; /* NULL: keep the stored one ("" for a new site) */
  bool is_hub;
  double lat, lon;
  const capacity_t *cap;
  bool removed;            /* a soft delete: removed_at and removed_by, the row stays */
  int64_t removed_wall_ms; /* removed: when (real clock) */
  const char *removed_by;
} engine_site_rec_t;

typedef struct {
  engine_rec_kind_t kind;
  int64_t at_ms;   /* business time the record was made */
  int64_t wall_ms; /* real time it was made: when the event happened */
  /* Set by the caller: the business time the event happened, when an
   * agent's word says it was earlier than the record (engine_went_home_t);
   * at_ms and wall_ms are then that time. 0: when the record is made. */
  int64_t happened_ms;
  const char *site;
  const char *actor, *action, *target, *detail;
  const route_t *route;
  rule_kind_t rule_kind;
  uint64_t rule_id;
  uint64_t epoch, version;
  const char *result;
  int64_t latency_ms; /* < 0: none */
  const char *peer;
  const cutover_t *cutover;
  cutover_state_t cutover_state;
  const schedule_t *schedule;
  const overflow_rule_t *overflow;
  uint64_t id;
  bool enabled;
  int64_t since_ms;
  uint32_t permille;
  const planner_hold_t *hold;
  const engine_returns_t *returns;
  const alarm_t *alarm;
  alarm_event_t alarm_event;
  const capacity_t *capacity;
  const engine_site_rec_t *site_rec;
  int64_t win_from_ms, win_to_ms, win_first_ms;
  /* The epoch of the leadership that made the record (set by the engine):
   * rule state is written only while no newer leader exists (store.c). */
  uint64_t leader_epoch;
} engine_rec_t;

/* Runs once per accepted record: err 0 when it is durable (msg may say
 * "journaled" or "already applied"), or a negative NIRC_E* code with msg. */
typedef void (*engine_stored_cb)(void *arg, int err, const char *msg);

typedef struct {
  void *ctx; /* handed back to every callback */
  /* Monotonic milliseconds (timeouts, waves) and business time (rules,
   * expiry, records; accelerated in the demo). */
  uint64_t (*mono_ms)(void *ctx);
  int64_t (*now_ms)(void *ctx);
  /* Real (wall-clock) time, stamped on records as the time of the event. */
  int64_t (*wall_ms)(void *ctx);
  /* True while directives may be issued (leadership confirmed). Checked
   * before every send: the last line of the leadership gate. */
  bool (*may_issue)(void *ctx);
  /* Send to the site's live link (only called while its site_t.conn is
   * set). The message is borrowed for the call. */
  void (*send_directive)(void *ctx, size_t site_index, const Nirc__Directive *d);
  /* Send to an operator client (never called with NULL). */
  void (*send_reply)(void *ctx, void *client, const Nirc__OperatorReply *rep);
  void (*send_progress)(void *ctx, void *client, const Nirc__Progress *p);
  /* Store a record exactly once. 0 when accepted (done, if given, runs
   * later), or a negative NIRC_E* code: not accepted, done never runs. */
  int (*store)(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg);
  /* Whether records can be made durable now: 0, or a negative NIRC_E*
   * code and, in why, the cause and the fix for the operator. Asked
   * before every operator change, which is refused (nothing changed)
   * when the answer is no. */
  int (*store_ready)(void *ctx, char *why, size_t whylen);
  /* An alarm was raised, cleared or acknowledged (after its record was
   * handed to store): the owner logs it and notifies (webhooks). May be
   * NULL. The alarm is borrowed for the call. */
  void (*on_alarm)(void *ctx, alarm_event_t ev, const alarm_t *a);
} engine_io_t;

/* One operator request as the engine sees it (borrowed for the call;
 * the engine copies what it keeps). */
typedef struct {
  void *client;              /* opaque: the owner's handle for the operator link */
  uint64_t request_id;       /* echoed in the reply */
  const char *operator_name; /* from the certificate, for the audit trail */
  const char *label;         /* how logs name the link */
  /* A dry run (--dry-run): it writes nothing, not even the audit entry
   * of its refusal (engine_refuse), so that asking what a change would do
   * never touches the database or the outage journal. */
  bool dry_run;
} engine_req_t;

/* What one acknowledgement may add to the record: its detail (agent or PBX
 * text) is cut to this many bytes before it is stored. */
#define ENGINE_ACK_DETAIL_MAX 256

/* Counters for the metrics endpoint (monotonic since start). */
#define ENGINE_LATENCY_BUCKETS 12
typedef struct {
  uint64_t directives_sent, resends, timeouts, rollbacks;
  uint64_t acks_applied, acks_rejected, acks_failed;
  /* Acks not stored: for a directive this leader never sent (other epoch,
   * a version not yet sent) or one already acknowledged. */
  uint64_t acks_refused;
  /* Plans computed: on a tick only when an input changed, else once a
   * second (engine_tick), and on every operator change. */
  uint64_t plans;
  /* Directive sent -> ack, cumulative histogram: le 1,2,5,10,20,50,100,200,
   * 500,1000,2000 ms and +Inf. */
  uint64_t latency_bucket[ENGINE_LATENCY_BUCKETS];
  double latency_sum_ms;
  uint64_t latency_count;
} engine_stats_t;
extern const double engine_latency_le_ms[ENGINE_LATENCY_BUCKETS - 1];
const engine_stats_t *engine_stats(const engine_t *e);

/* `sites` is borrowed (see Ownership above); `io` is copied. */
int engine_new(const engine_io_t *io, sites_t *sites, const engine_opts_t *opts, engine_t **out);
/* Only once every store callback has run (or will never run). */
void engine_free(engine_t *e);
/* The registry grew (sites_add): the engine takes the new sites in as
 * home-routed, never seen. 0, or NIRC_ENOMEM (the engine then still works
 * on the sites it had; call again). */
int engine_sites_grown(engine_t *e);
/* A site changed its place in the configuration (removed, or added again
 * after removal): its directive bookkeeping, hub gate and damping state
 * start afresh, routing home. The caller has checked that nothing routes
 * to or from it (engine_site_in_use). */
void engine_site_reset(engine_t *e, size_t site_index);
/* What still involves site i, for people: "routes to shaanxi (cutover 3);
 * is a hub of schedule 'night'; ..." into why. False when nothing does (it
 * may be removed, or lose its hub role when hub_only). */
bool engine_site_in_use(engine_t *e, size_t site_index, bool hub_only, char *why, size_t len);
/* nircctl site add|set|remove (engine_sites.c): validated, refused while in
 * use, stored exactly once with its audit entry, answered when durable. */
void engine_op_site_change(engine_t *e, const engine_req_t *rq, const Nirc__SiteChangeRequest *req);

/* Rules loaded when this instance becomes leader of `epoch` (copied).
 * Directives carry that epoch from now on. */
int engine_load_rules(engine_t *e, uint64_t epoch, const cutover_t *c, size_t nc,
                      const schedule_t *s, size_t ns, const overflow_rule_t *o, size_t no,
                      uint64_t max_rule_id);
/* Overflow engagement as the store keeps it (matched by rule_id; copied;
 * states of rules not loaded are ignored). Loaded after the rules. */
void engine_load_overflow_state(engine_t *e, const planner_overflow_state_t *st, size_t n);

/* A site kept out of the rules after a failed move was rolled back, as
 * the store keeps it for the next leader. */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  rule_kind_t rule_kind;
  uint64_t rule_id;
  char reason[128]; /* the failure, as stored */
} engine_exclusion_t;

/* Exclusions in force, loaded with the rules by a new leader (copied;
 * unknown sites are ignored). */
void engine_load_exclusions(engine_t *e, const engine_exclusion_t *x, size_t n);

/* A source's capacity damping state as the store keeps it (route_holds). */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  planner_hold_t hold;
} engine_hold_t;
/* Loaded with the rules by a new leader (copied; unknown sites ignored),
 * so a source waiting to re-enter a hub still waits and a held placement
 * keeps its hold. */
void engine_load_holds(engine_t *e, const engine_hold_t *h, size_t n);

/* A site held home after its agent's early returns (engine_returns_t,
 * ENGINE_RETURNS_HELD), as the store keeps it (route_return_holds): the
 * hold is the controller's word to the operator ("held home until
 * readmitted"), so a new leader keeps it rather than counting afresh
 * (which would bounce the site's calls three more times). */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  unsigned returns; /* early returns counted */
  uint64_t span_ms; /* from the first counted to the last */
  rule_kind_t rule_kind;
  uint64_t rule_id;
  int64_t early_ms; /* the last one's, before its revert_at (0: none) */
} engine_return_hold_t;
/* Loaded with the rules by a new leader (copied; unknown sites ignored):
 * each such site is held, as at the leader that held it. */
void engine_load_return_holds(engine_t *e, const engine_return_hold_t *h, size_t n);

/* A hub's recent losses as the store keeps them (link_events hub_lost and
 * hub_verified, real time): a hub lost and not verified since is not
 * trusted by a new leader either until healthy for its return window, and
 * the count of losses in the hour keeps the window's backoff. */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  int64_t last_lost_wall_ms; /* 0: none */
  bool lost;                 /* its latest such event is a loss: not verified since */
  unsigned losses_in_hour;   /* in the hour up to the last loss */
} engine_hub_history_t;
/* Loaded before engine_start_leading (copied; unknown sites ignored). */
void engine_load_hub_history(engine_t *e, const engine_hub_history_t *h, size_t n);
/* A site's newest directive under a rule (a move away) in the database
 * when this leader took over (store/admin.c). If it is the newest of all,
 * sent with a revert_at, and the site's agent says at its first Hello
 * that it went home by that revert_at on its own, no controller recorded
 * the return (the one that sent it did not run then): this leader does,
 * late (engine_late_revert), unless the database already has its
 * cutover's expiry entry. A site still routing by it is away under a
 * rule the database has: its end is that rule's (engine_prior_rule). */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint64_t epoch, version;
  route_t route;         /* the route the directive sent (away) */
  int64_t revert_at_ms;  /* business clock (0: none) */
  rule_kind_t rule_kind; /* the rule behind it, as the directive row says */
  uint64_t rule_id;
  bool newest;          /* no directive to the site came after it */
  bool expiry_recorded; /* its cutover is expired in the database */
} engine_last_directive_t;
/* Loaded after the rules by a new leader (copied; unknown sites and rows
 * that are not such a move are ignored). 0, or NIRC_ENOMEM (the late
 * records are then not made; routing is unaffected). */
int engine_load_last_directives(engine_t *e, const engine_last_directive_t *x, size_t n);
/* Alarms the old leader left active (copied): adopted, and cleared with
 * their ids once their conditions are gone. */
int engine_load_alarms(engine_t *e, const alarm_t *a, size_t n);

/* ---- demand forecast from the load history (engine_forecast.c) ---- */

/* One site's half-hour of load history, as the store aggregates it from
 * load_minute (controller/store/history.h). */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  forecast_sample_t s;
} engine_history_row_t;

/* Replaces the history the forecast reads with rows[0..n) (copied: the
 * caller keeps its array; unknown sites are ignored), loaded over the last
 * `weeks` weeks at business time loaded_at_ms. 0, or NIRC_ENOMEM with the
 * previous history kept. */
int engine_set_history(engine_t *e, const engine_history_row_t *rows, size_t n, unsigned weeks,
                       int64_t loaded_at_ms);
/* Loading the history failed (`why`, e.g. the database is unreachable):
 * the last history is kept and every forecast from it says its age. */
void engine_history_failed(engine_t *e, const char *why);

/* Where a site's expected demand comes from, in order of preference. */
typedef enum {
  ENGINE_DEMAND_HISTORY = 0, /* the forecast from the stored load history */
  ENGINE_DEMAND_SCENARIO,    /* [routing] forecast, the scenario file */
  ENGINE_DEMAND_LIVE,        /* neither: the live (smoothed) load */
} engine_demand_kind_t;

typedef struct {
  engine_demand_kind_t kind;
  double cps;     /* expected own calls/s (LIVE: 0, the caller uses live load) */
  double aht_s;   /* expected handle time; 0: not known from this source */
  unsigned weeks; /* HISTORY: samples used */
  /* "forecast from 8 weeks of history", "no history: scenario file",
   * "history too short (2 of 3 weeks): live load" */
  char text[200];
} engine_demand_t;

/* Expected own demand of `slug` at business time at_ms and its source. */
void engine_forecast_demand(const engine_t *e, const char *slug, int64_t at_ms,
                            engine_demand_t *out);
/* The same source as text in buf (see engine_demand_t.text). */
engine_demand_kind_t engine_forecast_source(const engine_t *e, const char *slug, int64_t at_ms,
                                            char *buf, size_t len);
const char *engine_demand_kind_name(engine_demand_kind_t k);

/* The epoch directives carry (0 until rules are loaded). */
uint64_t engine_epoch(const engine_t *e);

/* This instance just became leader: plan nothing until every site is back
 * or settle_ms has passed (see engine_settling in engine.c). */
void engine_start_leading(engine_t *e, uint32_t settle_ms);

/* An audit record from outside the engine (leadership changes). */
void engine_note(engine_t *e, const char *actor, const char *action, const char *target,
                 const char *why);

/* When a site's agent says it went home on its own at a revert_at
 * (Hello.went_home_at_ms and went_home_clock; the same in a REVERTED
 * PbxEvent): a time on this controller's business clock as the agent read
 * it, and which reading. at_ms 0: not said (an older agent) or not known.
 * A peer's number: engine_stable.c checks it before it stamps an entry.
 * Copied by the engine; the caller's storage. */
typedef struct {
  int64_t at_ms;
  Nirc__AgentClock clock;
  /* From the wire (went_home_ago_ms, went_home_ago_said): how long before
   * its word the agent went, counted on its monotonic clock. */
  uint64_t ago_ms;
  bool ago_said;
  /* Set by the engine only (engine_went_home_settle), whatever the caller
   * put here: at_ms is this controller's now less ago_ms. */
  bool elapsed;
} engine_went_home_t;

/* Events from the server. */
/* `unverified`: the agent applied the route it holds without a read-back
 * of the PBX (Hello.route_unverified); kept as site_dir_t.unverified.
 * `went_home` (NULL: not said): when the agent went home to `applied`. */
void engine_on_hello(engine_t *e, size_t site_index, const route_t *applied_or_null,
                     bool unverified, const engine_went_home_t *went_home);
void engine_on_ack(engine_t *e, size_t site_index, const Nirc__DirectiveAck *ack);
void engine_on_link_down(engine_t *e, size_t site_index);
/* What the site's agent says of the route it holds (after engine_on_hello,
 * and on its PbxEvents): `known` false when it has not confirmed it at the
 * PBX, with why (the agent's words, escaped by the caller). */
void engine_on_route_known(engine_t *e, size_t site_index, bool known, const char *why);
/* engine_on_route_known for a PbxEvent its agent reported late: the route
 * went unknown (or known) `ago_ms` (real ms, > 0) before now, as `when`
 * says (borrowed, copied). Its directive alarm is raised since then, or
 * moved back to then if active, and says `when`; a start its agent said
 * stands (an earlier ROUTE_UNCONFIRMED is an earlier stretch's), and an
 * older reason does not replace the newer one the engine has. A report
 * older than the newest word on the route and saying otherwise (a
 * ROUTE_UNCONFIRMED and ROUTE_CONFIRMED queued during a link outage,
 * flushed after the Hello that said known) changes nothing: an episode
 * over before the controller heard of it, kept by its link event. Returns
 * whether this report is the newest word on the route (not older than
 * the one the engine has), so the caller may take what else it says. */
bool engine_on_route_known_late(engine_t *e, size_t site_index, bool known, const char *why,
                                int64_t ago_ms, const char *when);
/* Whether the route the site's agent holds was applied without a read-back
 * of the PBX (Hello.route_unverified, PbxEvent ROUTE_CONFIRMED's
 * unverified): kept as site_dir_t.unverified until an applied ack or the
 * agent says otherwise. */
void engine_on_route_unverified(engine_t *e, size_t site_index, bool unverified);
/* The site's agent went home on its own when revert_at of its route
 * (epoch, version) passed (a REVERTED PbxEvent; engine_sites.c). Taken as
 * its acknowledged route when the engine believed it held that version;
 * a newer directive, sent or acknowledged, already says more. Where home
 * becomes its route here, `unverified` (PbxEvent.unverified: home applied
 * without a read-back of the PBX) replaces the mark of the route left
 * (site_dir_t.unverified); false: read back, or an older agent, as for
 * ROUTE_CONFIRMED. `went_home`: the agent's time of it (NULL: not said). */
void engine_on_agent_reverted(engine_t *e, size_t site_index, uint64_t epoch, uint64_t version,
                              const engine_went_home_t *went_home, bool unverified);
/* Called on every server tick: re-plan, gate waves, resend, time out. */
void engine_tick(engine_t *e);

/* Operator requests (net/ops.c dispatches here, engine_ops.c handles
 * them); each replies to rq->client through engine_io_t, immediately or
 * when the move completes. */
void engine_op_cutover(engine_t *e, const engine_req_t *rq, const Nirc__CutoverRequest *req);
void engine_op_restore(engine_t *e, const engine_req_t *rq, const Nirc__RestoreRequest *req);
void engine_op_plan(engine_t *e, const engine_req_t *rq, const Nirc__PlanRequest *req);
void engine_op_schedule(engine_t *e, const engine_req_t *rq, const Nirc__ScheduleRequest *req);
void engine_op_overflow(engine_t *e, const engine_req_t *rq, const Nirc__OverflowRequest *req);
/* The active alarms, or an acknowledgement (answered once durable). The
 * stored history (--all) is the owner's: it reads the database. */
void engine_op_alarms(engine_t *e, const engine_req_t *rq, const Nirc__AlarmRequest *req);

/* Alarms (engine_alarms.c). The owner observes its own conditions (the
 * database, the journal) through this, each time it checks them; the
 * engine observes sites and routes on every evaluation. */
void engine_alarm_observe(engine_t *e, alarm_kind_t kind, const char *subject, const char *message);
/* The same, for a kind whose severity depends on the observation
 * (alarm_observe_sev). */
void engine_alarm_observe_sev(engine_t *e, alarm_kind_t kind, const char *subject,
                              const char *message, bool critical);
/* engine_alarm_observe_sev for a sighting `ago_ms` (real ms, >= 0) before
 * now, reported late (a PBX event queued while its agent's link was
 * down), as `when` says (borrowed, copied), whose alarm stands `hold_ms`
 * after it: one raised now says since then, not since the controller
 * heard; an active one moves back to it when heard on time it would have
 * been the same alarm (alarm_observe_late). ago_ms 0: on time. */
void engine_alarm_observe_since(engine_t *e, alarm_kind_t kind, const char *subject,
                                const char *message, bool critical, int64_t ago_ms, int64_t hold_ms,
                                const char *when);
/* Whether an alarm for (kind, subject) is active. */
bool engine_alarm_active(const engine_t *e, alarm_kind_t kind, const char *subject);
/* The active alarms (borrowed; for status, the page and metrics). */
const alarm_table_t *engine_alarms(const engine_t *e);
/* An active alarm as the protocol carries it, with how long its condition
 * has not been observed (alarm_seen). Strings are borrowed from `a` (the
 * engine's table): valid until the table next changes. */
void engine_alarm_to_pb(const engine_t *e, const alarm_t *a, Nirc__Alarm *pb);
/* The same figures for the page (alarm_seen on the engine's clock). */
alarm_seen_t engine_alarm_seen(const engine_t *e, const alarm_t *a);
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
/* The operator client is going away: forget waiting requests bound to it
 * (nothing is sent to it any more). */
void engine_on_client_closed(engine_t *e, void *client);

/* For status: the site's acknowledged route and active rule text. */
const site_dir_t *engine_site_dir(const engine_t *e, size_t site_index);
/* What status, the alarm and the status page say of a site held home
 * (site_dir_t.returns HELD): how many early returns in how long, the
 * last's rule and how early, the likely cause and the fix
 * (engine_sites.c). Fits in ALARM_MESSAGE_MAX. */
void engine_returns_words(engine_t *e, size_t site_index, char *buf, size_t len);

/* What this controller knows of the route a site holds, for every surface
 * that shows it (status, the page, /status.json, the map). */
typedef enum {
  ENGINE_ROUTE_KNOWN = 0, /* site_dir_t.acked: acknowledged or said in a Hello here */
  /* Its agent has not confirmed it at the PBX (site_dir_t.route_unknown). */
  ENGINE_ROUTE_UNKNOWN,
  /* Its agent has not said Hello to this controller since it took over
   * (site_dir_t.known false): acked is only the default home, not a fact.
   * The agent may hold an older leader's route, or have gone home at its
   * revert_at: nobody here knows which. */
  ENGINE_ROUTE_UNHEARD,
} engine_route_seen_t;
/* Site i's (UNHEARD for a site the engine has not taken in, or e NULL:
 * no Hello reached an engine that does not exist). */
engine_route_seen_t engine_route_seen(const engine_t *e, size_t site_index);
/* Route changes of a site by cause since this engine started. */
uint64_t engine_route_changes(const engine_t *e, size_t site_index, route_cause_t cause);
const char *engine_active_reason(const engine_t *e, size_t site_index);

/* ---- what is active, until when, and what comes next (engine_view.c) ---- */

/* The rule a site routes by, for people: which rule, its end, and why the
 * site is not at the rule's first hub. A site its rule cannot move (held
 * home because no hub can take it, or kept out after a failed move) still
 * names the rule in force for it, so "default" means no rule at all. */
typedef struct {
  rule_kind_t kind; /* RULE_NONE: home, no rule in force for it */
  uint64_t rule_id;
  const char *name;   /* borrowed until the rules change: a schedule's or overflow's name, or "" */
  const char *reason; /* borrowed likewise: a cutover's reason, or "" */
  int64_t end_ms;     /* business clock: expiry or window end; 0: open-ended */
  bool excluded;      /* kept out of the rule after a failed move */
  char detail[200];   /* "re-homed: shaanxi offline", "home: shaanxi offline, henan stale"; "" */
} engine_rule_view_t;
void engine_rule_view(const engine_t *e, size_t site_index, engine_rule_view_t *out);

/* nircctl next: what the rules will do in the next hours, in time order
 * (schedule starts with the capacity predicted at each hub, window ends,
 * windows an exception date skips, cutover expiries). Replies through
 * engine_io_t at once. */
void engine_op_next(engine_t *e, const engine_req_t *rq, const Nirc__NextRequest *req);
/* nircctl capacity: lists the configured capacity of every site (or one),
 * or changes a site's (seats, roster, UTC offset; --clear forgets it). A
 * change is stored exactly once with its audit entry before the answer. */
void engine_op_capacity(engine_t *e, const engine_req_t *rq, const Nirc__CapacityRequest *req);

/* ---- nircctl report staffing (engine_report.c) ---- */

/* The window a report request names: the schedule's (--schedule, else the
 * enabled one in force now or starting next), on --date, or --from/--to;
 * cut into n_intervals 30-minute intervals from first_ms. `schedule` is
 * borrowed until the rules change. */
typedef struct {
  const schedule_t *schedule;
  int64_t from_ms, to_ms, first_ms;
  unsigned n_intervals;
  bool ended; /* to_ms is past (business clock) */
} engine_report_window_t;
/* 0, or NIRC_EINVAL / NIRC_ENOTFOUND with the reason and fix in err. */
int engine_report_window(engine_t *e, const Nirc__ReportRequest *req, engine_report_window_t *w,
                         char *err, size_t errlen);

/* What the owner read from the database for an ended window, per site:
 * its own calls (offered - from other sites + routed away) per interval
 * and the minutes measured in it (0: nothing measured: unknown), and the
 * accuracy stored at the window's end (acc_state "": none stored). */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  double calls[STAFF_MAX_INTERVALS];
  unsigned minutes[STAFF_MAX_INTERVALS];
  char acc_state[16]; /* "stored", "no-calls", "" */
  double wape, forecast_calls, actual_calls, abs_error_calls;
  unsigned intervals;
} engine_report_site_actual_t;
typedef struct {
  int64_t first_ms; /* the window read: ignored unless it is still the report's */
  unsigned n_intervals;
  bool available; /* false: the database could not be read (why says so) */
  char why[240];
  engine_report_site_actual_t *sites; /* borrowed for the call */
  size_t n_sites;
} engine_report_actual_t;
/* Answers `nircctl report staffing` at once through engine_io_t; `act` is
 * NULL for a window that has not ended. */
void engine_op_report(engine_t *e, const engine_req_t *rq, const Nirc__ReportRequest *req,
                      const engine_report_actual_t *act);

/* The same list for the status page: events from now on, at most `max`,
 * in time order, into `out` (returns how many). */
typedef enum {
  ENGINE_NEXT_START = 0, /* a schedule's window starts */
  ENGINE_NEXT_END,       /* a schedule's window ends */
  ENGINE_NEXT_SKIP,      /* a window does not run: an exception date, a clock change */
  ENGINE_NEXT_EXPIRY,    /* a cutover expires */
} engine_next_kind_t;
typedef struct {
  engine_next_kind_t kind;
  int64_t at_ms;  /* business clock */
  int64_t end_ms; /* a start: when that window ends */
  rule_kind_t rule_kind;
  uint64_t rule_id;
  size_t rule_index;     /* into the engine's schedules or cutovers, valid for the call */
  rules_window_t window; /* a skip: the window and why it does not run (rules_window_reason) */
} engine_next_t;
size_t engine_next_events(const engine_t *e, int64_t until_ms, engine_next_t *out, size_t max);
const char *engine_next_kind_name(engine_next_kind_t k);
/* What the plan path predicts at each hub of a schedule start `ev` (as
 * nircctl next and plan --schedule show it), at most `max` hubs into out;
 * returns how many (0: none can be predicted now: unknown, not zero). */
typedef struct {
  char hub[SCENARIO_SLUG_MAX];
  double sl_after; /* 0..1; 0 when unstable */
  bool stable;
  unsigned agents, agents_needed, n_sources, n_refused;
  capacity_source_t cap_source; /* where `agents` comes from */
} engine_next_hub_t;
size_t engine_next_predict_hubs(engine_t *e, const engine_next_t *ev, engine_next_hub_t *out,
                                size_t max);
/* The rule of an event (for its name, sources and hubs): NULL when it is
 * not of that kind. Borrowed until the rules change. */
const schedule_t *engine_next_schedule(const engine_t *e, const engine_next_t *ev);
const cutover_t *engine_next_cutover(const engine_t *e, const engine_next_t *ev);

#endif
