/* inspect: the geometry of the pictures `spatium inspect` draws (spec
 * section 7), shared with the tests that read them back. */
#ifndef SP_CLIENT_INSPECT_H
#define SP_CLIENT_INSPECT_H

/* Activation map: 8 x 8 cells of SP_INSPECT_MAP_CELL pixels, the top-left
 * one at (SP_INSPECT_X0, SP_INSPECT_Y0), row 0 at the top. A cell never hit
 * is SP_INSPECT_DEAD. */
#define SP_INSPECT_X0 40
#define SP_INSPECT_Y0 60
#define SP_INSPECT_MAP_CELL 56
#define SP_INSPECT_DEAD_R 170
#define SP_INSPECT_DEAD_G 170
#define SP_INSPECT_DEAD_B 170

/* Memory slice: side x side cells (side: the smallest power of two whose
 * cube holds the neuron's codes base .. base + fan-in - 1) of
 * sp_inspect_heat_cell(side) pixels from (SP_INSPECT_X0, SP_INSPECT_Y0),
 * x to the right, y down. A cell past the neuron's fan-in is
 * SP_INSPECT_OUTSIDE. */
#define SP_INSPECT_HEAT_PX 512
#define SP_INSPECT_OUTSIDE_R 200
#define SP_INSPECT_OUTSIDE_G 200
#define SP_INSPECT_OUTSIDE_B 200

static inline int sp_inspect_heat_cell(unsigned side)
{
    return side >= SP_INSPECT_HEAT_PX ? 1 : SP_INSPECT_HEAT_PX / (int)side;
}

#endif
