/* fuzz_model: libFuzzer harness for the model-file loader sp_network_load_buffer
 * (common/model.c): files fetched from the coordinator, MODEL messages, and
 * checkpoints. The whole input is the file. Invariant checked: no crash,
 * leak, UB or runaway allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb);
 * a model that loads runs a forward pass, saves, and loads again. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/network.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* One thread: the machine is shared, and the fuzzer wants determinism. */
    setenv("OMP_NUM_THREADS", "1", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1); /* exact size: ASan sees over-reads */
    if (!buf) {
        return 0;
    }
    if (size) {
        memcpy(buf, data, size);
    }
    char err[256];
    memset(err, 'x', sizeof err);
    sp_network_t *n = (sp_network_t *)1; /* the loader must overwrite it */
    int rc = sp_network_load_buffer(buf, size, &n, err, sizeof err);
    if (rc != SP_OK) {
        if (n != NULL || memchr(err, 0, sizeof err) == NULL) {
            fprintf(stderr, "fuzz_model: refusal left *out set or no message\n");
            abort();
        }
        free(buf);
        return 0;
    }
    if (!n) {
        fprintf(stderr, "fuzz_model: success without a network\n");
        abort();
    }
    size_t ni = sp_network_n_inputs(n), no = sp_network_n_outputs(n);
    float *x = calloc(ni ? ni : 1, sizeof(float));
    float *y = calloc(no ? no : 1, sizeof(float));
    if (x && y) {
        for (size_t i = 0; i < ni; i++) {
            x[i] = (float)((i * 37 + size) % 11) / 10.0f - 0.5f;
        }
        if (sp_network_forward(n, x, 1, y) != SP_OK) {
            fprintf(stderr, "fuzz_model: loaded network refuses a forward pass\n");
            abort();
        }
    }
    free(x);
    free(y);
    uint8_t *out = NULL;
    size_t out_len = 0;
    int training = sp_network_has_training_state(n);
    if (sp_network_save_buffer(n, training, &out, &out_len) != SP_OK) {
        fprintf(stderr, "fuzz_model: loaded network does not save\n");
        abort();
    }
    sp_network_t *n2 = NULL;
    char err2[256];
    if (sp_network_load_buffer(out, out_len, &n2, err2, sizeof err2) != SP_OK) {
        fprintf(stderr, "fuzz_model: saved copy does not load: %s\n", err2);
        abort();
    }
    sp_network_destroy(&n2);
    free(out);
    sp_network_destroy(&n);
    free(buf);
    return 0;
}
