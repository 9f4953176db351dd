/* rules: the routing rules an operator writes — emergency cutovers,
 * time-of-day schedules and overflow rules — their validation and the
 * schedule calendar (pure code, no I/O; time zones through common/tz).
 *
 * Rules live in PostgreSQL and are managed only through the controller;
 * this module is what decides whether a rule is acceptable and when a
 * schedule is in force. Precedence between them is the planner's job. */
#ifndef NIRC_RULES_H
#define NIRC_RULES_H

#include "scenario.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULES_MAX_SITES      64 /* sources or hubs of one rule */
#define RULES_MAX_EXCEPTIONS 64
#define RULES_REASON_MAX     256
#define RULES_NAME_MAX       64
#define RULES_TZ_MAX         64

typedef enum {
  RULE_NONE = 0, /* default route: home */
  RULE_OVERFLOW,
  RULE_SCHEDULE,
  RULE_CUTOVER, /* highest precedence */
} rule_kind_t;

typedef struct {
  unsigned n;
  char v[RULES_MAX_SITES][SCENARIO_SLUG_MAX];
} slug_list_t;

typedef enum {
  CUTOVER_ACTIVE = 0,
  CUTOVER_RESTORED, /* ended by an operator (nircctl restore) */
  CUTOVER_EXPIRED,  /* ended by its expiry */
} cutover_state_t;

/* An operator's emergency move of sources to hubs (preference order). */
typedef struct {
  uint64_t id;
  slug_list_t sources;
  slug_list_t hubs;
  char reason[RULES_REASON_MAX];
  char operator_name[64]; /* from the operator's certificate */
  int64_t created_ms;
  int64_t expires_ms;      /* 0: open-ended */
  bool force;              /* skip the capacity refusal */
  uint32_t share_permille; /* share of the sources' calls moved: 1..1000, 0 = all */
  cutover_state_t state;
} cutover_t;

/* A recurring time-of-day move, e.g. night consolidation 22:00-08:00. */
typedef struct {
  uint64_t id;
  char name[RULES_NAME_MAX];
  slug_list_t sources;
  slug_list_t hubs;
  int start_min;         /* minutes after local midnight, 0..1439 */
  int end_min;           /* end <= start: the window crosses midnight */
  uint8_t days;          /* bit d (0 = Monday .. 6 = Sunday): windows that START that day */
  char tz[RULES_TZ_MAX]; /* IANA zone */
  unsigned n_exceptions;
  int32_t exceptions[RULES_MAX_EXCEPTIONS]; /* YYYYMMDD local dates whose window does not run */
  unsigned wave_size;                       /* sources per wave, default 5 */
  bool enabled;
} schedule_t;

/* An automatic partial move when a source is overloaded. Any trigger
 * engages it; it releases only when every used metric is back past its
 * release threshold and it has held for min_hold_s. A threshold of 0 means
 * "not used" (for SL: trigger_sl 0 = unused). */
typedef struct {
  uint64_t id;
  char name[RULES_NAME_MAX];
  char source[SCENARIO_SLUG_MAX];
  slug_list_t hubs;
  uint32_t trigger_wait_s, release_wait_s; /* smoothed longest wait */
  uint32_t trigger_queue, release_queue;   /* smoothed calls in queue */
  double trigger_sl, release_sl;           /* smoothed service level, 0..1: below trigger engages */
  uint32_t share_cap_permille;             /* at most this much moves, 1..1000 */
  uint32_t min_hold_s;                     /* no release before this */
  uint32_t margin_s;                       /* hub's predicted wait must beat the source's by this */
  bool enabled;
} overflow_rule_t;

/* What the validators may consult. */
typedef struct {
  /* Returns true if `slug` is a configured site; `is_hub` reports its flag. */
  bool (*site_exists)(void *arg, const char *slug, bool *is_hub);
  void *arg;
  /* Optional (NULL: messages name no alternatives): the i-th configured
   * site, false past the last; refusals use it to suggest the closest name
   * and to list the hubs. */
  bool (*site_at)(void *arg, size_t i, const char **slug, bool *is_hub);
} rules_env_t;

/* Whether l names slug; whether a and b name the same slugs in the same
 * order. */
bool rules_list_has(const slug_list_t *l, const char *slug);
bool rules_lists_equal(const slug_list_t *a, const slug_list_t *b);

/* Parse helpers for the CLI and the controller. 0 or NIRC_EINVAL with err. */
int rules_parse_slug_list(const char *csv, slug_list_t *out, char *err, size_t errlen);
int rules_parse_hhmm(const char *s, int *minutes); /* "22:00" */
int rules_parse_days(const char *s, uint8_t *days, char *err,
                     size_t errlen);                    /* "mon-fri,sun", "daily" */
int rules_parse_date(const char *s, int32_t *yyyymmdd); /* "2020-01-24" */

/* Validators: 0, or NIRC_EINVAL / NIRC_EUNKNOWN_SITE with a reason a
 * person can act on ("hubei is both a source and a hub"). now_ms is used
 * for "expiry in the past". Sites must exist; hubs must be hub sites; no
 * site may be both source and hub; lists have no duplicates. */
int rules_validate_cutover(const cutover_t *c, const rules_env_t *env, int64_t now_ms, char *err,
                           size_t errlen);
int rules_validate_schedule(const schedule_t *s, const rules_env_t *env, char *err, size_t errlen);
int rules_validate_overflow(const overflow_rule_t *o, const rules_env_t *env, char *err,
                            size_t errlen);
/* Two rules of the same kind conflict if they share a source and can be in
 * force at the same time (schedules: overlapping windows on a common day;
 * overflow: same source). Returns true and a reason. */
bool rules_schedules_conflict(const schedule_t *a, const schedule_t *b, char *why, size_t len);
bool rules_overflows_conflict(const overflow_rule_t *a, const overflow_rule_t *b, char *why,
                              size_t len);
/* Would schedule `s` move calls in a circle with the enabled schedules in
 * `others` (n of them; one with s's id is s itself, skipped): s moves a
 * source X to one of its hubs Y, and schedules in force at the same time
 * move Y, or a site Y's chain reaches, back to X (X -> Y and Y -> X, or
 * longer)? Any listed hub counts, as the engine may use any. The planner
 * could keep only part of such rules, with an alarm, so add and enable
 * refuse them. Windows are compared on the weekly clock as for conflicts
 * (exception dates ignored); a schedule in another zone counts as in force
 * whenever s is. Returns 1 with the reason in why (the other schedules,
 * the circle site by site, when, and the fix), 0 when there is none, or
 * NIRC_ENOMEM. Pure: no I/O. */
int rules_schedule_cycle(const schedule_t *s, const schedule_t *others, size_t n, char *why,
                         size_t len);

/* Whether the window of one of a schedule's days runs, and if not why. */
typedef enum {
  RULES_WINDOW_RUNS = 0,
  RULES_WINDOW_EXCEPTION, /* an exception date names the day */
  /* A clock change leaves it no time: start and end resolve to the same
   * instant (both in the hour a spring-forward skips) or the end to one
   * before the start. */
  RULES_WINDOW_NO_TIME,
} rules_window_fate_t;

typedef struct {
  rules_window_fate_t fate;
  int64_t start_ms, end_ms; /* Unix ms; a window that does not run: where it would be */
  int32_t date;             /* YYYYMMDD: the local date it starts on */
} rules_window_t;

/* Every question below is answered by one function that lays a day's
 * window on the clock, so the engine (planner, ticks), schedule list, next
 * and plan --schedule cannot disagree about a window. */

/* Is schedule `s` in force at now_ms? Returns true and the window's start
 * and end (Unix ms) if so. A window that starts at 22:00 on an exception
 * date does not run; one that started the evening before an exception date
 * runs to its end. A day whose window a clock change leaves no time
 * (RULES_WINDOW_NO_TIME) has none. Disabled schedules are never in force. */
bool rules_schedule_window(const schedule_t *s, int64_t now_ms, int64_t *start_ms, int64_t *end_ms);
/* The next window start strictly after now_ms of a window that runs (for
 * `schedule list` and forecasting); 0 if none within 400 days. */
int64_t rules_schedule_next_start(const schedule_t *s, int64_t now_ms);
/* The next window of one of s's days that starts (or would start) strictly
 * after now_ms, whether it runs or not and why (for `next`); false if none
 * within 400 days. */
bool rules_schedule_next_window(const schedule_t *s, int64_t now_ms, rules_window_t *w);
/* Why window `w` of `s` does not run, in words an operator acts on:
 * "exception 2026-03-29", "02:10-02:50 does not exist on 2026-03-29 in
 * Europe/Berlin (DST change)"; "" for one that runs. */
void rules_window_reason(const schedule_t *s, const rules_window_t *w, char *buf, size_t len);

const char *rules_kind_name(rule_kind_t k);
/* The kind rules_kind_name names; RULE_NONE for anything else. */
rule_kind_t rules_kind_parse(const char *name);
const char *rules_cutover_state_name(cutover_state_t s);

#endif
