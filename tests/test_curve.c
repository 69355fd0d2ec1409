/* test_curve: CurveZMQ keys and allow-lists (proto/curve.h). Key files are
 * made, read back and refused when malformed; the ZAP handler lets in only
 * the keys of its directory, re-reading it at every handshake; the watch
 * of a client socket names why a handshake failed, and closing it leaves
 * the context working. Sockets are ipc:// in a
 * temporary directory; every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/error.h"
#include "common/file.h"
#include "proto/curve.h"

#define S_WAIT_MS 5000 /* bound on every wait for a handshake */

typedef struct {
    char dir[64];
} s_tmp_t;

static int s_setup(void **state)
{
    s_tmp_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return -1;
    }
    snprintf(t->dir, sizeof t->dir, "/tmp/spcurve-XXXXXX");
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int s_teardown(void **state)
{
    s_tmp_t *t = *state;
    (void)sp_file_remove_tree(t->dir);
    free(t);
    return 0;
}

static void s_write(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_curve_keygen_and_load(void **state)
{
    if (!sp_curve_available()) {
        skip();
    }
    s_tmp_t *t = *state;
    char prefix[128], pub[160], sec[160], err[512];
    snprintf(prefix, sizeof prefix, "%s/node", t->dir);
    snprintf(pub, sizeof pub, "%s.key", prefix);
    snprintf(sec, sizeof sec, "%s.key_secret", prefix);
    sp_curve_cert_t made, a, b;
    assert_int_equal(sp_curve_keygen(prefix, &made, err, sizeof err), SP_OK);
    struct stat st;
    assert_int_equal(stat(pub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(stat(sec, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(sp_curve_load(pub, 0, &a, err, sizeof err), SP_OK);
    assert_string_equal(a.public_z85, made.public_z85);
    assert_string_equal(a.secret_z85, "");
    assert_int_equal(sp_curve_load(sec, 1, &b, err, sizeof err), SP_OK);
    assert_string_equal(b.public_z85, made.public_z85);
    assert_string_equal(b.secret_z85, made.secret_z85);

    /* a public key where a key pair is needed */
    assert_int_equal(sp_curve_load(pub, 1, &a, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "no secret-key"));

    /* never overwritten: the pair on disk stays the same */
    sp_curve_cert_t other;
    assert_int_equal(sp_curve_keygen(prefix, &other, err, sizeof err), SP_E_STATE);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(sp_curve_load(sec, 1, &b, err, sizeof err), SP_OK);
    assert_string_equal(b.secret_z85, made.secret_z85);

    /* a bare Z85 key, as `echo KEY > file` leaves it */
    char bare[160], text[64];
    snprintf(bare, sizeof bare, "%s/bare.key", t->dir);
    snprintf(text, sizeof text, "%s\n", made.public_z85);
    s_write(bare, text, strlen(text));
    assert_int_equal(sp_curve_load(bare, 0, &a, err, sizeof err), SP_OK);
    assert_string_equal(a.public_z85, made.public_z85);
}

/* Each malformed key file is refused with a message naming the file. */
static void test_curve_bad_key_files_refused(void **state)
{
    if (!sp_curve_available()) {
        skip();
    }
    s_tmp_t *t = *state;
    char pub[41], sec[41], pub2[41], sec2[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(zmq_curve_keypair(pub2, sec2), 0);
    char bad_char[41];
    memcpy(bad_char, pub, sizeof bad_char);
    bad_char[7] = '~'; /* not in the Z85 alphabet */
    struct {
        const char *what;
        char text[512];
        size_t len;
        const char *want;
    } cases[6];
    int n = 0;
    cases[n].what = "empty";
    cases[n].text[0] = '\0';
    cases[n++].want = "holds no key";
    cases[n].what = "short";
    snprintf(cases[n].text, sizeof cases[n].text, "curve\n    public-key = \"%.39s\"\n", pub);
    cases[n++].want = "line 2";
    cases[n].what = "alphabet";
    snprintf(cases[n].text, sizeof cases[n].text, "    public-key = \"%s\"\n", bad_char);
    cases[n++].want = "line 1";
    cases[n].what = "unquoted";
    snprintf(cases[n].text, sizeof cases[n].text, "public-key = %s\n", pub);
    cases[n++].want = "line 1";
    cases[n].what = "mismatch";
    snprintf(cases[n].text, sizeof cases[n].text,
             "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", pub, sec2);
    cases[n++].want = "does not belong";
    cases[n].what = "nul";
    snprintf(cases[n].text, sizeof cases[n].text, "%s", pub);
    cases[n].text[10] = '\0';
    cases[n++].want = "NUL";
    for (int i = 0; i < n; i++) {
        cases[i].len = strcmp(cases[i].what, "nul") == 0 ? 41 : strlen(cases[i].text);
        char path[160], err[512] = "";
        snprintf(path, sizeof path, "%s/%s.key", t->dir, cases[i].what);
        s_write(path, cases[i].text, cases[i].len);
        sp_curve_cert_t k;
        int rc = sp_curve_load(path, 0, &k, err, sizeof err);
        if (rc != SP_E_INPUT || strstr(err, cases[i].want) == NULL || strstr(err, path) == NULL) {
            fail_msg("%s: rc %d, '%s' (wanted '%s')", cases[i].what, rc, err, cases[i].want);
        }
    }
    /* too big, missing, a directory */
    char path[160], err[512];
    sp_curve_cert_t k;
    snprintf(path, sizeof path, "%s/big.key", t->dir);
    char *big = malloc(SP_CURVE_FILE_MAX + 10);
    assert_non_null(big);
    memset(big, '#', SP_CURVE_FILE_MAX + 10);
    s_write(path, big, SP_CURVE_FILE_MAX + 10);
    free(big);
    assert_int_equal(sp_curve_load(path, 0, &k, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "at most"));
    snprintf(path, sizeof path, "%s/none.key", t->dir);
    assert_int_equal(sp_curve_load(path, 0, &k, err, sizeof err), SP_E_IO);
    assert_non_null(strstr(err, "none.key"));
    assert_int_equal(sp_curve_load(t->dir, 0, &k, err, sizeof err), SP_E_INPUT);
    assert_non_null(strstr(err, "not a regular file"));
}

/* Only public-key files count: a secret file or a hidden file of another
 * key does not let that key in. */
static void test_curve_allow_dir(void **state)
{
    if (!sp_curve_available()) {
        skip();
    }
    s_tmp_t *t = *state;
    char dir[128], prefix[160], err[512];
    snprintf(dir, sizeof dir, "%s/allow", t->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    sp_curve_cert_t in, secret_only, hidden;
    snprintf(prefix, sizeof prefix, "%s/in", dir);
    assert_int_equal(sp_curve_keygen(prefix, &in, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/other", dir);
    assert_int_equal(sp_curve_keygen(prefix, &secret_only, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/other.key", dir);
    assert_int_equal(unlink(prefix), 0); /* only other.key_secret is left */
    snprintf(prefix, sizeof prefix, "%s/.hidden", dir);
    assert_int_equal(sp_curve_keygen(prefix, &hidden, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/garbage", dir);
    s_write(prefix, "not a key\n", 10);

    uint8_t key[32];
    char name[64] = "";
    assert_non_null(zmq_z85_decode(key, in.public_z85));
    assert_int_equal(sp_zap_allowed(dir, key, name, sizeof name), 1);
    assert_string_equal(name, "in.key");
    assert_non_null(zmq_z85_decode(key, secret_only.public_z85));
    assert_int_equal(sp_zap_allowed(dir, key, NULL, 0), 0);
    assert_non_null(zmq_z85_decode(key, hidden.public_z85));
    assert_int_equal(sp_zap_allowed(dir, key, NULL, 0), 0);
    assert_int_equal(sp_zap_allowed("/nonexistent/spatium", key, NULL, 0), 0);
}

/* A client socket trying the CURVE server at ep. */
typedef struct {
    void *sock, *watch;
} s_client_t;

static void s_client_open(void *ctx, s_client_t *c, const char *ep, const sp_curve_cert_t *own,
                          const sp_curve_cert_t *server)
{
    c->sock = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(c->sock);
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (own != NULL) {
        assert_int_equal(sp_curve_client(c->sock, own, server), SP_OK);
    }
    c->watch = sp_curve_watch(ctx, c->sock);
    assert_non_null(c->watch);
    assert_int_equal(zmq_connect(c->sock, ep), 0);
    assert_int_equal(zmq_send(c->sock, "ping", 4, ZMQ_DONTWAIT), 4);
}

static void s_client_close(s_client_t *c)
{
    sp_curve_watch_close(c->sock, &c->watch);
    zmq_close(c->sock);
}

/* Echoes what the server receives and waits for the client's answer or its
 * handshake failure: 0 answered, else the watch's code (1 or 2) with text. */
static int s_exchange(void *server, s_client_t *c, int curve_on, char *text, size_t len)
{
    int failed = 0;
    uint64_t first_fail = 0;
    for (uint64_t end = s_now_ms() + S_WAIT_MS; s_now_ms() < end;) {
        zmq_pollitem_t it[3] = {
            {server, 0, ZMQ_POLLIN, 0}, {c->sock, 0, ZMQ_POLLIN, 0}, {c->watch, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, 3, 50);
        if (it[0].revents & ZMQ_POLLIN) {
            char id[256], body[16];
            int n = zmq_recv(server, id, sizeof id, 0);
            assert_true(n > 0);
            assert_int_equal(zmq_recv(server, body, sizeof body, 0), 4);
            zmq_send(server, id, (size_t)n, ZMQ_SNDMORE);
            zmq_send(server, "pong", 4, 0);
        }
        if (it[1].revents & ZMQ_POLLIN) {
            char body[16];
            assert_int_equal(zmq_recv(c->sock, body, sizeof body, 0), 4);
            return 0;
        }
        int rc;
        char t[512];
        while ((rc = sp_curve_watch_read(c->watch, curve_on, t, sizeof t)) >= 0) {
            if (rc == 2 || (rc == 1 && !failed)) {
                snprintf(text, len, "%s", t);
                failed = rc;
                first_fail = first_fail ? first_fail : s_now_ms();
            }
        }
        if (failed == 2 || (failed == 1 && s_now_ms() - first_fail > 500)) {
            return failed;
        }
    }
    return failed ? failed : -1;
}

/* Closing a watch stops its socket's monitor. ZeroMQ's I/O thread sends
 * monitor events with a blocking send: were the monitor still on, the events
 * of the connection dropping and coming back (the server restarting) would
 * stall that thread, and with it every socket of the context. Plain
 * sockets: the watch serves them too. */
static void test_curve_watch_close_leaves_context_working(void **state)
{
    s_tmp_t *t = *state;
    char ep[160], body[16];
    snprintf(ep, sizeof ep, "ipc://%s/echo", t->dir);
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    int zero = 0, recv_ms = 2000;
    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    assert_non_null(server);
    zmq_setsockopt(server, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(server, ep), 0);
    s_client_t c;
    s_client_open(ctx, &c, ep, NULL, NULL);
    char text[512];
    assert_int_equal(s_exchange(server, &c, 0, text, sizeof text), 0);
    sp_curve_watch_close(c.sock, &c.watch);
    assert_null(c.watch);
    for (int round = 0; round < 3; round++) {
        /* the server restarts; the client reconnects and is heard */
        zmq_close(server);
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
        server = zmq_socket(ctx, ZMQ_ROUTER);
        assert_non_null(server);
        zmq_setsockopt(server, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(server, ZMQ_RCVTIMEO, &recv_ms, sizeof recv_ms);
        assert_int_equal(zmq_bind(server, ep), 0);
        assert_int_equal(zmq_send(c.sock, "ping", 4, 0), 4);
        char id[256];
        if (zmq_recv(server, id, sizeof id, 0) < 0) {
            /* the I/O thread is stuck: leave the context, terminating it would hang */
            fail_msg("round %d: the client's ping never arrived", round);
        }
        assert_int_equal(zmq_recv(server, body, sizeof body, 0), 4);
    }
    zmq_close(server);
    s_client_close(&c);
    zmq_ctx_term(ctx);
}

static void test_curve_zap_lets_in_only_listed_keys(void **state)
{
    if (!sp_curve_available()) {
        skip();
    }
    s_tmp_t *t = *state;
    char dir[128], prefix[160], ep[160], err[512], text[512];
    snprintf(dir, sizeof dir, "%s/clients", t->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    sp_curve_cert_t server_key, listed, stranger, late;
    snprintf(prefix, sizeof prefix, "%s/server", t->dir);
    assert_int_equal(sp_curve_keygen(prefix, &server_key, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/listed", dir);
    assert_int_equal(sp_curve_keygen(prefix, &listed, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/stranger", t->dir);
    assert_int_equal(sp_curve_keygen(prefix, &stranger, err, sizeof err), SP_OK);
    snprintf(prefix, sizeof prefix, "%s/late", t->dir);
    assert_int_equal(sp_curve_keygen(prefix, &late, err, sizeof err), SP_OK);

    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    const sp_zap_rule_t rules[1] = {{"clients", dir}};
    sp_zap_t *zap = sp_zap_new(ctx, rules, 1);
    assert_non_null(zap);
    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    assert_int_equal(sp_curve_server(server, &server_key, "clients"), SP_OK);
    int zero = 0;
    zmq_setsockopt(server, ZMQ_LINGER, &zero, sizeof zero);
    snprintf(ep, sizeof ep, "ipc://%s/s", t->dir);
    assert_int_equal(zmq_bind(server, ep), 0);

    s_client_t c;
    s_client_open(ctx, &c, ep, &listed, &server_key);
    assert_int_equal(s_exchange(server, &c, 1, text, sizeof text), 0);
    s_client_close(&c);

    s_client_open(ctx, &c, ep, &stranger, &server_key);
    assert_int_equal(s_exchange(server, &c, 1, text, sizeof text), 2);
    assert_non_null(strstr(text, "refused this program's CURVE key"));
    s_client_close(&c);

    s_client_open(ctx, &c, ep, NULL, NULL); /* no CURVE at all */
    assert_true(s_exchange(server, &c, 0, text, sizeof text) > 0);
    assert_non_null(strstr(text, "require"));
    assert_non_null(strstr(text, "--curve-server"));
    s_client_close(&c);

    s_client_open(ctx, &c, ep, &listed, &stranger); /* the wrong server key */
    assert_true(s_exchange(server, &c, 1, text, sizeof text) > 0);
    assert_non_null(strstr(text, "is --curve-server the coordinator's public key?"));
    s_client_close(&c);

    /* a key copied into the directory counts from the next connection */
    s_client_open(ctx, &c, ep, &late, &server_key);
    assert_int_equal(s_exchange(server, &c, 1, text, sizeof text), 2);
    s_client_close(&c);
    char from[192], to[192];
    snprintf(from, sizeof from, "%s/late.key", t->dir);
    snprintf(to, sizeof to, "%s/late.key", dir);
    assert_int_equal(rename(from, to), 0);
    s_client_open(ctx, &c, ep, &late, &server_key);
    assert_int_equal(s_exchange(server, &c, 1, text, sizeof text), 0);
    s_client_close(&c);

    /* a listed key on a socket whose domain has no rule */
    void *other = zmq_socket(ctx, ZMQ_ROUTER);
    assert_int_equal(sp_curve_server(other, &server_key, "elsewhere"), SP_OK);
    zmq_setsockopt(other, ZMQ_LINGER, &zero, sizeof zero);
    char ep2[160];
    snprintf(ep2, sizeof ep2, "ipc://%s/o", t->dir);
    assert_int_equal(zmq_bind(other, ep2), 0);
    s_client_open(ctx, &c, ep2, &listed, &server_key);
    assert_int_equal(s_exchange(other, &c, 1, text, sizeof text), 2);
    s_client_close(&c);

    zmq_close(other);
    zmq_close(server);
    sp_zap_destroy(&zap);
    assert_null(zap);
    sp_zap_destroy(&zap); /* idempotent */
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

int main(void)
{
    sp_log_set_level(SP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_curve_keygen_and_load, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_curve_bad_key_files_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_curve_allow_dir, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_curve_watch_close_leaves_context_working, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_curve_zap_lets_in_only_listed_keys, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
