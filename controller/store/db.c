/* db: the asynchronous PostgreSQL client of the controller (see db.h; the
 * blocking start-up half, db_admin_*, is db_admin.c).
 *
 * The client is a state machine around one PGconn:
 *
 *   DISCONNECTED -> CONNECTING -> READY <-> BUSY
 *                       |           |        |
 *                       v           v        v
 *                    BACKOFF <------+--------+      (any) -> CLOSING
 *                       |
 *                       +--> CONNECTING (after a jittered delay)
 *
 * Two libuv handles drive it: a uv_poll_t on PQsocket() and one uv_timer_t
 * that, depending on the state, is the connect timeout (CONNECTING), the
 * retry delay (BACKOFF), a zero-delay "send the next query" kick (READY)
 * or the query timeout (BUSY: a hung database counts as a lost one).
 * A uv_getaddrinfo_t request resolves host names before each connection
 * attempt, because PQconnectStart() would otherwise resolve them with a
 * blocking getaddrinfo() on the loop. A second timer (jtimer) is a
 * zero-delay kick that fdatasyncs the journal and then runs the callbacks
 * of the writes it took (once_flush). Journal I/O is plain
 * pread/pwrite/fdatasync on the loop: a record is a few hundred bytes and
 * only written during outages.
 *
 * Once-writes (db_exec_once) carry an idempotency key. While connected and
 * with an empty journal they wait in the memory queue like any query; when
 * the connection is lost, the one in flight and the queued ones move to the
 * journal, and while the database is unreachable (or the journal still
 * holds records) new ones are appended there. Once connected, the journal
 * is replayed first, in order, then the memory queue runs. What a result
 * means for a once-write, the journal and its counters live in once.c;
 * this file decides when each is used.
 *
 * Modules used: conninfo.c (parameters, address lists for libpq,
 * messages), query.c (records and the memory queue), once.c and journal.c
 * (once-writes).
 *
 * Ownership: db_t owns its PGconn, its handles, the queued query records,
 * the in-flight record and its once_t (with the journal's descriptor).
 * Results handed to callbacks are borrowed for the duration of the
 * callback and cleared afterwards. */
#include "db.h"
#include "db-int.h"

#include "backoff.h"
#include "clock.h"
#include "conninfo.h"
#include "journal.h"
#include "once.h"
#include "query.h"

#include "err.h"
#include "log.h"

#include <assert.h>
#include <limits.h>
#include <stdbool.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define DB_OBJ "db"

/* Reconnect delays: full jitter over an exponentially growing window. */
#define DB_BACKOFF_MIN_MS 250u
#define DB_BACKOFF_MAX_MS 10000u

/* While the database stays unreachable, the warning is repeated this often
 * (the attempts in between are logged at debug). once.c repeats its
 * "journal full" error as often (ONCE_REFUSED_LOG_MS). */
#define DB_OUTAGE_WARN_MS 60000u

/* journal_keys rows are pruned a minute after the client opens (not at
 * once, so a short-lived client does not pay for it) and hourly after. */
#define DB_PRUNE_FIRST_MS 60000u
#define DB_PRUNE_EVERY_MS 3600000u

/* The names follow the enum in db.h; keep them side by side. */
static const char *const db_state_names[] = {
    [DB_DISCONNECTED] = "disconnected",
    [DB_CONNECTING] = "connecting",
    [DB_READY] = "ready",
    [DB_BUSY] = "busy",
    [DB_BACKOFF] = "backoff",
    [DB_CLOSING] = "closing",
};

const char *db_state_name(db_state_t s) {
  if ((unsigned)s >= sizeof db_state_names / sizeof db_state_names[0]) return "invalid";
  return db_state_names[s];
}

/* Which transitions the machine makes; anything else is a bug. */
static int db_transition_ok(db_state_t from, db_state_t to) {
  switch (from) {
  case DB_DISCONNECTED: return to == DB_CONNECTING || to == DB_CLOSING;
  case DB_CONNECTING: return to == DB_READY || to == DB_BACKOFF || to == DB_CLOSING;
  case DB_READY: return to == DB_BUSY || to == DB_BACKOFF || to == DB_CLOSING;
  case DB_BUSY: return to == DB_READY || to == DB_BACKOFF || to == DB_CLOSING;
  case DB_BACKOFF: return to == DB_CONNECTING || to == DB_CLOSING;
  case DB_CLOSING: return to == DB_DISCONNECTED;
  }
  return 0;
}

/* The one place the state changes. Connecting, losing the connection and
 * closing are logged at info; the per-query READY <-> BUSY churn and the
 * retry loop during an outage are logged at debug. */
void db_set_state(db_t *db, db_state_t to) {
  db_state_t from = db->state;
  if (from == to) return;
  if (!db_transition_ok(from, to)) {
    log_error(LOG_DB, DB_OBJ, "invalid state transition %s -> %s", db_state_name(from),
              db_state_name(to));
    assert(!"invalid db state transition");
  }
  db->state = to;
  /* The query timeout ends with the query: the timer is free again for
   * the kicks and delays of the other states. */
  if (from == DB_BUSY && !db->closing) uv_timer_stop(&db->timer);
  int loud = (from == DB_CONNECTING && to == DB_READY) ||
             ((from == DB_READY || from == DB_BUSY) && to == DB_BACKOFF) || to == DB_CLOSING ||
             to == DB_DISCONNECTED;
  if (loud) {
    log_info(LOG_DB, DB_OBJ, "%s -> %s", db_state_name(from), db_state_name(to));
  } else {
    log_debug(LOG_DB, DB_OBJ, "%s -> %s", db_state_name(from), db_state_name(to));
  }
}

uint64_t db_unreachable_ms(const db_t *db) {
  if (!db || !db->outage || db->state == DB_READY || db->state == DB_BUSY) return 0;
  return uv_now(db->loop) - db->outage_start;
}

db_state_t db_state(const db_t *db) {
  return db ? db->state : DB_DISCONNECTED;
}

size_t db_queue_depth(const db_t *db) {
  return db ? db->queue.depth : 0;
}

/* Whether q is of a kind in `which` (db_unsaved_t); history never is. */
static bool db_is_change(const query_t *q, unsigned which) {
  if (q->urgent) return which & DB_UNSAVED_URGENT;
  return (which & DB_UNSAVED_RECORDS) && q->overtakable && !q->bulk;
}

size_t db_unsaved_changes(const db_t *db, unsigned which) {
  if (!db) return 0;
  size_t n = 0;
  /* A walk, not a counter kept on every push and pop: an operator's read
   * asks, a few times a minute at most, and the queue holds at most
   * DB_QUEUE_MAX records. */
  for (const query_t *q = db->queue.head; q; q = q->next)
    n += db_is_change(q, which);
  if (db->inflight) n += db_is_change(db->inflight, which);
  for (const query_t *q = db->batch; q; q = q->next)
    n += db_is_change(q, which);
  db_journal_stats_t js;
  db_journal_stats(db, &js);
  return n + (size_t)js.records;
}

void db_journal_stats(const db_t *db, db_journal_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!db) return;
  once_stats(&db->once, out);
}

static void db_on_poll(uv_poll_t *h, int status, int events);
static void db_on_timer(uv_timer_t *t);
static uint64_t db_busy_wait(const db_t *db);
static void db_connect_begin(db_t *db);

/* Called whenever a handle finished closing or a request completed. The
 * last one of a closing client frees it and reports to the owner. */
static void db_release(db_t *db) {
  assert(db->handles > 0);
  db->handles--;
  if (!db->closing || db->handles > 0) return;
  void (*done)(void *) = db->done;
  void *arg = db->done_arg;
  db_set_state(db, DB_DISCONNECTED);
  conninfo_free(&db->params);
  free(db);
  if (done) done(arg);
}

static void db_on_handle_closed(uv_handle_t *h) {
  db_t *db = h->data;
  if (h->type == UV_POLL) free(h);
  db_release(db);
}

/* Stops watching the current socket. uv_close() deregisters the
 * descriptor from the kernel's poll set before it returns, so libpq may
 * close the socket right afterwards; the handle memory itself is freed in
 * the close callback. */
static void db_unwatch(db_t *db) {
  if (!db->poll) return;
  uv_poll_stop(db->poll);
  uv_close((uv_handle_t *)db->poll, db_on_handle_closed);
  db->poll = NULL;
  db->poll_events = 0;
}

/* Watches libpq's current socket for `events`, replacing the poll handle
 * when the socket changed. Returns 0 or a negative code (the connection is
 * then unusable). */
static int db_watch(db_t *db, int events) {
  int fd = PQsocket(db->conn);
  if (fd < 0) return NIRC_EIO;
  if (db->poll && (db->state == DB_CONNECTING || db->poll_fd != fd)) {
    /* Only PQconnectPoll replaces sockets, so the inode check is needed
     * (and paid for) only while connecting. */
    struct stat st;
    if (fstat(fd, &st) != 0) return NIRC_EIO;
    if (db->poll_fd != fd || db->poll_dev != st.st_dev || db->poll_ino != st.st_ino) {
      log_debug(LOG_DB, DB_OBJ, "socket changed (fd %d -> %d), new poll handle", db->poll_fd, fd);
      db_unwatch(db);
    }
  }
  if (!db->poll) {
    struct stat st;
    if (fstat(fd, &st) != 0) return NIRC_EIO;
    uv_poll_t *p = malloc(sizeof *p);
    if (!p) return NIRC_ENOMEM;
    int rc = uv_poll_init(db->loop, p, fd);
    if (rc != 0) {
      log_warn(LOG_DB, DB_OBJ, "cannot watch socket %d: %s", fd, uv_strerror(rc));
      free(p);
      return NIRC_EIO;
    }
    p->data = db;
    db->handles++;
    db->poll = p;
    db->poll_fd = fd;
    db->poll_dev = st.st_dev;
    db->poll_ino = st.st_ino;
    db->poll_events = 0;
  }
  if (events != db->poll_events) {
    int rc = uv_poll_start(db->poll, events, db_on_poll);
    if (rc != 0) {
      log_warn(LOG_DB, DB_OBJ, "cannot poll socket %d: %s", fd, uv_strerror(rc));
      return NIRC_EIO;
    }
    db->poll_events = events;
  }
  return 0;
}

/* Closes the connection: the poll handle first, then libpq's socket. */
static void db_drop_conn(db_t *db) {
  db_unwatch(db);
  if (db->first) {
    PQclear(db->first);
    db->first = NULL;
  }
  if (db->conn) {
    PQfinish(db->conn);
    db->conn = NULL;
  }
  db->flushing = 0;
}

static void db_abandon_resolve(db_t *db) {
  if (!db->resolve) return;
  db->resolve->abandoned = 1;
  /* Cancelling fails once the thread pool picked the request up; the
   * callback then arrives later and only frees it. */
  uv_cancel((uv_req_t *)&db->resolve->req);
  db->resolve = NULL;
}

/* ---- once-writes (once.c holds the journal and the counters) ---- */

static void db_on_jtimer(uv_timer_t *t) {
  db_t *db = t->data;
  db->change_open = false; /* the change accepted last turn is all written */
  if (db->closing) return;
  once_flush(&db->once);
}

/* Once-writes were journaled: their callbacks run after the next
 * fdatasync, on the next turn of the loop, never inside the call that
 * journaled them. */
static void db_kick_journal(db_t *db) {
  if (!db->closing && !uv_is_active((uv_handle_t *)&db->jtimer)) {
    uv_timer_start(&db->jtimer, db_on_jtimer, 0, 0);
  }
}

/* While the database is unreachable, and until the journal has drained
 * (so that nothing overtakes what waits in it), once-writes are journaled. */
static int db_journal_mode(const db_t *db) {
  if (db->once.jnl.fd < 0) return 0;
  return db->once.jnl.records > 0 || (db->state != DB_READY && db->state != DB_BUSY);
}

/* The connection, or the attempt to make one, failed. Queued queries stay
 * queued for the next connection; the in-flight one is not retried because
 * it may have committed, so it completes with NIRC_EDB. A once-write is
 * the exception: its key makes sending it again safe, so it goes back to
 * the journal (or the front of the queue) unless the server refused it. */
void db_conn_lost(db_t *db, const char *why) {
  char m[DB_MSG_MAX];
  conninfo_msg_trim(why, 0, m, sizeof m);
  db_state_t was = db->state;
  uint64_t now = uv_now(db->loop);

  if (was == DB_READY || was == DB_BUSY) {
    log_warn(LOG_DB, DB_OBJ, "connection to %s lost: %s", db->target, m);
    db->failures = 0;
    backoff_reset(&db->backoff);
    db->outage = 1;
    db->outage_start = now;
  } else {
    db->failures++;
    if (!db->outage) {
      db->outage = 1;
      db->outage_start = now;
    }
    if (db->failures == 1) {
      log_warn(LOG_DB, DB_OBJ, "cannot connect to %s: %s (retrying)", db->target, m);
      db->last_warn = now;
    } else if (now - db->last_warn >= DB_OUTAGE_WARN_MS) {
      log_warn(LOG_DB, DB_OBJ, "still cannot connect to %s after %u attempts (%.0f s): %s",
               db->target, db->failures, (double)(now - db->outage_start) / 1000.0, m);
      db->last_warn = now;
    } else {
      log_debug(LOG_DB, DB_OBJ, "attempt %u to connect to %s failed: %s", db->failures, db->target,
                m);
    }
  }

  query_t *q = db->inflight;
  db->inflight = NULL;
  PGresult *res = db->first;
  db->first = NULL;
  /* A batch is one statement: whatever happened, it committed as a whole
   * or not at all, and only its replay can tell (duplicate keys). Its
   * writes go back in order, each to be sent alone. */
  bool batch = db->batch != NULL;
  if (batch) {
    db_batch_unsend(db);
    q->solo = true;
  }

  db_abandon_resolve(db);
  db_drop_conn(db);
  db_set_state(db, DB_BACKOFF);
  db->change_by = 0; /* the journal takes the change's writes now */
  uint64_t delay = backoff_next(&db->backoff);
  log_debug(LOG_DB, DB_OBJ, "next connection attempt in %llu ms", (unsigned long long)delay);
  uv_timer_start(&db->timer, db_on_timer, delay, 0);

  /* An error the server sent before the connection died (it carries a
   * SQLSTATE; errors libpq makes up locally do not) is the real outcome:
   * the statement failed. Otherwise nobody knows whether it committed. */
  int server_error =
      res && PQresultStatus(res) == PGRES_FATAL_ERROR && PQresultErrorField(res, PG_DIAG_SQLSTATE);
  char rm[DB_MSG_MAX] = "";
  if (server_error) conninfo_msg_trim(PQresultErrorMessage(res), 0, rm, sizeof rm);
  once_outcome_t o = ONCE_RETRY;
  query_t *resend = NULL;
  if (q && q->key) {
    /* A success without the end of the exchange is not proof of a commit:
     * only a refusal or a duplicate settles a once-write here (and not for
     * a batch: it does not say which write). */
    o = batch ? ONCE_RETRY : once_outcome(res);
    if (o == ONCE_APPLIED) o = ONCE_RETRY;
    if (o == ONCE_RETRY) {
      if (q->jend) {
        free(q); /* still in the journal, read again after reconnecting */
      } else {
        resend = q;
      }
      q = NULL;
    }
  }
  if (db->once.jnl.fd >= 0 && (resend || db->queue.once > 0)) {
    if (once_spill(&db->once, &db->queue, resend, db->target)) db_kick_journal(db);
  } else if (resend) {
    query_queue_push_front(&db->queue, resend);
  }

  if (q && q->key) {
    once_done(&db->once, q, o, res, rm);
  } else if (q) {
    if (server_error) {
      query_complete(q, NIRC_EDB, rm, res);
    } else {
      query_complete(q, NIRC_EDB, "connection lost during query; outcome unknown", NULL);
    }
  }
  if (res) PQclear(res);
}

/* READY: send q (taken off the queue or read from the journal). */
static void db_send(db_t *db, query_t *q) {
  if (!db->no_batch && db_batchable(q) && db_batchable(db->queue.head)) {
    db_send_batch(db, q);
    return;
  }
  q->next = NULL;
  db->inflight = q;
  db_set_state(db, DB_BUSY);

  int sent;
  if (q->key) {
    char *sql = once_sql(q->sql, q->nparams);
    sent = sql && PQsendQueryParams(db->conn, sql, q->nparams + 1, NULL, q->params, NULL, NULL, 0);
    free(sql);
  } else {
    sent = PQsendQueryParams(db->conn, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
  }
  /* The timer is the query timeout while BUSY (db_on_timer), started by
   * db_send_flush. */
  if (!sent) {
    char m[DB_MSG_MAX];
    conninfo_msg_trim(PQerrorMessage(db->conn), 0, m, sizeof m);
    if (!m[0]) snprintf(m, sizeof m, "out of memory");
    if (PQstatus(db->conn) == CONNECTION_OK && !q->key) {
      /* libpq refused the query before sending anything (for instance out
       * of memory); the connection itself is fine. */
      db->inflight = NULL;
      db_set_state(db, DB_READY);
      query_complete(q, NIRC_EDB, m, NULL);
      if (!db->closing && !uv_is_active((uv_handle_t *)&db->timer)) {
        uv_timer_start(&db->timer, db_on_timer, 0, 0);
      }
      return;
    }
    /* A once-write is never given up for a local failure: it is retried
     * on a new connection after the backoff. */
    db_conn_lost(db, m);
    return;
  }
  db_send_flush(db);
}

/* The statement is handed to libpq: the documented non-blocking send,
 * PQflush until it returns 0, waiting for write-readiness (and reading
 * whatever the server sends meanwhile, so neither side can deadlock on
 * full buffers). */
void db_send_flush(db_t *db) {
  db->sent_ms = uv_now(db->loop);
  uv_timer_start(&db->timer, db_on_timer, db_busy_wait(db), 0);
  int r = PQflush(db->conn);
  if (r < 0) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  db->flushing = r == 1;
  if (db_watch(db, db->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
    db_conn_lost(db, "cannot watch the database socket");
  }
}

/* READY and something is queued: send the oldest query. */
static void db_send_next(db_t *db) {
  db_send(db, query_queue_pop(&db->queue));
}

/* READY and the journal holds records: send the oldest. A record that
 * cannot be read back means the file was damaged under us; it is set aside
 * (logged) and 0 returned so the memory queue runs. */
static int db_send_journaled(db_t *db) {
  query_t *q = once_next(&db->once);
  if (!q) return 0;
  db_send(db, q);
  return 1;
}

/* Queues the key pruning when it is due. */
static void db_maybe_prune(db_t *db) {
  uint64_t now = uv_now(db->loop);
  if (now < db->next_prune) return;
  db->next_prune = now + DB_PRUNE_EVERY_MS;
  (void)db_prune_keys(db);
}

/* READY: send the next query (the journal first), or wait for the server
 * (a notice, or the connection closing) while idle. */
static void db_pump_idle(db_t *db) {
  db_maybe_prune(db);
  if (!db->queue.head && !db->once.jnl.records) db->change_by = 0; /* all answered */
  if (db->once.jnl.fd >= 0 && db->once.jnl.records > 0 && db_send_journaled(db)) return;
  if (db->queue.head) {
    db_send_next(db);
  } else if (db_watch(db, UV_READABLE) != 0) {
    db_conn_lost(db, "cannot watch the database socket");
  }
}

/* The in-flight query finished (PQgetResult returned NULL). */
void db_finish_query(db_t *db) {
  query_t *q = db->inflight;
  PGresult *res = db->first;

  char m[DB_MSG_MAX];
  int err = NIRC_EDB;
  const char *msg = m;
  if (!res) {
    msg = "the server returned no result";
  } else {
    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
      err = 0;
      msg = "";
      break;
    case PGRES_EMPTY_QUERY: msg = "empty query"; break;
    default:
      conninfo_msg_trim(PQresultErrorMessage(res), 0, m, sizeof m);
      if (!m[0]) snprintf(m, sizeof m, "%s", PQresStatus(PQresultStatus(res)));
      break;
    }
  }
  if (db->batch) {
    if (!db_finish_batch(db, res, msg)) return;
  } else if (q->key) {
    once_outcome_t o = once_outcome(res);
    if (o == ONCE_RETRY) {
      /* A passing condition on the server: start over on a new connection
       * after the backoff; the write waits in the journal meanwhile. */
      char why[DB_MSG_MAX + 32];
      snprintf(why, sizeof why, "write to retry: %s", msg);
      db_conn_lost(db, why);
      return;
    }
    db->inflight = NULL;
    db->first = NULL;
    db_set_state(db, DB_READY);
    once_done(&db->once, q, o, res, msg);
  } else {
    db->inflight = NULL;
    db->first = NULL;
    db_set_state(db, DB_READY);
    query_complete(q, err, msg, res);
  }
  if (res) PQclear(res);
  if (db->closing) return; /* the callback closed the client */
  if (PQstatus(db->conn) == CONNECTION_BAD) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  db_pump_idle(db);
}

/* BUSY: flush the rest of the query, read the response and collect the
 * results, never calling PQgetResult while PQisBusy (it would block). */
static void db_busy_event(db_t *db, int events) {
  if ((events & UV_READABLE) && !PQconsumeInput(db->conn)) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  if (db->flushing) {
    int r = PQflush(db->conn);
    if (r < 0) {
      db_conn_lost(db, PQerrorMessage(db->conn));
      return;
    }
    db->flushing = r == 1;
  }
  while (!PQisBusy(db->conn)) {
    PGresult *res = PQgetResult(db->conn);
    if (db->batch) {
      /* NULL ends one statement's results; the batch ends at its Sync. */
      if (!res) {
        if (PQpipelineStatus(db->conn) == PQ_PIPELINE_OFF) break;
        continue;
      }
      if (db_batch_result(db, res)) return;
      continue;
    }
    if (!res) {
      db_finish_query(db);
      return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      /* COPY needs its own data exchange, which this client does not
       * speak; dropping the connection is the only way out of it. */
      PQclear(res);
      db_conn_lost(db, "COPY is not supported by db_exec");
      return;
    }
    if (!db->first) {
      db->first = res;
    } else {
      PQclear(res);
    }
  }
  if (PQstatus(db->conn) == CONNECTION_BAD) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  if (db_watch(db, db->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
    db_conn_lost(db, "cannot watch the database socket");
  }
}

/* READY and the socket is readable: a notice, a notification, or the
 * server closing the connection (for instance after pg_terminate_backend,
 * or a restart). Reading now means the loss is noticed while idle, not
 * when the next query fails. */
static void db_idle_event(db_t *db) {
  if (!PQconsumeInput(db->conn)) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  PGnotify *n;
  while ((n = PQnotifies(db->conn)) != NULL)
    PQfreemem(n);
  if (PQstatus(db->conn) == CONNECTION_BAD) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  db_pump_idle(db);
}

/* CONNECTING: the connection is up. */
static void db_connected(db_t *db) {
  if (PQsetnonblocking(db->conn, 1) != 0) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  uv_timer_stop(&db->timer);
  if (db->outage) {
    double secs = (double)(uv_now(db->loop) - db->outage_start) / 1000.0;
    log_info(LOG_DB, DB_OBJ,
             "database at %s reachable again after %.1f s (%u attempt%s); %zu quer%s waiting, "
             "%llu journaled write%s to replay first",
             db->target, secs, db->failures + 1, db->failures ? "s" : "", db->queue.depth,
             db->queue.depth == 1 ? "y" : "ies", (unsigned long long)db->once.jnl.records,
             db->once.jnl.records == 1 ? "" : "s");
  } else {
    log_info(LOG_DB, DB_OBJ, "connected to %s (server %d, backend pid %d)", db->target,
             PQserverVersion(db->conn), PQbackendPID(db->conn));
    if (db->once.jnl.records) {
      log_info(LOG_DB, DB_OBJ, "replaying %llu journaled write%s from %s first",
               (unsigned long long)db->once.jnl.records, db->once.jnl.records == 1 ? "" : "s",
               db->once.jnl.path);
    }
  }
  db->failures = 0;
  backoff_reset(&db->backoff);
  db->outage = 0;
  db_set_state(db, DB_READY);
  db_pump_idle(db);
}

/* CONNECTING: one PQconnectPoll step, then wait for what libpq asks. */
static void db_connect_step(db_t *db) {
  PostgresPollingStatusType ps = PQconnectPoll(db->conn);
  switch (ps) {
  case PGRES_POLLING_READING:
    if (db_watch(db, UV_READABLE) != 0) db_conn_lost(db, "cannot watch the database socket");
    return;
  case PGRES_POLLING_WRITING:
    if (db_watch(db, UV_WRITABLE) != 0) db_conn_lost(db, "cannot watch the database socket");
    return;
  case PGRES_POLLING_OK: db_connected(db); return;
  case PGRES_POLLING_FAILED:
  default: db_conn_lost(db, PQerrorMessage(db->conn)); return;
  }
}

static void db_on_poll(uv_poll_t *h, int status, int events) {
  db_t *db = h->data;
  if (db->closing || h != db->poll) return;
  if (status < 0) {
    /* libuv stops the handle when it reports an error (a socket error such
     * as a refused connection shows up here). Let libpq read the error so
     * the message is its own, and so PQconnectPoll can move on to the next
     * address. */
    db->poll_events = 0;
    events = UV_READABLE | UV_WRITABLE;
  }
  switch (db->state) {
  case DB_CONNECTING: db_connect_step(db); return;
  case DB_READY:
    if (status < 0) {
      (void)PQconsumeInput(db->conn);
      char m[DB_MSG_MAX];
      snprintf(m, sizeof m, "socket error (%s): %s", uv_strerror(status), PQerrorMessage(db->conn));
      db_conn_lost(db, m);
      return;
    }
    db_idle_event(db);
    return;
  case DB_BUSY:
    /* On a socket error, first collect whatever the server managed to
     * send (perhaps the result, perhaps its reason for closing); if libpq
     * still sees a healthy query in flight, the socket error decides. */
    db_busy_event(db, events);
    if (status < 0 && !db->closing && db->state == DB_BUSY) {
      char m[DB_MSG_MAX];
      snprintf(m, sizeof m, "socket error: %s", uv_strerror(status));
      db_conn_lost(db, m);
    }
    return;
  default:
    /* No socket is watched in the other states. */
    db_unwatch(db);
    return;
  }
}

/* BUSY: a change waits (db_once_ready), its time is up, and the statement
 * in flight has had no answer for DB_CHANGE_WAIT_MS: treated as hung. */
static bool db_change_waits_too_long(const db_t *db) {
  uint64_t now = uv_now(db->loop);
  return db->change_by && now >= db->change_by && now - db->sent_ms >= DB_CHANGE_WAIT_MS;
}

/* How long the statement in flight may still go unanswered: to
 * DB_QUERY_TIMEOUT_MS after it was sent, or sooner while a change waits
 * (but never less than DB_CHANGE_WAIT_MS after it was sent). */
static uint64_t db_busy_wait(const db_t *db) {
  uint64_t now = uv_now(db->loop), at = db->sent_ms + DB_QUERY_TIMEOUT_MS;
  if (db->change_by) {
    uint64_t soon = db->change_by > db->sent_ms + DB_CHANGE_WAIT_MS
                        ? db->change_by
                        : db->sent_ms + DB_CHANGE_WAIT_MS;
    if (soon < at) at = soon;
  }
  return at > now ? at - now : 0;
}

static void db_on_timer(uv_timer_t *t) {
  db_t *db = t->data;
  if (db->closing) return;
  switch (db->state) {
  case DB_BACKOFF: db_connect_begin(db); return;
  case DB_CONNECTING: {
    char m[128];
    snprintf(m, sizeof m, "timed out after %llu s",
             (unsigned long long)(db->connect_timeout_ms / 1000u));
    db_conn_lost(db, m);
    return;
  }
  case DB_READY: db_pump_idle(db); return;
  case DB_BUSY: {
    uint64_t waited = uv_now(db->loop) - db->sent_ms;
    if (waited < DB_QUERY_TIMEOUT_MS && !db_change_waits_too_long(db)) {
      uv_timer_start(&db->timer, db_on_timer, db_busy_wait(db), 0);
      return;
    }
    char m[160];
    snprintf(m, sizeof m, "no answer for %.1f s%s: the database is hung or out of reach",
             (double)waited / 1000.0,
             waited < DB_QUERY_TIMEOUT_MS ? " while an operator change waits" : "");
    db_conn_lost(db, m);
    return;
  }
  default: return;
  }
}

/* Starts PQconnectStartParams with the caller's parameters, optionally with
 * host/hostaddr lists from our own resolution. */
static void db_connect_start(db_t *db, const char *hosts, const char *addrs) {
  db->conn = conninfo_start(&db->params, hosts, addrs);
  if (!db->conn) {
    db_conn_lost(db, "out of memory");
    return;
  }
  PQsetNoticeReceiver(db->conn, conninfo_notice, NULL);
  if (PQstatus(db->conn) == CONNECTION_BAD) {
    db_conn_lost(db, PQerrorMessage(db->conn));
    return;
  }
  /* libpq's documented first step: behave as if PQconnectPoll had
   * returned PGRES_POLLING_WRITING. */
  if (db_watch(db, UV_WRITABLE) != 0) db_conn_lost(db, "cannot watch the database socket");
}

static void db_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  db_resolve_t *r = (db_resolve_t *)req;
  db_t *db = r->db;
  int abandoned = r->abandoned;
  free(r);
  if (abandoned || db->closing) {
    if (ai) uv_freeaddrinfo(ai);
    db_release(db);
    return;
  }
  db->resolve = NULL;
  db_release(db); /* not closing, so this only counts the request done */
  const char *name = conninfo_name_to_resolve(&db->params);
  if (status < 0 || !name) {
    char m[DB_MSG_MAX];
    snprintf(m, sizeof m, "could not resolve host name \"%s\": %s", name ? name : "?",
             uv_strerror(status));
    if (ai) uv_freeaddrinfo(ai);
    db_conn_lost(db, m);
    return;
  }
  char addrs[CONNINFO_ADDRS_LEN];
  char hosts[CONNINFO_HOSTS_LEN];
  int count = conninfo_addr_lists(name, ai, hosts, addrs);
  if (ai) uv_freeaddrinfo(ai);
  if (count == 0) {
    char m[DB_MSG_MAX];
    snprintf(m, sizeof m, "host name \"%s\" has no IP address", name);
    db_conn_lost(db, m);
    return;
  }
  log_debug(LOG_DB, DB_OBJ, "%s resolves to %s", name, addrs);
  db_connect_start(db, hosts, addrs);
}

/* BACKOFF (or a new client): start one connection attempt. */
static void db_connect_begin(db_t *db) {
  db_set_state(db, DB_CONNECTING);
  if (db->connect_timeout_ms) {
    uv_timer_start(&db->timer, db_on_timer, db->connect_timeout_ms, 0);
  } else {
    uv_timer_stop(&db->timer);
  }
  /* Names are resolved again on every attempt so a failover that moves a
   * DNS name is followed. */
  const char *name = conninfo_name_to_resolve(&db->params);
  if (!name) {
    db_connect_start(db, NULL, NULL);
    return;
  }
  db_resolve_t *r = calloc(1, sizeof *r);
  if (!r) {
    db_conn_lost(db, "out of memory");
    return;
  }
  r->db = db;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(db->loop, &r->req, db_on_resolved, name, NULL, &hints);
  if (rc != 0) {
    free(r);
    char m[DB_MSG_MAX];
    snprintf(m, sizeof m, "could not resolve host name \"%s\": %s", name, uv_strerror(rc));
    db_conn_lost(db, m);
    return;
  }
  db->resolve = r;
  db->handles++;
}

int db_open(uv_loop_t *loop, const char *conninfo, db_t **out) {
  return db_open_opts(loop, conninfo, NULL, out);
}

/* A random identity for this client's keys. getrandom() does not block
 * with GRND_NONBLOCK; in the rare case it has nothing yet (early boot), the
 * clock, the pid and an address still make a collision implausible. */
static uint64_t db_boot_id(const db_t *db) {
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id && id) return id;
  return uv_hrtime() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)clock_real_ms() ^
         ((uint64_t)(uintptr_t)db << 8);
}

int db_open_opts(uv_loop_t *loop, const char *conninfo, const db_opts_t *opts, db_t **out) {
  if (!out) return NIRC_EINVAL;
  *out = NULL;
  if (!loop || !conninfo) return NIRC_EINVAL;
  db_t *db = calloc(1, sizeof *db);
  if (!db) return NIRC_ENOMEM;
  char err[DB_MSG_MAX + PATH_MAX];
  journal_init(&db->once.jnl);
  /* For benchmarks and diagnosis only: the old one-write-one-commit path. */
  const char *batch_env = getenv("NIRC_DB_BATCH");
  db->no_batch = batch_env && strcmp(batch_env, "0") == 0;
  int rc = conninfo_parse(conninfo, &db->params, err, sizeof err);
  if (rc != 0) {
    log_error(LOG_DB, DB_OBJ, "%s", err);
    free(db);
    return rc;
  }
  if (opts && opts->journal && *opts->journal) {
    uint64_t max = opts->journal_max ? opts->journal_max : DB_JOURNAL_MAX_DEFAULT;
    rc = journal_open(&db->once.jnl, opts->journal, max, err, sizeof err);
    if (rc != 0) {
      log_error(LOG_DB, DB_OBJ, "%s", err);
      conninfo_free(&db->params);
      free(db);
      return rc;
    }
  }
  conninfo_describe(&db->params, db->target, sizeof db->target);
  db->connect_timeout_ms = conninfo_connect_timeout_ms(&db->params);
  db->loop = loop;
  db->state = DB_DISCONNECTED;
  db->boot_id = db_boot_id(db);
  db->next_prune = uv_now(loop) + DB_PRUNE_FIRST_MS;
  /* Full jitter, so controllers that lost the same database do not
   * reconnect in lock-step. */
  backoff_init(&db->backoff, DB_BACKOFF_MIN_MS, DB_BACKOFF_MAX_MS,
               uv_hrtime() ^ ((uint64_t)(uintptr_t)db << 16) ^ (uint64_t)getpid());
  /* uv_timer_init only fills in the handle (libuv returns 0 always), so
   * there is no half-initialised pair to unwind. */
  rc = uv_timer_init(loop, &db->timer);
  if (rc == 0) rc = uv_timer_init(loop, &db->jtimer);
  if (rc != 0) {
    log_error(LOG_DB, DB_OBJ, "cannot create timer: %s", uv_strerror(rc));
    journal_close(&db->once.jnl);
    conninfo_free(&db->params);
    free(db);
    return NIRC_EIO;
  }
  db->timer.data = db;
  db->jtimer.data = db;
  db->handles = 2;
  log_info(LOG_DB, DB_OBJ, "connecting to %s", db->target);
  db_connect_begin(db);
  *out = db;
  return 0;
}

/* Appends q to the memory queue and kicks the sender. Sending right here
 * could fail and run callbacks inside db_exec, so the send is started
 * from the loop on its next turn. */
static void db_enqueue(db_t *db, query_t *q) {
  query_queue_push(&db->queue, q);
  if (db->state == DB_READY && !uv_is_active((uv_handle_t *)&db->timer)) {
    uv_timer_start(&db->timer, db_on_timer, 0, 0);
  }
}

static int db_args_ok(const char *sql, int nparams, const char *const *params) {
  return sql && nparams >= 0 && nparams <= DB_MAX_PARAMS && (nparams == 0 || params);
}

int db_exec(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
            void *arg) {
  if (!db || !db_args_ok(sql, nparams, params)) return NIRC_EINVAL;
  if (db->closing) return NIRC_ECLOSED;
  if (db->queue.depth >= DB_QUEUE_MAX) return NIRC_EFULL;
  query_str_t p[DB_MAX_PARAMS];
  for (int i = 0; i < nparams; i++)
    p[i] = query_str(params[i]);
  query_t *q = query_new(query_str(sql), nparams, p, (query_str_t){NULL, 0});
  if (!q) return NIRC_ENOMEM;
  q->cb = cb;
  q->arg = arg;
  db_enqueue(db, q);
  return 0;
}

/* How a once-write queues (db.h): bulk writes may fill the journal to
 * DB_JOURNAL_BULK_PCT of its size only; urgent ones go ahead of queued
 * overtakable ones (query_queue_push). */
typedef struct {
  bool bulk, urgent, overtakable;
} db_once_class_t;

static int db_once_write(db_t *db, db_once_class_t cls, const char *sql, int nparams,
                         const char *const *params, db_result_cb cb, void *arg) {
  if (!db || !db_args_ok(sql, nparams, params) || !*sql) return NIRC_EINVAL;
  if (db->closing) return NIRC_ECLOSED;
  char key[QUERY_KEY_MAX];
  snprintf(key, sizeof key, "%016llx-%llu", (unsigned long long)db->boot_id,
           (unsigned long long)(db->key_seq + 1));
  /* Every once-write must fit a journal record, even one that runs from
   * memory: it may have to be journaled when the connection breaks. */
  if (journal_record_size(key, sql, nparams, params) > JOURNAL_REC_HDR + DB_JOURNAL_RECORD_MAX) {
    return NIRC_ERANGE;
  }
  int64_t at = clock_real_ms();
  if (db_journal_mode(db)) {
    /* The record on disk is the write; q only carries the callback. */
    query_t *q = calloc(1, sizeof *q);
    if (!q) return NIRC_ENOMEM;
    uint64_t limit = cls.bulk                        ? db->once.jnl.max / 100 * DB_JOURNAL_BULK_PCT
                     : cls.urgent && db->change_open ? db->once.jnl.max + DB_JOURNAL_CHANGE_GRANT
                                                     : 0;
    int rc = journal_append(&db->once.jnl, limit, key, sql, nparams, params, at);
    if (rc != 0) {
      free(q);
      if (cls.bulk && rc == NIRC_EFULL && db->once.jnl.size < db->once.jnl.max)
        once_shed(&db->once, uv_now(db->loop), db->target);
      else if (rc != NIRC_ENOMEM)
        once_refused(&db->once, rc, uv_now(db->loop), db->target);
      return rc;
    }
    db->key_seq++;
    q->cb = cb;
    q->arg = arg;
    once_journaled(&db->once, q);
    db_kick_journal(db);
    return 0;
  }
  if (db->queue.depth >= DB_QUEUE_MAX) return NIRC_EFULL;
  query_str_t p[DB_MAX_PARAMS];
  for (int i = 0; i < nparams; i++)
    p[i] = query_str(params[i]);
  query_t *q = query_new(query_str(sql), nparams, p, query_str(key));
  if (!q) return NIRC_ENOMEM;
  db->key_seq++;
  q->cb = cb;
  q->arg = arg;
  q->at_ms = at;
  q->urgent = cls.urgent;
  q->overtakable = cls.overtakable;
  q->bulk = cls.bulk;
  db_enqueue(db, q);
  return 0;
}

int db_exec_once(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                 void *arg) {
  return db_once_write(db, (db_once_class_t){.urgent = true}, sql, nparams, params, cb, arg);
}

int db_exec_once_in_order(db_t *db, const char *sql, int nparams, const char *const *params,
                          db_result_cb cb, void *arg) {
  return db_once_write(db, (db_once_class_t){0}, sql, nparams, params, cb, arg);
}

int db_exec_once_bulk(db_t *db, const char *sql, int nparams, const char *const *params,
                      db_result_cb cb, void *arg) {
  return db_once_write(db, (db_once_class_t){.bulk = true, .overtakable = true}, sql, nparams,
                       params, cb, arg);
}

int db_exec_once_record(db_t *db, const char *sql, int nparams, const char *const *params,
                        db_result_cb cb, void *arg) {
  return db_once_write(db, (db_once_class_t){.overtakable = true}, sql, nparams, params, cb, arg);
}

int db_once_ready(db_t *db, char *why, size_t whylen) {
  if (!db || db->closing) {
    snprintf(why, whylen, "the controller's database client is closed (nircd is stopping)");
    return NIRC_ECLOSED;
  }
  const journal_t *j = &db->once.jnl;
  bool connected = db->state == DB_READY || db->state == DB_BUSY;
  if (!db_journal_mode(db)) {
    if (!connected && j->fd < 0) {
      snprintf(why, whylen,
               "the database at %s is unreachable and nircd has no outage journal to record the "
               "change in; bring the database back, or set [database] journal",
               db->target);
      return NIRC_EIO;
    }
    if (db->queue.depth >= DB_QUEUE_MAX) {
      snprintf(why, whylen,
               "%zu writes are waiting for the database at %s; it is not keeping up: try again "
               "in a moment",
               db->queue.depth, db->target);
      return NIRC_EFULL;
    }
    /* The operator waits for the change's writes: a database that does
     * not answer them soon is taken as hung (db_on_timer), and they go
     * to the journal, never from inside this call. */
    if (connected && j->fd >= 0) {
      db->change_by = uv_now(db->loop) + DB_CHANGE_ANSWER_MS;
      if (db->state == DB_BUSY) uv_timer_start(&db->timer, db_on_timer, db_busy_wait(db), 0);
    }
    return 0;
  }
  if (j->broken || j->last_errno) {
    snprintf(why, whylen,
             "the outage journal %s cannot be written (%s) while the database at %s is "
             "unreachable; free space on its file system or check the disk",
             j->path,
             j->last_errno ? strerror(j->last_errno) : "a failed write could not be undone",
             db->target);
    return NIRC_EIO;
  }
  if (j->size + DB_JOURNAL_CHANGE_ROOM > j->max) {
    snprintf(why, whylen,
             "the outage journal %s has no room for another change (%llu KiB of %llu KiB used) "
             "while the database at %s is unreachable; bring the database back, or raise "
             "[database] journal_max",
             j->path, (unsigned long long)(j->size / 1024), (unsigned long long)(j->max / 1024),
             db->target);
    return NIRC_EFULL;
  }
  /* The change's writes follow in this turn of the loop: all of them go
   * in (db_once_write), and the next turn closes the grant. */
  db->change_open = true;
  db_kick_journal(db);
  return 0;
}

static void db_prune_done(void *arg, int err, const char *msg, PGresult *res) {
  (void)arg;
  if (err) {
    log_warn(LOG_DB, DB_OBJ, "pruning old write keys failed: %s", msg);
  } else {
    log_debug(LOG_DB, DB_OBJ, "pruned %s write keys older than %s", PQcmdTuples(res),
              DB_KEY_RETENTION);
  }
}

int db_prune_keys(db_t *db) {
  return db_exec(
      db, "DELETE FROM journal_keys WHERE created_at < now() - interval '" DB_KEY_RETENTION "'", 0,
      NULL, db_prune_done, NULL);
}

void db_close(db_t *db, void (*done)(void *arg), void *arg) {
  if (!db) return;
  if (db->closing) {
    log_warn(LOG_DB, DB_OBJ, "db_close called twice; ignored");
    return;
  }
  db->closing = 1;
  db->done = done;
  db->done_arg = arg;
  db_set_state(db, DB_CLOSING);

  /* Stop all I/O before running any callback, so nothing below can be
   * re-entered through the loop. */
  uv_timer_stop(&db->timer);
  uv_close((uv_handle_t *)&db->timer, db_on_handle_closed);
  uv_timer_stop(&db->jtimer);
  uv_close((uv_handle_t *)&db->jtimer, db_on_handle_closed);
  db_abandon_resolve(db);
  db_drop_conn(db);

  /* Once-writes are not given up: the one in flight (its key makes a
   * resend safe) and the queued ones go to the journal for the next start.
   * A journal record in flight simply stays where it is. */
  query_t *q = db->inflight;
  db->inflight = NULL;
  if (db->batch) db_batch_unsend(db); /* journaled with the queue, in order */
  query_t *once = NULL;
  if (q && q->jend) {
    free(q);
    q = NULL;
  } else if (q && q->key) {
    once = q;
    q = NULL;
  }
  if (db->once.jnl.fd >= 0 && (once || db->queue.once)) {
    (void)once_spill(&db->once, &db->queue, once, db->target);
  } else if (once) {
    query_queue_push_front(&db->queue, once);
  }
  if (q) {
    query_complete(q, NIRC_ECLOSED,
                   "database client closed while the query was in flight; outcome unknown", NULL);
  }
  once_flush(&db->once);
  size_t n = db->queue.depth;
  while (db->queue.head) {
    q = query_queue_pop(&db->queue);
    query_complete(q, NIRC_ECLOSED,
                   q->key ? "database client closed before the write was applied or journaled"
                          : "database client closed",
                   NULL);
  }
  db->queue.once = 0;
  if (n) log_info(LOG_DB, DB_OBJ, "closed with %zu queued quer%s", n, n == 1 ? "y" : "ies");
  if (db->once.jnl.records) {
    log_info(LOG_DB, DB_OBJ, "%llu write%s stay in the journal %s for the next start",
             (unsigned long long)db->once.jnl.records, db->once.jnl.records == 1 ? "" : "s",
             db->once.jnl.path);
  }
  journal_close(&db->once.jnl);
  /* db is freed in the last close callback (db_release), never here. */
}
