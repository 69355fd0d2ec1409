/* morton: Z-order codes of 3D positions, distances and neighbours.
 * Invariant: sp_morton_decode(sp_morton_encode(p)) == p for every p, and the
 * BMI2 path returns exactly what the portable magic-bits path returns. The
 * public encode/decode are GNU indirect functions: the dynamic loader picks
 * the BMI2 or the portable body once, at start-up, so no mutable global and
 * no per-call test is needed. */
#include "common/morton.h"

#include <immintrin.h>

/* Bits 0, 3, 6, ..., 45: where x's 16 bits land (y one higher, z two). */
#define S_MASK_X 0x249249249249ULL

/* Spreads the 16 low bits of v to every third bit (magic-bits method). */
static inline uint64_t s_spread3(uint64_t v)
{
    v &= 0xFFFFULL;
    v = (v | (v << 16)) & 0x0000FF0000FFULL;
    v = (v | (v << 8)) & 0x00F00F00F00FULL;
    v = (v | (v << 4)) & 0x0C30C30C30C3ULL;
    v = (v | (v << 2)) & 0x249249249249ULL;
    return v;
}

/* Inverse of s_spread3: gathers every third bit (from bit 0) into 16 bits. */
static inline uint16_t s_gather3(uint64_t v)
{
    v &= 0x249249249249ULL;
    v = (v | (v >> 2)) & 0x0C30C30C30C3ULL;
    v = (v | (v >> 4)) & 0x00F00F00F00FULL;
    v = (v | (v >> 8)) & 0x0000FF0000FFULL;
    v = (v | (v >> 16)) & 0xFFFFULL;
    return (uint16_t)v;
}

static inline uint64_t s_pack(uint64_t x, uint64_t y, uint64_t z)
{
    return x | (y << 16) | (z << 32);
}

uint64_t sp_morton_encode_xyz_ref(uint32_t x, uint32_t y, uint32_t z)
{
    return s_spread3(x) | (s_spread3(y) << 1) | (s_spread3(z) << 2);
}

uint64_t sp_morton_decode_packed_ref(uint64_t code)
{
    return s_pack(s_gather3(code), s_gather3(code >> 1), s_gather3(code >> 2));
}

__attribute__((target("bmi2"))) uint64_t sp_morton_encode_xyz_bmi2(uint32_t x, uint32_t y,
                                                                  uint32_t z)
{
    return _pdep_u64(x & 0xFFFFu, S_MASK_X) | _pdep_u64(y & 0xFFFFu, S_MASK_X << 1) |
           _pdep_u64(z & 0xFFFFu, S_MASK_X << 2);
}

__attribute__((target("bmi2"))) uint64_t sp_morton_decode_packed_bmi2(uint64_t code)
{
    return s_pack(_pext_u64(code, S_MASK_X), _pext_u64(code, S_MASK_X << 1),
                  _pext_u64(code, S_MASK_X << 2));
}

int sp_morton_has_bmi2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi2") ? 1 : 0;
}

/* Resolvers run inside the dynamic loader, before constructors and before
 * sanitizer run-times are set up: they call nothing of ours, are never
 * instrumented, and initialise the CPU model themselves. */
typedef uint64_t (*s_encode_fn)(uint32_t, uint32_t, uint32_t);
typedef uint64_t (*s_decode_fn)(uint64_t);
#define S_RESOLVER __attribute__((no_sanitize_address, no_sanitize_undefined, no_instrument_function))

S_RESOLVER static s_encode_fn s_resolve_encode(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi2") ? sp_morton_encode_xyz_bmi2 : sp_morton_encode_xyz_ref;
}

S_RESOLVER static s_decode_fn s_resolve_decode(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi2") ? sp_morton_decode_packed_bmi2 : sp_morton_decode_packed_ref;
}

uint64_t sp_morton_encode_xyz(uint32_t x, uint32_t y, uint32_t z)
    __attribute__((ifunc("s_resolve_encode")));
uint64_t sp_morton_decode_packed(uint64_t code) __attribute__((ifunc("s_resolve_decode")));

static inline uint32_t s_absdiff(uint16_t a, uint16_t b)
{
    return a > b ? (uint32_t)(a - b) : (uint32_t)(b - a);
}

uint32_t sp_pos_manhattan(sp_pos_t a, sp_pos_t b)
{
    return s_absdiff(a.x, b.x) + s_absdiff(a.y, b.y) + s_absdiff(a.z, b.z);
}

uint64_t sp_pos_dist2(sp_pos_t a, sp_pos_t b)
{
    uint64_t dx = s_absdiff(a.x, b.x), dy = s_absdiff(a.y, b.y), dz = s_absdiff(a.z, b.z);
    return dx * dx + dy * dy + dz * dz;
}

void sp_pos_neighbors(sp_pos_t p, sp_pos_t out[26])
{
    int n = 0;
    for (int dz = -1; dz <= 1; dz++) {
        for (int dy = -1; dy <= 1; dy++) {
            for (int dx = -1; dx <= 1; dx++) {
                if (dx == 0 && dy == 0 && dz == 0) {
                    continue;
                }
                /* conversion to uint16_t wraps modulo 65536, as documented */
                out[n].x = (uint16_t)(p.x + dx);
                out[n].y = (uint16_t)(p.y + dy);
                out[n].z = (uint16_t)(p.z + dz);
                n++;
            }
        }
    }
}
