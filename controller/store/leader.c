#include "leader-int.h"

#include "conninfo.h"
#include "elect.h"
#include "err.h"
#include "log.h"
#include "safetext.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Once asked to stop, the thread's statements have this long in all (the
 * lease's deletion and the unlock, on a database that may not answer):
 * systemd kills a controller that outlasts TimeoutStopSec, and an operator
 * stopping a stuck controller must not wait for the hang (a statement has
 * half a lease otherwise, up to 30 s). */
#define LEADER_STOP_GRACE_MS 1000u

static const char *const leader_state_names[] = {
    [LEADER_STARTING] = "starting", [LEADER_STANDBY] = "standby", [LEADER_LEADING] = "leading",
    [LEADER_LOST] = "lost",         [LEADER_STOPPED] = "stopped",
};

const char *leader_state_name(leader_state_t s) {
  return (unsigned)s <= LEADER_STOPPED ? leader_state_names[s] : "?";
}

static const char *const leader_block_names[] = {
    [LEADER_BLOCK_NONE] = "none",
    [LEADER_BLOCK_RULES_LOCKED] = "rules_locked",
    [LEADER_BLOCK_RULES_LOAD] = "rules_load",
    [LEADER_BLOCK_LEADER_LOCK] = "leader_lock",
};

const char *leader_block_name(leader_block_t b) {
  return (unsigned)b < LEADER_BLOCK_COUNT ? leader_block_names[b] : "?";
}

/* How long the rule load waits for the rule tables' locks: 2 s, or half a
 * lease if that is shorter (the whole load has three quarters of one). */
uint64_t leader_lock_wait_ms(const leader_t *l) {
  return l->lease_ms / 2 < 2000 ? l->lease_ms / 2 : 2000;
}

uint64_t leader_mono_ms(void) {
  return uv_hrtime() / 1000000u;
}

/* Thread: true once leader_stop was called (the thread may not have polled
 * the wake pipe since); starts the stop's grace for its statements. */
static bool leader_stopping(leader_t *l) {
  uv_mutex_lock(&l->mu);
  bool stop = l->stop;
  uv_mutex_unlock(&l->mu);
  if (stop && !l->stop_by_ms) l->stop_by_ms = leader_mono_ms() + LEADER_STOP_GRACE_MS;
  return l->stop_by_ms != 0;
}

/* ---- shared state (called on the thread, takes the lock) ---- */

static void leader_publish(leader_t *l, const leader_view_t *v, admin_rules_t *rules) {
  uv_mutex_lock(&l->mu);
  bool changed = memcmp(&l->view, v, sizeof *v) != 0 || rules;
  /* For the alarms (leader_health): the database out of reach while
   * leading, and the old session that keeps the lock. */
  l->health.db_down = v->state == LEADER_LEADING && v->db_down;
  l->health.old_pid = v->state == LEADER_LEADING && v->lock_pending ? l->old_pid : 0;
  l->view = *v;
  if (rules) {
    l->rules = *rules;
    l->rules_ready = true;
  }
  uv_mutex_unlock(&l->mu);
  if (changed) uv_async_send(&l->async);
}

static void leader_touch(leader_t *l) {
  uv_mutex_lock(&l->mu);
  l->last_ok_ms = leader_mono_ms();
  uv_mutex_unlock(&l->mu);
}

/* ---- database (thread) ---- */

static void leader_disconnect(leader_t *l) {
  /* Remembered: the session we gave up on ends only when its backend sees
   * that we left; a hung database, or a frozen backend, may hold the lock
   * for it long after (leader_reclaim). */
  if (l->lock_pid) {
    l->old_pid = l->lock_pid;
    l->old_asked = false;
  }
  l->lock_pid = 0;
  if (l->conn) PQfinish(l->conn);
  l->conn = NULL;
}

/* libpq's or PostgreSQL's words as one escaped line, for a log line or an
 * alarm: they may quote a row's bytes (conninfo_msg_trim). Returns buf. */
static const char *leader_pq_words(const PGconn *c, const PGresult *r, char *buf, size_t n) {
  conninfo_msg_trim(r   ? PQresultErrorMessage(r)
                    : c ? PQerrorMessage(c)
                        : "out of memory",
                    0, buf, n);
  return buf;
}

/* The dedicated connection: keepalives and a user timeout of about one
 * lease, so a dead database or a cut path shows within a lease instead of
 * the kernel's two hours; statements are bounded the same way. */
static bool leader_connect(leader_t *l) {
  char timeout[24], options[64];
  snprintf(timeout, sizeof timeout, "%llu", (unsigned long long)l->lease_ms);
  snprintf(options, sizeof options, "-c statement_timeout=%llu", (unsigned long long)l->lease_ms);
  const char *kw[] = {"dbname",           "keepalives",
                      "keepalives_idle",  "keepalives_interval",
                      "keepalives_count", "tcp_user_timeout",
                      "connect_timeout",  "application_name",
                      "options",          NULL};
  const char *val[] = {l->conninfo,    "1",     "1", "1", "2", timeout, "2",
                       "nircd-leader", options, NULL};
  l->conn = PQconnectdbParams(kw, val, 1);
  if (l->conn && PQstatus(l->conn) == CONNECTION_OK) {
    l->seen_renewed[0] = '\0';
    l->watch_since_ms = leader_mono_ms();
    /* Every write to sites notifies nirc_sites (schema 010). What was
     * written while this connection was down was not heard: load anew.
     * Bounded like every statement here (a hung database). */
    PGresult *r = leader_exec(l, "LISTEN nirc_sites", 0, NULL, PGRES_COMMAND_OK);
    if (!r && !l->conn) return false; /* logged; the connection broke or hung */
    PQclear(r); /* a refusal on a live connection: sites follow reconnects only (logged) */
    if (l->connected_once) l->sites_dirty = true;
    l->connected_once = true;
    return true;
  }
  char m[320];
  log_debug(LOG_DB, LEADER_OBJ, "cannot connect: %s", leader_pq_words(l->conn, NULL, m, sizeof m));
  leader_disconnect(l);
  return false;
}

/* Runs one statement; NULL (and the connection dropped when it broke) on
 * failure, with the reason logged. The wait for the answer is bounded by
 * half a lease: a database that does not answer (frozen, a storage stall,
 * a path that drops packets) is treated like one that is down, instead of
 * holding this thread, and with it the leadership, until it wakes up. The
 * connection is dropped then (timed_out is set). */
PGresult *leader_exec(leader_t *l, const char *sql, int n, const char *const *p,
                      ExecStatusType want) {
  l->timed_out = false;
  if (!PQsendQueryParams(l->conn, sql, n, NULL, p, NULL, NULL, 0)) {
    char m[320];
    log_warn(LOG_DB, LEADER_OBJ, "%.60s...: %s", sql, leader_pq_words(l->conn, NULL, m, sizeof m));
    if (PQstatus(l->conn) != CONNECTION_OK) leader_disconnect(l);
    return NULL;
  }
  uint64_t deadline = leader_mono_ms() + (l->lease_ms / 2 ? l->lease_ms / 2 : 1);
  PGresult *last = NULL;
  for (;;) {
    while (PQisBusy(l->conn)) {
      uint64_t now = leader_mono_ms();
      if (l->stop_by_ms && l->stop_by_ms < deadline) deadline = l->stop_by_ms;
      if (now >= deadline) goto timeout;
      /* The wake pipe stays readable once written: polled until the stop
       * is seen, then only the grace counts. */
      struct pollfd pfd[2] = {{.fd = PQsocket(l->conn), .events = POLLIN},
                              {.fd = l->stop_by_ms ? -1 : l->wake[0], .events = POLLIN}};
      int rc = poll(pfd, 2, (int)(deadline - now));
      if (rc == 0) goto timeout;
      if (rc > 0 && pfd[1].revents) {
        l->stop_by_ms = leader_mono_ms() + LEADER_STOP_GRACE_MS;
        continue;
      }
      if ((rc < 0 && errno != EINTR) || (rc > 0 && !PQconsumeInput(l->conn))) goto broken;
    }
    PGresult *r = PQgetResult(l->conn);
    if (!r) break;
    PQclear(last);
    last = r;
  }
  if (last && PQresultStatus(last) == want) {
    l->last_err[0] = '\0';
    return last;
  }
  char m[320];
  log_warn(LOG_DB, LEADER_OBJ, "%.60s...: %s", sql, leader_pq_words(l->conn, last, m, sizeof m));
  /* Kept for an alarm's words (escaped, like the log's). */
  leader_pq_words(l->conn, last, l->last_err, sizeof l->last_err);
  PQclear(last);
  if (PQstatus(l->conn) != CONNECTION_OK) leader_disconnect(l);
  return NULL;
timeout:
  if (l->stop_by_ms)
    log_warn(LOG_DB, LEADER_OBJ,
             "%.60s...: no answer within the %u ms a stopping controller waits: the database is "
             "hung or out of reach; dropping the connection",
             sql, LEADER_STOP_GRACE_MS);
  else
    log_warn(LOG_DB, LEADER_OBJ,
             "%.60s...: no answer within %llu ms: the database is hung or out of reach; "
             "dropping the connection",
             sql, (unsigned long long)(l->lease_ms / 2));
  PQclear(last);
  l->timed_out = true;
  leader_disconnect(l);
  return NULL;
broken:;
  char bm[320];
  log_warn(LOG_DB, LEADER_OBJ, "%.60s...: %s", sql, leader_pq_words(l->conn, NULL, bm, sizeof bm));
  PQclear(last);
  leader_disconnect(l);
  return NULL;
}

/* 1: this session holds the lock now (and no other session does, so no
 * old one of ours either); 0: another session holds it; -1: no answer. */
static int leader_try_lock(leader_t *l) {
  PGresult *r = leader_exec(l, "SELECT pg_try_advisory_lock(1313428035)", 0, NULL, PGRES_TUPLES_OK);
  if (!r) return -1;
  int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (got) {
    l->lock_pid = PQbackendPID(l->conn);
    l->old_pid = 0;
  }
  return got;
}

static void leader_unlock(leader_t *l) {
  PGresult *r = leader_exec(l, "SELECT pg_advisory_unlock(1313428035)", 0, NULL, PGRES_TUPLES_OK);
  if (r && strcmp(PQgetvalue(r, 0, 0), "t") == 0) l->lock_pid = 0;
  PQclear(r);
}

/* pg_locks lists the whole cluster, and an advisory lock is per database:
 * the leader lock of another NIRC database on the same server (another
 * deployment, a test beside this one) has the same key. Only this
 * database's holders are ours to name or end. */
#define LEADER_THIS_DB "database = (SELECT oid FROM pg_database WHERE datname = current_database())"

/* The session holding the lock that this one could not take: its pid, 0
 * when nobody holds it now (it was let go in between), -1 without an
 * answer. If it is our own old session, PostgreSQL is asked to end it
 * (again: a signal already pending is no harm). That is a request, not an
 * ending: a backend that is stopped, or stuck in the kernel, goes on
 * holding the lock until it runs again. */
static int leader_holder(leader_t *l) {
  char pid[16];
  snprintf(pid, sizeof pid, "%d", l->old_pid);
  const char *p[] = {pid};
  PGresult *r = leader_exec(l,
                            "SELECT pid, CASE WHEN pid = $1::int THEN pg_terminate_backend(pid) "
                            "END FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND "
                            "objid = 1313428035 AND objsubid = 1 AND granted AND " LEADER_THIS_DB,
                            1, p, PGRES_TUPLES_OK);
  if (!r) return -1;
  int holder = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  return holder;
}

static bool leader_read_lease(leader_t *l, elect_lease_t *out) {
  memset(out, 0, sizeof *out);
  PGresult *r =
      leader_exec(l, "SELECT node, addr, epoch, renewed_at::text FROM leader_lease WHERE id = 1", 0,
                  NULL, PGRES_TUPLES_OK);
  if (!r) return false;
  /* node and addr escaped: a row edited by hand reaches operators (elect.h) */
  if (PQntuples(r) == 1)
    elect_lease_from_row(out, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                         PQgetvalue(r, 0, 3));
  PQclear(r);
  return true;
}

static void leader_lose(leader_t *l, leader_view_t *v, const char *why) {
  v->state = LEADER_LOST;
  v->db_down = false;
  nirc_strlcpy(v->why, why, sizeof v->why);
  log_error(LOG_MAIN, LEADER_OBJ, "lost leadership of epoch %llu: %s", (unsigned long long)v->epoch,
            v->why);
  leader_publish(l, v, NULL);
}

/* The session holding the lock whose owner stopped renewing: ended, so
 * the lock is free for us on the next step. */
static void leader_evict(leader_t *l, const elect_lease_t *ls, leader_view_t *next) {
  PGresult *r =
      leader_exec(l,
                  "SELECT count(pg_terminate_backend(pid)), coalesce(string_agg(pid::text, "
                  "', ' ORDER BY pid), '') FROM pg_locks WHERE "
                  "locktype = 'advisory' AND classid = 0 AND objid = 1313428035 AND "
                  "objsubid = 1 AND granted AND pid <> pg_backend_pid() AND " LEADER_THIS_DB,
                  0, NULL, PGRES_TUPLES_OK);
  if (!r) return;
  const char *pids = PQgetvalue(r, 0, 1);
  /* Once per standing lease: a session that does not end (its backend is
   * stopped) is asked again every period, which says nothing new. */
  if (!l->evict_told) {
    char words[400];
    elect_evict_words(ls, l->lease_ms, pids, words, sizeof words);
    log_warn(LOG_MAIN, LEADER_OBJ, "%s", words);
  }
  l->evict_told = true;
  uint64_t now = leader_mono_ms();
  if (!l->evict_ms) l->evict_ms = now;
  /* A backend asked to end is gone within milliseconds, and the lock ours
   * on the next step: one that still holds it a lease later does not run
   * (stopped, stuck in the kernel). Nobody leads until it ends: said in
   * the view (the answers, /metrics), not as "an election is running". */
  if (now - l->evict_ms >= l->lease_ms && pids[0] && next->blocked != LEADER_BLOCK_LEADER_LOCK) {
    elect_evict_blocked_words(ls, pids, next->why, sizeof next->why);
    next->blocked = LEADER_BLOCK_LEADER_LOCK;
    log_error(LOG_MAIN, LEADER_OBJ, "%s", next->why);
  }
  PQclear(r);
}

/* Notifications heard on the election connection (in any statement's
 * answer, or waiting on the socket now) mark the sites table changed. */
static void leader_poll_notifies(leader_t *l) {
  if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) return;
  (void)PQconsumeInput(l->conn);
  PGnotify *n;
  while ((n = PQnotifies(l->conn)) != NULL) {
    if (strcmp(n->relname, "nirc_sites") == 0) l->sites_dirty = true;
    PQfreemem(n);
  }
}

/* Reading the sites table failed for `why`: the alarm's words (escaped)
 * and since when, and the log once per reason (it is tried every period:
 * lease / 4). */
static void leader_sites_failed(leader_t *l, const char *why) {
  char said[sizeof l->health.sites_err];
  safetext_escape(why, said, sizeof said);
  bool told = strcmp(said, l->health.sites_err) == 0; /* the thread alone writes it */
  uv_mutex_lock(&l->mu);
  if (!l->health.sites_failed_since_ms) l->health.sites_failed_since_ms = leader_mono_ms();
  nirc_strlcpy(l->health.sites_err, said, sizeof l->health.sites_err);
  uv_mutex_unlock(&l->mu);
  if (!told)
    log_warn(LOG_DB, LEADER_OBJ,
             "reloading the sites: %s (tried again every %llu ms; said again when the reason "
             "changes)",
             said, (unsigned long long)l->period_ms);
}

/* Loads the sites table on the election connection (bounded by half a
 * lease, as every statement here, so a hung database cannot hold the
 * leadership) and hands it to the loop; a failure keeps it dirty, to try
 * on the next step. */
static void leader_load_sites(leader_t *l) {
  if (!l->sites_dirty || !l->on_sites || !l->conn) return;
  sites_t *snap = calloc(1, sizeof *snap);
  char err[512];
  if (!snap) return;
  sites_init(snap, 0);
  snap->taken_mono = leader_mono_ms();
  PGresult *r = leader_exec(l, admin_sites_sql, 0, NULL, PGRES_TUPLES_OK);
  int rc = r ? admin_sites_from_result(r, snap, err, sizeof err) : NIRC_EDB;
  PQclear(r);
  if (rc != 0) {
    /* A row it cannot take, or an error answer: the sites stay as they
     * were, here and on every controller, until it is mended. No answer
     * (or a broken connection) is the database's outage, said as such. */
    if (r || (l->conn && !l->timed_out)) leader_sites_failed(l, r ? err : l->last_err);
    sites_free(snap);
    free(snap);
    return;
  }
  l->sites_dirty = false;
  uv_mutex_lock(&l->mu);
  if (l->health.sites_failed_since_ms)
    log_info(LOG_DB, LEADER_OBJ, "the sites table reads again: its changes are applied");
  l->health.sites_failed_since_ms = 0;
  l->health.sites_err[0] = '\0';
  if (l->sites) {
    sites_free(l->sites);
    free(l->sites);
  }
  l->sites = snap;
  uv_mutex_unlock(&l->mu);
  uv_async_send(&l->async);
}

/* The stop came during the rule load of `epoch`: what the load had done
 * (`what`), after how long of its budget. */
static void leader_stopped_in_load(uint64_t epoch, const char *what, uint64_t took_ms,
                                   uint64_t budget_ms) {
  log_warn(LOG_MAIN, LEADER_OBJ,
           "stopping during the rule load of epoch %llu (%s, after %llu ms of its %llu): not "
           "leading; giving the lease and the leader lock back",
           (unsigned long long)epoch, what, (unsigned long long)took_ms,
           (unsigned long long)budget_ms);
}

/* With the lock held: a new epoch, the lease, the rules. Anything failing
 * gives the lock and the lease back, to try again later: a lease naming
 * this controller while it does not lead would have its standby answers
 * name itself as the leader, and its held site links sent to it. On a
 * lock timeout of the rule load, says who holds the rule tables. The
 * load is bounded (three quarters of a lease) and the lease renewed
 * after it: a load that outlasted the lease may have been overtaken by a
 * standby that saw the lease stand still. */
static void leader_take(leader_t *l, leader_view_t *v) {
  bool leased = false;
  char es[24] = "";
  const char *p1[] = {l->node};
  PGresult *r = leader_exec(l,
                            "INSERT INTO epochs (epoch, node) VALUES (nextval('epoch_seq'), $1) "
                            "RETURNING epoch",
                            1, p1, PGRES_TUPLES_OK);
  if (!r) goto undo;
  uint64_t epoch = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  snprintf(es, sizeof es, "%llu", (unsigned long long)epoch);
  const char *p4[] = {l->node, l->advertise, es};
  r = leader_exec(l,
                  "INSERT INTO leader_lease (id, node, addr, epoch, renewed_at) "
                  "VALUES (1, $1, $2, $3, now()) ON CONFLICT (id) DO UPDATE SET node = $1, "
                  "addr = $2, epoch = $3, renewed_at = now()",
                  3, p4, PGRES_COMMAND_OK);
  if (!r) goto undo;
  PQclear(r);
  leased = true;
  admin_rules_t rules;
  char err[320];
  int load_pid = 0;
  bool answered = false;
  uint64_t load_start = leader_mono_ms();
  admin_load_opts_t lo = {.budget_ms = l->lease_ms * 3 / 4,
                          .lock_wait_ms = leader_lock_wait_ms(l),
                          .stop_fd = &l->wake[0],
                          .pid = &load_pid,
                          .answered = &answered};
  int rc = admin_load_rules_within(l->conninfo, &lo, &rules, err, sizeof err);
  /* Stopped (SIGTERM, SIGINT) while the load waited (NIRC_ECLOSED), or as
   * it ended: not a failure to tell or try again after "shutting down",
   * and not a lead that would last an instant. */
  if (rc == NIRC_ECLOSED || leader_stopping(l)) {
    if (rc == 0) admin_rules_free(&rules);
    leader_stopped_in_load(epoch, rc ? err : "loaded", leader_mono_ms() - load_start, lo.budget_ms);
    goto undo;
  }
  if (rc == NIRC_ETIMEOUT) {
    char holders[sizeof v->why], sig[sizeof l->locked_told];
    int n = leader_rule_holders(l, holders, sizeof holders, sig, sizeof sig);
    if (n > 0) {
      l->rules_locked = true;
      l->locked_epoch = epoch;
      leader_tell_locked(l, v, holders, sig);
      goto undo;
    }
    if (n == 0) nirc_strlcpy(err, holders, sizeof err);
  }
  if (rc != 0) {
    leader_tell_failed(l, v, epoch, err);
    uint64_t fp;
    if (answered && leader_rules_print(l, &fp)) elect_retry_mark(&l->retry, fp);
    if (load_pid) {
      l->stuck_pid = load_pid;
      l->stuck_epoch = epoch;
      l->stuck_told = false;
      leader_watch_stuck(l, false);
    }
    goto undo;
  }
  r = leader_exec(l, "UPDATE leader_lease SET renewed_at = now() WHERE id = 1 AND epoch = $1", 1,
                  (const char *const[]){es}, PGRES_COMMAND_OK);
  bool renewed = r && strcmp(PQcmdTuples(r), "1") == 0;
  PQclear(r);
  if (!renewed && leader_stopping(l)) {
    admin_rules_free(&rules);
    leader_stopped_in_load(epoch, "loaded; the lease not renewed after it",
                           leader_mono_ms() - load_start, lo.budget_ms);
    goto undo;
  }
  if (!renewed) {
    admin_rules_free(&rules);
    leader_tell_failed(l, v, epoch,
                       "the lease could not be renewed after the load (the database stopped "
                       "answering, or another controller took over meanwhile)");
    goto undo;
  }
  if (l->retry.failures)
    log_info(LOG_MAIN, LEADER_OBJ, "rules loaded after %u failed tries", l->retry.failures);
  elect_retry_reset(&l->retry);
  if (l->locked_told[0])
    log_info(LOG_MAIN, LEADER_OBJ, "the rule tables are no longer locked: rules loaded");
  l->rules_locked = false;
  l->locked_told[0] = '\0';
  /* The sites as the database has them now, handed over before the
   * rules (the loop applies them first): a standby started before a site
   * was added leads with it. */
  l->sites_dirty = true;
  leader_load_sites(l);
  if (leader_stopping(l)) {
    admin_rules_free(&rules);
    leader_stopped_in_load(epoch, "loaded, with the sites", leader_mono_ms() - load_start,
                           lo.budget_ms);
    goto undo;
  }
  leader_touch(l);
  v->state = LEADER_LEADING;
  v->epoch = epoch;
  v->hint[0] = '\0';
  nirc_strlcpy(v->holder, l->node, sizeof v->holder);
  v->holder_epoch = epoch;
  v->db_down = false;
  v->why[0] = '\0';
  v->blocked = LEADER_BLOCK_NONE;
  log_info(LOG_MAIN, LEADER_OBJ, "leading: epoch %llu", (unsigned long long)epoch);
  leader_publish(l, v, &rules);
  return;
undo:;
  bool deleted = false;
  if (leased && l->conn) {
    const char *p[] = {es};
    PGresult *d = leader_exec(l, "DELETE FROM leader_lease WHERE id = 1 AND epoch = $1", 1, p,
                              PGRES_COMMAND_OK);
    deleted = d != NULL;
    PQclear(d);
  }
  if (l->conn) leader_unlock(l);
  if (l->stop_by_ms && leased) {
    if (deleted && !l->lock_pid)
      log_info(LOG_MAIN, LEADER_OBJ,
               "the lease of epoch %s is deleted and the leader lock let go: a standby may take "
               "over at once",
               es);
    else /* a log only: it is stopping (see leader_main) */
      log_warn(LOG_MAIN, LEADER_OBJ,
               "the lease of epoch %s could not be %s (the database did not answer in time): a "
               "standby takes over once the lease runs out, and the lock once this session ends",
               es, deleted ? "kept, but the lock not let go" : "deleted");
  }
}

static void leader_standby_step(leader_t *l, leader_view_t *v) {
  elect_lease_t ls;
  if (!leader_read_lease(l, &ls)) return;
  uint64_t now = leader_mono_ms();
  /* A lease counts as standing still only if this standby watched it the
   * whole time: after a gap of a lease between two of its reads (it was
   * frozen, or the database was, for everyone), it starts watching again
   * instead of evicting a leader that had no chance to renew either. */
  if (l->last_read_ms && now - l->last_read_ms > l->lease_ms) l->watch_since_ms = now;
  l->last_read_ms = now;
  bool renewed = ls.present && strcmp(ls.renewed, l->seen_renewed) != 0;
  if (renewed) {
    nirc_strlcpy(l->seen_renewed, ls.renewed, sizeof l->seen_renewed);
    l->watch_since_ms = now;
    l->evict_told = false;
    l->evict_ms = 0;
  }
  bool still = now - l->watch_since_ms >= l->lease_ms;
  bool mine = ls.present && strcmp(ls.node, l->node) == 0;
  leader_view_t next = *v;
  next.state = LEADER_STANDBY;
  nirc_strlcpy(next.hint, ls.present && !still ? ls.addr : "", sizeof next.hint);
  next.suspect = ls.present && now - l->watch_since_ms >= l->lease_ms / 2;
  nirc_strlcpy(next.holder, ls.present ? ls.node : "", sizeof next.holder);
  next.holder_epoch = ls.epoch;
  next.renewals = v->renewals + renewed;
  if (ls.present && !mine && !still) {
    /* Another controller leads: nothing stands in the way of a leader. */
    next.why[0] = '\0';
    next.blocked = LEADER_BLOCK_NONE;
    l->rules_locked = false;
    elect_retry_reset(&l->retry);
  }
  uint64_t fp;
  if (l->retry.marked && !elect_retry_due(&l->retry, now) && leader_rules_print(l, &fp) &&
      elect_retry_changed(&l->retry, now, fp))
    log_info(LOG_MAIN, LEADER_OBJ,
             "the rule tables changed since the rule load failed: trying again without waiting "
             "out the back-off (tries failed in a row: %u)",
             l->retry.failures);
  if ((!ls.present || mine || still) && !leader_rules_blocked(l, &next) &&
      elect_retry_due(&l->retry, now)) {
    int got = leader_try_lock(l);
    if (got == 1) {
      l->evict_ms = 0;
      v->why[0] = '\0';
      v->blocked = LEADER_BLOCK_NONE;
      leader_take(l, v);
      if (v->state == LEADER_LEADING) return;
      nirc_strlcpy(next.why, v->why, sizeof next.why);
      next.blocked = v->blocked;
    } else if (got == 0 && still) {
      leader_evict(l, &ls, &next);
    }
  }
  if (memcmp(&next, v, sizeof next) != 0) {
    if (v->state == LEADER_STARTING)
      log_info(LOG_MAIN, LEADER_OBJ, "standby: %s%s%s leads (epoch %llu)",
               next.holder[0] ? next.holder : "nobody", next.hint[0] ? " at " : "", next.hint,
               (unsigned long long)next.holder_epoch);
    *v = next;
    leader_publish(l, v, NULL);
  }
}

static void leader_lead_step(leader_t *l, leader_view_t *v) {
  if (!l->lock_pid) return; /* never renewed without the lock (leader_step reclaims it first) */
  char es[24];
  snprintf(es, sizeof es, "%llu", (unsigned long long)v->epoch);
  const char *p[] = {es};
  PGresult *r =
      leader_exec(l, "UPDATE leader_lease SET renewed_at = now() WHERE id = 1 AND epoch = $1", 1, p,
                  PGRES_COMMAND_OK);
  if (!r) {
    /* A database that did not answer is out of reach now: keep leading on
     * memory (as when it is down) rather than waiting for the reconnect
     * to time out too. Otherwise a broken connection is dealt with by the
     * next step's reconnect; an error on a live connection is not an
     * outage and not a renewal. */
    if (!l->timed_out && l->conn && strcmp(l->health.renew_err, l->last_err) != 0) {
      uv_mutex_lock(&l->mu); /* refused on a live connection: the alarm's words */
      nirc_strlcpy(l->health.renew_err, l->last_err, sizeof l->health.renew_err);
      uv_mutex_unlock(&l->mu);
    }
    if (l->timed_out && !v->db_down) {
      v->db_down = true;
      log_warn(LOG_MAIN, LEADER_OBJ, "database not answering: still leading epoch %llu on memory",
               (unsigned long long)v->epoch);
      leader_publish(l, v, NULL);
    }
    return;
  }
  bool renewed = strcmp(PQcmdTuples(r), "1") == 0;
  PQclear(r);
  if (!renewed) {
    leader_lose(l, v, "the lease names another epoch: a standby took over");
    return;
  }
  leader_touch(l);
  if (l->health.renew_err[0]) {
    uv_mutex_lock(&l->mu);
    l->health.renew_err[0] = '\0';
    uv_mutex_unlock(&l->mu);
  }
  if (v->lock_pending) {
    log_info(LOG_MAIN, LEADER_OBJ,
             "this controller's session (pid %d) holds the lock again: still leading epoch %llu",
             l->lock_pid, (unsigned long long)v->epoch);
  } else if (v->db_down) {
    log_info(LOG_MAIN, LEADER_OBJ, "database reachable again: still leading epoch %llu",
             (unsigned long long)v->epoch);
  }
  if (v->db_down || v->lock_pending) {
    v->db_down = false;
    v->lock_pending = false;
    leader_publish(l, v, NULL);
  }
}

/* Leading, but this session does not hold the lock (it is new: the one
 * that held it was given up): the lock must be this session's again, and
 * the lease still on our epoch, before anything is renewed. Called on
 * every step until then.
 *
 * Why at most one controller leads with the lock, and the lease agrees:
 * the lock is held by one session at a time; the lease is written (a new
 * epoch in leader_take, a renewal of our own epoch in leader_lead_step)
 * only on a session whose pg_try_advisory_lock returned true (lock_pid),
 * and that session still holds the lock when it writes, because a session
 * lets go of it only by ending (after which nothing runs on it) or by our
 * unlock (which clears lock_pid). So every lease write comes from the
 * lock's holder of the moment. A controller whose old session still holds
 * the lock waits for it here, renewing nothing: it does not lead on a
 * lease it cannot back with the lock. Its lease then runs out (it issues
 * nothing once its last renewal is a lease old: leader_may_issue), and
 * once the old session has ended, the lock goes to whoever asks first.
 * If that is a standby, it takes a new epoch under the lock, and we step
 * down when we find the lock taken or the lease on that epoch; if it is
 * us, the lease is still on our epoch (nobody else could write it
 * meanwhile) and we renew it. Before this, the wait ended after one
 * pg_terminate_backend, which returns as soon as the signal is sent:
 * the next step renewed the lease on a session without the lock, and
 * after the old backend ended, nobody held it while the renewed lease
 * kept the standbys from asking.
 *
 * The old session is known by its pid alone: were that pid reused by
 * another controller's session holding the lock, we would wait (and ask to
 * end that session) until our lease runs out; an election, not two
 * leaders. */
static void leader_reclaim(leader_t *l, leader_view_t *v) {
  int got = leader_try_lock(l);
  if (got < 0) return;
  if (got == 0) {
    int holder = leader_holder(l);
    if (holder <= 0) return; /* no answer, or let go meanwhile: try again on the next step */
    if (holder != l->old_pid) {
      leader_lose(l, v, "another controller holds the leader lock");
      return;
    }
    /* Said once; if it lasts a lease of issuing nothing, the leadership
     * alarm and this controller's answers say it (elect.c, server.c). */
    if (!l->old_asked) {
      l->old_asked = true;
      log_warn(LOG_MAIN, LEADER_OBJ,
               "asked PostgreSQL to end this controller's old session (pid %d), which still "
               "holds the lock; the lease of epoch %llu is not renewed until this session "
               "(pid %d) holds it",
               holder, (unsigned long long)v->epoch, PQbackendPID(l->conn));
    }
    /* Reachable, so not leading on memory: leader_may_issue stops once
     * the last renewal is a lease old, when a standby may take over. */
    if (!v->lock_pending || v->db_down) {
      v->lock_pending = true;
      v->db_down = false;
      leader_publish(l, v, NULL);
    }
    return;
  }
  elect_lease_t ls;
  if (!leader_read_lease(l, &ls)) return;
  if (!ls.present || ls.epoch != v->epoch) {
    leader_unlock(l);
    char who[200];
    snprintf(who, sizeof who, "%s took epoch %llu while the database was out of reach",
             ls.present ? ls.node : "another controller", (unsigned long long)ls.epoch);
    leader_lose(l, v, who);
    return;
  }
  leader_lead_step(l, v);
}

static void leader_step(leader_t *l, leader_view_t *v) {
  if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) {
    leader_disconnect(l);
    if (!leader_connect(l)) {
      if (v->state == LEADER_LEADING && !v->db_down) {
        v->db_down = true;
        log_warn(LOG_MAIN, LEADER_OBJ, "database out of reach: still leading epoch %llu on memory",
                 (unsigned long long)v->epoch);
        leader_publish(l, v, NULL);
      }
      return;
    }
  }
  /* Leading needs the lock on this very session: after a reconnect, and
   * for as long as our old session still holds it, nothing else is done. */
  if (v->state == LEADER_LEADING && !l->lock_pid) {
    leader_reclaim(l, v);
    return;
  }
  switch (v->state) {
  case LEADER_STARTING:
  case LEADER_STANDBY: leader_standby_step(l, v); break;
  case LEADER_LEADING: leader_lead_step(l, v); break;
  default: return;
  }
  leader_poll_notifies(l);
  leader_watch_stuck(l, v->state == LEADER_LEADING);
  uv_mutex_lock(&l->mu);
  if (l->sites_asked) l->sites_dirty = true;
  l->sites_asked = false;
  uv_mutex_unlock(&l->mu);
  leader_load_sites(l);
}

void leader_reload_sites(leader_t *l) {
  if (!l) return;
  uv_mutex_lock(&l->mu);
  l->sites_asked = true;
  uv_mutex_unlock(&l->mu);
}

static void leader_main(void *arg) {
  leader_t *l = arg;
  leader_view_t v;
  memset(&v, 0, sizeof v);
  v.state = LEADER_STARTING;
  uv_mutex_lock(&l->mu);
  while (!l->stop && v.state != LEADER_LOST) {
    uv_mutex_unlock(&l->mu);
    leader_step(l, &v);
    uv_mutex_lock(&l->mu);
    if (!l->stop && v.state != LEADER_LOST)
      (void)uv_cond_timedwait(&l->cond, &l->mu, l->period_ms * 1000000u);
  }
  uv_mutex_unlock(&l->mu);
  if (!l->stop_by_ms) l->stop_by_ms = leader_mono_ms() + LEADER_STOP_GRACE_MS;
  /* A clean stop hands over at once: without a lease row a standby takes
   * the lock on its next step instead of waiting a lease out. A deletion
   * that fails is logged only (leader_exec): this controller is exiting,
   * with no alarm table left to raise it in, and the cost is bounded (a
   * standby takes over once the lease runs out). */
  if (v.state == LEADER_LEADING && l->conn) {
    char es[24];
    snprintf(es, sizeof es, "%llu", (unsigned long long)v.epoch);
    const char *p[] = {es};
    PQclear(leader_exec(l, "DELETE FROM leader_lease WHERE id = 1 AND epoch = $1", 1, p,
                        PGRES_COMMAND_OK));
  }
  leader_disconnect(l);
}

/* ---- loop side ---- */

static void leader_on_closed(uv_handle_t *h);

static void leader_on_async(uv_async_t *h) {
  leader_t *l = h->data;
  leader_view_t v;
  admin_rules_t rules;
  bool have_rules;
  uv_mutex_lock(&l->mu);
  sites_t *snap = l->sites;
  l->sites = NULL;
  v = l->view;
  have_rules = l->rules_ready;
  if (have_rules) rules = l->rules;
  l->rules_ready = false;
  uv_mutex_unlock(&l->mu);
  /* Sites first: rules loaded below may name a site just added. */
  if (snap) {
    if (l->cb && l->on_sites) l->on_sites(l->arg, snap);
    sites_free(snap);
    free(snap);
  }
  if (l->cb) {
    l->cb(l->arg, &v, have_rules ? &rules : NULL);
  } else if (have_rules) {
    admin_rules_free(&rules);
  }
}

int leader_start(uv_loop_t *loop, const leader_opts_t *o, leader_cb cb, void *arg, leader_t **out) {
  leader_t *l = calloc(1, sizeof *l);
  if (!l) return NIRC_ENOMEM;
  l->loop = loop;
  l->cb = cb;
  l->arg = arg;
  l->conninfo = strdup(o->conninfo);
  l->node = strdup(o->node);
  l->advertise = strdup(o->advertise);
  l->lease_ms = o->lease_timeout_ms ? o->lease_timeout_ms : 3000;
  l->on_sites = o->on_sites;
  l->period_ms = l->lease_ms / 4 ? l->lease_ms / 4 : 1;
  l->view.state = LEADER_STARTING;
  l->wake[0] = l->wake[1] = -1;
  if (!l->conninfo || !l->node || !l->advertise) goto fail;
  if (pipe(l->wake) != 0) {
    l->wake[0] = l->wake[1] = -1;
    goto fail;
  }
  for (int i = 0; i < 2; i++) {
    fcntl(l->wake[i], F_SETFD, FD_CLOEXEC);
    fcntl(l->wake[i], F_SETFL, O_NONBLOCK);
  }
  if (uv_mutex_init(&l->mu) != 0) goto fail_pipe;
  if (uv_cond_init(&l->cond) != 0) {
    uv_mutex_destroy(&l->mu);
    goto fail_pipe;
  }
  uv_async_init(loop, &l->async, leader_on_async);
  l->async.data = l;
  if (uv_thread_create(&l->thread, leader_main, l) != 0) {
    /* Freed once the loop has closed the handle (the caller runs it). */
    l->cb = NULL;
    uv_close((uv_handle_t *)&l->async, leader_on_closed);
    *out = NULL;
    return NIRC_ENOMEM;
  }
  l->thread_started = true;
  *out = l;
  return 0;
fail_pipe:
  close(l->wake[0]);
  close(l->wake[1]);
fail:
  free(l->conninfo);
  free(l->node);
  free(l->advertise);
  free(l);
  return NIRC_ENOMEM;
}

static void leader_on_closed(uv_handle_t *h) {
  leader_t *l = h->data;
  void (*done)(void *) = l->done;
  void *done_arg = l->done_arg;
  if (l->rules_ready) admin_rules_free(&l->rules);
  if (l->sites) {
    sites_free(l->sites);
    free(l->sites);
  }
  uv_cond_destroy(&l->cond);
  uv_mutex_destroy(&l->mu);
  close(l->wake[0]);
  close(l->wake[1]);
  free(l->conninfo);
  free(l->node);
  free(l->advertise);
  free(l);
  if (done) done(done_arg);
}

void leader_stop(leader_t *l, void (*done)(void *arg), void *arg) {
  if (!l) {
    if (done) done(arg);
    return;
  }
  l->done = done;
  l->done_arg = arg;
  l->cb = NULL;
  if (l->thread_started) {
    uv_mutex_lock(&l->mu);
    l->stop = true;
    uv_cond_signal(&l->cond);
    uv_mutex_unlock(&l->mu);
    /* Ends a wait on the database at once (the pipe never fills: one byte
     * per stop, and only one stop). */
    if (write(l->wake[1], "s", 1) != 1)
      log_warn(LOG_MAIN, LEADER_OBJ, "waking the election thread: %s", strerror(errno));
    uv_thread_join(&l->thread);
    l->thread_started = false;
  }
  if (!uv_is_closing((uv_handle_t *)&l->async))
    uv_close((uv_handle_t *)&l->async, leader_on_closed);
}

void leader_view(leader_t *l, leader_view_t *out) {
  uv_mutex_lock(&l->mu);
  *out = l->view;
  uv_mutex_unlock(&l->mu);
}

bool leader_stuck(leader_t *l, elect_stuck_t *out) {
  memset(out, 0, sizeof *out);
  if (!l) return false;
  uv_mutex_lock(&l->mu);
  *out = l->stuck;
  uv_mutex_unlock(&l->mu);
  return out->pid != 0;
}

void leader_health(leader_t *l, elect_health_t *out) {
  memset(out, 0, sizeof *out);
  if (!l) return;
  uv_mutex_lock(&l->mu);
  *out = l->health;
  out->leading = l->view.state == LEADER_LEADING;
  out->epoch = l->view.epoch;
  uv_mutex_unlock(&l->mu);
}

bool leader_may_issue(leader_t *l) {
  if (!l) return true;
  uv_mutex_lock(&l->mu);
  uint64_t now = leader_mono_ms();
  /* The loop asks every tick (200 ms) while it leads: a gap of a lease
   * means this process did not run (SIGSTOP, a frozen host), and a standby
   * may have taken over meanwhile, also when the database went down after
   * that and cannot tell us. Leading on memory is for an outage seen while
   * running; after such a gap a renewal must confirm the lease first. */
  uint64_t gap = l->asked_ms ? now - l->asked_ms : 0;
  if (gap >= l->lease_ms) l->unconfirmed_ms = now;
  l->asked_ms = now;
  bool ok =
      l->view.state == LEADER_LEADING &&
      (l->view.db_down ? l->last_ok_ms >= l->unconfirmed_ms : now - l->last_ok_ms < l->lease_ms);
  bool down = l->view.db_down;
  /* For the leadership alarm (elect_alarm_words): since when it issues
   * nothing, and the pause that began it. */
  if (ok || l->view.state != LEADER_LEADING) {
    l->health.quiet_since_ms = 0;
    l->health.paused_ms = 0;
  } else {
    if (!l->health.quiet_since_ms) l->health.quiet_since_ms = now;
    if (gap >= l->lease_ms) l->health.paused_ms = gap;
  }
  uv_mutex_unlock(&l->mu);
  /* A log line, not an alarm: the next renewal confirms the lease within
   * a period (or finds it lost, and this controller stops), and then
   * nothing is wrong any more. One that cannot confirm it for a lease
   * (the database out of reach) raises the leadership alarm (elect.c). */
  if (gap >= l->lease_ms && !ok)
    log_warn(LOG_MAIN, LEADER_OBJ,
             "this controller did not run for %llu ms (paused?): issuing nothing until its lease "
             "is confirmed%s",
             (unsigned long long)gap, down ? " (the database is out of reach)" : "");
  return ok;
}
