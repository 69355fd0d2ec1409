/* coordinator: the root object of spatium-coordinator and its event loop.
 * One sp_coord_t owns everything the process has (sockets, worker registry,
 * datasets, uploads, jobs, the running job); every module receives it
 * explicitly. Invariant: nothing received from the network changes state
 * unless it decoded strictly and passed every check of its handler. */
#ifndef SP_COORD_COORDINATOR_H
#define SP_COORD_COORDINATOR_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dataset.h"
#include "common/network.h"
#include "common/plan.h"
#include "coordinator/store.h"
#include "proto/curve.h"
#include "proto/messages.h"

#define SP_COORD_ID_MAX 256                     /* ZeroMQ routing ids are at most 255 bytes */
#define SP_COORD_MAX_INFLIGHT 2                 /* nodes (tasks) in flight per worker */
#define SP_COORD_MAX_PARTS 4096                 /* partitions per batch (batch / partition) */
#define SP_COORD_MAX_UPLOADS 16                 /* concurrent uploads */
#define SP_COORD_UPLOAD_MAX_BYTES (2ull << 30)  /* sum of an upload's parts */
#define SP_COORD_UPLOADS_MAX_BYTES (4ull << 30) /* reserved by all uploads in progress */
#define SP_COORD_UPLOAD_IDLE_MS 120000      /* an upload without a chunk for this long is dropped */
#define SP_COORD_UPLOAD_WAIT_MS 20          /* the first upload_end waits this long for a check */
#define SP_COORD_MAX_WEIGHTS (256ull << 20) /* sum of layers[i] * layers[i+1] of a job */
#define SP_COORD_CKPT_EVERY_MS 2000         /* training time between checkpoints */
#define SP_COORD_MAX_DATASETS 4096
#define SP_COORD_MAX_WORKER_ERRORS 64 /* worker errors without progress before a job fails */
#define SP_COORD_SPEED_RESULTS 15 /* results the compute speed is the median of */
#define SP_COORD_SPLIT_COST_US 1500 /* what splitting a step costs in wall time: the round
                                       trip of results and apply (measured on a 2-vCPU VM) */
#define SP_COORD_WORKER_SPEEDS 5    /* results a worker's own speed is the median of */
#define SP_COORD_PLAN_DROP 8        /* slowest workers a split step's plan may leave out */
#define SP_COORD_SPEED_STALE 64     /* steps after which a worker's speed is taken as unknown */
#define SP_COORD_RUN_AHEAD_US 10000 /* compute sent ahead to a lone worker (a lone run) */
#define SP_COORD_RUN_MAX 64         /* steps of a lone run at most */
#define SP_COORD_NODE_NS_PER_BYTE 0.7 /* what a second node of a step costs its worker per
                                         byte of its gradient and hits: encoding one more
                                         result and handing it to ZeroMQ (0.3 ms for the 400 KB
                                         of 784-128-10 on a 2-vCPU VM; the transfer overlaps
                                         its next node) */

typedef struct {
    const char *workers_ep; /* ROUTER for workers, e.g. tcp://x:5555 */
    const char *clients_ep; /* ROUTER for clients */
    const char *metrics_ep; /* PUB for metric records */
    const char *state_dir;  /* datasets, jobs, checkpoints */
    uint32_t heartbeat_ms;  /* 10..60000 */
    uint32_t liveness;      /* missed beats before a worker is dead, 1..100 */
    const char *curve_secret;  /* CURVE key pair file; NULL: no encryption */
    const char *curve_workers; /* directory of worker public keys let in (with curve_secret) */
    const char *curve_clients; /* directory of client public keys let in (clients, metrics) */
} sp_coord_config_t;

/* --- workers (workers.c) ------------------------------------------------ */
typedef struct {
    uint32_t id;                    /* >= 1, never reused in a process */
    uint8_t ident[SP_COORD_ID_MAX]; /* ROUTER routing id */
    size_t ident_len;
    char name[SP_NAME_MAX];
    uint32_t threads;
    int alive;             /* 0 once declared dead or gone (BYE) */
    uint64_t last_seen_ms; /* monotonic ms of the last message from it */
    uint64_t joined_ms;
    uint32_t in_flight;                /* partitions of the current step assigned to it */
    uint64_t model_job, model_version; /* model it was last sent (0 = none) */
    uint64_t partitions_done;
    uint64_t samples_done;
    uint64_t compute_us;          /* sum of the compute time it reported */
    double us_recent[SP_COORD_WORKER_SPEEDS]; /* its compute time per sample (us) in the latest
                                                 results of the running job, a ring */
    uint32_t n_speeds;                        /* results noted there (0: speed unknown) */
    uint64_t speed_step;                      /* the run's step of its latest result */
    uint32_t heartbeats_missed;   /* beats it stayed silent, in total */
    uint32_t failures;            /* deaths, refused results, errors it sent */
    uint64_t bytes_out, bytes_in; /* approximate payload bytes sent to / from it */
} sp_worker_t;

typedef struct {
    sp_worker_t *v; /* dead workers stay listed (alive = 0) until the list fills */
    size_t n, cap;
    uint32_t next_id;
} sp_workers_t;

/* --- datasets (datasets.c) ---------------------------------------------- */
typedef struct {
    sp_dataset_info_t info; /* name, task, sizes, checksum, serialized bytes */
    char path[512];         /* <state>/datasets/<name>.spds */
} sp_dsentry_t;

typedef struct {
    sp_dsentry_t *v;
    size_t n, cap;
} sp_datasets_t;

/* --- uploads (uploads.c) ------------------------------------------------ */
typedef enum {
    SP_UPLOAD_RECEIVING = 0, /* chunks come in */
    SP_UPLOAD_CHECKING,      /* its check thread parses and stores it */
    SP_UPLOAD_STORED,        /* stored and registered: kept to answer upload_end again */
    SP_UPLOAD_REFUSED        /* its check failed: kept to answer with the reason */
} sp_upload_state_t;

typedef struct {
    uint64_t id; /* >= 1 */
    sp_msg_upload_begin_t begin;
    uint8_t *part[2];     /* part_size[i] bytes each; freed once parsed */
    uint64_t received[2]; /* bytes received per part */
    uint64_t last_ms;     /* last activity, for the idle timeout */
    sp_upload_state_t state;
    /* The check (uploads.c): from upload_end on, a thread of its own checks
     * the CRCs, parses and writes the file; the event loop registers the
     * dataset once `done` is set and the thread is joined. While it runs, the
     * thread alone touches part, rc, err and entry. */
    const char *state_dir; /* the coordinator's, for the thread */
    pthread_t thread;
    atomic_int done; /* set by the thread as its last act */
    int joined;
    int rc;                /* the check's result */
    char err[SP_TEXT_MAX]; /* why it failed */
    sp_dsentry_t entry;    /* the stored file, when rc == SP_OK */
} sp_upload_t;

typedef struct {
    sp_upload_t *v[SP_COORD_MAX_UPLOADS];
    uint64_t next_id;
} sp_uploads_t;

/* --- jobs (jobs.c, run.c, step.c) --------------------------------------- */
typedef enum {
    SP_JOB_QUEUED = 0,
    SP_JOB_RUNNING,
    SP_JOB_DONE,
    SP_JOB_FAILED,
    SP_JOB_CANCELLED
} sp_job_state_t;

typedef struct {
    uint64_t id;
    sp_msg_train_t def; /* the validated train request (req zeroed) */
    sp_job_state_t state;
    char error[SP_TEXT_MAX];
    uint32_t epoch; /* 1-based epoch in progress; epochs when finished */
    uint64_t step;  /* global steps completed */
    uint64_t samples_seen;
    double loss, accuracy, val_accuracy; /* last completed epoch; NaN before */
    uint64_t n_records;                  /* metric records written */
    char dir[512];                       /* <state>/jobs/<id> */
} sp_job_t;

typedef struct {
    sp_job_t *v; /* ascending id = submission order */
    size_t n, cap;
    uint64_t next_id;
} sp_jobs_t;

typedef enum { SP_PART_PENDING = 0, SP_PART_INFLIGHT, SP_PART_DONE } sp_part_state_t;

/* One partition of the current step. The step is handed out as nodes of the
 * reduction tree (common/reduce.h): parts[i].count > 0 marks a node of count
 * partitions starting at i (its state, worker and result live there); the
 * other partitions of a node have count 0. */
typedef struct {
    sp_part_state_t state;
    uint32_t count;       /* partitions in the node starting here; 0 inside a node */
    uint32_t worker;      /* worker id while in flight (and who computed it, once done) */
    uint32_t plan;        /* worker the node is meant for (sp_plan_assign), 0 = any */
    float *grad;          /* the node's summed gradient, once done */
    uint32_t *hits;
    double loss_sum;
    uint32_t n_correct;
} sp_part_t;

/* A node of the next step, sent ahead to a worker. */
typedef struct {
    uint32_t first, count; /* partitions */
    uint32_t worker;       /* worker id */
} sp_ahead_t;

/* The running job's training state; exists only while a job runs. */
typedef struct {
    uint64_t job_id;   /* the job (looked up by id: jobs.v may move) */
    sp_network_t *net; /* master network, with training state */
    sp_dsentry_t ds;   /* copy of the training set's entry */
    sp_dataset_t val;  /* validation set, loaded; n_samples == 0 when none */
    int classify;
    uint32_t n_samples;
    uint32_t *perm; /* permutation of the current epoch */
    uint32_t epoch; /* 0-based epoch in progress */
    uint64_t step_in_epoch, steps_per_epoch;
    uint64_t global_step;  /* steps completed */
    uint64_t version;      /* model version of the current step, >= 1 (in checkpoints) */
    uint64_t version_base; /* added on the wire: starts << 40, so versions sent after a
                              restart are above any sent before it (worker caches keep
                              the newest version of a job) */
    size_t n_params, n_hits;
    uint8_t *model;         /* model file WITH training state of model_version, made when a */
    size_t model_len;       /* worker first needs it (workers apply steps themselves) */
    uint64_t model_version; /* version `model` holds (0 = none) */
    /* current step */
    sp_plan_step_t shape; /* its samples (batch) and partitions (n_parts) */
    uint32_t n_nodes;
    sp_part_t *parts;
    /* look-ahead: once every live worker holds a node of the current step,
     * each is sent its node of the next step at once; it runs it as soon as
     * its model reaches the next version (its own APPLY or self-applied
     * step), so no worker waits for the coordinator's bookkeeping */
    uint64_t ahead_step;   /* global step the ahead tasks belong to, 0 = none */
    double us_recent[SP_COORD_SPEED_RESULTS]; /* compute time per sample (us) of the latest
                                                 results, a ring */
    uint64_t n_results;    /* results noted in us_recent since the job started here */
    uint32_t n_ahead;      /* nodes sent ahead */
    sp_ahead_t *ahead;     /* n_ahead nodes, by first partition */
    /* a lone run: while the master lags, the solo worker holding the next
     * step whole is sent the whole steps after it too, up to
     * SP_COORD_RUN_AHEAD_US of its compute past the current one, so it can
     * send its results in bursts (docs/COORDINATOR.md, "Lone runs") */
    uint64_t run_end; /* steps ahead_step + 1 .. run_end - 1 are out whole at
                         solo_worker; 0 = none */
    /* accumulators */
    double ep_loss;
    uint64_t ep_correct, ep_samples;
    double rec_loss; /* since the last step record */
    uint64_t rec_correct, rec_samples, rec_steps;
    uint64_t rec_t0_ms;
    uint64_t ep_t0_ms;
    uint64_t ep_samples_t;  /* samples in this process's part of the epoch (rate) */
    uint64_t train_ms_base; /* training time before this process resumed */
    uint64_t t_start_ms;    /* monotonic ms this process started running it */
    uint64_t last_ckpt_ms;
    uint64_t dropped;       /* results refused */
    uint32_t worker_errors; /* errors from workers since the last completed step */
    int growth_full;        /* sp_network_grow said the network is at its limit */
    uint64_t bytes_wire;    /* bytes sent + received for this job (payloads) */
    /* A whole step's worker applies it and returns no gradient, so `net`
     * may lag behind `version`: it is brought up to date by the model the
     * worker sends back after a task with sync set (docs/COORDINATOR.md,
     * "Lone steps"). While it lags, checkpoints keep the last synced state,
     * only solo_worker gets work, and losing that worker's copy sends the
     * run back to its last checkpoint. */
    uint64_t net_version; /* version `net` holds; == version when not lagging */
    uint32_t solo_worker; /* worker holding the steps `net` lacks */
    int sync_pending;     /* the current step's task was sent with sync set */
    int awaiting_sync;    /* the current step is done; its worker's MODEL is awaited */
    int rollback;         /* resume from the last checkpoint at the next tick */
} sp_run_t;

/* --- the root object ----------------------------------------------------- */
typedef struct {
    sp_coord_config_t cfg;
    void *zctx;
    sp_zap_t *zap; /* ZAP handler thread when CURVE is on, else NULL */
    void *workers_sock, *clients_sock, *metrics_sock;
    sp_workers_t workers;
    sp_datasets_t datasets;
    sp_uploads_t uploads;
    sp_jobs_t jobs;
    sp_run_t *run;               /* NULL when no job runs */
    sp_store_writer_t *writer;   /* checkpoints and job state files, off the loop */
    volatile sig_atomic_t *stop; /* set by the signal handler */
    uint64_t bad_frames;         /* malformed messages received */
    struct {
        uint8_t ident[SP_COORD_ID_MAX];
        size_t ident_len;
        uint64_t last_ms;
    } badlog[32]; /* rate limit of "bad frame" log lines per peer */
    unsigned badlog_next;
} sp_coord_t;

/* Monotonic clock in milliseconds. */
uint64_t sp_coord_now_ms(void);

/* Opens the state directory (loading datasets and jobs) and binds the three
 * sockets. On failure logs why, releases what it made and returns < 0. */
int sp_coord_init(sp_coord_t *c, const sp_coord_config_t *cfg, volatile sig_atomic_t *stop);
/* Runs until *stop is set; then checkpoints the running job and says BYE to
 * the workers. Returns SP_OK or an environment error. */
int sp_coord_run(sp_coord_t *c);
/* Releases everything c owns (sockets, context, memory). */
void sp_coord_fini(sp_coord_t *c);

/* Sends m to a peer of sock; logs (rate-limited) and returns < 0 on failure. */
int sp_coord_send(sp_coord_t *c, void *sock, const uint8_t *id, size_t id_len, const sp_msg_t *m);
/* Replies ERROR (rc: an sp_rc_t) to a peer. */
void sp_coord_reply_error(sp_coord_t *c, void *sock, const uint8_t *id, size_t id_len, int rc,
                          uint64_t req, uint32_t ref_type, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
/* Logs a refused message from a peer, at most once a second per peer. */
void sp_coord_log_bad(sp_coord_t *c, const uint8_t *id, size_t id_len, const char *what);

/* --- workers.c ----------------------------------------------------------- */
/* Frees the registry. */
void sp_workers_fini(sp_workers_t *w);
/* The live worker behind a routing id, or NULL (borrowed; valid until the
 * registry changes). */
sp_worker_t *sp_workers_find_ident(sp_workers_t *w, const uint8_t *id, size_t id_len);
/* A worker by id, dead or alive, or NULL (borrowed). */
sp_worker_t *sp_workers_find(sp_workers_t *w, uint32_t worker_id);
/* Handles one decoded message from the worker socket (HELLO, HEARTBEAT, BYE,
 * DATA_REQ, RESULT, ERROR); anything else gets an ERROR reply. */
void sp_workers_handle(sp_coord_t *c, const uint8_t *id, size_t id_len, sp_msg_t *m);
/* Heartbeat tick: beats to every live worker, declares silent ones dead. */
void sp_workers_tick(sp_coord_t *c, uint64_t now_ms);
/* Declares a worker dead: its partitions return to the queue. */
void sp_workers_kill(sp_coord_t *c, sp_worker_t *wk, const char *why);
/* Says BYE to every live worker (shutdown). */
void sp_workers_bye(sp_coord_t *c, const char *reason);
/* WORKERS reply. */
void sp_workers_reply_list(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req);

/* --- datasets.c ---------------------------------------------------------- */
/* Loads the info of every <state>/datasets/<name>.spds (corrupt files are
 * logged and skipped, never deleted). */
int sp_datasets_load(sp_coord_t *c);
/* Frees the registry (not the files). */
void sp_datasets_fini(sp_datasets_t *d);
/* The entry of a stored dataset, or NULL (borrowed). */
const sp_dsentry_t *sp_datasets_find(const sp_datasets_t *d, const char *name);
/* Adds an entry (the file is already stored). */
int sp_datasets_add(sp_datasets_t *d, const sp_dsentry_t *e);
/* Loads and deserializes a stored dataset; checks its checksum. */
int sp_datasets_read(const sp_dsentry_t *e, sp_dataset_t *out, char *err, size_t errlen);
/* Serializes ds and writes it durably as <state_dir>/datasets/<name>.spds;
 * fills ent (path and info) for sp_datasets_add. Touches no coordinator
 * state, so an upload's check thread calls it. SP_E_IO when the file cannot
 * be written (then there is none). */
int sp_datasets_write(const char *state_dir, const char *name, const sp_dataset_t *ds,
                      sp_dsentry_t *ent, char *err, size_t errlen);
/* DATASETS reply. */
void sp_datasets_reply_list(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req);
/* DATA_REQ from a worker: one DATA_CHUNK reply. */
void sp_datasets_serve(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_data_req_t *r);

/* --- uploads.c ----------------------------------------------------------- */
/* Drops every upload, after waiting for the checks that run. */
void sp_uploads_fini(sp_uploads_t *u);
/* UPLOAD_BEGIN, UPLOAD_CHUNK, UPLOAD_END from a client: each answers with
 * R_UPLOAD or ERROR (docs/COORDINATOR.md, "Uploads"). */
void sp_uploads_begin(sp_coord_t *c, const uint8_t *id, size_t id_len,
                      const sp_msg_upload_begin_t *b);
void sp_uploads_chunk(sp_coord_t *c, const uint8_t *id, size_t id_len,
                      const sp_msg_upload_chunk_t *ch);
void sp_uploads_end(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_upload_end_t *e);
/* Registers the datasets whose checks are over, and drops uploads idle for
 * longer than SP_COORD_UPLOAD_IDLE_MS (a finished one after as long). */
void sp_uploads_expire(sp_coord_t *c, uint64_t now_ms);

/* --- jobs.c (the job table, its files, client requests) ------------------ */
/* Loads every job of <state>/jobs; a job that was running is queued to
 * resume from its checkpoint. */
int sp_jobs_load(sp_coord_t *c);
/* Frees the running job and the job list (nothing is written). */
void sp_jobs_fini(sp_coord_t *c);
/* A job by id, or NULL (borrowed; valid until a job is added). */
sp_job_t *sp_jobs_find(sp_jobs_t *j, uint64_t id);
/* "queued", "running", "done", "failed" or "cancelled". */
const char *sp_jobs_state_name(sp_job_state_t s);
/* Client requests: TRAIN (validate, store durably, R_JOB), STATUS (one job
 * or, for 0, the newest SP_MAX_LIST), MODEL_GET, CANCEL; ERROR otherwise. */
void sp_jobs_train(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_train_t *t);
void sp_jobs_reply_status(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req,
                          uint64_t job);
void sp_jobs_model_get(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req, uint64_t job);
void sp_jobs_cancel(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req, uint64_t job);

/* --- run.c (the running job: start, resume, checkpoints, end) ------------ */
/* Starts the next queued job when none runs, dispatches pending partitions
 * to idle workers, and writes a checkpoint when one is due. */
void sp_jobs_tick(sp_coord_t *c, uint64_t now_ms);
/* Checkpoints the running job now (shutdown). */
void sp_jobs_checkpoint(sp_coord_t *c);

/* --- step.c (the running job's steps: dispatch, results, reduce) --------- */
/* A RESULT from a registered worker. */
void sp_jobs_result(sp_coord_t *c, sp_worker_t *wk, sp_msg_result_t *r);
/* Returns a worker's in-flight partitions to the queue (worker died or left). */
void sp_jobs_requeue(sp_coord_t *c, sp_worker_t *wk);
/* A worker reported that it could not do what it was sent (ERROR): its
 * partitions return to the queue; after SP_COORD_MAX_WORKER_ERRORS such
 * errors without a completed step the job fails with the last message. */
void sp_jobs_worker_error(sp_coord_t *c, sp_worker_t *wk, const sp_msg_error_t *e);
/* A MODEL from a worker: its copy after a task with sync set. */
void sp_jobs_worker_model(sp_coord_t *c, sp_worker_t *wk, const sp_msg_model_t *mm);

/* --- metrics.c ------------------------------------------------------------ */
/* Appends a record (index assigned here) to the job's metrics files and
 * publishes it on the PUB socket under the topic "job/<id>". */
int sp_metrics_record(sp_coord_t *c, sp_job_t *job, sp_metric_t *rec);
/* METRICS reply: records index >= since, at most SP_MAX_LIST. */
void sp_metrics_reply(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req, uint64_t job,
                      uint64_t since);
/* Cuts a job's metrics files to n records (resume from a checkpoint). */
int sp_metrics_truncate(sp_job_t *job, uint64_t n);
/* Number of records in a job's metrics files. */
uint64_t sp_metrics_count(const sp_job_t *job);

#endif
