#include "link.h"

#include "err.h"
#include "frame.h"
#include "log.h"
#include "util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* How long an orderly close may wait for queued bytes to leave. */
#define LINK_CLOSE_GRACE_MS 1000
/* Plaintext chunk read from OpenSSL per SSL_read call. */
#define LINK_PLAIN_CHUNK 16384

struct link {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
  uv_loop_t *loop;
  int handles; /* open libuv handles; freed when it drops to 0 */
  link_state_t state;
  int was_open;
  int bios_trimmed; /* the handshake-sized memory BIOs were replaced */
  int close_err;
  char close_why[256];

  SSL *ssl;  /* owns rbio and wbio */
  BIO *rbio; /* ciphertext from the network, into OpenSSL */
  BIO *wbio; /* ciphertext from OpenSSL, to the network */
  frame_decoder_t dec;

  link_opts_t opts;
  link_cbs_t cbs;
  void *data; /* caller's, borrowed */

  peer_identity_t peer;
  char peer_addr[NIRC_ADDR_STRLEN];
  char label[256];
  uint64_t id;
  uint64_t started_ms, last_rx_ms, last_tx_ms; /* uv_now() times */
  uint64_t frames_in, frames_out;
  uint64_t rx_bytes; /* ciphertext received, handshake included */
  uint64_t ping_nonce;
  double tokens;      /* rate limit: frames the peer may still send at once */
  uint64_t refill_ms; /* uv_now() of the last refill */
};

typedef struct {
  uv_write_t req;
  link_t *link;
  size_t len;
  char data[];
} link_write_t;

static uint64_t link_next_id = 1;

static const char *const link_state_names[] = {
    [LINK_CONNECTING] = "connecting",
    [LINK_HANDSHAKE] = "handshake",
    [LINK_OPEN] = "open",
    [LINK_CLOSING] = "closing",
};

const char *link_state_name(link_state_t s) {
  return (unsigned)s < sizeof link_state_names / sizeof link_state_names[0] ? link_state_names[s]
                                                                            : "?";
}

void link_opts_default(link_opts_t *o) {
  /* Every field, including those added later: callers fill a stack copy. */
  memset(o, 0, sizeof *o);
  o->handshake_timeout_ms = 10000;
  o->idle_timeout_ms = 5000;
  o->ping_interval_ms = 0;
  o->max_write_queue = 4u << 20;
  o->expect_kind = PEER_UNKNOWN;
  o->max_msgs_per_s = 0;
  o->msg_burst = 0;
}

link_state_t link_state(const link_t *l) {
  return l->state;
}
const peer_identity_t *link_peer(const link_t *l) {
  return &l->peer;
}
X509 *link_peer_cert(const link_t *l) {
  return SSL_get0_peer_certificate(l->ssl);
}
const char *link_peer_addr(const link_t *l) {
  return l->peer_addr;
}
const char *link_label(const link_t *l) {
  return l->label;
}
uint64_t link_id(const link_t *l) {
  return l->id;
}
void *link_data(const link_t *l) {
  return l->data;
}
void link_set_data(link_t *l, void *data) {
  l->data = data;
}
uint64_t link_frames_in(const link_t *l) {
  return l->frames_in;
}
uint64_t link_frames_out(const link_t *l) {
  return l->frames_out;
}
uint64_t link_rx_bytes(const link_t *l) {
  return l->rx_bytes;
}
uint64_t link_rx_idle_ms(const link_t *l) {
  uint64_t now = uv_now(l->loop);
  return now > l->last_rx_ms ? now - l->last_rx_ms : 0;
}

static void link_update_label(link_t *l) {
  if (l->peer.subject[0])
    snprintf(l->label, sizeof l->label, "link=%llu peer=%s id=%s", (unsigned long long)l->id,
             l->peer_addr, l->peer.subject);
  else
    snprintf(l->label, sizeof l->label, "link=%llu peer=%s", (unsigned long long)l->id,
             l->peer_addr);
}

/* The one place state changes; only forward moves are legal. */
static void link_set_state(link_t *l, link_state_t s) {
  if (s <= l->state && !(s == LINK_CLOSING && l->state == LINK_CLOSING)) {
    log_error(LOG_LINK, l->label, "illegal state change %s -> %s", link_state_name(l->state),
              link_state_name(s));
    return;
  }
  log_debug(LOG_LINK, l->label, "%s -> %s", link_state_name(l->state), link_state_name(s));
  l->state = s;
}

static void link_arm_timer(link_t *l);
static int link_flush(link_t *l);
static void link_on_timer(uv_timer_t *t);

static void link_handle_closed(uv_handle_t *h) {
  link_t *l = h->data;
  if (--l->handles > 0) return;
  /* Last handle gone: nothing can call back into this link any more. */
  if (l->cbs.on_close) l->cbs.on_close(l, l->close_err, l->close_why, l->was_open);
  frame_decoder_free(&l->dec);
  SSL_free(l->ssl);
  free(l);
}

static void link_close_handles(link_t *l) {
  if (!uv_is_closing((uv_handle_t *)&l->tcp)) uv_close((uv_handle_t *)&l->tcp, link_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&l->timer))
    uv_close((uv_handle_t *)&l->timer, link_handle_closed);
}

static void link_shutdown_done(uv_shutdown_t *req, int status) {
  link_close_handles(req->data);
}

void link_close(link_t *l, int err, const char *why) {
  if (l->state == LINK_CLOSING) return;
  int was_connecting = l->state == LINK_CONNECTING;
  link_set_state(l, LINK_CLOSING);
  l->close_err = err;
  nirc_strlcpy(l->close_why, why ? why : "", sizeof l->close_why);
  uv_read_stop((uv_stream_t *)&l->tcp);
  if (was_connecting) {
    link_close_handles(l);
    return;
  }
  /* Say goodbye at the TLS layer when the session is up, so the peer can
   * tell an orderly close from a cut. */
  if (l->was_open && SSL_is_init_finished(l->ssl)) {
    SSL_shutdown(l->ssl);
    link_flush(l); /* queued behind any pending frame, so order is kept */
  }
  /* uv_shutdown waits for queued writes (an Error frame, say) to leave
   * before the socket is closed; the timer bounds that wait. */
  l->shutdown_req.data = l;
  if (uv_shutdown(&l->shutdown_req, (uv_stream_t *)&l->tcp, link_shutdown_done) != 0) {
    link_close_handles(l);
    return;
  }
  uv_timer_start(&l->timer, link_on_timer, LINK_CLOSE_GRACE_MS, 0);
}

static void link_write_done(uv_write_t *req, int status) {
  link_write_t *w = (link_write_t *)req;
  link_t *l = w->link;
  free(w);
  if (status < 0 && status != UV_ECANCELED && l->state != LINK_CLOSING) {
    char why[128];
    snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
    link_close(l, NIRC_EIO, why);
  }
}

/* Moves every ciphertext byte OpenSSL produced onto the socket. Returns 0
 * or a negative code (the caller closes). */
static int link_flush(link_t *l) {
  /* Not connected yet: link_on_connect sends what is pending. */
  if (l->state == LINK_CONNECTING) return 0;
  size_t pending;
  while ((pending = BIO_ctrl_pending(l->wbio)) > 0) {
    link_write_t *w = malloc(sizeof *w + pending);
    if (!w) return NIRC_ENOMEM;
    int n = BIO_read(l->wbio, w->data, (int)pending);
    if (n <= 0) {
      free(w);
      return NIRC_ETLS;
    }
    w->link = l;
    w->len = (size_t)n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, link_write_done);
    if (rc != 0) {
      free(w);
      return NIRC_EIO;
    }
    l->last_tx_ms = uv_now(l->loop);
  }
  /* A peer that stops reading must not make us buffer without bound. */
  if (l->tcp.write_queue_size > l->opts.max_write_queue) return NIRC_EFULL;
  return 0;
}

void link_allow_large_sends(link_t *l, uint32_t max) {
  l->opts.max_send = max;
  /* One whole reply fits the queue: TLS adds a few bytes per record. */
  size_t need = (size_t)max + max / 64 + 65536;
  if (l->opts.max_write_queue < need) l->opts.max_write_queue = need;
}

static void link_fail_flush(link_t *l, int rc) {
  if (rc == NIRC_EFULL)
    link_close(l, NIRC_EFULL, "peer is not reading: write queue over its limit");
  else if (rc < 0)
    link_close(l, rc, nirc_strerror(rc));
}

static int link_send_raw(link_t *l, const Nirc__Envelope *env) {
  uint8_t *frame;
  size_t len;
  int rc =
      frame_encode_max(env, l->opts.max_send ? l->opts.max_send : FRAME_MAX_PAYLOAD, &frame, &len);
  if (rc < 0) return rc;
  ERR_clear_error();
  int n = SSL_write(l->ssl, frame, (int)len);
  free(frame);
  if (n <= 0) {
    char why[256];
    tls_error_string(why, sizeof why);
    link_close(l, NIRC_ETLS, why);
    return NIRC_ECLOSED;
  }
  l->frames_out++;
  rc = link_flush(l);
  if (rc < 0) {
    link_fail_flush(l, rc);
    return rc == NIRC_EFULL ? NIRC_EFULL : NIRC_ECLOSED;
  }
  return 0;
}

int link_send(link_t *l, const Nirc__Envelope *env) {
  if (l->state != LINK_OPEN) return NIRC_ECLOSED;
  return link_send_raw(l, env);
}

/* The attribute lets -Wformat=2 (clang's -Wformat-nonliteral) see that
 * `fmt` is checked at the variadic callers. */
__attribute__((format(printf, 7, 0))) static void
link_vfail(link_t *l, Nirc__ErrorCode code, int err, const char *hint, uint64_t leader_epoch,
           const char *blocked, const char *fmt, va_list ap) {
  /* Room for a standby's reason no controller leads (leader.h, why). */
  char msg[1024]; /* a standby's why (512) and a stuck rule load's note (server_stuck_note) */
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (l->state == LINK_OPEN) {
    Nirc__Error e = NIRC__ERROR__INIT;
    e.code = code;
    e.message = msg;
    if (hint && *hint) e.leader_hint = (char *)hint;
    e.leader_epoch = leader_epoch;
    if (blocked && *blocked) e.leader_blocked = (char *)blocked;
    Nirc__Envelope env = NIRC__ENVELOPE__INIT;
    env.msg_case = NIRC__ENVELOPE__MSG_ERROR;
    env.error = &e;
    link_send_raw(l, &env);
  }
  link_close(l, err, msg);
}

void link_fail(link_t *l, Nirc__ErrorCode code, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  link_vfail(l, code, err, NULL, 0, NULL, fmt, ap);
  va_end(ap);
}

void link_fail_hint(link_t *l, Nirc__ErrorCode code, int err, const char *hint,
                    uint64_t leader_epoch, const char *blocked, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  link_vfail(l, code, err, hint, leader_epoch, blocked, fmt, ap);
  va_end(ap);
}

/* ---- inbound ---- */

/* Takes one frame's token; false when the peer has sent more than its
 * rate and burst allow. Checked before the frame is even decoded, so a
 * flood costs us no more than counting it. */
static bool link_take_token(link_t *l) {
  if (l->opts.max_msgs_per_s == 0) return true;
  uint64_t now = uv_now(l->loop);
  l->tokens += (double)(now - l->refill_ms) * l->opts.max_msgs_per_s / 1000.0;
  if (l->tokens > l->opts.msg_burst) l->tokens = l->opts.msg_burst;
  l->refill_ms = now;
  if (l->tokens < 1.0) return false;
  l->tokens -= 1.0;
  return true;
}

static int link_on_payload(void *arg, const uint8_t *payload, size_t len) {
  link_t *l = arg;
  Nirc__Envelope *env = NULL;
  if (!link_take_token(l)) {
    log_warn(LOG_LINK, l->label, "over the rate limit of %u messages/s (burst %u): closing",
             l->opts.max_msgs_per_s, l->opts.msg_burst);
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_RATE_LIMITED, NIRC_ERATE_LIMITED,
              "more than %u messages a second (burst %u): link closed", l->opts.max_msgs_per_s,
              l->opts.msg_burst);
    return NIRC_ERATE_LIMITED;
  }
  int rc = frame_decode_envelope(payload, len, &env);
  if (rc == NIRC_EFRAME_MALFORMED) {
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_MALFORMED, rc,
              "malformed frame: %zu payload bytes are not a valid Envelope", len);
    return rc;
  }
  if (rc == NIRC_EUNKNOWN_MESSAGE) {
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_MESSAGE, rc,
              "unknown message type in a %zu-byte envelope", len);
    return rc;
  }
  l->frames_in++;
  if (env->msg_case == NIRC__ENVELOPE__MSG_PING) {
    Nirc__Pong pong = NIRC__PONG__INIT;
    pong.nonce = env->ping->nonce;
    Nirc__Envelope out = NIRC__ENVELOPE__INIT;
    out.msg_case = NIRC__ENVELOPE__MSG_PONG;
    out.pong = &pong;
    frame_envelope_free(env);
    link_send_raw(l, &out);
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_PONG) {
    frame_envelope_free(env);
  } else {
    if (l->cbs.on_message) l->cbs.on_message(l, env);
    frame_envelope_free(env);
  }
  /* The handler may have closed the link: deliver nothing more. */
  return l->state == LINK_CLOSING ? NIRC_ECLOSED : 0;
}

static void link_read_plain(link_t *l) {
  uint8_t buf[LINK_PLAIN_CHUNK];
  while (l->state == LINK_OPEN) {
    ERR_clear_error();
    int n = SSL_read(l->ssl, buf, sizeof buf);
    int ku_limit = tls_key_update_flood(l->ssl);
    if (ku_limit) {
      log_warn(LOG_TLS, l->label, "more than %d TLS key updates a minute: closing", ku_limit);
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_RATE_LIMITED, NIRC_ERATE_LIMITED,
                "more than %d TLS key updates a minute: link closed", ku_limit);
      return;
    }
    if (n > 0) {
      int rc = frame_decoder_feed(&l->dec, buf, (size_t)n, link_on_payload, l);
      if (rc == NIRC_EFRAME_TOO_BIG) {
        const uint8_t *h = l->dec.hdr;
        unsigned long announced =
            ((unsigned long)h[0] << 24) | ((unsigned long)h[1] << 16) | (h[2] << 8) | h[3];
        link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_MALFORMED, rc,
                  "frame length %lu exceeds the maximum of %u bytes", announced,
                  l->dec.max ? l->dec.max : FRAME_MAX_PAYLOAD);
        return;
      }
      if (rc == NIRC_ENOMEM) {
        link_close(l, rc, "out of memory decoding a frame");
        return;
      }
      if (rc < 0) return; /* already handled by link_on_payload */
      continue;
    }
    int e = SSL_get_error(l->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      if (frame_decoder_partial(&l->dec))
        link_close(l, NIRC_EFRAME_MALFORMED, "peer closed in the middle of a frame (truncated)");
      else
        link_close(l, 0, "peer closed the link");
      return;
    }
    char why[256];
    tls_error_string(why, sizeof why);
    link_close(l, NIRC_ETLS, why);
    return;
  }
}

static void link_handshake(link_t *l) {
  ERR_clear_error();
  int rc = SSL_do_handshake(l->ssl);
  if (rc == 1) {
    char why[256];
    if (tls_peer_identity(l->ssl, &l->peer, why, sizeof why) != 0) {
      link_close(l, NIRC_EIDENTITY, why);
      return;
    }
    if (l->opts.expect_kind != PEER_UNKNOWN && l->peer.kind != l->opts.expect_kind) {
      snprintf(why, sizeof why, "peer '%s' is not a %s", l->peer.subject,
               tls_kind_name(l->opts.expect_kind));
      link_close(l, NIRC_EIDENTITY, why);
      return;
    }
    link_update_label(l);
    link_set_state(l, LINK_OPEN);
    l->was_open = 1;
    /* Deadlines change from "handshake" to "idle/ping". */
    l->last_rx_ms = l->last_tx_ms = uv_now(l->loop);
    link_arm_timer(l);
    log_debug(LOG_TLS, l->label, "handshake done (%s, %s)", SSL_get_version(l->ssl),
              SSL_get_cipher_name(l->ssl));
    if (l->cbs.on_open) l->cbs.on_open(l);
    return;
  }
  int e = SSL_get_error(l->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  char why[256], note[320];
  tls_error_string(why, sizeof why);
  /* Flush the alert OpenSSL queued so the peer learns why. */
  link_flush(l);
  char msg[600];
  /* Name the refused certificate (revoked, expired, another CA) when
   * there was one: OpenSSL's error alone names neither it nor the cause. */
  if (tls_verify_failure(l->ssl, note, sizeof note))
    snprintf(msg, sizeof msg, "TLS handshake failed: %s (%s)", note, why);
  else
    snprintf(msg, sizeof msg, "TLS handshake failed: %s", why);
  link_close(l, NIRC_ETLS, msg);
}

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  /* Reads are consumed synchronously in link_on_read, and each process has
   * one loop thread, so one static buffer serves every link. */
  static char rbuf[65536];
  buf->base = rbuf;
  buf->len = sizeof rbuf;
}

/* Memory BIOs keep the largest buffer they ever held: after the handshake
 * that is its flights (certificates, ~3 KB a link, a tenth of what an idle
 * link holds), kept for the link's life. Once both are empty, fresh ones
 * replace them and grow only to the size of a report. Failure to allocate
 * keeps the old ones: nothing is lost but the memory. */
static void link_trim_bios(link_t *l) {
  if (BIO_ctrl_pending(l->rbio) || BIO_ctrl_pending(l->wbio)) return;
  BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
  if (!r || !w) {
    BIO_free(r);
    BIO_free(w);
    return;
  }
  BIO_set_mem_eof_return(r, -1);
  SSL_set_bio(l->ssl, r, w); /* frees the old pair: the SSL owned it */
  l->rbio = r;
  l->wbio = w;
  l->bios_trimmed = 1;
}

/* Whether the peer of an accepted link closed its side before we answered
 * its ClientHello: a client that has not heard from us cannot have
 * finished its handshake, so it gave up (its connect timeout ran out while
 * the link sat in the listen backlog, as thousands do in a reconnect
 * storm). Answering would spend the server's key share and signature
 * (bench/tls_limit) on a peer that is gone, taken from the peers still
 * waiting. Only before our first flight: in TLS 1.3 a client has finished
 * once it sent its last flight, and may close at once (integration.
 * foundation's silent operator link does), so those bytes are still read
 * and the link opened. One getsockopt per read before our first flight
 * (one read, as a rule); none after. */
static bool link_peer_gave_up(link_t *l) {
  uv_os_fd_t fd;
  if (!SSL_is_server(l->ssl) || !SSL_in_before(l->ssl) ||
      uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0)
    return false;
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE_WAIT;
}

static void link_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  link_t *l = s->data;
  if (l->state == LINK_CLOSING) return;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      if (l->state == LINK_HANDSHAKE)
        link_close(l, NIRC_ETLS, "peer closed during the TLS handshake");
      else if (frame_decoder_partial(&l->dec))
        link_close(l, NIRC_EFRAME_MALFORMED, "peer closed in the middle of a frame (truncated)");
      else
        link_close(l, NIRC_ECLOSED, "peer closed the connection");
    } else {
      char why[128];
      snprintf(why, sizeof why, "read failed: %s", uv_strerror((int)nread));
      link_close(l, NIRC_EIO, why);
    }
    return;
  }
  l->last_rx_ms = uv_now(l->loop);
  l->rx_bytes += (uint64_t)nread;
  if (l->state == LINK_HANDSHAKE && link_peer_gave_up(l)) {
    link_close(l, NIRC_ETLS, "peer gave up during the TLS handshake (it closed before the answer)");
    return;
  }
  if (BIO_write(l->rbio, buf->base, (int)nread) != (int)nread) {
    link_close(l, NIRC_ENOMEM, "cannot buffer received bytes");
    return;
  }
  if (l->state == LINK_HANDSHAKE) link_handshake(l);
  if (l->state == LINK_OPEN) link_read_plain(l);
  if (l->state != LINK_CLOSING) link_fail_flush(l, link_flush(l));
  if (l->state == LINK_OPEN && !l->bios_trimmed && l->frames_in > 0) link_trim_bios(l);
}

/* ---- timers ---- */

static void link_on_timer(uv_timer_t *t) {
  link_t *l = t->data;
  if (l->state == LINK_CLOSING) {
    /* The orderly close took too long (peer not reading): cut it. */
    link_close_handles(l);
    return;
  }
  uint64_t now = uv_now(l->loop);
  if (l->state != LINK_OPEN) {
    if (now - l->started_ms >= l->opts.handshake_timeout_ms) {
      char why[96];
      snprintf(why, sizeof why, "%s did not finish within %u ms",
               l->state == LINK_CONNECTING ? "TCP connect" : "TLS handshake",
               l->opts.handshake_timeout_ms);
      link_close(l, NIRC_ETIMEOUT, why);
      return;
    }
  } else {
    if (now - l->last_rx_ms >= l->opts.idle_timeout_ms) {
      char why[96];
      snprintf(why, sizeof why, "nothing received for %u ms: link is dead",
               l->opts.idle_timeout_ms);
      link_close(l, NIRC_ETIMEOUT, why);
      return;
    }
    if (now - l->last_tx_ms >= l->opts.ping_interval_ms) {
      Nirc__Ping ping = NIRC__PING__INIT;
      ping.nonce = ++l->ping_nonce;
      Nirc__Envelope env = NIRC__ENVELOPE__INIT;
      env.msg_case = NIRC__ENVELOPE__MSG_PING;
      env.ping = &ping;
      if (link_send_raw(l, &env) != 0) return;
    }
  }
  link_arm_timer(l);
}

/* Arms the timer for the nearest deadline. */
static void link_arm_timer(link_t *l) {
  uint64_t now = uv_now(l->loop), due;
  if (l->state != LINK_OPEN) {
    due = l->started_ms + l->opts.handshake_timeout_ms;
  } else {
    uint64_t idle_due = l->last_rx_ms + l->opts.idle_timeout_ms;
    uint64_t ping_due = l->last_tx_ms + l->opts.ping_interval_ms;
    due = idle_due < ping_due ? idle_due : ping_due;
  }
  uv_timer_start(&l->timer, link_on_timer, due > now ? due - now : 0, 0);
}

/* ---- creation ---- */

static link_t *link_new(uv_loop_t *loop, SSL_CTX *ctx, const link_opts_t *opts,
                        const link_cbs_t *cbs, void *data, int server) {
  link_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->ssl = SSL_new(ctx);
  l->rbio = BIO_new(BIO_s_mem());
  l->wbio = BIO_new(BIO_s_mem());
  if (!l->ssl || !l->rbio || !l->wbio) {
    SSL_free(l->ssl);
    BIO_free(l->rbio);
    BIO_free(l->wbio);
    free(l);
    return NULL;
  }
  /* An empty read BIO means "wait for more", not end of stream. */
  BIO_set_mem_eof_return(l->rbio, -1);
  SSL_set_bio(l->ssl, l->rbio, l->wbio);
  if (server)
    SSL_set_accept_state(l->ssl);
  else
    SSL_set_connect_state(l->ssl);
  l->loop = loop;
  l->opts = *opts;
  if (l->opts.ping_interval_ms == 0) l->opts.ping_interval_ms = l->opts.idle_timeout_ms / 2;
  if (l->opts.max_msgs_per_s && !l->opts.msg_burst) l->opts.msg_burst = l->opts.max_msgs_per_s;
  l->cbs = *cbs;
  l->data = data;
  l->id = link_next_id++;
  frame_decoder_init(&l->dec);
  l->dec.max = l->opts.max_recv;
  uv_tcp_init(loop, &l->tcp);
  uv_timer_init(loop, &l->timer);
  l->tcp.data = l;
  l->timer.data = l;
  l->handles = 2;
  l->started_ms = l->last_rx_ms = l->last_tx_ms = uv_now(loop);
  l->tokens = l->opts.msg_burst;
  l->refill_ms = l->started_ms;
  snprintf(l->peer_addr, sizeof l->peer_addr, "?");
  return l;
}

int link_accept(uv_stream_t *server, SSL_CTX *ctx, const link_opts_t *opts, const link_cbs_t *cbs,
                void *data, link_t **out) {
  link_t *l = link_new(server->loop, ctx, opts, cbs, data, 1);
  if (!l) return NIRC_ENOMEM;
  l->state = LINK_HANDSHAKE;
  if (uv_accept(server, (uv_stream_t *)&l->tcp) != 0) {
    /* Nothing to report: the caller did not get a link. */
    l->cbs.on_close = NULL;
    link_close_handles(l);
    return NIRC_EIO;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &sl) == 0)
    nirc_format_addr((struct sockaddr *)&ss, l->peer_addr, sizeof l->peer_addr);
  link_update_label(l);
  uv_tcp_nodelay(&l->tcp, 1);
  uv_read_start((uv_stream_t *)&l->tcp, link_alloc, link_on_read);
  link_arm_timer(l);
  *out = l;
  return 0;
}

static void link_on_connect(uv_connect_t *req, int status) {
  link_t *l = req->data;
  if (l->state == LINK_CLOSING) return;
  if (status < 0) {
    char why[160];
    snprintf(why, sizeof why, "cannot connect to %s: %s", l->peer_addr, uv_strerror(status));
    link_close(l, NIRC_EUNREACHABLE, why);
    return;
  }
  link_set_state(l, LINK_HANDSHAKE);
  uv_tcp_nodelay(&l->tcp, 1);
  uv_read_start((uv_stream_t *)&l->tcp, link_alloc, link_on_read);
  /* The ClientHello was made in link_connect: it goes out now. */
  link_fail_flush(l, link_flush(l));
}

int link_connect(uv_loop_t *loop, const struct sockaddr *addr, SSL_CTX *ctx,
                 const link_opts_t *opts, const link_cbs_t *cbs, void *data, link_t **out) {
  link_t *l = link_new(loop, ctx, opts, cbs, data, 0);
  if (!l) return NIRC_ENOMEM;
  nirc_format_addr(addr, l->peer_addr, sizeof l->peer_addr);
  link_update_label(l);
  l->connect_req.data = l;
  /* The ClientHello (its key share is most of a client's cost before the
   * server answers) is made before the connection, not when it is
   * established: the server, which starts its handshake clock at accept,
   * then reads it at once. A process that opens thousands of links
   * (nirc-swarm) otherwise leaves accepted connections silent for
   * seconds, which the controller's admission rightly takes for a flood
   * of half-open sockets (controller/net/admit.h). Into the write BIO:
   * link_on_connect sends it. */
  link_handshake(l);
  if (l->state == LINK_CLOSING) {
    *out = l;
    return 0;
  }
  int rc = uv_tcp_connect(&l->connect_req, &l->tcp, addr, link_on_connect);
  if (rc != 0) {
    char why[160];
    snprintf(why, sizeof why, "cannot connect to %s: %s", l->peer_addr, uv_strerror(rc));
    link_close(l, NIRC_EUNREACHABLE, why);
  } else {
    link_arm_timer(l);
  }
  *out = l;
  return 0;
}
