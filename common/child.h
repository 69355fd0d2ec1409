/* child: waiting for and stopping a child process, for the programs that
 * start others (`spatium demo`, spatium-bench, the cluster tests). Each
 * call acts only on the pid it is given. */
#ifndef SP_CHILD_H
#define SP_CHILD_H

#include <sys/types.h>

/* Waits up to timeout_ms (0: only looks) for pid to exit and reaps it.
 * 0 once it has (with its wait status in *status when not NULL; a pid that
 * is no child of ours, say reaped already, counts as exited), -1 on timeout. */
int sp_child_wait(pid_t pid, int timeout_ms, int *status);

/* SIGTERM, up to timeout_ms for pid to exit, then SIGKILL; reaps it either
 * way. 0 when it exited by itself with status 0, else -1. No-op (0) for
 * pid <= 0. */
int sp_child_stop(pid_t pid, int timeout_ms);

#endif
