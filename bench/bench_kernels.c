/* bench_kernels: benchmarks of this group (filled in by the module's owner). */
#include "bench/bench.h"

void sp_bench_kernels(const sp_bench_ctx_t *ctx)
{
    (void)ctx;
}
