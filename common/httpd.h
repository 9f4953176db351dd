/* httpd: a read-only HTTP endpoint for metrics and status pages, on
 * libmicrohttpd.
 *
 * The daemon serves from its own thread; the event loop never waits on an
 * HTTP client. The loop *publishes* documents (a path, a content type, the
 * bytes) whenever it has new figures — once a second is plenty — and the
 * HTTP thread serves the latest copy under a mutex. Nothing a client sends
 * reaches the loop, so a slow or hostile scraper cannot stall routing.
 * At most 64 clients at once, 8 per address, each dropped after 10 s of
 * silence; epoll, so any socket number works. */
#ifndef NIRC_HTTPD_H
#define NIRC_HTTPD_H

#include <stddef.h>

typedef struct httpd httpd_t;

/* Listens on `addr` ("127.0.0.1:9180"). 0 or NIRC_EIO/NIRC_EINVAL with err. */
int httpd_start(const char *addr, httpd_t **out, char *err, size_t errlen);
/* Replaces the document at `path` (copied). Up to 16 paths. */
int httpd_publish(httpd_t *h, const char *path, const char *content_type, const char *body,
                  size_t len);
/* A document made per request, in the HTTP thread, from the snapshot the
 * loop published last: render(snap, arg, conn, &len, &status) returns a
 * malloc'd body (NULL: out of memory) and may set *status (200 unless
 * told); arg(conn, "key") is a query parameter of the request, or NULL.
 * It runs under the lock the loop publishes through: keep it to copying
 * out of the snapshot. `snap` is owned by httpd from now on (snap_free
 * frees it when it is replaced, at stop, or when publishing fails). */
typedef const char *(*httpd_arg_fn)(void *conn, const char *key);
typedef char *(*httpd_render_fn)(const void *snap, httpd_arg_fn arg, void *conn, size_t *len,
                                 unsigned *status);
int httpd_publish_dynamic(httpd_t *h, const char *path, const char *content_type, void *snap,
                          void (*snap_free)(void *), httpd_render_fn render);
/* Stops the thread and frees everything. */
void httpd_stop(httpd_t *h);

#endif
