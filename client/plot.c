/* plot: renders a job's loss and accuracy curves into an RGB canvas and
 * writes it with libpng. Text uses a small built-in 5x7 bitmap font drawn at
 * twice its size, so no font library is needed. */
#include "client/plot.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define S_W SP_PLOT_WIDTH
#define S_H SP_PLOT_HEIGHT
#define S_LEFT 108  /* room for the y tick labels (up to 8 characters) */
#define S_RIGHT 24
#define S_TOP 44    /* the title line */
#define S_BOTTOM 56 /* x tick labels and the axis name */
#define S_GAP 52    /* between two panels: the lower one's title */
#define S_SCALE 2   /* font pixels per glyph dot */
#define S_MAX_TICKS 12 /* whatever the values: the tick loops are bounded */

typedef struct {
    uint8_t r, g, b;
} s_rgb_t;

static const s_rgb_t S_WHITE = {255, 255, 255}, S_INK = {40, 40, 40},
                     S_GRID = {228, 228, 228}, S_STEP = {160, 188, 232},
                     S_TRAIN = {31, 90, 180}, S_VAL = {226, 112, 18};

typedef struct {
    uint8_t *px; /* S_W * S_H * 3 */
} s_canvas_t;

/* --- drawing -------------------------------------------------------------- */

static void s_dot(s_canvas_t *cv, int x, int y, s_rgb_t c)
{
    if (x < 0 || y < 0 || x >= S_W || y >= S_H) {
        return;
    }
    uint8_t *p = cv->px + ((size_t)y * S_W + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void s_fill(s_canvas_t *cv, int x0, int y0, int w, int h, s_rgb_t c)
{
    for (int y = y0; y < y0 + h; y++) {
        for (int x = x0; x < x0 + w; x++) {
            s_dot(cv, x, y, c);
        }
    }
}

/* A straight line of width `thick` pixels (Bresenham, a square per point). */
static void s_line(s_canvas_t *cv, int x0, int y0, int x1, int y1, int thick, s_rgb_t c)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int e = dx + dy, lo = -(thick - 1) / 2;
    for (;;) {
        s_fill(cv, x0 + lo, y0 + lo, thick, thick, c);
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
static const char s_glyph_chars[] = "0123456789.-+:()abcdefghijklmnoprstuvwxy";
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
};

#define S_ADVANCE (6 * S_SCALE)
#define S_TEXT_H (7 * S_SCALE)

static int s_text_width(const char *s)
{
    return (int)strlen(s) * S_ADVANCE - S_SCALE;
}

/* Draws s with its top-left corner at (x, y); characters the font lacks
 * (and spaces) leave a gap. */
static void s_text(s_canvas_t *cv, int x, int y, const char *s, s_rgb_t c)
{
    for (; *s; s++, x += S_ADVANCE) {
        const char *at = *s ? strchr(s_glyph_chars, *s) : NULL;
        if (at == NULL) {
            continue;
        }
        const uint8_t *g = s_glyphs[at - s_glyph_chars];
        for (int row = 0; row < 7; row++) {
            for (int col = 0; col < 5; col++) {
                if (g[row] & (0x10 >> col)) {
                    s_fill(cv, x + col * S_SCALE, y + row * S_SCALE, S_SCALE, S_SCALE, c);
                }
            }
        }
    }
}

/* --- axes ----------------------------------------------------------------- */

/* A tick spacing of 1, 2 or 5 times a power of ten giving at most max_ticks
 * intervals over span. */
static double s_tick_step(double span, int max_ticks)
{
    double raw = span / max_ticks;
    double mag = pow(10.0, floor(log10(raw)));
    static const double mult[] = {1, 2, 5, 10};
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++) {
        if (mult[i] * mag >= raw) {
            return mult[i] * mag;
        }
    }
    return 10 * mag;
}

static void s_format_tick(char *buf, size_t len, double v)
{
    if (fabs(v) < 1e-12) {
        v = 0; /* no "-0" */
    }
    snprintf(buf, len, "%.4g", v);
}

typedef struct {
    int x0, y0, w, h;      /* plot area in pixels */
    double xmax, ymin, ymax;
} s_panel_t;

static int s_px(const s_panel_t *p, double x)
{
    return p->x0 + (int)lround(x / p->xmax * (p->w - 1));
}

static int s_py(const s_panel_t *p, double y)
{
    double t = (y - p->ymin) / (p->ymax - p->ymin);
    return p->y0 + p->h - 1 - (int)lround(t * (p->h - 1));
}

/* Frame, grid, tick labels and the panel's title. */
static void s_axes(s_canvas_t *cv, const s_panel_t *p, const char *title, int x_labels)
{
    char buf[32];
    double ys = s_tick_step(p->ymax - p->ymin, 5), y0 = ceil(p->ymin / ys) * ys;
    for (int k = 0; k <= S_MAX_TICKS; k++) {
        double v = y0 + k * ys; /* the bound may overflow to inf: v must stay finite */
        if (!isfinite(v) || v > p->ymax + ys * 1e-9) {
            break;
        }
        int y = s_py(p, v);
        s_line(cv, p->x0, y, p->x0 + p->w - 1, y, 1, S_GRID);
        s_format_tick(buf, sizeof buf, v);
        s_text(cv, p->x0 - 10 - s_text_width(buf), y - S_TEXT_H / 2, buf, S_INK);
    }
    double xs = s_tick_step(p->xmax, 8);
    if (xs < 1) {
        xs = 1; /* steps are whole numbers */
    }
    for (int k = 0; k <= S_MAX_TICKS; k++) {
        double v = k * xs;
        if (!isfinite(v) || v > p->xmax + xs * 1e-9) {
            break;
        }
        int x = s_px(p, v);
        s_line(cv, x, p->y0, x, p->y0 + p->h - 1, 1, S_GRID);
        if (x_labels) {
            s_format_tick(buf, sizeof buf, v);
            s_text(cv, x - s_text_width(buf) / 2, p->y0 + p->h + 8, buf, S_INK);
        }
    }
    s_line(cv, p->x0, p->y0, p->x0 + p->w - 1, p->y0, 1, S_INK);
    s_line(cv, p->x0, p->y0 + p->h - 1, p->x0 + p->w - 1, p->y0 + p->h - 1, 1, S_INK);
    s_line(cv, p->x0, p->y0, p->x0, p->y0 + p->h - 1, 1, S_INK);
    s_line(cv, p->x0 + p->w - 1, p->y0, p->x0 + p->w - 1, p->y0 + p->h - 1, 1, S_INK);
    s_text(cv, p->x0, p->y0 - S_TEXT_H - 10, title, S_INK);
}

/* --- curves --------------------------------------------------------------- */

typedef enum { S_LOSS, S_ACC, S_VAL_LOSS, S_VAL_ACC } s_field_t;

static double s_value(const sp_metric_t *m, s_field_t f)
{
    switch (f) {
    case S_LOSS:
        return m->loss;
    case S_ACC:
        return m->accuracy;
    case S_VAL_LOSS:
        return m->val_loss;
    default:
        return m->val_accuracy;
    }
}

/* One series: the records of one kind, joined in order; a value that is
 * not finite (or outside the panel) breaks the line. Epoch points get a
 * square mark. Returns how many points were drawn. */
static int s_series(s_canvas_t *cv, const s_panel_t *p, const sp_metric_t *recs, size_t n,
                    const char *kind, s_field_t f, int thick, int mark, s_rgb_t c)
{
    int have = 0, px = 0, py = 0, drawn = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i].kind, kind) != 0) {
            continue;
        }
        double v = s_value(&recs[i], f);
        if (!isfinite(v) || v < p->ymin || v > p->ymax) {
            have = 0;
            continue;
        }
        int x = s_px(p, (double)recs[i].step), y = s_py(p, v);
        if (have) {
            s_line(cv, px, py, x, y, thick, c);
        }
        if (mark) {
            s_fill(cv, x - 3, y - 3, 7, 7, c);
        }
        have = 1;
        px = x;
        py = y;
        drawn++;
    }
    return drawn;
}

static int s_any_finite(const sp_metric_t *recs, size_t n, s_field_t f)
{
    for (size_t i = 0; i < n; i++) {
        if (isfinite(s_value(&recs[i], f))) {
            return 1;
        }
    }
    return 0;
}

static void s_legend(s_canvas_t *cv, const s_panel_t *p, int val)
{
    static const char *const names[3] = {"train (steps)", "train (epochs)", "validation"};
    const s_rgb_t colors[3] = {S_STEP, S_TRAIN, S_VAL};
    int x = p->x0 + p->w;
    for (int k = val ? 2 : 1; k >= 0; k--) {
        x -= s_text_width(names[k]) + 44;
        int y = p->y0 - S_TEXT_H - 10;
        s_line(cv, x, y + S_TEXT_H / 2, x + 24, y + S_TEXT_H / 2, k == 0 ? 2 : 3, colors[k]);
        s_text(cv, x + 32, y, names[k], S_INK);
    }
}

/* --- the picture ---------------------------------------------------------- */

/* Encodes the canvas as PNG into a new buffer. */
static int s_encode_png(const s_canvas_t *cv, uint8_t **png, size_t *png_len, char *err,
                        size_t errlen)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = S_W;
    img.height = S_H;
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

int sp_plot_metrics_png(const sp_metric_t *recs, size_t n, uint64_t job, uint8_t **png,
                        size_t *png_len, char *err, size_t errlen)
{
    double xmax = 1, lmax = 0;
    for (size_t i = 0; i < n; i++) {
        if ((double)recs[i].step > xmax) {
            xmax = (double)recs[i].step;
        }
        const s_field_t losses[2] = {S_LOSS, S_VAL_LOSS};
        for (int k = 0; k < 2; k++) {
            double v = s_value(&recs[i], losses[k]);
            if (isfinite(v) && v > lmax) {
                lmax = v;
            }
        }
    }
    s_canvas_t cv;
    cv.px = malloc((size_t)S_W * S_H * 3);
    if (cv.px == NULL) {
        snprintf(err, errlen, "out of memory for a %dx%d picture", S_W, S_H);
        return SP_E_NOMEM;
    }
    s_fill(&cv, 0, 0, S_W, S_H, S_WHITE);
    int classify = s_any_finite(recs, n, S_ACC) || s_any_finite(recs, n, S_VAL_ACC);
    int n_panels = classify ? 2 : 1;
    int ph = (S_H - S_TOP - S_BOTTOM - S_GAP * (n_panels - 1)) / n_panels;
    s_panel_t panel[2];
    for (int k = 0; k < n_panels; k++) {
        panel[k].x0 = S_LEFT;
        panel[k].y0 = S_TOP + k * (ph + S_GAP);
        panel[k].w = S_W - S_LEFT - S_RIGHT;
        panel[k].h = ph;
        panel[k].xmax = xmax;
        panel[k].ymin = 0;
    }
    /* loss from 0 to a tick above its largest value; accuracy 0 to 1 */
    double ls = s_tick_step(lmax > 0 ? lmax : 1, 5);
    panel[0].ymax = lmax > 0 ? ceil(lmax / ls) * ls : 1;
    if (!isfinite(panel[0].ymax) || panel[0].ymax < lmax) {
        panel[0].ymax = lmax; /* a loss near the largest double */
    }
    panel[1].ymax = 1;
    char title[64];
    snprintf(title, sizeof title, "job %llu: loss", (unsigned long long)job);
    s_axes(&cv, &panel[0], title, n_panels == 1);
    if (classify) {
        s_axes(&cv, &panel[1], "accuracy", 1);
    }
    int val = s_any_finite(recs, n, S_VAL_LOSS) || s_any_finite(recs, n, S_VAL_ACC);
    s_legend(&cv, &panel[0], val);
    for (int k = 0; k < n_panels; k++) {
        s_field_t train = k == 0 ? S_LOSS : S_ACC, valf = k == 0 ? S_VAL_LOSS : S_VAL_ACC;
        s_series(&cv, &panel[k], recs, n, "step", train, 1, 0, S_STEP);
        s_series(&cv, &panel[k], recs, n, "epoch", train, 3, 1, S_TRAIN);
        s_series(&cv, &panel[k], recs, n, "epoch", valf, 3, 1, S_VAL);
    }
    const char *xname = "step";
    s_text(&cv, S_LEFT + (S_W - S_LEFT - S_RIGHT - s_text_width(xname)) / 2, S_H - S_TEXT_H - 6,
           xname, S_INK);
    int rc = s_encode_png(&cv, png, png_len, err, errlen);
    free(cv.px);
    return rc;
}
