/* report: LoadReport helpers every binary shares. */
#ifndef NIRC_REPORT_H
#define NIRC_REPORT_H

#include "nirc.pb-c.h"

#include <jansson.h>

/* Bits of LoadReport.not_measured (proto enum LoadFigure), short. */
#define REPORT_NM_LOGGED_IN  NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_LOGGED_IN
#define REPORT_NM_READY      NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_READY
#define REPORT_NM_TALKING    NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_TALKING
#define REPORT_NM_NOT_READY  NIRC__LOAD_FIGURE__LOAD_FIGURE_AGENTS_NOT_READY
#define REPORT_NM_QUEUE      NIRC__LOAD_FIGURE__LOAD_FIGURE_CALLS_IN_QUEUE
#define REPORT_NM_QUEUE_PEAK NIRC__LOAD_FIGURE__LOAD_FIGURE_CALLS_IN_QUEUE_PEAK
#define REPORT_NM_WAIT       NIRC__LOAD_FIGURE__LOAD_FIGURE_LONGEST_WAIT
#define REPORT_NM_AHT        NIRC__LOAD_FIGURE__LOAD_FIGURE_AHT
#define REPORT_NM_SL         NIRC__LOAD_FIGURE__LOAD_FIGURE_SERVICE_LEVEL
#define REPORT_NM_AGENTS                                                                           \
  (REPORT_NM_LOGGED_IN | REPORT_NM_READY | REPORT_NM_TALKING | REPORT_NM_NOT_READY)
/* What a proxy (Kamailio) cannot see: everything but the calls. */
#define REPORT_NM_PROXY                                                                            \
  (REPORT_NM_AGENTS | REPORT_NM_QUEUE | REPORT_NM_QUEUE_PEAK | REPORT_NM_WAIT | REPORT_NM_AHT |    \
   REPORT_NM_SL)

/* The report as a JSON object with the protocol's field names, plus
 * "service_level" (answered within threshold / offered, or null when
 * nothing was offered) and "pbx_error" when the PBX was unreadable.
 * A figure the report marks as not measured is null (service_level too
 * when SL is not measured), and "not_measured" lists their names ([]
 * when everything was measured): never a zero that was not counted. An
 * unreadable PBX measured nothing: every figure is null and named, the
 * calls too, and routing_measured is false.
 * Returns a new reference (json_null() for r == NULL), or NULL on OOM. */
json_t *report_to_json(const Nirc__LoadReport *r);

#endif
