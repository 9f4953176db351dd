#include "tls.h"

#include "clock.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Longest note tls_verify_cb leaves on a refused handshake. */
#define TLS_NOTE_MAX 320
/* Most fingerprints a blocklist may hold: a bound, not a target (a CRL is
 * the tool for long lists). */
#define TLS_BLOCKLIST_MAX 100000

/* ex_data index of that note: an OPENSSL_malloc'd string owned by the
 * SSL and freed with it (tls_note_free). Created with the first context;
 * each process has one loop thread doing TLS. */
static int tls_note_idx = -1;

static int tls_verify_cb(int ok, X509_STORE_CTX *x);
static void tls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg);

/* TLS 1.3 key updates a peer may ask for in a minute. A NIRC peer never
 * needs one (OpenSSL updates keys only after far more data than a link
 * carries in a day); each costs us a key derivation and, when the peer
 * asks for ours too, a reply, so a flood of them is closed. */
#define TLS_KEY_UPDATES_PER_MIN 10
/* ex_data index of a peer's key update count (tls_ku_t, OPENSSL_zalloc'd,
 * owned by the SSL). */
static int tls_ku_idx = -1;
typedef struct {
  int64_t window_ms; /* start of the current minute */
  unsigned n;        /* key updates received in it */
  int over;          /* over TLS_KEY_UPDATES_PER_MIN: the link must close */
} tls_ku_t;

static const char *const kind_names[] = {"unknown", "site", "operator", "controller"};
static const char *const role_names[] = {"none", "viewer", "operator", "admin"};

const char *tls_kind_name(peer_kind_t k) {
  return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "unknown";
}
const char *tls_role_name(op_role_t r) {
  return (unsigned)r < sizeof role_names / sizeof role_names[0] ? role_names[r] : "none";
}

void tls_error_string(char *buf, size_t len) {
  unsigned long e;
  size_t used = 0;
  buf[0] = '\0';
  while ((e = ERR_get_error()) != 0) {
    char one[256];
    ERR_error_string_n(e, one, sizeof one);
    int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
  }
  if (!buf[0]) snprintf(buf, len, "no OpenSSL error recorded");
}

static void tls_note_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp) {
  OPENSSL_free(ptr);
}

int tls_ctx_new(tls_side_t side, const char *ca_file, const char *cert_file, const char *key_file,
                SSL_CTX **out, char *err, size_t errlen) {
  char why[512];
  if (tls_note_idx < 0) tls_note_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_note_free);
  if (tls_ku_idx < 0) tls_ku_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_note_free);
  SSL_CTX *ctx = SSL_CTX_new(side == TLS_SERVER ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "cannot create TLS context: %s", why);
    return NIRC_ETLS;
  }
  /* TLS 1.3 only: no downgrade, no renegotiation, forward secrecy always. */
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  /* Idle links (most of 20,000 agents between reports) give their buffers back. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Session tickets would let a peer resume without presenting its
   * certificate again on every connection; identity must be fresh. */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "%s: cannot load CA certificate: %s", ca_file, why);
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "%s: cannot load certificate: %s", cert_file, why);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "%s: cannot load private key: %s", key_file, why);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errlen, "%s does not match the certificate %s", key_file, cert_file);
    goto fail;
  }
  /* Only the key exchanges the deployment needs: an anonymous client must
   * not make us compute ffdhe or the larger curves. */
  if (SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "cannot restrict the key exchange groups to %s: %s", TLS_GROUPS, why);
    goto fail;
  }
  SSL_CTX_set_msg_callback(ctx, tls_msg_cb);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_cb);
  /* deploy/pki.sh signs every leaf with the root itself: a chain with an
   * intermediate is not one of ours, whatever the root's path length
   * says (a CA made before pki.sh set pathlen:0 has none). Depth 0 allows
   * the peer's certificate and the trust anchor, nothing between. */
  SSL_CTX_set_verify_depth(ctx, 0);
  if (side == TLS_SERVER) {
    /* Tell clients which CA we accept, so a client with several
     * certificates picks the right one. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
  }
  *out = ctx;
  return 0;
fail:
  SSL_CTX_free(ctx);
  return NIRC_ETLS;
}

/* Copies the first entry of `nid` in `name` into buf; false if absent. */
static bool tls_name_entry(X509_NAME *name, int nid, char *buf, size_t len) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return false;
  X509_NAME_ENTRY *e = X509_NAME_get_entry(name, idx);
  ASN1_STRING *d = X509_NAME_ENTRY_get_data(e);
  unsigned char *utf8 = NULL;
  int n = ASN1_STRING_to_UTF8(&utf8, d);
  if (n < 0) return false;
  bool ok = (size_t)n < len && memchr(utf8, '\0', (size_t)n) == NULL;
  if (ok) {
    memcpy(buf, utf8, (size_t)n);
    buf[n] = '\0';
  }
  OPENSSL_free(utf8);
  return ok;
}

/* The serial of `cert` in hex ("?" if unreadable), as `openssl x509
 * -serial` and the CA's index print it. */
static void tls_serial_hex(X509 *cert, char *buf, size_t len) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  snprintf(buf, len, "%s", hex ? hex : "?");
  OPENSSL_free(hex);
  BN_free(bn);
}

/* Called by OpenSSL for each certificate of the peer's chain; it changes
 * no verdict. On the first refusal it leaves a note on the SSL naming the
 * certificate and the reason, because OpenSSL's own error ("certificate
 * verify failed") names neither and a refused peer certificate is not
 * kept. The subject comes from a certificate nobody vouches for: control
 * characters are replaced so it cannot forge log lines. */
static int tls_verify_cb(int ok, X509_STORE_CTX *x) {
  /* A peer is a leaf: a certificate that may sign others (CA:TRUE, or
   * keyCertSign) must not speak for a site or an operator, even when the
   * root signed it by mistake. */
  if (ok && X509_STORE_CTX_get_error_depth(x) == 0 &&
      X509_check_ca(X509_STORE_CTX_get_current_cert(x)) != 0) {
    X509_STORE_CTX_set_error(x, X509_V_ERR_INVALID_NON_CA);
    ok = 0;
  }
  if (ok) return 1;
  SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
  if (!ssl || tls_note_idx < 0 || SSL_get_ex_data(ssl, tls_note_idx)) return 0;
  X509 *cert = X509_STORE_CTX_get_current_cert(x);
  char cn[160] = "?", serial[80] = "?";
  if (cert) {
    X509_NAME *subj = X509_get_subject_name(cert);
    if (!subj || !tls_name_entry(subj, NID_commonName, cn, sizeof cn)) nirc_strlcpy(cn, "?", 2);
    for (char *p = cn; *p; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    tls_serial_hex(cert, serial, sizeof serial);
  }
  char *note = OPENSSL_malloc(TLS_NOTE_MAX);
  if (!note) return 0;
  snprintf(note, TLS_NOTE_MAX, "certificate '%s' (serial %s%s): %s", cn, serial,
           X509_STORE_CTX_get_error_depth(x) > 0 ? ", an issuer in the peer's chain" : "",
           X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
  if (!SSL_set_ex_data(ssl, tls_note_idx, note)) OPENSSL_free(note);
  return 0;
}

/* Counts the TLS 1.3 KeyUpdate messages a peer sends (record type
 * handshake, message type 24), per minute; tls_key_update_flood() tells
 * the link to close once there are too many. It cannot close anything
 * itself: it runs inside SSL_read. */
static void tls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
  (void)version, (void)arg;
  if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 1 ||
      ((const unsigned char *)buf)[0] != SSL3_MT_KEY_UPDATE || tls_ku_idx < 0)
    return;
  tls_ku_t *k = SSL_get_ex_data(ssl, tls_ku_idx);
  if (!k) {
    k = OPENSSL_zalloc(sizeof *k);
    if (!k) return;
    if (!SSL_set_ex_data(ssl, tls_ku_idx, k)) {
      OPENSSL_free(k);
      return;
    }
  }
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  if (k->n == 0 || now - k->window_ms >= 60000) {
    k->window_ms = now;
    k->n = 0;
  }
  if (++k->n > TLS_KEY_UPDATES_PER_MIN) k->over = 1;
}

int tls_key_update_flood(const SSL *ssl) {
  const tls_ku_t *k = tls_ku_idx >= 0 ? SSL_get_ex_data(ssl, tls_ku_idx) : NULL;
  return k && k->over ? TLS_KEY_UPDATES_PER_MIN : 0;
}

int tls_verify_failure(const SSL *ssl, char *buf, size_t len) {
  const char *note = tls_note_idx >= 0 ? SSL_get_ex_data(ssl, tls_note_idx) : NULL;
  if (note) {
    snprintf(buf, len, "%s", note);
    return 1;
  }
  long vr = SSL_get_verify_result(ssl);
  if (vr != X509_V_OK) {
    snprintf(buf, len, "peer certificate refused: %s", X509_verify_cert_error_string(vr));
    return 1;
  }
  return 0;
}

static int tls_identity_from_x509(X509 *cert, peer_identity_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  X509_NAME *subj = X509_get_subject_name(cert);
  char cn[160];
  if (!subj || !tls_name_entry(subj, NID_commonName, cn, sizeof cn)) {
    snprintf(err, errlen, "certificate has no usable subject CN");
    return NIRC_EIDENTITY;
  }
  nirc_strlcpy(out->subject, cn, sizeof out->subject);

  unsigned char md[32];
  unsigned int mdlen = 0;
  if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1) {
    for (unsigned i = 0; i < mdlen && i < 32; i++)
      sprintf(out->fingerprint + 2 * i, "%02x", md[i]);
  }
  /* When it ends: the controller warns of a site's before its link dies
   * (server_pbx.c). As ISO text through clock_parse_iso: no timegm(). */
  struct tm tm;
  const ASN1_TIME *end = X509_get0_notAfter(cert);
  char iso[40];
  if (end && ASN1_TIME_to_tm(end, &tm) == 1) {
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (clock_parse_iso(iso, &out->not_after_ms) != 0) out->not_after_ms = 0;
  }

  const char *colon = strchr(cn, ':');
  if (!colon) {
    snprintf(err, errlen, "certificate CN '%s' is not of the form kind:name", cn);
    return NIRC_EIDENTITY;
  }
  size_t klen = (size_t)(colon - cn);
  const char *name = colon + 1;
  if (klen == 4 && strncmp(cn, "site", 4) == 0)
    out->kind = PEER_SITE;
  else if (klen == 8 && strncmp(cn, "operator", 8) == 0)
    out->kind = PEER_OPERATOR;
  else if (klen == 10 && strncmp(cn, "controller", 10) == 0)
    out->kind = PEER_CONTROLLER;
  else {
    snprintf(err, errlen, "certificate CN '%s' names an unknown kind", cn);
    return NIRC_EIDENTITY;
  }
  if (!nirc_slug_valid(name)) {
    snprintf(err, errlen, "certificate CN '%s': name must be [a-z][a-z0-9-]{0,30}", cn);
    return NIRC_EIDENTITY;
  }
  nirc_strlcpy(out->name, name, sizeof out->name);

  /* A URI SAN "nirc:<kind>:<name>", when present, must say the same thing:
   * a certificate that names two identities is refused, not guessed at. */
  GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  int rc = 0;
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
      GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_URI) continue;
      const char *uri = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
      int ulen = ASN1_STRING_length(g->d.uniformResourceIdentifier);
      if (ulen < 5 || strncmp(uri, "nirc:", 5) != 0) continue;
      if ((size_t)ulen != 5 + strlen(cn) || strncmp(uri + 5, cn, strlen(cn)) != 0) {
        snprintf(err, errlen, "certificate URI SAN '%.*s' disagrees with CN '%s'", ulen, uri, cn);
        rc = NIRC_EIDENTITY;
        break;
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (rc) return rc;

  if (out->kind == PEER_OPERATOR) {
    char ou[32];
    if (!tls_name_entry(subj, NID_organizationalUnitName, ou, sizeof ou)) {
      snprintf(err, errlen, "operator certificate '%s' has no role (OU)", cn);
      return NIRC_EIDENTITY;
    }
    if (strcmp(ou, "viewer") == 0)
      out->role = ROLE_VIEWER;
    else if (strcmp(ou, "operator") == 0)
      out->role = ROLE_OPERATOR;
    else if (strcmp(ou, "admin") == 0)
      out->role = ROLE_ADMIN;
    else {
      snprintf(err, errlen, "operator certificate '%s' has unknown role '%s'", cn, ou);
      return NIRC_EIDENTITY;
    }
  }
  return 0;
}

int tls_peer_identity(SSL *ssl, peer_identity_t *out, char *err, size_t errlen) {
  X509 *cert = SSL_get1_peer_certificate(ssl);
  if (!cert) {
    snprintf(err, errlen, "peer presented no certificate");
    return NIRC_EIDENTITY;
  }
  long vr = SSL_get_verify_result(ssl);
  int rc;
  if (vr != X509_V_OK) {
    snprintf(err, errlen, "peer certificate not verified: %s", X509_verify_cert_error_string(vr));
    rc = NIRC_EIDENTITY;
  } else {
    rc = tls_identity_from_x509(cert, out, err, errlen);
  }
  X509_free(cert);
  return rc;
}

int tls_file_identity(const char *cert_file, peer_identity_t *out, char *err, size_t errlen) {
  FILE *f = fopen(cert_file, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open certificate", cert_file);
    return NIRC_EIO;
  }
  X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!cert) {
    snprintf(err, errlen, "%s: not a PEM certificate", cert_file);
    return NIRC_ETLS;
  }
  char why[256];
  int rc = tls_identity_from_x509(cert, out, why, sizeof why);
  if (rc) snprintf(err, errlen, "%s: %s", cert_file, why);
  X509_free(cert);
  return rc;
}

/* ---- revocation ---- */

struct tls_revocation {
  STACK_OF(X509_CRL) * crls; /* owned, or NULL without a CRL file */
  unsigned char (*fps)[32];  /* owned; sorted, unique SHA-256 fingerprints */
  size_t nfps;
  size_t crl_entries;
  int crl_days_left; /* until the earliest next update, at load; -1: none */
};

static int tls_fp_cmp(const void *a, const void *b) {
  return memcmp(a, b, 32);
}

static int tls_hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Every certificate of a PEM file (the CAs a CRL may come from). */
static STACK_OF(X509) * tls_read_certs(const char *file) {
  BIO *b = BIO_new_file(file, "r");
  if (!b) return NULL;
  STACK_OF(X509) *sk = sk_X509_new_null();
  X509 *x;
  while (sk && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (!sk_X509_push(sk, x)) X509_free(x);
  ERR_clear_error(); /* the end of the file reads as "no start line" */
  BIO_free(b);
  return sk;
}

/* Reads every CRL of crl_file, each checked against the CAs of ca_file:
 * a CRL nobody can verify, or one past its next update, would make every
 * handshake fail with a reason far from its cause, so it is refused here
 * with the file named. */
static int tls_load_crls(tls_revocation_t *r, const char *ca_file, const char *crl_file, char *err,
                         size_t errlen) {
  ERR_clear_error();
  BIO *b = BIO_new_file(crl_file, "r");
  if (!b) {
    snprintf(err, errlen, "%s: cannot open the CRL: %s", crl_file, strerror(errno));
    ERR_clear_error();
    return NIRC_EIO;
  }
  STACK_OF(X509) *cas = tls_read_certs(ca_file);
  int rc = 0;
  r->crls = sk_X509_CRL_new_null();
  if (!cas || sk_X509_num(cas) == 0 || !r->crls) {
    snprintf(err, errlen, "%s: no CA certificate in %s to check the CRL against", crl_file,
             ca_file);
    rc = NIRC_ETLS;
    goto out;
  }
  X509_CRL *crl;
  while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_CRL_push(r->crls, crl)) {
      X509_CRL_free(crl);
      snprintf(err, errlen, "%s: out of memory", crl_file);
      rc = NIRC_ENOMEM;
      goto out;
    }
    char issuer[200];
    X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof issuer);
    int signed_by_ca = 0;
    for (int i = 0; i < sk_X509_num(cas) && !signed_by_ca; i++) {
      X509 *ca = sk_X509_value(cas, i);
      signed_by_ca = X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
                     X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1;
    }
    if (!signed_by_ca) {
      snprintf(err, errlen,
               "%s: the CRL of '%s' is not signed by a CA in %s; publish the CA's own CRL "
               "(deploy/pki.sh DIR writes DIR/crl.pem)",
               crl_file, issuer, ca_file);
      rc = NIRC_ETLS;
      goto out;
    }
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    if (next && X509_cmp_current_time(next) < 0) {
      snprintf(err, errlen,
               "%s: the CRL of '%s' is past its next update, so every certificate of that CA "
               "would be refused; publish a fresh one (deploy/pki.sh DIR) and reload",
               crl_file, issuer);
      rc = NIRC_ETLS;
      goto out;
    }
    if (X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl)) > 0) {
      snprintf(err, errlen, "%s: the CRL of '%s' is not valid yet; check this host's clock",
               crl_file, issuer);
      rc = NIRC_ETLS;
      goto out;
    }
    int days = 0, secs = 0;
    if (next && ASN1_TIME_diff(&days, &secs, NULL, next) &&
        (r->crl_days_left < 0 || days < r->crl_days_left))
      r->crl_days_left = days;
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    r->crl_entries += rev ? (size_t)sk_X509_REVOKED_num(rev) : 0;
  }
  unsigned long e = ERR_peek_last_error();
  if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
    char why[256];
    tls_error_string(why, sizeof why);
    snprintf(err, errlen, "%s: cannot read the CRL: %s", crl_file, why);
    rc = NIRC_ETLS;
    goto out;
  }
  ERR_clear_error();
  if (sk_X509_CRL_num(r->crls) == 0) {
    snprintf(err, errlen, "%s: no CRL in the file (expected PEM, -----BEGIN X509 CRL-----)",
             crl_file);
    rc = NIRC_ETLS;
  }
out:
  BIO_free(b);
  sk_X509_pop_free(cas, X509_free);
  return rc;
}

static int tls_load_blocklist(tls_revocation_t *r, const char *file, char *err, size_t errlen) {
  FILE *f = fopen(file, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open the blocklist: %s", file, strerror(errno));
    return NIRC_EIO;
  }
  char line[512];
  unsigned lineno = 0;
  size_t cap = 0;
  int rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n' && !feof(f)) {
      snprintf(err, errlen, "%s:%u: line longer than %zu bytes", file, lineno, sizeof line - 2);
      rc = NIRC_ECONFIG;
      break;
    }
    char *p = line, *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncasecmp(p, "sha256 fingerprint=", 19) == 0) p += 19;
    unsigned char fp[32];
    size_t digits = 0;
    int bad = 0;
    for (; *p && !bad; p++) {
      if (*p == ':' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') continue;
      int v = tls_hexval((unsigned char)*p);
      if (v < 0 || digits >= 64) {
        bad = 1;
        break;
      }
      if (digits % 2 == 0)
        fp[digits / 2] = (unsigned char)(v << 4);
      else
        fp[digits / 2] |= (unsigned char)v;
      digits++;
    }
    if (digits == 0 && !bad) continue; /* blank or comment */
    if (bad || digits != 64) {
      snprintf(err, errlen,
               "%s:%u: not a SHA-256 certificate fingerprint (64 hex digits, as `openssl x509 "
               "-noout -fingerprint -sha256 -in CERT` prints it)",
               file, lineno);
      rc = NIRC_ECONFIG;
      break;
    }
    if (r->nfps == TLS_BLOCKLIST_MAX) {
      snprintf(err, errlen, "%s:%u: more than %d fingerprints; revoke with the CRL instead", file,
               lineno, TLS_BLOCKLIST_MAX);
      rc = NIRC_ECONFIG;
      break;
    }
    if (r->nfps == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      void *np = realloc(r->fps, ncap * sizeof *r->fps);
      if (!np) {
        snprintf(err, errlen, "%s: out of memory", file);
        rc = NIRC_ENOMEM;
        break;
      }
      r->fps = np;
      cap = ncap;
    }
    memcpy(r->fps[r->nfps++], fp, 32);
  }
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "%s: read error", file);
    rc = NIRC_EIO;
  }
  fclose(f);
  if (rc || r->nfps == 0) return rc;
  qsort(r->fps, r->nfps, sizeof *r->fps, tls_fp_cmp);
  size_t k = 1;
  for (size_t i = 1; i < r->nfps; i++)
    if (memcmp(r->fps[i], r->fps[k - 1], 32) != 0) memcpy(r->fps[k++], r->fps[i], 32);
  r->nfps = k;
  return 0;
}

int tls_revocation_load(const char *ca_file, const char *crl_file, const char *blocklist_file,
                        tls_revocation_t **out, char *err, size_t errlen) {
  tls_revocation_t *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "out of memory loading revocation lists");
    return NIRC_ENOMEM;
  }
  r->crl_days_left = -1;
  int rc = 0;
  if (crl_file && *crl_file) rc = tls_load_crls(r, ca_file, crl_file, err, errlen);
  if (!rc && blocklist_file && *blocklist_file)
    rc = tls_load_blocklist(r, blocklist_file, err, errlen);
  if (rc) {
    tls_revocation_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int tls_revocation_install(const tls_revocation_t *r, SSL_CTX *ctx, char *err, size_t errlen) {
  if (!r || !r->crls || sk_X509_CRL_num(r->crls) == 0) return 0;
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  for (int i = 0; i < sk_X509_CRL_num(r->crls); i++) {
    if (X509_STORE_add_crl(st, sk_X509_CRL_value(r->crls, i)) != 1) {
      char why[256];
      tls_error_string(why, sizeof why);
      snprintf(err, errlen, "cannot install the CRL: %s", why);
      return NIRC_ETLS;
    }
  }
  /* The leaf is checked against its issuer's CRL; the CA itself is the
   * root of trust and has nobody to revoke it. */
  X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
  return 0;
}

int tls_revocation_check(const tls_revocation_t *r, X509 *cert, char *why, size_t len) {
  if (!r || !cert) return 0;
  for (int i = 0; r->crls && i < sk_X509_CRL_num(r->crls); i++) {
    X509_CRL *crl = sk_X509_CRL_value(r->crls, i);
    X509_REVOKED *rev = NULL;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) != 0) continue;
    if (X509_CRL_get0_by_cert(crl, &rev, cert) == 1) {
      char serial[80];
      tls_serial_hex(cert, serial, sizeof serial);
      snprintf(why, len, "certificate revoked: serial %s is on the CRL", serial);
      return 1;
    }
  }
  if (r->nfps) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32 &&
        bsearch(md, r->fps, r->nfps, sizeof *r->fps, tls_fp_cmp)) {
      char hex[65];
      for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
      snprintf(why, len, "certificate revoked: fingerprint %s is on the blocklist", hex);
      return 1;
    }
  }
  return 0;
}

size_t tls_revocation_crl_entries(const tls_revocation_t *r) {
  return r ? r->crl_entries : 0;
}

int tls_revocation_crl_days_left(const tls_revocation_t *r) {
  return r ? r->crl_days_left : -1;
}

size_t tls_revocation_blocked(const tls_revocation_t *r) {
  return r ? r->nfps : 0;
}

void tls_revocation_free(tls_revocation_t *r) {
  if (!r) return;
  sk_X509_CRL_pop_free(r->crls, X509_CRL_free);
  free(r->fps);
  free(r);
}
