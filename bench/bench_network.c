/* bench_network: neuron forward / learn on packed runs, a 512-neuron layer on
 * 1 and 2 threads (one sample through the layer), layer growth (all 512 split),
 * training throughput of 784-128-10 on Fashion-MNIST-sized random data
 * (batch 64, backprop, 4 bits, cross-entropy, momentum 0.9), and what a
 * worker's summation tree costs at batch 64 in leaves of 32. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/activation.h"
#include "common/error.h"
#include "common/layer.h"
#include "common/network.h"
#include "common/neuron.h"
#include "common/reduce.h"
#include "common/rng.h"

/* Every figure is the best of S_ROUNDS timed rounds: the machine is shared,
 * and the fastest round is the one least disturbed by other processes. */
#define S_ROUNDS 5

static void s_fill(float *x, size_t n, uint64_t seed)
{
    sp_rng_t r;
    sp_rng_init(&r, seed);
    for (size_t i = 0; i < n; i++) {
        x[i] = sp_rng_float(&r);
    }
}

static void s_neuron(const sp_bench_ctx_t *ctx, unsigned bits)
{
    char fwd[64], lrn[64];
    snprintf(fwd, sizeof fwd, "neuron_forward_128_b%u", bits);
    snprintf(lrn, sizeof lrn, "neuron_learn_128_b%u", bits);
    if (!sp_bench_wanted(ctx, fwd) && !sp_bench_wanted(ctx, lrn)) {
        return;
    }
    sp_neuron_t nr;
    if (sp_neuron_init(&nr, 1, (sp_pos_t){0, 0, 0}, 128, bits, 1, 0.01f) != SP_OK) {
        return;
    }
    float w[128], x[128];
    s_fill(w, 128, 1);
    for (int i = 0; i < 128; i++) {
        w[i] = w[i] * 2.0f - 1.0f;
    }
    s_fill(x, 128, 2);
    sp_neuron_set_weights(&nr, w);
    nr.gain = 19.6f;
    sp_lsh_t *lsh = sp_lsh_new(128, 3);
    sp_input_t in = {x, 128, {0, 0, 0}, sp_lsh_hash(lsh, x)};
    const int iters = 200000;
    float y, acc = 0.0f;
    if (sp_bench_wanted(ctx, fwd)) {
        uint64_t best = UINT64_MAX;
        for (int round = 0; round < S_ROUNDS; round++) {
            uint64_t t0 = sp_bench_now_ns();
            for (int k = 0; k < iters; k++) {
                sp_neuron_forward(&nr, &in, &y);
                acc += y;
            }
            uint64_t dt = sp_bench_now_ns() - t0;
            best = dt < best ? dt : best;
        }
        sp_bench_report(fwd, (double)best / iters / 1000.0, "us");
    }
    if (sp_bench_wanted(ctx, lrn)) {
        sp_neuron_forward(&nr, &in, &y);
        uint64_t best = UINT64_MAX;
        for (int round = 0; round < S_ROUNDS; round++) {
            uint64_t t0 = sp_bench_now_ns();
            for (int k = 0; k < iters; k++) {
                /* alternating sign keeps the weights where they are on average */
                sp_neuron_learn(&nr, &in, (k & 1) ? 0.05f : -0.05f);
            }
            uint64_t dt = sp_bench_now_ns() - t0;
            best = dt < best ? dt : best;
        }
        sp_bench_report(lrn, (double)best / iters / 1000.0, "us");
    }
    sp_bench_sink((uint64_t)acc);
    sp_lsh_destroy(&lsh);
    sp_neuron_fini(&nr);
}

static sp_layer_t *s_layer(uint32_t n_in, uint32_t n_out, int growth)
{
    sp_layer_config_t lc;
    memset(&lc, 0, sizeof lc);
    lc.bits = 4;
    lc.training = 1;
    lc.lr = 0.01f;
    lc.growth = growth;
    lc.growth_threshold = 0.9f;
    lc.init_density = 1.0f;
    lc.gain_scale = 1.0f;
    lc.act_init = SP_ACTINIT_GRADIENT;
    lc.act_center = SP_ACT_RELU;
    lc.act_edge = SP_ACT_LEAKY_RELU;
    lc.lsh_seed = 7;
    sp_rng_t r;
    sp_rng_init(&r, 11);
    return sp_layer_new(n_in, n_out, &lc, &r);
}

static void s_layer512(const sp_bench_ctx_t *ctx)
{
    const char *names[] = {"layer512_forward_t1", "layer512_forward_t2", "layer512_learn_t1",
                           "layer512_learn_t2"};
    int any = 0;
    for (int i = 0; i < 4; i++) {
        any |= sp_bench_wanted(ctx, names[i]);
    }
    if (any) {
        sp_layer_t *l = s_layer(128, 512, 0);
        float x[128], y[512], err[512];
        s_fill(x, 128, 5);
        for (int i = 0; i < 512; i++) {
            err[i] = (i & 1) ? 0.02f : -0.02f;
        }
        for (int t = 1; t <= 2 && l; t++) {
            const int iters = 500;
            if (sp_bench_wanted(ctx, names[t - 1])) {
                sp_layer_forward(l, x, y, t); /* warm the thread pool */
                uint64_t best = UINT64_MAX;
                for (int round = 0; round < S_ROUNDS; round++) {
                    uint64_t t0 = sp_bench_now_ns();
                    for (int k = 0; k < iters; k++) {
                        sp_layer_forward(l, x, y, t);
                    }
                    uint64_t dt = sp_bench_now_ns() - t0;
                    best = dt < best ? dt : best;
                }
                sp_bench_report(names[t - 1], (double)best / iters / 1e6, "ms");
            }
            if (sp_bench_wanted(ctx, names[t + 1])) {
                sp_layer_forward(l, x, y, t);
                uint64_t best = UINT64_MAX;
                for (int round = 0; round < S_ROUNDS; round++) {
                    uint64_t t0 = sp_bench_now_ns();
                    for (int k = 0; k < iters; k++) {
                        err[0] = -err[0];
                        sp_layer_learn(l, x, err, t);
                    }
                    uint64_t dt = sp_bench_now_ns() - t0;
                    best = dt < best ? dt : best;
                }
                sp_bench_report(names[t + 1], (double)best / iters / 1e6, "ms");
            }
        }
        sp_bench_sink((uint64_t)y[0]);
        sp_layer_destroy(&l);
    }
    if (sp_bench_wanted(ctx, "layer512_grow")) {
        /* Density 1 puts every neuron above the 0.9 threshold: all 512 split. */
        sp_layer_t *l = s_layer(128, 512, 1), *next = s_layer(512, 16, 0);
        const int iters = 5;
        uint64_t total = 0;
        for (int k = 0; k < iters && l && next; k++) {
            sp_layer_t *a = sp_layer_clone(l), *b = sp_layer_clone(next);
            uint64_t t0 = sp_bench_now_ns();
            int grown = a && b ? sp_layer_grow(a, b) : -1;
            total += sp_bench_now_ns() - t0;
            sp_bench_sink((uint64_t)grown);
            sp_layer_destroy(&a);
            sp_layer_destroy(&b);
        }
        sp_bench_report("layer512_grow", (double)total / iters / 1e6, "ms");
        sp_layer_destroy(&l);
        sp_layer_destroy(&next);
    }
}

/* 784-128-10, 4 bits, cross-entropy (the defaults otherwise), and n
 * samples of Fashion-MNIST-sized random inputs with one-hot targets
 * (class s % 10) into *X and *T. Returns the network, NULL when something
 * could not be allocated (then nothing is left to free). */
static sp_network_t *s_fmnist_like(size_t n, uint64_t seed, float **X, float **T)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = SP_LOSS_XENT;
    uint32_t sizes[] = {784, 128, 10};
    sp_network_t *net = sp_network_new(sizes, 3, &cfg);
    *X = malloc(n * 784 * sizeof(float));
    *T = calloc(n * 10, sizeof(float));
    if (net == NULL || *X == NULL || *T == NULL) {
        sp_network_destroy(&net);
        free(*X);
        free(*T);
        *X = *T = NULL;
        return NULL;
    }
    s_fill(*X, n * 784, seed);
    for (size_t s = 0; s < n; s++) {
        (*T)[s * 10 + s % 10] = 1.0f;
    }
    return net;
}

static void s_train(const sp_bench_ctx_t *ctx, int threads)
{
    char name[64];
    snprintf(name, sizeof name, "train_784_128_10_b4_t%d", threads);
    if (!sp_bench_wanted(ctx, name)) {
        return;
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    const size_t B = 64, n_batches = 64;
    float *X, *T;
    sp_network_t *n = s_fmnist_like(n_batches * B, 9, &X, &T);
    if (n) {
        float loss;
        for (size_t b = 0; b < 8; b++) { /* warm-up */
            sp_network_train_batch(n, X + b * B * 784, T + b * B * 10, B, &loss);
        }
        uint64_t best = UINT64_MAX;
        for (int round = 0; round < S_ROUNDS; round++) { /* 64 steps a round */
            uint64_t t0 = sp_bench_now_ns();
            for (size_t b = 0; b < n_batches; b++) {
                sp_network_train_batch(n, X + b * B * 784, T + b * B * 10, B, &loss);
            }
            uint64_t dt = sp_bench_now_ns() - t0;
            best = dt < best ? dt : best;
        }
        sp_bench_report(name, (double)(n_batches * B) / ((double)best / 1e9), "samples/s");
    }
    free(X);
    free(T);
    sp_network_destroy(&n);
    omp_set_num_threads(saved);
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The gradient of 64 samples of 784-128-10 on one thread, three ways, in
 * interleaved repetitions (medians): in one piece; as a worker's tree of two
 * leaves of 32, each into a zeroed buffer and the right added to the left;
 * and with the right leaf computed straight onto the left's sum (what the
 * worker does, same bits). Reported as the two trees against one piece. */
static void s_tree_leaves(const sp_bench_ctx_t *ctx)
{
    static const char *const names[] = {"grad_b64_tree_2x32_cost", "grad_b64_onto_sibling_cost"};
    if (!sp_bench_wanted(ctx, names[0]) && !sp_bench_wanted(ctx, names[1])) {
        return;
    }
    enum { B = 64, REPS = 301 };
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float *X, *T;
    sp_network_t *n = s_fmnist_like(B, 11, &X, &T);
    size_t np = n ? sp_network_n_params(n) : 0;
    float *g = malloc(np * sizeof(float)), *r = malloc(np * sizeof(float));
    static uint64_t t[3][REPS]; /* one piece, the tree's way, onto the sibling */
    if (n && g && r) {
        const float *X2 = X + 32 * 784, *T2 = T + 32 * 10;
        for (int i = 0; i < REPS; i++) {
            uint64_t t0 = sp_bench_now_ns();
            memset(g, 0, np * sizeof(float));
            sp_network_gradient(n, X, T, B, g, NULL, NULL);
            uint64_t t1 = sp_bench_now_ns();
            memset(g, 0, np * sizeof(float));
            sp_network_gradient(n, X, T, 32, g, NULL, NULL);
            memset(r, 0, np * sizeof(float));
            sp_network_gradient(n, X2, T2, 32, r, NULL, NULL);
            sp_reduce_add_f32(g, r, np);
            uint64_t t2 = sp_bench_now_ns();
            memset(g, 0, np * sizeof(float));
            sp_network_gradient(n, X, T, 32, g, NULL, NULL);
            sp_network_gradient(n, X2, T2, 32, g, NULL, NULL);
            uint64_t t3 = sp_bench_now_ns();
            t[0][i] = t1 - t0;
            t[1][i] = t2 - t1;
            t[2][i] = t3 - t2;
        }
        for (int k = 0; k < 3; k++) {
            qsort(t[k], REPS, sizeof(uint64_t), s_cmp_u64);
        }
        double one = (double)t[0][REPS / 2];
        sp_bench_report(names[0], (double)t[1][REPS / 2] / one, "x");
        sp_bench_report(names[1], (double)t[2][REPS / 2] / one, "x");
    }
    free(X);
    free(T);
    free(g);
    free(r);
    sp_network_destroy(&n);
    omp_set_num_threads(saved);
}

void sp_bench_network(const sp_bench_ctx_t *ctx)
{
    s_neuron(ctx, 1);
    s_neuron(ctx, 4);
    s_layer512(ctx);
    s_train(ctx, 1);
    s_train(ctx, 2);
    s_tree_leaves(ctx);
}
