/* codec: every message of proto/messages.h to and from its two frames.
 * One schema per message struct (a table of fields: key, kind, offset,
 * limits) drives the encoder, the decoder, the range checks, sp_msg_fini,
 * the example filler and the comparison, so they cannot drift apart. A
 * decoded message owns all its bytes; a failed decode leaves it empty. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common/bytes.h"
#include "common/error.h"
#include "common/kernels.h"
#include "common/mpcheck.h"
#include "common/rng.h"
#include "proto/messages.h"

/* ---------------------------------------------------------------------- */
/* Schemas                                                                 */

typedef enum {
    K_U32,     /* uint32_t; wire: positive int */
    K_U64,     /* uint64_t; wire: positive int */
    K_I32,     /* int32_t; wire: int */
    K_BOOL,    /* int 0/1; wire: bool */
    K_F64,     /* double; wire: float64 (ints and float32 accepted) */
    K_F32,     /* float; wire: float32 (ints and float64 accepted) */
    K_STR,     /* char[size]; wire: str of < size bytes */
    K_BLOB,    /* sp_blob_t; wire: bin of lo..hi bytes */
    K_BIN_U32, /* uint32_t * with count at cnt_off; wire: bin of u32 LE */
    K_BIN_F32, /* float * with count at cnt_off; wire: bin of f32 LE */
    K_ARR_U32, /* uint32_t[size] with count at cnt_off; wire: array of int */
    K_ARR_U64, /* uint64_t[size] with count at cnt_off; wire: array of int */
    K_ARR_F32, /* float[size] with count at cnt_off; wire: array of float32 */
    K_NESTED,  /* struct of schema sub at off; wire: map */
    K_LIST,    /* pointer to count records of schema sub; wire: array of maps */
} s_kind_t;

enum {
    F_NAN = 1, /* floats: NaN and infinities allowed (otherwise finite only) */
    F_OPT = 2, /* scalar may be absent on the wire (then 0); always encoded */
    F_COND = 4 /* present iff the bool at cond_off is 1 (K_NESTED) */
};

typedef enum { CS_TEXT, CS_NAME, CS_NAME_OR_EMPTY, CS_ENUM } s_charset_t;

typedef struct s_schema s_schema_t;

typedef struct {
    const char *key;
    s_kind_t kind;
    unsigned flags;
    s_charset_t cs;           /* K_STR */
    size_t off;               /* field offset in its struct */
    size_t size;              /* char array bytes, array capacity, record bytes */
    size_t cnt_off;           /* offset of the uint32_t count of arrays/lists */
    size_t cond_off;          /* F_COND: offset of the int flag */
    int64_t lo;               /* integers and elements: minimum; blobs: min bytes */
    uint64_t hi;              /* integers and elements: maximum; blobs: max bytes */
    double dlo, dhi;          /* floats: inclusive range when finite */
    const char *const *enums; /* CS_ENUM: NULL-terminated allowed values */
    const s_schema_t *sub;    /* K_NESTED, K_LIST */
} s_field_t;

struct s_schema {
    const char *name;
    const s_field_t *fields;
    size_t n_fields;
    size_t size;                                        /* struct bytes */
    int (*check)(const void *s, char *err, size_t len); /* cross-field rules */
    void (*fix)(void *s);                               /* make an example obey them */
};

/* Schema tables: one field per line, built with the F* macros. */
#define S_ARRLEN(a) (sizeof(a) / sizeof((a)[0]))
#define S_OFF(T, f) offsetof(T, f)
#define S_FSIZE(T, f) sizeof(((T *)0)->f)

#define FU32(T, f, l, h)                                                                           \
    {                                                                                              \
        .key = #f, .kind = K_U32, .off = S_OFF(T, f), .lo = (l), .hi = (h)                         \
    }
#define FU64(T, f, l, h)                                                                           \
    {                                                                                              \
        .key = #f, .kind = K_U64, .off = S_OFF(T, f), .lo = (l), .hi = (h)                         \
    }
#define FU64_OPT(T, f)                                                                             \
    {                                                                                              \
        .key = #f, .kind = K_U64, .flags = F_OPT, .off = S_OFF(T, f), .hi = UINT64_MAX             \
    }
#define FU32_OPT(T, f, h)                                                                          \
    {                                                                                              \
        .key = #f, .kind = K_U32, .flags = F_OPT, .off = S_OFF(T, f), .lo = 0, .hi = (h)           \
    }
#define FI32(T, f, l, h)                                                                           \
    {                                                                                              \
        .key = #f, .kind = K_I32, .off = S_OFF(T, f), .lo = (l), .hi = (h)                         \
    }
#define FBOOL(T, f)                                                                                \
    {                                                                                              \
        .key = #f, .kind = K_BOOL, .off = S_OFF(T, f), .lo = 0, .hi = 1                            \
    }
#define FF64(T, f, fl, l, h)                                                                       \
    {                                                                                              \
        .key = #f, .kind = K_F64, .flags = (fl), .off = S_OFF(T, f), .dlo = (l), .dhi = (h)        \
    }
#define FF32(T, f, fl, l, h)                                                                       \
    {                                                                                              \
        .key = #f, .kind = K_F32, .flags = (fl), .off = S_OFF(T, f), .dlo = (l), .dhi = (h)        \
    }
#define FSTR(T, f, c)                                                                              \
    {                                                                                              \
        .key = #f, .kind = K_STR, .cs = (c), .off = S_OFF(T, f), .size = S_FSIZE(T, f)             \
    }
#define FENUM(T, f, e)                                                                             \
    {                                                                                              \
        .key = #f, .kind = K_STR, .cs = CS_ENUM, .off = S_OFF(T, f), .size = S_FSIZE(T, f),        \
        .enums = (e)                                                                               \
    }
#define FBLOB(T, f, l, h)                                                                          \
    {                                                                                              \
        .key = #f, .kind = K_BLOB, .off = S_OFF(T, f), .lo = (l), .hi = (h)                        \
    }
#define FBIN(T, f, k, n)                                                                           \
    {                                                                                              \
        .key = #f, .kind = (k), .off = S_OFF(T, f), .cnt_off = S_OFF(T, n)                         \
    }
#define FARR(T, f, k, n, l, h, dl, dh)                                                             \
    {                                                                                              \
        .key = #f, .kind = (k), .off = S_OFF(T, f), .cnt_off = S_OFF(T, n),                        \
        .size = S_FSIZE(T, f) / sizeof(((T *)0)->f[0]), .lo = (l), .hi = (h), .dlo = (dl),         \
        .dhi = (dh)                                                                                \
    }
#define FLIST(T, f, n, S, ET)                                                                      \
    {                                                                                              \
        .key = #f, .kind = K_LIST, .off = S_OFF(T, f), .cnt_off = S_OFF(T, n), .size = sizeof(ET), \
        .hi = SP_MAX_LIST, .sub = &(S)                                                             \
    }

#define SCHEMA(var, T, fieldarr, chk, fx)                                                          \
    static const s_schema_t var = {#T, fieldarr, S_ARRLEN(fieldarr), sizeof(T), chk, fx}

static const char *const s_formats[] = {"csv", "idx", NULL};
static const char *const s_tasks[] = {"classify", "regress", NULL};
static const char *const s_modes[] = {"backprop", "local", NULL};
static const char *const s_losses[] = {"mse", "xent", NULL};
static const char *const s_states[] = {"queued", "running", "done", "failed", "cancelled", NULL};
static const char *const s_kinds[] = {"step", "epoch", NULL};

#define U32MAX UINT32_MAX
#define U64MAX UINT64_MAX
#define GIB4 (UINT64_C(1) << 32)

/* --- error, hello, welcome, heartbeat, bye ----------------------------- */
static const s_field_t s_error_f[] = {
    FU32(sp_msg_error_t, code, 1, 255),
    FU64(sp_msg_error_t, req, 0, U64MAX),
    FU32(sp_msg_error_t, ref_type, 0, 255),
    FSTR(sp_msg_error_t, message, CS_TEXT),
};
SCHEMA(s_error, sp_msg_error_t, s_error_f, NULL, NULL);

static const s_field_t s_hello_f[] = {
    FSTR(sp_msg_hello_t, name, CS_NAME),
    FU32(sp_msg_hello_t, threads, 1, 1024),
};
SCHEMA(s_hello, sp_msg_hello_t, s_hello_f, NULL, NULL);

static const s_field_t s_welcome_f[] = {
    FU32(sp_msg_welcome_t, worker_id, 1, U32MAX),
    FU32(sp_msg_welcome_t, heartbeat_ms, 10, 60000),
    FU32(sp_msg_welcome_t, liveness, 1, 100),
};
SCHEMA(s_welcome, sp_msg_welcome_t, s_welcome_f, NULL, NULL);

/* Heartbeats have an empty body map (the struct is only a placeholder). */
static const s_schema_t s_heartbeat = {"sp_msg_heartbeat",         NULL, 0,
                                       sizeof(sp_msg_plain_req_t), NULL, NULL};

static const s_field_t s_bye_f[] = {
    FSTR(sp_msg_bye_t, reason, CS_TEXT),
};
SCHEMA(s_bye, sp_msg_bye_t, s_bye_f, NULL, NULL);

/* --- model, task, data_req, data_chunk, result -------------------------- */
static const s_field_t s_model_f[] = {
    FU64(sp_msg_model_t, job, 1, U64MAX),
    FU64(sp_msg_model_t, version, 1, U64MAX),
    FBLOB(sp_msg_model_t, model, 1, SP_MSG_MAX_BYTES),
};
SCHEMA(s_model, sp_msg_model_t, s_model_f, NULL, NULL);

/* A node's samples must be cut into its partitions exactly: every partition
 * but the last full, the last non-empty; and the node lies within the step. */
static int s_task_check(const void *s, char *err, size_t len)
{
    const sp_msg_task_t *t = s;
    uint64_t full = (uint64_t)t->n_partitions * t->partition_size;
    uint64_t before = full - t->partition_size;
    if (t->n_indices > full || t->n_indices <= before) {
        return sp_err_input(err, len,
                            "task.n_indices: %" PRIu32 " samples do not fill %" PRIu32
                            " partitions of %" PRIu32,
                            t->n_indices, t->n_partitions, t->partition_size);
    }
    if (t->sync && (t->partition != 0 || t->n_indices != t->batch)) {
        return sp_err_input(err, len, "task.sync: set on a node that is not the whole step");
    }
    if (t->n_indices > t->batch ||
        (uint64_t)t->partition * t->partition_size + t->n_indices > t->batch) {
        return sp_err_input(err, len,
                            "task.batch: node (partition %" PRIu32 ", %" PRIu32
                            " samples) lies outside a step of %" PRIu32,
                            t->partition, t->n_indices, t->batch);
    }
    return SP_OK;
}
static void s_task_fix(void *s)
{
    sp_msg_task_t *t = s;
    t->partition = 0;
    t->n_partitions = 1;
    t->partition_size = t->n_indices;
    t->batch = t->n_indices;
}
static const s_field_t s_task_f[] = {
    FU64(sp_msg_task_t, job, 1, U64MAX),
    FU64(sp_msg_task_t, version, 1, U64MAX),
    FU64(sp_msg_task_t, step, 0, U64MAX),
    FU32(sp_msg_task_t, partition, 0, SP_INDICES_MAX - 1),
    FU32(sp_msg_task_t, n_partitions, 1, SP_INDICES_MAX),
    FU32(sp_msg_task_t, partition_size, 1, SP_INDICES_MAX),
    FU32(sp_msg_task_t, batch, 1, SP_INDICES_MAX),
    FSTR(sp_msg_task_t, dataset, CS_NAME),
    FU64(sp_msg_task_t, checksum, 0, U64MAX),
    FU32(sp_msg_task_t, n_indices, 1, SP_INDICES_MAX),
    FBIN(sp_msg_task_t, indices, K_BIN_U32, n_indices),
    FBOOL(sp_msg_task_t, sync),
};
SCHEMA(s_task, sp_msg_task_t, s_task_f, s_task_check, s_task_fix);

static const s_field_t s_data_req_f[] = {
    FSTR(sp_msg_data_req_t, dataset, CS_NAME),
    FU64(sp_msg_data_req_t, checksum, 0, U64MAX),
    FU64(sp_msg_data_req_t, offset, 0, U64MAX),
};
SCHEMA(s_data_req, sp_msg_data_req_t, s_data_req_f, NULL, NULL);

static int s_data_chunk_check(const void *s, char *err, size_t len)
{
    const sp_msg_data_chunk_t *c = s;
    if (c->offset > c->total || c->data.len > c->total - c->offset) {
        return sp_err_input(err, len,
                            "data_chunk.data: offset %" PRIu64 " + %zu bytes beyond total %" PRIu64,
                            c->offset, c->data.len, c->total);
    }
    return SP_OK;
}
static void s_data_chunk_fix(void *s)
{
    sp_msg_data_chunk_t *c = s;
    c->offset %= 1000;
    c->total = c->offset + c->data.len + 17;
}
static const s_field_t s_data_chunk_f[] = {
    FSTR(sp_msg_data_chunk_t, dataset, CS_NAME),
    FU64(sp_msg_data_chunk_t, checksum, 0, U64MAX),
    FU64(sp_msg_data_chunk_t, offset, 0, U64MAX),
    FU64(sp_msg_data_chunk_t, total, 0, U64MAX),
    FBLOB(sp_msg_data_chunk_t, data, 0, SP_CHUNK_MAX),
};
SCHEMA(s_data_chunk, sp_msg_data_chunk_t, s_data_chunk_f, s_data_chunk_check, s_data_chunk_fix);

static int s_result_check(const void *s, char *err, size_t len)
{
    const sp_msg_result_t *r = s;
    if (r->n_correct > r->n_samples) {
        return sp_err_input(err, len, "result.n_correct: %" PRIu32 " > n_samples %" PRIu32,
                            r->n_correct, r->n_samples);
    }
    return SP_OK;
}
static void s_result_fix(void *s)
{
    sp_msg_result_t *r = s;
    r->n_correct = r->n_samples / 2;
}
static const s_field_t s_result_f[] = {
    FU64(sp_msg_result_t, job, 1, U64MAX),
    FU64(sp_msg_result_t, version, 1, U64MAX),
    FU64(sp_msg_result_t, step, 0, U64MAX),
    FU32(sp_msg_result_t, partition, 0, SP_INDICES_MAX - 1),
    FU32(sp_msg_result_t, n_partitions, 1, SP_INDICES_MAX),
    FU32(sp_msg_result_t, n_samples, 0, SP_INDICES_MAX),
    FU32(sp_msg_result_t, n_correct, 0, SP_INDICES_MAX),
    FF64(sp_msg_result_t, loss_sum, 0, 0.0, DBL_MAX),
    FU64(sp_msg_result_t, compute_us, 0, U64MAX),
    FU32(sp_msg_result_t, n_grad, 0, SP_GRAD_MAX),
    FBIN(sp_msg_result_t, grad, K_BIN_F32, n_grad),
    FU32(sp_msg_result_t, n_hits, 0, SP_GRAD_MAX),
    FBIN(sp_msg_result_t, hits, K_BIN_U32, n_hits),
};
SCHEMA(s_result, sp_msg_result_t, s_result_f, s_result_check, s_result_fix);

static const s_field_t s_apply_f[] = {
    FU64(sp_msg_apply_t, job, 1, U64MAX),
    FU64(sp_msg_apply_t, version, 2, U64MAX),
    FU64(sp_msg_apply_t, step, 0, U64MAX),
    FU32(sp_msg_apply_t, n_samples, 1, SP_INDICES_MAX),
    FU32(sp_msg_apply_t, n_grad, 0, SP_GRAD_MAX),
    FBIN(sp_msg_apply_t, grad, K_BIN_F32, n_grad),
    FU32(sp_msg_apply_t, n_hits, 0, SP_GRAD_MAX),
    FBIN(sp_msg_apply_t, hits, K_BIN_U32, n_hits),
};
SCHEMA(s_apply, sp_msg_apply_t, s_apply_f, NULL, NULL);

/* --- client requests ---------------------------------------------------- */
static int s_upload_begin_check(const void *s, char *err, size_t len)
{
    const sp_msg_upload_begin_t *u = s;
    uint32_t want = strcmp(u->format, "idx") == 0 ? 2 : 1;
    if (u->n_parts != want) {
        return sp_err_input(err, len, "upload_begin.n_parts: %" PRIu32 " for format %s (want %u)",
                            u->n_parts, u->format, (unsigned)want);
    }
    return SP_OK;
}
static void s_upload_begin_fix(void *s)
{
    sp_msg_upload_begin_t *u = s;
    u->n_parts = strcmp(u->format, "idx") == 0 ? 2 : 1;
}
static const s_field_t s_upload_begin_f[] = {
    FU64(sp_msg_upload_begin_t, req, 0, U64MAX),
    FSTR(sp_msg_upload_begin_t, name, CS_NAME),
    FENUM(sp_msg_upload_begin_t, format, s_formats),
    FENUM(sp_msg_upload_begin_t, task, s_tasks),
    FI32(sp_msg_upload_begin_t, label_column, -1, 65535),
    FI32(sp_msg_upload_begin_t, header, -1, 1),
    FU32(sp_msg_upload_begin_t, n_parts, 1, 2),
    FARR(sp_msg_upload_begin_t, part_size, K_ARR_U64, n_parts, 0, GIB4, 0, 0),
    FARR(sp_msg_upload_begin_t, part_crc, K_ARR_U32, n_parts, 0, U32MAX, 0, 0),
};
SCHEMA(s_upload_begin, sp_msg_upload_begin_t, s_upload_begin_f, s_upload_begin_check,
       s_upload_begin_fix);

static const s_field_t s_upload_chunk_f[] = {
    FU64(sp_msg_upload_chunk_t, req, 0, U64MAX),
    FU64(sp_msg_upload_chunk_t, upload, 1, U64MAX),
    FU32(sp_msg_upload_chunk_t, part, 0, 1),
    FU64(sp_msg_upload_chunk_t, offset, 0, GIB4),
    FBLOB(sp_msg_upload_chunk_t, data, 0, SP_CHUNK_MAX),
};
SCHEMA(s_upload_chunk, sp_msg_upload_chunk_t, s_upload_chunk_f, NULL, NULL);

static const s_field_t s_upload_end_f[] = {
    FU64(sp_msg_upload_end_t, req, 0, U64MAX),
    FU64(sp_msg_upload_end_t, upload, 1, U64MAX),
};
SCHEMA(s_upload_end, sp_msg_upload_end_t, s_upload_end_f, NULL, NULL);

static int s_train_check(const void *s, char *err, size_t len)
{
    const sp_msg_train_t *t = s;
    if (t->partition > t->batch) {
        return sp_err_input(err, len, "train.partition: %" PRIu32 " > batch %" PRIu32, t->partition,
                            t->batch);
    }
    return SP_OK;
}
static void s_train_fix(void *s)
{
    sp_msg_train_t *t = s;
    t->partition = t->batch > 1 ? t->batch / 2 : 1;
    t->bits = 1u << (t->bits % 3);
}
static const s_field_t s_train_f[] = {
    FU64(sp_msg_train_t, req, 0, U64MAX),
    FSTR(sp_msg_train_t, dataset, CS_NAME),
    FSTR(sp_msg_train_t, validation, CS_NAME_OR_EMPTY),
    FU32(sp_msg_train_t, n_layers, 2, SP_MAX_LAYERS),
    FARR(sp_msg_train_t, layers, K_ARR_U32, n_layers, 1, 1u << 20, 0, 0),
    FU32(sp_msg_train_t, bits, 1, 4), /* and a power of two: s_check_bits */
    FU32(sp_msg_train_t, epochs, 1, 100000),
    FU32(sp_msg_train_t, batch, 1, 1u << 20),
    FU32(sp_msg_train_t, partition, 1, 1u << 20),
    FF64(sp_msg_train_t, lr, 0, 1e-12, 1e3),
    FF64(sp_msg_train_t, momentum, 0, 0.0, 1.0),
    FU64(sp_msg_train_t, seed, 0, U64MAX),
    FENUM(sp_msg_train_t, mode, s_modes),
    FENUM(sp_msg_train_t, loss, s_losses),
    FU32(sp_msg_train_t, growth_every, 0, U32MAX),
    FF64(sp_msg_train_t, growth_threshold, 0, 0.0, 1.0),
    FU32(sp_msg_train_t, prune_every, 0, U32MAX),
    FF64(sp_msg_train_t, prune_threshold, 0, 0.0, 1.0),
    FU32_OPT(sp_msg_train_t, min_node, 1u << 20),
};
static int s_train_check_all(const void *s, char *err, size_t len)
{
    const sp_msg_train_t *t = s;
    if (t->bits != 1 && t->bits != 2 && t->bits != 4) {
        return sp_err_input(err, len, "train.bits: %" PRIu32 " not one of 1, 2, 4", t->bits);
    }
    return s_train_check(s, err, len);
}
SCHEMA(s_train, sp_msg_train_t, s_train_f, s_train_check_all, s_train_fix);

/* status may ask for every job (0); metrics, model_get and cancel name one. */
static const s_field_t s_status_f[] = {
    FU64(sp_msg_job_req_t, req, 0, U64MAX),
    FU64(sp_msg_job_req_t, job, 0, U64MAX),
    FU64_OPT(sp_msg_job_req_t, since),
};
SCHEMA(s_status, sp_msg_job_req_t, s_status_f, NULL, NULL);
static const s_field_t s_job_req_f[] = {
    FU64(sp_msg_job_req_t, req, 0, U64MAX),
    FU64(sp_msg_job_req_t, job, 1, U64MAX),
    FU64_OPT(sp_msg_job_req_t, since),
};
SCHEMA(s_job_req, sp_msg_job_req_t, s_job_req_f, NULL, NULL);

static const s_field_t s_plain_req_f[] = {
    FU64(sp_msg_plain_req_t, req, 0, U64MAX),
};
SCHEMA(s_plain_req, sp_msg_plain_req_t, s_plain_req_f, NULL, NULL);

/* --- replies ------------------------------------------------------------ */
static const s_field_t s_r_ok_f[] = {
    FU64(sp_msg_r_ok_t, req, 0, U64MAX),
};
SCHEMA(s_r_ok, sp_msg_r_ok_t, s_r_ok_f, NULL, NULL);

static const s_field_t s_dataset_info_f[] = {
    FSTR(sp_dataset_info_t, name, CS_NAME),      FENUM(sp_dataset_info_t, task, s_tasks),
    FU32(sp_dataset_info_t, samples, 0, U32MAX), FU32(sp_dataset_info_t, features, 0, U32MAX),
    FU32(sp_dataset_info_t, classes, 0, U32MAX), FU64(sp_dataset_info_t, checksum, 0, U64MAX),
    FU64(sp_dataset_info_t, bytes, 0, U64MAX),
};
SCHEMA(s_dataset_info, sp_dataset_info_t, s_dataset_info_f, NULL, NULL);

static const s_field_t s_r_upload_f[] = {
    FU64(sp_msg_r_upload_t, req, 0, U64MAX),
    FU64(sp_msg_r_upload_t, upload, 0, U64MAX),
    FU64(sp_msg_r_upload_t, received, 0, U64MAX),
    FBOOL(sp_msg_r_upload_t, stored),
    {.key = "info",
     .kind = K_NESTED,
     .flags = F_COND,
     .off = S_OFF(sp_msg_r_upload_t, info),
     .cond_off = S_OFF(sp_msg_r_upload_t, stored),
     .sub = &s_dataset_info},
};
SCHEMA(s_r_upload, sp_msg_r_upload_t, s_r_upload_f, NULL, NULL);

static const s_field_t s_r_job_f[] = {
    FU64(sp_msg_r_job_t, req, 0, U64MAX),
    FU64(sp_msg_r_job_t, job, 1, U64MAX),
};
SCHEMA(s_r_job, sp_msg_r_job_t, s_r_job_f, NULL, NULL);

static const s_field_t s_job_status_f[] = {
    FU64(sp_job_status_t, job, 1, U64MAX),
    FSTR(sp_job_status_t, dataset, CS_NAME),
    FENUM(sp_job_status_t, state, s_states),
    FU32(sp_job_status_t, epoch, 0, U32MAX),
    FU32(sp_job_status_t, epochs, 0, U32MAX),
    FU64(sp_job_status_t, step, 0, U64MAX),
    FU64(sp_job_status_t, samples_seen, 0, U64MAX),
    FF64(sp_job_status_t, loss, F_NAN, 0.0, DBL_MAX),
    FF64(sp_job_status_t, accuracy, F_NAN, 0.0, 1.0),
    FF64(sp_job_status_t, val_accuracy, F_NAN, 0.0, 1.0),
    FSTR(sp_job_status_t, error, CS_TEXT),
};
SCHEMA(s_job_status, sp_job_status_t, s_job_status_f, NULL, NULL);

static const s_field_t s_r_status_f[] = {
    FU64(sp_msg_r_status_t, req, 0, U64MAX),
    FU32(sp_msg_r_status_t, n, 0, SP_MAX_LIST),
    FLIST(sp_msg_r_status_t, jobs, n, s_job_status, sp_job_status_t),
};
SCHEMA(s_r_status, sp_msg_r_status_t, s_r_status_f, NULL, NULL);

static const s_field_t s_worker_info_f[] = {
    FU32(sp_worker_info_t, id, 1, U32MAX),
    FSTR(sp_worker_info_t, name, CS_NAME),
    FU32(sp_worker_info_t, threads, 1, 1024),
    FBOOL(sp_worker_info_t, alive),
    FU64(sp_worker_info_t, partitions_done, 0, U64MAX),
    FF64(sp_worker_info_t, samples_per_s, 0, 0.0, DBL_MAX),
    FU32(sp_worker_info_t, heartbeats_missed, 0, U32MAX),
    FU32(sp_worker_info_t, failures, 0, U32MAX),
    FU64_OPT(sp_worker_info_t, bytes_in),
    FU64_OPT(sp_worker_info_t, bytes_out),
};
SCHEMA(s_worker_info, sp_worker_info_t, s_worker_info_f, NULL, NULL);

static const s_field_t s_r_workers_f[] = {
    FU64(sp_msg_r_workers_t, req, 0, U64MAX),
    FU32(sp_msg_r_workers_t, n, 0, SP_MAX_LIST),
    FLIST(sp_msg_r_workers_t, workers, n, s_worker_info, sp_worker_info_t),
};
SCHEMA(s_r_workers, sp_msg_r_workers_t, s_r_workers_f, NULL, NULL);

static const s_field_t s_metric_f[] = {
    FU64(sp_metric_t, index, 0, U64MAX),
    FU64(sp_metric_t, job, 1, U64MAX),
    FENUM(sp_metric_t, kind, s_kinds),
    FU32(sp_metric_t, epoch, 0, U32MAX),
    FU64(sp_metric_t, step, 0, U64MAX),
    FU64(sp_metric_t, time_ms, 0, U64MAX),
    FF64(sp_metric_t, loss, F_NAN, 0.0, DBL_MAX),
    FF64(sp_metric_t, accuracy, F_NAN, 0.0, 1.0),
    FF64(sp_metric_t, val_loss, F_NAN, 0.0, DBL_MAX),
    FF64(sp_metric_t, val_accuracy, F_NAN, 0.0, 1.0),
    FF64(sp_metric_t, samples_per_s, 0, 0.0, DBL_MAX),
    FU32(sp_metric_t, n_layers, 0, SP_MAX_LAYERS),
    FARR(sp_metric_t, neurons, K_ARR_U32, n_layers, 0, U32MAX, 0, 0),
    FARR(sp_metric_t, saturation, K_ARR_F32, n_layers, 0, 0, 0.0, 1.0),
    FU32(sp_metric_t, growth_candidates, 0, U32MAX),
    FU32(sp_metric_t, prune_candidates, 0, U32MAX),
    FF32(sp_metric_t, sparsity, 0, 0.0, 1.0),
};
SCHEMA(s_metric, sp_metric_t, s_metric_f, NULL, NULL);

static const s_field_t s_r_metrics_f[] = {
    FU64(sp_msg_r_metrics_t, req, 0, U64MAX),
    FU32(sp_msg_r_metrics_t, n, 0, SP_MAX_LIST),
    FLIST(sp_msg_r_metrics_t, records, n, s_metric, sp_metric_t),
};
SCHEMA(s_r_metrics, sp_msg_r_metrics_t, s_r_metrics_f, NULL, NULL);

static const s_field_t s_r_model_f[] = {
    FU64(sp_msg_r_model_t, req, 0, U64MAX),
    FU64(sp_msg_r_model_t, job, 1, U64MAX),
    FBLOB(sp_msg_r_model_t, model, 1, SP_MSG_MAX_BYTES),
};
SCHEMA(s_r_model, sp_msg_r_model_t, s_r_model_f, NULL, NULL);

static const s_field_t s_r_datasets_f[] = {
    FU64(sp_msg_r_datasets_t, req, 0, U64MAX),
    FU32(sp_msg_r_datasets_t, n, 0, SP_MAX_LIST),
    FLIST(sp_msg_r_datasets_t, datasets, n, s_dataset_info, sp_dataset_info_t),
};
SCHEMA(s_r_datasets, sp_msg_r_datasets_t, s_r_datasets_f, NULL, NULL);

/* Type id -> schema of the union member that type uses. */
static const s_schema_t *s_schema_of(uint32_t type)
{
    switch (type) {
    case SP_MSG_ERROR:
        return &s_error;
    case SP_MSG_HELLO:
        return &s_hello;
    case SP_MSG_WELCOME:
        return &s_welcome;
    case SP_MSG_HEARTBEAT:
        return &s_heartbeat;
    case SP_MSG_BYE:
        return &s_bye;
    case SP_MSG_MODEL:
        return &s_model;
    case SP_MSG_TASK:
        return &s_task;
    case SP_MSG_DATA_REQ:
        return &s_data_req;
    case SP_MSG_DATA_CHUNK:
        return &s_data_chunk;
    case SP_MSG_RESULT:
        return &s_result;
    case SP_MSG_APPLY:
        return &s_apply;
    case SP_MSG_UPLOAD_BEGIN:
        return &s_upload_begin;
    case SP_MSG_UPLOAD_CHUNK:
        return &s_upload_chunk;
    case SP_MSG_UPLOAD_END:
        return &s_upload_end;
    case SP_MSG_TRAIN:
        return &s_train;
    case SP_MSG_STATUS:
        return &s_status;
    case SP_MSG_WORKERS:
        return &s_plain_req;
    case SP_MSG_METRICS:
        return &s_job_req;
    case SP_MSG_MODEL_GET:
        return &s_job_req;
    case SP_MSG_CANCEL:
        return &s_job_req;
    case SP_MSG_DATASETS:
        return &s_plain_req;
    case SP_MSG_R_OK:
        return &s_r_ok;
    case SP_MSG_R_UPLOAD:
        return &s_r_upload;
    case SP_MSG_R_JOB:
        return &s_r_job;
    case SP_MSG_R_STATUS:
        return &s_r_status;
    case SP_MSG_R_WORKERS:
        return &s_r_workers;
    case SP_MSG_R_METRICS:
        return &s_r_metrics;
    case SP_MSG_R_MODEL:
        return &s_r_model;
    case SP_MSG_R_DATASETS:
        return &s_r_datasets;
    default:
        return NULL;
    }
}

const char *sp_msg_type_name(uint32_t type)
{
    switch (type) {
#define SP_X_NAME(name, id, str)                                                                   \
    case id:                                                                                       \
        return str;
        SP_MSG_TYPES(SP_X_NAME)
#undef SP_X_NAME
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------------- */
/* Field access helpers                                                     */

#define AT(p, off, T) ((T *)(void *)((uint8_t *)(p) + (off)))
#define CAT(p, off, T) ((const T *)(const void *)((const uint8_t *)(p) + (off)))

static uint32_t s_count(const void *s, const s_field_t *f)
{
    return *CAT(s, f->cnt_off, uint32_t);
}

/* Wire arrays are little-endian: on such hosts they are copied as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define S_HOST_LE 1
#else
#define S_HOST_LE 0
#endif

static void s_fini_struct(const s_schema_t *sc, void *s)
{
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        switch (f->kind) {
        case K_BLOB: {
            sp_blob_t *b = AT(s, f->off, sp_blob_t);
            free(b->data);
            b->data = NULL;
            b->len = 0;
            break;
        }
        case K_BIN_U32:
        case K_BIN_F32: {
            void **pp = AT(s, f->off, void *);
            free(*pp);
            *pp = NULL;
            *AT(s, f->cnt_off, uint32_t) = 0;
            break;
        }
        case K_NESTED:
            s_fini_struct(f->sub, AT(s, f->off, void));
            break;
        case K_LIST: {
            uint8_t **pp = AT(s, f->off, uint8_t *);
            uint32_t n = s_count(s, f);
            if (*pp != NULL) {
                for (uint32_t k = 0; k < n; k++) {
                    s_fini_struct(f->sub, *pp + (size_t)k * f->size);
                }
            }
            free(*pp);
            *pp = NULL;
            *AT(s, f->cnt_off, uint32_t) = 0;
            break;
        }
        default:
            break;
        }
    }
}

void sp_msg_init(sp_msg_t *m, sp_msg_type_t type)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
}

uint64_t *sp_msg_req(sp_msg_t *m)
{
    switch (m->type) {
    case SP_MSG_UPLOAD_BEGIN:
        return &m->u.upload_begin.req;
    case SP_MSG_UPLOAD_CHUNK:
        return &m->u.upload_chunk.req;
    case SP_MSG_UPLOAD_END:
        return &m->u.upload_end.req;
    case SP_MSG_TRAIN:
        return &m->u.train.req;
    case SP_MSG_STATUS:
    case SP_MSG_METRICS:
    case SP_MSG_MODEL_GET:
    case SP_MSG_CANCEL:
        return &m->u.job_req.req;
    case SP_MSG_WORKERS:
    case SP_MSG_DATASETS:
        return &m->u.plain_req.req;
    case SP_MSG_ERROR:
        return &m->u.error.req;
    case SP_MSG_R_OK:
        return &m->u.r_ok.req;
    case SP_MSG_R_UPLOAD:
        return &m->u.r_upload.req;
    case SP_MSG_R_JOB:
        return &m->u.r_job.req;
    case SP_MSG_R_STATUS:
        return &m->u.r_status.req;
    case SP_MSG_R_WORKERS:
        return &m->u.r_workers.req;
    case SP_MSG_R_METRICS:
        return &m->u.r_metrics.req;
    case SP_MSG_R_MODEL:
        return &m->u.r_model.req;
    case SP_MSG_R_DATASETS:
        return &m->u.r_datasets.req;
    default:
        return NULL;
    }
}

void sp_msg_fini(sp_msg_t *m)
{
    if (m == NULL) {
        return;
    }
    const s_schema_t *sc = s_schema_of((uint32_t)m->type);
    sp_msg_type_t type = m->type;
    if (sc != NULL) {
        s_fini_struct(sc, &m->u);
    }
    memset(m, 0, sizeof(*m));
    m->type = type;
}

/* ---------------------------------------------------------------------- */
/* Range checks, shared by encoder and decoder                             */

static bool s_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int sp_msg_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SP_NAME_MAX || name[0] == '.') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_name_char((unsigned char)name[i])) {
            return 0;
        }
    }
    return 1;
}

static int s_check_str(const char *path, const s_field_t *f, const char *s, char *err,
                       size_t errlen)
{
    size_t n = strnlen(s, f->size);
    if (n >= f->size) {
        return sp_err_input(err, errlen, "%s.%s: not terminated within %zu bytes", path, f->key,
                            f->size);
    }
    switch (f->cs) {
    case CS_TEXT:
        return SP_OK;
    case CS_NAME:
    case CS_NAME_OR_EMPTY:
        if (n == 0 && f->cs == CS_NAME) {
            return sp_err_input(err, errlen, "%s.%s: empty name", path, f->key);
        }
        if (s[0] == '.') { /* names become file names: no ".", "..", hidden files */
            return sp_err_input(err, errlen, "%s.%s: starts with '.'", path, f->key);
        }
        for (size_t i = 0; i < n; i++) {
            if (!s_name_char((unsigned char)s[i])) {
                return sp_err_input(err, errlen, "%s.%s: byte 0x%02x at %zu not in [A-Za-z0-9._-]",
                                    path, f->key, (unsigned char)s[i], i);
            }
        }
        return SP_OK;
    case CS_ENUM:
        for (const char *const *e = f->enums; *e != NULL; e++) {
            if (strcmp(*e, s) == 0) {
                return SP_OK;
            }
        }
        return sp_err_input(err, errlen, "%s.%s: \"%.40s\" is not an allowed value", path, f->key,
                            s);
    }
    return SP_OK;
}

static int s_check_float(const char *path, const s_field_t *f, const char *what, double v,
                         char *err, size_t errlen)
{
    if (!isfinite(v)) {
        if (f->flags & F_NAN) {
            return SP_OK;
        }
        return sp_err_input(err, errlen, "%s.%s%s: not a finite number", path, f->key, what);
    }
    if (v < f->dlo || v > f->dhi) {
        return sp_err_input(err, errlen, "%s.%s%s: %g outside %g..%g", path, f->key, what, v,
                            f->dlo, f->dhi);
    }
    return SP_OK;
}

static int s_check_uint(const char *path, const s_field_t *f, const char *what, uint64_t v,
                        char *err, size_t errlen)
{
    if (v < (uint64_t)f->lo || v > f->hi) {
        return sp_err_input(err, errlen, "%s.%s%s: %" PRIu64 " outside %" PRId64 "..%" PRIu64, path,
                            f->key, what, v, f->lo, f->hi);
    }
    return SP_OK;
}

static int s_validate(const s_schema_t *sc, const void *s, const char *path, char *err,
                      size_t errlen)
{
    int rc = SP_OK;
    for (size_t i = 0; i < sc->n_fields && rc == SP_OK; i++) {
        const s_field_t *f = &sc->fields[i];
        switch (f->kind) {
        case K_U32:
            rc = s_check_uint(path, f, "", *CAT(s, f->off, uint32_t), err, errlen);
            break;
        case K_U64:
            rc = s_check_uint(path, f, "", *CAT(s, f->off, uint64_t), err, errlen);
            break;
        case K_BOOL:
            rc = s_check_uint(path, f, "", (uint64_t)*CAT(s, f->off, int), err, errlen);
            if (*CAT(s, f->off, int) < 0) {
                rc = sp_err_input(err, errlen, "%s.%s: not 0 or 1", path, f->key);
            }
            break;
        case K_I32: {
            int32_t v = *CAT(s, f->off, int32_t);
            if (v < f->lo || v > (int64_t)f->hi) {
                rc = sp_err_input(err, errlen, "%s.%s: %" PRId32 " outside %" PRId64 "..%" PRIu64,
                                  path, f->key, v, f->lo, f->hi);
            }
            break;
        }
        case K_F64:
            rc = s_check_float(path, f, "", *CAT(s, f->off, double), err, errlen);
            break;
        case K_F32:
            rc = s_check_float(path, f, "", *CAT(s, f->off, float), err, errlen);
            break;
        case K_STR:
            rc = s_check_str(path, f, CAT(s, f->off, char), err, errlen);
            break;
        case K_BLOB: {
            const sp_blob_t *b = CAT(s, f->off, sp_blob_t);
            if (b->len < (uint64_t)f->lo || b->len > f->hi) {
                rc = sp_err_input(err, errlen, "%s.%s: %zu bytes outside %" PRId64 "..%" PRIu64,
                                  path, f->key, b->len, f->lo, f->hi);
            } else if (b->len > 0 && b->data == NULL) {
                rc = sp_err_input(err, errlen, "%s.%s: NULL data", path, f->key);
            }
            break;
        }
        case K_BIN_U32:
        case K_BIN_F32: {
            uint32_t n = s_count(s, f);
            const void *p = *CAT(s, f->off, void *const);
            if (n > 0 && p == NULL) {
                rc = sp_err_input(err, errlen, "%s.%s: NULL with %" PRIu32 " elements", path,
                                  f->key, n);
            } else if (f->kind == K_BIN_F32) {
                uint32_t k = (uint32_t)sp_kern_first_nonfinite(p, n);
                if (k < n) {
                    rc = sp_err_input(err, errlen, "%s.%s[%" PRIu32 "]: not a finite number",
                                      path, f->key, k);
                }
            }
            break;
        }
        case K_ARR_U32:
        case K_ARR_U64:
        case K_ARR_F32: {
            uint32_t n = s_count(s, f);
            if (n > f->size) {
                rc = sp_err_input(err, errlen, "%s.%s: %" PRIu32 " elements, at most %zu", path,
                                  f->key, n, f->size);
                break;
            }
            for (uint32_t k = 0; k < n && rc == SP_OK; k++) {
                char what[24];
                snprintf(what, sizeof(what), "[%" PRIu32 "]", k);
                if (f->kind == K_ARR_U32) {
                    rc = s_check_uint(path, f, what, CAT(s, f->off, uint32_t)[k], err, errlen);
                } else if (f->kind == K_ARR_U64) {
                    rc = s_check_uint(path, f, what, CAT(s, f->off, uint64_t)[k], err, errlen);
                } else {
                    rc = s_check_float(path, f, what, CAT(s, f->off, float)[k], err, errlen);
                }
            }
            break;
        }
        case K_NESTED: {
            if ((f->flags & F_COND) && *CAT(s, f->cond_off, int) == 0) {
                break;
            }
            char sub[96];
            snprintf(sub, sizeof(sub), "%s.%s", path, f->key);
            rc = s_validate(f->sub, CAT(s, f->off, void), sub, err, errlen);
            break;
        }
        case K_LIST: {
            uint32_t n = s_count(s, f);
            const uint8_t *p = *CAT(s, f->off, const uint8_t *const);
            if (n > f->hi) {
                rc = sp_err_input(err, errlen, "%s.%s: %" PRIu32 " records, at most %" PRIu64, path,
                                  f->key, n, f->hi);
            } else if (n > 0 && p == NULL) {
                rc = sp_err_input(err, errlen, "%s.%s: NULL with %" PRIu32 " records", path, f->key,
                                  n);
            }
            for (uint32_t k = 0; k < n && rc == SP_OK; k++) {
                char sub[96];
                snprintf(sub, sizeof(sub), "%s.%s[%" PRIu32 "]", path, f->key, k);
                rc = s_validate(f->sub, p + (size_t)k * f->size, sub, err, errlen);
            }
            break;
        }
        }
    }
    if (rc == SP_OK && sc->check != NULL) {
        rc = sc->check(s, err, errlen);
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Encoder                                                                 */

static size_t s_present_fields(const s_schema_t *sc, const void *s)
{
    size_t n = 0;
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        n += !(f->flags & F_COND) || *CAT(s, f->cond_off, int) != 0;
    }
    return n;
}

static int s_pack_struct(msgpack_packer *pk, const s_schema_t *sc, const void *s)
{
    int e = msgpack_pack_map(pk, s_present_fields(sc, s));
    for (size_t i = 0; i < sc->n_fields && e == 0; i++) {
        const s_field_t *f = &sc->fields[i];
        if ((f->flags & F_COND) && *CAT(s, f->cond_off, int) == 0) {
            continue;
        }
        e |= msgpack_pack_str_with_body(pk, f->key, strlen(f->key));
        switch (f->kind) {
        case K_U32:
            e |= msgpack_pack_uint32(pk, *CAT(s, f->off, uint32_t));
            break;
        case K_U64:
            e |= msgpack_pack_uint64(pk, *CAT(s, f->off, uint64_t));
            break;
        case K_I32:
            e |= msgpack_pack_int32(pk, *CAT(s, f->off, int32_t));
            break;
        case K_BOOL:
            e |= *CAT(s, f->off, int) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
            break;
        case K_F64:
            e |= msgpack_pack_double(pk, *CAT(s, f->off, double));
            break;
        case K_F32:
            e |= msgpack_pack_float(pk, *CAT(s, f->off, float));
            break;
        case K_STR: {
            const char *str = CAT(s, f->off, char);
            e |= msgpack_pack_str_with_body(pk, str, strlen(str));
            break;
        }
        case K_BLOB: {
            const sp_blob_t *b = CAT(s, f->off, sp_blob_t);
            e |= msgpack_pack_bin(pk, b->len);
            if (b->len > 0) { /* no memcpy from a NULL pointer */
                e |= msgpack_pack_bin_body(pk, b->data, b->len);
            }
            break;
        }
        case K_BIN_U32:
        case K_BIN_F32: {
            uint32_t n = s_count(s, f);
            const uint32_t *v = *CAT(s, f->off, const uint32_t *const); /* floats by bits */
            e |= msgpack_pack_bin(pk, (size_t)n * 4);
            if (S_HOST_LE) {
                if (n > 0) {
                    e |= msgpack_pack_bin_body(pk, v, (size_t)n * 4);
                }
                break;
            }
            uint8_t tmp[1024];
            for (uint32_t k = 0; k < n && e == 0;) {
                uint32_t m = 0;
                for (; m < sizeof(tmp) / 4 && k < n; m++, k++) {
                    uint32_t w;
                    memcpy(&w, &v[k], 4);
                    sp_put_le32(tmp + 4 * m, w);
                }
                e |= msgpack_pack_bin_body(pk, tmp, (size_t)m * 4);
            }
            break;
        }
        case K_ARR_U32:
        case K_ARR_U64:
        case K_ARR_F32: {
            uint32_t n = s_count(s, f);
            e |= msgpack_pack_array(pk, n);
            for (uint32_t k = 0; k < n && e == 0; k++) {
                if (f->kind == K_ARR_U32) {
                    e |= msgpack_pack_uint32(pk, CAT(s, f->off, uint32_t)[k]);
                } else if (f->kind == K_ARR_U64) {
                    e |= msgpack_pack_uint64(pk, CAT(s, f->off, uint64_t)[k]);
                } else {
                    e |= msgpack_pack_float(pk, CAT(s, f->off, float)[k]);
                }
            }
            break;
        }
        case K_NESTED:
            e |= s_pack_struct(pk, f->sub, CAT(s, f->off, void));
            break;
        case K_LIST: {
            uint32_t n = s_count(s, f);
            const uint8_t *p = *CAT(s, f->off, const uint8_t *const);
            e |= msgpack_pack_array(pk, n);
            for (uint32_t k = 0; k < n && e == 0; k++) {
                e |= s_pack_struct(pk, f->sub, p + (size_t)k * f->size);
            }
            break;
        }
        }
    }
    return e;
}

/* Bytes a body will about take: the blobs and binary arrays it carries plus
 * a generous allowance for keys and scalars (only a buffer size hint). */
static size_t s_size_guess(const s_schema_t *sc, const void *s)
{
    size_t n = 256;
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        switch (f->kind) {
        case K_BIN_U32:
        case K_BIN_F32:
            n += (size_t)s_count(s, f) * 4 + 16;
            break;
        case K_BLOB:
            n += CAT(s, f->off, sp_blob_t)->len + 16;
            break;
        default:
            n += 32;
            break;
        }
    }
    return n;
}

int sp_msg_encode(const sp_msg_t *m, uint8_t hdr[SP_MSG_HEADER_BYTES], uint8_t **body,
                  size_t *body_len)
{
    *body = NULL;
    *body_len = 0;
    const s_schema_t *sc = s_schema_of((uint32_t)m->type);
    if (sc == NULL) {
        sp_log(SP_LOG_ERROR, "encode: unknown message type %d", (int)m->type);
        return SP_E_RANGE;
    }
    char err[256];
    if (s_validate(sc, &m->u, sp_msg_type_name((uint32_t)m->type), err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_ERROR, "encode: %s", err);
        return SP_E_RANGE;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* Room for the whole body up front: a gradient of 400 KB would otherwise
     * be copied through every doubling of the buffer. */
    size_t guess = s_size_guess(sc, &m->u);
    if (guess > MSGPACK_SBUFFER_INIT_SIZE && (sb.data = malloc(guess)) != NULL) {
        sb.alloc = guess;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (s_pack_struct(&pk, sc, &m->u) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return SP_E_NOMEM;
    }
    if (sb.size > SP_MSG_MAX_BYTES) {
        sp_log(SP_LOG_ERROR, "encode: %s body of %zu bytes exceeds %u",
               sp_msg_type_name((uint32_t)m->type), sb.size, SP_MSG_MAX_BYTES);
        msgpack_sbuffer_destroy(&sb);
        return SP_E_RANGE;
    }
    hdr[0] = 'S';
    hdr[1] = 'P';
    hdr[2] = (uint8_t)SP_PROTO_VERSION;
    hdr[3] = (uint8_t)m->type;
    *body_len = sb.size;
    *body = (uint8_t *)msgpack_sbuffer_release(&sb);
    if (*body == NULL) { /* an empty map is one byte, so never empty: defensive */
        return SP_E_NOMEM;
    }
    return SP_OK;
}

/* Limits of the bounded pre-scan (common/mpcheck.h): msgpack-c trusts
 * declared lengths, so every length and count is checked against the bytes
 * left and these caps before msgpack-c allocates anything. */
static const sp_mp_limits_t s_limits = {
    .max_depth = SP_MSG_MAX_DEPTH,
    .max_bytes_per_item = SP_MSG_MAX_BYTES,
    .max_items = SP_MAX_LIST,
    .max_total_items = SP_MSG_MAX_OBJECTS,
};

/* ---------------------------------------------------------------------- */
/* Decoder                                                                 */

static const char *s_mp_type(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
        return "float32";
    case MSGPACK_OBJECT_FLOAT64:
        return "float64";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "?";
}

static int s_bad_type(const char *path, const char *key, const char *want, msgpack_object_type got,
                      char *err, size_t errlen)
{
    return sp_err_input(err, errlen, "%s.%s: expected %s, got %s", path, key, want, s_mp_type(got));
}

static int s_read_uint(const msgpack_object *o, const char *path, const char *key, uint64_t max,
                       uint64_t *v, char *err, size_t errlen)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        return sp_err_input(err, errlen, "%s.%s: negative value %" PRId64, path, key, o->via.i64);
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_bad_type(path, key, "uint", o->type, err, errlen);
    }
    if (o->via.u64 > max) {
        return sp_err_input(err, errlen, "%s.%s: %" PRIu64 " does not fit (max %" PRIu64 ")", path,
                            key, o->via.u64, max);
    }
    *v = o->via.u64;
    return SP_OK;
}

static int s_read_float(const msgpack_object *o, const char *path, const char *key, double *v,
                        char *err, size_t errlen)
{
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *v = o->via.f64;
        return SP_OK;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *v = (double)o->via.u64;
        return SP_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *v = (double)o->via.i64;
        return SP_OK;
    default:
        return s_bad_type(path, key, "float", o->type, err, errlen);
    }
}

/* A float64 that does not fit a float would become inf: refuse it. */
static int s_to_f32(double d, const char *path, const char *key, float *out, char *err,
                    size_t errlen)
{
    if (isfinite(d) && fabs(d) > FLT_MAX) {
        return sp_err_input(err, errlen, "%s.%s: %g does not fit a float32", path, key, d);
    }
    *out = (float)d;
    return SP_OK;
}

static int s_unpack_struct(const s_schema_t *sc, const msgpack_object *o, void *s, const char *path,
                           char *err, size_t errlen);

static int s_read_field(const s_field_t *f, const msgpack_object *o, void *s, const char *path,
                        char *err, size_t errlen)
{
    uint64_t u = 0;
    double d = 0;
    int rc;
    switch (f->kind) {
    case K_U32:
        rc = s_read_uint(o, path, f->key, UINT32_MAX, &u, err, errlen);
        *AT(s, f->off, uint32_t) = (uint32_t)u;
        return rc;
    case K_U64:
        rc = s_read_uint(o, path, f->key, UINT64_MAX, &u, err, errlen);
        *AT(s, f->off, uint64_t) = u;
        return rc;
    case K_I32:
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (o->via.u64 > INT32_MAX) {
                return sp_err_input(err, errlen, "%s.%s: %" PRIu64 " does not fit int32", path,
                                    f->key, o->via.u64);
            }
            *AT(s, f->off, int32_t) = (int32_t)o->via.u64;
            return SP_OK;
        }
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            if (o->via.i64 < INT32_MIN) {
                return sp_err_input(err, errlen, "%s.%s: %" PRId64 " does not fit int32", path,
                                    f->key, o->via.i64);
            }
            *AT(s, f->off, int32_t) = (int32_t)o->via.i64;
            return SP_OK;
        }
        return s_bad_type(path, f->key, "int", o->type, err, errlen);
    case K_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN) {
            return s_bad_type(path, f->key, "bool", o->type, err, errlen);
        }
        *AT(s, f->off, int) = o->via.boolean ? 1 : 0;
        return SP_OK;
    case K_F64:
        rc = s_read_float(o, path, f->key, &d, err, errlen);
        *AT(s, f->off, double) = d;
        return rc;
    case K_F32:
        rc = s_read_float(o, path, f->key, &d, err, errlen);
        return rc != SP_OK ? rc : s_to_f32(d, path, f->key, AT(s, f->off, float), err, errlen);
    case K_STR: {
        if (o->type != MSGPACK_OBJECT_STR) {
            return s_bad_type(path, f->key, "str", o->type, err, errlen);
        }
        uint32_t n = o->via.str.size;
        if (n >= f->size) {
            return sp_err_input(err, errlen, "%s.%s: %" PRIu32 " bytes, at most %zu", path, f->key,
                                n, f->size - 1);
        }
        if (n > 0 && memchr(o->via.str.ptr, 0, n) != NULL) {
            return sp_err_input(err, errlen, "%s.%s: contains a NUL byte", path, f->key);
        }
        char *dst = AT(s, f->off, char);
        if (n > 0) { /* an empty str may carry a NULL pointer */
            memcpy(dst, o->via.str.ptr, n);
        }
        dst[n] = '\0';
        return SP_OK;
    }
    case K_BLOB: {
        if (o->type != MSGPACK_OBJECT_BIN) {
            return s_bad_type(path, f->key, "bin", o->type, err, errlen);
        }
        uint32_t n = o->via.bin.size;
        if (n > f->hi || n < (uint64_t)f->lo) {
            return sp_err_input(err, errlen,
                                "%s.%s: %" PRIu32 " bytes outside %" PRId64 "..%" PRIu64, path,
                                f->key, n, f->lo, f->hi);
        }
        sp_blob_t *b = AT(s, f->off, sp_blob_t);
        if (n > 0) {
            b->data = malloc(n);
            if (b->data == NULL) {
                return SP_E_NOMEM;
            }
            memcpy(b->data, o->via.bin.ptr, n);
        }
        b->len = n;
        return SP_OK;
    }
    case K_BIN_U32:
    case K_BIN_F32: {
        if (o->type != MSGPACK_OBJECT_BIN) {
            return s_bad_type(path, f->key, "bin", o->type, err, errlen);
        }
        uint32_t bytes = o->via.bin.size;
        uint32_t want = s_count(s, f);
        if (bytes % 4 != 0 || bytes / 4 != want) {
            return sp_err_input(
                err, errlen, "%s.%s: %" PRIu32 " bytes, expected %" PRIu32 " elements of 4 bytes",
                path, f->key, bytes, want);
        }
        if (want > 0) {
            uint32_t *v = malloc(bytes);
            if (v == NULL) {
                return SP_E_NOMEM;
            }
            const uint8_t *src = (const uint8_t *)o->via.bin.ptr;
            if (S_HOST_LE) {
                memcpy(v, src, bytes);
            } else {
                for (uint32_t k = 0; k < want; k++) {
                    uint32_t w = sp_get_le32(src + 4 * (size_t)k);
                    memcpy(&v[k], &w, 4);
                }
            }
            *AT(s, f->off, uint32_t *) = v;
        }
        return SP_OK;
    }
    case K_ARR_U32:
    case K_ARR_U64:
    case K_ARR_F32: {
        if (o->type != MSGPACK_OBJECT_ARRAY) {
            return s_bad_type(path, f->key, "array", o->type, err, errlen);
        }
        uint32_t n = o->via.array.size;
        uint32_t want = s_count(s, f);
        if (n != want || n > f->size) {
            return sp_err_input(err, errlen,
                                "%s.%s: %" PRIu32 " elements, expected %" PRIu32 " (at most %zu)",
                                path, f->key, n, want, f->size);
        }
        for (uint32_t k = 0; k < n; k++) {
            const msgpack_object *e = &o->via.array.ptr[k];
            char key[80];
            snprintf(key, sizeof(key), "%s[%" PRIu32 "]", f->key, k);
            if (f->kind == K_ARR_F32) {
                rc = s_read_float(e, path, key, &d, err, errlen);
                if (rc == SP_OK) {
                    rc = s_to_f32(d, path, key, &AT(s, f->off, float)[k], err, errlen);
                }
            } else {
                uint64_t max = f->kind == K_ARR_U32 ? UINT32_MAX : UINT64_MAX;
                rc = s_read_uint(e, path, key, max, &u, err, errlen);
                if (f->kind == K_ARR_U32) {
                    AT(s, f->off, uint32_t)[k] = (uint32_t)u;
                } else {
                    AT(s, f->off, uint64_t)[k] = u;
                }
            }
            if (rc != SP_OK) {
                return rc;
            }
        }
        return SP_OK;
    }
    case K_NESTED: {
        char sub[96];
        snprintf(sub, sizeof(sub), "%s.%s", path, f->key);
        return s_unpack_struct(f->sub, o, AT(s, f->off, void), sub, err, errlen);
    }
    case K_LIST: {
        if (o->type != MSGPACK_OBJECT_ARRAY) {
            return s_bad_type(path, f->key, "array", o->type, err, errlen);
        }
        uint32_t n = o->via.array.size;
        uint32_t want = s_count(s, f);
        if (n != want || n > f->hi) {
            return sp_err_input(err, errlen,
                                "%s.%s: %" PRIu32 " records, expected %" PRIu32 " (at most %" PRIu64
                                ")",
                                path, f->key, n, want, f->hi);
        }
        if (n == 0) {
            return SP_OK;
        }
        uint8_t *recs = calloc(n, f->size);
        if (recs == NULL) {
            return SP_E_NOMEM;
        }
        *AT(s, f->off, uint8_t *) = recs;
        for (uint32_t k = 0; k < n; k++) {
            char sub[96];
            snprintf(sub, sizeof(sub), "%s.%s[%" PRIu32 "]", path, f->key, k);
            rc = s_unpack_struct(f->sub, &o->via.array.ptr[k], recs + (size_t)k * f->size, sub, err,
                                 errlen);
            if (rc != SP_OK) {
                return rc; /* the caller's fini frees recs */
            }
        }
        return SP_OK;
    }
    }
    return SP_E_INPUT;
}

static int s_unpack_struct(const s_schema_t *sc, const msgpack_object *o, void *s, const char *path,
                           char *err, size_t errlen)
{
    if (o->type != MSGPACK_OBJECT_MAP) {
        return sp_err_input(err, errlen, "%s: expected a map, got %s", path, s_mp_type(o->type));
    }
    const msgpack_object_kv *kv = o->via.map.ptr;
    uint32_t n = o->via.map.size;
    if (n > SP_MSG_MAX_MAP) { /* keeps the duplicate-key check cheap */
        return sp_err_input(err, errlen, "%s: map of %" PRIu32 " entries, at most %d", path, n,
                            SP_MSG_MAX_MAP);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (kv[i].key.type != MSGPACK_OBJECT_STR) {
            return sp_err_input(err, errlen, "%s: key %" PRIu32 " is a %s, not a str", path, i,
                                s_mp_type(kv[i].key.type));
        }
        /* msgpack-c gives an empty string a NULL pointer: never hand that to
         * memcmp or printf (fuzz/crashes/msg/dup-empty-keys). */
        uint32_t size = kv[i].key.via.str.size;
        for (uint32_t j = 0; j < i; j++) {
            if (kv[j].key.via.str.size == size &&
                (size == 0 || memcmp(kv[j].key.via.str.ptr, kv[i].key.via.str.ptr, size) == 0)) {
                return sp_err_input(err, errlen, "%s: duplicate key \"%.*s\"", path,
                                    (int)(size > 40 ? 40 : size),
                                    size == 0 ? "" : kv[i].key.via.str.ptr);
            }
        }
    }
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        const msgpack_object *val = NULL;
        size_t klen = strlen(f->key);
        for (uint32_t j = 0; j < n; j++) {
            if (kv[j].key.via.str.size == klen &&
                memcmp(kv[j].key.via.str.ptr, f->key, klen) == 0) {
                val = &kv[j].val;
                break;
            }
        }
        if ((f->flags & F_COND) && *AT(s, f->cond_off, int) == 0) {
            continue; /* not expected; ignored if present */
        }
        if (val == NULL) {
            if (f->flags & F_OPT) {
                continue;
            }
            return sp_err_input(err, errlen, "%s: missing key \"%s\"", path, f->key);
        }
        int rc = s_read_field(f, val, s, path, err, errlen);
        /* Range-check counts at once, so a bad count is named before the
         * array it describes. */
        if (rc == SP_OK && f->kind == K_U32) {
            rc = s_check_uint(path, f, "", *AT(s, f->off, uint32_t), err, errlen);
        } else if (rc == SP_OK && f->kind == K_U64) {
            rc = s_check_uint(path, f, "", *AT(s, f->off, uint64_t), err, errlen);
        }
        if (rc != SP_OK) {
            return rc;
        }
    }
    return SP_OK;
}

int sp_msg_decode(const uint8_t *hdr, size_t hdr_len, const uint8_t *body, size_t body_len,
                  sp_msg_t *out, char *err, size_t errlen)
{
    sp_msg_init(out, (sp_msg_type_t)0);
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (hdr == NULL || hdr_len != SP_MSG_HEADER_BYTES) {
        return sp_err_input(err, errlen, "header: %zu bytes, expected %d", hdr_len,
                            SP_MSG_HEADER_BYTES);
    }
    if (hdr[0] != 'S' || hdr[1] != 'P') {
        return sp_err_input(err, errlen, "header: bad magic 0x%02x%02x, expected \"SP\"", hdr[0],
                            hdr[1]);
    }
    if (hdr[2] != SP_PROTO_VERSION) {
        sp_err_input(err, errlen, "protocol version %u not supported (this build speaks %u)",
                     (unsigned)hdr[2], (unsigned)SP_PROTO_VERSION);
        return SP_E_VERSION;
    }
    const s_schema_t *sc = s_schema_of(hdr[3]);
    if (sc == NULL) {
        return sp_err_input(err, errlen, "header: unknown message type %u", (unsigned)hdr[3]);
    }
    const char *name = sp_msg_type_name(hdr[3]);
    if (body_len > SP_MSG_MAX_BYTES) {
        return sp_err_input(err, errlen, "%s: body of %zu bytes exceeds the limit of %u", name,
                            body_len, SP_MSG_MAX_BYTES);
    }
    if (body == NULL || body_len == 0) {
        return sp_err_input(err, errlen, "%s: empty body, expected a map", name);
    }
    /* sp_mp_unpack pre-scans, then unpacks requiring every byte consumed. */
    char scan_err[200];
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = sp_mp_unpack(body, body_len, &s_limits, &up, scan_err, sizeof(scan_err));
    if (rc == SP_E_INPUT) {
        sp_err_input(err, errlen, "%s: body: %s", name, scan_err);
    } else if (rc == SP_OK) {
        out->type = (sp_msg_type_t)hdr[3];
        rc = s_unpack_struct(sc, &up.data, &out->u, name, err, errlen);
        if (rc == SP_OK) {
            rc = s_validate(sc, &out->u, name, err, errlen);
        }
    }
    msgpack_unpacked_destroy(&up);
    if (rc != SP_OK) {
        sp_msg_fini(out);
        out->type = (sp_msg_type_t)0;
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Examples and comparison                                                 */

static uint64_t s_pick(sp_rng_t *st, uint64_t lo, uint64_t hi)
{
    uint64_t span = hi - lo;
    uint64_t cap = span < 1000 ? span : 1000;
    return lo + sp_rng_next(st) % (cap + 1);
}

static double s_pick_f(sp_rng_t *st, const s_field_t *f)
{
    double lo = f->dlo, hi = f->dhi > 1e6 ? lo + 1e6 : f->dhi;
    double frac = (double)(sp_rng_next(st) % 1000 + 1) / 1002.0; /* strictly inside */
    return lo + (hi - lo) * frac;
}

static const s_field_t *s_count_field(const s_schema_t *sc, size_t cnt_off)
{
    for (size_t i = 0; i < sc->n_fields; i++) {
        if (sc->fields[i].off == cnt_off && (sc->fields[i].kind == K_U32)) {
            return &sc->fields[i];
        }
    }
    return NULL;
}

static uint32_t s_pick_count(sp_rng_t *st, const s_schema_t *sc, const s_field_t *f, uint32_t cap)
{
    const s_field_t *cf = s_count_field(sc, f->cnt_off);
    uint64_t lo = cf != NULL && cf->lo > 1 ? (uint64_t)cf->lo : 1;
    uint64_t hi = cf != NULL && cf->hi < cap ? cf->hi : cap;
    return (uint32_t)s_pick(st, lo, hi < lo ? lo : hi);
}

static int s_fill(const s_schema_t *sc, void *s, sp_rng_t *st)
{
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        switch (f->kind) {
        case K_U32:
            *AT(s, f->off, uint32_t) = (uint32_t)s_pick(st, (uint64_t)f->lo, f->hi);
            break;
        case K_U64: /* large values exercise the 8-byte encoding */
            *AT(s, f->off, uint64_t) =
                s_pick(st, (uint64_t)f->lo, f->hi) + (f->hi == UINT64_MAX ? UINT64_C(1) << 40 : 0);
            break;
        case K_I32:
            *AT(s, f->off, int32_t) =
                (int32_t)(f->lo +
                          (int64_t)(sp_rng_next(st) % (uint64_t)((int64_t)f->hi - f->lo + 1)));
            break;
        case K_BOOL:
            *AT(s, f->off, int) = 1;
            break;
        case K_F64:
            *AT(s, f->off, double) = s_pick_f(st, f);
            break;
        case K_F32:
            *AT(s, f->off, float) = (float)s_pick_f(st, f);
            break;
        case K_STR: {
            char *dst = AT(s, f->off, char);
            if (f->cs == CS_ENUM) {
                size_t ne = 0;
                while (f->enums[ne] != NULL) {
                    ne++;
                }
                snprintf(dst, f->size, "%s", f->enums[sp_rng_next(st) % ne]);
            } else if (f->cs == CS_TEXT) {
                snprintf(dst, f->size, "text %s \xc3\xa9 %" PRIu64, f->key, sp_rng_next(st) % 1000);
            } else {
                snprintf(dst, f->size, "%s-%" PRIu64 ".x_Y", f->key, sp_rng_next(st) % 1000);
            }
            break;
        }
        case K_BLOB: {
            sp_blob_t *b = AT(s, f->off, sp_blob_t);
            b->len = (size_t)s_pick(st, 1, 200);
            b->data = malloc(b->len);
            if (b->data == NULL) {
                return SP_E_NOMEM;
            }
            for (size_t k = 0; k < b->len; k++) {
                b->data[k] = (uint8_t)sp_rng_next(st);
            }
            break;
        }
        case K_BIN_U32:
        case K_BIN_F32: {
            uint32_t n = s_pick_count(st, sc, f, 300);
            uint32_t *v = malloc((size_t)n * 4);
            if (v == NULL) {
                return SP_E_NOMEM;
            }
            for (uint32_t k = 0; k < n; k++) {
                if (f->kind == K_BIN_F32) {
                    float x = (float)((double)(int64_t)(sp_rng_next(st) % 20001 - 10000) / 3333.0);
                    memcpy(&v[k], &x, 4);
                } else {
                    v[k] = (uint32_t)sp_rng_next(st);
                }
            }
            *AT(s, f->off, uint32_t *) = v;
            *AT(s, f->cnt_off, uint32_t) = n;
            break;
        }
        case K_ARR_U32:
        case K_ARR_U64:
        case K_ARR_F32: {
            /* Arrays sharing a count (neurons, saturation) keep the first one's count. */
            uint32_t n = *AT(s, f->cnt_off, uint32_t);
            if (n == 0 || n > f->size) {
                n = s_pick_count(st, sc, f, (uint32_t)f->size);
                *AT(s, f->cnt_off, uint32_t) = n;
            }
            for (uint32_t k = 0; k < n; k++) {
                if (f->kind == K_ARR_U32) {
                    AT(s, f->off, uint32_t)[k] = (uint32_t)s_pick(st, (uint64_t)f->lo, f->hi);
                } else if (f->kind == K_ARR_U64) {
                    AT(s, f->off, uint64_t)[k] = s_pick(st, (uint64_t)f->lo, f->hi);
                } else {
                    AT(s, f->off, float)[k] = (float)s_pick_f(st, f);
                }
            }
            break;
        }
        case K_NESTED: {
            int rc = s_fill(f->sub, AT(s, f->off, void), st);
            if (rc != SP_OK) {
                return rc;
            }
            break;
        }
        case K_LIST: {
            uint32_t n = s_pick_count(st, sc, f, 3);
            if (n < 2) {
                n = 2;
            }
            uint8_t *recs = calloc(n, f->size);
            if (recs == NULL) {
                return SP_E_NOMEM;
            }
            *AT(s, f->off, uint8_t *) = recs;
            *AT(s, f->cnt_off, uint32_t) = n;
            for (uint32_t k = 0; k < n; k++) {
                int rc = s_fill(f->sub, recs + (size_t)k * f->size, st);
                if (rc != SP_OK) {
                    return rc;
                }
            }
            break;
        }
        }
    }
    if (sc->fix != NULL) {
        sc->fix(s);
    }
    return SP_OK;
}

int sp_msg_example(sp_msg_t *m, sp_msg_type_t type, uint64_t seed)
{
    sp_msg_init(m, type);
    const s_schema_t *sc = s_schema_of((uint32_t)type);
    if (sc == NULL) {
        return SP_E_RANGE;
    }
    sp_rng_t st;
    sp_rng_init_stream(&st, seed, (uint64_t)type);
    int rc = s_fill(sc, &m->u, &st);
    char err[256];
    if (rc == SP_OK &&
        s_validate(sc, &m->u, sp_msg_type_name((uint32_t)type), err, sizeof(err)) != SP_OK) {
        sp_log(SP_LOG_ERROR, "sp_msg_example: %s", err);
        rc = SP_E_RANGE;
    }
    if (rc != SP_OK) {
        sp_msg_fini(m);
    }
    return rc;
}

static int s_differ(char *where, size_t wl, const char *path, const char *key)
{
    if (where != NULL && wl > 0) {
        snprintf(where, wl, "%s.%s", path, key);
    }
    return 0;
}

static int s_equal_struct(const s_schema_t *sc, const void *a, const void *b, const char *path,
                          char *where, size_t wl)
{
    for (size_t i = 0; i < sc->n_fields; i++) {
        const s_field_t *f = &sc->fields[i];
        size_t bytes = 0;
        const void *pa = CAT(a, f->off, void), *pb = CAT(b, f->off, void);
        switch (f->kind) {
        case K_U32:
            bytes = 4;
            break;
        case K_U64:
            bytes = 8;
            break;
        case K_I32:
            bytes = 4;
            break;
        case K_BOOL:
            bytes = sizeof(int);
            break;
        case K_F64:
            bytes = 8;
            break;
        case K_F32:
            bytes = 4;
            break;
        case K_STR:
            if (strcmp(pa, pb) != 0) {
                return s_differ(where, wl, path, f->key);
            }
            continue;
        case K_BLOB: {
            const sp_blob_t *x = pa, *y = pb;
            if (x->len != y->len || (x->len > 0 && memcmp(x->data, y->data, x->len) != 0)) {
                return s_differ(where, wl, path, f->key);
            }
            continue;
        }
        case K_BIN_U32:
        case K_BIN_F32: {
            uint32_t n = s_count(a, f);
            if (n != s_count(b, f)) {
                return s_differ(where, wl, path, f->key);
            }
            if (n > 0 &&
                memcmp(*(const void *const *)pa, *(const void *const *)pb, (size_t)n * 4) != 0) {
                return s_differ(where, wl, path, f->key);
            }
            continue;
        }
        case K_ARR_U32:
        case K_ARR_F32:
        case K_ARR_U64: {
            uint32_t n = s_count(a, f);
            size_t el = f->kind == K_ARR_U64 ? 8 : 4;
            if (n != s_count(b, f) || (n > 0 && memcmp(pa, pb, n * el) != 0)) {
                return s_differ(where, wl, path, f->key);
            }
            continue;
        }
        case K_NESTED: {
            if ((f->flags & F_COND) && *CAT(a, f->cond_off, int) == 0) {
                continue;
            }
            char sub[96];
            snprintf(sub, sizeof(sub), "%s.%s", path, f->key);
            if (!s_equal_struct(f->sub, pa, pb, sub, where, wl)) {
                return 0;
            }
            continue;
        }
        case K_LIST: {
            uint32_t n = s_count(a, f);
            if (n != s_count(b, f)) {
                return s_differ(where, wl, path, f->key);
            }
            const uint8_t *ra = *(const uint8_t *const *)pa, *rb = *(const uint8_t *const *)pb;
            for (uint32_t k = 0; k < n; k++) {
                char sub[96];
                snprintf(sub, sizeof(sub), "%s.%s[%" PRIu32 "]", path, f->key, k);
                if (!s_equal_struct(f->sub, ra + (size_t)k * f->size, rb + (size_t)k * f->size, sub,
                                    where, wl)) {
                    return 0;
                }
            }
            continue;
        }
        }
        if (memcmp(pa, pb, bytes) != 0) {
            return s_differ(where, wl, path, f->key);
        }
    }
    return 1;
}

int sp_msg_equal(const sp_msg_t *a, const sp_msg_t *b, char *where, size_t wherelen)
{
    if (a->type != b->type) {
        return s_differ(where, wherelen, "msg", "type");
    }
    const s_schema_t *sc = s_schema_of((uint32_t)a->type);
    if (sc == NULL) {
        return s_differ(where, wherelen, "msg", "type");
    }
    return s_equal_struct(sc, &a->u, &b->u, sp_msg_type_name((uint32_t)a->type), where, wherelen);
}
