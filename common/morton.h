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

/* Encode / decode through the fastest path this CPU offers (BMI2 pdep/pext
 * when present, chosen once at run time; otherwise the portable path). */
uint64_t sp_morton_encode(sp_pos_t p);
sp_pos_t sp_morton_decode(uint64_t code);
/* The portable (magic-bits) path and the BMI2 path, exposed for tests and
 * benchmarks. The BMI2 ones must only be called when sp_morton_has_bmi2(). */
uint64_t sp_morton_encode_ref(sp_pos_t p);
sp_pos_t sp_morton_decode_ref(uint64_t code);
uint64_t sp_morton_encode_bmi2(sp_pos_t p);
sp_pos_t sp_morton_decode_bmi2(uint64_t code);
int sp_morton_has_bmi2(void);

/* Manhattan distance |dx|+|dy|+|dz| and squared Euclidean distance. */
uint32_t sp_pos_manhattan(sp_pos_t a, sp_pos_t b);
uint64_t sp_pos_dist2(sp_pos_t a, sp_pos_t b);
/* The 26 cells around p (coordinates wrap at the u16 boundary). */
void sp_pos_neighbors(sp_pos_t p, sp_pos_t out[26]);

#endif
