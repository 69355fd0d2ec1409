/* bytes: the CRC-32 of buffers larger than one zlib call takes. */
#include "common/bytes.h"

#include <zlib.h>

uint32_t sp_crc32(const uint8_t *p, size_t n)
{
    return sp_crc32_update((uint32_t)crc32(0L, Z_NULL, 0), p, n);
}

uint32_t sp_crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n > 0) {
        uInt chunk = n < (1u << 30) ? (uInt)n : (1u << 30);
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}
