/* layer: a SpatialLayer, neurons on a 3D grid stored in Morton order of their
 * grid position (ties by id), each seeing the whole input vector. Beside the
 * neurons it keeps a dense float copy of the effective weights
 * W[o][i] = gain_o / n_found_o * w_oi (0 when absent), rebuilt from the packed
 * storage after every weight change (the same code on load, so a loaded
 * network computes the same bits), for the batched GEMM path and backward,
 * plus per-sample scratch.
 * Every parallel operation splits outputs (neurons or samples) by ith/nth and
 * never splits a float sum, so results do not depend on the thread count. */
#ifndef SP_LAYER_H
#define SP_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "common/activation.h"
#include "common/neuron.h"
#include "common/rng.h"

/* How a layer's activation maps start. */
typedef enum {
    SP_ACTINIT_UNIFORM = 0,  /* every cell `center` */
    SP_ACTINIT_GRADIENT = 1, /* inner 4x4 `center`, outer rings `edge` */
    SP_ACTINIT_RANDOM = 2,   /* each cell one of the twelve, from the seed */
} sp_actinit_t;

typedef struct {
    uint8_t bits;             /* 1, 2 or 4 */
    int training;             /* keep float master weights and momentum */
    float lr;                 /* initial local-rule rate */
    int growth;               /* neurons may split */
    float growth_threshold;   /* split when saturation > this */
    float init_density;       /* probability that a weight starts present, 0..1 */
    float gain_scale;         /* initial gain = gain_scale * sqrt(3 * n_found) */
    sp_actinit_t act_init;
    sp_act_t act_center;
    sp_act_t act_edge;
    uint64_t lsh_seed;        /* hyperplanes of this layer's pattern hash */
} sp_layer_config_t;

typedef struct sp_layer {
    uint32_t n_in;       /* input width, >= 1 */
    uint32_t n_out;      /* neurons, >= 1 */
    uint64_t lsh_seed;
    sp_lsh_t *lsh;       /* hash of this layer's input (n_in floats) */
    sp_neuron_t *nr;     /* n_out neurons, Morton order of pos, ties by id */
    /* derived from the neurons by sp_layer_refresh_rows (not saved) */
    float *W;            /* n_out x n_in effective weights */
    float *bias;         /* n_out */
    uint8_t *act;        /* 64 x n_out: act[cell * n_out + o] = function of neuron o */
    /* batch scratch, cap samples (sp_layer_reserve) */
    size_t cap;
    float *Z;            /* cap x n_out pre-activations */
    float *Y;            /* cap x n_out outputs */
    float *G;            /* cap x n_out dLoss/dz (dLoss/dy before the derivative step) */
    uint8_t *cell;       /* cap map cells, one per sample */
} sp_layer_t;

/* A layer of n_out neurons at the first n_out Morton positions, ids n_out + k
 * (heap numbering: descendants never collide), weights drawn from rng:
 * present with probability init_density, uniform in [-1, 1]. NULL on a bad
 * argument or no memory. */
sp_layer_t *sp_layer_new(uint32_t n_in, uint32_t n_out, const sp_layer_config_t *cfg,
                         sp_rng_t *rng);
/* A layer whose n_out neurons are zeroed (fini-safe) for the caller to
 * initialise (the model loader); call sp_layer_refresh afterwards. */
sp_layer_t *sp_layer_alloc(uint32_t n_in, uint32_t n_out, uint64_t lsh_seed);
void sp_layer_destroy(sp_layer_t **lp);
/* Deep copy (neurons, derived arrays; no scratch). NULL on no memory. */
sp_layer_t *sp_layer_clone(const sp_layer_t *l);

/* Rebuilds W, bias and act rows [lo, hi) from the neurons. */
void sp_layer_refresh_rows(sp_layer_t *l, uint32_t lo, uint32_t hi);
/* W rows and biases only (after a weight change; the maps did not change). */
void sp_layer_refresh_weights(sp_layer_t *l, uint32_t lo, uint32_t hi);
/* All rows, rows split over n_threads (<= 0: OpenMP default). */
void sp_layer_refresh(sp_layer_t *l, int n_threads);
/* Scratch for cap samples; SP_E_NOMEM. */
int sp_layer_reserve(sp_layer_t *l, size_t cap);

/* Single-sample forward: hashes x once, runs every neuron's forward
 * (temporal state and hits recorded) into y[n_out]. n_threads <= 0: default. */
int sp_layer_forward(sp_layer_t *l, const float *x, float *y, int n_threads);
/* Local rule on every neuron after sp_layer_forward(x): err[o] = y_o - target_o. */
int sp_layer_learn(sp_layer_t *l, const float *x, const float *err, int n_threads);
/* dx[i] = sum_o g[o] * W[o][i] for g = dLoss/dz (summed in neuron order). */
void sp_layer_backward(const sp_layer_t *l, const float *g, float *dx, int n_threads);

/* --- batched slices, called by every thread ith of nth inside one parallel
 * region (the network separates the phases with barriers) --------------- */
/* cell[s] for samples of this thread's share. */
void sp_layer_batch_hash(sp_layer_t *l, const float *X, size_t N, int ith, int nth);
/* Z = X W^T for this thread's output columns. */
void sp_layer_batch_gemm(sp_layer_t *l, const float *X, size_t N, int ith, int nth);
/* For this thread's samples: Z += bias, Y = f(Z) by each sample's cell. */
void sp_layer_batch_activate(sp_layer_t *l, size_t N, int ith, int nth);
/* For this thread's samples: G *= f'(Z) (G held dLoss/dY). */
void sp_layer_batch_derive(sp_layer_t *l, size_t N, int ith, int nth);

typedef struct {
    uint32_t neuron_count;
    uint32_t active_neurons;    /* neurons with at least one weight */
    float average_saturation;
    uint32_t growth_candidates; /* saturation > growth threshold */
    uint32_t prune_candidates;  /* saturation <= prune threshold (hidden layers) */
    uint64_t weights_present;
    uint64_t weights_capacity;
} sp_layer_info_t;
void sp_layer_info(const sp_layer_t *l, float growth_threshold, float prune_threshold,
                   int is_output, sp_layer_info_t *out);

/* Replaces every neuron that should split by its two children (re-sorted into
 * Morton order) and remaps next's inputs: both children get the parent's
 * outgoing weight, next's gains scale with their new found counts. Returns the
 * number of neurons split, or a negative sp_rc. */
int sp_layer_grow(sp_layer_t *l, sp_layer_t *next);
/* Removes neurons with saturation <= threshold (at least one neuron stays);
 * next loses those inputs, its biases absorb the removed neurons' output at
 * zero weights and its gains keep their scale. Returns the number removed. */
int sp_layer_prune(sp_layer_t *l, float threshold, sp_layer_t *next);

#endif
