/* reduce: the fixed summation tree of a step's partition gradients. */
#include "common/reduce.h"

#include "common/error.h"

uint32_t sp_reduce_split(uint32_t n)
{
    SP_ASSERT(n >= 2);
    uint32_t p = 1;
    while (p * 2 < n) {
        p *= 2;
    }
    return p;
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
