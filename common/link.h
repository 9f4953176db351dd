/* link: one NIRC connection — TCP on libuv, TLS 1.3 through a pair of
 * memory BIOs, and the frame codec — used by the controller (accepted
 * links), the agent and nircctl (connected links).
 *
 * Ciphertext read from the socket is fed into the read BIO; after every
 * SSL_* call one pump (link_flush) moves whatever OpenSSL produced in the
 * write BIO onto the socket. SSL_ERROR_WANT_* is handled in one place.
 *
 * Lifetime: a link owns a uv_tcp_t and a uv_timer_t. link_close() starts
 * an orderly close (close_notify, shutdown of the socket so queued frames
 * such as an Error still leave, then uv_close); the link is freed after
 * both handles' close callbacks have run, right after on_close() returns.
 * It is therefore safe to call link_close() from inside on_message():
 * nothing is freed while a handler runs, and no further message is
 * delivered once a link is closing.
 *
 * Timers: one per link, armed for the nearest deadline (handshake, idle,
 * ping) and re-armed lazily, so thousands of idle links cost no wake-ups
 * beyond their pings. */
#ifndef NIRC_LINK_H
#define NIRC_LINK_H

#include "nirc.pb-c.h"
#include "tls.h"

#include <stdint.h>
#include <uv.h>

typedef struct link link_t;

typedef enum {
  LINK_CONNECTING = 0, /* client: TCP connect in progress */
  LINK_HANDSHAKE,      /* TLS handshake in progress */
  LINK_OPEN,           /* handshake done, peer identity known */
  LINK_CLOSING,        /* close started; handles being released */
} link_state_t;

typedef struct {
  /* Handshake finished and the peer's certificate gave an identity. */
  void (*on_open)(link_t *l);
  /* One decoded message. `env` is borrowed: it is freed when this returns.
   * Ping/Pong are answered inside the link and never reach here. */
  void (*on_message)(link_t *l, Nirc__Envelope *env);
  /* Called exactly once, last; the link is freed when it returns. err is 0
   * for an orderly close by either side, else a NIRC_E* code; `why` is a
   * human-readable reason (borrowed). `was_open` tells whether on_open ran. */
  void (*on_close)(link_t *l, int err, const char *why, int was_open);
} link_cbs_t;

typedef struct {
  uint32_t handshake_timeout_ms; /* TCP connect + TLS handshake; default 10 s */
  uint32_t idle_timeout_ms;      /* nothing received for this long: dead; default 5 s */
  uint32_t ping_interval_ms;     /* nothing sent for this long: send Ping; default idle/2 */
  size_t max_write_queue;        /* bytes queued to a peer that does not read; default 4 MiB */
  peer_kind_t expect_kind;       /* refuse peers of another kind (PEER_UNKNOWN: any) */
  /* Token bucket on received frames (every type, Ping included): refilled
   * at max_msgs_per_s, holding at most msg_burst. A peer that runs it dry
   * gets a RATE_LIMITED Error and the link closes. 0: no limit (default). */
  uint32_t max_msgs_per_s, msg_burst;
  /* Largest payload accepted from the peer / sent to it; 0: FRAME_MAX_PAYLOAD.
   * Only nircctl raises max_recv (to FRAME_MAX_REPLY), and the controller
   * raises max_send on an operator's link (link_allow_large_sends). */
  uint32_t max_recv, max_send;
} link_opts_t;

void link_opts_default(link_opts_t *o);

/* Accepts a pending connection on `server` and starts the server side of
 * the handshake. `data` is the caller's pointer (borrowed). */
int link_accept(uv_stream_t *server, SSL_CTX *ctx, const link_opts_t *opts, const link_cbs_t *cbs,
                void *data, link_t **out);
/* Connects to `addr` and starts the client side of the handshake. Failure
 * to connect is reported through on_close (was_open 0). */
int link_connect(uv_loop_t *loop, const struct sockaddr *addr, SSL_CTX *ctx,
                 const link_opts_t *opts, const link_cbs_t *cbs, void *data, link_t **out);

/* Sends one message. 0, NIRC_ECLOSED (closing or not open yet),
 * NIRC_EFRAME_TOO_BIG, or NIRC_EFULL (the peer is not reading: the link is
 * then closed). */
int link_send(link_t *l, const Nirc__Envelope *env);
/* Sends an Error frame, then closes the link with err/msg. */
void link_fail(link_t *l, Nirc__ErrorCode code, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with Error.leader_hint, leader_epoch and leader_blocked set
 * (a standby's redirect; "", 0 and NULL or "" = none). */
void link_fail_hint(link_t *l, Nirc__ErrorCode code, int err, const char *hint,
                    uint64_t leader_epoch, const char *blocked, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Lets this link send payloads up to max bytes, with the write queue
 * sized for one of them (an operator's link, once identified). */
void link_allow_large_sends(link_t *l, uint32_t max);
/* Starts an orderly close. Idempotent. */
void link_close(link_t *l, int err, const char *why);

link_state_t link_state(const link_t *l);
const char *link_state_name(link_state_t s);
const peer_identity_t *link_peer(const link_t *l); /* valid once open */
/* The peer's verified certificate (borrowed; valid once open, until
 * on_close returns), for checks against a newer revocation list. */
X509 *link_peer_cert(const link_t *l);
const char *link_peer_addr(const link_t *l); /* "ip:port" */
/* "link=7 peer=127.0.0.1:4242 id=site:hubei" for log lines. */
const char *link_label(const link_t *l);
uint64_t link_id(const link_t *l);
void *link_data(const link_t *l);
void link_set_data(link_t *l, void *data);
/* Frames received / sent on this link. */
uint64_t link_frames_in(const link_t *l);
uint64_t link_frames_out(const link_t *l);
/* Milliseconds since the peer last sent a byte (or since the link began,
 * if it never did), on the loop's clock: a handshake that makes progress
 * keeps this small however long it takes in total. */
uint64_t link_rx_idle_ms(const link_t *l);
/* Bytes received from the peer so far (ciphertext, handshake included). */
uint64_t link_rx_bytes(const link_t *l);

#endif
