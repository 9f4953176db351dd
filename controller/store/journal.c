/* journal: the on-disk journal of once-writes made while the database was
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
 * silently discarded.
 *
 * Ownership: journal_t owns its path and its descriptor, which holds an
 * exclusive flock() for as long as the journal is open, so a second nircd
 * cannot append to the same file. The asynchronous client (db.c through
 * once.c) appends and replays; the start-up replay (db_admin.c) only
 * replays. Records read back are query records (query.h) that the caller
 * owns. The blocking I/O here is small and only happens during outages and
 * at start-up (see db.c). */
#include "journal.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define DB_OBJ "db"

/* DB_KEY_RETENTION in milliseconds, for the age check of journal records. */
#define DB_KEY_RETENTION_MS (7ll * 86400000)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

#define JNL_MAGIC      "NIRCJNL\n"
#define JNL_VERSION    1u
#define JNL_HDR        16u /* magic, version, CRC */
#define JNL_REC_HDR    JOURNAL_REC_HDR
#define JNL_NULL_PARAM 0xffffffffu
/* The smallest payload: at_ms, key length, parameter count, sql length. */
#define JNL_PAYLOAD_MIN (8u + 2u + 2u + 4u)

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

/* The size of the record a once-write takes in the journal, header
 * included. */
size_t journal_record_size(const char *key, const char *sql, int nparams,
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
static query_t *journal_decode(const unsigned char *pl, size_t len, const char **why) {
  const unsigned char *p = pl, *end = pl + len, *f;
  query_str_t sql, key, params[DB_MAX_PARAMS];
  *why = "malformed record";
  if (len < JNL_PAYLOAD_MIN) return NULL;
  int64_t at_ms = (int64_t)get64(p);
  p += 8;
  key.len = get16(p);
  p += 2;
  key.p = (const char *)p;
  if (key.len == 0 || key.len >= QUERY_KEY_MAX || take(&p, end, key.len) != 0) return NULL;
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
      params[i] = (query_str_t){NULL, 0};
      continue;
    }
    params[i] = (query_str_t){(const char *)p, plen};
    if (take(&p, end, plen) != 0) return NULL;
    if (memchr(params[i].p, '\0', plen)) return NULL;
  }
  if (p != end || memchr(key.p, '\0', key.len) || memchr(sql.p, '\0', sql.len)) return NULL;
  query_t *q = query_new(sql, nparams, params, key);
  if (!q) {
    *why = "out of memory";
    return NULL;
  }
  q->at_ms = at_ms;
  return q;
}

/* Reads the record at off in a file of fsize bytes. On JREC_OK *out is the
 * parsed record (caller frees) and *next the offset after it. */
static jrec_status_t journal_read_at(int fd, uint64_t off, uint64_t fsize, query_t **out,
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

void journal_init(journal_t *j) {
  memset(j, 0, sizeof *j);
  j->fd = -1;
}

void journal_close(journal_t *j) {
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
int journal_open(journal_t *j, const char *path, uint64_t max, char *err, size_t errlen) {
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
    query_t *q = NULL;
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
    if (clock_real_ms() - oldest > DB_KEY_RETENTION_MS) {
      log_warn(LOG_DB, DB_OBJ,
               "database journal %s: its oldest write is %.1f days old, older than the %s its key "
               "is remembered: a write applied before the journal was emptied would be applied "
               "again",
               path, (double)(clock_real_ms() - oldest) / 86400000.0, DB_KEY_RETENTION);
    }
  }
  return 0;
}

/* Appends one once-write. Returns 0, NIRC_EFULL (the file would pass its
 * maximum), NIRC_ERANGE (too large for any journal) or NIRC_EIO (nothing
 * was added: a partial write is cut off again). */
int journal_append(journal_t *j, uint64_t limit, const char *key, const char *sql, int nparams,
                   const char *const *params, int64_t at_ms) {
  if (j->fd < 0 || j->broken) return NIRC_EIO;
  size_t n = journal_record_size(key, sql, nparams, params);
  if (n > JNL_REC_HDR + DB_JOURNAL_RECORD_MAX) return NIRC_ERANGE;
  if (!limit) limit = j->max;
  if (j->size + n > limit) return NIRC_EFULL;
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
  j->last_errno = 0;
  return 0;
}

/* fdatasync after appends. 0 or -errno. */
int journal_sync(journal_t *j) {
  if (j->fd < 0 || !j->dirty) return 0;
  if (fdatasync(j->fd) != 0) return -errno;
  j->dirty = 0;
  return 0;
}

/* The next record to replay. 0 and *out (caller frees), or NIRC_EIO with
 * *why when it cannot be read back. */
int journal_next(journal_t *j, query_t **out, const char **why) {
  uint64_t next = 0;
  jrec_status_t rs = journal_read_at(j->fd, j->read, j->size, out, &next, why);
  return rs == JREC_OK ? 0 : NIRC_EIO;
}

/* The record ending at jend is done (applied, found applied, or refused for
 * good). When it was the last, the file is cut back to its header; returns
 * 1 then, else 0. */
int journal_advance(journal_t *j, uint64_t jend) {
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

int journal_set_aside_rest(journal_t *j, const char *why, char *aside, size_t asidelen, char *err,
                           size_t errlen) {
  uint64_t at = j->read;
  j->records = 0;
  return journal_set_aside(j, at, at, why, aside, asidelen, err, errlen);
}

void journal_stop(journal_t *j) {
  close(j->fd);
  j->fd = -1;
  j->corrupt++;
}
