/* reduce: the fixed summation tree of a step's partition gradients. */
#include "common/reduce.h"

#include "common/error.h"

uint32_t sp_reduce_split(uint32_t n)
{
    SP_ASSERT(n >= 2);
    uint32_t p = 1;
    while ((uint64_t)p * 2 < n) {
        p *= 2;
    }
    return p;
}

/* Node [lo, hi) overlaps [a, b): whole if inside it, else its children. */
static void s_cover(uint32_t lo, uint32_t hi, uint32_t a, uint32_t b, uint32_t *first,
                    uint32_t *count, uint32_t *k)
{
    if (a <= lo && hi <= b) {
        SP_ASSERT(*k < SP_REDUCE_COVER_MAX);
        first[*k] = lo;
        count[*k] = hi - lo;
        (*k)++;
        return;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo); /* hi - lo >= 2: not inside [a, b) */
    if (a < mid) {
        s_cover(lo, mid, a, b, first, count, k);
    }
    if (b > mid) {
        s_cover(mid, hi, a, b, first, count, k);
    }
}

uint32_t sp_reduce_cover(uint32_t n, uint32_t a, uint32_t b, uint32_t *first, uint32_t *count)
{
    SP_ASSERT(a < b && b <= n);
    uint32_t k = 0;
    s_cover(0, n, a, b, first, count, &k);
    return k;
}

void sp_reduce_add_f32(float *restrict dst, const float *restrict src, size_t n)
{
    /* Element-wise and independent: vectorizing does not change a bit. */
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        dst[i] = dst[i] + src[i];
    }
}

void sp_reduce_add_u32(uint32_t *restrict dst, const uint32_t *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        dst[i] += src[i];
    }
}
