/* frame: the NIRC wire framing, pure code (no I/O).
 *
 * A frame is a 4-byte big-endian payload length followed by one protobuf
 * Envelope. The length is checked against FRAME_MAX_PAYLOAD before a single
 * byte is allocated, so a peer cannot make us reserve memory it never
 * sends. The decoder accepts input in pieces of any size: a frame split
 * across many reads and many frames coalesced in one read both work. */
#ifndef NIRC_FRAME_H
#define NIRC_FRAME_H

#include "nirc.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN  4
#define FRAME_MAX_PAYLOAD (64u * 1024u)
/* What an operator reply may carry, controller to nircctl only: the
 * status of 20,000 sites is ~5 MB. Everything a peer sends to the
 * controller stays under FRAME_MAX_PAYLOAD. */
#define FRAME_MAX_REPLY (32u * 1024u * 1024u)

/* Called once per complete payload. `payload` is borrowed for the call.
 * Return 0 to continue, or a negative NIRC_E* code to stop decoding. */
typedef int (*frame_payload_cb)(void *arg, const uint8_t *payload, size_t len);

typedef struct {
  uint8_t hdr[FRAME_HEADER_LEN];
  size_t hdr_have; /* header bytes collected so far */
  uint8_t *body;   /* owned; allocated once the header is complete and checked */
  size_t body_len; /* declared payload length */
  size_t body_have;
  uint64_t frames; /* complete frames decoded so far */
  uint32_t max;    /* largest payload accepted; FRAME_MAX_PAYLOAD unless set */
} frame_decoder_t;

void frame_decoder_init(frame_decoder_t *d);
/* Releases a partial frame's buffer; the decoder may be reused after. */
void frame_decoder_free(frame_decoder_t *d);
/* Feeds `len` bytes. Returns 0 when every byte was consumed,
 * NIRC_EFRAME_TOO_BIG when a header announces more than d->max,
 * NIRC_ENOMEM, or the first negative value returned by
 * `cb`. After an error the decoder must not be fed again. */
int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_payload_cb cb,
                       void *arg);
/* True when bytes of an unfinished frame are held: at end of stream this
 * means the peer sent a truncated frame. */
bool frame_decoder_partial(const frame_decoder_t *d);

/* The allocator protobuf-c uses for unpacked envelopes: NULL (protobuf-c's
 * default, malloc and free) in every program. The fault-injection test
 * (tests/unit/test_alloc_fail.c) points it at an allocator that fails on
 * demand, because protobuf-c's own calls to malloc are made inside the
 * shared library, out of reach of the linker's --wrap. Change it only
 * while no unpacked envelope is alive: the same allocator must free it. */
extern ProtobufCAllocator *frame_allocator;

/* Unpacks an Envelope. Returns 0 and *out (free with
 * frame_envelope_free), NIRC_EFRAME_MALFORMED if protobuf-c rejects the
 * bytes, or NIRC_EUNKNOWN_MESSAGE if the envelope carries no message this
 * build knows (its oneof is unset). */
int frame_decode_envelope(const uint8_t *payload, size_t len, Nirc__Envelope **out);
void frame_envelope_free(Nirc__Envelope *env);

/* Packs `env` into a freshly allocated frame (header + payload). Returns 0
 * and *out and *outlen (caller owns *out, free()), NIRC_EFRAME_TOO_BIG, or
 * NIRC_ENOMEM. */
int frame_encode(const Nirc__Envelope *env, uint8_t **out, size_t *outlen);
/* The same with a larger cap (FRAME_MAX_REPLY for operator replies). */
int frame_encode_max(const Nirc__Envelope *env, uint32_t max, uint8_t **out, size_t *outlen);

#endif
