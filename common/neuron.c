/* neuron: SpatialNeuron forward, local learning, temporal state and mitosis
 * on a private spatial memory whose cells [base, base + n_in) are all
 * reserved, so the weights are one packed run read with the packed kernels.
 * Occupancy is kept equal to "|master| >= presence threshold" while training. */
#include "common/neuron.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/kernels.h"
#include "common/quant.h"

#define S_MAX_FAN_IN 65536u
#define S_OCC_WORDS(n) (((size_t)(n) + 63) / 64)
#define S_GAIN_FLOOR 1e-3f /* |gain| used as a divisor never goes below this */

float sp_neuron_presence_threshold(unsigned bits)
{
    /* Smallest level magnitude is 1/(2^b - 1) (levels are odd multiples of it). */
    return 0.5f / (float)sp_quant_levels(bits);
}

unsigned sp_neuron_region_side(uint32_t n_in)
{
    return n_in >= 256 ? 4u : 2u;
}

float sp_neuron_saturation(const sp_neuron_t *nr)
{
    return nr->n_in ? (float)nr->n_found / (float)nr->n_in : 0.0f;
}

static sp_memory_t *s_memory_new(uint32_t n_in, unsigned bits, uint64_t base)
{
    sp_memory_config_t mc;
    memset(&mc, 0, sizeof mc);
    mc.bits = (uint8_t)bits;
    mc.region_side = (uint16_t)sp_neuron_region_side(n_in);
    mc.capacity = n_in;
    sp_memory_t *m = sp_memory_new(&mc);
    if (m && sp_memory_reserve_run(m, base, n_in) != SP_OK) {
        sp_memory_destroy(&m);
    }
    return m;
}

/* Refreshes the cached run pointers (after anything that may move storage). */
static void s_recache(sp_neuron_t *nr)
{
    nr->run = sp_memory_run_mut(nr->mem, nr->base, nr->n_in);
    nr->occ = sp_memory_run_occupancy(nr->mem, nr->base, nr->n_in);
    SP_ASSERT(nr->run != NULL && nr->occ != NULL);
}

int sp_neuron_init(sp_neuron_t *nr, uint64_t id, sp_pos_t pos, uint32_t n_in, unsigned bits,
                   int training, float lr)
{
    memset(nr, 0, sizeof *nr);
    if (!sp_quant_bits_valid(bits) || n_in == 0 || n_in > S_MAX_FAN_IN) {
        return SP_E_RANGE;
    }
    nr->id = id;
    nr->pos = pos;
    nr->bits = (uint8_t)bits;
    nr->growth_threshold = 0.9f;
    nr->n_in = n_in;
    nr->base = 0;
    nr->gain = 1.0f;
    nr->lr = lr < SP_NEURON_LR_MIN ? SP_NEURON_LR_MIN : lr > SP_NEURON_LR_MAX ? SP_NEURON_LR_MAX : lr;
    sp_actmap_init_uniform(&nr->map, SP_ACT_RELU);
    nr->mem = s_memory_new(n_in, bits, nr->base);
    if (!nr->mem) {
        return SP_E_NOMEM;
    }
    s_recache(nr);
    if (training) {
        nr->master = calloc(n_in, sizeof(float));
        nr->mom = calloc(n_in, sizeof(float));
        if (!nr->master || !nr->mom) {
            sp_neuron_fini(nr);
            return SP_E_NOMEM;
        }
    }
    return SP_OK;
}

void sp_neuron_fini(sp_neuron_t *nr)
{
    if (!nr) {
        return;
    }
    sp_memory_destroy(&nr->mem);
    free(nr->master);
    free(nr->mom);
    nr->master = NULL;
    nr->mom = NULL;
}

int sp_neuron_copy(sp_neuron_t *dst, const sp_neuron_t *src)
{
    *dst = *src;
    dst->mem = NULL;
    dst->master = NULL;
    dst->mom = NULL;
    dst->mem = sp_memory_clone(src->mem);
    if (!dst->mem) {
        return SP_E_NOMEM;
    }
    s_recache(dst);
    if (src->master) {
        dst->master = malloc(src->n_in * sizeof(float));
        dst->mom = malloc(src->n_in * sizeof(float));
        if (!dst->master || !dst->mom) {
            sp_neuron_fini(dst);
            return SP_E_NOMEM;
        }
        memcpy(dst->master, src->master, src->n_in * sizeof(float));
        memcpy(dst->mom, src->mom, src->n_in * sizeof(float));
    }
    return SP_OK;
}

/* Makes the memory's occupancy of the run equal `want` (bits past n_in are
 * ignored); only changed cells are touched, so the usual cost is one xor a
 * word. The differences are taken first: marking a cell empty may move the
 * memory's storage (and invalidate run pointers). */
static void s_sync_occupancy(sp_neuron_t *nr, const uint64_t *want)
{
    uint64_t diff[S_OCC_WORDS(S_MAX_FAN_IN)];
    const uint64_t *cur = nr->occ;
    size_t words = S_OCC_WORDS(nr->n_in), changed = 0;
    for (size_t w = 0; w < words; w++) {
        diff[w] = cur[w] ^ want[w];
        if (w == words - 1 && (nr->n_in & 63)) {
            diff[w] &= (UINT64_C(1) << (nr->n_in & 63)) - 1;
        }
        changed |= diff[w] != 0;
    }
    if (!changed) {
        return;
    }
    for (size_t w = 0; w < words; w++) {
        uint64_t d = diff[w];
        while (d) {
            unsigned b = (unsigned)__builtin_ctzll(d);
            d &= d - 1;
            int rc = sp_memory_set_occupied(nr->mem, nr->base + w * 64 + b,
                                             (int)((want[w] >> b) & 1u));
            SP_ASSERT(rc == SP_OK); /* the run is reserved; NOMEM here is fatal */
        }
    }
    s_recache(nr);
}

/* Quantizes the float row w into the run (nearest level, presence by threshold). */
static void s_store_row(sp_neuron_t *nr, const float *w)
{
    uint64_t occ[S_OCC_WORDS(S_MAX_FAN_IN)];
    size_t words = S_OCC_WORDS(nr->n_in);
    memcpy(occ, nr->occ, words * sizeof(uint64_t));
    size_t found = sp_kern_quantize_row(w, nr->n_in, nr->bits,
                                        sp_neuron_presence_threshold(nr->bits), nr->run, occ);
    s_sync_occupancy(nr, occ);
    nr->n_found = (uint32_t)found;
}

void sp_neuron_load_run(sp_neuron_t *nr, const uint8_t *packed, const uint64_t *occ)
{
    memcpy(nr->run, packed, sp_quant_packed_size(nr->n_in, nr->bits));
    s_sync_occupancy(nr, occ);
    nr->n_found = (uint32_t)sp_memory_count(nr->mem);
}

int sp_neuron_set_weights(sp_neuron_t *nr, const float *w)
{
    if (nr->master) {
        for (uint32_t i = 0; i < nr->n_in; i++) {
            float v = w[i];
            nr->master[i] = v != v ? 0.0f : v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        }
        s_store_row(nr, nr->master);
    } else {
        s_store_row(nr, w);
    }
    return SP_OK;
}

void sp_neuron_requantize(sp_neuron_t *nr)
{
    SP_ASSERT(nr->master != NULL);
    s_store_row(nr, nr->master);
}

int sp_neuron_enable_training(sp_neuron_t *nr)
{
    if (nr->master) {
        return SP_OK;
    }
    float *m = malloc(nr->n_in * sizeof(float));
    float *v = calloc(nr->n_in, sizeof(float));
    if (!m || !v) {
        free(m);
        free(v);
        return SP_E_NOMEM;
    }
    sp_kern_unpack_row(nr->run, nr->occ, nr->n_in, nr->bits, m);
    nr->master = m;
    nr->mom = v;
    nr->mom_gain = 0.0f;
    nr->mom_bias = 0.0f;
    return SP_OK;
}

void sp_neuron_drop_training(sp_neuron_t *nr)
{
    free(nr->master);
    free(nr->mom);
    nr->master = NULL;
    nr->mom = NULL;
    nr->mom_gain = 0.0f;
    nr->mom_bias = 0.0f;
}

void sp_neuron_effective_row(const sp_neuron_t *nr, float *out)
{
    if (nr->n_found == 0) {
        memset(out, 0, nr->n_in * sizeof(float));
        return;
    }
    sp_kern_unpack_row_scaled(nr->run, nr->occ, nr->n_in, nr->bits,
                              nr->gain / (float)nr->n_found, out);
}

float sp_neuron_weight(const sp_neuron_t *nr, uint32_t i)
{
    SP_ASSERT(i < nr->n_in);
    if (!((nr->occ[i >> 6] >> (i & 63)) & 1u)) {
        return 0.0f;
    }
    return sp_quant_value(sp_quant_get(nr->run, i, nr->bits), nr->bits);
}

/* Sum of present w_i x_i for the weights at code ctx + i: the packed run when
 * ctx is the neuron's base, otherwise one memory lookup a weight (slow path). */
static float s_dot(const sp_neuron_t *nr, const float *x, uint64_t ctx, uint32_t *found)
{
    if (ctx == nr->base) {
        *found = nr->n_found;
        if (nr->n_found == 0) {
            return 0.0f;
        }
        return sp_kern_dot_packed(nr->run, nr->occ, x, nr->n_in, nr->bits);
    }
    float acc = 0.0f;
    uint32_t n = 0;
    for (uint32_t i = 0; i < nr->n_in; i++) {
        float w;
        if (sp_memory_retrieve_code(nr->mem, ctx + i, &w) == SP_OK) {
            acc += w * x[i];
            n++;
        }
    }
    *found = n;
    return acc;
}

static inline float s_preact(const sp_neuron_t *nr, float dot, uint32_t found)
{
    return found ? dot * (nr->gain / (float)found) + nr->bias : nr->bias;
}

float sp_neuron_output(const sp_neuron_t *nr, const float *x, uint64_t pattern_hash)
{
    uint32_t found;
    float dot = s_dot(nr, x, nr->base, &found);
    unsigned cell = sp_actmap_cell(pattern_hash);
    return sp_act_apply((sp_act_t)nr->map.func[cell], s_preact(nr, dot, found));
}

int sp_neuron_forward(sp_neuron_t *nr, const sp_input_t *in, float *out)
{
    if (in->n != nr->n_in || in->values == NULL) {
        return SP_E_INPUT;
    }
    uint32_t found;
    float dot = s_dot(nr, in->values, sp_morton_encode(in->context), &found);
    float z = s_preact(nr, dot, found);
    unsigned cell = sp_actmap_select(&nr->map, in->pattern_hash);
    float y = sp_act_apply((sp_act_t)nr->map.func[cell], z);
    for (int k = SP_NEURON_TEMPORAL - 1; k > 0; k--) {
        nr->temporal[k] = nr->temporal[k - 1] * SP_NEURON_TEMPORAL_DECAY;
    }
    nr->temporal[0] = y;
    nr->last_z = z;
    nr->last_cell = (uint8_t)cell;
    *out = y;
    return SP_OK;
}

void sp_neuron_adapt_rate(sp_neuron_t *nr, float abs_error)
{
    if (abs_error > SP_NEURON_ERR_HIGH) {
        nr->lr = fminf(nr->lr * SP_NEURON_LR_UP, SP_NEURON_LR_MAX);
    } else if (abs_error < SP_NEURON_ERR_LOW) {
        nr->lr = fmaxf(nr->lr * SP_NEURON_LR_DOWN, SP_NEURON_LR_MIN);
    }
}

int sp_neuron_learn(sp_neuron_t *nr, const sp_input_t *in, float error)
{
    if (in->n != nr->n_in || in->values == NULL) {
        return SP_E_INPUT;
    }
    if (error != error) {
        return SP_E_INPUT;
    }
    int rc = sp_neuron_enable_training(nr);
    if (rc != SP_OK) {
        return rc;
    }
    float g = error * sp_act_derivative((sp_act_t)nr->map.func[nr->last_cell], nr->last_z);
    float rate_err = nr->lr * g;
    if (sp_morton_encode(in->context) == nr->base) {
        uint64_t occ[S_OCC_WORDS(S_MAX_FAN_IN)];
        size_t words = S_OCC_WORDS(nr->n_in);
        memcpy(occ, nr->occ, words * sizeof(uint64_t));
        size_t found = sp_kern_learn_packed(nr->master, nr->run, occ, in->values, nr->n_in,
                                            nr->bits, rate_err,
                                            sp_neuron_presence_threshold(nr->bits));
        s_sync_occupancy(nr, occ);
        nr->n_found = (uint32_t)found;
    } else {
        /* The weights of another context are not this neuron's run: nothing to
         * learn there (the spatial API covers them, the network never uses it). */
        return SP_E_INPUT;
    }
    nr->bias -= nr->lr * g;
    sp_neuron_adapt_rate(nr, fabsf(error));
    return SP_OK;
}

int sp_neuron_should_split(const sp_neuron_t *nr)
{
    return nr->growth && nr->id < SP_NEURON_ID_SPLIT_LIMIT && nr->id > 0 &&
           sp_neuron_saturation(nr) > nr->growth_threshold;
}

/* First input index that belongs to child b: child a takes the first
 * floor(R/2) of the R regions covering [base, base + n_in). */
static uint32_t s_split_cut(const sp_neuron_t *nr)
{
    unsigned side = sp_memory_region_side(nr->mem);
    uint64_t cells = (uint64_t)side * side * side;
    uint64_t regions = (nr->n_in + cells - 1) / cells;
    uint64_t cut = (regions / 2) * cells;
    return cut > nr->n_in ? nr->n_in : (uint32_t)cut;
}

static int s_child(const sp_neuron_t *p, sp_neuron_t *c, sp_memory_t *mem, uint64_t id, int dx,
                   uint32_t lo, uint32_t hi)
{
    *c = *p;
    c->mem = mem;
    c->master = NULL;
    c->mom = NULL;
    c->id = id;
    c->pos.x = (uint16_t)(p->pos.x + dx);
    if (sp_memory_reserve_run(mem, c->base, c->n_in) != SP_OK) {
        sp_memory_destroy(&c->mem);
        return SP_E_NOMEM;
    }
    s_recache(c);
    c->n_found = (uint32_t)sp_memory_count(mem);
    c->gain = p->n_found ? p->gain * (float)c->n_found / (float)p->n_found : p->gain * 0.5f;
    c->bias = p->bias * 0.5f;
    if (p->master) {
        c->master = calloc(p->n_in, sizeof(float));
        c->mom = calloc(p->n_in, sizeof(float));
        if (!c->master || !c->mom) {
            sp_neuron_fini(c);
            return SP_E_NOMEM;
        }
        memcpy(c->master + lo, p->master + lo, (hi - lo) * sizeof(float));
        memcpy(c->mom + lo, p->mom + lo, (hi - lo) * sizeof(float));
        c->mom_bias = p->mom_bias * 0.5f;
    }
    return SP_OK;
}

int sp_neuron_split(const sp_neuron_t *nr, sp_neuron_t *a, sp_neuron_t *b)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    if (nr->id >= SP_NEURON_ID_SPLIT_LIMIT || nr->id == 0) {
        return SP_E_RANGE;
    }
    sp_memory_t *ma = NULL, *mb = NULL;
    int rc = sp_memory_split_into(nr->mem, &ma, &mb);
    if (rc != SP_OK) {
        return rc;
    }
    uint32_t cut = s_split_cut(nr);
    rc = s_child(nr, a, ma, nr->id * 2, -1, 0, cut);
    if (rc != SP_OK) {
        sp_memory_destroy(&mb);
        return rc;
    }
    rc = s_child(nr, b, mb, nr->id * 2 + 1, +1, cut, nr->n_in);
    if (rc != SP_OK) {
        sp_neuron_fini(a);
        return rc;
    }
    return SP_OK;
}

int sp_neuron_remap_inputs(sp_neuron_t *nr, uint32_t n_new, const uint32_t *src)
{
    if (n_new == 0 || n_new > S_MAX_FAN_IN) {
        return SP_E_RANGE;
    }
    float *row = malloc(n_new * sizeof(float));
    float *old = malloc(nr->n_in * sizeof(float));
    float *mom = nr->master ? calloc(n_new, sizeof(float)) : NULL;
    sp_memory_t *mem = s_memory_new(n_new, nr->bits, nr->base);
    if (!row || !old || !mem || (nr->master && !mom)) {
        free(row);
        free(old);
        free(mom);
        sp_memory_destroy(&mem);
        return SP_E_NOMEM;
    }
    if (nr->master) {
        memcpy(old, nr->master, nr->n_in * sizeof(float));
    } else {
        /* Stored values are exact levels, so re-quantizing them gives the same levels. */
        sp_kern_unpack_row(sp_memory_run(nr->mem, nr->base, nr->n_in),
                           sp_memory_run_occupancy(nr->mem, nr->base, nr->n_in), nr->n_in,
                           nr->bits, old);
    }
    for (uint32_t j = 0; j < n_new; j++) {
        SP_ASSERT(src[j] < nr->n_in);
        row[j] = old[src[j]];
        if (mom) {
            mom[j] = nr->mom[src[j]];
        }
    }
    sp_memory_destroy(&nr->mem);
    nr->mem = mem;
    nr->n_in = n_new;
    s_recache(nr);
    if (nr->master) {
        free(nr->master);
        free(nr->mom);
        nr->master = row;
        nr->mom = mom;
        row = NULL;
        s_store_row(nr, nr->master);
    } else {
        s_store_row(nr, row);
    }
    free(row);
    free(old);
    return SP_OK;
}
