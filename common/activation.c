/* activation: the twelve activation functions (switch dispatch, analytic
 * derivatives, no overflow for any finite x), the per-neuron 8x8 activation
 * map, and the SimHash pattern hash that picks a map cell from a layer input.
 *
 * Pattern hash (SimHash): bit k is 1 when <x, r_k> > 0 for six fixed Gaussian
 * hyperplanes r_k drawn from the seed. Each r_k is shifted to sum to zero, so
 * <x, r_k> = <x - mean(x), r_k>: the hash sees the input centred on its mean
 * without a second pass, and all-positive inputs (pixels in [0, 1]) still spread
 * over the cells. Bits 0-2 are the column, bits 8-10 the row (sp_actmap_cell);
 * the other hash bits are zero. Two inputs at angle theta (after centring) agree
 * on one bit with probability 1 - theta/pi, so on the cell with (1 - theta/pi)^6.
 * The dot products use 16 lanes of partial sums combined in a fixed order, in
 * the scalar path and the AVX2 path alike (no FMA), so both give the same bits. */
#include "common/activation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* Beyond these magnitudes the functions equal their asymptotes in float. */
#define S_EXP_GUARD 40.0f  /* exp(-40) < 2^-57: sigmoid is 0 or 1 to float precision */
#define S_GELU_GUARD 10.0f /* gelu(-10) ~ -1e-45, gelu(10) = 10 in float */

static const char *const s_names[SP_ACT_COUNT] = {
    "relu", "leaky_relu", "sigmoid",  "tanh",         "gelu",      "swish",
    "mish", "elu",        "softplus", "hard_sigmoid", "hard_tanh", "sine",
};

const char *sp_act_name(sp_act_t f)
{
    if ((unsigned)f >= SP_ACT_COUNT) {
        return "unknown";
    }
    return s_names[f];
}

/* 1 / (1 + e^-x) without overflow: exp only ever sees a non-positive argument. */
static inline float s_sigmoid(float x)
{
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|), exact for large |x|. */
static inline float s_softplus(float x)
{
    return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

/* GELU, tanh form: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = c (x + 0.044715 x^3).
 * The sigmoid form avoids the cancellation of 1 + tanh(u) for negative x. */
#define S_GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define S_GELU_A 0.044715f

/* The twelve functions, formula and derivative side by side
 * (s = sigmoid x = 1 / (1 + e^-x), a = the function's alpha):
 *   relu          f = max(0, x)                        f' = x > 0 ? 1 : 0
 *   leaky_relu    f = x > 0 ? x : a x                  f' = x > 0 ? 1 : a
 *   sigmoid       f = s                                f' = s (1 - s)
 *   tanh          f = t = tanh x                       f' = 1 - t^2
 *   gelu          f = x g, g = sigmoid(2u),            f' = g + 2 x g (1 - g) c (1 + 3 k x^2)
 *                 u = c (x + k x^3), c = sqrt(2/pi), k = 0.044715
 *                 (= 0.5 x (1 + tanh u), the tanh approximation)
 *   swish         f = x s                              f' = s + x s (1 - s)
 *   mish          f = x t, t = tanh(softplus x)        f' = t + x (1 - t^2) s
 *   elu           f = x > 0 ? x : a (e^x - 1)          f' = x > 0 ? 1 : a e^x
 *   softplus      f = log(1 + e^x)                     f' = s
 *   hard_sigmoid  f = clamp((x + 3) / 6, 0, 1)         f' = |x| < 3 ? 1/6 : 0
 *   hard_tanh     f = clamp(x, -1, 1)                  f' = |x| < 1 ? 1 : 0
 *   sine          f = sin x                            f' = cos x
 * At the kinks (0 for relu, leaky_relu, elu; +-3 hard_sigmoid; +-1 hard_tanh)
 * the derivative takes the left/outer value. Overflow: exp only ever sees a
 * non-positive argument, and gelu / swish / mish return their asymptotes
 * beyond |x| = 10 / 40, so every finite x gives a finite f and f'. */
float sp_act_apply(sp_act_t f, float x)
{
    switch (f) {
    case SP_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case SP_ACT_LEAKY_RELU:
        return x > 0.0f ? x : SP_ACT_LEAKY_ALPHA * x;
    case SP_ACT_SIGMOID:
        return s_sigmoid(x);
    case SP_ACT_TANH:
        return tanhf(x);
    case SP_ACT_GELU:
        if (fabsf(x) > S_GELU_GUARD) {
            return x > 0.0f ? x : 0.0f;
        }
        return x * s_sigmoid(2.0f * S_GELU_C * (x + S_GELU_A * x * x * x));
    case SP_ACT_SWISH:
        return x * s_sigmoid(x);
    case SP_ACT_MISH:
        return x * tanhf(s_softplus(x));
    case SP_ACT_ELU:
        return x > 0.0f ? x : SP_ACT_ELU_ALPHA * expm1f(x);
    case SP_ACT_SOFTPLUS:
        return s_softplus(x);
    case SP_ACT_HARD_SIGMOID:
        return fminf(fmaxf((x + 3.0f) / 6.0f, 0.0f), 1.0f);
    case SP_ACT_HARD_TANH:
        return fminf(fmaxf(x, -1.0f), 1.0f);
    case SP_ACT_SINE:
        return sinf(x);
    case SP_ACT_COUNT:
        break;
    }
    SP_ASSERT(!"unknown activation");
    return 0.0f;
}

float sp_act_derivative(sp_act_t f, float x)
{
    switch (f) {
    case SP_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case SP_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : SP_ACT_LEAKY_ALPHA;
    case SP_ACT_SIGMOID: {
        float s = s_sigmoid(x);
        return s * (1.0f - s);
    }
    case SP_ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case SP_ACT_GELU: {
        if (fabsf(x) > S_GELU_GUARD) {
            return x > 0.0f ? 1.0f : 0.0f;
        }
        float x2 = x * x;
        float s = s_sigmoid(2.0f * S_GELU_C * (x + S_GELU_A * x2 * x));
        return s + 2.0f * x * s * (1.0f - s) * S_GELU_C * (1.0f + 3.0f * S_GELU_A * x2);
    }
    case SP_ACT_SWISH: {
        if (fabsf(x) > S_EXP_GUARD) { /* keeps x * 0 away from inf * 0 */
            return x > 0.0f ? 1.0f : 0.0f;
        }
        float s = s_sigmoid(x);
        return s + x * s * (1.0f - s);
    }
    case SP_ACT_MISH: {
        if (fabsf(x) > S_EXP_GUARD) {
            return x > 0.0f ? 1.0f : 0.0f;
        }
        float t = tanhf(s_softplus(x));
        return t + x * (1.0f - t * t) * s_sigmoid(x);
    }
    case SP_ACT_ELU:
        return x > 0.0f ? 1.0f : SP_ACT_ELU_ALPHA * expf(x);
    case SP_ACT_SOFTPLUS:
        return s_sigmoid(x);
    case SP_ACT_HARD_SIGMOID:
        return (x > -3.0f && x < 3.0f) ? 1.0f / 6.0f : 0.0f;
    case SP_ACT_HARD_TANH:
        return (x > -1.0f && x < 1.0f) ? 1.0f : 0.0f;
    case SP_ACT_SINE:
        return cosf(x);
    case SP_ACT_COUNT:
        break;
    }
    SP_ASSERT(!"unknown activation");
    return 0.0f;
}

/* ---- activation map ---- */

void sp_actmap_init_uniform(sp_actmap_t *m, sp_act_t f)
{
    SP_ASSERT((unsigned)f < SP_ACT_COUNT);
    memset(m->func, (int)f, sizeof m->func);
    memset(m->hits, 0, sizeof m->hits);
}

void sp_actmap_init_random(sp_actmap_t *m, sp_rng_t *rng)
{
    for (unsigned c = 0; c < SP_ACTMAP_CELLS; c++) {
        m->func[c] = (uint8_t)sp_rng_below(rng, SP_ACT_COUNT);
    }
    memset(m->hits, 0, sizeof m->hits);
}

int sp_actmap_is_central(unsigned row, unsigned col)
{
    /* Chebyshev distance from the grid centre (3.5, 3.5), doubled to stay integral. */
    int dr = abs(2 * (int)row - 7);
    int dc = abs(2 * (int)col - 7);
    int d2 = dr > dc ? dr : dc;
    return d2 <= 2 * SP_ACTMAP_CENTRE_RADIUS;
}

void sp_actmap_init_gradient(sp_actmap_t *m, sp_act_t center, sp_act_t edge)
{
    SP_ASSERT((unsigned)center < SP_ACT_COUNT && (unsigned)edge < SP_ACT_COUNT);
    for (unsigned r = 0; r < SP_ACTMAP_SIDE; r++) {
        for (unsigned c = 0; c < SP_ACTMAP_SIDE; c++) {
            m->func[r * SP_ACTMAP_SIDE + c] = (uint8_t)(sp_actmap_is_central(r, c) ? center : edge);
        }
    }
    memset(m->hits, 0, sizeof m->hits);
}

unsigned sp_actmap_select(sp_actmap_t *m, uint64_t hash)
{
    unsigned cell = sp_actmap_cell(hash);
    if (m->hits[cell] != UINT32_MAX) { /* saturate rather than wrap */
        m->hits[cell]++;
    }
    return cell;
}

/* ---- SimHash ---- */

/* 16 lanes of partial sums per plane (two AVX2 registers): enough independent
 * add chains to keep the loads busy. */
#define S_LANES 16

struct sp_lsh {
    size_t n_inputs;
    size_t n_padded; /* n_inputs rounded up to S_LANES; padding planes are 0 */
    float *planes;   /* SP_LSH_BITS * n_padded, plane k at k * n_padded */
};

/* Hash bit position of plane k: planes 0-2 -> bits 0-2 (column), 3-5 -> bits 8-10 (row). */
static inline unsigned s_bit_pos(unsigned k)
{
    return k < 3 ? k : k + 5;
}

sp_lsh_t *sp_lsh_new(size_t n_inputs, uint64_t seed)
{
    if (n_inputs == 0 || n_inputs > ((size_t)1 << 28)) {
        return NULL;
    }
    sp_lsh_t *l = calloc(1, sizeof *l);
    if (!l) {
        return NULL;
    }
    l->n_inputs = n_inputs;
    l->n_padded = (n_inputs + S_LANES - 1) / S_LANES * S_LANES;
    l->planes = aligned_alloc(32, SP_LSH_BITS * l->n_padded * sizeof(float));
    if (!l->planes) {
        free(l);
        return NULL;
    }
    sp_rng_t rng;
    sp_rng_init(&rng, seed ^ 0x5eed15a5c0ffee00ULL);
    for (unsigned k = 0; k < SP_LSH_BITS; k++) {
        float *p = l->planes + k * l->n_padded;
        double sum = 0.0;
        for (size_t i = 0; i < n_inputs; i++) {
            double g = sp_rng_normal(&rng);
            p[i] = (float)g;
            sum += g;
        }
        /* Zero-sum plane: projecting onto it ignores any constant offset of x. */
        float mean = (float)(sum / (double)n_inputs);
        for (size_t i = 0; i < n_inputs; i++) {
            p[i] -= mean;
        }
        for (size_t i = n_inputs; i < l->n_padded; i++) {
            p[i] = 0.0f;
        }
    }
    return l;
}

void sp_lsh_destroy(sp_lsh_t **lp)
{
    if (!lp || !*lp) {
        return;
    }
    free((*lp)->planes);
    free(*lp);
    *lp = NULL;
}

size_t sp_lsh_n_inputs(const sp_lsh_t *l)
{
    return l->n_inputs;
}

/* Combines the 16 lane sums in a fixed order shared by both paths: the two
 * 8-lane halves lane by lane, then a pairwise tree over the 8 lanes. */
static inline float s_lane_sum(const float a[S_LANES])
{
    float h[8];
    for (unsigned j = 0; j < 8; j++) {
        h[j] = a[j] + a[j + 8];
    }
    float s0 = h[0] + h[4], s1 = h[1] + h[5], s2 = h[2] + h[6], s3 = h[3] + h[7];
    return (s0 + s2) + (s1 + s3);
}

void sp_lsh_project_ref(const sp_lsh_t *l, const float *x, float proj[SP_LSH_BITS])
{
    float acc[SP_LSH_BITS][S_LANES] = {{0}};
    size_t n = l->n_inputs;
    size_t full = n / S_LANES * S_LANES;
    for (size_t i = 0; i < full; i += S_LANES) {
        for (unsigned k = 0; k < SP_LSH_BITS; k++) {
            const float *p = l->planes + k * l->n_padded + i;
            for (unsigned j = 0; j < S_LANES; j++) {
                acc[k][j] += x[i + j] * p[j];
            }
        }
    }
    /* Tail: lanes past n see x = 0, as the AVX2 path's zero-filled tail does. */
    for (size_t i = full; i < n; i++) {
        for (unsigned k = 0; k < SP_LSH_BITS; k++) {
            acc[k][i - full] += x[i] * l->planes[k * l->n_padded + i];
        }
    }
    for (unsigned k = 0; k < SP_LSH_BITS; k++) {
        proj[k] = s_lane_sum(acc[k]);
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define S_HAVE_AVX2 1
_Static_assert(SP_LSH_BITS == 6, "the AVX2 path unrolls six planes");

/* mul then add (no FMA) so that every lane rounds exactly as the scalar path */
#define S_STEP(k, xa, xb, off)                                                                     \
    do {                                                                                           \
        const float *pk_ = pl + (k)*np + (off);                                                    \
        a##k = _mm256_add_ps(a##k, _mm256_mul_ps(xa, _mm256_load_ps(pk_)));                        \
        b##k = _mm256_add_ps(b##k, _mm256_mul_ps(xb, _mm256_load_ps(pk_ + 8)));                    \
    } while (0)

__attribute__((target("avx2"))) static void s_project_avx2(const sp_lsh_t *l, const float *x,
                                                           float proj[SP_LSH_BITS])
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
    size_t n = l->n_inputs;
    size_t full = n / S_LANES * S_LANES;
    const float *pl = l->planes;
    size_t np = l->n_padded;
    for (size_t i = 0; i <= full; i += S_LANES) {
        __m256 xa, xb;
        if (i < full) {
            xa = _mm256_loadu_ps(x + i);
            xb = _mm256_loadu_ps(x + i + 8);
        } else if (full < n) {
            float tail[S_LANES] = {0};
            memcpy(tail, x + full, (n - full) * sizeof(float));
            xa = _mm256_loadu_ps(tail);
            xb = _mm256_loadu_ps(tail + 8);
        } else {
            break;
        }
        S_STEP(0, xa, xb, i);
        S_STEP(1, xa, xb, i);
        S_STEP(2, xa, xb, i);
        S_STEP(3, xa, xb, i);
        S_STEP(4, xa, xb, i);
        S_STEP(5, xa, xb, i);
    }
    float lanes[S_LANES];
#define S_OUT(k)                                                                                   \
    _mm256_storeu_ps(lanes, a##k);                                                                 \
    _mm256_storeu_ps(lanes + 8, b##k);                                                             \
    proj[k] = s_lane_sum(lanes)
    S_OUT(0);
    S_OUT(1);
    S_OUT(2);
    S_OUT(3);
    S_OUT(4);
    S_OUT(5);
#undef S_OUT
}
#undef S_STEP
#endif

void sp_lsh_project(const sp_lsh_t *l, const float *x, float proj[SP_LSH_BITS])
{
#ifdef S_HAVE_AVX2
    if (__builtin_cpu_supports("avx2")) {
        s_project_avx2(l, x, proj);
        return;
    }
#endif
    sp_lsh_project_ref(l, x, proj);
}

uint64_t sp_lsh_bits(const float proj[SP_LSH_BITS])
{
    uint64_t h = 0;
    for (unsigned k = 0; k < SP_LSH_BITS; k++) {
        h |= (uint64_t)(proj[k] > 0.0f) << s_bit_pos(k);
    }
    return h;
}

uint64_t sp_lsh_hash(const sp_lsh_t *l, const float *x)
{
    float proj[SP_LSH_BITS];
    sp_lsh_project(l, x, proj);
    return sp_lsh_bits(proj);
}
