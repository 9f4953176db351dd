/* conninfo: connection parameters and libpq messages, shared by the
 * asynchronous client (db.c) and the blocking start-up administration
 * (db_admin.c); see conninfo.h. Nothing here keeps state: parsed
 * parameters are owned by the caller's conninfo_t. */
#include "conninfo.h"

#include "err.h"
#include "log.h"
#include "safetext.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>

#define DB_OBJ "db"

void conninfo_free(conninfo_t *p) {
  for (int i = 0; i < p->n; i++) {
    free(p->kw[i]);
    free(p->val[i]);
  }
  free(p->kw);
  free(p->val);
  memset(p, 0, sizeof *p);
}

static const char *params_get(const conninfo_t *p, const char *kw) {
  for (int i = 0; i < p->n; i++) {
    if (strcmp(p->kw[i], kw) == 0) return p->val[i];
  }
  return NULL;
}

/* Appends kw=val; the caller made sure kw is absent and there is room. */
static int params_add(conninfo_t *p, const char *kw, const char *val) {
  if (p->n + 1 >= p->cap) return NIRC_ENOMEM;
  char *k = strdup(kw);
  char *v = strdup(val);
  if (!k || !v) {
    free(k);
    free(v);
    return NIRC_ENOMEM;
  }
  p->kw[p->n] = k;
  p->val[p->n] = v;
  p->n++;
  p->kw[p->n] = NULL;
  p->val[p->n] = NULL;
  return 0;
}

/* Adds kw=val unless the caller already chose a value for kw, either in the
 * conninfo or through the environment variable libpq reads for it. */
static int params_default(conninfo_t *p, const char *kw, const char *env, const char *val) {
  if (params_get(p, kw)) return 0;
  if (env && getenv(env)) return 0;
  return params_add(p, kw, val);
}

/* Collapses every run of white space (libpq messages are multi-line and
 * end in a newline) into one space so a message fits one log line. With
 * skip_hints, lines that libpq indents with a tab (its hints such as "Is
 * the server running on that host...?") are left out. Then escapes what
 * is left (safetext): PostgreSQL's words quote a row's or a client's bytes
 * ("invalid input syntax ...: \"<bytes>\""), which must not reach a
 * terminal or a log line raw. */
void conninfo_msg_trim(const char *in, int skip_hints, char *dst, size_t dstlen) {
  if (dstlen == 0) return;
  char out[2048]; /* cut here between bytes, escaped into dst between characters */
  size_t outlen = sizeof out;
  size_t o = 0;
  int space = 0;
  int line_start = 1;
  if (!in) in = "";
  for (; *in && o + 1 < outlen; in++) {
    unsigned char c = (unsigned char)*in;
    if (skip_hints && line_start && c == '\t') {
      while (in[1] && in[1] != '\n')
        in++;
      continue;
    }
    line_start = c == '\n';
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = 1;
      continue;
    }
    if (space && o > 0) {
      out[o++] = ' ';
      if (o + 1 >= outlen) break;
    }
    space = 0;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  safetext_escape(out, dst, dstlen);
}
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Parses conninfo and adds the defaults NIRC relies on where the caller
 * did not choose: TCP keepalives so a dead server or a dead network path is
 * noticed in seconds rather than after the kernel's two hours, a TCP user
 * timeout for the same reason while data is unacknowledged, a connect
 * timeout, and an application name that shows up in pg_stat_activity. */
int conninfo_parse(const char *conninfo, conninfo_t *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (!opts) {
    if (perr) {
      char m[CONNINFO_MSG_MAX];
      conninfo_msg_trim(perr, 0, m, sizeof m);
      set_err(err, errlen, "invalid conninfo: %s", m);
      PQfreemem(perr);
      return NIRC_EINVAL;
    }
    set_err(err, errlen, "out of memory parsing conninfo");
    return NIRC_ENOMEM;
  }
  int count = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (o->val) count++;
  }
  /* Room for the defaults below, a host/hostaddr override and the NULL. */
  p->cap = count + 12;
  p->kw = calloc((size_t)p->cap, sizeof *p->kw);
  p->val = calloc((size_t)p->cap, sizeof *p->val);
  int rc = (p->kw && p->val) ? 0 : NIRC_ENOMEM;
  for (PQconninfoOption *o = opts; rc == 0 && o->keyword; o++) {
    if (o->val) rc = params_add(p, o->keyword, o->val);
  }
  PQconninfoFree(opts);
  if (rc == 0) rc = params_default(p, "keepalives", NULL, "1");
  if (rc == 0) rc = params_default(p, "keepalives_idle", NULL, "5");
  if (rc == 0) rc = params_default(p, "keepalives_interval", NULL, "2");
  if (rc == 0) rc = params_default(p, "keepalives_count", NULL, "2");
  if (rc == 0) rc = params_default(p, "tcp_user_timeout", NULL, "10000");
  if (rc == 0) rc = params_default(p, "connect_timeout", "PGCONNECT_TIMEOUT", "5");
  if (rc == 0) rc = params_default(p, "fallback_application_name", NULL, "nircd");
  if (rc != 0) {
    conninfo_free(p);
    set_err(err, errlen, "out of memory parsing conninfo");
  }
  return rc;
}

/* Describes where the parameters point ("host=db1 port=5432") for error
 * messages and logs. It never includes the password or other settings. */
void conninfo_describe(const conninfo_t *p, char *out, size_t outlen) {
  const char *host = params_get(p, "host");
  if (!host || !*host) host = getenv("PGHOST");
  const char *hostaddr = params_get(p, "hostaddr");
  if (!hostaddr || !*hostaddr) hostaddr = getenv("PGHOSTADDR");
  const char *port = params_get(p, "port");
  if (!port || !*port) port = getenv("PGPORT");
  if (!port || !*port) port = "5432";
  if (host && *host) {
    snprintf(out, outlen, "host=%s port=%s", host, port);
  } else if (hostaddr && *hostaddr) {
    snprintf(out, outlen, "hostaddr=%s port=%s", hostaddr, port);
  } else {
    snprintf(out, outlen, "the default Unix socket, port=%s", port);
  }
}

/* The connect timeout in milliseconds that libpq would apply to a blocking
 * connect (0 = none). PQconnectPoll ignores connect_timeout, so the async
 * client enforces it with its timer. */
uint64_t conninfo_connect_timeout_ms(const conninfo_t *p) {
  const char *s = params_get(p, "connect_timeout");
  if (!s) s = getenv("PGCONNECT_TIMEOUT");
  if (!s) return 0;
  long v = strtol(s, NULL, 10);
  if (v <= 0) return 0;
  if (v < 2) v = 2; /* libpq's own minimum */
  return (uint64_t)v * 1000u;
}

/* Returns the host name that must be resolved before connecting, or NULL
 * when libpq will not need DNS: a Unix socket directory, an IP literal, an
 * explicit hostaddr. Host lists ("a,b") are left to libpq. */
const char *conninfo_name_to_resolve(const conninfo_t *p) {
  const char *hostaddr = params_get(p, "hostaddr");
  if ((hostaddr && *hostaddr) || getenv("PGHOSTADDR")) return NULL;
  const char *host = params_get(p, "host");
  if (!host || !*host) host = getenv("PGHOST");
  if (!host || !*host) return NULL;
  if (host[0] == '/' || host[0] == '@') return NULL;
  if (strchr(host, ',') || strlen(host) >= CONNINFO_HOSTNAME_MAX) return NULL;
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) return NULL;
  return host;
}

int conninfo_addr_lists(const char *name, const struct addrinfo *ai, char *hosts, char *addrs) {
  /* libpq wants as many hostaddr entries as host entries; repeating the
   * name keeps TLS host verification and .pgpass lookups on the name. */
  char seen[CONNINFO_MAX_ADDRS][CONNINFO_ADDR_MAX];
  int count = 0;
  size_t alen = 0, hlen = 0;
  addrs[0] = hosts[0] = '\0';
  for (const struct addrinfo *p = ai; p && count < CONNINFO_MAX_ADDRS; p = p->ai_next) {
    if (p->ai_family != AF_INET && p->ai_family != AF_INET6) continue;
    char a[CONNINFO_ADDR_MAX];
    if (getnameinfo(p->ai_addr, p->ai_addrlen, a, sizeof a, NULL, 0, NI_NUMERICHOST) != 0) {
      continue;
    }
    int dup = 0;
    for (int i = 0; i < count; i++)
      dup |= strcmp(seen[i], a) == 0;
    if (dup) continue;
    memcpy(seen[count], a, sizeof a);
    alen += (size_t)snprintf(addrs + alen, CONNINFO_ADDRS_LEN - alen, "%s%s", count ? "," : "", a);
    hlen +=
        (size_t)snprintf(hosts + hlen, CONNINFO_HOSTS_LEN - hlen, "%s%s", count ? "," : "", name);
    count++;
  }
  return count;
}

PGconn *conninfo_start(const conninfo_t *p, const char *hosts, const char *addrs) {
  int n = p->n;
  const char **kw = calloc((size_t)n + 3, sizeof *kw);
  const char **val = calloc((size_t)n + 3, sizeof *val);
  if (!kw || !val) {
    free(kw);
    free(val);
    return NULL;
  }
  int j = 0;
  for (int i = 0; i < n; i++) {
    if (hosts && (strcmp(p->kw[i], "host") == 0 || strcmp(p->kw[i], "hostaddr") == 0)) {
      continue;
    }
    kw[j] = p->kw[i];
    val[j] = p->val[i];
    j++;
  }
  if (hosts) {
    kw[j] = "host";
    val[j++] = hosts;
    kw[j] = "hostaddr";
    val[j++] = addrs;
  }
  PGconn *c = PQconnectStartParams(kw, val, 0);
  free(kw);
  free(val);
  return c;
}

/* Routes server notices and warnings into our log instead of libpq's
 * default of printing them raw on stderr. */
void conninfo_notice(void *arg, const PGresult *res) {
  (void)arg;
  char m[CONNINFO_MSG_MAX];
  conninfo_msg_trim(PQresultErrorMessage(res), 0, m, sizeof m);
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (sev && (strcmp(sev, "WARNING") == 0 || strcmp(sev, "ERROR") == 0 ||
              strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
    log_warn(LOG_DB, DB_OBJ, "server: %s", m);
  } else {
    log_debug(LOG_DB, DB_OBJ, "server: %s", m);
  }
}
