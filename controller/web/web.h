/* web: what the controller shows over HTTP — Prometheus metrics
 * (/metrics), the live status as JSON (/status.json), the routing map
 * (/map.svg) and a read-only status page (/). Built from live state on the
 * loop and handed to common/httpd.c, which serves it from its own thread. */
#ifndef NIRC_WEB_H
#define NIRC_WEB_H

#include "httpd.h"
#include "server.h"

/* Rebuilds every document from srv and publishes them on srv->http (NULL:
 * off). The server calls it through server_t.on_publish. */
void web_publish(server_t *srv);

#endif
