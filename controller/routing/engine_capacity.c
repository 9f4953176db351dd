/* engine_capacity: `nircctl capacity`, the operator's view and change of
 * each site's configured capacity (capacity.h). A change is an operator
 * change like a cutover: refused unless it can be recorded, stored
 * exactly once with its audit entry, answered when both are durable. */
#include "engine-int.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Nirc__CapacitySpec *engine_capacity_spec(engine_t *e, engine_arena_t *a, size_t i,
                                                const plan_site_t *p) {
  const site_t *s = engine_site(e, i);
  Nirc__CapacitySpec *sp = engine_arena_alloc(a, sizeof *sp);
  if (!sp) return NULL;
  nirc__capacity_spec__init(sp);
  sp->site = engine_arena_str(a, s->slug);
  sp->configured = s->cap.configured;
  sp->seats = s->cap.seats;
  char roster[CAPACITY_ROSTER_TEXT_MAX];
  capacity_format_roster(&s->cap, roster, sizeof roster);
  sp->roster = engine_arena_str(a, roster);
  sp->utc_offset_min = s->cap.utc_offset_min;
  sp->source_now = (char *)capacity_source_name(p->cap_source);
  sp->agents_now = p->staffed;
  sp->note_now = engine_arena_str(a, p->cap_note);
  return sp;
}

/* Every site's configuration, or one site's when `only` is not NULL;
 * `warning` (may be NULL) says the change it answers is not durable. */
void engine_reply_capacity(engine_t *e, void *c, uint64_t rid, const char *only,
                           const char *warning) {
  engine_arena_t a = {0};
  size_t n = engine_nsites(e);
  Nirc__CapacityReply *r = engine_arena_alloc(&a, sizeof *r);
  if (r) {
    nirc__capacity_reply__init(r);
    r->sites = engine_arena_alloc(&a, (n + 1) * sizeof *r->sites);
  }
  /* What the planner would use now: the same choice engine_build_input
   * makes, so the list and a plan agree. */
  plan_input_t in;
  engine_build_input(e, &in, NULL, 0);
  for (size_t i = 0; r && r->sites && i < n; i++) {
    if (only && *only && strcmp(engine_site(e, i)->slug, only) != 0) continue;
    Nirc__CapacitySpec *sp = engine_capacity_spec(e, &a, i, &in.sites[i]);
    if (sp) r->sites[r->n_sites++] = sp;
  }
  Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
  rep.body_case = NIRC__OPERATOR_REPLY__BODY_CAPACITY;
  rep.capacity = r;
  engine_send_built_reply(e, c, rid, &a, r && r->sites, &rep, warning);
}

static json_t *engine_capacity_json(const capacity_t *c) {
  char roster[CAPACITY_ROSTER_TEXT_MAX];
  capacity_format_roster(c, roster, sizeof roster);
  return json_pack("{s:b, s:I, s:s, s:i}", "configured", c->configured, "seats",
                   (json_int_t)c->seats, "roster", roster, "utc_offset_min",
                   (int)c->utc_offset_min);
}

void engine_op_capacity(engine_t *e, const engine_req_t *rq, const Nirc__CapacityRequest *req) {
  e->eval_dirty = true; /* a site's configured capacity may change */
  const char *slug = req && req->site ? req->site : "";
  long i = *slug ? engine_index(e, slug) : -1;
  if (*slug && i < 0) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "unknown site '%.40s' (nircctl status lists the sites)", slug);
    return;
  }
  if (!req || !req->set) {
    engine_reply_capacity(e, rq->client, rq->request_id, slug, NULL);
    return;
  }
  if (i < 0) {
    engine_reply_error(e, rq->client, rq->request_id, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                       "capacity: name the site to change");
    return;
  }
  site_t *s = engine_site(e, (size_t)i);
  capacity_t next = s->cap;
  char err[200];
  if (req->clear) {
    memset(&next, 0, sizeof next);
  } else {
    if (req->seats) next.seats = req->seats;
    if (req->roster && *req->roster &&
        capacity_parse_roster(strcmp(req->roster, "none") == 0 ? "" : req->roster, &next, err,
                              sizeof err) != 0) {
      engine_refuse(e, rq, "capacity", s->slug, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
    if (req->has_utc_offset) next.utc_offset_min = req->utc_offset_min;
    next.configured = next.seats > 0 || next.n_shift > 0;
    if (!next.configured) {
      engine_refuse(e, rq, "capacity", s->slug, NIRC__ERROR_CODE__ERROR_CODE_INVALID,
                    "give --seats N and/or --roster HH:MM-HH:MM=N,... (or --clear)");
      return;
    }
    if (capacity_validate(&next, err, sizeof err) != 0) {
      engine_refuse(e, rq, "capacity", s->slug, NIRC__ERROR_CODE__ERROR_CODE_INVALID, "%s", err);
      return;
    }
  }
  if (!engine_can_record(e, rq, "capacity", s->slug)) return;
  engine_group_begin(e);
  engine_rec_t rec = {.kind = ENGINE_REC_CAPACITY, .site = s->slug, .capacity = &next};
  if (engine_store(e, &rec) != 0) {
    engine_refuse_unrecorded(e, rq, "capacity", s->slug, "the capacity");
    return;
  }
  json_t *detail = json_pack("{s:o, s:o, s:s}", "before", engine_capacity_json(&s->cap), "after",
                             engine_capacity_json(&next), "note", req->note ? req->note : "");
  s->cap = next;
  engine_audit(e, rq->operator_name, "capacity", s->slug, detail);
  char what[96];
  snprintf(what, sizeof what, "capacity of %s %s", s->slug, req->clear ? "cleared" : "set");
  engine_defer(e, rq, DEFER_CAPACITY, what);
  engine_group_end(e);
}
