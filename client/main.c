/* main: the `spatium` client program. Parses the global options, picks the
 * command and hands it the rest of the line. Exit status is an interface:
 * 0 success, 1 the operation failed, 2 usage error, 3 coordinator
 * unreachable within the timeout (client/cli.h). */
#include <stdio.h>
#include <string.h>

#include "client/cli.h"
#include "client/commands.h"
#include "common/error.h"

typedef struct {
    const char *name;
    int (*run)(sp_cli_t *c, int argc, char **argv);
    const char *summary;
} s_command_t;

static const s_command_t s_commands[] = {
    {"submit", sp_cmd_submit, "upload a dataset (CSV or IDX, gzip or not)"},
    {"train", sp_cmd_train, "start a training job (--wait: follow it to the end)"},
    {"status", sp_cmd_status, "state of one job, or of every job"},
    {"workers", sp_cmd_workers, "list the workers and their health"},
    {"watch", sp_cmd_watch, "print a job's metrics live until it ends"},
    {"metrics", sp_cmd_metrics, "a job's metric records (json, csv, prometheus; png curves)"},
    {"model", sp_cmd_model, "fetch a job's trained model into a file"},
    {"cancel", sp_cmd_cancel, "cancel a job"},
    {"datasets", sp_cmd_datasets, "list the stored datasets"},
    {"eval", sp_cmd_eval, "accuracy or MSE of a model file on a data file (local)"},
    {"inspect", sp_cmd_inspect, "a model file's layers; a neuron's memory or map as PNG (local)"},
    {"demo", sp_cmd_demo, "run coordinator, workers and a training job on this machine"},
    {"keygen", sp_cmd_keygen, "make a CURVE key pair: NAME.key (public), NAME.key_secret"},
};

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: spatium [--coordinator EP] [--json] [--timeout-ms MS]\n"
            "               [--curve-server FILE --curve-secret FILE] COMMAND [ARGS]\n"
            "\n"
            "Client of the Spatium distributed trainer.\n"
            "  --coordinator EP  coordinator's client endpoint (default $SPATIUM_COORDINATOR\n"
            "                    or " SP_CLI_DEFAULT_ENDPOINT ")\n"
            "  --json            print exactly one JSON object on stdout\n"
            "  --timeout-ms MS   wait at most MS for each reply (default %d)\n"
            "  --curve-server FILE  the coordinator's public key: talk CURVE (encrypted)\n"
            "                    (default $SPATIUM_CURVE_SERVER)\n"
            "  --curve-secret FILE  this client's key pair (default $SPATIUM_CURVE_SECRET)\n"
            "\ncommands:\n",
            SP_CLI_DEFAULT_TIMEOUT_MS);
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        fprintf(f, "  %-9s %s\n", s_commands[i].name, s_commands[i].summary);
    }
    fprintf(f, "\n`spatium COMMAND --help` describes a command.\n"
               "exit status: 0 success, 1 failed, 2 usage error, 3 coordinator unreachable\n");
}

int main(int argc, char **argv)
{
    sp_cli_t c;
    sp_cli_init(&c);
    sp_log_set_level(SP_LOG_WARN);
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (sp_args_is_help(argv[i])) {
            s_usage(stdout);
            return SP_EXIT_OK;
        }
        int g = sp_args_global(&c, argc, argv, &i);
        if (g < 0) {
            return SP_EXIT_USAGE;
        }
        if (g == 0) {
            sp_cli_report(&c, SP_EXIT_USAGE, "unknown option '%s' (see spatium --help)", argv[i]);
            return SP_EXIT_USAGE;
        }
        i++;
    }
    if (i >= argc) {
        s_usage(stderr);
        return sp_cli_report(&c, SP_EXIT_USAGE, "no command given");
    }
    if (strcmp(argv[i], "help") == 0) {
        s_usage(stdout);
        return SP_EXIT_OK;
    }
    for (size_t k = 0; k < sizeof s_commands / sizeof s_commands[0]; k++) {
        if (strcmp(argv[i], s_commands[k].name) == 0) {
            int rc = s_commands[k].run(&c, argc - i, argv + i);
            fflush(stdout);
            sp_cli_fini(&c);
            return rc;
        }
    }
    return sp_cli_report(&c, SP_EXIT_USAGE, "unknown command '%s' (see spatium --help)", argv[i]);
}
