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

typedef struct {
    sp_task_t task;
    uint32_t n_samples;
    uint32_t n_features;
    uint32_t n_classes;  /* classify: labels are 0..n_classes-1; regress: 0 */
    uint32_t n_targets;  /* regress: 1 (the label column); classify: n_classes */
    float *x;            /* n_samples * n_features, row-major, finite */
    float *y;            /* classify: label per sample (integral float);
                            regress: target per sample */
} sp_dataset_t;

typedef struct {
    int label_column;    /* -1 = last (default), 0 = first, N = column N (0-based) */
    sp_task_t task;
    int has_header;      /* -1 = detect, 0 = no, 1 = yes */
} sp_csv_opts_t;

void sp_csv_opts_default(sp_csv_opts_t *o);

/* Frees the arrays (NULL-safe) and zeroes the struct. */
void sp_dataset_fini(sp_dataset_t *d);

/* Parses CSV text of len bytes (numeric; optional header line). Errors
 * (SP_E_INPUT, message in err): ragged rows, text in a numeric column, NaN or
 * infinity, a non-integral or negative class label, no rows. */
int sp_dataset_parse_csv(const char *text, size_t len, const sp_csv_opts_t *o, sp_dataset_t *out,
                         char *err, size_t errlen);
/* Parses IDX images (magic 0x00000803, ubyte, scaled to [0, 1]) and IDX labels
 * (0x00000801); either buffer may be gzip-compressed. Errors name the file and
 * offset: bad magic, truncated data, counts that do not match. */
int sp_dataset_parse_idx(const uint8_t *images, size_t images_len, const uint8_t *labels,
                         size_t labels_len, sp_dataset_t *out, char *err, size_t errlen);

/* Reads a whole file (gunzipped when it starts with the gzip magic) into a
 * malloc'ed buffer; max_bytes bounds the result. */
int sp_file_read_all(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, char *err,
                     size_t errlen);
/* Gunzips buf if it starts with the gzip magic (else copies it). */
int sp_gunzip_maybe(const uint8_t *buf, size_t len, size_t max_bytes, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen);

/* Targets for training: classify -> one-hot rows of n_classes; regress -> the
 * value. T must hold n_samples * n_targets floats. */
void sp_dataset_targets(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *T);
/* Rows idx[0..n) of x into X (n * n_features). */
void sp_dataset_gather(const sp_dataset_t *d, const uint32_t *idx, size_t n, float *X);

/* Compact binary form used by the coordinator's state directory and the
 * worker's cache (docs/DESIGN.md): magic, version, header, x, y, CRC-32. */
int sp_dataset_serialize(const sp_dataset_t *d, uint8_t **buf, size_t *len);
int sp_dataset_deserialize(const uint8_t *buf, size_t len, sp_dataset_t *out, char *err,
                           size_t errlen);

#endif
