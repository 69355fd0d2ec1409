/* test_reduce: the reduction tree gives the same bits however a step is cut
 * into nodes, which is what lets 1, 2 or 3 workers train the same model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/reduce.h"
#include "common/rng.h"

#define S_N 997  /* floats per gradient */
#define S_P 13   /* partitions in the step */

static float s_g[S_P][S_N]; /* partition gradients */

static void s_fill(void)
{
    sp_rng_t r;
    sp_rng_init(&r, 5);
    for (int p = 0; p < S_P; p++) {
        for (int i = 0; i < S_N; i++) {
            /* magnitudes from 1e-6 to 1e6, so the order of additions shows */
            float m = 1e-6f;
            for (uint64_t k = sp_rng_below(&r, 13); k > 0; k--) {
                m *= 10.0f;
            }
            s_g[p][i] = (sp_rng_float(&r) - 0.5f) * m;
        }
    }
}

/* The sum of tree node [lo, hi) computed whole, as one worker does. */
static void s_node(uint32_t lo, uint32_t hi, float *out)
{
    if (hi - lo == 1) {
        memcpy(out, s_g[lo], sizeof s_g[lo]);
        return;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    float right[S_N];
    s_node(lo, mid, out);
    s_node(mid, hi, right);
    sp_reduce_add_f32(out, right, S_N);
}

/* Splits [lo, hi) at random into nodes; computes each node whole (a
 * worker), then combines them up the tree (the coordinator). */
static void s_cut(sp_rng_t *r, uint32_t lo, uint32_t hi, float *out, int *nodes)
{
    if (hi - lo == 1 || sp_rng_below(r, 3) == 0) {
        s_node(lo, hi, out);
        (*nodes)++;
        return;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    float right[S_N];
    s_cut(r, lo, mid, out, nodes);
    s_cut(r, mid, hi, right, nodes);
    sp_reduce_add_f32(out, right, S_N);
}

/* The coordinator's side: nodes computed whole (node_n[lo] partitions from
 * lo) are combined up the tree over [lo, hi). */
static void s_combine_nodes(float (*node)[S_N], const uint32_t *node_n, uint32_t lo, uint32_t hi,
                            float *out)
{
    if (node_n[lo] == hi - lo) {
        memcpy(out, node[lo], sizeof node[lo]);
        return;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    float right[S_N];
    s_combine_nodes(node, node_n, lo, mid, out);
    s_combine_nodes(node, node_n, mid, hi, right);
    sp_reduce_add_f32(out, right, S_N);
}

static void test_reduce_split_is_largest_power_of_two_below(void **state)
{
    (void)state;
    const uint32_t n[] = {2, 3, 4, 5, 7, 8, 9, 16, 17, 4096, 4097};
    const uint32_t want[] = {1, 2, 2, 4, 4, 4, 8, 8, 16, 2048, 4096};
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        assert_int_equal(sp_reduce_split(n[i]), want[i]);
    }
}

static void test_reduce_any_cut_gives_the_same_bits(void **state)
{
    (void)state;
    s_fill();
    float whole[S_N];
    s_node(0, S_P, whole);
    sp_rng_t r;
    sp_rng_init(&r, 9);
    int sizes_seen = 0;
    for (int trial = 0; trial < 200; trial++) {
        float cut[S_N];
        int nodes = 0;
        s_cut(&r, 0, S_P, cut, &nodes);
        assert_memory_equal(cut, whole, sizeof whole);
        sizes_seen |= 1 << (nodes < 8 ? nodes : 8);
    }
    assert_true((sizes_seen & 0x1c) == 0x1c); /* cuts of 2, 3 and 4 nodes were tried */
    /* The test has teeth: partition order (a running sum) gives other bits. */
    float run[S_N];
    memcpy(run, s_g[0], sizeof run);
    for (int p = 1; p < S_P; p++) {
        sp_reduce_add_f32(run, s_g[p], S_N);
    }
    assert_true(memcmp(run, whole, sizeof whole) != 0);
}

/* True when [lo, lo + n) is a node of the tree over [root_lo, root_hi). */
static int s_is_node(uint32_t root_lo, uint32_t root_hi, uint32_t lo, uint32_t n)
{
    if (root_lo == lo && root_hi - root_lo == n) {
        return 1;
    }
    if (root_hi - root_lo < 2) {
        return 0;
    }
    uint32_t mid = root_lo + sp_reduce_split(root_hi - root_lo);
    return lo < mid ? s_is_node(root_lo, mid, lo, n) : s_is_node(mid, root_hi, lo, n);
}

static void test_reduce_cover_is_the_fewest_tree_nodes(void **state)
{
    (void)state;
    for (uint32_t n = 1; n <= 40; n++) {
        for (uint32_t a = 0; a < n; a++) {
            for (uint32_t b = a + 1; b <= n; b++) {
                uint32_t first[SP_REDUCE_COVER_MAX], count[SP_REDUCE_COVER_MAX];
                uint32_t k = sp_reduce_cover(n, a, b, first, count);
                assert_true(k >= 1);
                uint32_t at = a;
                for (uint32_t i = 0; i < k; i++) {
                    assert_int_equal(first[i], at); /* left to right, no gap */
                    assert_true(count[i] >= 1);
                    assert_true(s_is_node(0, n, first[i], count[i]));
                    /* as large as can be: no larger node inside [a, b)
                     * holds it (a node's ancestors all start at or before it) */
                    for (uint32_t plo = a; plo <= first[i]; plo++) {
                        for (uint32_t pn = count[i] + 1; plo + pn <= b; pn++) {
                            if (first[i] + count[i] <= plo + pn) {
                                assert_false(s_is_node(0, n, plo, pn));
                            }
                        }
                    }
                    at += count[i];
                }
                assert_int_equal(at, b);
            }
        }
    }
    uint32_t first[SP_REDUCE_COVER_MAX], count[SP_REDUCE_COVER_MAX];
    assert_int_equal(sp_reduce_cover(8, 0, 5, first, count), 2); /* [0, 4) and [4] */
    assert_int_equal(first[1], 4);
    assert_int_equal(count[0], 4);
    assert_int_equal(sp_reduce_cover(8, 0, 8, first, count), 1);
    assert_true(sp_reduce_cover(1u << 24, 1, (1u << 24) - 1, first, count) <= 48);
}

/* Workers that take ranges of partitions of any size compute each range's
 * cover, and the combined step has the bits of the whole one. */
static void test_reduce_covers_of_any_ranges_give_the_same_bits(void **state)
{
    (void)state;
    s_fill();
    float whole[S_N];
    s_node(0, S_P, whole);
    sp_rng_t r;
    sp_rng_init(&r, 4);
    for (int trial = 0; trial < 100; trial++) {
        /* cut [0, S_P) into 2..4 ranges; every node of every cover is
         * computed whole, then the nodes are combined up the tree */
        static float node[S_P][S_N];
        uint32_t node_n[S_P] = {0};
        uint32_t ranges = 2 + (uint32_t)sp_rng_below(&r, 3), a = 0;
        for (uint32_t i = 0; i < ranges && a < S_P; i++) {
            uint32_t b = i + 1 == ranges ? S_P : a + 1 + (uint32_t)sp_rng_below(&r, S_P - a);
            uint32_t first[SP_REDUCE_COVER_MAX], count[SP_REDUCE_COVER_MAX];
            uint32_t k = sp_reduce_cover(S_P, a, b, first, count);
            for (uint32_t j = 0; j < k; j++) {
                s_node(first[j], first[j] + count[j], node[first[j]]);
                node_n[first[j]] = count[j];
            }
            a = b;
        }
        float got[S_N];
        s_combine_nodes(node, node_n, 0, S_P, got);
        assert_memory_equal(got, whole, sizeof whole);
    }
}

static void test_reduce_add_u32(void **state)
{
    (void)state;
    uint32_t a[5] = {0, 1, 2, 3, 0xfffffff0u}, b[5] = {5, 5, 5, 5, 15};
    sp_reduce_add_u32(a, b, 5);
    const uint32_t want[5] = {5, 6, 7, 8, 0xffffffffu};
    assert_memory_equal(a, want, sizeof want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_split_is_largest_power_of_two_below),
        cmocka_unit_test(test_reduce_any_cut_gives_the_same_bits),
        cmocka_unit_test(test_reduce_cover_is_the_fewest_tree_nodes),
        cmocka_unit_test(test_reduce_covers_of_any_ranges_give_the_same_bits),
        cmocka_unit_test(test_reduce_add_u32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
