/* oob_frame.c: allcores._core.oob_split, the reader of out-of-band frames (oob_frame.h) for
 * allcores/_oob.py.
 *
 * Contract: oob_split(payload) takes any C-contiguous bytes-like object holding one frame and
 * returns (stream, [buffer, ...]): memoryviews slicing the payload's own memory, no copy; the
 * payload stays alive as long as any of them. A frame that does not hold together (lengths past
 * its end, more than OOB_MAX_BUFFERS buffers, a header cut short) raises CorruptError naming
 * what was read; the core checks every span before a view is made. */
#include "binding.h"

#include "allcores/errors.h"
#include "allcores/oob_frame.h"

/* More buffers than any payload has (each is at least OOB_MIN_BYTES): a count above this is
 * corruption, and bounds what a corrupt count can make the reader allocate. _oob.dumps sends a
 * payload with more of them in band. */
#define OOB_MAX_BUFFERS (1u << 16)

static PyObject *oob_split(PyObject *m, PyObject *payload) {
  PyObject *mv = PyMemoryView_FromObject(payload);
  if (!mv) return NULL;
  Py_buffer *view = PyMemoryView_GET_BUFFER(mv);
  if (!PyBuffer_IsContiguous(view, 'C')) {
    Py_DECREF(mv);
    PyErr_SetString(PyExc_TypeError, "oob_split: the payload must be C-contiguous");
    return NULL;
  }
  const uint8_t *frame = view->buf;
  uint64_t len = (uint64_t)view->len;
  uint32_t n_claimed = len >= 4 ? (uint32_t)frame[0] | (uint32_t)frame[1] << 8 |
                                      (uint32_t)frame[2] << 16 | (uint32_t)frame[3] << 24
                                : 0;
  uint32_t max = n_claimed < OOB_MAX_BUFFERS ? n_claimed : OOB_MAX_BUFFERS;
  ac_span stream, *bufs = PyMem_Malloc(sizeof(ac_span) * (max ? max : 1));
  if (!bufs) {
    Py_DECREF(mv);
    return PyErr_NoMemory();
  }
  PyObject *out = NULL, *list = NULL;
  int n = ac_oob_frame_parse(frame, len, &stream, bufs, max);
  if (n < 0) {
    ac_module_state *st = ac_get_state(m);
    PyErr_Format(st->CorruptError,
                 "an out-of-band payload of %llu bytes does not hold together (it claims %u "
                 "buffers)", (unsigned long long)len, n_claimed);
    goto done;
  }
  list = PyList_New(n);
  if (!list) goto done;
  for (int i = 0; i < n; i++) {
    PyObject *part = PySequence_GetSlice(mv, (Py_ssize_t)bufs[i].off,
                                         (Py_ssize_t)(bufs[i].off + bufs[i].len));
    if (!part) goto done;
    PyList_SET_ITEM(list, i, part);
  }
  PyObject *head = PySequence_GetSlice(mv, (Py_ssize_t)stream.off,
                                       (Py_ssize_t)(stream.off + stream.len));
  if (!head) goto done;
  out = PyTuple_Pack(2, head, list);
  Py_DECREF(head);
done:
  Py_XDECREF(list);
  PyMem_Free(bufs);
  Py_DECREF(mv);
  return out;
}

static PyMethodDef oob_frame_methods[] = {
    {"oob_split", oob_split, METH_O,
     "oob_split(payload): (stream, [buffer, ...]) of an out-of-band frame, as memoryviews of the "
     "payload (no copy); CorruptError when the frame does not hold together."},
    {NULL, NULL, 0, NULL},
};

int acx_register_oob_frame(PyObject *m) {
  if (PyModule_AddIntConstant(m, "OOB_MAX_BUFFERS", OOB_MAX_BUFFERS) < 0) return -1;
  if (PyModule_AddIntConstant(m, "OOB_ALIGN", AC_OOB_ALIGN) < 0) return -1;
  return PyModule_AddFunctions(m, oob_frame_methods);
}
