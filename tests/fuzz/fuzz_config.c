/* libFuzzer: configuration files, parsed with nircd's option table (file
 * bytes from the fuzzer; the parser must reject or accept, never crash). */
#include "conf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[] = "/tmp/nirc-fuzz-config-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    unlink(path);
    return 0;
  }
  close(fd);
  nircd_conf_t *c = calloc(1, sizeof *c);
  char err[1024];
  if (c) conf_nircd_load(path, c, err, sizeof err);
  free(c);
  unlink(path);
  return 0;
}
