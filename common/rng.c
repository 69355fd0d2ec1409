/* rng: xoshiro256** (Blackman and Vigna), seeded by splitmix64. */
#include "common/rng.h"

#include <math.h>

static uint64_t s_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void sp_rng_init(sp_rng_t *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        rng->s[i] = s_splitmix(&x);
    }
    if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0) {
        rng->s[0] = 1;
    }
}

void sp_rng_init_stream(sp_rng_t *rng, uint64_t seed, uint64_t stream)
{
    uint64_t x = stream;
    sp_rng_init(rng, seed ^ s_splitmix(&x));
}

uint64_t sp_rng_next(sp_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

float sp_rng_float(sp_rng_t *rng)
{
    return (float)(sp_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

double sp_rng_double(sp_rng_t *rng)
{
    return (double)(sp_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t sp_rng_below(sp_rng_t *rng, uint64_t n)
{
    /* Rejection keeps the result exactly uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do {
        r = sp_rng_next(rng);
    } while (r >= limit);
    return r % n;
}

double sp_rng_normal(sp_rng_t *rng)
{
    double u1 = sp_rng_double(rng);
    double u2 = sp_rng_double(rng);
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void sp_rng_shuffle_u32(sp_rng_t *rng, uint32_t *idx, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)sp_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
