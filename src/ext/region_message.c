/* region_message.c: messages between Python objects and the pool's rings (region_object.h):
 * the payload parts a send copies, the step acx_wait runs to send, and the tuple a received
 * message becomes, with the rule for when a big payload stays in its block as a zero-copy view.
 */
#include "region_object.h"

#include <string.h>

#include "allcores/protocol.h"       /* AC_MSG_OOB, AC_MSG_SEG, AC_RESULT_UNREADABLE */
#include "allcores/shared_segment.h" /* a result sent in a segment of its own */

/* What the parent gets for a result it cannot read: that task alone fails (errno in aux). */
static PyObject *unreadable(const ac_msg *m, int err) {
  return Py_BuildValue("(KIIO)", (unsigned long long)m->id, (unsigned)AC_RESULT_UNREADABLE,
                       (unsigned)err, Py_None);
}

/* A payload that travelled in a segment of its own (AC_MSG_SEG): copied out, in writable memory
 * for an out-of-band frame as a crowded arena's copy is. A worker that cannot open it raises; the
 * parent reports the result unreadable. */
static PyObject *segment_payload(RegionObject *self, const ac_msg *m, const uint8_t *inline_buf,
                                 int for_worker) {
  if (m->block || m->len != sizeof(ac_seg_ref)) {
    PyErr_Format(ac_get_state(ac_module_from_type(Py_TYPE(self)))->CorruptError,
                 "invalid segment reference in shared memory (id %llu, len %u)",
                 (unsigned long long)m->id, m->len);
    return NULL;
  }
  ac_seg_ref ref;
  memcpy(&ref, inline_buf, sizeof ref);
  ac_seg seg;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = ac_seg_open(&seg, &ref);
  Py_END_ALLOW_THREADS
  if (rc && for_worker) {
    errno = -rc;
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  if (rc) return unreadable(m, -rc);
  PyObject *payload = (m->kind & AC_MSG_OOB)
                          ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)seg.size)
                          : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)seg.size);
  if (payload) {
    char *dst = PyByteArray_Check(payload) ? PyByteArray_AS_STRING(payload)
                                           : PyBytes_AS_STRING(payload);
    Py_BEGIN_ALLOW_THREADS
    memcpy(dst, seg.data, seg.size);
    Py_END_ALLOW_THREADS
  }
  ac_seg_close(&seg);
  if (!payload) return NULL;
  return Py_BuildValue("(KIIN)", (unsigned long long)m->id, m->kind & ~AC_MSG_SEG, m->aux,
                       payload);
}

/* Turns a received message into (id, kind, aux, payload): a view of its block when the core says
 * it stays there (ac_region_keep_in_block), else a copy, the block consumed. `held` (NULL for
 * the parent) is the worker record's note of the block (ac_region_consume). A result the parent
 * cannot read comes as kind AC_RESULT_UNREADABLE (protocol.h). */
PyObject *acx_message_tuple(RegionObject *self, const ac_msg *m, const uint8_t *inline_buf,
                            _Atomic uint64_t *held) {
  ac_region *r = &self->region;
  PyObject *payload;
  if (m->kind & AC_MSG_SEG) return segment_payload(self, m, inline_buf, held != NULL);
  int rc = ac_region_check_msg(r, m);
  if (rc == -ENOMEM) {
    /* This process cannot map the segment holding the block (its address space is full). A
     * worker raises (it leaves, and the parent fails the task: EXIT_CANNOT_MAP in _protocol);
     * the parent frees the block (ac_arena_free needs one page) and reports the result
     * unreadable, which fails that task alone. */
    if (held) {
      PyErr_Format(PyExc_MemoryError,
                   "cannot map the part of the pool's shared arena holding a payload of %llu "
                   "bytes: this process's address space is full (RLIMIT_AS, ulimit -v)",
                   (unsigned long long)m->len);
      return NULL;
    }
    ac_region_consume(r, m->block, NULL);
    return unreadable(m, ENOMEM);
  }
  if (rc) {
    PyErr_Format(ac_get_state(ac_module_from_type(Py_TYPE(self)))->CorruptError,
                 "invalid message in shared memory (id %llu, kind %u, len %u, block %llu)",
                 (unsigned long long)m->id, m->kind, m->len, (unsigned long long)m->block);
    return NULL;
  }
  if (ac_region_keep_in_block(r, m, held != NULL)) {
    /* Zero copy: the block stays alive as long as the view (held stays set: a worker that dies
     * mid-task has its block freed by the parent; send_result lets go of the record's hold). */
    if (!held) ac_region_adopt(r, m->block);
    payload = acx_block_buffer_new(self, m->block, held != NULL);
  } else if (m->block && (m->kind & AC_MSG_OOB)) {
    /* An out-of-band result copied out (the arena is crowded): into writable memory, as a view
     * would be. */
    ac_block *b = ac_region_block(r, m->block);
    payload = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)b->len);
    if (payload) {
      Py_BEGIN_ALLOW_THREADS
      memcpy(PyByteArray_AS_STRING(payload), ac_region_block_data(r, m->block), b->len);
      Py_END_ALLOW_THREADS
    }
    ac_region_consume(r, m->block, NULL);
  } else if (m->block) {
    ac_block *b = ac_region_block(r, m->block);
    payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)b->len);
    if (payload) {
      if (b->len > GIL_FREE_COPY_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        memcpy(PyBytes_AS_STRING(payload), ac_region_block_data(r, m->block), b->len);
        Py_END_ALLOW_THREADS
      } else {
        memcpy(PyBytes_AS_STRING(payload), ac_region_block_data(r, m->block), b->len);
      }
    }
    ac_region_consume(r, m->block, held);
  } else {
    payload = PyBytes_FromStringAndSize((const char *)inline_buf, m->len);
  }
  if (!payload) return NULL;
  return Py_BuildValue("(KIIN)", (unsigned long long)m->id, m->kind, m->aux, payload);
}

/* Collects the buffers of a bytes-like object or a tuple/list of them. */
int acx_get_parts(PyObject *obj, Py_buffer *views, struct iovec *iov, int *n, uint64_t *total) {
  *n = 0;
  *total = 0;
  if (PyTuple_Check(obj) || PyList_Check(obj)) {
    int rc = 0;
    /* A list's items are borrowed until their buffer holds them: under its critical section,
     * no other thread replaces one in between (free-threaded builds). */
    Py_BEGIN_CRITICAL_SECTION(obj);
    Py_ssize_t len = PySequence_Fast_GET_SIZE(obj);
    if (len > MAX_PARTS) {
      PyErr_Format(PyExc_ValueError, "at most %d payload parts", MAX_PARTS);
      rc = -1;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < len; i++) {
      if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(obj, i), &views[i], PyBUF_SIMPLE) < 0) {
        for (int j = 0; j < *n; j++) PyBuffer_Release(&views[j]);
        rc = -1;
        break;
      }
      iov[i].iov_base = views[i].buf;
      iov[i].iov_len = (size_t)views[i].len;
      *total += (uint64_t)views[i].len;
      (*n)++;
    }
    Py_END_CRITICAL_SECTION();
    return rc;
  }
  if (PyObject_GetBuffer(obj, &views[0], PyBUF_SIMPLE) < 0) return -1;
  iov[0].iov_base = views[0].buf;
  iov[0].iov_len = (size_t)views[0].len;
  *total = (uint64_t)views[0].len;
  *n = 1;
  return 0;
}

/* acx_wait's step for a send. With the GIL held it only tries a small payload (a big copy runs
 * without the GIL). */
int acx_send_step(void *arg, int64_t timeout_ns, int gil_held) {
  acx_send_arg *a = arg;
  if (gil_held && a->total > GIL_FREE_COPY_BYTES) return -EBUSY;
  int rc = a->k < 0 ? ac_region_send(a->r, a->r->tasks, &a->msg, a->iov, a->n, AC_OWNER_PARENT,
                                     NULL, NULL, timeout_ns, NULL)
                    : ac_worker_send_result(a->r, (uint32_t)a->k, &a->msg, a->iov, a->n,
                                            timeout_ns);
  return gil_held && rc == -ETIMEDOUT ? -EAGAIN : rc;
}
