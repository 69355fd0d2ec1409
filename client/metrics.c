/* metrics: the `metrics` command and the status / metrics requests other
 * commands reuse. Records are fetched in pages (the coordinator answers at
 * most SP_MAX_LIST per reply) until a reply brings nothing new. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "client/commands.h"
#include "client/jobs.h"
#include "client/json.h"
#include "client/plot.h"
#include "client/report.h"
#include "common/error.h"

int sp_jobs_finished(const char *state)
{
    return strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "cancelled") == 0;
}

int sp_jobs_status(sp_cli_t *c, uint64_t job, sp_job_status_t *out, int quiet)
{
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_STATUS);
    req.u.job_req.job = job;
    int rc = quiet ? sp_cli_call_quiet(c, &req, SP_MSG_R_STATUS, &rep)
                   : sp_cli_call(c, &req, SP_MSG_R_STATUS, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    rc = SP_EXIT_FAIL;
    for (uint32_t i = 0; i < rep.u.r_status.n; i++) {
        if (rep.u.r_status.jobs[i].job == job) {
            *out = rep.u.r_status.jobs[i];
            rc = SP_EXIT_OK;
        }
    }
    sp_msg_fini(&rep);
    if (rc != SP_EXIT_OK) {
        return sp_cli_report(c, rc, "status: no job %" PRIu64, job);
    }
    return rc;
}

int sp_jobs_metrics(sp_cli_t *c, uint64_t job, uint64_t *since, sp_metric_t **recs, size_t *n,
                    int quiet)
{
    for (;;) {
        sp_msg_t req, rep;
        sp_msg_init(&req, SP_MSG_METRICS);
        req.u.job_req.job = job;
        req.u.job_req.since = *since;
        int rc = quiet ? sp_cli_call_quiet(c, &req, SP_MSG_R_METRICS, &rep)
                       : sp_cli_call(c, &req, SP_MSG_R_METRICS, &rep);
        if (rc != SP_EXIT_OK) {
            return rc;
        }
        const sp_msg_r_metrics_t *r = &rep.u.r_metrics;
        size_t added = 0;
        if (r->n > 0) {
            sp_metric_t *grown = realloc(*recs, (*n + r->n) * sizeof **recs);
            if (!grown) {
                sp_msg_fini(&rep);
                return sp_cli_report(c, SP_EXIT_FAIL, "metrics: out of memory");
            }
            *recs = grown;
            for (uint32_t i = 0; i < r->n; i++) {
                /* only records we have not seen, in order: a reply is never trusted
                 * to go backwards, so paging always ends */
                if (r->records[i].index >= *since) {
                    (*recs)[(*n)++] = r->records[i];
                    *since = r->records[i].index + 1;
                    added++;
                }
            }
        }
        sp_msg_fini(&rep);
        if (added == 0 || added < SP_MAX_LIST) {
            return SP_EXIT_OK;
        }
    }
}

static const char s_metrics_usage[] =
    "usage: spatium metrics JOB [--format json|csv|prometheus|png] [-o FILE]\n"
    "Every metric record of job JOB (per step and per epoch: loss, accuracy,\n"
    "validation, samples/s, neurons and saturation per layer, growth and prune\n"
    "candidates, sparsity).\n"
    "  json        {\"job\": N, \"records\": [...]} (the default; also with --json)\n"
    "  csv         a header line and one row per record (per-layer lists ';'-separated)\n"
    "  prometheus  text exposition format: gauges spatium_* of the latest step and\n"
    "              epoch record, labels job, kind (and layer), with # HELP / # TYPE\n"
    "  png         the loss and accuracy curves against the step as a picture,\n"
    "              written to FILE (-o is required; with --json the command prints\n"
    "              {\"job\", \"file\", \"records\"})\n";

int sp_cmd_metrics(sp_cli_t *c, int argc, char **argv)
{
    const char *job_s = NULL, *format = "json", *out = NULL;
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (sp_args_is_help(argv[i])) {
            fputs(s_metrics_usage, stdout);
            return SP_EXIT_OK;
        }
        if ((m = sp_args_value(c, argc, argv, &i, "--format", &v)) != 0) {
            if (m < 0) {
                return SP_EXIT_USAGE;
            }
            format = v;
            continue;
        }
        if ((m = sp_args_value(c, argc, argv, &i, "-o", &v)) != 0) {
            if (m < 0) {
                return SP_EXIT_USAGE;
            }
            out = v;
            continue;
        }
        if (sp_args_rest(c, argc, argv, &i, &job_s, &n_pos, 1) < 0) {
            return SP_EXIT_USAGE;
        }
    }
    int png = strcmp(format, "png") == 0;
    if (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0 &&
        strcmp(format, "prometheus") != 0 && !png) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "metrics: bad value for --format: '%s' (json, csv, prometheus or png)",
                             format);
    }
    if (png && (out == NULL || out[0] == '\0')) {
        return sp_cli_report(c, SP_EXIT_USAGE, "metrics: --format png needs -o FILE");
    }
    if (!png && out != NULL) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "metrics: -o is for --format png (the others print on stdout)");
    }
    if (!job_s) {
        return sp_cli_report(c, SP_EXIT_USAGE, "metrics: usage: spatium metrics JOB [--format F]");
    }
    uint64_t job = 0;
    if (sp_args_u64(c, "JOB", job_s, 1, UINT64_MAX, &job) != 0) {
        return SP_EXIT_USAGE;
    }
    if (c->json && !png) {
        format = "json"; /* --json promises one JSON object, whatever else was asked */
    }
    sp_metric_t *recs = NULL;
    size_t n = 0;
    uint64_t since = 0;
    int rc = sp_jobs_metrics(c, job, &since, &recs, &n, 0);
    if (rc != SP_EXIT_OK) {
        free(recs);
        return rc;
    }
    if (png) {
        char err[512] = "";
        sp_canvas_t cv;
        rc = sp_plot_metrics(recs, n, job, &cv, err, sizeof err);
        free(recs);
        if (rc == SP_OK) {
            rc = sp_canvas_save_png(&cv, out, err, sizeof err);
            sp_canvas_fini(&cv);
        }
        if (rc != SP_OK) {
            return sp_cli_report(c, SP_EXIT_FAIL, "metrics: %s", err);
        }
        char line[600];
        snprintf(line, sizeof line,
                 "wrote %s: the curves of job %" PRIu64 " from %zu metric record%s", out, job, n,
                 n == 1 ? "" : "s");
        sp_report_written(c->json, job, out, "records", n, line);
        return SP_EXIT_OK;
    }
    if (strcmp(format, "json") == 0) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_ku64(&j, "job", job);
        sp_json_key(&j, "records");
        sp_json_arr_begin(&j);
        for (size_t i = 0; i < n; i++) {
            sp_report_metric_json(&j, &recs[i]);
        }
        sp_json_arr_end(&j);
        sp_json_obj_end(&j);
    } else if (strcmp(format, "csv") == 0) {
        sp_report_metric_csv_header(stdout);
        for (size_t i = 0; i < n; i++) {
            sp_report_metric_csv_row(stdout, &recs[i]);
        }
    } else {
        sp_report_metric_prometheus(stdout, job, recs, n);
    }
    free(recs);
    return SP_EXIT_OK;
}
