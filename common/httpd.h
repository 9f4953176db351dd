/* httpd: a read-only HTTP endpoint for metrics and status pages, on
 * libmicrohttpd.
 *
 * The daemon serves from its own threads; the event loop never waits on an
 * HTTP client. The loop *publishes* documents (a path, a content type, the
 * bytes, or a snapshot rendered per request) and the HTTP threads serve
 * the latest copy under a mutex. Nothing a client sends reaches the loop,
 * so a slow or hostile scraper cannot stall routing.
 *
 * A document may be made on demand (httpd_set_max_age): nobody reading
 * it costs the loop nothing. A request for a copy older than its maximum
 * age marks the path wanted, wakes the loop (httpd_on_demand) and waits
 * up to HTTPD_WAIT_MS for a newer one; the loop publishes the paths
 * httpd_take_wanted names. A loop that does not answer in time gets the
 * client a 503 that says so, never a stale copy passed off as current.
 *
 * At most 64 clients at once, 8 per address, each dropped after 10 s of
 * silence; one thread per client on poll, so any socket number works and
 * one client waiting for a fresh copy holds up no other. */
#ifndef NIRC_HTTPD_H
#define NIRC_HTTPD_H

#include <stddef.h>

typedef struct httpd httpd_t;

/* Listens on `addr` ("127.0.0.1:9180"). 0 or NIRC_EIO/NIRC_EINVAL with err. */
int httpd_start(const char *addr, httpd_t **out, char *err, size_t errlen);
/* Replaces the document at `path` (copied). Up to 16 paths. */
int httpd_publish(httpd_t *h, const char *path, const char *content_type, const char *body,
                  size_t len);
/* Publishes at `path` that the document could not be made: clients get
 * `why` as text with a 500 until a copy is published again (a waiting
 * client is answered at once, not left to time out). */
int httpd_publish_failed(httpd_t *h, const char *path, const char *why);
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
/* A client waits this long for a fresh copy of an on-demand document. */
#define HTTPD_WAIT_MS 3000u
/* Makes `path` an on-demand document: a copy published more than
 * max_age_ms before a request arrives is refreshed first (0: served as
 * published, the default). The path is served only once published. */
int httpd_set_max_age(httpd_t *h, const char *path, unsigned max_age_ms);
/* Who to wake when a client wants a fresh copy: wake(arg) runs in an HTTP
 * thread with httpd's lock held, so it must only signal (uv_async_send).
 * NULL stops waking (before the loop's handle closes). */
void httpd_on_demand(httpd_t *h, void (*wake)(void *arg), void *arg);
/* Whether a client waits for a fresh copy of `path`; clears the mark.
 * For the loop, after it was woken. */
int httpd_take_wanted(httpd_t *h, const char *path);
/* Stops the threads and frees everything. */
void httpd_stop(httpd_t *h);

#endif
