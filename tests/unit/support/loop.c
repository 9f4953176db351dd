#include "support/loop.h"

static void tloop_on_deadline(uv_timer_t *timer) {
  tloop_t *t = timer->data;
  t->deadline_hit = true;
}

static void tloop_on_wake(uv_timer_t *timer) {
  (void)timer;
}

void tloop_init(tloop_t *t, uv_loop_t *loop) {
  t->loop = loop;
  t->deadline_hit = false;
  uv_timer_init(loop, &t->deadline);
  uv_timer_init(loop, &t->wake);
  t->deadline.data = t->wake.data = t;
}

bool tloop_wait(tloop_t *t, const int *counter, int target, uint64_t ms) {
  t->deadline_hit = false;
  uv_timer_start(&t->deadline, tloop_on_deadline, ms, 0);
  while (*counter < target && !t->deadline_hit)
    uv_run(t->loop, UV_RUN_ONCE);
  uv_timer_stop(&t->deadline);
  return *counter >= target;
}

bool tloop_wait_for(tloop_t *t, bool (*cond)(void *ctx, const void *arg), void *ctx,
                    const void *arg, uint64_t ms) {
  t->deadline_hit = false;
  uv_timer_start(&t->deadline, tloop_on_deadline, ms, 0);
  uv_timer_start(&t->wake, tloop_on_wake, 10, 10);
  bool ok;
  while (!(ok = cond(ctx, arg)) && !t->deadline_hit)
    uv_run(t->loop, UV_RUN_ONCE);
  uv_timer_stop(&t->wake);
  uv_timer_stop(&t->deadline);
  return ok;
}

void tloop_run_for(tloop_t *t, uint64_t ms) {
  t->deadline_hit = false;
  uv_timer_start(&t->deadline, tloop_on_deadline, ms, 0);
  while (!t->deadline_hit)
    uv_run(t->loop, UV_RUN_ONCE);
}

bool tloop_drain(tloop_t *t, uint64_t ms) {
  uv_timer_stop(&t->wake);
  uv_timer_stop(&t->deadline);
  t->deadline_hit = false;
  /* Unreferenced: the deadline alone does not keep the loop alive. */
  uv_timer_start(&t->deadline, tloop_on_deadline, ms, 0);
  uv_unref((uv_handle_t *)&t->deadline);
  while (uv_loop_alive(t->loop) && !t->deadline_hit)
    uv_run(t->loop, UV_RUN_ONCE);
  bool drained = !t->deadline_hit;
  uv_close((uv_handle_t *)&t->deadline, NULL);
  uv_close((uv_handle_t *)&t->wake, NULL);
  uv_run(t->loop, UV_RUN_DEFAULT);
  return drained;
}
