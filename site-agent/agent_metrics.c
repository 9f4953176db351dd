/* agent_metrics: the agent's own figures for Prometheus: what it reports,
 * whether it is connected, what it routes by, which clock revert_at runs
 * on, and how its PBX has been answering. agent.c publishes the text on
 * every change and every second, never only with a report: without a
 * controller there is no report, and that is when the agent routes on its
 * own (restore, revert_at, repairs). Built from the agent's state alone,
 * so it is unit-tested without a loop or a listener. */
#include "agent.h"

#include "report.h"

#include <stdio.h>

int agent_metrics_format(const agent_t *a, int64_t now_real_ms, char *buf, size_t len) {
  const adapter_load_t *l = &a->last_load;
  int n = snprintf(
      buf, len,
      "# TYPE nirc_agent_connected gauge\nnirc_agent_connected{site=\"%s\"} %d\n"
      "# TYPE nirc_agent_epoch gauge\nnirc_agent_epoch{site=\"%s\"} %llu\n"
      "# TYPE nirc_agent_route_known gauge\nnirc_agent_route_known{site=\"%s\"} %d\n"
      "# TYPE nirc_agent_reports_sent_total counter\n"
      "nirc_agent_reports_sent_total{site=\"%s\"} %llu\n"
      "# TYPE nirc_agent_applies_total counter\n"
      "nirc_agent_applies_total{site=\"%s\",result=\"applied\"} %llu\n"
      "nirc_agent_applies_total{site=\"%s\",result=\"failed\"} %llu\n"
      "# TYPE nirc_agent_pbx_unreadable_total counter\n"
      "nirc_agent_pbx_unreadable_total{site=\"%s\"} %llu\n"
      "# TYPE nirc_agent_pbx_drift_repairs_total counter\n"
      "nirc_agent_pbx_drift_repairs_total{site=\"%s\"} %llu\n"
      "# TYPE nirc_agent_pbx_verify_failures_total counter\n"
      "nirc_agent_pbx_verify_failures_total{site=\"%s\"} %llu\n",
      a->slug, a->state == AGENT_REPORTING, a->slug, (unsigned long long)a->max_epoch, a->slug,
      a->route_state == AGENT_ROUTE_KNOWN, a->slug, (unsigned long long)a->reports_sent, a->slug,
      (unsigned long long)a->applies_ok, a->slug, (unsigned long long)a->applies_failed, a->slug,
      (unsigned long long)a->collects_unreadable, a->slug, (unsigned long long)a->drift_repairs,
      a->slug, (unsigned long long)a->verify_failures);
  if (n < 0 || (size_t)n >= len) return -1;
  int m;
  /* The route's figures only while it is known (applied and read back):
   * a route the PBX may not have taken is no figure to graph, and a
   * share shown for it (0 for a cutover whose restore failed) would say
   * where calls go when nobody knows. nirc_agent_route_known says why
   * they are absent, as nircd leaves out what is not measured. */
  if (a->route_state == AGENT_ROUTE_KNOWN) {
    m = snprintf(buf + n, len - (size_t)n,
                 "# TYPE nirc_agent_route_home_permille gauge\n"
                 "nirc_agent_route_home_permille{site=\"%s\"} %u\n"
                 "# TYPE nirc_agent_inbound_sources gauge\n"
                 "nirc_agent_inbound_sources{site=\"%s\"} %u\n",
                 a->slug, route_share_of(&a->applied, a->slug), a->slug, a->applied.n_inbound);
    if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
    n += m;
  }
  /* Whether the last write of the state file succeeded (agent_state_note):
   * left out when none is kept. */
  if (a->conf && a->conf->state_file[0]) {
    m = snprintf(buf + n, len - (size_t)n,
                 "# TYPE nirc_agent_state_saved gauge\nnirc_agent_state_saved{site=\"%s\"} %d\n",
                 a->slug, !a->state_unsaved);
    if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
    n += m;
  }
  m = agent_clock_metrics(a, now_real_ms, buf + n, len - (size_t)n);
  if (m < 0) return -1;
  n += m;
  /* Figures not measured are left out, not published as zeros. */
  if (a->have_load && !l->unreadable && !(l->not_measured & (REPORT_NM_QUEUE | REPORT_NM_AGENTS))) {
    m = snprintf(buf + n, len - (size_t)n,
                 "# TYPE nirc_agent_calls_in_queue gauge\n"
                 "nirc_agent_calls_in_queue{site=\"%s\"} %u\n"
                 "# TYPE nirc_agent_agents_logged_in gauge\n"
                 "nirc_agent_agents_logged_in{site=\"%s\"} %u\n"
                 "# TYPE nirc_agent_agents_ready gauge\n"
                 "nirc_agent_agents_ready{site=\"%s\"} %u\n",
                 a->slug, l->in_queue, a->slug, l->logged_in, a->slug, l->ready);
    if (m < 0 || (size_t)m >= len - (size_t)n) return -1;
    n += m;
  }
  return n;
}
