#include "report.h"

#include <stdbool.h>

/* {"shaanxi": 12}: the calls sent to each other site in the interval. */
static json_t *report_routed_json(const Nirc__LoadReport *r) {
  json_t *o = json_object();
  for (size_t i = 0; o && i < r->n_routed_to; i++) {
    const Nirc__SiteCount *c = r->routed_to[i];
    if (c && c->site && json_object_set_new(o, c->site, json_integer((json_int_t)c->calls))) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

json_t *report_to_json(const Nirc__LoadReport *r) {
  if (!r) return json_null();
  json_t *o = json_pack(
      "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
      "site", r->site ? r->site : "", "timestamp_ms", (json_int_t)r->timestamp_ms, "interval_ms",
      (json_int_t)r->interval_ms, "calls_offered", (json_int_t)r->calls_offered, "calls_answered",
      (json_int_t)r->calls_answered, "calls_abandoned", (json_int_t)r->calls_abandoned,
      "calls_in_queue", (json_int_t)r->calls_in_queue, "longest_wait_ms",
      (json_int_t)r->longest_wait_ms, "agents_logged_in", (json_int_t)r->agents_logged_in,
      "agents_ready", (json_int_t)r->agents_ready, "agents_talking", (json_int_t)r->agents_talking,
      "agents_not_ready", (json_int_t)r->agents_not_ready, "aht_ms", (json_int_t)r->aht_ms,
      "answered_within_threshold", (json_int_t)r->answered_within_threshold, "sl_threshold_s",
      (json_int_t)r->sl_threshold_s, "calls_from_other_sites",
      (json_int_t)r->calls_from_other_sites, "pbx_unreadable", r->pbx_unreadable);
  if (!o) return NULL;
  /* Figures not measured: null in place, and named in not_measured. A
   * PBX that could not be read measured nothing: every figure is null,
   * the calls too (bit 0: only then), rather than the zeros on the wire. */
  static const struct {
    uint32_t bit;
    const char *keys[2];
  } nm[] = {
      {0, {"calls_offered", NULL}},
      {0, {"calls_answered", NULL}},
      {0, {"calls_abandoned", NULL}},
      {REPORT_NM_LOGGED_IN, {"agents_logged_in", NULL}},
      {REPORT_NM_READY, {"agents_ready", NULL}},
      {REPORT_NM_TALKING, {"agents_talking", NULL}},
      {REPORT_NM_NOT_READY, {"agents_not_ready", NULL}},
      {REPORT_NM_QUEUE, {"calls_in_queue", NULL}},
      {REPORT_NM_QUEUE_PEAK, {"calls_in_queue_peak", NULL}},
      {REPORT_NM_WAIT, {"longest_wait_ms", NULL}},
      {REPORT_NM_AHT, {"aht_ms", NULL}},
      {REPORT_NM_SL, {"answered_within_threshold", "sl_threshold_s"}},
      {0, {"calls_from_other_sites", NULL}},
      {0, {"calls_routed_away", NULL}},
  };
  json_t *list = json_array();
  bool unreadable = r->pbx_unreadable;
  bool sl_unknown = unreadable || (r->not_measured & REPORT_NM_SL) != 0;
  if (!list || json_object_set_new(o, "not_measured", list)) {
    json_decref(o);
    return NULL;
  }
  /* All or nothing: a report missing a field would read as a zero. */
  if (json_object_set_new(o, "calls_routed_away", json_integer((json_int_t)r->calls_routed_away)) ||
      json_object_set_new(o, "routed_to", report_routed_json(r)) ||
      json_object_set_new(o, "routing_measured",
                          json_boolean(r->routing_measured && !unreadable)) ||
      json_object_set_new(o, "calls_in_queue_peak",
                          json_integer((json_int_t)r->calls_in_queue_peak)) ||
      json_object_set_new(o, "service_level",
                          r->calls_offered > 0 && !sl_unknown
                              ? json_real((double)r->answered_within_threshold / r->calls_offered)
                              : json_null()) ||
      (r->pbx_unreadable &&
       json_object_set_new(o, "pbx_error", json_string(r->pbx_error ? r->pbx_error : "")))) {
    json_decref(o);
    return NULL;
  }
  for (size_t i = 0; i < sizeof nm / sizeof nm[0]; i++) {
    if (!unreadable && !(nm[i].bit && (r->not_measured & nm[i].bit))) continue;
    for (int k = 0; k < 2 && nm[i].keys[k]; k++) {
      if (json_object_set_new(o, nm[i].keys[k], json_null()) ||
          json_array_append_new(list, json_string(nm[i].keys[k]))) {
        json_decref(o);
        return NULL;
      }
    }
  }
  return o;
}
