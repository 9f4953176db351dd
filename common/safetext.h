/* safetext: text from peers, operators and the database, checked before
 * it is accepted and escaped before it reaches a terminal or a log line.
 * Pure: no I/O, no allocation.
 *
 * Forbidden, because they act on a terminal or a reader instead of being
 * read:
 *   - C0 controls U+0000-U+001F (including tab, newline, carriage return)
 *     and DEL U+007F: escape sequences, forged lines;
 *   - C1 controls U+0080-U+009F (UTF-8 C2 80 .. C2 9F; U+009B is a CSI);
 *   - the line and paragraph separators U+2028 and U+2029;
 *   - the bidirectional controls that reorder what a reader sees: U+061C,
 *     U+200E, U+200F, U+202A-U+202E and U+2066-U+2069;
 *   - bytes that are not UTF-8 (RFC 3629: truncated or overlong sequences,
 *     surrogates, anything above U+10FFFF).
 * Everything else passes unchanged: Chinese, punctuation, the backslash.
 *
 *   safetext_hit_t hit;
 *   if (safetext_find(reason, &hit)) ... hit.cp, hit.at ...
 *   if (!safetext_check(reason, "reason", err, sizeof err)) refuse(err);
 *   char out[256];
 *   safetext_escape(agent_error, out, sizeof out);   // "PBX \x1b[31mdown\n"
 */
#ifndef NIRC_SAFETEXT_H
#define NIRC_SAFETEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  SAFETEXT_OK = 0,
  SAFETEXT_CONTROL,  /* C0, DEL, C1, U+2028/U+2029 */
  SAFETEXT_BIDI,     /* a bidirectional control */
  SAFETEXT_BAD_BYTE, /* a byte that does not start a UTF-8 character */
} safetext_kind_t;

/* The first forbidden thing in a string. */
typedef struct {
  safetext_kind_t kind;
  uint32_t cp; /* the code point; for SAFETEXT_BAD_BYTE the byte */
  size_t at;   /* where it starts: byte offset from 0 */
} safetext_hit_t;

/* What a code point is: SAFETEXT_OK, or the class that forbids it (for
 * code that decodes text itself, as the map's name cleaning does). */
safetext_kind_t safetext_classify(uint32_t cp);

/* Finds the first forbidden code point or byte of `s` (NULL is clean).
 * Returns true and fills *hit (if not NULL) when there is one. */
bool safetext_find(const char *s, safetext_hit_t *hit);

/* Says what `hit` is and where, for a person: "a control character
 * (U+202E at byte 5)", "a byte that is not UTF-8 (0xFF at byte 3)".
 * Bytes are counted from 1 here. Returns buf. */
const char *safetext_describe(const safetext_hit_t *hit, char *buf, size_t len);

/* True if `s` is clean. Otherwise false, with a refusal that names the
 * fix in err: "the reason contains a control character (U+202E at byte
 * 5); remove it" (`what` is "reason"). */
bool safetext_check(const char *s, const char *what, char *err, size_t errlen);

/* Copies `s` (NULL: "") into out[outlen], showing each forbidden thing
 * visibly: \t \n \r by name, other C0 and DEL as \x1b, C1, separators and
 * bidirectional controls as \u{9b} \u{202e}, a byte that is not UTF-8 as
 * \xff. What does not fit is cut between characters or escapes, never
 * inside one, and nothing after a cut is written. out is always
 * terminated when outlen > 0. Returns the length the whole escaped text
 * needs (without the NUL), so a result >= outlen means it was cut. */
size_t safetext_escape(const char *s, char *out, size_t outlen);

#endif
