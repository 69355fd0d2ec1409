/* datasets: the registry of stored datasets (<state>/datasets/<name>.spds,
 * the serialized form of common/dataset.h) and the DATA_CHUNK service that
 * ships their bytes to workers. Invariant: an entry exists only for a file
 * that was completely and durably written and that deserialized cleanly; a
 * dataset is immutable once stored, so (name, checksum) identifies its bytes. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/file.h"
#include "coordinator/coordinator.h"
#include "coordinator/store.h"

#define S_SPDS_MAX_BYTES (8ull << 30) /* refuse to load a larger file at start-up */

void sp_datasets_fini(sp_datasets_t *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

const sp_dsentry_t *sp_datasets_find(const sp_datasets_t *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->v[i].info.name, name) == 0) {
            return &d->v[i];
        }
    }
    return NULL;
}

int sp_datasets_add(sp_datasets_t *d, const sp_dsentry_t *e)
{
    if (d->n >= SP_COORD_MAX_DATASETS) {
        return SP_E_RANGE;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        sp_dsentry_t *v = realloc(d->v, cap * sizeof *v);
        if (v == NULL) {
            return SP_E_NOMEM;
        }
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = *e;
    return SP_OK;
}

/* Fills info from a dataset and the length and sp_dataset_key of its
 * serialized form. */
static void s_fill_info(sp_dataset_info_t *info, const char *name, const sp_dataset_t *ds,
                        uint64_t key, size_t len)
{
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    snprintf(info->task, sizeof info->task, "%s",
             ds->task == SP_TASK_CLASSIFY ? "classify" : "regress");
    info->samples = ds->n_samples;
    info->features = ds->n_features;
    info->classes = ds->n_classes;
    info->checksum = key;
    info->bytes = len;
}

int sp_datasets_load(sp_coord_t *c)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/datasets", c->cfg.state_dir);
    if (sp_store_mkdirs(dir) != SP_OK) {
        sp_log(SP_LOG_ERROR, "cannot create %s: %s", dir, strerror(errno));
        return SP_E_IO;
    }
    sp_store_clean_tmp(dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        sp_log(SP_LOG_ERROR, "cannot open %s: %s", dir, strerror(errno));
        return SP_E_IO;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 5 || n - 5 >= SP_NAME_MAX || strcmp(e->d_name + n - 5, ".spds") != 0) {
            continue;
        }
        sp_dsentry_t ent;
        memset(&ent, 0, sizeof ent);
        char name[SP_NAME_MAX];
        memcpy(name, e->d_name, n - 5);
        name[n - 5] = '\0';
        if (snprintf(ent.path, sizeof ent.path, "%s/%s", dir, e->d_name) >= (int)sizeof ent.path) {
            continue;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        if (sp_store_read_all(ent.path, S_SPDS_MAX_BYTES, &buf, &len) != SP_OK) {
            sp_log(SP_LOG_ERROR, "dataset %s: cannot read %s, skipped", name, ent.path);
            continue;
        }
        sp_dataset_t ds;
        memset(&ds, 0, sizeof ds);
        char err[SP_TEXT_MAX];
        uint64_t key = 0;
        int rc = sp_dataset_deserialize_take(&buf, len, &ds, &key, err, sizeof err);
        free(buf);
        if (rc != SP_OK) {
            sp_log(SP_LOG_ERROR, "dataset %s: %s is corrupt (%s), skipped", name, ent.path, err);
            continue;
        }
        s_fill_info(&ent.info, name, &ds, key, len);
        sp_dataset_fini(&ds);
        if (sp_datasets_add(&c->datasets, &ent) != SP_OK) {
            sp_log(SP_LOG_ERROR, "dataset %s: registry full, skipped", name);
        }
    }
    closedir(d);
    sp_log(SP_LOG_INFO, "%zu dataset(s) in %s", c->datasets.n, dir);
    return SP_OK;
}

int sp_datasets_read(const sp_dsentry_t *e, sp_dataset_t *out, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_store_read_all(e->path, S_SPDS_MAX_BYTES, &buf, &len);
    if (rc != SP_OK) {
        snprintf(err, errlen, "dataset %s: cannot read %s", e->info.name, e->path);
        return rc;
    }
    uint64_t key = 0;
    rc = sp_dataset_deserialize_take(&buf, len, out, &key, err, errlen);
    free(buf);
    if (rc == SP_OK && key != e->info.checksum) {
        sp_dataset_fini(out);
        snprintf(err, errlen, "dataset %s: stored file changed (checksum)", e->info.name);
        return SP_E_INPUT;
    }
    return rc;
}

void sp_datasets_reply_list(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req)
{
    size_t n = c->datasets.n < SP_MAX_LIST ? c->datasets.n : SP_MAX_LIST;
    sp_dataset_info_t *list = calloc(n > 0 ? n : 1, sizeof *list);
    if (list == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOMEM, req, SP_MSG_DATASETS,
                             "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        list[i] = c->datasets.v[i].info;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_DATASETS);
    m.u.r_datasets.req = req;
    m.u.r_datasets.n = (uint32_t)n;
    m.u.r_datasets.datasets = list;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    free(list);
}

void sp_datasets_serve(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_data_req_t *r)
{
    const sp_dsentry_t *e = sp_datasets_find(&c->datasets, r->dataset);
    if (e == NULL || e->info.checksum != r->checksum) {
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_NOTFOUND, 0, SP_MSG_DATA_REQ,
                             "no dataset '%s' with checksum %016llx", r->dataset,
                             (unsigned long long)r->checksum);
        return;
    }
    if (r->offset > e->info.bytes) {
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_RANGE, 0, SP_MSG_DATA_REQ,
                             "offset %llu beyond the dataset's %llu bytes",
                             (unsigned long long)r->offset, (unsigned long long)e->info.bytes);
        return;
    }
    uint64_t left = e->info.bytes - r->offset;
    size_t want = left < SP_CHUNK_MAX ? (size_t)left : SP_CHUNK_MAX;
    uint8_t *buf = malloc(want > 0 ? want : 1);
    size_t got = 0;
    if (buf == NULL || sp_store_pread(e->path, r->offset, buf, want, &got) != SP_OK ||
        got != want) {
        free(buf);
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_IO, 0, SP_MSG_DATA_REQ,
                             "cannot read dataset '%s'", r->dataset);
        return;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_DATA_CHUNK);
    snprintf(m.u.data_chunk.dataset, sizeof m.u.data_chunk.dataset, "%s", r->dataset);
    m.u.data_chunk.checksum = e->info.checksum;
    m.u.data_chunk.offset = r->offset;
    m.u.data_chunk.total = e->info.bytes;
    m.u.data_chunk.data.data = want > 0 ? buf : NULL;
    m.u.data_chunk.data.len = want;
    sp_worker_t *wk = sp_workers_find_ident(&c->workers, id, id_len);
    if (wk != NULL) {
        wk->bytes_out += want;
    }
    (void)sp_coord_send(c, c->workers_sock, id, id_len, &m);
    free(buf);
}

/* The set to write to a stored file, and what the write found. */
typedef struct {
    const sp_dataset_t *ds;
    size_t len;
    uint64_t key;
} s_write_t;

static int s_write(int fd, void *arg)
{
    s_write_t *w = arg;
    return sp_dataset_write(w->ds, fd, &w->len, &w->key);
}

int sp_datasets_write(const char *state_dir, const char *name, const sp_dataset_t *ds,
                      sp_dsentry_t *ent, char *err, size_t errlen)
{
    memset(ent, 0, sizeof *ent);
    snprintf(ent->path, sizeof ent->path, "%s/datasets/%s.spds", state_dir, name);
    s_write_t w = {ds, 0, 0};
    int rc = sp_file_write_atomic_with(ent->path, s_write, &w);
    if (rc == SP_E_RANGE) {
        snprintf(err, errlen, "cannot serialize the dataset (%s)", sp_strerror(rc));
        return rc;
    }
    if (rc != SP_OK) {
        snprintf(err, errlen, "cannot store the dataset: %s", strerror(errno));
        return rc;
    }
    s_fill_info(&ent->info, name, ds, w.key, w.len);
    return SP_OK;
}
