/* test_ckpt: the coordinator's checkpoint file. A checkpoint read back
 * gives every field and the model's bytes exactly; a file that is cut short,
 * longer than it says, of another version, or changed in any byte is
 * refused with a message saying which, so a restarted coordinator starts
 * the job over instead of resuming from a wrong state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ckpt.h"
#include "common/error.h"

#define S_MODEL_LEN 301

static sp_ckpt_t s_example(void)
{
    return (sp_ckpt_t){.job = 7,
                       .epoch = 3,
                       .step_in_epoch = 11,
                       .global_step = 1234567890123ull,
                       .version = (5ull << 40) + 99,
                       .samples_seen = 42000,
                       .n_records = 17,
                       .train_ms = 98765,
                       .ep_loss = 0.3125,
                       .ep_correct = 400,
                       .ep_samples = 512,
                       .rec_loss = -1.5e-300,
                       .rec_correct = 3,
                       .rec_samples = 64,
                       .rec_steps = 1};
}

static void s_encode(uint8_t **buf, size_t *len, uint8_t *model)
{
    for (int i = 0; i < S_MODEL_LEN; i++) {
        model[i] = (uint8_t)(i * 37 + 5);
    }
    sp_ckpt_t ck = s_example();
    assert_int_equal(sp_ckpt_encode(&ck, model, S_MODEL_LEN, buf, len), SP_OK);
    assert_int_equal(*len, SP_CKPT_HEADER + S_MODEL_LEN + 4);
}

static void test_ckpt_round_trip(void **state)
{
    (void)state;
    uint8_t model[S_MODEL_LEN], *buf = NULL;
    size_t len = 0;
    s_encode(&buf, &len, model);
    sp_ckpt_t got, want = s_example();
    const uint8_t *m = NULL;
    size_t m_len = 0;
    char err[256] = "";
    assert_int_equal(sp_ckpt_decode(buf, len, &got, &m, &m_len, err, sizeof err), SP_OK);
    assert_int_equal(got.job, want.job);
    assert_int_equal(got.epoch, want.epoch);
    assert_int_equal(got.step_in_epoch, want.step_in_epoch);
    assert_int_equal(got.global_step, want.global_step);
    assert_int_equal(got.version, want.version);
    assert_int_equal(got.samples_seen, want.samples_seen);
    assert_int_equal(got.n_records, want.n_records);
    assert_int_equal(got.train_ms, want.train_ms);
    assert_memory_equal(&got.ep_loss, &want.ep_loss, sizeof want.ep_loss);
    assert_int_equal(got.ep_correct, want.ep_correct);
    assert_int_equal(got.ep_samples, want.ep_samples);
    assert_memory_equal(&got.rec_loss, &want.rec_loss, sizeof want.rec_loss);
    assert_int_equal(got.rec_correct, want.rec_correct);
    assert_int_equal(got.rec_samples, want.rec_samples);
    assert_int_equal(got.rec_steps, want.rec_steps);
    assert_ptr_equal(m, buf + SP_CKPT_HEADER);
    assert_int_equal(m_len, S_MODEL_LEN);
    assert_memory_equal(m, model, S_MODEL_LEN);
    /* the layout's fixed places: magic, version, the model length */
    assert_memory_equal(buf, "SPCK", 4);
    assert_int_equal(buf[4], SP_CKPT_VERSION);
    assert_int_equal(buf[128], S_MODEL_LEN & 0xff);
    assert_int_equal(buf[129], S_MODEL_LEN >> 8);
    free(buf);
}

/* Refuses buf[len] with code rc and a message containing `says`; *ck is
 * left as it was. */
static void s_refused(const uint8_t *buf, size_t len, int rc, const char *says)
{
    sp_ckpt_t ck;
    memset(&ck, 0xab, sizeof ck);
    sp_ckpt_t before = ck;
    const uint8_t *m = NULL;
    size_t m_len = 0;
    char err[256] = "";
    assert_int_equal(sp_ckpt_decode(buf, len, &ck, &m, &m_len, err, sizeof err), rc);
    assert_non_null(strstr(err, says));
    assert_memory_equal(&ck, &before, sizeof ck);
}

static void test_ckpt_cut_or_grown_refused(void **state)
{
    (void)state;
    uint8_t model[S_MODEL_LEN], *buf = NULL;
    size_t len = 0;
    s_encode(&buf, &len, model);
    for (size_t n = 0; n < SP_CKPT_HEADER + 4; n++) {
        s_refused(buf, n, SP_E_INPUT, "truncated");
    }
    for (size_t n = SP_CKPT_HEADER + 4; n < len; n++) {
        s_refused(buf, n, SP_E_INPUT, "does not fit");
    }
    uint8_t *longer = calloc(1, len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    s_refused(longer, len + 1, SP_E_INPUT, "does not fit");
    free(longer);
    free(buf);
}

/* Every byte changed: the magic, the version (its own error), the model
 * length, or else the CRC catches it, the CRC's own bytes included. */
static void test_ckpt_any_changed_byte_refused(void **state)
{
    (void)state;
    uint8_t model[S_MODEL_LEN], *buf = NULL;
    size_t len = 0;
    s_encode(&buf, &len, model);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x10;
        if (i < 4) {
            s_refused(buf, len, SP_E_INPUT, "bad magic");
        } else if (i < 8) {
            s_refused(buf, len, SP_E_VERSION, "format version");
        } else if (i >= 128 && i < 136) {
            s_refused(buf, len, SP_E_INPUT, "model length");
        } else {
            s_refused(buf, len, SP_E_INPUT, "CRC-32");
        }
        buf[i] ^= 0x10;
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ckpt_round_trip),
        cmocka_unit_test(test_ckpt_cut_or_grown_refused),
        cmocka_unit_test(test_ckpt_any_changed_byte_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
