/* util: small helpers every binary shares: bounded string copy, slug
 * validation, address parsing, duration parsing. */
#ifndef NIRC_UTIL_H
#define NIRC_UTIL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NIRC_ADDR_STRLEN 64

/* Copies at most size-1 bytes and always terminates; returns strlen(src)
 * so truncation can be detected (ret >= size). */
size_t nirc_strlcpy(char *dst, const char *src, size_t size);
/* As nirc_strlcpy, but never cuts a UTF-8 character in half: a reason in
 * Chinese that is too long loses whole characters. Bytes of the source
 * that are not UTF-8 are copied as '?', so the copy is always valid text
 * for JSON and PostgreSQL. */
size_t nirc_strlcpy_utf8(char *dst, const char *src, size_t size);
/* True if `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF): text that JSON and PostgreSQL
 * accept. */
bool nirc_utf8_valid(const char *s);
/* A site slug: [a-z][a-z0-9-]{0,30}. */
bool nirc_slug_valid(const char *s);
/* Parses "127.0.0.1:7443", "[::1]:7443" or "localhost:7443" into a socket
 * address. Names are resolved with getaddrinfo(), so call this at
 * start-up, never on the event loop. 0 or NIRC_EINVAL with err. */
int nirc_parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen);
/* Formats a socket address as "ip:port" ("[ip]:port" for IPv6). */
void nirc_format_addr(const struct sockaddr *sa, char *buf, size_t len);
/* Same family, address and port (IPv4 or IPv6). */
bool nirc_sockaddr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* Parses "500ms", "3s", "2m", "1h", "7d" or a bare number of seconds into ms. */
int nirc_parse_duration_ms(const char *s, uint64_t *out_ms);
/* The candidate closest to `word` by edit distance (insertions, deletions,
 * substitutions and swaps of neighbours), for "did you mean ...?"; NULL
 * when none is within a third of the word's length (at least 1, at most
 * 3) or two candidates are equally close. Borrowed from `cands`. */
const char *nirc_closest(const char *word, const char *const *cands, size_t n);

#endif
