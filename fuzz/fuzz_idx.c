/* fuzz_idx: libFuzzer harness for the IDX (MNIST) parser sp_dataset_parse_idx
 * (common/dataset.c), gzip or not. Bytes 0-1 (little-endian) give the length
 * of the images buffer; the bytes after it go to images and the rest to labels,
 * each in a buffer of its exact size. Invariant checked: no crash, leak or UB;
 * an accepted set has features in [0, 1] and labels in 0..n_classes-1 with
 * n_classes = max label + 1. */
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
    fprintf(stderr, "fuzz_idx: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    size_t want = (size_t)data[0] | (size_t)data[1] << 8;
    size_t rest = size - 2;
    size_t ni = want < rest ? want : rest;
    size_t nl = rest - ni;
    uint8_t *img = malloc(ni ? ni : 1);
    uint8_t *lab = malloc(nl ? nl : 1);
    if (!img || !lab) {
        free(img);
        free(lab);
        return 0;
    }
    if (ni) {
        memcpy(img, data + 2, ni);
    }
    if (nl) {
        memcpy(lab, data + 2 + ni, nl);
    }
    char err[256];
    memset(err, 'x', sizeof err);
    sp_dataset_t d;
    memset(&d, 0, sizeof d);
    int rc = sp_dataset_parse_idx(img, ni, lab, nl, &d, err, sizeof err);
    if (rc != SP_OK) {
        if (memchr(err, 0, sizeof err) == NULL) {
            s_fail("refusal without a terminated message");
        }
        if (d.x || d.xb || d.y) {
            s_fail("refusal touched *out");
        }
    } else {
        if (d.n_samples == 0 || d.n_features == 0 || d.x || !d.xb || !d.y ||
            d.task != SP_TASK_CLASSIFY || d.n_targets != d.n_classes) {
            s_fail("accepted set has bad shape");
        }
        float *row = malloc(d.n_features * sizeof *row);
        if (!row) {
            abort();
        }
        for (uint32_t s = 0; s < d.n_samples; s++) {
            sp_dataset_rows(&d, s, 1, row);
            for (uint32_t i = 0; i < d.n_features; i++) {
                if (!(row[i] >= 0.0f && row[i] <= 1.0f)) {
                    s_fail("feature outside [0, 1]");
                }
            }
        }
        free(row);
        float max = -1;
        for (uint32_t i = 0; i < d.n_samples; i++) {
            float y = d.y[i];
            if (!(y >= 0) || y != floorf(y) || y >= (float)d.n_classes) {
                s_fail("label outside 0..n_classes-1");
            }
            max = y > max ? y : max;
        }
        if ((float)d.n_classes != max + 1) {
            s_fail("n_classes is not max label + 1");
        }
        sp_dataset_fini(&d);
    }
    free(img);
    free(lab);
    return 0;
}
