/* uploads: datasets streamed by clients in chunks (upload_begin, upload_chunk,
 * upload_end). Invariant: an upload only ever touches its own buffers until
 * upload_end has checked every part's size and CRC-32 and the strict parser
 * has accepted the whole dataset; only then is it stored (durably) and only
 * after that does the client hear "stored". Any error discards the upload
 * and stores nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/error.h"
#include "coordinator/coordinator.h"

#define S_CSV_MAX_BYTES (SP_COORD_UPLOAD_MAX_BYTES) /* CSV text after gunzip */

static void s_free(sp_upload_t **up)
{
    if (*up != NULL) {
        free((*up)->part[0]);
        free((*up)->part[1]);
        free(*up);
        *up = NULL;
    }
}

void sp_uploads_fini(sp_uploads_t *u)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        s_free(&u->v[i]);
    }
}

static sp_upload_t **s_find(sp_uploads_t *u, uint64_t id)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        if (u->v[i] != NULL && u->v[i]->id == id) {
            return &u->v[i];
        }
    }
    return NULL;
}

static int s_name_ok(const char *s)
{
    size_t n = strnlen(s, SP_NAME_MAX);
    if (n == 0 || n >= SP_NAME_MAX || s[0] == '.') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return 1;
}

static void s_reply(sp_coord_t *c, const uint8_t *id, size_t id_len, uint64_t req, uint64_t upload,
                    uint64_t received, const sp_dataset_info_t *info)
{
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_R_UPLOAD);
    m.u.r_upload.req = req;
    m.u.r_upload.upload = upload;
    m.u.r_upload.received = received;
    if (info != NULL) {
        m.u.r_upload.stored = 1;
        m.u.r_upload.info = *info;
    }
    (void)sp_coord_send(c, c->clients_sock, id, id_len, &m);
}

void sp_uploads_begin(sp_coord_t *c, const uint8_t *id, size_t id_len,
                      const sp_msg_upload_begin_t *b)
{
    void *s = c->clients_sock;
    const uint32_t T = SP_MSG_UPLOAD_BEGIN;
    if (!s_name_ok(b->name)) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "name: '%.63s' is not 1..63 characters of [A-Za-z0-9._-]", b->name);
        return;
    }
    if (sp_datasets_find(&c->datasets, b->name) != NULL) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_STATE, b->req, T,
                             "dataset '%s' already exists (datasets are immutable)", b->name);
        return;
    }
    int csv = strcmp(b->format, "csv") == 0, idx = strcmp(b->format, "idx") == 0;
    if (!csv && !idx) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "format: '%.7s' is neither csv nor idx", b->format);
        return;
    }
    if (strcmp(b->task, "classify") != 0 && strcmp(b->task, "regress") != 0) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "task: '%.15s' is neither classify nor regress", b->task);
        return;
    }
    if (idx && strcmp(b->task, "classify") != 0) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "task: an idx dataset is a classification");
        return;
    }
    if ((csv && b->n_parts != 1) || (idx && b->n_parts != 2)) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "n_parts: %u, a %s upload has %d", b->n_parts, b->format, csv ? 1 : 2);
        return;
    }
    if (b->label_column < -1 || b->header < -1 || b->header > 1) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                             "label_column %d / header %d out of range", b->label_column,
                             b->header);
        return;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < b->n_parts; i++) {
        if (b->part_size[i] == 0) {
            sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, b->req, T,
                                 "part_size[%u]: empty part", i);
            return;
        }
        total += b->part_size[i];
    }
    if (total > SP_COORD_UPLOAD_MAX_BYTES) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_RANGE, b->req, T,
                             "upload of %llu bytes is above the limit of %llu",
                             (unsigned long long)total,
                             (unsigned long long)SP_COORD_UPLOAD_MAX_BYTES);
        return;
    }
    int slot = -1;
    uint64_t reserved = 0;
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        const sp_upload_t *u = c->uploads.v[i];
        if (u == NULL) {
            slot = slot < 0 ? i : slot;
        } else {
            reserved += u->begin.part_size[0] + (u->begin.n_parts > 1 ? u->begin.part_size[1] : 0);
        }
    }
    if (reserved + total > SP_COORD_UPLOADS_MAX_BYTES) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_STATE, b->req, T,
                             "uploads in progress hold %llu bytes; %llu more is above the limit "
                             "of %llu; retry later",
                             (unsigned long long)reserved, (unsigned long long)total,
                             (unsigned long long)SP_COORD_UPLOADS_MAX_BYTES);
        return;
    }
    if (slot < 0) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_STATE, b->req, T,
                             "too many uploads in progress (%d); retry later",
                             SP_COORD_MAX_UPLOADS);
        return;
    }
    sp_upload_t *up = calloc(1, sizeof *up);
    int ok = up != NULL;
    for (uint32_t i = 0; ok && i < b->n_parts; i++) {
        up->part[i] = malloc((size_t)b->part_size[i]);
        ok = up->part[i] != NULL;
    }
    if (!ok) {
        s_free(&up);
        sp_coord_reply_error(c, s, id, id_len, SP_E_NOMEM, b->req, T,
                             "out of memory for %llu bytes", (unsigned long long)total);
        return;
    }
    up->id = ++c->uploads.next_id;
    up->begin = *b;
    up->last_ms = sp_coord_now_ms();
    c->uploads.v[slot] = up;
    s_reply(c, id, id_len, b->req, up->id, 0, NULL);
}

void sp_uploads_chunk(sp_coord_t *c, const uint8_t *id, size_t id_len,
                      const sp_msg_upload_chunk_t *ch)
{
    void *s = c->clients_sock;
    const uint32_t T = SP_MSG_UPLOAD_CHUNK;
    sp_upload_t **pp = s_find(&c->uploads, ch->upload);
    if (pp == NULL) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_NOTFOUND, ch->req, T,
                             "upload %llu: no such upload (finished, expired or never begun)",
                             (unsigned long long)ch->upload);
        return;
    }
    sp_upload_t *up = *pp;
    const char *why = NULL;
    if (ch->part >= up->begin.n_parts) {
        why = "part index out of range";
    } else if (ch->offset != up->received[ch->part]) {
        why = "offset is not where the part's bytes end (chunks must come in order)";
    } else if (ch->data.len > SP_CHUNK_MAX) {
        why = "chunk larger than the limit";
    } else if (ch->data.len > up->begin.part_size[ch->part] - up->received[ch->part]) {
        why = "chunk goes past the declared part size";
    }
    if (why != NULL) {
        /* A broken stream cannot be repaired: drop the upload. */
        sp_coord_reply_error(c, s, id, id_len, SP_E_INPUT, ch->req, T,
                             "upload %llu part %u offset %llu: %s; upload discarded",
                             (unsigned long long)ch->upload, ch->part,
                             (unsigned long long)ch->offset, why);
        s_free(pp);
        return;
    }
    if (ch->data.len > 0) {
        memcpy(up->part[ch->part] + up->received[ch->part], ch->data.data, ch->data.len);
    }
    up->received[ch->part] += ch->data.len;
    up->last_ms = sp_coord_now_ms();
    s_reply(c, id, id_len, ch->req, up->id, up->received[ch->part], NULL);
}

/* Checks and parses a complete upload into ds; message in err on failure. */
static int s_parse(const sp_upload_t *up, sp_dataset_t *ds, char *err, size_t errlen)
{
    const sp_msg_upload_begin_t *b = &up->begin;
    for (uint32_t i = 0; i < b->n_parts; i++) {
        if (up->received[i] != b->part_size[i]) {
            snprintf(err, errlen, "part %u: received %llu of %llu bytes", i,
                     (unsigned long long)up->received[i], (unsigned long long)b->part_size[i]);
            return SP_E_INPUT;
        }
        uint32_t crc = sp_crc32(up->part[i], b->part_size[i]);
        if (crc != b->part_crc[i]) {
            snprintf(err, errlen, "part %u: CRC-32 %08x does not match the declared %08x", i, crc,
                     b->part_crc[i]);
            return SP_E_INPUT;
        }
    }
    if (strcmp(b->format, "idx") == 0) {
        return sp_dataset_parse_idx(up->part[0], (size_t)b->part_size[0], up->part[1],
                                    (size_t)b->part_size[1], ds, err, errlen);
    }
    uint8_t *text = NULL;
    size_t text_len = 0;
    int rc = sp_gunzip_maybe(up->part[0], (size_t)b->part_size[0], (size_t)S_CSV_MAX_BYTES, &text,
                             &text_len, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    sp_csv_opts_t o;
    sp_csv_opts_default(&o);
    o.label_column = b->label_column;
    o.has_header = b->header;
    o.task = strcmp(b->task, "regress") == 0 ? SP_TASK_REGRESS : SP_TASK_CLASSIFY;
    rc = sp_dataset_parse_csv((const char *)text, text_len, &o, ds, err, errlen);
    free(text);
    return rc;
}

void sp_uploads_end(sp_coord_t *c, const uint8_t *id, size_t id_len, const sp_msg_upload_end_t *e)
{
    void *s = c->clients_sock;
    const uint32_t T = SP_MSG_UPLOAD_END;
    sp_upload_t **pp = s_find(&c->uploads, e->upload);
    if (pp == NULL) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_NOTFOUND, e->req, T,
                             "upload %llu: no such upload", (unsigned long long)e->upload);
        return;
    }
    sp_upload_t *up = *pp;
    char name[SP_NAME_MAX];
    snprintf(name, sizeof name, "%s", up->begin.name);
    char err[SP_TEXT_MAX] = "";
    sp_dataset_t ds;
    memset(&ds, 0, sizeof ds);
    int rc = s_parse(up, &ds, err, sizeof err);
    s_free(pp); /* the raw parts are no longer needed either way */
    if (rc != SP_OK) {
        sp_dataset_fini(&ds);
        sp_log(SP_LOG_INFO, "upload of '%s' refused: %s", name, err);
        sp_coord_reply_error(c, s, id, id_len, rc, e->req, T, "dataset '%s' refused: %s", name,
                             err);
        return;
    }
    sp_dataset_info_t info;
    rc = sp_datasets_store(c, name, &ds, &info, err, sizeof err);
    sp_dataset_fini(&ds);
    if (rc != SP_OK) {
        sp_log(SP_LOG_WARN, "dataset '%s' not stored: %s", name, err);
        sp_coord_reply_error(c, s, id, id_len, rc, e->req, T, "dataset '%s' not stored: %s", name,
                             err);
        return;
    }
    sp_log(SP_LOG_INFO, "dataset '%s' stored: %u samples, %u features, %u classes", name,
           info.samples, info.features, info.classes);
    s_reply(c, id, id_len, e->req, e->upload, info.bytes, &info);
}

void sp_uploads_expire(sp_coord_t *c, uint64_t now_ms)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        sp_upload_t *up = c->uploads.v[i];
        if (up != NULL && now_ms - up->last_ms > SP_COORD_UPLOAD_IDLE_MS) {
            sp_log(SP_LOG_INFO, "upload %llu of '%s' dropped after %d ms idle",
                   (unsigned long long)up->id, up->begin.name, SP_COORD_UPLOAD_IDLE_MS);
            s_free(&c->uploads.v[i]);
        }
    }
}
