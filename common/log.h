/* log: levelled logging with groups and identity prefixes.
 *
 *   log_info(LOG_LINK, "site=hubei link=12", "handshake done in %d ms", ms);
 *
 * The level is checked before anything is formatted, so disabled debug
 * lines cost one comparison. Each group (link, db, site, ...) has its own
 * level, settable at start-up ("log_level = info" and
 * "log_groups = link:debug,db:warn") and at run time. Output goes to
 * stderr, one line per record, so systemd's journal captures it; the
 * timestamp is omitted when stderr is the journal (JOURNAL_STREAM set).
 * The message and the object are escaped (common/safetext.h): a newline
 * or an escape sequence in an argument shows as \n or \x1b, so one
 * record is always one line. */
#ifndef NIRC_LOG_H
#define NIRC_LOG_H

#include <stdarg.h>

typedef enum {
  LOG_LVL_ERROR = 0,
  LOG_LVL_WARN,
  LOG_LVL_INFO,
  LOG_LVL_DEBUG,
} log_level_t;

#define LOG_GROUP_MAP(X)                                                                           \
  X(MAIN, "main")                                                                                  \
  X(LINK, "link")                                                                                  \
  X(TLS, "tls")                                                                                    \
  X(SITE, "site")                                                                                  \
  X(DB, "db")                                                                                      \
  X(OPS, "ops")                                                                                    \
  X(AGENT, "agent")                                                                                \
  X(ADAPTER, "adapter")                                                                            \
  X(CONFIG, "config")                                                                              \
  X(NOTIFY, "notify")

typedef enum {
#define LOG_GROUP_ENUM(id, name) LOG_##id,
  LOG_GROUP_MAP(LOG_GROUP_ENUM)
#undef LOG_GROUP_ENUM
      LOG__GROUP_COUNT
} log_group_t;

extern log_level_t log_levels[LOG__GROUP_COUNT];

/* Sets every group to `lvl`. */
void log_set_level(log_level_t lvl);
/* Parses "error|warn|info|debug"; returns 0 or NIRC_EINVAL. */
int log_parse_level(const char *s, log_level_t *out);
/* Parses "link:debug,db:warn" and applies it; returns 0 or NIRC_EINVAL
 * with a message in err. */
int log_set_groups(const char *spec, char *err, unsigned errlen);
/* Applies a [log] section: level for every group, then the group list. */
int log_configure(const char *level, const char *groups, char *err, unsigned errlen);
/* Program name printed on each line ("nircd", "nirc-agent"). Borrowed. */
void log_set_program(const char *name);

void log_write(log_level_t lvl, log_group_t grp, const char *obj, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_AT(lvl, grp, obj, ...)                                                                 \
  do {                                                                                             \
    if ((lvl) <= log_levels[(grp)]) log_write((lvl), (grp), (obj), __VA_ARGS__);                   \
  } while (0)

#define log_error(grp, obj, ...) LOG_AT(LOG_LVL_ERROR, grp, obj, __VA_ARGS__)
#define log_warn(grp, obj, ...)  LOG_AT(LOG_LVL_WARN, grp, obj, __VA_ARGS__)
#define log_info(grp, obj, ...)  LOG_AT(LOG_LVL_INFO, grp, obj, __VA_ARGS__)
#define log_debug(grp, obj, ...) LOG_AT(LOG_LVL_DEBUG, grp, obj, __VA_ARGS__)

#endif
