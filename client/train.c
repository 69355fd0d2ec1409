/* train: the `train` and `watch` commands and the job follower behind
 * `train --wait`, `watch` and `demo`. The follower polls status and new
 * metric records a few times a second; it never waits longer than the
 * client timeout for a silent coordinator. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/commands.h"
#include "client/jobs.h"
#include "client/json.h"
#include "client/report.h"
#include "common/error.h"

#define S_POLL_MS 300 /* between two status / metrics polls while following */

static void s_sleep_ms(const sp_cli_t *c, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        if (c->interrupt && *c->interrupt) {
            return;
        }
    }
}

/* Samples in the dataset of a job, 0 when unknown (progress then counts epochs). */
static uint64_t s_dataset_samples(sp_cli_t *c, const char *name)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_DATASETS);
    if (sp_cli_call_quiet(c, &req, SP_MSG_R_DATASETS, &rep) != SP_EXIT_OK) {
        return 0;
    }
    uint64_t n = 0;
    for (uint32_t i = 0; i < rep.u.r_datasets.n; i++) {
        if (strcmp(rep.u.r_datasets.datasets[i].name, name) == 0) {
            n = rep.u.r_datasets.datasets[i].samples;
        }
    }
    sp_msg_fini(&rep);
    return n;
}

typedef struct {
    int tty;               /* draw a bar on stdout */
    int bar_shown;         /* a bar line is on screen, not yet ended */
    uint64_t samples;      /* per epoch, 0 unknown */
    double samples_per_s;  /* latest figure */
    double loss, accuracy; /* latest step figures */
} s_progress_t;

static void s_bar_clear(s_progress_t *p)
{
    if (p->bar_shown) {
        fputs("\r\033[K", stdout);
        p->bar_shown = 0;
    }
}

static void s_bar_draw(s_progress_t *p, const sp_job_status_t *s)
{
    double frac = 0.0;
    if (s->epochs > 0) {
        if (p->samples > 0) {
            frac = (double)s->samples_seen / ((double)p->samples * s->epochs);
        } else {
            frac = (double)s->epoch / s->epochs;
        }
    }
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    char bar[31];
    int full = (int)(frac * 30.0 + 0.5);
    for (int i = 0; i < 30; i++) {
        bar[i] = i < full ? '#' : '.';
    }
    bar[30] = '\0';
    /* the coordinator counts epochs from 1 while running */
    printf("\r\033[K[%s] %3.0f%%  epoch %u/%u  loss ", bar, frac * 100.0, s->epoch, s->epochs);
    if (isfinite(p->loss)) {
        printf("%.4f", p->loss);
    } else {
        fputs("-", stdout);
    }
    fputs("  accuracy ", stdout);
    if (isfinite(p->accuracy)) {
        printf("%.4f", p->accuracy);
    } else {
        fputs("-", stdout);
    }
    printf("  %.0f samples/s  (%s)", p->samples_per_s, s->state);
    fflush(stdout);
    p->bar_shown = 1;
}

int sp_jobs_follow(sp_cli_t *c, uint64_t job, int every_record, sp_job_status_t *final,
                   sp_metric_t **recs_out, size_t *n_out)
{
    s_progress_t p;
    memset(&p, 0, sizeof p);
    memset(final, 0, sizeof *final);
    p.tty = !c->json && isatty(STDOUT_FILENO);
    p.loss = p.accuracy = NAN;
    int print_lines = !c->json;
    uint64_t since = 0, last_heard = sp_cli_now_ms();
    sp_metric_t *recs = NULL;
    size_t n = 0, shown = 0;
    int have_samples = 0;
    sp_job_status_t s;
    memset(&s, 0, sizeof s);
    int rc;
    for (;;) {
        if (c->interrupt && *c->interrupt) {
            s_bar_clear(&p);
            free(recs);
            return sp_cli_report(c, SP_EXIT_FAIL, "interrupted");
        }
        rc = sp_jobs_status(c, job, &s, 1);
        if (rc == SP_EXIT_OK) {
            rc = sp_jobs_metrics(c, job, &since, &recs, &n, 1);
        }
        if (rc == SP_EXIT_UNREACHABLE) {
            /* a coordinator restarting from its checkpoint is silent for a moment */
            if (sp_cli_now_ms() - last_heard > (uint64_t)c->timeout_ms) {
                s_bar_clear(&p);
                free(recs);
                return sp_cli_report(c, SP_EXIT_UNREACHABLE,
                                     "lost the coordinator at %s: no reply within %d ms",
                                     c->endpoint, c->timeout_ms);
            }
            s_sleep_ms(c, S_POLL_MS);
            continue;
        }
        if (rc != SP_EXIT_OK) {
            s_bar_clear(&p);
            free(recs);
            return rc;
        }
        last_heard = sp_cli_now_ms();
        if (!have_samples && p.tty) {
            p.samples = s_dataset_samples(c, s.dataset);
            have_samples = 1;
        }
        for (; shown < n; shown++) {
            const sp_metric_t *m = &recs[shown];
            int is_epoch = strcmp(m->kind, "epoch") == 0;
            if (!is_epoch) {
                p.loss = m->loss;
                p.accuracy = m->accuracy;
                if (isfinite(m->samples_per_s)) {
                    p.samples_per_s = m->samples_per_s;
                }
            }
            if (print_lines && (every_record || is_epoch)) {
                s_bar_clear(&p);
                sp_report_metric_line(stdout, m);
                fflush(stdout);
            }
        }
        if (sp_jobs_finished(s.state)) {
            break;
        }
        if (p.tty) {
            s_bar_draw(&p, &s);
        }
        s_sleep_ms(c, S_POLL_MS);
    }
    s_bar_clear(&p);
    *final = s;
    if (recs_out) {
        *recs_out = recs;
        *n_out = n;
    } else {
        free(recs);
    }
    return strcmp(s.state, "done") == 0 ? SP_EXIT_OK : SP_EXIT_FAIL;
}

/* Parses "A,B,...,Z" into layers; 0 or SP_EXIT_USAGE after reporting. */
static int s_parse_layers(const sp_cli_t *c, const char *s, sp_msg_train_t *t)
{
    t->n_layers = 0;
    const char *p = s;
    for (;;) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || t->n_layers >= SP_MAX_LAYERS) {
            return sp_cli_report(c, SP_EXIT_USAGE,
                                 "bad value for --layers: '%s' (expected 2 to %d sizes like "
                                 "784,128,10)",
                                 s, SP_MAX_LAYERS);
        }
        memcpy(item, p, len);
        item[len] = '\0';
        uint32_t v = 0;
        if (sp_args_u32(c, "--layers", item, 1, 65536, &v) != 0) {
            return SP_EXIT_USAGE;
        }
        t->layers[t->n_layers++] = v;
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    if (t->n_layers < 2) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "bad value for --layers: '%s' (at least an input and an output size)",
                             s);
    }
    return 0;
}

static int s_copy_name(const sp_cli_t *c, const char *flag, const char *v, char *dst)
{
    size_t len = strlen(v);
    if (len == 0 || len >= SP_NAME_MAX) {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: '%s' (1 to %d characters)", flag,
                             v, SP_NAME_MAX - 1);
    }
    memcpy(dst, v, len + 1);
    return 0;
}

static const char s_train_usage[] =
    "usage: spatium train --dataset NAME --layers A,B,...,Z [options] [--wait]\n"
    "Starts a training job on a stored dataset and prints its id.\n"
    "  --dataset NAME          training dataset (see `spatium datasets`)\n"
    "  --layers A,B,...,Z      layer sizes, input width first (e.g. 784,128,10)\n"
    "  --bits 1|2|4            weight width (default 4)\n"
    "  --epochs N              passes over the dataset (default 5)\n"
    "  --batch N               samples per optimizer step (default 64)\n"
    "  --partition N           samples per work unit sent to a worker (default\n"
    "                          min(128, batch)); the leaves of the tree the step's\n"
    "                          gradient is summed in: the model depends on it (float\n"
    "                          rounding), never on how many workers ran the job\n"
    "  --lr X                  learning rate (default 0.02)\n"
    "  --momentum X            SGD momentum, 0..1 (default 0.9)\n"
    "  --seed N                initial weights and shuffling (default 1)\n"
    "  --mode backprop|local   learning rule (default backprop)\n"
    "  --loss mse|xent         loss (default xent for classification, mse for regression)\n"
    "  --validation NAME       dataset to measure validation loss/accuracy on\n"
    "  --growth-every N        steps between growth decisions (default 0 = off)\n"
    "  --growth-threshold X    split neurons whose saturation exceeds X (default 0.9)\n"
    "  --prune-every N         steps between pruning decisions (default 0 = off)\n"
    "  --prune-threshold X     remove neurons whose saturation is not above X (default 0.01)\n"
    "  --min-node N            split a step among workers only into shares of at least N\n"
    "                          samples (default: as many as take 1.5 ms to compute, at\n"
    "                          the speed the workers report; 1 = down to single\n"
    "                          partitions); results do not depend on it\n"
    "  --wait                  follow the job to its end (progress bar on a terminal);\n"
    "                          exit 1 if it failed or was cancelled\n"
    "--json: {\"job\": N}; with --wait the final status object.\n";

/* Reads train's flags into t (defaults first) and *wait. -1 to go on, else
 * the exit status (help, or a usage error already reported). */
static int s_train_flags(sp_cli_t *c, int argc, char **argv, sp_msg_train_t *t, int *wait)
{
    t->bits = 4;
    t->epochs = 5;
    t->batch = 64;
    t->partition = 0; /* 0: not given, min(128, batch) */
    t->lr = 0.02;
    t->momentum = 0.9;
    t->seed = 1;
    strcpy(t->mode, "backprop");
    t->growth_threshold = 0.9;
    t->prune_threshold = 0.01;
    int have_layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m = 0;
        if (sp_args_is_help(a)) {
            fputs(s_train_usage, stdout);
            return SP_EXIT_OK;
        }
        if (strcmp(a, "--wait") == 0) {
            *wait = 1;
            continue;
        }
#define S_OPT(name) ((m = sp_args_value(c, argc, argv, &i, name, &v)) != 0)
        int bad = 0;
        if (S_OPT("--dataset")) {
            bad = m < 0 || s_copy_name(c, "--dataset", v, t->dataset);
        } else if (S_OPT("--validation")) {
            bad = m < 0 || s_copy_name(c, "--validation", v, t->validation);
        } else if (S_OPT("--layers")) {
            bad = m < 0 || s_parse_layers(c, v, t);
            have_layers = 1;
        } else if (S_OPT("--bits")) {
            bad = m < 0 || sp_args_u32(c, "--bits", v, 1, 4, &t->bits);
            if (!bad && t->bits == 3) {
                bad = sp_cli_report(c, SP_EXIT_USAGE, "bad value for --bits: 3 (1, 2 or 4)");
            }
        } else if (S_OPT("--epochs")) {
            bad = m < 0 || sp_args_u32(c, "--epochs", v, 1, 100000, &t->epochs);
        } else if (S_OPT("--batch")) {
            bad = m < 0 || sp_args_u32(c, "--batch", v, 1, 1048576, &t->batch);
        } else if (S_OPT("--partition")) {
            bad = m < 0 || sp_args_u32(c, "--partition", v, 1, 1048576, &t->partition);
        } else if (S_OPT("--lr")) {
            bad = m < 0 || sp_args_double(c, "--lr", v, 1e-9, 1e3, &t->lr);
        } else if (S_OPT("--momentum")) {
            bad = m < 0 || sp_args_double(c, "--momentum", v, 0.0, 1.0, &t->momentum);
        } else if (S_OPT("--seed")) {
            bad = m < 0 || sp_args_u64(c, "--seed", v, 0, UINT64_MAX, &t->seed);
        } else if (S_OPT("--mode")) {
            if (m > 0 && strcmp(v, "backprop") != 0 && strcmp(v, "local") != 0) {
                bad = sp_cli_report(c, SP_EXIT_USAGE,
                                    "bad value for --mode: '%s' (backprop or local)", v);
            } else {
                bad = m < 0;
                if (!bad) {
                    strcpy(t->mode, v);
                }
            }
        } else if (S_OPT("--loss")) {
            if (m > 0 && strcmp(v, "mse") != 0 && strcmp(v, "xent") != 0) {
                bad =
                    sp_cli_report(c, SP_EXIT_USAGE, "bad value for --loss: '%s' (mse or xent)", v);
            } else {
                bad = m < 0;
                if (!bad) {
                    strcpy(t->loss, v);
                }
            }
        } else if (S_OPT("--growth-every")) {
            bad = m < 0 || sp_args_u32(c, "--growth-every", v, 0, UINT32_MAX, &t->growth_every);
        } else if (S_OPT("--growth-threshold")) {
            bad =
                m < 0 || sp_args_double(c, "--growth-threshold", v, 0.0, 1.0, &t->growth_threshold);
        } else if (S_OPT("--prune-every")) {
            bad = m < 0 || sp_args_u32(c, "--prune-every", v, 0, UINT32_MAX, &t->prune_every);
        } else if (S_OPT("--prune-threshold")) {
            bad = m < 0 || sp_args_double(c, "--prune-threshold", v, 0.0, 1.0, &t->prune_threshold);
        } else if (S_OPT("--min-node")) {
            bad = m < 0 || sp_args_u32(c, "--min-node", v, 1, 1u << 20, &t->min_node);
        } else {
            int g = sp_args_global(c, argc, argv, &i);
            if (g < 0) {
                return SP_EXIT_USAGE;
            }
            if (g == 0) {
                return sp_cli_report(c, SP_EXIT_USAGE, "train: %s '%s' (see spatium train --help)",
                                     a[0] == '-' ? "unknown option" : "unexpected argument", a);
            }
        }
#undef S_OPT
        if (bad) {
            return SP_EXIT_USAGE;
        }
    }
    if (!t->dataset[0] || !have_layers) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "train: --dataset and --layers are required (see spatium train "
                             "--help)");
    }
    if (t->partition == 0) {
        t->partition = t->batch < 128 ? t->batch : 128;
    }
    if (t->partition > t->batch) {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for --partition: %u (at most --batch %u)",
                             t->partition, t->batch);
    }
    return -1;
}

/* Without --loss: softmax cross-entropy for a classification set, MSE for
 * a regression set, which only the coordinator's list of datasets says. */
static int s_default_loss(sp_cli_t *c, sp_msg_train_t *t)
{
    strcpy(t->loss, "xent");
    sp_msg_t dreq, drep;
    sp_msg_init(&dreq, SP_MSG_DATASETS);
    int rc = sp_cli_call(c, &dreq, SP_MSG_R_DATASETS, &drep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    for (uint32_t k = 0; k < drep.u.r_datasets.n; k++) {
        const sp_dataset_info_t *d = &drep.u.r_datasets.datasets[k];
        if (strcmp(d->name, t->dataset) == 0 && strcmp(d->task, "regress") == 0) {
            strcpy(t->loss, "mse");
        }
    }
    sp_msg_fini(&drep);
    return SP_EXIT_OK;
}

int sp_cmd_train(sp_cli_t *c, int argc, char **argv)
{
    sp_msg_t req;
    sp_msg_init(&req, SP_MSG_TRAIN);
    sp_msg_train_t *t = &req.u.train;
    int wait = 0;
    int rc = s_train_flags(c, argc, argv, t, &wait);
    if (rc >= 0) {
        return rc;
    }
    if (!t->loss[0] && (rc = s_default_loss(c, t)) != SP_EXIT_OK) {
        return rc;
    }
    sp_msg_t rep;
    rc = sp_cli_call(c, &req, SP_MSG_R_JOB, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    uint64_t job = rep.u.r_job.job;
    sp_msg_fini(&rep);
    if (!wait) {
        if (c->json) {
            sp_json_t j;
            sp_json_init(&j, stdout);
            sp_json_obj_begin(&j);
            sp_json_ku64(&j, "job", job);
            sp_json_obj_end(&j);
        } else {
            printf("%" PRIu64 "\n", job);
        }
        return SP_EXIT_OK;
    }
    if (!c->json) {
        printf("job %" PRIu64 " started\n", job);
        fflush(stdout);
    }
    sp_job_status_t s;
    rc = sp_jobs_follow(c, job, 0, &s, NULL, NULL);
    if (rc == SP_EXIT_UNREACHABLE || (rc != SP_EXIT_OK && !s.state[0])) {
        return rc;
    }
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_report_status_fields(&j, &s);
        sp_json_obj_end(&j);
    } else {
        sp_report_status_line(stdout, &s);
    }
    if (rc != SP_EXIT_OK) {
        fprintf(stderr, "spatium: job %" PRIu64 " %s%s%s\n", job, s.state, s.error[0] ? ": " : "",
                s.error);
    }
    return rc;
}

static const char s_watch_usage[] =
    "usage: spatium watch JOB\n"
    "Prints job JOB's metric records as they arrive (a few times a second) until\n"
    "the job ends; exit 1 if it failed or was cancelled.\n"
    "--json: at the end, {\"job\", \"state\", ..., \"records\": [...]}.\n";

int sp_cmd_watch(sp_cli_t *c, int argc, char **argv)
{
    const char *job_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (sp_args_is_help(argv[i])) {
            fputs(s_watch_usage, stdout);
            return SP_EXIT_OK;
        }
        int g = sp_args_global(c, argc, argv, &i);
        if (g < 0) {
            return SP_EXIT_USAGE;
        }
        if (g > 0) {
            continue;
        }
        if ((argv[i][0] == '-' && argv[i][1] != '\0') || job_s) {
            return sp_cli_report(c, SP_EXIT_USAGE, "watch: %s '%s'",
                                 argv[i][0] == '-' ? "unknown option" : "unexpected argument",
                                 argv[i]);
        }
        job_s = argv[i];
    }
    uint64_t job = 0;
    if (!job_s) {
        return sp_cli_report(c, SP_EXIT_USAGE, "watch: usage: spatium watch JOB");
    }
    if (sp_args_u64(c, "JOB", job_s, 1, UINT64_MAX, &job) != 0) {
        return SP_EXIT_USAGE;
    }
    sp_job_status_t s;
    memset(&s, 0, sizeof s);
    sp_metric_t *recs = NULL;
    size_t n = 0;
    int rc = sp_jobs_follow(c, job, 1, &s, &recs, &n);
    if (rc == SP_EXIT_UNREACHABLE || (rc != SP_EXIT_OK && !s.state[0])) {
        free(recs);
        return rc;
    }
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_report_status_fields(&j, &s);
        sp_json_key(&j, "records");
        sp_json_arr_begin(&j);
        for (size_t i = 0; i < n; i++) {
            sp_report_metric_json(&j, &recs[i]);
        }
        sp_json_arr_end(&j);
        sp_json_obj_end(&j);
    } else {
        sp_report_status_line(stdout, &s);
    }
    free(recs);
    return rc;
}
