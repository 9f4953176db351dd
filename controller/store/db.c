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
 * blocking getaddrinfo() on the loop. A second timer (jtimer) is a
 * zero-delay kick that fdatasyncs the journal and then runs the callbacks
 * of the writes it took. Journal I/O is plain pread/pwrite/fdatasync on the
 * loop: a record is a few hundred bytes and only written during outages.
 *
 * Once-writes (db_exec_once) carry an idempotency key. While connected and
 * with an empty journal they wait in the memory queue like any query; when
 * the connection is lost, the one in flight and the queued ones move to the
 * journal, and while the database is unreachable (or the journal still
 * holds records) new ones are appended there. Once connected, the journal
 * is replayed first, in order, then the memory queue runs.
 *
 * Ownership: db_t owns its PGconn, its handles, the queued query records,
 * the in-flight record and the journal's descriptor. Results handed to
 * callbacks are borrowed for the duration of the callback and cleared
 * afterwards. */
#include "db.h"

#include "backoff.h"

#include "err.h"
#include "log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
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

/* journal_keys rows are pruned a minute after the client opens (not at
 * once, so a short-lived client does not pay for it) and hourly after. */
#define DB_PRUNE_FIRST_MS 60000u
#define DB_PRUNE_EVERY_MS 3600000u
/* DB_KEY_RETENTION in milliseconds, for the age check of journal records. */
#define DB_KEY_RETENTION_MS (7ll * 86400000)

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
/* Query records                                                       */
/* ------------------------------------------------------------------ */

/* One queued statement. sql, the parameter strings and a once-write's key
 * live in the same allocation, right after the record, so a query is one
 * malloc/free. */
typedef struct db_query {
  struct db_query *next;
  db_result_cb cb;
  void *arg;
  int nparams;                           /* the caller's parameters */
  const char *params[DB_MAX_PARAMS + 1]; /* into the tail; a once-write's key follows them */
  char *sql;                             /* the caller's statement, in the tail */
  const char *key;                       /* once-writes: the idempotency key; else NULL */
  int64_t at_ms;                         /* once-writes: wall-clock time of the call */
  uint64_t jend; /* replayed from the journal: offset just past its record; else 0 */
} db_query_t;

/* A string with its length; p == NULL is SQL NULL. Journal payloads are
 * not NUL-terminated, so records are built from these. */
typedef struct {
  const char *p;
  size_t len;
} db_str_t;

static db_str_t str_of(const char *s) {
  return (db_str_t){s, s ? strlen(s) : 0};
}

/* Makes a record holding copies of sql, the parameters and the key (key.p
 * NULL for an ordinary query). Returns NULL when out of memory. */
static db_query_t *query_new(db_str_t sql, int nparams, const db_str_t *params, db_str_t key) {
  size_t total = sizeof(db_query_t) + sql.len + 1 + (key.p ? key.len + 1 : 0);
  for (int i = 0; i < nparams; i++)
    total += params[i].p ? params[i].len + 1 : 0;
  db_query_t *q = malloc(total);
  if (!q) return NULL;
  memset(q, 0, sizeof *q);
  char *p = (char *)(q + 1);
  q->sql = p;
  memcpy(p, sql.p, sql.len);
  p[sql.len] = '\0';
  p += sql.len + 1;
  for (int i = 0; i < nparams; i++) {
    if (!params[i].p) continue; /* SQL NULL */
    memcpy(p, params[i].p, params[i].len);
    p[params[i].len] = '\0';
    q->params[i] = p;
    p += params[i].len + 1;
  }
  q->nparams = nparams;
  if (key.p) {
    memcpy(p, key.p, key.len);
    p[key.len] = '\0';
    q->key = p;
    q->params[nparams] = p; /* sent as $nparams+1 */
  }
  return q;
}

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
static char *db_once_sql(const char *sql, int nparams) {
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

/* ------------------------------------------------------------------ */
/* Journal                                                             */
/* ------------------------------------------------------------------ */

/* The on-disk journal of once-writes made while the database was
 * unreachable (the format is described in docs/ARCHITECTURE.md). All
 * integers are little-endian:
 *
 *   header  "NIRCJNL\n", u32 version (1), u32 CRC-32C of the 12 bytes before
 *   record  u32 len, u32 CRC-32C of (the len field, payload), len bytes:
 *             u64 at_ms      wall-clock time of the write
 *             u16 key length, the key
 *             u16 parameter count
 *             u32 statement length, the statement as the caller gave it
 *             per parameter: u32 length (0xffffffff: SQL NULL), the bytes
 *
 * Records are appended with pwrite() at `size`; the async client syncs
 * them with one fdatasync() per loop turn, before their callbacks say
 * "journaled" (group commit: one sync however many records a tick wrote).
 * They are replayed from `read` in order and the file is truncated back to
 * its header when the last one is done. Nothing is ever rewritten in
 * place, so a crash leaves at most one torn record, at the end: open drops
 * it with a warning. Damage anywhere else is set aside: the file is renamed
 * PATH.corrupt-TIME and the intact records before the damage are copied
 * into a fresh journal, so they are still replayed and nothing is
 * silently discarded. */

#define JNL_MAGIC      "NIRCJNL\n"
#define JNL_VERSION    1u
#define JNL_HDR        16u /* magic, version, CRC */
#define JNL_REC_HDR    8u  /* len, CRC */
#define JNL_NULL_PARAM 0xffffffffu
/* The smallest payload: at_ms, key length, parameter count, sql length. */
#define JNL_PAYLOAD_MIN (8u + 2u + 2u + 4u)
/* "<16 hex digits>-<sequence>", with room to spare. */
#define DB_KEY_MAX 48

typedef struct {
  char *path; /* owned */
  int fd;     /* -1: no journal */
  uint64_t max;
  uint64_t size;    /* end of the last complete record */
  uint64_t read;    /* offset of the next record to replay */
  uint64_t records; /* records in [read, size) */
  int dirty;        /* appended since the last fdatasync */
  int broken;       /* a failed append could not be undone: no more appends */
  int last_errno;   /* of the last failed append, for messages */
  uint64_t torn, corrupt;
} journal_t;

typedef enum {
  JREC_OK = 0, /* a complete record with a good CRC */
  JREC_END,    /* no record at this offset: the end of the file */
  JREC_TORN,   /* an incomplete or unverifiable last record */
  JREC_BAD,    /* damage with more data after it, or unreadable */
} jrec_status_t;

/* CRC-32C (Castagnoli), bytewise with a table. Chaining works:
 * crc32c(crc32c(0, a), b) is the CRC of a followed by b. */
static uint32_t crc32c(uint32_t crc, const void *buf, size_t len) {
  static uint32_t table[256];
  if (!table[1]) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
  }
  const unsigned char *p = buf;
  crc = ~crc;
  while (len--)
    crc = table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get16(const unsigned char *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get64(const unsigned char *p) {
  return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* Writes all of buf at off. Returns 0 or -errno. */
static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

/* Reads up to len bytes at off. Returns the count (short only at the end
 * of the file) or -errno. */
static ssize_t pread_all(int fd, void *buf, size_t len, uint64_t off) {
  char *p = buf;
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The size of the record a once-write takes in the journal, header
 * included. */
static size_t journal_record_size(const char *key, const char *sql, int nparams,
                                  const char *const *params) {
  size_t n = JNL_REC_HDR + JNL_PAYLOAD_MIN + strlen(key) + strlen(sql);
  for (int i = 0; i < nparams; i++)
    n += 4 + (params[i] ? strlen(params[i]) : 0);
  return n;
}

/* Serialises a once-write into buf, which holds journal_record_size()
 * bytes (at most JNL_REC_HDR + DB_JOURNAL_RECORD_MAX, checked by callers,
 * so every length fits its field). */
static void journal_encode(unsigned char *buf, size_t size, const char *key, const char *sql,
                           int nparams, const char *const *params, int64_t at_ms) {
  unsigned char *p = buf + JNL_REC_HDR;
  size_t klen = strlen(key), slen = strlen(sql);
  put64(p, (uint64_t)at_ms);
  p += 8;
  put16(p, (uint16_t)klen);
  p += 2;
  memcpy(p, key, klen);
  p += klen;
  put16(p, (uint16_t)nparams);
  p += 2;
  put32(p, (uint32_t)slen);
  p += 4;
  memcpy(p, sql, slen);
  p += slen;
  for (int i = 0; i < nparams; i++) {
    size_t plen = params[i] ? strlen(params[i]) : 0;
    put32(p, params[i] ? (uint32_t)plen : JNL_NULL_PARAM);
    p += 4;
    if (plen) memcpy(p, params[i], plen);
    p += plen;
  }
  assert((size_t)(p - buf) == size);
  put32(buf, (uint32_t)(size - JNL_REC_HDR));
  put32(buf + 4, crc32c(crc32c(0, buf, 4), buf + JNL_REC_HDR, size - JNL_REC_HDR));
}

/* Advances the payload cursor by n bytes; 0, or -1 when that overruns. */
static int take(const unsigned char **p, const unsigned char *end, size_t n) {
  if ((size_t)(end - *p) < n) return -1;
  *p += n;
  return 0;
}

/* Parses a payload whose CRC matched into a query record (jend unset).
 * Returns NULL with *why set when the payload does not parse, which means
 * a bug or a foreign file rather than a torn write. */
static db_query_t *journal_decode(const unsigned char *pl, size_t len, const char **why) {
  const unsigned char *p = pl, *end = pl + len, *f;
  db_str_t sql, key, params[DB_MAX_PARAMS];
  *why = "malformed record";
  if (len < JNL_PAYLOAD_MIN) return NULL;
  int64_t at_ms = (int64_t)get64(p);
  p += 8;
  key.len = get16(p);
  p += 2;
  key.p = (const char *)p;
  if (key.len == 0 || key.len >= DB_KEY_MAX || take(&p, end, key.len) != 0) return NULL;
  if (take(&p, end, 6) != 0) return NULL;
  f = p - 6;
  int nparams = get16(f);
  sql.len = get32(f + 2);
  sql.p = (const char *)p;
  if (nparams > DB_MAX_PARAMS || sql.len == 0 || take(&p, end, sql.len) != 0) return NULL;
  for (int i = 0; i < nparams; i++) {
    if (take(&p, end, 4) != 0) return NULL;
    uint32_t plen = get32(p - 4);
    if (plen == JNL_NULL_PARAM) {
      params[i] = (db_str_t){NULL, 0};
      continue;
    }
    params[i] = (db_str_t){(const char *)p, plen};
    if (take(&p, end, plen) != 0) return NULL;
    if (memchr(params[i].p, '\0', plen)) return NULL;
  }
  if (p != end || memchr(key.p, '\0', key.len) || memchr(sql.p, '\0', sql.len)) return NULL;
  db_query_t *q = query_new(sql, nparams, params, key);
  if (!q) {
    *why = "out of memory";
    return NULL;
  }
  q->at_ms = at_ms;
  return q;
}

/* Reads the record at off in a file of fsize bytes. On JREC_OK *out is the
 * parsed record (caller frees) and *next the offset after it. */
static jrec_status_t journal_read_at(int fd, uint64_t off, uint64_t fsize, db_query_t **out,
                                     uint64_t *next, const char **why) {
  *out = NULL;
  if (off >= fsize) return JREC_END;
  if (fsize - off < JNL_REC_HDR) {
    *why = "incomplete record header";
    return JREC_TORN;
  }
  unsigned char h[JNL_REC_HDR];
  if (pread_all(fd, h, sizeof h, off) != (ssize_t)sizeof h) {
    *why = "read error";
    return JREC_BAD;
  }
  uint32_t len = get32(h);
  if (len < JNL_PAYLOAD_MIN || len > DB_JOURNAL_RECORD_MAX) {
    /* A length that cannot be is torn only if nothing follows but zeros
     * (a file extended by a crash before its data reached the disk). */
    *why = "impossible record length";
    unsigned char z[4096];
    for (uint64_t at = off; at < fsize;) {
      ssize_t n = pread_all(fd, z, sizeof z, at);
      if (n <= 0) return JREC_BAD;
      for (ssize_t i = 0; i < n; i++)
        if (z[i]) return JREC_BAD;
      at += (uint64_t)n;
    }
    return JREC_TORN;
  }
  if (off + JNL_REC_HDR + len > fsize) {
    *why = "incomplete record";
    return JREC_TORN;
  }
  unsigned char *pl = malloc(len);
  if (!pl) {
    *why = "out of memory";
    return JREC_BAD;
  }
  if (pread_all(fd, pl, len, off + JNL_REC_HDR) != (ssize_t)len) {
    free(pl);
    *why = "read error";
    return JREC_BAD;
  }
  int last = off + JNL_REC_HDR + len == fsize;
  if (crc32c(crc32c(0, h, 4), pl, len) != get32(h + 4)) {
    free(pl);
    *why = "CRC mismatch";
    return last ? JREC_TORN : JREC_BAD;
  }
  *out = journal_decode(pl, len, why);
  free(pl);
  if (!*out) return JREC_BAD;
  *next = off + JNL_REC_HDR + len;
  (*out)->jend = *next;
  return JREC_OK;
}

/* fsyncs the directory holding path, so that a created or renamed file
 * keeps its name after a crash. Best effort: some file systems refuse. */
static void journal_sync_dir(const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, sizeof dir, ".");
  } else if (slash == path) {
    snprintf(dir, sizeof dir, "/");
  } else {
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

/* Makes fd an empty journal: just the header, synced. 0 or -errno. */
static int journal_write_header(int fd) {
  unsigned char h[JNL_HDR];
  memcpy(h, JNL_MAGIC, 8);
  put32(h + 8, JNL_VERSION);
  put32(h + 12, crc32c(0, h, 12));
  if (ftruncate(fd, 0) != 0) return -errno;
  int rc = pwrite_all(fd, h, sizeof h, 0);
  if (rc == 0 && fdatasync(fd) != 0) rc = -errno;
  return rc;
}

static void journal_init(journal_t *j) {
  memset(j, 0, sizeof *j);
  j->fd = -1;
}

static void journal_close(journal_t *j) {
  if (j->fd >= 0) close(j->fd); /* releases the lock */
  free(j->path);
  journal_init(j);
}

/* Opens path for a journal and takes its lock. 0 or NIRC_EIO with err. */
static int journal_open_fd(const char *path, int flags, int *out, char *err, size_t errlen) {
  int fd = open(path, O_RDWR | O_CLOEXEC | flags, 0600);
  if (fd < 0) {
    set_err(err, errlen,
            "cannot open the database journal %s: %s: create its directory (writable by nircd) "
            "or set [database] journal",
            path, strerror(errno));
    return NIRC_EIO;
  }
  /* Two processes appending to one file would interleave records. */
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    set_err(err, errlen,
            e == EWOULDBLOCK
                ? "the database journal %s is in use by another process: give every nircd its "
                  "own [database] journal"
                : "cannot lock the database journal %s: %s",
            path, strerror(e));
    return NIRC_EIO;
  }
  *out = fd;
  return 0;
}

/* Renames the journal aside as PATH.corrupt-TIME and starts a fresh one
 * holding a copy of the records in [from, to) of the old file, which the
 * caller knows to be intact. On success j describes the fresh file (its
 * record count is the caller's to set). */
static int journal_set_aside(journal_t *j, uint64_t from, uint64_t to, const char *why, char *aside,
                             size_t asidelen, char *err, size_t errlen) {
  snprintf(aside, asidelen, "%s.corrupt-%lld", j->path, (long long)time(NULL));
  for (int i = 1; i < 100 && access(aside, F_OK) == 0; i++)
    snprintf(aside, asidelen, "%s.corrupt-%lld.%d", j->path, (long long)time(NULL), i);
  if (rename(j->path, aside) != 0) {
    set_err(err, errlen, "the database journal %s is damaged (%s) and cannot be moved aside: %s",
            j->path, why, strerror(errno));
    return NIRC_EIO;
  }
  int nfd = -1;
  int rc = journal_open_fd(j->path, O_CREAT | O_EXCL, &nfd, err, errlen);
  if (rc == 0 && (rc = journal_write_header(nfd)) != 0) {
    set_err(err, errlen, "cannot write the database journal %s: %s", j->path, strerror(-rc));
    rc = NIRC_EIO;
  }
  unsigned char buf[65536];
  for (uint64_t at = from; rc == 0 && at < to;) {
    size_t want = to - at < sizeof buf ? (size_t)(to - at) : sizeof buf;
    ssize_t n = pread_all(j->fd, buf, want, at);
    int w = n == (ssize_t)want ? pwrite_all(nfd, buf, want, JNL_HDR + (at - from)) : -EIO;
    if (w != 0) {
      set_err(err, errlen, "copying the intact records of %s into a fresh journal: %s", aside,
              strerror(-w));
      rc = NIRC_EIO;
    }
    at += want;
  }
  if (rc == 0 && fdatasync(nfd) != 0) {
    set_err(err, errlen, "cannot sync the database journal %s: %s", j->path, strerror(errno));
    rc = NIRC_EIO;
  }
  if (rc != 0) {
    if (nfd >= 0) close(nfd);
    return rc;
  }
  journal_sync_dir(j->path);
  close(j->fd);
  j->fd = nfd;
  j->size = JNL_HDR + (to - from);
  j->read = JNL_HDR;
  j->dirty = 0;
  j->broken = 0;
  j->corrupt++;
  return 0;
}

/* Opens (or creates) the journal at path, checks every record, drops a
 * torn last one and sets a damaged file aside. Returns 0 or NIRC_EIO /
 * NIRC_ENOMEM with err naming the file and the fix. */
static int journal_open(journal_t *j, const char *path, uint64_t max, char *err, size_t errlen) {
  journal_init(j);
  j->max = max;
  j->path = strdup(path);
  if (!j->path) {
    set_err(err, errlen, "out of memory");
    return NIRC_ENOMEM;
  }
  struct stat st;
  int rc = journal_open_fd(path, O_CREAT, &j->fd, err, errlen);
  if (rc == 0 && fstat(j->fd, &st) != 0) {
    set_err(err, errlen, "cannot stat the database journal %s: %s", path, strerror(errno));
    rc = NIRC_EIO;
  }
  if (rc != 0) {
    journal_close(j);
    return rc;
  }
  uint64_t fsize = (uint64_t)st.st_size;
  unsigned char h[JNL_HDR];
  int fresh = fsize < JNL_HDR;
  if (fresh && fsize > 0) {
    log_warn(LOG_DB, DB_OBJ,
             "database journal %s: %llu bytes, shorter than its header (nircd stopped while "
             "creating it); started afresh",
             path, (unsigned long long)fsize);
  }
  if (!fresh) {
    const char *why = NULL;
    if (pread_all(j->fd, h, sizeof h, 0) != (ssize_t)sizeof h) {
      why = "unreadable header";
    } else if (memcmp(h, JNL_MAGIC, 8) != 0 || get32(h + 12) != crc32c(0, h, 12)) {
      why = "not a NIRC journal";
    } else if (get32(h + 8) != JNL_VERSION) {
      why = "journal format of another nircd version";
    }
    if (why) {
      char aside[PATH_MAX + 64];
      rc = journal_set_aside(j, JNL_HDR, JNL_HDR, why, aside, sizeof aside, err, errlen);
      if (rc != 0) {
        journal_close(j);
        return rc;
      }
      log_error(LOG_DB, DB_OBJ,
                "database journal %s: %s; moved to %s for inspection and started afresh", path, why,
                aside);
      return 0;
    }
  } else {
    rc = journal_write_header(j->fd);
    if (rc != 0) {
      set_err(err, errlen, "cannot write the database journal %s: %s", path, strerror(-rc));
      journal_close(j);
      return NIRC_EIO;
    }
    journal_sync_dir(path);
    j->size = j->read = JNL_HDR;
    return 0;
  }

  /* Check every record now, so damage is found (and the good records
   * saved) before any of them is replayed. */
  uint64_t off = JNL_HDR, count = 0;
  int64_t oldest = 0;
  for (;;) {
    db_query_t *q = NULL;
    const char *why = NULL;
    uint64_t next = 0;
    jrec_status_t rs = journal_read_at(j->fd, off, fsize, &q, &next, &why);
    if (rs == JREC_OK) {
      off = next;
      count++;
      if (count == 1) oldest = q->at_ms;
      free(q);
      continue;
    }
    if (rs == JREC_TORN) {
      log_warn(LOG_DB, DB_OBJ,
               "database journal %s: dropped a torn last record at offset %llu (%s, %llu bytes): "
               "nircd stopped while writing it, so it was never confirmed",
               path, (unsigned long long)off, why, (unsigned long long)(fsize - off));
      if (ftruncate(j->fd, (off_t)off) != 0 || fdatasync(j->fd) != 0) {
        set_err(err, errlen, "cannot truncate the database journal %s: %s", path, strerror(errno));
        journal_close(j);
        return NIRC_EIO;
      }
      j->torn++;
    } else if (rs == JREC_BAD) {
      char aside[PATH_MAX + 64];
      rc = journal_set_aside(j, JNL_HDR, off, why, aside, sizeof aside, err, errlen);
      if (rc != 0) {
        journal_close(j);
        return rc;
      }
      log_error(LOG_DB, DB_OBJ,
                "database journal %s is damaged at offset %llu (%s): moved to %s; the %llu intact "
                "records before the damage are kept and replayed, what follows it is not",
                path, (unsigned long long)off, why, aside, (unsigned long long)count);
    }
    break;
  }
  j->size = off;
  j->read = JNL_HDR;
  j->records = count;
  if (count) {
    log_info(LOG_DB, DB_OBJ,
             "database journal %s holds %llu writes (%llu bytes) from an earlier run; they are "
             "replayed first",
             path, (unsigned long long)count, (unsigned long long)(off - JNL_HDR));
    /* Keys live DB_KEY_RETENTION; a record this old that was applied once
     * already (a crash between applying it and emptying the journal) can
     * no longer be recognised. Rare enough to replay anyway, but said. */
    if (wall_ms() - oldest > DB_KEY_RETENTION_MS) {
      log_warn(LOG_DB, DB_OBJ,
               "database journal %s: its oldest write is %.1f days old, older than the %s its key "
               "is remembered: a write applied before the journal was emptied would be applied "
               "again",
               path, (double)(wall_ms() - oldest) / 86400000.0, DB_KEY_RETENTION);
    }
  }
  return 0;
}

/* Appends one once-write. Returns 0, NIRC_EFULL (the file would pass its
 * maximum), NIRC_ERANGE (too large for any journal) or NIRC_EIO (nothing
 * was added: a partial write is cut off again). */
static int journal_append(journal_t *j, const char *key, const char *sql, int nparams,
                          const char *const *params, int64_t at_ms) {
  if (j->fd < 0 || j->broken) return NIRC_EIO;
  size_t n = journal_record_size(key, sql, nparams, params);
  if (n > JNL_REC_HDR + DB_JOURNAL_RECORD_MAX) return NIRC_ERANGE;
  if (j->size + n > j->max) return NIRC_EFULL;
  unsigned char *buf = malloc(n);
  if (!buf) return NIRC_ENOMEM;
  journal_encode(buf, n, key, sql, nparams, params, at_ms);
  int rc = pwrite_all(j->fd, buf, n, j->size);
  free(buf);
  if (rc != 0) {
    j->last_errno = -rc;
    /* A partial record followed by good ones would read as damage in the
     * middle: cut it off, or stop appending altogether. */
    if (ftruncate(j->fd, (off_t)j->size) != 0) {
      j->broken = 1;
      log_error(LOG_DB, DB_OBJ,
                "database journal %s: a failed write could not be undone (%s); no more writes "
                "are journaled",
                j->path, strerror(errno));
    }
    return NIRC_EIO;
  }
  j->size += n;
  j->records++;
  j->dirty = 1;
  return 0;
}

/* fdatasync after appends. 0 or -errno. */
static int journal_sync(journal_t *j) {
  if (j->fd < 0 || !j->dirty) return 0;
  if (fdatasync(j->fd) != 0) return -errno;
  j->dirty = 0;
  return 0;
}

/* The next record to replay. 0 and *out (caller frees), or NIRC_EIO with
 * *why when it cannot be read back. */
static int journal_next(journal_t *j, db_query_t **out, const char **why) {
  uint64_t next = 0;
  jrec_status_t rs = journal_read_at(j->fd, j->read, j->size, out, &next, why);
  return rs == JREC_OK ? 0 : NIRC_EIO;
}

/* The record ending at jend is done (applied, found applied, or refused for
 * good). When it was the last, the file is cut back to its header; returns
 * 1 then, else 0. */
static int journal_advance(journal_t *j, uint64_t jend) {
  assert(j->records > 0 && jend > j->read && jend <= j->size);
  j->read = jend;
  if (--j->records > 0) return 0;
  /* If the truncation fails the replayed records stay in the file; the
   * next start replays them again and their keys make that harmless. */
  if (ftruncate(j->fd, JNL_HDR) != 0 || fdatasync(j->fd) != 0) {
    log_warn(LOG_DB, DB_OBJ, "cannot truncate the database journal %s: %s", j->path,
             strerror(errno));
    return 1;
  }
  j->size = j->read = JNL_HDR;
  j->dirty = 0;
  return 1;
}

/* ------------------------------------------------------------------ */
/* Asynchronous client                                                 */
/* ------------------------------------------------------------------ */

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
  size_t mem_once; /* once-writes among the queued (not in flight) */
  db_query_t *inflight;
  PGresult *first; /* first result of the in-flight query */
  int flushing;    /* PQflush has not yet sent all of the in-flight query */

  /* Once-writes and the journal. jtimer is a zero-delay kick that syncs
   * the journal and then runs the callbacks of the writes on jdone. */
  journal_t jnl;
  uv_timer_t jtimer;
  db_query_t *jdone_head, *jdone_tail;
  uint64_t boot_id; /* random per client, so keys of different runs differ */
  uint64_t key_seq;
  uint64_t next_prune;       /* uv_now() when old keys are pruned next */
  uint64_t last_refused_log; /* uv_now() of the last "journal full" error */
  uint64_t refused_unlogged; /* refusals since that error */
  db_journal_stats_t st;     /* the counters; depth is read from jnl */
  uint64_t replay_applied, replay_dups, replay_failed; /* this drain, for its summary */

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

void db_journal_stats(const db_t *db, db_journal_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!db) return;
  *out = db->st;
  if (db->jnl.fd >= 0) {
    out->records = db->jnl.records;
    out->bytes = db->jnl.size - db->jnl.read;
  }
  out->torn_total = db->jnl.torn;
  out->corrupt_total = db->jnl.corrupt;
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

/* ---- once-writes ---- */

/* What a once-write's result means. */
typedef enum {
  ONCE_APPLIED = 0, /* committed now */
  ONCE_DUPLICATE,   /* its key was there: applied before, nothing done now */
  ONCE_FAILED,      /* refused by the database for good: not retried */
  ONCE_RETRY,       /* outcome unknown or a passing condition: send it again */
} db_once_outcome_t;

/* Classifies a once-write's first result (NULL: none arrived). SQLSTATE
 * classes that mean "not now" rather than "never" are retried: connection
 * exceptions (08), transaction rollbacks such as deadlocks (40), lack of
 * resources such as a full disk (53), operator intervention such as a
 * shutdown or a cancel (57), system errors (58), and a read-only server
 * (25006, a standby reached during a failover). An error libpq made up
 * itself has no SQLSTATE: the connection failed. */
static db_once_outcome_t db_once_outcome(const PGresult *res) {
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

static void db_on_jtimer(uv_timer_t *t);

/* A once-write now sits in the journal: its callback runs after the next
 * fdatasync, on the next turn of the loop, never inside the call that
 * journaled it. */
static void db_journaled(db_t *db, db_query_t *q) {
  db->st.journaled_total++;
  q->next = NULL;
  if (db->jdone_tail) {
    db->jdone_tail->next = q;
  } else {
    db->jdone_head = q;
  }
  db->jdone_tail = q;
  if (!db->closing && !uv_is_active((uv_handle_t *)&db->jtimer)) {
    uv_timer_start(&db->jtimer, db_on_jtimer, 0, 0);
  }
}

/* Syncs the journal once for everything appended since the last sync, then
 * tells the writers. A callback may close the client; db_close then runs
 * the rest of the list itself. */
static void db_journal_flush(db_t *db) {
  if (!db->jdone_head && !db->jnl.dirty) return;
  int rc = journal_sync(&db->jnl);
  char m[DB_MSG_MAX] = "journaled";
  if (rc < 0) {
    snprintf(m, sizeof m,
             "cannot sync the database journal %s (%s): the write is in it but a crash of the "
             "machine may lose it",
             db->jnl.path, strerror(-rc));
    log_error(LOG_DB, DB_OBJ, "%s", m);
  }
  db_query_t *q;
  while ((q = db->jdone_head) != NULL) {
    db->jdone_head = q->next;
    if (!db->jdone_head) db->jdone_tail = NULL;
    db_complete(q, rc < 0 ? NIRC_EIO : 0, m, NULL);
  }
}

static void db_on_jtimer(uv_timer_t *t) {
  db_t *db = t->data;
  if (db->closing) return;
  db_journal_flush(db);
}

/* Counts and logs a once-write the journal refused. The log is an error
 * that names the fix, repeated at most every DB_OUTAGE_WARN_MS. */
static void db_refused(db_t *db, int rc) {
  db->st.refused_total++;
  uint64_t now = uv_now(db->loop);
  if (db->last_refused_log && now - db->last_refused_log < DB_OUTAGE_WARN_MS) {
    db->refused_unlogged++;
    return;
  }
  unsigned long long more = (unsigned long long)db->refused_unlogged;
  db->last_refused_log = now;
  db->refused_unlogged = 0;
  if (rc == NIRC_EFULL) {
    log_error(LOG_DB, DB_OBJ,
              "database journal %s is full (%llu of %llu bytes, %llu writes waiting): write "
              "refused (%llu more since the last report). Fix: bring the database at %s back, or "
              "raise [database] journal_max",
              db->jnl.path, (unsigned long long)db->jnl.size, (unsigned long long)db->jnl.max,
              (unsigned long long)db->jnl.records, more, db->target);
  } else {
    log_error(LOG_DB, DB_OBJ,
              "cannot write the database journal %s (%s): write refused (%llu more since the "
              "last report). Fix: free space on its file system or check the disk",
              db->jnl.path,
              db->jnl.broken || !db->jnl.last_errno ? nirc_strerror(rc)
                                                    : strerror(db->jnl.last_errno),
              more);
  }
}

/* While the database is unreachable, and until the journal has drained
 * (so that nothing overtakes what waits in it), once-writes are journaled. */
static int db_journal_mode(const db_t *db) {
  if (db->jnl.fd < 0) return 0;
  return db->jnl.records > 0 || (db->state != DB_READY && db->state != DB_BUSY);
}

static void db_push_front(db_t *db, db_query_t *q) {
  q->next = db->head;
  db->head = q;
  if (!db->tail) db->tail = q;
  db->depth++;
  if (q->key) db->mem_once++;
}

/* The connection is gone, or the client closes: the once-write that was in
 * flight (`inflight`, already unlinked, or NULL) and the queued ones move
 * to the journal in order, so they survive a restart and keep their place
 * before newer writes. Whatever the journal cannot take stays in memory,
 * in front. */
static void db_spill(db_t *db, db_query_t *inflight) {
  int rc = 0;
  size_t moved = 0;
  if (inflight) {
    rc = db->jnl.fd >= 0 ? journal_append(&db->jnl, inflight->key, inflight->sql, inflight->nparams,
                                          inflight->params, inflight->at_ms)
                         : NIRC_EIO;
    if (rc == 0) {
      db_journaled(db, inflight);
      moved++;
    } else {
      db_push_front(db, inflight);
    }
  }
  db_query_t *prev = NULL;
  for (db_query_t *q = db->head; rc == 0 && q && db->mem_once > 0;) {
    db_query_t *next = q->next;
    if (!q->key) {
      prev = q;
      q = next;
      continue;
    }
    rc = journal_append(&db->jnl, q->key, q->sql, q->nparams, q->params, q->at_ms);
    if (rc != 0) break;
    if (prev) {
      prev->next = next;
    } else {
      db->head = next;
    }
    if (db->tail == q) db->tail = prev;
    db->depth--;
    db->mem_once--;
    db_journaled(db, q);
    moved++;
    q = next;
  }
  if (moved) {
    log_info(LOG_DB, DB_OBJ, "%zu pending write%s moved to the journal %s", moved,
             moved == 1 ? "" : "s", db->jnl.path);
  }
  if (rc != 0 && db->jnl.fd >= 0) {
    /* Not refused (the writer was already told it was queued), but at risk:
     * said as loudly as a refusal. They run after the journal, so they no
     * longer keep their place before what was journaled later. */
    log_error(LOG_DB, DB_OBJ,
              "database journal %s cannot take more (%s): %zu write%s kept in memory only, lost "
              "if nircd stops before the database returns. Fix: bring the database at %s back, "
              "raise [database] journal_max, or free space on its file system",
              db->jnl.path, rc == NIRC_EFULL ? "full" : nirc_strerror(rc), db->mem_once,
              db->mem_once == 1 ? "" : "s", db->target);
  }
}

/* The records of one drain of the journal are summed up when it empties. */
static void db_journal_done_one(db_t *db, uint64_t jend) {
  if (!journal_advance(&db->jnl, jend)) return;
  log_info(LOG_DB, DB_OBJ,
           "database journal %s replayed: %llu applied, %llu already applied, %llu refused by the "
           "database",
           db->jnl.path, (unsigned long long)db->replay_applied,
           (unsigned long long)db->replay_dups, (unsigned long long)db->replay_failed);
  db->replay_applied = db->replay_dups = db->replay_failed = 0;
}

/* A once-write is settled (not ONCE_RETRY): count it, move the journal on
 * if it came from there, run the callback, free it. */
static void db_once_done(db_t *db, db_query_t *q, db_once_outcome_t o, PGresult *res,
                         const char *msg) {
  uint64_t jend = q->jend;
  int err = 0;
  switch (o) {
  case ONCE_APPLIED:
    msg = "";
    if (jend) {
      db->st.replayed_total++;
      db->replay_applied++;
    }
    break;
  case ONCE_DUPLICATE:
    db->st.duplicates_total++;
    if (jend) db->replay_dups++;
    log_info(LOG_DB, DB_OBJ, "write %s was already applied; skipped", q->key);
    msg = "already applied";
    res = NULL;
    break;
  default:
    db->st.failed_total++;
    err = NIRC_EDB;
    if (jend) {
      db->replay_failed++;
      log_error(LOG_DB, DB_OBJ,
                "journaled write %s refused by the database and dropped: %s (%.120s)", q->key, msg,
                q->sql);
    }
    break;
  }
  if (jend) db_journal_done_one(db, jend);
  db_complete(q, err, msg, res);
}

/* The connection, or the attempt to make one, failed. Queued queries stay
 * queued for the next connection; the in-flight one is not retried because
 * it may have committed, so it completes with NIRC_EDB. A once-write is
 * the exception: its key makes sending it again safe, so it goes back to
 * the journal (or the front of the queue) unless the server refused it. */
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

  /* An error the server sent before the connection died (it carries a
   * SQLSTATE; errors libpq makes up locally do not) is the real outcome:
   * the statement failed. Otherwise nobody knows whether it committed. */
  int server_error =
      res && PQresultStatus(res) == PGRES_FATAL_ERROR && PQresultErrorField(res, PG_DIAG_SQLSTATE);
  char rm[DB_MSG_MAX] = "";
  if (server_error) msg_trim(PQresultErrorMessage(res), 0, rm, sizeof rm);
  db_once_outcome_t o = ONCE_RETRY;
  db_query_t *resend = NULL;
  if (q && q->key) {
    /* A success without the end of the exchange is not proof of a commit:
     * only a refusal or a duplicate settles a once-write here. */
    o = db_once_outcome(res);
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
  if (db->jnl.fd >= 0 && (resend || db->mem_once > 0)) {
    db_spill(db, resend);
  } else if (resend) {
    db_push_front(db, resend);
  }

  if (q && q->key) {
    db_once_done(db, q, o, res, rm);
  } else if (q) {
    if (server_error) {
      db_complete(q, NIRC_EDB, rm, res);
    } else {
      db_complete(q, NIRC_EDB, "connection lost during query; outcome unknown", NULL);
    }
  }
  if (res) PQclear(res);
}

/* READY: send q (taken off the queue or read from the journal). */
static void db_send(db_t *db, db_query_t *q) {
  q->next = NULL;
  db->inflight = q;
  db_set_state(db, DB_BUSY);

  int sent;
  if (q->key) {
    char *sql = db_once_sql(q->sql, q->nparams);
    sent = sql && PQsendQueryParams(db->conn, sql, q->nparams + 1, NULL, q->params, NULL, NULL, 0);
    free(sql);
  } else {
    sent = PQsendQueryParams(db->conn, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
  }
  if (!sent) {
    char m[DB_MSG_MAX];
    msg_trim(PQerrorMessage(db->conn), 0, m, sizeof m);
    if (!m[0]) snprintf(m, sizeof m, "out of memory");
    if (PQstatus(db->conn) == CONNECTION_OK && !q->key) {
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
    /* A once-write is never given up for a local failure: it is retried
     * on a new connection after the backoff. */
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

/* READY and something is queued: send the oldest query. */
static void db_send_next(db_t *db) {
  db_query_t *q = db->head;
  db->head = q->next;
  if (!db->head) db->tail = NULL;
  db->depth--;
  if (q->key) db->mem_once--;
  db_send(db, q);
}

/* READY and the journal holds records: send the oldest. A record that
 * cannot be read back means the file was damaged under us; it is set aside
 * (logged) and 0 returned so the memory queue runs. */
static int db_send_journaled(db_t *db) {
  db_query_t *q = NULL;
  const char *why = "?";
  if (journal_next(&db->jnl, &q, &why) == 0) {
    db_send(db, q);
    return 1;
  }
  char aside[PATH_MAX + 64], err[DB_MSG_MAX];
  unsigned long long lost = (unsigned long long)db->jnl.records;
  uint64_t at = db->jnl.read;
  db->jnl.records = 0;
  if (journal_set_aside(&db->jnl, at, at, why, aside, sizeof aside, err, sizeof err) != 0) {
    log_error(LOG_DB, DB_OBJ, "%s; %llu journaled writes lost, no more writes are journaled", err,
              lost);
    close(db->jnl.fd);
    db->jnl.fd = -1;
    db->jnl.corrupt++;
    return 0;
  }
  log_error(LOG_DB, DB_OBJ,
            "database journal %s is damaged at offset %llu (%s): moved to %s with the %llu writes "
            "it still held, which are not replayed",
            db->jnl.path, (unsigned long long)at, why, aside, lost);
  return 0;
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
  if (db->jnl.fd >= 0 && db->jnl.records > 0 && db_send_journaled(db)) return;
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
  if (q->key) {
    db_once_outcome_t o = db_once_outcome(res);
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
    db_once_done(db, q, o, res, msg);
  } else {
    db->inflight = NULL;
    db->first = NULL;
    db_set_state(db, DB_READY);
    db_complete(q, err, msg, res);
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
             db->target, secs, db->failures + 1, db->failures ? "s" : "", db->depth,
             db->depth == 1 ? "y" : "ies", (unsigned long long)db->jnl.records,
             db->jnl.records == 1 ? "" : "s");
  } else {
    log_info(LOG_DB, DB_OBJ, "connected to %s (server %d, backend pid %d)", db->target,
             PQserverVersion(db->conn), PQbackendPID(db->conn));
    if (db->jnl.records) {
      log_info(LOG_DB, DB_OBJ, "replaying %llu journaled write%s from %s first",
               (unsigned long long)db->jnl.records, db->jnl.records == 1 ? "" : "s", db->jnl.path);
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
  return db_open_opts(loop, conninfo, NULL, out);
}

/* A random identity for this client's keys. getrandom() does not block
 * with GRND_NONBLOCK; in the rare case it has nothing yet (early boot), the
 * clock, the pid and an address still make a collision implausible. */
static uint64_t db_boot_id(const db_t *db) {
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id && id) return id;
  return uv_hrtime() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)wall_ms() ^
         ((uint64_t)(uintptr_t)db << 8);
}

int db_open_opts(uv_loop_t *loop, const char *conninfo, const db_opts_t *opts, db_t **out) {
  if (!out) return NIRC_EINVAL;
  *out = NULL;
  if (!loop || !conninfo) return NIRC_EINVAL;
  db_t *db = calloc(1, sizeof *db);
  if (!db) return NIRC_ENOMEM;
  char err[DB_MSG_MAX + PATH_MAX];
  journal_init(&db->jnl);
  int rc = params_from_conninfo(conninfo, &db->params, err, sizeof err);
  if (rc != 0) {
    log_error(LOG_DB, DB_OBJ, "%s", err);
    free(db);
    return rc;
  }
  if (opts && opts->journal && *opts->journal) {
    uint64_t max = opts->journal_max ? opts->journal_max : DB_JOURNAL_MAX_DEFAULT;
    rc = journal_open(&db->jnl, opts->journal, max, err, sizeof err);
    if (rc != 0) {
      log_error(LOG_DB, DB_OBJ, "%s", err);
      params_free(&db->params);
      free(db);
      return rc;
    }
  }
  params_describe(&db->params, db->target, sizeof db->target);
  db->connect_timeout_ms = params_connect_timeout_ms(&db->params);
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
    journal_close(&db->jnl);
    params_free(&db->params);
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
static void db_enqueue(db_t *db, db_query_t *q) {
  if (db->tail) {
    db->tail->next = q;
  } else {
    db->head = q;
  }
  db->tail = q;
  db->depth++;
  if (q->key) db->mem_once++;
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
  if (db->depth >= DB_QUEUE_MAX) return NIRC_EFULL;
  db_str_t p[DB_MAX_PARAMS];
  for (int i = 0; i < nparams; i++)
    p[i] = str_of(params[i]);
  db_query_t *q = query_new(str_of(sql), nparams, p, (db_str_t){NULL, 0});
  if (!q) return NIRC_ENOMEM;
  q->cb = cb;
  q->arg = arg;
  db_enqueue(db, q);
  return 0;
}

int db_exec_once(db_t *db, const char *sql, int nparams, const char *const *params, db_result_cb cb,
                 void *arg) {
  if (!db || !db_args_ok(sql, nparams, params) || !*sql) return NIRC_EINVAL;
  if (db->closing) return NIRC_ECLOSED;
  char key[DB_KEY_MAX];
  snprintf(key, sizeof key, "%016llx-%llu", (unsigned long long)db->boot_id,
           (unsigned long long)(db->key_seq + 1));
  /* Every once-write must fit a journal record, even one that runs from
   * memory: it may have to be journaled when the connection breaks. */
  if (journal_record_size(key, sql, nparams, params) > JNL_REC_HDR + DB_JOURNAL_RECORD_MAX) {
    return NIRC_ERANGE;
  }
  int64_t at = wall_ms();
  if (db_journal_mode(db)) {
    /* The record on disk is the write; q only carries the callback. */
    db_query_t *q = calloc(1, sizeof *q);
    if (!q) return NIRC_ENOMEM;
    int rc = journal_append(&db->jnl, key, sql, nparams, params, at);
    if (rc != 0) {
      free(q);
      if (rc != NIRC_ENOMEM) db_refused(db, rc);
      return rc;
    }
    db->key_seq++;
    q->cb = cb;
    q->arg = arg;
    db_journaled(db, q);
    return 0;
  }
  if (db->depth >= DB_QUEUE_MAX) return NIRC_EFULL;
  db_str_t p[DB_MAX_PARAMS];
  for (int i = 0; i < nparams; i++)
    p[i] = str_of(params[i]);
  db_query_t *q = query_new(str_of(sql), nparams, p, str_of(key));
  if (!q) return NIRC_ENOMEM;
  db->key_seq++;
  q->cb = cb;
  q->arg = arg;
  q->at_ms = at;
  db_enqueue(db, q);
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
  db_query_t *q = db->inflight;
  db->inflight = NULL;
  db_query_t *once = NULL;
  if (q && q->jend) {
    free(q);
    q = NULL;
  } else if (q && q->key) {
    once = q;
    q = NULL;
  }
  if (db->jnl.fd >= 0 && (once || db->mem_once)) {
    db_spill(db, once);
  } else if (once) {
    db_push_front(db, once);
  }
  if (q) {
    db_complete(q, NIRC_ECLOSED,
                "database client closed while the query was in flight; outcome unknown", NULL);
  }
  db_journal_flush(db);
  size_t n = db->depth;
  while ((q = db->head) != NULL) {
    db->head = q->next;
    if (!db->head) db->tail = NULL;
    db->depth--;
    db_complete(q, NIRC_ECLOSED,
                q->key ? "database client closed before the write was applied or journaled"
                       : "database client closed",
                NULL);
  }
  db->mem_once = 0;
  if (n) log_info(LOG_DB, DB_OBJ, "closed with %zu queued quer%s", n, n == 1 ? "y" : "ies");
  if (db->jnl.records) {
    log_info(LOG_DB, DB_OBJ, "%llu write%s stay in the journal %s for the next start",
             (unsigned long long)db->jnl.records, db->jnl.records == 1 ? "" : "s", db->jnl.path);
  }
  journal_close(&db->jnl);
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

int db_admin_replay_journal(const char *conninfo, const char *path, char *err, size_t errlen) {
  if (!path || !*path) return 0;
  journal_t j;
  int rc = journal_open(&j, path, UINT64_MAX, err, errlen);
  if (rc != 0) return rc;
  if (j.records == 0) {
    journal_close(&j);
    return 0;
  }
  PGconn *c = admin_connect(conninfo, err, errlen);
  if (!c) {
    journal_close(&j);
    return NIRC_EDB;
  }
  unsigned long long total = (unsigned long long)j.records, applied = 0, dups = 0, failed = 0;
  log_info(LOG_DB, DB_OBJ, "replaying %llu journaled write%s from %s", total, total == 1 ? "" : "s",
           path);
  while (rc == 0 && j.records > 0) {
    db_query_t *q = NULL;
    const char *why = "?";
    if (journal_next(&j, &q, &why) != 0) {
      char aside[PATH_MAX + 64];
      uint64_t at = j.read;
      unsigned long long lost = (unsigned long long)j.records;
      j.records = 0;
      rc = journal_set_aside(&j, at, at, why, aside, sizeof aside, err, errlen);
      if (rc == 0) {
        log_error(LOG_DB, DB_OBJ,
                  "database journal %s is damaged at offset %llu (%s): moved to %s with the %llu "
                  "writes it still held, which are not replayed",
                  path, (unsigned long long)at, why, aside, lost);
      }
      break;
    }
    char *sql = db_once_sql(q->sql, q->nparams);
    PGresult *r = sql ? PQexecParams(c, sql, q->nparams + 1, NULL, q->params, NULL, NULL, 0) : NULL;
    free(sql);
    char m[DB_MSG_MAX];
    admin_result_error(r, NULL, m, sizeof m);
    switch (db_once_outcome(r)) {
    case ONCE_APPLIED: applied++; break;
    case ONCE_DUPLICATE: dups++; break;
    case ONCE_FAILED:
      failed++;
      log_error(LOG_DB, DB_OBJ,
                "journaled write %s refused by the database and dropped: %s (%.120s)", q->key, m,
                q->sql);
      break;
    default:
      /* Left in the journal, with whatever was applied before it: the
       * asynchronous client replays the rest, skipping those by key. */
      set_err(err, errlen, "replaying the database journal %s: %s", path, m);
      rc = NIRC_EDB;
      break;
    }
    if (rc == 0) (void)journal_advance(&j, q->jend);
    PQclear(r);
    free(q);
  }
  PQfinish(c);
  log_info(LOG_DB, DB_OBJ,
           "database journal %s: %llu applied, %llu already applied, %llu refused by the database, "
           "%llu left",
           path, applied, dups, failed, (unsigned long long)j.records);
  journal_close(&j);
  return rc;
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
