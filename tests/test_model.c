/* test_model: model files save and load bit-exactly (outputs and bytes),
 * training resumes identically from a checkpoint, and truncated, corrupt,
 * wrong-version and inconsistent files are refused with a message. */
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

int main(void)
{
    /* One thread by default keeps the suite fast on a loaded machine; the
     * determinism tests choose 1, 2 and 3 threads themselves. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_save_load_same_outputs_to_the_bit),
        cmocka_unit_test(test_model_save_checkpoint_resumes_identically),
        cmocka_unit_test(test_model_save_file_round_trip),
        cmocka_unit_test(test_model_truncated_files_rejected),
        cmocka_unit_test(test_model_corrupt_files_rejected),
        cmocka_unit_test(test_model_absurd_layer_size_refused_before_allocating),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
