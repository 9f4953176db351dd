#include "jsonio.h"

#include "safetext.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_malloc_t jsonio_next_malloc; /* the allocator installed before the call */
static json_free_t jsonio_next_free;
static bool jsonio_failed;

static void *jsonio_malloc(size_t n) {
  void *p = jsonio_next_malloc(n);
  if (!p) jsonio_failed = true;
  return p;
}

static void jsonio_begin(void) {
  json_get_alloc_funcs(&jsonio_next_malloc, &jsonio_next_free);
  jsonio_failed = false;
  json_set_alloc_funcs(jsonio_malloc, jsonio_next_free);
}

/* Puts the allocator back; true if an allocation failed meanwhile. */
static bool jsonio_end(void) {
  json_set_alloc_funcs(jsonio_next_malloc, jsonio_next_free);
  return jsonio_failed;
}

static json_t *jsonio_loaded(json_t *j, json_error_t *err) {
  if (!jsonio_end()) return j;
  /* Whatever jansson returned may be missing characters: not to be used. */
  json_decref(j);
  if (err) {
    memset(err, 0, sizeof *err);
    snprintf(err->text, sizeof err->text, "out of memory");
    /* Where json_error_code() (jansson.h) reads the code from. */
    err->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
  }
  return NULL;
}

json_t *jsonio_loadf(FILE *f, size_t flags, json_error_t *err) {
  jsonio_begin();
  return jsonio_loaded(json_loadf(f, flags, err), err);
}

json_t *jsonio_loadb(const char *buf, size_t len, size_t flags, json_error_t *err) {
  jsonio_begin();
  return jsonio_loaded(json_loadb(buf, len, flags, err), err);
}

/* The UTF-8 length of a code point below U+10000 (every one safetext
 * forbids is). */
static size_t jsonio_utf8_len(uint32_t cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
}

/* Whether a character safetext forbids is escaped here. C0 is not: jansson
 * already escapes it inside strings, so a raw one is the newline or tab
 * of JSON_INDENT between tokens. Everything else can only stand inside a
 * string (outside strings JSON is ASCII punctuation, digits and words),
 * where the escape keeps the document valid. */
static bool jsonio_escaped(const safetext_hit_t *hit) {
  return hit->cp >= 0x20;
}

/* jansson's text with the characters of jsonio_escaped written as \uXXXX
 * (jsonio.h). Returns `text` itself when there is none, else a copy from
 * malloc with `text` freed; NULL (text freed) when memory runs out or the
 * text is not UTF-8 (jansson never writes that). */
static char *jsonio_escape_controls(char *text) {
  size_t extra = 0;
  safetext_hit_t hit;
  for (const char *p = text; safetext_find(p, &hit); p += hit.at + jsonio_utf8_len(hit.cp)) {
    if (hit.kind == SAFETEXT_BAD_BYTE) {
      jsonio_next_free(text);
      return NULL;
    }
    if (jsonio_escaped(&hit)) extra += 6 - jsonio_utf8_len(hit.cp);
  }
  if (extra == 0) return text;
  size_t len = strlen(text);
  char *out = malloc(len + extra + 1), *o = out;
  if (out) {
    const char *p = text;
    for (; safetext_find(p, &hit); p += hit.at + jsonio_utf8_len(hit.cp)) {
      size_t keep = hit.at + (jsonio_escaped(&hit) ? 0 : jsonio_utf8_len(hit.cp));
      memcpy(o, p, keep);
      o += keep;
      if (jsonio_escaped(&hit)) o += snprintf(o, 7, "\\u%04X", (unsigned)hit.cp);
    }
    memcpy(o, p, strlen(p) + 1);
  }
  jsonio_next_free(text);
  return out;
}

char *jsonio_dumps(const json_t *j, size_t flags) {
  jsonio_begin();
  char *text = json_dumps(j, flags);
  if (jsonio_end()) {
    /* The text may lack an object key: invalid JSON. */
    jsonio_next_free(text);
    return NULL;
  }
  return text ? jsonio_escape_controls(text) : NULL;
}
