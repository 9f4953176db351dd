#include "conf.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "tz.h"
#include "util.h"
#include "webhook.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>

/* Where the database journal lives unless the configuration says; packages
 * that keep state elsewhere may override it at build time. */
#ifndef NIRC_DEFAULT_JOURNAL
#define NIRC_DEFAULT_JOURNAL "/var/lib/nirc/nircd.journal"
#endif

#define O(f) offsetof(nircd_conf_t, f)
#define S(f) sizeof(((nircd_conf_t *)0)->f)
const config_opt_t conf_nircd_opts[] = {
    {"controller", "node", CFG_STRING, O(node), S(node), 0, 0, "nircd", 0,
     "name of this controller instance, e.g. nircd-1"},
    {"controller", "listen", CFG_LIST, O(listen), 0, 0, 0, "127.0.0.1:7443", 0,
     "addresses agents and operators connect to"},
    {"controller", "max_unauthenticated", CFG_UINT, O(max_unauthenticated), 0, 1, 100000, "256", 0,
     "most links still in the TLS handshake or waiting for Hello; beyond it a new connection "
     "is closed at once, or replaces the oldest such link once that one has waited 1 s"},
    {"controller", "handshake_failure_interval", CFG_DURATION, O(hs_interval_ms), 0, 1000, 3600000,
     "60s", 0,
     "failed TLS handshakes are aggregated per source address over this: the first few "
     "distinct ones are stored as link events, the rest counted in one summary event per "
     "address and interval"},
    {"controller", "advertise", CFG_STRING, O(advertise), S(advertise), 0, 0, "", 0,
     "address standbys send agents and operators to while this one leads (default: the first "
     "listen address)"},
    {"controller", "lease_timeout", CFG_DURATION, O(lease_timeout_ms), 0, 500, 60000, "3s", 0,
     "a leader that has not renewed its lease for this long is replaced by a standby"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, NULL, 1, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, NULL, 1, "this controller's certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, NULL, 1, "this controller's private key"},
    {"tls", "crl", CFG_STRING, O(crl), S(crl), 0, 0, "", 0,
     "PEM revocation list(s) of the CA: revoked certificates fail the handshake; re-read on "
     "SIGHUP (empty: none)"},
    {"tls", "blocklist", CFG_STRING, O(blocklist), S(blocklist), 0, 0, "", 0,
     "file of SHA-256 certificate fingerprints (hex, one a line, # comments) refused after the "
     "handshake; re-read on SIGHUP (empty: none)"},
    {"ops", "max_links_per_operator", CFG_UINT, O(max_links_per_operator), 0, 1, 10000, "8", 0,
     "links one operator identity (certificate) may hold open at once; the next one is "
     "refused with an error naming this key"},
    {"ops", "max_requests_per_s", CFG_UINT, O(max_requests_per_s), 0, 0, 100000, "50", 0,
     "requests a second one operator identity may send on average, over all its links; those "
     "over it are answered with a 'rate limited' error (0: no limit)"},
    {"ops", "request_burst", CFG_UINT, O(request_burst), 0, 1, 1000000, "500", 0,
     "requests one operator identity may send at once above that rate"},
    {"database", "conninfo", CFG_STRING, O(conninfo), S(conninfo), 0, 0, NULL, 1,
     "libpq connection string"},
    {"database", "schema_dir", CFG_STRING, O(schema_dir), S(schema_dir), 0, 0, NIRC_SCHEMA_DIR, 0,
     "directory of the schema migrations"},
    {"database", "journal", CFG_STRING, O(journal), S(journal), 0, 0, NIRC_DEFAULT_JOURNAL, 0,
     "file where writes wait while the database is unreachable, replayed when it returns "
     "(empty: none, writes then wait in memory only)"},
    {"database", "journal_max", CFG_SIZE, O(journal_max), 0, 65536, 1099511627776.0, "64MiB", 0,
     "the journal's maximum size; writes beyond it are refused and logged"},
    {"database", "history_days", CFG_UINT, O(history_days), 0, 0, 36500, "400", 0,
     "days of per-minute load history kept (business clock); older rows are pruned by the "
     "leader in batches (0: kept forever)"},
    {"timing", "report_interval", CFG_DURATION, O(report_interval_ms), 0, 100, 60000, "1s", 0,
     "how often agents report load"},
    {"timing", "stale_after", CFG_DURATION, O(stale_after_ms), 0, 200, 600000, "3s", 0,
     "a site with no report for this long is stale"},
    {"timing", "link_idle_timeout", CFG_DURATION, O(idle_timeout_ms), 0, 500, 600000, "5s", 0,
     "a link with no frame for this long is dead"},
    {"timing", "handshake_timeout", CFG_DURATION, O(handshake_timeout_ms), 0, 100, 120000, "10s", 0,
     "time allowed for the TLS handshake, and for a site's Hello after it"},
    {"timing", "max_messages_per_s", CFG_UINT, O(max_messages_per_s), 0, 0, 1000000, "200", 0,
     "messages a second one link may send on average; a peer over it is sent a RATE_LIMITED "
     "error and disconnected (0: no limit)"},
    {"timing", "message_burst", CFG_UINT, O(msg_burst), 0, 1, 10000000, "400", 0,
     "messages one link may send at once above that rate"},
    {"routing", "ack_timeout", CFG_DURATION, O(ack_timeout_ms), 0, 100, 60000, "2s", 0,
     "a directive not acknowledged in this time is resent"},
    {"routing", "max_resends", CFG_UINT, O(max_resends), 0, 0, 100, "3", 0,
     "resends before a directive is marked failed and alarmed"},
    {"routing", "verify_window", CFG_DURATION, O(verify_window_ms), 0, 0, 3600000, "10s", 0,
     "a wave is verified when its hubs stay healthy this long after the last ack"},
    {"routing", "sl_target", CFG_DOUBLE, O(sl_target), 0, 0.01, 1, "0.8", 0,
     "service-level floor a move must keep at the hub"},
    {"routing", "sl_threshold", CFG_DOUBLE, O(sl_threshold_s), 0, 1, 3600, "20", 0,
     "service-level threshold in seconds (80% answered within 20 s)"},
    {"routing", "hub_grace", CFG_DURATION, O(hub_grace_ms), 0, 0, 600000, "15s", 0,
     "a hub not healthy for less than this keeps the sources it answers (a stale report or a "
     "reconnecting agent is not a lost hub); after it they go to their next hub or home"},
    {"routing", "hub_return", CFG_DURATION, O(hub_return_ms), 0, 0, 3600000, "60s", 0,
     "a hub back from a loss takes sources again once healthy this long, doubled for each "
     "further loss within an hour (at most an hour)"},
    {"routing", "capacity_keep_margin", CFG_DOUBLE, O(keep_margin), 0, 0, 0.5, "0.05", 0,
     "a source already at a hub stays while its predicted service level is at most this much "
     "below sl_target"},
    {"routing", "capacity_enter_margin", CFG_DOUBLE, O(enter_margin), 0, 0, 0.5, "0.05", 0,
     "a source a hub refused or withdrew for capacity moves again only at sl_target plus this"},
    {"routing", "capacity_hold", CFG_DURATION, O(capacity_hold_ms), 0, 0, 3600000, "60s", 0,
     "a source at a hub predicted below its keep floor stays this long (business time) before "
     "it is withdrawn"},
    {"routing", "capacity_reentry", CFG_DURATION, O(capacity_reentry_ms), 0, 0, 3600000, "120s", 0,
     "after a capacity withdrawal a source waits this long (business time, doubled for each "
     "further withdrawal within an hour) before it may move again"},
    {"routing", "forecast", CFG_STRING, O(forecast), S(forecast), 0, 0, "", 0,
     "scenario file with each site's expected calls by hour, used to size scheduled moves "
     "where the load history has no forecast (empty: live load)"},
    {"routing", "forecast_weeks", CFG_UINT, O(forecast_weeks), 0, 1, 52, "8", 0,
     "weeks of load history (load_minute) the demand forecast reads; docs/FORECAST.md"},
    {"routing", "forecast_tz", CFG_STRING, O(forecast_tz), S(forecast_tz), 0, 0, "", 0,
     "time zone (IANA) of the business day the forecast's weekdays and half-hours are in "
     "(empty: [http] tz)"},
    {"alarms", "clear_after", CFG_DURATION, O(alarm_clear_ms), 0, 1000, 3600000, "30s", 0,
     "an alarm is cleared once its condition has been gone this long: a condition that "
     "comes and goes within it (a link reconnecting, a verdict at a hub's capacity edge) stays "
     "one alarm"},
    {"http", "listen", CFG_STRING, O(http_listen), S(http_listen), 0, 0, "", 0,
     "address of the read-only metrics and status page (/metrics, /status.json, /map.svg, /); "
     "empty: off"},
    {"http", "tz", CFG_STRING, O(http_tz), S(http_tz), 0, 0, "Asia/Shanghai", 0,
     "the operations room's time zone (IANA name): the status page shows rule ends and the "
     "next events in it, as nircctl does with [ctl] tz, and the controller's own words (an "
     "expiry, a window's end) say their times in it"},
    {"notify", "webhook", CFG_LIST, O(webhook), 0, 0, 0, "", 0,
     "http:// or https:// URLs each alarm is posted to as JSON, in order per URL, retried until "
     "delivered or given up (empty: no notifications)"},
    {"notify", "webhook_timeout", CFG_DURATION, O(webhook_timeout_ms), 0, 100, 600000, "5s", 0,
     "time for one attempt, connecting and the answer"},
    {"notify", "webhook_retry_max", CFG_DURATION, O(webhook_retry_max_ms), 0, 1000, 3600000, "60s",
     0, "failed attempts are retried with a backoff from 1 s doubling up to this"},
    {"notify", "webhook_give_up", CFG_DURATION, O(webhook_give_up_ms), 0, 1000, 604800000, "1h", 0,
     "a notification not delivered within this is given up, counted and logged"},
    {"notify", "webhook_queue", CFG_UINT, O(webhook_queue), 0, 1, 100000, "1000", 0,
     "notifications waiting per URL; when full the oldest is dropped, counted and logged"},
    CONFIG_CLOCK_OPTS(nircd_conf_t, clock),
    CONFIG_LOG_OPTS(nircd_conf_t, log),
    {0},
};

int conf_nircd_load(const char *path, nircd_conf_t *c, char *err, size_t errlen) {
  int rc = config_load(path, conf_nircd_opts, c, err, errlen);
  if (rc) return rc;
  if (!nirc_slug_valid(c->node)) {
    snprintf(err, errlen, "%s: [controller] node '%s' must be [a-z][a-z0-9-]{0,30}", path, c->node);
    return NIRC_ECONFIG;
  }
  if (c->listen.count == 0) {
    snprintf(err, errlen, "%s: [controller] listen needs at least one address", path);
    return NIRC_ECONFIG;
  }
  for (unsigned i = 0; i < c->listen.count; i++) {
    struct sockaddr_storage ss;
    char why[256];
    if (nirc_parse_addr(c->listen.item[i], &ss, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s: [controller] listen: %s", path, why);
      return NIRC_ECONFIG;
    }
  }
  if (!c->advertise[0]) nirc_strlcpy(c->advertise, c->listen.item[0], sizeof c->advertise);
  {
    struct sockaddr_storage ss;
    char why[256];
    if (nirc_parse_addr(c->advertise, &ss, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s: [controller] advertise: %s", path, why);
      return NIRC_ECONFIG;
    }
  }
  if (c->stale_after_ms <= c->report_interval_ms) {
    snprintf(err, errlen, "%s: [timing] stale_after must be longer than report_interval", path);
    return NIRC_ECONFIG;
  }
  for (unsigned i = 0; i < c->webhook.count; i++) {
    char why[300];
    if (webhook_check_url(c->webhook.item[i], why, sizeof why) != 0) {
      snprintf(err, errlen, "%s: [notify] %s", path, why);
      return NIRC_ECONFIG;
    }
  }
  if (!tz_valid(c->http_tz)) {
    snprintf(err, errlen,
             "%s: [http] tz '%s' is not a time zone (an IANA name such as "
             "Asia/Shanghai or UTC)",
             path, c->http_tz);
    return NIRC_ECONFIG;
  }
  if (c->forecast_tz[0] && !tz_valid(c->forecast_tz)) {
    snprintf(err, errlen,
             "%s: [routing] forecast_tz '%s' is not a time zone (an IANA name such as "
             "Asia/Shanghai or UTC; empty: [http] tz)",
             path, c->forecast_tz);
    return NIRC_ECONFIG;
  }
  if (!c->forecast_tz[0]) nirc_strlcpy(c->forecast_tz, c->http_tz, sizeof c->forecast_tz);
  if (config_check_clock(&c->clock, path, err, errlen) != 0) return NIRC_ECONFIG;
  if (config_check_log(&c->log, path, err, errlen) != 0) return NIRC_ECONFIG;
  return 0;
}
