/* bitindex: a hierarchical bit index over Morton codes (a sparse octree).
 * Level 0 marks single codes, level 1 blocks of 8 codes, level 2 blocks of 64,
 * ..., level 16 the whole 48-bit space. Each marked block at level L >= 1 keeps
 * an 8-bit mask of its marked children at level L - 1. A box or radius query
 * starts at the top and descends only into marked blocks that meet the query
 * region; blocks wholly inside it are listed without further tests. */
#ifndef SP_BITINDEX_H
#define SP_BITINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/morton.h"

typedef struct sp_bitindex sp_bitindex_t;

#define SP_BITINDEX_LEVELS 16 /* levels 1..16 are stored; level 0 is their masks */

/* New empty index; NULL when out of memory. */
sp_bitindex_t *sp_bitindex_new(void);
/* Index of n codes (any order, repeats allowed). *out receives the new index
 * (caller owns it). SP_E_RANGE (nothing made) when a code has more than 48
 * bits, SP_E_NOMEM when out of memory. */
int sp_bitindex_build(const uint64_t *codes, size_t n, sp_bitindex_t **out);
/* Frees *ip (NULL-safe, idempotent) and sets *ip = NULL. */
void sp_bitindex_destroy(sp_bitindex_t **ip);

/* Marks code (O(marked blocks) per new block: meant for modest sizes; use
 * build for bulk loads). SP_E_RANGE for a code above 48 bits, SP_E_NOMEM
 * (index unchanged). Inserting a marked code is a no-op. */
int sp_bitindex_insert(sp_bitindex_t *ix, uint64_t code);
int sp_bitindex_contains(const sp_bitindex_t *ix, uint64_t code);
/* Distinct codes marked. */
size_t sp_bitindex_count(const sp_bitindex_t *ix);
size_t sp_bitindex_heap_bytes(const sp_bitindex_t *ix);

/* Called for every code found, in increasing code order; a non-zero return
 * stops the query and is returned by it. */
typedef int (*sp_bitindex_visit_fn)(uint64_t code, void *arg);
/* Every marked position p with lo <= p <= hi on each axis (inclusive). An
 * empty box (lo > hi on some axis) finds nothing. Returns 0 or fn's value. */
int sp_bitindex_query_box(const sp_bitindex_t *ix, sp_pos_t lo, sp_pos_t hi,
                          sp_bitindex_visit_fn fn, void *arg);
/* Every marked position p with sp_pos_dist2(p, center) <= radius^2 (no
 * wrap-around). Returns 0 or fn's value. */
int sp_bitindex_query_radius(const sp_bitindex_t *ix, sp_pos_t center, uint32_t radius,
                             sp_bitindex_visit_fn fn, void *arg);

#endif
