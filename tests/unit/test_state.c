/* Unit tests for the agent's fail-static memory (site-agent/state.c).
 *
 * The state file is what a restarted agent routes by when no controller
 * answers, so these tests check: a saved route loads back identically; a
 * first start (no file) is distinguishable from a damaged file; a torn,
 * garbage, empty, mis-shaped, foreign or invalid file is refused with a
 * message naming the problem and moved aside to PATH.corrupt, after which
 * saving works again; a save leaves no temporary file behind, replaces the
 * previous state, and when it fails names the path and the step and leaves
 * the previous state as it was; a stale PATH.tmp from an earlier crash
 * neither blocks a save nor is ever loaded or opened; a symbolic link
 * planted at PATH.tmp is not followed, one at PATH is refused; epochs
 * and versions round-trip up to INT64_MAX and are refused above it. Each test works in its own
 * mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "route.h"
#include "state.h"

/* ---- fixture ---------------------------------------------------------- */

typedef struct {
  char dir[256];
  char path[300];    /* DIR/state.json */
  char tmp[310];     /* PATH.tmp */
  char corrupt[310]; /* PATH.corrupt */
} fx_t;

static int fx_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/nirc-test-state.XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  snprintf(fx->path, sizeof fx->path, "%s/state.json", fx->dir);
  snprintf(fx->tmp, sizeof fx->tmp, "%s.tmp", fx->path);
  snprintf(fx->corrupt, sizeof fx->corrupt, "%s.corrupt", fx->path);
  *state = fx;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *fx = *state;
  unlink(fx->path);
  unlink(fx->corrupt);
  if (unlink(fx->tmp) != 0) rmdir(fx->tmp); /* some tests make it a directory */
  int rc = rmdir(fx->dir);
  if (rc != 0) fprintf(stderr, "cannot remove %s: %s\n", fx->dir, strerror(errno));
  free(fx);
  return rc == 0 ? 0 : -1;
}

/* ---- helpers ---------------------------------------------------------- */

static bool exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

/* Whether a temporary file of a save (PATH.tmp.XXXXXX) is left in the
 * directory. */
static bool tmp_left(const fx_t *fx) {
  DIR *d = opendir(fx->dir);
  if (!d) fail_msg("cannot list %s", fx->dir);
  bool found = false;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    found = found || strncmp(e->d_name, "state.json.tmp.", 15) == 0;
  closedir(d);
  return found;
}

/* Whole file, NUL-terminated; *len without the NUL. */
static char *read_all(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  if (!f) fail_msg("cannot open %s: %s", p, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = (n + 4096 + 1) * 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    size_t got = fread(buf + n, 1, 4096, f);
    n += got;
    if (got == 0) break;
  }
  assert_int_equal(ferror(f), 0);
  fclose(f);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static void write_all(const char *p, const void *data, size_t len) {
  FILE *f = fopen(p, "wb");
  if (!f) fail_msg("cannot create %s: %s", p, strerror(errno));
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void write_str(const char *p, const char *s) {
  write_all(p, s, strlen(s));
}

static void add_share(route_t *r, const char *site, uint32_t permille) {
  assert_true(r->n_share < ROUTE_MAX_SHARES);
  snprintf(r->share[r->n_share].site, sizeof r->share[r->n_share].site, "%s", site);
  r->share[r->n_share].permille = permille;
  r->n_share++;
}

static void add_inbound(route_t *r, const char *site, uint32_t permille) {
  assert_true(r->n_inbound < ROUTE_MAX_INBOUND);
  snprintf(r->inbound[r->n_inbound].site, sizeof r->inbound[r->n_inbound].site, "%s", site);
  r->inbound[r->n_inbound].permille = permille;
  r->n_inbound++;
}

/* Hubei sending 30% of its calls to Henan, directive (5, 11). */
static void route_a(route_t *r) {
  memset(r, 0, sizeof *r);
  r->epoch = 5;
  r->version = 11;
  add_share(r, "hubei", 700);
  add_share(r, "henan", 300);
  add_inbound(r, "anhui", 200);
  r->revert_at_ms = 1579701000000LL;
  snprintf(r->reason, sizeof r->reason, "%s", "hubei queue over threshold");
}

/* Everything to the Shaanxi hub, directive (6, 1). */
static void route_b(route_t *r) {
  memset(r, 0, sizeof *r);
  r->epoch = 6;
  r->version = 1;
  add_share(r, "shaanxi", 1000);
  snprintf(r->reason, sizeof r->reason, "%s", "hubei link down");
}

static void assert_route_equal(const route_t *a, const route_t *b) {
  assert_int_equal(a->epoch, b->epoch);
  assert_int_equal(a->version, b->version);
  assert_int_equal(a->n_share, b->n_share);
  for (unsigned i = 0; i < a->n_share; i++) {
    assert_string_equal(a->share[i].site, b->share[i].site);
    assert_int_equal(a->share[i].permille, b->share[i].permille);
  }
  assert_int_equal(a->n_inbound, b->n_inbound);
  for (unsigned i = 0; i < a->n_inbound; i++) {
    assert_string_equal(a->inbound[i].site, b->inbound[i].site);
    assert_int_equal(a->inbound[i].permille, b->inbound[i].permille);
  }
  assert_int_equal(a->revert_at_ms, b->revert_at_ms);
  assert_string_equal(a->reason, b->reason);
}

static void save_ok(const char *path, const char *self, const route_t *r) {
  char err[512] = "";
  int rc = state_save(path, self, r, err, sizeof err);
  if (rc != 0) fail_msg("state_save(%s): %d: %s", path, rc, err);
}

static void load_ok(const char *path, const char *self, route_t *out) {
  char err[512] = "";
  int rc = state_load(path, self, out, err, sizeof err);
  if (rc != 0) fail_msg("state_load(%s): %d: %s", path, rc, err);
}

/* The file at fx->path must be refused as corrupt with `want` in the
 * message, and moved aside to PATH.corrupt unchanged. */
static void assert_refused_and_moved(const fx_t *fx, const char *self, const char *want) {
  size_t before_len;
  char *before = read_all(fx->path, &before_len);
  route_t out;
  char err[512] = "";
  int rc = state_load(fx->path, self, &out, err, sizeof err);
  if (rc != NIRC_EINVAL) fail_msg("state_load returned %d (%s), want NIRC_EINVAL", rc, err);
  if (!strstr(err, fx->path)) fail_msg("message does not name the file: %s", err);
  if (!strstr(err, want)) fail_msg("message '%s' does not contain '%s'", err, want);
  if (!strstr(err, fx->corrupt)) fail_msg("message does not say where it went: %s", err);
  assert_false(exists(fx->path));
  assert_true(exists(fx->corrupt));
  size_t after_len;
  char *after = read_all(fx->corrupt, &after_len);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  free(before);
  free(after);
}

/* After a refused load, the next save starts clean and loads back. */
static void assert_recovers(const fx_t *fx) {
  route_t in, out;
  route_b(&in);
  save_ok(fx->path, "hubei", &in);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&in, &out);
}

/* ---- round trip ------------------------------------------------------- */

static void test_round_trip(void **state) {
  fx_t *fx = *state;
  route_t in, out;
  route_a(&in);
  save_ok(fx->path, "hubei", &in);
  memset(&out, 0xab, sizeof out);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&in, &out);

  /* The file records whose state it is. */
  char *text = read_all(fx->path, NULL);
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "site")), "hubei");
  json_decref(j);

  /* A home route with nothing else set, and a load that leaves the file. */
  route_home(&in, "hubei");
  save_ok(fx->path, "hubei", &in);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&in, &out);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&in, &out);
  assert_false(exists(fx->corrupt));
}

/* The newest epoch seen survives a save and a load even when the route is
 * older (fencing across restarts); a file from before seen_epoch existed
 * loads with the route's epoch; a bad seen_epoch is a corrupt file. */
static void test_seen_epoch(void **state) {
  fx_t *fx = *state;
  route_t in, out;
  char err[512] = "";
  uint64_t seen = 0;
  route_a(&in);
  assert_int_equal(state_save_seen(fx->path, "hubei", &in, in.epoch + 5, err, sizeof err), 0);
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), 0);
  assert_route_equal(&in, &out);
  assert_int_equal(seen, in.epoch + 5);
  /* Never below the route's own epoch. */
  assert_int_equal(state_save_seen(fx->path, "hubei", &in, 0, err, sizeof err), 0);
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), 0);
  assert_int_equal(seen, in.epoch);

  char *text = read_all(fx->path, NULL);
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  assert_non_null(j);
  json_object_del(j, "seen_epoch");
  assert_int_equal(json_dump_file(j, fx->path, 0), 0);
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), 0);
  assert_int_equal(seen, in.epoch);

  json_object_set_new(j, "seen_epoch", json_string("7"));
  assert_int_equal(json_dump_file(j, fx->path, 0), 0);
  json_decref(j);
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), NIRC_EINVAL);
  assert_non_null(strstr(err, "seen_epoch"));
  assert_true(exists(fx->corrupt));
}

static void test_load_missing(void **state) {
  fx_t *fx = *state;
  route_t out;
  char err[512] = "";
  assert_int_equal(state_load(fx->path, "hubei", &out, err, sizeof err), NIRC_ENOTFOUND);
  assert_false(exists(fx->path));
  assert_false(exists(fx->corrupt));
}

/* ---- damaged files ---------------------------------------------------- */

static void test_load_torn(void **state) {
  fx_t *fx = *state;
  route_t in;
  route_a(&in);
  save_ok(fx->path, "hubei", &in);
  size_t len;
  char *full = read_all(fx->path, &len);
  assert_true(len > 20);
  write_all(fx->path, full, len / 2);
  free(full);
  assert_refused_and_moved(fx, "hubei", "is corrupt");
  assert_recovers(fx);
  /* The evidence is still there after the recovery. */
  size_t clen;
  char *c = read_all(fx->corrupt, &clen);
  assert_int_equal(clen, len / 2);
  free(c);
}

static void test_load_garbage(void **state) {
  fx_t *fx = *state;
  unsigned char junk[512];
  uint32_t x = 0x9e3779b9u;
  for (size_t i = 0; i < sizeof junk; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    junk[i] = (unsigned char)x;
  }
  junk[0] = 0xff; /* not a JSON start */
  junk[100] = 0;
  write_all(fx->path, junk, sizeof junk);
  assert_refused_and_moved(fx, "hubei", "line 1");
  assert_recovers(fx);
}

static void test_load_empty(void **state) {
  fx_t *fx = *state;
  write_all(fx->path, "", 0);
  assert_refused_and_moved(fx, "hubei", "end of file");
  assert_recovers(fx);
}

static void test_load_trailing_garbage(void **state) {
  fx_t *fx = *state;
  route_t in;
  route_a(&in);
  save_ok(fx->path, "hubei", &in);
  FILE *f = fopen(fx->path, "ab");
  assert_non_null(f);
  fputs("{\"x\": 1}", f);
  assert_int_equal(fclose(f), 0);
  assert_refused_and_moved(fx, "hubei", "is corrupt");
  assert_recovers(fx);
}

static void test_load_wrong_shape(void **state) {
  fx_t *fx = *state;
  /* Valid JSON, but not an object. */
  write_str(fx->path, "[1, 2, 3]\n");
  assert_refused_and_moved(fx, "hubei", "not a route record");
  unlink(fx->corrupt);
  /* An object without a route. */
  write_str(fx->path, "{\"format\": 1, \"site\": \"hubei\"}\n");
  assert_refused_and_moved(fx, "hubei", "not a route record");
  unlink(fx->corrupt);
  /* A route that is not an object. */
  write_str(fx->path, "{\"format\": 1, \"site\": \"hubei\", \"route_state\": \"home\"}\n");
  assert_refused_and_moved(fx, "hubei", "not a route record");
  unlink(fx->corrupt);
  /* A bare route record, without the envelope. */
  write_str(fx->path, "{\"epoch\": 1, \"version\": 1, \"route\": [{\"site\": \"hubei\", "
                      "\"permille\": 1000}], \"inbound\": [], \"revert_at_ms\": 0, "
                      "\"reason\": \"\"}\n");
  assert_refused_and_moved(fx, "hubei", "not a route record");
  assert_recovers(fx);
}

static void test_load_other_site(void **state) {
  fx_t *fx = *state;
  route_t in;
  route_a(&in);
  save_ok(fx->path, "henan", &in);
  assert_refused_and_moved(fx, "hubei", "belongs to site 'henan', not 'hubei'");
  assert_recovers(fx);

  /* No site recorded at all. */
  char *text = read_all(fx->path, NULL);
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  assert_non_null(j);
  assert_int_equal(json_object_del(j, "site"), 0);
  unlink(fx->corrupt);
  assert_int_equal(json_dump_file(j, fx->path, 0), 0);
  json_decref(j);
  assert_refused_and_moved(fx, "hubei", "not 'hubei'");
}

static void test_load_invalid_route(void **state) {
  fx_t *fx = *state;
  route_t in;
  route_a(&in); /* hubei 700, henan 300 */
  save_ok(fx->path, "hubei", &in);
  char *text = read_all(fx->path, NULL);
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  free(text);
  assert_non_null(j);
  json_t *share0 = json_array_get(json_object_get(json_object_get(j, "route_state"), "route"), 0);
  assert_non_null(share0);
  assert_string_equal(json_string_value(json_object_get(share0, "site")), "hubei");
  assert_int_equal(json_object_set_new(share0, "permille", json_integer(600)), 0);
  assert_int_equal(json_dump_file(j, fx->path, JSON_INDENT(2)), 0);
  json_decref(j);
  assert_refused_and_moved(fx, "hubei", "sum to 900");
  assert_recovers(fx);
}

/* ---- saving ----------------------------------------------------------- */

static void test_save_leaves_no_tmp(void **state) {
  fx_t *fx = *state;
  route_t in;
  route_a(&in);
  save_ok(fx->path, "hubei", &in);
  assert_true(exists(fx->path));
  assert_false(exists(fx->tmp));
  /* Private to the agent. */
  struct stat st;
  assert_int_equal(stat(fx->path, &st), 0);
  assert_int_equal(st.st_mode & 0077, 0);
}

static void test_save_missing_dir(void **state) {
  fx_t *fx = *state;
  char p[400];
  snprintf(p, sizeof p, "%s/no-such-dir/state.json", fx->dir);
  route_t in;
  route_a(&in);
  char err[512] = "";
  assert_int_equal(state_save(p, "hubei", &in, err, sizeof err), NIRC_EIO);
  if (!strstr(err, p)) fail_msg("message does not name the path: %s", err);
  if (!strstr(err, "open")) fail_msg("message does not name the step: %s", err);
  if (!strstr(err, strerror(ENOENT))) fail_msg("message does not give the cause: %s", err);
  assert_false(exists(p));
}

static void test_save_failure_keeps_previous(void **state) {
  fx_t *fx = *state;
  route_t a, b, out;
  route_a(&a);
  route_b(&b);
  save_ok(fx->path, "hubei", &a);
  size_t len_before;
  char *before = read_all(fx->path, &len_before);

  /* No descriptor left for the temporary file: the save cannot open it
   * (a limit, not permissions: the tests may run as root). */
  struct rlimit old_nofile, low;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old_nofile), 0);
  int lowest = dup(0);
  assert_true(lowest >= 0);
  close(lowest);
  low = old_nofile;
  low.rlim_cur = (rlim_t)lowest;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  char err[512] = "";
  int rc = state_save(fx->path, "hubei", &b, err, sizeof err);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old_nofile), 0);
  assert_int_equal(rc, NIRC_EIO);
  if (!strstr(err, fx->path)) fail_msg("message does not name the path: %s", err);
  if (!strstr(err, "open")) fail_msg("message does not name the step: %s", err);

  size_t len_after;
  char *after = read_all(fx->path, &len_after);
  assert_int_equal(len_after, len_before);
  assert_memory_equal(after, before, len_before);
  free(before);
  free(after);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&a, &out);
  assert_false(tmp_left(fx));
}

/* A save that fails after the temporary file was opened (here: a file
 * size limit, as a full disk would) names the step, removes the temporary
 * file and keeps the previous state. */
static void test_save_write_failure(void **state) {
  fx_t *fx = *state;
  route_t a, b, out;
  route_a(&a);
  route_b(&b);
  save_ok(fx->path, "hubei", &a);
  size_t len_before;
  char *before = read_all(fx->path, &len_before);
  struct rlimit old_fsize, tiny;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_fsize), 0);
  tiny = old_fsize;
  tiny.rlim_cur = 16;
  void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
  char err[512] = "";
  int rc = state_save(fx->path, "hubei", &b, err, sizeof err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_fsize), 0);
  signal(SIGXFSZ, old_sig);
  assert_int_equal(rc, NIRC_EIO);
  if (!strstr(err, fx->path)) fail_msg("message does not name the file: %s", err);
  if (!strstr(err, "write failed")) fail_msg("message does not name the step: %s", err);
  if (!strstr(err, strerror(EFBIG))) fail_msg("message does not give the cause: %s", err);
  /* The words reach the controller's `agent` alarm: the fix, and the
   * state file's name rather than the temporary one's random suffix. */
  if (!strstr(err, "raise the agent's LimitFSIZE")) fail_msg("message names no fix: %s", err);
  if (strstr(err, ".tmp.")) fail_msg("message names the temporary file: %s", err);
  assert_false(tmp_left(fx));
  size_t len_after;
  char *after = read_all(fx->path, &len_after);
  assert_int_equal(len_after, len_before);
  assert_memory_equal(after, before, len_before);
  free(before);
  free(after);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&a, &out);
}

/* The usual causes of a failed write name their fix; others say none. */
static void test_errno_fix(void **state) {
  (void)state;
  assert_non_null(strstr(state_errno_fix(ENOSPC), "free space on this host"));
  assert_non_null(strstr(state_errno_fix(EDQUOT), "free space"));
  assert_non_null(strstr(state_errno_fix(EROFS), "remount it read-write"));
  assert_non_null(strstr(state_errno_fix(EACCES), "owner or mode"));
  assert_string_equal(state_errno_fix(EIO), "");
}

static void test_save_overwrites(void **state) {
  fx_t *fx = *state;
  route_t a, b, out;
  route_a(&a);
  route_b(&b);
  save_ok(fx->path, "hubei", &a);
  struct stat st_a;
  assert_int_equal(stat(fx->path, &st_a), 0);
  save_ok(fx->path, "hubei", &b);
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&b, &out);
  assert_false(exists(fx->tmp));

  /* The content is exactly the new state: a fresh save of b elsewhere
   * gives the same bytes (nothing of a's longer text is left over). */
  char other[400];
  snprintf(other, sizeof other, "%s/other.json", fx->dir);
  save_ok(other, "hubei", &b);
  size_t n1, n2;
  char *t1 = read_all(fx->path, &n1);
  char *t2 = read_all(other, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(t1, t2, n1);
  free(t1);
  free(t2);
  assert_int_equal(unlink(other), 0);

  /* Replaced by a rename, not rewritten in place: a new inode. */
  struct stat st_b;
  assert_int_equal(stat(fx->path, &st_b), 0);
  assert_true(st_a.st_ino != st_b.st_ino || st_a.st_dev != st_b.st_dev);
}

static void test_stale_tmp(void **state) {
  fx_t *fx = *state;
  route_t a, b, out;
  route_a(&a);
  route_b(&b);
  char err[512] = "";

  /* A crash before the first rename left only PATH.tmp, a complete file
   * with another route: it is not the state. */
  save_ok(fx->tmp, "hubei", &b);
  assert_int_equal(state_load(fx->path, "hubei", &out, err, sizeof err), NIRC_ENOTFOUND);
  assert_true(exists(fx->tmp));

  /* With a state in place, the stale temporary file is ignored: saves
   * use a fresh name and never open it. */
  save_ok(fx->path, "hubei", &a);
  assert_true(exists(fx->tmp));
  write_str(fx->tmp, "{\"format\": 1, \"site\": \"hubei\", \"route_st"); /* torn */
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&a, &out);
  assert_false(exists(fx->corrupt));

  /* A longer stale temporary file does not block the next save, nor leave
   * its tail in it. */
  char big[8192];
  memset(big, ' ', sizeof big);
  write_all(fx->tmp, big, sizeof big);
  save_ok(fx->path, "hubei", &b);
  size_t stale_len;
  free(read_all(fx->tmp, &stale_len));
  assert_int_equal(stale_len, sizeof big);
  assert_false(tmp_left(fx));
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&b, &out);
  size_t n;
  char *t = read_all(fx->path, &n);
  assert_true(n < sizeof big);
  free(t);
}

/* Issue 16, point 8: a symbolic link planted where the agent writes its
 * state (PATH.tmp, the old fixed temporary name) does not redirect the
 * write; the victim file is untouched and PATH is a regular file. */
static void test_planted_symlink_not_followed(void **state) {
  fx_t *fx = *state;
  char victim[400];
  snprintf(victim, sizeof victim, "%s/victim", fx->dir);
  write_str(victim, "precious");
  assert_int_equal(symlink(victim, fx->tmp), 0);
  route_t a, out;
  route_a(&a);
  save_ok(fx->path, "hubei", &a);
  char *v = read_all(victim, NULL);
  assert_string_equal(v, "precious");
  free(v);
  struct stat st;
  assert_int_equal(lstat(fx->path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  load_ok(fx->path, "hubei", &out);
  assert_route_equal(&a, &out);
  assert_false(tmp_left(fx));
  unlink(victim);
}

/* A state path that is itself a symbolic link is refused, for writing and
 * for reading, with a message that says so; its target is untouched. */
static void test_symlinked_state_path_refused(void **state) {
  fx_t *fx = *state;
  char target[400];
  snprintf(target, sizeof target, "%s/elsewhere.json", fx->dir);
  route_t a, b, out;
  route_a(&a);
  route_b(&b);
  save_ok(target, "hubei", &a);
  size_t len_before;
  char *before = read_all(target, &len_before);
  assert_int_equal(symlink(target, fx->path), 0);
  char err[512] = "";
  assert_int_equal(state_save(fx->path, "hubei", &b, err, sizeof err), NIRC_EIO);
  if (!strstr(err, "symbolic link")) fail_msg("message does not say why: %s", err);
  err[0] = '\0';
  assert_int_equal(state_load(fx->path, "hubei", &out, err, sizeof err), NIRC_EIO);
  if (!strstr(err, "symbolic link")) fail_msg("message does not say why: %s", err);
  size_t len_after;
  char *after = read_all(target, &len_after);
  assert_int_equal(len_after, len_before);
  assert_memory_equal(after, before, len_before);
  free(before);
  free(after);
  assert_false(tmp_left(fx));
  unlink(target);
}

/* Epochs and versions are uint64 in the protocol and int64 on disk: the
 * largest storable value round-trips without a sign flip; a larger one
 * is refused on input (a directive) and never written (-1 once made the
 * agent call its own file corrupt and lose its route). */
static void test_epoch_range(void **state) {
  fx_t *fx = *state;
  route_t a, out;
  route_a(&a);
  a.epoch = INT64_MAX;
  a.version = INT64_MAX;
  save_ok(fx->path, "hubei", &a);
  uint64_t seen = 0;
  char err[512] = "";
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), 0);
  assert_true(out.epoch == (uint64_t)INT64_MAX && out.version == (uint64_t)INT64_MAX);
  assert_true(seen == (uint64_t)INT64_MAX);

  /* Above INT64_MAX: not saved, the file keeps the last good state. */
  assert_int_equal(state_save_seen(fx->path, "hubei", &a, (uint64_t)INT64_MAX + 1, err, sizeof err),
                   NIRC_ERANGE);
  if (!strstr(err, "9223372036854775808")) fail_msg("message does not name the value: %s", err);
  assert_int_equal(state_load_seen(fx->path, "hubei", &out, &seen, err, sizeof err), 0);
  assert_true(seen == (uint64_t)INT64_MAX);

  /* On input: a directive beyond it is refused with a clear error. */
  Nirc__RouteShare sh = NIRC__ROUTE_SHARE__INIT, *shp = &sh;
  sh.site = "hubei";
  sh.permille = 1000;
  Nirc__Directive d = NIRC__DIRECTIVE__INIT;
  d.route = &shp;
  d.n_route = 1;
  d.epoch = (uint64_t)INT64_MAX + 1;
  d.version = 1;
  route_t r;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_ERANGE);
  if (!strstr(err, "out of range")) fail_msg("message does not say why: %s", err);
  d.epoch = 1;
  d.version = UINT64_MAX;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), NIRC_ERANGE);
  d.version = INT64_MAX;
  assert_int_equal(route_from_directive(&d, &r, err, sizeof err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_round_trip, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_planted_symlink_not_followed, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_symlinked_state_path_refused, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_epoch_range, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_seen_epoch, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_missing, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_torn, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_garbage, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_empty, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_trailing_garbage, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_wrong_shape, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_other_site, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_load_invalid_route, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_save_leaves_no_tmp, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_save_missing_dir, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_save_failure_keeps_previous, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_save_write_failure, fx_setup, fx_teardown),
      cmocka_unit_test(test_errno_fix),
      cmocka_unit_test_setup_teardown(test_save_overwrites, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_stale_tmp, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
