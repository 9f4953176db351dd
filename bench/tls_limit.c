/* tls_limit: the TLS limit of one core — CPU time of one full mutual
 * TLS 1.3 handshake on each side, with NIRC's own contexts (common/tls.c:
 * TLS 1.3 only, X25519/P-256, the peer's certificate verified against the
 * CA, the CRL checked when one is given) and nothing else: no sockets, no
 * event loop, no protocol. Client and server talk through memory BIOs in
 * one thread; each side's SSL calls are timed on the thread's CPU clock.
 * The server side also does what nircd does with a finished handshake
 * before anything else (the peer identity and the revocation check).
 *
 *   tls_limit --ca CA --server-cert C --server-key K --client-cert C
 *             --client-key K [--crl CRL] [--handshakes N]
 *
 * Prints one JSON line: the CPU milliseconds per handshake of each side,
 * the handshakes one core completes per second on each side, and the pairs
 * per second one core completes when it plays both (a generator on the
 * same machine as the server). bench/storm.py compares its storms with
 * these figures; a storm cannot be served faster than they allow. */
#include "err.h"
#include "tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double tl_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Moves what one side wrote to the other side's read BIO. */
static int tl_pump(BIO *from, BIO *to) {
  char buf[16384];
  int moved = 0;
  while (BIO_ctrl_pending(from) > 0) {
    int n = BIO_read(from, buf, sizeof buf);
    if (n <= 0) break;
    if (BIO_write(to, buf, n) != n) return -1;
    moved += n;
  }
  return moved;
}

/* An SSL on memory BIOs for one side; adds its CPU milliseconds. */
static SSL *tl_ssl_new(SSL_CTX *ctx, int server, double *ms) {
  double t = tl_cpu_ms();
  SSL *ssl = SSL_new(ctx);
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  if (!ssl || !in || !out) {
    SSL_free(ssl);
    BIO_free(in);
    BIO_free(out);
    return NULL;
  }
  SSL_set_bio(ssl, in, out);
  if (server)
    SSL_set_accept_state(ssl);
  else
    SSL_set_connect_state(ssl);
  *ms += tl_cpu_ms() - t;
  return ssl;
}

/* One step of one side's handshake, timed. 0, or -1 with err. */
static int tl_step(SSL *ssl, int *done, double *ms, char *err, size_t errlen) {
  if (*done) return 0;
  double t = tl_cpu_ms();
  int r = SSL_do_handshake(ssl);
  *ms += tl_cpu_ms() - t;
  if (r == 1)
    *done = 1;
  else if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
    tls_error_string(err, errlen);
    return -1;
  }
  return 0;
}

/* One handshake; adds each side's CPU milliseconds. 0 or -1 with err. */
static int tl_handshake(SSL_CTX *sctx, SSL_CTX *cctx, const tls_revocation_t *rev, double *s_ms,
                        double *c_ms, char *err, size_t errlen) {
  SSL *s = tl_ssl_new(sctx, 1, s_ms), *c = tl_ssl_new(cctx, 0, c_ms);
  if (!s || !c) {
    SSL_free(s);
    SSL_free(c);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  BIO *s_in = SSL_get_rbio(s), *s_out = SSL_get_wbio(s);
  BIO *c_in = SSL_get_rbio(c), *c_out = SSL_get_wbio(c);
  double t, t2;
  int s_done = 0, c_done = 0, rc = -1;
  for (int round = 0; round < 20 && !(s_done && c_done); round++) {
    if (tl_step(c, &c_done, c_ms, err, errlen) != 0 || tl_pump(c_out, s_in) < 0) goto out;
    if (tl_step(s, &s_done, s_ms, err, errlen) != 0 || tl_pump(s_out, c_in) < 0) goto out;
  }
  if (!(s_done && c_done)) {
    snprintf(err, errlen, "the handshake did not finish in 20 rounds");
    goto out;
  }
  /* What nircd does first with an accepted link (controller/net/server.c):
   * who the certificate says the peer is, and whether it was revoked. */
  t = tl_cpu_ms();
  peer_identity_t id;
  char why[256];
  if (tls_peer_identity(s, &id, err, errlen) != 0) goto out;
  if (tls_revocation_check(rev, SSL_get0_peer_certificate(s), why, sizeof why)) {
    snprintf(err, errlen, "the client certificate is refused: %s", why);
    goto out;
  }
  *s_ms += tl_cpu_ms() - t;
  rc = 0;
out:
  t = tl_cpu_ms();
  SSL_free(s);
  t2 = tl_cpu_ms();
  *s_ms += t2 - t;
  SSL_free(c);
  *c_ms += tl_cpu_ms() - t2;
  return rc;
}

static int tl_usage(void) {
  fprintf(stderr, "usage: tls_limit --ca CA --server-cert C --server-key K --client-cert C "
                  "--client-key K [--crl CRL] [--handshakes N]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *ca = NULL, *scert = NULL, *skey = NULL, *ccert = NULL, *ckey = NULL, *crl = NULL;
  long n = 2000;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return tl_usage();
    if (strcmp(argv[i], "--ca") == 0)
      ca = v;
    else if (strcmp(argv[i], "--server-cert") == 0)
      scert = v;
    else if (strcmp(argv[i], "--server-key") == 0)
      skey = v;
    else if (strcmp(argv[i], "--client-cert") == 0)
      ccert = v;
    else if (strcmp(argv[i], "--client-key") == 0)
      ckey = v;
    else if (strcmp(argv[i], "--crl") == 0)
      crl = v;
    else if (strcmp(argv[i], "--handshakes") == 0) {
      char *end;
      n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 10000000) return tl_usage();
    } else
      return tl_usage();
    i++;
  }
  if (!ca || !scert || !skey || !ccert || !ckey) return tl_usage();
  char err[512];
  SSL_CTX *sctx = NULL, *cctx = NULL;
  tls_revocation_t *rev = NULL;
  if (tls_ctx_new(TLS_SERVER, ca, scert, skey, &sctx, err, sizeof err) != 0 ||
      tls_ctx_new(TLS_CLIENT, ca, ccert, ckey, &cctx, err, sizeof err) != 0 ||
      tls_revocation_load(ca, crl, NULL, &rev, err, sizeof err) != 0 ||
      tls_revocation_install(rev, sctx, err, sizeof err) != 0) {
    fprintf(stderr, "tls_limit: %s\n", err);
    return 1;
  }
  /* A first handshake outside the figures: OpenSSL loads and caches its
   * algorithms on first use, as nircd does once at start. */
  double s_ms = 0, c_ms = 0;
  if (tl_handshake(sctx, cctx, rev, &s_ms, &c_ms, err, sizeof err) != 0) {
    fprintf(stderr, "tls_limit: %s\n", err);
    return 1;
  }
  s_ms = c_ms = 0;
  for (long i = 0; i < n; i++) {
    if (tl_handshake(sctx, cctx, rev, &s_ms, &c_ms, err, sizeof err) != 0) {
      fprintf(stderr, "tls_limit: handshake %ld: %s\n", i + 1, err);
      return 1;
    }
  }
  double s = s_ms / (double)n, c = c_ms / (double)n;
  printf("{\"handshakes\": %ld, \"openssl\": \"%s\", \"server_cpu_ms\": %.4f, "
         "\"client_cpu_ms\": %.4f, \"server_per_core_s\": %.0f, \"client_per_core_s\": %.0f, "
         "\"pairs_per_core_s\": %.0f}\n",
         n, OpenSSL_version(OPENSSL_VERSION), s, c, 1000.0 / s, 1000.0 / c, 1000.0 / (s + c));
  tls_revocation_free(rev);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  return 0;
}
