/* Unit tests of common/httpd.c, the HTTP endpoint nircd and the agent
 * serve metrics and status from, on 127.0.0.1 with real sockets: clients
 * are threads of this program doing plain HTTP/1.0 GETs; this thread plays
 * the event loop (it publishes, and is woken through httpd_on_demand).
 * Nothing sleeps: waits are on the wake signal or on a client's answer.
 *
 * Checked: a document published as is (max age 0) is served as published
 * and never wakes anyone; an on-demand document nobody reads is never
 * asked for; a request for a stale copy wakes the loop once, waits, and
 * gets the copy published after it; a request within the max age is
 * served without waking; a loop that never publishes gets the client a
 * 503 naming the document and how old the last copy is (never the stale
 * copy); a build that failed is a 500 with its reason, at once; a path
 * never published is a 404 unless it is on demand; stopping
 * httpd frees a waiting client at once (503), well before HTTPD_WAIT_MS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

/* ---- the loop's side: woken by httpd -------------------------------------- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  unsigned wakes; /* wake() calls so far */
} wake_t;

static wake_t W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_wake(void *arg) {
  wake_t *w = arg;
  pthread_mutex_lock(&w->lock);
  w->wakes++;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static unsigned wakes(void) {
  pthread_mutex_lock(&W.lock);
  unsigned n = W.wakes;
  pthread_mutex_unlock(&W.lock);
  return n;
}

/* Waits (bounded by 10 s, a failure) until wake() has run more than
 * `seen` times. */
static void await_wake(unsigned seen) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 10;
  pthread_mutex_lock(&W.lock);
  while (W.wakes <= seen)
    if (pthread_cond_timedwait(&W.cond, &W.lock, &ts) != 0) break;
  unsigned n = W.wakes;
  pthread_mutex_unlock(&W.lock);
  if (n <= seen) fail_msg("httpd did not wake the loop within 10 s");
}

/* ---- a client in its own thread ------------------------------------------- */

typedef struct {
  uint16_t port;
  char path[64];
  pthread_t thread;
  int status;     /* HTTP status, or -1 */
  char body[512]; /* the start of the body */
  double seconds; /* from connect to the end of the answer */
} client_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *client_run(void *arg) {
  client_t *c = arg;
  c->status = -1;
  double t0 = now_s();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto out;
  char req[128];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: t\r\n\r\n", c->path);
  if (write(fd, req, (size_t)n) != n) goto out;
  char buf[4096];
  size_t len = 0;
  ssize_t r;
  while (len + 1 < sizeof buf && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)r;
  buf[len] = '\0';
  if (sscanf(buf, "HTTP/1.%*d %d", &c->status) != 1) c->status = -1;
  const char *body = strstr(buf, "\r\n\r\n");
  snprintf(c->body, sizeof c->body, "%s", body ? body + 4 : "");
out:
  if (fd >= 0) close(fd);
  c->seconds = now_s() - t0;
  return NULL;
}

static void client_start(client_t *c, uint16_t port, const char *path) {
  memset(c, 0, sizeof *c);
  c->port = port;
  snprintf(c->path, sizeof c->path, "%s", path);
  assert_int_equal(pthread_create(&c->thread, NULL, client_run, c), 0);
}

static void client_join(client_t *c) {
  pthread_join(c->thread, NULL);
}

static void get(uint16_t port, const char *path, client_t *c) {
  client_start(c, port, path);
  client_join(c);
}

/* ---- set-up --------------------------------------------------------------- */

/* A loopback port nothing listens on (bound, read, released). */
static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

typedef struct {
  httpd_t *h;
  uint16_t port;
} fx_t;

static int setup(void **state) {
  static fx_t fx;
  char addr[64], err[256];
  fx.port = free_port();
  snprintf(addr, sizeof addr, "127.0.0.1:%u", fx.port);
  if (httpd_start(addr, &fx.h, err, sizeof err) != 0) fail_msg("httpd_start: %s", err);
  httpd_on_demand(fx.h, on_wake, &W);
  *state = &fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  httpd_stop(fx->h);
  return 0;
}

static void publish(httpd_t *h, const char *path, const char *text) {
  assert_int_equal(httpd_publish(h, path, "text/plain", text, strlen(text)), 0);
}

/* ---- tests ---------------------------------------------------------------- */

/* The agent's way: published every second, served as is, no wake. */
static void test_published_document_is_served_as_is(void **state) {
  fx_t *fx = *state;
  publish(fx->h, "/pushed", "pushed v1\n");
  unsigned w0 = wakes();
  client_t c;
  get(fx->port, "/pushed", &c);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.body, "pushed v1\n");
  assert_int_equal(wakes(), w0);
  assert_int_equal(httpd_take_wanted(fx->h, "/pushed"), 0);
  get(fx->port, "/nothing-here", &c);
  assert_int_equal(c.status, 404);
}

/* An on-demand document: nobody reads it, nobody builds it; the first
 * read wakes the loop and waits for the copy published after it; a read
 * within the max age is served without waking. */
static void test_on_demand_document_is_built_when_read(void **state) {
  fx_t *fx = *state;
  assert_int_equal(httpd_set_max_age(fx->h, "/status", 60000), 0);
  assert_int_equal(httpd_take_wanted(fx->h, "/status"), 0); /* nobody asked */

  unsigned w0 = wakes();
  client_t c;
  client_start(&c, fx->port, "/status");
  await_wake(w0);
  assert_int_equal(httpd_take_wanted(fx->h, "/status"), 1);
  assert_int_equal(httpd_take_wanted(fx->h, "/status"), 0); /* taken */
  publish(fx->h, "/status", "status v1\n");
  client_join(&c);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.body, "status v1\n");

  /* Within the max age: served at once, nobody woken. */
  unsigned w1 = wakes();
  get(fx->port, "/status", &c);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.body, "status v1\n");
  assert_int_equal(wakes(), w1);
  assert_int_equal(httpd_take_wanted(fx->h, "/status"), 0);
}

/* The freshness rule, driven by a client that must wait: published v1,
 * then a request after the max age wakes the loop; it gets v2, not v1. */
static void test_stale_copy_is_never_served(void **state) {
  fx_t *fx = *state;
  assert_int_equal(httpd_set_max_age(fx->h, "/fresh", 1), 0); /* 1 ms */
  publish(fx->h, "/fresh", "fresh v1\n");
  /* 1 ms later v1 is old; a client asks. */
  struct timespec ts = {0, 5 * 1000 * 1000};
  nanosleep(&ts, NULL); /* ages the copy (the rule under test), not a wait for an event */
  unsigned w0 = wakes();
  client_t c;
  client_start(&c, fx->port, "/fresh");
  await_wake(w0);
  assert_true(httpd_take_wanted(fx->h, "/fresh"));
  publish(fx->h, "/fresh", "fresh v2\n");
  client_join(&c);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.body, "fresh v2\n");
}

/* A loop that never publishes: the client gets a 503 that names the
 * document and says how old the last copy is, after HTTPD_WAIT_MS. */
static void test_loop_that_does_not_answer_is_a_503(void **state) {
  fx_t *fx = *state;
  assert_int_equal(httpd_set_max_age(fx->h, "/slow", 1), 0);
  publish(fx->h, "/slow", "slow v1\n");
  struct timespec ts = {0, 5 * 1000 * 1000};
  nanosleep(&ts, NULL); /* ages the copy, as above */
  client_t c;
  get(fx->port, "/slow", &c);
  assert_int_equal(c.status, 503);
  assert_non_null(strstr(c.body, "did not refresh /slow"));
  assert_non_null(strstr(c.body, "ms old"));
  assert_null(strstr(c.body, "slow v1"));
  assert_true(c.seconds >= HTTPD_WAIT_MS / 1000.0 - 0.05);
  /* Never published at all: says so. */
  assert_int_equal(httpd_set_max_age(fx->h, "/never", 1000), 0);
  get(fx->port, "/never", &c);
  assert_int_equal(c.status, 503);
  assert_non_null(strstr(c.body, "has not produced /never"));
  httpd_take_wanted(fx->h, "/slow");
  httpd_take_wanted(fx->h, "/never");
}

/* A document the loop could not build: a client waiting for it is
 * answered at once with the reason and a 500, not the old copy, and a
 * later copy serves again. */
static void test_failed_build_is_a_500_with_the_reason(void **state) {
  fx_t *fx = *state;
  assert_int_equal(httpd_set_max_age(fx->h, "/big", 60000), 0);
  publish(fx->h, "/big", "big v1\n");
  assert_int_equal(httpd_publish_failed(fx->h, "/big", "could not build /big: too large\n"), 0);
  client_t c;
  get(fx->port, "/big", &c);
  assert_int_equal(c.status, 500);
  assert_string_equal(c.body, "could not build /big: too large\n");
  /* Waiting for a fresh copy, the failure answers it at once. */
  assert_int_equal(httpd_set_max_age(fx->h, "/big2", 1000), 0);
  unsigned w0 = wakes();
  client_start(&c, fx->port, "/big2");
  await_wake(w0);
  assert_true(httpd_take_wanted(fx->h, "/big2"));
  assert_int_equal(httpd_publish_failed(fx->h, "/big2", "no memory\n"), 0);
  client_join(&c);
  assert_int_equal(c.status, 500);
  assert_true(c.seconds < HTTPD_WAIT_MS / 1000.0);
  publish(fx->h, "/big", "big v2\n");
  get(fx->port, "/big", &c);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.body, "big v2\n");
}

/* Stopping httpd with a client waiting: the client is answered at once
 * (503), httpd_stop does not wait out HTTPD_WAIT_MS. Own daemon. */
static void test_stop_frees_a_waiting_client(void **state) {
  (void)state;
  fx_t fx2;
  char addr[64], err[256];
  fx2.port = free_port();
  snprintf(addr, sizeof addr, "127.0.0.1:%u", fx2.port);
  if (httpd_start(addr, &fx2.h, err, sizeof err) != 0) fail_msg("httpd_start: %s", err);
  httpd_on_demand(fx2.h, on_wake, &W);
  assert_int_equal(httpd_set_max_age(fx2.h, "/wait", 1000), 0);
  unsigned w0 = wakes();
  client_t c;
  client_start(&c, fx2.port, "/wait");
  await_wake(w0); /* the client is waiting inside httpd */
  double t0 = now_s();
  httpd_stop(fx2.h);
  double stop_s = now_s() - t0;
  client_join(&c);
  assert_true(c.status == 503 || c.status == -1);
  if (stop_s >= HTTPD_WAIT_MS / 1000.0)
    fail_msg("httpd_stop took %.2f s: it waited for the client's timeout", stop_s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_published_document_is_served_as_is),
      cmocka_unit_test(test_on_demand_document_is_built_when_read),
      cmocka_unit_test(test_stale_copy_is_never_served),
      cmocka_unit_test(test_loop_that_does_not_answer_is_a_503),
      cmocka_unit_test(test_failed_build_is_a_500_with_the_reason),
      cmocka_unit_test(test_stop_frees_a_waiting_client),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
