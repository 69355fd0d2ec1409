/* pulse: a heartbeat thread for the time a worker spends computing.
 * Invariant: the pulse thread touches the socket only while p->sock is set,
 * and only with p->lock held; sp_pulse_end clears p->sock under the lock, so
 * the main thread gets the socket back with no send in progress. */
#include "worker/pulse.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/error.h"
#include "proto/messages.h"

static void s_deadline(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *s_run(void *arg)
{
    sp_pulse_t *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        if (p->sock == NULL) {
            pthread_cond_wait(&p->wake, &p->lock);
            continue;
        }
        /* A computation started: beat after each full interval it lasts. */
        struct timespec due;
        s_deadline(&due, p->heartbeat_ms);
        int rc = 0;
        while (!p->stop && p->sock != NULL && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&p->wake, &p->lock, &due);
        }
        if (!p->stop && p->sock != NULL) {
            sp_msg_t m;
            sp_msg_init(&m, SP_MSG_HEARTBEAT);
            if (sp_msg_send(p->sock, NULL, 0, &m) == SP_OK) {
                p->beats++;
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sp_pulse_start(sp_pulse_t *p)
{
    memset(p, 0, sizeof *p);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&p->thread, NULL, s_run, p) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        return SP_E_IO;
    }
    p->started = 1;
    return SP_OK;
}

void sp_pulse_stop(sp_pulse_t *p)
{
    if (!p->started) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    p->sock = NULL;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    p->started = 0;
}

void sp_pulse_begin(sp_pulse_t *p, void *sock, uint32_t heartbeat_ms)
{
    if (!p->started || sock == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->sock = sock;
    p->heartbeat_ms = heartbeat_ms < 10 ? 10 : heartbeat_ms;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void sp_pulse_end(sp_pulse_t *p)
{
    if (!p->started) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->sock = NULL;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}
