/* memory: a neuron's private spatial memory of bit-packed weights.
 * Weights sit at 3D positions; positions are grouped in cubic regions (side
 * 2^k, so a region is an aligned block of 8^k consecutive Morton codes) keyed
 * by the high bits of the Morton code and allocated on first write. Each
 * region holds packed weights and an occupancy map. Regions are kept sorted by
 * key and their packed bits lie in key order in one buffer, so the weights of
 * consecutive codes in consecutive regions form one contiguous packed run:
 * the hot path of a neuron reads that run directly (sp_memory_run).
 * Reads (retrieve, run, stats) are safe from many threads at once; writes to
 * one memory must come from one thread at a time. */
#ifndef SP_MEMORY_H
#define SP_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "common/morton.h"
#include "common/rng.h"

typedef struct sp_memory sp_memory_t;

#define SP_MEMORY_DEFAULT_SIDE 4 /* 4^3 = 64 cells a region */

typedef struct {
    uint8_t bits;          /* 1, 2 or 4 */
    uint16_t region_side;  /* power of two, 2..64; 0 = SP_MEMORY_DEFAULT_SIDE */
    uint64_t capacity;     /* cells this memory may hold (saturation's denominator);
                              0 = the cells of the regions allocated so far */
    uint32_t bloom_expected; /* expected weights for the bloom filter of the sparse
                                negative path; 0 = no bloom filter */
} sp_memory_config_t;

typedef struct {
    uint64_t total_capacity;  /* cells: config capacity, or cells of allocated regions */
    uint64_t used_capacity;   /* weights stored */
    float saturation;         /* used / total, 0..1 */
    float compression_ratio;  /* 32 / bits */
    uint32_t active_regions;  /* regions allocated */
    float average_density;    /* mean over regions of stored / region cells */
} sp_memory_stats_t;

/* New empty memory; NULL on bad config or no memory. */
sp_memory_t *sp_memory_new(const sp_memory_config_t *cfg);
/* Frees *mp (NULL-safe, idempotent) and sets *mp = NULL. */
void sp_memory_destroy(sp_memory_t **mp);
/* Deep copy; NULL when out of memory. */
sp_memory_t *sp_memory_clone(const sp_memory_t *m);

unsigned sp_memory_bits(const sp_memory_t *m);
unsigned sp_memory_region_side(const sp_memory_t *m);

/* Stores w (quantized to the nearest level) at p / at a Morton code.
 * SP_E_NOMEM when a region cannot be allocated (memory unchanged). */
int sp_memory_store(sp_memory_t *m, sp_pos_t p, float w);
int sp_memory_store_code(sp_memory_t *m, uint64_t code, float w);
/* Writes the dequantized weight at p to *w: SP_OK, or SP_E_NOTFOUND when no
 * weight was ever stored there (or it was removed). */
int sp_memory_retrieve(const sp_memory_t *m, sp_pos_t p, float *w);
int sp_memory_retrieve_code(const sp_memory_t *m, uint64_t code, float *w);
/* Adds delta to the weight at p with unbiased stochastic rounding drawn from
 * rng (nearest rounding when rng is NULL); an absent weight starts from 0.
 * SP_E_NOMEM as for store. */
int sp_memory_update(sp_memory_t *m, sp_pos_t p, float delta, sp_rng_t *rng);
/* Marks the cell at code empty; SP_E_NOTFOUND when it was. */
int sp_memory_remove_code(sp_memory_t *m, uint64_t code);

/* Allocates every region covering codes [base, base + n); existing weights
 * are kept, new cells stay empty. */
int sp_memory_reserve_run(sp_memory_t *m, uint64_t base, uint64_t n);
/* Packed levels of codes [base, base + n) as one contiguous run (weight i at
 * index i of the run, see quant.h), or NULL when those regions are not all
 * allocated and adjacent, or base is not region-aligned. Borrowed: valid until
 * the next write that allocates a region. */
const uint8_t *sp_memory_run(const sp_memory_t *m, uint64_t base, uint64_t n);
uint8_t *sp_memory_run_mut(sp_memory_t *m, uint64_t base, uint64_t n);
/* Occupancy of the same run as a bitmap, bit i = cell base + i occupied
 * (64 cells a word); NULL under the same conditions. Writers of a run update
 * the occupancy through sp_memory_set_occupied, which keeps counts right. */
const uint64_t *sp_memory_run_occupancy(const sp_memory_t *m, uint64_t base, uint64_t n);
void sp_memory_set_occupied(sp_memory_t *m, uint64_t code, int occupied);

/* Child a gets the first half of the regions in key order (rounded down),
 * child b the rest; no region in both; the parent is unchanged. */
int sp_memory_split_into(const sp_memory_t *m, sp_memory_t **a, sp_memory_t **b);

void sp_memory_stats(const sp_memory_t *m, sp_memory_stats_t *out);
/* Weights stored. */
uint64_t sp_memory_count(const sp_memory_t *m);
/* Heap bytes this memory owns (struct, region table, maps, packed bits, bloom). */
size_t sp_memory_heap_bytes(const sp_memory_t *m);

/* Visits every stored weight in code order; stops early when fn returns non-zero. */
typedef int (*sp_memory_visit_fn)(uint64_t code, uint8_t level, void *arg);
int sp_memory_foreach(const sp_memory_t *m, sp_memory_visit_fn fn, void *arg);

#endif
