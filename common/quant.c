/* quant: 1, 2 and 4-bit weight levels and their packing (see quant.h).
 * Invariant: a level is always in [0, 2^bits - 1], and packed weight i of a
 * run occupies bits [i*bits, (i+1)*bits) counted from bit 0 of byte 0, low
 * bits first within a byte. Nothing here allocates. */
#include "common/quant.h"

#include <math.h>

#include "common/error.h"

/* Position of w on the level scale, in [0, levels]; NaN counts as 0.0. */
static inline float s_scaled(float w, unsigned bits)
{
    if (!(w >= -1.0f)) { /* also catches NaN */
        w = (w != w) ? 0.0f : -1.0f;
    } else if (w > 1.0f) {
        w = 1.0f;
    }
    return (w + 1.0f) * 0.5f * (float)sp_quant_levels(bits);
}

uint8_t sp_quant_level(float w, unsigned bits)
{
    SP_ASSERT(sp_quant_bits_valid(bits));
    /* x >= 0, so adding 0.5 and truncating rounds half up */
    return (uint8_t)(s_scaled(w, bits) + 0.5f);
}

float sp_quant_value(uint8_t level, unsigned bits)
{
    SP_ASSERT(sp_quant_bits_valid(bits));
    unsigned top = sp_quant_levels(bits);
    if (level > top) {
        level = (uint8_t)top;
    }
    return (float)level / (float)top * 2.0f - 1.0f;
}

uint8_t sp_quant_level_stochastic(float w, unsigned bits, sp_rng_t *rng)
{
    SP_ASSERT(sp_quant_bits_valid(bits));
    SP_ASSERT(rng != NULL);
    float x = s_scaled(w, bits);
    float lo = floorf(x);
    float frac = x - lo;
    /* P(round up) = frac (to 2^-24), hence E[level] = x and E[value] = w */
    unsigned level = (unsigned)lo + (sp_rng_float(rng) < frac ? 1u : 0u);
    if (level > sp_quant_levels(bits)) {
        level = sp_quant_levels(bits);
    }
    return (uint8_t)level;
}

uint8_t sp_quant_get(const uint8_t *packed, size_t i, unsigned bits)
{
    size_t bit = i * bits;
    return (uint8_t)((packed[bit >> 3] >> (bit & 7)) & sp_quant_levels(bits));
}

void sp_quant_set(uint8_t *packed, size_t i, unsigned bits, uint8_t level)
{
    size_t bit = i * bits;
    unsigned mask = sp_quant_levels(bits) << (bit & 7);
    uint8_t *b = &packed[bit >> 3];
    *b = (uint8_t)((*b & ~mask) | (((unsigned)level << (bit & 7)) & mask));
}

void sp_quant_pack(const float *w, size_t n, unsigned bits, uint8_t *packed)
{
    SP_ASSERT(sp_quant_bits_valid(bits));
    size_t per_byte = 8 / bits;
    size_t full = n / per_byte;
    /* whole bytes first: each byte is written once, no read-modify-write */
    for (size_t b = 0; b < full; b++) {
        unsigned byte = 0;
        for (size_t j = 0; j < per_byte; j++) {
            byte |= (unsigned)sp_quant_level(w[b * per_byte + j], bits) << (j * bits);
        }
        packed[b] = (uint8_t)byte;
    }
    if (full * per_byte < n) {
        unsigned byte = 0;
        for (size_t j = 0; full * per_byte + j < n; j++) {
            byte |= (unsigned)sp_quant_level(w[full * per_byte + j], bits) << (j * bits);
        }
        packed[full] = (uint8_t)byte; /* unused high slots of the last byte are 0 */
    }
}

void sp_quant_unpack(const uint8_t *packed, size_t n, unsigned bits, float *w)
{
    SP_ASSERT(sp_quant_bits_valid(bits));
    /* a table keeps unpack bit-identical to sp_quant_value */
    float table[16];
    for (unsigned l = 0; l <= sp_quant_levels(bits); l++) {
        table[l] = sp_quant_value((uint8_t)l, bits);
    }
    for (size_t i = 0; i < n; i++) {
        w[i] = table[sp_quant_get(packed, i, bits)];
    }
}
