/* webhook: JSON notifications to HTTP(S) receivers on libcurl's multi
 * socket interface (the pattern of curl's docs/examples/multi-uv.c).
 *
 * libcurl tells us, through two callbacks, what to wait for: which sockets
 * to watch and for what (webhook_on_socket: a uv_poll_t each), and when
 * to call it back anyway (webhook_on_curl_timer: one uv_timer_t). When
 * either fires we hand the event to curl_multi_socket_action, then read
 * the transfers it finished with curl_multi_info_read. Transfers never
 * run outside those calls, so all of this happens on the loop thread.
 *
 * Each URL is a target with its own FIFO of notifications (shared,
 * reference-counted), its own state (idle, sending, backoff, closed), its
 * own retry timer and backoff. Only the head of a queue is ever on the
 * wire, which is what keeps each URL's order. */
#include "webhook.h"

#include "backoff.h"
#include "err.h"
#include "log.h"
#include "losslog.h"
#include "safetext.h"

#include <curl/curl.h>
#include <jansson.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WEBHOOK_DEF_TIMEOUT_MS     5000
#define WEBHOOK_DEF_BACKOFF_MIN_MS 1000
#define WEBHOOK_DEF_BACKOFF_MAX_MS 60000
#define WEBHOOK_DEF_MAX_AGE_MS     3600000
#define WEBHOOK_DEF_QUEUE          1000
/* Bytes of a failing receiver's answer kept for the log line. */
#define WEBHOOK_REPLY_KEEP 120
/* An answer longer than this is not read further: its status line has
 * already said what we need, and a receiver streaming for ever must not
 * hold its URL until the timeout. */
#define WEBHOOK_REPLY_MAX (64 * 1024)
/* Losses (dropped, given up) are logged at most this often per URL
 * (webhook_opts_t loss_log_ms): a receiver down for an hour behind a full
 * queue would otherwise write a line per notification. */
#define WEBHOOK_DEF_LOSS_LOG_MS 10000
/* Room for a URL as shown in logs and its log object. */
#define WEBHOOK_SHOWN_MAX 256

typedef enum {
  WEBHOOK_OPEN = 0,
  WEBHOOK_CLOSING, /* webhook_close called: handles closing, then freed */
} webhook_state_t;

/* A target's state. Legal moves: idle -> sending (an attempt starts) or
 * backoff (it could not be started); sending -> idle (delivered or given
 * up) or backoff (failed); backoff -> idle (the retry timer fired); any ->
 * closed. */
typedef enum {
  WEBHOOK_T_IDLE = 0, /* nothing on the wire, no retry waiting */
  WEBHOOK_T_SENDING,  /* the head of the queue is on the wire */
  WEBHOOK_T_BACKOFF,  /* the head failed; the retry timer runs */
  WEBHOOK_T_CLOSED,   /* webhook_close: nothing happens any more */
  WEBHOOK_T__COUNT
} webhook_tstate_t;

static const char *const webhook_tstate_names[WEBHOOK_T__COUNT] = {
    [WEBHOOK_T_IDLE] = "idle",
    [WEBHOOK_T_SENDING] = "sending",
    [WEBHOOK_T_BACKOFF] = "backoff",
    [WEBHOOK_T_CLOSED] = "closed",
};

static const bool webhook_tstate_legal[WEBHOOK_T__COUNT][WEBHOOK_T__COUNT] = {
    [WEBHOOK_T_IDLE] =
        {[WEBHOOK_T_SENDING] = true, [WEBHOOK_T_BACKOFF] = true, [WEBHOOK_T_CLOSED] = true},
    [WEBHOOK_T_SENDING] =
        {[WEBHOOK_T_IDLE] = true, [WEBHOOK_T_BACKOFF] = true, [WEBHOOK_T_CLOSED] = true},
    [WEBHOOK_T_BACKOFF] = {[WEBHOOK_T_IDLE] = true, [WEBHOOK_T_CLOSED] = true},
};

/* One notification, shared by every URL's queue: freed when the last
 * queue lets go of it. The body stays put while a transfer sends it
 * (CURLOPT_POSTFIELDS does not copy). */
typedef struct {
  unsigned refs;
  uint64_t posted_ms; /* uv_now() at webhook_post */
  size_t len;         /* of the body */
  const char *id;     /* into data, after the body */
  char data[];        /* body, NUL, id, NUL */
} webhook_note_t;

typedef struct webhook_target {
  webhook_t *w; /* owner */
  size_t index;
  char *url;                          /* owned; as configured, credentials included */
  char shown[WEBHOOK_SHOWN_MAX];      /* credentials and query hidden */
  char label[WEBHOOK_SHOWN_MAX + 32]; /* log object: "webhook=0 url=..." */
  webhook_tstate_t state;

  /* The queue: a ring of queue_max + 1 slots (the one on the wire, and
   * queue_max waiting). The head is the oldest. */
  webhook_note_t **ring;
  size_t cap, head, count;

  /* The attempt on the wire (state sending), else NULL. */
  CURL *easy;
  struct curl_slist *headers;
  char errbuf[CURL_ERROR_SIZE];
  char reply[WEBHOOK_REPLY_KEEP + 1]; /* start of the answer, for the log */
  size_t reply_len, reply_total;
  bool reply_cut; /* we stopped reading past WEBHOOK_REPLY_MAX */

  uv_timer_t retry;
  backoff_t backoff;
  uint32_t failed_run; /* failed attempts since the last answer: > 0 is failing */
  uint64_t delivered, attempts_failed, given_up, dropped;

  /* What was lost and when to say it (losslog.h); loss_timer fires when
   * held losses are due for their summary line. */
  losslog_t losses;
  uv_timer_t loss_timer;
} webhook_target_t;

/* A socket libcurl asked us to watch. Freed in its close callback. */
typedef struct webhook_sock {
  uv_poll_t poll;
  webhook_t *w;
  curl_socket_t fd;
  struct webhook_sock *prev, *next; /* w->socks, until closed */
} webhook_sock_t;

struct webhook {
  uv_loop_t *loop; /* borrowed */
  webhook_state_t state;
  CURLM *multi;
  uv_timer_t timer;      /* libcurl's timeout */
  unsigned handles;      /* initialised libuv handles not yet closed */
  webhook_sock_t *socks; /* polls open */

  uint32_t timeout_ms, backoff_min_ms, backoff_max_ms, max_age_ms, loss_log_ms;
  size_t queue_max;
  char *ca_file; /* owned; NULL: the system's bundle */

  webhook_target_t *t; /* owned, n of them */
  size_t n;

  void (*done)(void *arg);
  void *done_arg;
};

static void webhook_pump(webhook_target_t *t);
static void webhook_on_retry(uv_timer_t *h);

/* ---- URLs ---------------------------------------------------------------- */

/* The URL as it may be shown: "user:password@" becomes "***@" and the
 * query "?***" (both may carry secrets); the fragment, never sent, is
 * left out. Works on any text, URL or not. The credentials end at the
 * last '@' before the query, not at the first '/': a password typed with
 * a raw '/' in it makes the URL invalid, and the error names the URL. */
static void webhook_shown(const char *url, char *out, size_t outlen) {
  const char *sep = strstr(url, "://");
  const char *auth = sep ? sep + 3 : url;
  const char *auth_end = auth + strcspn(auth, "?#");
  const char *at = NULL;
  for (const char *p = auth; p < auth_end; p++)
    if (*p == '@') at = p;
  const char *rest = at ? at + 1 : auth;
  size_t path = strcspn(rest, "?#");
  snprintf(out, outlen, "%.*s%s%.*s%s", (int)(auth - url), url, at ? "***@" : "", (int)path, rest,
           rest[path] == '?' ? "?***" : "");
}

int webhook_check_url(const char *url, char *err, size_t errlen) {
  char shown[WEBHOOK_SHOWN_MAX];
  webhook_shown(url ? url : "", shown, sizeof shown);
  if (!url || !*url) {
    snprintf(err, errlen, "a webhook URL is empty; give http://HOST/PATH or https://HOST/PATH");
    return NIRC_EINVAL;
  }
  CURLU *u = curl_url();
  if (!u) {
    snprintf(err, errlen, "out of memory checking webhook URL '%s'", shown);
    return NIRC_ENOMEM;
  }
  int rc = 0;
  char *scheme = NULL, *host = NULL;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (uc != CURLUE_OK) {
    snprintf(err, errlen,
             "webhook URL '%s' is not a URL (%s); give http://HOST/PATH or https://HOST/PATH",
             shown, curl_url_strerror(uc));
    rc = NIRC_EINVAL;
  } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
    snprintf(err, errlen, "webhook URL '%s': only http:// and https:// are allowed, not %s://",
             shown, scheme ? scheme : "?");
    rc = NIRC_EINVAL;
  } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
    snprintf(err, errlen, "webhook URL '%s' names no host", shown);
    rc = NIRC_EINVAL;
  }
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return rc;
}

/* A duration for a log line, in the largest unit that says it exactly:
 * "1 h", "90 s", "150 ms". */
static const char *webhook_duration(uint32_t ms, char *buf, size_t len) {
  if (ms && ms % 3600000 == 0)
    snprintf(buf, len, "%" PRIu32 " h", ms / 3600000);
  else if (ms && ms % 60000 == 0)
    snprintf(buf, len, "%" PRIu32 " min", ms / 60000);
  else if (ms && ms % 1000 == 0)
    snprintf(buf, len, "%" PRIu32 " s", ms / 1000);
  else
    snprintf(buf, len, "%" PRIu32 " ms", ms);
  return buf;
}

/* ---- notifications and queues ------------------------------------------- */

static void webhook_note_unref(webhook_note_t *n) {
  if (n && --n->refs == 0) free(n);
}

static webhook_note_t *webhook_head(const webhook_target_t *t) {
  return t->count ? t->ring[t->head] : NULL;
}

static void webhook_pop(webhook_target_t *t) {
  webhook_note_unref(t->ring[t->head]);
  t->ring[t->head] = NULL;
  t->head = (t->head + 1) % t->cap;
  t->count--;
}

/* The one place state changes: an illegal move is a bug, logged and not
 * made. */
static void webhook_set_state(webhook_target_t *t, webhook_tstate_t to) {
  if (!webhook_tstate_legal[t->state][to]) {
    log_error(LOG_NOTIFY, t->label, "illegal state change %s -> %s", webhook_tstate_names[t->state],
              webhook_tstate_names[to]);
    return;
  }
  log_debug(LOG_NOTIFY, t->label, "%s -> %s", webhook_tstate_names[t->state],
            webhook_tstate_names[to]);
  t->state = to;
}

/* Room for a losslog_format text. */
#define WEBHOOK_LOSSES_MAX (2 * LOSSLOG_ID_MAX + 128)
/* What every line about lost notifications ends with: what the operator
 * can and cannot expect. */
#define WEBHOOK_LOST_HINT                                                                          \
  "lost notifications are not re-sent; `nircctl alarms` shows the alarms themselves"

_Static_assert(LOSSLOG_ID_MAX >= WEBHOOK_ID_MAX, "losslog would cut event ids");

static void webhook_on_loss_timer(uv_timer_t *h);

/* Starts the loss timer for the summary line of held losses, if any are
 * held and it is not running already. */
static void webhook_loss_arm(webhook_target_t *t) {
  uint64_t at, now = uv_now(t->w->loop);
  if (t->w->state != WEBHOOK_OPEN || uv_is_active((uv_handle_t *)&t->loss_timer) ||
      !losslog_due(&t->losses, &at))
    return;
  uv_timer_start(&t->loss_timer, webhook_on_loss_timer, at > now ? at - now : 0, 0);
}

/* The summary line of losses held back. */
static void webhook_loss_summary(webhook_target_t *t, const losslog_span_t *s) {
  char what[WEBHOOK_LOSSES_MAX];
  log_warn(LOG_NOTIFY, t->label, "lost since the last such line: %s; " WEBHOOK_LOST_HINT,
           losslog_format(s, what, sizeof what));
}

/* Writes the summary line of the held losses if it is due (or `force`). */
static void webhook_loss_flush(webhook_target_t *t, bool force) {
  losslog_span_t s;
  if (losslog_flush(&t->losses, uv_now(t->w->loop), force, &s)) webhook_loss_summary(t, &s);
}

static void webhook_on_loss_timer(uv_timer_t *h) {
  webhook_target_t *t = h->data;
  if (t->w->state != WEBHOOK_OPEN) return;
  webhook_loss_flush(t, false);
  /* Nothing is held after a flush that was due; if it was not (a timer
   * never fires early, but the clock is the loop's), wait again. */
  webhook_loss_arm(t);
}

/* Notification `id` lost (dropped or given up): logged with the reason
 * (fmt) unless a loss line was written less than loss_log_ms ago; then
 * held, and said in the summary line the loss timer writes, or in the
 * recovery line (webhook_answered), whichever comes first. */
static void webhook_loss(webhook_target_t *t, losslog_kind_t kind, const char *id, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
static void webhook_loss(webhook_target_t *t, losslog_kind_t kind, const char *id, const char *fmt,
                         ...) {
  losslog_span_t unsaid;
  if (!losslog_lost(&t->losses, kind, id, uv_now(t->w->loop), &unsaid)) {
    webhook_loss_arm(t);
    return;
  }
  char what[512], more[WEBHOOK_LOSSES_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (losslog_count(&unsaid))
    log_warn(LOG_NOTIFY, t->label, "%s; also lost since the last such line: %s; " WEBHOOK_LOST_HINT,
             what, losslog_format(&unsaid, more, sizeof more));
  else
    log_warn(LOG_NOTIFY, t->label, "%s; " WEBHOOK_LOST_HINT, what);
}

/* Appends n; when queue_max wait already, the oldest waiting one (not the
 * one on the wire: the receiver may be reading it) is dropped. */
static void webhook_push(webhook_target_t *t, webhook_note_t *n) {
  size_t on_wire = t->state == WEBHOOK_T_SENDING ? 1 : 0;
  if (t->count - on_wire >= t->w->queue_max) {
    size_t victim = (t->head + on_wire) % t->cap;
    webhook_note_t *old = t->ring[victim];
    if (on_wire) t->ring[victim] = t->ring[t->head]; /* the one on the wire moves up */
    t->ring[t->head] = NULL;
    t->head = (t->head + 1) % t->cap;
    t->count--;
    t->dropped++;
    webhook_loss(t, LOSSLOG_DROPPED, old->id,
                 "queue full (%zu waiting): dropped the oldest notification, id %s",
                 t->w->queue_max, old->id);
    webhook_note_unref(old);
  }
  t->ring[(t->head + t->count) % t->cap] = n;
  t->count++;
  n->refs++;
}

/* Gives up the notifications at the head that are older than max_age_ms
 * (the rest are younger: the queue is in posting order). Not the one on
 * the wire. */
static void webhook_expire(webhook_target_t *t) {
  uint64_t now = uv_now(t->w->loop);
  webhook_note_t *n;
  while (t->state != WEBHOOK_T_SENDING && (n = webhook_head(t)) &&
         now - n->posted_ms >= t->w->max_age_ms) {
    t->given_up++;
    char age[32];
    webhook_duration(t->w->max_age_ms, age, sizeof age);
    webhook_loss(t, LOSSLOG_GIVEN_UP, n->id, "gave up notification id %s: not delivered within %s",
                 n->id, age);
    webhook_pop(t);
  }
}

/* ---- one attempt ---------------------------------------------------------- */

/* Keeps the start of the answer for the log; reading stops (the transfer
 * ends with CURLE_WRITE_ERROR, see webhook_finished) past
 * WEBHOOK_REPLY_MAX. */
static size_t webhook_on_reply(char *p, size_t size, size_t nmemb, void *arg) {
  webhook_target_t *t = arg;
  size_t len = size * nmemb;
  size_t room = WEBHOOK_REPLY_KEEP - t->reply_len;
  size_t take = len < room ? len : room;
  memcpy(t->reply + t->reply_len, p, take);
  t->reply_len += take;
  t->reply[t->reply_len] = '\0';
  t->reply_total += len;
  if (t->reply_total > WEBHOOK_REPLY_MAX) {
    t->reply_cut = true;
    return 0;
  }
  return len;
}

static void webhook_drop_easy(webhook_target_t *t) {
  if (t->easy) {
    curl_multi_remove_handle(t->w->multi, t->easy);
    curl_easy_cleanup(t->easy);
  }
  curl_slist_free_all(t->headers);
  t->easy = NULL;
  t->headers = NULL;
}

/* Starts sending the head. 0, or NIRC_ENOMEM with nothing left behind. */
static int webhook_start(webhook_target_t *t, webhook_note_t *n) {
  webhook_t *w = t->w;
  char idh[sizeof "X-NIRC-Event-Id: " + WEBHOOK_ID_MAX];
  snprintf(idh, sizeof idh, "X-NIRC-Event-Id: %s", n->id);
  struct curl_slist *h = NULL, *tmp;
  /* No "Expect: 100-continue" (libcurl adds it to bodies over 1 KiB): many
   * receivers do not answer it, and each attempt would wait a second. */
  static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    if (!(tmp = curl_slist_append(h, fixed[i]))) goto nomem;
    h = tmp;
  }
  if (!(tmp = curl_slist_append(h, idh))) goto nomem;
  h = tmp;
  CURL *e = curl_easy_init();
  if (!e) goto nomem;
  t->headers = h;
  t->easy = e;
  t->errbuf[0] = '\0';
  t->reply[0] = '\0';
  t->reply_len = t->reply_total = 0;
  t->reply_cut = false;
  CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
  if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
  SET(CURLOPT_URL, t->url);
  /* http and https only, also after a redirect (which is not followed
   * anyway: a 3xx is a failed attempt, logged). */
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_POST, 1L);
  SET(CURLOPT_POSTFIELDS, (const char *)n->data);
  SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n->len);
  SET(CURLOPT_HTTPHEADER, h);
  SET(CURLOPT_USERAGENT, "nircd");
  SET(CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
  SET(CURLOPT_CONNECTTIMEOUT_MS, (long)w->timeout_ms);
  SET(CURLOPT_NOSIGNAL, 1L);
  /* Aborting a transfer while its name lookup runs would otherwise join
   * the resolver thread, blocking the loop until getaddrinfo returns; with
   * this the thread is left to finish and clean up on its own. */
  SET(CURLOPT_QUICK_EXIT, 1L);
  SET(CURLOPT_WRITEFUNCTION, webhook_on_reply);
  SET(CURLOPT_WRITEDATA, t);
  SET(CURLOPT_ERRORBUFFER, t->errbuf);
  SET(CURLOPT_PRIVATE, t);
  if (w->ca_file) SET(CURLOPT_CAINFO, w->ca_file);
#undef SET
  if (rc != CURLE_OK || curl_multi_add_handle(w->multi, e) != CURLM_OK) {
    curl_easy_cleanup(e);
    t->easy = NULL;
    goto nomem;
  }
  webhook_set_state(t, WEBHOOK_T_SENDING);
  log_debug(LOG_NOTIFY, t->label, "sending id %s (%zu bytes, %zu queued)", n->id, n->len, t->count);
  return 0;
nomem:
  curl_slist_free_all(h);
  t->headers = NULL;
  return NIRC_ENOMEM;
}

/* Waits before the next attempt: the backoff's draw, but no longer than
 * the head's remaining life, so a notification is given up on time. */
static void webhook_backoff(webhook_target_t *t) {
  webhook_t *w = t->w;
  uint64_t delay = backoff_next(&t->backoff);
  webhook_note_t *n = webhook_head(t);
  if (n) {
    uint64_t age = uv_now(w->loop) - n->posted_ms;
    uint64_t left = age >= w->max_age_ms ? 0 : w->max_age_ms - age;
    if (delay > left) delay = left;
  }
  webhook_set_state(t, WEBHOOK_T_BACKOFF);
  uv_timer_start(&t->retry, webhook_on_retry, delay, 0);
}

/* The receiver refuses this notification's content: see webhook.h. */
static bool webhook_refused(long status) {
  return status == 400 || status == 413 || status == 415 || status == 422;
}

/* What the receiver answered, for a log line: an escaped excerpt. */
static void webhook_excerpt(const webhook_target_t *t, char *out, size_t outlen) {
  char esc[WEBHOOK_REPLY_KEEP * 4 + 8];
  safetext_escape(t->reply, esc, sizeof esc);
  if (!*esc)
    snprintf(out, outlen, "no body");
  else
    snprintf(out, outlen, "answer \"%s\"%s", esc, t->reply_total > t->reply_len ? " (cut)" : "");
}

/* The receiver answered (2xx, or a refusal of content). After failing, a
 * recovery line says how long and what was lost meanwhile, so that the
 * losses held back to spare the log are all said by then. */
static void webhook_answered(webhook_target_t *t) {
  bool recovering = t->failed_run > 0;
  losslog_span_t run, unsaid;
  char what[WEBHOOK_LOSSES_MAX];
  losslog_answered(&t->losses, recovering, uv_now(t->w->loop), &run, &unsaid);
  if (recovering && losslog_count(&unsaid)) webhook_loss_summary(t, &unsaid);
  if (recovering && losslog_count(&run))
    log_warn(LOG_NOTIFY, t->label,
             "answering again after %" PRIu32
             " failed attempt%s; lost meanwhile: %s; " WEBHOOK_LOST_HINT,
             t->failed_run, t->failed_run == 1 ? "" : "s", losslog_format(&run, what, sizeof what));
  else if (recovering)
    log_info(LOG_NOTIFY, t->label, "answering again after %" PRIu32 " failed attempt%s",
             t->failed_run, t->failed_run == 1 ? "" : "s");
  t->failed_run = 0;
  backoff_reset(&t->backoff);
}

/* The attempt on the wire ended with rc and HTTP status (0: none). */
static void webhook_finished(webhook_target_t *t, CURLcode rc, long status) {
  char why[CURL_ERROR_SIZE + WEBHOOK_REPLY_KEEP * 4 + 64];
  webhook_note_t *n = webhook_head(t);
  webhook_drop_easy(t);
  webhook_set_state(t, WEBHOOK_T_IDLE);
  /* We stopped reading a long answer ourselves: its status decides. */
  if (rc == CURLE_WRITE_ERROR && t->reply_cut) rc = CURLE_OK;
  if (rc == CURLE_OK && status >= 200 && status <= 299) {
    t->delivered++;
    log_debug(LOG_NOTIFY, t->label, "delivered id %s: HTTP %ld", n->id, status);
    webhook_answered(t);
    webhook_pop(t);
    webhook_pump(t);
    return;
  }
  t->attempts_failed++;
  if (rc != CURLE_OK) {
    snprintf(why, sizeof why, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
  } else {
    char ex[WEBHOOK_REPLY_KEEP * 4 + 32];
    webhook_excerpt(t, ex, sizeof ex);
    snprintf(why, sizeof why, "HTTP %ld, %s", status, ex);
  }
  if (rc == CURLE_OK && webhook_refused(status)) {
    /* The receiver is there and answers: not a failing URL. */
    webhook_answered(t);
    t->given_up++;
    webhook_loss(t, LOSSLOG_GIVEN_UP, n->id,
                 "receiver refused notification id %s (%s): given up, not retried", n->id, why);
    webhook_pop(t);
    webhook_pump(t);
    return;
  }
  if (t->failed_run++ == 0)
    log_warn(LOG_NOTIFY, t->label, "failing: %s; retrying, %zu notification%s queued", why,
             t->count, t->count == 1 ? "" : "s");
  else
    log_debug(LOG_NOTIFY, t->label, "attempt %" PRIu32 " failed: %s", t->failed_run, why);
  webhook_backoff(t);
}

/* Sends the next notification if the target is free to. */
static void webhook_pump(webhook_target_t *t) {
  if (t->w->state != WEBHOOK_OPEN || t->state != WEBHOOK_T_IDLE) return;
  webhook_expire(t);
  webhook_note_t *n = webhook_head(t);
  if (!n) return;
  if (webhook_start(t, n) != 0) {
    /* Out of memory, most likely: perhaps not in a moment. Counted as a
     * failed attempt so it shows. */
    t->attempts_failed++;
    if (t->failed_run++ == 0)
      log_warn(LOG_NOTIFY, t->label, "failing: libcurl could not start a transfer; retrying");
    webhook_backoff(t);
  }
}

static void webhook_on_retry(uv_timer_t *h) {
  webhook_target_t *t = h->data;
  if (t->w->state != WEBHOOK_OPEN) return;
  webhook_set_state(t, WEBHOOK_T_IDLE);
  webhook_pump(t);
}

/* ---- libcurl on the loop ------------------------------------------------ */

/* Reads every transfer libcurl finished. */
static void webhook_check_done(webhook_t *w) {
  CURLMsg *m;
  int left;
  while (w->state == WEBHOOK_OPEN && (m = curl_multi_info_read(w->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    /* m is invalid once the handle is removed: copy what we need. */
    CURL *e = m->easy_handle;
    CURLcode rc = m->data.result;
    char *priv = NULL;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    webhook_target_t *t = (webhook_target_t *)priv;
    if (t && t->easy == e) webhook_finished(t, rc, status);
  }
}

static void webhook_handle_gone(webhook_t *w);

static void webhook_sock_closed(uv_handle_t *h) {
  webhook_sock_t *s = h->data;
  webhook_t *w = s->w;
  free(s);
  webhook_handle_gone(w);
}

static void webhook_sock_close(webhook_sock_t *s) {
  webhook_t *w = s->w;
  if (s->prev)
    s->prev->next = s->next;
  else
    w->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  /* Stopped now, before libcurl closes the descriptor and may open
   * another with the same number. */
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, webhook_sock_closed);
}

static void webhook_on_poll(uv_poll_t *p, int status, int events) {
  webhook_sock_t *s = p->data;
  webhook_t *w = s->w;
  if (w->state != WEBHOOK_OPEN) return;
  int flags = 0;
  if (status < 0) flags |= CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  /* s may be closed inside this call (CURL_POLL_REMOVE): not used after. */
  curl_multi_socket_action(w->multi, s->fd, flags, &running);
  webhook_check_done(w);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what libcurl says, or stop. */
static int webhook_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp) {
  webhook_t *w = userp;
  webhook_sock_t *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(w->multi, fd, NULL);
      webhook_sock_close(s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(w->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->w = w;
    s->fd = fd;
    s->poll.data = s;
    s->next = w->socks;
    if (w->socks) w->socks->prev = s;
    w->socks = s;
    w->handles++;
    curl_multi_assign(w->multi, fd, s);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  return uv_poll_start(&s->poll, events, webhook_on_poll) == 0 ? 0 : -1;
}

static void webhook_on_timeout(uv_timer_t *h) {
  webhook_t *w = h->data;
  if (w->state != WEBHOOK_OPEN) return;
  int running;
  curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  webhook_check_done(w);
}

/* CURLMOPT_TIMERFUNCTION: call libcurl back in ms (-1: never). */
static int webhook_on_curl_timer(CURLM *multi, long ms, void *userp) {
  webhook_t *w = userp;
  if (w->state != WEBHOOK_OPEN) return 0;
  if (ms < 0) {
    uv_timer_stop(&w->timer);
    return 0;
  }
  /* 0 means "now", but libcurl must not be called from inside this
   * callback; 1 ms also keeps a timer re-armed with 0 from running again
   * in the same pass over the loop's timers. */
  return uv_timer_start(&w->timer, webhook_on_timeout, ms ? (uint64_t)ms : 1, 0) == 0 ? 0 : -1;
}

/* ---- life cycle ------------------------------------------------------------ */

static void webhook_free(webhook_t *w) {
  for (size_t i = 0; i < w->n; i++) {
    webhook_target_t *t = &w->t[i];
    while (t->count)
      webhook_pop(t);
    free(t->ring);
    free(t->url);
  }
  free(w->t);
  free(w->ca_file);
  if (w->multi) curl_multi_cleanup(w->multi);
  free(w);
  curl_global_cleanup();
}

/* One of w's handles finished closing. */
static void webhook_handle_gone(webhook_t *w) {
  if (--w->handles > 0 || w->state != WEBHOOK_CLOSING) return;
  /* Last handle gone: nothing can call back into w any more. */
  void (*done)(void *) = w->done;
  void *arg = w->done_arg;
  webhook_free(w);
  if (done) done(arg);
}

static void webhook_timer_closed(uv_handle_t *h) {
  webhook_handle_gone(h->data);
}

static void webhook_target_timer_closed(uv_handle_t *h) {
  webhook_target_t *t = h->data;
  webhook_handle_gone(t->w);
}

int webhook_new(uv_loop_t *loop, const webhook_opts_t *o, webhook_t **out, char *err,
                size_t errlen) {
  *out = NULL;
  if (o->n_urls > WEBHOOK_URLS_MAX) {
    snprintf(err, errlen, "%zu webhook URLs: at most %d", o->n_urls, WEBHOOK_URLS_MAX);
    return NIRC_EINVAL;
  }
  if (o->queue_max > WEBHOOK_QUEUE_MAX) {
    snprintf(err, errlen, "webhook queue of %zu: at most %d", o->queue_max, WEBHOOK_QUEUE_MAX);
    return NIRC_EINVAL;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, errlen, "libcurl could not be initialised");
    return NIRC_ENOMEM;
  }
  /* A CA file that cannot be read would fail every https attempt: say so
   * now, at start-up. */
  if (o->ca_file && *o->ca_file && access(o->ca_file, R_OK) != 0) {
    snprintf(err, errlen, "webhook CA file '%s' cannot be read: %s", o->ca_file, strerror(errno));
    curl_global_cleanup();
    return NIRC_EINVAL;
  }
  /* Every URL is checked before anything is built: nothing to undo. */
  for (size_t i = 0; i < o->n_urls; i++) {
    int rc = webhook_check_url(o->urls[i], err, errlen);
    if (rc) {
      curl_global_cleanup();
      return rc;
    }
  }
  webhook_t *w = calloc(1, sizeof *w);
  if (!w) goto nomem;
  w->loop = loop;
  w->timeout_ms = o->timeout_ms ? o->timeout_ms : WEBHOOK_DEF_TIMEOUT_MS;
  w->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : WEBHOOK_DEF_BACKOFF_MAX_MS;
  w->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : WEBHOOK_DEF_BACKOFF_MIN_MS;
  if (w->backoff_min_ms > w->backoff_max_ms) w->backoff_min_ms = w->backoff_max_ms;
  w->max_age_ms = o->max_age_ms ? o->max_age_ms : WEBHOOK_DEF_MAX_AGE_MS;
  w->queue_max = o->queue_max ? o->queue_max : WEBHOOK_DEF_QUEUE;
  w->loss_log_ms = o->loss_log_ms ? o->loss_log_ms : WEBHOOK_DEF_LOSS_LOG_MS;
  if (o->ca_file && *o->ca_file && !(w->ca_file = strdup(o->ca_file))) goto nomem;
  if (o->n_urls && !(w->t = calloc(o->n_urls, sizeof *w->t))) goto nomem;
  for (size_t i = 0; i < o->n_urls; i++) {
    webhook_target_t *t = &w->t[i];
    w->n++; /* from here webhook_free frees it */
    t->w = w;
    t->index = i;
    t->cap = w->queue_max + 1;
    if (!(t->url = strdup(o->urls[i])) || !(t->ring = calloc(t->cap, sizeof *t->ring))) goto nomem;
    webhook_shown(t->url, t->shown, sizeof t->shown);
    snprintf(t->label, sizeof t->label, "webhook=%zu url=%s", i, t->shown);
    backoff_init(&t->backoff, w->backoff_min_ms, w->backoff_max_ms, 0);
    losslog_init(&t->losses, w->loss_log_ms);
  }
  if (!(w->multi = curl_multi_init())) goto nomem;
  CURLMcode mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, webhook_on_socket);
  if (mc == CURLM_OK) mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
  if (mc == CURLM_OK)
    mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, webhook_on_curl_timer);
  if (mc == CURLM_OK) mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
  if (mc != CURLM_OK) goto nomem;
  /* uv_timer_init cannot fail: from here nothing does. */
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->handles++;
  for (size_t i = 0; i < w->n; i++) {
    uv_timer_init(loop, &w->t[i].retry);
    w->t[i].retry.data = &w->t[i];
    uv_timer_init(loop, &w->t[i].loss_timer);
    w->t[i].loss_timer.data = &w->t[i];
    w->handles += 2;
  }
  char tmo[32], gap[32], age[32];
  webhook_duration(w->timeout_ms, tmo, sizeof tmo);
  webhook_duration(w->backoff_max_ms, gap, sizeof gap);
  webhook_duration(w->max_age_ms, age, sizeof age);
  for (size_t i = 0; i < w->n; i++)
    log_info(LOG_NOTIFY, w->t[i].label,
             "notifying this URL: timeout %s, retries at most %s apart, given up after %s, "
             "queue %zu",
             tmo, gap, age, w->queue_max);
  *out = w;
  return 0;
nomem:
  snprintf(err, errlen, "out of memory creating the webhook notifier");
  if (w)
    webhook_free(w); /* calls curl_global_cleanup */
  else
    curl_global_cleanup();
  return NIRC_ENOMEM;
}

int webhook_post(webhook_t *w, const char *id, const char *json) {
  if (w->state != WEBHOOK_OPEN) return NIRC_ECLOSED;
  size_t idlen = id ? strlen(id) : 0;
  if (idlen == 0 || idlen > WEBHOOK_ID_MAX || !json) return NIRC_EINVAL;
  for (size_t i = 0; i < idlen; i++) /* it becomes a header line */
    if (id[i] <= ' ' || id[i] > '~') return NIRC_EINVAL;
  size_t len = strlen(json);
  if (len > WEBHOOK_BODY_MAX) return NIRC_ERANGE;
  json_error_t jerr;
  json_t *parsed = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
  if (!parsed) return NIRC_EINVAL;
  json_decref(parsed);
  if (w->n == 0) return 0;
  webhook_note_t *n = malloc(sizeof *n + len + 1 + idlen + 1);
  if (!n) return NIRC_ENOMEM;
  n->refs = 1; /* ours, until every queue has taken it */
  n->posted_ms = uv_now(w->loop);
  n->len = len;
  memcpy(n->data, json, len + 1);
  memcpy(n->data + len + 1, id, idlen + 1);
  n->id = n->data + len + 1;
  for (size_t i = 0; i < w->n; i++)
    webhook_push(&w->t[i], n);
  webhook_note_unref(n);
  for (size_t i = 0; i < w->n; i++)
    webhook_pump(&w->t[i]);
  return 0;
}

size_t webhook_url_count(const webhook_t *w) {
  return w->n;
}

const char *webhook_url(const webhook_t *w, size_t i) {
  return i < w->n ? w->t[i].shown : NULL;
}

void webhook_stats(const webhook_t *w, size_t i, webhook_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (i >= w->n) return;
  const webhook_target_t *t = &w->t[i];
  out->delivered = t->delivered;
  out->attempts_failed = t->attempts_failed;
  out->given_up = t->given_up;
  out->dropped = t->dropped;
  out->pending = t->count;
  out->failing = t->failed_run > 0;
}

void webhook_stats_total(const webhook_t *w, webhook_stats_t *out) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < w->n; i++) {
    webhook_stats_t s;
    webhook_stats(w, i, &s);
    out->delivered += s.delivered;
    out->attempts_failed += s.attempts_failed;
    out->given_up += s.given_up;
    out->dropped += s.dropped;
    out->pending += s.pending;
    out->failing += s.failing;
  }
}

void webhook_close(webhook_t *w, void (*done)(void *arg), void *arg) {
  if (w->state != WEBHOOK_OPEN) return;
  w->state = WEBHOOK_CLOSING;
  w->done = done;
  w->done_arg = arg;
  for (size_t i = 0; i < w->n; i++) {
    webhook_target_t *t = &w->t[i];
    bool on_wire = t->easy != NULL;
    webhook_loss_flush(t, true); /* held losses are said before the last line */
    webhook_drop_easy(t);        /* aborts the transfer on the wire */
    if (t->count) {
      log_warn(LOG_NOTIFY, t->label, "stopping: %zu undelivered notification%s dropped%s", t->count,
               t->count == 1 ? "" : "s", on_wire ? " (one was being sent)" : "");
      t->dropped += t->count;
      while (t->count)
        webhook_pop(t);
    }
    uv_timer_stop(&t->retry);
    uv_timer_stop(&t->loss_timer);
    webhook_set_state(t, WEBHOOK_T_CLOSED);
    uv_close((uv_handle_t *)&t->retry, webhook_target_timer_closed);
    uv_close((uv_handle_t *)&t->loss_timer, webhook_target_timer_closed);
  }
  /* Our polls close while their descriptors are still open; libcurl is
   * then told nothing more and closes its connections. */
  while (w->socks)
    webhook_sock_close(w->socks);
  curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, NULL);
  curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, NULL);
  curl_multi_cleanup(w->multi);
  w->multi = NULL;
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, webhook_timer_closed);
}
