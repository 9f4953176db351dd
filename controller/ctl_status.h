/* ctl_status: how nircctl shows what is active, why, until when and what
 * comes next: the `status` table with its RULE column and its filters
 * (--moved, --problems) and Chinese names (--zh), the chain of reasons of
 * `nircctl site`, and the `nircctl next` timeline. Pure output: replies
 * in, text out (nircctl.c does the I/O). Every text from the controller,
 * an agent or an operator is escaped (common/safetext.h) before it is
 * printed; times are shown in the operations room's zone ([ctl] tz). */
#ifndef NIRC_CTL_STATUS_H
#define NIRC_CTL_STATUS_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
  bool moved;     /* only sites whose route is not home, and hubs receiving calls */
  bool hub;       /* only sites whose route sends calls to a hub (--hub HUB) */
  bool problems;  /* only sites not online, PBX unreadable, with a note, excluded or alarmed */
  bool zh;        /* Chinese names */
  bool colour;    /* ANSI colours for the link state */
  const char *tz; /* the zone times are shown in (IANA) */
  /* The filter options as typed ("--state offline --hub shaanxi"), for the
   * paging hints; NULL: none. */
  const char *filters;
  /* The rows are the problem sites of a network too large to list one row
   * a site (more than CTL_STATUS_BIG): the table is headed by the counts
   * and followed by how to see the rest. */
  bool summary;
  size_t offset; /* of the first row among the matching sites (--offset) */
} ctl_status_opts_t;

/* Above this many sites plain `nircctl status` and `watch` show the counts
 * and the problem sites (at most CTL_STATUS_PROBLEMS) instead of a row per
 * site. */
#define CTL_STATUS_BIG      200
#define CTL_STATUS_PROBLEMS 20

/* Terminal columns `s` (UTF-8) takes: East Asian wide characters (CJK,
 * Hangul, fullwidth forms) take two, combining marks none, others one. */
size_t ctl_text_width(const char *s);
/* `s` cut to at most `cols` columns (whole characters) and padded with
 * spaces to exactly `cols`, into buf. */
void ctl_text_pad(const char *s, size_t cols, char *buf, size_t len);

/* Whether site i's route is known not to be home, or it receives other
 * sites' calls (how many, of the routes known, in *senders, may be NULL).
 * A site whose route is not known is not "moved": it is counted apart
 * (ctl_status_not_known), never as home nor away. */
bool ctl_status_moved(const Nirc__StatusReply *st, size_t i, unsigned *senders);
/* Whether site i's route is known here (not route_unknown/route_unheard). */
bool ctl_status_route_known(const Nirc__SiteStatus *s);
/* Live sites whose route is not known here: the controller's count of
 * every site (StatusReply.route_not_known), or the reply's rows when it
 * sent none. */
size_t ctl_status_not_known(const Nirc__StatusReply *st);
/* Whether site i needs a look, with the reasons ("offline, alarm
 * capacity") in why; why may be NULL. */
bool ctl_status_problem(const Nirc__StatusReply *st, size_t i, char *why, size_t len);
/* The RULE column: "cutover 2000017 until 11:30: Wuhan lockdown",
 * "schedule night until 08:00, re-homed: shaanxi offline", "overflow
 * gd-peak", "hub for 3 sites", "default" (escaped). Without with_detail
 * the part after the end and reason (why it is not at the first hub) is
 * left out. */
void ctl_status_rule(const Nirc__StatusReply *st, size_t i, const char *tz, bool with_detail,
                     char *buf, size_t len);
/* "08:00" when within a day of now_ms, else "01-24 08:00", in zone tz;
 * business times both. */
void ctl_status_when(int64_t ms, int64_t now_ms, const char *tz, char *buf, size_t len);

/* Whether the reply holds every site that matched (no page left out). */
bool ctl_status_complete(const Nirc__StatusReply *st, const ctl_status_opts_t *o);
/* Live sites, from the reply's counts (of every site, whatever the
 * filters), or its rows when a controller sent no counts. */
size_t ctl_status_total(const Nirc__StatusReply *st);
/* The status table (with the summary and the alarm lines). */
void ctl_status_print(FILE *out, const Nirc__StatusReply *st, const ctl_status_opts_t *o);
/* The Status document of docs/CLI-JSON.md, filtered as the table is. */
json_t *ctl_status_json(const Nirc__StatusReply *st, const ctl_status_opts_t *o);
/* `nircctl site`: one site and the chain of reasons behind its route. */
void ctl_site_print(FILE *out, const Nirc__StatusReply *st, const ctl_status_opts_t *o);
/* `nircctl next`: the timeline, and its Next document. */
void ctl_next_print(FILE *out, const Nirc__NextReply *r, const char *tz);
/* "hubei, hunan +3 more": the sites a plan or `next` names whose route is
 * not known here (total of them counted, sites the first named), escaped. */
void ctl_route_not_known_names(char *const *sites, size_t n_sites, uint32_t total, char *buf,
                               size_t len);
json_t *ctl_next_json(const Nirc__NextReply *r);
/* False when a prediction's capacity_source is "unknown": the hub's agents
 * are neither measured nor configured (a hub turned down for it, or one a
 * forced move overrides), so its agents and the service level predicted
 * on them are not known: shown as such, null in --json, never 0 (plan,
 * next, --force's forced_over). NULL or "" (an older controller) is not
 * known to be unknown. */
bool ctl_agents_known(const char *capacity_source);

/* "online", "stale", "offline", "never-seen": the words status, site,
 * map and their JSON use for a link state. */
const char *ctl_link_word(Nirc__LinkState s);

#endif
