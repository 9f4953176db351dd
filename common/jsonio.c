#include "jsonio.h"

#include <stdbool.h>
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

char *jsonio_dumps(const json_t *j, size_t flags) {
  jsonio_begin();
  char *text = json_dumps(j, flags);
  if (jsonio_end()) {
    /* The text may lack an object key: invalid JSON. */
    jsonio_next_free(text);
    return NULL;
  }
  return text;
}
