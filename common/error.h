/* error: the one error type of Spatium, always-on assertions and the log.
 * Functions that can fail return an sp_rc_t: 0 on success, a negative code
 * otherwise. Bugs abort through SP_ASSERT (never compiled out); bad input is
 * reported with SP_E_INPUT and a message naming what was wrong. */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include <stddef.h>

typedef enum {
    SP_OK = 0,
    SP_E_NOMEM = -1,    /* allocation failed */
    SP_E_INPUT = -2,    /* bad input: frame, dataset, model file, flag */
    SP_E_RANGE = -3,    /* argument out of its documented range */
    SP_E_NOTFOUND = -4, /* no such item (position, job, dataset) */
    SP_E_IO = -5,       /* file or socket operation failed; errno kept */
    SP_E_VERSION = -6,  /* format or protocol version mismatch */
    SP_E_STATE = -7,    /* operation not valid in the current state */
    SP_E_TIMEOUT = -8,  /* peer did not answer in time */
    SP_E_UNSUPPORTED = -9
} sp_rc_t;

/* Readable name of a code, e.g. "bad input". Never NULL. */
const char *sp_strerror(int rc);

/* Log levels; the level is the one global Spatium keeps. */
typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG } sp_log_level_t;
void sp_log_set_level(sp_log_level_t level);
sp_log_level_t sp_log_get_level(void);
/* printf-style line to stderr with a timestamp and level, if level is enabled. */
void sp_log(sp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills err (may be NULL) with a formatted message; returns SP_E_INPUT so that
 * parsers can write `return sp_err_input(err, errlen, "line %d: ...", n);`. */
int sp_err_input(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

_Noreturn void sp_assert_fail(const char *file, int line, const char *expr);
/* Always-on invariant check: prints file, line and expression, then aborts. */
#define SP_ASSERT(e) ((e) ? (void)0 : sp_assert_fail(__FILE__, __LINE__, #e))

#endif
