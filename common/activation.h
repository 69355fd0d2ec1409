/* activation: the twelve activation functions with analytic derivatives,
 * the per-neuron 8x8 activation map with hit counts, and the
 * locality-sensitive pattern hash that picks a cell from an input. */
#ifndef SP_ACTIVATION_H
#define SP_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

typedef enum {
    SP_ACT_RELU = 0,
    SP_ACT_LEAKY_RELU, /* alpha = SP_ACT_LEAKY_ALPHA */
    SP_ACT_SIGMOID,
    SP_ACT_TANH,
    SP_ACT_GELU,       /* tanh approximation */
    SP_ACT_SWISH,
    SP_ACT_MISH,
    SP_ACT_ELU,        /* alpha = SP_ACT_ELU_ALPHA */
    SP_ACT_SOFTPLUS,
    SP_ACT_HARD_SIGMOID,
    SP_ACT_HARD_TANH,
    SP_ACT_SINE,
    SP_ACT_COUNT
} sp_act_t;

#define SP_ACT_LEAKY_ALPHA 0.01f
#define SP_ACT_ELU_ALPHA 1.0f

const char *sp_act_name(sp_act_t f);
/* f(x) and f'(x); switch dispatch, overflow-guarded for large |x|. */
float sp_act_apply(sp_act_t f, float x);
float sp_act_derivative(sp_act_t f, float x);

#define SP_ACTMAP_SIDE 8
#define SP_ACTMAP_CELLS 64

typedef struct {
    uint8_t func[SP_ACTMAP_CELLS]; /* sp_act_t per cell, row-major: cell = row*8 + col */
    uint32_t hits[SP_ACTMAP_CELLS]; /* times each cell was selected */
} sp_actmap_t;

void sp_actmap_init_uniform(sp_actmap_t *m, sp_act_t f);
void sp_actmap_init_random(sp_actmap_t *m, sp_rng_t *rng);
/* Cells near the centre get `center`, cells near the edge `edge`. */
void sp_actmap_init_gradient(sp_actmap_t *m, sp_act_t center, sp_act_t edge);
/* Cell for a hash: row = (hash >> 8) & 7, col = hash & 7. */
static inline unsigned sp_actmap_cell(uint64_t hash)
{
    return (unsigned)(((hash >> 8) & 7u) * 8u + (hash & 7u));
}
/* Cell for hash, counting the hit; returns the cell index. */
unsigned sp_actmap_select(sp_actmap_t *m, uint64_t hash);

/* Locality-sensitive hash of an input pattern (see activation.c for the
 * scheme): similar inputs give the same cell bits (bits 0-2 and 8-10). */
typedef struct sp_lsh sp_lsh_t;
sp_lsh_t *sp_lsh_new(size_t n_inputs, uint64_t seed);
void sp_lsh_destroy(sp_lsh_t **lp);
uint64_t sp_lsh_hash(const sp_lsh_t *l, const float *x);

#endif
