/* test_activation: the twelve functions and derivatives against double-precision
 * references, the activation map's cells and initialisations, and the SimHash
 * pattern hash (locality, offset invariance, AVX2 path equal to the scalar one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/activation.h"

static double s_sig(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static double s_ref(sp_act_t f, double x)
{
    const double c = sqrt(2.0 / M_PI);
    switch (f) {
    case SP_ACT_RELU:
        return x > 0 ? x : 0;
    case SP_ACT_LEAKY_RELU:
        return x > 0 ? x : (double)SP_ACT_LEAKY_ALPHA * x;
    case SP_ACT_SIGMOID:
        return s_sig(x);
    case SP_ACT_TANH:
        return tanh(x);
    case SP_ACT_GELU:
        return 0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x * x * x)));
    case SP_ACT_SWISH:
        return x * s_sig(x);
    case SP_ACT_MISH:
        return x * tanh(log1p(exp(x)));
    case SP_ACT_ELU:
        return x > 0 ? x : (double)SP_ACT_ELU_ALPHA * (exp(x) - 1.0);
    case SP_ACT_SOFTPLUS:
        return log1p(exp(x));
    case SP_ACT_HARD_SIGMOID:
        return fmin(fmax((x + 3.0) / 6.0, 0.0), 1.0);
    case SP_ACT_HARD_TANH:
        return fmin(fmax(x, -1.0), 1.0);
    case SP_ACT_SINE:
        return sin(x);
    default:
        fail();
    }
    return 0;
}

/* Points of non-differentiability per function (none for the smooth ones). */
static int s_near_kink(sp_act_t f, double x, double h)
{
    switch (f) {
    case SP_ACT_RELU:
    case SP_ACT_LEAKY_RELU:
    case SP_ACT_ELU:
        return fabs(x) <= h;
    case SP_ACT_HARD_SIGMOID:
        return fabs(fabs(x) - 3.0) <= h;
    case SP_ACT_HARD_TANH:
        return fabs(fabs(x) - 1.0) <= h;
    default:
        return 0;
    }
}

/* 1,000 points in [-5, 5]: a random set plus the kinks and the ends. */
static void s_points(float *pts, int n)
{
    sp_rng_t r;
    sp_rng_init(&r, 2024);
    const float fixed[] = {-5.0f, 5.0f, 0.0f, -3.0f, 3.0f, -1.0f, 1.0f, 1e-6f, -1e-6f};
    int nf = (int)(sizeof fixed / sizeof fixed[0]);
    for (int i = 0; i < n; i++) {
        pts[i] = i < nf ? fixed[i] : -5.0f + 10.0f * sp_rng_float(&r);
    }
}

static void test_activation_matches_reference(void **state)
{
    (void)state;
    float pts[1000];
    s_points(pts, 1000);
    for (int f = 0; f < SP_ACT_COUNT; f++) {
        for (int i = 0; i < 1000; i++) {
            double x = pts[i];
            double ref = s_ref((sp_act_t)f, x);
            double got = sp_act_apply((sp_act_t)f, pts[i]);
            double tol = 1e-6 * fmax(1.0, fabs(ref));
            if (fabs(got - ref) > tol) {
                print_error("%s(%.9g) = %.9g, reference %.9g\n", sp_act_name((sp_act_t)f), x, got,
                            ref);
                fail();
            }
        }
    }
}

static void test_activation_derivative_matches_central_difference(void **state)
{
    (void)state;
    const double h = 1e-5;
    float pts[1000];
    s_points(pts, 1000);
    int checked = 0;
    for (int f = 0; f < SP_ACT_COUNT; f++) {
        for (int i = 0; i < 1000; i++) {
            double x = pts[i];
            if (s_near_kink((sp_act_t)f, x, h)) {
                continue;
            }
            double num = (s_ref((sp_act_t)f, x + h) - s_ref((sp_act_t)f, x - h)) / (2.0 * h);
            double got = sp_act_derivative((sp_act_t)f, pts[i]);
            if (fabs(got - num) > 1e-4) {
                print_error("%s'(%.9g) = %.9g, central difference %.9g\n", sp_act_name((sp_act_t)f),
                            x, got, num);
                fail();
            }
            checked++;
        }
    }
    assert_true(checked > 11900); /* only the few kink points are skipped */
}

static void test_activation_finite_at_extremes(void **state)
{
    (void)state;
    const float xs[] = {-FLT_MAX, -1e30f, -1e4f, -100.0f, -88.8f,
                        88.8f,    100.0f, 1e4f,  1e30f,   FLT_MAX};
    for (int f = 0; f < SP_ACT_COUNT; f++) {
        for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
            float y = sp_act_apply((sp_act_t)f, xs[i]);
            float d = sp_act_derivative((sp_act_t)f, xs[i]);
            if (f != SP_ACT_SINE) { /* sin of huge x is finite but meaningless */
                assert_true(isfinite(d));
            }
            assert_false(isnan(y));
            assert_false(isnan(d));
        }
    }
    /* asymptotes */
    assert_true(sp_act_apply(SP_ACT_SIGMOID, 1e30f) == 1.0f);
    assert_true(sp_act_apply(SP_ACT_SIGMOID, -1e30f) == 0.0f);
    assert_true(sp_act_apply(SP_ACT_SOFTPLUS, 1e30f) == 1e30f);
    assert_true(sp_act_apply(SP_ACT_GELU, 1e30f) == 1e30f);
    assert_true(sp_act_derivative(SP_ACT_MISH, 1e30f) == 1.0f);
}

static void test_activation_names_distinct(void **state)
{
    (void)state;
    for (int a = 0; a < SP_ACT_COUNT; a++) {
        assert_string_not_equal(sp_act_name((sp_act_t)a), "unknown");
        for (int b = a + 1; b < SP_ACT_COUNT; b++) {
            assert_string_not_equal(sp_act_name((sp_act_t)a), sp_act_name((sp_act_t)b));
        }
    }
    assert_string_equal(sp_act_name(SP_ACT_COUNT), "unknown");
}

static void test_activation_map_cell_from_hash_bits(void **state)
{
    (void)state;
    sp_actmap_t m;
    sp_actmap_init_uniform(&m, SP_ACT_TANH);
    /* row = (hash >> 8) & 7, col = hash & 7; other bits ignored */
    assert_int_equal(sp_actmap_select(&m, 0x0000), 0);
    assert_int_equal(sp_actmap_select(&m, 0x0507), 5 * 8 + 7);
    assert_int_equal(sp_actmap_select(&m, 0xfffff8f8ULL | 0x0302), 3 * 8 + 2);
    uint64_t h = 0x123456789abc1e9ULL; /* row 1, col 1 */
    unsigned c1 = sp_actmap_select(&m, h);
    unsigned c2 = sp_actmap_select(&m, h);
    assert_int_equal(c1, c2); /* same hash, same cell */
    assert_int_equal(c1, 1 * 8 + 1);
    assert_int_equal(m.hits[c1], 2);
    assert_int_equal(m.hits[0], 1);
    assert_int_equal(m.hits[5 * 8 + 7], 1);
}

static void test_activation_map_uniform_hashes_pass_chi_square(void **state)
{
    (void)state;
    sp_actmap_t m;
    sp_actmap_init_uniform(&m, SP_ACT_RELU);
    sp_rng_t r;
    sp_rng_init(&r, 99);
    const int n = 10000;
    for (int i = 0; i < n; i++) {
        sp_actmap_select(&m, sp_rng_next(&r));
    }
    double expect = n / 64.0, chi2 = 0.0;
    uint64_t total = 0;
    for (int c = 0; c < 64; c++) {
        double d = m.hits[c] - expect;
        chi2 += d * d / expect;
        total += m.hits[c];
    }
    assert_int_equal(total, n);
    assert_true(chi2 < 92.01); /* 63 degrees of freedom, 1% level */
}

static void test_activation_map_initialisations(void **state)
{
    (void)state;
    sp_actmap_t m;
    memset(&m, 0xff, sizeof m);
    sp_actmap_init_uniform(&m, SP_ACT_MISH);
    for (int c = 0; c < 64; c++) {
        assert_int_equal(m.func[c], SP_ACT_MISH);
        assert_int_equal(m.hits[c], 0);
    }

    memset(&m, 0xff, sizeof m);
    sp_actmap_init_gradient(&m, SP_ACT_GELU, SP_ACT_SINE);
    int n_center = 0;
    for (int r = 0; r < 8; r++) {
        for (int c = 0; c < 8; c++) {
            int inner = r >= 2 && r <= 5 && c >= 2 && c <= 5;
            assert_int_equal(m.func[r * 8 + c], inner ? SP_ACT_GELU : SP_ACT_SINE);
            assert_int_equal(m.hits[r * 8 + c], 0);
            n_center += inner;
        }
    }
    assert_int_equal(n_center, 16);
    assert_int_equal(m.func[0], SP_ACT_SINE);         /* corner */
    assert_int_equal(m.func[3 * 8 + 4], SP_ACT_GELU); /* centre */

    sp_rng_t r1, r2;
    sp_rng_init(&r1, 5);
    sp_rng_init(&r2, 5);
    sp_actmap_t a, b;
    sp_actmap_init_random(&a, &r1);
    sp_actmap_init_random(&b, &r2);
    assert_memory_equal(a.func, b.func, sizeof a.func); /* seeded: reproducible */
    int seen[SP_ACT_COUNT] = {0};
    for (int k = 0; k < 20; k++) {
        sp_actmap_init_random(&a, &r1);
        for (int c = 0; c < 64; c++) {
            assert_true(a.func[c] < SP_ACT_COUNT);
            assert_int_equal(a.hits[c], 0);
            seen[a.func[c]]++;
        }
    }
    for (int f = 0; f < SP_ACT_COUNT; f++) {
        assert_true(seen[f] > 40); /* 1280 draws, ~107 expected per function */
    }
}

static void s_random_input(sp_rng_t *r, float *x, size_t n, int positive)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = positive ? sp_rng_float(r) : (float)sp_rng_normal(r);
    }
}

static void test_activation_lsh_locality(void **state)
{
    (void)state;
    const size_t n = 100;
    sp_lsh_t *l = sp_lsh_new(n, 7);
    assert_non_null(l);
    sp_rng_t r;
    sp_rng_init(&r, 11);
    float x[100], y[100], z[100];
    const int trials = 2000;
    for (int positive = 0; positive <= 1; positive++) {
        int near_same = 0, random_same = 0;
        for (int t = 0; t < trials; t++) {
            s_random_input(&r, x, n, positive);
            s_random_input(&r, z, n, positive);
            /* perturbation of about 2% of the input's spread */
            float scale = positive ? 0.3f * 0.02f : 0.02f;
            for (size_t i = 0; i < n; i++) {
                y[i] = x[i] + scale * (float)sp_rng_normal(&r);
            }
            unsigned cx = sp_actmap_cell(sp_lsh_hash(l, x));
            near_same += cx == sp_actmap_cell(sp_lsh_hash(l, y));
            random_same += cx == sp_actmap_cell(sp_lsh_hash(l, z));
        }
        double p_near = (double)near_same / trials, p_rand = (double)random_same / trials;
        /* theory: near ~ (1 - 0.02/pi)^6 ~ 0.96; random ~ 1/64 */
        if (!(p_near > 0.85 && p_rand < 0.06)) {
            print_error("positive=%d: near %.3f random %.3f\n", positive, p_near, p_rand);
            fail();
        }
    }
    sp_lsh_destroy(&l);
    assert_null(l);
    sp_lsh_destroy(&l);
}

static void test_activation_lsh_positive_inputs_spread_and_offset_ignored(void **state)
{
    (void)state;
    const size_t n = 784;
    sp_lsh_t *l = sp_lsh_new(n, 3);
    assert_non_null(l);
    sp_rng_t r;
    sp_rng_init(&r, 12);
    static float x[784], xs[784];
    int count[64] = {0};
    int offset_same = 0;
    for (int t = 0; t < 640; t++) {
        s_random_input(&r, x, n, 1);
        uint64_t h = sp_lsh_hash(l, x);
        count[sp_actmap_cell(h)]++;
        for (size_t i = 0; i < n; i++) {
            xs[i] = x[i] + 0.25f; /* constant offset */
        }
        offset_same += sp_actmap_cell(sp_lsh_hash(l, xs)) == sp_actmap_cell(h);
    }
    int used = 0;
    for (int c = 0; c < 64; c++) {
        used += count[c] > 0;
        assert_true(count[c] < 60); /* ~10 expected; no cell swallows the inputs */
    }
    assert_true(used >= 56);
    assert_true(offset_same >= 620); /* only float rounding can flip a bit */
    /* all bits outside 0-2 and 8-10 are zero */
    assert_int_equal(sp_lsh_hash(l, x) & ~(uint64_t)0x707, 0);
    sp_lsh_destroy(&l);
}

static void test_activation_lsh_fast_path_equals_ref(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 5, 8, 13, 16, 17, 31, 32, 64, 100, 784};
    sp_rng_t r;
    sp_rng_init(&r, 13);
    static float x[784];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        sp_lsh_t *l = sp_lsh_new(sizes[s], 100 + s);
        assert_non_null(l);
        assert_int_equal(sp_lsh_n_inputs(l), sizes[s]);
        for (int t = 0; t < 200; t++) {
            s_random_input(&r, x, sizes[s], t & 1);
            float a[SP_LSH_BITS], b[SP_LSH_BITS];
            sp_lsh_project(l, x, a);
            sp_lsh_project_ref(l, x, b);
            assert_memory_equal(a, b, sizeof a);
            assert_int_equal(sp_lsh_hash(l, x), sp_lsh_bits(b));
        }
        sp_lsh_destroy(&l);
    }
    /* same seed, same hyperplanes */
    sp_lsh_t *l1 = sp_lsh_new(50, 9), *l2 = sp_lsh_new(50, 9);
    s_random_input(&r, x, 50, 0);
    assert_int_equal(sp_lsh_hash(l1, x), sp_lsh_hash(l2, x));
    sp_lsh_destroy(&l1);
    sp_lsh_destroy(&l2);
    assert_null(sp_lsh_new(0, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_matches_reference),
        cmocka_unit_test(test_activation_derivative_matches_central_difference),
        cmocka_unit_test(test_activation_finite_at_extremes),
        cmocka_unit_test(test_activation_names_distinct),
        cmocka_unit_test(test_activation_map_cell_from_hash_bits),
        cmocka_unit_test(test_activation_map_uniform_hashes_pass_chi_square),
        cmocka_unit_test(test_activation_map_initialisations),
        cmocka_unit_test(test_activation_lsh_locality),
        cmocka_unit_test(test_activation_lsh_positive_inputs_spread_and_offset_ignored),
        cmocka_unit_test(test_activation_lsh_fast_path_equals_ref),
    };
    return cmocka_run_group_tests_name("activation", tests, NULL, NULL);
}
