/* swarm_pki: nirc-swarm gen-pki's work, once its command line is checked:
 * N site certificates issued with the OpenSSL API, the shape
 * deploy/pki.sh gives a site, and the scenario.json that names them. */
#include "swarm.h"

#include "clock.h"
#include "err.h"
#include "scenario.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* deploy/pki.sh issues leaves for this long (the CA/Browser Forum ceiling). */
#define PKI_LEAF_DAYS 825

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

int sw_gen_pki(const char *ca_cert, const char *ca_key, const char *out, const char *prefix,
               unsigned long count) {
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
