/* neuron: the SpatialNeuron. Its weights live in a private spatial memory:
 * input i sits at Morton code base + i (base 0 in a network), so the weights
 * of consecutive inputs form one contiguous packed run and the hot path reads
 * that run directly (no per-weight lookup). Memory capacity = fan-in, so
 * saturation is the fraction of input slots holding a weight.
 * Invariant while training (master != NULL): weight i is stored (occupied)
 * iff |master[i]| >= sp_neuron_presence_threshold(bits), and its packed level
 * is the nearest level of master[i]; n_found is the number stored. */
#ifndef SP_NEURON_H
#define SP_NEURON_H

#include <stddef.h>
#include <stdint.h>

#include "common/activation.h"
#include "common/memory.h"
#include "common/morton.h"
#include "common/rng.h"

#define SP_NEURON_TEMPORAL 16        /* temporal state length, element 0 newest */
#define SP_NEURON_TEMPORAL_DECAY 0.9f /* each shift multiplies older outputs by this */
#define SP_NEURON_LR_MIN 0.001f      /* local rule: rate floor */
#define SP_NEURON_LR_MAX 0.1f        /* local rule: rate ceiling */
#define SP_NEURON_LR_UP 1.1f         /* rate factor when |error| > SP_NEURON_ERR_HIGH */
#define SP_NEURON_LR_DOWN 0.9f       /* rate factor when |error| < SP_NEURON_ERR_LOW */
#define SP_NEURON_ERR_HIGH 0.5f
#define SP_NEURON_ERR_LOW 0.1f
/* Ids at or above this cannot split (children 2*id+1 would overflow 64 bits). */
#define SP_NEURON_ID_SPLIT_LIMIT (UINT64_C(1) << 62)

/* SpatialInput: values, the context position (input i's weight sits at
 * Morton(context) + i) and the pattern hash (sp_lsh_hash of the values,
 * computed once per layer input and shared by the layer's neurons). */
typedef struct {
    const float *values;   /* n floats, borrowed */
    size_t n;              /* number of values, must equal the fan-in */
    sp_pos_t context;      /* (0,0,0) in a network */
    uint64_t pattern_hash; /* picks the activation-map cell */
} sp_input_t;

typedef struct {
    uint64_t id;            /* unique in its layer; children 2*id and 2*id+1 */
    sp_pos_t pos;           /* grid position; the layer keeps Morton order of pos */
    uint8_t bits;           /* weight width, 1, 2 or 4 */
    uint8_t growth;         /* mitosis enabled */
    float growth_threshold; /* split when saturation > this, 0..1 */
    uint32_t n_in;          /* fan-in = memory capacity, >= 1 */
    uint64_t base;          /* Morton code of input 0's weight */
    sp_memory_t *mem;       /* owned; cells [base, base + n_in) all reserved */
    uint8_t *run;           /* cached sp_memory_run_mut of those cells (borrowed from mem) */
    const uint64_t *occ;    /* cached sp_memory_run_occupancy; both refreshed by every
                               neuron function that writes mem (never write mem directly) */
    uint32_t n_found;       /* weights stored (present), 0..n_in */
    float gain;             /* z = gain * sum(present w x) / n_found + bias */
    float bias;
    float lr;               /* local-rule rate, SP_NEURON_LR_MIN..SP_NEURON_LR_MAX */
    sp_actmap_t map;        /* activation per cell and hit counts */
    float temporal[SP_NEURON_TEMPORAL]; /* recent outputs, [0] newest, older x0.9 per step */
    float *master;          /* n_in float master weights in [-1, 1], or NULL (inference) */
    float *mom;             /* n_in momentum of the weights, or NULL */
    float mom_gain;         /* momentum of gain and bias */
    float mom_bias;
    float last_z;           /* pre-activation of the last forward (for learn) */
    uint8_t last_cell;      /* map cell of the last forward */
} sp_neuron_t;

/* Presence threshold: half the smallest level magnitude at the width
 * (1/30 at 4 bits, 1/6 at 2 bits, 1/2 at 1 bit). */
float sp_neuron_presence_threshold(unsigned bits);
/* Region side of a neuron's memory for a fan-in: 4 (64 cells) from 256
 * inputs up, else 2 (8 cells), so small neurons still have regions to split. */
unsigned sp_neuron_region_side(uint32_t n_in);

/* Initialises *nr with an empty memory reserved for n_in inputs at base 0,
 * gain 1, bias 0, rate `lr`, a uniform ReLU map, zero temporal state; with
 * training, zeroed master and momentum arrays. SP_E_RANGE on a bad width or
 * fan-in, SP_E_NOMEM. On failure *nr needs no fini. */
int sp_neuron_init(sp_neuron_t *nr, uint64_t id, sp_pos_t pos, uint32_t n_in, unsigned bits,
                   int training, float lr);
/* Frees what *nr owns (NULL-safe, idempotent). */
void sp_neuron_fini(sp_neuron_t *nr);
/* Deep copy of src into uninitialised *dst; SP_E_NOMEM. */
int sp_neuron_copy(sp_neuron_t *dst, const sp_neuron_t *src);

/* Sets the weights from w[0..n_in) (clamped to [-1, 1]; those below the
 * presence threshold become absent); sets master too when training. */
int sp_neuron_set_weights(sp_neuron_t *nr, const float *w);
/* Creates the float master copy (and momentum) from the stored weights when
 * missing. SP_E_NOMEM. */
int sp_neuron_enable_training(sp_neuron_t *nr);
/* Drops master and momentum (inference only from then on). */
void sp_neuron_drop_training(sp_neuron_t *nr);

/* Effective weights: out[i] = gain / n_found * value(w_i) if present, else 0
 * (all 0 when n_found = 0). */
void sp_neuron_effective_row(const sp_neuron_t *nr, float *out);
/* Dequantized weight i (0 when absent). */
float sp_neuron_weight(const sp_neuron_t *nr, uint32_t i);
/* Re-quantizes the stored run from master (after an optimizer step on it),
 * keeping memory occupancy and n_found right. Requires master. */
void sp_neuron_requantize(sp_neuron_t *nr);

/* Rebuilds the inputs: input j of the result takes old input src[j]
 * (src[j] < n_in, repeats allowed), n_in becomes n_new; stored levels,
 * master and momentum follow; gain and bias are left to the caller.
 * SP_E_RANGE on a bad n_new, SP_E_NOMEM (neuron unchanged on failure). */
int sp_neuron_remap_inputs(sp_neuron_t *nr, uint32_t n_new, const uint32_t *src);

/* Replaces the stored run by exact levels packed[sp_quant_packed_size(n_in,
 * bits)] and occupancy occ[(n_in + 63) / 64] (bits past n_in ignored); sets
 * n_found. Used by the model loader; master is not touched. */
void sp_neuron_load_run(sp_neuron_t *nr, const uint8_t *packed, const uint64_t *occ);

/* Saturation = n_found / n_in. */
float sp_neuron_saturation(const sp_neuron_t *nr);

/* forward: z = gain * (sum of present w_i x_i) / n_found + bias (z = bias
 * when n_found = 0), output f(z) with f the map's function at the cell of the
 * input's pattern hash (the hit is counted); shifts the temporal state and
 * remembers z and the cell for learn. SP_E_INPUT when in->n != n_in. */
int sp_neuron_forward(sp_neuron_t *nr, const sp_input_t *in, float *out);
/* Pure forward: same output, nothing recorded (no hit, no temporal shift). */
float sp_neuron_output(const sp_neuron_t *nr, const float *x, uint64_t pattern_hash);

/* Local rule after a forward on the same input; error = output - target.
 * g = error * f'(z); every weight moves against g times its input,
 * w_i -= lr * g * x_i on the float master (straight through: absent weights
 * move too and come back once past the threshold), then the run is
 * re-quantized (nearest); bias -= lr * g; then the rate adapts
 * (x1.1 up to 0.1 when |error| > 0.5, x0.9 down to 0.001 when |error| < 0.1).
 * Creates the master copy on first use. SP_E_INPUT on a length mismatch. */
int sp_neuron_learn(sp_neuron_t *nr, const sp_input_t *in, float error);
/* The local rule's rate adaptation alone, for |error| abs_error. */
void sp_neuron_adapt_rate(sp_neuron_t *nr, float abs_error);

/* True when growth is on, saturation > growth_threshold and the id leaves
 * room for children. */
int sp_neuron_should_split(const sp_neuron_t *nr);
/* Mitosis: children a (id 2*id, x-1) and b (id 2*id+1, x+1); a gets the first
 * half of the memory's regions, b the rest (sp_memory_split_into), so their
 * weights are disjoint and their counts add up to the parent's. Each child's
 * gain is the parent's times its share of the found weights and its bias half
 * the parent's, so the children's pre-activations add up to the parent's.
 * Map, rate and temporal state are copied; master and momentum split with the
 * memory. *a, *b are initialised here. SP_E_RANGE when the id is too large. */
int sp_neuron_split(const sp_neuron_t *nr, sp_neuron_t *a, sp_neuron_t *b);

#endif
