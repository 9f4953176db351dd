/* planner-int.h: what the planner's files share (planner.c decides the
 * cutovers and schedules and writes the plan; planner_overflow.c decides
 * the overflow rules). Internal to the planner module: nothing outside
 * controller/routing/planner*.c includes it. */
#ifndef NIRC_PLANNER_INT_H
#define NIRC_PLANNER_INT_H

#include "planner.h"

#define PLANNER_DEFAULT_SL_TARGET      0.80
#define PLANNER_DEFAULT_SL_THRESHOLD_S 20.0
/* Overflow shares move in steps of this many per mille. */
#define PLANNER_OVERFLOW_STEP 50u
#define PLANNER_NONE          SIZE_MAX

/* Why a hub cannot take a source, for the alarm message. */
typedef enum {
  PLANNER_HUB_OK = 0,
  PLANNER_HUB_UNKNOWN,
  PLANNER_HUB_SELF,
  PLANNER_HUB_NOT_HUB,
  PLANNER_HUB_EXCLUDED,
  PLANNER_HUB_OFFLINE,
  PLANNER_HUB_RECOVERING, /* back after a loss, not yet healthy for the window */
  PLANNER_HUB_AWAY,
  PLANNER_HUB_FULL,
  PLANNER_HUB_CAPACITY,
  PLANNER_HUB_SLOWER,
  PLANNER_HUB_WAITING,      /* the source's re-entry wait after a withdrawal runs */
  PLANNER_HUB_UNMEASURED,   /* its agents are neither measured nor configured */
  PLANNER_HUB_LOAD_UNKNOWN, /* its own load, or a source's it takes, is not known */
} planner_verdict_t;

/* The planner's working view of one site. The committed fields hold what
 * the phases decided so far; the r_ fields are the scratch copy a round of
 * the current phase works on, so a round can be thrown away. */
typedef struct {
  /* What it answers before any source is placed: its own demand plus the
   * measured inflow no route explains (plan_site_t.inflow_unrouted_cps). */
  double own_erl, own_cps;
  bool away;       /* committed: sends its traffic to `hub` */
  bool pending;    /* a candidate source of the phase being decided */
  bool candidate;  /* some rule wanted to move it (damping state is kept) */
  size_t cur;      /* the hub it sends to now (cur_hub), or PLANNER_NONE */
  double erl, cps; /* committed offered load answered here */
  unsigned n_in;   /* committed number of senders */
  bool forced;     /* committed: takes a forced move that fails the check */
  /* Its own load is unknown (planner_load_unknown, computed once). */
  bool own_unknown;
  /* committed: some of the load answered here is unknown (its own, or a
   * source's booked by force or kept as established) */
  bool unknown;
  double r_erl, r_cps;
  unsigned r_n_in;
  bool r_forced, r_unknown;
  /* As a hub, for the overflow check ahead (planner_overflow.c): how far
   * the next half hour's forecast of the sources it takes rises above the
   * loads booked for them (Erlangs and calls per second, at their
   * shares), whatever rule moved them, and the first of them with no
   * forecast (PLANNER_NONE: none). Committed, and the round's (r_). */
  double in_raise_erl, in_raise_cps, r_in_raise_erl, r_in_raise_cps;
  size_t in_blind, r_in_blind;
  /* As a hub: what the overflow check on the load ahead found for the
   * spills it takes (plan_capacity_t.load_on; PLAN_LOAD_GIVEN: none
   * checked), and the Erlangs ahead above its planned load. */
  plan_load_basis_t ahead_basis;
  double ahead_raise_erl;
  char ahead_unknown[SCENARIO_SLUG_MAX]; /* a site of it with no forecast */
  /* The route decided for this site as a source. */
  size_t hub;
  uint32_t permille;
  rule_kind_t kind;
  uint64_t rule_id;
  int64_t revert_at_ms;
  unsigned wave_size;
  char reason[128];
  char note[160];
} planner_site_t;

/* One source a rule wants to move in the phase being decided. */
typedef struct {
  size_t src;
  rule_kind_t kind;
  uint64_t rule_id;
  char label[96];   /* "cutover 7", "schedule 3 (night)": names the rule in alarms */
  char reason[128]; /* for the route */
  const slug_list_t *hubs;
  uint32_t permille;
  double erl, cps; /* the load that moves */
  bool force;
  bool check_asa; /* overflow: the hub must answer faster by margin_s */
  uint32_t margin_s;
  int64_t revert_at_ms;
  unsigned wave_size;
  size_t overflow_slot; /* overflow: index into out->overflow_state */
  bool dropped;
  bool placed;
  size_t hub;
  /* Of the last try: placed on its established hub below the keep floor
   * (held), and whether some hub refused it for capacity. */
  bool strained, cap_refused, held_back;
  double strained_sl;
  /* Overflow engaging or growing its spill: the hub must take the share
   * on the load ahead too (planner_overflow_ahead). want_permille is the
   * share asked, keep_permille what it moved in the previous run (0:
   * engaging), kept when the load ahead will not take the growth. Of the
   * last try: ahead_kept (grown share not taken, keep_permille moves),
   * ahead_refused (the hub's load ahead turned it down). */
  bool check_ahead;
  uint32_t want_permille, keep_permille;
  bool ahead_kept, ahead_refused;
  /* The service level the last hub judged was held to (the target, less
   * keep_margin for a move that stands, plus enter_margin after a capacity
   * withdrawal): the agents a refusal says it would need are for this one,
   * so "would need 30 (has 30)" is never said of a hub that missed a
   * raised floor. */
  double judged_floor;
  char floor_words[64];
} planner_cand_t;

typedef struct {
  const char *slug;
  size_t idx;
} planner_slug_t;

/* Hub `hub` turned source `src` down for capacity; erl/cps is the load
 * that would have moved. */
typedef struct {
  size_t hub, src;
  double erl, cps;
} planner_refusal_t;

typedef struct {
  uint64_t id;
  size_t idx;
} planner_order_t;

typedef struct {
  const plan_input_t *in;
  double sl_target, sl_threshold_s;
  planner_slug_t *by_slug; /* n_sites entries sorted by slug, then index */
  planner_site_t *st;      /* n_sites entries, snapshot order */
  plan_alarm_t *alarms;
  size_t n_alarms, cap_alarms;
  planner_hold_t *holds; /* n_sites: the damping state this run leaves (out->holds) */
  /* Refusals: the first n_refusals_kept are committed, up to n_refusals
   * the current round's (reset and committed with the loads). */
  planner_refusal_t *refusals;
  size_t n_refusals, n_refusals_kept, cap_refusals;
  bool nomem;
} planner_ctx_t;

/* ---- planner.c's helpers, for planner_overflow.c ---- */

/* Smoothed figures can be missing: a negative or non-finite rate is 0. */
double planner_rate(double x);
double planner_aht(const plan_site_t *s);
/* Why site s's own load cannot be predicted, for people; NULL when it can. */
const char *planner_load_unknown(const plan_site_t *s);
/* qsort order of planner_order_t: by rule id, then position. */
int planner_cmp_order(const void *a, const void *b);
/* Handle time of a mix of traffic: Erlangs per call per second (the
 * hub's own when it answers nothing). */
double planner_mix_aht(double erl, double cps, const plan_site_t *hub);
/* Index of the first site called `slug`, or PLANNER_NONE. */
size_t planner_find(const planner_ctx_t *ctx, const char *slug);
/* Raises an alarm; returns it, or NULL when out of memory. */
plan_alarm_t *planner_alarm(planner_ctx_t *ctx, plan_alarm_kind_t kind, const char *site,
                            rule_kind_t rule_kind, uint64_t rule_id, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* "cutover 7", "schedule 3 (night)"; without the id for PLAN_DRAFT_ID. */
void planner_label(char *buf, size_t len, const char *kind, uint64_t id, const char *name);
/* Appends ", text" (or "text" to an empty buffer), truncating quietly. */
void planner_append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Alarms for every site a rule names that the snapshot does not have. */
void planner_unknown_sites(planner_ctx_t *ctx, const slug_list_t *list, rule_kind_t kind,
                           uint64_t id, const char *label, const char *role);
/* Fills the fields every candidate shares. */
void planner_cand_init(planner_cand_t *c, size_t src, rule_kind_t kind, uint64_t id,
                       const slug_list_t *hubs);
/* Whether a rule may take `idx` as a source in this phase. */
bool planner_source_free(planner_ctx_t *ctx, size_t idx, rule_kind_t kind, uint64_t id,
                         const char *label);
/* Decides one phase of candidates (planner.c's top comment). */
void planner_phase(planner_ctx_t *ctx, planner_cand_t *cands, size_t n);

/* The overflow phase (planner_overflow.c): steps every rule's state into
 * out->overflow_state and moves the engaged rules' shares. 0 or
 * NIRC_ENOMEM. */
int planner_overflows(planner_ctx_t *ctx, plan_t *out);
/* Candidate c, placed on hub h in the current round: its forecast's rise
 * over the load booked for it, into h's r_in_raise_* (or its name into
 * r_in_blind when it has no forecast). Every rule's, so that a spill is
 * checked ahead on everything the hub takes. */
void planner_overflow_book(planner_ctx_t *ctx, const planner_cand_t *c, size_t h);
/* An overflow candidate back to the share it asks, before a try. */
void planner_overflow_unsize(const planner_ctx_t *ctx, planner_cand_t *c);
/* Whether hub h, having passed the live check for overflow candidate c
 * (check_ahead), takes it on the load ahead with service level `floor`;
 * may shrink c to keep_permille (see planner_overflow.c). On false,
 * *needed is the agents the load ahead needs. */
bool planner_overflow_ahead(planner_ctx_t *ctx, planner_cand_t *c, size_t h, double floor,
                            unsigned *needed);
/* Hub h's capacity row `pc` says what its spills were checked on ahead
 * (h->ahead_basis is not PLAN_LOAD_GIVEN). */
void planner_overflow_load_on(const planner_site_t *h, const plan_capacity_t *pc,
                              plan_load_on_t *lo);

#endif
