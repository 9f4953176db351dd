/* tloop: driving a libuv loop in a unit test until something happened,
 * bounded by a deadline timer, so that nothing sleeps. Shared by the
 * adapter tests (test_adapter_exec, test_adapter_kamailio).
 *
 * The loop is the test's; a tloop_t adds two timers to it: the deadline,
 * and a waker that makes conditions outside the loop (a file appearing, a
 * process exiting) be checked every few milliseconds. */
#ifndef NIRC_TEST_LOOP_H
#define NIRC_TEST_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
  uv_loop_t *loop; /* borrowed */
  uv_timer_t deadline, wake;
  bool deadline_hit;
} tloop_t;

/* Initialises both timers on loop (neither is started). */
void tloop_init(tloop_t *t, uv_loop_t *loop);
/* Runs the loop until *counter reaches target or ms pass; true if it did. */
bool tloop_wait(tloop_t *t, const int *counter, int target, uint64_t ms);
/* Runs the loop (waking it every 10 ms) until cond(ctx, arg) holds or ms
 * pass; true if it held. */
bool tloop_wait_for(tloop_t *t, bool (*cond)(void *ctx, const void *arg), void *ctx,
                    const void *arg, uint64_t ms);
/* Runs the loop for ms: whatever is due in that time happens. */
void tloop_run_for(tloop_t *t, uint64_t ms);
/* For a teardown: runs the loop until no handle is active any more, but
 * for ms at most, then closes both timers. True if the loop drained; the
 * caller then closes the loop (uv_loop_close fails if a handle is left). */
bool tloop_drain(tloop_t *t, uint64_t ms);

#endif
