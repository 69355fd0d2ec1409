/* kernels_simd: private declarations shared by kernels.c and its SIMD
 * variant files (kernels_avx2.c, kernels_avx512.c). Not part of the public
 * API: callers use common/kernels.h. Each function here has the contract of
 * the public kernel of the same name, restricted to its instruction set. */
#ifndef SP_KERNELS_SIMD_H
#define SP_KERNELS_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Dequantized value of level L at width b: L / m * 2 - 1 with m = 2^b - 1,
 * as three float operations in that order (the formula of sp_quant_value,
 * so both modules give the same bits); every variant reproduces it. */
static inline float sp_kern_level_value(unsigned level, unsigned bits)
{
    float m = (float)((1u << bits) - 1u);
    return (float)level / m * 2.0f - 1.0f;
}

/* Re-quantization of weights [i0, i1) of a run (absolute indices), as the ref. */
size_t sp_kern_quantize_range_ref(const float *w, size_t i0, size_t i1, unsigned bits,
                                  float presence_threshold, uint8_t *packed, uint64_t *occ);

/* The same values as constant tables indexed by any 4 bits (entry l holds
 * the value of level l & (2^b - 1)); the compiler folds each operation with
 * the same IEEE float rounding as sp_kern_level_value. */
#define SP_KERN_V(l, m) ((float)((l) & (m)) / (float)(m)*2.0f - 1.0f)
#define SP_KERN_TABLE(m)                                                                           \
    {                                                                                              \
        SP_KERN_V(0, m), SP_KERN_V(1, m), SP_KERN_V(2, m), SP_KERN_V(3, m), SP_KERN_V(4, m),       \
            SP_KERN_V(5, m), SP_KERN_V(6, m), SP_KERN_V(7, m), SP_KERN_V(8, m), SP_KERN_V(9, m),   \
            SP_KERN_V(10, m), SP_KERN_V(11, m), SP_KERN_V(12, m), SP_KERN_V(13, m),                \
            SP_KERN_V(14, m), SP_KERN_V(15, m)                                                     \
    }
static const float sp_kern_table_b1[16] = SP_KERN_TABLE(1);
static const float sp_kern_table_b2[16] = SP_KERN_TABLE(3);
static const float sp_kern_table_b4[16] = SP_KERN_TABLE(15);
static inline const float *sp_kern_table(unsigned bits)
{
    return bits == 1 ? sp_kern_table_b1 : bits == 2 ? sp_kern_table_b2 : sp_kern_table_b4;
}

float sp_kern_dot_packed_avx2(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
                              unsigned bits);
float sp_kern_dot_packed_avx512(const uint8_t *packed, const uint64_t *occ, const float *x,
                                size_t n, unsigned bits);
size_t sp_kern_learn_packed_avx2(float *master, uint8_t *packed, uint64_t *occ, const float *x,
                                 size_t n, unsigned bits, float rate_err, float presence_threshold);
size_t sp_kern_learn_packed_avx512(float *master, uint8_t *packed, uint64_t *occ, const float *x,
                                   size_t n, unsigned bits, float rate_err,
                                   float presence_threshold);

size_t sp_kern_quantize_row_avx2(const float *w, size_t n, unsigned bits, float presence_threshold,
                                 uint8_t *packed, uint64_t *occ);
void sp_kern_unpack_row_avx2(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                             float scale, float *out);
size_t sp_kern_quantize_row_avx512(const float *w, size_t n, unsigned bits,
                                   float presence_threshold, uint8_t *packed, uint64_t *occ);
void sp_kern_unpack_row_avx512(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               float scale, float *out);

void sp_kern_unpack_row_s8_avx512(const uint8_t *packed, const uint64_t *occ, size_t n,
                                  unsigned bits, int8_t *out);
size_t sp_kern_inputs_to_u8_avx512(const float *X, size_t n, float divisor, uint8_t *X8);

/* GEMM slices: rows [m0, m1) and columns [j0, j1) of the output. */
void sp_kern_xwt_avx2(size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                      size_t b0, size_t b1, size_t o0, size_t o1);
void sp_kern_xwt_avx512(size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                        size_t b0, size_t b1, size_t o0, size_t o1);
/* C[m][j] (+)= sum_k A[m*a_rs + k*a_ks] * Bm[k*ldb + j], k in order, for
 * m in [m0, m1), j in [j0, j1); acc != 0 adds the sum to C once at the end. */
void sp_kern_axpy_avx2(size_t K, const float *A, size_t a_rs, size_t a_ks, const float *Bm,
                       size_t ldb, float *C, size_t ldc, size_t m0, size_t m1, size_t j0, size_t j1,
                       int acc);
void sp_kern_axpy_avx512(size_t K, const float *A, size_t a_rs, size_t a_ks, const float *Bm,
                         size_t ldb, float *C, size_t ldc, size_t m0, size_t m1, size_t j0,
                         size_t j1, int acc);
/* S[b][o] = (float)isum * (row_scale ? row_scale[o] : scale). */
void sp_kern_u8s8_avx512(size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                         float scale, const float *row_scale, float *S, size_t b0, size_t b1,
                         size_t o0, size_t o1);

#endif
