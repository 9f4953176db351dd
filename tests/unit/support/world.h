/* world: the routing engine's world for unit tests, without a loop, a
 * socket or a database. It implements engine_io_t with arrays (directives
 * sent, operator replies, stored records), moves both clocks by hand,
 * plays the site agents (Hello, reports, acks, links going down), and
 * keeps the rule tables the engine stored the way PostgreSQL would, so a
 * second engine can take over from them as a new leader does.
 *
 * A test may chain a real store behind it (store_next): every record then
 * also goes there and that store runs the completion callbacks. Shared by
 * test_engine (pure) and test_takeover (real PostgreSQL). */
#ifndef NIRC_TEST_WORLD_H
#define NIRC_TEST_WORLD_H

#include "engine.h"
#include "route.h"
#include "rules.h"
#include "sites.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2020-01-23 12:00 in Asia/Shanghai (04:00 UTC), the day Wuhan closed. */
#define WORLD_T0_MS 1579752000000LL
/* The real clock: 2026-12-05 03:12:00 UTC (a night shift). */
#define WORLD_WALL0_MS 1796440320000LL
#define WORLD_MAX      4096

typedef struct {
  size_t site;
  route_t route;
} world_sent_t;

typedef struct {
  engine_rec_kind_t kind;
  char action[48], site[32], detail[2048];
  int64_t at_ms, wall_ms;    /* business and real time the record says it happened */
  alarm_event_t alarm_event; /* ENGINE_REC_ALARM: raised, cleared, ... */
} world_rec_t;

typedef struct {
  uint64_t request_id;
  int ok;
  Nirc__OperatorReply__BodyCase body;
  Nirc__ErrorCode code;
  uint32_t applied, failed, pending;
  char msg[512];
  Nirc__OperatorReply *full; /* the whole reply, copied (world_free frees it) */
} world_reply_t;

typedef struct {
  uint64_t mono;
  int64_t now;  /* business clock */
  int64_t wall; /* real clock */
  bool leading;
  sites_t *sites; /* owned */
  world_sent_t sent[WORLD_MAX];
  size_t n_sent;
  world_rec_t rec[WORLD_MAX];
  size_t n_rec;
  world_reply_t rep[WORLD_MAX];
  size_t n_rep;
  size_t n_progress;
  char progress[4096]; /* the progress lines sent, one a line (cut when full) */
  /* What each site's agent routes by: the newest route it applied (home
   * until it applied one). */
  route_t applied[16];
  bool down[16]; /* the site's link is down (world_link_down) */
  /* Its agent applied applied[i] without a read-back: its Hello says so
   * (route_unverified). Set by world_ack from ack_unverified. */
  bool hello_unverified[16];
  /* What each site's agent says in its Hello of when it went home on its
   * own (at_ms 0: nothing, as an older agent). */
  engine_went_home_t went_home[16];
  unsigned agents[16]; /* staffed agents its reports give (world_staff) */
  /* Completions of stored records, run by world_flush (as a database
   * commits later), unless store_next runs them. */
  struct {
    engine_stored_cb done;
    void *arg;
  } pending[WORLD_MAX];
  size_t n_pending;
  int (*store_next)(void *ctx, const engine_rec_t *rec, engine_stored_cb done, void *arg);
  /* What the store says before a change (store_ready): 0, or a refusal
   * with store_why. */
  int store_refuse;
  /* What a failing site says in its ack (world_ack); NULL: a plain reason. */
  const char *fail_detail;
  /* The marks of those acks (DirectiveAck): applied ones are unverified,
   * failed ones have their outcome unknown. */
  bool ack_unverified, fail_outcome_unknown;
  char store_why[200];
  /* The store_fail_in-th record from now is refused with store_fail_rc
   * (1: the next one; 0: none). */
  unsigned store_fail_in;
  int store_fail_rc;
  void *store_ctx;
  /* The rule tables as PostgreSQL keeps them (active and ended). */
  cutover_t cut[256];
  size_t n_cut;
  schedule_t sch[64];
  size_t n_sch;
  overflow_rule_t ovf[32];
  planner_overflow_state_t ovf_state[32]; /* as stored, same index */
  size_t n_ovf;
  uint64_t max_id;
} world_t;

/* Four sources and three hubs, as in w_sources / w_hubs. */
extern const char *const world_sources[4];
extern const char *const world_hubs[3];

/* A world at WORLD_T0_MS with the seven sites registered (never seen). */
world_t *world_new(void);
void world_free(world_t *w);
/* An engine whose engine_io_t is this world (caller frees it), with the
 * test defaults (no damping) or with the given options. */
engine_t *world_engine(world_t *w);
/* The test options: without damping (the behaviour before it), or with
 * nircd's damping defaults. */
engine_opts_t world_opts(bool damped);
engine_t *world_engine_with(world_t *w, const engine_opts_t *o);
size_t world_index(world_t *w, const char *slug);
/* Every site whose link is not down connects, says Hello (routing as
 * applied[i] says, or home when applied is NULL) and reports. */
void world_connect_all(world_t *w, engine_t *e, const route_t *applied);
/* One report of `slug` with this queue and longest wait (60 s interval,
 * ten staffed agents): how the test makes a site overloaded or calm. */
void world_load(world_t *w, const char *slug, unsigned queue, unsigned wait_ms);
/* One calm report of `slug` with `agents` staffed (a hub's staffing);
 * its reports after a reconnect give the same. */
void world_staff(world_t *w, const char *slug, unsigned agents);
/* The site's link goes down (it stops being a hub the planner may use),
 * or comes back and says Hello with what it routes by. */
void world_link_down(world_t *w, engine_t *e, const char *slug);
void world_link_up(world_t *w, engine_t *e, const char *slug);
/* The newest directive sent to slug, or NULL. */
const route_t *world_last(world_t *w, const char *slug);
size_t world_count_rec(world_t *w, engine_rec_kind_t kind, const char *action);
/* Each site answers the newest directive it was sent from index `from`
 * on: applied (and kept in applied[]), or failed for the site named
 * fail_slug (may be NULL). Sites whose link is down answer nothing. */
void world_ack(world_t *w, engine_t *e, size_t from, const char *fail_slug);
/* Runs the completions of everything stored so far. */
void world_flush(world_t *w);
/* Both clocks move by ms, then the engine ticks. */
void world_tick(world_t *w, engine_t *e, uint64_t ms);
/* An operator cutover request (share 0: all calls). */
void world_cutover(world_t *w, engine_t *e, uint64_t rid, const char *const *src, size_t ns,
                   const char *const *hubs, size_t nh, uint32_t share);
/* An operator cutover of one source to one hub with --force (and
 * --dry-run when dry). */
void world_cutover_forced(world_t *w, engine_t *e, uint64_t rid, const char *src, const char *hub,
                          bool dry);
/* The same, not a dry run, ending after `ms` (--for). */
void world_cutover_for(world_t *w, engine_t *e, uint64_t rid, const char *src, const char *hub,
                       int64_t ms);
/* An admin adds schedule "night", all day, of one source to one hub. */
void world_schedule_all_day(world_t *w, engine_t *e, uint64_t rid, const char *src,
                            const char *hub);
/* An engine leading epoch 5 of this world, every site not down connected
 * and home (caller frees it). */
engine_t *world_leading(world_t *w);
/* The same with these options (a node name, say). */
engine_t *world_leading_with(world_t *w, const engine_opts_t *o);
/* Directives sent to slug so far. */
size_t world_sent_count(world_t *w, const char *slug);

#endif
