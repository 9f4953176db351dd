#include "config.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
  const config_opt_t *opts;
  void *base;
  char *err;
  size_t errlen;
  unsigned char seen[256]; /* which options the file set, to catch duplicates */
  int failed;
  FILE *f;
  int line;        /* line being parsed: Debian's inih does not pass it to handlers */
  int too_long;    /* line number of a line longer than inih's buffer, or 0 */
  int fail_line;   /* line of the handler's error, when failed */
  int bad_section; /* line of an unknown [section] header, or 0 */
} config_ctx_t;

/* fgets for inih that counts lines, so errors can say where they are, and
 * refuses lines longer than inih's buffer instead of letting it split them
 * into two bogus lines. */
static bool config_section_known(const config_opt_t *opts, const char *section);

static char *config_reader(char *str, int num, void *stream) {
  config_ctx_t *ctx = stream;
  if (ctx->too_long || ctx->failed || ctx->bad_section) return NULL;
  if (!fgets(str, num, ctx->f)) return NULL;
  ctx->line++;
  size_t n = strlen(str);
  if (n == (size_t)num - 1 && str[n - 1] != '\n') {
    /* The buffer is full: fine if the newline (or the end) comes next. */
    int c = fgetc(ctx->f);
    if (c != '\n' && c != EOF) {
      ctx->too_long = ctx->line;
      return NULL;
    }
  }
  /* Debian's inih treats an indented line as the continuation of the
   * previous value; operators indent for readability, so indentation is
   * dropped here and every line stands alone. */
  size_t lead = strspn(str, " \t");
  if (lead) memmove(str, str + lead, strlen(str + lead) + 1);
  /* inih calls the handler only for keys, so an unknown section with no
   * keys under it would pass unnoticed: check section headers here. */
  if (str[0] == '[') {
    char *end = strchr(str, ']');
    if (end) {
      char name[128];
      size_t len = (size_t)(end - str - 1);
      if (len < sizeof name) {
        memcpy(name, str + 1, len);
        name[len] = '\0';
        if (!config_section_known(ctx->opts, name)) {
          snprintf(ctx->err, ctx->errlen, "%d: unknown section [%s]", ctx->line, name);
          ctx->bad_section = ctx->line;
          return NULL;
        }
      }
    }
  }
  return str;
}

static const config_opt_t *config_find(const config_opt_t *opts, const char *section,
                                       const char *key, size_t *index) {
  for (size_t i = 0; opts[i].key; i++) {
    if (strcmp(opts[i].section, section) == 0 && strcmp(opts[i].key, key) == 0) {
      if (index) *index = i;
      return &opts[i];
    }
  }
  return NULL;
}

static bool config_section_known(const config_opt_t *opts, const char *section) {
  for (size_t i = 0; opts[i].key; i++)
    if (strcmp(opts[i].section, section) == 0) return true;
  return false;
}

/* Parses a size in bytes: a whole number with an optional binary suffix
 * (k/KiB, M/MiB, G/GiB, T/TiB; "kB"-style decimal units are refused rather
 * than guessed at). Returns 0, or NIRC_EINVAL / NIRC_ERANGE. */
static int config_parse_size(const char *s, uint64_t *out) {
  static const struct {
    const char *a, *b;
    unsigned shift;
  } units[] = {
      {"", "b", 0}, {"k", "kib", 10}, {"m", "mib", 20}, {"g", "gib", 30}, {"t", "tib", 40}};
  if (*s < '0' || *s > '9') return NIRC_EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return NIRC_ERANGE;
  while (*end == ' ' || *end == '\t')
    end++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcasecmp(end, units[i].a) != 0 && strcasecmp(end, units[i].b) != 0) continue;
    if (units[i].shift && v > (UINT64_MAX >> units[i].shift)) return NIRC_ERANGE;
    *out = (uint64_t)v << units[i].shift;
    return 0;
  }
  return NIRC_EINVAL;
}

/* Stores `value` into the field described by `o`; writes a reason (without
 * location) into err on failure. */
static int config_store(const config_opt_t *o, void *base, const char *value, char *err,
                        size_t errlen) {
  char *field = (char *)base + o->offset;
  switch (o->type) {
  case CFG_STRING:
    if (nirc_strlcpy(field, value, o->size) >= o->size) {
      snprintf(err, errlen, "value for '%s' is longer than %zu characters", o->key, o->size - 1);
      return NIRC_ECONFIG;
    }
    return 0;
  case CFG_UINT: {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (!*value || *end || errno || v < (long long)o->min || v > (long long)o->max) {
      snprintf(err, errlen, "'%s' must be a whole number from %.0f to %.0f, got '%s'", o->key,
               o->min, o->max, value);
      return NIRC_ECONFIG;
    }
    *(uint32_t *)field = (uint32_t)v;
    return 0;
  }
  case CFG_DURATION: {
    uint64_t ms;
    if (nirc_parse_duration_ms(value, &ms) != 0 || (double)ms < o->min || (double)ms > o->max) {
      snprintf(err, errlen,
               "'%s' must be a duration from %.0fms to %.0fms (e.g. 500ms, 3s, 2m), got '%s'",
               o->key, o->min, o->max, value);
      return NIRC_ECONFIG;
    }
    *(uint64_t *)field = ms;
    return 0;
  }
  case CFG_SIZE: {
    uint64_t v;
    if (config_parse_size(value, &v) != 0 || (double)v < o->min || (double)v > o->max) {
      snprintf(err, errlen,
               "'%s' must be a size from %.0f to %.0f bytes (e.g. 65536, 512k, 64MiB, 1G), got "
               "'%s'",
               o->key, o->min, o->max, value);
      return NIRC_ECONFIG;
    }
    *(uint64_t *)field = v;
    return 0;
  }
  case CFG_DOUBLE: {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    /* NaN compares false with everything: refuse it (and inf) explicitly. */
    if (!*value || *end || errno || !isfinite(v) || v < o->min || v > o->max) {
      snprintf(err, errlen, "'%s' must be a number from %g to %g, got '%s'", o->key, o->min, o->max,
               value);
      return NIRC_ECONFIG;
    }
    *(double *)field = v;
    return 0;
  }
  case CFG_BOOL: {
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
      if (strcasecmp(value, yes[i]) == 0) {
        *(bool *)field = true;
        return 0;
      }
      if (strcasecmp(value, no[i]) == 0) {
        *(bool *)field = false;
        return 0;
      }
    }
    snprintf(err, errlen, "'%s' must be yes or no, got '%s'", o->key, value);
    return NIRC_ECONFIG;
  }
  case CFG_LIST: {
    config_list_t *l = (config_list_t *)field;
    l->count = 0;
    const char *p = value;
    while (*p) {
      while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
      if (!*p) break;
      const char *start = p;
      while (*p && *p != ',')
        p++;
      const char *end = p;
      while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
      if (l->count == CONFIG_LIST_MAX) {
        snprintf(err, errlen, "'%s' has more than %d entries", o->key, CONFIG_LIST_MAX);
        return NIRC_ECONFIG;
      }
      size_t n = (size_t)(end - start);
      if (n >= sizeof l->item[0]) {
        snprintf(err, errlen, "an entry of '%s' is too long", o->key);
        return NIRC_ECONFIG;
      }
      memcpy(l->item[l->count], start, n);
      l->item[l->count][n] = '\0';
      l->count++;
    }
    return 0;
  }
  }
  snprintf(err, errlen, "internal: bad option type");
  return NIRC_ECONFIG;
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
  config_ctx_t *ctx = user;
  int lineno = ctx->line;
  if (ctx->failed) return 0;
  char reason[384];
  size_t idx;
  const config_opt_t *o = config_find(ctx->opts, section, name, &idx);
  if (!o) {
    if (!config_section_known(ctx->opts, section))
      snprintf(reason, sizeof reason, "unknown section [%s]", section);
    else
      snprintf(reason, sizeof reason, "unknown option '%s' in section [%s]", name, section);
    goto fail;
  }
  if (idx < sizeof ctx->seen && ctx->seen[idx]) {
    snprintf(reason, sizeof reason, "option '%s' in [%s] is set twice", name, section);
    goto fail;
  }
  if (config_store(o, ctx->base, value, reason, sizeof reason) != 0) goto fail;
  if (idx < sizeof ctx->seen) ctx->seen[idx] = 1;
  return 1;
fail:
  /* Location is prefixed by config_load, which knows the file name. */
  snprintf(ctx->err, ctx->errlen, "%d: %s", lineno, reason);
  ctx->failed = 1;
  ctx->fail_line = lineno;
  return 0;
}

int config_defaults(const config_opt_t *opts, void *base, char *err, size_t errlen) {
  for (size_t i = 0; opts[i].key; i++) {
    if (!opts[i].def) continue;
    if (config_store(&opts[i], base, opts[i].def, err, errlen) != 0) return NIRC_ECONFIG;
  }
  return 0;
}

int config_set(const config_opt_t *opts, void *base, const char *section, const char *key,
               const char *value, char *err, size_t errlen) {
  const config_opt_t *o = config_find(opts, section, key, NULL);
  if (!o) {
    snprintf(err, errlen, "unknown option %s.%s", section, key);
    return NIRC_ECONFIG;
  }
  return config_store(o, base, value, err, errlen);
}

int config_load(const char *path, const config_opt_t *opts, void *base, char *err, size_t errlen) {
  if (config_defaults(opts, base, err, errlen) != 0) return NIRC_ECONFIG;
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return NIRC_ECONFIG;
  }
  config_ctx_t ctx = {.opts = opts, .base = base, .err = err, .errlen = errlen, .f = f};
  char located[512];
  int rc = ini_parse_stream(config_reader, &ctx, config_handler, &ctx);
  fclose(f);
  if (ctx.bad_section) {
    snprintf(located, sizeof located, "%s:%s", path, err);
    nirc_strlcpy(err, located, errlen);
    return NIRC_ECONFIG;
  }
  if (ctx.too_long) {
    snprintf(err, errlen, "%s:%d: line too long (inih reads at most 199 characters a line)", path,
             ctx.too_long);
    return NIRC_ECONFIG;
  }
  /* inih goes on after a syntax error and returns the first bad line;
   * report whichever problem came first. */
  if (ctx.failed && (rc <= 0 || rc >= ctx.fail_line)) {
    snprintf(located, sizeof located, "%s:%s", path, err);
    nirc_strlcpy(err, located, errlen);
    return NIRC_ECONFIG;
  }
  if (rc != 0) {
    /* inih reports the first line it could not parse (no '=' or ']'). */
    snprintf(err, errlen, "%s:%d: syntax error: expected 'key = value' or '[section]'", path, rc);
    return NIRC_ECONFIG;
  }
  for (size_t i = 0; opts[i].key; i++) {
    if (opts[i].required && !(i < sizeof ctx.seen && ctx.seen[i])) {
      snprintf(err, errlen, "%s: missing required option '%s' in section [%s] (%s)", path,
               opts[i].key, opts[i].section, opts[i].help ? opts[i].help : "");
      return NIRC_ECONFIG;
    }
  }
  return 0;
}

int config_check_clock(const config_clock_t *c, const char *path, char *err, size_t errlen) {
  int64_t t;
  if ((c->start[0] && clock_parse_iso(c->start, &t) != 0) ||
      (c->anchor[0] && clock_parse_iso(c->anchor, &t) != 0)) {
    snprintf(err, errlen,
             "%s: [clock] start and anchor must be ISO 8601, e.g. "
             "2020-01-22T21:50:00+08:00",
             path);
    return NIRC_ECONFIG;
  }
  return 0;
}

int config_check_log(const config_log_t *l, const char *path, char *err, size_t errlen) {
  log_level_t lvl;
  if (log_parse_level(l->level, &lvl) != 0) {
    snprintf(err, errlen, "%s: [log] level must be error, warn, info or debug", path);
    return NIRC_ECONFIG;
  }
  return 0;
}
