/* plan: cutting a step into tree nodes and giving them to workers. */
#include "common/plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/reduce.h"

sp_plan_step_t sp_plan_step(uint32_t batch, uint32_t partition)
{
    SP_ASSERT(batch >= 1 && partition >= 1);
    return (sp_plan_step_t){batch, partition,
                            (uint32_t)(((uint64_t)batch + partition - 1) / partition)};
}

uint32_t sp_plan_span(const sp_plan_step_t *s, uint32_t first, uint32_t count)
{
    SP_ASSERT(count >= 1 && first + count <= s->n_parts);
    uint64_t end = (uint64_t)(first + count) * s->partition;
    return (uint32_t)((end < s->batch ? end : s->batch) - (uint64_t)first * s->partition);
}

int sp_plan_can_split(const sp_plan_step_t *s, uint32_t first, uint32_t count, uint32_t min_samples)
{
    uint32_t l = sp_reduce_split(count);
    return sp_plan_span(s, first, l) >= min_samples &&
           sp_plan_span(s, first + l, count - l) >= min_samples;
}

uint32_t sp_plan_cut(const sp_plan_step_t *s, uint32_t want, uint32_t min_samples, uint32_t *count)
{
    uint32_t n_parts = s->n_parts;
    memset(count, 0, n_parts * sizeof *count);
    count[0] = n_parts;
    uint32_t nodes = 1;
    while (nodes < want) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < n_parts; i++) {
            uint32_t n = count[i];
            if (n < 2 || (best != UINT32_MAX && n <= count[best])) {
                continue;
            }
            if (sp_plan_can_split(s, i, n, min_samples)) {
                best = i;
            }
        }
        if (best == UINT32_MAX) {
            break;
        }
        uint32_t l = sp_reduce_split(count[best]);
        count[best + l] = count[best] - l;
        count[best] = l;
        nodes++;
    }
    return nodes;
}

static int s_cmp_speed(const void *a, const void *b)
{
    const sp_plan_worker_t *x = a, *y = b;
    if (x->us != y->us) {
        return x->us < y->us ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* Splits n partitions among the k workers w (k <= n) in proportion to their
 * speed, at least one each: the floors, then one more to the largest
 * remainders. want[k] is scratch. */
static void s_shares(const sp_plan_worker_t *w, uint32_t k, uint32_t n, uint32_t *share,
                     double *want)
{
    SP_ASSERT(k <= n);
    double sum = 0;
    for (uint32_t i = 0; i < k; i++) {
        sum += 1.0 / w[i].us;
    }
    uint32_t given = 0;
    for (uint32_t i = 0; i < k; i++) {
        want[i] = n * (1.0 / w[i].us) / sum;
        share[i] = want[i] < 1.0 ? 1 : (uint32_t)want[i];
        given += share[i];
    }
    for (; given > n; given--) { /* the minimum of one overshot: the largest share gives */
        uint32_t big = 0;
        for (uint32_t i = 1; i < k; i++) {
            big = share[i] > share[big] ? i : big;
        }
        share[big]--;
    }
    for (; given < n; given++) {
        uint32_t best = 0;
        for (uint32_t i = 1; i < k; i++) {
            best = want[i] - share[i] > want[best] - share[best] ? i : best;
        }
        share[best]++;
    }
}

/* When the workers w[0..j) take shares share[0..j) of the partitions in
 * that order, each as the cover of its range: when the last one ends, in us
 * from the start, with node_us for each node a worker holds after its first. */
static double s_plan_time(const sp_plan_step_t *s, const sp_plan_worker_t *w, uint32_t j,
                          const uint32_t *share, double node_us)
{
    uint32_t first[SP_REDUCE_COVER_MAX], count[SP_REDUCE_COVER_MAX];
    double end = 0;
    for (uint32_t i = 0, at = 0; i < j; at += share[i++]) {
        uint32_t nk = sp_reduce_cover(s->n_parts, at, at + share[i], first, count);
        double t = sp_plan_span(s, at, share[i]) * w[i].us + (nk - 1) * node_us;
        end = t > end ? t : end;
    }
    return end;
}

uint32_t sp_plan_assign(const sp_plan_step_t *s, sp_plan_worker_t *w, uint32_t k, uint32_t n_nodes,
                        double node_us, uint32_t drop, uint32_t *count, uint32_t *owner)
{
    uint32_t n_parts = s->n_parts;
    memset(owner, 0, n_parts * sizeof *owner);
    uint32_t *node = malloc(n_nodes * sizeof *node), *share = malloc(n_nodes * sizeof *share);
    double *want = malloc(n_nodes * sizeof *want);
    qsort(w, k, sizeof *w, s_cmp_speed);
    k = k < n_nodes ? k : n_nodes;
    if (k >= 2 && node && share && want) {
        /* the even cut: largest nodes first, to the fastest workers */
        uint32_t m = 0;
        for (uint32_t p = 0; p < n_parts; p += count[p]) {
            SP_ASSERT(count[p] > 0); /* the nodes cover the step */
            uint32_t j = m++;
            for (; j > 0 && count[node[j - 1]] < count[p]; j--) {
                node[j] = node[j - 1];
            }
            node[j] = p;
        }
        double t_best = 0;
        for (uint32_t i = 0; i < m; i++) {
            owner[node[i]] = w[i % k].id;
            double t = sp_plan_span(s, node[i], count[node[i]]) * w[i % k].us;
            t_best = t > t_best ? t : t_best;
        }
        uint32_t best = 0;
        uint32_t lo = k > drop + 2 ? k - drop : 2;
        for (uint32_t j = k; j >= lo; j--) {
            s_shares(w, j, n_parts, share, want);
            double t = s_plan_time(s, w, j, share, node_us);
            if (t < t_best) {
                t_best = t;
                best = j;
            }
        }
        if (best > 0) {
            s_shares(w, best, n_parts, share, want);
            memset(count, 0, n_parts * sizeof *count);
            memset(owner, 0, n_parts * sizeof *owner);
            n_nodes = 0;
            uint32_t first[SP_REDUCE_COVER_MAX], cnt[SP_REDUCE_COVER_MAX];
            for (uint32_t i = 0, at = 0; i < best; at += share[i++]) {
                uint32_t nk = sp_reduce_cover(n_parts, at, at + share[i], first, cnt);
                for (uint32_t j = 0; j < nk; j++, n_nodes++) {
                    count[first[j]] = cnt[j];
                    owner[first[j]] = w[i].id;
                }
            }
        }
    }
    free(node);
    free(share);
    free(want);
    return n_nodes;
}
