/* mpcheck: allocation-free pre-scan of untrusted MessagePack, strict unpack,
 * and typed getters. Invariant: sp_mp_unpack hands bytes to msgpack-c only
 * after the pre-scan proved that every declared length and count is backed by
 * bytes actually present and within the caller's limits. */
#include "common/mpcheck.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "common/error.h"

void sp_mp_limits_default(sp_mp_limits_t *lim)
{
    lim->max_depth = SP_MP_DEPTH_CAP;
    lim->max_bytes_per_item = (uint64_t)64 << 20;
    lim->max_items = (uint64_t)16 << 20;
    lim->max_total_items = (uint64_t)64 << 20;
}

static uint64_t s_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* What one header byte declares. */
typedef enum { S_SCALAR, S_BYTES, S_ARRAY, S_MAP, S_BAD } s_kind_t;

typedef struct {
    s_kind_t kind;
    unsigned hdr;      /* bytes of header after the type byte (length field, ext type) */
    unsigned len_size; /* bytes of the length/count field at the start of hdr (0 = inline) */
    uint64_t fixed;    /* scalar payload bytes, or inline length/count */
    const char *what;  /* for messages */
} s_fmt_t;

static s_fmt_t s_classify(uint8_t b)
{
    s_fmt_t f = {S_SCALAR, 0, 0, 0, "integer"};
    if (b <= 0x7f || b >= 0xe0) {
        return f; /* fixint */
    }
    if (b <= 0x8f) {
        return (s_fmt_t){S_MAP, 0, 0, b & 0x0fu, "map"};
    }
    if (b <= 0x9f) {
        return (s_fmt_t){S_ARRAY, 0, 0, b & 0x0fu, "array"};
    }
    if (b <= 0xbf) {
        return (s_fmt_t){S_BYTES, 0, 0, b & 0x1fu, "str"};
    }
    switch (b) {
    case 0xc0:
        return (s_fmt_t){S_SCALAR, 0, 0, 0, "nil"};
    case 0xc2:
    case 0xc3:
        return (s_fmt_t){S_SCALAR, 0, 0, 0, "bool"};
    case 0xc4:
        return (s_fmt_t){S_BYTES, 1, 1, 0, "bin8"};
    case 0xc5:
        return (s_fmt_t){S_BYTES, 2, 2, 0, "bin16"};
    case 0xc6:
        return (s_fmt_t){S_BYTES, 4, 4, 0, "bin32"};
    case 0xc7:
        return (s_fmt_t){S_BYTES, 2, 1, 0, "ext8"};
    case 0xc8:
        return (s_fmt_t){S_BYTES, 3, 2, 0, "ext16"};
    case 0xc9:
        return (s_fmt_t){S_BYTES, 5, 4, 0, "ext32"};
    case 0xca:
        return (s_fmt_t){S_SCALAR, 0, 0, 4, "float32"};
    case 0xcb:
        return (s_fmt_t){S_SCALAR, 0, 0, 8, "float64"};
    case 0xcc:
        return (s_fmt_t){S_SCALAR, 0, 0, 1, "uint8"};
    case 0xcd:
        return (s_fmt_t){S_SCALAR, 0, 0, 2, "uint16"};
    case 0xce:
        return (s_fmt_t){S_SCALAR, 0, 0, 4, "uint32"};
    case 0xcf:
        return (s_fmt_t){S_SCALAR, 0, 0, 8, "uint64"};
    case 0xd0:
        return (s_fmt_t){S_SCALAR, 0, 0, 1, "int8"};
    case 0xd1:
        return (s_fmt_t){S_SCALAR, 0, 0, 2, "int16"};
    case 0xd2:
        return (s_fmt_t){S_SCALAR, 0, 0, 4, "int32"};
    case 0xd3:
        return (s_fmt_t){S_SCALAR, 0, 0, 8, "int64"};
    case 0xd4:
        return (s_fmt_t){S_SCALAR, 0, 0, 2, "fixext1"};
    case 0xd5:
        return (s_fmt_t){S_SCALAR, 0, 0, 3, "fixext2"};
    case 0xd6:
        return (s_fmt_t){S_SCALAR, 0, 0, 5, "fixext4"};
    case 0xd7:
        return (s_fmt_t){S_SCALAR, 0, 0, 9, "fixext8"};
    case 0xd8:
        return (s_fmt_t){S_SCALAR, 0, 0, 17, "fixext16"};
    case 0xd9:
        return (s_fmt_t){S_BYTES, 1, 1, 0, "str8"};
    case 0xda:
        return (s_fmt_t){S_BYTES, 2, 2, 0, "str16"};
    case 0xdb:
        return (s_fmt_t){S_BYTES, 4, 4, 0, "str32"};
    case 0xdc:
        return (s_fmt_t){S_ARRAY, 2, 2, 0, "array16"};
    case 0xdd:
        return (s_fmt_t){S_ARRAY, 4, 4, 0, "array32"};
    case 0xde:
        return (s_fmt_t){S_MAP, 2, 2, 0, "map16"};
    case 0xdf:
        return (s_fmt_t){S_MAP, 4, 4, 0, "map32"};
    default:
        return (s_fmt_t){S_BAD, 0, 0, 0, "reserved byte 0xc1"};
    }
}

int sp_mp_prescan(const uint8_t *buf, size_t len, const sp_mp_limits_t *lim, char *err,
                  size_t errlen)
{
    sp_mp_limits_t dl;
    if (!lim) {
        sp_mp_limits_default(&dl);
        lim = &dl;
    }
    uint32_t max_depth = lim->max_depth < SP_MP_DEPTH_CAP ? lim->max_depth : SP_MP_DEPTH_CAP;
    /* pending[d] = objects still to read in the container open at depth d+1 */
    uint64_t pending[SP_MP_DEPTH_CAP];
    uint32_t depth = 0;
    uint64_t total = 0;
    size_t pos = 0;
    if (len == 0) {
        return sp_err_input(err, errlen, "msgpack: empty input, expected one object");
    }
    for (;;) {
        if (pos >= len) {
            return sp_err_input(err, errlen,
                                "msgpack: truncated at offset %zu: %" PRIu64
                                " more object(s) expected at depth %" PRIu32,
                                pos, depth ? pending[depth - 1] : 1, depth);
        }
        if (++total > lim->max_total_items) {
            return sp_err_input(err, errlen,
                                "msgpack: offset %zu: more than %" PRIu64 " objects in total", pos,
                                lim->max_total_items);
        }
        size_t at = pos;
        s_fmt_t f = s_classify(buf[pos++]);
        if (f.kind == S_BAD) {
            return sp_err_input(err, errlen, "msgpack: offset %zu: %s", at, f.what);
        }
        size_t left = len - pos;
        if (f.hdr > left) {
            return sp_err_input(err, errlen, "msgpack: offset %zu: %s header truncated", at,
                                f.what);
        }
        uint64_t n = f.len_size ? s_be(buf + pos, f.len_size) : f.fixed;
        pos += f.hdr;
        left -= f.hdr;
        switch (f.kind) {
        case S_SCALAR:
            if (n > left) {
                return sp_err_input(err, errlen, "msgpack: offset %zu: %s truncated", at, f.what);
            }
            pos += n;
            break;
        case S_BYTES:
            if (n > left) {
                return sp_err_input(err, errlen,
                                    "msgpack: offset %zu: %s declares %" PRIu64
                                    " bytes but only %zu remain",
                                    at, f.what, n, left);
            }
            if (n > lim->max_bytes_per_item) {
                return sp_err_input(err, errlen,
                                    "msgpack: offset %zu: %s of %" PRIu64
                                    " bytes exceeds the limit of %" PRIu64,
                                    at, f.what, n, lim->max_bytes_per_item);
            }
            pos += n;
            break;
        case S_ARRAY:
        case S_MAP: {
            uint64_t elems = f.kind == S_MAP ? 2 * n : n;
            if (elems > left) { /* each element needs at least one byte */
                return sp_err_input(err, errlen,
                                    "msgpack: offset %zu: %s declares %" PRIu64
                                    " %s but only %zu bytes remain",
                                    at, f.what, n, f.kind == S_MAP ? "pairs" : "elements", left);
            }
            if (n > lim->max_items) {
                return sp_err_input(err, errlen,
                                    "msgpack: offset %zu: %s of %" PRIu64
                                    " entries exceeds the limit of %" PRIu64,
                                    at, f.what, n, lim->max_items);
            }
            if (depth + 1 > max_depth) {
                return sp_err_input(err, errlen,
                                    "msgpack: offset %zu: nesting deeper than %" PRIu32, at,
                                    max_depth);
            }
            if (elems > 0) {
                pending[depth++] = elems;
                continue; /* next object is the container's first element */
            }
            break;
        }
        case S_BAD:
            break;
        }
        /* One object is complete: close every container it completes. */
        while (depth > 0 && --pending[depth - 1] == 0) {
            depth--;
        }
        if (depth == 0) {
            break;
        }
    }
    if (pos != len) {
        return sp_err_input(err, errlen,
                            "msgpack: %zu trailing byte(s) after the object, at offset %zu",
                            len - pos, pos);
    }
    return SP_OK;
}

int sp_mp_unpack(const uint8_t *buf, size_t len, const sp_mp_limits_t *lim,
                 msgpack_unpacked *result, char *err, size_t errlen)
{
    int rc = sp_mp_prescan(buf, len, lim, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(result, (const char *)buf, len, &off);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR) {
        return SP_E_NOMEM;
    }
    if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
        /* the pre-scan should make this unreachable; still input, never a crash */
        return sp_err_input(err, errlen, "msgpack: unpack failed (code %d) at offset %zu", (int)r,
                            off);
    }
    return SP_OK;
}

const char *sp_mp_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "positive integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative integer";
    case MSGPACK_OBJECT_FLOAT32:
        return "float32";
    case MSGPACK_OBJECT_FLOAT64:
        return "float64";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

const msgpack_object *sp_mp_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP || !key) {
        return NULL;
    }
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            (klen == 0 || memcmp(k->via.str.ptr, key, klen) == 0)) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

/* Looks key up; on failure fills err and returns NULL. */
static const msgpack_object *s_need(const msgpack_object *map, const char *key, const char *want,
                                    char *err, size_t errlen)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) {
        sp_err_input(err, errlen, "field '%s': expected %s inside a map, got %s", key, want,
                     map ? sp_mp_type_name(map->type) : "nothing");
        return NULL;
    }
    const msgpack_object *v = sp_mp_map_get(map, key);
    if (!v) {
        sp_err_input(err, errlen, "field '%s': missing (expected %s)", key, want);
    }
    return v;
}

static int s_wrong_type(const char *key, const char *want, const msgpack_object *v, char *err,
                        size_t errlen)
{
    return sp_err_input(err, errlen, "field '%s': expected %s, got %s", key, want,
                        sp_mp_type_name(v->type));
}

int sp_mp_get_u64(const msgpack_object *map, const char *key, uint64_t min, uint64_t max,
                  uint64_t *out, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "unsigned integer", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_wrong_type(key, "unsigned integer", v, err, errlen);
    }
    if (v->via.u64 < min || v->via.u64 > max) {
        return sp_err_input(err, errlen,
                            "field '%s': %" PRIu64 " out of range [%" PRIu64 ", %" PRIu64 "]", key,
                            v->via.u64, min, max);
    }
    *out = v->via.u64;
    return SP_OK;
}

int sp_mp_get_u32(const msgpack_object *map, const char *key, uint32_t min, uint32_t max,
                  uint32_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    int rc = sp_mp_get_u64(map, key, min, max, &v, err, errlen);
    if (rc == SP_OK) {
        *out = (uint32_t)v;
    }
    return rc;
}

int sp_mp_get_i64(const msgpack_object *map, const char *key, int64_t min, int64_t max,
                  int64_t *out, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "integer", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    int64_t x;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        x = v->via.i64;
    } else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX) {
            return sp_err_input(err, errlen, "field '%s': %" PRIu64 " does not fit in int64", key,
                                v->via.u64);
        }
        x = (int64_t)v->via.u64;
    } else {
        return s_wrong_type(key, "integer", v, err, errlen);
    }
    if (x < min || x > max) {
        return sp_err_input(err, errlen,
                            "field '%s': %" PRId64 " out of range [%" PRId64 ", %" PRId64 "]", key,
                            x, min, max);
    }
    *out = x;
    return SP_OK;
}

int sp_mp_get_f64(const msgpack_object *map, const char *key, double min, double max, double *out,
                  char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "number", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    double x = 0.0;
    switch (v->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        x = v->via.f64;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        x = (double)v->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        x = (double)v->via.i64;
        break;
    default:
        return s_wrong_type(key, "number", v, err, errlen);
    }
    if (!(x >= min && x <= max)) { /* also refuses NaN */
        return sp_err_input(err, errlen, "field '%s': %g out of range [%g, %g]", key, x, min, max);
    }
    *out = x;
    return SP_OK;
}

int sp_mp_get_f32(const msgpack_object *map, const char *key, float min, float max, float *out,
                  char *err, size_t errlen)
{
    double x = 0.0;
    int rc = sp_mp_get_f64(map, key, min, max, &x, err, errlen);
    if (rc == SP_OK) {
        *out = (float)x;
    }
    return rc;
}

int sp_mp_get_bool(const msgpack_object *map, const char *key, bool *out, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "bool", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_BOOLEAN) {
        return s_wrong_type(key, "bool", v, err, errlen);
    }
    *out = v->via.boolean;
    return SP_OK;
}

int sp_mp_get_str(const msgpack_object *map, const char *key, char *dst, size_t dst_size, char *err,
                  size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "str", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_STR) {
        return s_wrong_type(key, "str", v, err, errlen);
    }
    size_t n = v->via.str.size;
    if (n >= dst_size) {
        return sp_err_input(err, errlen, "field '%s': string of %zu bytes, at most %zu allowed",
                            key, n, dst_size ? dst_size - 1 : 0);
    }
    if (n > 0 && memchr(v->via.str.ptr, '\0', n)) {
        return sp_err_input(err, errlen, "field '%s': string contains a NUL byte", key);
    }
    if (n > 0) {
        memcpy(dst, v->via.str.ptr, n);
    }
    dst[n] = '\0';
    return SP_OK;
}

int sp_mp_get_bin(const msgpack_object *map, const char *key, size_t max_len, const uint8_t **ptr,
                  size_t *len, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "bin", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_BIN) {
        return s_wrong_type(key, "bin", v, err, errlen);
    }
    if (v->via.bin.size > max_len) {
        return sp_err_input(err, errlen, "field '%s': %" PRIu32 " bytes, at most %zu allowed", key,
                            v->via.bin.size, max_len);
    }
    *ptr = (const uint8_t *)v->via.bin.ptr;
    *len = v->via.bin.size;
    return SP_OK;
}

int sp_mp_get_array(const msgpack_object *map, const char *key, uint32_t max_items,
                    const msgpack_object_array **out, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "array", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_ARRAY) {
        return s_wrong_type(key, "array", v, err, errlen);
    }
    if (v->via.array.size > max_items) {
        return sp_err_input(err, errlen,
                            "field '%s': %" PRIu32 " elements, at most %" PRIu32 " allowed", key,
                            v->via.array.size, max_items);
    }
    *out = &v->via.array;
    return SP_OK;
}

int sp_mp_get_map(const msgpack_object *map, const char *key, uint32_t max_items,
                  const msgpack_object **out, char *err, size_t errlen)
{
    const msgpack_object *v = s_need(map, key, "map", err, errlen);
    if (!v) {
        return SP_E_INPUT;
    }
    if (v->type != MSGPACK_OBJECT_MAP) {
        return s_wrong_type(key, "map", v, err, errlen);
    }
    if (v->via.map.size > max_items) {
        return sp_err_input(err, errlen,
                            "field '%s': %" PRIu32 " pairs, at most %" PRIu32 " allowed", key,
                            v->via.map.size, max_items);
    }
    *out = v;
    return SP_OK;
}

int sp_mp_pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    int rc = msgpack_pack_str(pk, n);
    return rc ? rc : msgpack_pack_str_body(pk, s, n);
}

int sp_mp_pack_str_kv(msgpack_packer *pk, const char *key, const char *value)
{
    int rc = sp_mp_pack_cstr(pk, key);
    return rc ? rc : sp_mp_pack_cstr(pk, value);
}

int sp_mp_pack_u64_kv(msgpack_packer *pk, const char *key, uint64_t value)
{
    int rc = sp_mp_pack_cstr(pk, key);
    return rc ? rc : msgpack_pack_uint64(pk, value);
}

int sp_mp_pack_i64_kv(msgpack_packer *pk, const char *key, int64_t value)
{
    int rc = sp_mp_pack_cstr(pk, key);
    return rc ? rc : msgpack_pack_int64(pk, value);
}

int sp_mp_pack_f64_kv(msgpack_packer *pk, const char *key, double value)
{
    int rc = sp_mp_pack_cstr(pk, key);
    return rc ? rc : msgpack_pack_double(pk, value);
}

int sp_mp_pack_bool_kv(msgpack_packer *pk, const char *key, bool value)
{
    int rc = sp_mp_pack_cstr(pk, key);
    if (rc) {
        return rc;
    }
    return value ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

int sp_mp_pack_bin_kv(msgpack_packer *pk, const char *key, const void *data, size_t len)
{
    int rc = sp_mp_pack_cstr(pk, key);
    if (rc == 0) {
        rc = msgpack_pack_bin(pk, len);
    }
    if (rc == 0 && len > 0) {
        rc = msgpack_pack_bin_body(pk, data, len);
    }
    return rc;
}
