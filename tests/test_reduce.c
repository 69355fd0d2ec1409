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
        cmocka_unit_test(test_reduce_add_u32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
