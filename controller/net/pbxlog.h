/* pbxlog: the recent PBX events of each site (PbxEvent, as stored in
 * link_events), kept in memory so `nircctl site SLUG` can say whether a
 * PBX drifted tonight, when, and whether it was repaired. Bounded:
 * PBXLOG_KEEP per site, and a site's events are allocated only when it
 * has one (20,000 quiet sites cost one pointer each). Pure data, no I/O.
 * A leader also reads each site's recent ones back from link_events once
 * (server_pbxload.c) and merges them with those received meanwhile;
 * `state` says how far back the log goes (since_ms), so the output says
 * where the rest are. */
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

/* How far back the log goes. RECEIVED -> LOADING -> LOADED, or
 * LOADING -> LOAD_FAILED -> LOADING (tried again). */
typedef enum {
  PBXLOG_RECEIVED = 0, /* what this controller received since it started (since_ms) */
  PBXLOG_LOADING,      /* and the database's recent ones are being read */
  PBXLOG_LOADED,       /* the database's since since_ms, merged with those received */
  PBXLOG_LOAD_FAILED,  /* received since it started; reading the database's failed (why) */
} pbxlog_state_t;
#define PBXLOG_STATE_NAMES                                                                         \
  { "received", "loading", "loaded", "load_failed" }

typedef struct {
  struct pbxlog_site **by_site; /* owned; per site index, NULL: no event */
  size_t n;                     /* entries in by_site */
  int64_t since_ms;             /* real ms the log goes back to (0: never) */
  pbxlog_state_t state;
  int64_t asked_ms; /* real ms the last load was asked (the lead taken); 0: never */
  int64_t from_ms;  /* the start of the window that load reads */
  int64_t retry_ms; /* LOAD_FAILED: real ms it is tried again */
  int64_t sent_ms;  /* real ms the last read was queued */
  char why[160];    /* LOAD_FAILED: why, escaped */
} pbxlog_t;

/* Keeps `ev` for the site at index `site`, in order of at_ms: the oldest
 * goes when PBXLOG_KEEP are kept (a late event older than all of them is
 * not kept). 0, or NIRC_ENOMEM (nothing kept, the log unchanged). */
int pbxlog_add(pbxlog_t *l, size_t site, const pbxlog_event_t *ev);
/* The site's events, newest first (borrowed until the next pbxlog_add or
 * pbxlog_free); returns how many, *out NULL when none. */
/* pbxlog_add for an event read back from the database: not kept again
 * when one of the same kind in the same second is (link_events stores
 * the second): one received while the read was in flight is both stored
 * and kept already, and the one received is exact to the ms. */
int pbxlog_merge(pbxlog_t *l, size_t site, const pbxlog_event_t *ev);
/* Moves to `to` if the transition is one of those above: true, else false
 * and nothing changes. LOADED sets since_ms to from_ms. */
bool pbxlog_set_state(pbxlog_t *l, pbxlog_state_t to);
const char *pbxlog_state_name(pbxlog_state_t s);
size_t pbxlog_get(const pbxlog_t *l, size_t site, const pbxlog_event_t **out);
void pbxlog_free(pbxlog_t *l);

#endif
