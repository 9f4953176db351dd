/* pbxlog: the recent PBX events of each site (PbxEvent, as stored in
 * link_events), kept in memory so `nircctl site SLUG` can say whether a
 * PBX drifted tonight, when, and whether it was repaired. Bounded:
 * PBXLOG_KEEP per site, and a site's events are allocated only when it
 * has one (20,000 quiet sites cost one pointer each). Pure data, no I/O.
 * Not loaded from the database: the events before `since_ms` are in
 * link_events only, and the output says so. */
#ifndef NIRC_PBXLOG_H
#define NIRC_PBXLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PBXLOG_KEEP       8
#define PBXLOG_EVENT_MAX  32
#define PBXLOG_DETAIL_MAX 400

typedef struct {
  int64_t at_ms;                  /* when the agent saw it, by the controller's clock */
  int64_t late_ms;                /* how long after at_ms it was reported; 0: on time */
  bool at_or_before;              /* the agent did not say when (or said what cannot be) */
  char event[PBXLOG_EVENT_MAX];   /* the link event: "pbx_drift_repaired", ... */
  char detail[PBXLOG_DETAIL_MAX]; /* escaped already (safetext) */
} pbxlog_event_t;

struct pbxlog_site; /* PBXLOG_KEEP events, newest first */

typedef struct {
  struct pbxlog_site **by_site; /* owned; per site index, NULL: no event */
  size_t n;                     /* entries in by_site */
  int64_t since_ms;             /* real ms the log began (0: never) */
} pbxlog_t;

/* Keeps `ev` for the site at index `site`, in order of at_ms: the oldest
 * goes when PBXLOG_KEEP are kept (a late event older than all of them is
 * not kept). 0, or NIRC_ENOMEM (nothing kept, the log unchanged). */
int pbxlog_add(pbxlog_t *l, size_t site, const pbxlog_event_t *ev);
/* The site's events, newest first (borrowed until the next pbxlog_add or
 * pbxlog_free); returns how many, *out NULL when none. */
size_t pbxlog_get(const pbxlog_t *l, size_t site, const pbxlog_event_t **out);
void pbxlog_free(pbxlog_t *l);

#endif
