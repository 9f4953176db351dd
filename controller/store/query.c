/* query: query records and their queue (see query.h). The record layout
 * is shared with the journal (journal.c builds records from what it reads
 * back) and the once-writes (once.c); everything else about running them
 * is db.c's. */
#include "query.h"

#include <stdlib.h>
#include <string.h>

query_str_t query_str(const char *s) {
  return (query_str_t){s, s ? strlen(s) : 0};
}

query_t *query_new(query_str_t sql, int nparams, const query_str_t *params, query_str_t key) {
  size_t total = sizeof(query_t) + sql.len + 1 + (key.p ? key.len + 1 : 0);
  for (int i = 0; i < nparams; i++)
    total += params[i].p ? params[i].len + 1 : 0;
  query_t *q = malloc(total);
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

void query_complete(query_t *q, int err, const char *msg, PGresult *res) {
  if (q->cb) q->cb(q->arg, err, msg, res);
  free(q);
}

void query_queue_push(query_queue_t *qq, query_t *q) {
  q->next = NULL;
  if (q->urgent && qq->overtake) {
    /* Before the overtakable run at the end, after the urgent ones before it. */
    q->next = qq->overtake;
    if (qq->before_overtake)
      qq->before_overtake->next = q;
    else
      qq->head = q;
    qq->before_overtake = q;
  } else {
    query_t *last = qq->tail;
    if (last) {
      last->next = q;
    } else {
      qq->head = q;
    }
    qq->tail = q;
    /* History extends the run at the end; anything else ends it, and
     * nothing urgent passes it. */
    if (!q->overtakable) {
      qq->overtake = qq->before_overtake = NULL;
    } else if (!qq->overtake) {
      qq->overtake = q;
      qq->before_overtake = last;
    }
  }
  qq->depth++;
  if (q->key) qq->once++;
}

void query_queue_push_front(query_queue_t *qq, query_t *q) {
  /* A record sent back (its batch failed, or the connection was lost)
   * goes first whatever it is; it starts the overtakable run only if the
   * queue held nothing else. */
  q->next = qq->head;
  if (qq->overtake && qq->overtake == qq->head) qq->before_overtake = q;
  qq->head = q;
  if (!qq->tail) {
    qq->tail = q;
    qq->overtake = q->overtakable ? q : NULL;
    qq->before_overtake = NULL;
  }
  qq->depth++;
  if (q->key) qq->once++;
}

void query_queue_unlinked(query_queue_t *qq, query_t *prev, query_t *q) {
  if (qq->overtake == q) {
    qq->overtake = q->next;
    if (!qq->overtake) qq->before_overtake = NULL;
  } else if (qq->before_overtake == q) {
    qq->before_overtake = prev;
  }
}

query_t *query_queue_pop(query_queue_t *qq) {
  query_t *q = qq->head;
  query_queue_unlinked(qq, NULL, q);
  qq->head = q->next;
  if (!qq->head) qq->tail = NULL;
  qq->depth--;
  if (q->key) qq->once--;
  return q;
}
