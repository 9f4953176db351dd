#include "backoff.h"

#include <time.h>
#include <unistd.h>

static uint64_t backoff_rand(backoff_t *b) {
  /* xorshift64*: small, fast, good enough for spreading retries. */
  uint64_t x = b->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  b->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

void backoff_init(backoff_t *b, uint32_t min_ms, uint32_t max_ms, uint64_t seed) {
  if (min_ms < 1) min_ms = 1;
  if (max_ms < min_ms) max_ms = min_ms;
  b->min_ms = min_ms;
  b->max_ms = max_ms;
  b->attempt = 0;
  b->round = 0;
  if (seed == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
  }
  b->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

uint32_t backoff_ceiling(const backoff_t *b) {
  /* The first window is already [min, 2 min]: with [min, min] every agent
   * that lost the same controller would retry in the same millisecond. */
  uint64_t ceil = b->min_ms;
  for (uint32_t i = 0; i <= b->attempt && ceil < b->max_ms; i++)
    ceil <<= 1;
  return ceil > b->max_ms ? b->max_ms : (uint32_t)ceil;
}

/* A delay in [min, ceiling] of the current attempt, which stays. */
static uint32_t backoff_draw(backoff_t *b) {
  uint32_t ceil = backoff_ceiling(b);
  uint32_t span = ceil - b->min_ms;
  if (span == 0) return b->min_ms;
  return b->min_ms + (uint32_t)(backoff_rand(b) % ((uint64_t)span + 1));
}

uint32_t backoff_next(backoff_t *b) {
  uint32_t d = backoff_draw(b);
  if (b->attempt < 63) b->attempt++;
  return d;
}

uint32_t backoff_next_rotating(backoff_t *b, unsigned naddrs) {
  if (naddrs > 1 && ++b->round < naddrs) return backoff_draw(b);
  b->round = 0;
  return backoff_next(b);
}

void backoff_reset(backoff_t *b) {
  b->attempt = 0;
  b->round = 0;
}
