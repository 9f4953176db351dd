/* nirc-probe: a deliberately misbehaving NIRC client for the integration
 * and security tests. It uses plain blocking OpenSSL on a socket — not
 * common/link.c — so the controller is tested against an independent
 * implementation, and it can send bytes no well-behaved client would.
 *
 *   nirc-probe --addr 127.0.0.1:7443 --ca CA [--cert C --key K] MODE [ARG]
 *
 * Modes:
 *   hello SLUG        send Hello claiming SLUG, report what comes back
 *   report-as SLUG    proper Hello, then a LoadReport claiming SLUG
 *   bad-report        proper Hello, then a LoadReport with ready > logged in
 *   operator-request  (site cert) proper Hello, then an OperatorRequest
 *   oversize          a frame header announcing 1 MiB
 *   truncated         a header for 100 bytes, 10 bytes, then close
 *   random N          N random bytes after the handshake
 *   unknown-type      an Envelope carrying only field 99
 *   malformed         a frame of valid length whose payload is not protobuf
 *   plain             no TLS: a line of text on the raw socket
 *
 * Or, as a fake controller (with a controller certificate):
 *   nirc-probe --listen 127.0.0.1:PORT --ca CA --cert C --key K serve EPOCH JSON
 * accepts one agent, answers its Hello with a Welcome for EPOCH, sends
 * the Directive described by JSON ({"version", "route": [{"site",
 * "permille"}], "inbound": [...], "revert_at_ms", "site"}), and prints the
 * agent's DirectiveAck as {"result", "detail", "epoch", "version"}.
 *
 * Prints one JSON line: {"mode", "handshake", "welcome", "error_code",
 * "error_message", "closed", "detail"} and exits 0; 2 on usage errors. */
#include "frame.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
  int handshake, welcome, closed;
  int error_code;
  char error_message[512];
  char detail[512];
} probe_result_t;

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

static int probe_hello(SSL *ssl, const char *slug, probe_result_t *r) {
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = 1;
  h.software_version = "probe";
  h.site = (char *)slug;
  h.adapter = "probe";
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (probe_send_env(ssl, &env) != 0) return -1;
  probe_read(ssl, r, 1);
  return r->welcome ? 0 : -1;
}

static void probe_report(SSL *ssl, const char *claim, int bad) {
  Nirc__LoadReport lr = NIRC__LOAD_REPORT__INIT;
  lr.site = (char *)claim;
  lr.interval_ms = 1000;
  lr.agents_logged_in = 5;
  lr.agents_ready = bad ? 50 : 3;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &lr;
  probe_send_env(ssl, &env);
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
  fprintf(stderr, "usage: nirc-probe --addr HOST:PORT --ca CA [--cert C --key K] MODE [ARG]\n");
}

int main(int argc, char **argv) {
  const char *addr = NULL, *ca = NULL, *cert = NULL, *key = NULL, *listen_addr = NULL;
  int i = 1;
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
  struct timeval tv = {.tv_sec = 8};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  socklen_t sl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
    snprintf(r.detail, sizeof r.detail, "connect: %s", strerror(errno));
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
  /* In TLS 1.3 the client finishes first; a server that rejects our
   * certificate says so on the first read. */
  if (!strcmp(mode, "hello")) {
    probe_hello(ssl, arg ? arg : "", &r);
    if (r.welcome) probe_read(ssl, &r, 1); /* accepted: report that, do not linger */
  } else if (!strcmp(mode, "report-as") || !strcmp(mode, "bad-report") ||
             !strcmp(mode, "operator-request")) {
    /* The slug the certificate names is the Hello claim. */
    char slug[64] = "";
    X509 *me = SSL_get_certificate(ssl);
    X509_NAME_get_text_by_NID(X509_get_subject_name(me), NID_commonName, slug, sizeof slug);
    const char *own = strchr(slug, ':') ? strchr(slug, ':') + 1 : slug;
    if (probe_hello(ssl, own, &r) == 0) {
      if (!strcmp(mode, "operator-request")) {
        Nirc__StatusRequest sr = NIRC__STATUS_REQUEST__INIT;
        Nirc__OperatorRequest req = NIRC__OPERATOR_REQUEST__INIT;
        req.body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
        req.status = &sr;
        Nirc__Envelope env = NIRC__ENVELOPE__INIT;
        env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
        env.operator_request = &req;
        probe_send_env(ssl, &env);
      } else {
        probe_report(ssl, !strcmp(mode, "report-as") ? arg : own, !strcmp(mode, "bad-report"));
      }
      probe_read(ssl, &r, 0);
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
  json_t *o = json_pack("{s:s, s:b, s:b, s:o, s:s, s:b, s:s}", "mode", mode, "handshake",
                        r.handshake, "welcome", r.welcome, "error_code",
                        r.error_code ? json_integer(r.error_code) : json_null(), "error_message",
                        r.error_message, "closed", r.closed, "detail", r.detail);
  json_dumpf(o, stdout, JSON_COMPACT);
  putchar('\n');
  json_decref(o);
  return 0;
}
