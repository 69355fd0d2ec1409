/* cli: the client's root object and the pieces every command shares:
 * global options, exit codes, request / reply with a bounded wait, and the
 * one-line error report. A command never blocks longer than timeout_ms
 * waiting for one reply, and returns one of the SP_EXIT_* codes. */
#ifndef SP_CLIENT_CLI_H
#define SP_CLIENT_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/messages.h"

/* Exit status of the `spatium` program (an interface scripts rely on). */
enum {
    SP_EXIT_OK = 0,         /* success */
    SP_EXIT_FAIL = 1,       /* the operation failed (one line on stderr) */
    SP_EXIT_USAGE = 2,      /* unknown command or flag, missing or bad argument */
    SP_EXIT_UNREACHABLE = 3 /* no reply from the coordinator within the timeout */
};

#define SP_CLI_DEFAULT_ENDPOINT "tcp://127.0.0.1:5556"
#define SP_CLI_DEFAULT_TIMEOUT_MS 5000
#define SP_CLI_ENDPOINT_MAX 512

typedef struct {
    char endpoint[SP_CLI_ENDPOINT_MAX]; /* coordinator's client endpoint */
    int json;                           /* 1: one JSON object on stdout per command */
    int timeout_ms;                     /* bound on the wait for each reply, 1..86400000 */
    void *ctx;                          /* ZeroMQ context, created on first request */
    void *sock;                         /* DEALER connected to endpoint, NULL until needed */
    uint64_t next_req;                  /* request id of the next request, >= 1 */
    volatile sig_atomic_t *interrupt;   /* set by a signal handler: stop waiting (may be NULL) */
    const char *curve_server; /* coordinator's public key file ($SPATIUM_CURVE_SERVER), or NULL */
    const char *curve_secret; /* this client's key pair file ($SPATIUM_CURVE_SECRET), or NULL */
    void *watch;              /* handshake events of sock, NULL when not watched */
    char curve_public[41];    /* this client's public key (Z85), for error messages */
} sp_cli_t;

/* Fills c with the defaults ($SPATIUM_COORDINATOR overrides the endpoint;
 * $SPATIUM_CURVE_SERVER and $SPATIUM_CURVE_SECRET name the CURVE key files). */
void sp_cli_init(sp_cli_t *c);
/* Closes the socket and the context; c can be used again afterwards. */
void sp_cli_fini(sp_cli_t *c);
/* Drops the socket (pending replies die with it); the next call opens a new one. */
void sp_cli_reset_socket(sp_cli_t *c);

/* Sends req (its request id is set here) and waits up to timeout_ms for the
 * reply with the same id. On SP_EXIT_OK *reply holds a message of type want
 * (any reply type when want is 0; caller calls sp_msg_fini). An ERROR reply, or a reply of another
 * type, reports one line and returns SP_EXIT_FAIL; silence returns SP_EXIT_UNREACHABLE (reported
 * too unless quiet). req is not freed. */
int sp_cli_call(sp_cli_t *c, sp_msg_t *req, sp_msg_type_t want, sp_msg_t *reply);
/* Same, without reporting an unreachable coordinator (callers that retry). */
int sp_cli_call_quiet(sp_cli_t *c, sp_msg_t *req, sp_msg_type_t want, sp_msg_t *reply);

/* Reports a failure: "spatium: <text>" on stderr and, with --json, one
 * {"error": ..., "exit": code} object on stdout. Returns code. */
int sp_cli_report(const sp_cli_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- argument helpers (client/args.c) ---------------------------------- */
/* Matches argv[*i] against "--name VALUE" or "--name=VALUE"; on a match sets
 * *val, advances *i past the value and returns 1; 0 when it is another
 * argument; -1 (usage reported) when the value is missing. */
int sp_args_value(const sp_cli_t *c, int argc, char **argv, int *i, const char *name,
                  const char **val);
/* Strict unsigned / double parsing: the whole string, within [lo, hi].
 * Returns 0, or SP_EXIT_USAGE after reporting "bad value for WHAT". */
int sp_args_u64(const sp_cli_t *c, const char *what, const char *s, uint64_t lo, uint64_t hi,
                uint64_t *out);
int sp_args_u32(const sp_cli_t *c, const char *what, const char *s, uint32_t lo, uint32_t hi,
                uint32_t *out);
int sp_args_double(const sp_cli_t *c, const char *what, const char *s, double lo, double hi,
                   double *out);
/* Handles a global option (--json, --coordinator EP, --timeout-ms MS,
 * --curve-server FILE, --curve-secret FILE) met
 * after the command name: 1 consumed, 0 not a global option, -1 a usage
 * error (already reported). */
int sp_args_global(sp_cli_t *c, int argc, char **argv, int *i);
/* What is left of a command's arguments once its own options are handled:
 * a global option, else an unknown option (a usage error), else positional
 * argument number *n, stored in pos (at most max_pos of them). argv[0] is
 * the command's name, used in messages. 1 consumed, -1 a usage error
 * (already reported). */
int sp_args_rest(sp_cli_t *c, int argc, char **argv, int *i, const char **pos, int *n,
                 int max_pos);
/* 1 when argv[i] is -h or --help. */
int sp_args_is_help(const char *arg);

/* Monotonic clock in milliseconds. */
uint64_t sp_cli_now_ms(void);

#endif
