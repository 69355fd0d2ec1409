/* dataset: strict CSV and IDX parsers, bounded gzip and file reading, and the
 * CRC-checked "SPDS" serialized form. Invariant: a parser either hands back a
 * complete dataset whose values are all finite and whose labels are valid, or
 * returns an error naming the line/column or byte offset and leaves *out alone;
 * every size read from input is bounded before it sizes an allocation. */
#include "common/dataset.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/bytes.h"
#include "common/error.h"
#include "common/file.h"
#include "common/kernels.h"

void sp_csv_opts_default(sp_csv_opts_t *o)
{
    o->label_column = -1;
    o->task = SP_TASK_CLASSIFY;
    o->has_header = -1;
}

void sp_dataset_fini(sp_dataset_t *d)
{
    if (!d) {
        return;
    }
    free(d->x);
    free(d->xb);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* ---- CSV ---- */

typedef enum { S_TOK_NUM, S_TOK_EMPTY, S_TOK_TEXT, S_TOK_NONFINITE, S_TOK_RANGE } s_tok_t;

typedef struct {
    const char *p;
    size_t n;
} s_span_t;

static s_span_t s_trim(const char *p, size_t n)
{
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    return (s_span_t){p, n};
}

static int s_word_ieq(const char *p, size_t n, const char *w)
{
    size_t wn = strlen(w);
    if (n != wn) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)p[i]) != w[i]) {
            return 0;
        }
    }
    return 1;
}

/* Classifies a trimmed field and, for S_TOK_NUM, stores its value. */
static s_tok_t s_parse_number(s_span_t f, double *v)
{
    if (f.n == 0) {
        return S_TOK_EMPTY;
    }
    int plain = 1;
    for (size_t i = 0; i < f.n; i++) {
        char c = f.p[i];
        if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E')) {
            plain = 0;
            break;
        }
    }
    if (!plain) {
        s_span_t w = f;
        if (w.n > 0 && (w.p[0] == '+' || w.p[0] == '-')) {
            w.p++;
            w.n--;
        }
        if (s_word_ieq(w.p, w.n, "nan") || s_word_ieq(w.p, w.n, "inf") ||
            s_word_ieq(w.p, w.n, "infinity")) {
            return S_TOK_NONFINITE;
        }
        return S_TOK_TEXT;
    }
    if (f.n >= SP_DATASET_MAX_FIELD) {
        return S_TOK_TEXT;
    }
    char buf[SP_DATASET_MAX_FIELD];
    memcpy(buf, f.p, f.n);
    buf[f.n] = '\0';
    char *end = NULL;
    double x = strtod(buf, &end);
    if (end != buf + f.n || end == buf) {
        return S_TOK_TEXT;
    }
    if (!isfinite(x) || fabs(x) > FLT_MAX) {
        return S_TOK_RANGE;
    }
    *v = x;
    return S_TOK_NUM;
}

/* Printable excerpt of a field for messages. */
static void s_excerpt(s_span_t f, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < f.n && n + 4 < cap; i++) {
        unsigned char c = (unsigned char)f.p[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (f.n > n) {
        out[n++] = '.';
        out[n++] = '.';
    }
    out[n] = '\0';
}

static int s_field_error(s_tok_t t, s_span_t f, unsigned long line, size_t col, char *err,
                         size_t errlen)
{
    char ex[24];
    s_excerpt(f, ex, sizeof ex);
    switch (t) {
    case S_TOK_EMPTY:
        return sp_err_input(err, errlen, "line %lu, column %zu: empty field", line, col);
    case S_TOK_NONFINITE:
        return sp_err_input(err, errlen, "line %lu, column %zu: '%s': NaN or infinity", line, col,
                            ex);
    case S_TOK_RANGE:
        return sp_err_input(err, errlen, "line %lu, column %zu: '%s': beyond float range", line,
                            col, ex);
    default:
        return sp_err_input(err, errlen, "line %lu, column %zu: '%s' is not a number", line, col,
                            ex);
    }
}

typedef struct {
    const char *text;
    size_t len;
    size_t pos;         /* start of the next line */
    unsigned long line; /* 1-based number of the line last returned */
} s_lines_t;

/* Next line without its LF / CRLF; 0 at end of text. */
static int s_next_line(s_lines_t *L, s_span_t *out)
{
    if (L->pos >= L->len) {
        return 0;
    }
    const char *start = L->text + L->pos;
    size_t rest = L->len - L->pos;
    const char *nl = memchr(start, '\n', rest);
    size_t n = nl ? (size_t)(nl - start) : rest;
    L->pos += nl ? n + 1 : n;
    L->line++;
    if (n > 0 && start[n - 1] == '\r') {
        n--;
    }
    *out = (s_span_t){start, n};
    return 1;
}

static int s_blank(s_span_t s)
{
    return s_trim(s.p, s.n).n == 0;
}

static size_t s_count_fields(s_span_t s)
{
    size_t n = 1;
    const char *p = s.p, *end = s.p + s.n;
    while ((p = memchr(p, ',', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* Next trimmed field of a line from *cursor; moves *cursor past its comma. */
static s_span_t s_field_at(const char **cursor, const char *end)
{
    const char *p = *cursor;
    const char *c = memchr(p, ',', (size_t)(end - p));
    const char *fe = c ? c : end;
    *cursor = c ? c + 1 : end;
    return s_trim(p, (size_t)(fe - p));
}

static int s_is_header(s_span_t line)
{
    const char *cur = line.p, *end = line.p + line.n;
    size_t nf = s_count_fields(line);
    for (size_t j = 0; j < nf; j++) {
        double v;
        if (s_parse_number(s_field_at(&cur, end), &v) == S_TOK_TEXT) {
            return 1;
        }
    }
    return 0;
}

int sp_dataset_parse_csv(const char *text, size_t len, const sp_csv_opts_t *o, sp_dataset_t *out,
                         char *err, size_t errlen)
{
    sp_csv_opts_t defaults;
    if (!o) {
        sp_csv_opts_default(&defaults);
        o = &defaults;
    }
    if (o->task != SP_TASK_CLASSIFY && o->task != SP_TASK_REGRESS) {
        return sp_err_input(err, errlen, "csv: unknown task %d", (int)o->task);
    }
    s_lines_t L = {text, len, 0, 0};
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        L.pos = 3; /* UTF-8 byte order mark */
    }
    size_t first = L.pos;
    while (first < len && (text[first] == ' ' || text[first] == '\t' || text[first] == '\r' ||
                           text[first] == '\n')) {
        first++;
    }
    if (first == len) {
        return sp_err_input(err, errlen, "csv: empty file (no data)");
    }
    s_span_t line;
    if (!s_next_line(&L, &line)) {
        return sp_err_input(err, errlen, "csv: empty file");
    }
    int header = o->has_header < 0 ? s_is_header(line) : o->has_header > 0;
    unsigned long header_line = header ? L.line : 0;
    s_lines_t data0 = L; /* state before the first data line */
    if (!header) {
        data0.pos = (size_t)(line.p - text);
        data0.line = L.line - 1;
    }

    /* Pass 1: shape. Every row has the first data row's field count; blank
     * lines only at the end. */
    s_lines_t P = data0;
    size_t n_cols = 0;
    uint64_t n_rows = 0;
    unsigned long first_line = 0, blank_line = 0;
    while (s_next_line(&P, &line)) {
        if (s_blank(line)) {
            if (!blank_line) {
                blank_line = P.line;
            }
            continue;
        }
        if (blank_line) {
            return sp_err_input(err, errlen, "line %lu: empty line inside the data", blank_line);
        }
        size_t nf = s_count_fields(line);
        if (n_cols == 0) {
            n_cols = nf;
            first_line = P.line;
        } else if (nf != n_cols) {
            return sp_err_input(err, errlen,
                                "line %lu: ragged row: %zu fields, expected %zu (as on line %lu)",
                                P.line, nf, n_cols, first_line);
        }
        if (++n_rows > SP_DATASET_MAX_SAMPLES) {
            return sp_err_input(err, errlen, "line %lu: more than %u rows", P.line,
                                SP_DATASET_MAX_SAMPLES);
        }
    }
    if (n_rows == 0) {
        if (header) {
            return sp_err_input(err, errlen, "csv: no data rows after the header on line %lu",
                                header_line);
        }
        return sp_err_input(err, errlen, "csv: no data rows");
    }
    if (n_cols < 2) {
        return sp_err_input(
            err, errlen, "line %lu: 1 column; need at least one feature and a label", first_line);
    }
    if (n_cols - 1 > SP_DATASET_MAX_FEATURES) {
        return sp_err_input(err, errlen, "line %lu: %zu features, at most %d allowed", first_line,
                            n_cols - 1, SP_DATASET_MAX_FEATURES);
    }
    size_t label_col;
    if (o->label_column < 0) {
        label_col = n_cols - 1;
    } else if ((size_t)o->label_column >= n_cols) {
        return sp_err_input(err, errlen,
                            "csv: label column %d (0-based) is beyond the %zu columns of line %lu",
                            o->label_column, n_cols, first_line);
    } else {
        label_col = (size_t)o->label_column;
    }

    size_t nf = n_cols - 1;
    float *x = malloc((size_t)n_rows * nf * sizeof(float));
    float *y = malloc((size_t)n_rows * sizeof(float));
    if (!x || !y) {
        free(x);
        free(y);
        return SP_E_NOMEM;
    }

    /* Pass 2: values. */
    P = data0;
    uint32_t max_label = 0;
    size_t r = 0;
    int rc = SP_OK;
    while (rc == SP_OK && r < n_rows && s_next_line(&P, &line)) {
        if (s_blank(line)) {
            continue;
        }
        const char *cur = line.p, *end = line.p + line.n;
        float *xr = x + r * nf;
        for (size_t j = 0, k = 0; j < n_cols; j++) {
            s_span_t f = s_field_at(&cur, end);
            double v = 0.0;
            s_tok_t t = s_parse_number(f, &v);
            if (t != S_TOK_NUM) {
                rc = s_field_error(t, f, P.line, j + 1, err, errlen);
                break;
            }
            if (j != label_col) {
                xr[k++] = (float)v;
                continue;
            }
            if (o->task == SP_TASK_CLASSIFY) {
                if (v < 0.0 || v != floor(v) || v >= SP_DATASET_MAX_CLASSES) {
                    char ex[24];
                    s_excerpt(f, ex, sizeof ex);
                    rc = sp_err_input(err, errlen,
                                      "line %lu, column %zu: class label '%s' is not an integer "
                                      "in [0, %d)",
                                      P.line, j + 1, ex, SP_DATASET_MAX_CLASSES);
                    break;
                }
                if ((uint32_t)v > max_label) {
                    max_label = (uint32_t)v;
                }
            }
            y[r] = (float)v;
        }
        r++;
    }
    if (rc != SP_OK) {
        free(x);
        free(y);
        return rc;
    }
    SP_ASSERT(r == n_rows);
    memset(out, 0, sizeof *out);
    out->task = o->task;
    out->n_samples = (uint32_t)n_rows;
    out->n_features = (uint32_t)nf;
    out->n_classes = o->task == SP_TASK_CLASSIFY ? max_label + 1 : 0;
    out->n_targets = o->task == SP_TASK_CLASSIFY ? out->n_classes : 1;
    out->x = x;
    out->y = y;
    return SP_OK;
}

/* ---- gzip and files ---- */

static int s_is_gzip(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
}

int sp_gunzip_maybe(const uint8_t *buf, size_t len, size_t max_bytes, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen)
{
    if (!s_is_gzip(buf, len)) {
        if (len > max_bytes) {
            return sp_err_input(err, errlen, "input of %zu bytes exceeds the limit of %zu", len,
                                max_bytes);
        }
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy) {
            return SP_E_NOMEM;
        }
        if (len) {
            memcpy(copy, buf, len);
        }
        *out = copy;
        *out_len = len;
        return SP_OK;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        return SP_E_NOMEM;
    }
    /* The output grows geometrically with what actually inflates, up to
     * max_bytes + 1 (one byte more proves the bound was exceeded). */
    size_t hard_cap = max_bytes < SIZE_MAX ? max_bytes + 1 : max_bytes;
    size_t cap = len < hard_cap / 4 ? len * 4 : hard_cap;
    if (cap < 4096) {
        cap = hard_cap < 4096 ? hard_cap : 4096;
    }
    uint8_t *o = malloc(cap ? cap : 1);
    if (!o) {
        inflateEnd(&zs);
        return SP_E_NOMEM;
    }
    size_t produced = 0, in_off = 0;
    int rc = SP_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_off < len) {
            size_t chunk = len - in_off < UINT_MAX ? len - in_off : UINT_MAX;
            zs.next_in = (Bytef *)(uintptr_t)(buf + in_off); /* zlib does not write input */
            zs.avail_in = (uInt)chunk;
            in_off += chunk;
        }
        if (produced == cap) {
            if (cap >= hard_cap) {
                rc = sp_err_input(err, errlen, "gzip: decompressed data exceeds %zu bytes",
                                  max_bytes);
                break;
            }
            size_t ncap = cap <= hard_cap / 2 ? cap * 2 : hard_cap;
            uint8_t *no = realloc(o, ncap);
            if (!no) {
                rc = SP_E_NOMEM;
                break;
            }
            o = no;
            cap = ncap;
        }
        size_t room = cap - produced < UINT_MAX ? cap - produced : UINT_MAX;
        zs.next_out = o + produced;
        zs.avail_out = (uInt)room;
        int z = inflate(&zs, Z_NO_FLUSH);
        produced += room - zs.avail_out;
        size_t consumed = in_off - zs.avail_in;
        if (z == Z_STREAM_END) {
            if (consumed == len) {
                break;
            }
            if (s_is_gzip(buf + consumed, len - consumed)) {
                inflateReset(&zs); /* another gzip member follows */
                continue;
            }
            rc =
                sp_err_input(err, errlen, "gzip: %zu trailing bytes after the stream at offset %zu",
                             len - consumed, consumed);
            break;
        }
        if (z == Z_OK) {
            continue;
        }
        if (z == Z_BUF_ERROR) {
            if (zs.avail_in == 0 && in_off == len && produced < cap) {
                rc = sp_err_input(err, errlen, "gzip: stream truncated at offset %zu", len);
                break;
            }
            continue; /* output full: grow */
        }
        if (z == Z_MEM_ERROR) {
            rc = SP_E_NOMEM;
            break;
        }
        rc = sp_err_input(err, errlen, "gzip: corrupt stream near input offset %zu: %s", consumed,
                          zs.msg ? zs.msg : "invalid data");
        break;
    }
    inflateEnd(&zs);
    if (rc == SP_OK && produced > max_bytes) {
        rc = sp_err_input(err, errlen, "gzip: decompressed data exceeds %zu bytes", max_bytes);
    }
    if (rc != SP_OK) {
        free(o);
        return rc;
    }
    *out = o;
    *out_len = produced;
    return SP_OK;
}

int sp_file_read_all(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (err && errlen) {
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        }
        errno = e;
        return SP_E_IO;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) {
        fclose(f);
        return SP_E_NOMEM;
    }
    int rc = SP_OK;
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) {
                rc = sp_err_input(err, errlen, "%s: larger than the limit of %zu bytes", path,
                                  max_bytes);
                break;
            }
            size_t ncap = cap * 2;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                rc = SP_E_NOMEM;
                break;
            }
            b = nb;
            cap = ncap;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                if (err && errlen) {
                    snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
                }
                errno = e;
                rc = SP_E_IO;
            }
            break;
        }
    }
    fclose(f);
    if (rc == SP_OK && n > max_bytes) {
        rc = sp_err_input(err, errlen, "%s: larger than the limit of %zu bytes", path, max_bytes);
    }
    if (rc != SP_OK) {
        free(b);
        return rc;
    }
    if (s_is_gzip(b, n)) {
        uint8_t *u = NULL;
        size_t ulen = 0;
        char zerr[200] = "";
        rc = sp_gunzip_maybe(b, n, max_bytes, &u, &ulen, zerr, sizeof zerr);
        free(b);
        if (rc != SP_OK) {
            if (rc == SP_E_INPUT) {
                sp_err_input(err, errlen, "%s: %s", path, zerr);
            }
            return rc;
        }
        *buf = u;
        *len = ulen;
        return SP_OK;
    }
    *buf = b;
    *len = n;
    return SP_OK;
}

/* ---- IDX ---- */

static uint32_t s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks one IDX buffer: magic, bounded dims, exact length. dims[0] = count,
 * *item = bytes per sample, *hdr = header bytes. */
static int s_idx_check(const char *what, const uint8_t *b, size_t len, unsigned ndims,
                       int header_only, uint32_t *count, uint64_t *item, size_t *hdr, char *err,
                       size_t errlen)
{
    uint32_t want = 0x00000800u | ndims;
    if (len < 4) {
        return sp_err_input(err, errlen, "%s: truncated at offset %zu: no IDX magic", what, len);
    }
    uint32_t magic = s_be32(b);
    if (magic != want) {
        if ((magic & 0xffff0000u) == 0 && (magic & 0xffu) == ndims && (magic >> 8) != 0x08) {
            return sp_err_input(err, errlen,
                                "%s: offset 2: element type 0x%02x not supported (only unsigned "
                                "bytes, 0x08)",
                                what, (unsigned)((magic >> 8) & 0xff));
        }
        return sp_err_input(err, errlen, "%s: offset 0: bad magic 0x%08x, expected 0x%08x", what,
                            magic, want);
    }
    *hdr = 4 + 4 * (size_t)ndims;
    if (len < *hdr) {
        return sp_err_input(err, errlen, "%s: truncated header at offset %zu (%zu bytes needed)",
                            what, len, *hdr);
    }
    *count = s_be32(b + 4);
    if (*count == 0 || *count > SP_DATASET_MAX_SAMPLES) {
        return sp_err_input(err, errlen, "%s: offset 4: %u samples, expected 1..%u", what, *count,
                            SP_DATASET_MAX_SAMPLES);
    }
    uint64_t per = 1;
    for (unsigned d = 1; d < ndims; d++) {
        uint32_t v = s_be32(b + 4 + 4 * d);
        if (v == 0 || v > SP_DATASET_MAX_FEATURES) {
            return sp_err_input(err, errlen, "%s: offset %u: dimension %u is %u", what, 4 + 4 * d,
                                d, v);
        }
        per *= v;
    }
    if (per > SP_DATASET_MAX_FEATURES) {
        return sp_err_input(err, errlen, "%s: %llu values per sample, at most %d allowed", what,
                            (unsigned long long)per, SP_DATASET_MAX_FEATURES);
    }
    uint64_t want_len = *hdr + (uint64_t)*count * per;
    *item = per;
    if (header_only) {
        return SP_OK;
    }
    if (len < want_len) {
        return sp_err_input(err, errlen, "%s: truncated at offset %zu: header declares %llu bytes",
                            what, len, (unsigned long long)want_len);
    }
    if (len > want_len) {
        return sp_err_input(err, errlen, "%s: %llu trailing bytes at offset %llu", what,
                            (unsigned long long)(len - want_len), (unsigned long long)want_len);
    }
    return SP_OK;
}

/* Inflates at most cap bytes of the start of a gzip stream into out. */
static size_t s_gunzip_prefix(const uint8_t *buf, size_t len, uint8_t *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        return 0;
    }
    zs.next_in = (Bytef *)(uintptr_t)buf; /* zlib does not write input */
    zs.avail_in = (uInt)(len < UINT_MAX ? len : UINT_MAX);
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    while (zs.avail_out > 0 && inflate(&zs, Z_NO_FLUSH) == Z_OK) {
    }
    size_t got = cap - zs.avail_out;
    inflateEnd(&zs);
    return got;
}

/* The feature of byte b: what the IDX reader makes of pixel b, and what
 * the serialized form's version 2 stores as b. */
static float s_byte_value(uint8_t b)
{
    return (float)b / 255.0f;
}

/* Points *data at the plain bytes of an IDX buffer, inflating into *owned when
 * gzip. A gzip stream is inflated only up to the size its own IDX header
 * declares (checked first), so a small bomb cannot make us allocate more. */
static int s_plain(const char *what, unsigned ndims, const uint8_t *buf, size_t len,
                   const uint8_t **data, size_t *dlen, uint8_t **owned, char *err, size_t errlen)
{
    *owned = NULL;
    if (!s_is_gzip(buf, len)) {
        *data = buf;
        *dlen = len;
        return SP_OK;
    }
    uint8_t head[16];
    size_t hlen = s_gunzip_prefix(buf, len, head, 4 + 4 * (size_t)ndims);
    uint32_t count = 0;
    uint64_t per = 0;
    size_t hdr = 0;
    /* header errors (magic, dims) are reported from the prefix alone; a prefix
     * cut short by a corrupt stream is left to the full inflate to explain */
    if (hlen == 4 + 4 * (size_t)ndims || hlen < 4) {
        int rc = s_idx_check(what, head, hlen, ndims, 1, &count, &per, &hdr, err, errlen);
        if (rc != SP_OK && hlen >= 4) {
            return rc;
        }
    }
    size_t bound = count ? hdr + (size_t)count * per : SP_DATASET_MAX_IDX_BYTES;
    char zerr[200] = "";
    int rc = sp_gunzip_maybe(buf, len, bound, owned, dlen, zerr, sizeof zerr);
    if (rc == SP_E_INPUT) {
        return sp_err_input(err, errlen, "%s: %s%s", what, zerr,
                            strstr(zerr, "exceeds") ? " (the size its IDX header declares)" : "");
    }
    *data = *owned;
    return rc;
}

int sp_dataset_parse_idx(const uint8_t *images, size_t images_len, const uint8_t *labels,
                         size_t labels_len, sp_dataset_t *out, char *err, size_t errlen)
{
    const uint8_t *img = NULL, *lab = NULL;
    size_t ilen = 0, llen = 0;
    uint8_t *iown = NULL, *lown = NULL;
    uint8_t *xb = NULL;
    float *y = NULL;
    int rc = s_plain("images", 3, images, images_len, &img, &ilen, &iown, err, errlen);
    if (rc == SP_OK) {
        rc = s_plain("labels", 1, labels, labels_len, &lab, &llen, &lown, err, errlen);
    }
    uint32_t ni = 0, nl = 0;
    uint64_t per = 0, lper = 0;
    size_t ihdr = 0, lhdr = 0;
    if (rc == SP_OK) {
        rc = s_idx_check("images", img, ilen, 3, 0, &ni, &per, &ihdr, err, errlen);
    }
    if (rc == SP_OK) {
        rc = s_idx_check("labels", lab, llen, 1, 0, &nl, &lper, &lhdr, err, errlen);
    }
    if (rc == SP_OK && ni != nl) {
        rc = sp_err_input(err, errlen, "images hold %u samples but labels hold %u", ni, nl);
    }
    size_t nx = (size_t)ni * per;
    if (rc == SP_OK) {
        y = malloc((size_t)ni * sizeof(float));
        /* pixels inflated from gzip are ours already: they move to the
         * front of that buffer, which shrinks to them, instead of being
         * copied */
        xb = iown ? iown : malloc(nx);
        iown = NULL;
        if (!xb || !y) {
            rc = SP_E_NOMEM;
        }
    }
    if (rc == SP_OK) {
        memmove(xb, img + ihdr, nx);
        uint8_t *shrunk = realloc(xb, nx);
        xb = shrunk ? shrunk : xb;
        unsigned max_label = 0;
        for (uint32_t i = 0; i < ni; i++) {
            uint8_t l = lab[lhdr + i];
            y[i] = (float)l;
            max_label = l > max_label ? l : max_label;
        }
        memset(out, 0, sizeof *out);
        out->task = SP_TASK_CLASSIFY;
        out->n_samples = ni;
        out->n_features = (uint32_t)per;
        out->n_classes = max_label + 1;
        out->n_targets = out->n_classes;
        out->xb = xb;
        out->y = y;
        xb = NULL;
        y = NULL;
    }
    free(xb);
    free(y);
    free(iown);
    free(lown);
    return rc;
}

/* ---- batches ---- */

void sp_dataset_targets(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *T)
{
    if (d->task == SP_TASK_REGRESS) {
        for (size_t i = 0; i < n; i++) {
            SP_ASSERT(idx[i] < d->n_samples);
            T[i] = d->y[idx[i]];
        }
        return;
    }
    size_t k = d->n_classes;
    memset(T, 0, n * k * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        SP_ASSERT(idx[i] < d->n_samples);
        uint32_t c = (uint32_t)d->y[idx[i]];
        SP_ASSERT(c < k);
        T[i * k + c] = 1.0f;
    }
}

/* Row r of the features into X (n_features floats). A byte's value is
 * s_byte_value's division, done four lanes at a time (SSE): a division is
 * correctly rounded in every lane, so the bits are the scalar ones. */
static void s_row(const sp_dataset_t *d, size_t r, float *X)
{
    size_t nf = d->n_features;
    SP_ASSERT(r < d->n_samples);
    if (d->x) {
        memcpy(X, d->x + r * nf, nf * sizeof(float));
        return;
    }
    const uint8_t *b = d->xb + r * nf;
#pragma omp simd
    for (size_t j = 0; j < nf; j++) {
        X[j] = s_byte_value(b[j]);
    }
}

void sp_dataset_gather(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *X)
{
    for (size_t i = 0; i < n; i++) {
        s_row(d, idx[i], X + i * d->n_features);
    }
}

void sp_dataset_rows(const sp_dataset_t *d, uint32_t first, size_t n, float *X)
{
    for (size_t i = 0; i < n; i++) {
        s_row(d, (size_t)first + i, X + i * d->n_features);
    }
}

int sp_dataset_same(const sp_dataset_t *a, const sp_dataset_t *b)
{
    if (a->task != b->task || a->n_samples != b->n_samples || a->n_features != b->n_features ||
        a->n_classes != b->n_classes || a->n_targets != b->n_targets ||
        memcmp(a->y, b->y, a->n_samples * sizeof *a->y) != 0) {
        return 0;
    }
    size_t nx = (size_t)a->n_samples * a->n_features;
    if (a->x && b->x) {
        return memcmp(a->x, b->x, nx * sizeof *a->x) == 0;
    }
    if (a->xb && b->xb) {
        return memcmp(a->xb, b->xb, nx) == 0;
    }
    const sp_dataset_t *f = a->x ? a : b, *h = a->x ? b : a;
    for (size_t i = 0; i < nx; i++) {
        float v = s_byte_value(h->xb[i]);
        if (memcmp(&f->x[i], &v, sizeof v) != 0) {
            return 0;
        }
    }
    return 1;
}

void sp_dataset_feature_range(const sp_dataset_t *d, float *lo, float *hi)
{
    size_t nf = d->n_features;
    if (d->x) {
        memcpy(lo, d->x, nf * sizeof *lo);
        memcpy(hi, d->x, nf * sizeof *hi);
        for (size_t s = 1; s < d->n_samples; s++) {
            const float *x = d->x + s * nf;
            for (size_t j = 0; j < nf; j++) {
                lo[j] = x[j] < lo[j] ? x[j] : lo[j];
                hi[j] = x[j] > hi[j] ? x[j] : hi[j];
            }
        }
        return;
    }
    /* the smallest and largest byte, held exactly as floats, then their
     * values: bytes order as their values do */
    for (size_t j = 0; j < nf; j++) {
        lo[j] = hi[j] = (float)d->xb[j];
    }
    for (size_t s = 1; s < d->n_samples; s++) {
        const uint8_t *b = d->xb + s * nf;
#pragma omp simd
        for (size_t j = 0; j < nf; j++) {
            float v = (float)b[j];
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    }
    for (size_t j = 0; j < nf; j++) {
        lo[j] = s_byte_value((uint8_t)lo[j]);
        hi[j] = s_byte_value((uint8_t)hi[j]);
    }
}

/* ---- serialized form ---- */

typedef struct {
    uint32_t magic, version, task, n_samples, n_features, n_classes, n_targets, reserved;
} s_spds_header_t;
static_assert(sizeof(s_spds_header_t) == SP_DATASET_HEADER_BYTES, "SPDS header is 32 bytes");

static void s_put_floats(uint8_t *p, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        sp_put_le32(p + 4 * i, u);
    }
}

static void s_get_floats(float *v, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = sp_get_le32(p + 4 * i);
        memcpy(&v[i], &u, 4);
    }
}

/* Bytes of the serialized form of this version and shape; 0 when it cannot
 * exist here. */
static uint64_t s_spds_len(uint32_t version, uint64_t ns, uint64_t nf)
{
    uint64_t x_bytes = version == SP_DATASET_VERSION_BYTES ? ns * nf : 4 * ns * nf;
    uint64_t v = SP_DATASET_HEADER_BYTES + x_bytes + 4 * ns + 4;
    return v > SIZE_MAX ? 0 : v;
}

/* True when every x[i] is, bit for bit, s_byte_value of some byte. */
static int s_all_bytes(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float s = x[i] * 255.0f;
        if (!(s >= 0.0f && s <= 255.0f)) {
            return 0;
        }
        float back = s_byte_value((uint8_t)lrintf(s));
        if (memcmp(&back, &x[i], sizeof back) != 0) {
            return 0; /* not a byte's value, or -0 */
        }
    }
    return 1;
}

/* sp_dataset_key of len bytes whose CRC-32 (of all of them) is crc. */
static uint64_t s_key(size_t len, uint32_t crc)
{
    return ((uint64_t)(len & 0xffffffffu) << 32) | crc;
}

/* The serialized form's version for d and its length; SP_E_RANGE for an
 * empty or oversized set. */
static int s_spds_plan(const sp_dataset_t *d, uint32_t *version, size_t *total)
{
    if (d->n_samples == 0 || d->n_samples > SP_DATASET_MAX_SAMPLES || d->n_features == 0 ||
        d->n_features > SP_DATASET_MAX_FEATURES) {
        return SP_E_RANGE;
    }
    size_t nx = (size_t)d->n_samples * d->n_features;
    *version =
        !d->x || s_all_bytes(d->x, nx) ? SP_DATASET_VERSION_BYTES : SP_DATASET_VERSION_FLOATS;
    uint64_t n = s_spds_len(*version, d->n_samples, d->n_features);
    *total = (size_t)n;
    return n == 0 ? SP_E_RANGE : SP_OK;
}

/* Where the serialized form goes, piece by piece. */
typedef struct {
    int (*put)(void *arg, const uint8_t *p, size_t n);
    void *arg;
    uint32_t crc; /* CRC-32 of every byte put so far */
} s_sink_t;

static int s_put(s_sink_t *k, const uint8_t *p, size_t n)
{
    k->crc = sp_crc32_update(k->crc, p, n);
    return k->put(k->arg, p, n);
}

#define S_EMIT_CHUNK 4096 /* floats converted at a time */

/* n floats as little-endian bytes, a chunk at a time. */
static int s_put_float_run(s_sink_t *k, const float *v, size_t n)
{
    uint8_t chunk[4 * S_EMIT_CHUNK];
    int rc = SP_OK;
    for (size_t at = 0; at < n && rc == SP_OK; at += S_EMIT_CHUNK) {
        size_t m = n - at < S_EMIT_CHUNK ? n - at : S_EMIT_CHUNK;
        s_put_floats(chunk, v + at, m);
        rc = s_put(k, chunk, 4 * m);
    }
    return rc;
}

/* The serialized form of d in the given version, CRC-32 trailer included:
 * the one writer of the layout, for memory and for files. */
static int s_emit(const sp_dataset_t *d, uint32_t version, s_sink_t *k)
{
    uint8_t head[SP_DATASET_HEADER_BYTES];
    memcpy(head, SP_DATASET_MAGIC, 4);
    sp_put_le32(head + 4, version);
    sp_put_le32(head + 8, (uint32_t)d->task);
    sp_put_le32(head + 12, d->n_samples);
    sp_put_le32(head + 16, d->n_features);
    sp_put_le32(head + 20, d->n_classes);
    sp_put_le32(head + 24, d->n_targets);
    sp_put_le32(head + 28, 0);
    int rc = s_put(k, head, sizeof head);
    size_t nx = (size_t)d->n_samples * d->n_features;
    if (rc == SP_OK && !d->x) {
        rc = s_put(k, d->xb, nx);
    } else if (rc == SP_OK && version == SP_DATASET_VERSION_BYTES) {
        uint8_t chunk[S_EMIT_CHUNK];
        for (size_t at = 0; at < nx && rc == SP_OK; at += S_EMIT_CHUNK) {
            size_t m = nx - at < S_EMIT_CHUNK ? nx - at : S_EMIT_CHUNK;
            for (size_t i = 0; i < m; i++) {
                chunk[i] = (uint8_t)lrintf(d->x[at + i] * 255.0f);
            }
            rc = s_put(k, chunk, m);
        }
    } else if (rc == SP_OK) {
        rc = s_put_float_run(k, d->x, nx);
    }
    if (rc == SP_OK) {
        rc = s_put_float_run(k, d->y, d->n_samples);
    }
    uint8_t crc[4];
    sp_put_le32(crc, k->crc);
    return rc == SP_OK ? s_put(k, crc, sizeof crc) : rc;
}

static int s_put_memory(void *arg, const uint8_t *p, size_t n)
{
    uint8_t **at = arg;
    memcpy(*at, p, n);
    *at += n;
    return SP_OK;
}

static int s_put_fd(void *arg, const uint8_t *p, size_t n)
{
    return sp_file_write_all(*(const int *)arg, p, n);
}

int sp_dataset_serialize(const sp_dataset_t *d, uint8_t **buf, size_t *len)
{
    uint32_t version;
    size_t total;
    int rc = s_spds_plan(d, &version, &total);
    if (rc != SP_OK) {
        return rc;
    }
    uint8_t *b = malloc(total);
    if (!b) {
        return SP_E_NOMEM;
    }
    uint8_t *at = b;
    s_sink_t k = {s_put_memory, &at, 0};
    (void)s_emit(d, version, &k); /* memory takes every piece */
    *buf = b;
    *len = total;
    return SP_OK;
}

int sp_dataset_write(const sp_dataset_t *d, int fd, size_t *len, uint64_t *key)
{
    uint32_t version;
    size_t total;
    int rc = s_spds_plan(d, &version, &total);
    if (rc != SP_OK) {
        return rc;
    }
    s_sink_t k = {s_put_fd, &fd, 0};
    rc = s_emit(d, version, &k);
    if (rc == SP_OK) {
        *len = total;
        *key = s_key(total, k.crc);
    }
    return rc;
}

uint32_t sp_dataset_checksum(const uint8_t *buf, size_t len)
{
    return len < 4 ? 0 : sp_get_le32(buf + len - 4);
}

uint64_t sp_dataset_key(const uint8_t *buf, size_t len)
{
    return s_key(len, sp_crc32(buf, len));
}

/* Offset of the labels in a serialized dataset of len bytes (after x). */
static size_t s_spds_y_at(const s_spds_header_t *h, size_t len)
{
    return len - 4 - 4 * (size_t)h->n_samples;
}

/* Checks a serialized dataset whole (header, length, CRC, finite features,
 * valid labels) without allocating; its header into *h and, when key is not
 * NULL, its sp_dataset_key into *key (from the one CRC pass the check
 * makes). */
static int s_spds_check(const uint8_t *buf, size_t len, s_spds_header_t *h, uint64_t *key,
                        char *err, size_t errlen)
{
    if (len < SP_DATASET_HEADER_BYTES + 4) {
        return sp_err_input(err, errlen, "dataset: truncated: %zu bytes, header needs %d", len,
                            SP_DATASET_HEADER_BYTES + 4);
    }
    if (memcmp(buf, SP_DATASET_MAGIC, 4) != 0) {
        return sp_err_input(err, errlen, "dataset: offset 0: bad magic (not an SPDS file)");
    }
    uint32_t version = sp_get_le32(buf + 4);
    if (version != SP_DATASET_VERSION_FLOATS && version != SP_DATASET_VERSION_BYTES) {
        sp_err_input(err, errlen,
                     "dataset: offset 4: format version %u, this build reads %u and %u", version,
                     SP_DATASET_VERSION_FLOATS, SP_DATASET_VERSION_BYTES);
        return SP_E_VERSION;
    }
    *h = (s_spds_header_t){0,
                           version,
                           sp_get_le32(buf + 8),
                           sp_get_le32(buf + 12),
                           sp_get_le32(buf + 16),
                           sp_get_le32(buf + 20),
                           sp_get_le32(buf + 24),
                           sp_get_le32(buf + 28)};
    if (h->n_samples == 0 || h->n_samples > SP_DATASET_MAX_SAMPLES) {
        return sp_err_input(err, errlen, "dataset: offset 12: n_samples %u out of range",
                            h->n_samples);
    }
    if (h->n_features == 0 || h->n_features > SP_DATASET_MAX_FEATURES) {
        return sp_err_input(err, errlen, "dataset: offset 16: n_features %u out of range",
                            h->n_features);
    }
    uint64_t want = s_spds_len(version, h->n_samples, h->n_features);
    if (want != len) {
        return sp_err_input(err, errlen, "dataset: length %zu bytes, header declares %llu", len,
                            (unsigned long long)want);
    }
    uint32_t stored = sp_get_le32(buf + len - 4), computed = sp_crc32(buf, len - 4);
    if (stored != computed) {
        return sp_err_input(err, errlen,
                            "dataset: offset %zu: CRC-32 mismatch (stored 0x%08x, computed 0x%08x)",
                            len - 4, stored, computed);
    }
    if (key) {
        *key = s_key(len, sp_crc32_update(computed, buf + len - 4, 4));
    }
    if (h->task == SP_TASK_CLASSIFY) {
        if (h->n_classes == 0 || h->n_classes > SP_DATASET_MAX_CLASSES ||
            h->n_targets != h->n_classes) {
            return sp_err_input(err, errlen,
                                "dataset: offset 20: n_classes %u / n_targets %u invalid",
                                h->n_classes, h->n_targets);
        }
    } else if (h->task == SP_TASK_REGRESS) {
        if (h->n_classes != 0 || h->n_targets != 1) {
            return sp_err_input(err, errlen,
                                "dataset: offset 20: regression needs n_classes 0 and n_targets 1");
        }
    } else {
        return sp_err_input(err, errlen, "dataset: offset 8: unknown task %u", h->task);
    }
    if (h->reserved != 0) {
        return sp_err_input(err, errlen, "dataset: offset 28: reserved field is not 0");
    }
    size_t nx = (size_t)h->n_samples * h->n_features, y_at = s_spds_y_at(h, len);
    if (version == SP_DATASET_VERSION_FLOATS) {
        float chunk[1024];
        for (size_t at = 0; at < nx; at += 1024) {
            size_t n = nx - at < 1024 ? nx - at : 1024;
            s_get_floats(chunk, buf + SP_DATASET_HEADER_BYTES + 4 * at, n);
            size_t i = sp_kern_first_nonfinite(chunk, n);
            if (i < n) {
                return sp_err_input(err, errlen, "dataset: offset %zu: x[%zu] is not finite",
                                    SP_DATASET_HEADER_BYTES + 4 * (at + i), at + i);
            }
        }
    }
    for (size_t i = 0; i < h->n_samples; i++) {
        float v;
        s_get_floats(&v, buf + y_at + 4 * i, 1);
        int bad = !isfinite(v);
        if (!bad && h->task == SP_TASK_CLASSIFY) {
            bad = v < 0.0f || v != floorf(v) || v >= (float)h->n_classes;
        }
        if (bad) {
            return sp_err_input(err, errlen, "dataset: offset %zu: y[%zu] is not a valid target",
                                y_at + 4 * i, i);
        }
    }
    return SP_OK;
}

/* The checked buffer's labels into a new y, and its shape into *out (x and
 * xb left for the caller). */
static int s_spds_begin(const uint8_t *buf, size_t len, const s_spds_header_t *h, sp_dataset_t *out)
{
    float *y = malloc((size_t)h->n_samples * sizeof *y);
    if (!y) {
        return SP_E_NOMEM;
    }
    s_get_floats(y, buf + s_spds_y_at(h, len), h->n_samples);
    memset(out, 0, sizeof *out);
    out->task = (sp_task_t)h->task;
    out->n_samples = h->n_samples;
    out->n_features = h->n_features;
    out->n_classes = h->n_classes;
    out->n_targets = h->n_targets;
    out->y = y;
    return SP_OK;
}

int sp_dataset_deserialize(const uint8_t *buf, size_t len, sp_dataset_t *out, char *err,
                           size_t errlen)
{
    s_spds_header_t h;
    int rc = s_spds_check(buf, len, &h, NULL, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    sp_dataset_t d;
    if (s_spds_begin(buf, len, &h, &d) != SP_OK) {
        return SP_E_NOMEM;
    }
    size_t nx = (size_t)h.n_samples * h.n_features;
    const uint8_t *p = buf + SP_DATASET_HEADER_BYTES;
    if (h.version == SP_DATASET_VERSION_BYTES) {
        d.xb = malloc(nx);
        if (d.xb) {
            memcpy(d.xb, p, nx);
        }
    } else {
        d.x = malloc(nx * sizeof *d.x);
        if (d.x) {
            s_get_floats(d.x, p, nx);
        }
    }
    if (!d.x && !d.xb) {
        sp_dataset_fini(&d);
        return SP_E_NOMEM;
    }
    *out = d;
    return SP_OK;
}

int sp_dataset_deserialize_take(uint8_t **buf, size_t len, sp_dataset_t *out, uint64_t *key,
                                char *err, size_t errlen)
{
    s_spds_header_t h;
    int rc = s_spds_check(*buf, len, &h, key, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    sp_dataset_t d;
    if (s_spds_begin(*buf, len, &h, &d) != SP_OK) {
        return SP_E_NOMEM;
    }
    /* the features move to the front of the buffer, which shrinks to them */
    size_t nx = (size_t)h.n_samples * h.n_features;
    size_t x_bytes = s_spds_y_at(&h, len) - SP_DATASET_HEADER_BYTES;
    uint8_t *b = *buf;
    memmove(b, b + SP_DATASET_HEADER_BYTES, x_bytes);
    uint8_t *shrunk = realloc(b, x_bytes);
    b = shrunk ? shrunk : b;
    if (h.version == SP_DATASET_VERSION_BYTES) {
        d.xb = b;
    } else {
        d.x = (float *)(void *)b;
        s_get_floats(d.x, b, nx); /* in place: the same bytes on a little-endian host */
    }
    *buf = NULL;
    *out = d;
    return SP_OK;
}
