/* ctl_args: nircctl's command line, parsed without touching the network:
 * argv in, the OperatorRequest to send (pointing into a ctl_args_t) or the
 * lines to tell the user out. nircctl.c does the I/O around it; the
 * fuzzer (tests/fuzz/fuzz_cli.c) drives it with hostile argv vectors.
 *
 * Parsing uses GNU getopt_long, which permutes argv and, while `opterr` is
 * set, prints its own complaints about unknown options to stderr (nircctl
 * leaves that on; the fuzzer turns it off). Nothing else is printed. */
#ifndef NIRC_CTL_ARGS_H
#define NIRC_CTL_ARGS_H

#include "config.h"
#include "nirc.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* nircctl's exit codes (SPEC section 9). EXIT_NOT_APPLIED: a move the
 * controller took that no site applied (every one failed): nothing moved,
 * which is no partial success, and a script must not read it as one. */
enum {
  EXIT_DONE = 0,
  EXIT_REFUSED = 1,
  EXIT_USAGE = 2,
  EXIT_UNREACHABLE = 3,
  EXIT_PARTIAL = 4,
  EXIT_NOT_APPLIED = 5
};

#define CTL_MAX_LIST 64

typedef enum {
  CTL_CMD_SITE = 0,
  CTL_CMD_MAP,
  CTL_CMD_WATCH,
  CTL_CMD_STATUS,
  CTL_CMD_CUTOVER,
  CTL_CMD_RESTORE,
  CTL_CMD_READMIT,
  CTL_CMD_PLAN,
  CTL_CMD_HISTORY,
  CTL_CMD_SCHEDULE,
  CTL_CMD_OVERFLOW,
  CTL_CMD_ALARMS,
  CTL_CMD_NEXT,
  CTL_CMD_CAPACITY,
  CTL_CMD_REPORT,
  CTL_NCMDS
} ctl_cmd_id_t;

typedef struct ctl_cmd ctl_cmd_t;

/* Everything parsed from the command line. Strings are borrowed from argv
 * (or point into the buffers below); the request points into this struct,
 * so it lives as long as the struct does. */
typedef struct {
  /* Global options, before the command. */
  const char *config_path, *ca, *cert, *key, *timeout; /* NULL: not given */
  const char *controllers[CONFIG_LIST_MAX];            /* --controller, in order */
  unsigned ncontrollers;
  int json;
  const ctl_cmd_t *cmd;       /* the command; NULL when none was named */
  uint64_t watch_interval_ms; /* watch --interval; default 2 s */
  const char *map_output;     /* map -o FILE; NULL: stdout */
  Nirc__OperatorRequest req;  /* what to send (request_id is the caller's) */
  /* Why the command line was refused: "nircctl: ...\n" lines, possibly
   * none (getopt has then said it). */
  char msg[1024];

  /* Storage for what the builders point the request at. */
  char *sources[CTL_MAX_LIST], *hubs[CTL_MAX_LIST];
  char listbuf[2][4096];
  Nirc__StatusRequest status;
  Nirc__CutoverRequest cutover;
  Nirc__RestoreRequest restore;
  Nirc__PlanRequest plan;
  Nirc__HistoryRequest history;
  Nirc__AlarmRequest alarms;
  Nirc__ScheduleRequest schedule;
  Nirc__ScheduleSpec sched_spec;
  Nirc__OverflowRequest overflow;
  Nirc__OverflowSpec ovf_spec;
  char *exceptions[64];
  char exbuf[2048];
  size_t exused;     /* bytes of exbuf taken by earlier --except options */
  uint32_t share;    /* --share, permille */
  const char *amend; /* cutover --amend ID, or NULL */
  const char *tz;    /* history --tz ZONE: times shown in it; NULL: [ctl] tz */
  /* history --since/--until as given: a time without an offset is in the
   * zone history shows, known only once the config is read, so nircctl
   * sets since_ms/until_ms again with ctl_parse_when. */
  const char *since, *until;
  int csv; /* history --csv */
  /* history --all (`all`): every match, page by page; with --limit N only
   * the newest N (history_all_limit; 0: no --limit, and more than
   * CTL_HISTORY_ALL_MAX matching entries are refused unless --csv streams
   * them). */
  uint32_t history_all_limit;
  /* status --moved, --problems, --zh: filters and names, applied by
   * nircctl to the whole reply (hubs receiving calls and alarms need it). */
  bool moved, problems, zh;
  /* status --state/--hub/--match/--limit/--offset/--all: evaluated by the
   * controller (StatusRequest); `all` pages through every matching site,
   * `paged` says --limit or --offset was given (one page, as asked). */
  Nirc__LinkState states[4];
  bool all, paged;
  Nirc__NextRequest next;              /* next --hours N */
  Nirc__CapacityRequest capacity;      /* capacity [SITE [--seats N] [--roster SPEC] ...] */
  Nirc__SiteChangeRequest site_change; /* site add|set|remove SLUG ... */
  Nirc__ReportRequest report; /* report staffing [--schedule ID] [--date D | --from --to] */
  /* report --from/--to as given: without an offset they are in [ctl] tz,
   * so nircctl sets from_ms/to_ms again once the config is read. */
  const char *report_from, *report_to;
} ctl_args_t;

/* Shared by the parsers of ctl_args*.c: the usage error into a->error
 * (what nircctl prints), and "+08:00", "UTC" or minutes into minutes
 * east of UTC (0, or -1). */
void ctl_say(ctl_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_parse_offset(const char *s, int32_t *out);
/* status [SITE] [filters] (ctl_args_status.c), also for site, map and
 * watch: argv[0] is the command. */
int ctl_build_status(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
/* site add|set|remove (ctl_args_site.c): argv[0] is the action. */
int ctl_build_site_change(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
/* schedule ... and overflow ... (ctl_args_rules.c): argv[1] is the op. */
int ctl_build_schedule(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
int ctl_build_overflow(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
/* "a,b,c" into `out`, pointers into buf, each a valid slug; the count, or
 * -1 with the reason in a->error. */
int ctl_split_list(ctl_args_t *a, const char *csv, char *buf, size_t len, char **out,
                   const char *what);
/* A whole number up to max, or -1 with the reason in a->error. */
int ctl_parse_uint(ctl_args_t *a, const char *what, const char *v, uint32_t max, uint32_t *out);

/* The causes a route change is audited with (engine.h route_cause_t), for
 * history --cause; NULL-terminated. */
extern const char *const ctl_route_causes[];
/* Parses an ISO 8601 time ("2020-01-23T03:12", "...:05", "...+08:00",
 * "...Z"; without an offset it is in `tz`, resolved as tz_from_local does)
 * or a duration before now_ms ("2h") into Unix milliseconds. A local time
 * that the clocks skipped or repeated in tz gets a sentence in `note` (may
 * be NULL) saying which instant was taken and how to name the other;
 * otherwise note is "". 0, or -1. Zones are checked with tz_valid (tz.h),
 * the engine's own check. */
int ctl_parse_when(const char *s, const char *tz, int64_t now_ms, int64_t *out_ms, char *note,
                   size_t notelen);

/* history: whether --until is not later than --since where nircctl can
 * tell (two durations; two times when `times`: their zone is final), with
 * the words in a->msg; a time and a duration are for the controller, on
 * its business clock. */
bool ctl_history_window_empty(ctl_args_t *a, bool times);

struct ctl_cmd {
  ctl_cmd_id_t id;
  const char *name;
  const char *summary;
  const char *help; /* full help with examples */
  /* Fills a->req from the command's own argv (argv[0] is the command
   * name, as getopt_long expects). 0 or EXIT_USAGE with a->msg. */
  int (*build)(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a);
  uint64_t wait_ms; /* how long the answer may take */
};

/* Every command, in the order `nircctl help` lists them. */
extern const ctl_cmd_t ctl_cmds[CTL_NCMDS];

typedef enum {
  CTL_ARGS_REQUEST = 0, /* a->req is ready to send to a controller */
  CTL_ARGS_USAGE,       /* bad or missing command: a->msg, then the usage to stderr; exit 2 */
  CTL_ARGS_ERROR,       /* bad command arguments: a->msg to stderr; exit 2 */
  CTL_ARGS_HELP,        /* --help or `help`: the usage to stdout; exit 0 */
  CTL_ARGS_CMD_HELP,    /* COMMAND --help: a->cmd->help to stdout; exit 0 */
  CTL_ARGS_VERSION,     /* --version; exit 0 */
} ctl_args_result_t;

/* Parses nircctl's whole command line (argv[0] is the program). `a` is
 * reset first. argv is permuted by getopt and borrowed by the result. */
ctl_args_result_t ctl_args_parse(int argc, char **argv, ctl_args_t *a);

#endif
