/* run: what the three job modules share, and nothing else includes: jobs.c
 * (the job table, its files, client requests), run.c (the running job from
 * start to end: checkpoints, what follows each step, rollback) and step.c
 * (cutting, planning and dispatching a step, its results, their reduce).
 * Each function is defined in the file its prefix names: sp_jobs_ in jobs.c,
 * sp_run_ in run.c, sp_step_ in step.c. */
#ifndef SP_COORD_RUN_H
#define SP_COORD_RUN_H

#include <stdint.h>

#include "coordinator/coordinator.h"

/* --- jobs.c -------------------------------------------------------------- */
/* <job>/state: "state=<s> epoch=<e> step=<n> samples=<n>\n<error text>\n",
 * written by the background writer; with sync, waits until it is on disk. */
int sp_jobs_save_state(sp_coord_t *c, const sp_job_t *job, int sync);
/* Sets a job's state and error text (NULL: none) and writes its state file
 * (sp_jobs_save_state with sync). */
void sp_jobs_set_state(sp_coord_t *c, sp_job_t *job, sp_job_state_t st, const char *error);

/* --- run.c --------------------------------------------------------------- */
/* The running job's entry in the job table, or NULL when none runs. */
sp_job_t *sp_run_job(sp_coord_t *c);
/* Frees the current step's partitions and their results (n_parts = 0). */
void sp_run_parts_free(sp_run_t *r);
/* Frees the running job's training state; NULL-safe, sets *rp = NULL. */
void sp_run_free(sp_run_t **rp);
/* True while the master network lacks steps a lone worker applied. */
int sp_run_lagging(const sp_run_t *r);
/* True when growth or pruning is decided once `done` steps are complete
 * (s_grow_prune): the topology may change there, and the master is needed. */
int sp_run_topology_due(const sp_job_t *job, uint64_t done);
/* Ends the running job in state st (done, failed, cancelled). */
void sp_run_end(sp_coord_t *c, sp_job_state_t st, const char *error);
/* Ends the running job as failed, with the formatted message as its error. */
void sp_run_fail(sp_coord_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After a step is counted and, where needed, the master holds it: growth and
 * pruning, records, the epoch's end, the next step, a checkpoint. */
void sp_run_step_tail(sp_coord_t *c);

/* --- step.c -------------------------------------------------------------- */
/* Cuts the next batch into partitions and the partitions into nodes of the
 * reduction tree: the root, split largest first until every live worker can
 * have one (so one worker gets the whole step and applies it itself). */
int sp_step_begin(sp_coord_t *c, sp_run_t *r, const sp_job_t *job);
/* Hands the current step's pending nodes to workers (a model first to one
 * that lacks the current version), then sends the next step's nodes ahead
 * where it can; nothing while a sync or a rollback is awaited. */
void sp_step_dispatch(sp_coord_t *c);

#endif
