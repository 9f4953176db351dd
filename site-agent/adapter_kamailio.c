/* The `kamailio` adapter: the site's edge is a Kamailio SIP proxy
 * (deploy/kamailio/kamailio.cfg) that relays every new call to one of the
 * destinations of a dispatcher set, by weight (algorithm 9).
 *
 * apply: the route becomes the dispatcher list, one line per share,
 *   SET URI 0 0 duid=<site>;weight=<percent>
 * with the URI from [kamailio] targets. Kamailio's weights are percent (its
 * algorithm 9 deals out 100 slots, exactly, over every 100 calls), so the
 * per-mille shares are rounded to percent by largest remainder, and every
 * non-zero share keeps at least 1%. The file is replaced atomically (temp
 * file, fsync, rename), then Kamailio is told to re-read it with the
 * JSON-RPC `dispatcher.reload`. If Kamailio refuses or does not answer,
 * the previous file is put back (and, when Kamailio did not answer, a
 * reload of that file is requested so a late reload converges on it), and
 * the apply fails with the reason. Calls in progress are not affected by a
 * reload: the proxy record-routes, so in-dialog requests never consult the
 * dispatcher.
 *
 * collect: `stats.get_statistics dialog:` and `dlg.stats_active` give the
 * dialog module's counters; a call is a dialog. Offered = dialogs created
 * since the last collect; abandoned = dialogs that failed (negative final
 * reply or CANCEL) since; answered = the growth of (created - failed - still
 * unanswered). A proxy has no queue and no agents: those are reported as
 * not measured (LoadReport.not_measured), never as 0.
 * Then `htable.dump nirc` gives the calls sent to each destination site
 * (kam_counts.h): offered becomes the calls sent to this site's own PBX,
 * routed_away / routed_to the calls sent to the others, which the
 * controller credits to those hubs. answered and abandoned still count
 * every call through the proxy, wherever it was answered.
 * When Kamailio does not answer or answers something else, the report says
 * `unreadable` with the reason, never zeros.
 *
 * Transport: jsonrpcs' UNIX datagram socket ([kamailio] rpc_socket). Each
 * RPC gets its own SOCK_DGRAM socket, bound to a unique Linux abstract
 * address (nothing on disk to clean up, nothing another user can squat),
 * watched by a uv_poll_t, with a uv_timer_t as its time limit. Kamailio
 * answers to the sender's address. An RPC owns its handles and is freed in
 * their last close callback; the adapter itself holds no handle, so it
 * never keeps the agent's loop alive, and stop() just detaches the RPCs
 * still in flight (they finish silently). */
#include "adapter.h"
#include "err.h"
#include "kam_counts.h"
#include "kamverify.h"
#include "log.h"
#include "report.h"
#include "util.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define KAM_TARGETS_MAX 64
#define KAM_URI_MAX     256
/* jsonrpcs answers in one datagram of at most this size. */
#define KAM_REPLY_MAX (64 * 1024)
/* Kamailio refuses a reload that follows the previous one too closely
 * ("Ongoing reload", dispatcher's reload_delta): retried at this pace until
 * the apply's time limit. */
#define KAM_RELOAD_RETRY_MS 250
/* A restored list is asked for this many times (10 s) at most. */
#define KAM_CLEANUP_MAX_TRIES 40
/* A call centre never sees more: a larger counter is garbage. */
#define KAM_COUNT_MAX 4000000000ULL
/* Longest rule text carried in X-NIRC-Rule, in bytes. */
#define KAM_RULE_MAX 100

typedef struct {
  char slug[SCENARIO_SLUG_MAX];
  char uri[KAM_URI_MAX];
} kam_target_t;

typedef struct adapter_kamailio adapter_kamailio_t;
typedef struct kam_call kam_call_t;

/* Completion of one RPC. rc 0: `result` (borrowed) is Kamailio's result.
 * Otherwise `fault` says whether Kamailio answered with an error object
 * (it is up and refused) rather than not at all, and err says why. */
typedef void (*kam_call_cb)(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                            const char *err);

/* One JSON-RPC request and its reply. Lives as long as its handles: freed
 * in the last close callback, possibly after the adapter is gone. */
struct kam_call {
  adapter_kamailio_t *owner; /* NULL once the adapter stopped: finish silently */
  kam_call_t **slot;         /* the owner's pointer to this call, cleared at the end */
  kam_call_cb cb;
  char method[48];
  char *request; /* JSON text */
  uint64_t id, timeout_ms;
  int fd;
  uv_poll_t poll;
  uv_timer_t timer; /* delay before sending, then the time limit */
  unsigned handles; /* initialised handles not yet closed */
  bool sent, finished;
  int send_errno; /* sendto() failed: reported from the timer */
};

struct adapter_kamailio {
  uv_loop_t *loop;
  char slug[SCENARIO_SLUG_MAX];
  char rpc_socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char list[512];
  uint32_t set_id;
  uint64_t timeout_ms;
  uint64_t started_ns; /* uv_hrtime() at start: names the reply sockets */
  kam_target_t targets[KAM_TARGETS_MAX];
  unsigned n_targets;

  /* apply in flight */
  kam_call_t *apply_call;
  adapter_apply_cb apply_cb;
  void *apply_arg;
  char *prev; /* the list file before this apply (NULL: there was none) */
  size_t prev_len;
  uint64_t apply_deadline; /* uv_now() */
  char applied_desc[200];
  kam_call_t *cleanup_call; /* reload of a restored list, nobody waits */
  unsigned cleanup_tries;   /* "Ongoing reload" refusals of it so far */

  /* collect in flight */
  kam_call_t *collect_call;
  adapter_collect_cb collect_cb;
  void *collect_arg;
  uint64_t processed, failed; /* from the first RPC of the collect */
  adapter_load_t pending;     /* the dialog counts, waiting for htable.dump */

  /* per-destination counters (htable.dump) at the previous collect */
  bool have_counts;
  kamcounts_t counts_base;

  /* verify / uptime in flight */
  kam_call_t *verify_call, *uptime_call;
  adapter_verify_cb verify_cb;
  adapter_uptime_cb uptime_cb;
  void *verify_arg, *uptime_arg;
  kamverify_set_t verify_expected;

  /* counters at the previous collect */
  bool have_base;
  uint64_t base_processed, base_failed, base_answered;
};

static uint64_t kam_next_id = 1; /* per process: also names the reply socket */

/* ---- configuration ---- */

static int kam_parse_targets(adapter_kamailio_t *k, const char *spec, char *err, size_t errlen) {
  const char *p = spec;
  k->n_targets = 0;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (!*p) break;
    const char *end = p;
    while (*end && *end != ',')
      end++;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (!eq) {
      snprintf(err, errlen, "[kamailio] targets: '%.*s' is not site=sip:host:port", (int)(end - p),
               p);
      return NIRC_ECONFIG;
    }
    const char *ks = p, *ke = eq;
    while (ke > ks && (ke[-1] == ' ' || ke[-1] == '\t'))
      ke--;
    const char *us = eq + 1, *ue = end;
    while (us < ue && (*us == ' ' || *us == '\t'))
      us++;
    while (ue > us && (ue[-1] == ' ' || ue[-1] == '\t'))
      ue--;
    if (k->n_targets == KAM_TARGETS_MAX) {
      snprintf(err, errlen, "[kamailio] targets: more than %d sites", KAM_TARGETS_MAX);
      return NIRC_ECONFIG;
    }
    kam_target_t *t = &k->targets[k->n_targets];
    if ((size_t)(ke - ks) >= sizeof t->slug || (size_t)(ue - us) >= sizeof t->uri) {
      snprintf(err, errlen, "[kamailio] targets: '%.*s' is too long", (int)(end - p), p);
      return NIRC_ECONFIG;
    }
    memcpy(t->slug, ks, (size_t)(ke - ks));
    t->slug[ke - ks] = '\0';
    memcpy(t->uri, us, (size_t)(ue - us));
    t->uri[ue - us] = '\0';
    if (!nirc_slug_valid(t->slug)) {
      snprintf(err, errlen, "[kamailio] targets: '%s' is not a site slug", t->slug);
      return NIRC_ECONFIG;
    }
    /* The URI goes into a whitespace-separated list file: a URI, nothing
     * that could end the field or the line. */
    bool ok = strncmp(t->uri, "sip:", 4) == 0 || strncmp(t->uri, "sips:", 5) == 0;
    for (const char *c = t->uri; ok && *c; c++)
      if ((unsigned char)*c <= ' ' || *c == '#' || (unsigned char)*c >= 0x7f) ok = false;
    if (!ok || strlen(t->uri) < 6) {
      snprintf(err, errlen, "[kamailio] targets: '%s' for %s is not a sip: or sips: URI", t->uri,
               t->slug);
      return NIRC_ECONFIG;
    }
    for (unsigned i = 0; i < k->n_targets; i++) {
      if (strcmp(k->targets[i].slug, t->slug) == 0) {
        snprintf(err, errlen, "[kamailio] targets: %s is listed twice", t->slug);
        return NIRC_ECONFIG;
      }
    }
    k->n_targets++;
    p = end;
  }
  return 0;
}

static const kam_target_t *kam_target(const adapter_kamailio_t *k, const char *slug) {
  for (unsigned i = 0; i < k->n_targets; i++)
    if (strcmp(k->targets[i].slug, slug) == 0) return &k->targets[i];
  return NULL;
}

static int adapter_kamailio_start(const adapter_env_t *env, void **impl, char *err, size_t errlen) {
  const adapter_kamailio_conf_t *c = env->kamailio;
  if (!c) {
    snprintf(err, errlen, "the kamailio adapter needs a [kamailio] section");
    return NIRC_ECONFIG;
  }
  if (!c->rpc_socket[0] || strlen(c->rpc_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    snprintf(err, errlen, "[kamailio] rpc_socket must be a socket path of 1 to %zu bytes",
             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    return NIRC_ECONFIG;
  }
  if (!c->dispatcher_list[0]) {
    snprintf(err, errlen,
             "[kamailio] dispatcher_list = FILE is required (Kamailio's "
             "dispatcher list_file, which the agent rewrites)");
    return NIRC_ECONFIG;
  }
  if (c->set_id == 0 || c->timeout_ms == 0) {
    snprintf(err, errlen, "[kamailio] set_id and timeout must be positive");
    return NIRC_ECONFIG;
  }
  adapter_kamailio_t *k = calloc(1, sizeof *k);
  if (!k) return NIRC_ENOMEM;
  k->loop = env->loop;
  nirc_strlcpy(k->slug, env->slug, sizeof k->slug);
  nirc_strlcpy(k->rpc_socket, c->rpc_socket, sizeof k->rpc_socket);
  if (nirc_strlcpy(k->list, c->dispatcher_list, sizeof k->list) >= sizeof k->list - 16) {
    snprintf(err, errlen, "[kamailio] dispatcher_list: path too long");
    free(k);
    return NIRC_ECONFIG;
  }
  k->set_id = c->set_id;
  k->timeout_ms = c->timeout_ms;
  k->started_ns = uv_hrtime();
  int rc = kam_parse_targets(k, c->targets, err, errlen);
  if (rc == 0 && !kam_target(k, k->slug)) {
    snprintf(err, errlen,
             "[kamailio] targets has no entry for this site (%s): where do its own calls go?",
             k->slug);
    rc = NIRC_ECONFIG;
  }
  if (rc == 0) {
    /* The list is replaced by rename in its directory: find out now, not
     * during an emergency, that the agent may not write there. */
    char dir[sizeof k->list];
    nirc_strlcpy(dir, k->list, sizeof dir);
    const char *d = dirname(dir);
    if (access(d, W_OK | X_OK) != 0) {
      snprintf(err, errlen, "[kamailio] dispatcher_list: cannot write in %s: %s", d,
               strerror(errno));
      rc = NIRC_ECONFIG;
    }
  }
  if (rc) {
    free(k);
    return rc;
  }
  *impl = k;
  return 0;
}

/* ---- one JSON-RPC call over the datagram socket ---- */

static void kam_call_on_close(uv_handle_t *h) {
  kam_call_t *call = h->data;
  if (--call->handles > 0) return;
  if (call->fd >= 0) close(call->fd);
  free(call->request);
  free(call);
}

/* Reports the outcome (unless the adapter stopped) and releases the call.
 * `call` stays valid until its handles are closed, so the callback may do
 * anything, including starting another call or stopping the adapter. */
static void kam_call_finish(kam_call_t *call, int rc, bool fault, json_t *result, const char *err) {
  if (call->finished) return;
  call->finished = true;
  uv_poll_stop(&call->poll);
  uv_timer_stop(&call->timer);
  adapter_kamailio_t *k = call->owner;
  if (k) {
    if (call->slot && *call->slot == call) *call->slot = NULL;
    call->owner = NULL;
    call->cb(k, rc, fault, result, err);
  }
  uv_close((uv_handle_t *)&call->poll, kam_call_on_close);
  uv_close((uv_handle_t *)&call->timer, kam_call_on_close);
}

static void kam_call_on_timer(uv_timer_t *t);

static void kam_call_send(kam_call_t *call) {
  adapter_kamailio_t *k = call->owner;
  struct sockaddr_un to = {.sun_family = AF_UNIX};
  nirc_strlcpy(to.sun_path, k->rpc_socket, sizeof to.sun_path);
  size_t len = strlen(call->request);
  ssize_t n;
  do {
    n = sendto(call->fd, call->request, len, 0, (struct sockaddr *)&to, sizeof to);
  } while (n < 0 && errno == EINTR);
  call->sent = true;
  if (n < 0 || (size_t)n != len) {
    /* Reported from the loop, like every other outcome. */
    call->send_errno = n < 0 ? errno : EMSGSIZE;
    uv_timer_start(&call->timer, kam_call_on_timer, 0, 0);
    return;
  }
  uv_timer_start(&call->timer, kam_call_on_timer, call->timeout_ms, 0);
}

static void kam_call_on_timer(uv_timer_t *t) {
  kam_call_t *call = t->data;
  if (call->finished) return;
  char err[400];
  if (!call->sent) {
    kam_call_send(call);
    return;
  }
  if (call->send_errno) {
    snprintf(err, sizeof err, "cannot reach Kamailio's RPC socket %s (%s): %s",
             call->owner->rpc_socket, call->method, strerror(call->send_errno));
    kam_call_finish(call, NIRC_EIO, false, NULL, err);
    return;
  }
  snprintf(err, sizeof err, "Kamailio did not answer %s within %" PRIu64 " ms on %s", call->method,
           call->timeout_ms, call->owner->rpc_socket);
  kam_call_finish(call, NIRC_ETIMEOUT, false, NULL, err);
}

static void kam_call_on_readable(uv_poll_t *p, int status, int events) {
  kam_call_t *call = p->data;
  char err[400];
  if (call->finished) return;
  if (status < 0) {
    snprintf(err, sizeof err, "RPC socket for %s: %s", call->method, uv_strerror(status));
    kam_call_finish(call, NIRC_EIO, false, NULL, err);
    return;
  }
  char *buf = malloc(KAM_REPLY_MAX);
  if (!buf) {
    kam_call_finish(call, NIRC_ENOMEM, false, NULL, "out of memory reading Kamailio's answer");
    return;
  }
  for (;;) {
    ssize_t n = recv(call->fd, buf, KAM_REPLY_MAX, MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break; /* wait for more */
      snprintf(err, sizeof err, "reading Kamailio's answer to %s: %s", call->method,
               strerror(errno));
      kam_call_finish(call, NIRC_EIO, false, NULL, err);
      break;
    }
    if (n > KAM_REPLY_MAX) {
      snprintf(err, sizeof err, "Kamailio's answer to %s is larger than %d bytes", call->method,
               KAM_REPLY_MAX);
      kam_call_finish(call, NIRC_EIO, true, NULL, err);
      break;
    }
    json_error_t jerr;
    json_t *reply = json_loadb(buf, (size_t)n, 0, &jerr);
    json_t *id = reply ? json_object_get(reply, "id") : NULL;
    if (!json_is_object(reply)) {
      snprintf(err, sizeof err, "Kamailio's answer to %s is not JSON-RPC: %.60s", call->method,
               reply ? "not an object" : jerr.text);
      json_decref(reply);
      kam_call_finish(call, NIRC_EIO, true, NULL, err);
      break;
    }
    if (!json_is_integer(id) || (uint64_t)json_integer_value(id) != call->id) {
      json_decref(reply); /* not ours (cannot happen on a private socket): ignore */
      continue;
    }
    json_t *e = json_object_get(reply, "error"), *result = json_object_get(reply, "result");
    if (e) {
      json_t *m = json_object_get(e, "message"), *code = json_object_get(e, "code");
      snprintf(err, sizeof err, "Kamailio refused %s: %s (%" JSON_INTEGER_FORMAT ")", call->method,
               json_is_string(m) ? json_string_value(m) : "no message",
               json_is_integer(code) ? json_integer_value(code) : 0);
      kam_call_finish(call, NIRC_EIO, true, NULL, err);
    } else if (result) {
      kam_call_finish(call, 0, false, result, "");
    } else {
      snprintf(err, sizeof err, "Kamailio's answer to %s has neither result nor error",
               call->method);
      kam_call_finish(call, NIRC_EIO, true, NULL, err);
    }
    json_decref(reply);
    break;
  }
  free(buf);
}

/* Starts `method` (params: a JSON array, stolen, or NULL) after delay_ms,
 * allowing it timeout_ms for the answer. The outcome always comes through
 * cb from the loop, never before this returns. 0, or a NIRC_E* code with
 * err when nothing could be started. */
static int kam_call_start(adapter_kamailio_t *k, const char *method, json_t *params,
                          uint64_t delay_ms, uint64_t timeout_ms, kam_call_cb cb, kam_call_t **slot,
                          char *err, size_t errlen) {
  kam_call_t *call = calloc(1, sizeof *call);
  json_t *req = json_pack("{s:s, s:s, s:I}", "jsonrpc", "2.0", "method", method, "id",
                          (json_int_t)kam_next_id);
  if (req && params)
    json_object_set_new(req, "params", params);
  else
    json_decref(params);
  char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  if (!call || !text) {
    free(call);
    free(text);
    snprintf(err, errlen, "out of memory");
    return NIRC_ENOMEM;
  }
  call->owner = k;
  call->slot = slot;
  call->cb = cb;
  call->request = text;
  call->id = kam_next_id++;
  call->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
  nirc_strlcpy(call->method, method, sizeof call->method);
  call->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (call->fd < 0) {
    snprintf(err, errlen, "socket(AF_UNIX, SOCK_DGRAM): %s", strerror(errno));
    free(text);
    free(call);
    return NIRC_EIO;
  }
  /* Kamailio answers to the address we send from: a private abstract one,
   * unique per process (pid, start time) and per call. */
  struct sockaddr_un me = {.sun_family = AF_UNIX};
  int plen = snprintf(me.sun_path + 1, sizeof me.sun_path - 1,
                      "nirc-agent-kamailio/%ld/%" PRIx64 "/%" PRIu64, (long)getpid(), k->started_ns,
                      call->id);
  socklen_t mlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)plen);
  if (bind(call->fd, (struct sockaddr *)&me, mlen) != 0) {
    snprintf(err, errlen, "cannot bind the RPC reply socket: %s", strerror(errno));
    close(call->fd);
    free(text);
    free(call);
    return NIRC_EIO;
  }
  int rc = uv_poll_init(k->loop, &call->poll, call->fd);
  if (rc) {
    snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(rc));
    close(call->fd);
    free(text);
    free(call);
    return NIRC_EIO;
  }
  uv_timer_init(k->loop, &call->timer);
  call->handles = 2;
  call->poll.data = call->timer.data = call;
  uv_poll_start(&call->poll, UV_READABLE, kam_call_on_readable);
  *slot = call;
  if (delay_ms > 0)
    uv_timer_start(&call->timer, kam_call_on_timer, delay_ms, 0);
  else
    kam_call_send(call);
  return 0;
}

/* ---- apply ---- */

/* Per-mille shares to Kamailio's percent weights: largest remainder, ties
 * to the larger share then the earlier one; a non-zero share keeps 1% at
 * least (taken from the largest). The weights sum to 100. */
static void kam_percent(const route_t *r, unsigned pct[ROUTE_MAX_SHARES]) {
  unsigned total = 0, n = r->n_share;
  int rem[ROUTE_MAX_SHARES];
  for (unsigned i = 0; i < n; i++) {
    pct[i] = r->share[i].permille / 10;
    rem[i] = (int)(r->share[i].permille % 10);
    total += pct[i];
  }
  while (total < 100 && n > 0) {
    unsigned best = n;
    for (unsigned i = 0; i < n; i++) {
      if (rem[i] < 0) continue;
      if (best == n || rem[i] > rem[best] ||
          (rem[i] == rem[best] && r->share[i].permille > r->share[best].permille))
        best = i;
    }
    if (best == n) break;
    pct[best]++;
    rem[best] = -1;
    total++;
  }
  for (unsigned i = 0; i < n; i++) {
    if (pct[i] > 0 || r->share[i].permille == 0) continue;
    unsigned big = 0;
    for (unsigned j = 1; j < n; j++)
      if (pct[j] > pct[big]) big = j;
    if (pct[big] > 1) {
      pct[big]--;
      pct[i] = 1;
    }
  }
}

/* The rule that moved the calls (the directive's reason) as it goes into
 * the list line: at most KAM_RULE_MAX bytes of UTF-8, cut between
 * characters, controls made spaces, then hex-encoded, so that nothing in
 * it can end the attribute, the line or, once Kamailio decodes it, the SIP
 * header (kamailio.cfg decodes with {s.decode.hexa}). */
static void kam_rule_hex(const char *reason, char *out, size_t outlen) {
  char text[KAM_RULE_MAX + 1];
  nirc_strlcpy_utf8(text, reason, sizeof text);
  size_t n = 0;
  out[0] = '\0';
  for (const unsigned char *c = (const unsigned char *)text; *c && n + 3 <= outlen; c++) {
    unsigned char b = *c < 0x20 || *c == 0x7f ? ' ' : *c;
    snprintf(out + n, outlen - n, "%02x", b);
    n += 2;
  }
}

/* The dispatcher list for route r, or NULL with err (NIRC_EUNKNOWN_SITE in
 * *rc when a share names a site without a target). */
static char *kam_list_text(adapter_kamailio_t *k, const route_t *r, int *rc, char *err,
                           size_t errlen) {
  unsigned pct[ROUTE_MAX_SHARES];
  for (unsigned i = 0; i < r->n_share; i++) {
    if (!kam_target(k, r->share[i].site)) {
      snprintf(err, errlen, "route target '%s' has no SIP address in [kamailio] targets of site %s",
               r->share[i].site, k->slug);
      *rc = NIRC_EUNKNOWN_SITE;
      return NULL;
    }
  }
  kam_percent(r, pct);
  char rule[2 * KAM_RULE_MAX + 1];
  kam_rule_hex(r->reason, rule, sizeof rule);
  size_t cap = 512 + (size_t)r->n_share * (KAM_URI_MAX + 128 + sizeof rule);
  char *text = malloc(cap);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    *rc = NIRC_ENOMEM;
    return NULL;
  }
  char desc[200];
  route_format(r, k->slug, desc, sizeof desc);
  /* The description is slugs and numbers; keep the comment one line. */
  for (char *c = desc; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  nirc_strlcpy(k->applied_desc, desc, sizeof k->applied_desc);
  size_t len = (size_t)snprintf(text, cap,
                                "# Written by nirc-agent for site %s: the next route change "
                                "replaces this file.\n"
                                "# route (%" PRIu64 ", %" PRIu64 "): %s\n"
                                "# setid destination flags priority attrs (weight: percent)\n",
                                k->slug, r->epoch, r->version, desc);
  for (unsigned i = 0; i < r->n_share && len < cap; i++) {
    if (r->share[i].permille == 0 || pct[i] == 0) continue;
    len += (size_t)snprintf(text + len, cap - len, "%u %s 0 0 duid=%s;weight=%u", k->set_id,
                            kam_target(k, r->share[i].site)->uri, r->share[i].site, pct[i]);
    /* Calls sent elsewhere say where they come from and why (kamailio.cfg
     * route[ORIGIN] makes X-NIRC-Origin / X-NIRC-Rule of these). */
    if (len < cap && strcmp(r->share[i].site, k->slug) != 0)
      len += (size_t)snprintf(text + len, cap - len, ";origin=%s%s%s", k->slug,
                              rule[0] ? ";rule=" : "", rule);
    if (len < cap) len += (size_t)snprintf(text + len, cap - len, "\n");
  }
  *rc = 0;
  return text;
}

static int kam_write_all(int fd, const char *buf, size_t len) {
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

/* Replaces the list file with text[len] (temp file, fsync, rename), or
 * removes it when text is NULL. 0 or NIRC_EIO with err. */
static int kam_write_list(adapter_kamailio_t *k, const char *text, size_t len, char *err,
                          size_t errlen) {
  if (!text) {
    if (unlink(k->list) != 0 && errno != ENOENT) {
      snprintf(err, errlen, "%s: cannot remove: %s", k->list, strerror(errno));
      return NIRC_EIO;
    }
    return 0;
  }
  char tmp[sizeof k->list + 16], dir[sizeof k->list];
  snprintf(tmp, sizeof tmp, "%s.nirc-tmp", k->list);
  const char *step = "open";
  /* Kamailio may run as another user: it must be able to read the list. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto fail;
  step = "write";
  if (kam_write_all(fd, text, len) != 0) goto fail;
  step = "fsync";
  if (fsync(fd) != 0) goto fail;
  step = "close";
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  step = "rename";
  if (rename(tmp, k->list) != 0) goto fail;
  nirc_strlcpy(dir, k->list, sizeof dir);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
fail:
  snprintf(err, errlen, "%s: %s failed: %s", step[0] == 'r' ? k->list : tmp, step, strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  return NIRC_EIO;
}

/* Reads the current list file into *out (NULL when there is none). */
static int kam_read_list(adapter_kamailio_t *k, char **out, size_t *len, char *err, size_t errlen) {
  *out = NULL;
  *len = 0;
  int fd = open(k->list, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: cannot read the current list: %s", k->list, strerror(errno));
    return NIRC_EIO;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (n == cap) {
      char *nb = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        free(buf);
        buf = NULL;
        errno = EFBIG;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      free(buf);
      buf = NULL;
      break;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  int saved = errno;
  close(fd);
  if (!buf) {
    snprintf(err, errlen, "%s: cannot read the current list: %s", k->list, strerror(saved));
    return NIRC_EIO;
  }
  *out = buf;
  *len = n;
  return 0;
}

static void kam_apply_done(adapter_kamailio_t *k, int rc, const char *err) {
  adapter_apply_cb cb = k->apply_cb;
  void *arg = k->apply_arg;
  k->apply_cb = NULL;
  free(k->prev);
  k->prev = NULL;
  k->prev_len = 0;
  cb(arg, rc, err);
}

static void kam_on_cleanup_reload(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                                  const char *err) {
  /* Kamailio refuses reloads that come too close together; the restored
   * list must still get in, or Kamailio would keep routing by a list the
   * agent has reported as failed. Ask again at the usual pace, bounded. */
  if (rc && fault && err && strstr(err, "ngoing reload") &&
      k->cleanup_tries < KAM_CLEANUP_MAX_TRIES) {
    char cerr[200];
    k->cleanup_tries++;
    if (kam_call_start(k, "dispatcher.reload", NULL, KAM_RELOAD_RETRY_MS, k->timeout_ms,
                       kam_on_cleanup_reload, &k->cleanup_call, cerr, sizeof cerr) == 0)
      return;
    log_warn(LOG_ADAPTER, k->slug, "cannot ask Kamailio again to reload the restored list: %s",
             cerr);
  }
  k->cleanup_tries = 0;
  if (rc)
    log_error(LOG_ADAPTER, k->slug, "reload of the restored dispatcher list: %s", err);
  else
    log_info(LOG_ADAPTER, k->slug, "Kamailio reloaded the restored dispatcher list");
}

static void kam_on_reloaded(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                            const char *err);

/* The apply's reload, its retries included, must be answered within the
 * apply's time limit. */
static int kam_reload(adapter_kamailio_t *k, uint64_t delay_ms, char *err, size_t errlen) {
  uint64_t now = uv_now(k->loop), end = now + delay_ms;
  uint64_t left = k->apply_deadline > end ? k->apply_deadline - end : 1;
  return kam_call_start(k, "dispatcher.reload", NULL, delay_ms, left, kam_on_reloaded,
                        &k->apply_call, err, errlen);
}

/* The apply failed with `why`: put the previous list back and report. */
static void kam_apply_fail(adapter_kamailio_t *k, int rc, bool kamailio_answered, const char *why) {
  char detail[700], werr[300];
  if (kam_write_list(k, k->prev, k->prev_len, werr, sizeof werr) != 0) {
    log_error(LOG_ADAPTER, k->slug, "cannot restore the previous dispatcher list: %s", werr);
    snprintf(detail, sizeof detail, "%s; the previous dispatcher list could not be restored: %s",
             why, werr);
    kam_apply_done(k, rc, detail);
    return;
  }
  snprintf(detail, sizeof detail, "%s; the previous dispatcher list is back in %s", why, k->list);
  /* A Kamailio that did not answer may still reload later: ask it to read
   * the restored file, so that whatever it does, it ends on the old list.
   * One that answered with an error kept its old list in memory. */
  if (!kamailio_answered && !k->cleanup_call) {
    char cerr[200];
    if (kam_call_start(k, "dispatcher.reload", NULL, 0, k->timeout_ms, kam_on_cleanup_reload,
                       &k->cleanup_call, cerr, sizeof cerr) != 0)
      log_warn(LOG_ADAPTER, k->slug, "cannot ask Kamailio to reload the restored list: %s", cerr);
  }
  kam_apply_done(k, rc, detail);
}

static void kam_on_reloaded(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                            const char *err) {
  if (rc == 0) {
    log_debug(LOG_ADAPTER, k->slug, "Kamailio reloaded %s: %s", k->list, k->applied_desc);
    kam_apply_done(k, 0, "");
    return;
  }
  if (fault && strstr(err, "ngoing reload") &&
      uv_now(k->loop) + KAM_RELOAD_RETRY_MS < k->apply_deadline) {
    /* Kamailio's reload_delta: the previous reload was too recent. */
    char cerr[200];
    if (kam_reload(k, KAM_RELOAD_RETRY_MS, cerr, sizeof cerr) == 0) return;
    kam_apply_fail(k, NIRC_EIO, true, cerr);
    return;
  }
  kam_apply_fail(k, rc, fault, err);
}

static void adapter_kamailio_apply(void *impl, const route_t *r, adapter_apply_cb cb, void *arg) {
  adapter_kamailio_t *k = impl;
  char err[400];
  int rc;
  char *text = kam_list_text(k, r, &rc, err, sizeof err);
  if (!text) {
    cb(arg, rc, err);
    return;
  }
  char *prev;
  size_t prev_len;
  rc = kam_read_list(k, &prev, &prev_len, err, sizeof err);
  if (rc == 0) rc = kam_write_list(k, text, strlen(text), err, sizeof err);
  free(text);
  if (rc) {
    free(prev);
    cb(arg, rc, err);
    return;
  }
  k->apply_cb = cb;
  k->apply_arg = arg;
  k->prev = prev;
  k->prev_len = prev_len;
  k->apply_deadline = uv_now(k->loop) + k->timeout_ms;
  rc = kam_reload(k, 0, err, sizeof err);
  if (rc) kam_apply_fail(k, rc, true, err);
}

/* ---- collect ---- */

static void kam_collect_done(adapter_kamailio_t *k, const adapter_load_t *load) {
  adapter_collect_cb cb = k->collect_cb;
  void *arg = k->collect_arg;
  k->collect_cb = NULL;
  cb(arg, load);
}

static void kam_collect_unreadable(adapter_kamailio_t *k, const char *why) {
  adapter_load_t load = {.unreadable = true};
  nirc_strlcpy_utf8(load.error, why, sizeof load.error);
  kam_collect_done(k, &load);
}

/* A counter from a JSON-RPC value: a non-negative integer in range. */
static bool kam_count(json_t *v, uint64_t *out) {
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > KAM_COUNT_MAX) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
  }
  return false;
}

static bool kam_parse_digits(const char *s, uint64_t *out) {
  if (!*s) return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > KAM_COUNT_MAX) return false;
  }
  *out = v;
  return true;
}

/* The last RPC of a collect: calls sent to each destination. Without them
 * the report would say nothing was routed away while calls were: the
 * interval is unreadable instead, with the fix. */
static void kam_on_counts(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                          const char *err) {
  char why[300];
  if (rc) {
    if (fault)
      snprintf(why, sizeof why,
               "%s: the per-destination counters are missing (Kamailio needs the htable "
               "'nirc' of deploy/kamailio/kamailio.cfg)",
               err);
    else
      nirc_strlcpy(why, err, sizeof why);
    kam_collect_unreadable(k, why);
    return;
  }
  kamcounts_t now;
  if (kamcounts_parse(result, &now, why, sizeof why) != 0) {
    kam_collect_unreadable(k, why);
    return;
  }
  adapter_load_t load = k->pending;
  if (k->have_counts) {
    kamcounts_delta_t d;
    if (kamcounts_interval(&k->counts_base, &now, k->slug, &d))
      log_warn(LOG_ADAPTER, k->slug, "Kamailio's per-destination counters restarted");
    load.offered = d.home;
    load.routed_away = d.away;
    for (unsigned i = 0; i < d.n_to && load.n_routed_to < ADAPTER_ROUTED_MAX; i++) {
      adapter_routed_t *r = &load.routed_to[load.n_routed_to++];
      nirc_strlcpy(r->site, d.to[i].site, sizeof r->site);
      r->calls = d.to[i].sent > UINT32_MAX ? UINT32_MAX : (uint32_t)d.to[i].sent;
    }
    /* Every call the proxy sent elsewhere went through $shtinc: measured
     * (unless some destination did not fit the report). */
    load.routing_measured = load.n_routed_to == d.n_to;
  } else {
    /* First look: the counters cover an unknown past. */
    load.offered = 0;
  }
  k->counts_base = now;
  k->have_counts = true;
  kam_collect_done(k, &load);
}

static void kam_on_active(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                          const char *err) {
  char why[200];
  if (rc) {
    kam_collect_unreadable(k, err);
    return;
  }
  uint64_t starting, connecting;
  if (!json_is_object(result) || !kam_count(json_object_get(result, "starting"), &starting) ||
      !kam_count(json_object_get(result, "connecting"), &connecting)) {
    snprintf(why, sizeof why, "Kamailio's dlg.stats_active answer is not understood");
    kam_collect_unreadable(k, why);
    return;
  }
  /* Answered so far: created, less failed, less those still ringing. */
  uint64_t pending = starting + connecting, done = k->failed + pending;
  uint64_t answered = k->processed > done ? k->processed - done : 0;
  adapter_load_t load = {0};
  if (!k->have_base || k->processed < k->base_processed || k->failed < k->base_failed) {
    if (k->have_base) {
      /* Counters went back: Kamailio restarted. What it counted since is
       * new since our last look. */
      log_warn(LOG_ADAPTER, k->slug, "Kamailio's counters restarted (%" PRIu64 " < %" PRIu64 ")",
               k->processed, k->base_processed);
      load.offered = (uint32_t)k->processed;
      load.abandoned = (uint32_t)k->failed;
      load.answered = (uint32_t)answered;
    }
    /* First look: the counters cover an unknown past, not this interval. */
    k->have_base = true;
    k->base_answered = answered;
  } else {
    load.offered = (uint32_t)(k->processed - k->base_processed);
    load.abandoned = (uint32_t)(k->failed - k->base_failed);
    /* A call counted as answered is not taken back (a late failure after
     * a 200 is still an answered call): report only growth. */
    load.answered = answered > k->base_answered ? (uint32_t)(answered - k->base_answered) : 0;
    if (answered > k->base_answered) k->base_answered = answered;
  }
  k->base_processed = k->processed;
  k->base_failed = k->failed;
  /* A proxy has no queue, no agents and no handle time, and service level
   * is the PBX's business: reported as not measured, never as zeros (the
   * controller plans on the site's configured capacity instead). */
  load.not_measured = REPORT_NM_PROXY;
  k->pending = load;
  char cerr[200];
  if (kam_call_start(k, "htable.dump", json_pack("[s]", "nirc"), 0, k->timeout_ms, kam_on_counts,
                     &k->collect_call, cerr, sizeof cerr) != 0)
    kam_collect_unreadable(k, cerr);
}

static void kam_on_stats(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                         const char *err) {
  char why[200];
  if (rc) {
    kam_collect_unreadable(k, err);
    return;
  }
  bool have_processed = false, have_failed = false;
  size_t i;
  json_t *v;
  if (!json_is_array(result)) goto garbage;
  json_array_foreach(result, i, v) {
    if (!json_is_string(v)) goto garbage;
    /* "dialog:processed_dialogs = 12" */
    const char *s = json_string_value(v), *eq = strstr(s, " = ");
    if (!eq) goto garbage;
    uint64_t n;
    size_t nlen = (size_t)(eq - s);
    bool is_processed = nlen == strlen("dialog:processed_dialogs") &&
                        strncmp(s, "dialog:processed_dialogs", nlen) == 0;
    bool is_failed =
        nlen == strlen("dialog:failed_dialogs") && strncmp(s, "dialog:failed_dialogs", nlen) == 0;
    if (!is_processed && !is_failed) continue;
    if (!kam_parse_digits(eq + 3, &n)) goto garbage;
    if (is_processed) {
      k->processed = n;
      have_processed = true;
    } else {
      k->failed = n;
      have_failed = true;
    }
  }
  if (!have_processed || !have_failed) {
    snprintf(why, sizeof why,
             "Kamailio has no dialog statistics (is the dialog module loaded, enable_stats on?)");
    kam_collect_unreadable(k, why);
    return;
  }
  if (kam_call_start(k, "dlg.stats_active", NULL, 0, k->timeout_ms, kam_on_active, &k->collect_call,
                     why, sizeof why) != 0)
    kam_collect_unreadable(k, why);
  return;
garbage:
  snprintf(why, sizeof why, "Kamailio's stats.get_statistics answer is not understood");
  kam_collect_unreadable(k, why);
}

static void adapter_kamailio_collect(void *impl, int64_t now_ms, adapter_collect_cb cb, void *arg) {
  adapter_kamailio_t *k = impl;
  char why[200];
  k->collect_cb = cb;
  k->collect_arg = arg;
  json_t *params = json_pack("[s]", "dialog:");
  if (kam_call_start(k, "stats.get_statistics", params, 0, k->timeout_ms, kam_on_stats,
                     &k->collect_call, why, sizeof why) != 0)
    kam_collect_unreadable(k, why);
}

/* ---- verify: read the dispatcher set back ---- */

/* The set Kamailio should hold for route r, as kam_list_text writes it. */
static int kam_expected_set(adapter_kamailio_t *k, const route_t *r, kamverify_set_t *set,
                            char *err, size_t errlen) {
  unsigned pct[ROUTE_MAX_SHARES];
  memset(set, 0, sizeof *set);
  kam_percent(r, pct);
  for (unsigned i = 0; i < r->n_share && set->n < KAMVERIFY_MAX; i++) {
    const kam_target_t *t = kam_target(k, r->share[i].site);
    if (!t) {
      snprintf(err, errlen, "route target '%s' has no SIP address in [kamailio] targets",
               r->share[i].site);
      return NIRC_EUNKNOWN_SITE;
    }
    if (r->share[i].permille == 0 || pct[i] == 0) continue;
    kamverify_dest_t *d = &set->d[set->n++];
    nirc_strlcpy(d->uri, t->uri, sizeof d->uri);
    nirc_strlcpy(d->name, t->slug, sizeof d->name);
    d->weight = pct[i];
  }
  return 0;
}

static void kam_verify_done(adapter_kamailio_t *k, adapter_verify_t v, const char *found,
                            const char *detail) {
  adapter_verify_cb cb = k->verify_cb;
  k->verify_cb = NULL;
  cb(k->verify_arg, v, found, detail);
}

static void kam_on_listed(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                          const char *err) {
  char why[300], found[400], want[400], detail[1100];
  kamverify_set_t set = {0};
  /* Kamailio answers an empty list with an error ("No Destination Sets"):
   * that is a reading, not a failure to read. */
  if (rc && !(fault && err && strstr(err, "No Destination"))) {
    snprintf(why, sizeof why, "cannot read Kamailio's dispatcher set back: %s", err);
    kam_verify_done(k, ADAPTER_VERIFY_UNREADABLE, "", why);
    return;
  }
  if (rc == 0 && kamverify_parse(result, k->set_id, &set, why, sizeof why) != 0) {
    kam_verify_done(k, ADAPTER_VERIFY_UNREADABLE, "", why);
    return;
  }
  /* Name what Kamailio holds by our targets when the URI is one of them:
   * the operator thinks in sites. */
  for (unsigned i = 0; i < set.n; i++)
    for (unsigned t = 0; t < k->n_targets; t++)
      if (strcmp(set.d[i].uri, k->targets[t].uri) == 0)
        nirc_strlcpy(set.d[i].name, k->targets[t].slug, sizeof set.d[i].name);
  kamverify_format(&set, found, sizeof found);
  if (kamverify_same(&set, &k->verify_expected)) {
    kam_verify_done(k, ADAPTER_VERIFY_MATCH, found, "");
    return;
  }
  kamverify_format(&k->verify_expected, want, sizeof want);
  /* Short first (a controller keeps ~160 bytes of an ack's detail): what
   * Kamailio does, what it should, and the usual cause. */
  snprintf(detail, sizeof detail,
           "Kamailio routes set %u to %s, not %s: is NIRC_DS_LIST in kamailio.cfg the agent's "
           "[kamailio] dispatcher_list %s (and set_id the set it routes by)?",
           k->set_id, found, want, k->list);
  kam_verify_done(k, ADAPTER_VERIFY_MISMATCH, found, detail);
}

static void adapter_kamailio_verify(void *impl, const route_t *r, adapter_verify_cb cb, void *arg) {
  adapter_kamailio_t *k = impl;
  char err[300];
  if (kam_expected_set(k, r, &k->verify_expected, err, sizeof err) != 0) {
    cb(arg, ADAPTER_VERIFY_UNREADABLE, "", err);
    return;
  }
  k->verify_cb = cb;
  k->verify_arg = arg;
  if (kam_call_start(k, "dispatcher.list", NULL, 0, k->timeout_ms, kam_on_listed, &k->verify_call,
                     err, sizeof err) != 0)
    kam_verify_done(k, ADAPTER_VERIFY_UNREADABLE, "", err);
}

static void kam_on_uptime(adapter_kamailio_t *k, int rc, bool fault, json_t *result,
                          const char *err) {
  adapter_uptime_cb cb = k->uptime_cb;
  k->uptime_cb = NULL;
  json_t *up = json_is_object(result) ? json_object_get(result, "uptime") : NULL;
  if (rc == 0 && json_is_integer(up) && json_integer_value(up) >= 0)
    cb(k->uptime_arg, 0, (uint64_t)json_integer_value(up));
  else
    cb(k->uptime_arg, rc ? rc : NIRC_EIO, 0);
}

/* core.uptime: Kamailio's seconds since start; going back means a restart. */
static void adapter_kamailio_uptime(void *impl, adapter_uptime_cb cb, void *arg) {
  adapter_kamailio_t *k = impl;
  char err[200];
  k->uptime_cb = cb;
  k->uptime_arg = arg;
  int rc = kam_call_start(k, "core.uptime", NULL, 0, k->timeout_ms, kam_on_uptime, &k->uptime_call,
                          err, sizeof err);
  if (rc) {
    k->uptime_cb = NULL;
    cb(arg, rc, 0);
  }
}

/* RPCs in flight are detached: they close their handles from the loop and
 * call nobody. The adapter itself holds no handle. */
static void adapter_kamailio_stop(void *impl) {
  adapter_kamailio_t *k = impl;
  if (!k) return;
  kam_call_t *calls[] = {k->apply_call, k->collect_call, k->cleanup_call, k->verify_call,
                         k->uptime_call};
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    if (!calls[i]) continue;
    calls[i]->owner = NULL;
    calls[i]->slot = NULL;
    /* Finish it at once: nothing will wait for the answer. */
    kam_call_finish(calls[i], NIRC_ECLOSED, false, NULL, "");
  }
  free(k->prev);
  free(k);
}

const adapter_ops_t adapter_kamailio_ops = {
    .name = "kamailio",
    .start = adapter_kamailio_start,
    .apply = adapter_kamailio_apply,
    .collect = adapter_kamailio_collect,
    .verify = adapter_kamailio_verify,
    .uptime = adapter_kamailio_uptime,
    .stop = adapter_kamailio_stop,
};
