/* errors.h: the error codes of the allcores C core.
 * Contract: every core function returns 0 (or a non-negative count) on success and a negative
 * code on failure: -errno for operating-system errors, or one of the AC_E* values below, which
 * lie outside the errno range. The core never prints and never raises; the binding turns codes
 * into exceptions in one place (src/ext/errors.c). */
#ifndef ALLCORES_ERRORS_H
#define ALLCORES_ERRORS_H

#include <errno.h>

enum {
  AC_ECLOSED = -4097,   /* the ring or region was shut down; nothing more will arrive */
  AC_ETOOBIG = -4098,   /* a payload larger than the shared arena can ever hold */
  AC_ECORRUPT = -4099,  /* a decoder met bytes that do not form a valid frame */
  AC_ENOSPACE = -4100,  /* the arena is full right now; retry after consumers free blocks */
  AC_EDEAD = -4101,     /* the peer process (template, worker, parent) is gone */
  AC_EEVENT = -4102,    /* a waiting call's watched word changed (ring.h's ac_watch): look again */
};

/* Returns a static, human-readable description of an error code. */
const char *ac_strerror(int code);

#endif
