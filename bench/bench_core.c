/* bench_core: Morton codes, quantization and the bloom filter, in ns per
 * operation (throughput: independent calls back to back). Inputs vary every
 * iteration, the calls are out of line, and every result feeds a sink, so
 * the compiler can neither hoist nor drop the work. */
#include <stdlib.h>

#include "bench/bench.h"
#include "common/bloom.h"
#include "common/morton.h"
#include "common/quant.h"
#include "common/rng.h"

#define S_N_OPS 20000000u

static void s_morton(const sp_bench_ctx_t *ctx)
{
    if (sp_bench_wanted(ctx, "morton_encode")) {
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < S_N_OPS; i++) {
            sp_pos_t p = {(uint16_t)i, (uint16_t)(i * 7u), (uint16_t)(i * 13u)};
            acc += sp_morton_encode(p) & 1;
        }
        sp_bench_sink(acc);
        sp_bench_report("morton_encode", (double)(sp_bench_now_ns() - t0) / S_N_OPS, "ns");
    }
    if (sp_bench_wanted(ctx, "morton_decode")) {
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < S_N_OPS; i++) {
            sp_pos_t p = sp_morton_decode((uint64_t)i * 0x9E3779B97F4AULL & 0xFFFFFFFFFFFFULL);
            acc += p.x ^ p.z;
        }
        sp_bench_sink(acc);
        sp_bench_report("morton_decode", (double)(sp_bench_now_ns() - t0) / S_N_OPS, "ns");
    }
    /* the portable paths, for comparison with the BMI2 ones chosen above */
    if (sp_bench_wanted(ctx, "morton_encode_ref")) {
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < S_N_OPS; i++) {
            sp_pos_t p = {(uint16_t)i, (uint16_t)(i * 7u), (uint16_t)(i * 13u)};
            acc += sp_morton_encode_ref(p) & 1;
        }
        sp_bench_sink(acc);
        sp_bench_report("morton_encode_ref", (double)(sp_bench_now_ns() - t0) / S_N_OPS, "ns");
    }
    if (sp_bench_wanted(ctx, "morton_decode_ref")) {
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < S_N_OPS; i++) {
            sp_pos_t p = sp_morton_decode_ref((uint64_t)i * 0x9E3779B97F4AULL & 0xFFFFFFFFFFFFULL);
            acc += p.x ^ p.z;
        }
        sp_bench_sink(acc);
        sp_bench_report("morton_decode_ref", (double)(sp_bench_now_ns() - t0) / S_N_OPS, "ns");
    }
}

/* ns per weight to quantize and pack a 4,096-weight row at 4 bits. */
static void s_quant(const sp_bench_ctx_t *ctx)
{
    if (!sp_bench_wanted(ctx, "quantize_b4")) {
        return;
    }
    enum { N = 4096, REPS = 4000 };
    float *w = malloc(N * sizeof(*w));
    uint8_t *packed = malloc(N / 2);
    if (w == NULL || packed == NULL) {
        free(w);
        free(packed);
        return;
    }
    sp_rng_t r;
    sp_rng_init(&r, 1);
    for (int i = 0; i < N; i++) {
        w[i] = sp_rng_float(&r) * 2.2f - 1.1f;
    }
    uint64_t acc = 0, t0 = sp_bench_now_ns();
    for (int rep = 0; rep < REPS; rep++) {
        w[rep % N] += 1e-3f; /* a changing input */
        sp_quant_pack(w, N, 4, packed);
        acc += packed[rep % (N / 2)];
    }
    sp_bench_sink(acc);
    sp_bench_report("quantize_b4", (double)(sp_bench_now_ns() - t0) / ((double)N * REPS), "ns");
    free(w);
    free(packed);
}

/* Insert and lookup on a filter of n codes at 1%. The headline figures use
 * 100,000 codes (120 KB, in L2, the size of a large neuron's filter); the
 * _1m variants use a million (1.2 MB, beyond L2: memory latency shows).
 * Lookups alternate between inserted and mostly absent codes. */
static void s_bloom_one(const sp_bench_ctx_t *ctx, uint32_t n, const char *ins_name,
                        const char *look_name)
{
    int want_insert = sp_bench_wanted(ctx, ins_name);
    int want_lookup = sp_bench_wanted(ctx, look_name);
    if (!want_insert && !want_lookup) {
        return;
    }
    sp_bloom_t *b = sp_bloom_new(n, 0.01);
    if (b == NULL) {
        return;
    }
    const uint64_t stride = 0x9E3779B97F4A7ULL; /* distinct 48-bit codes */
    const uint32_t ins_ops = 20000000;
    uint64_t t0 = sp_bench_now_ns();
    for (uint32_t i = 0, j = 0; i < ins_ops; i++) {
        /* the same n codes over and over: the filter does not overfill;
         * a wrapping counter, not i % n, keeps a division out of the timing */
        sp_bloom_insert(b, ((uint64_t)j * stride) & 0xFFFFFFFFFFFFULL);
        j = j + 1 == n ? 0 : j + 1;
    }
    if (want_insert) {
        sp_bench_report(ins_name, (double)(sp_bench_now_ns() - t0) / ins_ops, "ns");
    }
    if (want_lookup) {
        uint64_t acc = 0;
        const uint32_t ops = 20000000;
        t0 = sp_bench_now_ns();
        for (uint32_t i = 0, j = 0; i < ops; i++) {
            acc += (uint64_t)sp_bloom_might_contain(b, ((uint64_t)j * stride) & 0xFFFFFFFFFFFFULL);
            j = j + 1 == 2 * n ? 0 : j + 1;
        }
        sp_bench_sink(acc);
        sp_bench_report(look_name, (double)(sp_bench_now_ns() - t0) / ops, "ns");
    }
    sp_bloom_destroy(&b);
}

static void s_bloom(const sp_bench_ctx_t *ctx)
{
    s_bloom_one(ctx, 100000, "bloom_insert", "bloom_lookup");
    s_bloom_one(ctx, 1000000, "bloom_insert_1m", "bloom_lookup_1m");
}

void sp_bench_core(const sp_bench_ctx_t *ctx)
{
    s_morton(ctx);
    s_quant(ctx);
    s_bloom(ctx);
}
