/* swarm_agent: one simulated site agent of nirc-swarm run: its link to a
 * controller (through common/link.c, as nirc-agent), the Hello, load
 * reports, the checks and acknowledgement of every Directive, NOT_LEADER
 * redirects and reconnection with full-jitter backoff. */
#include "swarm.h"
#include "swarm_retry.h"

#include "backoff.h"
#include "clock.h"
#include "err.h"
#include "frame.h"
#include "link.h"
#include "log.h"
#include "route.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIRC_PROTOCOL_VERSION 1

static const char *const sw_state_names[] = {
    [SW_IDLE] = "idle",           [SW_CONNECTING] = "connecting", [SW_HELLO_SENT] = "hello-sent",
    [SW_REPORTING] = "reporting", [SW_BACKOFF] = "backoff",       [SW_STOPPING] = "stopping",
};

static void sw_set_state(sw_agent_t *a, sw_state_t to) {
  if (a->state == SW_STOPPING) return; /* terminal */
  log_debug(LOG_AGENT, a->slug, "%s -> %s", sw_state_names[a->state], sw_state_names[to]);
  a->state = to;
}

static uint32_t sw_rand(sw_agent_t *a) {
  uint64_t x = a->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  a->rng = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static const char *sw_error_name(int code) {
  const ProtobufCEnumValue *v =
      protobuf_c_enum_descriptor_get_value(&nirc__error_code__descriptor, code);
  if (!v) return "UNKNOWN";
  return strncmp(v->name, "ERROR_CODE_", 11) == 0 ? v->name + 11 : v->name;
}

/* A short, stable reason for a link that ended: the Error the controller
 * sent, else the link's error class. */
static void sw_reason(int err, const char *why, bool got_error, int error_code, char *buf,
                      size_t len) {
  if (got_error) {
    snprintf(buf, len, "error:%s", sw_error_name(error_code));
  } else if (err == NIRC_EUNREACHABLE && why && strstr(why, "refused")) {
    snprintf(buf, len, "connection-refused");
  } else if (err == NIRC_EIO && why && strstr(why, "reset")) {
    snprintf(buf, len, "connection-reset");
  } else if (err == NIRC_ETLS && why && strstr(why, "peer closed during the TLS handshake")) {
    /* A controller shedding handshakes (max_unauthenticated) looks so. */
    snprintf(buf, len, "closed-in-handshake");
  } else if (err == 0 || err == NIRC_ECLOSED) {
    snprintf(buf, len, "closed-by-peer");
  } else {
    snprintf(buf, len, "%s", nirc_errname(err));
    for (char *p = buf; *p; p++)
      *p = *p == '_' ? '-' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  }
}

static void sw_on_retry(uv_timer_t *t) {
  sw_agent_t *a = t->data;
  if (a->state != SW_BACKOFF && a->state != SW_IDLE) return;
  /* This turn's connections are made: next turn, after the loop has sent
   * them (sw_may_start). */
  if (!sw_may_start(a->sw)) {
    uv_timer_start(&a->retry, sw_on_retry, 1, 0);
    return;
  }
  sw_agent_connect(a);
}

/* As agent_schedule_retry: rotate through the address list and wait a
 * full-jitter backoff whose ceiling doubles once per round of the list; a
 * fresh redirect is followed at once instead. */
static void sw_schedule_retry(sw_agent_t *a) {
  swarm_t *sw = a->sw;
  if (sw->stopping) return;
  sw_set_state(a, SW_BACKOFF);
  /* sw_take_hint pointed idx at the hinted address when it is ours. */
  sw_retry_t r = sw_retry_next(a->redirect, a->idx, a->redirects, a->idx, sw->naddrs);
  a->idx = r.idx;
  a->redirect = r.use_redirect;
  if (r.at_once) {
    a->redirects = r.redirects;
    sw->redirects++;
    /* Now, not after a backoff: the standby already spread us in time. */
    uv_timer_start(&a->retry, sw_on_retry, 0, 0);
    return;
  }
  uint32_t delay = backoff_next_rotating(&a->backoff, sw->naddrs);
  log_info(LOG_AGENT, a->slug, "next attempt in %u ms to %s", delay, sw->addr_str[a->idx]);
  uv_timer_start(&a->retry, sw_on_retry, delay, 0);
}

/* NOT_LEADER names the leader: go there next. A hint that is one of our
 * addresses selects it; a numeric address elsewhere is used as is; a name
 * would need a resolver on the loop, so it is ignored and the list
 * rotates. */
static void sw_take_hint(sw_agent_t *a, const char *hint) {
  swarm_t *sw = a->sw;
  if (!hint || !*hint) return;
  for (unsigned i = 0; i < sw->naddrs; i++) {
    if (strcmp(hint, sw->addr_str[i]) == 0) {
      a->idx = i;
      a->redirect_addr = sw->addrs[i];
      a->redirect = true;
      return;
    }
  }
  char host[NIRC_ADDR_STRLEN];
  const char *colon = strrchr(hint, ':');
  if (!colon || (size_t)(colon - hint) >= sizeof host) return;
  memcpy(host, hint, (size_t)(colon - hint));
  host[colon - hint] = '\0';
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (*end || port == 0 || port > 65535) return;
  struct sockaddr_storage ss;
  size_t hl = strlen(host);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)&ss) != 0) return;
  } else if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0) {
    return;
  }
  a->redirect_addr = ss;
  a->redirect = true;
}

static void sw_on_open(link_t *l) {
  sw_agent_t *a = link_data(l);
  a->sw->handshakes++;
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = NIRC_PROTOCOL_VERSION;
  h.software_version = "nirc-swarm " NIRC_VERSION;
  h.site = a->slug;
  h.adapter = "swarm";
  /* As the agent: the route it applies, once a controller has set one
   * (until then it is home, which the controller assumes). */
  Nirc__Directive applied = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  if (a->applied.version > 0) {
    route_to_directive(&a->applied, &pb, &applied);
    applied.site = a->slug;
    /* As the agent: no inbound source names in the Hello. */
    applied.inbound_sources = NULL;
    applied.n_inbound_sources = 0;
    h.applied = &applied;
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (link_send(l, &env) == 0) sw_set_state(a, SW_HELLO_SENT);
}

/* Plausible small figures of a quiet provincial centre; every relation
 * the controller checks (sites_validate_report) holds. Shared with the
 * MQTT mode (swarm_mqtt.c), so both carry the same kind of report. */
void sw_fill_report(sw_agent_t *a, Nirc__LoadReport *r) {
  r->site = a->slug;
  r->timestamp_ms = clock_real_ms();
  r->interval_ms = a->interval_ms;
  uint32_t logged_in = 20 + sw_rand(a) % 11;
  r->agents_logged_in = logged_in;
  r->agents_not_ready = sw_rand(a) % 4;
  r->agents_talking = sw_rand(a) % (logged_in - r->agents_not_ready + 1);
  r->agents_ready = logged_in - r->agents_not_ready - r->agents_talking;
  r->calls_offered = sw_rand(a) % 4;
  r->calls_abandoned = r->calls_offered && sw_rand(a) % 10 == 0 ? 1 : 0;
  r->calls_answered = r->calls_offered - r->calls_abandoned;
  r->answered_within_threshold = r->calls_answered - (r->calls_answered && sw_rand(a) % 8 == 0);
  r->sl_threshold_s = 20;
  r->calls_in_queue = sw_rand(a) % 3;
  r->calls_in_queue_peak = r->calls_in_queue + sw_rand(a) % 2;
  r->longest_wait_ms = r->calls_in_queue ? 1000 + sw_rand(a) % 20000 : 0;
  r->aht_ms = 200000 + sw_rand(a) % 80000;
  /* Follow the applied route, so a moved site's reports say so. */
  uint32_t home = route_share_of(&a->applied, a->slug);
  r->calls_routed_away = r->calls_offered * (1000 - home) / 1000;
  r->calls_from_other_sites = a->applied.n_inbound ? r->calls_offered / 2 : 0;
}

static void sw_on_report_timer(uv_timer_t *t) {
  sw_agent_t *a = t->data;
  if (a->state != SW_REPORTING || !a->link) return;
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  sw_fill_report(a, &r);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  if (link_send(a->link, &env) == 0) a->sw->reports++;
}

static void sw_send_ack(sw_agent_t *a, link_t *l, uint64_t epoch, uint64_t version,
                        Nirc__AckResult result, const char *detail) {
  Nirc__DirectiveAck ack = NIRC__DIRECTIVE_ACK__INIT;
  ack.site = a->slug;
  ack.epoch = epoch;
  ack.version = version;
  ack.result = result;
  ack.detail = (char *)detail;
  Nirc__Envelope out = NIRC__ENVELOPE__INIT;
  out.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE_ACK;
  out.directive_ack = &ack;
  link_send(l, &out);
}

/* agent_on_directive's checks, in its order, with the apply made instant.
 * A rejection a correct controller can cause (a stale epoch from a deposed
 * leader, an old version overtaken) is counted; one no correct controller
 * sends (another site's directive, an invalid route, a reused version)
 * is also a protocol error. */
static void sw_on_directive(sw_agent_t *a, link_t *l, const Nirc__Directive *d) {
  swarm_t *sw = a->sw;
  route_t r;
  char why[256] = "";
  const char *kind = NULL;
  bool wrong = false;
  Nirc__AckResult res = NIRC__ACK_RESULT__ACK_RESULT_REJECTED;
  sw->directives++;
  if (d->site && *d->site && strcmp(d->site, a->slug) != 0) {
    snprintf(why, sizeof why, "directive is for site '%.40s', this is %s", d->site, a->slug);
    kind = "wrong-site", wrong = true;
  } else if (route_from_directive(d, &r, why, sizeof why) != 0) {
    kind = "invalid-route", wrong = true;
  } else if (d->epoch < a->max_epoch) {
    snprintf(why, sizeof why, "stale epoch %llu: a newer controller (epoch %llu) leads",
             (unsigned long long)d->epoch, (unsigned long long)a->max_epoch);
    kind = "stale-epoch";
  } else if (route_compare_version(&r, &a->applied) == 0) {
    if (route_same(&r, &a->applied)) {
      res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED; /* a resend: idempotent */
      snprintf(why, sizeof why, "already applied");
    } else {
      snprintf(why, sizeof why, "version %llu reused with a different route",
               (unsigned long long)d->version);
      kind = "version-reused", wrong = true;
    }
  } else if (route_compare_version(&r, &a->applied) < 0) {
    snprintf(why, sizeof why, "stale version (%llu, %llu); applied is (%llu, %llu)",
             (unsigned long long)r.epoch, (unsigned long long)r.version,
             (unsigned long long)a->applied.epoch, (unsigned long long)a->applied.version);
    kind = "stale-version";
  } else if (route_validate(&r, why, sizeof why) != 0) {
    kind = "invalid-route", wrong = true;
  } else {
    a->applied = r;
    res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    why[0] = '\0';
  }
  if (res == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) {
    sw->applied++;
    if (d->epoch > a->max_epoch) a->max_epoch = d->epoch;
  } else {
    sw->rejected++;
    sw_tally(&sw->rejections, kind);
    if (wrong) sw->protocol_errors++;
    log_warn(LOG_AGENT, a->slug, "directive (%llu, %llu) rejected: %s",
             (unsigned long long)d->epoch, (unsigned long long)d->version, why);
  }
  sw_send_ack(a, l, d->epoch, d->version, res, why);
}

static void sw_on_welcome(sw_agent_t *a, const Nirc__Welcome *w) {
  swarm_t *sw = a->sw;
  double now = sw_now(sw);
  uint32_t iv = w->report_interval_ms;
  if (iv < 100 || iv > 60000) iv = (uint32_t)sw->report_interval_ms;
  /* A load generator reports at its own rate, not the controller's. */
  if (sw->load_interval_ms) iv = (uint32_t)sw->load_interval_ms;
  a->interval_ms = iv;
  a->epoch = w->epoch;
  if (w->epoch > a->max_epoch) a->max_epoch = w->epoch;
  backoff_reset(&a->backoff);
  a->redirects = 0;
  a->redirect = false;
  sw_set_state(a, SW_REPORTING);
  sw->welcomes++;
  sw->connected++;
  sw_sample(&sw->connect_ms, now - a->attempt_ms);
  if (a->dropped) {
    a->dropped = false;
    sw_sample(&sw->reconnect_ms, now - a->dropped_ms);
  }
  if (sw->connected == sw->n) {
    json_t *ev = NULL;
    if (sw->first_all_ms < 0) {
      sw->first_all_ms = now;
      ev = json_pack("{s:s, s:f, s:i, s:s}", "event", "all_connected", "t_ms", sw_round1(now),
                     "connected", sw->n, "after", "start");
    } else if (sw->episode) {
      sw->episode = false;
      sw->cur.all_back_ms = now - sw->cur.at_ms;
      sw->recoveries_total++;
      if (sw->nrecoveries < SW_RECOVERIES_MAX) sw->recoveries[sw->nrecoveries++] = sw->cur;
      ev = json_pack("{s:s, s:f, s:i, s:s, s:I, s:f}", "event", "all_connected", "t_ms",
                     sw_round1(now), "connected", sw->n, "after", "drop", "drops",
                     (json_int_t)sw->cur.drops, "all_back_ms", sw_round1(sw->cur.all_back_ms));
    }
    if (sw->progress)
      sw_emit(ev);
    else
      json_decref(ev);
  }
  log_info(LOG_AGENT, a->slug, "connected (%s, epoch %llu), reporting every %u ms",
           w->controller_node ? w->controller_node : "?", (unsigned long long)w->epoch, iv);
  uv_timer_start(&a->report, sw_on_report_timer, iv, iv);
}

static void sw_on_message(link_t *l, Nirc__Envelope *env) {
  sw_agent_t *a = link_data(l);
  swarm_t *sw = a->sw;
  switch (env->msg_case) {
  case NIRC__ENVELOPE__MSG_WELCOME:
    if (a->state != SW_HELLO_SENT) {
      sw->protocol_errors++;
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, "unexpected Welcome");
      return;
    }
    sw_on_welcome(a, env->welcome);
    return;
  case NIRC__ENVELOPE__MSG_ERROR: {
    const Nirc__Error *e = env->error;
    sw_tally(&sw->errors, sw_error_name(e->code));
    a->got_error = true;
    a->last_error = e->code;
    if (e->code == NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER) {
      /* A standby: not an error of the protocol, the way to the leader. */
      log_info(LOG_AGENT, a->slug, "not the leader (hint '%.80s')",
               e->leader_hint ? e->leader_hint : "");
      sw_take_hint(a, e->leader_hint);
      /* As agent_on_standby: a standby is alive and answering, so this is
       * no reason to back off further. Without this the ceiling doubled on
       * every round standby -> dead leader (its hint until the lease runs
       * out) and agents sat out up to backoff_max after the takeover. */
      backoff_reset(&a->backoff);
      link_close(l, NIRC_ECLOSED, "controller is not the leader");
      return;
    }
    sw->protocol_errors++;
    log_warn(LOG_AGENT, a->slug, "controller refused: %s: %.200s", sw_error_name(e->code),
             e->message ? e->message : "(no reason)");
    return;
  }
  case NIRC__ENVELOPE__MSG_DIRECTIVE:
    if (a->state != SW_REPORTING) {
      sw->protocol_errors++;
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
                "Directive before Welcome");
      return;
    }
    sw_on_directive(a, l, env->directive);
    return;
  default:
    sw->protocol_errors++;
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
              "message type %d is not valid from a controller", env->msg_case);
    return;
  }
}

static void sw_on_close(link_t *l, int err, const char *why, int was_open) {
  sw_agent_t *a = link_data(l);
  swarm_t *sw = a->sw;
  a->link = NULL;
  uv_timer_stop(&a->report);
  if (a->state == SW_STOPPING) return;
  char reason[48];
  sw_reason(err, why, a->got_error, a->last_error, reason, sizeof reason);
  a->got_error = false;
  if (a->state == SW_REPORTING) {
    double now = sw_now(sw);
    sw->connected--;
    sw_tally(&sw->drops, reason);
    a->dropped = true;
    a->dropped_ms = now;
    if (!sw->episode && sw->first_all_ms >= 0) {
      sw->episode = true;
      sw->cur.at_ms = now;
      sw->cur.drops = 0;
    }
    if (sw->episode) sw->cur.drops++;
    log_info(LOG_AGENT, a->slug, "link to %s dropped: %s", link_peer_addr(l),
             why && *why ? why : nirc_strerror(err));
  } else {
    sw_tally(&sw->failed, reason);
    log_info(LOG_AGENT, a->slug, "attempt to %s failed: %s", link_peer_addr(l),
             why && *why ? why : nirc_strerror(err));
  }
  sw_schedule_retry(a);
}

static const link_cbs_t sw_link_cbs = {
    .on_open = sw_on_open,
    .on_message = sw_on_message,
    .on_close = sw_on_close,
};

void sw_agent_connect(sw_agent_t *a) {
  swarm_t *sw = a->sw;
  if (sw->stopping) return;
  sw_set_state(a, SW_CONNECTING);
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)sw->connect_timeout_ms;
  o.idle_timeout_ms = (uint32_t)sw->idle_timeout_ms;
  o.expect_kind = PEER_CONTROLLER;
  const struct sockaddr *addr =
      (const struct sockaddr *)(a->redirect ? &a->redirect_addr : &sw->addrs[a->idx]);
  /* A redirect is used once: if this attempt fails without a new hint,
   * the list rotates on from the hinted address. */
  a->redirect = false;
  sw->attempts++;
  a->attempt_ms = sw_now(sw);
  a->got_error = false;
  if (link_connect(sw->loop, addr, a->tls, &o, &sw_link_cbs, a, &a->link) != 0) {
    /* Out of memory: nothing will call back, so retry from here. */
    a->link = NULL;
    sw_tally(&sw->failed, "nomem");
    sw_schedule_retry(a);
  }
}
