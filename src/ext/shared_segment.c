/* shared_segment.c: allcores._core.Segment (one process's handle on a shared segment, a writable
 * buffer), the helpers every primitive's view shares, and the registration of the shared types. */
#include "shared.h"

#include <structmember.h>

#define SegmentObject_CAST(op) ((SegmentObject *)(op))

static void Segment_dealloc(PyObject *op);

int acx__is_segment(PyObject *obj) {
  /* Types are per interpreter; the dealloc function is not, so it identifies the type. */
  for (PyTypeObject *tp = Py_TYPE(obj); tp; tp = tp->tp_base)
    if (tp->tp_dealloc == Segment_dealloc) return 1;
  return 0;
}

int64_t acx__timeout_ns(PyObject *timeout, int negative) {
  if (timeout == NULL || timeout == Py_None) return -1;
  double t = PyFloat_AsDouble(timeout);
  if (t == -1.0 && PyErr_Occurred()) return -2;
  if (t < 0) return negative == ACX_NEGATIVE_FOREVER ? -1 : 0;
  return acx_seconds_ns(t);
}

int acx__parse_acquire(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int *block,
                       int64_t *timeout_ns) {
  /* By hand: acquire sits on every `with lock` and Value.value path, where generic keyword
   * parsing would cost more than the lock itself. */
  PyObject *b = nargs > 0 ? args[0] : NULL, *t = nargs > 1 ? args[1] : NULL;
  if (nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
    return -1;
  }
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t i = 0; i < nkw; i++) {
    PyObject *key = PyTuple_GET_ITEM(kwnames, i), **slot;
    if (PyUnicode_CompareWithASCIIString(key, "block") == 0 ||
        PyUnicode_CompareWithASCIIString(key, "blocking") == 0) {
      slot = &b;
    } else if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
      slot = &t;
    } else {
      PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'", key);
      return -1;
    }
    if (*slot) {
      PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument '%U'", key);
      return -1;
    }
    *slot = args[nargs + i];
  }
  *block = b ? PyObject_IsTrue(b) : 1;
  if (*block < 0) return -1;
  *timeout_ns = acx__timeout_ns(t, ACX_NEGATIVE_FOREVER);
  return *timeout_ns == -2 ? -1 : 0;
}

void acx__segment_hold(SegmentObject *seg, int delta) {
  if (delta > 0 && seg->holds++ == 0) Py_INCREF(seg);
  if (delta < 0 && seg->holds > 0 && --seg->holds == 0) Py_DECREF(seg);
}

/* --- views ---------------------------------------------------------------------------------- */

char *acx__view_at(PyObject *segment, Py_ssize_t offset, size_t size, size_t align) {
  if (!acx__is_segment(segment)) {
    PyErr_Format(PyExc_TypeError, "expected a Segment, not %.100s", Py_TYPE(segment)->tp_name);
    return NULL;
  }
  ac_seg *s = &SegmentObject_CAST(segment)->seg;
  if (offset < 0 || (uint64_t)offset > s->size || s->size - (uint64_t)offset < size ||
      ((uintptr_t)(s->data + offset) & (align - 1))) {
    PyErr_Format(PyExc_ValueError,
                 "no aligned room for %zu bytes at offset %zd of a segment of %llu", size, offset,
                 (unsigned long long)s->size);
    return NULL;
  }
  return s->data + offset;
}

PyObject *acx__view_new(PyTypeObject *tp, PyObject *segment, Py_ssize_t offset) {
  ViewObject *self = (ViewObject *)tp->tp_alloc(tp, 0);
  if (!self) return NULL;
  self->segment = (SegmentObject *)Py_NewRef(segment);
  self->offset = offset;
  return (PyObject *)self;
}

void acx__view_dealloc(PyObject *op) {
  ViewObject *self = (ViewObject *)op;
  PyTypeObject *tp = Py_TYPE(op);
  Py_CLEAR(self->segment);
  tp->tp_free(op);
  Py_DECREF(tp);
}

PyMemberDef acx__view_members[] = {
    {"_segment", T_OBJECT, offsetof(ViewObject, segment), READONLY, "The Segment it lives in."},
    {"_offset", T_PYSSIZET, offsetof(ViewObject, offset), READONLY, "Its offset in the segment."},
    {NULL, 0, 0, 0, NULL},
};

/* --- Segment -------------------------------------------------------------------------------- */

static PyObject *Segment_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"nbytes", NULL};
  Py_ssize_t nbytes;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:Segment", kwlist, &nbytes)) return NULL;
  if (nbytes < 0 || (uint64_t)nbytes > AC_SEG_MAX) {
    PyErr_Format(PyExc_ValueError, "nbytes must be 0..%llu", (unsigned long long)AC_SEG_MAX);
    return NULL;
  }
  SegmentObject *self = (SegmentObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS /* memfd_create, ftruncate and mmap of a big segment take a while */
  rc = ac_seg_create(&self->seg, (uint64_t)nbytes);
  Py_END_ALLOW_THREADS
  if (rc) {
    Py_DECREF(self);
    return ac_py_raise_for(NULL, rc, "cannot create a shared segment");
  }
  return (PyObject *)self;
}

PyDoc_STRVAR(Segment_open__doc__,
"_open(ref)\n--\n\n"
"Map the segment a reference from _ref() names (consuming its pin) as a new object of this\n"
"class. Raises FileNotFoundError when no process that could open it is left.");

static PyObject *Segment_open(PyObject *cls, PyObject *ref) {
  ac_seg_ref r;
  unsigned long long token;
  if (!PyArg_ParseTuple(ref, "Kiiii:_open", &token, &r.creator_pid, &r.creator_fd, &r.sender_pid,
                        &r.sender_fd))
    return NULL;
  r.token = token;
  PyTypeObject *type = (PyTypeObject *)cls;
  SegmentObject *self = (SegmentObject *)type->tp_alloc(type, 0);
  if (!self) return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = ac_seg_open(&self->seg, &r);
  Py_END_ALLOW_THREADS
  if (rc) {
    Py_DECREF(self);
    return ac_py_raise_for(NULL, rc, "cannot open a shared object");
  }
  return (PyObject *)self;
}

PyDoc_STRVAR(Segment_ref__doc__,
"_ref()\n--\n\n"
"A reference to send to another process: (token, creator pid, creator fd, sender pid,\n"
"sender fd). Pins the segment: the receiver's _open() or _unpin() consumes the pin.");

static PyObject *Segment_ref(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  ac_seg_ref r;
  ac_seg_ref_of(&SegmentObject_CAST(op)->seg, &r);
  return Py_BuildValue("(Kiiii)", (unsigned long long)r.token, r.creator_pid, r.creator_fd,
                       r.sender_pid, r.sender_fd);
}

static PyObject *Segment_unpin(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  ac_seg_unpin(&SegmentObject_CAST(op)->seg);
  Py_RETURN_NONE;
}

static PyObject *Segment_get_key(PyObject *op, void *closure) {
  ac_seg_header *h = SegmentObject_CAST(op)->seg.hdr;
  return Py_BuildValue("(iK)", h->creator_pid, (unsigned long long)h->token);
}

static PyObject *Segment_get_nbytes(PyObject *op, void *closure) {
  return PyLong_FromUnsignedLongLong(SegmentObject_CAST(op)->seg.size);
}

static PyObject *Segment_get_pins(PyObject *op, void *closure) {
  return PyLong_FromLongLong(ac_seg_pins(&SegmentObject_CAST(op)->seg));
}

static PyObject *Segment_get_address(PyObject *op, void *closure) {
  return PyLong_FromVoidPtr(SegmentObject_CAST(op)->seg.data);
}

static PyObject *Segment_get_fd(PyObject *op, void *closure) {
  return PyLong_FromLong(SegmentObject_CAST(op)->seg.fd);
}

static Py_ssize_t Segment_len(PyObject *op) { return (Py_ssize_t)SegmentObject_CAST(op)->seg.size; }

static int Segment_getbuffer(PyObject *op, Py_buffer *view, int flags) {
  SegmentObject *self = SegmentObject_CAST(op);
  if (PyBuffer_FillInfo(view, op, self->seg.data, (Py_ssize_t)self->seg.size, 0, flags) < 0)
    return -1;
  self->exports++;
  return 0;
}

static void Segment_releasebuffer(PyObject *op, Py_buffer *view) {
  SegmentObject_CAST(op)->exports--;
}

static void Segment_dealloc(PyObject *op) {
  SegmentObject *self = SegmentObject_CAST(op);
  PyTypeObject *tp = Py_TYPE(op);
  if (self->weakrefs) PyObject_ClearWeakRefs(op);
  ac_seg_close(&self->seg);
  tp->tp_free(op);
  Py_DECREF(tp);
}

static PyMethodDef Segment_methods[] = {
    {"_open", Segment_open, METH_O | METH_CLASS, Segment_open__doc__},
    {"_ref", Segment_ref, METH_NOARGS, Segment_ref__doc__},
    {"_unpin", Segment_unpin, METH_NOARGS, "_unpin()\n--\n\nConsume one pin (see _ref)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Segment_getset[] = {
    {"key", Segment_get_key, NULL, "(creator pid, token): the same in every process.", NULL},
    {"nbytes", Segment_get_nbytes, NULL, "Size of the payload in bytes.", NULL},
    {"_pins", Segment_get_pins, NULL, "References sent and not yet opened.", NULL},
    {"_address", Segment_get_address, NULL, "Address of the payload in this process.", NULL},
    {"_fd", Segment_get_fd, NULL, "This process's file descriptor of the segment.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Segment_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(SegmentObject, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Segment__doc__,
"Segment(nbytes)\n--\n\n"
"Shared memory that other processes can map from a small reference: a writable buffer of\n"
"nbytes zero bytes (memfd: no name in /dev/shm, nothing left behind after any exit).");

static PyType_Slot Segment_slots[] = {
    {Py_tp_new, Segment_new},
    {Py_tp_dealloc, Segment_dealloc},
    {Py_tp_methods, Segment_methods},
    {Py_tp_getset, Segment_getset},
    {Py_tp_members, Segment_members},
    {Py_sq_length, Segment_len},
    {Py_bf_getbuffer, Segment_getbuffer},
    {Py_bf_releasebuffer, Segment_releasebuffer},
    {Py_tp_doc, (void *)Segment__doc__},
    {0, NULL},
};

static PyType_Spec Segment_spec = {
    .name = "allcores._core.Segment",
    .basicsize = sizeof(SegmentObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Segment_slots,
};

static PyObject *shared_sweep(PyObject *module, PyObject *Py_UNUSED(ignored)) {
  return PyLong_FromLong(ac_seg_sweep());
}

static PyMethodDef shared_functions[] = {
    {"shared_sweep", shared_sweep, METH_NOARGS,
     "shared_sweep()\n--\n\nClose the segments this process kept open only for references in\n"
     "flight that have all arrived; return how many are still kept."},
    {NULL, NULL, 0, NULL},
};

int acx__register_segment(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &Segment_spec, NULL);
  if (!tp) return -1;
  int rc = PyModule_AddObjectRef(m, "Segment", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddFunctions(m, shared_functions);
}

int acx_register_shared(PyObject *m) {
  if (acx__register_segment(m) < 0 || acx__register_counter(m) < 0 ||
      acx__register_mutex(m) < 0 || acx__register_semaphore(m) < 0 ||
      acx__register_event(m) < 0 || acx__register_queue(m) < 0)
    return -1;
  return 0;
}
