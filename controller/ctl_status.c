/* ctl_status: the status table, `site` and `next` for people and as JSON
 * (see ctl_status.h). */
#include "ctl_status.h"

#include "clock.h"
#include "ctl_alarms.h"
#include "ctl_history.h"
#include "ctl_sites.h"
#include "report.h"
#include "safetext.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- text ---- */

/* Escaped text in one of a few rotating buffers (one printf may use up to
 * CTL_ST_SLOTS of them). */
#define CTL_ST_SLOTS 8
#define CTL_ST_LEN   1024
static const char *ctl_st_esc(const char *s) {
  static char ring[CTL_ST_SLOTS][CTL_ST_LEN];
  static unsigned next;
  char *b = ring[next++ % CTL_ST_SLOTS];
  safetext_escape(s ? s : "", b, sizeof ring[0]);
  return b;
}

/* Decodes one UTF-8 character at s (already valid: escaped text); returns
 * its length and the code point. */
static size_t ctl_utf8(const unsigned char *s, uint32_t *cp) {
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  if ((s[0] & 0xe0) == 0xc0 && s[1]) {
    *cp = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
    return 2;
  }
  if ((s[0] & 0xf0) == 0xe0 && s[1] && s[2]) {
    *cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    return 3;
  }
  if ((s[0] & 0xf8) == 0xf0 && s[1] && s[2] && s[3]) {
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
          ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
    return 4;
  }
  *cp = 0xfffd;
  return 1;
}

/* Columns of one code point: the East Asian Wide and Fullwidth blocks
 * (Unicode's EastAsianWidth W and F, by block) take two; combining marks
 * and zero-width characters none. */
static unsigned ctl_cp_width(uint32_t c) {
  if ((c >= 0x0300 && c <= 0x036f) || (c >= 0x200b && c <= 0x200f) || c == 0xfeff) return 0;
  if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0x303e) ||
      (c >= 0x3041 && c <= 0x33ff) || (c >= 0x3400 && c <= 0x4dbf) ||
      (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xa000 && c <= 0xa4cf) ||
      (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
      (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
      (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
      (c >= 0x20000 && c <= 0x3fffd))
    return 2;
  return 1;
}

size_t ctl_text_width(const char *s) {
  size_t w = 0;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
    uint32_t cp;
    p += ctl_utf8(p, &cp);
    w += ctl_cp_width(cp);
  }
  return w;
}

void ctl_text_pad(const char *s, size_t cols, char *buf, size_t len) {
  size_t o = 0, w = 0;
  if (!len) return;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
    uint32_t cp;
    size_t n = ctl_utf8(p, &cp);
    unsigned cw = ctl_cp_width(cp);
    if (w + cw > cols || o + n + 1 > len) break;
    memcpy(buf + o, p, n);
    o += n;
    w += cw;
    p += n;
  }
  for (; w < cols && o + 1 < len; w++)
    buf[o++] = ' ';
  buf[o] = '\0';
}

const char *ctl_link_word(Nirc__LinkState s) {
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "online";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "stale";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "offline";
  case NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN: return "never-seen";
  default: return "unknown";
  }
}

static const char *ctl_link_colour(Nirc__LinkState s, bool colour) {
  if (!colour) return "";
  switch (s) {
  case NIRC__LINK_STATE__LINK_STATE_ONLINE: return "\033[32m";
  case NIRC__LINK_STATE__LINK_STATE_STALE: return "\033[33m";
  case NIRC__LINK_STATE__LINK_STATE_OFFLINE: return "\033[31m";
  default: return "\033[2m";
  }
}

/* "home", "shaanxi", "hubei 700‰, henan 300‰" (escaped), or "unknown". */
static void ctl_route(const Nirc__SiteStatus *s, char *buf, size_t len) {
  buf[0] = '\0';
  if (s->route_unknown || s->route_unheard) {
    /* Its agent has not confirmed a route at the PBX, or has not said
     * Hello to this controller: not home. */
    snprintf(buf, len, "unknown");
    return;
  }
  size_t used = 0;
  for (size_t i = 0; i < s->n_route; i++) {
    const Nirc__RouteShare *r = s->route[i];
    int n;
    if (s->n_route == 1 && r->permille == 1000)
      n = snprintf(buf + used, len - used, "%s",
                   strcmp(r->site, s->slug) == 0 ? "home" : ctl_st_esc(r->site));
    else
      n = snprintf(buf + used, len - used, "%s%s %u‰", i ? ", " : "", ctl_st_esc(r->site),
                   r->permille);
    if (n < 0 || (size_t)n >= len - used) break;
    used += (size_t)n;
  }
}

/* The status table's ROUTE cell: the route, marked when its agent applied
 * it without a read-back of the PBX, or "unknown" marked when its agent
 * has not said Hello to this controller (the legend under the table says
 * what each mark means). Returns which mark it has. */
#define CTL_ROUTE_UNVERIFIED " (unverified)"
#define CTL_ROUTE_UNHEARD    " (not heard)"
#define CTL_ROUTE_MIN_WIDTH  22
typedef enum { CTL_MARK_NONE = 0, CTL_MARK_UNVERIFIED, CTL_MARK_UNHEARD } ctl_mark_t;
static ctl_mark_t ctl_route_cell(const Nirc__SiteStatus *s, char *buf, size_t len) {
  ctl_route(s, buf, len);
  ctl_mark_t mark = s->route_unheard                           ? CTL_MARK_UNHEARD
                    : s->route_unverified && !s->route_unknown ? CTL_MARK_UNVERIFIED
                                                               : CTL_MARK_NONE;
  const char *word = mark == CTL_MARK_UNHEARD ? CTL_ROUTE_UNHEARD
                     : mark                   ? CTL_ROUTE_UNVERIFIED
                                              : "";
  size_t used = strlen(buf);
  if (used + strlen(word) < len) memcpy(buf + used, word, strlen(word) + 1);
  return mark;
}

void ctl_status_when(int64_t ms, int64_t now_ms, const char *tz, char *buf, size_t len) {
  char full[40]; /* "2020-01-23 03:12:05" */
  ctl_history_time(ms, tz, full, sizeof full);
  if (strlen(full) < 16) {
    snprintf(buf, len, "%s", full);
    return;
  }
  /* Within a day an hour and minute say it; beyond, the date as well. */
  int64_t ahead = ms - now_ms;
  if (ahead > -86400000 && ahead < 86400000)
    snprintf(buf, len, "%.5s", full + 11);
  else
    snprintf(buf, len, "%.5s %.5s", full + 5, full + 11);
}

/* ---- filters ---- */

bool ctl_status_route_known(const Nirc__SiteStatus *s) {
  return !s->route_unknown && !s->route_unheard;
}

size_t ctl_status_not_known(const Nirc__StatusReply *st) {
  size_t rows = 0;
  for (size_t i = 0; i < st->n_sites; i++)
    rows += !ctl_status_route_known(st->sites[i]);
  return st->route_not_known > rows ? st->route_not_known : rows;
}

bool ctl_status_moved(const Nirc__StatusReply *st, size_t i, unsigned *senders) {
  const Nirc__SiteStatus *s = st->sites[i];
  unsigned in = 0;
  /* The controller counts the senders of every site (a page cannot); a
   * reply without them is counted here from its own rows, of the routes
   * known (a route not known sends nothing anyone knows of). */
  if (st->n_senders == st->n_sites)
    in = st->senders[i];
  else
    for (size_t j = 0; j < st->n_sites; j++) {
      const Nirc__SiteStatus *o = st->sites[j];
      if (j == i || !ctl_status_route_known(o)) continue;
      for (size_t k = 0; k < o->n_route; k++)
        if (strcmp(o->route[k]->site, s->slug) == 0 && o->route[k]->permille) in++;
    }
  if (senders) *senders = in;
  if (!ctl_status_route_known(s)) return in > 0;
  for (size_t k = 0; k < s->n_route; k++)
    if (strcmp(s->route[k]->site, s->slug) != 0 && s->route[k]->permille) return true;
  return in > 0;
}

/* The alarms of the reply being printed, by subject (then in the reply's
 * order): with 20,000 sites and 20,000 alarms a scan per row is 400
 * million compares. Built by the printers for their reply and dropped
 * when they return. */
static const Nirc__StatusReply *ctl_alarm_idx_of;
static size_t *ctl_alarm_idx;

static const char *ctl_alarm_subject(const Nirc__StatusReply *st, size_t k) {
  return st->alarms[k]->subject ? st->alarms[k]->subject : "";
}

static int ctl_alarm_cmp(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  int c = strcmp(ctl_alarm_subject(ctl_alarm_idx_of, x), ctl_alarm_subject(ctl_alarm_idx_of, y));
  return c ? c : (x > y) - (x < y);
}

static void ctl_alarm_index(const Nirc__StatusReply *st) {
  free(ctl_alarm_idx);
  ctl_alarm_idx = NULL;
  ctl_alarm_idx_of = NULL;
  if (!st || st->n_alarms < 16) return; /* a scan is as quick */
  ctl_alarm_idx = malloc(st->n_alarms * sizeof *ctl_alarm_idx);
  if (!ctl_alarm_idx) return;
  for (size_t k = 0; k < st->n_alarms; k++)
    ctl_alarm_idx[k] = k;
  ctl_alarm_idx_of = st;
  qsort(ctl_alarm_idx, st->n_alarms, sizeof *ctl_alarm_idx, ctl_alarm_cmp);
}

bool ctl_status_problem(const Nirc__StatusReply *st, size_t i, char *why, size_t len) {
  const Nirc__SiteStatus *s = st->sites[i];
  char buf[512] = "";
  size_t used = 0;
#define CTL_WHY(...)                                                                               \
  do {                                                                                             \
    if (used < sizeof buf)                                                                         \
      used += (size_t)snprintf(buf + used, sizeof buf - used, "%s", used ? ", " : "");             \
    if (used < sizeof buf) used += (size_t)snprintf(buf + used, sizeof buf - used, __VA_ARGS__);   \
  } while (0)
  if (s->link_state != NIRC__LINK_STATE__LINK_STATE_ONLINE)
    CTL_WHY("%s", ctl_link_word(s->link_state));
  if (s->last_report && s->last_report->pbx_unreadable) CTL_WHY("PBX unreadable");
  if (s->excluded) CTL_WHY("excluded");
  if (s->note && *s->note) CTL_WHY("note");
  if (ctl_alarm_idx_of == st) {
    size_t lo = 0, hi = st->n_alarms; /* the first alarm about the site */
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (strcmp(ctl_alarm_subject(st, ctl_alarm_idx[mid]), s->slug) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    for (; lo < st->n_alarms && strcmp(ctl_alarm_subject(st, ctl_alarm_idx[lo]), s->slug) == 0;
         lo++)
      CTL_WHY("alarm %s", st->alarms[ctl_alarm_idx[lo]]->kind);
  } else {
    for (size_t k = 0; k < st->n_alarms; k++)
      if (st->alarms[k]->subject && strcmp(st->alarms[k]->subject, s->slug) == 0)
        CTL_WHY("alarm %s", st->alarms[k]->kind);
  }
#undef CTL_WHY
  if (why) snprintf(why, len, "%s", buf);
  return used > 0;
}

static bool ctl_status_shown(const Nirc__StatusReply *st, size_t i, const ctl_status_opts_t *o) {
  if (o->moved && !ctl_status_moved(st, i, NULL)) return false;
  if (o->problems && !ctl_status_problem(st, i, NULL, 0)) return false;
  return true;
}

/* ---- the rule column ---- */

void ctl_status_rule(const Nirc__StatusReply *st, size_t i, const char *tz, bool with_detail,
                     char *buf, size_t len) {
  const Nirc__SiteStatus *s = st->sites[i];
  const char *kind = s->rule_kind ? s->rule_kind : "";
  if (!*kind) {
    unsigned senders = 0;
    ctl_status_moved(st, i, &senders);
    if (senders)
      snprintf(buf, len, "hub for %u site%s", senders, senders == 1 ? "" : "s");
    else
      snprintf(buf, len, "%s",
               ctl_st_esc(s->active_rule && *s->active_rule ? s->active_rule : "default"));
    return;
  }
  char name[160], until[48] = "";
  /* Schedules and overflow rules by name, cutovers by id (they have none). */
  if (s->rule_name && *s->rule_name)
    snprintf(name, sizeof name, "%s %s", kind, ctl_st_esc(s->rule_name));
  else
    snprintf(name, sizeof name, "%s %" PRIu64, kind, s->rule_id);
  if (s->rule_end_ms > 0) {
    char when[32];
    ctl_status_when(s->rule_end_ms, st->server_time_ms, tz, when, sizeof when);
    snprintf(until, sizeof until, " until %s", when);
  }
  if (s->excluded) {
    snprintf(buf, len, "excluded from %s after a failed move: nircctl readmit %s", name,
             ctl_st_esc(s->slug));
    return;
  }
  const char *reason = s->rule_reason && *s->rule_reason ? ctl_st_esc(s->rule_reason) : NULL;
  const char *detail =
      with_detail && s->rule_detail && *s->rule_detail ? ctl_st_esc(s->rule_detail) : NULL;
  snprintf(buf, len, "%s%s%s%s%s%s", name, until, reason ? ": " : "", reason ? reason : "",
           detail ? ", " : "", detail ? detail : "");
}

/* ---- status ---- */

bool ctl_status_complete(const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  return o->offset == 0 && st->matched <= st->n_sites;
}

size_t ctl_status_total(const Nirc__StatusReply *st) {
  size_t c = (size_t)st->count_online + st->count_stale + st->count_offline + st->count_never_seen;
  return c ? c : st->n_sites;
}

/* 20031 as "20,031": counts people read at 3 a.m. */
static const char *ctl_num(size_t n) {
  static char ring[8][32];
  static unsigned next;
  char *b = ring[next++ % 8], raw[32];
  int len = snprintf(raw, sizeof raw, "%zu", n), o = 0;
  for (int i = 0; i < len; i++) {
    if (i && (len - i) % 3 == 0) b[o++] = ',';
    b[o++] = raw[i];
  }
  b[o] = '\0';
  return b;
}

/* The counts of every site, the line every status view ends (or, in the
 * summary, starts) with. */
static void ctl_status_counts(FILE *out, const Nirc__StatusReply *st, size_t online, size_t stale,
                              size_t offline) {
  size_t never = 0;
  if (st->count_online + st->count_stale + st->count_offline + st->count_never_seen) {
    online = st->count_online;
    stale = st->count_stale;
    offline = st->count_offline;
    never = st->count_never_seen;
  }
  if (never)
    fprintf(out, "%s sites: %s online, %s stale, %s offline, %s never seen",
            ctl_num(online + stale + offline + never), ctl_num(online), ctl_num(stale),
            ctl_num(offline), ctl_num(never));
  else
    fprintf(out, "%s sites: %s online, %s stale, %s offline or never seen",
            ctl_num(online + stale + offline), ctl_num(online), ctl_num(stale), ctl_num(offline));
  fprintf(out, "  (controller %s, epoch %llu)\n", ctl_st_esc(st->controller_node),
          (unsigned long long)st->epoch);
}

/* After a page: which rows these are of how many, and the command for the
 * next page, so a partial view never passes for the whole. */
static void ctl_status_page_note(FILE *out, const Nirc__StatusReply *st,
                                 const ctl_status_opts_t *o) {
  if (ctl_status_complete(st, o)) return;
  const char *f = o->filters && *o->filters ? o->filters : "";
  size_t first = o->offset + 1, last = o->offset + st->n_sites, page = st->n_sites;
  if (o->summary) {
    fprintf(out, "\n%s problem site%s", ctl_num(st->matched), st->matched == 1 ? "" : "s");
    if (st->matched > st->n_sites)
      fprintf(out, ", and %s more: nircctl status --problems --limit 100 --offset %zu",
              ctl_num(st->matched - st->n_sites), last);
    fprintf(out, "\nToo many sites for a row each. Page through them: nircctl status --limit 100 "
                 "--offset 0 (filters: --state offline, --moved, --hub HUB, --match PREFIX); "
                 "every site: nircctl status --all\n");
    return;
  }
  if (st->n_sites == 0)
    fprintf(out, "\nno rows: offset %s is past the %s matching sites\n", ctl_num(o->offset),
            ctl_num(st->matched));
  else
    fprintf(out, "\nshowing %s-%s of %s matching sites%s%s\n", ctl_num(first), ctl_num(last),
            ctl_num(st->matched), *f ? " " : "", f);
  if (last < st->matched)
    fprintf(out, "next page: nircctl status%s%s --limit %zu --offset %zu (every one: --all)\n",
            *f ? " " : "", f, page ? page : 100, last);
}

/* Under the table: the sites whose route is not known, which --moved,
 * --hub and "hub for N sites" (routes known here only) could not judge:
 * unknown is neither home nor away, and never silently left out. `shown`
 * of them are rows of the table all the same (a hub known to receive). */
static void ctl_status_not_known_note(FILE *out, const Nirc__StatusReply *st,
                                      const ctl_status_opts_t *o, size_t hubrows, size_t shown) {
  size_t m = ctl_status_not_known(st);
  if ((o->moved || o->hub) && m >= shown) m -= shown;
  if (!m || (!o->moved && !o->hub && !hubrows)) return;
  const char *one = m == 1 ? "site's route is" : "sites' routes are";
  if (o->moved || o->hub)
    fprintf(out,
            "%s %s not known here (not heard, or unknown at the PBX) and not in this list: "
            "their calls may be away from home (they are among nircctl status --problems)\n",
            ctl_num(m), one);
  else
    fprintf(out,
            "\"hub for N sites\" counts the routes known here: %s %s not known (not heard, or "
            "unknown at the PBX; they are among nircctl status --problems)\n",
            ctl_num(m), one);
}

void ctl_status_print(FILE *out, const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  ctl_alarm_index(st);
  size_t online = 0, stale = 0, offline = 0, shown = 0, unmeasured = 0, unreadable = 0;
  size_t unverified = 0, unheard = 0, hubrows = 0, shown_unknown = 0;
  char head[32], route[240];
  /* ROUTE is as wide as its widest cell, so RULE stays in one column when
   * a route is split or marked unverified. */
  unsigned routew = CTL_ROUTE_MIN_WIDTH;
  for (size_t i = 0; i < st->n_sites; i++) {
    if (!ctl_status_shown(st, i, o)) continue;
    ctl_route_cell(st->sites[i], route, sizeof route);
    unsigned w = (unsigned)ctl_text_width(route);
    if (w > routew) routew = w;
  }
  if (o->summary) {
    ctl_status_counts(out, st, 0, 0, 0);
    fprintf(out, "\nProblem sites (not online, PBX unreadable, a note, excluded or alarmed):\n");
  }
  ctl_text_pad(o->zh ? "名称" : "NAME", 14, head, sizeof head);
  /* AGENTS is as wide as its heading: at 12 the heading pushed ROUTE and
   * RULE one column right of their values. */
  fprintf(out, "%-12s %s %-10s %6s %6s %8s %13s %6s  %-*s %s\n", "SITE", head, "LINK", "AGE",
          "QUEUE", "WAIT", "AGENTS in/rdy", "SL", (int)routew, "ROUTE", "RULE");
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    if (s->link_state == NIRC__LINK_STATE__LINK_STATE_ONLINE)
      online++;
    else if (s->link_state == NIRC__LINK_STATE__LINK_STATE_STALE)
      stale++;
    else
      offline++;
    if (!ctl_status_shown(st, i, o)) continue;
    shown++;
    const Nirc__LoadReport *r = s->last_report;
    char age[16] = "-", queue[16] = "-", wait[16] = "-", agents[24] = "-", sl[16] = "-";
    char rule[600], name[64];
    if (s->report_age_ms >= 0) {
      if (s->report_age_ms < 100000)
        snprintf(age, sizeof age, "%.1fs", s->report_age_ms / 1000.0);
      else
        snprintf(age, sizeof age, "%llds", (long long)(s->report_age_ms / 1000));
    }
    if (r && r->pbx_unreadable) {
      snprintf(queue, sizeof queue, "PBX?");
      snprintf(wait, sizeof wait, "PBX?");
      snprintf(agents, sizeof agents, "PBX?");
      snprintf(sl, sizeof sl, "PBX?");
      unreadable++;
    } else if (r) {
      /* Unknown is not zero: a figure the site does not measure is "?",
       * short enough for its column ("not measured" pushed the rest of the
       * row out of line); the legend under the table says what it means. */
      uint32_t nm = r->not_measured;
      if (nm & REPORT_NM_QUEUE)
        snprintf(queue, sizeof queue, "?");
      else
        snprintf(queue, sizeof queue, "%u", r->calls_in_queue);
      if (nm & REPORT_NM_WAIT)
        snprintf(wait, sizeof wait, "?");
      else
        snprintf(wait, sizeof wait, "%.0fs", r->longest_wait_ms / 1000.0);
      if ((nm & REPORT_NM_LOGGED_IN) && (nm & REPORT_NM_READY))
        snprintf(agents, sizeof agents, "?");
      else if (nm & REPORT_NM_LOGGED_IN)
        snprintf(agents, sizeof agents, "?/%u", r->agents_ready);
      else if (nm & REPORT_NM_READY)
        snprintf(agents, sizeof agents, "%u/?", r->agents_logged_in);
      else
        snprintf(agents, sizeof agents, "%u/%u", r->agents_logged_in, r->agents_ready);
      if (nm & REPORT_NM_SL)
        snprintf(sl, sizeof sl, "?");
      else if (r->calls_offered > 0)
        snprintf(sl, sizeof sl, "%.0f%%", 100.0 * r->answered_within_threshold / r->calls_offered);
      if (nm &
          (REPORT_NM_QUEUE | REPORT_NM_WAIT | REPORT_NM_LOGGED_IN | REPORT_NM_READY | REPORT_NM_SL))
        unmeasured++;
    }
    ctl_mark_t mark = ctl_route_cell(s, route, sizeof route);
    unverified += mark == CTL_MARK_UNVERIFIED;
    unheard += mark == CTL_MARK_UNHEARD;
    ctl_status_rule(st, i, o->tz, true, rule, sizeof rule);
    hubrows += strncmp(rule, "hub for ", 8) == 0;
    shown_unknown += !ctl_status_route_known(s);
    /* Padded by columns, not bytes: a Chinese name is two columns a
     * character. */
    ctl_text_pad(ctl_st_esc(o->zh && s->name_zh && *s->name_zh ? s->name_zh : s->name_en), 14, name,
                 sizeof name);
    char routecol[512];
    ctl_text_pad(route, routew, routecol, sizeof routecol);
    fprintf(out, "%-12s %s %s%-10s%s %6s %6s %8s %13s %6s  %s %s\n", ctl_st_esc(s->slug), name,
            ctl_link_colour(s->link_state, o->colour), ctl_link_word(s->link_state),
            o->colour ? "\033[0m" : "", age, queue, wait, agents, sl, routecol, rule);
  }
  if (unmeasured)
    fprintf(out, "? not measured: the site's PBX or adapter does not count it "
                 "(nircctl site SITE names each)\n");
  if (unreadable) fprintf(out, "PBX? the site's PBX could not be read: no figure is known\n");
  if (unverified)
    fprintf(out, "(unverified) the PBX took the route but could not be read back (an exec adapter "
                 "without verify_cmd): nircctl site SITE\n");
  if (unheard)
    fprintf(out,
            "(not heard) its agent has not connected to this controller since it took over: "
            "the route the PBX holds is not known here (check the agent: nircctl site SITE)\n");
  ctl_status_not_known_note(out, st, o, hubrows, shown_unknown);
  const char *f = o->filters && *o->filters ? o->filters : NULL;
  if (!ctl_status_complete(st, o)) {
    ctl_status_page_note(out, st, o);
    if (!o->summary) ctl_status_counts(out, st, online, stale, offline);
  } else if (f) {
    fprintf(out, "\n%zu of %s sites shown (%s)\n", shown, ctl_num(ctl_status_total(st)), f);
    ctl_status_counts(out, st, online, stale, offline);
  } else {
    fputc('\n', out);
    ctl_status_counts(out, st, online, stale, offline);
  }
  ctl_alarms_summary(out, st->alarms, st->n_alarms, st->alarms_total, 5, o->tz);
  ctl_alarm_index(NULL);
}

json_t *ctl_status_json(const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  ctl_alarm_index(st);
  json_t *sites = json_array();
  for (size_t i = 0; i < st->n_sites; i++) {
    if (!ctl_status_shown(st, i, o)) continue;
    const Nirc__SiteStatus *s = st->sites[i];
    json_t *route = json_array();
    for (size_t j = 0; j < s->n_route; j++)
      json_array_append_new(route, json_pack("{s:s, s:I}", "site", s->route[j]->site, "permille",
                                             (json_int_t)s->route[j]->permille));
    json_t *x = json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:s, s:s, s:o, s:o}", "slug",
                          s->slug, "name_en", s->name_en, "name_zh", s->name_zh, "is_hub",
                          s->is_hub, "link", ctl_link_word(s->link_state), "state_since_ms",
                          (json_int_t)s->state_since_ms, "report_age_ms",
                          (json_int_t)s->report_age_ms, "peer", s->peer_address, "active_rule",
                          s->active_rule, "route", route, "load", report_to_json(s->last_report));
    if (!x) continue;
    /* Unknown is not home: null, as every figure nobody knows. */
    bool unknown = s->route_unknown || s->route_unheard;
    if (unknown) json_object_set_new(x, "route", json_null());
    json_object_set_new(x, "route_unknown", json_boolean(unknown));
    json_object_set_new(x, "route_unheard", json_boolean(s->route_unheard));
    json_object_set_new(x, "route_unverified", json_boolean(s->route_unverified));
    json_object_set_new(x, "held_home", json_boolean(s->held_home));
    json_object_set_new(x, "inbound_credited_total",
                        json_integer((json_int_t)s->inbound_credited_total));
    if (s->note && *s->note) json_object_set_new(x, "note", json_string(s->note));
    if (s->verification && *s->verification)
      json_object_set_new(x, "verification", json_string(s->verification));
    /* The rule as data: its end is a number (business clock), for the
     * caller to show in its own zone. */
    json_t *rule = json_null();
    if (s->rule_kind && *s->rule_kind)
      rule = json_pack("{s:s, s:I, s:s, s:s, s:I, s:s, s:b}", "kind", s->rule_kind, "id",
                       (json_int_t)s->rule_id, "name", s->rule_name ? s->rule_name : "", "reason",
                       s->rule_reason ? s->rule_reason : "", "end_ms", (json_int_t)s->rule_end_ms,
                       "detail", s->rule_detail ? s->rule_detail : "", "excluded", s->excluded);
    json_object_set_new(x, "rule", rule ? rule : json_null());
    unsigned senders = 0;
    /* What --moved keeps: a route not known is not (route_unknown beside
     * it, counts.route_not_known over every site). */
    json_object_set_new(x, "moved", json_boolean(ctl_status_moved(st, i, &senders)));
    json_object_set_new(x, "receives_from", json_integer(senders));
    char why[512];
    json_t *probs = json_array();
    if (ctl_status_problem(st, i, why, sizeof why)) {
      char *save = NULL;
      for (char *t = strtok_r(why, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(probs, json_string(t[0] == ' ' ? t + 1 : t));
    }
    json_object_set_new(x, "problems", probs);
    ctl_site_pbx_json_set(x, s); /* `site` only */
    if (s->n_hubs) {
      json_t *hubs = json_array();
      for (size_t k = 0; k < s->n_hubs; k++) {
        const Nirc__HubState *h = s->hubs[k];
        json_array_append_new(hubs, json_pack("{s:s, s:I, s:s, s:I, s:b, s:s}", "slug", h->slug,
                                              "permille", (json_int_t)h->permille, "link",
                                              ctl_link_word(h->link_state), "report_age_ms",
                                              (json_int_t)h->report_age_ms, "pbx_unreadable",
                                              h->pbx_unreadable, "note", h->note ? h->note : ""));
      }
      json_object_set_new(x, "hubs", hubs);
    }
    json_array_append_new(sites, x);
  }
  json_t *alarms = json_array();
  for (size_t i = 0; i < st->n_alarms; i++)
    json_array_append_new(alarms, ctl_alarm_json(st->alarms[i]));
  json_t *top = json_pack("{s:s, s:I, s:I, s:o, s:o}", "controller", st->controller_node, "epoch",
                          (json_int_t)st->epoch, "server_time_ms", (json_int_t)st->server_time_ms,
                          "sites", sites, "alarms", alarms);
  if (top && (o->moved || o->problems)) {
    json_t *f = json_array();
    if (o->moved) json_array_append_new(f, json_string("moved"));
    if (o->problems) json_array_append_new(f, json_string("problems"));
    json_object_set_new(top, "filters", f);
  }
  if (top) {
    /* Which part of the matching sites this is, and the link states of
     * every site: a script sees a partial list for what it is. */
    json_object_set_new(
        top, "counts",
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "sites", (json_int_t)ctl_status_total(st), "online",
                  (json_int_t)st->count_online, "stale", (json_int_t)st->count_stale, "offline",
                  (json_int_t)st->count_offline, "never_seen", (json_int_t)st->count_never_seen));
    json_object_set_new(json_object_get(top, "counts"), "route_not_known",
                        json_integer((json_int_t)ctl_status_not_known(st)));
    json_object_set_new(top, "alarms_total",
                        json_integer((json_int_t)(st->alarms_total > st->n_alarms ? st->alarms_total
                                                                                  : st->n_alarms)));
    json_object_set_new(
        top, "paging",
        json_pack("{s:I, s:I, s:I, s:b}", "offset", (json_int_t)o->offset, "returned",
                  (json_int_t)st->n_sites, "matched",
                  (json_int_t)(st->matched > st->n_sites ? st->matched : st->n_sites), "complete",
                  ctl_status_complete(st, o)));
  }
  ctl_alarm_index(NULL);
  return top;
}

/* ---- one site: the chain of reasons ---- */

/* The agents line of `site`: each figure the report measured with its
 * number, and exactly the ones it did not named as not measured. An
 * adapter may count who is ready but not who is talking: "(ready,
 * talking, not ready: not measured)" for that hid a ready count it sent. */
static void ctl_site_agents(const Nirc__LoadReport *r, char *buf, size_t len) {
  static const struct {
    uint32_t bit;
    const char *name;
  } part[] = {{REPORT_NM_READY, "ready"},
              {REPORT_NM_TALKING, "talking"},
              {REPORT_NM_NOT_READY, "not ready"}};
  const uint32_t value[] = {r->agents_ready, r->agents_talking, r->agents_not_ready};
  uint32_t nm = r->not_measured;
  if ((nm & REPORT_NM_AGENTS) == REPORT_NM_AGENTS) {
    snprintf(buf, len, "not measured");
    return;
  }
  char got[120] = "", missing[80] = "";
  size_t ng = 0, nmiss = 0;
  for (size_t k = 0; k < 3; k++) {
    if (nm & part[k].bit)
      nmiss += (size_t)snprintf(missing + nmiss, sizeof missing - nmiss, "%s%s", nmiss ? ", " : "",
                                part[k].name);
    else
      ng += (size_t)snprintf(got + ng, sizeof got - ng, "%s%u %s", ng ? ", " : "", value[k],
                             part[k].name);
  }
  char in[40];
  if (nm & REPORT_NM_LOGGED_IN)
    snprintf(in, sizeof in, "logged in not measured");
  else
    snprintf(in, sizeof in, "%u logged in", r->agents_logged_in);
  snprintf(buf, len, "%s%s%s%s%s%s", in, ng ? ": " : "", got, nmiss ? " (" : "", missing,
           nmiss ? ": not measured)" : "");
}

static void ctl_site_body(FILE *out, const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  const Nirc__SiteStatus *s = st->sites[0];
  const Nirc__LoadReport *r = s->last_report;
  char route[200], rule[600];
  ctl_route(s, route, sizeof route);
  fprintf(out, "%s — %s %s%s\n", ctl_st_esc(s->slug), ctl_st_esc(s->name_en),
          ctl_st_esc(s->name_zh), s->is_hub ? " (hub)" : "");
  /* A site never seen has no "since" (state_since_ms 0): "since 0 s" said
   * it had just changed. */
  char since[80] = "(not seen since this controller took over)";
  if (s->state_since_ms)
    snprintf(since, sizeof since, "(since %lld s)",
             (long long)((clock_real_ms() - s->state_since_ms) / 1000));
  fprintf(out, "  link          %s%s%s %s\n", ctl_link_colour(s->link_state, o->colour),
          ctl_link_word(s->link_state), o->colour ? "\033[0m" : "", since);
  fprintf(out, "  peer          %s\n",
          s->peer_address && *s->peer_address ? ctl_st_esc(s->peer_address) : "-");
  fprintf(out, "  route         %s%s\n", route,
          s->route_unheard
              ? " (not heard: its agent has not connected to this controller since it took over;"
                " check the agent)"
          : s->route_unknown    ? " (its agent has not confirmed a route at the PBX: see its alarm)"
          : s->route_unverified ? ": applied, unverified (no read-back of the PBX)"
                                : "");
  /* Why it routes so, step by step: the rule and its end, what keeps it
   * from the rule's first hub, what the engine holds back, an exclusion
   * and how to end it, the alarms about it, and the hubs it uses. */
  ctl_status_rule(st, 0, o->tz, false, rule, sizeof rule);
  fprintf(out, "  rule          %s\n", rule);
  if (s->rule_kind && *s->rule_kind) {
    char ends[96] = "open-ended (until an operator ends it, or its thresholds release it)";
    if (s->rule_end_ms > 0) {
      char full[40];
      ctl_history_time(s->rule_end_ms, o->tz, full, sizeof full);
      snprintf(ends, sizeof ends, "%.16s (%s)", full, o->tz);
    }
    fprintf(out, "  rule ends     %s\n", ends);
  }
  if (s->rule_detail && *s->rule_detail)
    fprintf(out, "  why here      %s\n", ctl_st_esc(s->rule_detail));
  if (s->note && *s->note) fprintf(out, "  holding       %s\n", ctl_st_esc(s->note));
  if (s->verification && *s->verification)
    fprintf(out, "  last wave     %s\n", ctl_st_esc(s->verification));
  if (s->excluded) {
    fprintf(out, "  excluded      %s\n", ctl_st_esc(s->active_rule));
    fprintf(out, "  to readmit    fix the PBX, then: nircctl readmit %s --reason TEXT\n",
            ctl_st_esc(s->slug));
  }
  size_t nal = 0;
  for (size_t k = 0; k < st->n_alarms; k++) {
    const Nirc__Alarm *a = st->alarms[k];
    if (!a->subject || strcmp(a->subject, s->slug) != 0) continue;
    char raised[160];
    ctl_alarm_since(a, o->tz, raised, sizeof raised);
    fprintf(out, "  alarm         %" PRIu64 " %s (%s) since %s%s: %s\n", a->id, ctl_st_esc(a->kind),
            ctl_st_esc(a->severity), raised, a->acked_ms ? ", acknowledged" : "",
            ctl_st_esc(a->message));
    nal++;
  }
  if (!nal) fprintf(out, "  alarms        none about %s\n", ctl_st_esc(s->slug));
  for (size_t k = 0; k < s->n_hubs; k++) {
    const Nirc__HubState *h = s->hubs[k];
    char age[32] = "no report yet";
    if (h->report_age_ms >= 0)
      snprintf(age, sizeof age, "report %.1f s old", h->report_age_ms / 1000.0);
    fprintf(out, "  hub           %s %u‰: %s, %s%s%s%s\n", ctl_st_esc(h->slug), h->permille,
            ctl_link_word(h->link_state), age, h->pbx_unreadable ? ", PBX UNREADABLE" : "",
            h->note && *h->note ? "; " : "", h->note && *h->note ? ctl_st_esc(h->note) : "");
  }
  /* What the sources' proxies counted as sent here: a hub behind a proxy
   * sees none of it in its own report. */
  if (s->inbound_credited_total)
    fprintf(out, "  sent here     %llu calls by other sites since the controller started\n",
            (unsigned long long)s->inbound_credited_total);
  if (!r) {
    fprintf(out, "  load          no report yet\n");
    return;
  }
  if (r->pbx_unreadable) {
    fprintf(out, "  load          PBX UNREADABLE: %s\n", ctl_st_esc(r->pbx_error));
    return;
  }
  fprintf(out, "  report age    %.1f s (interval %.0f s business time)\n",
          s->report_age_ms / 1000.0, r->interval_ms / 1000.0);
  fprintf(out, "  calls         %u offered, %u answered, %u abandoned in the interval\n",
          r->calls_offered, r->calls_answered, r->calls_abandoned);
  fprintf(out, "  from others   %u   sent away %u\n", r->calls_from_other_sites,
          r->calls_routed_away);
  uint32_t nm = r->not_measured;
  if ((nm & REPORT_NM_QUEUE) && (nm & REPORT_NM_WAIT))
    fprintf(out, "  queue         not measured\n");
  else if (nm & REPORT_NM_QUEUE)
    fprintf(out, "  queue         waiting not measured, longest %.0f s\n",
            r->longest_wait_ms / 1000.0);
  else if (nm & REPORT_NM_WAIT)
    fprintf(out, "  queue         %u waiting, longest not measured\n", r->calls_in_queue);
  else
    fprintf(out, "  queue         %u waiting, longest %.0f s\n", r->calls_in_queue,
            r->longest_wait_ms / 1000.0);
  char agents[200];
  ctl_site_agents(r, agents, sizeof agents);
  fprintf(out, "  agents        %s\n", agents);
  if (nm & REPORT_NM_AHT)
    fprintf(out, "  handle time   not measured\n");
  else
    fprintf(out, "  handle time   %.0f s average\n", r->aht_ms / 1000.0);
  if (nm & REPORT_NM_SL)
    fprintf(out, "  service level not measured\n");
  else if (r->calls_offered)
    fprintf(out, "  service level %.0f%% within %u s\n",
            100.0 * r->answered_within_threshold / r->calls_offered, r->sl_threshold_s);
}

void ctl_site_print(FILE *out, const Nirc__StatusReply *st, const ctl_status_opts_t *o) {
  ctl_site_body(out, st, o);
  ctl_site_pbx_print(out, st->sites[0], o->tz);
}

/* ---- next ---- */

/* "hubei, guizhou, fujian +19 more" (escaped). */
static void ctl_next_list(char *const *v, size_t n, size_t show, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < n && k < show && used < len; k++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? "," : "", ctl_st_esc(v[k]));
  if (n > show && used < len) snprintf(buf + used, len - used, " +%zu more", n - show);
}

static const char *ctl_next_word(const char *kind) {
  if (strcmp(kind, "schedule-start") == 0) return "starts";
  if (strcmp(kind, "schedule-end") == 0) return "ends";
  if (strcmp(kind, "schedule-skip") == 0) return "SKIPPED";
  if (strcmp(kind, "cutover-expiry") == 0) return "expires";
  return kind;
}

void ctl_route_not_known_names(char *const *sites, size_t n_sites, uint32_t total, char *buf,
                               size_t len) {
  size_t u = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n_sites && u < len; i++)
    u += (size_t)snprintf(buf + u, len - u, "%s%s", i ? ", " : "", ctl_st_esc(sites[i]));
  if (total > n_sites && u < len) snprintf(buf + u, len - u, " +%zu more", (size_t)total - n_sites);
}

/* Under the starts' predictions: they count the calls of sites whose
 * route is not known here where each plan sends them (as `nircctl plan`
 * says), not where their PBX may send them now. */
static void ctl_next_not_known(FILE *out, const Nirc__NextReply *r) {
  bool starts = false;
  for (size_t i = 0; i < r->n_events && !starts; i++)
    starts = strcmp(r->events[i]->kind, "schedule-start") == 0 && r->events[i]->predicted;
  if (!starts || !r->route_not_known) return;
  char names[400];
  ctl_route_not_known_names(r->route_not_known_sites, r->n_route_not_known_sites,
                            r->route_not_known, names, sizeof names);
  fprintf(out,
          "note: route not known at %u site%s (%s): not heard since this controller took over, "
          "or unknown at the PBX; the predictions above count their calls where each start's "
          "plan sends them, but their PBX may send them elsewhere now, to those hubs too "
          "(nircctl status --problems)\n",
          r->route_not_known, r->route_not_known == 1 ? "" : "s", names);
}

void ctl_next_print(FILE *out, const Nirc__NextReply *r, const char *tz) {
  char from[40], until[40];
  ctl_history_time(r->from_ms, tz, from, sizeof from);
  ctl_history_time(r->until_ms, tz, until, sizeof until);
  fprintf(out, "Next %.0f h: %.16s to %.16s (%s)\n", (r->until_ms - r->from_ms) / 3600000.0, from,
          until, tz);
  if (!r->n_events) {
    fprintf(out, "nothing: no schedule starts or ends, no cutover expires\n");
    return;
  }
  fprintf(out, "%-11s %-18s %-8s %s\n", "WHEN", "RULE", "EVENT", "WHAT");
  for (size_t i = 0; i < r->n_events; i++) {
    const Nirc__NextEvent *e = r->events[i];
    char when[40], full[40], rule[160], srcs[200], hubs[200];
    ctl_history_time(e->at_ms, tz, full, sizeof full);
    snprintf(when, sizeof when, "%.5s %.5s", full + 5, full + 11);
    if (e->rule_name && *e->rule_name)
      snprintf(rule, sizeof rule, "%s %s", ctl_st_esc(e->rule_kind), ctl_st_esc(e->rule_name));
    else
      snprintf(rule, sizeof rule, "%s %" PRIu64, ctl_st_esc(e->rule_kind), e->rule_id);
    ctl_next_list(e->sources, e->n_sources, 4, srcs, sizeof srcs);
    ctl_next_list(e->hubs, e->n_hubs, 4, hubs, sizeof hubs);
    char rulecol[64];
    ctl_text_pad(rule, ctl_text_width(rule) > 18 ? ctl_text_width(rule) : 18, rulecol,
                 sizeof rulecol);
    fprintf(out, "%-11s %s %-8s ", when, rulecol, ctl_next_word(e->kind));
    if (strcmp(e->kind, "schedule-start") == 0) {
      char end[32] = "";
      if (e->end_ms) ctl_status_when(e->end_ms, e->at_ms, tz, end, sizeof end);
      fprintf(out, "%zu source%s (%s) to %s, %u wave%s", e->n_sources, e->n_sources == 1 ? "" : "s",
              srcs, hubs, e->waves, e->waves == 1 ? "" : "s");
      if (e->wave_size) fprintf(out, " of %u", e->wave_size);
      if (end[0]) fprintf(out, ", until %s", end);
      fprintf(out, "\n");
      if (!e->predicted) fprintf(out, "%31s predicted: unknown\n", "");
      for (size_t k = 0; k < e->n_alarms; k++)
        fprintf(out, "%31s ! %s\n", "", ctl_st_esc(e->alarms[k]));
      for (size_t k = 0; k < e->n_predictions; k++) {
        const Nirc__NextHub *h = e->predictions[k];
        /* "has 28 (configured)": where the agents come from, when not measured. */
        const char *cs = h->capacity_source ? h->capacity_source : "";
        if (!ctl_agents_known(cs)) /* no "SL 0%, has 0": nobody counted them */
          fprintf(out,
                  "%31s %s: SL not predicted, needs %u agents, agents not known (neither "
                  "measured nor configured), takes %u",
                  "", ctl_st_esc(h->hub), h->agents_needed, h->n_sources);
        else
          fprintf(out, "%31s %s: SL %.0f%% predicted%s, needs %u agents, has %u%s%s%s, takes %u",
                  "", ctl_st_esc(h->hub), 100.0 * h->sl_after, h->stable ? "" : " (unstable)",
                  h->agents_needed, h->agents, *cs && strcmp(cs, "measured") ? " (" : "",
                  *cs && strcmp(cs, "measured") ? ctl_st_esc(cs) : "",
                  *cs && strcmp(cs, "measured") ? ")" : "", h->n_sources);
        if (h->n_refused_sources) {
          char ref[200];
          ctl_next_list(h->refused_sources, h->n_refused_sources, 6, ref, sizeof ref);
          fprintf(out, "; turns down %s", ref);
        }
        fprintf(out, "\n");
      }
    } else if (strcmp(e->kind, "schedule-end") == 0) {
      fprintf(out, "%zu source%s (%s) go home from %s\n", e->n_sources,
              e->n_sources == 1 ? "" : "s", srcs, hubs);
    } else if (strcmp(e->kind, "schedule-skip") == 0) {
      fprintf(out, "the window does not run: %s\n", ctl_st_esc(e->reason));
    } else {
      fprintf(out, "%s go%s back from %s%s%s\n", srcs, e->n_sources == 1 ? "es" : "", hubs,
              e->reason && *e->reason ? ": " : "", e->reason ? ctl_st_esc(e->reason) : "");
    }
  }
  ctl_next_not_known(out, r);
}

bool ctl_agents_known(const char *capacity_source) {
  return !capacity_source || strcmp(capacity_source, "unknown") != 0;
}

json_t *ctl_next_json(const Nirc__NextReply *r) {
  json_t *evs = json_array();
  for (size_t i = 0; i < r->n_events; i++) {
    const Nirc__NextEvent *e = r->events[i];
    json_t *src = json_array(), *hub = json_array();
    for (size_t k = 0; k < e->n_sources; k++)
      json_array_append_new(src, json_string(e->sources[k]));
    for (size_t k = 0; k < e->n_hubs; k++)
      json_array_append_new(hub, json_string(e->hubs[k]));
    json_t *x = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "at_ms", (json_int_t)e->at_ms,
                          "kind", e->kind, "rule_kind", e->rule_kind, "rule_id",
                          (json_int_t)e->rule_id, "rule_name", e->rule_name ? e->rule_name : "",
                          "reason", e->reason ? e->reason : "", "sources", src, "hubs", hub);
    if (!x) continue;
    if (strcmp(e->rule_kind, "schedule") == 0) {
      json_object_set_new(x, "wave_size", json_integer(e->wave_size));
      json_object_set_new(x, "waves", json_integer(e->waves));
      json_object_set_new(x, "tz", json_string(e->tz ? e->tz : ""));
    }
    if (strcmp(e->kind, "schedule-start") == 0) {
      json_object_set_new(x, "end_ms", json_integer(e->end_ms));
      /* Unknown is not zero: no prediction is null, not an empty list. */
      json_t *pred = json_null();
      if (e->predicted) {
        pred = json_array();
        for (size_t k = 0; k < e->n_predictions; k++) {
          const Nirc__NextHub *h = e->predictions[k];
          bool known = ctl_agents_known(h->capacity_source);
          json_t *ref = json_array();
          for (size_t j = 0; j < h->n_refused_sources; j++)
            json_array_append_new(ref, json_string(h->refused_sources[j]));
          json_array_append_new(
              pred,
              json_pack("{s:s, s:o, s:b, s:o, s:I, s:I, s:o, s:o}", "hub", h->hub, "sl_after",
                        known ? json_real(h->sl_after) : json_null(), "stable", h->stable, "agents",
                        known ? json_integer((json_int_t)h->agents) : json_null(), "agents_needed",
                        (json_int_t)h->agents_needed, "sources", (json_int_t)h->n_sources,
                        "refused_sources", ref, "capacity_source",
                        h->capacity_source && *h->capacity_source ? json_string(h->capacity_source)
                                                                  : json_null()));
        }
      }
      json_object_set_new(x, "predictions", pred);
      json_t *al = json_array();
      for (size_t k = 0; k < e->n_alarms; k++)
        json_array_append_new(al, json_string(e->alarms[k]));
      json_object_set_new(x, "alarms", al);
    }
    json_array_append_new(evs, x);
  }
  /* Not counted (an older controller): null, not 0. */
  json_t *unk = json_array();
  for (size_t i = 0; i < r->n_route_not_known_sites; i++)
    json_array_append_new(unk, json_string(r->route_not_known_sites[i]));
  return json_pack("{s:I, s:I, s:o, s:o, s:o}", "from_ms", (json_int_t)r->from_ms, "until_ms",
                   (json_int_t)r->until_ms, "events", evs, "route_not_known",
                   r->route_not_known_counted ? json_integer(r->route_not_known) : json_null(),
                   "route_not_known_sites", unk);
}
