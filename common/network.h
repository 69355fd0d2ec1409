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
/* Largest |gain|, |bias| or optimizer state a valid network holds; a step
 * that goes past it (or to NaN) has diverged (model files refuse such values). */
#define SP_NET_PARAM_LIMIT 1e30f

typedef struct {
    uint8_t bits;             /* weight width, 1, 2 or 4 */
    sp_mode_t mode;           /* backprop (default) or local */
    sp_loss_t loss;           /* mse (default) or softmax cross-entropy */
    float lr;                 /* learning rate, > 0 */
    float momentum;           /* SGD momentum, 0..1 */
    uint64_t seed;            /* initial weights, activation maps, hashes */
    int growth;               /* mitosis enabled */
    float growth_threshold;   /* split when saturation > this, 0..1 */
    /* --- extensions (issue 3); defaults from sp_net_config_default --- */
    float weight_decay;       /* decoupled decay of the weights per step, times lr; 0 = off */
    float init_density;       /* probability that a weight starts present, 0..1 */
    float gain_scale_hidden;  /* initial gain = scale * sqrt(3 * weights found) */
    float gain_scale_output;
    uint8_t hidden_act_init;  /* sp_actinit_t (layer.h): 0 uniform, 1 gradient, 2 random */
    uint8_t hidden_act_center; /* sp_act_t (activation.h) */
    uint8_t hidden_act_edge;
    uint8_t output_act_init;
    uint8_t output_act_center;
    uint8_t output_act_edge;
} sp_net_config_t;

/* Defaults: 4 bits, backprop, mse, lr 0.05, momentum 0.9, seed 1, no growth, 0.9;
 * no weight decay, density 1, gains sqrt(2) (hidden) and 1 (output), hidden
 * maps gradient(relu centre, leaky relu edge), output maps uniform ELU.
 * sp_net_config_check says what is wrong with a config (SP_E_INPUT). */
void sp_net_config_default(sp_net_config_t *cfg);
int sp_net_config_check(const sp_net_config_t *cfg, char *err, size_t errlen);

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

/* Input transform: every input row is mapped to x'[i] = (x[i] - offset[i]) *
 * scale[i] before the first layer (the neurons' design point is inputs in
 * [0, 1]; the trainer sets this from the training set's feature ranges). It
 * is saved in model files. Both NULL clears it. Copies the arrays (n_inputs
 * each); SP_E_INPUT for a non-finite or out-of-range value, SP_E_NOMEM. */
int sp_network_set_input_transform(sp_network_t *n, const float *offset, const float *scale);
/* 1 and the borrowed arrays when a transform is set, else 0 (both NULL). */
int sp_network_input_transform(const sp_network_t *n, const float **offset, const float **scale);

/* Outputs of n_samples rows of X (row-major, n_inputs each) into Y
 * (n_outputs each). Changes no model state (no hits, no temporal state; the
 * single-sample layer / neuron API records those); uses the network's scratch,
 * so one call at a time per network. SP_E_INPUT on NULL arguments. */
int sp_network_forward(sp_network_t *n, const float *X, size_t n_samples, float *Y);
/* The layer of index layer (0 = first computing layer), borrowed; for tests,
 * benchmarks and tools (common/layer.h). */
struct sp_layer *sp_network_layer(const sp_network_t *n, size_t layer);
/* Builds a network around n_layers ready layers (the model loader), taking
 * ownership of them (also on failure: they are destroyed). Layer l's n_in must
 * equal layer l-1's n_out (n_inputs for l = 0). training: every neuron holds
 * master weights. NULL (logged) on inconsistency or no memory. */
sp_network_t *sp_network_assemble(const sp_net_config_t *cfg, uint32_t n_inputs,
                                  struct sp_layer **layers, size_t n_layers, int training,
                                  uint64_t steps);
/* True when the network holds float master weights (training state). */
int sp_network_has_training_state(const sp_network_t *n);
/* Optimizer steps applied so far. */
uint64_t sp_network_steps(const sp_network_t *n);

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

/* Length of the flat gradient vector; changes when the topology changes.
 * Layout, layer after layer (first computing layer first): the n_out x n_in
 * block of dLoss/dWeff (neurons in storage order, each row in input order),
 * then the n_out entries of dLoss/dbias, each summed over the batch's samples.
 * Weff = gain * w / n_found is a neuron's effective weight (0 when absent):
 * the gradient is that of the float network the quantized one computes, and
 * apply_gradient maps it onto the quantized weights (straight through:
 * dLoss/dw_i = gain / max(n_found, 1) * dLoss/dWeff_i for every input,
 * present or not) and the gains (dLoss/dgain = sum_i Weff_i dLoss/dWeff_i /
 * gain), so a gradient is only meaningful for the model version it was taken
 * on. After the last layer's blocks come n_outputs entries of the sum over
 * samples of |dLoss/dz| of each output neuron: the error size by which the
 * local rule adapts its rates. In local mode only the last layer's blocks are
 * filled. */
size_t sp_network_n_params(const sp_network_t *n);
/* Length of the activation-map hit vector: 64 per neuron, layer after layer,
 * neurons in storage order, cells row-major. */
size_t sp_network_n_hits(const sp_network_t *n);
/* Samples per pass of sp_network_gradient: a bigger batch is taken in
 * chunks of this many, in order, each added to grad as it is done. */
#define SP_NET_GRAD_CHUNK 256
/* Adds the summed gradient of the batch to grad[n_params] and the activation
 * hits to hits[n_hits] (either may be NULL to skip); fills *res. The network's
 * weights are not changed. The bits of grad depend on the batch and on
 * SP_NET_GRAD_CHUNK, never on the thread count. Each chunk's sums are formed
 * apart and then added, element by element, to what grad holds. So a batch
 * of at most one chunk computed onto a buffer gives the bits of computing it
 * into a zeroed one and adding that, wherever the buffer holds no -0 (the
 * worker's tree relies on this; test_network checks it). */
int sp_network_gradient(sp_network_t *n, const float *X, const float *T, size_t n_samples,
                        float *grad, uint32_t *hits, sp_batch_result_t *res);
/* Optimizer step with grad (a sum over n_samples samples), then re-quantizes;
 * adds hits to the activation maps' counts when hits is not NULL. Returns
 * SP_E_RANGE when the step diverged (a gain, bias or momentum went non-finite
 * or past SP_NET_PARAM_LIMIT): the network is then unusable and training must
 * stop (a smaller learning rate, or inputs scaled into [0, 1], avoid it). */
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
/* In-place refresh from a model file (the worker's per-step path): when the
 * file describes this network's exact topology (config, input width, layer
 * widths and hash seeds, every neuron's id, position and width, and training
 * state present in both or neither), checks the whole file as strictly as
 * sp_network_load_buffer, then copies its weights, occupancy, gains, biases,
 * maps, hits, temporal state (and training state) and step count into n and
 * rebuilds the dense rows: n then computes exactly what a fresh load of buf
 * would, and saves to the same bytes. No allocation per neuron; only the
 * occupancy cells that changed are touched. Errors leave n unchanged:
 * SP_E_STATE (message in err) when the topology differs (the caller loads
 * the file whole instead), SP_E_INPUT / SP_E_VERSION for a bad file,
 * SP_E_NOMEM. */
int sp_network_update_from_buffer(sp_network_t *n, const uint8_t *buf, size_t len, char *err,
                                  size_t errlen);
/* Sets the optimizer step count (the model loader's update path). */
void sp_network_set_steps(sp_network_t *n, uint64_t steps);
int sp_network_save_file(const sp_network_t *n, int with_training_state, const char *path);
int sp_network_load_file(const char *path, sp_network_t **out, char *err, size_t errlen);

#endif
