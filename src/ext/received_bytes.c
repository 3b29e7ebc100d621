/* received_bytes.c: how a big bytes or bytearray payload received through the region becomes an
 * object of its own type: allcores._core.shared_bytes, bytes_copy, bytearray_copy.
 *
 * Contract:
 * - shared_bytes(view) returns a SharedBytes, a subclass of bytes whose object lives inside the
 *   arena block the payload came in: no copy. `view` must be a memoryview of a BlockBuffer (what
 *   _oob.loads hands out) with at least SHARED_BYTES_GAP zero bytes before it and one zero byte
 *   after it inside the block (the framing's padding). The object's header is written into the
 *   gap (a bytes object's data follows its header, so the data itself needs no move) and the
 *   word before the header holds a strong reference to the BlockBuffer: the block stays alive
 *   while the bytes object does and is freed with the last reference to either. Anything else
 *   (a copy of the payload, padding already used) gets a plain copy, as bytes_copy.
 * - bytes_copy / bytearray_copy return a new bytes (bytearray) holding a copy of any buffer. A
 *   copy of megabytes lands in fresh memory (glibc maps big allocations anew each time), whose 4
 *   KiB page faults cost more than the copy itself on a VM (1.3-1.5 GB/s measured for
 *   bytes(memoryview) of 64 MiB on the 2-core VM); asking for transparent huge pages on the 2
 *   MiB-aligned interior first makes the same copy run at 5-7 GB/s there. The copy runs without
 *   the GIL. A bytearray must own its memory (it can grow), so it is always copied.
 * SharedBytes cannot be created from Python, and pickles as plain bytes. */
#include "binding.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_BYTES ((uintptr_t)2 << 20)
#define ADVISE_FROM (4u << 20) /* below this a huge page would rarely fit inside the object */
#define BYTES_HEADER offsetof(PyBytesObject, ob_sval)
/* The owner reference, then the bytes object's header, just before the data. */
#define SHARED_BYTES_GAP (BYTES_HEADER + sizeof(PyObject *))
_Static_assert(SHARED_BYTES_GAP <= 64, "the framing pads every out-of-band buffer by 64 bytes");

static void copy_into(char *dst, const void *src, size_t n) {
  if (n < ADVISE_FROM) {
    memcpy(dst, src, n);
    return;
  }
  Py_BEGIN_ALLOW_THREADS
  uintptr_t start = ((uintptr_t)dst + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
  uintptr_t end = ((uintptr_t)dst + n) & ~(HUGE_BYTES - 1);
  if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE); /* a hint only */
  memcpy(dst, src, n);
  Py_END_ALLOW_THREADS
}

static PyObject *copy_as(PyObject *arg, PyObject *(*make)(const char *, Py_ssize_t),
                         char *(*data)(PyObject *)) {
  Py_buffer view;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
  PyObject *out = make(NULL, view.len);
  if (out) copy_into(data(out), view.buf, (size_t)view.len);
  PyBuffer_Release(&view);
  return out;
}

static char *bytes_data(PyObject *o) { return PyBytes_AS_STRING(o); }
static char *bytearray_data(PyObject *o) { return PyByteArray_AS_STRING(o); }

static PyObject *bytes_copy(PyObject *module, PyObject *arg) {
  return copy_as(arg, PyBytes_FromStringAndSize, bytes_data);
}

static PyObject *bytearray_copy(PyObject *module, PyObject *arg) {
  return copy_as(arg, PyByteArray_FromStringAndSize, bytearray_data);
}

static int all_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static PyObject **owner_slot(PyObject *op) { return (PyObject **)((char *)op - sizeof(PyObject *)); }

static PyObject *shared_bytes(PyObject *module, PyObject *arg) {
  ac_module_state *st = ac_get_state(module);
  char *start;
  Py_ssize_t block_len;
  if (!PyMemoryView_Check(arg) ||
      acx_block_buffer_span(st, PyMemoryView_GET_BASE(arg), &start, &block_len) < 0)
    return bytes_copy(module, arg);
  Py_buffer *v = PyMemoryView_GET_BUFFER(arg);
  char *data = v->buf;
  if (!PyBuffer_IsContiguous(v, 'C') || data - start < (ptrdiff_t)SHARED_BYTES_GAP ||
      data + v->len >= start + block_len || !all_zero(data - SHARED_BYTES_GAP, SHARED_BYTES_GAP) ||
      data[v->len] != 0)
    return bytes_copy(module, arg);
  PyObject *op = (PyObject *)(data - BYTES_HEADER);
  /* The header is aligned: the framing puts every buffer on a 64-byte boundary. */
  if ((uintptr_t)op % _Alignof(max_align_t)) return bytes_copy(module, arg);
  PyObject_InitVar((PyVarObject *)op, st->SharedBytes, v->len); /* takes a type reference */
  Py_hash_t unknown = -1;
  memcpy((char *)op + offsetof(PyBytesObject, ob_shash), &unknown, sizeof unknown);
  *owner_slot(op) = Py_NewRef(PyMemoryView_GET_BASE(arg));
  return op;
}

static void SharedBytes_dealloc(PyObject *op) {
  PyTypeObject *tp = Py_TYPE(op);
  PyObject *owner = *owner_slot(op);
  /* The object lives in the block its owner frees: nothing may touch it after this. */
  memset((char *)op - sizeof(PyObject *), 0, SHARED_BYTES_GAP);
  Py_DECREF(owner);
  Py_DECREF(tp);
}

static PyObject *SharedBytes_reduce(PyObject *self, PyObject *Py_UNUSED(ignored)) {
  PyObject *copy = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self), PyBytes_GET_SIZE(self));
  if (!copy) return NULL;
  return Py_BuildValue("(O(N))", (PyObject *)&PyBytes_Type, copy);
}

static PyMethodDef SharedBytes_methods[] = {
    {"__reduce__", SharedBytes_reduce, METH_NOARGS, "Pickles as plain bytes."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot SharedBytes_slots[] = {
    {Py_tp_dealloc, SharedBytes_dealloc},
    {Py_tp_methods, SharedBytes_methods},
    {Py_tp_doc, "bytes received through a pool's shared memory, without a copy: the object lives "
                "in the block it arrived in, which is freed when the object is."},
    {0, NULL},
};

static PyType_Spec SharedBytes_spec = {
    .name = "allcores._core.SharedBytes",
    .basicsize = (int)(BYTES_HEADER + 1),
    .itemsize = 1,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = SharedBytes_slots,
};

static PyMethodDef copy_methods[] = {
    {"shared_bytes", shared_bytes, METH_O,
     "shared_bytes(view): bytes living in the arena block `view` shows (a SharedBytes), or a "
     "copy when the block has no room for its header."},
    {"bytes_copy", bytes_copy, METH_O, "bytes_copy(buffer): a new bytes holding a copy of it."},
    {"bytearray_copy", bytearray_copy, METH_O,
     "bytearray_copy(buffer): a new bytearray holding a copy of it."},
    {NULL, NULL, 0, NULL},
};

int acx_register_copy(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &SharedBytes_spec, (PyObject *)&PyBytes_Type);
  if (!tp) return -1;
  ac_get_state(m)->SharedBytes = (PyTypeObject *)tp; /* the state owns this reference */
  if (PyModule_AddObjectRef(m, "SharedBytes", tp) < 0) return -1;
  return PyModule_AddFunctions(m, copy_methods);
}
