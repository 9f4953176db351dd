/* conf: nircd's configuration (see deploy/nircd.conf.example). */
#ifndef NIRC_CONF_H
#define NIRC_CONF_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  char node[64];             /* this controller's name, e.g. nircd-1 */
  config_list_t listen;      /* addresses to listen on */
  char advertise[128];       /* the address standbys redirect agents and operators to */
  uint64_t lease_timeout_ms; /* leadership lease: a leader silent this long is replaced */
  char ca[CONFIG_STR_MAX], cert[CONFIG_STR_MAX], key[CONFIG_STR_MAX];
  char crl[CONFIG_STR_MAX], blocklist[CONFIG_STR_MAX]; /* revocation; "" for none */
  uint32_t max_unauthenticated;                        /* links not yet past TLS + Hello */
  uint32_t max_messages_per_s, msg_burst;              /* per-link token bucket; 0: no limit */
  uint64_t hs_interval_ms; /* failed handshakes aggregated per address over this */
  /* [ops]: per operator identity, over all its links (net/guard.h). */
  uint32_t max_links_per_operator, max_requests_per_s, request_burst;
  char conninfo[CONFIG_STR_MAX];
  char schema_dir[CONFIG_STR_MAX];
  char journal[CONFIG_STR_MAX]; /* on-disk journal of writes during outages; empty: none */
  uint64_t journal_max;         /* bytes the journal may grow to */
  uint32_t history_days;        /* load_minute rows older than this are pruned (0: kept) */
  uint64_t report_interval_ms, stale_after_ms, idle_timeout_ms, handshake_timeout_ms;
  uint64_t ack_timeout_ms, verify_window_ms;
  uint32_t max_resends;
  double sl_target, sl_threshold_s;
  uint64_t hub_grace_ms, hub_return_ms;           /* hub loss damping (real time) */
  double keep_margin, enter_margin;               /* capacity hysteresis, SL points */
  uint64_t capacity_hold_ms, capacity_reentry_ms; /* capacity damping (business time) */
  char forecast[CONFIG_STR_MAX];                  /* scenario file giving expected demand by hour */
  uint32_t forecast_weeks;                        /* load history the forecast reads */
  char forecast_tz[64];    /* its business day's zone ("" at load: http_tz) */
  uint64_t alarm_clear_ms; /* [alarms] clear_after */
  char http_listen[64];    /* metrics and status page; empty: off */
  char http_tz[64];        /* the zone the status page shows times in (IANA) */
  /* [notify]: alarms posted to webhooks (controller/notify/webhook.h). */
  config_list_t webhook;                             /* receivers' URLs; empty: none */
  uint64_t webhook_timeout_ms, webhook_retry_max_ms; /* one attempt; the backoff's ceiling */
  uint64_t webhook_give_up_ms;                       /* undelivered this long: given up */
  uint32_t webhook_queue;                            /* notifications waiting per URL */
  config_clock_t clock;
  config_log_t log;
} nircd_conf_t;

extern const config_opt_t conf_nircd_opts[];

/* Loads and cross-checks a nircd configuration: 0 or NIRC_ECONFIG with
 * "file:line: reason" (or "file: reason") in err. */
int conf_nircd_load(const char *path, nircd_conf_t *c, char *err, size_t errlen);

#endif
