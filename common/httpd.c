#include "httpd.h"

#include "err.h"
#include "util.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HTTPD_MAX_DOCS 16
/* A document larger than this is a bug, not a status page. */
#define HTTPD_MAX_BODY       (16u << 20)
#define HTTPD_CONNECTIONS    64u
#define HTTPD_PER_ADDRESS    8u
#define HTTPD_IDLE_TIMEOUT_S 10u /* a client silent this long is dropped */

typedef struct {
  char path[64];
  char type[64];
  char *body; /* owned */
  size_t len;
  unsigned status; /* of body: 200, or 500 from httpd_publish_failed */
  /* Dynamic documents: made per request from snap (owned). */
  httpd_render_fn render;
  void *snap;
  void (*snap_free)(void *);
  int published;        /* body or render holds a copy */
  int64_t published_ms; /* when, on httpd_now_ms's clock */
  unsigned max_age_ms;  /* 0: served as published; else on demand */
  int wanted;           /* a client waits for a copy newer than this one */
} httpd_doc_t;

static int64_t httpd_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *httpd_arg(void *conn, const char *key) {
  return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

/* Frees what a document holds, for a new one. */
static void httpd_doc_clear(httpd_doc_t *d) {
  free(d->body);
  d->body = NULL;
  if (d->snap && d->snap_free) d->snap_free(d->snap);
  d->snap = NULL;
  d->render = NULL;
  d->published = 0;
}

struct httpd {
  struct MHD_Daemon *mhd;
  /* Guards everything below: written by the loop, read by MHD's threads. */
  pthread_mutex_t lock;
  pthread_cond_t fresh; /* broadcast on every publish and at stop */
  httpd_doc_t docs[HTTPD_MAX_DOCS];
  unsigned n;
  void (*wake)(void *arg); /* asks the loop for wanted documents; may be NULL */
  void *wake_arg;
  int stopping;
};

/* The document published (or expected) at path, or NULL. Called with
 * h->lock held. */
static httpd_doc_t *httpd_doc_find(httpd_t *h, const char *path) {
  for (unsigned i = 0; i < h->n; i++)
    if (strcmp(h->docs[i].path, path) == 0) return &h->docs[i];
  return NULL;
}

/* Whether d may answer a request that arrived at `arrived`. */
static int httpd_fresh(const httpd_doc_t *d, int64_t arrived) {
  return d->published && (!d->max_age_ms || d->published_ms + d->max_age_ms >= arrived);
}

/* For an on-demand document older than its maximum age: marks it wanted,
 * wakes the loop and waits (lock held) until a fresh copy is published,
 * HTTPD_WAIT_MS pass, or httpd stops. Whether d is fresh now. */
static int httpd_await_fresh(httpd_t *h, httpd_doc_t *d) {
  int64_t arrived = httpd_now_ms(), deadline = arrived + HTTPD_WAIT_MS;
  if (httpd_fresh(d, arrived)) return 1;
  d->wanted = 1;
  if (h->wake) h->wake(h->wake_arg);
  while (!httpd_fresh(d, arrived) && !h->stopping) {
    int64_t left = deadline - httpd_now_ms();
    if (left <= 0) break;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&h->fresh, &h->lock, &ts);
  }
  return httpd_fresh(d, arrived);
}

/* The answer when the loop did not refresh a document in time: a 503 that
 * says what is known, never the old copy passed off as current. */
static struct MHD_Response *httpd_not_fresh(const httpd_doc_t *d, unsigned *status) {
  char msg[400];
  int n;
  if (d->published)
    n = snprintf(msg, sizeof msg,
                 "nircd did not refresh %s within %u ms: its event loop is busy or stuck "
                 "(the last copy is %lld ms old). See nircd's log; nircctl status asks it "
                 "directly.\n",
                 d->path, HTTPD_WAIT_MS, (long long)(httpd_now_ms() - d->published_ms));
  else
    n = snprintf(msg, sizeof msg,
                 "nircd has not produced %s yet (%u ms waited): it is starting, or its event "
                 "loop is busy or stuck. See nircd's log.\n",
                 d->path, HTTPD_WAIT_MS);
  *status = MHD_HTTP_SERVICE_UNAVAILABLE;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(n > 0 ? (size_t)n : 0, msg, MHD_RESPMEM_MUST_COPY);
  if (r) MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
  return r;
}

static enum MHD_Result httpd_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls) {
  httpd_t *h = cls;
  struct MHD_Response *resp = NULL;
  unsigned status = MHD_HTTP_OK;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char msg[] = "read-only: GET only\n";
    resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
  } else {
    pthread_mutex_lock(&h->lock);
    httpd_doc_t *d = httpd_doc_find(h, url);
    if (d && d->max_age_ms && !httpd_await_fresh(h, d)) {
      resp = httpd_not_fresh(d, &status);
    } else if (d && d->render) {
      size_t len = 0;
      char *body = d->render(d->snap, httpd_arg, conn, &len, &status);
      resp = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
      if (!resp) free(body);
      if (resp) MHD_add_response_header(resp, "Content-Type", d->type);
    } else if (d && d->published) {
      /* Copied out, so the loop may publish again while this is sent. */
      resp = MHD_create_response_from_buffer(d->len, d->body, MHD_RESPMEM_MUST_COPY);
      if (resp) MHD_add_response_header(resp, "Content-Type", d->type);
      status = d->status ? d->status : MHD_HTTP_OK;
    }
    pthread_mutex_unlock(&h->lock);
    if (!resp) {
      static const char msg[] = "not found\n";
      resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
      status = MHD_HTTP_NOT_FOUND;
    }
  }
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  enum MHD_Result r = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return r;
}

int httpd_start(const char *addr, httpd_t **out, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  if (nirc_parse_addr(addr, &ss, err, errlen) != 0) return NIRC_EINVAL;
  httpd_t *h = calloc(1, sizeof *h);
  if (!h) return NIRC_ENOMEM;
  pthread_mutex_init(&h->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->fresh, &ca);
  pthread_condattr_destroy(&ca);
  /* poll, never select: a controller holding thousands of agent links gets
   * socket numbers past FD_SETSIZE (1024), and select-based MHD then drops
   * every HTTP client. A thread per client: one waiting for a fresh
   * document (httpd_await_fresh) holds up no other. */
  unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
  /* Bounded: a few scrapers and browsers, short timeouts, and no single
   * address may hold more than HTTPD_PER_ADDRESS of the slots, so one slow
   * or hostile client cannot take /metrics away from Prometheus. */
  h->mhd = MHD_start_daemon(flags, port, NULL, NULL, httpd_answer, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, HTTPD_CONNECTIONS,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, HTTPD_PER_ADDRESS,
                            MHD_OPTION_CONNECTION_TIMEOUT, HTTPD_IDLE_TIMEOUT_S, MHD_OPTION_END);
  if (!h->mhd) {
    snprintf(err, errlen, "cannot serve HTTP on %s (address in use?)", addr);
    pthread_cond_destroy(&h->fresh);
    pthread_mutex_destroy(&h->lock);
    free(h);
    return NIRC_EIO;
  }
  *out = h;
  return 0;
}

/* The document published at path, or a new one for it (NULL: the table
 * is full). Called with h->lock held. */
static httpd_doc_t *httpd_doc_slot(httpd_t *h, const char *path) {
  httpd_doc_t *d = httpd_doc_find(h, path);
  if (d) return d;
  if (h->n >= HTTPD_MAX_DOCS) return NULL;
  d = &h->docs[h->n++];
  nirc_strlcpy(d->path, path, sizeof d->path);
  return d;
}

/* Called with h->lock held once d holds a new copy: wakes its waiters. */
static void httpd_doc_published(httpd_t *h, httpd_doc_t *d) {
  d->published = 1;
  d->published_ms = httpd_now_ms();
  pthread_cond_broadcast(&h->fresh);
}

int httpd_set_max_age(httpd_t *h, const char *path, unsigned max_age_ms) {
  if (!h) return NIRC_EINVAL;
  pthread_mutex_lock(&h->lock);
  httpd_doc_t *d = httpd_doc_slot(h, path);
  if (d) d->max_age_ms = max_age_ms;
  pthread_mutex_unlock(&h->lock);
  return d ? 0 : NIRC_EFULL;
}

void httpd_on_demand(httpd_t *h, void (*wake)(void *arg), void *arg) {
  if (!h) return;
  pthread_mutex_lock(&h->lock);
  h->wake = wake;
  h->wake_arg = arg;
  pthread_mutex_unlock(&h->lock);
}

int httpd_take_wanted(httpd_t *h, const char *path) {
  if (!h) return 0;
  int wanted = 0;
  pthread_mutex_lock(&h->lock);
  httpd_doc_t *d = httpd_doc_find(h, path);
  if (d) {
    wanted = d->wanted;
    d->wanted = 0;
  }
  pthread_mutex_unlock(&h->lock);
  return wanted;
}

static int httpd_publish_as(httpd_t *h, const char *path, const char *content_type,
                            const char *body, size_t len, unsigned status) {
  if (!h || len > HTTPD_MAX_BODY) return NIRC_EINVAL;
  char *copy = malloc(len ? len : 1);
  if (!copy) return NIRC_ENOMEM;
  memcpy(copy, body, len);
  int rc = 0;
  pthread_mutex_lock(&h->lock);
  httpd_doc_t *d = httpd_doc_slot(h, path);
  if (d) {
    httpd_doc_clear(d);
    d->body = copy;
    d->len = len;
    d->status = status;
    nirc_strlcpy(d->type, content_type, sizeof d->type);
    httpd_doc_published(h, d);
  } else {
    rc = NIRC_EFULL;
  }
  pthread_mutex_unlock(&h->lock);
  if (rc) free(copy);
  return rc;
}

int httpd_publish(httpd_t *h, const char *path, const char *content_type, const char *body,
                  size_t len) {
  return httpd_publish_as(h, path, content_type, body, len, MHD_HTTP_OK);
}

int httpd_publish_failed(httpd_t *h, const char *path, const char *why) {
  return httpd_publish_as(h, path, "text/plain; charset=utf-8", why, strlen(why),
                          MHD_HTTP_INTERNAL_SERVER_ERROR);
}

int httpd_publish_dynamic(httpd_t *h, const char *path, const char *content_type, void *snap,
                          void (*snap_free)(void *), httpd_render_fn render) {
  if (!h) {
    if (snap && snap_free) snap_free(snap);
    return NIRC_EINVAL;
  }
  int rc = 0;
  pthread_mutex_lock(&h->lock);
  httpd_doc_t *d = httpd_doc_slot(h, path);
  if (d) {
    httpd_doc_clear(d);
    d->render = render;
    d->snap = snap;
    d->snap_free = snap_free;
    d->len = 0;
    nirc_strlcpy(d->type, content_type, sizeof d->type);
    httpd_doc_published(h, d);
  } else {
    rc = NIRC_EFULL;
  }
  pthread_mutex_unlock(&h->lock);
  if (rc && snap && snap_free) snap_free(snap);
  return rc;
}

void httpd_stop(httpd_t *h) {
  if (!h) return;
  /* Clients waiting for a fresh copy give up now (503), so the threads
   * MHD joins end at once. */
  pthread_mutex_lock(&h->lock);
  h->stopping = 1;
  h->wake = NULL;
  pthread_cond_broadcast(&h->fresh);
  pthread_mutex_unlock(&h->lock);
  MHD_stop_daemon(h->mhd);
  for (unsigned i = 0; i < h->n; i++)
    httpd_doc_clear(&h->docs[i]);
  pthread_cond_destroy(&h->fresh);
  pthread_mutex_destroy(&h->lock);
  free(h);
}
