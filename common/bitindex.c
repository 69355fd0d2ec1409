/* bitindex: hierarchical bit index (see bitindex.h).
 * Storage: for each level L = 1..16 a sorted array of the keys (code >> 3L)
 * of the marked blocks, and beside each key the mask of its marked children.
 * Invariant: a block is stored at level L iff some marked code lies in it,
 * and bit c of its mask is set iff its child 8*key + c is marked; so the
 * children of a block are consecutive in the level below, in mask-bit order. */
#include "common/bitindex.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define S_CODE_END (1ULL << SP_MORTON_BITS)

typedef struct {
    uint64_t *keys; /* sorted, distinct */
    uint8_t *masks; /* marked children of each key */
    size_t n, cap;
} s_level_t;

struct sp_bitindex {
    s_level_t lv[SP_BITINDEX_LEVELS]; /* lv[i] is level i + 1 */
    size_t count;                     /* marked codes */
};

sp_bitindex_t *sp_bitindex_new(void)
{
    return calloc(1, sizeof(sp_bitindex_t));
}

void sp_bitindex_destroy(sp_bitindex_t **ip)
{
    if (ip == NULL || *ip == NULL) {
        return;
    }
    for (int i = 0; i < SP_BITINDEX_LEVELS; i++) {
        free((*ip)->lv[i].keys);
        free((*ip)->lv[i].masks);
    }
    free(*ip);
    *ip = NULL;
}

/* First index whose key is >= key. */
static size_t s_lower(const s_level_t *l, uint64_t key)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->keys[mid] < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static int s_reserve(s_level_t *l, size_t n)
{
    if (n <= l->cap) {
        return SP_OK;
    }
    size_t cap = l->cap ? l->cap : 16;
    while (cap < n) {
        cap *= 2;
    }
    uint64_t *k = realloc(l->keys, cap * sizeof(*k));
    if (k == NULL) {
        return SP_E_NOMEM;
    }
    l->keys = k;
    uint8_t *m = realloc(l->masks, cap);
    if (m == NULL) {
        return SP_E_NOMEM;
    }
    l->masks = m;
    l->cap = cap;
    return SP_OK;
}

int sp_bitindex_insert(sp_bitindex_t *ix, uint64_t code)
{
    if (code >= S_CODE_END) {
        return SP_E_RANGE;
    }
    if (sp_bitindex_contains(ix, code)) {
        return SP_OK;
    }
    /* room first, so that a failure leaves the index as it was */
    for (int i = 0; i < SP_BITINDEX_LEVELS; i++) {
        if (s_reserve(&ix->lv[i], ix->lv[i].n + 1) != SP_OK) {
            return SP_E_NOMEM;
        }
    }
    /* bottom-up; once a block already exists its ancestors are right */
    for (int i = 0; i < SP_BITINDEX_LEVELS; i++) {
        s_level_t *l = &ix->lv[i];
        uint64_t key = code >> (3 * (i + 1));
        uint8_t bit = (uint8_t)(1u << ((code >> (3 * i)) & 7));
        size_t at = s_lower(l, key);
        if (at < l->n && l->keys[at] == key) {
            l->masks[at] |= bit;
            break;
        }
        memmove(l->keys + at + 1, l->keys + at, (l->n - at) * sizeof(*l->keys));
        memmove(l->masks + at + 1, l->masks + at, l->n - at);
        l->keys[at] = key;
        l->masks[at] = bit;
        l->n++;
    }
    ix->count++;
    return SP_OK;
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int sp_bitindex_build(const uint64_t *codes, size_t n, sp_bitindex_t **out)
{
    for (size_t i = 0; i < n; i++) {
        if (codes[i] >= S_CODE_END) {
            return SP_E_RANGE;
        }
    }
    sp_bitindex_t *ix = sp_bitindex_new();
    uint64_t *cur = malloc((n ? n : 1) * sizeof(*cur));
    if (ix == NULL || cur == NULL) {
        free(cur);
        sp_bitindex_destroy(&ix);
        return SP_E_NOMEM;
    }
    if (n > 0) { /* codes may be NULL when n == 0 */
        memcpy(cur, codes, n * sizeof(*cur));
        qsort(cur, n, sizeof(*cur), s_cmp_u64);
    }
    size_t m = 0; /* distinct codes, then distinct keys of the level below */
    for (size_t i = 0; i < n; i++) {
        if (m == 0 || cur[m - 1] != cur[i]) {
            cur[m++] = cur[i];
        }
    }
    ix->count = m;
    for (int i = 0; i < SP_BITINDEX_LEVELS; i++) {
        s_level_t *l = &ix->lv[i];
        if (s_reserve(l, m) != SP_OK) {
            free(cur);
            sp_bitindex_destroy(&ix);
            return SP_E_NOMEM;
        }
        /* cur holds the sorted distinct keys of level i; group them by 8 */
        for (size_t j = 0; j < m; j++) {
            uint64_t key = cur[j] >> 3;
            if (l->n == 0 || l->keys[l->n - 1] != key) {
                l->keys[l->n] = key;
                l->masks[l->n++] = 0;
            }
            l->masks[l->n - 1] |= (uint8_t)(1u << (cur[j] & 7));
        }
        if (l->n > 0) {
            memcpy(cur, l->keys, l->n * sizeof(*cur));
        }
        m = l->n;
    }
    free(cur);
    *out = ix;
    return SP_OK;
}

int sp_bitindex_contains(const sp_bitindex_t *ix, uint64_t code)
{
    if (code >= S_CODE_END) {
        return 0;
    }
    const s_level_t *l = &ix->lv[0];
    size_t at = s_lower(l, code >> 3);
    return at < l->n && l->keys[at] == code >> 3 && ((l->masks[at] >> (code & 7)) & 1);
}

size_t sp_bitindex_count(const sp_bitindex_t *ix)
{
    return ix->count;
}

size_t sp_bitindex_heap_bytes(const sp_bitindex_t *ix)
{
    size_t bytes = sizeof(*ix);
    for (int i = 0; i < SP_BITINDEX_LEVELS; i++) {
        bytes += ix->lv[i].cap * (sizeof(uint64_t) + 1);
    }
    return bytes;
}

/* ---- queries ------------------------------------------------------------ */

typedef enum { S_OUT = 0, S_PARTIAL = 1, S_INSIDE = 2 } s_overlap_t;

typedef struct {
    int is_box;
    uint32_t lo[3], hi[3]; /* box, inclusive */
    uint32_t c[3];         /* radius query centre */
    uint64_t r2;           /* radius squared */
    sp_bitindex_visit_fn fn;
    void *arg;
} s_query_t;

/* How the cube [o, o + side) meets the query region. */
static s_overlap_t s_overlap(const s_query_t *q, const uint32_t o[3], uint32_t side)
{
    if (q->is_box) {
        int inside = 1;
        for (int a = 0; a < 3; a++) {
            uint32_t last = o[a] + side - 1;
            if (last < q->lo[a] || o[a] > q->hi[a]) {
                return S_OUT;
            }
            inside &= o[a] >= q->lo[a] && last <= q->hi[a];
        }
        return inside ? S_INSIDE : S_PARTIAL;
    }
    uint64_t near = 0, far = 0;
    for (int a = 0; a < 3; a++) {
        uint32_t last = o[a] + side - 1;
        uint64_t dn = q->c[a] < o[a] ? o[a] - q->c[a] : (q->c[a] > last ? q->c[a] - last : 0);
        uint64_t d0 = q->c[a] > o[a] ? q->c[a] - o[a] : o[a] - q->c[a];
        uint64_t d1 = q->c[a] > last ? q->c[a] - last : last - q->c[a];
        uint64_t df = d0 > d1 ? d0 : d1;
        near += dn * dn;
        far += df * df;
    }
    if (near > q->r2) {
        return S_OUT;
    }
    return far <= q->r2 ? S_INSIDE : S_PARTIAL;
}

/* Visits the children of block `idx` of level `level` (>= 1). */
static int s_descend(const sp_bitindex_t *ix, const s_query_t *q, int level, size_t idx,
                     int inside)
{
    const s_level_t *l = &ix->lv[level - 1];
    uint64_t key = l->keys[idx];
    unsigned mask = l->masks[idx];
    int child_level = level - 1;
    size_t child = 0;
    if (child_level > 0) {
        child = s_lower(&ix->lv[child_level - 1], key << 3);
    }
    for (unsigned c = 0; c < 8; c++) {
        if (!((mask >> c) & 1)) {
            continue;
        }
        uint64_t ckey = (key << 3) | c;
        int child_inside = inside;
        if (!inside) {
            sp_pos_t p = sp_morton_decode(ckey << (3 * child_level));
            uint32_t o[3] = {p.x, p.y, p.z};
            s_overlap_t ov = s_overlap(q, o, 1u << child_level);
            if (ov == S_OUT) {
                child++;
                continue;
            }
            child_inside = ov == S_INSIDE;
        }
        int rc = child_level == 0 ? q->fn(ckey, q->arg)
                                  : s_descend(ix, q, child_level, child, child_inside);
        if (rc != 0) {
            return rc;
        }
        child++;
    }
    return 0;
}

static int s_run(const sp_bitindex_t *ix, const s_query_t *q)
{
    if (ix->count == 0) {
        return 0;
    }
    return s_descend(ix, q, SP_BITINDEX_LEVELS, 0, 0);
}

int sp_bitindex_query_box(const sp_bitindex_t *ix, sp_pos_t lo, sp_pos_t hi,
                          sp_bitindex_visit_fn fn, void *arg)
{
    if (lo.x > hi.x || lo.y > hi.y || lo.z > hi.z) {
        return 0;
    }
    s_query_t q = {.is_box = 1,
                   .lo = {lo.x, lo.y, lo.z},
                   .hi = {hi.x, hi.y, hi.z},
                   .fn = fn,
                   .arg = arg};
    return s_run(ix, &q);
}

int sp_bitindex_query_radius(const sp_bitindex_t *ix, sp_pos_t center, uint32_t radius,
                             sp_bitindex_visit_fn fn, void *arg)
{
    s_query_t q = {.is_box = 0,
                   .c = {center.x, center.y, center.z},
                   .r2 = (uint64_t)radius * radius,
                   .fn = fn,
                   .arg = arg};
    return s_run(ix, &q);
}
