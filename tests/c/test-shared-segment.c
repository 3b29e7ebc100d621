/* test-shared-segment.c: memfd segments opened by reference from other processes, pins, lingering
 * doors, stale references and sealing. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allcores/shared_segment.h"
#include "task.h"

static int open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) != -1) n++;
  return n;
}

TEST_IMPL(shared_seg_opened_by_reference_in_another_process) {
  ac_seg s;
  ASSERT_OK(ac_seg_create(&s, 10000));
  ASSERT_EQ(s.size, 10000);
  ASSERT_EQ((uintptr_t)s.data % 64, 0);
  for (int i = 0; i < 10000; i++) ASSERT_EQ(s.data[i], 0);
  memcpy(s.data, "parent", 6);
  ac_seg_ref ref;
  ac_seg_ref_of(&s, &ref);
  ASSERT_EQ(ac_seg_pins(&s), 1);
  pid_t pid = fork();
  if (pid == 0) {
    /* A fork child could use the inherited mapping; it opens the reference to test the door. */
    ac_seg o;
    if (ac_seg_open(&o, &ref) != 0) _exit(1);
    if (memcmp(o.data, "parent", 6) != 0 || o.size != 10000 || o.data == s.data) _exit(2);
    memcpy(o.data + 9994, "child", 6);
    ac_seg_close(&o);
    _exit(0);
  }
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ASSERT_MEM_EQ(s.data + 9994, "child", 6);
  ASSERT_EQ(ac_seg_pins(&s), 0);
  ac_seg_close(&s);
  ASSERT_PTR_EQ(s.hdr, NULL);
  ASSERT_EQ(ac_seg_sweep(), 0);
}

TEST_IMPL(shared_seg_references_to_other_memory_are_stale) {
  ac_seg s, o;
  ASSERT_OK(ac_seg_create(&s, 64));
  ac_seg_ref ref;
  ac_seg_ref_of(&s, &ref);
  ac_seg_ref bad = ref;
  bad.token ^= 1; /* same door, different object: a reused fd */
  ASSERT_EQ(ac_seg_open(&o, &bad), -ESTALE);
  int p[2];
  ASSERT_OK(pipe(p));
  bad = ref;
  bad.sender_fd = bad.creator_fd = p[0]; /* a door that is not a shared segment at all */
  ASSERT_EQ(ac_seg_open(&o, &bad), -ESTALE);
  bad.sender_fd = bad.creator_fd = 999; /* closed */
  ASSERT_EQ(ac_seg_open(&o, &bad), -ESTALE);
  bad = ref;
  bad.sender_pid = bad.creator_pid = 0;
  ASSERT_EQ(ac_seg_open(&o, &bad), -ESTALE);
  close(p[0]);
  close(p[1]);
  ASSERT_EQ(ac_seg_pins(&s), 1); /* failed opens consume nothing */
  ASSERT_OK(ac_seg_open(&o, &ref));
  ASSERT_EQ(ac_seg_pins(&s), 0);
  ac_seg_close(&o);
  ac_seg_close(&s);
}

TEST_IMPL(shared_seg_door_lingers_while_a_reference_is_in_flight) {
  int fds0 = open_fds();
  ac_seg s, o;
  ASSERT_OK(ac_seg_create(&s, 100));
  s.data[0] = 42;
  ac_seg_ref ref;
  ac_seg_ref_of(&s, &ref);
  ac_seg_close(&s);
  ASSERT_EQ(open_fds(), fds0 + 1); /* the door stays for the reference */
  ASSERT_EQ(ac_seg_sweep(), 1);
  ASSERT_OK(ac_seg_open(&o, &ref)); /* taken back from the lingering list */
  ASSERT_EQ(o.data[0], 42);
  ASSERT_EQ(ac_seg_pins(&o), 0);
  ASSERT_EQ(ac_seg_sweep(), 0);
  ac_seg_close(&o);
  ASSERT_EQ(open_fds(), fds0);
}

TEST_IMPL(shared_seg_lingering_door_closes_once_the_receiver_opened) {
  int fds0 = open_fds();
  ac_seg s;
  ASSERT_OK(ac_seg_create(&s, 100));
  ac_seg_ref *ref = ac_test_shared(sizeof *ref);
  ac_seg_ref_of(&s, ref);
  ac_seg_close(&s); /* lingers */
  pid_t pid = fork();
  if (pid == 0) {
    ac_seg_sweep(); /* the child's copy of the list: nothing to close yet */
    ac_seg o;
    if (ac_seg_open(&o, ref) != 0) _exit(1);
    ac_seg_close(&o);
    _exit(0);
  }
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ASSERT_EQ(ac_seg_sweep(), 0);
  ASSERT_EQ(open_fds(), fds0);
}

TEST_IMPL(shared_seg_reference_is_stale_once_every_holder_exited) {
  ac_seg_ref *ref = ac_test_shared(sizeof *ref);
  pid_t pid = fork();
  if (pid == 0) {
    ac_seg s;
    if (ac_seg_create(&s, 100) != 0) _exit(1);
    ac_seg_ref_of(&s, ref);
    _exit(0); /* the only door goes with the process */
  }
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ac_seg o;
  ASSERT_EQ(ac_seg_open(&o, ref), -ESTALE);
}

TEST_IMPL(shared_seg_sender_door_serves_after_the_creator_exited) {
  ac_seg_ref *ref = ac_test_shared(sizeof *ref);
  _Atomic int *step = ac_test_shared(sizeof *step);
  pid_t creator = fork();
  if (creator == 0) {
    ac_seg s;
    if (ac_seg_create(&s, 100) != 0) _exit(1);
    s.data[0] = 7;
    ac_seg_ref_of(&s, ref);
    atomic_store(step, 1);
    while (atomic_load(step) != 2) usleep(1000);
    _exit(0);
  }
  while (atomic_load(step) != 1) usleep(1000);
  ac_seg mine;
  ASSERT_OK(ac_seg_open(&mine, ref));
  atomic_store(step, 2);
  ASSERT_EXITED(ac_test_wait(creator, 10000), 0);
  ac_seg_ref_of(&mine, ref); /* sent on: this process is the sender now */
  pid_t pid = fork();
  if (pid == 0) {
    ac_seg o;
    if (ac_seg_open(&o, ref) != 0) _exit(1);
    o.data[0]++;
    ac_seg_close(&o);
    _exit(0);
  }
  ASSERT_EXITED(ac_test_wait(pid, 10000), 0);
  ASSERT_EQ(mine.data[0], 8);
  ac_seg_close(&mine);
}

TEST_IMPL(shared_seg_unpin_never_goes_below_zero) {
  ac_seg s;
  ASSERT_OK(ac_seg_create(&s, 8));
  ac_seg_unpin(&s);
  ASSERT_EQ(ac_seg_pins(&s), 0);
  ac_seg_ref ref;
  ac_seg_ref_of(&s, &ref);
  ac_seg_unpin(&s);
  ac_seg_unpin(&s);
  ASSERT_EQ(ac_seg_pins(&s), 0);
  ac_seg_close(&s);
}

TEST_IMPL(shared_seg_is_sealed_at_its_size) {
  ac_seg s;
  ASSERT_OK(ac_seg_create(&s, 4096));
  ASSERT_EQ(ftruncate(s.fd, 0), -1);
  ASSERT_EQ(errno, EPERM);
  ASSERT_EQ(ftruncate(s.fd, 1 << 20), -1);
  ac_seg_close(&s);
  ASSERT_EQ(ac_seg_create(&s, AC_SEG_MAX + 1), -EINVAL);
}

TEST_IMPL(shared_seg_a_thousand_cycles_leave_no_descriptor) {
  int fds0 = open_fds();
  for (int i = 0; i < 1000; i++) {
    ac_seg s, o;
    ASSERT_OK(ac_seg_create(&s, (uint64_t)i * 97));
    ac_seg_ref ref;
    ac_seg_ref_of(&s, &ref);
    if (i % 2) ac_seg_close(&s); /* half of them linger, then revive */
    ASSERT_OK(ac_seg_open(&o, &ref));
    ac_seg_close(&o);
    ac_seg_close(&s);
  }
  ASSERT_EQ(ac_seg_sweep(), 0);
  ASSERT_EQ(open_fds(), fds0);
}
