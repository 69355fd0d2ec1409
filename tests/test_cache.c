/* test_cache: a worker's dataset download (worker/cache.c), chunk by chunk:
 * a complete download is decoded and cached; bytes that do not match the
 * checksum the coordinator named, or that do not decode, are refused with
 * a message and nothing is cached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/error.h"
#include "worker/cache.h"

/* A small image set, serialized: *buf (caller frees), its length and key. */
static void s_serialized_set(sp_dataset_t *d, uint8_t **buf, size_t *len)
{
    static uint8_t px[4 * 6];
    static float y[4] = {0, 1, 2, 1};
    for (size_t i = 0; i < sizeof px; i++) {
        px[i] = (uint8_t)(i * 37);
    }
    *d = (sp_dataset_t){.task = SP_TASK_CLASSIFY,
                        .n_samples = 4,
                        .n_features = 6,
                        .n_classes = 3,
                        .n_targets = 3,
                        .xb = px,
                        .y = y};
    assert_int_equal(sp_dataset_serialize(d, buf, len), SP_OK);
}

/* Feeds buf to the cache in chunks of 16 bytes as (name, checksum); the
 * last chunk's answer. */
static int s_feed(sp_cache_t *c, const char *name, uint64_t checksum, const uint8_t *buf,
                  size_t len, char *err, size_t errlen)
{
    sp_cache_download_start(c, name, checksum);
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += 16) {
        sp_msg_data_chunk_t ch;
        memset(&ch, 0, sizeof ch);
        snprintf(ch.dataset, sizeof ch.dataset, "%s", name);
        ch.checksum = checksum;
        ch.offset = at;
        ch.total = len;
        ch.data.data = (uint8_t *)(uintptr_t)(buf + at);
        ch.data.len = len - at < 16 ? len - at : 16;
        rc = sp_cache_download_chunk(c, &ch, err, errlen);
        assert_true(rc == 0 || at + ch.data.len == len); /* only the last can end it */
    }
    return rc;
}

static void test_cache_download_cached_or_refused(void **state)
{
    (void)state;
    sp_dataset_t d;
    uint8_t *buf = NULL;
    size_t len = 0;
    s_serialized_set(&d, &buf, &len);
    uint64_t key = sp_dataset_key(buf, len);
    sp_cache_t c;
    sp_cache_init(&c);
    char err[256] = "";

    /* the checksum of other bytes: refused, nothing cached */
    assert_int_equal(s_feed(&c, "set", key ^ 1, buf, len, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "do not match checksum"));
    assert_null(sp_cache_dataset(&c, "set", key ^ 1));
    assert_false(c.dl.active);

    /* one byte changed: refused by the checksum, nothing cached */
    buf[40] ^= 4;
    err[0] = '\0';
    assert_int_equal(s_feed(&c, "set", key, buf, len, err, sizeof err), SP_E_INPUT);
    assert_true(err[0] != '\0');
    assert_null(sp_cache_dataset(&c, "set", key));
    buf[40] ^= 4;

    /* a changed byte under a matching key (the coordinator named these very
     * bytes) still has to decode: refused by the format's own check */
    buf[40] ^= 4;
    uint64_t bad_key = sp_dataset_key(buf, len);
    err[0] = '\0';
    assert_int_equal(s_feed(&c, "bad", bad_key, buf, len, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "CRC-32 mismatch"));
    assert_null(sp_cache_dataset(&c, "bad", bad_key));
    buf[40] ^= 4;

    /* the right bytes: cached, the same set */
    assert_int_equal(s_feed(&c, "set", key, buf, len, err, sizeof err), 1);
    const sp_dataset_t *got = sp_cache_dataset(&c, "set", key);
    assert_non_null(got);
    assert_true(sp_dataset_same(got, &d));
    assert_null(c.dl.buf);
    sp_cache_fini(&c);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_download_cached_or_refused),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
