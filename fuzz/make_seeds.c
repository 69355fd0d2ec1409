/* make_seeds: writes the small seed corpus of every fuzz harness into
 * fuzz/corpus/<harness>/ (argument: the corpus directory). Seeds are valid
 * inputs built with the real encoders (messages, datasets, models), so the
 * fuzzers start from deep inside each decoder. Deterministic: the same tree
 * writes the same files. Not a harness; built by `make fuzz-seeds`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/network.h"
#include "proto/messages.h"

static const char *s_root;

static void s_write(const char *harness, const char *name, const void *a, size_t alen,
                    const void *b, size_t blen)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", s_root, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", s_root, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || (alen && fwrite(a, 1, alen, f) != alen) || (blen && fwrite(b, 1, blen, f) != blen) ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* gzip of src into a malloc'ed buffer. */
static uint8_t *s_gzip(const uint8_t *src, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        exit(1);
    }
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *o = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)len;
    zs.next_out = o;
    zs.avail_out = (uInt)cap;
    if (!o || deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        exit(1);
    }
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return o;
}

static void s_msg_seeds(void)
{
    static const sp_msg_type_t types[] = {
#define SP_X_LIST(name, id, str) SP_MSG_##name,
        SP_MSG_TYPES(SP_X_LIST)
#undef SP_X_LIST
    };
    int mp_seeds = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        sp_msg_t m;
        if (sp_msg_example(&m, types[i], 7) != SP_OK) {
            fprintf(stderr, "make_seeds: no example for type %d\n", (int)types[i]);
            exit(1);
        }
        uint8_t hdr[SP_MSG_HEADER_BYTES], *body = NULL;
        size_t blen = 0;
        if (sp_msg_encode(&m, hdr, &body, &blen) != SP_OK) {
            exit(1);
        }
        if (blen <= 4096) { /* keep the corpus small: big examples add nothing */
            s_write("msg", sp_msg_type_name(types[i]), hdr, sizeof hdr, body, blen);
            if (mp_seeds < 6 && blen > 40) {
                static const uint8_t dflt[2] = {0x00, 0x60}; /* default limits */
                s_write("mpcheck", sp_msg_type_name(types[i]), dflt, 2, body, blen);
                mp_seeds++;
            }
        }
        free(body);
        sp_msg_fini(&m);
    }
}

static void s_mpcheck_seeds(void)
{
    /* [1, -1, 1.5, "ab", bin 2, ext, nil, true, {"k": [[]]}] under default
     * limits, and a nested map under tight limits. */
    static const uint8_t mixed[] = {0x00, 0x60, 0x99, 0x01, 0xff, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0,
                                    0,    0,    0xa2, 'a',  'b',  0xc4, 0x02, 1,  2,
                                    0xd4, 0x05, 0x07, 0xc0, 0xc3, 0x81, 0xa1, 'k',  0x91, 0x90};
    s_write("mpcheck", "mixed", mixed, sizeof mixed, NULL, 0);
    static const uint8_t tight[] = {0x83, 0x3f, 0x82, 0xa1, 'a', 0xcd, 0x01, 0x00,
                                    0xa1, 'b',  0x81, 0xa1, 'c', 0xca, 0x3f, 0x80, 0, 0};
    s_write("mpcheck", "tight", tight, sizeof tight, NULL, 0);
    static const uint8_t big[] = {0x00, 0x20, 0xdd, 0x00, 0x00, 0x00, 0x02, 0xc5, 0x00, 0x01,
                                  0x00, 0xda, 0x00, 0x00};
    s_write("mpcheck", "declared-long", big, sizeof big, NULL, 0);
}

static void s_csv_seeds(void)
{
    /* byte 0: bits 0-2 label column (-1,0,1,2,3,7,100,65535), bit 3 regress,
     * bits 4-5 header mode (0 detect, 1 no, 2 yes). */
    static const char *const texts[] = {
        "\x00" "a,b,label\n1,2,0\n3,4,1\n5.5,-6e2,2\n",
        "\x10" "1,2,0\r\n3,4,1\r\n",
        "\x01" "\xef\xbb\xbf" "label, x1 ,\tx2\n0, 0.5 ,1\n1,2.25,3\n\n",
        "\x28" "150,4,setosa,versicolor\n5.1,3.5,1.4,0.2\n4.9,3.0,1.4,0.25\n",
        "\x22" "x,y,z\n1,2,3\n4,5,6\n",
        "\x00" "1,2,NaN\n",
        "\x00" "1,2\n3\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "csv%zu", i);
        size_t len = 1 + strlen(texts[i] + 1);
        s_write("csv", name, texts[i], len, NULL, 0);
    }
}

static void s_idx_seed(const char *name, const uint8_t *img, size_t ni, const uint8_t *lab,
                       size_t nl)
{
    uint8_t pre[2] = {(uint8_t)(ni & 0xff), (uint8_t)(ni >> 8)};
    uint8_t *both = malloc(ni + nl);
    memcpy(both, img, ni);
    memcpy(both + ni, lab, nl);
    s_write("idx", name, pre, 2, both, ni + nl);
    free(both);
}

static void s_idx_seeds(void)
{
    /* 3 images of 2x2 and their labels. */
    static const uint8_t img[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
                                  0, 255, 17, 34, 1, 2, 3, 4, 200, 100, 50, 0};
    static const uint8_t lab[] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1};
    s_idx_seed("plain", img, sizeof img, lab, sizeof lab);
    size_t gi, gl;
    uint8_t *zi = s_gzip(img, sizeof img, &gi);
    uint8_t *zl = s_gzip(lab, sizeof lab, &gl);
    s_idx_seed("gz-images", zi, gi, lab, sizeof lab);
    s_idx_seed("gz-both", zi, gi, zl, gl);
    free(zi);
    free(zl);
}

static void s_dataset_seeds(void)
{
    float x[6] = {0.5f, -1.0f, 2.0f, 0.0f, 1e-3f, 3.0f};
    float yc[3] = {0, 2, 1};
    float yr[3] = {0.25f, -7.5f, 1e6f};
    /* pixels held as bytes, as the IDX reader holds them: written as version 2 */
    uint8_t px[6] = {0, 1, 128, 255, 7, 254};
    sp_dataset_t c = {.task = SP_TASK_CLASSIFY,
                      .n_samples = 3,
                      .n_features = 2,
                      .n_classes = 3,
                      .n_targets = 3,
                      .x = x,
                      .y = yc};
    sp_dataset_t r = c;
    r.task = SP_TASK_REGRESS;
    r.n_classes = 0;
    r.n_targets = 1;
    r.y = yr;
    sp_dataset_t im = c;
    im.x = NULL;
    im.xb = px;
    const sp_dataset_t *sets[3] = {&c, &r, &im};
    static const char *const names[3] = {"classify", "regress", "images"};
    for (int i = 0; i < 3; i++) {
        uint8_t *buf;
        size_t len;
        if (sp_dataset_serialize(sets[i], &buf, &len) != SP_OK) {
            exit(1);
        }
        static const uint8_t keep = 0, fix = 1; /* byte 0: rewrite the CRC when odd */
        char name[32];
        snprintf(name, sizeof name, "%s", names[i]);
        s_write("dataset", name, &keep, 1, buf, len);
        snprintf(name, sizeof name, "%s-crcfix", names[i]);
        s_write("dataset", name, &fix, 1, buf, len);
        free(buf);
    }
}

static void s_gunzip_seeds(void)
{
    static const char text[] = "spatium spatium spatium: a gzip seed";
    size_t gl;
    uint8_t *gz = s_gzip((const uint8_t *)text, sizeof text - 1, &gl);
    uint8_t lim = 5; /* 1000 bytes */
    s_write("gunzip", "member", &lim, 1, gz, gl);
    uint8_t *two = malloc(2 * gl);
    memcpy(two, gz, gl);
    memcpy(two + gl, gz, gl);
    s_write("gunzip", "two-members", &lim, 1, two, 2 * gl);
    lim = 2; /* 2 bytes: over the limit */
    s_write("gunzip", "over-limit", &lim, 1, gz, gl);
    lim = 4;
    s_write("gunzip", "plain", &lim, 1, text, sizeof text - 1);
    uint8_t zeros[4096] = {0};
    free(gz);
    gz = s_gzip(zeros, sizeof zeros, &gl);
    lim = 6; /* 4096 bytes: exactly the limit */
    s_write("gunzip", "zeros-4k", &lim, 1, gz, gl);
    free(gz);
    free(two);
}

static void s_model_seeds(void)
{
    static const uint32_t sizes[3] = {4, 3, 2};
    static const uint8_t bits[3] = {1, 2, 4};
    for (int b = 0; b < 3; b++) {
        sp_net_config_t cfg;
        sp_net_config_default(&cfg);
        cfg.bits = bits[b];
        cfg.seed = 11 + (uint64_t)b;
        sp_network_t *n = sp_network_new(sizes, 3, &cfg);
        if (!n) {
            exit(1);
        }
        /* One training step, so momentum and master weights are not trivial. */
        float X[8] = {0.1f, 0.9f, -0.3f, 0.5f, 1.0f, 0.0f, 0.25f, -0.75f};
        float T[4] = {1, 0, 0, 1};
        float loss;
        if (sp_network_train_batch(n, X, T, 2, &loss) != SP_OK) {
            exit(1);
        }
        for (int training = 0; training <= 1; training++) {
            uint8_t *buf;
            size_t len;
            if (sp_network_save_buffer(n, training, &buf, &len) != SP_OK) {
                exit(1);
            }
            char name[32];
            snprintf(name, sizeof name, "b%u%s", bits[b], training ? "-training" : "");
            s_write("model", name, buf, len, NULL, 0);
            free(buf);
        }
        sp_network_destroy(&n);
    }
    /* A model with an input transform (the optional `input` map). */
    sp_net_config_t cfg;
    sp_net_config_default(&cfg);
    sp_network_t *n = sp_network_new(sizes, 3, &cfg);
    static const float off[4] = {0.0f, 10.0f, -1.0f, 0.5f}, scale[4] = {1.0f, 0.01f, 0.5f, 2.0f};
    uint8_t *buf;
    size_t len;
    if (!n || sp_network_set_input_transform(n, off, scale) != SP_OK ||
        sp_network_save_buffer(n, 0, &buf, &len) != SP_OK) {
        exit(1);
    }
    s_write("model", "input-transform", buf, len, NULL, 0);
    free(buf);
    sp_network_destroy(&n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    s_root = argv[1];
    mkdir(s_root, 0755);
    s_msg_seeds();
    s_mpcheck_seeds();
    s_csv_seeds();
    s_idx_seeds();
    s_dataset_seeds();
    s_gunzip_seeds();
    s_model_seeds();
    return 0;
}
