/* test_layer: a 64-neuron SpatialLayer: output length, repeatability, Morton
 * order, and sequential against 2-thread forward / learn / backward to the bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/error.h"
#include "common/layer.h"
#include "common/morton.h"
#include "common/rng.h"

static sp_layer_t *s_layer(uint32_t n_in, uint32_t n_out, uint64_t seed)
{
    sp_layer_config_t lc;
    memset(&lc, 0, sizeof lc);
    lc.bits = 4;
    lc.training = 1;
    lc.lr = 0.05f;
    lc.growth_threshold = 0.9f;
    lc.init_density = 0.8f;
    lc.gain_scale = 1.0f;
    lc.act_init = SP_ACTINIT_RANDOM; /* every function somewhere */
    lc.act_center = SP_ACT_RELU;
    lc.act_edge = SP_ACT_RELU;
    lc.lsh_seed = seed + 1;
    sp_rng_t r;
    sp_rng_init(&r, seed);
    return sp_layer_new(n_in, n_out, &lc, &r);
}

static void s_input(float *x, size_t n, uint64_t seed)
{
    sp_rng_t r;
    sp_rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) {
        x[i] = sp_rng_float(&r);
    }
}

static void test_layer_forward_output_length_and_repeatable(void **state)
{
    (void)state;
    sp_layer_t *l = s_layer(32, 64, 1);
    assert_non_null(l);
    assert_int_equal(l->n_out, 64);
    float x[32], y1[65], y2[65];
    s_input(x, 32, 2);
    y1[64] = y2[64] = 12345.0f; /* sentinel: nothing written past 64 outputs */
    assert_int_equal(sp_layer_forward(l, x, y1, 1), SP_OK);
    assert_int_equal(sp_layer_forward(l, x, y2, 1), SP_OK);
    assert_memory_equal(y1, y2, 64 * sizeof(float));
    assert_float_equal(y1[64], 12345.0f, 0.0);
    for (int o = 0; o < 64; o++) {
        assert_true(isfinite(y1[o]));
        assert_float_equal(y1[o], sp_neuron_output(&l->nr[o], x, sp_lsh_hash(l->lsh, x)), 0.0);
    }
    sp_layer_destroy(&l);
    sp_layer_destroy(&l); /* idempotent */
}

static void test_layer_neurons_in_morton_order(void **state)
{
    (void)state;
    sp_layer_t *l = s_layer(8, 64, 3);
    assert_non_null(l);
    for (uint32_t o = 1; o < l->n_out; o++) {
        assert_true(sp_morton_encode(l->nr[o - 1].pos) < sp_morton_encode(l->nr[o].pos));
    }
    /* 64 neurons fill the 4x4x4 cube */
    for (uint32_t o = 0; o < l->n_out; o++) {
        assert_true(l->nr[o].pos.x < 4 && l->nr[o].pos.y < 4 && l->nr[o].pos.z < 4);
    }
    sp_layer_destroy(&l);
}

/* Same layer, same inputs: 1 thread and 2 threads give identical bits for
 * forward, learn (weights, masters, biases, rates) and backward. */
static void test_layer_parallel_forward_and_learn_match_sequential(void **state)
{
    (void)state;
    sp_layer_t *a = s_layer(48, 64, 5);
    assert_non_null(a);
    sp_layer_t *b = sp_layer_clone(a);
    assert_non_null(b);
    float x[48], ya[64], yb[64], err[64], ga[48], gb[48];
    for (int step = 0; step < 25; step++) {
        s_input(x, 48, 100 + (uint64_t)step);
        assert_int_equal(sp_layer_forward(a, x, ya, 1), SP_OK);
        assert_int_equal(sp_layer_forward(b, x, yb, 2), SP_OK);
        assert_memory_equal(ya, yb, sizeof ya);
        for (int o = 0; o < 64; o++) {
            err[o] = ya[o] - 0.3f;
        }
        assert_int_equal(sp_layer_learn(a, x, err, 1), SP_OK);
        assert_int_equal(sp_layer_learn(b, x, err, 2), SP_OK);
        sp_layer_backward(a, err, ga, 1);
        sp_layer_backward(b, err, gb, 2);
        assert_memory_equal(ga, gb, sizeof ga);
    }
    assert_memory_equal(a->W, b->W, (size_t)64 * 48 * sizeof(float));
    for (int o = 0; o < 64; o++) {
        assert_memory_equal(a->nr[o].master, b->nr[o].master, 48 * sizeof(float));
        assert_float_equal(a->nr[o].bias, b->nr[o].bias, 0.0);
        assert_float_equal(a->nr[o].lr, b->nr[o].lr, 0.0);
        assert_memory_equal(a->nr[o].temporal, b->nr[o].temporal, sizeof a->nr[o].temporal);
        assert_memory_equal(a->nr[o].map.hits, b->nr[o].map.hits, sizeof a->nr[o].map.hits);
    }
    /* learning changed something */
    sp_layer_t *fresh = s_layer(48, 64, 5);
    assert_true(memcmp(fresh->W, a->W, (size_t)64 * 48 * sizeof(float)) != 0);
    sp_layer_destroy(&fresh);
    sp_layer_destroy(&a);
    sp_layer_destroy(&b);
}

static void test_layer_backward_matches_dense_sum(void **state)
{
    (void)state;
    sp_layer_t *l = s_layer(20, 64, 7);
    assert_non_null(l);
    float g[64], dx[20];
    s_input(g, 64, 8);
    sp_layer_backward(l, g, dx, 2);
    for (int i = 0; i < 20; i++) {
        double want = 0.0;
        for (int o = 0; o < 64; o++) {
            float w = sp_neuron_weight(&l->nr[o], (uint32_t)i);
            want += (double)g[o] * w * l->nr[o].gain / l->nr[o].n_found;
        }
        assert_float_equal(dx[i], want, 1e-4);
    }
    sp_layer_destroy(&l);
}

static void test_layer_info_counts(void **state)
{
    (void)state;
    sp_layer_t *l = s_layer(16, 64, 9);
    assert_non_null(l);
    sp_layer_info_t info;
    sp_layer_info(l, 0.9f, 0.01f, 0, &info);
    assert_int_equal(info.neuron_count, 64);
    assert_int_equal(info.weights_capacity, 64 * 16);
    assert_true(info.average_saturation > 0.6f && info.average_saturation < 0.9f);
    assert_int_equal(info.prune_candidates, 0);
    sp_layer_info(l, 0.9f, 0.01f, 1, &info);
    assert_int_equal(info.growth_candidates, 0); /* the output layer never grows */
    sp_layer_destroy(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_forward_output_length_and_repeatable),
        cmocka_unit_test(test_layer_neurons_in_morton_order),
        cmocka_unit_test(test_layer_parallel_forward_and_learn_match_sequential),
        cmocka_unit_test(test_layer_backward_matches_dense_sum),
        cmocka_unit_test(test_layer_info_counts),
    };
    return cmocka_run_group_tests_name("layer", tests, NULL, NULL);
}
