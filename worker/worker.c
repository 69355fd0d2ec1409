/* worker: connection state machine, message handling and task computation
 * of spatium-worker. Invariants: at most one socket is open; every task in
 * the queue owns its index array; a task is computed only on the exact
 * model version it names and on the dataset (name, checksum) it names, and
 * a task for an older version than the cached model is dropped as stale. */
#include "worker/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/network.h"
#include "common/reduce.h"
#include "worker/cache.h"
#include "worker/pulse.h"

#define S_TREE_DEPTH 21 /* a node of SP_INDICES_MAX partitions is 20 levels deep */

typedef enum {
    S_DISCONNECTED = 0, /* no socket; reopen at reconnect_ms */
    S_HELLO_SENT,       /* HELLO sent, waiting for WELCOME until hello_deadline_ms */
    S_READY             /* registered: heartbeats, tasks */
} s_state_t;

struct sp_worker {
    sp_worker_config_t cfg;
    volatile sig_atomic_t *stop;
    void *ctx;
    void *sock;
    void *watch; /* handshake events of sock (NULL if the monitor could not start) */
    uint64_t handshake_log_ms; /* last handshake failure logged */
    uint32_t handshake_fails;  /* handshakes failed without a reason since the last success */
    s_state_t state;
    uint32_t worker_id;     /* from WELCOME */
    uint32_t heartbeat_ms;  /* from WELCOME, 10..60000 */
    uint32_t liveness;      /* from WELCOME, 1..100 */
    uint64_t last_heard_ms; /* last message from the coordinator */
    uint64_t next_beat_ms;  /* next HEARTBEAT due */
    uint64_t hello_deadline_ms;
    uint64_t reconnect_ms;
    uint32_t backoff_ms;  /* SP_WORKER_BACKOFF_MIN_MS..MAX_MS */
    uint64_t last_log_ms; /* rate limit of bad-input logs */
    uint64_t suppressed;  /* bad-input logs not printed since */
    sp_cache_t cache;
    sp_msg_task_t *tasks; /* FIFO queue, n_tasks used, each owns indices */
    size_t n_tasks;
    /* results of whole steps not sent yet (no gradient: nothing to own),
     * oldest first; every other message goes out after them */
    sp_msg_result_t held[SP_WORKER_MAX_HELD];
    size_t n_held;
    /* scratch buffers of the computation, grown as needed */
    float *X, *T, *grad;
    uint32_t *hits;
    size_t X_cap, T_cap, grad_cap, hits_cap;
    float *tree[S_TREE_DEPTH]; /* right-child sums of the reduction tree, one per depth */
    size_t tree_cap;           /* floats in each allocated tree buffer */
    uint64_t tasks_done;
    uint64_t spin_until_us; /* poll without sleeping until then (0: no): an APPLY is due */
    sp_pulse_t pulse; /* heartbeats while a partition is being computed */
};

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Logs bad input from the network at most once a second. */
static void s_log_bad(sp_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_log_bad(sp_worker_t *w, const char *fmt, ...)
{
    uint64_t now = s_now_ms();
    if (w->last_log_ms != 0 && now - w->last_log_ms < 1000) {
        w->suppressed++;
        return;
    }
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (w->suppressed) {
        sp_log(SP_LOG_WARN, "%s (and %" PRIu64 " more like it)", text, w->suppressed);
    } else {
        sp_log(SP_LOG_WARN, "%s", text);
    }
    w->suppressed = 0;
    w->last_log_ms = now;
}

sp_worker_t *sp_worker_new(const sp_worker_config_t *cfg, volatile sig_atomic_t *stop)
{
    sp_worker_t *w = calloc(1, sizeof *w);
    if (!w) {
        return NULL;
    }
    w->cfg = *cfg;
    w->stop = stop;
    w->ctx = zmq_ctx_new();
    w->tasks = calloc(SP_WORKER_MAX_QUEUED, sizeof *w->tasks);
    if (!w->ctx || !w->tasks) {
        sp_worker_destroy(&w);
        return NULL;
    }
    w->backoff_ms = SP_WORKER_BACKOFF_MIN_MS;
    w->heartbeat_ms = 1000;
    w->liveness = 3;
    sp_cache_init(&w->cache);
    if (sp_pulse_start(&w->pulse) != SP_OK) {
        sp_log(SP_LOG_WARN, "no heartbeat thread: a partition longer than the coordinator's "
                            "liveness will make it think this worker died");
    }
    return w;
}

/* Forgets every task queued and every result held: the coordinator no
 * longer counts on them (a new connection). */
static void s_clear_tasks(sp_worker_t *w)
{
    for (size_t i = 0; i < w->n_tasks; i++) {
        free(w->tasks[i].indices);
    }
    w->n_tasks = 0;
    w->n_held = 0;
}

static void s_close(sp_worker_t *w)
{
    sp_curve_watch_close(w->sock, &w->watch);
    if (w->sock) {
        zmq_close(w->sock);
        w->sock = NULL;
    }
    w->state = S_DISCONNECTED;
    /* the coordinator hands out a dead worker's partitions again: ours are void */
    s_clear_tasks(w);
    sp_cache_download_abort(&w->cache);
}

void sp_worker_destroy(sp_worker_t **wp)
{
    if (!wp || !*wp) {
        return;
    }
    sp_worker_t *w = *wp;
    sp_pulse_stop(&w->pulse);
    s_close(w);
    if (w->ctx) {
        zmq_ctx_term(w->ctx);
    }
    sp_cache_fini(&w->cache);
    free(w->tasks);
    free(w->X);
    free(w->T);
    free(w->grad);
    for (unsigned k = 0; k < S_TREE_DEPTH; k++) {
        free(w->tree[k]);
    }
    free(w->hits);
    free(w);
    *wp = NULL;
}

static int s_send_now(sp_worker_t *w, const sp_msg_t *m)
{
    int rc = sp_msg_send(w->sock, NULL, 0, m);
    if (rc != SP_OK) {
        s_log_bad(w, "could not send %s to the coordinator: %s", sp_msg_type_name(m->type),
                  sp_strerror(rc));
    }
    return rc;
}

/* Sends the held results, oldest first. */
static void s_flush(sp_worker_t *w)
{
    for (size_t i = 0; i < w->n_held && w->sock; i++) {
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_RESULT);
        m.u.result = w->held[i];
        s_send_now(w, &m);
    }
    w->n_held = 0;
}

/* Sends m after any held results, so the coordinator reads everything in
 * the order it happened. */
static int s_send(sp_worker_t *w, const sp_msg_t *m)
{
    if (!w->sock) {
        return SP_E_STATE;
    }
    s_flush(w);
    return s_send_now(w, m);
}

/* An ERROR to the coordinator (code: an SP_E_* code or its negation, as
 * sp_msg_send_error takes it), after any held results. */
static void s_send_error(sp_worker_t *w, int code, sp_msg_type_t ref_type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_send_error(sp_worker_t *w, int code, sp_msg_type_t ref_type, const char *fmt, ...)
{
    char text[SP_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (w->sock) {
        s_flush(w);
        sp_msg_send_error(w->sock, NULL, 0, code, 0, ref_type, "%s", text);
    }
}

static void s_send_hello(sp_worker_t *w)
{
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_HELLO);
    snprintf(m.u.hello.name, sizeof m.u.hello.name, "%s", w->cfg.name);
    m.u.hello.threads = w->cfg.threads;
    s_send(w, &m);
    w->state = S_HELLO_SENT;
    /* a coordinator busy with a big upload may take a moment to answer */
    w->hello_deadline_ms = s_now_ms() + SP_WORKER_HELLO_WAIT_MS + w->backoff_ms;
}

/* Opens a fresh socket (a new identity: the coordinator sees a new peer) and
 * says HELLO. */
static int s_open(sp_worker_t *w)
{
    w->sock = zmq_socket(w->ctx, ZMQ_DEALER);
    if (!w->sock) {
        sp_log(SP_LOG_ERROR, "cannot create a socket: %s", zmq_strerror(errno));
        return SP_E_IO;
    }
    sp_sock_configure(w->sock, ZMQ_DEALER);
    int zero = 0, send_ms = 1000;
    zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(w->sock, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms);
    if (w->cfg.curve && sp_curve_client(w->sock, &w->cfg.curve_own, &w->cfg.curve_server) != SP_OK) {
        sp_log(SP_LOG_ERROR, "cannot set the CURVE keys: %s", zmq_strerror(errno));
        zmq_close(w->sock);
        w->sock = NULL;
        return SP_E_IO;
    }
    w->watch = sp_curve_watch(w->ctx, w->sock);
    if (zmq_connect(w->sock, w->cfg.endpoint) != 0) {
        sp_log(SP_LOG_ERROR, "cannot connect to %s: %s", w->cfg.endpoint, zmq_strerror(errno));
        s_close(w);
        return SP_E_IO;
    }
    s_send_hello(w);
    return SP_OK;
}

/* Drops the connection and schedules a new registration after the backoff. */
static void s_reconnect_later(sp_worker_t *w, uint32_t delay_ms)
{
    s_close(w);
    w->reconnect_ms = s_now_ms() + delay_ms;
}

static void s_backoff_grow(sp_worker_t *w)
{
    w->backoff_ms *= 2;
    if (w->backoff_ms > SP_WORKER_BACKOFF_MAX_MS) {
        w->backoff_ms = SP_WORKER_BACKOFF_MAX_MS;
    }
}

static void s_request_data(sp_worker_t *w)
{
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_DATA_REQ);
    snprintf(m.u.data_req.dataset, sizeof m.u.data_req.dataset, "%s", w->cache.dl.name);
    m.u.data_req.checksum = w->cache.dl.checksum;
    m.u.data_req.offset = w->cache.dl.received;
    w->cache.dl.requested_ms = s_now_ms();
    s_send(w, &m);
}

static void s_queue_task(sp_worker_t *w, sp_msg_t *m)
{
    if (w->n_tasks == SP_WORKER_MAX_QUEUED) {
        s_log_bad(w, "task queue full: dropping the oldest task");
        free(w->tasks[0].indices);
        memmove(w->tasks, w->tasks + 1, (w->n_tasks - 1) * sizeof *w->tasks);
        w->n_tasks--;
    }
    w->tasks[w->n_tasks++] = m->u.task;
    m->u.task.indices = NULL; /* the queue owns them now */
    m->u.task.n_indices = 0;
}

static void s_drop_task(sp_worker_t *w, size_t i)
{
    free(w->tasks[i].indices);
    memmove(w->tasks + i, w->tasks + i + 1, (w->n_tasks - i - 1) * sizeof *w->tasks);
    w->n_tasks--;
}

static void s_apply(sp_worker_t *w, const sp_msg_apply_t *a);

/* A MODEL of (job, version) arrived. The coordinator sends one only to a
 * worker whose state it no longer counts on (a new job, a topology change,
 * a worker it forgot or sent back to a checkpoint), just before that
 * worker's next task: the tasks queued before it for other jobs or other
 * versions are void, and so are the results held (the coordinator would
 * drop them). A task of this very version waits for this model: it stays. */
static void s_void_before(sp_worker_t *w, uint64_t job, uint64_t version)
{
    w->n_held = 0;
    for (size_t i = w->n_tasks; i-- > 0;) {
        if (w->tasks[i].job != job || w->tasks[i].version != version) {
            s_drop_task(w, i);
        }
    }
}

static void s_handle(sp_worker_t *w, sp_msg_t *m)
{
    char err[512] = "";
    switch (m->type) {
    case SP_MSG_WELCOME:
        w->worker_id = m->u.welcome.worker_id;
        w->heartbeat_ms = m->u.welcome.heartbeat_ms ? m->u.welcome.heartbeat_ms : 1000;
        w->liveness = m->u.welcome.liveness ? m->u.welcome.liveness : 3;
        w->state = S_READY;
        w->next_beat_ms = s_now_ms() + w->heartbeat_ms;
        w->backoff_ms = SP_WORKER_BACKOFF_MIN_MS;
        sp_log(SP_LOG_INFO, "registered with %s as worker %u (heartbeat %u ms, liveness %u)",
               w->cfg.endpoint, w->worker_id, w->heartbeat_ms, w->liveness);
        break;
    case SP_MSG_HEARTBEAT:
        break;
    case SP_MSG_BYE:
        sp_log(SP_LOG_INFO, "coordinator said bye (%s): registering again", m->u.bye.reason);
        w->backoff_ms = SP_WORKER_BACKOFF_MIN_MS;
        s_reconnect_later(w, SP_WORKER_BACKOFF_MIN_MS);
        break;
    case SP_MSG_MODEL: {
        s_void_before(w, m->u.model.job, m->u.model.version);
        int rc = sp_cache_put_model(&w->cache, m->u.model.job, m->u.model.version,
                                    m->u.model.model.data, m->u.model.model.len, err, sizeof err);
        if (rc != SP_OK && err[0] == '\0') {
            snprintf(err, sizeof err, "%s", sp_strerror(rc));
        }
        if (rc != SP_OK) {
            s_log_bad(w, "model of job %" PRIu64 " version %" PRIu64 " refused: %s", m->u.model.job,
                      m->u.model.version, err);
            s_send_error(w, SP_E_INPUT, SP_MSG_MODEL,
                         "model of job %" PRIu64 " version %" PRIu64 " refused: %s", m->u.model.job,
                         m->u.model.version, err);
        }
        break;
    }
    case SP_MSG_APPLY:
        s_apply(w, &m->u.apply);
        break;
    case SP_MSG_TASK:
        if (w->state == S_READY) {
            s_queue_task(w, m);
        }
        break;
    case SP_MSG_DATA_CHUNK: {
        int rc = sp_cache_download_chunk(&w->cache, &m->u.data_chunk, err, sizeof err);
        if (rc == 1) {
            sp_log(SP_LOG_INFO, "dataset %s cached", m->u.data_chunk.dataset);
        } else if (rc == 0) {
            s_request_data(w);
        } else {
            s_log_bad(w, "%s", err);
        }
        break;
    }
    case SP_MSG_ERROR:
        if (strstr(m->u.error.message, "not registered")) {
            if (w->state == S_HELLO_SENT) {
                /* An answer to something sent before our HELLO, which the
                 * coordinator reads next: another HELLO would register us
                 * twice (and cost the coordinator whatever we hold). */
                break;
            }
            sp_log(SP_LOG_INFO, "coordinator does not know us: registering again");
            s_clear_tasks(w);
            s_send_hello(w);
        } else if (m->u.error.ref_type == SP_MSG_DATA_REQ && w->cache.dl.active) {
            s_log_bad(w, "coordinator refused dataset %s: %s", w->cache.dl.name,
                      m->u.error.message);
            char name[SP_NAME_MAX];
            snprintf(name, sizeof name, "%s", w->cache.dl.name);
            uint64_t sum = w->cache.dl.checksum;
            sp_cache_download_abort(&w->cache);
            for (size_t i = w->n_tasks; i-- > 0;) {
                if (w->tasks[i].checksum == sum && strcmp(w->tasks[i].dataset, name) == 0) {
                    s_drop_task(w, i);
                }
            }
        } else {
            s_log_bad(w, "coordinator error: %s", m->u.error.message);
        }
        break;
    default:
        s_log_bad(w, "unexpected %s message from the coordinator", sp_msg_type_name(m->type));
        break;
    }
}

static int s_grow(void **buf, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap) {
        return 0;
    }
    void *p = realloc(*buf, n * elem);
    if (!p) {
        return -1;
    }
    *buf = p;
    *cap = n;
    return 0;
}

/* Samples in partition p of task t (numbered within the task). */
static size_t s_leaf_len(const sp_msg_task_t *t, uint32_t p)
{
    size_t off = (size_t)p * t->partition_size;
    return t->n_indices - off < t->partition_size ? t->n_indices - off : t->partition_size;
}

/* Adds the gradient of partition p of task t to grad (sp_network_gradient)
 * and its hits to w->hits; its loss and correct count go to *loss and
 * *correct. */
static int s_leaf(sp_worker_t *w, const sp_msg_task_t *t, sp_network_t *net,
                  const sp_dataset_t *d, uint32_t p, float *grad, double *loss, uint32_t *correct)
{
    size_t off = (size_t)p * t->partition_size, n = s_leaf_len(t, p);
    sp_dataset_gather(d, t->indices + off, n, w->X);
    sp_dataset_targets(d, t->indices + off, n, w->T);
    sp_batch_result_t res;
    memset(&res, 0, sizeof res);
    int rc = sp_network_gradient(net, w->X, w->T, n, grad, w->hits, &res);
    *loss = res.loss_sum;
    *correct = res.n_correct;
    return rc;
}

/* Sum of partitions [lo, hi) of task t (numbered within the task) into
 * grad[n_params], in the order of the reduction tree (common/reduce.h);
 * adds hits to w->hits. Leaves compute sp_network_gradient on their samples;
 * inner nodes add their right child's sum (tree buffer of their depth) to
 * their left child's. loss and correct combine in the same order. */
static int s_node(sp_worker_t *w, const sp_msg_task_t *t, sp_network_t *net,
                  const sp_dataset_t *d, uint32_t lo, uint32_t hi, unsigned depth, float *grad,
                  double *loss, uint32_t *correct)
{
    size_t n_params = sp_network_n_params(net);
    if (hi - lo == 1) {
        memset(grad, 0, n_params * sizeof *grad);
        return s_leaf(w, t, net, d, lo, grad, loss, correct);
    }
    SP_ASSERT(depth < S_TREE_DEPTH);
    if (w->tree_cap < n_params) { /* the topology grew: every level is re-made */
        for (unsigned k = 0; k < S_TREE_DEPTH; k++) {
            free(w->tree[k]);
            w->tree[k] = NULL;
        }
        w->tree_cap = n_params;
    }
    if (w->tree[depth] == NULL && (w->tree[depth] = malloc(w->tree_cap * sizeof(float))) == NULL) {
        return SP_E_NOMEM;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    double loss_l = 0, loss_r = 0;
    uint32_t corr_l = 0, corr_r = 0;
    int rc = s_node(w, t, net, d, lo, mid, depth + 1, grad, &loss_l, &corr_l);
    if (rc != SP_OK) {
        return rc;
    }
    if (hi - mid == 1 && s_leaf_len(t, mid) <= SP_NET_GRAD_CHUNK) {
        /* A right child that is one leaf of one gradient chunk is added
         * straight onto its sibling: sp_network_gradient adds the chunk's
         * sums y to grad, and left + (0 + y) is left + y for every left but
         * -0 (0 + y only turns a -0 into +0), which no sum here holds: each
         * starts from a zeroed buffer, and a float sum is -0 only when both
         * its terms are. No buffer to zero, no second pass. */
        rc = s_leaf(w, t, net, d, mid, grad, &loss_r, &corr_r);
    } else {
        float *right = w->tree[depth];
        rc = s_node(w, t, net, d, mid, hi, depth + 1, right, &loss_r, &corr_r);
        if (rc == SP_OK) {
            sp_reduce_add_f32(grad, right, n_params);
        }
    }
    if (rc != SP_OK) {
        return rc;
    }
    *loss = loss_l + loss_r;
    *correct = corr_l + corr_r;
    return SP_OK;
}

/* A worker that computed a whole step holds its summed gradient: it applies
 * the step to its own copy, exactly as the coordinator would (same state,
 * same gradient, same function), and is at the next version without waiting
 * for an APPLY. A failed step leaves a model that is no longer the
 * coordinator's: it is dropped, and an ERROR (ref_type: what carried the
 * step; code SP_E_RANGE when training diverged) says why. Returns rc. */
static int s_advance(sp_worker_t *w, uint64_t job, uint64_t version, sp_network_t *net,
                     const float *grad, uint32_t n_samples, const uint32_t *hits,
                     sp_msg_type_t via)
{
    int rc = sp_network_apply_gradient(net, grad, n_samples, hits);
    if (rc != SP_OK) {
        s_log_bad(w, "job %" PRIu64 ": step to version %" PRIu64 " failed (%s); dropping the model",
                  job, version, sp_strerror(rc));
        sp_cache_drop_model(&w->cache, job);
        /* A non-finite gradient (SP_E_INPUT from the check) or a parameter
         * out of range: either way the training diverged, and every worker
         * would find the same (the coordinator fails the job on SP_E_RANGE). */
        int diverged = rc == SP_E_RANGE || (rc == SP_E_INPUT && via == SP_MSG_TASK);
        s_send_error(w, diverged ? -SP_E_RANGE : (rc < 0 ? -rc : rc), via,
                     "job %" PRIu64 ": step to version %" PRIu64 " failed (%s)%s", job, version,
                     sp_strerror(rc), diverged ? ": training diverged; try a smaller --lr" : "");
        return rc;
    }
    sp_cache_set_version(&w->cache, job, version);
    return SP_OK;
}

/* After a whole step with sync set: the model, with its training state, goes
 * back to the coordinator, which takes it as its own copy at `version`. If
 * it cannot go, an ERROR says so instead of leaving the coordinator waiting
 * for ever: code 3 (SP_E_RANGE) when the codec refuses it (larger than a
 * message may be: every later sync would fail alike, and the coordinator
 * fails the job), else the failure's code (the coordinator goes back to its
 * last checkpoint). */
static void s_send_state(sp_worker_t *w, uint64_t job, uint64_t version, const sp_network_t *net)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sp_network_save_buffer(net, 1, &buf, &len);
    if (rc == SP_OK) {
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_MODEL);
        m.u.model.job = job;
        m.u.model.version = version;
        m.u.model.model.data = buf;
        m.u.model.model.len = len;
        rc = s_send(w, &m); /* logs a failure */
        free(buf);
    } else {
        s_log_bad(w, "job %" PRIu64 ": cannot serialize version %" PRIu64 " (%s)", job, version,
                  sp_strerror(rc));
    }
    if (rc != SP_OK) {
        s_send_error(w, rc < 0 ? -rc : rc, SP_MSG_TASK,
                     "job %" PRIu64 ": cannot send the model of version %" PRIu64 " (%s)%s", job,
                     version, sp_strerror(rc),
                     rc == SP_E_RANGE ? ": it is larger than one message may be" : "");
    }
}

/* Queued tasks of t's job for later versions than t's: the steps this
 * worker will run after it. */
static size_t s_later_tasks(const sp_worker_t *w, const sp_msg_task_t *t)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n_tasks; i++) {
        n += w->tasks[i].job == t->job && w->tasks[i].version > t->version;
    }
    return n;
}

/* Computes task t (one node of its step's reduction tree) on net and d and
 * sends the RESULT; when the node is the whole step, applies it too. */
static void s_compute(sp_worker_t *w, const sp_msg_task_t *t, sp_network_t *net,
                      const sp_dataset_t *d)
{
    size_t n = t->n_indices, nf = d->n_features, nt = d->n_targets;
    size_t n_in = sp_network_n_inputs(net), n_out = sp_network_n_outputs(net);
    const char *problem = NULL;
    if (n == 0) {
        problem = "no sample indices";
    } else if (n_in != nf) {
        problem = "the model's input width is not the dataset's feature count";
    } else if (n_out != nt) {
        problem = "the model's output width is not the dataset's target count";
    }
    for (size_t i = 0; i < n && !problem; i++) {
        if (t->indices[i] >= d->n_samples) {
            problem = "a sample index is past the end of the dataset";
        }
    }
    if (problem) {
        s_log_bad(w, "task of job %" PRIu64 " step %" PRIu64 " refused: %s", t->job, t->step,
                  problem);
        s_send_error(w, SP_E_INPUT, SP_MSG_TASK,
                     "task of job %" PRIu64 " step %" PRIu64 " partition %u: %s", t->job, t->step,
                     t->partition, problem);
        return;
    }
    size_t n_params = sp_network_n_params(net), n_hits = sp_network_n_hits(net);
    size_t rows = n < t->partition_size ? n : t->partition_size;
    if (s_grow((void **)&w->X, &w->X_cap, rows * nf, sizeof *w->X) ||
        s_grow((void **)&w->T, &w->T_cap, rows * nt, sizeof *w->T) ||
        s_grow((void **)&w->grad, &w->grad_cap, n_params, sizeof *w->grad) ||
        s_grow((void **)&w->hits, &w->hits_cap, n_hits, sizeof *w->hits)) {
        s_log_bad(w, "out of memory for a task of %zu samples", n);
        s_send_error(w, SP_E_NOMEM, SP_MSG_TASK,
                     "task of job %" PRIu64 " step %" PRIu64 " partition %u: worker out "
                     "of memory for %zu samples",
                     t->job, t->step, t->partition, n);
        return;
    }
    uint64_t t0 = s_now_us();
    memset(w->hits, 0, n_hits * sizeof *w->hits);
    double loss = 0;
    uint32_t correct = 0;
    sp_pulse_begin(&w->pulse, w->sock, w->heartbeat_ms);
    int rc = s_node(w, t, net, d, 0, t->n_partitions, 0, w->grad, &loss, &correct);
    sp_pulse_end(&w->pulse);
    uint64_t t1 = s_now_us();
    if (rc == SP_OK && !isfinite(loss)) {
        /* Diverged training gives the same on every worker: say so instead of
         * sending a result the codec would refuse (the coordinator fails the
         * job after repeated errors, with this text). */
        s_log_bad(w, "job %" PRIu64 " step %" PRIu64 ": non-finite loss, training diverged",
                  t->job, t->step);
        s_send_error(w, -SP_E_RANGE, SP_MSG_TASK,
                     "job %" PRIu64 " step %" PRIu64 " partition %u: non-finite loss "
                     "(training diverged; try a smaller --lr)",
                     t->job, t->step, t->partition);
        return;
    }
    if (rc != SP_OK) {
        s_log_bad(w, "gradient of job %" PRIu64 " step %" PRIu64 " failed: %s", t->job, t->step,
                  sp_strerror(rc));
        s_send_error(w, rc < 0 ? -rc : rc, SP_MSG_TASK,
                     "gradient of job %" PRIu64 " step %" PRIu64 " failed: %s", t->job, t->step,
                     sp_strerror(rc));
        return;
    }
    /* A whole step is applied here first, and its RESULT carries no
     * gradient: the coordinator takes this worker's model back when it needs
     * its own copy (a task with sync set), instead of a gradient every step. */
    int whole = t->partition == 0 && t->n_indices == t->batch;
    if (whole && s_advance(w, t->job, t->version + 1, net, w->grad, t->batch, w->hits,
                           SP_MSG_TASK) != SP_OK) {
        return;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_RESULT);
    sp_msg_result_t *r = &m.u.result;
    r->job = t->job;
    r->version = t->version;
    r->step = t->step;
    r->partition = t->partition;
    r->n_partitions = t->n_partitions;
    r->n_samples = (uint32_t)n;
    r->n_correct = correct;
    r->loss_sum = loss;
    r->compute_us = t1 - t0;
    if (!whole) {
        r->n_grad = (uint32_t)n_params;
        r->grad = w->grad; /* borrowed: m is not finalized */
        r->n_hits = (uint32_t)n_hits;
        r->hits = w->hits;
    }
    if (whole && !t->sync && w->n_held < SP_WORKER_MAX_HELD &&
        s_later_tasks(w, t) > w->n_held + 1) {
        /* More of this worker's steps wait in the queue than results would
         * be held with this one: it goes out with the others once the
         * queue is down to as many, so the coordinator has sent more by the
         * time the queue runs dry, and wakes for a burst of results instead
         * of every step (docs/COORDINATOR.md, "Lone runs"). */
        w->held[w->n_held++] = *r;
        w->tasks_done++;
        return;
    }
    if (s_send(w, &m) == SP_E_RANGE) {
        /* The codec refused the result (a non-finite gradient): tell the
         * coordinator rather than leave the partition in flight. */
        s_send_error(w, -SP_E_RANGE, SP_MSG_TASK,
                     "job %" PRIu64 " step %" PRIu64 " partition %u: non-finite gradient "
                     "(training diverged; try a smaller --lr)",
                     t->job, t->step, t->partition);
        return;
    }
    w->tasks_done++;
    w->spin_until_us = whole ? 0 : s_now_us() + SP_WORKER_APPLY_SPIN_US;
    if (whole && t->sync) {
        s_send_state(w, t->job, t->version + 1, net);
    }
}

/* APPLY: the summed gradient of a step this worker computed only part of.
 * One for a version it holds already is ignored. One it cannot use (it is
 * behind, holds no model of the job, or the gradient does not fit) means the
 * coordinator thinks it holds a model it does not: it says so with an ERROR,
 * and the coordinator sends the model again with its next task. */
static void s_apply(sp_worker_t *w, const sp_msg_apply_t *a)
{
    uint64_t have = 0;
    sp_network_t *net = sp_cache_model(&w->cache, a->job, &have);
    if (net != NULL && have >= a->version) {
        return; /* it computed the step and applied it itself */
    }
    const char *problem = NULL;
    if (net == NULL || have != a->version - 1) {
        problem = "out of sync";
    } else if (a->n_grad != sp_network_n_params(net) || a->n_hits != sp_network_n_hits(net)) {
        problem = "gradient does not fit the model";
    }
    if (problem != NULL) {
        s_log_bad(w, "apply of job %" PRIu64 " version %" PRIu64 " refused: %s (holding %" PRIu64
                     ")", a->job, a->version, problem, have);
        if (net != NULL && have < a->version) {
            sp_cache_drop_model(&w->cache, a->job);
        }
        s_send_error(w, SP_E_STATE, SP_MSG_APPLY,
                     "apply of job %" PRIu64 " version %" PRIu64 ": %s (worker holds "
                     "version %" PRIu64 ")",
                     a->job, a->version, problem, have);
        return;
    }
    s_advance(w, a->job, a->version, net, a->grad, a->n_samples, a->hits, SP_MSG_APPLY);
}

/* Finds a task that can run now; drops stale ones and starts the download
 * a waiting task needs. Returns its queue index or -1. */
static long s_next_task(sp_worker_t *w, sp_network_t **net, const sp_dataset_t **d)
{
    for (size_t i = 0; i < w->n_tasks;) {
        sp_msg_task_t *t = &w->tasks[i];
        uint64_t have = 0;
        sp_network_t *model = sp_cache_model(&w->cache, t->job, &have);
        if (have > t->version) {
            /* The coordinator thinks this worker holds an older model than
             * it does (it applied a step whose result was not counted):
             * saying so makes the coordinator send the model again. */
            s_log_bad(w, "task of job %" PRIu64 " step %" PRIu64 " needs version %" PRIu64
                         ", this worker holds %" PRIu64, t->job, t->step, t->version, have);
            s_send_error(w, SP_E_STATE, SP_MSG_TASK,
                         "task of job %" PRIu64 " step %" PRIu64 " partition %u: stale "
                         "version %" PRIu64 " (worker holds version %" PRIu64 ")",
                         t->job, t->step, t->partition, t->version, have);
            s_drop_task(w, i);
            continue;
        }
        if (have == t->version && model) {
            const sp_dataset_t *data = sp_cache_dataset(&w->cache, t->dataset, t->checksum);
            if (data) {
                *net = model;
                *d = data;
                return (long)i;
            }
            if (!w->cache.dl.active) {
                sp_log(SP_LOG_INFO, "fetching dataset %s", t->dataset);
                sp_cache_download_start(&w->cache, t->dataset, t->checksum);
                s_request_data(w);
            }
        }
        i++;
    }
    return -1;
}

/* Receives everything waiting on the socket. */
static void s_drain(sp_worker_t *w)
{
    while (w->sock) {
        char err[512] = "";
        sp_msg_t m;
        int rc = sp_msg_recv(w->sock, ZMQ_DONTWAIT, NULL, NULL, &m, err, sizeof err);
        if (rc == SP_E_TIMEOUT) {
            return;
        }
        if (rc != SP_OK) {
            if (rc == SP_E_IO) {
                if (errno == EINTR || errno == EAGAIN) {
                    return;
                }
                s_log_bad(w, "receive failed: %s", zmq_strerror(errno));
                return;
            }
            s_log_bad(w, "bad frame from the coordinator: %s", err[0] ? err : sp_strerror(rc));
            continue;
        }
        w->last_heard_ms = s_now_ms();
        s_handle(w, &m);
        sp_msg_fini(&m);
    }
}

/* Logs a failed security handshake (a refused key, the wrong server key, a
 * CURVE / plain mismatch), at most every SP_WORKER_HANDSHAKE_LOG_MS. A
 * failure that does not say why is logged once it repeats. ZeroMQ
 * keeps retrying the connection by itself, so the worker joins once the
 * coordinator's operator lets its key in. */
static void s_log_handshake(sp_worker_t *w, const char *text)
{
    uint64_t now = s_now_ms();
    if (w->handshake_log_ms != 0 && now - w->handshake_log_ms < SP_WORKER_HANDSHAKE_LOG_MS) {
        return;
    }
    w->handshake_log_ms = now;
    if (w->cfg.curve) {
        sp_log(SP_LOG_ERROR, "%s (this worker's public key: %s); retrying", text,
               w->cfg.curve_own.public_z85);
    } else {
        sp_log(SP_LOG_ERROR, "%s; retrying", text);
    }
}

static void s_read_watch(sp_worker_t *w)
{
    char text[512];
    int rc;
    while ((rc = sp_curve_watch_read(w->watch, w->cfg.curve, text, sizeof text)) >= 0) {
        if (rc == 3) {
            w->handshake_fails = 0;
        } else if (rc == 2 || (rc == 1 && ++w->handshake_fails >= SP_WORKER_HANDSHAKE_TRIES)) {
            s_log_handshake(w, text);
        }
    }
}

static void s_say_bye(sp_worker_t *w)
{
    if (!w->sock || w->state != S_READY) {
        return;
    }
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_BYE);
    snprintf(m.u.bye.reason, sizeof m.u.bye.reason, "worker %s stopping", w->cfg.name);
    int linger_ms = 500; /* let the BYE leave before the socket closes */
    zmq_setsockopt(w->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    s_send(w, &m);
}

int sp_worker_run(sp_worker_t *w)
{
    sp_log(SP_LOG_INFO, "worker %s: coordinator %s, %u threads", w->cfg.name, w->cfg.endpoint,
           w->cfg.threads);
    w->reconnect_ms = s_now_ms();
    while (!*w->stop) {
        uint64_t now = s_now_ms();
        if (!w->sock) {
            if (now >= w->reconnect_ms) {
                if (s_open(w) != SP_OK) {
                    s_backoff_grow(w);
                    w->reconnect_ms = now + w->backoff_ms;
                }
                w->last_heard_ms = now;
            } else {
                uint64_t wait = w->reconnect_ms - now;
                zmq_poll(NULL, 0, (long)(wait < 200 ? wait : 200));
            }
            continue;
        }
        sp_network_t *net = NULL;
        const sp_dataset_t *d = NULL;
        long ti = w->state == S_READY ? s_next_task(w, &net, &d) : -1;
        long timeout = 200; /* ms; bounds how late a stop request is seen */
        if (ti >= 0) {
            timeout = 0;
        } else {
            s_flush(w); /* nothing runs before held results would go */
            if (w->state == S_READY && w->next_beat_ms > now &&
                (long)(w->next_beat_ms - now) < timeout) {
                timeout = (long)(w->next_beat_ms - now);
            }
        }
        zmq_pollitem_t items[2] = {{w->sock, 0, ZMQ_POLLIN, 0}, {w->watch, 0, ZMQ_POLLIN, 0}};
        int n_items = w->watch ? 2 : 1, pr = 0;
        if (ti < 0 && w->spin_until_us != 0) {
            /* waiting for the APPLY of a step it computed part of: see
             * SP_WORKER_APPLY_SPIN_US */
            while ((pr = zmq_poll(items, n_items, 0)) == 0 && s_now_us() < w->spin_until_us) {
                sched_yield();
            }
            w->spin_until_us = 0;
        }
        if (pr == 0) {
            pr = zmq_poll(items, n_items, timeout);
        }
        if (pr < 0 && errno != EINTR) {
            s_log_bad(w, "poll failed: %s", zmq_strerror(errno));
        }
        if (pr > 0 && w->watch != NULL && (items[1].revents & ZMQ_POLLIN)) {
            s_read_watch(w);
            pr = (items[0].revents & ZMQ_POLLIN) ? 1 : 0;
        }
        if (pr > 0) {
            s_drain(w);
        }
        if (!w->sock || *w->stop) {
            continue;
        }
        now = s_now_ms();
        if (w->state == S_HELLO_SENT) {
            if (now >= w->hello_deadline_ms) {
                sp_log(SP_LOG_INFO, "no answer from %s: trying again", w->cfg.endpoint);
                s_backoff_grow(w);
                s_reconnect_later(w, 0);
            }
            continue;
        }
        if (now - w->last_heard_ms > (uint64_t)w->liveness * w->heartbeat_ms) {
            sp_log(SP_LOG_WARN, "coordinator silent for %" PRIu64 " ms: reconnecting",
                   now - w->last_heard_ms);
            s_reconnect_later(w, w->backoff_ms);
            s_backoff_grow(w);
            continue;
        }
        if (now >= w->next_beat_ms) {
            sp_msg_t hb;
            sp_msg_init(&hb, SP_MSG_HEARTBEAT);
            s_send(w, &hb);
            w->next_beat_ms = now + w->heartbeat_ms;
        }
        if (w->cache.dl.active && now - w->cache.dl.requested_ms > 2u * w->heartbeat_ms + 1000u) {
            s_request_data(w); /* the request or its chunk was lost */
        }
        if (pr > 0 || ti < 0) {
            continue; /* messages may have changed the queue: look again */
        }
        sp_msg_task_t t = w->tasks[ti];
        w->tasks[ti].indices = NULL;
        s_drop_task(w, (size_t)ti);
        s_compute(w, &t, net, d);
        free(t.indices);
    }
    s_say_bye(w);
    s_close(w);
    sp_log(SP_LOG_INFO, "worker %s stopped after %" PRIu64 " tasks", w->cfg.name, w->tasks_done);
    return SP_OK;
}
