/* test_network: SpatialNetwork training ([4,16,4] identity), stats, the
 * gradient / apply split of the distributed trainer, determinism across
 * thread counts, local mode, growth and pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/layer.h"
#include "common/network.h"
#include "common/reduce.h"
#include "common/rng.h"

static void s_uniform(float *x, size_t n, sp_rng_t *r)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = sp_rng_float(r);
    }
}

/* Model bytes with training state: the strongest "same network" check. */
static void s_assert_same_model(const sp_network_t *a, const sp_network_t *b)
{
    uint8_t *ba = NULL, *bb = NULL;
    size_t la = 0, lb = 0;
    assert_int_equal(sp_network_save_buffer(a, 1, &ba, &la), SP_OK);
    assert_int_equal(sp_network_save_buffer(b, 1, &bb, &lb), SP_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
}

static double s_eval_mse(sp_network_t *n, const float *X, const float *T, size_t N)
{
    size_t K = sp_network_n_outputs(n);
    float *Y = malloc(N * K * sizeof(float));
    assert_non_null(Y);
    assert_int_equal(sp_network_forward(n, X, N, Y), SP_OK);
    double sum = 0.0;
    for (size_t i = 0; i < N * K; i++) {
        assert_true(isfinite(Y[i]));
        sum += ((double)Y[i] - T[i]) * ((double)Y[i] - T[i]);
    }
    free(Y);
    return sum / (double)(N * K);
}

/* [4, 16, 4] on identity, batches of 32 fresh uniform inputs, lr 0.003,
 * momentum 0.9, 4 bits, default maps (hidden relu/leaky relu, output ELU). */
static void test_network_identity_4_16_4_loss_decreases(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.lr = 0.003f;
    uint32_t sizes[] = {4, 16, 4};
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 101);
    float X[32 * 4];
    double window = 0.0, prev = INFINITY;
    for (int b = 0; b < 1000; b++) {
        s_uniform(X, 32 * 4, &r);
        float loss;
        assert_int_equal(sp_network_train_batch(n, X, X, 32, &loss), SP_OK);
        assert_true(isfinite(loss));
        window += loss;
        if (b % 100 == 99) {
            window /= 100.0;
            assert_true(window < prev);
            prev = window;
            window = 0.0;
        }
    }
    assert_true(prev < 0.05);
    float E[1000 * 4];
    s_uniform(E, 1000 * 4, &r);
    assert_true(s_eval_mse(n, E, E, 1000) < 0.05);
    sp_network_destroy(&n);
}

static void test_network_stats_8_16_64_16(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    uint32_t sizes[] = {8, 16, 64, 16};
    sp_network_t *n = sp_network_new(sizes, 4, &cfg);
    assert_non_null(n);
    sp_network_stats_t st;
    sp_network_stats(n, 0.01f, &st);
    assert_int_equal(st.layer_count, 3);
    assert_int_equal(st.total_neurons, 96);
    assert_int_equal(st.total_active_neurons, 96);
    assert_int_equal(st.layers[0].neuron_count, 16);
    assert_int_equal(st.layers[1].neuron_count, 64);
    assert_int_equal(st.layers[2].neuron_count, 16);
    /* density 1: about 1/30 of uniform weights fall under the presence threshold */
    assert_true(st.average_sparsity > 0.0f && st.average_sparsity < 0.1f);
    assert_true(st.layers[0].average_saturation > 0.85f);
    assert_int_equal(st.layers[2].growth_candidates, 0);
    assert_int_equal(sp_network_layer_count(n), 3);
    assert_int_equal(sp_network_layer_width(n, 0), 8);
    assert_int_equal(sp_network_layer_width(n, 2), 64);
    assert_int_equal(sp_network_n_params(n), 16 * 9 + 64 * 17 + 16 * 65 + 16);
    assert_int_equal(sp_network_n_hits(n), 96 * 64);
    sp_network_destroy(&n);
}

/* A step that sends a gain or momentum past its range (or to infinity) is
 * reported as divergence, never saved as a model that its own loader refuses. */
static void test_network_divergence_reported(void **state)
{
    (void)state;
    const uint32_t sizes[] = {3, 8, 2};
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.lr = 1.0f;
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    size_t np = sp_network_n_params(n);
    float *grad = malloc(np * sizeof *grad);
    assert_non_null(grad);
    for (size_t i = 0; i < np; i++) {
        grad[i] = 3e38f; /* finite, but no valid step survives it */
    }
    int rc = SP_OK;
    for (int step = 0; step < 8 && rc == SP_OK; step++) {
        rc = sp_network_apply_gradient(n, grad, 1, NULL);
    }
    assert_int_equal(rc, SP_E_RANGE);
    free(grad);
    sp_network_destroy(&n);
}

static void test_network_rejects_bad_arguments(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    uint32_t one[] = {4};
    uint32_t zero[] = {4, 0, 2};
    assert_null(sp_network_new(one, 1, &cfg));
    assert_null(sp_network_new(zero, 3, &cfg));
    cfg.bits = 3;
    uint32_t ok[] = {4, 2};
    assert_null(sp_network_new(ok, 2, &cfg));
    sp_net_config_default(&cfg);
    cfg.lr = NAN;
    assert_null(sp_network_new(ok, 2, &cfg));
    sp_net_config_default(&cfg);
    sp_network_t *n = sp_network_new(ok, 2, &cfg);
    assert_non_null(n);
    float X[4] = {0.1f, NAN, 0.2f, 0.3f}, T[2] = {0.0f, 1.0f}, loss;
    assert_int_equal(sp_network_train_batch(n, X, T, 1, &loss), SP_E_INPUT);
    X[1] = 0.5f;
    T[0] = INFINITY;
    assert_int_equal(sp_network_train_batch(n, X, T, 1, &loss), SP_E_INPUT);
    float grad[16] = {0};
    grad[3] = NAN;
    assert_int_equal(sp_network_n_params(n), 2 * (4 + 1) + 2);
    assert_int_equal(sp_network_apply_gradient(n, grad, 1, NULL), SP_E_INPUT);
    sp_network_destroy(&n);
}

static sp_network_t *s_small_net(sp_loss_t loss, uint64_t seed)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = loss;
    cfg.seed = seed;
    cfg.lr = 0.02f;
    cfg.hidden_act_init = 2; /* random maps: every function is exercised */
    uint32_t sizes[] = {24, 40, 12, 6};
    return sp_network_new(sizes, 4, &cfg);
}

static void s_batch(float *X, float *T, size_t N, sp_rng_t *r)
{
    s_uniform(X, N * 24, r);
    memset(T, 0, N * 6 * sizeof(float));
    for (size_t s = 0; s < N; s++) {
        T[s * 6 + sp_rng_below(r, 6)] = 1.0f;
    }
}

/* train_batch is gradient + apply_gradient: both paths give the same model
 * bytes, and gradient alone changes nothing. */
static void test_network_gradient_plus_apply_equals_train_batch(void **state)
{
    (void)state;
    sp_network_t *a = s_small_net(SP_LOSS_XENT, 3);
    assert_non_null(a);
    sp_network_t *b = sp_network_clone(a);
    assert_non_null(b);
    s_assert_same_model(a, b);
    sp_rng_t r;
    sp_rng_init(&r, 4);
    float X[48 * 24], T[48 * 6];
    size_t np = sp_network_n_params(b), nh = sp_network_n_hits(b);
    float *grad = malloc(np * sizeof(float));
    uint32_t *hits = malloc(nh * sizeof(uint32_t));
    assert_non_null(grad);
    assert_non_null(hits);
    for (int step = 0; step < 5; step++) {
        s_batch(X, T, 48, &r);
        float loss;
        assert_int_equal(sp_network_train_batch(a, X, T, 48, &loss), SP_OK);
        memset(grad, 0, np * sizeof(float));
        memset(hits, 0, nh * sizeof(uint32_t));
        sp_batch_result_t res;
        assert_int_equal(sp_network_gradient(b, X, T, 48, grad, hits, &res), SP_OK);
        assert_int_equal(res.n_samples, 48);
        assert_true(res.n_correct <= 48);
        assert_float_equal(res.loss_sum / 48.0, loss, 1e-6);
        assert_int_equal(sp_network_apply_gradient(b, grad, 48, hits), SP_OK);
        s_assert_same_model(a, b);
    }
    /* gradient leaves the model alone */
    sp_network_t *c = sp_network_clone(b);
    s_batch(X, T, 48, &r);
    memset(grad, 0, np * sizeof(float));
    assert_int_equal(sp_network_gradient(b, X, T, 48, grad, NULL, NULL), SP_OK);
    s_assert_same_model(b, c);
    free(grad);
    free(hits);
    sp_network_destroy(&a);
    sp_network_destroy(&b);
    sp_network_destroy(&c);
}

/* What holds for partitions: gradients and hits add (gradient accumulates
 * into grad); hits and n_correct are integers and add exactly; the float sum
 * of two half-batch gradients equals the whole batch's within rounding (the
 * sample order inside a GEMM sum changes), and a fixed partition order gives
 * the same bits every time and for any thread count. */
static void test_network_gradient_of_halves_adds_up(void **state)
{
    (void)state;
    sp_network_t *n = s_small_net(SP_LOSS_MSE, 5);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 6);
    float X[64 * 24], T[64 * 6];
    s_batch(X, T, 64, &r);
    size_t np = sp_network_n_params(n), nh = sp_network_n_hits(n);
    float *whole = calloc(np, sizeof(float)), *halves = calloc(np, sizeof(float));
    float *again = calloc(np, sizeof(float));
    uint32_t *hw = calloc(nh, sizeof(uint32_t)), *hh = calloc(nh, sizeof(uint32_t));
    sp_batch_result_t rw, r1, r2;
    assert_int_equal(sp_network_gradient(n, X, T, 64, whole, hw, &rw), SP_OK);
    assert_int_equal(sp_network_gradient(n, X, T, 32, halves, hh, &r1), SP_OK);
    assert_int_equal(sp_network_gradient(n, X + 32 * 24, T + 32 * 6, 32, halves, hh, &r2),
                     SP_OK);
    assert_memory_equal(hw, hh, nh * sizeof(uint32_t));
    assert_int_equal(rw.n_correct, r1.n_correct + r2.n_correct);
    assert_float_equal(rw.loss_sum, r1.loss_sum + r2.loss_sum, 1e-9);
    double scale = 0.0;
    for (size_t i = 0; i < np; i++) {
        scale = fmax(scale, fabs(whole[i]));
    }
    assert_true(scale > 0.0);
    for (size_t i = 0; i < np; i++) {
        assert_float_equal(whole[i], halves[i], 1e-5 * scale);
    }
    /* the same partitions in the same order on 2 threads: the same bits */
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    assert_int_equal(sp_network_gradient(n, X, T, 32, again, NULL, NULL), SP_OK);
    assert_int_equal(sp_network_gradient(n, X + 32 * 24, T + 32 * 6, 32, again, NULL, NULL),
                     SP_OK);
    omp_set_num_threads(saved);
    assert_memory_equal(halves, again, np * sizeof(float));
    free(whole);
    free(halves);
    free(again);
    free(hw);
    free(hh);
    sp_network_destroy(&n);
}

/* The worker's shortcut for a reduction-tree node whose right child is one
 * leaf of at most SP_NET_GRAD_CHUNK samples: adding that leaf's gradient
 * straight onto the left child's sum has the bits of the tree's own way
 * (each child into a zeroed buffer, then left += right), for both losses,
 * both modes and leaves of 1 sample up to a whole chunk. */
static void test_network_gradient_onto_sibling_is_their_sum(void **state)
{
    (void)state;
    enum { N = 4 * SP_NET_GRAD_CHUNK }; /* the longest left and right leaves together */
    static const size_t left[] = {1, 5, 32, SP_NET_GRAD_CHUNK, 2 * SP_NET_GRAD_CHUNK + 3};
    static const size_t right[] = {1, 7, 32, SP_NET_GRAD_CHUNK};
    float *X = malloc((size_t)N * 24 * sizeof *X), *T = malloc((size_t)N * 6 * sizeof *T);
    assert_non_null(X);
    assert_non_null(T);
    sp_rng_t r;
    sp_rng_init(&r, 21);
    s_batch(X, T, N, &r);
    for (int k = 0; k < 3; k++) {
        sp_network_t *n = s_small_net(k == 1 ? SP_LOSS_MSE : SP_LOSS_XENT, 22 + (uint64_t)k);
        assert_non_null(n);
        if (k == 2) {
            sp_net_config_t cfg = *sp_network_config(n);
            sp_network_destroy(&n);
            cfg.mode = SP_MODE_LOCAL;
            uint32_t sizes[] = {24, 40, 12, 6};
            n = sp_network_new(sizes, 4, &cfg);
            assert_non_null(n);
        }
        size_t np = sp_network_n_params(n);
        float *tree = malloc(np * sizeof(float)), *rbuf = malloc(np * sizeof(float));
        float *onto = malloc(np * sizeof(float));
        assert_non_null(tree);
        assert_non_null(rbuf);
        assert_non_null(onto);
        for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
            for (size_t j = 0; j < sizeof right / sizeof right[0]; j++) {
                size_t nl = left[i], nr = right[j];
                const float *XR = X + nl * 24, *TR = T + nl * 6;
                memset(tree, 0, np * sizeof(float));
                memset(rbuf, 0, np * sizeof(float));
                assert_int_equal(sp_network_gradient(n, X, T, nl, tree, NULL, NULL), SP_OK);
                assert_int_equal(sp_network_gradient(n, XR, TR, nr, rbuf, NULL, NULL), SP_OK);
                sp_reduce_add_f32(tree, rbuf, np);
                memset(onto, 0, np * sizeof(float));
                assert_int_equal(sp_network_gradient(n, X, T, nl, onto, NULL, NULL), SP_OK);
                assert_int_equal(sp_network_gradient(n, XR, TR, nr, onto, NULL, NULL), SP_OK);
                assert_memory_equal(tree, onto, np * sizeof(float));
            }
        }
        free(tree);
        free(rbuf);
        free(onto);
        sp_network_destroy(&n);
    }
    free(X);
    free(T);
}

/* A batch bigger than SP_NET_GRAD_CHUNK is its chunks, in order, added into
 * the same buffer: the same bits on 1 and 3 threads. */
static void test_network_gradient_of_big_batch_is_its_chunks(void **state)
{
    (void)state;
    enum { N = 2 * SP_NET_GRAD_CHUNK + 88 };
    sp_network_t *n = s_small_net(SP_LOSS_XENT, 12);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 13);
    float *X = malloc((size_t)N * 24 * sizeof *X), *T = malloc((size_t)N * 6 * sizeof *T);
    assert_non_null(X);
    assert_non_null(T);
    s_batch(X, T, N, &r);
    size_t np = sp_network_n_params(n), nh = sp_network_n_hits(n);
    float *whole = calloc(np, sizeof(float)), *chunks = calloc(np, sizeof(float));
    uint32_t *hw = calloc(nh, sizeof(uint32_t)), *hc = calloc(nh, sizeof(uint32_t));
    sp_batch_result_t rw, rc;
    double loss = 0.0;
    uint32_t correct = 0;
    for (size_t s0 = 0; s0 < N; s0 += SP_NET_GRAD_CHUNK) {
        size_t m = N - s0 < SP_NET_GRAD_CHUNK ? N - s0 : SP_NET_GRAD_CHUNK;
        assert_int_equal(sp_network_gradient(n, X + s0 * 24, T + s0 * 6, m, chunks, hc, &rc),
                         SP_OK);
        loss += rc.loss_sum;
        correct += rc.n_correct;
    }
    for (int threads = 1; threads <= 3; threads += 2) {
        int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        memset(whole, 0, np * sizeof(float));
        memset(hw, 0, nh * sizeof(uint32_t));
        assert_int_equal(sp_network_gradient(n, X, T, N, whole, hw, &rw), SP_OK);
        omp_set_num_threads(saved);
        assert_memory_equal(whole, chunks, np * sizeof(float));
        assert_memory_equal(hw, hc, nh * sizeof(uint32_t));
        assert_int_equal(rw.n_samples, N);
        assert_int_equal(rw.n_correct, correct);
        assert_true(rw.loss_sum == loss);
    }
    free(whole);
    free(chunks);
    free(hw);
    free(hc);
    free(X);
    free(T);
    sp_network_destroy(&n);
}

static sp_network_t *s_train_with_threads(int threads, sp_loss_t loss)
{
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    sp_network_t *n = s_small_net(loss, 7);
    sp_rng_t r;
    sp_rng_init(&r, 8);
    float X[50 * 24], T[50 * 6], l;
    for (int step = 0; step < 30; step++) {
        s_batch(X, T, 50, &r);
        assert_int_equal(sp_network_train_batch(n, X, T, 50, &l), SP_OK);
    }
    omp_set_num_threads(saved);
    return n;
}

static void test_network_training_bit_identical_across_threads(void **state)
{
    (void)state;
    for (int loss = 0; loss < 2; loss++) {
        sp_network_t *a = s_train_with_threads(1, (sp_loss_t)loss);
        sp_network_t *b = s_train_with_threads(2, (sp_loss_t)loss);
        sp_network_t *c = s_train_with_threads(3, (sp_loss_t)loss);
        s_assert_same_model(a, b);
        s_assert_same_model(a, c);
        float X[10 * 24], Ya[60], Yb[60];
        sp_rng_t r;
        sp_rng_init(&r, 9);
        s_uniform(X, sizeof X / sizeof X[0], &r);
        omp_set_num_threads(2);
        assert_int_equal(sp_network_forward(b, X, 10, Yb), SP_OK);
        omp_set_num_threads(1);
        assert_int_equal(sp_network_forward(a, X, 10, Ya), SP_OK);
        assert_memory_equal(Ya, Yb, sizeof Ya);
        sp_network_destroy(&a);
        sp_network_destroy(&b);
        sp_network_destroy(&c);
    }
}

static void test_network_local_mode_trains_only_last_layer(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.mode = SP_MODE_LOCAL;
    uint32_t sizes[] = {4, 16, 4};
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    sp_layer_t *l0 = sp_network_layer(n, 0), *l1 = sp_network_layer(n, 1);
    size_t w0 = (size_t)l0->n_out * l0->n_in, w1 = (size_t)l1->n_out * l1->n_in;
    float *before0 = malloc(w0 * sizeof(float)), *before1 = malloc(w1 * sizeof(float));
    memcpy(before0, l0->W, w0 * sizeof(float));
    memcpy(before1, l1->W, w1 * sizeof(float));
    sp_rng_t r;
    sp_rng_init(&r, 10);
    float X[32 * 4], E[500 * 4], loss;
    s_uniform(E, 500 * 4, &r);
    double first = s_eval_mse(n, E, E, 500);
    for (int b = 0; b < 300; b++) {
        s_uniform(X, 32 * 4, &r);
        assert_int_equal(sp_network_train_batch(n, X, X, 32, &loss), SP_OK);
    }
    assert_memory_equal(before0, l0->W, w0 * sizeof(float));
    assert_true(memcmp(before1, l1->W, w1 * sizeof(float)) != 0);
    assert_true(s_eval_mse(n, E, E, 500) < first);
    free(before0);
    free(before1);
    sp_network_destroy(&n);
}

/* Growth: [16, 8, 4], half the weights present at first; training recruits
 * the absent ones until hidden neurons pass 90% saturation, then grow()
 * splits them, remaps the output layer and the network still works. */
static void test_network_grow_after_saturation(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.growth = 1;
    cfg.growth_threshold = 0.9f;
    cfg.init_density = 0.5f;
    cfg.lr = 0.01f;
    uint32_t sizes[] = {16, 8, 4};
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 11);
    enum { B = 32, NE = 400 };
    float X[B * 16], T[B * 4], E[NE * 16], TE[NE * 4], loss;
    /* target k: mean of inputs 4k..4k+3 */
#define S_TARGETS(Xs, Ts, N)                                                                   \
    for (size_t s_ = 0; s_ < (N); s_++) {                                                      \
        for (int k_ = 0; k_ < 4; k_++) {                                                       \
            const float *x_ = (Xs) + s_ * 16 + 4 * k_;                                         \
            (Ts)[s_ * 4 + k_] = 0.25f * (x_[0] + x_[1] + x_[2] + x_[3]);                       \
        }                                                                                      \
    }
    s_uniform(E, NE * 16, &r);
    S_TARGETS(E, TE, NE);
    sp_network_stats_t st;
    sp_network_stats(n, 0.01f, &st);
    assert_int_equal(st.layers[0].growth_candidates, 0);
    int steps = 0;
    for (; steps < 3000; steps++) {
        s_uniform(X, B * 16, &r);
        S_TARGETS(X, T, B);
        assert_int_equal(sp_network_train_batch(n, X, T, B, &loss), SP_OK);
        sp_network_stats(n, 0.01f, &st);
        if (st.layers[0].growth_candidates >= 2) {
            break;
        }
    }
    assert_true(st.layers[0].growth_candidates >= 2);
    double before = s_eval_mse(n, E, TE, NE);
    int grown = sp_network_grow(n);
    assert_int_equal(grown, (int)st.layers[0].growth_candidates);
    assert_int_equal(sp_network_layer_width(n, 1), 8 + (size_t)grown);
    assert_int_equal(sp_network_layer_width(n, 2), 4);
    sp_layer_t *l0 = sp_network_layer(n, 0), *l1 = sp_network_layer(n, 1);
    assert_int_equal(l1->n_in, l0->n_out);
    for (uint32_t o = 1; o < l0->n_out; o++) {
        assert_true(sp_morton_encode(l0->nr[o - 1].pos) <= sp_morton_encode(l0->nr[o].pos));
    }
    double after = s_eval_mse(n, E, TE, NE);
    assert_true(after < 2.0 * before + 0.01);
    for (int b = 0; b < 200; b++) {
        s_uniform(X, B * 16, &r);
        S_TARGETS(X, T, B);
        assert_int_equal(sp_network_train_batch(n, X, T, B, &loss), SP_OK);
        assert_true(isfinite(loss));
    }
    assert_true(s_eval_mse(n, E, TE, NE) < 2.0 * before + 0.01);
#undef S_TARGETS
    sp_network_destroy(&n);
}

/* Pruning: [8, 64, 4] with ReLU hidden maps and weight decay; the task (copy
 * 4 of the 8 inputs) needs far fewer than 64 hidden units. Decay pulls every
 * weight towards 0 and only the gradient of useful units holds theirs up, so
 * idle units sink under the presence threshold: saturation 0, output
 * relu(bias), a constant that prune folds into the next layer's biases.
 * prune(0.01) removes exactly those (43 of 64 here) and the loss stays. */
static void test_network_prune_removes_idle_neurons(void **state)
{
    (void)state;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.lr = 0.01f;
    cfg.weight_decay = 0.3f; /* 0.3 x lr = 0.3% of every weight a step */
    cfg.hidden_act_init = 0; /* uniform */
    cfg.hidden_act_center = 0; /* relu */
    uint32_t sizes[] = {8, 64, 4};
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 12);
    enum { B = 32, NE = 500 };
    float X[B * 8], T[B * 4], E[NE * 8], TE[NE * 4], loss;
    s_uniform(E, NE * 8, &r);
    for (size_t s = 0; s < NE; s++) {
        for (int k = 0; k < 4; k++) {
            TE[s * 4 + k] = E[s * 8 + 2 * k];
        }
    }
    for (int b = 0; b < 1500; b++) {
        s_uniform(X, B * 8, &r);
        for (size_t s = 0; s < B; s++) {
            for (int k = 0; k < 4; k++) {
                T[s * 4 + k] = X[s * 8 + 2 * k];
            }
        }
        assert_int_equal(sp_network_train_batch(n, X, T, B, &loss), SP_OK);
    }
    sp_network_stats_t st;
    sp_network_stats(n, 0.01f, &st);
    double before = s_eval_mse(n, E, TE, NE);
    int removed = sp_network_prune(n, 0.01f);
    assert_int_equal(removed, (int)st.layers[0].prune_candidates);
    assert_true(removed > 0);
    assert_int_equal(sp_network_layer_width(n, 1), 64 - (size_t)removed);
    assert_int_equal(sp_network_layer_width(n, 2), 4);
    double after = s_eval_mse(n, E, TE, NE);
    assert_true(after <= 1.10 * before);
    sp_network_stats(n, 0.01f, &st);
    assert_int_equal(st.layers[0].prune_candidates, 0);
    assert_int_equal(st.total_neurons, 64 - (uint32_t)removed + 4);
    /* still trains */
    for (int b = 0; b < 20; b++) {
        s_uniform(X, B * 8, &r);
        assert_int_equal(sp_network_train_batch(n, X, X, B, &loss), SP_OK);
        assert_true(isfinite(loss));
    }
    sp_network_destroy(&n);
}

/* The batched GEMM path and the single-sample packed path compute the same
 * function (to float rounding): chaining sp_neuron_output layer by layer,
 * with the layer's pattern hash, gives the network's outputs. */
static void test_network_batched_forward_matches_neuron_path(void **state)
{
    (void)state;
    sp_network_t *n = s_small_net(SP_LOSS_XENT, 13);
    assert_non_null(n);
    sp_rng_t r;
    sp_rng_init(&r, 14);
    float X[8 * 24], Y[8 * 6];
    s_uniform(X, 8 * 24, &r);
    assert_int_equal(sp_network_forward(n, X, 8, Y), SP_OK);
    for (int s = 0; s < 8; s++) {
        float buf[2][64];
        const float *in = X + s * 24;
        for (size_t l = 0; l < sp_network_layer_count(n); l++) {
            sp_layer_t *L = sp_network_layer(n, l);
            uint64_t h = sp_lsh_hash(L->lsh, in);
            for (uint32_t o = 0; o < L->n_out; o++) {
                buf[l & 1][o] = sp_neuron_output(&L->nr[o], in, h);
            }
            in = buf[l & 1];
        }
        for (int k = 0; k < 6; k++) {
            assert_float_equal(in[k], Y[s * 6 + k], 1e-4 * fmax(1.0, fabs(Y[s * 6 + k])));
        }
    }
    sp_network_destroy(&n);
}

static void test_network_same_seed_same_model(void **state)
{
    (void)state;
    sp_network_t *a = s_small_net(SP_LOSS_XENT, 42), *b = s_small_net(SP_LOSS_XENT, 42);
    sp_network_t *c = s_small_net(SP_LOSS_XENT, 43);
    s_assert_same_model(a, b);
    uint8_t *ba, *bc;
    size_t la, lc;
    sp_network_save_buffer(a, 0, &ba, &la);
    sp_network_save_buffer(c, 0, &bc, &lc);
    assert_true(la != lc || memcmp(ba, bc, la) != 0);
    free(ba);
    free(bc);
    sp_network_destroy(&a);
    sp_network_destroy(&b);
    sp_network_destroy(&c);
}

int main(void)
{
    /* One thread by default keeps the suite fast on a loaded machine; the
     * determinism tests choose 1, 2 and 3 threads themselves. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_network_identity_4_16_4_loss_decreases),
        cmocka_unit_test(test_network_stats_8_16_64_16),
        cmocka_unit_test(test_network_rejects_bad_arguments),
        cmocka_unit_test(test_network_divergence_reported),
        cmocka_unit_test(test_network_gradient_plus_apply_equals_train_batch),
        cmocka_unit_test(test_network_gradient_of_halves_adds_up),
        cmocka_unit_test(test_network_gradient_of_big_batch_is_its_chunks),
        cmocka_unit_test(test_network_gradient_onto_sibling_is_their_sum),
        cmocka_unit_test(test_network_training_bit_identical_across_threads),
        cmocka_unit_test(test_network_local_mode_trains_only_last_layer),
        cmocka_unit_test(test_network_grow_after_saturation),
        cmocka_unit_test(test_network_prune_removes_idle_neurons),
        cmocka_unit_test(test_network_batched_forward_matches_neuron_path),
        cmocka_unit_test(test_network_same_seed_same_model),
    };
    return cmocka_run_group_tests_name("network", tests, NULL, NULL);
}
