/* test_client: the `spatium` client and the `spatium-worker` programs, run as
 * child processes from $SPATIUM_BIN (default build/bin). Where a coordinator
 * is needed, the test itself plays it on a ROUTER socket (ipc:// in a private
 * temporary directory), answering with canned replies and checking what the
 * programs send. Every wait is bounded; every child is reaped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */
#include <png.h>

#include <zlib.h>
#include <zmq.h>

#include "client/inspect.h"
#include "common/dataset.h"
#include "common/error.h"
#include "common/file.h"
#include "common/layer.h"
#include "common/morton.h"
#include "common/network.h"
#include "common/reduce.h"
#include "proto/messages.h"

#define S_CHILD_BOUND_MS 30000 /* a child still running after this is a failure */
#define S_OUT_MAX (1 << 16)
#define s_assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

/* ------------------------------------------------------------------------ */
/* processes and files                                                      */

typedef struct {
    int status;          /* exit code; 128 + signal when killed */
    char out[S_OUT_MAX]; /* stdout */
    char err[S_OUT_MAX]; /* stderr */
} s_run_t;

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void s_bin(const char *name, char *path, size_t cap)
{
    const char *dir = getenv("SPATIUM_BIN");
    snprintf(path, cap, "%s/%s", dir && dir[0] ? dir : "build/bin", name);
}

/* Children and directories a test made, so that a failing test (cmocka
 * jumps out of it) still leaves no process or file behind: see s_teardown. */
static pid_t s_children[16];
static char s_dirs[8][64];

static void s_track_dir(const char *dir)
{
    for (size_t i = 0; i < 8; i++) {
        if (!s_dirs[i][0]) {
            snprintf(s_dirs[i], sizeof s_dirs[i], "%s", dir);
            return;
        }
    }
}

static void s_untrack_child(pid_t pid)
{
    for (size_t i = 0; i < 16; i++) {
        if (s_children[i] == pid) {
            s_children[i] = 0;
        }
    }
}

static void s_mkdtemp(char dir[64])
{
    snprintf(dir, 64, "/tmp/sp-test-client-XXXXXX");
    assert_non_null(mkdtemp(dir));
    s_track_dir(dir);
}

static void s_read_file(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        return;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void s_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Starts a program of $SPATIUM_BIN with args (NULL-terminated, args[0] the
 * program name); stdout and stderr go to files in dir. */
static pid_t s_spawn(const char *dir, const char *const *args)
{
    char bin[512], out[128], err[128];
    s_bin(args[0], bin, sizeof bin);
    snprintf(out, sizeof out, "%s/stdout", dir);
    snprintf(err, sizeof err, "%s/stderr", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) {
            _exit(126);
        }
        dup2(fo, STDOUT_FILENO);
        dup2(fe, STDERR_FILENO);
        execv(bin, (char *const *)(uintptr_t)args);
        fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    for (size_t i = 0; i < 16; i++) {
        if (s_children[i] == 0) {
            s_children[i] = pid;
            break;
        }
    }
    return pid;
}

/* Blocking wait for a child this test started. */
static pid_t s_wait_child(pid_t pid, int *st)
{
    pid_t r = waitpid(pid, st, 0);
    s_untrack_child(pid);
    return r;
}

/* Reaps pid if it has exited: 1 and *status filled, else 0. */
static int s_reaped(pid_t pid, int *status)
{
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r != pid) {
        return 0;
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    s_untrack_child(pid);
    return 1;
}

static void s_collect(const char *dir, s_run_t *r)
{
    char path[128];
    snprintf(path, sizeof path, "%s/stdout", dir);
    s_read_file(path, r->out, sizeof r->out);
    snprintf(path, sizeof path, "%s/stderr", dir);
    s_read_file(path, r->err, sizeof r->err);
}

/* ------------------------------------------------------------------------ */
/* a fake coordinator                                                       */

typedef struct s_fake s_fake_t;
typedef void (*s_handler_t)(s_fake_t *f, const uint8_t *id, size_t id_len, sp_msg_t *m);

struct s_fake {
    char dir[64];
    char ep[128];
    void *ctx;
    void *sock; /* ROUTER bound at ep */
    s_handler_t handler;
    int n_requests;
    /* what scenarios record or need */
    sp_msg_train_t train; /* last TRAIN received */
    int stale_first;      /* answer once with a wrong request id first */
    const char *error_text;
    uint32_t crc[2];      /* upload: CRC of what arrived, per part */
    uint64_t next_off[2]; /* upload: next expected offset per part */
    uint32_t announced_crc[2];
    uint64_t announced_size[2];
    int chunks, chunk_order_ok, store_ok;
    int end_polls;        /* upload_end requests seen */
    const uint8_t *model; /* model_get reply bytes */
    size_t model_len;
};

static void s_fake_init(s_fake_t *f, s_handler_t h)
{
    memset(f, 0, sizeof *f);
    s_mkdtemp(f->dir);
    snprintf(f->ep, sizeof f->ep, "ipc://%s/sock", f->dir);
    f->ctx = zmq_ctx_new();
    assert_non_null(f->ctx);
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_non_null(f->sock);
    assert_int_equal(sp_sock_configure(f->sock, ZMQ_ROUTER), SP_OK);
    assert_int_equal(zmq_bind(f->sock, f->ep), 0);
    f->handler = h;
    f->chunk_order_ok = 1;
    f->crc[0] = f->crc[1] = (uint32_t)crc32(0L, Z_NULL, 0);
}

static void s_fake_fini(s_fake_t *f)
{
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    (void)sp_file_remove_tree(f->dir);
}

static void s_reply(s_fake_t *f, const uint8_t *id, size_t id_len, sp_msg_t *m)
{
    assert_int_equal(sp_msg_send(f->sock, id, id_len, m), SP_OK);
}

/* Serves requests until the child exits (bounded). */
static void s_fake_serve(s_fake_t *f, pid_t pid, s_run_t *r)
{
    uint64_t deadline = s_now_ms() + S_CHILD_BOUND_MS;
    for (;;) {
        if (s_reaped(pid, &r->status)) {
            break;
        }
        if (s_now_ms() > deadline) {
            kill(pid, SIGKILL);
            s_wait_child(pid, NULL);
            fail_msg("child still running after %d ms", S_CHILD_BOUND_MS);
        }
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0) {
            continue;
        }
        uint8_t id[256];
        size_t id_len = sizeof id;
        sp_msg_t m;
        char err[256];
        int rc = sp_msg_recv(f->sock, ZMQ_DONTWAIT, id, &id_len, &m, err, sizeof err);
        if (rc == SP_E_TIMEOUT) {
            continue;
        }
        assert_int_equal(rc, SP_OK);
        f->n_requests++;
        f->handler(f, id, id_len, &m);
        sp_msg_fini(&m);
    }
    s_collect(f->dir, r);
}

/* Runs `spatium --coordinator EP --timeout-ms 3000 ARGS...` against f. */
static void s_client(s_fake_t *f, s_run_t *r, const char *const *args)
{
    const char *argv[32] = {"spatium", "--coordinator", f->ep, "--timeout-ms", "3000"};
    int n = 5;
    for (int i = 0; args[i]; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = s_spawn(f->dir, argv);
    s_fake_serve(f, pid, r);
}

/* Runs argv (a program of the build and its arguments) to its end, at most
 * S_CHILD_BOUND_MS, with nothing to serve it; its exit and output in r. */
static void s_run_alone(const char *dir, s_run_t *r, const char *const *argv)
{
    pid_t pid = s_spawn(dir, argv);
    uint64_t deadline = s_now_ms() + S_CHILD_BOUND_MS;
    while (!s_reaped(pid, &r->status)) {
        if (s_now_ms() > deadline) {
            kill(pid, SIGKILL);
            s_wait_child(pid, NULL);
            fail_msg("%s still running after %d ms", argv[0], S_CHILD_BOUND_MS);
        }
        zmq_poll(NULL, 0, 10);
    }
    s_collect(dir, r);
}

/* Runs the client with no coordinator to talk to (waits for it, bounded). */
static void s_client_alone(const char *dir, s_run_t *r, const char *const *args)
{
    const char *argv[32] = {"spatium"};
    int n = 1;
    for (int i = 0; args[i]; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    s_run_alone(dir, r, argv);
}

static uint64_t s_req_of(sp_msg_t *m)
{
    uint64_t *req = sp_msg_req(m);
    return req != NULL ? *req : 0;
}

/* ------------------------------------------------------------------------ */
/* canned replies                                                           */

static void s_fill_status(sp_job_status_t *s, uint64_t job)
{
    memset(s, 0, sizeof *s);
    s->job = job;
    snprintf(s->dataset, sizeof s->dataset, "blobs");
    snprintf(s->state, sizeof s->state, "running");
    s->epoch = 2;
    s->epochs = 5;
    s->step = 40;
    s->samples_seen = 2560;
    s->loss = 0.25;
    s->accuracy = 0.875;
    s->val_accuracy = NAN;
    snprintf(s->error, sizeof s->error, "quote \" and tab\t");
}

static void s_fill_metric(sp_metric_t *m, uint64_t index, const char *kind)
{
    memset(m, 0, sizeof *m);
    m->index = index;
    m->job = 7;
    snprintf(m->kind, sizeof m->kind, "%s", kind);
    m->epoch = (uint32_t)index / 2;
    m->step = index * 10;
    m->time_ms = index * 100;
    m->loss = 1.0 / (double)(index + 1);
    m->accuracy = 0.5 + 0.1 * (double)index;
    m->val_loss = NAN;
    m->val_accuracy = strcmp(kind, "epoch") == 0 ? 0.75 : NAN;
    m->samples_per_s = 1000.0 * (double)(index + 1);
    m->n_layers = 2;
    m->neurons[0] = 16;
    m->neurons[1] = 3;
    m->saturation[0] = 0.5f;
    m->saturation[1] = 0.25f;
    m->growth_candidates = 1;
    m->prune_candidates = 2;
    m->sparsity = 0.125f;
}

static void s_handle_status(s_fake_t *f, const uint8_t *id, size_t id_len, sp_msg_t *m)
{
    sp_msg_t r;
    if (f->error_text) {
        sp_msg_send_error(f->sock, id, id_len, SP_E_NOTFOUND, s_req_of(m), m->type, "%s",
                          f->error_text);
        return;
    }
    if (m->type == SP_MSG_STATUS) {
        sp_job_status_t jobs[2];
        sp_msg_init(&r, SP_MSG_R_STATUS);
        uint64_t job = m->u.job_req.job;
        s_fill_status(&jobs[0], job ? job : 7);
        s_fill_status(&jobs[1], 8);
        r.u.r_status.req = m->u.job_req.req;
        r.u.r_status.n = job ? 1 : 2;
        r.u.r_status.jobs = jobs;
        if (f->stale_first) {
            f->stale_first = 0;
            r.u.r_status.req += 1000;
            jobs[0].epoch = 99; /* must never be printed */
            s_reply(f, id, id_len, &r);
            r.u.r_status.req -= 1000;
            jobs[0].epoch = 2;
        }
        s_reply(f, id, id_len, &r);
    } else if (m->type == SP_MSG_METRICS) {
        sp_metric_t recs[3];
        s_fill_metric(&recs[0], 0, "step");
        s_fill_metric(&recs[1], 1, "step");
        s_fill_metric(&recs[2], 2, "epoch");
        if (m->u.job_req.job == 8) { /* the largest values the codec lets through */
            for (int k = 0; k < 3; k++) {
                recs[k].step = UINT64_MAX - (uint64_t)(2 - k);
                recs[k].loss = k == 1 ? NAN : DBL_MAX;
                recs[k].val_loss = DBL_MAX;
            }
        }
        sp_msg_init(&r, SP_MSG_R_METRICS);
        r.u.r_metrics.req = m->u.job_req.req;
        uint64_t since = m->u.job_req.since;
        r.u.r_metrics.n = since < 3 ? (uint32_t)(3 - since) : 0;
        r.u.r_metrics.records = since < 3 ? recs + since : NULL;
        s_reply(f, id, id_len, &r);
    } else if (m->type == SP_MSG_CANCEL) {
        sp_msg_init(&r, SP_MSG_R_OK);
        r.u.r_ok.req = m->u.job_req.req;
        s_reply(f, id, id_len, &r);
    } else if (m->type == SP_MSG_MODEL_GET) {
        sp_msg_init(&r, SP_MSG_R_MODEL);
        r.u.r_model.req = m->u.job_req.req;
        r.u.r_model.job = m->u.job_req.job;
        r.u.r_model.model.data = (uint8_t *)(uintptr_t)f->model;
        r.u.r_model.model.len = f->model_len;
        s_reply(f, id, id_len, &r);
    } else if (m->type == SP_MSG_DATASETS) {
        sp_dataset_info_t ds[2];
        memset(ds, 0, sizeof ds);
        snprintf(ds[0].name, sizeof ds[0].name, "reg");
        snprintf(ds[0].task, sizeof ds[0].task, "regress");
        snprintf(ds[1].name, sizeof ds[1].name, "cls");
        snprintf(ds[1].task, sizeof ds[1].task, "classify");
        ds[1].samples = 100;
        ds[1].features = 4;
        ds[1].classes = 3;
        sp_msg_init(&r, SP_MSG_R_DATASETS);
        r.u.r_datasets.req = m->u.plain_req.req;
        r.u.r_datasets.n = 2;
        r.u.r_datasets.datasets = ds;
        s_reply(f, id, id_len, &r);
    } else if (m->type == SP_MSG_TRAIN) {
        f->train = m->u.train;
        sp_msg_init(&r, SP_MSG_R_JOB);
        r.u.r_job.req = m->u.train.req;
        r.u.r_job.job = 12;
        s_reply(f, id, id_len, &r);
    } else {
        sp_msg_send_error(f->sock, id, id_len, SP_E_INPUT, s_req_of(m), m->type, "unexpected");
    }
}

static void s_handle_upload(s_fake_t *f, const uint8_t *id, size_t id_len, sp_msg_t *m)
{
    sp_msg_t r;
    sp_msg_init(&r, SP_MSG_R_UPLOAD);
    r.u.r_upload.req = s_req_of(m);
    r.u.r_upload.upload = 5;
    if (m->type == SP_MSG_UPLOAD_BEGIN) {
        for (int p = 0; p < 2; p++) {
            f->announced_crc[p] = m->u.upload_begin.part_crc[p];
            f->announced_size[p] = m->u.upload_begin.part_size[p];
        }
    } else if (m->type == SP_MSG_UPLOAD_CHUNK) {
        const sp_msg_upload_chunk_t *ch = &m->u.upload_chunk;
        assert_int_equal(ch->upload, 5);
        if (ch->offset != f->next_off[ch->part] || ch->data.len > SP_CHUNK_MAX) {
            f->chunk_order_ok = 0;
        }
        f->crc[ch->part] = (uint32_t)crc32(f->crc[ch->part], ch->data.data, (uInt)ch->data.len);
        f->next_off[ch->part] += ch->data.len;
        f->chunks++;
        r.u.r_upload.received = f->next_off[ch->part];
    } else if (m->type == SP_MSG_UPLOAD_END) {
        /* "still checking" (stored: false) twice, then the outcome */
        if (f->end_polls++ < 2) {
            r.u.r_upload.received = f->next_off[0];
        } else if (f->store_ok) {
            r.u.r_upload.stored = 1;
            snprintf(r.u.r_upload.info.name, sizeof r.u.r_upload.info.name, "up");
            snprintf(r.u.r_upload.info.task, sizeof r.u.r_upload.info.task, "classify");
            r.u.r_upload.info.samples = 3000;
            r.u.r_upload.info.features = 4;
            r.u.r_upload.info.classes = 3;
        } else {
            sp_msg_init(&r, SP_MSG_ERROR);
            r.u.error.code = 2; /* SP_E_INPUT */
            r.u.error.req = s_req_of(m);
            r.u.error.ref_type = SP_MSG_UPLOAD_END;
            snprintf(r.u.error.message, sizeof r.u.error.message,
                     "dataset 'up' refused: line 3: ragged");
        }
    } else {
        fail_msg("unexpected %s during an upload", sp_msg_type_name(m->type));
    }
    s_reply(f, id, id_len, &r);
}

/* ------------------------------------------------------------------------ */
/* tests without a coordinator                                              */

static void test_client_usage_errors_exit_2(void **state)
{
    (void)state;
    char dir[64];
    s_mkdtemp(dir);
    static const char *const cases[][10] = {
        {"frobnicate", NULL},
        {"--bogus", "status", NULL},
        {"status", "12x", NULL},
        {"status", "1", "2", NULL},
        {"train", "--dataset", "d", "--layers", "4,8,3", "--epochs", "abc", NULL},
        {"train", "--dataset", "d", "--layers", "4", NULL},
        {"train", "--dataset", "d", "--layers", "4,8,3", "--bits", "3", NULL},
        {"train", "--layers", "4,8,3", NULL},
    };
    static const char *const more[][10] = {
        {"train", "--dataset", "d", "--layers", "4,8,3", "--batch", "8", "--partition", NULL},
        {"model", "3", NULL},
        {"submit", "only-a-name", NULL},
        {"submit", "bad/name", "x.csv", NULL},
        {"submit", "n", "data.bin", NULL},
        {"metrics", "3", "--format", "xml", NULL},
        {"--timeout-ms", "0", "status", NULL},
        {"eval", "model.bin", NULL},
    };
    for (int set = 0; set < 2; set++) {
        for (size_t i = 0; i < 8; i++) {
            const char *const *args = set == 0 ? cases[i] : more[i];
            s_run_t *r = malloc(sizeof *r);
            assert_non_null(r);
            s_client_alone(dir, r, args);
            if (r->status != 2) {
                fail_msg("`spatium %s %s ...` exited %d, expected 2 (stderr: %s)", args[0],
                         args[1] ? args[1] : "", r->status, r->err);
            }
            assert_non_null(strstr(r->err, "spatium: "));
            free(r);
        }
    }
    (void)sp_file_remove_tree(dir);
}

static void test_client_help_exits_0(void **state)
{
    (void)state;
    char dir[64];
    s_mkdtemp(dir);
    static const char *const cmds[] = {"submit",   "train",   "status", "workers",
                                       "watch",    "metrics", "model",  "cancel",
                                       "datasets", "eval",    "demo",   "inspect"};
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *top[] = {"--help", NULL};
    s_client_alone(dir, r, top);
    assert_int_equal(r->status, 0);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        assert_non_null(strstr(r->out, cmds[i]));
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        s_client_alone(dir, r, args);
        assert_int_equal(r->status, 0);
        assert_non_null(strstr(r->out, "usage: spatium"));
    }
    const char *wargs[] = {"spatium-worker", "--help", NULL};
    pid_t pid = s_spawn(dir, wargs);
    int st = -1;
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *wbad[] = {"spatium-worker", "--threads", "zero", NULL};
    pid = s_spawn(dir, wbad);
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    /* a name the protocol refuses is refused up front, not retried for ever */
    const char *wdot[] = {"spatium-worker", "--name", ".hidden", NULL};
    pid = s_spawn(dir, wdot);
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    free(r);
    (void)sp_file_remove_tree(dir);
}

static void test_client_no_coordinator_exits_3(void **state)
{
    (void)state;
    char dir[64], ep[128];
    s_mkdtemp(dir);
    snprintf(ep, sizeof ep, "ipc://%s/nobody-here", dir);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"--coordinator", ep, "--timeout-ms", "200", "status", NULL};
    s_client_alone(dir, r, args);
    assert_int_equal(r->status, 3);
    assert_non_null(strstr(r->err, "no reply from the coordinator"));
    assert_string_equal(r->out, "");

    /* --json: still exactly one JSON object, naming the failure */
    const char *jargs[] = {"--json", "--coordinator", ep, "--timeout-ms", "200", "workers", NULL};
    s_client_alone(dir, r, jargs);
    assert_int_equal(r->status, 3);
    assert_non_null(strstr(r->out, "\"exit\":3"));
    assert_true(r->out[0] == '{');

    /* tcp to a closed port, timeout taken from the environment's endpoint */
    setenv("SPATIUM_COORDINATOR", "tcp://127.0.0.1:9", 1);
    const char *targs[] = {"--timeout-ms", "200", "datasets", NULL};
    s_client_alone(dir, r, targs);
    unsetenv("SPATIUM_COORDINATOR");
    assert_int_equal(r->status, 3);
    assert_non_null(strstr(r->err, "tcp://127.0.0.1:9"));
    free(r);
    (void)sp_file_remove_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* eval on a saved model                                                    */

static sp_network_t *s_make_net(const uint32_t *sizes, size_t n, uint64_t seed)
{
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    cfg.seed = seed;
    sp_network_t *net = sp_network_new(sizes, n, &cfg);
    assert_non_null(net);
    return net;
}

/* Writes rows x 4 features in [0, 1] and a label column; X and labels kept. */
static void s_write_csv(const char *path, size_t rows, int regress, float *X, float *labels)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,b,c,d,label\n");
    uint64_t s = 12345;
    for (size_t i = 0; i < rows; i++) {
        for (int k = 0; k < 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            float v = (float)((s >> 40) % 1000) / 1000.0f;
            X[i * 4 + k] = v;
            fprintf(f, "%.3f,", v);
        }
        if (regress) {
            labels[i] = X[i * 4] * 0.5f - X[i * 4 + 1] * 0.25f;
            fprintf(f, "%.9g\n", labels[i]);
        } else {
            labels[i] = (float)(i % 3);
            fprintf(f, "%d\n", (int)(i % 3));
        }
    }
    assert_int_equal(fclose(f), 0);
}

static double s_json_number(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) {
        fail_msg("no %s in %s", key, json);
    }
    return strtod(p + strlen(pat), NULL);
}

/* 1 when some process's command line mentions text (the demo's children
 * name its directory in their endpoints). */
static int s_any_process_mentions(const char *text)
{
    DIR *proc = opendir("/proc");
    assert_non_null(proc);
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(proc)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') {
            continue;
        }
        char path[300], cmd[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            continue; /* gone meanwhile */
        }
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t k = 0; k < n; k++) {
            cmd[k] = cmd[k] == '\0' ? ' ' : cmd[k];
        }
        cmd[n] = '\0';
        found = strstr(cmd, text) != NULL;
    }
    closedir(proc);
    return found;
}

/* The README's run command, on the generated dataset: it trains to a
 * useful accuracy with both workers up, then leaves no process and no
 * directory behind. */
static void test_client_demo_trains_and_cleans_up(void **state)
{
    (void)state;
    char dir[64];
    s_mkdtemp(dir);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"demo", "--builtin", "--epochs", "3", NULL};
    s_client_alone(dir, r, args);
    assert_int_equal(r->status, 0);
    const char *at = strstr(r->out, " in /tmp/spatium-demo-");
    assert_non_null(at);
    char demo_dir[64];
    assert_int_equal(sscanf(at, " in %63s", demo_dir), 1);
    const char *acc = strstr(r->out, "final validation accuracy: ");
    assert_non_null(acc);
    assert_true(strtod(acc + strlen("final validation accuracy: "), NULL) >= 0.9);
    assert_non_null(strstr(r->out, "worker demo-worker-1: "));
    assert_non_null(strstr(r->out, "worker demo-worker-2: "));
    assert_non_null(strstr(r->out, "coordinator and workers stopped"));
    assert_int_equal(access(demo_dir, F_OK), -1);
    assert_false(s_any_process_mentions(demo_dir));

    const char *jargs[] = {"--json", "demo", "--builtin", "--epochs", "3", NULL};
    s_client_alone(dir, r, jargs);
    assert_int_equal(r->status, 0);
    assert_true(s_json_number(r->out, "val_accuracy") >= 0.9);
    assert_int_equal((int)s_json_number(r->out, "workers"), 2);
    assert_int_equal((int)s_json_number(r->out, "epochs"), 3);
    assert_int_equal((int)s_json_number(r->out, "samples"), 3 * 4000);
    free(r);
    (void)sp_file_remove_tree(dir);
}

/* spatium-bench's distributed path still measures: one round of the
 * batch-2048 comparison (the bench's own upload, one worker, two workers
 * splitting steps) must give a finite, positive figure on every line. It
 * speaks the protocol through its own code, which nothing else exercises;
 * no speed is judged here. */
static void test_client_bench_distributed_path_measures(void **state)
{
    (void)state;
    char dir[64];
    s_mkdtemp(dir);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"spatium-bench", "--filter", "dist_speedup_2w_b2048", NULL};
    assert_int_equal(setenv("SPATIUM_BENCH_ROUNDS", "1", 1), 0);
    s_run_alone(dir, r, args);
    assert_int_equal(unsetenv("SPATIUM_BENCH_ROUNDS"), 0);
    assert_int_equal(r->status, 0);
    int figures = 0;
    for (char *line = strtok(r->out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            continue;
        }
        char name[128], unit[32];
        double v = NAN;
        assert_int_equal(sscanf(line, "%127s %lf %31s", name, &v, unit), 3);
        if (!(isfinite(v) && v > 0)) {
            fail_msg("spatium-bench: %s", line);
        }
        figures++;
    }
    assert_int_equal(figures, 3); /* 1 worker, 2 workers, their ratio */
    free(r);
    (void)sp_file_remove_tree(dir);
}

static void test_client_eval_on_saved_model(void **state)
{
    (void)state;
    char dir[64], model[128], csv[128];
    s_mkdtemp(dir);
    snprintf(model, sizeof model, "%s/model.spm", dir);
    snprintf(csv, sizeof csv, "%s/data.csv", dir);
    enum { ROWS = 300 };
    float *X = malloc(ROWS * 4 * sizeof *X), *labels = malloc(ROWS * sizeof *labels);
    float *Y = malloc(ROWS * 3 * sizeof *Y);
    assert_true(X && labels && Y);

    /* classification: accuracy equals argmax computed in process */
    const uint32_t sizes[] = {4, 8, 3};
    sp_network_t *net = s_make_net(sizes, 3, 7);
    assert_int_equal(sp_network_save_file(net, 0, model), SP_OK);
    s_write_csv(csv, ROWS, 0, X, labels);
    sp_network_t *loaded = NULL;
    char err[256];
    assert_int_equal(sp_network_load_file(model, &loaded, err, sizeof err), SP_OK);
    assert_int_equal(sp_network_forward(loaded, X, ROWS, Y), SP_OK);
    int correct = 0;
    for (size_t i = 0; i < ROWS; i++) {
        int best = 0;
        for (int k = 1; k < 3; k++) {
            best = Y[i * 3 + k] > Y[i * 3 + best] ? k : best;
        }
        correct += (float)best == labels[i];
    }
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"--json", "eval", model, csv, NULL};
    s_client_alone(dir, r, args);
    assert_int_equal(r->status, 0);
    s_assert_near(s_json_number(r->out, "accuracy"), (double)correct / ROWS, 1e-9);
    s_assert_near(s_json_number(r->out, "samples"), ROWS, 0);
    sp_network_destroy(&net);
    sp_network_destroy(&loaded);

    /* regression: MSE of the first output */
    const uint32_t rsizes[] = {4, 6, 1};
    net = s_make_net(rsizes, 3, 9);
    assert_int_equal(sp_network_save_file(net, 0, model), SP_OK);
    s_write_csv(csv, ROWS, 1, X, labels);
    assert_int_equal(sp_network_load_file(model, &loaded, err, sizeof err), SP_OK);
    assert_int_equal(sp_network_forward(loaded, X, ROWS, Y), SP_OK);
    double sq = 0;
    for (size_t i = 0; i < ROWS; i++) {
        double e = (double)Y[i] - (double)labels[i];
        sq += e * e;
    }
    const char *rargs[] = {"--json", "eval", model, csv, "--task", "regress", NULL};
    s_client_alone(dir, r, rargs);
    assert_int_equal(r->status, 0);
    double mse = s_json_number(r->out, "mse");
    assert_true(fabs(mse - sq / ROWS) <= 1e-6 * fmax(1.0, sq / ROWS));

    /* a model of the wrong width, and a corrupt model file: exit 1, one line */
    const uint32_t wide[] = {5, 4, 3};
    sp_network_t *bad = s_make_net(wide, 3, 1);
    assert_int_equal(sp_network_save_file(bad, 0, model), SP_OK);
    const char *cargs[] = {"eval", model, csv, "--task", "regress", NULL};
    s_client_alone(dir, r, cargs);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "inputs"));
    s_write_file(model, "not a model at all", 18);
    s_client_alone(dir, r, cargs);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "spatium: "));
    const char *missing[] = {"eval", model, "/nonexistent/data.csv", NULL};
    s_client_alone(dir, r, missing);
    assert_int_equal(r->status, 1);

    sp_network_destroy(&bad);
    sp_network_destroy(&net);
    sp_network_destroy(&loaded);
    free(r);
    free(X);
    free(labels);
    free(Y);
    (void)sp_file_remove_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* against the fake coordinator                                             */

static void test_client_status_json_and_text(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    f.stale_first = 1; /* a reply to an older request is skipped */
    const char *one[] = {"--json", "status", "7", NULL};
    s_client(&f, r, one);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "\"job\":7,"));
    assert_non_null(strstr(r->out, "\"state\":\"running\""));
    assert_non_null(strstr(r->out, "\"epoch\":2,"));
    assert_non_null(strstr(r->out, "\"samples_seen\":2560"));
    assert_non_null(strstr(r->out, "\"accuracy\":0.875"));
    assert_non_null(strstr(r->out, "\"val_accuracy\":null")); /* NaN */
    assert_non_null(strstr(r->out, "\"error\":\"quote \\\" and tab\\t\""));
    assert_null(strchr(strchr(r->out, '\n') + 1, '{')); /* exactly one object */

    const char *all[] = {"--json", "status", NULL};
    s_client(&f, r, all);
    assert_int_equal(r->status, 0);
    assert_true(strncmp(r->out, "{\"jobs\":[{\"job\":7,", 18) == 0);
    assert_non_null(strstr(r->out, "{\"job\":8,"));

    const char *text[] = {"status", NULL};
    s_client(&f, r, text);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "JOB"));
    assert_non_null(strstr(r->out, "running"));

    const char *cancel[] = {"cancel", "7", "--json", NULL};
    s_client(&f, r, cancel);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "\"cancelled\":true"));
    free(r);
    s_fake_fini(&f);
}

static void test_client_error_reply_exits_1(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    f.error_text = "no job 99";
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"status", "99", NULL};
    s_client(&f, r, args);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "no job 99"));
    assert_null(strchr(strchr(r->err, '\n') + 1, '\n')); /* one line */
    const char *jargs[] = {"--json", "cancel", "99", NULL};
    s_client(&f, r, jargs);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->out, "{\"error\":\"cancel: no job 99\",\"exit\":1}"));
    free(r);
    s_fake_fini(&f);
}

static void test_client_metrics_formats(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);

    const char *json[] = {"metrics", "7", NULL};
    s_client(&f, r, json);
    assert_int_equal(r->status, 0);
    assert_true(strncmp(r->out, "{\"job\":7,\"records\":[{\"index\":0,", 31) == 0);
    assert_non_null(strstr(r->out, "\"kind\":\"epoch\""));
    assert_non_null(strstr(r->out, "\"neurons\":[16,3]"));
    assert_non_null(strstr(r->out, "\"val_loss\":null"));

    const char *csv[] = {"metrics", "7", "--format", "csv", NULL};
    s_client(&f, r, csv);
    assert_int_equal(r->status, 0);
    assert_true(strncmp(r->out, "index,job,kind,epoch,step,", 26) == 0);
    int lines = 0;
    for (const char *p = r->out; *p; p++) {
        lines += *p == '\n';
    }
    assert_int_equal(lines, 4); /* header + 3 records */
    assert_non_null(strstr(r->out, "\n2,7,epoch,1,20,200,"));
    assert_non_null(strstr(r->out, ",16;3,0.5;0.25\n"));

    const char *prom[] = {"metrics", "7", "--format=prometheus", NULL};
    s_client(&f, r, prom);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "# HELP spatium_loss "));
    assert_non_null(strstr(r->out, "# TYPE spatium_loss gauge\n"));
    assert_non_null(strstr(r->out, "spatium_loss{job=\"7\",kind=\"step\"} 0.5\n"));
    assert_non_null(strstr(r->out, "spatium_val_accuracy{job=\"7\",kind=\"epoch\"} 0.75\n"));
    assert_null(strstr(r->out, "spatium_val_accuracy{job=\"7\",kind=\"step\"}")); /* NaN left out */
    assert_non_null(strstr(r->out, "spatium_neurons{job=\"7\",kind=\"epoch\",layer=\"2\"} 3\n"));
    assert_non_null(strstr(r->out, "spatium_metric_records_total{job=\"7\"} 3\n"));
    /* every sample line names a metric that has a TYPE line */
    for (const char *p = r->out; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (*p != '#') {
            char name[64];
            size_t n = strcspn(p, "{ ");
            assert_true(n < sizeof name - 1);
            memcpy(name, p, n);
            name[n] = '\0';
            char type[96];
            snprintf(type, sizeof type, "# TYPE %s ", name);
            assert_non_null(strstr(r->out, type));
        }
        p = nl + 1;
    }
    free(r);
    s_fake_fini(&f);
}

/* Pixels of colour (r, g, b) in rows y0..y1-1 of an RGB picture w wide. */
static size_t s_count_rgb(const uint8_t *px, unsigned w, unsigned y0, unsigned y1, uint8_t r,
                          uint8_t g, uint8_t b)
{
    size_t n = 0;
    for (size_t i = (size_t)y0 * w; i < (size_t)y1 * w; i++) {
        n += px[3 * i] == r && px[3 * i + 1] == g && px[3 * i + 2] == b;
    }
    return n;
}

/* Reads a PNG written by the client into RGB (free it); *w, *h its size. */
static uint8_t *s_read_png(const char *path, unsigned *w, unsigned *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&img, path));
    img.format = PNG_FORMAT_RGB;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    assert_non_null(px);
    assert_true(png_image_finish_read(&img, NULL, px, 0, NULL));
    *w = img.width;
    *h = img.height;
    return px;
}

static int s_px_is(const uint8_t *px, unsigned w, int x, int y, uint8_t r, uint8_t g, uint8_t b)
{
    const uint8_t *p = px + ((size_t)y * w + (size_t)x) * 3;
    return p[0] == r && p[1] == g && p[2] == b;
}

/* --format png draws the curves into a PNG file: the step records as a
 * light line, epoch records and validation in their own colours, in a loss
 * panel and (the job classifies) an accuracy panel below it. */
static void test_client_metrics_png(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    char path[128], bad[160];
    snprintf(path, sizeof path, "%s/curves.png", f.dir);
    snprintf(bad, sizeof bad, "%s/no-such-dir/curves.png", f.dir);

    const char *no_out[] = {"metrics", "7", "--format", "png", NULL};
    s_client(&f, r, no_out);
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, "-o FILE"));
    const char *out_no_png[] = {"metrics", "7", "-o", path, NULL};
    s_client(&f, r, out_no_png);
    assert_int_equal(r->status, 2);
    const char *unwritable[] = {"metrics", "7", "--format", "png", "-o", bad, NULL};
    s_client(&f, r, unwritable);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "no-such-dir"));
    assert_int_equal(access(path, F_OK), -1);

    const char *args[] = {"--json", "metrics", "7", "--format", "png", "-o", path, NULL};
    s_client(&f, r, args);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "\"records\":3"));
    unsigned w, h;
    uint8_t *px = s_read_png(path, &w, &h);
    assert_int_equal(w, 900);
    assert_int_equal(h, 620);
    /* the legend is above the loss panel (rows < 44): below it, only data
     * has these colours. Loss panel: rows 44..278, accuracy: 330..563. */
    assert_true(s_count_rgb(px, 900, 44, 300, 160, 188, 232) > 20); /* the step loss line */
    assert_true(s_count_rgb(px, 900, 44, 300, 31, 90, 180) >= 49);  /* the epoch loss point */
    assert_int_equal(s_count_rgb(px, 900, 44, 300, 226, 112, 18), 0); /* no validation loss */
    assert_true(s_count_rgb(px, 900, 320, 620, 160, 188, 232) > 20);
    assert_true(s_count_rgb(px, 900, 320, 620, 31, 90, 180) >= 49);
    assert_true(s_count_rgb(px, 900, 320, 620, 226, 112, 18) >= 49); /* validation accuracy */
    free(px);

    /* extreme values (a loss of DBL_MAX, the last step numbers) still give
     * a picture, within the child's time bound, with the epoch's losses on
     * the loss axis (validation, drawn last, on top; they went off an
     * infinite axis before) */
    const char *extreme[] = {"metrics", "8", "--format", "png", "-o", path, NULL};
    s_client(&f, r, extreme);
    assert_int_equal(r->status, 0);
    px = s_read_png(path, &w, &h);
    assert_int_equal(w, 900);
    assert_true(s_count_rgb(px, 900, 44, 60, 226, 112, 18) >= 16); /* its mark, at the top */
    free(px);
    free(r);
    s_fake_fini(&f);
}

/* inspect reads a model file locally: its layers as text or JSON, a
 * neuron's activation map (a cell is grey exactly when it was never hit)
 * and a slice of its memory (a cell is grey exactly when it lies past the
 * neuron's inputs); bad layer, neuron and slice numbers are usage errors. */
static void test_client_inspect_model(void **state)
{
    (void)state;
    char dir[64], model[128], act[128], heat[128];
    s_mkdtemp(dir);
    snprintf(model, sizeof model, "%s/m.spm", dir);
    snprintf(act, sizeof act, "%s/act.png", dir);
    snprintf(heat, sizeof heat, "%s/heat.png", dir);
    enum { IN = 20, ROWS = 32 };
    const uint32_t sizes[] = {IN, 6, 3};
    sp_network_t *net = s_make_net(sizes, 3, 5);
    float X[ROWS * IN], T[ROWS * 3];
    uint64_t s = 99;
    for (int step = 0; step < 4; step++) { /* a few steps: hits in some cells */
        for (int i = 0; i < ROWS * IN; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            X[i] = (float)((s >> 40) % 1000) / 1000.0f;
        }
        for (int i = 0; i < ROWS * 3; i++) {
            T[i] = i % 3 == (i / 3) % 3 ? 1.0f : 0.0f;
        }
        float loss;
        assert_int_equal(sp_network_train_batch(net, X, T, ROWS, &loss), SP_OK);
    }
    assert_int_equal(sp_network_save_file(net, 0, model), SP_OK);
    sp_network_destroy(&net);
    char err[256];
    assert_int_equal(sp_network_load_file(model, &net, err, sizeof err), SP_OK);
    const sp_neuron_t *nr = &sp_network_layer(net, 0)->nr[2];

    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *json[] = {"--json", "inspect", model, NULL};
    s_client_alone(dir, r, json);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "{\"layer\":1,\"inputs\":20,\"neurons\":6,"));
    assert_non_null(strstr(r->out, "{\"layer\":2,\"inputs\":6,\"neurons\":3,"));

    const char *pics[] = {"inspect", model,  "--neuron", "2",   "--activations",
                          act,       "--heatmap", heat,  "--z", "1", NULL};
    s_client_alone(dir, r, pics);
    assert_int_equal(r->status, 0);
    unsigned w, h;
    uint8_t *px = s_read_png(act, &w, &h);
    int hit = 0, dead = 0;
    for (int k = 0; k < SP_ACTMAP_CELLS; k++) {
        int x = SP_INSPECT_X0 + (k % 8) * SP_INSPECT_MAP_CELL + SP_INSPECT_MAP_CELL / 2;
        int y = SP_INSPECT_Y0 + (k / 8) * SP_INSPECT_MAP_CELL + SP_INSPECT_MAP_CELL / 2;
        int grey = s_px_is(px, w, x, y, SP_INSPECT_DEAD_R, SP_INSPECT_DEAD_G, SP_INSPECT_DEAD_B);
        assert_int_equal(grey, nr->map.hits[k] == 0);
        hit += nr->map.hits[k] > 0;
        dead += nr->map.hits[k] == 0;
    }
    assert_true(hit > 0 && dead > 0); /* both kinds were checked */
    free(px);
    /* 20 inputs: codes 0..19 fill part of a 4 x 4 x 4 cube */
    px = s_read_png(heat, &w, &h);
    int cell = sp_inspect_heat_cell(4), inside = 0;
    for (unsigned y = 0; y < 4; y++) {
        for (unsigned x = 0; x < 4; x++) {
            int cx = SP_INSPECT_X0 + (int)x * cell + cell / 4, cy = SP_INSPECT_Y0 + (int)y * cell + cell / 4;
            int grey = s_px_is(px, w, cx, cy, SP_INSPECT_OUTSIDE_R, SP_INSPECT_OUTSIDE_G,
                               SP_INSPECT_OUTSIDE_B);
            int in = sp_morton_encode_xyz(x, y, 1) < IN;
            assert_int_equal(grey, !in);
            inside += in;
        }
    }
    assert_true(inside > 0 && inside < 16);
    free(px);

    const char *bad_layer[] = {"inspect", model, "--layer", "3", NULL};
    s_client_alone(dir, r, bad_layer);
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, "has 2 layers"));
    const char *bad_neuron[] = {"inspect", model, "--layer", "2", "--neuron", "3", NULL};
    s_client_alone(dir, r, bad_neuron);
    assert_int_equal(r->status, 2);
    const char *bad_z[] = {"inspect", model, "--heatmap", heat, "--z", "4", NULL};
    s_client_alone(dir, r, bad_z);
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, "slices 0 to 3"));
    const char *missing[] = {"inspect", "no-such.spm", NULL};
    s_client_alone(dir, r, missing);
    assert_int_equal(r->status, 1);
    free(r);
    sp_network_destroy(&net);
    (void)sp_file_remove_tree(dir);
}

static void test_client_train_sends_job(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"--json", "train", "--dataset", "cls", "--layers", "4,16,3", NULL};
    s_client(&f, r, args);
    assert_int_equal(r->status, 0);
    assert_string_equal(r->out, "{\"job\":12}\n");
    assert_string_equal(f.train.dataset, "cls");
    assert_int_equal(f.train.n_layers, 3);
    assert_int_equal(f.train.layers[1], 16);
    assert_int_equal(f.train.bits, 4);
    assert_int_equal(f.train.epochs, 5);
    assert_int_equal(f.train.batch, 64);
    assert_int_equal(f.train.partition, 64); /* min(128, batch) */
    assert_int_equal(f.train.min_node, 0);   /* the coordinator chooses */
    s_assert_near(f.train.lr, 0.02, 1e-12);
    s_assert_near(f.train.momentum, 0.9, 1e-12);
    assert_int_equal(f.train.seed, 1);
    assert_string_equal(f.train.mode, "backprop");
    assert_string_equal(f.train.loss, "xent");
    assert_int_equal(f.train.growth_every, 0);

    const char *reg[] = {"train",
                         "--dataset",
                         "reg",
                         "--layers",
                         "4,3,1",
                         "--bits",
                         "2",
                         "--batch",
                         "16",
                         "--lr=0.1",
                         "--mode",
                         "local",
                         "--seed",
                         "99",
                         "--validation",
                         "cls",
                         "--growth-every",
                         "10",
                         "--prune-every",
                         "20",
                         "--min-node",
                         "48",
                         NULL};
    s_client(&f, r, reg);
    assert_int_equal(r->status, 0);
    assert_string_equal(r->out, "12\n");
    assert_string_equal(f.train.loss, "mse"); /* a regression dataset */
    assert_int_equal(f.train.bits, 2);
    assert_int_equal(f.train.partition, 16);
    assert_string_equal(f.train.mode, "local");
    assert_int_equal(f.train.seed, 99);
    assert_string_equal(f.train.validation, "cls");
    assert_int_equal(f.train.growth_every, 10);
    assert_int_equal(f.train.prune_every, 20);
    assert_int_equal(f.train.min_node, 48);
    free(r);
    s_fake_fini(&f);
}

static void test_client_submit_streams_checked_chunks(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_upload);
    char csv[128];
    snprintf(csv, sizeof csv, "%s/data.csv", f.dir);
    /* about 2.5 chunks of CSV */
    size_t len = SP_CHUNK_MAX * 5 / 2;
    char *text = malloc(len);
    assert_non_null(text);
    for (size_t i = 0; i < len; i++) {
        text[i] = "0123456789,\n"[i % 12];
    }
    s_write_file(csv, text, len);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)text, (uInt)len);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    f.store_ok = 1;
    const char *args[] = {"--json", "submit", "up", csv, NULL};
    s_client(&f, r, args);
    assert_int_equal(r->status, 0);
    assert_int_equal(f.chunks, 3);
    assert_true(f.chunk_order_ok);
    assert_int_equal(f.announced_size[0], len);
    assert_int_equal(f.announced_crc[0], crc);
    assert_int_equal(f.crc[0], crc);
    assert_non_null(strstr(r->out, "\"samples\":3000"));
    assert_int_equal(f.end_polls, 3); /* asked again while it was checked */

    /* refused after its check: exit 1 with the coordinator's reason */
    memset(f.next_off, 0, sizeof f.next_off);
    f.store_ok = 0;
    f.end_polls = 0;
    const char *again[] = {"submit", "up", csv, NULL};
    s_client(&f, r, again);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "refused: line 3: ragged"));
    assert_int_equal(f.end_polls, 3);
    free(text);
    free(r);
    s_fake_fini(&f);
}

static void test_client_model_written(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    static const uint8_t bytes[] = "pretend model bytes \x00\x01\x02";
    f.model = bytes;
    f.model_len = sizeof bytes;
    char path[128];
    snprintf(path, sizeof path, "%s/out.spm", f.dir);
    s_run_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *args[] = {"model", "7", "-o", path, NULL};
    s_client(&f, r, args);
    assert_int_equal(r->status, 0);
    char got[64];
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    assert_int_equal(fread(got, 1, sizeof got, in), sizeof bytes);
    fclose(in);
    assert_memory_equal(got, bytes, sizeof bytes);
    free(r);
    s_fake_fini(&f);
}

/* ------------------------------------------------------------------------ */
/* the worker against the fake coordinator                                  */

/* Receives one message on f (bounded wait); fails on silence. */
static void s_expect(s_fake_t *f, sp_msg_type_t type, uint8_t *id, size_t *id_len, sp_msg_t *m)
{
    uint64_t deadline = s_now_ms() + S_CHILD_BOUND_MS;
    for (;;) {
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        assert_true(s_now_ms() < deadline);
        if (zmq_poll(&it, 1, 50) <= 0) {
            continue;
        }
        char err[256];
        size_t cap = *id_len;
        assert_int_equal(sp_msg_recv(f->sock, ZMQ_DONTWAIT, id, id_len, m, err, sizeof err), SP_OK);
        if (m->type == type) {
            return;
        }
        *id_len = cap;
        sp_msg_fini(m); /* heartbeats and the like */
    }
}

/* Nothing of the given type (nor an ERROR) arrives within ms. */
static void s_expect_none(s_fake_t *f, sp_msg_type_t type, uint64_t ms)
{
    uint64_t end = s_now_ms() + ms;
    while (s_now_ms() < end) {
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) {
            continue;
        }
        uint8_t id[256];
        size_t id_len = sizeof id;
        char err[256];
        sp_msg_t m;
        assert_int_equal(sp_msg_recv(f->sock, ZMQ_DONTWAIT, id, &id_len, &m, err, sizeof err),
                         SP_OK);
        sp_msg_type_t got = m.type;
        sp_msg_fini(&m);
        if (got == type || got == SP_MSG_ERROR) {
            fail_msg("unexpected %s", sp_msg_type_name(got));
        }
    }
}

/* What the fake coordinator sends a worker: job 1's model at a version, a
 * task for one node of a step, and the summed gradient of a step. */
static void s_send_model(s_fake_t *f, const uint8_t *id, size_t id_len, uint64_t version,
                         uint8_t *model, size_t len)
{
    sp_msg_t out;
    sp_msg_init(&out, SP_MSG_MODEL);
    out.u.model.job = 1;
    out.u.model.version = version;
    out.u.model.model.data = model;
    out.u.model.model.len = len;
    s_reply(f, id, id_len, &out);
}

static void s_send_task(s_fake_t *f, const uint8_t *id, size_t id_len, const char *dataset,
                        uint64_t sum, uint64_t version, uint32_t partition,
                        uint32_t n_partitions, uint32_t partition_size, uint32_t batch,
                        uint32_t *idx, uint32_t n, int sync)
{
    sp_msg_t out;
    sp_msg_init(&out, SP_MSG_TASK);
    out.u.task.job = 1;
    out.u.task.version = version;
    out.u.task.step = version;
    out.u.task.partition = partition;
    out.u.task.n_partitions = n_partitions;
    out.u.task.partition_size = partition_size;
    out.u.task.batch = batch;
    snprintf(out.u.task.dataset, sizeof out.u.task.dataset, "%s", dataset);
    out.u.task.checksum = sum;
    out.u.task.n_indices = n;
    out.u.task.indices = idx;
    out.u.task.sync = sync;
    s_reply(f, id, id_len, &out);
}

/* The next message is a MODEL of job 1 at `version` whose bytes are those of
 * want saved with its training state. */
static void s_expect_model(s_fake_t *f, uint8_t *id, uint64_t version, const sp_network_t *want)
{
    size_t id_len = 256;
    sp_msg_t m;
    s_expect(f, SP_MSG_MODEL, id, &id_len, &m);
    assert_int_equal(m.u.model.job, 1);
    assert_int_equal(m.u.model.version, version);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sp_network_save_buffer(want, 1, &buf, &len), SP_OK);
    assert_int_equal(m.u.model.model.len, len);
    assert_memory_equal(m.u.model.model.data, buf, len);
    free(buf);
    sp_msg_fini(&m);
}

static void s_send_apply(s_fake_t *f, const uint8_t *id, size_t id_len, uint64_t version,
                         uint32_t n_samples, float *grad, size_t n_grad, uint32_t *hits,
                         size_t n_hits)
{
    sp_msg_t out;
    sp_msg_init(&out, SP_MSG_APPLY);
    out.u.apply.job = 1;
    out.u.apply.version = version;
    out.u.apply.step = version - 1;
    out.u.apply.n_samples = n_samples;
    out.u.apply.n_grad = (uint32_t)n_grad;
    out.u.apply.grad = grad;
    out.u.apply.n_hits = (uint32_t)n_hits;
    out.u.apply.hits = hits;
    s_reply(f, id, id_len, &out);
}

static void test_client_worker_computes_like_in_process(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    const char *args[] = {
        "spatium-worker", "--coordinator", f.ep, "--threads", "2", "--name", "tw", NULL};
    pid_t pid = s_spawn(f.dir, args);
    uint8_t id[256];
    size_t id_len = sizeof id;
    sp_msg_t m;
    s_expect(&f, SP_MSG_HELLO, id, &id_len, &m);
    assert_string_equal(m.u.hello.name, "tw");
    assert_int_equal(m.u.hello.threads, 2);
    sp_msg_fini(&m);

    sp_msg_t out;
    sp_msg_init(&out, SP_MSG_WELCOME);
    out.u.welcome.worker_id = 1;
    /* beats far apart: nothing the worker holds may wait for a heartbeat */
    out.u.welcome.heartbeat_ms = 60000;
    out.u.welcome.liveness = 10;
    s_reply(&f, id, id_len, &out);

    /* a dataset of 40 samples and a model */
    enum { N = 40 };
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    d.task = SP_TASK_CLASSIFY;
    d.n_samples = N;
    d.n_features = 4;
    d.n_classes = 3;
    d.n_targets = 3;
    d.x = malloc(N * 4 * sizeof *d.x);
    d.y = malloc(N * sizeof *d.y);
    for (size_t i = 0; i < N * 4; i++) {
        d.x[i] = (float)((i * 37) % 100) / 100.0f;
    }
    for (size_t i = 0; i < N; i++) {
        d.y[i] = (float)(i % 3);
    }
    uint8_t *ser = NULL;
    size_t ser_len = 0;
    assert_int_equal(sp_dataset_serialize(&d, &ser, &ser_len), SP_OK);
    uint64_t sum = ((uint64_t)ser_len << 32) | crc32(crc32(0L, Z_NULL, 0), ser, (uInt)ser_len);
    const uint32_t sizes[] = {4, 8, 3};
    sp_network_t *net = s_make_net(sizes, 3, 5);
    uint8_t *model = NULL;
    size_t model_len = 0;
    assert_int_equal(sp_network_save_buffer(net, 1, &model, &model_len), SP_OK);

    /* the task first, then the model: the worker must wait for the model.
     * The task is the node of partitions 2..4 (4 + 4 + 2 samples) at the end
     * of an 18-sample step. */
    uint32_t idx[10] = {3, 1, 4, 15, 9, 26, 5, 35, 8, 39};
    s_send_task(&f, id, id_len, "toy", sum, 1, 2, 3, 4, 18, idx, 10, 0);
    s_send_model(&f, id, id_len, 1, model, model_len);

    /* the dataset, in two chunks */
    size_t half = ser_len / 2;
    for (int part = 0; part < 2; part++) {
        id_len = sizeof id;
        s_expect(&f, SP_MSG_DATA_REQ, id, &id_len, &m);
        assert_string_equal(m.u.data_req.dataset, "toy");
        assert_int_equal(m.u.data_req.checksum, sum);
        assert_int_equal(m.u.data_req.offset, part == 0 ? 0 : half);
        sp_msg_fini(&m);
        sp_msg_init(&out, SP_MSG_DATA_CHUNK);
        snprintf(out.u.data_chunk.dataset, sizeof out.u.data_chunk.dataset, "toy");
        out.u.data_chunk.checksum = sum;
        out.u.data_chunk.offset = part == 0 ? 0 : half;
        out.u.data_chunk.total = ser_len;
        out.u.data_chunk.data.data = ser + (part == 0 ? 0 : half);
        out.u.data_chunk.data.len = part == 0 ? half : ser_len - half;
        s_reply(&f, id, id_len, &out);
    }

    id_len = sizeof id;
    s_expect(&f, SP_MSG_RESULT, id, &id_len, &m);
    const sp_msg_result_t *res = &m.u.result;
    assert_int_equal(res->job, 1);
    assert_int_equal(res->version, 1);
    assert_int_equal(res->step, 1);
    assert_int_equal(res->partition, 2);
    assert_int_equal(res->n_partitions, 3);
    assert_int_equal(res->n_samples, 10);

    /* the same node in process, on the model as the worker loaded it: the
     * three partitions' gradients summed in the tree's order, (p0 + p1) + p2 */
    sp_network_t *ref = NULL;
    char err[256];
    assert_int_equal(sp_network_load_buffer(model, model_len, &ref, err, sizeof err), SP_OK);
    size_t n_params = sp_network_n_params(ref), n_hits = sp_network_n_hits(ref);
    assert_int_equal(res->n_grad, n_params);
    assert_int_equal(res->n_hits, n_hits);
    float *X = malloc(10 * 4 * sizeof *X), *T = malloc(10 * 3 * sizeof *T);
    float *grad = calloc(n_params, sizeof *grad), *part = calloc(n_params, sizeof *part);
    uint32_t *hits = calloc(n_hits ? n_hits : 1, sizeof *hits);
    double loss[3];
    uint32_t correct = 0;
    const size_t first[3] = {0, 4, 8}, count[3] = {4, 4, 2};
    for (int k = 0; k < 3; k++) {
        sp_dataset_gather(&d, idx + first[k], count[k], X);
        sp_dataset_targets(&d, idx + first[k], count[k], T);
        sp_batch_result_t br;
        memset(k == 0 ? grad : part, 0, n_params * sizeof *grad);
        assert_int_equal(sp_network_gradient(ref, X, T, count[k], k == 0 ? grad : part, hits, &br),
                         SP_OK);
        if (k > 0) {
            sp_reduce_add_f32(grad, part, n_params);
        }
        loss[k] = br.loss_sum;
        correct += br.n_correct;
    }
    assert_memory_equal(res->grad, grad, n_params * sizeof *grad);
    assert_memory_equal(res->hits, hits, n_hits * sizeof *hits);
    assert_int_equal(res->n_correct, correct);
    assert_true(res->loss_sum == (loss[0] + loss[1]) + loss[2]);
    sp_msg_fini(&m);

    /* An unknown message is logged, not fatal. The step's summed gradient
     * (APPLY to version 2) moves the worker's copy exactly as the same
     * optimizer step moves ours; a task of version 1 is then stale and
     * dropped, so the next result is version 2's, on the stepped weights. */
    sp_msg_init(&out, SP_MSG_R_OK);
    s_reply(&f, id, id_len, &out);
    s_send_apply(&f, id, id_len, 2, 18, grad, n_params, hits, n_hits);
    assert_int_equal(sp_network_apply_gradient(ref, grad, 18, hits), SP_OK);
    for (uint64_t v = 1; v <= 3; v++) {
        /* version 3 is sent with no MODEL or APPLY: the worker gets there by
         * applying the whole step of version 2 itself; after version 3's,
         * sync asks for its model back */
        s_send_task(&f, id, id_len, "toy", sum, v, 0, 1, 10, 10, idx, 10, v == 3);
    }
    /* the task of version 1 is behind the worker: it says so */
    id_len = sizeof id;
    s_expect(&f, SP_MSG_ERROR, id, &id_len, &m);
    assert_int_equal(m.u.error.ref_type, SP_MSG_TASK);
    assert_non_null(strstr(m.u.error.message, "stale version 1 (worker holds version 2)"));
    sp_msg_fini(&m);
    sp_dataset_gather(&d, idx, 10, X);
    sp_dataset_targets(&d, idx, 10, T);
    for (uint64_t v = 2; v <= 3; v++) {
        memset(grad, 0, n_params * sizeof *grad);
        memset(hits, 0, (n_hits ? n_hits : 1) * sizeof *hits);
        sp_batch_result_t br;
        assert_int_equal(sp_network_gradient(ref, X, T, 10, grad, hits, &br), SP_OK);
        id_len = sizeof id;
        s_expect(&f, SP_MSG_RESULT, id, &id_len, &m);
        assert_int_equal(m.u.result.version, v);
        assert_int_equal(m.u.result.step, v);
        /* a whole step: the worker applied it and keeps the gradient */
        assert_int_equal(m.u.result.n_grad, 0);
        assert_int_equal(m.u.result.n_hits, 0);
        assert_true(m.u.result.loss_sum == br.loss_sum);
        assert_int_equal(m.u.result.n_correct, br.n_correct);
        sp_msg_fini(&m);
        assert_int_equal(sp_network_apply_gradient(ref, grad, 10, hits), SP_OK);
    }
    /* sync: the worker's copy at version 4, training state included, is ours
     * byte for byte */
    s_expect_model(&f, id, 4, ref);

    /* The worker is at version 4 now. An APPLY for version 3 is one it is
     * past: ignored. One for version 9 it cannot reach: it says it is out
     * of sync, so the coordinator can send the model again. */
    for (uint64_t v = 3; v <= 9; v += 6) {
        s_send_apply(&f, id, id_len, v, 10, grad, n_params, hits, n_hits);
    }
    id_len = sizeof id;
    s_expect(&f, SP_MSG_ERROR, id, &id_len, &m);
    assert_int_equal(m.u.error.ref_type, SP_MSG_APPLY);
    assert_non_null(strstr(m.u.error.message, "version 9: out of sync (worker holds version 4)"));
    sp_msg_fini(&m);

    /* The coordinator's word wins: a model older than the worker's own
     * (version 1 again: the worker applied steps the coordinator never
     * counted) replaces it, and the task computes on exactly that model. */
    s_send_model(&f, id, id_len, 1, model, model_len);
    s_send_task(&f, id, id_len, "toy", sum, 1, 0, 1, 10, 10, idx, 10, 1);
    sp_network_t *orig = NULL;
    assert_int_equal(sp_network_load_buffer(model, model_len, &orig, err, sizeof err), SP_OK);
    memset(grad, 0, n_params * sizeof *grad);
    memset(hits, 0, (n_hits ? n_hits : 1) * sizeof *hits);
    sp_batch_result_t ob;
    assert_int_equal(sp_network_gradient(orig, X, T, 10, grad, hits, &ob), SP_OK);
    assert_int_equal(sp_network_apply_gradient(orig, grad, 10, hits), SP_OK);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_RESULT, id, &id_len, &m);
    assert_int_equal(m.u.result.version, 1);
    assert_true(m.u.result.loss_sum == ob.loss_sum);
    sp_msg_fini(&m);
    s_expect_model(&f, id, 2, orig);
    sp_network_destroy(&orig);

    /* A model without training state is refused and changes nothing: the
     * worker still holds version 2 (it applied that whole step itself) and
     * computes a task of version 2. */
    uint8_t *bare = NULL;
    size_t bare_len = 0;
    assert_int_equal(sp_network_save_buffer(net, 0, &bare, &bare_len), SP_OK);
    s_send_model(&f, id, id_len, 5, bare, bare_len);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_ERROR, id, &id_len, &m);
    assert_int_equal(m.u.error.ref_type, SP_MSG_MODEL);
    assert_non_null(strstr(m.u.error.message, "version 5 refused: no training state"));
    sp_msg_fini(&m);
    free(bare);
    s_send_task(&f, id, id_len, "toy", sum, 2, 0, 1, 10, 10, idx, 10, 0);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_RESULT, id, &id_len, &m);
    assert_int_equal(m.u.result.version, 2);
    assert_int_equal(m.u.result.n_samples, 10);
    sp_msg_fini(&m);

    /* A lone run. Tasks for versions 5 and 6 on other samples, which the
     * worker cannot reach yet, then the MODEL of version 1: a coordinator
     * sends a model only to a worker whose state it no longer counts on, so
     * the tasks queued before it are void. Then the whole steps of versions
     * 7 and 8 and then 1: the worker holds version 1's result while later
     * tasks wait, and sends it once none of them can run (not with the next
     * heartbeat, a minute away). Then versions 2 to 6: results 2 to 8 follow, in
     * order, each on the steps before it, none from the void tasks. */
    uint32_t other[10] = {0, 2, 6, 7, 10, 11, 12, 13, 14, 16};
    s_send_task(&f, id, id_len, "toy", sum, 5, 0, 1, 10, 10, other, 10, 0);
    s_send_task(&f, id, id_len, "toy", sum, 6, 0, 1, 10, 10, other, 10, 0);
    s_send_model(&f, id, id_len, 1, model, model_len);
    const uint64_t order[] = {7, 8, 1, 2, 3, 4, 5, 6};
    assert_int_equal(sp_network_load_buffer(model, model_len, &orig, err, sizeof err), SP_OK);
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        s_send_task(&f, id, id_len, "toy", sum, order[k], 0, 1, 10, 10, idx, 10, 0);
        if (k != 2 && k != 7) {
            continue; /* results now for version 1, then for 2 to 8 */
        }
        for (uint64_t v = k == 2 ? 1 : 2; v <= (k == 2 ? 1 : 8); v++) {
            memset(grad, 0, n_params * sizeof *grad);
            memset(hits, 0, (n_hits ? n_hits : 1) * sizeof *hits);
            assert_int_equal(sp_network_gradient(orig, X, T, 10, grad, hits, &ob), SP_OK);
            assert_int_equal(sp_network_apply_gradient(orig, grad, 10, hits), SP_OK);
            id_len = sizeof id;
            s_expect(&f, SP_MSG_RESULT, id, &id_len, &m);
            assert_int_equal(m.u.result.version, v);
            assert_true(m.u.result.loss_sum == ob.loss_sum);
            sp_msg_fini(&m);
        }
    }
    sp_network_destroy(&orig);
    s_expect_none(&f, SP_MSG_RESULT, 500);

    /* SIGTERM: BYE and exit 0 */
    kill(pid, SIGTERM);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_BYE, id, &id_len, &m);
    sp_msg_fini(&m);
    int st = -1;
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    free(X);
    free(T);
    free(grad);
    free(part);
    free(hits);
    free(ser);
    free(model);
    sp_dataset_fini(&d);
    sp_network_destroy(&net);
    sp_network_destroy(&ref);
    s_fake_fini(&f);
}

/* A partition that takes many heartbeat intervals must not silence the
 * worker: its pulse thread keeps beating while it computes, so a coordinator
 * with a short liveness does not declare it dead. */
static void test_client_worker_beats_while_computing(void **state)
{
    (void)state;
    s_fake_t f;
    s_fake_init(&f, s_handle_status);
    const char *args[] = {"spatium-worker", "--coordinator", f.ep, "--threads", "1", NULL};
    pid_t pid = s_spawn(f.dir, args);
    uint8_t id[256];
    size_t id_len = sizeof id;
    sp_msg_t m, out;
    s_expect(&f, SP_MSG_HELLO, id, &id_len, &m);
    sp_msg_fini(&m);
    enum { HB_MS = 10, N = 8192, F = 256 };
    sp_msg_init(&out, SP_MSG_WELCOME);
    out.u.welcome.worker_id = 1;
    out.u.welcome.heartbeat_ms = HB_MS;
    out.u.welcome.liveness = 100;
    s_reply(&f, id, id_len, &out);

    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    d.task = SP_TASK_CLASSIFY;
    d.n_samples = N;
    d.n_features = F;
    d.n_classes = 10;
    d.n_targets = 10;
    d.x = malloc((size_t)N * F * sizeof *d.x);
    d.y = malloc(N * sizeof *d.y);
    for (size_t i = 0; i < (size_t)N * F; i++) {
        d.x[i] = (float)((i * 7919) % 256) / 255.0f;
    }
    for (size_t i = 0; i < N; i++) {
        d.y[i] = (float)(i % 10);
    }
    uint8_t *ser = NULL;
    size_t ser_len = 0;
    assert_int_equal(sp_dataset_serialize(&d, &ser, &ser_len), SP_OK);
    uint64_t sum = ((uint64_t)ser_len << 32) | crc32(crc32(0L, Z_NULL, 0), ser, (uInt)ser_len);
    const uint32_t sizes[] = {F, 2048, 10};
    sp_network_t *net = s_make_net(sizes, 3, 11);
    uint8_t *model = NULL;
    size_t model_len = 0;
    assert_int_equal(sp_network_save_buffer(net, 1, &model, &model_len), SP_OK);
    s_send_model(&f, id, id_len, 1, model, model_len);
    uint32_t *idx = malloc(N * sizeof *idx);
    for (uint32_t i = 0; i < N; i++) {
        idx[i] = i;
    }
    s_send_task(&f, id, id_len, "big", sum, 1, 0, 1, N, N, idx, N, 0);

    /* Serve the dataset chunk by chunk, then count beats until the result. */
    uint64_t beats = 0;
    uint64_t deadline = s_now_ms() + S_CHILD_BOUND_MS;
    for (;;) {
        assert_true(s_now_ms() < deadline);
        zmq_pollitem_t it = {f.sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) {
            continue;
        }
        char err[256];
        id_len = sizeof id;
        assert_int_equal(sp_msg_recv(f.sock, ZMQ_DONTWAIT, id, &id_len, &m, err, sizeof err),
                         SP_OK);
        if (m.type == SP_MSG_DATA_REQ) {
            uint64_t off = m.u.data_req.offset;
            assert_true(off < ser_len);
            size_t len = ser_len - off < SP_CHUNK_MAX ? ser_len - off : SP_CHUNK_MAX;
            sp_msg_init(&out, SP_MSG_DATA_CHUNK);
            snprintf(out.u.data_chunk.dataset, sizeof out.u.data_chunk.dataset, "big");
            out.u.data_chunk.checksum = sum;
            out.u.data_chunk.offset = off;
            out.u.data_chunk.total = ser_len;
            out.u.data_chunk.data.data = ser + off;
            out.u.data_chunk.data.len = len;
            s_reply(&f, id, id_len, &out);
            beats = 0; /* count only what comes once the whole dataset is there */
        } else if (m.type == SP_MSG_HEARTBEAT) {
            beats++;
        } else if (m.type == SP_MSG_RESULT) {
            break;
        }
        sp_msg_fini(&m);
    }
    uint64_t compute_ms = m.u.result.compute_us / 1000;
    assert_int_equal(m.u.result.n_samples, N);
    sp_msg_fini(&m);
    /* The partition must be long enough to prove anything: many intervals. */
    assert_true(compute_ms >= 8 * HB_MS);
    /* Without the pulse the worker is silent while it computes (0 or 1 beat);
     * with it, about one beat an interval: ask for a third of that. */
    assert_true(beats >= compute_ms / HB_MS / 3);

    kill(pid, SIGTERM);
    int st = -1;
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    free(idx);
    free(ser);
    free(model);
    sp_dataset_fini(&d);
    sp_network_destroy(&net);
    s_fake_fini(&f);
}

static void test_client_worker_waits_and_reregisters(void **state)
{
    (void)state;
    char dir[64], ep[128];
    s_mkdtemp(dir);
    snprintf(ep, sizeof ep, "ipc://%s/late", dir);
    const char *args[] = {"spatium-worker", "--coordinator", ep, "--threads", "1", NULL};
    pid_t pid = s_spawn(dir, args);

    /* the coordinator appears only once the worker is running */
    s_fake_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "%s", dir);
    f.ctx = zmq_ctx_new();
    f.sock = zmq_socket(f.ctx, ZMQ_ROUTER);
    sp_sock_configure(f.sock, ZMQ_ROUTER);
    assert_int_equal(zmq_bind(f.sock, ep), 0);
    uint8_t id[256];
    size_t id_len = sizeof id;
    sp_msg_t m, out;
    s_expect(&f, SP_MSG_HELLO, id, &id_len, &m);
    sp_msg_fini(&m);

    /* "not registered" makes it say HELLO again */
    sp_msg_send_error(f.sock, id, id_len, SP_E_STATE, 0, SP_MSG_HEARTBEAT,
                      "not registered: send hello first");
    id_len = sizeof id;
    s_expect(&f, SP_MSG_HELLO, id, &id_len, &m);
    sp_msg_fini(&m);

    /* registered, then silence: after liveness beats it reconnects with a new
     * identity and says HELLO again */
    uint8_t first[256];
    size_t first_len = id_len;
    memcpy(first, id, id_len);
    sp_msg_init(&out, SP_MSG_WELCOME);
    out.u.welcome.worker_id = 3;
    out.u.welcome.heartbeat_ms = 50;
    out.u.welcome.liveness = 2;
    s_reply(&f, id, id_len, &out);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_HEARTBEAT, id, &id_len, &m);
    sp_msg_fini(&m);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_HELLO, id, &id_len, &m);
    sp_msg_fini(&m);
    assert_false(id_len == first_len && memcmp(id, first, id_len) == 0);

    /* garbage frames do not kill it */
    zmq_send(f.sock, id, id_len, ZMQ_SNDMORE);
    zmq_send(f.sock, "junk", 4, ZMQ_SNDMORE);
    zmq_send(f.sock, "\xc1\xc1", 2, 0);
    sp_msg_init(&out, SP_MSG_WELCOME);
    out.u.welcome.worker_id = 4;
    out.u.welcome.heartbeat_ms = 50;
    out.u.welcome.liveness = 100;
    s_reply(&f, id, id_len, &out);
    id_len = sizeof id;
    s_expect(&f, SP_MSG_HEARTBEAT, id, &id_len, &m);
    sp_msg_fini(&m);

    kill(pid, SIGINT);
    int st = -1;
    assert_int_equal(s_wait_child(pid, &st), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    s_fake_fini(&f);
}

/* Kills and reaps what a test left running, removes its directories. */
static int s_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < 16; i++) {
        if (s_children[i] > 0) {
            kill(s_children[i], SIGKILL);
            waitpid(s_children[i], NULL, 0);
            s_children[i] = 0;
        }
    }
    for (size_t i = 0; i < 8; i++) {
        if (s_dirs[i][0]) {
            (void)sp_file_remove_tree(s_dirs[i]);
            s_dirs[i][0] = '\0';
        }
    }
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_client_usage_errors_exit_2, s_teardown),
        cmocka_unit_test_teardown(test_client_help_exits_0, s_teardown),
        cmocka_unit_test_teardown(test_client_no_coordinator_exits_3, s_teardown),
        cmocka_unit_test_teardown(test_client_demo_trains_and_cleans_up, s_teardown),
        cmocka_unit_test_teardown(test_client_bench_distributed_path_measures, s_teardown),
        cmocka_unit_test_teardown(test_client_eval_on_saved_model, s_teardown),
        cmocka_unit_test_teardown(test_client_status_json_and_text, s_teardown),
        cmocka_unit_test_teardown(test_client_error_reply_exits_1, s_teardown),
        cmocka_unit_test_teardown(test_client_metrics_formats, s_teardown),
        cmocka_unit_test_teardown(test_client_metrics_png, s_teardown),
        cmocka_unit_test_teardown(test_client_inspect_model, s_teardown),
        cmocka_unit_test_teardown(test_client_train_sends_job, s_teardown),
        cmocka_unit_test_teardown(test_client_submit_streams_checked_chunks, s_teardown),
        cmocka_unit_test_teardown(test_client_model_written, s_teardown),
        cmocka_unit_test_teardown(test_client_worker_computes_like_in_process, s_teardown),
        cmocka_unit_test_teardown(test_client_worker_beats_while_computing, s_teardown),
        cmocka_unit_test_teardown(test_client_worker_waits_and_reregisters, s_teardown),
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
