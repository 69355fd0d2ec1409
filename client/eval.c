/* eval: the `eval` command. Runs a saved model on a data file locally, in
 * chunks of rows, and reports accuracy (classification: argmax of the
 * outputs against the label) or mean squared error (regression: first
 * output against the target). Needs no coordinator. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client/commands.h"
#include "client/datafile.h"
#include "client/json.h"
#include "common/dataset.h"
#include "common/error.h"
#include "common/network.h"

#define S_EVAL_CHUNK 1024 /* rows per forward call */

static const char s_eval_usage_head[] =
    "usage: spatium eval MODEL FILE [LABELS_FILE] [options]\n"
    "Evaluates the model file MODEL (from `spatium model`) on a CSV file or an\n"
    "IDX images + labels pair, locally: accuracy for classification, mean squared\n"
    "error for regression.\n";

typedef struct {
    uint64_t samples;
    uint64_t correct;
    double sq_err;
} s_eval_t;

static int s_run(sp_cli_t *c, sp_network_t *net, const sp_dataset_t *d, s_eval_t *ev)
{
    size_t n_in = sp_network_n_inputs(net), n_out = sp_network_n_outputs(net);
    if (n_in != d->n_features) {
        return sp_cli_report(c, SP_EXIT_FAIL,
                             "eval: the model takes %zu inputs but the data has %u features", n_in,
                             d->n_features);
    }
    if (d->task == SP_TASK_CLASSIFY && d->n_classes > n_out) {
        return sp_cli_report(c, SP_EXIT_FAIL,
                             "eval: the data has %u classes but the model only %zu outputs",
                             d->n_classes, n_out);
    }
    float *X = malloc((size_t)S_EVAL_CHUNK * d->n_features * sizeof *X);
    float *Y = malloc((size_t)S_EVAL_CHUNK * n_out * sizeof *Y);
    if (!X || !Y) {
        free(X);
        free(Y);
        return sp_cli_report(c, SP_EXIT_FAIL, "eval: out of memory");
    }
    memset(ev, 0, sizeof *ev);
    for (size_t at = 0; at < d->n_samples; at += S_EVAL_CHUNK) {
        size_t rows = d->n_samples - at < S_EVAL_CHUNK ? d->n_samples - at : S_EVAL_CHUNK;
        sp_dataset_rows(d, (uint32_t)at, rows, X);
        int rc = sp_network_forward(net, X, rows, Y);
        if (rc != SP_OK) {
            free(X);
            free(Y);
            return sp_cli_report(c, SP_EXIT_FAIL, "eval: forward failed: %s", sp_strerror(rc));
        }
        for (size_t r = 0; r < rows; r++) {
            const float *y = Y + r * n_out;
            float target = d->y[at + r];
            if (d->task == SP_TASK_CLASSIFY) {
                size_t best = 0;
                for (size_t k = 1; k < n_out; k++) {
                    if (y[k] > y[best]) {
                        best = k;
                    }
                }
                ev->correct += (float)best == target;
            } else {
                double e = (double)y[0] - (double)target;
                ev->sq_err += e * e;
            }
        }
        ev->samples += rows;
    }
    free(X);
    free(Y);
    return SP_EXIT_OK;
}

int sp_cmd_eval(sp_cli_t *c, int argc, char **argv)
{
    sp_datafile_opts_t o;
    sp_datafile_opts_default(&o);
    const char *pos[3] = {NULL, NULL, NULL};
    int n = 0;
    int pr = sp_datafile_args(c, argc, argv, "spatium eval MODEL FILE [LABELS_FILE] [options]", &o,
                              pos, &n);
    if (pr == SP_DATAFILE_ARGS_HELP) {
        fputs(s_eval_usage_head, stdout);
        fputs(sp_datafile_help, stdout);
        fputs("--json: {\"accuracy\",\"samples\"} or {\"mse\",\"samples\"}.\n", stdout);
        return SP_EXIT_OK;
    }
    if (pr != SP_DATAFILE_ARGS_OK) {
        return SP_EXIT_USAGE;
    }
    if (sp_datafile_check(c, &o, pos[1], pos[2]) != SP_EXIT_OK) {
        return SP_EXIT_USAGE;
    }
    char err[512] = "";
    sp_network_t *net = NULL;
    int rc = sp_network_load_file(pos[0], &net, err, sizeof err);
    if (rc != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", pos[0], err[0] ? err : sp_strerror(rc));
    }
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    rc = sp_datafile_load(c, &o, pos[1], pos[2], &d);
    if (rc != SP_EXIT_OK) {
        sp_network_destroy(&net);
        return rc;
    }
    s_eval_t ev;
    rc = s_run(c, net, &d, &ev);
    sp_task_t task = d.task;
    sp_network_destroy(&net);
    sp_dataset_fini(&d);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    double n_s = ev.samples ? (double)ev.samples : 1.0;
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        if (task == SP_TASK_CLASSIFY) {
            sp_json_knum(&j, "accuracy", (double)ev.correct / n_s);
        } else {
            sp_json_knum(&j, "mse", ev.sq_err / n_s);
        }
        sp_json_ku64(&j, "samples", ev.samples);
        sp_json_obj_end(&j);
    } else if (task == SP_TASK_CLASSIFY) {
        printf("accuracy %.4f (%" PRIu64 " of %" PRIu64 " samples)\n", (double)ev.correct / n_s,
               ev.correct, ev.samples);
    } else {
        printf("mse %.6g (%" PRIu64 " samples)\n", ev.sq_err / n_s, ev.samples);
    }
    return SP_EXIT_OK;
}
