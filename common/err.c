#include "err.h"

#include <stddef.h>

#define NIRC_ERR_TEXT(name, text) [NIRC_E##name - NIRC__E_BASE] = text,
static const char *const err_text[] = {NIRC_ERRNO_MAP(NIRC_ERR_TEXT)};
#undef NIRC_ERR_TEXT

#define NIRC_ERR_NAME(name, text) [NIRC_E##name - NIRC__E_BASE] = #name,
static const char *const err_name[] = {NIRC_ERRNO_MAP(NIRC_ERR_NAME)};
#undef NIRC_ERR_NAME

static int err_index(int code) {
  if (code <= NIRC__E_BASE || code >= NIRC__E_END) return -1;
  return code - NIRC__E_BASE;
}

const char *nirc_strerror(int code) {
  if (code == 0) return "success";
  int i = err_index(code);
  return i < 0 ? "unknown error" : err_text[i];
}

const char *nirc_errname(int code) {
  if (code == 0) return "OK";
  int i = err_index(code);
  return i < 0 ? "UNKNOWN" : err_name[i];
}
