/* plot: a job's training curves as a picture (spec section 7). */
#ifndef SP_CLIENT_PLOT_H
#define SP_CLIENT_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "client/canvas.h"
#include "proto/messages.h"

#define SP_PLOT_WIDTH 900
#define SP_PLOT_HEIGHT 620

/* Draws the loss curve (and the accuracy curve when the job classifies) of
 * job's metric records against the training step: every step record as a
 * thin line, epoch records as points joined by a thick line, validation in
 * a second colour, with axes, ticks and a legend, on cv, which it
 * initialises at SP_PLOT_WIDTH x SP_PLOT_HEIGHT (sp_canvas_fini it). SP_OK,
 * or SP_E_NOMEM with err saying so. */
int sp_plot_metrics(const sp_metric_t *recs, size_t n, uint64_t job, sp_canvas_t *cv, char *err,
                    size_t errlen);

#endif
