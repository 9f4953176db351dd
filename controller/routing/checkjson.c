/* checkjson: see checkjson.h. */
#include "checkjson.h"

#include <stdbool.h>

json_t *checkjson_schedule(const Nirc__ScheduleCheck *c) {
  json_t *hubs = json_array();
  for (size_t k = 0; k < c->n_hubs; k++) {
    const Nirc__ScheduleHubCheck *h = c->hubs[k];
    /* Unknown is not zero: no figures for a hub not predicted. */
    bool p = h->predicted;
    json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:s}", "hub", h->hub, "known", h->known,
                          "predicted", p, "misses", h->misses, "forecast", h->forecast);
    json_object_set_new(o, "sl_after", p ? json_real(h->sl_after) : json_null());
    json_object_set_new(o, "agents_needed", p ? json_integer(h->agents_needed) : json_null());
    json_object_set_new(o, "agents", p ? json_integer(h->agents) : json_null());
    json_object_set_new(o, "stable_after", p ? json_boolean(h->stable_after) : json_null());
    json_array_append_new(hubs, o);
  }
  json_t *names = json_array();
  for (size_t k = 0; k < c->n_not_known_sites; k++)
    json_array_append_new(names, json_string(c->not_known_sites[k]));
  /* old_window: absent when no comparison was made (and from old
   * controllers). */
  /* The instants judged: absent when none was (not checked) and from
   * old controllers, which judged the first minute alone. */
  json_t *j = json_pack(
      "{s:b, s:s*, s:I, s:o, s:b, s:b, s:s*, s:b, s:b, s:o, s:b, s:s*}", "checked", c->checked,
      "not_checked", c->checked && !c->partial ? NULL : c->not_checked, "window_start_ms",
      (json_int_t)c->window_start_ms, "hubs", hubs, "refused", c->refused, "forced", c->forced,
      "refusal", c->refused ? c->refusal : NULL, "dry_run", c->dry_run, "partial", c->partial,
      "not_known_sites", names, "no_worse", c->no_worse, "old_window",
      c->old_window && c->old_window[0] ? c->old_window : NULL);
  if (j && c->instants_judged) {
    json_object_set_new(j, "worst_at_ms", json_integer((json_int_t)c->worst_at_ms));
    json_object_set_new(j, "instants_judged", json_integer(c->instants_judged));
    json_object_set_new(j, "instants_missed", json_integer(c->instants_missed));
  }
  return j;
}
