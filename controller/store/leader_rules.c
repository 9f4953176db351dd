/* leader_rules: what stands in the way of a new leader's rule load, and
 * how it is said (leader-int.h). Runs on the election thread. */
#include "leader-int.h"

#include "elect.h"
#include "log.h"
#include "safetext.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sessions in the way of the SHARE locks and SELECTs of
 * admin_load_rules, other than this session: those holding a lock on a
 * rule table in a mode that conflicts with SHARE (any writer, or a LOCK
 * TABLE), or ACCESS EXCLUSIVE on another table the load reads; and those
 * waiting for such a lock, which the load queues behind (an ALTER TABLE
 * waiting for a long reader), with the sessions they wait for
 * (pg_blocking_pids). Read after the load gave up, so the load's own
 * session is gone. A prepared transaction has no pid (0 here). Details of
 * other roles' sessions are hidden from a role without pg_read_all_stats
 * (state NULL). Holders first. */
static const char leader_holders_sql[] =
    "SELECT coalesce(l.pid, 0), string_agg(DISTINCT c.relname, ', ' ORDER BY c.relname), "
    "coalesce(a.application_name, ''), CASE WHEN a.client_addr IS NOT NULL THEN "
    "host(a.client_addr) WHEN a.client_port = -1 THEN 'local socket' ELSE '' END, "
    "coalesce(a.state, ''), coalesce(to_char(a.xact_start AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD HH24:MI:SS'), ''), NOT l.granted, CASE WHEN l.granted THEN '' ELSE "
    "array_to_string(pg_blocking_pids(l.pid), ', ') END FROM pg_locks l JOIN pg_class c ON "
    "c.oid = l.relation LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = "
    "'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
    "current_database()) AND ((l.relation IN ('cutovers'::regclass, 'schedules'::regclass, "
    "'overflow_rules'::regclass, 'route_exclusions'::regclass, 'route_holds'::regclass, "
    "'route_return_holds'::regclass) AND "
    "l.mode IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareRowExclusiveLock', "
    "'ExclusiveLock', 'AccessExclusiveLock')) OR (l.relation IN ('alarms'::regclass, "
    "'directives'::regclass, 'sites'::regclass, 'link_events'::regclass, "
    "'load_minute'::regclass) AND l.mode = 'AccessExclusiveLock')) AND l.pid IS DISTINCT FROM "
    "pg_backend_pid() GROUP BY 1, 3, 4, 5, 6, 7, 8 ORDER BY 7, 1 LIMIT 4";

/* Says who holds (or waits for) locks in the way of the rule load, and how
 * to end them, in `out` (one sentence for an operator; the names that come
 * from the database escaped), and the set as "pid:tables;..." in `sig`.
 * Returns how many sessions stand in the way (0: none now), -1 without an
 * answer. */
int leader_rule_holders(leader_t *l, char *out, size_t n, char *sig, size_t sn) {
  PGresult *r = leader_exec(l, leader_holders_sql, 0, NULL, PGRES_TUPLES_OK);
  if (!r) return -1;
  int rows = PQntuples(r);
  size_t used = 0, sused = 0;
  char pids[96] = "";
  out[0] = sig[0] = '\0';
  for (int i = 0; i < rows; i++) {
    int pid = atoi(PQgetvalue(r, i, 0));
    const char *tables = PQgetvalue(r, i, 1), *client = PQgetvalue(r, i, 3);
    const char *state = PQgetvalue(r, i, 4), *since = PQgetvalue(r, i, 5);
    bool waits = PQgetvalue(r, i, 6)[0] == 't';
    const char *behind = PQgetvalue(r, i, 7);
    char app[64];
    safetext_escape(PQgetvalue(r, i, 2), app, sizeof app); /* any client names itself */
    bool several = strchr(tables, ',') != NULL;
    char who[240];
    if (pid == 0)
      snprintf(who, sizeof who, "a prepared transaction (see pg_prepared_xacts)");
    else if (!state[0])
      snprintf(who, sizeof who,
               "pid %d (its details are hidden from the controller's role: grant it "
               "pg_read_all_stats)",
               pid);
    else
      snprintf(who, sizeof who, "pid %d (%s, %s, %s%s%s%s)", pid, app[0] ? app : "no name",
               client[0] ? client : "?", state, since[0] ? " since " : "", since,
               since[0] ? " UTC" : "");
    if (waits)
      used += (size_t)snprintf(
          out + used, used < n ? n - used : 0, "%s%s waits for table%s %s, ahead of the load%s%s",
          i ? "; " : "", who, several ? "s" : "", tables, behind[0] ? ", behind pid " : "", behind);
    else
      used +=
          (size_t)snprintf(out + used, used < n ? n - used : 0, "%stable%s %s %s locked by %s",
                           i ? "; " : "", several ? "s" : "", tables, several ? "are" : "is", who);
    sused += (size_t)snprintf(sig + sused, sused < sn ? sn - sused : 0, "%d%s:%s;", pid,
                              waits ? "w" : "", tables);
    if (pid) {
      size_t pl = strlen(pids);
      snprintf(pids + pl, sizeof pids - pl, "%sSELECT pg_terminate_backend(%d)", pl ? "; " : "",
               pid);
    }
  }
  PQclear(r);
  if (rows == 0)
    snprintf(out, n,
             "the rule tables were locked for longer than the load waits (%llu ms) and no "
             "session holds or waits for a conflicting lock now: it let go meanwhile",
             (unsigned long long)leader_lock_wait_ms(l));
  else if (pids[0] && used < n)
    snprintf(out + used, n - used, "; end %s (%s) if %s not a controller",
             rows > 1 ? "those sessions" : "that session", pids, rows > 1 ? "they are" : "it is");
  return rows;
}

/* The rule loads' backends that hold locks or may: this controller's own
 * given-up load ($1, 0: none), asked to end (again: a signal already
 * pending is no harm); and, for a leader ($2, its lease in ms; 0: not
 * asked), any load whose statement began more than a lease ago. A load
 * runs within three quarters of a lease on the server too
 * (statement_timeout) and only while its controller holds the leader lock,
 * which a leader holds itself: such a backend is another controller's
 * given-up load (one that restarted since, or a standby's), that does not
 * run. With the rule tables each holds locks on (none: it holds nothing in
 * the way). Name and database tell a load's backend from another that got
 * its pid after it ended (pg_stat_activity lists every database of the
 * server, as pg_locks does: see LEADER_THIS_DB). Its own first. */
static const char leader_stuck_sql[] =
    "SELECT a.pid, CASE WHEN a.pid = $1::int THEN pg_terminate_backend(a.pid) END, "
    "coalesce((SELECT string_agg(DISTINCT c.relname, ', ' ORDER BY c.relname) FROM pg_locks l "
    "JOIN pg_class c ON c.oid = l.relation WHERE l.pid = a.pid AND l.granted AND l.locktype = "
    "'relation' AND l.relation IN ('cutovers'::regclass, 'schedules'::regclass, "
    "'overflow_rules'::regclass, 'route_exclusions'::regclass, 'route_holds'::regclass, "
    "'route_return_holds'::regclass)), '') FROM pg_stat_activity a WHERE a.application_name = "
    "'nircd-rule-load' AND a.datname = current_database() AND (a.pid = $1::int OR ($2::bigint > "
    "0 AND a.query_start < now() - $2::bigint * interval '1 millisecond')) ORDER BY a.pid = "
    "$1::int DESC, a.pid LIMIT 8";

/* The alarm's copy (leader_health), under the lock. */
static void leader_seen_stuck(leader_t *l, int pid, const char *tables) {
  uv_mutex_lock(&l->mu);
  l->health.stuck.pid = pid;
  nirc_strlcpy(l->health.stuck.tables, tables, sizeof l->health.stuck.tables);
  uv_mutex_unlock(&l->mu);
}

/* A load given up without an answer closed its connection, but a backend
 * that does not run (stopped, stuck in the kernel or on storage) does not
 * see that, nor its statement_timeout: one that took the SHARE locks keeps
 * them until it runs again, and every write to the rule tables waits for
 * it meanwhile (an operator's change, a DBA's UPDATE; and a new load
 * queues behind such a waiting write: leader_rule_holders names it). A
 * new load itself is not held up (SHARE admits SHARE), and reads the rules
 * whole. So the controller may lead; it says once which backend holds the
 * locks and how to end it, and once that it ended. Called after such a
 * load and on every step until it ends (one statement a period).
 *
 * A leader also looks for any controller's given-up load every step: the
 * one whose load it was watches its own only while it runs, and has no
 * alarm table while it stands by, so without this the leader an operator
 * asks (nircctl alarms) knew nothing of a standby's stuck load, nor of one
 * left by a controller that restarted since. One statement a period; its
 * pg_locks lookup runs only for a load's backend found. */
void leader_watch_stuck(leader_t *l, bool leading) {
  if (!l->conn) return; /* dropped this step (no answer): asked again on the next */
  if (!l->stuck_pid && !leading) {
    if (l->health.stuck.pid) leader_seen_stuck(l, 0, "");
    return;
  }
  char pid[16], lease[24];
  snprintf(pid, sizeof pid, "%d", l->stuck_pid);
  snprintf(lease, sizeof lease, "%llu", leading ? (unsigned long long)l->lease_ms : 0ULL);
  const char *p[] = {pid, lease};
  PGresult *r = leader_exec(l, leader_stuck_sql, 2, p, PGRES_TUPLES_OK);
  if (!r) return; /* no answer: asked again on the next step */
  const char *tables = "";
  int seen = 0;
  const char *seen_tables = "";
  for (int i = 0; i < PQntuples(r); i++) {
    int rpid = atoi(PQgetvalue(r, i, 0));
    const char *t = PQgetvalue(r, i, 2);
    if (rpid == l->stuck_pid && l->stuck_pid) tables = t;
    if (!seen && t[0]) {
      seen = rpid;
      seen_tables = t;
    }
  }
  if (seen != l->health.stuck.pid || strcmp(seen_tables, l->health.stuck.tables) != 0)
    leader_seen_stuck(l, seen, seen_tables);
  if (!l->stuck_pid) {
    PQclear(r);
    return;
  }
  if (!tables[0]) {
    /* Cleared before the log says so: /metrics is 0 once it is said. */
    uv_mutex_lock(&l->mu);
    memset(&l->stuck, 0, sizeof l->stuck);
    uv_mutex_unlock(&l->mu);
    if (l->stuck_told)
      log_info(LOG_MAIN, LEADER_OBJ,
               "the rule load of epoch %llu given up earlier (pid %d) has ended: writes to the "
               "rule tables no longer wait for it",
               (unsigned long long)l->stuck_epoch, l->stuck_pid);
    l->stuck_pid = 0;
    l->stuck_told = false;
  } else if (!l->stuck_told) {
    l->stuck_told = true;
    /* For the loop: the alarm on a leader, /metrics and the answers on a
     * standby (server_observe_store, web.c), until it ends. */
    uv_mutex_lock(&l->mu);
    l->stuck.pid = l->stuck_pid;
    nirc_strlcpy(l->stuck.tables, tables, sizeof l->stuck.tables);
    uv_mutex_unlock(&l->mu);
    log_error(LOG_MAIN, LEADER_OBJ,
              "the rule load of epoch %llu, given up without an answer, still holds SHARE locks on "
              "%s in its session (pid %d): every write to those tables waits until it ends. "
              "PostgreSQL was asked to end it (pg_terminate_backend(%d)), which a backend that "
              "does not run carries out only once it runs again: look at pid %d on the database "
              "host (ps -o pid,stat,wchan -p %d; a stopped one, state T, ends on kill -CONT %d), "
              "or restart PostgreSQL",
              (unsigned long long)l->stuck_epoch, tables, l->stuck_pid, l->stuck_pid, l->stuck_pid,
              l->stuck_pid, l->stuck_pid);
  }
  PQclear(r);
}

/* Says why this controller, having won the election, does not lead: in
 * the log when the holders differ from those last logged, and in the view
 * (`v->why`, which its standby answers carry). */
void leader_tell_locked(leader_t *l, leader_view_t *v, const char *holders, const char *sig) {
  snprintf(v->why, sizeof v->why,
           "no controller leads: %s won the election (epoch %llu) but cannot load the rules: %s; "
           "it leads once they let go (it looks every %llu ms)",
           l->node, (unsigned long long)l->locked_epoch, holders, (unsigned long long)l->period_ms);
  v->blocked = LEADER_BLOCK_RULES_LOCKED;
  if (strcmp(sig, l->locked_told) != 0 || !l->locked_told[0]) {
    log_error(LOG_MAIN, LEADER_OBJ, "%s", v->why);
    nirc_strlcpy(l->locked_told, sig[0] ? sig : "-", sizeof l->locked_told);
  }
}

/* Says why this controller, having won the election, does not lead when
 * the rules could not be loaded for another reason than a lock held (a
 * corrupt row, a database that does not answer), and schedules the next
 * try (elect.h): in the view every time, in the log once per reason and
 * then every ELECT_TELL_EVERY_MS. */
void leader_tell_failed(leader_t *l, leader_view_t *v, uint64_t epoch, const char *err) {
  uint64_t now = leader_mono_ms();
  bool tell = elect_retry_failed(&l->retry, now, l->period_ms, err);
  char said[400]; /* PostgreSQL's words may quote a row's bytes */
  safetext_escape(err, said, sizeof said);
  snprintf(v->why, sizeof v->why,
           "no controller leads: %s won the election (epoch %llu) but cannot load the rules: %s; "
           "it tries again in %llu ms (tries failed in a row: %u)",
           l->node, (unsigned long long)epoch, said, (unsigned long long)(l->retry.next_ms - now),
           l->retry.failures);
  v->blocked = LEADER_BLOCK_RULES_LOAD;
  if (tell)
    log_error(LOG_MAIN, LEADER_OBJ, "%s (said again when the reason changes, else every %u s)",
              v->why, ELECT_TELL_EVERY_MS / 1000u);
}

/* A fingerprint of every row of the rule tables (identity and version:
 * any insert, update or delete changes it), read after a load failed on
 * a row and on each step while the next try waits (elect_retry_changed):
 * a mended row is tried within ELECT_CHANGED_MIN_MS instead of the
 * back-off's up to 30 s. Scans tables that hold rules and their history,
 * only while this controller waits to lead and nobody leads. A mend
 * between the failed load and the first read is missed (the back-off
 * still tries it). */
static const char leader_rules_print_sql[] =
    "SELECT (SELECT coalesce(sum(hashtext(ctid::text || xmin::text)::bigint + 4294967296), 0) "
    "FROM cutovers) + (SELECT coalesce(sum(hashtext(ctid::text || xmin::text)::bigint + "
    "4294967296), 0) FROM schedules) + (SELECT coalesce(sum(hashtext(ctid::text || "
    "xmin::text)::bigint + 4294967296), 0) FROM overflow_rules) + (SELECT "
    "coalesce(sum(hashtext(ctid::text || xmin::text)::bigint + 4294967296), 0) FROM "
    "route_exclusions) + (SELECT coalesce(sum(hashtext(ctid::text || xmin::text)::bigint + "
    "4294967296), 0) FROM route_holds) + (SELECT coalesce(sum(hashtext(ctid::text || "
    "xmin::text)::bigint + 4294967296), 0) FROM route_return_holds)";

bool leader_rules_print(leader_t *l, uint64_t *out) {
  PGresult *r = leader_exec(l, leader_rules_print_sql, 0, NULL, PGRES_TUPLES_OK);
  if (!r) return false;
  *out = (uint64_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return true;
}

/* True while the sessions that kept this controller from loading the
 * rules on its last win still hold locks on rule tables: it does not take
 * the lock and a new epoch only to wait 2 s and fail again (a new epoch
 * per period would fence nothing more, and fill the epochs table). Says
 * who holds them (their set may change) in `next`. Also true without an
 * answer, to ask again on the next period. */
bool leader_rules_blocked(leader_t *l, leader_view_t *next) {
  if (!l->rules_locked) return false;
  char holders[sizeof next->why], sig[sizeof l->locked_told];
  int n = leader_rule_holders(l, holders, sizeof holders, sig, sizeof sig);
  if (n < 0) return true;
  if (n > 0) {
    leader_tell_locked(l, next, holders, sig);
    return true;
  }
  l->rules_locked = false;
  nirc_strlcpy(l->locked_told, "let go", sizeof l->locked_told);
  next->why[0] = '\0';
  next->blocked = LEADER_BLOCK_NONE;
  elect_retry_reset(&l->retry); /* the cause is gone: tried at once */
  log_info(LOG_MAIN, LEADER_OBJ, "the sessions locking the rule tables let go: trying to lead");
  return false;
}
