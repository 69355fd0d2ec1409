/* spatium-bench: runs every benchmark group, one `NAME VALUE UNIT` line each.
 * Benchmarks are measurements, not tests: nothing here fails on a slow machine. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

static volatile uint64_t s_sink;

int sp_bench_wanted(const sp_bench_ctx_t *ctx, const char *name)
{
    return ctx->filter == NULL || strstr(name, ctx->filter) != NULL;
}

void sp_bench_report(const char *name, double value, const char *unit)
{
    printf("%s %.4g %s\n", name, value, unit);
    fflush(stdout);
}

uint64_t sp_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sp_bench_sink(uint64_t v)
{
    s_sink += v;
}

int main(int argc, char **argv)
{
    sp_bench_ctx_t ctx = {NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            ctx.filter = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: spatium-bench [--filter SUBSTRING]\n");
            return 0;
        } else {
            fprintf(stderr, "spatium-bench: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    sp_bench_core(&ctx);
    sp_bench_memory(&ctx);
    sp_bench_kernels(&ctx);
    sp_bench_network(&ctx);
    sp_bench_dist(&ctx);
    return 0;
}
