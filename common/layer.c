/* layer: SpatialLayer construction, single-sample forward / learn / backward
 * over neurons with OpenMP, the batched slices of the network's GEMM path,
 * stats, growth and pruning. Parallel loops split neurons, inputs or samples
 * by ith/nth (sp_kern_split) and never split a float sum across threads. */
#include "common/layer.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/kernels.h"
#include "common/quant.h"

#define S_MAX_WIDTH 65536u

static int s_threads(int n_threads)
{
    return n_threads > 0 ? n_threads : omp_get_max_threads();
}

/* The two activations hidden layers use most, inline; the rest through the switch.
 * Formulas identical to activation.c, so both paths give the same bits. */
static inline float s_act(unsigned f, float z)
{
    if (f == SP_ACT_RELU) {
        return z > 0.0f ? z : 0.0f;
    }
    if (f == SP_ACT_LEAKY_RELU) {
        return z > 0.0f ? z : SP_ACT_LEAKY_ALPHA * z;
    }
    return sp_act_apply((sp_act_t)f, z);
}

static inline float s_dact(unsigned f, float z)
{
    if (f == SP_ACT_RELU) {
        return z > 0.0f ? 1.0f : 0.0f;
    }
    if (f == SP_ACT_LEAKY_RELU) {
        return z > 0.0f ? 1.0f : SP_ACT_LEAKY_ALPHA;
    }
    return sp_act_derivative((sp_act_t)f, z);
}

static int s_alloc_derived(sp_layer_t *l)
{
    free(l->W);
    free(l->bias);
    free(l->act);
    l->W = malloc((size_t)l->n_out * l->n_in * sizeof(float));
    l->bias = malloc((size_t)l->n_out * sizeof(float));
    l->act = malloc((size_t)l->n_out * SP_ACTMAP_CELLS);
    return (l->W && l->bias && l->act) ? SP_OK : SP_E_NOMEM;
}

static void s_free_scratch(sp_layer_t *l)
{
    free(l->Z);
    free(l->Y);
    free(l->G);
    free(l->cell);
    l->Z = l->Y = l->G = NULL;
    l->cell = NULL;
    l->cap = 0;
}

sp_layer_t *sp_layer_alloc(uint32_t n_in, uint32_t n_out, uint64_t lsh_seed)
{
    if (n_in == 0 || n_in > S_MAX_WIDTH || n_out == 0 || n_out > S_MAX_WIDTH) {
        sp_log(SP_LOG_ERROR, "layer: width %u x %u out of range 1..%u", n_in, n_out, S_MAX_WIDTH);
        return NULL;
    }
    sp_layer_t *l = calloc(1, sizeof *l);
    if (!l) {
        return NULL;
    }
    l->n_in = n_in;
    l->n_out = n_out;
    l->lsh_seed = lsh_seed;
    l->lsh = sp_lsh_new(n_in, lsh_seed);
    l->nr = calloc(n_out, sizeof(sp_neuron_t));
    if (!l->lsh || !l->nr || s_alloc_derived(l) != SP_OK) {
        sp_layer_destroy(&l);
        return NULL;
    }
    return l;
}

void sp_layer_destroy(sp_layer_t **lp)
{
    if (!lp || !*lp) {
        return;
    }
    sp_layer_t *l = *lp;
    if (l->nr) {
        for (uint32_t o = 0; o < l->n_out; o++) {
            sp_neuron_fini(&l->nr[o]);
        }
    }
    free(l->nr);
    sp_lsh_destroy(&l->lsh);
    free(l->W);
    free(l->bias);
    free(l->act);
    s_free_scratch(l);
    free(l);
    *lp = NULL;
}

static void s_init_map(sp_actmap_t *m, const sp_layer_config_t *cfg, sp_rng_t *rng)
{
    switch (cfg->act_init) {
    case SP_ACTINIT_GRADIENT:
        sp_actmap_init_gradient(m, cfg->act_center, cfg->act_edge);
        break;
    case SP_ACTINIT_RANDOM:
        sp_actmap_init_random(m, rng);
        break;
    case SP_ACTINIT_UNIFORM:
    default:
        sp_actmap_init_uniform(m, cfg->act_center);
        break;
    }
}

sp_layer_t *sp_layer_new(uint32_t n_in, uint32_t n_out, const sp_layer_config_t *cfg,
                         sp_rng_t *rng)
{
    if (!sp_quant_bits_valid(cfg->bits) || (unsigned)cfg->act_center >= SP_ACT_COUNT ||
        (unsigned)cfg->act_edge >= SP_ACT_COUNT || !(cfg->init_density >= 0.0f) ||
        cfg->init_density > 1.0f) {
        sp_log(SP_LOG_ERROR, "layer: bad config (bits %u, activations %d/%d, density %g)",
               cfg->bits, (int)cfg->act_center, (int)cfg->act_edge, (double)cfg->init_density);
        return NULL;
    }
    sp_layer_t *l = sp_layer_alloc(n_in, n_out, cfg->lsh_seed);
    float *w = l ? malloc(n_in * sizeof(float)) : NULL;
    if (!w) {
        sp_layer_destroy(&l);
        return NULL;
    }
    for (uint32_t k = 0; k < n_out; k++) {
        sp_neuron_t *nr = &l->nr[k];
        if (sp_neuron_init(nr, (uint64_t)n_out + k, sp_morton_decode(k), n_in, cfg->bits,
                           cfg->training, cfg->lr) != SP_OK) {
            free(w);
            sp_layer_destroy(&l);
            return NULL;
        }
        nr->growth = (uint8_t)(cfg->growth != 0);
        nr->growth_threshold = cfg->growth_threshold;
        s_init_map(&nr->map, cfg, rng);
        for (uint32_t i = 0; i < n_in; i++) {
            float u = sp_rng_float(rng) * 2.0f - 1.0f;
            w[i] = sp_rng_float(rng) < cfg->init_density ? u : 0.0f;
        }
        sp_neuron_set_weights(nr, w);
        uint32_t found = nr->n_found ? nr->n_found : 1;
        nr->gain = cfg->gain_scale * sqrtf(3.0f * (float)found);
        nr->bias = 0.0f;
    }
    free(w);
    sp_layer_refresh(l, 1);
    return l;
}

sp_layer_t *sp_layer_clone(const sp_layer_t *src)
{
    sp_layer_t *l = sp_layer_alloc(src->n_in, src->n_out, src->lsh_seed);
    if (!l) {
        return NULL;
    }
    for (uint32_t o = 0; o < src->n_out; o++) {
        if (sp_neuron_copy(&l->nr[o], &src->nr[o]) != SP_OK) {
            memset(&l->nr[o], 0, sizeof l->nr[o]);
            sp_layer_destroy(&l);
            return NULL;
        }
    }
    memcpy(l->W, src->W, (size_t)src->n_out * src->n_in * sizeof(float));
    memcpy(l->bias, src->bias, src->n_out * sizeof(float));
    memcpy(l->act, src->act, (size_t)src->n_out * SP_ACTMAP_CELLS);
    return l;
}

void sp_layer_refresh_rows(sp_layer_t *l, uint32_t lo, uint32_t hi)
{
    for (uint32_t o = lo; o < hi; o++) {
        const sp_neuron_t *nr = &l->nr[o];
        sp_neuron_effective_row(nr, l->W + (size_t)o * l->n_in);
        l->bias[o] = nr->bias;
        for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
            l->act[(size_t)c * l->n_out + o] = nr->map.func[c];
        }
    }
}

void sp_layer_refresh_weights(sp_layer_t *l, uint32_t lo, uint32_t hi)
{
    for (uint32_t o = lo; o < hi; o++) {
        sp_neuron_effective_row(&l->nr[o], l->W + (size_t)o * l->n_in);
        l->bias[o] = l->nr[o].bias;
    }
}

void sp_layer_refresh(sp_layer_t *l, int n_threads)
{
    int nth = s_threads(n_threads);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        size_t lo, hi;
        sp_kern_split(l->n_out, 1, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        sp_layer_refresh_rows(l, (uint32_t)lo, (uint32_t)hi);
    }
}

int sp_layer_reserve(sp_layer_t *l, size_t cap)
{
    if (cap > l->cap) {
        free(l->Z);
        free(l->Y);
        free(l->G);
        free(l->cell);
        l->Z = malloc(cap * l->n_out * sizeof(float));
        l->Y = malloc(cap * l->n_out * sizeof(float));
        l->G = malloc(cap * l->n_out * sizeof(float));
        l->cell = malloc(cap);
        if (!l->Z || !l->Y || !l->G || !l->cell) {
            s_free_scratch(l);
            return SP_E_NOMEM;
        }
        l->cap = cap;
    }
    return SP_OK;
}

/* ---- single sample ------------------------------------------------------ */

int sp_layer_forward(sp_layer_t *l, const float *x, float *y, int n_threads)
{
    sp_input_t in = {x, l->n_in, {0, 0, 0}, sp_lsh_hash(l->lsh, x)};
    int nth = s_threads(n_threads);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        size_t lo, hi;
        sp_kern_split(l->n_out, 1, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (size_t o = lo; o < hi; o++) {
            int rc = sp_neuron_forward(&l->nr[o], &in, &y[o]);
            SP_ASSERT(rc == SP_OK); /* lengths match by construction */
        }
    }
    return SP_OK;
}

int sp_layer_learn(sp_layer_t *l, const float *x, const float *err, int n_threads)
{
    for (uint32_t o = 0; o < l->n_out; o++) {
        if (err[o] != err[o]) {
            return SP_E_INPUT;
        }
    }
    sp_input_t in = {x, l->n_in, {0, 0, 0}, 0};
    int nth = s_threads(n_threads);
    int failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1) reduction(| : failed)
    {
        size_t lo, hi;
        sp_kern_split(l->n_out, 1, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (size_t o = lo; o < hi; o++) {
            failed |= sp_neuron_learn(&l->nr[o], &in, err[o]) != SP_OK;
        }
        sp_layer_refresh_weights(l, (uint32_t)lo, (uint32_t)hi);
    }
    return failed ? SP_E_NOMEM : SP_OK;
}

void sp_layer_backward(const sp_layer_t *l, const float *g, float *dx, int n_threads)
{
    int nth = s_threads(n_threads);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        size_t lo, hi;
        sp_kern_split(l->n_in, 16, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            dx[i] = 0.0f;
        }
        for (uint32_t o = 0; o < l->n_out; o++) {
            const float *w = l->W + (size_t)o * l->n_in;
            float go = g[o];
            for (size_t i = lo; i < hi; i++) {
                dx[i] += go * w[i];
            }
        }
    }
}

/* ---- batched slices ----------------------------------------------------- */

void sp_layer_batch_hash(sp_layer_t *l, const float *X, size_t N, int ith, int nth)
{
    size_t lo, hi;
    sp_kern_split(N, 1, ith, nth, &lo, &hi);
    for (size_t s = lo; s < hi; s++) {
        l->cell[s] = (uint8_t)sp_actmap_cell(sp_lsh_hash(l->lsh, X + s * l->n_in));
    }
}

void sp_layer_batch_gemm(sp_layer_t *l, const float *X, size_t N, int ith, int nth)
{
    sp_kern_gemm_xwt(N, l->n_in, l->n_out, X, l->W, l->Z, ith, nth);
}

void sp_layer_batch_activate(sp_layer_t *l, size_t N, int ith, int nth)
{
    size_t lo, hi;
    sp_kern_split(N, 1, ith, nth, &lo, &hi);
    size_t n = l->n_out;
    for (size_t s = lo; s < hi; s++) {
        const uint8_t *f = l->act + (size_t)l->cell[s] * n;
        float *z = l->Z + s * n, *y = l->Y + s * n;
        for (size_t o = 0; o < n; o++) {
            float v = z[o] + l->bias[o];
            z[o] = v;
            y[o] = s_act(f[o], v);
        }
    }
}

void sp_layer_batch_derive(sp_layer_t *l, size_t N, int ith, int nth)
{
    size_t lo, hi;
    sp_kern_split(N, 1, ith, nth, &lo, &hi);
    size_t n = l->n_out;
    for (size_t s = lo; s < hi; s++) {
        const uint8_t *f = l->act + (size_t)l->cell[s] * n;
        const float *z = l->Z + s * n;
        float *g = l->G + s * n;
        for (size_t o = 0; o < n; o++) {
            g[o] *= s_dact(f[o], z[o]);
        }
    }
}

/* ---- stats -------------------------------------------------------------- */

void sp_layer_info(const sp_layer_t *l, float growth_threshold, float prune_threshold,
                   int is_output, sp_layer_info_t *out)
{
    memset(out, 0, sizeof *out);
    out->neuron_count = l->n_out;
    double sat = 0.0;
    for (uint32_t o = 0; o < l->n_out; o++) {
        const sp_neuron_t *nr = &l->nr[o];
        float s = sp_neuron_saturation(nr);
        sat += s;
        out->active_neurons += nr->n_found > 0;
        out->growth_candidates += s > growth_threshold && !is_output;
        out->prune_candidates += s <= prune_threshold && !is_output;
        out->weights_present += nr->n_found;
        out->weights_capacity += nr->n_in;
    }
    out->average_saturation = l->n_out ? (float)(sat / l->n_out) : 0.0f;
}

/* ---- growth and pruning ------------------------------------------------- */

typedef struct {
    uint64_t code;
    uint64_t id;
    uint32_t idx;
} s_key_t;

static int s_key_cmp(const void *a, const void *b)
{
    const s_key_t *x = a, *y = b;
    if (x->code != y->code) {
        return x->code < y->code ? -1 : 1;
    }
    if (x->id != y->id) {
        return x->id < y->id ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Swaps in a new neuron array of n_out neurons; derived arrays and scratch are
 * rebuilt (scratch lazily). */
static int s_install(sp_layer_t *l, sp_neuron_t *nr, uint32_t n_out)
{
    free(l->nr);
    l->nr = nr;
    l->n_out = n_out;
    s_free_scratch(l);
    int rc = s_alloc_derived(l);
    if (rc == SP_OK) {
        sp_layer_refresh(l, 1);
    }
    return rc;
}

/* next's inputs become old inputs src[0..n_new); fold[k] (old input k removed)
 * is added to the bias through the old effective weight; gains keep their
 * per-weight scale gain / n_found. */
static int s_remap_next(sp_layer_t *nx, uint32_t n_new, const uint32_t *src, const float *fold,
                        const uint8_t *removed)
{
    sp_lsh_t *lsh = sp_lsh_new(n_new, nx->lsh_seed);
    if (!lsh) {
        return SP_E_NOMEM;
    }
    for (uint32_t o = 0; o < nx->n_out; o++) {
        sp_neuron_t *nr = &nx->nr[o];
        uint32_t before = nr->n_found;
        if (fold && before > 0) {
            float add = 0.0f;
            for (uint32_t k = 0; k < nr->n_in; k++) {
                if (removed[k]) {
                    add += sp_neuron_weight(nr, k) * fold[k];
                }
            }
            nr->bias += nr->gain / (float)before * add;
        }
        int rc = sp_neuron_remap_inputs(nr, n_new, src);
        if (rc != SP_OK) {
            sp_lsh_destroy(&lsh);
            return rc; /* neurons before o already remapped: the caller fails hard */
        }
        if (before > 0 && nr->n_found > 0) {
            nr->gain *= (float)nr->n_found / (float)before;
        }
    }
    sp_lsh_destroy(&nx->lsh);
    nx->lsh = lsh;
    nx->n_in = n_new;
    s_free_scratch(nx);
    int rc = s_alloc_derived(nx);
    if (rc == SP_OK) {
        sp_layer_refresh(nx, 1);
    }
    return rc;
}

int sp_layer_grow(sp_layer_t *l, sp_layer_t *next)
{
    uint32_t splits = 0;
    for (uint32_t o = 0; o < l->n_out; o++) {
        splits += (uint32_t)sp_neuron_should_split(&l->nr[o]);
    }
    if (splits == 0) {
        return 0;
    }
    uint32_t n_new = l->n_out + splits;
    if (n_new > S_MAX_WIDTH) {
        return SP_E_RANGE;
    }
    sp_neuron_t *tmp = calloc(n_new, sizeof *tmp);
    sp_neuron_t *nr = calloc(n_new, sizeof *nr);
    s_key_t *keys = calloc(n_new, sizeof *keys);
    uint32_t *src = calloc(n_new, sizeof *src);
    uint8_t *split = calloc(l->n_out, 1);
    if (!tmp || !nr || !keys || !src || !split) {
        free(tmp);
        free(nr);
        free(keys);
        free(src);
        free(split);
        return SP_E_NOMEM;
    }
    uint32_t j = 0;
    int rc = SP_OK;
    for (uint32_t o = 0; o < l->n_out && rc == SP_OK; o++) {
        if (sp_neuron_should_split(&l->nr[o])) {
            rc = sp_neuron_split(&l->nr[o], &tmp[j], &tmp[j + 1]);
            if (rc == SP_OK) {
                src[j] = src[j + 1] = o;
                split[o] = 1;
                j += 2;
            }
        } else {
            tmp[j] = l->nr[o]; /* moved, not copied */
            src[j] = o;
            j++;
        }
    }
    if (rc != SP_OK) {
        for (uint32_t k = 0; k < j; k++) {
            if (split[src[k]]) {
                sp_neuron_fini(&tmp[k]);
            }
        }
        free(tmp);
        free(nr);
        free(keys);
        free(src);
        free(split);
        return rc;
    }
    for (uint32_t k = 0; k < n_new; k++) {
        keys[k].code = sp_morton_encode(tmp[k].pos);
        keys[k].id = tmp[k].id;
        keys[k].idx = k;
    }
    qsort(keys, n_new, sizeof *keys, s_key_cmp);
    uint32_t *src_sorted = malloc(n_new * sizeof *src_sorted);
    if (!src_sorted) {
        rc = SP_E_NOMEM;
    }
    for (uint32_t k = 0; k < n_new && rc == SP_OK; k++) {
        nr[k] = tmp[keys[k].idx];
        src_sorted[k] = src[keys[k].idx];
    }
    if (rc == SP_OK && next) {
        rc = s_remap_next(next, n_new, src_sorted, NULL, NULL);
    }
    if (rc == SP_OK) {
        for (uint32_t o = 0; o < l->n_out; o++) {
            if (split[o]) {
                sp_neuron_fini(&l->nr[o]);
            }
        }
        rc = s_install(l, nr, n_new);
        nr = NULL;
    } else {
        for (uint32_t k = 0; k < n_new; k++) {
            if (split[src[k]]) {
                sp_neuron_fini(&tmp[k]);
            }
        }
    }
    free(nr);
    free(tmp);
    free(keys);
    free(src);
    free(src_sorted);
    free(split);
    return rc == SP_OK ? (int)splits : rc;
}

/* Output of a neuron with no weights: f(bias) through its most-hit cell. */
static float s_idle_output(const sp_neuron_t *nr)
{
    unsigned best = 0;
    for (unsigned c = 1; c < SP_ACTMAP_CELLS; c++) {
        if (nr->map.hits[c] > nr->map.hits[best]) {
            best = c;
        }
    }
    return sp_act_apply((sp_act_t)nr->map.func[best], nr->bias);
}

int sp_layer_prune(sp_layer_t *l, float threshold, sp_layer_t *next)
{
    uint8_t *removed = calloc(l->n_out, 1);
    float *fold = calloc(l->n_out, sizeof(float));
    uint32_t *src = calloc(l->n_out, sizeof(uint32_t));
    if (!removed || !fold || !src) {
        free(removed);
        free(fold);
        free(src);
        return SP_E_NOMEM;
    }
    uint32_t n_rm = 0, best = 0;
    for (uint32_t o = 0; o < l->n_out; o++) {
        float s = sp_neuron_saturation(&l->nr[o]);
        if (s <= threshold) {
            removed[o] = 1;
            fold[o] = s_idle_output(&l->nr[o]);
            n_rm++;
        }
        if (s > sp_neuron_saturation(&l->nr[best])) {
            best = o;
        }
    }
    if (n_rm == l->n_out) { /* a layer keeps at least one neuron */
        removed[best] = 0;
        n_rm--;
    }
    int rc = SP_OK;
    if (n_rm > 0) {
        uint32_t n_new = 0;
        for (uint32_t o = 0; o < l->n_out; o++) {
            if (!removed[o]) {
                src[n_new++] = o;
            }
        }
        sp_neuron_t *nr = malloc(n_new * sizeof *nr);
        if (!nr) {
            rc = SP_E_NOMEM;
        }
        if (rc == SP_OK && next) {
            rc = s_remap_next(next, n_new, src, fold, removed);
        }
        if (rc == SP_OK) {
            for (uint32_t k = 0; k < n_new; k++) {
                nr[k] = l->nr[src[k]];
            }
            for (uint32_t o = 0; o < l->n_out; o++) {
                if (removed[o]) {
                    sp_neuron_fini(&l->nr[o]);
                }
            }
            rc = s_install(l, nr, n_new);
        } else {
            free(nr);
        }
    }
    free(removed);
    free(fold);
    free(src);
    return rc == SP_OK ? (int)n_rm : rc;
}
