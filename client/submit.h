/* submit: uploading a dataset file (or an IDX images + labels pair) to the
 * coordinator in CRC-checked chunks. Used by `submit` and `demo`. */
#ifndef SP_CLIENT_SUBMIT_H
#define SP_CLIENT_SUBMIT_H

#include "client/cli.h"
#include "client/datafile.h"

/* Streams file (and labels for IDX) under name; succeeds only when the
 * coordinator replies that the dataset is durably stored, and fills *info.
 * o->format must be set (sp_datafile_check). Returns an SP_EXIT_* code,
 * failures reported. */
int sp_submit_upload(sp_cli_t *c, const char *name, const sp_datafile_opts_t *o, const char *file,
                     const char *labels, sp_dataset_info_t *info);

#endif
