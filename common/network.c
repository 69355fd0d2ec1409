/* network: a stack of SpatialLayers trained with a batched GEMM path.
 * One OpenMP parallel region per call: phases (hash, GEMM, activation, loss,
 * backward, parameter gradients) are separated by barriers, and every phase
 * splits outputs by ith/nth, so results are bit-identical for any thread
 * count. Training keeps float master weights; after every optimizer step the
 * packed storage is re-quantized (nearest) and the dense rows rebuilt. */
#include "common/network.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/kernels.h"
#include "common/layer.h"
#include "common/quant.h"
#include "common/rng.h"

#define S_FORWARD_CHUNK 256  /* samples per forward pass (bounds scratch) */
#define S_GAIN_FLOOR 1e-3f   /* |gain| never goes below this */

struct sp_network {
    sp_net_config_t cfg;
    uint32_t n_inputs;
    uint32_t n_layers;
    sp_layer_t *layer[SP_NET_MAX_LAYERS];
    int training; /* every neuron has master + momentum */
    uint64_t steps;
    /* scratch */
    size_t cap;       /* samples the per-sample arrays hold */
    double *loss_s;   /* per-sample loss */
    uint8_t *ok_s;    /* per-sample argmax match */
    float *grad;      /* train_batch's gradient */
    uint32_t *hits;
    size_t grad_len, hits_len;
    /* input transform x' = (x - in_off[i]) * in_scale[i], or both NULL */
    float *in_off, *in_scale;
    float *xs;        /* transformed inputs of the current call */
    size_t xs_cap;    /* floats xs holds */
};

void sp_net_config_default(sp_net_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bits = 4;
    cfg->mode = SP_MODE_BACKPROP;
    cfg->loss = SP_LOSS_MSE;
    cfg->lr = 0.05f;
    cfg->momentum = 0.9f;
    cfg->seed = 1;
    cfg->growth = 0;
    cfg->growth_threshold = 0.9f;
    cfg->weight_decay = 0.0f;
    cfg->init_density = 1.0f;
    cfg->gain_scale_hidden = 1.41421356f;
    cfg->gain_scale_output = 1.0f;
    cfg->hidden_act_init = SP_ACTINIT_GRADIENT;
    cfg->hidden_act_center = SP_ACT_RELU;
    cfg->hidden_act_edge = SP_ACT_LEAKY_RELU;
    cfg->output_act_init = SP_ACTINIT_UNIFORM;
    cfg->output_act_center = SP_ACT_ELU;
    cfg->output_act_edge = SP_ACT_ELU;
}

static int s_finite_in(float v, float lo, float hi)
{
    return v == v && v >= lo && v <= hi;
}

int sp_net_config_check(const sp_net_config_t *c, char *err, size_t errlen)
{
    if (!sp_quant_bits_valid(c->bits)) {
        return sp_err_input(err, errlen, "config: bits %u is not 1, 2 or 4", c->bits);
    }
    if (c->mode != SP_MODE_BACKPROP && c->mode != SP_MODE_LOCAL) {
        return sp_err_input(err, errlen, "config: unknown mode %d", (int)c->mode);
    }
    if (c->loss != SP_LOSS_MSE && c->loss != SP_LOSS_XENT) {
        return sp_err_input(err, errlen, "config: unknown loss %d", (int)c->loss);
    }
    if (!s_finite_in(c->lr, 1e-9f, 1e6f) || c->lr <= 0.0f) {
        return sp_err_input(err, errlen, "config: lr %g must be > 0", (double)c->lr);
    }
    if (!s_finite_in(c->momentum, 0.0f, 0.999f)) {
        return sp_err_input(err, errlen, "config: momentum %g not in [0, 0.999]",
                            (double)c->momentum);
    }
    if (!s_finite_in(c->growth_threshold, 0.0f, 1.0f)) {
        return sp_err_input(err, errlen, "config: growth_threshold %g not in [0, 1]",
                            (double)c->growth_threshold);
    }
    if (!s_finite_in(c->weight_decay, 0.0f, 1e3f)) {
        return sp_err_input(err, errlen, "config: weight_decay %g not in [0, 1000]",
                            (double)c->weight_decay);
    }
    if (!s_finite_in(c->init_density, 0.0f, 1.0f)) {
        return sp_err_input(err, errlen, "config: init_density %g not in [0, 1]",
                            (double)c->init_density);
    }
    if (!s_finite_in(c->gain_scale_hidden, 1e-6f, 1e6f) ||
        !s_finite_in(c->gain_scale_output, 1e-6f, 1e6f)) {
        return sp_err_input(err, errlen, "config: gain scales must be in [1e-6, 1e6]");
    }
    if (c->hidden_act_init > SP_ACTINIT_RANDOM || c->output_act_init > SP_ACTINIT_RANDOM) {
        return sp_err_input(err, errlen, "config: unknown activation-map initialisation");
    }
    if (c->hidden_act_center >= SP_ACT_COUNT || c->hidden_act_edge >= SP_ACT_COUNT ||
        c->output_act_center >= SP_ACT_COUNT || c->output_act_edge >= SP_ACT_COUNT) {
        return sp_err_input(err, errlen, "config: activation function out of range 0..%d",
                            SP_ACT_COUNT - 1);
    }
    return SP_OK;
}

/* ---- construction ------------------------------------------------------- */

static void s_free_scratch(sp_network_t *n)
{
    free(n->loss_s);
    free(n->ok_s);
    free(n->grad);
    free(n->hits);
    n->loss_s = NULL;
    n->ok_s = NULL;
    n->grad = NULL;
    n->hits = NULL;
    n->cap = 0;
    n->grad_len = n->hits_len = 0;
}

static void s_sync_neuron_flags(sp_network_t *n)
{
    for (uint32_t l = 0; l < n->n_layers; l++) {
        sp_layer_t *L = n->layer[l];
        for (uint32_t o = 0; o < L->n_out; o++) {
            L->nr[o].growth = (uint8_t)(n->cfg.growth != 0 && l + 1 < n->n_layers);
            L->nr[o].growth_threshold = n->cfg.growth_threshold;
        }
    }
}

sp_network_t *sp_network_new(const uint32_t *sizes, size_t n_sizes, const sp_net_config_t *cfg)
{
    char err[160];
    if (!sizes || !cfg || n_sizes < 2 || n_sizes > SP_NET_MAX_LAYERS + 1) {
        sp_log(SP_LOG_ERROR, "network: need 2..%d layer sizes", SP_NET_MAX_LAYERS + 1);
        return NULL;
    }
    for (size_t i = 0; i < n_sizes; i++) {
        if (sizes[i] == 0 || sizes[i] > SP_NET_MAX_WIDTH) {
            sp_log(SP_LOG_ERROR, "network: size %zu is %u, not in 1..%d", i, sizes[i],
                   SP_NET_MAX_WIDTH);
            return NULL;
        }
    }
    if (sp_net_config_check(cfg, err, sizeof err) != SP_OK) {
        sp_log(SP_LOG_ERROR, "network: %s", err);
        return NULL;
    }
    sp_layer_t *layers[SP_NET_MAX_LAYERS] = {0};
    size_t n_layers = n_sizes - 1;
    for (size_t l = 0; l < n_layers; l++) {
        int out = l + 1 == n_layers;
        sp_rng_t rng, seeder;
        sp_rng_init_stream(&rng, cfg->seed, 2 * l + 1);
        sp_rng_init_stream(&seeder, cfg->seed, 2 * l + 2);
        sp_layer_config_t lc;
        memset(&lc, 0, sizeof lc);
        lc.bits = cfg->bits;
        lc.training = 1;
        lc.lr = cfg->lr; /* local rule's first rate (clamped to 0.001..0.1) */
        lc.growth = cfg->growth && !out;
        lc.growth_threshold = cfg->growth_threshold;
        lc.init_density = cfg->init_density;
        lc.gain_scale = out ? cfg->gain_scale_output : cfg->gain_scale_hidden;
        lc.act_init = (sp_actinit_t)(out ? cfg->output_act_init : cfg->hidden_act_init);
        lc.act_center = (sp_act_t)(out ? cfg->output_act_center : cfg->hidden_act_center);
        lc.act_edge = (sp_act_t)(out ? cfg->output_act_edge : cfg->hidden_act_edge);
        lc.lsh_seed = sp_rng_next(&seeder);
        layers[l] = sp_layer_new(sizes[l], sizes[l + 1], &lc, &rng);
        if (!layers[l]) {
            for (size_t k = 0; k < l; k++) {
                sp_layer_destroy(&layers[k]);
            }
            return NULL;
        }
    }
    return sp_network_assemble(cfg, sizes[0], layers, n_layers, 1, 0);
}

sp_network_t *sp_network_assemble(const sp_net_config_t *cfg, uint32_t n_inputs,
                                  sp_layer_t **layers, size_t n_layers, int training,
                                  uint64_t steps)
{
    sp_network_t *n = NULL;
    int ok = n_layers >= 1 && n_layers <= SP_NET_MAX_LAYERS;
    uint32_t width = n_inputs;
    for (size_t l = 0; ok && l < n_layers; l++) {
        ok = layers[l] != NULL && layers[l]->n_in == width;
        width = ok ? layers[l]->n_out : 0;
        for (uint32_t o = 0; ok && training && o < layers[l]->n_out; o++) {
            ok = layers[l]->nr[o].master != NULL;
        }
    }
    if (!ok) {
        sp_log(SP_LOG_ERROR, "network: inconsistent layers");
    } else {
        n = calloc(1, sizeof *n);
    }
    if (!n) {
        for (size_t l = 0; l < n_layers && l < SP_NET_MAX_LAYERS; l++) {
            sp_layer_destroy(&layers[l]);
        }
        return NULL;
    }
    n->cfg = *cfg;
    n->n_inputs = n_inputs;
    n->n_layers = (uint32_t)n_layers;
    for (size_t l = 0; l < n_layers; l++) {
        n->layer[l] = layers[l];
        layers[l] = NULL;
    }
    n->training = training;
    n->steps = steps;
    s_sync_neuron_flags(n);
    return n;
}

void sp_network_destroy(sp_network_t **np)
{
    if (!np || !*np) {
        return;
    }
    sp_network_t *n = *np;
    for (uint32_t l = 0; l < n->n_layers; l++) {
        sp_layer_destroy(&n->layer[l]);
    }
    s_free_scratch(n);
    free(n->in_off);
    free(n->in_scale);
    free(n->xs);
    free(n);
    *np = NULL;
}

sp_network_t *sp_network_clone(const sp_network_t *src)
{
    if (!src) {
        return NULL;
    }
    sp_layer_t *layers[SP_NET_MAX_LAYERS] = {0};
    for (uint32_t l = 0; l < src->n_layers; l++) {
        layers[l] = sp_layer_clone(src->layer[l]);
        if (!layers[l]) {
            for (uint32_t k = 0; k < l; k++) {
                sp_layer_destroy(&layers[k]);
            }
            return NULL;
        }
    }
    sp_network_t *n = sp_network_assemble(&src->cfg, src->n_inputs, layers, src->n_layers,
                                          src->training, src->steps);
    if (n && src->in_off &&
        sp_network_set_input_transform(n, src->in_off, src->in_scale) != SP_OK) {
        sp_network_destroy(&n);
    }
    return n;
}

int sp_network_set_input_transform(sp_network_t *n, const float *offset, const float *scale)
{
    if (!n || (offset == NULL) != (scale == NULL)) {
        return SP_E_INPUT;
    }
    float *off = NULL, *sc = NULL;
    if (offset) {
        for (uint32_t i = 0; i < n->n_inputs; i++) {
            if (!isfinite(offset[i]) || !isfinite(scale[i]) ||
                fabsf(offset[i]) > SP_NET_PARAM_LIMIT || fabsf(scale[i]) > SP_NET_PARAM_LIMIT) {
                return SP_E_INPUT;
            }
        }
        off = malloc(n->n_inputs * sizeof *off);
        sc = malloc(n->n_inputs * sizeof *sc);
        if (!off || !sc) {
            free(off);
            free(sc);
            return SP_E_NOMEM;
        }
        memcpy(off, offset, n->n_inputs * sizeof *off);
        memcpy(sc, scale, n->n_inputs * sizeof *sc);
    }
    free(n->in_off);
    free(n->in_scale);
    n->in_off = off;
    n->in_scale = sc;
    return SP_OK;
}

int sp_network_input_transform(const sp_network_t *n, const float **offset, const float **scale)
{
    *offset = n->in_off;
    *scale = n->in_scale;
    return n->in_off != NULL;
}

/* The rows the first layer sees: X itself, or X through the input transform
 * (into n->xs). NULL when the scratch cannot grow. */
static const float *s_inputs(sp_network_t *n, const float *X, size_t rows)
{
    if (!n->in_off) {
        return X;
    }
    size_t need = rows * n->n_inputs;
    if (need > n->xs_cap) {
        float *p = realloc(n->xs, need * sizeof *p);
        if (!p) {
            return NULL;
        }
        n->xs = p;
        n->xs_cap = need;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *x = X + r * n->n_inputs;
        float *y = n->xs + r * n->n_inputs;
        for (uint32_t i = 0; i < n->n_inputs; i++) {
            y[i] = (x[i] - n->in_off[i]) * n->in_scale[i];
        }
    }
    return n->xs;
}

const sp_net_config_t *sp_network_config(const sp_network_t *n)
{
    return &n->cfg;
}
size_t sp_network_n_inputs(const sp_network_t *n)
{
    return n->n_inputs;
}
size_t sp_network_n_outputs(const sp_network_t *n)
{
    return n->layer[n->n_layers - 1]->n_out;
}
size_t sp_network_layer_count(const sp_network_t *n)
{
    return n->n_layers;
}
size_t sp_network_layer_width(const sp_network_t *n, size_t layer)
{
    if (layer == 0) {
        return n->n_inputs;
    }
    return layer <= n->n_layers ? n->layer[layer - 1]->n_out : 0;
}
sp_layer_t *sp_network_layer(const sp_network_t *n, size_t layer)
{
    return layer < n->n_layers ? n->layer[layer] : NULL;
}
int sp_network_has_training_state(const sp_network_t *n)
{
    return n->training;
}
uint64_t sp_network_steps(const sp_network_t *n)
{
    return n->steps;
}
void sp_network_set_steps(sp_network_t *n, uint64_t steps)
{
    n->steps = steps;
}

size_t sp_network_n_params(const sp_network_t *n)
{
    size_t total = 0;
    for (uint32_t l = 0; l < n->n_layers; l++) {
        total += (size_t)n->layer[l]->n_out * (n->layer[l]->n_in + 1);
    }
    return total + n->layer[n->n_layers - 1]->n_out; /* + sum |dLoss/dz| of the outputs */
}

size_t sp_network_n_hits(const sp_network_t *n)
{
    size_t total = 0;
    for (uint32_t l = 0; l < n->n_layers; l++) {
        total += (size_t)n->layer[l]->n_out * SP_ACTMAP_CELLS;
    }
    return total;
}

/* ---- scratch ------------------------------------------------------------ */

static int s_reserve(sp_network_t *n, size_t N)
{
    for (uint32_t l = 0; l < n->n_layers; l++) {
        if (sp_layer_reserve(n->layer[l], N) != SP_OK) {
            return SP_E_NOMEM;
        }
    }
    if (N > n->cap) {
        free(n->loss_s);
        free(n->ok_s);
        n->loss_s = malloc(N * sizeof(double));
        n->ok_s = malloc(N);
        if (!n->loss_s || !n->ok_s) {
            free(n->loss_s);
            free(n->ok_s);
            n->loss_s = NULL;
            n->ok_s = NULL;
            n->cap = 0;
            return SP_E_NOMEM;
        }
        n->cap = N;
    }
    return SP_OK;
}

/* ---- the batched forward / backward (inside a parallel region) ----------- */

static const float *s_input_of(const sp_network_t *n, uint32_t l, const float *X)
{
    return l == 0 ? X : n->layer[l - 1]->Y;
}

static void s_forward_phase(sp_network_t *n, const float *X, size_t N, int ith, int nth)
{
    for (uint32_t l = 0; l < n->n_layers; l++) {
        sp_layer_t *L = n->layer[l];
        const float *in = s_input_of(n, l, X);
        sp_layer_batch_hash(L, in, N, ith, nth);
        sp_layer_batch_gemm(L, in, N, ith, nth);
#pragma omp barrier
        sp_layer_batch_activate(L, N, ith, nth);
#pragma omp barrier
    }
}

static int s_check_rows(const float *A, size_t rows, size_t cols, const char *what)
{
    size_t i = sp_kern_first_nonfinite(A, rows * cols);
    if (i == rows * cols) {
        return SP_OK;
    }
    sp_log(SP_LOG_WARN, "network: %s value %zu (row %zu) is not finite", what, i, i / cols);
    return SP_E_INPUT;
}

int sp_network_forward(sp_network_t *n, const float *X, size_t n_samples, float *Y)
{
    if (!n || (!X && n_samples) || (!Y && n_samples)) {
        return SP_E_INPUT;
    }
    size_t n_out = sp_network_n_outputs(n);
    for (size_t s0 = 0; s0 < n_samples; s0 += S_FORWARD_CHUNK) {
        size_t N = n_samples - s0 < S_FORWARD_CHUNK ? n_samples - s0 : S_FORWARD_CHUNK;
        int rc = s_reserve(n, N);
        if (rc != SP_OK) {
            return rc;
        }
        const float *Xc = s_inputs(n, X + s0 * n->n_inputs, N);
        if (!Xc) {
            return SP_E_NOMEM;
        }
#pragma omp parallel
        s_forward_phase(n, Xc, N, omp_get_thread_num(), omp_get_num_threads());
        memcpy(Y + s0 * n_out, n->layer[n->n_layers - 1]->Y, N * n_out * sizeof(float));
    }
    return SP_OK;
}

/* Per-sample loss, correctness and dLoss/dY of the output layer (into G). */
static void s_loss_phase(sp_network_t *n, const float *T, size_t N, int ith, int nth)
{
    sp_layer_t *L = n->layer[n->n_layers - 1];
    size_t K = L->n_out, lo, hi;
    sp_kern_split(N, 1, ith, nth, &lo, &hi);
    for (size_t s = lo; s < hi; s++) {
        const float *y = L->Y + s * K, *t = T + s * K;
        float *g = L->G + s * K;
        size_t ay = 0, at = 0;
        for (size_t k = 1; k < K; k++) {
            ay = y[k] > y[ay] ? k : ay;
            at = t[k] > t[at] ? k : at;
        }
        n->ok_s[s] = ay == at;
        double loss = 0.0;
        if (n->cfg.loss == SP_LOSS_XENT) {
            float m = y[ay], sum = 0.0f, tsum = 0.0f;
            for (size_t k = 0; k < K; k++) {
                g[k] = expf(y[k] - m);
                sum += g[k];
                tsum += t[k];
            }
            float lse = logf(sum);
            for (size_t k = 0; k < K; k++) {
                float p = g[k] / sum;
                loss -= (double)t[k] * (double)(y[k] - m - lse);
                g[k] = p * tsum - t[k];
            }
        } else {
            float scale = 2.0f / (float)K;
            for (size_t k = 0; k < K; k++) {
                float d = y[k] - t[k];
                loss += (double)d * d;
                g[k] = scale * d;
            }
            loss /= (double)K;
        }
        n->loss_s[s] = loss;
    }
}

static size_t s_layer_offset(const sp_network_t *n, uint32_t layer)
{
    size_t off = 0;
    for (uint32_t l = 0; l < layer; l++) {
        off += (size_t)n->layer[l]->n_out * (n->layer[l]->n_in + 1);
    }
    return off;
}

/* Backward through the layers; with grad, the effective-weight gradient
 * G^T X of each layer is accumulated straight into grad's weight block (the
 * GEMM adds to the old values once, after summing in sample order) and the
 * bias gradient (sum of G over samples, in order) into its bias block. */
static void s_backward_phase(sp_network_t *n, const float *X, size_t N, float *grad, int ith,
                             int nth)
{
    uint32_t last = n->n_layers - 1;
    uint32_t stop = n->cfg.mode == SP_MODE_LOCAL ? last : 0;
    for (uint32_t l = last + 1; l-- > stop;) {
        sp_layer_t *L = n->layer[l];
        sp_layer_batch_derive(L, N, ith, nth);
#pragma omp barrier
        if (grad) {
            size_t K = L->n_out, off = s_layer_offset(n, l);
            sp_kern_gemm_gtx_acc(N, L->n_in, K, L->G, s_input_of(n, l, X), grad + off, ith, nth);
            float *gb = grad + off + K * L->n_in;
            size_t lo, hi;
            sp_kern_split(K, 1, ith, nth, &lo, &hi);
            /* the output layer also sums |dLoss/dz|, the error size the local
             * rule adapts its rates by (its block follows the last bias block) */
            float *ga = l == last ? gb + K : NULL;
            for (size_t o = lo; o < hi; o++) {
                float db = 0.0f, da = 0.0f;
                for (size_t s = 0; s < N; s++) {
                    float g = L->G[s * K + o];
                    db += g;
                    da += fabsf(g);
                }
                gb[o] += db;
                if (ga) {
                    ga[o] += da;
                }
            }
        }
        if (l > stop) {
            sp_layer_t *P = n->layer[l - 1];
            sp_kern_gemm_gw(N, L->n_in, L->n_out, L->G, L->W, P->G, ith, nth);
        }
#pragma omp barrier
    }
}

/* Position of global neuron index k among layers >= first. */
static void s_locate(const sp_network_t *n, uint32_t first, size_t k, uint32_t *l, uint32_t *o)
{
    uint32_t li = first;
    while (li < n->n_layers && k >= n->layer[li]->n_out) {
        k -= n->layer[li]->n_out;
        li++;
    }
    *l = li;
    *o = (uint32_t)k;
}

static void s_next(const sp_network_t *n, uint32_t *l, uint32_t *o)
{
    if (++*o >= n->layer[*l]->n_out) {
        *o = 0;
        ++*l;
    }
}

/* Thread ith's share of all neurons of layers [first, n_layers), in order. */
static void s_neuron_share(const sp_network_t *n, uint32_t first, int ith, int nth,
                           size_t *lo, size_t *hi)
{
    size_t total = 0;
    for (uint32_t l = first; l < n->n_layers; l++) {
        total += n->layer[l]->n_out;
    }
    sp_kern_split(total, 1, ith, nth, lo, hi);
}

/* Gradient, activation cells and loss of N rows (at most SP_NET_GRAD_CHUNK),
 * added to grad, hist (per layer: samples per cell) and res. */
static int s_gradient_rows(sp_network_t *n, const float *X, const float *T, size_t N, float *grad,
                           uint32_t hist[][SP_ACTMAP_CELLS], sp_batch_result_t *res)
{
    int rc = s_reserve(n, N);
    if (rc != SP_OK) {
        return rc;
    }
    X = s_inputs(n, X, N);
    if (!X) {
        return SP_E_NOMEM;
    }
#pragma omp parallel
    {
        int ith = omp_get_thread_num(), nth = omp_get_num_threads();
        s_forward_phase(n, X, N, ith, nth);
        /* no barrier: the loss phase and the first derive step split the
         * samples the same way, so each thread only reads rows it wrote */
        s_loss_phase(n, T, N, ith, nth);
        s_backward_phase(n, X, N, grad, ith, nth);
    }
    for (uint32_t l = 0; l < n->n_layers; l++) {
        for (size_t s = 0; s < N; s++) {
            hist[l][n->layer[l]->cell[s]]++;
        }
    }
    double loss = 0.0; /* the chunk's own sum, added to the batch's */
    uint32_t ok = 0;
    for (size_t s = 0; s < N; s++) {
        loss += n->loss_s[s];
        ok += n->ok_s[s];
    }
    res->loss_sum += loss;
    res->n_correct += ok;
    res->n_samples += (uint32_t)N;
    return SP_OK;
}

int sp_network_gradient(sp_network_t *n, const float *X, const float *T, size_t n_samples,
                        float *grad, uint32_t *hits, sp_batch_result_t *res)
{
    if (!n || !X || !T || n_samples == 0 || n_samples > UINT32_MAX) {
        return SP_E_INPUT;
    }
    size_t n_out = sp_network_n_outputs(n);
    if (s_check_rows(X, n_samples, n->n_inputs, "input") != SP_OK ||
        s_check_rows(T, n_samples, n_out, "target") != SP_OK) {
        return SP_E_INPUT;
    }
    /* A big batch goes through in chunks, so a chunk's activations and
     * deltas stay in cache between the forward and the backward pass (in
     * one piece, batch 8192 of 784 inputs streams 25 MB per pass, and runs
     * at half the speed). The result depends on the chunk size, never on
     * the thread count. */
    sp_batch_result_t sum = {0.0, 0, 0};
    uint32_t hist[SP_NET_MAX_LAYERS][SP_ACTMAP_CELLS];
    memset(hist, 0, sizeof hist);
    for (size_t s0 = 0; s0 < n_samples; s0 += SP_NET_GRAD_CHUNK) {
        size_t N = n_samples - s0 < SP_NET_GRAD_CHUNK ? n_samples - s0 : SP_NET_GRAD_CHUNK;
        int rc = s_gradient_rows(n, X + s0 * n->n_inputs, T + s0 * n_out, N, grad, hist, &sum);
        if (rc != SP_OK) {
            return rc;
        }
    }
    /* A layer's neurons share its samples' cells: each gets the layer's
     * histogram, once per batch. */
    size_t off = 0;
    for (uint32_t l = 0; hits && l < n->n_layers; l++) {
        for (uint32_t o = 0; o < n->layer[l]->n_out; o++, off += SP_ACTMAP_CELLS) {
            for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
                hits[off + c] += hist[l][c];
            }
        }
    }
    if (res) {
        *res = sum;
    }
    return SP_OK;
}

/* ---- optimizer ---------------------------------------------------------- */

static int s_enable_training(sp_network_t *n)
{
    if (n->training) {
        return SP_OK;
    }
    for (uint32_t l = 0; l < n->n_layers; l++) {
        for (uint32_t o = 0; o < n->layer[l]->n_out; o++) {
            if (sp_neuron_enable_training(&n->layer[l]->nr[o]) != SP_OK) {
                return SP_E_NOMEM;
            }
        }
    }
    n->training = 1;
    return SP_OK;
}

#define S_LANES 8
/* The momentum-SGD update of one weight row (master w, momentum v, summed
 * gradient g, step factor pw, decay factor keep), clamped to [-1, 1]; returns
 * sum_i we[i] * g[i] from S_LANES partial sums combined in a fixed order, so
 * the AVX2 clone and the portable one give the same bits (ISO C mode: no
 * fused multiply-add contraction in either). */
__attribute__((target_clones("avx2", "default"))) static float
s_sgd_row(float *restrict w, float *restrict v, const float *restrict g,
          const float *restrict we, uint32_t n, float pw, float lr, float mom, float keep)
{
    float part[S_LANES] = {0};
    uint32_t i = 0;
    for (; i + S_LANES <= n; i += S_LANES) {
#pragma omp simd
        for (uint32_t k = 0; k < S_LANES; k++) {
            part[k] += we[i + k] * g[i + k];
        }
    }
    for (uint32_t k = 0; i + k < n; k++) {
        part[k] += we[i + k] * g[i + k];
    }
#pragma omp simd
    for (uint32_t j = 0; j < n; j++) {
        float vj = mom * v[j] + pw * g[j];
        v[j] = vj;
        float x = keep * w[j] - lr * vj;
        w[j] = x > 1.0f ? 1.0f : (x < -1.0f ? -1.0f : x);
    }
    float dg = 0.0f;
    for (uint32_t k = 0; k < S_LANES; k++) {
        dg += part[k];
    }
    return dg;
}

/* One neuron's step from gE = sum over samples of dLoss/dWeff (Weff = gain *
 * w / n_found, so dLoss/dw = gain / n_found * gE by the straight-through rule)
 * and gb = sum of dLoss/dbias. Backprop: SGD with momentum in effective-weight
 * units: the weight step is preconditioned by (n_found / gain)^2, i.e.
 * w -= lr * n_found / gain * mean gE, the gain's by gain^2 (a relative step),
 * so the step size does not depend on fan-in or gain. Local: the rule of
 * sp_neuron_learn on the batch mean, w_i -= rate * mean(g x_i), no momentum.
 * W's row must still hold the weights the gradient was taken with. */
static void s_step_neuron(const sp_network_t *n, sp_neuron_t *nr, const float *wrow,
                          const float *gE, float gb, float ga, float inv_n, int local,
                          float mse_scale)
{
    float denom = (float)(nr->n_found ? nr->n_found : 1);
    float gain = fabsf(nr->gain) < S_GAIN_FLOOR ? copysignf(S_GAIN_FLOOR, nr->gain) : nr->gain;
    float lr = n->cfg.lr, mom = n->cfg.momentum, wd = n->cfg.weight_decay;
    float *restrict mv = nr->mom, *restrict mw = nr->master;
    const float *restrict g = gE;
    uint32_t n_in = nr->n_in;
    if (local) {
        float rate = nr->lr;
        float pw = rate * inv_n, keep = 1.0f - rate * wd;
#pragma omp simd
        for (uint32_t i = 0; i < n_in; i++) {
            float w = keep * mw[i] - pw * g[i];
            mw[i] = w > 1.0f ? 1.0f : (w < -1.0f ? -1.0f : w);
        }
        nr->bias -= rate * gb * inv_n;
        sp_neuron_adapt_rate(nr, ga * inv_n * mse_scale); /* mean |error| */
    } else {
        float dg = s_sgd_row(mw, mv, g, wrow, n_in, denom / gain * inv_n, lr, mom,
                             1.0f - lr * wd);
        /* dLoss/dgain = sum_i w_i / n_found * gE_i = dg / gain; times gain^2: gain * dg */
        float vg = mom * nr->mom_gain + gain * dg * inv_n;
        nr->mom_gain = vg;
        float g_new = nr->gain - lr * vg;
        if (fabsf(g_new) < S_GAIN_FLOOR) {
            g_new = copysignf(S_GAIN_FLOOR, nr->gain);
        }
        nr->gain = g_new;
        float vb = mom * nr->mom_bias + gb * inv_n;
        nr->mom_bias = vb;
        nr->bias -= lr * vb;
    }
    sp_neuron_requantize(nr);
}

static int s_apply(sp_network_t *n, const float *grad, size_t n_samples, const uint32_t *hits);

int sp_network_apply_gradient(sp_network_t *n, const float *grad, size_t n_samples,
                              const uint32_t *hits)
{
    if (!n || !grad || n_samples == 0) {
        return SP_E_INPUT;
    }
    if (s_check_rows(grad, 1, sp_network_n_params(n), "gradient") != SP_OK) {
        return SP_E_INPUT;
    }
    return s_apply(n, grad, n_samples, hits);
}

static int s_in_range(float v)
{
    return isfinite(v) && fabsf(v) <= SP_NET_PARAM_LIMIT;
}

/* False when a neuron's step has diverged: its gain, bias or a momentum went
 * non-finite or past SP_NET_PARAM_LIMIT. Weights and their masters are
 * clamped to [-1, 1] and need no check. Branch-free over the momenta so the
 * check costs little next to the step that just touched them. */
static int s_neuron_in_range(const sp_neuron_t *nr, uint32_t n_in)
{
    if (!s_in_range(nr->gain) || !s_in_range(nr->bias) || !s_in_range(nr->mom_gain) ||
        !s_in_range(nr->mom_bias)) {
        return 0;
    }
    int bad = 0;
    if (nr->mom != NULL) {
#pragma omp simd reduction(| : bad)
        for (uint32_t i = 0; i < n_in; i++) {
            bad |= !(fabsf(nr->mom[i]) <= SP_NET_PARAM_LIMIT); /* true for NaN too */
        }
    }
    return !bad;
}

/* The step itself; grad is trusted (train_batch computed it from checked input). */
static int s_apply(sp_network_t *n, const float *grad, size_t n_samples, const uint32_t *hits)
{
    int rc = s_enable_training(n);
    if (rc != SP_OK) {
        return rc;
    }
    int local = n->cfg.mode == SP_MODE_LOCAL;
    uint32_t first = local ? n->n_layers - 1 : 0;
    float inv_n = 1.0f / (float)n_samples;
    float mse_scale = n->cfg.loss == SP_LOSS_MSE ? 0.5f * (float)sp_network_n_outputs(n) : 1.0f;
    size_t offs[SP_NET_MAX_LAYERS];
    for (uint32_t l = 0; l < n->n_layers; l++) {
        offs[l] = s_layer_offset(n, l);
    }
    int diverged = 0;
#pragma omp parallel
    {
        size_t lo, hi;
        s_neuron_share(n, first, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        uint32_t l, o;
        s_locate(n, first, lo, &l, &o);
        for (size_t k = lo; k < hi; k++, s_next(n, &l, &o)) {
            sp_layer_t *L = n->layer[l];
            size_t K = L->n_out, n_in = L->n_in;
            const float *gE = grad + offs[l] + (size_t)o * n_in;
            float gb = grad[offs[l] + K * n_in + o];
            float ga = local ? grad[offs[l] + K * n_in + K + o] : 0.0f;
            s_step_neuron(n, &L->nr[o], L->W + (size_t)o * n_in, gE, gb, ga, inv_n, local,
                          mse_scale);
            sp_layer_refresh_weights(L, o, o + 1);
            if (!s_neuron_in_range(&L->nr[o], (uint32_t)n_in)) {
#pragma omp atomic write
                diverged = 1;
            }
        }
    }
    if (diverged) {
        return SP_E_RANGE;
    }
    if (hits) {
        size_t off = 0;
        for (uint32_t l = 0; l < n->n_layers; l++) {
            sp_layer_t *L = n->layer[l];
            for (uint32_t o = 0; o < L->n_out; o++) {
                uint32_t *restrict h = L->nr[o].map.hits;
                const uint32_t *restrict add = hits + off;
#pragma omp simd
                for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
                    uint32_t v = h[c] + add[c];
                    h[c] = v < h[c] ? UINT32_MAX : v; /* saturates: wrapped means past the top */
                }
                off += SP_ACTMAP_CELLS;
            }
        }
    }
    n->steps++;
    return SP_OK;
}

int sp_network_train_batch(sp_network_t *n, const float *X, const float *T, size_t n_samples,
                           float *loss)
{
    if (!n) {
        return SP_E_INPUT;
    }
    size_t np = sp_network_n_params(n), nh = sp_network_n_hits(n);
    if (np != n->grad_len || nh != n->hits_len) {
        free(n->grad);
        free(n->hits);
        n->grad = malloc(np * sizeof(float));
        n->hits = malloc(nh * sizeof(uint32_t));
        if (!n->grad || !n->hits) {
            free(n->grad);
            free(n->hits);
            n->grad = NULL;
            n->hits = NULL;
            n->grad_len = n->hits_len = 0;
            return SP_E_NOMEM;
        }
        n->grad_len = np;
        n->hits_len = nh;
    }
    memset(n->grad, 0, np * sizeof(float));
    memset(n->hits, 0, nh * sizeof(uint32_t));
    sp_batch_result_t res;
    int rc = sp_network_gradient(n, X, T, n_samples, n->grad, n->hits, &res);
    if (rc == SP_OK) {
        rc = s_apply(n, n->grad, n_samples, n->hits);
    }
    if (rc == SP_OK && loss) {
        *loss = (float)(res.loss_sum / (double)res.n_samples);
    }
    return rc;
}

/* ---- growth, pruning, stats -------------------------------------------- */

int sp_network_grow(sp_network_t *n)
{
    if (!n || !n->cfg.growth) {
        return 0;
    }
    s_sync_neuron_flags(n);
    int total = 0;
    for (uint32_t l = 0; l + 1 < n->n_layers; l++) {
        int rc = sp_layer_grow(n->layer[l], n->layer[l + 1]);
        if (rc < 0) {
            return rc;
        }
        total += rc;
    }
    if (total > 0) {
        s_free_scratch(n);
        s_sync_neuron_flags(n);
    }
    return total;
}

int sp_network_prune(sp_network_t *n, float threshold)
{
    if (!n || !(threshold == threshold)) {
        return SP_E_INPUT;
    }
    int total = 0;
    for (uint32_t l = 0; l + 1 < n->n_layers; l++) {
        int rc = sp_layer_prune(n->layer[l], threshold, n->layer[l + 1]);
        if (rc < 0) {
            return rc;
        }
        total += rc;
    }
    if (total > 0) {
        s_free_scratch(n);
    }
    return total;
}

void sp_network_stats(const sp_network_t *n, float prune_threshold, sp_network_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->layer_count = n->n_layers;
    uint64_t present = 0, capacity = 0;
    for (uint32_t l = 0; l < n->n_layers; l++) {
        sp_layer_info_t info;
        sp_layer_info(n->layer[l], n->cfg.growth_threshold, prune_threshold,
                      l + 1 == n->n_layers, &info);
        sp_layer_stats_t *ls = &out->layers[l];
        ls->neuron_count = info.neuron_count;
        ls->active_neurons = info.active_neurons;
        ls->average_saturation = info.average_saturation;
        ls->growth_candidates = info.growth_candidates;
        ls->prune_candidates = info.prune_candidates;
        out->total_neurons += info.neuron_count;
        out->total_active_neurons += info.active_neurons;
        present += info.weights_present;
        capacity += info.weights_capacity;
    }
    out->average_sparsity = capacity ? (float)(1.0 - (double)present / (double)capacity) : 0.0f;
}
