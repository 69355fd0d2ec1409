/* main: the spatium-worker program. Parses the command line, sets the
 * OpenMP thread count, installs SIGINT/SIGTERM handlers (they only set the
 * stop flag: the loop says BYE and exits 0) and runs the worker. */
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "proto/messages.h"
#include "worker/worker.h"

static volatile sig_atomic_t s_stop = 0;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: spatium-worker [--coordinator EP] [--threads N] [--name NAME] [--verbose]\n"
            "                      [--curve-server FILE --curve-secret FILE]\n"
            "\n"
            "Computes training partitions for a Spatium coordinator. Waits for an absent\n"
            "coordinator and reconnects by itself after one dies or restarts.\n"
            "  --coordinator EP  coordinator's worker endpoint (default %s)\n"
            "  --threads N       OpenMP threads (default: all cores, here %d)\n"
            "  --name NAME       name shown by `spatium workers` (default HOSTNAME-PID)\n"
            "  --verbose         log registrations and dataset fetches\n"
            "  --curve-server FILE  the coordinator's public key: talk CURVE (encrypted)\n"
            "  --curve-secret FILE  this worker's key pair (`spatium keygen NAME` makes one)\n"
            "SIGINT / SIGTERM: say goodbye to the coordinator and exit 0.\n",
            SP_WORKER_DEFAULT_ENDPOINT, omp_get_num_procs());
}

/* Keeps [A-Za-z0-9._-] and replaces anything else by '-'. */
static void s_clean_name(char *s)
{
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            *s = '-';
        }
    }
}

static int s_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) {
        return 0;
    }
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "spatium-worker: %s needs a value\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int main(int argc, char **argv)
{
    sp_worker_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "%s", SP_WORKER_DEFAULT_ENDPOINT);
    int procs = omp_get_num_procs();
    cfg.threads = procs > 0 ? (uint32_t)procs : 1;
    char host[256] = "worker";
    if (gethostname(host, sizeof host) != 0) {
        strcpy(host, "worker");
    }
    host[sizeof host - 1] = '\0';
    snprintf(cfg.name, sizeof cfg.name, "%.40s-%ld", host, (long)getpid());
    s_clean_name(cfg.name);
    sp_log_set_level(SP_LOG_WARN);
    const char *server_key = NULL, *own_key = NULL;

    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            sp_log_set_level(SP_LOG_INFO);
        } else if ((m = s_value(argc, argv, &i, "--coordinator", &v)) != 0) {
            if (m < 0) {
                return 2;
            }
            if (!v[0] || strlen(v) >= sizeof cfg.endpoint) {
                fprintf(stderr, "spatium-worker: bad value for --coordinator: '%s'\n", v);
                return 2;
            }
            snprintf(cfg.endpoint, sizeof cfg.endpoint, "%s", v);
        } else if ((m = s_value(argc, argv, &i, "--threads", &v)) != 0) {
            if (m < 0) {
                return 2;
            }
            char *end = NULL;
            long n = strtol(v, &end, 10);
            if (!v[0] || *end != '\0' || n < 1 || n > 1024) {
                fprintf(stderr, "spatium-worker: bad value for --threads: '%s' (1..1024)\n", v);
                return 2;
            }
            cfg.threads = (uint32_t)n;
        } else if ((m = s_value(argc, argv, &i, "--name", &v)) != 0) {
            if (m < 0) {
                return 2;
            }
            if (!sp_msg_name_ok(v)) {
                fprintf(stderr,
                        "spatium-worker: bad value for --name: '%s' (1-63 characters of "
                        "A-Z a-z 0-9 . _ -, not starting with '.')\n",
                        v);
                return 2;
            }
            snprintf(cfg.name, sizeof cfg.name, "%s", v);
        } else if ((m = s_value(argc, argv, &i, "--curve-server", &v)) != 0) {
            if (m < 0) {
                return 2;
            }
            server_key = v;
        } else if ((m = s_value(argc, argv, &i, "--curve-secret", &v)) != 0) {
            if (m < 0) {
                return 2;
            }
            own_key = v;
        } else {
            fprintf(stderr, "spatium-worker: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if ((server_key == NULL) != (own_key == NULL)) {
        fprintf(stderr, "spatium-worker: --curve-server and --curve-secret go together\n");
        return 2;
    }
    if (server_key != NULL) {
        char err[512];
        if (!sp_curve_available()) {
            fprintf(stderr, "spatium-worker: this libzmq was built without CURVE\n");
            return 1;
        }
        if (sp_curve_load(server_key, 0, &cfg.curve_server, err, sizeof err) != SP_OK ||
            sp_curve_load(own_key, 1, &cfg.curve_own, err, sizeof err) != SP_OK) {
            fprintf(stderr, "spatium-worker: %s\n", err);
            return 1;
        }
        cfg.curve = 1;
    }
    omp_set_num_threads((int)cfg.threads);
    sp_msg_tune_allocator();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sp_worker_t *w = sp_worker_new(&cfg, &s_stop);
    if (!w) {
        fprintf(stderr, "spatium-worker: cannot start (out of memory or no ZeroMQ)\n");
        return 1;
    }
    int rc = sp_worker_run(w);
    sp_worker_destroy(&w);
    return rc == SP_OK ? 0 : 1;
}
