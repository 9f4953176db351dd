/* The `exec` adapter: the glue for any PBX. The operator supplies two
 * commands in [exec]; apply_cmd reads the route as JSON on stdin and exits
 * 0 (applied), 3 (the PBX does not know a target) or anything else
 * (failed); collect_cmd prints the load as one JSON object on stdout. The
 * contract is in docs/ADAPTERS.md.
 *
 * Each command runs as `/bin/sh -c CMD` under uv_spawn, so nothing ever
 * blocks the agent's loop: output is read by libuv, the time limit is a
 * uv_timer, and the result is reported from the loop once the process has
 * exited and its pipes are drained.
 *
 * Process group: the command is spawned with UV_PROCESS_DETACHED, which in
 * libuv on Unix does exactly one thing, setsid() in the child before exec.
 * That makes the shell the leader of its own process group, so a timeout
 * kills the shell and everything it started with one kill(-pid, SIGKILL);
 * killing only the shell would leave e.g. a hung `curl` holding our pipes.
 * The handle stays referenced and is always reaped: "detached" here never
 * means "left behind". */
#include "adapter.h"
#include "err.h"
#include "log.h"
#include "report.h"
#include "util.h"

#include <jansson.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* collect_cmd's stdout: a load report is a few hundred bytes, so more than
 * this is garbage and the command is killed rather than read further. */
#define ADAPTER_EXEC_OUT_MAX (64 * 1024)
/* stderr kept for the failure detail; the rest is read and dropped. */
#define ADAPTER_EXEC_ERR_MAX 4096
/* Larger counts are not a call centre's: the PBX answer is garbage. */
#define ADAPTER_EXEC_VALUE_MAX 10000000
/* After the command exits, time for output still in the pipes; a child it
 * left running in the background may hold them open for ever. */
#define ADAPTER_EXEC_DRAIN_MS 250
/* After SIGKILL, time for the process to be reaped before we give up on it
 * (a process stuck in the kernel cannot be killed; the loop goes on). */
#define ADAPTER_EXEC_KILL_GRACE_MS 1000
/* apply_cmd's exit status for "the PBX does not know a route target". */
#define ADAPTER_EXEC_EXIT_UNKNOWN_SITE 3
/* Inherited environment variables passed on, at most. */
#define ADAPTER_EXEC_ENV_MAX 1024

typedef enum {
  ADAPTER_EXEC_APPLY = 0,
  ADAPTER_EXEC_COLLECT,
  ADAPTER_EXEC_VERIFY, /* verify_cmd: prints the route the PBX applies */
  ADAPTER_EXEC_KINDS,
} adapter_exec_kind_t;

typedef struct adapter_exec adapter_exec_t;

/* One command execution. Lives as long as its libuv handles: freed in the
 * last close callback, which may come after the adapter itself is gone. */
typedef struct {
  adapter_exec_t *owner; /* NULL once the adapter stopped: finish silently */
  adapter_exec_kind_t kind;
  const char *what; /* "apply_cmd" or "collect_cmd", for messages */
  char slug[SCENARIO_SLUG_MAX];
  uint64_t timeout_ms;
  adapter_apply_cb apply_cb;
  adapter_collect_cb collect_cb;
  adapter_verify_cb verify_cb;
  route_t expected; /* verify: what the PBX should route by */
  void *arg;

  uv_process_t proc;
  uv_pipe_t in, out, err; /* in: apply only; out: collect only */
  uv_timer_t timer;       /* time limit, then kill grace or drain time */
  uv_write_t write_req;
  unsigned handles;                 /* initialised handles not yet closed */
  bool has_proc;                    /* uv_spawn was called */
  bool in_open, out_open, err_open; /* pipe still in use */
  bool spawned, exited, timed_out, gave_up, finished;
  int spawn_error;
  int64_t exit_status;
  int term_signal;
  uint64_t started_ms; /* uv_now at spawn, for the debug log */

  char *input;  /* apply: route JSON written to stdin; owned */
  char *outbuf; /* collect, verify: stdout, ADAPTER_EXEC_OUT_MAX bytes; owned */
  size_t out_len;
  bool out_overflow;
  char errbuf[ADAPTER_EXEC_ERR_MAX];
  size_t err_len;
  char scratch[4096]; /* sink for bytes past the limits */
} adapter_exec_run_t;

struct adapter_exec {
  uv_loop_t *loop;                                     /* borrowed */
  const char *slug;                                    /* borrowed */
  const adapter_exec_conf_t *conf;                     /* borrowed */
  const char *wrapper, *lock;                          /* borrowed; see adapter_env_t */
  adapter_exec_run_t *running[ADAPTER_EXEC_KINDS];     /* at most one of each */
  char last_error[sizeof((adapter_load_t *)0)->error]; /* logged once */

  /* The controller's clock as the agent knows it (adapter_env_t); the
   * context is borrowed. */
  bool (*controller_ms)(void *ctx, int64_t host_ms, int64_t *out);
  void *clock_ctx;
};

/* The environment the agent was started with, passed on to the commands. */
extern char **environ;

/* A figure with a `nm` bit may be left out: it is then reported as not
 * measured (docs/ADAPTERS.md), never as 0. Counts of calls without one
 * default to 0 (nothing happened); calls_offered is required. */
static const struct {
  const char *key;
  size_t off;
  bool required; /* without these a load report means nothing */
  uint32_t nm;   /* left out: this bit of not_measured */
} adapter_exec_fields[] = {
    {"calls_offered", offsetof(adapter_load_t, offered), true, 0},
    {"calls_answered", offsetof(adapter_load_t, answered), false, 0},
    {"calls_abandoned", offsetof(adapter_load_t, abandoned), false, 0},
    {"calls_in_queue", offsetof(adapter_load_t, in_queue), false, REPORT_NM_QUEUE},
    {"calls_in_queue_peak", offsetof(adapter_load_t, queue_peak), false, REPORT_NM_QUEUE_PEAK},
    {"longest_wait_ms", offsetof(adapter_load_t, longest_wait_ms), false, REPORT_NM_WAIT},
    {"agents_logged_in", offsetof(adapter_load_t, logged_in), false, REPORT_NM_LOGGED_IN},
    {"agents_ready", offsetof(adapter_load_t, ready), false, REPORT_NM_READY},
    {"agents_talking", offsetof(adapter_load_t, talking), false, REPORT_NM_TALKING},
    {"agents_not_ready", offsetof(adapter_load_t, not_ready), false, REPORT_NM_NOT_READY},
    {"aht_ms", offsetof(adapter_load_t, aht_ms), false, REPORT_NM_AHT},
    {"answered_within_threshold", offsetof(adapter_load_t, answered_within), false, REPORT_NM_SL},
    {"sl_threshold_s", offsetof(adapter_load_t, sl_threshold_s), false, REPORT_NM_SL},
    {"calls_from_other_sites", offsetof(adapter_load_t, from_other_sites), false, 0},
    {"calls_routed_away", offsetof(adapter_load_t, routed_away), false, 0},
};

/* ---- parsing collect_cmd's output ---------------------------------------- */

/* collect_cmd's "routed_to": {"shaanxi": 12, ...}: at most
 * ADAPTER_ROUTED_MAX site names, each a count, adding up to no more than
 * calls_routed_away (already in l). 0, or -1 with the reason. The names
 * are checked before they go anywhere (logs, reports). */
static int adapter_exec_parse_routed(json_t *to, adapter_load_t *l, char *why, size_t len) {
  if (!json_is_object(to)) {
    snprintf(why, len, "collect_cmd: \"routed_to\" is not an object of site: calls");
    return -1;
  }
  if (json_object_size(to) > ADAPTER_ROUTED_MAX) {
    snprintf(why, len, "collect_cmd: \"routed_to\" names more than %d sites", ADAPTER_ROUTED_MAX);
    return -1;
  }
  const char *site;
  json_t *v;
  uint64_t sum = 0;
  json_object_foreach(to, site, v) {
    if (!nirc_slug_valid(site) || strlen(site) >= sizeof l->routed_to[0].site) {
      snprintf(why, len, "collect_cmd: \"routed_to\" has a key that is not a site name");
      return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > ADAPTER_EXEC_VALUE_MAX) {
      snprintf(why, len, "collect_cmd: \"routed_to\".%s is not a count of calls (0..10000000)",
               site);
      return -1;
    }
    adapter_routed_t *r = &l->routed_to[l->n_routed_to++];
    nirc_strlcpy(r->site, site, sizeof r->site);
    r->calls = (uint32_t)json_integer_value(v);
    sum += r->calls;
  }
  if (sum > l->routed_away) {
    snprintf(why, len,
             "collect_cmd: \"routed_to\" adds up to %llu calls, more than calls_routed_away (%u)",
             (unsigned long long)sum, l->routed_away);
    return -1;
  }
  l->routing_measured = true;
  return 0;
}

/* Fills `load` from collect_cmd's stdout, or marks it unreadable with the
 * reason; an unreadable load carries no numbers at all. */
static void adapter_exec_parse_load(const char *buf, size_t len, adapter_load_t *load) {
  memset(load, 0, sizeof *load);
  size_t blank = 0;
  while (blank < len && buf[blank] != '\0' && strchr(" \t\r\n", buf[blank]))
    blank++;
  if (blank == len) {
    load->unreadable = true;
    snprintf(load->error, sizeof load->error, "collect_cmd printed nothing on stdout");
    return;
  }
  json_error_t je;
  json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    load->unreadable = true;
    snprintf(load->error, sizeof load->error, "collect_cmd printed invalid JSON at line %d: %s",
             je.line, je.text);
    return;
  }
  if (!json_is_object(j)) {
    load->unreadable = true;
    snprintf(load->error, sizeof load->error,
             "collect_cmd printed a JSON array, not an object of counts");
    json_decref(j);
    return;
  }
  adapter_load_t l = {0};
  for (size_t i = 0; i < sizeof adapter_exec_fields / sizeof adapter_exec_fields[0]; i++) {
    const char *key = adapter_exec_fields[i].key;
    json_t *v = json_object_get(j, key);
    const char *why = NULL;
    if (!v) {
      if (!adapter_exec_fields[i].required) {
        l.not_measured |= adapter_exec_fields[i].nm;
        continue;
      }
      why = "is missing";
    } else if (!json_is_integer(v)) {
      why = json_is_real(v)     ? "is not an integer"
            : json_is_string(v) ? "is a string, not an integer"
            : json_is_null(v)   ? "is null, not an integer"
                                : "is not an integer";
    } else if (json_integer_value(v) < 0) {
      why = "is negative";
    } else if (json_integer_value(v) > ADAPTER_EXEC_VALUE_MAX) {
      why = "is over 10000000";
    }
    if (why) {
      load->unreadable = true;
      if (v && json_is_integer(v))
        snprintf(load->error, sizeof load->error,
                 "collect_cmd: \"%s\" %s (%" JSON_INTEGER_FORMAT ")", key, why,
                 json_integer_value(v));
      else
        snprintf(load->error, sizeof load->error, "collect_cmd: \"%s\" %s", key, why);
      json_decref(j);
      return;
    }
    *(uint32_t *)((char *)&l + adapter_exec_fields[i].off) = (uint32_t)json_integer_value(v);
  }
  /* Optional per-destination counts: present, they say every call sent
   * elsewhere was counted (routing measured), so they must be whole. */
  json_t *to = json_object_get(j, "routed_to");
  if (to) {
    char why[sizeof load->error] = "";
    if (adapter_exec_parse_routed(to, &l, why, sizeof why) != 0) {
      load->unreadable = true;
      nirc_strlcpy(load->error, why, sizeof load->error);
      json_decref(j);
      return;
    }
  }
  json_decref(j);
  /* Service level is one figure: half of it is none of it. A peak without
   * a queue is not a queue either. */
  if (l.not_measured & REPORT_NM_SL) l.answered_within = l.sl_threshold_s = 0;
  *load = l;
}

/* verify_cmd's stdout: the route the PBX applies, in the shape apply_cmd
 * reads ("route" required, "inbound" optional, other keys ignored),
 * compared with the expected route as route_same() does. */
static adapter_verify_t adapter_exec_parse_route(const adapter_exec_run_t *run, char *found,
                                                 size_t foundlen, char *detail, size_t detlen) {
  json_error_t je;
  json_t *j = json_loadb(run->outbuf, run->out_len, JSON_REJECT_DUPLICATES, &je);
  if (!json_is_object(j) || !json_is_array(json_object_get(j, "route"))) {
    if (j)
      snprintf(detail, detlen, "verify_cmd printed JSON without a \"route\" array");
    else
      snprintf(detail, detlen, "verify_cmd printed invalid JSON at line %d: %s", je.line, je.text);
    json_decref(j);
    return ADAPTER_VERIFY_UNREADABLE;
  }
  /* route_from_json reads a stored record: give it the fields verify_cmd
   * need not print. */
  json_object_set_new(j, "epoch", json_integer(0));
  json_object_set_new(j, "version", json_integer(0));
  json_object_set_new(j, "revert_at_ms", json_integer(0));
  json_object_set_new(j, "reason", json_string(""));
  if (!json_is_array(json_object_get(j, "inbound")))
    json_object_set_new(j, "inbound", json_array());
  route_t got;
  char err[200];
  int rc = route_from_json(j, &got, err, sizeof err);
  json_decref(j);
  if (rc != 0) {
    snprintf(detail, detlen, "verify_cmd printed a route that is not valid: %s", err);
    return ADAPTER_VERIFY_UNREADABLE;
  }
  char want[200];
  route_format(&got, run->slug, found, foundlen);
  route_format(&run->expected, run->slug, want, sizeof want);
  if (route_same(&got, &run->expected)) return ADAPTER_VERIFY_MATCH;
  snprintf(detail, detlen, "the PBX routes %s to %s, the route asks %s (verify_cmd's answer)",
           run->slug, found, want);
  return ADAPTER_VERIFY_MISMATCH;
}

/* The first non-empty line of the command's stderr, printable, in `out`. */
static void adapter_exec_stderr_line(const adapter_exec_run_t *run, char *out, size_t outlen) {
  size_t i = 0, n = 0;
  while (i < run->err_len && (run->errbuf[i] == '\n' || run->errbuf[i] == '\r'))
    i++;
  for (; i < run->err_len && run->errbuf[i] != '\n' && n + 1 < outlen; i++) {
    unsigned char c = (unsigned char)run->errbuf[i];
    if (c == '\r') continue;
    out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c; /* keep logs one line */
  }
  out[n] = '\0';
}

/* What went wrong with a command that did not exit 0, in `out`. */
static void adapter_exec_describe(const adapter_exec_run_t *run, char *out, size_t outlen) {
  char line[200];
  adapter_exec_stderr_line(run, line, sizeof line);
  if (run->spawn_error)
    snprintf(out, outlen, "cannot run %s: %s", run->what, uv_strerror(run->spawn_error));
  else if (run->gave_up)
    snprintf(out, outlen, "%s still running %" PRIu64 " ms after SIGKILL (timeout %" PRIu64 " ms)",
             run->what, (uint64_t)ADAPTER_EXEC_KILL_GRACE_MS, run->timeout_ms);
  else if (run->timed_out)
    snprintf(out, outlen, "%s killed after %" PRIu64 " ms timeout", run->what, run->timeout_ms);
  else if (run->term_signal)
    snprintf(out, outlen, "%s killed by signal %d%s%s", run->what, run->term_signal,
             line[0] ? ": " : "", line);
  else if (line[0])
    snprintf(out, outlen, "%s exited %" PRId64 ": %s", run->what, run->exit_status, line);
  else
    snprintf(out, outlen, "%s exited %" PRId64 " (nothing on stderr)", run->what, run->exit_status);
}

/* ---- one command's life -------------------------------------------------- */

static void adapter_exec_on_close(uv_handle_t *h) {
  adapter_exec_run_t *run = h->data;
  if (--run->handles > 0) return;
  free(run->input);
  free(run->outbuf);
  free(run);
}

static void adapter_exec_close(adapter_exec_run_t *run, uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, adapter_exec_on_close);
}

static void adapter_exec_close_pipe(adapter_exec_run_t *run, uv_pipe_t *p, bool *open) {
  if (!*open) return;
  *open = false;
  adapter_exec_close(run, (uv_handle_t *)p);
}

/* Kills the command and everything it started (its own process group). */
static void adapter_exec_kill(adapter_exec_run_t *run) {
  if (!run->spawned || run->exited) return;
  if (kill(-run->proc.pid, SIGKILL) != 0) uv_process_kill(&run->proc, SIGKILL);
}

/* Reports the result (unless the adapter stopped) and releases the run:
 * called once, when the process exited (or was given up on) and both
 * output pipes reached EOF (or the drain time ran out). */
static void adapter_exec_finish(adapter_exec_run_t *run) {
  run->finished = true;
  uv_timer_stop(&run->timer);
  adapter_exec_t *a = run->owner;
  if (a) a->running[run->kind] = NULL; /* the callback may start the next one */
  run->owner = NULL;
  /* A command that exited 0 as the timer fired did its work: its status,
   * not our timer, decides. */
  bool ok = run->spawned && run->exited && !run->term_signal && run->exit_status == 0;
  if (run->kind == ADAPTER_EXEC_APPLY) {
    char detail[256] = "";
    int rc = 0;
    if (!ok) {
      adapter_exec_describe(run, detail, sizeof detail);
      if (run->timed_out)
        rc = NIRC_ETIMEOUT;
      else if (run->exited && !run->term_signal &&
               run->exit_status == ADAPTER_EXEC_EXIT_UNKNOWN_SITE)
        rc = NIRC_EUNKNOWN_SITE;
      else
        rc = NIRC_EIO;
    }
    log_debug(LOG_ADAPTER, run->slug, "apply_cmd done in %" PRIu64 " ms: %s",
              uv_now(run->timer.loop) - run->started_ms, ok ? "applied" : detail);
    if (a && run->apply_cb) run->apply_cb(run->arg, rc, detail);
  } else if (run->kind == ADAPTER_EXEC_VERIFY) {
    char found[200] = "", detail[400] = "";
    adapter_verify_t v = ADAPTER_VERIFY_UNREADABLE;
    if (run->out_overflow)
      snprintf(detail, sizeof detail, "verify_cmd printed more than %d bytes on stdout",
               ADAPTER_EXEC_OUT_MAX);
    else if (!ok)
      adapter_exec_describe(run, detail, sizeof detail);
    else
      v = adapter_exec_parse_route(run, found, sizeof found, detail, sizeof detail);
    if (a && run->verify_cb) run->verify_cb(run->arg, v, found, detail);
  } else {
    adapter_load_t load = {.unreadable = true};
    if (run->out_overflow) /* checked first: we killed it for that */
      snprintf(load.error, sizeof load.error, "collect_cmd printed more than %d bytes on stdout",
               ADAPTER_EXEC_OUT_MAX);
    else if (!ok)
      adapter_exec_describe(run, load.error, sizeof load.error);
    else
      adapter_exec_parse_load(run->outbuf, run->out_len, &load);
    if (a) {
      /* Once per change, not once a second while the PBX stays down. */
      if (load.unreadable && strcmp(a->last_error, load.error) != 0)
        log_warn(LOG_ADAPTER, a->slug, "PBX unreadable: %s", load.error);
      else if (!load.unreadable && a->last_error[0])
        log_info(LOG_ADAPTER, a->slug, "PBX readable again");
      snprintf(a->last_error, sizeof a->last_error, "%s", load.unreadable ? load.error : "");
      if (run->collect_cb) run->collect_cb(run->arg, &load);
    }
  }
  /* `a` may be freed by now (a callback may stop the adapter): only the
   * run is touched from here on. */
  run->in_open = run->out_open = run->err_open = false;
  if (run->kind == ADAPTER_EXEC_APPLY) adapter_exec_close(run, (uv_handle_t *)&run->in);
  if (run->kind != ADAPTER_EXEC_APPLY) adapter_exec_close(run, (uv_handle_t *)&run->out);
  adapter_exec_close(run, (uv_handle_t *)&run->err);
  if (run->has_proc) adapter_exec_close(run, (uv_handle_t *)&run->proc);
  adapter_exec_close(run, (uv_handle_t *)&run->timer);
}

static void adapter_exec_maybe_finish(adapter_exec_run_t *run) {
  if (run->finished) return;
  /* With output still in flight, adapter_exec_on_exit armed the drain time. */
  if (!(run->exited || run->gave_up) || run->out_open || run->err_open) return;
  adapter_exec_finish(run);
}

static void adapter_exec_on_timer(uv_timer_t *t);

static void adapter_exec_on_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  adapter_exec_run_t *run = p->data;
  run->exited = true;
  run->exit_status = exit_status;
  run->term_signal = term_signal;
  if (run->out_open || run->err_open)
    uv_timer_start(&run->timer, adapter_exec_on_timer, ADAPTER_EXEC_DRAIN_MS, 0);
  adapter_exec_maybe_finish(run);
}

static void adapter_exec_on_timer(uv_timer_t *t) {
  adapter_exec_run_t *run = t->data;
  if (run->finished) return;
  if (run->exited) {
    /* Drain time is over: whatever still holds the pipes is not ours to
     * wait for. */
    adapter_exec_close_pipe(run, &run->out, &run->out_open);
    adapter_exec_close_pipe(run, &run->err, &run->err_open);
    adapter_exec_maybe_finish(run);
  } else if (!run->timed_out) {
    run->timed_out = true;
    log_warn(LOG_ADAPTER, run->slug,
             "%s (pid %d) still running after %" PRIu64 " ms: killing its process group", run->what,
             run->proc.pid, run->timeout_ms);
    adapter_exec_kill(run);
    uv_timer_start(&run->timer, adapter_exec_on_timer, ADAPTER_EXEC_KILL_GRACE_MS, 0);
  } else {
    log_error(LOG_ADAPTER, run->slug, "%s (pid %d) survives SIGKILL: giving up on it", run->what,
              run->proc.pid);
    run->gave_up = true;
    adapter_exec_close_pipe(run, &run->out, &run->out_open);
    adapter_exec_close_pipe(run, &run->err, &run->err_open);
    adapter_exec_maybe_finish(run);
  }
}

static void adapter_exec_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  adapter_exec_run_t *run = h->data;
  if (h == (uv_handle_t *)&run->out && run->out_len < ADAPTER_EXEC_OUT_MAX)
    *buf = uv_buf_init(run->outbuf + run->out_len, (unsigned)(ADAPTER_EXEC_OUT_MAX - run->out_len));
  else if (h == (uv_handle_t *)&run->err && run->err_len < sizeof run->errbuf)
    *buf = uv_buf_init(run->errbuf + run->err_len, (unsigned)(sizeof run->errbuf - run->err_len));
  else
    *buf = uv_buf_init(run->scratch, sizeof run->scratch);
}

static void adapter_exec_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  adapter_exec_run_t *run = s->data;
  bool is_out = s == (uv_stream_t *)&run->out;
  if (nread > 0) {
    if (buf->base != run->scratch) {
      if (is_out)
        run->out_len += (size_t)nread;
      else
        run->err_len += (size_t)nread;
    } else if (is_out && !run->out_overflow) {
      /* Reading on would only waste time: the answer is garbage already. */
      run->out_overflow = true;
      adapter_exec_kill(run);
    }
    return;
  }
  if (nread == 0) return; /* EAGAIN */
  if (nread != UV_EOF)
    log_debug(LOG_ADAPTER, run->slug, "%s: reading its %s: %s", run->what,
              is_out ? "stdout" : "stderr", uv_strerror((int)nread));
  if (is_out)
    adapter_exec_close_pipe(run, &run->out, &run->out_open);
  else
    adapter_exec_close_pipe(run, &run->err, &run->err_open);
  adapter_exec_maybe_finish(run);
}

static void adapter_exec_on_written(uv_write_t *req, int status) {
  adapter_exec_run_t *run = req->data;
  /* EPIPE: the command exited without reading; its exit status decides. */
  if (status < 0 && status != UV_ECANCELED)
    log_debug(LOG_ADAPTER, run->slug, "apply_cmd: writing its stdin: %s", uv_strerror(status));
  if (run->in_open) {
    run->in_open = false; /* EOF on the command's stdin */
    adapter_exec_close(run, (uv_handle_t *)&run->in);
  }
}

/* Starts `cmd`; the result arrives through adapter_exec_finish(), at once
 * if the command cannot be started. `extra_env` are NAME=VALUE strings
 * that replace inherited variables of the same name. */
static void adapter_exec_run(adapter_exec_t *a, adapter_exec_run_t *run, const char *cmd,
                             const char *const *extra_env, size_t n_extra) {
  uv_loop_t *loop = a->loop;
  run->owner = a;
  run->timeout_ms = a->conf->timeout_ms;
  snprintf(run->slug, sizeof run->slug, "%s", a->slug);
  a->running[run->kind] = run;

  uv_timer_init(loop, &run->timer);
  run->timer.data = run;
  run->handles++;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
  if (run->kind == ADAPTER_EXEC_APPLY) {
    uv_pipe_init(loop, &run->in, 0);
    run->in.data = run;
    run->handles++;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&run->in;
  }
  if (run->kind != ADAPTER_EXEC_APPLY) {
    uv_pipe_init(loop, &run->out, 0);
    run->out.data = run;
    run->handles++;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&run->out;
  }
  uv_pipe_init(loop, &run->err, 0);
  run->err.data = run;
  run->handles++;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&run->err;

  /* The environment is only read by uv_spawn (in the child, before it
   * returns), so the array can be freed right after. */
  size_t n_env = 0;
  while (environ && environ[n_env] && n_env < ADAPTER_EXEC_ENV_MAX)
    n_env++;
  char **envp = calloc(n_env + n_extra + 1, sizeof *envp);
  size_t k = 0;
  if (envp) {
    for (size_t i = 0; i < n_env; i++) {
      bool replaced = false;
      for (size_t e = 0; e < n_extra && !replaced; e++) {
        size_t name_len = strcspn(extra_env[e], "=") + 1;
        replaced = strncmp(environ[i], extra_env[e], name_len) == 0;
      }
      if (!replaced) envp[k++] = environ[i];
    }
    for (size_t e = 0; e < n_extra; e++)
      envp[k++] = (char *)extra_env[e];
  }
  /* Through the wrapper (execwrap.h) the command's process group dies
   * with the agent, even a SIGKILLed one, and waits for the lock a
   * previous agent's command may still hold. */
  char *plain[] = {"sh", "-c", (char *)cmd, NULL};
  char agent_pid[24];
  snprintf(agent_pid, sizeof agent_pid, "%ld", (long)getpid());
  /* Only applies take the lock: a collect may run beside an apply. */
  char *wrapped[] = {(char *)a->wrapper, "--exec-child",
                     agent_pid,          run->kind == ADAPTER_EXEC_APPLY ? (char *)a->lock : "",
                     "/bin/sh",          "-c",
                     (char *)cmd,        NULL};
  uv_process_options_t opt = {
      .exit_cb = adapter_exec_on_exit,
      .file = a->wrapper ? a->wrapper : "/bin/sh",
      .args = a->wrapper ? wrapped : plain,
      .env = envp,
      .flags = UV_PROCESS_DETACHED, /* setsid(): its own process group, see the top */
      .stdio_count = 3,
      .stdio = stdio,
  };
  run->proc.data = run;
  run->started_ms = uv_now(loop);
  int rc = UV_ENOMEM;
  if (envp) {
    /* uv_spawn initialises the handle even when it fails: close it then too. */
    rc = uv_spawn(loop, &run->proc, &opt);
    run->has_proc = true;
    run->handles++;
    free(envp);
  }
  if (rc != 0) {
    run->spawn_error = rc;
    adapter_exec_finish(run);
    return;
  }
  run->spawned = true;
  log_debug(LOG_ADAPTER, a->slug, "%s started (pid %d)", run->what, run->proc.pid);
  run->in_open = run->kind == ADAPTER_EXEC_APPLY;
  run->out_open = run->kind != ADAPTER_EXEC_APPLY;
  run->err_open = true;
  if (run->kind != ADAPTER_EXEC_APPLY)
    uv_read_start((uv_stream_t *)&run->out, adapter_exec_on_alloc, adapter_exec_on_read);
  uv_read_start((uv_stream_t *)&run->err, adapter_exec_on_alloc, adapter_exec_on_read);
  if (run->kind == ADAPTER_EXEC_APPLY) {
    uv_buf_t bufs[] = {uv_buf_init(run->input, (unsigned)strlen(run->input)), uv_buf_init("\n", 1)};
    run->write_req.data = run;
    if (uv_write(&run->write_req, (uv_stream_t *)&run->in, bufs, 2, adapter_exec_on_written) != 0) {
      run->in_open = false;
      adapter_exec_close(run, (uv_handle_t *)&run->in);
    }
  }
  uv_timer_start(&run->timer, adapter_exec_on_timer, run->timeout_ms, 0);
}

/* ---- the adapter --------------------------------------------------------- */

static int adapter_exec_start(const adapter_env_t *env, void **impl, char *err, size_t errlen) {
  const adapter_exec_conf_t *c = env->exec;
  if (!c || !c->apply_cmd[0]) {
    snprintf(
        err, errlen,
        "the exec adapter needs [exec] apply_cmd = COMMAND (reads the route as JSON on stdin)");
    return NIRC_ECONFIG;
  }
  if (!c->collect_cmd[0]) {
    snprintf(err, errlen,
             "the exec adapter needs [exec] collect_cmd = COMMAND (prints the load as JSON)");
    return NIRC_ECONFIG;
  }
  if (c->timeout_ms == 0) {
    snprintf(err, errlen, "the exec adapter needs [exec] timeout > 0");
    return NIRC_ECONFIG;
  }
  adapter_exec_t *a = calloc(1, sizeof *a);
  if (!a) return NIRC_ENOMEM;
  a->loop = env->loop;
  a->slug = env->slug;
  a->conf = c;
  a->wrapper = env->exec_wrapper;
  a->lock = env->exec_lock ? env->exec_lock : "";
  a->controller_ms = env->controller_ms;
  a->clock_ctx = env->clock_ctx;
  *impl = a;
  return 0;
}

static void adapter_exec_apply(void *impl, const route_t *r, adapter_apply_cb cb, void *arg) {
  adapter_exec_t *a = impl;
  if (a->running[ADAPTER_EXEC_APPLY]) {
    cb(arg, NIRC_EINVAL, "apply_cmd is still running for the previous route");
    return;
  }
  /* The route as the operator's command reads it: route_to_json's record,
   * plus which site it is for. */
  json_t *o = json_pack("{s:s}", "site", a->slug);
  json_t *rj = route_to_json(r);
  char *input = NULL;
  if (o && rj && json_object_update(o, rj) == 0) input = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  json_decref(rj);
  if (!input) {
    cb(arg, NIRC_EINVAL, "cannot encode the route as JSON for apply_cmd");
    return;
  }
  adapter_exec_run_t *run = calloc(1, sizeof *run);
  if (!run) {
    free(input);
    cb(arg, NIRC_ENOMEM, "out of memory starting apply_cmd");
    return;
  }
  run->kind = ADAPTER_EXEC_APPLY;
  run->what = "apply_cmd";
  run->apply_cb = cb;
  run->arg = arg;
  run->input = input;
  char site[16 + SCENARIO_SLUG_MAX], epoch[40], version[40];
  snprintf(site, sizeof site, "NIRC_SITE=%s", a->slug);
  snprintf(epoch, sizeof epoch, "NIRC_EPOCH=%" PRIu64, r->epoch);
  snprintf(version, sizeof version, "NIRC_VERSION=%" PRIu64, r->version);
  const char *extra[] = {site, epoch, version};
  adapter_exec_run(a, run, a->conf->apply_cmd, extra, 3);
}

static void adapter_exec_collect(void *impl, int64_t now_ms, adapter_collect_cb cb, void *arg) {
  adapter_exec_t *a = impl;
  adapter_load_t load = {.unreadable = true};
  if (a->running[ADAPTER_EXEC_COLLECT]) {
    snprintf(load.error, sizeof load.error, "collect_cmd is still running");
    cb(arg, &load);
    return;
  }
  adapter_exec_run_t *run = calloc(1, sizeof *run);
  char *outbuf = run ? malloc(ADAPTER_EXEC_OUT_MAX) : NULL;
  if (!outbuf) {
    free(run);
    snprintf(load.error, sizeof load.error, "out of memory starting collect_cmd");
    cb(arg, &load);
    return;
  }
  run->kind = ADAPTER_EXEC_COLLECT;
  run->what = "collect_cmd";
  run->collect_cb = cb;
  run->arg = arg;
  run->outbuf = outbuf;
  char site[16 + SCENARIO_SLUG_MAX], now[48], ctl[64];
  snprintf(site, sizeof site, "NIRC_SITE=%s", a->slug);
  /* NIRC_NOW_MS stays on this host's business clock: the interval the
   * command counts ends then, and the PBX beside the agent stamps its
   * calls on this host's clock (so do the report's timestamp and
   * interval, docs/ADAPTERS.md). The controller's clock, for a command
   * that picks a figure by the controller's time of day (the controller
   * files load by its own clock), is NIRC_CONTROLLER_NOW_MS, set only
   * while the agent knows its offset: unknown is left out, not guessed. */
  snprintf(now, sizeof now, "NIRC_NOW_MS=%" PRId64, now_ms);
  int64_t ctl_ms;
  const char *extra[3] = {site, now, NULL};
  size_t n_extra = 2;
  if (a->controller_ms && a->controller_ms(a->clock_ctx, now_ms, &ctl_ms)) {
    snprintf(ctl, sizeof ctl, "NIRC_CONTROLLER_NOW_MS=%" PRId64, ctl_ms);
    extra[n_extra++] = ctl;
  }
  adapter_exec_run(a, run, a->conf->collect_cmd, extra, n_extra);
}

/* Without verify_cmd the PBX cannot be read back: say so, never pretend. */
static void adapter_exec_verify(void *impl, const route_t *r, adapter_verify_cb cb, void *arg) {
  adapter_exec_t *a = impl;
  if (!a->conf->verify_cmd[0]) {
    cb(arg, ADAPTER_VERIFY_UNVERIFIED, "",
       "unverified: [exec] has no verify_cmd to read the PBX's routing back");
    return;
  }
  if (a->running[ADAPTER_EXEC_VERIFY]) {
    cb(arg, ADAPTER_VERIFY_UNREADABLE, "", "verify_cmd is still running");
    return;
  }
  adapter_exec_run_t *run = calloc(1, sizeof *run);
  char *outbuf = run ? malloc(ADAPTER_EXEC_OUT_MAX) : NULL;
  if (!outbuf) {
    free(run);
    cb(arg, ADAPTER_VERIFY_UNREADABLE, "", "out of memory starting verify_cmd");
    return;
  }
  run->kind = ADAPTER_EXEC_VERIFY;
  run->what = "verify_cmd";
  run->verify_cb = cb;
  run->arg = arg;
  run->outbuf = outbuf;
  run->expected = *r;
  char site[16 + SCENARIO_SLUG_MAX];
  snprintf(site, sizeof site, "NIRC_SITE=%s", a->slug);
  const char *extra[] = {site};
  adapter_exec_run(a, run, a->conf->verify_cmd, extra, 1);
}

/* Commands still running are killed and finish without a callback; their
 * memory goes with their handles, so the loop must run on until they close
 * (nirc-agent stops its adapter after uv_run returned, when none run). */
static void adapter_exec_stop(void *impl) {
  adapter_exec_t *a = impl;
  if (!a) return;
  for (int k = 0; k < ADAPTER_EXEC_KINDS; k++) {
    adapter_exec_run_t *run = a->running[k];
    if (!run) continue;
    run->owner = NULL;
    if (!run->exited) {
      run->timed_out = true; /* so the timer gives up after the grace */
      adapter_exec_kill(run);
      uv_timer_start(&run->timer, adapter_exec_on_timer, ADAPTER_EXEC_KILL_GRACE_MS, 0);
    }
  }
  free(a);
}

const adapter_ops_t adapter_exec_ops = {
    .name = "exec",
    .start = adapter_exec_start,
    .apply = adapter_exec_apply,
    .collect = adapter_exec_collect,
    .verify = adapter_exec_verify,
    .stop = adapter_exec_stop,
};
