/* metrics: a job's metric records. Each record is appended to
 * <job>/metrics.jsonl (one JSON object a line, the export format) and to
 * <job>/metrics.bin (fixed-size binary records, the index that answers
 * METRICS without parsing JSON), then published on the PUB socket under the
 * topic "job/<id>". Invariant: both files hold the same n_records records,
 * record i has index i; resuming cuts both back to the checkpoint's count. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "coordinator/coordinator.h"
#include "coordinator/store.h"

static void s_path(const sp_job_t *job, const char *file, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", job->dir, file);
}

/* JSON number, or null for NaN / infinity. */
static size_t s_num(char *p, size_t left, double v)
{
    int n = isfinite(v) ? snprintf(p, left, "%.9g", v) : snprintf(p, left, "null");
    return n < 0 ? 0 : ((size_t)n < left ? (size_t)n : left - 1);
}

#define S_PUT(...)                                                                                 \
    do {                                                                                           \
        int k_ = snprintf(line + n, cap - n, __VA_ARGS__);                                         \
        n += k_ < 0 ? 0 : ((size_t)k_ < cap - n ? (size_t)k_ : cap - n - 1);                       \
    } while (0)
#define S_NUM(v) (n += s_num(line + n, cap - n, (v)))

/* One JSON line for a record (ends with '\n'); returns its length. */
static size_t s_json(const sp_metric_t *r, char *line, size_t cap)
{
    size_t n = 0;
    S_PUT(
        "{\"index\":%llu,\"job\":%llu,\"kind\":\"%s\",\"epoch\":%u,\"step\":%llu,\"time_ms\":%llu,",
        (unsigned long long)r->index, (unsigned long long)r->job, r->kind, r->epoch,
        (unsigned long long)r->step, (unsigned long long)r->time_ms);
    S_PUT("\"loss\":");
    S_NUM(r->loss);
    S_PUT(",\"accuracy\":");
    S_NUM(r->accuracy);
    S_PUT(",\"val_loss\":");
    S_NUM(r->val_loss);
    S_PUT(",\"val_accuracy\":");
    S_NUM(r->val_accuracy);
    S_PUT(",\"samples_per_s\":");
    S_NUM(r->samples_per_s);
    S_PUT(",\"neurons\":[");
    for (uint32_t i = 0; i < r->n_layers && i < SP_MAX_LAYERS; i++) {
        S_PUT("%s%u", i ? "," : "", r->neurons[i]);
    }
    S_PUT("],\"saturation\":[");
    for (uint32_t i = 0; i < r->n_layers && i < SP_MAX_LAYERS; i++) {
        S_PUT("%s", i ? "," : "");
        S_NUM(r->saturation[i]);
    }
    S_PUT("],\"growth_candidates\":%u,\"prune_candidates\":%u,\"sparsity\":", r->growth_candidates,
          r->prune_candidates);
    S_NUM(r->sparsity);
    return n;
}

/* ,"workers":[...] with every registered worker's figures (epoch records). */
static size_t s_json_workers(const sp_workers_t *w, char *line, size_t cap)
{
    size_t n = 0;
    S_PUT(",\"workers\":[");
    for (size_t i = 0; i < w->n && n + 256 < cap; i++) {
        const sp_worker_t *wk = &w->v[i];
        double sps = wk->compute_us ? (double)wk->samples_done * 1e6 / (double)wk->compute_us : 0;
        S_PUT("%s{\"id\":%u,\"name\":\"%s\",\"alive\":%s,\"partitions_done\":%llu,"
              "\"samples_per_s\":",
              i ? "," : "", wk->id, wk->name, wk->alive ? "true" : "false",
              (unsigned long long)wk->partitions_done);
        S_NUM(sps);
        S_PUT(",\"heartbeats_missed\":%u,\"failures\":%u}", wk->heartbeats_missed, wk->failures);
    }
    S_PUT("]");
    return n;
}

int sp_metrics_record(sp_coord_t *c, sp_job_t *job, sp_metric_t *rec)
{
    rec->index = job->n_records;
    rec->job = job->id;
    char path[600];
    size_t cap = 4096 + (strcmp(rec->kind, "epoch") == 0 ? c->workers.n * 256 : 0);
    char *line = malloc(cap);
    if (line == NULL) {
        return SP_E_NOMEM;
    }
    size_t n = s_json(rec, line, cap - 4);
    if (strcmp(rec->kind, "epoch") == 0) {
        n += s_json_workers(&c->workers, line + n, cap - 4 - n);
    }
    line[n++] = '}';
    line[n++] = '\n';
    s_path(job, "metrics.bin", path, sizeof path);
    int rc = sp_store_append(path, rec, sizeof *rec, 0);
    if (rc == SP_OK) {
        s_path(job, "metrics.jsonl", path, sizeof path);
        rc = sp_store_append(path, line, n, 0);
    }
    free(line);
    if (rc != SP_OK) {
        sp_log(SP_LOG_ERROR, "job %llu: cannot append a metric record: %s",
               (unsigned long long)job->id, strerror(errno));
        return rc;
    }
    job->n_records++;
    char topic[32];
    int tn = snprintf(topic, sizeof topic, "job/%llu", (unsigned long long)job->id);
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_METRICS);
    m.u.r_metrics.n = 1;
    m.u.r_metrics.records = rec;
    if (sp_msg_send(c->metrics_sock, (const uint8_t *)topic, (size_t)tn, &m) != SP_OK) {
        sp_log(SP_LOG_DEBUG, "metrics publish failed");
    }
    return SP_OK;
}

uint64_t sp_metrics_count(const sp_job_t *job)
{
    char path[600];
    s_path(job, "metrics.bin", path, sizeof path);
    int64_t sz = sp_store_size(path);
    return sz > 0 ? (uint64_t)sz / sizeof(sp_metric_t) : 0;
}

int sp_metrics_truncate(sp_job_t *job, uint64_t n)
{
    char path[600];
    s_path(job, "metrics.bin", path, sizeof path);
    int rc = sp_store_truncate(path, n * sizeof(sp_metric_t));
    if (rc != SP_OK) {
        return rc;
    }
    /* Keep the first n lines of the JSON file. */
    s_path(job, "metrics.jsonl", path, sizeof path);
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = sp_store_read_all(path, (size_t)1 << 34, &buf, &len);
    if (rc == SP_E_NOTFOUND) {
        job->n_records = 0;
        return n == 0 ? SP_OK : rc;
    }
    if (rc != SP_OK) {
        return rc;
    }
    uint64_t lines = 0;
    size_t cut = 0;
    while (cut < len && lines < n) {
        const uint8_t *nl = memchr(buf + cut, '\n', len - cut);
        if (nl == NULL) {
            break;
        }
        cut = (size_t)(nl - buf) + 1;
        lines++;
    }
    free(buf);
    rc = sp_store_truncate(path, cut);
    job->n_records = n;
    return rc;
}

void sp_metrics_reply(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req,
                      uint64_t job_id, uint64_t since)
{
    sp_job_t *job = sp_jobs_find(&c->jobs, job_id);
    if (job == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOTFOUND, req, SP_MSG_METRICS,
                             "no job %llu", (unsigned long long)job_id);
        return;
    }
    uint64_t total = job->n_records;
    uint64_t n = since < total ? total - since : 0;
    if (n > SP_MAX_LIST) {
        n = SP_MAX_LIST;
    }
    sp_metric_t *recs = calloc(n > 0 ? (size_t)n : 1, sizeof *recs);
    if (recs == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOMEM, req, SP_MSG_METRICS,
                             "out of memory");
        return;
    }
    size_t got = 0;
    if (n > 0) {
        char path[600];
        s_path(job, "metrics.bin", path, sizeof path);
        if (sp_store_pread(path, since * sizeof *recs, recs, (size_t)n * sizeof *recs, &got) !=
            SP_OK) {
            got = 0;
        }
    }
    /* The file is ours, but a torn or edited one must not make the codec
     * refuse the reply: terminate strings and bound counts. */
    for (size_t i = 0; i < got / sizeof *recs; i++) {
        recs[i].kind[sizeof recs[i].kind - 1] = '\0';
        if (recs[i].n_layers > SP_MAX_LAYERS) {
            recs[i].n_layers = 0;
        }
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_METRICS);
    m.u.r_metrics.req = req;
    m.u.r_metrics.n = (uint32_t)(got / sizeof *recs);
    m.u.r_metrics.records = recs;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    free(recs);
}
