/* conninfo: what the database client (db.c) and the blocking start-up
 * administration (db_admin.c) share about reaching PostgreSQL.
 *
 *  - The caller's conninfo parsed into keyword/value arrays with the
 *    defaults NIRC relies on added (keepalives, timeouts, application
 *    name), so the same settings can be handed to PQconnectStartParams and
 *    PQconnectdbParams whether the caller wrote "key=value" or a URI.
 *  - Where those settings point, for messages, and what else the
 *    asynchronous client needs to know about them (its connect timeout,
 *    the host name it must resolve itself).
 *  - How libpq's messages and the server's notices become one log line.
 *
 * No I/O and no state: everything here is a function of its arguments and
 * the PG* environment variables libpq also reads. */
#ifndef NIRC_CONNINFO_H
#define NIRC_CONNINFO_H

#include <libpq-fe.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

/* Error texts handed to callbacks and logs are cut to this size. */
#define CONNINFO_MSG_MAX 512
/* DNS names are at most 253 characters. */
#define CONNINFO_HOSTNAME_MAX 256
/* At most this many addresses of one host name are offered to libpq. */
#define CONNINFO_MAX_ADDRS 8
/* Long enough for an IPv6 address with a scope suffix. */
#define CONNINFO_ADDR_MAX 64
/* The sizes of the lists conninfo_addr_lists fills. */
#define CONNINFO_ADDRS_LEN (CONNINFO_MAX_ADDRS * (CONNINFO_ADDR_MAX + 1))
#define CONNINFO_HOSTS_LEN (CONNINFO_MAX_ADDRS * (CONNINFO_HOSTNAME_MAX + 1))

/* Parsed conninfo as keyword/value arrays (NULL-terminated, all strings
 * owned), so keys can be added without string surgery. kw[i]/val[i] for
 * i < n are the settings; the caller reads them and never changes them. */
typedef struct {
  char **kw;
  char **val;
  int n;
  int cap;
} conninfo_t;

/* Parses conninfo into *p (owned by the caller, released with
 * conninfo_free) and adds NIRC's defaults. Returns 0, NIRC_EINVAL or
 * NIRC_ENOMEM with err set. */
int conninfo_parse(const char *conninfo, conninfo_t *p, char *err, size_t errlen);
void conninfo_free(conninfo_t *p);
/* "host=db1 port=5432", never the password or other settings. */
void conninfo_describe(const conninfo_t *p, char *out, size_t outlen);
/* The connect timeout in milliseconds (0 = none). */
uint64_t conninfo_connect_timeout_ms(const conninfo_t *p);
/* The host name to resolve before connecting (borrowed from p or the
 * environment), or NULL when libpq will not need DNS. */
const char *conninfo_name_to_resolve(const conninfo_t *p);
/* Turns the addresses `name` resolved to (the caller's getaddrinfo result,
 * borrowed) into the comma-separated host and hostaddr lists for
 * conninfo_start: at most CONNINFO_MAX_ADDRS distinct IPv4/IPv6
 * addresses. hosts holds CONNINFO_HOSTS_LEN bytes, addrs
 * CONNINFO_ADDRS_LEN. Returns how many addresses were listed (0: none). */
int conninfo_addr_lists(const char *name, const struct addrinfo *ai, char *hosts, char *addrs);
/* PQconnectStartParams with p's settings; with hosts (and addrs), host
 * and hostaddr are replaced by those lists. Returns NULL when out of
 * memory. */
PGconn *conninfo_start(const conninfo_t *p, const char *hosts, const char *addrs);
/* Copies a libpq message (NULL reads as "") into out as one line, its
 * control characters and bytes that are not UTF-8 escaped (safetext). */
void conninfo_msg_trim(const char *in, int skip_hints, char *out, size_t outlen);
/* A PQnoticeReceiver that logs server notices (arg unused). */
void conninfo_notice(void *arg, const PGresult *res);

#endif
