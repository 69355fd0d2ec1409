/* plot: a job's loss and accuracy curves, drawn on a canvas
 * (client/canvas.h) and encoded as PNG. */
#include "client/plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "client/canvas.h"
#include "common/error.h"

#define S_W SP_PLOT_WIDTH
#define S_H SP_PLOT_HEIGHT
#define S_LEFT 108 /* room for the y tick labels (up to 8 characters) */
#define S_RIGHT 24
#define S_TOP 44       /* the title line */
#define S_BOTTOM 56    /* x tick labels and the axis name */
#define S_GAP 52       /* between two panels: the lower one's title */
#define S_MAX_TICKS 12 /* whatever the values: the tick loops are bounded */

static const sp_rgb_t S_GRID = {228, 228, 228}, S_STEP = {160, 188, 232}, S_TRAIN = {31, 90, 180},
                      S_VAL = {226, 112, 18};

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
    int x0, y0, w, h; /* plot area in pixels */
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
static void s_axes(sp_canvas_t *cv, const s_panel_t *p, const char *title, int x_labels)
{
    char buf[32];
    double ys = s_tick_step(p->ymax - p->ymin, 5), y0 = ceil(p->ymin / ys) * ys;
    for (int k = 0; k <= S_MAX_TICKS; k++) {
        double v = y0 + k * ys; /* the bound may overflow to inf: v must stay finite */
        if (!isfinite(v) || v > p->ymax + ys * 1e-9) {
            break;
        }
        int y = s_py(p, v);
        sp_canvas_line(cv, p->x0, y, p->x0 + p->w - 1, y, 1, S_GRID);
        s_format_tick(buf, sizeof buf, v);
        sp_canvas_text(cv, p->x0 - 10 - sp_canvas_text_width(buf), y - SP_CANVAS_TEXT_H / 2, buf,
                       SP_CANVAS_INK);
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
        sp_canvas_line(cv, x, p->y0, x, p->y0 + p->h - 1, 1, S_GRID);
        if (x_labels) {
            s_format_tick(buf, sizeof buf, v);
            sp_canvas_text(cv, x - sp_canvas_text_width(buf) / 2, p->y0 + p->h + 8, buf,
                           SP_CANVAS_INK);
        }
    }
    sp_canvas_line(cv, p->x0, p->y0, p->x0 + p->w - 1, p->y0, 1, SP_CANVAS_INK);
    sp_canvas_line(cv, p->x0, p->y0 + p->h - 1, p->x0 + p->w - 1, p->y0 + p->h - 1, 1,
                   SP_CANVAS_INK);
    sp_canvas_line(cv, p->x0, p->y0, p->x0, p->y0 + p->h - 1, 1, SP_CANVAS_INK);
    sp_canvas_line(cv, p->x0 + p->w - 1, p->y0, p->x0 + p->w - 1, p->y0 + p->h - 1, 1,
                   SP_CANVAS_INK);
    sp_canvas_text(cv, p->x0, p->y0 - SP_CANVAS_TEXT_H - 10, title, SP_CANVAS_INK);
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
 * square mark. */
static void s_series(sp_canvas_t *cv, const s_panel_t *p, const sp_metric_t *recs, size_t n,
                     const char *kind, s_field_t f, int thick, int mark, sp_rgb_t c)
{
    int have = 0, px = 0, py = 0;
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
            sp_canvas_line(cv, px, py, x, y, thick, c);
        }
        if (mark) {
            sp_canvas_fill(cv, x - 3, y - 3, 7, 7, c);
        }
        have = 1;
        px = x;
        py = y;
    }
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

static void s_legend(sp_canvas_t *cv, const s_panel_t *p, int val)
{
    static const char *const names[3] = {"train (steps)", "train (epochs)", "validation"};
    const sp_rgb_t colors[3] = {S_STEP, S_TRAIN, S_VAL};
    int x = p->x0 + p->w;
    for (int k = val ? 2 : 1; k >= 0; k--) {
        x -= sp_canvas_text_width(names[k]) + 44;
        int y = p->y0 - SP_CANVAS_TEXT_H - 10;
        sp_canvas_line(cv, x, y + SP_CANVAS_TEXT_H / 2, x + 24, y + SP_CANVAS_TEXT_H / 2,
                       k == 0 ? 2 : 3, colors[k]);
        sp_canvas_text(cv, x + 32, y, names[k], SP_CANVAS_INK);
    }
}

/* --- the picture ---------------------------------------------------------- */

int sp_plot_metrics(const sp_metric_t *recs, size_t n, uint64_t job, sp_canvas_t *cv, char *err,
                    size_t errlen)
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
    int rc = sp_canvas_init(cv, S_W, S_H, SP_CANVAS_WHITE, err, errlen);
    if (rc != SP_OK) {
        return rc;
    }
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
    s_axes(cv, &panel[0], title, n_panels == 1);
    if (classify) {
        s_axes(cv, &panel[1], "accuracy", 1);
    }
    int val = s_any_finite(recs, n, S_VAL_LOSS) || s_any_finite(recs, n, S_VAL_ACC);
    s_legend(cv, &panel[0], val);
    for (int k = 0; k < n_panels; k++) {
        s_field_t train = k == 0 ? S_LOSS : S_ACC, valf = k == 0 ? S_VAL_LOSS : S_VAL_ACC;
        s_series(cv, &panel[k], recs, n, "step", train, 1, 0, S_STEP);
        s_series(cv, &panel[k], recs, n, "epoch", train, 3, 1, S_TRAIN);
        s_series(cv, &panel[k], recs, n, "epoch", valf, 3, 1, S_VAL);
    }
    const char *xname = "step";
    sp_canvas_text(cv, S_LEFT + (S_W - S_LEFT - S_RIGHT - sp_canvas_text_width(xname)) / 2,
                   S_H - SP_CANVAS_TEXT_H - 6, xname, SP_CANVAS_INK);
    return SP_OK;
}
