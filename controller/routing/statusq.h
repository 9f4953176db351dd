/* statusq: which sites a status request shows, and the figures around
 * them, evaluated by the controller so that a page of 50 rows out of
 * 20,000 sites is cheap to send and never a silently truncated view.
 * Pure: the caller describes every site (statusq_site_t), the filters and
 * the page (statusq_filter_t); out come the rows to send, how many sites
 * matched, the link states of ALL live sites and how many sites send
 * calls to each. No I/O, no clock; ops.c (nircctl status) and web.c
 * (/status.json) call it. */
#ifndef NIRC_STATUSQ_H
#define NIRC_STATUSQ_H

#include "route.h"
#include "sites.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATUSQ_NSTATES 4 /* site_state_t values */

/* One site as the filters see it. Pointers are borrowed for the call. */
typedef struct {
  const char *slug;
  site_state_t state;
  bool removed;        /* neither shown nor counted */
  bool pbx_unreadable; /* its last report says so */
  bool excluded;       /* kept out of its rules after a failed move */
  bool has_note;       /* the engine holds, waits or refuses something */
  bool alarmed;        /* an active alarm names it */
  /* What it does now (its acknowledged route's shares); none: home. */
  const route_share_t *share;
  unsigned n_share;
  /* Its route is not known here (engine_route_seen not KNOWN): share is
   * not read. Neither home nor away: the route filters (--moved, --hub)
   * take only known routes, it is nobody's sender, and
   * statusq_result_t.route_unknown counts it so that the reply can say
   * how many sites the filters could not judge. */
  bool route_unknown;
} statusq_site_t;

typedef struct {
  uint32_t states;    /* bit (1u << site_state_t) per state wanted; 0: any */
  bool problems;      /* only sites that need a look (statusq_problem) */
  bool moved;         /* only sites routed away or receiving calls */
  const char *hub;    /* only sites whose route sends calls here; NULL/"": any */
  const char *prefix; /* only slugs starting with this; NULL/"": any */
  const char *only;   /* exactly this slug (nircctl status SITE); NULL/"": any */
  size_t offset;      /* of the first matching site to return */
  size_t limit;       /* rows at most; 0: every matching site from offset */
} statusq_filter_t;

/* Finds a slug's index among the sites, or SIZE_MAX (the caller's hash). */
typedef size_t (*statusq_find_fn)(void *ctx, const char *slug);

typedef struct {
  size_t *rows; /* owned: indices of the sites to show, in order */
  size_t n_rows;
  uint32_t *senders;             /* owned, one per site: how many live sites route calls to it */
  size_t matched;                /* sites that passed the filters, before paging */
  size_t count[STATUSQ_NSTATES]; /* live sites per link state, unfiltered */
  size_t live;                   /* live sites */
  size_t route_unknown;          /* live sites whose route is not known, unfiltered */
} statusq_result_t;

/* Whether site v needs a look: not online, PBX unreadable, excluded, a
 * note, or an alarm (nircctl's --problems; ctl_status_problem agrees). */
bool statusq_problem(const statusq_site_t *v);
/* Runs the filters and paging over n sites. 0, or NIRC_ENOMEM (out is
 * then empty). Free with statusq_result_free. */
int statusq_run(const statusq_site_t *v, size_t n, statusq_find_fn find, void *ctx,
                const statusq_filter_t *f, statusq_result_t *out);
void statusq_result_free(statusq_result_t *r);
/* "online", "stale", "offline", "never" (also "never-seen") into a state
 * bit for statusq_filter_t.states; 0 when not a state. */
uint32_t statusq_state_bit(const char *word);

#endif
