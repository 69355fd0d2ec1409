/* report: how the client prints jobs, workers, datasets and metric records:
 * as JSON (through client/json.h), as plain text lines, as CSV and in the
 * Prometheus text exposition format. Pure formatting: no I/O but the FILE
 * given, no state. Missing numbers (NaN) print as null in JSON, empty in
 * CSV, "-" in text and are left out of Prometheus output. */
#ifndef SP_CLIENT_REPORT_H
#define SP_CLIENT_REPORT_H

#include <stdio.h>

#include "client/json.h"
#include "proto/messages.h"

/* The members of one job status object (inside an open JSON object). */
/* What a command that wrote a file of job's prints on stdout: with json
 * {"job", "file", key: value}, else line. */
void sp_report_written(int json, uint64_t job, const char *file, const char *key, uint64_t value,
                       const char *line);
void sp_report_status_fields(sp_json_t *j, const sp_job_status_t *s);
/* One human line for a job: "job 3 running  epoch 2/5 ...". */
void sp_report_status_line(FILE *f, const sp_job_status_t *s);
void sp_report_status_header(FILE *f);
void sp_report_status_row(FILE *f, const sp_job_status_t *s);

void sp_report_worker_fields(sp_json_t *j, const sp_worker_info_t *w);
void sp_report_worker_header(FILE *f);
void sp_report_worker_row(FILE *f, const sp_worker_info_t *w);

void sp_report_dataset_fields(sp_json_t *j, const sp_dataset_info_t *d);
void sp_report_dataset_header(FILE *f);
void sp_report_dataset_row(FILE *f, const sp_dataset_info_t *d);

/* One metric record as a JSON object (a value in an open array or key). */
void sp_report_metric_json(sp_json_t *j, const sp_metric_t *m);
/* One human line for a metric record (watch, train --wait on a pipe). */
void sp_report_metric_line(FILE *f, const sp_metric_t *m);
/* CSV: header line, then one row per record. */
void sp_report_metric_csv_header(FILE *f);
void sp_report_metric_csv_row(FILE *f, const sp_metric_t *m);
/* Prometheus text format of a job's records: for each kind ("step",
 * "epoch") the latest record's values as gauges, labels job and kind (and
 * layer for per-layer series), plus a counter of records. */
void sp_report_metric_prometheus(FILE *f, uint64_t job, const sp_metric_t *recs, size_t n);

#endif
