/* step: one synchronous data-parallel step of the running job: its batch cut
 * into fixed-size partitions, handed out as nodes of the reduction tree by the
 * workers' speeds (the next step's sent ahead where they can be), the results
 * checked, summed in tree order and applied. Invariants: a node's result
 * counts once, only for the (job, version, step) it was sent for and from the
 * worker holding it; the sum has the same bits however the step was split. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/plan.h"
#include "common/reduce.h"
#include "coordinator/coordinator.h"
#include "coordinator/run.h"

/* --- the step's cut and plan --------------------------------------------- */

/* The model file WITH training state of the current version: what a worker
 * needs to compute steps and apply them itself. Made once per version, and
 * only when some worker needs it (a join, a topology change, a resync). */
static int s_model_bytes(sp_run_t *r)
{
    uint64_t v = r->version_base + r->version;
    if (r->model != NULL && r->model_version == v) {
        return SP_OK;
    }
    free(r->model);
    r->model = NULL;
    r->model_len = 0;
    r->model_version = 0;
    int rc = sp_network_save_buffer(r->net, 1, &r->model, &r->model_len);
    if (rc == SP_OK) {
        r->model_version = v;
    }
    return rc;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the values in a ring of `cap` that has had `noted` values
 * written (the lower middle of an even count; the latest cap when it went
 * round), 0 when empty. cap <= 64. */
static double s_ring_median(const double *ring, uint64_t noted, size_t cap)
{
    size_t n = noted < cap ? (size_t)noted : cap;
    if (n == 0) {
        return 0;
    }
    double v[64];
    SP_ASSERT(cap <= sizeof v / sizeof v[0]);
    memcpy(v, ring, n * sizeof *v);
    qsort(v, n, sizeof *v, s_cmp_double);
    return v[(n - 1) / 2];
}

/* The workers' compute time per sample: the median of the latest
 * SP_COORD_SPEED_RESULTS results (the lower middle of an even count), 0
 * before any. A worker preempted in the middle of a partition reports a
 * time many times its speed; a running mean dragged the split decision for
 * dozens of results after one such report, the median ignores it and still
 * follows a real change within a few results. */
static double s_us_per_sample(const sp_run_t *r)
{
    return s_ring_median(r->us_recent, r->n_results, SP_COORD_SPEED_RESULTS);
}

/* Fewest samples in a share of a split step. Splitting a step in two saves
 * one share's compute and costs a round trip (SP_COORD_SPLIT_COST_US), so
 * unless the job fixed it, a share must hold at least that much compute at
 * the speed workers have reported. The cut never changes the model. */
static uint32_t s_min_node(const sp_run_t *r, const sp_job_t *job)
{
    if (job->def.min_node > 0) {
        return job->def.min_node;
    }
    double us = s_us_per_sample(r);
    if (!(us > 0)) {
        return SP_MIN_NODE_DEFAULT;
    }
    double n = ceil(SP_COORD_SPLIT_COST_US / us);
    return n < 1 ? 1 : (n > (double)(1u << 20) ? 1u << 20 : (uint32_t)n);
}

static uint32_t s_live_workers(const sp_coord_t *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->workers.n; i++) {
        n += c->workers.v[i].alive != 0;
    }
    return n;
}

/* Samples in step `step_in_epoch` of the epoch (the last may be short). */
static uint32_t s_batch_len(const sp_run_t *r, const sp_job_t *job, uint64_t step_in_epoch)
{
    uint64_t left = r->n_samples - step_in_epoch * job->def.batch;
    return (uint32_t)(left < job->def.batch ? left : job->def.batch);
}

static uint32_t s_plan(sp_coord_t *c, const sp_run_t *r, const sp_plan_step_t *shape,
                       sp_part_t *parts, uint32_t want, uint32_t min_node);
static int s_claim_ahead(sp_coord_t *c, sp_run_t *r);

int sp_step_begin(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    sp_run_parts_free(r);
    r->shape = sp_plan_step(s_batch_len(r, job, r->step_in_epoch), job->def.partition);
    r->parts = calloc(r->shape.n_parts, sizeof *r->parts);
    if (r->parts == NULL) {
        r->shape.n_parts = 0;
        return SP_E_NOMEM;
    }
    r->sync_pending = 0;
    if (s_claim_ahead(c, r)) {
        return SP_OK; /* cut, planned and sent when it was sent ahead */
    }
    /* A lagging master cannot serve a split step (nor the model a second
     * worker would need): the step stays whole, with sync set if a split
     * is wanted (s_sync_due). */
    r->n_nodes = s_plan(c, r, &r->shape, r->parts, sp_run_lagging(r) ? 1 : s_live_workers(c),
                        s_min_node(r, job));
    return SP_OK;
}

/* --- dispatch ------------------------------------------------------------ */

/* True when wk holds the run's current model version. */
static int s_has_current(const sp_run_t *r, const sp_worker_t *wk)
{
    return wk->model_job == r->job_id && wk->model_version == r->version_base + r->version;
}

/* The live worker with the fewest nodes in flight; among equals, one that
 * holds the current version (it needs no model). */
static sp_worker_t *s_pick_worker(sp_coord_t *c)
{
    const sp_run_t *r = c->run;
    sp_worker_t *best = NULL;
    for (size_t i = 0; i < c->workers.n; i++) {
        sp_worker_t *wk = &c->workers.v[i];
        if (!wk->alive || wk->in_flight >= SP_COORD_MAX_INFLIGHT ||
            (sp_run_lagging(r) && wk->id != r->solo_worker)) {
            continue;
        }
        if (best == NULL || wk->in_flight < best->in_flight ||
            (wk->in_flight == best->in_flight && s_has_current(r, wk) && !s_has_current(r, best))) {
            best = wk;
        }
    }
    return best;
}

/* Sends wk the task of node p of a step laid out in parts: the current
 * step (ahead = 0) or the next one (ahead = 1), whose version the worker
 * reaches by applying the current step. */
static int s_send_task(sp_coord_t *c, sp_run_t *r, const sp_job_t *job, sp_worker_t *wk,
                       const sp_part_t *parts, uint32_t p, int ahead, int sync)
{
    uint64_t step_in_epoch = r->step_in_epoch + (uint64_t)ahead;
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_TASK);
    sp_msg_task_t *t = &m.u.task;
    t->job = r->job_id;
    t->version = r->version_base + r->version + (uint64_t)ahead;
    t->step = r->global_step + (uint64_t)ahead;
    t->partition = p;
    t->n_partitions = parts[p].count;
    t->partition_size = job->def.partition;
    t->batch = s_batch_len(r, job, step_in_epoch);
    sp_plan_step_t shape = sp_plan_step(t->batch, job->def.partition);
    snprintf(t->dataset, sizeof t->dataset, "%s", r->ds.info.name);
    t->checksum = r->ds.info.checksum;
    t->n_indices = sp_plan_span(&shape, p, parts[p].count);
    t->indices = r->perm + step_in_epoch * job->def.batch + (size_t)p * job->def.partition;
    t->sync = sync;
    int rc = sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m);
    if (rc == SP_OK) {
        r->bytes_wire += (uint64_t)t->n_indices * 4 + 64;
        wk->bytes_out += (uint64_t)t->n_indices * 4 + 64;
    }
    return rc;
}

/* Worker wk's compute time per sample (us): the median of its latest
 * results in this run, `unknown` before its first, and once it has computed
 * nothing for SP_COORD_SPEED_STALE steps (a worker left out for being slow
 * is measured again then: it may have been slow for a moment only). */
static double s_worker_us(const sp_run_t *r, const sp_worker_t *wk, double unknown)
{
    if (wk->n_speeds == 0 || r->global_step > wk->speed_step + SP_COORD_SPEED_STALE) {
        return unknown;
    }
    return s_ring_median(wk->us_recent, wk->n_speeds, SP_COORD_WORKER_SPEEDS);
}

/* The live workers and their compute time per sample into w (room for
 * every worker); a worker without a result yet counts as the median of the
 * run's latest results. Returns how many. */
static uint32_t s_speeds(sp_coord_t *c, const sp_run_t *r, sp_plan_worker_t *w)
{
    double unknown = s_us_per_sample(r);
    uint32_t k = 0;
    for (size_t i = 0; i < c->workers.n; i++) {
        const sp_worker_t *wk = &c->workers.v[i];
        if (wk->alive) {
            /* a node faster than the 1 us clock reports 0: a floor keeps
             * every speed finite for the plan's shares */
            w[k++] = (sp_plan_worker_t){
                wk->id, fmax(s_worker_us(r, wk, unknown > 0 ? unknown : 1.0), 1e-3)};
        }
    }
    return k;
}

/* Cuts the step of the given shape into parts (zeroed, shape->n_parts of
 * them): the even cut into `want` nodes no smaller than min_node samples
 * (sp_plan_cut), and when that makes two or more, the plan by the live
 * workers' speeds (sp_plan_assign; each extra node a worker holds costs it
 * one more result, SP_COORD_NODE_NS_PER_BYTE of gradient and hits). Returns
 * the node count; without memory, one node: the whole step. */
static uint32_t s_plan(sp_coord_t *c, const sp_run_t *r, const sp_plan_step_t *shape,
                       sp_part_t *parts, uint32_t want, uint32_t min_node)
{
    uint32_t n_parts = shape->n_parts;
    uint32_t *count = calloc(2 * (size_t)n_parts, sizeof *count); /* then owner[n_parts] */
    sp_plan_worker_t *w = malloc((c->workers.n + 1) * sizeof *w);
    uint32_t n_nodes = 1;
    if (count == NULL || w == NULL) {
        parts[0].count = n_parts;
    } else {
        uint32_t *owner = count + n_parts;
        n_nodes = sp_plan_cut(shape, want, min_node, count);
        if (n_nodes >= 2) {
            double node_us =
                (double)(r->n_params + r->n_hits) * 4 * SP_COORD_NODE_NS_PER_BYTE / 1000;
            n_nodes = sp_plan_assign(shape, w, s_speeds(c, r, w), n_nodes, node_us,
                                     SP_COORD_PLAN_DROP, count, owner);
        }
        for (uint32_t p = 0; p < n_parts; p++) {
            parts[p].count = count[p];
            parts[p].plan = owner[p];
        }
    }
    free(count);
    free(w);
    return n_nodes;
}

/* Whether a whole step (the current one, ahead = 0, or the next, 1) must be
 * sent with sync set: the master is needed right after it, for the epoch's
 * end (validation, epoch record), growth or pruning, a checkpoint that is
 * due, or a step after it that would be split. */
static int s_sync_due(sp_coord_t *c, const sp_run_t *r, const sp_job_t *job, uint64_t ahead,
                      uint32_t min_node)
{
    const sp_msg_train_t *d = &job->def;
    uint64_t in_epoch = r->step_in_epoch + ahead;
    if (in_epoch + 1 >= r->steps_per_epoch ||
        sp_run_topology_due(job, r->global_step + ahead + 1) ||
        sp_coord_now_ms() - r->last_ckpt_ms >= SP_COORD_CKPT_EVERY_MS) {
        return 1;
    }
    if (s_live_workers(c) < 2) {
        return 0;
    }
    /* sp_plan_cut splits a step at all exactly when its root may be split */
    sp_plan_step_t next = sp_plan_step(s_batch_len(r, job, in_epoch + 1), d->partition);
    return next.n_parts >= 2 && sp_plan_can_split(&next, 0, next.n_parts, min_node);
}

/* Once every node of the current step is out, and the next step would be
 * cut into no more nodes than there are workers holding one now, sends each
 * of those workers its node of the next step: they reach the next version by
 * themselves (APPLY, or applying a whole step they computed) and go straight
 * on. Not across an epoch (new permutation), nor before a step after which
 * growth or pruning may change the topology. */
static void s_send_next(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    const sp_msg_train_t *d = &job->def;
    uint64_t next = r->global_step + 1; /* steps completed once this one is */
    if (r->step_in_epoch + 1 >= r->steps_per_epoch || sp_run_topology_due(job, next) ||
        r->sync_pending) {
        return;
    }
    uint32_t holders[64], n_holders = 0;
    for (uint32_t p = 0; p < r->shape.n_parts; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        sp_part_t *part = &r->parts[p];
        if (part->state == SP_PART_PENDING) {
            return;
        }
        if (part->state != SP_PART_INFLIGHT) {
            continue; /* done: its worker may hold another node, or none */
        }
        int seen = 0;
        for (uint32_t k = 0; k < n_holders; k++) {
            seen |= holders[k] == part->worker;
        }
        if (!seen) {
            if (n_holders == 64) {
                return;
            }
            holders[n_holders++] = part->worker;
        }
    }
    if (n_holders == 0) {
        return;
    }
    sp_plan_step_t shape = sp_plan_step(s_batch_len(r, job, r->step_in_epoch + 1), d->partition);
    uint32_t n_parts = shape.n_parts;
    sp_part_t *parts = calloc(n_parts, sizeof *parts);
    sp_ahead_t *ahead = NULL;
    if (parts == NULL) {
        return;
    }
    uint32_t min_node = s_min_node(r, job);
    uint32_t n_nodes = s_plan(c, r, &shape, parts, s_live_workers(c), min_node);
    if (n_nodes < 2) {
        parts[0].plan = holders[0];
    }
    /* A worker without work now (a newcomer) would get a node, or the step
     * needs sync: the next step is handed out when it begins. */
    int ok = n_nodes > 1 || !s_sync_due(c, r, job, 1, min_node);
    for (uint32_t p = 0; p < n_parts && ok; p += parts[p].count) {
        SP_ASSERT(parts[p].count > 0);
        int held = 0;
        for (uint32_t k = 0; k < n_holders; k++) {
            held |= holders[k] == parts[p].plan;
        }
        ok = held;
    }
    ahead = ok ? calloc(n_nodes, sizeof *ahead) : NULL;
    if (ahead == NULL) {
        free(parts);
        return;
    }
    /* Every node of the cut is recorded; one whose send failed has no worker
     * and is handed out normally when the step begins. */
    uint32_t n_ahead = 0;
    for (uint32_t p = 0; p < n_parts; p += parts[p].count, n_ahead++) {
        SP_ASSERT(parts[p].count > 0);
        sp_worker_t *wk = sp_workers_find(&c->workers, parts[p].plan);
        int sent = wk != NULL && wk->alive && s_send_task(c, r, job, wk, parts, p, 1, 0) == SP_OK;
        ahead[n_ahead] =
            (sp_ahead_t){.first = p, .count = parts[p].count, .worker = sent ? wk->id : 0};
    }
    SP_ASSERT(n_ahead == n_nodes);
    free(parts);
    free(r->ahead);
    r->ahead = ahead;
    r->n_ahead = n_ahead;
    r->ahead_step = next;
}

/* Steps past the current one a lone worker is sent: SP_COORD_RUN_AHEAD_US
 * of compute at the run's measured speed, 1 before any result. */
static uint64_t s_run_depth(const sp_run_t *r, const sp_job_t *job)
{
    double step_us = s_us_per_sample(r) * job->def.batch;
    if (!(step_us > 0)) {
        return 1;
    }
    double n = ceil(SP_COORD_RUN_AHEAD_US / step_us);
    return n < 1 ? 1 : (n > SP_COORD_RUN_MAX ? SP_COORD_RUN_MAX : (uint64_t)n);
}

/* When the next step is out whole at one worker (lone steps), sends that
 * worker the whole steps after it, up to s_run_depth past the current one.
 * A step goes only where the one before it needs no sync and it needs none
 * itself (s_sync_due: the epoch's end, growth or pruning, a checkpoint
 * that is due, a step that would be split): a run never crosses a point
 * where the coordinator needs its own copy, and every step in it is sent
 * exactly as it would be when it begins. The worker holds them in order and
 * runs each once its own steps reach the version. */
static void s_extend_run(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    uint64_t g = r->global_step;
    if (r->ahead_step != g + 1 || r->n_ahead != 1 || r->ahead[0].worker == 0) {
        return;
    }
    sp_worker_t *wk = sp_workers_find(&c->workers, r->ahead[0].worker);
    if (wk == NULL || !wk->alive || !sp_run_lagging(r) || r->solo_worker != wk->id) {
        /* Only the worker holding the steps the master lacks: should it be
         * forgotten, the run goes back to its checkpoint, and the MODEL it is
         * sent then makes it drop every task it still holds. */
        return;
    }
    if (r->run_end < g + 2) {
        r->run_end = g + 2;
    }
    uint64_t last = g + s_run_depth(r, job);
    uint32_t min_node = s_min_node(r, job);
    for (uint64_t k = r->run_end; k <= last; k++) {
        uint64_t ahead = k - g;
        if (s_sync_due(c, r, job, ahead - 1, min_node) || s_sync_due(c, r, job, ahead, min_node)) {
            return;
        }
        sp_part_t whole = {
            .count = sp_plan_step(s_batch_len(r, job, r->step_in_epoch + ahead), job->def.partition)
                         .n_parts};
        if (s_send_task(c, r, job, wk, &whole, 0, (int)ahead, 0) != SP_OK) {
            return; /* the steps from k on are handed out when they begin */
        }
        r->run_end = k + 1;
    }
}

static void s_send_ahead(sp_coord_t *c, sp_run_t *r, const sp_job_t *job)
{
    if (r->ahead_step != r->global_step + 1) {
        s_send_next(c, r, job);
    }
    s_extend_run(c, r, job);
}

/* When the step after the one being begun is out in a lone run, it becomes
 * the step sent ahead, whole at the run's worker (r->ahead, just claimed,
 * has room for its one node). */
static void s_claim_run(sp_coord_t *c, sp_run_t *r)
{
    uint64_t next = r->global_step + 1;
    sp_worker_t *wk = r->run_end > next ? sp_workers_find(&c->workers, r->solo_worker) : NULL;
    if (wk == NULL || !wk->alive) {
        r->run_end = 0; /* none; or its worker is gone, and the run with it */
        return;
    }
    const sp_job_t *job = sp_run_job(c);
    sp_plan_step_t shape =
        sp_plan_step(s_batch_len(r, job, r->step_in_epoch + 1), job->def.partition);
    r->ahead[0] = (sp_ahead_t){.first = 0, .count = shape.n_parts, .worker = wk->id};
    r->n_ahead = 1;
    r->ahead_step = next;
}

/* When the step being begun (parts laid out) was sent ahead: its nodes are
 * the ones recorded then, in flight at their workers if still alive,
 * pending otherwise. Returns 1 then, 0 when the step is still to be cut. */
static int s_claim_ahead(sp_coord_t *c, sp_run_t *r)
{
    uint64_t step = r->ahead_step;
    r->ahead_step = 0;
    if (step != r->global_step || r->n_ahead == 0) {
        r->run_end = 0; /* a run goes on only through the step sent ahead */
        return 0;
    }
    for (uint32_t i = 0; i < r->shape.n_parts; i++) {
        r->parts[i].count = 0;
    }
    uint32_t covered = 0;
    for (uint32_t i = 0; i < r->n_ahead; i++) {
        const sp_ahead_t *a = &r->ahead[i];
        SP_ASSERT(a->first == covered && a->first + a->count <= r->shape.n_parts);
        sp_part_t *part = &r->parts[a->first];
        part->count = a->count;
        part->plan = a->worker;
        covered += a->count;
        sp_worker_t *wk = a->worker ? sp_workers_find(&c->workers, a->worker) : NULL;
        if (wk != NULL && wk->alive) {
            part->state = SP_PART_INFLIGHT;
            part->worker = wk->id;
            wk->in_flight++;
        }
    }
    SP_ASSERT(covered == r->shape.n_parts);
    r->n_nodes = r->n_ahead;
    s_claim_run(c, r);
    return 1;
}

void sp_step_dispatch(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = sp_run_job(c);
    if (r == NULL || job == NULL || r->awaiting_sync || r->rollback) {
        return;
    }
    for (uint32_t p = 0; p < r->shape.n_parts; p++) {
        sp_part_t *part = &r->parts[p];
        if (part->count == 0 || part->state != SP_PART_PENDING) {
            continue;
        }
        sp_worker_t *wk = part->plan ? sp_workers_find(&c->workers, part->plan) : NULL;
        if (wk == NULL || !wk->alive) {
            wk = s_pick_worker(c); /* no plan, or its worker is gone */
        }
        if (wk == NULL) {
            continue; /* every worker is busy: the next result brings this back */
        }
        if (!s_has_current(r, wk)) {
            SP_ASSERT(!sp_run_lagging(r)); /* s_pick_worker: only the solo worker then */
            if (s_model_bytes(r) != SP_OK) {
                sp_run_fail(c, "cannot serialize the model");
                return;
            }
            sp_msg_t m;
            sp_msg_init(&m, SP_MSG_MODEL);
            m.u.model.job = r->job_id;
            m.u.model.version = r->version_base + r->version;
            m.u.model.model.data = r->model;
            m.u.model.model.len = r->model_len;
            if (sp_coord_send(c, c->workers_sock, wk->ident, wk->ident_len, &m) != SP_OK) {
                wk->failures++;
                sp_workers_kill(c, wk, "model could not be sent");
                p--; /* this node is still pending: try another worker */
                continue;
            }
            wk->model_job = r->job_id;
            wk->model_version = r->version_base + r->version;
            wk->bytes_out += r->model_len;
            r->bytes_wire += r->model_len;
        }
        int sync = part->count == r->shape.n_parts && s_sync_due(c, r, job, 0, s_min_node(r, job));
        if (s_send_task(c, r, job, wk, r->parts, p, 0, sync) != SP_OK) {
            wk->failures++;
            sp_workers_kill(c, wk, "task could not be sent");
            p--;
            continue;
        }
        part->state = SP_PART_INFLIGHT;
        part->worker = wk->id;
        wk->in_flight++;
        r->sync_pending = sync;
    }
    s_send_ahead(c, r, job);
}

/* What wk holds is no longer known: it gets the model again with its next
 * task. When it held steps the master lacks, they are lost: the run goes
 * back to its last checkpoint at the next tick (s_rollback, run.c). */
static void s_forget(sp_coord_t *c, sp_worker_t *wk)
{
    wk->model_job = wk->model_version = 0;
    sp_run_t *r = c->run;
    if (r != NULL && sp_run_lagging(r) && wk->id == r->solo_worker) {
        r->rollback = 1;
    }
    if (r != NULL && r->solo_worker == wk->id) {
        r->run_end = 0;
    }
}

void sp_jobs_requeue(sp_coord_t *c, sp_worker_t *wk)
{
    /* A worker that computed a whole step has applied it, whether or not its
     * result is ever accepted. */
    s_forget(c, wk);
    sp_run_t *r = c->run;
    if (r != NULL) {
        for (uint32_t p = 0; p < r->shape.n_parts; p++) {
            if (r->parts[p].state == SP_PART_INFLIGHT && r->parts[p].worker == wk->id) {
                r->parts[p].state = SP_PART_PENDING;
                r->parts[p].worker = 0;
            }
        }
        for (uint32_t i = 0; i < r->n_ahead; i++) {
            if (r->ahead[i].worker == wk->id) {
                r->ahead[i].worker = 0; /* its next-step node is handed out normally */
            }
        }
    }
    wk->in_flight = 0;
}

void sp_jobs_worker_error(sp_coord_t *c, sp_worker_t *wk, const sp_msg_error_t *e)
{
    sp_jobs_requeue(c, wk);
    sp_run_t *r = c->run;
    if (r == NULL) {
        return;
    }
    if (e->ref_type == SP_MSG_TASK && e->code == (uint32_t)-SP_E_RANGE) {
        /* The training diverged on that worker's step; the same numbers give
         * the same on any worker, and going back to a checkpoint would only
         * replay it. */
        sp_run_fail(c, "%.200s", e->message);
    } else if (++r->worker_errors >= SP_COORD_MAX_WORKER_ERRORS) {
        sp_run_fail(c, "workers keep refusing the work (%u errors); last: %.160s", r->worker_errors,
                    e->message);
    }
}

/* --- reduce -------------------------------------------------------------- */

/* Sum of the finished nodes under tree node [lo, hi), combined in the tree's
 * order (common/reduce.h) into the node that starts at lo, which is returned.
 * Workers sum inside their nodes in the same order, so the result has the
 * same bits however the step was split. */
static sp_part_t *s_combine(sp_run_t *r, uint32_t lo, uint32_t hi)
{
    sp_part_t *p = &r->parts[lo];
    if (p->count == hi - lo) {
        return p;
    }
    uint32_t mid = lo + sp_reduce_split(hi - lo);
    sp_part_t *a = s_combine(r, lo, mid);
    sp_part_t *b = s_combine(r, mid, hi);
    sp_reduce_add_f32(a->grad, b->grad, r->n_params);
    sp_reduce_add_u32(a->hits, b->hits, r->n_hits);
    a->loss_sum = a->loss_sum + b->loss_sum;
    a->n_correct += b->n_correct;
    free(b->grad);
    free(b->hits);
    b->grad = NULL;
    b->hits = NULL;
    b->count = 0;
    a->count = hi - lo;
    return a;
}

static void s_step_finish(sp_coord_t *c);

void sp_jobs_result(sp_coord_t *c, sp_worker_t *wk, sp_msg_result_t *res)
{
    sp_run_t *r = c->run;
    const char *why = NULL;
    int bad = 0; /* a malformed result (not merely a late one) */
    sp_part_t *part = NULL;
    wk->bytes_in += (uint64_t)res->n_grad * 4 + (uint64_t)res->n_hits * 4;
    if (r == NULL || res->job != r->job_id) {
        why = "no such running job";
    } else if (res->version != r->version_base + r->version || res->step != r->global_step) {
        why = "stale model version or step";
    } else if (res->partition >= r->shape.n_parts ||
               res->n_partitions > r->shape.n_parts - res->partition) {
        why = "partition out of range";
        bad = 1;
    } else {
        part = &r->parts[res->partition];
        if (part->count != res->n_partitions || part->state != SP_PART_INFLIGHT ||
            part->worker != wk->id) {
            why = "node not held by this worker (late or duplicate)";
            part = NULL;
        } else if (res->n_samples != sp_plan_span(&r->shape, res->partition, res->n_partitions) ||
                   res->n_correct > res->n_samples) {
            why = "sample count does not match the partition";
            bad = 1;
        } else if (res->n_partitions == r->shape.n_parts &&
                   (res->n_grad != 0 || res->n_hits != 0)) {
            why = "a whole step's result carries a gradient (its worker keeps it)";
            bad = 1;
        } else if (res->n_partitions != r->shape.n_parts &&
                   (res->n_grad != r->n_params || res->n_hits != r->n_hits)) {
            why = "gradient or hit vector of the wrong length";
            bad = 1;
        } else if (!isfinite(res->loss_sum)) {
            /* No scan of the gradient here: a RESULT only reaches this
             * function through sp_msg_decode, which refuses any NaN or
             * infinity in grad (and a loss outside 0..DBL_MAX) before the
             * message exists, so every gradient summed below is finite.
             * This O(1) loss test is only a cheap second guard. */
            why = "non-finite loss";
            bad = 1;
        }
    }
    if (r != NULL) {
        r->bytes_wire += (uint64_t)res->n_grad * 4 + (uint64_t)res->n_hits * 4 + 64;
    }
    if (why != NULL) {
        if (r != NULL) {
            r->dropped++;
        }
        /* The worker may have applied the step itself (a whole step) though
         * it does not count: it is sent the model again before any task. */
        s_forget(c, wk);
        if (bad) {
            wk->failures++;
            sp_coord_log_bad(c, wk->ident, wk->ident_len, why);
            if (part != NULL) {
                /* give it to someone (maybe the same worker) again */
                part->state = SP_PART_PENDING;
                part->worker = 0;
                if (wk->in_flight > 0) {
                    wk->in_flight--;
                }
            }
            if (++r->worker_errors >= SP_COORD_MAX_WORKER_ERRORS) {
                sp_run_fail(c, "workers keep sending unusable results (%u); last: %s",
                            r->worker_errors, why);
            }
        } else {
            sp_log(SP_LOG_DEBUG, "result from worker %u dropped: %s", wk->id, why);
        }
        return;
    }
    wk->in_flight--;
    wk->partitions_done += res->n_partitions;
    wk->samples_done += res->n_samples;
    wk->compute_us += res->compute_us;
    if (res->n_samples > 0) {
        double us = (double)res->compute_us / res->n_samples;
        r->us_recent[r->n_results++ % SP_COORD_SPEED_RESULTS] = us;
        if (r->global_step > wk->speed_step + SP_COORD_SPEED_STALE) {
            wk->n_speeds = 0; /* its old speed is no longer taken (s_worker_us) */
        }
        wk->us_recent[wk->n_speeds++ % SP_COORD_WORKER_SPEEDS] = us;
        wk->speed_step = r->global_step;
    }
    part->state = SP_PART_DONE;
    part->loss_sum = res->loss_sum;
    part->n_correct = res->n_correct;
    /* Take the vectors over: the message no longer owns them. */
    part->grad = res->grad;
    part->hits = res->hits;
    res->grad = NULL;
    res->hits = NULL;
    res->n_grad = res->n_hits = 0;
    int all_done = 1;
    for (uint32_t p = 0; p < r->shape.n_parts && all_done; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        all_done = r->parts[p].state == SP_PART_DONE;
    }
    if (all_done) {
        s_step_finish(c);
    }
    if (c->run != NULL) {
        sp_step_dispatch(c);
    }
}

/* The workers of the current step's nodes, each once, into ids (room for
 * n_parts); returns how many. Called before s_combine merges the nodes. */
static uint32_t s_node_workers(const sp_run_t *r, uint32_t *ids)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < r->shape.n_parts; p += r->parts[p].count) {
        SP_ASSERT(r->parts[p].count > 0); /* the nodes cover the step */
        int seen = 0;
        for (uint32_t k = 0; k < n; k++) {
            seen |= ids[k] == r->parts[p].worker;
        }
        if (!seen) {
            ids[n++] = r->parts[p].worker;
        }
    }
    return n;
}

/* Brings the workers that computed the step (holders[n_holders]) to
 * v_old + 1: one that computed the whole step applied it already; when the
 * step was split, each gets the summed gradient in one APPLY, encoded once.
 * A live worker that held no node of the step is not kept in step: it stays
 * at its version and is sent the model with its next task (where steps are
 * not split, an APPLY every step cost the coordinator and that worker more
 * than the one model it needs if it ever gets work). A worker the APPLY
 * cannot reach is declared dead (as for any failed send). */
static void s_send_apply(sp_coord_t *c, sp_run_t *r, const sp_part_t *root, uint64_t v_old,
                         const uint32_t *holders, uint32_t n_holders)
{
    size_t n = 0, cap = n_holders;
    const uint8_t **ids = malloc((cap ? cap : 1) * sizeof *ids);
    size_t *lens = malloc((cap ? cap : 1) * sizeof *lens);
    sp_worker_t **who = malloc((cap ? cap : 1) * sizeof *who);
    int *rcs = malloc((cap ? cap : 1) * sizeof *rcs);
    for (uint32_t k = 0; k < n_holders; k++) {
        sp_worker_t *wk = sp_workers_find(&c->workers, holders[k]);
        if (wk == NULL || !wk->alive) {
            continue;
        }
        if (r->n_nodes == 1) {
            /* Its result says it computed on v_old and applied the step (a
             * worker that cannot apply sends ERROR instead), whatever this
             * coordinator had noted since. */
            wk->model_job = r->job_id;
            wk->model_version = v_old + 1;
            continue;
        }
        if (wk->model_job != r->job_id || wk->model_version != v_old) {
            continue;
        }
        if (ids && lens && who && rcs) {
            ids[n] = wk->ident;
            lens[n] = wk->ident_len;
            who[n++] = wk;
        } else {
            wk->model_job = wk->model_version = 0; /* no memory: a MODEL instead */
        }
    }
    if (n > 0) {
        sp_msg_t m;
        sp_msg_init(&m, SP_MSG_APPLY);
        m.u.apply.job = r->job_id;
        m.u.apply.version = v_old + 1;
        m.u.apply.step = r->global_step;
        m.u.apply.n_samples = r->shape.batch;
        m.u.apply.n_grad = (uint32_t)r->n_params;
        m.u.apply.grad = root->grad;
        m.u.apply.n_hits = (uint32_t)r->n_hits;
        m.u.apply.hits = root->hits;
        (void)sp_msg_send_many(c->workers_sock, ids, lens, n, &m, rcs);
        uint64_t bytes = ((uint64_t)r->n_params + r->n_hits) * 4;
        for (size_t k = 0; k < n; k++) {
            if (rcs[k] == SP_OK) {
                who[k]->model_version = v_old + 1;
                who[k]->bytes_out += bytes;
                r->bytes_wire += bytes + 64;
            } else {
                who[k]->failures++;
                sp_workers_kill(c, who[k], "apply could not be sent");
            }
        }
    }
    free(ids);
    free(lens);
    free(who);
    free(rcs);
}

/* Every node of the current step is done: the step is applied (a split step
 * here, through its summed gradient; a whole step by its worker alone),
 * counted, and the run goes on with sp_run_step_tail, or waits for the worker's
 * model when the step was sent with sync set. */
static void s_step_finish(sp_coord_t *c)
{
    sp_run_t *r = c->run;
    sp_job_t *job = sp_run_job(c);
    uint32_t *holders = malloc(r->shape.n_parts * sizeof *holders);
    uint32_t n_holders = holders ? s_node_workers(r, holders) : 0;
    sp_part_t *root = s_combine(r, 0, r->shape.n_parts);
    s_send_apply(c, r, root, r->version_base + r->version, holders, n_holders);
    int whole = r->n_nodes == 1;
    if (whole) {
        r->solo_worker = root->worker;
    }
    free(holders);
    if (!whole) {
        SP_ASSERT(!sp_run_lagging(r)); /* a lagging master keeps steps whole */
        int rc = sp_network_apply_gradient(r->net, root->grad, r->shape.batch, root->hits);
        if (rc != SP_OK) {
            sp_network_destroy(&r->net); /* unusable: no final model from it */
            if (rc == SP_E_RANGE) {
                sp_run_fail(c,
                            "training diverged at step %" PRIu64 " (a gain, bias or momentum left "
                            "its range): lower --lr, or scale the features into [0, 1]",
                            r->global_step + 1);
            } else {
                sp_run_fail(c, "optimizer step failed (%s)", sp_strerror(rc));
            }
            return;
        }
    }
    r->worker_errors = 0;
    r->version++;
    if (!whole) {
        r->net_version = r->version;
    }
    r->global_step++;
    r->step_in_epoch++;
    job->step = r->global_step;
    job->samples_seen += r->shape.batch;
    r->ep_loss += root->loss_sum;
    r->ep_correct += root->n_correct;
    r->ep_samples += r->shape.batch;
    r->ep_samples_t += r->shape.batch;
    r->rec_loss += root->loss_sum;
    r->rec_correct += root->n_correct;
    r->rec_samples += r->shape.batch;
    r->rec_steps++;
    if (whole && r->sync_pending) {
        r->awaiting_sync = 1; /* sp_jobs_worker_model goes on */
        return;
    }
    sp_run_step_tail(c);
}

void sp_jobs_worker_model(sp_coord_t *c, sp_worker_t *wk, const sp_msg_model_t *mm)
{
    sp_run_t *r = c->run;
    if (r == NULL || r->rollback || !r->awaiting_sync || mm->job != r->job_id ||
        wk->id != r->solo_worker || mm->version != r->version_base + r->version) {
        /* Late (after a rollback or restart) or not asked for: nothing to do. */
        sp_log(SP_LOG_DEBUG,
               "model from worker %u (job %" PRIu64 " version %" PRIu64 ") not awaited: dropped",
               wk->id, mm->job, mm->version);
        return;
    }
    /* The worker's copy has the master's topology (growth and pruning
     * happen only at syncs) and its training state: the in-place refresh
     * the workers use takes it, checked as strictly as a load, and leaves
     * the master as it was if the file is bad or another network. */
    char err[SP_TEXT_MAX] = "";
    int rc = sp_network_update_from_buffer(r->net, mm->model.data, mm->model.len, err, sizeof err);
    if (rc != SP_OK && err[0] == '\0') {
        snprintf(err, sizeof err, "%s", sp_strerror(rc));
    }
    r->bytes_wire += mm->model.len;
    wk->bytes_in += mm->model.len;
    if (rc != SP_OK) {
        char why[SP_TEXT_MAX + 64];
        snprintf(why, sizeof why, "model of version %" PRIu64 " refused: %s", mm->version, err);
        wk->failures++;
        sp_coord_log_bad(c, wk->ident, wk->ident_len, why);
        s_forget(c, wk); /* its steps cannot be had: back to the checkpoint */
        return;
    }
    r->net_version = r->version;
    r->awaiting_sync = 0;
    sp_run_step_tail(c);
    if (c->run != NULL) {
        sp_step_dispatch(c);
    }
}
