/* oob_frame.c: reading the out-of-band frame of oob_frame.h. Every length is checked against
 * what is left of the frame before it is added to anything, so no sum can wrap. */
#include "allcores/oob_frame.h"

#include "allcores/errors.h"

static uint64_t read_le(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

int ac_oob_frame_parse(const uint8_t *frame, uint64_t frame_len, ac_span *stream, ac_span *bufs,
                       uint32_t max_bufs) {
  if (frame_len < 4) return AC_ECORRUPT;
  uint32_t n = (uint32_t)read_le(frame, 4);
  if (n > max_bufs || n > INT32_MAX) return AC_ECORRUPT; /* the count is returned as an int */
  uint64_t at = ac_oob_header_len(n);
  if (at > frame_len) return AC_ECORRUPT;
  uint64_t len = read_le(frame + 4, 8);
  if (len > frame_len - at) return AC_ECORRUPT;
  stream->off = at;
  stream->len = len;
  at += len;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t pad = ac_oob_pad(at);
    len = read_le(frame + 12 + 8 * (uint64_t)i, 8);
    if (pad > frame_len - at || len > frame_len - at - pad) return AC_ECORRUPT;
    at += pad;
    bufs[i].off = at;
    bufs[i].len = len;
    at += len;
  }
  return (int)n;
}
