/* ckpt: encoding of the coordinator's checkpoint file. */
#include "common/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/error.h"

#define S_MAGIC "SPCK"
_Static_assert(SP_CKPT_HEADER == 17 * 8, "checkpoint header is 17 words");

static uint64_t s_dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double s_bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int sp_ckpt_encode(const sp_ckpt_t *ck, const uint8_t *model, size_t model_len, uint8_t **buf,
                   size_t *len)
{
    size_t total = SP_CKPT_HEADER + model_len + 4;
    uint8_t *b = calloc(1, total);
    if (b == NULL) {
        return SP_E_NOMEM;
    }
    memcpy(b, S_MAGIC, 4);
    sp_put_le32(b + 4, SP_CKPT_VERSION);
    sp_put_le64(b + 8, ck->job);
    sp_put_le64(b + 16, ck->epoch); /* the high half is the reserved word: 0 */
    sp_put_le64(b + 24, ck->step_in_epoch);
    sp_put_le64(b + 32, ck->global_step);
    sp_put_le64(b + 40, ck->version);
    sp_put_le64(b + 48, ck->samples_seen);
    sp_put_le64(b + 56, ck->n_records);
    sp_put_le64(b + 64, ck->train_ms);
    sp_put_le64(b + 72, s_dbits(ck->ep_loss));
    sp_put_le64(b + 80, ck->ep_correct);
    sp_put_le64(b + 88, ck->ep_samples);
    sp_put_le64(b + 96, s_dbits(ck->rec_loss));
    sp_put_le64(b + 104, ck->rec_correct);
    sp_put_le64(b + 112, ck->rec_samples);
    sp_put_le64(b + 120, ck->rec_steps);
    sp_put_le64(b + 128, model_len);
    memcpy(b + SP_CKPT_HEADER, model, model_len);
    uint32_t crc = sp_crc32(b, SP_CKPT_HEADER + model_len);
    for (int i = 0; i < 4; i++) {
        b[SP_CKPT_HEADER + model_len + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
    *buf = b;
    *len = total;
    return SP_OK;
}

int sp_ckpt_decode(const uint8_t *buf, size_t len, sp_ckpt_t *ck, const uint8_t **model,
                   size_t *model_len, char *err, size_t errlen)
{
    if (len < SP_CKPT_HEADER + 4 || memcmp(buf, S_MAGIC, 4) != 0) {
        snprintf(err, errlen, "checkpoint: bad magic or truncated (%zu bytes)", len);
        return SP_E_INPUT;
    }
    uint32_t ver = sp_get_le32(buf + 4);
    if (ver != SP_CKPT_VERSION) {
        snprintf(err, errlen, "checkpoint: format version %u, this build reads %u", ver,
                 SP_CKPT_VERSION);
        return SP_E_VERSION;
    }
    uint64_t n = sp_get_le64(buf + 128);
    if (n != len - SP_CKPT_HEADER - 4) {
        snprintf(err, errlen, "checkpoint: model length %llu does not fit the file of %zu bytes",
                 (unsigned long long)n, len);
        return SP_E_INPUT;
    }
    if (sp_crc32(buf, len - 4) != sp_get_le32(buf + len - 4)) {
        snprintf(err, errlen, "checkpoint: CRC-32 mismatch");
        return SP_E_INPUT;
    }
    ck->job = sp_get_le64(buf + 8);
    ck->epoch = (uint32_t)sp_get_le64(buf + 16);
    ck->step_in_epoch = sp_get_le64(buf + 24);
    ck->global_step = sp_get_le64(buf + 32);
    ck->version = sp_get_le64(buf + 40);
    ck->samples_seen = sp_get_le64(buf + 48);
    ck->n_records = sp_get_le64(buf + 56);
    ck->train_ms = sp_get_le64(buf + 64);
    ck->ep_loss = s_bitsd(sp_get_le64(buf + 72));
    ck->ep_correct = sp_get_le64(buf + 80);
    ck->ep_samples = sp_get_le64(buf + 88);
    ck->rec_loss = s_bitsd(sp_get_le64(buf + 96));
    ck->rec_correct = sp_get_le64(buf + 104);
    ck->rec_samples = sp_get_le64(buf + 112);
    ck->rec_steps = sp_get_le64(buf + 120);
    *model = buf + SP_CKPT_HEADER;
    *model_len = (size_t)n;
    return SP_OK;
}
