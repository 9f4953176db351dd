#include "httpd.h"

#include "err.h"
#include "util.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTPD_MAX_DOCS 16
/* A document larger than this is a bug, not a status page. */
#define HTTPD_MAX_BODY       (8u << 20)
#define HTTPD_CONNECTIONS    64u
#define HTTPD_PER_ADDRESS    8u
#define HTTPD_IDLE_TIMEOUT_S 10u /* a client silent this long is dropped */

typedef struct {
  char path[64];
  char type[64];
  char *body; /* owned */
  size_t len;
  /* Dynamic documents: made per request from snap (owned). */
  httpd_render_fn render;
  void *snap;
  void (*snap_free)(void *);
} httpd_doc_t;

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
}

struct httpd {
  struct MHD_Daemon *mhd;
  pthread_mutex_t lock; /* guards docs: written by the loop, read by MHD's thread */
  httpd_doc_t docs[HTTPD_MAX_DOCS];
  unsigned n;
};

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
    for (unsigned i = 0; i < h->n; i++) {
      if (strcmp(h->docs[i].path, url) == 0 && h->docs[i].render) {
        size_t len = 0;
        char *body = h->docs[i].render(h->docs[i].snap, httpd_arg, conn, &len, &status);
        resp = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
        if (!resp) free(body);
        if (resp) MHD_add_response_header(resp, "Content-Type", h->docs[i].type);
        break;
      }
      if (strcmp(h->docs[i].path, url) == 0) {
        /* Copied out, so the loop may publish again while this is sent. */
        resp =
            MHD_create_response_from_buffer(h->docs[i].len, h->docs[i].body, MHD_RESPMEM_MUST_COPY);
        if (resp) MHD_add_response_header(resp, "Content-Type", h->docs[i].type);
        break;
      }
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
  /* epoll (or poll where it is missing), never select: a controller holding
   * thousands of agent links gets socket numbers past FD_SETSIZE (1024),
   * and select-based MHD then drops every HTTP client. */
  unsigned flags =
      (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL_INTERNAL_THREAD
                                                              : MHD_USE_POLL_INTERNAL_THREAD) |
      MHD_USE_ERROR_LOG;
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
  for (unsigned i = 0; i < h->n; i++)
    if (strcmp(h->docs[i].path, path) == 0) return &h->docs[i];
  if (h->n >= HTTPD_MAX_DOCS) return NULL;
  httpd_doc_t *d = &h->docs[h->n++];
  nirc_strlcpy(d->path, path, sizeof d->path);
  return d;
}

int httpd_publish(httpd_t *h, const char *path, const char *content_type, const char *body,
                  size_t len) {
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
    nirc_strlcpy(d->type, content_type, sizeof d->type);
  } else {
    rc = NIRC_EFULL;
  }
  pthread_mutex_unlock(&h->lock);
  if (rc) free(copy);
  return rc;
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
  } else {
    rc = NIRC_EFULL;
  }
  pthread_mutex_unlock(&h->lock);
  if (rc && snap && snap_free) snap_free(snap);
  return rc;
}

void httpd_stop(httpd_t *h) {
  if (!h) return;
  MHD_stop_daemon(h->mhd);
  for (unsigned i = 0; i < h->n; i++)
    httpd_doc_clear(&h->docs[i]);
  pthread_mutex_destroy(&h->lock);
  free(h);
}
