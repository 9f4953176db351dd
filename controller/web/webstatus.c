#include "webstatus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

webstatus_t *webstatus_new(size_t n, size_t n_shares) {
  webstatus_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->n = n;
  w->facts = calloc(n ? n : 1, sizeof *w->facts);
  w->slug = calloc(n ? n : 1, sizeof *w->slug);
  w->shares = calloc(n_shares ? n_shares : 1, sizeof *w->shares);
  w->rows = calloc(n ? n : 1, sizeof *w->rows);
  w->by_slug = calloc(n ? n : 1, sizeof *w->by_slug);
  if (!w->facts || !w->slug || !w->shares || !w->rows || !w->by_slug) {
    webstatus_free(w);
    return NULL;
  }
  return w;
}

static const webstatus_t *webstatus_sorting; /* qsort has no context argument */

static int webstatus_cmp(const void *a, const void *b) {
  return strcmp(webstatus_sorting->slug[*(const size_t *)a],
                webstatus_sorting->slug[*(const size_t *)b]);
}

void webstatus_ready(webstatus_t *w) {
  for (size_t i = 0; i < w->n; i++)
    w->by_slug[i] = i;
  webstatus_sorting = w; /* only the loop builds snapshots */
  qsort(w->by_slug, w->n, sizeof *w->by_slug, webstatus_cmp);
  webstatus_sorting = NULL;
}

void webstatus_free(void *p) {
  webstatus_t *w = p;
  if (!w) return;
  for (size_t i = 0; w->rows && i < w->n; i++)
    free(w->rows[i]);
  free(w->rows);
  free(w->facts);
  free(w->slug);
  free(w->shares);
  free(w->by_slug);
  free(w->head);
  for (size_t i = 0; w->alarm && i < w->n_alarms; i++)
    free(w->alarm[i]);
  free(w->alarm);
  free(w->alarm_site);
  free(w);
}

static size_t webstatus_find(void *ctx, const char *slug) {
  const webstatus_t *w = ctx;
  size_t lo = 0, hi = w->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(w->slug[w->by_slug[mid]], slug);
    if (c == 0) return w->by_slug[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return SIZE_MAX;
}

static bool webstatus_yes(const char *v) {
  return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

static int webstatus_count(const char *v, size_t *out) {
  if (!v) return 0;
  char *end = NULL;
  errno = 0;
  unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
  if (!end || *end || errno || x > 100000000ULL) return -1;
  *out = (size_t)x;
  return 0;
}

/* The request's filters and page; 0, or -1 with why. */
static int webstatus_query(httpd_arg_fn arg, void *conn, statusq_filter_t *f, char *why,
                           size_t len) {
  const char *st = arg(conn, "state");
  if (st) {
    char one[32];
    for (const char *p = st; *p;) {
      size_t l = strcspn(p, ",");
      snprintf(one, sizeof one, "%.*s", (int)(l < sizeof one - 1 ? l : sizeof one - 1), p);
      uint32_t bit = statusq_state_bit(one);
      if (!bit) {
        /* Echoed into JSON: anything but a state word's letters is shown
         * as '?', so the client's bytes cannot break the document. */
        for (char *c = one; *c; c++)
          if (!((*c >= 'a' && *c <= 'z') || *c == '-' || (*c >= '0' && *c <= '9'))) *c = '?';
        snprintf(why, len, "state '%s': one of online, stale, offline, never (comma-separated)",
                 one);
        return -1;
      }
      f->states |= bit;
      p += l;
      if (*p == ',') p++;
    }
  }
  f->problems = webstatus_yes(arg(conn, "problems"));
  f->moved = webstatus_yes(arg(conn, "moved"));
  f->hub = arg(conn, "hub");
  f->prefix = arg(conn, "match");
  if (webstatus_count(arg(conn, "limit"), &f->limit) != 0 ||
      webstatus_count(arg(conn, "offset"), &f->offset) != 0) {
    snprintf(why, len, "limit and offset are whole numbers");
    return -1;
  }
  return 0;
}

char *webstatus_render(const void *snap, httpd_arg_fn arg, void *conn, size_t *len,
                       unsigned *status) {
  const webstatus_t *w = snap;
  statusq_filter_t f = {0};
  char why[200];
  if (webstatus_query(arg, conn, &f, why, sizeof why) != 0) {
    char *body = malloc(sizeof why + 32);
    if (body) *len = (size_t)snprintf(body, sizeof why + 32, "{\"error\":\"%s\"}\n", why);
    *status = 400;
    return body;
  }
  statusq_result_t r;
  if (statusq_run(w->facts, w->n, webstatus_find, (void *)w, &f, &r) != 0) return NULL;
  char tail[512];
  int tl = snprintf(tail, sizeof tail,
                    ",\"counts\":{\"sites\":%zu,\"online\":%zu,\"stale\":%zu,"
                    "\"offline\":%zu,\"never_seen\":%zu,\"route_not_known\":%zu},\"paging\":"
                    "{\"offset\":%zu,\"returned\":%zu,\"matched\":%zu,\"complete\":%s}}",
                    r.live, r.count[SITE_ONLINE], r.count[SITE_STALE], r.count[SITE_OFFLINE],
                    r.count[SITE_NEVER_SEEN], r.route_unknown, f.offset, r.n_rows, r.matched,
                    f.offset == 0 && r.n_rows == r.matched ? "true" : "false");
  /* Which alarms: all without parameters; with them the oldest
   * WEBSTATUS_ALARMS and those about the sites listed ("alarms_total"
   * says how many are active). */
  bool any = arg(conn, "state") || arg(conn, "problems") || arg(conn, "moved") ||
             arg(conn, "hub") || arg(conn, "match") || arg(conn, "limit") || arg(conn, "offset");
  bool *listed = calloc(w->n ? w->n : 1, sizeof *listed), *take = calloc(w->n_alarms + 1, 1);
  if (!listed || !take) {
    free(listed);
    free(take);
    statusq_result_free(&r);
    return NULL;
  }
  for (size_t k = 0; k < r.n_rows; k++)
    listed[r.rows[k]] = true;
  size_t alarms_len = 2;
  for (size_t k = 0; k < w->n_alarms; k++) {
    take[k] = !any || k < WEBSTATUS_ALARMS || (w->alarm_site[k] < w->n && listed[w->alarm_site[k]]);
    if (take[k]) alarms_len += strlen(w->alarm[k]) + 1;
  }
  free(listed);
  char total_text[48];
  snprintf(total_text, sizeof total_text, ",\"alarms_total\":%zu", w->n_alarms);
  /* "{" head "," "\"sites\":[" rows "],\"alarms\":" alarms tail, with room to spare. */
  size_t total = strlen(w->head ? w->head : "") + alarms_len + (size_t)tl + 96;
  for (size_t k = 0; k < r.n_rows; k++)
    total += (w->rows[r.rows[k]] ? strlen(w->rows[r.rows[k]]) : 4) + 1;
  char *body = malloc(total);
  if (!body) {
    free(take);
    statusq_result_free(&r);
    return NULL;
  }
  size_t u = (size_t)snprintf(body, total, "{%s%s\"sites\":[", w->head ? w->head : "",
                              w->head && *w->head ? "," : "");
  for (size_t k = 0; k < r.n_rows; k++) {
    const char *row = w->rows[r.rows[k]] ? w->rows[r.rows[k]] : "null";
    size_t l = strlen(row);
    if (k) body[u++] = ',';
    memcpy(body + u, row, l);
    u += l;
  }
  u += (size_t)snprintf(body + u, total - u, "],\"alarms\":[");
  for (size_t k = 0, first = 1; k < w->n_alarms; k++) {
    if (!take[k]) continue;
    if (!first) body[u++] = ',';
    first = 0;
    size_t l = strlen(w->alarm[k]);
    memcpy(body + u, w->alarm[k], l);
    u += l;
  }
  u += (size_t)snprintf(body + u, total - u, "]%s%s", total_text, tail);
  free(take);
  *len = u;
  statusq_result_free(&r);
  return body;
}
