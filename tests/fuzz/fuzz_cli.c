/* libFuzzer: nircctl's command line (controller/ctl_args.c). The input is
 * an argv vector, its arguments separated by NUL bytes, after the program
 * name; ctl_args_parse turns it into a request or a refusal without
 * connecting anywhere. A request that comes out must be one the link can
 * carry: it packs (no missing strings, no dangling pointers into argv
 * copies), unpacks to the same size, and names the body it says it has;
 * every site list in it holds valid slugs. Violations abort(), which the
 * fuzzer reports. */
#include "ctl_args.h"
#include "util.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ctl_args_t args;

static void fuzz_check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_cli: invariant broken: %s\n", what);
    abort();
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  opterr = 0; /* getopt's complaints are nircctl's output, not the parser's result */
  return 0;
}

static void fuzz_check_slugs(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    fuzz_check(v[i] && nirc_slug_valid(v[i]), "site lists hold valid slugs");
}

static void fuzz_check_request(const Nirc__OperatorRequest *req) {
  switch (req->body_case) {
  case NIRC__OPERATOR_REQUEST__BODY_STATUS: fuzz_check(req->status != NULL, "status body"); break;
  case NIRC__OPERATOR_REQUEST__BODY_CUTOVER:
    fuzz_check(req->cutover && req->cutover->n_sources > 0 && req->cutover->n_hubs > 0 &&
                   req->cutover->reason && *req->cutover->reason,
               "a cutover names sources, hubs and a reason");
    fuzz_check_slugs(req->cutover->sources, req->cutover->n_sources);
    fuzz_check_slugs(req->cutover->hubs, req->cutover->n_hubs);
    break;
  case NIRC__OPERATOR_REQUEST__BODY_RESTORE:
    fuzz_check(req->restore && (req->restore->n_sources > 0) != (req->restore->cutover_id != 0),
               "a restore names sources or a cutover, not both");
    fuzz_check_slugs(req->restore->sources, req->restore->n_sources);
    break;
  case NIRC__OPERATOR_REQUEST__BODY_PLAN:
    fuzz_check(req->plan != NULL, "plan body");
    fuzz_check_slugs(req->plan->sources, req->plan->n_sources);
    fuzz_check_slugs(req->plan->hubs, req->plan->n_hubs);
    break;
  case NIRC__OPERATOR_REQUEST__BODY_SCHEDULE:
    fuzz_check(req->schedule != NULL, "schedule body");
    if (req->schedule->op == NIRC__RULE_OP__RULE_OP_ADD) {
      const Nirc__ScheduleSpec *sp = req->schedule->spec;
      fuzz_check(sp && sp->start && sp->end && sp->n_sources > 0 && sp->n_hubs > 0,
                 "schedule add has a window, sources and hubs");
      fuzz_check_slugs(sp->sources, sp->n_sources);
      fuzz_check_slugs(sp->hubs, sp->n_hubs);
      for (size_t i = 0; i < sp->n_exceptions; i++)
        fuzz_check(sp->exceptions[i] != NULL, "exception dates are strings");
    }
    break;
  case NIRC__OPERATOR_REQUEST__BODY_OVERFLOW:
    fuzz_check(req->overflow != NULL, "overflow body");
    if (req->overflow->op == NIRC__RULE_OP__RULE_OP_ADD) {
      const Nirc__OverflowSpec *sp = req->overflow->spec;
      fuzz_check(sp && sp->source && sp->n_hubs > 0 && sp->share_cap_permille > 0,
                 "overflow add has a source, hubs and a cap");
      fuzz_check_slugs(sp->hubs, sp->n_hubs);
    }
    break;
  case NIRC__OPERATOR_REQUEST__BODY_HISTORY: fuzz_check(req->history != NULL, "history"); break;
  case NIRC__OPERATOR_REQUEST__BODY_ALARMS:
    fuzz_check(req->alarms != NULL, "alarms body");
    /* ack names one alarm and is not a listing; a note goes with an ack */
    fuzz_check(!(req->alarms->ack_id && req->alarms->all), "alarms: ack with --all");
    fuzz_check(req->alarms->ack_id || !req->alarms->note || !*req->alarms->note,
               "alarms: a note without ack");
    fuzz_check(req->alarms->limit <= 500, "alarms: --limit within 1-500");
    break;
  case NIRC__OPERATOR_REQUEST__BODY_NEXT:
    fuzz_check(req->next != NULL, "next body");
    fuzz_check(req->next->hours <= 168, "next: --hours within 1-168");
    break;
  case NIRC__OPERATOR_REQUEST__BODY_CAPACITY:
    fuzz_check(req->capacity != NULL, "capacity body");
    /* a change names its site; --clear sets nothing else; a note goes with a change */
    fuzz_check(!req->capacity->set || (req->capacity->site && *req->capacity->site),
               "capacity: a change without a site");
    fuzz_check(!req->capacity->clear || (!req->capacity->seats && !*req->capacity->roster &&
                                         !req->capacity->has_utc_offset),
               "capacity: --clear with values");
    fuzz_check(req->capacity->set || !*req->capacity->note, "capacity: a note without a change");
    fuzz_check(req->capacity->seats <= 100000, "capacity: --seats within 1-100000");
    fuzz_check(req->capacity->utc_offset_min >= -840 && req->capacity->utc_offset_min <= 840,
               "capacity: --utc-offset within a day");
    break;
  case NIRC__OPERATOR_REQUEST__BODY_REPORT:
    fuzz_check(req->report != NULL, "report body");
    fuzz_check(req->report->kind && strcmp(req->report->kind, "staffing") == 0,
               "report: staffing is the only one");
    /* a window is a date or a from/to pair, never both (their order is
     * checked once [ctl] tz applies) */
    fuzz_check(!req->report->from_ms == !req->report->to_ms, "report: --from without --to");
    fuzz_check(!(req->report->date && req->report->from_ms), "report: --date with --from");
    break;
  default: fuzz_check(false, "a request has a body"); break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* One copy of the input, NUL-terminated, cut into arguments at NULs. */
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[FUZZ_MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = "nircctl";
  for (size_t i = 0; i <= size && argc <= FUZZ_MAX_ARGS;) {
    argv[argc++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  argv[argc] = NULL;

  ctl_args_result_t rc = ctl_args_parse(argc, argv, &args);
  switch (rc) {
  case CTL_ARGS_REQUEST: {
    fuzz_check(args.cmd != NULL, "a request comes from a command");
    fuzz_check_request(&args.req);
    size_t n = nirc__operator_request__get_packed_size(&args.req);
    uint8_t *wire = malloc(n ? n : 1);
    if (wire) {
      fuzz_check(nirc__operator_request__pack(&args.req, wire) == n, "the request packs");
      Nirc__OperatorRequest *back = nirc__operator_request__unpack(NULL, n, wire);
      fuzz_check(back && back->body_case == args.req.body_case &&
                     nirc__operator_request__get_packed_size(back) == n,
                 "the request reads back as sent");
      nirc__operator_request__free_unpacked(back, NULL);
      free(wire);
    }
    break;
  }
  case CTL_ARGS_CMD_HELP: fuzz_check(args.cmd != NULL, "command help names a command"); break;
  default: break;
  }
  free(buf);
  return 0;
}
