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

/* Loads the state. 0; NIRC_ENOTFOUND when there is no file (first start);
 * NIRC_EINVAL when the file is torn or corrupt — it is then renamed to
 * PATH.corrupt so nothing is lost and the next save starts clean;
 * NIRC_ENOMEM when memory ran out while reading it (the file stays). */
int state_load(const char *path, const char *self, route_t *out, char *err, size_t errlen);
/* Saves atomically. 0 or NIRC_EIO with the failing step named. */
int state_save(const char *path, const char *self, const route_t *r, char *err, size_t errlen);

#endif
