/* kamverify: reading Kamailio's routing back. Pure functions over the
 * answer of the JSON-RPC `dispatcher.list` (no I/O), so the kamailio
 * adapter's read-back is unit-tested without a Kamailio:
 *
 *   {"NRSETS":1,"RECORDS":[{"SET":{"ID":1,"TARGETS":[{"DEST":{"URI":"sip:..",
 *     "FLAGS":"AX","PRIORITY":0,"ATTRS":{"DUID":"hubei","WEIGHT":100,..}}}]}}]}
 *
 * (Kamailio 5.6). A set is compared as a multiset of (URI, weight): the URI
 * is what Kamailio relays to, the weight its percent of new calls. */
#ifndef NIRC_KAMVERIFY_H
#define NIRC_KAMVERIFY_H

#include "scenario.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KAMVERIFY_MAX     16
#define KAMVERIFY_URI_MAX 256

typedef struct {
  char uri[KAMVERIFY_URI_MAX];
  char name[SCENARIO_SLUG_MAX]; /* the site, for messages: DUID or the target's slug */
  unsigned weight;              /* percent */
  bool inactive;                /* FLAGS say inactive or disabled: gets no calls */
} kamverify_dest_t;

typedef struct {
  kamverify_dest_t d[KAMVERIFY_MAX];
  unsigned n;
} kamverify_set_t;

/* Set `set_id` of a dispatcher.list result into *out (n = 0 when Kamailio
 * has no such set). 0, or NIRC_EINVAL with err when the answer is not
 * understood or has more than KAMVERIFY_MAX destinations in the set. */
int kamverify_parse(const json_t *result, uint32_t set_id, kamverify_set_t *out, char *err,
                    size_t errlen);
/* Same destinations with the same weights, order ignored; an inactive
 * destination never matches (Kamailio sends it nothing). */
bool kamverify_same(const kamverify_set_t *found, const kamverify_set_t *expected);
/* "hubei 70%, shaanxi 30%", "nothing (no destination)" */
void kamverify_format(const kamverify_set_t *s, char *buf, size_t len);

#endif
