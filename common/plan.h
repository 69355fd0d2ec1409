/* plan: how one training step is cut into nodes of the reduction tree
 * (common/reduce.h) and which worker computes each. Arithmetic on the
 * step's shape and the workers' measured speeds only: the coordinator calls
 * it for every step, and test_plan checks it without any process. Whatever
 * the plan, each node is a node of the tree, so the step's gradient keeps
 * its bits; the plan only decides how long the step takes.
 *
 * A step of `batch` samples is n_parts = ceil(batch / partition) partitions
 * (the last may hold fewer). A cut is recorded per partition: count[p] > 0
 * when a node of count[p] partitions starts at p, 0 for the partitions
 * inside a node; owner[p] is the id of the worker meant to compute the node
 * starting at p (0: any worker). */
#ifndef SP_COMMON_PLAN_H
#define SP_COMMON_PLAN_H

#include <stdint.h>

typedef struct {
    uint32_t batch;     /* samples in the step, >= 1 */
    uint32_t partition; /* samples in a partition, >= 1 */
    uint32_t n_parts;   /* ceil(batch / partition) */
} sp_plan_step_t;

/* A live worker: its id (nonzero) and its compute time per sample (us). */
typedef struct {
    uint32_t id;
    double us;
} sp_plan_worker_t;

/* The shape of a step of `batch` samples in partitions of `partition`. */
sp_plan_step_t sp_plan_step(uint32_t batch, uint32_t partition);
/* Samples in partitions [first, first + count) of step s (count >= 1). */
uint32_t sp_plan_span(const sp_plan_step_t *s, uint32_t first, uint32_t count);
/* True when the node of `count` >= 2 partitions starting at `first` may be
 * split: both its children hold min_samples samples or more. */
int sp_plan_can_split(const sp_plan_step_t *s, uint32_t first, uint32_t count,
                      uint32_t min_samples);
/* The even cut into count[n_parts]: the root, then the largest node that
 * may be split (sp_plan_can_split) split into its two children until there
 * are `want` nodes or none may be. Returns the nodes. So the step is split
 * at all exactly when its root may be. */
uint32_t sp_plan_cut(const sp_plan_step_t *s, uint32_t want, uint32_t min_samples, uint32_t *count);
/* Gives the nodes of an even cut (count[], n_nodes >= 2 of them) to the
 * workers w[0..k) (sorted here, fastest first), and re-cuts the step when
 * they run at different speeds. Candidates, timed at the measured speeds:
 * - the even cut, its largest nodes to the fastest workers, in turn;
 * - with m = min(k, n_nodes), for j from m down to max(2, m - drop) (a
 *   much slower worker is better left out): the j fastest workers each
 *   take a range of partitions in proportion to their speed (one at
 *   least), cut into the fewest tree nodes that cover it (sp_reduce_cover).
 *   Every node a worker holds beyond its first costs node_us (one more
 *   result to send).
 * The candidate that ends first is written to count[] and owner[].
 * Returns the node count; with k < 2, or without memory, the even cut stays
 * with every owner 0. */
uint32_t sp_plan_assign(const sp_plan_step_t *s, sp_plan_worker_t *w, uint32_t k, uint32_t n_nodes,
                        double node_us, uint32_t drop, uint32_t *count, uint32_t *owner);

#endif
