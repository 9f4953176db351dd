#include "state.h"

#include "clock.h"
#include "err.h"
#include "jsonio.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bound on what we read back: a route is a few kilobytes at most. */
#define STATE_MAX_BYTES (256 * 1024)

int state_load(const char *path, const char *self, route_t *out, char *err, size_t errlen) {
  uint64_t seen;
  return state_load_seen(path, self, out, &seen, err, errlen);
}

int state_load_seen(const char *path, const char *self, route_t *out, uint64_t *seen_epoch,
                    char *err, size_t errlen) {
  state_extra_t x;
  int rc = state_load_ext(path, self, out, &x, err, errlen);
  if (rc == 0) *seen_epoch = x.seen_epoch;
  return rc;
}

/* The `went_home` object (state_extra_t): unknown (0) unless well formed
 * and only with a route that went home on its own. */
static void state_went_home_from_json(const json_t *j, const route_t *r, state_extra_t *x) {
  x->went_home_ms = 0;
  x->went_home_clock[0] = '\0';
  const json_t *at = json_object_get(j, "at_ms");
  const char *clk = json_string_value(json_object_get(j, "clock"));
  if (!json_is_integer(at) || json_integer_value(at) <= 0 || !clk ||
      strlen(clk) >= sizeof x->went_home_clock || strcmp(r->reason, ROUTE_REASON_REVERTED) != 0)
    return;
  x->went_home_ms = (int64_t)json_integer_value(at);
  nirc_strlcpy(x->went_home_clock, clk, sizeof x->went_home_clock);
}

int state_load_ext(const char *path, const char *self, route_t *out, state_extra_t *x, char *err,
                   size_t errlen) {
  /* O_NOFOLLOW: a symbolic link planted at PATH would make the agent
   * route by a file someone else chose. */
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
  if (!f) {
    if (fd >= 0) close(fd);
    if (errno == ENOENT) return NIRC_ENOTFOUND;
    if (errno == ELOOP) {
      snprintf(err, errlen,
               "%s is a symbolic link: refusing to read the state through it; make "
               "[agent] state_file a regular file in a directory only nirc may write",
               path);
      return NIRC_EIO;
    }
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return NIRC_EIO;
  }
  json_error_t je;
  json_t *j = jsonio_loadf(f, JSON_REJECT_DUPLICATES, &je);
  long size = ftell(f);
  fclose(f);
  char why[256] = "";
  int rc = 0;
  if (!j && json_error_code(&je) == json_error_out_of_memory) {
    /* Nothing is wrong with the file: leave it for the next attempt. */
    snprintf(err, errlen, "%s: out of memory while reading it", path);
    return NIRC_ENOMEM;
  }
  if (!j) {
    snprintf(why, sizeof why, "line %d: %s", je.line, je.text);
    rc = NIRC_EINVAL;
  } else if (size > STATE_MAX_BYTES) {
    snprintf(why, sizeof why, "file larger than %d bytes", STATE_MAX_BYTES);
    rc = NIRC_EINVAL;
  } else {
    rc = route_from_json(json_object_get(j, "route_state"), out, why, sizeof why);
    if (rc == NIRC_ENOMEM) {
      json_decref(j);
      snprintf(err, errlen, "%s: out of memory while reading it", path);
      return NIRC_ENOMEM;
    }
    const char *site = json_string_value(json_object_get(j, "site"));
    if (rc == 0 && (!site || strcmp(site, self) != 0)) {
      snprintf(why, sizeof why, "state belongs to site '%s', not '%s'", site ? site : "?", self);
      rc = NIRC_EINVAL;
    }
    /* json_int_t is signed: an epoch above INT64_MAX was never saved
     * (state_save_seen refuses it), and a negative one is corruption. */
    json_t *seen = json_object_get(j, "seen_epoch");
    if (rc == 0 && seen && (!json_is_integer(seen) || json_integer_value(seen) < 0)) {
      snprintf(why, sizeof why, "seen_epoch is not a non-negative integer");
      rc = NIRC_EINVAL;
    }
    if (rc == 0) {
      uint64_t s = seen ? (uint64_t)json_integer_value(seen) : 0;
      x->seen_epoch = s > out->epoch ? s : out->epoch;
      state_went_home_from_json(json_object_get(j, "went_home"), out, x);
    }
  }
  json_decref(j);
  if (rc == 0) return 0;
  /* Keep the evidence and get out of the way of the next save. */
  char aside[4096];
  snprintf(aside, sizeof aside, "%s.corrupt", path);
  int moved = rename(path, aside) == 0;
  snprintf(err, errlen, "%s is corrupt (%s)%s%s", path, why, moved ? "; moved to " : "",
           moved ? aside : "");
  return NIRC_EINVAL;
}

static int state_write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int state_save(const char *path, const char *self, const route_t *r, char *err, size_t errlen) {
  return state_save_seen(path, self, r, r->epoch, err, errlen);
}

int state_save_seen(const char *path, const char *self, const route_t *r, uint64_t seen_epoch,
                    char *err, size_t errlen) {
  state_extra_t x = {.seen_epoch = seen_epoch};
  return state_save_ext(path, self, r, &x, err, errlen);
}

int state_save_ext(const char *path, const char *self, const route_t *r, const state_extra_t *x,
                   char *err, size_t errlen) {
  uint64_t seen_epoch = x->seen_epoch;
  /* The slug is recorded so a state file copied to the wrong site is
   * refused instead of routing that site's calls by another site's plan. */
  if (seen_epoch < r->epoch) seen_epoch = r->epoch;
  /* JSON integers are signed 64-bit here: a larger epoch or version
   * would be written negative and the file then read as corrupt. The
   * protocol's uint64 values are range-checked on input
   * (route_from_directive, the Welcome), so this is the last guard. */
  if (seen_epoch > INT64_MAX || r->version > INT64_MAX) {
    snprintf(err, errlen, "%s: not saved: epoch %llu / version %llu above %lld", path,
             (unsigned long long)seen_epoch, (unsigned long long)r->version, (long long)INT64_MAX);
    return NIRC_ERANGE;
  }
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
    snprintf(err, errlen,
             "%s is a symbolic link: refusing to write the state through it; make "
             "[agent] state_file a regular file in a directory only nirc may write",
             path);
    return NIRC_EIO;
  }
  json_t *j = json_pack("{s:i, s:s, s:o, s:I}", "format", 1, "site", self, "route_state",
                        route_to_json(r), "seen_epoch", (json_int_t)seen_epoch);
  if (j && x->went_home_ms > 0 && strcmp(r->reason, ROUTE_REASON_REVERTED) == 0) {
    /* The time also in words, for the operator reading the file. */
    char when[40];
    clock_format_iso(x->went_home_ms, 0, when, sizeof when);
    json_t *w = json_pack("{s:I, s:s, s:s}", "at_ms", (json_int_t)x->went_home_ms, "at", when,
                          "clock", x->went_home_clock);
    if (!w || json_object_set_new(j, "went_home", w) != 0) {
      json_decref(j);
      j = NULL;
    }
  }
  char *text = j ? jsonio_dumps(j, JSON_INDENT(2)) : NULL;
  json_decref(j);
  if (!text) {
    snprintf(err, errlen, "cannot encode the state as JSON (out of memory or invalid text)");
    return NIRC_EINVAL;
  }
  int rc = state_write_atomic(path, text, err, errlen);
  free(text);
  return rc;
}

const char *state_errno_fix(int e) {
  switch (e) {
  case ENOSPC:
  case EDQUOT: return "the file system is full: free space on this host";
  case EROFS: return "the file system is read-only: remount it read-write";
  case EACCES:
  case EPERM: return "nirc may not write there: fix the directory's owner or mode";
  case EFBIG: return "a file size limit stops it: raise the agent's LimitFSIZE";
  default: return "";
  }
}

int state_write_atomic(const char *path, const char *text, char *err, size_t errlen) {
  char tmp[4096], dir[4096];
  /* A fresh name made with O_CREAT|O_EXCL (mkstemp, mode 0600): a file
   * or symbolic link planted at a predictable PATH.tmp is never opened,
   * so the write cannot be redirected elsewhere. */
  snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
  nirc_strlcpy(dir, path, sizeof dir);
  const char *step = "open";
  int fd = mkstemp(tmp);
  bool created = fd >= 0;
  if (fd < 0) goto fail;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  step = "write";
  if (state_write_all(fd, text, strlen(text)) != 0 || state_write_all(fd, "\n", 1) != 0) goto fail;
  step = "fsync";
  if (fsync(fd) != 0) goto fail;
  step = "close";
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  step = "rename";
  if (rename(tmp, path) != 0) goto fail;
  /* The rename is durable only once the directory entry is. */
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
fail:;
  /* The state file's name, not the temporary one's (its random suffix
   * says nothing), and the fix: these words reach the controller's
   * `agent` alarm (Hello.state_not_saved_why). */
  int e = errno;
  const char *fix = state_errno_fix(e);
  snprintf(err, errlen, "%s: %s failed: %s%s%s", path, step, strerror(e), *fix ? ": " : "", fix);
  if (fd >= 0) close(fd);
  if (created) unlink(tmp);
  return NIRC_EIO;
}
