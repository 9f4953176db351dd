/* adapter: the agent's interface to its PBX. One vtable, one file per
 * adapter (adapter_sim.c, later adapter_kamailio.c, adapter_exec.c),
 * selected by name in the agent's configuration.
 *
 * collect() must never invent numbers: an adapter that cannot read its
 * PBX sets `unreadable` and says why, and the agent reports exactly that;
 * one that cannot measure a figure (a proxy has no agents) sets its bit
 * in `not_measured`. */
#ifndef NIRC_ADAPTER_H
#define NIRC_ADAPTER_H

#include "clock.h"
#include "route.h"
#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Most destination sites one report names in routed_to. */
#define ADAPTER_ROUTED_MAX 16

/* Calls sent to one other site in the interval. */
typedef struct {
  char site[SCENARIO_SLUG_MAX];
  uint32_t calls;
} adapter_routed_t;

typedef struct {
  uint32_t offered, answered, abandoned, answered_within, from_other_sites, routed_away;
  /* Of routed_away, per destination, when the adapter can tell (kamailio);
   * n_routed_to 0 otherwise. Sites are valid slugs, each at most once. */
  adapter_routed_t routed_to[ADAPTER_ROUTED_MAX];
  unsigned n_routed_to;
  /* routed_to is measured: every call sent to another site in the interval
   * was counted, so a site it does not name got none (kamailio; exec when
   * collect_cmd prints routed_to). The controller verifies waves by it. */
  bool routing_measured;
  uint32_t in_queue, queue_peak, longest_wait_ms; /* queue_peak: most waiting at once */
  uint32_t logged_in, ready, talking, not_ready, aht_ms;
  uint32_t sl_threshold_s;
  /* Figures this PBX cannot measure (REPORT_NM_* bits, report.h): their
   * fields are 0 and reported as not measured, never as zeros. */
  uint32_t not_measured;
  bool unreadable;
  char error[160];
} adapter_load_t;

/* [exec] section: operator-supplied commands (the glue for any PBX). */
typedef struct {
  char apply_cmd[512];   /* reads the route as JSON on stdin; exit 0 = applied */
  char collect_cmd[512]; /* prints the load as JSON on stdout */
  char verify_cmd[512];  /* optional: prints the route the PBX applies, as JSON */
  uint64_t timeout_ms;   /* a command still running after this is killed */
} adapter_exec_conf_t;

/* [kamailio] section: a Kamailio SIP proxy driven over its JSON-RPC socket. */
typedef struct {
  char rpc_socket[256];      /* jsonrpcs datagram socket, e.g. /run/kamailio/kamailio_rpc.sock */
  char dispatcher_list[512]; /* file the adapter writes; Kamailio's dispatcher reads it */
  uint32_t set_id;           /* dispatcher set used for inbound calls */
  char targets[1024];        /* "hubei=sip:127.0.0.1:5071, shaanxi=sip:127.0.0.1:5072" */
  uint64_t timeout_ms;       /* per RPC call */
} adapter_kamailio_conf_t;

/* What an adapter needs to start; all borrowed for the adapter's life. */
typedef struct {
  uv_loop_t *loop;
  const char *slug;           /* this site, from the agent's certificate */
  const scenario_t *scenario; /* may be NULL for adapters that do not need it */
  const nirc_clock_t *clock;  /* business clock */
  uint64_t seed;
  const adapter_exec_conf_t *exec;
  const adapter_kamailio_conf_t *kamailio;
  /* exec adapter: a program run as `WRAPPER --exec-child LOCK sh -c CMD`
   * that ties the command's process group to the agent's life (see
   * execwrap.h); NULL runs /bin/sh directly (unit tests). LOCK may be "". */
  const char *exec_wrapper;
  const char *exec_lock;
  /* The controller's business time when this host's business clock reads
   * `host_ms`, as the agent measured (or remembered) its offset: true with
   * *out, false while not known. NULL: never known. clock_ctx is passed
   * back. The exec adapter gives it to collect_cmd (NIRC_CONTROLLER_NOW_MS). */
  bool (*controller_ms)(void *clock_ctx, int64_t host_ms, int64_t *out);
  void *clock_ctx;
} adapter_env_t;

/* Completion of apply(): rc 0 applied; NIRC_EUNKNOWN_SITE when the route
 * names a target this PBX cannot reach (the directive is rejected); any
 * other code when the PBX refused or did not answer (failed). `err` is
 * borrowed for the call. */
typedef void (*adapter_apply_cb)(void *arg, int rc, const char *err);
/* Completion of collect(): `load` is borrowed for the call. */
typedef void (*adapter_collect_cb)(void *arg, const adapter_load_t *load);

/* What verify() found. MATCH: the PBX routes as `expected`. MISMATCH: it
 * routes otherwise (`found` says how, `detail` says what to check).
 * UNVERIFIED: this adapter cannot read its PBX's routing back (the exec
 * adapter without verify_cmd): neither a match nor a mismatch, and it
 * says so. UNREADABLE: the PBX did not answer the read-back. */
typedef enum {
  ADAPTER_VERIFY_MATCH = 0,
  ADAPTER_VERIFY_MISMATCH,
  ADAPTER_VERIFY_UNVERIFIED,
  ADAPTER_VERIFY_UNREADABLE,
} adapter_verify_t;
const char *adapter_verify_name(adapter_verify_t v);
/* Completion of verify(): `found` is the PBX's routing in words ("hubei
 * 100%"), empty unless MISMATCH or MATCH; `detail` a sentence for the
 * operator (empty on MATCH). Both borrowed for the call. */
typedef void (*adapter_verify_cb)(void *arg, adapter_verify_t v, const char *found,
                                  const char *detail);
/* Completion of uptime(): rc 0 and the PBX's uptime in seconds, or a
 * NIRC_E* code when it did not answer. */
typedef void (*adapter_uptime_cb)(void *arg, int rc, uint64_t uptime_s);

typedef struct adapter adapter_t;

/* Every operation is asynchronous so a slow PBX never stalls the agent's
 * loop (links, pings, reports). Each callback runs exactly once, possibly
 * before the call returns (the simulator answers at once). The agent
 * never has two applies or two collects in flight on one adapter. */
typedef struct {
  const char *name;
  /* Creates the adapter's state in *impl. 0 or a NIRC_E* code with err. */
  int (*start)(const adapter_env_t *env, void **impl, char *err, size_t errlen);
  /* Applies a route that already passed route_validate(). On failure the
   * previous routing must stay in place. */
  void (*apply)(void *impl, const route_t *r, adapter_apply_cb cb, void *arg);
  /* Reads the load of the interval ending at business time now_ms. */
  void (*collect)(void *impl, int64_t now_ms, adapter_collect_cb cb, void *arg);
  /* Its counts cover the business clock's interval between collects (a
   * simulator that runs on now_ms), not the time that passed: a PBX counts
   * calls as they come, so a step of this host's clock (NTP fixing it)
   * adds no calls. Decides LoadReport.interval_ms (agent_clock_interval). */
  bool counts_business_time;
  /* Reads back how the PBX routes now and compares it with `expected`
   * (borrowed until the callback). Never changes the PBX. At most one
   * verify in flight; it may run while no apply is in flight only, or
   * right after an apply's success (the agent's read-back). */
  void (*verify)(void *impl, const route_t *expected, adapter_verify_cb cb, void *arg);
  /* Optional (NULL: not known): how long the PBX has been running, so the
   * agent sees a PBX restart (uptime going back) and checks its routing
   * at once instead of at the next periodic check. */
  void (*uptime)(void *impl, adapter_uptime_cb cb, void *arg);
  /* Releases everything; pending callbacks are not called after this. */
  void (*stop)(void *impl);
} adapter_ops_t;

struct adapter {
  const adapter_ops_t *ops;
  void *impl; /* owned by the adapter */
};

/* The adapter called `name`, or NULL. */
const adapter_ops_t *adapter_find(const char *name);
/* The built-in adapters, comma-separated, for error messages. */
const char *adapter_names(void);

extern const adapter_ops_t adapter_sim_ops;
extern const adapter_ops_t adapter_exec_ops;
extern const adapter_ops_t adapter_kamailio_ops;

#endif
