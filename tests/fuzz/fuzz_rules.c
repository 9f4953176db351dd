/* libFuzzer: the operator-facing parsers — slug lists, HH:MM, days, dates,
 * durations, ISO times, time zones — and routes from JSON (the agent's
 * state file). A zone name the input gives is also used both ways: the
 * 8 bytes after its NUL are an instant, turned into local time and back;
 * the round trip must land on the same wall clock, no later than the
 * instant (abort() otherwise, which the fuzzer reports). */
#include "clock.h"
#include "route.h"
#include "rules.h"
#include "tz.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2020-01-22 13:50:00 UTC, when the input gives no instant. */
#define FUZZ_T0 1579701000000LL

static void fuzz_zone(const char *zone, const uint8_t *rest, size_t restlen) {
  if (!tz_valid(zone)) return;
  int64_t t = FUZZ_T0;
  if (restlen >= sizeof t) memcpy(&t, rest, sizeof t);
  tz_local_t l, l2;
  int64_t back;
  if (tz_to_local(zone, t, &l) != 0 || tz_from_local(zone, &l, &back) != 0) return;
  int64_t floor_s = t / 1000 - (t % 1000 < 0 ? 1 : 0);
  if (tz_to_local(zone, back, &l2) != 0 || l2.year != l.year || l2.month != l.month ||
      l2.day != l.day || l2.hour != l.hour || l2.minute != l.minute || l2.second != l.second ||
      back > floor_s * 1000) {
    fprintf(stderr, "fuzz_rules: %s: %lld -> local -> %lld\n", zone, (long long)t, (long long)back);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  char err[256];
  slug_list_t l;
  int minutes;
  uint8_t days;
  int32_t date;
  uint64_t ms;
  int64_t t;
  rules_parse_slug_list(s, &l, err, sizeof err);
  rules_parse_hhmm(s, &minutes);
  rules_parse_days(s, &days, err, sizeof err);
  rules_parse_date(s, &date);
  nirc_parse_duration_ms(s, &ms);
  clock_parse_iso(s, &t);
  size_t n = strlen(s);
  fuzz_zone(s, data + (n < size ? n + 1 : size), n < size ? size - n - 1 : 0);
  json_t *j = json_loadb((const char *)data, size, 0, NULL);
  if (j) {
    route_t r;
    route_from_json(j, &r, err, sizeof err);
    json_decref(j);
  }
  free(s);
  return 0;
}
