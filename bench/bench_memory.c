/* bench_memory: spatial memory store/retrieve (ns per operation) and the
 * resident memory of a million neuron-sized memories (MB).
 * The memory figures run in a forked child each, so that one width's freed
 * heap cannot hide the next width's growth; the child reports the growth of
 * its resident set (/proc/self/statm) around building the memories. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/memory.h"
#include "common/rng.h"

static void s_store_retrieve(const sp_bench_ctx_t *ctx)
{
    int want_store = sp_bench_wanted(ctx, "memory_store");
    int want_retrieve = sp_bench_wanted(ctx, "memory_retrieve");
    if (!want_store && !want_retrieve) {
        return;
    }
    /* a dense memory of 65,536 cells (1,024 regions of 64) at 4 bits */
    enum { CELLS = 65536, OPS = 20000000 };
    sp_memory_config_t cfg = {.bits = 4};
    sp_memory_t *m = sp_memory_new(&cfg);
    if (m == NULL) {
        return;
    }
    for (uint64_t c = 0; c < CELLS; c++) {
        sp_memory_store_code(m, c, 0.0f);
    }
    /* odd multiplier mod 2^16: every cell, in a scattered order */
    if (want_store) {
        uint64_t t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < OPS; i++) {
            sp_memory_store_code(m, (i * 40503u) & (CELLS - 1), (float)(i & 15) * 0.125f - 1.0f);
        }
        sp_bench_report("memory_store", (double)(sp_bench_now_ns() - t0) / OPS, "ns");
    }
    if (want_retrieve) {
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < OPS; i++) {
            float w = 0.0f;
            sp_memory_retrieve_code(m, (i * 40503u) & (CELLS - 1), &w);
            acc += (uint64_t)(w > 0.0f);
        }
        sp_bench_sink(acc);
        sp_bench_report("memory_retrieve", (double)(sp_bench_now_ns() - t0) / OPS, "ns");
    }
    sp_memory_destroy(&m);

    /* sparse: 100,000 weights scattered over the whole space, lookups of
     * absent positions with and without the bloom filter */
    if (!want_retrieve) {
        return;
    }
    for (int bloom = 0; bloom < 2; bloom++) {
        const char *name = bloom ? "memory_retrieve_miss_sparse_bloom" : "memory_retrieve_miss_sparse";
        if (!sp_bench_wanted(ctx, name)) {
            continue;
        }
        sp_memory_config_t sc = {.bits = 4, .bloom_expected = bloom ? 100000 : 0};
        sp_memory_t *s = sp_memory_new(&sc);
        if (s == NULL) {
            return;
        }
        sp_rng_t r;
        sp_rng_init(&r, 3);
        for (int i = 0; i < 100000; i++) {
            sp_memory_store_code(s, sp_rng_next(&r) & 0xFFFFFFFFFFFFULL, 0.5f);
        }
        const uint32_t ops = 5000000;
        uint64_t acc = 0, t0 = sp_bench_now_ns();
        for (uint32_t i = 0; i < ops; i++) {
            float w;
            acc += (uint64_t)sp_memory_retrieve_code(s, ((uint64_t)i * 0x9E3779B97F4A7ULL) & 0xFFFFFFFFFFFFULL, &w);
        }
        sp_bench_sink(acc);
        sp_bench_report(name, (double)(sp_bench_now_ns() - t0) / ops, "ns");
        sp_memory_destroy(&s);
    }
}

static long s_rss_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) {
        resident = -1;
    }
    fclose(f);
    return resident;
}

/* In the child: builds n memories of 256 weights at codes 0..255, as a
 * neuron of fan-in 256 holds them (capacity 256, run reserved, then stored),
 * and returns the resident growth in bytes (-1 on failure). The array of
 * handles is allocated and touched before the first reading: it belongs to
 * whoever holds the memories (a neuron keeps one pointer), not to them. */
static double s_million_rss(unsigned bits, size_t n, double *heap_mb)
{
    sp_memory_t **all = malloc(n * sizeof(*all));
    if (all == NULL) {
        return -1.0;
    }
    /* through a volatile pointer: the compiler must not turn this into calloc,
     * whose untouched zero pages would fault in during the measurement */
    volatile unsigned char *touch = (volatile unsigned char *)all;
    for (size_t b = 0; b < n * sizeof(*all); b += 512) {
        touch[b] = 0;
    }
    long before = s_rss_pages();
    sp_memory_config_t cfg = {.bits = (uint8_t)bits, .capacity = 256};
    size_t heap = 0;
    for (size_t i = 0; i < n; i++) {
        all[i] = sp_memory_new(&cfg);
        if (all[i] == NULL || sp_memory_reserve_run(all[i], 0, 256) != 0) {
            return -1.0;
        }
        for (uint64_t c = 0; c < 256; c++) {
            sp_memory_store_code(all[i], c, (float)((i + c) % 15) / 7.0f - 1.0f);
        }
        heap += sp_memory_heap_bytes(all[i]);
    }
    long after = s_rss_pages();
    *heap_mb = (double)heap / 1e6;
    return (double)(after - before) * (double)sysconf(_SC_PAGESIZE);
}

static void s_million(const sp_bench_ctx_t *ctx)
{
    static const unsigned widths[3] = {1, 2, 4};
    for (int wi = 0; wi < 3; wi++) {
        char name[64], heap_name[64];
        snprintf(name, sizeof(name), "memory_1m_256_b%u", widths[wi]);
        snprintf(heap_name, sizeof(heap_name), "memory_1m_256_b%u_heap", widths[wi]);
        if (!sp_bench_wanted(ctx, name)) {
            continue;
        }
        int fds[2];
        if (pipe(fds) != 0) {
            return;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            close(fds[0]);
            close(fds[1]);
            return;
        }
        if (pid == 0) {
            double res[2] = {0, 0};
            res[0] = s_million_rss(widths[wi], 1000000, &res[1]);
            ssize_t wr = write(fds[1], res, sizeof(res));
            _exit(wr == (ssize_t)sizeof(res) ? 0 : 1);
        }
        close(fds[1]);
        double res[2] = {-1, 0};
        ssize_t rd = read(fds[0], res, sizeof(res));
        close(fds[0]);
        waitpid(pid, NULL, 0);
        if (rd != (ssize_t)sizeof(res) || res[0] < 0) {
            fprintf(stderr, "%s: measurement failed\n", name);
            continue;
        }
        /* MB = 10^6 bytes: the floor is 256 * bits / 8 bytes a memory */
        sp_bench_report(name, res[0] / 1e6, "MB");
        sp_bench_report(heap_name, res[1], "MB");
    }
}

void sp_bench_memory(const sp_bench_ctx_t *ctx)
{
    /* first: a child forked after other benchmarks inherits their freed, still
     * resident heap, which would absorb part of the growth being measured */
    s_million(ctx);
    s_store_retrieve(ctx);
}
