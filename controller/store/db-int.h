/* db-int: the asynchronous client's state, shared by db.c (connection,
 * queue, journal) and db_batch.c (once-writes sent in one pipeline). Not
 * for use outside controller/store/. */
#ifndef NIRC_DB_INT_H
#define NIRC_DB_INT_H

#include "backoff.h"
#include "conninfo.h"
#include "db.h"
#include "once.h"
#include "query.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* Error texts handed to callbacks and logs are cut to this size. */
#define DB_MSG_MAX CONNINFO_MSG_MAX
/* Once-writes sent together in one pipeline (db_send_batch). A move
 * writes its cutover row, a directive and an event per source and its
 * audit row: at 64, a move of 31 sources spilled its audit row into a
 * second pipeline and commit, which the operator's reply waited for. 512
 * holds a move of 250 sources in one. */
#define DB_BATCH_MAX 512

/* A pending name resolution. It is separate from db_t because a connect
 * timeout or db_close may abandon it while libuv's thread pool still runs
 * it; the callback then only frees it. */
typedef struct {
  uv_getaddrinfo_t req;
  db_t *db;
  int abandoned;
} db_resolve_t;

struct db {
  uv_loop_t *loop;
  conninfo_t params;
  char target[256]; /* "host=... port=..." for messages */
  uint64_t connect_timeout_ms;

  db_state_t state;
  PGconn *conn;

  /* The poll handle watches one socket. libpq may replace the socket
   * during PQconnectPoll (next address, next host) and the kernel may hand
   * the new socket the old descriptor number, so the socket is identified
   * by number and inode, not by number alone. */
  uv_poll_t *poll;
  int poll_fd;
  dev_t poll_dev;
  ino_t poll_ino;
  int poll_events; /* what the handle is started with, 0 = stopped */

  uv_timer_t timer;
  db_resolve_t *resolve;

  /* Open handles and pending requests; db_t is freed when this reaches
   * zero after db_close. */
  int handles;
  int closing;
  void (*done)(void *arg);
  void *done_arg;

  query_queue_t queue; /* waiting to be sent; queue.once counts the once-writes */
  query_t *inflight;
  /* With a batch in flight (db_send_batch): its other once-writes, in
   * order, linked through next; inflight is the first. NULL otherwise. */
  query_t *batch;
  bool no_batch;      /* NIRC_DB_BATCH=0: every once-write alone (for comparison) */
  PGresult *batch_ok; /* a success of the batch, for its writers' callbacks */
  PGresult *first;    /* first result of the in-flight query (a batch: its first refusal) */
  int flushing;       /* PQflush has not yet sent all of the in-flight query */

  /* Once-writes and the journal. jtimer is a zero-delay kick that syncs
   * the journal and then runs the callbacks of the writes on jdone. */
  once_t once;
  uv_timer_t jtimer;
  /* db_once_ready accepted a change while journaling; until jtimer runs
   * (the next turn of the loop) its urgent writes may pass journal_max by
   * DB_JOURNAL_CHANGE_GRANT, so that it is journaled whole. */
  bool change_open;
  /* uv_now() when the in-flight statement was handed to libpq, and by
   * when a change accepted while connected wants its writes answered
   * (0: no change waits; db.h, DB_CHANGE_ANSWER_MS). */
  uint64_t sent_ms;
  uint64_t change_by;
  uint64_t boot_id; /* random per client, so keys of different runs differ */
  uint64_t key_seq;
  uint64_t next_prune; /* uv_now() when old keys are pruned next */

  /* Reconnect bookkeeping. */
  backoff_t backoff;     /* reconnect delays (common/backoff.c) */
  unsigned failures;     /* failed attempts since the last good connection */
  int outage;            /* the database has been unreachable since outage_start */
  uint64_t outage_start; /* uv_now() when the outage began */
  uint64_t last_warn;    /* uv_now() of the last "cannot connect" warning */
};

/* db.c */
void db_set_state(db_t *db, db_state_t to);
/* The connection is gone (or given up): in-flight and queued once-writes
 * are resent or journaled, other queries fail; reconnects after backoff. */
void db_conn_lost(db_t *db, const char *why);
/* A statement was handed to libpq: start its timeout and flush it. */
void db_send_flush(db_t *db);
/* The in-flight query (or batch) has all its results. */
void db_finish_query(db_t *db);

/* db_batch.c */
bool db_batchable(const query_t *q);
void db_send_batch(db_t *db, query_t *q);
void db_batch_unsend(db_t *db);
bool db_batch_result(db_t *db, PGresult *res);
bool db_finish_batch(db_t *db, PGresult *res, const char *msg);

#endif
