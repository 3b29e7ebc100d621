/* test-oob-frame.c: reading the out-of-band frame: a frame as _oob.dumps writes it is read back
 * part by part; truncated headers, lengths past the end, too many buffers and lengths that would
 * wrap a sum are refused. */
#include <string.h>

#include "allcores/errors.h"
#include "allcores/oob_frame.h"
#include "task.h"

static void put_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes a frame of a stream of stream_len bytes and n buffers of the given lengths, as
 * _oob.dumps lays it out; returns its length. */
static uint64_t make_frame(uint8_t *out, uint64_t stream_len, const uint64_t *lens, uint32_t n) {
  put_le(out, n, 4);
  put_le(out + 4, stream_len, 8);
  for (uint32_t i = 0; i < n; i++) put_le(out + 12 + 8 * i, lens[i], 8);
  uint64_t at = ac_oob_header_len(n);
  memset(out + at, 's', stream_len);
  at += stream_len;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t pad = ac_oob_pad(at);
    memset(out + at, 0, pad);
    at += pad;
    memset(out + at, 'a' + (int)i, lens[i]);
    at += lens[i];
  }
  return at;
}

TEST_IMPL(oob_frame_reads_back_what_dumps_writes) {
  static uint8_t frame[4096];
  uint64_t lens[3] = {100, 0, 65};
  uint64_t len = make_frame(frame, 37, lens, 3);
  ac_span stream, bufs[4];
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), 3);
  ASSERT_EQ(stream.off, ac_oob_header_len(3));
  ASSERT_EQ(stream.len, 37);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(bufs[i].off % AC_OOB_ALIGN, 0);
    ASSERT_EQ(bufs[i].len, lens[i]);
    ASSERT_LE(bufs[i].off + bufs[i].len, len);
  }
  ASSERT_EQ(frame[bufs[0].off], 'a');
  ASSERT_EQ(frame[bufs[2].off + 64], 'c');
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 2), AC_ECORRUPT); /* too many */
  ASSERT_EQ(ac_oob_frame_parse(frame, len - 1, &stream, bufs, 4), AC_ECORRUPT); /* cut short */
  uint64_t none[1];
  len = make_frame(frame, 5, none, 0);
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), 0);
  ASSERT_EQ(stream.len, 5);
}

TEST_IMPL(oob_frame_refuses_lengths_outside_the_frame) {
  static uint8_t frame[4096];
  ac_span stream, bufs[4];
  ASSERT_EQ(ac_oob_frame_parse(frame, 3, &stream, bufs, 4), AC_ECORRUPT); /* no count */
  put_le(frame, 2, 4);
  ASSERT_EQ(ac_oob_frame_parse(frame, 20, &stream, bufs, 4), AC_ECORRUPT); /* header cut */
  uint64_t lens[2] = {10, 10};
  uint64_t len = make_frame(frame, 8, lens, 2);
  put_le(frame + 4, UINT64_MAX, 8); /* a stream that would wrap the sum */
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), AC_ECORRUPT);
  put_le(frame + 4, 8, 8);
  put_le(frame + 20, UINT64_MAX - 5, 8); /* a buffer that would wrap it */
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), AC_ECORRUPT);
  put_le(frame + 20, 11, 8); /* one byte past the end */
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), AC_ECORRUPT);
  put_le(frame + 20, 10, 8);
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 4), 2);
  put_le(frame, 0xFFFFFFFFu, 4); /* a count no frame can hold */
  ASSERT_EQ(ac_oob_frame_parse(frame, len, &stream, bufs, 0xFFFFFFFFu), AC_ECORRUPT);
}
