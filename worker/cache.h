/* cache: what a worker keeps between tasks: the latest model of each job
 * (by job and version) and datasets (by name and checksum), plus the one
 * dataset download in progress. A dataset is fetched from the coordinator
 * once per worker and kept until evicted by newer ones (least recently
 * used); a download only ever appends the chunk at its current end, and
 * never grows past the total the first chunk announced. */
#ifndef SP_WORKER_CACHE_H
#define SP_WORKER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/dataset.h"
#include "common/network.h"
#include "proto/messages.h"

#define SP_CACHE_MODELS 8                               /* jobs whose model is kept */
#define SP_CACHE_DATASETS 4                             /* datasets kept */
#define SP_CACHE_MAX_DATASET_BYTES ((uint64_t)16 << 30) /* largest serialized dataset */

typedef struct {
    uint64_t job;      /* 0 = free slot */
    uint64_t version;  /* model version, >= 1 */
    sp_network_t *net; /* owned */
    uint64_t used;     /* cache clock at last use, for eviction */
} sp_cache_model_t;

typedef struct {
    char name[SP_NAME_MAX]; /* "" = free slot */
    uint64_t checksum;
    sp_dataset_t data; /* owned */
    uint64_t used;
} sp_cache_dataset_t;

typedef struct {
    int active; /* a download is in progress */
    char name[SP_NAME_MAX];
    uint64_t checksum;
    uint64_t total;        /* bytes, known after the first chunk (0 before) */
    uint64_t received;     /* bytes assembled, <= total */
    uint8_t *buf;          /* total bytes once known */
    uint64_t requested_ms; /* when the last DATA_REQ went out (monotonic ms) */
} sp_cache_download_t;

typedef struct {
    sp_cache_model_t models[SP_CACHE_MODELS];
    sp_cache_dataset_t datasets[SP_CACHE_DATASETS];
    sp_cache_download_t dl;
    uint64_t clock; /* use counter */
} sp_cache_t;

void sp_cache_init(sp_cache_t *c);
void sp_cache_fini(sp_cache_t *c);

/* Loads model bytes for (job, version) and keeps it as the job's model,
 * replacing the cached one whether older or newer (the coordinator sends
 * the version it is at; the same version again is ignored): in place
 * (sp_network_update_from_buffer) when the topology is the cached
 * network's, else by a full load. SP_E_INPUT / SP_E_VERSION with
 * a message for a bad model, or one without training state (this worker
 * applies steps itself); the cached model and version are then kept. */
int sp_cache_put_model(sp_cache_t *c, uint64_t job, uint64_t version, const uint8_t *buf,
                       size_t len, char *err, size_t errlen);
/* The job's cached model and its version (*version = 0 and NULL when none);
 * borrowed, valid until the next put. */
sp_network_t *sp_cache_model(sp_cache_t *c, uint64_t job, uint64_t *version);
/* The worker changed the job's cached network itself (it applied a step):
 * records its new version. No-op when the job has no cached model. */
void sp_cache_set_version(sp_cache_t *c, uint64_t job, uint64_t version);
/* Forgets the job's model (it is no longer the coordinator's: a step failed
 * half-way); tasks for the job then wait for the next MODEL. */
void sp_cache_drop_model(sp_cache_t *c, uint64_t job);
/* The dataset (name, checksum), or NULL; borrowed. */
const sp_dataset_t *sp_cache_dataset(sp_cache_t *c, const char *name, uint64_t checksum);

/* Starts downloading (name, checksum), dropping any other download. */
void sp_cache_download_start(sp_cache_t *c, const char *name, uint64_t checksum);
void sp_cache_download_abort(sp_cache_t *c);
/* Feeds one DATA_CHUNK. Returns 1 when the dataset is complete and cached,
 * 0 when more is needed (c->dl.received is the next offset to ask for), or
 * SP_E_INPUT with a message: a chunk of another dataset or offset, a total
 * that changes or is too big (ignored, download kept), or a complete
 * dataset whose bytes do not match the checksum or do not deserialize
 * (download dropped). */
int sp_cache_download_chunk(sp_cache_t *c, const sp_msg_data_chunk_t *ch, char *err, size_t errlen);

#endif
