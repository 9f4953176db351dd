/* engine-int.h: the engine's state, shared by the files of the engine
 * module and by nothing else. engine.c holds the routing core (rules,
 * planning, waves, directives, acks, the tick); engine_ops.c the operator
 * requests and the replies to them (cutover, restore, and the requests
 * waiting for their moves); engine_plan.c what a move would do (plan, dry
 * runs, the capacity verdict); engine_rules.c schedule and overflow
 * changes; engine_stable.c the hub health gate, the notes and the causes
 * of route changes; engine_report.c the staffing report and the forecast's
 * accuracy tracking. Include it only from those files: everyone else goes
 * through engine.h. */
#ifndef NIRC_ENGINE_INT_H
#define NIRC_ENGINE_INT_H

#include "engine.h"

#include <jansson.h>

#define ENGINE_OBJ "engine"

/* What follows "applied" when the agent could not read its PBX back. */
#define ENGINE_UNVERIFIED_WORDS ", unverified (no read-back of the PBX)"

/* ---- waves and waiting operator requests ---- */

/* One source's totals (site_t, as a source) when a wave's verification
 * window started and at its baseline: the first report received after the
 * window started, whose interval may still hold calls routed before the
 * apply; the window's counts are the differences after it. */
typedef struct {
  uint64_t start_reports;  /* reports_total when the window started */
  uint64_t epoch, version; /* its target then: a source routed anew since is not judged */
  bool based;              /* the baseline below is taken */
  uint64_t reports, measured, own;
  unsigned n_share;                               /* of its target at the baseline */
  char site[ROUTE_MAX_SHARES][SCENARIO_SLUG_MAX]; /* the target's shares then */
  uint64_t sent[ROUTE_MAX_SHARES];                /* what it had sent to each */
  bool sent_known[ROUTE_MAX_SHARES];
  bool mismatch; /* the last judgement found its calls not going where routed */
} wave_base_t;

typedef struct wave {
  rule_kind_t kind;
  uint64_t rule_id;
  size_t *sources;   /* site indices */
  wave_base_t *base; /* one per source (engine_verify.c); NULL: out of memory, not judged */
  unsigned n;
  uint64_t started_mono, all_acked_mono;
  bool all_acked, done;
  bool mismatch; /* a source's calls did not move: held, its alarm observed on every check */
  struct wave *next;
} wave_t;

typedef struct {
  size_t site;
  uint64_t version; /* resolved once acked at this version, or failed */
  bool resolved, applied;
  bool pending; /* unacknowledged at the deadline, still being delivered, or held */
  bool hub;     /* its part changes only whom it answers for (site_dir_t.senders_only) */
  /* The agent's marks on its ack: applied without a read-back of the PBX;
   * failed with the outcome unknown (the PBX may have taken the route). */
  bool unverified, outcome_unknown;
  char detail[256];
  int64_t latency_ms;
} waiter_site_t;

/* The records of one operator change, followed until each is durable
 * (committed, or synced in the journal) or has failed. The operator hears
 * "done" only then: a waiter (moves) or a deferred reply (rule lists)
 * holds the group until it answers. */
typedef struct group {
  unsigned pending; /* accepted by the store, not yet durable */
  bool open;        /* the change may still add records */
  bool held;        /* a waiter or a deferred reply still needs it */
  bool busy;        /* its completion is being handled: not freed under it */
  int err;          /* the first failure; 0: none */
  char why[240];
  /* Records durable only in this controller's outage journal (the store
   * said "journaled"): they reach the database when it is back, and a
   * standby that takes over before that does not know them. */
  unsigned journaled;
  struct group *next;
} group_t;

/* What an operator hears of a change whose records are only journaled,
 * into buf: the journal is named by its controller's node, as the reply
 * may reach the operator through a standby (engine_ops.c). */
void engine_journal_only(const engine_t *e, char *buf, size_t len);

/* A rule change's reply, sent once its group is durable. */
typedef enum {
  DEFER_SCHEDULES = 0,
  DEFER_OVERFLOWS,
  DEFER_ALARMS,
  DEFER_CAPACITY,
  DEFER_SITE,
} defer_kind_t;
typedef struct deferred {
  void *client; /* NULL once the operator went away */
  uint64_t request_id;
  defer_kind_t kind;
  char what[96];    /* "schedule 'night' added", for a failure message */
  char subject[48]; /* DEFER_SITE: "add:hubei", what the reply is about */
  /* Owned: what a `schedule set` changed (engine_rules.c); NULL otherwise. */
  struct engine_change *change;
  group_t *group;
  struct deferred *next;
} deferred_t;

/* What --force overrode: the hubs whose capacity check the forced move
 * fails, with their predictions, and the warning that says so. */
typedef struct {
  plan_capacity_t *hubs; /* owned; n entries */
  unsigned n;
  char warning[512]; /* "forced past the capacity check: shaanxi predicted SL 0% (...)" */
} engine_forced_t;

typedef struct waiter {
  void *client; /* opaque, the owner's; NULL once the operator went away */
  uint64_t request_id;
  uint64_t started_mono, deadline_mono;
  uint64_t cutover_id;
  waiter_site_t *sites;
  unsigned n;
  group_t *group;         /* the change's records; NULL: none followed */
  engine_forced_t forced; /* owned: told to the operator with the outcome */
  struct waiter *next;
} waiter_t;

/* The health of a hub as routing uses it (engine_gate_update): a short
 * loss keeps its sources, a long one re-homes them, and a hub back from a
 * loss takes sources again only after its return window.
 *
 *   UNSEEN --up--> UP --down--> FAILING --down for hub_grace--> LOST
 *                  ^  <---up----'                                |  ^
 *                  |                                           up  down
 *                  `---- up for the return window ---- RECOVERING --'
 *
 * A new leader starts every hub in FAILING (never_up): the sources it
 * finds at a hub stay for the grace while the hub reconnects; a hub not
 * seen by then becomes UNSEEN, not LOST (nothing was lost that this
 * leader saw). A hub the store says was lost and not verified since
 * starts LOST (engine_load_hub_history). */
typedef enum {
  HUB_UNSEEN = 0, /* not up yet in this leadership: takes no new sources */
  HUB_UP,
  HUB_FAILING,    /* down for less than the grace: keeps its sources, takes no new ones */
  HUB_LOST,       /* down for the grace or more: its sources re-homed */
  HUB_RECOVERING, /* up again after a loss, for less than its return window */
} hub_gate_state_t;

typedef struct {
  hub_gate_state_t state;
  bool never_up;           /* not yet up in this leadership (FAILING from its start) */
  uint64_t since_mono;     /* entered this state */
  uint64_t last_loss_mono; /* when it last became LOST */
  unsigned losses;         /* within the hour up to last_loss_mono */
} hub_gate_t;

/* A schedule window whose forecast was recorded (engine_report.c): closed
 * once its accuracy was asked for. */
#define ENGINE_FC_MARKS 16
typedef struct {
  bool used, closed;
  uint64_t schedule_id;
  int64_t start_ms, end_ms;
} engine_fc_mark_t;

/* An older leader's last directive to a source, as a new leader loaded
 * it (engine_load_last_directives), by site index: looked at once, at the
 * site's first Hello to this leader (engine_late_revert). */
typedef struct {
  size_t site;
  engine_last_directive_t d;
  bool seen; /* looked at: at the site's first Hello to this leader */
} engine_prior_t;

struct engine {
  engine_io_t io; /* copied: where decisions go */
  sites_t *sites; /* borrowed registry: the snapshot the engine plans on */
  uint64_t epoch; /* of this leadership; directives carry it */
  engine_opts_t opts;
  /* Per-site arrays below cover n_sites entries of the registry (room for
   * cap_sites): the registry may grow while the engine runs, and the
   * engine sees a new site once engine_sites_grown has made room for it. */
  size_t n_sites, cap_sites;
  site_dir_t *dirs; /* one per site */
  plan_site_t *psites;
  cutover_t *cut;
  size_t n_cut, cap_cut;
  schedule_t *sch;
  size_t n_sch, cap_sch;
  overflow_rule_t *ovf;
  planner_overflow_state_t *ovf_state;
  size_t n_ovf, cap_ovf;
  uint64_t next_rule_id;
  wave_t *waves;
  waiter_t *waiters;
  group_t *group;  /* the operator change being made: its records join it */
  group_t *groups; /* every group still alive */
  deferred_t *deferred;
  plan_t plan;
  bool have_plan;
  uint64_t settle_from_mono, settle_until_mono; /* after taking over; 0 = settled */
  /* Until then, a rule with moves in place starts no new wave: the waves
   * in progress under the old leader are verified anew (wave progress is
   * not stored; this is its conservative stand-in). */
  uint64_t resume_mono;
  uint64_t loaded_below_id; /* rules with smaller ids were loaded, not made here */
  char (*alarm)[256]; /* per site: its first plan alarm of the last evaluation (note, cause) */
  hub_gate_t *gate;   /* one per site (used for hubs) */
  /* The hubs' site indexes, rebuilt by every plan's input
   * (engine_build_input): the gate update runs every tick and at 20,000
   * sites a pass over every site for its is_hub flag was most of an idle
   * tick. A hub added since the last plan waits for the next (at most a
   * second; a site change asks for one at once). Owned. */
  uint32_t *hub_idx;
  size_t n_hub_idx;
  bool hub_idx_valid;
  planner_hold_t *holds;                  /* one per site: capacity damping state */
  uint64_t (*changes)[ROUTE_CAUSE_COUNT]; /* route changes per site and cause */
  alarm_table_t alarms;
  uint64_t alarms_observed_mono; /* last evaluation that observed the conditions */
  uint64_t *down_since;          /* per site: monotonic ms it was last seen not up (0: up) */
  /* per site: the key of the time its site_down message last said
   * (engine_down_for; 0: none); the message is formatted again only when
   * that changes, not on every plan */
  uint32_t *down_said_s;
  /* Scratch of engine_evaluate, one route per site, kept between ticks:
   * allocating 2.6 KB per site on every tick faulted in 50 MB at 20,000
   * sites five times a second. Contents are meaningless outside a call. */
  route_t *next_scratch;
  bool next_busy; /* an evaluation is using next_scratch */
  /* The last evaluation (both clocks) and the inputs a tick left behind
   * (engine_inputs_fp). A tick re-plans when those inputs changed, when an
   * input call set eval_dirty, or when a second has passed on either clock
   * (the planner's time-driven decisions: windows, expiries, holds); an
   * idle registry of 20,000 sites is not planned five times a second. A
   * change the fingerprint misses is planned within that second anyway. */
  uint64_t eval_mono;
  /* The previous tick of this leadership (engine_tick): monotonic ms (0:
   * none yet) and business ms. An expiry between it and this tick that
   * comes after a long gap was seen late (engine_expire says so). */
  uint64_t tick_mono;
  int64_t tick_now;
  int64_t eval_now;
  uint64_t eval_fp;
  bool eval_done, eval_dirty;
  /* Some directive may be pending or failed / some site excluded: set
   * wherever one becomes so, cleared by the tick's scan when it finds
   * none. Without them every tick scans every site's directive. */
  bool dirs_unsettled, dirs_excluded;
  engine_stats_t stats;
  engine_fc_mark_t fc_marks[ENGINE_FC_MARKS];
  bool fc_swept; /* this leadership looked for windows ended under the last one */
  /* The load history and its forecasts (engine_forecast.c); owned. A
   * pointer so that the forecast's caches can be kept up to date from the
   * const engine of engine_forecast. NULL: none loaded yet. */
  struct engine_hist *hist;
  /* Per site index: its entry in the scenario file (opts.forecast), looked
   * up once (engine_forecast.c): a scan of the scenario for each of 20,000
   * sites on every plan was most of an idle controller's string compares.
   * Owned; grows with the registry. */
  const scenario_site_t **scen_site;
  size_t n_scen_site;
  /* Sorted by site; owned; NULL: none loaded (engine_late_revert). */
  engine_prior_t *prior;
  size_t n_prior;
};

/* ---- shared between engine.c and engine_ops.c ---- */

/* Clocks and the registry (engine.c). */
uint64_t engine_mono(const engine_t *e);
int64_t engine_now(const engine_t *e);
site_t *engine_site(engine_t *e, size_t i);
size_t engine_nsites(const engine_t *e);
long engine_index(engine_t *e, const char *slug);
bool engine_site_exists(void *arg, const char *slug, bool *is_hub);
bool engine_site_at(void *arg, size_t i, const char **slug, bool *is_hub);
int engine_add_cutover(engine_t *e, const cutover_t *c);
int engine_add_schedule(engine_t *e, const schedule_t *s);
int engine_add_overflow(engine_t *e, const overflow_rule_t *o);
int engine_store(engine_t *e, engine_rec_t *rec);
char *engine_json_text(json_t *j);
void engine_slugs_text(const slug_list_t *l, char *buf, size_t len);
json_t *engine_slugs_json(const slug_list_t *l);
void engine_audit(engine_t *e, const char *actor, const char *action, const char *target,
                  json_t *detail);
/* The same, for an event that happened at business time happened_ms,
 * before now (engine_rec_t.happened_ms; 0: now). Stamped ENGINE_LATE_MS
 * or more of real time before now, `detail` gets recorded_at_ms (real)
 * and recorded_business_at_ms: when this controller recorded it. */
void engine_audit_at(engine_t *e, const char *actor, const char *action, const char *target,
                     json_t *detail, int64_t happened_ms);
json_t *engine_route_json(const engine_t *e, size_t i);
void engine_progress(engine_t *e, void *client, uint64_t request_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void engine_build_input(engine_t *e, plan_input_t *in, const cutover_t *extra_cut,
                        size_t n_extra_cut);
double engine_forecast(const engine_t *e, const char *slug, int64_t at_ms);
bool engine_forecast_staff(const engine_t *e, const char *slug, int64_t at_ms, unsigned *agents,
                           double *aht_s);
/* What a schedule's wave of sources idx[0..n) was sized on at at_ms, for
 * its audit record: {site: {calls_per_s, source, note}} from e->psites as
 * the last engine_build_input left them (engine_forecast.c). */
json_t *engine_wave_demand_json(const engine_t *e, const size_t *idx, unsigned n, int64_t at_ms);
/* engine_forecast_demand without the text (text false: out->text is
 * empty), for every site on every tick. */
void engine_forecast_demand_text(const engine_t *e, const char *slug, int64_t at_ms,
                                 engine_demand_t *out, bool text);
/* The same for site index i (from engine_index; -1: not a site): every
 * plan asks it for every site, and the index saves hashing the slug. */
void engine_forecast_demand_at(const engine_t *e, long i, const char *slug, int64_t at_ms,
                               engine_demand_t *out, bool text);
/* Frees the load history (engine_forecast.c). */
void engine_hist_free(struct engine_hist *h);
/* Shared by engine.c and engine_ack.c: the text status shows for an
 * excluded site; a progress line to every operator waiting on site i;
 * whether a route sends some of self's calls away. */
void engine_exclusion_text(engine_t *e, size_t i, const char *why);
void engine_progress_site(engine_t *e, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool engine_is_away(const route_t *r, const char *self);
void engine_route_from_plan(const plan_route_t *p, route_t *r);
bool engine_shares_same(const route_t *a, const route_t *b);
bool engine_settling(engine_t *e);
void engine_evaluate(engine_t *e, size_t *changed, unsigned *n_changed);
/* Resends directives whose ack is late, fails those out of resends
 * (engine_ack.c); verifies the waves in progress (engine_tick.c, also after
 * every ack: the window starts at the last acknowledgement). */
void engine_check_timeouts(engine_t *e);
void engine_check_waves(engine_t *e);
void engine_free_waiter(engine_t *e, waiter_t *w);
void engine_waiters_check(engine_t *e);
/* Stable routing (engine_stable.c): the hub health gate, moved on once
 * per evaluation; whether site i's hub is gone (lost or unseen: leaving it
 * is not held back by waves); the main hub of a route (NULL: home); the
 * note status shows for site i; the cause of a route change; and counting
 * and auditing one change (before d->target is replaced). */
void engine_gate_update(engine_t *e);
void engine_gate_start(engine_t *e);
/* Takes the planner's new damping state, storing what changed. */
void engine_holds_update(engine_t *e, const planner_hold_t *next);
bool engine_hub_gone(const engine_t *e, size_t i);
const char *engine_main_hub(const route_t *r, const char *self);
void engine_site_note(engine_t *e, size_t i, const plan_route_t *pr, const char *alarm);
/* Site i has a directive of this epoch it cannot be given: its link is
 * down (never up since the controller took the lead, or lost before the
 * ack). It gets it at its next Hello; until then an alarm and its note
 * say so, in these words. */
bool engine_undelivered(const engine_t *e, size_t i);
void engine_undelivered_words(const engine_t *e, size_t i, char *buf, size_t len);
route_cause_t engine_cause(engine_t *e, size_t i, const route_t *old, const route_t *want,
                           rule_kind_t old_kind, rule_kind_t new_kind, int alarm_kind);
void engine_route_changed(engine_t *e, size_t i, const route_t *next, uint64_t version,
                          route_cause_t cause, rule_kind_t kind, uint64_t rule_id);
/* Site i's first Hello to this leader says it routes by `applied`, and
 * this leader has no directive of its own for it: if that is home by its
 * own revert_at under the older leader's directive loaded for it, and no
 * entry covers that return, it is audited now, late, and confirmed with a
 * directive of this epoch (so that the next leader finds it recorded). */
void engine_late_revert(engine_t *e, size_t i, const route_t *applied,
                        const engine_went_home_t *went_home);
/* Site i, known to this leader, says at a Hello that it routes home by
 * `applied`: called before its acknowledged route is replaced. If its
 * agent went home on its own at the revert_at of the move it had
 * acknowledged while its rule, changed meanwhile, still moves it (a
 * directive the agent never got), both the return home (late) and the
 * move back that the Hello's resend makes are audited. */
void engine_hello_reverted(engine_t *e, size_t i, const route_t *applied,
                           const engine_went_home_t *went_home);
/* What an agent's own return home (PbxEvent REVERTED, engine_sites.c)
 * is to this controller: decided on the site's directive `d`, the home
 * route `home` the event names (under the epoch and version of the route
 * the agent left), this controller's business time `now` and when the
 * agent went, `went` <= now (engine_return_early: its own time where
 * believed, else now). Pure. The comparisons are with d->acked, the route
 * the site acknowledged; "the end carried out here" is a target newer
 * than it. */
typedef enum {
  /* Stale or a no-op: acked is not known (no Hello this epoch), is
   * another version than the one left (a newer directive, sent or
   * acknowledged, already says more), or is that home already with no
   * newer target: nothing changes. */
  ENGINE_REVERT_NOTHING = 0,
  /* acked is this home already (the agent said so before, when its PBX
   * did not take it), and a newer target (the rule's end sent here) is
   * pending or failed: that end is sent again now. */
  ENGINE_REVERT_RESEND_END,
  /* At or after revert_at here (revert_at <= now), and this controller
   * already carried out the rule's end (a newer target, audited when it
   * was made) that the site has not acknowledged: home is the site's
   * route here; a failed end is sent again now. */
  ENGINE_REVERT_AFTER_END,
  /* Went at or after revert_at, the end not carried out here yet: this
   * controller's next tick ends the rule and audits it; nothing here. */
  ENGINE_REVERT_ON_TIME,
  /* Went before revert_at (or a move without one: revert_at 0), the end
   * not carried out here: audited as the agent's own return
   * (agent-return), home is its route, and a rule still in force moves
   * it again. Its word may come after revert_at (queued while its link
   * was down): its own time says it was early. */
  ENGINE_REVERT_EARLY,
} engine_revert_case_t;
/* `went`: when the agent went (its believed time, else `now`); a return
 * whose word came at or after revert_at is early only if `went` is over
 * `slack_ms` before it (engine_revert_slack). */
engine_revert_case_t engine_revert_classify(const site_dir_t *d, const route_t *home, int64_t now,
                                            int64_t went, int64_t slack_ms);
/* How far before revert_at an agent's own time of its return may be and
 * the return still be on time: one real second in business ms. The agent
 * reads this clock through an offset measured a one-way trip late, its
 * timer and its host's NTP slew add milliseconds either way; counted as
 * early (and three such hold the site home) only what no such error
 * explains. */
int64_t engine_revert_slack(const engine_t *e);
/* The agent's word of its return with its count settled: with ago_said,
 * at_ms becomes this controller's now less ago_ms and `elapsed` true (the
 * count has no clock offset in it); `elapsed` from the caller is dropped.
 * Returns out, or NULL when in is NULL. */
const engine_went_home_t *engine_went_home_settle(const engine_t *e, const engine_went_home_t *in,
                                                  engine_went_home_t *out);
const char *engine_revert_case_name(engine_revert_case_t c);
/* Site i's agent says it went home (`home`: under the epoch and version
 * of the move it left, d->acked) on its own at that move's revert_at,
 * `early` before it (engine_return_early): the return is audited now
 * (cause agent-return), before d->acked is replaced. `held`: this return
 * made the site held (engine_returns_count), and the entry says so
 * instead of "the next plan moves it again". */
void engine_early_return(engine_t *e, size_t i, const route_t *home,
                         const engine_went_home_t *went_home, const engine_early_t *early,
                         bool held);
/* When site i's agent went home on its own from the move it acknowledged
 * (d->acked), on this controller's business clock: its own time where
 * believed (engine_home_at_judge), else now, when its word arrives (it
 * went no later). *early: how long before that move's revert_at, and
 * which of the two it is measured by. Pure. */
int64_t engine_return_early(const engine_t *e, size_t i, const engine_went_home_t *went_home,
                            engine_early_t *early);
/* An agent that keeps going home early (site_dir_t.returns). The third
 * early return within the hour holds the site: the first is sent again
 * because the agent measures the controller's clock anew at every
 * directive, so a one-off step of its host clock is gone with the move
 * sent again; a second may still be that step's tail (a clock slewing
 * back); a third within the hour means the cause stays (a host clock that
 * keeps stepping, an agent whose [clock] speed is not the controller's),
 * and every further turn moves its calls twice and says nothing new. Not
 * released by time: nothing this controller sees tells that the agent's
 * clock was fixed (its returns were early against its own measurement),
 * so a timed retry would start the loop again; an operator readmits it
 * (nircctl readmit), as after a rolled-back move. */
#define ENGINE_RETURNS_HOLD      3
#define ENGINE_RETURNS_WINDOW_MS (3600ULL * 1000)
/* Counts one early return of the move of rule (kind, rule_id), `early`
 * before its revert_at (engine_return_early), at monotonic `mono`: true
 * when it is the one that makes the site held. Pure. */
bool engine_returns_count(engine_returns_t *r, rule_kind_t kind, uint64_t rule_id, uint64_t mono,
                          const engine_early_t *early);
/* Whether site i is held (site_dir_t.returns) and plan route `pr` is a
 * move with an end that it would start now: that move is not sent
 * (engine_evaluate), and its note and a routing alarm say why
 * (engine_returns_words, engine.c). */
bool engine_returns_withheld(engine_t *e, size_t i, const plan_route_t *pr);
/* How early, in words with its qualifier: "at least 42 s before revert_at
 * by this controller's clock", "30 s before revert_at by its agent's time
 * (offset measured)", ... (engine_early_t). */
void engine_early_words(const engine_early_t *x, char *buf, size_t len);
/* An early figure in words: "42 s" (rounded down), or "800 ms" under 1 s. */
void engine_early_figure(int64_t ms, char *buf, size_t len);
/* Whether an agent's time of its own return home (`w`, NULL: not said)
 * is believed: not after this controller's now, and not before the
 * revert_at it went home by (revert_at_ms; 0: not known here) by more
 * than ENGINE_WENT_HOME_SLACK_MS. A peer's number is input. */
#define ENGINE_WENT_HOME_SLACK_MS 60000 /* as the clock alarm's (SERVER_CLOCK_OFFSET_MS) */
typedef enum {
  ENGINE_HOME_AT_UNSAID = 0, /* no time: an older agent, or it does not know */
  ENGINE_HOME_AT_BELIEVED,
  ENGINE_HOME_AT_FUTURE, /* after now here */
  ENGINE_HOME_AT_EARLY,  /* well before the revert_at */
} engine_home_at_t;
engine_home_at_t engine_home_at_judge(const engine_t *e, const engine_went_home_t *w,
                                      int64_t revert_at_ms);
/* The rule an older leader's directive was sent under, as the database
 * keeps that directive (engine_load_last_directives), when site i still
 * routes by it (`r`: its epoch and version): true with *kind and *id. The
 * database has the rule then; a route of an older leader not found here
 * is no rule's the database has (ROUTE_CAUSE_NO_RULE). */
bool engine_prior_rule(const engine_t *e, size_t i, const route_t *r, rule_kind_t *kind,
                       uint64_t *id);
/* Whether this leader sees something that fell due at business time
 * at_ms late (engine_tick.c): before its first tick (it was not leading
 * then), or after a gap of real time longer than ENGINE_LATE_MS since its
 * previous tick with at_ms inside the gap (the controller was paused or
 * starved), *late_ms being that gap. One rule for every such entry: a
 * cutover's expiry, a schedule window's end; and an audit entry stamped
 * this much before it is recorded is "recorded late" (engine_audit_at). */
#define ENGINE_LATE_MS 2000
typedef enum {
  ENGINE_SEEN_IN_TIME = 0,
  ENGINE_SEEN_LATE,
  ENGINE_SEEN_BEFORE_LEAD,
} engine_seen_t;
engine_seen_t engine_seen_late(const engine_t *e, int64_t at_ms, uint64_t *late_ms);
/* Business time at_ms in the engine's words: "2020-01-23T23:59:00+08:00
 * (Asia/Shanghai business time)", in opts.ops_tz (engine_tick.c). */
void engine_business_time(const engine_t *e, int64_t at_ms, char *buf, size_t len);
/* Directives out (engine.c): a new version, a resend after ack_timeout
 * without an answer, or the same version again to a site that has just
 * connected without it (not a resend: nothing had reached it). */
/* SEND_AFTER_FAILURE: a failed directive sent again at once, not at its
 * slow retry, because its agent has since said it went home on its own
 * (engine_on_agent_reverted). SEND_RETRY_FAILED: the slow retry itself
 * (engine_check_timeouts) of a directive that failed (the site answered
 * FAILED, or did not answer its resends): counted as a resend, and said
 * as the retry of a failure, not as a missing acknowledgement. */
typedef enum {
  SEND_NEW = 0,
  SEND_RESEND,
  SEND_AT_HELLO,
  SEND_AFTER_FAILURE,
  SEND_RETRY_FAILED
} send_why_t;
void engine_send(engine_t *e, size_t i, send_why_t why);
/* Alarms (engine_alarms.c): the table's callback; the per-evaluation
 * observations of sites and plan alarms; the sweep of gone conditions;
 * and the reply listing the active ones (warning: NULL, or why the
 * acknowledgement it answers is not durable). */
void engine_alarm_event(void *arg, alarm_event_t ev, const alarm_t *a, int64_t wall_ms);
void engine_alarms_observe(engine_t *e, const plan_t *p);
void engine_alarms_sweep(engine_t *e);
void engine_reply_alarms(engine_t *e, void *c, uint64_t rid, const char *warning);
/* Accuracy tracking (engine_report.c): records the forecast of a window
 * that starts, and asks for the accuracy of one that ended. Per tick. */
void engine_forecast_track(engine_t *e);
/* Configured capacity (engine_capacity.c): every site's, or `only`'s. */
void engine_reply_capacity(engine_t *e, void *c, uint64_t rid, const char *only,
                           const char *warning);
/* A rule or alarm change's reply waits for the current group to be
 * durable (engine_rules.c). */
void engine_defer(engine_t *e, const engine_req_t *rq, defer_kind_t kind, const char *what);
void engine_defer_on(engine_t *e, const engine_req_t *rq, defer_kind_t kind, const char *what,
                     const char *subject);
/* A site change's reply (engine_sites.c), subject "action:slug"; c may be
 * NULL (the operator went away): the site's pending change still ends. */
void engine_reply_site_deferred(engine_t *e, void *c, uint64_t rid, const char *subject,
                                const char *warning);
/* Sends the deferred replies whose groups are durable (engine_ops.c). */
void engine_deferred_check(engine_t *e);

/* Groups (engine.c): begin makes the change's group current (NULL: out of
 * memory); end closes it to new records; release drops the holder's
 * claim. A group is freed once it is closed, durable and not held. */
group_t *engine_group_begin(engine_t *e);
void engine_group_end(engine_t *e);
bool engine_group_done(const group_t *g);
void engine_group_release(engine_t *e, group_t *g);
/* Asks the store whether a change can be made durable now; if not, the
 * request is refused (nothing changed) with the store's reason and fix. */
bool engine_can_record(engine_t *e, const engine_req_t *rq, const char *op, const char *target);
/* The change's record (what: "the cutover", "the removal"...) was not
 * accepted: ends and drops the current group and refuses the request,
 * nothing changed, with the store's reason. The caller has undone its
 * in-memory change. */
void engine_refuse_unrecorded(engine_t *e, const engine_req_t *rq, const char *op,
                              const char *target, const char *what);
void engine_end_cutover(engine_t *e, cutover_t *cut, cutover_state_t st, const char *by);
/* Site i is back in its rules (no-op when it was not excluded); the
 * readmission is stored, so a new leader does not keep it out. */
void engine_readmit(engine_t *e, size_t i, const char *who, const char *why);
/* Site i's hold after its agent's early returns (site_dir_t.returns)
 * ends, and their count with it: an operator's act saying it may move
 * again (readmit, a cutover naming it), never the end of a rule nor a
 * restore (which sends it home anyway). */
void engine_returns_release(engine_t *e, size_t i, const char *who, const char *why);
/* Site i is held (site_dir_t.returns): stores the hold for the next
 * leader (route_return_holds) and, when `started` (the return that held
 * it), audits it (hold-home). The end is stored and audited
 * (hold-home-end) by engine_returns_release. No-op when not held. */
void engine_returns_record(engine_t *e, size_t i, bool started);
/* Wave verification by moved calls (engine_verify.c). start: the window
 * starts (again) now, for every source; sample: takes the baselines of
 * sources whose first report since arrived; judge: at the window's end,
 * says for each source whether its calls went where its route sends them
 * (the text status shows), raises a `moved` alarm for each that did not,
 * and returns false then (the window starts again; the next wave waits);
 * hold: observes those alarms again while the wave stays held. */
void engine_verify_start(engine_t *e, wave_t *w);
void engine_verify_sample(engine_t *e, wave_t *w);
bool engine_verify_judge(engine_t *e, wave_t *w);
void engine_verify_hold(engine_t *e, wave_t *w);
/* The measured inflow no route explains (engine_verify.c): fills every
 * hub's plan_site_t.inflow_unrouted_cps from its sources' recent flows
 * (after engine_build_input's per-site loop); and, when source i's route
 * acknowledged as `now` stops sending to a hub `was` sent to, forgets its
 * recent flow there (calls sent before the change are no flow now). */
void engine_inflow_input(engine_t *e);
void engine_inflow_acked(engine_t *e, size_t i, const route_t *was, const route_t *now);
/* For status: why site i's planned move waits ("" none): its rule's wave
 * in progress, and a source of it whose calls did not move. */
void engine_verify_waiting_note(engine_t *e, size_t i, const plan_route_t *pr, char *buf,
                                size_t len);
/* The source of the rule's wave in progress whose calls did not move (its
 * moved alarm stands), or NULL: what the rule's next wave waits for. */
const char *engine_verify_held_by(const engine_t *e, rule_kind_t kind, uint64_t rule_id);
/* The rule's wave in progress, if any, stops holding its next moves back:
 * an operator amended the rule, and its move is decided anew. */
void engine_end_waves(engine_t *e, rule_kind_t kind, uint64_t rule_id);

/* ---- operator replies, shared by engine_ops.c and engine_rules.c ---- */

/* A small arena for building protobuf replies: every allocation is freed
 * at once; `failed` says one of them ran out of memory. */
typedef struct engine_arena_blk {
  struct engine_arena_blk *next;
  max_align_t data[];
} engine_arena_blk_t;

typedef struct {
  engine_arena_blk_t *head;
  int failed;
} engine_arena_t;

void *engine_arena_alloc(engine_arena_t *a, size_t n);
char *engine_arena_str(engine_arena_t *a, const char *s);
void engine_arena_free(engine_arena_t *a);
/* Every live site whose route is not known here (engine_route_seen not
 * KNOWN): their count, and the first ten slugs in *names (allocated in a;
 * the slugs are the registry's, valid until the reply is sent). A plan's
 * and `next`'s note (engine_plan.c). 0, or NIRC_ENOMEM. */
int engine_routes_not_known(engine_t *e, engine_arena_t *a, char ***names, size_t *n_names,
                            uint32_t *count);
void engine_send_reply(engine_t *e, void *client, Nirc__OperatorReply *rep);
/* Sends a reply built in arena `a` (then frees it); `built` says whether
 * every allocation succeeded; `warning` (may be NULL) rides along. */
void engine_send_built_reply(engine_t *e, void *c, uint64_t rid, engine_arena_t *a, bool built,
                             Nirc__OperatorReply *rep, const char *warning);
void engine_reply_error(engine_t *e, void *c, uint64_t request_id, Nirc__ErrorCode code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Refuses an operator request with `code`: INVALID when the request's own
 * content is wrong (a bad value, an unknown site: the operator fixes the
 * command, nircctl exits 2), REFUSED when the state says no (capacity, a
 * conflict: exit 1). Both are logged and audited as "<op>-refused"; the
 * message and target are escaped (common/safetext.h). */
void engine_refuse(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                   Nirc__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* engine_refuse with a body that explains the refusal: `rep` (borrowed;
 * its body set by the caller, may be NULL: none) is sent with ok false
 * and the error. */
void engine_refuse_with(engine_t *e, const engine_req_t *rq, const char *op, const char *target,
                        Nirc__ErrorCode code, Nirc__OperatorReply *rep, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
int engine_copy_slugs(slug_list_t *l, char **v, size_t n, const char *what, char *err,
                      size_t errlen);
/* "a,b,c" from a request's list of names, for audit targets. */
void engine_join(char **v, size_t n, char *buf, size_t len);

/* ---- plans and capacity verdicts (engine_plan.c) ---- */

/* The protobuf form of a hub's prediction; `p` (may be NULL) is the plan
 * it comes from, for the sources the hub takes. */
void engine_fill_prediction(engine_arena_t *a, const engine_t *e, const plan_t *p,
                            const plan_capacity_t *pc, Nirc__CapacityPrediction *cp);
/* Runs the planner on the live state with `extra` (may be NULL) added to
 * the active cutovers, for a dry run or a refusal check. The sites of
 * `ahead` (may be NULL: the live loads only), the move being checked,
 * are planned on the load ahead (engine_ahead.c), and its hubs'
 * predictions say what they were made on. */
int engine_trial_plan(engine_t *e, const cutover_t *extra, const cutover_t *ahead, plan_t *out);

/* Whether site i now sends calls to a site flagged in focus[] (by site
 * index) other than itself (engine_plan.c). */
bool engine_sends_to_focus(engine_t *e, size_t i, const bool *focus);

/* ---- the load ahead of a move (engine_ahead.c) ---- */

/* One site of the move: its own load live and forecast for the coming
 * half hour, in Erlangs. */
typedef struct {
  size_t idx;                /* site index */
  bool known;                /* a forecast covers the half hour */
  bool raised;               /* planned on the forecast (e->psites changed) */
  engine_demand_kind_t kind; /* of the forecast, when known */
  double live_erl, fc_erl;   /* fc_erl: the larger of the half hour's slots */
  double fc_cps, fc_aht;     /* what gives fc_erl */
  double raised_erl;         /* planned on, when raised */
  char why[80];              /* no forecast: why ("no history") */
} engine_ahead_site_t;

/* The sites of a move: its sources and hubs, and the sites whose calls go
 * to one of them now (a hub moved away hands its sources on; a hub's
 * sources stay). Owned arrays: engine_ahead_free. */
typedef struct {
  engine_ahead_site_t *site;
  unsigned n;
  long *pos;              /* per site index: its place in site[], -1: none */
  int64_t from_ms, to_ms; /* the half hour, business time */
  char span[24];          /* its slots in the forecast's local time: "07:00-07:30" */
} engine_ahead_t;

/* After engine_build_input: raises in e->psites each site of `move` whose
 * forecast ahead is above its live load, and keeps both in `ah`. 0 or
 * NIRC_ENOMEM (nothing raised then). */
int engine_ahead_raise(engine_t *e, const cutover_t *move, engine_ahead_t *ah);
/* After the run: each capacity row of a hub the move touches says what it
 * was predicted on (plan_capacity_t.load_on). */
void engine_ahead_annotate(const engine_t *e, engine_ahead_t *ah, plan_t *p);
void engine_ahead_free(engine_ahead_t *ah);
/* In engine_build_input: the forecast for the next half hour of every
 * enabled overflow rule's source and hubs, and of the sources of every
 * rule that may send to those hubs (cutovers `cut`, the plan's), into
 * their plan_site_t's ahead_* (the overflow check ahead,
 * planner_overflow.c). */
void engine_ahead_overflow_input(engine_t *e, const cutover_t *cut, size_t n_cut);
/* The same for the sites of rule `o` alone (one being tried). */
void engine_ahead_overflow_rule(engine_t *e, const overflow_rule_t *o, const cutover_t *cut,
                                size_t n_cut, int64_t now);
/* Overflow rule `o` (new, or a changed one in the place of its old self)
 * planned as if it engaged now (plan_input_t.overflow_trial_id), the plan
 * narrowed to its source and hubs, in arena a: each hub's prediction,
 * live and on the load ahead (load_on). NULL without memory. */
Nirc__PlanReply *engine_overflow_check(engine_t *e, engine_arena_t *a, const overflow_rule_t *o);
/* "live", "forecast", "live_unchecked"; "" for the loads given. */
const char *engine_load_basis_name(plan_load_basis_t b);
/* "06:30-07:30": the forecast slots from the one holding from_ms to the
 * one holding to_ms, in the local time the forecast of `kind` uses
 * (engine_forecast.c). */
void engine_forecast_span(const engine_t *e, engine_demand_kind_t kind, int64_t from_ms,
                          int64_t to_ms, char *buf, size_t len);
/* Answers a dry run, or a refusal (some source would not move; without
 * --force), of the move that `trial` (freed here) plans for `cut`; the
 * plan shown is narrowed to the cutover's sources and hubs. Returns true
 * when the real change may go ahead (nothing has been answered then);
 * *forced then holds what --force overrides (the caller owns it). */
bool engine_judge_trial(engine_t *e, const engine_req_t *rq, plan_t *trial, const cutover_t *cut,
                        bool dry_run, bool force, const char *refused_action,
                        engine_forced_t *forced);
/* engine_plan.c: appends printf text to buf, cutting it short (with
 * "...") when full; a prediction's service level (0 when unstable). */
void engine_append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double engine_sl(const erlang_prediction_t *p);
/* Plans schedule `s` alone (enabled) at business time `at` on the demand
 * and roster forecast for then (live load without a forecast, or when
 * `at` is now), as `nircctl plan --schedule` and `nircctl next` show it.
 * 0 or NIRC_ENOMEM; `out` is released with planner_free. */
int engine_schedule_trial(engine_t *e, const schedule_t *s, int64_t at, plan_t *out);
/* The next window of schedule s (enabled as if on; *at: when to plan it,
 * a minute in, or now while in force), as nircctl plan --schedule lays
 * it. false: no window ahead (every day it runs is excepted). */
bool engine_schedule_ahead(engine_t *e, const schedule_t *s, int64_t *at, int64_t *start_ms,
                           int64_t *end_ms);

/* The instants a schedule check judges at most: every half hour a
 * 24-hour window touches (49 when it starts off the half hour). */
#define ENGINE_CHECK_INSTANTS 49
/* The capacity check of a schedule add or set: its next window planned
 * by engine_schedule_trial, judged hub by hub. Flat (no pointers). */
typedef struct {
  char hub[SCENARIO_SLUG_MAX];
  bool known;   /* a forecast (or the live load while in force) was there */
  bool figures; /* the plan sends it calls: sl/needed/agents hold */
  bool stable, misses;
  double sl;
  unsigned needed, agents;
  char forecast[160]; /* "forecast from 4 weeks of history", "no history: live load" */
} engine_hub_check_t;
/* How a SET's check was compared with the old schedule
 * (engine_schedule_no_worse). */
typedef enum {
  ENGINE_OLD_WINDOW_NONE = 0, /* not compared */
  ENGINE_OLD_WINDOW_COVERS,   /* the old judged at the same instant */
  ENGINE_OLD_WINDOW_OUTSIDE,  /* the instant is not in the old window: judged on its own */
} engine_old_window_t;
typedef struct {
  bool checked;          /* false: not_checked says why */
  char not_checked[320]; /* "no window ahead ...", "no forecast for shaanxi ..." */
  int64_t window_start_ms;
  int64_t at_ms; /* the instant shown in hubs[]: the worst judged (engine_schedcheck.c) */
  /* The window judged at each of its half hours (the first a minute in,
   * or now while in force): how many had a verdict and how many missed
   * the floor; each instant and whether it missed (for a set's no-worse
   * comparison, instant by instant). */
  unsigned n_instants, n_judged, n_missed;
  int64_t inst_at[ENGINE_CHECK_INSTANTS];
  bool inst_misses[ENGINE_CHECK_INSTANTS];
  engine_hub_check_t hubs[RULES_MAX_SITES];
  unsigned n_hubs;
  bool refused; /* a hub misses the floor or is unstable */
  bool forced, dry_run;
  char refusal[400]; /* "shaanxi predicted SL 41% ... would need 45 agents (has 30)" */
  /* Checked, but some site's figures for the window are not known (no
   * forecast then, agents not known): the hubs whose prediction would
   * count them have no verdict; the others are judged. */
  bool partial;
  char not_known[2 * RULES_MAX_SITES][SCENARIO_SLUG_MAX]; /* those sites */
  unsigned n_not_known;
  /* A change whose window misses the floor as the schedule's did, no
   * worse and no longer: not refused (engine_rules.c). */
  bool no_worse;
  engine_old_window_t old_window;
} engine_sched_check_t;
/* Fills *c for schedule s (in the place of its old self when s->id is
 * one). 0 or NIRC_ENOMEM. */
int engine_schedule_check(engine_t *e, const schedule_t *s, engine_sched_check_t *c);
/* Whether changing `old` into `s`, whose check is `nc` (refused), makes
 * its next window no worse, hour for hour (engine_plan.c says the rule;
 * it sets nc->old_window); when not, `why` says why for the refusal (""
 * when there is nothing to say). */
bool engine_schedule_no_worse(engine_t *e, const schedule_t *old, const schedule_t *s,
                              engine_sched_check_t *nc, char *why, size_t len);
/* The check as a reply carries it (in arena a; NULL without memory). */
Nirc__ScheduleCheck *engine_check_reply(engine_arena_t *a, const engine_sched_check_t *c);
/* The check as the audit entry keeps it (a new object, NULL without
 * memory): the JSON nircctl shows (checkjson.c) of engine_check_reply. */
json_t *engine_schedule_check_json(const engine_sched_check_t *c);

/* The forced hubs' predictions as the audit trail keeps them (a new
 * array, possibly empty), and releasing them. */
json_t *engine_forced_json(const engine_forced_t *f);
void engine_forced_free(engine_forced_t *f);

/* engine_alarms.c: a site's time down in words ("45 s", "7 min", "3 h";
 * buf may be NULL) and a key that changes exactly when they do. */
uint32_t engine_down_for(uint64_t down_ms, char *buf, size_t len);

#endif
