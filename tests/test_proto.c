/* test_proto: the codec and the ZeroMQ transport of proto/.
 * Every message type goes through encode/decode and a real socket pair with
 * all fields populated, and every decoder is fed bad frames (truncated, wrong
 * version, absurd counts, wrong types, missing keys, out-of-range values):
 * each must be refused with an error naming the problem and leave out empty. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include <msgpack.h>
#include <zmq.h>

#include "common/error.h"
#include "common/rng.h"
#include "proto/messages.h"

static const uint32_t s_types[] = {
#define SP_X_ID(name, id, str) id,
    SP_MSG_TYPES(SP_X_ID)
#undef SP_X_ID
};
static const char *const s_type_names[] = {
#define SP_X_STR(name, id, str) str,
    SP_MSG_TYPES(SP_X_STR)
#undef SP_X_STR
};
#define N_TYPES (sizeof(s_types) / sizeof(s_types[0]))

/* An empty message: type 0 and every byte zero (what a failed decode leaves). */
static void s_assert_empty(const sp_msg_t *m)
{
    sp_msg_t zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(m, &zero, sizeof(zero));
}

typedef struct {
    uint8_t hdr[SP_MSG_HEADER_BYTES];
    uint8_t *body;
    size_t len;
} s_frames_t;

static void s_encode_example(uint32_t type, uint64_t seed, s_frames_t *fr)
{
    sp_msg_t m;
    assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)type, seed), SP_OK);
    assert_int_equal(sp_msg_encode(&m, fr->hdr, &fr->body, &fr->len), SP_OK);
    sp_msg_fini(&m);
}

/* Decodes and expects failure with rc; err must contain needle (if any). */
static void s_expect_fail(const uint8_t *hdr, size_t hlen, const uint8_t *body, size_t blen, int rc,
                          const char *needle)
{
    sp_msg_t out;
    memset(&out, 0x5a, sizeof(out));
    char err[256] = "";
    int got = sp_msg_decode(hdr, hlen, body, blen, &out, err, sizeof(err));
    if (got != rc || (needle != NULL && strstr(err, needle) == NULL)) {
        print_error("decode: rc %d (want %d), err \"%s\" (want \"%s\")\n", got, rc, err,
                    needle != NULL ? needle : "");
    }
    assert_int_equal(got, rc);
    assert_true(err[0] != '\0');
    if (needle != NULL) {
        assert_non_null(strstr(err, needle));
    }
    s_assert_empty(&out);
}

/* --- body rewriting: pack a decoded map again with one change ------------ */

typedef enum { EDIT_DROP, EDIT_REPLACE, EDIT_ADD } s_edit_t;

/* Re-packs body (a map) with key `key` dropped, its value replaced by the
 * raw msgpack bytes `raw`, or a new entry key -> raw added at the end. */
static uint8_t *s_rewrite(const uint8_t *body, size_t len, s_edit_t edit, const char *key,
                          const uint8_t *raw, size_t raw_len, size_t *out_len)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, (const char *)body, len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t n = up.data.via.map.size;
    size_t klen = strlen(key);
    int found = 0;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_str *k = &up.data.via.map.ptr[i].key.via.str;
        found += k->size == klen && memcmp(k->ptr, key, klen) == 0;
    }
    assert_true(edit == EDIT_ADD ? found == 0 : found == 1);
    msgpack_pack_map(&pk, edit == EDIT_DROP ? n - 1 : edit == EDIT_ADD ? n + 1 : n);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
        int match = kv->key.via.str.size == klen && memcmp(kv->key.via.str.ptr, key, klen) == 0;
        if (match && edit == EDIT_DROP) {
            continue;
        }
        msgpack_pack_object(&pk, kv->key);
        if (match) {
            msgpack_sbuffer_write(&sb, (const char *)raw, raw_len);
        } else {
            msgpack_pack_object(&pk, kv->val);
        }
    }
    if (edit == EDIT_ADD) {
        msgpack_pack_str_with_body(&pk, key, klen);
        msgpack_sbuffer_write(&sb, (const char *)raw, raw_len);
    }
    msgpack_unpacked_destroy(&up);
    *out_len = sb.size;
    return (uint8_t *)msgpack_sbuffer_release(&sb);
}

static int s_key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* Keys of an encoded body, in order (at most 64). */
static uint32_t s_keys(const uint8_t *body, size_t len, char keys[][40])
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, (const char *)body, len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    uint32_t n = up.data.via.map.size;
    assert_true(n <= 64);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_str *k = &up.data.via.map.ptr[i].key.via.str;
        assert_true(k->size < 40);
        memcpy(keys[i], k->ptr, k->size);
        keys[i][k->size] = '\0';
    }
    msgpack_unpacked_destroy(&up);
    return n;
}

/* Packs one value into a small buffer. */
typedef struct {
    uint8_t b[512];
    size_t n;
} s_raw_t;

static int s_raw_write(void *data, const char *buf, size_t len)
{
    s_raw_t *r = data;
    assert_true(r->n + len <= sizeof(r->b));
    memcpy(r->b + r->n, buf, len);
    r->n += len;
    return 0;
}

static msgpack_packer s_raw_packer(s_raw_t *r)
{
    r->n = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, r, s_raw_write);
    return pk;
}

/* Decodes example `type` with key replaced by raw; expects SP_E_INPUT naming needle. */
static void s_expect_field_fail(uint32_t type, const char *key, const s_raw_t *raw,
                                const char *needle)
{
    s_frames_t fr;
    s_encode_example(type, 1, &fr);
    size_t len = 0;
    uint8_t *bad = s_rewrite(fr.body, fr.len, EDIT_REPLACE, key, raw->b, raw->n, &len);
    s_expect_fail(fr.hdr, 4, bad, len, SP_E_INPUT, needle);
    free(bad);
    free(fr.body);
}

/* ------------------------------------------------------------------------ */

static void test_proto_type_table_names_and_examples(void **state)
{
    (void)state;
    assert_true(N_TYPES >= 28);
    for (size_t i = 0; i < N_TYPES; i++) {
        assert_string_equal(sp_msg_type_name(s_types[i]), s_type_names[i]);
        assert_true(s_types[i] >= 1 && s_types[i] <= 255);
        for (size_t j = 0; j < i; j++) {
            assert_true(s_types[i] != s_types[j]);
        }
        sp_msg_t m;
        assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)s_types[i], 3), SP_OK);
        assert_int_equal(m.type, s_types[i]);
        sp_msg_fini(&m);
        sp_msg_fini(&m); /* idempotent */
        assert_int_equal(m.type, s_types[i]);
    }
    assert_null(sp_msg_type_name(0));
    assert_null(sp_msg_type_name(99));
    assert_null(sp_msg_type_name(1000));
    sp_msg_t m;
    assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)99, 1), SP_E_RANGE);
}

static void test_proto_round_trip_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        for (uint64_t seed = 1; seed <= 4; seed++) {
            sp_msg_t m, d;
            assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)s_types[i], seed), SP_OK);
            uint8_t hdr[4];
            uint8_t *body = NULL;
            size_t len = 0;
            assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
            assert_int_equal(hdr[0], 'S');
            assert_int_equal(hdr[1], 'P');
            assert_int_equal(hdr[2], SP_PROTO_VERSION);
            assert_int_equal(hdr[3], s_types[i]);
            assert_true(len >= 1 && len <= SP_MSG_MAX_BYTES);
            char err[256] = "";
            int rc = sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err));
            if (rc != SP_OK) {
                print_error("%s: %s\n", s_type_names[i], err);
            }
            assert_int_equal(rc, SP_OK);
            char where[128] = "";
            int eq = sp_msg_equal(&m, &d, where, sizeof(where));
            if (!eq) {
                print_error("%s differs at %s\n", s_type_names[i], where);
            }
            assert_true(eq);
            /* Encoding the decoded message gives the same bytes. */
            uint8_t hdr2[4];
            uint8_t *body2 = NULL;
            size_t len2 = 0;
            assert_int_equal(sp_msg_encode(&d, hdr2, &body2, &len2), SP_OK);
            assert_int_equal(len2, len);
            assert_memory_equal(body2, body, len);
            free(body);
            free(body2);
            sp_msg_fini(&m);
            sp_msg_fini(&d);
        }
    }
}

/* Hand-filled messages compared field by field, so the schema-driven
 * comparison is not the only judge. */
static void test_proto_round_trip_fields_by_hand(void **state)
{
    (void)state;
    sp_msg_t m, d;
    uint8_t hdr[4];
    uint8_t *body;
    size_t len;
    char err[256];

    sp_msg_init(&m, SP_MSG_TASK);
    uint32_t idx[5] = {0, 7, 0xffffffffu, 12345678, 3};
    m.u.task = (sp_msg_task_t){.job = 3,
                               .version = 9,
                               .step = 1ull << 40,
                               .partition = 4,
                               .n_partitions = 2,
                               .partition_size = 3,
                               .batch = 17,
                               .checksum = 0xdeadbeefcafef00dull,
                               .n_indices = 5,
                               .indices = idx};
    strcpy(m.u.task.dataset, "fashion-mnist_v1.2");
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.type, SP_MSG_TASK);
    assert_int_equal(d.u.task.job, 3);
    assert_int_equal(d.u.task.version, 9);
    assert_int_equal(d.u.task.step, 1ull << 40);
    assert_int_equal(d.u.task.partition, 4);
    assert_int_equal(d.u.task.n_partitions, 2);
    assert_int_equal(d.u.task.partition_size, 3);
    assert_int_equal(d.u.task.batch, 17);
    assert_string_equal(d.u.task.dataset, "fashion-mnist_v1.2");
    assert_int_equal(d.u.task.checksum, 0xdeadbeefcafef00dull);
    assert_int_equal(d.u.task.n_indices, 5);
    assert_memory_equal(d.u.task.indices, idx, sizeof(idx));
    assert_ptr_not_equal(d.u.task.indices, idx);
    sp_msg_fini(&d);

    sp_msg_init(&m, SP_MSG_RESULT);
    float grad[3] = {-0.0f, 1e-30f, -3.25f};
    uint32_t hits[2] = {1, 64};
    m.u.result = (sp_msg_result_t){.job = 1,
                                   .version = 2,
                                   .step = 5,
                                   .partition = 1,
                                   .n_partitions = 2,
                                   .n_samples = 32,
                                   .n_correct = 30,
                                   .loss_sum = 1.0 / 3.0,
                                   .compute_us = 999,
                                   .n_grad = 3,
                                   .grad = grad,
                                   .n_hits = 2,
                                   .hits = hits};
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.u.result.n_partitions, 2);
    assert_int_equal(d.u.result.n_samples, 32);
    assert_int_equal(d.u.result.n_correct, 30);
    assert_true(d.u.result.loss_sum == 1.0 / 3.0);
    assert_int_equal(d.u.result.compute_us, 999);
    assert_int_equal(d.u.result.n_grad, 3);
    assert_memory_equal(d.u.result.grad, grad, sizeof(grad)); /* bit exact, -0 kept */
    assert_int_equal(d.u.result.n_hits, 2);
    assert_memory_equal(d.u.result.hits, hits, sizeof(hits));
    sp_msg_fini(&d);

    sp_msg_init(&m, SP_MSG_TRAIN);
    sp_msg_train_t *t = &m.u.train;
    t->req = 77;
    strcpy(t->dataset, "xor");
    t->n_layers = 3;
    t->layers[0] = 2;
    t->layers[1] = 16;
    t->layers[2] = 1;
    t->bits = 2;
    t->epochs = 10;
    t->batch = 64;
    t->partition = 16;
    t->lr = 0.05;
    t->momentum = 0.9;
    t->seed = 42;
    strcpy(t->mode, "local");
    strcpy(t->loss, "mse");
    t->growth_every = 100;
    t->growth_threshold = 0.9;
    t->prune_every = 0;
    t->prune_threshold = 0.01;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.u.train.req, 77);
    assert_string_equal(d.u.train.dataset, "xor");
    assert_string_equal(d.u.train.validation, "");
    assert_int_equal(d.u.train.n_layers, 3);
    assert_int_equal(d.u.train.layers[1], 16);
    assert_int_equal(d.u.train.layers[2], 1);
    assert_int_equal(d.u.train.layers[3], 0);
    assert_int_equal(d.u.train.bits, 2);
    assert_int_equal(d.u.train.partition, 16);
    assert_true(d.u.train.lr == 0.05 && d.u.train.momentum == 0.9);
    assert_string_equal(d.u.train.mode, "local");
    assert_int_equal(d.u.train.growth_every, 100);
    assert_true(d.u.train.prune_threshold == 0.01);
    sp_msg_fini(&d);

    /* NaN where the header allows it; r_upload without info before stored. */
    sp_job_status_t js = {
        .job = 5, .epoch = 0, .epochs = 3, .loss = NAN, .accuracy = NAN, .val_accuracy = NAN};
    strcpy(js.dataset, "d");
    strcpy(js.state, "queued");
    sp_msg_init(&m, SP_MSG_R_STATUS);
    m.u.r_status.req = 1;
    m.u.r_status.n = 1;
    m.u.r_status.jobs = &js;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.u.r_status.n, 1);
    assert_true(isnan(d.u.r_status.jobs[0].loss) && isnan(d.u.r_status.jobs[0].val_accuracy));
    assert_string_equal(d.u.r_status.jobs[0].state, "queued");
    sp_msg_fini(&d);

    sp_msg_init(&m, SP_MSG_R_UPLOAD);
    m.u.r_upload.req = 2;
    m.u.r_upload.upload = 17;
    m.u.r_upload.received = 1 << 20;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.u.r_upload.upload, 17);
    assert_int_equal(d.u.r_upload.received, 1 << 20);
    assert_int_equal(d.u.r_upload.stored, 0);
    assert_string_equal(d.u.r_upload.info.name, "");
    sp_msg_fini(&d);

    /* Empty lists and empty blobs are fine. */
    sp_msg_init(&m, SP_MSG_R_DATASETS);
    m.u.r_datasets.req = 3;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
    free(body);
    assert_int_equal(d.u.r_datasets.n, 0);
    assert_null(d.u.r_datasets.datasets);
    sp_msg_fini(&d);
}

/* A task's node must be cut into its partitions exactly and lie inside its
 * step: the encoder refuses a bad shape (SP_E_RANGE) and the decoder refuses
 * the same fields on the wire (SP_E_INPUT), naming the field. */
static void test_proto_task_node_shape_checked(void **state)
{
    (void)state;
    uint32_t idx[10] = {0};
    struct {
        uint32_t partition, n_partitions, partition_size, batch, n_indices;
        int sync, ok;
    } cases[] = {
        {0, 1, 10, 10, 10, 0, 1}, /* a whole step of one partition */
        {0, 1, 10, 10, 10, 1, 1}, /* the same, with its model asked back */
        {0, 3, 4, 10, 10, 1, 1},  /* a whole step of 3 partitions, sync */
        {2, 3, 4, 18, 10, 0, 1},  /* 4 + 4 + 2 samples at the end of the step */
        {2, 3, 4, 18, 10, 1, 0},  /* sync on a node that is not the whole step */
        {0, 2, 4, 18, 8, 1, 0},   /* sync on the first node of a step */
        {0, 3, 4, 12, 8, 0, 0},   /* 8 samples fill only 2 of 3 partitions of 4 */
        {0, 2, 4, 12, 10, 0, 0},  /* more samples than 2 partitions of 4 hold */
        {0, 3, 3, 9, 6, 0, 0},    /* the last of 3 partitions would be empty */
        {2, 3, 4, 17, 10, 0, 0},  /* the node runs past the end of its step */
        {0, 1, 10, 9, 10, 0, 0},  /* more samples than the step */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_TASK);
        m.u.task = (sp_msg_task_t){.job = 1,
                                   .version = 1,
                                   .partition = cases[i].partition,
                                   .n_partitions = cases[i].n_partitions,
                                   .partition_size = cases[i].partition_size,
                                   .batch = cases[i].batch,
                                   .n_indices = cases[i].n_indices,
                                   .indices = idx,
                                   .sync = cases[i].sync};
        strcpy(m.u.task.dataset, "d");
        uint8_t hdr[4];
        uint8_t *body = NULL;
        size_t len = 0;
        int rc = sp_msg_encode(&m, hdr, &body, &len);
        if (cases[i].ok) {
            assert_int_equal(rc, SP_OK);
            sp_msg_t d;
            char err[256];
            assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof err), SP_OK);
            sp_msg_fini(&d);
            free(body);
            continue;
        }
        assert_int_equal(rc, SP_E_RANGE);
        /* the same fields on the wire, in a body packed by hand (the
         * encoder would refuse them) */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 12);
        const char *keys[] = {"job", "version", "step", "partition", "n_partitions",
                              "partition_size", "batch", "checksum", "n_indices"};
        const uint64_t vals[] = {1, 1, 0, cases[i].partition, cases[i].n_partitions,
                                 cases[i].partition_size, cases[i].batch, 0, cases[i].n_indices};
        for (size_t k = 0; k < 9; k++) {
            msgpack_pack_str(&pk, strlen(keys[k]));
            msgpack_pack_str_body(&pk, keys[k], strlen(keys[k]));
            msgpack_pack_uint64(&pk, vals[k]);
        }
        msgpack_pack_str(&pk, 7);
        msgpack_pack_str_body(&pk, "dataset", 7);
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "d", 1);
        msgpack_pack_str(&pk, 7);
        msgpack_pack_str_body(&pk, "indices", 7);
        msgpack_pack_bin(&pk, cases[i].n_indices * 4);
        msgpack_pack_bin_body(&pk, idx, cases[i].n_indices * 4);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "sync", 4);
        if (cases[i].sync) {
            msgpack_pack_true(&pk);
        } else {
            msgpack_pack_false(&pk);
        }
        const uint8_t thdr[4] = {'S', 'P', SP_PROTO_VERSION, SP_MSG_TASK};
        s_expect_fail(thdr, 4, (const uint8_t *)sb.data, sb.size, SP_E_INPUT, "task.");
        msgpack_sbuffer_destroy(&sb);
    }
}

/* The bytes documented in proto/PROTOCOL.md ("Worked example"). */
static void test_proto_documented_bytes(void **state)
{
    (void)state;
    sp_msg_t m;
    uint8_t hdr[4];
    uint8_t *body;
    size_t len;
    sp_msg_init(&m, SP_MSG_HEARTBEAT);
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    const uint8_t hb_hdr[4] = {0x53, 0x50, 0x04, 0x04};
    assert_memory_equal(hdr, hb_hdr, 4);
    assert_int_equal(len, 1);
    assert_int_equal(body[0], 0x80);
    free(body);

    sp_msg_init(&m, SP_MSG_STATUS);
    m.u.job_req.req = 7;
    m.u.job_req.job = 0;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
    const uint8_t st_hdr[4] = {0x53, 0x50, 0x04, 0x18};
    const uint8_t st_body[] = {0x83, 0xa3, 'r',  'e', 'q', 0x07, 0xa3, 'j', 'o',
                               'b',  0x00, 0xa5, 's', 'i', 'n',  'c',  'e', 0x00};
    assert_memory_equal(hdr, st_hdr, 4);
    assert_int_equal(len, sizeof(st_body));
    assert_memory_equal(body, st_body, sizeof(st_body));
    free(body);

    /* A client may leave out "since"; the reply example decodes too. */
    const uint8_t short_body[] = {0x82, 0xa3, 'r', 'e', 'q', 0x07, 0xa3, 'j', 'o', 'b', 0x00};
    sp_msg_t d;
    char err[256];
    assert_int_equal(sp_msg_decode(st_hdr, 4, short_body, sizeof(short_body), &d, err, sizeof(err)),
                     SP_OK);
    assert_int_equal(d.type, SP_MSG_STATUS);
    assert_int_equal(d.u.job_req.req, 7);
    sp_msg_fini(&d);
}

static void test_proto_decode_truncated_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 2, &fr);
        /* Every prefix of a small body, a sample of prefixes of a big one. */
        size_t step = fr.len > 400 ? fr.len / 97 : 1;
        for (size_t cut = 0; cut < fr.len; cut += step) {
            s_expect_fail(fr.hdr, 4, fr.body, cut, SP_E_INPUT, NULL);
        }
        s_expect_fail(fr.hdr, 4, fr.body, fr.len - 1, SP_E_INPUT, NULL);
        /* Truncated header. */
        s_expect_fail(fr.hdr, 3, fr.body, fr.len, SP_E_INPUT, "header");
        s_expect_fail(fr.hdr, 0, fr.body, fr.len, SP_E_INPUT, "header");
        free(fr.body);
    }
}

static void test_proto_decode_wrong_version_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 3, &fr);
        fr.hdr[2] = SP_PROTO_VERSION + 1;
        char want[96];
        snprintf(want, sizeof want, "protocol version %u not supported (this build speaks %u)",
                 SP_PROTO_VERSION + 1, SP_PROTO_VERSION);
        s_expect_fail(fr.hdr, 4, fr.body, fr.len, SP_E_VERSION, want);
        fr.hdr[2] = 1; /* the previous protocol is refused too */
        s_expect_fail(fr.hdr, 4, fr.body, fr.len, SP_E_VERSION, "version 1 not supported");
        fr.hdr[2] = 0;
        s_expect_fail(fr.hdr, 4, fr.body, fr.len, SP_E_VERSION, "version 0");
        free(fr.body);
    }
}

static void test_proto_decode_absurd_counts_every_type(void **state)
{
    (void)state;
    /* Values that declare far more than the frame holds. */
    const uint8_t bin4g[] = {0xc6, 0xff, 0xff, 0xff, 0xff};
    const uint8_t arr2g[] = {0xdd, 0x80, 0x00, 0x00, 0x00};
    const uint8_t map4g[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    const uint8_t str4g[] = {0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 4, &fr);
        /* As the whole body. */
        s_expect_fail(fr.hdr, 4, bin4g, sizeof(bin4g), SP_E_INPUT, "declares 4294967295 bytes");
        s_expect_fail(fr.hdr, 4, arr2g, sizeof(arr2g), SP_E_INPUT, "declares 2147483648 elements");
        s_expect_fail(fr.hdr, 4, map4g, sizeof(map4g), SP_E_INPUT, "declares 4294967295 pairs");
        /* As the value of the first key, then of every key. */
        char keys[64][40];
        uint32_t nk = s_keys(fr.body, fr.len, keys);
        const uint8_t *vals[] = {bin4g, arr2g, map4g, str4g};
        const size_t lens[] = {sizeof(bin4g), sizeof(arr2g), sizeof(map4g), sizeof(str4g)};
        for (uint32_t k = 0; k < nk; k++) {
            for (size_t v = 0; v < 4; v++) {
                size_t len = 0;
                uint8_t *bad =
                    s_rewrite(fr.body, fr.len, EDIT_REPLACE, keys[k], vals[v], lens[v], &len);
                /* Keys after the lie are swallowed as its content: cut there. */
                s_expect_fail(fr.hdr, 4, bad, len, SP_E_INPUT, NULL);
                free(bad);
            }
        }
        /* A list of 2^31 records / a bin of n_grad 4-byte floats that is not there. */
        free(fr.body);
    }
    /* An array of 1025 records is over the list limit even when the bytes are there. */
    uint8_t big[3 + 1025];
    big[0] = 0xdc;
    big[1] = 0x04;
    big[2] = 0x01;
    memset(big + 3, 0xc0, 1025);
    const uint8_t hdr[4] = {'S', 'P', SP_PROTO_VERSION, SP_MSG_R_STATUS};
    s_expect_fail(hdr, 4, big, sizeof(big), SP_E_INPUT, "exceeds the limit of 1024");
}

static void test_proto_decode_wrong_type_every_field(void **state)
{
    (void)state;
    s_raw_t nil = {.b = {0xc0}, .n = 1};
    s_raw_t str = {.b = {0xa1, 'x'}, .n = 2};
    s_raw_t map = {.b = {0x80}, .n = 1};
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 5, &fr);
        char keys[64][40];
        uint32_t nk = s_keys(fr.body, fr.len, keys);
        for (uint32_t k = 0; k < nk; k++) {
            char needle[96];
            snprintf(needle, sizeof(needle), "%.39s", keys[k]);
            s_expect_field_fail(s_types[i], keys[k], &nil, needle);
            /* str is right for string fields; a map is right for nested ones. */
            if (strcmp(keys[k], "info") != 0) {
                s_expect_field_fail(s_types[i], keys[k], &map, needle);
            }
            size_t len = 0;
            uint8_t *bad = s_rewrite(fr.body, fr.len, EDIT_REPLACE, keys[k], str.b, str.n, &len);
            sp_msg_t out;
            char err[256];
            int rc = sp_msg_decode(fr.hdr, 4, bad, len, &out, err, sizeof(err));
            if (rc == SP_OK) { /* only a name/text field may take "x" */
                sp_msg_fini(&out);
            } else {
                assert_int_equal(rc, SP_E_INPUT);
                assert_non_null(strstr(err, keys[k]));
                s_assert_empty(&out);
            }
            free(bad);
        }
        free(fr.body);
    }
}

static void test_proto_decode_missing_key_every_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 6, &fr);
        char keys[64][40];
        uint32_t nk = s_keys(fr.body, fr.len, keys);
        for (uint32_t k = 0; k < nk; k++) {
            size_t len = 0;
            uint8_t *bad = s_rewrite(fr.body, fr.len, EDIT_DROP, keys[k], NULL, 0, &len);
            if (strcmp(keys[k], "since") == 0 || strcmp(keys[k], "min_node") == 0) {
                /* the optional keys: absent means 0 */
                sp_msg_t out;
                char err[256];
                assert_int_equal(sp_msg_decode(fr.hdr, 4, bad, len, &out, err, sizeof(err)), SP_OK);
                if (out.type == SP_MSG_TRAIN) {
                    assert_int_equal(out.u.train.min_node, 0);
                } else {
                    assert_int_equal(out.u.job_req.since, 0);
                }
                sp_msg_fini(&out);
            } else {
                char needle[96];
                snprintf(needle, sizeof(needle), "missing key \"%.39s\"", keys[k]);
                s_expect_fail(fr.hdr, 4, bad, len, SP_E_INPUT, needle);
            }
            free(bad);
        }
        free(fr.body);
    }
}

static void test_proto_decode_unknown_keys_ignored(void **state)
{
    (void)state;
    const uint8_t extra[] = {0x93, 0x01, 0xa2, 'h', 'i', 0x81, 0xa1, 'k', 0xc3};
    for (size_t i = 0; i < N_TYPES; i++) {
        sp_msg_t m, d;
        assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)s_types[i], 7), SP_OK);
        uint8_t hdr[4];
        uint8_t *body;
        size_t len, len2;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        uint8_t *body2 =
            s_rewrite(body, len, EDIT_ADD, "zz_future_field", extra, sizeof(extra), &len2);
        char err[256];
        assert_int_equal(sp_msg_decode(hdr, 4, body2, len2, &d, err, sizeof(err)), SP_OK);
        assert_true(sp_msg_equal(&m, &d, NULL, 0));
        free(body);
        free(body2);
        sp_msg_fini(&m);
        sp_msg_fini(&d);
    }
}

static void test_proto_req_field_of_every_request(void **state)
{
    (void)state;
    const sp_msg_type_t requests[] = {SP_MSG_UPLOAD_BEGIN, SP_MSG_UPLOAD_CHUNK, SP_MSG_UPLOAD_END,
                                      SP_MSG_TRAIN,        SP_MSG_STATUS,       SP_MSG_WORKERS,
                                      SP_MSG_METRICS,      SP_MSG_MODEL_GET,    SP_MSG_CANCEL,
                                      SP_MSG_DATASETS};
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        sp_msg_t m;
        sp_msg_example(&m, requests[i], 3);
        uint64_t *req = sp_msg_req(&m);
        assert_non_null(req);
        *req = 0x1234567890ULL + i;
        /* the id travels: encode, decode, read it back */
        uint8_t hdr[SP_MSG_HEADER_BYTES];
        uint8_t *body = NULL;
        size_t len = 0;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        sp_msg_t d;
        char err[256];
        assert_int_equal(sp_msg_decode(hdr, sizeof hdr, body, len, &d, err, sizeof err), SP_OK);
        assert_non_null(sp_msg_req(&d));
        assert_int_equal(*sp_msg_req(&d), 0x1234567890ULL + i);
        free(body);
        sp_msg_fini(&d);
        sp_msg_fini(&m);
    }
    sp_msg_t hb;
    sp_msg_init(&hb, SP_MSG_R_STATUS);
    hb.u.r_status.req = 9;
    assert_non_null(sp_msg_req(&hb)); /* replies echo the id in the same place */
    assert_int_equal(*sp_msg_req(&hb), 9);
    sp_msg_init(&hb, SP_MSG_HEARTBEAT);
    assert_null(sp_msg_req(&hb));
    sp_msg_init(&hb, SP_MSG_RESULT);
    assert_null(sp_msg_req(&hb));
}

static void test_proto_decode_bad_frames(void **state)
{
    (void)state;
    s_frames_t fr;
    s_encode_example(SP_MSG_HELLO, 1, &fr);
    uint8_t hdr[5];
    memcpy(hdr, fr.hdr, 4);
    hdr[4] = 0;
    s_expect_fail(hdr, 5, fr.body, fr.len, SP_E_INPUT, "header: 5 bytes");
    s_expect_fail(NULL, 0, fr.body, fr.len, SP_E_INPUT, "header");
    hdr[0] = 'Z';
    s_expect_fail(hdr, 4, fr.body, fr.len, SP_E_INPUT, "magic");
    memcpy(hdr, fr.hdr, 4);
    hdr[3] = 99;
    s_expect_fail(hdr, 4, fr.body, fr.len, SP_E_INPUT, "unknown message type 99");
    hdr[3] = 0;
    s_expect_fail(hdr, 4, fr.body, fr.len, SP_E_INPUT, "unknown message type 0");
    /* Empty body, trailing bytes, a body that is not a map, invalid byte. */
    s_expect_fail(fr.hdr, 4, fr.body, 0, SP_E_INPUT, "empty body");
    uint8_t *trail = malloc(fr.len + 1);
    memcpy(trail, fr.body, fr.len);
    trail[fr.len] = 0xc0;
    s_expect_fail(fr.hdr, 4, trail, fr.len + 1, SP_E_INPUT, "trailing");
    free(trail);
    const uint8_t arr[] = {0x91, 0x01};
    s_expect_fail(fr.hdr, 4, arr, sizeof(arr), SP_E_INPUT, "expected a map");
    const uint8_t c1[] = {0x81, 0xa1, 'a', 0xc1};
    s_expect_fail(fr.hdr, 4, c1, sizeof(c1), SP_E_INPUT, "0xc1");
    /* Two empty keys: msgpack-c hands out NULL pointers for them (a fuzz finding). */
    const uint8_t hb_hdr[4] = {'S', 'P', SP_PROTO_VERSION, SP_MSG_HEARTBEAT};
    const uint8_t empty_keys[] = {0x82, 0xa0, 0x01, 0xa0, 0x02};
    s_expect_fail(hb_hdr, 4, empty_keys, sizeof(empty_keys), SP_E_INPUT, "duplicate key \"\"");
    /* Duplicate and non-string keys. */
    const uint8_t dup[] = {0x83, 0xa4, 'n', 'a', 'm',  'e',  0xa1, 'a', 0xa7, 't', 'h',  'r',
                           'e',  'a',  'd', 's', 0x01, 0xa4, 'n',  'a', 'm',  'e', 0xa1, 'b'};
    s_expect_fail(fr.hdr, 4, dup, sizeof(dup), SP_E_INPUT, "duplicate key \"name\"");
    const uint8_t intkey[] = {0x81, 0x01, 0x02};
    s_expect_fail(fr.hdr, 4, intkey, sizeof(intkey), SP_E_INPUT, "not a str");
    /* A map of 65 entries (the bytes are there): over the per-map limit. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 65);
    for (int i = 0; i < 65; i++) {
        char k[8];
        int kn = snprintf(k, sizeof(k), "k%d", i);
        msgpack_pack_str_with_body(&pk, k, (size_t)kn);
        msgpack_pack_nil(&pk);
    }
    s_expect_fail(fr.hdr, 4, (const uint8_t *)sb.data, sb.size, SP_E_INPUT, "at most 64");
    msgpack_sbuffer_destroy(&sb);
    /* Nesting deeper than the limit. */
    uint8_t deep[32];
    size_t n = 0;
    deep[n++] = 0x81;
    deep[n++] = 0xa1;
    deep[n++] = 'z';
    for (int i = 0; i < 12; i++) {
        deep[n++] = 0x91;
    }
    deep[n++] = 0x00;
    s_expect_fail(fr.hdr, 4, deep, n, SP_E_INPUT, "nesting deeper than 8");
    /* Body larger than the message limit (checked before reading it). */
    s_expect_fail(fr.hdr, 4, fr.body, (size_t)SP_MSG_MAX_BYTES + 1, SP_E_INPUT, "exceeds");
    free(fr.body);
}

static void test_proto_decode_out_of_range_values(void **state)
{
    (void)state;
    s_raw_t r;
    msgpack_packer pk;
    char longtext[300];
    memset(longtext, 'a', sizeof(longtext));

    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 0);
    s_expect_field_fail(SP_MSG_HELLO, "threads", &r, "hello.threads: 0 outside 1..1024");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, "a b", 3);
    s_expect_field_fail(SP_MSG_HELLO, "name", &r, "hello.name: byte 0x20");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, "", 0);
    s_expect_field_fail(SP_MSG_HELLO, "name", &r, "empty name");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, "..", 2);
    s_expect_field_fail(SP_MSG_HELLO, "name", &r, "hello.name: starts with '.'");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, longtext, 64);
    s_expect_field_fail(SP_MSG_HELLO, "name", &r, "at most 63");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, "a\0b", 3);
    s_expect_field_fail(SP_MSG_HELLO, "name", &r, "NUL");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, longtext, 256);
    s_expect_field_fail(SP_MSG_ERROR, "message", &r, "at most 255");
    pk = s_raw_packer(&r);
    msgpack_pack_int32(&pk, -5);
    s_expect_field_fail(SP_MSG_WELCOME, "heartbeat_ms", &r, "negative");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 5);
    s_expect_field_fail(SP_MSG_WELCOME, "heartbeat_ms", &r, "welcome.heartbeat_ms: 5 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_uint64(&pk, 1ull << 32);
    s_expect_field_fail(SP_MSG_WELCOME, "liveness", &r, "does not fit");

    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 3);
    s_expect_field_fail(SP_MSG_TRAIN, "bits", &r, "train.bits: 3 not one of 1, 2, 4");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 1u << 20);
    s_expect_field_fail(SP_MSG_TRAIN, "partition", &r, "> batch");
    pk = s_raw_packer(&r);
    msgpack_pack_double(&pk, NAN);
    s_expect_field_fail(SP_MSG_TRAIN, "lr", &r, "train.lr: not a finite number");
    pk = s_raw_packer(&r);
    msgpack_pack_double(&pk, 0.0);
    s_expect_field_fail(SP_MSG_TRAIN, "lr", &r, "train.lr: 0 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_str_with_body(&pk, "adam", 4);
    s_expect_field_fail(SP_MSG_TRAIN, "mode", &r, "train.mode: \"adam\" is not an allowed");
    pk = s_raw_packer(&r);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, 4);
    msgpack_pack_uint32(&pk, 0);
    s_expect_field_fail(SP_MSG_TRAIN, "layers", &r, "train.layers");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 1);
    s_expect_field_fail(SP_MSG_TRAIN, "n_layers", &r, "train.n_layers: 1 outside");

    pk = s_raw_packer(&r);
    msgpack_pack_bin_with_body(&pk, "abcdefg", 7);
    s_expect_field_fail(SP_MSG_TASK, "indices", &r, "task.indices: 7 bytes");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 0);
    s_expect_field_fail(SP_MSG_TASK, "n_indices", &r, "task.n_indices: 0 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, (1u << 20) + 1);
    s_expect_field_fail(SP_MSG_TASK, "n_indices", &r, "task.n_indices: 1048577 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 1000);
    s_expect_field_fail(SP_MSG_TASK, "n_indices", &r, "expected 1000 elements");
    pk = s_raw_packer(&r);
    msgpack_pack_uint64(&pk, 0);
    s_expect_field_fail(SP_MSG_MODEL, "job", &r, "model.job: 0 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_bin(&pk, 0);
    s_expect_field_fail(SP_MSG_MODEL, "model", &r, "model.model: 0 bytes");

    /* A non-finite gradient would poison the master model. */
    {
        sp_msg_t m;
        assert_int_equal(sp_msg_example(&m, SP_MSG_RESULT, 1), SP_OK);
        m.u.result.grad[m.u.result.n_grad - 1] = NAN;
        uint8_t hdr[4];
        uint8_t *body;
        size_t len;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
        m.u.result.grad[m.u.result.n_grad - 1] = 0;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        uint8_t *nanpos = NULL;
        /* Patch the last float of the grad bin to a NaN on the wire. */
        for (size_t i = 0; i + 6 <= len; i++) {
            /* The key "grad" as a fixstr (not the tail of "n_grad"), then a bin8/bin16. */
            if (memcmp(body + i, "\xa4grad", 5) == 0) {
                uint8_t bin = body[i + 5];
                assert_true(bin == 0xc4 || bin == 0xc5);
                size_t hdr_bytes = bin == 0xc4 ? 2 : 3;
                nanpos = body + i + 5 + hdr_bytes + (size_t)(m.u.result.n_grad - 1) * 4;
                break;
            }
        }
        assert_non_null(nanpos);
        const uint8_t qnan[4] = {0x00, 0x00, 0xc0, 0x7f};
        memcpy(nanpos, qnan, 4);
        s_expect_fail(hdr, 4, body, len, SP_E_INPUT, "result.grad[");
        free(body);
        sp_msg_fini(&m);
    }
    pk = s_raw_packer(&r);
    msgpack_pack_uint32(&pk, 1u << 20);
    s_expect_field_fail(SP_MSG_RESULT, "n_correct", &r, "n_correct");

    {
        /* csv with two parts: refuse; idx with one part: refuse. */
        sp_msg_t m;
        assert_int_equal(sp_msg_example(&m, SP_MSG_UPLOAD_BEGIN, 1), SP_OK);
        strcpy(m.u.upload_begin.format, "csv");
        m.u.upload_begin.n_parts = 2;
        uint8_t hdr[4];
        uint8_t *body;
        size_t len;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
        strcpy(m.u.upload_begin.format, "idx");
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        const uint8_t one[] = {0x01};
        size_t len2;
        uint8_t *bad = s_rewrite(body, len, EDIT_REPLACE, "n_parts", one, 1, &len2);
        s_expect_fail(hdr, 4, bad, len2, SP_E_INPUT, "upload_begin.part_size: 2 elements");
        free(bad);
        const uint8_t csv[] = {0xa3, 'c', 's', 'v'};
        bad = s_rewrite(body, len, EDIT_REPLACE, "format", csv, sizeof(csv), &len2);
        s_expect_fail(hdr, 4, bad, len2, SP_E_INPUT, "upload_begin.n_parts: 2 for format csv");
        free(bad);
        free(body);
        sp_msg_fini(&m);
    }
    pk = s_raw_packer(&r);
    msgpack_pack_int64(&pk, -2);
    s_expect_field_fail(SP_MSG_UPLOAD_BEGIN, "label_column", &r, "label_column: -2 outside");
    pk = s_raw_packer(&r);
    msgpack_pack_uint64(&pk, 1ull << 31);
    s_expect_field_fail(SP_MSG_UPLOAD_BEGIN, "label_column", &r, "does not fit int32");
    {
        /* A chunk over the limit: the bin is really there. */
        size_t big = SP_CHUNK_MAX + 1;
        uint8_t *raw = calloc(1, big + 5);
        raw[0] = 0xc6;
        raw[1] = (uint8_t)(big >> 24);
        raw[2] = (uint8_t)(big >> 16);
        raw[3] = (uint8_t)(big >> 8);
        raw[4] = (uint8_t)big;
        s_frames_t fr;
        s_encode_example(SP_MSG_UPLOAD_CHUNK, 1, &fr);
        size_t len;
        uint8_t *bad = s_rewrite(fr.body, fr.len, EDIT_REPLACE, "data", raw, big + 5, &len);
        s_expect_fail(fr.hdr, 4, bad, len, SP_E_INPUT, "upload_chunk.data: 1048577 bytes");
        free(bad);
        free(raw);
        free(fr.body);
    }
    pk = s_raw_packer(&r);
    msgpack_pack_uint64(&pk, 0);
    s_expect_field_fail(SP_MSG_METRICS, "job", &r, "metrics.job: 0 outside");
    s_expect_field_fail(SP_MSG_CANCEL, "job", &r, "cancel.job: 0 outside");
    {
        /* status accepts job 0 (all jobs). */
        sp_msg_t m, d;
        sp_msg_init(&m, SP_MSG_STATUS);
        uint8_t hdr[4];
        uint8_t *body;
        size_t len;
        char err[256];
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        assert_int_equal(sp_msg_decode(hdr, 4, body, len, &d, err, sizeof(err)), SP_OK);
        assert_int_equal(d.u.job_req.job, 0);
        sp_msg_fini(&d);
        free(body);
    }
    /* data_chunk beyond its total; r_upload stored without info. */
    pk = s_raw_packer(&r);
    msgpack_pack_uint64(&pk, 0);
    s_expect_field_fail(SP_MSG_DATA_CHUNK, "total", &r, "beyond total");
    {
        s_frames_t fr;
        s_encode_example(SP_MSG_R_UPLOAD, 1, &fr);
        size_t len;
        uint8_t *bad = s_rewrite(fr.body, fr.len, EDIT_DROP, "info", NULL, 0, &len);
        s_expect_fail(fr.hdr, 4, bad, len, SP_E_INPUT, "missing key \"info\"");
        free(bad);
        free(fr.body);
    }
    /* Bad state inside a list record names the record. */
    {
        sp_msg_t m;
        assert_int_equal(sp_msg_example(&m, SP_MSG_R_STATUS, 1), SP_OK);
        strcpy(m.u.r_status.jobs[1].state, "paused");
        uint8_t hdr[4];
        uint8_t *body;
        size_t len;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
        sp_msg_fini(&m);
        assert_int_equal(sp_msg_example(&m, SP_MSG_R_METRICS, 1), SP_OK);
        m.u.r_metrics.records[1].saturation[0] = 1.5f;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
        m.u.r_metrics.records[1].saturation[0] = 0.5f;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_OK);
        sp_msg_fini(&m);
        free(body);
    }
    {
        s_frames_t fr;
        s_encode_example(SP_MSG_R_METRICS, 1, &fr);
        /* Put a float64 that does not fit a float32 into "sparsity" of a record: rebuild the
         * list with msgpack-c. */
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        assert_int_equal(msgpack_unpack_next(&up, (const char *)fr.body, fr.len, &off),
                         MSGPACK_UNPACK_SUCCESS);
        msgpack_object *recs = NULL;
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            if (s_key_is(&up.data.via.map.ptr[i].key, "records")) {
                recs = &up.data.via.map.ptr[i].val;
            }
        }
        assert_non_null(recs);
        msgpack_object *rec0 = &recs->via.array.ptr[0];
        for (uint32_t i = 0; i < rec0->via.map.size; i++) {
            if (s_key_is(&rec0->via.map.ptr[i].key, "sparsity")) {
                rec0->via.map.ptr[i].val.type = MSGPACK_OBJECT_FLOAT64;
                rec0->via.map.ptr[i].val.via.f64 = 1e300;
            }
        }
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer p2;
        msgpack_packer_init(&p2, &sb, msgpack_sbuffer_write);
        msgpack_pack_object(&p2, up.data);
        s_expect_fail(fr.hdr, 4, (const uint8_t *)sb.data, sb.size, SP_E_INPUT,
                      "r_metrics.records[0].sparsity");
        msgpack_sbuffer_destroy(&sb);
        msgpack_unpacked_destroy(&up);
        free(fr.body);
    }
}

static void test_proto_encode_refuses_bad_messages(void **state)
{
    (void)state;
    sp_msg_t m;
    uint8_t hdr[4];
    uint8_t *body = (uint8_t *)1;
    size_t len = 1;
    sp_msg_init(&m, SP_MSG_HELLO);
    strcpy(m.u.hello.name, "w1");
    m.u.hello.threads = 0;
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
    assert_null(body);
    assert_int_equal(len, 0);
    m.u.hello.threads = 2;
    memset(m.u.hello.name, 'a', sizeof(m.u.hello.name)); /* not terminated */
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
    sp_msg_init(&m, (sp_msg_type_t)77);
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
    sp_msg_init(&m, SP_MSG_TASK);
    strcpy(m.u.task.dataset, "d");
    m.u.task.job = m.u.task.version = 1;
    m.u.task.n_indices = 3; /* indices NULL */
    assert_int_equal(sp_msg_encode(&m, hdr, &body, &len), SP_E_RANGE);
}

/* Random damage to valid bodies: the decoder either refuses with a message
 * (out empty) or accepts a message that the encoder accepts too. Never a
 * crash, a leak or an assertion (run under ASan in `make sanitize`). */
static void test_proto_decode_random_damage_never_crashes(void **state)
{
    (void)state;
    sp_rng_t rng;
    sp_rng_init(&rng, 2024);
    int refused = 0, accepted = 0;
    for (size_t i = 0; i < N_TYPES; i++) {
        s_frames_t fr;
        s_encode_example(s_types[i], 8, &fr);
        uint8_t *buf = malloc(fr.len + 8);
        for (int trial = 0; trial < 300; trial++) {
            memcpy(buf, fr.body, fr.len);
            size_t len = fr.len;
            int edits = 1 + (int)sp_rng_below(&rng, 3);
            for (int e = 0; e < edits; e++) {
                size_t at = (size_t)sp_rng_below(&rng, len);
                switch (sp_rng_below(&rng, 4)) {
                case 0:
                    buf[at] = (uint8_t)sp_rng_next(&rng);
                    break; /* any byte */
                case 1:
                    buf[at] ^= (uint8_t)(1u << sp_rng_below(&rng, 8));
                    break; /* bit flip */
                case 2:
                    len = at > 0 ? at : 1;
                    break; /* truncate */
                default:
                    buf[at] =
                        (uint8_t[]){0xc1, 0xdd, 0xdf, 0xc6, 0xdb, 0xff, 0x7f, 0xcb}[sp_rng_below(
                            &rng, 8)]; /* a hostile tag */
                }
            }
            sp_msg_t out;
            char err[256] = "";
            int rc = sp_msg_decode(fr.hdr, 4, buf, len, &out, err, sizeof(err));
            if (rc == SP_OK) {
                uint8_t hdr2[4];
                uint8_t *body2 = NULL;
                size_t len2 = 0;
                assert_int_equal(sp_msg_encode(&out, hdr2, &body2, &len2), SP_OK);
                free(body2);
                sp_msg_fini(&out);
                accepted++;
            } else {
                assert_true(rc == SP_E_INPUT);
                assert_true(err[0] != '\0');
                s_assert_empty(&out);
                refused++;
            }
        }
        free(buf);
        free(fr.body);
    }
    assert_true(refused > (int)N_TYPES * 100); /* most damage is caught */
    (void)accepted;
}

/* --- transport ------------------------------------------------------------- */

typedef struct {
    void *ctx, *router, *dealer;
} s_pair_t;

static void s_pair_open(s_pair_t *p, const char *ep)
{
    p->ctx = zmq_ctx_new();
    assert_non_null(p->ctx);
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    p->dealer = zmq_socket(p->ctx, ZMQ_DEALER);
    assert_int_equal(sp_sock_configure(p->router, ZMQ_ROUTER), SP_OK);
    assert_int_equal(sp_sock_configure(p->dealer, ZMQ_DEALER), SP_OK);
    assert_int_equal(zmq_setsockopt(p->dealer, ZMQ_ROUTING_ID, "worker-1", 8), 0);
    int timeout_ms = 5000; /* a lost message fails the test instead of hanging it */
    zmq_setsockopt(p->router, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    zmq_setsockopt(p->dealer, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    int64_t max = 0;
    size_t sz = sizeof(max);
    assert_int_equal(zmq_getsockopt(p->router, ZMQ_MAXMSGSIZE, &max, &sz), 0);
    assert_int_equal(max, SP_MSG_MAX_BYTES);
    int linger = -1;
    sz = sizeof(linger);
    assert_int_equal(zmq_getsockopt(p->dealer, ZMQ_LINGER, &linger, &sz), 0);
    assert_true(linger >= 0 && linger <= 1000);
    assert_int_equal(zmq_bind(p->router, ep), 0);
    assert_int_equal(zmq_connect(p->dealer, ep), 0);
}

static void s_pair_close(s_pair_t *p)
{
    zmq_close(p->router);
    zmq_close(p->dealer);
    zmq_ctx_term(p->ctx);
}

static void test_proto_zmq_round_trip_every_type(void **state)
{
    (void)state;
    s_pair_t p;
    s_pair_open(&p, "inproc://test_proto_rt");
    char err[256];
    for (size_t i = 0; i < N_TYPES; i++) {
        sp_msg_t m, d;
        assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)s_types[i], 11), SP_OK);
        /* dealer -> router: the identity arrives in id */
        assert_int_equal(sp_msg_send(p.dealer, NULL, 0, &m), SP_OK);
        uint8_t id[256];
        size_t id_len = sizeof(id);
        assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_OK);
        assert_int_equal(id_len, 8);
        assert_memory_equal(id, "worker-1", 8);
        assert_true(sp_msg_equal(&m, &d, NULL, 0));
        sp_msg_fini(&d);
        /* router -> dealer */
        assert_int_equal(sp_msg_send(p.router, id, id_len, &m), SP_OK);
        assert_int_equal(sp_msg_recv(p.dealer, 0, NULL, NULL, &d, err, sizeof(err)), SP_OK);
        assert_true(sp_msg_equal(&m, &d, NULL, 0));
        sp_msg_fini(&d);
        sp_msg_fini(&m);
    }
    s_pair_close(&p);
}

/* One encode to several peers: each gets the same message; a vanished peer
 * fails alone (ROUTER_MANDATORY) while the others are served. */
static void test_proto_zmq_send_many_shares_one_body(void **state)
{
    (void)state;
    s_pair_t p;
    s_pair_open(&p, "inproc://test_proto_many");
    void *second = zmq_socket(p.ctx, ZMQ_DEALER);
    assert_int_equal(sp_sock_configure(second, ZMQ_DEALER), SP_OK);
    assert_int_equal(zmq_setsockopt(second, ZMQ_ROUTING_ID, "worker-2", 8), 0);
    int timeout_ms = 5000;
    zmq_setsockopt(second, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    assert_int_equal(zmq_connect(second, "inproc://test_proto_many"), 0);
    char err[256];
    sp_msg_t hb, m, d;
    sp_msg_init(&hb, SP_MSG_HEARTBEAT);
    uint8_t id[256];
    size_t id_len;
    void *peers[2] = {p.dealer, second};
    for (int k = 0; k < 2; k++) { /* the router learns both identities */
        assert_int_equal(sp_msg_send(peers[k], NULL, 0, &hb), SP_OK);
        id_len = sizeof(id);
        assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_OK);
        sp_msg_fini(&d);
    }
    assert_int_equal(sp_msg_example(&m, SP_MSG_APPLY, 5), SP_OK);
    const uint8_t *ids[3] = {(const uint8_t *)"worker-1", (const uint8_t *)"gone",
                             (const uint8_t *)"worker-2"};
    const size_t lens[3] = {8, 4, 8};
    int rcs[3] = {99, 99, 99};
    assert_int_equal(sp_msg_send_many(p.router, ids, lens, 3, &m, rcs), SP_OK);
    assert_int_equal(rcs[0], SP_OK);
    assert_int_equal(rcs[1], SP_E_IO);
    assert_int_equal(rcs[2], SP_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(sp_msg_recv(peers[k], 0, NULL, NULL, &d, err, sizeof(err)), SP_OK);
        assert_true(sp_msg_equal(&m, &d, NULL, 0));
        sp_msg_fini(&d);
    }
    /* a message the encoder refuses is sent to nobody */
    m.u.apply.version = 1; /* below the range (>= 2) */
    int bad[2] = {99, 99};
    assert_int_equal(sp_msg_send_many(p.router, ids, lens, 2, &m, bad), SP_E_RANGE);
    assert_int_equal(bad[0], SP_E_RANGE);
    assert_int_equal(bad[1], SP_E_RANGE);
    assert_int_equal(sp_msg_recv(p.dealer, ZMQ_DONTWAIT, NULL, NULL, &d, err, sizeof(err)),
                     SP_E_TIMEOUT);
    sp_msg_fini(&m);
    zmq_close(second);
    s_pair_close(&p);
}

static void test_proto_zmq_bad_frames_drained(void **state)
{
    (void)state;
    s_pair_t p;
    s_pair_open(&p, "inproc://test_proto_bad");
    char err[256];
    sp_msg_t d;
    uint8_t id[256];
    size_t id_len;

    /* Nothing there yet. */
    id_len = sizeof(id);
    assert_int_equal(sp_msg_recv(p.router, ZMQ_DONTWAIT, id, &id_len, &d, err, sizeof(err)),
                     SP_E_TIMEOUT);
    s_assert_empty(&d);

    /* One frame, then five frames, then a bad header: each refused, nothing left behind. */
    zmq_send(p.dealer, "SP", 2, 0);
    for (int i = 0; i < 4; i++) {
        zmq_send(p.dealer, "xx", 2, ZMQ_SNDMORE);
    }
    zmq_send(p.dealer, "xx", 2, 0);
    const uint8_t v9[4] = {'S', 'P', 9, SP_MSG_HEARTBEAT};
    zmq_send(p.dealer, v9, 4, ZMQ_SNDMORE);
    zmq_send(p.dealer, "\x80", 1, 0);
    sp_msg_t hb;
    sp_msg_init(&hb, SP_MSG_HEARTBEAT);
    assert_int_equal(sp_msg_send(p.dealer, NULL, 0, &hb), SP_OK);

    id_len = sizeof(id);
    assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "frames: 2, expected 3"));
    assert_int_equal(id_len, 8); /* the caller can still answer */
    s_assert_empty(&d);
    id_len = sizeof(id);
    assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "frames: 6, expected 3"));
    id_len = sizeof(id);
    assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_E_VERSION);
    char want[96];
    snprintf(want, sizeof want, "protocol version 9 not supported (this build speaks %u)",
             SP_PROTO_VERSION);
    assert_non_null(strstr(err, want));
    id_len = sizeof(id);
    assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_OK);
    assert_int_equal(d.type, SP_MSG_HEARTBEAT);

    /* The error reply reaches the dealer, sanitised and tied to the request. */
    assert_int_equal(sp_msg_send_error(p.router, id, id_len, SP_E_INPUT, 42, SP_MSG_TRAIN,
                                       "bad name \"%s\"", "a\x01\xff"),
                     SP_OK);
    assert_int_equal(sp_msg_recv(p.dealer, 0, NULL, NULL, &d, err, sizeof(err)), SP_OK);
    assert_int_equal(d.type, SP_MSG_ERROR);
    assert_int_equal(d.u.error.code, 2);
    assert_int_equal(d.u.error.req, 42);
    assert_int_equal(d.u.error.ref_type, SP_MSG_TRAIN);
    assert_string_equal(d.u.error.message, "bad name \"a??\"");

    /* ROUTER_MANDATORY: a vanished peer is an error, not silence. */
    assert_int_equal(sp_msg_send(p.router, (const uint8_t *)"nobody", 6, &hb), SP_E_IO);
    assert_int_equal(errno, EHOSTUNREACH);

    /* An identity longer than the caller's buffer is reported, not overflowed. */
    assert_int_equal(sp_msg_send(p.dealer, NULL, 0, &hb), SP_OK);
    id_len = 4;
    assert_int_equal(sp_msg_recv(p.router, 0, id, &id_len, &d, err, sizeof(err)), SP_E_INPUT);
    assert_non_null(strstr(err, "envelope"));
    s_pair_close(&p);
}

/* A full queue is an error, not a hang. */
static void test_proto_zmq_send_never_blocks(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(sp_sock_configure(d, ZMQ_DEALER), SP_OK);
    int hwm = 4;
    zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    assert_int_equal(zmq_connect(d, "inproc://test_proto_nobody"), 0); /* never bound */
    sp_msg_t hb;
    sp_msg_init(&hb, SP_MSG_HEARTBEAT);
    int rc = SP_OK, sent = 0;
    while (rc == SP_OK && sent < 1000) {
        rc = sp_msg_send(d, NULL, 0, &hb);
        sent += rc == SP_OK;
    }
    assert_int_equal(rc, SP_E_IO);
    assert_int_equal(errno, EAGAIN);
    assert_true(sent >= 1 && sent < 1000);
    zmq_close(d);
    zmq_ctx_term(ctx);
}

static void test_proto_zmq_pub_sub_topic(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    assert_int_equal(sp_sock_configure(pub, ZMQ_PUB), SP_OK);
    assert_int_equal(sp_sock_configure(sub, ZMQ_SUB), SP_OK);
    int timeout_ms = 5000;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    assert_int_equal(zmq_bind(pub, "inproc://test_proto_pub"), 0);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "job/7", 5), 0);
    assert_int_equal(zmq_connect(sub, "inproc://test_proto_pub"), 0);
    sp_msg_t m, d;
    assert_int_equal(sp_msg_example(&m, SP_MSG_R_METRICS, 9), SP_OK);
    m.u.r_metrics.req = 0;
    char err[256];
    /* The subscription reaches the PUB asynchronously: publish until one arrives. */
    int rc = SP_E_TIMEOUT;
    uint8_t topic[64];
    size_t topic_len = 0;
    for (int tries = 0; tries < 5000 && rc == SP_E_TIMEOUT; tries++) {
        assert_int_equal(sp_msg_send(pub, (const uint8_t *)"job/8", 5, &m), SP_OK); /* filtered */
        assert_int_equal(sp_msg_send(pub, (const uint8_t *)"job/7", 5, &m), SP_OK);
        topic_len = sizeof(topic);
        rc = sp_msg_recv(sub, ZMQ_DONTWAIT, topic, &topic_len, &d, err, sizeof(err));
    }
    assert_int_equal(rc, SP_OK);
    assert_int_equal(topic_len, 5);
    assert_memory_equal(topic, "job/7", 5);
    assert_true(sp_msg_equal(&m, &d, NULL, 0));
    sp_msg_fini(&d);
    sp_msg_fini(&m);
    zmq_close(pub);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_type_table_names_and_examples),
        cmocka_unit_test(test_proto_req_field_of_every_request),
        cmocka_unit_test(test_proto_round_trip_every_type),
        cmocka_unit_test(test_proto_round_trip_fields_by_hand),
        cmocka_unit_test(test_proto_documented_bytes),
        cmocka_unit_test(test_proto_decode_truncated_every_type),
        cmocka_unit_test(test_proto_decode_wrong_version_every_type),
        cmocka_unit_test(test_proto_task_node_shape_checked),
        cmocka_unit_test(test_proto_decode_absurd_counts_every_type),
        cmocka_unit_test(test_proto_decode_wrong_type_every_field),
        cmocka_unit_test(test_proto_decode_missing_key_every_field),
        cmocka_unit_test(test_proto_decode_unknown_keys_ignored),
        cmocka_unit_test(test_proto_decode_bad_frames),
        cmocka_unit_test(test_proto_decode_out_of_range_values),
        cmocka_unit_test(test_proto_encode_refuses_bad_messages),
        cmocka_unit_test(test_proto_decode_random_damage_never_crashes),
        cmocka_unit_test(test_proto_zmq_round_trip_every_type),
        cmocka_unit_test(test_proto_zmq_send_many_shares_one_body),
        cmocka_unit_test(test_proto_zmq_bad_frames_drained),
        cmocka_unit_test(test_proto_zmq_send_never_blocks),
        cmocka_unit_test(test_proto_zmq_pub_sub_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
