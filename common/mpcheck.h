/* mpcheck: the guard in front of msgpack-c. sp_mp_prescan walks untrusted
 * MessagePack bytes without allocating and accepts them only when they hold
 * exactly one complete object whose every declared length and count fits in
 * the bytes left and in the caller's limits, so msgpack-c, which trusts
 * declared lengths, can never be asked for more memory than the input
 * justifies. Typed getters read fields of a decoded map with messages that
 * name the key; a few packer helpers write the matching keys. */
#ifndef SP_MPCHECK_H
#define SP_MPCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/* msgpack-c's own unpacker refuses more than 32 nested containers
 * (MSGPACK_EMBED_STACK_SIZE); max_depth is capped to this. */
#define SP_MP_DEPTH_CAP 32

typedef struct {
    uint32_t max_depth;          /* nested arrays/maps, 1..SP_MP_DEPTH_CAP (root container = 1) */
    uint64_t max_bytes_per_item; /* longest str/bin/ext payload, bytes */
    uint64_t max_items;          /* largest array (elements) or map (pairs) */
    uint64_t max_total_items;    /* objects in the whole document, root and map keys included */
} sp_mp_limits_t;

/* Defaults: depth 32, 64 MiB per item, 16 Mi items per container, 64 Mi objects. */
void sp_mp_limits_default(sp_mp_limits_t *lim);

/* Checks that buf[0..len) is exactly one well-formed MessagePack object within
 * lim (NULL = defaults). Allocation-free, iterative, O(len). Returns 0, or
 * SP_E_INPUT with err naming the byte offset and the problem (truncation,
 * a length or count beyond the bytes left or a limit, nesting too deep, the
 * reserved byte 0xc1, trailing bytes). */
int sp_mp_prescan(const uint8_t *buf, size_t len, const sp_mp_limits_t *lim, char *err,
                  size_t errlen);

/* Prescan, then unpack with msgpack-c into *result (which the caller set up
 * with msgpack_unpacked_init and releases with msgpack_unpacked_destroy, on
 * error too), requiring that unpacking consumes exactly len bytes. Strings
 * and binaries in the result point into buf itself (msgpack-c does not copy
 * them): keep buf alive while using the result, copy out what must outlive it.
 * Returns 0, SP_E_INPUT with a message, or SP_E_NOMEM. */
int sp_mp_unpack(const uint8_t *buf, size_t len, const sp_mp_limits_t *lim,
                 msgpack_unpacked *result, char *err, size_t errlen);

/* Value of the string key `key` in map (borrowed), or NULL when map is not a
 * map or has no such key. The first matching key wins. */
const msgpack_object *sp_mp_map_get(const msgpack_object *map, const char *key);

/* Typed getters. Each looks up key in map and checks its type and range
 * [min, max]; on any failure (missing key, wrong type, out of range) it returns
 * SP_E_INPUT with err naming the key, the expected type and what was found,
 * and leaves *out unchanged. Floats accept float32, float64 and integer
 * values; NaN is always out of range. */
int sp_mp_get_u64(const msgpack_object *map, const char *key, uint64_t min, uint64_t max,
                  uint64_t *out, char *err, size_t errlen);
int sp_mp_get_u32(const msgpack_object *map, const char *key, uint32_t min, uint32_t max,
                  uint32_t *out, char *err, size_t errlen);
int sp_mp_get_i64(const msgpack_object *map, const char *key, int64_t min, int64_t max,
                  int64_t *out, char *err, size_t errlen);
int sp_mp_get_f64(const msgpack_object *map, const char *key, double min, double max, double *out,
                  char *err, size_t errlen);
int sp_mp_get_f32(const msgpack_object *map, const char *key, float min, float max, float *out,
                  char *err, size_t errlen);
int sp_mp_get_bool(const msgpack_object *map, const char *key, bool *out, char *err, size_t errlen);
/* Copies a str value into dst (dst_size bytes, NUL-terminated); refuses a value
 * that does not fit (length >= dst_size) or holds a NUL byte. */
int sp_mp_get_str(const msgpack_object *map, const char *key, char *dst, size_t dst_size, char *err,
                  size_t errlen);
/* Borrowed pointer to a bin value of at most max_len bytes (it points into
 * the unpacked input buffer: valid while that buffer and the result live). An empty bin gives *ptr = NULL or a valid pointer. */
int sp_mp_get_bin(const msgpack_object *map, const char *key, size_t max_len, const uint8_t **ptr,
                  size_t *len, char *err, size_t errlen);
/* Borrowed array / map value with at most max_items elements (pairs). */
int sp_mp_get_array(const msgpack_object *map, const char *key, uint32_t max_items,
                    const msgpack_object_array **out, char *err, size_t errlen);
int sp_mp_get_map(const msgpack_object *map, const char *key, uint32_t max_items,
                  const msgpack_object **out, char *err, size_t errlen);

/* Name of a msgpack object type for messages ("str", "positive integer", ...). */
const char *sp_mp_type_name(msgpack_object_type t);

/* Packer helpers: a C string as a MessagePack str, and a key followed by a
 * value. Return msgpack-c's result (0 on success). */
int sp_mp_pack_cstr(msgpack_packer *pk, const char *s);
int sp_mp_pack_str_kv(msgpack_packer *pk, const char *key, const char *value);
int sp_mp_pack_u64_kv(msgpack_packer *pk, const char *key, uint64_t value);
int sp_mp_pack_i64_kv(msgpack_packer *pk, const char *key, int64_t value);
int sp_mp_pack_f64_kv(msgpack_packer *pk, const char *key, double value);
int sp_mp_pack_bool_kv(msgpack_packer *pk, const char *key, bool value);
int sp_mp_pack_bin_kv(msgpack_packer *pk, const char *key, const void *data, size_t len);

#endif
