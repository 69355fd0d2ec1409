/* args: strict parsing of the client's command-line values. A number is
 * accepted only when the whole argument is a number inside its range; every
 * refusal names the flag and the value and maps to exit status 2. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"

int sp_args_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int sp_args_value(const sp_cli_t *c, int argc, char **argv, int *i, const char *name,
                  const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) {
        return 0;
    }
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        sp_cli_report(c, SP_EXIT_USAGE, "%s needs a value", name);
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

int sp_args_u64(const sp_cli_t *c, const char *what, const char *s, uint64_t lo, uint64_t hi,
                uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (s[0] < '0' || s[0] > '9') {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: '%s' (expected a number)", what,
                             s);
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: '%s' (expected a number)", what,
                             s);
    }
    if (v < lo || v > hi) {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: %s (must be %llu..%llu)", what, s,
                             (unsigned long long)lo, (unsigned long long)hi);
    }
    *out = v;
    return 0;
}

int sp_args_u32(const sp_cli_t *c, const char *what, const char *s, uint32_t lo, uint32_t hi,
                uint32_t *out)
{
    uint64_t v = 0;
    int rc = sp_args_u64(c, what, s, lo, hi, &v);
    if (rc == 0) {
        *out = (uint32_t)v;
    }
    return rc;
}

int sp_args_double(const sp_cli_t *c, const char *what, const char *s, double lo, double hi,
                   double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || errno != 0 || *end != '\0' || !isfinite(v)) {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: '%s' (expected a number)", what,
                             s);
    }
    if (v < lo || v > hi) {
        return sp_cli_report(c, SP_EXIT_USAGE, "bad value for %s: %s (must be %g..%g)", what, s, lo,
                             hi);
    }
    *out = v;
    return 0;
}

int sp_args_rest(sp_cli_t *c, int argc, char **argv, int *i, const char **pos, int *n,
                 int max_pos)
{
    int g = sp_args_global(c, argc, argv, i);
    if (g != 0) {
        return g;
    }
    const char *a = argv[*i];
    if (a[0] == '-' && a[1] != '\0') {
        sp_cli_report(c, SP_EXIT_USAGE, "%s: unknown option '%s'", argv[0], a);
        return -1;
    }
    if (*n >= max_pos) {
        sp_cli_report(c, SP_EXIT_USAGE, "%s: unexpected argument '%s'", argv[0], a);
        return -1;
    }
    pos[(*n)++] = a;
    return 1;
}

int sp_args_global(sp_cli_t *c, int argc, char **argv, int *i)
{
    const char *val = NULL;
    int m;
    if (strcmp(argv[*i], "--json") == 0) {
        c->json = 1;
        return 1;
    }
    if ((m = sp_args_value(c, argc, argv, i, "--coordinator", &val)) != 0) {
        if (m < 0) {
            return -1;
        }
        if (val[0] == '\0' || strlen(val) >= sizeof c->endpoint) {
            sp_cli_report(c, SP_EXIT_USAGE, "bad value for --coordinator: '%s'", val);
            return -1;
        }
        strcpy(c->endpoint, val);
        return 1;
    }
    static const char *const key_flags[2] = {"--curve-server", "--curve-secret"};
    for (int k = 0; k < 2; k++) {
        if ((m = sp_args_value(c, argc, argv, i, key_flags[k], &val)) != 0) {
            if (m < 0) {
                return -1;
            }
            if (val[0] == '\0') {
                sp_cli_report(c, SP_EXIT_USAGE, "%s needs a file name", key_flags[k]);
                return -1;
            }
            *(k == 0 ? &c->curve_server : &c->curve_secret) = val;
            return 1;
        }
    }
    if ((m = sp_args_value(c, argc, argv, i, "--timeout-ms", &val)) != 0) {
        uint32_t ms = 0;
        if (m < 0 || sp_args_u32(c, "--timeout-ms", val, 1, 86400000u, &ms) != 0) {
            return -1;
        }
        c->timeout_ms = (int)ms;
        return 1;
    }
    return 0;
}
