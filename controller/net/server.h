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
#include "pbxlog.h"
#include "sites.h"

#include <stdint.h>
#include <uv.h>

#define SERVER_MAX_LISTEN CONFIG_LIST_MAX

typedef enum {
  CONN_PENDING = 0, /* TLS handshake not finished */
  CONN_AWAIT_HELLO, /* site certificate accepted, waiting for Hello */
  CONN_HELD,        /* a site link on a controller that does not lead:
                     * kept open with its Hello until it knows where the
                     * link belongs (net/hold.h, server_election_changed) */
  CONN_SITE,        /* Hello accepted: an agent link */
  CONN_OPERATOR,    /* an operator (nircctl) link */
  CONN_CLOSED,      /* refused or closed; waiting for the link to go */
} conn_state_t;

typedef struct conn conn_t;
/* An agent whose reports' timestamps are this far (real time) from the
 * controller's clock runs on a wrong host clock: a clock alarm. Its agent
 * keeps revert_at on the controller's clock while it has met one, but
 * restarted without one it has only its own (docs/OPERATIONS.md). A
 * report's timestamp is taken when its collect starts, so a slow PBX
 * adds seconds, never a minute. */
#define SERVER_CLOCK_OFFSET_MS 60000

typedef struct server server_t;

struct conn {
  server_t *srv; /* borrowed */
  link_t *link;  /* the link owns itself; valid until its on_close */
  conn_state_t state;
  site_t *site;        /* borrowed; set in CONN_SITE */
  conn_t *prev, *next; /* server's list of live connections */
  /* While CONN_PENDING or CONN_AWAIT_HELLO: the server's queue of
   * unauthenticated links, oldest first (see max_unauthenticated). */
  conn_t *uprev, *unext;
  int queued;          /* on that queue */
  int evicted;         /* closed to make room: counted, not logged one by one */
  int64_t accepted_ms; /* clock_real_ms() at accept */
  int op_counted;      /* an operator link counted by guard_op_open */
  /* When an operator link completed its handshake, while its "connected"
   * event is kept back (0: recorded, or not an operator). Written at once,
   * that event was a commit in flight in front of the writes of the
   * request that follows ~1 ms later, and the operator's reply waited for
   * both; kept back, it goes in the same pipeline as the request's. */
  int64_t op_connected_ms;
  /* CONN_HELD: when the hold began (clock_real_ms()), and the agent's
   * Hello, packed (owned; NULL until it arrives). */
  int64_t held_ms;
  uint64_t held_renewals; /* srv->leader_renewals when the hold began (net/hold.h) */
  uint8_t *held_hello;
  size_t held_hello_len;
};

/* Counters of what the controller refused, for /metrics. */
typedef struct {
  uint64_t cap_refused;  /* new connections closed at once: unauthenticated cap */
  uint64_t cap_waited;   /* new connections left in the listen backlog at the cap */
  uint64_t evicted;      /* unauthenticated links closed to make room for a new one */
  uint64_t rate_limited; /* links closed over max_messages_per_s */
  uint64_t revoked;      /* links refused or closed: certificate revoked */
  uint64_t tls_failed;   /* handshakes that failed (no/bad/expired/revoked certificate) */
  uint64_t reloads_ok, reloads_failed;
  uint64_t op_link_cap;     /* operator links refused: [ops] max_links_per_operator */
  uint64_t op_rate_limited; /* operator requests answered "rate limited" */
  /* Load reports refused: invalid (the link is closed) and, by
   * sites_refusal_t, implausible (not stored; the link stays). */
  uint64_t reports_invalid;
  uint64_t reports_implausible[SITES_REFUSED_COUNT];
} server_refusals_t;

struct server {
  uv_loop_t *loop;
  const nircd_conf_t *conf;     /* borrowed */
  SSL_CTX *tls;                 /* owned; for new links (each link holds its own reference) */
  tls_revocation_t *revocation; /* owned; the CRL and blocklist `tls` was built with */
  uv_tcp_t listeners[SERVER_MAX_LISTEN];
  unsigned nlisten;
  uv_timer_t tick;
  uv_timer_t watchdog; /* systemd watchdog pings from the loop */
  uv_timer_t drain;    /* at shutdown: waits for links to close, then bounds the drain */
  uint64_t stop_started_ms;
  int db_closing;
  uv_signal_t sig_int, sig_term;
  uv_signal_t sig_hup; /* reload certificates and revocation lists */
  db_t *db;
  /* A second connection for long reads (the forecast's load history,
   * seconds of database time): on db they would queue in front of the
   * writes an operator's reply waits for. Owned; no journal. */
  db_t *db_read;
  int db_read_closing;
  /* A third for the reads an operator waits for (history, alarms --all,
   * report staffing): on db they queued behind bulk writes (20,000 alarms
   * raised at once held `nircctl history` past its timeout) and on db_read
   * behind the forecast's load or a prune waiting on a lock. A reply read
   * here says how many of its kind db has not yet committed
   * (db_unsaved_changes): it cannot see them. Owned; no journal. */
  db_t *db_ops;
  int db_ops_closing;
  sites_t sites;
  uint64_t epoch;
  nirc_clock_t clock;
  link_opts_t link_opts;
  conn_t *conns;
  unsigned nconns;
  conn_t *unauth_head, *unauth_tail; /* unauthenticated links, oldest first */
  unsigned nunauth;
  /* Admission at the cap (admit.h): listeners whose next connection waits
   * in the backlog (libuv holds it and stops reading the listener until
   * it is accepted), the check handle that admits it once a place frees,
   * and the times admit_decide needs (clock_real_ms; 0: none). */
  unsigned char listen_waiting[SERVER_MAX_LISTEN];
  uv_check_t admit_check;
  /* Woken from httpd's threads when a client waits for a fresh document
   * (httpd_on_demand); runs on_publish. */
  uv_async_t web_wake;
  /* Site links in CONN_HELD now, and ever (for /metrics). */
  unsigned nheld;
  uint64_t held_total;
  /* Documents built for HTTP clients, indexed by web.h's web_doc_t; for
   * /metrics (nirc_http_documents_built_total). */
  uint64_t web_built[4];
  int64_t last_auth_ms, cap_full_since_ms;
  server_refusals_t refusals;
  /* The cap's log line: at most once a second, with what happened since. */
  int64_t cap_logged_ms;
  uint64_t cap_logged_refused, cap_logged_evicted;
  int stopping;
  uint64_t db_dropped; /* records that could not be queued (db queue full) */
  /* Link events of sites are budgeted per site (server_record_event):
   * one entry per site, plus one for names that are no site; owned. */
  struct server_evbudget *evbudget;
  size_t evbudget_n;               /* entries in evbudget (sites + 1 when made; grows with them) */
  uint64_t link_events_suppressed; /* left out over a site's budget */
  uint64_t pbx_drift_repairs;      /* PbxEvents "drift repaired" received */
  pbxlog_t pbx_log; /* each site's recent PbxEvents, for `nircctl site` (server_pbx.c) */
  /* The journal's refusals and sheds seen so far, and when they last
   * grew: the journal alarm holds for a minute after a refusal. */
  uint64_t journal_refused_seen, journal_refused_mono;
  /* Webhook notifications given up (webhook_stats_total), and when the
   * count last grew (real ms, 0: never): the notify alarm. */
  uint64_t notify_lost_seen, notify_lost_ms;
  engine_t *engine;
  /* The latest forecast accuracy (WAPE, a ratio) of each site's ended
   * schedule window, for /metrics: read from forecast_accuracy by the
   * leader every SERVER_WAPE_READ_MS. Owned, one per site, allocated on
   * the first read; < 0: none stored (no window tracked, or no calls). */
  double *fc_wape; /* per site index, fc_wape_n of them; -1: none stored */
  size_t fc_wape_n;
  uint64_t fc_wape_read_mono;
  int fc_wape_busy; /* a read is in flight */
  /* load_minute retention ([database] history_days): the next prune batch
   * (monotonic ms; 0: not scheduled since leading began) and whether one
   * is in flight. */
  uint64_t prune_next_mono;
  int prune_busy;
  /* Rule changes of an earlier leader that were not applied ('superseded'
   * audit entries) in the last 30 minutes, by the database's clock, as the
   * last read found them: how many, the newest in words; when the last
   * read was sent (loop ms, 0: never). server_retention.c. */
  uint64_t sup_count, sup_read_mono;
  int sup_busy;
  char sup_change[160];
  /* owned: per operator identity and per source address limits
   * (guard.h); NULL until server_start. */
  struct guard *guard;
  int64_t op_limit_logged_ms; /* the rate limit's log line: at most one in 10 s */
  uint64_t op_limit_logged;
  struct webhook *webhook; /* owned: alarm notifications ([notify] webhook), or NULL */
  int webhook_closing;
  struct httpd *http; /* owned: metrics and status page, or NULL */
  unsigned ticks;
  /* The newest duplicate agent, refused report (server_now()) and PBX
   * event (clock_real_ms()) of any site, 0: none: the per-tick alarm
   * scans skip every site while the newest is older than its alarm. */
  int64_t last_duplicate_ms, last_refused_ms, last_pbx_event_ms;
  int64_t last_clock_offset_ms; /* newest large clock offset seen (clock_real_ms()), 0: none */
  scenario_t forecast;          /* [routing] forecast, loaded at start-up */
  int forecast_loaded;          /* owned: the routing engine */
  /* The load history the engine forecasts from (server_history.c): a
   * query in flight, the business half-hour last checked (0: none), the
   * local date of the last load that worked (0: none), and when a failed
   * one is tried again. */
  int history_busy;
  int64_t history_slot;
  int32_t history_date;
  uint64_t history_mono, history_retry_mono;
  struct leader *leader; /* owned once set: who leads (leader.h); NULL = always lead */
  int leading;           /* this instance leads: it serves agents and operators */
  int lost;              /* it led and lost: stopping, nircd exits 75 */
  char leader_hint[128]; /* standby: the leader's advertised address, for redirects */
  /* Standby: why no controller leads although this one won the election
   * (leader_view_t.why), told with every redirect that names no leader. */
  char leader_why[512];
  int leader_blocked; /* standby: what leader_why is about (leader_block_t; 0: none) */
  /* Standby: the node that leads (or led last) and its epoch, from the
   * lease; for the status page, /metrics and redirects. "" and 0: none. */
  char leader_node[64];
  uint64_t leader_epoch;
  /* Standby: that leader's lease has gone unrenewed for half a lease
   * (leader_view_t.suspect): site links are held, not sent to it. */
  int leader_suspect;
  /* Standby: renewals of the lease seen so far (leader_view_t.renewals),
   * and whether systemd was told it is a standby. */
  uint64_t leader_renewals;
  int standby_notified;
  /* Set by the caller before server_start (the link layer does not know
   * what it carries): who answers an operator request on a link whose
   * leadership is confirmed (net/ops.c), and who publishes the status
   * page and metrics while http is set (web/web.c): at start and whenever
   * a client waits for a fresh copy. */
  void (*on_operator)(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req);
  void (*on_publish)(server_t *srv);
};

/* Sets up listeners, timers and signals on `loop`. Sites and epoch must
 * already be loaded into srv (by the caller, at start-up). */
int server_start(server_t *srv, uv_loop_t *loop, const nircd_conf_t *conf, char *err,
                 size_t errlen);
/* The election's outcome changed (this controller leads, or a leader is
 * known): the site links held while it ran are answered, Welcome or
 * redirect, as if they had just arrived. The caller sets leading,
 * leader_hint first. */
void server_election_changed(server_t *srv);
/* Orderly stop: closes listeners and links, flushes aggregates, closes the
 * database client. The loop then runs dry. */
void server_stop(server_t *srv);

/* True while this instance may plan and send directives: it leads and its
 * leadership is confirmed (leader_may_issue). */
int server_may_issue(const server_t *srv);

/* Loads the TLS material of `conf`: a server context (CA, certificate,
 * key) with the CRL installed, and the revocation lists. Used at start,
 * on SIGHUP and by `nircd -t`. 0 or an error naming the file. */
int server_tls_load(const nircd_conf_t *conf, SSL_CTX **ctx, tls_revocation_t **rev, char *err,
                    size_t errlen);
/* SIGHUP: re-reads the CA, certificate, key, CRL and blocklist into a new
 * context for new links; live links keep theirs, except those whose
 * certificate is now revoked, which are closed. A file that fails to load
 * leaves everything as it was (logged with the file named). */
void server_reload(server_t *srv);

/* Records a link event (site/operator/unknown) asynchronously. */
void server_record_event(server_t *srv, const char *kind, const char *identity, const char *site,
                         const char *peer, const char *event, const char *detail);
/* The same at a given time (clock_real_ms()). */
void server_record_event_at(server_t *srv, int64_t at_ms, const char *kind, const char *identity,
                            const char *site, const char *peer, const char *event,
                            const char *detail);
/* Records an operator link's "connected" event, kept back since its
 * handshake (conn_t.op_connected_ms), if it is still pending: called
 * before its first request's writes and when it closes. */
void server_record_op_connected(server_t *srv, conn_t *c);
const char *server_conn_state_name(conn_state_t s);
size_t server_evbudget_size(void);
/* Counts and logs a record the store could not take (server.c). */
void server_dropped(server_t *srv, int rc);

/* The engine's I/O as the controller does it (server_engine_io.c): fills
 * io for engine_new; server_observe_store feeds the engine what it must
 * know before each tick (duplicate agents, refused reports, the
 * database's state). */
void server_engine_io(server_t *srv, engine_io_t *io);
void server_observe_store(server_t *srv);
/* The alarms on the election's findings (leadership, sites_load,
 * rule_load: store/elect.h); server_observe_store calls it, and the tick
 * while the leader may issue nothing. */
void server_observe_leadership(server_t *srv);
/* A leader that has issued nothing for a lease: true and why, in the
 * leadership alarm's words (for its answers), with the reason's name for
 * Error.leader_blocked when nobody can lead until it is fixed (*blocked,
 * a static string, else NULL); false otherwise. */
bool server_quiet_words(server_t *srv, char *out, size_t n, const char **blocked);
/* A rule load of this controller whose backend still holds SHARE locks on
 * the rule tables (leader_stuck): "; also: WORDS" for a standby's answers,
 * "" when none (server_engine_io.c). */
void server_stuck_note(server_t *srv, char *out, size_t n);
/* The site lifecycle while running (server_sites.c). on_grow is the
 * registry's hook (sites_t.on_grow, arg the server): links re-pointed,
 * budgets and the engine grown. sync applies a snapshot of the sites table
 * (store/leader.c): sites added, changed, removed or added again; a site
 * with a change of its own not yet durable is left as it is. */
void server_sites_on_grow(void *arg, sites_t *s, bool moved);
void server_sites_sync(server_t *srv, const sites_t *snapshot);
/* "site X was removed at T by W: ...", what its agent is told. */
void server_site_removed_text(const site_t *s, char *buf, size_t len);
/* Closes a removed site's open link (if any) with that text. */
void server_site_close_removed(server_t *srv, site_t *s);

/* server_pbx.c. A site's PbxEvent on its link `c`: 0, or NIRC_EIDENTITY with
 * `why` when it claims another site (the caller refuses the link). */
int server_pbx_event(server_t *srv, conn_t *c, const Nirc__PbxEvent *ev, char *why, size_t whylen);
/* Observes each site's pbx alarm while its last PbxEvent is recent. */
void server_pbx_observe(server_t *srv);
/* A site's agent says why it cannot write its state file ("" or NULL: it
 * can), in a Hello or a PbxEvent; escaped and kept for its `agent` alarm. */
void server_pbx_agent_state(server_t *srv, site_t *site, const char *why);
/* A site's Hello on a link whose certificate ends at cert_end_ms (real
 * Unix ms, 0: not known): what it says of the agent's host, and when its
 * certificate ends, kept for its `agent` alarm. */
void server_pbx_on_hello(server_t *srv, site_t *site, const Nirc__Hello *h, int64_t cert_end_ms);
/* The state-file part of the `agent` alarm's words, for the agent's
 * reason `why` (escaped). Pure. */
void server_pbx_state_words(const char *why, char *buf, size_t len);
/* A site's certificate this close to its end (real time) raises its
 * `agent` alarm: major, critical in the last SERVER_CERT_CRITICAL_DAYS
 * (the link dies at the end, and no directive reaches the site). */
#define SERVER_CERT_WARN_DAYS     30
#define SERVER_CERT_CRITICAL_DAYS 7
/* A site whose reports say its PBX is unreadable this long (real ms)
 * raises its `agent` alarm (major). */
#define SERVER_PBX_UNREADABLE_MS 60000
/* The `agent` alarm of site `s` at real time now_ms: false when none
 * stands; else its words (the certificate's end, a PBX its reports have
 * called unreadable for SERVER_PBX_UNREADABLE_MS, the state file) and
 * whether it is critical (a state file it cannot write, or a certificate
 * in its last days). Pure. */
bool server_pbx_agent_words(const site_t *s, int64_t now_ms, char *buf, size_t len, bool *critical);
/* When a site's agent saw a PbxEvent, on this controller's real clock: a
 * decision free of I/O (unit.test_server_pbx). The agent counts how long
 * ago on its monotonic clock (seen_ago_ms); its host's clock (at_ms) is
 * never taken, it may be minutes off. */
typedef enum {
  SERVER_PBX_SEEN_UNSAID = 0,  /* an older agent: at or before it arrived */
  SERVER_PBX_SEEN_IMPLAUSIBLE, /* a count that cannot be (before 1970, a month or more:
                                  clock_place_ago) */
  SERVER_PBX_SEEN_ON_TIME,     /* within a trip (SERVER_PBX_TRIP_MS) of its arrival */
  SERVER_PBX_SEEN_LATE,        /* reported late_ms after it was seen (link down) */
} server_pbx_seen_state_t;
#define SERVER_PBX_TRIP_MS 2000 /* as the engine's "recorded late" */
typedef struct {
  server_pbx_seen_state_t state;
  int64_t at_ms;   /* recorded at: arrival less seen_ago_ms; arrival when not known */
  int64_t late_ms; /* arrival less at_ms (0 unless ON_TIME or LATE) */
} server_pbx_seen_t;
server_pbx_seen_t server_pbx_seen(const Nirc__PbxEvent *ev, int64_t arrival_ms);
/* The same for any count an agent says (`said` false: not said), such as
 * Hello.route_unconfirmed_ago_ms. */
server_pbx_seen_t server_pbx_seen_ago(bool said, uint64_t ago_ms, int64_t arrival_ms);
/* What an operator reads beside the event: when it was seen and how much
 * later it was reported, or that it is not known; "" when on time. */
void server_pbx_seen_words(const server_pbx_seen_t *s, char *buf, size_t len);
/* A Hello's route_unconfirmed_ago_ms placed (server_pbx_seen_ago): when it
 * is LATE, "seen by the agent at TIME, N s before its Hello to this
 * controller" (the agent may have told a controller before: this one may
 * have just taken over); "" otherwise. */
void server_pbx_hello_words(const server_pbx_seen_t *s, char *buf, size_t len);
/* The words of an EVENTS_DROPPED PbxEvent heard at arrival_ms: how many
 * events the agent did not keep and between when it saw them (seen_ago_ms
 * and dropped_last_ago_ms placed as server_pbx_seen does). Pure
 * (unit.test_server_pbx). */
void server_pbx_dropped_words(const Nirc__PbxEvent *ev, int64_t arrival_ms, char *buf, size_t len);
/* server_pbxload.c, from the leader's tick (after the engine's): reads
 * each site's last PBXLOG_KEEP PBX events of the 24 h before it took the
 * lead from link_events into pbx_log, once (again 30 s after a failure),
 * in one asynchronous query, merged with those received meanwhile. */
void server_pbx_load_tick(server_t *srv);
/* A PBX event's stored link_events detail (escaped) as `nircctl site`
 * shows it: the text without the words server_pbx_seen_words added, and
 * what they say in ev->late_ms (to the second, as stored) and
 * ev->at_or_before. Pure (unit.test_ctl_site_pbx). */
void server_pbx_load_detail(const char *stored, pbxlog_event_t *ev);
/* server_retention.c, from the leader's tick: prunes load minutes older than
 * [database] history_days (business clock) in batches, and reads each
 * site's newest stored WAPE into fc_wape for /metrics. */
void server_prune_history(server_t *srv);
void server_read_wape(server_t *srv);
/* And reads the audit trail's new 'superseded' entries, raising the
 * superseded alarm for 30 minutes after one (the operator who made the
 * change was told it was in force). */
void server_read_superseded(server_t *srv);
/* Reloads the load history into the engine when it is due: on leading,
 * on each new local business day, and 30 s after a failure; never twice
 * within 10 s, never blocking (server_history.c). */
void server_history_tick(server_t *srv);

#endif
