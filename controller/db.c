/* db: PostgreSQL for the controller (see db.h for the two halves).
 *
 * The asynchronous client is a state machine around one PGconn:
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
 * retry delay (BACKOFF) or a zero-delay "send the next query" kick (READY).
 * A uv_getaddrinfo_t request resolves host names before each connection
 * attempt, because PQconnectStart() would otherwise resolve them with a
 * blocking getaddrinfo() on the loop.
 *
 * Ownership: db_t owns its PGconn, its handles, the queued query records
 * and the in-flight record. Results handed to callbacks are borrowed for the
 * duration of the callback and cleared afterwards. */
#include "db.h"

#include "backoff.h"

#include "err.h"
#include "log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define DB_OBJ "db"

/* Reconnect delays: full jitter over an exponentially growing window. */
#define DB_BACKOFF_MIN_MS 250u
#define DB_BACKOFF_MAX_MS 10000u

/* While the database stays unreachable, the warning is repeated this often
 * (the attempts in between are logged at debug). */
#define DB_OUTAGE_WARN_MS 60000u

/* At most this many addresses of one host name are offered to libpq. */
#define DB_MAX_ADDRS 8
/* Long enough for an IPv6 address with a scope suffix. */
#define DB_ADDR_MAX 64
/* DNS names are at most 253 characters. */
#define DB_HOSTNAME_MAX 256

/* Error texts handed to callbacks and logs are cut to this size. */
#define DB_MSG_MAX 512

/* Migrations: at most 999 of them (three digits), each at most 16 MiB. */
#define DB_MIGRATIONS_MAX     999
#define DB_MIGRATION_FILE_MAX (16u * 1024u * 1024u)

/* The config path named in "run `nircd -c FILE migrate`" messages. The
 * build may override it for packages that install elsewhere. */
#ifndef NIRC_DEFAULT_CONF
#define NIRC_DEFAULT_CONF "/etc/nirc/nircd.conf"
#endif
/* The configuration file named in "run `nircd -c FILE migrate`". */
static const char *db_admin_conf_path = NIRC_DEFAULT_CONF;
void db_admin_set_conf_path(const char *path) {
  db_admin_conf_path = path;
}

/* Key of the session advisory lock that serialises concurrent `nircd
 * migrate` runs. The two-integer form keeps it apart from single-bigint
 * locks (such as a leadership lock); 0x4e495243 is "NIRC" in ASCII. */
#define DB_MIGRATE_LOCK_SQL "select pg_advisory_lock(1313428035, 1)"

/* ------------------------------------------------------------------ */
/* Connection parameters                                               */
/* ------------------------------------------------------------------ */

/* Parsed conninfo as keyword/value arrays (NULL-terminated, all strings
 * owned), so the same settings can be handed to PQconnectStartParams and
 * PQconnectdbParams whether the caller wrote "key=value" or a URI, and so
 * keys can be added without string surgery. */
typedef struct {
  char **kw;
  char **val;
  int n;
  int cap;
} db_params_t;

static void params_free(db_params_t *p) {
  for (int i = 0; i < p->n; i++) {
    free(p->kw[i]);
    free(p->val[i]);
  }
  free(p->kw);
  free(p->val);
  memset(p, 0, sizeof *p);
}

static const char *params_get(const db_params_t *p, const char *kw) {
  for (int i = 0; i < p->n; i++) {
    if (strcmp(p->kw[i], kw) == 0) return p->val[i];
  }
  return NULL;
}

/* Appends kw=val; the caller made sure kw is absent and there is room. */
static int params_add(db_params_t *p, const char *kw, const char *val) {
  if (p->n + 1 >= p->cap) return NIRC_ENOMEM;
  char *k = strdup(kw);
  char *v = strdup(val);
  if (!k || !v) {
    free(k);
    free(v);
    return NIRC_ENOMEM;
  }
  p->kw[p->n] = k;
  p->val[p->n] = v;
  p->n++;
  p->kw[p->n] = NULL;
  p->val[p->n] = NULL;
  return 0;
}

/* Adds kw=val unless the caller already chose a value for kw, either in the
 * conninfo or through the environment variable libpq reads for it. */
static int params_default(db_params_t *p, const char *kw, const char *env, const char *val) {
  if (params_get(p, kw)) return 0;
  if (env && getenv(env)) return 0;
  return params_add(p, kw, val);
}

/* Collapses every run of white space (libpq messages are multi-line and
 * end in a newline) into one space so a message fits one log line. With
 * skip_hints, lines that libpq indents with a tab (its hints such as "Is
 * the server running on that host...?") are left out. */
static void msg_trim(const char *in, int skip_hints, char *out, size_t outlen) {
  if (outlen == 0) return;
  size_t o = 0;
  int space = 0;
  int line_start = 1;
  if (!in) in = "";
  for (; *in && o + 1 < outlen; in++) {
    unsigned char c = (unsigned char)*in;
    if (skip_hints && line_start && c == '\t') {
      while (in[1] && in[1] != '\n')
        in++;
      continue;
    }
    line_start = c == '\n';
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = 1;
      continue;
    }
    if (space && o > 0) {
      out[o++] = ' ';
      if (o + 1 >= outlen) break;
    }
    space = 0;
    out[o++] = (char)c;
  }
  out[o] = '\0';
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Parses conninfo and adds the defaults NIRC relies on where the caller
 * did not choose: TCP keepalives so a dead server or a dead network path is
 * noticed in seconds rather than after the kernel's two hours, a TCP user
 * timeout for the same reason while data is unacknowledged, a connect
 * timeout, and an application name that shows up in pg_stat_activity. */
static int params_from_conninfo(const char *conninfo, db_params_t *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (!opts) {
    if (perr) {
      char m[DB_MSG_MAX];
      msg_trim(perr, 0, m, sizeof m);
      set_err(err, errlen, "invalid conninfo: %s", m);
      PQfreemem(perr);
      return NIRC_EINVAL;
    }
    set_err(err, errlen, "out of memory parsing conninfo");
    return NIRC_ENOMEM;
  }
  int count = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (o->val) count++;
  }
  /* Room for the defaults below, a host/hostaddr override and the NULL. */
  p->cap = count + 12;
  p->kw = calloc((size_t)p->cap, sizeof *p->kw);
  p->val = calloc((size_t)p->cap, sizeof *p->val);
  int rc = (p->kw && p->val) ? 0 : NIRC_ENOMEM;
  for (PQconninfoOption *o = opts; rc == 0 && o->keyword; o++) {
    if (o->val) rc = params_add(p, o->keyword, o->val);
  }
  PQconninfoFree(opts);
  if (rc == 0) rc = params_default(p, "keepalives", NULL, "1");
  if (rc == 0) rc = params_default(p, "keepalives_idle", NULL, "5");
  if (rc == 0) rc = params_default(p, "keepalives_interval", NULL, "2");
  if (rc == 0) rc = params_default(p, "keepalives_count", NULL, "2");
  if (rc == 0) rc = params_default(p, "tcp_user_timeout", NULL, "10000");
  if (rc == 0) rc = params_default(p, "connect_timeout", "PGCONNECT_TIMEOUT", "5");
  if (rc == 0) rc = params_default(p, "fallback_application_name", NULL, "nircd");
  if (rc != 0) {
    params_free(p);
    set_err(err, errlen, "out of memory parsing conninfo");
  }
  return rc;
}

/* Describes where the parameters point ("host=db1 port=5432") for error
 * messages and logs. It never includes the password or other settings. */
static void params_describe(const db_params_t *p, char *out, size_t outlen) {
  const char *host = params_get(p, "host");
  if (!host || !*host) host = getenv("PGHOST");
  const char *hostaddr = params_get(p, "hostaddr");
  if (!hostaddr || !*hostaddr) hostaddr = getenv("PGHOSTADDR");
  const char *port = params_get(p, "port");
  if (!port || !*port) port = getenv("PGPORT");
  if (!port || !*port) port = "5432";
  if (host && *host) {
    snprintf(out, outlen, "host=%s port=%s", host, port);
  } else if (hostaddr && *hostaddr) {
    snprintf(out, outlen, "hostaddr=%s port=%s", hostaddr, port);
  } else {
    snprintf(out, outlen, "the default Unix socket, port=%s", port);
  }
}

/* The connect timeout in milliseconds that libpq would apply to a blocking
 * connect (0 = none). PQconnectPoll ignores connect_timeout, so the async
 * client enforces it with its timer. */
static uint64_t params_connect_timeout_ms(const db_params_t *p) {
  const char *s = params_get(p, "connect_timeout");
  if (!s) s = getenv("PGCONNECT_TIMEOUT");
  if (!s) return 0;
  long v = strtol(s, NULL, 10);
  if (v <= 0) return 0;
  if (v < 2) v = 2; /* libpq's own minimum */
  return (uint64_t)v * 1000u;
}

/* Returns the host name that must be resolved before connecting, or NULL
 * when libpq will not need DNS: a Unix socket directory, an IP literal, an
 * explicit hostaddr. Host lists ("a,b") are left to libpq. */
static const char *params_name_to_resolve(const db_params_t *p) {
  const char *hostaddr = params_get(p, "hostaddr");
  if ((hostaddr && *hostaddr) || getenv("PGHOSTADDR")) return NULL;
  const char *host = params_get(p, "host");
  if (!host || !*host) host = getenv("PGHOST");
  if (!host || !*host) return NULL;
  if (host[0] == '/' || host[0] == '@') return NULL;
  if (strchr(host, ',') || strlen(host) >= DB_HOSTNAME_MAX) return NULL;
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) return NULL;
  return host;
}

/* Routes server notices and warnings into our log instead of libpq's
 * default of printing them raw on stderr. */
static void db_notice(void *arg, const PGresult *res) {
  (void)arg;
  char m[DB_MSG_MAX];
  msg_trim(PQresultErrorMessage(res), 0, m, sizeof m);
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (sev && (strcmp(sev, "WARNING") == 0 || strcmp(sev, "ERROR") == 0 ||
              strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
    log_warn(LOG_DB, DB_OBJ, "server: %s", m);
  } else {
    log_debug(LOG_DB, DB_OBJ, "server: %s", m);
  }
}

/* ------------------------------------------------------------------ */
/* Asynchronous client                                                 */
/* ------------------------------------------------------------------ */

/* One queued statement. sql and the parameter strings live in the same
 * allocation, right after the record, so a query is one malloc/free. */
typedef struct db_query {
  struct db_query *next;
  db_result_cb cb;
  void *arg;
  int nparams;
  const char *params[DB_MAX_PARAMS]; /* point into the record's tail */
  char *sql;                         /* points into the record's tail */
} db_query_t;

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
  db_params_t params;
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

  db_query_t *head, *tail;
  size_t depth;
  db_query_t *inflight;
  PGresult *first; /* first result of the in-flight query */
  int flushing;    /* PQflush has not yet sent all of the in-flight query */

  /* Reconnect bookkeeping. */
  backoff_t backoff;     /* reconnect delays (common/backoff.c) */
  unsigned failures;     /* failed attempts since the last good connection */
  int outage;            /* the database has been unreachable since outage_start */
  uint64_t outage_start; /* uv_now() when the outage began */
  uint64_t last_warn;    /* uv_now() of the last "cannot connect" warning */
};

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
static void db_set_state(db_t *db, db_state_t to) {
  db_state_t from = db->state;
  if (from == to) return;
  if (!db_transition_ok(from, to)) {
    log_error(LOG_DB, DB_OBJ, "invalid state transition %s -> %s", db_state_name(from),
              db_state_name(to));
    assert(!"invalid db state transition");
  }
  db->state = to;
  int loud = (from == DB_CONNECTING && to == DB_READY) ||
             ((from == DB_READY || from == DB_BUSY) && to == DB_BACKOFF) || to == DB_CLOSING ||
             to == DB_DISCONNECTED;
  if (loud) {
    log_info(LOG_DB, DB_OBJ, "%s -> %s", db_state_name(from), db_state_name(to));
  } else {
    log_debug(LOG_DB, DB_OBJ, "%s -> %s", db_state_name(from), db_state_name(to));
  }
}

db_state_t db_state(const db_t *db) {
  return db ? db->state : DB_DISCONNECTED;
}

size_t db_queue_depth(const db_t *db) {
  return db ? db->depth : 0;
}

static void db_on_poll(uv_poll_t *h, int status, int events);
static void db_on_timer(uv_timer_t *t);
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
  params_free(&db->params);
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

/* Runs a query's callback and frees the record. */
static void db_complete(db_query_t *q, int err, const char *msg, PGresult *res) {
  if (q->cb) q->cb(q->arg, err, msg, res);
  free(q);
}

/* The connection, or the attempt to make one, failed. Queued queries stay
 * queued for the next connection; the in-flight one is not retried because
 * it may have committed, so it completes with NIRC_EDB. */
static void db_conn_lost(db_t *db, const char *why) {
  char m[DB_MSG_MAX];
  msg_trim(why, 0, m, sizeof m);
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

  db_query_t *q = db->inflight;
  db->inflight = NULL;
  PGresult *res = db->first;
  db->first = NULL;

  db_abandon_resolve(db);
  db_drop_conn(db);
  db_set_state(db, DB_BACKOFF);
  uint64_t delay = backoff_next(&db->backoff);
  log_debug(LOG_DB, DB_OBJ, "next connection attempt in %llu ms", (unsigned long long)delay);
  uv_timer_start(&db->timer, db_on_timer, delay, 0);

  if (q) {
    /* An error the server sent before the connection died (it carries a
     * SQLSTATE; errors libpq makes up locally do not) is the real outcome:
     * the statement failed. Otherwise nobody knows whether it committed. */
    if (res && PQresultStatus(res) == PGRES_FATAL_ERROR &&
        PQresultErrorField(res, PG_DIAG_SQLSTATE)) {
      char rm[DB_MSG_MAX];
      msg_trim(PQresultErrorMessage(res), 0, rm, sizeof rm);
      db_complete(q, NIRC_EDB, rm, res);
    } else {
      db_complete(q, NIRC_EDB, "connection lost during query; outcome unknown", NULL);
    }
  }
  if (res) PQclear(res);
}

/* READY and something is queued: send the oldest query. */
static void db_send_next(db_t *db) {
  db_query_t *q = db->head;
  db->head = q->next;
  if (!db->head) db->tail = NULL;
  db->depth--;
  q->next = NULL;
  db->inflight = q;
  db_set_state(db, DB_BUSY);

  if (!PQsendQueryParams(db->conn, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0)) {
    char m[DB_MSG_MAX];
    msg_trim(PQerrorMessage(db->conn), 0, m, sizeof m);
    if (PQstatus(db->conn) == CONNECTION_OK) {
      /* libpq refused the query before sending anything (for instance out
       * of memory); the connection itself is fine. */
      db->inflight = NULL;
      db_set_state(db, DB_READY);
      db_complete(q, NIRC_EDB, m, NULL);
      if (!db->closing && !uv_is_active((uv_handle_t *)&db->timer)) {
        uv_timer_start(&db->timer, db_on_timer, 0, 0);
      }
      return;
    }
    db_conn_lost(db, m);
    return;
  }
  /* The documented non-blocking send: PQflush until it returns 0, waiting
   * for write-readiness (and reading whatever the server sends meanwhile,
   * so neither side can deadlock on full buffers). */
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

/* READY: send the next query, or wait for the server (a notice, or the
 * connection closing) while idle. */
static void db_pump_idle(db_t *db) {
  if (db->head) {
    db_send_next(db);
  } else if (db_watch(db, UV_READABLE) != 0) {
    db_conn_lost(db, "cannot watch the database socket");
  }
}

/* The in-flight query finished (PQgetResult returned NULL). */
static void db_finish_query(db_t *db) {
  db_query_t *q = db->inflight;
  PGresult *res = db->first;
  db->inflight = NULL;
  db->first = NULL;
  db_set_state(db, DB_READY);

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
      msg_trim(PQresultErrorMessage(res), 0, m, sizeof m);
      if (!m[0]) snprintf(m, sizeof m, "%s", PQresStatus(PQresultStatus(res)));
      break;
    }
  }
  db_complete(q, err, msg, res);
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
             "database at %s reachable again after %.1f s (%u attempt%s); %zu quer%s waiting",
             db->target, secs, db->failures + 1, db->failures ? "s" : "", db->depth,
             db->depth == 1 ? "y" : "ies");
  } else {
    log_info(LOG_DB, DB_OBJ, "connected to %s (server %d, backend pid %d)", db->target,
             PQserverVersion(db->conn), PQbackendPID(db->conn));
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
  default: return; /* a stale kick: the query was already sent */
  }
}

/* Starts PQconnectStartParams with the caller's parameters, optionally with
 * host/hostaddr lists from our own resolution. */
static void db_connect_start(db_t *db, const char *hosts, const char *addrs) {
  int n = db->params.n;
  const char **kw = calloc((size_t)n + 3, sizeof *kw);
  const char **val = calloc((size_t)n + 3, sizeof *val);
  if (!kw || !val) {
    free(kw);
    free(val);
    db_conn_lost(db, "out of memory");
    return;
  }
  int j = 0;
  for (int i = 0; i < n; i++) {
    if (hosts &&
        (strcmp(db->params.kw[i], "host") == 0 || strcmp(db->params.kw[i], "hostaddr") == 0)) {
      continue;
    }
    kw[j] = db->params.kw[i];
    val[j] = db->params.val[i];
    j++;
  }
  if (hosts) {
    kw[j] = "host";
    val[j++] = hosts;
    kw[j] = "hostaddr";
    val[j++] = addrs;
  }
  db->conn = PQconnectStartParams(kw, val, 0);
  free(kw);
  free(val);
  if (!db->conn) {
    db_conn_lost(db, "out of memory");
    return;
  }
  PQsetNoticeReceiver(db->conn, db_notice, NULL);
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
  const char *name = params_name_to_resolve(&db->params);
  if (status < 0 || !name) {
    char m[DB_MSG_MAX];
    snprintf(m, sizeof m, "could not resolve host name \"%s\": %s", name ? name : "?",
             uv_strerror(status));
    if (ai) uv_freeaddrinfo(ai);
    db_conn_lost(db, m);
    return;
  }
  /* libpq wants as many hostaddr entries as host entries; repeating the
   * name keeps TLS host verification and .pgpass lookups on the name. */
  char addrs[DB_MAX_ADDRS * (DB_ADDR_MAX + 1)];
  char hosts[DB_MAX_ADDRS * (DB_HOSTNAME_MAX + 1)];
  char seen[DB_MAX_ADDRS][DB_ADDR_MAX];
  int count = 0;
  size_t alen = 0, hlen = 0;
  for (struct addrinfo *p = ai; p && count < DB_MAX_ADDRS; p = p->ai_next) {
    if (p->ai_family != AF_INET && p->ai_family != AF_INET6) continue;
    char a[DB_ADDR_MAX];
    if (getnameinfo(p->ai_addr, p->ai_addrlen, a, sizeof a, NULL, 0, NI_NUMERICHOST) != 0) {
      continue;
    }
    int dup = 0;
    for (int i = 0; i < count; i++)
      dup |= strcmp(seen[i], a) == 0;
    if (dup) continue;
    memcpy(seen[count], a, sizeof a);
    alen += (size_t)snprintf(addrs + alen, sizeof addrs - alen, "%s%s", count ? "," : "", a);
    hlen += (size_t)snprintf(hosts + hlen, sizeof hosts - hlen, "%s%s", count ? "," : "", name);
    count++;
  }
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
  const char *name = params_name_to_resolve(&db->params);
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
  if (!out) return NIRC_EINVAL;
  *out = NULL;
  if (!loop || !conninfo) return NIRC_EINVAL;
  db_t *db = calloc(1, sizeof *db);
  if (!db) return NIRC_ENOMEM;
  char err[DB_MSG_MAX];
  int rc = params_from_conninfo(conninfo, &db->params, err, sizeof err);
  if (rc != 0) {
    log_error(LOG_DB, DB_OBJ, "%s", err);
    free(db);
    return rc;
  }
  params_describe(&db->params, db->target, sizeof db->target);
  db->connect_timeout_ms = params_connect_timeout_ms(&db->params);
  db->loop = loop;
  db->state = DB_DISCONNECTED;
  /* Full jitter, so controllers that lost the same database do not
   * reconnect in lock-step. */
  backoff_init(&db->backoff, DB_BACKOFF_MIN_MS, DB_BACKOFF_MAX_MS,
               uv_hrtime() ^ ((uint64_t)(uintptr_t)db << 16) ^ (uint64_t)getpid());
  rc = uv_timer_init(loop, &db->timer);
  if (rc != 0) {
    log_error(LOG_DB, DB_OBJ, "cannot create timer: %s", uv_strerror(rc));
    params_free(&db->params);
    free(db);
    return NIRC_EIO;
  }
  db->timer.data = db;
  db->handles = 1;
  log_info(LOG_DB, DB_OBJ, "connecting to %s", db->target);
  db_connect_begin(db);
  *out = db;
  return 0;
}

int db_exec(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
            void *arg) {
  if (!db || !sql || nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && !params)) {
    return NIRC_EINVAL;
  }
  if (db->closing) return NIRC_ECLOSED;
  if (db->depth >= DB_QUEUE_MAX) return NIRC_EFULL;

  size_t sqllen = strlen(sql) + 1;
  size_t total = sizeof(db_query_t) + sqllen;
  size_t lens[DB_MAX_PARAMS];
  for (int i = 0; i < nparams; i++) {
    lens[i] = params[i] ? strlen(params[i]) + 1 : 0;
    total += lens[i];
  }
  db_query_t *q = malloc(total);
  if (!q) return NIRC_ENOMEM;
  memset(q, 0, sizeof *q);
  char *p = (char *)(q + 1);
  q->sql = p;
  memcpy(p, sql, sqllen);
  p += sqllen;
  for (int i = 0; i < nparams; i++) {
    if (!params[i]) continue; /* SQL NULL */
    memcpy(p, params[i], lens[i]);
    q->params[i] = p;
    p += lens[i];
  }
  q->nparams = nparams;
  q->cb = cb;
  q->arg = arg;

  if (db->tail) {
    db->tail->next = q;
  } else {
    db->head = q;
  }
  db->tail = q;
  db->depth++;

  /* Sending right here could fail and run callbacks inside db_exec, so
   * the send is kicked off from the loop on its next turn. */
  if (db->state == DB_READY && !uv_is_active((uv_handle_t *)&db->timer)) {
    uv_timer_start(&db->timer, db_on_timer, 0, 0);
  }
  return 0;
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
  db_abandon_resolve(db);
  db_drop_conn(db);

  db_query_t *q = db->inflight;
  db->inflight = NULL;
  if (q) {
    db_complete(q, NIRC_ECLOSED,
                "database client closed while the query was in flight; outcome unknown", NULL);
  }
  size_t n = db->depth;
  while ((q = db->head) != NULL) {
    db->head = q->next;
    if (!db->head) db->tail = NULL;
    db->depth--;
    db_complete(q, NIRC_ECLOSED, "database client closed", NULL);
  }
  if (n) log_info(LOG_DB, DB_OBJ, "closed with %zu queued quer%s", n, n == 1 ? "y" : "ies");
  /* db is freed in the last close callback (db_release), never here. */
}

/* ------------------------------------------------------------------ */
/* Start-up (blocking) administration                                  */
/* ------------------------------------------------------------------ */

/* Opens a blocking connection for the admin commands. An unreachable
 * server gets a message naming where we looked; errors the server itself
 * sent (authentication, missing database) are clear on their own. */
static PGconn *admin_connect(const char *conninfo, char *err, size_t errlen) {
  db_params_t p;
  if (!conninfo) {
    set_err(err, errlen, "no database conninfo given");
    return NULL;
  }
  if (params_from_conninfo(conninfo, &p, err, errlen) != 0) return NULL;
  char target[256];
  params_describe(&p, target, sizeof target);
  PGconn *c = PQconnectdbParams((const char *const *)p.kw, (const char *const *)p.val, 0);
  params_free(&p);
  if (!c) {
    set_err(err, errlen, "cannot connect to PostgreSQL at %s: out of memory", target);
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    const char *raw = PQerrorMessage(c);
    char m[DB_MSG_MAX];
    if (strstr(raw, "FATAL:")) {
      msg_trim(raw, 0, m, sizeof m);
      set_err(err, errlen, "cannot connect to PostgreSQL at %s: %s", target, m);
    } else {
      msg_trim(raw, 1, m, sizeof m);
      set_err(err, errlen, "cannot connect to PostgreSQL at %s: %s: is PostgreSQL running?", target,
              m);
    }
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeReceiver(c, db_notice, NULL);
  return c;
}

/* Formats a failed result as "line 3: ERROR: message (DETAIL: ...)". The
 * line is computed from the error position when `sql` is the text the
 * position refers to, so a broken migration names the line in its file. */
static void admin_result_error(const PGresult *res, const char *sql, char *out, size_t outlen) {
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (!primary) {
    msg_trim(res ? PQresultErrorMessage(res) : "out of memory", 0, out, outlen);
    if (!out[0] && res) snprintf(out, outlen, "%s", PQresStatus(PQresultStatus(res)));
    return;
  }
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
  const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
  char where[32] = "";
  if (pos && sql) {
    /* The position counts characters from 1; UTF-8 continuation bytes do
     * not start a character. */
    long want = strtol(pos, NULL, 10);
    long chars = 0, line = 1;
    for (const unsigned char *s = (const unsigned char *)sql; *s; s++) {
      if ((*s & 0xC0) != 0x80 && ++chars >= want) break;
      if (*s == '\n') line++;
    }
    snprintf(where, sizeof where, "line %ld: ", line);
  }
  char d[DB_MSG_MAX] = "";
  if (detail) msg_trim(detail, 0, d, sizeof d);
  snprintf(out, outlen, "%s%s: %s%s%s%s", where, sev ? sev : "ERROR", primary,
           d[0] ? " (DETAIL: " : "", d, d[0] ? ")" : "");
}

/* Runs a statement that must succeed; on failure err gets "<what>: <pg>". */
static int admin_exec(PGconn *c, const char *sql, const char *what, char *err, size_t errlen) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    PQclear(r);
    return 0;
  }
  char m[DB_MSG_MAX];
  admin_result_error(r, NULL, m, sizeof m);
  set_err(err, errlen, "%s: %s", what, m);
  PQclear(r);
  return NIRC_EDB;
}

static int admin_version(PGconn *c, int *version, char *err, size_t errlen) {
  PGresult *r = PQexec(c, "select to_regclass('schema_version') is not null");
  if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    char m[DB_MSG_MAX];
    admin_result_error(r, NULL, m, sizeof m);
    set_err(err, errlen, "reading the schema version: %s", m);
    PQclear(r);
    return NIRC_EDB;
  }
  int exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (!exists) {
    *version = 0;
    return 0;
  }
  r = PQexec(c, "select coalesce(max(version), 0) from schema_version");
  if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    char m[DB_MSG_MAX];
    admin_result_error(r, NULL, m, sizeof m);
    set_err(err, errlen, "reading the schema version: %s", m);
    PQclear(r);
    return NIRC_EDB;
  }
  *version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return 0;
}

int db_admin_schema_version(const char *conninfo, int *version, char *err, size_t errlen) {
  if (!version) return NIRC_EINVAL;
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) return NIRC_EDB;
  int rc = admin_version(c, version, err, errlen);
  PQfinish(c);
  return rc;
}

int db_admin_check_schema(const char *conninfo, char *err, size_t errlen) {
  int v = 0;
  int rc = db_admin_schema_version(conninfo, &v, err, errlen);
  if (rc != 0) return rc;
  if (v < DB_SCHEMA_VERSION) {
    set_err(err, errlen,
            "database schema is version %d, this nircd needs %d: run `nircd -c %s migrate`", v,
            DB_SCHEMA_VERSION, db_admin_conf_path);
    return NIRC_ESCHEMA;
  }
  if (v > DB_SCHEMA_VERSION) {
    set_err(err, errlen, "database schema is version %d, newer than this nircd (%d): upgrade nircd",
            v, DB_SCHEMA_VERSION);
    return NIRC_ESCHEMA;
  }
  return 0;
}

typedef struct {
  int version;
  char file[256]; /* "001_foundation.sql" */
} db_migration_t;

/* Accepts exactly ^[0-9]{3}_[a-z0-9_]+\.sql$ (no locale-dependent ctype). */
static int migration_name_ok(const char *n) {
  size_t len = strlen(n);
  if (len < 9 || len >= sizeof((db_migration_t *)0)->file) return 0;
  for (int i = 0; i < 3; i++) {
    if (n[i] < '0' || n[i] > '9') return 0;
  }
  if (n[3] != '_' || strcmp(n + len - 4, ".sql") != 0) return 0;
  for (size_t i = 4; i < len - 4; i++) {
    char c = n[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
  }
  return 1;
}

static int migration_cmp(const void *a, const void *b) {
  const db_migration_t *x = a, *y = b;
  return (x->version > y->version) - (x->version < y->version);
}

/* Lists the migrations in dir, sorted, checking they are numbered 1..N
 * without gaps or duplicates (a gap means a file went missing). */
static int migrations_list(const char *dir, db_migration_t **out, int *count, char *err,
                           size_t errlen) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) {
    set_err(err, errlen, "cannot read schema directory %s: %s", dir, strerror(errno));
    return NIRC_EIO;
  }
  db_migration_t *m = NULL;
  int n = 0, cap = 0, rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!migration_name_ok(e->d_name)) continue;
    if (n == DB_MIGRATIONS_MAX) {
      set_err(err, errlen, "%s: more than %d migrations", dir, DB_MIGRATIONS_MAX);
      rc = NIRC_ERANGE;
      break;
    }
    if (n == cap) {
      int ncap = cap ? cap * 2 : 16;
      db_migration_t *nm = realloc(m, (size_t)ncap * sizeof *nm);
      if (!nm) {
        set_err(err, errlen, "out of memory");
        rc = NIRC_ENOMEM;
        break;
      }
      m = nm;
      cap = ncap;
    }
    m[n].version = (e->d_name[0] - '0') * 100 + (e->d_name[1] - '0') * 10 + (e->d_name[2] - '0');
    snprintf(m[n].file, sizeof m[n].file, "%s", e->d_name);
    n++;
  }
  closedir(d);
  if (rc == 0 && n == 0) {
    set_err(err, errlen, "no migrations (NNN_name.sql) found in %s", dir);
    rc = NIRC_ENOTFOUND;
  }
  if (rc == 0) {
    qsort(m, (size_t)n, sizeof *m, migration_cmp);
    for (int i = 0; i < n; i++) {
      if (i > 0 && m[i].version == m[i - 1].version) {
        set_err(err, errlen, "%s/%s: duplicate migration number (also %s)", dir, m[i].file,
                m[i - 1].file);
        rc = NIRC_EEXISTS;
        break;
      }
      if (m[i].version != i + 1) {
        set_err(err, errlen,
                "%s/%s: migration %03d is missing (they are numbered from 001 "
                "without gaps)",
                dir, m[i].file, i + 1);
        rc = NIRC_ENOTFOUND;
        break;
      }
    }
  }
  if (rc != 0) {
    free(m);
    return rc;
  }
  *out = m;
  *count = n;
  return 0;
}

/* Reads a migration file into a NUL-terminated buffer (caller frees). */
static int read_file(const char *path, char **out, char *err, size_t errlen) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return NIRC_EIO;
  }
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  int rc = buf ? 0 : NIRC_ENOMEM;
  while (rc == 0) {
    if (len + 1 >= cap) {
      if (cap >= DB_MIGRATION_FILE_MAX) {
        set_err(err, errlen, "%s: larger than %u bytes", path, DB_MIGRATION_FILE_MAX);
        rc = NIRC_ERANGE;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = NIRC_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) {
        set_err(err, errlen, "%s: read error", path);
        rc = NIRC_EIO;
      }
      break;
    }
  }
  fclose(f);
  if (rc == NIRC_ENOMEM) set_err(err, errlen, "%s: out of memory", path);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  if (strlen(buf) != len) {
    set_err(err, errlen, "%s: contains a NUL byte", path);
    free(buf);
    return NIRC_EINVAL;
  }
  *out = buf;
  return 0;
}

/* Applies one migration in its own transaction with its schema_version
 * row, so a failure leaves the database exactly as it was. */
static int migration_apply(PGconn *c, const char *path, const db_migration_t *m, char *err,
                           size_t errlen) {
  char *sql = NULL;
  int rc = read_file(path, &sql, err, errlen);
  if (rc != 0) return rc;
  rc = admin_exec(c, "BEGIN", path, err, errlen);
  if (rc == 0) {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
      char msg[DB_MSG_MAX];
      admin_result_error(r, sql, msg, sizeof msg);
      set_err(err, errlen, "%s: %s", path, msg);
      rc = NIRC_EDB;
    }
    PQclear(r);
  }
  if (rc == 0) {
    char ver[16];
    snprintf(ver, sizeof ver, "%d", m->version);
    char name[sizeof m->file];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(m->file) - 8), m->file + 4);
    const char *params[2] = {ver, name};
    PGresult *r = PQexecParams(c, "insert into schema_version (version, name) values ($1, $2)", 2,
                               NULL, params, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
      char msg[DB_MSG_MAX];
      admin_result_error(r, NULL, msg, sizeof msg);
      set_err(err, errlen, "%s: recording schema version %d: %s", path, m->version, msg);
      rc = NIRC_EDB;
    }
    PQclear(r);
  }
  if (rc == 0) rc = admin_exec(c, "COMMIT", path, err, errlen);
  if (rc != 0) {
    /* Best effort: if the connection is gone the server rolls back. */
    PQclear(PQexec(c, "ROLLBACK"));
  }
  free(sql);
  return rc;
}

int db_admin_migrate(const char *conninfo, const char *schema_dir, char *err, size_t errlen) {
  if (!schema_dir) return NIRC_EINVAL;
  db_migration_t *m = NULL;
  int n = 0;
  int rc = migrations_list(schema_dir, &m, &n, err, errlen);
  if (rc != 0) return rc;
  int highest = m[n - 1].version;
  if (highest != DB_SCHEMA_VERSION) {
    log_warn(LOG_DB, DB_OBJ, "%s holds migrations up to %d but this nircd needs version %d",
             schema_dir, highest, DB_SCHEMA_VERSION);
  }

  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) {
    free(m);
    return NIRC_EDB;
  }
  /* Two `nircd migrate` at once would both see the old version; the lock
   * makes the second wait and then find nothing to do. It is released
   * when the connection closes. */
  int current = 0;
  rc = admin_exec(c, DB_MIGRATE_LOCK_SQL, "taking the migration lock", err, errlen);
  if (rc == 0) rc = admin_version(c, &current, err, errlen);
  if (rc == 0 && current > highest) {
    set_err(err, errlen,
            "database schema is version %d but the newest migration in %s is %03d: this nircd is "
            "older than the database; upgrade nircd",
            current, schema_dir, highest);
    rc = NIRC_ESCHEMA;
  }
  if (rc == 0 && current == highest) {
    printf("schema is at version %d, nothing to do\n", current);
    fflush(stdout);
  }
  for (int i = 0; rc == 0 && i < n; i++) {
    if (m[i].version <= current) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", schema_dir, m[i].file);
    rc = migration_apply(c, path, &m[i], err, errlen);
    if (rc == 0) {
      printf("applied %.*s\n", (int)(strlen(m[i].file) - 4), m[i].file);
      fflush(stdout);
      log_debug(LOG_DB, DB_OBJ, "applied migration %s", m[i].file);
    }
  }
  PQfinish(c);
  free(m);
  return rc;
}
