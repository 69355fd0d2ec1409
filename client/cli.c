/* cli: the client's connection to the coordinator. One DEALER socket per
 * process; each request carries a fresh request id and only the reply that
 * echoes it is accepted (late replies to earlier requests are skipped), and
 * the wait for it is bounded by timeout_ms through zmq_poll. */
#include "client/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "client/json.h"
#include "common/error.h"
#include "proto/curve.h"

#define S_HANDSHAKE_TRIES 3 /* failed handshakes without a reason, in a row, before giving up */
#define S_RESEND_MS 20      /* a request that could not be queued is tried again this often */

uint64_t sp_cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sp_cli_init(sp_cli_t *c)
{
    memset(c, 0, sizeof *c);
    const char *env = getenv("SPATIUM_COORDINATOR");
    if (env && env[0] && strlen(env) < sizeof c->endpoint) {
        strcpy(c->endpoint, env);
    } else {
        strcpy(c->endpoint, SP_CLI_DEFAULT_ENDPOINT);
    }
    c->timeout_ms = SP_CLI_DEFAULT_TIMEOUT_MS;
    c->next_req = 1;
    const char *server = getenv("SPATIUM_CURVE_SERVER");
    const char *secret = getenv("SPATIUM_CURVE_SECRET");
    c->curve_server = server && server[0] ? server : NULL;
    c->curve_secret = secret && secret[0] ? secret : NULL;
}

void sp_cli_reset_socket(sp_cli_t *c)
{
    sp_curve_watch_close(c->sock, &c->watch);
    if (c->sock) {
        zmq_close(c->sock);
        c->sock = NULL;
    }
}

void sp_cli_fini(sp_cli_t *c)
{
    sp_cli_reset_socket(c);
    if (c->ctx) {
        zmq_ctx_term(c->ctx);
        c->ctx = NULL;
    }
}

int sp_cli_report(const sp_cli_t *c, int code, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(stderr, "spatium: %s\n", text);
    if (c && c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_kstr(&j, "error", text);
        sp_json_ku64(&j, "exit", (uint64_t)code);
        sp_json_obj_end(&j);
        fflush(stdout);
    }
    return code;
}

/* Makes c->sock a CURVE client when key files are named. */
static int s_curve_setup(sp_cli_t *c)
{
    if (c->curve_server == NULL && c->curve_secret == NULL) {
        return SP_EXIT_OK;
    }
    if (c->curve_server == NULL || c->curve_secret == NULL) {
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "CURVE needs both --curve-server FILE (the coordinator's public "
                             "key) and --curve-secret FILE (this client's key pair)");
    }
    if (!sp_curve_available()) {
        return sp_cli_report(c, SP_EXIT_FAIL, "this libzmq was built without CURVE");
    }
    char err[512];
    sp_curve_cert_t server, own;
    if (sp_curve_load(c->curve_server, 0, &server, err, sizeof err) != SP_OK ||
        sp_curve_load(c->curve_secret, 1, &own, err, sizeof err) != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s", err);
    }
    snprintf(c->curve_public, sizeof c->curve_public, "%s", own.public_z85);
    int rc = sp_curve_client(c->sock, &own, &server);
    memset(&own, 0, sizeof own);
    if (rc != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "cannot set the CURVE keys: %s",
                             zmq_strerror(errno));
    }
    return SP_EXIT_OK;
}

/* Opens the DEALER socket; SP_EXIT_OK or an exit code after reporting. */
static int s_open(sp_cli_t *c)
{
    if (c->sock) {
        return SP_EXIT_OK;
    }
    if (!c->ctx) {
        c->ctx = zmq_ctx_new();
        if (!c->ctx) {
            return sp_cli_report(c, SP_EXIT_FAIL, "cannot create a ZeroMQ context: %s",
                                 zmq_strerror(errno));
        }
    }
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) {
        return sp_cli_report(c, SP_EXIT_FAIL, "cannot create a socket: %s", zmq_strerror(errno));
    }
    sp_sock_configure(c->sock, ZMQ_DEALER);
    int zero = 0;
    int send_ms = c->timeout_ms;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms);
    int rc = s_curve_setup(c);
    if (rc != SP_EXIT_OK) {
        sp_cli_reset_socket(c);
        return rc;
    }
    c->watch = sp_curve_watch(c->ctx, c->sock);
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        int e = errno;
        sp_cli_reset_socket(c);
        return sp_cli_report(c, SP_EXIT_USAGE, "cannot connect to '%s': %s", c->endpoint,
                             zmq_strerror(e));
    }
    return SP_EXIT_OK;
}

static void s_set_req(sp_msg_t *m, uint64_t id)
{
    uint64_t *req = sp_msg_req(m);
    if (req != NULL) {
        *req = id;
    }
}

/* The command a request belongs to, for error lines ("submit: ..."). */
static const char *s_command_of(sp_msg_type_t type)
{
    switch (type) {
    case SP_MSG_UPLOAD_BEGIN:
    case SP_MSG_UPLOAD_CHUNK:
    case SP_MSG_UPLOAD_END:
        return "submit";
    case SP_MSG_MODEL_GET:
        return "model";
    default:
        return sp_msg_type_name(type);
    }
}

/* Reports a failed security handshake; retrying cannot help, the keys or
 * the allow-list have to change first. */
static int s_handshake_failed(sp_cli_t *c, const char *what, const char *text)
{
    sp_cli_reset_socket(c);
    if (c->curve_server != NULL) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s (this client's public key: %s)", what, text,
                             c->curve_public);
    }
    return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", what, text);
}

static int s_call(sp_cli_t *c, sp_msg_t *req, sp_msg_type_t want, sp_msg_t *reply, int quiet)
{
    const char *what = s_command_of(req->type);
    sp_msg_init(reply, want ? want : SP_MSG_R_OK);
    int rc = s_open(c);
    if (rc != SP_EXIT_OK) {
        return rc;
    }
    uint64_t id = c->next_req++;
    s_set_req(req, id);
    uint64_t deadline = sp_cli_now_ms() + (uint64_t)c->timeout_ms;
    int sent = 0;
    int fails = 0; /* handshakes failed without a reason since the last success */
    char failure[512] = "", text[512];
    for (;;) {
        uint64_t now = sp_cli_now_ms();
        if (c->interrupt && *c->interrupt) {
            return sp_cli_report(c, SP_EXIT_FAIL, "interrupted");
        }
        /* The socket may have no connection to queue the request on for a
         * while (a refused handshake can drop it): keep trying until the
         * deadline while the watch says why, instead of giving up at once. */
        if (!sent) {
            rc = sp_msg_send(c->sock, NULL, 0, req);
            int e = errno;
            sent = rc == SP_OK;
            if (!sent && (rc != SP_E_IO || e != EAGAIN)) {
                sp_cli_reset_socket(c);
                return sp_cli_report(c, SP_EXIT_FAIL, "%s: cannot send the request: %s", what,
                                     rc == SP_E_IO ? zmq_strerror(e) : sp_strerror(rc));
            }
        }
        if (now >= deadline && fails >= S_HANDSHAKE_TRIES - 1) { /* all the time allowed */
            return s_handshake_failed(c, what, failure);
        }
        if (now >= deadline) {
            /* An unanswered request stays queued in the socket: drop it so a
             * later call does not get an answer to a question nobody asks. */
            sp_cli_reset_socket(c);
            if (quiet) {
                return SP_EXIT_UNREACHABLE;
            }
            if (!sent) {
                return sp_cli_report(c, SP_EXIT_UNREACHABLE,
                                     "could not send %s to the coordinator at %s within %d ms",
                                     what, c->endpoint, c->timeout_ms);
            }
            return sp_cli_report(c, SP_EXIT_UNREACHABLE,
                                 "no reply from the coordinator at %s within %d ms (is "
                                 "spatium-coordinator running?)",
                                 c->endpoint, c->timeout_ms);
        }
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->watch, 0, ZMQ_POLLIN, 0}};
        long wait_ms = (long)(deadline - now);
        if (!sent && wait_ms > S_RESEND_MS) {
            wait_ms = S_RESEND_MS;
        }
        int n = zmq_poll(items, c->watch ? 2 : 1, wait_ms);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return sp_cli_report(c, SP_EXIT_FAIL, "poll failed: %s", zmq_strerror(errno));
        }
        if (n > 0 && c->watch != NULL && (items[1].revents & ZMQ_POLLIN)) {
            /* A refusal with its reason is final. One without (what a wrong
             * server key looks like) is final once it repeats: a single one
             * may be a coordinator that died in the middle of a handshake. */
            int curve_on = c->curve_server != NULL;
            while ((rc = sp_curve_watch_read(c->watch, curve_on, text, sizeof text)) >= 0) {
                if (rc == 3) {
                    fails = 0;
                } else if (rc == 2 || (rc == 1 && ++fails >= S_HANDSHAKE_TRIES)) {
                    return s_handshake_failed(c, what, text);
                } else if (rc == 1) {
                    memcpy(failure, text, sizeof failure);
                }
            }
        }
        if (!(items[0].revents & ZMQ_POLLIN)) {
            continue;
        }
        char err[256] = "";
        sp_msg_t m;
        rc = sp_msg_recv(c->sock, ZMQ_DONTWAIT, NULL, NULL, &m, err, sizeof err);
        if (rc == SP_E_TIMEOUT) {
            continue;
        }
        if (rc != SP_OK) {
            return sp_cli_report(c, SP_EXIT_FAIL, "%s: bad reply from the coordinator: %s", what,
                                 err[0] ? err : sp_strerror(rc));
        }
        const uint64_t *rp = sp_msg_req(&m);
        uint64_t rid = rp != NULL ? *rp : 0;
        if (m.type == SP_MSG_ERROR && (rid == id || rid == 0)) {
            rc = sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", what, m.u.error.message);
            sp_msg_fini(&m);
            return rc;
        }
        if (rid != id) {
            sp_msg_fini(&m); /* a late reply to an earlier request */
            continue;
        }
        if (want != 0 && m.type != want) {
            const char *got = sp_msg_type_name(m.type);
            sp_msg_fini(&m);
            return sp_cli_report(c, SP_EXIT_FAIL, "%s: unexpected reply '%s' from the coordinator",
                                 what, got ? got : "?");
        }
        *reply = m;
        return SP_EXIT_OK;
    }
}

int sp_cli_call(sp_cli_t *c, sp_msg_t *req, sp_msg_type_t want, sp_msg_t *reply)
{
    return s_call(c, req, want, reply, 0);
}

int sp_cli_call_quiet(sp_cli_t *c, sp_msg_t *req, sp_msg_type_t want, sp_msg_t *reply)
{
    return s_call(c, req, want, reply, 1);
}
