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
