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
    SP_ACT_GELU, /* tanh approximation */
    SP_ACT_SWISH,
    SP_ACT_MISH,
    SP_ACT_ELU, /* alpha = SP_ACT_ELU_ALPHA */
    SP_ACT_SOFTPLUS,
    SP_ACT_HARD_SIGMOID,
    SP_ACT_HARD_TANH,
    SP_ACT_SINE,
    SP_ACT_COUNT
} sp_act_t;

#define SP_ACT_LEAKY_ALPHA 0.01f
#define SP_ACT_ELU_ALPHA 1.0f

const char *sp_act_name(sp_act_t f);
/* f(x) and f'(x); switch dispatch, finite for every finite x (formulas in
 * activation.c). f must be a valid sp_act_t (an invalid one is a bug and
 * asserts): code reading functions from input (model files) checks
 * f < SP_ACT_COUNT first. */
float sp_act_apply(sp_act_t f, float x);
float sp_act_derivative(sp_act_t f, float x);

#define SP_ACTMAP_SIDE 8
#define SP_ACTMAP_CELLS 64

typedef struct {
    uint8_t func[SP_ACTMAP_CELLS];  /* sp_act_t per cell, row-major: cell = row*8 + col */
    uint32_t hits[SP_ACTMAP_CELLS]; /* times each cell was selected */
} sp_actmap_t;

void sp_actmap_init_uniform(sp_actmap_t *m, sp_act_t f);
void sp_actmap_init_random(sp_actmap_t *m, sp_rng_t *rng);
/* Cells near the centre get `center`, cells near the edge `edge`: a cell
 * (row, col) is central when its Chebyshev distance from the grid centre
 * (3.5, 3.5) is at most SP_ACTMAP_CENTRE_RADIUS, i.e. the inner 4x4 block
 * (rows and columns 2-5); the outer two rings (48 cells) get `edge`.
 * All three initialisations zero the hit counts. */
#define SP_ACTMAP_CENTRE_RADIUS 2
int sp_actmap_is_central(unsigned row, unsigned col);
void sp_actmap_init_gradient(sp_actmap_t *m, sp_act_t center, sp_act_t edge);
/* Cell for a hash: row = (hash >> 8) & 7, col = hash & 7. */
static inline unsigned sp_actmap_cell(uint64_t hash)
{
    return (unsigned)(((hash >> 8) & 7u) * 8u + (hash & 7u));
}
/* Cell for hash, counting the hit; returns the cell index. */
unsigned sp_actmap_select(sp_actmap_t *m, uint64_t hash);

/* Locality-sensitive hash of an input pattern (SimHash, see activation.c):
 * six seeded zero-sum Gaussian hyperplanes, one sign bit each, placed at hash
 * bits 0-2 (column) and 8-10 (row); all other bits are 0. Similar inputs give
 * the same cell with high probability; a constant offset of the input does not
 * change the hash. Compute it once per layer input and share it. */
#define SP_LSH_BITS 6
typedef struct sp_lsh sp_lsh_t;
/* New hasher for inputs of n_inputs floats (1..2^28); NULL on bad size or no
 * memory. The same (n_inputs, seed) gives the same hyperplanes everywhere. */
sp_lsh_t *sp_lsh_new(size_t n_inputs, uint64_t seed);
/* NULL-safe, idempotent; sets *lp = NULL. */
void sp_lsh_destroy(sp_lsh_t **lp);
size_t sp_lsh_n_inputs(const sp_lsh_t *l);
/* Hash of x[0..n_inputs). Same bits on every CPU (AVX2 or not). */
uint64_t sp_lsh_hash(const sp_lsh_t *l, const float *x);
/* The six projections <x, r_k> (AVX2 when present) and the portable oracle;
 * both sum in the same order and agree to the bit. */
void sp_lsh_project(const sp_lsh_t *l, const float *x, float proj[SP_LSH_BITS]);
void sp_lsh_project_ref(const sp_lsh_t *l, const float *x, float proj[SP_LSH_BITS]);
/* Hash bits from projections (bit k set when proj[k] > 0). */
uint64_t sp_lsh_bits(const float proj[SP_LSH_BITS]);

#endif
