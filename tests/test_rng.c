/* test_rng: the seeded generator is deterministic and uniform enough. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/rng.h"

static void test_rng_same_seed_same_stream(void **state)
{
    (void)state;
    sp_rng_t a, b, c;
    sp_rng_init(&a, 42);
    sp_rng_init(&b, 42);
    sp_rng_init(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t va = sp_rng_next(&a);
        assert_int_equal(va, sp_rng_next(&b));
        differ += va != sp_rng_next(&c);
    }
    assert_true(differ > 990);
}

static void test_rng_below_and_float_in_range(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 7);
    uint32_t counts[10] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t v = sp_rng_below(&r, 10);
        assert_true(v < 10);
        counts[v]++;
        float f = sp_rng_float(&r);
        assert_true(f >= 0.0f && f < 1.0f);
    }
    for (int i = 0; i < 10; i++) {
        assert_in_range(counts[i], 9500, 10500);
    }
}

static void test_rng_shuffle_is_permutation(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 3);
    uint32_t idx[257], seen[257] = {0};
    for (uint32_t i = 0; i < 257; i++) {
        idx[i] = i;
    }
    sp_rng_shuffle_u32(&r, idx, 257);
    int moved = 0;
    for (uint32_t i = 0; i < 257; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (uint32_t i = 0; i < 257; i++) {
        assert_int_equal(seen[i], 1);
    }
    assert_true(moved > 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_same_seed_same_stream),
        cmocka_unit_test(test_rng_below_and_float_in_range),
        cmocka_unit_test(test_rng_shuffle_is_permutation),
    };
    return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
