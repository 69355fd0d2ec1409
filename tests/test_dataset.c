/* test_dataset: CSV and IDX parsing on generated and real files, every kind of
 * bad input refused with the line or offset named, bounded gzip and file
 * reading, and the CRC-checked serialized form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/rng.h"

#define SKLEARN_DIR "/usr/lib/python3/dist-packages/sklearn/datasets/data/"
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

static int s_parse(const char *text, const sp_csv_opts_t *o, sp_dataset_t *d, char *err,
                   size_t errlen)
{
    return sp_dataset_parse_csv(text, strlen(text), o, d, err, errlen);
}

/* Parse must fail with SP_E_INPUT and a message holding every given word. */
static void s_csv_refused(const char *text, const sp_csv_opts_t *o, const char *w1, const char *w2)
{
    sp_dataset_t d;
    memset(&d, 0x5a, sizeof d); /* untouched on failure */
    char err[256] = "";
    int rc = s_parse(text, o, &d, err, sizeof err);
    if (rc != SP_E_INPUT || (w1 && !strstr(err, w1)) || (w2 && !strstr(err, w2))) {
        print_error("input %s: rc %d message '%s', wanted '%s' '%s'\n", text, rc, err, w1 ? w1 : "",
                    w2 ? w2 : "");
        fail();
    }
    assert_int_equal(d.n_samples, 0x5a5a5a5a);
}

static void test_dataset_csv_parses_generated_data(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 31);
    enum { ROWS = 200, FEAT = 5 };
    static float xs[ROWS][FEAT];
    static int ys[ROWS];
    size_t cap = 64 * ROWS * (FEAT + 1) + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "\xef\xbb\xbf f1, f2,f3,f4,f5 ,label\r\n");
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < FEAT; j++) {
            xs[i][j] = (float)(sp_rng_normal(&r) * pow(10.0, (double)sp_rng_below(&r, 7) - 3.0));
            n += (size_t)snprintf(text + n, cap - n, j == 1 ? " %.9g\t," : "%.9g,",
                                  (double)xs[i][j]);
        }
        ys[i] = (int)sp_rng_below(&r, 4);
        n += (size_t)snprintf(text + n, cap - n, "%d%s", ys[i], i % 2 ? "\r\n" : "\n");
    }
    n += (size_t)snprintf(text + n, cap - n, "\n  \n");
    sp_dataset_t d;
    char err[256] = "";
    int rc = sp_dataset_parse_csv(text, n, NULL, &d, err, sizeof err);
    if (rc) {
        print_error("%s\n", err);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(d.task, SP_TASK_CLASSIFY);
    assert_int_equal(d.n_samples, ROWS);
    assert_int_equal(d.n_features, FEAT);
    int max_y = 0;
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < FEAT; j++) {
            assert_true(d.x[i * FEAT + j] == xs[i][j]); /* %.9g round-trips a float */
        }
        assert_true(d.y[i] == (float)ys[i]);
        max_y = ys[i] > max_y ? ys[i] : max_y;
    }
    assert_int_equal(d.n_classes, (uint32_t)max_y + 1);
    assert_int_equal(d.n_targets, d.n_classes);
    sp_dataset_fini(&d);
    assert_null(d.x);
    free(text);

    /* label first, label in column 1, regression with any finite value */
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    o.label_column = 0;
    assert_int_equal(s_parse("2,0.5,1.5\n0,-1,1e3\n", &o, &d, err, sizeof err), 0);
    assert_true(d.y[0] == 2.0f && d.x[0] == 0.5f && d.x[3] == 1000.0f);
    assert_int_equal(d.n_classes, 3);
    sp_dataset_fini(&d);
    o.label_column = 1;
    o.task = SP_TASK_REGRESS;
    assert_int_equal(s_parse("1,-2.25,3\n4,1e-3,6", &o, &d, err, sizeof err), 0);
    assert_int_equal(d.n_features, 2);
    assert_true(d.y[0] == -2.25f && d.y[1] == 0.001f && d.x[1] == 3.0f && d.x[3] == 6.0f);
    assert_int_equal(d.n_classes, 0);
    assert_int_equal(d.n_targets, 1);
    sp_dataset_fini(&d);
}

static void test_dataset_csv_header_detection(void **state)
{
    (void)state;
    sp_dataset_t d;
    char err[256] = "";
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    /* a text field makes line 1 a header */
    assert_int_equal(s_parse("a,b,class\n1,2,0\n3,4,1\n", &o, &d, err, sizeof err), 0);
    assert_int_equal(d.n_samples, 2);
    sp_dataset_fini(&d);
    /* all numbers: line 1 is data */
    assert_int_equal(s_parse("1,2,0\n3,4,1\n", &o, &d, err, sizeof err), 0);
    assert_int_equal(d.n_samples, 2);
    sp_dataset_fini(&d);
    /* scikit-learn's shape: counts and class names, field count unlike the rows */
    assert_int_equal(s_parse("2,3,setosa,versicolor\n1,2,3,0\n4,5,6,1\n", &o, &d, err, sizeof err),
                     0);
    assert_int_equal(d.n_samples, 2);
    assert_int_equal(d.n_features, 3);
    sp_dataset_fini(&d);
    /* forced header: a numeric first line is skipped */
    o.has_header = 1;
    assert_int_equal(s_parse("9,9,9\n1,2,0\n", &o, &d, err, sizeof err), 0);
    assert_int_equal(d.n_samples, 1);
    assert_true(d.x[0] == 1.0f);
    sp_dataset_fini(&d);
    /* forced no header: a text line 1 is an error on line 1 */
    o.has_header = 0;
    s_csv_refused("a,b,c\n1,2,0\n", &o, "line 1, column 1", "not a number");
    /* an empty field does not make a header: it is reported */
    o.has_header = -1;
    s_csv_refused("1,,0\n1,2,0\n", &o, "line 1, column 2", "empty field");
}

static void test_dataset_csv_bad_input_names_line_and_column(void **state)
{
    (void)state;
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    s_csv_refused("1,2,0\n3,4,1\n5,6\n", &o, "line 3", "ragged");
    s_csv_refused("h1,h2,y\n1,2,0\n3,4,5,1\n", &o, "line 3", "ragged");
    s_csv_refused("1,2,0\n3,abc,1\n", &o, "line 2, column 2", "'abc' is not a number");
    s_csv_refused("1,2,0\n3,4x,1\n", &o, "line 2, column 2", "not a number");
    s_csv_refused("1,2,0\n3,0x10,1\n", &o, "line 2, column 2", "not a number");
    s_csv_refused("1,2,0\n3,NaN,1\n", &o, "line 2, column 2", "NaN or infinity");
    s_csv_refused("1,-inf,0\n", &o, "line 1, column 2", "NaN or infinity");
    s_csv_refused("1,2,0\n3,1e999,1\n", &o, "line 2, column 2", "float range");
    s_csv_refused("1,2,0\n3,1e39,1\n", &o, "line 2, column 2", "float range");
    s_csv_refused("1,2,0\n3,4,\n", &o, "line 2, column 3", "empty field");
    s_csv_refused("1,2,0\n3,4,-1\n", &o, "line 2, column 3", "class label");
    s_csv_refused("1,2,0\n3,4,1.5\n", &o, "line 2, column 3", "class label");
    s_csv_refused("1,2,0\n3,4,70000\n", &o, "line 2, column 3", "class label");
    s_csv_refused("1,2,0\n\n3,4,1\n", &o, "line 2", "empty line");
    s_csv_refused("", &o, "empty file", NULL);
    s_csv_refused(" \r\n\n", &o, "empty file", NULL);
    s_csv_refused("a,b,c\n", &o, "no data rows", "line 1");
    s_csv_refused("1\n2\n", &o, "line 1", "feature");
    s_csv_refused("1,2,0\n3,4\0,1\n", &o, NULL, NULL); /* strlen stops at NUL: ragged line 2 */
    o.label_column = 3;
    s_csv_refused("1,2,0\n", &o, "label column 3", "line 1");
    o.label_column = -1;
    o.task = SP_TASK_REGRESS;
    s_csv_refused("1,2,nan\n", &o, "line 1, column 3", "NaN");
    /* a NUL byte inside the text is text, not a number */
    sp_dataset_t d;
    char err[256];
    const char nul[] = "1,2,0\n3,4\0,1\n";
    assert_int_equal(sp_dataset_parse_csv(nul, sizeof nul - 1, &o, &d, err, sizeof err),
                     SP_E_INPUT);
    assert_non_null(strstr(err, "line 2, column 2"));
}

static int s_read(const char *path, uint8_t **buf, size_t *len)
{
    char err[256];
    return sp_file_read_all(path, (size_t)1 << 30, buf, len, err, sizeof err);
}

static void s_check_sklearn(const char *name, uint32_t rows, uint32_t feats, uint32_t classes)
{
    char path[256];
    snprintf(path, sizeof path, SKLEARN_DIR "%s", name);
    if (access(path, R_OK) != 0) {
        print_message("dataset: %s absent, skipped\n", path);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(s_read(path, &buf, &len), 0);
    sp_dataset_t d;
    char err[256] = "";
    int rc = sp_dataset_parse_csv((const char *)buf, len, NULL, &d, err, sizeof err);
    if (rc) {
        print_error("%s: %s\n", name, err);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(d.n_samples, rows);
    assert_int_equal(d.n_features, feats);
    assert_int_equal(d.n_classes, classes);
    for (size_t i = 0; i < (size_t)rows * feats; i++) {
        assert_true(isfinite(d.x[i]));
    }
    sp_dataset_fini(&d);
    free(buf);
}

static void test_dataset_sklearn_csv_files_when_present(void **state)
{
    (void)state;
    if (access(SKLEARN_DIR, R_OK) != 0) {
        print_message("dataset: %s absent (python3-sklearn), skipped\n", SKLEARN_DIR);
        skip();
    }
    s_check_sklearn("iris.csv", 150, 4, 3);
    s_check_sklearn("wine_data.csv", 178, 13, 3);
    s_check_sklearn("breast_cancer.csv", 569, 30, 2);
    /* iris: first row is 5.1,3.5,1.4,0.2,0 */
    uint8_t *buf = NULL;
    size_t len = 0;
    if (s_read(SKLEARN_DIR "iris.csv", &buf, &len) == 0) {
        sp_dataset_t d;
        char err[256];
        assert_int_equal(sp_dataset_parse_csv((const char *)buf, len, NULL, &d, err, sizeof err),
                         0);
        assert_true(d.x[0] == 5.1f && d.x[3] == 0.2f && d.y[0] == 0.0f && d.y[149] == 2.0f);
        sp_dataset_fini(&d);
        free(buf);
    }
}

/* ---- IDX ---- */

static void s_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* IDX images n x rows x cols (pixel = (i*7 + k) & 255) and labels (i % 10). */
static void s_make_idx(uint32_t n, uint32_t rows, uint32_t cols, uint8_t **img, size_t *ilen,
                       uint8_t **lab, size_t *llen)
{
    *ilen = 16 + (size_t)n * rows * cols;
    *img = malloc(*ilen);
    s_be32(*img, 0x00000803);
    s_be32(*img + 4, n);
    s_be32(*img + 8, rows);
    s_be32(*img + 12, cols);
    for (size_t i = 0; i < (size_t)n * rows * cols; i++) {
        (*img)[16 + i] = (uint8_t)((i / (rows * cols)) * 7 + i % (rows * cols));
    }
    *llen = 8 + n;
    *lab = malloc(*llen);
    s_be32(*lab, 0x00000801);
    s_be32(*lab + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        (*lab)[8 + i] = (uint8_t)(i % 10);
    }
}

static void s_gzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = *out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
}

static void s_idx_refused(const uint8_t *img, size_t ilen, const uint8_t *lab, size_t llen,
                          const char *w1, const char *w2)
{
    sp_dataset_t d;
    memset(&d, 0x5a, sizeof d);
    char err[256] = "";
    int rc = sp_dataset_parse_idx(img, ilen, lab, llen, &d, err, sizeof err);
    if (rc != SP_E_INPUT || (w1 && !strstr(err, w1)) || (w2 && !strstr(err, w2))) {
        print_error("rc %d message '%s', wanted '%s' '%s'\n", rc, err, w1 ? w1 : "", w2 ? w2 : "");
        fail();
    }
    assert_int_equal(d.n_samples, 0x5a5a5a5a);
}

static void test_dataset_idx_parses_generated_files(void **state)
{
    (void)state;
    uint8_t *img, *lab, *gimg;
    size_t ilen, llen, glen;
    s_make_idx(30, 3, 4, &img, &ilen, &lab, &llen);
    s_gzip(img, ilen, &gimg, &glen);
    for (int gz = 0; gz <= 1; gz++) {
        sp_dataset_t d;
        char err[256] = "";
        int rc =
            sp_dataset_parse_idx(gz ? gimg : img, gz ? glen : ilen, lab, llen, &d, err, sizeof err);
        if (rc) {
            print_error("%s\n", err);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(d.n_samples, 30);
        assert_int_equal(d.n_features, 12);
        assert_int_equal(d.n_classes, 10);
        assert_int_equal(d.task, SP_TASK_CLASSIFY);
        /* held as the file's bytes, read as b / 255 */
        assert_null(d.x);
        assert_memory_equal(d.xb, img + 16, 30 * 12);
        float X[30 * 12];
        sp_dataset_rows(&d, 0, 30, X);
        for (size_t i = 0; i < 30 * 12; i++) {
            assert_true(X[i] == (float)img[16 + i] / 255.0f);
        }
        assert_true(d.y[13] == 3.0f);
        sp_dataset_fini(&d);
    }
    free(img);
    free(lab);
    free(gimg);
}

static void test_dataset_idx_bad_input_refused_with_offset(void **state)
{
    (void)state;
    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(5, 2, 3, &img, &ilen, &lab, &llen);
    /* truncated at every length */
    for (size_t cut = 0; cut < ilen; cut++) {
        s_idx_refused(img, cut, lab, llen, "images", cut >= 16 ? "truncated at offset" : NULL);
    }
    for (size_t cut = 0; cut < llen; cut++) {
        s_idx_refused(img, ilen, lab, cut, "labels", NULL);
    }
    /* trailing data */
    uint8_t *longer = malloc(ilen + 3);
    memcpy(longer, img, ilen);
    memset(longer + ilen, 0, 3);
    s_idx_refused(longer, ilen + 3, lab, llen, "3 trailing bytes", "offset 46");
    free(longer);
    /* bad magic, swapped files, unsupported element type */
    img[3] = 0x04;
    s_idx_refused(img, ilen, lab, llen, "images: offset 0: bad magic", "0x00000803");
    img[3] = 0x03;
    s_idx_refused(lab, llen, img, ilen, "images: offset 0: bad magic", NULL);
    img[2] = 0x0d; /* float elements */
    s_idx_refused(img, ilen, lab, llen, "offset 2", "not supported");
    img[2] = 0x08;
    /* counts that do not match */
    uint8_t *lab4;
    uint8_t *img4;
    size_t ilen4, llen4;
    s_make_idx(4, 2, 3, &img4, &ilen4, &lab4, &llen4);
    s_idx_refused(img, ilen, lab4, llen4, "5 samples", "labels hold 4");
    /* absurd dimensions are refused before any allocation */
    s_be32(img4 + 4, 0xffffffffu);
    s_idx_refused(img4, ilen4, lab4, llen4, "images: offset 4", NULL);
    s_be32(img4 + 4, 4);
    s_be32(img4 + 8, 70000);
    s_idx_refused(img4, ilen4, lab4, llen4, "images: offset 8", NULL);
    s_be32(img4 + 8, 1000);
    s_be32(img4 + 12, 1000);
    s_idx_refused(img4, ilen4, lab4, llen4, "values per sample", NULL);
    s_be32(img4 + 8, 0);
    s_idx_refused(img4, ilen4, lab4, llen4, "dimension 1 is 0", NULL);
    /* corrupt and truncated gzip */
    uint8_t *gz;
    size_t glen;
    s_gzip(img, ilen, &gz, &glen);
    uint8_t *bad = malloc(glen);
    memcpy(bad, gz, glen);
    bad[12] ^= 0xff; /* inside the deflate data */
    bad[13] ^= 0x55;
    s_idx_refused(bad, glen, lab, llen, "images: gzip", NULL);
    memcpy(bad, gz, glen);
    bad[glen - 6] ^= 0x01; /* CRC field of the gzip trailer */
    s_idx_refused(bad, glen, lab, llen, "images: gzip: corrupt", NULL);
    s_idx_refused(gz, glen - 5, lab, llen, "images: gzip", "truncated");
    s_idx_refused(gz, 2, lab, llen, "images: gzip", NULL);
    free(bad);
    free(gz);
    /* gzip: inflation stops at the size the IDX header declares */
    uint8_t *lng = calloc(ilen + 1000, 1);
    memcpy(lng, img, ilen);
    s_gzip(lng, ilen + 1000, &gz, &glen);
    s_idx_refused(gz, glen, lab, llen, "images: gzip: decompressed data exceeds 46", "declares");
    free(gz);
    s_gzip(img, ilen - 2, &gz, &glen);
    s_idx_refused(gz, glen, lab, llen, "images: truncated at offset 44", NULL);
    free(gz);
    lng[1] = 0x01; /* bad magic behind gzip: reported from the header alone */
    s_gzip(lng, ilen + 1000, &gz, &glen);
    s_idx_refused(gz, glen, lab, llen, "images: offset 0: bad magic", NULL);
    free(gz);
    free(lng);
    free(img);
    free(lab);
    free(img4);
    free(lab4);
}

static void test_dataset_fashion_mnist_when_present(void **state)
{
    (void)state;
    const char *ip = FMNIST_DIR "t10k-images-idx3-ubyte.gz";
    const char *lp = FMNIST_DIR "t10k-labels-idx1-ubyte.gz";
    if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0) {
        print_message("dataset: Fashion-MNIST absent (%s), skipped\n", FMNIST_DIR);
        skip();
    }
    uint8_t *ib = NULL, *lb = NULL;
    size_t il = 0, ll = 0;
    assert_int_equal(s_read(ip, &ib, &il), 0); /* gunzipped by sp_file_read_all */
    assert_int_equal(s_read(lp, &lb, &ll), 0);
    assert_int_equal(il, 16 + 10000 * 784);
    sp_dataset_t d;
    char err[256] = "";
    int rc = sp_dataset_parse_idx(ib, il, lb, ll, &d, err, sizeof err);
    if (rc) {
        print_error("%s\n", err);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(d.n_samples, 10000);
    assert_int_equal(d.n_features, 784);
    assert_int_equal(d.n_classes, 10);
    int counts[10] = {0};
    for (uint32_t i = 0; i < d.n_samples; i++) {
        counts[(int)d.y[i]]++;
    }
    for (int c = 0; c < 10; c++) {
        assert_int_equal(counts[c], 1000); /* the test split is balanced */
    }
    float flo[784], fhi[784], lo = 1, hi = 0;
    sp_dataset_feature_range(&d, flo, fhi);
    for (size_t i = 0; i < 784; i++) {
        lo = flo[i] < lo ? flo[i] : lo;
        hi = fhi[i] > hi ? fhi[i] : hi;
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    sp_dataset_fini(&d);
    free(ib);
    free(lb);
}

/* Random byte mutations: every outcome is a valid dataset or a named error. */
static void test_dataset_mutated_inputs_parse_or_name_the_error(void **state)
{
    (void)state;
    sp_rng_t r;
    sp_rng_init(&r, 404);
    const char base[] = "x1,x2,x3,y\n0.5,1e-2,-3,0\n1,2,3,1\n-4.25,5,6e2,2\n7,8,9,1\n";
    const char junk[] = "0123456789,.-+eE\n\r \tanx\"";
    char buf[sizeof base];
    int ok = 0;
    for (int t = 0; t < 4000; t++) {
        memcpy(buf, base, sizeof base);
        int flips = 1 + (int)sp_rng_below(&r, 3);
        for (int k = 0; k < flips; k++) {
            buf[sp_rng_below(&r, sizeof base - 1)] = junk[sp_rng_below(&r, sizeof junk - 1)];
        }
        sp_dataset_t d;
        char err[256] = "";
        int rc = sp_dataset_parse_csv(buf, sizeof base - 1, NULL, &d, err, sizeof err);
        if (rc == 0) {
            for (size_t i = 0; i < (size_t)d.n_samples * d.n_features; i++) {
                assert_true(isfinite(d.x[i]));
            }
            for (uint32_t i = 0; i < d.n_samples; i++) {
                assert_true(d.y[i] >= 0 && d.y[i] < (float)d.n_classes);
            }
            sp_dataset_fini(&d);
            ok++;
        } else {
            assert_int_equal(rc, SP_E_INPUT);
            assert_true(strstr(err, "line") || strstr(err, "csv"));
        }
    }
    assert_true(ok > 0 && ok < 4000);

    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(4, 2, 2, &img, &ilen, &lab, &llen);
    uint8_t *m = malloc(ilen);
    for (int t = 0; t < 2000; t++) {
        memcpy(m, img, ilen);
        m[sp_rng_below(&r, 16)] = (uint8_t)sp_rng_next(&r); /* the header */
        sp_dataset_t d;
        char err[256] = "";
        int rc = sp_dataset_parse_idx(m, ilen, lab, llen, &d, err, sizeof err);
        if (rc == 0) {
            sp_dataset_fini(&d);
        } else {
            assert_int_equal(rc, SP_E_INPUT);
            assert_non_null(strstr(err, "images"));
        }
    }
    free(m);
    free(img);
    free(lab);
}

/* ---- gzip and files ---- */

static void test_dataset_gunzip_and_file_reading_bounded(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    uint8_t *zeros = calloc(n, 1);
    uint8_t *gz, *out = NULL;
    size_t glen, olen = 0;
    s_gzip(zeros, n, &gz, &glen);
    char err[256] = "";
    assert_int_equal(sp_gunzip_maybe(gz, glen, n, &out, &olen, err, sizeof err), 0);
    assert_int_equal(olen, n);
    assert_memory_equal(out, zeros, n);
    free(out);
    /* a bomb: 1 MiB from ~1 KiB, limit 64 KiB */
    out = NULL;
    assert_int_equal(sp_gunzip_maybe(gz, glen, 65536, &out, &olen, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "exceeds 65536"));
    assert_null(out);
    /* two members concatenated are joined; garbage after a member is refused */
    uint8_t *two = malloc(2 * glen + 1);
    memcpy(two, gz, glen);
    memcpy(two + glen, gz, glen);
    assert_int_equal(sp_gunzip_maybe(two, 2 * glen, 2 * n, &out, &olen, err, sizeof err), 0);
    assert_int_equal(olen, 2 * n);
    free(out);
    two[glen] = 'x';
    assert_int_equal(sp_gunzip_maybe(two, glen + 1, 2 * n, &out, &olen, err, sizeof err),
                     SP_E_INPUT);
    assert_non_null(strstr(err, "trailing"));
    /* plain data is copied */
    assert_int_equal(sp_gunzip_maybe((const uint8_t *)"abc", 3, 10, &out, &olen, err, sizeof err),
                     0);
    assert_int_equal(olen, 3);
    free(out);

    /* files: plain, gzip, too big, absent */
    char path[] = "/tmp/sp_test_dataset_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, gz, glen), (ssize_t)glen);
    close(fd);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sp_file_read_all(path, n, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, n);
    free(buf);
    assert_int_equal(sp_file_read_all(path, n - 1, &buf, &len, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, path));
    assert_int_equal(sp_file_read_all(path, 100, &buf, &len, err, sizeof err), SP_E_INPUT);
    unlink(path);
    assert_int_equal(sp_file_read_all(path, n, &buf, &len, err, sizeof err), SP_E_IO);
    assert_non_null(strstr(err, path));
    free(two);
    free(gz);
    free(zeros);
}

/* ---- batches and serialized form ---- */

/* sp_dataset_deserialize, checked against sp_dataset_deserialize_take on a
 * copy of the buffer: the same answer, the same set; a refused buffer left
 * as it was and still the caller's, an accepted one taken. */
static int s_decode(const uint8_t *buf, size_t len, sp_dataset_t *out, char *err, size_t errlen)
{
    int rc = sp_dataset_deserialize(buf, len, out, err, errlen);
    uint8_t *copy = malloc(len ? len : 1), *given = copy;
    assert_non_null(copy);
    memcpy(copy, buf, len);
    sp_dataset_t taken;
    memset(&taken, 0x5a, sizeof taken);
    char err2[256];
    uint64_t key = 0;
    assert_int_equal(sp_dataset_deserialize_take(&copy, len, &taken, &key, err2, sizeof err2), rc);
    if (rc != SP_OK) {
        assert_ptr_equal(copy, given);
        assert_memory_equal(copy, buf, len);
        assert_int_equal(taken.n_samples, 0x5a5a5a5a);
        assert_string_equal(err2, err);
        free(copy);
        return rc;
    }
    assert_null(copy);
    assert_true(key == sp_dataset_key(buf, len));
    assert_true(sp_dataset_same(&taken, out));
    assert_true((taken.x == NULL) == (out->x == NULL) && (taken.xb == NULL) == (out->xb == NULL));
    sp_dataset_fini(&taken);
    return rc;
}

/* A copy of d held as floats (x), for comparing the two ways of holding a
 * set. */
static void s_as_floats(const sp_dataset_t *d, sp_dataset_t *f)
{
    *f = *d;
    f->xb = NULL;
    f->x = malloc((size_t)d->n_samples * d->n_features * sizeof *f->x);
    f->y = malloc(d->n_samples * sizeof *f->y);
    assert_non_null(f->x);
    assert_non_null(f->y);
    sp_dataset_rows(d, 0, d->n_samples, f->x);
    memcpy(f->y, d->y, d->n_samples * sizeof *f->y);
}

static void s_small_set(sp_dataset_t *d, sp_task_t task)
{
    char err[256];
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    o.task = task;
    const char *text = "0.5,-1,2\n1.25,3,0\n-7,0.125,1\n2,2,2\n";
    assert_int_equal(s_parse(text, &o, d, err, sizeof err), 0);
}

static void test_dataset_gather_and_targets(void **state)
{
    (void)state;
    sp_dataset_t d;
    s_small_set(&d, SP_TASK_CLASSIFY);
    uint32_t idx[] = {2, 0};
    float X[4], T[6];
    sp_dataset_gather(&d, idx, 2, X);
    assert_true(X[0] == -7.0f && X[1] == 0.125f && X[2] == 0.5f && X[3] == -1.0f);
    sp_dataset_targets(&d, idx, 2, T);
    const float want[6] = {0, 1, 0, 0, 0, 1};
    assert_memory_equal(T, want, sizeof want);
    sp_dataset_fini(&d);
    s_small_set(&d, SP_TASK_REGRESS);
    sp_dataset_targets(&d, idx, 2, T);
    assert_true(T[0] == 1.0f && T[1] == 2.0f);
    sp_dataset_fini(&d);
    sp_dataset_fini(NULL);
}

/* A set held as bytes (IDX images) gives rows and ranges of b / 255.0f, the
 * same as the float-held copy of it. */
static void test_dataset_byte_held_rows_and_ranges(void **state)
{
    (void)state;
    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(30, 3, 4, &img, &ilen, &lab, &llen);
    sp_dataset_t d, f;
    char err[256] = "";
    assert_int_equal(sp_dataset_parse_idx(img, ilen, lab, llen, &d, err, sizeof err), 0);
    s_as_floats(&d, &f);
    uint32_t idx[] = {29, 0, 7, 7};
    float X[4 * 12], Xf[4 * 12];
    sp_dataset_gather(&d, idx, 4, X);
    sp_dataset_gather(&f, idx, 4, Xf);
    assert_memory_equal(X, Xf, sizeof X);
    for (int r = 0; r < 4; r++) {
        for (int j = 0; j < 12; j++) {
            assert_true(X[r * 12 + j] == (float)img[16 + idx[r] * 12 + j] / 255.0f);
        }
    }
    sp_dataset_rows(&d, 26, 4, X);
    sp_dataset_rows(&f, 26, 4, Xf);
    assert_memory_equal(X, Xf, sizeof X);
    assert_memory_equal(Xf, f.x + 26 * 12, sizeof Xf);
    float lo[12], hi[12], flo[12], fhi[12];
    sp_dataset_feature_range(&d, lo, hi);
    sp_dataset_feature_range(&f, flo, fhi);
    assert_memory_equal(lo, flo, sizeof lo);
    assert_memory_equal(hi, fhi, sizeof hi);
    /* the two copies are the same set; one feature or label off is not */
    assert_true(sp_dataset_same(&d, &f) && sp_dataset_same(&f, &d) && sp_dataset_same(&d, &d));
    for (int k = 0; k < 3; k++) {
        size_t at = (size_t)k * 131 % (30 * 12);
        float keep = f.x[at];
        f.x[at] = k == 2 ? -f.x[at] : nextafterf(f.x[at], 2.0f);
        assert_false(sp_dataset_same(&d, &f) || sp_dataset_same(&f, &d));
        f.x[at] = keep;
    }
    f.y[29] += 1.0f;
    assert_false(sp_dataset_same(&d, &f));
    f.y[29] -= 1.0f;
    assert_true(sp_dataset_same(&d, &f));
    for (int j = 0; j < 12; j++) {
        uint8_t bl = 255, bh = 0;
        for (int s = 0; s < 30; s++) {
            uint8_t b = img[16 + s * 12 + j];
            bl = b < bl ? b : bl;
            bh = b > bh ? b : bh;
        }
        assert_true(lo[j] == (float)bl / 255.0f && hi[j] == (float)bh / 255.0f);
    }
    sp_dataset_fini(&d);
    sp_dataset_fini(&f);
    free(img);
    free(lab);
    /* every byte in one row, where rows are converted many lanes at a time:
     * each is the scalar division's bits */
    uint8_t all[256];
    float y0 = 0.0f, row[256];
    for (int b = 0; b < 256; b++) {
        all[b] = (uint8_t)b;
    }
    sp_dataset_t one = {.task = SP_TASK_CLASSIFY,
                        .n_samples = 1,
                        .n_features = 256,
                        .n_classes = 1,
                        .n_targets = 1,
                        .xb = all,
                        .y = &y0};
    sp_dataset_rows(&one, 0, 1, row);
    for (int b = 0; b < 256; b++) {
        volatile float num = (float)b, den = 255.0f;
        float want = num / den;
        assert_memory_equal(&row[b], &want, sizeof want);
    }
}

static void test_dataset_serialize_round_trip(void **state)
{
    (void)state;
    for (int task = 0; task <= 1; task++) {
        sp_dataset_t d, e;
        s_small_set(&d, (sp_task_t)task);
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(sp_dataset_serialize(&d, &buf, &len), 0);
        assert_int_equal(len, SP_DATASET_HEADER_BYTES + 4 * (4 * 2 + 4) + 4);
        assert_memory_equal(buf, "SPDS", 4);
        assert_int_equal(sp_dataset_checksum(buf, len), crc32(0, buf, (uInt)(len - 4)));
        char err[256] = "";
        assert_int_equal(s_decode(buf, len, &e, err, sizeof err), 0);
        assert_int_equal(e.task, d.task);
        assert_int_equal(e.n_samples, d.n_samples);
        assert_int_equal(e.n_features, d.n_features);
        assert_int_equal(e.n_classes, d.n_classes);
        assert_int_equal(e.n_targets, d.n_targets);
        assert_memory_equal(e.x, d.x, 4 * 2 * sizeof(float));
        assert_memory_equal(e.y, d.y, 4 * sizeof(float));
        uint8_t *buf2 = NULL;
        size_t len2 = 0;
        assert_int_equal(sp_dataset_serialize(&e, &buf2, &len2), 0);
        assert_int_equal(len2, len);
        assert_memory_equal(buf2, buf, len); /* byte-identical */
        free(buf2);
        free(buf);
        sp_dataset_fini(&d);
        sp_dataset_fini(&e);
    }
}

/* Every refusal of a serialized dataset buf[len] whose labels start at
 * offset y0 and whose first label is valid: any flipped bit (SP_E_INPUT, or
 * SP_E_VERSION in the version field; past the header, the CRC says so), any
 * cut, one byte more, an unknown version, and an invalid label under a valid
 * CRC. *out is never touched. */
/* sp_dataset_write puts into a file exactly the bytes of
 * sp_dataset_serialize, and gives their length and key. */
static void s_check_write(const sp_dataset_t *d)
{
    uint8_t *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0, len = 0;
    assert_int_equal(sp_dataset_serialize(d, &want, &want_len), SP_OK);
    char path[] = "/tmp/sp_test_dataset_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint64_t key = 0;
    assert_int_equal(sp_dataset_write(d, fd, &len, &key), SP_OK);
    close(fd);
    char err[256];
    assert_int_equal(sp_file_read_all(path, want_len + 1, &got, &got_len, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(got_len, want_len);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, want_len);
    assert_true(key == sp_dataset_key(want, want_len));
    free(want);
    free(got);
}

static void test_dataset_write_is_the_serialized_form(void **state)
{
    (void)state;
    sp_dataset_t small, held, f;
    s_small_set(&small, SP_TASK_REGRESS);
    s_check_write(&small); /* version 1 */
    /* 9000 features: more than one chunk of conversion */
    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(100, 9, 10, &img, &ilen, &lab, &llen);
    char err[256] = "";
    assert_int_equal(sp_dataset_parse_idx(img, ilen, lab, llen, &held, err, sizeof err), 0);
    s_check_write(&held); /* version 2 from bytes */
    s_as_floats(&held, &f);
    s_check_write(&f); /* version 2 from floats */
    f.x[8999] = 0.5f;
    s_check_write(&f); /* version 1, long */
    size_t len = 0;
    uint64_t key = 0;
    errno = 0;
    assert_int_equal(sp_dataset_write(&f, -1, &len, &key), SP_E_IO);
    assert_int_equal(errno, EBADF);
    f.n_samples = 0;
    assert_int_equal(sp_dataset_write(&f, -1, &len, &key), SP_E_RANGE);
    f.n_samples = 100;
    sp_dataset_fini(&f);
    sp_dataset_fini(&held);
    sp_dataset_fini(&small);
    free(img);
    free(lab);
}

static void s_check_refusals(uint8_t *buf, size_t len, size_t y0)
{
    sp_dataset_t e;
    char err[256];
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            memset(&e, 0x5a, sizeof e);
            int rc = s_decode(buf, len, &e, err, sizeof err);
            assert_true(rc == SP_E_INPUT || rc == SP_E_VERSION);
            assert_int_equal(e.n_samples, 0x5a5a5a5a);
            if (i >= SP_DATASET_HEADER_BYTES) {
                assert_non_null(strstr(err, "CRC"));
            }
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(s_decode(buf, cut, &e, err, sizeof err), SP_E_INPUT);
    }
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    copy[len] = 0;
    assert_int_equal(s_decode(copy, len + 1, &e, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "length"));
    uint8_t version = copy[4];
    copy[4] = 3;
    assert_int_equal(s_decode(copy, len, &e, err, sizeof err), SP_E_VERSION);
    assert_non_null(strstr(err, "version 3"));
    /* the other known version does not fit this file's length */
    copy[4] = version == 1 ? 2 : 1;
    assert_int_equal(s_decode(copy, len, &e, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "header declares"));
    copy[4] = version;
    float bad_label = 77.0f; /* past n_classes */
    uint32_t u;
    memcpy(&u, &bad_label, 4);
    copy[y0] = (uint8_t)u;
    copy[y0 + 1] = (uint8_t)(u >> 8);
    copy[y0 + 2] = (uint8_t)(u >> 16);
    copy[y0 + 3] = (uint8_t)(u >> 24);
    uint32_t c = (uint32_t)crc32(0, copy, (uInt)(len - 4));
    for (int k = 0; k < 4; k++) {
        copy[len - 4 + (size_t)k] = (uint8_t)(c >> (8 * k));
    }
    assert_int_equal(s_decode(copy, len, &e, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "y[0]"));
    if (version == SP_DATASET_VERSION_FLOATS) {
        /* a NaN among float features, under a valid CRC */
        memcpy(copy, buf, len);
        copy[SP_DATASET_HEADER_BYTES + 4 + 3] = 0x7f;
        copy[SP_DATASET_HEADER_BYTES + 4 + 2] = 0xc0;
        c = (uint32_t)crc32(0, copy, (uInt)(len - 4));
        for (int k = 0; k < 4; k++) {
            copy[len - 4 + (size_t)k] = (uint8_t)(c >> (8 * k));
        }
        assert_int_equal(s_decode(copy, len, &e, err, sizeof err), SP_E_INPUT);
        assert_non_null(strstr(err, "x[1] is not finite"));
    }
    free(copy);
}

static void test_dataset_serialized_flipped_byte_refused(void **state)
{
    (void)state;
    sp_dataset_t d;
    s_small_set(&d, SP_TASK_CLASSIFY);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sp_dataset_serialize(&d, &buf, &len), 0);
    assert_int_equal(buf[4], SP_DATASET_VERSION_FLOATS);
    s_check_refusals(buf, len, SP_DATASET_HEADER_BYTES + 4 * 8);
    free(buf);
    sp_dataset_fini(&d);
}

/* Images from an IDX file (every feature a byte's value) serialize as
 * version 2, one byte a feature, and come back bit for bit; one feature
 * that is no byte's value (or -0) keeps the set in version 1. Both forms
 * are canonical: what is read serializes back to the same bytes. */
static void test_dataset_byte_features_serialize_as_version_2(void **state)
{
    (void)state;
    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(30, 3, 4, &img, &ilen, &lab, &llen);
    sp_dataset_t d, e;
    char err[256] = "";
    assert_int_equal(sp_dataset_parse_idx(img, ilen, lab, llen, &d, err, sizeof err), 0);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(sp_dataset_serialize(&d, &buf, &len), 0);
    assert_int_equal(buf[4], SP_DATASET_VERSION_BYTES);
    assert_int_equal(len, SP_DATASET_HEADER_BYTES + 30 * 12 + 4 * 30 + 4);
    assert_memory_equal(buf + SP_DATASET_HEADER_BYTES, img + 16, 30 * 12); /* the pixels */
    assert_int_equal(s_decode(buf, len, &e, err, sizeof err), 0);
    assert_null(e.x);
    assert_memory_equal(e.xb, d.xb, 30 * 12);
    assert_memory_equal(e.y, d.y, 30 * sizeof(float));
    assert_int_equal(sp_dataset_serialize(&e, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    sp_dataset_fini(&e);
    /* the same values held as floats find the same bytes */
    sp_dataset_t f;
    s_as_floats(&d, &f);
    assert_int_equal(sp_dataset_serialize(&f, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);
    s_check_refusals(buf, len, SP_DATASET_HEADER_BYTES + 30 * 12);
    free(buf);
    /* 0.5 is 127.5 / 255 and -0 is not +0: either keeps version 1 */
    const float odd[2] = {0.5f, -0.0f};
    for (int k = 0; k < 2; k++) {
        float keep = f.x[7];
        f.x[7] = odd[k];
        assert_int_equal(sp_dataset_serialize(&f, &buf, &len), 0);
        assert_int_equal(buf[4], SP_DATASET_VERSION_FLOATS);
        assert_int_equal(len, SP_DATASET_HEADER_BYTES + 4 * (30 * 12 + 30) + 4);
        assert_int_equal(s_decode(buf, len, &e, err, sizeof err), 0);
        assert_memory_equal(e.x, f.x, 30 * 12 * sizeof(float));
        sp_dataset_fini(&e);
        free(buf);
        f.x[7] = keep;
    }
    sp_dataset_fini(&f);
    sp_dataset_fini(&d);
    free(img);
    free(lab);
    /* every byte value: one feature per sample, b / 255.0f stored as b */
    float x[256], y[256];
    for (int b = 0; b < 256; b++) {
        x[b] = (float)b / 255.0f;
        y[b] = 0.0f;
    }
    sp_dataset_t all = {.task = SP_TASK_CLASSIFY,
                        .n_samples = 256,
                        .n_features = 1,
                        .n_classes = 1,
                        .n_targets = 1,
                        .x = x,
                        .y = y};
    assert_int_equal(sp_dataset_serialize(&all, &buf, &len), 0);
    assert_int_equal(buf[4], SP_DATASET_VERSION_BYTES);
    for (int b = 0; b < 256; b++) {
        assert_int_equal(buf[SP_DATASET_HEADER_BYTES + b], b);
    }
    assert_int_equal(s_decode(buf, len, &e, err, sizeof err), 0);
    float back[256];
    sp_dataset_rows(&e, 0, 256, back);
    assert_memory_equal(back, x, sizeof x);
    sp_dataset_fini(&e);
    free(buf);
}

/* A dataset stored as version 1 before version 2 existed, images included,
 * still reads; written again it takes the smaller form with the same
 * values. */
static void test_dataset_version_1_images_still_read(void **state)
{
    (void)state;
    uint8_t *img, *lab;
    size_t ilen, llen;
    s_make_idx(6, 2, 2, &img, &ilen, &lab, &llen);
    sp_dataset_t d, e;
    char err[256] = "";
    sp_dataset_t held;
    assert_int_equal(sp_dataset_parse_idx(img, ilen, lab, llen, &held, err, sizeof err), 0);
    s_as_floats(&held, &d);
    sp_dataset_fini(&held);
    /* version 1 by hand: the header, x and y as float32, the CRC */
    size_t nx = 6 * 4, len = SP_DATASET_HEADER_BYTES + 4 * (nx + 6) + 4;
    uint8_t *v1 = calloc(1, len);
    assert_non_null(v1);
    memcpy(v1, "SPDS", 4);
    const uint32_t head[7] = {1, SP_TASK_CLASSIFY, 6, 4, d.n_classes, d.n_targets, 0};
    for (int k = 0; k < 7; k++) {
        for (int b = 0; b < 4; b++) {
            v1[4 + 4 * k + b] = (uint8_t)(head[k] >> (8 * b));
        }
    }
    memcpy(v1 + SP_DATASET_HEADER_BYTES, d.x, nx * 4); /* little-endian host */
    memcpy(v1 + SP_DATASET_HEADER_BYTES + nx * 4, d.y, 6 * 4);
    uint32_t c = (uint32_t)crc32(0, v1, (uInt)(len - 4));
    for (int b = 0; b < 4; b++) {
        v1[len - 4 + (size_t)b] = (uint8_t)(c >> (8 * b));
    }
    assert_int_equal(s_decode(v1, len, &e, err, sizeof err), 0);
    assert_memory_equal(e.x, d.x, nx * sizeof(float));
    assert_memory_equal(e.y, d.y, 6 * sizeof(float));
    uint8_t *buf = NULL;
    size_t blen = 0;
    assert_int_equal(sp_dataset_serialize(&e, &buf, &blen), 0);
    assert_int_equal(buf[4], SP_DATASET_VERSION_BYTES);
    free(buf);
    free(v1);
    sp_dataset_fini(&d);
    sp_dataset_fini(&e);
    free(img);
    free(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_csv_parses_generated_data),
        cmocka_unit_test(test_dataset_csv_header_detection),
        cmocka_unit_test(test_dataset_csv_bad_input_names_line_and_column),
        cmocka_unit_test(test_dataset_sklearn_csv_files_when_present),
        cmocka_unit_test(test_dataset_idx_parses_generated_files),
        cmocka_unit_test(test_dataset_idx_bad_input_refused_with_offset),
        cmocka_unit_test(test_dataset_fashion_mnist_when_present),
        cmocka_unit_test(test_dataset_mutated_inputs_parse_or_name_the_error),
        cmocka_unit_test(test_dataset_gunzip_and_file_reading_bounded),
        cmocka_unit_test(test_dataset_gather_and_targets),
        cmocka_unit_test(test_dataset_byte_held_rows_and_ranges),
        cmocka_unit_test(test_dataset_serialize_round_trip),
        cmocka_unit_test(test_dataset_write_is_the_serialized_form),
        cmocka_unit_test(test_dataset_serialized_flipped_byte_refused),
        cmocka_unit_test(test_dataset_byte_features_serialize_as_version_2),
        cmocka_unit_test(test_dataset_version_1_images_still_read),
    };
    return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
