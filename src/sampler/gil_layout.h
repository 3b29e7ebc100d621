/* gil_layout.h: the entry point of the per-version layout translation unit (gil_layout.c).
 * Contract: no Python.h here; gil_layout.c is the only file that sees CPython's internal
 * structures. ac_gil_layout_init() must be called with the GIL held, from a thread attached to
 * the main interpreter. It fills *out and runs the self-test: it returns 0 when the layout
 * agrees with the running interpreter, and a negative code with a reason in err otherwise (the
 * caller then measures only what needs no layout). */
#ifndef ALLCORES_GIL_LAYOUT_H
#define ALLCORES_GIL_LAYOUT_H

#include <stddef.h>

#include "gil_view.h"

int ac_gil_layout_init(ac_gil_layout *out, unsigned long expected_interval_us, char *err, size_t errlen);

/* The CPython minor version the layout was compiled against (e.g. 12 for 3.12). */
int ac_gil_layout_py_minor(void);

#endif
