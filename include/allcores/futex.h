/* futex.h: wait and wake on a 32-bit word in memory shared between processes.
 * Contract: ac_futex_wait() sleeps only while *word == expected, for at most timeout_ns (<0: no
 * limit). It returns 0 when woken or when the word already differed, -ETIMEDOUT or -EINTR. Spurious
 * returns happen: callers re-check their condition. ac_futex_wake() wakes up to n sleepers and
 * returns how many woke. The words must be 4-byte aligned and may live in a MAP_SHARED mapping. */
#ifndef ALLCORES_FUTEX_H
#define ALLCORES_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

int ac_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);
int ac_futex_wake(_Atomic uint32_t *word, int n);

#endif
