/* fuzz_model: libFuzzer harness for the model-file readers of common/model.c:
 * sp_network_load_buffer (files fetched from the coordinator, MODEL messages,
 * checkpoints) and sp_network_update_from_buffer (a worker refreshing its
 * cached network in place). The whole input is the file. Invariants: no crash,
 * leak, UB or runaway allocation; a model that loads runs a forward pass,
 * saves and loads again; an update that is refused leaves the network as it
 * was, one that is accepted gives what a full load of the same bytes gives. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/network.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The networks the update is tried on: the seeds of fuzz/corpus/model (as
 * fuzz/make_seeds.c builds them: [4, 3, 2] after one training step, at 1, 2
 * and 4 bits, saved without and with training state), so mutated seeds often
 * keep their topology and reach the copying path. Harness state, built once:
 * each base's network w is loaded once and reused while updates are refused
 * (each input checks it still saves to the seed's bytes and computes the
 * seed's output, so inputs stay independent); an accepted update reloads it.
 * Loading six networks per input made the harness 60x slower. */
#define S_BASES 6
#define S_BASE_IN 4
#define S_BASE_OUT 2

typedef struct {
    uint8_t *buf; /* the saved seed: what a refused update must leave */
    size_t len;
    int training;
    float y[S_BASE_OUT]; /* forward output of the loaded seed on s_x */
    sp_network_t *w;     /* the network updates are tried on */
} s_base_t;

static s_base_t s_bases[S_BASES];
static const float s_x[S_BASE_IN] = {0.3f, -0.7f, 0.05f, 0.9f};

static void s_die(const char *what)
{
    fprintf(stderr, "fuzz_model: %s\n", what);
    abort();
}

static void s_make_bases(void)
{
    static const uint32_t sizes[3] = {S_BASE_IN, 3, S_BASE_OUT};
    static const uint8_t bits[3] = {1, 2, 4};
    for (int b = 0; b < 3; b++) {
        sp_net_config_t cfg;
        sp_net_config_default(&cfg);
        cfg.bits = bits[b];
        cfg.seed = 11 + (uint64_t)b;
        sp_network_t *n = sp_network_new(sizes, 3, &cfg);
        float X[8] = {0.1f, 0.9f, -0.3f, 0.5f, 1.0f, 0.0f, 0.25f, -0.75f};
        float T[4] = {1, 0, 0, 1};
        float loss;
        if (!n || sp_network_train_batch(n, X, T, 2, &loss) != SP_OK) {
            s_die("cannot build a base network");
        }
        for (int training = 0; training <= 1; training++) {
            s_base_t *s = &s_bases[2 * b + training];
            s->training = training;
            if (sp_network_save_buffer(n, training, &s->buf, &s->len) != SP_OK) {
                s_die("cannot save a base network");
            }
            /* The output of the loaded file, which is what the update starts
             * from (sp_network_forward leaves the network's state alone). */
            char err[256];
            if (sp_network_load_buffer(s->buf, s->len, &s->w, err, sizeof err) != SP_OK ||
                sp_network_forward(s->w, s_x, 1, s->y) != SP_OK) {
                s_die("a base network does not load or run");
            }
        }
        sp_network_destroy(&n);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* One thread: the machine is shared, and the fuzzer wants determinism. */
    setenv("OMP_NUM_THREADS", "1", 1);
    s_make_bases();
    return 0;
}

/* The bytes n saves to (with its training state if it has one); caller frees. */
static uint8_t *s_save(const sp_network_t *n, size_t *len)
{
    uint8_t *out = NULL;
    if (sp_network_save_buffer(n, sp_network_has_training_state(n), &out, len) != SP_OK) {
        s_die("a network does not save");
    }
    return out;
}

/* Updates base s's network from buf; loads is the loader's verdict on the
 * same bytes. */
static void s_check_update(s_base_t *s, const uint8_t *buf, size_t size, int loads)
{
    sp_network_t *w = s->w;
    char err[256];
    memset(err, 'x', sizeof err);
    int rc = sp_network_update_from_buffer(w, buf, size, err, sizeof err);
    size_t len = 0;
    uint8_t *now = s_save(w, &len);
    float y[S_BASE_OUT];
    if (sp_network_forward(w, s_x, 1, y) != SP_OK) {
        s_die("an updated or refused network refuses a forward pass");
    }
    if (rc != SP_OK) {
        if (rc != SP_E_STATE && rc != SP_E_INPUT && rc != SP_E_VERSION && rc != SP_E_NOMEM) {
            s_die("update refused with an unexpected code");
        }
        if (rc != SP_E_NOMEM && (memchr(err, 0, sizeof err) == NULL || err[0] == 0)) {
            s_die("update refused without a message");
        }
        if (len != s->len || memcmp(now, s->buf, len) != 0) {
            s_die("a refused update changed the saved network");
        }
        if (memcmp(y, s->y, sizeof y) != 0) {
            s_die("a refused update changed the network's output");
        }
        if (loads && rc != SP_E_STATE && rc != SP_E_NOMEM) {
            fprintf(stderr, "fuzz_model: update refused a file the loader accepts: %s\n", err);
            abort();
        }
    } else {
        sp_network_t *full = NULL;
        if (!loads || sp_network_load_buffer(buf, size, &full, err, sizeof err) != SP_OK) {
            s_die("update accepted a file the loader refuses");
        }
        size_t flen = 0;
        uint8_t *fbytes = s_save(full, &flen);
        if (flen != len || memcmp(fbytes, now, len) != 0) {
            s_die("an accepted update saves differently from a full load");
        }
        float fy[S_BASE_OUT];
        if (sp_network_n_inputs(full) != S_BASE_IN || sp_network_n_outputs(full) != S_BASE_OUT ||
            sp_network_forward(full, s_x, 1, fy) != SP_OK || memcmp(fy, y, sizeof y) != 0) {
            s_die("an accepted update computes differently from a full load");
        }
        free(fbytes);
        sp_network_destroy(&full);
        /* Back to the seed for the next input. */
        sp_network_destroy(&s->w);
        if (sp_network_load_buffer(s->buf, s->len, &s->w, err, sizeof err) != SP_OK) {
            s_die("a base network no longer loads");
        }
    }
    free(now);
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
            s_die("refusal left *out set or no message");
        }
    } else if (!n) {
        s_die("success without a network");
    } else {
        size_t ni = sp_network_n_inputs(n), no = sp_network_n_outputs(n);
        float *x = calloc(ni ? ni : 1, sizeof(float));
        float *y = calloc(no ? no : 1, sizeof(float));
        if (x && y) {
            for (size_t i = 0; i < ni; i++) {
                x[i] = (float)((i * 37 + size) % 11) / 10.0f - 0.5f;
            }
            if (sp_network_forward(n, x, 1, y) != SP_OK) {
                s_die("loaded network refuses a forward pass");
            }
        }
        free(x);
        free(y);
        size_t out_len = 0;
        uint8_t *out = s_save(n, &out_len);
        sp_network_t *n2 = NULL;
        char err2[256];
        if (sp_network_load_buffer(out, out_len, &n2, err2, sizeof err2) != SP_OK) {
            fprintf(stderr, "fuzz_model: saved copy does not load: %s\n", err2);
            abort();
        }
        sp_network_destroy(&n2);
        free(out);
    }
    for (int b = 0; b < S_BASES; b++) {
        s_check_update(&s_bases[b], buf, size, rc == SP_OK);
    }
    sp_network_destroy(&n);
    free(buf);
    return 0;
}
