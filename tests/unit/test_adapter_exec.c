/* Unit tests of the exec adapter (site-agent/adapter_exec.c), on a real
 * libuv loop with real processes.
 *
 * Each test writes small shell scripts into its own mkdtemp directory and
 * starts the adapter on them. The loop is driven with UV_RUN_ONCE until the
 * adapter's callback fired, bounded by a deadline timer; nothing sleeps.
 * Checked: the route arrives on apply_cmd's stdin as the documented JSON
 * with NIRC_SITE/NIRC_EPOCH/NIRC_VERSION set; exit 3 is a rejection
 * (NIRC_EUNKNOWN_SITE); another status, a signal or the timeout is a
 * failure whose detail says what happened; a timed-out command and the
 * children it started are killed while the loop keeps running; collect_cmd's
 * JSON is read field by field, and every way it can be wrong (exit status,
 * hang, nothing, garbage, invalid JSON, wrong types, negative or huge
 * numbers, missing keys, too much output) gives an unreadable load with a
 * reason and no numbers; stop() with commands running kills them, calls no
 * callback and leaves no handle open (teardown closes the loop, and the
 * ASan build checks for leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "adapter.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "support/loop.h"
#include "support/tmpdir.h"

#define SLUG   "hubei"
#define NOW_MS INT64_C(1579622400123)
/* Must match ADAPTER_EXEC_OUT_MAX in adapter_exec.c (not exported). */
#define OUT_MAX (64 * 1024)

typedef struct {
  char dir[64];
  uv_loop_t loop;
  tloop_t lp;
  uv_timer_t ticker; /* a probe that the loop is not stalled */
  unsigned ticks;
  adapter_exec_conf_t conf;
  void *impl;
  /* apply results */
  int applies;
  int apply_rc;
  char apply_err[512];
  bool reapply; /* the apply callback starts another apply once */
  route_t route;
  /* collect results */
  int collects;
  bool ctl_known;     /* the agent knows the controller's clock */
  int64_t ctl_off_ms; /* the controller's minus this host's */
  adapter_load_t load;
  /* verify results */
  int verifies;
  adapter_verify_t verdict;
  char found[200], detail[512];
} fx_t;

/* ---- fixture ---- */

static void fx_on_tick(uv_timer_t *t) {
  fx_t *f = t->data;
  f->ticks++;
}

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/nirc-exec-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  tloop_init(&f->lp, &f->loop);
  uv_timer_init(&f->loop, &f->ticker);
  f->ticker.data = f;
  f->conf.timeout_ms = 5000;
  *state = f;
  return 0;
}

static void fx_stop(fx_t *f) {
  if (f->impl) adapter_exec_ops.stop(f->impl);
  f->impl = NULL;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  int applies = f->applies, collects = f->collects;
  fx_stop(f);
  uv_close((uv_handle_t *)&f->ticker, NULL);
  /* Killed commands still have to be reaped and their handles closed:
   * run until nothing is left, but not for ever. */
  assert_true(tloop_drain(&f->lp, 5000));
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left behind */
  /* No callback after stop(). */
  assert_int_equal(f->applies, applies);
  assert_int_equal(f->collects, collects);
  /* The test directory holds files only. */
  tmpdir_remove(f->dir);
  free(f);
  return 0;
}

/* Writes an executable script `name` in the test directory; `$d` in the
 * body is that directory. Returns its path (valid for three more calls). */
static const char *fx_script(fx_t *f, const char *name, const char *body) {
  static char paths[4][128];
  static unsigned next;
  char *path = paths[next++ % 4];
  snprintf(path, 128, "%s/%s", f->dir, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "#!/bin/sh\nd=$(dirname \"$0\")\n%s\n", body);
  assert_int_equal(fclose(fp), 0);
  assert_int_equal(chmod(path, 0755), 0);
  return path;
}

static void fx_write(fx_t *f, const char *name, const char *data, size_t len) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", f->dir, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  assert_int_equal(fwrite(data, 1, len, fp), len);
  assert_int_equal(fclose(fp), 0);
}

/* Contents of a file of the test directory (malloc'ed), or NULL. */
static char *fx_read(fx_t *f, const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", f->dir, name);
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  char *buf = calloc(1, 65536);
  assert_non_null(buf);
  size_t n = fread(buf, 1, 65535, fp);
  buf[n] = '\0';
  fclose(fp);
  return buf;
}

static pid_t fx_read_pid(fx_t *f, const char *name) {
  char *s = fx_read(f, name);
  pid_t pid = s ? (pid_t)atoi(s) : 0;
  free(s);
  return pid;
}

/* Starts the adapter with these commands, as [exec] would give them. */
/* adapter_env_t.controller_ms, as the agent answers it. */
static bool fx_controller_ms(void *ctx, int64_t host_ms, int64_t *out) {
  const fx_t *f = ctx;
  if (!f->ctl_known) return false;
  *out = host_ms + f->ctl_off_ms;
  return true;
}

static void fx_start_cmds(fx_t *f, const char *apply_cmd, const char *collect_cmd,
                          uint64_t timeout_ms) {
  fx_stop(f);
  snprintf(f->conf.apply_cmd, sizeof f->conf.apply_cmd, "%s", apply_cmd);
  snprintf(f->conf.collect_cmd, sizeof f->conf.collect_cmd, "%s", collect_cmd);
  f->conf.timeout_ms = timeout_ms;
  adapter_env_t env = {.loop = &f->loop,
                       .slug = SLUG,
                       .exec = &f->conf,
                       .controller_ms = fx_controller_ms,
                       .clock_ctx = f};
  char err[256] = "";
  int rc = adapter_exec_ops.start(&env, &f->impl, err, sizeof err);
  if (rc != 0) fail_msg("start: %s", err);
}

/* Starts the adapter on scripts with these bodies (NULL: one that
 * succeeds). */
static void fx_start(fx_t *f, const char *apply_body, const char *collect_body,
                     uint64_t timeout_ms) {
  fx_start_cmds(f, fx_script(f, "apply.sh", apply_body ? apply_body : "cat >/dev/null"),
                fx_script(f, "collect.sh", collect_body ? collect_body : "echo '{}'"), timeout_ms);
}

/* Runs the loop until *counter reaches `target` or `ms` pass; true if it
 * did. */
static bool fx_wait(fx_t *f, const int *counter, int target, uint64_t ms) {
  return tloop_wait(&f->lp, counter, target, ms);
}

/* Runs the loop until `cond(f, arg)` holds or `ms` pass. */
static bool fx_wait_for(fx_t *f, bool (*cond)(void *f, const void *), const void *arg,
                        uint64_t ms) {
  return tloop_wait_for(&f->lp, cond, f, arg, ms);
}

/* The file holds a whole line: a shell's `echo $! > file` creates the file
 * before it writes the number, so existing is not enough to read it. */
static bool fx_file_written(void *fp, const void *name) {
  const fx_t *f = fp;
  char path[128], buf[64];
  snprintf(path, sizeof path, "%s/%s", f->dir, (const char *)name);
  FILE *fh = fopen(path, "r");
  if (!fh) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, fh);
  fclose(fh);
  return n > 0 && buf[n - 1] == '\n';
}

/* Gone: no such process, or a zombie waiting for whoever inherited it. */
static bool fx_pid_gone(void *f, const void *arg) {
  (void)f;
  pid_t pid = *(const pid_t *)arg;
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64], buf[256] = "";
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *fp = fopen(path, "r");
  if (!fp) return true;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* "pid (comm) S ..." */
  return p && p[1] == ' ' && p[2] == 'Z';
}

static void fx_on_applied(void *arg, int rc, const char *err);

static void fx_apply(fx_t *f) {
  adapter_exec_ops.apply(f->impl, &f->route, fx_on_applied, f);
}

static void fx_on_applied(void *arg, int rc, const char *err) {
  fx_t *f = arg;
  f->applies++;
  f->apply_rc = rc;
  snprintf(f->apply_err, sizeof f->apply_err, "%s", err ? err : "");
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
}

static void fx_collect(fx_t *f) {
  adapter_exec_ops.collect(f->impl, NOW_MS, fx_on_collected, f);
}

/* A route with shares, inbound sources, an expiry and a non-ASCII reason. */
static void fx_route(route_t *r) {
  memset(r, 0, sizeof *r);
  r->epoch = 7;
  r->version = 42;
  snprintf(r->share[0].site, sizeof r->share[0].site, "hubei");
  r->share[0].permille = 700;
  snprintf(r->share[1].site, sizeof r->share[1].site, "henan");
  r->share[1].permille = 300;
  r->n_share = 2;
  snprintf(r->inbound[0].site, sizeof r->inbound[0].site, "guizhou");
  r->inbound[0].permille = 1000;
  r->n_inbound = 1;
  r->revert_at_ms = INT64_C(1579651200000);
  snprintf(r->reason, sizeof r->reason, "overflow: 武汉 queue");
}

static const char *const collect_json =
    "{\"calls_offered\": 120, \"calls_answered\": 110, \"calls_abandoned\": 4,"
    " \"calls_in_queue\": 6, \"longest_wait_ms\": 45000, \"agents_logged_in\": 30,"
    " \"agents_ready\": 5, \"agents_talking\": 22, \"agents_not_ready\": 3, \"aht_ms\": 180000,"
    " \"answered_within_threshold\": 90, \"sl_threshold_s\": 20,"
    " \"calls_from_other_sites\": 12, \"calls_routed_away\": 0,"
    " \"vendor\": {\"name\": \"ACME PBX\", \"build\": [1, 2]}, \"note\": null}";

/* ---- start ---- */

static void test_start_refuses_missing_commands(void **state) {
  fx_t *f = *state;
  adapter_env_t env = {.loop = &f->loop,
                       .slug = SLUG,
                       .exec = &f->conf,
                       .controller_ms = fx_controller_ms,
                       .clock_ctx = f};
  char err[256];
  void *impl = NULL;
  snprintf(f->conf.collect_cmd, sizeof f->conf.collect_cmd, "true");
  assert_int_equal(adapter_exec_ops.start(&env, &impl, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "[exec] apply_cmd"));
  f->conf.collect_cmd[0] = '\0';
  snprintf(f->conf.apply_cmd, sizeof f->conf.apply_cmd, "true");
  assert_int_equal(adapter_exec_ops.start(&env, &impl, err, sizeof err), NIRC_ECONFIG);
  assert_non_null(strstr(err, "[exec] collect_cmd"));
  assert_null(impl);
  assert_ptr_equal(adapter_find("exec"), &adapter_exec_ops);
}

/* ---- apply ---- */

static void test_apply_writes_route_json_and_env(void **state) {
  fx_t *f = *state;
  fx_start(f,
           "cat > \"$d/stdin.json\"\n"
           "printf '%s %s %s\\n' \"$NIRC_SITE\" \"$NIRC_EPOCH\" \"$NIRC_VERSION\" > \"$d/env.txt\"",
           NULL, 5000);
  fx_route(&f->route);
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  assert_int_equal(f->apply_rc, 0);
  assert_string_equal(f->apply_err, "");

  char *in = fx_read(f, "stdin.json");
  assert_non_null(in);
  assert_int_equal(in[strlen(in) - 1], '\n'); /* one line, for `read` too */
  json_error_t je;
  json_t *j = json_loads(in, 0, &je);
  if (!j) fail_msg("stdin is not JSON (%s): %s", je.text, in);
  assert_string_equal(json_string_value(json_object_get(j, "site")), SLUG);
  route_t back;
  char err[256];
  assert_int_equal(route_from_json(j, &back, err, sizeof err), 0);
  assert_true(route_same(&f->route, &back));
  assert_int_equal(back.epoch, 7);
  assert_int_equal(back.version, 42);
  assert_int_equal(back.revert_at_ms, f->route.revert_at_ms);
  assert_string_equal(back.reason, f->route.reason);
  /* The shares in order, as the documented example shows them. */
  json_t *route = json_object_get(j, "route");
  assert_int_equal(json_array_size(route), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(route, 1), "site")),
                      "henan");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(route, 1), "permille")), 300);
  json_decref(j);
  free(in);

  char *env = fx_read(f, "env.txt");
  assert_non_null(env);
  assert_string_equal(env, SLUG " 7 42\n");
  free(env);
}

static void test_apply_exit_3_is_unknown_site(void **state) {
  fx_t *f = *state;
  fx_start(f, "cat >/dev/null\necho 'no trunk to henan' >&2\nexit 3", NULL, 5000);
  fx_route(&f->route);
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  assert_int_equal(f->apply_rc, NIRC_EUNKNOWN_SITE);
  assert_string_equal(f->apply_err, "apply_cmd exited 3: no trunk to henan");
}

static void test_apply_exit_1_fails_with_stderr(void **state) {
  fx_t *f = *state;
  /* Does not read its stdin either: the adapter must cope with EPIPE. */
  fx_start(f, "printf '\\nPBX refused: trunk busy\\nsecond line\\n' >&2\nexit 1", NULL, 5000);
  fx_route(&f->route);
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  assert_int_not_equal(f->apply_rc, 0);
  assert_int_not_equal(f->apply_rc, NIRC_EUNKNOWN_SITE);
  assert_string_equal(f->apply_err, "apply_cmd exited 1: PBX refused: trunk busy");
}

static void test_apply_signal_and_missing_command(void **state) {
  fx_t *f = *state;
  /* The command itself, not a script: a script run by `sh -c` is a child
   * of that shell, which would report the signal as exit 143. */
  fx_start_cmds(f, "cat >/dev/null; kill -TERM $$", "true", 5000);
  fx_route(&f->route);
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  assert_int_equal(f->apply_rc, NIRC_EIO);
  assert_string_equal(f->apply_err, "apply_cmd killed by signal 15");

  /* A command that does not exist: the shell says so, with 127. */
  char cmd[128];
  snprintf(cmd, sizeof cmd, "%s/no-such-script", f->dir);
  fx_start_cmds(f, cmd, "true", 5000);
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 2, 5000));
  assert_int_equal(f->apply_rc, NIRC_EIO);
  assert_non_null(strstr(f->apply_err, "apply_cmd exited 127: "));
  assert_non_null(strstr(f->apply_err, "no-such-script"));
}

static void test_apply_timeout_kills_the_process_group(void **state) {
  fx_t *f = *state;
  /* A shell with a child: killing the shell alone would leave the sleep. */
  fx_start(f,
           "echo $$ > \"$d/shell.pid\"\n"
           "sleep 30 &\n"
           "echo $! > \"$d/child.pid\"\n"
           "wait",
           NULL, 300);
  fx_route(&f->route);
  uint64_t t0 = uv_hrtime();
  fx_apply(f);
  /* The loop is not stalled meanwhile: a 10 ms ticker keeps firing. */
  f->ticks = 0;
  uv_timer_start(&f->ticker, fx_on_tick, 10, 10);
  assert_true(fx_wait(f, &f->applies, 1, 3000));
  uv_timer_stop(&f->ticker);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(f->apply_rc, NIRC_ETIMEOUT);
  assert_string_equal(f->apply_err, "apply_cmd killed after 300 ms timeout");
  if (ms < 290 || ms > 1000) fail_msg("timeout reported after %llu ms", (unsigned long long)ms);
  assert_true(f->ticks >= 10);

  pid_t shell = fx_read_pid(f, "shell.pid"), child = fx_read_pid(f, "child.pid");
  assert_true(shell > 0 && child > 0);
  /* The script's shell and its child were both killed (the `sh -c` the
   * adapter started has been reaped already). */
  pid_t pids[] = {shell, child};
  for (int i = 0; i < 2; i++) {
    if (!fx_wait_for(f, fx_pid_gone, &pids[i], 1000)) {
      kill(pids[i], SIGKILL);
      fail_msg("process %d of the command survived the timeout", (int)pids[i]);
    }
  }
}

static void test_apply_leftover_child_does_not_hold_the_result(void **state) {
  fx_t *f = *state;
  /* Exits 0 at once but leaves a child holding its stderr: the adapter
   * waits a short drain time, not the whole timeout. */
  fx_start(f,
           "cat >/dev/null\n"
           "sleep 30 &\n"
           "echo $! > \"$d/child.pid\"\n"
           "exit 0",
           NULL, 5000);
  fx_route(&f->route);
  uint64_t t0 = uv_hrtime();
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  pid_t child = fx_read_pid(f, "child.pid");
  if (child > 0) kill(child, SIGKILL);
  assert_int_equal(f->apply_rc, 0);
  if (ms > 1000) fail_msg("applied after %llu ms", (unsigned long long)ms);
}

static void test_apply_again_from_the_callback(void **state) {
  fx_t *f = *state;
  fx_start(f, "cat >> \"$d/all.json\"", NULL, 5000);
  fx_route(&f->route);
  f->reapply = true;
  fx_apply(f);
  assert_true(fx_wait(f, &f->applies, 2, 5000));
  assert_int_equal(f->apply_rc, 0);
  char *all = fx_read(f, "all.json");
  assert_non_null(all);
  assert_non_null(strstr(all, "\"version\":42"));
  assert_non_null(strstr(all, "\"version\":43"));
  free(all);
}

/* ---- collect ---- */

/* NIRC_NOW_MS is this host's business clock (the PBX beside it stamps its
 * calls so); the controller's, as the agent measured it, is
 * NIRC_CONTROLLER_NOW_MS, and absent while the agent does not know it
 * (not this host's time passed off as the controller's). */
static void test_collect_gets_both_clocks(void **state) {
  fx_t *f = *state;
  fx_start(f, NULL,
           "printf '%s %s\\n' \"$NIRC_NOW_MS\" \"${NIRC_CONTROLLER_NOW_MS-unset}\" >> "
           "\"$d/env.txt\"\necho '{\"calls_offered\": 1, \"calls_in_queue\": 0, "
           "\"agents_logged_in\": 1, \"agents_ready\": 1}'",
           5000);
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 1, 5000));
  f->ctl_known = true;
  f->ctl_off_ms = -3600000; /* this host an hour ahead */
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 2, 5000));
  char *env = fx_read(f, "env.txt");
  assert_non_null(env);
  assert_string_equal(env, "1579622400123 unset\n1579622400123 1579618800123\n");
  free(env);
}

static void test_collect_reads_every_field(void **state) {
  fx_t *f = *state;
  char body[2048];
  snprintf(body, sizeof body,
           "printf '%%s %%s\\n' \"$NIRC_SITE\" \"$NIRC_NOW_MS\" > \"$d/env.txt\"\ncat <<'EOF'\n%s\n"
           "EOF",
           collect_json);
  fx_start(f, NULL, body, 5000);
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 1, 5000));
  const adapter_load_t *l = &f->load;
  if (l->unreadable) fail_msg("unreadable: %s", l->error);
  assert_int_equal(l->offered, 120);
  assert_int_equal(l->answered, 110);
  assert_int_equal(l->abandoned, 4);
  assert_int_equal(l->in_queue, 6);
  assert_int_equal(l->longest_wait_ms, 45000);
  assert_int_equal(l->logged_in, 30);
  assert_int_equal(l->ready, 5);
  assert_int_equal(l->talking, 22);
  assert_int_equal(l->not_ready, 3);
  assert_int_equal(l->aht_ms, 180000);
  assert_int_equal(l->answered_within, 90);
  assert_int_equal(l->sl_threshold_s, 20);
  assert_int_equal(l->from_other_sites, 12);
  assert_int_equal(l->routed_away, 0);
  assert_string_equal(l->error, "");
  char *env = fx_read(f, "env.txt");
  assert_non_null(env);
  assert_string_equal(env, SLUG " 1579622400123\n");
  free(env);

  /* Only the four required keys: the rest read as 0. */
  fx_stop(f);
  fx_start(f, NULL,
           "echo '{\"calls_offered\": 3, \"calls_in_queue\": 1, \"agents_logged_in\": 2,"
           " \"agents_ready\": 10000000}'",
           5000);
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 2, 5000));
  assert_false(f->load.unreadable);
  assert_int_equal(f->load.offered, 3);
  assert_int_equal(f->load.ready, 10000000);
  assert_int_equal(f->load.answered, 0);
  /* Without routed_to, routing is not measured. */
  assert_false(f->load.routing_measured);
  assert_int_equal(f->load.n_routed_to, 0);

  /* With it: counts per destination, and routing measured (an empty
   * object too: nothing was sent elsewhere, and that was counted). */
  fx_stop(f);
  fx_start(f, NULL,
           "echo '{\"calls_offered\": 3, \"calls_routed_away\": 9,"
           " \"routed_to\": {\"shaanxi\": 7, \"henan\": 2}}'",
           5000);
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 3, 5000));
  if (f->load.unreadable) fail_msg("unreadable: %s", f->load.error);
  assert_true(f->load.routing_measured);
  assert_int_equal(f->load.n_routed_to, 2);
  unsigned to_shaanxi = 0, to_henan = 0;
  for (unsigned i = 0; i < f->load.n_routed_to; i++) {
    if (strcmp(f->load.routed_to[i].site, "shaanxi") == 0) to_shaanxi = f->load.routed_to[i].calls;
    if (strcmp(f->load.routed_to[i].site, "henan") == 0) to_henan = f->load.routed_to[i].calls;
  }
  assert_int_equal(to_shaanxi, 7);
  assert_int_equal(to_henan, 2);
  fx_stop(f);
  fx_start(f, NULL, "echo '{\"calls_offered\": 3, \"routed_to\": {}}'", 5000);
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, 4, 5000));
  assert_false(f->load.unreadable);
  assert_true(f->load.routing_measured);
  assert_int_equal(f->load.n_routed_to, 0);
}

/* One way for collect_cmd to go wrong: a script's body, a command, or
 * output (`out`, printed by `cat`). */
typedef struct {
  const char *name;
  const char *script, *cmd, *out;
  size_t out_len;
  uint64_t timeout_ms; /* 0: 5000 */
  const char *error;   /* expected in load.error */
} collect_case_t;

static void fx_check_unreadable(fx_t *f, const collect_case_t *c) {
  uint64_t timeout_ms = c->timeout_ms ? c->timeout_ms : 5000;
  if (c->out) fx_write(f, "out.txt", c->out, c->out_len);
  if (c->cmd)
    fx_start_cmds(f, "true", c->cmd, timeout_ms);
  else
    fx_start(f, NULL, c->script ? c->script : "cat \"$d/out.txt\"", timeout_ms);
  int before = f->collects;
  uint64_t t0 = uv_hrtime();
  fx_collect(f);
  if (!fx_wait(f, &f->collects, before + 1, 5000)) fail_msg("%s: no callback", c->name);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  adapter_load_t l = f->load;
  if (!l.unreadable) fail_msg("%s: not flagged unreadable", c->name);
  if (!strstr(l.error, c->error))
    fail_msg("%s: error \"%s\" lacks \"%s\"", c->name, l.error, c->error);
  /* Flagged, and no invented numbers next to the flag. */
  adapter_load_t zero = {0};
  l.unreadable = false;
  memset(l.error, 0, sizeof l.error);
  if (memcmp(&l, &zero, sizeof l) != 0) fail_msg("%s: numbers reported with the flag", c->name);
  if (ms > timeout_ms + 1000) fail_msg("%s: took %llu ms", c->name, (unsigned long long)ms);
}

/* Three of the four required keys; the case adds agents_ready (or not). */
#define REQUIRED_BUT_READY(x)                                                                      \
  "\"calls_offered\": 1, \"calls_in_queue\": 2, \"agents_logged_in\": 3" x

static void test_collect_unreadable(void **state) {
  fx_t *f = *state;
  static char huge[OUT_MAX + 1], exact[OUT_MAX];
  /* A valid report padded to exactly the limit is read; one byte more is
   * not. */
  const char *report = "{" REQUIRED_BUT_READY(", \"agents_ready\": 4") "}";
  memset(exact, ' ', sizeof exact);
  memcpy(exact, report, strlen(report));
  memset(huge, ' ', sizeof huge);
  memcpy(huge, report, strlen(report));

  const collect_case_t cases[] = {
      {.name = "non-zero exit",
       .script = "echo '{}'\necho 'cannot reach PBX at 10.0.0.5' >&2\nexit 2",
       .error = "collect_cmd exited 2: cannot reach PBX at 10.0.0.5"},
      {.name = "non-zero exit with a valid report",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 4") "}'\nexit 1",
       .error = "collect_cmd exited 1 (nothing on stderr)"},
      {.name = "hang",
       .script = "sleep 30",
       .timeout_ms = 300,
       .error = "collect_cmd killed after 300 ms timeout"},
      {.name = "killed by a signal",
       .cmd = "kill -KILL $$",
       .error = "collect_cmd killed by signal 9"},
      {.name = "empty output", .script = "true", .error = "collect_cmd printed nothing on stdout"},
      {.name = "blank output",
       .script = "printf '\\n  \\n'",
       .error = "collect_cmd printed nothing on stdout"},
      {.name = "garbage",
       .script = "echo 'calls=12 queue=3'",
       .error = "collect_cmd printed invalid JSON at line 1: "},
      {.name = "invalid JSON",
       .script = "printf '{\"calls_offered\": 1,\\n'",
       .error = "collect_cmd printed invalid JSON at line 2: "},
      {.name = "trailing garbage",
       .script = "echo '{\"calls_offered\": 1} x'",
       .error = "collect_cmd printed invalid JSON at line 1: "},
      {.name = "duplicate key",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 4, \"agents_ready\": 5") "}'",
       .error = "invalid JSON at line 1: duplicate"},
      {.name = "array", .script = "echo '[1, 2]'", .error = "not an object"},
      {.name = "negative",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": -1") "}'",
       .error = "collect_cmd: \"agents_ready\" is negative (-1)"},
      {.name = "negative optional",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 1, \"aht_ms\": -5") "}'",
       .error = "\"aht_ms\" is negative"},
      {.name = "real",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 1.5") "}'",
       .error = "\"agents_ready\" is not an integer"},
      {.name = "string",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": \"7\"") "}'",
       .error = "\"agents_ready\" is a string"},
      {.name = "null",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": null") "}'",
       .error = "\"agents_ready\" is null"},
      {.name = "too large",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 10000001") "}'",
       .error = "\"agents_ready\" is over 10000000 (10000001)"},
      {.name = "beyond 64 bits",
       .script = "echo '{" REQUIRED_BUT_READY(", \"agents_ready\": 99999999999999999999") "}'",
       .error = "invalid JSON"},
      {.name = "routed_to not an object",
       .script = "echo '{\"calls_offered\": 1, \"routed_to\": [1]}'",
       .error = "collect_cmd: \"routed_to\" is not an object of site: calls"},
      {.name = "routed_to key not a site",
       .script = "echo '{\"calls_offered\": 1, \"calls_routed_away\": 5,"
                 " \"routed_to\": {\"Shaan xi\": 1}}'",
       .error = "\"routed_to\" has a key that is not a site name"},
      {.name = "routed_to negative",
       .script = "echo '{\"calls_offered\": 1, \"calls_routed_away\": 5,"
                 " \"routed_to\": {\"shaanxi\": -1}}'",
       .error = "\"routed_to\".shaanxi is not a count of calls"},
      {.name = "routed_to over routed away",
       .script = "echo '{\"calls_offered\": 1, \"calls_routed_away\": 5,"
                 " \"routed_to\": {\"shaanxi\": 4, \"henan\": 2}}'",
       .error = "\"routed_to\" adds up to 6 calls, more than calls_routed_away (5)"},
      {.name = "missing required key",
       .script = "echo '{\"calls_answered\": 3, \"agents_ready\": 1}'",
       .error = "collect_cmd: \"calls_offered\" is missing"},
      {.name = "one byte over the limit",
       .out = huge,
       .out_len = sizeof huge,
       .error = "collect_cmd printed more than 65536 bytes on stdout"},
      {.name = "endless output",
       .script = "yes '{\"calls_offered\": 1}'",
       .error = "collect_cmd printed more than 65536 bytes on stdout"},
      {.name = "missing command",
       .script = "exec \"$d/no-such-collector\"",
       .error = "collect_cmd exited 127: "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    fx_check_unreadable(f, &cases[i]);

  fx_stop(f);
  fx_write(f, "exact.txt", exact, sizeof exact);
  fx_start(f, NULL, "cat \"$d/exact.txt\"", 5000);
  int before = f->collects;
  fx_collect(f);
  assert_true(fx_wait(f, &f->collects, before + 1, 5000));
  if (f->load.unreadable) fail_msg("exactly the limit: %s", f->load.error);
  assert_int_equal(f->load.ready, 4);
}

/* ---- both at once, and stop ---- */

static void test_apply_and_collect_concurrently(void **state) {
  fx_t *f = *state;
  char body[1024];
  snprintf(body, sizeof body, "cat <<'EOF'\n%s\nEOF", collect_json);
  fx_start(f, "cat >/dev/null", body, 5000);
  fx_route(&f->route);
  fx_apply(f);
  fx_collect(f);
  assert_true(fx_wait(f, &f->applies, 1, 5000));
  assert_true(fx_wait(f, &f->collects, 1, 5000));
  assert_int_equal(f->apply_rc, 0);
  assert_false(f->load.unreadable);
  assert_int_equal(f->load.offered, 120);
}

static void test_stop_kills_running_commands_without_callback(void **state) {
  fx_t *f = *state;
  fx_start(f, "echo $$ > \"$d/apply.pid\"\nsleep 30 &\necho $! > \"$d/apply-child.pid\"\nwait",
           "echo $$ > \"$d/collect.pid\"\nsleep 30 &\necho $! > \"$d/collect-child.pid\"\nwait",
           10000);
  fx_route(&f->route);
  fx_apply(f);
  fx_collect(f);
  assert_true(fx_wait_for(f, fx_file_written, "apply-child.pid", 3000));
  assert_true(fx_wait_for(f, fx_file_written, "collect-child.pid", 3000));
  pid_t pids[4] = {fx_read_pid(f, "apply.pid"), fx_read_pid(f, "apply-child.pid"),
                   fx_read_pid(f, "collect.pid"), fx_read_pid(f, "collect-child.pid")};
  fx_stop(f);
  for (int i = 0; i < 4; i++) {
    assert_true(pids[i] > 0);
    if (!fx_wait_for(f, fx_pid_gone, &pids[i], 2000)) {
      kill(pids[i], SIGKILL);
      fail_msg("process %d survived stop()", (int)pids[i]);
    }
  }
  assert_int_equal(f->applies, 0);
  assert_int_equal(f->collects, 0);
  /* fx_teardown runs the loop until every handle closed, checks that no
   * callback came, and that the loop closes. */
}

static void fx_on_verified(void *arg, adapter_verify_t v, const char *found, const char *detail) {
  fx_t *f = arg;
  f->verifies++;
  f->verdict = v;
  snprintf(f->found, sizeof f->found, "%s", found);
  snprintf(f->detail, sizeof f->detail, "%s", detail);
}

/* Runs verify_cmd `body` against f->route and waits for the verdict. */
static void fx_verify(fx_t *f, const char *body) {
  if (body)
    snprintf(f->conf.verify_cmd, sizeof f->conf.verify_cmd, "%s", fx_script(f, "verify.sh", body));
  else
    f->conf.verify_cmd[0] = '\0';
  int n = f->verifies;
  adapter_exec_ops.verify(f->impl, &f->route, fx_on_verified, f);
  assert_true(fx_wait(f, &f->verifies, n + 1, 5000));
}

/* verify_cmd prints the route the PBX applies; order and extra keys do not
 * matter, another route is a mismatch naming it, garbage is unreadable,
 * and no verify_cmd at all says "unverified" instead of pretending. */
static void test_verify_cmd(void **state) {
  fx_t *f = *state;
  fx_start(f, NULL, NULL, 5000);
  fx_route(&f->route);
  fx_verify(f, "echo '{\"epoch\":1,\"route\":[{\"site\":\"henan\",\"permille\":300},"
               "{\"site\":\"hubei\",\"permille\":700}],\"inbound\":[{\"site\":\"guizhou\","
               "\"permille\":1000}]}'");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_MATCH);
  fx_verify(f, "echo '{\"route\":[{\"site\":\"hubei\",\"permille\":1000}]}'");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_MISMATCH);
  assert_string_equal(f->found, "home");
  assert_non_null(strstr(f->detail, "the PBX routes hubei to home"));
  fx_verify(f, "echo '{\"route\":[{\"site\":\"hubei\",\"permille\":700},"
               "{\"site\":\"henan\",\"permille\":300}]}'");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_MISMATCH); /* the inbound source is missing */
  fx_verify(f, "echo 'not json'");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_UNREADABLE);
  assert_non_null(strstr(f->detail, "invalid JSON"));
  fx_verify(f, "echo '{\"routes\":[]}'");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_UNREADABLE);
  fx_verify(f, "echo 'PBX down' >&2; exit 2");
  assert_int_equal(f->verdict, ADAPTER_VERIFY_UNREADABLE);
  assert_non_null(strstr(f->detail, "verify_cmd exited 2: PBX down"));
  fx_verify(f, NULL);
  assert_int_equal(f->verdict, ADAPTER_VERIFY_UNVERIFIED);
  assert_non_null(strstr(f->detail, "unverified"));
}

static void test_stop_when_idle(void **state) {
  fx_t *f = *state;
  fx_start(f, NULL, NULL, 5000);
  fx_stop(f);
  adapter_exec_ops.stop(NULL);
}

int main(void) {
  /* As nirc-agent does: a command that exits without reading its stdin
   * must cost an EPIPE, not the process. */
  signal(SIGPIPE, SIG_IGN);
  log_set_level(LOG_LVL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_start_refuses_missing_commands, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_writes_route_json_and_env, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_exit_3_is_unknown_site, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_exit_1_fails_with_stderr, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_signal_and_missing_command, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_timeout_kills_the_process_group, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_leftover_child_does_not_hold_the_result, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_again_from_the_callback, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_reads_every_field, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_gets_both_clocks, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_collect_unreadable, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_apply_and_collect_concurrently, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_kills_running_commands_without_callback, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_stop_when_idle, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_verify_cmd, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
