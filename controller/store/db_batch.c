/* db_batch: once-writes waiting together are sent in one pipeline ended
 * by one Sync, which PostgreSQL runs as one implicit transaction: in order,
 * all or nothing, one commit. A move's cutover row, its 32 directives and
 * its audit row were 34 round trips and 34 commits, and the operator's
 * reply waited for the last (issue 15).
 *
 * All or nothing is what keeps exactly-once simple: a batch that commits
 * applied every write; one that fails applied none, and its writes are
 * sent again one by one (a refusal of one write, or a key already there
 * after a resend, is then settled for that write alone, as before). A
 * batch whose outcome is unknown (connection lost before the Sync's
 * answer) is resent the same way, or journaled, by db_conn_lost.
 *
 * Ownership: the batch's first write is db->inflight, the others hang off
 * db->batch through next; both belong to the client until once_done. */
#include "db-int.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_OBJ "db"

/* Whether q may go in a batch: a once-write from memory (the journal's
 * replay stays one by one, in its order), not already refused in one. */
bool db_batchable(const query_t *q) {
  return q && q->key && !q->jend && !q->solo;
}

/* Puts the batch's other writes back at the head of the queue, in order,
 * each to be sent alone (inflight stays the caller's). */
void db_batch_unsend(db_t *db) {
  query_t *rest[DB_BATCH_MAX];
  size_t n = 0;
  for (query_t *b = db->batch; b && n < DB_BATCH_MAX; b = b->next)
    rest[n++] = b;
  db->batch = NULL;
  if (db->batch_ok) PQclear(db->batch_ok);
  db->batch_ok = NULL;
  while (n > 0) {
    query_t *b = rest[--n];
    b->solo = true;
    query_queue_push_front(&db->queue, b);
  }
}

/* q is batchable and more batchable writes wait behind it: sends them in
 * one pipeline ended by one Sync, which PostgreSQL runs as one implicit
 * transaction, in order, with one commit (a move's cutover row, its
 * directives and its audit row were 34 round trips and 34 commits). */
void db_send_batch(db_t *db, query_t *q) {
  query_t *qs[DB_BATCH_MAX];
  size_t n = 0;
  qs[n++] = q;
  while (n < DB_BATCH_MAX && db_batchable(db->queue.head))
    qs[n++] = query_queue_pop(&db->queue);
  q->next = NULL;
  for (size_t k = 1; k < n; k++)
    qs[k]->next = k + 1 < n ? qs[k + 1] : NULL;
  db->inflight = q;
  db->batch = qs[1];
  db_set_state(db, DB_BUSY);
  bool sent = PQenterPipelineMode(db->conn) == 1;
  for (size_t k = 0; sent && k < n; k++) {
    char *sql = once_sql(qs[k]->sql, qs[k]->nparams);
    sent = sql && PQsendQueryParams(db->conn, sql, qs[k]->nparams + 1, NULL, qs[k]->params, NULL,
                                    NULL, 0) == 1;
    free(sql);
  }
  if (!sent || PQpipelineSync(db->conn) != 1) {
    db_conn_lost(db, PQerrorMessage(db->conn)); /* every write of it is sent again */
    return;
  }
  db_send_flush(db);
}

/* BUSY with a batch: one result of the pipeline. The first refusal is kept
 * in db->first (the rest are PGRES_PIPELINE_ABORTED); at the Sync the
 * batch is settled. Returns true when it was the Sync. */
bool db_batch_result(db_t *db, PGresult *res) {
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_PIPELINE_SYNC) {
    PQclear(res);
    if (PQexitPipelineMode(db->conn) != 1) {
      db_conn_lost(db, PQerrorMessage(db->conn));
      return true;
    }
    db_finish_query(db);
    return true;
  }
  if ((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) && !db->batch_ok) {
    db->batch_ok = res; /* handed to the callbacks once the Sync commits */
  } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !db->first) {
    db->first = res;
  } else {
    PQclear(res);
  }
  return false;
}

/* A batch reached its Sync. Committed: every write of it is applied.
 * Refused: nothing of it is (one transaction), and one refusal does not
 * settle the others (already applied? at fault?): each is sent again
 * alone. A passing condition: the same, after a new connection (then
 * false: the connection is gone and db->first with it). */
bool db_finish_batch(db_t *db, PGresult *res, const char *msg) {
  query_t *q = db->inflight;
  once_outcome_t o = res ? once_outcome(res) : db->batch_ok ? ONCE_APPLIED : ONCE_RETRY;
  if (o == ONCE_RETRY) {
    char why[DB_MSG_MAX + 32];
    snprintf(why, sizeof why, "batch to retry: %s", msg);
    db_conn_lost(db, why); /* took db->first */
    return false;
  }
  db->inflight = NULL;
  db->first = NULL;
  db_set_state(db, DB_READY);
  if (o != ONCE_APPLIED) {
    log_info(LOG_DB, DB_OBJ, "a batch of writes was refused (%s): sending each alone", msg);
    db_batch_unsend(db);
    q->solo = true;
    query_queue_push_front(&db->queue, q);
    return true;
  }
  query_t *rest = db->batch;
  PGresult *ok = db->batch_ok;
  db->batch = NULL;
  db->batch_ok = NULL;
  db->once.st.batches_total++;
  once_done(&db->once, q, ONCE_APPLIED, ok, "");
  while (rest) {
    query_t *next = rest->next;
    once_done(&db->once, rest, ONCE_APPLIED, ok, "");
    rest = next;
  }
  PQclear(ok);
  return true;
}
