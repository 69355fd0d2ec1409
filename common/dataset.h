/* dataset: training data in memory, and the strict parsers that make it from
 * CSV text and IDX (MNIST) files, gzip or not. A parser either returns a whole
 * valid dataset or an error naming the line / byte offset that is wrong, and
 * allocates nothing it does not hand back. */
#ifndef SP_DATASET_H
#define SP_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SP_TASK_CLASSIFY = 0, SP_TASK_REGRESS = 1 } sp_task_t;

#define SP_DATASET_MAX_FEATURES 65536
#define SP_DATASET_MAX_SAMPLES 50000000u
#define SP_DATASET_MAX_CLASSES 65536
/* Largest decompressed IDX file accepted (bytes); bounds gunzip before parsing. */
#define SP_DATASET_MAX_IDX_BYTES ((size_t)1 << 30)
/* Longest CSV field (bytes, after trimming spaces) that can be a number. */
#define SP_DATASET_MAX_FIELD 64

typedef struct {
    sp_task_t task;
    uint32_t n_samples;
    uint32_t n_features;
    uint32_t n_classes; /* classify: labels are 0..n_classes-1; regress: 0 */
    uint32_t n_targets; /* regress: 1 (the label column); classify: n_classes */
    float *x;           /* n_samples * n_features, row-major, finite; NULL
                           when xb holds the features */
    uint8_t *xb;        /* or the features as bytes b, each b / 255.0f
                           (images: a quarter of the memory). Exactly one of
                           x and xb is set; sp_dataset_gather and
                           sp_dataset_rows read either. */
    float *y;           /* classify: label per sample (integral float);
                           regress: target per sample */
} sp_dataset_t;

typedef struct {
    int label_column; /* -1 = last (default), 0 = first, N = column N (0-based) */
    sp_task_t task;
    int has_header; /* -1 = detect, 0 = no, 1 = yes */
} sp_csv_opts_t;

void sp_csv_opts_default(sp_csv_opts_t *o);

/* Frees the arrays (NULL-safe) and zeroes the struct. */
void sp_dataset_fini(sp_dataset_t *d);

/* Parses CSV text of len bytes (numeric; optional header line; o NULL means
 * sp_csv_opts_default). Fields are
 * separated by ',' and may carry spaces or tabs around them; lines end in LF
 * or CRLF; a UTF-8 BOM is skipped; blank lines are allowed only at the end.
 * Header detection (has_header = -1): the first line is a header when at
 * least one of its fields is text (not a number, not empty); a first line of
 * numbers is data. A header's field count is not checked, so scikit-learn's
 * bundled files (first line "150,4,setosa,versicolor,virginica": sample
 * count, feature count, class names) load as plain headed CSV.
 * Errors (SP_E_INPUT, message naming the 1-based line and column): empty file,
 * no data rows, ragged rows, text or an empty field in a numeric column, NaN or
 * infinity or a value beyond float range, a class label that is not an integer
 * in [0, SP_DATASET_MAX_CLASSES), a label column beyond the row, too many
 * rows or features. SP_E_NOMEM when allocation fails. *out is set only on
 * success (the caller fini's it). */
int sp_dataset_parse_csv(const char *text, size_t len, const sp_csv_opts_t *o, sp_dataset_t *out,
                         char *err, size_t errlen);
/* Parses IDX images (magic 0x00000803, ubyte; held as xb, feature b / 255.0f)
 * and IDX labels (0x00000801); either buffer may be gzip-compressed. Dimensions are bounded
 * (1..SP_DATASET_MAX_SAMPLES samples, rows * cols <= SP_DATASET_MAX_FEATURES)
 * before anything is allocated; a gzip stream is inflated only up to the size
 * its own IDX header declares; the data length must be exactly that size.
 * Errors (SP_E_INPUT) name the file ("images" / "labels") and the byte offset:
 * bad magic, unsupported element type, bad dimensions, truncated or trailing
 * data, corrupt gzip, counts that do not match. The result is a classification
 * set with n_classes = max label + 1. *out is set only on success. */
int sp_dataset_parse_idx(const uint8_t *images, size_t images_len, const uint8_t *labels,
                         size_t labels_len, sp_dataset_t *out, char *err, size_t errlen);

/* Reads a whole file (gunzipped when it starts with the gzip magic) into a
 * malloc'ed buffer the caller frees; max_bytes bounds both the file and the
 * decompressed result. SP_E_IO (errno kept) when the file cannot be opened or
 * read, SP_E_INPUT when it is too large or its gzip stream is corrupt. */
int sp_file_read_all(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, char *err,
                     size_t errlen);
/* Gunzips buf if it starts with the gzip magic 1f 8b (else copies it) into a
 * malloc'ed *out (caller frees; never NULL on success, even for 0 bytes).
 * Concatenated gzip members are joined. SP_E_INPUT when the output would
 * exceed max_bytes, the stream is corrupt or truncated, or bytes follow it. */
int sp_gunzip_maybe(const uint8_t *buf, size_t len, size_t max_bytes, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen);

/* Targets for training: classify -> one-hot rows of n_classes; regress -> the
 * value. T must hold n_samples * n_targets floats. */
void sp_dataset_targets(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *T);
/* Rows idx[0..n) of the features into X (n * n_features floats). */
void sp_dataset_gather(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *X);
/* Rows first..first+n of the features into X (n * n_features floats). */
void sp_dataset_rows(const sp_dataset_t *d, uint32_t first, size_t n, float *X);
/* True when a and b hold the same samples (shape, features and labels), bit
 * for bit, however each holds its features. */
int sp_dataset_same(const sp_dataset_t *a, const sp_dataset_t *b);
/* Each feature's smallest and largest value over all samples into lo and hi
 * (n_features floats each). */
void sp_dataset_feature_range(const sp_dataset_t *d, float *lo, float *hi);

/* Compact binary form used by the coordinator's state directory and the
 * worker's cache. Every integer and float is little-endian:
 *   offset  bytes           field
 *   0       4               magic "SPDS"
 *   4       4               version: 1 (x as float32) or 2 (x as bytes)
 *   8       4               task (0 classify, 1 regress)
 *   12      4               n_samples  (1 .. SP_DATASET_MAX_SAMPLES)
 *   16      4               n_features (1 .. SP_DATASET_MAX_FEATURES)
 *   20      4               n_classes  (classify 1 .. SP_DATASET_MAX_CLASSES; regress 0)
 *   24      4               n_targets  (classify n_classes; regress 1)
 *   28      4               reserved, 0
 *   32      4 * ns * nf     x, float32, row-major (version 1)
 *           ns * nf         x as bytes b, row-major, each the feature
 *                           b / 255.0f (version 2)
 *   ..      4 * ns          y, float32
 *   len-4   4               CRC-32 (zlib crc32) of bytes [0, len-4)
 * The CRC doubles as the dataset's checksum (sp_dataset_checksum). A
 * dataset whose every feature is b / 255.0f for a byte b (bit for bit: the
 * images of an IDX file) is written as version 2, a quarter of the size for
 * the store and for every worker's download; any other as version 1. Both
 * are read; version 2 is read into xb, version 1 into x. */
#define SP_DATASET_MAGIC "SPDS"
#define SP_DATASET_VERSION_FLOATS 1u
#define SP_DATASET_VERSION_BYTES 2u
#define SP_DATASET_HEADER_BYTES 32
/* Serializes a valid dataset into a malloc'ed *buf of *len bytes (caller
 * frees). SP_E_RANGE for an empty or oversized dataset, SP_E_NOMEM. */
int sp_dataset_serialize(const sp_dataset_t *d, uint8_t **buf, size_t *len);
/* Writes the same bytes to fd, a piece at a time (no copy of the whole
 * set in memory), and gives their length and sp_dataset_key. SP_E_RANGE as
 * above, SP_E_IO (errno kept) when a write fails. */
int sp_dataset_write(const sp_dataset_t *d, int fd, size_t *len, uint64_t *key);
/* Strict inverse of either version: magic, version (SP_E_VERSION), exact
 * length, CRC, header ranges, finite values and valid labels are all checked
 * before *out is set; any failure is SP_E_INPUT with a message naming the
 * field or offset. */
int sp_dataset_deserialize(const uint8_t *buf, size_t len, sp_dataset_t *out, char *err,
                           size_t errlen);
/* The same for a malloc'ed *buf that the dataset may take over: on success
 * the features are moved to the front of the buffer, which becomes x or xb
 * (shrunk by realloc), *buf is set to NULL, so a large set is never held
 * twice, and *key (when key is not NULL) is the bytes' sp_dataset_key, got
 * from the CRC pass the check makes anyway; on failure *buf is left as it
 * was, unchanged. */
int sp_dataset_deserialize_take(uint8_t **buf, size_t len, sp_dataset_t *out, uint64_t *key,
                                char *err, size_t errlen);
/* CRC-32 stored at the end of a serialized dataset (0 when len < 4). */
uint32_t sp_dataset_checksum(const uint8_t *buf, size_t len);
/* The 64-bit checksum the trainer names a serialized dataset by (its
 * workers' cache key, proto/PROTOCOL.md): the size modulo 2^32 in the high
 * half and the CRC-32 of all len bytes in the low half, so a truncated or
 * extended copy never matches. */
uint64_t sp_dataset_key(const uint8_t *buf, size_t len);

#endif
