/* canvas: see canvas.h. */
#include "client/canvas.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/file.h"

#define S_SCALE 2 /* canvas pixels per font dot */

int sp_canvas_init(sp_canvas_t *cv, int w, int h, sp_rgb_t bg, char *err, size_t errlen)
{
    cv->w = w;
    cv->h = h;
    cv->px = malloc((size_t)w * (size_t)h * 3);
    if (cv->px == NULL) {
        snprintf(err, errlen, "out of memory for a %dx%d picture", w, h);
        return SP_E_NOMEM;
    }
    sp_canvas_fill(cv, 0, 0, w, h, bg);
    return SP_OK;
}

void sp_canvas_fini(sp_canvas_t *cv)
{
    free(cv->px);
    cv->px = NULL;
}

void sp_canvas_fill(sp_canvas_t *cv, int x0, int y0, int w, int h, sp_rgb_t c)
{
    int xa = x0 < 0 ? 0 : x0, ya = y0 < 0 ? 0 : y0;
    int xb = x0 + w > cv->w ? cv->w : x0 + w, yb = y0 + h > cv->h ? cv->h : y0 + h;
    for (int y = ya; y < yb; y++) {
        uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)xa) * 3;
        for (int x = xa; x < xb; x++, p += 3) {
            p[0] = c.r;
            p[1] = c.g;
            p[2] = c.b;
        }
    }
}

/* Bresenham, a square of side thick at every point. */
void sp_canvas_line(sp_canvas_t *cv, int x0, int y0, int x1, int y1, int thick, sp_rgb_t c)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy, lo = -(thick - 1) / 2;
    for (;;) {
        sp_canvas_fill(cv, x0 + lo, y0 + lo, thick, thick, c);
        if (x0 == x1 && y0 == y1) {
            break;
        }
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

/* The font: each glyph is 7 rows of 5 bits, the highest bit leftmost. */
static const char s_glyph_chars[] = "0123456789.-+:()_/abcdefghijklmnoprstuvwxyz";
static const uint8_t s_glyphs[][7] = {
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, /* 0 */
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, /* 2 */
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}, /* 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, /* 4 */
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}, /* 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, /* 6 */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, /* 8 */
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}, /* 9 */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, /* . */
    {0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}, /* + */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}, /* : */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ) */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}, /* _ */
    {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}, /* / */
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, /* b */
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}, /* c */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, /* d */
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}, /* e */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, /* f */
    {0x00, 0x00, 0x0F, 0x11, 0x0F, 0x01, 0x0E}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* h */
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* k */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* l */
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* n */
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}, /* o */
    {0x00, 0x00, 0x16, 0x19, 0x1E, 0x10, 0x10}, /* p */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* r */
    {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E}, /* s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}, /* w */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, /* x */
    {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, /* z */
};

int sp_canvas_text_width(const char *s)
{
    return (int)strlen(s) * SP_CANVAS_ADVANCE - S_SCALE;
}

void sp_canvas_text(sp_canvas_t *cv, int x, int y, const char *s, sp_rgb_t c)
{
    for (; *s; s++, x += SP_CANVAS_ADVANCE) {
        const char *at = strchr(s_glyph_chars, *s);
        if (at == NULL) {
            continue;
        }
        const uint8_t *g = s_glyphs[at - s_glyph_chars];
        for (int row = 0; row < 7; row++) {
            for (int col = 0; col < 5; col++) {
                if (g[row] & (0x10 >> col)) {
                    sp_canvas_fill(cv, x + col * S_SCALE, y + row * S_SCALE, S_SCALE, S_SCALE, c);
                }
            }
        }
    }
}

/* *png gets a new buffer (free it) holding the canvas as PNG. */
static int s_encode(const sp_canvas_t *cv, uint8_t **png, size_t *png_len, char *err, size_t errlen)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)cv->w;
    img.height = (png_uint_32)cv->h;
    img.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    /* a first pass with no buffer gives the size */
    if (!png_image_write_to_memory(&img, NULL, &size, 0, cv->px, 0, NULL)) {
        snprintf(err, errlen, "cannot encode the picture: %s", img.message);
        return SP_E_IO;
    }
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory for a %zu-byte picture", (size_t)size);
        return SP_E_NOMEM;
    }
    if (!png_image_write_to_memory(&img, buf, &size, 0, cv->px, 0, NULL)) {
        snprintf(err, errlen, "cannot encode the picture: %s", img.message);
        free(buf);
        return SP_E_IO;
    }
    *png = buf;
    *png_len = size;
    return SP_OK;
}

int sp_canvas_save_png(const sp_canvas_t *cv, const char *path, char *err, size_t errlen)
{
    uint8_t *png = NULL;
    size_t len = 0;
    int rc = s_encode(cv, &png, &len, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
    rc = sp_file_write_atomic(path, png, len);
    if (rc != SP_OK) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    }
    free(png);
    return rc;
}
