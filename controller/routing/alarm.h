/* alarm: the controller's alarms, raised once and cleared once.
 *
 * An alarm is a condition an operator must know about: a source that no
 * hub can take, a directive a site failed, a site that is down, the
 * database unreachable, the journal filling. Producers (the engine for
 * sites and routes, the server for the database) *observe* a condition
 * each time they check it; the table raises an alarm on the first
 * observation and clears it once the condition has not been observed for
 * clear_after_ms. A condition that comes and goes within that time (a
 * capacity verdict flipping at the edge, a link reconnecting) stays one
 * alarm, so an operator (and a webhook receiver) sees one raise and one
 * clear, with the same id, instead of a line a second.
 *
 * Ids are epoch * ALARM_ID_EPOCH + n: unique across leaders without asking
 * the database (which may be the thing that is down). A new leader adopts
 * the alarms its predecessor left active (alarm_adopt) and clears them
 * with their own ids when their conditions are gone.
 *
 * Decision logic only: no I/O, no clock of its own (times come in as
 * arguments). Events go out through the callback given to
 * alarm_table_init; the owner (the engine) stores them and notifies.
 *
 * Ownership: the table owns its entries; pointers to entries returned by
 * alarm_find/alarm_at are valid until the next observe, sweep or adopt. */
#ifndef NIRC_ALARM_H
#define NIRC_ALARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  ALARM_CAPACITY = 0, /* a source kept home (or waiting): no hub can take it */
  ALARM_ROUTING,      /* a rule cannot be carried out: no eligible hub, unknown site */
  ALARM_DIRECTIVE,    /* a site failed or never acknowledged a directive */
  ALARM_SITE_DOWN,    /* a site's link has been down (or its reports stale) for the grace */
  ALARM_DATABASE,     /* the database is unreachable: writes wait in the journal */
  ALARM_JOURNAL,      /* the outage journal is nearly full, or refused writes */
  ALARM_IDENTITY,     /* two agents claim one site (a copied certificate, an old host) */
  ALARM_PBX,    /* a site's PBX did not route as its agent applied (drift, failed read-back) */
  ALARM_REPORT, /* a site's reports are refused as implausible */
  ALARM_MOVED,  /* a source's measured calls do not go where its acknowledged route sends them */
  ALARM_NOTIFY, /* alarm notifications to a webhook were given up in the last 10 minutes */
  /* an older leader's rule changes reached the database after this one
   * took over and were not applied, in the last 30 minutes */
  ALARM_SUPERSEDED,
  /* a site's agent runs on a clock a minute or more off the controller's
   * (its reports' timestamps, in the last minute) */
  ALARM_CLOCK,
  /* a rule load given up without an answer left its backend holding SHARE
   * locks on the rule tables: every write to them waits (store/leader.c) */
  ALARM_RULE_LOAD,
  /* this controller leads but has issued nothing for a lease: its lease
   * cannot be renewed or confirmed (store/elect.c says why) */
  ALARM_LEADERSHIP,
  /* the sites table cannot be read: its changes are not applied, and a
   * controller started now will not start */
  ALARM_SITES_LOAD,
  /* a site's agent on its own host: its state file cannot be written, so
   * a directive's route fails (observed critical), its PBX has been
   * unreadable for a minute, or its certificate ends within 30 days
   * (critical in the last 7) (server_pbx.c) */
  ALARM_AGENT,
  ALARM_KIND_COUNT,
} alarm_kind_t;

/* "capacity", "routing", ... (the metric label and the stored kind). */
const char *alarm_kind_name(alarm_kind_t k);
/* -1 when unknown. */
int alarm_kind_parse(const char *name);
/* "critical", "major" or "warning": what a page or an alert rule leads
 * with, for the kind. An alarm observed as critical (alarm_observe_sev)
 * is critical whatever its kind: use alarm_entry_severity for an entry. */
const char *alarm_severity(alarm_kind_t k);

#define ALARM_ID_EPOCH    1000000ULL
#define ALARM_SUBJECT_MAX 64
#define ALARM_MESSAGE_MAX 256
#define ALARM_ACTOR_MAX   64
#define ALARM_WHEN_MAX    160

typedef struct {
  uint64_t id;
  alarm_kind_t kind;
  char subject[ALARM_SUBJECT_MAX]; /* a site's slug, or a controller node */
  char message[ALARM_MESSAGE_MAX]; /* the latest words for the condition */
  int64_t raised_wall_ms;          /* real time */
  int64_t raised_business_ms;      /* the business clock then */
  int64_t acked_wall_ms;           /* 0: not acknowledged */
  char acked_by[ALARM_ACTOR_MAX];
  uint64_t last_seen_mono; /* last observation (monotonic ms) */
  unsigned observations;   /* since raised (or adopted) */
  bool critical;           /* observed as critical at least once while active */
  /* Its since came from a sighting its producer learnt of late (a PBX
   * event queued while a link was down): the producer's words saying when
   * it was seen and that it was reported later, put before every newer
   * message that does not say them, so the since is never read as when
   * this controller heard. "": it was heard on time. */
  char since_when[ALARM_WHEN_MAX];
} alarm_t;

/* The severity of this alarm: its kind's, or "critical" if so observed. */
const char *alarm_entry_severity(const alarm_t *a);

/* BACKDATED: an active alarm's since moved back to an earlier sighting of
 * its condition, reported late (alarm_observe_late): its stored raise
 * times change; not a new alarm. */
typedef enum {
  ALARM_EV_RAISED = 0,
  ALARM_EV_CLEARED,
  ALARM_EV_ACKED,
  ALARM_EV_BACKDATED
} alarm_event_t;
const char *alarm_event_name(alarm_event_t ev);

/* Called for every raise, clear and acknowledgement, with the entry as it
 * is at that moment (borrowed for the call). wall_ms is when it happened. */
typedef void (*alarm_cb)(void *arg, alarm_event_t ev, const alarm_t *a, int64_t wall_ms);

typedef struct {
  alarm_t *v;
  size_t n, cap;
  /* Index of v by (kind, subject): open addressing, 1 + position in v,
   * 0 empty; rebuilt when v grows or a sweep removes entries. A producer
   * observes every site on every tick: at 20,000 sites a linear lookup
   * would cost 10^8 comparisons a tick. */
  size_t *slots;
  size_t nslots;     /* a power of two, at least twice cap; 0: none yet */
  uint64_t epoch;    /* ids of this leadership: epoch * ALARM_ID_EPOCH + seq */
  uint64_t next_seq; /* 1-based */
  uint32_t clear_after_ms;
  alarm_cb cb;
  void *cb_arg;
  uint64_t raised_total[ALARM_KIND_COUNT], cleared_total[ALARM_KIND_COUNT];
} alarm_table_t;

void alarm_table_init(alarm_table_t *t, uint32_t clear_after_ms, alarm_cb cb, void *arg);
void alarm_table_free(alarm_table_t *t);
/* Ids from now on belong to this epoch. seq_floor: the highest sequence
 * number already used in it (0 for a new epoch). */
void alarm_set_epoch(alarm_table_t *t, uint64_t epoch, uint64_t seq_floor);

/* The condition (kind, subject) holds now. Raises it (callback RAISED) if
 * no alarm for it is active; otherwise refreshes it and keeps the newest
 * message (message NULL: keeps the one it has, and raises nothing when no
 * alarm is active). Returns the entry, or NULL when out of memory (then
 * nothing is raised: the caller's log still says it). */
const alarm_t *alarm_observe(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                             const char *message, uint64_t now_mono, int64_t wall_ms,
                             int64_t business_ms);
/* alarm_observe for a kind whose severity depends on the observation (a
 * PBX drift repaired is a warning, one not repaired critical): `critical`
 * raises it critical, or makes an active one critical from now on (no new
 * RAISED event; the stored row keeps the severity it was raised with). */
const alarm_t *alarm_observe_sev(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                                 const char *message, bool critical, uint64_t now_mono,
                                 int64_t wall_ms, int64_t business_ms);
/* A sighting of a condition its producer learnt of late. */
typedef struct {
  int64_t seen_wall_ms, seen_business_ms; /* when it was seen: real and business time */
  /* Until when (real time) the condition is known to have held from that
   * sighting on, had it been heard then: the sighting's time for an
   * instant, plus however long its producer keeps such an alarm observed
   * (a pbx alarm stands 10 min after its event); now for a condition
   * still holding. */
  int64_t held_wall_ms;
  const char *when; /* words: when it was seen, and that it was reported late (copied) */
} alarm_late_t;
/* alarm_observe_sev for a sighting reported late (late NULL: as
 * alarm_observe_sev). Raises it since the sighting when none is active.
 * An active alarm's since moves back to the sighting (callback BACKDATED)
 * when it is earlier and the condition held from it into the alarm's
 * stretch (held_wall_ms + clear_after_ms at or after its since: heard on
 * time, it would have been this same alarm); never forward, and never
 * back over a gap (a drift repaired, then a new one). Either way the
 * alarm keeps `when` (alarm_t.since_when). */
const alarm_t *alarm_observe_late(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                                  const char *message, bool critical, uint64_t now_mono,
                                  int64_t wall_ms, int64_t business_ms, const alarm_late_t *late);
/* Clears (callback CLEARED) every alarm not observed for clear_after_ms.
 * Returns how many were cleared. */
size_t alarm_sweep(alarm_table_t *t, uint64_t now_mono, int64_t wall_ms);
/* Alarms an earlier leader left active, as the store keeps them (copied;
 * no callback: they were raised already). Each counts as observed now, so
 * it is cleared clear_after_ms from now unless its condition still holds.
 * An alarm already active for the same kind and subject is not doubled. */
int alarm_adopt(alarm_table_t *t, const alarm_t *a, size_t n, uint64_t now_mono);

/* New words for an active alarm, and nothing else: not an observation
 * (it is cleared clear_after_ms after its last one, as before) and no
 * event (its clear stores the words it has then). NULL when none is
 * active. For an alarm adopted from an earlier leader whose words were
 * true when raised and this leader can say better. */
const alarm_t *alarm_reword(alarm_table_t *t, alarm_kind_t kind, const char *subject,
                            const char *message);

/* Acknowledges an active alarm: 0, NIRC_ENOTFOUND when no active alarm has
 * this id, NIRC_EEXISTS when it was acknowledged already (who and when
 * are kept from the first). */
int alarm_ack(alarm_table_t *t, uint64_t id, const char *who, int64_t wall_ms);

const alarm_t *alarm_find(const alarm_table_t *t, alarm_kind_t kind, const char *subject);
/* Active alarms in the order they were raised. */
size_t alarm_count(const alarm_table_t *t);
const alarm_t *alarm_at(const alarm_table_t *t, size_t i);
/* How long ago an active alarm's condition was last observed, and when it
 * clears unless observed again. An operator reading an alarm must know
 * whether its condition still holds: one whose condition ended (a
 * schedule's window closed) stays active for clear_after_ms, and without
 * these words it reads as ongoing. `quiet`: not observed since
 * `pass_mono`, the start of its producer's latest pass over the
 * conditions (the caller knows which: alarm.h does not). */
typedef struct {
  bool quiet;
  bool adopted_unseen; /* taken over from an earlier leader, not observed here yet */
  uint64_t ago_ms;
  uint64_t clears_in_ms;
} alarm_seen_t;
alarm_seen_t alarm_seen(const alarm_table_t *t, const alarm_t *a, uint64_t now_mono,
                        uint64_t pass_mono);
/* "condition not seen for 12 s: clears in 18 s unless seen again" (from
 * the wire's figures, so nircctl and the page say the same); "" when not
 * quiet. */
void alarm_seen_words(bool quiet, bool adopted_unseen, uint64_t ago_ms, uint64_t clears_in_ms,
                      char *buf, size_t len);
/* Active alarms of one kind, for nirc_alarms_active{kind}. */
size_t alarm_count_kind(const alarm_table_t *t, alarm_kind_t kind);

#endif
