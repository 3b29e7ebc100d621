/* proc_task.h: what the kernel says about this process's own threads, from /proc/self/task.
 * Contract: no Python.h. Files are opened once per thread and re-read with pread at offset 0
 * (the kernel regenerates them on each read), so a sample costs one system call per file.
 * Functions return a non-negative result or -errno; a thread that has exited gives -ESRCH or
 * -ENOENT. Only threads of the calling process can be read (the ptrace check passes for them). */
#ifndef ALLCORES_PROC_TASK_H
#define ALLCORES_PROC_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
  AC_TASK_RUNNING = 0, /* on a CPU or runnable: not inside a system call */
  AC_TASK_SYSCALL = 1, /* blocked in system call *nr whose first argument is *arg0 */
  AC_TASK_BLOCKED = 2, /* stopped outside a system call (page fault, signal delivery) */
};

/* Opens /proc/self/task/<tid>/<name> read-only; returns the descriptor or -errno. */
int ac_task_open(pid_t tid, const char *name);

/* Reads a thread's syscall file. Returns one of AC_TASK_* or -errno. */
int ac_task_syscall(int fd, long *nr, uintptr_t *arg0);

/* Reads a thread's schedstat file: time on a CPU, and time runnable but waiting for a CPU. */
int ac_task_schedstat(int fd, int64_t *run_ns, int64_t *runq_ns);

/* Lists the thread ids of this process into tids (at most max); returns how many were found. */
int ac_task_list(pid_t *tids, int max);

/* Copies a thread's name (comm, at most 15 bytes) into buf; returns its length or -errno. */
int ac_task_comm(pid_t tid, char *buf, size_t len);

/* The futex system call number on this architecture. */
long ac_task_futex_nr(void);

#endif
