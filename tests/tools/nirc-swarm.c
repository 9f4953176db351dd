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
 * usage errors. Diagnostics go to stderr. */
#include "backoff.h"
#include "clock.h"
#include "config.h"
#include "err.h"
#include "frame.h"
#include "link.h"
#include "log.h"
#include "route.h"
#include "scenario.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NIRC_PROTOCOL_VERSION 1
#define SW_EXIT_OK            0
#define SW_EXIT_FAIL          1
#define SW_EXIT_USAGE         2

/* deploy/pki.sh issues leaves for this long (the CA/Browser Forum ceiling). */
#define PKI_LEAF_DAYS 825
/* Slug numbers are zero-padded to this width, so files sort in order. */
#define PKI_NUM_WIDTH 5
/* File descriptors the process needs besides one per link: stdio, the
 * loop's epoll and signal pipe, files opened while running. */
#define SW_FD_SPARE 64
/* A redirect (NOT_LEADER with a hint) is followed at once this many times
 * in a row; after that the agent backs off as after any failure, so two
 * standbys naming each other cannot make it spin. */
#define SW_MAX_REDIRECTS 2
/* Latency samples kept per distribution (8 MiB of doubles); more are
 * counted but not kept. */
#define SW_SAMPLES_MAX (1u << 20)
/* RSS samples kept: a day at the default 10 s interval. */
#define SW_RSS_MAX 8640
/* Distinct reasons tallied per counter; the rest are counted as "other". */
#define SW_TALLY_MAX 32
/* Milliseconds with one decimal print as such, not as 947.60000000000002. */
#define SW_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(12))
/* Recoveries (all agents back after a drop) listed in the summary. */
#define SW_RECOVERIES_MAX 64

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
             "  --report-interval D    load report period until a Welcome sets one (default 1s)\n"
             "  --duration D           stop after D; 0 runs until SIGINT/SIGTERM (default 60s)\n"
             "  --json-out FILE        also write the summary object to FILE\n"
             "  --progress             a JSON line on stdout every --progress-interval\n"
             "  --progress-interval D  default 1s\n"
             "  --rss-interval D       RSS sample period (default 10s)\n"
             "  --ramp D               spread the first connections over D (default 0: at once)\n"
             "  --backoff-min D        smallest reconnect delay (default 500ms, as nirc-agent)\n"
             "  --backoff-max D        largest reconnect delay (default 30s, as nirc-agent)\n"
             "  --connect-timeout D    TCP connect + TLS handshake (default 5s)\n"
             "  --idle-timeout D       a link silent this long is dead (default 5s)\n"
             "  --log-level L          error|warn|info|debug on stderr (default warn)\n"
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

/* splitmix64: turns a counter into well-spread seeds, so agents created in
 * the same nanosecond still draw independent jitter. */
static uint64_t sw_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* ======================================================================
 * gen-pki
 * ====================================================================== */

/* Writes `path` through a temporary file and a rename, created with `mode`
 * from the start, so a key is never readable by others and an interrupted
 * run leaves no half-written file under the final name. */
static int pki_write(const char *path, mode_t mode, int (*writer)(FILE *, void *), void *arg,
                     char *err, size_t errlen) {
  char tmp[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
    snprintf(err, errlen, "%s: path too long", path);
    return NIRC_EINVAL;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0 || fchmod(fd, mode) != 0) {
    snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    if (fd >= 0) close(fd);
    return NIRC_EIO;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    return NIRC_EIO;
  }
  int ok = writer(f, arg);
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    snprintf(err, errlen, "%s: cannot write: %s", path, ok ? strerror(errno) : "OpenSSL failed");
    unlink(tmp);
    return NIRC_EIO;
  }
  return 0;
}

static int pki_write_key(FILE *f, void *key) {
  /* PKCS#8 ("BEGIN PRIVATE KEY"), as `openssl genpkey` writes for pki.sh. */
  return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
}

static int pki_write_cert(FILE *f, void *cert) {
  return PEM_write_X509(f, cert) == 1;
}

/* Adds one extension written in openssl.cnf syntax, as pki.sh's [leaf]. */
static bool pki_add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/* Issues the site certificate for `slug`: what deploy/pki.sh's issue()
 * makes for "site-<slug>" (subject CN only, UTF8String; random 159-bit
 * serial as `openssl ca` rand_serial; valid from now for PKI_LEAF_DAYS;
 * basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
 * extendedKeyUsage clientAuth, SAN URI:nirc:site:<slug>, SKID hash, AKID
 * keyid; ecdsa-with-SHA256). NULL on an OpenSSL failure. */
static X509 *pki_issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, const char *slug) {
  X509 *x = X509_new();
  BIGNUM *serial = BN_new();
  bool ok = x && serial && X509_set_version(x, X509_VERSION_3) == 1 &&
            BN_rand(serial, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
            BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
            X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
            X509_time_adj_ex(X509_getm_notAfter(x), PKI_LEAF_DAYS, 0, NULL) != NULL &&
            X509_set_pubkey(x, key) == 1;
  BN_free(serial);
  char cn[64], san[80];
  snprintf(cn, sizeof cn, "site:%s", slug);
  snprintf(san, sizeof san, "URI:nirc:site:%s", slug);
  if (ok)
    ok = X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) == 1;
  if (ok) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    /* Same order as pki.sh's [leaf] section, so the two are byte-alike
     * apart from keys, serials, dates and signatures. */
    ok = pki_add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") &&
         pki_add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") &&
         pki_add_ext(x, &v3, NID_ext_key_usage, "clientAuth") &&
         pki_add_ext(x, &v3, NID_subject_alt_name, san) &&
         pki_add_ext(x, &v3, NID_subject_key_identifier, "hash") &&
         pki_add_ext(x, &v3, NID_authority_key_identifier, "keyid");
  }
  if (ok) ok = X509_sign(x, ca_key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

/* The scenario entry of one swarm site. Sites are spread over China's
 * bounding box (a 2-D low-discrepancy sequence), so the routing map shows
 * a cloud rather than one point; the two first are the hubs the loader
 * requires. Volumes and staffing are those of a small province. */
static json_t *pki_site_json(unsigned i, const char *slug) {
  static const double g1 = 0.7548776662466927, g2 = 0.5698402909980532; /* R2 sequence */
  double u = fmod(0.5 + g1 * i, 1.0), v = fmod(0.5 + g2 * i, 1.0);
  char name_en[64], name_zh[64], city[64];
  snprintf(name_en, sizeof name_en, "Swarm %u", i);
  snprintf(name_zh, sizeof name_zh, "模拟 %u", i);
  snprintf(city, sizeof city, "Swarm city %u", i);
  bool hub = i <= 2;
  return json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:i, s:i, s:i, s:i, s:i, s:b, s:b}", "slug",
                   slug, "name_en", name_en, "name_zh", name_zh, "city_en", city, "lat",
                   round((22.0 + 22.0 * u) * 1e4) / 1e4, "lon",
                   round((90.0 + 34.0 * v) * 1e4) / 1e4, "day_calls", 2000, "night_calls", 60,
                   "aht_s", 240, "agents_day", hub ? 60 : 25, "agents_night", hub ? 40 : 6,
                   "is_hub", hub, "night_consolidated", 0);
}

static int pki_write_scenario(const char *path, const char *prefix, unsigned count, char *err,
                              size_t errlen) {
  /* The reference network's diurnal profile (scenario/provinces.json). */
  static const double hourly[24] = {1.2, 0.8, 0.5, 0.4, 0.4, 0.5, 0.9, 1.6, 4.6, 7.2, 8.4, 8.0,
                                    5.8, 6.0, 7.6, 7.9, 7.4, 6.2, 4.6, 4.0, 3.4, 2.8, 2.6, 1.8};
  char hub1[SCENARIO_SLUG_MAX], hub2[SCENARIO_SLUG_MAX], name[SCENARIO_NAME_MAX];
  snprintf(hub1, sizeof hub1, "%s-%0*u", prefix, PKI_NUM_WIDTH, 1u);
  snprintf(hub2, sizeof hub2, "%s-%0*u", prefix, PKI_NUM_WIDTH, 2u);
  snprintf(name, sizeof name, "nirc-swarm: %u simulated sites", count);
  json_t *weights = json_array(), *sites = json_array();
  for (int h = 0; h < 24; h++)
    json_array_append_new(weights, json_real(hourly[h]));
  for (unsigned i = 1; i <= count; i++) {
    char slug[SCENARIO_SLUG_MAX];
    snprintf(slug, sizeof slug, "%s-%0*u", prefix, PKI_NUM_WIDTH, i);
    json_array_append_new(sites, pki_site_json(i, slug));
  }
  json_t *root = json_pack(
      "{s:s, s:s, s:s, s:i, s:o, s:i, s:i, s:i, s:o, s:s}", "name", name, "primary_hub", hub1,
      "backup_hub", hub2, "utc_offset_min", 480, "hourly_weight", weights, "hub_night_agents", 40,
      "patience_s", 90, "sl_threshold_s", 20, "sites", sites, "_source",
      "generated by nirc-swarm gen-pki; every site has DIR/<slug>.crt and .key");
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int rc = root && json_dump_file(root, tmp, JSON_INDENT(1) | SW_JSON_FLAGS) == 0 ? 0 : NIRC_EIO;
  json_decref(root);
  if (rc == 0 && rename(tmp, path) != 0) rc = NIRC_EIO;
  if (rc) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
  return rc;
}

static X509 *pki_read_cert(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  return x;
}

static EVP_PKEY *pki_read_key(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  return k;
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

  X509 *ca = pki_read_cert(ca_cert);
  if (!ca) {
    fprintf(stderr, "nirc-swarm: %s: cannot read a PEM certificate\n", ca_cert);
    return SW_EXIT_FAIL;
  }
  EVP_PKEY *cakey = pki_read_key(ca_key);
  if (!cakey || X509_check_private_key(ca, cakey) != 1) {
    fprintf(stderr, "nirc-swarm: %s: %s\n", ca_key,
            cakey ? "does not match the CA certificate" : "cannot read a PEM private key");
    X509_free(ca);
    EVP_PKEY_free(cakey);
    return SW_EXIT_FAIL;
  }
  if (mkdir(out, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "nirc-swarm: cannot create %s: %s\n", out, strerror(errno));
    return SW_EXIT_FAIL;
  }

  uint64_t t0 = clock_mono_ms();
  int rc = 0;
  char err[512];
  for (unsigned i = 1; i <= count && rc == 0; i++) {
    char slug[SCENARIO_SLUG_MAX], path[PATH_MAX];
    snprintf(slug, sizeof slug, "%s-%0*u", prefix, PKI_NUM_WIDTH, i);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = key ? pki_issue(ca, cakey, key, slug) : NULL;
    if (!x) {
      tls_error_string(err, sizeof err);
      fprintf(stderr, "nirc-swarm: issuing %s: %s\n", slug, err);
      rc = NIRC_ETLS;
    }
    if (rc == 0) {
      snprintf(path, sizeof path, "%s/%s.key", out, slug);
      rc = pki_write(path, 0600, pki_write_key, key, err, sizeof err);
    }
    if (rc == 0) {
      snprintf(path, sizeof path, "%s/%s.crt", out, slug);
      rc = pki_write(path, 0644, pki_write_cert, x, err, sizeof err);
    }
    if (rc && rc != NIRC_ETLS) fprintf(stderr, "nirc-swarm: %s\n", err);
    X509_free(x);
    EVP_PKEY_free(key);
  }
  X509_free(ca);
  EVP_PKEY_free(cakey);
  if (rc) return SW_EXIT_FAIL;

  char scen[PATH_MAX];
  snprintf(scen, sizeof scen, "%s/scenario.json", out);
  if (pki_write_scenario(scen, prefix, (unsigned)count, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-swarm: %s\n", err);
    return SW_EXIT_FAIL;
  }
  /* Proof that nircd import-sites and the agents will accept it. */
  scenario_t sc;
  if (scenario_load(scen, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-swarm: the generated scenario does not load: %s\n", err);
    return SW_EXIT_FAIL;
  }
  scenario_free(&sc);
  printf("issued %lu site certificates %s-%0*u..%s-%0*lu in %llu ms; %s lists them\n", count,
         prefix, PKI_NUM_WIDTH, 1u, prefix, PKI_NUM_WIDTH, count,
         (unsigned long long)(clock_mono_ms() - t0), scen);
  return SW_EXIT_OK;
}

/* ======================================================================
 * run: counters
 * ====================================================================== */

/* Occurrences by reason, for failed connects, drops, errors, rejections. */
typedef struct {
  char name[SW_TALLY_MAX][48];
  uint64_t count[SW_TALLY_MAX];
  unsigned n;
  uint64_t total;
} sw_tally_t;

static void sw_tally(sw_tally_t *t, const char *name) {
  t->total++;
  for (unsigned i = 0; i < t->n; i++) {
    if (strcmp(t->name[i], name) == 0) {
      t->count[i]++;
      return;
    }
  }
  /* The last slot collects whatever does not fit. */
  if (t->n == SW_TALLY_MAX - 1) name = "other";
  if (t->n == SW_TALLY_MAX) {
    t->count[SW_TALLY_MAX - 1]++;
    return;
  }
  nirc_strlcpy(t->name[t->n], name, sizeof t->name[0]);
  t->count[t->n++] = 1;
}

static json_t *sw_tally_json(const sw_tally_t *t) {
  json_t *by = json_object();
  for (unsigned i = 0; i < t->n; i++)
    json_object_set_new(by, t->name[i], json_integer((json_int_t)t->count[i]));
  return json_pack("{s:I, s:o}", "total", (json_int_t)t->total, "by_reason", by);
}

/* A latency distribution in milliseconds. */
typedef struct {
  double *v; /* owned */
  size_t n, cap;
  uint64_t not_kept;
} sw_samples_t;

static void sw_sample(sw_samples_t *s, double ms) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    double *v = cap <= SW_SAMPLES_MAX ? realloc(s->v, cap * sizeof *v) : NULL;
    if (!v) {
      s->not_kept++;
      return;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = ms;
}

static int sw_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values. */
static double sw_pct(const double *v, size_t n, double p) {
  size_t r = (size_t)ceil(p / 100.0 * (double)n);
  return v[r ? r - 1 : 0];
}

static double sw_round1(double ms) {
  return round(ms * 10.0) / 10.0;
}

/* Upper bounds (ms) of the reconnect histogram; the last bucket is open. */
static const double sw_hist_le[] = {10,   25,   50,   100,  250,   500,   750,   1000,
                                    1500, 2000, 3000, 5000, 10000, 20000, 30000, 60000};
#define SW_HIST_N (sizeof sw_hist_le / sizeof sw_hist_le[0])

/* Most samples within any `win` ms: a herd that retries in lockstep shows
 * as most of them; full jitter as a small share. `v` is sorted. */
static size_t sw_densest(const double *v, size_t n, double win) {
  size_t best = 0;
  for (size_t lo = 0, hi = 0; hi < n; hi++) {
    while (v[hi] - v[lo] > win)
      lo++;
    if (hi - lo + 1 > best) best = hi - lo + 1;
  }
  return best;
}

/* {count, min, p10, p50, p90, p99, max, mean} and, with `hist`, the count
 * per bucket and the densest 50 ms: full jitter shows as counts spread
 * over many buckets, a herd as one tall bucket. */
static json_t *sw_samples_json(const sw_samples_t *s, bool hist) {
  if (s->n == 0) return json_pack("{s:i}", "count", 0);
  double *v = malloc(s->n * sizeof *v);
  if (!v) return json_null();
  memcpy(v, s->v, s->n * sizeof *v);
  qsort(v, s->n, sizeof *v, sw_cmp_double);
  double sum = 0;
  for (size_t i = 0; i < s->n; i++)
    sum += v[i];
  json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)s->n,
                        "min", sw_round1(v[0]), "p10", sw_round1(sw_pct(v, s->n, 10)), "p50",
                        sw_round1(sw_pct(v, s->n, 50)), "p90", sw_round1(sw_pct(v, s->n, 90)),
                        "p99", sw_round1(sw_pct(v, s->n, 99)), "max", sw_round1(v[s->n - 1]),
                        "mean", sw_round1(sum / (double)s->n));
  if (s->not_kept) json_object_set_new(o, "not_kept", json_integer((json_int_t)s->not_kept));
  if (hist) {
    json_t *h = json_array();
    size_t k = 0;
    for (size_t b = 0; b <= SW_HIST_N; b++) {
      size_t c = 0;
      while (k < s->n && (b == SW_HIST_N || v[k] <= sw_hist_le[b]))
        k++, c++;
      json_array_append_new(h, json_pack("{s:o, s:I}", "le_ms",
                                         b < SW_HIST_N ? json_real(sw_hist_le[b]) : json_null(),
                                         "count", (json_int_t)c));
    }
    json_object_set_new(o, "histogram", h);
    json_object_set_new(o, "max_in_50ms", json_integer((json_int_t)sw_densest(v, s->n, 50.0)));
  }
  free(v);
  return o;
}

/* Resident set size of this process, KiB, from /proc/self/statm. */
static long sw_rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long size, resident;
  int n = fscanf(f, "%ld %ld", &size, &resident);
  fclose(f);
  return n == 2 ? resident * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/* ======================================================================
 * run: the swarm
 * ====================================================================== */

typedef enum {
  SW_IDLE = 0,
  SW_CONNECTING, /* TCP + TLS to a controller */
  SW_HELLO_SENT, /* waiting for Welcome */
  SW_REPORTING,  /* Welcome received: reporting */
  SW_BACKOFF,    /* waiting before the next attempt */
  SW_STOPPING,
} sw_state_t;

typedef struct swarm swarm_t;

/* One simulated agent: what site-agent/agent.c keeps, minus the PBX. */
typedef struct {
  swarm_t *sw;
  char slug[SCENARIO_SLUG_MAX];
  SSL_CTX *tls; /* owned: this agent's certificate and key */
  link_t *link; /* current link or NULL; owns itself */
  sw_state_t state;
  backoff_t backoff;
  uv_timer_t retry, report;
  unsigned idx;         /* controller address tried now */
  bool redirect;        /* next attempt goes to redirect_addr */
  unsigned redirects;   /* redirects followed since the last Welcome */
  bool got_error;       /* the controller sent an Error on the current link */
  int last_error;       /* its code */
  uint64_t epoch;       /* of the controller we talk to */
  uint64_t max_epoch;   /* newest seen: older leaders are fenced off */
  route_t applied;      /* what this site "routes by" */
  uint32_t interval_ms; /* report period */
  double attempt_ms;    /* when the current connection attempt started */
  bool dropped;         /* an established link dropped; not yet back */
  double dropped_ms;    /* when it dropped */
  uint64_t rng;         /* xorshift state for load figures */
  struct sockaddr_storage redirect_addr;
} sw_agent_t;

typedef struct {
  double at_ms;       /* first drop, since start */
  uint64_t drops;     /* links dropped before every agent was back */
  double all_back_ms; /* first drop -> last agent's Welcome */
} sw_recovery_t;

struct swarm {
  uv_loop_t *loop;
  sw_agent_t *agents; /* owned, n entries */
  unsigned n;
  struct sockaddr_storage addrs[CONFIG_LIST_MAX];
  char addr_str[CONFIG_LIST_MAX][NIRC_ADDR_STRLEN];
  unsigned naddrs;

  /* options */
  uint64_t report_interval_ms, duration_ms, progress_ms, rss_ms, ramp_ms;
  uint64_t backoff_min_ms, backoff_max_ms, connect_timeout_ms, idle_timeout_ms;
  bool progress;

  uv_timer_t t_duration, t_progress, t_rss, t_ramp;
  uv_signal_t sig_int, sig_term;
  unsigned ramp_next; /* next agent the ramp starts */
  bool stopping;
  json_t *summary; /* built when stopping begins, printed after the loop */
  char stop_reason[64];

  uint64_t t0_ns; /* uv_hrtime() at the start */
  double setup_ms;
  long rss_setup_kb;
  rlim_t fd_limit;

  unsigned connected; /* agents holding a Welcome now */
  uint64_t attempts, handshakes, welcomes, reports, directives, applied, rejected;
  uint64_t redirects, protocol_errors;
  sw_tally_t failed, drops, errors, rejections;
  sw_samples_t connect_ms, reconnect_ms;
  double first_all_ms; /* start -> every agent connected; <0 not yet */
  bool episode;        /* some agent is down after a drop */
  sw_recovery_t cur;
  sw_recovery_t recoveries[SW_RECOVERIES_MAX];
  unsigned nrecoveries;
  uint64_t recoveries_total;

  long rss_kb[SW_RSS_MAX];
  double rss_t_s[SW_RSS_MAX];
  unsigned nrss;
};

static const char *const sw_state_names[] = {
    [SW_IDLE] = "idle",           [SW_CONNECTING] = "connecting", [SW_HELLO_SENT] = "hello-sent",
    [SW_REPORTING] = "reporting", [SW_BACKOFF] = "backoff",       [SW_STOPPING] = "stopping",
};

/* Milliseconds since the swarm started, with the precision of uv_hrtime:
 * uv_now() is cached per loop turn, and one turn can handle hundreds of
 * handshakes, which would bunch the very times we want to see spread. */
static double sw_now(const swarm_t *sw) {
  return (double)(uv_hrtime() - sw->t0_ns) / 1e6;
}

static void sw_set_state(sw_agent_t *a, sw_state_t to) {
  if (a->state == SW_STOPPING) return; /* terminal */
  log_debug(LOG_AGENT, a->slug, "%s -> %s", sw_state_names[a->state], sw_state_names[to]);
  a->state = to;
}

static uint32_t sw_rand(sw_agent_t *a) {
  uint64_t x = a->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  a->rng = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static const char *sw_error_name(int code) {
  const ProtobufCEnumValue *v =
      protobuf_c_enum_descriptor_get_value(&nirc__error_code__descriptor, code);
  if (!v) return "UNKNOWN";
  return strncmp(v->name, "ERROR_CODE_", 11) == 0 ? v->name + 11 : v->name;
}

/* A short, stable reason for a link that ended: the Error the controller
 * sent, else the link's error class. */
static void sw_reason(int err, const char *why, bool got_error, int error_code, char *buf,
                      size_t len) {
  if (got_error) {
    snprintf(buf, len, "error:%s", sw_error_name(error_code));
  } else if (err == NIRC_EUNREACHABLE && why && strstr(why, "refused")) {
    snprintf(buf, len, "connection-refused");
  } else if (err == NIRC_EIO && why && strstr(why, "reset")) {
    snprintf(buf, len, "connection-reset");
  } else if (err == NIRC_ETLS && why && strstr(why, "peer closed during the TLS handshake")) {
    /* A controller shedding handshakes (max_unauthenticated) looks so. */
    snprintf(buf, len, "closed-in-handshake");
  } else if (err == 0 || err == NIRC_ECLOSED) {
    snprintf(buf, len, "closed-by-peer");
  } else {
    snprintf(buf, len, "%s", nirc_errname(err));
    for (char *p = buf; *p; p++)
      *p = *p == '_' ? '-' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  }
}

static void sw_emit(json_t *o) {
  if (!o) return;
  json_dumpf(o, stdout, SW_JSON_FLAGS);
  putchar('\n');
  fflush(stdout);
  json_decref(o);
}

static void sw_agent_connect(sw_agent_t *a);

static void sw_on_retry(uv_timer_t *t) {
  sw_agent_t *a = t->data;
  if (a->state == SW_BACKOFF || a->state == SW_IDLE) sw_agent_connect(a);
}

/* As agent_schedule_retry: rotate through the address list and wait a
 * full-jitter backoff; a fresh redirect is followed at once instead. */
static void sw_schedule_retry(sw_agent_t *a) {
  swarm_t *sw = a->sw;
  if (sw->stopping) return;
  sw_set_state(a, SW_BACKOFF);
  if (a->redirect && a->redirects < SW_MAX_REDIRECTS) {
    a->redirects++;
    sw->redirects++;
    /* Now, not after a backoff: the standby already spread us in time. */
    uv_timer_start(&a->retry, sw_on_retry, 0, 0);
    return;
  }
  a->redirect = false;
  a->idx = (a->idx + 1) % sw->naddrs;
  uint32_t delay = backoff_next(&a->backoff);
  log_info(LOG_AGENT, a->slug, "next attempt in %u ms to %s", delay, sw->addr_str[a->idx]);
  uv_timer_start(&a->retry, sw_on_retry, delay, 0);
}

/* NOT_LEADER names the leader: go there next. A hint that is one of our
 * addresses selects it; a numeric address elsewhere is used as is; a name
 * would need a resolver on the loop, so it is ignored and the list
 * rotates. */
static void sw_take_hint(sw_agent_t *a, const char *hint) {
  swarm_t *sw = a->sw;
  if (!hint || !*hint) return;
  for (unsigned i = 0; i < sw->naddrs; i++) {
    if (strcmp(hint, sw->addr_str[i]) == 0) {
      a->idx = i;
      a->redirect_addr = sw->addrs[i];
      a->redirect = true;
      return;
    }
  }
  char host[NIRC_ADDR_STRLEN];
  const char *colon = strrchr(hint, ':');
  if (!colon || (size_t)(colon - hint) >= sizeof host) return;
  memcpy(host, hint, (size_t)(colon - hint));
  host[colon - hint] = '\0';
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (*end || port == 0 || port > 65535) return;
  struct sockaddr_storage ss;
  size_t hl = strlen(host);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)&ss) != 0) return;
  } else if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0) {
    return;
  }
  a->redirect_addr = ss;
  a->redirect = true;
}

static void sw_on_open(link_t *l) {
  sw_agent_t *a = link_data(l);
  a->sw->handshakes++;
  Nirc__Hello h = NIRC__HELLO__INIT;
  h.protocol_version = NIRC_PROTOCOL_VERSION;
  h.software_version = "nirc-swarm " NIRC_VERSION;
  h.site = a->slug;
  h.adapter = "swarm";
  /* As the agent: the route it applies, once a controller has set one
   * (until then it is home, which the controller assumes). */
  Nirc__Directive applied = NIRC__DIRECTIVE__INIT;
  route_pb_t pb;
  if (a->applied.version > 0) {
    route_to_directive(&a->applied, &pb, &applied);
    applied.site = a->slug;
    /* As the agent: no inbound source names in the Hello. */
    applied.inbound_sources = NULL;
    applied.n_inbound_sources = 0;
    h.applied = &applied;
  }
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_HELLO;
  env.hello = &h;
  if (link_send(l, &env) == 0) sw_set_state(a, SW_HELLO_SENT);
}

/* Plausible small figures of a quiet provincial centre; every relation
 * the controller checks (sites_validate_report) holds. */
static void sw_on_report_timer(uv_timer_t *t) {
  sw_agent_t *a = t->data;
  if (a->state != SW_REPORTING || !a->link) return;
  Nirc__LoadReport r = NIRC__LOAD_REPORT__INIT;
  r.site = a->slug;
  r.timestamp_ms = clock_real_ms();
  r.interval_ms = a->interval_ms;
  uint32_t logged_in = 20 + sw_rand(a) % 11;
  r.agents_logged_in = logged_in;
  r.agents_not_ready = sw_rand(a) % 4;
  r.agents_talking = sw_rand(a) % (logged_in - r.agents_not_ready + 1);
  r.agents_ready = logged_in - r.agents_not_ready - r.agents_talking;
  r.calls_offered = sw_rand(a) % 4;
  r.calls_abandoned = r.calls_offered && sw_rand(a) % 10 == 0 ? 1 : 0;
  r.calls_answered = r.calls_offered - r.calls_abandoned;
  r.answered_within_threshold = r.calls_answered - (r.calls_answered && sw_rand(a) % 8 == 0);
  r.sl_threshold_s = 20;
  r.calls_in_queue = sw_rand(a) % 3;
  r.calls_in_queue_peak = r.calls_in_queue + sw_rand(a) % 2;
  r.longest_wait_ms = r.calls_in_queue ? 1000 + sw_rand(a) % 20000 : 0;
  r.aht_ms = 200000 + sw_rand(a) % 80000;
  /* Follow the applied route, so a moved site's reports say so. */
  uint32_t home = route_share_of(&a->applied, a->slug);
  r.calls_routed_away = r.calls_offered * (1000 - home) / 1000;
  r.calls_from_other_sites = a->applied.n_inbound ? r.calls_offered / 2 : 0;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  if (link_send(a->link, &env) == 0) a->sw->reports++;
}

static void sw_send_ack(sw_agent_t *a, link_t *l, uint64_t epoch, uint64_t version,
                        Nirc__AckResult result, const char *detail) {
  Nirc__DirectiveAck ack = NIRC__DIRECTIVE_ACK__INIT;
  ack.site = a->slug;
  ack.epoch = epoch;
  ack.version = version;
  ack.result = result;
  ack.detail = (char *)detail;
  Nirc__Envelope out = NIRC__ENVELOPE__INIT;
  out.msg_case = NIRC__ENVELOPE__MSG_DIRECTIVE_ACK;
  out.directive_ack = &ack;
  link_send(l, &out);
}

/* agent_on_directive's checks, in its order, with the apply made instant.
 * A rejection a correct controller can cause (a stale epoch from a deposed
 * leader, an old version overtaken) is counted; one no correct controller
 * sends (another site's directive, an invalid route, a reused version)
 * is also a protocol error. */
static void sw_on_directive(sw_agent_t *a, link_t *l, const Nirc__Directive *d) {
  swarm_t *sw = a->sw;
  route_t r;
  char why[256] = "";
  const char *kind = NULL;
  bool wrong = false;
  Nirc__AckResult res = NIRC__ACK_RESULT__ACK_RESULT_REJECTED;
  sw->directives++;
  if (d->site && *d->site && strcmp(d->site, a->slug) != 0) {
    snprintf(why, sizeof why, "directive is for site '%.40s', this is %s", d->site, a->slug);
    kind = "wrong-site", wrong = true;
  } else if (route_from_directive(d, &r, why, sizeof why) != 0) {
    kind = "invalid-route", wrong = true;
  } else if (d->epoch < a->max_epoch) {
    snprintf(why, sizeof why, "stale epoch %llu: a newer controller (epoch %llu) leads",
             (unsigned long long)d->epoch, (unsigned long long)a->max_epoch);
    kind = "stale-epoch";
  } else if (route_compare_version(&r, &a->applied) == 0) {
    if (route_same(&r, &a->applied)) {
      res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED; /* a resend: idempotent */
      snprintf(why, sizeof why, "already applied");
    } else {
      snprintf(why, sizeof why, "version %llu reused with a different route",
               (unsigned long long)d->version);
      kind = "version-reused", wrong = true;
    }
  } else if (route_compare_version(&r, &a->applied) < 0) {
    snprintf(why, sizeof why, "stale version (%llu, %llu); applied is (%llu, %llu)",
             (unsigned long long)r.epoch, (unsigned long long)r.version,
             (unsigned long long)a->applied.epoch, (unsigned long long)a->applied.version);
    kind = "stale-version";
  } else if (route_validate(&r, why, sizeof why) != 0) {
    kind = "invalid-route", wrong = true;
  } else {
    a->applied = r;
    res = NIRC__ACK_RESULT__ACK_RESULT_APPLIED;
    why[0] = '\0';
  }
  if (res == NIRC__ACK_RESULT__ACK_RESULT_APPLIED) {
    sw->applied++;
    if (d->epoch > a->max_epoch) a->max_epoch = d->epoch;
  } else {
    sw->rejected++;
    sw_tally(&sw->rejections, kind);
    if (wrong) sw->protocol_errors++;
    log_warn(LOG_AGENT, a->slug, "directive (%llu, %llu) rejected: %s",
             (unsigned long long)d->epoch, (unsigned long long)d->version, why);
  }
  sw_send_ack(a, l, d->epoch, d->version, res, why);
}

static void sw_on_welcome(sw_agent_t *a, const Nirc__Welcome *w) {
  swarm_t *sw = a->sw;
  double now = sw_now(sw);
  uint32_t iv = w->report_interval_ms;
  if (iv < 100 || iv > 60000) iv = (uint32_t)sw->report_interval_ms;
  a->interval_ms = iv;
  a->epoch = w->epoch;
  if (w->epoch > a->max_epoch) a->max_epoch = w->epoch;
  backoff_reset(&a->backoff);
  a->redirects = 0;
  a->redirect = false;
  sw_set_state(a, SW_REPORTING);
  sw->welcomes++;
  sw->connected++;
  sw_sample(&sw->connect_ms, now - a->attempt_ms);
  if (a->dropped) {
    a->dropped = false;
    sw_sample(&sw->reconnect_ms, now - a->dropped_ms);
  }
  if (sw->connected == sw->n) {
    json_t *ev = NULL;
    if (sw->first_all_ms < 0) {
      sw->first_all_ms = now;
      ev = json_pack("{s:s, s:f, s:i, s:s}", "event", "all_connected", "t_ms", sw_round1(now),
                     "connected", sw->n, "after", "start");
    } else if (sw->episode) {
      sw->episode = false;
      sw->cur.all_back_ms = now - sw->cur.at_ms;
      sw->recoveries_total++;
      if (sw->nrecoveries < SW_RECOVERIES_MAX) sw->recoveries[sw->nrecoveries++] = sw->cur;
      ev = json_pack("{s:s, s:f, s:i, s:s, s:I, s:f}", "event", "all_connected", "t_ms",
                     sw_round1(now), "connected", sw->n, "after", "drop", "drops",
                     (json_int_t)sw->cur.drops, "all_back_ms", sw_round1(sw->cur.all_back_ms));
    }
    if (sw->progress)
      sw_emit(ev);
    else
      json_decref(ev);
  }
  log_info(LOG_AGENT, a->slug, "connected (%s, epoch %llu), reporting every %u ms",
           w->controller_node ? w->controller_node : "?", (unsigned long long)w->epoch, iv);
  uv_timer_start(&a->report, sw_on_report_timer, iv, iv);
}

static void sw_on_message(link_t *l, Nirc__Envelope *env) {
  sw_agent_t *a = link_data(l);
  swarm_t *sw = a->sw;
  switch (env->msg_case) {
  case NIRC__ENVELOPE__MSG_WELCOME:
    if (a->state != SW_HELLO_SENT) {
      sw->protocol_errors++;
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL, "unexpected Welcome");
      return;
    }
    sw_on_welcome(a, env->welcome);
    return;
  case NIRC__ENVELOPE__MSG_ERROR: {
    const Nirc__Error *e = env->error;
    sw_tally(&sw->errors, sw_error_name(e->code));
    a->got_error = true;
    a->last_error = e->code;
    if (e->code == NIRC__ERROR_CODE__ERROR_CODE_NOT_LEADER) {
      /* A standby: not an error of the protocol, the way to the leader. */
      log_info(LOG_AGENT, a->slug, "not the leader (hint '%.80s')",
               e->leader_hint ? e->leader_hint : "");
      sw_take_hint(a, e->leader_hint);
      link_close(l, NIRC_ECLOSED, "controller is not the leader");
      return;
    }
    sw->protocol_errors++;
    log_warn(LOG_AGENT, a->slug, "controller refused: %s: %.200s", sw_error_name(e->code),
             e->message ? e->message : "(no reason)");
    return;
  }
  case NIRC__ENVELOPE__MSG_DIRECTIVE:
    if (a->state != SW_REPORTING) {
      sw->protocol_errors++;
      link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
                "Directive before Welcome");
      return;
    }
    sw_on_directive(a, l, env->directive);
    return;
  default:
    sw->protocol_errors++;
    link_fail(l, NIRC__ERROR_CODE__ERROR_CODE_PROTOCOL, NIRC_EPROTOCOL,
              "message type %d is not valid from a controller", env->msg_case);
    return;
  }
}

static void sw_on_close(link_t *l, int err, const char *why, int was_open) {
  sw_agent_t *a = link_data(l);
  swarm_t *sw = a->sw;
  a->link = NULL;
  uv_timer_stop(&a->report);
  if (a->state == SW_STOPPING) return;
  char reason[48];
  sw_reason(err, why, a->got_error, a->last_error, reason, sizeof reason);
  a->got_error = false;
  if (a->state == SW_REPORTING) {
    double now = sw_now(sw);
    sw->connected--;
    sw_tally(&sw->drops, reason);
    a->dropped = true;
    a->dropped_ms = now;
    if (!sw->episode && sw->first_all_ms >= 0) {
      sw->episode = true;
      sw->cur.at_ms = now;
      sw->cur.drops = 0;
    }
    if (sw->episode) sw->cur.drops++;
    log_info(LOG_AGENT, a->slug, "link to %s dropped: %s", link_peer_addr(l),
             why && *why ? why : nirc_strerror(err));
  } else {
    sw_tally(&sw->failed, reason);
    log_info(LOG_AGENT, a->slug, "attempt to %s failed: %s", link_peer_addr(l),
             why && *why ? why : nirc_strerror(err));
  }
  sw_schedule_retry(a);
}

static const link_cbs_t sw_link_cbs = {
    .on_open = sw_on_open,
    .on_message = sw_on_message,
    .on_close = sw_on_close,
};

static void sw_agent_connect(sw_agent_t *a) {
  swarm_t *sw = a->sw;
  if (sw->stopping) return;
  sw_set_state(a, SW_CONNECTING);
  link_opts_t o;
  link_opts_default(&o);
  o.handshake_timeout_ms = (uint32_t)sw->connect_timeout_ms;
  o.idle_timeout_ms = (uint32_t)sw->idle_timeout_ms;
  o.expect_kind = PEER_CONTROLLER;
  const struct sockaddr *addr =
      (const struct sockaddr *)(a->redirect ? &a->redirect_addr : &sw->addrs[a->idx]);
  /* A redirect is used once: if this attempt fails without a new hint,
   * the list rotates on from the hinted address. */
  a->redirect = false;
  sw->attempts++;
  a->attempt_ms = sw_now(sw);
  a->got_error = false;
  if (link_connect(sw->loop, addr, a->tls, &o, &sw_link_cbs, a, &a->link) != 0) {
    /* Out of memory: nothing will call back, so retry from here. */
    a->link = NULL;
    sw_tally(&sw->failed, "nomem");
    sw_schedule_retry(a);
  }
}

/* ---- global timers ---- */

static void sw_rss_sample(swarm_t *sw) {
  if (sw->nrss == SW_RSS_MAX) return;
  sw->rss_t_s[sw->nrss] = round(sw_now(sw) / 100.0) / 10.0;
  sw->rss_kb[sw->nrss] = sw_rss_kb();
  sw->nrss++;
}

static void sw_on_rss(uv_timer_t *t) {
  sw_rss_sample(t->data);
}

static json_t *sw_progress_json(swarm_t *sw) {
  return json_pack("{s:s, s:f, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
                   "event", "progress", "t_ms", sw_round1(sw_now(sw)), "connected", sw->connected,
                   "agents", sw->n, "attempts", (json_int_t)sw->attempts, "welcomes",
                   (json_int_t)sw->welcomes, "failed_connects", (json_int_t)sw->failed.total,
                   "drops", (json_int_t)sw->drops.total, "reports_sent", (json_int_t)sw->reports,
                   "directives", (json_int_t)sw->directives, "acks_applied",
                   (json_int_t)sw->applied, "acks_rejected", (json_int_t)sw->rejected, "errors",
                   (json_int_t)sw->errors.total, "protocol_errors", (json_int_t)sw->protocol_errors,
                   "rss_kb", (int)sw_rss_kb());
}

static void sw_on_progress(uv_timer_t *t) {
  swarm_t *sw = t->data;
  sw_emit(sw_progress_json(sw));
}

/* Starts the first connections, a few per tick, spread over --ramp. */
static void sw_on_ramp(uv_timer_t *t) {
  swarm_t *sw = t->data;
  double elapsed = sw_now(sw);
  unsigned due =
      sw->ramp_ms ? (unsigned)fmin(sw->n, ceil(elapsed / (double)sw->ramp_ms * sw->n)) : sw->n;
  while (sw->ramp_next < due && !sw->stopping)
    sw_agent_connect(&sw->agents[sw->ramp_next++]);
  if (sw->ramp_next >= sw->n) uv_timer_stop(t);
}

static json_t *sw_summary_json(swarm_t *sw, double now) {
  json_t *ctl = json_array();
  for (unsigned i = 0; i < sw->naddrs; i++)
    json_array_append_new(ctl, json_string(sw->addr_str[i]));
  json_t *rec = json_array();
  for (unsigned i = 0; i < sw->nrecoveries; i++)
    json_array_append_new(rec,
                          json_pack("{s:f, s:I, s:f}", "at_ms", sw_round1(sw->recoveries[i].at_ms),
                                    "drops", (json_int_t)sw->recoveries[i].drops, "all_back_ms",
                                    sw_round1(sw->recoveries[i].all_back_ms)));
  json_t *samples = json_array();
  long first = -1, last = -1, max = -1;
  for (unsigned i = 0; i < sw->nrss; i++) {
    json_array_append_new(samples, json_pack("[f, i]", sw->rss_t_s[i], (int)sw->rss_kb[i]));
    if (first < 0) first = sw->rss_kb[i];
    last = sw->rss_kb[i];
    if (sw->rss_kb[i] > max) max = sw->rss_kb[i];
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  bool all = sw->connected == sw->n;
  json_t *rej = sw_tally_json(&sw->rejections);
  json_t *o = json_pack(
      "{s:s, s:s, s:b, s:i, s:o, s:f, s:i, s:b, s:o, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:I, "
      "s:o, s:o, s:o, s:o, s:o}",
      "event", "summary", "stopped_by", sw->stop_reason, "ok", all && sw->protocol_errors == 0,
      "agents", sw->n, "controllers", ctl, "duration_ms", sw_round1(now), "connected",
      sw->connected, "all_connected", all, "first_all_connected_ms",
      sw->first_all_ms >= 0 ? json_real(sw_round1(sw->first_all_ms)) : json_null(),
      "connect_attempts", (json_int_t)sw->attempts, "handshakes", (json_int_t)sw->handshakes,
      "welcomes", (json_int_t)sw->welcomes, "failed_connects", sw_tally_json(&sw->failed), "drops",
      sw_tally_json(&sw->drops), "redirects_followed", (json_int_t)sw->redirects, "reports_sent",
      (json_int_t)sw->reports, "protocol_errors", (json_int_t)sw->protocol_errors, "errors",
      sw_tally_json(&sw->errors), "directives",
      json_pack("{s:I, s:I, s:I, s:O}", "received", (json_int_t)sw->directives, "acked_applied",
                (json_int_t)sw->applied, "acked_rejected", (json_int_t)sw->rejected,
                "rejected_by_reason", json_object_get(rej, "by_reason")),
      "connect_ms", sw_samples_json(&sw->connect_ms, false), "reconnect_ms",
      sw_samples_json(&sw->reconnect_ms, true), "recoveries", rec);
  json_decref(rej);
  json_object_set_new(o, "recoveries_total", json_integer((json_int_t)sw->recoveries_total));
  json_object_set_new(o, "rss_kb",
                      json_pack("{s:i, s:i, s:i, s:i, s:o}", "after_setup", (int)sw->rss_setup_kb,
                                "first", (int)first, "last", (int)last, "max", (int)max, "samples",
                                samples));
  json_object_set_new(o, "setup_ms", json_real(sw_round1(sw->setup_ms)));
  json_object_set_new(
      o, "cpu_s",
      json_pack("{s:f, s:f}", "user", round(user * 100) / 100, "sys", round(sys * 100) / 100));
  json_object_set_new(o, "fd_limit", json_integer((json_int_t)sw->fd_limit));
  return o;
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

  /* The scenario gen-pki wrote names the sites; the files sit beside it. */
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/scenario.json", dir);
  scenario_t sc;
  if (scenario_load(path, &sc, err, sizeof err) != 0) {
    fprintf(stderr, "nirc-swarm: %s (make DIR with `nirc-swarm gen-pki`)\n", err);
    return SW_EXIT_FAIL;
  }
  if (count == 0) count = sc.count;
  if (count > sc.count) {
    fprintf(stderr, "nirc-swarm: --count %lu but %s lists only %zu sites\n", count, path, sc.count);
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
    nirc_strlcpy(a->slug, sc.sites[i].slug, sizeof a->slug);
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
  if (sw->ramp_ms)
    uv_timer_start(&sw->t_ramp, sw_on_ramp, 0, 10);
  else
    sw_on_ramp(&sw->t_ramp);

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

int main(int argc, char **argv) {
  log_set_program("nirc-swarm");
  if (argc < 2) die_usage("missing command (gen-pki or run)");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
    usage(stdout);
    return SW_EXIT_OK;
  }
  /* getopt sees the sub-command's arguments only. */
  if (!strcmp(cmd, "gen-pki")) return cmd_gen_pki(argc - 1, argv + 1);
  if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
  die_usage("unknown command '%s' (gen-pki or run)", cmd);
}
