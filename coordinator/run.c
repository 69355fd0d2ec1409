/* run: the running job from its start to its end: starting it or resuming it
 * from its checkpoint, checkpoints, what follows each step (growth and
 * pruning, metric records, the epoch's end, the next step), rollback to the
 * last checkpoint, and its end. Invariant: the model after a step depends on
 * nothing but the dataset, the settings and the seed, so a resumed or rolled
 * back run ends with the model of an unbroken one. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ckpt.h"
#include "common/error.h"
#include "common/file.h"
#include "common/rng.h"
#include "coordinator/coordinator.h"
#include "coordinator/run.h"
#include "coordinator/store.h"

#define S_CKPT_MAX_BYTES ((size_t)SP_MSG_MAX_BYTES * 4)
#define S_STEP_RECORDS_PER_EPOCH 50 /* at most this many step records per epoch */
#define S_STEP_RECORD_MIN_MS 50     /* and each over at least this long: results of a lone
                                       run come in bursts, and a rate over a few ms of
                                       them says little */
#define S_VAL_CHUNK 256             /* validation rows per forward call */

/* --- the running job ----------------------------------------------------- */

sp_job_t *sp_run_job(sp_coord_t *c)
{
    return c->run ? sp_jobs_find(&c->jobs, c->run->job_id) : NULL;
}

void sp_run_parts_free(sp_run_t *r)
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

void sp_run_free(sp_run_t **rp)
{
    sp_run_t *r = *rp;
    if (r == NULL) {
        return;
    }
    sp_run_parts_free(r);
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

int sp_run_lagging(const sp_run_t *r)
{
    return r->net_version != r->version;
}

int sp_run_topology_due(const sp_job_t *job, uint64_t done)
{
    const sp_msg_train_t *d = &job->def;
    return (d->growth_every > 0 && done % d->growth_every == 0) ||
           (d->prune_every > 0 && done % d->prune_every == 0);
}

/* --- start, checkpoints, end --------------------------------------------- */

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

void sp_run_end(sp_coord_t *c, sp_job_state_t st, const char *error)
{
    sp_job_t *job = sp_run_job(c);
    if (job != NULL) {
        if (c->run->net != NULL && s_save_final_model(c->run, job) != SP_OK && st == SP_JOB_DONE) {
            st = SP_JOB_FAILED;
            error = "cannot write the final model";
        }
        sp_jobs_set_state(c, job, st, error);
        sp_log(st == SP_JOB_FAILED ? SP_LOG_WARN : SP_LOG_INFO, "job %llu %s%s%s",
               (unsigned long long)job->id, sp_jobs_state_name(st), error ? ": " : "",
               error ? error : "");
    }
    s_workers_release(c);
    sp_run_free(&c->run);
}

static int s_write_checkpoint(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = sp_run_job(c);
    if (r == NULL || job == NULL || r->net == NULL) {
        return SP_OK;
    }
    if (sp_run_lagging(r)) {
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
    (void)sp_jobs_save_state(c, job, 0);
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

void sp_run_fail(sp_coord_t *c, const char *fmt, ...)
{
    char msg[SP_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sp_run_end(c, SP_JOB_FAILED, msg);
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
        sp_run_fail(c, "dataset '%s' is gone", job->def.dataset);
        return;
    }
    r->ds = *e;
    r->n_samples = e->info.samples;
    r->classify = strcmp(e->info.task, "classify") == 0;
    char err[SP_TEXT_MAX] = "";
    if (job->def.validation[0] != '\0') {
        const sp_dsentry_t *v = sp_datasets_find(&c->datasets, job->def.validation);
        if (v == NULL || sp_datasets_read(v, &r->val, err, sizeof err) != SP_OK) {
            sp_run_fail(c, "validation dataset '%s': %s", job->def.validation,
                        v == NULL ? "gone" : err);
            return;
        }
    }
    r->perm = malloc((size_t)r->n_samples * sizeof *r->perm);
    if (r->perm == NULL || r->n_samples == 0) {
        sp_run_fail(c, "out of memory for the permutation");
        return;
    }
    r->steps_per_epoch = (r->n_samples + job->def.batch - 1) / job->def.batch;
    uint64_t starts = s_count_start(job);
    if (starts == 0 || starts >= (1u << 20)) {
        sp_run_fail(c, "cannot record the start in the state directory");
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
            sp_run_fail(c, "cannot cut metrics back to the checkpoint");
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
            sp_run_fail(c, "cannot build the network");
            return;
        }
        if (s_scale_inputs(r, err, sizeof err) != SP_OK) {
            sp_run_fail(c, "cannot scale the inputs: %s", err);
            return;
        }
        r->version = 1;
        job->samples_seen = 0;
        job->step = 0;
        if (sp_metrics_truncate(job, 0) != SP_OK) {
            sp_run_fail(c, "cannot reset the metrics files");
            return;
        }
    }
    job->epoch = r->epoch + 1;
    r->net_version = r->version;
    s_perm(r, job->def.seed);
    s_sizes(r);
    if (sp_step_begin(c, r, job) != SP_OK) {
        sp_run_fail(c, "cannot prepare the first step");
        return;
    }
    uint64_t now = sp_coord_now_ms();
    r->t_start_ms = r->rec_t0_ms = r->ep_t0_ms = r->last_ckpt_ms = now;
    (void)sp_jobs_save_state(c, job, 0);
    sp_log(SP_LOG_INFO, "job %llu running: %u samples, %llu steps per epoch, %zu parameters",
           (unsigned long long)job->id, r->n_samples, (unsigned long long)r->steps_per_epoch,
           r->n_params);
}

/* Back to the last checkpoint (or the beginning): the only copy of steps
 * the master lacked was lost with its worker. Every step is replayed from
 * there with the same numbers, so the final model is the one an unbroken
 * run gives; step records after the checkpoint are cut and written again. */
static void s_rollback(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = sp_run_job(c);
    sp_log(SP_LOG_WARN,
           "job %llu: worker %u held steps %llu..%llu that this coordinator had not copied; "
           "resuming from the last checkpoint",
           (unsigned long long)r->job_id, r->solo_worker,
           (unsigned long long)(r->global_step - (r->version - r->net_version) + 1),
           (unsigned long long)r->global_step);
    (void)sp_store_writer_flush(c->writer); /* the checkpoint read back is the last one queued */
    s_workers_release(c);
    sp_run_free(&c->run);
    if (job != NULL) {
        s_start(c, job);
    }
}

/* --- metrics of the running job ------------------------------------------ */

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

/* --- after a step -------------------------------------------------------- */

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
                sp_run_fail(c, "growth failed (%s)", sp_strerror(n));
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
                sp_run_fail(c, "pruning failed (%s)", sp_strerror(n));
                return -1;
            }
            changed |= n > 0;
        }
    }
    return changed;
}

void sp_run_step_tail(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = sp_run_job(c);
    uint64_t now = sp_coord_now_ms();
    int changed = sp_run_lagging(r) ? 0 : s_grow_prune(c, r, job);
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
    if (r->rec_steps >= every && now - r->rec_t0_ms >= S_STEP_RECORD_MIN_MS) {
        s_step_record(c, r, job, now);
    }
    int epoch_done = r->step_in_epoch == r->steps_per_epoch;
    /* The epoch's last step, a growth or prune step, carry sync (s_sync_due, step.c). */
    SP_ASSERT(!sp_run_lagging(r) || (!epoch_done && !sp_run_topology_due(job, r->global_step)));
    if (epoch_done) {
        if (r->rec_steps > 0) {
            s_step_record(c, r, job, now);
        }
        r->epoch++;
        r->step_in_epoch = 0;
        if (r->epoch == job->def.epochs) {
            s_epoch_end(c, r, job, r->epoch, now);
            job->epoch = job->def.epochs;
            sp_run_end(c, SP_JOB_DONE, NULL);
            return;
        }
        job->epoch = r->epoch + 1;
        s_perm(r, job->def.seed);
    }
    if (sp_step_begin(c, r, job) != SP_OK) {
        sp_run_fail(c, "cannot prepare the next step");
        return;
    }
    if (epoch_done) {
        /* The workers start the new epoch first; then the master is
         * validated (nothing changes it before this returns: results wait
         * in the socket) and the epoch recorded. The checkpoint written
         * below counts as taken for the dispatch: no sync is asked for it. */
        r->last_ckpt_ms = now;
        sp_step_dispatch(c);
        if (c->run == NULL) {
            return; /* the dispatch failed the job */
        }
        s_epoch_end(c, r, job, r->epoch, now);
    }
    if (epoch_done || now - r->last_ckpt_ms >= SP_COORD_CKPT_EVERY_MS) {
        (void)s_write_checkpoint(c);
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
        sp_step_dispatch(c);
    }
}
