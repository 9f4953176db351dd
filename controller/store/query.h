/* query: the record of one statement the database client (db.c) runs,
 * and the queue such records wait in.
 *
 * A record owns copies of its statement, its parameters and, for a
 * once-write, its idempotency key, all in one allocation: query_new()
 * mallocs it, query_complete() runs its callback and frees it. Whoever
 * holds the pointer owns the record: the client's memory queue, its
 * in-flight slot, the once-write list waiting for a journal sync (once.c),
 * or the caller of journal_next() (journal.c), which builds records from
 * what it reads back. No I/O here. */
#ifndef NIRC_QUERY_H
#define NIRC_QUERY_H

#include "db-t.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An idempotency key: "<16 hex digits>-<sequence>", with room to spare. */
#define QUERY_KEY_MAX 48

/* One queued statement. sql, the parameter strings and a once-write's key
 * live in the same allocation, right after the record, so a query is one
 * malloc/free. */
typedef struct query {
  struct query *next;
  db_result_cb cb;
  void *arg;
  int nparams;                           /* the caller's parameters */
  const char *params[DB_MAX_PARAMS + 1]; /* into the tail; a once-write's key follows them */
  char *sql;                             /* the caller's statement, in the tail */
  const char *key;                       /* once-writes: the idempotency key; else NULL */
  int64_t at_ms;                         /* once-writes: wall-clock time of the call */
  uint64_t jend; /* replayed from the journal: offset just past its record; else 0 */
  bool solo;     /* once-writes: send alone (a batch holding it failed); see db.c */
  /* A once-write of rules, directives or the audit trail: it goes ahead
   * of queued history (query_queue_push). */
  bool urgent;
  /* A once-write urgent records may overtake: history (link events,
   * load minutes, acks) and the alarm record (raises, clears, acks of
   * alarms: 20,000 site_down rows raised at once held an emergency
   * cutover's reply for over a second). Among themselves they keep their
   * order, so an alarm's clear or ack never passes its raise. */
  bool overtakable;
  /* History that may be shed (db_exec_once_bulk): overtakable, and no
   * change an operator would miss. */
  bool bulk;
} query_t;

/* A string with its length; p == NULL is SQL NULL. Journal payloads are
 * not NUL-terminated, so records are built from these. */
typedef struct {
  const char *p;
  size_t len;
} query_str_t;

/* A FIFO of records, linked through next, except that an urgent record
 * (query_t.urgent) goes ahead of the overtakable ones (history and the
 * alarm record, query_t.overtakable) waiting at the end of the queue,
 * behind everything else. At 20,000 sites a minute's load rows are 40
 * pipelines of 512, and an operator's cutover queued behind them waited
 * for 40 commits. They never need to go first: their rows refer to sites,
 * and an alarm's clear or ack to its raise, never an urgent row to them,
 * so urgent writes first break no reference (in memory or in the journal,
 * which takes the queue in this order). Anything else (a read, a write that reads
 * history) keeps its place: an urgent record never passes it. `once`
 * counts the once-writes (they move to the journal when the connection is
 * lost). The queue owns the records it holds. */
typedef struct {
  query_t *head, *tail;
  /* The first of the overtakable records at the end of the queue, which
   * urgent records overtake; NULL: none, urgent ones append. */
  query_t *overtake;
  /* The record just before overtake (NULL: overtake is the head), kept so
   * that an urgent record goes in without a walk: thousands of directives
   * may queue while a pipeline is in flight. */
  query_t *before_overtake;
  size_t depth;
  size_t once;
} query_queue_t;

query_str_t query_str(const char *s);
/* Makes a record holding copies of sql, the parameters and the key (key.p
 * NULL for an ordinary query). Returns NULL when out of memory. */
query_t *query_new(query_str_t sql, int nparams, const query_str_t *params, query_str_t key);
/* Runs a query's callback (if any) and frees the record. */
void query_complete(query_t *q, int err, const char *msg, PGresult *res);

/* Appends q (whose next is NULL) at the tail. */
void query_queue_push(query_queue_t *qq, query_t *q);
/* Puts q back at the head, before everything queued. */
void query_queue_push_front(query_queue_t *qq, query_t *q);
/* Takes the record at the head; the queue must not be empty. */
query_t *query_queue_pop(query_queue_t *qq);
/* To be called before q, a record of qq that follows prev (NULL: q is
 * the head), is taken out of its list by hand (once_spill), with q->next
 * still set: keeps `overtake` and `before_overtake` right. */
void query_queue_unlinked(query_queue_t *qq, query_t *prev, query_t *q);

#endif
