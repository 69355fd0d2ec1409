/* json: a minimal streaming JSON writer for the client's --json output.
 * It keeps the comma state of up to 16 nested containers, escapes strings
 * (control characters, quotes, backslashes; bytes >= 0x80 pass through) and
 * writes non-finite numbers as null, so its output always parses. */
#ifndef SP_CLIENT_JSON_H
#define SP_CLIENT_JSON_H

#include <stdint.h>
#include <stdio.h>

#define SP_JSON_MAX_DEPTH 16

typedef struct {
    FILE *f;
    int depth;                    /* open containers, 0..SP_JSON_MAX_DEPTH */
    int count[SP_JSON_MAX_DEPTH]; /* items written in each open container */
    int after_key;                /* a key was written, its value comes next */
} sp_json_t;

void sp_json_init(sp_json_t *j, FILE *f);
void sp_json_obj_begin(sp_json_t *j);
void sp_json_obj_end(sp_json_t *j);
void sp_json_arr_begin(sp_json_t *j);
void sp_json_arr_end(sp_json_t *j);
/* Writes "key": inside an object; the next value call writes its value. */
void sp_json_key(sp_json_t *j, const char *key);
void sp_json_str(sp_json_t *j, const char *s);
void sp_json_u64(sp_json_t *j, uint64_t v);
void sp_json_i64(sp_json_t *j, int64_t v);
/* Numbers with 9 significant digits (integers as N.0); NaN and infinities become null. */
void sp_json_num(sp_json_t *j, double v);
void sp_json_bool(sp_json_t *j, int v);
void sp_json_null(sp_json_t *j);
/* Key + value shorthands. */
void sp_json_kstr(sp_json_t *j, const char *key, const char *s);
void sp_json_ku64(sp_json_t *j, const char *key, uint64_t v);
void sp_json_knum(sp_json_t *j, const char *key, double v);
void sp_json_kbool(sp_json_t *j, const char *key, int v);
/* Writes s as a JSON string literal (quotes included) to f. */
void sp_json_write_string(FILE *f, const char *s);

#endif
