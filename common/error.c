/* error: error names, the log (level is the only global) and assertions. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static sp_log_level_t s_level = SP_LOG_INFO;

const char *sp_strerror(int rc)
{
    switch (rc) {
    case SP_OK: return "ok";
    case SP_E_NOMEM: return "out of memory";
    case SP_E_INPUT: return "bad input";
    case SP_E_RANGE: return "out of range";
    case SP_E_NOTFOUND: return "not found";
    case SP_E_IO: return "i/o error";
    case SP_E_VERSION: return "version mismatch";
    case SP_E_STATE: return "invalid state";
    case SP_E_TIMEOUT: return "timed out";
    case SP_E_UNSUPPORTED: return "unsupported";
    default: return "unknown error";
    }
}

void sp_log_set_level(sp_log_level_t level)
{
    s_level = level;
}

sp_log_level_t sp_log_get_level(void)
{
    return s_level;
}

void sp_log(sp_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > s_level) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], line);
}

int sp_err_input(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SP_E_INPUT;
}

void sp_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}
