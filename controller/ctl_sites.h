/* ctl_sites: how nircctl shows `nircctl site add|set|remove`: the site as
 * the change left it. Pure output. */
#ifndef NIRC_CTL_SITES_H
#define NIRC_CTL_SITES_H

#include "nirc.pb-c.h"

#include <jansson.h>
#include <stdio.h>

void ctl_site_change_print(FILE *out, const Nirc__SiteChangeReply *r);
/* The SiteChange document of docs/CLI-JSON.md (new reference). */
json_t *ctl_site_change_json(const Nirc__SiteChangeReply *r);
/* `nircctl site SLUG`: its recent PBX events (SiteStatus.pbx_events), times
 * in zone tz, every text escaped. */
void ctl_site_pbx_print(FILE *out, const Nirc__SiteStatus *s, const char *tz);
/* The `pbx_events` array of a site in docs/CLI-JSON.md (new reference). */
json_t *ctl_site_pbx_json(const Nirc__SiteStatus *s);
/* Sets a site row's pbx_events keys (docs/CLI-JSON.md) in x, when the
 * controller sent them (`site` only). */
void ctl_site_pbx_json_set(json_t *x, const Nirc__SiteStatus *s);

#endif
