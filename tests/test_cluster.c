/* test_cluster: end-to-end tests of the distributed trainer. Each test runs
 * the real programs (coordinator, workers, client) from $SPATIUM_BIN on ipc://
 * endpoints in a temporary directory, with fast heartbeats, and stops every
 * process it started. Every wait is a bounded poll of the coordinator's
 * status. The reference model (one worker) is computed once per suite and
 * shared through the group state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/network.h"
#include "common/reduce.h"
#include "common/rng.h"
#include "proto/curve.h"
#include "proto/messages.h"
#include "tests/cluster_util.h"

#define S_HEARTBEAT_MS 200
#define S_LIVENESS 5
#define S_JOB_TIMEOUT_MS 60000
#define S_SAMPLES 400
#define S_CLASSES 4
/* The long job: long enough (in steps) that a kill or a join lands mid-job. */
#define S_LONG_EPOCHS 24
#define S_LONG_BATCH 32
#define S_LONG_PARTITION 8

typedef struct {
    sp_cluster_t cl;
    int up;       /* coordinator started and the dataset stored */
    uint8_t *ref; /* model of the long job with one worker */
    size_t ref_len;
    char csv_path[256];
    sp_cluster_t *extra; /* a second cluster of one test, stopped by its teardown */
} s_fix_t;

/* Four Gaussian blobs in [0, 1]^2, one class each, as CSV text with a header:
 * n_samples rows. */
static char *s_blobs_csv(int n_samples, size_t *len)
{
    size_t cap = (size_t)n_samples * 48 + 64;
    char *s = malloc(cap);
    if (s == NULL) {
        return NULL;
    }
    size_t n = (size_t)snprintf(s, cap, "x0,x1,label\n");
    sp_rng_t rng;
    sp_rng_init(&rng, 7);
    static const float cx[S_CLASSES] = {0.25f, 0.75f, 0.25f, 0.75f};
    static const float cy[S_CLASSES] = {0.25f, 0.25f, 0.75f, 0.75f};
    for (int i = 0; i < n_samples; i++) {
        int k = i % S_CLASSES;
        double x = cx[k] + 0.08 * sp_rng_normal(&rng), y = cy[k] + 0.08 * sp_rng_normal(&rng);
        x = x < 0 ? 0 : (x > 1 ? 1 : x);
        y = y < 0 ? 0 : (y > 1 ? 1 : y);
        n += (size_t)snprintf(s + n, cap - n, "%.5f,%.5f,%d\n", x, y, k);
    }
    *len = n;
    return s;
}

static void s_job_def(sp_msg_train_t *t, const char *dataset, uint32_t epochs, uint32_t batch,
                      uint32_t partition)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dataset, sizeof t->dataset, "%s", dataset);
    t->n_layers = 3;
    t->layers[0] = 2;
    t->layers[1] = 16;
    t->layers[2] = S_CLASSES;
    t->bits = 4;
    t->epochs = epochs;
    t->batch = batch;
    t->partition = partition;
    t->lr = 0.05;
    t->momentum = 0.9;
    t->seed = 11;
    t->min_node = 1; /* split the small steps anyway: several workers share each one */
    snprintf(t->mode, sizeof t->mode, "backprop");
    snprintf(t->loss, sizeof t->loss, "xent");
}

static void s_long_job(sp_msg_train_t *t)
{
    s_job_def(t, "blobs", S_LONG_EPOCHS, S_LONG_BATCH, S_LONG_PARTITION);
}

static uint64_t s_long_samples(void)
{
    return (uint64_t)S_LONG_EPOCHS * S_SAMPLES;
}

static int s_group_setup(void **state)
{
    s_fix_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    *state = f;
    if (sp_cluster_init(&f->cl, S_HEARTBEAT_MS, S_LIVENESS) != 0) {
        return 0; /* the tests report it */
    }
    snprintf(f->csv_path, sizeof f->csv_path, "%s/blobs.csv", f->cl.dir);
    size_t len = 0;
    char *csv = s_blobs_csv(S_SAMPLES, &len);
    if (csv == NULL || sp_cu_write_file(f->csv_path, csv, len) != 0) {
        free(csv);
        return 0;
    }
    if (sp_cluster_start_coord(&f->cl) == 0) {
        char err[SP_TEXT_MAX] = "";
        const uint8_t *parts[1] = {(const uint8_t *)csv};
        size_t sizes[1] = {len};
        if (sp_cluster_upload(&f->cl, "blobs", "csv", "classify", parts, sizes, 1, 1000, err,
                              sizeof err) == 0) {
            f->up = 1;
        } else {
            fprintf(stderr, "setup: upload failed: %s\n", err);
        }
    }
    free(csv);
    return 0;
}

static int s_group_teardown(void **state)
{
    s_fix_t *f = *state;
    int unclean = 0;
    if (f != NULL) {
        unclean = sp_cluster_fini(&f->cl);
        free(f->ref);
        free(f);
    }
    /* A program that did not exit 0 on SIGTERM (a sanitizer report, a
     * crash at shutdown) fails the suite. */
    return unclean == 0 ? 0 : -1;
}

static s_fix_t *s_fix(void **state)
{
    s_fix_t *f = *state;
    if (!f->up) {
        sp_cluster_dump_logs(&f->cl);
    }
    assert_true(f->up);
    return f;
}

/* Runs a job to its end; fails the test (with the logs) unless it is done. */
static uint64_t s_run_job(s_fix_t *f, const sp_msg_train_t *t, sp_job_status_t *st)
{
    char err[SP_TEXT_MAX] = "";
    uint64_t job = 0;
    if (sp_cluster_train(&f->cl, t, &job, err, sizeof err) != 0) {
        fprintf(stderr, "train refused: %s\n", err);
        fail();
    }
    if (sp_cluster_wait_job(&f->cl, job, 0, S_JOB_TIMEOUT_MS, st) != 0 ||
        strcmp(st->state, "done") != 0) {
        sp_cluster_dump_logs(&f->cl);
        fprintf(stderr, "job %llu: %s %s\n", (unsigned long long)job, st->state, st->error);
        fail();
    }
    return job;
}

static void s_stop_workers(s_fix_t *f)
{
    for (int i = 0; i < SP_CU_MAX_WORKERS; i++) {
        sp_cluster_stop_worker(&f->cl, i, SIGTERM);
    }
    assert_int_equal(sp_cluster_wait_workers(&f->cl, 0, 10000), 0);
}

static void s_start_workers(s_fix_t *f, int n, const int *threads)
{
    for (int i = 0; i < n; i++) {
        assert_true(sp_cluster_add_worker(&f->cl, threads ? threads[i] : 1) >= 0);
    }
    if (sp_cluster_wait_workers(&f->cl, n, 20000) != 0) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("%d workers did not register", n);
    }
}

static void s_fetch(s_fix_t *f, uint64_t job, uint8_t **buf, size_t *len)
{
    assert_int_equal(sp_cluster_model(&f->cl, job, buf, len), 0);
    assert_true(*len > 0);
}

/* The reference: the long job with one single-threaded worker. */
static void s_reference(s_fix_t *f)
{
    if (f->ref != NULL) {
        return;
    }
    s_start_workers(f, 1, NULL);
    sp_msg_train_t t;
    s_long_job(&t);
    sp_job_status_t st;
    uint64_t job = s_run_job(f, &t, &st);
    s_fetch(f, job, &f->ref, &f->ref_len);
    s_stop_workers(f);
}

static void s_assert_same_model(const s_fix_t *f, const uint8_t *m, size_t len)
{
    assert_int_equal(len, f->ref_len);
    assert_memory_equal(m, f->ref, len);
}

static int s_find_worker(s_fix_t *f, const char *name, sp_worker_info_t *out)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_WORKERS);
    if (sp_cluster_call(&f->cl, &req, &rep, 2000) != 0) {
        return -1;
    }
    int found = -1;
    if (rep.type == SP_MSG_R_WORKERS) {
        for (uint32_t i = 0; i < rep.u.r_workers.n; i++) {
            /* the newest entry of that name */
            if (strcmp(rep.u.r_workers.workers[i].name, name) == 0) {
                *out = rep.u.r_workers.workers[i];
                found = 0;
            }
        }
    }
    sp_msg_fini(&rep);
    return found;
}

static void test_cluster_job_end_to_end_two_workers(void **state)
{
    s_fix_t *f = s_fix(state);
    char client[512];
    assert_int_equal(sp_cu_bin("spatium", client, sizeof client), 0);
    int n0 = sp_cluster_n_datasets(&f->cl);
    /* The dataset goes through the client program, as a user would send it. */
    char *submit[] = {client, "--coordinator", f->cl.cep, "--timeout-ms", "10000", "submit",
                      "e2e",  f->csv_path,     NULL};
    char out[4096];
    int rc = sp_cu_run(submit, 30000, out, sizeof out);
    if (rc != 0) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("spatium submit exited %d: %s", rc, out);
    }
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n0 + 1);

    s_start_workers(f, 2, NULL);
    /* A subscriber of the metrics socket sees the records live. */
    void *sub = zmq_socket(f->cl.zctx, ZMQ_SUB);
    assert_non_null(sub);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "job/", 4), 0);
    assert_int_equal(zmq_connect(sub, f->cl.mep), 0);
    sp_msg_train_t t;
    s_job_def(&t, "e2e", 20, 32, 8);
    snprintf(t.validation, sizeof t.validation, "blobs");
    sp_job_status_t st;
    uint64_t job = s_run_job(f, &t, &st);
    assert_int_equal(st.epoch, 20);
    assert_int_equal(st.samples_seen, 20 * S_SAMPLES);
    assert_true(st.accuracy >= 0.9);
    assert_true(st.val_accuracy >= 0.9);
    char want_topic[32];
    snprintf(want_topic, sizeof want_topic, "job/%llu", (unsigned long long)job);
    int published = 0;
    for (;;) {
        uint8_t topic[64];
        size_t topic_len = sizeof topic;
        sp_msg_t pm;
        char perr[SP_TEXT_MAX];
        if (sp_msg_recv(sub, ZMQ_DONTWAIT, topic, &topic_len, &pm, perr, sizeof perr) != SP_OK) {
            break;
        }
        if (pm.type == SP_MSG_R_METRICS && pm.u.r_metrics.n == 1 &&
            topic_len == strlen(want_topic) && memcmp(topic, want_topic, topic_len) == 0 &&
            pm.u.r_metrics.records[0].job == job) {
            published++;
        }
        sp_msg_fini(&pm);
    }
    zmq_close(sub);
    assert_true(published > 0);

    /* Both workers took part. */
    sp_worker_info_t w0, w1;
    assert_int_equal(s_find_worker(f, "w0", &w0), 0);
    assert_int_equal(s_find_worker(f, "w1", &w1), 0);
    assert_true(w0.partitions_done > 0 && w1.partitions_done > 0);

    /* The model through the client equals the one the protocol returns,
     * and it classifies the data. */
    char model_path[300], jobtxt[32];
    snprintf(model_path, sizeof model_path, "%s/e2e.spm", f->cl.dir);
    snprintf(jobtxt, sizeof jobtxt, "%llu", (unsigned long long)job);
    char *get[] = {client, "--coordinator", f->cl.cep, "model", jobtxt, "-o", model_path, NULL};
    rc = sp_cu_run(get, 30000, out, sizeof out);
    assert_int_equal(rc, 0);
    uint8_t *file = NULL, *wire = NULL;
    size_t file_len = 0, wire_len = 0;
    assert_int_equal(sp_cu_read_file(model_path, &file, &file_len), 0);
    s_fetch(f, job, &wire, &wire_len);
    assert_int_equal(file_len, wire_len);
    assert_memory_equal(file, wire, wire_len);
    sp_network_t *net = NULL;
    char err[SP_TEXT_MAX];
    assert_int_equal(sp_network_load_buffer(file, file_len, &net, err, sizeof err), SP_OK);
    size_t csv_len = 0;
    char *csv = s_blobs_csv(S_SAMPLES, &csv_len);
    sp_dataset_t ds;
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    assert_int_equal(sp_dataset_parse_csv(csv, csv_len, &o, &ds, err, sizeof err), SP_OK);
    float *Y = malloc((size_t)ds.n_samples * S_CLASSES * sizeof *Y);
    assert_non_null(Y);
    assert_int_equal(sp_network_forward(net, ds.x, ds.n_samples, Y), SP_OK);
    uint32_t correct = 0;
    for (uint32_t i = 0; i < ds.n_samples; i++) {
        uint32_t best = 0;
        for (uint32_t k = 1; k < S_CLASSES; k++) {
            best = Y[i * S_CLASSES + k] > Y[i * S_CLASSES + best] ? k : best;
        }
        correct += best == (uint32_t)ds.y[i];
    }
    assert_true(correct >= ds.n_samples * 9 / 10);

    /* Metrics: queryable from index 0, with an epoch record per epoch, and
     * the same records as JSON lines in the state directory. */
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_METRICS);
    req.u.job_req.job = job;
    assert_int_equal(sp_cluster_call(&f->cl, &req, &rep, 5000), 0);
    assert_int_equal(rep.type, SP_MSG_R_METRICS);
    uint32_t epochs = 0;
    const sp_metric_t *rec = rep.u.r_metrics.records, *prev_step = NULL;
    for (uint32_t i = 0; i < rep.u.r_metrics.n; i++) {
        assert_int_equal(rec[i].index, i);
        int is_epoch = strcmp(rec[i].kind, "epoch") == 0;
        epochs += is_epoch;
        /* A step record spans at least 50 ms of training (its samples per
         * second over more than a burst of results), but for the one that
         * closes an epoch. */
        int closes = i + 1 < rep.u.r_metrics.n && strcmp(rec[i + 1].kind, "epoch") == 0;
        if (!is_epoch && !closes && prev_step != NULL) {
            assert_true(rec[i].time_ms >= prev_step->time_ms + 50);
        }
        prev_step = is_epoch ? prev_step : &rec[i];
    }
    assert_int_equal(epochs, 20);
    uint32_t n_records = rep.u.r_metrics.n;
    sp_msg_fini(&rep);
    char jsonl[400];
    snprintf(jsonl, sizeof jsonl, "%s/jobs/%llu/metrics.jsonl", f->cl.state,
             (unsigned long long)job);
    uint8_t *jbuf = NULL;
    size_t jlen = 0;
    assert_int_equal(sp_cu_read_file(jsonl, &jbuf, &jlen), 0);
    uint32_t lines = 0;
    for (size_t i = 0; i < jlen; i++) {
        lines += jbuf[i] == '\n';
    }
    assert_int_equal(lines, n_records);

    free(jbuf);
    free(Y);
    sp_dataset_fini(&ds);
    free(csv);
    sp_network_destroy(&net);
    free(file);
    free(wire);
    s_stop_workers(f);
}

/* A worker that holds the model but no node of a step is not kept in step
 * by an apply per step: it is sent the model if it gets work again. Batch
 * 512: the first two steps are split (the compute time is not known yet),
 * the next fourteen are kept whole on one worker (this network needs far
 * less than SP_COORD_SPLIT_COST_US for 256 samples), so the other one holds
 * the model of step 2 and idles. An apply per step would send it 14 x ~5.7
 * KB, more than all the tasks of the busy one. */
static void test_cluster_idle_worker_not_kept_in_step(void **state)
{
    s_fix_t *f = s_fix(state);
    enum { N = 4096 };
    size_t len = 0;
    char *csv = s_blobs_csv(N, &len);
    assert_non_null(csv);
    char err[SP_TEXT_MAX] = "";
    const uint8_t *parts[1] = {(const uint8_t *)csv};
    size_t sizes[1] = {len};
    int up = sp_cluster_upload(&f->cl, "blobs4k", "csv", "classify", parts, sizes, 1, 1000, err,
                               sizeof err);
    free(csv);
    if (up != 0) {
        fail_msg("upload failed: %s", err);
    }
    s_start_workers(f, 2, NULL);
    sp_msg_train_t t;
    s_job_def(&t, "blobs4k", 2, 512, 128);
    t.min_node = 0; /* the coordinator's own choice */
    sp_job_status_t st;
    s_run_job(f, &t, &st);
    assert_int_equal(st.samples_seen, 2 * N);
    sp_worker_info_t w0, w1;
    assert_int_equal(s_find_worker(f, "w0", &w0), 0);
    assert_int_equal(s_find_worker(f, "w1", &w1), 0);
    const sp_worker_info_t *busy = w0.partitions_done >= w1.partitions_done ? &w0 : &w1;
    const sp_worker_info_t *idle = busy == &w0 ? &w1 : &w0;
    /* the idle one computed in the split steps, so it held the model */
    assert_true(idle->partitions_done > 0);
    assert_true(busy->partitions_done > idle->partitions_done);
    /* both got the dataset and one model; the busy one 16 tasks of ~2 KB */
    assert_true(idle->bytes_out > 0);
    if (idle->bytes_out >= busy->bytes_out) {
        fail_msg("the idle worker was sent %llu bytes, the busy one %llu",
                 (unsigned long long)idle->bytes_out, (unsigned long long)busy->bytes_out);
    }
    s_stop_workers(f);
}

static void test_cluster_same_model_for_1_2_3_workers(void **state)
{
    s_fix_t *f = s_fix(state);
    s_reference(f);
    static const int threads[3] = {1, 2, 1};
    for (int n = 2; n <= 3; n++) {
        s_start_workers(f, n, threads);
        sp_msg_train_t t;
        s_long_job(&t);
        sp_job_status_t st;
        uint64_t job = s_run_job(f, &t, &st);
        uint8_t *m = NULL;
        size_t len = 0;
        s_fetch(f, job, &m, &len);
        s_assert_same_model(f, m, len);
        free(m);
        s_stop_workers(f);
    }
}

/* Sum into grad of partitions [lo, hi) of a batch of n samples (rows X,
 * targets T) cut into partitions of P: a leaf is one sp_network_gradient
 * onto a zeroed buffer, a node adds its right child's sum to its left
 * child's (the reduction tree of common/reduce.h). Hits add up in hits. */
static void s_tree_gradient(sp_network_t *net, const float *X, const float *T, uint32_t n,
                            uint32_t P, uint32_t lo, uint32_t hi, float *grad, uint32_t *hits)
{
    size_t n_params = sp_network_n_params(net);
    if (hi - lo == 1) {
        size_t off = (size_t)lo * P, len = n - off < P ? n - off : P;
        memset(grad, 0, n_params * sizeof *grad);
        sp_batch_result_t res;
        assert_int_equal(sp_network_gradient(net, X + off * sp_network_n_inputs(net),
                                             T + off * sp_network_n_outputs(net), len, grad, hits,
                                             &res),
                         SP_OK);
        return;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    float *right = malloc(n_params * sizeof *right);
    assert_non_null(right);
    s_tree_gradient(net, X, T, n, P, lo, mid, grad, hits);
    s_tree_gradient(net, X, T, n, P, mid, hi, right, hits);
    sp_reduce_add_f32(grad, right, n_params);
    free(right);
}

/* The model of job t trained in this process as the coordinator defines a
 * job: the network of its settings; each epoch's samples in the order of a
 * permutation drawn from the random stream (seed, epoch); a step per batch,
 * whose gradient is the tree sum of its partitions, applied with
 * sp_network_apply_gradient. No growth or pruning, inputs already in [0, 1]
 * (the coordinator then sets no input transform). */
static void s_inprocess_model(const sp_msg_train_t *t, const sp_dataset_t *d, uint8_t **buf,
                              size_t *len)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.bits = (uint8_t)t->bits;
    cfg.loss = SP_LOSS_XENT;
    cfg.lr = (float)t->lr;
    cfg.momentum = (float)t->momentum;
    cfg.seed = t->seed;
    sp_network_t *net = sp_network_new(t->layers, t->n_layers, &cfg);
    assert_non_null(net);
    uint32_t N = d->n_samples, B = t->batch;
    size_t n_params = sp_network_n_params(net), n_hits = sp_network_n_hits(net);
    float *X = malloc((size_t)B * d->n_features * sizeof *X);
    float *T = malloc((size_t)B * d->n_targets * sizeof *T);
    float *grad = malloc(n_params * sizeof *grad);
    uint32_t *hits = malloc(n_hits * sizeof *hits), *perm = malloc(N * sizeof *perm);
    assert_true(X && T && grad && hits && perm);
    for (uint32_t epoch = 0; epoch < t->epochs; epoch++) {
        for (uint32_t i = 0; i < N; i++) {
            perm[i] = i;
        }
        sp_rng_t rng;
        sp_rng_init_stream(&rng, t->seed, epoch);
        sp_rng_shuffle_u32(&rng, perm, N);
        for (uint32_t off = 0; off < N; off += B) {
            uint32_t n = N - off < B ? N - off : B;
            sp_dataset_gather(d, perm + off, n, X);
            sp_dataset_targets(d, perm + off, n, T);
            memset(hits, 0, n_hits * sizeof *hits);
            s_tree_gradient(net, X, T, n, t->partition, 0, (n + t->partition - 1) / t->partition,
                            grad, hits);
            assert_int_equal(sp_network_apply_gradient(net, grad, n, hits), SP_OK);
        }
    }
    assert_int_equal(sp_network_save_buffer(net, 0, buf, len), SP_OK);
    sp_network_destroy(&net);
    free(X);
    free(T);
    free(grad);
    free(hits);
    free(perm);
}

/* The long job's model, computed by the coordinator and one worker (whole
 * steps applied by the worker, sent ahead, synced back at epoch ends and
 * checkpoints), is byte for byte the model of the same training in this
 * process: the distributed machinery adds nothing and loses no step. */
static void test_cluster_model_is_the_inprocess_training(void **state)
{
    s_fix_t *f = s_fix(state);
    s_reference(f);
    size_t csv_len = 0;
    char *csv = s_blobs_csv(S_SAMPLES, &csv_len);
    assert_non_null(csv);
    sp_dataset_t d;
    char err[SP_TEXT_MAX] = "";
    assert_int_equal(sp_dataset_parse_csv(csv, csv_len, NULL, &d, err, sizeof err), SP_OK);
    free(csv);
    sp_msg_train_t t;
    s_long_job(&t);
    uint8_t *m = NULL;
    size_t len = 0;
    s_inprocess_model(&t, &d, &m, &len);
    sp_dataset_fini(&d);
    s_assert_same_model(f, m, len);
    free(m);
}

/* A job whose steps diverge (lr 100) while two workers split every step
 * ends failed and says so, instead of hanging or training on: the workers
 * refuse the APPLY, and the coordinator's master, taking the same step,
 * finds the same. The diverged master is not kept as the job's model. */
static void test_cluster_diverging_split_job_fails_with_reason(void **state)
{
    s_fix_t *f = s_fix(state);
    s_start_workers(f, 2, NULL);
    sp_msg_train_t t;
    s_job_def(&t, "blobs", 3, S_LONG_BATCH, S_LONG_PARTITION);
    t.lr = 100;
    char err[SP_TEXT_MAX] = "";
    uint64_t job = 0;
    assert_int_equal(sp_cluster_train(&f->cl, &t, &job, err, sizeof err), 0);
    sp_job_status_t st;
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, 0, S_JOB_TIMEOUT_MS, &st), 0);
    if (strcmp(st.state, "failed") != 0 || strstr(st.error, "diverged") == NULL) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("job %llu: %s (%s)", (unsigned long long)job, st.state, st.error);
    }
    uint8_t *m = NULL;
    size_t len = 0;
    assert_int_not_equal(sp_cluster_model(&f->cl, job, &m, &len), 0);
    free(m);
    s_stop_workers(f);
}

static void test_cluster_growth_and_pruning_same_model(void **state)
{
    s_fix_t *f = s_fix(state);
    sp_msg_train_t t;
    s_job_def(&t, "blobs", 1, 32, 8);
    t.growth_every = 4;
    t.growth_threshold = 0.05;
    t.prune_every = 6;
    t.prune_threshold = 0.01;
    uint8_t *model[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    uint32_t changed = 0;
    for (int run = 0; run < 2; run++) {
        s_start_workers(f, run + 1, NULL);
        sp_job_status_t st;
        uint64_t job = s_run_job(f, &t, &st);
        s_fetch(f, job, &model[run], &len[run]);
        sp_msg_t req, rep;
        sp_msg_init(&req, SP_MSG_METRICS);
        req.u.job_req.job = job;
        assert_int_equal(sp_cluster_call(&f->cl, &req, &rep, 5000), 0);
        assert_int_equal(rep.type, SP_MSG_R_METRICS);
        for (uint32_t i = 0; i < rep.u.r_metrics.n; i++) {
            changed += rep.u.r_metrics.records[i].neurons[0] != 16;
        }
        sp_msg_fini(&rep);
        s_stop_workers(f);
    }
    /* The topology changed during the job, identically with 1 and 2 workers. */
    assert_true(changed > 0);
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(model[0], model[1], len[0]);
    free(model[0]);
    free(model[1]);
}

/* The reference model (one worker), then n workers and the long job
 * started on them; returns the job id. */
static uint64_t s_start_long_job(s_fix_t *f, int n_workers)
{
    s_reference(f);
    s_start_workers(f, n_workers, NULL);
    sp_msg_train_t t;
    s_long_job(&t);
    char err[SP_TEXT_MAX] = "";
    uint64_t job = 0;
    if (sp_cluster_train(&f->cl, &t, &job, err, sizeof err) != 0) {
        fail_msg("train refused: %s", err);
    }
    return job;
}

/* Waits for the job to end; it must be done, with the reference model. */
static void s_expect_reference_model(s_fix_t *f, uint64_t job)
{
    sp_job_status_t st;
    memset(&st, 0, sizeof st);
    if (sp_cluster_wait_job(&f->cl, job, 0, S_JOB_TIMEOUT_MS, &st) != 0 ||
        strcmp(st.state, "done") != 0) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("job %llu did not finish: %s", (unsigned long long)job, st.state);
    }
    uint8_t *m = NULL;
    size_t len = 0;
    s_fetch(f, job, &m, &len);
    s_assert_same_model(f, m, len);
    free(m);
}

static void test_cluster_worker_killed_mid_job(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 2);
    sp_job_status_t st;
    /* mid-job: an eighth of the samples seen, the job still running */
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, s_long_samples() / 8, S_JOB_TIMEOUT_MS, &st),
                     0);
    sp_cluster_stop_worker(&f->cl, 1, SIGKILL);
    s_expect_reference_model(f, job);
    /* The coordinator noticed the death through the missing heartbeats. */
    assert_int_equal(sp_cluster_wait_workers(&f->cl, 1, 10000), 0);
    s_stop_workers(f);
}

/* Times the current coordinator's log holds `text`. */
static int s_log_count(const s_fix_t *f, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/coordinator-%d.log", f->cl.dir, f->cl.coord_starts - 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (sp_cu_read_file(path, &buf, &len) != 0) {
        return 0;
    }
    uint8_t *z = realloc(buf, len + 1);
    if (z == NULL) {
        free(buf);
        return 0;
    }
    z[len] = 0;
    int n = 0;
    for (const char *at = (char *)z; (at = strstr(at, text)) != NULL; at += strlen(text)) {
        n++;
    }
    free(z);
    return n;
}

/* How often the coordinator went back to a checkpoint because the worker
 * holding steps it had not copied was lost. */
static int s_rollbacks(const s_fix_t *f)
{
    return s_log_count(f, "resuming from the last checkpoint");
}

/* Whole steps are applied by their worker alone, which sends no gradient: the
 * coordinator's copy catches up only at syncs (epoch ends, checkpoints). The
 * worker doing the steps is killed with SIGKILL, so the steps since the last
 * sync exist nowhere else: the run goes back to its checkpoint, replays them
 * on the other worker, and ends with the reference model. The kill may land
 * just after a sync (nothing lost); it is repeated on the new busy worker
 * until the coordinator has rolled back once. */
static void test_cluster_busy_worker_killed_rolls_back(void **state)
{
    s_fix_t *f = s_fix(state);
    s_reference(f);
    s_start_workers(f, 2, NULL);
    sp_msg_train_t t;
    s_long_job(&t);
    t.min_node = 1u << 20; /* every step whole, on one worker */
    char err[SP_TEXT_MAX] = "";
    uint64_t job = 0;
    if (sp_cluster_train(&f->cl, &t, &job, err, sizeof err) != 0) {
        fail_msg("train refused: %s", err);
    }
    sp_job_status_t st;
    int before = s_rollbacks(f);
    for (int k = 1; k <= 4 && s_rollbacks(f) == before; k++) {
        assert_int_equal(
            sp_cluster_wait_job(&f->cl, job, s_long_samples() * k / 10, S_JOB_TIMEOUT_MS, &st), 0);
        assert_string_equal(st.state, "running");
        sp_worker_info_t w0, w1;
        assert_int_equal(s_find_worker(f, "w0", &w0), 0);
        assert_int_equal(s_find_worker(f, "w1", &w1), 0);
        int busy = w0.partitions_done >= w1.partitions_done ? 0 : 1;
        sp_cluster_stop_worker(&f->cl, busy, SIGKILL);
        /* no step is done until the death is noticed: the job cannot end */
        assert_int_equal(sp_cluster_wait_workers(&f->cl, 1, 10000), 0);
        assert_int_equal(sp_cluster_add_worker(&f->cl, 1), busy);
        assert_int_equal(sp_cluster_wait_workers(&f->cl, 2, 10000), 0);
    }
    assert_true(s_rollbacks(f) > before);
    s_expect_reference_model(f, job);
    s_stop_workers(f);
}

/* A job of `epochs` heavy steps (one an epoch, 16 partitions of 25 samples, 2048
 * hidden neurons: milliseconds per node) with n_workers workers, the last
 * of which is stopped for stop_ms out of every stop_ms + run_ms while it
 * runs, like a worker on a slower or loaded machine. The model must be the
 * one a single worker makes; info[i] is what the coordinator says of
 * worker i afterwards. */
static void s_paused_worker_job(s_fix_t *f, uint32_t epochs, int n_workers, int stop_ms,
                                int run_ms, sp_worker_info_t *info)
{
    sp_msg_train_t t;
    s_job_def(&t, "blobs", epochs, S_SAMPLES, S_SAMPLES / 16);
    t.layers[1] = 2048; /* several pauses in the compute of a node: the slow one shows */
    s_start_workers(f, 1, NULL);
    sp_job_status_t st;
    uint64_t job = s_run_job(f, &t, &st);
    uint8_t *ref = NULL, *m = NULL;
    size_t ref_len = 0, len = 0;
    s_fetch(f, job, &ref, &ref_len);
    s_stop_workers(f);
    s_start_workers(f, n_workers, NULL); /* w0, w1, ... */
    char err[SP_TEXT_MAX] = "";
    if (sp_cluster_train(&f->cl, &t, &job, err, sizeof err) != 0) {
        fail_msg("train refused: %s", err);
    }
    pid_t slow = f->cl.workers[n_workers - 1];
    uint64_t end = sp_cu_now_ms() + S_JOB_TIMEOUT_MS;
    int done = 0;
    while (!done && sp_cu_now_ms() < end) {
        for (int i = 0; i < 8; i++) {
            kill(slow, SIGSTOP);
            sp_cu_nap(stop_ms);
            kill(slow, SIGCONT);
            sp_cu_nap(run_ms);
        }
        done = sp_cluster_status(&f->cl, job, &st) == 0 && strcmp(st.state, "running") != 0 &&
               strcmp(st.state, "queued") != 0;
    }
    kill(slow, SIGCONT);
    assert_string_equal(st.state, "done");
    s_fetch(f, job, &m, &len);
    assert_int_equal(len, ref_len);
    assert_memory_equal(m, ref, len);
    free(m);
    free(ref);
    for (int i = 0; i < n_workers; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        assert_int_equal(s_find_worker(f, name, &info[i]), 0);
    }
    s_stop_workers(f);
}

/* A worker at half speed gets a smaller share of every split step, cut
 * along the reduction tree, and the model keeps its bits. With an even cut
 * both workers would compute the same partitions (240 each). */
static void test_cluster_slow_worker_gets_smaller_share(void **state)
{
    s_fix_t *f = s_fix(state);
    sp_worker_info_t w[2];
    s_paused_worker_job(f, 30, 2, 3, 3, w);
    print_message("paused worker: %llu partitions, the other %llu\n",
                  (unsigned long long)w[1].partitions_done, (unsigned long long)w[0].partitions_done);
    if (w[0].partitions_done <= w[1].partitions_done) {
        fail_msg("the paused worker computed %llu partitions, the other %llu",
                 (unsigned long long)w[1].partitions_done,
                 (unsigned long long)w[0].partitions_done);
    }
}

/* Of three workers, one at a twentieth of the others' speed is left out of
 * the steps once its speed is known: giving it even one partition of 16
 * would make every step wait for it. It computes its nodes of the first
 * steps (those cut before any result), then little or nothing; kept in, it
 * would compute at least one partition in each of the 60 steps. */
static void test_cluster_much_slower_worker_left_out(void **state)
{
    s_fix_t *f = s_fix(state);
    sp_worker_info_t w[3];
    s_paused_worker_job(f, 60, 3, 19, 1, w);
    print_message("paused worker: %llu partitions, the others %llu and %llu\n",
                  (unsigned long long)w[2].partitions_done, (unsigned long long)w[0].partitions_done,
                  (unsigned long long)w[1].partitions_done);
    if (w[2].partitions_done >= 40) {
        fail_msg("the paused worker computed %llu partitions (the others %llu and %llu)",
                 (unsigned long long)w[2].partitions_done, (unsigned long long)w[0].partitions_done,
                 (unsigned long long)w[1].partitions_done);
    }
}

/* A fake worker that says hello (to a coordinator whose HELLO answer and
 * first tasks it reads itself), with a receive timeout of 100 ms. */
static void *s_fake_worker(s_fix_t *f)
{
    void *fake = zmq_socket(f->cl.zctx, ZMQ_DEALER);
    assert_non_null(fake);
    int linger = 0, rcv_ms = 100;
    zmq_setsockopt(fake, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fake, ZMQ_RCVTIMEO, &rcv_ms, sizeof rcv_ms);
    assert_int_equal(zmq_connect(fake, f->cl.wep), 0);
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_HELLO);
    snprintf(m.u.hello.name, sizeof m.u.hello.name, "fake");
    m.u.hello.threads = 1;
    assert_int_equal(sp_msg_send(fake, NULL, 0, &m), SP_OK);
    return fake;
}

/* A heartbeat from the fake when S_HEARTBEAT_MS have passed since *beat. */
static void s_fake_beat(void *fake, uint64_t *beat)
{
    if (sp_cu_now_ms() - *beat >= S_HEARTBEAT_MS) {
        sp_msg_t hb;
        sp_msg_init(&hb, SP_MSG_HEARTBEAT);
        (void)sp_msg_send(fake, NULL, 0, &hb);
        *beat = sp_cu_now_ms();
    }
}

/* The fake's result for whole-step task tk: a loss of 1, no gradient (it
 * "applied" the step), compute_us as given. */
static void s_fake_result(void *fake, const sp_msg_task_t *tk, uint64_t compute_us)
{
    sp_msg_t res;
    sp_msg_init(&res, SP_MSG_RESULT);
    res.u.result.job = tk->job;
    res.u.result.version = tk->version;
    res.u.result.step = tk->step;
    res.u.result.n_partitions = tk->n_partitions;
    res.u.result.n_samples = tk->n_indices;
    res.u.result.loss_sum = 1.0;
    res.u.result.compute_us = compute_us;
    assert_int_equal(sp_msg_send(fake, NULL, 0, &res), SP_OK);
}

/* A worker that computes whole steps sends its model back when asked
 * (sync); one whose model cannot be taken (here: bytes that are no model
 * file) is refused, the steps only it held are lost, and the run goes back
 * to its last checkpoint. A fake worker answers every whole step with a
 * result and the first sync with garbage; a real worker then finishes the
 * job with the reference model, as if the fake's steps never happened. */
static void test_cluster_bad_synced_model_rolls_back(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 0);
    char err[SP_TEXT_MAX] = "";
    int rollbacks = s_rollbacks(f), refusals = s_log_count(f, "refused: ");
    void *fake = s_fake_worker(f);
    sp_msg_t m;
    uint64_t end = sp_cu_now_ms() + 10000, beat = 0;
    int steps = 0, synced = 0;
    while (!synced && sp_cu_now_ms() < end) {
        s_fake_beat(fake, &beat);
        if (sp_msg_recv(fake, 0, NULL, NULL, &m, err, sizeof err) != SP_OK) {
            continue;
        }
        const sp_msg_task_t *tk = &m.u.task;
        if (m.type == SP_MSG_TASK && tk->partition == 0 && tk->n_indices == tk->batch) {
            s_fake_result(fake, tk, 0);
            steps++;
            if (tk->sync) {
                uint8_t junk[64] = "this is not a model file";
                sp_msg_t mm;
                sp_msg_init(&mm, SP_MSG_MODEL);
                mm.u.model.job = tk->job;
                mm.u.model.version = tk->version + 1;
                mm.u.model.model.data = junk;
                mm.u.model.model.len = sizeof junk;
                assert_int_equal(sp_msg_send(fake, NULL, 0, &mm), SP_OK);
                synced = 1;
            }
        }
        sp_msg_fini(&m);
    }
    /* The fake stays alive (its heartbeats go on): the refusal alone must
     * send the run back, not the fake's death. */
    uint64_t until = sp_cu_now_ms() + 5000;
    while (synced && s_rollbacks(f) == rollbacks && sp_cu_now_ms() < until) {
        sp_msg_t hb;
        sp_msg_init(&hb, SP_MSG_HEARTBEAT);
        (void)sp_msg_send(fake, NULL, 0, &hb);
        if (sp_msg_recv(fake, 0, NULL, NULL, &m, err, sizeof err) == SP_OK) {
            sp_msg_fini(&m); /* the model and task again, after the rollback: ignored */
        }
    }
    int rolled_back = s_rollbacks(f) == rollbacks + 1;
    zmq_close(fake); /* gone without a word: declared dead after its liveness */
    if (!synced) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("the fake worker got no task with sync in 10 s (%d whole steps)", steps);
    }
    assert_true(steps >= 1);
    assert_true(rolled_back);
    assert_int_equal(s_log_count(f, "refused: "), refusals + 1);
    s_start_workers(f, 1, NULL);
    s_expect_reference_model(f, job);
    s_stop_workers(f);
}

/* A lone worker is sent the steps after the next one too, a lone run of
 * SP_COORD_RUN_AHEAD_US (10 ms) of the compute it reports, so it can send
 * its results in bursts. A fake worker answers only the first task of the
 * long job (batch 32, 13 steps an epoch), saying it took 100 us a sample:
 * 3.2 ms a step, so four steps past the current one. It must get the whole
 * steps 0 to 5 and no more: consecutive versions, no sync, no sample twice.
 * Then it goes silent; the run goes back to its checkpoint and a real
 * worker ends the job with the reference model. */
static void test_cluster_lone_worker_gets_a_run(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 0);
    void *fake = s_fake_worker(f);
    char err[SP_TEXT_MAX] = "";
    enum { MAX_TASKS = 16 };
    uint64_t step[MAX_TASKS], version[MAX_TASKS];
    uint8_t seen[S_SAMPLES] = {0};
    int n = 0, answered = 0, whole = 1, synced = 0, twice = 0;
    uint64_t end = sp_cu_now_ms() + 10000, beat = 0, last_task = 0;
    /* until 1 s passes without a task after the first answer */
    while (sp_cu_now_ms() < end && (!answered || sp_cu_now_ms() - last_task < 1000)) {
        s_fake_beat(fake, &beat);
        sp_msg_t m;
        if (sp_msg_recv(fake, 0, NULL, NULL, &m, err, sizeof err) != SP_OK) {
            continue;
        }
        const sp_msg_task_t *tk = &m.u.task;
        if (m.type == SP_MSG_TASK && n < MAX_TASKS) {
            last_task = sp_cu_now_ms();
            step[n] = tk->step;
            version[n++] = tk->version;
            whole &= tk->partition == 0 && tk->n_indices == tk->batch;
            synced |= tk->sync;
            for (uint32_t i = 0; i < tk->n_indices; i++) {
                twice |= tk->indices[i] >= S_SAMPLES || seen[tk->indices[i]]++;
            }
            if (!answered) {
                s_fake_result(fake, tk, 100u * tk->n_indices);
                answered = 1;
            }
        }
        sp_msg_fini(&m);
    }
    zmq_close(fake); /* gone without a word: declared dead after its liveness */
    if (n != 6) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("the fake worker got %d tasks, not steps 0 to 5", n);
    }
    for (int k = 0; k < n; k++) {
        assert_int_equal(step[k], k);
        assert_int_equal(version[k], version[0] + (uint64_t)k);
    }
    assert_true(whole);
    assert_false(synced);
    assert_false(twice);
    s_start_workers(f, 1, NULL);
    s_expect_reference_model(f, job);
    s_stop_workers(f);
}

/* A lone worker computes whole steps and applies them itself. Paused past
 * its liveness, it is declared dead, possibly after it applied a step that
 * the coordinator then never counts; when it resumes and registers again it
 * must take the coordinator's older model instead of waiting for ever for a
 * version it is already past. Three pauses at different points; the job
 * ends with the reference model. */
static void test_cluster_lone_worker_paused_resyncs(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 1);
    sp_job_status_t st;
    for (int k = 1; k <= 3; k++) {
        assert_int_equal(
            sp_cluster_wait_job(&f->cl, job, s_long_samples() * k / 8, S_JOB_TIMEOUT_MS, &st), 0);
        assert_string_equal(st.state, "running");
        kill(f->cl.workers[0], SIGSTOP);
        sp_cu_nap((S_LIVENESS + 3) * S_HEARTBEAT_MS);
        kill(f->cl.workers[0], SIGCONT);
    }
    s_expect_reference_model(f, job);
    s_stop_workers(f);
}

static void test_cluster_worker_joins_mid_job(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 1);
    sp_job_status_t st;
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, s_long_samples() / 10, S_JOB_TIMEOUT_MS, &st),
                     0);
    /* Hold the first worker so that the job cannot end before the second
     * one has joined; it may be declared dead meanwhile, which is fine:
     * its late results are dropped. */
    kill(f->cl.workers[0], SIGSTOP);
    int slot = sp_cluster_add_worker(&f->cl, 1);
    assert_int_equal(slot, 1);
    sp_worker_info_t w1;
    uint64_t end = sp_cu_now_ms() + 20000;
    while (s_find_worker(f, "w1", &w1) != 0 && sp_cu_now_ms() < end) {
        sp_cu_nap(5);
    }
    kill(f->cl.workers[0], SIGCONT);
    assert_int_equal(sp_cluster_status(&f->cl, job, &st), 0);
    assert_string_equal(st.state, "running");
    s_expect_reference_model(f, job);
    assert_int_equal(s_find_worker(f, "w1", &w1), 0);
    assert_true(w1.partitions_done > 0);
    s_stop_workers(f);
}

static int s_find_dataset(s_fix_t *f, const char *name, sp_dataset_info_t *out)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_DATASETS);
    if (sp_cluster_call(&f->cl, &req, &rep, 5000) != 0) {
        return -1;
    }
    int rc = -1;
    if (rep.type == SP_MSG_R_DATASETS) {
        for (uint32_t i = 0; i < rep.u.r_datasets.n; i++) {
            if (strcmp(rep.u.r_datasets.datasets[i].name, name) == 0) {
                *out = rep.u.r_datasets.datasets[i];
                rc = 0;
            }
        }
    }
    sp_msg_fini(&rep);
    return rc;
}

static void test_cluster_coordinator_killed_resumes_same_model(void **state)
{
    s_fix_t *f = s_fix(state);
    s_reference(f);
    sp_dataset_info_t before, after;
    assert_int_equal(s_find_dataset(f, "blobs", &before), 0);
    int n_before = sp_cluster_n_datasets(&f->cl);
    s_start_workers(f, 2, NULL);
    sp_msg_train_t t;
    s_long_job(&t);
    char err[SP_TEXT_MAX];
    uint64_t job = 0;
    assert_int_equal(sp_cluster_train(&f->cl, &t, &job, err, sizeof err), 0);
    sp_job_status_t st;
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, s_long_samples() / 4, S_JOB_TIMEOUT_MS, &st),
                     0);
    sp_cu_kill9(f->cl.coord);
    f->cl.coord = 0;
    assert_int_equal(sp_cluster_start_coord(&f->cl), 0);
    /* Datasets all there, unchanged. */
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n_before);
    assert_int_equal(s_find_dataset(f, "blobs", &after), 0);
    assert_int_equal(after.checksum, before.checksum);
    assert_int_equal(after.samples, before.samples);
    /* The workers find the new coordinator by themselves; the job resumes. */
    if (sp_cluster_wait_job(&f->cl, job, 0, S_JOB_TIMEOUT_MS, &st) != 0 ||
        strcmp(st.state, "done") != 0) {
        sp_cluster_dump_logs(&f->cl);
        fail_msg("job did not finish after the restart: %s", st.state);
    }
    uint8_t *m = NULL;
    size_t len = 0;
    s_fetch(f, job, &m, &len);
    s_assert_same_model(f, m, len);
    free(m);
    s_stop_workers(f);
}

/* The long job on two workers, stopped a third of the way through with
 * SIGTERM: the coordinator checkpoints, says bye to the workers and exits
 * 0. Returns the job; its checkpoint file's path goes to path. */
static uint64_t s_job_stopped_by_sigterm(s_fix_t *f, char *path, size_t cap)
{
    uint64_t job = s_start_long_job(f, 2);
    sp_job_status_t st;
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, s_long_samples() / 3, S_JOB_TIMEOUT_MS, &st),
                     0);
    kill(f->cl.coord, SIGTERM);
    int status = -1;
    assert_int_equal(sp_child_wait(f->cl.coord, 20000, &status), 0);
    f->cl.coord = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(path, cap, "%s/jobs/%llu/checkpoint.bin", f->cl.state, (unsigned long long)job);
    return job;
}

static void test_cluster_coordinator_sigterm_checkpoints_and_resumes(void **state)
{
    s_fix_t *f = s_fix(state);
    char path[400];
    uint64_t job = s_job_stopped_by_sigterm(f, path, sizeof path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sp_cluster_start_coord(&f->cl), 0);
    sp_job_status_t st;
    /* It resumes where it stopped, not from the beginning. */
    assert_int_equal(sp_cluster_status(&f->cl, job, &st), 0);
    assert_true(st.samples_seen >= s_long_samples() / 3);
    s_expect_reference_model(f, job);
    s_stop_workers(f);
}

/* A checkpoint changed on disk while the coordinator was down (one byte in
 * its model) is refused with the reason in the log, and the job starts over
 * from its first step: it still ends with the reference model. */
static void test_cluster_corrupt_checkpoint_starts_over(void **state)
{
    s_fix_t *f = s_fix(state);
    char path[400];
    uint64_t job = s_job_stopped_by_sigterm(f, path, sizeof path);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sp_cu_read_file(path, &buf, &len), 0);
    assert_true(len > 1000);
    buf[len / 2] ^= 0x01;
    assert_int_equal(sp_cu_write_file(path, buf, len), 0);
    free(buf);
    assert_int_equal(sp_cluster_start_coord(&f->cl), 0);
    s_expect_reference_model(f, job);
    assert_int_equal(s_log_count(f, "checkpoint: CRC-32 mismatch; starting from the beginning"), 1);
    s_stop_workers(f);
}

static void test_cluster_client_without_coordinator_exits_3(void **state)
{
    s_fix_t *f = *state;
    char client[512], ep[300];
    assert_int_equal(sp_cu_bin("spatium", client, sizeof client), 0);
    snprintf(ep, sizeof ep, "ipc://%s/nobody-here", f->cl.dir);
    char *argv[] = {client, "--coordinator", ep, "--timeout-ms", "300", "datasets", NULL};
    char out[1024];
    assert_int_equal(sp_cu_run(argv, 20000, out, sizeof out), 3);
    char *argv2[] = {client, "--coordinator", ep, "--timeout-ms", "300", "--json", "status", NULL};
    assert_int_equal(sp_cu_run(argv2, 20000, out, sizeof out), 3);
}

/* Uploads a bad dataset and checks it was refused with a message naming
 * `want` and that nothing was stored. */
static void s_refused(s_fix_t *f, const char *name, const char *format, const uint8_t *const *parts,
                      const size_t *sizes, int n_parts, const char *want)
{
    int n0 = sp_cluster_n_datasets(&f->cl);
    char err[SP_TEXT_MAX] = "";
    int rc = sp_cluster_upload(&f->cl, name, format, "classify", parts, sizes, n_parts, 7, err,
                               sizeof err);
    if (rc == 0 || strstr(err, want) == NULL) {
        fail_msg("dataset %s: rc %d, error '%s' (wanted '%s')", name, rc, err, want);
    }
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n0);
    char path[400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/datasets/%s.spds", f->cl.state, name);
    assert_int_not_equal(stat(path, &sb), 0);
}

static void s_refused_csv(s_fix_t *f, const char *name, const char *text, const char *want)
{
    const uint8_t *parts[1] = {(const uint8_t *)text};
    size_t sizes[1] = {strlen(text)};
    s_refused(f, name, "csv", parts, sizes, 1, want);
}

static size_t s_idx_header(uint8_t *p, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols)
{
    uint32_t v[4] = {magic, n, rows, cols};
    int dims = magic == 0x803 ? 3 : 1;
    for (int i = 0; i < 1 + dims; i++) {
        p[4 * i] = (uint8_t)(v[i] >> 24);
        p[4 * i + 1] = (uint8_t)(v[i] >> 16);
        p[4 * i + 2] = (uint8_t)(v[i] >> 8);
        p[4 * i + 3] = (uint8_t)v[i];
    }
    return 4u * (1u + (unsigned)dims);
}

static void s_upload_end(s_fix_t *f, uint64_t upload, sp_msg_t *rep)
{
    sp_msg_t req;
    sp_msg_init(&req, SP_MSG_UPLOAD_END);
    req.u.upload_end.upload = upload;
    assert_int_equal(sp_cluster_call(&f->cl, &req, rep, 5000), 0);
}

/* Asks upload_end until it is no longer "still checking"; the answer in
 * rep. While it asks, the coordinator must answer another request (the
 * list of datasets) at once each time; *polls counts the "still checking"
 * answers. */
static void s_until_checked(s_fix_t *f, uint64_t upload, sp_msg_t *rep, int *polls)
{
    uint64_t end = sp_cu_now_ms() + 60000;
    for (*polls = 0;; (*polls)++) {
        s_upload_end(f, upload, rep);
        if (rep->type != SP_MSG_R_UPLOAD || rep->u.r_upload.stored) {
            return;
        }
        sp_msg_fini(rep);
        uint64_t t0 = sp_cu_now_ms();
        assert_true(sp_cluster_n_datasets(&f->cl) >= 0);
        assert_true(sp_cu_now_ms() - t0 < 1000); /* not queued behind a parse */
        assert_true(sp_cu_now_ms() < end);
        sp_cu_nap(50);
    }
}

static void test_cluster_bad_datasets_refused(void **state)
{
    s_fix_t *f = s_fix(state);
    s_refused_csv(f, "ragged", "a,b,label\n0.1,0.2,0\n0.3,1\n", "line 3: ragged");
    s_refused_csv(f, "text", "0.1,0.2,0\n0.3,abc,1\n", "line 2");
    s_refused_csv(f, "nan", "0.1,0.2,0\n0.3,nan,1\n0.5,0.5,1\n", "NaN");
    uint8_t images[64], labels[32];
    memset(images, 0x10, sizeof images);
    memset(labels, 0, sizeof labels);
    /* 10 images of 4x4 announced, 16 bytes of pixels present */
    size_t hi = s_idx_header(images, 0x803, 10, 4, 4);
    size_t hl = s_idx_header(labels, 0x801, 10, 0, 0);
    const uint8_t *parts[2] = {images, labels};
    size_t sizes[2] = {hi + 16, hl + 10};
    s_refused(f, "truncated", "idx", parts, sizes, 2, "truncated");
    /* 2 complete images but 3 labels */
    hi = s_idx_header(images, 0x803, 2, 4, 4);
    hl = s_idx_header(labels, 0x801, 3, 0, 0);
    sizes[0] = hi + 32;
    sizes[1] = hl + 3;
    s_refused(f, "mismatch", "idx", parts, sizes, 2, "labels hold 3");

    /* A broken stream: a wrong CRC-32, and a chunk at the wrong offset. */
    int n0 = sp_cluster_n_datasets(&f->cl);
    static const char good[] = "0.1,0.2,0\n0.3,0.4,1\n";
    for (int k = 0; k < 2; k++) {
        sp_msg_t req, rep;
        sp_msg_init(&req, SP_MSG_UPLOAD_BEGIN);
        sp_msg_upload_begin_t *b = &req.u.upload_begin;
        snprintf(b->name, sizeof b->name, "stream%d", k);
        snprintf(b->format, sizeof b->format, "csv");
        snprintf(b->task, sizeof b->task, "classify");
        b->label_column = -1;
        b->header = -1;
        b->n_parts = 1;
        b->part_size[0] = sizeof good - 1;
        b->part_crc[0] = k == 0 ? 0x12345678u : 0;
        assert_int_equal(sp_cluster_call(&f->cl, &req, &rep, 5000), 0);
        assert_int_equal(rep.type, SP_MSG_R_UPLOAD);
        uint64_t upload = rep.u.r_upload.upload;
        sp_msg_fini(&rep);
        sp_msg_init(&req, SP_MSG_UPLOAD_CHUNK);
        req.u.upload_chunk.upload = upload;
        req.u.upload_chunk.offset = k == 0 ? 0 : 5;
        req.u.upload_chunk.data.data = (uint8_t *)(uintptr_t)good;
        req.u.upload_chunk.data.len = k == 0 ? sizeof good - 1 : 3;
        assert_int_equal(sp_cluster_call(&f->cl, &req, &rep, 5000), 0);
        if (k == 1) {
            assert_int_equal(rep.type, SP_MSG_ERROR);
            assert_non_null(strstr(rep.u.error.message, "offset"));
        } else {
            assert_int_equal(rep.type, SP_MSG_R_UPLOAD);
        }
        sp_msg_fini(&rep);
        /* the CRC is checked with the parse: a first answer may be "still
         * checking" */
        int polls = 0;
        s_until_checked(f, upload, &rep, &polls);
        assert_int_equal(rep.type, SP_MSG_ERROR);
        assert_non_null(strstr(rep.u.error.message, k == 0 ? "CRC" : "no such upload"));
        sp_msg_fini(&rep);
    }
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n0);
}

/* A CSV of rows x S_BIG_FEATURES values in [0, 1] and a label: tens of
 * megabytes, which the coordinator takes seconds to check. With bad_last,
 * the last line's first value is text. */
#define S_BIG_FEATURES 32
static char *s_big_csv(int rows, int bad_last, size_t *len)
{
    size_t cap = (size_t)rows * (S_BIG_FEATURES * 7 + 8) + 64;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = 0;
    sp_rng_t rng;
    sp_rng_init(&rng, 99);
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < S_BIG_FEATURES; k++) {
            n += (size_t)snprintf(s + n, cap - n, "%.4f,", sp_rng_float(&rng));
        }
        n += (size_t)snprintf(s + n, cap - n, "%d\n", r % S_CLASSES);
    }
    if (bad_last) {
        char *last = s + n - 2;
        while (last > s && last[-1] != '\n') {
            last--;
        }
        memcpy(last, "abcdef", 6);
    }
    *len = n;
    return s;
}

/* A dataset of 27 MB is checked on the coordinator's own thread: upload_end
 * answers "still checking" meanwhile, the coordinator keeps answering,
 * heartbeating and training (the job's worker is never dropped, the model
 * is the reference), the name stays taken, and the end is "stored" (asked
 * again: the same) or, for a bad set, the parser's error with nothing
 * stored. */
static void test_cluster_big_upload_checked_while_training(void **state)
{
    s_fix_t *f = s_fix(state);
    uint64_t job = s_start_long_job(f, 1);
    sp_job_status_t st;
    assert_int_equal(sp_cluster_wait_job(&f->cl, job, s_long_samples() / 10, S_JOB_TIMEOUT_MS, &st),
                     0);
    sp_worker_info_t w_before, w_after;
    assert_int_equal(s_find_worker(f, "w0", &w_before), 0);
    int n0 = sp_cluster_n_datasets(&f->cl);
    size_t len = 0;
    char *csv = s_big_csv(120000, 0, &len);
    const uint8_t *parts[1] = {(const uint8_t *)csv};
    size_t sizes[1] = {len};
    char err[SP_TEXT_MAX] = "";
    uint64_t upload = 0;
    assert_int_equal(sp_cluster_upload_send(&f->cl, "big", "csv", "classify", parts, sizes, 1,
                                            SP_CHUNK_MAX, &upload, err, sizeof err),
                     0);
    sp_msg_t rep;
    s_upload_end(f, upload, &rep);
    assert_int_equal(rep.type, SP_MSG_R_UPLOAD);
    assert_false(rep.u.r_upload.stored); /* 27 MB are not parsed in 20 ms */
    sp_msg_fini(&rep);
    /* the name is taken while it is checked */
    uint64_t other = 0;
    static const char tiny[] = "0.1,0.2,0\n";
    const uint8_t *tparts[1] = {(const uint8_t *)tiny};
    size_t tsizes[1] = {sizeof tiny - 1};
    int rc = sp_cluster_upload_send(&f->cl, "big", "csv", "classify", tparts, tsizes, 1, 1000,
                                    &other, err, sizeof err);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "being checked"));

    int polls = 0;
    s_until_checked(f, upload, &rep, &polls);
    if (rep.type != SP_MSG_R_UPLOAD) {
        fail_msg("upload refused: %s", rep.type == SP_MSG_ERROR ? rep.u.error.message : "?");
    }
    assert_true(rep.u.r_upload.stored);
    sp_dataset_info_t info = rep.u.r_upload.info;
    sp_msg_fini(&rep);
    assert_true(polls >= 1);
    assert_int_equal(info.samples, 120000);
    assert_int_equal(info.features, S_BIG_FEATURES);
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n0 + 1);
    /* asked again: the same answer */
    s_upload_end(f, upload, &rep);
    assert_int_equal(rep.type, SP_MSG_R_UPLOAD);
    assert_true(rep.u.r_upload.stored);
    assert_int_equal(rep.u.r_upload.info.checksum, info.checksum);
    sp_msg_fini(&rep);
    /* the worker was never taken for dead, and the job is what it would be */
    assert_int_equal(s_find_worker(f, "w0", &w_after), 0);
    assert_int_equal(w_after.id, w_before.id);
    assert_true(w_after.alive);
    s_expect_reference_model(f, job);

    /* the same size with text on its last line: refused with the line */
    free(csv);
    csv = s_big_csv(120000, 1, &len);
    parts[0] = (const uint8_t *)csv;
    sizes[0] = len;
    assert_int_equal(sp_cluster_upload_send(&f->cl, "bigbad", "csv", "classify", parts, sizes, 1,
                                            SP_CHUNK_MAX, &upload, err, sizeof err),
                     0);
    s_until_checked(f, upload, &rep, &polls);
    assert_int_equal(rep.type, SP_MSG_ERROR);
    assert_non_null(strstr(rep.u.error.message, "line 120000"));
    sp_msg_fini(&rep);
    assert_true(polls >= 1);
    assert_int_equal(sp_cluster_n_datasets(&f->cl), n0 + 1);
    sp_dataset_info_t none;
    assert_int_equal(s_find_dataset(f, "bigbad", &none), -1);
    free(csv);
    s_stop_workers(f);
}

/* Sends raw frames on a fresh DEALER and expects an ERROR back. */
static void s_expect_error(void *ctx, const char *ep, const void *const *frames, const size_t *lens,
                           int n_frames, const char *what)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(d);
    int linger = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(d, ep), 0);
    for (int i = 0; i < n_frames; i++) {
        assert_true(zmq_send(d, frames[i], lens[i], i + 1 < n_frames ? ZMQ_SNDMORE : 0) >= 0);
    }
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    int ok = 0;
    uint64_t end = sp_cu_now_ms() + 5000;
    while (!ok && sp_cu_now_ms() < end) {
        if (zmq_poll(&it, 1, 200) <= 0) {
            continue;
        }
        sp_msg_t m;
        char err[SP_TEXT_MAX];
        if (sp_msg_recv(d, ZMQ_DONTWAIT, NULL, NULL, &m, err, sizeof err) == SP_OK) {
            ok = m.type == SP_MSG_ERROR && m.u.error.message[0] != '\0';
            sp_msg_fini(&m);
            if (!ok) {
                break;
            }
        }
    }
    zmq_close(d);
    if (!ok) {
        fail_msg("no ERROR reply for %s on %s", what, ep);
    }
}

static void test_cluster_malformed_frames_answered(void **state)
{
    s_fix_t *f = s_fix(state);
    void *ctx = f->cl.zctx;
    const char *eps[2] = {f->cl.cep, f->cl.wep};
    int n_types = 0;
    for (uint32_t type = 1; type < 64; type++) {
        if (sp_msg_type_name(type) == NULL) {
            continue;
        }
        n_types++;
        sp_msg_t m;
        assert_int_equal(sp_msg_example(&m, (sp_msg_type_t)type, type), SP_OK);
        uint8_t hdr[SP_MSG_HEADER_BYTES];
        uint8_t *body = NULL;
        size_t body_len = 0;
        assert_int_equal(sp_msg_encode(&m, hdr, &body, &body_len), SP_OK);
        sp_msg_fini(&m);
        for (int e = 0; e < 2; e++) {
            char what[96];
            /* truncated body */
            const void *fr[3] = {hdr, body, body};
            size_t ln[3] = {sizeof hdr, body_len / 2, 1};
            snprintf(what, sizeof what, "truncated %s", sp_msg_type_name(type));
            s_expect_error(ctx, eps[e], fr, ln, 2, what);
            /* wrong protocol version */
            uint8_t bad[SP_MSG_HEADER_BYTES];
            memcpy(bad, hdr, sizeof bad);
            bad[2] = (uint8_t)(SP_PROTO_VERSION + 7);
            fr[0] = bad;
            ln[1] = body_len;
            snprintf(what, sizeof what, "wrong version %s", sp_msg_type_name(type));
            s_expect_error(ctx, eps[e], fr, ln, 2, what);
            /* absurd count: a map claiming 4 billion entries in 5 bytes */
            static const uint8_t absurd[5] = {0xdf, 0xff, 0xff, 0xff, 0xff};
            fr[0] = hdr;
            fr[1] = absurd;
            ln[1] = sizeof absurd;
            snprintf(what, sizeof what, "absurd count %s", sp_msg_type_name(type));
            s_expect_error(ctx, eps[e], fr, ln, 2, what);
            /* wrong frame count: three frames, then one */
            fr[1] = body;
            ln[1] = body_len;
            snprintf(what, sizeof what, "three frames %s", sp_msg_type_name(type));
            s_expect_error(ctx, eps[e], fr, ln, 3, what);
            snprintf(what, sizeof what, "one frame %s", sp_msg_type_name(type));
            s_expect_error(ctx, eps[e], fr, ln, 1, what);
        }
        free(body);
    }
    assert_true(n_types >= 20);
    /* unknown type */
    uint8_t hdr[SP_MSG_HEADER_BYTES] = {'S', 'P', (uint8_t)SP_PROTO_VERSION, 200};
    static const uint8_t empty_map[1] = {0x80};
    const void *fr[2] = {hdr, empty_map};
    size_t ln[2] = {sizeof hdr, sizeof empty_map};
    s_expect_error(ctx, f->cl.cep, fr, ln, 2, "unknown type");
    s_expect_error(ctx, f->cl.wep, fr, ln, 2, "unknown type");
    /* The coordinator still serves. */
    assert_true(sp_cluster_n_datasets(&f->cl) >= 1);
    sp_job_status_t st;
    sp_msg_train_t t;
    s_job_def(&t, "blobs", 1, 32, 8);
    char err[SP_TEXT_MAX];
    uint64_t job = 0;
    assert_int_equal(sp_cluster_train(&f->cl, &t, &job, err, sizeof err), 0);
    assert_int_equal(sp_cluster_status(&f->cl, job, &st), 0);
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_CANCEL);
    req.u.job_req.job = job;
    assert_int_equal(sp_cluster_call(&f->cl, &req, &rep, 5000), 0);
    assert_int_equal(rep.type, SP_MSG_R_OK);
    sp_msg_fini(&rep);
}

/* Runs the client program with the CURVE key files given (NULL: none) and
 * returns its exit code; out gets its --json object. */
static int s_client_curve(sp_cluster_t *cl, char *server, char *secret, char *out, size_t outlen)
{
    char client[512];
    assert_int_equal(sp_cu_bin("spatium", client, sizeof client), 0);
    char *argv[12] = {client, "--coordinator", cl->cep, "--timeout-ms", "3000", "--json"};
    int n = 6;
    if (server != NULL) {
        argv[n++] = "--curve-server";
        argv[n++] = server;
        argv[n++] = "--curve-secret";
        argv[n++] = secret;
    }
    argv[n++] = "workers";
    argv[n] = NULL;
    return sp_cu_run(argv, 20000, out, outlen);
}

/* CURVE: an allowed worker trains (to the same model as without
 * encryption), a worker, a client and a metrics subscriber whose keys are
 * not in the allow-lists are refused (the first two saying so), an allowed
 * subscriber gets the job's records, a plain client is told the
 * coordinator needs CURVE. */
static void test_cluster_curve_allow_lists(void **state)
{
    s_fix_t *f = s_fix(state);
    if (!zmq_has("curve")) {
        skip();
    }
    sp_msg_train_t t;
    s_job_def(&t, "blobs", 4, S_LONG_BATCH, S_LONG_PARTITION);
    s_start_workers(f, 1, NULL);
    sp_job_status_t st;
    uint64_t plain_job = s_run_job(f, &t, &st);
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    s_fetch(f, plain_job, &plain, &plain_len);
    s_stop_workers(f);

    f->extra = calloc(1, sizeof *f->extra);
    sp_cluster_t *cl = f->extra;
    assert_non_null(cl);
    assert_int_equal(sp_cluster_init(cl, S_HEARTBEAT_MS, S_LIVENESS), 0);
    assert_int_equal(sp_cluster_use_curve(cl), 0);
    assert_int_equal(sp_cluster_start_coord(cl), 0); /* answered the CURVE client */
    assert_true(sp_cluster_add_worker(cl, 1) >= 0);
    snprintf(cl->worker_key, sizeof cl->worker_key, "%s/stranger.key_secret", cl->keys);
    int stranger = sp_cluster_add_worker(cl, 1);
    assert_true(stranger >= 0);
    if (sp_cluster_wait_workers(cl, 1, 20000) != 0) {
        sp_cluster_dump_logs(cl);
        fail_msg("the allowed worker did not register over CURVE");
    }

    /* the stranger says why it cannot join, and never does */
    char log[256];
    snprintf(log, sizeof log, "%s/worker-%d.log", cl->dir, stranger);
    int said = 0;
    for (uint64_t end = sp_cu_now_ms() + 10000; !said && sp_cu_now_ms() < end; sp_cu_nap(20)) {
        uint8_t *text = NULL;
        size_t len = 0;
        if (sp_cu_read_file(log, &text, &len) == 0) {
            char *z = realloc(text, len + 1);
            if (z != NULL) {
                z[len] = '\0';
                said = strstr(z, "refused this program's CURVE key") != NULL;
                text = (uint8_t *)z;
            }
        }
        free(text);
    }
    if (!said) {
        sp_cluster_dump_logs(cl);
        fail_msg("the refused worker did not log why");
    }

    char err[SP_TEXT_MAX] = "";
    size_t len = 0;
    char *csv = s_blobs_csv(S_SAMPLES, &len);
    assert_non_null(csv);
    const uint8_t *parts[1] = {(const uint8_t *)csv};
    size_t sizes[1] = {len};
    int up =
        sp_cluster_upload(cl, "blobs", "csv", "classify", parts, sizes, 1, 1000, err, sizeof err);
    free(csv);
    if (up != 0) {
        fail_msg("upload over CURVE: %s", err);
    }
    /* metrics subscribers are checked against the clients list */
    void *subs[2], *stranger_watch = NULL;
    for (int i = 0; i < 2; i++) {
        char srv_path[256], own_path[256];
        sp_curve_cert_t srv, own;
        snprintf(srv_path, sizeof srv_path, "%s/coord.key", cl->keys);
        snprintf(own_path, sizeof own_path, "%s/%s.key_secret", cl->keys,
                 i == 0 ? "client" : "stranger");
        assert_int_equal(sp_curve_load(srv_path, 0, &srv, err, sizeof err), SP_OK);
        assert_int_equal(sp_curve_load(own_path, 1, &own, err, sizeof err), SP_OK);
        subs[i] = zmq_socket(cl->zctx, ZMQ_SUB);
        assert_non_null(subs[i]);
        int linger = 0;
        zmq_setsockopt(subs[i], ZMQ_LINGER, &linger, sizeof linger);
        assert_int_equal(sp_curve_client(subs[i], &own, &srv), SP_OK);
        assert_int_equal(zmq_setsockopt(subs[i], ZMQ_SUBSCRIBE, "job/", 4), 0);
        if (i == 1) {
            stranger_watch = sp_curve_watch(cl->zctx, subs[i]);
            assert_non_null(stranger_watch);
        }
        assert_int_equal(zmq_connect(subs[i], cl->mep), 0);
    }
    uint64_t job = 0;
    assert_int_equal(sp_cluster_train(cl, &t, &job, err, sizeof err), 0);
    if (sp_cluster_wait_job(cl, job, 0, S_JOB_TIMEOUT_MS, &st) != 0 ||
        strcmp(st.state, "done") != 0) {
        sp_cluster_dump_logs(cl);
        fail_msg("job over CURVE: %s %s", st.state, st.error);
    }
    uint8_t *m = NULL;
    size_t m_len = 0;
    assert_int_equal(sp_cluster_model(cl, job, &m, &m_len), 0);
    assert_int_equal(m_len, plain_len);
    assert_memory_equal(m, plain, m_len);
    free(m);
    free(plain);

    int records[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        uint8_t topic[64];
        size_t topic_len = sizeof topic;
        sp_msg_t pm;
        while (sp_msg_recv(subs[i], ZMQ_DONTWAIT, topic, &topic_len, &pm, err, sizeof err) ==
               SP_OK) {
            records[i] += pm.type == SP_MSG_R_METRICS;
            sp_msg_fini(&pm);
            topic_len = sizeof topic;
        }
    }
    assert_true(records[0] > 0);
    assert_int_equal(records[1], 0);
    int refused = 0;
    char why[512];
    for (int rc; (rc = sp_curve_watch_read(stranger_watch, 1, why, sizeof why)) >= 0;) {
        refused |= rc == 2 && strstr(why, "refused") != NULL;
    }
    assert_true(refused);
    sp_curve_watch_close(subs[1], &stranger_watch);
    zmq_close(subs[0]);
    zmq_close(subs[1]);

    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_WORKERS);
    assert_int_equal(sp_cluster_call(cl, &req, &rep, 5000), 0);
    assert_int_equal(rep.type, SP_MSG_R_WORKERS);
    assert_int_equal(rep.u.r_workers.n, 1); /* the stranger never registered */
    assert_string_equal(rep.u.r_workers.workers[0].name, "w0");
    sp_msg_fini(&rep);

    char coord_key[256], client_key[256], stranger_key[256], out[2048];
    snprintf(coord_key, sizeof coord_key, "%s/coord.key", cl->keys);
    snprintf(client_key, sizeof client_key, "%s/client.key_secret", cl->keys);
    snprintf(stranger_key, sizeof stranger_key, "%s/stranger.key_secret", cl->keys);
    assert_int_equal(s_client_curve(cl, coord_key, client_key, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"w0\""));
    assert_int_equal(s_client_curve(cl, coord_key, stranger_key, out, sizeof out), 1);
    assert_non_null(strstr(out, "refused this program's CURVE key"));
    /* the reason comes with the refusal, or the handshake just fails: either
     * way the sentence says CURVE is required and which flag gives it */
    assert_int_equal(s_client_curve(cl, NULL, NULL, out, sizeof out), 1);
    assert_non_null(strstr(out, "require"));
    assert_non_null(strstr(out, "--curve-server"));

    assert_int_equal(sp_cluster_fini(cl), 0);
    free(cl);
    f->extra = NULL;
}

/* Whatever a test left running (after a failed assertion) is stopped. */
static int s_test_teardown(void **state)
{
    s_fix_t *f = *state;
    if (f->extra != NULL) {
        sp_cluster_fini(f->extra);
        free(f->extra);
        f->extra = NULL;
    }
    for (int i = 0; i < SP_CU_MAX_WORKERS; i++) {
        if (f->cl.workers[i] > 0) {
            kill(f->cl.workers[i], SIGCONT); /* in case a test stopped it */
        }
        sp_cluster_stop_worker(&f->cl, i, SIGTERM);
    }
    return 0;
}

#define S_TEST(fn) cmocka_unit_test_teardown(fn, s_test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        S_TEST(test_cluster_job_end_to_end_two_workers),
        S_TEST(test_cluster_same_model_for_1_2_3_workers),
        S_TEST(test_cluster_model_is_the_inprocess_training),
        S_TEST(test_cluster_idle_worker_not_kept_in_step),
        S_TEST(test_cluster_growth_and_pruning_same_model),
        S_TEST(test_cluster_diverging_split_job_fails_with_reason),
        S_TEST(test_cluster_worker_killed_mid_job),
        S_TEST(test_cluster_busy_worker_killed_rolls_back),
        S_TEST(test_cluster_worker_joins_mid_job),
        S_TEST(test_cluster_slow_worker_gets_smaller_share),
        S_TEST(test_cluster_much_slower_worker_left_out),
        S_TEST(test_cluster_bad_synced_model_rolls_back),
        S_TEST(test_cluster_lone_worker_gets_a_run),
        S_TEST(test_cluster_lone_worker_paused_resyncs),
        S_TEST(test_cluster_coordinator_killed_resumes_same_model),
        S_TEST(test_cluster_coordinator_sigterm_checkpoints_and_resumes),
        S_TEST(test_cluster_corrupt_checkpoint_starts_over),
        S_TEST(test_cluster_client_without_coordinator_exits_3),
        S_TEST(test_cluster_bad_datasets_refused),
        S_TEST(test_cluster_big_upload_checked_while_training),
        S_TEST(test_cluster_malformed_frames_answered),
        S_TEST(test_cluster_curve_allow_lists),
    };
    /* SPATIUM_TEST_FILTER=pattern runs only the matching tests (cmocka's
     * '*' and '?' wildcards), for chasing one scenario in a loop */
    const char *filter = getenv("SPATIUM_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0') {
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
}
