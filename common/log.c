#include "log.h"

#include "err.h"
#include "safetext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

log_level_t log_levels[LOG__GROUP_COUNT] = {
#define LOG_GROUP_INIT(id, name) [LOG_##id] = LOG_LVL_INFO,
    LOG_GROUP_MAP(LOG_GROUP_INIT)
#undef LOG_GROUP_INIT
};

static const char *const group_names[LOG__GROUP_COUNT] = {
#define LOG_GROUP_NAME(id, name) [LOG_##id] = name,
    LOG_GROUP_MAP(LOG_GROUP_NAME)
#undef LOG_GROUP_NAME
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *program = "nirc";

void log_set_program(const char *name) {
  program = name;
}

void log_set_level(log_level_t lvl) {
  for (int i = 0; i < LOG__GROUP_COUNT; i++)
    log_levels[i] = lvl;
}

int log_parse_level(const char *s, log_level_t *out) {
  for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (log_level_t)i;
      return 0;
    }
  }
  return NIRC_EINVAL;
}

int log_set_groups(const char *spec, char *err, unsigned errlen) {
  char buf[512];
  if (strlen(spec) >= sizeof buf) {
    snprintf(err, errlen, "log group list too long");
    return NIRC_EINVAL;
  }
  strcpy(buf, spec);
  char *save = NULL;
  for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    char *colon = strchr(tok, ':');
    if (!colon) {
      snprintf(err, errlen, "'%s': expected group:level (e.g. link:debug)", tok);
      return NIRC_EINVAL;
    }
    *colon = '\0';
    log_level_t lvl;
    if (log_parse_level(colon + 1, &lvl) != 0) {
      snprintf(err, errlen, "'%s': level must be error, warn, info or debug", colon + 1);
      return NIRC_EINVAL;
    }
    int found = 0;
    for (int i = 0; i < LOG__GROUP_COUNT; i++) {
      if (strcmp(group_names[i], tok) == 0) {
        log_levels[i] = lvl;
        found = 1;
      }
    }
    if (!found) {
      snprintf(err, errlen, "unknown log group '%s'", tok);
      return NIRC_EINVAL;
    }
  }
  return 0;
}

int log_configure(const char *level, const char *groups, char *err, unsigned errlen) {
  log_level_t lvl;
  if (log_parse_level(level, &lvl) != 0) {
    snprintf(err, errlen, "log level '%s' must be error, warn, info or debug", level);
    return NIRC_EINVAL;
  }
  log_set_level(lvl);
  return groups && *groups ? log_set_groups(groups, err, errlen) : 0;
}

void log_write(log_level_t lvl, log_group_t grp, const char *obj, const char *fmt, ...) {
  char raw[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  /* The arguments carry peers' and operators' text (a PBX error, a
   * reason): escaped, a newline in it cannot forge a record of its own and
   * an escape sequence cannot reach the terminal that reads the log. The
   * line's own format around it is ours and stays as it is. */
  char msg[2048], who[256];
  safetext_escape(raw, msg, sizeof msg);
  safetext_escape(obj ? obj : "", who, sizeof who);

  static int journal = -1;
  if (journal < 0) journal = getenv("JOURNAL_STREAM") != NULL;
  if (journal) {
    fprintf(stderr, "%s %s [%s]%s%s %s\n", level_names[lvl], program, group_names[grp],
            *who ? " " : "", who, msg);
  } else {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ldZ %-5s %s [%s]%s%s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            (long)(tv.tv_usec / 1000), level_names[lvl], program, group_names[grp], *who ? " " : "",
            who, msg);
  }
}
