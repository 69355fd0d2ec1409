/* test_child: sp_child_wait reaps a child that has exited and gives up on
 * one that has not; sp_child_stop ends a child with SIGTERM, or SIGKILL
 * when it ignores that, and always reaps it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h> /* after setjmp.h, stdarg.h, stddef.h */

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child.h"

enum { S_EXIT_7, S_SLEEP, S_TERM_EXITS_0, S_IGNORE_TERM };

static void s_on_term(int sig)
{
    (void)sig;
    _exit(0);
}

/* A child that does one thing; none runs longer than 10 s on its own.
 * Returns once the child has set up its signal disposition. */
static pid_t s_child(int what)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        if (what == S_EXIT_7) {
            _exit(7);
        }
        if (what == S_TERM_EXITS_0) {
            signal(SIGTERM, s_on_term);
        } else if (what == S_IGNORE_TERM) {
            signal(SIGTERM, SIG_IGN);
        }
        (void)!write(ready[1], "r", 1);
        for (int i = 0; i < 100; i++) {
            usleep(100000);
        }
        _exit(3);
    }
    close(ready[1]);
    char c;
    (void)!read(ready[0], &c, 1); /* a byte, or end of file when it exited */
    close(ready[0]);
    return pid;
}

/* pid is no longer a child of this process: it was reaped. */
static void s_expect_reaped(pid_t pid)
{
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_child_wait(void **state)
{
    (void)state;
    pid_t pid = s_child(S_EXIT_7);
    int st = 0;
    assert_int_equal(sp_child_wait(pid, 5000, &st), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 7);
    s_expect_reaped(pid);
    /* reaped already: counts as exited */
    assert_int_equal(sp_child_wait(pid, 0, NULL), 0);

    pid = s_child(S_SLEEP);
    assert_int_equal(sp_child_wait(pid, 0, NULL), -1);
    assert_int_equal(sp_child_wait(pid, 50, NULL), -1);
    assert_int_equal(kill(pid, 0), 0); /* still there */
    kill(pid, SIGKILL);
    assert_int_equal(sp_child_wait(pid, 5000, &st), 0);
    assert_true(WIFSIGNALED(st));
}

static void test_child_stop(void **state)
{
    (void)state;
    /* exits 0 on SIGTERM: a clean stop */
    pid_t pid = s_child(S_TERM_EXITS_0);
    assert_int_equal(sp_child_stop(pid, 5000), 0);
    s_expect_reaped(pid);

    /* killed by SIGTERM: stopped, but not cleanly */
    pid = s_child(S_SLEEP);
    assert_int_equal(sp_child_stop(pid, 5000), -1);
    s_expect_reaped(pid);

    /* ignores SIGTERM: SIGKILL after the grace time */
    pid = s_child(S_IGNORE_TERM);
    assert_int_equal(sp_child_stop(pid, 100), -1);
    s_expect_reaped(pid);

    assert_int_equal(sp_child_stop(0, 100), 0);
    assert_int_equal(sp_child_stop(-1, 100), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_wait),
        cmocka_unit_test(test_child_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
