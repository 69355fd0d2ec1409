/* network: a SpatialNetwork built from layer sizes, trained in process or,
 * through the gradient / apply split below, by the distributed trainer.
 * Layer sizes [4, 16, 4] mean 4 inputs, a hidden layer of 16 neurons and 4
 * outputs; every neuron sees the whole output of the layer before it.
 * Results never depend on the OpenMP thread count. */
#ifndef SP_NETWORK_H
#define SP_NETWORK_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_network sp_network_t;

typedef enum { SP_MODE_BACKPROP = 0, SP_MODE_LOCAL = 1 } sp_mode_t;
typedef enum { SP_LOSS_MSE = 0, SP_LOSS_XENT = 1 } sp_loss_t;

#define SP_NET_MAX_LAYERS 16
#define SP_NET_MAX_WIDTH 65536

typedef struct {
    uint8_t bits;             /* weight width, 1, 2 or 4 */
    sp_mode_t mode;           /* backprop (default) or local */
    sp_loss_t loss;           /* mse (default) or softmax cross-entropy */
    float lr;                 /* learning rate, > 0 */
    float momentum;           /* SGD momentum, 0..1 */
    uint64_t seed;            /* initial weights, activation maps, hashes */
    int growth;               /* mitosis enabled */
    float growth_threshold;   /* split when saturation > this, 0..1 */
} sp_net_config_t;

/* Defaults: 4 bits, backprop, mse, lr 0.05, momentum 0.9, seed 1, no growth, 0.9. */
void sp_net_config_default(sp_net_config_t *cfg);

typedef struct {
    uint32_t neuron_count;
    uint32_t active_neurons;
    float average_saturation;
    uint32_t growth_candidates;
    uint32_t prune_candidates; /* by the threshold given to sp_network_stats */
} sp_layer_stats_t;

typedef struct {
    uint32_t layer_count;      /* computing layers (the input is not a layer) */
    uint32_t total_neurons;
    uint32_t total_active_neurons;
    float average_sparsity;    /* fraction of absent weights, over all neurons */
    sp_layer_stats_t layers[SP_NET_MAX_LAYERS];
} sp_network_stats_t;

/* Builds a network; sizes[0] is the input width, n_sizes >= 2.
 * NULL on a bad argument (logged) or no memory. */
sp_network_t *sp_network_new(const uint32_t *sizes, size_t n_sizes, const sp_net_config_t *cfg);
void sp_network_destroy(sp_network_t **np);
sp_network_t *sp_network_clone(const sp_network_t *n);

const sp_net_config_t *sp_network_config(const sp_network_t *n);
size_t sp_network_n_inputs(const sp_network_t *n);
size_t sp_network_n_outputs(const sp_network_t *n);
/* Current widths: sizes[0..layer_count] (input width first). */
size_t sp_network_layer_count(const sp_network_t *n);
size_t sp_network_layer_width(const sp_network_t *n, size_t layer);

/* Outputs of n_samples rows of X (row-major, n_inputs each) into Y. */
int sp_network_forward(sp_network_t *n, const float *X, size_t n_samples, float *Y);

/* One in-process training step on a batch: gradient, optimizer step, weights
 * re-quantized. T holds targets (n_outputs per row). Returns SP_OK and the
 * mean loss in *loss. */
int sp_network_train_batch(sp_network_t *n, const float *X, const float *T, size_t n_samples,
                           float *loss);

/* --- the distributed split of train_batch --------------------------------
 * A worker computes the gradient of a partition; the coordinator adds the
 * partitions' gradients in partition order and applies them once. */
typedef struct {
    double loss_sum;    /* sum over samples of the per-sample loss */
    uint32_t n_samples;
    uint32_t n_correct; /* argmax(output) == argmax(target) */
} sp_batch_result_t;

/* Length of the flat gradient / parameter vector (weights, gains, biases in a
 * fixed documented order); changes when the topology changes. */
size_t sp_network_n_params(const sp_network_t *n);
/* Length of the activation-map hit vector (64 per neuron). */
size_t sp_network_n_hits(const sp_network_t *n);
/* Adds the summed gradient of the batch to grad[n_params] and the activation
 * hits to hits[n_hits] (either may be NULL to skip); fills *res. The network's
 * weights are not changed. */
int sp_network_gradient(sp_network_t *n, const float *X, const float *T, size_t n_samples,
                        float *grad, uint32_t *hits, sp_batch_result_t *res);
/* Optimizer step with grad (a sum over n_samples samples), then re-quantizes;
 * adds hits to the activation maps' counts when hits is not NULL. */
int sp_network_apply_gradient(sp_network_t *n, const float *grad, size_t n_samples,
                              const uint32_t *hits);

/* Growth and pruning (spec section 6); each returns how many neurons were
 * split / removed; the output layer keeps its width. */
int sp_network_grow(sp_network_t *n);
int sp_network_prune(sp_network_t *n, float threshold);
void sp_network_stats(const sp_network_t *n, float prune_threshold, sp_network_stats_t *out);

/* Model files (docs/MODEL_FORMAT.md): one MessagePack document.
 * with_training_state also writes the float master weights and optimizer
 * state (checkpoints); without it the file holds what inference needs.
 * save_buffer returns a malloc'ed buffer the caller frees. Loading checks
 * everything and fails with SP_E_INPUT / SP_E_VERSION and a message in err. */
int sp_network_save_buffer(const sp_network_t *n, int with_training_state, uint8_t **buf,
                           size_t *len);
int sp_network_load_buffer(const uint8_t *buf, size_t len, sp_network_t **out, char *err,
                           size_t errlen);
int sp_network_save_file(const sp_network_t *n, int with_training_state, const char *path);
int sp_network_load_file(const char *path, sp_network_t **out, char *err, size_t errlen);

#endif
