#include "frame.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

ProtobufCAllocator *frame_allocator = NULL;

void frame_decoder_init(frame_decoder_t *d) {
  memset(d, 0, sizeof *d);
}

void frame_decoder_free(frame_decoder_t *d) {
  free(d->body);
  d->body = NULL;
  d->hdr_have = d->body_len = d->body_have = 0;
}

bool frame_decoder_partial(const frame_decoder_t *d) {
  return d->hdr_have > 0;
}

static uint32_t frame_get_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int frame_decoder_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_payload_cb cb,
                       void *arg) {
  while (len > 0) {
    if (d->hdr_have < FRAME_HEADER_LEN) {
      size_t take = FRAME_HEADER_LEN - d->hdr_have;
      if (take > len) take = len;
      memcpy(d->hdr + d->hdr_have, data, take);
      d->hdr_have += take;
      data += take;
      len -= take;
      if (d->hdr_have < FRAME_HEADER_LEN) return 0;
      uint32_t plen = frame_get_be32(d->hdr);
      /* The cap is enforced here, before any allocation. */
      if (plen > (d->max ? d->max : FRAME_MAX_PAYLOAD)) return NIRC_EFRAME_TOO_BIG;
      d->body_len = plen;
      d->body_have = 0;
      /* Fast path: the whole payload is already in this chunk, so hand it
       * over without copying (the common case for small reports). */
      if (len >= plen) {
        int rc = cb(arg, data, plen);
        d->frames++;
        d->hdr_have = 0;
        data += plen;
        len -= plen;
        if (rc < 0) return rc;
        continue;
      }
      d->body = malloc(plen);
      if (!d->body) return NIRC_ENOMEM;
    }
    size_t take = d->body_len - d->body_have;
    if (take > len) take = len;
    memcpy(d->body + d->body_have, data, take);
    d->body_have += take;
    data += take;
    len -= take;
    if (d->body_have == d->body_len) {
      uint8_t *body = d->body;
      size_t blen = d->body_len;
      d->body = NULL;
      d->hdr_have = 0;
      d->body_len = d->body_have = 0;
      int rc = cb(arg, body, blen);
      free(body);
      d->frames++;
      if (rc < 0) return rc;
    }
  }
  return 0;
}

int frame_decode_envelope(const uint8_t *payload, size_t len, Nirc__Envelope **out) {
  Nirc__Envelope *env = nirc__envelope__unpack(frame_allocator, len, payload);
  if (!env) return NIRC_EFRAME_MALFORMED;
  if (env->msg_case == NIRC__ENVELOPE__MSG__NOT_SET) {
    nirc__envelope__free_unpacked(env, frame_allocator);
    return NIRC_EUNKNOWN_MESSAGE;
  }
  *out = env;
  return 0;
}

void frame_envelope_free(Nirc__Envelope *env) {
  if (env) nirc__envelope__free_unpacked(env, frame_allocator);
}

int frame_encode(const Nirc__Envelope *env, uint8_t **out, size_t *outlen) {
  return frame_encode_max(env, FRAME_MAX_PAYLOAD, out, outlen);
}

int frame_encode_max(const Nirc__Envelope *env, uint32_t max, uint8_t **out, size_t *outlen) {
  size_t plen = nirc__envelope__get_packed_size(env);
  if (plen > max) return NIRC_EFRAME_TOO_BIG;
  uint8_t *buf = malloc(FRAME_HEADER_LEN + plen);
  if (!buf) return NIRC_ENOMEM;
  buf[0] = (uint8_t)(plen >> 24);
  buf[1] = (uint8_t)(plen >> 16);
  buf[2] = (uint8_t)(plen >> 8);
  buf[3] = (uint8_t)plen;
  nirc__envelope__pack(env, buf + FRAME_HEADER_LEN);
  *out = buf;
  *outlen = FRAME_HEADER_LEN + plen;
  return 0;
}
