/* fuzz_gunzip: libFuzzer harness for sp_gunzip_maybe (common/dataset.c), the
 * gzip front of every dataset and file reader. Byte 0 picks a small output
 * limit (0 B .. 64 KiB, so bombs are cut short); the rest is the input.
 * Invariant checked: no crash, leak or UB; a success never exceeds the limit
 * and returns a non-NULL buffer, and non-gzip input comes back unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    static const size_t s_limits[8] = {0, 1, 2, 16, 100, 1000, 4096, 65536};
    size_t max_bytes = s_limits[data[0] & 7];
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        return 0;
    }
    if (len) {
        memcpy(buf, data + 1, len);
    }
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[128];
    memset(err, 'x', sizeof err);
    int rc = sp_gunzip_maybe(buf, len, max_bytes, &out, &out_len, err, sizeof err);
    if (rc == SP_OK) {
        if (!out || out_len > max_bytes) {
            fprintf(stderr, "fuzz_gunzip: success with out %p, %zu bytes, limit %zu\n",
                    (void *)out, out_len, max_bytes);
            abort();
        }
        int is_gz = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
        if (!is_gz && (out_len != len || (len && memcmp(out, buf, len) != 0))) {
            fprintf(stderr, "fuzz_gunzip: plain input not copied unchanged\n");
            abort();
        }
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < out_len; i++) {
            sink ^= out[i];
        }
        (void)sink;
        free(out);
    } else if (memchr(err, 0, sizeof err) == NULL) {
        fprintf(stderr, "fuzz_gunzip: refusal without a terminated message\n");
        abort();
    }
    free(buf);
    return 0;
}
