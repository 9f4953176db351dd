/* swarm.h: what the files of nirc-swarm share (nirc-swarm.c, the command
 * line; swarm_pki.c, gen-pki; swarm_run.c, the run; swarm_agent.c, one
 * simulated agent; swarm_report.c, counters and JSON). Include it only
 * from those files. */
#ifndef NIRC_SWARM_H
#define NIRC_SWARM_H

#include "backoff.h"
#include "config.h"
#include "link.h"
#include "route.h"
#include "scenario.h"
#include "tls.h"
#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <uv.h>

#define SW_EXIT_OK    0
#define SW_EXIT_FAIL  1
#define SW_EXIT_USAGE 2

/* Slug numbers are zero-padded to this width, so files sort in order. */
#define PKI_NUM_WIDTH 5
/* RSS samples kept: a day at the default 10 s interval. */
#define SW_RSS_MAX 8640
/* Distinct reasons tallied per counter; the rest are counted as "other". */
#define SW_TALLY_MAX 32
/* Milliseconds with one decimal print as such, not as 947.60000000000002. */
#define SW_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))
/* Recoveries (all agents back after a drop) listed in the summary. */
#define SW_RECOVERIES_MAX 64

/* ---- counters (swarm_report.c) ---- */

/* Occurrences by reason, for failed connects, drops, errors, rejections. */
typedef struct {
  char name[SW_TALLY_MAX][48];
  uint64_t count[SW_TALLY_MAX];
  unsigned n;
  uint64_t total;
} sw_tally_t;

/* A latency distribution in milliseconds. */
typedef struct {
  double *v; /* owned */
  size_t n, cap;
  uint64_t not_kept;
} sw_samples_t;

/* ---- the swarm ---- */

/* An agent's state; the names it logs are in swarm_agent.c (sw_state_names). */
typedef enum {
  SW_IDLE = 0,
  SW_CONNECTING, /* TCP + TLS to a controller */
  SW_HELLO_SENT, /* waiting for Welcome */
  SW_REPORTING,  /* Welcome received: reporting */
  SW_BACKOFF,    /* waiting before the next attempt */
  SW_STOPPING,
} sw_state_t;

typedef struct swarm swarm_t;

/* One simulated agent: what site-agent/agent.c keeps, minus the PBX. */
typedef struct {
  swarm_t *sw;
  char slug[SCENARIO_SLUG_MAX];
  SSL_CTX *tls; /* owned: this agent's certificate and key */
  link_t *link; /* current link or NULL; owns itself */
  sw_state_t state;
  backoff_t backoff;
  uv_timer_t retry, report;
  unsigned idx;         /* controller address tried now */
  bool redirect;        /* next attempt goes to redirect_addr */
  unsigned redirects;   /* redirects followed since the last Welcome */
  bool got_error;       /* the controller sent an Error on the current link */
  int last_error;       /* its code */
  uint64_t epoch;       /* of the controller we talk to */
  uint64_t max_epoch;   /* newest seen: older leaders are fenced off */
  route_t applied;      /* what this site "routes by" */
  uint32_t interval_ms; /* report period */
  double attempt_ms;    /* when the current connection attempt started */
  bool dropped;         /* an established link dropped; not yet back */
  double dropped_ms;    /* when it dropped */
  uint64_t rng;         /* xorshift state for load figures */
  struct sockaddr_storage redirect_addr;
} sw_agent_t;

typedef struct {
  double at_ms;       /* first drop, since start */
  uint64_t drops;     /* links dropped before every agent was back */
  double all_back_ms; /* first drop -> last agent's Welcome */
} sw_recovery_t;

struct swarm {
  uv_loop_t *loop;
  sw_agent_t *agents; /* owned, n entries */
  unsigned n;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  char addr_str[CONFIG_LIST_MAX][NIRC_ADDR_STRLEN];
  unsigned naddrs;

  /* options */
  uint64_t report_interval_ms, duration_ms, progress_ms, rss_ms, ramp_ms;
  uint64_t backoff_min_ms, backoff_max_ms, connect_timeout_ms, idle_timeout_ms;
  bool progress;
  /* Nonzero: report this often whatever the Welcome says (--load-interval),
   * faster than any controller asks, to measure ingest. */
  uint64_t load_interval_ms;
  /* Sites of the scenario skipped before the first agent (--first). */
  unsigned first;

  uv_timer_t t_duration, t_progress, t_rss, t_ramp;
  uv_signal_t sig_int, sig_term;
  unsigned ramp_next; /* next agent the ramp starts */
  /* Connections started in this turn of the loop (sw_may_start); t_turn,
   * run after each poll, zeroes it. */
  unsigned turn_starts;
  uv_check_t t_turn;
  bool stopping;
  json_t *summary; /* built when stopping begins, printed after the loop */
  char stop_reason[64];

  uint64_t t0_ns; /* uv_hrtime() at the start */
  double setup_ms;
  long rss_setup_kb;
  rlim_t fd_limit;

  unsigned connected; /* agents holding a Welcome now */
  uint64_t attempts, handshakes, welcomes, reports, directives, applied, rejected;
  uint64_t redirects, protocol_errors;
  sw_tally_t failed, drops, errors, rejections;
  sw_samples_t connect_ms, reconnect_ms;
  double first_all_ms; /* start -> every agent connected; <0 not yet */
  bool episode;        /* some agent is down after a drop */
  sw_recovery_t cur;
  sw_recovery_t recoveries[SW_RECOVERIES_MAX];
  unsigned nrecoveries;
  uint64_t recoveries_total;

  long rss_kb[SW_RSS_MAX];
  double rss_t_s[SW_RSS_MAX];
  unsigned nrss;
};

/* ---- gen-pki (swarm_pki.c) ---- */

/* Issues count site certificates prefix-00001... signed by the CA in
 * ca_cert and ca_key into the directory out, and out/scenario.json naming
 * them; prints a line on success. Returns an exit status (SW_EXIT_*);
 * diagnostics go to stderr. */
int sw_gen_pki(const char *ca_cert, const char *ca_key, const char *out, const char *prefix,
               unsigned long count);

/* ---- the run (swarm_run.c) ---- */

/* Runs the swarm sw (options and controller addresses set; owned, freed
 * when the run ends) with the sites of dir/scenario.json, their
 * certificates beside it, and ca to check controllers. Returns the exit
 * status. */
int sw_run(swarm_t *sw, const char *ca, const char *dir, unsigned long count, const char *json_out);
/* Milliseconds since the swarm started. */
double sw_now(const swarm_t *sw);
/* Records the RSS now (up to SW_RSS_MAX samples). */
void sw_rss_sample(swarm_t *sw);

/* ---- one simulated agent (swarm_agent.c) ---- */

/* Starts a connection attempt to the controller the agent tries now. */
void sw_agent_connect(sw_agent_t *a);
/* Whether one more connection may start in this turn of the loop
 * (SW_START_CHUNK); counts it if so. */
bool sw_may_start(swarm_t *sw);
/* Fills r with the agent's next load figures (r->site borrows a->slug). */
void sw_fill_report(sw_agent_t *a, Nirc__LoadReport *r);

/* ---- the MQTT modes (swarm_mqtt.c): the same reports through a broker ---- */

/* `nirc-swarm mqtt` and `nirc-swarm mqtt-sub`: command line to exit status. */
int sw_mqtt_main(int argc, char **argv);
int sw_mqtt_sub_main(int argc, char **argv);

/* ---- counters and JSON (swarm_report.c) ---- */

void sw_tally(sw_tally_t *t, const char *name);
void sw_sample(sw_samples_t *s, double ms);
double sw_round1(double ms);
/* Resident set size of this process, KiB, from /proc/self/statm. */
long sw_rss_kb(void);
/* Prints o as one line on stdout and releases it; NULL prints nothing. */
void sw_emit(json_t *o);
json_t *sw_progress_json(swarm_t *sw);
json_t *sw_summary_json(swarm_t *sw, double now);

#endif
