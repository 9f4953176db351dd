/* mapsvg: the text side of the routing map's SVG (map.c) — a bounded
 * output buffer, XML escaping, locale-proof numbers, and the cleaning and
 * width estimate of names that come from configuration and peers. Pure
 * code, no state between calls. */
#ifndef NIRC_MAPSVG_H
#define NIRC_MAPSVG_H

#include <stdbool.h>
#include <stddef.h>

/* The most one document may take: a runaway input must not eat the
 * controller's memory. */
#define MAPSVG_BUF_MAX (1u << 20)

/* A growable buffer, zero-initialised by the caller; p is malloc'd (the
 * caller frees it) and always NUL-terminated once anything was added. */
typedef struct {
  char *p;
  size_t len, cap;
  bool failed; /* out of memory or over MAPSVG_BUF_MAX: the result is dropped */
} mapsvg_buf_t;

/* Append n bytes / a string / formatted text. Once failed is set, nothing
 * more is added. */
void mapsvg_add(mapsvg_buf_t *b, const char *s, size_t n);
void mapsvg_puts(mapsvg_buf_t *b, const char *s);
void mapsvg_printf(mapsvg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends `s` (already clean: mapsvg_clean) with the five XML specials
 * escaped; for element content and attribute values alike. */
void mapsvg_esc(mapsvg_buf_t *b, const char *s);

/* `v` with at most one decimal into `out` (24 bytes), whatever the locale;
 * NaN and infinities as 0. Returns out. */
const char *mapsvg_num(char *out, double v);
/* A fresh buffer per use, so several numbers fit in one mapsvg_printf call. */
#define NUM(v) mapsvg_num((char[24]){0}, (v))

/* `src` (may be NULL) into `dst` as valid one-line UTF-8 that XML accepts,
 * cut to `max_cp` characters with an ellipsis; cap >= max_cp * 4 + 4. */
void mapsvg_clean(char *dst, size_t cap, const char *src, size_t max_cp);

/* Estimated width in px of clean UTF-8 text at `px`. */
double mapsvg_text_width(const char *s, double px, bool bold);

#endif
