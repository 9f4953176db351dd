/* ctl_args_status: `nircctl status [SITE] [filters]` (also the request of
 * site, map and watch), parsed into a StatusRequest. The filters and the
 * page are the controller's to evaluate (controller/routing/statusq.h). */
#include "ctl_args.h"

#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* "offline,stale" into a->states; 0, or -1 with the complaint said. */
static int ctl_status_states(ctl_args_t *a, const char *list) {
  static const struct {
    const char *word;
    Nirc__LinkState s;
  } w[] = {{"online", NIRC__LINK_STATE__LINK_STATE_ONLINE},
           {"stale", NIRC__LINK_STATE__LINK_STATE_STALE},
           {"offline", NIRC__LINK_STATE__LINK_STATE_OFFLINE},
           {"never", NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN},
           {"never-seen", NIRC__LINK_STATE__LINK_STATE_NEVER_SEEN}};
  const char *p = list;
  while (*p) {
    size_t len = strcspn(p, ",");
    size_t k = 0;
    while (k < sizeof w / sizeof w[0] && !(strlen(w[k].word) == len && !strncmp(w[k].word, p, len)))
      k++;
    if (k == sizeof w / sizeof w[0]) {
      ctl_say(a, "--state '%.*s': one of online, stale, offline, never (comma-separated)", (int)len,
              p);
      return -1;
    }
    bool have = false;
    for (size_t j = 0; j < a->status.n_states; j++)
      have |= a->states[j] == w[k].s;
    if (!have) a->states[a->status.n_states++] = w[k].s;
    p += len;
    if (*p == ',') p++;
  }
  if (a->status.n_states == 0) {
    ctl_say(a, "--state needs a state (online, stale, offline, never)");
    return -1;
  }
  return 0;
}

static int ctl_status_count(ctl_args_t *a, const char *opt, const char *v, uint32_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long n = v[0] >= '0' && v[0] <= '9' ? strtoul(v, &end, 10) : 0;
  if (!end || *end || errno || n > 1000000) {
    ctl_say(a, "%s '%s': a whole number (0..1000000)", opt, v);
    return -1;
  }
  *out = (uint32_t)n;
  return 0;
}

int ctl_build_status(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  const char *site = NULL;
  bool is_status = strcmp(argv[0], "status") == 0;
  nirc__status_request__init(&a->status);
  a->status.states = a->states;
  a->status.hub = a->status.match = "";
  for (int i = 1; i < argc; i++) {
    /* The filters and --zh are the status table's; `site` and the others
     * take a slug at most. */
    const char *o = argv[i];
    bool has_val = i + 1 < argc;
    if (is_status && strcmp(o, "--moved") == 0)
      a->moved = true;
    else if (is_status && strcmp(o, "--problems") == 0)
      a->problems = true;
    else if (is_status && strcmp(o, "--zh") == 0)
      a->zh = true;
    else if (is_status && strcmp(o, "--all") == 0)
      a->all = true;
    else if (is_status && has_val && strcmp(o, "--state") == 0) {
      if (ctl_status_states(a, argv[++i]) != 0) return EXIT_USAGE;
    } else if (is_status && has_val && strcmp(o, "--hub") == 0) {
      a->status.hub = argv[++i];
      if (!nirc_slug_valid(a->status.hub)) {
        ctl_say(a, "--hub '%s' is not a site slug (lowercase, e.g. shaanxi)", a->status.hub);
        return EXIT_USAGE;
      }
    } else if (is_status && has_val && strcmp(o, "--match") == 0) {
      a->status.match = argv[++i];
    } else if (is_status && has_val && strcmp(o, "--limit") == 0) {
      if (ctl_status_count(a, o, argv[++i], &a->status.limit) != 0) return EXIT_USAGE;
      a->paged = a->status.limit > 0;
      a->all = a->status.limit == 0; /* --limit 0: every site, page by page */
    } else if (is_status && has_val && strcmp(o, "--offset") == 0) {
      if (ctl_status_count(a, o, argv[++i], &a->status.offset) != 0) return EXIT_USAGE;
      a->paged = true;
    } else if (o[0] == '-') {
      ctl_say(a, "%s: unknown option or missing value '%s'%s", argv[0], o,
              is_status ? " (options: --moved, --problems, --state S, --hub HUB, --match P, "
                          "--limit N, --offset N, --all, --zh)"
                        : "");
      return EXIT_USAGE;
    } else if (site) {
      ctl_say(a, "status takes at most one site");
      return EXIT_USAGE;
    } else {
      site = o;
    }
  }
  if (site && !nirc_slug_valid(site)) {
    ctl_say(a, "'%s' is not a site slug (lowercase, e.g. hubei)", site);
    return EXIT_USAGE;
  }
  if (a->all && a->paged) {
    ctl_say(a, "--all lists every site: leave out --limit N and --offset N");
    return EXIT_USAGE;
  }
  a->status.problems = a->problems;
  a->status.moved = a->moved;
  a->status.site = site ? (char *)site : "";
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_STATUS;
  req->status = &a->status;
  return 0;
}
