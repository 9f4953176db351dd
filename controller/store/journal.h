/* journal: the on-disk journal of once-writes made while the database was
 * unreachable (record format, CRC and damage handling in journal.c and
 * docs/ARCHITECTURE.md).
 *
 * A journal is one file, opened and locked by one process. Records are
 * appended at the end and synced in groups (journal_sync), replayed in
 * order from the front (journal_next, journal_advance), and the file is cut
 * back to its header once the last one is done. A torn last record is
 * dropped when the file is opened; damage elsewhere sets the file aside as
 * PATH.corrupt-TIME with the intact records copied into a fresh journal.
 *
 * The fields of journal_t are read by its owner (depth, path and counters
 * for messages and statistics) and changed only by journal_* functions.
 * Functions that take err write a message naming the file and the fix. */
#ifndef NIRC_JOURNAL_H
#define NIRC_JOURNAL_H

#include "query.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes in front of each record's payload (length, CRC): a record takes
 * at most JOURNAL_REC_HDR + DB_JOURNAL_RECORD_MAX bytes. */
#define JOURNAL_REC_HDR 8u

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

/* Makes j an unopened journal (fd -1), so journal_close is safe on it. */
void journal_init(journal_t *j);
/* Opens (or creates) the journal at path, at most max bytes, checks every
 * record, drops a torn last one and sets a damaged file aside. Returns 0,
 * NIRC_EIO or NIRC_ENOMEM. */
int journal_open(journal_t *j, const char *path, uint64_t max, char *err, size_t errlen);
/* Closes the file (releasing the lock) and frees the path. */
void journal_close(journal_t *j);
/* The bytes a once-write takes in the journal, header included. */
size_t journal_record_size(const char *key, const char *sql, int nparams,
                           const char *const *params);
/* Appends one once-write; it is durable after the next journal_sync. The
 * file may grow to `limit` bytes for it (0: to max); bulk writes get less
 * than max so that operator changes keep room, and the writes of an
 * operator change already accepted get more (db.h, DB_JOURNAL_CHANGE_GRANT)
 * so that it is journaled whole. Returns 0, NIRC_EFULL,
 * NIRC_ERANGE, NIRC_ENOMEM or NIRC_EIO (and last_errno says why; a later
 * successful append clears it). */
int journal_append(journal_t *j, uint64_t limit, const char *key, const char *sql, int nparams,
                   const char *const *params, int64_t at_ms);
/* fdatasync after appends. 0 or -errno. */
int journal_sync(journal_t *j);
/* Reads the next record to replay into *out (a query record with key,
 * at_ms and jend set; the caller owns it). 0, or NIRC_EIO with *why. */
int journal_next(journal_t *j, query_t **out, const char **why);
/* The record ending at jend is done; returns 1 when that emptied the
 * journal, else 0. */
int journal_advance(journal_t *j, uint64_t jend);
/* After journal_next failed: sets the file aside with every record not yet
 * replayed (which are not replayed) and starts a fresh journal. The caller
 * reads read and records first for its message. Returns 0 with the name
 * used in aside, or NIRC_EIO with err. */
int journal_set_aside_rest(journal_t *j, const char *why, char *aside, size_t asidelen, char *err,
                           size_t errlen);
/* Stops journaling after journal_set_aside_rest failed: closes the file
 * and counts it as corrupt; path stays for messages until journal_close. */
void journal_stop(journal_t *j);

#endif
