/* nirc-swarm: many simulated site agents in one process, for the load,
 * failover and soak tests of the controller (issue 6).
 *
 *   nirc-swarm gen-pki --ca-cert CA.crt --ca-key CA.key --count N
 *                      [--prefix swarm] --out DIR
 *   nirc-swarm run --controllers HOST:PORT[,HOST:PORT...] --ca CA.crt --dir DIR
 *                  [--count N] [--duration 60s] [--json-out FILE] [--progress] ...
 *
 * gen-pki issues N site certificates (CN "site:<prefix>-00001", URI SAN
 * "nirc:site:<prefix>-00001", ECDSA P-256, the extensions deploy/pki.sh
 * gives a site) with the OpenSSL API in this process, because forking
 * openssl three times per certificate makes 1,000 identities take minutes;
 * and it writes DIR/scenario.json naming those sites, for
 * `nircd import-sites`.
 *
 * run drives one simulated agent per certificate on one libuv loop, through
 * common/link.c and common/tls.c exactly as nirc-agent does: its own
 * certificate (identity comes only from the certificate), TLS 1.3, Hello
 * with the route it applies, a LoadReport every interval, Ping and idle
 * handling (inside link.c), an acknowledgement for every Directive after the
 * checks site-agent/agent.c makes (own site, valid route, shares sum to
 * 1000, newer (epoch, version), older epochs fenced off), NOT_LEADER
 * redirects, and reconnection with common/backoff.c (full jitter) across the
 * controller list. There is no PBX behind a simulated agent: a route applies
 * instantly, load figures are small random numbers, and revert_at is not
 * acted on.
 *
 * One process and one thread face the controller's one loop, so one core
 * of load meets one core of controller, and memory is measured in one
 * place (/proc/self/statm).
 *
 * Output is JSON on stdout: with --progress one line per interval
 * ({"event": "progress"}) and one when every agent holds a Welcome
 * ({"event": "all_connected"}); always a summary object at the end
 * ({"event": "summary"}), also written to --json-out. Exit 0 when every
 * agent ended connected and no protocol error happened, 1 otherwise, 2 on
 * usage errors. Diagnostics go to stderr.
 *
 * This file is the command line. The work is done in swarm_pki.c (gen-pki)
 * and, for run, swarm_run.c (set-up, timers, the loop), swarm_agent.c (one
 * simulated agent and its link) and swarm_report.c (counters and the JSON
 * out); swarm.h holds what they share. */
#include "swarm.h"

#include "err.h"
#include "log.h"
#include "scenario.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("nirc-swarm: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nRun 'nirc-swarm --help' for usage.\n", stderr);
  va_end(ap);
  exit(SW_EXIT_USAGE);
}

static void usage(FILE *f) {
  fprintf(f, "usage: nirc-swarm gen-pki --ca-cert CA.crt --ca-key CA.key --count N [--prefix P] "
             "--out DIR\n"
             "       nirc-swarm run --controllers HOST:PORT[,HOST:PORT...] --ca CA.crt --dir DIR\n"
             "                      [options]\n"
             "\n"
             "gen-pki: issues N site certificates DIR/P-00001.{crt,key} ... (CN site:P-00001, the\n"
             "shape deploy/pki.sh gives a site) signed by the CA, and DIR/scenario.json listing\n"
             "those sites for `nircd import-sites`. P defaults to 'swarm'; N >= 2.\n"
             "\n"
             "run: one simulated site agent per certificate of DIR/scenario.json, on one loop.\n"
             "  --count N              first N sites of the scenario (default: all)\n"
             "  --first K              skip the scenario's first K sites (several swarm\n"
             "                         processes share one scenario, each within its own\n"
             "                         open-file limit; default 0)\n"
             "  --report-interval D    load report period until a Welcome sets one (default 1s)\n"
             "  --duration D           stop after D; 0 runs until SIGINT/SIGTERM (default 60s)\n"
             "  --json-out FILE        also write the summary object to FILE\n"
             "  --progress             a JSON line on stdout every --progress-interval\n"
             "  --progress-interval D  default 1s\n"
             "  --rss-interval D       RSS sample period (default 10s)\n"
             "  --ramp D               spread the first connections over D (default 0: as fast as\n"
             "                         the swarm makes their ClientHellos, 64 a loop turn)\n"
             "  --backoff-min D        smallest reconnect delay (default 500ms, as nirc-agent)\n"
             "  --backoff-max D        largest reconnect delay (default 30s, as nirc-agent)\n"
             "  --connect-timeout D    TCP connect + TLS handshake (default 5s)\n"
             "  --idle-timeout D       a link silent this long is dead (default 5s)\n"
             "  --log-level L          error|warn|info|debug on stderr (default warn)\n"
             "  --load-interval D      report every D whatever the controller asks (load\n"
             "                         generator for bench/ingest.py; e.g. 10ms)\n"
             "\n"
             "mqtt: the same agents publish the same LoadReport envelopes to an MQTT broker\n"
             "(nirc/<site>/load, QoS 0, MQTT 3.1.1 over TLS 1.3 with each site's certificate);\n"
             "mqtt-sub: one C consumer that subscribes to nirc/+/load and decodes every report.\n"
             "  nirc-swarm mqtt --broker HOST:PORT --ca CA.crt --dir DIR [--count N]\n"
             "                  [--load-interval D] [--duration D] [--progress]\n"
             "  nirc-swarm mqtt-sub --broker HOST:PORT --ca CA.crt --cert C.crt --key C.key\n"
             "                      [--duration D]\n"
             "\n"
             "Durations: 500ms, 10s, 2m. Exit: 0 every agent ended connected and no protocol\n"
             "error, 1 otherwise, 2 usage.\n"
             "\n"
             "Examples:\n"
             "  nirc-swarm gen-pki --ca-cert pki/ca.crt --ca-key pki/ca.key --count 1000 --out sw\n"
             "  nircd -c nircd.conf import-sites sw/scenario.json\n"
             "  nirc-swarm run --controllers 127.0.0.1:7443 --ca pki/ca.crt --dir sw --progress\n");
}

static uint64_t parse_duration_opt(const char *opt, const char *v) {
  uint64_t ms;
  if (nirc_parse_duration_ms(v, &ms) != 0)
    die_usage("%s '%s' is not a duration (e.g. 500ms, 10s, 2m)", opt, v);
  return ms;
}

static unsigned long parse_count_opt(const char *opt, const char *v, unsigned long lo,
                                     unsigned long hi) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno || end == v || *end || n < lo || n > hi)
    die_usage("%s '%s' must be a whole number from %lu to %lu", opt, v, lo, hi);
  return n;
}

static int cmd_gen_pki(int argc, char **argv) {
  const char *ca_cert = NULL, *ca_key = NULL, *out = NULL, *prefix = "swarm";
  unsigned long count = 0;
  static const struct option opts[] = {
      {"ca-cert", required_argument, NULL, 'c'},
      {"ca-key", required_argument, NULL, 'k'},
      {"count", required_argument, NULL, 'n'},
      {"prefix", required_argument, NULL, 'p'},
      {"out", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int ch;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case 'c': ca_cert = optarg; break;
    case 'k': ca_key = optarg; break;
    case 'n': count = parse_count_opt("--count", optarg, 2, 99999); break;
    case 'p': prefix = optarg; break;
    case 'o': out = optarg; break;
    case 'h': usage(stdout); return SW_EXIT_OK;
    default: die_usage("gen-pki: unknown option");
    }
  }
  if (optind < argc) die_usage("gen-pki: unexpected argument '%s'", argv[optind]);
  if (!ca_cert || !ca_key || !out || !count)
    die_usage("gen-pki needs --ca-cert, --ca-key, --count (at least 2: the scenario needs a "
              "primary and a backup hub) and --out");
  char probe[SCENARIO_SLUG_MAX + 8];
  snprintf(probe, sizeof probe, "%s-%0*lu", prefix, PKI_NUM_WIDTH, count);
  if (strlen(prefix) + 1 + PKI_NUM_WIDTH >= SCENARIO_SLUG_MAX || !nirc_slug_valid(probe))
    die_usage("--prefix '%s' does not make valid site slugs ([a-z][a-z0-9-]*, at most %d "
              "characters with the '-%0*u' suffix)",
              prefix, SCENARIO_SLUG_MAX - 1, PKI_NUM_WIDTH, 1u);

  return sw_gen_pki(ca_cert, ca_key, out, prefix, count);
}

static int cmd_run(int argc, char **argv) {
  const char *controllers = NULL, *ca = NULL, *dir = NULL, *json_out = NULL;
  const char *log_level = "warn";
  unsigned long count = 0;
  swarm_t *sw = calloc(1, sizeof *sw);
  if (!sw) return SW_EXIT_FAIL;
  sw->report_interval_ms = 1000;
  sw->duration_ms = 60000;
  sw->progress_ms = 1000;
  sw->rss_ms = 10000;
  sw->backoff_min_ms = 500;
  sw->backoff_max_ms = 30000;
  sw->connect_timeout_ms = 5000;
  sw->idle_timeout_ms = 5000;
  sw->first_all_ms = -1;
  enum {
    O_CTL = 256,
    O_CA,
    O_DIR,
    O_COUNT,
    O_REPORT,
    O_DURATION,
    O_JSON,
    O_PROGRESS,
    O_PROGRESS_IV,
    O_RSS,
    O_RAMP,
    O_BMIN,
    O_BMAX,
    O_CONNECT,
    O_IDLE,
    O_LOG,
    O_LOAD,
    O_FIRST,
  };
  static const struct option opts[] = {
      {"controllers", required_argument, NULL, O_CTL},
      {"ca", required_argument, NULL, O_CA},
      {"dir", required_argument, NULL, O_DIR},
      {"count", required_argument, NULL, O_COUNT},
      {"report-interval", required_argument, NULL, O_REPORT},
      {"duration", required_argument, NULL, O_DURATION},
      {"json-out", required_argument, NULL, O_JSON},
      {"progress", no_argument, NULL, O_PROGRESS},
      {"progress-interval", required_argument, NULL, O_PROGRESS_IV},
      {"rss-interval", required_argument, NULL, O_RSS},
      {"ramp", required_argument, NULL, O_RAMP},
      {"backoff-min", required_argument, NULL, O_BMIN},
      {"backoff-max", required_argument, NULL, O_BMAX},
      {"connect-timeout", required_argument, NULL, O_CONNECT},
      {"idle-timeout", required_argument, NULL, O_IDLE},
      {"log-level", required_argument, NULL, O_LOG},
      {"load-interval", required_argument, NULL, O_LOAD},
      {"first", required_argument, NULL, O_FIRST},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int ch;
  while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
    case O_CTL: controllers = optarg; break;
    case O_CA: ca = optarg; break;
    case O_DIR: dir = optarg; break;
    case O_COUNT: count = parse_count_opt("--count", optarg, 1, 1000000); break;
    case O_REPORT: sw->report_interval_ms = parse_duration_opt("--report-interval", optarg); break;
    case O_DURATION: sw->duration_ms = parse_duration_opt("--duration", optarg); break;
    case O_JSON: json_out = optarg; break;
    case O_PROGRESS: sw->progress = true; break;
    case O_PROGRESS_IV: sw->progress_ms = parse_duration_opt("--progress-interval", optarg); break;
    case O_RSS: sw->rss_ms = parse_duration_opt("--rss-interval", optarg); break;
    case O_RAMP: sw->ramp_ms = parse_duration_opt("--ramp", optarg); break;
    case O_BMIN: sw->backoff_min_ms = parse_duration_opt("--backoff-min", optarg); break;
    case O_BMAX: sw->backoff_max_ms = parse_duration_opt("--backoff-max", optarg); break;
    case O_CONNECT: sw->connect_timeout_ms = parse_duration_opt("--connect-timeout", optarg); break;
    case O_IDLE: sw->idle_timeout_ms = parse_duration_opt("--idle-timeout", optarg); break;
    case O_LOG: log_level = optarg; break;
    case O_LOAD: sw->load_interval_ms = parse_duration_opt("--load-interval", optarg); break;
    case O_FIRST: sw->first = (unsigned)parse_count_opt("--first", optarg, 0, 1000000); break;
    case 'h':
      usage(stdout);
      free(sw);
      return SW_EXIT_OK;
    default: die_usage("run: unknown option");
    }
  }
  if (optind < argc) die_usage("run: unexpected argument '%s'", argv[optind]);
  if (!controllers || !ca || !dir) die_usage("run needs --controllers, --ca and --dir");
  if (sw->report_interval_ms < 100 || sw->report_interval_ms > 60000)
    die_usage("--report-interval must be from 100ms to 60s");
  if (sw->load_interval_ms > 60000) die_usage("--load-interval must be from 1ms to 60s");
  if (sw->progress_ms < 10 || sw->rss_ms < 10)
    die_usage("--progress-interval and --rss-interval must be at least 10ms");
  if (sw->backoff_min_ms < 1 || sw->backoff_max_ms < sw->backoff_min_ms ||
      sw->backoff_max_ms > 3600000)
    die_usage("--backoff-min must be at least 1ms and --backoff-max from it to 1h");
  if (sw->connect_timeout_ms < 100 || sw->connect_timeout_ms > 120000 ||
      sw->idle_timeout_ms < 500 || sw->idle_timeout_ms > 600000)
    die_usage("--connect-timeout must be 100ms..2m and --idle-timeout 500ms..10m");
  log_level_t lvl;
  if (log_parse_level(log_level, &lvl) != 0)
    die_usage("--log-level '%s' is not error, warn, info or debug", log_level);
  log_set_level(lvl);

  /* Controller addresses, resolved now: never on the loop. */
  char list[4096], err[512];
  if (nirc_strlcpy(list, controllers, sizeof list) >= sizeof list)
    die_usage("--controllers is too long");
  char *save = NULL;
  for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ')
      t++;
    if (!*t) continue;
    if (sw->naddrs == CONFIG_LIST_MAX) die_usage("at most %d controllers", CONFIG_LIST_MAX);
    if (nirc_parse_addr(t, &sw->addrs[sw->naddrs], err, sizeof err) != 0)
      die_usage("--controllers: %s", err);
    nirc_strlcpy(sw->addr_str[sw->naddrs], t, sizeof sw->addr_str[0]);
    sw->naddrs++;
  }
  if (!sw->naddrs) die_usage("--controllers names no address");

  return sw_run(sw, ca, dir, count, json_out);
}

int main(int argc, char **argv) {
  log_set_program("nirc-swarm");
  if (argc < 2) die_usage("missing command (gen-pki, run, mqtt or mqtt-sub)");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
    usage(stdout);
    return SW_EXIT_OK;
  }
  /* getopt sees the sub-command's arguments only. */
  if (!strcmp(cmd, "gen-pki")) return cmd_gen_pki(argc - 1, argv + 1);
  if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "mqtt")) return sw_mqtt_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "mqtt-sub")) return sw_mqtt_sub_main(argc - 1, argv + 1);
  die_usage("unknown command '%s' (gen-pki, run, mqtt or mqtt-sub)", cmd);
}
