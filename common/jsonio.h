/* jsonio: jansson's loaders and json_dumps, made to fail cleanly when
 * memory runs out.
 *
 * jansson 2.14 ignores some allocation failures and reports success with
 * damaged data: its lexer drops a character it cannot store, so a string
 * or a number of 16 or more characters loads one character short
 * (akheron/jansson#362), and json_dumps leaves out an object key it cannot
 * append, writing invalid JSON (akheron/jansson#655). These wrappers watch
 * every allocation jansson makes during the call, through whatever
 * allocator is installed (json_set_alloc_funcs), and turn a call during
 * which one failed into a failure: NULL, with json_error_out_of_memory for
 * the loaders. Single-threaded use only, as everywhere in NIRC. */
#ifndef NIRC_JSONIO_H
#define NIRC_JSONIO_H

#include <jansson.h>
#include <stdio.h>

/* As json_loadf and json_loadb: a new reference, or NULL with `err`. */
json_t *jsonio_loadf(FILE *f, size_t flags, json_error_t *err);
json_t *jsonio_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);
/* As json_dumps: text to free(), or NULL. Every character safetext
 * forbids that JSON lets stand raw in a string is written as a \u escape
 * (DEL as \u007F, the C1 controls as \u0080-\u009F, U+2028, U+2029 and
 * the bidirectional controls): jansson escapes only C0, and the text is
 * read on terminals (nircctl --json, curl /status.json, a webhook
 * receiver's log), where U+009B is a CSI. The value is the same for any
 * JSON reader. Use this, not json_dumps, for JSON a person may see. */
char *jsonio_dumps(const json_t *j, size_t flags);

#endif
