/* fuzz_msg: libFuzzer harness for the wire decoder sp_msg_decode (proto/codec.c).
 * The input is split at byte 4: the first 4 bytes are the frame header
 * ("SP", version, type), the rest is the MessagePack body. Invariant checked:
 * no input crashes, leaks or hits UB; a body that decodes re-encodes without
 * error and decodes again to an equal message; a refused frame leaves the
 * message empty and the error text NUL-terminated. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "proto/messages.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hdr_len = size < SP_MSG_HEADER_BYTES ? size : SP_MSG_HEADER_BYTES;
    size_t body_len = size - hdr_len;
    /* Both frames in buffers of their exact size, so ASan sees any read past
     * the end of either frame. */
    uint8_t *hdr = malloc(hdr_len ? hdr_len : 1);
    uint8_t *body = malloc(body_len ? body_len : 1);
    if (!hdr || !body) {
        free(hdr);
        free(body);
        return 0;
    }
    memcpy(hdr, data, hdr_len);
    if (body_len) {
        memcpy(body, data + hdr_len, body_len);
    }
    char err[256];
    memset(err, 'x', sizeof err);
    sp_msg_t m;
    int rc = sp_msg_decode(hdr, hdr_len, body, body_len, &m, err, sizeof err);
    if (rc != SP_OK) {
        if (memchr(err, 0, sizeof err) == NULL || m.type != 0) {
            fprintf(stderr, "fuzz_msg: refused frame left a dirty message or no error text\n");
            abort();
        }
    } else {
        uint8_t h2[SP_MSG_HEADER_BYTES];
        uint8_t *b2 = NULL;
        size_t l2 = 0;
        int erc = sp_msg_encode(&m, h2, &b2, &l2);
        if (erc != SP_OK) {
            fprintf(stderr, "fuzz_msg: decoded %s does not re-encode (rc %d)\n",
                    sp_msg_type_name(m.type), erc);
            abort();
        }
        sp_msg_t m2;
        char err2[256];
        int rc2 = sp_msg_decode(h2, sizeof h2, b2, l2, &m2, err2, sizeof err2);
        char where[128] = "";
        if (rc2 != SP_OK || !sp_msg_equal(&m, &m2, where, sizeof where)) {
            fprintf(stderr, "fuzz_msg: %s round trip differs: rc %d %s / %s\n",
                    sp_msg_type_name(m.type), rc2, rc2 ? err2 : "", where);
            abort();
        }
        sp_msg_fini(&m2);
        free(b2);
    }
    sp_msg_fini(&m);
    free(hdr);
    free(body);
    return 0;
}
