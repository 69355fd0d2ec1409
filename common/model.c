/* model: a whole network as one MessagePack document (docs/MODEL_FORMAT.md).
 * The writer emits keys in one fixed order and floats as float32, so the same
 * network always gives the same bytes and a load restores every bit. The
 * reader trusts nothing: sp_mp_unpack pre-scans before msgpack-c allocates,
 * every field is fetched with a typed getter, every count is checked against
 * the format's limits and against the fields it must agree with. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/kernels.h"
#include "common/layer.h"
#include "common/mpcheck.h"
#include "common/network.h"
#include "common/quant.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model.c writes float and integer arrays as little-endian bytes by copying them"
#endif

#define S_FORMAT "spatium-model"
#define S_VERSION 1u
#define S_MAX_FILE_BYTES ((size_t)1 << 31)
#define S_OCC_WORDS(n) (((size_t)(n) + 63) / 64)

/* ---- writer ------------------------------------------------------------- */

static void s_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

static void s_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    s_key(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void s_kv_f32(msgpack_packer *pk, const char *k, float v)
{
    s_key(pk, k);
    msgpack_pack_float(pk, v);
}

static void s_kv_bool(msgpack_packer *pk, const char *k, int v)
{
    s_key(pk, k);
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static void s_kv_bin(msgpack_packer *pk, const char *k, const void *p, size_t n)
{
    s_key(pk, k);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

static void s_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    s_key(pk, k);
    size_t n = strlen(v);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, v, n);
}

static void s_pack_config(msgpack_packer *pk, const sp_net_config_t *c)
{
    s_key(pk, "config");
    msgpack_pack_map(pk, 18);
    s_kv_u64(pk, "bits", c->bits);
    s_kv_u64(pk, "mode", (uint64_t)c->mode);
    s_kv_u64(pk, "loss", (uint64_t)c->loss);
    s_kv_f32(pk, "lr", c->lr);
    s_kv_f32(pk, "momentum", c->momentum);
    s_kv_u64(pk, "seed", c->seed);
    s_kv_bool(pk, "growth", c->growth != 0);
    s_kv_f32(pk, "growth_threshold", c->growth_threshold);
    s_kv_f32(pk, "weight_decay", c->weight_decay);
    s_kv_f32(pk, "init_density", c->init_density);
    s_kv_f32(pk, "gain_scale_hidden", c->gain_scale_hidden);
    s_kv_f32(pk, "gain_scale_output", c->gain_scale_output);
    s_kv_u64(pk, "hidden_act_init", c->hidden_act_init);
    s_kv_u64(pk, "hidden_act_center", c->hidden_act_center);
    s_kv_u64(pk, "hidden_act_edge", c->hidden_act_edge);
    s_kv_u64(pk, "output_act_init", c->output_act_init);
    s_kv_u64(pk, "output_act_center", c->output_act_center);
    s_kv_u64(pk, "output_act_edge", c->output_act_edge);
}

/* Writes one neuron; occ_buf has room for the neuron's occupancy words. */
static void s_pack_neuron(msgpack_packer *pk, const sp_neuron_t *nr, int training,
                          uint64_t *occ_buf)
{
    msgpack_pack_map(pk, training ? 17 : 13);
    s_kv_u64(pk, "id", nr->id);
    s_key(pk, "pos");
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint16(pk, nr->pos.x);
    msgpack_pack_uint16(pk, nr->pos.y);
    msgpack_pack_uint16(pk, nr->pos.z);
    s_kv_u64(pk, "bits", nr->bits);
    s_kv_u64(pk, "base", nr->base);
    s_kv_f32(pk, "gain", nr->gain);
    s_kv_f32(pk, "bias", nr->bias);
    s_kv_f32(pk, "lr", nr->lr);
    size_t words = S_OCC_WORDS(nr->n_in);
    memcpy(occ_buf, sp_memory_run_occupancy(nr->mem, nr->base, nr->n_in),
           words * sizeof(uint64_t));
    if (nr->n_in & 63) {
        occ_buf[words - 1] &= (UINT64_C(1) << (nr->n_in & 63)) - 1;
    }
    s_kv_bin(pk, "weights", sp_memory_run(nr->mem, nr->base, nr->n_in),
             sp_quant_packed_size(nr->n_in, nr->bits));
    s_kv_bin(pk, "occupancy", occ_buf, words * sizeof(uint64_t));
    s_kv_bin(pk, "act", nr->map.func, sizeof nr->map.func);
    s_kv_bin(pk, "hits", nr->map.hits, sizeof nr->map.hits);
    s_kv_bin(pk, "temporal", nr->temporal, sizeof nr->temporal);
    s_key(pk, "last");
    msgpack_pack_array(pk, 2);
    msgpack_pack_float(pk, nr->last_z);
    msgpack_pack_uint8(pk, nr->last_cell);
    if (training) {
        s_kv_bin(pk, "master", nr->master, nr->n_in * sizeof(float));
        s_kv_bin(pk, "momentum", nr->mom, nr->n_in * sizeof(float));
        s_kv_f32(pk, "mom_gain", nr->mom_gain);
        s_kv_f32(pk, "mom_bias", nr->mom_bias);
    }
}

int sp_network_save_buffer(const sp_network_t *n, int with_training_state, uint8_t **buf,
                           size_t *len)
{
    if (!n || !buf || !len) {
        return SP_E_INPUT;
    }
    int training = with_training_state && sp_network_has_training_state(n);
    size_t n_layers = sp_network_layer_count(n);
    uint32_t max_in = 0;
    for (size_t l = 0; l < n_layers; l++) {
        uint32_t w = sp_network_layer(n, l)->n_in;
        max_in = w > max_in ? w : max_in;
    }
    uint64_t *occ = malloc(S_OCC_WORDS(max_in) * sizeof(uint64_t));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (!occ) {
        return SP_E_NOMEM;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    sp_network_stats_t st;
    sp_network_stats(n, 0.0f, &st);
    msgpack_pack_map(&pk, 8);
    s_kv_str(&pk, "format", S_FORMAT);
    s_kv_u64(&pk, "version", S_VERSION);
    s_pack_config(&pk, sp_network_config(n));
    s_kv_u64(&pk, "n_inputs", sp_network_n_inputs(n));
    s_kv_u64(&pk, "steps", sp_network_steps(n));
    s_kv_bool(&pk, "training", training);
    s_key(&pk, "stats");
    msgpack_pack_map(&pk, 3);
    s_kv_u64(&pk, "neurons", st.total_neurons);
    s_kv_u64(&pk, "active_neurons", st.total_active_neurons);
    s_kv_f32(&pk, "sparsity", st.average_sparsity);
    s_key(&pk, "layers");
    msgpack_pack_array(&pk, n_layers);
    for (size_t l = 0; l < n_layers; l++) {
        const sp_layer_t *L = sp_network_layer(n, l);
        msgpack_pack_map(&pk, 4);
        s_kv_u64(&pk, "n_in", L->n_in);
        s_kv_u64(&pk, "n_out", L->n_out);
        s_kv_u64(&pk, "lsh_seed", L->lsh_seed);
        s_key(&pk, "neurons");
        msgpack_pack_array(&pk, L->n_out);
        for (uint32_t o = 0; o < L->n_out; o++) {
            s_pack_neuron(&pk, &L->nr[o], training, occ);
        }
    }
    free(occ);
    if (sb.data == NULL) {
        return SP_E_NOMEM;
    }
    /* msgpack_sbuffer grows with realloc and aborts on failure; its buffer is
     * plain malloc memory, handed to the caller. */
    *len = sb.size;
    *buf = (uint8_t *)msgpack_sbuffer_release(&sb);
    return SP_OK;
}

/* ---- reader ------------------------------------------------------------- */

typedef struct {
    char *err;
    size_t errlen;
    char tmp[256];
    size_t file_len; /* bytes of the whole document, bounds what counts may claim */
} s_rd_t;

/* Prefixes the getter's message with where we are. */
static int s_fail(s_rd_t *r, const char *where)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r->tmp);
    return sp_err_input(r->err, r->errlen, "model file: %s%s%s", where, *where ? ": " : "",
                        msg);
}

#define S_TRY(r, where, call)                                                                \
    do {                                                                                   \
        if ((call) != SP_OK) {                                                             \
            return s_fail((r), (where));                                                   \
        }                                                                                  \
    } while (0)

static int s_get_u8(s_rd_t *r, const msgpack_object *m, const char *key, uint8_t max,
                    uint8_t *out)
{
    uint32_t v;
    int rc = sp_mp_get_u32(m, key, 0, max, &v, r->tmp, sizeof r->tmp);
    if (rc == SP_OK) {
        *out = (uint8_t)v;
    }
    return rc;
}

static int s_read_config(s_rd_t *r, const msgpack_object *root, sp_net_config_t *c)
{
    const msgpack_object *m;
    S_TRY(r, "", sp_mp_get_map(root, "config", 64, &m, r->tmp, sizeof r->tmp));
    sp_net_config_default(c);
    uint32_t v;
    bool b;
    S_TRY(r, "config", sp_mp_get_u32(m, "bits", 1, 4, &v, r->tmp, sizeof r->tmp));
    c->bits = (uint8_t)v;
    S_TRY(r, "config", sp_mp_get_u32(m, "mode", 0, 1, &v, r->tmp, sizeof r->tmp));
    c->mode = (sp_mode_t)v;
    S_TRY(r, "config", sp_mp_get_u32(m, "loss", 0, 1, &v, r->tmp, sizeof r->tmp));
    c->loss = (sp_loss_t)v;
    S_TRY(r, "config", sp_mp_get_f32(m, "lr", 0.0f, 1e6f, &c->lr, r->tmp, sizeof r->tmp));
    S_TRY(r, "config",
          sp_mp_get_f32(m, "momentum", 0.0f, 1.0f, &c->momentum, r->tmp, sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_u64(m, "seed", 0, UINT64_MAX, &c->seed, r->tmp, sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_bool(m, "growth", &b, r->tmp, sizeof r->tmp));
    c->growth = b;
    S_TRY(r, "config", sp_mp_get_f32(m, "growth_threshold", 0.0f, 1.0f, &c->growth_threshold,
                                     r->tmp, sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_f32(m, "weight_decay", 0.0f, 1e3f, &c->weight_decay, r->tmp,
                                     sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_f32(m, "init_density", 0.0f, 1.0f, &c->init_density, r->tmp,
                                     sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_f32(m, "gain_scale_hidden", 0.0f, 1e6f, &c->gain_scale_hidden,
                                     r->tmp, sizeof r->tmp));
    S_TRY(r, "config", sp_mp_get_f32(m, "gain_scale_output", 0.0f, 1e6f, &c->gain_scale_output,
                                     r->tmp, sizeof r->tmp));
    S_TRY(r, "config", s_get_u8(r, m, "hidden_act_init", SP_ACTINIT_RANDOM, &c->hidden_act_init));
    S_TRY(r, "config",
          s_get_u8(r, m, "hidden_act_center", SP_ACT_COUNT - 1, &c->hidden_act_center));
    S_TRY(r, "config", s_get_u8(r, m, "hidden_act_edge", SP_ACT_COUNT - 1, &c->hidden_act_edge));
    S_TRY(r, "config", s_get_u8(r, m, "output_act_init", SP_ACTINIT_RANDOM, &c->output_act_init));
    S_TRY(r, "config",
          s_get_u8(r, m, "output_act_center", SP_ACT_COUNT - 1, &c->output_act_center));
    S_TRY(r, "config", s_get_u8(r, m, "output_act_edge", SP_ACT_COUNT - 1, &c->output_act_edge));
    if (sp_net_config_check(c, r->tmp, sizeof r->tmp) != SP_OK) {
        return s_fail(r, "");
    }
    return SP_OK;
}

/* A bin of exactly `want` bytes. */
static int s_get_bin_exact(s_rd_t *r, const msgpack_object *m, const char *key, size_t want,
                           const uint8_t **p)
{
    size_t len = 0;
    int rc = sp_mp_get_bin(m, key, want, p, &len, r->tmp, sizeof r->tmp);
    if (rc == SP_OK && len != want) {
        snprintf(r->tmp, sizeof r->tmp, "'%s' holds %zu bytes, expected %zu", key, len, want);
        return SP_E_INPUT;
    }
    return rc;
}

static int s_floats_ok(const uint8_t *p, size_t n, float lo, float hi, const char *key,
                       s_rd_t *r)
{
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, p + i * sizeof v, sizeof v);
        if (!(v >= lo && v <= hi)) {
            snprintf(r->tmp, sizeof r->tmp, "'%s' value %zu (%g) not in [%g, %g]", key, i,
                     (double)v, (double)lo, (double)hi);
            return SP_E_INPUT;
        }
    }
    return SP_OK;
}

/* The stored run must be what quantizing the master copy gives. */
static int s_check_master(const sp_neuron_t *nr, const uint8_t *packed, const uint64_t *occ,
                          s_rd_t *r)
{
    size_t pbytes = sp_quant_packed_size(nr->n_in, nr->bits), words = S_OCC_WORDS(nr->n_in);
    uint8_t *qp = calloc(pbytes ? pbytes : 1, 1);
    uint64_t *qo = calloc(words, sizeof(uint64_t));
    if (!qp || !qo) {
        free(qp);
        free(qo);
        snprintf(r->tmp, sizeof r->tmp, "out of memory");
        return SP_E_NOMEM;
    }
    sp_kern_quantize_row(nr->master, nr->n_in, nr->bits, sp_neuron_presence_threshold(nr->bits),
                         qp, qo);
    int rc = SP_OK;
    for (uint32_t i = 0; i < nr->n_in && rc == SP_OK; i++) {
        int present = (int)((occ[i >> 6] >> (i & 63)) & 1u);
        int want = (int)((qo[i >> 6] >> (i & 63)) & 1u);
        if (present != want ||
            (present && sp_quant_get(packed, i, nr->bits) != sp_quant_get(qp, i, nr->bits))) {
            snprintf(r->tmp, sizeof r->tmp,
                     "weight %u disagrees with its master value %g", i, (double)nr->master[i]);
            rc = SP_E_INPUT;
        }
    }
    free(qp);
    free(qo);
    return rc;
}

static int s_read_neuron(s_rd_t *r, const msgpack_object *m, uint32_t n_in, int training,
                         sp_neuron_t *nr, uint64_t *occ)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        snprintf(r->tmp, sizeof r->tmp, "a neuron is a %s, expected a map",
                 sp_mp_type_name(m->type));
        return SP_E_INPUT;
    }
    uint64_t id, base;
    uint32_t bits;
    float lr, gain, bias;
    const msgpack_object_array *pos, *last;
    int rc;
    if ((rc = sp_mp_get_u64(m, "id", 0, UINT64_MAX, &id, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_array(m, "pos", 3, &pos, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_u32(m, "bits", 1, 4, &bits, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_u64(m, "base", 0, 0, &base, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "gain", -1e30f, 1e30f, &gain, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "bias", -1e30f, 1e30f, &bias, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "lr", SP_NEURON_LR_MIN, SP_NEURON_LR_MAX, &lr, r->tmp,
                            sizeof r->tmp)) ||
        (rc = sp_mp_get_array(m, "last", 2, &last, r->tmp, sizeof r->tmp))) {
        return rc;
    }
    if (!sp_quant_bits_valid(bits)) {
        snprintf(r->tmp, sizeof r->tmp, "'bits' is %u, not 1, 2 or 4", bits);
        return SP_E_INPUT;
    }
    if (pos->size != 3) {
        snprintf(r->tmp, sizeof r->tmp, "'pos' has %u values, expected 3", pos->size);
        return SP_E_INPUT;
    }
    uint16_t xyz[3];
    for (int k = 0; k < 3; k++) {
        const msgpack_object *v = &pos->ptr[k];
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > UINT16_MAX) {
            snprintf(r->tmp, sizeof r->tmp, "'pos' value %d is not an integer in 0..65535", k);
            return SP_E_INPUT;
        }
        xyz[k] = (uint16_t)v->via.u64;
    }
    if (last->size != 2 ||
        (last->ptr[0].type != MSGPACK_OBJECT_FLOAT32 && last->ptr[0].type != MSGPACK_OBJECT_FLOAT64) ||
        !isfinite(last->ptr[0].via.f64) || last->ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        last->ptr[1].via.u64 >= SP_ACTMAP_CELLS) {
        snprintf(r->tmp, sizeof r->tmp, "'last' must be [finite float, cell 0..63]");
        return SP_E_INPUT;
    }
    const uint8_t *packed, *occ_b, *act, *hits, *temporal, *master = NULL, *mom = NULL;
    size_t words = S_OCC_WORDS(n_in);
    if ((rc = s_get_bin_exact(r, m, "weights", sp_quant_packed_size(n_in, bits), &packed)) ||
        (rc = s_get_bin_exact(r, m, "occupancy", words * sizeof(uint64_t), &occ_b)) ||
        (rc = s_get_bin_exact(r, m, "act", SP_ACTMAP_CELLS, &act)) ||
        (rc = s_get_bin_exact(r, m, "hits", SP_ACTMAP_CELLS * sizeof(uint32_t), &hits)) ||
        (rc = s_get_bin_exact(r, m, "temporal", SP_NEURON_TEMPORAL * sizeof(float), &temporal))) {
        return rc;
    }
    memcpy(occ, occ_b, words * sizeof(uint64_t));
    if ((n_in & 63) && (occ[words - 1] >> (n_in & 63)) != 0) {
        snprintf(r->tmp, sizeof r->tmp, "'occupancy' marks cells past the %u inputs", n_in);
        return SP_E_INPUT;
    }
    for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
        if (act[c] >= SP_ACT_COUNT) {
            snprintf(r->tmp, sizeof r->tmp, "'act' cell %u holds function %u (max %d)", c,
                     act[c], SP_ACT_COUNT - 1);
            return SP_E_INPUT;
        }
    }
    if ((rc = s_floats_ok(temporal, SP_NEURON_TEMPORAL, -1e30f, 1e30f, "temporal", r))) {
        return rc;
    }
    float mom_gain = 0.0f, mom_bias = 0.0f;
    if (training) {
        if ((rc = s_get_bin_exact(r, m, "master", n_in * sizeof(float), &master)) ||
            (rc = s_get_bin_exact(r, m, "momentum", n_in * sizeof(float), &mom)) ||
            (rc = sp_mp_get_f32(m, "mom_gain", -1e30f, 1e30f, &mom_gain, r->tmp,
                                sizeof r->tmp)) ||
            (rc = sp_mp_get_f32(m, "mom_bias", -1e30f, 1e30f, &mom_bias, r->tmp,
                                sizeof r->tmp)) ||
            (rc = s_floats_ok(master, n_in, -1.0f, 1.0f, "master", r)) ||
            (rc = s_floats_ok(mom, n_in, -1e30f, 1e30f, "momentum", r))) {
            return rc;
        }
    }
    rc = sp_neuron_init(nr, id, (sp_pos_t){xyz[0], xyz[1], xyz[2]}, n_in, bits, training, lr);
    if (rc != SP_OK) {
        snprintf(r->tmp, sizeof r->tmp, "cannot build the neuron (%s)", sp_strerror(rc));
        return rc;
    }
    nr->lr = lr; /* init clamps; the getter already bounded it */
    nr->gain = gain;
    nr->bias = bias;
    memcpy(nr->map.func, act, SP_ACTMAP_CELLS);
    memcpy(nr->map.hits, hits, sizeof nr->map.hits);
    memcpy(nr->temporal, temporal, sizeof nr->temporal);
    nr->last_z = (float)last->ptr[0].via.f64;
    nr->last_cell = (uint8_t)last->ptr[1].via.u64;
    if (training) {
        memcpy(nr->master, master, n_in * sizeof(float));
        memcpy(nr->mom, mom, n_in * sizeof(float));
        nr->mom_gain = mom_gain;
        nr->mom_bias = mom_bias;
        if ((rc = s_check_master(nr, packed, occ, r)) != SP_OK) {
            return rc;
        }
    }
    sp_neuron_load_run(nr, packed, occ);
    return SP_OK;
}

static int s_read_layer(s_rd_t *r, const msgpack_object *m, uint32_t l, uint32_t want_in,
                        int training, sp_layer_t **out)
{
    char where[64];
    snprintf(where, sizeof where, "layer %u", l);
    if (m->type != MSGPACK_OBJECT_MAP) {
        snprintf(r->tmp, sizeof r->tmp, "is a %s, expected a map", sp_mp_type_name(m->type));
        return s_fail(r, where);
    }
    uint32_t n_in, n_out;
    uint64_t seed;
    const msgpack_object_array *neurons;
    S_TRY(r, where, sp_mp_get_u32(m, "n_in", 1, SP_NET_MAX_WIDTH, &n_in, r->tmp, sizeof r->tmp));
    S_TRY(r, where,
          sp_mp_get_u32(m, "n_out", 1, SP_NET_MAX_WIDTH, &n_out, r->tmp, sizeof r->tmp));
    S_TRY(r, where, sp_mp_get_u64(m, "lsh_seed", 0, UINT64_MAX, &seed, r->tmp, sizeof r->tmp));
    S_TRY(r, where,
          sp_mp_get_array(m, "neurons", SP_NET_MAX_WIDTH, &neurons, r->tmp, sizeof r->tmp));
    if (n_in != want_in) {
        snprintf(r->tmp, sizeof r->tmp, "n_in is %u but the layer before gives %u", n_in,
                 want_in);
        return s_fail(r, where);
    }
    if (neurons->size != n_out) {
        snprintf(r->tmp, sizeof r->tmp, "holds %u neurons but n_out is %u", neurons->size,
                 n_out);
        return s_fail(r, where);
    }
    /* Every neuron carries at least its occupancy bits, its map (64 bytes), hits
     * (256) and temporal state (64): refuse counts the file cannot back before
     * allocating the layer's dense n_out x n_in arrays. */
    uint64_t min_bytes = (uint64_t)n_out * (S_OCC_WORDS(n_in) * 8 + (n_in + 7) / 8 + 384);
    if (min_bytes > r->file_len) {
        snprintf(r->tmp, sizeof r->tmp,
                 "%u neurons of %u inputs need at least %llu bytes, the file has %zu", n_out,
                 n_in, (unsigned long long)min_bytes, r->file_len);
        return s_fail(r, where);
    }
    sp_layer_t *L = sp_layer_alloc(n_in, n_out, seed);
    uint64_t *occ = malloc(S_OCC_WORDS(n_in) * sizeof(uint64_t));
    if (!L || !occ) {
        sp_layer_destroy(&L);
        free(occ);
        snprintf(r->tmp, sizeof r->tmp, "out of memory");
        s_fail(r, where);
        return SP_E_NOMEM;
    }
    for (uint32_t o = 0; o < n_out; o++) {
        int rc = s_read_neuron(r, &neurons->ptr[o], n_in, training, &L->nr[o], occ);
        if (rc != SP_OK) {
            sp_layer_destroy(&L);
            free(occ);
            char w2[96];
            snprintf(w2, sizeof w2, "layer %u neuron %u", l, o);
            s_fail(r, w2);
            return rc == SP_E_NOMEM ? rc : SP_E_INPUT;
        }
    }
    free(occ);
    sp_layer_refresh(L, 1);
    *out = L;
    return SP_OK;
}

int sp_network_load_buffer(const uint8_t *buf, size_t len, sp_network_t **out, char *err,
                           size_t errlen)
{
    if (!out) {
        return sp_err_input(err, errlen, "model file: no output pointer");
    }
    *out = NULL;
    if (!buf || len == 0) {
        return sp_err_input(err, errlen, "model file: empty");
    }
    s_rd_t r = {err, errlen, {0}, len};
    sp_mp_limits_t lim;
    sp_mp_limits_default(&lim);
    lim.max_depth = 6;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = sp_mp_unpack(buf, len, &lim, &up, r.tmp, sizeof r.tmp);
    if (rc != SP_OK) {
        msgpack_unpacked_destroy(&up);
        if (rc == SP_E_NOMEM) {
            return rc;
        }
        return s_fail(&r, "not a valid MessagePack document");
    }
    const msgpack_object *root = &up.data;
    char fmt[32];
    uint32_t version = 0, n_inputs = 0;
    uint64_t steps = 0;
    bool training = false;
    const msgpack_object_array *layers = NULL;
    sp_net_config_t cfg;
    sp_layer_t *ls[SP_NET_MAX_LAYERS] = {0};
    if (root->type != MSGPACK_OBJECT_MAP ||
        sp_mp_get_str(root, "format", fmt, sizeof fmt, r.tmp, sizeof r.tmp) != SP_OK ||
        strcmp(fmt, S_FORMAT) != 0) {
        rc = sp_err_input(err, errlen, "model file: not a spatium model (no format '%s')",
                          S_FORMAT);
        goto done;
    }
    if (sp_mp_get_u32(root, "version", 0, UINT32_MAX, &version, r.tmp, sizeof r.tmp) != SP_OK) {
        rc = s_fail(&r, "");
        goto done;
    }
    if (version != S_VERSION) {
        sp_err_input(err, errlen, "model file: format version %u is not supported (this build reads %u)",
                     version, S_VERSION);
        rc = SP_E_VERSION;
        goto done;
    }
    if ((rc = s_read_config(&r, root, &cfg)) != SP_OK) {
        goto done;
    }
    if (sp_mp_get_u32(root, "n_inputs", 1, SP_NET_MAX_WIDTH, &n_inputs, r.tmp, sizeof r.tmp) ||
        sp_mp_get_u64(root, "steps", 0, UINT64_MAX, &steps, r.tmp, sizeof r.tmp) ||
        sp_mp_get_bool(root, "training", &training, r.tmp, sizeof r.tmp) ||
        sp_mp_get_array(root, "layers", SP_NET_MAX_LAYERS, &layers, r.tmp, sizeof r.tmp)) {
        rc = s_fail(&r, "");
        goto done;
    }
    if (layers->size == 0) {
        rc = sp_err_input(err, errlen, "model file: no layers");
        goto done;
    }
    uint32_t width = n_inputs;
    for (uint32_t l = 0; l < layers->size; l++) {
        rc = s_read_layer(&r, &layers->ptr[l], l, width, training, &ls[l]);
        if (rc != SP_OK) {
            goto done;
        }
        width = ls[l]->n_out;
    }
    *out = sp_network_assemble(&cfg, n_inputs, ls, layers->size, training, steps);
    memset(ls, 0, sizeof ls);
    rc = *out ? SP_OK : SP_E_NOMEM;
done:
    for (uint32_t l = 0; l < SP_NET_MAX_LAYERS; l++) {
        sp_layer_destroy(&ls[l]);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* ---- files -------------------------------------------------------------- */

int sp_network_save_file(const sp_network_t *n, int with_training_state, const char *path)
{
    if (!n || !path) {
        return SP_E_INPUT;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_network_save_buffer(n, with_training_state, &buf, &len);
    if (rc != SP_OK) {
        return rc;
    }
    /* Written beside the target, synced, then renamed: a reader sees the old
     * file or the whole new one, never half of it. */
    size_t plen = strlen(path) + 16;
    char *tmp = malloc(plen);
    if (!tmp) {
        free(buf);
        return SP_E_NOMEM;
    }
    snprintf(tmp, plen, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    rc = SP_E_IO;
    if (f) {
        int ok = fwrite(buf, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
        int saved = errno;
        ok = (fclose(f) == 0) && ok;
        if (ok && rename(tmp, path) == 0) {
            rc = SP_OK;
        } else {
            saved = errno ? errno : saved;
            remove(tmp);
            errno = saved;
        }
    }
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "model: cannot write %s", path);
    }
    free(tmp);
    free(buf);
    return rc;
}

int sp_network_load_file(const char *path, sp_network_t **out, char *err, size_t errlen)
{
    if (!path || !out) {
        return sp_err_input(err, errlen, "model file: no path");
    }
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_file_read_all(path, S_MAX_FILE_BYTES, &buf, &len, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    rc = sp_network_load_buffer(buf, len, out, err, errlen);
    free(buf);
    return rc;
}
