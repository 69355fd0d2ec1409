/* report: formatting of the client's outputs (see report.h). Every output
 * format is written from the same decoded structs, so the JSON, text, CSV
 * and Prometheus views of a record always agree. */
#include "client/report.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

/* Prints v with fmt, or "-" when it is not a number. */
static void s_num(FILE *f, const char *fmt, double v)
{
    if (isfinite(v)) {
        fprintf(f, fmt, v);
    } else {
        fputs("-", f);
    }
}

void sp_report_status_fields(sp_json_t *j, const sp_job_status_t *s)
{
    sp_json_ku64(j, "job", s->job);
    sp_json_kstr(j, "dataset", s->dataset);
    sp_json_kstr(j, "state", s->state);
    sp_json_ku64(j, "epoch", s->epoch);
    sp_json_ku64(j, "epochs", s->epochs);
    sp_json_ku64(j, "step", s->step);
    sp_json_ku64(j, "samples_seen", s->samples_seen);
    sp_json_knum(j, "loss", s->loss);
    sp_json_knum(j, "accuracy", s->accuracy);
    sp_json_knum(j, "val_accuracy", s->val_accuracy);
    sp_json_kstr(j, "error", s->error);
}

void sp_report_status_line(FILE *f, const sp_job_status_t *s)
{
    fprintf(f,
            "job %" PRIu64 " %s  dataset %s  epoch %u/%u  step %" PRIu64 "  samples %" PRIu64
            "  loss ",
            s->job, s->state, s->dataset, s->epoch, s->epochs, s->step, s->samples_seen);
    s_num(f, "%.4f", s->loss);
    fputs("  accuracy ", f);
    s_num(f, "%.4f", s->accuracy);
    fputs("  val_accuracy ", f);
    s_num(f, "%.4f", s->val_accuracy);
    if (s->error[0]) {
        fprintf(f, "  error: %s", s->error);
    }
    fputc('\n', f);
}

void sp_report_status_header(FILE *f)
{
    fprintf(f, "%-6s %-10s %-16s %-9s %-10s %-9s %-9s %-9s\n", "JOB", "STATE", "DATASET", "EPOCH",
            "SAMPLES", "LOSS", "ACCURACY", "VAL_ACC");
}

void sp_report_status_row(FILE *f, const sp_job_status_t *s)
{
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%u/%u", s->epoch, s->epochs);
    fprintf(f, "%-6" PRIu64 " %-10s %-16s %-9s %-10" PRIu64 " ", s->job, s->state, s->dataset,
            epoch, s->samples_seen);
    s_num(f, "%-9.4f", s->loss);
    fputc(' ', f);
    s_num(f, "%-9.4f", s->accuracy);
    fputc(' ', f);
    s_num(f, "%-9.4f", s->val_accuracy);
    if (s->error[0]) {
        fprintf(f, " %s", s->error);
    }
    fputc('\n', f);
}

void sp_report_worker_fields(sp_json_t *j, const sp_worker_info_t *w)
{
    sp_json_ku64(j, "id", w->id);
    sp_json_kstr(j, "name", w->name);
    sp_json_ku64(j, "threads", w->threads);
    sp_json_kbool(j, "alive", w->alive);
    sp_json_ku64(j, "partitions_done", w->partitions_done);
    sp_json_knum(j, "samples_per_s", w->samples_per_s);
    sp_json_ku64(j, "heartbeats_missed", w->heartbeats_missed);
    sp_json_ku64(j, "failures", w->failures);
    sp_json_ku64(j, "bytes_in", w->bytes_in);
    sp_json_ku64(j, "bytes_out", w->bytes_out);
}

void sp_report_worker_header(FILE *f)
{
    fprintf(f, "%-5s %-24s %-7s %-6s %-11s %-12s %-7s %-8s\n", "ID", "NAME", "THREADS", "ALIVE",
            "PARTITIONS", "SAMPLES/S", "MISSED", "FAILURES");
}

void sp_report_worker_row(FILE *f, const sp_worker_info_t *w)
{
    fprintf(f, "%-5u %-24s %-7u %-6s %-11" PRIu64 " ", w->id, w->name, w->threads,
            w->alive ? "yes" : "no", w->partitions_done);
    s_num(f, "%-12.0f", w->samples_per_s);
    fprintf(f, " %-7u %-8u\n", w->heartbeats_missed, w->failures);
}

void sp_report_dataset_fields(sp_json_t *j, const sp_dataset_info_t *d)
{
    sp_json_kstr(j, "name", d->name);
    sp_json_kstr(j, "task", d->task);
    sp_json_ku64(j, "samples", d->samples);
    sp_json_ku64(j, "features", d->features);
    sp_json_ku64(j, "classes", d->classes);
    char sum[24];
    snprintf(sum, sizeof sum, "%016" PRIx64, d->checksum);
    sp_json_kstr(j, "checksum", sum);
    sp_json_ku64(j, "bytes", d->bytes);
}

void sp_report_dataset_header(FILE *f)
{
    fprintf(f, "%-24s %-9s %-9s %-9s %-8s %-12s %-16s\n", "NAME", "TASK", "SAMPLES", "FEATURES",
            "CLASSES", "BYTES", "CHECKSUM");
}

void sp_report_dataset_row(FILE *f, const sp_dataset_info_t *d)
{
    fprintf(f, "%-24s %-9s %-9u %-9u %-8u %-12" PRIu64 " %016" PRIx64 "\n", d->name, d->task,
            d->samples, d->features, d->classes, d->bytes, d->checksum);
}

static uint32_t s_layers(const sp_metric_t *m)
{
    return m->n_layers <= SP_MAX_LAYERS ? m->n_layers : SP_MAX_LAYERS;
}

void sp_report_metric_json(sp_json_t *j, const sp_metric_t *m)
{
    sp_json_obj_begin(j);
    sp_json_ku64(j, "index", m->index);
    sp_json_ku64(j, "job", m->job);
    sp_json_kstr(j, "kind", m->kind);
    sp_json_ku64(j, "epoch", m->epoch);
    sp_json_ku64(j, "step", m->step);
    sp_json_ku64(j, "time_ms", m->time_ms);
    sp_json_knum(j, "loss", m->loss);
    sp_json_knum(j, "accuracy", m->accuracy);
    sp_json_knum(j, "val_loss", m->val_loss);
    sp_json_knum(j, "val_accuracy", m->val_accuracy);
    sp_json_knum(j, "samples_per_s", m->samples_per_s);
    sp_json_key(j, "neurons");
    sp_json_arr_begin(j);
    for (uint32_t i = 0; i < s_layers(m); i++) {
        sp_json_u64(j, m->neurons[i]);
    }
    sp_json_arr_end(j);
    sp_json_key(j, "saturation");
    sp_json_arr_begin(j);
    for (uint32_t i = 0; i < s_layers(m); i++) {
        sp_json_num(j, m->saturation[i]);
    }
    sp_json_arr_end(j);
    sp_json_ku64(j, "growth_candidates", m->growth_candidates);
    sp_json_ku64(j, "prune_candidates", m->prune_candidates);
    sp_json_knum(j, "sparsity", m->sparsity);
    sp_json_obj_end(j);
}

void sp_report_metric_line(FILE *f, const sp_metric_t *m)
{
    /* the record's kind first, with its own counter; both 23 columns wide */
    if (strcmp(m->kind, "epoch") == 0) {
        fprintf(f, "epoch %-4u step %-7" PRIu64, m->epoch, m->step);
    } else {
        fprintf(f, "step %-7" PRIu64 " epoch %-4u", m->step, m->epoch);
    }
    fputs("  loss ", f);
    s_num(f, "%.4f", m->loss);
    fputs("  accuracy ", f);
    s_num(f, "%.4f", m->accuracy);
    if (isfinite(m->val_loss) || isfinite(m->val_accuracy)) {
        fputs("  val_loss ", f);
        s_num(f, "%.4f", m->val_loss);
        fputs("  val_accuracy ", f);
        s_num(f, "%.4f", m->val_accuracy);
    }
    fputs("  ", f);
    s_num(f, "%.0f", m->samples_per_s);
    fputs(" samples/s  neurons", f);
    for (uint32_t i = 0; i < s_layers(m); i++) {
        fprintf(f, "%c%u", i ? '-' : ' ', m->neurons[i]);
    }
    fputc('\n', f);
}

void sp_report_metric_csv_header(FILE *f)
{
    fputs("index,job,kind,epoch,step,time_ms,loss,accuracy,val_loss,val_accuracy,samples_per_s,"
          "growth_candidates,prune_candidates,sparsity,neurons,saturation\n",
          f);
}

static void s_csv_num(FILE *f, double v)
{
    if (isfinite(v)) {
        fprintf(f, "%.9g", v);
    }
    fputc(',', f);
}

void sp_report_metric_csv_row(FILE *f, const sp_metric_t *m)
{
    /* kind is one of a few fixed words; no quoting needed, but never trust it */
    char kind[sizeof m->kind + 1];
    size_t k = 0;
    for (size_t i = 0; i < sizeof m->kind && m->kind[i]; i++) {
        if (m->kind[i] != ',' && m->kind[i] != '"' && m->kind[i] != '\n') {
            kind[k++] = m->kind[i];
        }
    }
    kind[k] = '\0';
    fprintf(f, "%" PRIu64 ",%" PRIu64 ",%s,%u,%" PRIu64 ",%" PRIu64 ",", m->index, m->job, kind,
            m->epoch, m->step, m->time_ms);
    s_csv_num(f, m->loss);
    s_csv_num(f, m->accuracy);
    s_csv_num(f, m->val_loss);
    s_csv_num(f, m->val_accuracy);
    s_csv_num(f, m->samples_per_s);
    fprintf(f, "%u,%u,", m->growth_candidates, m->prune_candidates);
    s_csv_num(f, m->sparsity);
    for (uint32_t i = 0; i < s_layers(m); i++) {
        fprintf(f, "%s%u", i ? ";" : "", m->neurons[i]);
    }
    fputc(',', f);
    for (uint32_t i = 0; i < s_layers(m); i++) {
        fprintf(f, "%s%.6g", i ? ";" : "", (double)m->saturation[i]);
    }
    fputc('\n', f);
}

typedef struct {
    const char *name; /* without the spatium_ prefix */
    const char *help;
    int layered; /* one series per layer */
} s_prom_metric_t;

static const s_prom_metric_t s_prom[] = {
    {"loss", "Mean training loss of the latest record of each kind.", 0},
    {"accuracy", "Training accuracy of the latest record of each kind (classification).", 0},
    {"val_loss", "Validation loss of the latest record of each kind.", 0},
    {"val_accuracy", "Validation accuracy of the latest record of each kind.", 0},
    {"samples_per_second", "Training throughput of the latest record of each kind.", 0},
    {"epoch", "Epoch of the latest record of each kind.", 0},
    {"step", "Global step of the latest record of each kind.", 0},
    {"sparsity", "Fraction of absent weights over all neurons.", 0},
    {"growth_candidates", "Neurons that would split at the next growth decision.", 0},
    {"prune_candidates", "Neurons at or below the prune threshold.", 0},
    {"neurons", "Neurons per computing layer.", 1},
    {"saturation", "Average saturation of the neurons of a layer (0..1).", 1},
};

static double s_prom_value(const sp_metric_t *m, size_t which, uint32_t layer)
{
    switch (which) {
    case 0:
        return m->loss;
    case 1:
        return m->accuracy;
    case 2:
        return m->val_loss;
    case 3:
        return m->val_accuracy;
    case 4:
        return m->samples_per_s;
    case 5:
        return m->epoch;
    case 6:
        return (double)m->step;
    case 7:
        return m->sparsity;
    case 8:
        return m->growth_candidates;
    case 9:
        return m->prune_candidates;
    case 10:
        return m->neurons[layer];
    default:
        return m->saturation[layer];
    }
}

void sp_report_metric_prometheus(FILE *f, uint64_t job, const sp_metric_t *recs, size_t n)
{
    static const char *kinds[] = {"step", "epoch"};
    const sp_metric_t *latest[2] = {NULL, NULL};
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < 2; k++) {
            if (strcmp(recs[i].kind, kinds[k]) == 0) {
                latest[k] = &recs[i];
            }
        }
    }
    fputs("# HELP spatium_metric_records_total Metric records the coordinator kept for the job.\n"
          "# TYPE spatium_metric_records_total counter\n",
          f);
    fprintf(f, "spatium_metric_records_total{job=\"%" PRIu64 "\"} %zu\n", job, n);
    for (size_t w = 0; w < sizeof s_prom / sizeof s_prom[0]; w++) {
        fprintf(f, "# HELP spatium_%s %s\n# TYPE spatium_%s gauge\n", s_prom[w].name,
                s_prom[w].help, s_prom[w].name);
        for (size_t k = 0; k < 2; k++) {
            const sp_metric_t *m = latest[k];
            if (!m) {
                continue;
            }
            uint32_t nl = s_prom[w].layered ? s_layers(m) : 1;
            for (uint32_t l = 0; l < nl; l++) {
                double v = s_prom_value(m, w, l);
                if (!isfinite(v)) {
                    continue;
                }
                fprintf(f, "spatium_%s{job=\"%" PRIu64 "\",kind=\"%s\"", s_prom[w].name, job,
                        kinds[k]);
                if (s_prom[w].layered) {
                    fprintf(f, ",layer=\"%u\"", l + 1);
                }
                fprintf(f, "} %.9g\n", v);
            }
        }
    }
}

void sp_report_written(int json, uint64_t job, const char *file, const char *key, uint64_t value,
                       const char *line)
{
    if (!json) {
        printf("%s\n", line);
        return;
    }
    sp_json_t j;
    sp_json_init(&j, stdout);
    sp_json_obj_begin(&j);
    sp_json_ku64(&j, "job", job);
    sp_json_kstr(&j, "file", file);
    sp_json_ku64(&j, key, value);
    sp_json_obj_end(&j);
}
