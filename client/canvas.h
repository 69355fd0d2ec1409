/* canvas: an RGB picture in memory with the few drawing operations the
 * client's pictures need (filled boxes, lines, text in a built-in 5x7 font
 * at twice its size), encoded as PNG by libpng. */
#ifndef SP_CLIENT_CANVAS_H
#define SP_CLIENT_CANVAS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t r, g, b;
} sp_rgb_t;

typedef struct {
    int w, h;
    uint8_t *px; /* w * h * 3, row-major RGB */
} sp_canvas_t;

/* The background and the ink of text and axes in every picture. */
static const sp_rgb_t SP_CANVAS_WHITE = {255, 255, 255}, SP_CANVAS_INK = {40, 40, 40};

#define SP_CANVAS_ADVANCE 12 /* pixels from one character to the next */
#define SP_CANVAS_TEXT_H 14  /* height of a line of text */

/* A w x h canvas filled with bg; SP_OK or SP_E_NOMEM (err says so). */
int sp_canvas_init(sp_canvas_t *cv, int w, int h, sp_rgb_t bg, char *err, size_t errlen);
void sp_canvas_fini(sp_canvas_t *cv);
/* Everything clips to the canvas. */
void sp_canvas_fill(sp_canvas_t *cv, int x0, int y0, int w, int h, sp_rgb_t c);
/* A straight line `thick` pixels wide. */
void sp_canvas_line(sp_canvas_t *cv, int x0, int y0, int x1, int y1, int thick, sp_rgb_t c);
/* Text with its top-left corner at (x, y): digits, lower-case letters and
 * . - + : ( ) _ /; other characters leave a gap. */
void sp_canvas_text(sp_canvas_t *cv, int x, int y, const char *s, sp_rgb_t c);
int sp_canvas_text_width(const char *s);
/* Writes the canvas as a PNG file, atomically (common/file.h): SP_OK, or an
 * error with err naming what failed. */
int sp_canvas_save_png(const sp_canvas_t *cv, const char *path, char *err, size_t errlen);

#endif
