/* bytes: little-endian integers in byte buffers, for the file formats and
 * frames that fix their byte order (datasets, checkpoints, wire arrays), and
 * the CRC-32 those formats end with. */
#ifndef SP_COMMON_BYTES_H
#define SP_COMMON_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* zlib's CRC-32 of p[0..n), for any n (zlib takes at most 4 GB a call). */
uint32_t sp_crc32(const uint8_t *p, size_t n);
/* The CRC-32 of earlier bytes whose CRC-32 is crc followed by p[0..n):
 * sp_crc32 of a buffer computed piece by piece, starting from 0. */
uint32_t sp_crc32_update(uint32_t crc, const uint8_t *p, size_t n);

static inline void sp_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint32_t sp_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void sp_put_le64(uint8_t *p, uint64_t v)
{
    sp_put_le32(p, (uint32_t)v);
    sp_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t sp_get_le64(const uint8_t *p)
{
    return (uint64_t)sp_get_le32(p) | (uint64_t)sp_get_le32(p + 4) << 32;
}

#endif
