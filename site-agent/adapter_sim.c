/* The `sim` adapter: the site's PBX is the call-centre simulator (sim.c),
 * driven by the business clock, so demos and tests have a realistic load
 * without a real PBX. */
#include "adapter.h"
#include "err.h"
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  sim_t *sim;
  const scenario_t *scenario; /* borrowed from the agent */
  char slug[SCENARIO_SLUG_MAX];
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
  a->sim = sim_new(env->scenario, env->slug, clock_now_ms(env->clock), env->seed);
  if (!a->sim) {
    free(a);
    snprintf(err, errlen, "cannot create the simulator for '%s'", env->slug);
    return NIRC_ENOMEM;
  }
  a->sl_threshold_s = env->scenario->sl_threshold_s;
  a->scenario = env->scenario;
  snprintf(a->slug, sizeof a->slug, "%s", env->slug);
  *impl = a;
  return 0;
}

/* The simulated PBX "routes" by keeping a share of its own arrivals and,
 * on a hub, taking the shares its inbound sources send: every site runs the
 * same scenario on the same clock, so the hub can generate those calls
 * itself, exactly as the source stops receiving them. */
static int adapter_sim_apply_now(adapter_sim_t *a, const route_t *r, char *err, size_t errlen) {
  for (unsigned i = 0; i < r->n_share; i++) {
    if (!scenario_find(a->scenario, r->share[i].site)) {
      snprintf(err, errlen, "route target '%s' is not a site of this network", r->share[i].site);
      return NIRC_EUNKNOWN_SITE;
    }
  }
  sim_inflow_t in[ROUTE_MAX_INBOUND];
  for (unsigned i = 0; i < r->n_inbound; i++) {
    if (!scenario_find(a->scenario, r->inbound[i].site)) {
      snprintf(err, errlen, "inbound source '%s' is not a site of this network",
               r->inbound[i].site);
      return NIRC_EUNKNOWN_SITE;
    }
    snprintf(in[i].slug, sizeof in[i].slug, "%s", r->inbound[i].site);
    in[i].permille = r->inbound[i].permille;
  }
  sim_set_home_share(a->sim, route_share_of(r, a->slug));
  sim_set_inflows(a->sim, in, r->n_inbound);
  return 0;
}

static void adapter_sim_apply(void *impl, const route_t *r, adapter_apply_cb cb, void *arg) {
  char err[256] = "";
  int rc = adapter_sim_apply_now(impl, r, err, sizeof err);
  cb(arg, rc, err);
}

/* The simulator's routing read back from the simulator itself, not from
 * what was asked: a sim that dropped an inflow would show here. */
static void adapter_sim_verify(void *impl, const route_t *r, adapter_verify_cb cb, void *arg) {
  adapter_sim_t *a = impl;
  char found[200], detail[300];
  unsigned home = sim_home_share(a->sim), want = route_share_of(r, a->slug);
  bool ok = home == want;
  for (unsigned i = 0; ok && i < r->n_inbound; i++)
    if (strcmp(r->inbound[i].site, a->slug) != 0 &&
        sim_inflow_of(a->sim, r->inbound[i].site) != r->inbound[i].permille)
      ok = false;
  snprintf(found, sizeof found, "the simulator keeps %u permille home", home);
  if (ok) {
    cb(arg, ADAPTER_VERIFY_MATCH, found, "");
    return;
  }
  if (home != want)
    snprintf(detail, sizeof detail, "%s, the route asks %u", found, want);
  else
    snprintf(detail, sizeof detail, "the simulator's inbound flows differ from the route's");
  cb(arg, ADAPTER_VERIFY_MISMATCH, found, detail);
}

static void adapter_sim_collect(void *impl, int64_t now_ms, adapter_collect_cb cb, void *arg) {
  adapter_sim_t *a = impl;
  adapter_load_t load, *out = &load;
  sim_report_t r;
  sim_advance(a->sim, now_ms);
  sim_take_report(a->sim, &r);
  *out = (adapter_load_t){
      .offered = r.offered,
      .answered = r.answered,
      .abandoned = r.abandoned,
      .answered_within = r.answered_within,
      .from_other_sites = r.from_other_sites,
      .routed_away = r.routed_away,
      .in_queue = r.in_queue,
      .queue_peak = r.queue_peak,
      .longest_wait_ms = r.longest_wait_ms,
      .logged_in = r.agents_logged_in,
      .ready = r.agents_ready,
      .talking = r.agents_talking,
      .not_ready = r.agents_not_ready,
      .aht_ms = r.aht_ms,
      .sl_threshold_s = a->sl_threshold_s,
  };
  cb(arg, out);
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
    .apply = adapter_sim_apply,
    .collect = adapter_sim_collect,
    /* sim_advance simulates the calls of the business time passed (up to
     * 6 h of a jump; more is a pause). */
    .counts_business_time = true,
    .verify = adapter_sim_verify,
    .stop = adapter_sim_stop,
};
