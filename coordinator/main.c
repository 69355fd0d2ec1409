/* spatium-coordinator: command line, signals and the process's one root
 * object. SIGINT / SIGTERM set a flag (the only global besides the log
 * level); the loop then checkpoints the running job, says BYE to the workers
 * and the process exits 0. A bad flag prints the usage and exits 2. */
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "proto/messages.h"
#include "coordinator/coordinator.h"

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: spatium-coordinator [--workers EP] [--clients EP] [--metrics EP]\n"
               "                           [--state-dir DIR] [--heartbeat-ms MS] [--liveness N]\n"
               "                           [--log-level error|warn|info|debug]\n"
               "                           [--curve-secret FILE --curve-workers DIR --curve-clients DIR]\n"
               "  --workers EP        ROUTER endpoint for workers   (default tcp://*:5555)\n"
               "  --clients EP        ROUTER endpoint for clients   (default tcp://*:5556)\n"
               "  --metrics EP        PUB endpoint for live metrics (default tcp://*:5557)\n"
               "  --state-dir DIR     datasets, jobs, checkpoints   (default ./spatium-state)\n"
               "  --heartbeat-ms MS   heartbeat interval, 10..60000 (default 1000)\n"
               "  --liveness N        missed beats before a worker is dead, 1..100 (default 3)\n"
               "  --curve-secret FILE encrypt every socket with CURVE, using this key pair\n"
               "                      (make one with `spatium keygen NAME`)\n"
               "  --curve-workers DIR public keys of the workers let in (with --curve-secret)\n"
               "  --curve-clients DIR public keys of the clients and metrics subscribers let in\n");
}

static int s_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi) {
        return 0;
    }
    *out = (uint32_t)v;
    return 1;
}

int main(int argc, char **argv)
{
    sp_coord_config_t cfg = {
        .workers_ep = "tcp://*:5555",
        .clients_ep = "tcp://*:5556",
        .metrics_ep = "tcp://*:5557",
        .state_dir = "./spatium-state",
        .heartbeat_ms = 1000,
        .liveness = 3,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 0;
        }
        static const char *const known[] = {
            "--workers",      "--clients",  "--metrics",   "--state-dir",
            "--heartbeat-ms", "--liveness", "--log-level", "--curve-secret",
            "--curve-workers", "--curve-clients", NULL};
        int is_known = 0;
        for (int k = 0; known[k] != NULL; k++) {
            is_known |= strcmp(a, known[k]) == 0;
        }
        if (!is_known) {
            fprintf(stderr, "spatium-coordinator: unknown option '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
        if (v == NULL) {
            fprintf(stderr, "spatium-coordinator: %s needs a value\n", a);
            s_usage(stderr);
            return 2;
        }
        int ok = 1;
        if (strcmp(a, "--workers") == 0) {
            cfg.workers_ep = v;
        } else if (strcmp(a, "--clients") == 0) {
            cfg.clients_ep = v;
        } else if (strcmp(a, "--metrics") == 0) {
            cfg.metrics_ep = v;
        } else if (strcmp(a, "--state-dir") == 0) {
            cfg.state_dir = v;
            ok = v[0] != '\0';
        } else if (strcmp(a, "--heartbeat-ms") == 0) {
            ok = s_parse_u32(v, 10, 60000, &cfg.heartbeat_ms);
        } else if (strcmp(a, "--liveness") == 0) {
            ok = s_parse_u32(v, 1, 100, &cfg.liveness);
        } else if (strcmp(a, "--curve-secret") == 0) {
            cfg.curve_secret = v;
        } else if (strcmp(a, "--curve-workers") == 0) {
            cfg.curve_workers = v;
        } else if (strcmp(a, "--curve-clients") == 0) {
            cfg.curve_clients = v;
        } else if (strcmp(a, "--log-level") == 0) {
            static const char *const names[] = {"error", "warn", "info", "debug"};
            ok = 0;
            for (int k = 0; k < 4; k++) {
                if (strcmp(v, names[k]) == 0) {
                    sp_log_set_level((sp_log_level_t)k);
                    ok = 1;
                }
            }
        } else {
            fprintf(stderr, "spatium-coordinator: unknown option '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "spatium-coordinator: bad value '%s' for %s\n", v, a);
            s_usage(stderr);
            return 2;
        }
        i++;
    }
    if ((cfg.curve_secret == NULL) != (cfg.curve_workers == NULL) ||
        (cfg.curve_secret == NULL) != (cfg.curve_clients == NULL)) {
        fprintf(stderr, "spatium-coordinator: --curve-secret, --curve-workers and "
                        "--curve-clients go together (the key pair and who may connect)\n");
        s_usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: zmq_poll must return EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The coordinator's network work per step (optimizer step, model
     * encoding, stats) is small; OpenMP threads would only spin after each
     * call and take the cores the workers on this machine need. Results do
     * not depend on the thread count. */
    omp_set_num_threads(1);
    sp_msg_tune_allocator();

    sp_coord_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        fprintf(stderr, "spatium-coordinator: out of memory\n");
        return 1;
    }
    if (sp_coord_init(c, &cfg, &s_stop) != SP_OK) {
        free(c);
        return 1;
    }
    int rc = sp_coord_run(c);
    sp_coord_fini(c);
    free(c);
    sp_log(SP_LOG_INFO, "coordinator stopped");
    return rc == SP_OK ? 0 : 1;
}
