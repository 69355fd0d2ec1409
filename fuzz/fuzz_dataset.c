/* fuzz_dataset: libFuzzer harness for sp_dataset_deserialize (common/dataset.c),
 * the binary dataset form the coordinator stores and workers cache. When
 * byte 0 is odd the harness rewrites the trailing CRC-32 so mutations get past
 * the checksum and reach the field checks; the rest is the buffer. Invariant
 * checked: no crash, leak or UB; an accepted buffer serializes back to the
 * very same bytes (the form is canonical), except a version-1 buffer whose
 * features are all bytes' values (as stored before version 2 existed): it
 * serializes as version 2, which reads back to the very same values. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/dataset.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* sp_dataset_deserialize_take on a copy of buf answers as the copying
 * decoder did (rc, and d when it accepted): a refused copy stays the
 * caller's and unchanged, an accepted one is taken. */
static void s_check_take(const uint8_t *buf, size_t len, int rc, const sp_dataset_t *d)
{
    uint8_t *copy = malloc(len ? len : 1), *given = copy;
    if (!copy) {
        abort();
    }
    memcpy(copy, buf, len);
    sp_dataset_t t;
    memset(&t, 0, sizeof t);
    char err[256];
    uint64_t key = 0;
    int rt = sp_dataset_deserialize_take(&copy, len, &t, &key, err, sizeof err);
    int ok = rt == rc;
    if (ok && rc != SP_OK) {
        ok = copy == given && memcmp(copy, buf, len) == 0 && !t.x && !t.xb && !t.y;
        free(copy);
    } else if (ok) {
        ok = copy == NULL && key == sp_dataset_key(buf, len) && sp_dataset_same(&t, d);
        sp_dataset_fini(&t);
    }
    if (!ok) {
        fprintf(stderr, "fuzz_dataset: the taking decoder disagrees with the copying one\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        return 0;
    }
    if (len) {
        memcpy(buf, data + 1, len);
    }
    if ((data[0] & 1) && len >= 4) {
        uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)(len - 4));
        for (int i = 0; i < 4; i++) {
            buf[len - 4 + i] = (uint8_t)(crc >> (8 * i));
        }
    }
    char err[256];
    memset(err, 'x', sizeof err);
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    int rc = sp_dataset_deserialize(buf, len, &d, err, sizeof err);
    s_check_take(buf, len, rc, &d);
    if (rc != SP_OK) {
        if (memchr(err, 0, sizeof err) == NULL || d.x || d.xb || d.y) {
            fprintf(stderr, "fuzz_dataset: refusal without message, or *out touched\n");
            abort();
        }
    } else {
        uint8_t *ser = NULL;
        size_t ser_len = 0;
        if (sp_dataset_serialize(&d, &ser, &ser_len) != SP_OK) {
            abort();
        }
        if (ser_len == len && memcmp(ser, buf, len) == 0) {
            if (sp_dataset_checksum(buf, len) != sp_dataset_checksum(ser, ser_len)) {
                abort();
            }
        } else {
            /* only a version-1 buffer of byte values may come out otherwise:
             * as version 2, with the same values */
            sp_dataset_t e;
            memset(&e, 0, sizeof e);
            char err2[256];
            if (buf[4] != SP_DATASET_VERSION_FLOATS || ser[4] != SP_DATASET_VERSION_BYTES ||
                sp_dataset_deserialize(ser, ser_len, &e, err2, sizeof err2) != SP_OK ||
                !sp_dataset_same(&e, &d)) {
                fprintf(stderr,
                        "fuzz_dataset: accepted buffer does not serialize back to itself\n");
                abort();
            }
            sp_dataset_fini(&e);
        }
        free(ser);
        sp_dataset_fini(&d);
    }
    free(buf);
    return 0;
}
