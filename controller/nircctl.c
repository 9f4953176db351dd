/* nircctl: the operators' command-line tool. It talks only to the
 * controller, over the same mutual-TLS link type as the agents, with an
 * operator certificate: every change is attributed to that certificate.
 *
 * Exit codes (SPEC section 9): 0 done, 1 refused, 2 usage (also when the
 * controller finds the request's own text wrong), 3 controller
 * unreachable or no leader (only standbys answered), 4 partially applied or
 * pending, 5 not applied (no site applied a move; nothing moved).
 *
 * Every text that comes from the controller, an agent or the database is
 * printed through esc(): control characters, bidirectional controls and
 * bytes that are not UTF-8 show escaped (common/safetext.h) instead of
 * acting on the operator's terminal. JSON output is escaped by jansson. */
#include "config.h"
#include "ctl_args.h"
#include "ctl_capacity.h"
#include "ctl_sites.h"
#include "ctl_report.h"
#include "ctl_rules.h"
#include "ctl_alarms.h"
#include "ctl_history.h"
#include "ctl_move.h"
#include "ctl_plan.h"
#include "ctl_standby.h"
#include "ctl_status.h"
#include "err.h"
#include "frame.h"
#include "jsonio.h"
#include "link.h"
#include "log.h"
#include "mapgroup.h"
#include "report.h"
#include "safetext.h"
#include "tz.h"
#include "util.h"
#include "clock.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  config_list_t controllers;
  char ca[CONFIG_STR_MAX], cert[CONFIG_STR_MAX], key[CONFIG_STR_MAX];
  uint64_t timeout_ms;
  char tz[64]; /* the operations room's zone: history shows times in it */
} ctl_conf_t;

#define O(f) offsetof(ctl_conf_t, f)
#define S(f) sizeof(((ctl_conf_t *)0)->f)
static const config_opt_t ctl_opts[] = {
    {"ctl", "controllers", CFG_LIST, O(controllers), 0, 0, 0, "127.0.0.1:7443", 0,
     "controller addresses, tried in order"},
    {"ctl", "timeout", CFG_DURATION, O(timeout_ms), 0, 100, 600000, "5s", 0,
     "how long to wait for the controller"},
    {"ctl", "tz", CFG_STRING, O(tz), S(tz), 0, 0, "Asia/Shanghai", 0,
     "the operations room's time zone (IANA name): history shows times in it"},
    {"tls", "ca", CFG_STRING, O(ca), S(ca), 0, 0, "", 0, "the private CA certificate"},
    {"tls", "cert", CFG_STRING, O(cert), S(cert), 0, 0, "", 0, "your operator certificate"},
    {"tls", "key", CFG_STRING, O(key), S(key), 0, 0, "", 0, "your operator private key"},
    {0},
};

typedef struct {
  uv_loop_t *loop;
  ctl_conf_t *conf;
  SSL_CTX *tls;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  /* The addresses as given, then the leaders standbys named that were not
   * among them (ctl_follow): what the operator reads in messages. */
  char names[CONFIG_LIST_MAX][CONFIG_STR_MAX / 2];
  unsigned naddrs, idx;
  link_t *link;
  /* deadline bounds the whole command (every controller tried); attempt
   * bounds the answer of one controller, so one that accepts and never
   * answers (a hung database) passes the turn instead of eating it all. */
  uv_timer_t deadline, attempt;
  int expired;                /* the deadline passed: finish, try nothing more */
  Nirc__OperatorRequest *req; /* borrowed */
  Nirc__OperatorReply *reply; /* owned once received: the unpacked envelope */
  Nirc__Envelope *reply_env;
  char errors[1536];      /* why each controller failed */
  int redirect;           /* index of the leader a standby named; -1 = none */
  unsigned standbys;      /* standbys met in this round through the list */
  unsigned standbys_seen; /* standbys met in all rounds */
  char standby_note[768]; /* what the last standby said, as told to the operator */
  int tell;               /* print each new standby_note on stderr as it comes */
  bool told_wait;         /* a note said it retries for an election (ctl_standby_tell) */
  char blocked[32];       /* a standby's Error.leader_blocked: no election runs; "" = none */
  unsigned rounds;        /* rounds waited for an election to finish */
  unsigned hops;          /* redirects followed, bounded against loops */
  uv_timer_t again;       /* pause before another round while a leader is elected */
  int done;
  int exit_code;
  int json;
  uint64_t wait_ms; /* how long the answer may take once connected */
  /* The request went out on this attempt's link (ctl_on_open); asked
   * counts the controllers that took it and never answered: for them
   * "cannot reach, is nircd running?" would be false, and a change asked
   * for may have taken effect. */
  int sent;
  unsigned asked;
} ctl_t;

static void ctl_try_next(ctl_t *c);

/* ---- text from elsewhere, made safe to print ---- */

/* Escaped text, at most `max` bytes wide (ctl_plan.h). */
#define escn ctl_escn
#define esc  ctl_esc

/* Rounds through the address list while only standbys answer (a leader is
 * being elected: a lease or so), CTL_ROUND_MS apart. */
#define CTL_ELECTION_ROUNDS 20
#define CTL_ROUND_MS        300

static void ctl_finish(ctl_t *c) {
  c->done = 1;
  uv_close((uv_handle_t *)&c->deadline, NULL);
  uv_close((uv_handle_t *)&c->attempt, NULL);
  uv_close((uv_handle_t *)&c->again, NULL);
}

static void ctl_note(ctl_t *c, const char *addr, const char *why) {
  size_t used = strlen(c->errors);
  snprintf(c->errors + used, sizeof c->errors - used, "%s  %s: %s", used ? "\n" : "", esc(addr),
           esc(why));
}

static void ctl_on_open(link_t *l) {
  ctl_t *c = link_data(l);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_OPERATOR_REQUEST;
  env.operator_request = c->req;
  if (link_send(l, &env) == 0) c->sent = 1;
}

/* A standby answered NOT_LEADER. Says so once, plainly (stderr: stdout is
 * for the answer, or the one JSON document), and sets c->redirect to the
 * leader it names. A leader that is not in the list is added to it: the
 * operator asked a question, not for this controller in particular, and
 * the leader must present a controller certificate of our CA like any
 * controller we talk to. Without a hint (an election is running, or a
 * leader that cannot confirm its lease now) the server's reason is told
 * and the list goes on. */
static void ctl_on_standby(ctl_t *c, const Nirc__Error *e) {
  const char *hint = e->leader_hint ? e->leader_hint : "";
  const char *at = c->names[c->idx];
  char note[sizeof c->standby_note];
  if (*hint)
    snprintf(note, sizeof note, "nircd at %s is a standby; the leader is %s (epoch %llu)", esc(at),
             esc(hint), (unsigned long long)e->leader_epoch);
  else
    snprintf(note, sizeof note, "nircd at %s cannot answer now: %s", esc(at),
             esc(e->message && *e->message ? e->message : "it is a standby"));
  /* A named reason ends the command at once, and main tells it then. */
  bool blocked = !*hint && e->leader_blocked && *e->leader_blocked;
  if (strcmp(note, c->standby_note) != 0) {
    nirc_strlcpy(c->standby_note, note, sizeof c->standby_note);
    if (c->tell && !blocked)
      c->told_wait |= ctl_standby_tell(stderr, note, !*hint, uv_timer_get_due_in(&c->deadline));
  }
  c->redirect = -1;
  c->standbys++;
  c->standbys_seen++;
  /* Compared, never printed: the message says it in words. */
  if (blocked) nirc_strlcpy(c->blocked, e->leader_blocked, sizeof c->blocked);
  struct sockaddr_storage ss;
  char why[128];
  if (!*hint || nirc_parse_addr(hint, &ss, why, sizeof why) != 0) return;
  for (unsigned i = 0; i < c->naddrs; i++)
    if (nirc_sockaddr_equal(&ss, &c->addrs[i])) c->redirect = (int)i;
  if (c->redirect < 0 && c->naddrs < CONFIG_LIST_MAX) {
    c->addrs[c->naddrs] = ss;
    nirc_strlcpy(c->names[c->naddrs], hint, sizeof c->names[0]);
    c->redirect = (int)c->naddrs++;
  }
}

static void ctl_on_message(link_t *l, Nirc__Envelope *env) {
  ctl_t *c = link_data(l);
  if (env->msg_case == NIRC__ENVELOPE__MSG_OPERATOR_REPLY &&
      env->operator_reply->request_id == c->req->request_id) {
    /* The link frees `env` when we return; keep our own copy by
     * re-encoding it (one small reply per nircctl run). */
    size_t n = nirc__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
      nirc__envelope__pack(env, buf);
      c->reply_env = nirc__envelope__unpack(NULL, n, buf);
      free(buf);
    }
    c->reply = c->reply_env ? c->reply_env->operator_reply : NULL;
    c->done = 1;
    link_close(l, 0, "done");
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_PROGRESS &&
             env->progress->request_id == c->req->request_id) {
    /* Progress is for people; with --json it goes to stderr so stdout
     * stays one JSON document. */
    fprintf(c->json ? stderr : stdout, "  %s\n", esc(env->progress->line));
    fflush(c->json ? stderr : stdout);
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR &&
             env->error->code == NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER) {
    ctl_on_standby(c, env->error);
    ctl_note(c, link_peer_addr(l), env->error->message ? env->error->message : "standby");
    link_close(l, 0, "standby");
  } else if (env->msg_case == NIRC__ENVELOPE__MSG_ERROR) {
    ctl_note(c, link_peer_addr(l), env->error->message ? env->error->message : "error");
    c->done = 1;
    c->exit_code = EXIT_REFUSED;
    link_close(l, 0, "refused");
  }
}

static void ctl_on_close(link_t *l, int err, const char *why, int was_open) {
  ctl_t *c = link_data(l);
  c->link = NULL;
  uv_timer_stop(&c->attempt);
  if (c->done) {
    ctl_finish(c);
    return;
  }
  /* It took the request and never answered: not "unreachable", and a
   * change asked for may have been made (main says so). */
  bool unanswered = c->sent && (c->expired || err == NIRC_ETIMEOUT);
  if (unanswered) {
    c->asked++;
    why = "took the request but sent no answer within --timeout (busy, or waiting on its "
          "database)";
  }
  if (c->expired) {
    ctl_note(c, c->names[c->idx], unanswered ? why : "no answer before --timeout ran out");
    c->exit_code = EXIT_UNREACHABLE;
    ctl_finish(c);
    return;
  }
  if (c->redirect >= 0 && (unsigned)c->redirect != c->idx && c->hops++ < 2 * CONFIG_LIST_MAX) {
    c->idx = (unsigned)c->redirect;
    c->redirect = -1;
    ctl_try_next(c);
    return;
  }
  c->redirect = -1;
  if (strcmp(why ? why : "", "standby") != 0)
    ctl_note(c, c->names[c->idx], why && *why ? why : nirc_strerror(err));
  c->idx++;
  ctl_try_next(c);
}

static void ctl_on_again(uv_timer_t *t) {
  ctl_t *c = t->data;
  c->idx = 0;
  c->standbys = 0;
  c->errors[0] = '\0';
  ctl_try_next(c);
}

static const link_cbs_t ctl_cbs = {ctl_on_open, ctl_on_message, ctl_on_close};

static void ctl_on_attempt(uv_timer_t *t) {
  ctl_t *c = t->data;
  if (c->link) link_close(c->link, NIRC_ETIMEOUT, "no answer in time");
}

static void ctl_try_next(ctl_t *c) {
  if (c->idx >= c->naddrs) {
    if (ctl_standby_next(c->standbys, c->rounds++, CTL_ELECTION_ROUNDS, c->blocked[0] != 0) ==
        CTL_STANDBY_AGAIN) {
      uv_timer_start(&c->again, ctl_on_again, CTL_ROUND_MS, 0);
      return;
    }
    c->exit_code = EXIT_UNREACHABLE;
    ctl_finish(c);
    return;
  }
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)c->conf->timeout_ms;
  /* The controller pings idle links; this only catches a dead one. */
  o.idle_timeout_ms = (uint32_t)(c->conf->timeout_ms > 5000 ? c->conf->timeout_ms : 5000);
  o.expect_kind = PEER_CONTROLLER;
  o.max_recv = FRAME_MAX_REPLY; /* the status of thousands of sites */
  uv_timer_start(&c->attempt, ctl_on_attempt, c->conf->timeout_ms + c->wait_ms, 0);
  c->sent = 0;
  link_connect(c->loop, (struct sockaddr *)&c->addrs[c->idx], c->tls, &o, &ctl_cbs, c, &c->link);
}

static void ctl_on_deadline(uv_timer_t *t) {
  ctl_t *c = t->data;
  c->expired = 1;
  if (c->link) {
    link_close(c->link, NIRC_ETIMEOUT, "no answer in time");
  } else if (!c->done) { /* between election rounds */
    c->exit_code = EXIT_UNREACHABLE;
    ctl_finish(c);
  }
}

/* Runs one request against the first controller that answers. Returns the
 * exit code; on success *reply points into c->reply_env. */
static int ctl_request(ctl_t *c, Nirc__OperatorRequest *req) {
  c->req = req;
  uv_timer_init(c->loop, &c->deadline);
  c->deadline.data = c;
  uv_timer_init(c->loop, &c->again);
  c->again.data = c;
  uv_timer_init(c->loop, &c->attempt);
  c->attempt.data = c;
  c->redirect = -1;
  uv_timer_start(&c->deadline, ctl_on_deadline, c->conf->timeout_ms * (c->naddrs + 1) + c->wait_ms,
                 0);
  ctl_try_next(c);
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (!c->reply && c->exit_code == 0) c->exit_code = EXIT_UNREACHABLE;
  return c->exit_code;
}

/* ---- output ---- */

static int use_colour;

static const char *history_tz = "Asia/Shanghai"; /* the zone times are shown in ([ctl] tz) */
static int alarms_ack;                           /* alarms ack ID: the reply lists them after */

static ctl_status_opts_t status_opts; /* status --moved/--problems/--zh; tz and colour */

static void print_status_table(const Nirc__StatusReply *st) {
  ctl_status_print(stdout, st, &status_opts);
}

/* One JSON document and a newline on standard output, through jsonio:
 * DEL and the C1 controls a database row may hold are written as \u
 * escapes, not raw onto the terminal of whoever reads it. */
static void put_json(const json_t *j, size_t flags) {
  char *text = j ? jsonio_dumps(j, flags | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6)) : NULL;
  puts(text ? text : "{\"ok\": false, \"error\": \"nircctl: out of memory\"}");
  free(text);
}

/* Status as JSON; `flags` chooses indented (one document) or compact (one
 * line per refresh for `watch --json`). */
static void print_status_json_flags(const Nirc__StatusReply *st, size_t flags) {
  json_t *top = ctl_status_json(st, &status_opts);
  put_json(top, flags);
  json_decref(top);
}

static void print_status_json(const Nirc__StatusReply *st) {
  print_status_json_flags(st, JSON_INDENT(2));
}

/* ---- moves, plans, history: output ---- */

/* A document jansson could not build (a string that is not UTF-8: the
 * controller never sends one, a mangled reply might) is replaced by a
 * refusal that says so, so standard output is always one valid JSON
 * document. */
static json_t *json_or_refusal(json_t *j) {
  return j ? j
           : json_pack("{s:b, s:s, s:n}", "ok", 0, "error",
                       "nircctl: the controller's answer is not UTF-8 text and cannot be shown as "
                       "JSON",
                       "plan");
}

static void print_json_line(json_t *j) {
  j = json_or_refusal(j);
  put_json(j, JSON_COMPACT);
  json_decref(j);
}

static void print_json(json_t *j) {
  j = json_or_refusal(j);
  put_json(j, JSON_INDENT(2));
  json_decref(j);
}

/* Refusals carry the plan that explains them: show it. An error in the
 * request's own text (INVALID) or an unknown site is a usage error: exit 2,
 * as when nircctl finds it itself; anything else the controller refuses
 * exits 1. */
static int print_refusal(const Nirc__OperatorReply *rep, int json) {
  const Nirc__PlanReply *plan = NULL;
  if (rep->body_case == NIRC__OPERATOR_REPLY__BODY_MOVE && rep->move) plan = rep->move->plan;
  if (rep->body_case == NIRC__OPERATOR_REPLY__BODY_PLAN) plan = rep->plan;
  const char *why = rep->error && rep->error->message ? rep->error->message : "no reason given";
  if (json) {
    print_json(ctl_refusal_json(why, ctl_plan_json(plan), rep));
  } else {
    fprintf(stderr, "nircctl: refused: %s\n", esc(why));
    if (plan) ctl_plan_print(plan, history_tz);
  }
  Nirc__ErrorCode code = rep->error ? rep->error->code : NIRC__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
  return code == NIRC__ERROR_CODE__ERROR_CODE_INVALID ||
                 code == NIRC__ERROR_CODE__ERROR_CODE_UNKNOWN_SITE
             ? EXIT_USAGE
             : EXIT_REFUSED;
}

static int print_move(const Nirc__OperatorReply *rep, int json) {
  const Nirc__MoveReply *m = rep->move;
  if (!m) return EXIT_REFUSED;
  /* A warning on a move means its record is not durable: a new leader may
   * not route this way. That is not "done". */
  bool not_durable = !m->dry_run && rep->error && rep->error->message;
  int code = ctl_move_exit(m, not_durable);
  if (json) {
    json_t *outs = json_array();
    for (size_t i = 0; i < m->n_outcomes; i++)
      json_array_append_new(
          outs, json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:b}", "site", m->outcomes[i]->site,
                          "result", ctl_move_outcome_word(m->outcomes[i]), "detail",
                          m->outcomes[i]->detail, "version", (json_int_t)m->outcomes[i]->version,
                          "latency_ms", (json_int_t)m->outcomes[i]->latency_ms, "hub",
                          m->outcomes[i]->hub, "unverified", m->outcomes[i]->unverified,
                          "outcome_unknown", m->outcomes[i]->outcome_unknown));
    json_t *j = json_pack(
        "{s:b, s:I, s:b, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:s}", "ok", code == EXIT_DONE,
        "cutover_id", (json_int_t)m->cutover_id, "dry_run", m->dry_run, "applied",
        (json_int_t)m->applied, "failed", (json_int_t)m->failed, "pending", (json_int_t)m->pending,
        "elapsed_ms", (json_int_t)m->elapsed_ms, "outcomes", outs, "plan", ctl_plan_json(m->plan),
        "forced_over", ctl_forced_json(m->forced_over, m->n_forced_over), "force_warning",
        m->force_warning);
    /* A cutover's end (null: open-ended); a restore or readmit has none. */
    if (m->cutover_id)
      json_object_set_new(j, "expires_ms",
                          m->expires_ms ? json_integer((json_int_t)m->expires_ms) : json_null());
    /* Ended (restored, expired) before the reply left: null while it stands. */
    if (m->cutover_id)
      json_object_set_new(j, "ended",
                          m->cutover_ended && *m->cutover_ended ? json_string(m->cutover_ended)
                                                                : json_null());
    if (rep->error && rep->error->message)
      json_object_set_new(j, "warning", json_string(rep->error->message));
    print_json(j);
    return code;
  }
  /* --force past the capacity check: say what it overrides. */
  bool forced = m->force_warning && *m->force_warning;
  if (m->dry_run) {
    printf("dry run: nothing moved\n");
    if (m->plan) ctl_plan_print(m->plan, history_tz);
    if (forced) fprintf(stderr, "warning: %s\n", esc(m->force_warning));
    return EXIT_DONE;
  }
  ctl_move_print(stdout, m, history_tz);
  if (forced) fprintf(stderr, "warning: %s\n", esc(m->force_warning));
  if (not_durable)
    fprintf(stderr, "nircctl: %s\n", esc(rep->error->message));
  else if (rep->error && rep->error->message)
    fprintf(stderr, "warning: %s\n", esc(rep->error->message));
  ctl_move_say(stderr, m);
  return code;
}

static int print_plan(const Nirc__OperatorReply *rep, int json) {
  const Nirc__PlanReply *p = rep->plan;
  if (!p) return EXIT_REFUSED;
  if (json)
    print_json(ctl_plan_json(p));
  else {
    ctl_plan_print(p, history_tz);
    if (!p->n_moves && !p->n_capacity) printf("nothing would change\n");
  }
  /* Exit 0 only when every source would move. */
  if (p->refused) {
    if (!json) fprintf(stderr, "nircctl: this move would be refused: %s\n", esc(p->refusal));
    return EXIT_REFUSED;
  }
  return EXIT_DONE;
}

static int history_csv;         /* history --csv */
static bool history_window;     /* history --since or --until given */
static uint64_t history_before; /* history --before-id */
static bool history_mixed;      /* a time and a duration: ordered by the controller */

/* A read from the database cannot see changes the controller has not yet
 * committed (ops.c reads on a connection of its own, so that no write
 * queue holds it up): say how many, rather than let a missing row pass
 * for one that never happened. */
static void print_unsaved(FILE *out, uint64_t n, const char *noun, const char *what) {
  if (n == 0) return;
  fprintf(out,
          "note: the controller had %llu %s%s not yet saved to the database; the newest "
          "may be missing from this %s: run it again in a few seconds\n",
          (unsigned long long)n, noun, n == 1 ? "" : "s", what);
}

static int print_history(const Nirc__OperatorReply *rep, int json) {
  const Nirc__HistoryReply *h = rep->history;
  if (!h) return EXIT_REFUSED;
  if (history_before && h->limit == 0) {
    /* It ignored --before-id: its entries are the newest, not the page
     * asked for, and must not pass for it. */
    fprintf(stderr, "nircctl: this controller is older than --before-id and does not page "
                    "history: narrow --until instead, or upgrade it\n");
    return EXIT_REFUSED;
  }
  if (json) {
    print_json(ctl_history_json(h));
    return EXIT_DONE;
  }
  if (history_mixed && !h->window_known && h->n_entries == 0)
    fprintf(stderr, "nircctl: note: this controller is older than the check that --until is "
                    "later than --since on its clock: if it is not, nothing can match\n");
  ctl_history_print(stdout, h, history_csv ? CTL_HISTORY_CSV : CTL_HISTORY_TABLE, history_tz);
  /* CSV is data: the notes go beside it, not into it. */
  ctl_history_notes(history_csv ? stderr : stdout, h, history_window);
  print_unsaved(history_csv ? stderr : stdout, h->unsaved_changes, "change", "history");
  return EXIT_DONE;
}

/* One site, every figure on its own line, and the chain of reasons
 * behind its route: for the 3 a.m. question "what is hubei doing right
 * now, and why?". */
static int print_site(const Nirc__OperatorReply *rep, int json) {
  if (rep->body_case == NIRC__OPERATOR_REPLY__BODY_SITE_CHANGE) {
    /* site add|set|remove; a change whose record is not durable exits 4. */
    const Nirc__SiteChangeReply *r = rep->site_change;
    if (!r) return EXIT_REFUSED;
    const char *warn = rep->error && rep->error->message ? rep->error->message : NULL;
    if (json) {
      json_t *j = ctl_site_change_json(r);
      if (warn) json_object_set_new(j, "warning", json_string(warn));
      print_json(j);
    } else {
      ctl_site_change_print(stdout, r);
      if (warn) fprintf(stderr, "nircctl: %s\n", esc(warn));
    }
    return warn ? EXIT_PARTIAL : EXIT_DONE;
  }
  const Nirc__StatusReply *st = rep->status;
  if (!st || st->n_sites != 1) return EXIT_REFUSED;
  if (json)
    print_status_json(st);
  else
    ctl_site_print(stdout, st, &status_opts);
  return EXIT_DONE;
}

static int print_next(const Nirc__OperatorReply *rep, int json) {
  if (!rep->next) return EXIT_REFUSED;
  if (json)
    print_json(ctl_next_json(rep->next));
  else
    ctl_next_print(stdout, rep->next, history_tz);
  return EXIT_DONE;
}

static const char *map_output; /* -o FILE for `map`; NULL: stdout */

/* The routing map as SVG, drawn here from the status reply with the same
 * renderer as the controller's status page. */
static int print_map(const Nirc__OperatorReply *rep, int json) {
  const Nirc__StatusReply *st = rep->status;
  if (!st) return EXIT_REFUSED;
  map_site_t *ms = calloc(st->n_sites + 1, sizeof *ms);
  map_move_t *mv = calloc(st->n_sites * 8 + 1, sizeof *mv);
  size_t nm = 0;
  if (!ms || !mv) {
    free(ms);
    free(mv);
    return EXIT_REFUSED;
  }
  for (size_t i = 0; i < st->n_sites; i++) {
    const Nirc__SiteStatus *s = st->sites[i];
    const Nirc__LoadReport *r = s->last_report;
    ms[i] = (map_site_t){
        .slug = s->slug,
        .name_en = s->name_en,
        .name_zh = s->name_zh,
        .lat = s->lat,
        .lon = s->lon,
        .link = ctl_link_word(s->link_state),
        .is_hub = s->is_hub,
        /* As status says it: unknown is no route (never home); unverified
         * is applied, not read back (dashed arrows). */
        .route_unknown = s->route_unknown || s->route_unheard,
        .route_unheard = s->route_unheard,
        .route_unverified = s->route_unverified && !s->route_unknown && !s->route_unheard,
        .held_home = s->held_home, /* no arrow while its rule would move it: why */
    };
    if (r)
      map_site_load(&ms[i], true, r->pbx_unreadable, r->not_measured, r->agents_logged_in,
                    r->agents_talking, r->calls_in_queue);
    else
      map_site_load(&ms[i], false, false, 0, 0, 0, 0);
    for (size_t k = 0; k < s->n_route && nm < st->n_sites * 8; k++)
      if (strcmp(s->route[k]->site, s->slug) != 0)
        mv[nm++] =
            (map_move_t){s->slug, s->route[k]->site, s->route[k]->permille, ms[i].route_unverified};
  }
  char when[40], title[160];
  clock_format_iso(st->server_time_ms, 480, when, sizeof when);
  snprintf(title, sizeof title, "NIRC routing — %s (controller %s)", when, st->controller_node);
  char *svg = mapgroup_render(ms, st->n_sites, mv, nm, title);
  free(ms);
  free(mv);
  if (!svg) {
    fprintf(stderr, "nircctl: cannot draw the map (out of memory)\n");
    return EXIT_REFUSED;
  }
  int rc = EXIT_DONE;
  if (json && !map_output) {
    print_json(json_pack("{s:s}", "svg", svg));
    free(svg);
    return EXIT_DONE;
  }
  FILE *f = map_output ? fopen(map_output, "w") : stdout;
  if (!f || fputs(svg, f) == EOF) {
    fprintf(stderr, "nircctl: cannot write %s: %s\n", map_output ? map_output : "stdout",
            strerror(errno));
    rc = EXIT_USAGE;
  }
  if (f && f != stdout) fclose(f);
  if (rc == EXIT_DONE && map_output) {
    if (json)
      print_json(json_pack("{s:s}", "written", map_output));
    else
      printf("map written to %s\n", map_output);
  }
  free(svg);
  return rc;
}

static int print_status(const Nirc__OperatorReply *rep, int json) {
  if (!rep->status) return EXIT_REFUSED;
  if (json)
    print_status_json(rep->status);
  else
    print_status_table(rep->status);
  return EXIT_DONE;
}

/* ---- status: filters and pages on the controller ---- */

/* Another request on the same controller list (watch and the pages of
 * status --all): what the previous one left is reset. The caller has
 * taken or freed c->reply_env. */
static int ctl_again(ctl_t *c, Nirc__OperatorRequest *req) {
  c->reply = NULL;
  c->reply_env = NULL;
  c->done = c->exit_code = c->expired = 0;
  c->idx = c->standbys = c->standbys_seen = c->rounds = c->hops = 0;
  c->errors[0] = c->standby_note[0] = c->blocked[0] = '\0';
  return ctl_request(c, req);
}

/* `history --all`: the pages one after another, one request each, as
 * the pager (ctl_history.h) says. CSV is written a page at a time, the
 * table and JSON once, oldest first. A refusal is left in c->reply for
 * main to tell; otherwise c->reply is NULL on return. */
static int history_all(ctl_t *c, ctl_args_t *a, int json) {
  bool stream = history_csv && !json;
  ctl_history_pager_t pg;
  ctl_history_pager_init(&pg, &a->history, a->history_all_limit, stream);
  Nirc__Envelope **envs = NULL;
  size_t nenv = 0;
  ctl_history_page_t st = CTL_HISTORY_PAGE_MORE;
  int rc = EXIT_DONE;
  bool nomem = false;
  while (st == CTL_HISTORY_PAGE_MORE) {
    rc = ctl_again(c, &a->req);
    if (rc != EXIT_DONE || !c->reply || !c->reply->ok) break;
    const Nirc__HistoryReply *h = c->reply->history;
    st = ctl_history_pager_take(&pg, &a->history, h);
    if (st == CTL_HISTORY_PAGE_OLD || st == CTL_HISTORY_PAGE_TOO_MANY) break;
    if (stream) { /* nothing held but this page: constant memory, any number of pages */
      if (pg.pages == 1) ctl_history_csv_head(stdout);
      ctl_history_csv_rows(stdout, h, history_tz, true);
      fflush(stdout);
      nirc__envelope__free_unpacked(c->reply_env, NULL);
      c->reply_env = NULL;
      c->reply = NULL;
      if (st == CTL_HISTORY_PAGE_MORE) ctl_history_pager_progress(stderr, &pg);
      continue;
    }
    Nirc__Envelope **e2 = realloc(envs, (nenv + 1) * sizeof *envs);
    if (!e2) {
      nomem = true;
      break;
    }
    envs = e2;
    envs[nenv++] = c->reply_env; /* owned here from now on */
    c->reply_env = NULL;
    c->reply = NULL;
    if (st == CTL_HISTORY_PAGE_MORE) ctl_history_pager_progress(stderr, &pg);
  }
  if (st == CTL_HISTORY_PAGE_OLD || st == CTL_HISTORY_PAGE_TOO_MANY) {
    char why[300];
    ctl_history_pager_refusal(why, sizeof why, &pg, st);
    if (json) print_json(json_pack("{s:b, s:s, s:n}", "ok", 0, "error", why, "plan"));
    fprintf(stderr, "nircctl: %s\n", why);
    rc = EXIT_REFUSED;
  } else if (nomem) {
    fprintf(stderr, "nircctl: out of memory\n");
    rc = EXIT_REFUSED;
  }
  if (nomem || rc != EXIT_DONE || c->reply) {
    if (stream && pg.n)
      fprintf(stderr, "nircctl: the CSV above is incomplete: %zu of ~%llu entries\n", pg.n,
              (unsigned long long)pg.matching);
  } else if (stream) {
    ctl_history_pager_csv_notes(stderr, &pg, history_window);
    print_unsaved(stderr, pg.unsaved, "change", "history");
  } else {
    const Nirc__HistoryReply **pages = calloc(nenv + 1, sizeof *pages);
    Nirc__HistoryReply r;
    for (size_t i = 0; pages && i < nenv; i++)
      pages[i] = envs[i]->operator_reply->history;
    Nirc__AuditEntry **all = pages ? ctl_history_pager_merge(&pg, pages, nenv, &r) : NULL;
    if (!all) {
      fprintf(stderr, "nircctl: out of memory\n");
      rc = EXIT_REFUSED;
    } else if (json) {
      print_json(ctl_history_json(&r));
    } else {
      ctl_history_print(stdout, &r, CTL_HISTORY_TABLE, history_tz);
      ctl_history_notes(stdout, &r, history_window);
      print_unsaved(stdout, pg.unsaved, "change", "history");
    }
    free(all);
    free(pages);
  }
  for (size_t i = 0; i < nenv; i++)
    if (envs[i]) nirc__envelope__free_unpacked(envs[i], NULL);
  free(envs);
  return rc;
}

#define CTL_STATUS_PAGE 1000 /* sites per request of status --all: ~0.3 MB a reply */

/* The filter options as typed, for the paging hints. */
static void status_filters_text(const ctl_args_t *a, char *buf, size_t len) {
  size_t u = 0;
  buf[0] = '\0';
#define CTL_ADD(...)                                                                               \
  do {                                                                                             \
    if (u < len) u += (size_t)snprintf(buf + u, len - u, __VA_ARGS__);                             \
  } while (0)
  if (a->moved) CTL_ADD("%s--moved", u ? " " : "");
  if (a->problems) CTL_ADD("%s--problems", u ? " " : "");
  for (size_t i = 0; i < a->status.n_states; i++)
    CTL_ADD("%s%s", i ? "," : u ? " --state " : "--state ", ctl_link_word(a->states[i]));
  if (*a->status.hub) CTL_ADD("%s--hub %s", u ? " " : "", esc(a->status.hub));
  if (*a->status.match) CTL_ADD("%s--match %s", u ? " " : "", esc(a->status.match));
#undef CTL_ADD
}

static uint64_t watch_every_ms; /* watch: its interval, for the header; 0: not watching */
static const char *watch_note;  /* watch: what a standby said on the way to the leader */

/* watch's header: now in the operations room's zone, the business clock
 * beside it when it differs (an accelerated demo); st may be NULL. */
static void watch_header(const Nirc__StatusReply *st) {
  if (isatty(STDOUT_FILENO)) printf("\033[H\033[2J");
  char now[40], biz[40] = "";
  ctl_history_time(clock_real_ms(), history_tz, now, sizeof now);
  if (st && llabs(st->server_time_ms - clock_real_ms()) > 60000) {
    char b[32];
    ctl_history_time(st->server_time_ms, history_tz, b, sizeof b);
    snprintf(biz, sizeof biz, " (business %s)", b);
  }
  printf("nircctl watch — %s %s%s — every %.1f s, Ctrl-C to stop\n\n", now, history_tz, biz,
         watch_every_ms / 1000.0);
  if (st && watch_note && *watch_note) printf("%s\n\n", watch_note);
}

static void status_show(const Nirc__StatusReply *st, const ctl_status_opts_t *o, int json,
                        size_t flags) {
  if (watch_every_ms && !json) watch_header(st);
  ctl_status_opts_t keep = status_opts;
  status_opts = *o;
  if (json)
    print_status_json_flags(st, flags);
  else
    print_status_table(st);
  status_opts = keep;
}

/* status --all (and map): every matching site, CTL_STATUS_PAGE to a
 * request so no reply is huge, shown as one table or one JSON list (or
 * drawn, for map). */
static int status_all(ctl_t *c, ctl_args_t *a, const ctl_status_opts_t *o, int json, size_t flags,
                      bool map) {
  Nirc__Envelope **envs = NULL;
  Nirc__SiteStatus **rows = NULL;
  Nirc__Alarm **alarms = NULL;
  uint32_t *senders = NULL;
  size_t nenv = 0, n = 0, cap = 0, na = 0;
  int rc = EXIT_DONE;
  a->status.limit = CTL_STATUS_PAGE;
  a->status.offset = 0;
  const Nirc__StatusReply *st = NULL;
  for (;;) {
    rc = ctl_again(c, &a->req);
    if (rc != EXIT_DONE || !c->reply || !c->reply->ok || !c->reply->status) goto out;
    st = c->reply->status;
    Nirc__Envelope **e2 = realloc(envs, (nenv + 1) * sizeof *envs);
    if (!e2) goto nomem;
    envs = e2;
    envs[nenv++] = c->reply_env; /* owned here from now on */
    c->reply_env = NULL;
    if (n + st->n_sites > cap) {
      cap = (n + st->n_sites) * 2;
      Nirc__SiteStatus **r2 = realloc(rows, cap * sizeof *rows);
      if (r2) rows = r2;
      uint32_t *s2 = realloc(senders, cap * sizeof *senders);
      if (s2) senders = s2;
      if (!r2 || !s2) goto nomem;
    }
    /* Each page carries the alarms about its own rows (and the oldest):
     * the whole list gets them all, each once. */
    Nirc__Alarm **a2 = realloc(alarms, (na + st->n_alarms + 1) * sizeof *alarms);
    if (!a2) goto nomem;
    alarms = a2;
    for (size_t k = 0; k < st->n_alarms; k++) {
      bool dup = false;
      for (size_t j = 0; j < na && j < 100 + st->n_alarms && !dup; j++)
        dup = alarms[na - 1 - j]->id == st->alarms[k]->id;
      for (size_t j = 0; j < na && j < 100 && !dup; j++) /* the oldest, on every page */
        dup = alarms[j]->id == st->alarms[k]->id;
      if (!dup) alarms[na++] = st->alarms[k];
    }
    for (size_t i = 0; i < st->n_sites; i++) {
      rows[n] = st->sites[i];
      senders[n++] = st->n_senders == st->n_sites ? st->senders[i] : 0;
    }
    if (st->n_sites == 0 || a->status.offset + st->n_sites >= st->matched) break;
    a->status.offset += (uint32_t)st->n_sites;
  }
  Nirc__StatusReply all = *st;
  all.sites = rows;
  all.alarms = alarms;
  all.n_alarms = na;
  all.n_sites = all.n_senders = n;
  all.senders = senders;
  all.matched = (uint32_t)n;
  if (map) {
    Nirc__OperatorReply rep = NIRC__OPERATOR_REPLY__INIT;
    rep.ok = 1;
    rep.status = &all;
    rc = print_map(&rep, json);
  } else {
    status_show(&all, o, json, flags);
  }
  if (st->matched != n)
    fprintf(stderr,
            "nircctl: the sites changed while paging (%zu listed, %u match now): run "
            "it again for a consistent list\n",
            n, st->matched);
  c->reply = NULL;
  goto out;
nomem:
  fprintf(stderr, "nircctl: out of memory for %zu sites\n", n);
  rc = EXIT_REFUSED;
  c->reply = NULL;
out:
  for (size_t i = 0; i < nenv; i++)
    nirc__envelope__free_unpacked(envs[i], NULL);
  free(envs);
  free(rows);
  free(alarms);
  free(senders);
  return rc;
}

/* status without a SITE, and each refresh of watch. --all pages through
 * everything; --limit/--offset show one page; otherwise up to
 * CTL_STATUS_BIG sites are listed as ever, and beyond that the counts and
 * the problem sites (a second request, bounded) with how to see the rest.
 * On a failure c keeps the reply (or none) for the caller to explain; on
 * success c->reply is NULL: everything is shown and freed. */
static int status_run(ctl_t *c, ctl_args_t *a, int json, size_t flags) {
  char filters[512];
  status_filters_text(a, filters, sizeof filters);
  ctl_status_opts_t o = status_opts;
  o.filters = filters;
  o.hub = *a->status.hub;
  if (a->all) return status_all(c, a, &o, json, flags, false);
  if (!a->paged) {
    a->status.limit = CTL_STATUS_BIG;
    a->status.offset = 0;
  } else if (a->status.limit == 0) {
    a->status.limit = CTL_STATUS_BIG; /* --offset alone: a page, not the rest at once */
  }
  o.offset = a->status.offset;
  int rc = ctl_again(c, &a->req);
  if (rc != EXIT_DONE || !c->reply || !c->reply->ok || !c->reply->status) return rc;
  const Nirc__StatusReply *st = c->reply->status;
  if (a->paged || ctl_status_complete(st, &o) || filters[0]) {
    status_show(st, &o, json, flags);
  } else {
    /* Too many to list: the counts (every reply has them) and the sites
     * that need a look, at most CTL_STATUS_PROBLEMS of them. */
    nirc__envelope__free_unpacked(c->reply_env, NULL);
    a->status.problems = true;
    a->status.limit = CTL_STATUS_PROBLEMS;
    rc = ctl_again(c, &a->req);
    a->status.problems = a->problems;
    if (rc != EXIT_DONE || !c->reply || !c->reply->ok || !c->reply->status) return rc;
    o.summary = o.problems = true;
    status_show(c->reply->status, &o, json, flags);
  }
  nirc__envelope__free_unpacked(c->reply_env, NULL);
  c->reply_env = NULL;
  c->reply = NULL;
  return EXIT_DONE;
}

static int print_schedules(const Nirc__OperatorReply *rep, int json) {
  const Nirc__ScheduleReply *r = rep->schedule;
  if (!r) return EXIT_REFUSED;
  const char *warn = rep->error && rep->error->message ? rep->error->message : NULL;
  if (json) {
    json_t *j = ctl_schedules_json(r);
    if (j && warn) json_object_set_new(j, "warning", json_string(warn));
    print_json(j);
  } else {
    ctl_schedules_print(stdout, r, history_tz);
    /* The change is in force here but not durable: say so, exit 4. */
    if (warn) fprintf(stderr, "nircctl: %s\n", esc(warn));
  }
  return warn ? EXIT_PARTIAL : EXIT_DONE;
}

static int print_overflows(const Nirc__OperatorReply *rep, int json) {
  const Nirc__OverflowReply *r = rep->overflow;
  if (!r) return EXIT_REFUSED;
  const char *warn = rep->error && rep->error->message ? rep->error->message : NULL;
  if (json) {
    json_t *j = ctl_overflows_json(r);
    if (j && warn) json_object_set_new(j, "warning", json_string(warn));
    print_json(j);
  } else {
    ctl_overflows_print(stdout, r);
    if (warn) fprintf(stderr, "nircctl: %s\n", esc(warn));
  }
  return warn ? EXIT_PARTIAL : EXIT_DONE;
}

/* `nircctl alarms`: exit 1 while any is active (a check for scripts),
 * 0 after an acknowledgement and for the record (--all). */
static int print_alarms(const Nirc__OperatorReply *rep, int json) {
  const Nirc__AlarmReply *r = rep->alarms;
  if (!r) return EXIT_REFUSED;
  if (json) {
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_alarms; i++)
      json_array_append_new(a, ctl_alarm_json(r->alarms[i]));
    json_t *o = json_pack("{s:o, s:b}", "alarms", a, "record", r->from_database);
    if (o && r->from_database)
      json_object_set_new(o, "unsaved_changes", json_integer((json_int_t)r->unsaved_changes));
    print_json(o);
  } else {
    if (alarms_ack) printf("acknowledged; active alarms now:\n");
    ctl_alarms_print(stdout, r->alarms, r->n_alarms, r->from_database, history_tz);
    if (r->from_database) print_unsaved(stdout, r->unsaved_changes, "alarm update", "record");
  }
  if (alarms_ack || r->from_database) return EXIT_DONE;
  return r->n_alarms ? EXIT_REFUSED : EXIT_DONE;
}

static const char *capacity_site; /* capacity SITE: the row to show */

/* `nircctl capacity`: the list, or the changed site's row; a change whose
 * record is not durable exits 4 with the warning. */
static int print_capacity(const Nirc__OperatorReply *rep, int json) {
  const Nirc__CapacityReply *r = rep->capacity;
  if (!r) return EXIT_REFUSED;
  const char *warn = rep->error && rep->error->message ? rep->error->message : NULL;
  if (json) {
    json_t *j = ctl_capacity_json(r, capacity_site);
    if (warn) json_object_set_new(j, "warning", json_string(warn));
    print_json(j);
  } else {
    ctl_capacity_print(stdout, r, capacity_site);
    if (warn) fprintf(stderr, "nircctl: %s\n", esc(warn));
  }
  return warn ? EXIT_PARTIAL : EXIT_DONE;
}

/* `nircctl report staffing`: the table, the Report document or CSV; a
 * window whose measured load could not be read exits 4 with the warning. */
static int print_report(const Nirc__OperatorReply *rep, int json) {
  const Nirc__ReportReply *r = rep->report;
  if (!r) return EXIT_REFUSED;
  const char *warn = rep->error && rep->error->message ? rep->error->message : NULL;
  if (json) {
    json_t *j = ctl_report_json(r);
    if (warn) json_object_set_new(j, "warning", json_string(warn));
    print_json(j);
  } else if (history_csv) {
    ctl_report_csv(stdout, r);
  } else {
    ctl_report_print(stdout, r);
  }
  if (warn) fprintf(stderr, "nircctl: %s\n", esc(warn));
  return warn ? EXIT_PARTIAL : EXIT_DONE;
}

/* How each command shows the controller's reply. */
static int (*const ctl_print[CTL_NCMDS])(const Nirc__OperatorReply *rep, int json) = {
    [CTL_CMD_SITE] = print_site,          [CTL_CMD_MAP] = print_map,
    [CTL_CMD_WATCH] = print_status,       [CTL_CMD_STATUS] = print_status,
    [CTL_CMD_CUTOVER] = print_move,       [CTL_CMD_RESTORE] = print_move,
    [CTL_CMD_READMIT] = print_move,       [CTL_CMD_PLAN] = print_plan,
    [CTL_CMD_HISTORY] = print_history,    [CTL_CMD_SCHEDULE] = print_schedules,
    [CTL_CMD_OVERFLOW] = print_overflows, [CTL_CMD_ALARMS] = print_alarms,
    [CTL_CMD_NEXT] = print_next,          [CTL_CMD_CAPACITY] = print_capacity,
    [CTL_CMD_REPORT] = print_report,
};

static void usage(FILE *f) {
  fprintf(f, "usage: nircctl [OPTIONS] COMMAND [ARGS]\n\nCommands:\n");
  for (size_t i = 0; i < CTL_NCMDS; i++)
    fprintf(f, "  %-10s %s\n", ctl_cmds[i].name, ctl_cmds[i].summary);
  fprintf(f, "  %-10s %s\n", "help", "this help; `nircctl COMMAND --help` for one command");
  fprintf(f, "\nOptions:\n"
             "  --controller ADDR     controller address (repeatable; tried in order)\n"
             "  --config FILE         config file (default: $NIRCCTL_CONFIG, ~/.config/nirc/"
             "nircctl.conf,\n"
             "                        /etc/nirc/nircctl.conf)\n"
             "  --ca FILE --cert FILE --key FILE   TLS files (override the config)\n"
             "  --json                machine-readable output\n"
             "  --timeout DURATION    per controller (default 5s)\n"
             "  --help, --version     this help; the version\n"
             "\n"
             "Exit codes: 0 done, 1 refused, 2 usage, 3 controller unreachable or no leader, 4 "
             "partially applied or pending, 5 not applied\n"
             "\n"
             "Examples:\n"
             "  nircctl status\n"
             "  nircctl cutover hubei --to shaanxi --reason 'Wuhan lockdown'\n"
             "  nircctl --controller 10.0.0.1:7443 --controller 10.0.0.2:7443 status\n");
}

static const char *default_config(void) {
  const char *env = getenv("NIRCCTL_CONFIG");
  if (env && *env) return env;
  static char home[512];
  const char *h = getenv("HOME");
  if (h) {
    snprintf(home, sizeof home, "%s/.config/nirc/nircctl.conf", h);
    if (access(home, R_OK) == 0) return home;
  }
  if (access("/etc/nirc/nircctl.conf", R_OK) == 0) return "/etc/nirc/nircctl.conf";
  return NULL;
}

int main(int argc, char **argv) {
  log_set_program("nircctl");
  log_set_level(LOG_LVL_ERROR);
  signal(SIGPIPE, SIG_IGN);
  /* Parsed before anything is opened: a usage error never needs a config
   * file or a certificate. */
  static ctl_args_t args;
  switch (ctl_args_parse(argc, argv, &args)) {
  case CTL_ARGS_REQUEST: break;
  case CTL_ARGS_USAGE:
    fputs(args.msg, stderr);
    usage(stderr);
    return EXIT_USAGE;
  case CTL_ARGS_ERROR: fputs(args.msg, stderr); return EXIT_USAGE;
  case CTL_ARGS_HELP: usage(stdout); return EXIT_DONE;
  case CTL_ARGS_CMD_HELP: fputs(args.cmd->help, stdout); return EXIT_DONE;
  case CTL_ARGS_VERSION: printf("nircctl " NIRC_VERSION "\n"); return EXIT_DONE;
  }
  const ctl_cmd_t *cmd = args.cmd;
  const char *config_path = args.config_path;
  int json = args.json;
  uint64_t watch_interval_ms = args.watch_interval_ms;
  map_output = args.map_output;
  Nirc__OperatorRequest *req = &args.req;
  req->request_id = (uint64_t)getpid();

  ctl_conf_t conf;
  char err[1024];
  if (!config_path) config_path = default_config();
  if (config_path) {
    if (config_load(config_path, ctl_opts, &conf, err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: %s\n", err);
      return EXIT_USAGE;
    }
  } else {
    config_defaults(ctl_opts, &conf, err, sizeof err);
  }
  if (args.ncontrollers) {
    conf.controllers.count = 0;
    for (unsigned i = 0; i < args.ncontrollers; i++)
      nirc_strlcpy(conf.controllers.item[conf.controllers.count++], args.controllers[i],
                   sizeof conf.controllers.item[0]);
  }
  if (args.ca) nirc_strlcpy(conf.ca, args.ca, sizeof conf.ca);
  if (args.cert) nirc_strlcpy(conf.cert, args.cert, sizeof conf.cert);
  if (args.key) nirc_strlcpy(conf.key, args.key, sizeof conf.key);
  if (args.timeout &&
      config_set(ctl_opts, &conf, "ctl", "timeout", args.timeout, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: --timeout: %s\n", err);
    return EXIT_USAGE;
  }
  history_csv = args.csv;
  history_window = args.since || args.until;
  history_before = args.history.before_id;
  history_mixed =
      args.since && args.until && !args.history.since_ago_ms != !args.history.until_ago_ms;
  alarms_ack = args.alarms.ack_id != 0;
  capacity_site = args.capacity.site;
  history_tz = args.tz ? args.tz : conf.tz;
  args.history.tz = (char *)history_tz; /* an empty window is told in it */
  if (!tz_valid(history_tz)) {
    fprintf(stderr,
            "nircctl: [ctl] tz '%s' in %s is not a time zone (an IANA name such as "
            "Asia/Shanghai or UTC)\n",
            history_tz, config_path ? config_path : "the defaults");
    return EXIT_USAGE;
  }
  /* Times without an offset are in the zone history shows: parsed again
   * now that it is known (ctl_args checked their form). A local time the
   * clocks skipped or repeated is resolved as the engine does, and said. */
  const char *when[4] = {args.since, args.until, args.report_from, args.report_to};
  int64_t *when_ms[4] = {&args.history.since_ms, &args.history.until_ms, &args.report.from_ms,
                         &args.report.to_ms};
  for (int i = 0; i < 4; i++) {
    char note[300];
    if (when[i] &&
        ctl_parse_when(when[i], history_tz, i < 2 ? clock_real_ms() : 0, when_ms[i], note,
                       sizeof note) == 0 &&
        note[0])
      fprintf(stderr, "nircctl: note: %s\n", note);
  }
  if (cmd->id == CTL_CMD_HISTORY && ctl_history_window_empty(&args, true)) {
    fprintf(stderr, "%s", args.msg);
    return EXIT_USAGE;
  }
  if (args.report_from) {
    if (args.report.to_ms <= args.report.from_ms) {
      fprintf(stderr, "nircctl: --to must be after --from\n");
      return EXIT_USAGE;
    }
  }
  if (!conf.ca[0] || !conf.cert[0] || !conf.key[0]) {
    fprintf(stderr, "nircctl: no operator certificate: give --ca, --cert and --key, or a config "
                    "file with [tls] ca/cert/key (see --config)\n");
    return EXIT_USAGE;
  }

  ctl_t c;
  memset(&c, 0, sizeof c);
  c.conf = &conf;
  c.json = json;
  c.wait_ms = cmd->wait_ms;
  c.loop = uv_default_loop();
  for (unsigned i = 0; i < conf.controllers.count; i++) {
    if (nirc_parse_addr(conf.controllers.item[i], &c.addrs[i], err, sizeof err) != 0) {
      fprintf(stderr, "nircctl: --controller %s\n", err);
      return EXIT_USAGE;
    }
    nirc_strlcpy(c.names[i], conf.controllers.item[i], sizeof c.names[0]);
  }
  c.naddrs = conf.controllers.count;
  if (tls_ctx_new(TLS_CLIENT, conf.ca, conf.cert, conf.key, &c.tls, err, sizeof err) != 0) {
    fprintf(stderr, "nircctl: %s\n", err);
    return EXIT_USAGE;
  }
  use_colour = !json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
  status_opts = (ctl_status_opts_t){.moved = args.moved,
                                    .problems = args.problems,
                                    .zh = args.zh,
                                    .colour = use_colour,
                                    .tz = history_tz};

  if (cmd->id == CTL_CMD_WATCH) {
    /* A new request every interval: the view is as fresh as the controller,
     * and a controller that goes away is shown, not hidden. */
    watch_every_ms = watch_interval_ms;
    for (;;) {
      ctl_t w = c;
      watch_note = w.standby_note;
      int wrc = status_run(&w, &args, json, JSON_COMPACT);
      if (json) {
        /* JSON Lines: one Status document per refresh, nothing else. */
        if (wrc != EXIT_DONE) print_json_line(json_pack("{s:b, s:s}", "ok", 0, "error", w.errors));
        fflush(stdout);
        if (w.reply_env) nirc__envelope__free_unpacked(w.reply_env, NULL);
        usleep((useconds_t)(watch_interval_ms * 1000));
        continue;
      }
      if (wrc != EXIT_DONE) {
        watch_header(NULL);
        if (w.standby_note[0]) printf("%s\n\n", w.standby_note);
        printf("%s:\n%s\n", w.standbys_seen ? "no leader answered" : "cannot reach a controller",
               w.errors);
      }
      fflush(stdout);
      if (w.reply_env) nirc__envelope__free_unpacked(w.reply_env, NULL);
      usleep((useconds_t)(watch_interval_ms * 1000));
    }
  }
  c.tell = 1;
  int rc = cmd->id == CTL_CMD_MAP ? status_all(&c, &args, &status_opts, json, 0, true)
           : cmd->id == CTL_CMD_HISTORY && args.all ? history_all(&c, &args, json)
           : cmd->id == CTL_CMD_STATUS && !*args.status.site
               ? status_run(&c, &args, json, JSON_INDENT(2))
               : ctl_request(&c, req);
  if (rc == EXIT_UNREACHABLE && c.blocked[0]) {
    /* A standby said what keeps every controller from leading. */
    ctl_standby_say(stderr, c.blocked, c.errors[0] ? c.errors : c.standby_note, c.asked);
    if (c.asked) ctl_standby_unanswered(stderr, cmd->id);
  } else if (rc == EXIT_UNREACHABLE && c.standbys_seen) {
    /* Controllers answered, but none leads now: not "is nircd running?". */
    fprintf(stderr,
            "nircctl: no leader answered:\n%s\nA standby takes over within a lease of the "
            "leader's end ([controller] lease_timeout, 3 s by default) unless a controller "
            "says above what keeps it from leading: try again in a few seconds.\n",
            c.errors[0] ? c.errors : c.standby_note);
    if (c.asked) ctl_standby_unanswered(stderr, cmd->id);
  } else if (rc == EXIT_UNREACHABLE && c.asked) {
    /* A controller took the request and did not answer: not "is nircd
     * running?", and a change may have been made. */
    ctl_standby_no_answer(stderr, cmd->id, c.errors, c.conf->timeout_ms);
  } else if (rc == EXIT_UNREACHABLE) {
    fprintf(stderr,
            "nircctl: cannot reach a controller:\n%s\nIs nircd running? Check --controller or "
            "[ctl] controllers in %s.\n",
            c.errors, config_path ? config_path : "your config");
  } else if (rc == EXIT_REFUSED && !c.reply) {
    /* The controller closed the link with an Error (e.g. a site
     * certificate used here): scripts still get JSON. */
    if (json) print_json(json_pack("{s:b, s:s, s:n}", "ok", 0, "error", c.errors, "plan"));
    fprintf(stderr, "nircctl: refused by the controller:\n%s\n", c.errors);
  } else if (c.reply && !c.reply->ok) {
    rc = print_refusal(c.reply, json);
  } else if (c.reply && !(cmd->id == CTL_CMD_HISTORY && args.all)) {
    rc = ctl_print[cmd->id](c.reply, json);
  }
  if (c.told_wait && rc != EXIT_UNREACHABLE && c.idx < c.naddrs) /* idx: who answered */
    ctl_standby_answered(stderr, esc(c.names[c.idx]));
  if (c.reply_env) nirc__envelope__free_unpacked(c.reply_env, NULL);
  SSL_CTX_free(c.tls);
  uv_loop_close(c.loop);
  return rc;
}
