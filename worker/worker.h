/* worker: the Spatium worker's connection and task loop (the Paranoid
 * Pirate worker of the ZeroMQ guide). It registers with HELLO, heartbeats
 * every heartbeat_ms, and when the coordinator has been silent for liveness
 * beats it drops the socket and registers again on a new one, backing off
 * exponentially up to SP_WORKER_BACKOFF_MAX_MS. Tasks are computed one at a
 * time between polls, so heartbeats keep flowing while it trains. */
#ifndef SP_WORKER_WORKER_H
#define SP_WORKER_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "proto/curve.h"
#include "proto/messages.h"

#define SP_WORKER_DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"
#define SP_WORKER_BACKOFF_MIN_MS 250
#define SP_WORKER_BACKOFF_MAX_MS 4000
#define SP_WORKER_HELLO_WAIT_MS 2000 /* plus the backoff: wait for WELCOME, then reconnect */
#define SP_WORKER_MAX_QUEUED 4096    /* tasks waiting for their model or dataset */
#define SP_WORKER_MAX_HELD 64        /* results of whole steps held to go out together */
/* After sending a split step's gradient, a worker with nothing to run polls
 * without sleeping (yielding its core to any thread that wants it) for up to
 * this long: the APPLY comes back within a few ms, and a worker woken from
 * sleep on a VM whose idle vCPUs halt took longer to start the next step
 * (docs/PERFORMANCE.md, "A worker that does not sleep for its APPLY"). */
#define SP_WORKER_APPLY_SPIN_US 3000
#define SP_WORKER_HANDSHAKE_LOG_MS 10000 /* a failing security handshake is logged this often */
#define SP_WORKER_HANDSHAKE_TRIES 3      /* failed handshakes without a reason before one is logged */

typedef struct {
    char endpoint[512];     /* coordinator's worker endpoint */
    char name[SP_NAME_MAX]; /* reported in HELLO */
    uint32_t threads;       /* OpenMP threads, 1..1024 */
    int curve;                   /* 1: talk CURVE with the two keys below */
    sp_curve_cert_t curve_own;    /* this worker's key pair */
    sp_curve_cert_t curve_server; /* the coordinator's public key */
} sp_worker_config_t;

typedef struct sp_worker sp_worker_t;

/* Creates a worker; *stop is polled: when it becomes non-zero the worker
 * says BYE and sp_worker_run returns. NULL on no memory or no ZeroMQ. */
sp_worker_t *sp_worker_new(const sp_worker_config_t *cfg, volatile sig_atomic_t *stop);
/* Runs until *stop: registers, computes tasks, reconnects as needed.
 * Returns SP_OK after a clean stop. */
int sp_worker_run(sp_worker_t *w);
void sp_worker_destroy(sp_worker_t **wp);

#endif
