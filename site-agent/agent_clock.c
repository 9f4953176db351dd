/* agent_clock: the agent's reading of the controller's clock, which
 * revert_at runs on (agent.h, agent_clock_src_t).
 *
 * The agent measures the controller's business clock minus its own at
 * every Welcome and Directive (agent_clock_sync) and keeps the reading in
 * a small JSON file beside the state file ("<state_file>.clock"), so an
 * agent restarted while no controller answers still runs revert_at on the
 * controller's clock (REMEMBERED) rather than on a host clock it has
 * already measured to be wrong. The first controller it meets replaces
 * the remembered reading (MEASURED).
 *
 * An old remembered offset is still used, whatever its age: a host clock
 * hours off is a setting (a wrong time zone, a clock set by hand, NTP
 * not running) that a restart does not fix, and free-running drift adds
 * only seconds a day to what was measured; using this host's clock
 * instead would bring back the very error measured. It is wrong when the
 * host clock was corrected while the agent was down (revert_at is then
 * off by the old offset the other way): the log and /metrics say which
 * clock revert_at runs on and how old the reading is, and past
 * AGENT_CLOCK_REMEMBER_OLD_MS the log says it is old. A reading made
 * under another [clock] (speed, start, anchor) is a different business
 * clock and is not used. */
#include "agent.h"

#include "err.h"
#include "jsonio.h"
#include "log.h"
#include "state.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A rewrite of the clock file costs an fsync: only for a reading that
 * moved this much (a one-way trip's jitter is milliseconds), or to keep
 * the saved reading's age within AGENT_CLOCK_RESAVE_MS. */
#define AGENT_CLOCK_SAVE_DELTA_MS 1000
#define AGENT_CLOCK_RESAVE_MS     (3600LL * 1000)

static const char *const agent_clock_src_names[] = {
    [AGENT_CLOCK_HOST] = "host",
    [AGENT_CLOCK_REMEMBERED] = "remembered",
    [AGENT_CLOCK_MEASURED] = "measured",
};

const char *agent_clock_src_name(agent_clock_src_t s) {
  return (unsigned)s <= AGENT_CLOCK_MEASURED ? agent_clock_src_names[s] : "?";
}

bool agent_clock_src_parse(const char *name, agent_clock_src_t *out) {
  for (unsigned k = 0; k <= AGENT_CLOCK_MEASURED; k++)
    if (name && strcmp(name, agent_clock_src_names[k]) == 0) {
      *out = (agent_clock_src_t)k;
      return true;
    }
  return false;
}

Nirc__AgentClock agent_clock_src_pb(agent_clock_src_t s) {
  switch (s) {
  case AGENT_CLOCK_HOST: return NIRC__AGENT_CLOCK__AGENT_CLOCK_HOST;
  case AGENT_CLOCK_REMEMBERED: return NIRC__AGENT_CLOCK__AGENT_CLOCK_REMEMBERED;
  case AGENT_CLOCK_MEASURED: return NIRC__AGENT_CLOCK__AGENT_CLOCK_MEASURED;
  }
  return NIRC__AGENT_CLOCK__AGENT_CLOCK_UNSAID;
}

void agent_clock_went_home(agent_t *a, int64_t local_ms) {
  /* The same reading revert_at was armed on: the time is on the clock
   * that decided it had passed. */
  a->went_home_ms = agent_controller_ms(a, local_ms);
  a->went_home_src = a->have_offset ? a->clock_src : AGENT_CLOCK_HOST;
  a->went_home_mono_ms = clock_mono_ms();
}

bool agent_clock_went_home_ago(const agent_t *a, uint64_t mono_ms, uint64_t *ago_ms) {
  if (mono_ms == 0) return false;
  uint64_t now = clock_mono_ms();
  double speed = a->clock.speed > 1.0 ? a->clock.speed : 1.0;
  *ago_ms = now > mono_ms ? (uint64_t)((double)(now - mono_ms) * speed) : 0;
  return true;
}

uint32_t agent_clock_interval(const agent_t *a, bool business_counts, int64_t last_biz,
                              int64_t now_biz, uint64_t last_mono, uint64_t now_mono,
                              int64_t *stepped_ms) {
  *stepped_ms = 0;
  if (last_mono == 0 || now_mono < last_mono) return 0;
  double speed = a->clock.speed > 1.0 ? a->clock.speed : 1.0;
  int64_t passed = (int64_t)((double)(now_mono - last_mono) * speed);
  int64_t step = (now_biz - last_biz) - passed;
  if (step > 1000 * speed || step < -1000 * speed) *stepped_ms = step;
  int64_t iv = business_counts ? now_biz - last_biz : passed;
  return iv > 0 && iv <= 86400000 ? (uint32_t)iv : 0;
}

int64_t agent_controller_ms(const agent_t *a, int64_t local_ms) {
  return a->have_offset ? local_ms + a->ctl_offset_ms : local_ms;
}

bool agent_clock_controller_now(void *agent, int64_t host_ms, int64_t *out) {
  const agent_t *a = agent;
  if (!a->have_offset) return false;
  *out = agent_controller_ms(a, host_ms);
  return true;
}

/* "12 s", "5 min", "3 h", "2 d": an age for people. */
static void agent_clock_age_words(int64_t ms, char *buf, size_t len) {
  int64_t s = ms > 0 ? ms / 1000 : 0;
  if (s < 120)
    snprintf(buf, len, "%lld s", (long long)s);
  else if (s < 7200)
    snprintf(buf, len, "%lld min", (long long)(s / 60));
  else if (s < 172800)
    snprintf(buf, len, "%lld h", (long long)(s / 3600));
  else
    snprintf(buf, len, "%lld d", (long long)(s / 86400));
}

void agent_clock_describe(const agent_t *a, int64_t now_real_ms, char *buf, size_t len) {
  if (!a->have_offset) {
    snprintf(buf, len,
             "this host's own clock (no controller met since the agent started, and no "
             "offset remembered from a previous run)");
    return;
  }
  char age[32];
  agent_clock_age_words(now_real_ms - a->offset_at_ms, age, sizeof age);
  snprintf(buf, len, "the controller's clock %s (this host %+.1f s off it, measured %s ago%s)",
           a->clock_src == AGENT_CLOCK_REMEMBERED ? "as remembered from a previous run"
                                                  : "as measured",
           (double)-a->ctl_offset_ms / 1000.0, age,
           a->clock_src == AGENT_CLOCK_REMEMBERED &&
                   now_real_ms - a->offset_at_ms >= AGENT_CLOCK_REMEMBER_OLD_MS
               ? ": old, still better than this host's own"
               : "");
}

bool agent_clock_should_save(const agent_t *a, int64_t now_real_ms) {
  if (!a->have_offset || a->clock_src != AGENT_CLOCK_MEASURED) return false;
  if (a->offset_saved_at_ms == 0) return true;
  return llabs(a->ctl_offset_ms - a->offset_saved_ms) >= AGENT_CLOCK_SAVE_DELTA_MS ||
         now_real_ms - a->offset_saved_at_ms >= AGENT_CLOCK_RESAVE_MS;
}

/* The clock file: readable by operators, like the state file. */
static void agent_clock_save(agent_t *a) {
  char when[40], err[400];
  clock_format_iso(a->offset_at_ms, 0, when, sizeof when);
  json_t *j = json_pack("{s:i, s:s, s:I, s:I, s:s, s:{s:f, s:I, s:I}}", "format", 1, "site",
                        a->slug, "controller_minus_host_ms", (json_int_t)a->ctl_offset_ms,
                        "measured_at_ms", (json_int_t)a->offset_at_ms, "measured_at", when, "clock",
                        "speed", a->clock.speed, "start_ms", (json_int_t)a->clock.start_ms,
                        "anchor_ms", (json_int_t)a->clock.anchor_ms);
  char *text = j ? jsonio_dumps(j, JSON_INDENT(2)) : NULL;
  json_decref(j);
  int rc = text ? state_write_atomic(a->clock_file, text, err, sizeof err) : NIRC_ENOMEM;
  free(text);
  if (rc != 0) {
    /* Not fatal: revert_at runs on the reading in memory; only a restart
     * without a controller would fall back to an older reading or none. */
    log_error(LOG_AGENT, a->slug, "clock offset not saved: %s",
              rc == NIRC_ENOMEM ? "out of memory" : err);
    return;
  }
  a->offset_saved_ms = a->ctl_offset_ms;
  a->offset_saved_at_ms = a->offset_at_ms;
}

/* Why a clock file's reading is not used, or 0 with *off and *at set. */
static int agent_clock_parse(const agent_t *a, json_t *j, int64_t *off, int64_t *at, char *why,
                             size_t whylen) {
  const char *site = json_string_value(json_object_get(j, "site"));
  json_t *o = json_object_get(j, "controller_minus_host_ms");
  json_t *m = json_object_get(j, "measured_at_ms");
  json_t *c = json_object_get(j, "clock");
  if (!json_is_object(j) || !json_is_integer(o) || !json_is_integer(m) || !json_is_object(c)) {
    snprintf(why, whylen, "not a clock file (controller_minus_host_ms, measured_at_ms, clock)");
    return NIRC_EINVAL;
  }
  if (!site || strcmp(site, a->slug) != 0) {
    snprintf(why, whylen, "measured for site '%.40s', not '%s'", site ? site : "?", a->slug);
    return NIRC_EINVAL;
  }
  json_t *sp = json_object_get(c, "speed");
  json_t *st = json_object_get(c, "start_ms");
  json_t *an = json_object_get(c, "anchor_ms");
  if (!json_is_number(sp) || !json_is_integer(st) || !json_is_integer(an) ||
      json_number_value(sp) != a->clock.speed || json_integer_value(st) != a->clock.start_ms ||
      json_integer_value(an) != a->clock.anchor_ms) {
    snprintf(why, whylen,
             "measured under another [clock] (speed, start or anchor): another "
             "business clock");
    return NIRC_EINVAL;
  }
  *off = (int64_t)json_integer_value(o);
  *at = (int64_t)json_integer_value(m);
  return 0;
}

int agent_clock_load(agent_t *a, int64_t now_real_ms, char *err, size_t errlen) {
  int fd = open(a->clock_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
  if (!f) {
    int e = errno;
    if (fd >= 0) close(fd);
    if (e == ENOENT) return NIRC_ENOTFOUND;
    snprintf(err, errlen, "%s: cannot open: %s", a->clock_file, strerror(e));
    return NIRC_EINVAL;
  }
  json_error_t je;
  json_t *j = jsonio_loadf(f, JSON_REJECT_DUPLICATES, &je);
  fclose(f);
  char why[200];
  int64_t off = 0, at = 0;
  int rc = NIRC_EINVAL;
  if (!j)
    snprintf(why, sizeof why, "line %d: %s", je.line, je.text);
  else
    rc = agent_clock_parse(a, j, &off, &at, why, sizeof why);
  json_decref(j);
  if (rc != 0) {
    /* Left as it is: the next reading overwrites it. */
    snprintf(err, errlen, "%s: not used: %s", a->clock_file, why);
    return rc;
  }
  a->ctl_offset_ms = a->offset_saved_ms = off;
  a->offset_at_ms = a->offset_saved_at_ms = at;
  a->have_offset = true;
  a->clock_src = AGENT_CLOCK_REMEMBERED;
  a->offset_large = llabs(off) >= AGENT_CLOCK_OFFSET_WARN_MS;
  char desc[300];
  agent_clock_describe(a, now_real_ms, desc, sizeof desc);
  if (now_real_ms - at >= AGENT_CLOCK_REMEMBER_OLD_MS || a->offset_large)
    log_warn(LOG_AGENT, a->slug, "until a controller is met, revert_at runs on %s", desc);
  else
    log_info(LOG_AGENT, a->slug, "until a controller is met, revert_at runs on %s", desc);
  return 0;
}

void agent_clock_init(agent_t *a, int64_t now_real_ms) {
  a->clock_src = AGENT_CLOCK_HOST;
  a->have_offset = false;
  if (!a->conf->state_file[0]) return;
  snprintf(a->clock_file, sizeof a->clock_file, "%s.clock", a->conf->state_file);
  char err[600];
  int rc = agent_clock_load(a, now_real_ms, err, sizeof err);
  if (rc == NIRC_ENOTFOUND)
    log_info(LOG_AGENT, a->slug,
             "no clock offset remembered in %s: until a controller is met, revert_at runs on "
             "this host's own clock",
             a->clock_file);
  else if (rc != 0)
    log_warn(LOG_AGENT, a->slug,
             "%s; until a controller is met, revert_at runs on this host's own clock", err);
}

void agent_clock_sync(agent_t *a, int64_t controller_ms, int64_t local_ms) {
  if (controller_ms <= 0) return; /* an older controller says nothing */
  agent_clock_src_t was = a->clock_src;
  a->ctl_offset_ms = controller_ms - local_ms;
  a->have_offset = true;
  a->clock_src = AGENT_CLOCK_MEASURED;
  a->offset_at_ms = clock_real_ms();
  if (was != AGENT_CLOCK_MEASURED)
    log_info(LOG_AGENT, a->slug,
             "revert_at runs on the controller's clock as measured: this host %+.1f s off it%s",
             (double)-a->ctl_offset_ms / 1000.0,
             was == AGENT_CLOCK_REMEMBERED ? " (replacing the reading remembered from a previous "
                                             "run)"
                                           : "");
  bool large = llabs(a->ctl_offset_ms) >= AGENT_CLOCK_OFFSET_WARN_MS;
  if (large != a->offset_large || (large && was == AGENT_CLOCK_REMEMBERED)) {
    if (large)
      log_warn(LOG_AGENT, a->slug,
               "this host's clock is %+.1f s off the controller's: revert_at is kept on the "
               "controller's clock (remembered across a restart in %s), but fix the host clock "
               "(NTP)",
               (double)-a->ctl_offset_ms / 1000.0,
               a->clock_file[0] ? a->clock_file : "no file: [agent] state_file is not set");
    else
      log_info(LOG_AGENT, a->slug, "this host's clock is within %d s of the controller's again",
               AGENT_CLOCK_OFFSET_WARN_MS / 1000);
  }
  a->offset_large = large;
  if (a->clock_file[0] && agent_clock_should_save(a, a->offset_at_ms)) agent_clock_save(a);
}

int agent_clock_metrics(const agent_t *a, int64_t now_real_ms, char *buf, size_t len) {
  /* Which clock revert_at runs on, as a state set (one series is 1); the
   * offset and its age only when there is one: before a controller was
   * met, and with nothing remembered, the offset is unknown, not 0. */
  int n = snprintf(buf, len,
                   "# TYPE nirc_agent_clock_source gauge\n"
                   "nirc_agent_clock_source{site=\"%s\",source=\"host\"} %d\n"
                   "nirc_agent_clock_source{site=\"%s\",source=\"remembered\"} %d\n"
                   "nirc_agent_clock_source{site=\"%s\",source=\"measured\"} %d\n",
                   a->slug, a->clock_src == AGENT_CLOCK_HOST, a->slug,
                   a->clock_src == AGENT_CLOCK_REMEMBERED, a->slug,
                   a->clock_src == AGENT_CLOCK_MEASURED);
  if (n < 0 || (size_t)n >= len) return -1;
  if (!a->have_offset) return n;
  int m = snprintf(buf + n, len - (size_t)n,
                   "# TYPE nirc_agent_clock_offset_seconds gauge\n"
                   "nirc_agent_clock_offset_seconds{site=\"%s\"} %.3f\n"
                   "# TYPE nirc_agent_clock_offset_age_seconds gauge\n"
                   "nirc_agent_clock_offset_age_seconds{site=\"%s\"} %.0f\n",
                   a->slug, (double)-a->ctl_offset_ms / 1000.0, a->slug,
                   now_real_ms > a->offset_at_ms ? (double)(now_real_ms - a->offset_at_ms) / 1000.0
                                                 : 0.0);
  if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
  return n + m;
}
