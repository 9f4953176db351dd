/* tls: OpenSSL contexts for NIRC links and peer identities.
 *
 * Every link is TLS 1.3 with mutual authentication against the
 * deployment's private CA. A peer is who its certificate says, nothing
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
} peer_identity_t;

/* Creates a TLS 1.3-only context that presents cert/key, trusts only
 * ca_file, and requires the peer's certificate (both sides). Returns 0 or
 * NIRC_ETLS with a reason naming the file at fault. */
int tls_ctx_new(tls_side_t side, const char *ca_file, const char *cert_file, const char *key_file,
                SSL_CTX **out, char *err, size_t errlen);
/* Reads the identity from the verified peer certificate of a finished
 * handshake. 0, or NIRC_EIDENTITY with a reason (no certificate, bad CN,
 * CN/SAN disagreement, operator without a valid role). */
int tls_peer_identity(SSL *ssl, peer_identity_t *out, char *err, size_t errlen);
/* The same, from a certificate file (the agent learns its own slug so). */
int tls_file_identity(const char *cert_file, peer_identity_t *out, char *err, size_t errlen);
const char *tls_kind_name(peer_kind_t k);
const char *tls_role_name(op_role_t r);
/* Drains OpenSSL's error queue into one line. */
void tls_error_string(char *buf, size_t len);

#endif
