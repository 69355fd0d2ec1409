/* workers: the registry of worker processes and their liveness (the Paranoid
 * Pirate pattern: heartbeats both ways, a worker silent for `liveness` beats
 * is dead). Invariant: only a worker with alive == 1 holds partitions; a
 * message from an identity that is not a live registered worker changes
 * nothing but gets ERROR "not registered" so that the worker says HELLO. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "coordinator/coordinator.h"

#define S_MAX_WORKERS 4096 /* registry entries kept, dead ones included */

void sp_workers_fini(sp_workers_t *w)
{
    free(w->v);
    memset(w, 0, sizeof *w);
}

sp_worker_t *sp_workers_find_ident(sp_workers_t *w, const uint8_t *id, size_t id_len)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->v[i].alive && w->v[i].ident_len == id_len &&
            memcmp(w->v[i].ident, id, id_len) == 0) {
            return &w->v[i];
        }
    }
    return NULL;
}

sp_worker_t *sp_workers_find(sp_workers_t *w, uint32_t worker_id)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->v[i].id == worker_id) {
            return &w->v[i];
        }
    }
    return NULL;
}

/* Makes room for one more entry: grows the array, or forgets the oldest dead
 * worker when the registry is full. NULL when every entry is alive. */
static sp_worker_t *s_new_entry(sp_workers_t *w)
{
    if (w->n == w->cap && w->cap < S_MAX_WORKERS) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        sp_worker_t *v = realloc(w->v, cap * sizeof *v);
        if (v != NULL) {
            w->v = v;
            w->cap = cap;
        }
    }
    if (w->n < w->cap) {
        return &w->v[w->n++];
    }
    for (size_t i = 0; i < w->n; i++) {
        if (!w->v[i].alive) {
            memmove(&w->v[i], &w->v[i + 1], (w->n - i - 1) * sizeof *w->v);
            return &w->v[w->n - 1];
        }
    }
    return NULL;
}

void sp_workers_kill(sp_coord_t *c, sp_worker_t *wk, const char *why)
{
    if (!wk->alive) {
        return;
    }
    sp_log(SP_LOG_WARN, "worker %u (%s) is gone: %s", wk->id, wk->name, why);
    sp_jobs_requeue(c, wk);
    wk->alive = 0;
    wk->in_flight = 0;
    wk->model_job = wk->model_version = 0;
}

static void s_hello(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_hello_t *h)
{
    sp_worker_t *old = sp_workers_find_ident(&c->workers, id, id_len);
    if (old != NULL) {
        /* Same connection says HELLO again: it restarted its session; what
         * it held is lost. */
        sp_workers_kill(c, old, "registered again");
    }
    sp_worker_t *wk = s_new_entry(&c->workers);
    if (wk == NULL) {
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_STATE, 0, SP_MSG_HELLO,
                             "too many workers (%d)", S_MAX_WORKERS);
        return;
    }
    memset(wk, 0, sizeof *wk);
    wk->id = ++c->workers.next_id;
    memcpy(wk->ident, id, id_len);
    wk->ident_len = id_len;
    snprintf(wk->name, sizeof wk->name, "%s", h->name);
    wk->threads = h->threads;
    wk->alive = 1;
    wk->last_seen_ms = wk->joined_ms = sp_coord_now_ms();
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_WELCOME);
    m.u.welcome.worker_id = wk->id;
    m.u.welcome.heartbeat_ms = c->cfg.heartbeat_ms;
    m.u.welcome.liveness = c->cfg.liveness;
    sp_log(SP_LOG_INFO, "worker %u (%s, %u threads) joined", wk->id, wk->name, wk->threads);
    if (sp_coord_send(c, c->workers_sock, id, id_len, &m) != SP_OK) {
        sp_workers_kill(c, wk, "welcome could not be sent");
    }
}

void sp_workers_handle(sp_coord_t *c, const uint8_t *id, size_t id_len, sp_msg_t *m)
{
    if (m->type == SP_MSG_HELLO) {
        s_hello(c, id, id_len, &m->u.hello);
        return;
    }
    sp_worker_t *wk = sp_workers_find_ident(&c->workers, id, id_len);
    if (wk == NULL) {
        if (m->type == SP_MSG_BYE || m->type == SP_MSG_ERROR) {
            return; /* nothing to answer: it is leaving or complaining */
        }
        sp_coord_log_bad(c, id, id_len, "message from an unregistered worker");
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_STATE, 0, (uint32_t)m->type,
                             "not registered: send hello first");
        return;
    }
    wk->last_seen_ms = sp_coord_now_ms();
    switch (m->type) {
    case SP_MSG_HEARTBEAT:
        break;
    case SP_MSG_BYE:
        sp_workers_kill(c, wk, m->u.bye.reason[0] ? m->u.bye.reason : "said bye");
        break;
    case SP_MSG_DATA_REQ:
        sp_datasets_serve(c, id, id_len, &m->u.data_req);
        break;
    case SP_MSG_RESULT:
        sp_jobs_result(c, wk, &m->u.result);
        break;
    case SP_MSG_ERROR:
        /* The worker could not do what it was sent: give its partitions to
         * others (or to it again at the next dispatch). */
        wk->failures++;
        sp_coord_log_bad(c, id, id_len, m->u.error.message);
        wk->model_job = wk->model_version = 0;
        sp_jobs_worker_error(c, wk, &m->u.error);
        break;
    case SP_MSG_MODEL:
        sp_jobs_worker_model(c, wk, &m->u.model);
        break;
    default:
        sp_coord_log_bad(c, id, id_len, "unexpected message type on the worker socket");
        sp_coord_reply_error(c, c->workers_sock, id, id_len, SP_E_INPUT, 0, (uint32_t)m->type,
                             "message type '%s' is not accepted from a worker",
                             sp_msg_type_name((uint32_t)m->type));
        break;
    }
}

void sp_workers_tick(sp_coord_t *c, uint64_t now_ms)
{
    uint64_t beat = c->cfg.heartbeat_ms;
    for (size_t i = 0; i < c->workers.n; i++) {
        sp_worker_t *wk = &c->workers.v[i];
        if (!wk->alive) {
            continue;
        }
        uint64_t silent = now_ms > wk->last_seen_ms ? now_ms - wk->last_seen_ms : 0;
        if (silent > beat * c->cfg.liveness) {
            wk->failures++;
            sp_workers_kill(c, wk, "missed its heartbeats");
            continue;
        }
        if (silent > beat) {
            wk->heartbeats_missed++;
        }
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_HEARTBEAT);
        if (sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m) != SP_OK) {
            wk->failures++;
            sp_workers_kill(c, wk, "unreachable");
        }
    }
}

void sp_workers_bye(sp_coord_t *c, const char *reason)
{
    for (size_t i = 0; i < c->workers.n; i++) {
        sp_worker_t *wk = &c->workers.v[i];
        if (!wk->alive) {
            continue;
        }
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_BYE);
        snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "%s", reason);
        (void)sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m);
    }
}

void sp_workers_reply_list(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req)
{
    size_t n = c->workers.n < SP_MAX_LIST ? c->workers.n : SP_MAX_LIST;
    size_t first = c->workers.n - n; /* the newest SP_MAX_LIST entries */
    sp_worker_info_t *list = calloc(n > 0 ? n : 1, sizeof *list);
    if (list == NULL) {
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_NOMEM, req, SP_MSG_WORKERS,
                             "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const sp_worker_t *wk = &c->workers.v[first + i];
        sp_worker_info_t *o = &list[i];
        o->id = wk->id;
        snprintf(o->name, sizeof o->name, "%s", wk->name);
        o->threads = wk->threads;
        o->alive = wk->alive;
        o->partitions_done = wk->partitions_done;
        o->samples_per_s =
            wk->compute_us > 0 ? (double)wk->samples_done * 1e6 / (double)wk->compute_us : 0.0;
        o->heartbeats_missed = wk->heartbeats_missed;
        o->failures = wk->failures;
        o->bytes_in = wk->bytes_in;
        o->bytes_out = wk->bytes_out;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_WORKERS);
    m.u.r_workers.req = req;
    m.u.r_workers.n = (uint32_t)n;
    m.u.r_workers.workers = list;
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
    free(list);
}
