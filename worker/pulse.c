/* pulse: a heartbeat thread for the time a worker spends computing.
 * Invariant: the pulse thread touches the socket only while p->sock is set,
 * and only with p->lock held; sp_pulse_end clears p->sock under the lock, so
 * the main thread gets the socket back with no send in progress. */
#include "worker/pulse.h"

#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/error.h"
#include "proto/messages.h"

static uint64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec s_at(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

/* The thread is never woken to start or end a computation (a worker starts
 * one per task, hundreds a second, and each wake-up would take a core from
 * the computation it is there for): it sleeps one interval at a time and,
 * when it wakes, beats if the computation has lasted a full interval since
 * it began or since the last beat. */
static void *s_run(void *arg)
{
    sp_pulse_t *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        uint64_t now = s_now_ns(), every = (uint64_t)p->heartbeat_ms * 1000000u;
        if (p->sock == NULL) {
            /* idle: a computation that begins while this sleeps is seen
             * within one interval of its start, in time for its first beat */
            struct timespec due = s_at(now + (every ? every : 1000000000u));
            pthread_cond_timedwait(&p->wake, &p->lock, &due);
            continue;
        }
        if (now - p->since_ns >= every) {
            sp_msg_t m;
            sp_msg_init(&m, SP_MSG_HEARTBEAT);
            if (sp_msg_send(p->sock, NULL, 0, &m) == SP_OK) {
                p->beats++;
            }
            p->since_ns = now;
            continue;
        }
        struct timespec due = s_at(p->since_ns + every);
        pthread_cond_timedwait(&p->wake, &p->lock, &due);
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
    uint32_t every = heartbeat_ms < 10 ? 10 : heartbeat_ms;
    p->sock = sock;
    p->since_ns = s_now_ns();
    if (p->heartbeat_ms != every) {
        /* its sleep may be longer than the new interval: only then wake it */
        p->heartbeat_ms = every;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
}

void sp_pulse_end(sp_pulse_t *p)
{
    if (!p->started) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->sock = NULL;
    pthread_mutex_unlock(&p->lock);
}
