#include "elect.h"

#include "safetext.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t elect_retry_delay_ms(unsigned failures, uint64_t period_ms) {
  uint64_t cap = period_ms > ELECT_RETRY_MAX_MS ? period_ms : ELECT_RETRY_MAX_MS;
  uint64_t d = period_ms ? period_ms : 1;
  /* Doubled one failure at a time, so no shift overflows. */
  for (unsigned i = 0; i < failures && d < cap; i++)
    d *= 2;
  return d < cap ? d : cap;
}

bool elect_retry_failed(elect_retry_t *r, uint64_t now, uint64_t period_ms, const char *reason) {
  if (r->failures < UINT32_MAX) r->failures++;
  r->next_ms = now + elect_retry_delay_ms(r->failures, period_ms);
  r->failed_ms = now;
  r->marked = false;
  char cut[sizeof r->told]; /* compared as it would be kept */
  nirc_strlcpy(cut, reason, sizeof cut);
  bool tell =
      r->failures == 1 || strcmp(cut, r->told) != 0 || now - r->told_ms >= ELECT_TELL_EVERY_MS;
  if (tell) {
    r->told_ms = now;
    memcpy(r->told, cut, sizeof r->told);
  }
  return tell;
}

void elect_retry_mark(elect_retry_t *r, uint64_t fingerprint) {
  r->marked = true;
  r->mark = fingerprint;
}

bool elect_retry_changed(elect_retry_t *r, uint64_t now, uint64_t fingerprint) {
  if (!r->marked || fingerprint == r->mark) return false;
  r->marked = false;
  uint64_t soonest = r->failed_ms + ELECT_CHANGED_MIN_MS;
  if (soonest < now) soonest = now;
  if (soonest < r->next_ms) r->next_ms = soonest;
  return true;
}

bool elect_retry_due(const elect_retry_t *r, uint64_t now) {
  return now >= r->next_ms;
}

void elect_retry_reset(elect_retry_t *r) {
  memset(r, 0, sizeof *r);
}

void elect_lease_from_row(elect_lease_t *out, const char *node, const char *addr, const char *epoch,
                          const char *renewed) {
  memset(out, 0, sizeof *out);
  out->present = true;
  safetext_escape(node, out->node, sizeof out->node);
  safetext_escape(addr, out->addr, sizeof out->addr);
  out->epoch = epoch ? strtoull(epoch, NULL, 10) : 0;
  nirc_strlcpy(out->renewed, renewed ? renewed : "", sizeof out->renewed);
}

void elect_stuck_words(const elect_stuck_t *s, char *out, size_t n) {
  if (!n) return;
  out[0] = '\0';
  if (!s->pid) return;
  snprintf(out, n,
           "rule load backend pid %d holds SHARE locks on %s: writes to them wait. On the "
           "database host: kill -CONT %d if stopped (ps state T), else restart PostgreSQL",
           s->pid, s->tables[0] ? s->tables : "the rule tables", s->pid);
}

/* Leading with nothing issued for a lease: a renewal confirms a lease
 * within a period after a pause, and an old session asked to end goes
 * within milliseconds; one that has not within a lease will not by
 * itself. The reasons in the order they explain the silence. */
static bool elect_quiet_words(const elect_health_t *h, uint64_t now, uint64_t lease_ms, char *out,
                              size_t n) {
  if (!h->quiet_since_ms || now < h->quiet_since_ms || now - h->quiet_since_ms < lease_ms)
    return false;
  unsigned long long epoch = (unsigned long long)h->epoch;
  unsigned long long quiet_s = (unsigned long long)((now - h->quiet_since_ms) / 1000);
  if (h->old_pid)
    snprintf(out, n,
             "leading epoch %llu but issuing nothing for %llu s: its old session (pid %d) still "
             "holds the leader lock, so no standby can lead either. On the database host: kill "
             "-CONT %d if stopped (ps state T), else restart PostgreSQL",
             epoch, quiet_s, h->old_pid, h->old_pid);
  else if (h->paused_ms && h->db_down)
    snprintf(out, n,
             "leading epoch %llu but issuing nothing for %llu s: it did not run for %llu ms "
             "(paused?) and cannot confirm its lease while the database is out of reach: restore "
             "the database (see the database alarm)",
             epoch, quiet_s, (unsigned long long)h->paused_ms);
  else if (h->renew_err[0])
    snprintf(out, n,
             "leading epoch %llu but issuing nothing for %llu s: the database refuses to renew "
             "its lease; make it accept writes (its log has the statement): %s",
             epoch, quiet_s, h->renew_err);
  else
    snprintf(out, n,
             "leading epoch %llu but issuing nothing for %llu s: its lease is not renewed; its "
             "log says why",
             epoch, quiet_s);
  return true;
}

/* One failed read may be a moment's error; one that still fails a lease
 * later (four tries) needs a hand. */
static bool elect_sites_words(const elect_health_t *h, uint64_t now, uint64_t lease_ms, char *out,
                              size_t n) {
  uint64_t since = h->sites_failed_since_ms;
  if (!since || now < since || now - since < lease_ms) return false;
  snprintf(out, n,
           "the sites table cannot be read for %llu s (its changes are not applied; a "
           "controller started now will not start): mend %s",
           (unsigned long long)((now - since) / 1000), h->sites_err);
  return true;
}

bool elect_alarm_words(const elect_health_t *h, elect_alarm_t a, uint64_t now, uint64_t lease_ms,
                       char *out, size_t n) {
  if (!n) return false;
  out[0] = '\0';
  if (!h->leading) return false;
  switch (a) {
  case ELECT_ALARM_QUIET: return elect_quiet_words(h, now, lease_ms, out, n);
  case ELECT_ALARM_SITES: return elect_sites_words(h, now, lease_ms, out, n);
  case ELECT_ALARM_RULE_LOAD: elect_stuck_words(&h->stuck, out, n); return out[0] != '\0';
  case ELECT_ALARM_COUNT: break;
  }
  return false;
}

void elect_evict_words(const elect_lease_t *ls, uint64_t lease_ms, const char *pids, char *out,
                       size_t n) {
  if (!n) return;
  const char *p = pids && pids[0] ? pids : "none";
  if (ls->present)
    snprintf(out, n,
             "leader %s (epoch %llu) has not renewed its lease for %llu ms: asked PostgreSQL to "
             "end the session(s) holding the lock (pid %s)",
             ls->node, (unsigned long long)ls->epoch, (unsigned long long)lease_ms, p);
  else
    snprintf(out, n,
             "no lease written for %llu ms while a session holds the leader lock (no controller "
             "leads): asked PostgreSQL to end the session(s) holding the lock (pid %s)",
             (unsigned long long)lease_ms, p);
}

void elect_evict_blocked_words(const elect_lease_t *ls, const char *pids, char *out, size_t n) {
  if (!n) return;
  char whose[160];
  if (ls->present)
    snprintf(whose, sizeof whose, "of %s (epoch %llu, whose lease stands still)", ls->node,
             (unsigned long long)ls->epoch);
  else
    snprintf(whose, sizeof whose, "(a session that wrote no lease)");
  snprintf(out, n,
           "no controller leads: the leader lock is held by PostgreSQL session pid %s %s, which "
           "was asked to end (pg_terminate_backend) and has not: a backend that does not run ends "
           "only once it runs again. On the database host: ps -o pid,stat,wchan -p %s; a stopped "
           "one (state T) ends on kill -CONT; else restart PostgreSQL",
           pids, whose, pids);
}
