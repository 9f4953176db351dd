/* once: what makes a once-write (db_exec_once) land exactly once.
 *
 * Each once-write carries an idempotency key that the database records in
 * the same statement (once_sql), so a write whose outcome is unknown can
 * be sent again; once_outcome says what a result means for it (applied,
 * already applied, refused for good, or to be retried). The blocking
 * start-up replay (db_admin.c) uses these two as well.
 *
 * The rest is the durable side of the asynchronous client (db.c), kept in
 * a once_t that db_t embeds: the journal (journal.c), the writes journaled
 * since the last sync whose callbacks wait for it, and the counters that
 * db_journal_stats reports. Nothing here touches the loop or the
 * connection: db.c decides when to journal, kicks the sync on the next
 * loop turn and sends what once_next reads back.
 *
 * Ownership: once_t owns its journal and the records on its jdone list
 * until once_flush runs their callbacks. once_spill takes the once-writes
 * out of the client's memory queue (borrowed) and `inflight` (transferred:
 * journaled, or pushed back on the queue). */
#include "once.h"

#include "err.h"
#include "log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_OBJ "db"
/* Error texts handed to callbacks and logs are cut to this size. */
#define DB_MSG_MAX CONNINFO_MSG_MAX
/* A refused write is logged at most this often: as often as db.c repeats
 * its outage warning (DB_OUTAGE_WARN_MS). */
#define ONCE_REFUSED_LOG_MS 60000u

/* The statement a once-write is sent as. The caller's statement becomes a
 * data-modifying CTE, which always runs to completion, and the key's INSERT
 * is the main statement. PostgreSQL runs the main statement first and the
 * unreferenced CTE after it, so a key that is already there fails with
 * 23505 on journal_keys_pkey before the write's own unique keys are
 * checked: a replayed INSERT INTO cutovers is then recognised as a
 * duplicate, not reported as a cutovers_pkey failure. (The opposite
 * nesting, the key's INSERT as the CTE, reports the write's own key first.)
 * The caller's statement may itself start with WITH. Returns a malloc'ed
 * string or NULL. */
char *once_sql(const char *sql, int nparams) {
  size_t len = strlen(sql);
  while (len > 0 && (sql[len - 1] == ';' || sql[len - 1] == ' ' || sql[len - 1] == '\n' ||
                     sql[len - 1] == '\t' || sql[len - 1] == '\r'))
    len--;
  static const char head[] = "WITH nirc_w AS (";
  static const char tail[] = ") INSERT INTO journal_keys (key) VALUES ($";
  size_t n = sizeof head + len + sizeof tail + 8;
  char *out = malloc(n);
  if (!out) return NULL;
  snprintf(out, n, "%s%.*s%s%d)", head, (int)len, sql, tail, nparams + 1);
  return out;
}

/* Appends sql to out (a buffer of cap bytes at *used) with every $i made
 * $(i + off); quoted literals and identifiers are copied as they are.
 * false when it does not fit, or when the statement holds what this
 * scanner does not follow (a '$' not followed by digits, as in a
 * dollar-quoted string; a backslash inside quotes, as in E'...'; a quote
 * left open): such a statement is not batched. */
static bool once_renumber(const char *sql, int off, char *out, size_t cap, size_t *used) {
  size_t len = strlen(sql);
  while (len > 0 && strchr("; \n\t\r", sql[len - 1]))
    len--;
  char quote = 0; /* inside '...' or "..." */
  for (size_t i = 0; i < len; i++) {
    char c = sql[i];
    if (quote) {
      if (c == '\\') return false;
      if (c == quote) quote = 0; /* a doubled quote closes and reopens: same text */
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '$') {
      if (sql[i + 1] < '0' || sql[i + 1] > '9') return false;
      long v = 0;
      while (i + 1 < len && sql[i + 1] >= '0' && sql[i + 1] <= '9' && v < 100000)
        v = v * 10 + (sql[++i] - '0');
      int w = snprintf(out + *used, cap - *used, "$%ld", v + off);
      if (w < 0 || (size_t)w >= cap - *used) return false;
      *used += (size_t)w;
      continue;
    }
    if (*used + 1 >= cap) return false;
    out[(*used)++] = c;
  }
  out[*used] = '\0';
  return quote == 0;
}

char *once_batch_sql(query_t *const *qs, size_t n, const char ***params, int *nparams) {
  size_t cap = 64, total = 0;
  for (size_t k = 0; k < n; k++) {
    cap += strlen(qs[k]->sql) * 2 + 64; /* renumbered parameters may grow */
    total += (size_t)qs[k]->nparams + 1;
  }
  char *out = malloc(cap);
  const char **p = malloc(total * sizeof *p);
  if (!out || !p) goto fail;
  size_t used = 0;
  int off = 0;
  for (size_t k = 0; k < n; k++) {
    int w = snprintf(out + used, cap - used, "%snirc_w%zu AS (", k ? ", " : "WITH ", k + 1);
    if (w < 0 || (size_t)w >= cap - used) goto fail;
    used += (size_t)w;
    if (!once_renumber(qs[k]->sql, off, out, cap, &used) || used + 2 >= cap) goto fail;
    out[used++] = ')';
    for (int i = 0; i < qs[k]->nparams; i++)
      p[off + i] = qs[k]->params[i];
    off += qs[k]->nparams;
  }
  int w = snprintf(out + used, cap - used, " INSERT INTO journal_keys (key) VALUES ");
  if (w < 0 || (size_t)w >= cap - used) goto fail;
  used += (size_t)w;
  for (size_t k = 0; k < n; k++) {
    p[off + (int)k] = qs[k]->key;
    w = snprintf(out + used, cap - used, "%s($%d)", k ? ", " : "", off + (int)k + 1);
    if (w < 0 || (size_t)w >= cap - used) goto fail;
    used += (size_t)w;
  }
  *params = p;
  *nparams = off + (int)n;
  return out;
fail:
  free(out);
  free(p);
  return NULL;
}

/* Classifies a once-write's first result (NULL: none arrived). SQLSTATE
 * classes that mean "not now" rather than "never" are retried: connection
 * exceptions (08), transaction rollbacks such as deadlocks (40), lack of
 * resources such as a full disk (53), operator intervention such as a
 * shutdown or a cancel (57), system errors (58), and a read-only server
 * (25006, a standby reached during a failover). An error libpq made up
 * itself has no SQLSTATE: the connection failed. */
once_outcome_t once_outcome(const PGresult *res) {
  if (!res) return ONCE_RETRY;
  switch (PQresultStatus(res)) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK: return ONCE_APPLIED;
  case PGRES_FATAL_ERROR: break;
  default: return ONCE_FAILED;
  }
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  if (!state || strlen(state) != 5) return ONCE_RETRY;
  if (strcmp(state, "23505") == 0) {
    const char *c = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    return c && strcmp(c, "journal_keys_pkey") == 0 ? ONCE_DUPLICATE : ONCE_FAILED;
  }
  static const char *const passing[] = {"08", "40", "53", "57", "58"};
  for (size_t i = 0; i < sizeof passing / sizeof passing[0]; i++) {
    if (strncmp(state, passing[i], 2) == 0) return ONCE_RETRY;
  }
  return strcmp(state, "25006") == 0 ? ONCE_RETRY : ONCE_FAILED;
}

void once_journaled(once_t *once, query_t *q) {
  once->st.journaled_total++;
  q->next = NULL;
  if (once->jdone_tail) {
    once->jdone_tail->next = q;
  } else {
    once->jdone_head = q;
  }
  once->jdone_tail = q;
}

void once_flush(once_t *once) {
  if (!once->jdone_head && !once->jnl.dirty) return;
  int rc = journal_sync(&once->jnl);
  char m[DB_MSG_MAX] = "journaled";
  if (rc < 0) {
    snprintf(m, sizeof m,
             "cannot sync the database journal %s (%s): the write is in it but a crash of the "
             "machine may lose it",
             once->jnl.path, strerror(-rc));
    log_error(LOG_DB, DB_OBJ, "%s", m);
  }
  query_t *q;
  while ((q = once->jdone_head) != NULL) {
    once->jdone_head = q->next;
    if (!once->jdone_head) once->jdone_tail = NULL;
    query_complete(q, rc < 0 ? NIRC_EIO : 0, m, NULL);
  }
}

void once_shed(once_t *once, uint64_t now, const char *target) {
  once->st.shed_total++;
  if (once->last_shed_log && now - once->last_shed_log < ONCE_REFUSED_LOG_MS) {
    once->shed_unlogged++;
    return;
  }
  unsigned long long more = (unsigned long long)once->shed_unlogged;
  once->last_shed_log = now;
  once->shed_unlogged = 0;
  log_error(LOG_DB, DB_OBJ,
            "ALARM: database journal %s is %llu%% full (%llu of %llu bytes): history (link "
            "events, load minutes, acks) is being shed to keep room for operator changes "
            "(%llu more shed since the last report). Fix: bring the database at %s back, or "
            "raise [database] journal_max",
            once->jnl.path,
            (unsigned long long)(once->jnl.max ? once->jnl.size * 100 / once->jnl.max : 100),
            (unsigned long long)once->jnl.size, (unsigned long long)once->jnl.max, more, target);
}

void once_refused(once_t *once, int rc, uint64_t now, const char *target) {
  once->st.refused_total++;
  once->st.refused_unwritable = rc != NIRC_EFULL;
  if (once->last_refused_log && now - once->last_refused_log < ONCE_REFUSED_LOG_MS) {
    once->refused_unlogged++;
    return;
  }
  unsigned long long more = (unsigned long long)once->refused_unlogged;
  once->last_refused_log = now;
  once->refused_unlogged = 0;
  if (rc == NIRC_EFULL) {
    log_error(LOG_DB, DB_OBJ,
              "database journal %s is full (%llu of %llu bytes, %llu writes waiting): write "
              "refused (%llu more since the last report). Fix: bring the database at %s back, or "
              "raise [database] journal_max",
              once->jnl.path, (unsigned long long)once->jnl.size, (unsigned long long)once->jnl.max,
              (unsigned long long)once->jnl.records, more, target);
  } else {
    log_error(LOG_DB, DB_OBJ,
              "cannot write the database journal %s (%s): write refused (%llu more since the "
              "last report). Fix: free space on its file system or check the disk",
              once->jnl.path,
              once->jnl.broken || !once->jnl.last_errno ? nirc_strerror(rc)
                                                        : strerror(once->jnl.last_errno),
              more);
  }
}

size_t once_spill(once_t *once, query_queue_t *qq, query_t *inflight, const char *target) {
  int rc = 0;
  size_t moved = 0;
  if (inflight) {
    rc = once->jnl.fd >= 0 ? journal_append(&once->jnl, 0, inflight->key, inflight->sql,
                                            inflight->nparams, inflight->params, inflight->at_ms)
                           : NIRC_EIO;
    if (rc == 0) {
      once_journaled(once, inflight);
      moved++;
    } else {
      query_queue_push_front(qq, inflight);
    }
  }
  query_t *prev = NULL;
  for (query_t *q = qq->head; rc == 0 && q && qq->once > 0;) {
    query_t *next = q->next;
    if (!q->key) {
      prev = q;
      q = next;
      continue;
    }
    rc = journal_append(&once->jnl, 0, q->key, q->sql, q->nparams, q->params, q->at_ms);
    if (rc != 0) break;
    query_queue_unlinked(qq, prev, q);
    if (prev) {
      prev->next = next;
    } else {
      qq->head = next;
    }
    if (qq->tail == q) qq->tail = prev;
    qq->depth--;
    qq->once--;
    once_journaled(once, q);
    moved++;
    q = next;
  }
  if (moved) {
    log_info(LOG_DB, DB_OBJ, "%zu pending write%s moved to the journal %s", moved,
             moved == 1 ? "" : "s", once->jnl.path);
  }
  if (rc != 0 && once->jnl.fd >= 0) {
    /* Not refused (the writer was already told it was queued), but at risk:
     * said as loudly as a refusal. They run after the journal, so they no
     * longer keep their place before what was journaled later. */
    log_error(LOG_DB, DB_OBJ,
              "database journal %s cannot take more (%s): %zu write%s kept in memory only, lost "
              "if nircd stops before the database returns. Fix: bring the database at %s back, "
              "raise [database] journal_max, or free space on its file system",
              once->jnl.path, rc == NIRC_EFULL ? "full" : nirc_strerror(rc), qq->once,
              qq->once == 1 ? "" : "s", target);
  }
  return moved;
}

/* The records of one drain of the journal are summed up when it empties. */
static void once_done_one(once_t *once, uint64_t jend) {
  if (!journal_advance(&once->jnl, jend)) return;
  log_info(LOG_DB, DB_OBJ,
           "database journal %s replayed: %llu applied, %llu already applied, %llu refused by the "
           "database",
           once->jnl.path, (unsigned long long)once->replay_applied,
           (unsigned long long)once->replay_dups, (unsigned long long)once->replay_failed);
  once->replay_applied = once->replay_dups = once->replay_failed = 0;
}

void once_done(once_t *once, query_t *q, once_outcome_t o, PGresult *res, const char *msg) {
  uint64_t jend = q->jend;
  int err = 0;
  switch (o) {
  case ONCE_APPLIED:
    msg = "";
    if (jend) {
      once->st.replayed_total++;
      once->replay_applied++;
    }
    break;
  case ONCE_DUPLICATE:
    once->st.duplicates_total++;
    if (jend) once->replay_dups++;
    log_info(LOG_DB, DB_OBJ, "write %s was already applied; skipped", q->key);
    msg = "already applied";
    res = NULL;
    break;
  default:
    once->st.failed_total++;
    err = NIRC_EDB;
    if (jend) {
      once->replay_failed++;
      log_error(LOG_DB, DB_OBJ,
                "journaled write %s refused by the database and dropped: %s (%.120s)", q->key, msg,
                q->sql);
    }
    break;
  }
  if (jend) once_done_one(once, jend);
  query_complete(q, err, msg, res);
}

query_t *once_next(once_t *once) {
  query_t *q = NULL;
  const char *why = "?";
  if (journal_next(&once->jnl, &q, &why) == 0) return q;
  char aside[PATH_MAX + 64], err[DB_MSG_MAX];
  unsigned long long lost = (unsigned long long)once->jnl.records;
  uint64_t at = once->jnl.read;
  if (journal_set_aside_rest(&once->jnl, why, aside, sizeof aside, err, sizeof err) != 0) {
    log_error(LOG_DB, DB_OBJ, "%s; %llu journaled writes lost, no more writes are journaled", err,
              lost);
    journal_stop(&once->jnl);
    return NULL;
  }
  log_error(LOG_DB, DB_OBJ,
            "database journal %s is damaged at offset %llu (%s): moved to %s with the %llu writes "
            "it still held, which are not replayed",
            once->jnl.path, (unsigned long long)at, why, aside, lost);
  return NULL;
}

void once_stats(const once_t *once, db_journal_stats_t *out) {
  *out = once->st;
  if (once->jnl.fd >= 0) {
    out->records = once->jnl.records;
    out->bytes = once->jnl.size - once->jnl.read;
  }
  out->torn_total = once->jnl.torn;
  out->corrupt_total = once->jnl.corrupt;
}
