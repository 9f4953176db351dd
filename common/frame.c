#include "frame.h"

#include "err.h"

#include <stddef.h>
#include <stdint.h>
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

/* Unpacking one Envelope makes a handful of small allocations (the
 * envelope, its message, each string); at 40,000 reports/s their malloc and
 * free showed in nircd's profile. They live only until
 * frame_envelope_free, which link.c calls before it decodes the next, so
 * they come from a per-thread bump arena that is reset whenever no
 * envelope decoded from it is alive; what does not fit goes to malloc.
 * Sanitizer builds keep malloc, so AddressSanitizer still sees every use of
 * a freed envelope. */
#if defined(__SANITIZE_ADDRESS__)
#define FRAME_ARENA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define FRAME_ARENA 0
#endif
#endif
#ifndef FRAME_ARENA
#define FRAME_ARENA 1
#endif
/* A LoadReport envelope unpacks to well under 1 KiB. */
#define FRAME_ARENA_SIZE 8192

typedef struct {
  _Alignas(max_align_t) uint8_t buf[FRAME_ARENA_SIZE];
  size_t used;
  unsigned live; /* envelopes unpacked into it and not yet freed */
} frame_arena_t;

static _Thread_local frame_arena_t frame_arena;

static void *frame_arena_alloc(void *data, size_t size) {
  frame_arena_t *a = data;
  size_t align = _Alignof(max_align_t);
  size_t off = (a->used + align - 1) & ~(align - 1);
  if (size <= FRAME_ARENA_SIZE && off <= FRAME_ARENA_SIZE - size) {
    a->used = off + size;
    return a->buf + off;
  }
  return malloc(size);
}

static void frame_arena_free(void *data, void *p) {
  frame_arena_t *a = data;
  uintptr_t u = (uintptr_t)p, lo = (uintptr_t)a->buf;
  if (u >= lo && u < lo + FRAME_ARENA_SIZE) return; /* reclaimed by the reset */
  free(p);
}

/* The allocator an envelope is unpacked and freed with: the test's when
 * set, else the arena (reset first when nothing lives in it). */
static ProtobufCAllocator *frame_pick_allocator(ProtobufCAllocator *arena, bool decoding) {
  if (frame_allocator || !FRAME_ARENA) return frame_allocator;
  *arena = (ProtobufCAllocator){frame_arena_alloc, frame_arena_free, &frame_arena};
  if (decoding && frame_arena.live == 0) frame_arena.used = 0;
  return arena;
}

int frame_decode_envelope(const uint8_t *payload, size_t len, Nirc__Envelope **out) {
  ProtobufCAllocator arena, *al = frame_pick_allocator(&arena, true);
  Nirc__Envelope *env = nirc__envelope__unpack(al, len, payload);
  if (!env) return NIRC_EFRAME_MALFORMED;
  if (env->msg_case == NIRC__ENVELOPE__MSG__NOT_SET) {
    nirc__envelope__free_unpacked(env, al);
    return NIRC_EUNKNOWN_MESSAGE;
  }
  if (al == &arena) frame_arena.live++;
  *out = env;
  return 0;
}

void frame_envelope_free(Nirc__Envelope *env) {
  if (!env) return;
  ProtobufCAllocator arena, *al = frame_pick_allocator(&arena, false);
  nirc__envelope__free_unpacked(env, al);
  if (al == &arena && frame_arena.live > 0) frame_arena.live--;
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
