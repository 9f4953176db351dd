/* err: the one error convention of NIRC.
 *
 * Functions return 0 on success or a negative NIRC_E* code from the table
 * below (modelled on libuv's UV_ERRNO_MAP). nirc_strerror() gives the text.
 * Parsers additionally hand back a message through a `char *err, size_t
 * errlen` pair so the user sees file, line and reason. */
#ifndef NIRC_ERR_H
#define NIRC_ERR_H

#define NIRC_ERRNO_MAP(X)                                                                          \
  X(NOMEM, "out of memory")                                                                        \
  X(INVAL, "invalid argument")                                                                     \
  X(IO, "input/output error")                                                                      \
  X(CONFIG, "configuration error")                                                                 \
  X(FRAME_TOO_BIG, "frame exceeds the maximum size")                                               \
  X(FRAME_MALFORMED, "malformed frame")                                                            \
  X(UNKNOWN_MESSAGE, "unknown message type")                                                       \
  X(TLS, "TLS error")                                                                              \
  X(IDENTITY, "peer identity refused")                                                             \
  X(UNKNOWN_SITE, "unknown site")                                                                  \
  X(FORBIDDEN, "not allowed for this identity")                                                    \
  X(PROTOCOL, "protocol violation")                                                                \
  X(CLOSED, "link closed")                                                                         \
  X(TIMEOUT, "timed out")                                                                          \
  X(UNREACHABLE, "no controller reachable")                                                        \
  X(DB, "database error")                                                                          \
  X(SCHEMA, "database schema version mismatch")                                                    \
  X(FULL, "queue or buffer full")                                                                  \
  X(NOTFOUND, "not found")                                                                         \
  X(EXISTS, "already exists")                                                                      \
  X(RANGE, "value out of range")                                                                   \
  X(NOT_LEADER, "this controller is a standby")                                                    \
  X(RATE_LIMITED, "message rate over the limit")                                                   \
  X(OUTCOME_UNKNOWN, "outcome unknown")

typedef enum {
  NIRC_OK = 0,
  NIRC__E_BASE = -1000,
#define NIRC_ERR_ENUM(name, text) NIRC_E##name,
  NIRC_ERRNO_MAP(NIRC_ERR_ENUM)
#undef NIRC_ERR_ENUM
      NIRC__E_END
} nirc_err_t;

/* Text for a NIRC_E* code; never NULL. */
const char *nirc_strerror(int code);
/* Symbolic name ("FRAME_TOO_BIG") for logs and JSON; never NULL. */
const char *nirc_errname(int code);

#endif
