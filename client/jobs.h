/* jobs: requests about one job that several commands share (train --wait,
 * watch, metrics, demo): its status and its metric records. */
#ifndef SP_CLIENT_JOBS_H
#define SP_CLIENT_JOBS_H

#include "client/cli.h"

/* Fetches job's status into *out. quiet: do not report an unreachable
 * coordinator (the caller retries). Returns an SP_EXIT_* code. */
int sp_jobs_status(sp_cli_t *c, uint64_t job, sp_job_status_t *out, int quiet);
/* Appends the records of job from index *since on to *recs (realloc'ed,
 * *n counts them) and advances *since; pages through replies until the
 * coordinator has no more. Returns an SP_EXIT_* code. */
int sp_jobs_metrics(sp_cli_t *c, uint64_t job, uint64_t *since, sp_metric_t **recs, size_t *n,
                    int quiet);
/* 1 for the states a job never leaves: done, failed, cancelled. */
int sp_jobs_finished(const char *state);

/* Follows job until it finishes: progress bar on a terminal, one line per
 * epoch record otherwise, nothing with --json (or when quiet_progress). A
 * coordinator silent for longer than the timeout ends it with
 * SP_EXIT_UNREACHABLE; short silences (a restart) are ridden out. Fills
 * *final; returns SP_EXIT_OK when the job ended "done", SP_EXIT_FAIL else.
 * every_record: print every record (watch) rather than epochs only. */
int sp_jobs_follow(sp_cli_t *c, uint64_t job, int every_record, sp_job_status_t *final,
                   sp_metric_t **recs, size_t *n_recs);

#endif
