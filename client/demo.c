/* demo: the whole system on one machine in one command. It starts a
 * coordinator and N workers as child processes talking over ipc:// sockets
 * in a private temporary directory, uploads a dataset (Fashion-MNIST when
 * Debian's dataset-fashion-mnist is installed, else generated Gaussian
 * blobs), trains with a live progress display, prints the final accuracy,
 * and always stops every child and removes the directory, Ctrl-C included. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/datafile.h"
#include "client/jobs.h"
#include "client/json.h"
#include "client/submit.h"
#include "common/child.h"
#include "common/dataset.h"
#include "common/error.h"
#include "common/file.h"
#include "common/network.h"
#include "common/rng.h"

#define S_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define S_MAX_WORKERS 64
#define S_STOP_WAIT_MS 5000 /* SIGTERM, then SIGKILL after this */
#define S_BLOB_CLASSES 10
#define S_BLOB_FEATURES 32

/* the one piece of process state: a signal handler can only set a flag */
static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

typedef struct {
    /* the command line */
    uint32_t want_workers; /* --workers */
    uint32_t epochs;       /* --epochs, 0: the dataset's default */
    int keep;              /* --keep */
    int builtin;           /* --builtin */
    /* what runs */
    char dir[64];          /* private temporary directory, /tmp/spatium-demo-* */
    char bindir[PATH_MAX]; /* where spatium-coordinator / -worker live */
    char ep_workers[128];
    char ep_clients[128];
    pid_t coordinator;
    pid_t workers[S_MAX_WORKERS];
    int n_workers;
    uint32_t threads; /* each worker's */
    /* the datasets */
    int fmnist; /* Fashion-MNIST, else the generated blobs */
    const char *train_name;
    const char *val_name;
    sp_dataset_info_t info, vinfo;
} s_demo_t;

/* Starts bin with args; its output goes to log. Returns the pid or -1. */
static pid_t s_spawn(const char *bin, char *const args[], const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        return pid;
    }
    /* child: die with the demo, keep out of the terminal's Ctrl-C (the demo
     * stops us in order), log to a file */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
        _exit(1);
    }
    FILE *f = freopen(log, "a", stdout);
    if (f) {
        dup2(STDOUT_FILENO, STDERR_FILENO);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv(bin, args);
    fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* Prints the last lines of a child's log (why it failed). */
static void s_show_log(const s_demo_t *d, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s.log", d->dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        return;
    }
    char lines[8][256];
    int n = 0;
    while (fgets(lines[n % 8], sizeof lines[0], f)) {
        n++;
    }
    fclose(f);
    if (n > 0) {
        fprintf(stderr, "--- last lines of %s.log:\n", name);
    }
    for (int i = n > 8 ? n - 8 : 0; i < n; i++) {
        fputs(lines[i % 8], stderr);
    }
}

static void s_cleanup(s_demo_t *d, int keep_dir)
{
    /* workers first, so they do not spend their liveness beats reconnecting */
    for (int i = 0; i < d->n_workers; i++) {
        kill(d->workers[i], SIGTERM);
    }
    for (int i = 0; i < d->n_workers; i++) {
        (void)sp_child_stop(d->workers[i], S_STOP_WAIT_MS);
        d->workers[i] = 0;
    }
    (void)sp_child_stop(d->coordinator, S_STOP_WAIT_MS);
    d->coordinator = 0;
    if (d->dir[0] && !keep_dir) {
        (void)sp_file_remove_tree(d->dir);
    }
}

/* Writes n samples of the blobs problem as CSV (label in the last column):
 * class k is a Gaussian of sigma 0.2 around a centre drawn uniformly in
 * [0.2, 0.8]^32, clamped to [0, 1]. The centres depend only on the seed. */
static int s_write_blobs(const char *path, uint32_t n, uint64_t sample_stream)
{
    sp_rng_t rng;
    float centre[S_BLOB_CLASSES][S_BLOB_FEATURES];
    sp_rng_init(&rng, 20261121);
    for (int k = 0; k < S_BLOB_CLASSES; k++) {
        for (int f = 0; f < S_BLOB_FEATURES; f++) {
            centre[k][f] = 0.2f + 0.6f * sp_rng_float(&rng);
        }
    }
    FILE *out = fopen(path, "w");
    if (!out) {
        return -1;
    }
    sp_rng_init_stream(&rng, 20261121, sample_stream);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)sp_rng_below(&rng, S_BLOB_CLASSES);
        for (int f = 0; f < S_BLOB_FEATURES; f++) {
            double v = centre[k][f] + 0.2 * sp_rng_normal(&rng);
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            fprintf(out, "%.4f,", v);
        }
        fprintf(out, "%u\n", k);
    }
    return fclose(out) == 0 ? 0 : -1;
}

static int s_file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* One line per worker: how much of the job it took. When a worker took
 * nothing, says why. */
static void s_show_workers(sp_cli_t *c, uint32_t batch, uint32_t partition)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_WORKERS);
    if (sp_cli_call_quiet(c, &req, SP_MSG_R_WORKERS, &rep) != SP_EXIT_OK) {
        return;
    }
    const sp_msg_r_workers_t *r = &rep.u.r_workers;
    int idle = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        printf("worker %s: %" PRIu64 " partitions, %.0f samples/s while computing\n",
               r->workers[i].name, r->workers[i].partitions_done, r->workers[i].samples_per_s);
        idle |= r->workers[i].partitions_done == 0;
    }
    if (r->n > 1 && idle && batch <= partition) {
        printf("(a step of batch %u is one partition: one worker takes it whole and applies\n"
               " it itself; workers share steps of several partitions, e.g. spatium train\n"
               " --batch 1024 --partition 128)\n",
               batch);
    } else if (r->n > 1 && idle) {
        printf("(the coordinator kept each step whole on one worker: its partitions took\n"
               " less time to compute than sending them to another worker would cost)\n");
    }
    sp_msg_fini(&rep);
}

static const char s_demo_usage[] =
    "usage: spatium demo [--workers N] [--epochs N] [--builtin] [--keep]\n"
    "Runs the whole system on this machine: a coordinator and N workers (default 2)\n"
    "on private ipc:// sockets, a dataset (Fashion-MNIST from Debian's\n"
    "dataset-fashion-mnist when installed, else 10 generated Gaussian blobs in 32\n"
    "dimensions), a training job with live progress, and the final validation\n"
    "accuracy; then stops everything and removes its temporary directory.\n"
    "  --workers N   local workers, 1..64 (default 2); threads are split among them\n"
    "  --epochs N    epochs (default 3 on Fashion-MNIST, 5 on the blobs)\n"
    "  --builtin     use the generated dataset even when Fashion-MNIST is installed\n"
    "  --keep        keep the temporary directory (logs, state) for a look\n"
    "--json: {\"job\",\"dataset\",\"workers\",\"epochs\",\"val_accuracy\",\"accuracy\",\n"
    "\"samples\",\"seconds\"}.\n";

/* Reads the demo's flags into d. -1 to go on, else the exit status. */
static int s_parse(sp_cli_t *c, int argc, char **argv, s_demo_t *d)
{
    d->want_workers = 2;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (sp_args_is_help(argv[i])) {
            fputs(s_demo_usage, stdout);
            return SP_EXIT_OK;
        }
        if (strcmp(argv[i], "--keep") == 0) {
            d->keep = 1;
            continue;
        }
        if (strcmp(argv[i], "--builtin") == 0) {
            d->builtin = 1;
            continue;
        }
        if ((m = sp_args_value(c, argc, argv, &i, "--workers", &v)) != 0) {
            if (m < 0 || sp_args_u32(c, "--workers", v, 1, S_MAX_WORKERS, &d->want_workers) != 0) {
                return SP_EXIT_USAGE;
            }
            continue;
        }
        if ((m = sp_args_value(c, argc, argv, &i, "--epochs", &v)) != 0) {
            if (m < 0 || sp_args_u32(c, "--epochs", v, 1, 1000, &d->epochs) != 0) {
                return SP_EXIT_USAGE;
            }
            continue;
        }
        m = sp_args_global(c, argc, argv, &i);
        if (m < 0) {
            return SP_EXIT_USAGE;
        }
        if (m == 0) {
            return sp_cli_report(c, SP_EXIT_USAGE, "demo: unknown argument '%s'", argv[i]);
        }
    }
    return -1;
}

/* Finds the daemons beside this binary and makes the private directory. */
static int s_prepare(sp_cli_t *c, s_demo_t *d)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        return sp_cli_report(c, SP_EXIT_FAIL, "demo: cannot find my own binary");
    }
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(d->bindir, sizeof d->bindir, "%s", self);
    char coord_bin[PATH_MAX + 32], worker_bin[PATH_MAX + 32];
    snprintf(coord_bin, sizeof coord_bin, "%s/spatium-coordinator", d->bindir);
    snprintf(worker_bin, sizeof worker_bin, "%s/spatium-worker", d->bindir);
    if (access(coord_bin, X_OK) != 0 || access(worker_bin, X_OK) != 0) {
        return sp_cli_report(c, SP_EXIT_FAIL,
                             "demo: spatium-coordinator and spatium-worker must sit next to "
                             "spatium in %s (run make)",
                             d->bindir);
    }
    /* ipc paths are limited to about 100 bytes: stay in /tmp */
    snprintf(d->dir, sizeof d->dir, "/tmp/spatium-demo-XXXXXX");
    if (!mkdtemp(d->dir)) {
        d->dir[0] = '\0';
        return sp_cli_report(c, SP_EXIT_FAIL, "demo: cannot create a temporary directory: %s",
                             strerror(errno));
    }
    return SP_EXIT_OK;
}

/* Starts the coordinator and the workers, and points the client at them. */
static int s_start(sp_cli_t *c, s_demo_t *d)
{
    char coord_bin[PATH_MAX + 32], worker_bin[PATH_MAX + 32];
    snprintf(coord_bin, sizeof coord_bin, "%s/spatium-coordinator", d->bindir);
    snprintf(worker_bin, sizeof worker_bin, "%s/spatium-worker", d->bindir);
    char ep_metrics[128], state[128], log[128];
    snprintf(d->ep_workers, sizeof d->ep_workers, "ipc://%s/workers", d->dir);
    snprintf(d->ep_clients, sizeof d->ep_clients, "ipc://%s/clients", d->dir);
    snprintf(ep_metrics, sizeof ep_metrics, "ipc://%s/metrics", d->dir);
    snprintf(state, sizeof state, "%s/state", d->dir);
    snprintf(log, sizeof log, "%s/coordinator.log", d->dir);
    char *cargs[] = {coord_bin,   "--workers", d->ep_workers, "--clients", d->ep_clients,
                     "--metrics", ep_metrics,  "--state-dir", state,       NULL};
    d->coordinator = s_spawn(coord_bin, cargs, log);
    if (d->coordinator < 0) {
        return sp_cli_report(c, SP_EXIT_FAIL, "demo: cannot start the coordinator");
    }
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t n = d->want_workers;
    d->threads = procs > (long)n ? (uint32_t)(procs / (long)n) : 1;
    char threads_s[16];
    snprintf(threads_s, sizeof threads_s, "%u", d->threads);
    for (uint32_t i = 0; i < n; i++) {
        char name[32], wlog[128];
        snprintf(name, sizeof name, "demo-worker-%u", i + 1);
        snprintf(wlog, sizeof wlog, "%s/%s.log", d->dir, name);
        char *wargs[] = {worker_bin, "--coordinator", d->ep_workers, "--threads",
                         threads_s,  "--name",        name,          NULL};
        pid_t pid = s_spawn(worker_bin, wargs, wlog);
        if (pid < 0) {
            return sp_cli_report(c, SP_EXIT_FAIL, "demo: cannot start a worker");
        }
        d->workers[d->n_workers++] = pid;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", d->ep_clients);
    c->curve_server = c->curve_secret = NULL; /* the demo's own coordinator runs without CURVE */
    if (c->timeout_ms < 10000) {
        c->timeout_ms = 10000; /* the demo's coordinator also parses what we upload */
    }
    if (!c->json) {
        printf("spatium demo: a coordinator and %u worker%s (%u thread%s each) in %s\n", n,
               n > 1 ? "s" : "", d->threads, d->threads > 1 ? "s" : "", d->dir);
        fflush(stdout);
    }
    return SP_EXIT_OK;
}

/* Uploads the training and validation sets: Fashion-MNIST when installed
 * (and not --builtin), else the blobs, generated into the directory. */
static int s_upload(sp_cli_t *c, s_demo_t *d)
{
    d->fmnist = !d->builtin && s_file_exists(S_FMNIST_DIR "/train-images-idx3-ubyte.gz") &&
                s_file_exists(S_FMNIST_DIR "/train-labels-idx1-ubyte.gz") &&
                s_file_exists(S_FMNIST_DIR "/t10k-images-idx3-ubyte.gz") &&
                s_file_exists(S_FMNIST_DIR "/t10k-labels-idx1-ubyte.gz");
    d->train_name = d->fmnist ? "fashion-mnist" : "blobs";
    d->val_name = d->fmnist ? "fashion-mnist-test" : "blobs-validation";
    sp_datafile_opts_t o;
    sp_datafile_opts_default(&o);
    char train_a[128], train_b[128], val_a[128], val_b[128];
    if (d->fmnist) {
        strcpy(o.format, "idx");
        snprintf(train_a, sizeof train_a, "%s", S_FMNIST_DIR "/train-images-idx3-ubyte.gz");
        snprintf(train_b, sizeof train_b, "%s", S_FMNIST_DIR "/train-labels-idx1-ubyte.gz");
        snprintf(val_a, sizeof val_a, "%s", S_FMNIST_DIR "/t10k-images-idx3-ubyte.gz");
        snprintf(val_b, sizeof val_b, "%s", S_FMNIST_DIR "/t10k-labels-idx1-ubyte.gz");
    } else {
        strcpy(o.format, "csv");
        o.header = 0;
        snprintf(train_a, sizeof train_a, "%s/blobs.csv", d->dir);
        snprintf(val_a, sizeof val_a, "%s/blobs-validation.csv", d->dir);
        if (s_write_blobs(train_a, 4000, 1) != 0 || s_write_blobs(val_a, 1000, 2) != 0) {
            return sp_cli_report(c, SP_EXIT_FAIL, "demo: cannot write the generated dataset");
        }
    }
    int rc = sp_submit_upload(c, d->train_name, &o, train_a, d->fmnist ? train_b : NULL, &d->info);
    if (rc == SP_EXIT_OK) {
        rc = sp_submit_upload(c, d->val_name, &o, val_a, d->fmnist ? val_b : NULL, &d->vinfo);
    }
    if (rc == SP_EXIT_OK && !c->json) {
        printf("dataset %s: %u training samples, %u features, %u classes; %u validation "
               "samples\n",
               d->fmnist ? "Fashion-MNIST" : "generated blobs", d->info.samples, d->info.features,
               d->info.classes, d->vinfo.samples);
    }
    return rc;
}

/* The demo's job, as `spatium train` would send it. */
static void s_job_request(const s_demo_t *d, sp_msg_t *req)
{
    sp_msg_init(req, SP_MSG_TRAIN);
    sp_msg_train_t *t = &req->u.train;
    snprintf(t->dataset, sizeof t->dataset, "%s", d->train_name);
    snprintf(t->validation, sizeof t->validation, "%s", d->val_name);
    t->n_layers = 3;
    t->layers[0] = d->fmnist ? 784 : S_BLOB_FEATURES;
    t->layers[1] = d->fmnist ? 128 : 32;
    t->layers[2] = 10;
    t->bits = 4;
    t->epochs = d->epochs ? d->epochs : d->fmnist ? 3 : 5;
    /* Fashion-MNIST: two partitions a step, worth sharing between workers,
     * at a rate that reaches about 0.85 in 3 epochs; the blobs' steps are too
     * small to share, and batch 64 needs its 315 steps to learn them */
    t->batch = d->fmnist ? 512 : 64;
    t->partition = d->fmnist ? 256 : 64;
    t->lr = d->fmnist ? 0.05 : 0.02;
    t->momentum = 0.9;
    t->seed = 1;
    strcpy(t->mode, "backprop");
    strcpy(t->loss, "xent");
    t->growth_threshold = 0.9;
    t->prune_threshold = 0.01;
}

/* Starts the job and follows it to its end with the live display, then
 * prints what it reached. */
static int s_train(sp_cli_t *c, const s_demo_t *d)
{
    sp_msg_t req, rep;
    s_job_request(d, &req);
    const sp_msg_train_t *t = &req.u.train;
    sp_job_status_t s;
    memset(&s, 0, sizeof s);
    uint64_t t0 = sp_cli_now_ms();
    int rc = sp_cli_call(c, &req, SP_MSG_R_JOB, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    uint64_t job = rep.u.r_job.job;
    sp_msg_fini(&rep);
    if (!c->json) {
        printf("job %" PRIu64 ": %u-%u-%u, %u bits, %u epochs, batch %u, %s\n", job, t->layers[0],
               t->layers[1], t->layers[2], t->bits, t->epochs, t->batch, t->mode);
        fflush(stdout);
    }
    rc = sp_jobs_follow(c, job, 0, &s, NULL, NULL);
    double seconds = (double)(sp_cli_now_ms() - t0) / 1000.0;
    if (rc != SP_EXIT_OK) {
        if (s.state[0] && !s_interrupted) {
            sp_cli_report(c, rc, "demo: job %" PRIu64 " %s%s%s", job, s.state,
                          s.error[0] ? ": " : "", s.error);
        }
        return rc;
    }
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_ku64(&j, "job", job);
        sp_json_kstr(&j, "dataset", d->train_name);
        sp_json_ku64(&j, "workers", d->want_workers);
        sp_json_ku64(&j, "epochs", s.epochs);
        sp_json_knum(&j, "val_accuracy", s.val_accuracy);
        sp_json_knum(&j, "accuracy", s.accuracy);
        sp_json_ku64(&j, "samples", s.samples_seen);
        sp_json_knum(&j, "seconds", seconds);
        sp_json_obj_end(&j);
        return SP_EXIT_OK;
    }
    printf("job %" PRIu64 " done in %.1f s: %" PRIu64 " samples, training loss %.4f, "
           "accuracy %.4f\n",
           job, seconds, s.samples_seen, s.loss, s.accuracy);
    if (isfinite(s.val_accuracy)) {
        printf("final validation accuracy: %.4f (%u samples of %s)\n", s.val_accuracy,
               d->vinfo.samples, d->val_name);
    }
    s_show_workers(c, t->batch, t->partition);
    return SP_EXIT_OK;
}

/* After a failure: why the coordinator stopped, if it did, and its log. */
static void s_explain_failure(s_demo_t *d)
{
    int st = 0;
    if (d->coordinator > 0 && waitpid(d->coordinator, &st, WNOHANG) == d->coordinator) {
        d->coordinator = 0;
        fprintf(stderr, "spatium: demo: the coordinator stopped unexpectedly (%s %d)\n",
                WIFSIGNALED(st) ? "signal" : "exit status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    s_show_log(d, "coordinator");
}

int sp_cmd_demo(sp_cli_t *c, int argc, char **argv)
{
    s_demo_t d;
    memset(&d, 0, sizeof d);
    int rc = s_parse(c, argc, argv, &d);
    if (rc >= 0) {
        return rc;
    }
    rc = s_prepare(c, &d);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    /* from here on every child is stopped and the directory removed, on
     * Ctrl-C as on any failure */
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    c->interrupt = &s_interrupted;

    rc = s_start(c, &d);
    if (rc == SP_EXIT_OK) {
        rc = s_upload(c, &d);
    }
    if (rc == SP_EXIT_OK) {
        rc = s_train(c, &d);
    }
    if (rc != SP_EXIT_OK && !s_interrupted) {
        s_explain_failure(&d);
    }
    sp_cli_fini(c);
    s_cleanup(&d, d.keep);
    if (d.keep && !c->json) {
        printf("kept %s (logs, state directory, data)\n", d.dir);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (s_interrupted) {
        fprintf(stderr, "spatium: demo interrupted; coordinator and workers stopped\n");
        return 130;
    }
    if (!c->json) {
        printf("coordinator and workers stopped\n");
    }
    return rc;
}
