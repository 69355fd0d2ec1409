/* bench: the spatium-bench harness. Each group prints lines
 * `NAME VALUE UNIT`; --filter SUBSTRING runs only benchmarks whose name
 * contains it. Groups register in bench/main.c. */
#ifndef SP_BENCH_H
#define SP_BENCH_H

#include <stdint.h>

typedef struct {
    const char *filter; /* NULL = all */
} sp_bench_ctx_t;

/* True when a benchmark of this name should run. */
int sp_bench_wanted(const sp_bench_ctx_t *ctx, const char *name);
/* Prints one result line. */
void sp_bench_report(const char *name, double value, const char *unit);
/* Monotonic clock in nanoseconds. */
uint64_t sp_bench_now_ns(void);
/* Keeps a value alive so the compiler cannot drop the work producing it. */
void sp_bench_sink(uint64_t v);

void sp_bench_core(const sp_bench_ctx_t *ctx);    /* morton, quantize, bloom (bench_core.c) */
void sp_bench_memory(const sp_bench_ctx_t *ctx);  /* spatial memory (bench_memory.c) */
void sp_bench_network(const sp_bench_ctx_t *ctx); /* neuron, layer, training (bench_network.c) */
void sp_bench_kernels(const sp_bench_ctx_t *ctx); /* packed dot products, GEMM (bench_kernels.c) */
void sp_bench_dist(const sp_bench_ctx_t *ctx);    /* distributed trainer (bench_dist.c) */

#endif
