/* model: a whole network as one MessagePack document (docs/MODEL_FORMAT.md).
 * The writer emits keys in one fixed order and floats as float32, so the same
 * network always gives the same bytes and a load restores every bit. The
 * reader trusts nothing: sp_mp_unpack pre-scans before msgpack-c allocates,
 * every field is fetched with a typed getter, every count is checked against
 * the format's limits and against the fields it must agree with. The
 * in-place update (the worker's per-step path) checks the whole document
 * before it changes anything, so a refused file leaves the network as it was. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/file.h"
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
    const float *in_off = NULL, *in_scale = NULL;
    int has_input = sp_network_input_transform(n, &in_off, &in_scale);
    msgpack_pack_map(&pk, has_input ? 9 : 8);
    s_kv_str(&pk, "format", S_FORMAT);
    s_kv_u64(&pk, "version", S_VERSION);
    s_pack_config(&pk, sp_network_config(n));
    s_kv_u64(&pk, "n_inputs", sp_network_n_inputs(n));
    if (has_input) {
        s_key(&pk, "input");
        msgpack_pack_map(&pk, 2);
        s_kv_bin(&pk, "offset", in_off, sp_network_n_inputs(n) * sizeof(float));
        s_kv_bin(&pk, "scale", in_scale, sp_network_n_inputs(n) * sizeof(float));
    }
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
    /* One branch-free pass for the common case (all in range: NaN is not),
     * then the first offender for the message. */
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, p + i * sizeof v, sizeof v);
        bad |= !(v >= lo) | !(v <= hi); /* NaN fails both; no short circuit */
    }
    for (size_t i = 0; bad && i < n; i++) {
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

/* One neuron as read from the document and checked; the byte arrays point
 * into the caller's buffer (unaligned: copy before reading them as words). */
typedef struct {
    uint64_t id;
    sp_pos_t pos;
    uint8_t bits;
    uint8_t last_cell;
    float gain, bias, lr, last_z, mom_gain, mom_bias;
    const uint8_t *packed, *occ, *act, *hits, *temporal;
    const uint8_t *master, *mom; /* NULL without training state */
} s_nview_t;

/* Aligned scratch of the reader, grown to the widest fan-in met so far. */
typedef struct {
    uint32_t n_in;   /* inputs the arrays have room for */
    uint64_t *occ;   /* occupancy of the neuron at hand */
    uint64_t *qo;    /* master check: occupancy quantizing the master gives */
    uint8_t *qp;     /* master check: levels quantizing the master gives */
    float *mf;       /* master check: the master floats */
} s_scratch_t;

static void s_scratch_free(s_scratch_t *sc)
{
    free(sc->occ);
    free(sc->qo);
    free(sc->qp);
    free(sc->mf);
    memset(sc, 0, sizeof *sc);
}

static int s_scratch_reserve(s_scratch_t *sc, uint32_t n_in)
{
    if (n_in <= sc->n_in) {
        return SP_OK;
    }
    s_scratch_free(sc);
    sc->occ = calloc(S_OCC_WORDS(n_in), sizeof(uint64_t));
    sc->qo = calloc(S_OCC_WORDS(n_in), sizeof(uint64_t));
    sc->qp = calloc(sp_quant_packed_size(n_in, 4) + 1, 1); /* room for any width */
    sc->mf = calloc(n_in, sizeof(float));
    if (!sc->occ || !sc->qo || !sc->qp || !sc->mf) {
        s_scratch_free(sc);
        return SP_E_NOMEM;
    }
    sc->n_in = n_in;
    return SP_OK;
}

/* The stored run must be what quantizing the master copy gives (sc->occ
 * holds the stored occupancy). */
static int s_check_master(const s_nview_t *v, uint32_t n_in, s_scratch_t *sc, s_rd_t *r)
{
    memcpy(sc->mf, v->master, n_in * sizeof(float));
    memset(sc->qo, 0, S_OCC_WORDS(n_in) * sizeof(uint64_t));
    sp_kern_quantize_row(sc->mf, n_in, v->bits, sp_neuron_presence_threshold(v->bits), sc->qp,
                         sc->qo);
    /* The usual case, whole words and bytes at once: the same occupancy,
     * and the same packed bits for every weight (present or not, as the
     * network's own requantization writes them). Else each weight is
     * looked at, and only present ones must agree. */
    size_t words = S_OCC_WORDS(n_in), bits = (size_t)n_in * v->bits;
    uint64_t tail = n_in % 64 ? (UINT64_C(1) << (n_in % 64)) - 1 : ~UINT64_C(0);
    int same = n_in == 0 ||
               (memcmp(sc->occ, sc->qo, (words - 1) * sizeof(uint64_t)) == 0 &&
               ((sc->occ[words - 1] ^ sc->qo[words - 1]) & tail) == 0 &&
               memcmp(v->packed, sc->qp, bits / 8) == 0 &&
               (bits % 8 == 0 ||
                ((v->packed[bits / 8] ^ sc->qp[bits / 8]) & ((1u << (bits % 8)) - 1)) == 0));
    for (uint32_t i = 0; !same && i < n_in; i++) {
        int present = (int)((sc->occ[i >> 6] >> (i & 63)) & 1u);
        int want = (int)((sc->qo[i >> 6] >> (i & 63)) & 1u);
        if (present != want || (present && sp_quant_get(v->packed, i, v->bits) !=
                                               sp_quant_get(sc->qp, i, v->bits))) {
            snprintf(r->tmp, sizeof r->tmp, "weight %u disagrees with its master value %g", i,
                     (double)sc->mf[i]);
            return SP_E_INPUT;
        }
    }
    return SP_OK;
}

/* Reads and checks every field of one neuron of n_in inputs into *v;
 * sc must have room for n_in. Changes nothing but *v and sc. SP_E_INPUT
 * with the problem in r->tmp. */
static int s_parse_neuron(s_rd_t *r, const msgpack_object *m, uint32_t n_in, int training,
                          s_scratch_t *sc, s_nview_t *v)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        snprintf(r->tmp, sizeof r->tmp, "a neuron is a %s, expected a map",
                 sp_mp_type_name(m->type));
        return SP_E_INPUT;
    }
    memset(v, 0, sizeof *v);
    uint64_t base;
    uint32_t bits;
    const msgpack_object_array *pos, *last;
    int rc;
    if ((rc = sp_mp_get_u64(m, "id", 0, UINT64_MAX, &v->id, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_array(m, "pos", 3, &pos, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_u32(m, "bits", 1, 4, &bits, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_u64(m, "base", 0, 0, &base, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "gain", -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, &v->gain, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "bias", -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, &v->bias, r->tmp, sizeof r->tmp)) ||
        (rc = sp_mp_get_f32(m, "lr", SP_NEURON_LR_MIN, SP_NEURON_LR_MAX, &v->lr, r->tmp,
                            sizeof r->tmp)) ||
        (rc = sp_mp_get_array(m, "last", 2, &last, r->tmp, sizeof r->tmp))) {
        return rc;
    }
    if (!sp_quant_bits_valid(bits)) {
        snprintf(r->tmp, sizeof r->tmp, "'bits' is %u, not 1, 2 or 4", bits);
        return SP_E_INPUT;
    }
    v->bits = (uint8_t)bits;
    if (pos->size != 3) {
        snprintf(r->tmp, sizeof r->tmp, "'pos' has %u values, expected 3", pos->size);
        return SP_E_INPUT;
    }
    uint16_t xyz[3];
    for (int k = 0; k < 3; k++) {
        const msgpack_object *p = &pos->ptr[k];
        if (p->type != MSGPACK_OBJECT_POSITIVE_INTEGER || p->via.u64 > UINT16_MAX) {
            snprintf(r->tmp, sizeof r->tmp, "'pos' value %d is not an integer in 0..65535", k);
            return SP_E_INPUT;
        }
        xyz[k] = (uint16_t)p->via.u64;
    }
    v->pos = (sp_pos_t){xyz[0], xyz[1], xyz[2]};
    if (last->size != 2 ||
        (last->ptr[0].type != MSGPACK_OBJECT_FLOAT32 && last->ptr[0].type != MSGPACK_OBJECT_FLOAT64) ||
        !isfinite(last->ptr[0].via.f64) || last->ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        last->ptr[1].via.u64 >= SP_ACTMAP_CELLS) {
        snprintf(r->tmp, sizeof r->tmp, "'last' must be [finite float, cell 0..63]");
        return SP_E_INPUT;
    }
    v->last_z = (float)last->ptr[0].via.f64;
    v->last_cell = (uint8_t)last->ptr[1].via.u64;
    size_t words = S_OCC_WORDS(n_in);
    if ((rc = s_get_bin_exact(r, m, "weights", sp_quant_packed_size(n_in, bits), &v->packed)) ||
        (rc = s_get_bin_exact(r, m, "occupancy", words * sizeof(uint64_t), &v->occ)) ||
        (rc = s_get_bin_exact(r, m, "act", SP_ACTMAP_CELLS, &v->act)) ||
        (rc = s_get_bin_exact(r, m, "hits", SP_ACTMAP_CELLS * sizeof(uint32_t), &v->hits)) ||
        (rc = s_get_bin_exact(r, m, "temporal", SP_NEURON_TEMPORAL * sizeof(float),
                              &v->temporal))) {
        return rc;
    }
    memcpy(sc->occ, v->occ, words * sizeof(uint64_t));
    if ((n_in & 63) && (sc->occ[words - 1] >> (n_in & 63)) != 0) {
        snprintf(r->tmp, sizeof r->tmp, "'occupancy' marks cells past the %u inputs", n_in);
        return SP_E_INPUT;
    }
    for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
        if (v->act[c] >= SP_ACT_COUNT) {
            snprintf(r->tmp, sizeof r->tmp, "'act' cell %u holds function %u (max %d)", c,
                     v->act[c], SP_ACT_COUNT - 1);
            return SP_E_INPUT;
        }
    }
    if ((rc = s_floats_ok(v->temporal, SP_NEURON_TEMPORAL, -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, "temporal", r))) {
        return rc;
    }
    if (training) {
        if ((rc = s_get_bin_exact(r, m, "master", n_in * sizeof(float), &v->master)) ||
            (rc = s_get_bin_exact(r, m, "momentum", n_in * sizeof(float), &v->mom)) ||
            (rc = sp_mp_get_f32(m, "mom_gain", -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, &v->mom_gain, r->tmp,
                                sizeof r->tmp)) ||
            (rc = sp_mp_get_f32(m, "mom_bias", -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, &v->mom_bias, r->tmp,
                                sizeof r->tmp)) ||
            (rc = s_floats_ok(v->master, n_in, -1.0f, 1.0f, "master", r)) ||
            (rc = s_floats_ok(v->mom, n_in, -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT, "momentum", r)) ||
            (rc = s_check_master(v, n_in, sc, r))) {
            return rc;
        }
    }
    return SP_OK;
}

/* Copies a checked neuron into nr, whose id, position, width and fan-in
 * already match and which holds master arrays when v has them (master
 * arrays of nr that v lacks are dropped, as a fresh load would not have
 * them). Only the occupancy cells that differ are touched. Cannot fail. */
static void s_fill_neuron(const s_nview_t *v, sp_neuron_t *nr, s_scratch_t *sc)
{
    if (!v->master && nr->master) {
        sp_neuron_drop_training(nr); /* learned on alone (layer API): a load would have none */
    }
    SP_ASSERT(v->master == NULL || nr->master != NULL); /* training networks: every neuron */
    nr->lr = v->lr; /* init clamps; the getter already bounded it */
    nr->gain = v->gain;
    nr->bias = v->bias;
    memcpy(nr->map.func, v->act, SP_ACTMAP_CELLS);
    memcpy(nr->map.hits, v->hits, sizeof nr->map.hits);
    memcpy(nr->temporal, v->temporal, sizeof nr->temporal);
    nr->last_z = v->last_z;
    nr->last_cell = v->last_cell;
    if (v->master) {
        memcpy(nr->master, v->master, nr->n_in * sizeof(float));
        memcpy(nr->mom, v->mom, nr->n_in * sizeof(float));
        nr->mom_gain = v->mom_gain;
        nr->mom_bias = v->mom_bias;
    }
    memcpy(sc->occ, v->occ, S_OCC_WORDS(nr->n_in) * sizeof(uint64_t));
    sp_neuron_load_run(nr, v->packed, sc->occ);
}

/* The root map: magic, version, config, widths and the layer array. */
typedef struct {
    sp_net_config_t cfg;
    uint32_t n_inputs;
    uint64_t steps;
    bool training;
    const msgpack_object_array *layers; /* 1..SP_NET_MAX_LAYERS */
    const uint8_t *in_off, *in_scale;   /* input transform (n_inputs floats each), or NULL */
} s_doc_t;

static int s_read_root(s_rd_t *r, const msgpack_object *root, s_doc_t *d)
{
    char fmt[32];
    uint32_t version = 0;
    if (root->type != MSGPACK_OBJECT_MAP ||
        sp_mp_get_str(root, "format", fmt, sizeof fmt, r->tmp, sizeof r->tmp) != SP_OK ||
        strcmp(fmt, S_FORMAT) != 0) {
        return sp_err_input(r->err, r->errlen, "model file: not a spatium model (no format '%s')",
                            S_FORMAT);
    }
    if (sp_mp_get_u32(root, "version", 0, UINT32_MAX, &version, r->tmp, sizeof r->tmp) != SP_OK) {
        return s_fail(r, "");
    }
    if (version != S_VERSION) {
        sp_err_input(r->err, r->errlen,
                     "model file: format version %u is not supported (this build reads %u)",
                     version, S_VERSION);
        return SP_E_VERSION;
    }
    int rc = s_read_config(r, root, &d->cfg);
    if (rc != SP_OK) {
        return rc;
    }
    if (sp_mp_get_u32(root, "n_inputs", 1, SP_NET_MAX_WIDTH, &d->n_inputs, r->tmp,
                      sizeof r->tmp) ||
        sp_mp_get_u64(root, "steps", 0, UINT64_MAX, &d->steps, r->tmp, sizeof r->tmp) ||
        sp_mp_get_bool(root, "training", &d->training, r->tmp, sizeof r->tmp) ||
        sp_mp_get_array(root, "layers", SP_NET_MAX_LAYERS, &d->layers, r->tmp, sizeof r->tmp)) {
        return s_fail(r, "");
    }
    if (d->layers->size == 0) {
        return sp_err_input(r->err, r->errlen, "model file: no layers");
    }
    d->in_off = d->in_scale = NULL;
    if (sp_mp_map_get(root, "input") != NULL) {
        const msgpack_object *m = NULL;
        size_t want = (size_t)d->n_inputs * sizeof(float);
        if (sp_mp_get_map(root, "input", 8, &m, r->tmp, sizeof r->tmp) ||
            s_get_bin_exact(r, m, "offset", want, &d->in_off) ||
            s_get_bin_exact(r, m, "scale", want, &d->in_scale) ||
            s_floats_ok(d->in_off, d->n_inputs, -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT,
                        "offset", r) ||
            s_floats_ok(d->in_scale, d->n_inputs, -SP_NET_PARAM_LIMIT, SP_NET_PARAM_LIMIT,
                        "scale", r)) {
            return s_fail(r, "input");
        }
    }
    return SP_OK;
}

/* Sets the document's input transform (or clears it) on n; the only step of
 * a load or update that can still fail (SP_E_NOMEM), so it runs before any
 * other change. */
static int s_apply_input(sp_network_t *n, const s_doc_t *d)
{
    if (!d->in_off) {
        return sp_network_set_input_transform(n, NULL, NULL);
    }
    size_t k = sp_network_n_inputs(n);
    float *off = malloc(k * sizeof *off), *sc = malloc(k * sizeof *sc);
    int rc = SP_E_NOMEM;
    if (off && sc) {
        memcpy(off, d->in_off, k * sizeof *off); /* the bin bytes may be unaligned */
        memcpy(sc, d->in_scale, k * sizeof *sc);
        rc = sp_network_set_input_transform(n, off, sc);
    }
    free(off);
    free(sc);
    return rc;
}

/* A layer map's widths, hash seed and neuron array, checked against the
 * width of the layer before and against the bytes the file has. */
typedef struct {
    uint32_t n_in, n_out;
    uint64_t lsh_seed;
    const msgpack_object_array *neurons; /* n_out elements */
} s_lhead_t;

static int s_read_layer_head(s_rd_t *r, const msgpack_object *m, uint32_t l, uint32_t want_in,
                             s_lhead_t *h)
{
    char where[64];
    snprintf(where, sizeof where, "layer %u", l);
    if (m->type != MSGPACK_OBJECT_MAP) {
        snprintf(r->tmp, sizeof r->tmp, "is a %s, expected a map", sp_mp_type_name(m->type));
        return s_fail(r, where);
    }
    S_TRY(r, where,
          sp_mp_get_u32(m, "n_in", 1, SP_NET_MAX_WIDTH, &h->n_in, r->tmp, sizeof r->tmp));
    S_TRY(r, where,
          sp_mp_get_u32(m, "n_out", 1, SP_NET_MAX_WIDTH, &h->n_out, r->tmp, sizeof r->tmp));
    S_TRY(r, where,
          sp_mp_get_u64(m, "lsh_seed", 0, UINT64_MAX, &h->lsh_seed, r->tmp, sizeof r->tmp));
    S_TRY(r, where,
          sp_mp_get_array(m, "neurons", SP_NET_MAX_WIDTH, &h->neurons, r->tmp, sizeof r->tmp));
    if (h->n_in != want_in) {
        snprintf(r->tmp, sizeof r->tmp, "n_in is %u but the layer before gives %u", h->n_in,
                 want_in);
        return s_fail(r, where);
    }
    if (h->neurons->size != h->n_out) {
        snprintf(r->tmp, sizeof r->tmp, "holds %u neurons but n_out is %u", h->neurons->size,
                 h->n_out);
        return s_fail(r, where);
    }
    /* Every neuron carries at least its occupancy bits, its map (64 bytes), hits
     * (256) and temporal state (64): refuse counts the file cannot back before
     * allocating the layer's dense n_out x n_in arrays. */
    uint64_t min_bytes = (uint64_t)h->n_out * (S_OCC_WORDS(h->n_in) * 8 + (h->n_in + 7) / 8 + 384);
    if (min_bytes > r->file_len) {
        snprintf(r->tmp, sizeof r->tmp,
                 "%u neurons of %u inputs need at least %llu bytes, the file has %zu", h->n_out,
                 h->n_in, (unsigned long long)min_bytes, r->file_len);
        return s_fail(r, where);
    }
    return SP_OK;
}

/* Message for neuron o of layer l from r->tmp; returns SP_E_INPUT. */
static int s_fail_neuron(s_rd_t *r, uint32_t l, uint32_t o)
{
    char where[96];
    snprintf(where, sizeof where, "layer %u neuron %u", l, o);
    return s_fail(r, where);
}

/* A neuron of n_in inputs and the given width whose every cell is occupied
 * (levels 0), for copying: most loaded neurons have almost every weight
 * present, and a copy of this one reaches their occupancy by emptying the
 * few absent cells instead of marking every present one. */
static int s_dense_proto(sp_neuron_t *p, uint32_t n_in, unsigned bits, int training,
                         s_scratch_t *sc)
{
    int rc = sp_neuron_init(p, 0, (sp_pos_t){0, 0, 0}, n_in, bits, training, SP_NEURON_LR_MIN);
    if (rc != SP_OK) {
        return rc;
    }
    memset(sc->qp, 0, sp_quant_packed_size(n_in, bits));
    memset(sc->qo, 0xff, S_OCC_WORDS(n_in) * sizeof(uint64_t));
    sp_neuron_load_run(p, sc->qp, sc->qo);
    return SP_OK;
}

/* Starts L->nr[o] for the checked neuron v: a copy of the dense prototype
 * when most of its cells are occupied (the prototype is made on first need,
 * and again when the width changes), an empty neuron otherwise. */
static int s_start_neuron(const s_nview_t *v, uint32_t n_in, int training, s_scratch_t *sc,
                          sp_neuron_t *proto, int *have_proto, sp_neuron_t *nr)
{
    size_t present = 0;
    for (size_t w = 0; w < S_OCC_WORDS(n_in); w++) {
        present += (size_t)__builtin_popcountll(sc->occ[w]);
    }
    if (2 * present < n_in) {
        return sp_neuron_init(nr, v->id, v->pos, n_in, v->bits, training, v->lr);
    }
    if (*have_proto && proto->bits != v->bits) {
        sp_neuron_fini(proto);
        *have_proto = 0;
    }
    if (!*have_proto) {
        int rc = s_dense_proto(proto, n_in, v->bits, training, sc);
        if (rc != SP_OK) {
            return rc;
        }
        *have_proto = 1;
    }
    int rc = sp_neuron_copy(nr, proto);
    if (rc != SP_OK) {
        memset(nr, 0, sizeof *nr); /* fini-safe: the copy freed what it made */
        return rc;
    }
    nr->id = v->id;
    nr->pos = v->pos;
    return SP_OK;
}

static int s_read_layer(s_rd_t *r, const msgpack_object *m, uint32_t l, uint32_t want_in,
                        int training, s_scratch_t *sc, sp_layer_t **out)
{
    s_lhead_t h;
    int rc = s_read_layer_head(r, m, l, want_in, &h);
    if (rc != SP_OK) {
        return rc;
    }
    sp_layer_t *L = sp_layer_alloc(h.n_in, h.n_out, h.lsh_seed);
    if (!L || s_scratch_reserve(sc, h.n_in) != SP_OK) {
        sp_layer_destroy(&L);
        snprintf(r->tmp, sizeof r->tmp, "out of memory");
        s_fail_neuron(r, l, 0);
        return SP_E_NOMEM;
    }
    sp_neuron_t proto;
    int have_proto = 0;
    for (uint32_t o = 0; o < h.n_out; o++) {
        s_nview_t v;
        rc = s_parse_neuron(r, &h.neurons->ptr[o], h.n_in, training, sc, &v);
        if (rc == SP_OK) {
            rc = s_start_neuron(&v, h.n_in, training, sc, &proto, &have_proto, &L->nr[o]);
            if (rc != SP_OK) {
                snprintf(r->tmp, sizeof r->tmp, "cannot build the neuron (%s)", sp_strerror(rc));
            }
        }
        if (rc != SP_OK) {
            sp_layer_destroy(&L);
            if (have_proto) {
                sp_neuron_fini(&proto);
            }
            s_fail_neuron(r, l, o);
            return rc == SP_E_NOMEM ? rc : SP_E_INPUT;
        }
        s_fill_neuron(&v, &L->nr[o], sc);
    }
    if (have_proto) {
        sp_neuron_fini(&proto);
    }
    sp_layer_refresh(L, 1);
    *out = L;
    return SP_OK;
}

/* Pre-scans and unpacks buf into *up (which the caller destroys). */
static int s_unpack(s_rd_t *r, const uint8_t *buf, size_t len, msgpack_unpacked *up)
{
    sp_mp_limits_t lim;
    sp_mp_limits_default(&lim);
    lim.max_depth = 6;
    int rc = sp_mp_unpack(buf, len, &lim, up, r->tmp, sizeof r->tmp);
    if (rc == SP_E_NOMEM) {
        return rc;
    }
    return rc == SP_OK ? SP_OK : s_fail(r, "not a valid MessagePack document");
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
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    sp_layer_t *ls[SP_NET_MAX_LAYERS] = {0};
    s_scratch_t sc = {0};
    s_doc_t d;
    memset(&d, 0, sizeof d);
    int rc = s_unpack(&r, buf, len, &up);
    if (rc == SP_OK) {
        rc = s_read_root(&r, &up.data, &d);
    }
    uint32_t width = d.n_inputs;
    for (uint32_t l = 0; rc == SP_OK && l < d.layers->size; l++) {
        rc = s_read_layer(&r, &d.layers->ptr[l], l, width, d.training, &sc, &ls[l]);
        width = rc == SP_OK ? ls[l]->n_out : 0;
    }
    if (rc == SP_OK) {
        *out = sp_network_assemble(&d.cfg, d.n_inputs, ls, d.layers->size, d.training, d.steps);
        memset(ls, 0, sizeof ls);
        rc = *out ? s_apply_input(*out, &d) : SP_E_NOMEM;
        if (rc != SP_OK) {
            sp_network_destroy(out);
        }
    }
    for (uint32_t l = 0; l < SP_NET_MAX_LAYERS; l++) {
        sp_layer_destroy(&ls[l]);
    }
    s_scratch_free(&sc);
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* ---- in-place update ---------------------------------------------------- */

static int s_f32_same(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Field by field (the struct has padding): floats compared as bits. */
static int s_config_same(const sp_net_config_t *a, const sp_net_config_t *b)
{
    return a->bits == b->bits && a->mode == b->mode && a->loss == b->loss &&
           s_f32_same(a->lr, b->lr) && s_f32_same(a->momentum, b->momentum) &&
           a->seed == b->seed && (a->growth != 0) == (b->growth != 0) &&
           s_f32_same(a->growth_threshold, b->growth_threshold) &&
           s_f32_same(a->weight_decay, b->weight_decay) &&
           s_f32_same(a->init_density, b->init_density) &&
           s_f32_same(a->gain_scale_hidden, b->gain_scale_hidden) &&
           s_f32_same(a->gain_scale_output, b->gain_scale_output) &&
           a->hidden_act_init == b->hidden_act_init &&
           a->hidden_act_center == b->hidden_act_center &&
           a->hidden_act_edge == b->hidden_act_edge && a->output_act_init == b->output_act_init &&
           a->output_act_center == b->output_act_center && a->output_act_edge == b->output_act_edge;
}

/* The file describes another network: SP_E_STATE with what differs. */
static int s_differs(s_rd_t *r, const char *what)
{
    if (r->err && r->errlen) {
        snprintf(r->err, r->errlen, "model file: %s differs from the network's: load it whole",
                 what);
    }
    return SP_E_STATE;
}

int sp_network_update_from_buffer(sp_network_t *n, const uint8_t *buf, size_t len, char *err,
                                  size_t errlen)
{
    if (!n) {
        return sp_err_input(err, errlen, "model file: no network to update");
    }
    if (!buf || len == 0) {
        return sp_err_input(err, errlen, "model file: empty");
    }
    s_rd_t r = {err, errlen, {0}, len};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    s_scratch_t sc = {0};
    s_nview_t *views = NULL;
    s_doc_t d;
    memset(&d, 0, sizeof d);
    size_t n_layers = sp_network_layer_count(n), total = 0;
    uint32_t max_in = 0;
    for (size_t l = 0; l < n_layers; l++) {
        const sp_layer_t *L = sp_network_layer(n, l);
        total += L->n_out;
        max_in = L->n_in > max_in ? L->n_in : max_in;
    }
    int rc = s_unpack(&r, buf, len, &up);
    if (rc == SP_OK) {
        rc = s_read_root(&r, &up.data, &d);
    }
    if (rc == SP_OK) {
        if (!s_config_same(&d.cfg, sp_network_config(n))) {
            rc = s_differs(&r, "the configuration");
        } else if (d.n_inputs != sp_network_n_inputs(n) || d.layers->size != n_layers) {
            rc = s_differs(&r, "the input width or layer count");
        } else if ((int)d.training != sp_network_has_training_state(n)) {
            rc = s_differs(&r, "having training state");
        }
    }
    if (rc == SP_OK) {
        views = malloc(total * sizeof *views);
        if (!views || s_scratch_reserve(&sc, max_in) != SP_OK) {
            snprintf(r.tmp, sizeof r.tmp, "out of memory");
            s_fail(&r, "");
            rc = SP_E_NOMEM;
        }
    }
    /* Check everything before touching the network. */
    size_t k = 0;
    for (uint32_t l = 0; rc == SP_OK && l < n_layers; l++) {
        const sp_layer_t *L = sp_network_layer(n, l);
        s_lhead_t h;
        rc = s_read_layer_head(&r, &d.layers->ptr[l], l, L->n_in, &h);
        if (rc == SP_OK && (h.n_out != L->n_out || h.lsh_seed != L->lsh_seed)) {
            rc = s_differs(&r, "a layer's width or hash seed");
        }
        for (uint32_t o = 0; rc == SP_OK && o < L->n_out; o++, k++) {
            const sp_neuron_t *nr = &L->nr[o];
            s_nview_t *v = &views[k];
            rc = s_parse_neuron(&r, &h.neurons->ptr[o], L->n_in, d.training, &sc, v);
            if (rc != SP_OK) {
                rc = s_fail_neuron(&r, l, o);
            } else if (v->id != nr->id || v->bits != nr->bits || v->pos.x != nr->pos.x ||
                       v->pos.y != nr->pos.y || v->pos.z != nr->pos.z) {
                rc = s_differs(&r, "a neuron's id, position or width");
            }
        }
    }
    if (rc == SP_OK) {
        rc = s_apply_input(n, &d);
    }
    if (rc == SP_OK) {
        k = 0;
        for (uint32_t l = 0; l < n_layers; l++) {
            sp_layer_t *L = sp_network_layer(n, l);
            for (uint32_t o = 0; o < L->n_out; o++) {
                s_fill_neuron(&views[k++], &L->nr[o], &sc);
            }
            sp_layer_refresh(L, 1);
        }
        sp_network_set_steps(n, d.steps);
    }
    free(views);
    s_scratch_free(&sc);
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
    /* a reader sees the old file or the whole new one, never half of it */
    rc = sp_file_write_atomic(path, buf, len);
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "model: cannot write %s: %s", path, strerror(errno));
    }
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
