/* bench_network: benchmarks of this group (filled in by the module's owner). */
#include "bench/bench.h"

void sp_bench_network(const sp_bench_ctx_t *ctx)
{
    (void)ctx;
}
