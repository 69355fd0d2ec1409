/* commands: the one-request commands of the client (status, workers,
 * datasets, model, cancel). Each parses its arguments strictly, asks the
 * coordinator once and prints the reply as text or as one JSON object. */
#include "client/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/json.h"
#include "client/report.h"
#include "common/error.h"
#include "common/file.h"

/* Parses the arguments of a command that takes at most n_pos positionals and
 * no options of its own besides the global ones. Returns -1 after printing
 * help, -SP_EXIT_USAGE on error, else the number of positionals found. */
static int s_positionals(sp_cli_t *c, int argc, char **argv, const char *usage, int n_pos,
                         const char **pos)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (sp_args_is_help(argv[i])) {
            fputs(usage, stdout);
            return -1;
        }
        if (sp_args_rest(c, argc, argv, &i, pos, &n, n_pos) < 0) {
            return -SP_EXIT_USAGE;
        }
    }
    return n;
}

static int s_job_id(const sp_cli_t *c, const char *s, uint64_t *job)
{
    return sp_args_u64(c, "JOB", s, 1, UINT64_MAX, job);
}

static const char s_status_usage[] =
    "usage: spatium status [JOB]\n"
    "State of job JOB (queued, running, done, failed, cancelled), its epoch, samples\n"
    "seen, last loss and accuracy; without JOB, every job.\n"
    "--json: {\"job\",\"state\",\"epoch\",\"samples_seen\",\"loss\",\"accuracy\",...},\n"
    "or {\"jobs\": [...]} without JOB.\n";

int sp_cmd_status(sp_cli_t *c, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    int n = s_positionals(c, argc, argv, s_status_usage, 1, pos);
    if (n < 0) {
        return n == -1 ? SP_EXIT_OK : -n;
    }
    uint64_t job = 0;
    if (n == 1 && s_job_id(c, pos[0], &job) != 0) {
        return SP_EXIT_USAGE;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_STATUS);
    req.u.job_req.job = job;
    int rc = sp_cli_call(c, &req, SP_MSG_R_STATUS, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    const sp_msg_r_status_t *r = &rep.u.r_status;
    if (job != 0) {
        const sp_job_status_t *s = NULL;
        for (uint32_t i = 0; i < r->n; i++) {
            if (r->jobs[i].job == job) {
                s = &r->jobs[i];
            }
        }
        if (!s) {
            sp_msg_fini(&rep);
            return sp_cli_report(c, SP_EXIT_FAIL, "status: no job %" PRIu64, job);
        }
        if (c->json) {
            sp_json_t j;
            sp_json_init(&j, stdout);
            sp_json_obj_begin(&j);
            sp_report_status_fields(&j, s);
            sp_json_obj_end(&j);
        } else {
            sp_report_status_line(stdout, s);
        }
    } else if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_key(&j, "jobs");
        sp_json_arr_begin(&j);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_json_obj_begin(&j);
            sp_report_status_fields(&j, &r->jobs[i]);
            sp_json_obj_end(&j);
        }
        sp_json_arr_end(&j);
        sp_json_obj_end(&j);
    } else if (r->n == 0) {
        printf("no jobs\n");
    } else {
        sp_report_status_header(stdout);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_report_status_row(stdout, &r->jobs[i]);
        }
    }
    sp_msg_fini(&rep);
    return SP_EXIT_OK;
}

static const char s_workers_usage[] =
    "usage: spatium workers\n"
    "Workers known to the coordinator: id, name, threads, alive, partitions done,\n"
    "samples/s, heartbeats missed, failures. --json: {\"workers\": [...]}.\n";

int sp_cmd_workers(sp_cli_t *c, int argc, char **argv)
{
    const char *pos[1];
    int n = s_positionals(c, argc, argv, s_workers_usage, 0, pos);
    if (n < 0) {
        return n == -1 ? SP_EXIT_OK : -n;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_WORKERS);
    int rc = sp_cli_call(c, &req, SP_MSG_R_WORKERS, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    const sp_msg_r_workers_t *r = &rep.u.r_workers;
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_key(&j, "workers");
        sp_json_arr_begin(&j);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_json_obj_begin(&j);
            sp_report_worker_fields(&j, &r->workers[i]);
            sp_json_obj_end(&j);
        }
        sp_json_arr_end(&j);
        sp_json_obj_end(&j);
    } else if (r->n == 0) {
        printf("no workers\n");
    } else {
        sp_report_worker_header(stdout);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_report_worker_row(stdout, &r->workers[i]);
        }
    }
    sp_msg_fini(&rep);
    return SP_EXIT_OK;
}

static const char s_datasets_usage[] =
    "usage: spatium datasets\n"
    "Datasets stored by the coordinator: name, task, samples, features, classes,\n"
    "bytes, checksum. --json: {\"datasets\": [...]}.\n";

int sp_cmd_datasets(sp_cli_t *c, int argc, char **argv)
{
    const char *pos[1];
    int n = s_positionals(c, argc, argv, s_datasets_usage, 0, pos);
    if (n < 0) {
        return n == -1 ? SP_EXIT_OK : -n;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_DATASETS);
    int rc = sp_cli_call(c, &req, SP_MSG_R_DATASETS, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    const sp_msg_r_datasets_t *r = &rep.u.r_datasets;
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_key(&j, "datasets");
        sp_json_arr_begin(&j);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_json_obj_begin(&j);
            sp_report_dataset_fields(&j, &r->datasets[i]);
            sp_json_obj_end(&j);
        }
        sp_json_arr_end(&j);
        sp_json_obj_end(&j);
    } else if (r->n == 0) {
        printf("no datasets\n");
    } else {
        sp_report_dataset_header(stdout);
        for (uint32_t i = 0; i < r->n; i++) {
            sp_report_dataset_row(stdout, &r->datasets[i]);
        }
    }
    sp_msg_fini(&rep);
    return SP_EXIT_OK;
}

static const char s_model_usage[] =
    "usage: spatium model JOB -o FILE\n"
    "Fetches the current model of job JOB (the final one once the job is done)\n"
    "and writes it to FILE atomically (model file format: docs/MODEL_FORMAT.md).\n"
    "--json: {\"job\",\"file\",\"bytes\"}.\n";

int sp_cmd_model(sp_cli_t *c, int argc, char **argv)
{
    const char *out = NULL, *job_s = NULL;
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (sp_args_is_help(argv[i])) {
            fputs(s_model_usage, stdout);
            return SP_EXIT_OK;
        }
        if ((m = sp_args_value(c, argc, argv, &i, "-o", &v)) != 0 ||
            (m = sp_args_value(c, argc, argv, &i, "--output", &v)) != 0) {
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
    if (!job_s || !out || !out[0]) {
        return sp_cli_report(c, SP_EXIT_USAGE, "model: usage: spatium model JOB -o FILE");
    }
    uint64_t job = 0;
    if (s_job_id(c, job_s, &job) != 0) {
        return SP_EXIT_USAGE;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_MODEL_GET);
    req.u.job_req.job = job;
    int rc = sp_cli_call(c, &req, SP_MSG_R_MODEL, &rep);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    const sp_blob_t *b = &rep.u.r_model.model;
    if (b->len == 0) {
        sp_msg_fini(&rep);
        return sp_cli_report(c, SP_EXIT_FAIL, "model: the coordinator sent an empty model");
    }
    if (sp_file_write_atomic(out, b->data, b->len) != SP_OK) {
        int e = errno;
        sp_msg_fini(&rep);
        return sp_cli_report(c, SP_EXIT_FAIL, "model: cannot write %s: %s", out, strerror(e));
    }
    char line[600];
    snprintf(line, sizeof line, "model of job %" PRIu64 " written to %s (%zu bytes)", job, out,
             b->len);
    sp_report_written(c->json, job, out, "bytes", b->len, line);
    sp_msg_fini(&rep);
    return SP_EXIT_OK;
}

static const char s_cancel_usage[] =
    "usage: spatium cancel JOB\n"
    "Cancels job JOB (queued or running). --json: {\"job\",\"cancelled\": true}.\n";

int sp_cmd_cancel(sp_cli_t *c, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    int n = s_positionals(c, argc, argv, s_cancel_usage, 1, pos);
    if (n < 0) {
        return n == -1 ? SP_EXIT_OK : -n;
    }
    uint64_t job = 0;
    if (n != 1) {
        return sp_cli_report(c, SP_EXIT_USAGE, "cancel: usage: spatium cancel JOB");
    }
    if (s_job_id(c, pos[0], &job) != 0) {
        return SP_EXIT_USAGE;
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_CANCEL);
    req.u.job_req.job = job;
    int rc = sp_cli_call(c, &req, 0, &rep); /* r_ok, or whatever the coordinator acks with */
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    sp_msg_fini(&rep);
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_ku64(&j, "job", job);
        sp_json_kbool(&j, "cancelled", 1);
        sp_json_obj_end(&j);
    } else {
        printf("job %" PRIu64 " cancelled\n", job);
    }
    return SP_EXIT_OK;
}
