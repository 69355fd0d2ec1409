/* test_bloom: the blocked bloom filter never forgets a key and keeps its
 * false-positive rate near the target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "common/bloom.h"
#include "common/morton.h"
#include "common/rng.h"

static void test_bloom_sizing_follows_formula(void **state)
{
    (void)state;
    sp_bloom_t *b = sp_bloom_new(100000, 0.01);
    assert_non_null(b);
    double m = -100000.0 * log(0.01) / (log(2.0) * log(2.0)); /* 958,506 bits */
    assert_true((double)sp_bloom_bits(b) >= m);
    assert_true((double)sp_bloom_bits(b) < m + SP_BLOOM_BLOCK_BITS);
    assert_int_equal(sp_bloom_bits(b) % SP_BLOOM_BLOCK_BITS, 0);
    assert_int_equal(sp_bloom_hashes(b), 7); /* round(9.59 * ln 2) = round(6.64) */
    assert_int_equal(sp_bloom_expected(b), 100000);
    sp_bloom_destroy(&b);
    assert_null(b);
    sp_bloom_destroy(&b);
    b = sp_bloom_new(1000, 0.001); /* 14.4 bits an item, 10 hashes: two mixes */
    assert_int_equal(sp_bloom_hashes(b), 10);
    sp_bloom_destroy(&b);
    assert_null(sp_bloom_new(0, 0.01));
    assert_null(sp_bloom_new(10, 0.0));
    assert_null(sp_bloom_new(10, 1.0));
    assert_null(sp_bloom_new(10, NAN));
}

/* 100,000 inserted Morton codes: no false negatives; 100,000 other codes:
 * at most 1.5% false positives for a 1% target (and a look at 0.1%). */
static void test_bloom_no_false_negatives_and_fpr_at_1pct(void **state)
{
    (void)state;
    const double targets[2] = {0.01, 0.001};
    for (int t = 0; t < 2; t++) {
        sp_bloom_t *b = sp_bloom_new(100000, targets[t]);
        assert_non_null(b);
        sp_rng_t r;
        sp_rng_init(&r, 555);
        /* even codes in, odd codes out: the two sets cannot overlap */
        for (int i = 0; i < 100000; i++) {
            sp_bloom_insert(b, (sp_rng_next(&r) & 0xFFFFFFFFFFFEULL));
        }
        sp_rng_init(&r, 555);
        for (int i = 0; i < 100000; i++) {
            assert_true(sp_bloom_might_contain(b, sp_rng_next(&r) & 0xFFFFFFFFFFFEULL));
        }
        int fp = 0;
        for (int i = 0; i < 100000; i++) {
            fp += sp_bloom_might_contain(b, (sp_rng_next(&r) & 0xFFFFFFFFFFFFULL) | 1);
        }
        double rate = fp / 100000.0;
        printf("# bloom target %.3f: false-positive rate %.4f\n", targets[t], rate);
        /* 1.5x at 1% is the requirement; blocking costs more at small p
         * (one cache line holds all k bits), so 0.1% is held to 3x */
        assert_true(rate <= targets[t] * (t == 0 ? 1.5 : 3.0));
        sp_bloom_destroy(&b);
    }
}

/* Dense, structured keys (a solid cube of positions) behave like random ones. */
static void test_bloom_fpr_on_dense_morton_cube(void **state)
{
    (void)state;
    sp_bloom_t *b = sp_bloom_new(32768, 0.01);
    for (uint16_t z = 0; z < 32; z++) {
        for (uint16_t y = 0; y < 32; y++) {
            for (uint16_t x = 0; x < 32; x++) {
                sp_bloom_insert(b, sp_morton_encode((sp_pos_t){x, y, z}));
            }
        }
    }
    int fp = 0;
    for (uint64_t c = 0; c < 32768; c++) {
        assert_true(sp_bloom_might_contain(b, c)); /* the cube is codes 0..32767 */
        fp += sp_bloom_might_contain(b, 32768 + c);
    }
    assert_true(fp <= 32768 * 0.015);
    sp_bloom_destroy(&b);
}

static void test_bloom_clone_and_clear(void **state)
{
    (void)state;
    sp_bloom_t *b = sp_bloom_new(100, 0.01);
    for (uint64_t c = 0; c < 100; c++) {
        sp_bloom_insert(b, c * 977);
    }
    sp_bloom_t *c = sp_bloom_clone(b);
    assert_non_null(c);
    assert_int_equal(sp_bloom_heap_bytes(c), sp_bloom_heap_bytes(b));
    sp_bloom_clear(b);
    int left = 0;
    for (uint64_t k = 0; k < 100; k++) {
        assert_true(sp_bloom_might_contain(c, k * 977));
        left += sp_bloom_might_contain(b, k * 977);
    }
    assert_int_equal(left, 0);
    sp_bloom_destroy(&b);
    sp_bloom_destroy(&c);
}

/* The AVX-512 lookup (when the CPU has it) answers exactly as the scalar one. */
static void test_bloom_simd_lookup_matches_scalar(void **state)
{
    (void)state;
    if (!sp_bloom_has_simd()) {
        printf("# test_bloom_simd_lookup_matches_scalar: no AVX-512, scalar path only\n");
    }
    const double targets[3] = {0.01, 0.05, 0.2}; /* k = 7, 4 and 2 */
    for (int t = 0; t < 3; t++) {
        sp_bloom_t *b = sp_bloom_new(20000, targets[t]);
        sp_rng_t r;
        sp_rng_init(&r, 9);
        for (int i = 0; i < 20000; i++) {
            sp_bloom_insert(b, sp_rng_next(&r) & 0xFFFFFFFFFFFFULL);
        }
        int yes = 0;
        for (int i = 0; i < 1000000; i++) {
            uint64_t key = sp_rng_next(&r) & 0xFFFFFFFFFFFFULL;
            int want = sp_bloom_might_contain_ref(b, key);
            if (sp_bloom_might_contain(b, key) != want) {
                fail_msg("key %llx: fast %d, scalar %d", (unsigned long long)key, !want, want);
            }
            yes += want;
        }
        assert_true(yes > 0 && yes < 1000000 / 2); /* both answers were exercised */
        sp_bloom_destroy(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bloom_sizing_follows_formula),
        cmocka_unit_test(test_bloom_no_false_negatives_and_fpr_at_1pct),
        cmocka_unit_test(test_bloom_fpr_on_dense_morton_cube),
        cmocka_unit_test(test_bloom_clone_and_clear),
        cmocka_unit_test(test_bloom_simd_lookup_matches_scalar),
    };
    return cmocka_run_group_tests_name("bloom", tests, NULL, NULL);
}
