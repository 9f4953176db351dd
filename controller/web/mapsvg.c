/* mapsvg: the text side of the routing map's SVG (mapsvg.h). Split out of
 * map.c, which keeps the layout and the drawing. */
#include "mapsvg.h"

#include "safetext.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounded output buffer ---------------------------------------------- */

void mapsvg_add(mapsvg_buf_t *b, const char *s, size_t n) {
  if (b->failed) return;
  if (n >= MAPSVG_BUF_MAX - b->len) { /* len + n + 1 would pass the cap */
    b->failed = true;
    return;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > MAPSVG_BUF_MAX) cap = MAPSVG_BUF_MAX;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->failed = true;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void mapsvg_puts(mapsvg_buf_t *b, const char *s) {
  mapsvg_add(b, s, strlen(s));
}

void mapsvg_printf(mapsvg_buf_t *b, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = true;
    return;
  }
  if ((size_t)n < sizeof small) {
    mapsvg_add(b, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    b->failed = true;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  mapsvg_add(b, big, (size_t)n);
  free(big);
}

/* Appends text with the five XML specials escaped. `s` must already be
 * clean (see mapsvg_clean), so this is all that stands between a site name
 * and the markup. Used for element content and attribute values alike. */
void mapsvg_esc(mapsvg_buf_t *b, const char *s) {
  const char *run = s;
  for (; *s; s++) {
    const char *rep;
    switch (*s) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '"': rep = "&quot;"; break;
    case '\'': rep = "&apos;"; break;
    default: continue;
    }
    mapsvg_add(b, run, (size_t)(s - run));
    mapsvg_puts(b, rep);
    run = s + 1;
  }
  mapsvg_add(b, run, (size_t)(s - run));
}

/* Numbers are written by hand with at most one decimal, not with "%.1f",
 * because printf follows LC_NUMERIC and a decimal comma would break every
 * coordinate if the program ever calls setlocale(). NaN and infinities
 * become 0 so a bad input cannot produce an unparsable attribute. */
const char *mapsvg_num(char *out, double v) {
  if (!isfinite(v)) v = 0;
  if (v > 1e7) v = 1e7;
  if (v < -1e7) v = -1e7;
  long t = lround(v * 10.0);
  unsigned long a = t < 0 ? (unsigned long)-t : (unsigned long)t;
  if (a % 10)
    snprintf(out, 24, "%s%lu.%lu", t < 0 ? "-" : "", a / 10, a % 10);
  else
    snprintf(out, 24, "%s%lu", t < 0 ? "-" : "", a / 10);
  return out;
}
/* ---- text: cleaning and width ------------------------------------------- */

/* Decodes one UTF-8 sequence; invalid or overlong sequences and surrogates
 * decode as U+FFFD. Returns the bytes consumed (at least 1, never past a
 * NUL, because NUL is not a continuation byte). */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t n;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, v = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, v = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, v = c & 0x07, min = 0x10000;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return i;
    }
    v = v << 6 | (s[i] & 0x3Fu);
  }
  *cp = (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) ? 0xFFFD : v;
  return n;
}

static size_t utf8_encode(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Copies `src` (may be NULL) into `dst` as valid UTF-8 that XML 1.0
 * accepts and that fits on one line: what safetext forbids (controls, DEL,
 * C1, the line separators, the bidirectional controls that would show a
 * label reordered) becomes spaces,
 * broken sequences and the non-characters U+FFFE/U+FFFF become U+FFFD, and
 * more than `max_cp` characters are cut with an ellipsis. Names come from
 * configuration and peers; one bad byte must not make the document
 * unparsable. `cap` must be at least max_cp * 4 + 4. */
void mapsvg_clean(char *dst, size_t cap, const char *src, size_t max_cp) {
  size_t total = 0, o = 0;
  const unsigned char *s = (const unsigned char *)(src ? src : "");
  for (const unsigned char *p = s; *p; total++) {
    uint32_t cp;
    p += utf8_decode(p, &cp);
  }
  size_t keep = total > max_cp ? max_cp - 1 : total;
  for (size_t i = 0; i < keep && o + 4 < cap; i++) {
    uint32_t cp;
    s += utf8_decode(s, &cp);
    if (safetext_classify(cp) != SAFETEXT_OK) cp = ' ';
    if (cp == 0xFFFE || cp == 0xFFFF) cp = 0xFFFD;
    o += utf8_encode(cp, dst + o);
  }
  if (keep < total && o + 4 < cap) o += utf8_encode(0x2026, dst + o); /* … */
  dst[o] = '\0';
}

/* Advance of one ASCII character in em, roughly DejaVu Sans (the widest
 * common sans); on narrower fonts labels only get more room. */
static double glyph_em(unsigned char c) {
  if (c == ' ') return 0.32;
  if (c == 'i' || c == 'l' || c == 'j' || c == 't' || c == 'f' || c == 'r' || c == '.' ||
      c == ',' || c == '\'' || c == '(' || c == ')' || c == ':' || c == ';' || c == '!' || c == '|')
    return 0.38;
  if (c == 'm' || c == 'w' || c == 'M' || c == 'W' || c == '%' || c == '@') return 0.92;
  if (c >= 'A' && c <= 'Z') return 0.72;
  if (c >= '0' && c <= '9') return 0.64;
  return 0.62;
}

/* Estimated width in px of clean UTF-8 text. CJK and other 3- and 4-byte
 * characters count as one em, 2-byte ones (accented Latin) as a letter. */
double mapsvg_text_width(const char *s, double px, bool bold) {
  double em = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p < 0x80)
      em += glyph_em(*p);
    else if ((*p & 0xC0) == 0xC0)
      em += *p >= 0xE0 ? 1.0 : 0.64;
  }
  return em * px * (bold ? 1.1 : 1.0);
}
