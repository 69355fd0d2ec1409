/* cache: the worker's model and dataset caches and dataset assembly. Slots
 * are fixed arrays; the least recently used slot is evicted when a new job
 * or dataset needs room. A job's next model version is copied into the
 * cached network in place when the topology is unchanged (the per-step case),
 * and loaded whole otherwise. */
#include "worker/cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "common/error.h"

void sp_cache_init(sp_cache_t *c)
{
    memset(c, 0, sizeof *c);
}

void sp_cache_download_abort(sp_cache_t *c)
{
    free(c->dl.buf);
    memset(&c->dl, 0, sizeof c->dl);
}

void sp_cache_fini(sp_cache_t *c)
{
    for (size_t i = 0; i < SP_CACHE_MODELS; i++) {
        sp_network_destroy(&c->models[i].net);
    }
    for (size_t i = 0; i < SP_CACHE_DATASETS; i++) {
        sp_dataset_fini(&c->datasets[i].data);
    }
    sp_cache_download_abort(c);
    memset(c, 0, sizeof *c);
}

int sp_cache_put_model(sp_cache_t *c, uint64_t job, uint64_t version, const uint8_t *buf,
                       size_t len, char *err, size_t errlen)
{
    sp_cache_model_t *slot = NULL, *lru = &c->models[0];
    for (size_t i = 0; i < SP_CACHE_MODELS; i++) {
        sp_cache_model_t *m = &c->models[i];
        if (m->job == job) {
            slot = m;
        }
        if (m->used < lru->used || (lru->job != 0 && m->job == 0)) {
            lru = m;
        }
    }
    if (slot && slot->version == version) {
        return SP_OK; /* a duplicate: the same bits (steps are deterministic) */
    }
    /* An older version replaces a newer one too: the coordinator's word
     * wins. This worker may have applied a step whose result the coordinator
     * never accepted (it declared the worker dead meanwhile); it then sends
     * the version it is at, and tasks for it. */
    if (slot && slot->net) {
        /* Usually the next version of the same topology: refresh in place. */
        int rc = sp_network_update_from_buffer(slot->net, buf, len, err, errlen);
        if (rc == SP_OK) {
            slot->version = version;
            slot->used = ++c->clock;
            return SP_OK;
        }
        if (rc != SP_E_STATE) {
            return rc; /* a bad model: the cached one stays as it was */
        }
    }
    sp_network_t *net = NULL;
    int rc = sp_network_load_buffer(buf, len, &net, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    if (!sp_network_has_training_state(net)) {
        /* The worker applies steps itself: without the master weights and
         * optimizer state its copy would drift from the coordinator's. A
         * cached model always has them, so the in-place path above refuses
         * such a file too (SP_E_STATE) and it ends here. */
        sp_network_destroy(&net);
        snprintf(err, errlen, "no training state (protocol %u models carry it)",
                 SP_PROTO_VERSION);
        return SP_E_INPUT;
    }
    if (!slot) {
        slot = lru;
    }
    sp_network_destroy(&slot->net);
    slot->job = job;
    slot->version = version;
    slot->net = net;
    slot->used = ++c->clock;
    return SP_OK;
}

static sp_cache_model_t *s_model_slot(sp_cache_t *c, uint64_t job)
{
    for (size_t i = 0; i < SP_CACHE_MODELS; i++) {
        if (c->models[i].job == job && c->models[i].net) {
            return &c->models[i];
        }
    }
    return NULL;
}

sp_network_t *sp_cache_model(sp_cache_t *c, uint64_t job, uint64_t *version)
{
    sp_cache_model_t *m = s_model_slot(c, job);
    if (m == NULL) {
        *version = 0;
        return NULL;
    }
    m->used = ++c->clock;
    *version = m->version;
    return m->net;
}

void sp_cache_set_version(sp_cache_t *c, uint64_t job, uint64_t version)
{
    sp_cache_model_t *m = s_model_slot(c, job);
    if (m != NULL) {
        m->version = version;
    }
}

void sp_cache_drop_model(sp_cache_t *c, uint64_t job)
{
    sp_cache_model_t *m = s_model_slot(c, job);
    if (m != NULL) {
        sp_network_destroy(&m->net);
        m->job = 0;
        m->version = 0;
        m->used = 0;
    }
}

const sp_dataset_t *sp_cache_dataset(sp_cache_t *c, const char *name, uint64_t checksum)
{
    for (size_t i = 0; i < SP_CACHE_DATASETS; i++) {
        sp_cache_dataset_t *d = &c->datasets[i];
        if (d->name[0] && d->checksum == checksum && strcmp(d->name, name) == 0) {
            d->used = ++c->clock;
            return &d->data;
        }
    }
    return NULL;
}

void sp_cache_download_start(sp_cache_t *c, const char *name, uint64_t checksum)
{
    sp_cache_download_abort(c);
    c->dl.active = 1;
    snprintf(c->dl.name, sizeof c->dl.name, "%s", name);
    c->dl.checksum = checksum;
}

int sp_cache_download_chunk(sp_cache_t *c, const sp_msg_data_chunk_t *ch, char *err, size_t errlen)
{
    sp_cache_download_t *dl = &c->dl;
    if (!dl->active || ch->checksum != dl->checksum || strcmp(ch->dataset, dl->name) != 0) {
        return sp_err_input(err, errlen, "data_chunk for dataset '%s' that is not being fetched",
                            ch->dataset);
    }
    if (ch->total == 0 || ch->total > SP_CACHE_MAX_DATASET_BYTES ||
        (dl->total != 0 && ch->total != dl->total)) {
        return sp_err_input(err, errlen, "data_chunk of '%s': bad total %" PRIu64 " bytes",
                            ch->dataset, ch->total);
    }
    if (ch->offset != dl->received || ch->data.len == 0 || ch->data.len > ch->total - ch->offset) {
        return sp_err_input(err, errlen,
                            "data_chunk of '%s': %zu bytes at offset %" PRIu64
                            " do not continue the %" PRIu64 " received",
                            ch->dataset, ch->data.len, ch->offset, dl->received);
    }
    if (!dl->buf) {
        dl->buf = malloc((size_t)ch->total);
        if (!dl->buf) {
            sp_cache_download_abort(c);
            return sp_err_input(err, errlen, "no memory for dataset '%s' (%" PRIu64 " bytes)",
                                ch->dataset, ch->total);
        }
        dl->total = ch->total;
    }
    memcpy(dl->buf + dl->received, ch->data.data, ch->data.len);
    dl->received += ch->data.len;
    if (dl->received < dl->total) {
        return 0;
    }
    sp_dataset_t data;
    memset(&data, 0, sizeof data);
    /* the set takes the download's buffer: never held twice */
    uint64_t key = 0;
    int rc = sp_dataset_deserialize_take(&dl->buf, (size_t)dl->total, &data, &key, err, errlen);
    if (rc == SP_OK && key != dl->checksum) {
        sp_dataset_fini(&data);
        rc = sp_err_input(err, errlen, "dataset '%s': bytes do not match checksum %016" PRIx64,
                          ch->dataset, ch->checksum);
    }
    if (rc != SP_OK) {
        sp_cache_download_abort(c);
        return rc;
    }
    sp_cache_dataset_t *slot = &c->datasets[0];
    for (size_t i = 0; i < SP_CACHE_DATASETS; i++) {
        sp_cache_dataset_t *d = &c->datasets[i];
        if (!d->name[0]) {
            slot = d;
            break;
        }
        if (d->used < slot->used) {
            slot = d;
        }
    }
    sp_dataset_fini(&slot->data);
    snprintf(slot->name, sizeof slot->name, "%s", dl->name);
    slot->checksum = dl->checksum;
    slot->data = data;
    slot->used = ++c->clock;
    sp_cache_download_abort(c);
    return 1;
}
