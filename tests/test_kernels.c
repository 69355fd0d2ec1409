/* test_kernels: every SIMD variant of every kernel against its scalar ref
 * (ggml test-quantize-fns style, with named tolerances), on sizes with odd
 * tails, all bit widths and random occupancy; GEMM slices bit-identical for
 * any thread count. Buffers are allocated at their exact size so that
 * `make sanitize` catches any read past the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/kernels.h"
#include "common/kernels_simd.h"
#include "common/quant.h"
#include "common/rng.h"

/* Named tolerances. Dot-shaped sums differ from the ref's order only by
 * float rounding: at most n * eps * sum|terms| in theory, far less in practice. */
#define TOL_DOT_PER_TERM 1e-5 /* times n * max|w x| */
#define TOL_DOT16_PER_TERM 1e-6 /* canonical float dot vs double, times n */

static const size_t k_sizes[] = {1,  2,  7,   8,   15,  16,  17,  31,  33,  63,
                                 64, 65, 100, 127, 128, 129, 200, 255, 784, 1000};
#define N_SIZES (sizeof k_sizes / sizeof k_sizes[0])
static const unsigned k_bits[] = {1, 2, 4};
static const sp_kern_isa_t k_isas[] = {SP_KERN_REF, SP_KERN_AVX2, SP_KERN_AVX512};

static void *s_xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    assert_non_null(p);
    return p;
}

static void s_fill_bytes(sp_rng_t *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)sp_rng_next(r);
    }
}

/* Floats in [-1, 1); with probability `zeros` exactly 0 (like image pixels). */
static void s_fill_floats(sp_rng_t *r, float *p, size_t n, float zeros)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = sp_rng_float(r) < zeros ? 0.0f : sp_rng_float(r) * 2.0f - 1.0f;
    }
}

/* Occupancy: mode 0 all present (NULL), 1 random, 2 none, 3 mostly present. */
static uint64_t *s_make_occ(sp_rng_t *r, size_t n, int mode)
{
    if (mode == 0) {
        return NULL;
    }
    size_t words = (n + 63) / 64;
    uint64_t *occ = s_xmalloc(words * sizeof *occ);
    for (size_t w = 0; w < words; w++) {
        uint64_t a = sp_rng_next(r), b = sp_rng_next(r);
        occ[w] = mode == 1 ? a : mode == 2 ? 0 : (a | b);
    }
    return occ;
}

static void test_kernels_isa_names_and_ref_supported(void **state)
{
    (void)state;
    assert_true(sp_kern_isa_supported(SP_KERN_REF));
    assert_true(sp_kern_isa_supported(sp_kern_isa()));
    assert_string_equal(sp_kern_isa_name(SP_KERN_REF), "ref");
    assert_string_equal(sp_kern_isa_name(SP_KERN_AVX2), "avx2");
    assert_string_equal(sp_kern_isa_name(SP_KERN_AVX512), "avx512");
}

static void test_kernels_level_tables_match_formula(void **state)
{
    (void)state;
    for (size_t bi = 0; bi < 3; bi++) {
        unsigned bits = k_bits[bi], m = sp_quant_levels(bits);
        const float *t = sp_kern_table(bits);
        for (unsigned l = 0; l < 16; l++) {
            float want = sp_kern_level_value(l & m, bits);
            assert_memory_equal(&t[l], &want, sizeof want);
            /* and the quant module's value, to the bit */
            float q = sp_quant_value((uint8_t)(l & m), bits);
            assert_memory_equal(&q, &want, sizeof q);
        }
    }
}

static void test_kernels_dot_hand_computed(void **state)
{
    (void)state;
    /* 4 bits: levels 0, 15, 8, 3 -> -1, 1, 1/15, -9/15; weight 2 absent. */
    uint8_t packed[2] = {0x0 | (15 << 4), 8 | (3 << 4)};
    uint64_t occ = 0xBu; /* 1011: weights 0, 1, 3 */
    float x[4] = {0.5f, 2.0f, 100.0f, -1.0f};
    float want = -0.5f + 2.0f + 9.0f / 15.0f;
    for (size_t v = 0; v < 3; v++) {
        if (!sp_kern_isa_supported(k_isas[v])) {
            continue;
        }
        float got = sp_kern_dot_packed_isa(k_isas[v], packed, &occ, x, 4, 4);
        assert_float_equal(got, want, 1e-6);
    }
    /* 1 bit: 0b0101 -> +1 -1 +1 -1, all present. */
    uint8_t p1 = 0x5;
    float x1[4] = {1.0f, 2.0f, 4.0f, 8.0f};
    assert_float_equal(sp_kern_dot_packed(&p1, NULL, x1, 4, 1), 1 - 2 + 4 - 8, 0);
}

static void test_kernels_dot_matches_ref(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 11);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            size_t pb = sp_quant_packed_size(n, bits);
            uint8_t *packed = s_xmalloc(pb);
            float *x = s_xmalloc(n * sizeof *x);
            s_fill_bytes(&r, packed, pb);
            s_fill_floats(&r, x, n, 0.3f);
            for (int mode = 0; mode < 4; mode++) {
                uint64_t *occ = s_make_occ(&r, n, mode);
                float ref = sp_kern_dot_packed_ref(packed, occ, x, n, bits);
                for (size_t v = 1; v < 3; v++) {
                    if (!sp_kern_isa_supported(k_isas[v])) {
                        continue;
                    }
                    float got = sp_kern_dot_packed_isa(k_isas[v], packed, occ, x, n, bits);
                    float again = sp_kern_dot_packed_isa(k_isas[v], packed, occ, x, n, bits);
                    assert_memory_equal(&got, &again, sizeof got); /* deterministic */
                    assert_float_equal(got, ref, TOL_DOT_PER_TERM * (double)n);
                }
                if (mode == 2) {
                    assert_true(ref == 0.0f);
                }
                free(occ);
            }
            free(packed);
            free(x);
        }
    }
}

static void test_kernels_unpack_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 12);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            size_t pb = sp_quant_packed_size(n, bits);
            uint8_t *packed = s_xmalloc(pb);
            s_fill_bytes(&r, packed, pb);
            float *a = s_xmalloc(n * sizeof *a), *b = s_xmalloc(n * sizeof *b);
            int8_t *q = s_xmalloc(n);
            for (int mode = 0; mode < 3; mode++) {
                uint64_t *occ = s_make_occ(&r, n, mode);
                sp_kern_unpack_row_ref(packed, occ, n, bits, a);
                sp_kern_unpack_row(packed, occ, n, bits, b);
                assert_memory_equal(a, b, n * sizeof *a);
                sp_kern_unpack_row_s8_ref(packed, occ, n, bits, q);
                int8_t *q2 = s_xmalloc(n);
                sp_kern_unpack_row_s8(packed, occ, n, bits, q2);
                assert_memory_equal(q, q2, n);
                free(q2);
                float m = (float)sp_quant_levels(bits);
                for (size_t i = 0; i < n; i++) {
                    assert_float_equal((float)q[i] / m, a[i], 1e-6);
                    assert_true(a[i] >= -1.0f && a[i] <= 1.0f);
                }
                free(occ);
            }
            free(packed);
            free(a);
            free(b);
            free(q);
        }
    }
}

static void test_kernels_unpack_scaled_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 15);
    const float scales[4] = {1.0f, 0.37f / 100.0f, -2.5f, 0.0f};
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            size_t pb = sp_quant_packed_size(n, bits);
            uint8_t *packed = s_xmalloc(pb);
            s_fill_bytes(&r, packed, pb);
            float *a = s_xmalloc(n * sizeof *a), *b = s_xmalloc(n * sizeof *b);
            uint64_t *occ = s_make_occ(&r, n, 1);
            for (size_t k = 0; k < 4; k++) {
                sp_kern_unpack_row_scaled_ref(packed, occ, n, bits, scales[k], a);
                sp_kern_unpack_row_scaled(packed, occ, n, bits, scales[k], b);
                assert_memory_equal(a, b, n * sizeof *a);
                for (size_t v = 0; v < 3; v++) {
                    if (sp_kern_isa_supported(k_isas[v])) {
                        memset(b, 0xFF, n * sizeof *b);
                        sp_kern_unpack_row_scaled_isa(k_isas[v], packed, occ, n, bits, scales[k],
                                                      b);
                        assert_memory_equal(a, b, n * sizeof *a);
                    }
                }
                for (size_t i = 0; i < n; i++) {
                    if (!((occ[i / 64] >> (i % 64)) & 1u)) {
                        assert_true(a[i] == 0.0f && !signbit(a[i]));
                    }
                }
            }
            free(occ);
            free(packed);
            free(a);
            free(b);
        }
    }
}

static void test_kernels_quantize_row_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 16);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            size_t pb = sp_quant_packed_size(n, bits), words = (n + 63) / 64;
            float *w = s_xmalloc(n * sizeof *w);
            s_fill_floats(&r, w, n, 0.1f);
            for (size_t i = 0; i < n; i += 7) {
                w[i] *= 3.0f; /* out of range: clamped */
            }
            if (n > 5) {
                w[5] = NAN;
            }
            uint8_t *pa = s_xmalloc(pb), *pv = s_xmalloc(pb);
            uint64_t *oa = s_xmalloc(words * 8), *ov = s_xmalloc(words * 8);
            s_fill_bytes(&r, pa, pb);
            memcpy(pv, pa, pb);
            for (size_t k = 0; k < words; k++) {
                oa[k] = ov[k] = sp_rng_next(&r);
            }
            uint8_t *p0 = s_xmalloc(pb);
            uint64_t *o0 = s_xmalloc(words * 8);
            memcpy(p0, pa, pb);
            memcpy(o0, oa, words * 8);
            size_t na = sp_kern_quantize_row_ref(w, n, bits, 0.2f, pa, oa);
            for (size_t v = 0; v < 3; v++) {
                if (!sp_kern_isa_supported(k_isas[v])) {
                    continue;
                }
                memcpy(pv, p0, pb);
                memcpy(ov, o0, words * 8);
                size_t nv = sp_kern_quantize_row_isa(k_isas[v], w, n, bits, 0.2f, pv, ov);
                assert_int_equal(na, nv);
                assert_memory_equal(pa, pv, pb);
                assert_memory_equal(oa, ov, words * 8);
            }
            free(p0);
            free(o0);
            /* occ NULL: packed bits the same, count the same */
            memset(pv, 0, pb);
            memset(pa, 0, pb);
            assert_int_equal(sp_kern_quantize_row(w, n, bits, 0.2f, pv, NULL), na);
            sp_kern_quantize_row_ref(w, n, bits, 0.2f, pa, NULL);
            assert_memory_equal(pa, pv, pb);
            free(w);
            free(pa);
            free(pv);
            free(oa);
            free(ov);
        }
    }
}

static void test_kernels_quantize_row_levels(void **state)
{
    (void)state;
    float w[6] = {1.0f, -1.0f, 0.0f, 2.0f, -0.3f, NAN};
    uint8_t packed[3] = {0};
    uint64_t occ = 0;
    size_t present = sp_kern_quantize_row_ref(w, 6, 4, 0.25f, packed, &occ);
    /* levels: 15, 0, floor(7.5 + 0.5) = 8, 15 (clamped), floor(0.7*7.5+0.5) = 5, 0 (NaN -> 0 -> 8)
     */
    unsigned want[6] = {15, 0, 8, 15, 5, 8};
    for (size_t i = 0; i < 6; i++) {
        unsigned got = (packed[i / 2] >> (4 * (i % 2))) & 15u;
        assert_int_equal(got, want[i]);
    }
    assert_int_equal(present, 4); /* |w| >= 0.25: 1, -1, 2, -0.3 */
    assert_int_equal(occ, 0x1Bu);
    /* same levels as the quant module, and unpacked values equal to sp_quant_value */
    {
        sp_rng_t q;
        sp_rng_init(&q, 17);
        float ws[1000], vals[1000];
        uint8_t pk[500];
        for (size_t i = 0; i < 1000; i++) {
            ws[i] = sp_rng_float(&q) * 3.0f - 1.5f;
        }
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            sp_kern_quantize_row(ws, 1000, bits, 0.0f, pk, NULL);
            sp_kern_unpack_row(pk, NULL, 1000, bits, vals);
            for (size_t i = 0; i < 1000; i++) {
                uint8_t lq = sp_quant_level(ws[i], bits);
                assert_int_equal(sp_quant_get(pk, i, bits), lq);
                float vq = sp_quant_value(lq, bits);
                assert_memory_equal(&vals[i], &vq, sizeof vq);
            }
        }
    }
    /* round trip within one step at every width */
    sp_rng_t r;
    sp_rng_init(&r, 13);
    for (size_t bi = 0; bi < 3; bi++) {
        unsigned bits = k_bits[bi];
        float in[100], out[100];
        uint8_t p[64];
        s_fill_floats(&r, in, 100, 0.0f);
        assert_int_equal(sp_kern_quantize_row(in, 100, bits, 0.0f, p, NULL), 100);
        sp_kern_unpack_row(p, NULL, 100, bits, out);
        for (size_t i = 0; i < 100; i++) {
            assert_true(fabsf(out[i] - in[i]) <= 1.0f / (float)sp_quant_levels(bits) + 1e-6f);
        }
    }
}

static void test_kernels_learn_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 14);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        for (size_t bi = 0; bi < 3; bi++) {
            unsigned bits = k_bits[bi];
            size_t pb = sp_quant_packed_size(n, bits), words = (n + 63) / 64;
            float *x = s_xmalloc(n * sizeof *x), *m0 = s_xmalloc(n * sizeof *m0);
            s_fill_floats(&r, x, n, 0.2f);
            s_fill_floats(&r, m0, n, 0.0f);
            if (n > 3) {
                m0[3] = NAN;
            }
            uint8_t *p0 = s_xmalloc(pb);
            uint64_t *o0 = s_xmalloc(words * sizeof *o0);
            s_fill_bytes(&r, p0, pb);
            for (size_t w = 0; w < words; w++) {
                o0[w] = sp_rng_next(&r);
            }
            float rate_err = sp_rng_float(&r) * 0.5f - 0.25f, thr = 0.1f;
            float *mref = s_xmalloc(n * sizeof *mref);
            uint8_t *pref = s_xmalloc(pb);
            uint64_t *oref = s_xmalloc(words * sizeof *oref);
            memcpy(mref, m0, n * sizeof *m0);
            memcpy(pref, p0, pb);
            memcpy(oref, o0, words * sizeof *o0);
            size_t nref = sp_kern_learn_packed_ref(mref, pref, oref, x, n, bits, rate_err, thr);
            size_t count = 0;
            for (size_t i = 0; i < n; i++) {
                count += (oref[i / 64] >> (i % 64)) & 1u;
                assert_true(mref[i] >= -1.0f && mref[i] <= 1.0f);
            }
            assert_int_equal(count, nref);
            /* bits past n kept */
            if (n % 64) {
                uint64_t hi = ~0ull << (n % 64);
                assert_int_equal(oref[words - 1] & hi, o0[words - 1] & hi);
            }
            if ((n * bits) % 8) {
                uint8_t hi = (uint8_t)(0xFFu << ((n * bits) % 8));
                assert_int_equal(pref[pb - 1] & hi, p0[pb - 1] & hi);
            }
            for (size_t v = 1; v < 3; v++) {
                if (!sp_kern_isa_supported(k_isas[v])) {
                    continue;
                }
                float *mv = s_xmalloc(n * sizeof *mv);
                uint8_t *pv = s_xmalloc(pb);
                uint64_t *ov = s_xmalloc(words * sizeof *ov);
                memcpy(mv, m0, n * sizeof *m0);
                memcpy(pv, p0, pb);
                memcpy(ov, o0, words * sizeof *o0);
                size_t nv =
                    sp_kern_learn_packed_isa(k_isas[v], mv, pv, ov, x, n, bits, rate_err, thr);
                assert_int_equal(nv, nref);
                assert_memory_equal(mv, mref, n * sizeof *mv);
                assert_memory_equal(pv, pref, pb);
                assert_memory_equal(ov, oref, words * sizeof *ov);
                free(mv);
                free(pv);
                free(ov);
            }
            free(x);
            free(m0);
            free(p0);
            free(o0);
            free(mref);
            free(pref);
            free(oref);
        }
    }
}

/* GEMM shapes (B, n_in, n_out), with tails on every axis. */
static const size_t k_shapes[][3] = {{1, 1, 1},     {3, 5, 7},     {4, 16, 4},   {6, 64, 6},
                                     {7, 65, 9},    {13, 100, 10}, {8, 129, 33}, {64, 784, 128},
                                     {17, 200, 70}, {64, 128, 10}, {2, 1000, 3}, {1100, 20, 3}};
#define N_SHAPES (sizeof k_shapes / sizeof k_shapes[0])

typedef struct {
    size_t B, n_in, n_out;
    float *X, *W, *G;
} s_gemm_case_t;

static void s_case_init(s_gemm_case_t *c, sp_rng_t *r, size_t si)
{
    c->B = k_shapes[si][0];
    c->n_in = k_shapes[si][1];
    c->n_out = k_shapes[si][2];
    c->X = s_xmalloc(c->B * c->n_in * sizeof(float));
    c->W = s_xmalloc(c->n_out * c->n_in * sizeof(float));
    c->G = s_xmalloc(c->B * c->n_out * sizeof(float));
    s_fill_floats(r, c->X, c->B * c->n_in, 0.5f); /* half zeros, like pixels */
    s_fill_floats(r, c->W, c->n_out * c->n_in, 0.1f);
    s_fill_floats(r, c->G, c->B * c->n_out, 0.1f);
    /* whole zero rows and columns exercise the skipped-row lists */
    if (c->B > 2) {
        memset(c->X + c->n_in, 0, c->n_in * sizeof(float));
    }
    for (size_t b = 0; b < c->B; b++) {
        c->X[b * c->n_in] = 0.0f;
    }
}

static void s_case_fini(s_gemm_case_t *c)
{
    free(c->X);
    free(c->W);
    free(c->G);
}

static void test_kernels_dot16_close_to_double(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 20);
    float x[1000], w[1000];
    for (size_t n = 1; n <= 1000; n += 37) {
        double want = 0.0;
        for (size_t i = 0; i < n; i++) {
            x[i] = sp_rng_float(&r);
            w[i] = 2.0f * sp_rng_float(&r) - 1.0f;
            want += (double)x[i] * (double)w[i];
        }
        assert_float_equal(sp_kern_dot16(x, w, n), want, TOL_DOT16_PER_TERM * (double)n + 1e-7);
    }
}

static void test_kernels_gemm_xwt_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 21);
    for (size_t si = 0; si < N_SHAPES; si++) {
        s_gemm_case_t c;
        s_case_init(&c, &r, si);
        size_t ns = c.B * c.n_out;
        float *ref = s_xmalloc(ns * sizeof *ref), *got = s_xmalloc(ns * sizeof *got);
        sp_kern_gemm_xwt_ref(c.B, c.n_in, c.n_out, c.X, c.W, ref);
        for (size_t v = 0; v < 3; v++) {
            if (!sp_kern_isa_supported(k_isas[v])) {
                continue;
            }
            memset(got, 0xFF, ns * sizeof *got);
            sp_kern_gemm_xwt_isa(k_isas[v], c.B, c.n_in, c.n_out, c.X, c.W, got, 0, 1);
            /* Every variant sums in the canonical order: same bits on every CPU. */
            assert_memory_equal(got, ref, ns * sizeof *got);
        }
        free(ref);
        free(got);
        s_case_fini(&c);
    }
}

static void test_kernels_gemm_gtx_acc_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 22);
    for (size_t si = 0; si < N_SHAPES; si++) {
        s_gemm_case_t c;
        s_case_init(&c, &r, si);
        size_t nw = c.n_out * c.n_in;
        float *init = s_xmalloc(nw * sizeof *init);
        float *ref = s_xmalloc(nw * sizeof *ref), *got = s_xmalloc(nw * sizeof *got);
        s_fill_floats(&r, init, nw, 0.0f);
        memcpy(ref, init, nw * sizeof *ref);
        sp_kern_gemm_gtx_acc_ref(c.B, c.n_in, c.n_out, c.G, c.X, ref);
        for (size_t v = 0; v < 3; v++) {
            if (!sp_kern_isa_supported(k_isas[v])) {
                continue;
            }
            memcpy(got, init, nw * sizeof *got);
            sp_kern_gemm_gtx_acc_isa(k_isas[v], c.B, c.n_in, c.n_out, c.G, c.X, got, 0, 1);
            assert_memory_equal(got, ref, nw * sizeof *got);
        }
        free(init);
        free(ref);
        free(got);
        s_case_fini(&c);
    }
}

static void test_kernels_gemm_gw_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 23);
    for (size_t si = 0; si < N_SHAPES; si++) {
        s_gemm_case_t c;
        s_case_init(&c, &r, si);
        size_t nx = c.B * c.n_in;
        float *ref = s_xmalloc(nx * sizeof *ref), *got = s_xmalloc(nx * sizeof *got);
        sp_kern_gemm_gw_ref(c.B, c.n_in, c.n_out, c.G, c.W, ref);
        for (size_t v = 0; v < 3; v++) {
            if (!sp_kern_isa_supported(k_isas[v])) {
                continue;
            }
            memset(got, 0xFF, nx * sizeof *got);
            sp_kern_gemm_gw_isa(k_isas[v], c.B, c.n_in, c.n_out, c.G, c.W, got, 0, 1);
            assert_memory_equal(got, ref, nx * sizeof *got);
        }
        free(ref);
        free(got);
        s_case_fini(&c);
    }
}

/* Runs every slice ith of nth in turn (as threads would) for one variant. */
static void s_run_slices(sp_kern_isa_t isa, int which, const s_gemm_case_t *c, float *out, int nth)
{
    for (int ith = 0; ith < nth; ith++) {
        if (which == 0) {
            sp_kern_gemm_xwt_isa(isa, c->B, c->n_in, c->n_out, c->X, c->W, out, ith, nth);
        } else if (which == 1) {
            sp_kern_gemm_gtx_acc_isa(isa, c->B, c->n_in, c->n_out, c->G, c->X, out, ith, nth);
        } else {
            sp_kern_gemm_gw_isa(isa, c->B, c->n_in, c->n_out, c->G, c->W, out, ith, nth);
        }
    }
}

static void test_kernels_gemm_thread_count_invariant(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 24);
    for (size_t si = 0; si < N_SHAPES; si++) {
        s_gemm_case_t c;
        s_case_init(&c, &r, si);
        size_t sizes[3] = {c.B * c.n_out, c.n_out * c.n_in, c.B * c.n_in};
        for (int which = 0; which < 3; which++) {
            size_t n = sizes[which];
            float *one = s_xmalloc(n * sizeof(float)), *many = s_xmalloc(n * sizeof(float));
            for (size_t v = 0; v < 3; v++) {
                if (!sp_kern_isa_supported(k_isas[v])) {
                    continue;
                }
                memset(one, 0, n * sizeof(float));
                s_run_slices(k_isas[v], which, &c, one, 1);
                for (int nth = 2; nth <= 5; nth++) {
                    memset(many, 0, n * sizeof(float));
                    s_run_slices(k_isas[v], which, &c, many, nth);
                    assert_memory_equal(one, many, n * sizeof(float));
                }
            }
            /* the OpenMP wrappers agree with the slices */
            memset(many, 0, n * sizeof(float));
            if (which == 0) {
                sp_kern_gemm_xwt_omp(c.B, c.n_in, c.n_out, c.X, c.W, many, 2);
            } else if (which == 1) {
                sp_kern_gemm_gtx_acc_omp(c.B, c.n_in, c.n_out, c.G, c.X, many, 2);
            } else {
                sp_kern_gemm_gw_omp(c.B, c.n_in, c.n_out, c.G, c.W, many, 2);
            }
            memset(one, 0, n * sizeof(float));
            s_run_slices(sp_kern_isa(), which, &c, one, 1);
            assert_memory_equal(one, many, n * sizeof(float));
            free(one);
            free(many);
        }
        s_case_fini(&c);
    }
}

static void test_kernels_gemm_u8s8_matches_ref_exactly(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 25);
    for (size_t si = 0; si < N_SHAPES; si++) {
        size_t B = k_shapes[si][0], n_in = k_shapes[si][1], n_out = k_shapes[si][2];
        uint8_t *X8 = s_xmalloc(B * n_in);
        int8_t *W8 = s_xmalloc(n_out * n_in);
        s_fill_bytes(&r, X8, B * n_in);
        for (size_t k = 0; k < n_out * n_in; k++) {
            /* full int8 range, including -128 */
            W8[k] = (int8_t)(int)(sp_rng_below(&r, 256) - 128);
        }
        for (size_t k = 0; k < B * n_in; k += 3) {
            X8[k] = 0;
        }
        X8[0] = 255;
        size_t ns = B * n_out;
        float *ref = s_xmalloc(ns * sizeof *ref), *got = s_xmalloc(ns * sizeof *got);
        sp_kern_gemm_u8s8_ref(B, n_in, n_out, X8, W8, 1.0f / 255.0f, 1.0f / 15.0f, ref);
        for (int nth = 1; nth <= 3; nth++) {
            memset(got, 0xFF, ns * sizeof *got);
            for (int ith = 0; ith < nth; ith++) {
                sp_kern_gemm_u8s8(B, n_in, n_out, X8, W8, 1.0f / 255.0f, 1.0f / 15.0f, got, ith,
                                  nth);
            }
            assert_memory_equal(got, ref, ns * sizeof *got);
        }
        memset(got, 0xFF, ns * sizeof *got);
        sp_kern_gemm_u8s8_omp(B, n_in, n_out, X8, W8, 1.0f / 255.0f, 1.0f / 15.0f, got, 2);
        assert_memory_equal(got, ref, ns * sizeof *got);
        /* and it is the float GEMM of the dequantized values, up to rounding */
        if (n_in == 784) {
            float *Xf = s_xmalloc(B * n_in * sizeof *Xf), *Wf = s_xmalloc(n_out * n_in * 4);
            for (size_t k = 0; k < B * n_in; k++) {
                Xf[k] = (float)X8[k] / 255.0f;
            }
            for (size_t k = 0; k < n_out * n_in; k++) {
                Wf[k] = (float)W8[k] / 15.0f;
            }
            sp_kern_gemm_xwt_ref(B, n_in, n_out, Xf, Wf, got);
            for (size_t k = 0; k < ns; k++) {
                assert_float_equal(got[k], ref[k], 1e-4 * (double)n_in);
            }
            free(Xf);
            free(Wf);
        }
        /* per-neuron scales */
        float *rs = s_xmalloc(n_out * sizeof *rs);
        for (size_t o = 0; o < n_out; o++) {
            rs[o] = (sp_rng_float(&r) - 0.5f) / 255.0f;
        }
        sp_kern_gemm_u8s8_rows_ref(B, n_in, n_out, X8, W8, rs, ref);
        for (int nth = 1; nth <= 3; nth++) {
            memset(got, 0xFF, ns * sizeof *got);
            for (int ith = 0; ith < nth; ith++) {
                sp_kern_gemm_u8s8_rows(B, n_in, n_out, X8, W8, rs, got, ith, nth);
            }
            assert_memory_equal(got, ref, ns * sizeof *got);
        }
        free(rs);
        free(X8);
        free(W8);
        free(ref);
        free(got);
    }
}

static void test_kernels_inputs_to_u8_exact_for_pixels(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 26);
    for (size_t s = 0; s < N_SIZES; s++) {
        size_t n = k_sizes[s];
        float *x = s_xmalloc(n * sizeof *x);
        uint8_t *a = s_xmalloc(n), *b = s_xmalloc(n), *px = s_xmalloc(n);
        /* pixels as the dataset stores them: exact */
        for (size_t k = 0; k < n; k++) {
            px[k] = (uint8_t)(k < 256 ? k : sp_rng_below(&r, 256));
            x[k] = (float)px[k] / 255.0f;
        }
        assert_int_equal(sp_kern_inputs_to_u8(x, n, 255.0f, b), 0);
        assert_memory_equal(b, px, n);
        /* anything else: same bytes and count as the ref */
        s_fill_floats(&r, x, n, 0.3f);
        x[0] = NAN;
        if (n > 2) {
            x[1] = 3.0f;
            x[2] = 1.0f;
        }
        size_t ca = sp_kern_inputs_to_u8_ref(x, n, 255.0f, a);
        size_t cb = sp_kern_inputs_to_u8(x, n, 255.0f, b);
        assert_int_equal(ca, cb);
        assert_memory_equal(a, b, n);
        assert_int_equal(a[0], 0);
        if (n > 2) {
            assert_int_equal(a[1], 255);
            assert_int_equal(a[2], 255);
        }
        free(x);
        free(a);
        free(b);
        free(px);
    }
}

static void test_kernels_empty_sizes_are_harmless(void **state)
{
    (void)state;
    float x[1] = {1.0f}, w[1] = {0.5f}, out[4] = {7.0f, 7.0f, 7.0f, 7.0f};
    uint8_t p[1] = {0xAB};
    uint64_t occ[1] = {0x5};
    assert_true(sp_kern_dot_packed(p, occ, x, 0, 4) == 0.0f);
    assert_int_equal(sp_kern_learn_packed(w, p, occ, x, 0, 4, 0.1f, 0.0f), 0);
    assert_int_equal(p[0], 0xAB);
    assert_int_equal(occ[0], 0x5);
    /* no inputs: S = 0; no samples: dW unchanged */
    sp_kern_gemm_xwt(2, 0, 2, x, w, out, 0, 1);
    for (int k = 0; k < 4; k++) {
        assert_true(out[k] == 0.0f);
    }
    out[0] = 3.0f;
    sp_kern_gemm_gtx_acc(0, 1, 1, x, x, out, 0, 1);
    assert_true(out[0] == 3.0f);
    sp_kern_gemm_gw(1, 1, 0, x, w, out, 0, 1);
    assert_true(out[0] == 0.0f);
}

static void test_kernels_split_covers_exactly_once(void **state)
{
    (void)state;
    for (size_t n = 0; n < 70; n++) {
        for (size_t align = 1; align <= 16; align *= 4) {
            for (int nth = 1; nth <= 5; nth++) {
                size_t next = 0;
                for (int ith = 0; ith < nth; ith++) {
                    size_t lo, hi;
                    sp_kern_split(n, align, ith, nth, &lo, &hi);
                    assert_int_equal(lo, next);
                    assert_true(hi >= lo);
                    assert_true(lo % align == 0 || lo == n);
                    next = hi;
                }
                assert_int_equal(next, n);
            }
        }
    }
}

/* The first NaN or infinity is found wherever it sits (a vector's first
 * lane, its last, the scalar tail), and the extreme finite values (largest,
 * smallest subnormal, negative zero) are not taken for one. */
static void test_kernels_first_nonfinite(void **state)
{
    (void)state;
    enum { N = 67 };
    float v[N];
    for (size_t i = 0; i < N; i++) {
        v[i] = (float)i - 30.0f;
    }
    v[3] = FLT_MAX;
    v[4] = -FLT_MAX;
    v[5] = FLT_TRUE_MIN;
    v[6] = -0.0f;
    assert_int_equal(sp_kern_first_nonfinite(v, N), N);
    assert_int_equal(sp_kern_first_nonfinite(v, 0), 0);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const size_t at[] = {0, 7, 8, 31, 63, 64, 66};
    for (size_t b = 0; b < 3; b++) {
        for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
            float keep = v[at[k]];
            v[at[k]] = bad[b];
            assert_int_equal(sp_kern_first_nonfinite(v, N), at[k]);
            assert_int_equal(sp_kern_first_nonfinite(v, at[k]), at[k]); /* not looked at */
            v[N - 1] = bad[b]; /* a later one does not hide the first */
            assert_int_equal(sp_kern_first_nonfinite(v, N), at[k]);
            v[N - 1] = (float)(N - 1) - 30.0f;
            v[at[k]] = keep;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_isa_names_and_ref_supported),
        cmocka_unit_test(test_kernels_level_tables_match_formula),
        cmocka_unit_test(test_kernels_dot_hand_computed),
        cmocka_unit_test(test_kernels_dot_matches_ref),
        cmocka_unit_test(test_kernels_unpack_matches_ref_exactly),
        cmocka_unit_test(test_kernels_unpack_scaled_matches_ref_exactly),
        cmocka_unit_test(test_kernels_quantize_row_matches_ref_exactly),
        cmocka_unit_test(test_kernels_quantize_row_levels),
        cmocka_unit_test(test_kernels_learn_matches_ref_exactly),
        cmocka_unit_test(test_kernels_dot16_close_to_double),
        cmocka_unit_test(test_kernels_gemm_xwt_matches_ref_exactly),
        cmocka_unit_test(test_kernels_gemm_gtx_acc_matches_ref_exactly),
        cmocka_unit_test(test_kernels_gemm_gw_matches_ref_exactly),
        cmocka_unit_test(test_kernels_gemm_thread_count_invariant),
        cmocka_unit_test(test_kernels_gemm_u8s8_matches_ref_exactly),
        cmocka_unit_test(test_kernels_inputs_to_u8_exact_for_pixels),
        cmocka_unit_test(test_kernels_empty_sizes_are_harmless),
        cmocka_unit_test(test_kernels_split_covers_exactly_once),
        cmocka_unit_test(test_kernels_first_nonfinite),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
