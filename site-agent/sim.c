/* sim: a call-centre simulator for one site.
 *
 * The model, in business time (Unix milliseconds, possibly accelerated by
 * the clock):
 *
 * Time. sim_advance() walks from the last simulated instant to the new one
 * in sub-steps of at most SIM_STEP_MS (1 s) of business time, so at a clock
 * speed of 60 and a 1 s report interval one call runs 60 sub-steps. Within
 * a sub-step the arrival rate and the shift are held constant: the rate is
 * read at the middle of the sub-step (the better estimate of its integral)
 * and the staffing at its start (a shift begins when its time has come).
 * Inside the sub-step the simulation is event-driven with millisecond
 * resolution, so a queue that builds and drains within one second, or a
 * service-level threshold shorter than a second, is still modelled exactly.
 *
 * Arrivals. The site's own callers arrive as a Poisson process with rate
 * scenario_rate_per_s() at the local hour (from the scenario's
 * utc_offset_min). Each sub-step draws the number of arrivals, N ~
 * Poisson(rate * dt), with Knuth's multiplication method for small means
 * and Hoermann's PTRS transformed rejection for means of 10 and more (both
 * exact, unlike a normal approximation, so the dispersion of the counts is
 * right at every load). Each own arrival stays home with probability
 * home_share / 1000; the others are counted as routed_away and leave the
 * model, because the site that answers them simulates them itself. A hub
 * also receives, for each inbound flow, a Poisson stream at rate
 * scenario_rate_per_s(source) * permille / 1000, counted in offered and in
 * from_other_sites and served with the source's own AHT; the hub reads the
 * same scenario and clock as its sources, so no message is needed. Given
 * the counts, the arrival instants of a Poisson process are the order
 * statistics of uniforms over the sub-step; they are generated directly in
 * increasing order (the minimum of m uniforms on [p, 1) is
 * p + (1 - p)(1 - V^(1/m))), and which stream each instant belongs to is
 * drawn without replacement from the remaining counts. That is exact, needs
 * no sort and no buffer, whatever the number of arrivals.
 *
 * Agents. The target staffing is the override if one is set, otherwise
 * scenario_agents_at() at the local hour. When the target rises, agents
 * log in idle at once (first cancelling pending log-outs). When it falls,
 * idle agents log out at once and the remainder are marked to log out as
 * soon as their current call ends: a shift change never drops a call. So
 * agents_logged_in = agents_ready (idle) + agents_talking, and it may stay
 * above the target while calls drain. agents_not_ready is always 0.
 *
 * Queue. Callers who find no idle agent wait in one FIFO queue with a
 * patience drawn from an exponential distribution of mean sc->patience_s
 * (0, which the scenario loader refuses but a hand-built scenario may
 * use, means callers never abandon). A caller abandons when the wait exceeds
 * the patience; abandonment is applied lazily: a free agent that finds an
 * expired caller at the head counts it abandoned and takes the next one,
 * and the whole queue is swept at the end of every sim_advance() so the
 * counters and the queue length are exact at every report. The queue holds
 * at most SIM_QUEUE_MAX callers in a ring buffer that grows by doubling up
 * to that bound (no allocation per call once it has reached the size the
 * load needs); a caller who finds it full gets a busy signal and counts as
 * offered and abandoned. When the ring is full, expired callers still in it
 * are swept out first, at most once per sub-step to bound the cost, so a
 * busy signal may be given while callers who gave up less than a second
 * ago still hold a place.
 *
 * Handle times are exponential around the caller's site AHT. This is the
 * service law Erlang C assumes, and the controller decides every move with
 * Erlang C; with the same law the measured service level should match the
 * prediction, so a gap between the two points at routing and not at the
 * simulator. (Real handle times are closer to lognormal, usually with a
 * coefficient of variation below 1; by the usual (1 + cv^2) / 2 scaling of
 * M/G/c waits that would make queues a little shorter than Erlang C
 * predicts, a difference the planner would then have to explain.)
 * answered_within counts calls whose wait was at most sc->sl_threshold_s.
 *
 * Bounds. The queue and the agent pool are bounded (SIM_QUEUE_MAX,
 * SIM_AGENTS_MAX); a per-stream rate above SIM_RATE_MAX calls/s (a broken
 * scenario) is clamped so one sub-step stays bounded work; and if
 * sim_advance() is asked to catch up more than SIM_CATCHUP_MAX_MS at once
 * (the process was stopped, the clock jumped), the excess is treated as a
 * pause: every timestamp in the model is shifted forward, so calls in
 * progress and waiting callers resume where they were rather than
 * spinning through hours of sub-steps on the event loop.
 *
 * Randomness. One xoshiro256** generator, seeded through splitmix64, lives
 * in sim_t, and draws happen in a fixed order, so the same seed and the
 * same sequence of calls give identical reports. */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SIM_STEP_MS        1000
#define SIM_QUEUE_MAX      10000u
#define SIM_QUEUE_INIT     64u
#define SIM_AGENTS_MAX     10000u
#define SIM_RATE_MAX       10000.0
#define SIM_CATCHUP_MAX_MS (6 * 3600 * INT64_C(1000))
#define SIM_DAY_MS         (86400 * INT64_C(1000))
/* Patience of a caller who never abandons. */
#define SIM_PATIENCE_NEVER UINT32_MAX
/* Longest AHT we represent, in seconds, so aht_s * 1000 fits in 32 bits. */
#define SIM_AHT_MAX_S 4000000u

/* A caller in the queue. 16 bytes, so a full queue is 160 KB. */
typedef struct {
  int64_t arrive_ms;
  uint32_t patience_ms; /* SIM_PATIENCE_NEVER: waits forever */
  uint32_t aht_ms;      /* mean handle time of the caller's own site */
} sim_call_t;

/* A call in progress, in a min-heap ordered by end time. */
typedef struct {
  int64_t end_ms;
  uint32_t handle_ms;
} sim_busy_t;

struct sim {
  const scenario_t *sc;        /* borrowed, outlives the sim */
  const scenario_site_t *site; /* borrowed, points into sc */
  int64_t now_ms;              /* business time simulated so far */
  uint64_t rng[4];             /* xoshiro256** state */

  unsigned home_permille;
  unsigned override_agents; /* 0: follow the scenario */

  /* Inbound flows aggregated per source, indexed like sc->sites. The
   * compact list in_idx[0..n_in) names the sources with a flow, and in_cum
   * holds the running sum of their rates during a sub-step. */
  unsigned *in_permille;
  size_t *in_idx;
  double *in_cum;
  size_t n_in;

  /* FIFO queue, ring buffer of q_cap <= SIM_QUEUE_MAX entries. */
  sim_call_t *q;
  uint32_t q_cap, q_head, q_len;
  uint32_t q_peak; /* most live callers waiting at a sub-step's end since the last report */

  /* Agents: idle ones are a count; busy ones each hold a heap entry. */
  sim_busy_t *busy;
  uint32_t busy_cap, n_busy;
  uint32_t idle;
  uint32_t pending_logout; /* busy agents who log out when their call ends */

  uint64_t step_no; /* sub-steps run, to sweep a full queue once per step */
  uint64_t swept_step;

  /* Interval counters, reset by sim_take_report(). */
  uint64_t offered, answered, abandoned, within, from_other, routed_away;
  uint64_t done_count, done_sum_ms;
};

/* ---- random numbers ---- */

static uint64_t sim_splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t sim_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna): fast, 256 bits of state, passes
 * BigCrush; far more than a simulator needs, for a few lines. */
static uint64_t sim_next(sim_t *s) {
  uint64_t *r = s->rng;
  const uint64_t out = sim_rotl(r[1] * 5, 7) * 9;
  const uint64_t t = r[1] << 17;
  r[2] ^= r[0];
  r[3] ^= r[1];
  r[1] ^= r[2];
  r[0] ^= r[3];
  r[2] ^= t;
  r[3] = sim_rotl(r[3], 45);
  return out;
}

static void sim_seed(sim_t *s, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    s->rng[i] = sim_splitmix64(&x);
  /* The all-zero state is xoshiro's one fixed point; splitmix64 cannot
   * produce four zeros in a row, but a guard costs nothing. */
  if ((s->rng[0] | s->rng[1] | s->rng[2] | s->rng[3]) == 0) s->rng[0] = 1;
}

/* Uniform on the open interval (0, 1): neither log(0) nor a division by
 * 0.5 - |U - 0.5| == 0 can happen downstream. */
static double sim_uniform(sim_t *s) {
  return ((double)(sim_next(s) >> 11) + 0.5) * 0x1.0p-53;
}

/* Exponential with mean 1. */
static double sim_exp1(sim_t *s) {
  return -log(sim_uniform(s));
}

/* ln(k!) for integral k >= 0: a table below 10, Stirling's series above,
 * which is accurate to ~1e-11 there. We avoid lgamma() because it writes
 * the global signgam, and this module keeps no shared state. */
static double sim_log_factorial(double k) {
  static const double small[10] = {
      0.0,
      0.0,
      0.69314718055994530942,
      1.79175946922805500081,
      3.17805383034794561964,
      4.78749174278204599425,
      6.57925121201010099506,
      8.52516136106541430017,
      10.60460290274525022842,
      12.80182748008146961121,
  };
  if (k < 10.0) return small[(int)k];
  const double x = k + 1.0;
  const double x2 = x * x;
  return (x - 0.5) * log(x) - x + 0.91893853320467274178 /* ln(2 pi) / 2 */
         + (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0) / x2) / x2) / x;
}

/* Poisson variate with the given mean, exactly distributed. */
static uint64_t sim_poisson(sim_t *s, double mean) {
  if (!(mean > 0.0)) return 0;
  if (mean < 10.0) {
    /* Knuth: multiply uniforms until the product falls below e^-mean.
     * Expected mean + 1 draws, fine below 10. */
    const double limit = exp(-mean);
    uint64_t k = 0;
    double p = sim_uniform(s);
    while (p > limit) {
      k++;
      p *= sim_uniform(s);
    }
    return k;
  }
  /* PTRS (Hoermann 1993, "The transformed rejection method for generating
   * Poisson random variables"), as in NumPy: about 1.1 iterations per
   * variate at any mean, exact. */
  const double slam = sqrt(mean);
  const double loglam = log(mean);
  const double b = 0.931 + 2.53 * slam;
  const double a = -0.059 + 0.02483 * b;
  const double invalpha = 1.1239 + 1.1328 / (b - 3.4);
  const double vr = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    const double u = sim_uniform(s) - 0.5;
    const double v = sim_uniform(s);
    const double us = 0.5 - fabs(u);
    const double k = floor((2.0 * a / us + b) * u + mean + 0.43);
    if (us >= 0.07 && v <= vr) return (uint64_t)k;
    if (k < 0.0 || (us < 0.013 && v > us)) continue;
    if (log(v) + log(invalpha) - log(a / (us * us) + b) <=
        -mean + k * loglam - sim_log_factorial(k))
      return (uint64_t)k;
  }
}

/* ---- scenario lookups ---- */

static double sim_local_hour(const sim_t *s, int64_t t_ms) {
  int64_t ms = (t_ms + (int64_t)s->sc->utc_offset_min * 60000) % SIM_DAY_MS;
  if (ms < 0) ms += SIM_DAY_MS;
  return (double)ms / 3600000.0;
}

/* The scenario's rate, cleaned: a NaN, negative or absurd value from bad
 * data must not stall the event loop or poison the counters. */
static double sim_rate(const sim_t *s, const scenario_site_t *site, double hour) {
  const double r = scenario_rate_per_s(s->sc, site, hour);
  if (!(r > 0.0)) return 0.0;
  return r > SIM_RATE_MAX ? SIM_RATE_MAX : r;
}

static uint32_t sim_aht_ms(const scenario_site_t *site) {
  const unsigned a = site->aht_s > SIM_AHT_MAX_S ? SIM_AHT_MAX_S : site->aht_s;
  return (uint32_t)a * 1000u;
}

/* ---- heap of calls in progress ---- */

static void sim_heap_push(sim_t *s, sim_busy_t b) {
  /* Capacity is guaranteed by sim_staff(): busy <= logged in <= busy_cap. */
  uint32_t i = s->n_busy++;
  while (i > 0) {
    const uint32_t parent = (i - 1) / 2;
    if (s->busy[parent].end_ms <= b.end_ms) break;
    s->busy[i] = s->busy[parent];
    i = parent;
  }
  s->busy[i] = b;
}

static sim_busy_t sim_heap_pop(sim_t *s) {
  const sim_busy_t top = s->busy[0];
  const sim_busy_t last = s->busy[--s->n_busy];
  const uint32_t n = s->n_busy;
  uint32_t i = 0;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && s->busy[c + 1].end_ms < s->busy[c].end_ms) c++;
    if (last.end_ms <= s->busy[c].end_ms) break;
    s->busy[i] = s->busy[c];
    i = c;
  }
  if (n > 0) s->busy[i] = last;
  return top;
}

/* ---- queue ---- */

static bool sim_expired(const sim_call_t *c, int64_t t_ms) {
  return c->patience_ms != SIM_PATIENCE_NEVER && t_ms - c->arrive_ms > (int64_t)c->patience_ms;
}

/* Removes every caller whose patience ran out by t_ms, keeping FIFO order. */
static void sim_sweep(sim_t *s, int64_t t_ms) {
  uint32_t w = 0;
  for (uint32_t r = 0; r < s->q_len; r++) {
    const sim_call_t c = s->q[(s->q_head + r) % s->q_cap];
    if (sim_expired(&c, t_ms)) {
      s->abandoned++;
      continue;
    }
    s->q[(s->q_head + w) % s->q_cap] = c;
    w++;
  }
  s->q_len = w;
}

/* Doubles the ring up to SIM_QUEUE_MAX. Happens only while the queue sets
 * a new high-water mark, never in the steady state. */
static bool sim_queue_grow(sim_t *s) {
  if (s->q_cap >= SIM_QUEUE_MAX) return false;
  uint32_t cap = s->q_cap * 2;
  if (cap > SIM_QUEUE_MAX) cap = SIM_QUEUE_MAX;
  sim_call_t *q = malloc((size_t)cap * sizeof *q);
  if (q == NULL) return false;
  for (uint32_t i = 0; i < s->q_len; i++)
    q[i] = s->q[(s->q_head + i) % s->q_cap];
  free(s->q);
  s->q = q;
  s->q_cap = cap;
  s->q_head = 0;
  return true;
}

static void sim_answer(sim_t *s, const sim_call_t *c, int64_t t_ms) {
  const int64_t wait = t_ms - c->arrive_ms;
  s->answered++;
  if (wait <= (int64_t)s->sc->sl_threshold_s * 1000) s->within++;
  double h = floor((double)c->aht_ms * sim_exp1(s) + 0.5);
  if (h < 1.0) h = 1.0; /* a call takes some time; keeps events ordered */
  if (h > (double)UINT32_MAX) h = (double)UINT32_MAX;
  s->idle--;
  sim_heap_push(s, (sim_busy_t){.end_ms = t_ms + (int64_t)h, .handle_ms = (uint32_t)h});
}

/* Idle agents take waiting callers from the head, skipping those who have
 * already given up. Afterwards either no agent is idle or the queue is
 * empty; sim_arrive() relies on that. */
static void sim_dispatch(sim_t *s, int64_t t_ms) {
  while (s->idle > 0 && s->q_len > 0) {
    const sim_call_t c = s->q[s->q_head];
    s->q_head = (s->q_head + 1) % s->q_cap;
    s->q_len--;
    if (sim_expired(&c, t_ms)) {
      s->abandoned++;
      continue;
    }
    sim_answer(s, &c, t_ms);
  }
}

static void sim_arrive(sim_t *s, int64_t t_ms, uint32_t aht_ms) {
  sim_call_t c = {.arrive_ms = t_ms, .patience_ms = SIM_PATIENCE_NEVER, .aht_ms = aht_ms};
  if (s->idle > 0) {
    sim_answer(s, &c, t_ms);
    return;
  }
  if (s->q_len == SIM_QUEUE_MAX && s->swept_step != s->step_no) {
    s->swept_step = s->step_no;
    sim_sweep(s, t_ms);
  }
  if (s->q_len == s->q_cap && !sim_queue_grow(s)) {
    s->abandoned++; /* busy signal */
    return;
  }
  if (s->sc->patience_s > 0) {
    double p = floor((double)s->sc->patience_s * 1000.0 * sim_exp1(s) + 0.5);
    if (p >= (double)SIM_PATIENCE_NEVER) p = (double)(SIM_PATIENCE_NEVER - 1);
    c.patience_ms = (uint32_t)p;
  }
  s->q[(s->q_head + s->q_len) % s->q_cap] = c;
  s->q_len++;
}

/* ---- agents ---- */

static bool sim_busy_reserve(sim_t *s, uint32_t n) {
  if (n <= s->busy_cap) return true;
  uint32_t cap = s->busy_cap ? s->busy_cap : 16;
  while (cap < n)
    cap *= 2;
  if (cap > SIM_AGENTS_MAX) cap = SIM_AGENTS_MAX;
  sim_busy_t *b = realloc(s->busy, (size_t)cap * sizeof *b);
  if (b == NULL) return false;
  s->busy = b;
  s->busy_cap = cap;
  return n <= cap;
}

/* Moves the staffing towards `target` at t_ms without dropping a call. */
static void sim_staff(sim_t *s, int64_t t_ms, unsigned target) {
  if (target > SIM_AGENTS_MAX) target = SIM_AGENTS_MAX;
  const uint32_t present = s->idle + s->n_busy;
  const uint32_t staffed = present - s->pending_logout;
  if (target > staffed) {
    uint32_t more = target - staffed;
    const uint32_t keep = more < s->pending_logout ? more : s->pending_logout;
    s->pending_logout -= keep;
    more -= keep;
    if (more == 0) return;
    /* If memory is short, log in as many as the heap can hold; the next
     * sub-step tries again. */
    if (!sim_busy_reserve(s, present + more))
      more = s->busy_cap > present ? s->busy_cap - present : 0;
    s->idle += more;
    sim_dispatch(s, t_ms);
  } else if (target < staffed) {
    const uint32_t fewer = staffed - target;
    const uint32_t now_out = fewer < s->idle ? fewer : s->idle;
    s->idle -= now_out;
    s->pending_logout += fewer - now_out;
  }
}

static unsigned sim_target(const sim_t *s, int64_t t_ms) {
  if (s->override_agents > 0) return s->override_agents;
  return scenario_agents_at(s->site, sim_local_hour(s, t_ms));
}

static void sim_complete(sim_t *s) {
  const sim_busy_t b = sim_heap_pop(s);
  s->done_count++;
  s->done_sum_ms += b.handle_ms;
  if (s->pending_logout > 0) {
    s->pending_logout--;
    return;
  }
  s->idle++;
  sim_dispatch(s, b.end_ms);
}

/* ---- stepping ---- */

/* Next of the `m` remaining sorted uniform instants in [t0, t0 + dt):
 * the minimum of m uniforms on [pos, 1) is pos + (1 - pos)(1 - V^(1/m)). */
static int64_t sim_next_instant(sim_t *s, double *pos, uint64_t m, int64_t t0, int64_t dt) {
  *pos += (1.0 - *pos) * -expm1(log(sim_uniform(s)) / (double)m);
  int64_t off = (int64_t)(*pos * (double)dt);
  if (off >= dt) off = dt - 1;
  return t0 + off;
}

static void sim_step(sim_t *s, int64_t t0, int64_t dt) {
  const int64_t t1 = t0 + dt;
  const double secs = (double)dt / 1000.0;
  s->step_no++;
  sim_staff(s, t0, sim_target(s, t0));
  const double hour = sim_local_hour(s, t0 + dt / 2);

  /* Own arrivals, thinned by the route's home share. */
  const uint64_t n_own = sim_poisson(s, sim_rate(s, s->site, hour) * secs);
  uint64_t kept = n_own;
  if (s->home_permille == 0) {
    kept = 0;
  } else if (s->home_permille < 1000) {
    const double p = (double)s->home_permille / 1000.0;
    kept = 0;
    for (uint64_t i = 0; i < n_own; i++)
      kept += sim_uniform(s) < p;
  }
  s->routed_away += n_own - kept;

  /* Inbound flows, as one merged Poisson stream; in_cum picks the source. */
  double in_rate = 0.0;
  for (size_t j = 0; j < s->n_in; j++) {
    const size_t i = s->in_idx[j];
    in_rate += sim_rate(s, &s->sc->sites[i], hour) * (double)s->in_permille[i] / 1000.0;
    s->in_cum[j] = in_rate;
  }
  const uint64_t n_in = sim_poisson(s, in_rate * secs);
  s->offered += kept + n_in;
  s->from_other += n_in;

  uint64_t rem_own = kept, rem_in = n_in;
  double pos = 0.0;
  int64_t t_arr = 0;
  bool arr_ready = false;
  for (;;) {
    const uint64_t rem = rem_own + rem_in;
    if (rem > 0 && !arr_ready) {
      t_arr = sim_next_instant(s, &pos, rem, t0, dt);
      arr_ready = true;
    }
    /* A call that ends at the instant another arrives ends first, so the
     * freed agent serves the head of the queue before the newcomer. */
    if (s->n_busy > 0 && s->busy[0].end_ms < t1 && (rem == 0 || s->busy[0].end_ms <= t_arr)) {
      sim_complete(s);
      continue;
    }
    if (rem == 0) break;
    arr_ready = false;
    /* Which stream this instant belongs to, drawn without replacement
     * from the remaining counts (no draw when only one stream is left). */
    if (rem_in == 0 || (rem_own > 0 && (double)rem * sim_uniform(s) < (double)rem_own)) {
      rem_own--;
      sim_arrive(s, t_arr, sim_aht_ms(s->site));
      continue;
    }
    rem_in--;
    size_t j = 0;
    if (s->n_in > 1) {
      const double u = sim_uniform(s) * in_rate;
      while (j + 1 < s->n_in && u >= s->in_cum[j])
        j++;
    }
    sim_arrive(s, t_arr, sim_aht_ms(&s->sc->sites[s->in_idx[j]]));
  }
}

/* Treats business time beyond the catch-up limit as a pause: shifting every
 * timestamp keeps waits, patiences and remaining handle times intact. A
 * uniform shift keeps the heap ordered. */
static void sim_rebase(sim_t *s, int64_t delta) {
  for (uint32_t i = 0; i < s->q_len; i++)
    s->q[(s->q_head + i) % s->q_cap].arrive_ms += delta;
  for (uint32_t i = 0; i < s->n_busy; i++)
    s->busy[i].end_ms += delta;
  s->now_ms += delta;
}

/* ---- public API ---- */

sim_t *sim_new(const scenario_t *sc, const char *slug, int64_t start_ms, uint64_t seed) {
  if (sc == NULL || slug == NULL) return NULL;
  const scenario_site_t *site = scenario_find(sc, slug);
  if (site == NULL) return NULL;
  sim_t *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->sc = sc;
  s->site = site;
  s->now_ms = start_ms;
  s->home_permille = 1000;
  sim_seed(s, seed);
  const size_t n = sc->count; /* >= 1: slug was found */
  s->in_permille = calloc(n, sizeof *s->in_permille);
  s->in_idx = calloc(n, sizeof *s->in_idx);
  s->in_cum = calloc(n, sizeof *s->in_cum);
  s->q = malloc(SIM_QUEUE_INIT * sizeof *s->q);
  s->q_cap = SIM_QUEUE_INIT;
  if (s->in_permille == NULL || s->in_idx == NULL || s->in_cum == NULL || s->q == NULL) {
    sim_free(s);
    return NULL;
  }
  /* Staff the site now so a report taken before the first step is true. */
  sim_staff(s, start_ms, sim_target(s, start_ms));
  return s;
}

void sim_free(sim_t *s) {
  if (s == NULL) return;
  free(s->in_permille);
  free(s->in_idx);
  free(s->in_cum);
  free(s->q);
  free(s->busy);
  free(s);
}

void sim_set_home_share(sim_t *s, unsigned permille) {
  s->home_permille = permille > 1000 ? 1000 : permille;
}

void sim_set_inflows(sim_t *s, const sim_inflow_t *in, unsigned n) {
  memset(s->in_permille, 0, s->sc->count * sizeof *s->in_permille);
  for (unsigned k = 0; k < n; k++) {
    const scenario_site_t *src = scenario_find(s->sc, in[k].slug);
    /* The site's own traffic is governed by the home share; counting it
     * again as an inflow would double it. */
    if (src == NULL || src == s->site) continue;
    const size_t i = (size_t)(src - s->sc->sites);
    /* A source cannot send more than all of its traffic. */
    const unsigned sum = s->in_permille[i] + (in[k].permille > 1000 ? 1000 : in[k].permille);
    s->in_permille[i] = sum > 1000 ? 1000 : sum;
  }
  s->n_in = 0;
  for (size_t i = 0; i < s->sc->count; i++)
    if (s->in_permille[i] > 0) s->in_idx[s->n_in++] = i;
}

unsigned sim_home_share(const sim_t *s) {
  return s->home_permille;
}

unsigned sim_inflow_of(const sim_t *s, const char *slug) {
  const scenario_site_t *src = scenario_find(s->sc, slug);
  return src ? s->in_permille[src - s->sc->sites] : 0;
}

void sim_set_agents_override(sim_t *s, unsigned agents) {
  s->override_agents = agents;
  sim_staff(s, s->now_ms, sim_target(s, s->now_ms));
}

void sim_advance(sim_t *s, int64_t now_ms) {
  if (now_ms <= s->now_ms) return;
  if (now_ms - s->now_ms > SIM_CATCHUP_MAX_MS)
    sim_rebase(s, now_ms - s->now_ms - SIM_CATCHUP_MAX_MS);
  while (s->now_ms < now_ms) {
    const int64_t dt = now_ms - s->now_ms < SIM_STEP_MS ? now_ms - s->now_ms : SIM_STEP_MS;
    sim_step(s, s->now_ms, dt);
    s->now_ms += dt;
    /* The queue's count may still hold callers who gave up (abandonment
     * is lazy); sweep before letting it set a new peak, so the peak counts
     * only callers really waiting. Sweeping only on a candidate peak keeps
     * the cost off the steady state. */
    if (s->q_len > s->q_peak) {
      sim_sweep(s, s->now_ms);
      if (s->q_len > s->q_peak) s->q_peak = s->q_len;
    }
  }
  sim_sweep(s, now_ms);
}

static uint32_t sim_clamp32(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void sim_take_report(sim_t *s, sim_report_t *out) {
  memset(out, 0, sizeof *out);
  out->offered = sim_clamp32(s->offered);
  out->answered = sim_clamp32(s->answered);
  out->abandoned = sim_clamp32(s->abandoned);
  out->answered_within = sim_clamp32(s->within);
  out->from_other_sites = sim_clamp32(s->from_other);
  out->routed_away = sim_clamp32(s->routed_away);
  out->in_queue = s->q_len;
  out->queue_peak = s->q_peak > s->q_len ? s->q_peak : s->q_len;
  s->q_peak = s->q_len; /* the next interval starts with the queue as it is now */
  if (s->q_len > 0) {
    const int64_t w = s->now_ms - s->q[s->q_head].arrive_ms;
    out->longest_wait_ms = w <= 0 ? 0 : sim_clamp32((uint64_t)w);
  }
  out->agents_logged_in = s->idle + s->n_busy;
  out->agents_ready = s->idle;
  out->agents_talking = s->n_busy;
  out->agents_not_ready = 0;
  out->aht_ms =
      s->done_count > 0 ? sim_clamp32(s->done_sum_ms / s->done_count) : sim_aht_ms(s->site);
  s->offered = s->answered = s->abandoned = s->within = s->from_other = s->routed_away = 0;
  s->done_count = s->done_sum_ms = 0;
}
