/* curve: CurveZMQ keys, socket security, the ZAP handler thread and the
 * handshake watch. ZeroMQ does the cryptography (CURVE, over libsodium);
 * this file only feeds it keys and answers its ZAP requests (ZeroMQ RFC 27)
 * from the allow-list directories. */
#include "proto/curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/error.h"

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01" /* fixed by RFC 27 */
#define S_ZAP_FRAMES 7                          /* frames of a request, CURVE */
#define S_ZAP_FRAME_MAX 256                     /* bytes kept of one request frame */

int sp_curve_available(void)
{
    return zmq_has("curve") ? 1 : 0;
}

/* --- key files ------------------------------------------------------------ */

static int s_z85_ok(const char *z85)
{
    uint8_t bin[32];
    return strlen(z85) == SP_CURVE_Z85_LEN && zmq_z85_decode(bin, z85) != NULL;
}

static int s_write_file(const char *path, mode_t mode, const char *text, char *err,
                        size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return e == EEXIST ? SP_E_STATE : SP_E_IO;
    }
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int e = errno;
    if (fsync(fd) != 0 || close(fd) != 0 || w != (ssize_t)len) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(w < 0 ? e : errno));
        unlink(path);
        return SP_E_IO;
    }
    return SP_OK;
}

int sp_curve_keygen(const char *prefix, sp_curve_cert_t *out, char *err, size_t errlen)
{
    if (!sp_curve_available()) {
        snprintf(err, errlen, "this libzmq has no CURVE support");
        return SP_E_UNSUPPORTED;
    }
    char pub_path[4096], sec_path[4096];
    if ((size_t)snprintf(pub_path, sizeof pub_path, "%s.key", prefix) >= sizeof pub_path ||
        (size_t)snprintf(sec_path, sizeof sec_path, "%s.key_secret", prefix) >=
            sizeof sec_path) {
        snprintf(err, errlen, "key file prefix too long");
        return SP_E_INPUT;
    }
    struct stat st;
    const char *paths[2] = {pub_path, sec_path};
    for (int i = 0; i < 2; i++) {
        if (lstat(paths[i], &st) == 0) {
            snprintf(err, errlen, "%s already exists: not overwriting a key", paths[i]);
            return SP_E_STATE;
        }
    }
    sp_curve_cert_t k;
    memset(&k, 0, sizeof k);
    if (zmq_curve_keypair(k.public_z85, k.secret_z85) != 0) {
        snprintf(err, errlen, "cannot make a key pair: %s", zmq_strerror(errno));
        return SP_E_IO;
    }
    char sec_text[512], pub_text[512];
    snprintf(sec_text, sizeof sec_text,
             "#   Spatium CURVE key pair (ZeroMQ certificate format).\n"
             "#   SECRET: keep this file on the machine that owns it, mode 0600.\n"
             "metadata\n"
             "curve\n"
             "    public-key = \"%s\"\n"
             "    secret-key = \"%s\"\n",
             k.public_z85, k.secret_z85);
    snprintf(pub_text, sizeof pub_text,
             "#   Spatium CURVE public key (ZeroMQ certificate format).\n"
             "#   Copy it into the coordinator's --curve-workers or --curve-clients\n"
             "#   directory to let the owner of the secret key in.\n"
             "metadata\n"
             "curve\n"
             "    public-key = \"%s\"\n",
             k.public_z85);
    int rc = s_write_file(sec_path, 0600, sec_text, err, errlen);
    if (rc == SP_OK) {
        rc = s_write_file(pub_path, 0644, pub_text, err, errlen);
        if (rc != SP_OK) {
            unlink(sec_path);
        }
    }
    if (rc == SP_OK && out != NULL) {
        *out = k;
    }
    memset(&k, 0, sizeof k);
    memset(sec_text, 0, sizeof sec_text);
    return rc;
}

/* Reads a `NAME = "Z85"` value from line (after leading blanks) into dst
 * when the line sets NAME: 1 set, 0 another line, -1 malformed. */
static int s_cert_value(const char *line, const char *name, char dst[SP_CURVE_Z85_LEN + 1])
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0) {
        return 0;
    }
    const char *p = line + n;
    p += strspn(p, " \t");
    if (*p++ != '=') {
        return -1;
    }
    p += strspn(p, " \t");
    if (*p++ != '"') {
        return -1;
    }
    const char *end = strchr(p, '"');
    if (end == NULL || end - p != SP_CURVE_Z85_LEN) {
        return -1;
    }
    memcpy(dst, p, SP_CURVE_Z85_LEN);
    dst[SP_CURVE_Z85_LEN] = '\0';
    return s_z85_ok(dst) ? 1 : -1;
}

/* Parses the text of a key file (NUL-terminated). */
static int s_parse_cert(const char *path, char *text, sp_curve_cert_t *k, char *err,
                        size_t errlen)
{
    memset(k, 0, sizeof *k);
    int lineno = 0;
    for (char *line = text; line != NULL;) {
        char *next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }
        lineno++;
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) {
            line[--len] = '\0';
        }
        line += strspn(line, " \t");
        int a = s_cert_value(line, "public-key", k->public_z85);
        int b = a == 0 ? s_cert_value(line, "secret-key", k->secret_z85) : 0;
        if (a < 0 || b < 0) {
            return sp_err_input(err, errlen,
                                "%s line %d: a key must be 40 characters of Z85 in double quotes",
                                path, lineno);
        }
        if (a == 0 && b == 0 && strlen(line) == SP_CURVE_Z85_LEN && s_z85_ok(line)) {
            memcpy(k->public_z85, line, SP_CURVE_Z85_LEN + 1); /* a bare public key */
        }
        line = next;
    }
    if (k->secret_z85[0] != '\0') {
        char derived[SP_CURVE_Z85_LEN + 1];
        if (zmq_curve_public(derived, k->secret_z85) != 0) {
            return sp_err_input(err, errlen, "%s: the secret key is not a CURVE key", path);
        }
        if (k->public_z85[0] != '\0' && strcmp(derived, k->public_z85) != 0) {
            return sp_err_input(err, errlen,
                                "%s: its public-key does not belong to its secret-key", path);
        }
        memcpy(k->public_z85, derived, sizeof derived);
    }
    if (k->public_z85[0] == '\0') {
        return sp_err_input(err, errlen,
                            "%s holds no key (want a public-key = \"...\" line, or one bare "
                            "40-character Z85 key)",
                            path);
    }
    return SP_OK;
}

/* Reads a whole small regular file into buf (NUL-terminated). */
static int s_read_small(const char *path, char *buf, size_t cap, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP) {
        fd = open(path, O_RDONLY | O_NONBLOCK); /* a symlink to a key is fine */
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return SP_E_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sp_err_input(err, errlen, "%s is not a regular file", path);
    }
    if (st.st_size >= (off_t)cap) {
        close(fd);
        return sp_err_input(err, errlen, "%s is %lld bytes: a key file has at most %zu", path,
                            (long long)st.st_size, cap - 1);
    }
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            return SP_E_IO;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    if (strlen(buf) != got) {
        return sp_err_input(err, errlen, "%s holds a NUL byte: not a key file", path);
    }
    return SP_OK;
}

int sp_curve_load(const char *path, int need_secret, sp_curve_cert_t *out, char *err,
                  size_t errlen)
{
    char buf[SP_CURVE_FILE_MAX];
    int rc = s_read_small(path, buf, sizeof buf, err, errlen);
    if (rc == SP_OK) {
        rc = s_parse_cert(path, buf, out, err, errlen);
    }
    memset(buf, 0, sizeof buf);
    if (rc == SP_OK && need_secret && out->secret_z85[0] == '\0') {
        rc = sp_err_input(err, errlen,
                          "%s holds no secret-key: give the key pair file (NAME.key_secret)",
                          path);
    }
    return rc;
}

int sp_curve_server(void *sock, const sp_curve_cert_t *own, const char *domain)
{
    int on = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof on) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, own->secret_z85, SP_CURVE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0) {
        return SP_E_IO;
    }
    return SP_OK;
}

int sp_curve_client(void *sock, const sp_curve_cert_t *own, const sp_curve_cert_t *server)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server->public_z85, SP_CURVE_Z85_LEN + 1) !=
            0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, own->public_z85, SP_CURVE_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, own->secret_z85, SP_CURVE_Z85_LEN + 1) != 0) {
        return SP_E_IO;
    }
    return SP_OK;
}

/* --- allow-lists and the ZAP handler -------------------------------------- */

int sp_zap_allowed(const char *dir, const unsigned char key[32], char *name, size_t name_len)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int found = 0;
    size_t seen = 0;
    struct dirent *e;
    while (!found && seen++ < SP_CURVE_DIR_MAX && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || (len >= 7 && strcmp(e->d_name + len - 7, "_secret") == 0)) {
            continue;
        }
        char path[4096], err[256];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) {
            continue;
        }
        sp_curve_cert_t k;
        uint8_t bin[32];
        if (sp_curve_load(path, 0, &k, err, sizeof err) == SP_OK &&
            zmq_z85_decode(bin, k.public_z85) != NULL && memcmp(bin, key, 32) == 0) {
            found = 1;
            if (name != NULL) {
                snprintf(name, name_len, "%s", e->d_name);
            }
        }
    }
    closedir(d);
    return found;
}

typedef struct {
    char domain[SP_CURVE_DOMAIN_MAX];
    char *dir;
} s_rule_t;

struct sp_zap {
    void *rep;  /* REP bound at S_ZAP_ENDPOINT, owned by the thread once it runs */
    void *ctl;  /* PAIR: the caller's end of the stop signal */
    void *ctl_peer; /* PAIR: the thread's end */
    pthread_t thread;
    int started;
    s_rule_t *rules;
    size_t n_rules;
    struct {
        uint8_t key[32];
        uint64_t last_ms;
    } logged[16];       /* keys whose refusal was logged lately (oldest replaced) */
};

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* 1 when a refusal of key is to be logged: the first time, then once a
 * minute per key, so a misconfigured peer retrying ten times a second
 * leaves one line, not a flood. */
static int s_should_log(sp_zap_t *z, const uint8_t *key)
{
    uint64_t now = s_now_ms();
    size_t n = sizeof z->logged / sizeof z->logged[0], oldest = 0;
    for (size_t i = 0; i < n; i++) {
        if (z->logged[i].last_ms != 0 && memcmp(z->logged[i].key, key, 32) == 0) {
            if (now - z->logged[i].last_ms < 60000) {
                return 0;
            }
            z->logged[i].last_ms = now;
            return 1;
        }
        if (z->logged[i].last_ms < z->logged[oldest].last_ms) {
            oldest = i;
        }
    }
    memcpy(z->logged[oldest].key, key, 32);
    z->logged[oldest].last_ms = now;
    return 1;
}

/* Decides one request; frames holds its S_ZAP_FRAMES frames. Returns the
 * status code and fills the status text and the user id. */
static int s_decide(sp_zap_t *z, zmq_msg_t *f, char *text, size_t text_len, char *user,
                    size_t user_len)
{
    user[0] = '\0';
    const char *mech = zmq_msg_data(&f[5]);
    if (zmq_msg_size(&f[5]) != 5 || memcmp(mech, "CURVE", 5) != 0 ||
        zmq_msg_size(&f[6]) != 32) {
        snprintf(text, text_len, "only CURVE is accepted");
        return 400;
    }
    size_t dlen = zmq_msg_size(&f[2]);
    const char *dom = zmq_msg_data(&f[2]);
    const s_rule_t *rule = NULL;
    for (size_t i = 0; i < z->n_rules; i++) {
        if (strlen(z->rules[i].domain) == dlen && memcmp(z->rules[i].domain, dom, dlen) == 0) {
            rule = &z->rules[i];
        }
    }
    if (rule != NULL && sp_zap_allowed(rule->dir, zmq_msg_data(&f[6]), user, user_len)) {
        snprintf(text, text_len, "OK");
        return 200;
    }
    char z85[SP_CURVE_Z85_LEN + 1] = "?";
    zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32);
    char addr[64];
    snprintf(addr, sizeof addr, "%.*s", (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63),
             (const char *)zmq_msg_data(&f[3]));
    snprintf(text, text_len, "key not allowed");
    if (s_should_log(z, zmq_msg_data(&f[6]))) {
        sp_log(SP_LOG_WARN, "refused a %.*s connection from %s: its public key %s is not in %s",
               (int)(dlen < 31 ? dlen : 31), dom, addr, z85,
               rule != NULL ? rule->dir : "any allow-list");
    }
    return 400;
}

/* Receives one request and answers it. A request that is not the RFC 27
 * shape (never expected from libzmq) is answered 500 when it can be. */
static void s_serve(sp_zap_t *z)
{
    zmq_msg_t f[S_ZAP_FRAMES];
    size_t n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < S_ZAP_FRAMES) {
            f[n++] = m;
        } else {
            zmq_msg_close(&m);
            n = S_ZAP_FRAMES + 1; /* too many frames */
        }
    }
    char text[64], user[256];
    int status = 500;
    if (n == S_ZAP_FRAMES && zmq_msg_size(&f[0]) == 3 && memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0) {
        status = s_decide(z, f, text, sizeof text, user, sizeof user);
    } else {
        snprintf(text, sizeof text, "malformed ZAP request");
        user[0] = '\0';
    }
    char code[4];
    snprintf(code, sizeof code, "%d", status);
    size_t have = n < S_ZAP_FRAMES ? n : S_ZAP_FRAMES;
    const void *id = have > 1 ? zmq_msg_data(&f[1]) : "";
    size_t id_len = have > 1 ? zmq_msg_size(&f[1]) : 0;
    /* REP must answer every request it took, malformed or not */
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(z->rep, id, id_len, ZMQ_SNDMORE);
    zmq_send(z->rep, code, 3, ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0);
    for (size_t i = 0; i < have; i++) {
        zmq_msg_close(&f[i]);
    }
}

static void *s_run(void *arg)
{
    sp_zap_t *z = arg;
    for (;;) {
        zmq_pollitem_t items[2] = {{z->rep, 0, ZMQ_POLLIN, 0}, {z->ctl_peer, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            s_serve(z);
        }
    }
    zmq_close(z->rep);
    zmq_close(z->ctl_peer);
    return NULL;
}

sp_zap_t *sp_zap_new(void *zctx, const sp_zap_rule_t *rules, size_t n_rules)
{
    sp_zap_t *z = calloc(1, sizeof *z);
    if (z == NULL || (z->rules = calloc(n_rules ? n_rules : 1, sizeof *z->rules)) == NULL) {
        free(z);
        return NULL;
    }
    for (size_t i = 0; i < n_rules; i++) {
        snprintf(z->rules[i].domain, sizeof z->rules[i].domain, "%s", rules[i].domain);
        z->rules[i].dir = strdup(rules[i].dir);
        z->n_rules++;
        if (z->rules[i].dir == NULL) {
            sp_zap_destroy(&z);
            return NULL;
        }
    }
    char ctl_ep[64];
    snprintf(ctl_ep, sizeof ctl_ep, "inproc://spatium-zap-stop-%p", (void *)z);
    z->rep = zmq_socket(zctx, ZMQ_REP);
    z->ctl = zmq_socket(zctx, ZMQ_PAIR);
    z->ctl_peer = zmq_socket(zctx, ZMQ_PAIR);
    if (z->rep == NULL || z->ctl == NULL || z->ctl_peer == NULL ||
        zmq_bind(z->rep, S_ZAP_ENDPOINT) != 0 || zmq_bind(z->ctl, ctl_ep) != 0 ||
        zmq_connect(z->ctl_peer, ctl_ep) != 0) {
        sp_log(SP_LOG_ERROR, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        sp_zap_destroy(&z);
        return NULL;
    }
    if (pthread_create(&z->thread, NULL, s_run, z) != 0) {
        sp_log(SP_LOG_ERROR, "cannot start the ZAP handler thread");
        sp_zap_destroy(&z);
        return NULL;
    }
    z->started = 1;
    return z;
}

void sp_zap_destroy(sp_zap_t **zp)
{
    if (zp == NULL || *zp == NULL) {
        return;
    }
    sp_zap_t *z = *zp;
    if (z->started) {
        zmq_send(z->ctl, "stop", 4, 0);
        pthread_join(z->thread, NULL); /* the thread closed rep and ctl_peer */
    } else {
        if (z->rep) {
            zmq_close(z->rep);
        }
        if (z->ctl_peer) {
            zmq_close(z->ctl_peer);
        }
    }
    if (z->ctl) {
        zmq_close(z->ctl);
    }
    for (size_t i = 0; i < z->n_rules; i++) {
        free(z->rules[i].dir);
    }
    free(z->rules);
    free(z);
    *zp = NULL;
}

/* --- handshake watch ------------------------------------------------------- */

void *sp_curve_watch(void *zctx, void *sock)
{
    /* a closed socket's monitor may hold its endpoint a little longer, and a
     * new socket may get the same address: the time keeps names apart */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://spatium-watch-%p-%lld.%09ld", sock, (long long)ts.tv_sec,
             ts.tv_nsec);
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_DISCONNECTED;
    if (zmq_socket_monitor(sock, ep, events) != 0) {
        return NULL;
    }
    void *pair = zmq_socket(zctx, ZMQ_PAIR);
    if (pair == NULL) {
        return NULL;
    }
    if (zmq_connect(pair, ep) != 0) {
        zmq_close(pair);
        return NULL;
    }
    return pair;
}

int sp_curve_watch_read(void *watch, int curve_on, char *text, size_t text_len)
{
    uint8_t head[6];
    int n = zmq_recv(watch, head, sizeof head, ZMQ_DONTWAIT);
    if (n < 0) {
        return -1;
    }
    int more = 0;
    size_t more_len = sizeof more;
    zmq_getsockopt(watch, ZMQ_RCVMORE, &more, &more_len);
    char ep[256] = "";
    if (more) {
        int m = zmq_recv(watch, ep, sizeof ep - 1, 0);
        ep[m > 0 ? (m < (int)sizeof ep - 1 ? m : (int)sizeof ep - 1) : 0] = '\0';
    }
    if (n != (int)sizeof head) {
        return 0;
    }
    uint16_t event;
    uint32_t value;
    memcpy(&event, head, 2);
    memcpy(&value, head + 2, 4);
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf(text, text_len,
                 "the coordinator at %s refused this program's CURVE key (status %u): its "
                 "public key is not in the coordinator's allow-list directory",
                 ep, (unsigned)value);
        return 2;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
            snprintf(text, text_len,
                     curve_on ? "the coordinator at %s does not use CURVE: drop --curve-server "
                                "and --curve-secret, or start it with --curve-secret"
                              : "the coordinator at %s requires CURVE: give --curve-server (its "
                                "public key) and --curve-secret (a key pair it allows)",
                     ep);
        } else {
            snprintf(text, text_len,
                     "the security handshake with %s failed (ZeroMQ protocol error 0x%x)%s", ep,
                     (unsigned)value,
                     curve_on ? ": is --curve-server the coordinator's public key?" : "");
        }
        return 2;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf(text, text_len, "the security handshake with %s failed: %s", ep,
                 curve_on ? "is --curve-server the coordinator's public key?"
                          : "does the coordinator require CURVE (--curve-server, --curve-secret)?");
        return 1;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return 3;
    default:
        return 0;
    }
}

void sp_curve_watch_close(void *sock, void **watch)
{
    if (watch != NULL && *watch != NULL) {
        if (sock != NULL) {
            zmq_socket_monitor(sock, NULL, 0);
        }
        zmq_close(*watch);
        *watch = NULL;
    }
}
