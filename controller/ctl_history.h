/* ctl_history: how nircctl shows the audit trail (`nircctl history`): a
 * table for people with times in the operations room's zone, CSV for
 * spreadsheets, JSON for scripts. Pure output: the reply in, text out. */
#ifndef NIRC_CTL_HISTORY_H
#define NIRC_CTL_HISTORY_H

#include "nirc.pb-c.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CTL_HISTORY_TABLE = 0, CTL_HISTORY_CSV } ctl_history_fmt_t;

/* Writes the entries to `out` as a table or CSV (JSON is nircctl's, like
 * every command's), times in zone `tz` (an IANA name). Every text that
 * came from the controller, an agent or an operator is escaped (no
 * control character reaches the terminal or the file). */
void ctl_history_print(FILE *out, const Nirc__HistoryReply *h, ctl_history_fmt_t fmt,
                       const char *tz);

/* CSV in pieces, for `history --all`, which writes each page as it
 * comes: the header line, then one page's entries (newest first when
 * `newest_first`, as pages come from the newest back). */
void ctl_history_csv_head(FILE *out);
void ctl_history_csv_rows(FILE *out, const Nirc__HistoryReply *h, const char *tz,
                          bool newest_first);

/* history --all: at most this many matching entries without --limit (its
 * JSON document or table is held in memory whole; --csv, written a page at
 * a time, has no such bound), and --limit with --all at most
 * CTL_HISTORY_ALL_LIMIT. An inquiry that needs more reads it window by
 * window (--since/--until). A page is the controller's cap. */
#define CTL_HISTORY_ALL_MAX   100000u
#define CTL_HISTORY_ALL_LIMIT 1000000u
#define CTL_HISTORY_PAGE      500u

/* The pager of `history --all`, free of I/O: nircctl sends the request,
 * hands each reply to ctl_history_pager_take, and asks again while it
 * says MORE (it has set the request for the page before). */
typedef enum {
  CTL_HISTORY_PAGE_MORE = 0, /* ask again: older entries match */
  CTL_HISTORY_PAGE_DONE,     /* every match read (or the newest --limit) */
  CTL_HISTORY_PAGE_OLD,      /* the controller is older than --all: it cannot */
  CTL_HISTORY_PAGE_TOO_MANY, /* more than CTL_HISTORY_ALL_MAX match, no --limit, not streamed */
} ctl_history_page_t;

typedef struct {
  uint32_t want;     /* --limit with --all: the newest that many; 0: every match */
  size_t pages, n;   /* pages and entries taken */
  uint64_t matching; /* counted by the controller with the first page */
  uint64_t unsaved;  /* the first page's unsaved_changes: the newest may miss */
  uint64_t oldest;   /* the smallest id taken: --before-id of what is left */
  bool more;         /* older entries match than those taken */
  bool two;          /* an entry's business time differs from its real time */
  bool business;     /* the window was compared with business time */
  bool stream;       /* each page written and freed as it comes (CSV): no bound on matches */
} ctl_history_pager_t;

/* Sets the pager up and the request (borrowed, changed by take) for the
 * first page: counted, CTL_HISTORY_PAGE at most. `stream`: the caller
 * holds no page after writing it (CSV), so any number may match. */
void ctl_history_pager_init(ctl_history_pager_t *p, Nirc__HistoryRequest *hq, uint32_t want,
                            bool stream);
/* Takes one reply (borrowed). After the first, every page asks for the
 * window it was compared with: a duration is resolved once, on the
 * controller's business clock, or the window would move between pages. */
ctl_history_page_t ctl_history_pager_take(ctl_history_pager_t *p, Nirc__HistoryRequest *hq,
                                          const Nirc__HistoryReply *h);
/* "nircctl: read 500 of ~1200 entries...": after a page, when another
 * follows; past CTL_HISTORY_ALL_MAX entries (a stream) every 20 pages
 * only, so a million entries say it some 100 times more, not 2,000. */
void ctl_history_pager_progress(FILE *out, const ctl_history_pager_t *p);
/* Why OLD or TOO_MANY stopped it, and what to do instead, in buf. */
void ctl_history_pager_refusal(char *buf, size_t len, const ctl_history_pager_t *p,
                               ctl_history_page_t st);
/* One reply of `n` pages (taken newest first), its entries oldest first
 * in the array returned (owned by the caller; the entries stay the
 * pages'), NULL when out of memory. */
Nirc__AuditEntry **ctl_history_pager_merge(const ctl_history_pager_t *p,
                                           const Nirc__HistoryReply **pages, size_t n,
                                           Nirc__HistoryReply *out);
/* After CSV written page by page: the notes ctl_history_notes gives. */
void ctl_history_pager_csv_notes(FILE *out, const ctl_history_pager_t *p, bool window);

/* Whether an entry's business time differs from its real time by more
 * than a minute (an accelerated clock): the table then shows both. */
bool ctl_history_two_clocks(const Nirc__HistoryReply *h);

/* The History document of --json (docs/CLI-JSON.md): the entries, and
 * whether they are all that matched (complete, next_before_id) and which
 * clock the window was compared with (window_clock). New reference. */
json_t *ctl_history_json(const Nirc__HistoryReply *h);

/* After the entries: the notes a reader needs to take them for what they
 * are: that older entries match too (and the --before-id that reads them),
 * or that the controller does not say; and, when `window` (--since or
 * --until was given) and the two clocks differ, which one the window was
 * compared with. For a table they follow it; for CSV they go to stderr. */
void ctl_history_notes(FILE *out, const Nirc__HistoryReply *h, bool window);

/* The DETAIL column of one entry: what moved where and why, from its
 * detail JSON (borrowed), in at most len bytes. */
void ctl_history_detail(const char *action, const char *detail_json, char *buf, size_t len);

/* "2020-01-23 03:12:05": real time `ms` in zone `tz`. */
void ctl_history_time(int64_t ms, const char *tz, char *buf, size_t len);

#endif
