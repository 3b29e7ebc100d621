/* shared_segment.c: memfd segments for shared objects, opened by reference through /proc (see
 * shared_segment.h), and the process's list of segments it keeps open for references in flight. */
#include "allcores/shared_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "allcores/clock.h"

/* The memfd's name shows in /proc/<pid>/fd as "/memfd:<name> (deleted)"; a door must show it
 * before it is opened, so a stale reference never opens a device, FIFO or unrelated file. */
#define SEG_NAME "allcores-shared"
#define SEG_LINK "/memfd:" SEG_NAME " "

static uint64_t page_size(void) {
  static uint64_t ps;
  if (!ps) ps = (uint64_t)sysconf(_SC_PAGESIZE);
  return ps;
}

static uint64_t map_len_for(uint64_t size) {
  uint64_t ps = page_size();
  return (AC_SEG_HEADER + size + ps - 1) & ~(ps - 1);
}

static uint64_t fresh_token(void) {
  uint64_t t = 0;
  if (getrandom(&t, sizeof t, GRND_NONBLOCK) != (ssize_t)sizeof t) {
    /* No entropy yet (early boot): the token only guards against reused pids and fds, so a
     * mix of the clock, pid and a counter is enough. */
    static _Atomic uint64_t n;
    t = (uint64_t)ac_now_ns() * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)getpid() << 32) ^
        atomic_fetch_add(&n, 1);
  }
  return t ? t : 1;
}

int ac_seg_create(ac_seg *s, uint64_t size) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  if (size > AC_SEG_MAX) return -EINVAL;
  uint64_t len = map_len_for(size);
  int fd = memfd_create(SEG_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  int err = 0;
  if (ftruncate(fd, (off_t)len) != 0) {
    err = -errno;
    goto fail;
  }
  /* Sealed at its size: no process can shrink it under another's mapping (which would turn that
   * process's next access into SIGBUS). */
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    err = -errno;
    goto fail;
  }
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    err = -errno;
    goto fail;
  }
  ac_seg_header *h = p;
  h->magic = AC_SEG_MAGIC;
  h->token = fresh_token();
  h->size = size;
  h->creator_pid = getpid();
  h->creator_fd = fd;
  atomic_store(&h->pins, 0);
  s->hdr = h;
  s->data = (char *)p + AC_SEG_HEADER;
  s->size = size;
  s->map_len = len;
  s->fd = fd;
  ac_seg_sweep();
  return 0;
fail:
  close(fd);
  return err;
}

void ac_seg_ref_of(ac_seg *s, ac_seg_ref *ref) {
  ac_seg_header *h = s->hdr;
  atomic_fetch_add_explicit(&h->pins, 1, memory_order_acq_rel);
  ref->token = h->token;
  ref->creator_pid = h->creator_pid;
  ref->creator_fd = h->creator_fd;
  ref->sender_pid = getpid();
  ref->sender_fd = s->fd;
}

void ac_seg_unpin(ac_seg *s) {
  _Atomic int64_t *pins = &s->hdr->pins;
  int64_t v = atomic_load_explicit(pins, memory_order_acquire);
  /* Never below 0: a reference unpickled twice consumes only what was counted. */
  while (v > 0 && !atomic_compare_exchange_weak_explicit(pins, &v, v - 1, memory_order_acq_rel,
                                                         memory_order_acquire)) {
  }
}

/* --- the lingering list ------------------------------------------------------------------- */

static pthread_mutex_t linger_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t linger_once = PTHREAD_ONCE_INIT;
static ac_seg *linger;
static _Atomic int nlinger; /* written under linger_mu; read without it by a sweep's fast path */
static int caplinger;

/* A fork child may be made while another thread holds the list's mutex: hold it across fork. */
static void linger_prepare(void) { pthread_mutex_lock(&linger_mu); }
static void linger_parent(void) { pthread_mutex_unlock(&linger_mu); }
static void linger_child(void) { pthread_mutex_init(&linger_mu, NULL); }
static void linger_init(void) { pthread_atfork(linger_prepare, linger_parent, linger_child); }

static void unmap(ac_seg *s) {
  munmap(s->hdr, s->map_len);
  close(s->fd);
  s->hdr = NULL;
  s->data = NULL;
  s->fd = -1;
}

int ac_seg_sweep(void) {
  /* Nothing lingers almost always (pool workers sweep before every result they send). */
  if (atomic_load_explicit(&nlinger, memory_order_relaxed) == 0) return 0;
  pthread_once(&linger_once, linger_init);
  pthread_mutex_lock(&linger_mu);
  int kept = 0;
  for (int i = 0; i < nlinger; i++) {
    if (ac_seg_pins(&linger[i]) > 0)
      linger[kept++] = linger[i];
    else
      unmap(&linger[i]);
  }
  nlinger = kept;
  pthread_mutex_unlock(&linger_mu);
  return kept;
}

void ac_seg_close(ac_seg *s) {
  if (!s->hdr) return;
  pthread_once(&linger_once, linger_init);
  if (ac_seg_pins(s) > 0) {
    pthread_mutex_lock(&linger_mu);
    if (nlinger == caplinger) {
      int cap = caplinger ? caplinger * 2 : 16;
      ac_seg *grown = realloc(linger, (size_t)cap * sizeof *grown);
      if (grown) {
        linger = grown;
        caplinger = cap;
      }
    }
    int kept = nlinger < caplinger;
    if (kept) linger[nlinger++] = *s;
    pthread_mutex_unlock(&linger_mu);
    if (kept) {
      s->hdr = NULL;
      s->data = NULL;
      s->fd = -1;
      ac_seg_sweep();
      return;
    }
    /* Out of memory for the list: close now; a receiver not yet arrived may find no door. */
  }
  unmap(s);
  ac_seg_sweep();
}

/* Takes back a segment this process lingers on, if ref names one. */
static int revive(ac_seg *s, const ac_seg_ref *ref) {
  pthread_once(&linger_once, linger_init);
  int found = 0;
  pthread_mutex_lock(&linger_mu);
  for (int i = 0; i < nlinger; i++) {
    ac_seg_header *h = linger[i].hdr;
    if (h->token == ref->token && h->creator_pid == ref->creator_pid) {
      *s = linger[i];
      linger[i] = linger[--nlinger];
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&linger_mu);
  return found;
}

static int open_door(ac_seg *s, int32_t pid, int32_t fd, const ac_seg_ref *ref) {
  if (pid <= 0 || fd < 0) return -ESTALE;
  char path[64], link[sizeof SEG_LINK + 16];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, (int)fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n < 0) return errno == EACCES || errno == EPERM ? -EACCES : -ESTALE;
  link[n] = 0;
  if (strncmp(link, SEG_LINK, sizeof SEG_LINK - 1) != 0) return -ESTALE;
  int nfd = open(path, O_RDWR | O_CLOEXEC);
  if (nfd < 0) {
    if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) return -errno;
    return errno == EACCES || errno == EPERM ? -EACCES : -ESTALE;
  }
  int err = -ESTALE;
  struct stat st;
  if (fstat(nfd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)page_size()) goto fail;
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, nfd, 0);
  if (p == MAP_FAILED) {
    err = -errno;
    goto fail;
  }
  ac_seg_header *h = p;
  if (h->magic != AC_SEG_MAGIC || h->token != ref->token || h->creator_pid != ref->creator_pid ||
      map_len_for(h->size) != (uint64_t)st.st_size) {
    munmap(p, (size_t)st.st_size);
    goto fail;
  }
  s->hdr = h;
  s->data = (char *)p + AC_SEG_HEADER;
  s->size = h->size;
  s->map_len = (uint64_t)st.st_size;
  s->fd = nfd;
  return 0;
fail:
  close(nfd);
  return err;
}

int ac_seg_open(ac_seg *s, const ac_seg_ref *ref) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  int rc = 0;
  if (!revive(s, ref)) {
    rc = open_door(s, ref->sender_pid, ref->sender_fd, ref);
    if (rc == -ESTALE || rc == -EACCES) {
      int rc2 = open_door(s, ref->creator_pid, ref->creator_fd, ref);
      rc = rc2 == -ESTALE && rc == -EACCES ? rc : rc2;
    }
  }
  if (rc == 0) ac_seg_unpin(s);
  ac_seg_sweep();
  return rc;
}
