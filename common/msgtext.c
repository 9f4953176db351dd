/* msgtext: see msgtext.h. */
#include "msgtext.h"

#include "safetext.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Deeper than any request of the protocol; a bound against a message
 * type that contains itself. */
#define MSGTEXT_MAX_DEPTH 8

/* A field's name as the operator knows it: "tz" is the time zone, a
 * rule's "name" says which kind of rule, lists say they are lists. */
static void msgtext_label(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                          char *buf, size_t len) {
  static const struct {
    const char *field, *words;
  } names[] = {
      {"tz", "time zone"},
      {"start", "start time"},
      {"end", "end time"},
      {"exceptions", "list of exception dates"},
      {"sources", "list of sources"},
      {"hubs", "list of hubs"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcmp(f->name, names[i].field) == 0) {
      snprintf(buf, len, "%s", names[i].words);
      return;
    }
  }
  if (strcmp(f->name, "name") == 0 && strstr(d->short_name, "Schedule")) {
    snprintf(buf, len, "schedule name");
    return;
  }
  if (strcmp(f->name, "name") == 0 && strstr(d->short_name, "Overflow")) {
    snprintf(buf, len, "overflow rule name");
    return;
  }
  size_t o = 0;
  for (const char *p = f->name; *p && o + 1 < len; p++)
    buf[o++] = *p == '_' ? ' ' : *p;
  if (len) buf[o] = '\0';
}

static bool msgtext_walk(const ProtobufCMessage *m, int depth, char *err, size_t errlen);

/* One value of field f: a string is checked, a message is walked. */
static bool msgtext_value(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                          const void *value, int depth, char *err, size_t errlen) {
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    const char *s = *(const char *const *)value;
    if (!s) return true;
    char what[64];
    msgtext_label(m->descriptor, f, what, sizeof what);
    return safetext_check(s, what, err, errlen);
  }
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)value;
    return !sub || msgtext_walk(sub, depth + 1, err, errlen);
  }
  return true;
}

static bool msgtext_walk(const ProtobufCMessage *m, int depth, char *err, size_t errlen) {
  if (depth > MSGTEXT_MAX_DEPTH) return true;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    /* Of a oneof, only the member that is set holds a value. */
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + f->quantifier_offset) != f->id)
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      const char *arr = *(const char *const *)(base + f->offset);
      for (size_t k = 0; arr && k < n; k++)
        if (!msgtext_value(m, f, arr + k * sizeof(void *), depth, err, errlen)) return false;
    } else if (!msgtext_value(m, f, base + f->offset, depth, err, errlen)) {
      return false;
    }
  }
  return true;
}

bool msgtext_check(const ProtobufCMessage *m, char *err, size_t errlen) {
  return !m || msgtext_walk(m, 0, err, errlen);
}
