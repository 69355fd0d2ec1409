/* test_index: box and radius queries of the hierarchical bit index return
 * exactly what a brute-force scan returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/bitindex.h"
#include "common/error.h"
#include "common/morton.h"
#include "common/rng.h"

typedef struct {
    uint64_t *codes;
    size_t n, cap;
} s_found_t;

static int s_collect(uint64_t code, void *arg)
{
    s_found_t *f = arg;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->codes = realloc(f->codes, f->cap * sizeof(*f->codes));
        assert_non_null(f->codes);
    }
    f->codes[f->n++] = code;
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted distinct brute-force answer vs the index's answer (already sorted). */
static void s_expect_equal(uint64_t *want, size_t n_want, const s_found_t *got)
{
    qsort(want, n_want, sizeof(*want), s_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n_want; i++) {
        if (m == 0 || want[m - 1] != want[i]) {
            want[m++] = want[i];
        }
    }
    assert_int_equal(got->n, m);
    if (m > 0) {
        assert_memory_equal(got->codes, want, m * sizeof(*want));
    }
}

static sp_pos_t s_rand_pos(sp_rng_t *r, uint32_t span, uint32_t off)
{
    sp_pos_t p = {(uint16_t)(off + sp_rng_below(r, span)), (uint16_t)(off + sp_rng_below(r, span)),
                  (uint16_t)(off + sp_rng_below(r, span))};
    return p;
}

static int s_in_box(sp_pos_t p, sp_pos_t lo, sp_pos_t hi)
{
    return p.x >= lo.x && p.x <= hi.x && p.y >= lo.y && p.y <= hi.y && p.z >= lo.z &&
           p.z <= hi.z;
}

/* Random sets: clustered (span 64) and spread over the whole space. */
static void s_make_set(sp_rng_t *r, uint32_t span, uint32_t off, size_t n, uint64_t *codes)
{
    for (size_t i = 0; i < n; i++) {
        codes[i] = sp_morton_encode(s_rand_pos(r, span, off));
    }
}

static void test_index_box_query_equals_brute_force(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 21);
    enum { N = 3000 };
    static uint64_t codes[N], want[N];
    const uint32_t spans[3] = {64, 1024, 65536};
    for (int si = 0; si < 3; si++) {
        uint32_t span = spans[si], off = span == 65536 ? 0 : 1000;
        s_make_set(&r, span, off, N, codes);
        sp_bitindex_t *ix = NULL;
        assert_int_equal(sp_bitindex_build(codes, N, &ix), SP_OK);
        size_t total = 0;
        for (int q = 0; q < 60; q++) {
            sp_pos_t a = s_rand_pos(&r, span, off), b = s_rand_pos(&r, span, off);
            sp_pos_t lo = {a.x < b.x ? a.x : b.x, a.y < b.y ? a.y : b.y, a.z < b.z ? a.z : b.z};
            sp_pos_t hi = {a.x < b.x ? b.x : a.x, a.y < b.y ? b.y : a.y, a.z < b.z ? b.z : a.z};
            size_t n_want = 0;
            for (size_t i = 0; i < N; i++) {
                if (s_in_box(sp_morton_decode(codes[i]), lo, hi)) {
                    want[n_want++] = codes[i];
                }
            }
            s_found_t got = {0};
            assert_int_equal(sp_bitindex_query_box(ix, lo, hi, s_collect, &got), 0);
            s_expect_equal(want, n_want, &got);
            total += got.n;
            free(got.codes);
        }
        assert_true(total > 1000); /* the queries were not all empty */
        /* the whole space finds everything once; an inverted box finds nothing */
        s_found_t all = {0};
        sp_bitindex_query_box(ix, (sp_pos_t){0, 0, 0}, (sp_pos_t){65535, 65535, 65535},
                              s_collect, &all);
        memcpy(want, codes, sizeof(codes));
        s_expect_equal(want, N, &all);
        assert_int_equal(all.n, sp_bitindex_count(ix));
        free(all.codes);
        s_found_t none = {0};
        sp_bitindex_query_box(ix, (sp_pos_t){5, 0, 0}, (sp_pos_t){4, 65535, 65535}, s_collect,
                              &none);
        assert_int_equal(none.n, 0);
        sp_bitindex_destroy(&ix);
    }
}

static void test_index_radius_query_equals_brute_force(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 22);
    enum { N = 3000 };
    static uint64_t codes[N], want[N];
    const uint32_t spans[3] = {64, 1024, 65536};
    for (int si = 0; si < 3; si++) {
        uint32_t span = spans[si], off = span == 65536 ? 0 : 30000;
        s_make_set(&r, span, off, N, codes);
        /* built incrementally this time */
        sp_bitindex_t *ix = sp_bitindex_new();
        assert_non_null(ix);
        for (size_t i = 0; i < N; i++) {
            assert_int_equal(sp_bitindex_insert(ix, codes[i]), SP_OK);
            assert_true(sp_bitindex_contains(ix, codes[i]));
        }
        size_t total = 0;
        for (int q = 0; q < 60; q++) {
            sp_pos_t c = s_rand_pos(&r, span, off);
            uint32_t radius = (uint32_t)sp_rng_below(&r, span / 2 + 1);
            if (q == 0) {
                radius = 0;
                c = sp_morton_decode(codes[7]); /* exactly one point */
            }
            uint64_t r2 = (uint64_t)radius * radius;
            size_t n_want = 0;
            for (size_t i = 0; i < N; i++) {
                if (sp_pos_dist2(sp_morton_decode(codes[i]), c) <= r2) {
                    want[n_want++] = codes[i];
                }
            }
            s_found_t got = {0};
            assert_int_equal(sp_bitindex_query_radius(ix, c, radius, s_collect, &got), 0);
            s_expect_equal(want, n_want, &got);
            if (q == 0) {
                assert_true(got.n >= 1);
            }
            total += got.n;
            free(got.codes);
        }
        assert_true(total > 1000);
        sp_bitindex_destroy(&ix);
    }
}

static int s_stop_after_3(uint64_t code, void *arg)
{
    (void)code;
    int *n = arg;
    return ++*n == 3 ? 42 : 0;
}

static void test_index_build_insert_agree_and_stop_early(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 23);
    uint64_t codes[500];
    for (int i = 0; i < 500; i++) {
        codes[i] = sp_rng_below(&r, 1ULL << 48);
    }
    codes[499] = codes[3]; /* a repeat */
    sp_bitindex_t *a = NULL, *b = sp_bitindex_new();
    assert_int_equal(sp_bitindex_build(codes, 500, &a), SP_OK);
    for (int i = 499; i >= 0; i--) {
        assert_int_equal(sp_bitindex_insert(b, codes[i]), SP_OK);
    }
    assert_int_equal(sp_bitindex_count(a), 499);
    assert_int_equal(sp_bitindex_count(b), 499);
    s_found_t fa = {0}, fb = {0};
    sp_pos_t lo = {0, 0, 0}, hi = {65535, 65535, 65535};
    sp_bitindex_query_box(a, lo, hi, s_collect, &fa);
    sp_bitindex_query_box(b, lo, hi, s_collect, &fb);
    assert_int_equal(fa.n, fb.n);
    assert_memory_equal(fa.codes, fb.codes, fa.n * sizeof(uint64_t));
    free(fa.codes);
    free(fb.codes);
    int n = 0;
    assert_int_equal(sp_bitindex_query_box(a, lo, hi, s_stop_after_3, &n), 42);
    assert_int_equal(n, 3);
    assert_int_equal(sp_bitindex_insert(a, 1ULL << 48), SP_E_RANGE);
    uint64_t bad = 1ULL << 49;
    sp_bitindex_t *c = NULL;
    assert_int_equal(sp_bitindex_build(&bad, 1, &c), SP_E_RANGE);
    assert_null(c);
    assert_false(sp_bitindex_contains(a, bad));
    sp_bitindex_destroy(&a);
    sp_bitindex_destroy(&b);
    sp_bitindex_destroy(&b);
    /* empty index */
    assert_int_equal(sp_bitindex_build(NULL, 0, &c), SP_OK);
    s_found_t fc = {0};
    assert_int_equal(sp_bitindex_query_radius(c, lo, 100000, s_collect, &fc), 0);
    assert_int_equal(fc.n, 0);
    sp_bitindex_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_box_query_equals_brute_force),
        cmocka_unit_test(test_index_radius_query_equals_brute_force),
        cmocka_unit_test(test_index_build_insert_agree_and_stop_early),
    };
    return cmocka_run_group_tests_name("index", tests, NULL, NULL);
}
