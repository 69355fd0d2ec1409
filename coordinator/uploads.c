/* uploads: datasets streamed by clients in chunks (upload_begin, upload_chunk,
 * upload_end). Invariant: an upload only ever touches its own buffers until
 * upload_end has checked every part's size and CRC-32 and the strict parser
 * has accepted the whole dataset; only then is it stored (durably) and only
 * after that does the client hear "stored". Any error discards the upload
 * and stores nothing.
 * The check (CRCs, gunzip, parse, the durable write) runs on a thread of its
 * own, so a dataset of gigabytes does not stop heartbeats and training for
 * the seconds it takes: upload_end answers "checking" (stored: false) until
 * it is over, and the client asks again (proto/PROTOCOL.md, upload_end). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bytes.h"
#include "common/error.h"
#include "coordinator/coordinator.h"

#define S_CSV_MAX_BYTES (SP_COORD_UPLOAD_MAX_BYTES) /* CSV text after gunzip */

/* Frees an upload whose check is not running. */
static void s_free(sp_upload_t **up)
{
    if (*up != NULL) {
        SP_ASSERT((*up)->state != SP_UPLOAD_CHECKING || (*up)->joined);
        free((*up)->part[0]);
        free((*up)->part[1]);
        free(*up);
        *up = NULL;
    }
}

static void s_join(sp_upload_t *up)
{
    if (up->state == SP_UPLOAD_CHECKING && !up->joined) {
        pthread_join(up->thread, NULL);
        up->joined = 1;
    }
}

void sp_uploads_fini(sp_uploads_t *u)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        if (u->v[i] != NULL && u->v[i]->state == SP_UPLOAD_CHECKING && !u->v[i]->joined) {
            sp_log(SP_LOG_INFO, "waiting for the check of upload %llu ('%s')",
                   (unsigned long long)u->v[i]->id, u->v[i]->begin.name);
        }
        if (u->v[i] != NULL) {
            s_join(u->v[i]);
        }
        s_free(&u->v[i]);
    }
}

/* An upload that holds no reserved memory and answers only repeats. */
static int s_finished(const sp_upload_t *up)
{
    return up->state == SP_UPLOAD_STORED || up->state == SP_UPLOAD_REFUSED;
}

/* The upload being checked under name, or NULL. */
static const sp_upload_t *s_checking(const sp_uploads_t *u, const char *name)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        if (u->v[i] != NULL && u->v[i]->state == SP_UPLOAD_CHECKING &&
            strcmp(u->v[i]->begin.name, name) == 0) {
            return u->v[i];
        }
    }
    return NULL;
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
    if (s_checking(&c->uploads, b->name) != NULL) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_STATE, b->req, T,
                             "dataset '%s' is being checked for another upload", b->name);
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
    /* a free slot, else the one of the oldest finished upload */
    int slot = -1;
    uint64_t reserved = 0;
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        const sp_upload_t *u = c->uploads.v[i];
        if (u == NULL) {
            slot = slot < 0 || c->uploads.v[slot] != NULL ? i : slot;
        } else if (s_finished(u)) {
            if (slot < 0 ||
                (c->uploads.v[slot] != NULL && u->last_ms < c->uploads.v[slot]->last_ms)) {
                slot = i;
            }
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
    s_free(&c->uploads.v[slot]); /* a finished upload, if any */
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
    if (up->state != SP_UPLOAD_RECEIVING) {
        sp_coord_reply_error(c, s, id, id_len, SP_E_STATE, ch->req, T,
                             "upload %llu: already complete", (unsigned long long)ch->upload);
        return;
    }
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

/* Checks and parses a complete upload (every part's bytes received) into
 * ds; message in err on failure. */
static int s_parse(const sp_upload_t *up, sp_dataset_t *ds, char *err, size_t errlen)
{
    const sp_msg_upload_begin_t *b = &up->begin;
    for (uint32_t i = 0; i < b->n_parts; i++) {
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

/* The check thread: CRCs, parse, durable write. Frees the raw parts as soon
 * as the parse is done with them. */
static void *s_check(void *arg)
{
    sp_upload_t *up = arg;
    sp_dataset_t ds;
    memset(&ds, 0, sizeof ds);
    up->rc = s_parse(up, &ds, up->err, sizeof up->err);
    for (int i = 0; i < 2; i++) {
        free(up->part[i]);
        up->part[i] = NULL;
    }
    if (up->rc == SP_OK) {
        up->rc = sp_datasets_write(up->state_dir, up->begin.name, &ds, &up->entry, up->err,
                                   sizeof up->err);
    }
    sp_dataset_fini(&ds);
    atomic_store_explicit(&up->done, 1, memory_order_release);
    return NULL;
}

/* Waits up to ms for the check to be over; 1 when it is (and joined). */
static int s_check_over(sp_upload_t *up, int ms)
{
    if (up->joined) {
        return 1;
    }
    if (!atomic_load_explicit(&up->done, memory_order_acquire)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (ms <= 0 || pthread_timedjoin_np(up->thread, NULL, &until) != 0) {
            return 0;
        }
        up->joined = 1;
        return 1;
    }
    s_join(up);
    return 1;
}

/* The check is over: the dataset is registered (its name was kept free
 * since upload_end, see s_start_check), or the reason logged. */
static void s_settle(sp_coord_t *c, sp_upload_t *up)
{
    if (up->rc == SP_OK) {
        up->rc = sp_datasets_add(&c->datasets, &up->entry);
        if (up->rc != SP_OK) {
            (void)remove(up->entry.path);
            snprintf(up->err, sizeof up->err, "cannot register the dataset (%s)",
                     sp_strerror(up->rc));
        }
    }
    if (up->rc == SP_OK) {
        up->state = SP_UPLOAD_STORED;
        sp_log(SP_LOG_INFO, "dataset '%s' stored: %u samples, %u features, %u classes",
               up->begin.name, up->entry.info.samples, up->entry.info.features,
               up->entry.info.classes);
    } else {
        up->state = SP_UPLOAD_REFUSED;
        sp_log(SP_LOG_INFO, "upload of '%s' refused: %s", up->begin.name, up->err);
    }
}

/* upload_end of an upload still receiving: everything must be there and the
 * name still free (and kept free: checks of one name never overlap); then
 * its check starts. SP_OK, or an error in err (the upload is to be dropped). */
static int s_start_check(sp_coord_t *c, sp_upload_t *up, char *err, size_t errlen)
{
    const sp_msg_upload_begin_t *b = &up->begin;
    for (uint32_t i = 0; i < b->n_parts; i++) {
        if (up->received[i] != b->part_size[i]) {
            snprintf(err, errlen, "part %u: received %llu of %llu bytes", i,
                     (unsigned long long)up->received[i], (unsigned long long)b->part_size[i]);
            return SP_E_INPUT;
        }
    }
    if (sp_datasets_find(&c->datasets, b->name) != NULL) {
        snprintf(err, errlen, "dataset '%s' already exists", b->name);
        return SP_E_STATE;
    }
    if (s_checking(&c->uploads, b->name) != NULL) {
        snprintf(err, errlen, "dataset '%s' is being checked for another upload", b->name);
        return SP_E_STATE;
    }
    size_t checking = 0;
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        checking += c->uploads.v[i] != NULL && c->uploads.v[i]->state == SP_UPLOAD_CHECKING;
    }
    if (c->datasets.n + checking >= SP_COORD_MAX_DATASETS) {
        snprintf(err, errlen, "too many datasets (%d)", SP_COORD_MAX_DATASETS);
        return SP_E_RANGE;
    }
    up->state_dir = c->cfg.state_dir;
    atomic_init(&up->done, 0);
    up->joined = 0;
    up->state = SP_UPLOAD_CHECKING;
    if (pthread_create(&up->thread, NULL, s_check, up) != 0) {
        /* no thread to be had: check here, holding the loop up meanwhile */
        (void)s_check(up);
        up->joined = 1;
    }
    return SP_OK;
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
    up->last_ms = sp_coord_now_ms();
    int wait_ms = 0; /* only the first answer waits: later ones take no time from the loop */
    if (up->state == SP_UPLOAD_RECEIVING) {
        wait_ms = SP_COORD_UPLOAD_WAIT_MS;
        char err[SP_TEXT_MAX] = "";
        int rc = s_start_check(c, up, err, sizeof err);
        if (rc != SP_OK) {
            sp_log(SP_LOG_INFO, "upload of '%s' refused: %s", up->begin.name, err);
            sp_coord_reply_error(c, s, id, id_len, rc, e->req, T, "dataset '%s' refused: %s",
                                 up->begin.name, err);
            s_free(pp);
            return;
        }
    }
    if (up->state == SP_UPLOAD_CHECKING && s_check_over(up, wait_ms)) {
        s_settle(c, up);
    }
    uint64_t total = up->begin.part_size[0] + (up->begin.n_parts > 1 ? up->begin.part_size[1] : 0);
    if (up->state == SP_UPLOAD_CHECKING) {
        s_reply(c, id, id_len, e->req, up->id, total, NULL); /* stored: false, ask again */
    } else if (up->state == SP_UPLOAD_STORED) {
        s_reply(c, id, id_len, e->req, up->id, up->entry.info.bytes, &up->entry.info);
    } else {
        const char *what = up->rc == SP_E_IO ? "not stored" : "refused";
        sp_coord_reply_error(c, s, id, id_len, up->rc, e->req, T, "dataset '%s' %s: %s",
                             up->begin.name, what, up->err);
    }
}

void sp_uploads_expire(sp_coord_t *c, uint64_t now_ms)
{
    for (int i = 0; i < SP_COORD_MAX_UPLOADS; i++) {
        sp_upload_t *up = c->uploads.v[i];
        if (up == NULL) {
            continue;
        }
        if (up->state == SP_UPLOAD_CHECKING) {
            if (s_check_over(up, 0)) {
                s_settle(c, up); /* registered even if its client is gone */
                up->last_ms = now_ms;
            }
            continue;
        }
        if (now_ms - up->last_ms > SP_COORD_UPLOAD_IDLE_MS) {
            if (up->state == SP_UPLOAD_RECEIVING) {
                sp_log(SP_LOG_INFO, "upload %llu of '%s' dropped after %d ms idle",
                       (unsigned long long)up->id, up->begin.name, SP_COORD_UPLOAD_IDLE_MS);
            }
            s_free(&c->uploads.v[i]);
        }
    }
}
