/* kernels_avx512: AVX-512 variants of the kernels in kernels.h. Only the
 * functions carry target attributes, so this file builds with the common
 * flags and runs only where sp_kern_isa() said AVX-512 is there. Each output
 * element is computed by the same lane operations whatever slice it is in. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/kernels.h"
#include "common/kernels_simd.h"

#define T512 "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2,popcnt"
#define T512VNNI T512 ",avx512vnni"

/* 8 bytes from p, little end first, reading only the first nbytes when
 * fewer than 8 are readable (the rest read as 0). */
static inline uint64_t s_load_le(const uint8_t *p, size_t nbytes)
{
    uint64_t v = 0;
    if (nbytes >= 8) {
        memcpy(&v, p, 8);
        return v;
    }
    for (size_t k = 0; k < nbytes; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

/* 16 occupancy bits starting at weight i (i a multiple of 16). */
static inline uint32_t s_occ16(const uint64_t *occ, size_t i)
{
    return occ == NULL ? 0xFFFFu : (uint32_t)((occ[i >> 6] >> (i & 63)) & 0xFFFFu);
}

/* ---- 1. dot ------------------------------------------------------------- */

/* One group of 16 weights from i: the signed-x add (1 bit) or the table
 * lookup and masked fma (2 and 4 bits) into acc. */
__attribute__((target(T512), always_inline)) static inline __m512
s_dot16(__m512 acc, const uint8_t *packed, size_t pbytes, const uint64_t *occ, const float *x,
        size_t n, size_t i, unsigned bits, __m512 table, __m512i shifts, __m128i spread)
{
    size_t rem = n - i;
    __mmask16 lanes = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1u);
    size_t at = i * bits / 8;
    /* bytes past the group of 16 are read when there and ignored */
    uint64_t raw = s_load_le(packed + at, pbytes - at);
    __mmask16 on = (__mmask16)(s_occ16(occ, i) & lanes);
    __m512 xv = _mm512_maskz_loadu_ps(lanes, x + i);
    if (bits == 1) {
        /* level 1 is +1, level 0 is -1: flip the sign of x where the bit is 0 */
        xv = _mm512_mask_xor_ps(xv, (__mmask16)~raw, xv, _mm512_set1_ps(-0.0f));
        return _mm512_mask_add_ps(acc, on, acc, xv);
    }
    __m512i idx = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)raw), spread));
    idx = _mm512_srlv_epi32(idx, shifts); /* permutexvar reads the low 4 bits */
    __m512 wv = _mm512_permutexvar_ps(idx, table);
    return _mm512_mask3_fmadd_ps(wv, xv, acc, on);
}

/* Four accumulators, group g of 16 inputs going to accumulator g % 4: a
 * fixed assignment, so the result depends only on the inputs. */
__attribute__((target(T512), always_inline)) static inline float
s_dot_bits(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
           const unsigned bits)
{
    const float *tab = sp_kern_table(bits);
    __m512 table = _mm512_loadu_ps(tab);
    __m512i shifts;
    __m128i spread;
    if (bits == 4) {
        shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        spread = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    } else {
        shifts = _mm512_set_epi32(6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0);
        spread = _mm_set_epi8(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    }
    size_t pbytes = (n * bits + 7) / 8;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t full = n / 64 * 64;
    /* Whole blocks of 64: one occupancy word, 8 * bits bytes of levels, no masks. */
    for (size_t i = 0; i < full; i += 64) {
        uint64_t on = occ == NULL ? ~0ull : occ[i / 64];
        uint64_t raw[4];
        memcpy(raw, packed + i * bits / 8, 8 * bits);
        __m512 xv[4];
        for (int g = 0; g < 4; g++) {
            xv[g] = _mm512_loadu_ps(x + i + 16 * g);
        }
        __m512 part[4];
        if (bits == 1) {
            for (int g = 0; g < 4; g++) {
                __mmask16 neg = (__mmask16) ~(raw[0] >> (16 * g));
                __m512 sx = _mm512_mask_xor_ps(xv[g], neg, xv[g], _mm512_set1_ps(-0.0f));
                part[g] = _mm512_maskz_mov_ps((__mmask16)(on >> (16 * g)), sx);
            }
            a0 = _mm512_add_ps(a0, part[0]);
            a1 = _mm512_add_ps(a1, part[1]);
            a2 = _mm512_add_ps(a2, part[2]);
            a3 = _mm512_add_ps(a3, part[3]);
        } else {
            for (int g = 0; g < 4; g++) {
                uint64_t r = bits == 4 ? raw[g] : raw[g / 2] >> (32 * (g & 1));
                __m128i sp = _mm_shuffle_epi8(_mm_cvtsi64_si128((long long)r), spread);
                __m512i idx = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(sp), shifts);
                part[g] = _mm512_maskz_mov_ps((__mmask16)(on >> (16 * g)),
                                              _mm512_permutexvar_ps(idx, table));
            }
            a0 = _mm512_fmadd_ps(part[0], xv[0], a0);
            a1 = _mm512_fmadd_ps(part[1], xv[1], a1);
            a2 = _mm512_fmadd_ps(part[2], xv[2], a2);
            a3 = _mm512_fmadd_ps(part[3], xv[3], a3);
        }
    }
    for (size_t i = full; i < n; i += 64) {
        a0 = s_dot16(a0, packed, pbytes, occ, x, n, i, bits, table, shifts, spread);
        if (i + 16 < n) {
            a1 = s_dot16(a1, packed, pbytes, occ, x, n, i + 16, bits, table, shifts, spread);
        }
        if (i + 32 < n) {
            a2 = s_dot16(a2, packed, pbytes, occ, x, n, i + 32, bits, table, shifts, spread);
        }
        if (i + 48 < n) {
            a3 = s_dot16(a3, packed, pbytes, occ, x, n, i + 48, bits, table, shifts, spread);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target(T512))) float sp_kern_dot_packed_avx512(const uint8_t *packed,
                                                              const uint64_t *occ, const float *x,
                                                              size_t n, unsigned bits)
{
    switch (bits) {
    case 1:
        return s_dot_bits(packed, occ, x, n, 1);
    case 2:
        return s_dot_bits(packed, occ, x, n, 2);
    default:
        return s_dot_bits(packed, occ, x, n, 4);
    }
}

/* ---- 2. learn, quantize, unpack ---------------------------------------- */

/* Levels of 16 clamped weights, exactly as the ref's s_nearest_level. */
__attribute__((target(T512))) static inline __m512i s_levels16(__m512 w, float m)
{
    __m512 t = _mm512_mul_ps(_mm512_add_ps(w, _mm512_set1_ps(1.0f)), _mm512_set1_ps(0.5f * m));
    t = _mm512_add_ps(t, _mm512_set1_ps(0.5f));
    t = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), _mm512_set1_ps(m));
    return _mm512_cvttps_epi32(t);
}

/* NaN -> 0, then clamp to [-1, 1], as the ref's s_clamp1. */
__attribute__((target(T512))) static inline __m512 s_clamp16(__m512 w)
{
    w = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(w, w, _CMP_ORD_Q), w);
    return _mm512_min_ps(_mm512_max_ps(w, _mm512_set1_ps(-1.0f)), _mm512_set1_ps(1.0f));
}

/* Quantizes 16 clamped weights i..i+15 (i a multiple of 16) into the packed
 * run and, when occ is not NULL, their occupancy bits. Returns how many are present. */
__attribute__((target(T512))) static inline unsigned
s_quant16(__m512 w, size_t i, unsigned bits, float thr, uint8_t *packed, uint64_t *occ)
{
    __m512i lv = s_levels16(w, (float)((1u << bits) - 1u));
    __mmask16 pres = _mm512_cmp_ps_mask(_mm512_abs_ps(w), _mm512_set1_ps(thr), _CMP_GE_OQ);
    if (bits == 4) {
        __m128i by = _mm512_cvtepi32_epi8(lv);
        uint64_t lo = (uint64_t)_mm_cvtsi128_si64(by);
        uint64_t hi = (uint64_t)_mm_extract_epi64(by, 1);
        uint64_t p64 =
            _pext_u64(lo, 0x0F0F0F0F0F0F0F0Full) | (_pext_u64(hi, 0x0F0F0F0F0F0F0F0Full) << 32);
        memcpy(packed + i / 2, &p64, 8);
    } else if (bits == 2) {
        __m128i by = _mm512_cvtepi32_epi8(lv);
        uint64_t lo = (uint64_t)_mm_cvtsi128_si64(by);
        uint64_t hi = (uint64_t)_mm_extract_epi64(by, 1);
        uint32_t p32 = (uint32_t)(_pext_u64(lo, 0x0303030303030303ull) |
                                  (_pext_u64(hi, 0x0303030303030303ull) << 16));
        memcpy(packed + i / 4, &p32, 4);
    } else {
        uint16_t p16 = (uint16_t)_mm512_cmpgt_epi32_mask(lv, _mm512_setzero_si512());
        memcpy(packed + i / 8, &p16, 2);
    }
    if (occ != NULL) {
        uint64_t word = occ[i >> 6];
        word &= ~(0xFFFFull << (i & 63));
        word |= (uint64_t)pres << (i & 63);
        occ[i >> 6] = word;
    }
    return (unsigned)__builtin_popcount(pres);
}

__attribute__((target(T512))) size_t
sp_kern_learn_packed_avx512(float *master, uint8_t *packed, uint64_t *occ, const float *x, size_t n,
                            unsigned bits, float rate_err, float presence_threshold)
{
    __m512 neg_re = _mm512_set1_ps(-rate_err);
    size_t full = n / 16 * 16;
    size_t n_present = 0;
    for (size_t i = 0; i < full; i += 16) {
        __m512 w = _mm512_fmadd_ps(neg_re, _mm512_loadu_ps(x + i), _mm512_loadu_ps(master + i));
        w = s_clamp16(w);
        _mm512_storeu_ps(master + i, w);
        n_present += s_quant16(w, i, bits, presence_threshold, packed, occ);
    }
    for (size_t i = full; i < n; i++) {
        float w = fmaf(-rate_err, x[i], master[i]);
        master[i] = w >= 1.0f ? 1.0f : w <= -1.0f ? -1.0f : (w == w ? w : 0.0f);
    }
    n_present += sp_kern_quantize_range_ref(master, full, n, bits, presence_threshold, packed, occ);
    return n_present;
}

__attribute__((target(T512))) size_t sp_kern_quantize_row_avx512(const float *w, size_t n,
                                                                 unsigned bits,
                                                                 float presence_threshold,
                                                                 uint8_t *packed, uint64_t *occ)
{
    size_t full = n / 16 * 16;
    size_t n_present = 0;
    for (size_t i = 0; i < full; i += 16) {
        __m512 v = s_clamp16(_mm512_loadu_ps(w + i));
        n_present += s_quant16(v, i, bits, presence_threshold, packed, occ);
    }
    return n_present +
           sp_kern_quantize_range_ref(w, full, n, bits, presence_threshold, packed, occ);
}

/* out[i] = value(level_i) * scale, absent 0: the table lookup of the dot
 * kernel, then one multiply (skipped when scale is exactly 1, a no-op). */
__attribute__((target(T512))) void sp_kern_unpack_row_avx512(const uint8_t *packed,
                                                             const uint64_t *occ, size_t n,
                                                             unsigned bits, float scale, float *out)
{
    const float *tab = sp_kern_table(bits);
    __m512 table = _mm512_loadu_ps(tab), sv = _mm512_set1_ps(scale);
    int scaled = scale != 1.0f;
    __m512i shifts;
    __m128i spread;
    if (bits == 4) {
        shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        spread = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    } else if (bits == 2) {
        shifts = _mm512_set_epi32(6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0);
        spread = _mm_set_epi8(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    } else {
        shifts = _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0);
        spread = _mm_set_epi8(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    }
    /* table lookups read index bits 0..3: at 1 and 2 bits the table repeats */
    size_t pbytes = (n * bits + 7) / 8;
    for (size_t i = 0; i < n; i += 16) {
        size_t rem = n - i;
        __mmask16 lanes = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1u);
        size_t at = i * bits / 8;
        size_t nb = pbytes - at; /* bytes past the group are ignored */
        __m128i raw = _mm_cvtsi64_si128((long long)s_load_le(packed + at, nb));
        __m512i idx = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(raw, spread));
        idx = _mm512_srlv_epi32(idx, shifts);
        __m512 wv = _mm512_permutexvar_ps(idx, table);
        if (scaled) {
            wv = _mm512_mul_ps(wv, sv);
        }
        wv = _mm512_maskz_mov_ps((__mmask16)s_occ16(occ, i), wv);
        _mm512_mask_storeu_ps(out + i, lanes, wv);
    }
}

/* Integer levels 2L - m (absent 0) as int8, 16 weights a step. */
__attribute__((target(T512))) void sp_kern_unpack_row_s8_avx512(const uint8_t *packed,
                                                                const uint64_t *occ, size_t n,
                                                                unsigned bits, int8_t *out)
{
    __m512i shifts;
    __m128i spread;
    if (bits == 4) {
        shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        spread = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    } else if (bits == 2) {
        shifts = _mm512_set_epi32(6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0);
        spread = _mm_set_epi8(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    } else {
        shifts = _mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0);
        spread = _mm_set_epi8(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    }
    __m512i m = _mm512_set1_epi32((int)((1u << bits) - 1u));
    size_t pbytes = (n * bits + 7) / 8;
    for (size_t i = 0; i < n; i += 16) {
        size_t rem = n - i;
        __mmask16 lanes = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1u);
        size_t at = i * bits / 8;
        __m128i raw = _mm_cvtsi64_si128((long long)s_load_le(packed + at, pbytes - at));
        __m512i lv = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(raw, spread));
        lv = _mm512_and_si512(_mm512_srlv_epi32(lv, shifts), m);
        __m512i v = _mm512_sub_epi32(_mm512_add_epi32(lv, lv), m);
        v = _mm512_maskz_mov_epi32((__mmask16)s_occ16(occ, i), v);
        _mm_mask_storeu_epi8(out + i, lanes, _mm512_cvtepi32_epi8(v));
    }
}

/* ---- 4. axpy-shaped GEMM (dW = G^T X, dX = G W) -------------------------
 * C[m][j] (+)= sum over k of A(m, k) * Bm[k][j]: one fma chain per element in
 * k order starting from 0, exactly as the ref. Tiles are MR rows by NV
 * vectors of 16 columns, all accumulators in registers. Rows k of Bm that are
 * zero over a tile's columns add exactly nothing (finite A), so each column
 * block first lists the k that matter and the tiles loop over that list. */

#define S_MR 6

__attribute__((target(T512), always_inline)) static inline void
s_axpy_tile(const uint32_t *klist, size_t nk, const float *A, size_t a_rs, size_t a_ks,
            const float *Bm, size_t ldb, float *C, size_t ldc, size_t m, size_t j, const size_t mr,
            const size_t nv, __mmask16 last, int acc_into)
{
    __m512 acc[S_MR][4];
#pragma GCC unroll 6
    for (size_t r = 0; r < mr; r++) {
#pragma GCC unroll 4
        for (size_t v = 0; v < nv; v++) {
            acc[r][v] = _mm512_setzero_ps();
        }
    }
    const float *arow = A + m * a_rs;
    for (size_t t = 0; t < nk; t++) {
        size_t k = klist[t];
        const float *brow = Bm + k * ldb + j;
        __m512 bv[4];
#pragma GCC unroll 4
        for (size_t v = 0; v < nv; v++) {
            bv[v] = v + 1 < nv ? _mm512_loadu_ps(brow + 16 * v)
                               : _mm512_maskz_loadu_ps(last, brow + 16 * v);
        }
        const float *ak = arow + k * a_ks;
#pragma GCC unroll 6
        for (size_t r = 0; r < mr; r++) {
            __m512 a = _mm512_set1_ps(ak[r * a_rs]);
#pragma GCC unroll 4
            for (size_t v = 0; v < nv; v++) {
                acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 6
    for (size_t r = 0; r < mr; r++) {
        float *crow = C + (m + r) * ldc + j;
#pragma GCC unroll 4
        for (size_t v = 0; v < nv; v++) {
            __mmask16 k = v + 1 < nv ? (__mmask16)0xFFFF : last;
            __m512 out = acc[r][v];
            if (acc_into) {
                out = _mm512_add_ps(_mm512_maskz_loadu_ps(k, crow + 16 * v), out);
            }
            _mm512_mask_storeu_ps(crow + 16 * v, k, out);
        }
    }
}

#define S_TILE_NV(MR)                                                                              \
    switch (nv) {                                                                                  \
    case 1:                                                                                        \
        s_axpy_tile(klist, nk, A, a_rs, a_ks, Bm, ldb, C, ldc, m, j, MR, 1, last, acc);            \
        break;                                                                                     \
    case 2:                                                                                        \
        s_axpy_tile(klist, nk, A, a_rs, a_ks, Bm, ldb, C, ldc, m, j, MR, 2, last, acc);            \
        break;                                                                                     \
    case 3:                                                                                        \
        s_axpy_tile(klist, nk, A, a_rs, a_ks, Bm, ldb, C, ldc, m, j, MR, 3, last, acc);            \
        break;                                                                                     \
    default:                                                                                       \
        s_axpy_tile(klist, nk, A, a_rs, a_ks, Bm, ldb, C, ldc, m, j, MR, 4, last, acc);            \
        break;                                                                                     \
    }

__attribute__((target(T512))) static void s_axpy_block(const uint32_t *klist, size_t nk,
                                                       const float *A, size_t a_rs, size_t a_ks,
                                                       const float *Bm, size_t ldb, float *C,
                                                       size_t ldc, size_t m, size_t mr, size_t j,
                                                       size_t nv, __mmask16 last, int acc)
{
    switch (mr) {
    case 1:
        S_TILE_NV(1);
        break;
    case 2:
        S_TILE_NV(2);
        break;
    case 3:
        S_TILE_NV(3);
        break;
    case 4:
        S_TILE_NV(4);
        break;
    case 5:
        S_TILE_NV(5);
        break;
    default:
        S_TILE_NV(6);
        break;
    }
}

__attribute__((target(T512))) void sp_kern_axpy_avx512(size_t K, const float *A, size_t a_rs,
                                                       size_t a_ks, const float *Bm, size_t ldb,
                                                       float *C, size_t ldc, size_t m0, size_t m1,
                                                       size_t j0, size_t j1, int acc)
{
    uint32_t kbuf[1024];
    uint32_t *klist = K <= 1024 ? kbuf : malloc(K * sizeof *klist);
    for (size_t j = j0; j < j1; j += 64) {
        size_t w = j1 - j < 64 ? j1 - j : 64;
        size_t nv = (w + 15) / 16;
        __mmask16 last = (w % 16) ? (__mmask16)((1u << (w % 16)) - 1u) : (__mmask16)0xFFFF;
        size_t nk = 0;
        if (klist != NULL) {
            for (size_t k = 0; k < K; k++) {
                const float *brow = Bm + k * ldb + j;
                __mmask16 nz = 0;
                for (size_t v = 0; v < nv; v++) {
                    __mmask16 lk = v + 1 < nv ? (__mmask16)0xFFFF : last;
                    __m512 b = _mm512_maskz_loadu_ps(lk, brow + 16 * v);
                    nz |= _mm512_cmp_ps_mask(b, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                }
                klist[nk] = (uint32_t)k;
                nk += nz != 0;
            }
        }
        if (klist == NULL) {
            /* No memory for the list: fall back to the ref order, one element at a time. */
            for (size_t m = m0; m < m1; m++) {
                for (size_t jj = j; jj < j + w; jj++) {
                    float s = 0.0f;
                    for (size_t k = 0; k < K; k++) {
                        s = fmaf(A[m * a_rs + k * a_ks], Bm[k * ldb + jj], s);
                    }
                    C[m * ldc + jj] = acc ? C[m * ldc + jj] + s : s;
                }
            }
            continue;
        }
        for (size_t m = m0; m < m1; m += S_MR) {
            size_t mr = m1 - m < S_MR ? m1 - m : S_MR;
            s_axpy_block(klist, nk, A, a_rs, a_ks, Bm, ldb, C, ldc, m, mr, j, nv, last, acc);
        }
    }
    if (klist != kbuf) {
        free(klist);
    }
}

/* ---- 4. S = X W^T (dot-shaped) ------------------------------------------
 * Each S[b][o] is a 16-lane fma chain over i (lane l takes i = l mod 16; the
 * tail loads zeros in the lanes past n_in), then the lanes are summed in the
 * canonical pairwise order of sp_kern_dot16 (not _mm512_reduce_add_ps, whose
 * order is the compiler's choice). Tiles of S_XB samples by S_XO neurons share their
 * loads; edge elements go through a 1 x 1 tile with the same arithmetic. */

/* Lane sum in the canonical order: l + (l + 8), then + 4, then pairs (0,2),
 * (1,3), then the two results. */
__attribute__((target(T512), always_inline)) static inline float s_hsum16_canon(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 t = _mm256_add_ps(hi, lo);
    __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    float a[4];
    _mm_storeu_ps(a, u);
    return (a[0] + a[2]) + (a[1] + a[3]);
}

#ifndef S_XB
#define S_XB 4
#endif
#ifndef S_XO
#define S_XO 4
#endif

__attribute__((target(T512), always_inline)) static inline void
s_xwt_tile(size_t n_in, size_t n_out, const float *X, const float *W, float *S, size_t b, size_t o,
           const size_t br, const size_t orr)
{
    __m512 acc[S_XB][S_XO];
#pragma GCC unroll 8
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 8
        for (size_t c = 0; c < orr; c++) {
            acc[r][c] = _mm512_setzero_ps();
        }
    }
    const float *xr = X + b * n_in, *wr = W + o * n_in;
    size_t i = 0;
    for (; i + 16 <= n_in; i += 16) {
        __m512 xv[S_XB];
#pragma GCC unroll 8
        for (size_t r = 0; r < br; r++) {
            xv[r] = _mm512_loadu_ps(xr + r * n_in + i);
        }
#pragma GCC unroll 8
        for (size_t c = 0; c < orr; c++) {
            __m512 wv = _mm512_loadu_ps(wr + c * n_in + i);
#pragma GCC unroll 8
            for (size_t r = 0; r < br; r++) {
                acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
            }
        }
    }
    if (i < n_in) {
        __mmask16 lanes = (__mmask16)((1u << (n_in - i)) - 1u);
        __m512 xv[S_XB];
#pragma GCC unroll 8
        for (size_t r = 0; r < br; r++) {
            xv[r] = _mm512_maskz_loadu_ps(lanes, xr + r * n_in + i);
        }
#pragma GCC unroll 8
        for (size_t c = 0; c < orr; c++) {
            __m512 wv = _mm512_maskz_loadu_ps(lanes, wr + c * n_in + i);
#pragma GCC unroll 8
            for (size_t r = 0; r < br; r++) {
                acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
            }
        }
    }
#pragma GCC unroll 8
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 8
        for (size_t c = 0; c < orr; c++) {
            S[(b + r) * n_out + o + c] = s_hsum16_canon(acc[r][c]);
        }
    }
}

__attribute__((target(T512))) void sp_kern_xwt_avx512(size_t n_in, size_t n_out, const float *X,
                                                      const float *W, float *S, size_t b0,
                                                      size_t b1, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o += S_XO) {
        size_t orr = o1 - o < S_XO ? o1 - o : S_XO;
        for (size_t b = b0; b < b1; b += S_XB) {
            size_t br = b1 - b < S_XB ? b1 - b : S_XB;
            if (br == S_XB && orr == S_XO) {
                s_xwt_tile(n_in, n_out, X, W, S, b, o, S_XB, S_XO);
            } else if (br == S_XB) {
                for (size_t c = 0; c < orr; c++) {
                    s_xwt_tile(n_in, n_out, X, W, S, b, o + c, S_XB, 1);
                }
            } else {
                for (size_t r = 0; r < br; r++) {
                    for (size_t c = 0; c < orr; c++) {
                        s_xwt_tile(n_in, n_out, X, W, S, b + r, o + c, 1, 1);
                    }
                }
            }
        }
    }
}

/* ---- 4b. u8 x s8 with VNNI ----------------------------------------------
 * vpdpbusd adds four u8*s8 products per int32 lane without saturation; the
 * integer sum is exact, so any lane order gives the ref's bits. */

__attribute__((target(T512VNNI), always_inline)) static inline void
s_u8s8_tile(size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8, float scale,
            const float *row_scale, float *S, size_t b, size_t o, const size_t br, const size_t orr)
{
    __m512i acc[4][4];
#pragma GCC unroll 4
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 4
        for (size_t c = 0; c < orr; c++) {
            acc[r][c] = _mm512_setzero_si512();
        }
    }
    const uint8_t *xr = X8 + b * n_in;
    const int8_t *wr = W8 + o * n_in;
    size_t i = 0;
    for (; i + 64 <= n_in; i += 64) {
        __m512i xv[4];
#pragma GCC unroll 4
        for (size_t r = 0; r < br; r++) {
            xv[r] = _mm512_loadu_si512((const void *)(xr + r * n_in + i));
        }
#pragma GCC unroll 4
        for (size_t c = 0; c < orr; c++) {
            __m512i wv = _mm512_loadu_si512((const void *)(wr + c * n_in + i));
#pragma GCC unroll 4
            for (size_t r = 0; r < br; r++) {
                acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xv[r], wv);
            }
        }
    }
    if (i < n_in) {
        __mmask64 lanes = ((__mmask64)1 << (n_in - i)) - 1;
        __m512i xv[4];
#pragma GCC unroll 4
        for (size_t r = 0; r < br; r++) {
            xv[r] = _mm512_maskz_loadu_epi8(lanes, xr + r * n_in + i);
        }
#pragma GCC unroll 4
        for (size_t c = 0; c < orr; c++) {
            __m512i wv = _mm512_maskz_loadu_epi8(lanes, wr + c * n_in + i);
#pragma GCC unroll 4
            for (size_t r = 0; r < br; r++) {
                acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xv[r], wv);
            }
        }
    }
#pragma GCC unroll 4
    for (size_t r = 0; r < br; r++) {
#pragma GCC unroll 4
        for (size_t c = 0; c < orr; c++) {
            float sc = row_scale != NULL ? row_scale[o + c] : scale;
            S[(b + r) * n_out + o + c] = (float)_mm512_reduce_add_epi32(acc[r][c]) * sc;
        }
    }
}

__attribute__((target(T512VNNI))) void
sp_kern_u8s8_avx512(size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8, float scale,
                    const float *row_scale, float *S, size_t b0, size_t b1, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o += 4) {
        size_t orr = o1 - o < 4 ? o1 - o : 4;
        for (size_t b = b0; b < b1; b += 4) {
            size_t br = b1 - b < 4 ? b1 - b : 4;
            if (br == 4 && orr == 4) {
                s_u8s8_tile(n_in, n_out, X8, W8, scale, row_scale, S, b, o, 4, 4);
            } else {
                for (size_t r = 0; r < br; r++) {
                    for (size_t c = 0; c < orr; c++) {
                        s_u8s8_tile(n_in, n_out, X8, W8, scale, row_scale, S, b + r, o + c, 1, 1);
                    }
                }
            }
        }
    }
}

/* Same operations as the ref: one multiply, round to nearest even, clamp
 * (NaN to 0), and the exactness check by one correctly rounded division. */
__attribute__((target(T512))) size_t sp_kern_inputs_to_u8_avx512(const float *X, size_t n,
                                                                 float divisor, uint8_t *X8)
{
    __m512 dv = _mm512_set1_ps(divisor), top = _mm512_set1_ps(255.0f);
    size_t inexact = 0;
    for (size_t k = 0; k < n; k += 16) {
        size_t rem = n - k;
        __mmask16 lanes = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(lanes, X + k);
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(x, dv),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __mmask16 pos = _mm512_cmp_ps_mask(q, _mm512_setzero_ps(), _CMP_GT_OQ);
        q = _mm512_maskz_mov_ps(pos, _mm512_min_ps(q, top));
        _mm_mask_storeu_epi8(X8 + k, lanes, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q)));
        __mmask16 bad = _mm512_cmp_ps_mask(_mm512_div_ps(q, dv), x, _CMP_NEQ_UQ);
        inexact += (size_t)__builtin_popcount((unsigned)(bad & lanes));
    }
    return inexact;
}
