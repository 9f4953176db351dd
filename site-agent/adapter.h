/* adapter: the agent's interface to its PBX. One vtable, one file per
 * adapter (adapter_sim.c, later adapter_kamailio.c, adapter_exec.c),
 * selected by name in the agent's configuration.
 *
 * collect() must never invent numbers: an adapter that cannot read its
 * PBX sets `unreadable` and says why, and the agent reports exactly that. */
#ifndef NIRC_ADAPTER_H
#define NIRC_ADAPTER_H

#include "route.h"
#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t offered, answered, abandoned, answered_within, from_other_sites, routed_away;
  uint32_t in_queue, longest_wait_ms;
  uint32_t logged_in, ready, talking, not_ready, aht_ms;
  uint32_t sl_threshold_s;
  bool unreadable;
  char error[160];
} adapter_load_t;

/* What an adapter needs to start; all borrowed for the adapter's life. */
typedef struct {
  const char *slug;           /* this site, from the agent's certificate */
  const scenario_t *scenario; /* may be NULL for adapters that do not need it */
  int64_t business_now_ms;
  uint64_t seed;
} adapter_env_t;

typedef struct adapter adapter_t;

typedef struct {
  const char *name;
  /* Creates the adapter's state in *impl. 0 or a NIRC_E* code with err. */
  int (*start)(const adapter_env_t *env, void **impl, char *err, size_t errlen);
  /* Applies a route that already passed route_validate(). Returns 0;
   * NIRC_EUNKNOWN_SITE when it names a target this PBX cannot reach (the
   * directive is rejected); any other code when the PBX refused (failed).
   * On failure the previous routing must stay in place. */
  int (*apply)(void *impl, const route_t *r, char *err, size_t errlen);
  /* Fills `out` for the interval ending at business time now_ms. */
  void (*collect)(void *impl, int64_t now_ms, adapter_load_t *out);
  void (*stop)(void *impl);
} adapter_ops_t;

struct adapter {
  const adapter_ops_t *ops;
  void *impl; /* owned by the adapter */
};

/* The adapter called `name`, or NULL. */
const adapter_ops_t *adapter_find(const char *name);
/* "sim" (the list of built-in adapters, for error messages). */
const char *adapter_names(void);

extern const adapter_ops_t adapter_sim_ops;

#endif
