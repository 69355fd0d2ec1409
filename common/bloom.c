/* bloom: blocked bloom filter (see bloom.h).
 * Invariant: every inserted key has all k of its bits set in block
 * block_of(key); bits are only ever set (by insert) or all cleared (by clear).
 * A key hashes once (a fold and one odd multiply): the high half picks the block, and
 * an odd-multiplier remix gives 9-bit bit positions, seven per 64-bit word. */
#include "common/bloom.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_WORDS_PER_BLOCK (SP_BLOOM_BLOCK_BITS / 64)
#define S_MAX_HASHES 32
#define S_MAX_BLOCKS (1ULL << 32) /* 256 GiB of filter: far above any use */

struct sp_bloom {
    uint64_t *blocks;  /* n_blocks * 8 words, 64-byte aligned */
    uint64_t n_blocks; /* >= 1 */
    uint64_t expected; /* n, items */
    double fpr;        /* p, 0..1 */
    unsigned k;        /* hashes per key, 1..S_MAX_HASHES */
    int simd;          /* 1: lookups use the AVX-512 path (CPU has it and k <= 7) */
};

/* Finalizer of splitmix64: a bijection that mixes every input bit. */
static inline uint64_t s_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

sp_bloom_t *sp_bloom_new(uint64_t expected, double fpr)
{
    if (expected == 0 || !(fpr > 0.0 && fpr < 1.0)) {
        return NULL;
    }
    double ln2 = log(2.0);
    double m = ceil(-(double)expected * log(fpr) / (ln2 * ln2));
    double n_blocks = ceil(m / SP_BLOOM_BLOCK_BITS);
    if (n_blocks > (double)S_MAX_BLOCKS) {
        return NULL;
    }
    double k = floor(m / (double)expected * ln2 + 0.5);
    sp_bloom_t *b = malloc(sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->n_blocks = n_blocks < 1.0 ? 1 : (uint64_t)n_blocks;
    b->k = k < 1.0 ? 1u : (k > S_MAX_HASHES ? S_MAX_HASHES : (unsigned)k);
    b->expected = expected;
    b->fpr = fpr;
    b->simd = sp_bloom_has_simd() && b->k <= 7;
    b->blocks = aligned_alloc(64, b->n_blocks * 64);
    if (b->blocks == NULL) {
        free(b);
        return NULL;
    }
    memset(b->blocks, 0, b->n_blocks * 64);
    return b;
}

void sp_bloom_destroy(sp_bloom_t **bp)
{
    if (bp == NULL || *bp == NULL) {
        return;
    }
    free((*bp)->blocks);
    free(*bp);
    *bp = NULL;
}

sp_bloom_t *sp_bloom_clone(const sp_bloom_t *b)
{
    if (b == NULL) {
        return NULL;
    }
    sp_bloom_t *c = malloc(sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    *c = *b;
    c->blocks = aligned_alloc(64, b->n_blocks * 64);
    if (c->blocks == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->blocks, b->blocks, b->n_blocks * 64);
    return c;
}

/* Offset (in words) of a key's block, and in *g the word its bit positions come from. */
static inline uint64_t s_locate(const sp_bloom_t *b, uint64_t key, uint64_t *g)
{
    /* One multiply of a folded key: Morton codes differ mostly in their low
     * bits, which the fold and the odd multiplier spread over the high half. */
    uint64_t h = (key ^ (key >> 29)) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    /* multiply-shift maps the high 32 bits onto [0, n_blocks) without a division */
    uint64_t blk = ((h >> 32) * b->n_blocks) >> 32;
    *g = h * 0x9e3779b97f4a7c15ULL;
    return blk * S_WORDS_PER_BLOCK;
}

/* Bit positions come seven at a time (9 bits each) out of one 64-bit word;
 * a key needing more than seven remixes the word. */
#define S_PER_WORD 7

void sp_bloom_insert(sp_bloom_t *b, uint64_t key)
{
    uint64_t g;
    uint64_t *blk = b->blocks + s_locate(b, key, &g);
    for (unsigned i = 0; i < b->k; i += S_PER_WORD) {
        unsigned n = b->k - i < S_PER_WORD ? b->k - i : S_PER_WORD;
        for (unsigned j = 0; j < n; j++) {
            unsigned pos = (unsigned)(g >> (9 * j)) & (SP_BLOOM_BLOCK_BITS - 1);
            blk[pos >> 6] |= 1ULL << (pos & 63);
        }
        g = s_mix(g);
    }
}

int sp_bloom_might_contain_ref(const sp_bloom_t *b, uint64_t key)
{
    uint64_t g;
    const uint64_t *blk = b->blocks + s_locate(b, key, &g);
    uint64_t all = 1;
    for (unsigned i = 0; i < b->k; i += S_PER_WORD) {
        unsigned n = b->k - i < S_PER_WORD ? b->k - i : S_PER_WORD;
        for (unsigned j = 0; j < n; j++) {
            unsigned pos = (unsigned)(g >> (9 * j)) & (SP_BLOOM_BLOCK_BITS - 1);
            all &= blk[pos >> 6] >> (pos & 63); /* branch-free: k loads of one line */
        }
        g = s_mix(g);
    }
    return (int)(all & 1);
}

int sp_bloom_has_simd(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

/* The whole 64-byte block in one register; lane j probes bit position
 * (g >> 9j) & 511: a permute fetches its word, a variable shift its bit.
 * Same positions as the scalar path, for k <= 7. */
__attribute__((target("avx512f"))) static int s_might_avx512(const uint64_t *blk, uint64_t g,
                                                             unsigned k)
{
    const __m512i block = _mm512_load_si512((const void *)blk);
    const __m512i shifts = _mm512_set_epi64(63, 54, 45, 36, 27, 18, 9, 0);
    __m512i pos = _mm512_and_si512(_mm512_srlv_epi64(_mm512_set1_epi64((long long)g), shifts),
                                   _mm512_set1_epi64(SP_BLOOM_BLOCK_BITS - 1));
    __m512i words = _mm512_permutexvar_epi64(_mm512_srli_epi64(pos, 6), block);
    __m512i bits = _mm512_srlv_epi64(words, _mm512_and_si512(pos, _mm512_set1_epi64(63)));
    __mmask8 hit = _mm512_test_epi64_mask(bits, _mm512_set1_epi64(1));
    __mmask8 need = (__mmask8)((1u << k) - 1);
    return (hit & need) == need;
}

int sp_bloom_might_contain(const sp_bloom_t *b, uint64_t key)
{
    if (b->simd) {
        uint64_t g;
        uint64_t off = s_locate(b, key, &g);
        return s_might_avx512(b->blocks + off, g, b->k);
    }
    return sp_bloom_might_contain_ref(b, key);
}

void sp_bloom_clear(sp_bloom_t *b)
{
    memset(b->blocks, 0, b->n_blocks * 64);
}

uint64_t sp_bloom_bits(const sp_bloom_t *b)
{
    return b->n_blocks * SP_BLOOM_BLOCK_BITS;
}

unsigned sp_bloom_hashes(const sp_bloom_t *b)
{
    return b->k;
}

uint64_t sp_bloom_expected(const sp_bloom_t *b)
{
    return b->expected;
}

double sp_bloom_target_fpr(const sp_bloom_t *b)
{
    return b->fpr;
}

size_t sp_bloom_heap_bytes(const sp_bloom_t *b)
{
    return b == NULL ? 0 : sizeof(*b) + (size_t)b->n_blocks * 64;
}
