#include "tls.h"

#include "err.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

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

int tls_ctx_new(tls_side_t side, const char *ca_file, const char *cert_file, const char *key_file,
                SSL_CTX **out, char *err, size_t errlen) {
  char why[512];
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
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  SSL_CTX_set_verify_depth(ctx, 4);
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
