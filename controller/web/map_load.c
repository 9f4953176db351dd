/* map_site_load: a site's load as the map shows it (map.h), from its last
 * report. Shared by the status page's /map.svg and `nircctl map`, so both
 * say the same of a figure nobody measured: unknown, and why, never 0. */
#include "map.h"
#include "report.h"

#include <stddef.h>

void map_site_load(map_site_t *m, bool has_report, bool pbx_unreadable, unsigned not_measured,
                   unsigned logged_in, unsigned talking, unsigned in_queue) {
  m->occupancy = -1;
  m->in_queue = 0;
  m->queue_unknown = true;
  if (!has_report) {
    m->unknown_why = "no load report";
    return;
  }
  if (pbx_unreadable) { /* its figures are zeros nobody counted */
    m->unknown_why = "PBX unreadable";
    return;
  }
  if (!(not_measured & REPORT_NM_QUEUE)) {
    m->queue_unknown = false;
    m->in_queue = in_queue;
  }
  if (not_measured & (REPORT_NM_LOGGED_IN | REPORT_NM_TALKING))
    m->unknown_why = "agents not measured";
  else if (logged_in == 0)
    m->unknown_why = "no agents logged in";
  else
    m->occupancy = (double)talking / logged_in, m->unknown_why = NULL;
}
