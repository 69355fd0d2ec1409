/* ckpt: the file in which the coordinator keeps a running job's progress
 * and its model with training state (<job>/checkpoint.bin), so that a
 * restart resumes the job where it was. The encoding only: the coordinator
 * reads and writes the files (temporary file, sync, rename).
 *
 * Layout, little-endian:
 *   off  size  field
 *     0     4  magic "SPCK"
 *     4     4  format version (1)
 *     8     8  job id
 *    16     4  epoch (0-based, in progress)
 *    20     4  reserved (0)
 *    24     8  step within the epoch (next to run)
 *    32     8  global step (steps completed)
 *    40     8  model version (of the next step)
 *    48     8  samples seen
 *    56     8  metric records written
 *    64     8  training time so far, ms
 *    72     8  epoch loss sum (double)
 *    80     8  epoch correct
 *    88     8  epoch samples
 *    96     8  record loss sum (double)
 *   104     8  record correct
 *   112     8  record samples
 *   120     8  record steps
 *   128     8  model length n
 *   136     n  model file with training state (docs/MODEL_FORMAT.md)
 *  136+n    4  CRC-32 of bytes [0, 136+n) */
#ifndef SP_COMMON_CKPT_H
#define SP_COMMON_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define SP_CKPT_VERSION 1u
#define SP_CKPT_HEADER 136u /* bytes before the model */

/* A job's progress at a step boundary. */
typedef struct {
    uint64_t job;
    uint32_t epoch;
    uint64_t step_in_epoch, global_step, version, samples_seen, n_records, train_ms;
    double ep_loss;
    uint64_t ep_correct, ep_samples;
    double rec_loss;
    uint64_t rec_correct, rec_samples, rec_steps;
} sp_ckpt_t;

/* The file of ck and the model file model[model_len], into a malloc'ed
 * *buf of *len bytes. SP_E_NOMEM. */
int sp_ckpt_encode(const sp_ckpt_t *ck, const uint8_t *model, size_t model_len, uint8_t **buf,
                   size_t *len);
/* Reads the file buf[len] into *ck and points *model (*model_len bytes)
 * at the model inside buf, which the caller still owns. SP_E_INPUT when the
 * file is truncated, has the wrong magic, a model length that does not fit
 * it or a CRC-32 that does not match; SP_E_VERSION for another format
 * version; a message naming the fault goes to err. *ck is set only on
 * success. */
int sp_ckpt_decode(const uint8_t *buf, size_t len, sp_ckpt_t *ck, const uint8_t **model,
                   size_t *model_len, char *err, size_t errlen);

#endif
