/* quant: weights in [-1, 1] stored at 1, 2 or 4 bits, bit-packed.
 * quantize: clamp to [-1, 1], map to [0, 1], scale by 2^b - 1, round to the
 * nearest level; dequantize: level / (2^b - 1) * 2 - 1. Round-trip error is
 * at most half a step, 1/(2^b - 1). Packing puts 8, 4 or 2 weights in a byte,
 * weight i of a run in byte i*b/8 at bit offset (i*b)%8 (little end first). */
#ifndef SP_QUANT_H
#define SP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

/* Valid widths are 1, 2 and 4. */
static inline int sp_quant_bits_valid(unsigned bits)
{
    return bits == 1 || bits == 2 || bits == 4;
}
static inline unsigned sp_quant_levels(unsigned bits)
{
    return (1u << bits) - 1u; /* highest level: 1, 3 or 15 */
}
/* Bytes needed for n weights at `bits`. */
static inline size_t sp_quant_packed_size(size_t n, unsigned bits)
{
    return (n * bits + 7) / 8;
}

/* Nearest level of w (clamped to [-1, 1]; NaN is treated as 0.0; halves round up). */
uint8_t sp_quant_level(float w, unsigned bits);
float sp_quant_value(uint8_t level, unsigned bits);
/* Unbiased stochastic rounding: returns the level just below or just above
 * w's exact position on the level scale, the upper one with probability equal
 * to the fractional part, so E[value] = w for w in [-1, 1] (to 2^-24). This is
 * Spatium's answer to spec section 2 for updates applied to stored weights
 * (sp_memory_update): many updates far below one step move a weight by their
 * sum on average instead of being rounded away. Draws one float from rng. */
uint8_t sp_quant_level_stochastic(float w, unsigned bits, sp_rng_t *rng);

/* Level i of a packed run, and setting it. */
uint8_t sp_quant_get(const uint8_t *packed, size_t i, unsigned bits);
void sp_quant_set(uint8_t *packed, size_t i, unsigned bits, uint8_t level);
/* Whole-run conversions: n floats to packed levels (nearest) and back. */
void sp_quant_pack(const float *w, size_t n, unsigned bits, uint8_t *packed);
void sp_quant_unpack(const uint8_t *packed, size_t n, unsigned bits, float *w);

#endif
