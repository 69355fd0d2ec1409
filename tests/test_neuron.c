/* test_neuron: SpatialNeuron forward against hand-computed means, temporal
 * state, local learning of a constant target, the float-master training
 * scheme (small updates accumulate), presence at 1 bit, and mitosis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/activation.h"
#include "common/error.h"
#include "common/memory.h"
#include "common/neuron.h"
#include "common/quant.h"
#include "common/rng.h"

/* Value of 4-bit level l: 2l/15 - 1. */
static float s_level4(int l)
{
    return sp_quant_value((uint8_t)l, 4);
}

static void test_neuron_forward_matches_hand_computed_mean(void **state)
{
    (void)state;
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 8, 4, 0, 0.01f), SP_OK);
    /* Exact 4-bit levels; two weights absent (0 is below the 1/30 threshold). */
    float w[8] = {s_level4(15), s_level4(0), s_level4(11), 0.0f,
                  s_level4(7),  s_level4(14), 0.0f,       s_level4(9)};
    float x[8] = {0.5f, 0.25f, 1.0f, 0.9f, 0.75f, 0.1f, 0.3f, 0.6f};
    assert_int_equal(sp_neuron_set_weights(&nr, w), SP_OK);
    assert_int_equal(nr.n_found, 6);
    nr.gain = 2.0f;
    nr.bias = 0.25f;
    /* The cell the hash picks gets tanh, every other cell sigmoid. */
    uint64_t hash = (5u << 8) | 3u;
    unsigned cell = sp_actmap_cell(hash);
    sp_actmap_init_uniform(&nr.map, SP_ACT_SIGMOID);
    nr.map.func[cell] = SP_ACT_TANH;

    double sum = 0.0;
    int found = 0;
    for (int i = 0; i < 8; i++) {
        if (w[i] != 0.0f) {
            sum += (double)w[i] * x[i];
            found++;
        }
    }
    double want = tanh(2.0 * sum / found + 0.25);
    sp_input_t in = {x, 8, {0, 0, 0}, hash};
    float y;
    assert_int_equal(sp_neuron_forward(&nr, &in, &y), SP_OK);
    assert_float_equal(y, want, 1e-6);
    assert_int_equal(nr.map.hits[cell], 1);
    assert_float_equal(sp_neuron_output(&nr, x, hash), y, 0.0);
    /* The pure output records nothing. */
    assert_int_equal(nr.map.hits[cell], 1);

    /* No weights at all: z = bias. */
    float zero[8] = {0};
    sp_neuron_set_weights(&nr, zero);
    assert_int_equal(nr.n_found, 0);
    assert_int_equal(sp_neuron_forward(&nr, &in, &y), SP_OK);
    assert_float_equal(y, tanh(0.25), 1e-6);
    sp_neuron_fini(&nr);
}

static void test_neuron_forward_rejects_wrong_length(void **state)
{
    (void)state;
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 8, 4, 0, 0.01f), SP_OK);
    float x[8] = {0}, y = 0.0f;
    sp_input_t in = {x, 7, {0, 0, 0}, 0};
    assert_int_equal(sp_neuron_forward(&nr, &in, &y), SP_E_INPUT);
    assert_int_equal(sp_neuron_learn(&nr, &in, 0.5f), SP_E_INPUT);
    sp_neuron_t bad;
    assert_int_equal(sp_neuron_init(&bad, 1, (sp_pos_t){0, 0, 0}, 8, 3, 0, 0.01f), SP_E_RANGE);
    assert_int_equal(sp_neuron_init(&bad, 1, (sp_pos_t){0, 0, 0}, 0, 4, 0, 0.01f), SP_E_RANGE);
    sp_neuron_fini(&nr);
}

static void test_neuron_temporal_state_after_10_inputs(void **state)
{
    (void)state;
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 4, 4, 0, 0.01f), SP_OK);
    float w[4] = {1.0f, s_level4(12), s_level4(3), s_level4(10)};
    sp_neuron_set_weights(&nr, w);
    sp_actmap_init_uniform(&nr.map, SP_ACT_SIGMOID);
    float outs[10];
    for (int t = 0; t < 10; t++) {
        float x[4] = {0.1f * t, 1.0f - 0.1f * t, 0.5f, 0.05f * t};
        sp_input_t in = {x, 4, {0, 0, 0}, (uint64_t)t};
        assert_int_equal(sp_neuron_forward(&nr, &in, &outs[t]), SP_OK);
    }
    for (int k = 0; k < SP_NEURON_TEMPORAL; k++) {
        if (k < 10) {
            /* element k holds the output of k steps ago, times 0.9 once per shift */
            float v = outs[9 - k];
            for (int j = 0; j < k; j++) {
                v *= 0.9f;
            }
            assert_float_equal(nr.temporal[k], v, 0.0);
            assert_float_equal(nr.temporal[k], outs[9 - k] * pow(0.9, k), 1e-6);
        } else {
            assert_float_equal(nr.temporal[k], 0.0f, 0.0);
        }
    }
    sp_neuron_fini(&nr);
}

/* 4 bits, fan-in 128, ELU (identity for positive z), a fixed input in [0, 1)
 * and target 0.7: the local rule with its adaptive rate. */
static void test_neuron_learns_constant_target(void **state)
{
    (void)state;
    enum { N = 128 };
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, N, 4, 1, 0.01f), SP_OK);
    sp_actmap_init_uniform(&nr.map, SP_ACT_ELU);
    sp_rng_t r;
    sp_rng_init(&r, 3);
    float w[N], x[N];
    for (int i = 0; i < N; i++) {
        w[i] = sp_rng_float(&r) * 2.0f - 1.0f;
        x[i] = sp_rng_float(&r);
    }
    sp_neuron_set_weights(&nr, w);
    nr.gain = sqrtf(3.0f * (float)nr.n_found);
    sp_input_t in = {x, N, {0, 0, 0}, 0};
    const float target = 0.7f;
    float y = 0.0f, first = 0.0f;
    for (int step = 1; step <= 1000; step++) {
        assert_int_equal(sp_neuron_forward(&nr, &in, &y), SP_OK);
        if (step == 1) {
            first = y;
        }
        if (step == 101) {
            assert_true(fabsf(y - target) < 0.1f);
        }
        assert_int_equal(sp_neuron_learn(&nr, &in, y - target), SP_OK);
        assert_true(nr.lr >= SP_NEURON_LR_MIN && nr.lr <= SP_NEURON_LR_MAX);
    }
    assert_true(fabsf(first - target) > 0.3f); /* it had something to learn */
    assert_int_equal(sp_neuron_forward(&nr, &in, &y), SP_OK);
    assert_true(fabsf(y - target) < 0.01f);
    sp_neuron_fini(&nr);
}

/* Spec section 2: updates far below one quantization step (2/15 at 4 bits)
 * are kept in the float master and reach the stored level eventually. */
static void test_neuron_small_updates_accumulate_in_master(void **state)
{
    (void)state;
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 4, 4, 1, 0.001f), SP_OK);
    sp_actmap_init_uniform(&nr.map, SP_ACT_ELU);
    float w[4] = {0.2f, 0.2f, 0.2f, 0.0f};
    sp_neuron_set_weights(&nr, w);
    assert_int_equal(nr.n_found, 3);
    float before = sp_neuron_weight(&nr, 0);
    float x[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    sp_input_t in = {x, 4, {0, 0, 0}, 0};
    float y;
    int changed_at = -1, appeared_at = -1;
    for (int step = 0; step < 2000; step++) {
        sp_neuron_forward(&nr, &in, &y);
        /* error -0.05 at rate 0.01 (reset each step): the master moves by
         * 5e-4 a step, under 0.4% of a quantization step */
        sp_neuron_learn(&nr, &in, -0.05f);
        nr.lr = 0.01f;
        if (changed_at < 0 && sp_neuron_weight(&nr, 0) != before) {
            changed_at = step;
        }
        if (appeared_at < 0 && sp_neuron_weight(&nr, 3) != 0.0f) {
            appeared_at = step;
        }
    }
    assert_true(changed_at > 10);   /* not at the first tiny update */
    assert_true(appeared_at > 10);  /* an absent weight came back (straight through) */
    assert_true(sp_neuron_weight(&nr, 0) > before);
    assert_int_equal(nr.n_found, 4);
    /* inputs that were 0 leave their weights alone */
    assert_float_equal(nr.master[1], 0.2f, 0.0);
    sp_neuron_fini(&nr);
}

static void test_neuron_one_bit_weights_are_ternary(void **state)
{
    (void)state;
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 6, 1, 1, 0.01f), SP_OK);
    float w[6] = {0.3f, 0.7f, -0.6f, -0.49f, 1.0f, 0.0f};
    sp_neuron_set_weights(&nr, w);
    assert_float_equal(sp_neuron_presence_threshold(1), 0.5f, 0.0);
    assert_float_equal(sp_neuron_presence_threshold(2), 1.0f / 6.0f, 1e-7);
    assert_float_equal(sp_neuron_presence_threshold(4), 1.0f / 30.0f, 1e-7);
    assert_int_equal(nr.n_found, 3);
    float want[6] = {0.0f, 1.0f, -1.0f, 0.0f, 1.0f, 0.0f};
    for (uint32_t i = 0; i < 6; i++) {
        assert_float_equal(sp_neuron_weight(&nr, i), want[i], 0.0);
    }
    assert_int_equal(sp_memory_count(nr.mem), 3);
    sp_neuron_fini(&nr);
}

/* 128 inputs: 16 regions of 8 cells; 116 weights present is 90.6%. */
static void test_neuron_mitosis_at_90_percent_saturation(void **state)
{
    (void)state;
    enum { N = 128 };
    sp_neuron_t nr;
    assert_int_equal(sp_neuron_init(&nr, 21, (sp_pos_t){10, 4, 2}, N, 4, 1, 0.02f), SP_OK);
    nr.growth = 1;
    nr.growth_threshold = 0.9f;
    float w[N];
    sp_rng_t r;
    sp_rng_init(&r, 9);
    for (int i = 0; i < N; i++) {
        w[i] = (sp_rng_float(&r) < 0.5f ? -1.0f : 1.0f) * (0.2f + 0.8f * sp_rng_float(&r));
    }
    for (int i = 0; i < 13; i++) {
        w[(i * 37) % N] = 0.0f; /* 13 distinct holes: 115 present */
    }
    sp_neuron_set_weights(&nr, w);
    assert_int_equal(nr.n_found, 115);
    assert_false(sp_neuron_should_split(&nr)); /* 89.8% */
    w[(0 * 37) % N] = 0.5f;
    sp_neuron_set_weights(&nr, w);
    assert_int_equal(nr.n_found, 116);
    assert_true(sp_neuron_saturation(&nr) > 0.9f);
    assert_true(sp_neuron_should_split(&nr));
    nr.growth = 0;
    assert_false(sp_neuron_should_split(&nr));
    nr.growth = 1;

    sp_neuron_t a, b;
    assert_int_equal(sp_neuron_split(&nr, &a, &b), SP_OK);
    assert_int_equal(a.id, 42);
    assert_int_equal(b.id, 43);
    assert_int_equal(a.pos.x, 9);
    assert_int_equal(b.pos.x, 11);
    assert_int_equal(a.pos.y, 4);
    assert_int_equal(b.pos.z, 2);
    assert_true(a.n_found > 0 && b.n_found > 0);
    assert_int_equal(a.n_found + b.n_found, nr.n_found);
    assert_int_equal(sp_memory_count(a.mem) + sp_memory_count(b.mem), sp_memory_count(nr.mem));
    for (uint32_t i = 0; i < N; i++) {
        float wa = sp_neuron_weight(&a, i), wb = sp_neuron_weight(&b, i);
        float wp = sp_neuron_weight(&nr, i);
        assert_false(wa != 0.0f && wb != 0.0f); /* disjoint */
        assert_float_equal(wa + wb, wp, 0.0);   /* the union is the parent */
        assert_float_equal(a.master[i] + b.master[i], nr.master[i], 0.0);
    }
    /* the children's pre-activations add up to the parent's */
    float x[N];
    for (int i = 0; i < N; i++) {
        x[i] = sp_rng_float(&r);
    }
    sp_actmap_init_uniform(&nr.map, SP_ACT_ELU);
    nr.gain = 5.0f;
    nr.bias = 0.4f;
    sp_neuron_fini(&a);
    sp_neuron_fini(&b);
    assert_int_equal(sp_neuron_split(&nr, &a, &b), SP_OK);
    sp_input_t in = {x, N, {0, 0, 0}, 0};
    float yp, ya, yb;
    sp_neuron_forward(&nr, &in, &yp);
    sp_neuron_forward(&a, &in, &ya);
    sp_neuron_forward(&b, &in, &yb);
    assert_float_equal(a.last_z + b.last_z, nr.last_z, 1e-4);
    sp_neuron_fini(&a);
    sp_neuron_fini(&b);

    /* ids near the top cannot split */
    nr.id = SP_NEURON_ID_SPLIT_LIMIT;
    assert_false(sp_neuron_should_split(&nr));
    assert_int_equal(sp_neuron_split(&nr, &a, &b), SP_E_RANGE);
    sp_neuron_fini(&nr);
}

static void test_neuron_copy_is_deep(void **state)
{
    (void)state;
    sp_neuron_t nr, cp;
    assert_int_equal(sp_neuron_init(&nr, 3, (sp_pos_t){1, 2, 3}, 16, 2, 1, 0.01f), SP_OK);
    float w[16];
    for (int i = 0; i < 16; i++) {
        w[i] = (float)(i - 8) / 8.0f;
    }
    sp_neuron_set_weights(&nr, w);
    assert_int_equal(sp_neuron_copy(&cp, &nr), SP_OK);
    w[15] = -1.0f;
    sp_neuron_set_weights(&nr, w);
    assert_float_equal(sp_neuron_weight(&cp, 15), 1.0f, 0.0);
    assert_float_equal(sp_neuron_weight(&nr, 15), -1.0f, 0.0);
    assert_int_equal(cp.n_found, sp_memory_count(cp.mem));
    sp_neuron_fini(&cp);
    sp_neuron_fini(&nr);
    sp_neuron_fini(&nr); /* idempotent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_neuron_forward_matches_hand_computed_mean),
        cmocka_unit_test(test_neuron_forward_rejects_wrong_length),
        cmocka_unit_test(test_neuron_temporal_state_after_10_inputs),
        cmocka_unit_test(test_neuron_learns_constant_target),
        cmocka_unit_test(test_neuron_small_updates_accumulate_in_master),
        cmocka_unit_test(test_neuron_one_bit_weights_are_ternary),
        cmocka_unit_test(test_neuron_mitosis_at_90_percent_saturation),
        cmocka_unit_test(test_neuron_copy_is_deep),
    };
    return cmocka_run_group_tests_name("neuron", tests, NULL, NULL);
}
