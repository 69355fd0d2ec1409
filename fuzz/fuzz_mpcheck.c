/* fuzz_mpcheck: libFuzzer harness for the MessagePack guard (common/mpcheck.c):
 * sp_mp_prescan, sp_mp_unpack and the typed getters. Byte 0 and 1 choose the
 * limits (or the defaults) and the error buffer size; the rest is the
 * document. Invariant checked: no crash, leak or UB; prescan and unpack agree
 * (a document the prescan accepts unpacks); every getter on every key of an
 * accepted map stays inside the buffers and writes a NUL-terminated message. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/mpcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte an unpacked object points at (ASan checks the reads). */
static uint64_t s_walk(const msgpack_object *o, unsigned depth)
{
    uint64_t h = (uint64_t)o->type;
    if (depth > 40) {
        return h;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        for (uint32_t i = 0; i < o->via.str.size; i++) {
            h = h * 31 + (uint8_t)o->via.str.ptr[i];
        }
        break;
    case MSGPACK_OBJECT_BIN:
        for (uint32_t i = 0; i < o->via.bin.size; i++) {
            h = h * 31 + (uint8_t)o->via.bin.ptr[i];
        }
        break;
    case MSGPACK_OBJECT_EXT:
        for (uint32_t i = 0; i < o->via.ext.size; i++) {
            h = h * 31 + (uint8_t)o->via.ext.ptr[i];
        }
        break;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            h += s_walk(&o->via.array.ptr[i], depth + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            h += s_walk(&o->via.map.ptr[i].key, depth + 1);
            h += s_walk(&o->via.map.ptr[i].val, depth + 1);
        }
        break;
    default:
        h += o->via.u64;
        break;
    }
    return h;
}

static void s_check_err(int rc, const char *err, size_t errlen, const char *what)
{
    if (rc != 0 && memchr(err, 0, errlen) == NULL) {
        fprintf(stderr, "fuzz_mpcheck: %s left an unterminated message\n", what);
        abort();
    }
}

/* Calls every typed getter on one key of map. */
static void s_getters(const msgpack_object *map, const char *key, char *err, size_t errlen)
{
    uint64_t u64;
    uint32_t u32;
    int64_t i64;
    double f64;
    float f32;
    bool b;
    char str[16];
    const uint8_t *bin;
    size_t bin_len;
    const msgpack_object_array *arr;
    const msgpack_object *sub;
    s_check_err(sp_mp_get_u64(map, key, 1, 1000, &u64, err, errlen), err, errlen, "get_u64");
    s_check_err(sp_mp_get_u32(map, key, 0, UINT32_MAX, &u32, err, errlen), err, errlen, "get_u32");
    s_check_err(sp_mp_get_i64(map, key, -5, 5, &i64, err, errlen), err, errlen, "get_i64");
    s_check_err(sp_mp_get_f64(map, key, -1e300, 1e300, &f64, err, errlen), err, errlen, "get_f64");
    s_check_err(sp_mp_get_f32(map, key, -1.0f, 1.0f, &f32, err, errlen), err, errlen, "get_f32");
    s_check_err(sp_mp_get_bool(map, key, &b, err, errlen), err, errlen, "get_bool");
    int rc = sp_mp_get_str(map, key, str, sizeof str, err, errlen);
    s_check_err(rc, err, errlen, "get_str");
    if (rc == 0 && memchr(str, 0, sizeof str) == NULL) {
        fprintf(stderr, "fuzz_mpcheck: get_str gave an unterminated string\n");
        abort();
    }
    rc = sp_mp_get_bin(map, key, 8, &bin, &bin_len, err, errlen);
    s_check_err(rc, err, errlen, "get_bin");
    if (rc == 0) {
        if (bin_len > 8) {
            fprintf(stderr, "fuzz_mpcheck: get_bin gave %zu bytes, limit 8\n", bin_len);
            abort();
        }
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < bin_len; i++) {
            sink ^= bin[i];
        }
        (void)sink;
    }
    rc = sp_mp_get_array(map, key, 3, &arr, err, errlen);
    s_check_err(rc, err, errlen, "get_array");
    if (rc == 0 && arr->size > 3) {
        fprintf(stderr, "fuzz_mpcheck: get_array gave %u items, limit 3\n", arr->size);
        abort();
    }
    s_check_err(sp_mp_get_map(map, key, 2, &sub, err, errlen), err, errlen, "get_map");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    uint8_t b0 = data[0], b1 = data[1];
    sp_mp_limits_t lim;
    const sp_mp_limits_t *limp = NULL; /* defaults */
    if (b0 & 0x80) {
        lim.max_depth = 1 + (b0 & 31);
        lim.max_bytes_per_item = (b1 & 0x0f) * 3u;
        lim.max_items = (b1 >> 4) & 7;
        lim.max_total_items = (b0 & 0x40) ? 1u + (b1 & 31u) : UINT64_MAX;
        limp = &lim;
    }
    size_t errlen = 1 + (size_t)(b1 % 97); /* tiny buffers check truncation */
    char *err = malloc(errlen);
    size_t len = size - 2;
    uint8_t *buf = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
    if (!err || !buf) {
        free(err);
        free(buf);
        return 0;
    }
    if (len) {
        memcpy(buf, data + 2, len);
    }
    int scan = sp_mp_prescan(buf, len, limp, err, errlen);
    s_check_err(scan, err, errlen, "prescan");
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = sp_mp_unpack(buf, len, limp, &up, err, errlen);
    s_check_err(rc, err, errlen, "unpack");
    if ((scan == 0) != (rc == 0) && rc != SP_E_NOMEM) {
        fprintf(stderr, "fuzz_mpcheck: prescan says %d but unpack says %d\n", scan, rc);
        abort();
    }
    if (rc == 0) {
        volatile uint64_t h = s_walk(&up.data, 0);
        (void)h;
        const msgpack_object *root = &up.data;
        if (root->type == MSGPACK_OBJECT_MAP) {
            uint32_t n = root->via.map.size < 8 ? root->via.map.size : 8;
            for (uint32_t i = 0; i < n; i++) {
                const msgpack_object *k = &root->via.map.ptr[i].key;
                if (k->type != MSGPACK_OBJECT_STR || k->via.str.size > 32) {
                    continue;
                }
                char key[33];
                if (k->via.str.size > 0) { /* msgpack-c gives NULL for an empty str */
                    memcpy(key, k->via.str.ptr, k->via.str.size);
                }
                key[k->via.str.size] = '\0';
                if (sp_mp_map_get(root, key) == NULL && strlen(key) == k->via.str.size) {
                    fprintf(stderr, "fuzz_mpcheck: map_get misses key \"%s\"\n", key);
                    abort();
                }
                s_getters(root, key, err, errlen);
            }
            s_getters(root, "absent-key", err, errlen);
        } else {
            s_getters(root, "k", err, errlen); /* not a map: every getter refuses */
        }
    }
    msgpack_unpacked_destroy(&up);
    free(buf);
    free(err);
    return 0;
}
