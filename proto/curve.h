/* curve: CurveZMQ security for Spatium's sockets. Key files, turning a
 * socket into a CURVE server or client, the coordinator's ZAP handler (the
 * allow-lists of worker and client public keys), and a watch on a client
 * socket that turns a refused handshake into a message a person can act on.
 * Invariant: a CURVE server socket is only bound once the ZAP handler is
 * listening (sp_zap_new returns after its bind), so no connection is ever
 * accepted without being checked against an allow-list. */
#ifndef SP_PROTO_CURVE_H
#define SP_PROTO_CURVE_H

#include <stddef.h>

#define SP_CURVE_Z85_LEN 40      /* Z85 text of a 32-byte key */
#define SP_CURVE_FILE_MAX 4096   /* bytes of a key file */
#define SP_CURVE_DIR_MAX 100000  /* entries of an allow-list directory looked at */
#define SP_CURVE_DOMAIN_MAX 32   /* ZAP domain name, NUL included */

/* One key pair, as Z85 text. A public-key file gives only the public half. */
typedef struct {
    char public_z85[SP_CURVE_Z85_LEN + 1]; /* always set by sp_curve_load */
    char secret_z85[SP_CURVE_Z85_LEN + 1]; /* "" when the file holds no secret key */
} sp_curve_cert_t;

/* 1 when this libzmq was built with CURVE, else 0. */
int sp_curve_available(void);

/* Makes a new key pair and writes PREFIX.key (public key, mode 0644) and
 * PREFIX.key_secret (both keys, mode 0600), in ZeroMQ's certificate text
 * format. Never overwrites: SP_E_STATE when either file exists, SP_E_IO on
 * other failures, SP_E_UNSUPPORTED without CURVE; err names the file. */
int sp_curve_keygen(const char *prefix, sp_curve_cert_t *out, char *err, size_t errlen);

/* Reads a key file: ZeroMQ certificate text (`public-key = "..."`,
 * `secret-key = "..."` lines; other lines are ignored) or a file holding
 * one bare 40-character Z85 key (a public key). With need_secret the file
 * must hold a secret key; a public key given next to it must match it.
 * SP_E_INPUT (err names the file and the line) or SP_E_IO. */
int sp_curve_load(const char *path, int need_secret, sp_curve_cert_t *out, char *err,
                  size_t errlen);

/* Before bind: sock becomes a CURVE server with own's secret key; every
 * connection is checked by the ZAP handler under domain. */
int sp_curve_server(void *sock, const sp_curve_cert_t *own, const char *domain);
/* Before connect: sock talks CURVE to the server whose public key is given,
 * as own (a key pair). */
int sp_curve_client(void *sock, const sp_curve_cert_t *own, const sp_curve_cert_t *server);

/* --- ZAP handler (the coordinator) --------------------------------------- */
/* A domain and the directory of public-key files allowed in it. */
typedef struct {
    const char *domain; /* the ZMQ_ZAP_DOMAIN of the server socket */
    const char *dir;    /* every file in it, except names starting with '.' and
                           ending in "_secret", is a public key allowed in */
} sp_zap_rule_t;

typedef struct sp_zap sp_zap_t;

/* Binds the ZAP endpoint of zctx and starts the thread that answers it.
 * Each handshake on a CURVE socket of zctx is accepted only if its domain
 * has a rule and the client's public key is in a file of that rule's
 * directory, read again at every handshake (a key added or removed counts
 * from the next connection). A refused key is logged the first time, then
 * at most once a minute.
 * The rules are copied. NULL on failure (logged). */
sp_zap_t *sp_zap_new(void *zctx, const sp_zap_rule_t *rules, size_t n_rules);
/* Stops the thread and closes its sockets; NULL-safe, sets *zp = NULL.
 * Call before zmq_ctx_term of the context. */
void sp_zap_destroy(sp_zap_t **zp);

/* Checks one key against a directory, as the handler does: 1 allowed (name,
 * when not NULL, gets the file's name), 0 not. */
int sp_zap_allowed(const char *dir, const unsigned char key[32], char *name, size_t name_len);

/* --- handshake watch (clients and workers) -------------------------------- */
/* Starts a monitor of sock's connection handshakes and returns the PAIR
 * socket to poll for its events (NULL on failure). Close it with
 * sp_curve_watch_close before closing sock. */
void *sp_curve_watch(void *zctx, void *sock);
/* Reads one event from the watch. When a handshake with the server failed,
 * fills text with a sentence and returns 2 when the failure says why (a
 * refused key, CURVE on one side only) or 1 when it does not (what a wrong
 * server key looks like; a mismatch can show this way first, then with its
 * reason); 3 when a handshake succeeded, 0 for any other event, -1 when
 * nothing could be read. */
int sp_curve_watch_read(void *watch, int curve_on, char *text, size_t text_len);
/* Stops sock's monitor, then closes the watch. The order matters: ZeroMQ's
 * I/O thread sends monitor events with a blocking send, and once the watch
 * is gone the next events of sock (its connection dropping, coming back)
 * would block that thread for good, and every socket of the context with it. */
void sp_curve_watch_close(void *sock, void **watch);

#endif
