#include "webrow.h"

#include "report.h"
#include "safetext.h"

#include <stdio.h>
#include <string.h>

void webrow_idle_text(const char *active_reason, uint32_t senders, char *buf, size_t len) {
  if (senders)
    snprintf(buf, len, "hub for %u site%s", senders, senders == 1 ? "" : "s");
  else
    snprintf(buf, len, "%s", active_reason && *active_reason ? active_reason : "default");
}

void webrow_not_known_text(size_t unknown, bool hub_rows, char *buf, size_t len) {
  if (!unknown || !hub_rows) {
    buf[0] = '\0';
    return;
  }
  snprintf(buf, len,
           "\"hub for N sites\" counts the routes known here: %zu %s not known (not heard since "
           "this controller took over, or unknown at the PBX), and may send calls to a hub too "
           "(nircctl status --problems)",
           unknown, unknown == 1 ? "site's route is" : "sites' routes are");
}

void webrow_escape(const char *in, char *out, size_t outlen) {
  char text[1200]; /* a standby's why is up to 512 bytes before escaping */
  safetext_escape(in ? in : "", text, sizeof text);
  size_t o = 0;
  for (const char *c = text; *c && o + 7 < outlen; c++) {
    const char *esc = *c == '<'    ? "&lt;"
                      : *c == '>'  ? "&gt;"
                      : *c == '&'  ? "&amp;"
                      : *c == 0x22 ? "&quot;" /* a double quote */
                                   : NULL;
    if (esc)
      o += (size_t)snprintf(out + o, outlen - o, "%s", esc);
    else
      out[o++] = *c;
  }
  out[o] = '\0';
}

const char *webrow_link_word(site_state_t s) {
  switch (s) {
  case SITE_ONLINE: return "online";
  case SITE_STALE: return "stale";
  case SITE_OFFLINE: return "offline";
  default: return "never-seen";
  }
}

void webrow_facts(engine_t *e, const site_t *site, size_t i, webrow_site_t *w) {
  memset(w, 0, sizeof *w);
  w->site = site;
  w->active_reason = "default";
  engine_route_seen_t seen = engine_route_seen(e, i);
  w->unheard = seen == ENGINE_ROUTE_UNHEARD;
  if (!e) return;
  const site_dir_t *dir = engine_site_dir(e, i);
  if (seen == ENGINE_ROUTE_KNOWN) {
    w->route = &dir->acked;
    w->unverified = dir->unverified;
  }
  w->note = dir->note;
  w->active_reason = engine_active_reason(e, i);
  if (dir->returns.state == ENGINE_RETURNS_HELD) {
    /* The engine's own words, as its note and alarm give them. */
    w->held = true;
    engine_returns_words(e, i, w->held_words, sizeof w->held_words);
  }
  w->has_rule = true;
  engine_rule_view(e, i, &w->rule);
}

void webrow_route_text(const webrow_site_t *w, char *buf, size_t len) {
  buf[0] = '\0';
  if (w->route) {
    route_format(w->route, w->site->slug, buf, len);
    /* Its agent could not read the PBX back: what the PBX accepted, not
     * what it was seen to do (as nircctl status and site say). */
    size_t u = strlen(buf);
    if (w->unverified && u < len)
      snprintf(buf + u, len - u, " (unverified: not read back from the PBX)");
  } else if (w->unheard) {
    snprintf(buf, len,
             "unknown (not heard: no Hello from its agent since this controller took over; "
             "check the agent)");
  } else {
    snprintf(buf, len, "unknown");
  }
}

void webrow_html(const webrow_site_t *w, char *out, size_t len) {
  const site_t *s = w->site;
  char route[300], h_route[600], rule[1200], held[1200] = "";
  webrow_route_text(w, route, sizeof route);
  webrow_escape(route, h_route, sizeof h_route);
  /* Rule texts are an operator's free text or an agent's error (an
   * excluded site says why): escaped. */
  webrow_escape(w->rule_text, rule, sizeof rule);
  /* Held home: the rule would move it and the engine does not, so the
   * reason and the fix come first, the rule it is kept from after. */
  if (w->held) webrow_escape(w->held_words, held, sizeof held);
  /* Unknown is not zero: a site that has not reported shows a dash, one
   * whose PBX could not be read says so (its report's figures are zeros
   * nobody counted), as `nircctl status` does with PBX?. */
  char queue[96] = "—", agents[112] = "—";
  if (s->has_report && s->last.pbx_unreadable) {
    snprintf(queue, sizeof queue, "PBX unreadable");
    snprintf(agents, sizeof agents, "PBX unreadable");
  } else if (s->has_report) {
    uint32_t nm = s->last.not_measured;
    if (nm & REPORT_NM_QUEUE)
      snprintf(queue, sizeof queue, "not measured");
    else
      snprintf(queue, sizeof queue, "%u", s->last.in_queue);
    if (nm & REPORT_NM_LOGGED_IN)
      snprintf(agents, sizeof agents, "not measured");
    else if (nm & REPORT_NM_READY)
      snprintf(agents, sizeof agents, "%u/not measured", s->last.logged_in);
    else
      snprintf(agents, sizeof agents, "%u/%u", s->last.logged_in, s->last.ready);
  }
  /* A site not online: what its last report said, not what it has now
   * (a hub offline for hours showed the queue and agents it had then, as
   * if current). */
  if (s->has_report && !s->last.pbx_unreadable && s->state != SITE_ONLINE) {
    char old[48] = " (last report)";
    int64_t age_s = w->now_real > s->last_report_ms ? (w->now_real - s->last_report_ms) / 1000 : -1;
    if (w->now_real && age_s >= 0 && age_s < 120)
      snprintf(old, sizeof old, " (last report, %lld s ago)", (long long)age_s);
    else if (w->now_real && age_s >= 120 && age_s < 7200)
      snprintf(old, sizeof old, " (last report, %lld min ago)", (long long)(age_s / 60));
    else if (w->now_real && age_s >= 7200)
      snprintf(old, sizeof old, " (last report, %lld h ago)", (long long)(age_s / 3600));
    size_t u = strlen(queue);
    snprintf(queue + u, sizeof queue - u, "%s", old);
    u = strlen(agents);
    snprintf(agents + u, sizeof agents - u, "%s", old);
  }
  const char *link = webrow_link_word(s->state);
  /* Slugs and names come from the database, which checks neither names
   * nor (once its check is dropped) slugs: a row written with psql may
   * hold markup or controls. */
  char slug[SCENARIO_SLUG_MAX * 8], en[SCENARIO_NAME_MAX * 8], zh[SCENARIO_NAME_MAX * 8];
  webrow_escape(s->slug, slug, sizeof slug);
  webrow_escape(s->name_en, en, sizeof en);
  webrow_escape(s->name_zh, zh, sizeof zh);
  int n = snprintf(out, len,
                   "<tr class=\"site%s\" data-slug=\"%s\"><td>%s</td><td>%s %s</td>"
                   "<td class=\"%s\">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s%s%s%s%s</td>"
                   "</tr>\n",
                   w->held ? " held" : "", slug, slug, en, zh, link, link, queue, agents, h_route,
                   w->held ? "<span class=\"held\">" : "", held, w->held ? "</span>" : "",
                   w->held && rule[0] ? "; its rule: " : "", rule);
  if (n < 0 || (size_t)n >= len) out[0] = '\0';
}

json_t *webrow_json(const webrow_site_t *w, int64_t now_real) {
  const site_t *s = w->site;
  const route_t *r = w->route;
  json_t *route = json_array();
  for (unsigned k = 0; route && r && k < r->n_share; k++)
    json_array_append_new(route, json_pack("{s:s, s:I}", "site", r->share[k].site, "permille",
                                           (json_int_t)r->share[k].permille));
  json_t *load = json_null();
  if (s->has_report) {
    Nirc__LoadReport lr = NIRC__LOAD_REPORT__INIT;
    lr.site = (char *)s->slug;
    lr.timestamp_ms = s->last.timestamp_ms;
    lr.interval_ms = s->last.interval_ms;
    lr.calls_offered = s->last.offered;
    lr.calls_answered = s->last.answered;
    lr.calls_abandoned = s->last.abandoned;
    lr.calls_in_queue = s->last.in_queue;
    lr.calls_in_queue_peak = s->last.queue_peak;
    lr.longest_wait_ms = s->last.longest_wait_ms;
    lr.agents_logged_in = s->last.logged_in;
    lr.agents_ready = s->last.ready;
    lr.agents_talking = s->last.talking;
    lr.agents_not_ready = s->last.not_ready;
    lr.aht_ms = s->last.aht_ms;
    lr.answered_within_threshold = s->last.answered_within;
    lr.sl_threshold_s = s->last.sl_threshold_s;
    lr.calls_from_other_sites = s->last.from_other_sites;
    lr.calls_routed_away = s->last.routed_away;
    lr.not_measured = s->last.not_measured;
    lr.pbx_unreadable = s->last.pbx_unreadable;
    lr.pbx_error = (char *)s->last.pbx_error;
    load = report_to_json(&lr);
  }
  /* An empty route is not home: route_unknown says nobody knows it (the
   * route stays [] here, as /status.json always had it), as in
   * nircctl --json status (route_unheard: no Hello here yet);
   * route_unverified that it was not read back; held_home that the engine
   * keeps it home until nircctl readmit (the note says why while a rule
   * would move it). */
  json_t *x =
      json_pack("{s:s, s:s, s:s, s:b, s:f, s:f, s:s, s:I, s:o, s:b, s:b, s:b, s:b, s:s, s:o}",
                "slug", s->slug, "name_en", s->name_en, "name_zh", s->name_zh, "is_hub", s->is_hub,
                "lat", s->lat, "lon", s->lon, "link", webrow_link_word(s->state), "report_age_ms",
                (json_int_t)(s->has_report ? now_real - s->last_report_ms : -1), "route", route,
                "route_unknown", !r, "route_unheard", !r && w->unheard, "route_unverified",
                r && w->unverified, "held_home", w->held, "active_rule",
                w->active_reason ? w->active_reason : "default", "load", load);
  if (!x) return NULL;
  if (w->note && w->note[0]) json_object_set_new(x, "note", json_string(w->note));
  if (w->has_rule) {
    /* The rule as nircctl --json status gives it: its end a number. */
    const engine_rule_view_t *v = &w->rule;
    json_t *rule = v->kind == RULE_NONE
                       ? json_null()
                       : json_pack("{s:s, s:I, s:s, s:s, s:I, s:s, s:b}", "kind",
                                   rules_kind_name(v->kind), "id", (json_int_t)v->rule_id, "name",
                                   v->name, "reason", v->reason, "end_ms", (json_int_t)v->end_ms,
                                   "detail", v->detail, "excluded", v->excluded);
    json_object_set_new(x, "rule", rule ? rule : json_null());
  }
  return x;
}

bool webrow_gauge(const site_t *s, webrow_gauge_t g, int64_t now_real, double *v) {
  *v = 0;
  if (!s->has_report || s->life == SITE_REMOVED) return false;
  /* Whether its PBX could be read is known from its last report, stale
   * or not (the alert on it waits 2 min, a link-down alert covers the
   * rest); every other figure of an unreadable PBX is a zero nobody
   * counted. */
  if (g == WEBROW_G_PBX_UNREADABLE) {
    *v = s->last.pbx_unreadable ? 1 : 0;
    return true;
  }
  if (s->last.pbx_unreadable) return false;
  if (g == WEBROW_G_AGE) {
    *v = (double)(now_real - s->last_report_ms) / 1000.0;
    return true;
  }
  /* A site that is not online has no current figure, only an old one. */
  if (s->state != SITE_ONLINE) return false;
  uint32_t nm = s->last.not_measured;
  switch (g) {
  case WEBROW_G_QUEUE:
    if (nm & REPORT_NM_QUEUE) return false;
    *v = s->last.in_queue;
    return true;
  case WEBROW_G_WAIT:
    if (nm & REPORT_NM_WAIT) return false;
    *v = s->last.longest_wait_ms / 1000.0;
    return true;
  case WEBROW_G_LOGGED_IN:
    if (nm & REPORT_NM_LOGGED_IN) return false;
    *v = s->last.logged_in;
    return true;
  case WEBROW_G_READY:
    if (nm & REPORT_NM_READY) return false;
    *v = s->last.ready;
    return true;
  case WEBROW_G_SL:
    /* A threshold of 0 s measures none (sites_on_report flags it too). */
    if ((nm & REPORT_NM_SL) || s->last.sl_threshold_s == 0 || s->last.offered == 0) return false;
    *v = (double)s->last.answered_within / s->last.offered;
    return true;
  case WEBROW_G_DEMAND: {
    /* Less than a minute of reports (a site just connected, with no
     * history to seed it) is no rate yet: the planner fills it from the
     * forecast, a dashboard would read its first call as a flood or its
     * first quiet seconds as no demand. Calls with no handle time known
     * are unknown Erlangs; no calls are none, whatever the handle time. */
    if ((nm & REPORT_NM_AHT) || s->demand_secs < WEBROW_DEMAND_EVIDENCE_S) return false;
    double cps = sites_demand_cps(s, 0, WEBROW_DEMAND_EVIDENCE_S);
    if (cps > 0 && !(s->aht_s > 0)) return false;
    *v = cps > 0 ? cps * s->aht_s : 0;
    return true;
  }
  default: return false;
  }
}

void webrow_next_text(const engine_next_hub_t *hp, size_t n, char *buf, size_t len) {
  buf[0] = '\0';
  if (!n) {
    snprintf(buf, len, "unknown: no hub can be predicted now");
    return;
  }
  size_t used = 0;
  for (size_t j = 0; j < n && used < len; j++) {
    const engine_next_hub_t *h = &hp[j];
    const char *sep = j ? "; " : "";
    bool other = h->cap_source != CAPACITY_MEASURED;
    if (h->cap_source == CAPACITY_UNKNOWN)
      used += (size_t)snprintf(buf + used, len - used,
                               "%s%s: SL not predicted, needs %u agents, agents not known "
                               "(neither measured nor configured)",
                               sep, h->hub, h->agents_needed);
    else
      used += (size_t)snprintf(
          buf + used, len - used, "%s%s: SL %.0f%%%s, needs %u agents, has %u%s%s%s", sep, h->hub,
          100.0 * h->sl_after, h->stable ? "" : " (unstable)", h->agents_needed, h->agents,
          other ? " (" : "", other ? capacity_source_name(h->cap_source) : "", other ? ")" : "");
  }
}
