/* sites: the controller's live view of every site (pure code, no I/O).
 *
 * Each site has a link state machine:
 *
 *   NEVER_SEEN --hello--> ONLINE --no report for stale_after--> STALE
 *                           ^  \                                 |
 *                           |   `--link down--> OFFLINE <--------'
 *                           `--hello------------'   (STALE --report--> ONLINE)
 *
 * sites_set_state() is the only way to change state; it refuses any other
 * transition and logs "old -> new". The registry also keeps the last load
 * report and folds reports into per-minute aggregates that the caller
 * stores in load_minute. Times are milliseconds: `now` is the controller's
 * real clock for freshness, `business_ms` its (possibly accelerated)
 * business clock for aggregation minutes. */
#ifndef NIRC_SITES_H
#define NIRC_SITES_H

#include "capacity.h"
#include "nirc.pb-c.h"
#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  SITE_NEVER_SEEN = 0,
  SITE_ONLINE,
  SITE_STALE,
  SITE_OFFLINE,
} site_state_t;

/* A site's place in the configuration, apart from its link state: sites
 * are added and removed while nircd runs (nircctl site, import-sites). A
 * removed site keeps its index (per-site arrays elsewhere are indexed by
 * it, and its history stays in the database); its agent is refused and
 * nothing routes to or from it. Adding its slug again makes it LIVE at the
 * same index.
 *
 *   LIVE --sites_remove--> REMOVED --sites_revive--> LIVE */
typedef enum {
  SITE_LIVE = 0,
  SITE_REMOVED,
} site_life_t;

/* A copy of the fields of the last LoadReport (no protobuf pointers kept). */
typedef struct {
  int64_t timestamp_ms;
  uint32_t interval_ms;
  uint32_t offered, answered, abandoned, in_queue, queue_peak, longest_wait_ms;
  uint32_t logged_in, ready, talking, not_ready, aht_ms;
  uint32_t answered_within, sl_threshold_s, from_other_sites, routed_away;
  /* Bits of NIRC__LOAD_FIGURE__*: figures the adapter could not measure
   * (their fields are 0 and mean "not measured"). */
  uint32_t not_measured;
  bool routing_measured; /* LoadReport.routing_measured */
  bool pbx_unreadable;
  char pbx_error[128];
} site_report_t;

/* Per-minute aggregate of the reports received in one business minute. */
typedef struct {
  int64_t minute_ms; /* start of the minute, business clock; 0 = empty */
  uint32_t reports, unreadable;
  uint64_t offered, answered, abandoned, answered_within, from_other_sites, routed_away;
  uint32_t max_queue, max_wait_ms;
  double sum_logged_in, sum_ready, sum_talking, sum_aht_ms;
  /* Reports whose agents, queue and handle time were measured: the
   * averages above are over these only (0: not measured this minute). */
  uint32_t agents_reports, queue_reports, aht_reports;
} site_minute_t;

#define SITE_ROUTE_MAX 8

/* Calls a source reported sent to one other site (LoadReport.routed_to),
 * summed since the controller started. */
#define SITES_SENT_MAX 8
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint64_t calls;
  uint64_t last_report;  /* reports_total when it last grew: the oldest is replaced when full */
  uint64_t first_report; /* reports_total before its first count (0: from the start) */
  double flow_calls;     /* decayed with SITES_METRIC_TAU_S: the recent rate's calls */
  uint64_t quiet_until;  /* reports up to this one add no flow (sites_flow_forget) */
} sites_sent_t;
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint32_t permille;
} site_share_t;

typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  char name_en[SCENARIO_NAME_MAX];
  char name_zh[SCENARIO_NAME_MAX];
  bool is_hub;
  double lat, lon; /* of the centre, for the routing map */
  site_life_t life;
  int64_t removed_ms;  /* LIVE: 0; REMOVED: when (real clock) */
  char removed_by[64]; /* REMOVED: who (operator name, or "import") */
  /* Changes made here (nircctl site) not yet durable: a snapshot of the
   * database read meanwhile may predate them and does not speak for the
   * site until they are (engine_sites.c, server_sites_sync). */
  unsigned change_pending;
  /* Monotonic ms (CLOCK_MONOTONIC, as uv_now) when the last such change
   * became durable: a snapshot whose load began before (with a margin for
   * the loop's cached clock) may predate it too (server_sites_sync). */
  uint64_t local_change_mono;

  site_state_t state;
  int64_t state_since_ms;
  int64_t last_seen_ms; /* Hello or last report, real clock */
  /* A second agent claimed this site while its link was healthy (and was
   * refused): when (real clock, 0: never) and from where, for the alarm. */
  int64_t duplicate_ms;
  char duplicate_addr[64];
  /* The agent's last PbxEvent (real clock, 0: none): its pbx alarm is
   * observed for a while after it (server.c), critical if not repaired. */
  int64_t pbx_event_ms;
  bool pbx_critical;
  char pbx_alarm[256];
  /* Its agent says it cannot write its state file (Hello, PbxEvent
   * STATE_NOT_SAVED): why, escaped; "" when it can (or does not say). Its
   * `agent` alarm is observed while the link is up (server_pbx.c). */
  char agent_state_why[256];
  /* The end of the certificate its agent's link presented (Unix ms, real
   * time; 0: not known): near it, its `agent` alarm warns (server_pbx.c). */
  int64_t agent_cert_not_after_ms;
  /* Since when (real ms; 0: readable or not reporting) its reports say its
   * PBX cannot be read: kept by server_pbx_observe, for its `agent` alarm. */
  int64_t pbx_unreadable_since_ms;
  void *conn; /* borrowed: the server's live connection, or NULL */
  char peer_addr[64];
  char adapter[16];

  /* Configured capacity (nircctl capacity, import-sites): what the planner
   * uses when the site does not measure its agents, and the bound its
   * reports are checked against. */
  capacity_t cap;
  /* The last report refused as implausible: when (real clock, 0: never)
   * and why, for the alarm; counts by reason for the metrics. */
  int64_t refused_ms;
  char refused_why[200];
  /* The agent's clock against this controller's, from its reports'
   * timestamps: the last offset of SERVER_CLOCK_OFFSET_MS or more
   * (business ms, positive: ahead) and when it was seen (real clock, 0:
   * never), for the clock alarm (net/server_engine_io.c). */
  int64_t clock_offset_ms, clock_offset_seen_ms;

  bool has_report;
  site_report_t last;
  int64_t last_report_ms; /* real clock when the last report arrived */

  site_share_t route[SITE_ROUTE_MAX]; /* current acknowledged route */
  unsigned route_len;
  char active_rule[64];

  site_minute_t minute;

  /* Calls other sites' reports say they sent here (LoadReport.routed_to),
   * since this controller started: what a hub absorbed even when its own
   * PBX cannot tell moved calls from its own (a hub behind a proxy reports
   * none of them). Shown, never added to the hub's offered or demand, so
   * that a hub reporting calls_from_other_sites itself is not counted
   * twice; its own demand stays offered - from_other_sites + routed_away. */
  uint64_t inbound_credited;

  /* As a source, since this controller started, for wave verification
   * (engine_verify.c takes differences of them): reports accepted, those
   * whose routing was measured (LoadReport.routing_measured, readable),
   * its own arrivals in readable reports (offered - from_other_sites +
   * routed_away, the calls its callers made wherever they were sent), and
   * what it reported sent to each other site (at most SITES_SENT_MAX
   * destinations: the least recently grown one is replaced). */
  uint64_t reports_total, routing_measured_total, own_calls_total;
  bool routing_measured; /* the last report's flag */
  sites_sent_t sent[SITES_SENT_MAX];
  unsigned n_sent;
  /* The recent rates' seconds (decayed like sent[].flow_calls): 0 when the
   * last report did not measure routing (no rate is known then). */
  double flow_secs;

  /* Smoothed figures for the planner (exponentially weighted). Rates are
   * per business second, as the reports' intervals are business time. */
  bool has_ewma;
  /* Demand as decayed sums of calls and of seconds (time constant
   * SITES_DEMAND_TAU_S), so the estimate does not depend on the report
   * period or the clock speed; the rate is calls / seconds. */
  double demand_calls, demand_secs;
  double aht_calls, aht_sum_s; /* answered calls and their handle time, decayed */
  double aht_s;                /* smoothed handle time (configured AHT until calls end) */
  double wait_s, queue, sl;    /* smoothed with SITES_METRIC_TAU_S, for overflow */
} site_t;

/* Smoothing time constants, in business seconds. Demand needs a quarter
 * of an hour to mean anything at night; overload signals must react
 * within a minute. */
#define SITES_DEMAND_TAU_S 900.0
#define SITES_METRIC_TAU_S 60.0

/* A site's smoothed load as decayed sums (the fields of site_t), as of
 * business time at_ms: what a new leader takes over from the stored
 * per-minute history (admin_load_rules) instead of starting from nothing. */
typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  int64_t at_ms;
  double demand_calls, demand_secs;
  double aht_calls, aht_sum_s;
} sites_load_t;

/* Takes `l` (decayed further to business time now_ms) where the site has
 * less evidence of its own: a leader that just started has heard a few
 * reports at most, the history holds the last hour. */
void sites_seed_load(site_t *site, const sites_load_t *l, int64_t now_ms);

/* Calls per business second originating at the site, with `prior_cps`
 * standing in for the part of `min_evidence_s` not yet observed. */
double sites_demand_cps(const site_t *site, double prior_cps, double min_evidence_s);

typedef struct sites sites_t;
struct sites {
  site_t *v; /* owned array */
  size_t n, cap;
  uint32_t stale_after_ms;
  /* Open-addressed index slug -> position + 1 (0: empty), at most half
   * full: every report, directive ack and evaluation looks sites up by
   * slug, and a linear scan made that quadratic at 20,000 sites. */
  uint32_t *idx;  /* owned */
  size_t idx_cap; /* a power of two, or 0 */
  /* Called after every sites_add, `moved` when the array moved (v
   * changed), so the owner can re-point what holds a site_t * (the
   * server's links) and grow what it keeps per site; NULL: nothing. */
  void (*on_grow)(void *arg, sites_t *s, bool moved);
  void *on_grow_arg;
  /* A snapshot of the sites table (store/leader.c): monotonic ms when its
   * load began; 0 for the live registry. */
  uint64_t taken_mono;
};

void sites_init(sites_t *s, uint32_t stale_after_ms);
void sites_free(sites_t *s);
/* Adds a site in NEVER_SEEN with the default route {self: 1000}. */
int sites_add(sites_t *s, const char *slug, const char *name_en, const char *name_zh, bool is_hub);
/* Borrowed pointer or NULL (removed sites too: check life). Pointers stay
 * valid until the next sites_add, which calls `on_grow` (moved) if they moved. */
site_t *sites_find(sites_t *s, const char *slug);
/* Finds a LIVE site: NULL for one unknown or removed. */
site_t *sites_find_live(sites_t *s, const char *slug);
/* LIVE -> REMOVED at now_ms by `who` (the link, if any, is the caller's to
 * close). NIRC_EINVAL when already removed. */
int sites_remove(site_t *site, int64_t now_ms, const char *who);
/* REMOVED -> LIVE, as a site that has never been seen by this controller
 * (its old link state, route and load are forgotten; its index is kept). */
int sites_revive(site_t *site, const char *name_en, const char *name_zh, bool is_hub);
/* How many sites are LIVE. */
size_t sites_live(const sites_t *s);
const char *sites_life_name(site_life_t l);

const char *sites_state_name(site_state_t st);
/* The only way state changes. Returns 0, or NIRC_EINVAL for a transition
 * the diagram does not allow (state unchanged). */
int sites_set_state(site_t *site, site_state_t to, int64_t now_ms);

/* How many changes the mutators below have made to any site so far
 * (process-wide; see sites.c): equal counts mean nothing was reported,
 * connected or lost in between. */
uint64_t sites_change_count(void);

/* A Hello was accepted on a new link. */
void sites_on_hello(site_t *site, int64_t now_ms);
/* A report arrived. If it starts a new business minute while the previous
 * one holds data, the finished minute is copied to *flushed and true is
 * returned; the caller stores it. */
bool sites_on_report(site_t *site, const Nirc__LoadReport *r, int64_t now_ms, int64_t business_ms,
                     site_minute_t *flushed);
/* The link dropped. */
void sites_on_link_down(site_t *site, int64_t now_ms);
/* ONLINE sites with nothing heard for stale_after_ms become STALE. Calls
 * cb for each site that changed. Returns how many changed. */
size_t sites_check_stale(sites_t *s, int64_t now_ms, void (*cb)(void *arg, site_t *site),
                         void *arg);
/* Hands back minutes that ended before business_ms (for sites that stopped
 * reporting); calls cb with each finished aggregate. */
void sites_flush_minutes(sites_t *s, int64_t business_ms, bool force,
                         void (*cb)(void *arg, const site_t *site, const site_minute_t *m),
                         void *arg);
/* Credits the per-destination counts of `src`'s report (already
 * validated) to the hubs they name. Counts naming `src` itself or a site
 * the controller does not know are not credited (logged). Returns the
 * calls credited. */
uint64_t sites_credit_routed(sites_t *s, const site_t *src, const Nirc__LoadReport *r);

/* What `src` reported sent to `hub` since the controller started (0 when
 * it never named it); *known false when the entry was replaced (more than
 * SITES_SENT_MAX destinations): a difference of it would mean nothing. */
uint64_t sites_sent_to(const site_t *src, const char *hub, uint64_t since_report, bool *known);

/* The rate `src` sent calls to sent entry `e` lately: calls per business
 * second over about a minute (SITES_METRIC_TAU_S); 0 while routing is not
 * measured. */
double sites_flow_cps(const site_t *src, const sites_sent_t *e);
/* Its route stopped sending calls to `hub`: the recent rate there starts
 * again from nothing, so calls sent before do not read as a flow now. */
void sites_flow_forget(site_t *src, const char *hub);

/* Most destinations one report may name in routed_to. */
#define SITES_ROUTED_MAX 64

/* Checks a report's fields are plausible; 0 or NIRC_ERANGE with reason. */
int sites_validate_report(const Nirc__LoadReport *r, char *err, size_t errlen);

/* Why a report was refused as implausible (nirc_reports_refused_total{reason}). */
typedef enum {
  SITES_REFUSED_SEATS = 0,   /* more agents than the configured seats allow */
  SITES_REFUSED_CONSISTENCY, /* its figures contradict each other or the last report */
  SITES_REFUSED_COUNT,
} sites_refusal_t;
const char *sites_refusal_name(sites_refusal_t r);

/* Checks a valid report (sites_validate_report passed) against what the
 * site is configured to have and against its own previous report: 0, or
 * NIRC_ERANGE with the reason (for people: "hubei reported 1000000 agents
 * logged in; it has 80 seats configured") and its kind. Figures the
 * report marks as not measured are not checked. */
int sites_check_plausible(const site_t *site, const Nirc__LoadReport *r, sites_refusal_t *kind,
                          char *err, size_t errlen);

#endif
