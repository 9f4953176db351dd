/* Unit tests of the webhook notifier (controller/notify/webhook.c) on a
 * real libuv loop against real HTTP receivers on 127.0.0.1:
 *  - a libmicrohttpd daemon in this process (its own thread), answering
 *    from a script of statuses and keeping, under a mutex, a log of what
 *    it received;
 *  - a "hung" receiver: a socket that listens but never accepts, so a
 *    connection is made and the request sent, and no answer ever comes;
 *  - a "refused" port: a bound socket that does not listen.
 * The loop is driven with UV_RUN_ONCE until a condition holds, bounded by
 * a deadline timer (tests/unit/support/loop.h); nothing sleeps.
 *
 * Checked: a notification arrives as a POST with its body byte for byte
 * and the Content-Type, User-Agent and X-NIRC-Event-Id headers; a URL's
 * order holds across retries (500, 500, 500, then each id once, in
 * order) and its failure is logged once and its recovery once, escaped,
 * with no credential or query in the log; 400 gives a notification up at
 * once and the next is sent; a hung URL holds up no other; a hung
 * receiver is a timeout while a loop timer keeps firing; a full queue
 * drops its oldest waiting notification (not the one on the wire); a
 * notification older than max_age is given up; every loss is logged: the
 * first with its reason, the next ones within the window in one summary
 * line when it ends, in the recovery line, or at close, each naming the
 * counts and the first and last ids (losslog's rules also step by step,
 * without a loop, over 20,000 losses); webhook_new refuses URLs
 * that are not http(s) naming them (credentials hidden); webhook_post
 * refuses bad ids and non-JSON; webhook_close with a transfer on the wire
 * counts the dropped ones, calls done once and leaves no handle open
 * (teardown closes the loop; the ASan build checks for leaks). nircd's
 * [notify] section loads with its defaults and bounds, and its values make
 * a notifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "conf.h"
#include "err.h"
#include "losslog.h"
#include "support/loop.h"
#include "webhook.h"

/* ---- the receiver ---------------------------------------------------------- */

#define RX_MAX    64
#define RX_BODY   2048
#define RX_SCRIPT 8
#define RX_ANSWER "\x1b[31mboom\nforged line"

typedef struct {
  char method[8], id[WEBHOOK_ID_MAX + 1], ctype[64], agent[64], expect[32];
  char body[RX_BODY];
  size_t body_len;
  int status; /* what it was answered */
} rx_req_t;

typedef struct {
  pthread_mutex_t mu;
  struct MHD_Daemon *d;
  uint16_t port;
  int script[RX_SCRIPT]; /* statuses of the first requests; then 200 */
  int n_script;
  size_t big; /* > 0: every answer is a body of this many bytes */
  bool down;  /* while set, every answer is 500 (the script aside) */
  int n;      /* requests received */
  rx_req_t req[RX_MAX];
} rx_t;

typedef struct {
  char buf[RX_BODY];
  size_t len;
} rx_conn_t;

static void rx_header(struct MHD_Connection *c, const char *name, char *out, size_t len) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  snprintf(out, len, "%s", v ? v : "");
}

static enum MHD_Result rx_answer(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
  rx_t *rx = cls;
  rx_conn_t *cc = *con_cls;
  if (!cc) {
    if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
    *con_cls = cc;
    return MHD_YES;
  }
  if (*upload_size) {
    size_t take = *upload_size < sizeof cc->buf - cc->len ? *upload_size : sizeof cc->buf - cc->len;
    memcpy(cc->buf + cc->len, upload, take);
    cc->len += take;
    *upload_size = 0;
    return MHD_YES;
  }
  pthread_mutex_lock(&rx->mu);
  int k = rx->n++;
  int status = rx->down ? 500 : k < rx->n_script ? rx->script[k] : 200;
  if (k < RX_MAX) {
    rx_req_t *r = &rx->req[k];
    snprintf(r->method, sizeof r->method, "%s", method);
    rx_header(c, "X-NIRC-Event-Id", r->id, sizeof r->id);
    rx_header(c, "Content-Type", r->ctype, sizeof r->ctype);
    rx_header(c, "User-Agent", r->agent, sizeof r->agent);
    rx_header(c, "Expect", r->expect, sizeof r->expect);
    memcpy(r->body, cc->buf, cc->len);
    r->body_len = cc->len;
    r->status = status;
  }
  pthread_mutex_unlock(&rx->mu);
  /* A failure's answer carries an escape sequence and a newline: the log
   * must show them escaped. */
  const char *text = status == 200 ? "ok" : RX_ANSWER;
  struct MHD_Response *resp;
  if (rx->big) {
    char *body = malloc(rx->big);
    if (!body) return MHD_NO;
    memset(body, 'x', rx->big);
    resp = MHD_create_response_from_buffer(rx->big, body, MHD_RESPMEM_MUST_FREE);
  } else {
    resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  }
  if (!resp) return MHD_NO;
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void rx_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  free(*con_cls);
  *con_cls = NULL;
}

/* Starts the receiver on 127.0.0.1, a free port; with a key and a
 * certificate (PEM) it speaks https. */
static void rx_start(rx_t *rx, const char *key_pem, const char *cert_pem) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (key_pem)
    rx->d = MHD_start_daemon(
        flags | MHD_USE_TLS, 0, NULL, NULL, rx_answer, rx, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, rx_completed, rx,
        MHD_OPTION_HTTPS_MEM_KEY, key_pem, MHD_OPTION_HTTPS_MEM_CERT, cert_pem, MHD_OPTION_END);
  else
    rx->d = MHD_start_daemon(flags, 0, NULL, NULL, rx_answer, rx, MHD_OPTION_SOCK_ADDR,
                             (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, rx_completed, rx,
                             MHD_OPTION_END);
  assert_non_null(rx->d);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(rx->d, MHD_DAEMON_INFO_BIND_PORT);
  assert_non_null(info);
  rx->port = info->port;
  assert_int_not_equal(rx->port, 0);
}

static int rx_count(rx_t *rx) {
  pthread_mutex_lock(&rx->mu);
  int n = rx->n;
  pthread_mutex_unlock(&rx->mu);
  return n;
}

/* A copy of request k, taken under the lock. */
static rx_req_t rx_get(rx_t *rx, int k) {
  pthread_mutex_lock(&rx->mu);
  rx_req_t r = rx->req[k];
  pthread_mutex_unlock(&rx->mu);
  return r;
}

/* ---- an https receiver's certificates ------------------------------------ */

/* A certificate for `key`: a CA's (self-signed) or, signed by the CA, a
 * server's for 127.0.0.1. */
static X509 *tls_cert(EVP_PKEY *key, EVP_PKEY *ca_key, X509 *ca, const char *cn) {
  X509 *x = X509_new();
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 2 : 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);
  static const struct {
    int nid;
    const char *ca, *server;
  } exts[] = {
      {NID_basic_constraints, "critical,CA:TRUE", "CA:FALSE"},
      {NID_key_usage, "critical,keyCertSign,cRLSign", "critical,digitalSignature"},
      {NID_subject_alt_name, NULL, "IP:127.0.0.1"},
  };
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    const char *v = ca ? exts[i].server : exts[i].ca;
    if (!v) continue;
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, v);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
  assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
  return x;
}

/* PEM text of a certificate or a private key (caller frees). */
static char *tls_pem(X509 *cert, EVP_PKEY *key) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_non_null(b);
  if (cert)
    assert_true(PEM_write_bio_X509(b, cert));
  else
    assert_true(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL));
  char *data;
  long len = BIO_get_mem_data(b, &data);
  char *out = strndup(data, (size_t)len);
  assert_non_null(out);
  BIO_free(b);
  return out;
}

/* ---- sockets that do not answer --------------------------------------- */

/* A socket on 127.0.0.1 with a free port; with `backlog` > 0 it listens
 * (connections complete in the kernel and are never accepted: a receiver
 * that hangs), else it only holds the port (a connection is refused). */
static int hold_port(int backlog, uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  if (backlog > 0) assert_int_equal(listen(fd, backlog), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

/* ---- fixture -------------------------------------------------------------- */

typedef struct {
  uv_loop_t loop;
  tloop_t lp;
  uv_timer_t ticker; /* a probe that the loop is not stalled */
  unsigned ticks;
  webhook_t *w;
  int done; /* webhook_close's done calls */
  rx_t rx;
  int hung_fd, refused_fd;
  uint16_t hung_port, refused_port;
  char url_rx[128], url_hung[128], url_refused[128];
  int saved_stderr; /* while a test captures the log */
  char logpath[64];
  rx_t *tls;        /* an https receiver, for the test that starts one */
  char ca_path[64]; /* its CA's certificate */
} fx_t;

static void fx_on_tick(uv_timer_t *t) {
  fx_t *f = t->data;
  f->ticks++;
}

static void fx_on_done(void *arg) {
  fx_t *f = arg;
  f->done++;
}

static int fx_setup(void **state) {
  /* The receivers are local: no proxy from the environment. */
  static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                        "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
  for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
    unsetenv(proxies[i]);
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  tloop_init(&f->lp, &f->loop);
  uv_timer_init(&f->loop, &f->ticker);
  f->ticker.data = f;
  pthread_mutex_init(&f->rx.mu, NULL);
  rx_start(&f->rx, NULL, NULL);
  f->hung_fd = hold_port(16, &f->hung_port);
  f->refused_fd = hold_port(0, &f->refused_port);
  snprintf(f->url_rx, sizeof f->url_rx, "http://127.0.0.1:%u/hook", f->rx.port);
  snprintf(f->url_hung, sizeof f->url_hung, "http://127.0.0.1:%u/hook", f->hung_port);
  snprintf(f->url_refused, sizeof f->url_refused, "http://127.0.0.1:%u/hook", f->refused_port);
  f->saved_stderr = -1;
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  if (f->w && !f->done) {
    webhook_close(f->w, fx_on_done, f);
    assert_true(tloop_wait(&f->lp, &f->done, 1, 2000));
  }
  uv_timer_stop(&f->ticker);
  uv_close((uv_handle_t *)&f->ticker, NULL);
  assert_true(tloop_drain(&f->lp, 2000));
  assert_int_equal(uv_loop_close(&f->loop), 0);
  MHD_stop_daemon(f->rx.d);
  pthread_mutex_destroy(&f->rx.mu);
  if (f->tls) {
    MHD_stop_daemon(f->tls->d);
    pthread_mutex_destroy(&f->tls->mu);
    free(f->tls);
    unlink(f->ca_path);
  }
  close(f->hung_fd);
  close(f->refused_fd);
  free(f);
  return 0;
}

static void fx_new(fx_t *f, const char *const *urls, size_t n, webhook_opts_t o) {
  o.urls = urls;
  o.n_urls = n;
  char err[512] = "";
  int rc = webhook_new(&f->loop, &o, &f->w, err, sizeof err);
  if (rc) fail_msg("webhook_new: %s", err);
  assert_non_null(f->w);
}

/* Closes the notifier and waits for done: exactly once. */
static void fx_close(fx_t *f) {
  webhook_close(f->w, fx_on_done, f);
  webhook_close(f->w, fx_on_done, f); /* a second call does nothing */
  assert_true(tloop_wait(&f->lp, &f->done, 1, 2000));
  assert_int_equal(f->done, 1);
}

typedef enum { W_DELIVERED, W_FAILED, W_GIVEN_UP } want_field_t;

typedef struct {
  size_t url; /* SIZE_MAX: the total */
  want_field_t field;
  uint64_t min;
} want_t;

static bool fx_has(void *ctx, const void *arg) {
  fx_t *f = ctx;
  const want_t *w = arg;
  webhook_stats_t s;
  if (w->url == SIZE_MAX)
    webhook_stats_total(f->w, &s);
  else
    webhook_stats(f->w, w->url, &s);
  uint64_t v = w->field == W_DELIVERED ? s.delivered
               : w->field == W_FAILED  ? s.attempts_failed
                                       : s.given_up;
  return v >= w->min;
}

static bool fx_wait(fx_t *f, size_t url, want_field_t field, uint64_t min, uint64_t ms) {
  want_t w = {url, field, min};
  return tloop_wait_for(&f->lp, fx_has, f, &w, ms);
}

static webhook_stats_t fx_stats(fx_t *f, size_t url) {
  webhook_stats_t s;
  webhook_stats(f->w, url, &s);
  return s;
}

static void fx_post(fx_t *f, const char *id, const char *json) {
  assert_int_equal(webhook_post(f->w, id, json), 0);
}

static uint64_t fx_now(fx_t *f) {
  uv_update_time(&f->loop);
  return uv_now(&f->loop);
}

/* The log (stderr) goes to a file while a test looks at it. */
static void fx_capture_log(fx_t *f) {
  snprintf(f->logpath, sizeof f->logpath, "/tmp/nirc-webhook-log-XXXXXX");
  int fd = mkstemp(f->logpath);
  assert_true(fd >= 0);
  fflush(stderr);
  f->saved_stderr = dup(2);
  dup2(fd, 2);
  close(fd);
}

/* Restores stderr; returns what was logged (caller frees). */
static char *fx_release_log(fx_t *f) {
  fflush(stderr);
  dup2(f->saved_stderr, 2);
  close(f->saved_stderr);
  f->saved_stderr = -1;
  FILE *in = fopen(f->logpath, "r");
  assert_non_null(in);
  char *buf = calloc(1, 65536);
  assert_non_null(buf);
  size_t n = fread(buf, 1, 65535, in);
  buf[n] = '\0';
  fclose(in);
  unlink(f->logpath);
  fputs(buf, stderr); /* still shown in the test's output */
  return buf;
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

static void rx_set_down(rx_t *rx, bool down) {
  pthread_mutex_lock(&rx->mu);
  rx->down = down;
  pthread_mutex_unlock(&rx->mu);
}

/* tloop condition: the captured log holds the text arg. */
static bool fx_logged(void *ctx, const void *arg) {
  fx_t *f = ctx;
  FILE *in = fopen(f->logpath, "r");
  if (!in) return false;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, in);
  buf[n] = '\0';
  fclose(in);
  return strstr(buf, arg) != NULL;
}

/* ---- loss accounting (losslog, no loop) ------------------------------------ */

static losslog_span_t span_of(uint64_t given_up, uint64_t dropped, const char *first,
                              const char *last) {
  losslog_span_t s = {.given_up = given_up, .dropped = dropped};
  snprintf(s.first, sizeof s.first, "%s", first);
  snprintf(s.last, sizeof s.last, "%s", last);
  return s;
}

static void assert_span(const losslog_span_t *s, uint64_t given_up, uint64_t dropped,
                        const char *first, const char *last) {
  assert_int_equal(s->given_up, given_up);
  assert_int_equal(s->dropped, dropped);
  assert_string_equal(s->first, first);
  assert_string_equal(s->last, last);
}

static void test_losslog_first_said_rest_summed_when_due(void **state) {
  (void)state;
  losslog_t l;
  losslog_span_t s;
  uint64_t at;
  losslog_init(&l, 10000);
  assert_false(losslog_due(&l, &at));
  /* The first loss is said at once, alone. */
  assert_true(losslog_lost(&l, LOSSLOG_DROPPED, "a", 1000, &s));
  assert_int_equal(losslog_count(&s), 0);
  /* The next ones within the window are held until it ends. */
  assert_false(losslog_lost(&l, LOSSLOG_DROPPED, "b", 1100, &s));
  assert_false(losslog_lost(&l, LOSSLOG_GIVEN_UP, "c", 10999, &s));
  assert_true(losslog_due(&l, &at));
  assert_int_equal(at, 11000);
  assert_false(losslog_flush(&l, 10999, false, &s));
  assert_true(losslog_flush(&l, 11000, false, &s));
  assert_span(&s, 1, 1, "b", "c");
  assert_false(losslog_due(&l, &at));
  assert_false(losslog_flush(&l, 30000, true, &s)); /* nothing held: nothing to say */
  /* The summary line restarted the window. */
  assert_false(losslog_lost(&l, LOSSLOG_DROPPED, "d", 20999, &s));
  assert_true(losslog_due(&l, &at));
  assert_int_equal(at, 21000);
  /* Its timer is late and another loss comes: both on one line. */
  assert_true(losslog_lost(&l, LOSSLOG_GIVEN_UP, "e", 21500, &s));
  assert_span(&s, 0, 1, "d", "d");
  assert_false(losslog_due(&l, &at));
  /* Held at close: said with force, before its time. */
  assert_false(losslog_lost(&l, LOSSLOG_DROPPED, "f", 21600, &s));
  assert_false(losslog_flush(&l, 21700, false, &s));
  assert_true(losslog_flush(&l, 21700, true, &s));
  assert_span(&s, 0, 1, "f", "f");
}

static void test_losslog_recovery_says_the_run(void **state) {
  (void)state;
  losslog_t l;
  losslog_span_t s, run, unsaid;
  uint64_t at;
  losslog_init(&l, 10000);
  /* Answered without failing first: no line, and the run restarts. */
  assert_true(losslog_lost(&l, LOSSLOG_DROPPED, "old", 0, &s));
  losslog_answered(&l, false, 500, &run, &unsaid);
  assert_true(losslog_lost(&l, LOSSLOG_DROPPED, "r1", 1000, &s) == false);
  assert_false(losslog_lost(&l, LOSSLOG_GIVEN_UP, "r2", 2000, &s));
  /* The recovery line says the run (r1, r2: not "old", said before it). */
  losslog_answered(&l, true, 3000, &run, &unsaid);
  assert_span(&run, 1, 1, "r1", "r2");
  assert_int_equal(losslog_count(&unsaid), 0);
  assert_false(losslog_due(&l, &at)); /* it said what was held */
  /* A recovery with nothing lost says so. */
  losslog_answered(&l, true, 4000, &run, &unsaid);
  assert_int_equal(losslog_count(&run), 0);
  assert_int_equal(losslog_count(&unsaid), 0);
  /* Held losses from before the receiver last answered are not in the
   * run: they come as a line of their own. */
  assert_false(losslog_lost(&l, LOSSLOG_DROPPED, "h1", 5000, &s)); /* window of 3000 */
  losslog_answered(&l, false, 5500, &run, &unsaid);
  assert_false(losslog_lost(&l, LOSSLOG_GIVEN_UP, "h2", 6000, &s));
  losslog_answered(&l, true, 7000, &run, &unsaid);
  assert_span(&unsaid, 1, 1, "h1", "h2");
  assert_span(&run, 1, 0, "h2", "h2");
  assert_false(losslog_due(&l, &at));
}

/* Thousands of losses at random gaps, the summary timer sometimes late:
 * every loss is said exactly once (on its own line, beside another, or in
 * a summary), and loss lines are never closer than the window. */
static void test_losslog_every_loss_said_lines_spaced(void **state) {
  (void)state;
  const uint64_t window = 10000;
  losslog_t l;
  losslog_span_t s;
  losslog_init(&l, window);
  uint64_t now = 0, lost = 0, said = 0, lines = 0, last_line = 0, at;
  uint32_t rng = 12345;
  for (int i = 0; i < 20000; i++) {
    rng = rng * 1103515245u + 12345u;
    uint64_t gap = (rng >> 8) % 3000;
    /* The timer fires at its time, or (one time in four) not before the
     * next loss. */
    if (losslog_due(&l, &at) && at <= now + gap && ((rng >> 4) & 3) != 0) {
      assert_true(losslog_flush(&l, at, false, &s));
      assert_true(lines == 0 || at - last_line >= window);
      said += losslog_count(&s);
      lines++;
      last_line = at;
    }
    now += gap;
    char id[32];
    snprintf(id, sizeof id, "e%d", i);
    lost++;
    if (losslog_lost(&l, (rng >> 12) & 1 ? LOSSLOG_DROPPED : LOSSLOG_GIVEN_UP, id, now, &s)) {
      assert_true(lines == 0 || now - last_line >= window);
      said += 1 + losslog_count(&s);
      lines++;
      last_line = now;
    }
  }
  if (losslog_flush(&l, now, true, &s)) said += losslog_count(&s);
  assert_int_equal(said, lost);
  /* 20,000 losses ~1.5 s apart over ~8 h: a line per window, not per loss. */
  assert_true(lines < now / window + 2);
  assert_true(lines > now / window / 2);
}

static void test_losslog_format(void **state) {
  (void)state;
  char buf[512];
  losslog_span_t one = span_of(0, 1, "alarm-7-raised", "alarm-7-raised");
  assert_string_equal(losslog_format(&one, buf, sizeof buf),
                      "1 notification (0 given up, 1 dropped), id alarm-7-raised");
  losslog_span_t many = span_of(4, 26, "alarm-2-raised", "alarm-31-raised");
  assert_string_equal(losslog_format(&many, buf, sizeof buf),
                      "30 notifications (4 given up, 26 dropped), ids alarm-2-raised to "
                      "alarm-31-raised");
}

/* ---- tests ------------------------------------------------------------------ */

static void test_delivers_body_and_headers(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_rx};
  fx_new(f, urls, 1, (webhook_opts_t){.timeout_ms = 2000});
  assert_int_equal(webhook_url_count(f->w), 1);
  assert_string_equal(webhook_url(f->w, 0), f->url_rx);
  assert_null(webhook_url(f->w, 1));
  /* Over 1 KiB, where libcurl would add "Expect: 100-continue". */
  char json[1600];
  int len = snprintf(json, sizeof json, "{\"alarm\":\"hub down\",\"site\":\"湖北\",\"pad\":\"");
  while (len < (int)sizeof json - 3)
    json[len++] = 'x';
  snprintf(json + len, sizeof json - (size_t)len, "\"}");
  fx_post(f, "alarm-17-raised", json);
  assert_int_equal(fx_stats(f, 0).pending, 1);
  assert_true(fx_wait(f, 0, W_DELIVERED, 1, 3000));
  assert_int_equal(rx_count(&f->rx), 1);
  rx_req_t r = rx_get(&f->rx, 0);
  assert_string_equal(r.method, "POST");
  assert_string_equal(r.id, "alarm-17-raised");
  assert_string_equal(r.ctype, "application/json");
  assert_string_equal(r.agent, "nircd");
  assert_string_equal(r.expect, "");
  assert_int_equal(r.body_len, strlen(json));
  assert_memory_equal(r.body, json, r.body_len);
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.delivered, 1);
  assert_int_equal(s.attempts_failed, 0);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.failing, 0);
}

static void test_order_kept_across_retries(void **state) {
  fx_t *f = *state;
  f->rx.script[0] = f->rx.script[1] = f->rx.script[2] = 500;
  f->rx.n_script = 3;
  /* Credentials and a query: they must not reach the log. */
  char url[160];
  snprintf(url, sizeof url, "http://alice:s3cret@127.0.0.1:%u/hook?token=t0ps3cr3t", f->rx.port);
  const char *urls[] = {url};
  fx_capture_log(f);
  fx_new(f, urls, 1, (webhook_opts_t){.backoff_min_ms = 10, .backoff_max_ms = 40});
  static const char *const ids[] = {"e1", "e2", "e3", "e4", "e5"};
  for (size_t i = 0; i < 5; i++) {
    char json[64];
    snprintf(json, sizeof json, "{\"n\":%zu}", i + 1);
    fx_post(f, ids[i], json);
  }
  bool ok = fx_wait(f, 0, W_DELIVERED, 5, 3000);
  char *log = fx_release_log(f);
  assert_true(ok);
  /* e1 three times refused with 500, then e1..e5 once each, in order. */
  assert_int_equal(rx_count(&f->rx), 8);
  for (int k = 0; k < 8; k++) {
    rx_req_t r = rx_get(&f->rx, k);
    const char *want = k < 3 ? "e1" : ids[k - 3];
    assert_string_equal(r.id, want);
    assert_int_equal(r.status, k < 3 ? 500 : 200);
  }
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.delivered, 5);
  assert_int_equal(s.attempts_failed, 3);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.failing, 0);
  /* One line when it started failing, one when it recovered. */
  assert_int_equal(count_of(log, "failing: HTTP 500"), 1);
  assert_int_equal(count_of(log, "answering again after 3 failed attempts"), 1);
  /* The receiver's answer is escaped, never raw. */
  assert_null(strchr(log, '\x1b'));
  assert_non_null(strstr(log, "\\x1b[31mboom\\nforged line"));
  assert_null(strstr(log, "forged line\n"));
  /* No credential, no query. */
  assert_null(strstr(log, "s3cret"));
  assert_null(strstr(log, "t0ps3cr3t"));
  assert_non_null(strstr(log, "url=http://***@127.0.0.1:"));
  free(log);
}

static void test_refused_content_given_up_at_once(void **state) {
  fx_t *f = *state;
  f->rx.script[0] = 400;
  f->rx.n_script = 1;
  const char *urls[] = {f->url_rx};
  /* A long backoff: a retry would show as a wait the test does not allow. */
  fx_new(f, urls, 1, (webhook_opts_t){.backoff_min_ms = 5000, .backoff_max_ms = 5000});
  fx_post(f, "bad", "{\"not\":\"what the receiver wants\"}");
  fx_post(f, "good", "{}");
  assert_true(fx_wait(f, 0, W_DELIVERED, 1, 2000));
  assert_int_equal(rx_count(&f->rx), 2);
  assert_string_equal(rx_get(&f->rx, 0).id, "bad");
  assert_string_equal(rx_get(&f->rx, 1).id, "good");
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.given_up, 1);
  assert_int_equal(s.attempts_failed, 1);
  assert_int_equal(s.delivered, 1);
  assert_int_equal(s.failing, 0);
}

static void test_long_answers_not_read_to_the_end(void **state) {
  fx_t *f = *state;
  /* 4 MiB answers: reading stops early, and the status still decides. */
  f->rx.big = 4u << 20;
  f->rx.script[0] = 503;
  f->rx.n_script = 1;
  const char *urls[] = {f->url_rx};
  fx_capture_log(f);
  fx_new(f, urls, 1, (webhook_opts_t){.backoff_min_ms = 10, .backoff_max_ms = 20});
  fx_post(f, "big1", "{}");
  fx_post(f, "big2", "{}");
  bool ok = fx_wait(f, 0, W_DELIVERED, 2, 3000);
  char *log = fx_release_log(f);
  assert_true(ok);
  assert_int_equal(rx_count(&f->rx), 3);
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.attempts_failed, 1);
  assert_int_equal(s.delivered, 2);
  /* The failure's log line holds an excerpt, marked cut. */
  assert_non_null(strstr(log, "failing: HTTP 503, answer \"xxxx"));
  assert_non_null(strstr(log, "\" (cut)"));
  assert_null(strstr(
      log, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
  free(log);
}

static void test_hung_url_holds_up_no_other(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_hung, f->url_rx};
  fx_new(f, urls, 2, (webhook_opts_t){.timeout_ms = 3000});
  uint64_t t0 = fx_now(f);
  fx_post(f, "a", "[1]");
  fx_post(f, "b", "[2]");
  fx_post(f, "c", "[3]");
  assert_true(fx_wait(f, 1, W_DELIVERED, 3, 2500));
  /* Long before the hung URL's first attempt times out. */
  assert_true(fx_now(f) - t0 < 2500);
  assert_int_equal(rx_count(&f->rx), 3);
  assert_string_equal(rx_get(&f->rx, 0).id, "a");
  assert_string_equal(rx_get(&f->rx, 2).id, "c");
  webhook_stats_t hung = fx_stats(f, 0);
  assert_int_equal(hung.delivered, 0);
  assert_int_equal(hung.attempts_failed, 0);
  assert_int_equal(hung.pending, 3);
  webhook_stats_t total;
  webhook_stats_total(f->w, &total);
  assert_int_equal(total.delivered, 3);
  assert_int_equal(total.pending, 3);
}

static void test_hung_receiver_times_out_loop_runs(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_hung};
  fx_new(f, urls, 1,
         (webhook_opts_t){.timeout_ms = 300, .backoff_min_ms = 5000, .backoff_max_ms = 5000});
  uv_timer_start(&f->ticker, fx_on_tick, 10, 10);
  uint64_t t0 = fx_now(f);
  fx_post(f, "h1", "{}");
  assert_true(fx_wait(f, 0, W_FAILED, 1, 3000));
  uint64_t took = fx_now(f) - t0;
  uv_timer_stop(&f->ticker);
  assert_true(took >= 280);
  assert_true(took < 2000);
  /* The loop kept turning during the attempt: ~30 ticks of 10 ms. */
  assert_true(f->ticks >= 10);
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.failing, 1);
  assert_int_equal(s.pending, 1); /* kept for the retry */
  assert_int_equal(s.delivered, 0);
}

static void test_queue_full_drops_oldest_waiting(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_rx};
  fx_new(f, urls, 1, (webhook_opts_t){.queue_max = 3});
  /* e1 goes on the wire at once; e2..e4 wait; e5 and e6 push out e2, e3. */
  static const char *const ids[] = {"e1", "e2", "e3", "e4", "e5", "e6"};
  for (size_t i = 0; i < 6; i++)
    fx_post(f, ids[i], "{}");
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.dropped, 2);
  assert_int_equal(s.pending, 4);
  assert_true(fx_wait(f, 0, W_DELIVERED, 4, 3000));
  assert_int_equal(rx_count(&f->rx), 4);
  static const char *const want[] = {"e1", "e4", "e5", "e6"};
  for (int k = 0; k < 4; k++)
    assert_string_equal(rx_get(&f->rx, k).id, want[k]);
  assert_int_equal(fx_stats(f, 0).pending, 0);
}

static void test_queue_full_in_backoff_drops_head(void **state) {
  fx_t *f = *state;
  f->rx.script[0] = 500;
  f->rx.n_script = 1;
  const char *urls[] = {f->url_rx};
  fx_new(f, urls, 1,
         (webhook_opts_t){.queue_max = 3, .backoff_min_ms = 300, .backoff_max_ms = 300});
  fx_post(f, "e1", "{}");
  assert_true(fx_wait(f, 0, W_FAILED, 1, 2000));
  /* e1 waits for its retry, not on the wire: it is the oldest. */
  fx_post(f, "e2", "{}");
  fx_post(f, "e3", "{}");
  fx_post(f, "e4", "{}");
  assert_int_equal(fx_stats(f, 0).dropped, 1);
  assert_true(fx_wait(f, 0, W_DELIVERED, 3, 3000));
  assert_int_equal(rx_count(&f->rx), 4);
  static const char *const want[] = {"e1", "e2", "e3", "e4"};
  for (int k = 0; k < 4; k++)
    assert_string_equal(rx_get(&f->rx, k).id, want[k]);
}

static void test_given_up_after_max_age(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_refused};
  fx_new(f, urls, 1,
         (webhook_opts_t){.max_age_ms = 150, .backoff_min_ms = 20, .backoff_max_ms = 40});
  uint64_t t0 = fx_now(f);
  fx_post(f, "old1", "{}");
  fx_post(f, "old2", "{}");
  assert_true(fx_wait(f, 0, W_GIVEN_UP, 2, 3000));
  uint64_t took = fx_now(f) - t0;
  assert_true(took >= 140);
  assert_true(took < 1500);
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.given_up, 2);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.delivered, 0);
  assert_true(s.attempts_failed >= 2);
  assert_int_equal(s.failing, 1);
}

/* The audit's case: a receiver down behind a full queue. The first loss
 * is logged with its reason, those after it within the window in one
 * summary line when the window ends (the receiver still down), and the
 * recovery line counts them all, naming the first and last ids. */
static void test_losses_summed_up_and_counted_at_recovery(void **state) {
  fx_t *f = *state;
  rx_set_down(&f->rx, true);
  const char *urls[] = {f->url_rx};
  fx_capture_log(f);
  fx_new(f, urls, 1,
         (webhook_opts_t){
             .queue_max = 2, .backoff_min_ms = 50, .backoff_max_ms = 50, .loss_log_ms = 300});
  /* e1 goes on the wire; e2, e3 wait; e4, e5, e6 push out e2, e3, e4. */
  static const char *const ids[] = {"e1", "e2", "e3", "e4", "e5", "e6"};
  for (size_t i = 0; i < 6; i++)
    fx_post(f, ids[i], "{}");
  assert_int_equal(fx_stats(f, 0).dropped, 3);
  uint64_t t0 = fx_now(f);
  static const char summary[] =
      "lost since the last such line: 2 notifications (0 given up, 2 "
      "dropped), ids e3 to e4; lost notifications are not re-sent; `nircctl alarms` "
      "shows the alarms themselves";
  bool summed = tloop_wait_for(&f->lp, fx_logged, f, summary, 3000);
  uint64_t took = fx_now(f) - t0;
  webhook_stats_t down = fx_stats(f, 0);
  rx_set_down(&f->rx, false);
  bool ok = summed && fx_wait(f, 0, W_DELIVERED, 3, 3000);
  char *log = fx_release_log(f);
  assert_true(summed);
  assert_true(ok);
  /* Said when the window ended, while the receiver was still down. */
  assert_true(took >= 250);
  assert_int_equal(down.failing, 1);
  assert_int_equal(down.delivered, 0);
  assert_int_equal(count_of(log, "queue full (2 waiting): dropped the oldest notification, id e2; "
                                 "lost notifications are not re-sent"),
                   1);
  assert_int_equal(count_of(log, "queue full"), 1);
  assert_int_equal(count_of(log, summary), 1);
  assert_int_equal(
      count_of(log, "failed attempts; lost meanwhile: 3 notifications (0 given up, 3 "
                    "dropped), ids e2 to e4; lost notifications are not re-sent; `nircctl alarms` "
                    "shows the alarms themselves"),
      1);
  assert_int_equal(count_of(log, "answering again"), 1);
  static const char *const want[] = {"e1", "e5", "e6"};
  int n = rx_count(&f->rx);
  for (int k = 0; k < n; k++)
    assert_string_equal(rx_get(&f->rx, k).id, want[k < n - 3 ? 0 : k - (n - 3)]);
  free(log);
}

/* Losses still held when the notifier closes are said before it stops. */
static void test_held_losses_said_at_close(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_hung};
  fx_capture_log(f);
  fx_new(f, urls, 1, (webhook_opts_t){.queue_max = 1});
  /* a on the wire (never answered); b waits; c pushes out b (said), d
   * pushes out c (held: the window is 10 s). */
  fx_post(f, "a", "{}");
  fx_post(f, "b", "{}");
  fx_post(f, "c", "{}");
  fx_post(f, "d", "{}");
  fx_close(f);
  char *log = fx_release_log(f);
  assert_int_equal(count_of(log, "dropped the oldest notification, id b;"), 1);
  assert_int_equal(count_of(log, "lost since the last such line: 1 notification (0 given up, 1 "
                                 "dropped), id c;"),
                   1);
  assert_non_null(strstr(log, "stopping: 2 undelivered notifications dropped"));
  assert_true(strstr(log, "id c;") < strstr(log, "stopping:"));
  free(log);
}

static void expect_refused(fx_t *f, const char *bad, const char *shown, const char *secret) {
  const char *urls[] = {f->url_rx, bad};
  webhook_opts_t o = {.urls = urls, .n_urls = 2};
  char err[512] = "";
  webhook_t *w = (webhook_t *)1;
  assert_int_equal(webhook_new(&f->loop, &o, &w, err, sizeof err), NIRC_EINVAL);
  assert_null(w);
  if (!strstr(err, shown)) fail_msg("'%s' not named in: %s", shown, err);
  if (secret && strstr(err, secret)) fail_msg("'%s' shown in: %s", secret, err);
  assert_int_equal(webhook_check_url(bad, err, sizeof err), NIRC_EINVAL);
}

static void test_invalid_urls_refused(void **state) {
  fx_t *f = *state;
  expect_refused(f, "file:///etc/passwd", "'file:///etc/passwd': only http:// and https://", NULL);
  expect_refused(f, "not a url", "'not a url' is not a URL", NULL);
  expect_refused(f, "gopher://example.net/1", "gopher://example.net/1", NULL);
  expect_refused(f, "ftp://bob:hunter2@files.example.net/x", "ftp://***@files.example.net/x",
                 "hunter2");
  expect_refused(f, "http://carol:pa/ss@hooks.example.net/x", "http://***@hooks.example.net/x",
                 "pa/ss");
  expect_refused(f, "", "empty", NULL);
  char err[256];
  assert_int_equal(webhook_check_url("https://hooks.example.net/nirc", err, sizeof err), 0);
  assert_int_equal(webhook_check_url("HTTP://Example.net:8080/a?b=c", err, sizeof err), 0);
  /* A CA file that cannot be read fails the start too. */
  const char *one[] = {"https://hooks.example.net/nirc"};
  webhook_opts_t o = {.urls = one, .n_urls = 1, .ca_file = "/nonexistent/ca.pem"};
  webhook_t *w = (webhook_t *)1;
  assert_int_equal(webhook_new(&f->loop, &o, &w, err, sizeof err), NIRC_EINVAL);
  assert_null(w);
  assert_non_null(strstr(err, "/nonexistent/ca.pem"));
  /* Nothing was left open on the loop. */
  assert_false(uv_loop_alive(&f->loop));
}

static void test_post_checks_and_url_shown(void **state) {
  fx_t *f = *state;
  const char *urls[] = {"https://u:pw@hooks.example.net:8443/nirc/in?key=abc#frag"};
  fx_new(f, urls, 1, (webhook_opts_t){0});
  assert_string_equal(webhook_url(f->w, 0), "https://***@hooks.example.net:8443/nirc/in?***");
  assert_int_equal(webhook_post(f->w, "a\r\nX-Evil: 1", "{}"), NIRC_EINVAL);
  assert_int_equal(webhook_post(f->w, "has space", "{}"), NIRC_EINVAL);
  assert_int_equal(webhook_post(f->w, "", "{}"), NIRC_EINVAL);
  char longid[WEBHOOK_ID_MAX + 2];
  memset(longid, 'i', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(webhook_post(f->w, longid, "{}"), NIRC_EINVAL);
  assert_int_equal(webhook_post(f->w, "ok", "{not json"), NIRC_EINVAL);
  assert_int_equal(webhook_post(f->w, "ok", NULL), NIRC_EINVAL);
  char *big = malloc(WEBHOOK_BODY_MAX + 2);
  assert_non_null(big);
  memset(big, ' ', WEBHOOK_BODY_MAX + 1);
  big[0] = '1';
  big[WEBHOOK_BODY_MAX + 1] = '\0';
  assert_int_equal(webhook_post(f->w, "ok", big), NIRC_ERANGE);
  free(big);
  assert_int_equal(fx_stats(f, 0).pending, 0);
  fx_close(f);
  /* No URL: a notifier that posts nowhere. */
  f->w = NULL;
  f->done = 0;
  fx_new(f, NULL, 0, (webhook_opts_t){0});
  assert_int_equal(webhook_post(f->w, "x", "\"any JSON text\""), 0);
  webhook_stats_t s;
  webhook_stats_total(f->w, &s);
  assert_int_equal(s.pending, 0);
}

static void test_close_with_transfer_on_the_wire(void **state) {
  fx_t *f = *state;
  const char *urls[] = {f->url_hung, f->url_rx};
  fx_new(f, urls, 2, (webhook_opts_t){.timeout_ms = 5000});
  fx_post(f, "c1", "{}");
  fx_post(f, "c2", "{}");
  assert_true(fx_wait(f, 1, W_DELIVERED, 2, 2000));
  /* The hung URL's c1 is on the wire (connected, waiting for an answer). */
  webhook_stats_t s = fx_stats(f, 0);
  assert_int_equal(s.pending, 2);
  webhook_close(f->w, fx_on_done, f);
  /* Final counts, readable until done. */
  s = fx_stats(f, 0);
  assert_int_equal(s.dropped, 2);
  assert_int_equal(s.pending, 0);
  assert_int_equal(webhook_post(f->w, "late", "{}"), NIRC_ECLOSED);
  assert_int_equal(f->done, 0); /* only from the loop */
  assert_true(tloop_wait(&f->lp, &f->done, 1, 2000));
  assert_int_equal(f->done, 1);
  /* Teardown checks that nothing is left on the loop. */
}

static void test_https_verifies_the_receiver(void **state) {
  fx_t *f = *state;
  EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  assert_true(ca_key && key);
  X509 *ca = tls_cert(ca_key, ca_key, NULL, "NIRC test CA");
  X509 *cert = tls_cert(key, ca_key, ca, "receiver");
  char *ca_pem = tls_pem(ca, NULL), *cert_pem = tls_pem(cert, NULL), *key_pem = tls_pem(NULL, key);
  snprintf(f->ca_path, sizeof f->ca_path, "/tmp/nirc-webhook-ca-XXXXXX");
  int fd = mkstemp(f->ca_path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, ca_pem, strlen(ca_pem)), (ssize_t)strlen(ca_pem));
  close(fd);
  f->tls = calloc(1, sizeof *f->tls);
  assert_non_null(f->tls);
  pthread_mutex_init(&f->tls->mu, NULL);
  rx_start(f->tls, key_pem, cert_pem);
  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%u/hook", f->tls->port);
  const char *urls[] = {url};

  /* Against the system's CA bundle the private CA is unknown: a failed
   * attempt, and nothing reaches the receiver's handler. */
  fx_capture_log(f);
  fx_new(f, urls, 1, (webhook_opts_t){.backoff_min_ms = 5000, .backoff_max_ms = 5000});
  fx_post(f, "tls-1", "{\"tls\":true}");
  bool ok = fx_wait(f, 0, W_FAILED, 1, 3000);
  char *log = fx_release_log(f);
  assert_true(ok);
  assert_int_equal(fx_stats(f, 0).delivered, 0);
  assert_int_equal(rx_count(f->tls), 0);
  assert_non_null(strstr(log, "failing: SSL certificate problem"));
  free(log);
  fx_close(f);

  /* With its CA, it is delivered. */
  f->w = NULL;
  f->done = 0;
  fx_new(f, urls, 1, (webhook_opts_t){.ca_file = f->ca_path});
  fx_post(f, "tls-2", "{\"tls\":true}");
  assert_true(fx_wait(f, 0, W_DELIVERED, 1, 3000));
  assert_int_equal(rx_count(f->tls), 1);
  rx_req_t r = rx_get(f->tls, 0);
  assert_string_equal(r.id, "tls-2");
  assert_memory_equal(r.body, "{\"tls\":true}", r.body_len);

  free(ca_pem);
  free(cert_pem);
  free(key_pem);
  X509_free(ca);
  X509_free(cert);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
}

/* ---- [notify] in nircd's configuration ---------------------------------- */

static const char *const NIRCD_MINIMAL = "[tls]\n"
                                         "ca = /etc/nirc/ca.crt\n"
                                         "cert = /etc/nirc/nircd.crt\n"
                                         "key = /etc/nirc/nircd.key\n"
                                         "[database]\n"
                                         "conninfo = host=/run/postgresql dbname=nirc\n";

static int load_nircd(const char *extra, nircd_conf_t *c, char *err, size_t errlen) {
  char path[] = "/tmp/nirc-test-webhook-conf-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *out = fdopen(fd, "w");
  assert_non_null(out);
  fprintf(out, "%s%s", NIRCD_MINIMAL, extra);
  assert_int_equal(fclose(out), 0);
  memset(c, 0, sizeof *c);
  err[0] = '\0';
  int rc = conf_nircd_load(path, c, err, errlen);
  unlink(path);
  return rc;
}

static void test_notify_config(void **state) {
  fx_t *f = *state;
  nircd_conf_t c;
  char err[512];
  /* Defaults: no URL, and the documented numbers. */
  if (load_nircd("", &c, err, sizeof err)) fail_msg("minimal nircd.conf refused: %s", err);
  assert_int_equal(c.webhook.count, 0);
  assert_int_equal(c.webhook_timeout_ms, 5000);
  assert_int_equal(c.webhook_retry_max_ms, 60000);
  assert_int_equal(c.webhook_give_up_ms, 3600000);
  assert_int_equal(c.webhook_queue, 1000);
  /* Bounds. */
  assert_int_equal(load_nircd("[notify]\nwebhook_queue = 0\n", &c, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "webhook_queue"));
  assert_int_equal(load_nircd("[notify]\nwebhook_retry_max = 10ms\n", &c, err, sizeof err),
                   NIRC_ECONFIG);
  assert_non_null(strstr(err, "webhook_retry_max"));
  /* Values, and the notifier they make (as nircd will): the receiver by
   * name (libcurl's resolver thread, for /etc/hosts), and an https URL
   * where nothing listens. */
  char text[512], by_name[128], https[128];
  snprintf(by_name, sizeof by_name, "http://localhost:%u/hook", f->rx.port);
  snprintf(https, sizeof https, "https://127.0.0.1:%u/nirc", f->refused_port);
  snprintf(text, sizeof text,
           "[notify]\nwebhook = %s, %s\nwebhook_timeout = 2s\n"
           "webhook_retry_max = 5s\nwebhook_give_up = 10m\nwebhook_queue = 50\n",
           by_name, https);
  if (load_nircd(text, &c, err, sizeof err)) fail_msg("[notify] refused: %s", err);
  assert_int_equal(c.webhook.count, 2);
  assert_string_equal(c.webhook.item[0], by_name);
  assert_string_equal(c.webhook.item[1], https);
  assert_int_equal(c.webhook_timeout_ms, 2000);
  assert_int_equal(c.webhook_retry_max_ms, 5000);
  assert_int_equal(c.webhook_give_up_ms, 600000);
  assert_int_equal(c.webhook_queue, 50);
  const char *urls[WEBHOOK_URLS_MAX];
  for (unsigned i = 0; i < c.webhook.count; i++)
    urls[i] = c.webhook.item[i];
  fx_new(f, urls, c.webhook.count,
         (webhook_opts_t){.timeout_ms = (uint32_t)c.webhook_timeout_ms,
                          .backoff_max_ms = (uint32_t)c.webhook_retry_max_ms,
                          .max_age_ms = (uint32_t)c.webhook_give_up_ms,
                          .queue_max = c.webhook_queue});
  fx_post(f, "from-conf", "{}");
  assert_true(fx_wait(f, 0, W_DELIVERED, 1, 3000));
  assert_string_equal(rx_get(&f->rx, 0).id, "from-conf");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_delivers_body_and_headers, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_order_kept_across_retries, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_refused_content_given_up_at_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_long_answers_not_read_to_the_end, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_hung_url_holds_up_no_other, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_hung_receiver_times_out_loop_runs, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_queue_full_drops_oldest_waiting, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_queue_full_in_backoff_drops_head, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_given_up_after_max_age, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_losses_summed_up_and_counted_at_recovery, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_held_losses_said_at_close, fx_setup, fx_teardown),
      cmocka_unit_test(test_losslog_first_said_rest_summed_when_due),
      cmocka_unit_test(test_losslog_recovery_says_the_run),
      cmocka_unit_test(test_losslog_every_loss_said_lines_spaced),
      cmocka_unit_test(test_losslog_format),
      cmocka_unit_test_setup_teardown(test_invalid_urls_refused, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_post_checks_and_url_shown, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_close_with_transfer_on_the_wire, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_https_verifies_the_receiver, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_notify_config, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
