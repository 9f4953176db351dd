/* ctl_standby: nircctl when only standbys answer (ctl_standby.h). */
#include "ctl_standby.h"

#include <string.h>

ctl_standby_next_t ctl_standby_next(unsigned standbys, unsigned rounds, unsigned max_rounds,
                                    bool blocked) {
  /* A reason is not an election: asking again for seconds would only make
   * the operator wait for the same answer. */
  if (blocked || standbys == 0) return CTL_STANDBY_STOP;
  return rounds < max_rounds ? CTL_STANDBY_AGAIN : CTL_STANDBY_STOP;
}

const char *ctl_standby_check(const char *blocked) {
  if (blocked && strcmp(blocked, "rules_locked") == 0)
    return "A database session holds or waits for a lock on the rule tables (named above): "
           "end it (COMMIT or ROLLBACK in it, or the pg_terminate_backend call above) if it is "
           "not a controller's; the controller leads within a few seconds, without a restart "
           "(docs/OPERATIONS.md).";
  if (blocked && strcmp(blocked, "rules_load") == 0)
    return "The rules in the database cannot be loaded (the reason above): mend the row it "
           "names, or the database; the controller tries again by itself and leads, without a "
           "restart (docs/OPERATIONS.md).";
  if (blocked && strcmp(blocked, "leader_lock") == 0)
    return "The leader lock is held by a PostgreSQL backend that was asked to end and has not "
           "(named above): look at that pid on the database host; kill -CONT it if it is "
           "stopped (state T), else restart PostgreSQL. A controller leads within seconds after "
           "(docs/OPERATIONS.md).";
  return "The controller's words above say what keeps it from leading; its log and its "
         "status page say more.";
}

void ctl_standby_say(FILE *out, const char *blocked, const char *said, bool asked) {
  fprintf(out, "nircctl: no controller leads now, and none will until this is fixed:\n%s\n%s\n",
          said, ctl_standby_check(blocked));
  /* A standby takes no request; one that took it and did not answer may
   * have made the change (nircctl says so then). */
  if (!asked) fprintf(out, "Nothing was changed: ask again once it is fixed.\n");
}

/* The command whose answer shows whether the change asked for by `cmd`
 * is in force, answered from the leader's memory. */
static const char *ctl_standby_where(ctl_cmd_id_t cmd) {
  switch (cmd) {
  case CTL_CMD_SCHEDULE: return "`nircctl schedule list`";
  case CTL_CMD_OVERFLOW: return "`nircctl overflow list`";
  case CTL_CMD_ALARMS: return "`nircctl alarms`";
  case CTL_CMD_CAPACITY: return "`nircctl capacity`";
  default: return "`nircctl status` (each site's route and the rule it follows)";
  }
}

void ctl_standby_unanswered(FILE *out, ctl_cmd_id_t cmd) {
  fprintf(out,
          "If this asked for a change, it may still have been made: before asking again, see "
          "whether it is in force with %s, which the leader answers from memory (`nircctl "
          "history` reads the database, which may be what it waits on).\n",
          ctl_standby_where(cmd));
}

void ctl_standby_no_answer(FILE *out, ctl_cmd_id_t cmd, const char *errors, uint64_t timeout_ms) {
  fprintf(out, "nircctl: no answer from a controller:\n%s\n", errors);
  ctl_standby_unanswered(out, cmd);
  fprintf(out, "Or give it longer (--timeout, now %llu ms per controller).\n",
          (unsigned long long)timeout_ms);
}

bool ctl_standby_tell(FILE *out, const char *note, bool retrying, uint64_t left_ms) {
  if (!retrying)
    fprintf(out, "nircctl: %s\n", note);
  else
    fprintf(out, "nircctl: %s; retrying for up to %llu s\n", note,
            (unsigned long long)((left_ms + 999) / 1000));
  return retrying;
}

void ctl_standby_answered(FILE *out, const char *by) {
  fprintf(out,
          "nircctl: answered by %s after the election (the note above was a wait, not an "
          "error)\n",
          by);
}
