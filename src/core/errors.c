/* errors.c: descriptions of the core's error codes. */
#include "allcores/errors.h"

#include <string.h>

const char *ac_strerror(int code) {
  switch (code) {
  case AC_ECLOSED: return "the pool's shared region was shut down";
  case AC_ETOOBIG: return "payload larger than the shared arena can hold";
  case AC_ECORRUPT: return "invalid frame in shared memory";
  case AC_ENOSPACE: return "the shared arena is full";
  case AC_EDEAD: return "the peer process is gone";
  case AC_EEVENT: return "the watched word changed while waiting";
  default: return code < 0 && code > -4096 ? strerror(-code) : "unknown error";
  }
}
