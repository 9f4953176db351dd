/* swarm_run: nirc-swarm run once its command line is checked: the agents
 * made from DIR/scenario.json, the swarm's clock and timers (duration,
 * progress, RSS, ramp), signals, the stop, and the loop. */
#include "swarm.h"

#include "backoff.h"
#include "clock.h"
#include "err.h"
#include "link.h"
#include "log.h"
#include "route.h"
#include "scenario.h"
#include "tls.h"
#include "util.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* File descriptors the process needs besides one per link: stdio, the
 * loop's epoll and signal pipe, files opened while running. */
#define SW_FD_SPARE 64

/* splitmix64: turns a counter into well-spread seeds, so agents created in
 * the same nanosecond still draw independent jitter. */
static uint64_t sw_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Milliseconds since the swarm started, with the precision of uv_hrtime:
 * uv_now() is cached per loop turn, and one turn can handle hundreds of
 * handshakes, which would bunch the very times we want to see spread. */
double sw_now(const swarm_t *sw) {
  return (double)(uv_hrtime() - sw->t0_ns) / 1e6;
}

/* ---- global timers ---- */

void sw_rss_sample(swarm_t *sw) {
  if (sw->nrss == SW_RSS_MAX) return;
  sw->rss_t_s[sw->nrss] = round(sw_now(sw) / 100.0) / 10.0;
  sw->rss_kb[sw->nrss] = sw_rss_kb();
  sw->nrss++;
}

static void sw_on_rss(uv_timer_t *t) {
  sw_rss_sample(t->data);
}

static void sw_on_progress(uv_timer_t *t) {
  swarm_t *sw = t->data;
  sw_emit(sw_progress_json(sw));
}

/* Connections started in one turn of the loop at most, by the ramp and by
 * the agents' retry timers together. Each makes its ClientHello first
 * (link_connect), ~0.3 ms of CPU: 10,000 in one turn (the first start, or
 * the retry timers after a failover, which libuv runs in one batch before
 * it polls) kept the loop from sending any of them for seconds, while the
 * controller held the connections it had accepted open and silent (it
 * took them for half-open sockets: shed or evicted them). Ten thousand
 * real agents each send theirs at once; between two chunks the loop
 * sends what it made. */
#define SW_START_CHUNK 64

bool sw_may_start(swarm_t *sw) {
  if (sw->turn_starts >= SW_START_CHUNK) return false;
  sw->turn_starts++;
  return true;
}

static void sw_on_turn(uv_check_t *h) {
  swarm_t *sw = h->data;
  sw->turn_starts = 0;
}

/* Starts the first connections: with --ramp a few per tick, spread over
 * it; without, as fast as the loop makes their ClientHellos. */
static void sw_on_ramp(uv_timer_t *t) {
  swarm_t *sw = t->data;
  double elapsed = sw_now(sw);
  unsigned due =
      sw->ramp_ms ? (unsigned)fmin(sw->n, ceil(elapsed / (double)sw->ramp_ms * sw->n)) : sw->n;
  while (sw->ramp_next < due && !sw->stopping && sw_may_start(sw))
    sw_agent_connect(&sw->agents[sw->ramp_next++]);
  if (sw->ramp_next >= sw->n) uv_timer_stop(t);
}

/* Ends the run: the summary is taken first (the state being judged is the
 * one before we close anything), then every handle and link is closed and
 * the loop runs dry. */
static void sw_stop(swarm_t *sw, const char *why) {
  if (sw->stopping) return;
  sw_rss_sample(sw);
  nirc_strlcpy(sw->stop_reason, why, sizeof sw->stop_reason);
  sw->summary = sw_summary_json(sw, sw_now(sw));
  sw->stopping = true;
  uv_close((uv_handle_t *)&sw->t_duration, NULL);
  uv_close((uv_handle_t *)&sw->t_progress, NULL);
  uv_close((uv_handle_t *)&sw->t_rss, NULL);
  uv_close((uv_handle_t *)&sw->t_ramp, NULL);
  uv_close((uv_handle_t *)&sw->t_turn, NULL);
  uv_close((uv_handle_t *)&sw->sig_int, NULL);
  uv_close((uv_handle_t *)&sw->sig_term, NULL);
  for (unsigned i = 0; i < sw->n; i++) {
    sw_agent_t *a = &sw->agents[i];
    a->state = SW_STOPPING;
    uv_close((uv_handle_t *)&a->retry, NULL);
    uv_close((uv_handle_t *)&a->report, NULL);
    if (a->link) link_close(a->link, 0, "swarm stopping");
  }
}

static void sw_on_duration(uv_timer_t *t) {
  sw_stop(t->data, "duration");
}

static void sw_on_signal(uv_signal_t *s, int signum) {
  sw_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* One descriptor per link plus spares: raise the soft limit as far as the
 * hard limit allows, and say so plainly if that is not enough. */
static int sw_raise_nofile(unsigned links, rlim_t *limit) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rlim_t need = (rlim_t)links + SW_FD_SPARE;
  if (rl.rlim_cur < need) {
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  *limit = rl.rlim_cur;
  if (rl.rlim_cur < need) {
    fprintf(stderr,
            "nirc-swarm: %u agents need %llu file descriptors but the hard limit is %llu; raise "
            "it (ulimit -Hn as root, or LimitNOFILE= in a unit)\n",
            links, (unsigned long long)need, (unsigned long long)rl.rlim_max);
    return -1;
  }
  return 0;
}
int sw_run(swarm_t *sw, const char *ca, const char *dir, unsigned long count,
           const char *json_out) {
  char err[512];
  /* The scenario gen-pki wrote names the sites; the files sit beside it. */
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/scenario.json", dir);
  scenario_t sc;
  if (scenario_load(path, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-swarm: %s (make DIR with `nirc-swarm gen-pki`)\n", err);
    return SW_EXIT_FAIL;
  }
  if (sw->first >= sc.count) {
    fprintf(stderr, "nirc-swarm: --first %u but %s lists only %zu sites\n", sw->first, path,
            sc.count);
    scenario_free(&sc);
    return SW_EXIT_USAGE;
  }
  if (count == 0) count = sc.count - sw->first;
  if (count > sc.count - sw->first) {
    fprintf(stderr, "nirc-swarm: --first %u --count %lu but %s lists only %zu sites\n", sw->first,
            count, path, sc.count);
    scenario_free(&sc);
    return SW_EXIT_USAGE;
  }
  sw->n = (unsigned)count;
  if (sw_raise_nofile(sw->n, &sw->fd_limit) != 0) {
    scenario_free(&sc);
    return SW_EXIT_FAIL;
  }
  /* A controller that vanishes mid-write must not kill the swarm. */
  signal(SIGPIPE, SIG_IGN);

  sw->loop = uv_default_loop();
  sw->t0_ns = uv_hrtime();
  sw->agents = calloc(sw->n, sizeof *sw->agents);
  if (!sw->agents) {
    fprintf(stderr, "nirc-swarm: out of memory for %u agents\n", sw->n);
    return SW_EXIT_FAIL;
  }
  uint64_t seed = (uint64_t)clock_real_ms() ^ ((uint64_t)getpid() << 32);
  int rc = 0;
  for (unsigned i = 0; i < sw->n && rc == 0; i++) {
    sw_agent_t *a = &sw->agents[i];
    a->sw = sw;
    nirc_strlcpy(a->slug, sc.sites[sw->first + i].slug, sizeof a->slug);
    char cert[PATH_MAX], key[PATH_MAX];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, a->slug);
    snprintf(key, sizeof key, "%s/%s.key", dir, a->slug);
    /* As agent_init: the certificate must name this very site. */
    peer_identity_t me;
    rc = tls_file_identity(cert, &me, err, sizeof err);
    if (rc == 0 && (me.kind != PEER_SITE || strcmp(me.name, a->slug) != 0)) {
      snprintf(err, sizeof err, "%s is for '%s', not site:%s", cert, me.subject, a->slug);
      rc = NIRC_EIDENTITY;
    }
    if (rc == 0) rc = tls_ctx_new(TLS_CLIENT, ca, cert, key, &a->tls, err, sizeof err);
    if (rc) break;
    backoff_init(&a->backoff, (uint32_t)sw->backoff_min_ms, (uint32_t)sw->backoff_max_ms,
                 sw_mix(seed + 2 * i));
    a->rng = sw_mix(seed + 2 * i + 1) | 1;
    a->idx = i % sw->naddrs; /* spread the first attempts over the list */
    a->interval_ms = (uint32_t)sw->report_interval_ms;
    route_home(&a->applied, a->slug);
    uv_timer_init(sw->loop, &a->retry);
    uv_timer_init(sw->loop, &a->report);
    a->retry.data = a->report.data = a;
  }
  scenario_free(&sc);
  if (rc) {
    fprintf(stderr, "nirc-swarm: %s\n", err);
    return SW_EXIT_FAIL;
  }
  sw->setup_ms = sw_now(sw);
  sw->rss_setup_kb = sw_rss_kb();
  log_info(LOG_MAIN, "swarm", "%u agents ready in %.0f ms, RSS %ld KiB", sw->n, sw->setup_ms,
           sw->rss_setup_kb);

  /* Times count from the first connection, and the loop's cached clock
   * must not lag behind the set-up, or every timer fires that much early. */
  uv_update_time(sw->loop);
  sw->t0_ns = uv_hrtime();
  uv_timer_init(sw->loop, &sw->t_duration);
  uv_timer_init(sw->loop, &sw->t_progress);
  uv_timer_init(sw->loop, &sw->t_rss);
  uv_timer_init(sw->loop, &sw->t_ramp);
  sw->t_duration.data = sw->t_progress.data = sw->t_rss.data = sw->t_ramp.data = sw;
  uv_check_init(sw->loop, &sw->t_turn);
  sw->t_turn.data = sw;
  uv_check_start(&sw->t_turn, sw_on_turn);
  uv_unref((uv_handle_t *)&sw->t_turn);
  uv_signal_init(sw->loop, &sw->sig_int);
  uv_signal_init(sw->loop, &sw->sig_term);
  sw->sig_int.data = sw->sig_term.data = sw;
  uv_signal_start(&sw->sig_int, sw_on_signal, SIGINT);
  uv_signal_start(&sw->sig_term, sw_on_signal, SIGTERM);
  if (sw->duration_ms) uv_timer_start(&sw->t_duration, sw_on_duration, sw->duration_ms, 0);
  if (sw->progress)
    uv_timer_start(&sw->t_progress, sw_on_progress, sw->progress_ms, sw->progress_ms);
  sw_rss_sample(sw);
  uv_timer_start(&sw->t_rss, sw_on_rss, sw->rss_ms, sw->rss_ms);
  if (sw->progress)
    sw_emit(json_pack("{s:s, s:i, s:f, s:i}", "event", "started", "agents", sw->n, "setup_ms",
                      sw_round1(sw->setup_ms), "rss_kb", (int)sw->rss_setup_kb));
  uv_timer_start(&sw->t_ramp, sw_on_ramp, 0, sw->ramp_ms ? 10 : 1);

  uv_run(sw->loop, UV_RUN_DEFAULT);

  int exit_code = json_is_true(json_object_get(sw->summary, "ok")) ? SW_EXIT_OK : SW_EXIT_FAIL;
  if (json_out && sw->summary &&
      json_dump_file(sw->summary, json_out, JSON_INDENT(1) | SW_JSON_FLAGS) != 0) {
    fprintf(stderr, "nirc-swarm: cannot write %s\n", json_out);
    exit_code = SW_EXIT_FAIL;
  }
  sw_emit(sw->summary);
  uv_loop_close(sw->loop);
  for (unsigned i = 0; i < sw->n; i++)
    SSL_CTX_free(sw->agents[i].tls);
  free(sw->agents);
  free(sw->connect_ms.v);
  free(sw->reconnect_ms.v);
  free(sw);
  return exit_code;
}
