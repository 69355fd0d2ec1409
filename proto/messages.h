/* messages: every message of the Spatium wire protocol, as C structs.
 * A message is two ZeroMQ frames after any routing envelope: a 4-byte header
 * ("SP", protocol version, type) and a MessagePack map body with string keys
 * (proto/PROTOCOL.md). The codec (proto/codec.c) is the only code that builds
 * or parses frames. Decoded messages own their bytes (strings are fixed
 * arrays, blobs are malloc'ed copies freed by sp_msg_fini). */
#ifndef SP_PROTO_MESSAGES_H
#define SP_PROTO_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include "proto/version.h"

#define SP_NAME_MAX 64         /* names of workers, datasets: 1..63 bytes [A-Za-z0-9._-], */
                               /* not starting with '.' */
#define SP_TEXT_MAX 256        /* error text, reasons: 0..255 bytes, no NUL */
#define SP_MAX_LAYERS 16       /* layer sizes in a job, input included */
#define SP_MAX_LIST 1024       /* entries in a status / workers / datasets / metrics reply */
#define SP_CHUNK_MAX (1u << 20)  /* bytes of data in one upload or dataset chunk */
#define SP_MSG_MAX_BYTES (256u << 20) /* ZMQ_MAXMSGSIZE on every socket */
#define SP_MIN_NODE_DEFAULT 256  /* train.min_node = 0: the coordinator derives the smallest
                                    share of a split step from the measured compute time;
                                    this many samples until it has measured any */

/* X(ENUM, id, "name"): the one table of message types. */
#define SP_MSG_TYPES(X)                                                                       \
    X(ERROR, 1, "error")               /* any direction: a request or frame was refused */    \
    X(HELLO, 2, "hello")               /* worker -> coordinator: first message */             \
    X(WELCOME, 3, "welcome")           /* coordinator -> worker: registration accepted */     \
    X(HEARTBEAT, 4, "heartbeat")       /* both ways, every heartbeat_ms */                    \
    X(BYE, 5, "bye")                   /* both ways: peer is going away */                    \
    X(MODEL, 6, "model")               /* both ways: model of a job version */                \
    X(TASK, 7, "task")                 /* coordinator -> worker: compute one partition */     \
    X(DATA_REQ, 8, "data_req")         /* worker -> coordinator: send dataset bytes */        \
    X(DATA_CHUNK, 9, "data_chunk")     /* coordinator -> worker: part of a dataset */         \
    X(RESULT, 10, "result")            /* worker -> coordinator: a task's node is computed */ \
    X(APPLY, 11, "apply")              /* coordinator -> worker: a step's summed gradient */  \
    X(UPLOAD_BEGIN, 20, "upload_begin") /* client: start streaming a dataset */               \
    X(UPLOAD_CHUNK, 21, "upload_chunk") /* client: one chunk of a part */                     \
    X(UPLOAD_END, 22, "upload_end")     /* client: all chunks sent; store it */               \
    X(TRAIN, 23, "train")               /* client: start a job */                             \
    X(STATUS, 24, "status")             /* client: job status (job 0 = all) */                \
    X(WORKERS, 25, "workers")           /* client: list workers */                            \
    X(METRICS, 26, "metrics")           /* client: metric records of a job */                 \
    X(MODEL_GET, 27, "model_get")       /* client: fetch a job's model */                     \
    X(CANCEL, 28, "cancel")             /* client: cancel a job */                            \
    X(DATASETS, 29, "datasets")         /* client: list datasets */                           \
    X(R_OK, 40, "r_ok")                 /* reply: done, nothing to return */                  \
    X(R_UPLOAD, 41, "r_upload")         /* reply to upload_begin / upload_end */              \
    X(R_JOB, 42, "r_job")               /* reply to train */                                  \
    X(R_STATUS, 43, "r_status")         /* reply to status */                                 \
    X(R_WORKERS, 44, "r_workers")       /* reply to workers */                                \
    X(R_METRICS, 45, "r_metrics")       /* reply to metrics; also published on the PUB */     \
    X(R_MODEL, 46, "r_model")           /* reply to model_get */                              \
    X(R_DATASETS, 47, "r_datasets")     /* reply to datasets */

typedef enum {
#define SP_X_ENUM(name, id, str) SP_MSG_##name = id,
    SP_MSG_TYPES(SP_X_ENUM)
#undef SP_X_ENUM
} sp_msg_type_t;

/* Field rules the codec enforces (encoder: SP_E_RANGE, decoder: SP_E_INPUT):
 * "name" = 1..63 bytes of [A-Za-z0-9._-], not starting with '.';
 * "text" = 0..255 bytes, no NUL;
 * floats are finite unless the comment says NaN (then NaN and infinities
 * pass); every count (n, n_*) must equal the length of its array or list on
 * the wire; lists hold at most SP_MAX_LIST records. */

/* Owned byte blob (malloc'ed copy; NULL when len == 0). */
typedef struct {
    uint8_t *data;
    size_t len;
} sp_blob_t;

/* --- worker <-> coordinator ------------------------------------------- */
typedef struct {
    uint32_t code;            /* sp_rc_t, negated: 2 = SP_E_INPUT etc.; 1..255 */
    uint64_t req;             /* request id it answers, 0 if none */
    uint32_t ref_type;        /* type of the refused message, 0 if unknown; 0..255 */
    char message[SP_TEXT_MAX]; /* text */
} sp_msg_error_t;

typedef struct {
    char name[SP_NAME_MAX];   /* name */
    uint32_t threads;         /* OpenMP threads it computes with, 1..1024 */
} sp_msg_hello_t;

typedef struct {
    uint32_t worker_id;       /* coordinator-assigned, >= 1 */
    uint32_t heartbeat_ms;    /* 10..60000 */
    uint32_t liveness;        /* missed beats before a peer is dead, 1..100 */
} sp_msg_welcome_t;

typedef struct {
    char reason[SP_TEXT_MAX]; /* text */
} sp_msg_bye_t;

typedef struct {
    uint64_t job;             /* >= 1 */
    uint64_t version;         /* model version, >= 1 */
    sp_blob_t model;          /* model file bytes (docs/MODEL_FORMAT.md) WITH training state
                                 (master weights, optimizer state): the worker applies
                                 steps itself; 1..SP_MSG_MAX_BYTES (the whole body too).
                                 A worker sends its own back after a task with sync set */
} sp_msg_model_t;

typedef struct {
    uint64_t job;             /* >= 1 */
    uint64_t version;         /* model version the partition must be computed on, >= 1 */
    uint64_t step;            /* global step number of the job */
    uint32_t partition;       /* first partition of the node within the step, < SP_INDICES_MAX */
    uint32_t n_partitions;    /* partitions in the node (a node of the reduction tree,
                                 proto/PROTOCOL.md), 1..SP_INDICES_MAX */
    uint32_t partition_size;  /* samples per partition (the last of a step may have fewer),
                                 1..SP_INDICES_MAX */
    uint32_t batch;           /* samples in the whole step, n_indices..SP_INDICES_MAX */
    char dataset[SP_NAME_MAX]; /* name */
    uint64_t checksum;        /* dataset checksum: the worker's cache key with the name */
    uint32_t n_indices;       /* the node's samples: more than (n_partitions - 1) *
                                 partition_size, at most n_partitions * partition_size */
    uint32_t *indices;        /* sample indices (wire: bin of n_indices u32 LE) */
    int sync;                 /* 0/1 (wire: bool), only on a whole step: once the step is
                                 applied, send the model back (MODEL, with training state) */
} sp_msg_task_t;

typedef struct {
    char dataset[SP_NAME_MAX]; /* name */
    uint64_t checksum;
    uint64_t offset;          /* byte offset into the serialized dataset */
} sp_msg_data_req_t;

typedef struct {
    char dataset[SP_NAME_MAX]; /* name */
    uint64_t checksum;
    uint64_t offset;          /* offset + data.len <= total */
    uint64_t total;           /* serialized dataset size in bytes */
    sp_blob_t data;           /* 0..SP_CHUNK_MAX bytes */
} sp_msg_data_chunk_t;

typedef struct {
    uint64_t job, version, step; /* job, version >= 1: echo the task */
    uint32_t partition;       /* first partition of the node, < SP_INDICES_MAX */
    uint32_t n_partitions;    /* partitions in the node, 1..SP_INDICES_MAX */
    uint32_t n_samples;       /* 0..SP_INDICES_MAX */
    uint32_t n_correct;       /* <= n_samples */
    double loss_sum;          /* finite, >= 0 (a diverged worker sends ERROR instead) */
    uint64_t compute_us;      /* time the worker spent computing */
    uint32_t n_grad;          /* 0..SP_GRAD_MAX; 0 for a whole step, which the worker
                                 applied itself (it keeps the gradient) */
    float *grad;              /* n_grad finite floats (wire: bin of f32 LE) */
    uint32_t n_hits;          /* 0..SP_GRAD_MAX; 0 with n_grad 0 */
    uint32_t *hits;           /* n_hits counts (wire: bin of u32 LE) */
} sp_msg_result_t;

/* The summed gradient of a completed step, for a worker that holds the
 * model of version - 1 and did not compute the whole step itself: applying
 * it (sp_network_apply_gradient) gives exactly the coordinator's model of
 * `version`. */
typedef struct {
    uint64_t job;             /* >= 1 */
    uint64_t version;         /* the model version the step produces, >= 2 */
    uint64_t step;            /* global step the gradient belongs to */
    uint32_t n_samples;       /* samples in the step, 1..SP_INDICES_MAX */
    uint32_t n_grad;          /* 0..SP_GRAD_MAX */
    float *grad;              /* n_grad finite floats (wire: bin of f32 LE) */
    uint32_t n_hits;          /* 0..SP_GRAD_MAX */
    uint32_t *hits;           /* n_hits counts (wire: bin of u32 LE) */
} sp_msg_apply_t;

/* --- client <-> coordinator (every request carries req, echoed in the reply) */
typedef struct {
    uint64_t req;
    char name[SP_NAME_MAX];   /* name */
    char format[8];           /* "csv" or "idx" */
    char task[16];            /* "classify" or "regress" */
    int32_t label_column;     /* -1 last, 0 first, N (..65535) */
    int32_t header;           /* -1 detect, 0 no, 1 yes */
    uint32_t n_parts;         /* 1 (csv) or 2 (idx: images, labels); must match format */
    uint64_t part_size[2];    /* bytes, <= 4 GiB each */
    uint32_t part_crc[2];     /* CRC-32 (zlib) of each part's bytes */
} sp_msg_upload_begin_t;

typedef struct {
    uint64_t req;
    uint64_t upload;          /* id from r_upload, >= 1 */
    uint32_t part;            /* 0..1 */
    uint64_t offset;          /* byte offset in the part, <= 4 GiB */
    sp_blob_t data;           /* 0..SP_CHUNK_MAX bytes */
} sp_msg_upload_chunk_t;

typedef struct {
    uint64_t req;
    uint64_t upload;          /* >= 1 */
} sp_msg_upload_end_t;

typedef struct {
    uint64_t req;
    char dataset[SP_NAME_MAX]; /* name */
    char validation[SP_NAME_MAX]; /* name, or "" = none */
    uint32_t n_layers;        /* 2..SP_MAX_LAYERS */
    uint32_t layers[SP_MAX_LAYERS]; /* n_layers sizes, each 1..1<<20 (wire: array) */
    uint32_t bits;            /* 1, 2, 4 */
    uint32_t epochs;          /* 1..100000 */
    uint32_t batch;           /* 1..1048576 */
    uint32_t partition;       /* 1..batch */
    double lr;                /* 1e-12..1000 */
    double momentum;          /* 0..1 */
    uint64_t seed;
    char mode[16];            /* "backprop" or "local" */
    char loss[16];            /* "mse" or "xent" */
    uint32_t growth_every;    /* steps between growth decisions, 0 = off */
    double growth_threshold;  /* saturation, 0..1 */
    uint32_t prune_every;     /* 0 = off */
    double prune_threshold;   /* saturation, 0..1 */
    uint32_t min_node;        /* optional: fewest samples a worker gets of a step that is
                                 split among workers; 0 = chosen by the coordinator */
} sp_msg_train_t;

typedef struct {
    uint64_t req;
    uint64_t job;             /* job id >= 1; 0 = all jobs (status only) */
    uint64_t since;           /* metrics: first record index wanted; optional on the wire */
} sp_msg_job_req_t;           /* status, metrics, model_get, cancel */

typedef struct {
    uint64_t req;
} sp_msg_plain_req_t;         /* workers, datasets */

/* --- replies ----------------------------------------------------------- */
typedef struct {
    uint64_t req;
} sp_msg_r_ok_t;

typedef struct {
    char name[SP_NAME_MAX];   /* name */
    char task[16];            /* "classify" or "regress" */
    uint32_t samples, features, classes;
    uint64_t checksum;
    uint64_t bytes;           /* serialized size */
} sp_dataset_info_t;

typedef struct {
    uint64_t req;
    uint64_t upload;          /* upload id (upload_begin reply) */
    uint64_t received;        /* bytes received so far */
    int stored;               /* 1 once the dataset is durably stored (upload_end); wire: bool */
    sp_dataset_info_t info;   /* on the wire only when stored */
} sp_msg_r_upload_t;

typedef struct {
    uint64_t req;
    uint64_t job;             /* >= 1 */
} sp_msg_r_job_t;

typedef struct {
    uint64_t job;             /* >= 1 */
    char dataset[SP_NAME_MAX]; /* name */
    char state[16];           /* queued, running, done, failed, cancelled */
    uint32_t epoch, epochs;
    uint64_t step;
    uint64_t samples_seen;
    double loss;              /* last epoch's mean training loss, >= 0; NaN before */
    double accuracy;          /* last epoch's training accuracy (classify) 0..1, NaN otherwise */
    double val_accuracy;      /* 0..1; NaN when no validation set */
    char error[SP_TEXT_MAX];  /* text: why it failed, "" otherwise */
} sp_job_status_t;

typedef struct {
    uint64_t req;
    uint32_t n;
    sp_job_status_t *jobs;
} sp_msg_r_status_t;

typedef struct {
    uint32_t id;              /* >= 1 */
    char name[SP_NAME_MAX];   /* name */
    uint32_t threads;         /* 1..1024 */
    int alive;                /* 0/1; wire: bool */
    uint64_t partitions_done;
    double samples_per_s;     /* finite, >= 0 */
    uint32_t heartbeats_missed;
    uint32_t failures;
    uint64_t bytes_in;        /* optional on the wire: results received from it */
    uint64_t bytes_out;       /* optional: models, tasks, applies, dataset sent to it */
} sp_worker_info_t;

typedef struct {
    uint64_t req;
    uint32_t n;
    sp_worker_info_t *workers;
} sp_msg_r_workers_t;

typedef struct {
    uint64_t index;           /* record number within the job, from 0 */
    uint64_t job;             /* >= 1 */
    char kind[8];             /* "step" or "epoch" */
    uint32_t epoch;
    uint64_t step;
    uint64_t time_ms;         /* since the job started */
    double loss, accuracy;    /* loss >= 0 (NaN if diverged); accuracy 0..1, NaN for regression */
    double val_loss, val_accuracy; /* NaN when not measured */
    double samples_per_s;     /* finite, >= 0 */
    uint32_t n_layers;        /* computing layers, 0..SP_MAX_LAYERS */
    uint32_t neurons[SP_MAX_LAYERS];  /* n_layers entries (wire: array) */
    float saturation[SP_MAX_LAYERS];  /* n_layers entries, 0..1 (wire: array of float32) */
    uint32_t growth_candidates, prune_candidates;
    float sparsity;           /* 0..1 (wire: float32) */
} sp_metric_t;

typedef struct {
    uint64_t req;
    uint32_t n;
    sp_metric_t *records;
} sp_msg_r_metrics_t;

typedef struct {
    uint64_t req;
    uint64_t job;             /* >= 1 */
    sp_blob_t model;          /* model file bytes, >= 1 */
} sp_msg_r_model_t;

typedef struct {
    uint64_t req;
    uint32_t n;
    sp_dataset_info_t *datasets;
} sp_msg_r_datasets_t;

typedef struct {
    sp_msg_type_t type;
    union {
        sp_msg_error_t error;
        sp_msg_hello_t hello;
        sp_msg_welcome_t welcome;
        sp_msg_bye_t bye;
        sp_msg_model_t model;
        sp_msg_task_t task;
        sp_msg_data_req_t data_req;
        sp_msg_data_chunk_t data_chunk;
        sp_msg_result_t result;
        sp_msg_apply_t apply;
        sp_msg_upload_begin_t upload_begin;
        sp_msg_upload_chunk_t upload_chunk;
        sp_msg_upload_end_t upload_end;
        sp_msg_train_t train;
        sp_msg_job_req_t job_req;     /* status, metrics, model_get, cancel */
        sp_msg_plain_req_t plain_req; /* workers, datasets, heartbeat (req unused) */
        sp_msg_r_ok_t r_ok;
        sp_msg_r_upload_t r_upload;
        sp_msg_r_job_t r_job;
        sp_msg_r_status_t r_status;
        sp_msg_r_workers_t r_workers;
        sp_msg_r_metrics_t r_metrics;
        sp_msg_r_model_t r_model;
        sp_msg_r_datasets_t r_datasets;
    } u;
} sp_msg_t;

/* Limits of the bounded pre-scan every body goes through before unpacking. */
#define SP_MSG_MAX_DEPTH 8        /* nesting of arrays and maps in a body */
#define SP_MSG_MAX_MAP 64         /* entries in one map */
#define SP_MSG_MAX_OBJECTS (1u << 20) /* msgpack objects in one body */
#define SP_GRAD_MAX (SP_MSG_MAX_BYTES / 4) /* floats in result.grad, counts in result.hits */
#define SP_INDICES_MAX (1u << 20) /* task.indices */

/* True when name is a valid worker or dataset name: 1..63 bytes of
 * [A-Za-z0-9._-], not starting with '.' (names become file names). */
int sp_msg_name_ok(const char *name);

/* Name of a type ("task"), or NULL for an unknown id. */
const char *sp_msg_type_name(uint32_t type);

/* Zeroes m and sets its type. */
void sp_msg_init(sp_msg_t *m, sp_msg_type_t type);
/* The request id field of a client request (upload_*, train, status,
 * workers, metrics, model_get, cancel, datasets), of a reply (r_*) or of an
 * error, or NULL for the types that carry none (worker traffic). */
uint64_t *sp_msg_req(sp_msg_t *m);
/* Frees what a decoded (or filled-in) message owns; m stays valid and empty. */
void sp_msg_fini(sp_msg_t *m);

#define SP_MSG_HEADER_BYTES 4

/* Encodes m: the 4-byte header into hdr and a malloc'ed MessagePack body.
 * SP_E_RANGE when a field is outside its documented range (a bug upstream). */
int sp_msg_encode(const sp_msg_t *m, uint8_t hdr[SP_MSG_HEADER_BYTES], uint8_t **body,
                  size_t *body_len);
/* Decodes and validates a header + body strictly (docs: PROTOCOL.md,
 * "Decoding"). SP_E_VERSION for another protocol version (the message names
 * both), SP_E_INPUT for anything else malformed; out is left empty on error. */
int sp_msg_decode(const uint8_t *hdr, size_t hdr_len, const uint8_t *body, size_t body_len,
                  sp_msg_t *out, char *err, size_t errlen);

/* Fills m (initialised to type) with valid values in every field, every list
 * and array non-empty, derived from seed: the basis of the round-trip and
 * malformed-frame tests of every message type. m owns what it holds
 * (sp_msg_fini). SP_E_RANGE for an unknown type. */
int sp_msg_example(sp_msg_t *m, sp_msg_type_t type, uint64_t seed);
/* 1 when a and b have the same type and equal fields (floats compared by
 * bits, so NaN equals NaN), else 0 with the first differing field named in
 * where (may be NULL). */
int sp_msg_equal(const sp_msg_t *a, const sp_msg_t *b, char *where, size_t wherelen);

/* --- ZeroMQ transport (proto/transport.c) ------------------------------- */
/* Process set-up for programs that move large messages every step (the
 * coordinator and the worker): buffers up to SP_MSG_MAX_BYTES are served
 * from the heap and kept, instead of being mapped, page-faulted and unmapped
 * for every gradient. Call once at start-up. */
void sp_msg_tune_allocator(void);
/* Sets ZMQ_MAXMSGSIZE, ZMQ_LINGER and, for ROUTER sockets, ZMQ_ROUTER_MANDATORY. */
int sp_sock_configure(void *sock, int zmq_type);
/* Sends m, preceded by the routing identity when id != NULL (ROUTER), or by
 * the topic frame on a PUB socket (id = "job/<id>"). The body is handed to
 * ZeroMQ without a copy. Never blocks. SP_E_RANGE if m does not encode,
 * SP_E_IO (errno kept) if a send fails: EHOSTUNREACH for a vanished ROUTER
 * peer, EAGAIN when the peer's queue is full (ZMQ_SNDHWM messages). */
int sp_msg_send(void *sock, const uint8_t *id, size_t id_len, const sp_msg_t *m);
/* Sends m to n ROUTER peers (ids[i], id_lens[i]), encoding it once: the body
 * frame is shared, not copied per peer. rcs[i] gets each send's result as
 * sp_msg_send would return it. Returns SP_OK, or the encode error (then no
 * send was tried and every rcs[i] holds it). */
int sp_msg_send_many(void *sock, const uint8_t *const *ids, const size_t *id_lens, size_t n,
                     const sp_msg_t *m, int *rcs);
/* Receives one message (non-blocking when flags has ZMQ_DONTWAIT). For
 * ROUTER sockets the identity is written to id (up to *id_len bytes; *id_len
 * updated), for SUB sockets the topic frame (id and id_len may be NULL to
 * discard it). out is overwritten (fini it first if it held a message) and is
 * empty on every error. Returns SP_OK, SP_E_TIMEOUT (nothing to read with
 * DONTWAIT, or ZMQ_RCVTIMEO expired), SP_E_IO (errno kept, e.g. EINTR),
 * SP_E_IO, or a decode error (SP_E_INPUT / SP_E_VERSION, message in err; the
 * identity is still filled so the caller can reply with an ERROR). Wrong
 * frame counts are drained and reported as SP_E_INPUT. */
int sp_msg_recv(void *sock, int flags, uint8_t *id, size_t *id_len, sp_msg_t *out, char *err,
                size_t errlen);
/* Sends an ERROR message with a formatted text (truncated to SP_TEXT_MAX - 1
 * bytes; control and non-ASCII bytes become '?'). code is an sp_rc_t; its
 * negation goes on the wire. Returns like sp_msg_send. */
int sp_msg_send_error(void *sock, const uint8_t *id, size_t id_len, int code, uint64_t req,
                      uint32_t ref_type, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif
