/* config: INI configuration files, parsed by inih against a table.
 *
 * Each program describes its options in a config_opt_t table (section,
 * key, type, where to store it, bounds, default, help). config_load()
 * applies the defaults, parses the file and reports the first problem as
 * "FILE:LINE: reason" — an unknown key, a bad value, a duplicate — or a
 * missing required option. The same table documents the options
 * (config_dump_defaults) so examples cannot drift from the code. */
#ifndef NIRC_CONFIG_H
#define NIRC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  CFG_STRING,   /* char[size] at offset */
  CFG_UINT,     /* uint32_t, within [min, max] */
  CFG_DURATION, /* uint64_t milliseconds ("500ms", "3s"), within [min, max] */
  CFG_BOOL,     /* bool: yes/no/true/false/on/off/1/0 */
  CFG_DOUBLE,   /* double, within [min, max] */
  CFG_LIST,     /* config_list_t: comma-separated strings */
  CFG_SIZE,     /* uint64_t bytes ("65536", "64k", "64MiB", "1G"), within [min, max] */
} config_type_t;

#define CONFIG_LIST_MAX 16
#define CONFIG_STR_MAX  512

typedef struct {
  unsigned count;
  char item[CONFIG_LIST_MAX][CONFIG_STR_MAX / 2];
} config_list_t;

typedef struct {
  const char *section;
  const char *key;
  config_type_t type;
  size_t offset;   /* into the program's config struct */
  size_t size;     /* CFG_STRING: buffer size */
  double min, max; /* numeric bounds (inclusive) */
  const char *def; /* default as text, NULL for none */
  int required;
  const char *help;
} config_opt_t;

/* Sections every daemon shares. Embed the struct in the program's config
 * and splice the options into its table with the macros. */
typedef struct {
  double speed;
  char start[40], anchor[40];
} config_clock_t;

typedef struct {
  char level[16], groups[256];
} config_log_t;

#define CONFIG_CLOCK_OPTS(type, m)                                                                 \
  {"clock",    "speed",                                                                            \
   CFG_DOUBLE, offsetof(type, m.speed),                                                            \
   0,          1,                                                                                  \
   3600,       "1",                                                                                \
   0,          "business clock speed (demo and tests run a night in minutes)"},                    \
      {"clock",                                                                                    \
       "start",                                                                                    \
       CFG_STRING,                                                                                 \
       offsetof(type, m.start),                                                                    \
       sizeof(((type *)0)->m.start),                                                               \
       0,                                                                                          \
       0,                                                                                          \
       "",                                                                                         \
       0,                                                                                          \
       "business time at the anchor, ISO 8601"},                                                   \
  {                                                                                                \
    "clock", "anchor", CFG_STRING, offsetof(type, m.anchor), sizeof(((type *)0)->m.anchor), 0, 0,  \
        "", 0, "real time at which the business clock reads start, ISO 8601"                       \
  }

#define CONFIG_LOG_OPTS(type, m)                                                                   \
  {"log", "level", CFG_STRING, offsetof(type, m.level),     sizeof(((type *)0)->m.level), 0,       \
   0,     "info",  0,          "error, warn, info or debug"},                                      \
  {                                                                                                \
    "log", "groups", CFG_STRING, offsetof(type, m.groups), sizeof(((type *)0)->m.groups), 0, 0,    \
        "", 0, "per-group levels, e.g. link:debug,db:warn"                                         \
  }

/* Checks the [clock] and [log] values; 0 or NIRC_ECONFIG with "path: reason". */
int config_check_clock(const config_clock_t *c, const char *path, char *err, size_t errlen);
int config_check_log(const config_log_t *l, const char *path, char *err, size_t errlen);

/* Loads `path` into `base` according to `opts` (terminated by an entry
 * with key == NULL). Returns 0 or NIRC_ECONFIG with "path:line: reason" in
 * err; a missing file says so and names the path. */
int config_load(const char *path, const config_opt_t *opts, void *base, char *err, size_t errlen);
/* Applies only the defaults (used when no file is given, e.g. nircctl). */
int config_defaults(const config_opt_t *opts, void *base, char *err, size_t errlen);
/* Sets one option from text, as if read from a file (command-line
 * overrides). 0 or NIRC_ECONFIG with a reason. */
int config_set(const config_opt_t *opts, void *base, const char *section, const char *key,
               const char *value, char *err, size_t errlen);

#endif
