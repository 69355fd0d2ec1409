/* transport: Spatium messages over ZeroMQ sockets.
 * A message is [envelope frame] + header frame + body frame; the envelope is
 * the peer identity on ROUTER sockets and the topic on PUB/SUB. Receiving
 * always consumes every frame of one ZeroMQ message, so a malformed message
 * never leaves stray frames behind to poison the next one. */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common/error.h"
#include "proto/messages.h"

#define S_LINGER_MS 100 /* pending messages get this long at close */
#define S_MAX_FRAMES 3  /* envelope + header + body */

int sp_sock_configure(void *sock, int zmq_type)
{
    int64_t max = SP_MSG_MAX_BYTES;
    int linger = S_LINGER_MS;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0) {
        return SP_E_IO;
    }
    if (zmq_type == ZMQ_ROUTER) {
        int on = 1;
        if (zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &on, sizeof(on)) != 0) {
            return SP_E_IO;
        }
    }
    return SP_OK;
}

void sp_msg_tune_allocator(void)
{
    /* glibc maps every block above M_MMAP_THRESHOLD (128 KiB at first) with
     * its own mmap and unmaps it on free; a 440 KB gradient per step then
     * costs a hundred page faults and a TLB flush each time. */
    (void)mallopt(M_MMAP_THRESHOLD, (int)SP_MSG_MAX_BYTES);
    (void)mallopt(M_TRIM_THRESHOLD, (int)SP_MSG_MAX_BYTES);
}

static void s_free_body(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends [id] + hdr + body without blocking; body is consumed (sent, or
 * closed on failure). A peer whose queue is full (ZMQ_SNDHWM messages)
 * would otherwise stall the whole event loop of the sender; ZeroMQ sends
 * the parts of a message atomically once the last one is in. */
static int s_send_frames(void *sock, const uint8_t *id, size_t id_len,
                         const uint8_t hdr[SP_MSG_HEADER_BYTES], zmq_msg_t *body)
{
    if ((id != NULL && zmq_send(sock, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
        zmq_send(sock, hdr, SP_MSG_HEADER_BYTES, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(body, sock, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        zmq_msg_close(body);
        errno = e;
        return SP_E_IO;
    }
    return SP_OK;
}

/* Encodes m into hdr and a body message that owns the encoded bytes. */
static int s_encode_msg(const sp_msg_t *m, uint8_t hdr[SP_MSG_HEADER_BYTES], zmq_msg_t *body)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = sp_msg_encode(m, hdr, &bytes, &len);
    if (rc != SP_OK) {
        return rc;
    }
    if (zmq_msg_init_data(body, bytes, len, s_free_body, NULL) != 0) {
        free(bytes);
        return SP_E_NOMEM;
    }
    return SP_OK;
}

int sp_msg_send(void *sock, const uint8_t *id, size_t id_len, const sp_msg_t *m)
{
    uint8_t hdr[SP_MSG_HEADER_BYTES];
    zmq_msg_t body;
    int rc = s_encode_msg(m, hdr, &body);
    return rc == SP_OK ? s_send_frames(sock, id, id_len, hdr, &body) : rc;
}

int sp_msg_send_many(void *sock, const uint8_t *const *ids, const size_t *id_lens, size_t n,
                     const sp_msg_t *m, int *rcs)
{
    uint8_t hdr[SP_MSG_HEADER_BYTES];
    zmq_msg_t shared;
    int rc = s_encode_msg(m, hdr, &shared);
    for (size_t i = 0; i < n; i++) {
        rcs[i] = rc;
    }
    if (rc != SP_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        /* zmq_msg_copy shares the body (reference counted): one encode, no
         * per-peer copy of a gradient that may be megabytes. */
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_copy(&part, &shared) != 0) {
            zmq_msg_close(&part);
            rcs[i] = SP_E_NOMEM;
            continue;
        }
        rcs[i] = s_send_frames(sock, ids[i], id_lens[i], hdr, &part);
    }
    zmq_msg_close(&shared); /* the body is freed once the last copy is sent */
    return SP_OK;
}

/* Reads the rest of a multipart message and throws it away; returns how many
 * parts were dropped. */
static int s_drain(void *sock)
{
    int n = 0;
    int more = 1;
    size_t sz = sizeof(more);
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        zmq_msg_close(&part);
        n++;
        sz = sizeof(more);
    }
    return n;
}

int sp_msg_recv(void *sock, int flags, uint8_t *id, size_t *id_len, sp_msg_t *out, char *err,
                size_t errlen)
{
    sp_msg_init(out, (sp_msg_type_t)0);
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    int type = 0;
    size_t tsz = sizeof(type);
    if (zmq_getsockopt(sock, ZMQ_TYPE, &type, &tsz) != 0) {
        return SP_E_IO;
    }
    int envelope = type == ZMQ_ROUTER || type == ZMQ_SUB || type == ZMQ_XSUB;
    int want = envelope ? 3 : 2;

    zmq_msg_t parts[S_MAX_FRAMES];
    int got = 0;
    int rc = SP_OK;
    for (;;) {
        zmq_msg_init(&parts[got]);
        if (zmq_msg_recv(&parts[got], sock, got == 0 ? flags : 0) < 0) {
            int e = errno;
            zmq_msg_close(&parts[got]);
            for (int i = 0; i < got; i++) {
                zmq_msg_close(&parts[i]);
            }
            errno = e;
            return e == EAGAIN ? SP_E_TIMEOUT : SP_E_IO;
        }
        got++;
        if (!zmq_msg_more(&parts[got - 1])) {
            break;
        }
        if (got == S_MAX_FRAMES) {
            got += s_drain(sock);
            break;
        }
    }
    int kept = got < S_MAX_FRAMES ? got : S_MAX_FRAMES;

    if (envelope && id_len != NULL) {
        size_t n = zmq_msg_size(&parts[0]);
        if (id != NULL && n <= *id_len) {
            memcpy(id, zmq_msg_data(&parts[0]), n);
            *id_len = n;
        } else if (id != NULL) {
            rc = sp_err_input(err, errlen, "envelope: %zu bytes, buffer holds %zu", n, *id_len);
            *id_len = 0;
        } else {
            *id_len = n;
        }
    }
    if (rc == SP_OK && got != want) {
        rc = sp_err_input(err, errlen, "frames: %d, expected %d (%sheader, body)", got, want,
                          envelope ? (type == ZMQ_ROUTER ? "identity, " : "topic, ") : "");
    }
    if (rc == SP_OK) {
        zmq_msg_t *h = &parts[want - 2], *b = &parts[want - 1];
        rc = sp_msg_decode(zmq_msg_data(h), zmq_msg_size(h), zmq_msg_data(b), zmq_msg_size(b), out,
                           err, errlen);
    }
    for (int i = 0; i < kept; i++) {
        zmq_msg_close(&parts[i]);
    }
    return rc;
}

int sp_msg_send_error(void *sock, const uint8_t *id, size_t id_len, int code, uint64_t req,
                      uint32_t ref_type, const char *fmt, ...)
{
    sp_msg_t m;
    sp_msg_init(&m, SP_MSG_ERROR);
    int c = code < 0 ? -code : code;
    m.u.error.code = c >= 1 && c <= 255 ? (uint32_t)c : (uint32_t)-SP_E_INPUT;
    m.u.error.req = req;
    m.u.error.ref_type = ref_type <= 255 ? ref_type : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.u.error.message, sizeof(m.u.error.message), fmt, ap);
    va_end(ap);
    /* The text often quotes peer input: keep it printable ASCII. */
    for (char *p = m.u.error.message; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch >= 0x7f) {
            *p = '?';
        }
    }
    return sp_msg_send(sock, id, id_len, &m);
}
