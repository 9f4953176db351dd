/* webrow: one site as the status page's table row and as its object in
 * /status.json, from facts web.c gathers from the registry and the engine.
 * Pure (no server, no engine, no clock): what a site's route marks look
 * like on the page and in the JSON is tested without a controller
 * (tests/unit/test_webrow.c). */
#ifndef NIRC_WEBROW_H
#define NIRC_WEBROW_H

#include "alarm.h"
#include "engine.h"
#include "route.h"
#include "sites.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The facts, filled by webrow_facts; pointers are borrowed for the call. */
typedef struct {
  const site_t *site;
  /* The route the site acknowledged (what it does); NULL: nobody knows it
   * (engine_route_seen is not ENGINE_ROUTE_KNOWN): never shown as home. */
  const route_t *route;
  bool unheard;    /* with route NULL: no Hello from its agent since this controller took over */
  bool unverified; /* with a route: the PBX took it, nobody read it back */
  /* Held home after its agent's early returns (engine_returns_t HELD),
   * and the engine's words for it (engine_returns_words: how many, the
   * rule, the fix), whether or not a rule would move it now. */
  bool held;
  char held_words[ALARM_MESSAGE_MAX];
  const char *note;          /* the engine's status note (site_dir_t.note); NULL or "": none */
  const char *active_reason; /* engine_active_reason, or "default" without an engine */
  bool has_rule;             /* an engine: the "rule" key, from `rule` */
  engine_rule_view_t rule;
  const char *rule_text; /* the page's rule column, raw (the caller's words, web.c); NULL: none */
  /* The wall clock (ms), for the age of an old figure on the page; 0: not
   * given (the figure is still marked old, without its age). */
  int64_t now_real;
} webrow_site_t;

/* Site i's facts from the engine (NULL: none yet, a controller that never
 * led) and its registry row. The engine is only read, though
 * engine_returns_words takes it non-const. */
void webrow_facts(engine_t *e, const site_t *site, size_t i, webrow_site_t *w);

/* Text from elsewhere (an operator's reason, an agent's error, a lease row
 * in the database) for HTML: its controls escaped (common/safetext.h),
 * then its markup. */
void webrow_escape(const char *in, char *out, size_t outlen);

/* A link state as the page, /status.json and the map say it ("online",
 * "stale", "offline", "never-seen"). */
const char *webrow_link_word(site_state_t s);

/* The route cell's text, raw: the route with its unverified mark, or
 * "unknown" and why. */
void webrow_route_text(const webrow_site_t *w, char *buf, size_t len);

/* The rule cell of a site no rule moves: "hub for N sites" when `senders`
 * live sites send calls to it by a route known here (statusq's count,
 * the one nircctl status shows), else the engine's reason ("default").
 * Not the hub's planned inbound list: a directive not yet acknowledged,
 * or a site not heard, is no sender anybody has seen. */
void webrow_idle_text(const char *active_reason, uint32_t senders, char *buf, size_t len);

/* The line under the table while a row says "hub for N sites" and
 * `unknown` live sites' routes are not known here (not counted in N);
 * "" otherwise. Raw text. */
void webrow_not_known_text(size_t unknown, bool hub_rows, char *buf, size_t len);

/* The site's <tr> of the page's table, or "" when it does not fit in len
 * (WEBROW_HTML_MAX always fits). A held site's rule cell leads with the
 * engine's words (why it is home, and the fix), then its rule. The queue
 * and agents of a site that is not online are its last report's, marked
 * so with their age: not current figures. */
#define WEBROW_HTML_MAX 8192
void webrow_html(const webrow_site_t *w, char *out, size_t len);

/* The site's object of /status.json (a new reference), or NULL when out
 * of memory. now_real: the wall clock, for report_age_ms. */
json_t *webrow_json(const webrow_site_t *w, int64_t now_real);

/* The page's "predicted at the hubs" cell of a schedule start, from the n
 * hubs engine_next_predict_hubs gave (raw text, slugs only): "shaanxi: SL
 * 85%, needs 20 agents, has 28 (configured)", as nircctl next says it; a
 * hub whose agents are neither measured nor configured has no SL and no
 * agents ("agents not known"), never "has 0"; no hub: unknown. */
void webrow_next_text(const engine_next_hub_t *hp, size_t n, char *buf, size_t len);

/* The per-site gauges of /metrics, in the order web.c names them
 * (web.c keeps the names and help texts, where the checks of the shipped
 * alert rules and dashboard read them). */
typedef enum {
  WEBROW_G_QUEUE = 0,     /* nirc_site_calls_in_queue */
  WEBROW_G_WAIT,          /* nirc_site_longest_wait_seconds */
  WEBROW_G_LOGGED_IN,     /* nirc_site_agents_logged_in */
  WEBROW_G_READY,         /* nirc_site_agents_ready */
  WEBROW_G_SL,            /* nirc_site_service_level */
  WEBROW_G_AGE,           /* nirc_site_report_age_seconds */
  WEBROW_G_DEMAND,        /* nirc_site_demand_erlangs */
  WEBROW_G_PBX_UNREADABLE /* nirc_site_pbx_unreadable */
} webrow_gauge_t;
#define WEBROW_GAUGES 8

/* Site s's sample of gauge g into *v: true, or false when the figure is
 * not known, and then the series is absent for the site (Prometheus's
 * way of saying unknown), never 0: no report since this controller took
 * over, a PBX that could not be read, a figure the site does not
 * measure, a site not online (its last figures are not current: only
 * its report age is), a service level without calls, a demand on less
 * than WEBROW_DEMAND_EVIDENCE_S of reports or without a handle time.
 * now_real: the wall clock, for the report age. */
#define WEBROW_DEMAND_EVIDENCE_S 60.0
bool webrow_gauge(const site_t *s, webrow_gauge_t g, int64_t now_real, double *v);

#endif
