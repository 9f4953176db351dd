/* msgtext: every text field of a protobuf message checked with safetext,
 * so an operator's request is refused whole, before anything acts on it,
 * if any of its strings carries a control character, a bidirectional
 * control or a byte that is not UTF-8. Walks the message's descriptor:
 * fields added to the protocol later are checked without a change here.
 * Pure: no I/O, no allocation.
 *
 *   char err[200];
 *   if (!msgtext_check(&req->base, err, sizeof err)) refuse(err);
 *     // "the reason contains a control character (U+202E at byte 5); remove it"
 */
#ifndef NIRC_MSGTEXT_H
#define NIRC_MSGTEXT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* True if every string in `m` (NULL: none), in nested messages and in
 * repeated fields too, is clean. Otherwise false and, in err, which field
 * holds the first offender, what it is, where, and the fix (see
 * safetext_check). The field is named for a person: "reason", "time zone",
 * "schedule name", "list of hubs". */
bool msgtext_check(const ProtobufCMessage *m, char *err, size_t errlen);

#endif
