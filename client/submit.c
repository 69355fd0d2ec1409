/* submit: the `submit` command. The raw bytes of each file (gzip or not:
 * the coordinator gunzips) are streamed in chunks of at most SP_CHUNK_MAX,
 * each acknowledged before the next is sent; the CRC-32 of every part is
 * announced first, so the coordinator can refuse a corrupted upload. */
#include "client/submit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "client/commands.h"
#include "client/json.h"
#include "client/report.h"
#include "common/error.h"

#define S_MAX_PART_BYTES ((uint64_t)4 << 30) /* the protocol's bound on one part */
#define S_CHECK_POLL_MIN_MS 10  /* first wait before asking again whether a set is stored */
#define S_CHECK_POLL_MAX_MS 250 /* longest wait between two such questions */

/* Size and CRC-32 of a whole file, read in chunks. */
static int s_scan(const sp_cli_t *c, const char *path, uint64_t *size, uint32_t *crc, uint8_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return sp_cli_report(c, SP_EXIT_FAIL, "cannot open %s: %s", path, strerror(errno));
    }
    uLong sum = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, SP_CHUNK_MAX, f)) > 0) {
        sum = crc32(sum, buf, (uInt)n);
        total += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        return sp_cli_report(c, SP_EXIT_FAIL, "cannot read %s", path);
    }
    if (total == 0) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s is empty", path);
    }
    if (total > S_MAX_PART_BYTES) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s is larger than 4 GiB", path);
    }
    *size = total;
    *crc = (uint32_t)sum;
    return SP_EXIT_OK;
}

static int s_send_part(sp_cli_t *c, uint64_t upload, uint32_t part, const char *path, uint64_t size,
                       uint8_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return sp_cli_report(c, SP_EXIT_FAIL, "cannot open %s: %s", path, strerror(errno));
    }
    uint64_t off = 0;
    while (off < size) {
        size_t want = size - off < SP_CHUNK_MAX ? (size_t)(size - off) : SP_CHUNK_MAX;
        size_t n = fread(buf, 1, want, f);
        if (n != want) {
            fclose(f);
            return sp_cli_report(c, SP_EXIT_FAIL, "%s changed while it was being sent", path);
        }
        sp_msg_t req, rep;
        sp_msg_init(&req, SP_MSG_UPLOAD_CHUNK);
        req.u.upload_chunk.upload = upload;
        req.u.upload_chunk.part = part;
        req.u.upload_chunk.offset = off;
        req.u.upload_chunk.data.data = buf; /* borrowed: not freed through req */
        req.u.upload_chunk.data.len = n;
        int rc = sp_cli_call(c, &req, 0, &rep); /* any acknowledgement; ERROR fails */
        if (rc != SP_EXIT_OK) {
            fclose(f);
            return rc;
        }
        sp_msg_fini(&rep);
        off += n;
    }
    fclose(f);
    return SP_EXIT_OK;
}

int sp_submit_upload(sp_cli_t *c, const char *name, const sp_datafile_opts_t *o, const char *file,
                     const char *labels, sp_dataset_info_t *info)
{
    uint8_t *buf = malloc(SP_CHUNK_MAX);
    if (!buf) {
        return sp_cli_report(c, SP_EXIT_FAIL, "out of memory");
    }
    sp_msg_t req, rep;
    sp_msg_init(&req, SP_MSG_UPLOAD_BEGIN);
    sp_msg_upload_begin_t *b = &req.u.upload_begin;
    snprintf(b->name, sizeof b->name, "%s", name);
    snprintf(b->format, sizeof b->format, "%s", o->format);
    snprintf(b->task, sizeof b->task, "%s", o->task == SP_TASK_REGRESS ? "regress" : "classify");
    b->label_column = o->label_column;
    b->header = o->header;
    const char *paths[2] = {file, labels};
    b->n_parts = strcmp(o->format, "idx") == 0 ? 2 : 1;
    int rc = SP_EXIT_OK;
    for (uint32_t p = 0; p < b->n_parts && rc == SP_EXIT_OK; p++) {
        rc = s_scan(c, paths[p], &b->part_size[p], &b->part_crc[p], buf);
    }
    if (rc == SP_EXIT_OK) {
        rc = sp_cli_call(c, &req, SP_MSG_R_UPLOAD, &rep);
    }
    if (rc != SP_EXIT_OK) {
        free(buf);
        return rc;
    }
    uint64_t upload = rep.u.r_upload.upload;
    sp_msg_fini(&rep);
    for (uint32_t p = 0; p < b->n_parts && rc == SP_EXIT_OK; p++) {
        rc = s_send_part(c, upload, p, paths[p], b->part_size[p], buf);
    }
    free(buf);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    /* The coordinator answers "stored" once it has checked and stored the
     * set, an error if it refused it, and "not yet" (stored: false) while
     * its check runs: ask again, more slowly as it goes on. */
    for (int wait_ms = S_CHECK_POLL_MIN_MS;;
         wait_ms = wait_ms * 2 > S_CHECK_POLL_MAX_MS ? S_CHECK_POLL_MAX_MS : wait_ms * 2) {
        sp_msg_t end;
        sp_msg_init(&end, SP_MSG_UPLOAD_END);
        end.u.upload_end.upload = upload;
        rc = sp_cli_call(c, &end, SP_MSG_R_UPLOAD, &rep);
        if (rc != SP_EXIT_OK) {
            return rc;
        }
        int stored = rep.u.r_upload.stored;
        *info = rep.u.r_upload.info;
        sp_msg_fini(&rep);
        if (stored) {
            return SP_EXIT_OK;
        }
        struct timespec ts = {0, (long)wait_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static const char s_submit_usage_head[] =
    "usage: spatium submit NAME FILE [LABELS_FILE] [options]\n"
    "Uploads a dataset to the coordinator under NAME (1-63 characters of\n"
    "A-Z a-z 0-9 . _ -, not starting with '.'): a numeric CSV file (header optional), or an IDX "
    "images\n"
    "file with its IDX labels file; gzip or not. Succeeds once the coordinator\n"
    "has checked and durably stored it, and prints samples, features, classes.\n";


int sp_cmd_submit(sp_cli_t *c, int argc, char **argv)
{
    sp_datafile_opts_t o;
    sp_datafile_opts_default(&o);
    const char *pos[3] = {NULL, NULL, NULL};
    int n = 0;
    int pr = sp_datafile_args(c, argc, argv, "spatium submit NAME FILE [LABELS_FILE] [options]", &o,
                              pos, &n);
    if (pr == SP_DATAFILE_ARGS_HELP) {
        fputs(s_submit_usage_head, stdout);
        fputs(sp_datafile_help, stdout);
        fputs("--json: {\"name\",\"task\",\"samples\",\"features\",\"classes\",\"checksum\","
              "\"bytes\"}.\n",
              stdout);
        return SP_EXIT_OK;
    }
    if (pr != SP_DATAFILE_ARGS_OK) {
        return SP_EXIT_USAGE;
    }
    if (!sp_msg_name_ok(pos[0])) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "bad dataset name '%s' (1-63 characters of A-Z a-z 0-9 . _ -)",
                             pos[0]);
    }
    if (sp_datafile_check(c, &o, pos[1], pos[2]) != SP_EXIT_OK) {
        return SP_EXIT_USAGE;
    }
    sp_dataset_info_t info;
    int rc = sp_submit_upload(c, pos[0], &o, pos[1], pos[2], &info);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_report_dataset_fields(&j, &info);
        sp_json_obj_end(&j);
    } else {
        printf("stored dataset %s: %u samples, %u features, %u classes (%s)\n", info.name,
               info.samples, info.features, info.classes, info.task);
    }
    return SP_EXIT_OK;
}
