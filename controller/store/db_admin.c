/* db_admin: the blocking half of the database code (db_admin_* in db.h),
 * for start-up and one-shot commands (nircd migrate, the schema check, the
 * start-up replay of the journal). Each call opens its own blocking libpq
 * connection and closes it before returning; nothing here is ever called
 * once the event loop runs (the running controller uses db.c).
 *
 * The schema version the code expects is DB_SCHEMA_VERSION; migrations
 * live in schema/NNN_name.sql and are applied in order by
 * db_admin_migrate(), each in its own transaction, serialised between
 * concurrent runs by an advisory lock.
 *
 * Modules used: conninfo.c (parameters, messages), journal.c (reading
 * back and emptying the journal), once.c (the statement a journaled write
 * is sent as, and what its result means). The journal is only open, and
 * locked, for the duration of db_admin_replay_journal. */
#include "db.h"

#include "conninfo.h"
#include "journal.h"
#include "once.h"
#include "query.h"

#include "err.h"
#include "log.h"
#include "safetext.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_OBJ "db"

/* Error texts handed to callbacks and logs are cut to this size. */
#define DB_MSG_MAX CONNINFO_MSG_MAX

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

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Opens a blocking connection for the admin commands. An unreachable
 * server gets a message naming where we looked; errors the server itself
 * sent (authentication, missing database) are clear on their own. */
static PGconn *db_admin_connect(const char *conninfo, char *err, size_t errlen) {
  conninfo_t p;
  if (!conninfo) {
    set_err(err, errlen, "no database conninfo given");
    return NULL;
  }
  if (conninfo_parse(conninfo, &p, err, errlen) != 0) return NULL;
  char target[256];
  conninfo_describe(&p, target, sizeof target);
  PGconn *c = PQconnectdbParams((const char *const *)p.kw, (const char *const *)p.val, 0);
  conninfo_free(&p);
  if (!c) {
    set_err(err, errlen, "cannot connect to PostgreSQL at %s: out of memory", target);
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    const char *raw = PQerrorMessage(c);
    char m[DB_MSG_MAX];
    if (strstr(raw, "FATAL:")) {
      conninfo_msg_trim(raw, 0, m, sizeof m);
      set_err(err, errlen, "cannot connect to PostgreSQL at %s: %s", target, m);
    } else {
      conninfo_msg_trim(raw, 1, m, sizeof m);
      set_err(err, errlen, "cannot connect to PostgreSQL at %s: %s: is PostgreSQL running?", target,
              m);
    }
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeReceiver(c, conninfo_notice, NULL);
  return c;
}

/* Formats a failed result as "line 3: ERROR: message (DETAIL: ...)". The
 * line is computed from the error position when `sql` is the text the
 * position refers to, so a broken migration names the line in its file. */
static void admin_result_error(const PGresult *res, const char *sql, char *out, size_t outlen) {
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (!primary) {
    conninfo_msg_trim(res ? PQresultErrorMessage(res) : "out of memory", 0, out, outlen);
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
  /* The primary message quotes the statement's values ("invalid input
   * syntax ...: \"<bytes>\""): escaped like the detail. */
  char d[DB_MSG_MAX] = "", m[DB_MSG_MAX];
  if (detail) conninfo_msg_trim(detail, 0, d, sizeof d);
  conninfo_msg_trim(primary, 0, m, sizeof m);
  snprintf(out, outlen, "%s%s: %s%s%s%s", where, sev ? sev : "ERROR", m, d[0] ? " (DETAIL: " : "",
           d, d[0] ? ")" : "");
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
  PGconn *c = db_admin_connect(conninfo, err, errlen);
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

/* Rule changes of this journal that reached the database after a newer
 * leader took over are not applied (store.c): the operator who made them
 * was told "done" at the time, so the log says it loudly, with where the
 * trail has them. `base`: the audit trail's last id before the replay. */
static void db_admin_say_superseded(PGconn *c, const char *base) {
  if (!base[0]) return;
  const char *p[] = {base};
  PGresult *r = PQexecParams(c,
                             "SELECT count(*), string_agg(target, ', ' ORDER BY id) FROM audit_log "
                             "WHERE id > $1::bigint AND action = 'superseded'",
                             1, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
      strtoull(PQgetvalue(r, 0, 0), NULL, 10) > 0) {
    char targets[300];
    safetext_escape(PQgetvalue(r, 0, 1), targets, sizeof targets); /* schedule names: text */
    log_warn(LOG_DB, DB_OBJ,
             "%s rule change%s from this controller's journal not applied (%s): a newer leader "
             "had taken over without them; `nircctl history --action superseded` lists them, "
             "make them again if they are still wanted",
             PQgetvalue(r, 0, 0), strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? "" : "s", targets);
  }
  PQclear(r);
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
  PGconn *c = db_admin_connect(conninfo, err, errlen);
  if (!c) {
    journal_close(&j);
    return NIRC_EDB;
  }
  unsigned long long total = (unsigned long long)j.records, applied = 0, dups = 0, failed = 0;
  log_info(LOG_DB, DB_OBJ, "replaying %llu journaled write%s from %s", total, total == 1 ? "" : "s",
           path);
  /* The audit trail's end before the replay: what it says after about
   * changes this journal held that a newer leader superseded (store.c). */
  PGresult *before = PQexec(c, "SELECT coalesce(max(id), 0) FROM audit_log");
  char base[24] = "";
  if (PQresultStatus(before) == PGRES_TUPLES_OK && PQntuples(before) == 1)
    nirc_strlcpy(base, PQgetvalue(before, 0, 0), sizeof base);
  PQclear(before);
  while (rc == 0 && j.records > 0) {
    query_t *q = NULL;
    const char *why = "?";
    if (journal_next(&j, &q, &why) != 0) {
      char aside[PATH_MAX + 64];
      uint64_t at = j.read;
      unsigned long long lost = (unsigned long long)j.records;
      rc = journal_set_aside_rest(&j, why, aside, sizeof aside, err, errlen);
      if (rc == 0) {
        log_error(LOG_DB, DB_OBJ,
                  "database journal %s is damaged at offset %llu (%s): moved to %s with the %llu "
                  "writes it still held, which are not replayed",
                  path, (unsigned long long)at, why, aside, lost);
      }
      break;
    }
    char *sql = once_sql(q->sql, q->nparams);
    PGresult *r = sql ? PQexecParams(c, sql, q->nparams + 1, NULL, q->params, NULL, NULL, 0) : NULL;
    free(sql);
    char m[DB_MSG_MAX];
    admin_result_error(r, NULL, m, sizeof m);
    switch (once_outcome(r)) {
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
  db_admin_say_superseded(c, base);
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
    for (int i = 0, want = 1; i < n; i++, want++) {
      if (i > 0 && m[i].version == m[i - 1].version) {
        set_err(err, errlen, "%s/%s: duplicate migration number (also %s)", dir, m[i].file,
                m[i - 1].file);
        rc = NIRC_EEXISTS;
        break;
      }
      /* Numbered from 001 without gaps. */
      if (m[i].version != want) {
        set_err(err, errlen,
                "%s/%s: migration %03d is missing (they are numbered from 001 "
                "without gaps)",
                dir, m[i].file, want);
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

  PGconn *c = db_admin_connect(conninfo, err, errlen);
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
