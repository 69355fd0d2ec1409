/* test_mpcheck: the MessagePack pre-scan accepts well-formed documents and
 * refuses truncation, absurd declared lengths, depth bombs and trailing bytes
 * before msgpack-c sees them; the typed getters name the key they reject. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/mpcheck.h"
#include "common/rng.h"

/* A document using every kind of object. */
static void s_pack_doc(msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint8_t blob[300];
    for (int i = 0; i < 300; i++) {
        blob[i] = (uint8_t)i;
    }
    msgpack_pack_map(&pk, 10);
    sp_mp_pack_str_kv(&pk, "name", "fashion");
    sp_mp_pack_u64_kv(&pk, "n", 60000);
    sp_mp_pack_i64_kv(&pk, "neg", -5);
    sp_mp_pack_f64_kv(&pk, "lr", 0.05);
    sp_mp_pack_bool_kv(&pk, "wait", true);
    sp_mp_pack_bin_kv(&pk, "blob", blob, sizeof blob);
    sp_mp_pack_cstr(&pk, "layers");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, 784);
    msgpack_pack_uint32(&pk, 128);
    msgpack_pack_uint32(&pk, 10);
    sp_mp_pack_cstr(&pk, "nested");
    msgpack_pack_map(&pk, 4);
    sp_mp_pack_cstr(&pk, "empties");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_map(&pk, 0);
    sp_mp_pack_cstr(&pk, "f32");
    msgpack_pack_float(&pk, 1.5f);
    sp_mp_pack_cstr(&pk, "nil");
    msgpack_pack_nil(&pk);
    sp_mp_pack_cstr(&pk, "ext");
    msgpack_pack_ext(&pk, 3, 7);
    msgpack_pack_ext_body(&pk, "abc", 3);
    sp_mp_pack_cstr(&pk, "big");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    sp_mp_pack_cstr(&pk, "count");
    msgpack_pack_int64(&pk, 12);
}

static void test_mpcheck_valid_nested_document_passes(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    char err[256] = "";
    assert_int_equal(sp_mp_prescan((const uint8_t *)sb.data, sb.size, NULL, err, sizeof err), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(sp_mp_unpack((const uint8_t *)sb.data, sb.size, NULL, &u, err, sizeof err), 0);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(u.data.via.map.size, 10);
    msgpack_unpacked_destroy(&u);
    /* scalars alone are documents too */
    const uint8_t one[] = {0x2a};
    assert_int_equal(sp_mp_prescan(one, 1, NULL, err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_mpcheck_truncated_at_every_offset_fails(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    for (size_t cut = 0; cut < sb.size; cut++) {
        char err[256] = "";
        int rc = sp_mp_prescan((const uint8_t *)sb.data, cut, NULL, err, sizeof err);
        assert_int_equal(rc, SP_E_INPUT);
        assert_true(strlen(err) > 0);
        if (cut > 0) {
            assert_non_null(strstr(err, "offset"));
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(sp_mp_unpack((const uint8_t *)sb.data, cut, NULL, &u, err, sizeof err),
                         SP_E_INPUT);
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_mpcheck_huge_declared_lengths_fail_without_allocating(void **state)
{
    (void)state;
    /* 5-byte headers declaring 4 GiB (or 4 Gi elements) with nothing behind them */
    const uint8_t heads[][6] = {
        {0xc6, 0xff, 0xff, 0xff, 0xff},       /* bin32 */
        {0xdd, 0xff, 0xff, 0xff, 0xff},       /* array32 */
        {0xdf, 0xff, 0xff, 0xff, 0xff},       /* map32 */
        {0xdb, 0xff, 0xff, 0xff, 0xff},       /* str32 */
        {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, /* ext32, 6 bytes */
    };
    const size_t lens[] = {5, 5, 5, 5, 6};
    for (size_t i = 0; i < 5; i++) {
        char err[256] = "";
        struct mallinfo2 before = mallinfo2();
        assert_int_equal(sp_mp_prescan(heads[i], lens[i], NULL, err, sizeof err), SP_E_INPUT);
        struct mallinfo2 after = mallinfo2();
        assert_int_equal(before.uordblks, after.uordblks); /* nothing allocated */
        assert_int_equal(before.hblkhd, after.hblkhd);
        assert_non_null(strstr(err, "4294967295"));
        assert_non_null(strstr(err, "offset 0"));
        /* sp_mp_unpack refuses before msgpack-c would try to allocate 4 GiB or 100+ GiB */
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(sp_mp_unpack(heads[i], lens[i], NULL, &u, err, sizeof err), SP_E_INPUT);
        msgpack_unpacked_destroy(&u);
    }
    /* a count that fits the bytes left but exceeds the caller's limits */
    sp_mp_limits_t lim;
    sp_mp_limits_default(&lim);
    lim.max_items = 2;
    const uint8_t arr3[] = {0x93, 1, 2, 3};
    char err[256];
    assert_int_equal(sp_mp_prescan(arr3, sizeof arr3, &lim, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "limit"));
    lim.max_items = 3;
    assert_int_equal(sp_mp_prescan(arr3, sizeof arr3, &lim, err, sizeof err), 0);
    lim.max_total_items = 3; /* root + 3 elements = 4 objects */
    assert_int_equal(sp_mp_prescan(arr3, sizeof arr3, &lim, err, sizeof err), SP_E_INPUT);
    sp_mp_limits_default(&lim);
    lim.max_bytes_per_item = 2;
    const uint8_t str3[] = {0xa3, 'a', 'b', 'c'};
    assert_int_equal(sp_mp_prescan(str3, sizeof str3, &lim, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "limit"));
    /* a map needs two objects per pair: 2 pairs cannot fit in 3 bytes */
    const uint8_t map2[] = {0x82, 1, 2, 3};
    assert_int_equal(sp_mp_prescan(map2, sizeof map2, NULL, err, sizeof err), SP_E_INPUT);
}

static void test_mpcheck_depth_bomb_fails(void **state)
{
    (void)state;
    uint8_t bomb[1001];
    memset(bomb, 0x91, 1000); /* 1000 nested one-element arrays */
    bomb[1000] = 0xc0;
    char err[256] = "";
    assert_int_equal(sp_mp_prescan(bomb, sizeof bomb, NULL, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "nesting"));
    /* exactly the cap passes and msgpack-c unpacks it; one more is refused */
    uint8_t ok[SP_MP_DEPTH_CAP + 1];
    memset(ok, 0x91, SP_MP_DEPTH_CAP);
    ok[SP_MP_DEPTH_CAP] = 0xc0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(sp_mp_unpack(ok, sizeof ok, NULL, &u, err, sizeof err), 0);
    msgpack_unpacked_destroy(&u);
    uint8_t deep[SP_MP_DEPTH_CAP + 2];
    memset(deep, 0x91, SP_MP_DEPTH_CAP);
    deep[SP_MP_DEPTH_CAP] = 0x90; /* an empty array still counts as a level */
    assert_int_equal(sp_mp_prescan(deep, SP_MP_DEPTH_CAP + 1, NULL, err, sizeof err), SP_E_INPUT);
    sp_mp_limits_t lim;
    sp_mp_limits_default(&lim);
    lim.max_depth = 2;
    const uint8_t d2[] = {0x91, 0x91, 0x01};
    const uint8_t d3[] = {0x91, 0x91, 0x91, 0x01};
    assert_int_equal(sp_mp_prescan(d2, sizeof d2, &lim, err, sizeof err), 0);
    assert_int_equal(sp_mp_prescan(d3, sizeof d3, &lim, err, sizeof err), SP_E_INPUT);
}

static void test_mpcheck_trailing_garbage_fails(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    msgpack_sbuffer_write(&sb, "\x00", 1);
    char err[256] = "";
    assert_int_equal(sp_mp_prescan((const uint8_t *)sb.data, sb.size, NULL, err, sizeof err),
                     SP_E_INPUT);
    assert_non_null(strstr(err, "trailing"));
    const uint8_t two[] = {0x01, 0x02};
    assert_int_equal(sp_mp_prescan(two, 2, NULL, err, sizeof err), SP_E_INPUT);
    const uint8_t reserved[] = {0x91, 0xc1};
    assert_int_equal(sp_mp_prescan(reserved, 2, NULL, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "offset 1"));
    assert_int_equal(sp_mp_prescan(two, 0, NULL, err, sizeof err), SP_E_INPUT);
    msgpack_sbuffer_destroy(&sb);
}

/* Random mutations: whatever the pre-scan accepts, msgpack-c unpacks exactly. */
static void test_mpcheck_mutations_never_slip_through(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    uint8_t *buf = malloc(sb.size);
    assert_non_null(buf);
    sp_rng_t r;
    sp_rng_init(&r, 77);
    int accepted = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(buf, sb.data, sb.size);
        int flips = 1 + (int)sp_rng_below(&r, 3);
        for (int k = 0; k < flips; k++) {
            buf[sp_rng_below(&r, sb.size)] = (uint8_t)sp_rng_next(&r);
        }
        size_t len = sb.size - (size_t)sp_rng_below(&r, 4);
        char err[256];
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        int rc = sp_mp_unpack(buf, len, NULL, &u, err, sizeof err);
        assert_true(rc == 0 || rc == SP_E_INPUT);
        accepted += rc == 0;
        msgpack_unpacked_destroy(&u);
    }
    assert_true(accepted > 0 && accepted < 3000);
    free(buf);
    msgpack_sbuffer_destroy(&sb);
}

static void test_mpcheck_getters_read_typed_fields(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[256] = "";
    assert_int_equal(sp_mp_unpack((const uint8_t *)sb.data, sb.size, NULL, &u, err, sizeof err), 0);
    const msgpack_object *m = &u.data;
    uint64_t u64 = 0;
    uint32_t u32 = 0;
    int64_t i64 = 0;
    double f64 = 0;
    float f32 = 0;
    bool b = false;
    char name[16];
    const uint8_t *bin = NULL;
    size_t bin_len = 0;
    assert_int_equal(sp_mp_get_u64(m, "n", 1, 100000, &u64, err, sizeof err), 0);
    assert_int_equal(u64, 60000);
    assert_int_equal(sp_mp_get_u32(m, "n", 0, UINT32_MAX, &u32, err, sizeof err), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(sp_mp_get_i64(m, "neg", -10, 10, &i64, err, sizeof err), 0);
    assert_int_equal(i64, -5);
    assert_int_equal(sp_mp_get_i64(m, "count", -10, 20, &i64, err, sizeof err), 0);
    assert_int_equal(i64, 12);
    assert_int_equal(sp_mp_get_f64(m, "lr", 0.0, 1.0, &f64, err, sizeof err), 0);
    assert_true(f64 == 0.05);
    const msgpack_object *nested = NULL;
    assert_int_equal(sp_mp_get_map(m, "nested", 16, &nested, err, sizeof err), 0);
    assert_int_equal(sp_mp_get_f32(nested, "f32", 0.0f, 2.0f, &f32, err, sizeof err), 0);
    assert_true(f32 == 1.5f);
    assert_int_equal(sp_mp_get_bool(m, "wait", &b, err, sizeof err), 0);
    assert_true(b);
    assert_int_equal(sp_mp_get_str(m, "name", name, sizeof name, err, sizeof err), 0);
    assert_string_equal(name, "fashion");
    assert_int_equal(sp_mp_get_bin(m, "blob", 1000, &bin, &bin_len, err, sizeof err), 0);
    assert_int_equal(bin_len, 300);
    assert_int_equal(bin[299], (uint8_t)299);
    const msgpack_object_array *layers = NULL;
    assert_int_equal(sp_mp_get_array(m, "layers", 8, &layers, err, sizeof err), 0);
    assert_int_equal(layers->size, 3);
    assert_int_equal(layers->ptr[1].via.u64, 128);
    assert_non_null(sp_mp_map_get(m, "big"));
    assert_null(sp_mp_map_get(m, "absent"));
    assert_null(sp_mp_map_get(&layers->ptr[0], "n")); /* not a map */
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* Expects SP_E_INPUT with the key and `word` in the message. */
static void s_expect_refusal(int rc, const char *err, const char *key, const char *word)
{
    assert_int_equal(rc, SP_E_INPUT);
    assert_non_null(strstr(err, key));
    if (word) {
        if (!strstr(err, word)) {
            print_error("message '%s' lacks '%s'\n", err, word);
            fail();
        }
    }
}

static void test_mpcheck_getters_reject_wrong_types_and_missing_keys(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_pack_doc(&sb);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char err[256];
    assert_int_equal(sp_mp_unpack((const uint8_t *)sb.data, sb.size, NULL, &u, err, sizeof err), 0);
    const msgpack_object *m = &u.data;
    uint64_t u64 = 7;
    uint32_t u32 = 7;
    int64_t i64 = 7;
    double f64 = 7;
    float f32 = 7;
    bool b = false;
    char small[4];
    const uint8_t *bin = NULL;
    size_t bin_len = 0;
    const msgpack_object_array *arr = NULL;
    const msgpack_object *mp = NULL;

    s_expect_refusal(sp_mp_get_u64(m, "epochs", 0, 9, &u64, err, sizeof err), err, "epochs",
                     "missing");
    s_expect_refusal(sp_mp_get_u64(m, "name", 0, 9, &u64, err, sizeof err), err, "name", "str");
    s_expect_refusal(sp_mp_get_u64(m, "neg", 0, 9, &u64, err, sizeof err), err, "neg",
                     "negative integer");
    s_expect_refusal(sp_mp_get_u64(m, "n", 0, 9, &u64, err, sizeof err), err, "n", "range");
    assert_int_equal(u64, 7); /* untouched on failure */
    s_expect_refusal(sp_mp_get_u32(m, "big", 0, UINT32_MAX, &u32, err, sizeof err), err, "big",
                     "range");
    s_expect_refusal(sp_mp_get_i64(m, "big", INT64_MIN, INT64_MAX, &i64, err, sizeof err), err,
                     "big", "int64");
    s_expect_refusal(sp_mp_get_i64(m, "lr", -9, 9, &i64, err, sizeof err), err, "lr", "float64");
    s_expect_refusal(sp_mp_get_f64(m, "wait", 0, 1, &f64, err, sizeof err), err, "wait", "bool");
    s_expect_refusal(sp_mp_get_f64(m, "lr", 0.1, 1, &f64, err, sizeof err), err, "lr", "range");
    s_expect_refusal(sp_mp_get_f32(m, "nope", 0, 1, &f32, err, sizeof err), err, "nope", "missing");
    s_expect_refusal(sp_mp_get_bool(m, "n", &b, err, sizeof err), err, "n", "bool");
    s_expect_refusal(sp_mp_get_str(m, "blob", small, sizeof small, err, sizeof err), err, "blob",
                     "bin");
    s_expect_refusal(sp_mp_get_str(m, "name", small, sizeof small, err, sizeof err), err, "name",
                     "at most 3");
    s_expect_refusal(sp_mp_get_bin(m, "name", 10, &bin, &bin_len, err, sizeof err), err, "name",
                     "expected bin");
    s_expect_refusal(sp_mp_get_bin(m, "blob", 10, &bin, &bin_len, err, sizeof err), err, "blob",
                     "at most 10");
    s_expect_refusal(sp_mp_get_array(m, "layers", 2, &arr, err, sizeof err), err, "layers",
                     "at most 2");
    s_expect_refusal(sp_mp_get_array(m, "nested", 2, &arr, err, sizeof err), err, "nested", "map");
    s_expect_refusal(sp_mp_get_map(m, "layers", 2, &mp, err, sizeof err), err, "layers", "array");
    /* a non-map container */
    const msgpack_object *layers = sp_mp_map_get(m, "layers");
    s_expect_refusal(sp_mp_get_u64(layers, "n", 0, 9, &u64, err, sizeof err), err, "n", "array");
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);

    /* NaN is out of every range; a NUL inside a string is refused */
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    sp_mp_pack_f64_kv(&pk, "x", NAN);
    sp_mp_pack_cstr(&pk, "s");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\0b", 3);
    msgpack_unpacked_init(&u);
    assert_int_equal(sp_mp_unpack((const uint8_t *)sb.data, sb.size, NULL, &u, err, sizeof err), 0);
    s_expect_refusal(sp_mp_get_f64(&u.data, "x", -INFINITY, INFINITY, &f64, err, sizeof err), err,
                     "x", "range");
    char big[16];
    s_expect_refusal(sp_mp_get_str(&u.data, "s", big, sizeof big, err, sizeof err), err, "s",
                     "NUL");
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpcheck_valid_nested_document_passes),
        cmocka_unit_test(test_mpcheck_truncated_at_every_offset_fails),
        cmocka_unit_test(test_mpcheck_huge_declared_lengths_fail_without_allocating),
        cmocka_unit_test(test_mpcheck_depth_bomb_fails),
        cmocka_unit_test(test_mpcheck_trailing_garbage_fails),
        cmocka_unit_test(test_mpcheck_mutations_never_slip_through),
        cmocka_unit_test(test_mpcheck_getters_read_typed_fields),
        cmocka_unit_test(test_mpcheck_getters_reject_wrong_types_and_missing_keys),
    };
    return cmocka_run_group_tests_name("mpcheck", tests, NULL, NULL);
}
