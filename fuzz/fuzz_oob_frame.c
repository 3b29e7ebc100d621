/* fuzz_oob_frame.c: ac_oob_frame_parse on any bytes, as a worker or the parent reads an
 * out-of-band payload (allcores/_oob.py) from an arena block a faulty process may have written.
 * The frame is a heap block of its exact size, so ASan sees a read one byte too far. Oracle: an
 * accepted frame has n <= max_bufs, a stream right after the header, buffers in order, each
 * aligned, none overlapping the previous part, every part inside the frame; a refused one says
 * AC_ECORRUPT and nothing else. */
#include <stdlib.h>
#include <string.h>

#include "allcores/errors.h"
#include "allcores/oob_frame.h"
#include "fuzz.h"

#define MAX_BUFS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *frame = malloc(size ? size : 1);
  if (!frame) return 0;
  memcpy(frame, data, size);
  ac_span stream, bufs[MAX_BUFS];
  int n = ac_oob_frame_parse(frame, size, &stream, bufs, MAX_BUFS);
  if (n < 0) {
    FUZZ_CHECK(n == AC_ECORRUPT);
  } else {
    FUZZ_CHECK(n <= MAX_BUFS);
    FUZZ_CHECK(stream.off == ac_oob_header_len((uint32_t)n));
    FUZZ_CHECK(stream.len <= size && stream.off <= size - stream.len);
    uint64_t end = stream.off + stream.len;
    for (int i = 0; i < n; i++) {
      FUZZ_CHECK(bufs[i].off % AC_OOB_ALIGN == 0);
      FUZZ_CHECK(bufs[i].off >= end && bufs[i].off - end < AC_OOB_ALIGN);
      FUZZ_CHECK(bufs[i].len <= size && bufs[i].off <= size - bufs[i].len);
      end = bufs[i].off + bufs[i].len;
      if (bufs[i].len) { /* touch both ends: ASan checks the span is inside the block */
        volatile uint8_t first = frame[bufs[i].off], last = frame[end - 1];
        (void)first;
        (void)last;
      }
    }
  }
  free(frame);
  return 0;
}
