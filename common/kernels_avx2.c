/* kernels_avx2: AVX2+FMA variants of the kernels in kernels.h, for CPUs
 * without AVX-512. Only the functions carry target attributes. The axpy
 * GEMM is one fma chain per element in k order, like the ref (bit-exact);
 * the dot-shaped ones use 8 lanes and a fixed lane reduction. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "common/kernels.h"
#include "common/kernels_simd.h"

#define T2 "avx2,fma,bmi,bmi2,popcnt"

static inline uint32_t s_load_le32(const uint8_t *p, size_t nbytes)
{
    uint32_t v = 0;
    if (nbytes >= 4) {
        memcpy(&v, p, 4);
        return v;
    }
    for (size_t k = 0; k < nbytes; k++) {
        v |= (uint32_t)p[k] << (8 * k);
    }
    return v;
}

/* Lane mask (all ones in lanes < count) for maskload / maskstore. */
__attribute__((target(T2))) static inline __m256i s_lanes(size_t count)
{
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count < 8 ? count : 8)), idx);
}

/* Lane mask from 8 bits: lane l all ones when bit l is set. */
__attribute__((target(T2))) static inline __m256i s_bits8(uint32_t bits)
{
    __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)bits), sel);
    return _mm256_cmpeq_epi32(b, sel);
}

__attribute__((target(T2))) static inline float s_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- 1. dot ------------------------------------------------------------- */

__attribute__((target(T2))) float sp_kern_dot_packed_avx2(const uint8_t *packed,
                                                          const uint64_t *occ, const float *x,
                                                          size_t n, unsigned bits)
{
    const float *tab = sp_kern_table(bits);
    __m256 tlo = _mm256_loadu_ps(tab), thi = _mm256_loadu_ps(tab + 8);
    __m256i shifts = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    shifts = _mm256_mullo_epi32(shifts, _mm256_set1_epi32((int)bits));
    __m256i lmask = _mm256_set1_epi32((int)((1u << bits) - 1u));
    size_t pbytes = (n * bits + 7) / 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        size_t rem = n - i;
        size_t at = i * bits / 8, nb = pbytes - at < bits ? pbytes - at : bits;
        uint32_t w = s_load_le32(packed + at, nb);
        __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), shifts), lmask);
        __m256 wv = _mm256_permutevar8x32_ps(tlo, idx);
        if (bits == 4) {
            __m256 hv = _mm256_permutevar8x32_ps(thi, idx);
            wv = _mm256_blendv_ps(wv, hv, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
        }
        uint32_t on = occ == NULL ? 0xFFu : (uint32_t)((occ[i >> 6] >> (i & 63)) & 0xFFu);
        __m256i keep = _mm256_and_si256(s_bits8(on), s_lanes(rem));
        __m256 xv = _mm256_maskload_ps(x + i, s_lanes(rem));
        wv = _mm256_and_ps(wv, _mm256_castsi256_ps(keep));
        if (i & 8) {
            acc1 = _mm256_fmadd_ps(wv, xv, acc1);
        } else {
            acc0 = _mm256_fmadd_ps(wv, xv, acc0);
        }
    }
    return s_hsum8(_mm256_add_ps(acc0, acc1));
}

/* ---- 2. learn ----------------------------------------------------------- */

__attribute__((target(T2))) size_t
sp_kern_learn_packed_avx2(float *master, uint8_t *packed, uint64_t *occ, const float *x, size_t n,
                          unsigned bits, float rate_err, float presence_threshold)
{
    /* The master update is vectorised (one fma, NaN to 0, clamp: the ref's
     * exact operations); re-quantization is the ref's, so bits agree. */
    __m256 neg_re = _mm256_set1_ps(-rate_err);
    __m256 one = _mm256_set1_ps(1.0f), mone = _mm256_set1_ps(-1.0f);
    size_t full = n / 8 * 8;
    for (size_t i = 0; i < full; i += 8) {
        __m256 w = _mm256_fmadd_ps(neg_re, _mm256_loadu_ps(x + i), _mm256_loadu_ps(master + i));
        w = _mm256_and_ps(w, _mm256_cmp_ps(w, w, _CMP_ORD_Q));
        w = _mm256_min_ps(_mm256_max_ps(w, mone), one);
        _mm256_storeu_ps(master + i, w);
    }
    for (size_t i = full; i < n; i++) {
        float w = fmaf(-rate_err, x[i], master[i]);
        master[i] = w >= 1.0f ? 1.0f : w <= -1.0f ? -1.0f : (w == w ? w : 0.0f);
    }
    return sp_kern_quantize_row_ref(master, n, bits, presence_threshold, packed, occ);
}

/* Levels of 8 weights exactly as the ref: NaN to 0, clamp, then
 * floor((w + 1) * (m / 2) + 0.5) clamped to [0, m]. Also returns the clamped w. */
__attribute__((target(T2))) static inline __m256i s_levels8(__m256 w, float m, __m256 *clamped)
{
    w = _mm256_and_ps(w, _mm256_cmp_ps(w, w, _CMP_ORD_Q));
    w = _mm256_min_ps(_mm256_max_ps(w, _mm256_set1_ps(-1.0f)), _mm256_set1_ps(1.0f));
    *clamped = w;
    __m256 t = _mm256_mul_ps(_mm256_add_ps(w, _mm256_set1_ps(1.0f)), _mm256_set1_ps(0.5f * m));
    t = _mm256_floor_ps(_mm256_add_ps(t, _mm256_set1_ps(0.5f)));
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(m));
    return _mm256_cvttps_epi32(t);
}

/* 16 weights from i (a multiple of 16): packed levels and occupancy bits. */
__attribute__((target(T2))) size_t sp_kern_quantize_row_avx2(const float *w, size_t n,
                                                             unsigned bits,
                                                             float presence_threshold,
                                                             uint8_t *packed, uint64_t *occ)
{
    float m = (float)((1u << bits) - 1u);
    __m256 thr = _mm256_set1_ps(presence_threshold);
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    size_t full = n / 16 * 16, n_present = 0;
    for (size_t i = 0; i < full; i += 16) {
        __m256 c0, c1;
        __m256i l0 = s_levels8(_mm256_loadu_ps(w + i), m, &c0);
        __m256i l1 = s_levels8(_mm256_loadu_ps(w + i + 8), m, &c1);
        unsigned pres = (unsigned)_mm256_movemask_ps(
                            _mm256_cmp_ps(_mm256_and_ps(c0, absmask), thr, _CMP_GE_OQ)) |
                        ((unsigned)_mm256_movemask_ps(
                             _mm256_cmp_ps(_mm256_and_ps(c1, absmask), thr, _CMP_GE_OQ))
                         << 8);
        /* 16 int32 levels to 16 bytes in order */
        __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(l0, l1), 0xD8);
        __m128i by =
            _mm_packus_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
        uint64_t lo = (uint64_t)_mm_cvtsi128_si64(by);
        uint64_t hi = (uint64_t)_mm_extract_epi64(by, 1);
        if (bits == 4) {
            uint64_t p64 =
                _pext_u64(lo, 0x0F0F0F0F0F0F0F0Full) | (_pext_u64(hi, 0x0F0F0F0F0F0F0F0Full) << 32);
            memcpy(packed + i / 2, &p64, 8);
        } else if (bits == 2) {
            uint32_t p32 = (uint32_t)(_pext_u64(lo, 0x0303030303030303ull) |
                                      (_pext_u64(hi, 0x0303030303030303ull) << 16));
            memcpy(packed + i / 4, &p32, 4);
        } else {
            uint16_t p16 = (uint16_t)(_pext_u64(lo, 0x0101010101010101ull) |
                                      (_pext_u64(hi, 0x0101010101010101ull) << 8));
            memcpy(packed + i / 8, &p16, 2);
        }
        if (occ != NULL) {
            uint64_t word = occ[i >> 6];
            word &= ~(0xFFFFull << (i & 63));
            word |= (uint64_t)pres << (i & 63);
            occ[i >> 6] = word;
        }
        n_present += (size_t)__builtin_popcount(pres);
    }
    return n_present +
           sp_kern_quantize_range_ref(w, full, n, bits, presence_threshold, packed, occ);
}

/* out[i] = value(level_i) * scale if present, else 0, 8 weights a step. */
__attribute__((target(T2))) void sp_kern_unpack_row_avx2(const uint8_t *packed, const uint64_t *occ,
                                                         size_t n, unsigned bits, float scale,
                                                         float *out)
{
    const float *tab = sp_kern_table(bits);
    __m256 tlo = _mm256_loadu_ps(tab), thi = _mm256_loadu_ps(tab + 8);
    if (scale != 1.0f) {
        tlo = _mm256_mul_ps(tlo, _mm256_set1_ps(scale));
        thi = _mm256_mul_ps(thi, _mm256_set1_ps(scale));
    }
    __m256i shifts =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)bits));
    __m256i lmask = _mm256_set1_epi32((int)((1u << bits) - 1u));
    size_t pbytes = (n * bits + 7) / 8;
    for (size_t i = 0; i < n; i += 8) {
        size_t rem = n - i;
        size_t at = i * bits / 8, nb = pbytes - at < bits ? pbytes - at : bits;
        uint32_t wb = s_load_le32(packed + at, nb);
        __m256i idx =
            _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)wb), shifts), lmask);
        __m256 wv = _mm256_permutevar8x32_ps(tlo, idx);
        if (bits == 4) {
            __m256 hv = _mm256_permutevar8x32_ps(thi, idx);
            wv = _mm256_blendv_ps(wv, hv, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
        }
        uint32_t on = occ == NULL ? 0xFFu : (uint32_t)((occ[i >> 6] >> (i & 63)) & 0xFFu);
        wv = _mm256_and_ps(wv, _mm256_castsi256_ps(s_bits8(on)));
        if (rem >= 8) {
            _mm256_storeu_ps(out + i, wv);
        } else {
            _mm256_maskstore_ps(out + i, s_lanes(rem), wv);
        }
    }
}

/* ---- 4. axpy-shaped GEMM ------------------------------------------------ */

#define S_MR2 6

__attribute__((target(T2), always_inline)) static inline void
s_axpy_tile2(size_t K, const float *A, size_t a_rs, size_t a_ks, const float *Bm, size_t ldb,
             float *C, size_t ldc, size_t m, size_t j, const size_t mr, const size_t nv,
             __m256i last, int acc_into)
{
    __m256 acc[S_MR2][2];
#pragma GCC unroll 6
    for (size_t r = 0; r < mr; r++) {
#pragma GCC unroll 2
        for (size_t v = 0; v < nv; v++) {
            acc[r][v] = _mm256_setzero_ps();
        }
    }
    for (size_t k = 0; k < K; k++) {
        const float *brow = Bm + k * ldb + j;
        __m256 bv[2];
#pragma GCC unroll 2
        for (size_t v = 0; v < nv; v++) {
            bv[v] =
                v + 1 < nv ? _mm256_loadu_ps(brow + 8 * v) : _mm256_maskload_ps(brow + 8 * v, last);
        }
        const float *ak = A + m * a_rs + k * a_ks;
#pragma GCC unroll 6
        for (size_t r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(ak + r * a_rs);
#pragma GCC unroll 2
            for (size_t v = 0; v < nv; v++) {
                acc[r][v] = _mm256_fmadd_ps(a, bv[v], acc[r][v]);
            }
        }
    }
    __m256i all = _mm256_set1_epi32(-1);
#pragma GCC unroll 6
    for (size_t r = 0; r < mr; r++) {
        float *crow = C + (m + r) * ldc + j;
#pragma GCC unroll 2
        for (size_t v = 0; v < nv; v++) {
            /* masked stores are slow on some cores: only the partial last vector uses one */
            int whole = v + 1 < nv || _mm256_testc_si256(last, all);
            __m256 out = acc[r][v];
            if (whole) {
                if (acc_into) {
                    out = _mm256_add_ps(_mm256_loadu_ps(crow + 8 * v), out);
                }
                _mm256_storeu_ps(crow + 8 * v, out);
            } else {
                if (acc_into) {
                    out = _mm256_add_ps(_mm256_maskload_ps(crow + 8 * v, last), out);
                }
                _mm256_maskstore_ps(crow + 8 * v, last, out);
            }
        }
    }
}

__attribute__((target(T2))) void sp_kern_axpy_avx2(size_t K, const float *A, size_t a_rs,
                                                   size_t a_ks, const float *Bm, size_t ldb,
                                                   float *C, size_t ldc, size_t m0, size_t m1,
                                                   size_t j0, size_t j1, int acc)
{
    for (size_t j = j0; j < j1; j += 16) {
        size_t w = j1 - j < 16 ? j1 - j : 16;
        size_t nv = (w + 7) / 8;
        __m256i last = s_lanes(w - 8 * (nv - 1));
        for (size_t m = m0; m < m1; m += S_MR2) {
            size_t mr = m1 - m < S_MR2 ? m1 - m : S_MR2;
            if (mr == S_MR2 && nv == 2) {
                s_axpy_tile2(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m, j, S_MR2, 2, last, acc);
            } else if (nv == 2) {
                for (size_t r = 0; r < mr; r++) {
                    s_axpy_tile2(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m + r, j, 1, 2, last, acc);
                }
            } else {
                for (size_t r = 0; r < mr; r++) {
                    s_axpy_tile2(K, A, a_rs, a_ks, Bm, ldb, C, ldc, m + r, j, 1, 1, last, acc);
                }
            }
        }
    }
}

/* ---- 4. S = X W^T (dot-shaped, 16 lanes as two halves) -------------------
 * The canonical order of sp_kern_dot16: lane l (0..15) is an fma chain over
 * i = l mod 16, held here as a low (lanes 0-7) and a high (8-15) register;
 * lanes past n_in add 0 * 0 like the AVX-512 zero-filled tail; the lanes are
 * then summed pairwise in the same tree. Same bits as every other variant. */

__attribute__((target(T2))) static inline float s_hsum16_canon2(__m256 lo, __m256 hi)
{
    __m256 t = _mm256_add_ps(hi, lo);
    __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    float a[4];
    _mm_storeu_ps(a, u);
    return (a[0] + a[2]) + (a[1] + a[3]);
}

__attribute__((target(T2), always_inline)) static inline __m256 s_load_part(const float *p,
                                                                            size_t avail)
{
    if (avail >= 8) {
        return _mm256_loadu_ps(p);
    }
    return avail == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(p, s_lanes(avail));
}

__attribute__((target(T2), always_inline)) static inline void
s_xwt_tile2(size_t n_in, size_t n_out, const float *X, const float *W, float *S, size_t b, size_t o,
            const size_t br, const size_t orr)
{
    __m256 lo[2][2], hi[2][2];
#pragma GCC unroll 2
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 2
        for (size_t c = 0; c < orr; c++) {
            lo[r][c] = _mm256_setzero_ps();
            hi[r][c] = _mm256_setzero_ps();
        }
    }
    for (size_t i = 0; i < n_in; i += 16) {
        size_t rem = n_in - i;
        size_t n_lo = rem < 8 ? rem : 8, n_hi = rem <= 8 ? 0 : (rem - 8 < 8 ? rem - 8 : 8);
        __m256 xl[2], xh[2];
#pragma GCC unroll 2
        for (size_t r = 0; r < br; r++) {
            const float *p = X + (b + r) * n_in + i;
            xl[r] = s_load_part(p, n_lo);
            xh[r] = s_load_part(p + 8, n_hi);
        }
#pragma GCC unroll 2
        for (size_t c = 0; c < orr; c++) {
            const float *p = W + (o + c) * n_in + i;
            __m256 wl = s_load_part(p, n_lo), wh = s_load_part(p + 8, n_hi);
#pragma GCC unroll 2
            for (size_t r = 0; r < br; r++) {
                lo[r][c] = _mm256_fmadd_ps(xl[r], wl, lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xh[r], wh, hi[r][c]);
            }
        }
    }
#pragma GCC unroll 2
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 2
        for (size_t c = 0; c < orr; c++) {
            S[(b + r) * n_out + o + c] = s_hsum16_canon2(lo[r][c], hi[r][c]);
        }
    }
}

__attribute__((target(T2))) void sp_kern_xwt_avx2(size_t n_in, size_t n_out, const float *X,
                                                  const float *W, float *S, size_t b0, size_t b1,
                                                  size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o += 2) {
        size_t orr = o1 - o < 2 ? o1 - o : 2;
        for (size_t b = b0; b < b1; b += 2) {
            size_t br = b1 - b < 2 ? b1 - b : 2;
            if (br == 2 && orr == 2) {
                s_xwt_tile2(n_in, n_out, X, W, S, b, o, 2, 2);
            } else {
                for (size_t r = 0; r < br; r++) {
                    for (size_t c = 0; c < orr; c++) {
                        s_xwt_tile2(n_in, n_out, X, W, S, b + r, o + c, 1, 1);
                    }
                }
            }
        }
    }
}
