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
}

void sp_cli_reset_socket(sp_cli_t *c)
{
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
    if (sp_msg_send(c->sock, NULL, 0, req) != SP_OK) {
        sp_cli_reset_socket(c);
        if (quiet) {
            return SP_EXIT_UNREACHABLE;
        }
        return sp_cli_report(c, SP_EXIT_UNREACHABLE,
                             "could not send %s to the coordinator at %s within %d ms", what,
                             c->endpoint, c->timeout_ms);
    }
    uint64_t deadline = sp_cli_now_ms() + (uint64_t)c->timeout_ms;
    for (;;) {
        uint64_t now = sp_cli_now_ms();
        if (c->interrupt && *c->interrupt) {
            return sp_cli_report(c, SP_EXIT_FAIL, "interrupted");
        }
        if (now >= deadline) {
            /* The unanswered request stays queued in the socket: drop it so a
             * later call does not get an answer to a question nobody asks. */
            sp_cli_reset_socket(c);
            if (quiet) {
                return SP_EXIT_UNREACHABLE;
            }
            return sp_cli_report(c, SP_EXIT_UNREACHABLE,
                                 "no reply from the coordinator at %s within %d ms (is "
                                 "spatium-coordinator running?)",
                                 c->endpoint, c->timeout_ms);
        }
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, (long)(deadline - now));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return sp_cli_report(c, SP_EXIT_FAIL, "poll failed: %s", zmq_strerror(errno));
        }
        if (n == 0) {
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
