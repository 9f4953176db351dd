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

/* PbxEvents not sent yet (no link): the newest are kept. */
#define AGENT_PBX_EVENTS_MAX 16

typedef struct {
  Nirc__PbxEventKind kind;
  char found[200], expected[200], detail[600];
  int64_t at_ms;
} agent_pbx_event_t;

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
  uv_signal_t sig_int, sig_term;
  uv_signal_t sig_hup; /* re-read cert/key for the next connection */
  nirc_clock_t clock;
  scenario_t scenario;
  int have_scenario;
  adapter_t adapter;
  uint32_t report_interval_ms;
  uint64_t epoch;     /* of the controller we talk to */
  uint64_t max_epoch; /* newest epoch seen: older leaders are fenced off */
  route_t applied;    /* what the PBX routes by now */
  /* At most one apply in flight; the newest request waits behind it. */
  bool applying, pending;
  route_t applying_route, pending_route;
  agent_apply_purpose_t applying_purpose, pending_purpose;
  bool have_restore, connect_after_restore;
  route_t restore; /* saved route to apply at start */
  bool collecting; /* a collect is in flight */
  int64_t collect_business_ms;
  int64_t last_report_business_ms;
  FILE *report_log;   /* owned; JSON lines of every report sent */
  struct httpd *http; /* owned: /metrics, or NULL */
  uint64_t applies_ok, applies_failed, collects_unreadable;
  adapter_load_t last_load;
  bool have_load;
  uint64_t reports_sent, connects;

  /* The PBX read back (verify) and drift repair. */
  uv_timer_t pbx_timer; /* ticks every second: PBX uptime, then the periodic check */
  bool pbx_known;       /* an apply succeeded: the PBX should route by `applied` */
  bool pbx_busy;        /* a drift check or uptime read in flight */
  bool drift_verifying; /* the drift check's verify is in flight */
  bool verify_deferred; /* an apply's read-back waits for that verify to finish */
  bool have_uptime;
  uint64_t pbx_uptime_s, pbx_checked_ms; /* last uptime seen; uv_now of the last check */
  route_t checking_route;                /* what the drift check compares with */
  adapter_verify_t drift_last;           /* outcome of the last check, to log changes once */
  char drift_found[200];                 /* what the last drift check found */
  agent_pbx_event_t events[AGENT_PBX_EVENTS_MAX];
  unsigned n_events;
  uint64_t drift_repairs, pbx_events_dropped, verify_failures;
  char exec_lock[CONFIG_STR_MAX + 16]; /* "<state_file>.apply-lock", or "" */
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
 * queued. *r is the directive's route when the answer is APPLY or WAIT;
 * *res and `why` are the acknowledgement when it is ACK. */
agent_directive_action_t agent_check_directive(const agent_t *a, const Nirc__Directive *d,
                                               route_t *r, Nirc__AckResult *res, char *why,
                                               size_t whylen);
/* Checks a controller's Welcome against `a` (not changed): 0 to accept it;
 * NIRC_ENOT_LEADER when its epoch is older than the newest the agent has
 * seen (a deposed leader: the link must be left, and `why` says so, for
 * the log and the Error to the controller); NIRC_ERANGE when the epoch
 * cannot be stored. */
int agent_check_welcome(const agent_t *a, const Nirc__Welcome *w, char *why, size_t whylen);
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
