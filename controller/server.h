/* server: the running controller — listeners, the protocol on every
 * accepted link (site agents and operators), freshness timers and the
 * writes of link events and load aggregates to PostgreSQL.
 *
 * Ownership: server_t owns the sites registry, the db client, the TLS
 * context and one conn_t per accepted link. A site_t's `conn` is a
 * borrowed back-pointer to the conn_t currently speaking for it. */
#ifndef NIRC_SERVER_H
#define NIRC_SERVER_H

#include "clock.h"
#include "conf.h"
#include "db.h"
#include "engine.h"
#include "link.h"
#include "sites.h"

#include <stdint.h>
#include <uv.h>

#define SERVER_MAX_LISTEN CONFIG_LIST_MAX

typedef enum {
  CONN_PENDING = 0, /* TLS handshake not finished */
  CONN_AWAIT_HELLO, /* site certificate accepted, waiting for Hello */
  CONN_SITE,        /* Hello accepted: an agent link */
  CONN_OPERATOR,    /* an operator (nircctl) link */
  CONN_CLOSED,      /* refused or closed; waiting for the link to go */
} conn_state_t;

typedef struct conn conn_t;
typedef struct server server_t;

struct conn {
  server_t *srv; /* borrowed */
  link_t *link;  /* the link owns itself; valid until its on_close */
  conn_state_t state;
  site_t *site;        /* borrowed; set in CONN_SITE */
  conn_t *prev, *next; /* server's list of live connections */
};

struct server {
  uv_loop_t *loop;
  const nircd_conf_t *conf; /* borrowed */
  SSL_CTX *tls;
  uv_tcp_t listeners[SERVER_MAX_LISTEN];
  unsigned nlisten;
  uv_timer_t tick;
  uv_timer_t watchdog; /* systemd watchdog pings from the loop */
  uv_timer_t drain;    /* bounds the final database drain at shutdown */
  int db_closing;
  uv_signal_t sig_int, sig_term;
  db_t *db;
  sites_t sites;
  uint64_t epoch;
  nirc_clock_t clock;
  link_opts_t link_opts;
  conn_t *conns;
  unsigned nconns;
  int stopping;
  uint64_t db_dropped; /* records that could not be queued (db queue full) */
  engine_t *engine;
  struct httpd *http; /* owned: metrics and status page, or NULL */
  unsigned ticks;
  scenario_t forecast; /* [routing] forecast, loaded at start-up */
  int forecast_loaded; /* owned: the routing engine */
};

/* Sets up listeners, timers and signals on `loop`. Sites and epoch must
 * already be loaded into srv (by the caller, at start-up). */
int server_start(server_t *srv, uv_loop_t *loop, const nircd_conf_t *conf, char *err,
                 size_t errlen);
/* Orderly stop: closes listeners and links, flushes aggregates, closes the
 * database client. The loop then runs dry. */
void server_stop(server_t *srv);

/* Records a link event (site/operator/unknown) asynchronously. */
void server_record_event(server_t *srv, const char *kind, const char *identity, const char *site,
                         const char *peer, const char *event, const char *detail);
const char *conn_state_name(conn_state_t s);

#endif
