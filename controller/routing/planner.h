/* planner: from live site state and the rules, every site's desired route
 * (pure code: a snapshot in, a plan out; no I/O, no clock reads).
 *
 * Precedence: emergency cutover > schedule > overflow > default (home).
 * Hub eligibility: a hub is eligible for a source when it is online (not
 * stale, not offline), is not itself moved away, and is not excluded (a
 * hub whose move failed and was rolled back). A site that sends traffic
 * away never receives any: routes never chain and never loop. When a
 * rule's preferred hub is not eligible the next one in its list is tried;
 * when none is, the source stays (or returns) home and an alarm says why.
 *
 * Capacity (Erlang C) is checked before a move: a hub's offered load after
 * the move is its own demand, plus calls measured arriving from sources no
 * route sends there (inflow_unrouted_cps), plus the demand it receives; staffed agents
 * are logged in minus not ready. A move that leaves the hub unstable or
 * below the service-level floor is refused (unless the rule is forced):
 * the planner tries the next hub, and if none passes the source stays home
 * with an alarm that says, for each hub, why not (how many agents it would
 * need). The plan has one capacity entry per hub: everything it takes,
 * predicted together, and the sources it turned down; a forced move that
 * fails the check is marked there, with the prediction the force overrides.
 *
 * Damping: capacity-driven placement has hysteresis, so a hub at the edge
 * of its capacity does not make sources bounce. An established move (the
 * source already sends to that hub) is placed first and kept while the
 * prediction stays above the keep floor (target - keep_margin), and below
 * it for hold_s; a source a hub refused or withdrew for capacity waits
 * reentry_s, doubling with each further withdrawal within the hour, and
 * then moves only at target + enter_margin. A forced cutover skips all of
 * it, as it skips the check.
 *
 * Overflow and damping are stateful: the caller keeps
 * planner_overflow_state_t and planner_hold_t between runs and passes
 * them back in. */
#ifndef NIRC_PLANNER_H
#define NIRC_PLANNER_H

#include "capacity.h"
#include "erlang.h"
#include "rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_ROUTE_MAX 8

/* The id of a rule being tried before it exists (nircctl plan, a dry run,
 * a cutover's capacity check): it is decided after every real rule of its
 * kind, as the rule made from it will be, and the plan's texts name it
 * without an id ("cutover: REASON", not an id it may never get). */
#define PLAN_DRAFT_ID UINT64_MAX

typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint32_t permille;
} plan_share_t;

/* One site as the planner sees it. */
typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  bool is_hub;
  bool online; /* link up and fresh (state ONLINE) */
  /* Why it is not online, for the words of a refusal (0, a zeroed input:
   * "is offline"). */
  enum {
    PLAN_DOWN_OFFLINE = 0,
    PLAN_DOWN_STALE,      /* link up, no fresh report */
    PLAN_DOWN_NEVER_SEEN, /* has not connected to this controller */
    PLAN_DOWN_NO_REPORT,  /* connected, its first report not here yet */
    PLAN_DOWN_PBX,        /* its agent cannot read its PBX */
  } down_why;
  double demand_cps; /* calls per second originating at this site (own demand,
                        wherever answered), smoothed */
  /* Hub side: calls per second other sites' proxies measured sending here
   * (LoadReport.routed_to, routing measured) while NIRC routes them
   * nowhere near it (a PBX that does not route as told, a manual route).
   * Added to the load its capacity checks see (before: and after), never
   * to demand_cps: its own demand and forecasts stay its own. Calls NIRC
   * does route here are counted as their sources' demand x share. */
  double inflow_unrouted_cps;
  char inflow_from[SCENARIO_SLUG_MAX]; /* its largest source, for people ("": none) */
  double inflow_from_cps;
  double forecast_cps; /* expected demand at the next schedule start (0: use demand_cps) */
  double aht_s;        /* average handle time (0: not known) */
  /* Its own calls are neither measured for long enough nor forecast:
   * demand_cps is not a count. Its load is unknown then, and also when it
   * has calls and aht_s is 0. A source whose load is unknown is not moved
   * and a hub whose load is unknown takes no new source unless the move
   * is forced: a capacity check on a zero nobody measured would pass
   * anything. false (a zeroed input): known. */
  bool demand_unknown;
  unsigned staffed; /* agents logged in minus not ready (or configured) */
  /* Where staffed comes from. CAPACITY_UNKNOWN: the hub does not measure
   * its agents and has no configured capacity; it takes no source unless
   * the move is forced. cap_note says it for people ("configured roster,
   * 28 agents at 22:00"). Zero (a zeroed input): measured. */
  capacity_source_t cap_source;
  char cap_note[160];
  double wait_s; /* smoothed longest wait */
  double queue;  /* smoothed calls in queue */
  double sl;     /* smoothed service level 0..1 (1 when nothing offered) */
  /* The last report does not measure it (or there is none): the smoothed
   * figure above is an old value, not the site's now. An overflow rule
   * neither engages nor releases on it. false (a zeroed input): measured. */
  bool wait_unknown, queue_unknown, sl_unknown;
  bool excluded; /* a failed move was rolled back: do not move it, do not use it as hub */
  /* The hub this site sends its calls to now ("" at home): its
   * established move, judged with the keep floor (see Damping). */
  char cur_hub[SCENARIO_SLUG_MAX];
  /* The caller's hub health gate, for hubs: hub_grace keeps a hub that is
   * not online eligible (lost for less than the grace period); hub_waiting
   * keeps an online hub ineligible (back after a loss, not yet healthy for
   * the verification window). Both false: eligibility is `online`. */
  bool hub_grace, hub_waiting;
  /* Its own calls over the next half hour, for the overflow check
   * (planner_overflow.c): the forecast's calls per second and handle time
   * (the caller's look ahead, engine_ahead.c). ahead_known false (a
   * zeroed input): no forecast covers it; the check is then on the live
   * load alone, and the plan says a rise could not be checked. */
  bool ahead_known;
  double ahead_cps, ahead_aht_s;
} plan_site_t;

/* Damping state of one site as a source, kept by the caller between runs
 * (like planner_overflow_state_t) and passed back in. */
typedef struct {
  /* Times on the damping clock (plan_input_t.real_ms). */
  int64_t strain_since_ms; /* at its hub, predicted below the keep floor since (0: not) */
  int64_t withdrawn_ms;    /* a hub refused it or withdrew it for capacity (0: not waiting) */
  int64_t last_withdrawn_ms;
  unsigned withdrawals; /* in the hour up to last_withdrawn_ms: the re-entry backoff */
} planner_hold_t;

typedef struct {
  uint64_t rule_id;
  bool engaged;
  int64_t since_ms;  /* when it engaged or released */
  uint32_t permille; /* share moved while engaged */
} planner_overflow_state_t;

typedef struct {
  const plan_site_t *sites;
  size_t n_sites;
  const cutover_t *cutovers;
  size_t n_cutovers; /* only ACTIVE ones are used */
  const schedule_t *schedules;
  size_t n_schedules;
  const overflow_rule_t *overflows;
  size_t n_overflows;
  const planner_overflow_state_t *overflow_state; /* n_overflows entries, or NULL */
  /* An overflow rule being tried (nircctl overflow add/set): planned as
   * if it engaged now, to show where its spill would go and whether the
   * hubs take it, live and on the load ahead. The margin (the hub answers
   * faster than the source's wait now) is not asked: the wait it is
   * compared with is now's, not the peak's. 0: none. */
  uint64_t overflow_trial_id;
  int64_t now_ms;
  double sl_target;      /* default 0.80 */
  double sl_threshold_s; /* default 20 */
  /* Damping (0: none, the plain check). An established move stays while
   * the prediction is at least sl_target - keep_margin, and below that for
   * up to hold_s; a source a hub refused or withdrew for capacity waits
   * reentry_s (doubled for each further withdrawal within an hour, at most
   * an hour) and then needs sl_target + enter_margin. */
  double keep_margin, enter_margin;
  uint32_t hold_s, reentry_s;
  /* The clock hold and re-entry run on, if not now_ms (0: now_ms, the
   * business clock, as nircd runs them: the load they judge moves on it). */
  int64_t real_ms;
  const planner_hold_t *holds; /* n_sites entries from the previous run, or NULL */
} plan_input_t;

typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  plan_share_t route[PLAN_ROUTE_MAX]; /* full route, shares sum to 1000 */
  unsigned n_route;
  int64_t revert_at_ms; /* 0: open-ended (or home) */
  rule_kind_t kind;     /* which rule decided it */
  uint64_t rule_id;
  char reason[128];   /* "cutover 7: Wuhan lockdown", "schedule 2 (night)", "default" */
  unsigned n_inbound; /* hub side: sources sending here */
  /* Their positions in plan_t.routes (and plan_input_t.sites). Indexes,
   * not names: a plan holds one route per site, and 2 KiB of names each
   * made a plan of 20,000 sites 50 MB, allocated and faulted in on every
   * evaluation. */
  uint32_t inbound[RULES_MAX_SITES];
  unsigned wave_size; /* from the rule (schedules); 0 = move at once */
  char note[160];     /* why the move is held despite a failing check ("" none) */
} plan_route_t;

/* What a hub's prediction was made on. The planner is given loads, not
 * told where they come from: the caller that raised some of them to the
 * forecast ahead (engine_ahead.c) says so after the run; zero, the
 * loads given. */
typedef enum {
  PLAN_LOAD_GIVEN = 0, /* the loads given: no forecast was asked (a tick's plan) */
  PLAN_LOAD_LIVE,      /* the live load: the forecast ahead is not higher */
  PLAN_LOAD_FORECAST,  /* the forecast ahead, above the live load of some site */
  PLAN_LOAD_UNCHECKED, /* the live load: a site has no forecast, its rise is not known */
} plan_load_basis_t;

typedef struct {
  plan_load_basis_t basis;
  double live_erl;     /* `after` on the live loads */
  double forecast_erl; /* `after` on the forecast ahead; < 0: not known for every site */
  char note[200];      /* "on the forecast for 07:00-07:30: load rising at henan" */
} plan_load_on_t;

/* One hub's prediction: one entry per hub that takes sources or turned
 * some down, whatever rules and how many sources are involved. */
typedef struct {
  char hub[SCENARIO_SLUG_MAX];
  erlang_prediction_t before; /* its own load only */
  erlang_prediction_t after;  /* with every source it takes (before, when none) */
  unsigned agents_needed;     /* to meet the target with them */
  unsigned n_sources;         /* the sources it takes (its route's inbound lists them) */
  /* It turned sources down for capacity (not forced): how many, their
   * names ("a, b", cut short when long), and its prediction with every
   * source it takes plus the largest of them. */
  bool refused;
  unsigned n_refused;
  char refused_sources[160];
  char largest_refused[SCENARIO_SLUG_MAX];
  erlang_prediction_t with_refused;
  unsigned with_refused_needed;
  /* It takes a forced move that fails the check: `after` is the
   * prediction the force overrides. */
  bool forced;
  capacity_source_t cap_source; /* of its agents (plan_site_t) */
  /* Some of the load it answers is not known (plan_site_t.demand_unknown):
   * `after` counts it as nothing; only a forced move put it here. */
  bool load_unknown;
  char cap_note[160];
  plan_load_on_t load_on; /* filled by the caller (above) */
} plan_capacity_t;

typedef enum {
  PLAN_ALARM_NO_HUB = 1,   /* no eligible hub: source stays home */
  PLAN_ALARM_CAPACITY,     /* every eligible hub fails the capacity check */
  PLAN_ALARM_UNKNOWN_SITE, /* a rule names a site not in the snapshot */
  PLAN_ALARM_WAITING,      /* after a capacity withdrawal, the re-entry wait runs */
} plan_alarm_kind_t;

/* Why one hub did not take a source, for a NO_HUB, CAPACITY or WAITING
 * alarm: the same words as the alarm's message, per hub. */
typedef struct {
  char hub[SCENARIO_SLUG_MAX];
  bool capacity;                /* turned down for capacity: the agents below are set */
  unsigned agents_needed;       /* to take the source at the floor it was held to */
  unsigned agents;              /* staffed now */
  char why[160];                /* "would need 41 agents (has 30)", "is offline", ... */
  capacity_source_t cap_source; /* of agents (when the hub is a known site) */
  bool unmeasured;              /* refused: its agents are neither measured nor configured */
} plan_hub_verdict_t;

#define PLAN_ALARM_HUBS 8 /* verdicts kept per alarm; the message names every hub */

typedef struct {
  plan_alarm_kind_t kind;
  char site[SCENARIO_SLUG_MAX];
  rule_kind_t rule_kind;
  uint64_t rule_id;
  char message[256];
  plan_hub_verdict_t hubs[PLAN_ALARM_HUBS]; /* the rule's hubs in its order */
  unsigned n_hubs;
} plan_alarm_t;

typedef struct {
  plan_route_t *routes;
  size_t n_routes; /* one per input site, same order */
  plan_capacity_t *capacity;
  size_t n_capacity; /* one per hub that takes sources or turned some down */
  plan_alarm_t *alarms;
  size_t n_alarms;
  planner_overflow_state_t *overflow_state; /* n_overflows entries: keep for the next run */
  planner_hold_t *holds;                    /* n_routes entries: keep for the next run */
} plan_t;

/* Computes the plan. Returns 0 or NIRC_ENOMEM. `out` must be released
 * with planner_free(). Deterministic: the same input gives the same plan. */
int planner_run(const plan_input_t *in, plan_t *out);
void planner_free(plan_t *p);
/* The route planned for `slug`, or NULL. */
const plan_route_t *planner_route(const plan_t *p, const char *slug);

#endif
