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

/* Parent side: wakes the template so it looks at spawn and kill requests and the shutdown word. */
int ac_template_notify(int request_fd);

#endif
