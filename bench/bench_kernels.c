/* bench_kernels: the hot kernels of common/kernels.h on the shapes the
 * network uses (a 128-input neuron; the 784-128-10 layer at batch 64).
 * Each figure is the best of several timed runs, using the variant the CPU
 * picks at run time; inputs are half zeros, like Fashion-MNIST pixels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "bench/bench.h"
#include "common/kernels.h"
#include "common/quant.h"
#include "common/rng.h"

/* Best time per call in ns of `reps` calls, over 7 runs. */
#define S_TIME_BEST(best_ns, reps, body)                                                           \
    do {                                                                                           \
        (best_ns) = 1e300;                                                                         \
        for (int run_ = 0; run_ < 7; run_++) {                                                     \
            uint64_t t0_ = sp_bench_now_ns();                                                      \
            for (size_t rep_ = 0; rep_ < (reps); rep_++) {                                         \
                body;                                                                              \
            }                                                                                      \
            double per_ = (double)(sp_bench_now_ns() - t0_) / (double)(reps);                      \
            (best_ns) = per_ < (best_ns) ? per_ : (best_ns);                                       \
        }                                                                                          \
    } while (0)

static void s_fill(sp_rng_t *r, float *p, size_t n, float zeros)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = sp_rng_float(r) < zeros ? 0.0f : sp_rng_float(r) * 2.0f - 1.0f;
    }
}

static void s_bench_neuron(const sp_bench_ctx_t *ctx, sp_rng_t *r)
{
    enum { N = 128 };
    float x[N], master[N];
    uint8_t packed[N / 2];
    uint64_t occ[N / 64];
    s_fill(r, x, N, 0.0f);
    s_fill(r, master, N, 0.0f);
    for (size_t k = 0; k < sizeof packed; k++) {
        packed[k] = (uint8_t)sp_rng_next(r);
    }
    occ[0] = sp_rng_next(r) | sp_rng_next(r);
    occ[1] = sp_rng_next(r) | sp_rng_next(r);
    static const unsigned widths[3] = {1, 2, 4};
    static const char *dot_names[3] = {"kern_dot_128_b1", "kern_dot_128_b2", "kern_dot_128_b4"};
    static const char *learn_names[3] = {"kern_learn_128_b1", "kern_learn_128_b2",
                                         "kern_learn_128_b4"};
    for (int w = 0; w < 3; w++) {
        double ns;
        if (sp_bench_wanted(ctx, dot_names[w])) {
            float acc = 0.0f;
            S_TIME_BEST(ns, 100000, {
                acc += sp_kern_dot_packed(packed, occ, x, N, widths[w]);
                __asm__ volatile("" : "+m"(x[0]));
            });
            sp_bench_sink((uint64_t)(int64_t)acc);
            sp_bench_report(dot_names[w], ns, "ns");
        }
        if (sp_bench_wanted(ctx, learn_names[w])) {
            size_t present = 0;
            S_TIME_BEST(ns, 100000, {
                present += sp_kern_learn_packed(master, packed, occ, x, N, widths[w], 1e-7f, 0.01f);
            });
            sp_bench_sink(present);
            sp_bench_report(learn_names[w], ns, "ns");
        }
    }
    if (sp_bench_wanted(ctx, "kern_unpack_784_b4")) {
        enum { M = 784 };
        uint8_t p[M / 2];
        float out[M];
        for (size_t k = 0; k < sizeof p; k++) {
            p[k] = (uint8_t)sp_rng_next(r);
        }
        double ns;
        S_TIME_BEST(ns, 20000, {
            sp_kern_unpack_row(p, NULL, M, 4, out);
            __asm__ volatile("" : : "m"(out[0]) : "memory");
        });
        sp_bench_report("kern_unpack_784_b4", ns, "ns");
    }
    if (sp_bench_wanted(ctx, "kern_quantize_784_b4")) {
        enum { M = 784 };
        uint8_t p[M / 2];
        uint64_t o[(M + 63) / 64];
        float w[M];
        s_fill(r, w, M, 0.0f);
        double ns;
        size_t present = 0;
        S_TIME_BEST(ns, 20000, {
            present += sp_kern_quantize_row(w, M, 4, 0.01f, p, o);
            __asm__ volatile("" : : "m"(p[0]), "m"(o[0]) : "memory");
        });
        sp_bench_sink(present);
        sp_bench_report("kern_quantize_784_b4", ns, "ns");
    }
}

typedef enum { S_FWD, S_DW, S_DX, S_U8 } s_gemm_kind_t;

/* GFLOP/s (2 per multiply-add) of one GEMM kind on threads (1 or 2). */
static void s_bench_gemm(const sp_bench_ctx_t *ctx, sp_rng_t *r, const char *name,
                         s_gemm_kind_t kind, size_t B, size_t n_in, size_t n_out, int threads)
{
    if (!sp_bench_wanted(ctx, name)) {
        return;
    }
    if (kind == S_U8 && !sp_kern_has_vnni()) {
        return;
    }
    float *X = malloc(B * n_in * sizeof *X), *W = malloc(n_out * n_in * sizeof *W);
    float *G = malloc(B * n_out * sizeof *G), *S = malloc(B * n_out * sizeof *S);
    float *dW = calloc(n_out * n_in, sizeof *dW), *dX = malloc(B * n_in * sizeof *dX);
    uint8_t *X8 = malloc(B * n_in);
    int8_t *W8 = malloc(n_out * n_in);
    if (X == NULL || W == NULL || G == NULL || S == NULL || dW == NULL || dX == NULL ||
        X8 == NULL || W8 == NULL) {
        goto out;
    }
    s_fill(r, X, B * n_in, 0.5f);
    s_fill(r, W, n_out * n_in, 0.0f);
    s_fill(r, G, B * n_out, 0.0f);
    for (size_t k = 0; k < B * n_in; k++) {
        X8[k] = (uint8_t)(X[k] < 0 ? -X[k] * 255.0f : X[k] * 255.0f);
    }
    for (size_t k = 0; k < n_out * n_in; k++) {
        W8[k] = (int8_t)(2 * (int)sp_rng_below(r, 16) - 15);
    }
    double ns;
    size_t reps = 200;
    switch (kind) {
    case S_FWD:
        S_TIME_BEST(ns, reps, sp_kern_gemm_xwt_omp(B, n_in, n_out, X, W, S, threads));
        break;
    case S_DW:
        S_TIME_BEST(ns, reps, sp_kern_gemm_gtx_acc_omp(B, n_in, n_out, G, X, dW, threads));
        break;
    case S_DX:
        S_TIME_BEST(ns, reps, sp_kern_gemm_gw_omp(B, n_in, n_out, G, W, dX, threads));
        break;
    default:
        S_TIME_BEST(
            ns, reps,
            sp_kern_gemm_u8s8_omp(B, n_in, n_out, X8, W8, 1.0f / 255, 1.0f / 15, S, threads));
        break;
    }
    sp_bench_report(name, 2.0 * (double)B * (double)n_in * (double)n_out / ns, "GFLOP/s");
out:
    free(X);
    free(W);
    free(G);
    free(S);
    free(dW);
    free(dX);
    free(X8);
    free(W8);
}

typedef struct {
    float *X, *M1, *W1, *dW1, *W2, *dW2, *Z1, *Z2, *G2, *G1, *rs;
    uint8_t *P1, *X8;
    uint64_t *O1;
    int8_t *W8;
    int use_u8;
} s_step_t;

enum { S_B = 64, S_I = 784, S_H = 128, S_O = 10, S_OCC = (S_I + 63) / 64 };

static void s_step_once(const s_step_t *st, int threads)
{
    const size_t B = S_B, I = S_I, H = S_H, O = S_O;
#pragma omp parallel num_threads(threads)
    {
        int ith = omp_get_thread_num(), nth = omp_get_num_threads();
        size_t lo, hi;
        sp_kern_split(H, 1, ith, nth, &lo, &hi);
        for (size_t o = lo; o < hi; o++) {
            sp_kern_quantize_row(st->M1 + o * I, I, 4, 0.01f, st->P1 + o * I / 2,
                                 st->O1 + o * S_OCC);
            if (st->use_u8) {
                sp_kern_unpack_row_s8(st->P1 + o * I / 2, st->O1 + o * S_OCC, I, 4, st->W8 + o * I);
            } else {
                sp_kern_unpack_row_scaled(st->P1 + o * I / 2, st->O1 + o * S_OCC, I, 4,
                                          1.0f / (float)I, st->W1 + o * I);
            }
        }
        if (st->use_u8) {
            sp_kern_split(B * I, 64, ith, nth, &lo, &hi);
            sp_kern_inputs_to_u8(st->X + lo, hi - lo, 255.0f, st->X8 + lo);
        }
#pragma omp barrier
        if (st->use_u8) {
            sp_kern_gemm_u8s8_rows(B, I, H, st->X8, st->W8, st->rs, st->Z1, ith, nth);
        } else {
            sp_kern_gemm_xwt(B, I, H, st->X, st->W1, st->Z1, ith, nth);
        }
#pragma omp barrier
        sp_kern_gemm_xwt(B, H, O, st->Z1, st->W2, st->Z2, ith, nth);
#pragma omp barrier
        sp_kern_gemm_gtx_acc(B, H, O, st->G2, st->Z1, st->dW2, ith, nth);
        sp_kern_gemm_gw(B, H, O, st->G2, st->W2, st->G1, ith, nth);
#pragma omp barrier
        sp_kern_gemm_gtx_acc(B, I, H, st->G1, st->X, st->dW1, ith, nth);
    }
}

/* Samples/s of the kernel work in one training step of 784-128-10 at batch
 * 64 (what the network's hot loop calls; activations and the optimizer are
 * not included): weights re-quantized and unpacked, layer-1 forward (float
 * or u8 x s8), layer-2 forward, layer-2 dW and dX, layer-1 dW. One parallel
 * region per step, slices by ith/nth with barriers between phases. */
static void s_bench_step(const sp_bench_ctx_t *ctx, sp_rng_t *r, const char *name, int use_u8,
                         int threads)
{
    if (!sp_bench_wanted(ctx, name) || (use_u8 && !sp_kern_has_vnni())) {
        return;
    }
    const size_t B = S_B, I = S_I, H = S_H, O = S_O;
    float *X = malloc(sizeof(float) * B * I), *M1 = malloc(sizeof(float) * H * I);
    float *W1 = malloc(sizeof(float) * H * I), *dW1 = calloc(H * I, sizeof(float));
    float *W2 = malloc(sizeof(float) * O * H), *dW2 = calloc(O * H, sizeof(float));
    float *Z1 = malloc(sizeof(float) * B * H), *Z2 = malloc(sizeof(float) * B * O);
    float *G2 = malloc(sizeof(float) * B * O), *G1 = malloc(sizeof(float) * B * H);
    float *rs = malloc(sizeof(float) * H);
    uint8_t *P1 = malloc(H * I / 2), *X8 = malloc(B * I);
    uint64_t *O1 = malloc(sizeof(uint64_t) * H * S_OCC);
    int8_t *W8 = malloc(H * I);
    if (!X || !M1 || !W1 || !dW1 || !W2 || !dW2 || !Z1 || !Z2 || !G2 || !G1 || !rs || !P1 || !X8 ||
        !O1 || !W8) {
        goto out;
    }
    for (size_t k = 0; k < B * I; k++) {
        X[k] = sp_rng_float(r) < 0.5f ? 0.0f : (float)sp_rng_below(r, 256) / 255.0f;
    }
    s_fill(r, M1, H * I, 0.0f);
    s_fill(r, W2, O * H, 0.0f);
    s_fill(r, G2, B * O, 0.0f);
    for (size_t o = 0; o < H; o++) {
        rs[o] = 1.0f / (255.0f * 15.0f * I);
    }
    s_step_t st = {X, M1, W1, dW1, W2, dW2, Z1, Z2, G2, G1, rs, P1, X8, O1, W8, use_u8};
    double ns;
    S_TIME_BEST(ns, 50, s_step_once(&st, threads));
    sp_bench_report(name, (double)B * 1e9 / ns, "samples/s");
out:
    free(X);
    free(M1);
    free(W1);
    free(dW1);
    free(W2);
    free(dW2);
    free(Z1);
    free(Z2);
    free(G2);
    free(G1);
    free(rs);
    free(P1);
    free(X8);
    free(O1);
    free(W8);
}

void sp_bench_kernels(const sp_bench_ctx_t *ctx)
{
    sp_rng_t r;
    sp_rng_init(&r, 2024);
    s_bench_neuron(ctx, &r);
    for (int t = 1; t <= 2; t++) {
        const char *sfx = t == 1 ? "" : "_t2";
        char name[96];
        snprintf(name, sizeof name, "kern_gemm_fwd_64x784x128%s", sfx);
        s_bench_gemm(ctx, &r, name, S_FWD, 64, 784, 128, t);
        snprintf(name, sizeof name, "kern_gemm_dw_64x784x128%s", sfx);
        s_bench_gemm(ctx, &r, name, S_DW, 64, 784, 128, t);
        snprintf(name, sizeof name, "kern_gemm_u8s8_64x784x128%s", sfx);
        s_bench_gemm(ctx, &r, name, S_U8, 64, 784, 128, t);
        snprintf(name, sizeof name, "kern_gemm_fwd_64x128x10%s", sfx);
        s_bench_gemm(ctx, &r, name, S_FWD, 64, 128, 10, t);
        snprintf(name, sizeof name, "kern_gemm_dw_64x128x10%s", sfx);
        s_bench_gemm(ctx, &r, name, S_DW, 64, 128, 10, t);
        snprintf(name, sizeof name, "kern_gemm_dx_64x128x10%s", sfx);
        s_bench_gemm(ctx, &r, name, S_DX, 64, 128, 10, t);
        snprintf(name, sizeof name, "kern_step_784_128_10_f32%s", sfx);
        s_bench_step(ctx, &r, name, 0, t);
        snprintf(name, sizeof name, "kern_step_784_128_10_u8%s", sfx);
        s_bench_step(ctx, &r, name, 1, t);
    }
}
