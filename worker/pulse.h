/* pulse: keeps a worker's heartbeats flowing while it computes a partition.
 * The worker's DEALER socket belongs to the main thread except between
 * sp_pulse_begin and sp_pulse_end, when the main thread computes and does not
 * touch it; the pulse thread then sends a HEARTBEAT every heartbeat_ms. The
 * hand-over goes through a mutex, which gives ZeroMQ the full memory barrier
 * it asks for when a socket moves between threads. So a partition that takes
 * longer than liveness beats does not make the coordinator think the worker
 * died. */
#ifndef SP_WORKER_PULSE_H
#define SP_WORKER_PULSE_H

#include <pthread.h>
#include <stdint.h>

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;  /* guards every field below and the socket's hand-over */
    pthread_cond_t wake;
    void *sock;            /* socket lent to the pulse thread, NULL when not computing */
    uint32_t heartbeat_ms; /* interval while computing, 10..60000 (0 before the first) */
    uint64_t since_ns;     /* CLOCK_MONOTONIC of the computation's start or its last beat */
    uint64_t beats;        /* heartbeats sent while computing (for tests and logs) */
    int stop;
    int started;
} sp_pulse_t;

/* Starts the pulse thread (idle until sp_pulse_begin). SP_E_IO if the thread
 * cannot be created; the worker then simply runs without it. */
int sp_pulse_start(sp_pulse_t *p);
/* Stops and joins the thread; safe on a pulse that never started. */
void sp_pulse_stop(sp_pulse_t *p);
/* Lends sock to the pulse thread for the duration of a computation. The
 * caller must not use sock until sp_pulse_end returns. */
void sp_pulse_begin(sp_pulse_t *p, void *sock, uint32_t heartbeat_ms);
/* Takes the socket back; returns after any heartbeat in progress is sent. */
void sp_pulse_end(sp_pulse_t *p);

#endif
