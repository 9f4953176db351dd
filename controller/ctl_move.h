/* ctl_move: how nircctl words the outcome of a move (cutover, restore,
 * readmit): the sites that did not apply it, the counts, and one verdict
 * that the counts bear out, with its exit code. Pure output: the reply
 * in, text and an exit code out (JSON is nircctl's, like every
 * command's). */
#ifndef NIRC_CTL_MOVE_H
#define NIRC_CTL_MOVE_H

#include "nirc.pb-c.h"

#include <stdbool.h>
#include <stdio.h>

typedef enum {
  CTL_MOVE_APPLIED = 0, /* every site applied its directive (or none had one) */
  CTL_MOVE_PARTIAL,     /* some applied, some failed or are pending */
  CTL_MOVE_PENDING,     /* none applied yet, none failed: every one pending */
  CTL_MOVE_NOT_APPLIED, /* none applied, none pending: every one failed */
  CTL_MOVE_NOT_YET,     /* none applied, some failed, the others pending */
} ctl_move_verdict_t;

ctl_move_verdict_t ctl_move_verdict(const Nirc__MoveReply *m);

/* The exit code (ctl_args.h): 0 when every site applied and the record is
 * durable; 5 (nothing applied) when every site failed; 4 otherwise, as
 * long as some site applied or is still pending, or the record is not
 * durable. */
int ctl_move_exit(const Nirc__MoveReply *m, bool not_durable);

/* "applied", "failed", "rejected", "pending" or "unknown". */
const char *ctl_move_outcome_word(const Nirc__SiteOutcome *o);

/* The sites that did not apply, one line each, then the counts and, for
 * a cutover, its end in zone tz ("cutover 1000001: 1 applied, 3 failed in
 * 10053 ms; until 2020-01-23 13:30 (Asia/Shanghai)"). */
void ctl_move_print(FILE *out, const Nirc__MoveReply *m, const char *tz);

/* The verdict, one line ("nircctl: not applied: ..."); nothing when every
 * site applied. Every text from the controller is escaped. */
void ctl_move_say(FILE *err, const Nirc__MoveReply *m);

#endif
