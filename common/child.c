/* child: see child.h. */
#include "common/child.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#define S_POLL_MS 5         /* between two looks at a child that has not exited */
#define S_KILL_WAIT_MS 5000 /* after SIGKILL; the kernel reaps within it */

static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int sp_child_wait(pid_t pid, int timeout_ms, int *status)
{
    uint64_t end = s_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            if (status != NULL) {
                *status = st;
            }
            return 0;
        }
        if (s_now_ms() >= end) {
            return -1;
        }
        struct timespec ts = {0, S_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int sp_child_stop(pid_t pid, int timeout_ms)
{
    if (pid <= 0) {
        return 0;
    }
    kill(pid, SIGTERM);
    int st = 0;
    if (sp_child_wait(pid, timeout_ms, &st) != 0) {
        kill(pid, SIGKILL);
        (void)sp_child_wait(pid, S_KILL_WAIT_MS, NULL);
        return -1;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
