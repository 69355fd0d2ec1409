/* cluster_util: process and socket helpers for the end-to-end tests. Starts
 * the real programs ($SPATIUM_BIN/spatium-coordinator, spatium-worker,
 * spatium) in a private mkdtemp directory with ipc:// endpoints, talks to the
 * coordinator through the proto codec on a DEALER socket, and bounds every
 * wait. Invariant: every process a cluster starts is stopped (SIGTERM, then
 * SIGKILL) and its directory removed by sp_cluster_fini. */
#ifndef SP_TESTS_CLUSTER_UTIL_H
#define SP_TESTS_CLUSTER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/child.h"
#include "proto/messages.h"

#define SP_CU_MAX_WORKERS 8

typedef struct {
    char dir[128];                     /* temporary directory of this cluster */
    char state[192];                   /* coordinator state directory */
    char wep[192], cep[192], mep[192]; /* worker, client, metrics endpoints */
    int heartbeat_ms, liveness;
    pid_t coord;                      /* 0 when not running */
    int coord_starts;                 /* log file numbering */
    pid_t workers[SP_CU_MAX_WORKERS]; /* 0 = slot free */
    int unclean;                      /* processes stopped by SIGTERM that did not exit 0 */
    void *zctx, *dealer;              /* raw client of the coordinator */
    uint64_t req;
    int curve;               /* 1: the coordinator runs with CURVE keys from keys/ */
    char keys[192];          /* <dir>/keys: coord, worker, client, stranger key pairs */
    char worker_key[256];    /* key pair file the next sp_cluster_add_worker uses */
} sp_cluster_t;

/* Full path of a program of the build ($SPATIUM_BIN, else ../bin next to
 * this test binary). Returns 0, or -1 when it does not exist. */
int sp_cu_bin(const char *prog, char *out, size_t outlen);
/* Starts argv[0] (a full path) with stdin from /dev/null and stdout+stderr
 * appended to log_path (or /dev/null); returns its pid or -1. */
pid_t sp_cu_spawn(char *const argv[], const char *log_path);
/* SIGKILL and reap. */
void sp_cu_kill9(pid_t pid);
/* Runs argv to completion (at most timeout_ms; killed after that), stdout
 * into out (NUL-terminated). Returns the exit code, or -1 on timeout or crash. */
int sp_cu_run(char *const argv[], int timeout_ms, char *out, size_t outlen);
/* Milliseconds of a monotonic clock. */
uint64_t sp_cu_now_ms(void);
/* Sleeps a few milliseconds (the step of a bounded polling loop). */
void sp_cu_nap(int ms);

/* Temporary directory and endpoints; nothing started yet. */
int sp_cluster_init(sp_cluster_t *cl, int heartbeat_ms, int liveness);
/* Turns CURVE on for this cluster, before the coordinator starts: makes the
 * key pairs keys/{coord,worker,client,stranger}.key_secret, lets worker.key
 * and client.key in (keys/workers/, keys/clients/; stranger.key is in
 * neither), and makes the raw client a CURVE client with client's pair.
 * Workers start with worker_key (keys/worker.key_secret). 0 or -1. */
int sp_cluster_use_curve(sp_cluster_t *cl);
/* Starts the coordinator and waits (bounded) until it answers. */
int sp_cluster_start_coord(sp_cluster_t *cl);
/* Starts a worker with `threads` OpenMP threads; returns its slot or -1. */
int sp_cluster_add_worker(sp_cluster_t *cl, int threads);
/* Stops a worker: SIGTERM (graceful, BYE) or SIGKILL. */
void sp_cluster_stop_worker(sp_cluster_t *cl, int slot, int sig);
/* Waits (bounded) until the coordinator lists `n` live workers. */
int sp_cluster_wait_workers(sp_cluster_t *cl, int n, int timeout_ms);
/* Stops everything, closes the client socket, removes the directory (kept,
 * like the logs, when SPATIUM_KEEP_TMP is set). Returns how many processes
 * did not exit cleanly (status 0) on SIGTERM over the cluster's life, e.g.
 * after a sanitizer report. */
int sp_cluster_fini(sp_cluster_t *cl);
/* Prints the tail of every log of the cluster (on failure). */
void sp_cluster_dump_logs(const sp_cluster_t *cl);

/* Sends req (its req id is set here) and waits for the matching reply. An
 * ERROR reply is returned too (rep->type == SP_MSG_ERROR). 0, or -1 on
 * timeout. The caller finis rep. */
int sp_cluster_call(sp_cluster_t *cl, sp_msg_t *req, sp_msg_t *rep, int timeout_ms);
/* Status of one job; 0 or -1. */
int sp_cluster_status(sp_cluster_t *cl, uint64_t job, sp_job_status_t *out);
/* Polls a job until it is done/failed/cancelled (or, when min_samples > 0,
 * until it has seen that many samples while running). 0, or -1 on timeout. */
int sp_cluster_wait_job(sp_cluster_t *cl, uint64_t job, uint64_t min_samples, int timeout_ms,
                        sp_job_status_t *out);
/* Number of stored datasets (-1 on failure). */
int sp_cluster_n_datasets(sp_cluster_t *cl);
/* Sends upload_begin and every chunk of parts (chunk_bytes each), not
 * upload_end; 0 and the upload's id, or -1 and the error text in err. */
int sp_cluster_upload_send(sp_cluster_t *cl, const char *name, const char *format, const char *task,
                           const uint8_t *const parts[], const size_t sizes[], int n_parts,
                           size_t chunk_bytes, uint64_t *upload, char *err, size_t errlen);
/* Uploads parts as one dataset with the protocol (chunk_bytes per chunk),
 * asking again while upload_end is answered "still checking" (at most a
 * minute). 0 when stored; otherwise -1 and the coordinator's error text. */
int sp_cluster_upload(sp_cluster_t *cl, const char *name, const char *format, const char *task,
                      const uint8_t *const parts[], const size_t sizes[], int n_parts,
                      size_t chunk_bytes, char *err, size_t errlen);
/* Submits a train request; 0 and *job, or -1 and err. */
int sp_cluster_train(sp_cluster_t *cl, const sp_msg_train_t *t, uint64_t *job, char *err,
                     size_t errlen);
/* Fetches a job's model (malloc'ed into *buf). 0 or -1. */
int sp_cluster_model(sp_cluster_t *cl, uint64_t job, uint8_t **buf, size_t *len);
/* Reads a whole file (malloc'ed). 0 or -1. */
int sp_cu_read_file(const char *path, uint8_t **buf, size_t *len);
/* Writes a file. 0 or -1. */
int sp_cu_write_file(const char *path, const void *data, size_t len);

#endif
