/* ctl_args_rules: `nircctl schedule ...` and `nircctl overflow ...`,
 * parsed into a ScheduleRequest or an OverflowRequest (the other commands
 * are in ctl_args.c). */
#include "ctl_args.h"

#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int rule_op(const char *w, Nirc__RuleOp *op) {
  static const struct {
    const char *w;
    Nirc__RuleOp op;
  } ops[] = {{"list", NIRC__RULE_OP__RULE_OP_LIST},       {"add", NIRC__RULE_OP__RULE_OP_ADD},
             {"rm", NIRC__RULE_OP__RULE_OP_REMOVE},       {"enable", NIRC__RULE_OP__RULE_OP_ENABLE},
             {"disable", NIRC__RULE_OP__RULE_OP_DISABLE}, {"set", NIRC__RULE_OP__RULE_OP_SET}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(ops[i].w, w) == 0) {
      *op = ops[i].op;
      return 0;
    }
  return -1;
}

static int parse_secs(ctl_args_t *a, const char *what, const char *v, uint32_t *out) {
  uint64_t ms;
  if (nirc_parse_duration_ms(v, &ms) != 0 || ms > 86400000ull) {
    ctl_say(a, "%s: expected a duration such as 30s or 5m", what);
    return -1;
  }
  *out = (uint32_t)(ms / 1000);
  return 0;
}

static int parse_frac(ctl_args_t *a, const char *what, const char *v, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (!*v || *end || !isfinite(x) || x <= 0 || x > 1) {
    ctl_say(a, "%s must be a fraction in (0, 1], e.g. 0.8", what);
    return -1;
  }
  *out = x;
  return 0;
}

int ctl_build_schedule(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  nirc__schedule_request__init(&a->schedule);
  if (argc < 2 || rule_op(argv[1], &a->schedule.op) != 0) {
    ctl_say(a, "usage: schedule list|add|set|rm|enable|disable ... (see --help)");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_SCHEDULE;
  req->schedule = &a->schedule;
  if (a->schedule.op == NIRC__RULE_OP__RULE_OP_LIST) return argc == 2 ? 0 : EXIT_USAGE;
  if (argc < 3) {
    ctl_say(a, "schedule %s needs a NAME", argv[1]);
    return EXIT_USAGE;
  }
  a->schedule.name = argv[2];
  /* set takes add's options; only those given change (days, tz and the
   * rest keep the schedule's: no defaults are sent). */
  bool set = a->schedule.op == NIRC__RULE_OP__RULE_OP_SET;
  /* enable is capacity-checked like add: --force takes it past a refusal. */
  if (a->schedule.op == NIRC__RULE_OP__RULE_OP_ENABLE && argc == 4 &&
      strcmp(argv[3], "--force") == 0) {
    a->schedule.force = true;
    return 0;
  }
  if (a->schedule.op != NIRC__RULE_OP__RULE_OP_ADD && !set) return argc == 3 ? 0 : EXIT_USAGE;
  static const struct option o[] = {
      {"sources", required_argument, NULL, 's'},
      {"to", required_argument, NULL, 't'},
      {"start", required_argument, NULL, 'b'},
      {"end", required_argument, NULL, 'e'},
      {"days", required_argument, NULL, 'd'},
      {"tz", required_argument, NULL, 'z'},
      {"except", required_argument, NULL, 'x'},
      {"wave-size", required_argument, NULL, 'w'},
      {"dry-run", no_argument, NULL, 'n'},
      {"force", no_argument, NULL, 'f'},
      {NULL, 0, NULL, 0},
  };
  Nirc__ScheduleSpec *sp = &a->sched_spec;
  nirc__schedule_spec__init(sp);
  sp->name = argv[2];
  sp->days = set ? "" : "daily";
  sp->tz = set ? "" : "Asia/Shanghai";
  const char *srcs = NULL, *to = NULL;
  int ch, n;
  /* getopt over "NAME --opt ...": NAME plays argv[0]; optind 0 resets GNU
   * getopt's state after the global options were parsed. */
  argc -= 2;
  argv += 2;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    switch (ch) {
    case 's': srcs = optarg; break;
    case 't': to = optarg; break;
    case 'b': sp->start = optarg; break;
    case 'e': sp->end = optarg; break;
    case 'd': sp->days = optarg; break;
    case 'z': sp->tz = optarg; break;
    case 'x': {
      /* Each --except gets its own part of exbuf: copying over the start
       * would rewrite the dates an earlier --except points at. */
      char *buf = a->exbuf + a->exused;
      size_t room = sizeof a->exbuf - a->exused;
      if (room == 0 || nirc_strlcpy(buf, optarg, room) >= room) return EXIT_USAGE;
      a->exused += strlen(buf) + 1;
      char *save = NULL;
      for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        /* More dates than the request has room for are refused, not dropped. */
        if (sp->n_exceptions == sizeof a->exceptions / sizeof a->exceptions[0]) {
          ctl_say(a, "at most %zu --except dates", sizeof a->exceptions / sizeof a->exceptions[0]);
          return EXIT_USAGE;
        }
        a->exceptions[sp->n_exceptions++] = t;
      }
      sp->exceptions = a->exceptions;
      break;
    }
    case 'w':
      if (ctl_parse_uint(a, "--wave-size", optarg, 100, &sp->wave_size)) return EXIT_USAGE;
      break;
    case 'n': a->schedule.dry_run = true; break;
    case 'f': a->schedule.force = true; break;
    default: return EXIT_USAGE;
    }
  }
  if (set && (optind != argc || (!srcs && !to && !*sp->start && !*sp->end && !sp->days[0] &&
                                 !sp->tz[0] && !sp->n_exceptions && !sp->wave_size))) {
    ctl_say(a, "usage: schedule set NAME [--sources A,B] [--to HUB[,HUB]] [--start HH:MM] "
               "[--end HH:MM] [--days D] [--tz ZONE] [--except DATES|none] [--wave-size N] "
               "[--dry-run] [--force] (at least one change)");
    return EXIT_USAGE;
  }
  if (!set && (optind != argc || !srcs || !to || !*sp->start || !*sp->end)) {
    ctl_say(a, "usage: schedule add NAME --sources A,B --to HUB[,HUB] --start HH:MM "
               "--end HH:MM [--days daily] [--tz ZONE] [--except DATES] [--wave-size N] "
               "[--dry-run] [--force]");
    return EXIT_USAGE;
  }
  if (srcs &&
      (n = ctl_split_list(a, srcs, a->listbuf[0], sizeof a->listbuf[0], a->sources, "sources")) < 0)
    return EXIT_USAGE;
  sp->sources = a->sources;
  sp->n_sources = srcs ? (size_t)n : 0;
  if (to && (n = ctl_split_list(a, to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  sp->hubs = a->hubs;
  sp->n_hubs = to ? (size_t)n : 0;
  a->schedule.spec = sp;
  return 0;
}

int ctl_build_overflow(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  nirc__overflow_request__init(&a->overflow);
  if (argc < 2 || rule_op(argv[1], &a->overflow.op) != 0 ||
      a->overflow.op == NIRC__RULE_OP__RULE_OP_ENABLE ||
      a->overflow.op == NIRC__RULE_OP__RULE_OP_DISABLE) {
    ctl_say(a, "usage: overflow list|add|set|rm ... (see --help)");
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_OVERFLOW;
  req->overflow = &a->overflow;
  if (a->overflow.op == NIRC__RULE_OP__RULE_OP_LIST) return argc == 2 ? 0 : EXIT_USAGE;
  if (argc < 3) {
    ctl_say(a, "overflow %s needs a NAME", argv[1]);
    return EXIT_USAGE;
  }
  a->overflow.name = argv[2];
  if (a->overflow.op == NIRC__RULE_OP__RULE_OP_REMOVE) return argc == 3 ? 0 : EXIT_USAGE;
  bool set = a->overflow.op == NIRC__RULE_OP__RULE_OP_SET; /* as in build_schedule */
  static const struct option o[] = {
      {"source", required_argument, NULL, 's'},
      {"to", required_argument, NULL, 't'},
      {"trigger-wait", required_argument, NULL, 'W'},
      {"release-wait", required_argument, NULL, 'w'},
      {"trigger-queue", required_argument, NULL, 'Q'},
      {"release-queue", required_argument, NULL, 'q'},
      {"trigger-sl", required_argument, NULL, 'L'},
      {"release-sl", required_argument, NULL, 'l'},
      {"cap", required_argument, NULL, 'c'},
      {"hold", required_argument, NULL, 'h'},
      {"margin", required_argument, NULL, 'm'},
      {"dry-run", no_argument, NULL, 'n'},
      {NULL, 0, NULL, 0},
  };
  Nirc__OverflowSpec *sp = &a->ovf_spec;
  nirc__overflow_spec__init(sp);
  sp->name = argv[2];
  sp->min_hold_s = set ? 0 : 300;
  const char *to = NULL;
  int ch, n;
  argc -= 2; /* as in build_schedule */
  argv += 2;
  optind = 0;
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    int bad = 0;
    switch (ch) {
    case 's': sp->source = optarg; break;
    case 't': to = optarg; break;
    case 'W': bad = parse_secs(a, "--trigger-wait", optarg, &sp->trigger_wait_s); break;
    case 'w': bad = parse_secs(a, "--release-wait", optarg, &sp->release_wait_s); break;
    case 'Q':
      bad = ctl_parse_uint(a, "--trigger-queue", optarg, 1000000, &sp->trigger_queue);
      break;
    case 'q':
      bad = ctl_parse_uint(a, "--release-queue", optarg, 1000000, &sp->release_queue);
      break;
    case 'L': bad = parse_frac(a, "--trigger-sl", optarg, &sp->trigger_sl); break;
    case 'l': bad = parse_frac(a, "--release-sl", optarg, &sp->release_sl); break;
    case 'c':
      bad = ctl_parse_uint(a, "--cap (permille)", optarg, 1000, &sp->share_cap_permille);
      break;
    case 'h': bad = parse_secs(a, "--hold", optarg, &sp->min_hold_s); break;
    case 'm': bad = parse_secs(a, "--margin", optarg, &sp->margin_s); break;
    case 'n':
      bad = !set;
      a->overflow.dry_run = true;
      break;
    default: return EXIT_USAGE;
    }
    if (bad) return EXIT_USAGE;
  }
  if (set &&
      (optind != argc || (!to && !sp->trigger_wait_s && !sp->release_wait_s && !sp->trigger_queue &&
                          !sp->release_queue && !sp->trigger_sl && !sp->release_sl &&
                          !sp->share_cap_permille && !sp->min_hold_s && !sp->margin_s))) {
    ctl_say(a, "usage: overflow set NAME [--to HUB[,HUB]] [--cap PERMILLE] [--trigger-wait D "
               "--release-wait D] [--trigger-queue N --release-queue N] [--trigger-sl F "
               "--release-sl F] [--hold D] [--margin D] [--dry-run] (at least one change)");
    return EXIT_USAGE;
  }
  if (!set && (optind != argc || !*sp->source || !to || !sp->share_cap_permille)) {
    ctl_say(a, "usage: overflow add NAME --source SITE --to HUB[,HUB] --cap PERMILLE "
               "[--trigger-wait D --release-wait D] [--trigger-queue N --release-queue N] "
               "[--trigger-sl F --release-sl F] [--hold D] [--margin D]");
    return EXIT_USAGE;
  }
  if (to && (n = ctl_split_list(a, to, a->listbuf[1], sizeof a->listbuf[1], a->hubs, "hubs")) < 0)
    return EXIT_USAGE;
  sp->hubs = a->hubs;
  sp->n_hubs = to ? (size_t)n : 0;
  a->overflow.spec = sp;
  return 0;
}
