/* ctl_args_site: `nircctl site add|set|remove SLUG [options]`, parsed
 * into a SiteChangeRequest (the rest of `site` is in ctl_args.c). */
#include "ctl_args.h"

#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* site add|set|remove SLUG [options]: a site changed while nircd runs. */
int ctl_build_site_change(int argc, char **argv, Nirc__OperatorRequest *req, ctl_args_t *a) {
  static const struct option o[] = {
      {"name", required_argument, NULL, 'n'},   {"name-zh", required_argument, NULL, 'z'},
      {"city", required_argument, NULL, 'c'},   {"hub", no_argument, NULL, 'H'},
      {"source", no_argument, NULL, 'S'},       {"lat", required_argument, NULL, 'y'},
      {"lon", required_argument, NULL, 'x'},    {"seats", required_argument, NULL, 's'},
      {"roster", required_argument, NULL, 'r'}, {"utc-offset", required_argument, NULL, 'u'},
      {"note", required_argument, NULL, 'N'},   {NULL, 0, NULL, 0},
  };
  Nirc__SiteChangeRequest *r = &a->site_change;
  nirc__site_change_request__init(r);
  r->action = argv[0];
  r->site = r->name_en = r->name_zh = r->city_en = r->roster = r->note = "";
  bool lat = false, lon = false, any = false;
  int ch;
  optind = 0; /* argv[0] is the action, as getopt_long expects a name there */
  while ((ch = getopt_long(argc, argv, "", o, NULL)) != -1) {
    any = ch != 'N';
    char *end = NULL;
    switch (ch) {
    case 'n': r->name_en = optarg; break;
    case 'z': r->name_zh = optarg; break;
    case 'c': r->city_en = optarg; break;
    case 'H':
    case 'S':
      if (r->has_hub && r->hub != (ch == 'H')) {
        ctl_say(a, "--hub and --source: a site is one or the other");
        return EXIT_USAGE;
      }
      r->has_hub = 1;
      r->hub = ch == 'H';
      break;
    case 'y':
    case 'x': {
      double v = strtod(optarg, &end);
      if (!*optarg || *end || (ch == 'y' ? (v < -90 || v > 90) : (v < -180 || v > 180))) {
        ctl_say(a, "%s '%s': degrees, %s", ch == 'y' ? "--lat" : "--lon", optarg,
                ch == 'y' ? "-90..90" : "-180..180");
        return EXIT_USAGE;
      }
      if (ch == 'y') {
        r->lat = v;
        lat = true;
      } else {
        r->lon = v;
        lon = true;
      }
      break;
    }
    case 's': {
      unsigned long v = strtoul(optarg, &end, 10);
      if (!*optarg || *end || v == 0 || v > 100000) {
        ctl_say(a, "--seats '%s': a number of seats from 1 to 100000", optarg);
        return EXIT_USAGE;
      }
      r->seats = (uint32_t)v;
      break;
    }
    case 'r': r->roster = optarg; break;
    case 'u':
      if (ctl_parse_offset(optarg, &r->utc_offset_min) != 0) {
        ctl_say(a, "--utc-offset '%s': +HH:MM, -HH:MM or minutes (-840..840)", optarg);
        return EXIT_USAGE;
      }
      r->has_utc_offset = 1;
      break;
    case 'N': r->note = optarg; break;
    default: return EXIT_USAGE;
    }
  }
  if (optind + 1 != argc) {
    ctl_say(a, "usage: site %s SLUG [options] (nircctl site --help)", r->action);
    return EXIT_USAGE;
  }
  r->site = argv[optind];
  if (!nirc_slug_valid(r->site)) {
    ctl_say(a,
            "'%s' is not a site slug: a lowercase letter, then up to 30 lowercase letters, digits "
            "or '-' (e.g. hubei, xian-2)",
            r->site);
    return EXIT_USAGE;
  }
  if (lat != lon) {
    ctl_say(a, "give --lat and --lon together");
    return EXIT_USAGE;
  }
  r->has_position = lat;
  bool add = strcmp(r->action, "add") == 0, rm = strcmp(r->action, "remove") == 0;
  if (add && !*r->name_en) {
    ctl_say(a, "site add needs --name 'English name' (and --hub or --source)");
    return EXIT_USAGE;
  }
  if (add && !r->has_hub) {
    ctl_say(a, "site add needs --hub (it takes other sites' calls) or --source");
    return EXIT_USAGE;
  }
  if (rm && any) {
    ctl_say(a, "site remove takes only --note");
    return EXIT_USAGE;
  }
  if (!add && !rm && !any) {
    ctl_say(a, "site set %s: give what to change (--name, --hub/--source, --seats, ...)", r->site);
    return EXIT_USAGE;
  }
  req->body_case = NIRC__OPERATOR_REQUEST__BODY_SITE_CHANGE;
  req->site_change = r;
  return 0;
}
