/* oob_frame.h: the frame of a payload whose big buffers travel out of band (allcores/_oob.py):
 *
 *     [u32 n][u64 len(stream)][u64 len(buf 1)] ... [u64 len(buf n)]
 *     [stream] [pad][buf 1] [pad][buf 2] ... [pad][buf n]
 *
 * little-endian, every buffer starting at a multiple of AC_OOB_ALIGN bytes from the frame's
 * start (the pad is what it takes), the stream (a pickle) right after the header.
 *
 * Contract: ac_oob_frame_parse() reads a frame of frame_len bytes that may hold anything (it came
 * through shared memory a dead or faulty process may have written) and accepts it only when the
 * header is whole, n <= max_bufs, and the stream and every buffer lie inside the frame; it then
 * fills stream and bufs[0..n) with offsets from the frame's start and returns n. Anything else
 * returns AC_ECORRUPT and leaves the outputs unspecified. It never reads outside the header.
 * ac_oob_header_len(n) is the header's size for n buffers, ac_oob_pad(at) the pad before a
 * buffer placed at offset at. No Python here: the binding slices its views from these spans. */
#ifndef ALLCORES_OOB_FRAME_H
#define ALLCORES_OOB_FRAME_H

#include <stdint.h>

#define AC_OOB_ALIGN 64

typedef struct {
  uint64_t off;
  uint64_t len;
} ac_span;

static inline uint64_t ac_oob_header_len(uint32_t n) { return 4 + 8 * ((uint64_t)n + 1); }

static inline uint64_t ac_oob_pad(uint64_t at) { return (AC_OOB_ALIGN - at % AC_OOB_ALIGN) % AC_OOB_ALIGN; }

int ac_oob_frame_parse(const uint8_t *frame, uint64_t frame_len, ac_span *stream, ac_span *bufs,
                       uint32_t max_bufs);

#endif
