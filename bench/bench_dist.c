/* bench_dist: the distributed trainer against in-process training. Starts
 * spatium-coordinator and spatium-worker from the directory of this program
 * (ipc:// endpoints in a temporary directory), uploads the first 8192
 * Fashion-MNIST training images (synthetic 28x28 images when Debian's
 * dataset-fashion-mnist is not installed), runs the same job (same
 * shuffling) with 1 and 2 workers at batch 64 / partition 32 and 64
 * (latency-bound), 512 / 128, 2048 / 256 and 8192 / 256 (on 32768 images;
 * compute-bound), and reports samples per second from the job's epoch
 * records beside sp_network_train_batch in this process; the ceiling of a
 * 2-worker speedup here (two in-process trainers at once against one); the
 * bytes a step puts on the wire and the dataset's stored size (what each
 * worker downloads once); and the cost of a worker's full model
 * refresh; and what CurveZMQ encryption costs (the same job with every
 * socket encrypted, against plain). Every process started here is stopped
 * before returning. The configurations compared run in S_REPS rounds, each
 * once a round, in the opposite order every other round, so a drift of this
 * machine's speed (a VM's vCPUs change speed from one second to the next)
 * hits them alike; samples/s is the median over the rounds, a ratio the
 * median of the rounds' ratios, and a comment line gives every round's
 * ratio, so the spread is in the output too. The coordinator runs on the
 * same machine as the workers: on 2 cores, 2 workers of 1 thread plus the
 * coordinator are 3 processes on 2 cores. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "bench/bench.h"
#include "common/child.h"
#include "common/dataset.h"
#include "common/error.h"
#include "common/file.h"
#include "common/network.h"
#include "common/rng.h"
#include "proto/curve.h"
#include "proto/messages.h"

#define S_SAMPLES 8192 /* 128 steps an epoch at batch 64, 16 at batch 512 */
#define S_SAMPLES_BIG 32768 /* batch 8192: 4 steps an epoch */
#define S_SIDE 28
#define S_FEATURES (S_SIDE * S_SIDE)
#define S_CLASSES 10
#define S_HIDDEN 128
#define S_EPOCHS 4 /* the first (dataset download, warm-up) is not counted */
#define S_MAX_WORKERS 2
#define S_REFRESH_ITERS 200 /* model update / load timings: iterations */
#define S_REPS 9 /* rounds: each configuration runs once a round (noisy machine) */
#define S_STOP_MS 5000 /* SIGTERM, then SIGKILL after this */

/* Batch and partition of one comparison. */
typedef struct {
    uint32_t batch;
    uint32_t partition;
    const char *tag;  /* name suffix: "" (the original names) or "_b512" */
    uint32_t samples; /* in the dataset: S_SAMPLES, more for the biggest batch */
} s_shape_t;

typedef struct {
    char dir[64];
    char state[128], wep[128], cep[128], mep[128];
    char bindir[PATH_MAX];
    pid_t coord;
    pid_t workers[S_MAX_WORKERS];
    void *zctx, *dealer;
    uint64_t req;
    int curve;       /* 1: every socket encrypted with the key pairs in keys */
    char keys[128];  /* <dir>/keys: coord, worker, client pairs; workers/ and clients/ */
    int failed;      /* something failed: dir (the logs) is kept */
} s_env_t;

static void s_nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t s_ms(void)
{
    return sp_bench_now_ns() / 1000000u;
}

static pid_t s_spawn(char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* One request, one reply (matched by req id); 0 or -1 on timeout. */
static int s_call(s_env_t *e, sp_msg_t *req, uint64_t *req_field, sp_msg_t *rep, int timeout_ms)
{
    *req_field = ++e->req;
    sp_msg_init(rep, (sp_msg_type_t)0);
    if (sp_msg_send(e->dealer, NULL, 0, req) != SP_OK) {
        return -1;
    }
    uint64_t end = s_ms() + (uint64_t)timeout_ms;
    while (s_ms() < end) {
        zmq_pollitem_t it = {e->dealer, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0) {
            continue;
        }
        char err[SP_TEXT_MAX];
        if (sp_msg_recv(e->dealer, ZMQ_DONTWAIT, NULL, NULL, rep, err, sizeof err) != SP_OK) {
            continue;
        }
        const uint64_t *rp = sp_msg_req(rep);
        if (rp != NULL && *rp == e->req) {
            return 0;
        }
        sp_msg_fini(rep);
    }
    return -1;
}

/* Key pairs for a CURVE run: coord, worker and client in e->keys, the
 * worker's and the client's public keys let in. 0 or -1. */
static int s_make_keys(s_env_t *e)
{
    static const char *const who[3] = {"coord", "worker", "client"};
    snprintf(e->keys, sizeof e->keys, "%s/keys", e->dir);
    char path[256], err[256], text[512];
    if (mkdir(e->keys, 0700) != 0) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        sp_curve_cert_t k;
        snprintf(path, sizeof path, "%s/%s", e->keys, who[i]);
        if (sp_curve_keygen(path, &k, err, sizeof err) != SP_OK) {
            fprintf(stderr, "bench_dist: %s\n", err);
            return -1;
        }
        if (i == 0) {
            continue;
        }
        /* the allow-list file: one bare public key */
        snprintf(path, sizeof path, "%s/%ss", e->keys, who[i]);
        snprintf(text, sizeof text, "%s/%ss/%s.key", e->keys, who[i], who[i]);
        FILE *f = mkdir(path, 0700) == 0 ? fopen(text, "w") : NULL;
        if (f == NULL || fprintf(f, "%s\n", k.public_z85) < 0 || fclose(f) != 0) {
            return -1;
        }
    }
    return 0;
}

static int s_env_start(s_env_t *e, int curve)
{
    memset(e, 0, sizeof *e);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        return -1;
    }
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(e->bindir, sizeof e->bindir, "%s", self);
    snprintf(e->dir, sizeof e->dir, "/tmp/spb-XXXXXX");
    if (mkdtemp(e->dir) == NULL) {
        return -1;
    }
    snprintf(e->state, sizeof e->state, "%s/state", e->dir);
    snprintf(e->wep, sizeof e->wep, "ipc://%s/w", e->dir);
    snprintf(e->cep, sizeof e->cep, "ipc://%s/c", e->dir);
    snprintf(e->mep, sizeof e->mep, "ipc://%s/m", e->dir);
    if (curve && s_make_keys(e) != 0) {
        return -1;
    }
    e->curve = curve;
    char bin[PATH_MAX + 32], log[128], secret[160], workers[160], clients[160];
    snprintf(bin, sizeof bin, "%s/spatium-coordinator", e->bindir);
    snprintf(log, sizeof log, "%s/coordinator.log", e->dir);
    snprintf(secret, sizeof secret, "%s/coord.key_secret", e->keys);
    snprintf(workers, sizeof workers, "%s/workers", e->keys);
    snprintf(clients, sizeof clients, "%s/clients", e->keys);
    char *argv[] = {bin,     "--workers",       e->wep,   "--clients",       e->cep,
                    "--metrics", e->mep,        "--state-dir", e->state,     "--log-level",
                    "warn",  curve ? "--curve-secret" : NULL, secret, "--curve-workers", workers,
                    "--curve-clients", clients, NULL};
    e->coord = s_spawn(argv, log);
    e->zctx = zmq_ctx_new();
    e->dealer = zmq_socket(e->zctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(e->dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (curve) {
        char coord[160], own[160], err[256];
        sp_curve_cert_t server, pair;
        snprintf(coord, sizeof coord, "%s/coord.key", e->keys);
        snprintf(own, sizeof own, "%s/client.key_secret", e->keys);
        if (sp_curve_load(coord, 0, &server, err, sizeof err) != SP_OK ||
            sp_curve_load(own, 1, &pair, err, sizeof err) != SP_OK ||
            sp_curve_client(e->dealer, &pair, &server) != SP_OK) {
            return -1;
        }
    }
    if (e->coord <= 0 || zmq_connect(e->dealer, e->cep) != 0) {
        return -1;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_DATASETS);
    if (s_call(e, &req, &req.u.plain_req.req, &rep, 10000) != 0) {
        return -1;
    }
    sp_msg_fini(&rep);
    return 0;
}

static void s_env_stop(s_env_t *e)
{
    for (int i = 0; i < S_MAX_WORKERS; i++) {
        (void)sp_child_stop(e->workers[i], S_STOP_MS);
        e->workers[i] = 0;
    }
    (void)sp_child_stop(e->coord, S_STOP_MS);
    e->coord = 0;
    if (e->dealer) {
        zmq_close(e->dealer);
    }
    if (e->zctx) {
        zmq_ctx_term(e->zctx);
    }
    if (e->dir[0] && !e->failed) {
        (void)sp_file_remove_tree(e->dir);
    }
    memset(e, 0, sizeof *e);
}

static int s_add_worker(s_env_t *e, int slot, int threads)
{
    char bin[PATH_MAX + 32], th[16], name[16], log[128];
    snprintf(bin, sizeof bin, "%s/spatium-worker", e->bindir);
    snprintf(th, sizeof th, "%d", threads);
    snprintf(name, sizeof name, "bench%d", slot);
    snprintf(log, sizeof log, "%s/worker-%d.log", e->dir, slot);
    char server[160], secret[160];
    snprintf(server, sizeof server, "%s/coord.key", e->keys);
    snprintf(secret, sizeof secret, "%s/worker.key_secret", e->keys);
    char *argv[] = {bin,  "--coordinator", e->wep, "--threads", th, "--name",
                    name, e->curve ? "--curve-server" : NULL, server, "--curve-secret", secret,
                    NULL};
    e->workers[slot] = s_spawn(argv, log);
    return e->workers[slot] > 0 ? 0 : -1;
}

#define S_FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Writes the big-endian IDX header of n images of S_SIDE x S_SIDE (or of n
 * labels) to p. */
static void s_idx_header(uint8_t *p, int images, uint32_t n)
{
    const uint32_t hi[4] = {0x803, n, S_SIDE, S_SIDE}, hl[2] = {0x801, n};
    const uint32_t *h = images ? hi : hl;
    for (int i = 0; i < (images ? 4 : 2); i++) {
        for (int b = 0; b < 4; b++) {
            p[4 * i + b] = (uint8_t)(h[i] >> (24 - 8 * b));
        }
    }
}

/* Reads `len` bytes at `skip` of a gzip (or plain) file; 0 on success. */
static int s_read_gz(const char *path, size_t skip, uint8_t *out, size_t len)
{
    gzFile f = gzopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    int ok = gzseek(f, (z_off_t)skip, SEEK_SET) == (z_off_t)skip;
    for (size_t off = 0; ok && off < len;) {
        unsigned chunk = len - off > (1u << 30) ? 1u << 30 : (unsigned)(len - off);
        int n = gzread(f, out + off, chunk);
        ok = n > 0;
        off += ok ? (size_t)n : 0;
    }
    gzclose(f);
    return ok ? 0 : -1;
}

/* The first n training images of Fashion-MNIST (Debian's dataset-fashion-
 * mnist) as IDX files of n samples; 0 on success, -1 when not installed. */
static int s_fmnist_idx(uint32_t n, uint8_t *im, uint8_t *lb)
{
    s_idx_header(im, 1, n);
    s_idx_header(lb, 0, n);
    return s_read_gz(S_FMNIST_DIR "/train-images-idx3-ubyte.gz", 16, im + 16,
                     (size_t)n * S_FEATURES) == 0 &&
                   s_read_gz(S_FMNIST_DIR "/train-labels-idx1-ubyte.gz", 8, lb + 8, n) == 0
               ? 0
               : -1;
}

/* n samples of IDX files: Fashion-MNIST's first n when installed (the data
 * users train on: real images have many zero pixels, which changes the cost
 * of a step), otherwise synthetic ones where class k lights a band of rows
 * over noise. */
static void s_make_idx(uint32_t n, uint8_t **images, size_t *ni, uint8_t **labels, size_t *nl)
{
    *ni = 16 + (size_t)n * S_FEATURES;
    *nl = 8 + (size_t)n;
    *images = malloc(*ni);
    *labels = malloc(*nl);
    uint8_t *im = *images, *lb = *labels;
    if (im == NULL || lb == NULL || s_fmnist_idx(n, im, lb) == 0) {
        return;
    }
    s_idx_header(im, 1, n);
    s_idx_header(lb, 0, n);
    sp_rng_t rng;
    sp_rng_init(&rng, 5);
    for (uint32_t s = 0; s < n; s++) {
        int k = (int)sp_rng_below(&rng, S_CLASSES);
        lb[8 + s] = (uint8_t)k;
        for (int p = 0; p < S_FEATURES; p++) {
            int row = p / S_SIDE;
            int lit = row / 3 == k;
            im[16 + (size_t)s * S_FEATURES + p] =
                (uint8_t)(sp_rng_below(&rng, 64) + (lit ? 160 : 0));
        }
    }
}

static int s_upload(s_env_t *e, const uint8_t *const parts[2], const size_t sizes[2])
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_UPLOAD_BEGIN);
    sp_msg_upload_begin_t *b = &req.u.upload_begin;
    snprintf(b->name, sizeof b->name, "bench");
    snprintf(b->format, sizeof b->format, "idx");
    snprintf(b->task, sizeof b->task, "classify");
    b->label_column = -1;
    b->header = -1;
    b->n_parts = 2;
    for (int i = 0; i < 2; i++) {
        b->part_size[i] = sizes[i];
        b->part_crc[i] = (uint32_t)crc32(crc32(0L, Z_NULL, 0), parts[i], (uInt)sizes[i]);
    }
    if (s_call(e, &req, &b->req, &rep, 10000) != 0 || rep.type != SP_MSG_R_UPLOAD) {
        sp_msg_fini(&rep);
        return -1;
    }
    uint64_t upload = rep.u.r_upload.upload;
    sp_msg_fini(&rep);
    for (uint32_t p = 0; p < 2; p++) {
        for (size_t off = 0; off < sizes[p]; off += SP_CHUNK_MAX) {
            size_t n = sizes[p] - off < SP_CHUNK_MAX ? sizes[p] - off : SP_CHUNK_MAX;
            sp_msg_init(&req, SP_MSG_UPLOAD_CHUNK);
            req.u.upload_chunk.upload = upload;
            req.u.upload_chunk.part = p;
            req.u.upload_chunk.offset = off;
            req.u.upload_chunk.data.data = (uint8_t *)(uintptr_t)(parts[p] + off);
            req.u.upload_chunk.data.len = n;
            if (s_call(e, &req, &req.u.upload_chunk.req, &rep, 10000) != 0 ||
                rep.type != SP_MSG_R_UPLOAD) {
                sp_msg_fini(&rep);
                return -1;
            }
            sp_msg_fini(&rep);
        }
    }
    /* "stored: false" to upload_end: still being checked, ask again */
    for (int tries = 0; tries < 6000; tries++) {
        sp_msg_init(&req, SP_MSG_UPLOAD_END);
        req.u.upload_end.upload = upload;
        if (s_call(e, &req, &req.u.upload_end.req, &rep, 10000) != 0 ||
            rep.type != SP_MSG_R_UPLOAD) {
            sp_msg_fini(&rep);
            return -1;
        }
        int stored = rep.u.r_upload.stored;
        sp_msg_fini(&rep);
        if (stored) {
            return 0;
        }
        s_nap_ms(10);
    }
    return -1;
}

/* Runs the bench job; returns the mean samples/s of the epochs after the
 * first (which includes the dataset download), or NAN. */
static double s_run_job(s_env_t *e, const s_shape_t *sh)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_TRAIN);
    sp_msg_train_t *t = &req.u.train;
    snprintf(t->dataset, sizeof t->dataset, "bench");
    t->n_layers = 3;
    t->layers[0] = S_FEATURES;
    t->layers[1] = S_HIDDEN;
    t->layers[2] = S_CLASSES;
    t->bits = 4;
    t->epochs = S_EPOCHS;
    t->batch = sh->batch;
    t->partition = sh->partition;
    t->lr = 0.05;
    t->momentum = 0.9;
    t->seed = 3;
    snprintf(t->mode, sizeof t->mode, "backprop");
    snprintf(t->loss, sizeof t->loss, "xent");
    if (s_call(e, &req, &t->req, &rep, 10000) != 0 || rep.type != SP_MSG_R_JOB) {
        sp_msg_fini(&rep);
        return NAN;
    }
    uint64_t job = rep.u.r_job.job;
    sp_msg_fini(&rep);
    uint64_t end = s_ms() + 300000;
    int done = 0;
    while (!done && s_ms() < end) {
        sp_msg_init(&req, SP_MSG_STATUS);
        req.u.job_req.job = job;
        if (s_call(e, &req, &req.u.job_req.req, &rep, 5000) == 0 && rep.type == SP_MSG_R_STATUS &&
            rep.u.r_status.n == 1) {
            const char *st = rep.u.r_status.jobs[0].state;
            if (strcmp(st, "done") == 0) {
                done = 1;
            } else if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
                sp_msg_fini(&rep);
                return NAN;
            }
        }
        sp_msg_fini(&rep);
        s_nap_ms(20);
    }
    if (!done) {
        return NAN;
    }
    sp_msg_init(&req, SP_MSG_METRICS);
    req.u.job_req.job = job;
    if (s_call(e, &req, &req.u.job_req.req, &rep, 5000) != 0 || rep.type != SP_MSG_R_METRICS) {
        sp_msg_fini(&rep);
        return NAN;
    }
    double sum = 0;
    int n = 0;
    for (uint32_t i = 0; i < rep.u.r_metrics.n; i++) {
        const sp_metric_t *r = &rep.u.r_metrics.records[i];
        if (strcmp(r->kind, "epoch") == 0 && r->epoch > 1) {
            sum += r->samples_per_s;
            n++;
        }
    }
    sp_msg_fini(&rep);
    return n > 0 ? sum / n : NAN;
}

/* Median of n values (n odd, small); NAN when any is NAN. */
static double s_median(double *v, int n)
{
    for (int i = 0; i < n; i++) {
        if (isnan(v[i])) {
            return NAN;
        }
        for (int j = i + 1; j < n; j++) {
            if (v[j] < v[i]) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
        }
    }
    return v[n / 2];
}

/* A coordinator with the shape's dataset stored and n_workers workers of
 * `threads` threads, every socket encrypted when curve is 1; 0 when ready.
 * The workers cache the dataset at their first job. s_env_stop ends it,
 * ready or not. */
static int s_dist_open(s_env_t *e, int n_workers, int threads, const s_shape_t *sh, int curve)
{
    uint8_t *images = NULL, *labels = NULL;
    size_t ni = 0, nl = 0;
    s_make_idx(sh->samples, &images, &ni, &labels, &nl);
    const uint8_t *parts[2] = {images, labels};
    size_t sizes[2] = {ni, nl};
    const char *failed = NULL;
    if (images == NULL || labels == NULL) {
        failed = "making the dataset";
    } else if (s_env_start(e, curve) != 0) {
        failed = "starting the coordinator";
    } else if (s_upload(e, parts, sizes) != 0) {
        failed = "uploading the dataset";
    }
    for (int i = 0; failed == NULL && i < n_workers; i++) {
        if (s_add_worker(e, i, threads) != 0) {
            failed = "starting a worker";
        }
    }
    free(images);
    free(labels);
    if (failed != NULL) {
        /* its figures will be NaN: say why, not only that */
        fprintf(stderr, "bench_dist: %s failed (logs kept in %s)\n", failed, e->dir);
        e->failed = 1;
    }
    return failed == NULL ? 0 : -1;
}

/* The bench job on an open environment, or NAN (logged) when it did not
 * complete. */
static double s_dist_job(s_env_t *e, const s_shape_t *sh)
{
    double sps = s_run_job(e, sh);
    if (isnan(sps)) {
        fprintf(stderr, "bench_dist: the distributed job did not complete (logs kept in %s)\n",
                e->dir);
        e->failed = 1;
    }
    return sps;
}

/* The same job in this process: sp_network_train_batch over the batches. */
static double s_inprocess_once(int threads, const s_shape_t *sh)
{
    uint8_t *images = NULL, *labels = NULL;
    size_t ni = 0, nl = 0;
    s_make_idx(sh->samples, &images, &ni, &labels, &nl);
    sp_dataset_t d;
    char err[SP_TEXT_MAX];
    double sps = NAN;
    if (images == NULL || labels == NULL ||
        sp_dataset_parse_idx(images, ni, labels, nl, &d, err, sizeof err) != SP_OK) {
        free(images);
        free(labels);
        return NAN;
    }
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = SP_LOSS_XENT;
    cfg.seed = 3;
    const uint32_t sizes[3] = {S_FEATURES, S_HIDDEN, S_CLASSES};
    sp_network_t *net = sp_network_new(sizes, 3, &cfg);
    const uint32_t B = sh->batch;
    float *X = malloc((size_t)B * S_FEATURES * sizeof *X);
    float *T = malloc((size_t)B * S_CLASSES * sizeof *T);
    const uint32_t N = sh->samples;
    uint32_t *idx = malloc((size_t)N * sizeof *idx);
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    if (net && X && T && idx) {
        for (uint32_t i = 0; i < N; i++) {
            idx[i] = i;
        }
        uint64_t t0 = 0, samples = 0;
        for (int epoch = 0; epoch < S_EPOCHS; epoch++) {
            if (epoch == 1) {
                t0 = sp_bench_now_ns();
            }
            /* the job the coordinator runs: a new permutation every epoch */
            sp_rng_t rng;
            sp_rng_init_stream(&rng, 3, (uint64_t)epoch);
            sp_rng_shuffle_u32(&rng, idx, N);
            for (uint32_t off = 0; off < N; off += B) {
                uint32_t n = N - off < B ? N - off : B;
                sp_dataset_gather(&d, idx + off, n, X);
                sp_dataset_targets(&d, idx + off, n, T);
                float loss;
                sp_network_train_batch(net, X, T, n, &loss);
                samples += epoch >= 1 ? n : 0;
            }
        }
        sps = (double)samples * 1e9 / (double)(sp_bench_now_ns() - t0);
    }
    omp_set_num_threads(saved);
    free(X);
    free(T);
    free(idx);
    sp_network_destroy(&net);
    sp_dataset_fini(&d);
    free(images);
    free(labels);
    return sps;
}

/* Bytes of the bench's dataset of n images in its stored, serialized form
 * (common/dataset.h): what each worker downloads once. */
static double s_dataset_bytes(uint32_t n)
{
    uint8_t *images = NULL, *labels = NULL, *buf = NULL;
    size_t ni = 0, nl = 0, len = 0;
    s_make_idx(n, &images, &ni, &labels, &nl);
    sp_dataset_t d;
    char err[SP_TEXT_MAX];
    double bytes = NAN;
    if (images != NULL && labels != NULL &&
        sp_dataset_parse_idx(images, ni, labels, nl, &d, err, sizeof err) == SP_OK) {
        if (sp_dataset_serialize(&d, &buf, &len) == SP_OK) {
            bytes = (double)len;
        }
        free(buf);
        sp_dataset_fini(&d);
    }
    free(images);
    free(labels);
    return bytes;
}

/* Peak resident size of process pid (VmHWM), MB; NAN when unknown. */
static double s_peak_mb(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double mb = NAN;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long kb;
        if (sscanf(line, "VmHWM: %lu kB", &kb) == 1) {
            mb = (double)kb / 1024.0;
        }
    }
    if (f) {
        fclose(f);
    }
    return mb;
}

/* Peak resident sizes (MB) of a worker of one thread and of the
 * coordinator, over storing the batch-8192 shape's dataset and one job on
 * it: the dataset held by each, and the model. NAN when the job fails. */
static void s_peaks(const s_shape_t *sh, double *worker_mb, double *coord_mb)
{
    s_env_t e;
    memset(&e, 0, sizeof e);
    *worker_mb = *coord_mb = NAN;
    if (s_dist_open(&e, 1, 1, sh, 0) == 0 && !isnan(s_dist_job(&e, sh))) {
        *worker_mb = s_peak_mb(e.workers[0]);
        *coord_mb = s_peak_mb(e.coord);
    }
    s_env_stop(&e);
}

/* Bytes one step puts on the wire, as the codec encodes them (header +
 * body), kept whole on one worker (nodes = 1: a task and a result without
 * gradient; the worker applies the step itself and its next task was sent
 * ahead) or split between two (nodes = 2: a task and a result with its
 * gradient each, and an APPLY to each). Which one the coordinator chooses
 * depends on the measured compute time (min_node); both are reported. A
 * whole step's worker also sends its model (with training state) back at
 * each sync, at most every 2 s and at each epoch's end: not counted here. */
static double s_bytes_per_step(uint32_t nodes, const s_shape_t *sh)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = SP_LOSS_XENT;
    const uint32_t sizes[3] = {S_FEATURES, S_HIDDEN, S_CLASSES};
    sp_network_t *net = sp_network_new(sizes, 3, &cfg);
    if (net == NULL) {
        return NAN;
    }
    size_t n_params = sp_network_n_params(net), n_hits = sp_network_n_hits(net);
    uint32_t node_len = sh->batch / nodes;
    double total = NAN;
    uint32_t *idx = calloc(node_len, sizeof *idx);
    float *grad = calloc(n_params, sizeof *grad);
    uint32_t *hits = calloc(n_hits, sizeof *hits);
    if (idx && grad && hits) {
        sp_msg_t m[3];
        sp_msg_init(&m[0], SP_MSG_TASK);
        m[0].u.task.job = m[0].u.task.version = 1;
        m[0].u.task.n_partitions = node_len / sh->partition;
        m[0].u.task.partition_size = sh->partition;
        m[0].u.task.batch = sh->batch;
        snprintf(m[0].u.task.dataset, sizeof m[0].u.task.dataset, "bench");
        m[0].u.task.n_indices = node_len;
        m[0].u.task.indices = idx;
        sp_msg_init(&m[1], SP_MSG_RESULT);
        m[1].u.result.job = m[1].u.result.version = 1;
        m[1].u.result.n_partitions = node_len / sh->partition;
        m[1].u.result.n_samples = node_len;
        if (nodes > 1) {
            m[1].u.result.n_grad = (uint32_t)n_params;
            m[1].u.result.grad = grad;
            m[1].u.result.n_hits = (uint32_t)n_hits;
            m[1].u.result.hits = hits;
        }
        sp_msg_init(&m[2], SP_MSG_APPLY);
        m[2].u.apply.job = 1;
        m[2].u.apply.version = 2;
        m[2].u.apply.n_samples = sh->batch;
        m[2].u.apply.n_grad = (uint32_t)n_params;
        m[2].u.apply.grad = grad;
        m[2].u.apply.n_hits = (uint32_t)n_hits;
        m[2].u.apply.hits = hits;
        double bytes[3] = {0, 0, 0};
        int ok = 1;
        for (int i = 0; i < 3; i++) {
            uint8_t hdr[SP_MSG_HEADER_BYTES];
            uint8_t *body = NULL;
            size_t len = 0;
            ok &= sp_msg_encode(&m[i], hdr, &body, &len) == SP_OK;
            bytes[i] = (double)(len + SP_MSG_HEADER_BYTES);
            free(body);
        }
        if (ok) {
            total = nodes * (bytes[0] + bytes[1]) + (nodes > 1 ? nodes * bytes[2] : 0.0);
        }
    }
    free(idx);
    free(grad);
    free(hits);
    sp_network_destroy(&net);
    return total;
}

/* A worker's model work when it needs a whole model (it joined, the
 * topology changed, or it fell behind): refreshing its cached network in
 * place from a newer version with training state (sp_network_update_from_
 * buffer) and, for comparison, a full load; also the coordinator's encoding
 * of a version. Per step, workers get an APPLY instead. Microseconds per
 * call, one thread, versions alternating between two consecutive steps. */
static void s_model_costs(double *update_us, double *load_us, double *save_us)
{
    *update_us = *load_us = *save_us = NAN;
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.loss = SP_LOSS_XENT;
    cfg.seed = 3;
    const uint32_t sizes[3] = {S_FEATURES, S_HIDDEN, S_CLASSES};
    sp_network_t *net = sp_network_new(sizes, 3, &cfg), *w = NULL;
    float *X = malloc((size_t)64 * S_FEATURES * sizeof *X);
    float *T = calloc((size_t)64 * S_CLASSES, sizeof *T);
    uint8_t *v[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    char err[SP_TEXT_MAX];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    sp_rng_t rng;
    sp_rng_init(&rng, 9);
    int ok = net && X && T;
    for (int k = 0; ok && k < 2; k++) {
        for (size_t i = 0; i < (size_t)64 * S_FEATURES; i++) {
            X[i] = sp_rng_float(&rng);
        }
        for (int s = 0; s < 64; s++) {
            T[s * S_CLASSES + sp_rng_below(&rng, S_CLASSES)] = 1.0f;
        }
        float loss;
        ok = sp_network_train_batch(net, X, T, 64, &loss) == SP_OK &&
             sp_network_save_buffer(net, 1, &v[k], &len[k]) == SP_OK;
    }
    ok = ok && sp_network_load_buffer(v[0], len[0], &w, err, sizeof err) == SP_OK;
    if (ok) {
        uint64_t t0 = sp_bench_now_ns();
        for (int i = 0; ok && i < S_REFRESH_ITERS; i++) {
            ok = sp_network_update_from_buffer(w, v[i & 1], len[i & 1], err, sizeof err) == SP_OK;
        }
        *update_us = (double)(sp_bench_now_ns() - t0) / 1e3 / S_REFRESH_ITERS;
        t0 = sp_bench_now_ns();
        for (int i = 0; ok && i < S_REFRESH_ITERS / 4; i++) {
            sp_network_t *f = NULL;
            ok = sp_network_load_buffer(v[i & 1], len[i & 1], &f, err, sizeof err) == SP_OK;
            sp_network_destroy(&f);
        }
        *load_us = (double)(sp_bench_now_ns() - t0) / 1e3 / (S_REFRESH_ITERS / 4);
        t0 = sp_bench_now_ns();
        for (int i = 0; ok && i < S_REFRESH_ITERS; i++) {
            uint8_t *b = NULL;
            size_t n = 0;
            ok = sp_network_save_buffer(net, 1, &b, &n) == SP_OK;
            free(b);
        }
        *save_us = (double)(sp_bench_now_ns() - t0) / 1e3 / S_REFRESH_ITERS;
    }
    if (!ok) {
        *update_us = *load_us = *save_us = NAN;
    }
    omp_set_num_threads(saved);
    free(v[0]);
    free(v[1]);
    free(X);
    free(T);
    sp_network_destroy(&w);
    sp_network_destroy(&net);
}

/* Two in-process trainers at once, one forked process each: their summed
 * samples/s, the most two 1-thread workers could reach on this machine
 * (they share its memory bandwidth, caches and, on a VM, its host). */
static double s_inprocess_pair(const s_shape_t *sh)
{
    int fds[2][2];
    pid_t pid[2] = {-1, -1};
    double sum = 0;
    for (int k = 0; k < 2; k++) {
        if (pipe(fds[k]) != 0) {
            return NAN;
        }
        fflush(NULL);
        pid[k] = fork();
        if (pid[k] == 0) {
            close(fds[k][0]);
            double v = s_inprocess_once(1, sh);
            ssize_t w = write(fds[k][1], &v, sizeof v);
            _exit(w == (ssize_t)sizeof v ? 0 : 1);
        }
        close(fds[k][1]);
    }
    for (int k = 0; k < 2; k++) {
        double v = NAN;
        if (pid[k] < 0 || read(fds[k][0], &v, sizeof v) != (ssize_t)sizeof v) {
            v = NAN;
        }
        close(fds[k][0]);
        if (pid[k] > 0) {
            waitpid(pid[k], NULL, 0);
        }
        sum += v;
    }
    return sum;
}

static int s_want_any(const sp_bench_ctx_t *ctx, const char *const *names)
{
    for (; *names; names++) {
        if (sp_bench_wanted(ctx, *names)) {
            return 1;
        }
    }
    return 0;
}

/* One configuration of a comparison: in-process training, two in-process
 * trainers at once, or a coordinator with workers. */
typedef struct {
    int workers; /* S_INPROCESS, S_PAIR, or >= 1 workers */
    int threads; /* each (in-process: this process's) */
    int curve;   /* workers only: every socket encrypted */
    s_env_t env;
    int ready; /* env opened */
    double sps[S_REPS];
} s_config_t;

enum { S_INPROCESS = 0, S_PAIR = -1 };

/* Rounds to run: S_REPS, or fewer with SPATIUM_BENCH_ROUNDS=N (1..S_REPS),
 * for a quick check that every path still measures something (the test
 * suite's use; one round is no comparison). */
static int s_reps(void)
{
    const char *v = getenv("SPATIUM_BENCH_ROUNDS");
    int n = v != NULL ? atoi(v) : 0;
    return n >= 1 && n <= S_REPS ? n : S_REPS;
}

/* Runs every configuration once a round for S_REPS rounds on shape sh,
 * starting the coordinators and workers first (they idle while the others
 * run) and stopping them after. */
static void s_rounds(s_config_t *cfg, int n, const s_shape_t *sh)
{
    for (int i = 0; i < n; i++) {
        cfg[i].ready = cfg[i].workers > 0 &&
                       s_dist_open(&cfg[i].env, cfg[i].workers, cfg[i].threads, sh, cfg[i].curve) == 0;
    }
    for (int k = 0; k < s_reps(); k++) {
        for (int j = 0; j < n; j++) {
            int i = k % 2 ? n - 1 - j : j; /* odd rounds backwards: a drift hits both sides */
            double v = NAN;
            if (cfg[i].workers == S_INPROCESS) {
                v = s_inprocess_once(cfg[i].threads, sh);
            } else if (cfg[i].workers == S_PAIR) {
                v = s_inprocess_pair(sh);
            } else if (cfg[i].ready) {
                v = s_dist_job(&cfg[i].env, sh);
            }
            cfg[i].sps[k] = v;
        }
    }
    for (int i = 0; i < n; i++) {
        if (cfg[i].workers > 0) {
            s_env_stop(&cfg[i].env);
        }
    }
}

/* The median samples/s of a configuration over the rounds. */
static double s_sps(const s_config_t *c)
{
    double v[S_REPS];
    memcpy(v, c->sps, sizeof v);
    return s_median(v, s_reps());
}

/* The median over the rounds of a's samples/s over b's in the same round;
 * every round's ratio goes on a comment line before name's report. */
static double s_ratio(const char *name, const s_config_t *a, const s_config_t *b)
{
    double v[S_REPS];
    printf("# %s by round:", name);
    for (int k = 0; k < s_reps(); k++) {
        v[k] = a->sps[k] / b->sps[k];
        printf(" %.3f", v[k]);
    }
    printf("\n");
    return s_median(v, s_reps());
}

/* The 1-thread comparison at one shape: in-process, 1 worker, 2 workers,
 * two in-process trainers at once (the ceiling of the 2-worker speedup).
 * speedup_names: the 2-worker / 1-worker ratio under each name (aliases). */
static void s_compare_1t(const sp_bench_ctx_t *ctx, const s_shape_t *sh, const char *ratio_name,
                         const char *const *speedup_names)
{
    char n_in[64], n_1w[64], n_2w[64], n_ceil[64];
    snprintf(n_ceil, sizeof n_ceil, "dist_ceiling_2p_1t%s", sh->tag);
    snprintf(n_in, sizeof n_in, "dist_inprocess_1t_sps%s", sh->tag);
    snprintf(n_1w, sizeof n_1w, "dist_1w_1t_sps%s", sh->tag);
    snprintf(n_2w, sizeof n_2w, "dist_2w_1t_sps%s", sh->tag);
    const char *ratios[] = {n_in, n_1w, ratio_name, n_ceil, NULL};
    int want_ratio = s_want_any(ctx, ratios);
    int want_ceil = sp_bench_wanted(ctx, n_ceil);
    int want_speed = sp_bench_wanted(ctx, n_1w) || sp_bench_wanted(ctx, n_2w) ||
                     s_want_any(ctx, speedup_names);
    if (!want_ratio && !want_speed) {
        return;
    }
    /* the wanted configurations only; 1 worker is always measured */
    s_config_t cfg[4] = {{.workers = 1, .threads = 1}};
    int n = 1;
    s_config_t *d1 = &cfg[0], *in1 = &cfg[n], *d2 = NULL, *pair = NULL;
    if (want_ratio) {
        cfg[n++] = (s_config_t){.workers = S_INPROCESS, .threads = 1};
    }
    if (want_speed) {
        d2 = &cfg[n];
        cfg[n++] = (s_config_t){.workers = 2, .threads = 1};
    }
    if (want_ceil) {
        pair = &cfg[n];
        cfg[n++] = (s_config_t){.workers = S_PAIR, .threads = 1};
    }
    s_rounds(cfg, n, sh);
    if (want_ratio) {
        sp_bench_report(n_in, s_sps(in1), "samples/s");
    }
    sp_bench_report(n_1w, s_sps(d1), "samples/s");
    if (want_speed) {
        sp_bench_report(n_2w, s_sps(d2), "samples/s");
    }
    if (want_ratio) {
        sp_bench_report(ratio_name, s_ratio(ratio_name, d1, in1), "x");
    }
    if (want_speed) {
        double speedup = s_ratio(speedup_names[0], d2, d1);
        for (const char *const *nm = speedup_names; *nm; nm++) {
            sp_bench_report(*nm, speedup, "x");
        }
    }
    if (want_ceil) {
        sp_bench_report(n_ceil, s_ratio(n_ceil, pair, in1), "x");
    }
}

void sp_bench_dist(const sp_bench_ctx_t *ctx)
{
    static const char *const all[] = {
        "dist_inprocess_sps", "dist_1w_sps", "dist_1w_ratio", "dist_inprocess_1t_sps",
        "dist_1w_1t_sps", "dist_2w_1t_sps", "dist_2w_speedup", "dist_ratio_1w_b64",
        "dist_speedup_2w_b64", "dist_inprocess_1t_sps_b512", "dist_1w_1t_sps_b512",
        "dist_2w_1t_sps_b512", "dist_ratio_1w_b512", "dist_speedup_2w_b512",
        "dist_bytes_per_step", "dist_bytes_per_step_2w", "dist_bytes_per_step_b512",
        "dist_bytes_per_step_2w_b512", "dist_model_update_us", "dist_model_load_us",
        "dist_model_save_us", "dist_ceiling_2p_1t", "dist_ceiling_2p_1t_b512",
        "dist_inprocess_1t_sps_b2048", "dist_1w_1t_sps_b2048", "dist_2w_1t_sps_b2048",
        "dist_ratio_1w_b2048", "dist_speedup_2w_b2048", "dist_ceiling_2p_1t_b2048",
        "dist_bytes_per_step_b2048", "dist_bytes_per_step_2w_b2048",
        "dist_inprocess_1t_sps_b64p64", "dist_1w_1t_sps_b64p64", "dist_2w_1t_sps_b64p64",
        "dist_ratio_1w_b64p64", "dist_speedup_2w_b64p64", "dist_ceiling_2p_1t_b64p64",
        "dist_inprocess_1t_sps_b8192", "dist_1w_1t_sps_b8192", "dist_2w_1t_sps_b8192",
        "dist_ratio_1w_b8192", "dist_speedup_2w_b8192", "dist_ceiling_2p_1t_b8192",
        "dist_bytes_per_step_b8192", "dist_bytes_per_step_2w_b8192", "dist_curve_1w_1t_sps_b512",
        "dist_curve_cost_1w_b512", "dist_curve_2w_1t_sps_b2048", "dist_curve_cost_2w_b2048",
        "dist_dataset_bytes", "dist_worker_peak_mb", "dist_coordinator_peak_mb",
        "dist_1w_ratio_b64p64", NULL};
    if (!s_want_any(ctx, all)) {
        return;
    }
    const s_shape_t b64 = {64, 32, "", S_SAMPLES}, b64p = {64, 64, "_b64p64", S_SAMPLES},
                    b512 = {512, 128, "_b512", S_SAMPLES}, b2048 = {2048, 256, "_b2048", S_SAMPLES},
                    b8192 = {8192, 256, "_b8192", S_SAMPLES_BIG};
    int cores = omp_get_num_procs();
    int real = access(S_FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0 &&
               access(S_FMNIST_DIR "/train-labels-idx1-ubyte.gz", R_OK) == 0;
    printf("# dist: 784-128-10, 4 bits, %s, %d samples (%d at batch 8192), coordinator and "
           "workers on this machine (%d cores): 2 workers x 1 thread + the coordinator are 3 "
           "processes on %d cores\n",
           real ? "the first Fashion-MNIST training images" : "synthetic 28x28 images (Fashion-MNIST "
                                                          "is not installed)",
           S_SAMPLES, S_SAMPLES_BIG, cores, cores);
    fflush(stdout);
    if (sp_bench_wanted(ctx, "dist_dataset_bytes")) {
        /* what the coordinator stores and each worker downloads once */
        sp_bench_report("dist_dataset_bytes", s_dataset_bytes(S_SAMPLES), "bytes");
    }
    if (sp_bench_wanted(ctx, "dist_worker_peak_mb") ||
        sp_bench_wanted(ctx, "dist_coordinator_peak_mb")) {
        double wmb, cmb;
        s_peaks(&b8192, &wmb, &cmb);
        sp_bench_report("dist_worker_peak_mb", wmb, "MB");
        sp_bench_report("dist_coordinator_peak_mb", cmb, "MB");
    }
    if (sp_bench_wanted(ctx, "dist_model_update_us") || sp_bench_wanted(ctx, "dist_model_load_us") ||
        sp_bench_wanted(ctx, "dist_model_save_us")) {
        double up, load, save;
        s_model_costs(&up, &load, &save);
        sp_bench_report("dist_model_update_us", up, "us");
        sp_bench_report("dist_model_load_us", load, "us");
        sp_bench_report("dist_model_save_us", save, "us");
    }
    /* all cores, batch 64: the original comparison */
    if (sp_bench_wanted(ctx, "dist_inprocess_sps") || sp_bench_wanted(ctx, "dist_1w_sps") ||
        sp_bench_wanted(ctx, "dist_1w_ratio")) {
        s_config_t c[2] = {{.workers = 1, .threads = cores}, {.workers = S_INPROCESS, .threads = cores}};
        s_rounds(c, 2, &b64);
        sp_bench_report("dist_inprocess_sps", s_sps(&c[1]), "samples/s");
        sp_bench_report("dist_1w_sps", s_sps(&c[0]), "samples/s");
        sp_bench_report("dist_1w_ratio", s_ratio("dist_1w_ratio", &c[0], &c[1]), "x");
    }
    /* all cores, batch 64 in one leaf: the same step without the tree's
     * second parallel region */
    if (sp_bench_wanted(ctx, "dist_1w_ratio_b64p64")) {
        s_config_t c[2] = {{.workers = 1, .threads = cores},
                           {.workers = S_INPROCESS, .threads = cores}};
        s_rounds(c, 2, &b64p);
        sp_bench_report("dist_1w_ratio_b64p64", s_ratio("dist_1w_ratio_b64p64", &c[0], &c[1]), "x");
    }
    /* one thread per process (the coordinator is a third process): batch 64
     * under the original names and the new ones, then batch 512 */
    static const char *const speed64[] = {"dist_2w_speedup", "dist_speedup_2w_b64", NULL};
    static const char *const speed512[] = {"dist_speedup_2w_b512", NULL};
    static const char *const speed2048[] = {"dist_speedup_2w_b2048", NULL};
    static const char *const speed64p[] = {"dist_speedup_2w_b64p64", NULL};
    static const char *const speed8192[] = {"dist_speedup_2w_b8192", NULL};
    s_compare_1t(ctx, &b64, "dist_ratio_1w_b64", speed64);
    /* batch 64 at the client's default partition, min(128, batch): one leaf */
    s_compare_1t(ctx, &b64p, "dist_ratio_1w_b64p64", speed64p);
    s_compare_1t(ctx, &b512, "dist_ratio_1w_b512", speed512);
    s_compare_1t(ctx, &b2048, "dist_ratio_1w_b2048", speed2048);
    s_compare_1t(ctx, &b8192, "dist_ratio_1w_b8192", speed8192);
    /* CURVE against plain, side by side: one worker at batch 512, two at
     * batch 2048 (split steps: the most traffic per sample) */
    const struct {
        int workers;
        const s_shape_t *sh;
        const char *sps, *cost;
    } sec[2] = {{1, &b512, "dist_curve_1w_1t_sps_b512", "dist_curve_cost_1w_b512"},
                {2, &b2048, "dist_curve_2w_1t_sps_b2048", "dist_curve_cost_2w_b2048"}};
    for (int i = 0; i < 2; i++) {
        if (!sp_bench_wanted(ctx, sec[i].sps) && !sp_bench_wanted(ctx, sec[i].cost)) {
            continue;
        }
        if (!sp_curve_available()) {
            printf("# dist: this libzmq has no CURVE: %s skipped\n", sec[i].sps);
            continue;
        }
        s_config_t c[2] = {{.workers = sec[i].workers, .threads = 1, .curve = 1},
                           {.workers = sec[i].workers, .threads = 1}};
        s_rounds(c, 2, sec[i].sh);
        sp_bench_report(sec[i].sps, s_sps(&c[0]), "samples/s");
        sp_bench_report(sec[i].cost, s_ratio(sec[i].cost, &c[0], &c[1]), "x");
    }
    if (sp_bench_wanted(ctx, "dist_bytes_per_step")) {
        sp_bench_report("dist_bytes_per_step", s_bytes_per_step(1, &b64), "bytes");
        sp_bench_report("dist_bytes_per_step_2w", s_bytes_per_step(2, &b64), "bytes");
        sp_bench_report("dist_bytes_per_step_b512", s_bytes_per_step(1, &b512), "bytes");
        sp_bench_report("dist_bytes_per_step_2w_b512", s_bytes_per_step(2, &b512), "bytes");
        sp_bench_report("dist_bytes_per_step_b2048", s_bytes_per_step(1, &b2048), "bytes");
        sp_bench_report("dist_bytes_per_step_2w_b2048", s_bytes_per_step(2, &b2048), "bytes");
        sp_bench_report("dist_bytes_per_step_b8192", s_bytes_per_step(1, &b8192), "bytes");
        sp_bench_report("dist_bytes_per_step_2w_b8192", s_bytes_per_step(2, &b8192), "bytes");
    }
}
