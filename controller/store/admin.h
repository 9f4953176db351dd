/* admin: blocking database work done before the event loop starts
 * (start-up) or by one-shot commands (nircd import-sites). Never called
 * from the loop; the running controller uses db.c. */
#ifndef NIRC_ADMIN_H
#define NIRC_ADMIN_H

#include "engine.h"
#include "rules.h"
#include "scenario.h"
#include "sites.h"

#include <stddef.h>
#include <stdint.h>

/* What an import did. Sites the database has and the file does not name
 * are kept (never removed silently: nircctl site remove does that), and
 * sites an operator removed stay removed (nircctl site add brings one back). */
typedef struct {
  size_t added, updated, skipped_removed, missing;
  char removed[512];      /* the skipped removed sites, "a,b" (cut when long) */
  char missing_list[512]; /* the sites kept that the file does not name, escaped (safetext) */
} admin_import_t;
/* Upserts every site of the scenario into the sites table, with an audit
 * row by `actor` naming `file`, in one transaction. Every controller
 * running on the database picks the change up (schema 010's notification).
 * business_ms (borrowed) is the row's business time, read from the same
 * [clock] as the controllers' (clock_reproducible); NULL when that clock
 * cannot be read here: the row has none, and history places it by its
 * real time. */
int admin_import_sites(const char *conninfo, const scenario_t *sc, const char *actor,
                       const char *file, const int64_t *business_ms, admin_import_t *st, char *err,
                       size_t errlen);
/* Loads the sites table into the registry (removed sites as REMOVED). */
int admin_load_sites(const char *conninfo, sites_t *sites, char *err, size_t errlen);
/* The same from a connection of the caller's (store/leader.c, whose
 * statements are bounded in time): the query, and its result into the
 * registry. */
extern const char *const admin_sites_sql;
struct pg_result;
int admin_sites_from_result(struct pg_result *r, sites_t *sites, char *err, size_t errlen);
/* Rules in force, for the engine at start-up. Arrays are malloc'd (owned
 * by the caller); max_id is the highest rule id ever used. */
/* One site's configured capacity (sites.seats, roster, offset). */
typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  capacity_t cap;
} admin_capacity_t;

typedef struct {
  cutover_t *cutovers;
  size_t n_cutovers;
  schedule_t *schedules;
  size_t n_schedules;
  overflow_rule_t *overflows;
  size_t n_overflows;
  planner_overflow_state_t *overflow_states; /* one per overflow rule, same order */
  engine_exclusion_t *exclusions;            /* sites kept out after a failed move */
  size_t n_exclusions;
  engine_hold_t *holds; /* sources' capacity damping state */
  size_t n_holds;
  engine_return_hold_t *return_holds; /* sites held home after early returns */
  size_t n_return_holds;
  engine_hub_history_t *hubs; /* hubs' recent losses */
  size_t n_hubs;
  sites_load_t *load; /* sites' recent load, from load_minute */
  size_t n_load;
  alarm_t *alarms; /* alarms not cleared */
  size_t n_alarms;
  /* Every site's configured capacity as stored now: a standby loaded the
   * sites when it started, and an operator may have changed them since. */
  admin_capacity_t *capacity;
  size_t n_capacity;
  /* Each site's newest directive under a rule (engine_last_directive_t). */
  engine_last_directive_t *last_dirs;
  size_t n_last_dirs;
  uint64_t max_id;
} admin_rules_t;

/* NIRC_ETIMEOUT: another session held a lock in the way (on a rule table,
 * or ACCESS EXCLUSIVE on another table the load reads) for longer than the
 * load waits (lock_wait_ms); NIRC_ECLOSED: stop_fd became readable and the
 * load was given up at once; any other failure is NIRC_EDB, with
 * the reason in err (one that did not answer within budget_ms says so, with
 * its session's backend pid). */
typedef struct {
  /* The whole load, on its own connection: connecting and every
   * statement (client side, and statement_timeout on the server). 0: no
   * bound (start-up tools and tests only). */
  uint64_t budget_ms;
  uint64_t lock_wait_ms; /* lock_timeout of the rule tables' SHARE locks */
  /* Polled with the connection (budget_ms > 0 only): once readable, the
   * caller is stopping and the load ends at once instead of waiting for a
   * hung database or a lock. Borrowed; NULL: none. */
  const int *stop_fd;
  /* Set to the backend pid of a load given up without its answer (a
   * statement that outlasted the budget, or a stop), 0 otherwise: closing
   * the connection does not end a backend that does not run, and one that
   * took the SHARE locks keeps them until it ends (store/leader.c finds it
   * and asks PostgreSQL to end it). NULL: not asked. */
  int *pid;
  /* Set true when the load failed on what the database answered (a row it
   * cannot read, an error), false otherwise (no answer, no connection, a
   * stop, or no failure). NULL: not asked. */
  bool *answered;
} admin_load_opts_t;
int admin_load_rules_within(const char *conninfo, const admin_load_opts_t *o, admin_rules_t *out,
                            char *err, size_t errlen);
/* The same without a budget, waiting 2 s for the locks. */
int admin_load_rules(const char *conninfo, admin_rules_t *out, char *err, size_t errlen);
void admin_rules_free(admin_rules_t *r);

/* Takes a new leadership epoch from epoch_seq and records it. */
int admin_new_epoch(const char *conninfo, const char *node, uint64_t *epoch, char *err,
                    size_t errlen);

#endif
