/* jobs: the job table and its state directory, and the clients' requests
 * about jobs. Jobs run one at a time in submission order (queued -> running
 * -> done | failed | cancelled); each lives in <state>/jobs/<id>/. Invariant:
 * the table holds only jobs whose definition (job.def) is on disk, in
 * ascending id order. The running job itself is run.c's and step.c's. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/file.h"
#include "coordinator/coordinator.h"
#include "coordinator/run.h"
#include "coordinator/store.h"

#define S_JOBDEF_MAX_BYTES (1u << 20)
#define S_MODEL_MAX_BYTES ((size_t)SP_MSG_MAX_BYTES)

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

/* --- persistence -------------------------------------------------------- */

int sp_jobs_save_state(sp_coord_t *c, const sp_job_t *job, int sync)
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

void sp_jobs_set_state(sp_coord_t *c, sp_job_t *job, sp_job_state_t st, const char *error)
{
    job->state = st;
    snprintf(job->error, sizeof job->error, "%s", error ? error : "");
    (void)sp_jobs_save_state(c, job, 1);
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

void sp_jobs_fini(sp_coord_t *c)
{
    sp_run_free(&c->run);
    free(c->jobs.v);
    memset(&c->jobs, 0, sizeof c->jobs);
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
        s_save_def(job) != SP_OK || sp_jobs_save_state(c, job, 1) != SP_OK) {
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
        sp_run_end(c, SP_JOB_CANCELLED, "cancelled by a client");
    } else {
        sp_jobs_set_state(c, job, SP_JOB_CANCELLED, "cancelled by a client");
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_OK);
    m.u.r_ok.req = req;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
}
