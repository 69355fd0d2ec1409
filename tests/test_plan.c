/* test_plan: how a step is cut into tree nodes and given to workers by
 * their speed. Every plan must tile the step with nodes of the reduction
 * tree (or the gradient would change with the plan); beyond that, the
 * cases pin the choices: largest node split first, shares in proportion to
 * speed, the cost of extra nodes, a much slower worker left out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/plan.h"
#include "common/reduce.h"

#define S_MAX_PARTS 128 /* partitions of the largest step below */

/* Checks that count[] tiles step s with tree nodes; returns how many. */
static uint32_t s_check_tiling(const sp_plan_step_t *s, const uint32_t *count)
{
    uint32_t nodes = 0, p = 0;
    while (p < s->n_parts) {
        assert_true(count[p] > 0);
        uint32_t first[SP_REDUCE_COVER_MAX], n[SP_REDUCE_COVER_MAX];
        /* a tree node is the one node covering its own range */
        assert_int_equal(sp_reduce_cover(s->n_parts, p, p + count[p], first, n), 1);
        for (uint32_t q = p + 1; q < p + count[p]; q++) {
            assert_int_equal(count[q], 0);
        }
        p += count[p];
        nodes++;
    }
    assert_int_equal(p, s->n_parts);
    return nodes;
}

/* Samples the nodes owned by worker id hold. */
static uint32_t s_samples_of(const sp_plan_step_t *s, const uint32_t *count, const uint32_t *owner,
                             uint32_t id)
{
    uint32_t n = 0;
    for (uint32_t p = 0; p < s->n_parts; p += count[p]) {
        n += owner[p] == id ? sp_plan_span(s, p, count[p]) : 0;
    }
    return n;
}

static void test_plan_span_counts_the_short_last_partition(void **state)
{
    (void)state;
    sp_plan_step_t s = sp_plan_step(100, 32);
    assert_int_equal(s.n_parts, 4);
    assert_int_equal(sp_plan_span(&s, 0, 4), 100);
    assert_int_equal(sp_plan_span(&s, 3, 1), 4);
    assert_int_equal(sp_plan_span(&s, 1, 2), 64);
    s = sp_plan_step(64, 64);
    assert_int_equal(s.n_parts, 1);
    assert_int_equal(sp_plan_span(&s, 0, 1), 64);
}

/* Every cut tiles the step with tree nodes, never more than wanted, none
 * under min_samples once split, and stops only when no split is left. */
static void test_plan_cut_is_tree_nodes_largest_first(void **state)
{
    (void)state;
    uint32_t count[S_MAX_PARTS];
    for (uint32_t batch = 1; batch <= 600; batch += 7) {
        for (uint32_t part = 8; part <= 64; part *= 2) {
            sp_plan_step_t s = sp_plan_step(batch, part);
            for (uint32_t want = 1; want <= 9; want++) {
                for (uint32_t min = 1; min <= 200; min += 66) {
                    uint32_t n = sp_plan_cut(&s, want, min, count);
                    assert_int_equal(s_check_tiling(&s, count), n);
                    assert_true(n >= 1 && n <= want);
                    for (uint32_t p = 0; p < s.n_parts; p += count[p]) {
                        if (n > 1) {
                            assert_true(sp_plan_span(&s, p, count[p]) >= min);
                        }
                        if (n < want && count[p] >= 2) { /* no split left */
                            uint32_t l = sp_reduce_split(count[p]);
                            assert_true(sp_plan_span(&s, p, l) < min ||
                                        sp_plan_span(&s, p + l, count[p] - l) < min);
                        }
                    }
                }
            }
        }
    }
    /* 8 partitions into 3: the root's halves, then the first largest node */
    sp_plan_step_t s = sp_plan_step(64, 8);
    assert_int_equal(sp_plan_cut(&s, 3, 1, count), 3);
    const uint32_t want3[8] = {2, 0, 2, 0, 4, 0, 0, 0};
    assert_memory_equal(count, want3, sizeof want3);
}

/* Equal workers: the even cut stays, one node each. */
static void test_plan_equal_workers_keep_the_even_cut(void **state)
{
    (void)state;
    uint32_t count[S_MAX_PARTS], owner[S_MAX_PARTS];
    sp_plan_step_t s = sp_plan_step(2048, 256);
    assert_int_equal(sp_plan_cut(&s, 2, 1, count), 2);
    sp_plan_worker_t w[2] = {{7, 3.0}, {4, 3.0}};
    assert_int_equal(sp_plan_assign(&s, w, 2, 2, 0.0, 8, count, owner), 2);
    assert_int_equal(count[0], 4);
    assert_int_equal(count[4], 4);
    /* ties go by id: worker 4 first, so it gets the first of the equal nodes */
    assert_int_equal(owner[0], 4);
    assert_int_equal(owner[4], 7);
}

/* A worker twice as fast gets about twice the samples, as tree nodes
 * covering its range, when the extra nodes cost little; when they cost more
 * than the even cut loses, the even cut stays. */
static void test_plan_shares_follow_speed_unless_nodes_cost_more(void **state)
{
    (void)state;
    uint32_t count[S_MAX_PARTS], owner[S_MAX_PARTS];
    sp_plan_step_t s = sp_plan_step(16 * 100, 100);
    assert_int_equal(sp_plan_cut(&s, 2, 1, count), 2);
    sp_plan_worker_t w[2] = {{2, 2.0}, {1, 1.0}}; /* worker 1 is twice as fast */
    uint32_t n = sp_plan_assign(&s, w, 2, 2, 0.0, 8, count, owner);
    assert_int_equal(s_check_tiling(&s, count), n);
    /* 16 * 2/3 = 10.7: 11 partitions and 5, as [0,8) [8,10) [10,11) and
     * [11,12) [12,16) */
    assert_int_equal(n, 5);
    assert_int_equal(s_samples_of(&s, count, owner, 1), 1100);
    assert_int_equal(s_samples_of(&s, count, owner, 2), 500);
    assert_int_equal(owner[10], 1);
    assert_int_equal(owner[11], 2);

    /* at 300 us an extra node, that plan ends at 1700 us (1100 + 2 x 300)
     * and the even cut at 1600 (800 samples at 2 us): the even cut stays,
     * its first node on the faster worker */
    assert_int_equal(sp_plan_cut(&s, 2, 1, count), 2);
    w[0] = (sp_plan_worker_t){2, 2.0};
    w[1] = (sp_plan_worker_t){1, 1.0};
    n = sp_plan_assign(&s, w, 2, 2, 300.0, 8, count, owner);
    assert_int_equal(n, 2);
    assert_int_equal(count[0], 8);
    assert_int_equal(owner[0], 1);
    assert_int_equal(owner[8], 2);
}

/* A worker a hundred times slower than two others holds the step back with
 * even one partition: the plan leaves it out. */
static void test_plan_leaves_out_a_much_slower_worker(void **state)
{
    (void)state;
    uint32_t count[S_MAX_PARTS], owner[S_MAX_PARTS];
    sp_plan_step_t s = sp_plan_step(16 * 64, 64);
    assert_int_equal(sp_plan_cut(&s, 3, 1, count), 3);
    sp_plan_worker_t w[3] = {{1, 1.0}, {3, 100.0}, {2, 1.0}};
    uint32_t n = sp_plan_assign(&s, w, 3, 3, 0.0, 8, count, owner);
    assert_int_equal(s_check_tiling(&s, count), n);
    assert_int_equal(s_samples_of(&s, count, owner, 3), 0);
    assert_int_equal(s_samples_of(&s, count, owner, 1), 512);
    assert_int_equal(s_samples_of(&s, count, owner, 2), 512);
    /* no more may be left out than `drop` allows: with 0, it keeps a share */
    assert_int_equal(sp_plan_cut(&s, 3, 1, count), 3);
    n = sp_plan_assign(&s, w, 3, 3, 0.0, 0, count, owner);
    assert_int_equal(s_check_tiling(&s, count), n);
    assert_true(s_samples_of(&s, count, owner, 3) > 0);
}

/* With one worker there is nothing to plan: the cut stays, owners 0. */
static void test_plan_one_worker_plans_nothing(void **state)
{
    (void)state;
    uint32_t count[S_MAX_PARTS], owner[S_MAX_PARTS];
    sp_plan_step_t s = sp_plan_step(512, 128);
    assert_int_equal(sp_plan_cut(&s, 2, 1, count), 2);
    sp_plan_worker_t w[1] = {{5, 1.0}};
    assert_int_equal(sp_plan_assign(&s, w, 1, 2, 0.0, 8, count, owner), 2);
    assert_int_equal(count[0], 2);
    assert_int_equal(count[2], 2);
    assert_int_equal(owner[0], 0);
    assert_int_equal(owner[2], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_span_counts_the_short_last_partition),
        cmocka_unit_test(test_plan_cut_is_tree_nodes_largest_first),
        cmocka_unit_test(test_plan_equal_workers_keep_the_even_cut),
        cmocka_unit_test(test_plan_shares_follow_speed_unless_nodes_cost_more),
        cmocka_unit_test(test_plan_leaves_out_a_much_slower_worker),
        cmocka_unit_test(test_plan_one_worker_plans_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
