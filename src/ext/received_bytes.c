/* received_bytes.c: how a big bytes or bytearray payload received through the region becomes an
 * object of its own type: allcores._core.shared_bytes and bytearray_copy.
 *
 * Contract:
 * - shared_bytes(view) returns a SharedBytes, a subclass of bytes, without copying the data: when
 *   `view` is a memoryview of a BlockBuffer (what _oob.loads hands out), the pages holding it are
 *   mapped again privately (ac_region_map_private: copy on write) and the bytes object is built in
 *   that mapping, its header written over what precedes the data there (a bytes object's data
 *   follows its header). Only the first and last page are copied (by those writes); the object
 *   holds the BlockBuffer, so the block stays allocated and unchanged while it lives, and unmaps
 *   the mapping when it goes. Being private memory, it is copied into a fork child like any
 *   other object: the child's reference counting never reaches the parent's object (a zero-copy
 *   bytes in the shared mapping itself would let it). Anything else (not an arena view, no room,
 *   mmap refused) gets a plain copy, made as bytearray_copy makes its own.
 * - bytearray_copy returns a new bytearray holding a copy of any buffer. A copy of megabytes
 *   lands in fresh memory (glibc maps big allocations anew each time), whose 4 KiB page faults
 *   cost more than the copy itself on a VM (1.3-1.5 GB/s measured for bytes(memoryview) of 64
 *   MiB on the 2-core VM); asking for transparent huge pages on the 2 MiB-aligned interior first
 *   makes the same copy run at 5-7 GB/s there. The copy runs without the GIL. A bytearray can
 *   grow, so it must own its memory: it is always copied.
 * SharedBytes cannot be created from Python nor subclassed, and pickles as plain bytes. */
#include "binding.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "allcores/region.h"

#define HUGE_BYTES ((uintptr_t)2 << 20)
#define ADVISE_FROM (4u << 20) /* below this a huge page would rarely fit inside the object */
#define BYTES_HEADER offsetof(PyBytesObject, ob_sval)
/* Before the header, in the private mapping: the owner (a BlockBuffer) and the mapping's length. */
#define SHARED_BYTES_BEFORE (BYTES_HEADER + sizeof(PyObject *) + sizeof(size_t))
#define SHARED_BYTES_MIN 65536 /* below this a copy costs less than a mapping */

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

static PyObject **owner_slot(PyObject *op) {
  return (PyObject **)((char *)op - sizeof(PyObject *) - sizeof(size_t));
}
static size_t *map_len_slot(PyObject *op) { return (size_t *)((char *)op - sizeof(size_t)); }

static PyObject *shared_bytes(PyObject *module, PyObject *arg) {
  ac_module_state *st = ac_get_state(module);
  const struct ac_region *r;
  if (!PyMemoryView_Check(arg) || acx_block_buffer_region(st, PyMemoryView_GET_BASE(arg), &r) < 0)
    return bytes_copy(module, arg);
  Py_buffer *v = PyMemoryView_GET_BUFFER(arg);
  const char *data = v->buf;
  if (v->len < SHARED_BYTES_MIN || !PyBuffer_IsContiguous(v, 'C') ||
      ((uintptr_t)data - SHARED_BYTES_BEFORE) % _Alignof(max_align_t))
    return bytes_copy(module, arg);
  void *map;
  size_t map_len;
  char *priv;
  /* len + 1: the NUL a bytes object keeps after its data */
  if (ac_region_map_private(r, data, SHARED_BYTES_BEFORE, (size_t)v->len + 1, &map, &map_len,
                            &priv) != 0)
    return bytes_copy(module, arg);
  PyObject *op = (PyObject *)(priv - BYTES_HEADER);
  PyObject_InitVar((PyVarObject *)op, st->SharedBytes, v->len); /* takes a type reference */
  Py_hash_t unknown = -1;
  memcpy((char *)op + offsetof(PyBytesObject, ob_shash), &unknown, sizeof unknown);
  priv[v->len] = 0;
  *owner_slot(op) = Py_NewRef(PyMemoryView_GET_BASE(arg));
  *map_len_slot(op) = map_len;
  return op;
}

static void SharedBytes_dealloc(PyObject *op) {
  PyTypeObject *tp = Py_TYPE(op);
  PyObject *owner = *owner_slot(op);
  size_t map_len = *map_len_slot(op);
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  void *map = (void *)((uintptr_t)owner_slot(op) & ~(page - 1));
  munmap(map, map_len); /* the object itself goes with it: nothing may touch it after this */
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
    {Py_tp_doc, "bytes received through a pool's shared memory without a copy: a private "
                "copy-on-write mapping of the block it arrived in, freed with the object."},
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
     "shared_bytes(view): bytes made from an arena block's view without a copy (a SharedBytes), "
     "or a copy when that cannot be done."},
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
