/* safetext: see safetext.h. */
#include "safetext.h"

#include <stdio.h>
#include <string.h>

/* Decodes one UTF-8 character at p (RFC 3629, table 3-7 of Unicode). Returns
 * its length and the code point, or 0 when the byte at p does not start a
 * well-formed character. The string's NUL stops a truncated sequence, as
 * it is no continuation byte. */
static size_t safetext_decode(const unsigned char *p, uint32_t *cp) {
  unsigned char b = p[0];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2;
    *cp = b & 0x1fu;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    *cp = b & 0x0fu;
    if (b == 0xe0) lo = 0xa0; /* overlong */
    if (b == 0xed) hi = 0x9f; /* surrogates */
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    *cp = b & 0x07u;
    if (b == 0xf0) lo = 0x90; /* overlong */
    if (b == 0xf4) hi = 0x8f; /* above U+10FFFF */
  } else {
    return 0;
  }
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 1; i < n; i++) {
    if (i > 1 && (p[i] < 0x80 || p[i] > 0xbf)) return 0;
    *cp = (*cp << 6) | (p[i] & 0x3fu);
  }
  return n;
}

safetext_kind_t safetext_classify(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
    return SAFETEXT_CONTROL;
  if (cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
      (cp >= 0x2066 && cp <= 0x2069))
    return SAFETEXT_BIDI;
  return SAFETEXT_OK;
}

bool safetext_find(const char *s, safetext_hit_t *hit) {
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  for (size_t at = 0; p[at];) {
    uint32_t cp;
    size_t n = safetext_decode(p + at, &cp);
    safetext_kind_t k = n == 0 ? SAFETEXT_BAD_BYTE : safetext_classify(cp);
    if (k != SAFETEXT_OK) {
      if (hit) *hit = (safetext_hit_t){.kind = k, .cp = n == 0 ? p[at] : cp, .at = at};
      return true;
    }
    at += n;
  }
  if (hit) *hit = (safetext_hit_t){.kind = SAFETEXT_OK};
  return false;
}

const char *safetext_describe(const safetext_hit_t *hit, char *buf, size_t len) {
  if (hit->kind == SAFETEXT_BAD_BYTE)
    snprintf(buf, len, "a byte that is not UTF-8 (0x%02X at byte %zu)", (unsigned)hit->cp,
             hit->at + 1);
  else
    snprintf(buf, len, "a control character (U+%04X at byte %zu)", (unsigned)hit->cp, hit->at + 1);
  return buf;
}

bool safetext_check(const char *s, const char *what, char *err, size_t errlen) {
  safetext_hit_t hit;
  if (!safetext_find(s, &hit)) return true;
  char d[80];
  safetext_describe(&hit, d, sizeof d);
  snprintf(err, errlen, "the %s contains %s; %s", what, d,
           hit.kind == SAFETEXT_BAD_BYTE ? "set your terminal to UTF-8 and type it again"
                                         : "remove it");
  return false;
}

/* How one character (or bad byte) is shown: the escape in esc and its
 * length, or 0 when it is shown as it is. */
static size_t safetext_render(safetext_kind_t k, uint32_t cp, char esc[16]) {
  switch (k) {
  case SAFETEXT_OK: return 0;
  case SAFETEXT_BAD_BYTE: return (size_t)snprintf(esc, 16, "\\x%02x", (unsigned)cp);
  case SAFETEXT_CONTROL:
  case SAFETEXT_BIDI:
    if (cp == '\t') return (size_t)snprintf(esc, 16, "\\t");
    if (cp == '\n') return (size_t)snprintf(esc, 16, "\\n");
    if (cp == '\r') return (size_t)snprintf(esc, 16, "\\r");
    if (cp < 0x80) return (size_t)snprintf(esc, 16, "\\x%02x", (unsigned)cp);
    return (size_t)snprintf(esc, 16, "\\u{%x}", (unsigned)cp);
  }
  return 0;
}

size_t safetext_escape(const char *s, char *out, size_t outlen) {
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t need = 0, used = 0;
  bool cut = outlen == 0;
  while (*p) {
    uint32_t cp;
    size_t n = safetext_decode(p, &cp);
    safetext_kind_t k = n == 0 ? SAFETEXT_BAD_BYTE : safetext_classify(cp);
    if (n == 0) {
      n = 1;
      cp = *p;
    }
    char esc[16];
    size_t elen = safetext_render(k, cp, esc);
    const char *unit = elen ? esc : (const char *)p;
    size_t ulen = elen ? elen : n;
    /* One byte of out stays for the NUL. */
    if (!cut && used + ulen < outlen) {
      memcpy(out + used, unit, ulen);
      used += ulen;
    } else {
      cut = true;
    }
    need += ulen;
    p += n;
  }
  if (outlen > 0) out[used] = '\0';
  return need;
}
