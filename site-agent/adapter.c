#include "adapter.h"

#include <string.h>

static const adapter_ops_t *const adapters[] = {&adapter_sim_ops, &adapter_exec_ops,
                                                &adapter_kamailio_ops};

const adapter_ops_t *adapter_find(const char *name) {
  for (size_t i = 0; i < sizeof adapters / sizeof adapters[0]; i++)
    if (strcmp(adapters[i]->name, name) == 0) return adapters[i];
  return NULL;
}

const char *adapter_names(void) {
  return "sim, exec, kamailio";
}

const char *adapter_verify_name(adapter_verify_t v) {
  switch (v) {
  case ADAPTER_VERIFY_MATCH: return "match";
  case ADAPTER_VERIFY_MISMATCH: return "mismatch";
  case ADAPTER_VERIFY_UNVERIFIED: return "unverified";
  case ADAPTER_VERIFY_UNREADABLE: return "unreadable";
  }
  return "?";
}
