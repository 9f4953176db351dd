/* The `sim` adapter: the site's PBX is the call-centre simulator (sim.c),
 * driven by the business clock, so demos and tests have a realistic load
 * without a real PBX. */
#include "adapter.h"
#include "err.h"
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  sim_t *sim;
  unsigned sl_threshold_s;
} adapter_sim_t;

static int adapter_sim_start(const adapter_env_t *env, void **impl, char *err, size_t errlen) {
  if (!env->scenario) {
    snprintf(err, errlen, "the sim adapter needs [sim] scenario = FILE");
    return NIRC_ECONFIG;
  }
  if (!scenario_find(env->scenario, env->slug)) {
    snprintf(err, errlen, "site '%s' is not in the scenario file", env->slug);
    return NIRC_EUNKNOWN_SITE;
  }
  adapter_sim_t *a = calloc(1, sizeof *a);
  if (!a) return NIRC_ENOMEM;
  a->sim = sim_new(env->scenario, env->slug, env->business_now_ms, env->seed);
  if (!a->sim) {
    free(a);
    snprintf(err, errlen, "cannot create the simulator for '%s'", env->slug);
    return NIRC_ENOMEM;
  }
  a->sl_threshold_s = env->scenario->sl_threshold_s;
  *impl = a;
  return 0;
}

static void adapter_sim_collect(void *impl, int64_t now_ms, adapter_load_t *out) {
  adapter_sim_t *a = impl;
  sim_report_t r;
  sim_advance(a->sim, now_ms);
  sim_take_report(a->sim, &r);
  *out = (adapter_load_t){
      .offered = r.offered,
      .answered = r.answered,
      .abandoned = r.abandoned,
      .answered_within = r.answered_within,
      .from_other_sites = r.from_other_sites,
      .in_queue = r.in_queue,
      .longest_wait_ms = r.longest_wait_ms,
      .logged_in = r.agents_logged_in,
      .ready = r.agents_ready,
      .talking = r.agents_talking,
      .not_ready = r.agents_not_ready,
      .aht_ms = r.aht_ms,
      .sl_threshold_s = a->sl_threshold_s,
  };
}

static void adapter_sim_stop(void *impl) {
  adapter_sim_t *a = impl;
  if (!a) return;
  sim_free(a->sim);
  free(a);
}

const adapter_ops_t adapter_sim_ops = {
    .name = "sim",
    .start = adapter_sim_start,
    .collect = adapter_sim_collect,
    .stop = adapter_sim_stop,
};
