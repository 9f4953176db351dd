#include "watchdog.h"

#include <systemd/sd-daemon.h>

static void watchdog_ping(uv_timer_t *t) {
  sd_notify(0, "WATCHDOG=1");
}

int watchdog_start(uv_loop_t *loop, uv_timer_t *timer) {
  uint64_t usec = 0;
  uv_timer_init(loop, timer);
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return 0;
  uint64_t every_ms = usec / 2000;
  if (every_ms == 0) every_ms = 1;
  uv_timer_start(timer, watchdog_ping, every_ms, every_ms);
  /* The watchdog must not keep a stopping process alive. */
  uv_unref((uv_handle_t *)timer);
  return 1;
}
