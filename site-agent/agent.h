/* agent: the site agent's runtime — finds a controller from its address
 * list, says Hello, reports load every interval, reconnects with
 * exponential backoff and full jitter when the link goes.
 *
 *   IDLE -> CONNECTING -> HELLO_SENT -> REPORTING
 *              ^   |          |            |
 *              |   v          v            v
 *              +-- BACKOFF <--+------------+        (any) -> STOPPING
 */
#ifndef NIRC_AGENT_H
#define NIRC_AGENT_H

#include "adapter.h"
#include "backoff.h"
#include "clock.h"
#include "config.h"
#include "link.h"
#include "route.h"
#include "scenario.h"
#include "state.h"

#include <stdio.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct {
  char site[32]; /* optional: must equal the certificate */
  config_list_t controllers;
  char adapter[16];
  char report_log[CONFIG_STR_MAX];
  char state_file[CONFIG_STR_MAX];
  char http_listen[64]; /* metrics endpoint; empty: off */
  adapter_exec_conf_t exec;
  adapter_kamailio_conf_t kamailio;
  char ca[CONFIG_STR_MAX], cert[CONFIG_STR_MAX], key[CONFIG_STR_MAX];
  char crl[CONFIG_STR_MAX]; /* the CA's CRL: a revoked controller is refused; "" none */
  uint64_t backoff_min_ms, backoff_max_ms, connect_timeout_ms, idle_timeout_ms;
  uint64_t report_interval_ms;    /* until the controller's Welcome says otherwise */
  uint64_t pbx_check_interval_ms; /* read the PBX back and repair drift this often */
  char scenario[CONFIG_STR_MAX];
  uint32_t seed;
  config_clock_t clock;
  config_log_t log;
} agent_conf_t;

extern const config_opt_t agent_conf_opts[];
int agent_conf_load(const char *path, agent_conf_t *c, char *err, size_t errlen);

typedef enum {
  AGENT_IDLE = 0,
  AGENT_CONNECTING, /* TCP + TLS to controllers[idx] */
  AGENT_HELLO_SENT, /* waiting for Welcome */
  AGENT_REPORTING,  /* Welcome received; reporting every interval */
  AGENT_BACKOFF,    /* waiting before the next attempt */
  AGENT_STOPPING,
} agent_state_t;

typedef enum {
  APPLY_DIRECTIVE = 0, /* from the controller: acknowledged when done */
  APPLY_RESTORE,       /* the saved route at start-up, before connecting */
  APPLY_REVERT,        /* revert_at passed: home */
  APPLY_UNDO,          /* putting the previous route back after a failed save */
  APPLY_REPAIR,        /* the PBX drifted from the applied route: applying it again */
} agent_apply_purpose_t;

/* The route in force (agent_t.applied), as far as the agent knows what the
 * PBX does. It starts UNKNOWN: the saved route (or home, when revert_at
 * passed or nothing is saved) is what the PBX should do, but only an
 * apply that succeeds (read back where the adapter can) makes it KNOWN.
 * While UNKNOWN the agent applies it again with backoff, the Hello says
 * so (route_unconfirmed) and the controller shows the route as unknown.
 * A route put back or reverted that the PBX did not take makes it
 * UNKNOWN again. A failed directive or repair does not: the adapter
 * leaves the previous routing in place, and the drift check follows it. */
typedef enum {
  AGENT_ROUTE_UNKNOWN = 0, /* not applied since start, or the last revert/undo failed */
  AGENT_ROUTE_KNOWN,       /* applied (and read back, where the adapter can) */
} agent_route_state_t;

const char *agent_route_state_name(agent_route_state_t s);

/* What the agent does when an apply finished (agent_decide_applied). */
typedef struct {
  int rc;                          /* the outcome to report: the apply's, or NIRC_EIO when a
                                    * directive's route could not be saved */
  bool take;                       /* applied becomes the route just applied (or tried) */
  bool undo;                       /* put applied back: a directive that cannot be saved */
  bool retry;                      /* apply applied again after a backoff */
  agent_route_state_t route_state; /* the route in force afterwards */
} agent_applied_t;

/* A clock offset from the controller this large (either way) is a host
 * clock to fix: the agent logs it, and the controller raises a `clock`
 * alarm from the reports' timestamps. Revert_at does not depend on it
 * once the agent knows the offset (it is armed on the controller's
 * clock): measured since it started, or remembered from a previous run
 * (agent_clock.c); without either it runs on the agent's own. */
#define AGENT_CLOCK_OFFSET_WARN_MS 60000

/* Which clock revert_at runs on (agent_clock.c). */
typedef enum {
  AGENT_CLOCK_HOST = 0,   /* no offset known: this host's own clock */
  AGENT_CLOCK_REMEMBERED, /* the offset a previous run measured (the clock file) */
  AGENT_CLOCK_MEASURED,   /* measured by this run at a Welcome or Directive */
} agent_clock_src_t;

const char *agent_clock_src_name(agent_clock_src_t s);

/* PbxEvents not sent yet (no link): the first of the outage and the
 * newest are kept; those dropped between are counted (agent_t.lost_n). */
#define AGENT_PBX_EVENTS_MAX 16

typedef struct {
  Nirc__PbxEventKind kind;
  char found[200], expected[200], detail[600];
  int64_t at_ms;
  uint64_t epoch, version; /* REVERTED: the route the agent left */
  bool unverified;         /* ROUTE_CONFIRMED, REVERTED: applied_unverified when queued */
  int64_t went_home_ms;    /* REVERTED: agent_t.went_home_ms when queued (0: not known) */
  agent_clock_src_t went_home_src;
  uint64_t went_home_mono_ms; /* REVERTED: agent_t.went_home_mono_ms when queued */
  uint64_t seen_mono_ms;      /* clock_mono_ms() when queued: PbxEvent.seen_ago_ms */
} agent_pbx_event_t;

/* The reading a name from agent_clock_src_name stands for; false for any
 * other text (a state file edited by hand). */
bool agent_clock_src_parse(const char *name, agent_clock_src_t *out);
/* The same reading as the protocol says it (Hello.went_home_clock). */
Nirc__AgentClock agent_clock_src_pb(agent_clock_src_t s);

/* A remembered offset older than this is still used (see agent_clock.c
 * for why), but the log says it is old. */
#define AGENT_CLOCK_REMEMBER_OLD_MS (24LL * 3600 * 1000)

typedef struct {
  uv_loop_t *loop;
  const agent_conf_t *conf; /* borrowed */
  char slug[32];            /* from the certificate */
  SSL_CTX *tls;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  unsigned naddrs, idx;
  int redirect; /* index of the leader a standby named, for the next attempt; -1 = none */
  agent_state_t state;
  link_t *link; /* current link, or NULL; owns itself */
  backoff_t backoff;
  uv_timer_t retry, report;
  uv_timer_t revert;   /* fires at the applied route's revert_at */
  uv_timer_t watchdog; /* systemd watchdog pings from the loop */
  uv_timer_t metrics;  /* republishes /metrics every second, link or not */
  bool metrics_on;     /* `metrics` was initialised (agent_metrics_start) */
  uv_signal_t sig_int, sig_term;
  uv_signal_t sig_hup; /* re-read cert/key for the next connection */
  nirc_clock_t clock;
  scenario_t scenario;
  int have_scenario;
  adapter_t adapter;
  uint32_t report_interval_ms;
  uint64_t epoch; /* of the controller we talk to */
  /* The controller's business clock minus ours, measured at its last
   * Welcome or Directive (agent_clock_sync); kept across links and, in
   * the clock file beside the state file, across restarts (remembered
   * until a controller gives a new reading). have_offset: clock_src is
   * not HOST. Until one is known the agent has only its own clock. */
  bool have_offset, offset_large;
  int64_t ctl_offset_ms;
  agent_clock_src_t clock_src;
  int64_t offset_at_ms;                        /* host wall-clock ms of that reading */
  int64_t offset_saved_ms, offset_saved_at_ms; /* what the clock file holds (0: nothing) */
  char clock_file[CONFIG_STR_MAX + 8];         /* "<state_file>.clock", or "" */
  uint64_t max_epoch;                          /* newest epoch seen: older leaders are fenced off */
  route_t applied;                             /* what the PBX routes by now */
  /* When the agent put `applied` in force on its own at its revert_at
   * (its reason ROUTE_REASON_REVERTED): the controller's business time as
   * read then (agent_controller_ms) and on which reading; kept in the
   * state file, told in the Hello and the REVERTED PbxEvent, so a
   * controller that learns of the return late records when it happened.
   * 0: not known (another route, or a state file from before). */
  int64_t went_home_ms;
  agent_clock_src_t went_home_src;
  /* The same moment on this process's monotonic clock (clock_mono_ms), so
   * that it can say how long ago it went with no clock offset in the
   * figure (agent_clock_went_home_ago). 0: not this process's (loaded from
   * the state file: the count is lost with the process that made it). */
  uint64_t went_home_mono_ms;
  /* At most one apply in flight; the newest request waits behind it. */
  bool applying, pending;
  route_t applying_route, pending_route;
  agent_apply_purpose_t applying_purpose, pending_purpose;
  bool connect_after_restore; /* agent_start: connect when the first restore finished */
  /* The route in force: known or not (agent_route_state_t). */
  agent_route_state_t route_state;
  char route_why[256]; /* while UNKNOWN: why (the last failure, or "not applied yet") */
  bool route_told;     /* a controller was told it is UNKNOWN: say when it is KNOWN */
  /* clock_mono_ms() of the first failure of this UNKNOWN stretch (0: none
   * yet, or KNOWN): a Hello says how long ago (route_unconfirmed_ago_ms),
   * as the ROUTE_UNCONFIRMED queued then says of itself. */
  uint64_t route_unknown_mono_ms;
  uv_timer_t route_retry; /* applies applied again while UNKNOWN */
  backoff_t route_backoff;
  bool collecting; /* a collect is in flight */
  int64_t collect_business_ms;
  int64_t last_report_business_ms;
  uint64_t collect_mono_ms, last_report_mono_ms; /* clock_mono_ms() of the same */
  FILE *report_log;                              /* owned; JSON lines of every report sent */
  struct httpd *http;                            /* owned: /metrics, or NULL */
  uint64_t applies_ok, applies_failed, collects_unreadable;
  adapter_load_t last_load;
  bool have_load;
  uint64_t reports_sent, connects;

  /* The PBX read back (verify) and drift repair. */
  uv_timer_t pbx_timer; /* ticks every second: PBX uptime, then the periodic check */
  bool pbx_busy;        /* a drift check or uptime read in flight */
  bool drift_verifying; /* the drift check's verify is in flight */
  bool verify_deferred; /* an apply's read-back waits for that verify to finish */
  bool have_uptime;
  uint64_t pbx_uptime_s, pbx_checked_ms; /* last uptime seen; uv_now of the last check */
  route_t checking_route;                /* what the drift check compares with */
  adapter_verify_t drift_last;           /* outcome of the last check, to log changes once */
  char drift_found[200];                 /* what the last drift check found */
  /* The apply in flight was killed at its timeout and is being read back:
   * the command may have changed the PBX before it died. */
  bool apply_timed_out;
  char apply_timeout_why[256];
  /* The apply that just ended succeeded without a read-back of the PBX
   * (the adapter cannot read it): its ack says unverified. Cleared when
   * the next apply starts. */
  bool apply_unverified;
  /* The route in force was applied without a read-back: a resend
   * acknowledged "already applied" says unverified too, and so does the
   * Hello (route_unverified), so a new leader knows. Not saved: a
   * restarted agent applies its route before its first Hello and learns
   * it again from that apply (agent_route_unverified). */
  bool applied_unverified;
  agent_pbx_event_t events[AGENT_PBX_EVENTS_MAX];
  unsigned n_events;
  /* A revert at revert_at the PBX did not take: the controller was told
   * (REVERTED, the route unknown) and is told again once the PBX has home
   * (agent_pbx_applied). */
  bool revert_unconfirmed;
  uint64_t drift_repairs, pbx_events_dropped, verify_failures;
  /* Events dropped since the last flush (agent_pbx_queue): how many, and
   * when the agent saw the first and the last of them (clock_mono_ms).
   * Said on the next link as an EVENTS_DROPPED PbxEvent, then zeroed. */
  uint32_t lost_n;
  uint64_t lost_first_mono_ms, lost_last_mono_ms;
  char exec_lock[CONFIG_STR_MAX + 16]; /* "<state_file>.apply-lock", or "" */
  /* The last write of the state file failed (agent_state_note): why, with
   * the fix, for the Hello (state_not_saved_why) and the STATE_NOT_SAVED
   * PbxEvent; a STATE_SAVED follows the next write that succeeds. The
   * file is written again every pbx_check_interval (state_check), so a
   * full disk is found before a directive needs it, and its end is seen. */
  bool state_unsaved;
  char state_why[256];
  uv_timer_t state_check;
} agent_t;

const char *agent_state_name(agent_state_t s);

/* What the agent does with a Directive from its controller, decided from
 * its state alone (no link, no adapter), so the decision is unit-tested
 * and fuzzed without a loop. */
typedef enum {
  AGENT_DIRECTIVE_ACK = 0, /* answer now with *res and `why`: nothing to apply */
  AGENT_DIRECTIVE_APPLY,   /* apply *r; the ack follows when the PBX has answered */
  AGENT_DIRECTIVE_WAIT,    /* a resend of the route being applied: its ack is coming */
} agent_directive_action_t;

/* Checks `d` against `a` (borrowed, not changed): the site it names, its
 * shape (route_from_directive, route_validate), epoch fencing and the
 * (epoch, version) order against the routes applied, being applied and
 * queued. A resend of the route in force is APPLIED at once only while
 * that route is known: an unknown one is applied again (and acknowledged
 * when the PBX has it); only a directive's apply in flight is waited for.
 * *r is the directive's route when the answer is APPLY or WAIT; *res and
 * `why` are the acknowledgement when it is ACK. */
agent_directive_action_t agent_check_directive(const agent_t *a, const Nirc__Directive *d,
                                               route_t *r, Nirc__AckResult *res, char *why,
                                               size_t whylen);
/* Checks a controller's Welcome against `a` (not changed): 0 to accept it;
 * NIRC_ENOT_LEADER when its epoch is older than the newest the agent has
 * seen (a deposed leader: the link must be left, and `why` says so, for
 * the log and the Error to the controller); NIRC_ERANGE when the epoch
 * cannot be stored. */
int agent_check_welcome(const agent_t *a, const Nirc__Welcome *w, char *why, size_t whylen);
/* The route to apply at start-up (`saved` NULL: nothing saved, or it
 * could not be read): the saved route; home under the saved (epoch,
 * version) when its revert_at has passed at now_ms (applying the expired
 * route first would move calls away and back); home (version 0) when
 * nothing is saved. Never invents a route. */
void agent_start_route(const route_t *saved, const char *slug, int64_t now_ms, route_t *out);
/* What the state file keeps beside route `r` (state_save_ext): the newest
 * epoch seen and, for a route that went home on its own, when. Pure. */
void agent_state_extra(const agent_t *a, const route_t *r, state_extra_t *x);
/* At start-up, once agent_start_route put a->applied in force and the
 * clock is set up (agent_clock_init): when it went home on its own. The
 * saved route had gone home already: the time saved with it (`x`, NULL
 * when nothing could be read; unknown when the file has none). It goes
 * home now (its revert_at passed while the agent was not running): now,
 * at business time `local_ms` of this host's clock. Otherwise none. */
void agent_start_went_home(agent_t *a, const route_t *saved, const state_extra_t *x,
                           int64_t local_ms);
/* Decides what follows an apply of `purpose` that ended with apply_rc and,
 * when it succeeded and a state file is kept, save_rc (0 otherwise), given
 * the route state before it. Pure: agent_on_applied does what it says. A
 * route that revert_at, a restart or a drift check put in force stays in
 * force when it cannot be saved (a restart puts it in force again); only a
 * directive's new route is undone, since a restart would silently change
 * it. A revert, restore or undo the PBX did not take leaves the route
 * UNKNOWN and is retried: after a revert, home is the route in force.
 * An apply whose outcome is unknown (apply_rc NIRC_EOUTCOME_UNKNOWN: the
 * PBX may have taken it) leaves the route UNKNOWN too; a directive's is
 * not retried (the controller decides), a repair's is. */
agent_applied_t agent_decide_applied(agent_route_state_t was, agent_apply_purpose_t purpose,
                                     int apply_rc, int save_rc);
/* Whether the route in force is applied without a read-back of the PBX
 * (agent_t.applied_unverified) after an apply of `purpose` decided as `o`:
 * `was` before it, `apply_unverified` when that apply succeeded unread
 * (the adapter cannot read the PBX back). Pure, like the decision. */
bool agent_route_unverified(bool was, agent_apply_purpose_t purpose, const agent_applied_t *o,
                            bool apply_unverified);
/* What a write of the state file changes for the controller
 * (agent_state_note). */
typedef enum {
  AGENT_STATE_TELL_NONE = 0,  /* nothing new */
  AGENT_STATE_TELL_NOT_SAVED, /* the first failure of a stretch: STATE_NOT_SAVED */
  AGENT_STATE_TELL_SAVED,     /* the first success after a failure: STATE_SAVED */
} agent_state_tell_t;

/* Notes the outcome of a write of the state file (save_rc 0, or an error
 * with `err` saying why) in a->state_unsaved and a->state_why, and says
 * what to tell the controller. Pure: agent.c sends the event. */
agent_state_tell_t agent_state_note(agent_t *a, int save_rc, const char *err);
/* Fills the route part of the Hello `a` sends (no link needed): the route in force, whether
 * it is confirmed at the PBX and why not, and whether it was read back. *applied and *pb are its
 * storage; h->applied points at them when a route is sent. */
void agent_fill_hello_route(const agent_t *a, Nirc__Hello *h, Nirc__Directive *applied,
                            route_pb_t *pb);
/* Notes that the controller's business clock read `controller_ms` when
 * ours read `local_ms` (a Welcome's server_time_ms, a Directive's
 * issued_at_ms; 0, from an older controller, is ignored) and logs an
 * offset that becomes, or stops being, AGENT_CLOCK_OFFSET_WARN_MS or more. */
void agent_clock_sync(agent_t *a, int64_t controller_ms, int64_t local_ms);
/* The controller's business time when ours is `local_ms`: ours corrected
 * by the offset last measured (or remembered), or ours when none is
 * known. revert_at is a time on the controller's clock and is armed on
 * this one. */
int64_t agent_controller_ms(const agent_t *a, int64_t local_ms);
/* The same for the adapters (adapter_env_t.controller_ms; `agent` is an
 * agent_t): false while no offset is known. */
bool agent_clock_controller_now(void *agent, int64_t host_ms, int64_t *out);
/* Notes that the agent goes home on its own now, at the revert_at of the
 * route in force (a->went_home_ms, a->went_home_src): the controller's
 * business time as this agent reads it at business time `local_ms` of
 * its own clock. */
void agent_clock_went_home(agent_t *a, int64_t local_ms);
/* How long before now (business ms: its clock's speed applied) the return
 * at monotonic time `mono_ms` was; false when it is not this process's
 * (mono_ms 0). Hello.went_home_ago_ms, PbxEvent.went_home_ago_ms. */
bool agent_clock_went_home_ago(const agent_t *a, uint64_t mono_ms, uint64_t *ago_ms);
/* The interval a report's counts cover (LoadReport.interval_ms, business
 * ms) from the last collect (last_*) to this one (now_*): the monotonic
 * time between them times the clock's speed, so a step of this host's
 * clock (NTP fixing the offset the controller's `clock` alarm named) does
 * not stretch it (the controller would spread 5 s of calls over the hour
 * the clock jumped, and take the site's demand for near zero) nor shrink
 * it; the business clock's own difference for an adapter whose counts run
 * on it (`business_counts`: the simulator). 0: no last collect (mono 0),
 * or outside 1..86400000 (the caller sends the report period then).
 * *stepped_ms: how far the business clock moved beyond that (0: within a
 * second, times the speed). */
uint32_t agent_clock_interval(const agent_t *a, bool business_counts, int64_t last_biz,
                              int64_t now_biz, uint64_t last_mono, uint64_t now_mono,
                              int64_t *stepped_ms);
/* At agent_init, once a->conf and a->clock are set: the clock file is
 * "<state_file>.clock" (none without a state file), and the offset it
 * remembers is used until a controller gives a new one; logs which clock
 * revert_at runs on. */
void agent_clock_init(agent_t *a, int64_t now_real_ms);
/* The clock file (agent_clock.c): a->clock_file must be set. Loads the
 * offset a previous run measured and uses it (REMEMBERED) when it was
 * measured for this site under the same [clock]; 0, NIRC_ENOTFOUND (none
 * saved) or NIRC_EINVAL with `err` saying why it is not used. */
int agent_clock_load(agent_t *a, int64_t now_real_ms, char *err, size_t errlen);
/* Whether the reading in memory should be written to the clock file:
 * never saved, moved by a second or more, or an hour since the last save.
 * Pure. */
bool agent_clock_should_save(const agent_t *a, int64_t now_real_ms);
/* In words, for the log and PbxEvents: the clock revert_at runs on, with
 * the offset and its age ("the controller's clock as remembered from a
 * previous run (offset +3600.0 s, measured 2 h ago)"). */
void agent_clock_describe(const agent_t *a, int64_t now_real_ms, char *buf, size_t len);
/* Appends the clock's /metrics lines to buf (at most len bytes);
 * returns the bytes added, or -1 when they do not fit. */
int agent_clock_metrics(const agent_t *a, int64_t now_real_ms, char *buf, size_t len);
/* The agent's /metrics text (agent_metrics.c), built from `a` alone so it
 * is unit-tested; the same rules as nircd's: a figure nobody measured is
 * left out, not published as a number. Returns the length, or -1 when
 * it does not fit. */
int agent_metrics_format(const agent_t *a, int64_t now_real_ms, char *buf, size_t len);
/* Prepares everything that can fail at start-up (certificates, addresses,
 * scenario, adapter); 0 or an error naming the fix. */
/* check_only: validate everything but open nothing that outlives the check
 * (no HTTP listener, no report log), for `nirc-agent -t`. */
int agent_init(agent_t *a, uv_loop_t *loop, const agent_conf_t *conf, bool check_only, char *err,
               size_t errlen);
/* Starts connecting; returns immediately. */
void agent_start(agent_t *a);
void agent_stop(agent_t *a);
void agent_free(agent_t *a);

#endif
