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

/* Region side 4: a region is 64 consecutive Morton codes, i.e. one 64-bit
 * occupancy word and 8, 16 or 32 bytes of packed weights. Small enough that a
 * neuron with 128 weights fills two regions completely (memory stays
 * proportional to the weights stored; the notes' 64^3 regions would hold such
 * a neuron at 0.05% density), large enough that region bookkeeping is a small
 * fraction of the packed bits.
 *
 * Capacity and saturation: a neuron configures capacity = its fan-in, the
 * number of input slots it can hold a weight for, so saturation = used /
 * capacity is the fraction of those slots that hold a weight, i.e. "running
 * out of room": it reaches 1 when every input has a weight, and growth
 * (mitosis) triggers above the growth threshold. With capacity 0 the
 * denominator is the cells of the regions allocated so far (region fill).
 * Saturation exceeds 1 when more weights are stored than the capacity.
 *
 * Storage: one allocation per memory in the common dense case (header of 16
 * bytes, first region key, packed bits; no occupancy maps while every
 * allocated cell is occupied and the regions are consecutive, which the
 * memory detects by itself after a store; sp_memory_shrink for writers that
 * use run_mut), otherwise an extra block with the extent table, occupancy
 * bits and packed bits (exact size after reserve_run, split and clone; half
 * again as much room when stores add regions one by one, so that appending
 * is amortised O(1); a region added in the middle moves the later ones).
 * Room for ceil(capacity / region cells) regions (at most 1,024) is reserved
 * inline at creation, so set capacity before storing. */
#define SP_MEMORY_DEFAULT_SIDE 4 /* 4^3 = 64 cells a region */

typedef struct {
    uint8_t bits;          /* 1, 2 or 4 */
    uint16_t region_side;  /* power of two, 2..64; 0 = SP_MEMORY_DEFAULT_SIDE */
    uint64_t capacity;     /* cells this memory may hold (saturation's denominator),
                              at most 2^32 - 1; 0 = the cells of the regions allocated
                              so far */
    uint32_t bloom_expected; /* expected weights for the bloom filter (1% false
                                positives) of the sparse negative path of retrieve;
                                0 = no bloom filter (the default: dense memories gain
                                nothing from it and it costs ~1.2 bytes a weight) */
} sp_memory_config_t;

typedef struct {
    uint64_t total_capacity;  /* cells: config capacity, or cells of allocated regions */
    uint64_t used_capacity;   /* weights stored */
    float saturation;         /* used / total, 0..1 (above 1 if over capacity) */
    float compression_ratio;  /* 32 / bits */
    uint32_t active_regions;  /* regions allocated */
    float average_density;    /* mean over regions of stored / region cells */
} sp_memory_stats_t;

/* SP_OK, or SP_E_INPUT with a message in err (may be NULL) naming the bad field. */
int sp_memory_config_check(const sp_memory_config_t *cfg, char *err, size_t errlen);
/* New empty memory; NULL on bad config (see sp_memory_config_check) or no memory. */
sp_memory_t *sp_memory_new(const sp_memory_config_t *cfg);
/* Frees *mp (NULL-safe, idempotent) and sets *mp = NULL. */
void sp_memory_destroy(sp_memory_t **mp);
/* Deep copy; NULL when out of memory. */
sp_memory_t *sp_memory_clone(const sp_memory_t *m);

unsigned sp_memory_bits(const sp_memory_t *m);
unsigned sp_memory_region_side(const sp_memory_t *m);
/* Changes the saturation denominator (0 = cells of allocated regions). The
 * inline room reserved at creation does not change. */
void sp_memory_set_capacity(sp_memory_t *m, uint32_t capacity);

/* Stores w (quantized to the nearest level) at p / at a Morton code.
 * SP_E_NOMEM when a region cannot be allocated (memory unchanged);
 * SP_E_RANGE for a code of more than 48 bits. */
int sp_memory_store(sp_memory_t *m, sp_pos_t p, float w);
int sp_memory_store_code(sp_memory_t *m, uint64_t code, float w);
/* Writes the dequantized weight at p to *w: SP_OK, or SP_E_NOTFOUND when no
 * weight was ever stored there (or it was removed). */
int sp_memory_retrieve(const sp_memory_t *m, sp_pos_t p, float *w);
int sp_memory_retrieve_code(const sp_memory_t *m, uint64_t code, float *w);
/* Same, giving the stored level (0 .. 2^bits - 1). */
int sp_memory_retrieve_level(const sp_memory_t *m, uint64_t code, uint8_t *level);
/* Adds delta to the weight at p with unbiased stochastic rounding drawn from
 * rng (nearest rounding when rng is NULL); an absent weight starts from 0.
 * Stochastic rounding makes E[stored value] = old value + delta (inside
 * [-1, 1]), so updates far below one quantization step still move the weight
 * on average, where nearest rounding would drop every one of them.
 * SP_E_NOMEM as for store. */
int sp_memory_update(sp_memory_t *m, sp_pos_t p, float delta, sp_rng_t *rng);
int sp_memory_update_code(sp_memory_t *m, uint64_t code, float delta, sp_rng_t *rng);
/* Marks the cell at code empty; SP_E_NOTFOUND when it was. */
int sp_memory_remove_code(sp_memory_t *m, uint64_t code);

/* Allocates every region covering codes [base, base + n); existing weights
 * are kept, new cells stay empty. */
int sp_memory_reserve_run(sp_memory_t *m, uint64_t base, uint64_t n);
/* Packed levels of codes [base, base + n) as one contiguous run (weight i at
 * index i of the run, see quant.h), or NULL when those regions are not all
 * allocated and adjacent, or base is not region-aligned. Borrowed: valid
 * until the next call that allocates a region or changes which cells are
 * occupied (store/update of an empty cell, remove, reserve_run,
 * set_occupied(code, 0), shrink); writing levels of occupied cells
 * through run_mut and set_occupied(code, 1) never move it. */
const uint8_t *sp_memory_run(const sp_memory_t *m, uint64_t base, uint64_t n);
uint8_t *sp_memory_run_mut(sp_memory_t *m, uint64_t base, uint64_t n);
/* Occupancy of the same run as a bitmap, bit i = cell base + i occupied
 * (64 cells a word; read whole words: bits past n belong to the next cells);
 * NULL under the same conditions, or when the run does not start on a word
 * (region side 2), or for a fully occupied (compact) memory when n > 65,536.
 * Writers of a run update the occupancy through sp_memory_set_occupied, which
 * keeps counts right. Same lifetime as sp_memory_run. */
const uint64_t *sp_memory_run_occupancy(const sp_memory_t *m, uint64_t base, uint64_t n);
/* Marks the cell at code occupied (1) or empty (0). SP_E_NOTFOUND when its
 * region is not allocated, SP_E_NOMEM when emptying a cell of a compact memory
 * cannot allocate the occupancy maps. Marking occupied never moves data (and
 * never compacts: call sp_memory_shrink after filling a run this way). */
int sp_memory_set_occupied(sp_memory_t *m, uint64_t code, int occupied);
/* Switches to the compact one-allocation form when every allocated cell is
 * occupied and the regions are consecutive (invalidates run pointers).
 * Returns 1 when the memory is now compact, 0 otherwise. */
int sp_memory_shrink(sp_memory_t *m);

/* Child a gets the first half of the regions in key order (rounded down),
 * child b the rest; no region in both; the parent is unchanged. Children keep
 * the parent's bits, region side, capacity and bloom setting. *a and *b are
 * overwritten (the caller owns the new memories). SP_E_NOMEM: nothing made. */
int sp_memory_split_into(const sp_memory_t *m, sp_memory_t **a, sp_memory_t **b);

void sp_memory_stats(const sp_memory_t *m, sp_memory_stats_t *out);
/* Weights stored. */
uint64_t sp_memory_count(const sp_memory_t *m);
/* Heap bytes this memory owns (struct, region table, maps, packed bits, bloom). */
size_t sp_memory_heap_bytes(const sp_memory_t *m);

/* Visits every stored weight in code order; stops early when fn returns
 * non-zero and returns that value (SP_OK after a full visit). */
typedef int (*sp_memory_visit_fn)(uint64_t code, uint8_t level, void *arg);
int sp_memory_foreach(const sp_memory_t *m, sp_memory_visit_fn fn, void *arg);

#endif
