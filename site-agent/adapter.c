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
