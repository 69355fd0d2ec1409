/* morton: 3D positions and their Z-order (Morton) codes.
 * A Position3D is three uint16_t; its code interleaves the bits into 48 bits
 * of a uint64_t: x in bit 0, y in bit 1, z in bit 2 of each triple. Decode is
 * the exact inverse. Nearby positions get nearby codes. */
#ifndef SP_MORTON_H
#define SP_MORTON_H

#include <stdint.h>

typedef struct {
    uint16_t x, y, z;
} sp_pos_t;

#define SP_MORTON_BITS 48

/* Register-only entry points behind the inline wrappers below: coordinates
 * as three arguments, a decoded position packed as x | y << 16 | z << 32.
 * They exist because gcc passes a 6-byte struct by value through the stack
 * with narrow stores and one wide load, a store-forwarding stall of about 25
 * cycles that would cost more than the encoding itself. The plain names pick
 * the BMI2 (pdep/pext) or the portable path once, when the program is loaded
 * (GNU indirect functions); the _ref and _bmi2 names are fixed paths, and the
 * _bmi2 ones must only be called when sp_morton_has_bmi2(). */
uint64_t sp_morton_encode_xyz(uint32_t x, uint32_t y, uint32_t z);
uint64_t sp_morton_decode_packed(uint64_t code);
uint64_t sp_morton_encode_xyz_ref(uint32_t x, uint32_t y, uint32_t z);
uint64_t sp_morton_decode_packed_ref(uint64_t code);
uint64_t sp_morton_encode_xyz_bmi2(uint32_t x, uint32_t y, uint32_t z);
uint64_t sp_morton_decode_packed_bmi2(uint64_t code);
int sp_morton_has_bmi2(void);

static inline sp_pos_t sp_morton_unpack_(uint64_t v)
{
    sp_pos_t p = {(uint16_t)v, (uint16_t)(v >> 16), (uint16_t)(v >> 32)};
    return p;
}

/* Encode / decode through the fastest path this CPU offers (BMI2 pdep/pext
 * when present, chosen once at run time; otherwise the portable path).
 * Only the low 48 bits of a code are decoded. */
static inline uint64_t sp_morton_encode(sp_pos_t p)
{
    return sp_morton_encode_xyz(p.x, p.y, p.z);
}
static inline sp_pos_t sp_morton_decode(uint64_t code)
{
    return sp_morton_unpack_(sp_morton_decode_packed(code));
}
/* The portable (magic-bits) path and the BMI2 path, for tests and benchmarks. */
static inline uint64_t sp_morton_encode_ref(sp_pos_t p)
{
    return sp_morton_encode_xyz_ref(p.x, p.y, p.z);
}
static inline sp_pos_t sp_morton_decode_ref(uint64_t code)
{
    return sp_morton_unpack_(sp_morton_decode_packed_ref(code));
}
static inline uint64_t sp_morton_encode_bmi2(sp_pos_t p)
{
    return sp_morton_encode_xyz_bmi2(p.x, p.y, p.z);
}
static inline sp_pos_t sp_morton_decode_bmi2(uint64_t code)
{
    return sp_morton_unpack_(sp_morton_decode_packed_bmi2(code));
}

/* Manhattan distance |dx|+|dy|+|dz| and squared Euclidean distance. */
uint32_t sp_pos_manhattan(sp_pos_t a, sp_pos_t b);
uint64_t sp_pos_dist2(sp_pos_t a, sp_pos_t b);
/* The 26 cells around p (coordinates wrap at the u16 boundary). */
void sp_pos_neighbors(sp_pos_t p, sp_pos_t out[26]);

#endif
