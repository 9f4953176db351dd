/* webhook: nircd's alarms posted as JSON to HTTP(S) receivers ([notify]
 * webhook), on libcurl's multi socket interface driven by the caller's
 * libuv loop: one uv_poll_t per socket libcurl opens, one uv_timer_t for
 * its timeouts. Nothing here blocks the loop and no thread is started
 * (libcurl's threaded resolver runs name lookups on threads of its own).
 *
 * What a receiver gets: one POST per notification, the body exactly as
 * given to webhook_post, with the headers
 *   Content-Type: application/json
 *   User-Agent: nircd
 *   X-NIRC-Event-Id: <id>
 * The body is any JSON text (checked to parse, at most WEBHOOK_BODY_MAX
 * bytes); the caller owns its schema. A notification may arrive more than
 * once (an answer lost on the way back is retried): a receiver drops
 * duplicates by X-NIRC-Event-Id.
 *
 * Per URL:
 *  - notifications are delivered in the order they were posted, one
 *    transfer in flight at a time, so an alarm's "cleared" never overtakes
 *    its "raised"; each URL has its own queue, so one that is down or slow
 *    holds up no other;
 *  - an answer 2xx is a delivery. A connection error, a timeout (timeout_ms
 *    for connecting and answering), 5xx, 408, 429, any 3xx (redirects are
 *    not followed) and any other 4xx not named below are failed attempts,
 *    retried with full-jitter backoff (common/backoff.h) between
 *    backoff_min_ms and backoff_max_ms: a 401, 403 or 404 usually means a
 *    receiver being redeployed or a credential being fixed, and its
 *    notifications are delivered once it is;
 *  - 400, 413, 415 and 422 say the receiver refuses this notification's
 *    content: the same bytes can never succeed and would hold up every
 *    later notification, so it is given up at once (counted and logged);
 *  - a notification not delivered max_age_ms after it was posted is given
 *    up (counted and logged); one already on the wire is let finish;
 *  - at most queue_max notifications wait besides the one on the wire;
 *    when another is posted the oldest waiting one is dropped (counted and
 *    logged).
 * Logs ([log] group notify): a URL that starts failing is logged once with
 * the reason, and once when it answers again with how many attempts
 * failed and what was lost meanwhile; each retry only at debug. Every loss
 * (dropped, given up) is logged: the first with its reason, and those
 * within loss_log_ms of a loss line in one summary line when that window
 * ends, or in the recovery line if it comes first, or at close (losslog.h
 * has the rules). Loss lines name the counts and the first and last event
 * ids lost; lost notifications are not re-sent. A receiver's
 * answer appears only as a short escaped excerpt (common/safetext.h), and
 * URLs in logs, errors and webhook_url() show user:password@ and the query
 * string as ***.
 *
 * URLs are http:// or https:// only (checked by webhook_new; libcurl is
 * also held to those protocols, and redirects are not followed). https
 * verifies the receiver's certificate against ca_file or the system's CA
 * bundle. libcurl's proxy environment variables (https_proxy, no_proxy)
 * apply. */
#ifndef NIRC_WEBHOOK_H
#define NIRC_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Receivers one notifier posts to (as many as a [notify] webhook list). */
#define WEBHOOK_URLS_MAX 16
/* Longest event id: it travels in a header. */
#define WEBHOOK_ID_MAX 128
/* Largest body: an alarm is a few hundred bytes. */
#define WEBHOOK_BODY_MAX (64 * 1024)
/* Largest queue_max: the queue is allocated up front. */
#define WEBHOOK_QUEUE_MAX 100000

typedef struct webhook webhook_t;

/* Options; a field left 0 takes the default named beside it. */
typedef struct {
  const char *const *urls; /* copied; borrowed for the call only */
  size_t n_urls;           /* 0: a notifier that posts nowhere (webhook_post is a no-op) */
  uint32_t timeout_ms;     /* one attempt, connect + answer; 5000 */
  uint32_t backoff_min_ms; /* first retry window; 1000 (cut to backoff_max_ms if above) */
  uint32_t backoff_max_ms; /* retry ceiling; 60000 */
  uint32_t max_age_ms;     /* undelivered this long after webhook_post: given up; 3600000 */
  size_t queue_max;        /* per URL, besides the one on the wire; 1000 */
  uint32_t loss_log_ms;    /* at most one loss line per URL this often; 10000 */
  const char *ca_file;     /* https CA bundle, readable (copied); NULL or "": the system's */
} webhook_opts_t;

/* Counters of one URL, or of all (webhook_stats_total); the counters only
 * grow, for Prometheus counters labelled by URL index. */
typedef struct {
  uint64_t delivered;       /* answered 2xx */
  uint64_t attempts_failed; /* attempts without a 2xx: status, connection error, timeout */
  uint64_t given_up;        /* older than max_age_ms, or refused for their content */
  uint64_t dropped;         /* pushed out of a full queue, or still queued at close */
  size_t pending;           /* queued now, the one on the wire included */
  size_t failing;           /* URLs whose last attempt is being retried (per URL: 0 or 1) */
} webhook_stats_t;

/* Checks one URL as webhook_new does: 0, or NIRC_EINVAL with a message
 * naming it (credentials hidden) and the fix in err. For `nircd -t`. */
int webhook_check_url(const char *url, char *err, size_t errlen);

/* Creates a notifier on `loop` (borrowed; it must outlive the notifier).
 * Every URL is checked first (webhook_check_url): one that is not http://
 * or https:// fails the whole call, as does a ca_file that cannot be read.
 * Returns 0 and *out, or NIRC_EINVAL / NIRC_ENOMEM with a message in err;
 * nothing is left open on failure. */
int webhook_new(uv_loop_t *loop, const webhook_opts_t *o, webhook_t **out, char *err,
                size_t errlen);

/* Queues `json` for every URL and starts sending where nothing is in
 * flight. `id` (1 to WEBHOOK_ID_MAX printable ASCII characters, no space)
 * is sent as X-NIRC-Event-Id. Both are copied (once, shared by the URLs).
 * Returns 0 (also with no URL, or when a full queue dropped its oldest),
 * or NIRC_EINVAL (bad id, not JSON), NIRC_ERANGE (body over
 * WEBHOOK_BODY_MAX), NIRC_ENOMEM, NIRC_ECLOSED (after webhook_close):
 * then nothing was queued. Never calls back. */
int webhook_post(webhook_t *w, const char *id, const char *json);

/* Number of URLs, and URL i as shown in logs (credentials and query
 * hidden; owned by w), for metric labels. NULL if i is out of range. */
size_t webhook_url_count(const webhook_t *w);
const char *webhook_url(const webhook_t *w, size_t i);

/* Counters of URL i (all zero if out of range), or summed over all URLs. */
void webhook_stats(const webhook_t *w, size_t i, webhook_stats_t *out);
void webhook_stats_total(const webhook_t *w, webhook_stats_t *out);

/* Stops: transfers in flight are aborted, notifications still queued are
 * dropped (counted, logged), and done(arg) (may be NULL) is called from
 * the loop once every handle is closed and everything freed. Until then
 * only webhook_stats and webhook_stats_total may be called (they show the
 * final counts); after it, w is gone. A second call does nothing. */
void webhook_close(webhook_t *w, void (*done)(void *arg), void *arg);

#endif
