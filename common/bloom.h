/* bloom: a blocked bloom filter over 64-bit keys (Morton codes).
 * Sized from the expected item count n and the target false-positive rate p:
 * m = -n ln p / (ln 2)^2 bits (rounded up to whole 512-bit blocks) and
 * k = round((m / n) ln 2) hashes. All k bits of a key lie in one 64-byte block
 * (one cache line per lookup), so the rate is a little above a classic filter
 * of the same m (about 1.16% instead of 1.0% at p = 1%). No false negatives. */
#ifndef SP_BLOOM_H
#define SP_BLOOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_bloom sp_bloom_t;

#define SP_BLOOM_BLOCK_BITS 512 /* one cache line */

/* New empty filter for `expected` items (>= 1) at false-positive rate
 * fpr (0 < fpr < 1). NULL on a bad argument or when out of memory. */
sp_bloom_t *sp_bloom_new(uint64_t expected, double fpr);
/* Frees *bp (NULL-safe, idempotent) and sets *bp = NULL. */
void sp_bloom_destroy(sp_bloom_t **bp);
/* Deep copy; NULL when out of memory. */
sp_bloom_t *sp_bloom_clone(const sp_bloom_t *b);

void sp_bloom_insert(sp_bloom_t *b, uint64_t key);
/* 0: key was certainly never inserted; 1: it may have been. Read only, so
 * any number of threads may call it while nobody inserts. */
int sp_bloom_might_contain(const sp_bloom_t *b, uint64_t key);
/* The portable scalar lookup (the oracle of the AVX-512 one, which
 * sp_bloom_might_contain uses when sp_bloom_has_simd() and k <= 7, decided
 * once per filter at creation). Same answers. */
int sp_bloom_might_contain_ref(const sp_bloom_t *b, uint64_t key);
int sp_bloom_has_simd(void);
/* Forgets every key. */
void sp_bloom_clear(sp_bloom_t *b);

uint64_t sp_bloom_bits(const sp_bloom_t *b);      /* m, a multiple of 512 */
unsigned sp_bloom_hashes(const sp_bloom_t *b);    /* k */
uint64_t sp_bloom_expected(const sp_bloom_t *b);  /* n given at creation */
double sp_bloom_target_fpr(const sp_bloom_t *b);  /* p given at creation */
size_t sp_bloom_heap_bytes(const sp_bloom_t *b);

#endif
