/* rng: Spatium's seeded, deterministic random generator (xoshiro256**,
 * seeded through splitmix64). The same seed gives the same stream on every
 * machine; nothing in Spatium uses rand(). Streams are plain values: copy one
 * to fork it, or derive independent ones with sp_rng_init_stream. */
#ifndef SP_RNG_H
#define SP_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* xoshiro256** state, never all zero */
} sp_rng_t;

/* Seeds the generator; any seed (0 included) is valid. */
void sp_rng_init(sp_rng_t *rng, uint64_t seed);
/* Seeds stream number `stream` of `seed`: independent of other streams. */
void sp_rng_init_stream(sp_rng_t *rng, uint64_t seed, uint64_t stream);
uint64_t sp_rng_next(sp_rng_t *rng);
/* Uniform float in [0, 1), 24 random bits. */
float sp_rng_float(sp_rng_t *rng);
/* Uniform double in [0, 1), 53 random bits. */
double sp_rng_double(sp_rng_t *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t sp_rng_below(sp_rng_t *rng, uint64_t n);
/* Standard normal (Box-Muller, double precision). */
double sp_rng_normal(sp_rng_t *rng);
/* Fisher-Yates shuffle of idx[0..n). */
void sp_rng_shuffle_u32(sp_rng_t *rng, uint32_t *idx, uint32_t n);

#endif
