#include "kamverify.h"

#include "err.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* One DEST object into *d. false when its shape is not Kamailio's. */
static bool kamverify_dest(const json_t *dest, kamverify_dest_t *d) {
  const json_t *uri = json_object_get(dest, "URI"), *attrs = json_object_get(dest, "ATTRS");
  const json_t *flags = json_object_get(dest, "FLAGS");
  if (!json_is_string(uri) || json_string_length(uri) >= sizeof d->uri) return false;
  memset(d, 0, sizeof *d);
  nirc_strlcpy(d->uri, json_string_value(uri), sizeof d->uri);
  /* FLAGS: A active, I inactive, D disabled, P/X probing (dispatcher's
   * ds_print). Only I and D stop calls. */
  if (json_is_string(flags))
    d->inactive = strchr(json_string_value(flags), 'I') || strchr(json_string_value(flags), 'D');
  if (json_is_object(attrs)) {
    const json_t *w = json_object_get(attrs, "WEIGHT"), *duid = json_object_get(attrs, "DUID");
    if (json_is_integer(w) && json_integer_value(w) >= 0 && json_integer_value(w) <= 1000000)
      d->weight = (unsigned)json_integer_value(w);
    if (json_is_string(duid)) nirc_strlcpy_utf8(d->name, json_string_value(duid), sizeof d->name);
  }
  /* Both come from a file anyone with access may have written: keep them
   * printable for logs and messages. */
  for (char *c = d->uri; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  for (char *c = d->name; *c; c++) {
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  }
  return true;
}

int kamverify_parse(const json_t *result, uint32_t set_id, kamverify_set_t *out, char *err,
                    size_t errlen) {
  memset(out, 0, sizeof *out);
  const json_t *records = json_is_object(result) ? json_object_get(result, "RECORDS") : NULL;
  size_t i, j;
  const json_t *rec, *t;
  if (!json_is_array(records)) goto garbage;
  json_array_foreach(records, i, rec) {
    const json_t *set = json_object_get(rec, "SET");
    const json_t *id = set ? json_object_get(set, "ID") : NULL;
    if (!json_is_integer(id)) goto garbage;
    if (json_integer_value(id) != (json_int_t)set_id) continue;
    const json_t *targets = json_object_get(set, "TARGETS");
    if (!json_is_array(targets)) goto garbage;
    json_array_foreach(targets, j, t) {
      if (out->n == KAMVERIFY_MAX) {
        snprintf(err, errlen, "Kamailio's dispatcher set %u has more than %d destinations", set_id,
                 KAMVERIFY_MAX);
        return NIRC_EINVAL;
      }
      if (!kamverify_dest(json_object_get(t, "DEST"), &out->d[out->n])) goto garbage;
      out->n++;
    }
  }
  return 0;
garbage:
  snprintf(err, errlen, "Kamailio's dispatcher.list answer is not understood");
  return NIRC_EINVAL;
}

bool kamverify_same(const kamverify_set_t *found, const kamverify_set_t *expected) {
  if (found->n != expected->n) return false;
  bool used[KAMVERIFY_MAX] = {false};
  for (unsigned i = 0; i < expected->n; i++) {
    bool hit = false;
    for (unsigned k = 0; k < found->n && !hit; k++) {
      if (used[k] || found->d[k].inactive) continue;
      if (found->d[k].weight == expected->d[i].weight &&
          strcmp(found->d[k].uri, expected->d[i].uri) == 0)
        used[k] = hit = true;
    }
    if (!hit) return false;
  }
  return true;
}

void kamverify_format(const kamverify_set_t *s, char *buf, size_t len) {
  size_t n = 0;
  buf[0] = '\0';
  if (s->n == 0) {
    snprintf(buf, len, "nothing (no destination)");
    return;
  }
  for (unsigned i = 0; i < s->n && n < len; i++) {
    const kamverify_dest_t *d = &s->d[i];
    int w = snprintf(buf + n, len - n, "%s%s %u%%%s", i ? ", " : "", d->name[0] ? d->name : d->uri,
                     d->weight, d->inactive ? " (inactive)" : "");
    if (w < 0) break;
    n += (size_t)w;
  }
}
