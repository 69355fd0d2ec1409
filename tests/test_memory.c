/* test_memory: the spatial memory stores, finds, updates, splits and reports
 * its weights correctly, in both of its storage forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/memory.h"
#include "common/quant.h"
#include "common/rng.h"

static const unsigned s_widths[3] = {1, 2, 4};

static sp_memory_t *s_new(unsigned bits, uint64_t capacity, uint32_t bloom)
{
    sp_memory_config_t cfg = {.bits = (uint8_t)bits, .capacity = capacity, .bloom_expected = bloom};
    sp_memory_t *m = sp_memory_new(&cfg);
    assert_non_null(m);
    return m;
}

typedef struct {
    uint64_t *codes;
    uint8_t *levels;
    size_t n, cap;
} s_list_t;

static int s_collect(uint64_t code, uint8_t level, void *arg)
{
    s_list_t *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->codes = realloc(l->codes, l->cap * sizeof(*l->codes));
        l->levels = realloc(l->levels, l->cap);
        assert_non_null(l->codes);
        assert_non_null(l->levels);
    }
    l->codes[l->n] = code;
    l->levels[l->n++] = level;
    return 0;
}

static void s_list_free(s_list_t *l)
{
    free(l->codes);
    free(l->levels);
    memset(l, 0, sizeof(*l));
}

static void test_memory_round_trip_1000_random_positions(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 2024);
    for (int wi = 0; wi < 3; wi++) {
        for (int with_bloom = 0; with_bloom < 2; with_bloom++) {
            unsigned bits = s_widths[wi];
            sp_memory_t *m = s_new(bits, 0, with_bloom ? 1000 : 0);
            sp_pos_t pos[1000];
            float w[1000];
            for (int i = 0; i < 1000; i++) {
                pos[i] = (sp_pos_t){(uint16_t)sp_rng_next(&r), (uint16_t)sp_rng_next(&r),
                                    (uint16_t)sp_rng_next(&r)};
                w[i] = sp_rng_float(&r) * 2.0f - 1.0f;
                assert_int_equal(sp_memory_store(m, pos[i], w[i]), SP_OK);
            }
            assert_int_equal(sp_memory_count(m), 1000); /* 2^-48 odds of a repeat */
            float bound = 1.0f / (float)sp_quant_levels(bits) + 1e-6f;
            for (int i = 0; i < 1000; i++) {
                float got = 5.0f;
                assert_int_equal(sp_memory_retrieve(m, pos[i], &got), SP_OK);
                assert_true(fabsf(got - w[i]) <= bound);
            }
            /* foreach visits them all, in increasing code order */
            s_list_t l = {0};
            assert_int_equal(sp_memory_foreach(m, s_collect, &l), SP_OK);
            assert_int_equal(l.n, 1000);
            for (size_t i = 1; i < l.n; i++) {
                assert_true(l.codes[i - 1] < l.codes[i]);
            }
            s_list_free(&l);
            sp_memory_destroy(&m);
            assert_null(m);
            sp_memory_destroy(&m); /* idempotent */
        }
    }
}

static void test_memory_never_stored_is_notfound(void **state)
{
    (void)state;
    for (int with_bloom = 0; with_bloom < 2; with_bloom++) {
        sp_memory_t *m = s_new(4, 0, with_bloom ? 100 : 0);
        float w = 0.0f;
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1, 2, 3}, &w), SP_E_NOTFOUND);
        assert_int_equal(sp_memory_store(m, (sp_pos_t){1, 2, 3}, 0.5f), SP_OK);
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1, 2, 3}, &w), SP_OK);
        /* same region, other cell */
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1, 2, 2}, &w), SP_E_NOTFOUND);
        /* far away */
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){9000, 2, 3}, &w), SP_E_NOTFOUND);
        assert_int_equal(sp_memory_retrieve_code(m, 1ULL << 50, &w), SP_E_NOTFOUND);
        assert_int_equal(sp_memory_store_code(m, 1ULL << 48, 0.1f), SP_E_RANGE);
        /* removed weights are gone */
        assert_int_equal(sp_memory_remove_code(m, sp_morton_encode((sp_pos_t){1, 2, 3})), SP_OK);
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1, 2, 3}, &w), SP_E_NOTFOUND);
        assert_int_equal(sp_memory_remove_code(m, sp_morton_encode((sp_pos_t){1, 2, 3})),
                         SP_E_NOTFOUND);
        assert_int_equal(sp_memory_count(m), 0);
        sp_memory_destroy(&m);
    }
}

static void test_memory_one_region_shared_distant_separate(void **state)
{
    (void)state;
    sp_memory_t *m = s_new(2, 0, 0);
    sp_memory_stats_t st;
    /* the aligned 4x4x4 cube at (8, 4, 12) is one region */
    for (uint16_t z = 12; z < 16; z++) {
        for (uint16_t x = 8; x < 12; x += 3) {
            assert_int_equal(sp_memory_store(m, (sp_pos_t){x, 5, z}, 0.3f), SP_OK);
        }
    }
    sp_memory_stats(m, &st);
    assert_int_equal(st.active_regions, 1);
    assert_int_equal(st.used_capacity, 8);
    assert_int_equal(st.total_capacity, 64);
    assert_int_equal(sp_memory_region_side(m), SP_MEMORY_DEFAULT_SIDE);
    assert_int_equal(sp_memory_store(m, (sp_pos_t){8, 4, 16}, 0.3f), SP_OK); /* next cube in z */
    sp_memory_stats(m, &st);
    assert_int_equal(st.active_regions, 2);
    assert_int_equal(sp_memory_store(m, (sp_pos_t){40000, 3, 9}, -0.3f), SP_OK);
    sp_memory_stats(m, &st);
    assert_int_equal(st.active_regions, 3);
    assert_int_equal(st.used_capacity, 10);
    assert_true(fabsf(st.saturation - 10.0f / 192.0f) < 1e-6f);
    assert_true(fabsf(st.average_density - 10.0f / 192.0f) < 1e-6f);
    assert_true(st.compression_ratio == 16.0f);
    sp_memory_destroy(&m);
}

static void test_memory_capacity_defines_saturation(void **state)
{
    (void)state;
    sp_memory_t *m = s_new(4, 256, 0);
    sp_memory_stats_t st;
    for (uint64_t c = 0; c < 128; c++) {
        assert_int_equal(sp_memory_store_code(m, c, 0.1f), SP_OK);
    }
    sp_memory_stats(m, &st);
    assert_int_equal(st.total_capacity, 256);
    assert_int_equal(st.used_capacity, 128);
    assert_true(st.saturation == 0.5f);
    assert_true(st.average_density == 1.0f); /* two full regions */
    for (uint64_t c = 128; c < 256; c++) {
        assert_int_equal(sp_memory_store_code(m, c, 0.1f), SP_OK);
    }
    sp_memory_stats(m, &st);
    assert_true(st.saturation == 1.0f);
    sp_memory_set_capacity(m, 512);
    sp_memory_stats(m, &st);
    assert_true(st.saturation == 0.5f);
    sp_memory_destroy(&m);
}

/* A dense neuron-shaped memory (capacity 256, codes 0..255 all stored) ends in
 * the compact form: one allocation of header + first key + packed bits. */
static void test_memory_dense_fill_is_compact(void **state)
{
    (void)state;
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        sp_memory_t *m = s_new(bits, 256, 0);
        for (uint64_t c = 0; c < 256; c++) {
            assert_int_equal(sp_memory_store_code(m, c, (float)(c % 7) / 3.0f - 1.0f), SP_OK);
        }
        assert_int_equal(sp_memory_heap_bytes(m), 16 + 8 + 256 * bits / 8);
        for (uint64_t c = 0; c < 256; c++) {
            float w;
            assert_int_equal(sp_memory_retrieve_code(m, c, &w), SP_OK);
            float want = sp_quant_value(sp_quant_level((float)(c % 7) / 3.0f - 1.0f, bits), bits);
            assert_true(w == want);
        }
        /* emptying one cell brings the occupancy maps back */
        assert_int_equal(sp_memory_remove_code(m, 17), SP_OK);
        assert_true(sp_memory_heap_bytes(m) > 16 + 8 + 256 * bits / 8);
        float w;
        assert_int_equal(sp_memory_retrieve_code(m, 17, &w), SP_E_NOTFOUND);
        assert_int_equal(sp_memory_retrieve_code(m, 18, &w), SP_OK);
        assert_int_equal(sp_memory_store_code(m, 17, 0.0f), SP_OK);
        assert_int_equal(sp_memory_heap_bytes(m), 16 + 8 + 256 * bits / 8);
        sp_memory_destroy(&m);
    }
}

static void s_check_split(sp_memory_t *m)
{
    sp_memory_t *a = NULL, *b = NULL;
    assert_int_equal(sp_memory_split_into(m, &a, &b), SP_OK);
    sp_memory_stats_t sm, sa, sb;
    sp_memory_stats(m, &sm);
    sp_memory_stats(a, &sa);
    sp_memory_stats(b, &sb);
    assert_int_equal(sa.active_regions, sm.active_regions / 2);
    assert_int_equal(sa.active_regions + sb.active_regions, sm.active_regions);
    assert_int_equal(sp_memory_count(a) + sp_memory_count(b), sp_memory_count(m));
    s_list_t lm = {0}, la = {0}, lb = {0};
    sp_memory_foreach(m, s_collect, &lm);
    sp_memory_foreach(a, s_collect, &la);
    sp_memory_foreach(b, s_collect, &lb);
    /* a then b, concatenated, is exactly the parent (both visit in code order) */
    assert_int_equal(la.n + lb.n, lm.n);
    for (size_t i = 0; i < lm.n; i++) {
        const s_list_t *l = i < la.n ? &la : &lb;
        size_t j = i < la.n ? i : i - la.n;
        assert_int_equal(l->codes[j], lm.codes[i]);
        assert_int_equal(l->levels[j], lm.levels[i]);
    }
    /* disjoint: no region of a is a region of b */
    unsigned sh = 3 * (unsigned)__builtin_ctz(sp_memory_region_side(m));
    if (la.n > 0 && lb.n > 0) {
        assert_true((la.codes[la.n - 1] >> sh) < (lb.codes[0] >> sh));
    }
    for (size_t i = 0; i < la.n; i++) {
        float w;
        assert_int_equal(sp_memory_retrieve_code(b, la.codes[i], &w), SP_E_NOTFOUND);
    }
    for (size_t i = 0; i < lb.n; i++) {
        float w;
        assert_int_equal(sp_memory_retrieve_code(a, lb.codes[i], &w), SP_E_NOTFOUND);
    }
    s_list_free(&lm);
    s_list_free(&la);
    s_list_free(&lb);
    sp_memory_destroy(&a);
    sp_memory_destroy(&b);
}

static void test_memory_split_into_disjoint_halves(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 8);
    for (int with_bloom = 0; with_bloom < 2; with_bloom++) {
        /* sparse random memory */
        sp_memory_t *m = s_new(4, 0, with_bloom ? 600 : 0);
        for (int i = 0; i < 600; i++) {
            uint64_t c = sp_rng_below(&r, 1ULL << 20);
            assert_int_equal(sp_memory_store_code(m, c, sp_rng_float(&r) * 2 - 1), SP_OK);
        }
        s_check_split(m);
        sp_memory_destroy(&m);
    }
    /* dense compact memory with an odd number of regions */
    sp_memory_t *d = s_new(1, 320, 0);
    for (uint64_t c = 640; c < 960; c++) {
        assert_int_equal(sp_memory_store_code(d, c, c % 2 ? 1.0f : -1.0f), SP_OK);
    }
    s_check_split(d);
    sp_memory_destroy(&d);
    /* one region: child a is empty */
    sp_memory_t *one = s_new(2, 0, 0);
    assert_int_equal(sp_memory_store_code(one, 5, 0.5f), SP_OK);
    s_check_split(one);
    sp_memory_destroy(&one);
}

/* The training-update scheme: 100 updates of +0.001 each (1/133 of a 4-bit
 * step) move the stored weight by their sum, 0.1, on average with stochastic
 * rounding; with nearest rounding every one of them is lost. */
static void test_memory_stochastic_update_accumulates_tiny_steps(void **state)
{
    (void)state;
    const int n_cells = 10000, n_updates = 100;
    const float delta = 0.001f;
    for (int wi = 1; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        sp_memory_t *ms = s_new(bits, 0, 0), *mn = s_new(bits, 0, 0);
        sp_rng_t r;
        sp_rng_init(&r, 31337);
        float w0 = sp_quant_value((uint8_t)(sp_quant_levels(bits) / 2), bits); /* below 0 */
        for (int c = 0; c < n_cells; c++) {
            assert_int_equal(sp_memory_store_code(ms, (uint64_t)c, w0), SP_OK);
            assert_int_equal(sp_memory_store_code(mn, (uint64_t)c, w0), SP_OK);
        }
        for (int u = 0; u < n_updates; u++) {
            for (int c = 0; c < n_cells; c++) {
                assert_int_equal(sp_memory_update_code(ms, (uint64_t)c, delta, &r), SP_OK);
                assert_int_equal(sp_memory_update_code(mn, (uint64_t)c, delta, NULL), SP_OK);
            }
        }
        double sum = 0.0, sum2 = 0.0;
        for (int c = 0; c < n_cells; c++) {
            float w, wn;
            assert_int_equal(sp_memory_retrieve_code(ms, (uint64_t)c, &w), SP_OK);
            assert_int_equal(sp_memory_retrieve_code(mn, (uint64_t)c, &wn), SP_OK);
            assert_true(wn == w0); /* nearest rounding lost every update */
            double d = (double)w - (double)w0;
            sum += d;
            sum2 += d * d;
        }
        double mean = sum / n_cells;
        double var = sum2 / n_cells - mean * mean;
        double se = sqrt(var / n_cells);
        double want = (double)n_updates * delta;
        assert_true(se > 0.0);
        assert_true(fabs(mean - want) < 4.0 * se);
        sp_memory_destroy(&ms);
        sp_memory_destroy(&mn);
    }
}

static void test_memory_update_of_absent_weight_starts_at_zero(void **state)
{
    (void)state;
    sp_memory_t *m = s_new(4, 0, 0);
    float w;
    assert_int_equal(sp_memory_update(m, (sp_pos_t){3, 3, 3}, 0.4f, NULL), SP_OK);
    assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){3, 3, 3}, &w), SP_OK);
    assert_true(w == sp_quant_value(sp_quant_level(0.4f, 4), 4));
    assert_int_equal(sp_memory_count(m), 1);
    sp_memory_destroy(&m);
}

static void test_memory_run_and_occupancy_consistent(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 4);
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        sp_memory_t *m = s_new(bits, 200, 0);
        const uint64_t base = 64 * 1000, n = 200;
        assert_null(sp_memory_run(m, base, n)); /* nothing allocated */
        assert_int_equal(sp_memory_reserve_run(m, base, n), SP_OK);
        assert_int_equal(sp_memory_count(m), 0);
        uint8_t *run = sp_memory_run_mut(m, base, n);
        assert_non_null(run);
        assert_ptr_equal(sp_memory_run(m, base, n), run);
        assert_null(sp_memory_run(m, base + 1, n)); /* unaligned */
        assert_null(sp_memory_run(m, base, 300));   /* beyond the allocated regions */
        uint8_t levels[200];
        int present[200];
        for (uint64_t i = 0; i < n; i++) {
            levels[i] = (uint8_t)sp_rng_below(&r, sp_quant_levels(bits) + 1);
            present[i] = sp_rng_below(&r, 3) != 0;
            sp_quant_set(run, i, bits, levels[i]);
            if (present[i]) {
                assert_int_equal(sp_memory_set_occupied(m, base + i, 1), SP_OK);
            }
        }
        assert_ptr_equal(sp_memory_run(m, base, n), run); /* writes did not move it */
        const uint64_t *occ = sp_memory_run_occupancy(m, base, n);
        assert_non_null(occ);
        uint64_t count = 0;
        for (uint64_t i = 0; i < n; i++) {
            int bit = (int)((occ[i / 64] >> (i % 64)) & 1);
            assert_int_equal(bit, present[i]);
            uint8_t level;
            int rc = sp_memory_retrieve_level(m, base + i, &level);
            assert_int_equal(rc, present[i] ? SP_OK : SP_E_NOTFOUND);
            if (present[i]) {
                assert_int_equal(level, levels[i]);
            }
            count += (uint64_t)present[i];
        }
        assert_int_equal(sp_memory_count(m), count);
        /* stores keep the run view in step */
        assert_int_equal(sp_memory_store_code(m, base + 7, 1.0f), SP_OK);
        run = sp_memory_run_mut(m, base, n);
        occ = sp_memory_run_occupancy(m, base, n);
        assert_int_equal(sp_quant_get(run, 7, bits), sp_quant_levels(bits));
        assert_true((occ[0] >> 7) & 1);
        /* a gap of one region breaks the run */
        assert_int_equal(sp_memory_store_code(m, base + 64 * 5, 0.0f), SP_OK);
        assert_non_null(sp_memory_run(m, base + 64 * 5, 64));
        assert_null(sp_memory_run(m, base, 64 * 6));
        assert_int_equal(sp_memory_set_occupied(m, base + 64 * 9, 1), SP_E_NOTFOUND);
        sp_memory_destroy(&m);
    }
}

static void test_memory_run_of_compact_memory(void **state)
{
    (void)state;
    sp_memory_t *m = s_new(2, 128, 0);
    assert_int_equal(sp_memory_reserve_run(m, 0, 128), SP_OK);
    uint8_t *run = sp_memory_run_mut(m, 0, 128);
    assert_non_null(run);
    for (uint64_t i = 0; i < 128; i++) {
        sp_quant_set(run, i, 2, (uint8_t)(i % 4));
        assert_int_equal(sp_memory_set_occupied(m, i, 1), SP_OK);
    }
    assert_int_equal(sp_memory_shrink(m), 1);
    assert_int_equal(sp_memory_heap_bytes(m), 16 + 8 + 32);
    run = sp_memory_run_mut(m, 0, 128);
    const uint64_t *occ = sp_memory_run_occupancy(m, 0, 128);
    assert_non_null(run);
    assert_non_null(occ);
    assert_true(occ[0] == ~0ULL && occ[1] == ~0ULL);
    for (uint64_t i = 0; i < 128; i++) {
        assert_int_equal(sp_quant_get(run, i, 2), i % 4);
        uint8_t level;
        assert_int_equal(sp_memory_retrieve_level(m, i, &level), SP_OK);
        assert_int_equal(level, i % 4);
    }
    /* emptying through set_occupied works on the compact form too */
    assert_int_equal(sp_memory_set_occupied(m, 100, 0), SP_OK);
    assert_int_equal(sp_memory_count(m), 127);
    occ = sp_memory_run_occupancy(m, 0, 128);
    assert_int_equal((occ[1] >> 36) & 1, 0);
    assert_int_equal(sp_memory_shrink(m), 0);
    sp_memory_destroy(&m);
}

static void test_memory_clone_is_deep_and_equal(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 17);
    for (int form = 0; form < 3; form++) {
        sp_memory_t *m = s_new(4, form == 0 ? 64 : 0, form == 2 ? 300 : 0);
        int n = form == 0 ? 64 : 300;
        for (int i = 0; i < n; i++) {
            uint64_t c = form == 0 ? (uint64_t)i : sp_rng_below(&r, 1ULL << 30);
            assert_int_equal(sp_memory_store_code(m, c, sp_rng_float(&r) * 2 - 1), SP_OK);
        }
        sp_memory_t *c = sp_memory_clone(m);
        assert_non_null(c);
        assert_int_equal(sp_memory_heap_bytes(c), sp_memory_heap_bytes(m));
        s_list_t lm = {0}, lc = {0};
        sp_memory_foreach(m, s_collect, &lm);
        sp_memory_foreach(c, s_collect, &lc);
        assert_int_equal(lm.n, lc.n);
        assert_memory_equal(lm.codes, lc.codes, lm.n * sizeof(uint64_t));
        assert_memory_equal(lm.levels, lc.levels, lm.n);
        /* independent: changing the clone leaves the original alone */
        assert_int_equal(sp_memory_remove_code(c, lm.codes[0]), SP_OK);
        float w;
        assert_int_equal(sp_memory_retrieve_code(m, lm.codes[0], &w), SP_OK);
        s_list_free(&lm);
        s_list_free(&lc);
        sp_memory_destroy(&m);
        sp_memory_destroy(&c);
    }
}

/* Regions arriving in every order (appended, prepended, filling gaps that
 * merge two runs) end up as one run in key order with every weight intact. */
static void test_memory_regions_inserted_in_any_order(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 12);
    for (int side_i = 0; side_i < 2; side_i++) {
        uint16_t side = side_i ? 2 : 4; /* 8 or 64 cells a region */
        uint64_t cells = (uint64_t)side * side * side;
        sp_memory_config_t cfg = {.bits = 4, .region_side = side};
        sp_memory_t *m = sp_memory_new(&cfg);
        assert_non_null(m);
        enum { R = 64 };
        uint64_t order[R];
        /* odd regions descending, then even ones ascending: prepends, then merges */
        int n = 0;
        for (int k = R - 1; k >= 1; k -= 2) {
            order[n++] = (uint64_t)k;
        }
        for (int k = 0; k < R; k += 2) {
            order[n++] = (uint64_t)k;
        }
        uint8_t want[R];
        for (int i = 0; i < R; i++) {
            uint64_t key = order[i] + 1000;
            want[order[i]] = (uint8_t)sp_rng_below(&r, 16);
            uint64_t code = key * cells + (order[i] % cells);
            assert_int_equal(sp_memory_store_code(m, code, sp_quant_value(want[order[i]], 4)),
                             SP_OK);
            /* everything stored so far is still there */
            for (int j = 0; j <= i; j++) {
                uint8_t level;
                uint64_t c = (order[j] + 1000) * cells + (order[j] % cells);
                assert_int_equal(sp_memory_retrieve_level(m, c, &level), SP_OK);
                assert_int_equal(level, want[order[j]]);
            }
        }
        sp_memory_stats_t st;
        sp_memory_stats(m, &st);
        assert_int_equal(st.active_regions, R);
        assert_int_equal(st.used_capacity, R);
        assert_non_null(sp_memory_run(m, 1000 * cells, R * cells)); /* one run */
        s_check_split(m);
        sp_memory_destroy(&m);
    }
}

static void test_memory_bad_config_rejected(void **state)
{
    (void)state;
    char err[128];
    sp_memory_config_t cfg = {.bits = 3};
    assert_int_equal(sp_memory_config_check(&cfg, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "bits"));
    assert_null(sp_memory_new(&cfg));
    cfg = (sp_memory_config_t){.bits = 4, .region_side = 6};
    assert_int_equal(sp_memory_config_check(&cfg, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "region_side"));
    cfg = (sp_memory_config_t){.bits = 4, .capacity = 1ULL << 33};
    assert_int_equal(sp_memory_config_check(&cfg, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "capacity"));
    assert_int_equal(sp_memory_config_check(NULL, err, sizeof(err)), SP_E_INPUT);
    assert_null(sp_memory_new(NULL));
    /* every valid side works */
    for (unsigned side = 2; side <= 64; side *= 2) {
        cfg = (sp_memory_config_t){.bits = 1, .region_side = (uint16_t)side};
        sp_memory_t *m = sp_memory_new(&cfg);
        assert_non_null(m);
        assert_int_equal(sp_memory_region_side(m), side);
        assert_int_equal(sp_memory_store(m, (sp_pos_t){1000, 1000, 1000}, 1.0f), SP_OK);
        float w;
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1000, 1000, 1000}, &w), SP_OK);
        assert_true(w == 1.0f);
        assert_int_equal(sp_memory_retrieve(m, (sp_pos_t){1000, 1000, 1001}, &w), SP_E_NOTFOUND);
        sp_memory_destroy(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_round_trip_1000_random_positions),
        cmocka_unit_test(test_memory_never_stored_is_notfound),
        cmocka_unit_test(test_memory_one_region_shared_distant_separate),
        cmocka_unit_test(test_memory_capacity_defines_saturation),
        cmocka_unit_test(test_memory_dense_fill_is_compact),
        cmocka_unit_test(test_memory_split_into_disjoint_halves),
        cmocka_unit_test(test_memory_stochastic_update_accumulates_tiny_steps),
        cmocka_unit_test(test_memory_update_of_absent_weight_starts_at_zero),
        cmocka_unit_test(test_memory_run_and_occupancy_consistent),
        cmocka_unit_test(test_memory_run_of_compact_memory),
        cmocka_unit_test(test_memory_clone_is_deep_and_equal),
        cmocka_unit_test(test_memory_regions_inserted_in_any_order),
        cmocka_unit_test(test_memory_bad_config_rejected),
    };
    return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
