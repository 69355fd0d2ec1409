/* test_quant: 1/2/4-bit quantization, packing, and unbiased stochastic rounding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/quant.h"
#include "common/rng.h"

static const unsigned s_widths[3] = {1, 2, 4};

static void test_quantize_round_trip_within_half_step(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 11);
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        float bound = 1.0f / (float)sp_quant_levels(bits) + 1e-6f; /* half of a step of 2/(2^b-1) */
        for (int i = 0; i < 10000; i++) {
            float w = sp_rng_float(&r) * 2.0f - 1.0f;
            float back = sp_quant_value(sp_quant_level(w, bits), bits);
            assert_true(fabsf(back - w) <= bound);
        }
    }
}

static void test_quantize_clamps_and_handles_nan(void **state)
{
    (void)state;
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        unsigned top = sp_quant_levels(bits);
        assert_int_equal(sp_quant_level(-7.0f, bits), 0);
        assert_int_equal(sp_quant_level(1e30f, bits), top);
        assert_int_equal(sp_quant_level(-INFINITY, bits), 0);
        assert_int_equal(sp_quant_level(NAN, bits), sp_quant_level(0.0f, bits));
        assert_true(sp_quant_value(0, bits) == -1.0f);
        assert_true(sp_quant_value((uint8_t)top, bits) == 1.0f);
        /* every level is the nearest level of its own value */
        for (unsigned l = 0; l <= top; l++) {
            assert_int_equal(sp_quant_level(sp_quant_value((uint8_t)l, bits), bits), l);
        }
    }
}

static void test_quantize_every_level_at_every_slot(void **state)
{
    (void)state;
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        unsigned per_byte = 8 / bits;
        for (unsigned slot = 0; slot < per_byte; slot++) {
            for (unsigned l = 0; l <= sp_quant_levels(bits); l++) {
                for (unsigned bg = 0; bg <= sp_quant_levels(bits); bg++) {
                    uint8_t buf[3];
                    /* fill every slot of the middle byte with the background level */
                    memset(buf, 0xA5, sizeof(buf));
                    for (unsigned s = 0; s < per_byte; s++) {
                        sp_quant_set(buf + 1, s, bits, (uint8_t)bg);
                    }
                    sp_quant_set(buf + 1, slot, bits, (uint8_t)l);
                    assert_int_equal(buf[0], 0xA5);
                    assert_int_equal(buf[2], 0xA5);
                    for (unsigned s = 0; s < per_byte; s++) {
                        assert_int_equal(sp_quant_get(buf + 1, s, bits), s == slot ? l : bg);
                    }
                    /* layout: slot s sits at bit s*bits, low bits first */
                    assert_int_equal((buf[1] >> (slot * bits)) & sp_quant_levels(bits), l);
                }
            }
        }
    }
}

static void test_quantize_pack_unpack_matches_scalar(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 5);
    float w[203], back[203];
    uint8_t packed[128];
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        for (size_t i = 0; i < 203; i++) {
            w[i] = sp_rng_float(&r) * 2.4f - 1.2f;
        }
        memset(packed, 0xFF, sizeof(packed));
        sp_quant_pack(w, 203, bits, packed);
        sp_quant_unpack(packed, 203, bits, back);
        for (size_t i = 0; i < 203; i++) {
            assert_int_equal(sp_quant_get(packed, i, bits), sp_quant_level(w[i], bits));
            assert_true(back[i] == sp_quant_value(sp_quant_level(w[i], bits), bits));
        }
        assert_int_equal(packed[sp_quant_packed_size(203, bits)], 0xFF); /* no overrun */
    }
}

/* Stochastic rounding returns one of the two neighbouring levels and is
 * unbiased: the mean of many roundings of w is w. */
static void test_quantize_stochastic_is_unbiased(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 99);
    const float ws[] = {-0.93f, -0.31f, 0.0f, 0.05f, 0.4f, 0.77f};
    for (int wi = 0; wi < 3; wi++) {
        unsigned bits = s_widths[wi];
        float step = 2.0f / (float)sp_quant_levels(bits);
        for (size_t j = 0; j < sizeof(ws) / sizeof(ws[0]); j++) {
            const int n = 20000;
            double sum = 0.0;
            for (int i = 0; i < n; i++) {
                float v = sp_quant_value(sp_quant_level_stochastic(ws[j], bits, &r), bits);
                assert_true(fabsf(v - ws[j]) < step + 1e-6f);
                sum += v;
            }
            /* value spread is at most one step: standard error <= step/2/sqrt(n) */
            double se = step / 2.0 / sqrt((double)n);
            assert_true(fabs(sum / n - ws[j]) < 5.0 * se);
        }
        /* exact levels never move */
        for (unsigned l = 0; l <= sp_quant_levels(bits); l++) {
            float v = sp_quant_value((uint8_t)l, bits);
            assert_int_equal(sp_quant_level_stochastic(v, bits, &r), l);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_round_trip_within_half_step),
        cmocka_unit_test(test_quantize_clamps_and_handles_nan),
        cmocka_unit_test(test_quantize_every_level_at_every_slot),
        cmocka_unit_test(test_quantize_pack_unpack_matches_scalar),
        cmocka_unit_test(test_quantize_stochastic_is_unbiased),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
