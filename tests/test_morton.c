/* test_morton: Morton codes round-trip, fast and portable paths agree,
 * distances and neighbours are right. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "common/morton.h"
#include "common/rng.h"

static void test_morton_round_trip_grid_16(void **state)
{
    (void)state;
    for (uint16_t z = 0; z < 16; z++) {
        for (uint16_t y = 0; y < 16; y++) {
            for (uint16_t x = 0; x < 16; x++) {
                sp_pos_t p = {x, y, z};
                uint64_t c = sp_morton_encode(p);
                sp_pos_t q = sp_morton_decode(c);
                assert_int_equal(q.x, x);
                assert_int_equal(q.y, y);
                assert_int_equal(q.z, z);
                assert_int_equal(sp_morton_encode_ref(p), c);
                assert_true(c < 4096);
            }
        }
    }
    /* bijection onto [0, 4096): every code decodes inside the cube and back */
    for (uint64_t c = 0; c < 4096; c++) {
        sp_pos_t p = sp_morton_decode(c);
        assert_true(p.x < 16 && p.y < 16 && p.z < 16);
        assert_int_equal(sp_morton_encode(p), c);
    }
}

static void test_morton_layout_x_in_bit_zero(void **state)
{
    (void)state;
    assert_int_equal(sp_morton_encode((sp_pos_t){1, 0, 0}), 1);
    assert_int_equal(sp_morton_encode((sp_pos_t){0, 1, 0}), 2);
    assert_int_equal(sp_morton_encode((sp_pos_t){0, 0, 1}), 4);
    assert_int_equal(sp_morton_encode((sp_pos_t){3, 0, 0}), 9);
    assert_int_equal(sp_morton_encode((sp_pos_t){0xFFFF, 0xFFFF, 0xFFFF}), 0xFFFFFFFFFFFFULL);
    assert_int_equal(sp_morton_encode((sp_pos_t){0x8000, 0, 0}), 1ULL << 45);
    assert_int_equal(sp_morton_encode((sp_pos_t){0, 0, 0x8000}), 1ULL << 47);
}

static void test_morton_round_trip_random_48bit(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 1234);
    for (int i = 0; i < 100000; i++) {
        uint64_t c = sp_rng_next(&r) & ((1ULL << SP_MORTON_BITS) - 1);
        sp_pos_t p = sp_morton_decode(c);
        assert_int_equal(sp_morton_encode(p), c);
        sp_pos_t q = sp_morton_decode_ref(c);
        assert_int_equal(sp_morton_encode_ref(q), c);
    }
}

static void test_morton_fast_and_portable_agree(void **state)
{
    (void)state;
    if (!sp_morton_has_bmi2()) {
        printf("# test_morton_fast_and_portable_agree: no BMI2 on this CPU, "
               "BMI2 half skipped (dispatch uses the portable path)\n");
        sp_pos_t p = {1, 2, 3};
        assert_int_equal(sp_morton_encode(p), sp_morton_encode_ref(p));
        return;
    }
    sp_rng_t r;
    sp_rng_init(&r, 77);
    for (int i = 0; i < 1000000; i++) {
        uint64_t v = sp_rng_next(&r);
        sp_pos_t p = {(uint16_t)v, (uint16_t)(v >> 16), (uint16_t)(v >> 32)};
        uint64_t c = sp_morton_encode_ref(p);
        if (sp_morton_encode_bmi2(p) != c) {
            fail_msg("encode differs at (%u,%u,%u)", p.x, p.y, p.z);
        }
        uint64_t code = v >> 16; /* 48 bits */
        sp_pos_t a = sp_morton_decode_ref(code), b = sp_morton_decode_bmi2(code);
        if (a.x != b.x || a.y != b.y || a.z != b.z) {
            fail_msg("decode differs at %llx", (unsigned long long)code);
        }
    }
}

static void test_morton_distances_hand_computed(void **state)
{
    (void)state;
    sp_pos_t o = {0, 0, 0};
    assert_int_equal(sp_pos_manhattan(o, (sp_pos_t){1, 2, 3}), 6);
    assert_int_equal(sp_pos_dist2(o, (sp_pos_t){1, 2, 3}), 14);
    assert_int_equal(sp_pos_manhattan((sp_pos_t){10, 5, 7}, (sp_pos_t){4, 9, 7}), 10);
    assert_int_equal(sp_pos_dist2((sp_pos_t){10, 5, 7}, (sp_pos_t){4, 9, 7}), 52);
    assert_int_equal(sp_pos_manhattan((sp_pos_t){4, 9, 7}, (sp_pos_t){10, 5, 7}), 10);
    assert_int_equal(sp_pos_dist2((sp_pos_t){3, 3, 3}, (sp_pos_t){3, 3, 3}), 0);
    sp_pos_t far = {65535, 65535, 65535};
    assert_int_equal(sp_pos_manhattan(o, far), 196605);
    assert_int_equal(sp_pos_dist2(o, far), 3ULL * 65535 * 65535);
}

static void s_check_neighbours(sp_pos_t p)
{
    sp_pos_t n[26];
    sp_pos_neighbors(p, n);
    for (int i = 0; i < 26; i++) {
        int dx = (int16_t)(uint16_t)(n[i].x - p.x);
        int dy = (int16_t)(uint16_t)(n[i].y - p.y);
        int dz = (int16_t)(uint16_t)(n[i].z - p.z);
        assert_true(dx >= -1 && dx <= 1 && dy >= -1 && dy <= 1 && dz >= -1 && dz <= 1);
        assert_false(dx == 0 && dy == 0 && dz == 0);
        for (int j = 0; j < i; j++) {
            assert_false(n[i].x == n[j].x && n[i].y == n[j].y && n[i].z == n[j].z);
        }
    }
}

static void test_morton_neighbours_26_within_one(void **state)
{
    (void)state;
    s_check_neighbours((sp_pos_t){100, 200, 300});
    s_check_neighbours((sp_pos_t){0, 0, 0});             /* wraps to 65535 */
    s_check_neighbours((sp_pos_t){65535, 65535, 65535}); /* wraps to 0 */
    sp_pos_t n[26];
    sp_pos_neighbors((sp_pos_t){0, 5, 65535}, n);
    assert_int_equal(n[0].x, 65535); /* (-1,-1,-1) first */
    assert_int_equal(n[0].y, 4);
    assert_int_equal(n[0].z, 65534);
    assert_int_equal(n[25].z, 0); /* (+1,+1,+1) last: z wraps */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_morton_round_trip_grid_16),
        cmocka_unit_test(test_morton_layout_x_in_bit_zero),
        cmocka_unit_test(test_morton_round_trip_random_48bit),
        cmocka_unit_test(test_morton_fast_and_portable_agree),
        cmocka_unit_test(test_morton_distances_hand_computed),
        cmocka_unit_test(test_morton_neighbours_26_within_one),
    };
    return cmocka_run_group_tests_name("morton", tests, NULL, NULL);
}
