/* keygen: the `keygen` command. Makes a CURVE key pair for a coordinator, a
 * worker or a client, locally: NAME.key holds the public key (it goes into
 * the coordinator's allow-list, or to the workers and clients when it is the
 * coordinator's), NAME.key_secret the pair. Existing files are never
 * overwritten. */
#include <stdio.h>

#include "client/commands.h"
#include "client/json.h"
#include "common/error.h"
#include "proto/curve.h"

static const char s_keygen_usage[] =
    "usage: spatium keygen NAME\n"
    "Makes a CURVE key pair: NAME.key (public key, mode 0644) and NAME.key_secret\n"
    "(key pair, mode 0600), in ZeroMQ's certificate format. Refuses to overwrite.\n"
    "  coordinator: spatium-coordinator --curve-secret NAME.key_secret\n"
    "               --curve-workers DIR --curve-clients DIR\n"
    "  worker:      spatium-worker --curve-server COORD.key --curve-secret NAME.key_secret\n"
    "  client:      spatium --curve-server COORD.key --curve-secret NAME.key_secret ...\n"
    "Copy a worker's or client's NAME.key into the coordinator's DIR to let it in.\n"
    "--json: {\"public_key\", \"public_file\", \"secret_file\"}.\n";

int sp_cmd_keygen(sp_cli_t *c, int argc, char **argv)
{
    const char *name = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (sp_args_is_help(argv[i])) {
            fputs(s_keygen_usage, stdout);
            return SP_EXIT_OK;
        }
        if (sp_args_rest(c, argc, argv, &i, &name, &n, 1) < 0) {
            return SP_EXIT_USAGE;
        }
    }
    if (name == NULL || name[0] == '\0') {
        fputs(s_keygen_usage, stderr);
        return sp_cli_report(c, SP_EXIT_USAGE, "keygen: NAME is missing");
    }
    sp_curve_cert_t k;
    char err[512];
    if (sp_curve_keygen(name, &k, err, sizeof err) != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "keygen: %s", err);
    }
    if (c->json) {
        char pub[4096], sec[4096];
        snprintf(pub, sizeof pub, "%s.key", name);
        snprintf(sec, sizeof sec, "%s.key_secret", name);
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_kstr(&j, "public_key", k.public_z85);
        sp_json_kstr(&j, "public_file", pub);
        sp_json_kstr(&j, "secret_file", sec);
        sp_json_obj_end(&j);
    } else {
        printf("public key %s\nwrote %s.key (public) and %s.key_secret (keep it private)\n",
               k.public_z85, name, name);
    }
    return SP_EXIT_OK;
}
