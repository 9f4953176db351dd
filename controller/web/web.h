/* web: what the controller shows over HTTP — Prometheus metrics
 * (/metrics), the live status as JSON (/status.json), the routing map
 * (/map.svg) and a read-only status page (/). Built from live state on the
 * loop and handed to common/httpd.c, which serves it from its own threads.
 * Built on demand: a document nobody reads costs nothing (at 20,000 sites
 * building them all every second was most of an idle nircd's CPU). */
#ifndef NIRC_WEB_H
#define NIRC_WEB_H

#include "httpd.h"
#include "server.h"

/* Sets how fresh each document must be (WEB_FRESH_MS; the page and the
 * map, whose layout is costly, every n/50 s) and rebuilds those a client
 * waits for (httpd_take_wanted) on srv->http (NULL: off). The server calls
 * it through server_t.on_publish at start and when httpd wakes it. */
#define WEB_FRESH_MS 1000u
/* The documents, as counted in server_t.web_built. */
typedef enum {
  WEB_DOC_STATUS,
  WEB_DOC_METRICS,
  WEB_DOC_MAP,
  WEB_DOC_PAGE,
  WEB_DOC_COUNT
} web_doc_t;
void web_publish(server_t *srv);

#endif
