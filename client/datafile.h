/* datafile: the data-file options that `submit` and `eval` share
 * (--format, --label-column, --task, --header), guessing the format from
 * the file name, and loading a file locally with the library's strict
 * parsers (eval). */
#ifndef SP_CLIENT_DATAFILE_H
#define SP_CLIENT_DATAFILE_H

#include "client/cli.h"
#include "common/dataset.h"

typedef struct {
    char format[8];   /* "csv", "idx", or "" until given or guessed */
    int label_column; /* -1 last, 0 first, N (CSV only) */
    sp_task_t task;   /* classify (default) or regress */
    int header;       /* -1 detect, 0 no, 1 yes (CSV only) */
} sp_datafile_opts_t;

void sp_datafile_opts_default(sp_datafile_opts_t *o);
/* Consumes argv[*i] when it is one of the data-file options: 1 consumed,
 * 0 not one of them, -1 usage error (reported). */
int sp_datafile_option(const sp_cli_t *c, int argc, char **argv, int *i, sp_datafile_opts_t *o);
/* What sp_datafile_args found. */
#define SP_DATAFILE_ARGS_OK 0
#define SP_DATAFILE_ARGS_HELP 1 /* --help given: the caller prints its usage */
/* Parses the command line that submit and eval share (argv[0] is the
 * command's name, used in messages): up to three positionals into pos[] (*n
 * of them), the data-file options into o, the global options into c; at
 * least two positionals are required, `usage` is the line printed when they
 * are missing. SP_DATAFILE_ARGS_OK, _HELP, or SP_EXIT_USAGE (reported). */
int sp_datafile_args(sp_cli_t *c, int argc, char **argv, const char *usage,
                     sp_datafile_opts_t *o, const char *pos[3], int *n);
/* Fills o->format from the file names when not given (a name holding "idx"
 * or "ubyte" is IDX, one ending in .csv or .csv.gz is CSV) and checks that
 * the labels file is there exactly for IDX. SP_EXIT_OK or SP_EXIT_USAGE. */
int sp_datafile_check(const sp_cli_t *c, sp_datafile_opts_t *o, const char *file,
                      const char *labels);
/* Reads and parses the file(s) into *out. SP_EXIT_OK, or SP_EXIT_FAIL with
 * the parser's message reported. */
int sp_datafile_load(const sp_cli_t *c, const sp_datafile_opts_t *o, const char *file,
                     const char *labels, sp_dataset_t *out);
/* Help text lines for the options. */
extern const char sp_datafile_help[];

#endif
