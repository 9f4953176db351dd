/* webstatus: /status.json with the filters and paging of nircctl status
 * as query parameters (?state=offline&problems=1&moved=1&hub=shaanxi&
 * match=gen-&limit=100&offset=200), answered in the HTTP thread from a
 * snapshot the loop publishes every second (web.c builds it): each site's
 * JSON object rendered once, and what the filters need (statusq). Without
 * parameters every site, as before. Every answer carries "counts" (the
 * link states of all sites) and "paging" (offset, returned, matched,
 * complete), so a page is never taken for the whole. */
#ifndef NIRC_WEBSTATUS_H
#define NIRC_WEBSTATUS_H

#include "httpd.h"
#include "statusq.h"

#include <stddef.h>

typedef struct {
  size_t n;
  statusq_site_t *facts; /* n; slug and share point into the arrays below */
  char (*slug)[SCENARIO_SLUG_MAX];
  route_share_t *shares; /* every site's shares, packed */
  char **rows;           /* n JSON objects (owned; NULL: none, e.g. removed) */
  size_t *by_slug;       /* the sites sorted by slug, for lookups */
  char *head;            /* the members before "sites", without braces */
  char **alarm;          /* n_alarms JSON objects (owned), oldest first */
  size_t *alarm_site;    /* the site each is about, or SIZE_MAX */
  size_t n_alarms;
} webstatus_t;

/* With parameters, the alarms carried besides those about the sites
 * listed (all of them without: the document as it always was). */
#define WEBSTATUS_ALARMS 100

/* An empty snapshot of n sites with room for n_shares shares, or NULL. */
webstatus_t *webstatus_new(size_t n, size_t n_shares);
/* Once facts, slug and shares are filled: builds the slug index. */
void webstatus_ready(webstatus_t *w);
void webstatus_free(void *w);
/* httpd_render_fn for /status.json (snap: a webstatus_t). */
char *webstatus_render(const void *snap, httpd_arg_fn arg, void *conn, size_t *len,
                       unsigned *status);

#endif
