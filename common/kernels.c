/* kernels: scalar reference kernels (the oracles), run-time dispatch to the
 * SIMD variants in kernels_avx2.c / kernels_avx512.c, and the thread slicing
 * of the GEMMs. Slices cover outputs only, so results never depend on nth. */
#include "common/kernels.h"

#include <math.h>
#include <string.h>

#include <omp.h>

#include "common/error.h"
#include "common/kernels_simd.h"

/* ---- dispatch ----------------------------------------------------------- */

int sp_kern_isa_supported(sp_kern_isa_t isa)
{
    switch (isa) {
    case SP_KERN_REF:
        return 1;
    case SP_KERN_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SP_KERN_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("avx2");
    }
    return 0;
}

/* __builtin_cpu_supports reads a word libgcc fills at start-up, so asking on
 * every call is cheap and keeps this module free of globals. */
sp_kern_isa_t sp_kern_isa(void)
{
    if (sp_kern_isa_supported(SP_KERN_AVX512)) {
        return SP_KERN_AVX512;
    }
    if (sp_kern_isa_supported(SP_KERN_AVX2)) {
        return SP_KERN_AVX2;
    }
    return SP_KERN_REF;
}

const char *sp_kern_isa_name(sp_kern_isa_t isa)
{
    switch (isa) {
    case SP_KERN_REF:
        return "ref";
    case SP_KERN_AVX2:
        return "avx2";
    case SP_KERN_AVX512:
        return "avx512";
    }
    return "?";
}

int sp_kern_has_vnni(void)
{
    return sp_kern_isa_supported(SP_KERN_AVX512) && __builtin_cpu_supports("avx512vnni");
}

void sp_kern_split(size_t n, size_t align, int ith, int nth, size_t *lo, size_t *hi)
{
    SP_ASSERT(nth >= 1 && ith >= 0 && ith < nth && align >= 1);
    size_t blocks = (n + align - 1) / align;
    size_t per = blocks / (size_t)nth, extra = blocks % (size_t)nth;
    size_t i = (size_t)ith;
    size_t b0 = i * per + (i < extra ? i : extra);
    size_t b1 = b0 + per + (i < extra ? 1 : 0);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

/* ---- packed-run helpers ------------------------------------------------- */

static inline unsigned s_level(const uint8_t *packed, size_t i, unsigned bits)
{
    size_t bit = i * bits;
    return (packed[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1u);
}

static inline int s_present(const uint64_t *occ, size_t i)
{
    return occ == NULL || ((occ[i >> 6] >> (i & 63)) & 1u);
}

static inline void s_check_bits(unsigned bits)
{
    SP_ASSERT(bits == 1 || bits == 2 || bits == 4);
}

/* Nearest level of a clamped weight, as single rounded float operations in a
 * fixed order so that the SIMD variants reproduce it exactly. */
static inline unsigned s_nearest_level(float w, unsigned bits)
{
    float m = (float)((1u << bits) - 1u);
    float t = floorf((w + 1.0f) * (0.5f * m) + 0.5f);
    if (!(t > 0.0f)) { /* also NaN */
        return 0;
    }
    return t > m ? (unsigned)m : (unsigned)t;
}

static inline float s_clamp1(float w)
{
    /* NaN becomes 0 (comparisons with NaN are false). */
    if (w >= 1.0f) {
        return 1.0f;
    }
    if (w <= -1.0f) {
        return -1.0f;
    }
    return w == w ? w : 0.0f;
}

/* ---- 1. dot ------------------------------------------------------------- */

float sp_kern_dot_packed_ref(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
                             unsigned bits)
{
    s_check_bits(bits);
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (s_present(occ, i)) {
            sum += sp_kern_level_value(s_level(packed, i, bits), bits) * x[i];
        }
    }
    return sum;
}

float sp_kern_dot_packed_isa(sp_kern_isa_t isa, const uint8_t *packed, const uint64_t *occ,
                             const float *x, size_t n, unsigned bits)
{
    SP_ASSERT(sp_kern_isa_supported(isa));
    s_check_bits(bits);
    switch (isa) {
    case SP_KERN_AVX512:
        return sp_kern_dot_packed_avx512(packed, occ, x, n, bits);
    case SP_KERN_AVX2:
        return sp_kern_dot_packed_avx2(packed, occ, x, n, bits);
    case SP_KERN_REF:
        break;
    }
    return sp_kern_dot_packed_ref(packed, occ, x, n, bits);
}

float sp_kern_dot_packed(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
                         unsigned bits)
{
    return sp_kern_dot_packed_isa(sp_kern_isa(), packed, occ, x, n, bits);
}

/* ---- 2. learn / quantize ------------------------------------------------ */

size_t sp_kern_quantize_range_ref(const float *w, size_t i0, size_t i1, unsigned bits,
                                  float presence_threshold, uint8_t *packed, uint64_t *occ)
{
    s_check_bits(bits);
    size_t n_present = 0;
    for (size_t i = i0; i < i1; i++) {
        float v = s_clamp1(w[i]);
        unsigned level = s_nearest_level(v, bits);
        size_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1u) << (bit & 7));
        packed[bit >> 3] = (uint8_t)((packed[bit >> 3] & ~mask) | (level << (bit & 7)));
        int present = fabsf(v) >= presence_threshold;
        n_present += (size_t)present;
        if (occ != NULL) {
            uint64_t b = 1ull << (i & 63);
            occ[i >> 6] = present ? (occ[i >> 6] | b) : (occ[i >> 6] & ~b);
        }
    }
    return n_present;
}

size_t sp_kern_quantize_row_ref(const float *w, size_t n, unsigned bits, float presence_threshold,
                                uint8_t *packed, uint64_t *occ)
{
    return sp_kern_quantize_range_ref(w, 0, n, bits, presence_threshold, packed, occ);
}

size_t sp_kern_quantize_row_isa(sp_kern_isa_t isa, const float *w, size_t n, unsigned bits,
                                float presence_threshold, uint8_t *packed, uint64_t *occ)
{
    s_check_bits(bits);
    SP_ASSERT(sp_kern_isa_supported(isa));
    switch (isa) {
    case SP_KERN_AVX512:
        return sp_kern_quantize_row_avx512(w, n, bits, presence_threshold, packed, occ);
    case SP_KERN_AVX2:
        return sp_kern_quantize_row_avx2(w, n, bits, presence_threshold, packed, occ);
    case SP_KERN_REF:
        break;
    }
    return sp_kern_quantize_row_ref(w, n, bits, presence_threshold, packed, occ);
}

size_t sp_kern_quantize_row(const float *w, size_t n, unsigned bits, float presence_threshold,
                            uint8_t *packed, uint64_t *occ)
{
    s_check_bits(bits);
    return sp_kern_quantize_row_isa(sp_kern_isa(), w, n, bits, presence_threshold, packed, occ);
}

size_t sp_kern_learn_packed_ref(float *master, uint8_t *packed, uint64_t *occ, const float *x,
                                size_t n, unsigned bits, float rate_err, float presence_threshold)
{
    s_check_bits(bits);
    SP_ASSERT(occ != NULL);
    for (size_t i = 0; i < n; i++) {
        master[i] = s_clamp1(fmaf(-rate_err, x[i], master[i]));
    }
    return sp_kern_quantize_row_ref(master, n, bits, presence_threshold, packed, occ);
}

size_t sp_kern_learn_packed_isa(sp_kern_isa_t isa, float *master, uint8_t *packed, uint64_t *occ,
                                const float *x, size_t n, unsigned bits, float rate_err,
                                float presence_threshold)
{
    SP_ASSERT(sp_kern_isa_supported(isa));
    s_check_bits(bits);
    SP_ASSERT(occ != NULL);
    switch (isa) {
    case SP_KERN_AVX512:
        return sp_kern_learn_packed_avx512(master, packed, occ, x, n, bits, rate_err,
                                           presence_threshold);
    case SP_KERN_AVX2:
        return sp_kern_learn_packed_avx2(master, packed, occ, x, n, bits, rate_err,
                                         presence_threshold);
    case SP_KERN_REF:
        break;
    }
    return sp_kern_learn_packed_ref(master, packed, occ, x, n, bits, rate_err, presence_threshold);
}

size_t sp_kern_learn_packed(float *master, uint8_t *packed, uint64_t *occ, const float *x, size_t n,
                            unsigned bits, float rate_err, float presence_threshold)
{
    return sp_kern_learn_packed_isa(sp_kern_isa(), master, packed, occ, x, n, bits, rate_err,
                                    presence_threshold);
}

/* ---- 3. unpack ---------------------------------------------------------- */

void sp_kern_unpack_row_ref(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                            float *out)
{
    s_check_bits(bits);
    for (size_t i = 0; i < n; i++) {
        out[i] = s_present(occ, i) ? sp_kern_level_value(s_level(packed, i, bits), bits) : 0.0f;
    }
}

void sp_kern_unpack_row_scaled_ref(const uint8_t *packed, const uint64_t *occ, size_t n,
                                   unsigned bits, float scale, float *out)
{
    s_check_bits(bits);
    for (size_t i = 0; i < n; i++) {
        float v = sp_kern_level_value(s_level(packed, i, bits), bits);
        out[i] = s_present(occ, i) ? (scale != 1.0f ? v * scale : v) : 0.0f;
    }
}

/* Portable fast path: a table of values and whole bytes at a time; the
 * values come from sp_kern_level_value, so the result equals the ref. */
static void s_unpack_row_bytes(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               float scale, float *out)
{
    float table[16];
    for (unsigned l = 0; l < 16; l++) {
        table[l] = sp_kern_level_value(l & ((1u << bits) - 1u), bits);
        if (scale != 1.0f) {
            table[l] *= scale;
        }
    }
    size_t per_byte = 8 / bits;
    size_t full = n / per_byte;
    unsigned mask = (1u << bits) - 1u;
    for (size_t by = 0; by < full; by++) {
        unsigned v = packed[by];
        for (size_t k = 0; k < per_byte; k++) {
            out[by * per_byte + k] = table[(v >> (k * bits)) & mask];
        }
    }
    for (size_t i = full * per_byte; i < n; i++) {
        out[i] = table[s_level(packed, i, bits)];
    }
    if (occ != NULL) {
        for (size_t w = 0; w * 64 < n; w++) {
            uint64_t absent = ~occ[w];
            size_t lim = n - w * 64 < 64 ? n - w * 64 : 64;
            if (lim < 64) {
                absent &= (1ull << lim) - 1;
            }
            while (absent != 0) {
                out[w * 64 + (size_t)__builtin_ctzll(absent)] = 0.0f;
                absent &= absent - 1;
            }
        }
    }
}

void sp_kern_unpack_row_scaled_isa(sp_kern_isa_t isa, const uint8_t *packed, const uint64_t *occ,
                                   size_t n, unsigned bits, float scale, float *out)
{
    s_check_bits(bits);
    SP_ASSERT(sp_kern_isa_supported(isa));
    switch (isa) {
    case SP_KERN_AVX512:
        sp_kern_unpack_row_avx512(packed, occ, n, bits, scale, out);
        return;
    case SP_KERN_AVX2:
        sp_kern_unpack_row_avx2(packed, occ, n, bits, scale, out);
        return;
    case SP_KERN_REF:
        break;
    }
    s_unpack_row_bytes(packed, occ, n, bits, scale, out);
}

void sp_kern_unpack_row_scaled(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               float scale, float *out)
{
    sp_kern_unpack_row_scaled_isa(sp_kern_isa(), packed, occ, n, bits, scale, out);
}

void sp_kern_unpack_row(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                        float *out)
{
    sp_kern_unpack_row_scaled(packed, occ, n, bits, 1.0f, out);
}

void sp_kern_unpack_row_s8(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                           int8_t *out)
{
    s_check_bits(bits);
    if (sp_kern_isa() == SP_KERN_AVX512) {
        sp_kern_unpack_row_s8_avx512(packed, occ, n, bits, out);
        return;
    }
    sp_kern_unpack_row_s8_ref(packed, occ, n, bits, out);
}

void sp_kern_unpack_row_s8_ref(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               int8_t *out)
{
    s_check_bits(bits);
    int m = (1 << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        out[i] = s_present(occ, i) ? (int8_t)(2 * (int)s_level(packed, i, bits) - m) : 0;
    }
}

/* ---- 4. GEMM refs ------------------------------------------------------- */

static void s_xwt_slice_ref(size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                            size_t b0, size_t b1, size_t o0, size_t o1);

void sp_kern_gemm_xwt_ref(size_t B, size_t n_in, size_t n_out, const float *X, const float *W,
                          float *S)
{
    s_xwt_slice_ref(n_in, n_out, X, W, S, 0, B, 0, n_out);
}

void sp_kern_gemm_gtx_acc_ref(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                              float *dW)
{
    for (size_t o = 0; o < n_out; o++) {
        for (size_t i = 0; i < n_in; i++) {
            float acc = 0.0f;
            for (size_t b = 0; b < B; b++) {
                acc = fmaf(G[b * n_out + o], X[b * n_in + i], acc);
            }
            dW[o * n_in + i] += acc;
        }
    }
}

void sp_kern_gemm_gw_ref(size_t B, size_t n_in, size_t n_out, const float *G, const float *W,
                         float *dX)
{
    for (size_t b = 0; b < B; b++) {
        for (size_t i = 0; i < n_in; i++) {
            float acc = 0.0f;
            for (size_t o = 0; o < n_out; o++) {
                acc = fmaf(G[b * n_out + o], W[o * n_in + i], acc);
            }
            dX[b * n_in + i] = acc;
        }
    }
}

void sp_kern_gemm_u8s8_ref(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                           float x_scale, float w_scale, float *S)
{
    float scale = x_scale * w_scale;
    for (size_t b = 0; b < B; b++) {
        for (size_t o = 0; o < n_out; o++) {
            int32_t acc = 0;
            for (size_t i = 0; i < n_in; i++) {
                acc += (int32_t)X8[b * n_in + i] * (int32_t)W8[o * n_in + i];
            }
            S[b * n_out + o] = (float)acc * scale;
        }
    }
}

/* ---- 4. GEMM slices and dispatch ---------------------------------------- */

/* Scalar slice of S = X W^T with the same per-element order as the ref. */
/* The canonical order of S = X W^T, shared by every variant so that the
 * forward pass gives the same bits on every CPU: 16 lanes, lane l an fma chain
 * over i = l, l + 16, ... (lanes past n_in in the last block add 0 * 0, as a
 * zero-filled vector load does), then the lanes summed pairwise: l + (l + 8),
 * then + 4, then + 2, then + 1. */
float sp_kern_dot16(const float *x, const float *w, size_t n)
{
    float lane[16];
    for (int l = 0; l < 16; l++) {
        lane[l] = 0.0f;
    }
    for (size_t i = 0; i < n; i += 16) {
        for (size_t l = 0; l < 16; l++) {
            int in = i + l < n;
            lane[l] = fmaf(in ? x[i + l] : 0.0f, in ? w[i + l] : 0.0f, lane[l]);
        }
    }
    for (int l = 0; l < 8; l++) {
        lane[l] = lane[l + 8] + lane[l];
    }
    for (int l = 0; l < 4; l++) {
        lane[l] = lane[l + 4] + lane[l];
    }
    return (lane[0] + lane[2]) + (lane[1] + lane[3]);
}

static void s_xwt_slice_ref(size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                            size_t b0, size_t b1, size_t o0, size_t o1)
{
    for (size_t b = b0; b < b1; b++) {
        for (size_t o = o0; o < o1; o++) {
            S[b * n_out + o] = sp_kern_dot16(X + b * n_in, W + o * n_in, n_in);
        }
    }
}

static void s_axpy_slice_ref(size_t K, const float *A, size_t a_rs, size_t a_ks, const float *Bm,
                             size_t ldb, float *C, size_t ldc, size_t m0, size_t m1, size_t j0,
                             size_t j1, int acc_into)
{
    for (size_t m = m0; m < m1; m++) {
        for (size_t j = j0; j < j1; j++) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; k++) {
                acc = fmaf(A[m * a_rs + k * a_ks], Bm[k * ldb + j], acc);
            }
            C[m * ldc + j] = acc_into ? C[m * ldc + j] + acc : acc;
        }
    }
}

static void s_axpy(sp_kern_isa_t isa, size_t K, const float *A, size_t a_rs, size_t a_ks,
                   const float *Bm, size_t ldb, float *C, size_t ldc, size_t m0, size_t m1,
                   size_t j0, size_t j1, int acc)
{
    if (m0 >= m1 || j0 >= j1) {
        return;
    }
    switch (isa) {
    case SP_KERN_AVX512:
        sp_kern_axpy_avx512(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m0, m1, j0, j1, acc);
        return;
    case SP_KERN_AVX2:
        sp_kern_axpy_avx2(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m0, m1, j0, j1, acc);
        return;
    case SP_KERN_REF:
        break;
    }
    s_axpy_slice_ref(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m0, m1, j0, j1, acc);
}

/* Binary32 bits with every exponent bit set: exactly the NaNs and infinities. */
#define S_F32_EXP_MASK 0x7f800000u

static uint32_t s_f32_bits(const float *x)
{
    uint32_t w;
    memcpy(&w, x, sizeof w);
    return w;
}

/* target_clones on a static function: clang (the fuzz build) emits no
 * symbol for an exported one. */
__attribute__((target_clones("avx2", "default"))) static size_t s_first_nonfinite(const float *v,
                                                                                  size_t n)
{
    uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t k = 0; k < n; k++) {
        bad |= (uint32_t)((s_f32_bits(&v[k]) & S_F32_EXP_MASK) == S_F32_EXP_MASK);
    }
    if (bad == 0) {
        return n;
    }
    size_t k = 0;
    while (k < n && (s_f32_bits(&v[k]) & S_F32_EXP_MASK) != S_F32_EXP_MASK) {
        k++;
    }
    return k;
}

size_t sp_kern_first_nonfinite(const float *v, size_t n)
{
    return s_first_nonfinite(v, n);
}

/* Splits an m x n output between threads. By columns (multiples of 16
 * floats) when there are enough of them: each thread then reads only its
 * columns of the row-major right-hand matrix; else by rows. Any split gives
 * the same bits (every element has its own fixed sum). */
static void s_split2(size_t m, size_t n, size_t m_align, int ith, int nth, size_t *m0, size_t *m1,
                     size_t *j0, size_t *j1)
{
    if (nth > 1 && n >= (size_t)nth * 128) {
        sp_kern_split(n, 16, ith, nth, j0, j1);
        *m0 = 0;
        *m1 = m;
    } else {
        sp_kern_split(m, m_align, ith, nth, m0, m1);
        *j0 = 0;
        *j1 = n;
    }
}

void sp_kern_gemm_xwt_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out, const float *X,
                          const float *W, float *S, int ith, int nth)
{
    SP_ASSERT(sp_kern_isa_supported(isa));
    size_t b0, b1, o0, o1;
    /* Split neurons (each thread streams its share of W once). */
    if (n_out >= (size_t)nth * 16 || B < (size_t)nth * 8) {
        sp_kern_split(n_out, 8, ith, nth, &o0, &o1);
        b0 = 0;
        b1 = B;
    } else {
        sp_kern_split(B, 4, ith, nth, &b0, &b1);
        o0 = 0;
        o1 = n_out;
    }
    if (b0 >= b1 || o0 >= o1) {
        return;
    }
    switch (isa) {
    case SP_KERN_AVX512:
        sp_kern_xwt_avx512(n_in, n_out, X, W, S, b0, b1, o0, o1);
        return;
    case SP_KERN_AVX2:
        sp_kern_xwt_avx2(n_in, n_out, X, W, S, b0, b1, o0, o1);
        return;
    case SP_KERN_REF:
        break;
    }
    s_xwt_slice_ref(n_in, n_out, X, W, S, b0, b1, o0, o1);
}

void sp_kern_gemm_gtx_acc_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out,
                              const float *G, const float *X, float *dW, int ith, int nth)
{
    SP_ASSERT(sp_kern_isa_supported(isa));
    size_t m0, m1, j0, j1;
    s_split2(n_out, n_in, 8, ith, nth, &m0, &m1, &j0, &j1);
    /* A(m = o, k = b) = G[b * n_out + o]; Bm = X (k = b rows). */
    s_axpy(isa, B, G, 1, n_out, X, n_in, dW, n_in, m0, m1, j0, j1, 1);
}

void sp_kern_gemm_gw_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out, const float *G,
                         const float *W, float *dX, int ith, int nth)
{
    SP_ASSERT(sp_kern_isa_supported(isa));
    size_t m0, m1, j0, j1;
    s_split2(B, n_in, 8, ith, nth, &m0, &m1, &j0, &j1);
    /* A(m = b, k = o) = G[b * n_out + o]; Bm = W (k = o rows). */
    s_axpy(isa, n_out, G, n_out, 1, W, n_in, dX, n_in, m0, m1, j0, j1, 0);
}

void sp_kern_gemm_xwt(size_t B, size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                      int ith, int nth)
{
    sp_kern_gemm_xwt_isa(sp_kern_isa(), B, n_in, n_out, X, W, S, ith, nth);
}

void sp_kern_gemm_gtx_acc(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                          float *dW, int ith, int nth)
{
    sp_kern_gemm_gtx_acc_isa(sp_kern_isa(), B, n_in, n_out, G, X, dW, ith, nth);
}

void sp_kern_gemm_gw(size_t B, size_t n_in, size_t n_out, const float *G, const float *W, float *dX,
                     int ith, int nth)
{
    sp_kern_gemm_gw_isa(sp_kern_isa(), B, n_in, n_out, G, W, dX, ith, nth);
}

static void s_u8s8(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                   float scale, const float *row_scale, float *S, int ith, int nth)
{
    size_t b0, b1, o0, o1;
    if (n_out >= (size_t)nth * 16 || B < (size_t)nth * 8) {
        sp_kern_split(n_out, 8, ith, nth, &o0, &o1);
        b0 = 0;
        b1 = B;
    } else {
        sp_kern_split(B, 4, ith, nth, &b0, &b1);
        o0 = 0;
        o1 = n_out;
    }
    if (b0 >= b1 || o0 >= o1) {
        return;
    }
    if (sp_kern_has_vnni()) {
        sp_kern_u8s8_avx512(n_in, n_out, X8, W8, scale, row_scale, S, b0, b1, o0, o1);
        return;
    }
    for (size_t b = b0; b < b1; b++) {
        for (size_t o = o0; o < o1; o++) {
            int32_t acc = 0;
            for (size_t i = 0; i < n_in; i++) {
                acc += (int32_t)X8[b * n_in + i] * (int32_t)W8[o * n_in + i];
            }
            S[b * n_out + o] = (float)acc * (row_scale != NULL ? row_scale[o] : scale);
        }
    }
}

void sp_kern_gemm_u8s8(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                       float x_scale, float w_scale, float *S, int ith, int nth)
{
    s_u8s8(B, n_in, n_out, X8, W8, x_scale * w_scale, NULL, S, ith, nth);
}

void sp_kern_gemm_u8s8_rows(size_t B, size_t n_in, size_t n_out, const uint8_t *X8,
                            const int8_t *W8, const float *row_scale, float *S, int ith, int nth)
{
    SP_ASSERT(row_scale != NULL);
    s_u8s8(B, n_in, n_out, X8, W8, 0.0f, row_scale, S, ith, nth);
}

void sp_kern_gemm_u8s8_rows_ref(size_t B, size_t n_in, size_t n_out, const uint8_t *X8,
                                const int8_t *W8, const float *row_scale, float *S)
{
    for (size_t b = 0; b < B; b++) {
        for (size_t o = 0; o < n_out; o++) {
            int32_t acc = 0;
            for (size_t i = 0; i < n_in; i++) {
                acc += (int32_t)X8[b * n_in + i] * (int32_t)W8[o * n_in + i];
            }
            S[b * n_out + o] = (float)acc * row_scale[o];
        }
    }
}

size_t sp_kern_inputs_to_u8_ref(const float *X, size_t n, float divisor, uint8_t *X8)
{
    size_t inexact = 0;
    for (size_t k = 0; k < n; k++) {
        float q = rintf(X[k] * divisor);
        q = q > 0.0f ? (q < 255.0f ? q : 255.0f) : 0.0f; /* NaN -> 0 */
        X8[k] = (uint8_t)q;
        inexact += q / divisor != X[k];
    }
    return inexact;
}

size_t sp_kern_inputs_to_u8(const float *X, size_t n, float divisor, uint8_t *X8)
{
    if (sp_kern_isa() == SP_KERN_AVX512) {
        return sp_kern_inputs_to_u8_avx512(X, n, divisor, X8);
    }
    return sp_kern_inputs_to_u8_ref(X, n, divisor, X8);
}

void sp_kern_gemm_xwt_omp(size_t B, size_t n_in, size_t n_out, const float *X, const float *W,
                          float *S, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    sp_kern_gemm_xwt(B, n_in, n_out, X, W, S, omp_get_thread_num(), omp_get_num_threads());
}

void sp_kern_gemm_gtx_acc_omp(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                              float *dW, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    sp_kern_gemm_gtx_acc(B, n_in, n_out, G, X, dW, omp_get_thread_num(), omp_get_num_threads());
}

void sp_kern_gemm_gw_omp(size_t B, size_t n_in, size_t n_out, const float *G, const float *W,
                         float *dX, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    sp_kern_gemm_gw(B, n_in, n_out, G, W, dX, omp_get_thread_num(), omp_get_num_threads());
}

void sp_kern_gemm_u8s8_omp(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                           float x_scale, float w_scale, float *S, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    sp_kern_gemm_u8s8(B, n_in, n_out, X8, W8, x_scale, w_scale, S, omp_get_thread_num(),
                      omp_get_num_threads());
}
