/* Unit tests of the kamailio adapter (site-agent/adapter_kamailio.c),
 * driven only through adapter_kamailio_ops on a real libuv loop, against a
 * fake Kamailio.
 *
 * The fake is a UNIX datagram socket bound in the test's mkdtemp directory
 * (the adapter's rpc_socket), watched by a uv_poll_t on the same loop: it
 * reads each JSON-RPC request, checks its form, records it (and what the
 * dispatcher list file held when a dispatcher.reload arrived), and answers
 * with sendto() to the requester's address as jsonrpcs does: a result, an
 * error object, garbage, nothing at all, or later when the test says so.
 * The loop runs UV_RUN_ONCE until what a test waits for happened, bounded by
 * a deadline timer; nothing sleeps.
 *
 * Checked: start() refuses every malformed [kamailio] setting naming the
 * option; apply() writes the list (URIs from targets, per-mille shares as
 * percent weights by largest remainder, at least 1% each) before asking for
 * exactly one dispatcher.reload, and completes only on Kamailio's answer;
 * a route naming a site without a target is rejected with the file not
 * touched; a refusal, garbage, or silence fails the apply with the reason
 * and puts the previous file back byte for byte (after silence, a reload of
 * the restored file is requested, and requested again if Kamailio refuses
 * it as too soon); "Ongoing reload" is retried at its pace until the time
 * limit; collect() turns the dialog counters into deltas, and
 * every unreadable answer gives a reason and no numbers; stop() with RPCs in
 * flight (or from a callback) calls nobody and leaves no handle (teardown
 * closes the loop; the ASan build checks for leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "adapter.h"
#include "report.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "support/loop.h"
#include "support/tmpdir.h"

#define SLUG    "hubei"
#define NOW_MS  INT64_C(1579622400123)
#define TARGETS "hubei=sip:127.0.0.1:5071, shaanxi=sip:127.0.0.1:5072, henan=sips:10.16.0.5:5061"
#define SET_ID  7
/* What an operator's list looks like before the agent first writes it:
 * no final newline, so a rewrite cannot pass for the original. */
#define SEED "# seed list, written by hand\n7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=100"

/* How the fake answers one method. */
typedef enum {
  FAKE_OK,     /* {"jsonrpc":"2.0","result":R,"id":N}; R from `text` (JSON) or the default */
  FAKE_ERROR,  /* {"jsonrpc":"2.0","error":{"code":500,"message":text},"id":N} */
  FAKE_SILENT, /* nothing */
  FAKE_RAW,    /* `text` as is, "$ID" replaced by the request's id */
  FAKE_HOLD,   /* kept until fx_release() answers it with FAKE_OK */
} fake_mode_t;

enum { M_RELOAD, M_STATS, M_ACTIVE, M_HTABLE, M_COUNT };
static const char *const method_name[M_COUNT] = {"dispatcher.reload", "stats.get_statistics",
                                                 "dlg.stats_active", "htable.dump"};

typedef struct {
  fake_mode_t mode;
  const char *text;
} fake_answer_t;

#define MAX_RELOADS 64

typedef struct {
  char dir[64], sock[128], list[128];
  uv_loop_t loop;
  tloop_t lp;
  adapter_kamailio_conf_t conf;
  void *impl;

  /* the fake Kamailio */
  int fd;
  uv_poll_t poll;
  bool poll_open;
  fake_answer_t answer[M_COUNT];
  unsigned ongoing; /* "Ongoing reload" refusals before answer[M_RELOAD] */
  /* The answers to the first reloads, in order (then answer[M_RELOAD]). */
  const fake_answer_t *reload_script;
  int n_reload_script;
  int calls[M_COUNT];
  int requests;                    /* every datagram, well-formed or not */
  uint64_t reload_ms[MAX_RELOADS]; /* uv_hrtime() in ms at each reload */
  char list_at_reload[4096];       /* the list file when the last reload came */
  char bad[512];                   /* the first malformed request, with why */
  uint64_t processed, failed;      /* dialog:processed_dialogs, dialog:failed_dialogs */
  uint64_t starting, connecting;   /* dlg.stats_active */
  uint64_t sent_away;              /* htable sent::shaanxi; sent::hubei is the rest */
  struct sockaddr_un held_from;    /* FAKE_HOLD: the request kept */
  socklen_t held_len;
  json_t *held_id;
  char rx[70000];

  /* apply results */
  int applies, apply_rc;
  char apply_err[1024];
  bool reapply, stop_in_apply_cb;
  route_t route;
  /* collect results */
  int collects;
  adapter_load_t load;
  bool stop_in_collect_cb;
} fx_t;

/* ---- small helpers ---- */

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000;
}

/* Contents of `path` (malloc'ed, NUL-terminated, length in *len), or NULL. */
static char *read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  char *buf = calloc(1, 65536);
  assert_non_null(buf);
  size_t n = fread(buf, 1, 65535, fp);
  fclose(fp);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static void write_file(const char *path, const char *data) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(data, 1, strlen(data), fp), strlen(data));
  assert_int_equal(fclose(fp), 0);
}

/* The list file is byte for byte `want` (NULL: there is none). */
static void assert_list_is(fx_t *f, const char *want) {
  size_t len = 0;
  char *have = read_file(f->list, &len);
  if (!want) {
    if (have) fail_msg("the list file exists: \"%s\"", have);
    return;
  }
  if (!have) fail_msg("the list file is gone, expected \"%s\"", want);
  if (len != strlen(want) || memcmp(have, want, len) != 0)
    fail_msg("the list file is \"%s\", expected \"%s\"", have, want);
  free(have);
}

/* The non-comment lines of a list text, concatenated. */
static void list_entries(const char *text, char *out, size_t outlen) {
  size_t o = 0;
  out[0] = '\0';
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
    if (*p != '#' && o + n < outlen) {
      memcpy(out + o, p, n);
      o += n;
      out[o] = '\0';
    }
    p += n;
  }
}

/* The entries of the list file now. */
static void assert_entries(fx_t *f, const char *want) {
  char *text = read_file(f->list, NULL);
  if (!text) fail_msg("no list file");
  char got[4096];
  list_entries(text, got, sizeof got);
  if (strcmp(got, want) != 0) fail_msg("entries \"%s\", expected \"%s\" in:\n%s", got, want, text);
  free(text);
}

/* ---- the fake Kamailio ---- */

static void fake_bad(fx_t *f, const char *why, const char *req, size_t n) {
  if (!f->bad[0]) snprintf(f->bad, sizeof f->bad, "%s: %.*s", why, (int)(n > 300 ? 300 : n), req);
}

static void fake_send(fx_t *f, const struct sockaddr_un *to, socklen_t tolen, const char *text) {
  ssize_t n = sendto(f->fd, text, strlen(text), 0, (const struct sockaddr *)to, tolen);
  /* The adapter may have gone (stop, time limit): its socket with it. */
  (void)n;
}

static void fake_send_json(fx_t *f, const struct sockaddr_un *to, socklen_t tolen, json_t *reply) {
  char *text = json_dumps(reply, JSON_COMPACT);
  assert_non_null(text);
  fake_send(f, to, tolen, text);
  free(text);
  json_decref(reply);
}

static json_t *fake_default_result(fx_t *f, int m) {
  char p[64], fl[64];
  switch (m) {
  case M_RELOAD: return json_string("Ok. Dispatcher successfully reloaded.");
  case M_STATS:
    /* As Kamailio lists the group: every dialog counter, sorted. */
    snprintf(p, sizeof p, "dialog:processed_dialogs = %llu", (unsigned long long)f->processed);
    snprintf(fl, sizeof fl, "dialog:failed_dialogs = %llu", (unsigned long long)f->failed);
    return json_pack("[s, s, s, s, s]", "dialog:active_dialogs = 3", "dialog:early_dialogs = 1",
                     "dialog:expired_dialogs = 0", fl, p);
  case M_HTABLE:
    /* As kamailio.cfg counts: every dialog was sent somewhere. */
    return json_pack("[{s:i, s:i, s:[{s:s, s:I, s:s}, {s:s, s:I, s:s}]}]", "entry", 3, "size", 2,
                     "slot", "name", "sent::hubei", "value",
                     (json_int_t)(f->processed - f->sent_away), "type", "int", "name",
                     "sent::shaanxi", "value", (json_int_t)f->sent_away, "type", "int");
  default:
    return json_pack("{s:I, s:I, s:i, s:i, s:I}", "starting", (json_int_t)f->starting, "connecting",
                     (json_int_t)f->connecting, "answering", 0, "ongoing", 2, "all",
                     (json_int_t)(f->starting + f->connecting + 2));
  }
}

static void fake_answer(fx_t *f, int m, const struct sockaddr_un *from, socklen_t flen,
                        json_t *id) {
  const fake_answer_t *a = &f->answer[m];
  if (m == M_RELOAD && f->calls[m] <= f->n_reload_script) a = &f->reload_script[f->calls[m] - 1];
  switch (a->mode) {
  case FAKE_OK: {
    json_t *result = fake_default_result(f, m);
    if (a->text) {
      json_decref(result);
      json_error_t je;
      result = json_loads(a->text, JSON_DECODE_ANY, &je);
      if (!result) fail_msg("test bug: result %s: %s", a->text, je.text);
    }
    fake_send_json(f, from, flen,
                   json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result, "id", id));
    break;
  }
  case FAKE_ERROR:
    fake_send_json(f, from, flen,
                   json_pack("{s:s, s:{s:i, s:s}, s:O}", "jsonrpc", "2.0", "error", "code", 500,
                             "message", a->text, "id", id));
    break;
  case FAKE_SILENT: break;
  case FAKE_RAW: {
    char out[2048], idtext[32];
    snprintf(idtext, sizeof idtext, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
    size_t o = 0;
    for (const char *p = a->text; *p && o + 32 < sizeof out;) {
      if (strncmp(p, "$ID", 3) == 0) {
        o += (size_t)snprintf(out + o, sizeof out - o, "%s", idtext);
        p += 3;
      } else {
        out[o++] = *p++;
      }
    }
    out[o] = '\0';
    fake_send(f, from, flen, out);
    break;
  }
  case FAKE_HOLD:
    if (f->held_id) fail_msg("the fake holds two requests");
    f->held_from = *from;
    f->held_len = flen;
    f->held_id = json_incref(id);
    break;
  }
}

static void fake_request(fx_t *f, const char *buf, size_t n, const struct sockaddr_un *from,
                         socklen_t flen) {
  f->requests++;
  json_error_t je;
  json_t *req = json_loadb(buf, n, 0, &je);
  json_t *id = json_object_get(req, "id"), *params = json_object_get(req, "params");
  const char *method = json_string_value(json_object_get(req, "method"));
  const char *version = json_string_value(json_object_get(req, "jsonrpc"));
  int m = M_COUNT;
  for (int i = 0; method && i < M_COUNT; i++)
    if (strcmp(method, method_name[i]) == 0) m = i;
  if (!json_is_object(req) || !version || strcmp(version, "2.0") != 0 || !json_is_integer(id)) {
    fake_bad(f, "not a JSON-RPC 2.0 request with an integer id", buf, n);
  } else if (m == M_COUNT) {
    fake_bad(f, "unexpected method", buf, n);
  } else {
    f->calls[m]++;
    if (m == M_RELOAD) {
      if (params && !(json_is_array(params) && json_array_size(params) == 0))
        fake_bad(f, "dispatcher.reload takes no parameter", buf, n);
      if (f->calls[m] <= MAX_RELOADS) f->reload_ms[f->calls[m] - 1] = now_ms();
      char *list = read_file(f->list, NULL);
      snprintf(f->list_at_reload, sizeof f->list_at_reload, "%s", list ? list : "(none)");
      free(list);
      if (f->ongoing > 0) {
        f->ongoing--;
        fake_send_json(f, from, flen,
                       json_pack("{s:s, s:{s:i, s:s}, s:O}", "jsonrpc", "2.0", "error", "code", 500,
                                 "message", "Ongoing reload", "id", id));
        json_decref(req);
        return;
      }
    } else if (m == M_STATS) {
      if (!json_is_array(params) || json_array_size(params) != 1 ||
          !json_is_string(json_array_get(params, 0)) ||
          strcmp(json_string_value(json_array_get(params, 0)), "dialog:") != 0)
        fake_bad(f, "stats.get_statistics without [\"dialog:\"]", buf, n);
    } else if (m == M_HTABLE) {
      if (!json_is_array(params) || json_array_size(params) != 1 ||
          !json_is_string(json_array_get(params, 0)) ||
          strcmp(json_string_value(json_array_get(params, 0)), "nirc") != 0)
        fake_bad(f, "htable.dump without [\"nirc\"]", buf, n);
    } else if (params && !(json_is_array(params) && json_array_size(params) == 0)) {
      fake_bad(f, "dlg.stats_active takes no parameter", buf, n);
    }
    fake_answer(f, m, from, flen, id);
  }
  json_decref(req);
}

static void fake_on_readable(uv_poll_t *p, int status, int events) {
  fx_t *f = p->data;
  (void)events;
  if (status < 0) fail_msg("fake Kamailio's socket: %s", uv_strerror(status));
  for (;;) {
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    memset(&from, 0, sizeof from);
    ssize_t n = recvfrom(f->fd, f->rx, sizeof f->rx - 1, 0, (struct sockaddr *)&from, &flen);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    f->rx[n] = '\0';
    if (flen <= offsetof(struct sockaddr_un, sun_path)) {
      /* An unbound sender: nobody to answer. */
      fake_bad(f, "request from an unnamed socket", f->rx, (size_t)n);
      continue;
    }
    fake_request(f, f->rx, (size_t)n, &from, flen);
  }
}

static void fake_start(fx_t *f) {
  f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(f->fd >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  assert_true(strlen(f->sock) < sizeof a.sun_path);
  snprintf(a.sun_path, sizeof a.sun_path, "%s", f->sock);
  if (bind(f->fd, (struct sockaddr *)&a, sizeof a) != 0)
    fail_msg("bind %s: %s", f->sock, strerror(errno));
  assert_int_equal(uv_poll_init(&f->loop, &f->poll, f->fd), 0);
  f->poll.data = f;
  f->poll_open = true;
  assert_int_equal(uv_poll_start(&f->poll, UV_READABLE, fake_on_readable), 0);
}

/* Answers the held reload. */
static void fx_release(fx_t *f) {
  assert_non_null(f->held_id);
  fake_send_json(f, &f->held_from, f->held_len,
                 json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "result",
                           "Ok. Dispatcher successfully reloaded.", "id", f->held_id));
  f->held_id = NULL;
}

/* ---- fixture ---- */

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/nirc-kam-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->sock, sizeof f->sock, "%s/rpc.sock", f->dir);
  snprintf(f->list, sizeof f->list, "%s/dispatcher.list", f->dir);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  tloop_init(&f->lp, &f->loop);
  f->fd = -1;
  fake_start(f);
  snprintf(f->conf.rpc_socket, sizeof f->conf.rpc_socket, "%s", f->sock);
  snprintf(f->conf.dispatcher_list, sizeof f->conf.dispatcher_list, "%s", f->list);
  snprintf(f->conf.targets, sizeof f->conf.targets, "%s", TARGETS);
  f->conf.set_id = SET_ID;
  f->conf.timeout_ms = 5000;
  *state = f;
  return 0;
}

static void fx_stop(fx_t *f) {
  if (f->impl) adapter_kamailio_ops.stop(f->impl);
  f->impl = NULL;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  int applies = f->applies, collects = f->collects;
  fx_stop(f);
  if (f->poll_open) uv_close((uv_handle_t *)&f->poll, NULL);
  /* The adapter's RPCs close their handles from the loop: run until
   * nothing is left, but not for ever. */
  bool drained = tloop_drain(&f->lp, 5000);
  int close_rc = uv_loop_close(&f->loop);
  /* No callback after stop(). */
  bool late = f->applies != applies || f->collects != collects;
  /* No temp file left beside the list. */
  char tmp[256], bad[sizeof f->bad];
  snprintf(tmp, sizeof tmp, "%s.nirc-tmp", f->list);
  bool tmp_left = access(tmp, F_OK) == 0;
  snprintf(bad, sizeof bad, "%s", f->bad);
  /* Clean up before judging, so a failure leaves nothing in /tmp. */
  if (f->fd >= 0) close(f->fd);
  json_decref(f->held_id);
  /* The test directory holds files (and the fake's socket) only. */
  tmpdir_remove(f->dir);
  if (close_rc == 0) free(f); /* else handles still point into it */
  if (!drained) fail_msg("handles still open 5 s after stop()");
  if (close_rc != 0) fail_msg("the loop does not close: a handle was left behind");
  if (late) fail_msg("a callback came after stop()");
  /* Every request the adapter sent was well-formed. */
  if (bad[0]) fail_msg("malformed request: %s", bad);
  if (tmp_left) fail_msg("%s left behind", tmp);
  return 0;
}

/* Starts the adapter on f->conf; 0 or the code, with the message in err. */
static int fx_try_start(fx_t *f, const adapter_kamailio_conf_t *conf, char *err, size_t errlen) {
  adapter_env_t env = {.loop = &f->loop, .slug = SLUG, .kamailio = conf};
  err[0] = '\0';
  return adapter_kamailio_ops.start(&env, &f->impl, err, errlen);
}

static void fx_start(fx_t *f, uint64_t timeout_ms) {
  fx_stop(f);
  f->conf.timeout_ms = timeout_ms;
  char err[512];
  int rc = fx_try_start(f, &f->conf, err, sizeof err);
  if (rc != 0) fail_msg("start: %s", err);
  assert_non_null(f->impl);
}

/* Runs the loop until *counter reaches `target` or `ms` pass; true if it
 * did. */
static bool fx_wait(fx_t *f, const int *counter, int target, uint64_t ms) {
  return tloop_wait(&f->lp, counter, target, ms);
}

/* Runs the loop for `ms`: whatever is due in that time happens. */
static void fx_run_for(fx_t *f, uint64_t ms) {
  tloop_run_for(&f->lp, ms);
}

static void fx_on_applied(void *arg, int rc, const char *err);

static void fx_apply(fx_t *f) {
  adapter_kamailio_ops.apply(f->impl, &f->route, fx_on_applied, f);
}

static void fx_on_applied(void *arg, int rc, const char *err) {
  fx_t *f = arg;
  f->applies++;
  f->apply_rc = rc;
  if (!err) fail_msg("apply completed with a NULL message");
  snprintf(f->apply_err, sizeof f->apply_err, "%s", err);
  if (f->stop_in_apply_cb) {
    f->stop_in_apply_cb = false;
    fx_stop(f);
  }
  if (f->reapply) {
    /* As the agent does with a queued route: the adapter is free again. */
    f->reapply = false;
    f->route.version++;
    fx_apply(f);
  }
}

static void fx_on_collected(void *arg, const adapter_load_t *load) {
  fx_t *f = arg;
  f->collects++;
  f->load = *load;
  if (f->stop_in_collect_cb) {
    f->stop_in_collect_cb = false;
    fx_stop(f);
  }
}

static void fx_collect(fx_t *f) {
  adapter_kamailio_ops.collect(f->impl, NOW_MS, fx_on_collected, f);
}

/* A route of up to three shares (NULL ends the list early). */
static void fx_route(route_t *r, const char *s1, uint32_t p1, const char *s2, uint32_t p2,
                     const char *s3, uint32_t p3) {
  memset(r, 0, sizeof *r);
  r->epoch = 3;
  r->version = 9;
  const char *s[3] = {s1, s2, s3};
  uint32_t p[3] = {p1, p2, p3};
  for (int i = 0; i < 3 && s[i]; i++) {
    snprintf(r->share[i].site, sizeof r->share[i].site, "%s", s[i]);
    r->share[i].permille = p[i];
    r->n_share++;
  }
  snprintf(r->reason, sizeof r->reason, "test");
  char err[256];
  if (route_validate(r, err, sizeof err) != 0) fail_msg("test bug: %s", err);
}

/* Applies f->route and waits for the outcome (at most ms). */
static void fx_apply_wait(fx_t *f, uint64_t ms) {
  int before = f->applies;
  fx_apply(f);
  if (!fx_wait(f, &f->applies, before + 1, ms))
    fail_msg("apply: no callback within %llu ms", (unsigned long long)ms);
}

static void fx_collect_wait(fx_t *f, uint64_t ms) {
  int before = f->collects;
  fx_collect(f);
  if (!fx_wait(f, &f->collects, before + 1, ms))
    fail_msg("collect: no callback within %llu ms", (unsigned long long)ms);
}

/* The failure of an apply: not applied, not a rejection. */
static void assert_apply_failed(fx_t *f) {
  if (f->apply_rc == 0) fail_msg("apply succeeded: %s", f->apply_err);
  assert_int_not_equal(f->apply_rc, NIRC_EUNKNOWN_SITE);
  assert_true(f->apply_err[0] != '\0');
}

/* ---- start ---- */

typedef struct {
  const char *name;
  const char *rpc_socket, *list, *targets; /* NULL: the fixture's */
  uint32_t set_id;                         /* 0: SET_ID */
  const char *want[2];                     /* expected in the message */
} start_case_t;

static void test_start_refuses_bad_config(void **state) {
  fx_t *f = *state;
  char err[512], missing_dir[256];
  snprintf(missing_dir, sizeof missing_dir, "%s/no-such-dir/dispatcher.list", f->dir);
  const start_case_t cases[] = {
      {.name = "no dispatcher_list", .list = "", .want = {"[kamailio] dispatcher_list"}},
      {.name = "dispatcher_list in a missing directory",
       .list = missing_dir,
       .want = {"[kamailio] dispatcher_list", "no-such-dir"}},
      {.name = "empty targets", .targets = "", .want = {"[kamailio] targets", SLUG}},
      {.name = "blank targets", .targets = " , ,", .want = {"[kamailio] targets"}},
      {.name = "a target without '='",
       .targets = "hubei",
       .want = {"[kamailio] targets", "'hubei'"}},
      {.name = "a second target without '='",
       .targets = "hubei=sip:127.0.0.1:5071, shaanxi",
       .want = {"[kamailio] targets", "shaanxi"}},
      {.name = "an http URI",
       .targets = "hubei=http://127.0.0.1:5071",
       .want = {"[kamailio] targets", "http://127.0.0.1:5071"}},
      {.name = "no URI", .targets = "hubei=", .want = {"[kamailio] targets", "hubei"}},
      {.name = "a URI with a space",
       .targets = "hubei=sip:127.0.0.1 5071",
       .want = {"[kamailio] targets", "hubei"}},
      {.name = "a URI with a comment sign",
       .targets = "hubei=sip:127.0.0.1:5071#x",
       .want = {"[kamailio] targets", "hubei"}},
      {.name = "a bad slug",
       .targets = "Hubei=sip:127.0.0.1:5071",
       .want = {"[kamailio] targets", "Hubei"}},
      {.name = "a site listed twice",
       .targets = "hubei=sip:127.0.0.1:5071, hubei=sip:127.0.0.1:5072",
       .want = {"[kamailio] targets", "twice"}},
      {.name = "no target for this site",
       .targets = "shaanxi=sip:127.0.0.1:5072",
       .want = {"[kamailio] targets", SLUG}},
      {.name = "no rpc_socket", .rpc_socket = "", .want = {"[kamailio] rpc_socket"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const start_case_t *c = &cases[i];
    adapter_kamailio_conf_t conf = f->conf;
    if (c->rpc_socket) snprintf(conf.rpc_socket, sizeof conf.rpc_socket, "%s", c->rpc_socket);
    if (c->list) snprintf(conf.dispatcher_list, sizeof conf.dispatcher_list, "%s", c->list);
    if (c->targets) snprintf(conf.targets, sizeof conf.targets, "%s", c->targets);
    f->impl = NULL;
    int rc = fx_try_start(f, &conf, err, sizeof err);
    if (rc != NIRC_ECONFIG) fail_msg("%s: start gave %d (%s)", c->name, rc, err);
    if (f->impl) fail_msg("%s: refused but left an adapter", c->name);
    for (int k = 0; k < 2 && c->want[k]; k++)
      if (!strstr(err, c->want[k])) fail_msg("%s: \"%s\" lacks \"%s\"", c->name, err, c->want[k]);
  }

  /* No [kamailio] section at all. */
  adapter_env_t env = {.loop = &f->loop, .slug = SLUG, .kamailio = NULL};
  assert_int_equal(adapter_kamailio_ops.start(&env, &f->impl, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "[kamailio]"));
  assert_null(f->impl);

  /* The adapter is found by name, and a well-formed section starts. */
  assert_ptr_equal(adapter_find("kamailio"), &adapter_kamailio_ops);
  assert_int_equal(fx_try_start(f, &f->conf, err, sizeof err), 0);
  assert_non_null(f->impl);
  /* Starting sends nothing and writes nothing. */
  fx_run_for(f, 50);
  assert_int_equal(f->requests, 0);
  assert_list_is(f, NULL);
}

/* ---- apply ---- */

static void test_apply_writes_list_then_reloads(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  f->answer[M_RELOAD].mode = FAKE_HOLD;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply(f);
  /* The reload arrives, with the new list already in place... */
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 1, 3000));
  char entries[4096];
  list_entries(f->list_at_reload, entries, sizeof entries);
  assert_string_equal(
      entries, "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=100;origin=hubei;rule=74657374\n");
  /* ...and the apply waits for Kamailio's answer. */
  fx_run_for(f, 100);
  assert_int_equal(f->applies, 0);
  fx_release(f);
  assert_true(fx_wait(f, &f->applies, 1, 3000));
  assert_int_equal(f->apply_rc, 0);
  assert_string_equal(f->apply_err, "");
  assert_entries(f,
                 "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=100;origin=hubei;rule=74657374\n");
  /* Every non-entry line is a comment: Kamailio parses the file. */
  char *text = read_file(f->list, NULL);
  assert_non_null(text);
  assert_int_equal(text[strlen(text) - 1], '\n');
  for (char *line = text; *line; line = strchr(line, '\n') + 1) {
    if (*line != '#' && strncmp(line, "7 sip:", 6) != 0) fail_msg("stray line in:\n%s", text);
  }
  free(text);
  /* Kamailio may run as another user: the list is readable by all. */
  struct stat st;
  assert_int_equal(stat(f->list, &st), 0);
  assert_true((st.st_mode & 0444) == 0444);
  /* Exactly one reload, and nothing else, even a while later. */
  fx_run_for(f, 100);
  assert_int_equal(f->calls[M_RELOAD], 1);
  assert_int_equal(f->requests, 1);
}

static void test_apply_again_from_the_callback(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  f->reapply = true;
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 2, 3000));
  assert_int_equal(f->apply_rc, 0);
  assert_int_equal(f->calls[M_RELOAD], 2);
  char *text = read_file(f->list, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "(3, 10)")); /* the second route's version */
  free(text);
}

typedef struct {
  const char *s[3];
  uint32_t p[3];
  const char *entries;
} weight_case_t;

static void test_apply_weights_are_percent(void **state) {
  fx_t *f = *state;
  /* Spaces around names and URIs are not part of them. */
  snprintf(f->conf.targets, sizeof f->conf.targets,
           " hubei = sip:127.0.0.1:5071 ,shaanxi=sip:127.0.0.1:5072,\thenan=sips:10.16.0.5:5061 ,");
  fx_start(f, 5000);
  const weight_case_t cases[] = {
      {{"hubei", "shaanxi"},
       {700, 300},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=70\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=30;origin=hubei;rule=74657374\n"},
      /* 33.3 + 33.3 + 33.4: the largest remainder takes the missing 1. */
      {{"hubei", "shaanxi", "henan"},
       {333, 333, 334},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=33\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=33;origin=hubei;rule=74657374\n"
       "7 sips:10.16.0.5:5061 0 0 duid=henan;weight=34;origin=hubei;rule=74657374\n"},
      {{"henan", "hubei", "shaanxi"},
       {334, 333, 333},
       "7 sips:10.16.0.5:5061 0 0 duid=henan;weight=34;origin=hubei;rule=74657374\n"
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=33\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=33;origin=hubei;rule=74657374\n"},
      /* Equal remainders: the larger share, then the earlier one. */
      {{"hubei", "shaanxi"},
       {455, 545},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=45\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=55;origin=hubei;rule=74657374\n"},
      {{"hubei", "shaanxi", "henan"},
       {335, 335, 330},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=34\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=33;origin=hubei;rule=74657374\n"
       "7 sips:10.16.0.5:5061 0 0 duid=henan;weight=33;origin=hubei;rule=74657374\n"},
      /* A tiny share keeps 1%, taken from the largest. */
      {{"hubei", "shaanxi"},
       {995, 5},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=99\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=1;origin=hubei;rule=74657374\n"},
      {{"hubei", "shaanxi"},
       {999, 1},
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=99\n"
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=1;origin=hubei;rule=74657374\n"},
      {{"shaanxi", "hubei", "henan"},
       {2, 996, 2},
       "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=1;origin=hubei;rule=74657374\n"
       "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=98\n"
       "7 sips:10.16.0.5:5061 0 0 duid=henan;weight=1;origin=hubei;rule=74657374\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const weight_case_t *c = &cases[i];
    fx_route(&f->route, c->s[0], c->p[0], c->s[1], c->p[1], c->s[2], c->p[2]);
    fx_apply_wait(f, 3000);
    if (f->apply_rc != 0) fail_msg("case %zu: %s", i, f->apply_err);
    assert_entries(f, c->entries);
    assert_int_equal(f->calls[M_RELOAD], (int)i + 1);
  }
}

static void test_apply_unknown_site_leaves_the_list(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  write_file(f->list, SEED);
  struct stat before, after;
  assert_int_equal(stat(f->list, &before), 0);
  fx_route(&f->route, "hubei", 500, "guizhou", 500, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_int_equal(f->apply_rc, NIRC_EUNKNOWN_SITE);
  assert_non_null(strstr(f->apply_err, "guizhou"));
  assert_non_null(strstr(f->apply_err, "[kamailio] targets"));
  /* Not rewritten at all: same bytes, same file. */
  assert_list_is(f, SEED);
  assert_int_equal(stat(f->list, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  fx_run_for(f, 100);
  assert_int_equal(f->requests, 0);

  /* The adapter is usable afterwards. */
  fx_route(&f->route, "hubei", 1000, NULL, 0, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_int_equal(f->apply_rc, 0);
  assert_entries(f, "7 sip:127.0.0.1:5071 0 0 duid=hubei;weight=100\n");
}

static void test_apply_refused_restores_the_list(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  write_file(f->list, SEED);
  f->answer[M_RELOAD] = (fake_answer_t){FAKE_ERROR, "Reload Failed"};
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_non_null(strstr(f->apply_err, "Reload Failed"));
  assert_list_is(f, SEED);
  /* Kamailio was asked with the new list in place. */
  assert_non_null(strstr(f->list_at_reload, "duid=shaanxi;weight=100"));
  /* It answered, so it kept its list: no reload of the restored file. */
  fx_run_for(f, 200);
  assert_int_equal(f->calls[M_RELOAD], 1);

  /* No list before: none after. */
  assert_int_equal(unlink(f->list), 0);
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_non_null(strstr(f->apply_err, "Reload Failed"));
  assert_list_is(f, NULL);

  /* A later apply that Kamailio accepts goes through. */
  f->answer[M_RELOAD] = (fake_answer_t){FAKE_OK, NULL};
  fx_apply_wait(f, 3000);
  assert_int_equal(f->apply_rc, 0);
  assert_entries(f,
                 "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=100;origin=hubei;rule=74657374\n");
}

static void test_apply_timeout_restores_the_list(void **state) {
  fx_t *f = *state;
  fx_start(f, 300);
  write_file(f->list, SEED);
  f->answer[M_RELOAD].mode = FAKE_SILENT;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  uint64_t t0 = now_ms();
  fx_apply_wait(f, 3000);
  uint64_t ms = now_ms() - t0;
  assert_apply_failed(f);
  if (ms < 290 || ms > 1000) fail_msg("timeout reported after %llu ms", (unsigned long long)ms);
  if (!strstr(f->apply_err, "did not answer") || !strstr(f->apply_err, "300 ms"))
    fail_msg("detail: %s", f->apply_err);
  assert_list_is(f, SEED);
  /* A late reload must end on the old list: the adapter asks Kamailio to
   * read the restored file. */
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 2, 1000));
  assert_string_equal(f->list_at_reload, SEED);
}

/* Kamailio read the new list but its answer never came (it hung after
 * the reload, or the answer was lost); when the restored list's reload
 * arrives, it refuses it as too soon after the previous one (reload_delta).
 * Unless the adapter asks again, Kamailio keeps routing by the list the
 * agent reported as not applied. */
static void test_apply_timeout_restored_list_reload_retries_ongoing(void **state) {
  fx_t *f = *state;
  static const fake_answer_t script[] = {{FAKE_SILENT, NULL}, {FAKE_ERROR, "Ongoing reload"}};
  fx_start(f, 300);
  write_file(f->list, SEED);
  f->reload_script = script;
  f->n_reload_script = 2;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_list_is(f, SEED);
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 2, 1000));
  if (!fx_wait(f, &f->calls[M_RELOAD], 3, 2000))
    fail_msg("the restored list's reload was refused (\"Ongoing reload\") and never asked again");
  assert_string_equal(f->list_at_reload, SEED);
}

typedef struct {
  const char *name;
  const char *raw;
  const char *want; /* in the detail */
} garbage_case_t;

static void test_apply_garbage_restores_the_list(void **state) {
  fx_t *f = *state;
  const garbage_case_t cases[] = {
      {"text", "Ok. Dispatcher successfully reloaded.\n", "not JSON-RPC"},
      {"empty datagram", "", "not JSON-RPC"},
      {"truncated JSON", "{\"jsonrpc\":\"2.0\",\"result\":\"Ok", "not JSON-RPC"},
      {"an array", "[{\"jsonrpc\":\"2.0\",\"result\":\"Ok\",\"id\":$ID}]", "not JSON-RPC"},
      {"neither result nor error", "{\"jsonrpc\":\"2.0\",\"id\":$ID}", "neither result nor error"},
  };
  write_file(f->list, SEED);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const garbage_case_t *c = &cases[i];
    fx_start(f, 1000);
    f->answer[M_RELOAD] = (fake_answer_t){FAKE_RAW, c->raw};
    fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
    uint64_t t0 = now_ms();
    fx_apply_wait(f, 3000);
    uint64_t ms = now_ms() - t0;
    if (f->apply_rc == 0) fail_msg("%s: applied", c->name);
    assert_apply_failed(f);
    if (!strstr(f->apply_err, c->want))
      fail_msg("%s: detail \"%s\" lacks \"%s\"", c->name, f->apply_err, c->want);
    /* An answer, even a bad one, is not waited out. */
    if (ms > 500) fail_msg("%s: failed after %llu ms", c->name, (unsigned long long)ms);
    assert_list_is(f, SEED);
  }
}

static void test_apply_ignores_an_answer_to_another_request(void **state) {
  fx_t *f = *state;
  fx_start(f, 300);
  write_file(f->list, SEED);
  /* Only a stray answer (another id): as good as none. */
  f->answer[M_RELOAD] =
      (fake_answer_t){FAKE_RAW, "{\"jsonrpc\":\"2.0\",\"result\":\"Ok\",\"id\":123456789}"};
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_non_null(strstr(f->apply_err, "did not answer"));
  assert_list_is(f, SEED);
}

static void test_apply_retries_ongoing_reload(void **state) {
  fx_t *f = *state;
  fx_start(f, 2000);
  write_file(f->list, SEED);
  f->ongoing = 2;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  uint64_t t0 = now_ms();
  fx_apply_wait(f, 4000);
  uint64_t ms = now_ms() - t0;
  if (f->apply_rc != 0) fail_msg("not applied: %s", f->apply_err);
  assert_int_equal(f->calls[M_RELOAD], 3);
  /* Retried at a pace, not hammered. */
  for (int i = 1; i < 3; i++) {
    uint64_t gap = f->reload_ms[i] - f->reload_ms[i - 1];
    if (gap < 200) fail_msg("retry %d after %llu ms", i, (unsigned long long)gap);
  }
  if (ms > 2000) fail_msg("applied after %llu ms", (unsigned long long)ms);
  assert_entries(f,
                 "7 sip:127.0.0.1:5072 0 0 duid=shaanxi;weight=100;origin=hubei;rule=74657374\n");
  assert_non_null(strstr(f->list_at_reload, "duid=shaanxi"));
}

static void test_apply_ongoing_reload_until_the_time_limit(void **state) {
  fx_t *f = *state;
  fx_start(f, 800);
  write_file(f->list, SEED);
  f->ongoing = 1000;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  uint64_t t0 = now_ms();
  fx_apply_wait(f, 4000);
  uint64_t ms = now_ms() - t0;
  assert_apply_failed(f);
  assert_non_null(strstr(f->apply_err, "Ongoing reload"));
  if (ms > 800 + 500) fail_msg("failed after %llu ms", (unsigned long long)ms);
  if (f->calls[M_RELOAD] < 2) fail_msg("not retried (%d reloads)", f->calls[M_RELOAD]);
  assert_list_is(f, SEED);
}

static void test_apply_without_kamailio(void **state) {
  fx_t *f = *state;
  snprintf(f->conf.rpc_socket, sizeof f->conf.rpc_socket, "%s/absent.sock", f->dir);
  fx_start(f, 5000);
  write_file(f->list, SEED);
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  uint64_t t0 = now_ms();
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_non_null(strstr(f->apply_err, "absent.sock"));
  if (now_ms() - t0 > 1000) fail_msg("an absent socket was waited for");
  assert_list_is(f, SEED);

  fx_collect_wait(f, 3000);
  assert_true(f->load.unreadable);
  assert_non_null(strstr(f->load.error, "absent.sock"));
}

/* ---- collect ---- */

/* Every look after the first is measured per destination (the first has
 * no base to count from). */
static void assert_load(const adapter_load_t *l, uint32_t offered, uint32_t answered,
                        uint32_t abandoned, bool routing_measured) {
  if (l->unreadable) fail_msg("unreadable: %s", l->error);
  /* A proxy measures calls only: everything else is "not measured". */
  adapter_load_t want = {.offered = offered,
                         .answered = answered,
                         .abandoned = abandoned,
                         .not_measured = REPORT_NM_PROXY,
                         .routing_measured = routing_measured};
  if (memcmp(l, &want, sizeof want) != 0)
    fail_msg("load offered %u answered %u abandoned %u not measured %#x routing measured %d "
             "(others 0), expected %u %u %u %#x %d",
             l->offered, l->answered, l->abandoned, l->not_measured, l->routing_measured, offered,
             answered, abandoned, (unsigned)REPORT_NM_PROXY, routing_measured);
}

static void test_collect_deltas(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  /* First look: the counters cover an unknown past. */
  f->processed = 10, f->failed = 2, f->starting = 1, f->connecting = 1;
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 0, 0, 0, false);
  assert_int_equal(f->calls[M_STATS], 1);
  assert_int_equal(f->calls[M_ACTIVE], 1);

  /* 15 new dialogs, 3 failed; answered 10-2-2=6 then 25-5-2=18. */
  f->processed = 25, f->failed = 5, f->starting = 0, f->connecting = 2;
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 15, 12, 3, true);

  /* Nothing happened. */
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 0, 0, 0, true);

  /* Ringing calls are not answered yet; once they are, they count. */
  f->processed = 30, f->starting = 3, f->connecting = 4;
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 5, 0, 0, true);
  f->starting = 0, f->connecting = 0;
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 0, 7, 0, true);

  /* Kamailio restarted: what it counted since is new. */
  f->processed = 4, f->failed = 1, f->starting = 1, f->connecting = 0;
  fx_collect_wait(f, 3000);
  assert_load(&f->load, 4, 2, 1, true);
  assert_int_equal(f->calls[M_STATS], 6);
  assert_int_equal(f->calls[M_ACTIVE], 6);
}

/* Calls sent to another site leave offered for routed_away and routed_to. */
static void test_collect_per_destination(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  f->processed = 10, f->sent_away = 4;
  fx_collect_wait(f, 3000);
  assert_int_equal(f->load.routed_away, 0);
  assert_int_equal(f->load.n_routed_to, 0);
  assert_false(f->load.routing_measured); /* no base yet: nothing was counted */
  f->processed = 25, f->sent_away = 10;
  fx_collect_wait(f, 3000);
  assert_true(f->load.routing_measured);
  assert_int_equal(f->load.offered, 9);
  assert_int_equal(f->load.routed_away, 6);
  assert_int_equal(f->load.n_routed_to, 1);
  assert_string_equal(f->load.routed_to[0].site, "shaanxi");
  assert_int_equal(f->load.routed_to[0].calls, 6);
  assert_int_equal(f->calls[M_HTABLE], 2);
}

static void test_collect_and_apply_at_once(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  f->processed = 10, f->failed = 2;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply(f);
  fx_collect(f);
  assert_true(fx_wait(f, &f->applies, 1, 3000));
  assert_true(fx_wait(f, &f->collects, 1, 3000));
  assert_int_equal(f->apply_rc, 0);
  assert_load(&f->load, 0, 0, 0, false);
}

typedef struct {
  const char *name;
  fake_answer_t stats, active, htable;
  uint64_t timeout_ms; /* 0: 2000 */
  const char *want;    /* in load.error */
} collect_case_t;

static void test_collect_unreadable(void **state) {
  fx_t *f = *state;
  const collect_case_t cases[] = {
      {.name = "stats garbage",
       .stats = {FAKE_RAW, "dialog:processed_dialogs = 12"},
       .want = "not JSON-RPC"},
      {.name = "stats silent",
       .stats = {FAKE_SILENT, NULL},
       .timeout_ms = 300,
       .want = "did not answer stats.get_statistics within 300 ms"},
      {.name = "stats refused",
       .stats = {FAKE_ERROR, "Method Not Found"},
       .want = "Method Not Found"},
      {.name = "stats not a list",
       .stats = {FAKE_OK, "{\"processed\": 12}"},
       .want = "not understood"},
      {.name = "stats list of numbers", .stats = {FAKE_OK, "[12, 2]"}, .want = "not understood"},
      {.name = "stats without the dialog module", .stats = {FAKE_OK, "[]"}, .want = "dialog"},
      {.name = "stats without failed_dialogs",
       .stats = {FAKE_OK, "[\"dialog:processed_dialogs = 12\"]"},
       .want = "dialog"},
      {.name = "stats counter not a number",
       .stats = {FAKE_OK, "[\"dialog:failed_dialogs = 1\", \"dialog:processed_dialogs = twelve\"]"},
       .want = "not understood"},
      {.name = "stats counter negative",
       .stats = {FAKE_OK, "[\"dialog:failed_dialogs = -1\", \"dialog:processed_dialogs = 12\"]"},
       .want = "not understood"},
      {.name = "stats counter huge",
       .stats = {FAKE_OK, "[\"dialog:failed_dialogs = 1\","
                          " \"dialog:processed_dialogs = 99999999999999999999999\"]"},
       .want = "not understood"},
      {.name = "active garbage", .active = {FAKE_RAW, "starting: 1"}, .want = "not JSON-RPC"},
      {.name = "active silent",
       .active = {FAKE_SILENT, NULL},
       .timeout_ms = 300,
       .want = "did not answer dlg.stats_active within 300 ms"},
      {.name = "active refused",
       .active = {FAKE_ERROR, "No such dialog module"},
       .want = "No such"},
      {.name = "active without connecting",
       .active = {FAKE_OK, "{\"starting\": 1, \"answering\": 0}"},
       .want = "not understood"},
      {.name = "active as text",
       .active = {FAKE_OK, "{\"starting\": \"1\", \"connecting\": \"0\"}"},
       .want = "not understood"},
      {.name = "active negative",
       .active = {FAKE_OK, "{\"starting\": -1, \"connecting\": 0}"},
       .want = "not understood"},
      {.name = "active a list", .active = {FAKE_OK, "[1, 0]"}, .want = "not understood"},
      {.name = "no htable", .htable = {FAKE_ERROR, "Method Not Found"}, .want = "htable 'nirc'"},
      {.name = "htable bad name",
       .htable = {FAKE_OK, "[{\"slot\": [{\"name\": \"sent::Bad Site\", \"value\": 1}]}]"},
       .want = "sent::<site>"},
  };
  f->processed = 12, f->failed = 2;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const collect_case_t *c = &cases[i];
    uint64_t timeout_ms = c->timeout_ms ? c->timeout_ms : 2000;
    fx_start(f, timeout_ms);
    f->answer[M_STATS] = c->stats;
    f->answer[M_ACTIVE] = c->active;
    f->answer[M_HTABLE] = c->htable;
    uint64_t t0 = now_ms();
    int before = f->collects;
    fx_collect(f);
    if (!fx_wait(f, &f->collects, before + 1, timeout_ms + 3000))
      fail_msg("%s: no callback", c->name);
    uint64_t ms = now_ms() - t0;
    adapter_load_t l = f->load;
    if (!l.unreadable) fail_msg("%s: not flagged unreadable", c->name);
    if (!strstr(l.error, c->want))
      fail_msg("%s: error \"%s\" lacks \"%s\"", c->name, l.error, c->want);
    /* Flagged, and no invented numbers next to the flag. */
    adapter_load_t zero = {0};
    l.unreadable = false;
    memset(l.error, 0, sizeof l.error);
    if (memcmp(&l, &zero, sizeof l) != 0) fail_msg("%s: numbers reported with the flag", c->name);
    if (ms > timeout_ms + 700) fail_msg("%s: took %llu ms", c->name, (unsigned long long)ms);
    if (c->timeout_ms && ms < timeout_ms - 10)
      fail_msg("%s: gave up after %llu ms", c->name, (unsigned long long)ms);
  }
}

/* ---- stop ---- */

static void test_stop_during_apply(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  f->answer[M_RELOAD].mode = FAKE_HOLD;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply(f);
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 1, 3000));
  fx_stop(f);
  /* Kamailio answers after all: nobody listens. */
  fx_release(f);
  fx_run_for(f, 200);
  assert_int_equal(f->applies, 0);
  /* fx_teardown checks that the loop closes and no callback came. */
}

static void test_stop_during_the_retry_delay(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  f->ongoing = 1000;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply(f);
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 1, 3000));
  fx_run_for(f, 50); /* the refusal is read; the retry waits */
  fx_stop(f);
  fx_run_for(f, 500);
  assert_int_equal(f->calls[M_RELOAD], 1); /* no retry after stop */
  assert_int_equal(f->applies, 0);
}

static void test_stop_with_everything_in_flight(void **state) {
  fx_t *f = *state;
  fx_start(f, 300);
  write_file(f->list, SEED);
  f->answer[M_RELOAD].mode = FAKE_SILENT;
  f->answer[M_STATS].mode = FAKE_SILENT;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  /* The reload of the restored list is in flight, unanswered... */
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 2, 1000));
  /* ...and so are a collect and a new apply. */
  fx_collect(f);
  assert_true(fx_wait(f, &f->calls[M_STATS], 1, 1000));
  fx_apply(f);
  assert_true(fx_wait(f, &f->calls[M_RELOAD], 3, 1000));
  fx_stop(f);
  fx_run_for(f, 500);
  assert_int_equal(f->applies, 1);
  assert_int_equal(f->collects, 0);
}

static void test_stop_from_the_callbacks(void **state) {
  fx_t *f = *state;
  /* From a failed apply's callback, with the restored list's reload just
   * started. */
  fx_start(f, 300);
  f->answer[M_RELOAD].mode = FAKE_SILENT;
  fx_route(&f->route, "shaanxi", 1000, NULL, 0, NULL, 0);
  f->stop_in_apply_cb = true;
  fx_apply_wait(f, 3000);
  assert_apply_failed(f);
  assert_null(f->impl);
  fx_run_for(f, 100);

  /* From a successful apply's callback. */
  fx_start(f, 5000);
  f->answer[M_RELOAD].mode = FAKE_OK;
  f->stop_in_apply_cb = true;
  fx_apply_wait(f, 3000);
  assert_int_equal(f->apply_rc, 0);
  assert_null(f->impl);

  /* From a collect's callback, good or unreadable. */
  fx_start(f, 5000);
  f->stop_in_collect_cb = true;
  fx_collect_wait(f, 3000);
  assert_false(f->load.unreadable);
  assert_null(f->impl);
  fx_start(f, 5000);
  f->answer[M_ACTIVE] = (fake_answer_t){FAKE_RAW, "?"};
  f->stop_in_collect_cb = true;
  fx_collect_wait(f, 3000);
  assert_true(f->load.unreadable);
  assert_null(f->impl);
  assert_int_equal(f->applies, 2);
  assert_int_equal(f->collects, 2);
}

static void test_stop_when_idle(void **state) {
  fx_t *f = *state;
  fx_start(f, 5000);
  fx_stop(f);
  adapter_kamailio_ops.stop(NULL);
}

int main(void) {
  log_set_level(LOG_LVL_ERROR);
  /* As nirc-agent.service sets it: the list must come out readable by
   * Kamailio's user. */
  umask(022);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_start_refuses_bad_config, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_writes_list_then_reloads, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_again_from_the_callback, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_weights_are_percent, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_unknown_site_leaves_the_list, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_refused_restores_the_list, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_timeout_restores_the_list, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_timeout_restored_list_reload_retries_ongoing,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_garbage_restores_the_list, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_ignores_an_answer_to_another_request, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_retries_ongoing_reload, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_ongoing_reload_until_the_time_limit, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_without_kamailio, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_deltas, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_per_destination, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_and_apply_at_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_unreadable, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_during_apply, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_during_the_retry_delay, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_with_everything_in_flight, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_from_the_callbacks, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_when_idle, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
