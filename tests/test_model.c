/* test_model: model files save and load bit-exactly (outputs and bytes),
 * training resumes identically from a checkpoint, and truncated, corrupt,
 * wrong-version and inconsistent files are refused with a message. The
 * in-place refresh (sp_network_update_from_buffer) gives exactly what a full
 * load gives, and leaves the network untouched when it refuses a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "common/error.h"
#include "common/layer.h"
#include "common/network.h"
#include "common/rng.h"

enum { NI = 20, NO = 5 };

static void s_batch(float *X, float *T, size_t N, sp_rng_t *r)
{
    for (size_t i = 0; i < N * NI; i++) {
        X[i] = sp_rng_float(r);
    }
    memset(T, 0, N * NO * sizeof(float));
    for (size_t s = 0; s < N; s++) {
        T[s * NO + sp_rng_below(r, NO)] = 1.0f;
    }
}

/* A [20, 30, 9, 5] network (30 and 9 inputs are not multiples of 64, mixed
 * maps) trained a few steps so that every field holds something. */
static sp_network_t *s_trained(sp_rng_t *r)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = SP_LOSS_XENT;
    cfg.hidden_act_init = 2;
    cfg.init_density = 0.7f;
    cfg.seed = 77;
    uint32_t sizes[] = {NI, 30, 9, NO};
    sp_network_t *n = sp_network_new(sizes, 4, &cfg);
    assert_non_null(n);
    float X[16 * NI], T[16 * NO], loss;
    for (int s = 0; s < 10; s++) {
        s_batch(X, T, 16, r);
        assert_int_equal(sp_network_train_batch(n, X, T, 16, &loss), SP_OK);
    }
    return n;
}

static void s_outputs(sp_network_t *n, float *Y)
{
    sp_rng_t r;
    sp_rng_init(&r, 1234);
    float X[40 * NI];
    for (size_t i = 0; i < 40 * NI; i++) {
        X[i] = sp_rng_float(&r);
    }
    assert_int_equal(sp_network_forward(n, X, 40, Y), SP_OK);
}

/* The input transform travels in the model: a loaded (or refreshed) network
 * scales its inputs the same way, and a transform of the wrong length is
 * refused with a message. */
static void test_model_save_input_transform_round_trip(void **state)
{
    (void)state;
    const uint32_t sizes[] = {3, 6, 2};
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    assert_non_null(n);
    const float off[3] = {10.0f, -5.0f, 0.0f}, scale[3] = {0.01f, 0.1f, 1.0f};
    assert_int_equal(sp_network_set_input_transform(n, off, scale), SP_OK);
    const float X[6] = {60.0f, 0.0f, 0.5f, 110.0f, 5.0f, 0.25f};
    const float Xt[6] = {0.5f, 0.5f, 0.5f, 1.0f, 1.0f, 0.25f};
    float y[4], yt[4], yl[4];
    assert_int_equal(sp_network_forward(n, X, 2, y), SP_OK);
    /* the same network without the transform, fed transformed rows */
    sp_network_t *plain = sp_network_clone(n);
    assert_non_null(plain);
    assert_int_equal(sp_network_set_input_transform(plain, NULL, NULL), SP_OK);
    assert_int_equal(sp_network_forward(plain, Xt, 2, yt), SP_OK);
    assert_memory_equal(y, yt, sizeof y);

    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sp_network_save_buffer(n, 0, &buf, &len), SP_OK);
    sp_network_t *back = NULL;
    char err[256] = "";
    assert_int_equal(sp_network_load_buffer(buf, len, &back, err, sizeof err), SP_OK);
    assert_int_equal(sp_network_forward(back, X, 2, yl), SP_OK);
    assert_memory_equal(y, yl, sizeof y);
    /* refreshing a transform-less copy (as a worker holds it) in place
     * brings the transform too */
    uint8_t *pbuf = NULL;
    size_t plen = 0;
    assert_int_equal(sp_network_save_buffer(plain, 0, &pbuf, &plen), SP_OK);
    sp_network_t *cached = NULL;
    assert_int_equal(sp_network_load_buffer(pbuf, plen, &cached, err, sizeof err), SP_OK);
    assert_int_equal(sp_network_update_from_buffer(cached, buf, len, err, sizeof err), SP_OK);
    assert_int_equal(sp_network_forward(cached, X, 2, yl), SP_OK);
    assert_memory_equal(y, yl, sizeof y);
    free(pbuf);
    sp_network_destroy(&cached);

    /* a 3-input model whose transform holds 2 floats is refused */
    uint8_t *bad = malloc(len);
    memcpy(bad, buf, len);
    for (size_t i = 0; i + 2 < len; i++) {
        if (bad[i] == 0xc4 && bad[i + 1] == 12 && memcmp(bad + i + 2, off, 12) == 0) {
            bad[i + 1] = 8; /* the offset bin now claims 8 bytes: the rest shifts */
            break;
        }
    }
    sp_network_t *none = NULL;
    assert_int_not_equal(sp_network_load_buffer(bad, len, &none, err, sizeof err), SP_OK);
    assert_null(none);
    assert_true(strlen(err) > 0);
    free(bad);
    free(buf);
    sp_network_destroy(&back);
    sp_network_destroy(&plain);
    sp_network_destroy(&n);
}

static void test_model_save_load_same_outputs_to_the_bit(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 1);
    sp_network_t *n = s_trained(&r);
    float y0[40 * NO], y1[40 * NO];
    s_outputs(n, y0);
    for (int training = 0; training < 2; training++) {
        uint8_t *buf = NULL, *buf2 = NULL;
        size_t len = 0, len2 = 0;
        assert_int_equal(sp_network_save_buffer(n, training, &buf, &len), SP_OK);
        assert_true(len > 100);
        sp_network_t *m = NULL;
        char err[256] = "";
        assert_int_equal(sp_network_load_buffer(buf, len, &m, err, sizeof err), SP_OK);
        assert_non_null(m);
        assert_int_equal(sp_network_has_training_state(m), training);
        s_outputs(m, y1);
        assert_memory_equal(y0, y1, sizeof y0);
        assert_int_equal(sp_network_save_buffer(m, training, &buf2, &len2), SP_OK);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        assert_int_equal(sp_network_n_params(m), sp_network_n_params(n));
        assert_int_equal(sp_network_steps(m), 10);
        free(buf);
        free(buf2);
        sp_network_destroy(&m);
    }
    sp_network_destroy(&n);
}

/* Neurons start from a copy of a fully occupied one when most of their
 * weights are present and from an empty one otherwise: both kinds (and the
 * all-absent neuron) round-trip to the same bytes and outputs. */
static void test_model_save_load_sparse_and_dense_neurons(void **state)
{
    (void)state;
    const float density[] = {0.0f, 0.25f, 0.6f, 1.0f};
    for (size_t d = 0; d < sizeof density / sizeof density[0]; d++) {
        sp_net_config_t cfg;
        sp_net_config_default(&cfg);
        cfg.init_density = density[d];
        cfg.bits = d == 1 ? 2 : 4;
        uint32_t sizes[] = {NI, 70, NO}; /* 70: more than one occupancy word */
        sp_network_t *n = sp_network_new(sizes, 3, &cfg);
        assert_non_null(n);
        sp_rng_t r;
        sp_rng_init(&r, 30 + d);
        float X[16 * NI], T[16 * NO], loss;
        for (int s = 0; s < 3; s++) {
            s_batch(X, T, 16, &r);
            assert_int_equal(sp_network_train_batch(n, X, T, 16, &loss), SP_OK);
        }
        float y0[40 * NO], y1[40 * NO];
        s_outputs(n, y0);
        for (int training = 0; training < 2; training++) {
            uint8_t *buf, *buf2;
            size_t len, len2;
            assert_int_equal(sp_network_save_buffer(n, training, &buf, &len), SP_OK);
            sp_network_t *m = NULL;
            char err[256] = "";
            assert_int_equal(sp_network_load_buffer(buf, len, &m, err, sizeof err), SP_OK);
            s_outputs(m, y1);
            assert_memory_equal(y0, y1, sizeof y0);
            assert_int_equal(sp_network_save_buffer(m, training, &buf2, &len2), SP_OK);
            assert_int_equal(len, len2);
            assert_memory_equal(buf, buf2, len);
            free(buf);
            free(buf2);
            sp_network_destroy(&m);
        }
        sp_network_destroy(&n);
    }
}

/* A checkpoint (with training state) resumes exactly: the same next steps
 * give the same model bytes as the uninterrupted run. */
static void test_model_save_checkpoint_resumes_identically(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 2);
    sp_network_t *a = s_trained(&r);
    uint8_t *buf;
    size_t len;
    assert_int_equal(sp_network_save_buffer(a, 1, &buf, &len), SP_OK);
    sp_network_t *b = NULL;
    char err[256];
    assert_int_equal(sp_network_load_buffer(buf, len, &b, err, sizeof err), SP_OK);
    free(buf);
    float X[16 * NI], T[16 * NO], la, lb;
    for (int s = 0; s < 5; s++) {
        s_batch(X, T, 16, &r);
        assert_int_equal(sp_network_train_batch(a, X, T, 16, &la), SP_OK);
        assert_int_equal(sp_network_train_batch(b, X, T, 16, &lb), SP_OK);
        assert_float_equal(la, lb, 0.0);
    }
    uint8_t *ba, *bb;
    size_t na, nb;
    sp_network_save_buffer(a, 1, &ba, &na);
    sp_network_save_buffer(b, 1, &bb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
    /* an inference-only file can still be trained (masters from the levels) */
    assert_int_equal(sp_network_save_buffer(a, 0, &buf, &len), SP_OK);
    sp_network_t *c = NULL;
    assert_int_equal(sp_network_load_buffer(buf, len, &c, err, sizeof err), SP_OK);
    assert_false(sp_network_has_training_state(c));
    assert_int_equal(sp_network_train_batch(c, X, T, 16, &la), SP_OK);
    assert_true(sp_network_has_training_state(c));
    free(buf);
    sp_network_destroy(&a);
    sp_network_destroy(&b);
    sp_network_destroy(&c);
}

static void test_model_save_file_round_trip(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 3);
    sp_network_t *n = s_trained(&r);
    char path[] = "/tmp/spatium-test-model-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sp_network_save_file(n, 1, path), SP_OK);
    sp_network_t *m = NULL;
    char err[256] = "";
    assert_int_equal(sp_network_load_file(path, &m, err, sizeof err), SP_OK);
    float y0[40 * NO], y1[40 * NO];
    s_outputs(n, y0);
    s_outputs(m, y1);
    assert_memory_equal(y0, y1, sizeof y0);
    unlink(path);
    sp_network_destroy(&m);
    assert_int_not_equal(sp_network_load_file(path, &m, err, sizeof err), SP_OK);
    assert_null(m);
    assert_true(strlen(err) > 0);
    assert_int_equal(sp_network_save_file(n, 0, "/nonexistent-dir/x/model"), SP_E_IO);
    sp_network_destroy(&n);
}

static void s_expect_refused(const uint8_t *buf, size_t len, int want_rc, const char *needle)
{
    sp_network_t *m = (sp_network_t *)(uintptr_t)1; /* must be reset to NULL */
    char err[256] = "";
    int rc = sp_network_load_buffer(buf, len, &m, err, sizeof err);
    if (rc == SP_OK) {
        fprintf(stderr, "accepted a bad file (len %zu, expected '%s')\n", len, needle);
    }
    assert_int_equal(rc, want_rc);
    assert_null(m);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, needle);
        fail();
    }
}

static void test_model_truncated_files_rejected(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 4);
    sp_network_t *n = s_trained(&r);
    uint8_t *buf;
    size_t len;
    assert_int_equal(sp_network_save_buffer(n, 1, &buf, &len), SP_OK);
    for (size_t cut = 0; cut < len; cut++) {
        s_expect_refused(buf, cut, cut == 0 ? SP_E_INPUT : SP_E_INPUT, NULL);
    }
    /* trailing garbage is refused too */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0xc0;
    s_expect_refused(longer, len + 1, SP_E_INPUT, NULL);
    free(longer);
    free(buf);
    sp_network_destroy(&n);
}

/* Overwrites the bytes right after the first occurrence of key (a msgpack
 * fixstr) plus skip bytes. */
static void s_patch(uint8_t *buf, size_t len, const char *key, size_t skip, const void *bytes,
                    size_t n)
{
    uint8_t pat[40];
    size_t kl = strlen(key);
    pat[0] = (uint8_t)(0xa0 | kl);
    memcpy(pat + 1, key, kl);
    uint8_t *p = memmem(buf, len, pat, kl + 1);
    assert_non_null(p);
    memcpy(p + kl + 1 + skip, bytes, n);
}

static void test_model_corrupt_files_rejected(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 5);
    sp_network_t *n = s_trained(&r);
    uint8_t *buf, *bad;
    size_t len;
    assert_int_equal(sp_network_save_buffer(n, 1, &buf, &len), SP_OK);
    bad = malloc(len);

    memcpy(bad, buf, len);
    s_patch(bad, len, "format", 0, "\xadspatium-modex", 14);
    s_expect_refused(bad, len, SP_E_INPUT, "not a spatium model");

    memcpy(bad, buf, len);
    s_patch(bad, len, "version", 0, "\x02", 1);
    s_expect_refused(bad, len, SP_E_VERSION, "version 2");

    memcpy(bad, buf, len);
    s_patch(bad, len, "bits", 0, "\x03", 1); /* config bits */
    s_expect_refused(bad, len, SP_E_INPUT, "bits");

    memcpy(bad, buf, len);
    s_patch(bad, len, "n_in", 0, "\x15", 1); /* first layer claims 21 inputs */
    s_expect_refused(bad, len, SP_E_INPUT, "layer 0");

    memcpy(bad, buf, len);
    s_patch(bad, len, "act", 2, "\x20", 1); /* function 32 does not exist */
    s_expect_refused(bad, len, SP_E_INPUT, "'act'");

    memcpy(bad, buf, len);
    s_patch(bad, len, "occupancy", 2 + 7, "\x80", 1); /* cell 63 of a 20-input run */
    s_expect_refused(bad, len, SP_E_INPUT, "past the 20 inputs");

    memcpy(bad, buf, len);
    float one = 1.0f;
    s_patch(bad, len, "master", 2, &one, 4); /* master disagrees with the stored level */
    s_expect_refused(bad, len, SP_E_INPUT, "master");

    memcpy(bad, buf, len);
    float past = 1.5f, nan = NAN;
    s_patch(bad, len, "master", 2 + 4 * 5, &past, 4); /* the 6th master weight */
    s_expect_refused(bad, len, SP_E_INPUT, "'master' value 5 (1.5) not in [-1, 1]");

    memcpy(bad, buf, len);
    s_patch(bad, len, "temporal", 2 + 4 * 15, &nan, 4); /* the last of 16 */
    s_expect_refused(bad, len, SP_E_INPUT, "'temporal' value 15 (nan)");

    memcpy(bad, buf, len);
    s_patch(bad, len, "neurons", 0, "\xdd\x7f\xff\xff\xff", 5); /* absurd count */
    s_expect_refused(bad, len, SP_E_INPUT, NULL);

    /* random single-byte damage: never a crash; a refusal always has a message */
    sp_rng_t q;
    sp_rng_init(&q, 6);
    int refused = 0;
    for (int k = 0; k < 1500; k++) {
        memcpy(bad, buf, len);
        size_t at = (size_t)sp_rng_below(&q, len);
        bad[at] ^= (uint8_t)(1u + sp_rng_below(&q, 255));
        sp_network_t *m = NULL;
        char err[256] = "";
        int rc = sp_network_load_buffer(bad, len, &m, err, sizeof err);
        if (rc == SP_OK) {
            assert_non_null(m); /* e.g. a changed float: still a valid model */
            sp_network_destroy(&m);
        } else {
            assert_null(m);
            assert_true(strlen(err) > 0);
            refused++;
        }
    }
    assert_true(refused > 200);
    free(bad);
    free(buf);
    sp_network_destroy(&n);
}

static void s_pk_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

/* A 66 KB document whose one layer claims 65536 neurons of 65536 inputs: it
 * must be refused before anything of that size is allocated. */
static void test_model_absurd_layer_size_refused_before_allocating(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    s_pk_key(&pk, "format");
    s_pk_key(&pk, "spatium-model");
    s_pk_key(&pk, "version");
    msgpack_pack_uint8(&pk, 1);
    s_pk_key(&pk, "config");
    const char *ku[] = {"bits", "mode", "loss", "seed", "hidden_act_init", "hidden_act_center",
                        "hidden_act_edge", "output_act_init", "output_act_center",
                        "output_act_edge"};
    const unsigned vu[] = {4, 0, 0, 1, 1, 0, 1, 0, 7, 7};
    const char *kf[] = {"lr", "momentum", "growth_threshold", "weight_decay", "init_density",
                        "gain_scale_hidden", "gain_scale_output"};
    const float vf[] = {0.05f, 0.9f, 0.9f, 0.0f, 1.0f, 1.4f, 1.0f};
    msgpack_pack_map(&pk, 18);
    for (int i = 0; i < 10; i++) {
        s_pk_key(&pk, ku[i]);
        msgpack_pack_uint32(&pk, vu[i]);
    }
    for (int i = 0; i < 7; i++) {
        s_pk_key(&pk, kf[i]);
        msgpack_pack_float(&pk, vf[i]);
    }
    s_pk_key(&pk, "growth");
    msgpack_pack_false(&pk);
    s_pk_key(&pk, "n_inputs");
    msgpack_pack_uint32(&pk, 65536);
    s_pk_key(&pk, "steps");
    msgpack_pack_uint32(&pk, 0);
    s_pk_key(&pk, "training");
    msgpack_pack_false(&pk);
    s_pk_key(&pk, "layers");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 4);
    s_pk_key(&pk, "n_in");
    msgpack_pack_uint32(&pk, 65536);
    s_pk_key(&pk, "n_out");
    msgpack_pack_uint32(&pk, 65536);
    s_pk_key(&pk, "lsh_seed");
    msgpack_pack_uint32(&pk, 1);
    s_pk_key(&pk, "neurons");
    msgpack_pack_array(&pk, 65536);
    for (int i = 0; i < 65536; i++) {
        msgpack_pack_nil(&pk);
    }
    s_expect_refused((const uint8_t *)sb.data, sb.size, SP_E_INPUT, "need at least");
    msgpack_sbuffer_destroy(&sb);
}

/* ---- in-place refresh -------------------------------------------------- */

static void s_save(const sp_network_t *n, int training, uint8_t **buf, size_t *len)
{
    assert_int_equal(sp_network_save_buffer(n, training, buf, len), SP_OK);
}

/* n's file (training state as given) equals want[0..want_len). */
static void s_assert_saves_as(const sp_network_t *n, int training, const uint8_t *want,
                              size_t want_len)
{
    uint8_t *buf;
    size_t len;
    s_save(n, training, &buf, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(buf, want, len);
    free(buf);
}

/* Same gradient, hits and result bits on the same batch (what a worker sends). */
static void s_assert_same_gradient(sp_network_t *a, sp_network_t *b)
{
    size_t np = sp_network_n_params(a), nh = sp_network_n_hits(a);
    assert_int_equal(np, sp_network_n_params(b));
    float *ga = calloc(np, sizeof(float)), *gb = calloc(np, sizeof(float));
    uint32_t *ha = calloc(nh, sizeof(uint32_t)), *hb = calloc(nh, sizeof(uint32_t));
    assert_non_null(ga);
    assert_non_null(gb);
    assert_non_null(ha);
    assert_non_null(hb);
    sp_rng_t r;
    sp_rng_init(&r, 99);
    float X[12 * NI], T[12 * NO];
    s_batch(X, T, 12, &r);
    sp_batch_result_t ra, rb;
    assert_int_equal(sp_network_gradient(a, X, T, 12, ga, ha, &ra), SP_OK);
    assert_int_equal(sp_network_gradient(b, X, T, 12, gb, hb, &rb), SP_OK);
    assert_memory_equal(ga, gb, np * sizeof(float));
    assert_memory_equal(ha, hb, nh * sizeof(uint32_t));
    assert_memory_equal(&ra.loss_sum, &rb.loss_sum, sizeof ra.loss_sum);
    assert_int_equal(ra.n_correct, rb.n_correct);
    free(ga);
    free(gb);
    free(ha);
    free(hb);
}

/* Versions of one training run, refreshed into one network in order, then
 * backwards (occupancy cells come and go both ways): after each, outputs,
 * gradients and the saved bytes equal those of a full load of that version;
 * with and without training state. */
static void test_model_refresh_same_topology_equals_full_load(void **state)
{
    (void)state;
    enum { VERSIONS = 6 };
    for (int training = 0; training < 2; training++) {
        sp_rng_t r;
        sp_rng_init(&r, 21);
        sp_network_t *n = s_trained(&r);
        uint8_t *v[VERSIONS];
        size_t len[VERSIONS];
        for (int k = 0; k < VERSIONS; k++) {
            s_save(n, training, &v[k], &len[k]);
            float X[16 * NI], T[16 * NO], loss;
            for (int s = 0; s < 3; s++) { /* a few steps: cells cross the presence threshold */
                s_batch(X, T, 16, &r);
                assert_int_equal(sp_network_train_batch(n, X, T, 16, &loss), SP_OK);
            }
        }
        sp_network_t *w = NULL;
        char err[256] = "";
        assert_int_equal(sp_network_load_buffer(v[0], len[0], &w, err, sizeof err), SP_OK);
        const int order[] = {1, 2, 3, 4, 5, 3, 0, 5};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            int k = order[i];
            assert_int_equal(sp_network_update_from_buffer(w, v[k], len[k], err, sizeof err),
                             SP_OK);
            sp_network_t *f = NULL;
            assert_int_equal(sp_network_load_buffer(v[k], len[k], &f, err, sizeof err), SP_OK);
            float yw[40 * NO], yf[40 * NO];
            s_outputs(w, yw);
            s_outputs(f, yf);
            assert_memory_equal(yw, yf, sizeof yw);
            s_assert_same_gradient(w, f);
            assert_int_equal(sp_network_steps(w), sp_network_steps(f));
            assert_int_equal(sp_network_has_training_state(w), training);
            s_assert_saves_as(w, training, v[k], len[k]);
            sp_network_destroy(&f);
        }
        if (training) {
            /* a refreshed checkpoint trains on exactly like a loaded one */
            sp_network_t *f = NULL;
            assert_int_equal(sp_network_load_buffer(v[5], len[5], &f, err, sizeof err), SP_OK);
            float X[16 * NI], T[16 * NO], lw, lf;
            s_batch(X, T, 16, &r);
            assert_int_equal(sp_network_train_batch(w, X, T, 16, &lw), SP_OK);
            assert_int_equal(sp_network_train_batch(f, X, T, 16, &lf), SP_OK);
            assert_memory_equal(&lw, &lf, sizeof lw);
            uint8_t *bf;
            size_t nf;
            s_save(f, 1, &bf, &nf);
            s_assert_saves_as(w, 1, bf, nf);
            free(bf);
            sp_network_destroy(&f);
        }
        if (!training) {
            /* neurons taught one sample at a time through the layer API grow
             * master copies; the refresh drops them like a fresh load */
            sp_layer_t *L = sp_network_layer(w, 0);
            float x[NI], y[30], e[30];
            for (int i = 0; i < NI; i++) {
                x[i] = 0.05f * (float)i;
            }
            assert_int_equal(sp_layer_forward(L, x, y, 1), SP_OK);
            for (int o = 0; o < 30; o++) {
                e[o] = y[o] - 0.5f;
            }
            assert_int_equal(sp_layer_learn(L, x, e, 1), SP_OK);
            assert_non_null(L->nr[0].master);
            assert_int_equal(sp_network_update_from_buffer(w, v[2], len[2], err, sizeof err),
                             SP_OK);
            assert_null(L->nr[0].master);
            s_assert_saves_as(w, 0, v[2], len[2]);
        }
        for (int k = 0; k < VERSIONS; k++) {
            free(v[k]);
        }
        sp_network_destroy(&w);
        sp_network_destroy(&n);
    }
}

/* rc == want and w still saves as before (both with and without training state). */
static void s_expect_update_refused(sp_network_t *w, const uint8_t *buf, size_t len, int want_rc,
                                    const char *needle)
{
    uint8_t *before[2];
    size_t blen[2];
    int tr = sp_network_has_training_state(w);
    s_save(w, tr, &before[0], &blen[0]);
    s_save(w, 0, &before[1], &blen[1]);
    float y0[40 * NO], y1[40 * NO];
    s_outputs(w, y0);
    char err[256] = "";
    int rc = sp_network_update_from_buffer(w, buf, len, err, sizeof err);
    if (rc != want_rc) {
        fprintf(stderr, "update gave %d (%s), expected %d\n", rc, err, want_rc);
    }
    assert_int_equal(rc, want_rc);
    assert_true(strlen(err) > 0);
    if (needle && !strstr(err, needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, needle);
        fail();
    }
    s_assert_saves_as(w, tr, before[0], blen[0]);
    s_assert_saves_as(w, 0, before[1], blen[1]);
    s_outputs(w, y1);
    assert_memory_equal(y0, y1, sizeof y0);
    free(before[0]);
    free(before[1]);
}

/* Files of another topology give SP_E_STATE (load whole) and change nothing. */
static void test_model_refresh_other_topology_refused_unchanged(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 22);
    sp_network_t *n = s_trained(&r);
    uint8_t *buf;
    size_t len;
    s_save(n, 0, &buf, &len);
    sp_network_t *w = NULL;
    char err[256] = "";
    assert_int_equal(sp_network_load_buffer(buf, len, &w, err, sizeof err), SP_OK);
    free(buf);

    /* other widths */
    sp_net_config_t cfg = *sp_network_config(n);
    uint32_t wider[] = {NI, 31, 9, NO}, fewer[] = {NI, 30, NO};
    sp_network_t *o = sp_network_new(wider, 4, &cfg);
    assert_non_null(o);
    s_save(o, 0, &buf, &len);
    s_expect_update_refused(w, buf, len, SP_E_STATE, "differs");
    free(buf);
    sp_network_destroy(&o);
    o = sp_network_new(fewer, 3, &cfg);
    assert_non_null(o);
    s_save(o, 0, &buf, &len);
    s_expect_update_refused(w, buf, len, SP_E_STATE, "differs");
    free(buf);
    sp_network_destroy(&o);

    /* same widths, another seed: other hash planes and config */
    cfg.seed = 78;
    uint32_t same[] = {NI, 30, 9, NO};
    o = sp_network_new(same, 4, &cfg);
    assert_non_null(o);
    s_save(o, 0, &buf, &len);
    s_expect_update_refused(w, buf, len, SP_E_STATE, "configuration");
    free(buf);
    sp_network_destroy(&o);

    /* the same network after pruning (neurons gone) or with training state */
    o = sp_network_clone(n);
    assert_non_null(o);
    assert_true(sp_network_prune(o, 2.0f) > 0);
    s_save(o, 0, &buf, &len);
    s_expect_update_refused(w, buf, len, SP_E_STATE, "differs");
    free(buf);
    sp_network_destroy(&o);
    s_save(n, 1, &buf, &len);
    s_expect_update_refused(w, buf, len, SP_E_STATE, "training state");
    free(buf);

    /* and a full load of the same file still works where refresh refused */
    s_save(n, 0, &buf, &len);
    assert_int_equal(sp_network_update_from_buffer(w, buf, len, err, sizeof err), SP_OK);
    free(buf);
    assert_int_equal(sp_network_update_from_buffer(NULL, (const uint8_t *)"x", 1, err, sizeof err),
                     SP_E_INPUT);
    sp_network_destroy(&w);
    sp_network_destroy(&n);
}

/* Overwrites the bytes right after the LAST occurrence of key (a fixstr)
 * plus skip: damage in the last neuron, after every other one was checked. */
static void s_patch_last(uint8_t *buf, size_t len, const char *key, size_t skip,
                         const void *bytes, size_t n)
{
    uint8_t pat[40];
    size_t kl = strlen(key);
    pat[0] = (uint8_t)(0xa0 | kl);
    memcpy(pat + 1, key, kl);
    uint8_t *last = NULL;
    for (uint8_t *p = buf; (p = memmem(p, len - (size_t)(p - buf), pat, kl + 1)) != NULL; p++) {
        last = p;
    }
    assert_non_null(last);
    memcpy(last + kl + 1 + skip, bytes, n);
}

/* Corrupt, truncated or wrong-version files are refused like the full loader
 * refuses them, and the network is unchanged, even when the damage is in
 * the last neuron. */
static void test_model_refresh_corrupt_refused_unchanged(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 23);
    sp_network_t *n = s_trained(&r);
    uint8_t *v0, *v1;
    size_t l0, l1;
    s_save(n, 1, &v0, &l0);
    float X[16 * NI], T[16 * NO], loss;
    for (int s = 0; s < 3; s++) {
        s_batch(X, T, 16, &r);
        assert_int_equal(sp_network_train_batch(n, X, T, 16, &loss), SP_OK);
    }
    s_save(n, 1, &v1, &l1);
    sp_network_t *w = NULL;
    char err[256] = "";
    assert_int_equal(sp_network_load_buffer(v0, l0, &w, err, sizeof err), SP_OK);
    uint8_t *bad = malloc(l1);
    assert_non_null(bad);

    for (size_t cut = 0; cut < l1; cut += 7) {
        s_expect_update_refused(w, v1, cut, SP_E_INPUT, NULL);
    }
    memcpy(bad, v1, l1);
    s_patch(bad, l1, "version", 0, "\x02", 1);
    s_expect_update_refused(w, bad, l1, SP_E_VERSION, "version 2");
    memcpy(bad, v1, l1);
    s_patch_last(bad, l1, "act", 2, "\x20", 1);
    s_expect_update_refused(w, bad, l1, SP_E_INPUT, "'act'");
    memcpy(bad, v1, l1);
    s_patch_last(bad, l1, "occupancy", 2 + 7, "\x80", 1); /* cell 63 of a 9-input run */
    s_expect_update_refused(w, bad, l1, SP_E_INPUT, "past the 9 inputs");
    memcpy(bad, v1, l1);
    float one = 1.0f;
    s_patch_last(bad, l1, "master", 2, &one, 4);
    s_expect_update_refused(w, bad, l1, SP_E_INPUT, "master");
    memcpy(bad, v1, l1);
    uint8_t nan[4] = {0xff, 0xff, 0xff, 0x7f};
    s_patch_last(bad, l1, "temporal", 2, nan, 4);
    s_expect_update_refused(w, bad, l1, SP_E_INPUT, "temporal");

    /* random damage: refused with a message and nothing changed, or accepted
     * (e.g. another float) and then identical to a full load of those bytes */
    sp_rng_t q;
    sp_rng_init(&q, 24);
    int refused = 0;
    for (int k = 0; k < 400; k++) {
        memcpy(bad, v1, l1);
        size_t at = (size_t)sp_rng_below(&q, l1);
        bad[at] ^= (uint8_t)(1u + sp_rng_below(&q, 255));
        sp_network_t *f = NULL;
        int full = sp_network_load_buffer(bad, l1, &f, err, sizeof err);
        if (full == SP_OK &&
            sp_network_update_from_buffer(w, bad, l1, err, sizeof err) == SP_OK) {
            uint8_t *bf;
            size_t nf;
            s_save(f, 1, &bf, &nf);
            s_assert_saves_as(w, 1, bf, nf);
            free(bf);
            assert_int_equal(sp_network_update_from_buffer(w, v0, l0, err, sizeof err), SP_OK);
        } else if (full != SP_OK) {
            s_expect_update_refused(w, bad, l1, full, NULL);
            refused++;
        }
        /* else: the damage changed the topology (an id, a seed): full load only */
        sp_network_destroy(&f);
    }
    assert_true(refused > 50);
    s_assert_saves_as(w, 1, v0, l0);
    free(bad);
    free(v0);
    free(v1);
    sp_network_destroy(&w);
    sp_network_destroy(&n);
}

int main(void)
{
    /* One thread by default keeps the suite fast on a loaded machine; the
     * determinism tests choose 1, 2 and 3 threads themselves. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_save_load_same_outputs_to_the_bit),
        cmocka_unit_test(test_model_save_input_transform_round_trip),
        cmocka_unit_test(test_model_save_load_sparse_and_dense_neurons),
        cmocka_unit_test(test_model_save_checkpoint_resumes_identically),
        cmocka_unit_test(test_model_save_file_round_trip),
        cmocka_unit_test(test_model_truncated_files_rejected),
        cmocka_unit_test(test_model_corrupt_files_rejected),
        cmocka_unit_test(test_model_absurd_layer_size_refused_before_allocating),
        cmocka_unit_test(test_model_refresh_same_topology_equals_full_load),
        cmocka_unit_test(test_model_refresh_other_topology_refused_unchanged),
        cmocka_unit_test(test_model_refresh_corrupt_refused_unchanged),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
