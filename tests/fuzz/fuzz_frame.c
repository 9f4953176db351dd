/* libFuzzer: a peer's bytes through the frame decoder and the Envelope
 * unpacker, split at a fuzzer-chosen point, as link.c feeds them. */
#include "frame.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_frame_payload(void *arg, const uint8_t *payload, size_t len) {
  Nirc__Envelope *env = NULL;
  if (frame_decode_envelope(payload, len, &env) == 0) {
    /* Re-encoding what was decoded must work for any accepted message. */
    uint8_t *out;
    size_t outlen;
    if (frame_encode(env, &out, &outlen) == 0) __builtin_free(out);
    frame_envelope_free(env);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t split = data[0] % (size + 1);
  frame_decoder_t d;
  frame_decoder_init(&d);
  int rc = frame_decoder_feed(&d, data + 1, split > size - 1 ? size - 1 : split, fuzz_frame_payload,
                              NULL);
  if (rc == 0 && split < size - 1)
    frame_decoder_feed(&d, data + 1 + split, size - 1 - split, fuzz_frame_payload, NULL);
  frame_decoder_free(&d);
  return 0;
}
