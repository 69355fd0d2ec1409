/* cluster_util: spawning, stopping and talking to the Spatium programs in
 * end-to-end tests. Every wait is a bounded poll; every process started
 * through a cluster is stopped by sp_cluster_fini, which also removes the
 * cluster's temporary directory. */
#include "tests/cluster_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "common/error.h"
#include "common/file.h"
#include "proto/curve.h"

uint64_t sp_cu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sp_cu_nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int sp_cu_bin(const char *prog, char *out, size_t outlen)
{
    const char *env = getenv("SPATIUM_BIN");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, outlen, "%s/%s", env, prog);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
            return -1;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash == NULL) {
            return -1;
        }
        *slash = '\0';
        snprintf(out, outlen, "%s/../bin/%s", self, prog);
    }
    return access(out, X_OK) == 0 ? 0 : -1;
}

pid_t sp_cu_spawn(char *const argv[], const char *log_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in >= 0) {
            dup2(in, 0);
        }
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

void sp_cu_kill9(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        (void)sp_child_wait(pid, 5000, NULL);
    }
}

int sp_cu_run(char *const argv[], int timeout_ms, char *out, size_t outlen)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0) {
            dup2(in, 0);
        }
        dup2(fds[1], 1);
        close(fds[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    size_t got = 0;
    uint64_t end = sp_cu_now_ms() + (uint64_t)timeout_ms;
    int status = 0, exited = 0;
    while (!exited) {
        char buf[4096];
        ssize_t n;
        while ((n = read(fds[0], buf, sizeof buf)) > 0) {
            size_t k = (size_t)n;
            if (out != NULL && got + 1 < outlen) {
                size_t room = outlen - 1 - got;
                memcpy(out + got, buf, k < room ? k : room);
                got += k < room ? k : room;
            }
        }
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            exited = 1;
            while ((n = read(fds[0], buf, sizeof buf)) > 0) {
                size_t k = (size_t)n;
                if (out != NULL && got + 1 < outlen) {
                    size_t room = outlen - 1 - got;
                    memcpy(out + got, buf, k < room ? k : room);
                    got += k < room ? k : room;
                }
            }
            break;
        }
        if (sp_cu_now_ms() >= end) {
            kill(pid, SIGKILL);
            (void)sp_child_wait(pid, 5000, NULL);
            close(fds[0]);
            if (out != NULL && outlen > 0) {
                out[got] = '\0';
            }
            return -1;
        }
        sp_cu_nap(2);
    }
    close(fds[0]);
    if (out != NULL && outlen > 0) {
        out[got] = '\0';
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int sp_cu_read_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = n > 0 ? (size_t)n : 0;
    int ok = *buf != NULL && fread(*buf, 1, *len, f) == *len;
    fclose(f);
    if (!ok) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

int sp_cu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

static int s_open_dealer(sp_cluster_t *cl)
{
    if (cl->dealer != NULL) {
        zmq_close(cl->dealer);
    }
    cl->dealer = zmq_socket(cl->zctx, ZMQ_DEALER);
    if (cl->dealer == NULL) {
        return -1;
    }
    int linger = 0;
    zmq_setsockopt(cl->dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (cl->curve) {
        char coord[256], own[256], err[256];
        sp_curve_cert_t server, pair;
        snprintf(coord, sizeof coord, "%s/coord.key", cl->keys);
        snprintf(own, sizeof own, "%s/client.key_secret", cl->keys);
        if (sp_curve_load(coord, 0, &server, err, sizeof err) != SP_OK ||
            sp_curve_load(own, 1, &pair, err, sizeof err) != SP_OK ||
            sp_curve_client(cl->dealer, &pair, &server) != SP_OK) {
            fprintf(stderr, "cluster: CURVE client: %s\n", err);
            return -1;
        }
    }
    return zmq_connect(cl->dealer, cl->cep) == 0 ? 0 : -1;
}

int sp_cluster_use_curve(sp_cluster_t *cl)
{
    static const char *const names[4] = {"coord", "worker", "client", "stranger"};
    char path[256], err[256], from[256], to[320];
    snprintf(cl->keys, sizeof cl->keys, "%s/keys", cl->dir);
    if (mkdir(cl->keys, 0700) != 0) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", cl->keys, names[i]);
        if (sp_curve_keygen(path, NULL, err, sizeof err) != SP_OK) {
            fprintf(stderr, "cluster: keygen: %s\n", err);
            return -1;
        }
    }
    static const char *const allow[2][2] = {{"workers", "worker"}, {"clients", "client"}};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", cl->keys, allow[i][0]);
        snprintf(from, sizeof from, "%s/%s.key", cl->keys, allow[i][1]);
        snprintf(to, sizeof to, "%s/%s.key", path, allow[i][1]);
        uint8_t *buf = NULL;
        size_t len = 0;
        int ok = mkdir(path, 0700) == 0 && sp_cu_read_file(from, &buf, &len) == 0 &&
                 sp_cu_write_file(to, buf, len) == 0;
        free(buf);
        if (!ok) {
            return -1;
        }
    }
    snprintf(cl->worker_key, sizeof cl->worker_key, "%s/worker.key_secret", cl->keys);
    cl->curve = 1;
    return s_open_dealer(cl);
}

int sp_cluster_init(sp_cluster_t *cl, int heartbeat_ms, int liveness)
{
    memset(cl, 0, sizeof *cl);
    snprintf(cl->dir, sizeof cl->dir, "/tmp/spc-XXXXXX");
    if (mkdtemp(cl->dir) == NULL) {
        return -1;
    }
    snprintf(cl->state, sizeof cl->state, "%s/state", cl->dir);
    snprintf(cl->wep, sizeof cl->wep, "ipc://%s/w", cl->dir);
    snprintf(cl->cep, sizeof cl->cep, "ipc://%s/c", cl->dir);
    snprintf(cl->mep, sizeof cl->mep, "ipc://%s/m", cl->dir);
    cl->heartbeat_ms = heartbeat_ms;
    cl->liveness = liveness;
    cl->zctx = zmq_ctx_new();
    if (cl->zctx == NULL || s_open_dealer(cl) != 0) {
        return -1;
    }
    return 0;
}

int sp_cluster_start_coord(sp_cluster_t *cl)
{
    char bin[PATH_MAX], hb[16], lv[16], log[256];
    if (sp_cu_bin("spatium-coordinator", bin, sizeof bin) != 0) {
        return -1;
    }
    snprintf(hb, sizeof hb, "%d", cl->heartbeat_ms);
    snprintf(lv, sizeof lv, "%d", cl->liveness);
    snprintf(log, sizeof log, "%s/coordinator-%d.log", cl->dir, cl->coord_starts++);
    char secret[256], workers[256], clients[256];
    snprintf(secret, sizeof secret, "%s/coord.key_secret", cl->keys);
    snprintf(workers, sizeof workers, "%s/workers", cl->keys);
    snprintf(clients, sizeof clients, "%s/clients", cl->keys);
    char *argv[] = {bin,     "--workers",   cl->wep,   "--clients",      cl->cep, "--metrics",
                    cl->mep, "--state-dir", cl->state, "--heartbeat-ms", hb,      "--liveness",
                    lv,      cl->curve ? "--curve-secret" : NULL, secret, "--curve-workers",
                    workers, "--curve-clients", clients, NULL};
    cl->coord = sp_cu_spawn(argv, log);
    if (cl->coord < 0) {
        cl->coord = 0;
        return -1;
    }
    /* Answering a DATASETS request means it is up and serving. */
    uint64_t end = sp_cu_now_ms() + 20000;
    while (sp_cu_now_ms() < end) {
        if (sp_cluster_n_datasets(cl) >= 0) {
            return 0;
        }
        if (sp_child_wait(cl->coord, 0, NULL) == 0) {
            cl->coord = 0;
            return -1; /* it exited */
        }
    }
    return -1;
}

int sp_cluster_add_worker(sp_cluster_t *cl, int threads)
{
    int slot = -1;
    for (int i = 0; i < SP_CU_MAX_WORKERS; i++) {
        if (cl->workers[i] == 0) {
            slot = i;
            break;
        }
    }
    char bin[PATH_MAX], th[16], name[32], log[256];
    if (slot < 0 || sp_cu_bin("spatium-worker", bin, sizeof bin) != 0) {
        return -1;
    }
    snprintf(th, sizeof th, "%d", threads);
    snprintf(name, sizeof name, "w%d", slot);
    snprintf(log, sizeof log, "%s/worker-%d.log", cl->dir, slot);
    char server[256];
    snprintf(server, sizeof server, "%s/coord.key", cl->keys);
    char *argv[] = {bin,    "--coordinator",  cl->wep, "--threads",      th,
                    "--name", name, cl->curve ? "--curve-server" : NULL, server,
                    "--curve-secret", cl->worker_key, NULL};
    pid_t pid = sp_cu_spawn(argv, log);
    if (pid < 0) {
        return -1;
    }
    cl->workers[slot] = pid;
    return slot;
}

void sp_cluster_stop_worker(sp_cluster_t *cl, int slot, int sig)
{
    if (slot < 0 || slot >= SP_CU_MAX_WORKERS || cl->workers[slot] == 0) {
        return;
    }
    if (sig == SIGKILL) {
        sp_cu_kill9(cl->workers[slot]);
    } else if (sp_child_stop(cl->workers[slot], 5000) != 0) {
        fprintf(stderr, "cluster: worker %d did not exit cleanly\n", slot);
        cl->unclean++;
    }
    cl->workers[slot] = 0;
}

int sp_cluster_wait_workers(sp_cluster_t *cl, int n, int timeout_ms)
{
    uint64_t end = sp_cu_now_ms() + (uint64_t)timeout_ms;
    while (sp_cu_now_ms() < end) {
        sp_msg_t req, rep;
        sp_msg_init(&req, SP_MSG_WORKERS);
        if (sp_cluster_call(cl, &req, &rep, 2000) == 0) {
            int alive = 0;
            if (rep.type == SP_MSG_R_WORKERS) {
                for (uint32_t i = 0; i < rep.u.r_workers.n; i++) {
                    alive += rep.u.r_workers.workers[i].alive != 0;
                }
            }
            sp_msg_fini(&rep);
            if (alive == n) {
                return 0;
            }
        }
        sp_cu_nap(10);
    }
    return -1;
}

int sp_cluster_fini(sp_cluster_t *cl)
{
    for (int i = 0; i < SP_CU_MAX_WORKERS; i++) {
        sp_cluster_stop_worker(cl, i, SIGTERM);
    }
    if (cl->coord > 0) {
        if (sp_child_stop(cl->coord, 10000) != 0) {
            fprintf(stderr, "cluster: the coordinator did not exit cleanly\n");
            cl->unclean++;
        }
        cl->coord = 0;
    }
    if (cl->unclean > 0) {
        sp_cluster_dump_logs(cl);
    }
    if (cl->dealer != NULL) {
        zmq_close(cl->dealer);
        cl->dealer = NULL;
    }
    if (cl->zctx != NULL) {
        zmq_ctx_term(cl->zctx);
        cl->zctx = NULL;
    }
    if (cl->dir[0] != '\0' && getenv("SPATIUM_KEEP_TMP") == NULL) {
        (void)sp_file_remove_tree(cl->dir);
    }
    cl->dir[0] = '\0';
    return cl->unclean;
}

void sp_cluster_dump_logs(const sp_cluster_t *cl)
{
    DIR *d = opendir(cl->dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".log") != 0) {
            continue;
        }
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", cl->dir, e->d_name);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (sp_cu_read_file(p, &buf, &len) == 0) {
            size_t from = len > 3000 ? len - 3000 : 0;
            fprintf(stderr, "---- %s (last %zu bytes)\n%.*s\n", e->d_name, len - from,
                    (int)(len - from), (const char *)buf + from);
            free(buf);
        }
    }
    closedir(d);
}

/* Sets the request id of any client request. */
static void s_set_req(sp_msg_t *m, uint64_t req)
{
    uint64_t *field = sp_msg_req(m);
    if (field != NULL) {
        *field = req;
    }
}

int sp_cluster_call(sp_cluster_t *cl, sp_msg_t *req, sp_msg_t *rep, int timeout_ms)
{
    sp_msg_init(rep, (sp_msg_type_t)0);
    uint64_t id = ++cl->req;
    s_set_req(req, id);
    if (sp_msg_send(cl->dealer, NULL, 0, req) != SP_OK) {
        return -1;
    }
    uint64_t end = sp_cu_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = sp_cu_now_ms();
        if (now >= end) {
            /* A reply may still come: start over on a fresh socket so it
             * cannot be taken for the answer to a later request. */
            s_open_dealer(cl);
            return -1;
        }
        zmq_pollitem_t it = {cl->dealer, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)(end - now)) <= 0) {
            continue;
        }
        char err[SP_TEXT_MAX];
        int rc = sp_msg_recv(cl->dealer, ZMQ_DONTWAIT, NULL, NULL, rep, err, sizeof err);
        if (rc != SP_OK) {
            continue;
        }
        const uint64_t *rp = sp_msg_req(rep);
        if (rp != NULL && *rp == id) {
            return 0;
        }
        sp_msg_fini(rep);
    }
}

int sp_cluster_status(sp_cluster_t *cl, uint64_t job, sp_job_status_t *out)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_STATUS);
    req.u.job_req.job = job;
    if (sp_cluster_call(cl, &req, &rep, 2000) != 0) {
        return -1;
    }
    int rc = -1;
    if (rep.type == SP_MSG_R_STATUS && rep.u.r_status.n == 1) {
        *out = rep.u.r_status.jobs[0];
        rc = 0;
    }
    sp_msg_fini(&rep);
    return rc;
}

int sp_cluster_wait_job(sp_cluster_t *cl, uint64_t job, uint64_t min_samples, int timeout_ms,
                        sp_job_status_t *out)
{
    uint64_t end = sp_cu_now_ms() + (uint64_t)timeout_ms;
    while (sp_cu_now_ms() < end) {
        if (sp_cluster_status(cl, job, out) == 0) {
            int over = strcmp(out->state, "done") == 0 || strcmp(out->state, "failed") == 0 ||
                       strcmp(out->state, "cancelled") == 0;
            if (over) {
                return min_samples > 0 ? -1 : 0;
            }
            if (min_samples > 0 && out->samples_seen >= min_samples) {
                return 0;
            }
        }
        sp_cu_nap(min_samples > 0 ? 2 : 10);
    }
    return -1;
}

int sp_cluster_n_datasets(sp_cluster_t *cl)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_DATASETS);
    if (sp_cluster_call(cl, &req, &rep, 500) != 0) {
        return -1;
    }
    int n = rep.type == SP_MSG_R_DATASETS ? (int)rep.u.r_datasets.n : -1;
    sp_msg_fini(&rep);
    return n;
}

static int s_error_text(sp_msg_t *rep, char *err, size_t errlen)
{
    if (rep->type == SP_MSG_ERROR) {
        snprintf(err, errlen, "%s", rep->u.error.message);
    } else {
        snprintf(err, errlen, "unexpected reply %s", sp_msg_type_name((uint32_t)rep->type));
    }
    sp_msg_fini(rep);
    return -1;
}

int sp_cluster_upload_send(sp_cluster_t *cl, const char *name, const char *format, const char *task,
                           const uint8_t *const parts[], const size_t sizes[], int n_parts,
                           size_t chunk_bytes, uint64_t *upload_out, char *err, size_t errlen)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_UPLOAD_BEGIN);
    sp_msg_upload_begin_t *b = &req.u.upload_begin;
    snprintf(b->name, sizeof b->name, "%s", name);
    snprintf(b->format, sizeof b->format, "%s", format);
    snprintf(b->task, sizeof b->task, "%s", task);
    b->label_column = -1;
    b->header = -1;
    b->n_parts = (uint32_t)n_parts;
    for (int i = 0; i < n_parts; i++) {
        b->part_size[i] = sizes[i];
        b->part_crc[i] = (uint32_t)crc32(crc32(0L, Z_NULL, 0), parts[i], (uInt)sizes[i]);
    }
    if (sp_cluster_call(cl, &req, &rep, 5000) != 0) {
        snprintf(err, errlen, "no reply to upload_begin");
        return -1;
    }
    if (rep.type != SP_MSG_R_UPLOAD) {
        return s_error_text(&rep, err, errlen);
    }
    uint64_t upload = rep.u.r_upload.upload;
    sp_msg_fini(&rep);
    for (int i = 0; i < n_parts; i++) {
        for (size_t off = 0; off < sizes[i]; off += chunk_bytes) {
            size_t n = sizes[i] - off < chunk_bytes ? sizes[i] - off : chunk_bytes;
            sp_msg_init(&req, SP_MSG_UPLOAD_CHUNK);
            req.u.upload_chunk.upload = upload;
            req.u.upload_chunk.part = (uint32_t)i;
            req.u.upload_chunk.offset = off;
            req.u.upload_chunk.data.data = (uint8_t *)(uintptr_t)(parts[i] + off);
            req.u.upload_chunk.data.len = n;
            if (sp_cluster_call(cl, &req, &rep, 5000) != 0) {
                snprintf(err, errlen, "no reply to upload_chunk");
                return -1;
            }
            if (rep.type != SP_MSG_R_UPLOAD) {
                return s_error_text(&rep, err, errlen);
            }
            sp_msg_fini(&rep);
        }
    }
    *upload_out = upload;
    return 0;
}

int sp_cluster_upload(sp_cluster_t *cl, const char *name, const char *format, const char *task,
                      const uint8_t *const parts[], const size_t sizes[], int n_parts,
                      size_t chunk_bytes, char *err, size_t errlen)
{
    uint64_t upload = 0;
    if (sp_cluster_upload_send(cl, name, format, task, parts, sizes, n_parts, chunk_bytes, &upload,
                               err, errlen) != 0) {
        return -1;
    }
    sp_msg_t req, rep;
    /* "stored: false" to upload_end: still checking, ask again */
    uint64_t end = sp_cu_now_ms() + 60000;
    for (;;) {
        sp_msg_init(&req, SP_MSG_UPLOAD_END);
        req.u.upload_end.upload = upload;
        if (sp_cluster_call(cl, &req, &rep, 5000) != 0) {
            snprintf(err, errlen, "no reply to upload_end");
            return -1;
        }
        if (rep.type != SP_MSG_R_UPLOAD) {
            return s_error_text(&rep, err, errlen);
        }
        int stored = rep.u.r_upload.stored;
        sp_msg_fini(&rep);
        if (stored) {
            return 0;
        }
        if (sp_cu_now_ms() > end) {
            snprintf(err, errlen, "upload_end: still checking after 60 s");
            return -1;
        }
        sp_cu_nap(10);
    }
}

int sp_cluster_train(sp_cluster_t *cl, const sp_msg_train_t *t, uint64_t *job, char *err,
                     size_t errlen)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_TRAIN);
    req.u.train = *t;
    if (sp_cluster_call(cl, &req, &rep, 5000) != 0) {
        snprintf(err, errlen, "no reply to train");
        return -1;
    }
    if (rep.type != SP_MSG_R_JOB) {
        return s_error_text(&rep, err, errlen);
    }
    *job = rep.u.r_job.job;
    sp_msg_fini(&rep);
    return 0;
}

int sp_cluster_model(sp_cluster_t *cl, uint64_t job, uint8_t **buf, size_t *len)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_MODEL_GET);
    req.u.job_req.job = job;
    if (sp_cluster_call(cl, &req, &rep, 5000) != 0) {
        return -1;
    }
    if (rep.type != SP_MSG_R_MODEL) {
        sp_msg_fini(&rep);
        return -1;
    }
    *buf = rep.u.r_model.model.data;
    *len = rep.u.r_model.model.len;
    rep.u.r_model.model.data = NULL;
    rep.u.r_model.model.len = 0;
    sp_msg_fini(&rep);
    return 0;
}
