/* Unit tests for the frame codec (common/frame.c).
 *
 * A frame is a 4-byte big-endian length followed by one protobuf Envelope.
 * These tests check what the link layer relies on: a report survives the
 * round trip; frames split across reads or coalesced in one read come out
 * whole, once each and in order; an oversized header is refused before the
 * decoder allocates anything; a truncated stream is visible; garbage never
 * crashes the envelope decoder; and a callback can stop decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "frame.h"
#include "link.h"

/* ---- helpers ---------------------------------------------------------- */

#define MAX_CAPTURED 64

/* Copies of the payloads the decoder handed over, in order. */
typedef struct {
  size_t count;
  uint8_t *data[MAX_CAPTURED];
  size_t len[MAX_CAPTURED];
  int stop_at; /* 1-based callback number that returns stop_rc; 0 = never */
  int stop_rc;
} capture_t;

static int capture_cb(void *arg, const uint8_t *payload, size_t len) {
  capture_t *c = arg;
  assert_true(c->count < MAX_CAPTURED);
  uint8_t *copy = malloc(len ? len : 1);
  assert_non_null(copy);
  if (len) memcpy(copy, payload, len);
  c->data[c->count] = copy;
  c->len[c->count] = len;
  c->count++;
  if (c->stop_at && (int)c->count == c->stop_at) return c->stop_rc;
  return 0;
}

static void capture_free(capture_t *c) {
  for (size_t i = 0; i < c->count; i++)
    free(c->data[i]);
  memset(c, 0, sizeof *c);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

/* A LoadReport with every field set to a distinct value. */
static void fill_report(Nirc__LoadReport *r, uint32_t base) {
  nirc__load_report__init(r);
  r->site = "hubei";
  r->timestamp_ms = 1579701000000LL + base;
  r->interval_ms = 1000 + base;
  r->calls_offered = 40 + base;
  r->calls_answered = 30 + base;
  r->calls_abandoned = 3 + base;
  r->calls_in_queue = 7 + base;
  r->longest_wait_ms = 95000 + base;
  r->agents_logged_in = 12 + base;
  r->agents_ready = 2 + base;
  r->agents_talking = 9 + base;
  r->agents_not_ready = 1 + base;
  r->aht_ms = 240000 + base;
  r->answered_within_threshold = 20 + base;
  r->sl_threshold_s = 20;
  r->calls_from_other_sites = 5 + base;
  r->pbx_unreadable = false;
  r->pbx_error = "";
}

/* Encodes an Envelope carrying `r` into a fresh frame. */
static uint8_t *encode_report(const Nirc__LoadReport *r, size_t *len) {
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = (Nirc__LoadReport *)r;
  uint8_t *buf = NULL;
  int rc = frame_encode(&env, &buf, len);
  assert_int_equal(rc, 0);
  assert_non_null(buf);
  return buf;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* Three distinct frames concatenated into one buffer; offsets of each. */
typedef struct {
  uint8_t *buf;
  size_t len;
  size_t off[3], flen[3];
} three_t;

static void make_three(three_t *t) {
  uint8_t *f[3];
  size_t fl[3];
  for (int i = 0; i < 3; i++) {
    Nirc__LoadReport r;
    fill_report(&r, (uint32_t)(i + 1) * 100);
    f[i] = encode_report(&r, &fl[i]);
  }
  t->len = fl[0] + fl[1] + fl[2];
  t->buf = malloc(t->len);
  assert_non_null(t->buf);
  size_t o = 0;
  for (int i = 0; i < 3; i++) {
    memcpy(t->buf + o, f[i], fl[i]);
    t->off[i] = o;
    t->flen[i] = fl[i];
    o += fl[i];
    free(f[i]);
  }
}

/* The captured payloads are exactly the three frames' payloads, in order. */
static void expect_three(const capture_t *c, const three_t *t) {
  assert_int_equal(c->count, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(c->len[i], t->flen[i] - FRAME_HEADER_LEN);
    assert_memory_equal(c->data[i], t->buf + t->off[i] + FRAME_HEADER_LEN, c->len[i]);
  }
}

/* ---- round trip ------------------------------------------------------- */

static void test_encode_decode_roundtrip(void **state) {
  (void)state;
  Nirc__LoadReport r;
  fill_report(&r, 7);
  r.pbx_unreadable = true;
  r.pbx_error = "AMI login failed";
  size_t len;
  uint8_t *buf = encode_report(&r, &len);

  /* The header is the big-endian payload length. */
  assert_true(len > FRAME_HEADER_LEN);
  assert_int_equal(be32(buf), len - FRAME_HEADER_LEN);

  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, buf, len, capture_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_false(frame_decoder_partial(&d));
  assert_int_equal(d.frames, 1);

  Nirc__Envelope *env = NULL;
  assert_int_equal(frame_decode_envelope(c.data[0], c.len[0], &env), 0);
  assert_non_null(env);
  assert_int_equal(env->msg_case, NIRC__ENVELOPE__MSG_LOAD_REPORT);
  const Nirc__LoadReport *g = env->load_report;
  assert_non_null(g);
  assert_string_equal(g->site, "hubei");
  assert_int_equal(g->timestamp_ms, r.timestamp_ms);
  assert_int_equal(g->interval_ms, r.interval_ms);
  assert_int_equal(g->calls_offered, r.calls_offered);
  assert_int_equal(g->calls_answered, r.calls_answered);
  assert_int_equal(g->calls_abandoned, r.calls_abandoned);
  assert_int_equal(g->calls_in_queue, r.calls_in_queue);
  assert_int_equal(g->longest_wait_ms, r.longest_wait_ms);
  assert_int_equal(g->agents_logged_in, r.agents_logged_in);
  assert_int_equal(g->agents_ready, r.agents_ready);
  assert_int_equal(g->agents_talking, r.agents_talking);
  assert_int_equal(g->agents_not_ready, r.agents_not_ready);
  assert_int_equal(g->aht_ms, r.aht_ms);
  assert_int_equal(g->answered_within_threshold, r.answered_within_threshold);
  assert_int_equal(g->sl_threshold_s, r.sl_threshold_s);
  assert_int_equal(g->calls_from_other_sites, r.calls_from_other_sites);
  assert_true(g->pbx_unreadable);
  assert_string_equal(g->pbx_error, "AMI login failed");
  frame_envelope_free(env);

  frame_decoder_free(&d);
  capture_free(&c);
  free(buf);
}

/* ---- reassembly ------------------------------------------------------- */

static void test_split_one_byte_at_a_time(void **state) {
  (void)state;
  Nirc__LoadReport r;
  fill_report(&r, 1);
  size_t len;
  uint8_t *buf = encode_report(&r, &len);

  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  for (size_t i = 0; i < len; i++) {
    assert_int_equal(frame_decoder_feed(&d, buf + i, 1, capture_cb, &c), 0);
    if (i + 1 < len) {
      assert_int_equal(c.count, 0);           /* nothing before the last byte */
      assert_true(frame_decoder_partial(&d)); /* and the decoder knows it holds a part */
    }
  }
  assert_int_equal(c.count, 1);
  assert_int_equal(c.len[0], len - FRAME_HEADER_LEN);
  assert_memory_equal(c.data[0], buf + FRAME_HEADER_LEN, c.len[0]);
  assert_false(frame_decoder_partial(&d));
  assert_int_equal(d.frames, 1);

  frame_decoder_free(&d);
  capture_free(&c);
  free(buf);
}

static void test_three_coalesced(void **state) {
  (void)state;
  three_t t;
  make_three(&t);
  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, t.buf, t.len, capture_cb, &c), 0);
  expect_three(&c, &t);
  assert_false(frame_decoder_partial(&d));
  assert_int_equal(d.frames, 3);

  /* The payloads decode to the three different reports, in order. */
  for (int i = 0; i < 3; i++) {
    Nirc__Envelope *env = NULL;
    assert_int_equal(frame_decode_envelope(c.data[i], c.len[i], &env), 0);
    assert_int_equal(env->msg_case, NIRC__ENVELOPE__MSG_LOAD_REPORT);
    assert_int_equal(env->load_report->calls_offered, 40 + (uint32_t)(i + 1) * 100);
    frame_envelope_free(env);
  }
  frame_decoder_free(&d);
  capture_free(&c);
  free(t.buf);
}

static void test_two_and_a_half_then_rest(void **state) {
  (void)state;
  three_t t;
  make_three(&t);
  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  size_t cut = t.off[2] + t.flen[2] / 2;
  assert_int_equal(frame_decoder_feed(&d, t.buf, cut, capture_cb, &c), 0);
  assert_int_equal(c.count, 2);
  assert_true(frame_decoder_partial(&d));
  assert_int_equal(frame_decoder_feed(&d, t.buf + cut, t.len - cut, capture_cb, &c), 0);
  expect_three(&c, &t);
  assert_false(frame_decoder_partial(&d));
  frame_decoder_free(&d);
  capture_free(&c);
  free(t.buf);
}

/* Every possible cut point between two reads (inside a header, at a frame
 * boundary, inside a body) gives the same three payloads. */
static void test_every_cut_point(void **state) {
  (void)state;
  three_t t;
  make_three(&t);
  for (size_t cut = 0; cut <= t.len; cut++) {
    capture_t c = {0};
    frame_decoder_t d;
    frame_decoder_init(&d);
    assert_int_equal(frame_decoder_feed(&d, t.buf, cut, capture_cb, &c), 0);
    size_t whole = 0;
    for (int i = 0; i < 3; i++)
      if (t.off[i] + t.flen[i] <= cut) whole++;
    assert_int_equal(c.count, whole);
    bool at_boundary = cut == 0 || cut == t.len || cut == t.off[1] || cut == t.off[2];
    assert_int_equal(frame_decoder_partial(&d), !at_boundary);
    assert_int_equal(frame_decoder_feed(&d, t.buf + cut, t.len - cut, capture_cb, &c), 0);
    expect_three(&c, &t);
    assert_false(frame_decoder_partial(&d));
    frame_decoder_free(&d);
    capture_free(&c);
  }
  free(t.buf);
}

/* Random chunk sizes over a long stream of frames (fixed seed). */
static void test_random_chunks(void **state) {
  (void)state;
  three_t t;
  make_three(&t);
  enum { REPEAT = 10 };
  size_t total = t.len * REPEAT;
  uint8_t *stream = malloc(total);
  assert_non_null(stream);
  for (int i = 0; i < REPEAT; i++)
    memcpy(stream + (size_t)i * t.len, t.buf, t.len);
  uint64_t seed = 0x1234567887654321ULL;
  for (int round = 0; round < 50; round++) {
    capture_t c = {0};
    frame_decoder_t d;
    frame_decoder_init(&d);
    size_t pos = 0, delivered = 0;
    while (pos < total) {
      size_t n = 1 + (size_t)(rng_next(&seed) % 97);
      if (n > total - pos) n = total - pos;
      assert_int_equal(frame_decoder_feed(&d, stream + pos, n, capture_cb, &c), 0);
      pos += n;
      /* Drain the capture as we go so MAX_CAPTURED is never reached. */
      for (size_t i = 0; i < c.count; i++) {
        int which = (int)(delivered % 3);
        assert_int_equal(c.len[i], t.flen[which] - FRAME_HEADER_LEN);
        assert_memory_equal(c.data[i], t.buf + t.off[which] + FRAME_HEADER_LEN, c.len[i]);
        delivered++;
      }
      capture_free(&c);
    }
    assert_int_equal(delivered, 3 * REPEAT);
    assert_int_equal(d.frames, 3 * REPEAT);
    assert_false(frame_decoder_partial(&d));
    frame_decoder_free(&d);
  }
  free(stream);
  free(t.buf);
}

/* ---- the size cap ----------------------------------------------------- */

static void test_too_big_refused_before_allocation(void **state) {
  (void)state;
  uint8_t hdr[FRAME_HEADER_LEN];
  put_be32(hdr, FRAME_MAX_PAYLOAD + 1);

  /* Header alone: the decoder would have to allocate now to store the body
   * that follows, so a NULL body proves the check comes first. */
  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, capture_cb, &c), NIRC_EFRAME_TOO_BIG);
  assert_null(d.body);
  assert_int_equal(c.count, 0);
  assert_int_equal(d.frames, 0);
  frame_decoder_free(&d);

  /* Header split over reads, followed by some body bytes. */
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, hdr, 2, capture_cb, &c), 0);
  uint8_t rest[2 + 100];
  memcpy(rest, hdr + 2, 2);
  memset(rest + 2, 0xAB, 100);
  assert_int_equal(frame_decoder_feed(&d, rest, sizeof rest, capture_cb, &c), NIRC_EFRAME_TOO_BIG);
  assert_null(d.body);
  assert_int_equal(c.count, 0);
  frame_decoder_free(&d);

  /* The largest length a header can carry. */
  put_be32(hdr, 0xFFFFFFFFu);
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, capture_cb, &c), NIRC_EFRAME_TOO_BIG);
  assert_null(d.body);
  assert_int_equal(c.count, 0);
  frame_decoder_free(&d);

  /* Control: an acceptable header fed alone does make the decoder allocate,
   * so the assert_null(d.body) checks above can tell the difference. */
  put_be32(hdr, 1000);
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, capture_cb, &c), 0);
  assert_non_null(d.body);
  frame_decoder_free(&d);
  assert_null(d.body);
  assert_false(frame_decoder_partial(&d));
}

/* A frame whose payload is exactly FRAME_MAX_PAYLOAD is encoded, accepted by
 * the decoder (split and whole) and decodes back. */
static void test_exactly_max_payload_accepted(void **state) {
  (void)state;
  char *text = malloc(FRAME_MAX_PAYLOAD);
  assert_non_null(text);
  Nirc__LoadReport r;
  fill_report(&r, 3);
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  /* Find a pbx_error length that makes the payload exactly the cap. */
  size_t n = FRAME_MAX_PAYLOAD - 1;
  for (;; n--) {
    assert_true(n > FRAME_MAX_PAYLOAD - 200);
    memset(text, 'x', n);
    text[n] = '\0';
    r.pbx_error = text;
    if (nirc__envelope__get_packed_size(&env) == FRAME_MAX_PAYLOAD) break;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(frame_encode(&env, &buf, &len), 0);
  assert_int_equal(len, FRAME_HEADER_LEN + FRAME_MAX_PAYLOAD);
  assert_int_equal(be32(buf), FRAME_MAX_PAYLOAD);

  /* Whole (no-copy path). */
  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, buf, len, capture_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.len[0], FRAME_MAX_PAYLOAD);
  frame_decoder_free(&d);
  capture_free(&c);

  /* Header first, then the body in two pieces (buffered path). */
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, buf, FRAME_HEADER_LEN, capture_cb, &c), 0);
  assert_int_equal(frame_decoder_feed(&d, buf + FRAME_HEADER_LEN, 1000, capture_cb, &c), 0);
  assert_int_equal(c.count, 0);
  assert_int_equal(frame_decoder_feed(&d, buf + FRAME_HEADER_LEN + 1000,
                                      len - FRAME_HEADER_LEN - 1000, capture_cb, &c),
                   0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.len[0], FRAME_MAX_PAYLOAD);
  assert_memory_equal(c.data[0], buf + FRAME_HEADER_LEN, FRAME_MAX_PAYLOAD);

  Nirc__Envelope *got = NULL;
  assert_int_equal(frame_decode_envelope(c.data[0], c.len[0], &got), 0);
  assert_int_equal(got->msg_case, NIRC__ENVELOPE__MSG_LOAD_REPORT);
  assert_int_equal(strlen(got->load_report->pbx_error), n);
  frame_envelope_free(got);

  frame_decoder_free(&d);
  capture_free(&c);
  free(buf);
  free(text);
}

static void test_encode_too_big(void **state) {
  (void)state;
  enum { BIG = 70000 };
  char *text = malloc(BIG + 1);
  assert_non_null(text);
  memset(text, 'e', BIG);
  text[BIG] = '\0';
  Nirc__LoadReport r;
  fill_report(&r, 0);
  r.pbx_unreadable = true;
  r.pbx_error = text;
  Nirc__Envelope env = NIRC__ENVELOPE__INIT;
  env.msg_case = NIRC__ENVELOPE__MSG_LOAD_REPORT;
  env.load_report = &r;
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(frame_encode(&env, &buf, &len), NIRC_EFRAME_TOO_BIG);
  assert_null(buf);
  free(text);
}

/* ---- truncation and empty frames -------------------------------------- */

static void test_truncated_frame(void **state) {
  (void)state;
  Nirc__LoadReport r;
  fill_report(&r, 2);
  size_t len;
  uint8_t *buf = encode_report(&r, &len);

  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  size_t part = FRAME_HEADER_LEN + (len - FRAME_HEADER_LEN) / 2;
  assert_int_equal(frame_decoder_feed(&d, buf, part, capture_cb, &c), 0);
  assert_int_equal(c.count, 0);
  assert_true(frame_decoder_partial(&d));
  frame_decoder_free(&d);
  assert_false(frame_decoder_partial(&d));

  /* Truncated inside the header. */
  frame_decoder_init(&d);
  assert_false(frame_decoder_partial(&d));
  assert_int_equal(frame_decoder_feed(&d, buf, 2, capture_cb, &c), 0);
  assert_int_equal(c.count, 0);
  assert_true(frame_decoder_partial(&d));
  frame_decoder_free(&d);

  /* The decoder is reusable after free: a whole frame now goes through. */
  assert_int_equal(frame_decoder_feed(&d, buf, len, capture_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_memory_equal(c.data[0], buf + FRAME_HEADER_LEN, len - FRAME_HEADER_LEN);
  frame_decoder_free(&d);
  capture_free(&c);
  free(buf);
}

static void test_zero_length_payload(void **state) {
  (void)state;
  uint8_t hdr[FRAME_HEADER_LEN] = {0, 0, 0, 0};
  capture_t c = {0};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, capture_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(c.len[0], 0);
  assert_false(frame_decoder_partial(&d));

  /* Split header of an empty frame, followed by a second empty frame. */
  uint8_t two[8] = {0};
  assert_int_equal(frame_decoder_feed(&d, two, 3, capture_cb, &c), 0);
  assert_int_equal(c.count, 1);
  assert_int_equal(frame_decoder_feed(&d, two + 3, 5, capture_cb, &c), 0);
  assert_int_equal(c.count, 3);
  assert_int_equal(c.len[1], 0);
  assert_int_equal(c.len[2], 0);
  assert_false(frame_decoder_partial(&d));

  /* An empty envelope carries no message. */
  Nirc__Envelope *env = NULL;
  assert_int_equal(frame_decode_envelope(c.data[0], 0, &env), NIRC_EUNKNOWN_MESSAGE);
  frame_decoder_free(&d);
  capture_free(&c);
}

/* ---- envelope decoding ------------------------------------------------ */

static void test_unknown_field_is_unknown_message(void **state) {
  (void)state;
  /* Control: field 7 (ping), wire type 2, length 0 is a known message, so
   * the hand-encoding below is a valid envelope encoding. */
  const uint8_t ping[] = {(7 << 3) | 2, 0x00};
  Nirc__Envelope *env = NULL;
  assert_int_equal(frame_decode_envelope(ping, sizeof ping, &env), 0);
  assert_non_null(env);
  assert_int_equal(env->msg_case, NIRC__ENVELOPE__MSG_PING);
  frame_envelope_free(env);

  /* Field 99, varint: tag (99 << 3) | 0 = 792 = 0x98 0x06, value 1. A newer
   * peer's message we do not know: well-formed, but no known message. */
  const uint8_t unknown[] = {0x98, 0x06, 0x01};
  env = NULL;
  assert_int_equal(frame_decode_envelope(unknown, sizeof unknown, &env), NIRC_EUNKNOWN_MESSAGE);

  /* Field 99 as a length-delimited sub-message. */
  const uint8_t unknown_ld[] = {0x9A, 0x06, 0x02, 0x08, 0x01};
  assert_int_equal(frame_decode_envelope(unknown_ld, sizeof unknown_ld, &env),
                   NIRC_EUNKNOWN_MESSAGE);

  /* Truncated: the length says 5 bytes but none follow. */
  const uint8_t trunc[] = {(4 << 3) | 2, 0x05};
  assert_int_equal(frame_decode_envelope(trunc, sizeof trunc, &env), NIRC_EFRAME_MALFORMED);
}

static void check_decode_result(const uint8_t *p, size_t n) {
  Nirc__Envelope *env = NULL;
  int rc = frame_decode_envelope(p, n, &env);
  if (rc == 0) {
    assert_non_null(env);
    assert_int_not_equal(env->msg_case, NIRC__ENVELOPE__MSG__NOT_SET);
    frame_envelope_free(env);
  } else if (rc != NIRC_EFRAME_MALFORMED && rc != NIRC_EUNKNOWN_MESSAGE) {
    fail_msg("frame_decode_envelope returned %d (%s) for %zu bytes", rc, nirc_errname(rc), n);
  }
}

static void test_random_bytes_never_crash(void **state) {
  (void)state;
  uint64_t seed = 0xC0FFEE1234ULL;
  uint8_t buf[512];
  for (int it = 0; it < 20000; it++) {
    size_t n = (size_t)(rng_next(&seed) % sizeof buf);
    for (size_t i = 0; i < n; i++)
      buf[i] = (uint8_t)rng_next(&seed);
    check_decode_result(buf, n);
  }

  /* Mutations of a valid envelope reach deeper into the decoder than pure
   * noise does: flip, overwrite, or truncate. */
  Nirc__LoadReport r;
  fill_report(&r, 9);
  r.pbx_error = "timeout";
  size_t len;
  uint8_t *frame = encode_report(&r, &len);
  const uint8_t *payload = frame + FRAME_HEADER_LEN;
  size_t plen = len - FRAME_HEADER_LEN;
  assert_true(plen <= sizeof buf);
  check_decode_result(payload, plen);
  for (int it = 0; it < 20000; it++) {
    memcpy(buf, payload, plen);
    int edits = 1 + (int)(rng_next(&seed) % 4);
    for (int e = 0; e < edits; e++) {
      size_t at = (size_t)(rng_next(&seed) % plen);
      if (rng_next(&seed) & 1)
        buf[at] ^= (uint8_t)(1u << (rng_next(&seed) % 8));
      else
        buf[at] = (uint8_t)rng_next(&seed);
    }
    size_t n = (rng_next(&seed) % 4 == 0) ? (size_t)(rng_next(&seed) % (plen + 1)) : plen;
    check_decode_result(buf, n);
  }
  free(frame);
}

/* Garbage through the stream decoder: never crashes, only TOO_BIG or 0. */
static void test_random_stream_never_crash(void **state) {
  (void)state;
  uint64_t seed = 77;
  uint8_t buf[256];
  for (int it = 0; it < 2000; it++) {
    capture_t c = {0};
    frame_decoder_t d;
    frame_decoder_init(&d);
    int rc = 0;
    for (int k = 0; k < 8 && rc == 0; k++) {
      size_t n = (size_t)(rng_next(&seed) % sizeof buf);
      for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)rng_next(&seed);
      /* Small lengths sometimes, so that frames do complete. */
      if (n >= 4 && (rng_next(&seed) & 1)) put_be32(buf, (uint32_t)(rng_next(&seed) % 64));
      rc = frame_decoder_feed(&d, buf, n, capture_cb, &c);
      assert_true(rc == 0 || rc == NIRC_EFRAME_TOO_BIG);
      capture_free(&c);
    }
    frame_decoder_free(&d);
  }
}

/* ---- callbacks stop decoding ------------------------------------------ */

/* link_opts_default sets every field: callers fill a copy on the stack,
 * and a frame cap left as stack garbage (max_recv 2) once refused every
 * frame a swarm agent received. */
static void test_link_opts_default_sets_every_field(void **state) {
  (void)state;
  link_opts_t o;
  memset(&o, 0xa5, sizeof o);
  link_opts_default(&o);
  assert_int_equal(o.max_recv, 0);
  assert_int_equal(o.max_send, 0);
  assert_int_equal(o.max_msgs_per_s, 0);
  assert_int_equal(o.ping_interval_ms, 0);
  assert_int_equal(o.handshake_timeout_ms, 10000);
}

/* A decoder's cap can be raised (nircctl, for replies) and a payload past
 * the default but under the raised cap is accepted. */
static void test_raised_cap_accepts_large_payload(void **state) {
  (void)state;
  frame_decoder_t d;
  frame_decoder_init(&d);
  d.max = FRAME_MAX_REPLY;
  uint8_t hdr[4] = {0, 2, 0, 0}; /* 128 KiB announced: over 64 KiB, under 32 MiB */
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, NULL, NULL), 0);
  assert_true(frame_decoder_partial(&d));
  frame_decoder_free(&d);
  frame_decoder_init(&d); /* the default cap refuses the same header */
  assert_int_equal(frame_decoder_feed(&d, hdr, sizeof hdr, NULL, NULL), NIRC_EFRAME_TOO_BIG);
  frame_decoder_free(&d);
}

static void test_callback_error_stops(void **state) {
  (void)state;
  three_t t;
  make_three(&t);

  /* All three in one read (no-copy path): stop at the second. */
  capture_t c = {.stop_at = 2, .stop_rc = NIRC_EPROTOCOL};
  frame_decoder_t d;
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, t.buf, t.len, capture_cb, &c), NIRC_EPROTOCOL);
  assert_int_equal(c.count, 2); /* the third frame was never delivered */
  frame_decoder_free(&d);
  capture_free(&c);

  /* Byte by byte (buffered path): stop at the first. */
  c = (capture_t){.stop_at = 1, .stop_rc = NIRC_EFORBIDDEN};
  frame_decoder_init(&d);
  int rc = 0;
  size_t i = 0;
  for (; i < t.len; i++) {
    rc = frame_decoder_feed(&d, t.buf + i, 1, capture_cb, &c);
    if (rc != 0) break;
  }
  assert_int_equal(rc, NIRC_EFORBIDDEN);
  assert_int_equal(i, t.flen[0] - 1); /* on the last byte of the first frame */
  assert_int_equal(c.count, 1);
  frame_decoder_free(&d);
  capture_free(&c);

  /* A first frame completing a buffered body, then more frames in the same
   * read: the error from the first stops the rest. */
  c = (capture_t){.stop_at = 1, .stop_rc = NIRC_ECLOSED};
  frame_decoder_init(&d);
  assert_int_equal(frame_decoder_feed(&d, t.buf, 6, capture_cb, &c), 0);
  assert_int_equal(frame_decoder_feed(&d, t.buf + 6, t.len - 6, capture_cb, &c), NIRC_ECLOSED);
  assert_int_equal(c.count, 1);
  frame_decoder_free(&d);
  capture_free(&c);
  free(t.buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_decode_roundtrip),
      cmocka_unit_test(test_link_opts_default_sets_every_field),
      cmocka_unit_test(test_raised_cap_accepts_large_payload),
      cmocka_unit_test(test_split_one_byte_at_a_time),
      cmocka_unit_test(test_three_coalesced),
      cmocka_unit_test(test_two_and_a_half_then_rest),
      cmocka_unit_test(test_every_cut_point),
      cmocka_unit_test(test_random_chunks),
      cmocka_unit_test(test_too_big_refused_before_allocation),
      cmocka_unit_test(test_exactly_max_payload_accepted),
      cmocka_unit_test(test_encode_too_big),
      cmocka_unit_test(test_truncated_frame),
      cmocka_unit_test(test_zero_length_payload),
      cmocka_unit_test(test_unknown_field_is_unknown_message),
      cmocka_unit_test(test_random_bytes_never_crash),
      cmocka_unit_test(test_random_stream_never_crash),
      cmocka_unit_test(test_callback_error_stops),
  };
  return cmocka_run_group_tests(tests, 0, NULL);
}
