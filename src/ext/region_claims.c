/* region_claims.c: the claim records of a Region object (region_object.h). A thread that waits
 * for results without the GIL records in a claim (ac_claim, ring.h) a result it takes, until it
 * holds the GIL again and counts it in `inflight`: so popping() never says 0 while a result is
 * in flight between the ring and the caller. A bitmap hands out the POP_CLAIMS records. */
#include "region_object.h"

/* A free claim record for one blocking pop, or NULL when POP_CLAIMS threads wait already (that
 * thread's pops are then untracked until it holds the GIL again: a narrower guarantee, never a
 * wrong result). */
ac_claim *acx_claim_acquire(RegionObject *self, uint32_t *bit) {
  uint32_t used = atomic_load(&self->claims_used);
  while (used != UINT32_MAX) {
    int i = __builtin_ctz(~used);
    if (atomic_compare_exchange_weak(&self->claims_used, &used, used | (1u << i))) {
      *bit = 1u << i;
      return &self->claims[i];
    }
  }
  return NULL;
}

void acx_claim_release(RegionObject *self, ac_claim *claim, uint32_t bit) {
  if (!claim) return;
  atomic_store(&claim->id, 0);
  atomic_store(&claim->block, 0);
  atomic_store(&claim->pos, 0);
  atomic_store(&claim->waiting, 0);
  atomic_fetch_and(&self->claims_used, ~bit);
}

long acx_claims_held(RegionObject *self) {
  long n = 0;
  for (int i = 0; i < POP_CLAIMS; i++)
    if (atomic_load(&self->claims[i].pos) || atomic_load(&self->claims[i].id)) n++;
  return n;
}
