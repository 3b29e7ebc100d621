/* block_buffer.c: allcores._core.BlockBuffer, the zero-copy view of a payload received in an
 * arena block (region_object.h). Its holders are counted in the block (ac_region_share): the
 * last one frees it. */
#include "region_object.h"

#include <unistd.h>

/* A view of an arena block; the block is freed when the last view of it goes. It keeps its Region
 * alive, so the mapping outlives every view. The block holds the receiver's own copy of the
 * payload (the sender never touches it again), so the view is writable: arrays received arrive
 * writable, as they do from multiprocessing, without a second copy. */
typedef struct {
  PyObject_HEAD
  PyObject *region; /* RegionObject */
  uint64_t block;
  Py_ssize_t len;
  Py_ssize_t exports;
  pid_t pid; /* the process that received the block: the only one that may free it */
} BlockBufferObject;

static int BlockBuffer_getbuffer(PyObject *op, Py_buffer *view, int flags) {
  BlockBufferObject *self = (BlockBufferObject *)op;
  RegionObject *reg = (RegionObject *)self->region;
  void *data = ac_region_block_data(&reg->region, self->block);
  if (PyBuffer_FillInfo(view, op, data, self->len, 0, flags) < 0) return -1;
  __atomic_fetch_add(&self->exports, 1, __ATOMIC_RELAXED); /* views may be taken in any thread */
  return 0;
}

static void BlockBuffer_releasebuffer(PyObject *op, Py_buffer *view) {
  __atomic_fetch_sub(&((BlockBufferObject *)op)->exports, 1, __ATOMIC_RELAXED);
}

static void BlockBuffer_dealloc(PyObject *op) {
  BlockBufferObject *self = (BlockBufferObject *)op;
  PyTypeObject *tp = Py_TYPE(op);
  RegionObject *reg = (RegionObject *)self->region;
  /* A fork child inherits this object but not the block: freeing it there (a child that ends
   * with sys.exit() deallocates everything) would hand the parent's data to the next payload. */
  if (reg && reg->region.base && self->pid == getpid()) ac_region_unshare(&reg->region, self->block);
  Py_XDECREF(self->region);
  tp->tp_free(op);
  Py_DECREF(tp);
}

static PyObject *BlockBuffer_len(PyObject *op, void *closure) {
  return PyLong_FromSsize_t(((BlockBufferObject *)op)->len);
}

static PyGetSetDef BlockBuffer_getset[] = {
    {"nbytes", BlockBuffer_len, NULL, "Size of the payload in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot BlockBuffer_slots[] = {
    {Py_tp_dealloc, BlockBuffer_dealloc},
    {Py_tp_getset, BlockBuffer_getset},
    {Py_bf_getbuffer, BlockBuffer_getbuffer},
    {Py_bf_releasebuffer, BlockBuffer_releasebuffer},
    {Py_tp_doc, "A zero-copy view of a payload received through the pool's shared memory."},
    {0, NULL},
};

static PyType_Spec BlockBuffer_spec = {
    .name = "allcores._core.BlockBuffer",
    .basicsize = sizeof(BlockBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = BlockBuffer_slots,
};

int acx_block_buffer_region(ac_module_state *st, PyObject *obj, const struct ac_region **r) {
  if (Py_TYPE(obj) != st->BlockBuffer) return -1;
  RegionObject *reg = (RegionObject *)((BlockBufferObject *)obj)->region;
  if (!reg || !reg->region.base) return -1;
  *r = &reg->region;
  return 0;
}

/* A view of a received block; `recorded`: the block is the calling worker's task payload, which
 * its record holds too until the task is finished (ac_region_share). */
PyObject *acx_block_buffer_new(RegionObject *region, uint64_t block, int recorded) {
  ac_module_state *st = ac_state_from_type(Py_TYPE(region));
  if (!st) return NULL;
  BlockBufferObject *self = PyObject_New(BlockBufferObject, st->BlockBuffer);
  if (!self) return NULL;
  ac_block *b = ac_region_block(&region->region, block);
  ac_region_share(&region->region, block, recorded ? 2 : 1);
  Py_INCREF(region);
  self->region = (PyObject *)region;
  self->block = block;
  self->len = (Py_ssize_t)b->len;
  self->exports = 0;
  self->pid = getpid();
  return (PyObject *)self;
}

int acx_register_block_buffer(PyObject *m) {
  PyObject *bb = PyType_FromModuleAndSpec(m, &BlockBuffer_spec, NULL);
  if (!bb) return -1;
  ac_get_state(m)->BlockBuffer = (PyTypeObject *)bb; /* the state owns this reference */
  return PyModule_AddObjectRef(m, "BlockBuffer", bb);
}
