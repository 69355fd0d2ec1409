/* memory: a neuron's spatial memory of bit-packed weights (see memory.h).
 * Two storage states, both keeping regions in key order with their packed
 * bits contiguous:
 *  - compact: every allocated cell is occupied and the regions form one run of
 *    consecutive keys; the handle holds [first key][packed bits] inline, no
 *    occupancy maps (they would be all ones). This is the shape of a neuron
 *    whose fan-in fills whole regions: one allocation, 16 bytes of header.
 *  - extended: an external block [extent table][occupancy bits][packed bits],
 *    its pointer kept in the inline area; used in every other case (an empty
 *    cell, a gap between regions, more regions than the inline room).
 * Invariants: used == popcount(occupancy) (== n_regions * cells when compact);
 * extents are sorted, disjoint, non-adjacent runs of keys, slot-numbered in
 * key order. Readers never write anything, so concurrent reads are safe. */
#include "common/memory.h"

#include <stdlib.h>
#include <string.h>

#include "common/bloom.h"
#include "common/error.h"
#include "common/quant.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "memory.c copies occupancy bits bytewise and needs a little-endian target"
#endif

#define S_F_EXT 1u   /* storage is in an external block */
#define S_F_BLOOM 2u /* area[0] holds a bloom filter pointer */
#define S_INLINE_MAX_REGIONS 1024u /* bound on inline room reserved from capacity */
#define S_BLOOM_FPR 0.01
#define S_CODE_END (1ULL << SP_MORTON_BITS)
#define S_ONES_WORDS 1024u /* all-ones occupancy served for compact runs: 65,536 cells */

struct sp_memory {
    uint32_t n_regions;         /* regions allocated, 0..2^32-1 */
    uint32_t used;              /* occupied cells */
    uint32_t capacity;          /* configured cells, 0 = cells of allocated regions */
    unsigned bits : 3;          /* 1, 2 or 4 */
    unsigned k : 3;             /* log2 of the region side, 1..6; a region is 8^k codes */
    unsigned flags : 2;         /* S_F_EXT | S_F_BLOOM */
    unsigned inl_regions : 24;  /* regions the inline area can hold when compact */
    uint64_t area[];            /* [bloom pointer when S_F_BLOOM] then the inline area:
                                   compact: [first key][packed bits];
                                   extended: [block pointer] */
};

/* A run of consecutive region keys occupying consecutive slots. */
typedef struct {
    uint64_t key;  /* first region key (code >> 3k) */
    uint32_t slot; /* slot of that region */
    uint32_t n;    /* regions in the run, >= 1 */
} s_ext_t;

/* Header of an external block; then s_ext_t[cap_ext], occupancy words for
 * cap_regions regions, packed bytes for cap_regions regions. Slots past
 * n_regions are zero (empty cells) so that popcounts stay right. */
typedef struct {
    uint32_t n_ext;       /* extents in use */
    uint32_t cap_ext;     /* extent room */
    uint32_t cap_regions; /* region room */
    uint32_t spare;
} s_blk_t;

/* Where things are right now; pointers into m's storage. */
typedef struct {
    const s_ext_t *ext;
    uint32_t n_ext;
    s_ext_t one;      /* the single extent of the compact state */
    uint64_t *occ;    /* NULL when every allocated cell is occupied (compact) */
    uint8_t *packed;  /* packed bits of all regions in slot order */
} s_view_t;

/* Dequantized levels, the same expression as sp_quant_value (folded at
 * compile time, so bit-identical), indexed [bits][level]. */
#define S_V(l, top) ((float)(l) / (float)(top) * 2.0f - 1.0f)
static const float s_values[5][16] = {
    [1] = {S_V(0, 1), S_V(1, 1)},
    [2] = {S_V(0, 3), S_V(1, 3), S_V(2, 3), S_V(3, 3)},
    [4] = {S_V(0, 15), S_V(1, 15), S_V(2, 15), S_V(3, 15), S_V(4, 15), S_V(5, 15), S_V(6, 15),
           S_V(7, 15), S_V(8, 15), S_V(9, 15), S_V(10, 15), S_V(11, 15), S_V(12, 15),
           S_V(13, 15), S_V(14, 15), S_V(15, 15)},
};

static inline uint8_t s_qget(const uint8_t *packed, uint64_t i, unsigned bits)
{
    uint64_t bit = i * bits;
    return (uint8_t)((packed[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1));
}

#define S_R2(x) x, x
#define S_R8(x) x, x, x, x, x, x, x, x
static const uint64_t s_ones[S_ONES_WORDS] = {S_R8(S_R8(S_R8(S_R2(~0ULL))))};

/* ---- sizes ------------------------------------------------------------ */

static inline uint32_t s_cells(const sp_memory_t *m)
{
    return 1u << (3u * m->k);
}

static inline size_t s_region_bytes(const sp_memory_t *m)
{
    return (size_t)s_cells(m) * m->bits / 8;
}

static inline size_t s_occ_words(uint64_t n_regions, uint32_t cells)
{
    return (size_t)((n_regions * cells + 63) / 64);
}

static inline size_t s_inline_bytes(unsigned inl_regions, size_t region_bytes)
{
    return 8 + (size_t)inl_regions * region_bytes;
}

static inline size_t s_handle_bytes(const sp_memory_t *m)
{
    return sizeof(sp_memory_t) + ((m->flags & S_F_BLOOM) ? 8 : 0) +
           s_inline_bytes(m->inl_regions, s_region_bytes(m));
}

static inline size_t s_block_bytes(uint32_t cap_ext, uint32_t cap_regions, uint32_t cells,
                                   size_t region_bytes)
{
    return sizeof(s_blk_t) + (size_t)cap_ext * sizeof(s_ext_t) +
           s_occ_words(cap_regions, cells) * 8 + (size_t)cap_regions * region_bytes;
}

/* ---- storage access ----------------------------------------------------- */

/* Readers get views through this: it never writes, it only drops the const. */
static inline sp_memory_t *s_unconst(const sp_memory_t *m)
{
    return (sp_memory_t *)(uintptr_t)m;
}

static inline uint8_t *s_inline(sp_memory_t *m)
{
    return (uint8_t *)(m->area + ((m->flags & S_F_BLOOM) ? 1 : 0));
}

static inline sp_bloom_t *s_bloom(const sp_memory_t *m)
{
    return (m->flags & S_F_BLOOM) ? (sp_bloom_t *)(uintptr_t)m->area[0] : NULL;
}

static inline s_blk_t *s_block(sp_memory_t *m)
{
    s_blk_t *blk;
    memcpy(&blk, s_inline(m), sizeof(blk));
    return blk;
}

static void s_view(sp_memory_t *m, s_view_t *v)
{
    if (m->flags & S_F_EXT) {
        s_blk_t *blk = s_block(m);
        v->n_ext = blk->n_ext;
        v->ext = (const s_ext_t *)(blk + 1);
        v->occ = (uint64_t *)(uintptr_t)(v->ext + blk->cap_ext);
        v->packed = (uint8_t *)(v->occ + s_occ_words(blk->cap_regions, s_cells(m)));
        return;
    }
    uint8_t *in = s_inline(m);
    memcpy(&v->one.key, in, 8);
    v->one.slot = 0;
    v->one.n = m->n_regions;
    v->ext = &v->one;
    v->n_ext = m->n_regions > 0 ? 1 : 0;
    v->occ = NULL;
    v->packed = in + 8;
}

/* Index of the extent holding key, or -1. */
static inline long s_find_ext(const s_view_t *v, uint64_t key)
{
    uint32_t lo = 0, hi = v->n_ext; /* answer is the last extent with ext.key <= key */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->ext[mid].key <= key) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if (v->n_ext == 0 || key < v->ext[lo].key || key - v->ext[lo].key >= v->ext[lo].n) {
        return -1;
    }
    return (long)lo;
}

static inline int s_find(const s_view_t *v, uint64_t key, uint32_t *slot)
{
    long e = s_find_ext(v, key);
    if (e < 0) {
        return 0;
    }
    *slot = v->ext[e].slot + (uint32_t)(key - v->ext[e].key);
    return 1;
}

static inline int s_occ_get(const uint64_t *occ, uint64_t i)
{
    return occ == NULL || ((occ[i >> 6] >> (i & 63)) & 1);
}

/* Key of every slot of a view, walked in order. */
typedef struct {
    const s_view_t *v;
    uint32_t e;   /* current extent */
    uint32_t off; /* offset inside it */
} s_walk_t;

static void s_walk_start(s_walk_t *w, const s_view_t *v, uint32_t slot)
{
    w->v = v;
    w->e = 0;
    w->off = 0;
    uint32_t lo = 0, hi = v->n_ext;
    while (hi - lo > 1) { /* last extent starting at or before slot */
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->ext[mid].slot <= slot) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if (v->n_ext > 0) {
        w->e = lo;
        w->off = slot - v->ext[lo].slot;
    }
}

static uint64_t s_walk_next(s_walk_t *w)
{
    if (w->off >= w->v->ext[w->e].n) {
        w->e++;
        w->off = 0;
    }
    return w->v->ext[w->e].key + w->off++;
}

/* ---- rebuilding the storage ------------------------------------------- */

static void s_set_block(sp_memory_t *m, s_blk_t *blk)
{
    if (m->flags & S_F_EXT) {
        free(s_block(m));
    }
    if (blk == NULL) {
        m->flags &= ~S_F_EXT;
        return;
    }
    memcpy(s_inline(m), &blk, sizeof(blk));
    m->flags |= S_F_EXT;
}

/* Gives dst (same bits and region size as src) an extended block holding the
 * regions of src's slots [lo, hi) merged with n_new new empty regions whose
 * keys (ascending, absent from src) are new_keys. src may be dst. dst's old
 * storage is released afterwards; on SP_E_NOMEM nothing changed. */
static int s_assemble(sp_memory_t *dst, const sp_memory_t *src, uint32_t lo, uint32_t hi,
                      const uint64_t *new_keys, uint32_t n_new, int slack)
{
    uint32_t cells = s_cells(dst);
    size_t rb = s_region_bytes(dst);
    uint64_t total = (uint64_t)(hi - lo) + n_new;
    if (total > UINT32_MAX / cells) {
        return SP_E_NOMEM; /* the cell count must fit `used` */
    }
    if (total == 0) {
        s_set_block(dst, NULL);
        dst->n_regions = 0;
        dst->used = 0;
        return SP_OK;
    }
    s_view_t sv;
    s_view(s_unconst(src), &sv);

    /* pass 1 counts the extents of the merged key sequence */
    uint32_t n_ext = 0;
    uint64_t prev = 0;
    s_walk_t w;
    s_walk_start(&w, &sv, lo);
    uint32_t s = lo, j = 0;
    while (s < hi || j < n_new) {
        uint64_t key;
        if (s < hi) {
            s_walk_t peek = w;
            uint64_t sk = s_walk_next(&peek);
            if (j < n_new && new_keys[j] < sk) {
                key = new_keys[j++];
            } else {
                key = sk;
                w = peek;
                s++;
            }
        } else {
            key = new_keys[j++];
        }
        if (n_ext == 0 || key != prev + 1) {
            n_ext++;
        }
        prev = key;
    }

    /* room to grow by half again when regions arrive one by one (stores), so
     * that appending is amortised O(1); exact size otherwise */
    uint64_t cap_regions = total, cap_ext = n_ext;
    if (slack) {
        cap_regions = total + total / 2 + 1;
        cap_ext = n_ext + n_ext / 2 + 1;
        if (cap_regions > UINT32_MAX / cells) {
            cap_regions = UINT32_MAX / cells;
        }
        if (cap_ext > cap_regions) {
            cap_ext = cap_regions;
        }
    }
    size_t bytes = s_block_bytes((uint32_t)cap_ext, (uint32_t)cap_regions, cells, rb);
    s_blk_t *blk = calloc(1, bytes);
    if (blk == NULL) {
        return SP_E_NOMEM;
    }
    blk->n_ext = n_ext;
    blk->cap_ext = (uint32_t)cap_ext;
    blk->cap_regions = (uint32_t)cap_regions;
    s_ext_t *ext = (s_ext_t *)(blk + 1);
    uint64_t *occ = (uint64_t *)(ext + cap_ext);
    uint8_t *packed = (uint8_t *)(occ + s_occ_words(cap_regions, cells));
    uint8_t *occ_bytes = (uint8_t *)occ;
    const uint8_t *src_occ = (const uint8_t *)sv.occ;
    size_t ob = cells / 8; /* occupancy bytes of a region */

    /* pass 2 lays the regions out */
    s_walk_start(&w, &sv, lo);
    s = lo;
    j = 0;
    uint32_t e = 0;
    for (uint32_t out = 0; out < total; out++) {
        uint64_t key;
        int is_new;
        if (s < hi) {
            s_walk_t peek = w;
            uint64_t sk = s_walk_next(&peek);
            is_new = j < n_new && new_keys[j] < sk;
            if (is_new) {
                key = new_keys[j++];
            } else {
                key = sk;
                w = peek;
            }
        } else {
            is_new = 1;
            key = new_keys[j++];
        }
        if (out == 0 || key != ext[e - 1].key + ext[e - 1].n) {
            ext[e].key = key;
            ext[e].slot = out;
            ext[e].n = 0;
            e++;
        }
        ext[e - 1].n++;
        if (!is_new) { /* new regions stay zero: empty cells, level 0 */
            memcpy(packed + (size_t)out * rb, sv.packed + (size_t)s * rb, rb);
            if (src_occ != NULL) {
                memcpy(occ_bytes + (size_t)out * ob, src_occ + (size_t)s * ob, ob);
            } else {
                memset(occ_bytes + (size_t)out * ob, 0xff, ob);
            }
            s++;
        }
    }
    SP_ASSERT(e == n_ext);

    uint64_t used = 0;
    for (size_t i = 0; i < s_occ_words(total, cells); i++) {
        used += (uint64_t)__builtin_popcountll(occ[i]);
    }
    s_set_block(dst, blk);
    dst->n_regions = (uint32_t)total;
    dst->used = (uint32_t)used;
    return SP_OK;
}

/* Moves an extended memory back inline when it has the compact shape. Never
 * fails: when the shape is wrong or the room too small, nothing happens. */
static void s_try_compact(sp_memory_t *m)
{
    if (!(m->flags & S_F_EXT) || m->n_regions == 0 || m->n_regions > m->inl_regions ||
        (uint64_t)m->used != (uint64_t)m->n_regions * s_cells(m)) {
        return;
    }
    s_view_t v;
    s_view(m, &v);
    if (v.n_ext != 1) {
        return;
    }
    s_blk_t *blk = s_block(m);
    uint8_t *in = s_inline(m);
    memcpy(in, &v.ext[0].key, 8);
    memmove(in + 8, v.packed, (size_t)m->n_regions * s_region_bytes(m));
    free(blk);
    m->flags &= ~S_F_EXT;
}

/* Extended storage with the same regions (compact -> occupancy maps). */
static int s_materialize(sp_memory_t *m)
{
    if (m->flags & S_F_EXT) {
        return SP_OK;
    }
    return s_assemble(m, m, 0, m->n_regions, NULL, 0, 0);
}

/* Adds the empty region `key` (absent) to an extended memory in place when
 * its block has room: later slots move up by one region. 0 when no room. */
static int s_insert_in_place(sp_memory_t *m, uint64_t key)
{
    s_blk_t *blk = s_block(m);
    if (m->n_regions >= blk->cap_regions) {
        return 0;
    }
    s_view_t v;
    s_view(m, &v);
    s_ext_t *ext = (s_ext_t *)(uintptr_t)v.ext;
    uint32_t n_ext = blk->n_ext;
    /* e = first extent starting above key */
    uint32_t e = 0, lo = 0, hi = n_ext;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ext[mid].key < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    e = lo;
    int joins_left = e > 0 && ext[e - 1].key + ext[e - 1].n == key;
    int joins_right = e < n_ext && ext[e].key == key + 1;
    if (!joins_left && !joins_right && n_ext >= blk->cap_ext) {
        return 0;
    }
    uint32_t slot = e < n_ext ? ext[e].slot : m->n_regions;
    uint32_t cells = s_cells(m);
    size_t rb = s_region_bytes(m), ob = cells / 8, tail = m->n_regions - slot;
    memmove(v.packed + (size_t)(slot + 1) * rb, v.packed + (size_t)slot * rb, tail * rb);
    memset(v.packed + (size_t)slot * rb, 0, rb);
    uint8_t *occ = (uint8_t *)v.occ;
    memmove(occ + (size_t)(slot + 1) * ob, occ + (size_t)slot * ob, tail * ob);
    memset(occ + (size_t)slot * ob, 0, ob);
    for (uint32_t i = e; i < n_ext; i++) {
        ext[i].slot++;
    }
    if (joins_left && joins_right) { /* key fills the gap: two extents become one */
        ext[e - 1].n += 1 + ext[e].n;
        memmove(ext + e, ext + e + 1, (n_ext - e - 1) * sizeof(*ext));
        blk->n_ext--;
    } else if (joins_left) {
        ext[e - 1].n++;
    } else if (joins_right) {
        ext[e].key = key;
        ext[e].slot = slot;
        ext[e].n++;
    } else {
        memmove(ext + e + 1, ext + e, (n_ext - e) * sizeof(*ext));
        ext[e].key = key;
        ext[e].slot = slot;
        ext[e].n = 1;
        blk->n_ext++;
    }
    m->n_regions++;
    return 1;
}

/* Slot of key, allocating the region when needed. */
static int s_slot_alloc(sp_memory_t *m, uint64_t key, s_view_t *v, uint32_t *slot)
{
    s_view(m, v);
    if (s_find(v, key, slot)) {
        return SP_OK;
    }
    if (m->n_regions >= UINT32_MAX / s_cells(m)) {
        return SP_E_NOMEM; /* `used` could not count the cells */
    }
    if (!((m->flags & S_F_EXT) && s_insert_in_place(m, key))) {
        int rc = s_assemble(m, m, 0, m->n_regions, &key, 1, 1);
        if (rc != SP_OK) {
            return rc;
        }
    }
    s_view(m, v);
    SP_ASSERT(s_find(v, key, slot));
    return SP_OK;
}

static void s_note_new_cell(sp_memory_t *m, uint64_t code)
{
    m->used++;
    sp_bloom_t *b = s_bloom(m);
    if (b != NULL) {
        sp_bloom_insert(b, code);
    }
}

/* Writes level at code, marking the cell occupied. */
static int s_put(sp_memory_t *m, uint64_t code, uint8_t level)
{
    s_view_t v;
    uint32_t slot;
    int rc = s_slot_alloc(m, code >> (3u * m->k), &v, &slot);
    if (rc != SP_OK) {
        return rc;
    }
    uint64_t i = (uint64_t)slot * s_cells(m) + (code & (s_cells(m) - 1));
    sp_quant_set(v.packed, i, m->bits, level);
    if (!s_occ_get(v.occ, i)) {
        v.occ[i >> 6] |= 1ULL << (i & 63);
        s_note_new_cell(m, code);
        s_try_compact(m);
    }
    return SP_OK;
}

/* Level at code; 0 when absent. */
static int s_get(const sp_memory_t *m, uint64_t code, uint8_t *level)
{
    if (code >= S_CODE_END) {
        return SP_E_NOTFOUND;
    }
    const sp_bloom_t *b = s_bloom(m);
    if (b != NULL && !sp_bloom_might_contain(b, code)) {
        return SP_E_NOTFOUND;
    }
    s_view_t v;
    s_view(s_unconst(m), &v);
    uint32_t slot;
    if (!s_find(&v, code >> (3u * m->k), &slot)) {
        return SP_E_NOTFOUND;
    }
    uint64_t i = (uint64_t)slot * s_cells(m) + (code & (s_cells(m) - 1));
    if (!s_occ_get(v.occ, i)) {
        return SP_E_NOTFOUND;
    }
    *level = s_qget(v.packed, i, m->bits);
    return SP_OK;
}

/* ---- public API --------------------------------------------------------- */

int sp_memory_config_check(const sp_memory_config_t *cfg, char *err, size_t errlen)
{
    if (cfg == NULL) {
        return sp_err_input(err, errlen, "memory config: missing");
    }
    if (!sp_quant_bits_valid(cfg->bits)) {
        return sp_err_input(err, errlen, "memory config: bits = %u, expected 1, 2 or 4",
                            (unsigned)cfg->bits);
    }
    unsigned side = cfg->region_side;
    if (side != 0 && (side < 2 || side > 64 || (side & (side - 1)) != 0)) {
        return sp_err_input(err, errlen,
                            "memory config: region_side = %u, expected a power of two in 2..64",
                            side);
    }
    if (cfg->capacity > UINT32_MAX) {
        return sp_err_input(err, errlen, "memory config: capacity = %llu, at most %u cells",
                            (unsigned long long)cfg->capacity, (unsigned)UINT32_MAX);
    }
    return SP_OK;
}

/* Empty memory with m's settings and inline room (m may be a config-made prototype). */
static sp_memory_t *s_alloc(unsigned bits, unsigned k, uint32_t capacity, uint32_t bloom_expected,
                            unsigned inl_regions)
{
    size_t rb = ((size_t)1 << (3u * k)) * bits / 8;
    size_t bytes = sizeof(sp_memory_t) + (bloom_expected ? 8 : 0) + s_inline_bytes(inl_regions, rb);
    sp_memory_t *m = calloc(1, bytes);
    if (m == NULL) {
        return NULL;
    }
    m->bits = bits & 7u;
    m->k = k & 7u;
    m->capacity = capacity;
    m->inl_regions = inl_regions & 0xFFFFFFu;
    if (bloom_expected) {
        sp_bloom_t *b = sp_bloom_new(bloom_expected, S_BLOOM_FPR);
        if (b == NULL) {
            free(m);
            return NULL;
        }
        m->area[0] = (uint64_t)(uintptr_t)b;
        m->flags = S_F_BLOOM;
    }
    return m;
}

sp_memory_t *sp_memory_new(const sp_memory_config_t *cfg)
{
    if (sp_memory_config_check(cfg, NULL, 0) != SP_OK) {
        return NULL;
    }
    unsigned side = cfg->region_side ? cfg->region_side : SP_MEMORY_DEFAULT_SIDE;
    unsigned k = (unsigned)__builtin_ctz(side);
    uint32_t cells = 1u << (3 * k);
    uint64_t want = (cfg->capacity + cells - 1) / cells;
    unsigned inl = want > S_INLINE_MAX_REGIONS ? S_INLINE_MAX_REGIONS : (unsigned)want;
    return s_alloc(cfg->bits, k, (uint32_t)cfg->capacity, cfg->bloom_expected, inl);
}

void sp_memory_destroy(sp_memory_t **mp)
{
    if (mp == NULL || *mp == NULL) {
        return;
    }
    sp_memory_t *m = *mp;
    sp_bloom_t *b = s_bloom(m);
    sp_bloom_destroy(&b);
    s_set_block(m, NULL);
    free(m);
    *mp = NULL;
}

sp_memory_t *sp_memory_clone(const sp_memory_t *m)
{
    if (m == NULL) {
        return NULL;
    }
    size_t hb = s_handle_bytes(m);
    sp_memory_t *c = malloc(hb);
    if (c == NULL) {
        return NULL;
    }
    memcpy(c, m, hb);
    if (m->flags & S_F_BLOOM) {
        sp_bloom_t *b = sp_bloom_clone(s_bloom(m));
        if (b == NULL) {
            free(c);
            return NULL;
        }
        c->area[0] = (uint64_t)(uintptr_t)b;
    }
    if (m->flags & S_F_EXT) {
        s_blk_t *blk = s_block(s_unconst(m));
        size_t bytes = s_block_bytes(blk->cap_ext, blk->cap_regions, s_cells(m), s_region_bytes(m));
        s_blk_t *copy = malloc(bytes);
        if (copy == NULL) {
            sp_bloom_t *b = s_bloom(c);
            sp_bloom_destroy(&b);
            free(c);
            return NULL;
        }
        memcpy(copy, blk, bytes);
        memcpy(s_inline(c), &copy, sizeof(copy));
    }
    return c;
}

unsigned sp_memory_bits(const sp_memory_t *m)
{
    return m->bits;
}

unsigned sp_memory_region_side(const sp_memory_t *m)
{
    return 1u << m->k;
}

void sp_memory_set_capacity(sp_memory_t *m, uint32_t capacity)
{
    m->capacity = capacity;
}

int sp_memory_store_code(sp_memory_t *m, uint64_t code, float w)
{
    if (code >= S_CODE_END) {
        return SP_E_RANGE;
    }
    return s_put(m, code, sp_quant_level(w, m->bits));
}

int sp_memory_store(sp_memory_t *m, sp_pos_t p, float w)
{
    return s_put(m, sp_morton_encode(p), sp_quant_level(w, m->bits));
}

int sp_memory_retrieve_code(const sp_memory_t *m, uint64_t code, float *w)
{
    uint8_t level;
    int rc = s_get(m, code, &level);
    if (rc == SP_OK) {
        *w = s_values[m->bits][level];
    }
    return rc;
}

int sp_memory_retrieve(const sp_memory_t *m, sp_pos_t p, float *w)
{
    return sp_memory_retrieve_code(m, sp_morton_encode(p), w);
}

int sp_memory_retrieve_level(const sp_memory_t *m, uint64_t code, uint8_t *level)
{
    return s_get(m, code, level);
}

int sp_memory_update_code(sp_memory_t *m, uint64_t code, float delta, sp_rng_t *rng)
{
    if (code >= S_CODE_END) {
        return SP_E_RANGE;
    }
    uint8_t level;
    float w = 0.0f;
    if (s_get(m, code, &level) == SP_OK) {
        w = s_values[m->bits][level];
    }
    w += delta;
    uint8_t q = rng != NULL ? sp_quant_level_stochastic(w, m->bits, rng)
                            : sp_quant_level(w, m->bits);
    return s_put(m, code, q);
}

int sp_memory_update(sp_memory_t *m, sp_pos_t p, float delta, sp_rng_t *rng)
{
    return sp_memory_update_code(m, sp_morton_encode(p), delta, rng);
}

int sp_memory_remove_code(sp_memory_t *m, uint64_t code)
{
    uint8_t level;
    if (s_get(m, code, &level) != SP_OK) {
        return SP_E_NOTFOUND;
    }
    return sp_memory_set_occupied(m, code, 0);
}

int sp_memory_reserve_run(sp_memory_t *m, uint64_t base, uint64_t n)
{
    if (n == 0) {
        return SP_OK;
    }
    if (base >= S_CODE_END || n > S_CODE_END - base) {
        return SP_E_RANGE;
    }
    unsigned sh = 3u * m->k;
    uint64_t k0 = base >> sh, k1 = (base + n - 1) >> sh;
    if (k1 - k0 + 1 > UINT32_MAX / s_cells(m) - m->n_regions) {
        return SP_E_RANGE;
    }
    s_view_t v;
    s_view(m, &v);
    uint32_t missing = 0, slot;
    for (uint64_t key = k0; key <= k1; key++) {
        missing += !s_find(&v, key, &slot);
    }
    if (missing == 0) {
        return SP_OK;
    }
    uint64_t *keys = malloc((size_t)missing * sizeof(*keys));
    if (keys == NULL) {
        return SP_E_NOMEM;
    }
    uint32_t j = 0;
    for (uint64_t key = k0; key <= k1; key++) {
        if (!s_find(&v, key, &slot)) {
            keys[j++] = key;
        }
    }
    int rc = s_assemble(m, m, 0, m->n_regions, keys, missing, 0);
    free(keys);
    return rc;
}

/* Byte offset in the packed area and slot of a run, or -1 when not one run. */
static long long s_run_slot(const sp_memory_t *m, const s_view_t *v, uint64_t base, uint64_t n)
{
    uint64_t mask = s_cells(m) - 1;
    if (n == 0 || (base & mask) != 0 || base >= S_CODE_END || n > S_CODE_END - base) {
        return -1;
    }
    unsigned sh = 3u * m->k;
    uint64_t k0 = base >> sh, k1 = (base + n - 1) >> sh;
    long e = s_find_ext(v, k0);
    if (e < 0 || k1 - v->ext[e].key >= v->ext[e].n) {
        return -1;
    }
    return (long long)(v->ext[e].slot + (k0 - v->ext[e].key));
}

const uint8_t *sp_memory_run(const sp_memory_t *m, uint64_t base, uint64_t n)
{
    return sp_memory_run_mut(s_unconst(m), base, n);
}

uint8_t *sp_memory_run_mut(sp_memory_t *m, uint64_t base, uint64_t n)
{
    s_view_t v;
    s_view(m, &v);
    long long slot = s_run_slot(m, &v, base, n);
    return slot < 0 ? NULL : v.packed + (size_t)slot * s_region_bytes(m);
}

const uint64_t *sp_memory_run_occupancy(const sp_memory_t *m, uint64_t base, uint64_t n)
{
    s_view_t v;
    s_view(s_unconst(m), &v);
    long long slot = s_run_slot(m, &v, base, n);
    if (slot < 0) {
        return NULL;
    }
    if (v.occ == NULL) {
        return n <= (uint64_t)S_ONES_WORDS * 64 ? s_ones : NULL;
    }
    uint64_t bit = (uint64_t)slot * s_cells(m);
    return (bit & 63) != 0 ? NULL : v.occ + (bit >> 6);
}

int sp_memory_set_occupied(sp_memory_t *m, uint64_t code, int occupied)
{
    if (code >= S_CODE_END) {
        return SP_E_RANGE;
    }
    s_view_t v;
    s_view(m, &v);
    uint32_t slot;
    if (!s_find(&v, code >> (3u * m->k), &slot)) {
        return SP_E_NOTFOUND;
    }
    uint64_t i = (uint64_t)slot * s_cells(m) + (code & (s_cells(m) - 1));
    if (occupied) {
        if (!s_occ_get(v.occ, i)) {
            v.occ[i >> 6] |= 1ULL << (i & 63);
            s_note_new_cell(m, code);
        }
        return SP_OK;
    }
    if (v.occ == NULL) {
        int rc = s_materialize(m);
        if (rc != SP_OK) {
            return rc;
        }
        s_view(m, &v);
    }
    if (s_occ_get(v.occ, i)) {
        v.occ[i >> 6] &= ~(1ULL << (i & 63));
        m->used--;
    }
    return SP_OK;
}

int sp_memory_shrink(sp_memory_t *m)
{
    s_try_compact(m);
    return (m->flags & S_F_EXT) ? 0 : 1;
}

static int s_bloom_add(uint64_t code, uint8_t level, void *arg)
{
    (void)level;
    sp_bloom_insert(arg, code);
    return 0;
}

/* Child holding m's slots [lo, hi). */
static sp_memory_t *s_child(const sp_memory_t *m, uint32_t lo, uint32_t hi)
{
    sp_bloom_t *pb = s_bloom(m);
    sp_memory_t *c = s_alloc(m->bits, m->k, m->capacity,
                             pb ? (uint32_t)sp_bloom_expected(pb) : 0, m->inl_regions);
    if (c == NULL) {
        return NULL;
    }
    if (s_assemble(c, m, lo, hi, NULL, 0, 0) != SP_OK) {
        sp_memory_destroy(&c);
        return NULL;
    }
    s_try_compact(c);
    if (pb != NULL) {
        sp_memory_foreach(c, s_bloom_add, s_bloom(c));
    }
    return c;
}

int sp_memory_split_into(const sp_memory_t *m, sp_memory_t **a, sp_memory_t **b)
{
    if (m == NULL || a == NULL || b == NULL) {
        return SP_E_INPUT;
    }
    uint32_t half = m->n_regions / 2;
    sp_memory_t *ca = s_child(m, 0, half);
    sp_memory_t *cb = ca ? s_child(m, half, m->n_regions) : NULL;
    if (cb == NULL) {
        sp_memory_destroy(&ca);
        return SP_E_NOMEM;
    }
    *a = ca;
    *b = cb;
    return SP_OK;
}

void sp_memory_stats(const sp_memory_t *m, sp_memory_stats_t *out)
{
    uint64_t cells = (uint64_t)m->n_regions * s_cells(m);
    memset(out, 0, sizeof(*out));
    out->total_capacity = m->capacity ? m->capacity : cells;
    out->used_capacity = m->used;
    out->saturation =
        out->total_capacity ? (float)((double)m->used / (double)out->total_capacity) : 0.0f;
    out->compression_ratio = 32.0f / (float)m->bits;
    out->active_regions = m->n_regions;
    /* every region has the same number of cells, so the mean of the
     * per-region densities is the overall density */
    out->average_density = cells ? (float)((double)m->used / (double)cells) : 0.0f;
}

uint64_t sp_memory_count(const sp_memory_t *m)
{
    return m->used;
}

size_t sp_memory_heap_bytes(const sp_memory_t *m)
{
    if (m == NULL) {
        return 0;
    }
    size_t bytes = s_handle_bytes(m) + sp_bloom_heap_bytes(s_bloom(m));
    if (m->flags & S_F_EXT) {
        const s_blk_t *blk = s_block(s_unconst(m));
        bytes += s_block_bytes(blk->cap_ext, blk->cap_regions, s_cells(m), s_region_bytes(m));
    }
    return bytes;
}

int sp_memory_foreach(const sp_memory_t *m, sp_memory_visit_fn fn, void *arg)
{
    s_view_t v;
    s_view(s_unconst(m), &v);
    uint32_t cells = s_cells(m);
    unsigned sh = 3u * m->k;
    for (uint32_t e = 0; e < v.n_ext; e++) {
        for (uint32_t r = 0; r < v.ext[e].n; r++) {
            uint64_t slot = v.ext[e].slot + r;
            uint64_t code0 = (v.ext[e].key + r) << sh;
            for (uint32_t c = 0; c < cells; c++) {
                uint64_t i = slot * cells + c;
                if (s_occ_get(v.occ, i)) {
                    int rc = fn(code0 | c, s_qget(v.packed, i, m->bits), arg);
                    if (rc != 0) {
                        return rc;
                    }
                }
            }
        }
    }
    return SP_OK;
}
