/* coordinator: the root object and its event loop. One thread polls the
 * worker ROUTER and the client ROUTER, hands each strictly decoded message
 * to its module, sends heartbeats every heartbeat_ms and lets the running
 * job dispatch work. Invariant: a frame that fails to decode changes
 * nothing; it is answered with an ERROR when its sender is known and logged
 * at most once a second per peer. */
#include "coordinator/coordinator.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#include "common/error.h"
#include "coordinator/store.h"
#include "proto/curve.h"

#define S_DRAIN_MAX 256 /* messages taken from one socket before looking at the other */

uint64_t sp_coord_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sp_coord_log_bad(sp_coord_t *c, const uint8_t *id, size_t id_len, const char *what)
{
    uint64_t now = sp_coord_now_ms();
    unsigned slot = c->badlog_next;
    for (unsigned i = 0; i < sizeof c->badlog / sizeof c->badlog[0]; i++) {
        if (c->badlog[i].ident_len == id_len && memcmp(c->badlog[i].ident, id, id_len) == 0) {
            slot = i;
            if (now - c->badlog[i].last_ms < 1000) {
                return;
            }
            break;
        }
    }
    if (slot == c->badlog_next) {
        c->badlog_next = (c->badlog_next + 1) % (sizeof c->badlog / sizeof c->badlog[0]);
    }
    memcpy(c->badlog[slot].ident, id, id_len);
    c->badlog[slot].ident_len = id_len;
    c->badlog[slot].last_ms = now;
    char hex[17] = "";
    for (size_t i = 0; i < id_len && i < 8; i++) {
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    }
    sp_log(SP_LOG_WARN, "peer %s: %s (%llu refused so far)", hex, what,
           (unsigned long long)c->bad_frames);
}

int sp_coord_send(sp_coord_t *c, void *sock, const uint8_t *id, size_t id_len, const sp_msg_t *m)
{
    int rc = sp_msg_send(sock, id, id_len, m);
    if (rc != SP_OK) {
        char what[96];
        snprintf(what, sizeof what, "cannot send %s (%s)", sp_msg_type_name((uint32_t)m->type),
                 rc == SP_E_IO ? zmq_strerror(errno) : sp_strerror(rc));
        sp_coord_log_bad(c, id, id_len, what);
    }
    return rc;
}

void sp_coord_reply_error(sp_coord_t *c, void *sock, const uint8_t *id, size_t id_len, int rc,
                          uint64_t req, uint32_t ref_type, const char *fmt, ...)
{
    char text[SP_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (sp_msg_send_error(sock, id, id_len, rc, req, ref_type, "%s", text) != SP_OK) {
        sp_coord_log_bad(c, id, id_len, "cannot send an error reply");
    }
}

/* A bound socket; a CURVE server in domain when key is not NULL. */
static void *s_socket(sp_coord_t *c, int type, const char *ep, const sp_curve_cert_t *key,
                      const char *domain)
{
    void *s = zmq_socket(c->zctx, type);
    if (s == NULL) {
        sp_log(SP_LOG_ERROR, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    if (key != NULL && sp_curve_server(s, key, domain) != SP_OK) {
        sp_log(SP_LOG_ERROR, "cannot make %s a CURVE server: %s", ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (sp_sock_configure(s, type) != SP_OK || zmq_bind(s, ep) != 0) {
        sp_log(SP_LOG_ERROR, "cannot bind %s: %s", ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Loads the coordinator's key pair into *key and checks the allow-list
 * directories, before anything is created. */
static int s_curve_check(const sp_coord_config_t *cfg, sp_curve_cert_t *key)
{
    char err[512];
    if (!sp_curve_available()) {
        sp_log(SP_LOG_ERROR, "--curve-secret: this libzmq was built without CURVE");
        return SP_E_UNSUPPORTED;
    }
    if (sp_curve_load(cfg->curve_secret, 1, key, err, sizeof err) != SP_OK) {
        sp_log(SP_LOG_ERROR, "--curve-secret: %s", err);
        return SP_E_INPUT;
    }
    const char *dirs[2] = {cfg->curve_workers, cfg->curve_clients};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (dirs[i] == NULL || stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            sp_log(SP_LOG_ERROR, "%s: '%s' is not a directory",
                   i == 0 ? "--curve-workers" : "--curve-clients", dirs[i] ? dirs[i] : "");
            return SP_E_INPUT;
        }
    }
    return SP_OK;
}

/* Starts the ZAP handler; it must listen before any socket is bound. */
static int s_curve_start(sp_coord_t *c, const sp_curve_cert_t *key)
{
    const sp_coord_config_t *cfg = &c->cfg;
    const sp_zap_rule_t rules[] = {{"workers", cfg->curve_workers},
                                   {"clients", cfg->curve_clients},
                                   {"metrics", cfg->curve_clients}};
    c->zap = sp_zap_new(c->zctx, rules, sizeof rules / sizeof rules[0]);
    if (c->zap == NULL) {
        return SP_E_IO;
    }
    sp_log(SP_LOG_INFO, "CURVE on: public key %s; workers from %s, clients from %s",
           key->public_z85, cfg->curve_workers, cfg->curve_clients);
    return SP_OK;
}

int sp_coord_init(sp_coord_t *c, const sp_coord_config_t *cfg, volatile sig_atomic_t *stop)
{
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->stop = stop;
    sp_curve_cert_t key;
    const sp_curve_cert_t *kp = NULL;
    if (cfg->curve_secret != NULL) {
        int rc = s_curve_check(cfg, &key);
        if (rc != SP_OK) {
            return rc;
        }
        kp = &key;
    }
    if (sp_store_mkdirs(cfg->state_dir) != SP_OK) {
        sp_log(SP_LOG_ERROR, "cannot create the state directory %s: %s", cfg->state_dir,
               strerror(errno));
        return SP_E_IO;
    }
    sp_store_clean_tmp(cfg->state_dir);
    c->writer = sp_store_writer_new();
    if (c->writer == NULL) {
        sp_log(SP_LOG_ERROR, "cannot start the state writer thread");
        return SP_E_NOMEM;
    }
    if (sp_datasets_load(c) != SP_OK || sp_jobs_load(c) != SP_OK) {
        sp_coord_fini(c);
        return SP_E_IO;
    }
    c->zctx = zmq_ctx_new();
    if (c->zctx == NULL) {
        sp_coord_fini(c);
        return SP_E_IO;
    }
    if (kp != NULL && s_curve_start(c, kp) != SP_OK) {
        sp_coord_fini(c);
        return SP_E_IO;
    }
    c->workers_sock = s_socket(c, ZMQ_ROUTER, cfg->workers_ep, kp, "workers");
    c->clients_sock = c->workers_sock ? s_socket(c, ZMQ_ROUTER, cfg->clients_ep, kp, "clients")
                                      : NULL;
    c->metrics_sock = c->clients_sock ? s_socket(c, ZMQ_PUB, cfg->metrics_ep, kp, "metrics")
                                      : NULL;
    memset(&key, 0, sizeof key);
    if (c->metrics_sock == NULL) {
        sp_coord_fini(c);
        return SP_E_IO;
    }
    sp_log(SP_LOG_INFO, "coordinator: workers %s, clients %s, metrics %s, state %s%s",
           cfg->workers_ep, cfg->clients_ep, cfg->metrics_ep, cfg->state_dir,
           kp != NULL ? ", CURVE on" : "");
    return SP_OK;
}

void sp_coord_fini(sp_coord_t *c)
{
    sp_store_writer_destroy(&c->writer); /* every queued write reaches the disk */
    sp_jobs_fini(c);
    sp_uploads_fini(&c->uploads);
    sp_datasets_fini(&c->datasets);
    sp_workers_fini(&c->workers);
    if (c->workers_sock) {
        zmq_close(c->workers_sock);
    }
    if (c->clients_sock) {
        zmq_close(c->clients_sock);
    }
    if (c->metrics_sock) {
        zmq_close(c->metrics_sock);
    }
    c->workers_sock = c->clients_sock = c->metrics_sock = NULL;
    sp_zap_destroy(&c->zap);
    if (c->zctx) {
        zmq_ctx_term(c->zctx);
        c->zctx = NULL;
    }
}

static void s_client_msg(sp_coord_t *c, const uint8_t *id, size_t id_len, sp_msg_t *m)
{
    switch (m->type) {
    case SP_MSG_UPLOAD_BEGIN:
        sp_uploads_begin(c, id, id_len, &m->u.upload_begin);
        break;
    case SP_MSG_UPLOAD_CHUNK:
        sp_uploads_chunk(c, id, id_len, &m->u.upload_chunk);
        break;
    case SP_MSG_UPLOAD_END:
        sp_uploads_end(c, id, id_len, &m->u.upload_end);
        break;
    case SP_MSG_TRAIN:
        sp_jobs_train(c, id, id_len, &m->u.train);
        break;
    case SP_MSG_STATUS:
        sp_jobs_reply_status(c, id, id_len, m->u.job_req.req, m->u.job_req.job);
        break;
    case SP_MSG_WORKERS:
        sp_workers_reply_list(c, id, id_len, m->u.plain_req.req);
        break;
    case SP_MSG_DATASETS:
        sp_datasets_reply_list(c, id, id_len, m->u.plain_req.req);
        break;
    case SP_MSG_METRICS:
        sp_metrics_reply(c, id, id_len, m->u.job_req.req, m->u.job_req.job, m->u.job_req.since);
        break;
    case SP_MSG_MODEL_GET:
        sp_jobs_model_get(c, id, id_len, m->u.job_req.req, m->u.job_req.job);
        break;
    case SP_MSG_CANCEL:
        sp_jobs_cancel(c, id, id_len, m->u.job_req.req, m->u.job_req.job);
        break;
    default:
        c->bad_frames++;
        sp_coord_log_bad(c, id, id_len, "unexpected message type on the client socket");
        sp_coord_reply_error(c, c->clients_sock, id, id_len, SP_E_INPUT, 0, (uint32_t)m->type,
                             "message type '%s' is not a client request",
                             sp_msg_type_name((uint32_t)m->type));
        break;
    }
}

/* Reads up to S_DRAIN_MAX messages from one socket; returns how many. */
static int s_drain(sp_coord_t *c, void *sock, int is_workers)
{
    int n = 0;
    while (n < S_DRAIN_MAX && !*c->stop) {
        uint8_t id[SP_COORD_ID_MAX];
        size_t id_len = sizeof id;
        char err[SP_TEXT_MAX] = "";
        sp_msg_t m;
        int rc = sp_msg_recv(sock, ZMQ_DONTWAIT, id, &id_len, &m, err, sizeof err);
        if (rc == SP_E_TIMEOUT) {
            break;
        }
        if (rc == SP_E_IO) {
            if (errno == EINTR) {
                continue;
            }
            sp_log(SP_LOG_ERROR, "receive failed: %s", zmq_strerror(errno));
            break;
        }
        n++;
        if (rc != SP_OK) {
            c->bad_frames++;
            sp_coord_log_bad(c, id, id_len, err);
            if (id_len > 0) {
                sp_coord_reply_error(c, sock, id, id_len, rc, 0, 0, "%s", err);
                if (is_workers) {
                    /* A registered worker whose message could not be read
                     * may hold partitions that will never come back. */
                    sp_worker_t *wk = sp_workers_find_ident(&c->workers, id, id_len);
                    if (wk != NULL) {
                        wk->failures++;
                        sp_jobs_requeue(c, wk);
                    }
                }
            }
            continue;
        }
        if (is_workers) {
            sp_workers_handle(c, id, id_len, &m);
        } else {
            s_client_msg(c, id, id_len, &m);
        }
        sp_msg_fini(&m);
    }
    return n;
}

int sp_coord_run(sp_coord_t *c)
{
    uint64_t next_tick = sp_coord_now_ms() + c->cfg.heartbeat_ms;
    sp_jobs_tick(c, sp_coord_now_ms());
    while (!*c->stop) {
        uint64_t now = sp_coord_now_ms();
        long timeout = next_tick > now ? (long)(next_tick - now) : 0;
        zmq_pollitem_t items[2] = {{c->workers_sock, 0, ZMQ_POLLIN, 0},
                                   {c->clients_sock, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 2, timeout);
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            sp_log(SP_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
            return SP_E_IO;
        }
        /* Read everything waiting before judging liveness, so a long
         * operation (a validation pass over a big set) does not make
         * queued heartbeats look missed. Uploads are checked on threads
         * of their own (uploads.c). */
        for (int more = 1; more && !*c->stop;) {
            more = s_drain(c, c->workers_sock, 1) == S_DRAIN_MAX;
            more |= s_drain(c, c->clients_sock, 0) == S_DRAIN_MAX;
        }
        now = sp_coord_now_ms();
        if (now >= next_tick) {
            sp_workers_tick(c, now);
            sp_uploads_expire(c, now);
            next_tick = now + c->cfg.heartbeat_ms;
        }
        sp_jobs_tick(c, now);
    }
    sp_log(SP_LOG_INFO, "stopping: checkpointing and telling the workers");
    sp_jobs_checkpoint(c);
    sp_workers_bye(c, "coordinator is shutting down");
    return SP_OK;
}
