/* state: the agent's fail-static memory — the last applied directive, on
 * disk, so a restarted agent routes exactly as before, even with no
 * controller to ask.
 *
 * Writes are atomic: a temporary file in the same directory is written,
 * fsync'd and renamed over the old one, then the directory is fsync'd. A
 * crash at any moment leaves either the old state or the new one. */
#ifndef NIRC_STATE_H
#define NIRC_STATE_H

#include "route.h"

#include <stddef.h>
#include <stdint.h>

/* Loads the state. 0; NIRC_ENOTFOUND when there is no file (first start);
 * NIRC_EINVAL when the file is torn or corrupt — it is then renamed to
 * PATH.corrupt so nothing is lost and the next save starts clean;
 * NIRC_ENOMEM when memory ran out while reading it (the file stays). */
int state_load(const char *path, const char *self, route_t *out, char *err, size_t errlen);
/* Saves atomically. 0 or NIRC_EIO with the failing step named. */
int state_save(const char *path, const char *self, const route_t *r, char *err, size_t errlen);

/* The same, with the newest leadership epoch the agent has seen (from any
 * controller's Welcome), which may be newer than the route's: fencing must
 * survive a restart, or a restarted agent would take a deposed leader's
 * directives. Files without it load with the route's epoch. */
int state_load_seen(const char *path, const char *self, route_t *out, uint64_t *seen_epoch,
                    char *err, size_t errlen);
int state_save_seen(const char *path, const char *self, const route_t *r, uint64_t seen_epoch,
                    char *err, size_t errlen);

/* What the state file keeps beside the route (state_load_ext,
 * state_save_ext). Copied by value. */
typedef struct {
  uint64_t seen_epoch; /* as state_load_seen's */
  /* When the agent went home on its own at the route's revert_at (the
   * route's reason ROUTE_REASON_REVERTED): Unix ms on the controller's
   * business clock as the agent read it then, and which reading that was
   * (agent_clock_src_name: "host", "remembered", "measured"). Told to the
   * controller, which records the return at this time. went_home_ms 0:
   * not known (a file from before this field, or another route); saved
   * only with a route that went home. */
  int64_t went_home_ms;
  char went_home_clock[16];
} state_extra_t;

/* The same as state_load_seen / state_save_seen, with everything the file
 * keeps beside the route. A file without `went_home`, or with one that is
 * not an object of an integer at_ms and a clock name, loads with
 * went_home_ms 0 (not known): the route is what matters. */
int state_load_ext(const char *path, const char *self, route_t *out, state_extra_t *x, char *err,
                   size_t errlen);
int state_save_ext(const char *path, const char *self, const route_t *r, const state_extra_t *x,
                   char *err, size_t errlen);

/* Writes `text` and a newline to `path` atomically, as the state is
 * written (a temporary file fsync'd and renamed, then the directory
 * fsync'd); for the files kept beside the state (agent_clock.c). 0 or
 * NIRC_EIO with the failing step named. */
int state_write_atomic(const char *path, const char *text, char *err, size_t errlen);
/* The fix for a write that failed with errno `e`, in words ("the file
 * system is full: free space on this host"), or "" when there is no usual
 * one: state_write_atomic's error ends with it. */
const char *state_errno_fix(int e);

#endif
