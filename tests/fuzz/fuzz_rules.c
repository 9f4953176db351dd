/* libFuzzer: the operator-facing parsers — slug lists, HH:MM, days, dates,
 * durations, ISO times — and routes from JSON (the agent's state file). */
#include "clock.h"
#include "route.h"
#include "rules.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
  json_t *j = json_loadb((const char *)data, size, 0, NULL);
  if (j) {
    route_t r;
    route_from_json(j, &r, err, sizeof err);
    json_decref(j);
  }
  free(s);
  return 0;
}
