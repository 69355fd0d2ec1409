/* jobs: training jobs from submission to their end, one at a time in
 * submission order (queued -> running -> done | failed | cancelled), with
 * synchronous data parallelism: each step's batch is cut into fixed-size
 * partitions, workers return per-partition gradients, and the coordinator
 * adds them in partition order before one optimizer step. Invariants: a
 * partition's result counts once, only for the (job, version, step) it was
 * sent for, and only from the worker that holds it; the model after a step
 * depends on nothing but the dataset, the settings and the seed. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ckpt.h"
#include "common/error.h"
#include "common/file.h"
#include "common/plan.h"
#include "common/reduce.h"
#include "common/rng.h"
#include "coordinator/coordinator.h"
#include "coordinator/store.h"

#define S_JOBDEF_MAX_BYTES (1u << 20)
#define S_CKPT_MAX_BYTES ((size_t)SP_MSG_MAX_BYTES * 4)
#define S_MODEL_MAX_BYTES ((size_t)SP_MSG_MAX_BYTES)
#define S_STEP_RECORDS_PER_EPOCH 50 /* at most this many step records per epoch */
#define S_VAL_CHUNK 256             /* validation rows per forward call */

const char *sp_jobs_state_name(sp_job_state_t s)
{
    switch (s) {
    case SP_JOB_QUEUED:
        return "queued";
    case SP_JOB_RUNNING:
        return "running";
    case SP_JOB_DONE:
        return "done";
    case SP_JOB_FAILED:
        return "failed";
    case SP_JOB_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

static int s_state_parse(const char *s, sp_job_state_t *out)
{
    for (int i = SP_JOB_QUEUED; i <= SP_JOB_CANCELLED; i++) {
        if (strcmp(s, sp_jobs_state_name((sp_job_state_t)i)) == 0) {
            *out = (sp_job_state_t)i;
            return 1;
        }
    }
    return 0;
}

sp_job_t *sp_jobs_find(sp_jobs_t *j, uint64_t id)
{
    for (size_t i = 0; i < j->n; i++) {
        if (j->v[i].id == id) {
            return &j->v[i];
        }
    }
    return NULL;
}

static sp_job_t *s_run_job(sp_coord_t *c)
{
    return c->run ? sp_jobs_find(&c->jobs, c->run->job_id) : NULL;
}

/* --- persistence -------------------------------------------------------- */

/* <job>/state: "state=<s> epoch=<e> step=<n> samples=<n>\n<error text>\n",
 * written by the background writer; with sync, waits until it is on disk. */
static int s_save_state(sp_coord_t *c, const sp_job_t *job, int sync)
{
    char path[600];
    size_t cap = SP_TEXT_MAX + 200;
    uint8_t *text = malloc(cap);
    if (text == NULL) {
        return SP_E_NOMEM;
    }
    snprintf(path, sizeof path, "%s/state", job->dir);
    int n = snprintf((char *)text, cap, "state=%s epoch=%u step=%llu samples=%llu\n%s\n",
                     sp_jobs_state_name(job->state), job->epoch, (unsigned long long)job->step,
                     (unsigned long long)job->samples_seen, job->error);
    int rc = sp_store_writer_put(c->writer, path, &text, (size_t)n);
    if (rc == SP_OK && sync) {
        rc = sp_store_writer_flush(c->writer);
    }
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "job %llu: cannot write %s", (unsigned long long)job->id, path);
    }
    return rc;
}

static void s_load_state(sp_job_t *job)
{
    char path[600];
    snprintf(path, sizeof path, "%s/state", job->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    job->state = SP_JOB_QUEUED;
    if (sp_store_read_all(path, 4096, &buf, &len) != SP_OK) {
        return;
    }
    char *text = calloc(1, len + 1);
    if (text == NULL) {
        free(buf);
        return;
    }
    memcpy(text, buf, len);
    free(buf);
    char st[32] = "";
    unsigned epoch = 0;
    unsigned long long step = 0, samples = 0;
    if (sscanf(text, "state=%31s epoch=%u step=%llu samples=%llu", st, &epoch, &step, &samples) ==
            4 &&
        s_state_parse(st, &job->state)) {
        job->epoch = epoch;
        job->step = step;
        job->samples_seen = samples;
        char *nl = strchr(text, '\n');
        if (nl != NULL) {
            snprintf(job->error, sizeof job->error, "%s", nl + 1);
            char *e = strchr(job->error, '\n');
            if (e != NULL) {
                *e = '\0';
            }
        }
    }
    free(text);
}

/* Loss and accuracies of the last epoch record, for a job's status. */
static void s_load_summary(sp_job_t *job)
{
    job->loss = job->accuracy = job->val_accuracy = NAN;
    uint64_t n = job->n_records;
    uint64_t from = n > 256 ? n - 256 : 0;
    if (n == from) {
        return;
    }
    sp_metric_t *r = calloc((size_t)(n - from), sizeof *r);
    if (r == NULL) {
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.bin", job->dir);
    size_t got = 0;
    if (sp_store_pread(path, from * sizeof *r, r, (size_t)(n - from) * sizeof *r, &got) == SP_OK) {
        for (size_t i = got / sizeof *r; i-- > 0;) {
            if (strncmp(r[i].kind, "epoch", sizeof r[i].kind) == 0) {
                job->loss = r[i].loss;
                job->accuracy = r[i].accuracy;
                job->val_accuracy = r[i].val_accuracy;
                break;
            }
        }
    }
    free(r);
}

static int s_save_def(const sp_job_t *job)
{
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_TRAIN);
    m.u.train = job->def;
    uint8_t hdr[SP_MSG_HEADER_BYTES];
    uint8_t *body = NULL;
    size_t body_len = 0;
    int rc = sp_msg_encode(&m, hdr, &body, &body_len);
    if (rc != SP_OK) {
        return rc;
    }
    uint8_t *buf = malloc(sizeof hdr + body_len);
    if (buf == NULL) {
        free(body);
        return SP_E_NOMEM;
    }
    memcpy(buf, hdr, sizeof hdr);
    memcpy(buf + sizeof hdr, body, body_len);
    free(body);
    char path[600];
    snprintf(path, sizeof path, "%s/job.def", job->dir);
    rc = sp_file_write_atomic(path, buf, sizeof hdr + body_len);
    free(buf);
    return rc;
}

static int s_load_def(sp_job_t *job, char *err, size_t errlen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/job.def", job->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_store_read_all(path, S_JOBDEF_MAX_BYTES, &buf, &len);
    if (rc != SP_OK) {
        snprintf(err, errlen, "cannot read %.200s", path);
        return rc;
    }
    if (len < SP_MSG_HEADER_BYTES) {
        free(buf);
        snprintf(err, errlen, "%.200s is truncated", path);
        return SP_E_INPUT;
    }
    sp_msg_t m;
    rc = sp_msg_decode(buf, SP_MSG_HEADER_BYTES, buf + SP_MSG_HEADER_BYTES,
                       len - SP_MSG_HEADER_BYTES, &m, err, errlen);
    free(buf);
    if (rc != SP_OK) {
        return rc;
    }
    if (m.type != SP_MSG_TRAIN) {
        sp_msg_fini(&m);
        snprintf(err, errlen, "%.200s does not hold a train request", path);
        return SP_E_INPUT;
    }
    job->def = m.u.train;
    sp_msg_fini(&m);
    return SP_OK;
}

static int s_save_counter(sp_coord_t *c)
{
    char path[600], text[32];
    snprintf(path, sizeof path, "%s/next_job", c->cfg.state_dir);
    int n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)c->jobs.next_id);
    return sp_file_write_atomic(path, text, (size_t)n);
}

static sp_job_t *s_jobs_add(sp_jobs_t *j)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        sp_job_t *v = realloc(j->v, cap * sizeof *v);
        if (v == NULL) {
            return NULL;
        }
        j->v = v;
        j->cap = cap;
    }
    sp_job_t *job = &j->v[j->n++];
    memset(job, 0, sizeof *job);
    job->loss = job->accuracy = job->val_accuracy = NAN;
    return job;
}

static int s_cmp_job(const void *a, const void *b)
{
    const sp_job_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int sp_jobs_load(sp_coord_t *c)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/jobs", c->cfg.state_dir);
    if (sp_store_mkdirs(dir) != SP_OK) {
        sp_log(SP_LOG_ERROR, "cannot create %s: %s", dir, strerror(errno));
        return SP_E_IO;
    }
    c->jobs.next_id = 1;
    char path[600];
    snprintf(path, sizeof path, "%s/next_job", c->cfg.state_dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (sp_store_read_all(path, 64, &buf, &len) == SP_OK) {
        char text[65] = "";
        memcpy(text, buf, len);
        free(buf);
        unsigned long long v = strtoull(text, NULL, 10);
        if (v > c->jobs.next_id) {
            c->jobs.next_id = v;
        }
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        sp_log(SP_LOG_ERROR, "cannot open %s: %s", dir, strerror(errno));
        return SP_E_IO;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(e->d_name, &end, 10);
        if (errno != 0 || end == e->d_name || *end != '\0' || id == 0) {
            continue;
        }
        sp_job_t *job = s_jobs_add(&c->jobs);
        if (job == NULL) {
            break;
        }
        job->id = id;
        if (snprintf(job->dir, sizeof job->dir, "%s/%s", dir, e->d_name) >= (int)sizeof job->dir) {
            c->jobs.n--;
            continue;
        }
        sp_store_clean_tmp(job->dir);
        char err[SP_TEXT_MAX];
        if (s_load_def(job, err, sizeof err) != SP_OK) {
            sp_log(SP_LOG_ERROR, "job %llu: %s; skipped", id, err);
            c->jobs.n--;
            continue;
        }
        s_load_state(job);
        job->n_records = sp_metrics_count(job);
        s_load_summary(job);
        if (id >= c->jobs.next_id) {
            c->jobs.next_id = id + 1;
        }
    }
    closedir(d);
    if (c->jobs.n > 1) {
        qsort(c->jobs.v, c->jobs.n, sizeof *c->jobs.v, s_cmp_job);
    }
    sp_log(SP_LOG_INFO, "%zu job(s) in %s", c->jobs.n, dir);
    return SP_OK;
}

/* --- the running job ----------------------------------------------------- */

static void s_parts_free(sp_run_t *r)
{
    if (r->parts != NULL) {
        for (uint32_t i = 0; i < r->shape.n_parts; i++) {
            free(r->parts[i].grad);
            free(r->parts[i].hits);
        }
        free(r->parts);
        r->parts = NULL;
    }
    r->shape.n_parts = 0;
}

static void s_run_free(sp_run_t **rp)
{
    sp_run_t *r = *rp;
    if (r == NULL) {
        return;
    }
    s_parts_free(r);
    sp_network_destroy(&r->net);
    sp_dataset_fini(&r->val);
    free(r->perm);
    free(r->model);
    free(r->ahead);
    free(r);
    *rp = NULL;
}

/* Every worker forgets what it held of the running job, and its speed (a
 * job's network sets the cost of a sample). */
static void s_workers_release(sp_coord_t *c)
{
    for (size_t i = 0; i < c->workers.n; i++) {
        c->workers.v[i].in_flight = 0;
        c->workers.v[i].n_speeds = 0;
        c->workers.v[i].speed_step = 0;
    }
}

void sp_jobs_fini(sp_coord_t *c)
{
    s_run_free(&c->run);
    free(c->jobs.v);
    memset(&c->jobs, 0, sizeof c->jobs);
}

static void s_perm(sp_run_t *r, uint64_t seed)
{
    for (uint32_t i = 0; i < r->n_samples; i++) {
        r->perm[i] = i;
    }
    sp_rng_t rng;
    sp_rng_init_stream(&rng, seed, r->epoch);
    sp_rng_shuffle_u32(&rng, r->perm, r->n_samples);
}

/* Sizes of the gradient and hit vectors of the current topology. */
static void s_sizes(sp_run_t *r)
{
    r->n_params = sp_network_n_params(r->net);
    r->n_hits = sp_network_n_hits(r->net);
}

/* True while the master network lacks steps a lone worker applied. */
static int s_lagging(const sp_run_t *r)
{
    return r->net_version != r->version;
}

/* The model file WITH training state of the current version: what a worker
 * needs to compute steps and apply them itself. Made once per version, and
 * only when some worker needs it (a join, a topology change, a resync). */
static int s_model_bytes(sp_run_t *r)
{
    uint64_t v = r->version_base + r->version;
    if (r->model != NULL && r->model_version == v) {
        return SP_OK;
    }
    free(r->model);
    r->model = NULL;
    r->model_len = 0;
    r->model_version = 0;
    int rc = sp_network_save_buffer(r->net, 1, &r->model, &r->model_len);
    if (rc == SP_OK) {
        r->model_version = v;
    }
    return rc;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the values in a ring of `cap` that has had `noted` values
 * written (the lower middle of an even count; the latest cap when it went
 * round), 0 when empty. cap <= 64. */
static double s_ring_median(const double *ring, uint64_t noted, size_t cap)
{
    size_t n = noted < cap ? (size_t)noted : cap;
    if (n == 0) {
        return 0;
    }
    double v[64];
    SP_ASSERT(cap <= sizeof v / sizeof v[0]);
    memcpy(v, ring, n * sizeof *v);
    qsort(v, n, sizeof *v, s_cmp_double);
    return v[(n - 1) / 2];
}

/* The workers' compute time per sample: the median of the latest
 * SP_COORD_SPEED_RESULTS results (the lower middle of an even count), 0
 * before any. A worker preempted in the middle of a partition reports a
 * time many times its speed; a running mean dragged the split decision for
 * dozens of results after one such report, the median ignores it and still
 * follows a real change within a few results. */
static double s_us_per_sample(const sp_run_t *r)
{
    return s_ring_median(r->us_recent, r->n_results, SP_COORD_SPEED_RESULTS);
}

/* True when growth or pruning is decided once `done` steps are complete
 * (s_grow_prune): the topology may change there, and the master is needed. */
static int s_topology_due(const sp_job_t *job, uint64_t done)
{
    const sp_msg_train_t *d = &job->def;
    return (d->growth_every > 0 && done % d->growth_every == 0) ||
           (d->prune_every > 0 && done % d->prune_every == 0);
}

/* Fewest samples in a share of a split step. Splitting a step in two saves
 * one share's compute and costs a round trip (SP_COORD_SPLIT_COST_US), so
 * unless the job fixed it, a share must hold at least that much compute at
 * the speed workers have reported. The cut never changes the model. */
static uint32_t s_min_node(const sp_run_t *r, const sp_job_t *job)
{
    if (job->def.min_node > 0) {
        return job->def.min_node;
    }
    double us = s_us_per_sample(r);
    if (!(us > 0)) {
        return SP_MIN_NODE_DEFAULT;
    }
    double n = ceil(SP_COORD_SPLIT_COST_US / us);
    return n < 1 ? 1 : (n > (double)(1u << 20) ? 1u << 20 : (uint32_t)n);
}

static uint32_t s_live_workers(const sp_coord_t *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->workers.n; i++) {
        n += c->workers.v[i].alive != 0;
    }
    return n;
}

/* Samples in step `step_in_epoch` of the epoch (the last may be short). */
static uint32_t s_batch_len(const sp_run_t *r, const sp_job_t *job, uint64_t step_in_epoch)
{
    uint64_t left = r->n_samples - step_in_epoch * job->def.batch;
    return (uint32_t)(left < job->def.batch ? left : job->def.batch);
}

static uint32_t s_plan(sp_coord_t *c, const sp_run_t *r, const sp_plan_step_t *shape,
                       sp_part_t *parts, uint32_t want, uint32_t min_node);
static int s_claim_ahead(sp_coord_t *c, sp_run_t *r);

/* Cuts the next batch into partitions and the partitions into nodes of the
 * reduction tree: the root, split largest first until every live worker can
 * have one (so one worker gets the whole step and applies it itself). */
static int s_step_begin(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    s_parts_free(r);
    r->shape = sp_plan_step(s_batch_len(r, job, r->step_in_epoch), job->def.partition);
    r->parts = calloc(r->shape.n_parts, sizeof *r->parts);
    if (r->parts == NULL) {
        r->shape.n_parts = 0;
        return SP_E_NOMEM;
    }
    r->sync_pending = 0;
    if (s_claim_ahead(c, r)) {
        return SP_OK; /* cut, planned and sent when it was sent ahead */
    }
    /* A lagging master cannot serve a split step (nor the model a second
     * worker would need): the step stays whole, with sync set if a split
     * is wanted (s_sync_due). */
    r->n_nodes =
        s_plan(c, r, &r->shape, r->parts, s_lagging(r) ? 1 : s_live_workers(c), s_min_node(r, job));
    return SP_OK;
}

static void s_set_state(sp_coord_t *c, sp_job_t *job, sp_job_state_t st, const char *error)
{
    job->state = st;
    snprintf(job->error, sizeof job->error, "%s", error ? error : "");
    (void)s_save_state(c, job, 1);
}

/* Writes <job>/model.spm (no training state) from the running network. */
static int s_save_final_model(sp_run_t *r, const sp_job_t *job)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_network_save_buffer(r->net, 0, &buf, &len);
    if (rc != SP_OK) {
        return rc;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.spm", job->dir);
    rc = sp_file_write_atomic(path, buf, len);
    free(buf);
    return rc;
}

/* Ends the running job in state st (done, failed, cancelled). */
static void s_run_end(sp_coord_t *c, sp_job_state_t st, const char *error)
{
    sp_job_t *job = s_run_job(c);
    if (job != NULL) {
        if (c->run->net != NULL && s_save_final_model(c->run, job) != SP_OK && st == SP_JOB_DONE) {
            st = SP_JOB_FAILED;
            error = "cannot write the final model";
        }
        s_set_state(c, job, st, error);
        sp_log(st == SP_JOB_FAILED ? SP_LOG_WARN : SP_LOG_INFO, "job %llu %s%s%s",
               (unsigned long long)job->id, sp_jobs_state_name(st), error ? ": " : "",
               error ? error : "");
    }
    s_workers_release(c);
    s_run_free(&c->run);
}

static int s_write_checkpoint(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = s_run_job(c);
    if (r == NULL || job == NULL || r->net == NULL) {
        return SP_OK;
    }
    if (s_lagging(r)) {
        /* The master lacks the lone worker's latest steps: the checkpoint on
         * disk (the last synced state) stands until the next sync. */
        return SP_OK;
    }
    uint8_t *model = NULL;
    size_t model_len = 0;
    int rc = sp_network_save_buffer(r->net, 1, &model, &model_len);
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "job %llu: cannot save the model for a checkpoint",
               (unsigned long long)job->id);
        return rc;
    }
    uint64_t now = sp_coord_now_ms();
    const sp_ckpt_t ck = {.job = job->id,
                          .epoch = r->epoch,
                          .step_in_epoch = r->step_in_epoch,
                          .global_step = r->global_step,
                          .version = r->version,
                          .samples_seen = job->samples_seen,
                          .n_records = job->n_records,
                          .train_ms = r->train_ms_base + (now - r->t_start_ms),
                          .ep_loss = r->ep_loss,
                          .ep_correct = r->ep_correct,
                          .ep_samples = r->ep_samples,
                          .rec_loss = r->rec_loss,
                          .rec_correct = r->rec_correct,
                          .rec_samples = r->rec_samples,
                          .rec_steps = r->rec_steps};
    uint8_t *buf = NULL;
    size_t total = 0;
    rc = sp_ckpt_encode(&ck, model, model_len, &buf, &total);
    free(model);
    if (rc != SP_OK) {
        return rc;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.bin", job->dir);
    rc = sp_store_writer_put(c->writer, path, &buf, total);
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "job %llu: cannot queue %s", (unsigned long long)job->id, path);
        return rc;
    }
    /* The state file carries the progress shown by status after a restart. */
    (void)s_save_state(c, job, 0);
    r->last_ckpt_ms = now;
    return SP_OK;
}

void sp_jobs_checkpoint(sp_coord_t *c)
{
    if (c->run != NULL) {
        (void)s_write_checkpoint(c);
    }
    (void)sp_store_writer_flush(c->writer);
}

/* Reads <job>/checkpoint.bin: progress into ck, network into *net. */
static int s_read_checkpoint(const sp_job_t *job, sp_ckpt_t *ck, sp_network_t **net, char *err,
                             size_t errlen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.bin", job->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_store_read_all(path, S_CKPT_MAX_BYTES, &buf, &len);
    if (rc != SP_OK) {
        snprintf(err, errlen, "no checkpoint");
        return rc;
    }
    const uint8_t *model = NULL;
    size_t model_len = 0;
    rc = sp_ckpt_decode(buf, len, ck, &model, &model_len, err, errlen);
    if (rc != SP_OK) {
        goto out;
    }
    rc = SP_E_INPUT;
    if (ck->job != job->id) {
        snprintf(err, errlen, "checkpoint: belongs to job %llu, not %llu",
                 (unsigned long long)ck->job, (unsigned long long)job->id);
        goto out;
    }
    if (ck->version == 0) {
        snprintf(err, errlen, "checkpoint: model version 0");
        goto out;
    }
    rc = sp_network_load_buffer(model, model_len, net, err, errlen);
out:
    free(buf);
    return rc;
}

static void s_fail(sp_coord_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fail(sp_coord_t *c, const char *fmt, ...)
{
    char msg[SP_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_run_end(c, SP_JOB_FAILED, msg);
}

static void s_net_config(const sp_msg_train_t *t, int classify, sp_net_config_t *cfg)
{
    sp_net_config_default(cfg);
    cfg->bits = (uint8_t)t->bits;
    cfg->mode = strcmp(t->mode, "local") == 0 ? SP_MODE_LOCAL : SP_MODE_BACKPROP;
    if (strcmp(t->loss, "mse") == 0) {
        cfg->loss = SP_LOSS_MSE;
    } else if (strcmp(t->loss, "xent") == 0) {
        cfg->loss = SP_LOSS_XENT;
    } else {
        cfg->loss = classify ? SP_LOSS_XENT : SP_LOSS_MSE;
    }
    cfg->lr = (float)t->lr;
    cfg->momentum = (float)t->momentum;
    cfg->seed = t->seed;
    cfg->growth = t->growth_every > 0;
    if (t->growth_every > 0) {
        cfg->growth_threshold = (float)t->growth_threshold;
    }
}

/* Counts the starts of a job in <job>/starts (durably, before any work is
 * sent) and returns the new count; 0 when it cannot be written. */
static uint64_t s_count_start(const sp_job_t *job)
{
    char path[600], text[32] = "";
    snprintf(path, sizeof path, "%s/starts", job->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t n = 0;
    if (sp_store_read_all(path, 31, &buf, &len) == SP_OK) {
        memcpy(text, buf, len);
        free(buf);
        n = strtoull(text, NULL, 10);
    }
    n++;
    int k = snprintf(text, sizeof text, "%llu\n", (unsigned long long)n);
    return sp_file_write_atomic(path, text, (size_t)k) == SP_OK ? n : 0;
}

/* The neurons' design point is inputs in [0, 1]. Features of the training
 * set that already lie there are left alone; any other feature is mapped onto
 * [0, 1] by its training minimum and maximum (a constant one onto 0), through
 * the model's input transform, so workers, validation and `spatium eval` all
 * see the same scaling. Nothing is set when every feature is in [0, 1]. */
static int s_scale_inputs(sp_run_t *r, char *err, size_t errlen)
{
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    int rc = sp_datasets_read(&r->ds, &d, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    uint32_t F = d.n_features;
    float *lo = malloc(F * sizeof *lo), *hi = malloc(F * sizeof *hi);
    float *off = malloc(F * sizeof *off), *scale = malloc(F * sizeof *scale);
    rc = SP_E_NOMEM;
    if (lo && hi && off && scale && d.n_samples > 0) {
        sp_dataset_feature_range(&d, lo, hi);
        int any = 0;
        for (uint32_t i = 0; i < F; i++) {
            if (lo[i] >= 0.0f && hi[i] <= 1.0f) {
                off[i] = 0.0f;
                scale[i] = 1.0f;
            } else {
                double range = (double)hi[i] - (double)lo[i];
                off[i] = lo[i];
                scale[i] = range > 0.0 ? (float)(1.0 / range) : 0.0f;
                any = 1;
            }
        }
        rc = any ? sp_network_set_input_transform(r->net, off, scale) : SP_OK;
        if (rc != SP_OK) {
            snprintf(err, errlen, "%s", sp_strerror(rc));
        }
    } else if (d.n_samples == 0) {
        snprintf(err, errlen, "empty training set");
        rc = SP_E_INPUT;
    }
    free(lo);
    free(hi);
    free(off);
    free(scale);
    sp_dataset_fini(&d);
    return rc;
}

/* Starts (or resumes from its checkpoint) a queued job. */
static void s_start(sp_coord_t *c, sp_job_t *job)
{
    sp_run_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return; /* try again at the next tick */
    }
    c->run = r;
    r->job_id = job->id;
    job->state = SP_JOB_RUNNING;
    const sp_dsentry_t *e = sp_datasets_find(&c->datasets, job->def.dataset);
    if (e == NULL) {
        s_fail(c, "dataset '%s' is gone", job->def.dataset);
        return;
    }
    r->ds = *e;
    r->n_samples = e->info.samples;
    r->classify = strcmp(e->info.task, "classify") == 0;
    char err[SP_TEXT_MAX] = "";
    if (job->def.validation[0] != '\0') {
        const sp_dsentry_t *v = sp_datasets_find(&c->datasets, job->def.validation);
        if (v == NULL || sp_datasets_read(v, &r->val, err, sizeof err) != SP_OK) {
            s_fail(c, "validation dataset '%s': %s", job->def.validation, v == NULL ? "gone" : err);
            return;
        }
    }
    r->perm = malloc((size_t)r->n_samples * sizeof *r->perm);
    if (r->perm == NULL || r->n_samples == 0) {
        s_fail(c, "out of memory for the permutation");
        return;
    }
    r->steps_per_epoch = (r->n_samples + job->def.batch - 1) / job->def.batch;
    uint64_t starts = s_count_start(job);
    if (starts == 0 || starts >= (1u << 20)) {
        s_fail(c, "cannot record the start in the state directory");
        return;
    }
    r->version_base = (starts - 1) << 40;
    sp_ckpt_t ck;
    memset(&ck, 0, sizeof ck);
    int rc = s_read_checkpoint(job, &ck, &r->net, err, sizeof err);
    if (rc == SP_OK && (ck.epoch >= job->def.epochs || ck.step_in_epoch >= r->steps_per_epoch)) {
        rc = SP_E_INPUT;
        snprintf(err, sizeof err, "checkpoint progress out of range");
        sp_network_destroy(&r->net);
    }
    if (rc == SP_OK) {
        r->epoch = ck.epoch;
        r->step_in_epoch = ck.step_in_epoch;
        r->global_step = ck.global_step;
        r->version = ck.version;
        job->samples_seen = ck.samples_seen;
        job->step = ck.global_step;
        r->train_ms_base = ck.train_ms;
        r->ep_loss = ck.ep_loss;
        r->ep_correct = ck.ep_correct;
        r->ep_samples = ck.ep_samples;
        r->rec_loss = ck.rec_loss;
        r->rec_correct = ck.rec_correct;
        r->rec_samples = ck.rec_samples;
        r->rec_steps = ck.rec_steps;
        if (sp_metrics_truncate(job, ck.n_records) != SP_OK) {
            s_fail(c, "cannot cut metrics back to the checkpoint");
            return;
        }
        sp_log(SP_LOG_INFO, "job %llu resumes at epoch %u step %llu (version %llu)",
               (unsigned long long)job->id, r->epoch + 1, (unsigned long long)r->step_in_epoch,
               (unsigned long long)r->version);
    } else {
        if (rc != SP_E_NOTFOUND) {
            sp_log(SP_LOG_WARN, "job %llu: %s; starting from the beginning",
                   (unsigned long long)job->id, err);
        }
        sp_net_config_t cfg;
        s_net_config(&job->def, r->classify, &cfg);
        r->net = sp_network_new(job->def.layers, job->def.n_layers, &cfg);
        if (r->net == NULL) {
            s_fail(c, "cannot build the network");
            return;
        }
        if (s_scale_inputs(r, err, sizeof err) != SP_OK) {
            s_fail(c, "cannot scale the inputs: %s", err);
            return;
        }
        r->version = 1;
        job->samples_seen = 0;
        job->step = 0;
        if (sp_metrics_truncate(job, 0) != SP_OK) {
            s_fail(c, "cannot reset the metrics files");
            return;
        }
    }
    job->epoch = r->epoch + 1;
    r->net_version = r->version;
    s_perm(r, job->def.seed);
    s_sizes(r);
    if (s_step_begin(c, r, job) != SP_OK) {
        s_fail(c, "cannot prepare the first step");
        return;
    }
    uint64_t now = sp_coord_now_ms();
    r->t_start_ms = r->rec_t0_ms = r->ep_t0_ms = r->last_ckpt_ms = now;
    (void)s_save_state(c, job, 0);
    sp_log(SP_LOG_INFO, "job %llu running: %u samples, %llu steps per epoch, %zu parameters",
           (unsigned long long)job->id, r->n_samples, (unsigned long long)r->steps_per_epoch,
           r->n_params);
}

/* --- dispatch ------------------------------------------------------------ */

/* True when wk holds the run's current model version. */
static int s_has_current(const sp_run_t *r, const sp_worker_t *wk)
{
    return wk->model_job == r->job_id && wk->model_version == r->version_base + r->version;
}

/* The live worker with the fewest nodes in flight; among equals, one that
 * holds the current version (it needs no model). */
static sp_worker_t *s_pick_worker(sp_coord_t *c)
{
    const sp_run_t *r = c->run;
    sp_worker_t *best = NULL;
    for (size_t i = 0; i < c->workers.n; i++) {
        sp_worker_t *wk = &c->workers.v[i];
        if (!wk->alive || wk->in_flight >= SP_COORD_MAX_INFLIGHT ||
            (s_lagging(r) && wk->id != r->solo_worker)) {
            continue;
        }
        if (best == NULL || wk->in_flight < best->in_flight ||
            (wk->in_flight == best->in_flight && s_has_current(r, wk) && !s_has_current(r, best))) {
            best = wk;
        }
    }
    return best;
}

/* Sends wk the task of node p of a step laid out in parts: the current
 * step (ahead = 0) or the next one (ahead = 1), whose version the worker
 * reaches by applying the current step. */
static int s_send_task(sp_coord_t *c, sp_run_t *r, const sp_job_t *job, sp_worker_t *wk,
                       const sp_part_t *parts, uint32_t p, int ahead, int sync)
{
    uint64_t step_in_epoch = r->step_in_epoch + (uint64_t)ahead;
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_TASK);
    sp_msg_task_t *t = &m.u.task;
    t->job = r->job_id;
    t->version = r->version_base + r->version + (uint64_t)ahead;
    t->step = r->global_step + (uint64_t)ahead;
    t->partition = p;
    t->n_partitions = parts[p].count;
    t->partition_size = job->def.partition;
    t->batch = s_batch_len(r, job, step_in_epoch);
    sp_plan_step_t shape = sp_plan_step(t->batch, job->def.partition);
    snprintf(t->dataset, sizeof t->dataset, "%s", r->ds.info.name);
    t->checksum = r->ds.info.checksum;
    t->n_indices = sp_plan_span(&shape, p, parts[p].count);
    t->indices = r->perm + step_in_epoch * job->def.batch + (size_t)p * job->def.partition;
    t->sync = sync;
    int rc = sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m);
    if (rc == SP_OK) {
        r->bytes_wire += (uint64_t)t->n_indices * 4 + 64;
        wk->bytes_out += (uint64_t)t->n_indices * 4 + 64;
    }
    return rc;
}

/* Worker wk's compute time per sample (us): the median of its latest
 * results in this run, `unknown` before its first, and once it has computed
 * nothing for SP_COORD_SPEED_STALE steps (a worker left out for being slow
 * is measured again then: it may have been slow for a moment only). */
static double s_worker_us(const sp_run_t *r, const sp_worker_t *wk, double unknown)
{
    if (wk->n_speeds == 0 || r->global_step > wk->speed_step + SP_COORD_SPEED_STALE) {
        return unknown;
    }
    return s_ring_median(wk->us_recent, wk->n_speeds, SP_COORD_WORKER_SPEEDS);
}

/* The live workers and their compute time per sample into w (room for
 * every worker); a worker without a result yet counts as the median of the
 * run's latest results. Returns how many. */
static uint32_t s_speeds(sp_coord_t *c, const sp_run_t *r, sp_plan_worker_t *w)
{
    double unknown = s_us_per_sample(r);
    uint32_t k = 0;
    for (size_t i = 0; i < c->workers.n; i++) {
        const sp_worker_t *wk = &c->workers.v[i];
        if (wk->alive) {
            /* a node faster than the 1 us clock reports 0: a floor keeps
             * every speed finite for the plan's shares */
            w[k++] = (sp_plan_worker_t){
                wk->id, fmax(s_worker_us(r, wk, unknown > 0 ? unknown : 1.0), 1e-3)};
        }
    }
    return k;
}

/* Cuts the step of the given shape into parts (zeroed, shape->n_parts of
 * them): the even cut into `want` nodes no smaller than min_node samples
 * (sp_plan_cut), and when that makes two or more, the plan by the live
 * workers' speeds (sp_plan_assign; each extra node a worker holds costs it
 * one more result, SP_COORD_NODE_NS_PER_BYTE of gradient and hits). Returns
 * the node count; without memory, one node: the whole step. */
static uint32_t s_plan(sp_coord_t *c, const sp_run_t *r, const sp_plan_step_t *shape,
                       sp_part_t *parts, uint32_t want, uint32_t min_node)
{
    uint32_t n_parts = shape->n_parts;
    uint32_t *count = calloc(2 * (size_t)n_parts, sizeof *count); /* then owner[n_parts] */
    sp_plan_worker_t *w = malloc((c->workers.n + 1) * sizeof *w);
    uint32_t n_nodes = 1;
    if (count == NULL || w == NULL) {
        parts[0].count = n_parts;
    } else {
        uint32_t *owner = count + n_parts;
        n_nodes = sp_plan_cut(shape, want, min_node, count);
        if (n_nodes >= 2) {
            double node_us =
                (double)(r->n_params + r->n_hits) * 4 * SP_COORD_NODE_NS_PER_BYTE / 1000;
            n_nodes = sp_plan_assign(shape, w, s_speeds(c, r, w), n_nodes, node_us,
                                     SP_COORD_PLAN_DROP, count, owner);
        }
        for (uint32_t p = 0; p < n_parts; p++) {
            parts[p].count = count[p];
            parts[p].plan = owner[p];
        }
    }
    free(count);
    free(w);
    return n_nodes;
}

/* Whether a whole step (the current one, ahead = 0, or the next, 1) must be
 * sent with sync set: the master is needed right after it, for the epoch's
 * end (validation, epoch record), growth or pruning, a checkpoint that is
 * due, or a step after it that would be split. */
static int s_sync_due(sp_coord_t *c, const sp_run_t *r, const sp_job_t *job, uint64_t ahead,
                      uint32_t min_node)
{
    const sp_msg_train_t *d = &job->def;
    uint64_t in_epoch = r->step_in_epoch + ahead;
    if (in_epoch + 1 >= r->steps_per_epoch || s_topology_due(job, r->global_step + ahead + 1) ||
        sp_coord_now_ms() - r->last_ckpt_ms >= SP_COORD_CKPT_EVERY_MS) {
        return 1;
    }
    if (s_live_workers(c) < 2) {
        return 0;
    }
    /* sp_plan_cut splits a step at all exactly when its root may be split */
    sp_plan_step_t next = sp_plan_step(s_batch_len(r, job, in_epoch + 1), d->partition);
    return next.n_parts >= 2 && sp_plan_can_split(&next, 0, next.n_parts, min_node);
}

/* Once every node of the current step is out, and the next step would be
 * cut into no more nodes than there are workers holding one now, sends each
 * of those workers its node of the next step: they reach the next version by
 * themselves (APPLY, or applying a whole step they computed) and go straight
 * on. Not across an epoch (new permutation), nor before a step after which
 * growth or pruning may change the topology. */
static void s_send_ahead(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    const sp_msg_train_t *d = &job->def;
    uint64_t next = r->global_step + 1; /* steps completed once this one is */
    if (r->ahead_step == next || r->step_in_epoch + 1 >= r->steps_per_epoch ||
        s_topology_due(job, next) || r->sync_pending) {
        return;
    }
    uint32_t holders[64], n_holders = 0;
    for (uint32_t p = 0; p < r->shape.n_parts; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        sp_part_t *part = &r->parts[p];
        if (part->state == SP_PART_PENDING) {
            return;
        }
        if (part->state != SP_PART_INFLIGHT) {
            continue; /* done: its worker may hold another node, or none */
        }
        int seen = 0;
        for (uint32_t k = 0; k < n_holders; k++) {
            seen |= holders[k] == part->worker;
        }
        if (!seen) {
            if (n_holders == 64) {
                return;
            }
            holders[n_holders++] = part->worker;
        }
    }
    if (n_holders == 0) {
        return;
    }
    sp_plan_step_t shape = sp_plan_step(s_batch_len(r, job, r->step_in_epoch + 1), d->partition);
    uint32_t n_parts = shape.n_parts;
    sp_part_t *parts = calloc(n_parts, sizeof *parts);
    sp_ahead_t *ahead = NULL;
    if (parts == NULL) {
        return;
    }
    uint32_t min_node = s_min_node(r, job);
    uint32_t n_nodes = s_plan(c, r, &shape, parts, s_live_workers(c), min_node);
    if (n_nodes < 2) {
        parts[0].plan = holders[0];
    }
    /* A worker without work now (a newcomer) would get a node, or the step
     * needs sync: the next step is handed out when it begins. */
    int ok = n_nodes > 1 || !s_sync_due(c, r, job, 1, min_node);
    for (uint32_t p = 0; p < n_parts && ok; p += parts[p].count) {
        SP_ASSERT(parts[p].count > 0);
        int held = 0;
        for (uint32_t k = 0; k < n_holders; k++) {
            held |= holders[k] == parts[p].plan;
        }
        ok = held;
    }
    ahead = ok ? calloc(n_nodes, sizeof *ahead) : NULL;
    if (ahead == NULL) {
        free(parts);
        return;
    }
    /* Every node of the cut is recorded; one whose send failed has no worker
     * and is handed out normally when the step begins. */
    uint32_t n_ahead = 0;
    for (uint32_t p = 0; p < n_parts; p += parts[p].count, n_ahead++) {
        SP_ASSERT(parts[p].count > 0);
        sp_worker_t *wk = sp_workers_find(&c->workers, parts[p].plan);
        int sent = wk != NULL && wk->alive && s_send_task(c, r, job, wk, parts, p, 1, 0) == SP_OK;
        ahead[n_ahead] =
            (sp_ahead_t){.first = p, .count = parts[p].count, .worker = sent ? wk->id : 0};
    }
    SP_ASSERT(n_ahead == n_nodes);
    free(parts);
    free(r->ahead);
    r->ahead = ahead;
    r->n_ahead = n_ahead;
    r->ahead_step = next;
}

/* When the step being begun (parts laid out) was sent ahead: its nodes are
 * the ones recorded then, in flight at their workers if still alive,
 * pending otherwise. Returns 1 then, 0 when the step is still to be cut. */
static int s_claim_ahead(sp_coord_t *c, sp_run_t *r)
{
    uint64_t step = r->ahead_step;
    r->ahead_step = 0;
    if (step != r->global_step || r->n_ahead == 0) {
        return 0;
    }
    for (uint32_t i = 0; i < r->shape.n_parts; i++) {
        r->parts[i].count = 0;
    }
    uint32_t covered = 0;
    for (uint32_t i = 0; i < r->n_ahead; i++) {
        const sp_ahead_t *a = &r->ahead[i];
        SP_ASSERT(a->first == covered && a->first + a->count <= r->shape.n_parts);
        sp_part_t *part = &r->parts[a->first];
        part->count = a->count;
        part->plan = a->worker;
        covered += a->count;
        sp_worker_t *wk = a->worker ? sp_workers_find(&c->workers, a->worker) : NULL;
        if (wk != NULL && wk->alive) {
            part->state = SP_PART_INFLIGHT;
            part->worker = wk->id;
            wk->in_flight++;
        }
    }
    SP_ASSERT(covered == r->shape.n_parts);
    r->n_nodes = r->n_ahead;
    return 1;
}

static void s_dispatch(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = s_run_job(c);
    if (r == NULL || job == NULL || r->awaiting_sync || r->rollback) {
        return;
    }
    for (uint32_t p = 0; p < r->shape.n_parts; p++) {
        sp_part_t *part = &r->parts[p];
        if (part->count == 0 || part->state != SP_PART_PENDING) {
            continue;
        }
        sp_worker_t *wk = part->plan ? sp_workers_find(&c->workers, part->plan) : NULL;
        if (wk == NULL || !wk->alive) {
            wk = s_pick_worker(c); /* no plan, or its worker is gone */
        }
        if (wk == NULL) {
            continue; /* every worker is busy: the next result brings this back */
        }
        if (!s_has_current(r, wk)) {
            SP_ASSERT(!s_lagging(r)); /* s_pick_worker: only the solo worker then */
            if (s_model_bytes(r) != SP_OK) {
                s_fail(c, "cannot serialize the model");
                return;
            }
            sp_msg_t m;
            sp_msg_init(&m, SP_MSG_MODEL);
            m.u.model.job = r->job_id;
            m.u.model.version = r->version_base + r->version;
            m.u.model.model.data = r->model;
            m.u.model.model.len = r->model_len;
            if (sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m) != SP_OK) {
                wk->failures++;
                sp_workers_kill(c, wk, "model could not be sent");
                p--; /* this node is still pending: try another worker */
                continue;
            }
            wk->model_job = r->job_id;
            wk->model_version = r->version_base + r->version;
            wk->bytes_out += r->model_len;
            r->bytes_wire += r->model_len;
        }
        int sync = part->count == r->shape.n_parts && s_sync_due(c, r, job, 0, s_min_node(r, job));
        if (s_send_task(c, r, job, wk, r->parts, p, 0, sync) != SP_OK) {
            wk->failures++;
            sp_workers_kill(c, wk, "task could not be sent");
            p--;
            continue;
        }
        part->state = SP_PART_INFLIGHT;
        part->worker = wk->id;
        wk->in_flight++;
        r->sync_pending = sync;
    }
    s_send_ahead(c, r, job);
}

/* What wk holds is no longer known: it gets the model again with its next
 * task. When it held steps the master lacks, they are lost: the run goes
 * back to its last checkpoint at the next tick (s_rollback). */
static void s_forget(sp_coord_t *c, sp_worker_t *wk)
{
    wk->model_job = wk->model_version = 0;
    sp_run_t *r = c->run;
    if (r != NULL && s_lagging(r) && wk->id == r->solo_worker) {
        r->rollback = 1;
    }
}

void sp_jobs_requeue(sp_coord_t *c, sp_worker_t *wk)
{
    /* A worker that computed a whole step has applied it, whether or not its
     * result is ever accepted. */
    s_forget(c, wk);
    sp_run_t *r = c->run;
    if (r != NULL) {
        for (uint32_t p = 0; p < r->shape.n_parts; p++) {
            if (r->parts[p].state == SP_PART_INFLIGHT && r->parts[p].worker == wk->id) {
                r->parts[p].state = SP_PART_PENDING;
                r->parts[p].worker = 0;
            }
        }
        for (uint32_t i = 0; i < r->n_ahead; i++) {
            if (r->ahead[i].worker == wk->id) {
                r->ahead[i].worker = 0; /* its next-step node is handed out normally */
            }
        }
    }
    wk->in_flight = 0;
}

void sp_jobs_worker_error(sp_coord_t *c, sp_worker_t *wk, const sp_msg_error_t *e)
{
    sp_jobs_requeue(c, wk);
    sp_run_t *r = c->run;
    if (r == NULL) {
        return;
    }
    if (e->ref_type == SP_MSG_TASK && e->code == (uint32_t)-SP_E_RANGE) {
        /* The training diverged on that worker's step; the same numbers give
         * the same on any worker, and going back to a checkpoint would only
         * replay it. */
        s_fail(c, "%.200s", e->message);
    } else if (++r->worker_errors >= SP_COORD_MAX_WORKER_ERRORS) {
        s_fail(c, "workers keep refusing the work (%u errors); last: %.160s", r->worker_errors,
               e->message);
    }
}

/* Back to the last checkpoint (or the beginning): the only copy of steps
 * the master lacked was lost with its worker. Every step is replayed from
 * there with the same numbers, so the final model is the one an unbroken
 * run gives; step records after the checkpoint are cut and written again. */
static void s_rollback(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = s_run_job(c);
    sp_log(SP_LOG_WARN,
           "job %llu: worker %u held steps %llu..%llu that this coordinator had not copied; "
           "resuming from the last checkpoint",
           (unsigned long long)r->job_id, r->solo_worker,
           (unsigned long long)(r->global_step - (r->version - r->net_version) + 1),
           (unsigned long long)r->global_step);
    (void)sp_store_writer_flush(c->writer); /* the checkpoint read back is the last one queued */
    s_workers_release(c);
    s_run_free(&c->run);
    if (job != NULL) {
        s_start(c, job);
    }
}

/* --- metrics of the running job ----------------------------------------- */

/* Clamps a ratio into [0, 1] (0 for NaN) so a record always encodes. */
static float s_unit(float v)
{
    return v >= 0.0f ? (v <= 1.0f ? v : 1.0f) : 0.0f;
}

static void s_fill_stats(const sp_run_t *r, const sp_job_t *job, sp_metric_t *m)
{
    sp_network_stats_t st;
    memset(&st, 0, sizeof st);
    sp_network_stats(r->net, (float)job->def.prune_threshold, &st);
    m->n_layers = st.layer_count < SP_MAX_LAYERS ? st.layer_count : SP_MAX_LAYERS;
    for (uint32_t i = 0; i < m->n_layers; i++) {
        m->neurons[i] = st.layers[i].neuron_count;
        m->saturation[i] = s_unit(st.layers[i].average_saturation);
        m->growth_candidates += st.layers[i].growth_candidates;
        m->prune_candidates += st.layers[i].prune_candidates;
    }
    m->sparsity = s_unit(st.average_sparsity);
}

static uint64_t s_train_ms(const sp_run_t *r, uint64_t now)
{
    return r->train_ms_base + (now - r->t_start_ms);
}

/* Validation loss and accuracy of the master network. */
static void s_validate(sp_run_t *r, const sp_job_t *job, double *loss, double *acc)
{
    *loss = *acc = NAN;
    const sp_dataset_t *v = &r->val;
    size_t n_out = sp_network_n_outputs(r->net);
    if (v->n_samples == 0 || v->n_features != job->def.layers[0]) {
        return;
    }
    float *X = malloc((size_t)S_VAL_CHUNK * v->n_features * sizeof *X);
    float *Y = malloc((size_t)S_VAL_CHUNK * n_out * sizeof *Y);
    float *T = malloc((size_t)S_VAL_CHUNK * (v->n_targets ? v->n_targets : 1) * sizeof *T);
    uint32_t *idx = malloc(S_VAL_CHUNK * sizeof *idx);
    int xent = sp_network_config(r->net)->loss == SP_LOSS_XENT;
    double loss_sum = 0;
    uint64_t correct = 0;
    if (X && Y && T && idx && v->n_targets == n_out) {
        for (uint32_t off = 0; off < v->n_samples; off += S_VAL_CHUNK) {
            uint32_t n = v->n_samples - off < S_VAL_CHUNK ? v->n_samples - off : S_VAL_CHUNK;
            for (uint32_t i = 0; i < n; i++) {
                idx[i] = off + i;
            }
            sp_dataset_gather(v, idx, n, X);
            sp_dataset_targets(v, idx, n, T);
            if (sp_network_forward(r->net, X, n, Y) != SP_OK) {
                goto out;
            }
            for (uint32_t i = 0; i < n; i++) {
                const float *y = Y + (size_t)i * n_out, *t = T + (size_t)i * n_out;
                size_t best = 0, label = 0;
                double mx = y[0];
                for (size_t k = 0; k < n_out; k++) {
                    if (y[k] > y[best]) {
                        best = k;
                    }
                    if (t[k] > t[label]) {
                        label = k;
                    }
                    if (y[k] > mx) {
                        mx = y[k];
                    }
                }
                if (xent) {
                    double z = 0;
                    for (size_t k = 0; k < n_out; k++) {
                        z += exp((double)y[k] - mx);
                    }
                    loss_sum += -((double)y[label] - mx - log(z));
                } else {
                    double se = 0;
                    for (size_t k = 0; k < n_out; k++) {
                        double d = (double)y[k] - (double)t[k];
                        se += d * d;
                    }
                    loss_sum += se / (double)n_out;
                }
                correct += best == label;
            }
        }
        *loss = fmax(0.0, loss_sum / v->n_samples);
        *acc = r->classify ? (double)correct / v->n_samples : NAN;
    }
out:
    free(X);
    free(Y);
    free(T);
    free(idx);
}

/* --- reduce -------------------------------------------------------------- */

/* Sum of the finished nodes under tree node [lo, hi), combined in the tree's
 * order (common/reduce.h) into the node that starts at lo, which is returned.
 * Workers sum inside their nodes in the same order, so the result has the
 * same bits however the step was split. */
static sp_part_t *s_combine(sp_run_t *r, uint32_t lo, uint32_t hi)
{
    sp_part_t *p = &r->parts[lo];
    if (p->count == hi - lo) {
        return p;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    sp_part_t *a = s_combine(r, lo, mid);
    sp_part_t *b = s_combine(r, mid, hi);
    sp_reduce_add_f32(a->grad, b->grad, r->n_params);
    sp_reduce_add_u32(a->hits, b->hits, r->n_hits);
    a->loss_sum = a->loss_sum + b->loss_sum;
    a->n_correct += b->n_correct;
    free(b->grad);
    free(b->hits);
    b->grad = NULL;
    b->hits = NULL;
    b->count = 0;
    a->count = hi - lo;
    return a;
}

static void s_step_finish(sp_coord_t *c);

void sp_jobs_result(sp_coord_t *c, sp_worker_t *wk, sp_msg_result_t *res)
{
    sp_run_t *r = c->run;
    const char *why = NULL;
    int bad = 0; /* a malformed result (not merely a late one) */
    sp_part_t *part = NULL;
    wk->bytes_in += (uint64_t)res->n_grad * 4 + (uint64_t)res->n_hits * 4;
    if (r == NULL || res->job != r->job_id) {
        why = "no such running job";
    } else if (res->version != r->version_base + r->version || res->step != r->global_step) {
        why = "stale model version or step";
    } else if (res->partition >= r->shape.n_parts ||
               res->n_partitions > r->shape.n_parts - res->partition) {
        why = "partition out of range";
        bad = 1;
    } else {
        part = &r->parts[res->partition];
        if (part->count != res->n_partitions || part->state != SP_PART_INFLIGHT ||
            part->worker != wk->id) {
            why = "node not held by this worker (late or duplicate)";
            part = NULL;
        } else if (res->n_samples != sp_plan_span(&r->shape, res->partition, res->n_partitions) ||
                   res->n_correct > res->n_samples) {
            why = "sample count does not match the partition";
            bad = 1;
        } else if (res->n_partitions == r->shape.n_parts &&
                   (res->n_grad != 0 || res->n_hits != 0)) {
            why = "a whole step's result carries a gradient (its worker keeps it)";
            bad = 1;
        } else if (res->n_partitions != r->shape.n_parts &&
                   (res->n_grad != r->n_params || res->n_hits != r->n_hits)) {
            why = "gradient or hit vector of the wrong length";
            bad = 1;
        } else if (!isfinite(res->loss_sum)) {
            /* No scan of the gradient here: a RESULT only reaches this
             * function through sp_msg_decode, which refuses any NaN or
             * infinity in grad (and a loss outside 0..DBL_MAX) before the
             * message exists, so every gradient summed below is finite.
             * This O(1) loss test is only a cheap second guard. */
            why = "non-finite loss";
            bad = 1;
        }
    }
    if (r != NULL) {
        r->bytes_wire += (uint64_t)res->n_grad * 4 + (uint64_t)res->n_hits * 4 + 64;
    }
    if (why != NULL) {
        if (r != NULL) {
            r->dropped++;
        }
        /* The worker may have applied the step itself (a whole step) though
         * it does not count: it is sent the model again before any task. */
        s_forget(c, wk);
        if (bad) {
            wk->failures++;
            sp_coord_log_bad(c, wk->ident, wk->ident_len, why);
            if (part != NULL) {
                /* give it to someone (maybe the same worker) again */
                part->state = SP_PART_PENDING;
                part->worker = 0;
                if (wk->in_flight > 0) {
                    wk->in_flight--;
                }
            }
            if (++r->worker_errors >= SP_COORD_MAX_WORKER_ERRORS) {
                s_fail(c, "workers keep sending unusable results (%u); last: %s", r->worker_errors,
                       why);
            }
        } else {
            sp_log(SP_LOG_DEBUG, "result from worker %u dropped: %s", wk->id, why);
        }
        return;
    }
    wk->in_flight--;
    wk->partitions_done += res->n_partitions;
    wk->samples_done += res->n_samples;
    wk->compute_us += res->compute_us;
    if (res->n_samples > 0) {
        double us = (double)res->compute_us / res->n_samples;
        r->us_recent[r->n_results++ % SP_COORD_SPEED_RESULTS] = us;
        if (r->global_step > wk->speed_step + SP_COORD_SPEED_STALE) {
            wk->n_speeds = 0; /* its old speed is no longer taken (s_worker_us) */
        }
        wk->us_recent[wk->n_speeds++ % SP_COORD_WORKER_SPEEDS] = us;
        wk->speed_step = r->global_step;
    }
    part->state = SP_PART_DONE;
    part->loss_sum = res->loss_sum;
    part->n_correct = res->n_correct;
    /* Take the vectors over: the message no longer owns them. */
    part->grad = res->grad;
    part->hits = res->hits;
    res->grad = NULL;
    res->hits = NULL;
    res->n_grad = res->n_hits = 0;
    int all_done = 1;
    for (uint32_t p = 0; p < r->shape.n_parts && all_done; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        all_done = r->parts[p].state == SP_PART_DONE;
    }
    if (all_done) {
        s_step_finish(c);
    }
    if (c->run != NULL) {
        s_dispatch(c);
    }
}

static void s_step_record(sp_coord_t *c, sp_run_t *r, sp_job_t *job, uint64_t now)
{
    sp_metric_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.kind, sizeof m.kind, "step");
    m.epoch = r->epoch + 1;
    m.step = r->global_step;
    m.time_ms = s_train_ms(r, now);
    m.loss = r->rec_samples ? r->rec_loss / (double)r->rec_samples : NAN;
    m.accuracy = r->classify && r->rec_samples ? (double)r->rec_correct / r->rec_samples : NAN;
    m.val_loss = m.val_accuracy = NAN;
    uint64_t dt = now - r->rec_t0_ms;
    m.samples_per_s = dt > 0 ? (double)r->rec_samples * 1000.0 / (double)dt : 0.0;
    s_fill_stats(r, job, &m);
    (void)sp_metrics_record(c, job, &m);
    r->rec_loss = 0;
    r->rec_correct = r->rec_samples = r->rec_steps = 0;
    r->rec_t0_ms = now;
}

/* The record of 1-based epoch `epoch`, which ended at `now`: its loss and
 * accuracy, the master's on the validation set, its rate. */
static void s_epoch_end(sp_coord_t *c, sp_run_t *r, sp_job_t *job, uint32_t epoch, uint64_t now)
{
    sp_metric_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.kind, sizeof m.kind, "epoch");
    m.epoch = epoch;
    m.step = r->global_step;
    m.time_ms = s_train_ms(r, now);
    m.loss = r->ep_samples ? r->ep_loss / (double)r->ep_samples : NAN;
    m.accuracy = r->classify && r->ep_samples ? (double)r->ep_correct / r->ep_samples : NAN;
    s_validate(r, job, &m.val_loss, &m.val_accuracy);
    uint64_t dt = now - r->ep_t0_ms;
    m.samples_per_s = dt > 0 ? (double)r->ep_samples_t * 1000.0 / (double)dt : 0.0;
    s_fill_stats(r, job, &m);
    (void)sp_metrics_record(c, job, &m);
    job->loss = m.loss;
    job->accuracy = m.accuracy;
    job->val_accuracy = m.val_accuracy;
    sp_log(SP_LOG_INFO, "job %llu epoch %u/%u: loss %.5g accuracy %.4g val %.4g, %.0f samples/s",
           (unsigned long long)job->id, m.epoch, job->def.epochs, m.loss, m.accuracy,
           m.val_accuracy, m.samples_per_s);
    r->ep_loss = 0;
    r->ep_correct = r->ep_samples = r->ep_samples_t = 0;
    r->ep_t0_ms = now;
}

/* Growth and pruning between steps, decided on the master network. Returns
 * 1 when the topology changed. */
static int s_grow_prune(sp_coord_t *c, sp_run_t *r, sp_job_t *job)
{
    const sp_msg_train_t *d = &job->def;
    int changed = 0;
    if (d->growth_every > 0 && r->global_step % d->growth_every == 0) {
        sp_network_stats_t st;
        sp_network_stats(r->net, (float)d->prune_threshold, &st);
        uint32_t cand = 0;
        for (uint32_t i = 0; i < st.layer_count && i < SP_NET_MAX_LAYERS; i++) {
            cand += st.layers[i].growth_candidates;
        }
        if (cand > 0 && !r->growth_full) {
            int n = sp_network_grow(r->net);
            if (n == SP_E_RANGE) {
                /* The network is as large as it may get: stop growing. */
                sp_log(SP_LOG_WARN, "job %llu: network at its size limit, growth stops",
                       (unsigned long long)job->id);
                r->growth_full = 1;
                n = 0;
            } else if (n < 0) {
                s_fail(c, "growth failed (%s)", sp_strerror(n));
                return -1;
            }
            changed |= n > 0;
        }
    }
    if (d->prune_every > 0 && r->global_step % d->prune_every == 0) {
        sp_network_stats_t st;
        sp_network_stats(r->net, (float)d->prune_threshold, &st);
        uint32_t cand = 0;
        for (uint32_t i = 0; i < st.layer_count && i < SP_NET_MAX_LAYERS; i++) {
            cand += st.layers[i].prune_candidates;
        }
        if (cand > 0) {
            int n = sp_network_prune(r->net, (float)d->prune_threshold);
            if (n < 0) {
                s_fail(c, "pruning failed (%s)", sp_strerror(n));
                return -1;
            }
            changed |= n > 0;
        }
    }
    return changed;
}

/* The workers of the current step's nodes, each once, into ids (room for
 * n_parts); returns how many. Called before s_combine merges the nodes. */
static uint32_t s_node_workers(const sp_run_t *r, uint32_t *ids)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < r->shape.n_parts; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        int seen = 0;
        for (uint32_t k = 0; k < n; k++) {
            seen |= ids[k] == r->parts[p].worker;
        }
        if (!seen) {
            ids[n++] = r->parts[p].worker;
        }
    }
    return n;
}

/* Brings the workers that computed the step (holders[n_holders]) to
 * v_old + 1: one that computed the whole step applied it already; when the
 * step was split, each gets the summed gradient in one APPLY, encoded once.
 * A live worker that held no node of the step is not kept in step: it stays
 * at its version and is sent the model with its next task (where steps are
 * not split, an APPLY every step cost the coordinator and that worker more
 * than the one model it needs if it ever gets work). A worker the APPLY
 * cannot reach is declared dead (as for any failed send). */
static void s_send_apply(sp_coord_t *c, sp_run_t *r, const sp_part_t *root, uint64_t v_old,
                         const uint32_t *holders, uint32_t n_holders)
{
    size_t n = 0, cap = n_holders;
    const uint8_t **ids = malloc((cap ? cap : 1) * sizeof *ids);
    size_t *lens = malloc((cap ? cap : 1) * sizeof *lens);
    sp_worker_t **who = malloc((cap ? cap : 1) * sizeof *who);
    int *rcs = malloc((cap ? cap : 1) * sizeof *rcs);
    for (uint32_t k = 0; k < n_holders; k++) {
        sp_worker_t *wk = sp_workers_find(&c->workers, holders[k]);
        if (wk == NULL || !wk->alive) {
            continue;
        }
        if (r->n_nodes == 1) {
            /* Its result says it computed on v_old and applied the step (a
             * worker that cannot apply sends ERROR instead), whatever this
             * coordinator had noted since. */
            wk->model_job = r->job_id;
            wk->model_version = v_old + 1;
            continue;
        }
        if (wk->model_job != r->job_id || wk->model_version != v_old) {
            continue;
        }
        if (ids && lens && who && rcs) {
            ids[n] = wk->ident;
            lens[n] = wk->ident_len;
            who[n++] = wk;
        } else {
            wk->model_job = wk->model_version = 0; /* no memory: a MODEL instead */
        }
    }
    if (n > 0) {
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_APPLY);
        m.u.apply.job = r->job_id;
        m.u.apply.version = v_old + 1;
        m.u.apply.step = r->global_step;
        m.u.apply.n_samples = r->shape.batch;
        m.u.apply.n_grad = (uint32_t)r->n_params;
        m.u.apply.grad = root->grad;
        m.u.apply.n_hits = (uint32_t)r->n_hits;
        m.u.apply.hits = root->hits;
        (void)sp_msg_send_many(c->workers_sock, ids, lens, n, &m, rcs);
        uint64_t bytes = ((uint64_t)r->n_params + r->n_hits) * 4;
        for (size_t k = 0; k < n; k++) {
            if (rcs[k] == SP_OK) {
                who[k]->model_version = v_old + 1;
                who[k]->bytes_out += bytes;
                r->bytes_wire += bytes + 64;
            } else {
                who[k]->failures++;
                sp_workers_kill(c, who[k], "apply could not be sent");
            }
        }
    }
    free(ids);
    free(lens);
    free(who);
    free(rcs);
}

static void s_step_tail(sp_coord_t *c);

/* Every node of the current step is done: the step is applied (a split step
 * here, through its summed gradient; a whole step by its worker alone),
 * counted, and the run goes on with s_step_tail, or waits for the worker's
 * model when the step was sent with sync set. */
static void s_step_finish(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = s_run_job(c);
    uint32_t *holders = malloc(r->shape.n_parts * sizeof *holders);
    uint32_t n_holders = holders ? s_node_workers(r, holders) : 0;
    sp_part_t *root = s_combine(r, 0, r->shape.n_parts);
    s_send_apply(c, r, root, r->version_base + r->version, holders, n_holders);
    int whole = r->n_nodes == 1;
    if (whole) {
        r->solo_worker = root->worker;
    }
    free(holders);
    if (!whole) {
        SP_ASSERT(!s_lagging(r)); /* a lagging master keeps steps whole */
        int rc = sp_network_apply_gradient(r->net, root->grad, r->shape.batch, root->hits);
        if (rc != SP_OK) {
            sp_network_destroy(&r->net); /* unusable: no final model from it */
            if (rc == SP_E_RANGE) {
                s_fail(c,
                       "training diverged at step %" PRIu64 " (a gain, bias or momentum left "
                       "its range): lower --lr, or scale the features into [0, 1]",
                       r->global_step + 1);
            } else {
                s_fail(c, "optimizer step failed (%s)", sp_strerror(rc));
            }
            return;
        }
    }
    r->worker_errors = 0;
    r->version++;
    if (!whole) {
        r->net_version = r->version;
    }
    r->global_step++;
    r->step_in_epoch++;
    job->step = r->global_step;
    job->samples_seen += r->shape.batch;
    r->ep_loss += root->loss_sum;
    r->ep_correct += root->n_correct;
    r->ep_samples += r->shape.batch;
    r->ep_samples_t += r->shape.batch;
    r->rec_loss += root->loss_sum;
    r->rec_correct += root->n_correct;
    r->rec_samples += r->shape.batch;
    r->rec_steps++;
    if (whole && r->sync_pending) {
        r->awaiting_sync = 1; /* sp_jobs_worker_model goes on */
        return;
    }
    s_step_tail(c);
}

/* After a step is counted and, where needed, the master holds it: growth and
 * pruning, records, the epoch's end, the next step, a checkpoint. */
static void s_step_tail(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = s_run_job(c);
    uint64_t now = sp_coord_now_ms();
    int changed = s_lagging(r) ? 0 : s_grow_prune(c, r, job);
    if (changed < 0) {
        return;
    }
    if (changed) {
        /* The workers' copies (applied to the old topology) are not this
         * model: a version of its own sends every worker a MODEL. */
        r->version++;
        r->net_version = r->version;
        s_sizes(r);
    }
    uint64_t every = (r->steps_per_epoch + S_STEP_RECORDS_PER_EPOCH - 1) / S_STEP_RECORDS_PER_EPOCH;
    if (r->rec_steps >= every) {
        s_step_record(c, r, job, now);
    }
    int epoch_done = r->step_in_epoch == r->steps_per_epoch;
    /* The epoch's last step, a growth or prune step, carry sync (s_sync_due). */
    SP_ASSERT(!s_lagging(r) || (!epoch_done && !s_topology_due(job, r->global_step)));
    if (epoch_done) {
        if (r->rec_steps > 0) {
            s_step_record(c, r, job, now);
        }
        r->epoch++;
        r->step_in_epoch = 0;
        if (r->epoch == job->def.epochs) {
            s_epoch_end(c, r, job, r->epoch, now);
            job->epoch = job->def.epochs;
            s_run_end(c, SP_JOB_DONE, NULL);
            return;
        }
        job->epoch = r->epoch + 1;
        s_perm(r, job->def.seed);
    }
    if (s_step_begin(c, r, job) != SP_OK) {
        s_fail(c, "cannot prepare the next step");
        return;
    }
    if (epoch_done) {
        /* The workers start the new epoch first; then the master is
         * validated (nothing changes it before this returns: results wait
         * in the socket) and the epoch recorded. The checkpoint written
         * below counts as taken for the dispatch: no sync is asked for it. */
        r->last_ckpt_ms = now;
        s_dispatch(c);
        if (c->run == NULL) {
            return; /* the dispatch failed the job */
        }
        s_epoch_end(c, r, job, r->epoch, now);
    }
    if (epoch_done || now - r->last_ckpt_ms >= SP_COORD_CKPT_EVERY_MS) {
        (void)s_write_checkpoint(c);
    }
}

void sp_jobs_worker_model(sp_coord_t *c, sp_worker_t *wk, const sp_msg_model_t *mm)
{
    sp_run_t *r = c->run;
    if (r == NULL || r->rollback || !r->awaiting_sync || mm->job != r->job_id ||
        wk->id != r->solo_worker || mm->version != r->version_base + r->version) {
        /* Late (after a rollback or restart) or not asked for: nothing to do. */
        sp_log(SP_LOG_DEBUG,
               "model from worker %u (job %" PRIu64 " version %" PRIu64 ") not awaited: dropped",
               wk->id, mm->job, mm->version);
        return;
    }
    /* The worker's copy has the master's topology (growth and pruning
     * happen only at syncs) and its training state: the in-place refresh
     * the workers use takes it, checked as strictly as a load, and leaves
     * the master as it was if the file is bad or another network. */
    char err[SP_TEXT_MAX] = "";
    int rc = sp_network_update_from_buffer(r->net, mm->model.data, mm->model.len, err, sizeof err);
    if (rc != SP_OK && err[0] == '\0') {
        snprintf(err, sizeof err, "%s", sp_strerror(rc));
    }
    r->bytes_wire += mm->model.len;
    wk->bytes_in += mm->model.len;
    if (rc != SP_OK) {
        char why[SP_TEXT_MAX + 64];
        snprintf(why, sizeof why, "model of version %" PRIu64 " refused: %s", mm->version, err);
        wk->failures++;
        sp_coord_log_bad(c, wk->ident, wk->ident_len, why);
        s_forget(c, wk); /* its steps cannot be had: back to the checkpoint */
        return;
    }
    r->net_version = r->version;
    r->awaiting_sync = 0;
    s_step_tail(c);
    if (c->run != NULL) {
        s_dispatch(c);
    }
}

void sp_jobs_tick(sp_coord_t *c, uint64_t now_ms)
{
    (void)now_ms;
    if (c->run != NULL && c->run->rollback) {
        s_rollback(c);
    }
    if (c->run == NULL) {
        for (size_t i = 0; i < c->jobs.n; i++) {
            sp_job_t *job = &c->jobs.v[i];
            if (job->state == SP_JOB_QUEUED || job->state == SP_JOB_RUNNING) {
                s_start(c, job);
                break;
            }
        }
    }
    if (c->run != NULL) {
        s_dispatch(c);
    }
}

/* --- client requests ----------------------------------------------------- */

static int s_bad_train(sp_coord_t *c, const sp_msg_train_t *t, char *err, size_t errlen)
{
    const sp_dsentry_t *e = sp_datasets_find(&c->datasets, t->dataset);
    if (e == NULL) {
        snprintf(err, errlen, "dataset: no dataset named '%.63s'", t->dataset);
        return SP_E_NOTFOUND;
    }
    int classify = strcmp(e->info.task, "classify") == 0;
    if (t->n_layers < 2 || t->n_layers > SP_MAX_LAYERS || t->n_layers > SP_NET_MAX_LAYERS + 1) {
        snprintf(err, errlen, "layers: %u sizes, want 2..%d", t->n_layers, SP_MAX_LAYERS);
        return SP_E_INPUT;
    }
    uint64_t weights = 0;
    for (uint32_t i = 0; i < t->n_layers; i++) {
        if (t->layers[i] < 1 || t->layers[i] > SP_NET_MAX_WIDTH) {
            snprintf(err, errlen, "layers[%u]: %u, want 1..%d", i, t->layers[i], SP_NET_MAX_WIDTH);
            return SP_E_INPUT;
        }
        if (i > 0) {
            weights += (uint64_t)t->layers[i - 1] * t->layers[i];
        }
    }
    if (weights > SP_COORD_MAX_WEIGHTS) {
        snprintf(err, errlen, "layers: %llu weights, above the limit of %llu",
                 (unsigned long long)weights, (unsigned long long)SP_COORD_MAX_WEIGHTS);
        return SP_E_INPUT;
    }
    if (t->layers[0] != e->info.features) {
        snprintf(err, errlen, "layers[0]: %u, but dataset '%s' has %u features", t->layers[0],
                 e->info.name, e->info.features);
        return SP_E_INPUT;
    }
    uint32_t want_out = classify ? e->info.classes : 1;
    if (t->layers[t->n_layers - 1] != want_out) {
        snprintf(err, errlen, "layers: last size %u, but dataset '%s' needs %u (%s)",
                 t->layers[t->n_layers - 1], e->info.name, want_out,
                 classify ? "its classes" : "one regression target");
        return SP_E_INPUT;
    }
    if (t->bits != 1 && t->bits != 2 && t->bits != 4) {
        snprintf(err, errlen, "bits: %u, want 1, 2 or 4", t->bits);
        return SP_E_INPUT;
    }
    if (t->epochs < 1 || t->epochs > 100000) {
        snprintf(err, errlen, "epochs: %u, want 1..100000", t->epochs);
        return SP_E_INPUT;
    }
    if (t->batch < 1 || t->batch > 1048576 || t->partition < 1 || t->partition > t->batch) {
        snprintf(err, errlen, "batch %u / partition %u: want 1 <= partition <= batch <= 1048576",
                 t->batch, t->partition);
        return SP_E_INPUT;
    }
    if ((t->batch + t->partition - 1) / t->partition > SP_COORD_MAX_PARTS) {
        snprintf(err, errlen, "partition: %u cuts a batch of %u into more than %d parts",
                 t->partition, t->batch, SP_COORD_MAX_PARTS);
        return SP_E_INPUT;
    }
    if (!(t->lr > 0 && t->lr <= 100) || !(t->momentum >= 0 && t->momentum < 1)) {
        snprintf(err, errlen, "lr %g / momentum %g: want 0 < lr <= 100, 0 <= momentum < 1", t->lr,
                 t->momentum);
        return SP_E_INPUT;
    }
    if (strcmp(t->mode, "backprop") != 0 && strcmp(t->mode, "local") != 0 && t->mode[0] != '\0') {
        snprintf(err, errlen, "mode: '%.15s', want backprop or local", t->mode);
        return SP_E_INPUT;
    }
    if (strcmp(t->loss, "mse") != 0 && strcmp(t->loss, "xent") != 0 && t->loss[0] != '\0') {
        snprintf(err, errlen, "loss: '%.15s', want mse or xent", t->loss);
        return SP_E_INPUT;
    }
    if (strcmp(t->loss, "xent") == 0 && !classify) {
        snprintf(err, errlen, "loss: xent needs a classification dataset");
        return SP_E_INPUT;
    }
    if (!(t->growth_threshold >= 0 && t->growth_threshold <= 1) ||
        !(t->prune_threshold >= 0 && t->prune_threshold <= 1)) {
        snprintf(err, errlen, "growth_threshold %g / prune_threshold %g: want 0..1",
                 t->growth_threshold, t->prune_threshold);
        return SP_E_INPUT;
    }
    if (t->validation[0] != '\0') {
        const sp_dsentry_t *v = sp_datasets_find(&c->datasets, t->validation);
        if (v == NULL) {
            snprintf(err, errlen, "validation: no dataset named '%.63s'", t->validation);
            return SP_E_NOTFOUND;
        }
        if (v->info.features != e->info.features || strcmp(v->info.task, e->info.task) != 0 ||
            (classify && v->info.classes != e->info.classes)) {
            snprintf(err, errlen,
                     "validation: '%s' (%u features, %u classes, %s) does not match "
                     "'%s'",
                     v->info.name, v->info.features, v->info.classes, v->info.task, e->info.name);
            return SP_E_INPUT;
        }
    }
    return SP_OK;
}

void sp_jobs_train(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_train_t *t)
{
    char err[SP_TEXT_MAX];
    int rc = s_bad_train(c, t, err, sizeof err);
    if (rc != SP_OK) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, rc, t->req, SP_MSG_TRAIN, "%s", err);
        return;
    }
    sp_job_t *job = s_jobs_add(&c->jobs);
    if (job == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOMEM, t->req, SP_MSG_TRAIN,
                             "out of memory");
        return;
    }
    job->id = c->jobs.next_id++;
    job->def = *t;
    job->def.req = 0;
    if (job->def.mode[0] == '\0') {
        snprintf(job->def.mode, sizeof job->def.mode, "backprop");
    }
    job->state = SP_JOB_QUEUED;
    job->epoch = 1;
    snprintf(job->dir, sizeof job->dir, "%s/jobs/%llu", c->cfg.state_dir,
             (unsigned long long)job->id);
    if (s_save_counter(c) != SP_OK || sp_store_mkdirs(job->dir) != SP_OK ||
        s_save_def(job) != SP_OK || s_save_state(c, job, 1) != SP_OK) {
        sp_log(SP_LOG_ERROR, "job %llu: cannot store its definition: %s",
               (unsigned long long)job->id, strerror(errno));
        c->jobs.n--;
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_IO, t->req, SP_MSG_TRAIN,
                             "cannot store the job in the state directory");
        return;
    }
    sp_log(SP_LOG_INFO, "job %llu queued: dataset '%s', %u epochs, batch %u, partition %u",
           (unsigned long long)job->id, job->def.dataset, job->def.epochs, job->def.batch,
           job->def.partition);
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_JOB);
    m.u.r_job.req = t->req;
    m.u.r_job.job = job->id;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    sp_jobs_tick(c, sp_coord_now_ms());
}

static void s_status_of(const sp_job_t *job, sp_job_status_t *s)
{
    memset(s, 0, sizeof *s);
    s->job = job->id;
    snprintf(s->dataset, sizeof s->dataset, "%s", job->def.dataset);
    snprintf(s->state, sizeof s->state, "%s", sp_jobs_state_name(job->state));
    s->epoch = job->epoch;
    s->epochs = job->def.epochs;
    s->step = job->step;
    s->samples_seen = job->samples_seen;
    s->loss = job->loss;
    s->accuracy = job->accuracy;
    s->val_accuracy = job->val_accuracy;
    snprintf(s->error, sizeof s->error, "%s", job->error);
}

void sp_jobs_reply_status(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req,
                          uint64_t job_id)
{
    size_t first = 0, n = 0;
    if (job_id != 0) {
        sp_job_t *job = sp_jobs_find(&c->jobs, job_id);
        if (job == NULL) {
            sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOTFOUND, req, SP_MSG_STATUS,
                                 "no job %llu", (unsigned long long)job_id);
            return;
        }
        first = (size_t)(job - c->jobs.v);
        n = 1;
    } else {
        n = c->jobs.n < SP_MAX_LIST ? c->jobs.n : SP_MAX_LIST;
        first = c->jobs.n - n;
    }
    sp_job_status_t *list = calloc(n > 0 ? n : 1, sizeof *list);
    if (list == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOMEM, req, SP_MSG_STATUS,
                             "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s_status_of(&c->jobs.v[first + i], &list[i]);
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_STATUS);
    m.u.r_status.req = req;
    m.u.r_status.n = (uint32_t)n;
    m.u.r_status.jobs = list;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    free(list);
}

void sp_jobs_model_get(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req,
                       uint64_t job_id)
{
    sp_job_t *job = sp_jobs_find(&c->jobs, job_id);
    if (job == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOTFOUND, req, SP_MSG_MODEL_GET,
                             "no job %llu", (unsigned long long)job_id);
        return;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_MODEL);
    m.u.r_model.req = req;
    m.u.r_model.job = job_id;
    if (c->run != NULL && c->run->job_id == job_id) {
        m.u.r_model.model.data = c->run->model;
        m.u.r_model.model.len = c->run->model_len;
        (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.spm", job->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_store_read_all(path, S_MODEL_MAX_BYTES, &buf, &len);
    if (rc != SP_OK) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_STATE, req, SP_MSG_MODEL_GET,
                             "job %llu (%s) has no model%s%s", (unsigned long long)job_id,
                             sp_jobs_state_name(job->state), job->error[0] ? ": " : "", job->error);
        return;
    }
    m.u.r_model.model.data = buf;
    m.u.r_model.model.len = len;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    free(buf);
}

void sp_jobs_cancel(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req, uint64_t job_id)
{
    sp_job_t *job = sp_jobs_find(&c->jobs, job_id);
    if (job == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOTFOUND, req, SP_MSG_CANCEL,
                             "no job %llu", (unsigned long long)job_id);
        return;
    }
    if (job->state != SP_JOB_QUEUED && job->state != SP_JOB_RUNNING) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_STATE, req, SP_MSG_CANCEL,
                             "job %llu is already %s", (unsigned long long)job_id,
                             sp_jobs_state_name(job->state));
        return;
    }
    if (c->run != NULL && c->run->job_id == job_id) {
        s_run_end(c, SP_JOB_CANCELLED, "cancelled by a client");
    } else {
        s_set_state(c, job, SP_JOB_CANCELLED, "cancelled by a client");
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_OK);
    m.u.r_ok.req = req;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
}
