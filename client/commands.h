/* commands: one function per `spatium` command. Each takes the root client
 * object and the command's own arguments (argv[0] is the command name) and
 * returns an SP_EXIT_* status; each prints its usage for -h / --help. */
#ifndef SP_CLIENT_COMMANDS_H
#define SP_CLIENT_COMMANDS_H

#include "client/cli.h"

int sp_cmd_submit(sp_cli_t *c, int argc, char **argv);   /* client/submit.c */
int sp_cmd_train(sp_cli_t *c, int argc, char **argv);    /* client/train.c */
int sp_cmd_watch(sp_cli_t *c, int argc, char **argv);    /* client/train.c */
int sp_cmd_status(sp_cli_t *c, int argc, char **argv);   /* client/commands.c */
int sp_cmd_workers(sp_cli_t *c, int argc, char **argv);  /* client/commands.c */
int sp_cmd_datasets(sp_cli_t *c, int argc, char **argv); /* client/commands.c */
int sp_cmd_model(sp_cli_t *c, int argc, char **argv);    /* client/commands.c */
int sp_cmd_cancel(sp_cli_t *c, int argc, char **argv);   /* client/commands.c */
int sp_cmd_metrics(sp_cli_t *c, int argc, char **argv);  /* client/metrics.c */
int sp_cmd_eval(sp_cli_t *c, int argc, char **argv);     /* client/eval.c */
int sp_cmd_inspect(sp_cli_t *c, int argc, char **argv);  /* client/inspect.c */
int sp_cmd_demo(sp_cli_t *c, int argc, char **argv);     /* client/demo.c */
int sp_cmd_keygen(sp_cli_t *c, int argc, char **argv);   /* client/keygen.c */

#endif
