/* ctl_args: nircctl's command line into an OperatorRequest, with no I/O
 * but getopt's own complaints (see ctl_args.h). */
#include "ctl_args.h"

#include "clock.h"
#include "ctl_history.h"
#include "msgtext.h"
#include "safetext.h"
#include "tz.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Adds the line "nircctl: <text>" to what the user will be told. A line
 * too long for what is left of a->msg is cut, never overflowed. The text
 * is escaped (common/safetext.h): an argument quoted back cannot act on
 * the terminal or break the line. */
void ctl_say(ctl_args_t *a, const char *fmt, ...) {
  size_t used = strlen(a->msg);
  size_t room = sizeof a->msg - used;
  if (room < sizeof "nircctl: x\n") return;
  char *p = a->msg + used;
  memcpy(p, "nircctl: ", sizeof "nircctl: ");
  size_t pre = sizeof "nircctl: " - 1;
  char raw[sizeof a->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  safetext_escape(raw, p + pre, room - pre - 1); /* one byte kept for the newline */
  size_t len = strlen(p + pre);
  p[pre + len] = '\n';
  p[pre + len + 1] = '\0';
}

/* Splits "a,b,c" into `out` (pointers into buf). Returns the count or -1. */
int ctl_split_list(ctl_args_t *a, const char *csv, char *buf, size_t len, char **out,
                   const char *what) {
  if (nirc_strlcpy(buf, csv, len) >= len) {
    ctl_say(a, "%s list too long", what);
    return -1;
  }
  int n = 0;
  char *save = NULL;
  for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ')
      t++;
    if (!nirc_slug_valid(t)) {
      ctl_say(a, "'%s' is not a site slug (lowercase, e.g. hubei)", t);
      return -1;
    }
    if (n == CTL_MAX_LIST) {
      ctl_say(a, "at most %d %s", CTL_MAX_LIST, what);
      return -1;
    }
    out[n++] = t;
  }
  if (n == 0) ctl_say(a, "no %s given", what);
  return n ? n : -1;
}

#define build_status ctl_build_status

static int build_watch(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc == 3 && strcmp(argv[1], "--interval") == 0) {
    if (nirc_parse_duration_ms(argv[2], &a->watch_interval_ms) != 0 || a->watch_interval_ms < 200) {
      ctl_say(a, "--interval '%s': a duration of at least 200ms", argv[2]);
      return EXIT_USAGE;
    }
  } else if (argc != 1) {
    ctl_say(a, "usage: watch [--interval DURATION]");
    return EXIT_USAGE;
  }
  char *none[] = {argv[0]};
  return build_status(1, none, req, a);
}

static int build_site(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc >= 2 && (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "set") == 0 ||
                    strcmp(argv[1], "remove") == 0))
    return ctl_build_site_change(argc - 1, argv + 1, req, a);
  if (argc != 2 || argv[1][0] == '-') {
    ctl_say(a, "usage: site SLUG | site add|set|remove SLUG [options] (nircctl site --help)");
    return EXIT_USAGE;
  }
  return build_status(argc, argv, req, a);
}

static int build_map(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  if (argc == 3 && strcmp(argv[1], "-o") == 0)
    a->map_output = argv[2];
  else if (argc != 1) {
    ctl_say(a, "usage: map [-o FILE.svg]");
    return EXIT_USAGE;
  }
  char *none[] = {argv[0]};
  return build_status(1, none, req, a);
}

static int build_next(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  nirc__next_request__init(&a->next);
  a->next.hours = 24;
  if (argc == 3 && strcmp(argv[1], "--hours") == 0) {
    if (ctl_parse_uint(a, "--hours", argv[2], 168, &a->next.hours) != 0 || a->next.hours == 0) {
      if (a->next.hours == 0) ctl_say(a, "--hours: at least 1");
      return EXIT_USAGE;
    }
  } else if (argc != 1) {
    ctl_say(a, "usage: next [--hours N]");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_NEXT;
  req->next = &a->next;
  return 0;
}

/* Parses the options shared by cutover and plan. */
static int parse_move(int argc, char **argv, ctl_args_t *a, int *nsrc, int *nhub,
                      const char **reason, const char **dur, const char **until, int *dry,
                      int *force, const char **schedule) {
  static const struct option o[] = {
      {"to", required_argument, NULL, 't'},       {"reason", required_argument, NULL, 'r'},
      {"for", required_argument, NULL, 'f'},      {"until", required_argument, NULL, 'u'},
      {"dry-run", no_argument, NULL, 'n'},        {"force", no_argument, NULL, 'F'},
      {"schedule", required_argument, NULL, 's'}, {"share", required_argument, NULL, 'p'},
      {"amend", required_argument, NULL, 'a'},    {NULL, 0, NULL, 0},
  };
  const char *to = NULL;
  int ch;
  optind = 0;
  /* Permuting getopt: options may come before or after the sources. */
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 't': to = optarg; break;
    case 'r': *reason = optarg; break;
    case 'f': *dur = optarg; break;
    case 'u': *until = optarg; break;
    case 'n': *dry = 1; break;
    case 'F': *force = 1; break;
    case 's': *schedule = optarg; break;
    case 'a': a->amend = optarg; break;
    case 'p':
      /* The range (1-1000) is the controller's to refuse, with the reason;
       * here only "is it a number". */
      if (ctl_parse_uint(a, "--share (permille)", optarg, 1000000, &a->share) || a->share == 0) {
        ctl_say(a, "--share must be a number of permille, 1-1000");
        return EXIT_USAGE;
      }
      break;
    default: return EXIT_USAGE;
    }
  }
  /* Options may come after the sources too: collect the non-options. */
  int rest = argc - optind;
  if (rest > 1) {
    ctl_say(a, "give the sources as one comma-separated list");
    return EXIT_USAGE;
  }
  *nsrc = 0;
  if (rest == 1 && (*nsrc = ctl_split_list(a, argv[optind], a->listbuf[0], sizeof a->listbuf[0],
                                           a->sources, "sources")) < 0)
    return EXIT_USAGE;
  *nhub = 0;
  if (to &&
      (*nhub = ctl_split_list(a, to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  return 0;
}

static int build_cutover(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  int nsrc, nhub, dry = 0, force = 0;
  const char *reason = NULL, *dur = NULL, *until = NULL, *schedule = NULL;
  if (parse_move(argc, argv, a, &nsrc, &nhub, &reason, &dur, &until, &dry, &force, &schedule))
    return EXIT_USAGE;
  uint64_t amend = 0;
  if (a->amend) {
    char *end;
    amend = strtoull(a->amend, &end, 10);
    if (!*a->amend || *end || amend == 0) {
      ctl_say(a, "--amend '%s' is not a cutover id", a->amend);
      return EXIT_USAGE;
    }
    if (nsrc != 0 || schedule || (nhub == 0 && a->share == 0 && !dur && !until)) {
      ctl_say(a, "usage: cutover --amend ID [--to HUB[,HUB...]] [--share PERMILLE] "
                 "[--for DURATION|--until TIME] [--reason TEXT] [--dry-run] [--force]");
      return EXIT_USAGE;
    }
  } else if (nsrc == 0 || nhub == 0 || !reason || !*reason || schedule) {
    ctl_say(a, "usage: cutover SRC[,SRC...] --to HUB[,HUB...] --reason TEXT "
               "[--for DURATION|--until TIME] [--dry-run] [--force]");
    return EXIT_USAGE;
  }
  if (dur && until) {
    ctl_say(a, "give --for or --until, not both");
    return EXIT_USAGE;
  }
  nirc__cutover_request__init(&a->cutover);
  if (dur) {
    uint64_t ms;
    if (nirc_parse_duration_ms(dur, &ms) != 0 || ms == 0) {
      ctl_say(a, "--for '%s': expected a duration such as 90m, 6h", dur);
      return EXIT_USAGE;
    }
    a->cutover.expires_in_ms = (int64_t)ms;
  }
  if (until) {
    int64_t ms;
    if (clock_parse_iso(until, &ms) != 0) {
      ctl_say(a, "--until '%s': expected ISO 8601, e.g. 2020-01-23T18:00:00+08:00", until);
      return EXIT_USAGE;
    }
    a->cutover.expires_ms = ms;
  }
  a->cutover.sources = a->sources;
  a->cutover.n_sources = (size_t)nsrc;
  a->cutover.hubs = a->hubs;
  a->cutover.n_hubs = (size_t)nhub;
  a->cutover.reason = (char *)(reason ? reason : "");
  a->cutover.dry_run = dry;
  a->cutover.force = force;
  a->cutover.share_permille = a->share;
  a->cutover.amend_id = amend;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_CUTOVER;
  req->cutover = &a->cutover;
  return 0;
}

static int build_restore(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {{"cutover", required_argument, NULL, 'c'},
                                    {"reason", required_argument, NULL, 'r'},
                                    {NULL, 0, NULL, 0}};
  const char *id = NULL, *reason = "";
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    if (ch == 'c')
      id = optarg;
    else if (ch == 'r')
      reason = optarg;
    else
      return EXIT_USAGE;
  }
  nirc__restore_request__init(&a->restore);
  int n = 0;
  if (argc - optind > 1) {
    ctl_say(a, "give the sources as one comma-separated list");
    return EXIT_USAGE;
  }
  if (optind < argc && (n = ctl_split_list(a, argv[optind], a->listbuf[0], sizeof a->listbuf[0],
                                           a->sources, "sources")) < 0)
    return EXIT_USAGE;
  if ((n == 0) == (id == NULL)) {
    ctl_say(a, "usage: restore SRC[,SRC...] | restore --cutover ID");
    return EXIT_USAGE;
  }
  if (id) {
    char *end;
    a->restore.cutover_id = strtoull(id, &end, 10);
    if (!*id || *end || a->restore.cutover_id == 0) {
      ctl_say(a, "--cutover '%s' is not a cutover id", id);
      return EXIT_USAGE;
    }
  }
  a->restore.sources = a->sources;
  a->restore.n_sources = (size_t)n;
  a->restore.reason = (char *)reason;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_RESTORE;
  req->restore = &a->restore;
  return 0;
}

static int build_readmit(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {{"reason", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
  const char *reason = "";
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    if (ch == 'r')
      reason = optarg;
    else
      return EXIT_USAGE;
  }
  nirc__restore_request__init(&a->restore);
  int n = 0;
  if (argc - optind != 1 || (n = ctl_split_list(a, argv[optind], a->listbuf[0],
                                                sizeof a->listbuf[0], a->sources, "sites")) <= 0) {
    ctl_say(a, "usage: readmit SITE[,SITE...] [--reason TEXT]");
    return EXIT_USAGE;
  }
  a->restore.sources = a->sources;
  a->restore.n_sources = (size_t)n;
  a->restore.reason = (char *)reason;
  a->restore.readmit = 1;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_RESTORE;
  req->restore = &a->restore;
  return 0;
}

static int build_plan(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  int nsrc, nhub, dry = 0, force = 0;
  const char *reason = NULL, *dur = NULL, *until = NULL, *schedule = NULL;
  if (parse_move(argc, argv, a, &nsrc, &nhub, &reason, &dur, &until, &dry, &force, &schedule))
    return EXIT_USAGE;
  /* parse_move takes cutover's options, which the plan request cannot
   * carry: dropped, the prediction was of another move. Refused, naming
   * what predicts that move. */
  const char *ignored = a->share   ? "--share N"
                        : dur      ? "--for DURATION"
                        : until    ? "--until TIME"
                        : force    ? "--force"
                        : a->amend ? "--amend ID"
                                   : NULL;
  if (ignored) {
    int opt = (int)strcspn(ignored, " ");
    /* cutover wants a reason even for a dry run; the suggestion says so,
     * or following it would be the next usage error. */
    if (a->amend)
      ctl_say(a, "plan does not take --amend; `nircctl cutover --amend ID [--to HUB] "
                 "[--share N] --dry-run` shows the amended move's prediction");
    else
      ctl_say(a,
              "plan does not take %.*s; `nircctl cutover SRC --to HUB %s --reason TEXT "
              "--dry-run` shows that move's prediction",
              opt, ignored, ignored);
    return EXIT_USAGE;
  }
  if (reason || dry) {
    ctl_say(a, "plan does not take %s: it moves nothing and records nothing",
            reason ? "--reason" : "--dry-run");
    return EXIT_USAGE;
  }
  nirc__plan_request__init(&a->plan);
  if (schedule && (nsrc || nhub)) {
    ctl_say(a, "plan either a move (SRC --to HUB) or --schedule NAME");
    return EXIT_USAGE;
  }
  if (!schedule && (nsrc == 0 || nhub == 0)) {
    ctl_say(a, "usage: plan SRC[,SRC...] --to HUB[,HUB...] | plan --schedule NAME");
    return EXIT_USAGE;
  }
  a->plan.sources = a->sources;
  a->plan.n_sources = (size_t)nsrc;
  a->plan.hubs = a->hubs;
  a->plan.n_hubs = (size_t)nhub;
  a->plan.schedule_name = (char *)(schedule ? schedule : "");
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_PLAN;
  req->plan = &a->plan;
  return 0;
}

const char *const ctl_route_causes[] = {"cutover",      "schedule",     "overflow", "cutover-end",
                                        "schedule-end", "overflow-end", "capacity", "hub-lost",
                                        "hub-return",   "hub-switch",   "rollback", "senders",
                                        "no-rule",      "agent-return", NULL};

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t ctl_days(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* "+02:00": the UTC offset of a local wall time (ms as if UTC) at instant t. */
static void ctl_offset_text(int64_t wall_ms, int64_t t_ms, char *buf, size_t len) {
  int64_t off = (wall_ms - t_ms) / 60000;
  int64_t a = off < 0 ? -off : off;
  snprintf(buf, len, "%c%02d:%02d", off < 0 ? '-' : '+', (int)(a / 60), (int)(a % 60));
}

int ctl_parse_when(const char *s, const char *tz, int64_t now_ms, int64_t *out_ms, char *note,
                   size_t notelen) {
  if (note && notelen) note[0] = '\0';
  uint64_t ago;
  if (nirc_parse_duration_ms(s, &ago) == 0) {
    *out_ms = now_ms - (int64_t)ago;
    return 0;
  }
  int y, mo, d, h, mi, sec = 0, n = 0;
  if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5) return -1;
  const char *rest = s + n;
  if (*rest == ':') {
    int k = 0;
    if (sscanf(rest, ":%2d%n", &sec, &k) != 1) return -1;
    rest += k;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59 || h < 0 || mi < 0)
    return -1;
  int64_t local = (ctl_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000;
  if (*rest == 'Z' && !rest[1]) {
    *out_ms = local;
    return 0;
  }
  if ((*rest == '+' || *rest == '-') && strlen(rest) == 6 && rest[3] == ':') {
    int oh, om;
    if (sscanf(rest + 1, "%2d:%2d", &oh, &om) != 2) return -1;
    int64_t off = (oh * 3600 + om * 60) * 1000;
    *out_ms = *rest == '+' ? local - off : local + off;
    return 0;
  }
  if (*rest) return -1;
  /* No offset: the local time in tz, resolved as the engine resolves a
   * schedule's times (tz.c): a time skipped by a jump forward is the jump
   * itself, a repeated one its first occurrence. Then --since 02:30 and a
   * window starting at 02:30 are one instant, and the note says which was
   * taken where the wall time alone does not say. */
  if (!tz || !tz_valid(tz)) return -1;
  tz_local_t lt = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi, .second = sec};
  tz_fold_t fold;
  int64_t second;
  if (tz_from_local_fold(tz, &lt, out_ms, &fold, &second) != 0) return -1;
  if (note && notelen) {
    char o1[8], o2[8];
    ctl_offset_text(local, *out_ms, o1, sizeof o1);
    ctl_offset_text(local, second, o2, sizeof o2);
    if (fold == TZ_FOLD_REPEATED)
      snprintf(note, notelen,
               "%s happens twice in %s (the clocks went back): taken as the first, %s%s; for "
               "the second write %s%s",
               s, tz, s, o1, s, o2);
    else if (fold == TZ_FOLD_SKIPPED) {
      tz_local_t at;
      if (tz_to_local(tz, *out_ms, &at) == 0) {
        int64_t wall = (ctl_days(at.year, at.month, at.day) * 86400 + at.hour * 3600 +
                        at.minute * 60 + at.second) *
                       1000;
        ctl_offset_text(wall, *out_ms, o2, sizeof o2);
        snprintf(note, notelen,
                 "%s does not exist in %s (the clocks went forward): taken as the moment they "
                 "did, %04d-%02d-%02dT%02d:%02d:%02d%s",
                 s, tz, at.year, at.month, at.day, at.hour, at.minute, at.second, o2);
      }
    }
  }
  return 0;
}

/* --limit of history and alarms: 1-500 rows (the controller's cap). */
static int ctl_parse_limit(ctl_args_t *a, const char *arg, uint32_t *out) {
  char *end;
  unsigned long v = strtoul(arg, &end, 10);
  if (!*arg || *end || v == 0 || v > 500) {
    ctl_say(a, "--limit must be 1-500");
    return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

/* An empty window is refused, never shown as an empty table. Two times or
 * two durations are compared here; a time and a duration only on the
 * controller, which alone knows its business now (on an accelerated clock
 * it is not nircctl's real now): it refuses such a window with both ends
 * named (net/ops.c). */
bool ctl_history_window_empty(ctl_args_t *a, bool times) {
  const Nirc__HistoryRequest *h = &a->history;
  bool since_ago = h->since_ago_ms != 0, until_ago = h->until_ago_ms != 0;
  if (!a->since || !a->until || since_ago != until_ago || (!since_ago && !times)) return false;
  if (since_ago ? h->until_ago_ms < h->since_ago_ms : h->until_ms > h->since_ms) return false;
  ctl_say(a, "--until must be later than --since (--since %s --until %s is an empty window)",
          a->since, a->until);
  return true;
}

static int build_history(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"site", required_argument, NULL, 's'},   {"actor", required_argument, NULL, 'a'},
      {"action", required_argument, NULL, 'x'}, {"since", required_argument, NULL, 'S'},
      {"limit", required_argument, NULL, 'l'},  {"cause", required_argument, NULL, 'c'},
      {"until", required_argument, NULL, 'U'},  {"tz", required_argument, NULL, 'z'},
      {"csv", no_argument, NULL, 'V'},          {"before-id", required_argument, NULL, 'B'},
      {"all", no_argument, NULL, 'A'},          {NULL, 0, NULL, 0},
  };
  nirc__history_request__init(&a->history);
  /* --since/--until are compared with the business time the entries show
   * (the same as the real time except on an accelerated clock). */
  a->history.business_clock = true;
  a->history.site = a->history.actor = a->history.action = a->history.cause = "";
  const char *since = NULL, *until = NULL, *limit = NULL;
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "+", o, NULL)) != -1) {
    switch (ch) {
    case 'A': a->all = true; break;
    case 's': a->history.site = optarg; break;
    case 'a': a->history.actor = optarg; break;
    case 'x': a->history.action = optarg; break;
    case 'S': since = optarg; break;
    case 'U': until = optarg; break;
    case 'z': a->tz = optarg; break;
    case 'V': a->csv = 1; break;
    case 'B': {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (!isdigit((unsigned char)*optarg) || *end || v == 0 || errno) {
        ctl_say(a, "--before-id takes an entry's id (a whole number above 0), e.g. the one "
                   "a truncated history names");
        return EXIT_USAGE;
      }
      a->history.before_id = v;
      break;
    }
    case 'c': {
      bool known = false;
      for (size_t k = 0; ctl_route_causes[k]; k++)
        known |= strcmp(ctl_route_causes[k], optarg) == 0;
      if (!known) {
        const char *near = nirc_closest(optarg, ctl_route_causes,
                                        sizeof ctl_route_causes / sizeof *ctl_route_causes - 1);
        ctl_say(a,
                "--cause '%s' is not a cause%s%s%s; causes: cutover, schedule, overflow, "
                "cutover-end, schedule-end, overflow-end, capacity, hub-lost, hub-return, "
                "hub-switch, rollback, senders, no-rule, agent-return",
                optarg, near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
        return EXIT_USAGE;
      }
      a->history.cause = optarg;
      break;
    }
    case 'l': limit = optarg; break;
    default: return EXIT_USAGE;
    }
  }
  if (optind != argc) {
    ctl_say(a, "history takes only options (see nircctl history --help)");
    return EXIT_USAGE;
  }
  /* A page is at most 500 (the controller's cap); --all reads as many
   * pages as it takes, and its --limit bounds them all. */
  if (limit && !a->all && ctl_parse_limit(a, limit, &a->history.limit) != 0) return EXIT_USAGE;
  if (limit && a->all) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(limit, &end, 10);
    if (!isdigit((unsigned char)*limit) || *end || v == 0 || v > CTL_HISTORY_ALL_LIMIT || errno) {
      ctl_say(a, "--limit with --all must be 1-%u (the newest that many)", CTL_HISTORY_ALL_LIMIT);
      return EXIT_USAGE;
    }
    a->history_all_limit = (uint32_t)v;
  }
  if (a->tz && !tz_valid(a->tz)) {
    ctl_say(a, "--tz '%s' is not a time zone (an IANA name such as Asia/Shanghai or UTC)", a->tz);
    return EXIT_USAGE;
  }
  /* Times without an offset are in the zone history shows. */
  const char *zone = a->tz ? a->tz : "Asia/Shanghai";
  if (since && ctl_parse_when(since, zone, clock_real_ms(), &a->history.since_ms, NULL, 0) != 0) {
    ctl_say(a,
            "--since '%s': expected a duration such as 2h or 7d, or a time such as "
            "2020-01-23T03:00 (in %s unless it has an offset)",
            since, zone);
    return EXIT_USAGE;
  }
  if (until && ctl_parse_when(until, zone, clock_real_ms(), &a->history.until_ms, NULL, 0) != 0) {
    ctl_say(a,
            "--until '%s': expected a duration such as 2h, or a time such as "
            "2020-01-23T04:00 (in %s unless it has an offset)",
            until, zone);
    return EXIT_USAGE;
  }
  a->since = since;
  a->until = until;
  /* A duration counts back from the controller's business now, which only
   * it knows; since_ms/until_ms from the real now are for a controller
   * that predates business_clock. */
  uint64_t ago;
  if (since && nirc_parse_duration_ms(since, &ago) == 0) a->history.since_ago_ms = ago;
  if (until && nirc_parse_duration_ms(until, &ago) == 0) a->history.until_ago_ms = ago;
  /* Two times without an offset are in the zone history shows, final only
   * with --tz here: without it nircctl checks again once the config is
   * read (their order can change with the zone where one has an offset). */
  if (ctl_history_window_empty(a, a->tz != NULL)) return EXIT_USAGE;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_HISTORY;
  req->history = &a->history;
  return 0;
}

static int build_alarms(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"all", no_argument, NULL, 'A'},
      {"limit", required_argument, NULL, 'l'},
      {"note", required_argument, NULL, 'n'},
      {"tz", required_argument, NULL, 'z'},
      {NULL, 0, NULL, 0},
  };
  nirc__alarm_request__init(&a->alarms);
  a->alarms.note = "";
  int ch;
  optind = 0;
  /* "" (not "+"): options may follow `ack ID`. */
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 'A': a->alarms.all = 1; break;
    case 'n': a->alarms.note = optarg; break;
    case 'z': a->tz = optarg; break;
    case 'l':
      if (ctl_parse_limit(a, optarg, &a->alarms.limit) != 0) return EXIT_USAGE;
      break;
    default: return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    if (strcmp(argv[optind], "ack") != 0 || optind + 2 != argc) {
      ctl_say(a, "usage: nircctl alarms [--all] [--limit N] | nircctl alarms ack ID [--note TEXT]");
      return EXIT_USAGE;
    }
    char *end;
    unsigned long long id = strtoull(argv[optind + 1], &end, 10);
    if (!argv[optind + 1][0] || *end || id == 0) {
      ctl_say(a, "alarms ack: '%s' is not an alarm id (nircctl alarms lists them)",
              argv[optind + 1]);
      return EXIT_USAGE;
    }
    if (a->alarms.all) {
      ctl_say(a, "alarms ack takes no --all");
      return EXIT_USAGE;
    }
    a->alarms.ack_id = id;
  } else if (a->alarms.note[0]) {
    ctl_say(a, "--note goes with alarms ack ID");
    return EXIT_USAGE;
  }
  if (a->tz && !tz_valid(a->tz)) {
    ctl_say(a, "--tz '%s' is not a time zone (an IANA name such as Asia/Shanghai or UTC)", a->tz);
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_ALARMS;
  req->alarms = &a->alarms;
  return 0;
}

/* "+08:00", "-05:30", "UTC" or minutes ("480") into minutes east of UTC. */
int ctl_parse_offset(const char *s, int32_t *out) {
  if (strcmp(s, "UTC") == 0 || strcmp(s, "Z") == 0) {
    *out = 0;
    return 0;
  }
  int sign = 1;
  const char *p = s;
  if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
  unsigned h, m;
  int n = 0;
  if (sscanf(p, "%2u:%2u%n", &h, &m, &n) == 2 && p[n] == '\0' && m < 60 && h <= 14) {
    *out = sign * (int32_t)(h * 60 + m);
    return 0;
  }
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < -840 || v > 840) return -1;
  *out = (int32_t)v;
  return 0;
}

static int build_capacity(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"seats", required_argument, NULL, 's'},      {"roster", required_argument, NULL, 'r'},
      {"utc-offset", required_argument, NULL, 'u'}, {"clear", no_argument, NULL, 'c'},
      {"note", required_argument, NULL, 'n'},       {NULL, 0, NULL, 0},
  };
  Nirc__CapacityRequest *c = &a->capacity;
  nirc__capacity_request__init(c);
  c->site = "";
  c->roster = "";
  c->note = "";
  bool change = false;
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 's': {
      char *end;
      unsigned long v = strtoul(optarg, &end, 10);
      if (!*optarg || *end || v == 0 || v > 100000) {
        ctl_say(a, "--seats '%s': a number of seats from 1 to 100000", optarg);
        return EXIT_USAGE;
      }
      c->seats = (uint32_t)v;
      change = true;
      break;
    }
    case 'r':
      c->roster = optarg;
      change = true;
      break;
    case 'u':
      if (ctl_parse_offset(optarg, &c->utc_offset_min) != 0) {
        ctl_say(a, "--utc-offset '%s': +HH:MM, -HH:MM or minutes (-840..840)", optarg);
        return EXIT_USAGE;
      }
      c->has_utc_offset = 1;
      change = true;
      break;
    case 'c':
      c->clear = 1;
      change = true;
      break;
    case 'n': c->note = optarg; break;
    default: return EXIT_USAGE;
    }
  }
  if (optind < argc) c->site = argv[optind++];
  if (optind < argc) {
    ctl_say(a, "capacity takes one site, got '%s' too", argv[optind]);
    return EXIT_USAGE;
  }
  if (change && !c->site[0]) {
    ctl_say(a, "capacity: name the site to change (nircctl capacity SITE --seats N ...)");
    return EXIT_USAGE;
  }
  if (c->clear && (c->seats || c->roster[0] || c->has_utc_offset)) {
    ctl_say(a, "--clear takes no --seats, --roster or --utc-offset");
    return EXIT_USAGE;
  }
  if (c->note[0] && !change) {
    ctl_say(a, "--note goes with a change (--seats, --roster, --utc-offset, --clear)");
    return EXIT_USAGE;
  }
  c->set = change;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_CAPACITY;
  req->capacity = c;
  return 0;
}

/* report staffing: the window is on the controller's business clock, so
 * --from/--to are absolute times, not durations; their form is checked
 * here (in UTC), their zone applied by nircctl once [ctl] tz is known. */
static int build_report(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"schedule", required_argument, NULL, 's'},
      {"date", required_argument, NULL, 'd'},
      {"from", required_argument, NULL, 'f'},
      {"to", required_argument, NULL, 't'},
      {"csv", no_argument, NULL, 'c'},
      {NULL, 0, NULL, 0},
  };
  Nirc__ReportRequest *r = &a->report;
  nirc__report_request__init(r);
  r->kind = "staffing";
  const char *from = NULL, *to = NULL;
  int ch;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 's': {
      char *end;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (!*optarg || *end || v == 0) {
        ctl_say(a, "--schedule '%s': the schedule's id (nircctl schedule list shows it)", optarg);
        return EXIT_USAGE;
      }
      r->schedule_id = v;
      break;
    }
    case 'd': {
      int y, m, d;
      char tail;
      if (sscanf(optarg, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 || m < 1 || m > 12 ||
          d < 1 || d > 31) {
        ctl_say(a, "--date '%s': YYYY-MM-DD, the local date the window starts", optarg);
        return EXIT_USAGE;
      }
      r->date = y * 10000 + m * 100 + d;
      break;
    }
    case 'f': from = optarg; break;
    case 't': to = optarg; break;
    case 'c': a->csv = 1; break;
    default: return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    if (strcmp(argv[optind], "staffing") != 0) {
      ctl_say(a, "no report '%s': the reports are: staffing", argv[optind]);
      return EXIT_USAGE;
    }
    optind++;
  }
  if (optind < argc) {
    ctl_say(a, "report staffing takes no argument '%s'", argv[optind]);
    return EXIT_USAGE;
  }
  if (!from != !to) {
    ctl_say(a, "--from and --to go together");
    return EXIT_USAGE;
  }
  if (from && r->date) {
    ctl_say(a, "--date or --from/--to, not both");
    return EXIT_USAGE;
  }
  if (from && (!strchr(from, 'T') || ctl_parse_when(from, "UTC", 0, &r->from_ms, NULL, 0) != 0 ||
               !strchr(to, 'T') || ctl_parse_when(to, "UTC", 0, &r->to_ms, NULL, 0) != 0)) {
    ctl_say(a, "--from/--to: times such as 2020-01-22T22:00+08:00 (without an offset: in "
               "[ctl] tz)");
    return EXIT_USAGE;
  }
  a->report_from = from;
  a->report_to = to;
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_REPORT;
  req->report = r;
  return 0;
}

int ctl_parse_uint(ctl_args_t *a, const char *what, const char *v, uint32_t max, uint32_t *out) {
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  if (!*v || *end || x > max) {
    ctl_say(a, "%s must be a whole number up to %u", what, max);
    return -1;
  }
  *out = (uint32_t)x;
  return 0;
}

const ctl_cmd_t ctl_cmds[CTL_NCMDS] = {
    {CTL_CMD_SITE, "site", "one site in detail; add, set, remove a site (admin)",
     "usage: nircctl site SLUG\n"
     "       nircctl site add SLUG --name NAME (--hub|--source) [--name-zh NAME] [--city CITY]\n"
     "                        [--lat DEG --lon DEG] [--seats N] [--roster SPEC]\n"
     "                        [--utc-offset +HH:MM] [--note TEXT]\n"
     "       nircctl site set SLUG [the same options]\n"
     "       nircctl site remove SLUG [--note TEXT]\n\n"
     "SLUG alone: every figure the controller has for one site, one per line.\n\n"
     "add, set and remove change the sites while nircd runs (role admin; audited as\n"
     "site-add, site-set, site-remove in nircctl history; every controller on the\n"
     "database follows). A new site's agent is let in at once. A slug is a lowercase\n"
     "letter then up to 30 lowercase letters, digits or '-', as in its agent's\n"
     "certificate (CN site:SLUG). --seats, --roster and --utc-offset as nircctl\n"
     "capacity takes them. remove is refused while anything routes to or from the\n"
     "site or a cutover, schedule or overflow rule names it (the refusal lists what\n"
     "to change first); its history is kept, its agent's link is closed and the\n"
     "agent refused with when and by whom it was removed. add brings a removed\n"
     "site back. A hub used by sources cannot become a source (set --source).\n\n"
     "Examples:\n  nircctl site hubei\n  nircctl --json site shaanxi\n"
     "  nircctl site add xizang-2 --name 'Lhasa 2' --source --seats 20 --utc-offset +08:00\n"
     "  nircctl site set xizang-2 --hub --note 'night hub from May'\n"
     "  nircctl site remove xizang-2 --note 'centre closed'\n",
     build_site, 0},
    {CTL_CMD_MAP, "map", "the routing map as SVG: sites, moves with shares, load and freshness",
     "usage: nircctl map [-o FILE.svg]\n\n"
     "Draws the network as the controller sees it now: sites placed by geography,\n"
     "arrows for current moves with their shares, colours for load and freshness.\n"
     "Writes SVG to stdout, or to FILE with -o. The controller's status page shows\n"
     "the same map live.\n\n"
     "Examples:\n  nircctl map -o network.svg\n  nircctl map > now.svg\n",
     build_map, 0},
    {CTL_CMD_WATCH, "watch", "live view of status, refreshed in place (Ctrl-C ends)",
     "usage: nircctl watch [--interval DURATION]\n\n"
     "The status table, redrawn every interval (default 2s) until Ctrl-C. On a\n"
     "terminal the screen is redrawn in place; otherwise each refresh is appended.\n"
     "Above 200 sites: the counts and at most 20 problem sites, as plain status.\n\n"
     "Examples:\n  nircctl watch\n  nircctl watch --interval 5s\n",
     build_watch, 0},
    {CTL_CMD_STATUS, "status", "every site: link, queue, wait, agents, SL, route, rule and its end",
     "usage: nircctl status [SITE] [--moved] [--problems] [--state STATES] [--hub HUB]\n"
     "                      [--match PREFIX] [--limit N] [--offset N] [--all] [--zh]\n\n"
     "Shows every site (or one): link state, age of the last report, calls in queue,\n"
     "longest wait, agents logged in/ready, service level of the last interval, the\n"
     "route the site has acknowledged, and the RULE it routes by with its end\n"
     "(\"cutover 2000017 until 11:30: REASON\", \"schedule night until 08:00\",\n"
     "\"..., re-homed: shaanxi offline\"), in [ctl] tz (default Asia/Shanghai).\n"
     "  --moved     only sites whose route is not home, and hubs receiving calls\n"
     "  --problems  only sites not online, with an unreadable PBX, a note, an\n"
     "              exclusion or an active alarm\n"
     "  --state S   only sites in these link states (online,stale,offline,never)\n"
     "  --hub HUB   only sites whose route sends calls to HUB\n"
     "  --match P   only sites whose slug starts with P\n"
     "  --limit N   at most N sites (default 200) from --offset N (default 0) on;\n"
     "              --limit 0 = --all\n"
     "  --all       every matching site, fetched a page at a time\n"
     "  --zh        Chinese names\n"
     "The filters run on the controller; the counts per link state are always of\n"
     "every site. Above 200 sites, plain `status` shows the counts, the problem\n"
     "sites (at most 20) and how to page, not one row per site.\n\n"
     "Examples:\n  nircctl status\n  nircctl status --moved --zh\n"
     "  nircctl status --state offline --limit 50 --offset 50\n"
     "  nircctl --json status --problems\n  nircctl --json status --all\n",
     build_status, 0},
    {CTL_CMD_NEXT, "next", "what the rules will do in the next hours: starts, ends, expiries",
     "usage: nircctl next [--hours N]\n\n"
     "The next N hours (default 24, at most 168) in time order: each schedule's\n"
     "window start (its sources, hubs, waves, and the service level and agents the\n"
     "engine predicts at each hub, as plan does for a schedule) and end, the windows\n"
     "an exception date skips, and each cutover's expiry. Times in [ctl] tz.\n\n"
     "Examples:\n  nircctl next\n  nircctl next --hours 72\n  nircctl --json next\n",
     build_next, 0},
    {CTL_CMD_CUTOVER, "cutover", "emergency move of sources to hubs (audited)",
     "usage: nircctl cutover SRC[,SRC...] --to HUB[,HUB...] --reason TEXT\n"
     "                       [--share PERMILLE] [--for DURATION | --until TIME]\n"
     "                       [--dry-run] [--force]\n"
     "       nircctl cutover --amend ID [--to HUB[,HUB...]] [--share PERMILLE]\n"
     "                       [--for DURATION | --until TIME] [--reason TEXT] [--force]\n\n"
     "Moves the sources' calls (all, or --share permille of them) to the first\n"
     "eligible hub, after checking with Erlang C that the hub can answer them.\n"
     "Refused (exit 1) if any source would not move, naming each with the agents\n"
     "its hubs would need; --force moves anyway and warns which hub's prediction\n"
     "it overrides. Waits until every site acknowledged: exit 4 if some did not,\n"
     "5 if every one failed. --amend changes the hubs, share or expiry of an active\n"
     "cutover in place: its sources do not go home on the way, and the capacity\n"
     "check runs on the amended move. --force is part of the amendment: without it\n"
     "a forced cutover is checked again from then on.\n\n"
     "Examples:\n"
     "  nircctl cutover hubei --to shaanxi --reason 'Wuhan lockdown'\n"
     "  nircctl cutover --amend 2000001 --share 500 --reason 'peak: half to Xi'\"'\"'an'\n"
     "  nircctl cutover shaanxi --to henan --reason 'Xi'\"'\"'an lockdown' --for 72h\n"
     "  nircctl cutover hubei --to shaanxi,henan --reason drill --dry-run\n"
     "  nircctl cutover hubei --to shaanxi --share 300 --reason 'peak: 30% to Xi'\"'\"'an'\n",
     build_cutover, 60000},
    {CTL_CMD_RESTORE, "restore", "end a cutover: sources go home (audited)",
     "usage: nircctl restore SRC[,SRC...] [--reason TEXT] | nircctl restore --cutover ID\n\n"
     "Ends the emergency cutover of the sources (or the whole cutover ID); they route\n"
     "by their schedule, overflow rule or home again. Waits for acknowledgements:\n"
     "exit 4 if some site failed or is pending, 5 if every one failed.\n\n"
     "Examples:\n  nircctl restore hubei\n  nircctl restore --cutover 2000001\n",
     build_restore, 60000},
    {CTL_CMD_READMIT, "readmit", "put a site excluded after a failed move back into its rule",
     "usage: nircctl readmit SITE[,SITE...] [--reason TEXT]\n\n"
     "A source whose move failed at its PBX was sent home and kept out of its rules\n"
     "(`nircctl status` shows \"excluded after a failed move\"). Once the PBX is fixed,\n"
     "readmit puts it back under its rule, without ending the rule for anyone else.\n"
     "It also ends the hold of a source whose agent kept going home early (its clock\n"
     "ahead; status note \"held home\"): fix that clock first.\n"
     "Audited. Exit 4 if some site failed or is pending, 5 if every one failed.\n\n"
     "Example:\n  nircctl readmit guangdong --reason 'PBX trunk fixed'\n",
     build_readmit, 60000},
    {CTL_CMD_PLAN, "plan", "capacity prediction for a move or a schedule, nothing moves",
     "usage: nircctl plan SRC[,SRC...] --to HUB[,HUB...] | nircctl plan --schedule NAME\n\n"
     "Predicts with Erlang C what the move would do at each hub (one line per hub\n"
     "for all it takes; a [REFUSED] line for what it turns down): load before and\n"
     "after, service level, ASA, occupancy and the agents needed. Exit 1 if any\n"
     "source would not move (each is named with every hub's need), 0 if all would.\n"
     "It predicts a full move, now: cutover's options for a share, a duration, an\n"
     "end time, force and amend are refused (exit 2); a cutover's dry run predicts\n"
     "such a move.\n\n"
     "Examples:\n  nircctl plan hubei,henan --to shaanxi\n  nircctl plan --schedule night\n",
     build_plan, 0},
    {CTL_CMD_HISTORY, "history", "the audit trail, newest last",
     "usage: nircctl history [--site SITE] [--cause CAUSE] [--actor NAME] [--action ACTION]\n"
     "                       [--since WHEN] [--until WHEN] [--limit N] [--before-id ID]\n"
     "                       [--all] [--tz ZONE] [--csv]\n\n"
     "Every operator action and every route change, with who, what and why. Each\n"
     "route change is an entry `route` with its cause: cutover, schedule, overflow,\n"
     "cutover-end, schedule-end, overflow-end, capacity, hub-lost, hub-return,\n"
     "hub-switch, rollback, senders, no-rule, agent-return. WHEN is a duration before\n"
     "now (2h) or a time (2020-01-23T03:00, in the zone shown unless it has an\n"
     "offset), on the\n"
     "business clock (the real one except on an accelerated clock, as in the demo).\n"
     "Times are shown in --tz, or [ctl] tz of the config (default Asia/Shanghai).\n"
     "The newest --limit entries (default 50, at most 500) are shown; when older\n"
     "ones match too, a note says so (on stderr with --csv; `complete` in --json)\n"
     "and names the --before-id ID that shows the page before. --all reads every\n"
     "matching entry, 500 a request (progress on stderr); it refuses when more than\n"
     "100000 match, unless --limit N (then the newest N, at most 1000000). With\n"
     "--csv it writes each page as it comes: newest first. In --csv,\n"
     "a cell that begins with = + - or @ begins with a ' before it, so that a\n"
     "spreadsheet shows it as text and never runs it as a formula.\n\n"
     "Examples:\n  nircctl history --site hubei --since 2020-01-23T03:00 --until 2020-01-23T04:00\n"
     "  nircctl history --cause hub-lost --since 24h --limit 500\n"
     "  nircctl history --action cutover --csv > cutovers.csv\n"
     "  nircctl --json history --limit 500 --before-id 1200\n"
     "  nircctl history --all --site hubei --since 2020-01-23T00:00 --csv > inquiry.csv\n",
     build_history, 0},
    {CTL_CMD_ALARMS, "alarms", "active alarms; --all: the record; ack ID",
     "usage: nircctl alarms [--all] [--limit N] [--tz ZONE]\n"
     "       nircctl alarms ack ID [--note TEXT]\n\n"
     "An alarm is raised once when its condition starts and cleared once, with the\n"
     "same id, when the condition has been gone for [alarms] clear_after (30 s).\n"
     "Kinds: capacity (a source no hub can take), routing (a rule that cannot run),\n"
     "directive (a site failed a directive, or was rolled back), site_down, database\n"
     "(unreachable: writes wait in the journal), journal (filling or refusing),\n"
     "identity (two agents claim one site), pbx (a site's PBX routed otherwise than\n"
     "its agent applied: warning when the agent repaired it, critical when not), report\n"
     "(reports refused), moved, notify (webhook notifications lost), superseded,\n"
     "clock, rule_load (a given-up rule load's backend holds the rule tables' locks),\n"
     "leadership (the leader has issued nothing for a lease), sites_load (the sites\n"
     "table cannot be read), agent (a site's agent cannot write its state file: a\n"
     "move to that site fails until it can; or it has not read its PBX for a minute;\n"
     "or its certificate ends within 30 days).\n"
     "Without --all the controller's active alarms (also while the database is\n"
     "down); --all reads the stored record, cleared ones too, newest first.\n"
     "ack (role operator) records who saw it; it stays active until it clears.\n"
     "Exit 0 when no alarm is active (without --all), 1 when some are.\n\n"
     "Examples:\n  nircctl alarms\n  nircctl alarms ack 2000013 --note \"hubei PBX team called\"\n"
     "  nircctl --json alarms --all --limit 200\n",
     build_alarms, 0},
    {CTL_CMD_CAPACITY, "capacity", "configured seats and roster per site; change (operator)",
     "usage: nircctl capacity [SITE]\n"
     "       nircctl capacity SITE [--seats N] [--roster HH:MM-HH:MM=N[,...]|none]\n"
     "                             [--utc-offset +HH:MM] [--note TEXT]\n"
     "       nircctl capacity SITE --clear [--note TEXT]\n\n"
     "What a site is configured to have: its seats and a roster of agents by time\n"
     "of day in its local time (a window may cross midnight; a time no window covers\n"
     "has no agents; seats without a roster: that many all day). The planner uses it\n"
     "when the site does not measure its agents (a Kamailio proxy knows calls, not\n"
     "people), and every report is checked against it: more agents than seats x 1.2\n"
     "+ 5 is refused and alarmed. The list shows what the planner uses now and where\n"
     "it comes from (measured, configured, unknown). A change needs role operator,\n"
     "is audited (action capacity in nircctl history) and survives restarts.\n\n"
     "Examples:\n  nircctl capacity\n"
     "  nircctl capacity shaanxi --seats 80 --roster 08:00-22:00=72,22:00-08:00=28 \\\n"
     "      --utc-offset +08:00 --note 'night shift from the new roster'\n"
     "  nircctl capacity shaanxi --clear\n",
     build_capacity, 0},
    {CTL_CMD_REPORT, "report", "night staffing: agents alone vs consolidated, forecast accuracy",
     "usage: nircctl report staffing [--schedule ID] [--date YYYY-MM-DD | --from T --to T] "
     "[--csv]\n\n"
     "Agents a schedule's window needs for the service-level target (80% in 20 s by\n"
     "default), from the controller's forecast, per 30-minute interval and at the\n"
     "window's busiest one: each site staffing its own calls, versus consolidated\n"
     "(every source answered at the schedule's first hub). Default: the window of\n"
     "the enabled schedule in force now or starting next. For a window that has\n"
     "ended it adds each site's measured calls and the forecast's accuracy (WAPE)\n"
     "stored when the window ended. A figure not forecast or not measured is shown\n"
     "as ? (null in --json, empty in --csv), never as 0. Any role may read it.\n\n"
     "Examples:\n  nircctl report staffing\n"
     "  nircctl report staffing --schedule 1000001 --date 2020-01-22\n"
     "  nircctl --json report staffing --from 2020-01-22T22:00+08:00 --to "
     "2020-01-23T08:00+08:00\n"
     "  nircctl report staffing --csv > night.csv\n",
     build_report, 0},
    {CTL_CMD_SCHEDULE, "schedule", "time-of-day moves: list, add, set, rm, enable, disable (admin)",
     "usage: nircctl schedule list\n"
     "       nircctl schedule add NAME --sources A,B,... --to HUB[,HUB] --start HH:MM --end HH:MM\n"
     "                            [--days daily|mon-fri|...] [--tz ZONE] [--except DATES]\n"
     "                            [--wave-size N] [--dry-run] [--force]\n"
     "       nircctl schedule set NAME [any of add's options] [--except none] [--dry-run]\n"
     "                            [--force]\n"
     "       nircctl schedule rm|disable NAME\n"
     "       nircctl schedule enable NAME [--force]\n\n"
     "A window may cross midnight (22:00 to 08:00). Sources move in waves of --wave-size\n"
     "(default 5); each wave is verified before the next. Exception dates (YYYY-MM-DD)\n"
     "skip the window that starts that day. Changes need the admin role.\n\n"
     "set changes only the options given, in place, even while the schedule is in force:\n"
     "only sources whose route changes move (a later end is sent with the same route, a\n"
     "new hub takes the sources straight from the old one). Never rm and add a schedule\n"
     "in force to change it: that sends every source home and back. --dry-run shows the\n"
     "change and the moves; --except replaces the dates (none: no dates).\n\n"
     "add, set and enable (of a disabled schedule) predict its next window as nircctl\n"
     "plan does: per hub the service level, the agents it needs and has, and the\n"
     "forecast used. One that would miss the service-level floor or overload a hub is\n"
     "refused, naming the agents needed; --force adds, changes or enables it anyway\n"
     "(audited as forced); --dry-run shows the prediction and changes nothing. A site\n"
     "with no forecast then is named as not known, never counted as no load: the hubs\n"
     "it would count in are not judged, the others are (a partial check). With no hub\n"
     "judged (or no window ahead) it is accepted and the reply says why.\n\n"
     "Examples:\n"
     "  nircctl schedule add night --sources hubei,guizhou,fujian --to shaanxi,henan \\\n"
     "      --start 22:00 --end 08:00 --tz Asia/Shanghai --except 2020-01-24\n"
     "  nircctl schedule set night --end 08:30 --dry-run\n"
     "  nircctl schedule disable night\n",
     ctl_build_schedule, 0},
    {CTL_CMD_OVERFLOW, "overflow", "automatic spill on overload: list, add, set, rm (admin)",
     "usage: nircctl overflow list\n"
     "       nircctl overflow add NAME --source SITE --to HUB[,HUB] --cap PERMILLE\n"
     "              [--trigger-wait D --release-wait D] [--trigger-queue N --release-queue N]\n"
     "              [--trigger-sl F --release-sl F] [--hold D] [--margin D]\n"
     "       nircctl overflow set NAME [add's options but --source] [--dry-run]\n"
     "       nircctl overflow rm NAME\n\n"
     "Moves at most --cap permille of SITE's calls while a smoothed trigger is crossed,\n"
     "and releases only past the release thresholds after --hold (default 5m).\n"
     "set changes the options given in place: an engaged rule stays engaged (its calls\n"
     "go to new hubs directly). It cannot turn a threshold off: rm and add for that.\n\n"
     "Example:\n"
     "  nircctl overflow add gd-peak --source guangdong --to sichuan,henan --cap 300 \\\n"
     "      --trigger-wait 60s --release-wait 15s --hold 10m\n",
     ctl_build_overflow, 0},
};

ctl_args_result_t ctl_args_parse(int argc, char **argv, ctl_args_t *a) {
  static const struct option longopts[] = {
      {"controller", required_argument, NULL, 'C'}, {"config", required_argument, NULL, 'f'},
      {"ca", required_argument, NULL, 'a'},         {"cert", required_argument, NULL, 'e'},
      {"key", required_argument, NULL, 'k'},        {"json", no_argument, NULL, 'j'},
      {"timeout", required_argument, NULL, 'T'},    {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0},
  };
  memset(a, 0, sizeof *a);
  a->watch_interval_ms = 2000;
  nirc__operator_request__init(&a->req);
  if (argc < 1) return CTL_ARGS_USAGE;
  int ch;
  /* '+': stop at the first non-option, so command arguments stay the
   * command's. optind 0 makes GNU getopt start afresh. */
  optind = 0;
  while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
    switch (ch) {
    case 'C':
      if (a->ncontrollers == CONFIG_LIST_MAX) {
        ctl_say(a, "at most %d --controller options", CONFIG_LIST_MAX);
        return CTL_ARGS_ERROR;
      }
      a->controllers[a->ncontrollers++] = optarg;
      break;
    case 'f': a->config_path = optarg; break;
    case 'a': a->ca = optarg; break;
    case 'e': a->cert = optarg; break;
    case 'k': a->key = optarg; break;
    case 'j': a->json = 1; break;
    case 'T': a->timeout = optarg; break;
    case 'h': return CTL_ARGS_HELP;
    case 'V': return CTL_ARGS_VERSION;
    default: return CTL_ARGS_USAGE;
    }
  }
  if (optind >= argc) return CTL_ARGS_USAGE;
  const char *name = argv[optind];
  int cargc = argc - optind - 1;
  char **cargv = argv + optind + 1;
  if (strcmp(name, "help") == 0) return CTL_ARGS_HELP;
  for (size_t i = 0; i < CTL_NCMDS; i++)
    if (strcmp(ctl_cmds[i].name, name) == 0) a->cmd = &ctl_cmds[i];
  if (!a->cmd) {
    const char *names[CTL_NCMDS];
    for (size_t i = 0; i < CTL_NCMDS; i++)
      names[i] = ctl_cmds[i].name;
    const char *near = nirc_closest(name, names, CTL_NCMDS);
    if (near)
      ctl_say(a, "unknown command '%s'; did you mean '%s'? (nircctl help lists them)", name, near);
    else
      ctl_say(a, "unknown command '%s' (try: nircctl help)", name);
    return CTL_ARGS_ERROR;
  }
  for (int i = 0; i < cargc; i++)
    if (strcmp(cargv[i], "--help") == 0 || strcmp(cargv[i], "-h") == 0) return CTL_ARGS_CMD_HELP;
  /* Builders get the command's own argv: argv[0] is the command name, as
   * getopt_long expects. */
  if (a->cmd->build(cargc + 1, cargv - 1, &a->req, a) != 0) return CTL_ARGS_ERROR;
  /* Text the controller would refuse (a control character, a bidirectional
   * control, a byte that is not UTF-8, in a reason or a name) is refused
   * here already, with the same words, before a connection is made. */
  char err[256];
  if (!msgtext_check(&a->req.base, err, sizeof err)) {
    ctl_say(a, "%s", err);
    return CTL_ARGS_ERROR;
  }
  return CTL_ARGS_REQUEST;
}
