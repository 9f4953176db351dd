/* erlang: Erlang C staffing mathematics (pure, no I/O).
 *
 * The M/M/N queue: Poisson arrivals, exponential handle times, N agents,
 * callers wait (no abandonment). With traffic A = arrival rate x AHT in
 * Erlangs:
 *   P(wait)  = Erlang C(N, A)
 *   SL(t)    = 1 - P(wait) * exp(-(N - A) * t / AHT)
 *   ASA      = P(wait) * AHT / (N - A)
 *   occupancy = A / N
 * The queue is unstable when A >= N: every figure is then "infinite" and
 * erlang_predict() says so. NIRC runs this before every move, so a hub is
 * never handed more traffic than its agents can answer. */
#ifndef NIRC_ERLANG_H
#define NIRC_ERLANG_H

#include <stdbool.h>

typedef struct {
  double traffic_erl;   /* offered load A */
  unsigned agents;      /* N */
  bool stable;          /* A < N */
  double p_wait;        /* probability a call waits (1 when unstable) */
  double service_level; /* fraction answered within the threshold (0 when unstable) */
  double asa_s;         /* average speed of answer (INFINITY when unstable) */
  double occupancy;     /* A / N, capped at 1 */
} erlang_prediction_t;

/* Erlang C probability of waiting for N agents and A Erlangs; 1.0 when
 * A >= N, 0 when A <= 0. Numerically stable for N up to 100,000. */
double erlang_c(unsigned agents, double traffic_erl);
/* Full prediction for `agents` answering `traffic_erl` of calls with
 * handle time aht_s, service level measured at threshold_s. */
void erlang_predict(unsigned agents, double traffic_erl, double aht_s, double threshold_s,
                    erlang_prediction_t *out);
/* Smallest N meeting service level `target` (0..1) within threshold_s;
 * returns 0 for zero traffic and UINT32_MAX-ish (never more than 1,000,000)
 * if unreachable. */
unsigned erlang_agents_needed(double traffic_erl, double aht_s, double threshold_s, double target);

#endif
