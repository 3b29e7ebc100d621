/* shared_queue.c: allcores._core.Queue, a FIFO of byte strings in shared memory (shared_queue.h);
 * the Python layer pickles objects into it. Items up to AC_SQ_TRY_BYTES move with the GIL held
 * when the queue's mutex is free; bigger ones, and any wait, without it. */
#include "shared.h"

#include "allcores/errors.h"
#include "allcores/shared_queue.h"

#define GIL_FREE_COPY_BYTES (256 * 1024)

typedef struct {
  ACX_VIEW_HEAD
  ac_squeue *q;
} QueueObject;

#define QueueObject_CAST(op) ((QueueObject *)(op))

static PyObject *Queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"segment", "offset", "ring_bytes", "arena_bytes", "maxsize", "init",
                           NULL};
  PyObject *segment;
  Py_ssize_t offset;
  unsigned long long ring = 0, arena = 0, maxsize = 0;
  int init = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|KKKp:Queue", kwlist, &segment, &offset, &ring,
                                   &arena, &maxsize, &init))
    return NULL;
  size_t need = init ? (size_t)ac_squeue_footprint(ring, arena) : sizeof(ac_squeue);
  char *at = acx__view_at(segment, offset, need, 64);
  if (!at) return NULL;
  ac_squeue *q = (ac_squeue *)at;
  if (init) {
    int rc = ac_squeue_init(q, ring, arena, maxsize);
    if (rc) {
      PyErr_SetString(PyExc_ValueError, "ring_bytes must be a power of two >= 64");
      return NULL;
    }
  } else {
    /* Attaching: the queue must fit the segment it claims to live in. */
    uint64_t room = ((SegmentObject *)segment)->seg.size - (uint64_t)offset;
    if (ac_squeue_footprint(q->ring_bytes, (uint64_t)q->arena.pages << AC_PAGE_SHIFT) > room) {
      PyErr_SetString(PyExc_ValueError, "the segment does not hold a queue at this offset");
      return NULL;
    }
  }
  QueueObject *self = (QueueObject *)acx__view_new(type, segment, offset);
  if (!self) return NULL;
  self->q = q;
  return (PyObject *)self;
}

typedef struct {
  ac_squeue *q;
  const void *data;
  uint64_t len;
  uint32_t tag;
} put_arg;

static int put_step(void *arg, int64_t timeout_ns, int gil_held) {
  put_arg *p = arg;
  return ac_squeue_put(p->q, p->data, p->len, p->tag, gil_held ? 0 : timeout_ns,
                       gil_held ? AC_SQ_TRY : 0);
}

PyDoc_STRVAR(Queue_put__doc__,
"_put(data, tag=0, block=True, timeout=None)\n--\n\n"
"Append the bytes of data with a small tag (< 2**24). Return False when the queue stayed full\n"
"(at once when block is false; else after timeout seconds, None: no limit).");

static PyObject *Queue_put(PyObject *op, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"data", "tag", "block", "timeout", NULL};
  Py_buffer view;
  unsigned int tag = 0;
  int block = 1;
  PyObject *timeout = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|IpO:_put", kwlist, &view, &tag, &block,
                                   &timeout))
    return NULL;
  int64_t t = acx__timeout_ns(timeout, ACX_NEGATIVE_ZERO);
  if (t == -2) {
    PyBuffer_Release(&view);
    return NULL;
  }
  put_arg p = {QueueObject_CAST(op)->q, view.buf, (uint64_t)view.len, tag};
  int rc = acx_wait(put_step, &p, block ? t : 0);
  PyBuffer_Release(&view);
  if (rc == -EAGAIN || rc == -ETIMEDOUT) Py_RETURN_FALSE;
  if (rc < 0) return ac_py_raise_for(op, rc, "put");
  Py_RETURN_TRUE;
}

typedef struct {
  ac_squeue *q;
  int gil_held;
  PyObject *bytes; /* allocated with the GIL held */
  char *raw;       /* or without it */
  uint64_t len;
  uint32_t tag;
} get_arg;

static void *get_alloc(void *ctx, uint64_t len) {
  get_arg *g = ctx;
  g->len = len;
  if (g->gil_held) {
    g->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    return g->bytes ? PyBytes_AS_STRING(g->bytes) : NULL;
  }
  g->raw = PyMem_RawMalloc(len ? len : 1);
  return g->raw;
}

static int get_step(void *arg, int64_t timeout_ns, int gil_held) {
  get_arg *g = arg;
  g->gil_held = gil_held;
  return ac_squeue_get(g->q, get_alloc, g, &g->tag, gil_held ? 0 : timeout_ns,
                       gil_held ? AC_SQ_TRY : 0);
}

/* The bytes of an item got without the GIL. */
static PyObject *from_raw(get_arg *g) {
  PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)g->len);
  if (b) {
    if (g->len > GIL_FREE_COPY_BYTES) {
      Py_BEGIN_ALLOW_THREADS
      memcpy(PyBytes_AS_STRING(b), g->raw, g->len);
      Py_END_ALLOW_THREADS
    } else {
      memcpy(PyBytes_AS_STRING(b), g->raw, g->len);
    }
  }
  PyMem_RawFree(g->raw);
  return b;
}

PyDoc_STRVAR(Queue_get__doc__,
"_get(block=True, timeout=None)\n--\n\n"
"Remove the first item and return (tag, bytes), or None when the queue stayed empty (at once\n"
"when block is false; else after timeout seconds, None: no limit).");

static PyObject *Queue_get(PyObject *op, PyObject *args, PyObject *kwds) {
  static char *kwlist[] = {"block", "timeout", NULL};
  int block = 1;
  PyObject *timeout = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pO:_get", kwlist, &block, &timeout)) return NULL;
  int64_t t = acx__timeout_ns(timeout, ACX_NEGATIVE_ZERO);
  if (t == -2) return NULL;
  get_arg g = {QueueObject_CAST(op)->q, 0, NULL, NULL, 0, 0};
  int rc = acx_wait(get_step, &g, block ? t : 0);
  if (rc == -EAGAIN || rc == -ETIMEDOUT) Py_RETURN_NONE;
  if (rc < 0) {
    if (rc == AC_ECORRUPT) {
      PyErr_SetString(PyExc_RuntimeError, "get: the shared queue's memory is corrupt");
      return NULL;
    }
    return ac_py_raise_for(op, rc, "get");
  }
  PyObject *data = g.bytes ? g.bytes : from_raw(&g);
  if (!data) return NULL;
  return Py_BuildValue("(IN)", g.tag, data);
}

static PyObject *Queue_qsize(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyLong_FromUnsignedLongLong(ac_squeue_count(QueueObject_CAST(op)->q));
}

static PyObject *Queue_empty(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  return PyBool_FromLong(ac_squeue_count(QueueObject_CAST(op)->q) == 0);
}

static PyObject *Queue_full(PyObject *op, PyObject *Py_UNUSED(ignored)) {
  ac_squeue *q = QueueObject_CAST(op)->q;
  return PyBool_FromLong(q->maxsize && ac_squeue_count(q) >= q->maxsize);
}

static PyObject *Queue_get_maxsize(PyObject *op, void *closure) {
  return PyLong_FromUnsignedLongLong(QueueObject_CAST(op)->q->maxsize);
}

static PyObject *Queue_get_max_item(PyObject *op, void *closure) {
  return PyLong_FromUnsignedLongLong(ac_squeue_max_item(QueueObject_CAST(op)->q));
}

static PyMethodDef Queue_methods[] = {
    {"_put", (PyCFunction)(void (*)(void))Queue_put, METH_VARARGS | METH_KEYWORDS,
     Queue_put__doc__},
    {"_get", (PyCFunction)(void (*)(void))Queue_get, METH_VARARGS | METH_KEYWORDS,
     Queue_get__doc__},
    {"qsize", Queue_qsize, METH_NOARGS,
     "qsize($self)\n--\n\nThe number of items queued (a snapshot)."},
    {"empty", Queue_empty, METH_NOARGS,
     "empty($self)\n--\n\nTrue when no item is queued (a snapshot)."},
    {"full", Queue_full, METH_NOARGS,
     "full($self)\n--\n\nTrue when maxsize items are queued (a snapshot)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Queue_getset[] = {
    {"maxsize", Queue_get_maxsize, NULL, "The most items queued at once (0: no limit).", NULL},
    {"_max_item", Queue_get_max_item, NULL, "The largest item in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Queue__doc__,
"Queue(segment, offset, ring_bytes=0, arena_bytes=0, maxsize=0, init=False)\n--\n\n"
"A FIFO of byte strings at offset of a Segment (64-byte aligned). init=True lays it out there:\n"
"a ring of ring_bytes (a power of two) for small items, an arena of arena_bytes for big ones.");

static PyType_Slot Queue_slots[] = {
    {Py_tp_new, Queue_new},
    {Py_tp_dealloc, acx__view_dealloc},
    {Py_tp_methods, Queue_methods},
    {Py_tp_getset, Queue_getset},
    {Py_tp_members, acx__view_members},
    {Py_tp_doc, (void *)Queue__doc__},
    {0, NULL},
};

static PyType_Spec Queue_spec = {
    .name = "allcores._core.Queue",
    .basicsize = sizeof(QueueObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Queue_slots,
};

static PyObject *queue_nbytes(PyObject *module, PyObject *args) {
  unsigned long long ring, arena;
  if (!PyArg_ParseTuple(args, "KK:queue_nbytes", &ring, &arena)) return NULL;
  return PyLong_FromUnsignedLongLong(ac_squeue_footprint(ring, arena));
}

static PyMethodDef queue_functions[] = {
    {"queue_nbytes", queue_nbytes, METH_VARARGS,
     "queue_nbytes(ring_bytes, arena_bytes)\n--\n\nBytes a Queue with this layout occupies."},
    {NULL, NULL, 0, NULL},
};

int acx__register_queue(PyObject *m) {
  PyObject *tp = PyType_FromModuleAndSpec(m, &Queue_spec, NULL);
  if (!tp) return -1;
  int rc = PyModule_AddObjectRef(m, "Queue", tp);
  Py_DECREF(tp);
  if (rc < 0) return -1;
  return PyModule_AddFunctions(m, queue_functions);
}
