/* fuzz_csv: libFuzzer harness for the CSV dataset parser sp_dataset_parse_csv
 * (common/dataset.c). Byte 0 chooses the options (label column, task, header
 * mode); the rest is the text, in a buffer of its exact size with no NUL.
 * Invariant checked: no crash, leak or UB; an accepted dataset is non-empty,
 * finite, has labels valid for its task, and survives serialize/deserialize
 * unchanged; a refused one comes with a NUL-terminated message. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_csv: %s\n", what);
    abort();
}

/* The invariants every accepted CSV dataset keeps. */
static void s_check_dataset(const sp_dataset_t *d)
{
    if (d->n_samples == 0 || d->n_features == 0 || !d->x || !d->y) {
        s_fail("empty dataset accepted");
    }
    size_t nx = (size_t)d->n_samples * d->n_features;
    for (size_t i = 0; i < nx; i++) {
        if (!isfinite(d->x[i])) {
            s_fail("non-finite feature accepted");
        }
    }
    for (uint32_t i = 0; i < d->n_samples; i++) {
        float y = d->y[i];
        if (!isfinite(y)) {
            s_fail("non-finite label accepted");
        }
        if (d->task == SP_TASK_CLASSIFY &&
            (y < 0 || y != floorf(y) || y >= (float)d->n_classes)) {
            s_fail("class label outside 0..n_classes-1");
        }
    }
    if (d->task == SP_TASK_CLASSIFY ? d->n_targets != d->n_classes || d->n_classes == 0
                                    : d->n_targets != 1 || d->n_classes != 0) {
        s_fail("n_targets / n_classes inconsistent with the task");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t b0 = data[0];
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    static const int s_cols[8] = {-1, 0, 1, 2, 3, 7, 100, 65535};
    o.label_column = s_cols[b0 & 7];
    o.task = (b0 & 8) ? SP_TASK_REGRESS : SP_TASK_CLASSIFY;
    o.has_header = (int)((b0 >> 4) % 3) - 1; /* -1 detect, 0 no, 1 yes */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) {
        return 0;
    }
    if (len) {
        memcpy(text, data + 1, len);
    }
    char err[256];
    memset(err, 'x', sizeof err);
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    int rc = sp_dataset_parse_csv(text, len, &o, &d, err, sizeof err);
    if (rc != SP_OK) {
        if (memchr(err, 0, sizeof err) == NULL) {
            s_fail("refusal without a terminated message");
        }
        if (d.x || d.xb || d.y) {
            s_fail("refusal touched *out");
        }
    } else {
        s_check_dataset(&d);
        uint8_t *ser = NULL;
        size_t ser_len = 0;
        if (sp_dataset_serialize(&d, &ser, &ser_len) != SP_OK) {
            s_fail("accepted dataset does not serialize");
        }
        sp_dataset_t d2;
        char err2[256];
        if (sp_dataset_deserialize(ser, ser_len, &d2, err2, sizeof err2) != SP_OK) {
            fprintf(stderr, "fuzz_csv: %s\n", err2);
            s_fail("serialized dataset does not deserialize");
        }
        if (!sp_dataset_same(&d2, &d)) {
            s_fail("serialize round trip differs");
        }
        /* The training accessors on the first and last rows. */
        uint32_t idx[2] = {0, d.n_samples - 1};
        float *X = malloc(2 * (size_t)d.n_features * sizeof(float));
        float *T = malloc(2 * (size_t)d.n_targets * sizeof(float));
        if (X && T) {
            sp_dataset_gather(&d, idx, 2, X);
            sp_dataset_targets(&d, idx, 2, T);
        }
        free(X);
        free(T);
        sp_dataset_fini(&d2);
        free(ser);
        sp_dataset_fini(&d);
    }
    free(text);
    return 0;
}
