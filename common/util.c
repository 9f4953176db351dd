#include "util.h"

#include "err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t nirc_strlcpy(char *dst, const char *src, size_t size) {
  size_t n = strlen(src);
  if (size > 0) {
    size_t c = n < size - 1 ? n : size - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
  }
  return n;
}

/* Length (1-4) of the well-formed UTF-8 character at `s`, or 0 if the
 * bytes there are not one. The terminating NUL ends any sequence. */
static size_t nirc_utf8_char(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp, min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, cp = c & 0x1Fu, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0Fu, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, cp = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

size_t nirc_strlcpy_utf8(char *dst, const char *src, size_t size) {
  size_t n = nirc_strlcpy(dst, src, size);
  if (n >= size && size > 0) {
    size_t len = size - 1;
    /* Back off continuation bytes (10xxxxxx), then the lead byte whose
     * character did not fit. */
    size_t cut = len;
    while (cut > 0 && ((unsigned char)dst[cut - 1] & 0xC0) == 0x80)
      cut--;
    if (cut > 0 && ((unsigned char)dst[cut - 1] & 0x80)) {
      unsigned char lead = (unsigned char)dst[cut - 1];
      size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
      if (len - (cut - 1) < need) len = cut - 1;
    }
    dst[len] = '\0';
  }
  /* Bytes that are not UTF-8 (a peer's garbage, a GBK terminal) become
   * '?': JSON and PostgreSQL refuse such text, and a record that cannot be
   * written loses more than a character. */
  for (unsigned char *p = (unsigned char *)dst; size > 0 && *p;) {
    size_t c = nirc_utf8_char(p);
    if (c == 0) {
      *p++ = '?';
    } else {
      p += c;
    }
  }
  return n;
}

bool nirc_utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t n = nirc_utf8_char(p);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

bool nirc_slug_valid(const char *s) {
  if (!s || !(*s >= 'a' && *s <= 'z')) return false;
  size_t n = 0;
  for (; *s; s++, n++) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')) return false;
  }
  return n <= 31;
}

int nirc_parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen) {
  char host[256];
  const char *port;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || end[1] != ':') {
      snprintf(err, errlen, "'%s': expected [ipv6]:port", s);
      return NIRC_EINVAL;
    }
    size_t hl = (size_t)(end - s - 1);
    if (hl >= sizeof host) goto toolong;
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    port = end + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (!colon) {
      snprintf(err, errlen, "'%s': expected host:port", s);
      return NIRC_EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) goto toolong;
    memcpy(host, s, hl);
    host[hl] = '\0';
    port = colon + 1;
  }
  char *endp;
  errno = 0;
  long p = strtol(port, &endp, 10);
  if (!*port || *endp || errno || p < 1 || p > 65535) {
    snprintf(err, errlen, "'%s': port must be 1-65535", s);
    return NIRC_EINVAL;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0 || !res) {
    snprintf(err, errlen, "'%s': cannot resolve host: %s", s, gai_strerror(rc));
    return NIRC_EINVAL;
  }
  memset(out, 0, sizeof *out);
  memcpy(out, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
toolong:
  snprintf(err, errlen, "'%s': host name too long", s);
  return NIRC_EINVAL;
}

void nirc_format_addr(const struct sockaddr *sa, char *buf, size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
  } else {
    snprintf(buf, len, "unknown");
  }
}

bool nirc_sockaddr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return false;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a,
                              *y = (const struct sockaddr_in6 *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
  }
  return false;
}

int nirc_parse_duration_ms(const char *s, uint64_t *out_ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  /* strtod accepts "nan" and "inf": neither is a duration. */
  if (end == s || errno || !isfinite(v) || v < 0) return NIRC_EINVAL;
  while (isspace((unsigned char)*end))
    end++;
  double mult;
  if (*end == '\0' || strcmp(end, "s") == 0)
    mult = 1000;
  else if (strcmp(end, "ms") == 0)
    mult = 1;
  else if (strcmp(end, "m") == 0)
    mult = 60000;
  else if (strcmp(end, "h") == 0)
    mult = 3600000;
  else if (strcmp(end, "d") == 0)
    mult = 86400000;
  else
    return NIRC_EINVAL;
  double ms = v * mult;
  if (ms > 1e15) return NIRC_ERANGE;
  *out_ms = (uint64_t)(ms + 0.5);
  return 0;
}

/* Optimal string alignment distance between a and b, giving up (returning
 * limit + 1) once it exceeds limit; both at most 63 bytes. */
static unsigned nirc_edit_distance(const char *a, const char *b, unsigned limit) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return limit + 1;
  unsigned d[64][64];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = (unsigned)i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = (unsigned)j;
  for (size_t i = 1; i <= la; i++) {
    unsigned row_min = limit + 1;
    for (size_t j = 1; j <= lb; j++) {
      unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
      unsigned v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
      if (v < row_min) row_min = v;
    }
    if (row_min > limit) return limit + 1;
  }
  return d[la][lb];
}

const char *nirc_closest(const char *word, const char *const *cands, size_t n) {
  size_t len = strlen(word);
  unsigned limit = (unsigned)(len / 3);
  if (limit < 1) limit = 1;
  if (limit > 3) limit = 3;
  const char *best = NULL;
  unsigned best_d = limit + 1;
  bool tie = false;
  for (size_t i = 0; i < n; i++) {
    if (!cands[i]) continue;
    unsigned d = nirc_edit_distance(word, cands[i], limit);
    if (d < best_d) {
      best_d = d;
      best = cands[i];
      tie = false;
    } else if (d == best_d && best && strcmp(best, cands[i]) != 0) {
      tie = true;
    }
  }
  return best && !tie && best_d <= limit ? best : NULL;
}
