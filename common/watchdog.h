/* watchdog: systemd's service watchdog, fed from the event loop.
 *
 * When the unit sets WatchdogSec, systemd passes WATCHDOG_USEC; a timer on
 * the loop then sends WATCHDOG=1 at half that period. The ping proves the
 * loop itself turns: a process stuck in a callback stops pinging and is
 * restarted, which a ping from a separate thread would hide. */
#ifndef NIRC_WATCHDOG_H
#define NIRC_WATCHDOG_H

#include <uv.h>

/* Starts pinging if the service manager asked for it; returns 1 if so. The
 * timer is the caller's (so it can close it on shutdown). */
int watchdog_start(uv_loop_t *loop, uv_timer_t *timer);

#endif
