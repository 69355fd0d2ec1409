/* datafile: data-file options, format guessing and local loading for the
 * client. Loading goes through the same library parsers the coordinator
 * uses, so `eval` accepts exactly what `submit` would. */
#include "client/datafile.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define S_MAX_FILE_BYTES ((size_t)8 << 30) /* largest data file eval reads, 8 GiB */

const char sp_datafile_help[] =
    "  --format csv|idx        file format (guessed from the name: *idx* or *ubyte*\n"
    "                          is IDX, *.csv or *.csv.gz is CSV)\n"
    "  --label-column last|first|N  CSV column holding the label (default last)\n"
    "  --task classify|regress classification (integer labels) or regression\n"
    "                          (default classify; IDX is always classify)\n"
    "  --header auto|yes|no    whether the CSV has a header line (default auto)\n";

void sp_datafile_opts_default(sp_datafile_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->label_column = -1;
    o->task = SP_TASK_CLASSIFY;
    o->header = -1;
}

int sp_datafile_option(const sp_cli_t *c, int argc, char **argv, int *i, sp_datafile_opts_t *o)
{
    const char *v = NULL;
    int m;
    if ((m = sp_args_value(c, argc, argv, i, "--format", &v)) != 0) {
        if (m < 0) {
            return -1;
        }
        if (strcmp(v, "csv") != 0 && strcmp(v, "idx") != 0) {
            sp_cli_report(c, SP_EXIT_USAGE, "bad value for --format: '%s' (csv or idx)", v);
            return -1;
        }
        strcpy(o->format, v);
        return 1;
    }
    if ((m = sp_args_value(c, argc, argv, i, "--label-column", &v)) != 0) {
        if (m < 0) {
            return -1;
        }
        if (strcmp(v, "last") == 0) {
            o->label_column = -1;
        } else if (strcmp(v, "first") == 0) {
            o->label_column = 0;
        } else {
            uint32_t n = 0;
            if (sp_args_u32(c, "--label-column", v, 0, SP_DATASET_MAX_FEATURES, &n) != 0) {
                return -1;
            }
            o->label_column = (int)n;
        }
        return 1;
    }
    if ((m = sp_args_value(c, argc, argv, i, "--task", &v)) != 0) {
        if (m < 0) {
            return -1;
        }
        if (strcmp(v, "classify") == 0) {
            o->task = SP_TASK_CLASSIFY;
        } else if (strcmp(v, "regress") == 0) {
            o->task = SP_TASK_REGRESS;
        } else {
            sp_cli_report(c, SP_EXIT_USAGE, "bad value for --task: '%s' (classify or regress)", v);
            return -1;
        }
        return 1;
    }
    if ((m = sp_args_value(c, argc, argv, i, "--header", &v)) != 0) {
        if (m < 0) {
            return -1;
        }
        if (strcmp(v, "auto") == 0) {
            o->header = -1;
        } else if (strcmp(v, "yes") == 0) {
            o->header = 1;
        } else if (strcmp(v, "no") == 0) {
            o->header = 0;
        } else {
            sp_cli_report(c, SP_EXIT_USAGE, "bad value for --header: '%s' (auto, yes or no)", v);
            return -1;
        }
        return 1;
    }
    return 0;
}

int sp_datafile_args(sp_cli_t *c, int argc, char **argv, const char *usage,
                     sp_datafile_opts_t *o, const char *pos[3], int *n)
{
    *n = 0;
    for (int i = 1; i < argc; i++) {
        if (sp_args_is_help(argv[i])) {
            return SP_DATAFILE_ARGS_HELP;
        }
        int m = sp_datafile_option(c, argc, argv, &i, o);
        if (m == 0) {
            m = sp_args_rest(c, argc, argv, &i, pos, n, 3);
        }
        if (m < 0) {
            return SP_EXIT_USAGE;
        }
    }
    if (*n < 2) {
        return sp_cli_report(c, SP_EXIT_USAGE, "%s: usage: %s", argv[0], usage);
    }
    return SP_DATAFILE_ARGS_OK;
}

static int s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int sp_datafile_check(const sp_cli_t *c, sp_datafile_opts_t *o, const char *file,
                      const char *labels)
{
    if (!o->format[0]) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        if (strstr(base, "idx") || strstr(base, "ubyte")) {
            strcpy(o->format, "idx");
        } else if (s_ends_with(base, ".csv") || s_ends_with(base, ".csv.gz")) {
            strcpy(o->format, "csv");
        } else if (labels) {
            strcpy(o->format, "idx");
        } else {
            return sp_cli_report(c, SP_EXIT_USAGE,
                                 "cannot tell the format of '%s' from its name: give --format "
                                 "csv or --format idx",
                                 file);
        }
    }
    if (strcmp(o->format, "idx") == 0 && !labels) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "an IDX images file needs its IDX labels file: FILE LABELS_FILE");
    }
    if (strcmp(o->format, "csv") == 0 && labels) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "a CSV file holds its labels in a column: no LABELS_FILE ('%s')",
                             labels);
    }
    if (strcmp(o->format, "idx") == 0 && o->task == SP_TASK_REGRESS) {
        return sp_cli_report(c, SP_EXIT_USAGE, "IDX data is for classification (--task classify)");
    }
    return SP_EXIT_OK;
}

int sp_datafile_load(const sp_cli_t *c, const sp_datafile_opts_t *o, const char *file,
                     const char *labels, sp_dataset_t *out)
{
    char err[512] = "";
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    int rc = sp_file_read_all(file, S_MAX_FILE_BYTES, &a, &alen, err, sizeof err);
    if (rc != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", file, err[0] ? err : sp_strerror(rc));
    }
    if (strcmp(o->format, "idx") == 0) {
        rc = sp_file_read_all(labels, S_MAX_FILE_BYTES, &b, &blen, err, sizeof err);
        if (rc != SP_OK) {
            free(a);
            return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", labels, err[0] ? err : sp_strerror(rc));
        }
        rc = sp_dataset_parse_idx(a, alen, b, blen, out, err, sizeof err);
    } else {
        sp_csv_opts_t co;
        sp_csv_opts_default(&co);
        co.label_column = o->label_column;
        co.task = o->task;
        co.has_header = o->header;
        rc = sp_dataset_parse_csv((const char *)a, alen, &co, out, err, sizeof err);
    }
    free(a);
    free(b);
    if (rc != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", file, err[0] ? err : sp_strerror(rc));
    }
    return SP_EXIT_OK;
}
