/* reduce: the one fixed tree in which a step's partition gradients are summed.
 * A node of n >= 2 partitions has a left child of sp_reduce_split(n)
 * partitions and a right child of the rest; a node's sum is left + right,
 * element by element. Whoever computes a node (one worker for the whole step,
 * several for subtrees, the coordinator combining them) adds the same floats
 * in the same order, so the step's gradient has the same bits for any number
 * of workers and any assignment of nodes to them. */
#ifndef SP_COMMON_REDUCE_H
#define SP_COMMON_REDUCE_H

#include <stddef.h>
#include <stdint.h>

/* Partitions in the left child of a node of n >= 2 partitions: the largest
 * power of two below n (so left subtrees are complete). */
uint32_t sp_reduce_split(uint32_t n);
/* The nodes of the tree over n partitions that cover partitions [a, b)
 * exactly (0 <= a < b <= n), each as large as it can be, left to right:
 * node i starts at first[i] and holds count[i] partitions. Any range comes
 * out as at most SP_REDUCE_COVER_MAX nodes (two per level of a tree over
 * 2^32 partitions). Returns the node count. */
#define SP_REDUCE_COVER_MAX 64
uint32_t sp_reduce_cover(uint32_t n, uint32_t a, uint32_t b, uint32_t *first, uint32_t *count);
/* dst[i] = dst[i] + src[i] for i < n: the combine step of a node. */
void sp_reduce_add_f32(float *restrict dst, const float *restrict src, size_t n);
/* dst[i] += src[i] for hit counts (integers: any order gives the same sum). */
void sp_reduce_add_u32(uint32_t *restrict dst, const uint32_t *restrict src, size_t n);

#endif
