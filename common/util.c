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
  return n;
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
