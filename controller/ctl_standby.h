/* ctl_standby: what nircctl does and says when only standbys answer, or
 * when a controller took the request and never answered.
 * While an election runs (no leader named, no reason given) it asks again
 * for a few seconds, as a leader is usually elected within a lease. A
 * standby that says what keeps the election's winner from leading
 * (Error.leader_blocked: a session locks the rule tables, a rule that
 * cannot be read) will not lead by itself within seconds: nircctl stops
 * after the round and tells the operator what to check. Pure: no I/O. */
#ifndef NIRC_CTL_STANDBY_H
#define NIRC_CTL_STANDBY_H

#include "ctl_args.h" /* ctl_cmd_id_t */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
  CTL_STANDBY_AGAIN = 0, /* only standbys answered, an election runs: another round */
  CTL_STANDBY_STOP,      /* give up now: exit 3 */
} ctl_standby_next_t;

/* After a round through the controller list: `standbys` answered in it,
 * `rounds` were done before it (of at most `max_rounds`), and `blocked`
 * says a standby named what keeps every controller from leading. */
ctl_standby_next_t ctl_standby_next(unsigned standbys, unsigned rounds, unsigned max_rounds,
                                    bool blocked);

/* What the operator should check for a leader_blocked reason
 * ("rules_locked", "rules_load", or one a newer nircd sends). Static text. */
const char *ctl_standby_check(const char *blocked);

/* The whole message for exit 3 when a standby named a reason: `said` is
 * what each controller answered (already escaped, one line each); `asked`:
 * a controller took the request and never answered (then "nothing was
 * changed" would not be known to be true). */
void ctl_standby_say(FILE *out, const char *blocked, const char *said, bool asked);

/* Said when a controller took the request of command `cmd` and never
 * answered (a change asked for may have been made): where to see whether
 * it is in force. That is a command the leader answers from its memory
 * (status, schedule list, alarms...), not `nircctl history`: the history
 * is read from the database, which is what a controller that does not
 * answer usually waits on, and a change not yet saved is not in it. */
void ctl_standby_unanswered(FILE *out, ctl_cmd_id_t cmd);

/* The whole message for exit 3 when a controller took the request and
 * sent no answer within --timeout (`errors`: what each said, escaped). */
void ctl_standby_no_answer(FILE *out, ctl_cmd_id_t cmd, const char *errors, uint64_t timeout_ms);

/* Tells `note` (what a standby said, escaped) on `out`. `retrying` (no
 * leader named: an election runs) adds that nircctl asks again for at most
 * `left_ms` more (its --timeout deadline): before, the bare "cannot answer
 * now" read as the failure even when the new leader answered after it.
 * Returns `retrying`. */
bool ctl_standby_tell(FILE *out, const char *note, bool retrying, uint64_t left_ms);

/* Said on `out` when, after such a note, controller `by` (escaped)
 * answered: the note was a wait, not an error. */
void ctl_standby_answered(FILE *out, const char *by);

#endif
