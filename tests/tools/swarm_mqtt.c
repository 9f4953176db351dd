/* swarm_mqtt: `nirc-swarm mqtt` and `nirc-swarm mqtt-sub`, the alternative
 * bench/ingest.py measures NIRC's ingest against in the same run: the same
 * simulated agents (their certificates, their LoadReport figures, the same
 * Envelope bytes a NIRC link carries as a frame's payload) publish to an
 * MQTT broker, topic nirc/<site>/load, QoS 0; and one C consumer takes them
 * from the broker and decodes each, as nircd decodes what it receives.
 *
 * MQTT is spoken by libmosquitto (Debian's libmosquitto-dev), not by an
 * encoder of our own: it is the client the broker's authors ship, so the
 * broker sees what a real deployment would send, and it already does TLS
 * 1.3 with a client certificate. It is driven without its threads: one
 * uv_poll per client on one loop (mosquitto_loop_read/_write/_misc), as
 * `run` drives link.c, so one process on one core makes the load for
 * either side. What that costs the generator (libmosquitto writes a byte
 * to a wake-up socketpair per publish) is the generator's, never the
 * broker's, and the benchmark measures only the broker's CPU. */
#include "swarm.h"

#include "clock.h"
#include "log.h"
#include "scenario.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MQ_TOPIC_MAX   (SCENARIO_SLUG_MAX + 16)
#define MQ_KEEPALIVE_S 60
/* An Envelope with a LoadReport packs to about 100 bytes. */
#define MQ_PAYLOAD_MAX 1024

typedef struct mq mq_t;

typedef struct {
  mq_t *mq;
  sw_agent_t ag;       /* slug, random state, route: the figures `run` sends */
  struct mosquitto *m; /* owned */
  uv_poll_t poll;
  uv_timer_t report;
  int poll_events; /* what poll waits for now; 0 when stopped */
  bool connected, lost, handles;
  char topic[MQ_TOPIC_MAX];
} mq_client_t;

struct mq {
  uv_loop_t *loop;
  mq_client_t *c; /* owned, n entries */
  unsigned n;
  char host[NIRC_ADDR_STRLEN];
  int port;
  uint64_t interval_ms, duration_ms, progress_ms;
  bool progress, stopping;
  uv_timer_t t_duration, t_progress, t_misc;
  uv_signal_t sig_int, sig_term;
  uint64_t t0_ns;
  unsigned connected;
  uint64_t published, publish_errors, connect_failures, drops;
  double first_all_ms;
  char stop_reason[32];
};

static double mq_now(const mq_t *q) {
  return (double)(uv_hrtime() - q->t0_ns) / 1e6;
}

static void mq_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void mq_usage_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nirc-swarm: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nRun 'nirc-swarm --help' for usage.\n", stderr);
  va_end(ap);
  exit(SW_EXIT_USAGE);
}

static uint64_t mq_duration(const char *opt, const char *v) {
  uint64_t ms;
  if (nirc_parse_duration_ms(v, &ms) != 0)
    mq_usage_die("%s '%s' is not a duration (e.g. 500ms, 10s, 2m)", opt, v);
  return ms;
}

/* HOST:PORT, numeric or a name libmosquitto resolves (before the loop). */
static void mq_parse_broker(const char *v, char *host, size_t hostlen, int *port) {
  const char *colon = strrchr(v, ':');
  char *end;
  long p = colon ? strtol(colon + 1, &end, 10) : 0;
  if (!colon || colon == v || (size_t)(colon - v) >= hostlen || *end || p < 1 || p > 65535)
    mq_usage_die("--broker '%s' is not HOST:PORT", v);
  memcpy(host, v, (size_t)(colon - v));
  host[colon - v] = '\0';
  *port = (int)p;
}

/* TLS 1.3 with a client certificate, the broker's checked against ca (and
 * its name against the host), as a NIRC link is; MQTT 3.1.1. */
static int mq_tls(struct mosquitto *m, const char *ca, const char *cert, const char *key) {
  int rc = mosquitto_tls_set(m, ca, NULL, cert, key, NULL);
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_tls_opts_set(m, SSL_VERIFY_PEER, "tlsv1.3", NULL);
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  /* As link.c does on every NIRC link: each report leaves in its own
   * segment, so the broker gets the same wire pattern as nircd (with Nagle
   * the broker's delayed ACKs would batch a client's reports for it). */
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  return rc;
}

/* ---- the publishers ---- */

static void mq_lost(mq_client_t *c, int rc);
static void mq_on_poll(uv_poll_t *p, int status, int events);

/* Waits for what libmosquitto needs next: always a read, a write while it
 * holds unsent bytes. */
static void mq_update_poll(mq_client_t *c) {
  if (c->lost || c->mq->stopping) return;
  int ev = UV_READABLE | (mosquitto_want_write(c->m) ? UV_WRITABLE : 0);
  if (ev != c->poll_events) {
    c->poll_events = ev;
    uv_poll_start(&c->poll, ev, mq_on_poll);
  }
}

static void mq_on_poll(uv_poll_t *p, int status, int events) {
  mq_client_t *c = p->data;
  if (c->lost || c->mq->stopping) return;
  int rc = status < 0 ? MOSQ_ERR_CONN_LOST : MOSQ_ERR_SUCCESS;
  if (rc == MOSQ_ERR_SUCCESS && (events & UV_READABLE)) rc = mosquitto_loop_read(c->m, 1);
  if (rc == MOSQ_ERR_SUCCESS && (events & UV_WRITABLE)) rc = mosquitto_loop_write(c->m, 1);
  if (rc != MOSQ_ERR_SUCCESS)
    mq_lost(c, rc);
  else
    mq_update_poll(c);
}

static void mq_on_report(uv_timer_t *t) {
  mq_client_t *c = t->data;
  mq_t *q = c->mq;
  if (!c->connected || c->lost) return;
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  sw_fill_report(&c->ag, &r);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  uint8_t buf[MQ_PAYLOAD_MAX];
  size_t len = nirc__envelope__get_packed_size(&env);
  if (len > sizeof buf) {
    q->publish_errors++;
    return;
  }
  nirc__envelope__pack(&env, buf);
  int rc = mosquitto_publish(c->m, NULL, c->topic, (int)len, buf, 0, false);
  if (rc == MOSQ_ERR_SUCCESS) {
    q->published++;
    mq_update_poll(c);
  } else if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
    mq_lost(c, rc);
  } else {
    q->publish_errors++;
  }
}

static void mq_on_connect(struct mosquitto *m, void *obj, int rc) {
  mq_client_t *c = obj;
  mq_t *q = c->mq;
  if (rc != 0) {
    log_warn(LOG_AGENT, c->ag.slug, "broker refused: %s", mosquitto_connack_string(rc));
    q->connect_failures++;
    c->lost = true;
    return;
  }
  c->connected = true;
  q->connected++;
  uv_timer_start(&c->report, mq_on_report, q->interval_ms, q->interval_ms);
  if (q->connected == q->n && q->first_all_ms < 0) {
    q->first_all_ms = mq_now(q);
    if (q->progress)
      sw_emit(json_pack("{s:s, s:f, s:i, s:s}", "event", "all_connected", "t_ms",
                        sw_round1(q->first_all_ms), "connected", q->n, "after", "start"));
  }
}

/* A benchmark does not reconnect: a lost client is counted and stays
 * down, and the summary says so (ok is false). */
static void mq_lost(mq_client_t *c, int rc) {
  mq_t *q = c->mq;
  if (c->lost) return;
  c->lost = true;
  log_warn(LOG_AGENT, c->ag.slug, "connection to the broker lost: %s", mosquitto_strerror(rc));
  if (c->connected) {
    c->connected = false;
    q->connected--;
    q->drops++;
  } else {
    q->connect_failures++;
  }
  uv_timer_stop(&c->report);
  uv_poll_stop(&c->poll);
  c->poll_events = 0;
}

static void mq_on_misc(uv_timer_t *t) {
  mq_t *q = t->data;
  for (unsigned i = 0; i < q->n; i++) {
    mq_client_t *c = &q->c[i];
    if (c->lost) continue;
    int rc = mosquitto_loop_misc(c->m);
    if (rc != MOSQ_ERR_SUCCESS)
      mq_lost(c, rc);
    else
      mq_update_poll(c);
  }
}

static void mq_on_progress(uv_timer_t *t) {
  mq_t *q = t->data;
  sw_emit(json_pack("{s:s, s:f, s:i, s:i, s:I, s:I, s:I}", "event", "progress", "t_ms",
                    sw_round1(mq_now(q)), "connected", q->connected, "agents", q->n, "reports_sent",
                    (json_int_t)q->published, "publish_errors", (json_int_t)q->publish_errors,
                    "drops", (json_int_t)q->drops));
}

static void mq_stop(mq_t *q, const char *why) {
  if (q->stopping) return;
  nirc_strlcpy(q->stop_reason, why, sizeof q->stop_reason);
  for (unsigned i = 0; i < q->n; i++) {
    mq_client_t *c = &q->c[i];
    if (c->connected) mosquitto_disconnect(c->m);
    if (c->handles) {
      uv_close((uv_handle_t *)&c->poll, NULL);
      uv_close((uv_handle_t *)&c->report, NULL);
    }
  }
  q->stopping = true;
  uv_close((uv_handle_t *)&q->t_duration, NULL);
  uv_close((uv_handle_t *)&q->t_progress, NULL);
  uv_close((uv_handle_t *)&q->t_misc, NULL);
  uv_close((uv_handle_t *)&q->sig_int, NULL);
  uv_close((uv_handle_t *)&q->sig_term, NULL);
}

static void mq_on_duration(uv_timer_t *t) {
  mq_stop(t->data, "duration");
}

static void mq_on_signal(uv_signal_t *s, int signum) {
  mq_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Connects every client before the loop runs: libmosquitto's connect
 * blocks for TCP and TLS, which on a local broker is a few milliseconds
 * each; then the socket goes non-blocking under the loop. */
static int mq_connect_all(mq_t *q, const char *ca, const char *dir) {
  for (unsigned i = 0; i < q->n; i++) {
    mq_client_t *c = &q->c[i];
    char cert[PATH_MAX], key[PATH_MAX];
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, c->ag.slug);
    snprintf(key, sizeof key, "%s/%s.key", dir, c->ag.slug);
    snprintf(c->topic, sizeof c->topic, "nirc/%s/load", c->ag.slug);
    c->m = mosquitto_new(c->ag.slug, true, c);
    if (!c->m) return MOSQ_ERR_NOMEM;
    int rc = mq_tls(c->m, ca, cert, key);
    if (rc != MOSQ_ERR_SUCCESS) {
      fprintf(stderr, "nirc-swarm: %s: TLS set-up: %s\n", c->ag.slug, mosquitto_strerror(rc));
      return rc;
    }
    mosquitto_connect_callback_set(c->m, mq_on_connect);
    rc = mosquitto_connect(c->m, q->host, q->port, MQ_KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS) {
      fprintf(stderr, "nirc-swarm: %s: cannot connect to %s:%d: %s\n", c->ag.slug, q->host, q->port,
              rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
      return rc;
    }
    int fd = mosquitto_socket(c->m);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uv_poll_init_socket(q->loop, &c->poll, fd);
    uv_timer_init(q->loop, &c->report);
    c->poll.data = c->report.data = c;
    c->handles = true;
    mq_update_poll(c);
  }
  return 0;
}

int sw_mqtt_main(int argc, char **argv) {
  const char *broker = NULL, *ca = NULL, *dir = NULL;
  unsigned long count = 0;
  mq_t *q = calloc(1, sizeof *q);
  if (!q) return SW_EXIT_FAIL;
  q->interval_ms = 1000;
  q->duration_ms = 60000;
  q->progress_ms = 1000;
  q->first_all_ms = -1;
  enum { O_BROKER = 256, O_CA, O_DIR, O_COUNT, O_LOAD, O_DURATION, O_PROGRESS, O_PROGRESS_IV };
  static const struct option opts[] = {
      {"broker", required_argument, NULL, O_BROKER},
      {"ca", required_argument, NULL, O_CA},
      {"dir", required_argument, NULL, O_DIR},
      {"count", required_argument, NULL, O_COUNT},
      {"load-interval", required_argument, NULL, O_LOAD},
      {"duration", required_argument, NULL, O_DURATION},
      {"progress", no_argument, NULL, O_PROGRESS},
      {"progress-interval", required_argument, NULL, O_PROGRESS_IV},
      {NULL, 0, NULL, 0},
  };
  int ch;
  char *end;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case O_BROKER: broker = optarg; break;
    case O_CA: ca = optarg; break;
    case O_DIR: dir = optarg; break;
    case O_COUNT:
      count = strtoul(optarg, &end, 10);
      if (*end || count < 1 || count > 99999) mq_usage_die("--count must be from 1 to 99999");
      break;
    case O_LOAD: q->interval_ms = mq_duration("--load-interval", optarg); break;
    case O_DURATION: q->duration_ms = mq_duration("--duration", optarg); break;
    case O_PROGRESS: q->progress = true; break;
    case O_PROGRESS_IV: q->progress_ms = mq_duration("--progress-interval", optarg); break;
    default: mq_usage_die("mqtt: unknown option");
    }
  }
  if (optind < argc) mq_usage_die("mqtt: unexpected argument '%s'", argv[optind]);
  if (!broker || !ca || !dir) mq_usage_die("mqtt needs --broker, --ca and --dir");
  if (q->interval_ms < 1 || q->interval_ms > 60000 || q->progress_ms < 10)
    mq_usage_die("--load-interval must be from 1ms to 60s and --progress-interval at least 10ms");
  mq_parse_broker(broker, q->host, sizeof q->host, &q->port);

  char path[PATH_MAX], err[512];
  snprintf(path, sizeof path, "%s/scenario.json", dir);
  scenario_t sc;
  if (scenario_load(path, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-swarm: %s (make DIR with `nirc-swarm gen-pki`)\n", err);
    return SW_EXIT_FAIL;
  }
  if (count == 0) count = sc.count;
  if (count > sc.count) {
    fprintf(stderr, "nirc-swarm: --count %lu but %s lists only %zu sites\n", count, path, sc.count);
    return SW_EXIT_USAGE;
  }
  /* Each client holds its socket and libmosquitto's wake-up socketpair. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t need = 3 * (rlim_t)count + 64;
    if (rl.rlim_cur < need) {
      rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();
  q->n = (unsigned)count;
  q->c = calloc(q->n, sizeof *q->c);
  q->loop = uv_default_loop();
  if (!q->c) return SW_EXIT_FAIL;
  uint64_t seed = (uint64_t)clock_real_ms() ^ ((uint64_t)getpid() << 32);
  for (unsigned i = 0; i < q->n; i++) {
    mq_client_t *c = &q->c[i];
    c->mq = q;
    nirc_strlcpy(c->ag.slug, sc.sites[i].slug, sizeof c->ag.slug);
    c->ag.rng = (seed + 0x9E3779B97F4A7C15ULL * (i + 1)) | 1;
    c->ag.interval_ms = (uint32_t)q->interval_ms;
    route_home(&c->ag.applied, c->ag.slug);
  }
  scenario_free(&sc);
  q->t0_ns = uv_hrtime();
  int rc = mq_connect_all(q, ca, dir);
  uv_timer_init(q->loop, &q->t_duration);
  uv_timer_init(q->loop, &q->t_progress);
  uv_timer_init(q->loop, &q->t_misc);
  q->t_duration.data = q->t_progress.data = q->t_misc.data = q;
  uv_signal_init(q->loop, &q->sig_int);
  uv_signal_init(q->loop, &q->sig_term);
  q->sig_int.data = q->sig_term.data = q;
  if (rc == 0) {
    uv_signal_start(&q->sig_int, mq_on_signal, SIGINT);
    uv_signal_start(&q->sig_term, mq_on_signal, SIGTERM);
    if (q->duration_ms) uv_timer_start(&q->t_duration, mq_on_duration, q->duration_ms, 0);
    if (q->progress) uv_timer_start(&q->t_progress, mq_on_progress, q->progress_ms, q->progress_ms);
    /* Keep-alive pings and libmosquitto's own timeouts. */
    uv_timer_start(&q->t_misc, mq_on_misc, 1000, 1000);
  } else {
    mq_stop(q, "connect failed");
  }
  uv_run(q->loop, UV_RUN_DEFAULT);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  bool ok = rc == 0 && q->connected == q->n && q->drops == 0 && q->publish_errors == 0;
  sw_emit(json_pack(
      "{s:s, s:s, s:s, s:b, s:i, s:i, s:b, s:o, s:I, s:I, s:I, s:I, s:f, s:{s:f, s:f}}", "event",
      "summary", "mode", "mqtt", "stopped_by", q->stop_reason, "ok", ok, "agents", q->n,
      "connected", q->connected, "all_connected", q->connected == q->n, "first_all_connected_ms",
      q->first_all_ms >= 0 ? json_real(sw_round1(q->first_all_ms)) : json_null(), "reports_sent",
      (json_int_t)q->published, "publish_errors", (json_int_t)q->publish_errors, "drops",
      (json_int_t)q->drops, "connect_failures", (json_int_t)q->connect_failures, "duration_ms",
      sw_round1(mq_now(q)), "cpu_s", "user",
      (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6, "sys",
      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6));
  uv_loop_close(q->loop);
  for (unsigned i = 0; i < q->n; i++)
    if (q->c[i].m) mosquitto_destroy(q->c[i].m);
  mosquitto_lib_cleanup();
  free(q->c);
  free(q);
  return ok ? SW_EXIT_OK : SW_EXIT_FAIL;
}

/* ---- the consumer ---- */

typedef struct {
  uint64_t received, decoded, malformed;
  uint64_t t0_ms, last_progress_ms, progress_ms;
  bool subscribed;
} mq_sub_t;

static volatile sig_atomic_t mq_sub_stop;

static void mq_sub_on_signal(int signum) {
  mq_sub_stop = signum;
}

static void mq_sub_progress(const mq_sub_t *s, const char *event) {
  sw_emit(json_pack("{s:s, s:s, s:f, s:b, s:I, s:I, s:I}", "event", event, "mode", "mqtt-sub",
                    "t_ms", (double)(clock_mono_ms() - s->t0_ms), "subscribed", s->subscribed,
                    "received", (json_int_t)s->received, "decoded", (json_int_t)s->decoded,
                    "malformed", (json_int_t)s->malformed));
}

static void mq_sub_on_connect(struct mosquitto *m, void *obj, int rc) {
  if (rc != 0) {
    fprintf(stderr, "nirc-swarm: broker refused the consumer: %s\n", mosquitto_connack_string(rc));
    return;
  }
  mosquitto_subscribe(m, NULL, "nirc/+/load", 0);
}

static void mq_sub_on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count,
                                const int *granted) {
  mq_sub_t *s = obj;
  s->subscribed = true;
  mq_sub_progress(s, "subscribed");
}

/* Decodes each report as nircd does (the whole Envelope, unpacked with
 * protobuf-c), so "broker + consumer" is the cost of getting the same
 * figures into a program's memory. */
static void mq_sub_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
  mq_sub_t *s = obj;
  s->received++;
  Nirc__Envelope *env = nirc__envelope__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
  if (env && env->msg_case == NIRC__ENVELOPE__MSG_LOAD_REPORT)
    s->decoded++;
  else
    s->malformed++;
  if (env) nirc__envelope__free_unpacked(env, NULL);
}

int sw_mqtt_sub_main(int argc, char **argv) {
  const char *broker = NULL, *ca = NULL, *cert = NULL, *key = NULL;
  uint64_t duration_ms = 0;
  mq_sub_t s = {.progress_ms = 1000};
  enum { O_BROKER = 256, O_CA, O_CERT, O_KEY, O_DURATION, O_PROGRESS_IV };
  static const struct option opts[] = {
      {"broker", required_argument, NULL, O_BROKER},
      {"ca", required_argument, NULL, O_CA},
      {"cert", required_argument, NULL, O_CERT},
      {"key", required_argument, NULL, O_KEY},
      {"duration", required_argument, NULL, O_DURATION},
      {"progress-interval", required_argument, NULL, O_PROGRESS_IV},
      {NULL, 0, NULL, 0},
  };
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case O_BROKER: broker = optarg; break;
    case O_CA: ca = optarg; break;
    case O_CERT: cert = optarg; break;
    case O_KEY: key = optarg; break;
    case O_DURATION: duration_ms = mq_duration("--duration", optarg); break;
    case O_PROGRESS_IV: s.progress_ms = mq_duration("--progress-interval", optarg); break;
    default: mq_usage_die("mqtt-sub: unknown option");
    }
  }
  if (optind < argc) mq_usage_die("mqtt-sub: unexpected argument '%s'", argv[optind]);
  if (!broker || !ca || !cert || !key)
    mq_usage_die("mqtt-sub needs --broker, --ca, --cert and --key");
  char host[NIRC_ADDR_STRLEN];
  int port;
  mq_parse_broker(broker, host, sizeof host, &port);
  signal(SIGINT, mq_sub_on_signal);
  signal(SIGTERM, mq_sub_on_signal);
  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();
  struct mosquitto *m = mosquitto_new("nirc-ingest-consumer", true, &s);
  if (!m) return SW_EXIT_FAIL;
  int rc = mq_tls(m, ca, cert, key);
  mosquitto_connect_callback_set(m, mq_sub_on_connect);
  mosquitto_subscribe_callback_set(m, mq_sub_on_subscribe);
  mosquitto_message_callback_set(m, mq_sub_on_message);
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_connect(m, host, port, MQ_KEEPALIVE_S);
  if (rc != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "nirc-swarm: consumer cannot connect to %s: %s\n", broker,
            rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return SW_EXIT_FAIL;
  }
  s.t0_ms = s.last_progress_ms = clock_mono_ms();
  /* One client: libmosquitto's own select loop is enough; its timeout
   * bounds how late a signal or a progress line can be. */
  while (!mq_sub_stop) {
    rc = mosquitto_loop(m, 100, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      fprintf(stderr, "nirc-swarm: consumer lost the broker: %s\n", mosquitto_strerror(rc));
      break;
    }
    uint64_t now = clock_mono_ms();
    if (now - s.last_progress_ms >= s.progress_ms) {
      s.last_progress_ms = now;
      mq_sub_progress(&s, "progress");
    }
    if (duration_ms && now - s.t0_ms >= duration_ms) break;
  }
  mq_sub_progress(&s, "summary");
  mosquitto_disconnect(m);
  mosquitto_destroy(m);
  mosquitto_lib_cleanup();
  return rc == MOSQ_ERR_SUCCESS && s.malformed == 0 ? SW_EXIT_OK : SW_EXIT_FAIL;
}
