/* Unit tests for revocation (common/tls.c): the CRL and blocklist
 * loaders and the check nircd runs on open and on reload; and one test of
 * common/link.c's handshake on real sockets: a client that gave up is not
 * answered.
 *
 * What the controller relies on: a CRL is accepted only when its CA
 * signed it and it is current (anything else would fail every handshake
 * far from the cause), a serial on it is found by issuer and serial, the
 * blocklist takes fingerprints as nircd and `openssl x509 -fingerprint`
 * print them, and every refusal names the file and line. The CA, the
 * leaves and the CRLs are made here with the OpenSSL API, in a temporary
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "link.h"
#include "support/loop.h"
#include "tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct {
  char dir[64];
  EVP_PKEY *ca_key, *leaf_key, *rogue_key;
  X509 *ca, *revoked, *good;
  char ca_path[128];
} fixture_t;

static X509 *mkcert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, long serial) {
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
  return x;
}

/* A CRL of `ca` listing `serial`, signed by `signer`, whose next update is
 * next_days from now (negative: already past). */
static void write_crl(const char *path, X509 *ca, EVP_PKEY *signer, long serial, int next_days) {
  X509_CRL *crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
  time_t now = time(NULL);
  ASN1_TIME *last = ASN1_TIME_adj(NULL, now, next_days < 0 ? next_days - 2 : -1, 0);
  ASN1_TIME *next = ASN1_TIME_adj(NULL, now, next_days, 0);
  X509_CRL_set1_lastUpdate(crl, last);
  X509_CRL_set1_nextUpdate(crl, next);
  X509_REVOKED *r = X509_REVOKED_new();
  ASN1_INTEGER *s = ASN1_INTEGER_new();
  ASN1_INTEGER_set(s, serial);
  X509_REVOKED_set_serialNumber(r, s);
  X509_REVOKED_set_revocationDate(r, last);
  X509_CRL_add0_revoked(crl, r);
  X509_CRL_sort(crl);
  assert_true(X509_CRL_sign(crl, signer, EVP_sha256()) > 0);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  PEM_write_X509_CRL(f, crl);
  fclose(f);
  ASN1_INTEGER_free(s);
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_free(crl);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void fingerprint(X509 *x, char hex[65]) {
  unsigned char md[32];
  unsigned int n = 0;
  assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
  for (unsigned i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/nirc-test-tls.XXXXXX");
  if (!mkdtemp(fx->dir)) return -1;
  fx->ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  fx->leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  fx->rogue_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  fx->ca = mkcert(fx->ca_key, fx->ca_key, NULL, "Test CA", 1);
  fx->revoked = mkcert(fx->leaf_key, fx->ca_key, fx->ca, "site:hubei", 42);
  fx->good = mkcert(fx->leaf_key, fx->ca_key, fx->ca, "site:henan", 43);
  snprintf(fx->ca_path, sizeof fx->ca_path, "%s/ca.crt", fx->dir);
  FILE *f = fopen(fx->ca_path, "w");
  if (!f) return -1;
  PEM_write_X509(f, fx->ca);
  fclose(f);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  if (system(cmd) != 0) return -1;
  X509_free(fx->ca);
  X509_free(fx->revoked);
  X509_free(fx->good);
  EVP_PKEY_free(fx->ca_key);
  EVP_PKEY_free(fx->leaf_key);
  EVP_PKEY_free(fx->rogue_key);
  free(fx);
  return 0;
}

static void test_crl_finds_the_revoked_serial(void **state) {
  fixture_t *fx = *state;
  char crl[128], err[512], why[256];
  snprintf(crl, sizeof crl, "%s/crl.pem", fx->dir);
  write_crl(crl, fx->ca, fx->ca_key, 42, 10);
  tls_revocation_t *r = NULL;
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), 0);
  assert_int_equal(tls_revocation_crl_entries(r), 1);
  assert_in_range(tls_revocation_crl_days_left(r), 9, 10);
  assert_int_equal(tls_revocation_check(r, fx->revoked, why, sizeof why), 1);
  assert_string_equal(why, "certificate revoked: serial 2A is on the CRL");
  assert_int_equal(tls_revocation_check(r, fx->good, why, sizeof why), 0);
  /* Installed into a context, the handshake checks the CRL itself. */
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  assert_int_equal(tls_revocation_install(r, ctx, err, sizeof err), 0);
  X509_VERIFY_PARAM *p = X509_STORE_get0_param(SSL_CTX_get_cert_store(ctx));
  assert_true(X509_VERIFY_PARAM_get_flags(p) & X509_V_FLAG_CRL_CHECK);
  SSL_CTX_free(ctx);
  tls_revocation_free(r);
}

static void test_crl_refused_unless_signed_by_the_ca_and_current(void **state) {
  fixture_t *fx = *state;
  char crl[128], err[512];
  snprintf(crl, sizeof crl, "%s/crl-bad.pem", fx->dir);
  tls_revocation_t *r = NULL;
  /* Same issuer name, another key: a forgery, or a CRL of another CA. */
  write_crl(crl, fx->ca, fx->rogue_key, 42, 10);
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), NIRC_ETLS);
  assert_non_null(strstr(err, crl));
  assert_non_null(strstr(err, "is not signed by a CA in"));
  /* Past its next update: would refuse every certificate of the CA. */
  write_crl(crl, fx->ca, fx->ca_key, 42, -1);
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), NIRC_ETLS);
  assert_non_null(strstr(err, "past its next update"));
  /* Not a CRL at all, half a CRL, no file. */
  write_text(crl, "hello\n");
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), NIRC_ETLS);
  assert_non_null(strstr(err, "no CRL in the file"));
  write_text(crl, "-----BEGIN X509 CRL-----\nMIIB\n");
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), NIRC_ETLS);
  assert_non_null(strstr(err, "cannot read the CRL"));
  snprintf(crl, sizeof crl, "%s/none.pem", fx->dir);
  assert_int_equal(tls_revocation_load(fx->ca_path, crl, NULL, &r, err, sizeof err), NIRC_EIO);
  assert_non_null(strstr(err, "none.pem: cannot open the CRL"));
  assert_null(r);
}

static void test_blocklist_formats(void **state) {
  fixture_t *fx = *state;
  char path[128], err[512], why[256], fp[65], upper[100];
  fingerprint(fx->good, fp);
  /* As `openssl x509 -noout -fingerprint -sha256` prints it. */
  size_t k = 0;
  for (int i = 0; i < 32; i++) {
    if (i) upper[k++] = ':';
    upper[k++] = (char)(fp[2 * i] >= 'a' ? fp[2 * i] - 32 : fp[2 * i]);
    upper[k++] = (char)(fp[2 * i + 1] >= 'a' ? fp[2 * i + 1] - 32 : fp[2 * i + 1]);
  }
  upper[k] = '\0';
  char text[600];
  snprintf(text, sizeof text,
           "# stolen laptops\n"
           "\n"
           "%s\n"
           "  sha256 Fingerprint=%s   # the same one again\r\n"
           "%064d\n",
           fp, upper, 0);
  snprintf(path, sizeof path, "%s/blocklist", fx->dir);
  write_text(path, text);
  tls_revocation_t *r = NULL;
  assert_int_equal(tls_revocation_load(fx->ca_path, NULL, path, &r, err, sizeof err), 0);
  assert_int_equal(tls_revocation_blocked(r), 2); /* the duplicate counts once */
  assert_int_equal(tls_revocation_crl_days_left(r), -1);
  assert_int_equal(tls_revocation_check(r, fx->good, why, sizeof why), 1);
  assert_non_null(strstr(why, fp));
  assert_non_null(strstr(why, "is on the blocklist"));
  assert_int_equal(tls_revocation_check(r, fx->revoked, why, sizeof why), 0);
  tls_revocation_free(r);
}

static void test_blocklist_errors_name_file_and_line(void **state) {
  fixture_t *fx = *state;
  char path[128], err[512], want[160];
  snprintf(path, sizeof path, "%s/blocklist-bad", fx->dir);
  tls_revocation_t *r = NULL;
  char zeros[66];
  memset(zeros, '0', 65);
  zeros[65] = '\0';
  char too_long[80], trailing[80];
  snprintf(too_long, sizeof too_long, "# ok\n%s\n", zeros);               /* 65 digits */
  snprintf(trailing, sizeof trailing, "# ok\n%.64s site:hubei\n", zeros); /* no '#' */
  const char *const bad[] = {"# ok\nabc\n", too_long, "# ok\nsite:hubei\n", trailing};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_text(path, bad[i]);
    assert_int_equal(tls_revocation_load(fx->ca_path, NULL, path, &r, err, sizeof err),
                     NIRC_ECONFIG);
    snprintf(want, sizeof want, "%s:2: not a SHA-256 certificate fingerprint", path);
    assert_non_null(strstr(err, want));
    assert_null(r);
  }
  snprintf(path, sizeof path, "%s/no-such-blocklist", fx->dir);
  assert_int_equal(tls_revocation_load(fx->ca_path, NULL, path, &r, err, sizeof err), NIRC_EIO);
  assert_non_null(strstr(err, "no-such-blocklist: cannot open the blocklist"));
}

static void test_nothing_configured_revokes_nothing(void **state) {
  fixture_t *fx = *state;
  char err[256], why[256];
  tls_revocation_t *r = NULL;
  assert_int_equal(tls_revocation_load(fx->ca_path, "", "", &r, err, sizeof err), 0);
  assert_int_equal(tls_revocation_check(r, fx->revoked, why, sizeof why), 0);
  assert_int_equal(tls_revocation_check(NULL, fx->revoked, why, sizeof why), 0);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  assert_int_equal(tls_revocation_install(r, ctx, err, sizeof err), 0);
  X509_VERIFY_PARAM *p = X509_STORE_get0_param(SSL_CTX_get_cert_store(ctx));
  assert_false(X509_VERIFY_PARAM_get_flags(p) & X509_V_FLAG_CRL_CHECK);
  SSL_CTX_free(ctx);
  tls_revocation_free(r);
}

/* ---- the chain policy of tls_ctx_new (issue 16, points 6 and 7) ---- */

/* A certificate with basicConstraints `bc` ("critical,CA:TRUE" ...). */
static X509 *mkcert_bc(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, long serial,
                       const char *bc) {
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, bc);
  assert_non_null(e);
  X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
  return x;
}

static void write_pem(const char *path, X509 *a, X509 *b, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  if (a) PEM_write_X509(f, a);
  if (b) PEM_write_X509(f, b);
  if (key) PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  fclose(f);
}

/* write_pem to `name` in the fixture's directory; the path goes to path. */
static void write_pem_in(const fixture_t *fx, char *path, size_t len, const char *name, X509 *a,
                         X509 *b, EVP_PKEY *key) {
  snprintf(path, len, "%s/%s", fx->dir, name);
  write_pem(path, a, b, key);
}

/* Runs a handshake in memory between contexts made by tls_ctx_new;
 * returns the server's verify result (X509_V_OK when the client's
 * certificate was accepted), or -1 when the handshake failed before any
 * certificate was checked (no common group). */
static long handshake(const char *ca, const char *srv_pem, const char *cli_pem,
                      const char *cli_groups) {
  char err[512];
  SSL_CTX *sctx = NULL, *cctx = NULL;
  assert_int_equal(tls_ctx_new(TLS_SERVER, ca, srv_pem, srv_pem, &sctx, err, sizeof err), 0);
  assert_int_equal(tls_ctx_new(TLS_CLIENT, ca, cli_pem, cli_pem, &cctx, err, sizeof err), 0);
  if (cli_groups) assert_int_equal(SSL_CTX_set1_groups_list(cctx, cli_groups), 1);
  SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
  BIO *sb, *cb;
  assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
  SSL_set_bio(s, sb, sb);
  SSL_set_bio(c, cb, cb);
  SSL_set_accept_state(s);
  SSL_set_connect_state(c);
  int sdone = 0, cdone = 0, failed = 0;
  for (int i = 0; i < 50 && !failed && !(sdone && cdone); i++) {
    if (!cdone) {
      int r = SSL_do_handshake(c);
      if (r == 1)
        cdone = 1;
      else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
        failed = 1;
    }
    if (!sdone) {
      int r = SSL_do_handshake(s);
      if (r == 1)
        sdone = 1;
      else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
        failed = 1;
    }
  }
  X509 *peer = SSL_get0_peer_certificate(s);
  long vr = sdone                                           ? X509_V_OK
            : peer || SSL_get_verify_result(s) != X509_V_OK ? SSL_get_verify_result(s)
                                                            : -1;
  SSL_free(s);
  SSL_free(c);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return vr;
}

static void test_chain_policy(void **state) {
  fixture_t *fx = *state;
  /* A root without a path length (as pki.sh made before pathlen:0), so
   * only the verify depth can refuse an intermediate. */
  EVP_PKEY *ik = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  EVP_PKEY *sk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509 *root = mkcert_bc(fx->ca_key, fx->ca_key, NULL, "Legacy CA", 100, "critical,CA:TRUE");
  X509 *srv = mkcert_bc(sk, fx->ca_key, root, "controller:nircd", 101, "critical,CA:FALSE");
  X509 *inter = mkcert_bc(ik, fx->ca_key, root, "rogue", 102, "critical,CA:TRUE");
  X509 *minted = mkcert_bc(fx->leaf_key, ik, inter, "operator:mallory", 103, "critical,CA:FALSE");
  X509 *direct =
      mkcert_bc(fx->leaf_key, fx->ca_key, root, "operator:alice", 104, "critical,CA:FALSE");
  X509 *ca_peer =
      mkcert_bc(fx->leaf_key, fx->ca_key, root, "operator:carl", 105, "critical,CA:TRUE");
  char ca[128], sp[128], mp[128], dp[128], cp[128];
  write_pem_in(fx, ca, sizeof ca, "legacy-ca.crt", root, NULL, NULL);
  write_pem_in(fx, sp, sizeof sp, "srv.pem", srv, NULL, sk);
  write_pem_in(fx, mp, sizeof mp, "minted.pem", minted, inter, fx->leaf_key);
  write_pem_in(fx, dp, sizeof dp, "direct.pem", direct, NULL, fx->leaf_key);
  write_pem_in(fx, cp, sizeof cp, "ca-peer.pem", ca_peer, NULL, fx->leaf_key);

  assert_int_equal(handshake(ca, sp, dp, NULL), X509_V_OK);
  /* An intermediate the root signed mints nobody. */
  assert_int_equal(handshake(ca, sp, mp, NULL), X509_V_ERR_CERT_CHAIN_TOO_LONG);
  /* A CA is not a peer, even signed by the root directly. */
  assert_int_equal(handshake(ca, sp, cp, NULL), X509_V_ERR_INVALID_NON_CA);
  /* Key exchange: X25519 or P-256, nothing else. */
  assert_int_equal(handshake(ca, sp, dp, "P-256"), X509_V_OK);
  assert_int_equal(handshake(ca, sp, dp, "X25519"), X509_V_OK);
  assert_int_equal(handshake(ca, sp, dp, "X448"), -1);
  assert_int_equal(handshake(ca, sp, dp, "ffdhe2048"), -1);
  X509_free(root);
  X509_free(srv);
  X509_free(inter);
  X509_free(minted);
  X509_free(direct);
  X509_free(ca_peer);
  EVP_PKEY_free(ik);
  EVP_PKEY_free(sk);
}

/* ---- link.c: a client that gave up during its handshake ---- */

typedef struct {
  SSL_CTX *ctx;
  int accepted, closed, opened;
  char why[256];
} gaveup_t;

static void gu_on_open(link_t *l) {
  ((gaveup_t *)link_data(l))->opened++;
}

static void gu_on_close(link_t *l, int err, const char *why, int was_open) {
  gaveup_t *g = link_data(l);
  snprintf(g->why, sizeof g->why, "%s", why);
  g->closed++;
}

static void gu_on_connection(uv_stream_t *srv, int status) {
  gaveup_t *g = srv->data;
  link_opts_t o;
  link_opts_default(&o);
  link_cbs_t cbs = {.on_open = gu_on_open, .on_close = gu_on_close};
  link_t *l;
  if (status == 0 && link_accept(srv, g->ctx, &o, &cbs, g, &l) == 0) g->accepted++;
}

/* The server's flight has reached the client's socket (*arg). */
static bool gu_answered(void *ctx, const void *arg) {
  (void)ctx;
  char b;
  return recv(*(const int *)arg, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* A ClientHello from a real client context, sent on a blocking socket to
 * the listener (the kernel completes the TCP handshake into the backlog
 * while the loop does not run, as in a storm); the socket is closed at
 * once when give_up, as an agent's connect timeout closes it. Otherwise
 * returns the socket, and the client's SSL in *keep. */
static int gu_send_client_hello(SSL_CTX *cctx, int port, bool give_up, SSL **keep) {
  SSL *c = SSL_new(cctx);
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  SSL_set_bio(c, in, out);
  SSL_set_connect_state(c);
  assert_int_equal(SSL_get_error(c, SSL_do_handshake(c)), SSL_ERROR_WANT_READ);
  char hello[4096];
  int n = BIO_read(out, hello, sizeof hello);
  assert_true(n > 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(send(fd, hello, (size_t)n, 0), n);
  if (give_up) {
    SSL_free(c);
    close(fd);
    return -1;
  }
  *keep = c;
  return fd;
}

static void test_link_does_not_answer_a_client_that_gave_up(void **state) {
  fixture_t *fx = *state;
  EVP_PKEY *sk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  /* Both sides verify: a CA as pki.sh makes one, and leaves it signed. */
  X509 *root = mkcert_bc(fx->ca_key, fx->ca_key, NULL, "Link CA", 200, "critical,CA:TRUE");
  X509 *srv = mkcert_bc(sk, fx->ca_key, root, "controller:nircd", 201, "critical,CA:FALSE");
  X509 *cli = mkcert_bc(fx->leaf_key, fx->ca_key, root, "site:henan", 202, "critical,CA:FALSE");
  char ca[128], sp[128], cp[128], err[512];
  write_pem_in(fx, ca, sizeof ca, "gu-ca.crt", root, NULL, NULL);
  write_pem_in(fx, sp, sizeof sp, "gu-srv.pem", srv, NULL, sk);
  write_pem_in(fx, cp, sizeof cp, "gu-cli.pem", cli, NULL, fx->leaf_key);
  gaveup_t g = {0};
  SSL_CTX *cctx = NULL;
  assert_int_equal(tls_ctx_new(TLS_SERVER, ca, sp, sp, &g.ctx, err, sizeof err), 0);
  assert_int_equal(tls_ctx_new(TLS_CLIENT, ca, cp, cp, &cctx, err, sizeof err), 0);

  uv_loop_t loop;
  uv_loop_init(&loop);
  tloop_t t;
  tloop_init(&t, &loop);
  uv_tcp_t lsn;
  uv_tcp_init(&loop, &lsn);
  lsn.data = &g;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&lsn, (struct sockaddr *)&a, 0), 0);
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&lsn, (struct sockaddr *)&bound, &blen);
  int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  assert_int_equal(uv_listen((uv_stream_t *)&lsn, 16, gu_on_connection), 0);

  /* Gave up: closed before the loop ever read it. Not answered. */
  gu_send_client_hello(cctx, port, true, NULL);
  assert_true(tloop_wait(&t, &g.closed, 1, 5000));
  assert_int_equal(g.accepted, 1);
  assert_int_equal(g.opened, 0);
  assert_non_null(strstr(g.why, "gave up"));

  /* Still waiting: answered with the server's flight (ServerHello on). */
  SSL *c = NULL;
  int fd = gu_send_client_hello(cctx, port, false, &c);
  assert_true(tloop_wait(&t, &g.accepted, 2, 5000));
  assert_true(tloop_wait_for(&t, gu_answered, NULL, &fd, 5000));
  char answer[16384];
  ssize_t got = recv(fd, answer, sizeof answer, 0);
  assert_true(got > 0);
  assert_int_equal(answer[0], 0x16); /* a TLS handshake record */
  assert_int_equal(g.closed, 1);
  /* The client finishes its handshake with that flight, sends its last one
   * and closes at once, before the loop reads either: in TLS 1.3 that is a
   * finished client (a link asking nothing), not one that gave up. */
  BIO_write(SSL_get_rbio(c), answer, (int)got);
  assert_int_equal(SSL_do_handshake(c), 1);
  char last[4096];
  int n = BIO_read(SSL_get_wbio(c), last, sizeof last);
  assert_true(n > 0);
  assert_int_equal(send(fd, last, (size_t)n, 0), n);
  close(fd);
  SSL_free(c);
  assert_true(tloop_wait(&t, &g.closed, 2, 5000));
  assert_int_equal(g.opened, 1);
  assert_null(strstr(g.why, "gave up"));

  uv_close((uv_handle_t *)&lsn, NULL);
  assert_true(tloop_drain(&t, 2000));
  assert_int_equal(uv_loop_close(&loop), 0);
  SSL_CTX_free(g.ctx);
  SSL_CTX_free(cctx);
  X509_free(root);
  X509_free(srv);
  X509_free(cli);
  EVP_PKEY_free(sk);
}

/* A certificate's end is read with its identity (peer_identity_t
 * not_after_ms): the controller warns of a site's before its link dies. */
static void test_identity_says_when_the_certificate_ends(void **state) {
  fixture_t *fx = *state;
  char path[128], err[256];
  write_pem_in(fx, path, sizeof path, "henan.pem", fx->good, NULL, NULL);
  peer_identity_t id;
  int64_t now = (int64_t)time(NULL) * 1000;
  assert_int_equal(tls_file_identity(path, &id, err, sizeof err), 0);
  assert_string_equal(id.name, "henan");
  /* mkcert: a day from when it was made, whole seconds. */
  assert_in_range(id.not_after_ms, now + 86400000 - 120000, now + 86400000 + 1000);
  assert_int_equal(id.not_after_ms % 1000, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_says_when_the_certificate_ends),
      cmocka_unit_test(test_crl_finds_the_revoked_serial),
      cmocka_unit_test(test_crl_refused_unless_signed_by_the_ca_and_current),
      cmocka_unit_test(test_blocklist_formats),
      cmocka_unit_test(test_blocklist_errors_name_file_and_line),
      cmocka_unit_test(test_nothing_configured_revokes_nothing),
      cmocka_unit_test(test_chain_policy),
      cmocka_unit_test(test_link_does_not_answer_a_client_that_gave_up),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
