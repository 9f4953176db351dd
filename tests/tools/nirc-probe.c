/* nirc-probe: a deliberately misbehaving NIRC client for the integration
 * and security tests. It uses plain blocking OpenSSL on a socket — not
 * common/link.c — so the controller is tested against an independent
 * implementation, and it can send bytes no well-behaved client would.
 *
 *   nirc-probe --addr 127.0.0.1:7443 --ca CA [--cert C --key K] [--wait S] MODE [ARG]
 *
 * Modes:
 *   hello SLUG        send Hello claiming SLUG, report what comes back
 *   welcome           proper Hello for the certificate's site; stop at the
 *                     Welcome (server_fingerprint tells which certificate
 *                     the controller presented)
 *   hello-long        Hello for the certificate's site with a 60,000-byte
 *                     software_version
 *   report-as SLUG    proper Hello, then a LoadReport claiming SLUG
 *   bad-report        proper Hello, then a LoadReport with ready > logged in
 *   report-range KIND proper Hello, then a LoadReport out of range: KIND is
 *                     negative (a count that went below zero in a signed
 *                     type), huge (four billion agents) or string (a
 *                     60,000-byte pbx_error)
 *   flood N           proper Hello, then N valid LoadReports as fast as the
 *                     socket takes them (stops early once the controller
 *                     answers), to run into the rate limit
 *   operator-request  (site cert) proper Hello, then an OperatorRequest
 *   operator-text TEXT (operator cert) a cutover of xizang to shaanxi whose
 *                     reason is TEXT, sent as it is (nircctl would refuse
 *                     it first); reports the OperatorReply's error
 *   hostile-agent TEXT proper Hello, then a site that stays online for
 *                     --wait seconds: a plausible LoadReport every 300 ms,
 *                     Pong to Ping; a Directive that moves calls away fails
 *                     with TEXT as its detail, any other is applied; after
 *                     the first failure its reports say the PBX is
 *                     unreadable, with TEXT as pbx_error. TEXT is sent as
 *                     given: escapes, newlines, C1 and bidi controls
 *   hello-route ROUTE proper Hello whose applied route is ROUTE,
 *                     "site:permille,...[@EPOCH.VERSION]"; stops at the
 *                     Welcome
 *   status-flood RATE (operator cert) status requests at RATE a second for
 *                     --wait seconds, reading the replies; detail says how
 *                     many were answered ok, "rate limited" or otherwise,
 *                     error_message is the last refusal's text
 *   oversize          a frame header announcing 1 MiB
 *   truncated         a header for 100 bytes, 10 bytes, then close
 *   random N          N random bytes after the handshake
 *   unknown-type      an Envelope carrying only field 99
 *   malformed         a frame of valid length whose payload is not protobuf
 *   plain             no TLS: a line of text on the raw socket
 *   idle              connect and send nothing; wait for the controller to
 *                     close (at most --wait seconds, default 8)
 *   slow-handshake    send the first half of a real ClientHello, then
 *                     nothing; wait likewise
 *
 * Or, as a fake controller (with a controller certificate):
 *   nirc-probe --listen 127.0.0.1:PORT --ca CA --cert C --key K serve EPOCH JSON
 * accepts one agent, answers its Hello with a Welcome for EPOCH, sends
 * the Directive described by JSON ({"version", "route": [{"site",
 * "permille"}], "inbound": [...], "revert_at_ms", "site"}), and prints the
 * agent's DirectiveAck as {"result", "detail", "epoch", "version"}, or the
 * Error it sent instead as {"error_code", "error_message"}.
 *
 * Prints one JSON line: {"mode", "handshake", "welcome", "error_code",
 * "error_message", "closed", "detail", "elapsed_ms" (connect to close or
 * to the end of the mode), "server_fingerprint" (SHA-256 of the
 * controller's certificate, hex, "" without a handshake), "sent" (flood:
 * reports written; hostile-agent: directives failed)} and exits 0; 2 on
 * usage errors. */
#include "frame.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Length of the oversized strings of hello-long and report-range string:
 * far over any field's limit, still inside one 64 KiB frame. */
#define PROBE_LONG_STRING 60000

typedef struct {
  int handshake, welcome, closed;
  int error_code;
  char error_message[512];
  char detail[512];
  char server_fp[65];
  long sent;
} probe_result_t;

static int64_t probe_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A string of n 'x' (caller frees), for the oversized-field modes. */
static char *probe_long_string(size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memset(p, 'x', n);
  p[n] = '\0';
  return p;
}

static int probe_send_env(SSL *ssl, const Nirc__Envelope *env) {
  uint8_t *buf;
  size_t len;
  if (frame_encode(env, &buf, &len) != 0) return -1;
  int n = SSL_write(ssl, buf, (int)len);
  free(buf);
  return n == (int)len ? 0 : -1;
}

static int probe_read_full(SSL *ssl, uint8_t *buf, size_t len) {
  size_t have = 0;
  while (have < len) {
    int n = SSL_read(ssl, buf + have, (int)(len - have));
    if (n <= 0) return -1;
    have += (size_t)n;
  }
  return 0;
}

/* Reads frames until an Error, a Welcome (when stop_at_welcome) or the
 * link closes. */
static void probe_read(SSL *ssl, probe_result_t *r, int stop_at_welcome) {
  for (;;) {
    uint8_t hdr[4];
    if (probe_read_full(ssl, hdr, 4) != 0) {
      r->closed = 1;
      return;
    }
    uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
    if (len > FRAME_MAX_PAYLOAD) {
      snprintf(r->detail, sizeof r->detail, "controller sent an oversize frame");
      return;
    }
    uint8_t *p = malloc(len ? len : 1);
    if (!p || probe_read_full(ssl, p, len) != 0) {
      free(p);
      r->closed = 1;
      return;
    }
    Nirc__Envelope *env = NULL;
    int rc = frame_decode_envelope(p, len, &env);
    free(p);
    if (rc != 0) continue;
    if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
      r->error_code = env->error->code;
      nirc_strlcpy(r->error_message, env->error->message ? env->error->message : "",
                   sizeof r->error_message);
    } else if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REPLY) {
      const Nirc__OperatorReply *rep = env->operator_reply;
      if (rep->error) {
        r->error_code = rep->error->code;
        nirc_strlcpy(r->error_message, rep->error->message ? rep->error->message : "",
                     sizeof r->error_message);
      }
      snprintf(r->detail, sizeof r->detail, "operator reply: %s", rep->ok ? "ok" : "refused");
      frame_envelope_free(env);
      return;
    } else if (env->msg_case == NIRC__ENVELOPE__MSG_WELCOME) {
      r->welcome = 1;
      if (stop_at_welcome) {
        frame_envelope_free(env);
        return;
      }
    }
    frame_envelope_free(env);
  }
}

static int probe_hello_ex(SSL *ssl, const char *slug, const char *version, probe_result_t *r) {
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = 1;
  h.software_version = (char *)version;
  h.site = (char *)slug;
  h.adapter = "probe";
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (probe_send_env(ssl, &env) != 0) return -1;
  probe_read(ssl, r, 1);
  return r->welcome ? 0 : -1;
}

static int probe_hello(SSL *ssl, const char *slug, probe_result_t *r) {
  return probe_hello_ex(ssl, slug, "probe", r);
}

/* Hello for `slug` with an applied route parsed from `spec`
 * ("a:500,b:500@7.3"): what a hostile or confused agent may claim. */
static int probe_hello_route(SSL *ssl, const char *slug, const char *spec, probe_result_t *r) {
  Nirc__RouteShare shares[8], *ptrs[8];
  char buf[512];
  nirc_strlcpy(buf, spec ? spec : "", sizeof buf);
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  char *at = strchr(buf, '@');
  if (at) {
    *at = '\0';
    d.epoch = strtoull(at + 1, &at, 10);
    if (*at == '.') d.version = strtoull(at + 1, NULL, 10);
  } else {
    d.epoch = d.version = 1;
  }
  size_t n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < 8;
       tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    nirc__route_share__init(&shares[n]);
    if (colon) *colon = '\0';
    shares[n].site = tok;
    shares[n].permille = colon ? (uint32_t)strtoul(colon + 1, NULL, 10) : 1000;
    ptrs[n] = &shares[n];
    n++;
  }
  d.site = (char *)slug;
  d.route = ptrs;
  d.n_route = n;
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = 1;
  h.software_version = "probe";
  h.site = (char *)slug;
  h.adapter = "probe";
  h.applied = &d;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (probe_send_env(ssl, &env) != 0) return -1;
  probe_read(ssl, r, 1);
  return r->welcome ? 0 : -1;
}

/* Status requests at `rate` a second until `deadline`, counting the
 * answers; stops when the link closes. */
static void probe_status_flood(SSL *ssl, int fd, long rate, int64_t deadline, probe_result_t *r) {
  long ok = 0, limited = 0, other = 0;
  double gap = rate > 0 ? 1000.0 / (double)rate : 1000.0;
  double next = (double)probe_now_ms();
  while (!r->closed && probe_now_ms() < deadline) {
    int64_t now = probe_now_ms();
    if ((double)now >= next) {
      Nirc__StatusRequest sr = NIRC__STATUS_REQUEST__INIT;
      Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
      req.request_id = (uint64_t)r->sent + 1;
      req.body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
      req.status = &sr;
      Nirc__Envelope env = NIRC__ENVELOPE__INIT;
      env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
      env.operator_request = &req;
      if (probe_send_env(ssl, &env) != 0) {
        r->closed = 1;
        break;
      }
      r->sent++;
      next += gap;
      continue;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (SSL_pending(ssl) == 0 && poll(&pfd, 1, (int)(next - (double)now) + 1) <= 0) continue;
    uint8_t hdr[4];
    if (probe_read_full(ssl, hdr, 4) != 0) {
      r->closed = 1;
      break;
    }
    uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
    uint8_t *p = len <= FRAME_MAX_PAYLOAD ? malloc(len ? len : 1) : NULL;
    if (!p || probe_read_full(ssl, p, len) != 0) {
      free(p);
      r->closed = 1;
      break;
    }
    Nirc__Envelope *env = NULL;
    int rc = frame_decode_envelope(p, len, &env);
    free(p);
    if (rc != 0) continue;
    if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REPLY) {
      const Nirc__OperatorReply *rep = env->operator_reply;
      if (rep->ok) {
        ok++;
      } else {
        if (rep->error && rep->error->code == NIRC__ERROR_CODE__ERROR_CODE_RATE_LIMITED)
          limited++;
        else
          other++;
        r->error_code = rep->error ? rep->error->code : 0;
        nirc_strlcpy(r->error_message, rep->error && rep->error->message ? rep->error->message : "",
                     sizeof r->error_message);
      }
    } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
      r->error_code = env->error->code;
      nirc_strlcpy(r->error_message, env->error->message ? env->error->message : "",
                   sizeof r->error_message);
      r->closed = 1;
    }
    frame_envelope_free(env);
  }
  snprintf(r->detail, sizeof r->detail, "ok=%ld limited=%ld other=%ld", ok, limited, other);
}

/* Sends a LoadReport claiming `claim`. `kind` says what is wrong with it:
 * NULL nothing, "ready" more agents ready than logged in, "negative" a
 * count that went below zero in a signed type before reaching the wire,
 * "huge" four billion agents, "string" a 60,000-byte pbx_error. */
static int probe_report(SSL *ssl, const char *claim, const char *kind) {
  Nirc__LoadReport lr = NIRC__LOAD_REPORT__INIT;
  lr.site = (char *)claim;
  lr.interval_ms = 1000;
  lr.agents_logged_in = 5;
  lr.agents_ready = 3;
  char *longstr = NULL;
  if (kind && !strcmp(kind, "ready")) {
    lr.agents_ready = 50;
  } else if (kind && !strcmp(kind, "negative")) {
    int32_t offered = -5;
    lr.calls_offered = (uint32_t)offered;
  } else if (kind && !strcmp(kind, "huge")) {
    lr.agents_logged_in = 4000000000u;
  } else if (kind && !strcmp(kind, "string")) {
    lr.pbx_unreadable = 1;
    lr.pbx_error = longstr = probe_long_string(PROBE_LONG_STRING);
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &lr;
  int rc = probe_send_env(ssl, &env);
  free(longstr);
  return rc;
}

/* hostile-agent: see the header. Runs until `until_ms` (probe_now_ms). */
static void probe_hostile_agent(SSL *ssl, int fd, const char *own, const char *text,
                                int64_t until_ms, probe_result_t *r) {
  int64_t next_report = 0;
  while (probe_now_ms() < until_ms && !r->closed) {
    if (probe_now_ms() >= next_report) {
      Nirc__LoadReport lr = NIRC__LOAD_REPORT__INIT;
      lr.site = (char *)own;
      lr.interval_ms = 1000;
      lr.agents_logged_in = 5;
      lr.agents_ready = 3;
      lr.aht_ms = 180000;
      lr.sl_threshold_s = 20;
      if (r->sent > 0) {
        lr.pbx_unreadable = 1;
        lr.pbx_error = (char *)text;
      }
      Nirc__Envelope env = NIRC__ENVELOPE__INIT;
      env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
      env.load_report = &lr;
      if (probe_send_env(ssl, &env) != 0) r->closed = 1;
      next_report = probe_now_ms() + 300;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (SSL_pending(ssl) == 0 && poll(&pfd, 1, 100) <= 0) continue;
    uint8_t hdr[4];
    if (probe_read_full(ssl, hdr, 4) != 0) {
      r->closed = 1;
      break;
    }
    uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
    uint8_t *p = len <= FRAME_MAX_PAYLOAD ? malloc(len ? len : 1) : NULL;
    if (!p || probe_read_full(ssl, p, len) != 0) {
      free(p);
      r->closed = 1;
      break;
    }
    Nirc__Envelope *env = NULL;
    int rc = frame_decode_envelope(p, len, &env);
    free(p);
    if (rc != 0) continue;
    Nirc__Envelope out = NIRC__ENVELOPE__INIT;
    if (env->msg_case == NIRC__ENVELOPE__MSG_PING) {
      Nirc__Pong pong = NIRC__PONG__INIT;
      pong.nonce = env->ping->nonce;
      out.msg_case = NIRC__ENVELOPE__MSG_PONG;
      out.pong = &pong;
      probe_send_env(ssl, &out);
    } else if (env->msg_case == NIRC__ENVELOPE__MSG_DIRECTIVE) {
      const Nirc__Directive *d = env->directive;
      int away = 0;
      for (size_t k = 0; k < d->n_route; k++)
        away |= d->route[k]->site && strcmp(d->route[k]->site, own) != 0;
      Nirc__DirectiveAck a = NIRC__DIRECTIVE_ACK__INIT;
      a.site = (char *)own;
      a.epoch = d->epoch;
      a.version = d->version;
      a.result = away ? NIRC__ACK_RESULT__ACK_RESULT_FAILED : NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
      a.detail = away ? (char *)text : "applied";
      out.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE_ACK;
      out.directive_ack = &a;
      probe_send_env(ssl, &out);
      if (away) r->sent++;
    } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
      r->error_code = env->error->code;
      nirc_strlcpy(r->error_message, env->error->message ? env->error->message : "",
                   sizeof r->error_message);
    }
    frame_envelope_free(env);
  }
  snprintf(r->detail, sizeof r->detail, "failed %ld directive(s) with the text", r->sent);
}

/* Fake controller: one agent, one directive, print its ack. */
static int probe_serve(const char *listen_addr, const char *ca, const char *cert, const char *key,
                       uint64_t epoch, const char *spec) {
  json_error_t je;
  json_t *j = json_loads(spec, 0, &je);
  if (!j) {
    fprintf(stderr, "nirc-probe: directive JSON: %s\n", je.text);
    return 2;
  }
  struct sockaddr_storage ss;
  char err[256];
  if (nirc_parse_addr(listen_addr, &ss, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-probe: %s\n", err);
    return 2;
  }
  int ls = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (bind(ls, (struct sockaddr *)&ss, sl) != 0 || listen(ls, 4) != 0) {
    fprintf(stderr, "nirc-probe: cannot listen on %s: %s\n", listen_addr, strerror(errno));
    return 2;
  }
  /* Tell the test we listen before we block in accept(). */
  printf("{\"listening\": true}\n");
  fflush(stdout);
  int fd = accept(ls, NULL, NULL);
  close(ls);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_load_verify_locations(ctx, ca, NULL);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  SSL_CTX_use_certificate_chain_file(ctx, cert);
  SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  int rc = 1;
  json_t *out = NULL;
  if (SSL_accept(ssl) != 1) {
    out = json_pack("{s:s}", "error", "handshake failed");
    goto done;
  }
  /* Read the Hello. */
  for (;;) {
    uint8_t hdr[4];
    if (probe_read_full(ssl, hdr, 4) != 0) break;
    uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
    if (len > FRAME_MAX_PAYLOAD) break;
    uint8_t *p = malloc(len ? len : 1);
    if (!p || probe_read_full(ssl, p, len) != 0) {
      free(p);
      break;
    }
    Nirc__Envelope *env = NULL;
    int drc = frame_decode_envelope(p, len, &env);
    free(p);
    if (drc != 0) continue;
    Nirc__Envelope__MsgCase mc = env->msg_case;
    if (mc == NIRC__ENVELOPE__MSG_HELLO) {
      Nirc__Welcome w = NIRC__WELCOME__INIT;
      w.controller_node = "probe";
      w.epoch = epoch;
      w.report_interval_ms = 60000; /* keep reports out of the way */
      Nirc__Envelope we = NIRC__ENVELOPE__INIT;
      we.msg_case = NIRC__ENVELOPE__MSG_WELCOME;
      we.welcome = &w;
      probe_send_env(ssl, &we);
      /* The directive, as described. */
      Nirc__Directive d = NIRC__DIRECTIVE__INIT;
      Nirc__RouteShare sh[16], *shp[16], in[16], *inp[16];
      json_t *route = json_object_get(j, "route"), *inbound = json_object_get(j, "inbound");
      size_t i;
      json_t *e;
      json_array_foreach(route, i, e) {
        if (i >= 16) break;
        nirc__route_share__init(&sh[i]);
        sh[i].site = (char *)json_string_value(json_object_get(e, "site"));
        sh[i].permille = (uint32_t)json_integer_value(json_object_get(e, "permille"));
        shp[i] = &sh[i];
        d.n_route = i + 1;
      }
      json_array_foreach(inbound, i, e) {
        if (i >= 16) break;
        nirc__route_share__init(&in[i]);
        in[i].site = (char *)json_string_value(json_object_get(e, "site"));
        in[i].permille = (uint32_t)json_integer_value(json_object_get(e, "permille"));
        inp[i] = &in[i];
        d.n_inbound = i + 1;
      }
      d.route = shp;
      d.inbound = inp;
      d.site = (char *)json_string_value(json_object_get(j, "site"));
      d.epoch = epoch;
      d.version = (uint64_t)json_integer_value(json_object_get(j, "version"));
      d.revert_at_ms = json_integer_value(json_object_get(j, "revert_at_ms"));
      d.reason = "nirc-probe";
      Nirc__Envelope de = NIRC__ENVELOPE__INIT;
      de.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE;
      de.directive = &d;
      probe_send_env(ssl, &de);
    } else if (mc == NIRC__ENVELOPE__MSG_DIRECTIVE_ACK) {
      const Nirc__DirectiveAck *a = env->directive_ack;
      const char *res = a->result == NIRC__ACK_RESULT__ACK_RESULT_APPLIED    ? "applied"
                        : a->result == NIRC__ACK_RESULT__ACK_RESULT_REJECTED ? "rejected"
                        : a->result == NIRC__ACK_RESULT__ACK_RESULT_FAILED   ? "failed"
                                                                             : "unknown";
      out = json_pack("{s:s, s:s, s:I, s:I}", "result", res, "detail", a->detail ? a->detail : "",
                      "epoch", (json_int_t)a->epoch, "version", (json_int_t)a->version);
      frame_envelope_free(env);
      rc = 0;
      break;
    } else if (mc == NIRC__ENVELOPE__MSG_ERROR) {
      /* The agent left instead (it refuses a deposed leader's Welcome). */
      out = json_pack("{s:i, s:s}", "error_code", (int)env->error->code, "error_message",
                      env->error->message ? env->error->message : "");
      frame_envelope_free(env);
      rc = 0;
      break;
    }
    frame_envelope_free(env);
  }
  if (!out) out = json_pack("{s:s}", "error", "no acknowledgement");
done:
  json_dumpf(out, stdout, JSON_COMPACT);
  putchar('\n');
  json_decref(out);
  json_decref(j);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return rc == 0 ? 0 : 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: nirc-probe --addr HOST:PORT --ca CA [--cert C --key K] [--wait S] MODE [ARG]\n");
}

/* idle and slow-handshake: after connecting, send nothing, or the first
 * half of a genuine ClientHello (made with memory BIOs, so the bytes are
 * exactly what a real client would start with), then wait for the
 * controller to close. */
static void probe_stall(int fd, int half_hello, int64_t t0, probe_result_t *r) {
  if (half_hello) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_connect(ssl); /* wants to read: the ClientHello is in wb */
    char hello[4096];
    int n = BIO_read(wb, hello, sizeof hello);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (n <= 1 || write(fd, hello, (size_t)n / 2) != n / 2) {
      snprintf(r->detail, sizeof r->detail, "could not send half a ClientHello");
      return;
    }
    snprintf(r->detail, sizeof r->detail, "sent %d of the %d bytes of a ClientHello", n / 2, n);
  } else {
    snprintf(r->detail, sizeof r->detail, "sent nothing");
  }
  char buf[512];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) continue; /* an alert, say: keep waiting for the close */
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) r->closed = 1;
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  size_t used = strlen(r->detail);
  snprintf(r->detail + used, sizeof r->detail - used, "; %s after %lld ms",
           r->closed ? "closed by the controller" : "still open", (long long)(probe_now_ms() - t0));
}

int main(int argc, char **argv) {
  const char *addr = NULL, *ca = NULL, *cert = NULL, *key = NULL, *listen_addr = NULL;
  long wait_s = 8;
  int i = 1;
  /* A flood keeps writing while the controller closes: a write to the
   * closed socket must fail, not kill the probe. */
  signal(SIGPIPE, SIG_IGN);
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (!strcmp(argv[i], "--addr"))
      addr = argv[i + 1];
    else if (!strcmp(argv[i], "--listen"))
      listen_addr = argv[i + 1];
    else if (!strcmp(argv[i], "--ca"))
      ca = argv[i + 1];
    else if (!strcmp(argv[i], "--cert"))
      cert = argv[i + 1];
    else if (!strcmp(argv[i], "--key"))
      key = argv[i + 1];
    else if (!strcmp(argv[i], "--wait"))
      wait_s = strtol(argv[i + 1], NULL, 10);
    else {
      usage();
      return 2;
    }
  }
  if (listen_addr && i + 2 < argc && !strcmp(argv[i], "serve"))
    return probe_serve(listen_addr, ca, cert, key, strtoull(argv[i + 1], NULL, 10), argv[i + 2]);
  if (!addr || i >= argc) {
    usage();
    return 2;
  }
  const char *mode = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
  probe_result_t r;
  memset(&r, 0, sizeof r);
  SSL_CTX *ctx = NULL;
  SSL *ssl = NULL;

  struct sockaddr_storage ss;
  char err[256];
  if (nirc_parse_addr(addr, &ss, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-probe: %s\n", err);
    return 2;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  struct timeval tv = {.tv_sec = wait_s > 0 ? wait_s : 8};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  socklen_t sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  int64_t t0 = probe_now_ms();
  if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
    snprintf(r.detail, sizeof r.detail, "connect: %s", strerror(errno));
    goto out;
  }
  if (!strcmp(mode, "idle") || !strcmp(mode, "slow-handshake")) {
    probe_stall(fd, !strcmp(mode, "slow-handshake"), t0, &r);
    goto out;
  }
  if (!strcmp(mode, "plain")) {
    const char *junk = "GET / HTTP/1.0\r\n\r\n";
    if (write(fd, junk, strlen(junk)) < 0) r.closed = 1;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    r.closed = n <= 0 || r.closed;
    snprintf(r.detail, sizeof r.detail, "controller answered %zd bytes to plain text", n);
    goto out;
  }

  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (ca) SSL_CTX_load_verify_locations(ctx, ca, NULL);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (cert && *cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
      fprintf(stderr, "nirc-probe: cannot load %s / %s\n", cert, key);
      SSL_CTX_free(ctx);
      return 2;
    }
  }
  ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) {
    unsigned long e = ERR_get_error();
    snprintf(r.detail, sizeof r.detail, "handshake failed: %s",
             e ? ERR_error_string(e, NULL) : "closed");
    r.closed = 1;
    goto out;
  }
  r.handshake = 1;
  X509 *server_cert = SSL_get0_peer_certificate(ssl);
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (server_cert && X509_digest(server_cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32)
    for (unsigned k = 0; k < 32; k++)
      snprintf(r.server_fp + 2 * k, 3, "%02x", md[k]);
  /* In TLS 1.3 the client finishes first; a server that rejects our
   * certificate says so on the first read. */
  if (!strcmp(mode, "hello")) {
    probe_hello(ssl, arg ? arg : "", &r);
    if (r.welcome) probe_read(ssl, &r, 1); /* accepted: report that, do not linger */
  } else if (!strcmp(mode, "status-flood")) {
    probe_status_flood(ssl, fd, arg ? strtol(arg, NULL, 10) : 100, t0 + wait_s * 1000, &r);
  } else if (!strcmp(mode, "operator-text")) {
    char *src[] = {"xizang"}, *hub[] = {"shaanxi"};
    Nirc__CutoverRequest cr = NIRC__CUTOVER_REQUEST__INIT;
    cr.sources = src;
    cr.n_sources = 1;
    cr.hubs = hub;
    cr.n_hubs = 1;
    cr.reason = (char *)(arg ? arg : "");
    Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
    req.request_id = 1;
    req.body_case = NIRC__OPERATOR_REQUEST__BODY_CUTOVER;
    req.cutover = &cr;
    Nirc__Envelope env = NIRC__ENVELOPE__INIT;
    env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
    env.operator_request = &req;
    probe_send_env(ssl, &env);
    probe_read(ssl, &r, 0);
  } else if (!strcmp(mode, "report-as") || !strcmp(mode, "bad-report") ||
             !strcmp(mode, "operator-request") || !strcmp(mode, "report-range") ||
             !strcmp(mode, "flood") || !strcmp(mode, "hello-long") || !strcmp(mode, "welcome") ||
             !strcmp(mode, "hostile-agent") || !strcmp(mode, "hello-route")) {
    /* The slug the certificate names is the Hello claim. */
    char slug[64] = "";
    X509 *me = SSL_get_certificate(ssl);
    X509_NAME_get_text_by_NID(X509_get_subject_name(me), NID_commonName, slug, sizeof slug);
    const char *own = strchr(slug, ':') ? strchr(slug, ':') + 1 : slug;
    if (!strcmp(mode, "welcome")) {
      probe_hello(ssl, own, &r);
    } else if (!strcmp(mode, "hello-route")) {
      probe_hello_route(ssl, own, arg, &r);
    } else if (!strcmp(mode, "hello-long")) {
      char *version = probe_long_string(PROBE_LONG_STRING);
      probe_hello_ex(ssl, own, version, &r);
      free(version);
      if (r.welcome) probe_read(ssl, &r, 1);
    } else if (probe_hello(ssl, own, &r) == 0) {
      if (!strcmp(mode, "flood")) {
        long n = arg ? strtol(arg, NULL, 10) : 1000;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        /* Stop writing once the controller says something (its Error), so
         * the answer is read before our unread reports make it reset the
         * connection. */
        while (r.sent < n && poll(&pfd, 1, 0) == 0 && probe_report(ssl, own, NULL) == 0)
          r.sent++;
        snprintf(r.detail, sizeof r.detail, "wrote %ld of %ld reports in %lld ms", r.sent, n,
                 (long long)(probe_now_ms() - t0));
        probe_read(ssl, &r, 0);
      } else if (!strcmp(mode, "hostile-agent")) {
        probe_hostile_agent(ssl, fd, own, arg ? arg : "", t0 + wait_s * 1000, &r);
      } else if (!strcmp(mode, "operator-request")) {
        Nirc__StatusRequest sr = NIRC__STATUS_REQUEST__INIT;
        Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
        req.body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
        req.status = &sr;
        Nirc__Envelope env = NIRC__ENVELOPE__INIT;
        env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
        env.operator_request = &req;
        probe_send_env(ssl, &env);
        probe_read(ssl, &r, 0);
      } else {
        const char *kind = !strcmp(mode, "bad-report")     ? "ready"
                           : !strcmp(mode, "report-range") ? (arg ? arg : "huge")
                                                           : NULL;
        probe_report(ssl, !strcmp(mode, "report-as") ? arg : own, kind);
        probe_read(ssl, &r, 0);
      }
    }
  } else if (!strcmp(mode, "oversize")) {
    uint8_t hdr[4] = {0x00, 0x10, 0x00, 0x00};
    SSL_write(ssl, hdr, 4);
    probe_read(ssl, &r, 0);
  } else if (!strcmp(mode, "truncated")) {
    uint8_t buf[14] = {0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    SSL_write(ssl, buf, sizeof buf);
    SSL_shutdown(ssl);
    probe_read(ssl, &r, 0);
  } else if (!strcmp(mode, "random")) {
    size_t n = arg ? strtoul(arg, NULL, 10) : 4096;
    uint8_t *buf = malloc(n);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t k = 0; k < n; k++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[k] = (uint8_t)x;
    }
    SSL_write(ssl, buf, (int)n);
    free(buf);
    probe_read(ssl, &r, 0);
  } else if (!strcmp(mode, "malformed")) {
    /* Tag 0x0f: field 1 with wire type 7, which does not exist. */
    uint8_t buf[] = {0, 0, 0, 4, 0x0f, 0xff, 0xff, 0xff};
    SSL_write(ssl, buf, sizeof buf);
    probe_read(ssl, &r, 0);
  } else if (!strcmp(mode, "unknown-type")) {
    /* Field 99, wire type 0 (varint): tag = 99 << 3 = 792 = 0x98 0x06. */
    uint8_t buf[] = {0, 0, 0, 3, 0x98, 0x06, 0x01};
    SSL_write(ssl, buf, sizeof buf);
    probe_read(ssl, &r, 0);
  } else {
    usage();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return 2;
  }
out:
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  json_t *o = json_pack("{s:s, s:b, s:b, s:o, s:s, s:b, s:s, s:I, s:s, s:I}", "mode", mode,
                        "handshake", r.handshake, "welcome", r.welcome, "error_code",
                        r.error_code ? json_integer(r.error_code) : json_null(), "error_message",
                        r.error_message, "closed", r.closed, "detail", r.detail, "elapsed_ms",
                        (json_int_t)(probe_now_ms() - t0), "server_fingerprint", r.server_fp,
                        "sent", (json_int_t)r.sent);
  json_dumpf(o, stdout, JSON_COMPACT);
  putchar('\n');
  json_decref(o);
  return 0;
}
