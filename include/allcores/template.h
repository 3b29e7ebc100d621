/* template.h: the template process that forks, watches and kills a pool's workers.
 *
 * Contract: the parent forks one template process when the pool starts, before the pool starts any
 * thread of its own; from then on every worker is forked from the template, which is
 * single-threaded, so a worker never inherits a lock some other thread held (no fork-with-threads
 * deadlock, however many threads the parent runs). The template:
 * - forks a worker for each record the parent set to AC_W_SPAWN, and returns the record index
 *   inside the new worker (ac_template_serve "returns twice", like fork);
 * - reaps workers (signalfd on SIGCHLD), writes their wait status, marks them AC_W_EXITED and
 *   wakes the parent; kills the workers whose kill_req the parent set;
 * - exits (returns AC_ECLOSED in the template) when the shutdown word asks it to or when the
 *   parent process dies (pidfd), killing its workers first. Workers get PR_SET_PDEATHSIG(SIGKILL)
 *   tied to the template, so a parent killed by SIGKILL leaves no process behind.
 * The parent wakes the template by writing to request_fd (an eventfd) with ac_template_notify. */
#ifndef ALLCORES_TEMPLATE_H
#define ALLCORES_TEMPLATE_H

#include "allcores/region.h"

typedef struct ac_fork_hooks {
  void (*prepare)(void *ctx); /* before fork, in the template */
  void (*parent)(void *ctx);  /* after fork, in the template */
  void (*child)(void *ctx);   /* after fork, in the new worker */
  void *ctx;
} ac_fork_hooks;

/* Runs the template loop. Returns a worker index (>= 0) in a new worker process, AC_ECLOSED in the
 * template when it must exit, or another negative code on a fatal error. hooks may be NULL. */
int ac_template_serve(ac_region *r, int request_fd, const ac_fork_hooks *hooks);

/* Template side, once, before ac_template_serve: the template and its workers must not keep open
 * the program's pipes and sockets (a reader waiting for end-of-file that never comes, a peer that
 * never sees the connection close). Every pipe and socket but stdin/out/err and the nkeep
 * descriptors in keep is replaced by /dev/null: the number stays taken, so a stale file object in
 * a worker can never write into something opened later under the same number. Files, shared
 * memory and other descriptors stay (tasks write through inherited file objects, such as a
 * logging handler's, as in any fork). Returns how many were replaced, or a negative errno. */
int ac_template_isolate_fds(const int *keep, int nkeep);

/* Parent side, after the template died: its workers died with it (PR_SET_PDEATHSIG), and nobody
 * reaped them into the region. Marks slot k EXITED with wait_status (as the template would have)
 * when it held a live worker, so that ac_region_reap repairs what that worker held and a new
 * template can fill the slot. The caller makes sure the worker is dead first. Returns 1 when
 * marked, 0 when the slot held no live worker. */
int ac_template_orphaned(ac_region *r, uint32_t k, int wait_status);

/* Parent side: wakes the template so it looks at spawn and kill requests and the shutdown word. */
int ac_template_notify(int request_fd);

#endif
