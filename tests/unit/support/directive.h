/* tdirective: the Directive the tests send an agent, with the storage for
 * its shares. Shared by test_agent_directive and the fuzzers' seed writer
 * (tests/fuzz/mkseeds.c), so that the unit tests and the seeds speak of
 * the same messages. No cmocka here: mkseeds is not a cmocka test. */
#ifndef NIRC_TEST_DIRECTIVE_H
#define NIRC_TEST_DIRECTIVE_H

#include "nirc.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  Nirc__Directive d;
  Nirc__RouteShare shares[2];
  Nirc__RouteShare *ptrs[2];
} tdirective_t;

/* A directive for `site` at (epoch, version): {to: 1000}, or
 * {site: 700, to: 300} if split. Every other field is protobuf-c's
 * default. The strings are borrowed; d points into x. */
void tdirective_make(tdirective_t *x, const char *site, uint64_t epoch, uint64_t version,
                     const char *to, bool split, const char *reason);

#endif
