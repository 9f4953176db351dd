/* erlang: Erlang C computed without factorials or powers.
 *
 * The textbook formula divides A^N / N! by a sum of such terms; both
 * overflow a double long before N reaches the thousands. Instead we walk
 * the Erlang B recurrence
 *   B(0) = 1,  B(n) = A * B(n-1) / (n + A * B(n-1))
 * whose terms stay in [0, 1], and convert at the end:
 *   C(N, A) = N * B(N) / (N - A * (1 - B(N)))
 * This costs N steps and is accurate for N in the hundreds of thousands.
 * erlang_agents_needed() walks the same recurrence once, so finding the
 * staffing for 20,000 Erlangs stays linear instead of quadratic. */
#include "erlang.h"

#include <math.h>
#include <stdint.h>

/* Above this erlang_agents_needed() gives up and reports the cap. */
#define ERLANG_AGENTS_CAP 1000000u

/* One step of the Erlang B recurrence: B(n) from B(n-1). */
static double erlang_b_step(double b_prev, unsigned n, double a) {
  double ab = a * b_prev;
  return ab / ((double)n + ab);
}

/* Erlang C from Erlang B for N agents; the caller guarantees 0 < A < N. */
static double erlang_c_from_b(double b, unsigned agents, double a) {
  double n = (double)agents;
  double c = n * b / (n - a * (1.0 - b));
  /* Rounding can push a probability a hair outside [0, 1]. */
  if (c < 0) return 0;
  if (c > 1) return 1;
  return c;
}

/* Service level and ASA of a stable queue with waiting probability c. A
 * non-positive handle time means calls are answered the instant an agent
 * frees up, so waiting time is zero. */
static void erlang_fill_stable(erlang_prediction_t *out, double c, unsigned agents, double a,
                               double aht_s, double threshold_s) {
  double spare = (double)agents - a;
  out->stable = true;
  out->p_wait = c;
  if (aht_s > 0) {
    double t = threshold_s > 0 ? threshold_s : 0;
    out->service_level = 1.0 - c * exp(-spare * t / aht_s);
    out->asa_s = c * aht_s / spare;
  } else {
    out->service_level = threshold_s > 0 ? 1.0 : 1.0 - c;
    out->asa_s = 0;
  }
  if (out->service_level < 0) out->service_level = 0;
  if (out->service_level > 1) out->service_level = 1;
}

double erlang_c(unsigned agents, double traffic_erl) {
  /* NaN and infinite traffic are treated as overload: a move with an
   * unknown load must never look safe. */
  if (isnan(traffic_erl) || isinf(traffic_erl)) return 1.0;
  if (traffic_erl <= 0) return 0;
  if (traffic_erl >= (double)agents) return 1.0;
  double b = 1.0;
  for (unsigned n = 1; n <= agents; n++)
    b = erlang_b_step(b, n, traffic_erl);
  return erlang_c_from_b(b, agents, traffic_erl);
}

void erlang_predict(unsigned agents, double traffic_erl, double aht_s, double threshold_s,
                    erlang_prediction_t *out) {
  out->traffic_erl = traffic_erl;
  out->agents = agents;
  if (!isnan(traffic_erl) && traffic_erl <= 0) {
    /* Nothing offered: nothing waits, whatever the staffing. */
    out->stable = true;
    out->p_wait = 0;
    out->service_level = 1.0;
    out->asa_s = 0;
    out->occupancy = 0;
    return;
  }
  if (isnan(traffic_erl) || traffic_erl >= (double)agents) {
    out->stable = false;
    out->p_wait = 1.0;
    out->service_level = 0;
    out->asa_s = INFINITY;
    out->occupancy = 1.0;
    return;
  }
  out->occupancy = traffic_erl / (double)agents;
  erlang_fill_stable(out, erlang_c(agents, traffic_erl), agents, traffic_erl, aht_s, threshold_s);
}

unsigned erlang_agents_needed(double traffic_erl, double aht_s, double threshold_s, double target) {
  if (isnan(traffic_erl) || isinf(traffic_erl)) return ERLANG_AGENTS_CAP;
  if (traffic_erl <= 0) return 0;
  if (traffic_erl >= (double)ERLANG_AGENTS_CAP) return ERLANG_AGENTS_CAP;
  /* The smallest stable staffing is floor(A) + 1; below it the queue
   * grows without bound, so the search starts there. The recurrence is
   * walked up to that point once and then continued one agent at a time. */
  unsigned start = (unsigned)floor(traffic_erl) + 1;
  double b = 1.0;
  for (unsigned n = 1; n < start; n++)
    b = erlang_b_step(b, n, traffic_erl);
  for (unsigned n = start; n <= ERLANG_AGENTS_CAP; n++) {
    b = erlang_b_step(b, n, traffic_erl);
    erlang_prediction_t p = {.traffic_erl = traffic_erl, .agents = n};
    erlang_fill_stable(&p, erlang_c_from_b(b, n, traffic_erl), n, traffic_erl, aht_s, threshold_s);
    if (p.service_level >= target) return n;
  }
  return ERLANG_AGENTS_CAP;
}
