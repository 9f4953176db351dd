/* ops: operator requests arriving on nircctl links.
 *
 * One table maps each request type to its handler and the least role that
 * may call it, so access control and the list of commands live in one
 * place (HAProxy's cli_kws, smtpctl's parser). */
#ifndef NIRC_OPS_H
#define NIRC_OPS_H

#include "server.h"

/* Handles one OperatorRequest from `c` (an operator connection) and sends
 * the reply. Refusals are audited. */
void ops_dispatch(server_t *srv, conn_t *c, const Nirc__OperatorRequest *req);

#endif
