/* json: the client's streaming JSON writer. Every value goes through
 * s_before, which writes the separating comma, so nesting and commas cannot
 * get out of step; strings are escaped per RFC 8259. */
#include "client/json.h"

#include <math.h>

#include "common/error.h"

void sp_json_init(sp_json_t *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    j->after_key = 0;
    for (int i = 0; i < SP_JSON_MAX_DEPTH; i++) {
        j->count[i] = 0;
    }
}

static void s_before(sp_json_t *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0) {
        if (j->count[j->depth - 1]++ > 0) {
            fputc(',', j->f);
        }
    }
}

static void s_open(sp_json_t *j, char ch)
{
    s_before(j);
    SP_ASSERT(j->depth < SP_JSON_MAX_DEPTH);
    fputc(ch, j->f);
    j->count[j->depth++] = 0;
}

static void s_close(sp_json_t *j, char ch)
{
    SP_ASSERT(j->depth > 0 && !j->after_key);
    j->depth--;
    fputc(ch, j->f);
    if (j->depth == 0) {
        fputc('\n', j->f);
    }
}

void sp_json_obj_begin(sp_json_t *j)
{
    s_open(j, '{');
}

void sp_json_obj_end(sp_json_t *j)
{
    s_close(j, '}');
}

void sp_json_arr_begin(sp_json_t *j)
{
    s_open(j, '[');
}

void sp_json_arr_end(sp_json_t *j)
{
    s_close(j, ']');
}

void sp_json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\b':
            fputs("\\b", f);
            break;
        case '\f':
            fputs("\\f", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                fprintf(f, "\\u%04x", *p);
            } else {
                fputc(*p, f);
            }
        }
    }
    fputc('"', f);
}

void sp_json_key(sp_json_t *j, const char *key)
{
    s_before(j);
    sp_json_write_string(j->f, key);
    fputc(':', j->f);
    j->after_key = 1;
}

void sp_json_str(sp_json_t *j, const char *s)
{
    s_before(j);
    sp_json_write_string(j->f, s ? s : "");
}

void sp_json_u64(sp_json_t *j, uint64_t v)
{
    s_before(j);
    fprintf(j->f, "%llu", (unsigned long long)v);
}

void sp_json_i64(sp_json_t *j, int64_t v)
{
    s_before(j);
    fprintf(j->f, "%lld", (long long)v);
}

void sp_json_num(sp_json_t *j, double v)
{
    s_before(j);
    if (!isfinite(v)) {
        fputs("null", j->f);
    } else if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(j->f, "%.1f", v);
    } else {
        fprintf(j->f, "%.9g", v);
    }
}

void sp_json_bool(sp_json_t *j, int v)
{
    s_before(j);
    fputs(v ? "true" : "false", j->f);
}

void sp_json_null(sp_json_t *j)
{
    s_before(j);
    fputs("null", j->f);
}

void sp_json_kstr(sp_json_t *j, const char *key, const char *s)
{
    sp_json_key(j, key);
    sp_json_str(j, s);
}

void sp_json_ku64(sp_json_t *j, const char *key, uint64_t v)
{
    sp_json_key(j, key);
    sp_json_u64(j, v);
}

void sp_json_knum(sp_json_t *j, const char *key, double v)
{
    sp_json_key(j, key);
    sp_json_num(j, v);
}

void sp_json_kbool(sp_json_t *j, const char *key, int v)
{
    sp_json_key(j, key);
    sp_json_bool(j, v);
}
