/* ops: operator requests arriving on nircctl links.
 *
 * One table maps each request type to its handler and the least role that
 * may call it, so access control and the list of commands live in one
 * place (HAProxy's cli_kws, smtpctl's parser). */
#ifndef NIRC_OPS_H
#define NIRC_OPS_H

#include "server.h"
#include "statusq.h"

/* Handles one OperatorRequest from `c` (an operator connection) and sends
 * the reply. Refusals are audited. */
void ops_dispatch(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req);

/* Every site of the registry as the status filters see it (v: n =
 * srv->sites.n entries; the pointers borrow from the registry and the
 * engine until they change), and statusq's lookup by slug (ctx: the
 * registry, &srv->sites). For nircctl status and the web's /status.json. */
void ops_status_facts(server_t *srv, statusq_site_t *v, size_t n);
size_t ops_status_find(void *ctx, const char *slug);

#endif
