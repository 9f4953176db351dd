/* tls: OpenSSL contexts for NIRC links and peer identities.
 *
 * Every link is TLS 1.3 with mutual authentication against the
 * deployment's private CA, the peer's certificate signed by the CA itself
 * (no intermediate) and not itself a CA, with X25519 or P-256 key
 * exchange only. A peer is who its certificate says, nothing
 * else: the subject CN is "site:<slug>", "operator:<name>" or
 * "controller:<name>"; an operator's role is the subject OU (viewer,
 * operator or admin). When the certificate also carries a URI SAN of the
 * form "nirc:<kind>:<name>" it must agree with the CN. */
#ifndef NIRC_TLS_H
#define NIRC_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

typedef enum { TLS_SERVER, TLS_CLIENT } tls_side_t;

typedef enum {
  PEER_UNKNOWN = 0,
  PEER_SITE,
  PEER_OPERATOR,
  PEER_CONTROLLER,
} peer_kind_t;

typedef enum {
  ROLE_NONE = 0,
  ROLE_VIEWER,
  ROLE_OPERATOR,
  ROLE_ADMIN,
} op_role_t;

typedef struct {
  peer_kind_t kind;
  char name[64];        /* slug, operator name or controller node */
  op_role_t role;       /* operators only */
  char subject[160];    /* "site:hubei" as in the certificate, for logs */
  char fingerprint[65]; /* SHA-256 of the certificate, hex */
  int64_t not_after_ms; /* the certificate's end, Unix ms (real time); 0: not read */
} peer_identity_t;

/* The key exchange groups every context offers and accepts. */
#define TLS_GROUPS "X25519:P-256"

/* Creates a TLS 1.3-only context that presents cert/key, trusts only
 * ca_file, and requires the peer's certificate (both sides). A certificate
 * the context refuses is described by tls_verify_failure(). Returns 0 or
 * NIRC_ETLS with a reason naming the file at fault. */
int tls_ctx_new(tls_side_t side, const char *ca_file, const char *cert_file, const char *key_file,
                SSL_CTX **out, char *err, size_t errlen);
/* Reads the identity from the verified peer certificate of a finished
 * handshake. 0, or NIRC_EIDENTITY with a reason (no certificate, bad CN,
 * CN/SAN disagreement, operator without a valid role). */
int tls_peer_identity(SSL *ssl, peer_identity_t *out, char *err, size_t errlen);
/* The same, from a certificate file (the agent learns its own slug so). */
int tls_file_identity(const char *cert_file, peer_identity_t *out, char *err, size_t errlen);
/* After a failed handshake: which certificate the verification refused
 * and why ("certificate 'site:hubei' (serial 4F..): certificate revoked").
 * Returns 1 and fills buf, or 0 when no certificate was refused (none was
 * presented, or the failure was not about certificates). */
int tls_verify_failure(const SSL *ssl, char *buf, size_t len);

/* Nonzero (the limit, per minute) once the peer of `ssl` has sent more
 * TLS 1.3 key updates in a minute than a NIRC peer ever needs: the caller
 * closes the link. 0 otherwise. */
int tls_key_update_flood(const SSL *ssl);

/* Revocation: the certificate revocation lists of the private CA and a
 * blocklist of certificate fingerprints, loaded together so a reload
 * swaps both or neither. Immutable once loaded; the controller keeps the
 * one that matches its current SSL_CTX.
 *
 *  - crl_file: PEM, one or more CRLs, each signed by a CA of ca_file and
 *    not expired. Installed into a context with X509_V_FLAG_CRL_CHECK, so
 *    the handshake itself refuses a revoked leaf; a CA of ca_file without
 *    a CRL then refuses every leaf it issued (the file must cover them all).
 *  - blocklist_file: one SHA-256 certificate fingerprint per line, 64 hex
 *    digits as peer_identity_t.fingerprint prints them (upper case, colons
 *    and an "SHA256 Fingerprint=" prefix, as `openssl x509 -fingerprint
 *    -sha256` prints them, are accepted too); '#' starts a comment. Checked
 *    after the handshake, for a certificate that must go before the CA's
 *    next CRL, or when the CA key is not at hand.
 * Either may be NULL or "" (none). */
typedef struct tls_revocation tls_revocation_t;

/* 0 and *out (free with tls_revocation_free), or NIRC_ETLS / NIRC_ECONFIG /
 * NIRC_EIO with "file[:line]: reason" that names the fix. */
int tls_revocation_load(const char *ca_file, const char *crl_file, const char *blocklist_file,
                        tls_revocation_t **out, char *err, size_t errlen);
/* Adds r's CRLs to ctx's trust store and turns CRL checking on (when r
 * has any). The store takes its own references. 0 or NIRC_ETLS. */
int tls_revocation_install(const tls_revocation_t *r, SSL_CTX *ctx, char *err, size_t errlen);
/* Whether `cert` (a peer's, already verified; borrowed) is revoked: its
 * serial on a CRL of its issuer, or its fingerprint on the blocklist.
 * Returns 1 with the reason in why, else 0. r may be NULL (nothing is). */
int tls_revocation_check(const tls_revocation_t *r, X509 *cert, char *why, size_t len);
size_t tls_revocation_crl_entries(const tls_revocation_t *r); /* serials on all CRLs */
size_t tls_revocation_blocked(const tls_revocation_t *r);     /* blocklist fingerprints */
/* Whole days, at load, until the first CRL needs its next update (after
 * which every handshake would fail): -1 without a CRL or a date. */
int tls_revocation_crl_days_left(const tls_revocation_t *r);
void tls_revocation_free(tls_revocation_t *r);

const char *tls_kind_name(peer_kind_t k);
const char *tls_role_name(op_role_t r);
/* Drains OpenSSL's error queue into one line. */
void tls_error_string(char *buf, size_t len);

#endif
