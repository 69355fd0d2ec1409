/* plot: a job's training curves as a picture (spec section 7). */
#ifndef SP_CLIENT_PLOT_H
#define SP_CLIENT_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/messages.h"

#define SP_PLOT_WIDTH 900
#define SP_PLOT_HEIGHT 620

/* Draws the loss curve (and the accuracy curve when the job classifies) of
 * job's metric records against the training step: every step record as a
 * thin line, epoch records as points joined by a thick line, validation in
 * a second colour, with axes, ticks and a legend. *png gets a new buffer
 * (free it) holding a PNG of SP_PLOT_WIDTH x SP_PLOT_HEIGHT. Returns SP_OK,
 * or an error with err naming what went wrong. */
int sp_plot_metrics_png(const sp_metric_t *recs, size_t n, uint64_t job, uint8_t **png,
                        size_t *png_len, char *err, size_t errlen);

#endif
