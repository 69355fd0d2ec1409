/* inspect: the `inspect` command. Reads a model file locally (no
 * coordinator) and prints its layers; draws one neuron's spatial memory (a
 * z-slice, density per region as colour) or its activation map (colour by
 * function, brightness by hit count, cells never hit grey) as PNG: the
 * pictures of spec section 7. */
#include "client/inspect.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/canvas.h"
#include "client/commands.h"
#include "client/json.h"
#include "common/activation.h"
#include "common/error.h"
#include "common/layer.h"
#include "common/memory.h"
#include "common/morton.h"
#include "common/network.h"

#define S_PRUNE_THRESHOLD 0.01f /* what `train` uses unless told: candidates counted by it */
#define S_MAX_SIDE 2048         /* 2048^3 cells hold any 32-bit fan-in */

static const sp_rgb_t S_DEAD = {SP_INSPECT_DEAD_R, SP_INSPECT_DEAD_G, SP_INSPECT_DEAD_B},
                      S_OUTSIDE = {SP_INSPECT_OUTSIDE_R, SP_INSPECT_OUTSIDE_G,
                                   SP_INSPECT_OUTSIDE_B},
                      S_EMPTY = {246, 246, 250}, S_FULL = {24, 64, 160};

/* One hue per activation function, in sp_act_t order. */
static const sp_rgb_t s_act_colour[SP_ACT_COUNT] = {
    {214, 39, 40},   {255, 127, 14}, {44, 160, 44},  {31, 119, 180}, {148, 103, 189}, {140, 86, 75},
    {227, 119, 194}, {188, 189, 34}, {23, 190, 207}, {90, 90, 200},  {0, 110, 90},    {120, 60, 20},
};

static const char s_usage[] =
    "usage: spatium inspect MODEL [--layer L] [--neuron N] [--heatmap FILE [--z Z]]\n"
    "                             [--activations FILE]\n"
    "Reads the model file MODEL (from `spatium model`) locally and prints its\n"
    "layers: neurons, inputs, weight bits, mean saturation, growth and prune\n"
    "candidates, and the sparsity of the whole network.\n"
    "  --layer L           computing layer, 1 (the first) to the last (default 1)\n"
    "  --neuron N          neuron of that layer, 0 to its width - 1 (default 0)\n"
    "  --heatmap FILE      a z-slice of that neuron's spatial memory as PNG: each\n"
    "                      cell coloured by the share of stored weights in its\n"
    "                      region, stored cells dotted, cells past its inputs grey\n"
    "  --z Z               the slice (default 0)\n"
    "  --activations FILE  that neuron's 8x8 activation map as PNG: colour by\n"
    "                      function, brightness by hit count, cells never hit grey\n"
    "--json: {\"layers\": [{\"layer\",\"inputs\",\"neurons\",\"active\",\"bits\",\n"
    "\"saturation\",\"growth_candidates\",\"prune_candidates\"}], \"sparsity\"}.\n";

static sp_rgb_t s_mix(sp_rgb_t a, sp_rgb_t b, double t)
{
    sp_rgb_t c = {(uint8_t)lround(a.r + (b.r - a.r) * t), (uint8_t)lround(a.g + (b.g - a.g) * t),
                  (uint8_t)lround(a.b + (b.b - a.b) * t)};
    return c;
}

/* Writes cv to path and frees it; an exit code. */
static int s_save(sp_cli_t *c, sp_canvas_t *cv, const char *path)
{
    char err[512] = "";
    int rc = sp_canvas_save_png(cv, path, err, sizeof err);
    sp_canvas_fini(cv);
    return rc == SP_OK ? SP_EXIT_OK : sp_cli_report(c, SP_EXIT_FAIL, "inspect: %s", err);
}

/* The 8x8 map of nr; the legend lists the functions the map uses. */
static int s_activations(sp_cli_t *c, const sp_neuron_t *nr, uint32_t layer, uint32_t neuron,
                         const char *path)
{
    const int cell = SP_INSPECT_MAP_CELL, side = SP_ACTMAP_SIDE * SP_INSPECT_MAP_CELL;
    char err[256] = "";
    sp_canvas_t cv;
    if (sp_canvas_init(&cv, SP_INSPECT_X0 + side + 290, SP_INSPECT_Y0 + side + 40, SP_CANVAS_WHITE,
                       err, sizeof err) != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "inspect: %s", err);
    }
    uint32_t most = 0;
    int used[SP_ACT_COUNT] = {0};
    for (int k = 0; k < SP_ACTMAP_CELLS; k++) {
        most = nr->map.hits[k] > most ? nr->map.hits[k] : most;
    }
    for (int k = 0; k < SP_ACTMAP_CELLS; k++) {
        unsigned f = nr->map.func[k]; /* < SP_ACT_COUNT: the model loader checks it */
        uint32_t h = nr->map.hits[k];
        used[f] = 1; /* the legend lists dead cells' functions too */
        sp_rgb_t col = S_DEAD;
        if (h > 0) {
            /* brighter with more hits, on a log scale: a quarter of the hue at one hit */
            double t = 0.25 + 0.75 * log1p((double)h) / log1p((double)most);
            col = s_mix(SP_CANVAS_WHITE, s_act_colour[f], t);
        }
        int x = SP_INSPECT_X0 + (k % SP_ACTMAP_SIDE) * cell,
            y = SP_INSPECT_Y0 + (k / SP_ACTMAP_SIDE) * cell;
        sp_canvas_fill(&cv, x + 1, y + 1, cell - 2, cell - 2, col);
    }
    char title[96];
    snprintf(title, sizeof title, "layer %" PRIu32 " neuron %" PRIu32 ": activation map", layer,
             neuron);
    sp_canvas_text(&cv, SP_INSPECT_X0, 20, title, SP_CANVAS_INK);
    int ly = SP_INSPECT_Y0;
    for (unsigned f = 0; f < SP_ACT_COUNT; f++) {
        if (used[f]) {
            sp_canvas_fill(&cv, SP_INSPECT_X0 + side + 24, ly, 28, SP_CANVAS_TEXT_H,
                           s_act_colour[f]);
            sp_canvas_text(&cv, SP_INSPECT_X0 + side + 60, ly, sp_act_name((sp_act_t)f),
                           SP_CANVAS_INK);
            ly += SP_CANVAS_TEXT_H + 12;
        }
    }
    sp_canvas_fill(&cv, SP_INSPECT_X0 + side + 24, ly, 28, SP_CANVAS_TEXT_H, S_DEAD);
    sp_canvas_text(&cv, SP_INSPECT_X0 + side + 60, ly, "never hit", SP_CANVAS_INK);
    char note[64];
    snprintf(note, sizeof note, "most hits: %" PRIu32, most);
    sp_canvas_text(&cv, SP_INSPECT_X0 + side + 24, ly + SP_CANVAS_TEXT_H + 24, note, SP_CANVAS_INK);
    return s_save(c, &cv, path);
}

/* Slice z of nr's memory: a cell's colour is its region's density (stored
 * cells over the region's cells), a stored cell gets a dot. */
static int s_heatmap(sp_cli_t *c, const sp_neuron_t *nr, uint32_t layer, uint32_t neuron,
                     unsigned side, uint32_t z, const char *path)
{
    unsigned rs = sp_memory_region_side(nr->mem);
    rs = rs == 0 || rs > side ? side : rs;
    int px = sp_inspect_heat_cell(side), grid = (int)side * px;
    char err[256] = "";
    sp_canvas_t cv;
    if (sp_canvas_init(&cv, SP_INSPECT_X0 + grid + 200, SP_INSPECT_Y0 + grid + 40, SP_CANVAS_WHITE,
                       err, sizeof err) != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "inspect: %s", err);
    }
    uint64_t lo = nr->base, hi = nr->base + nr->n_in;
    unsigned z0 = z / rs * rs;
    float w;
    for (unsigned ry = 0; ry < side; ry += rs) {
        for (unsigned rx = 0; rx < side; rx += rs) {
            /* the region's density, over all its cells */
            uint64_t stored = 0;
            for (unsigned k = 0; k < rs * rs * rs; k++) {
                uint64_t code =
                    sp_morton_encode_xyz(rx + k % rs, ry + k / rs % rs, z0 + k / (rs * rs));
                stored +=
                    code >= lo && code < hi && sp_memory_retrieve_code(nr->mem, code, &w) == SP_OK;
            }
            sp_rgb_t col = s_mix(S_EMPTY, S_FULL, (double)stored / ((double)rs * rs * rs));
            for (unsigned y = ry; y < ry + rs; y++) {
                for (unsigned x = rx; x < rx + rs; x++) {
                    uint64_t code = sp_morton_encode_xyz(x, y, z);
                    int gx = SP_INSPECT_X0 + (int)x * px, gy = SP_INSPECT_Y0 + (int)y * px;
                    if (code < lo || code >= hi) {
                        sp_canvas_fill(&cv, gx, gy, px, px, S_OUTSIDE);
                        continue;
                    }
                    sp_canvas_fill(&cv, gx, gy, px, px, col);
                    if (px >= 4 && sp_memory_retrieve_code(nr->mem, code, &w) == SP_OK) {
                        int d = px / 4 > 1 ? px / 4 : 1;
                        sp_canvas_fill(&cv, gx + px / 2 - d / 2, gy + px / 2 - d / 2, d, d,
                                       SP_CANVAS_INK);
                    }
                }
            }
        }
    }
    char title[128];
    snprintf(title, sizeof title,
             "layer %" PRIu32 " neuron %" PRIu32 ": memory slice z %" PRIu32 " of %u", layer,
             neuron, z, side);
    sp_canvas_text(&cv, SP_INSPECT_X0, 20, title, SP_CANVAS_INK);
    /* the colour scale: region density 0 at the bottom, 1 at the top */
    int bx = SP_INSPECT_X0 + grid + 30, bh = grid < 200 ? grid : 200;
    for (int i = 0; i < bh; i++) {
        sp_canvas_fill(&cv, bx, SP_INSPECT_Y0 + i, 24, 1,
                       s_mix(S_EMPTY, S_FULL, 1.0 - (double)i / (bh > 1 ? bh - 1 : 1)));
    }
    sp_canvas_text(&cv, bx + 32, SP_INSPECT_Y0, "1", SP_CANVAS_INK);
    sp_canvas_text(&cv, bx + 32, SP_INSPECT_Y0 + bh - SP_CANVAS_TEXT_H, "0", SP_CANVAS_INK);
    sp_canvas_text(&cv, bx, SP_INSPECT_Y0 + bh + 12, "region", SP_CANVAS_INK);
    sp_canvas_text(&cv, bx, SP_INSPECT_Y0 + bh + 12 + SP_CANVAS_TEXT_H + 6, "density",
                   SP_CANVAS_INK);
    return s_save(c, &cv, path);
}

static void s_print(const sp_cli_t *c, const sp_network_t *net)
{
    sp_network_stats_t st;
    sp_network_stats(net, S_PRUNE_THRESHOLD, &st);
    unsigned bits = sp_network_config(net)->bits;
    size_t n_layers = sp_network_layer_count(net);
    if (c->json) {
        sp_json_t j;
        sp_json_init(&j, stdout);
        sp_json_obj_begin(&j);
        sp_json_key(&j, "layers");
        sp_json_arr_begin(&j);
        for (size_t l = 0; l < n_layers; l++) {
            const sp_layer_stats_t *ls = &st.layers[l];
            sp_json_obj_begin(&j);
            sp_json_ku64(&j, "layer", l + 1);
            sp_json_ku64(&j, "inputs", sp_network_layer(net, l)->n_in);
            sp_json_ku64(&j, "neurons", ls->neuron_count);
            sp_json_ku64(&j, "active", ls->active_neurons);
            sp_json_ku64(&j, "bits", bits);
            sp_json_knum(&j, "saturation", ls->average_saturation);
            sp_json_ku64(&j, "growth_candidates", ls->growth_candidates);
            sp_json_ku64(&j, "prune_candidates", ls->prune_candidates);
            sp_json_obj_end(&j);
        }
        sp_json_arr_end(&j);
        sp_json_knum(&j, "sparsity", st.average_sparsity);
        sp_json_obj_end(&j);
        return;
    }
    for (size_t l = 0; l < n_layers; l++) {
        const sp_layer_stats_t *ls = &st.layers[l];
        printf("layer %zu: %" PRIu32 " inputs, %" PRIu32 " neurons (%" PRIu32
               " active), %u-bit weights, saturation %.3f, growth candidates %" PRIu32
               ", prune candidates %" PRIu32 "\n",
               l + 1, sp_network_layer(net, l)->n_in, ls->neuron_count, ls->active_neurons, bits,
               ls->average_saturation, ls->growth_candidates, ls->prune_candidates);
    }
    printf("sparsity %.4f (absent weights over all neurons)\n", st.average_sparsity);
}

int sp_cmd_inspect(sp_cli_t *c, int argc, char **argv)
{
    const char *model = NULL, *heat = NULL, *acts = NULL, *layer_s = "1", *neuron_s = "0",
               *z_s = "0";
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if (sp_args_is_help(argv[i])) {
            fputs(s_usage, stdout);
            return SP_EXIT_OK;
        }
        const char *names[5] = {"--layer", "--neuron", "--heatmap", "--z", "--activations"};
        const char **dst[5] = {&layer_s, &neuron_s, &heat, &z_s, &acts};
        int k = 0;
        for (; k < 5 && (m = sp_args_value(c, argc, argv, &i, names[k], &v)) == 0; k++) {
        }
        if (m < 0) {
            return SP_EXIT_USAGE;
        }
        if (k < 5) {
            *dst[k] = v;
            continue;
        }
        if (sp_args_rest(c, argc, argv, &i, &model, &n_pos, 1) < 0) {
            return SP_EXIT_USAGE;
        }
    }
    if (model == NULL) {
        return sp_cli_report(c, SP_EXIT_USAGE, "inspect: usage: spatium inspect MODEL [options]");
    }
    uint32_t layer = 0, neuron = 0, z = 0;
    if (sp_args_u32(c, "--layer", layer_s, 1, SP_NET_MAX_LAYERS, &layer) != 0 ||
        sp_args_u32(c, "--neuron", neuron_s, 0, UINT32_MAX, &neuron) != 0 ||
        sp_args_u32(c, "--z", z_s, 0, S_MAX_SIDE - 1, &z) != 0) {
        return SP_EXIT_USAGE;
    }
    char err[512] = "";
    sp_network_t *net = NULL;
    int rc = sp_network_load_file(model, &net, err, sizeof err);
    if (rc != SP_OK) {
        return sp_cli_report(c, SP_EXIT_FAIL, "%s: %s", model, err[0] ? err : sp_strerror(rc));
    }
    size_t n_layers = sp_network_layer_count(net);
    if (layer > n_layers) {
        sp_network_destroy(&net);
        return sp_cli_report(c, SP_EXIT_USAGE, "inspect: --layer %" PRIu32 ": %s has %zu layers",
                             layer, model, n_layers);
    }
    const sp_layer_t *L = sp_network_layer(net, layer - 1);
    if (neuron >= L->n_out) {
        uint32_t width = L->n_out; /* L goes with the network */
        sp_network_destroy(&net);
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "inspect: --neuron %" PRIu32 ": layer %" PRIu32 " has %" PRIu32
                             " neurons (0 to %" PRIu32 ")",
                             neuron, layer, width, width - 1);
    }
    const sp_neuron_t *nr = &L->nr[neuron];
    unsigned side = 1;
    while (side < S_MAX_SIDE && (uint64_t)side * side * side < nr->base + nr->n_in) {
        side *= 2;
    }
    if (heat != NULL && z >= side) {
        sp_network_destroy(&net);
        return sp_cli_report(c, SP_EXIT_USAGE,
                             "inspect: --z %" PRIu32 ": that neuron's memory has slices 0 to %u", z,
                             side - 1);
    }
    rc = SP_EXIT_OK;
    if (heat == NULL && acts == NULL) {
        s_print(c, net);
    }
    if (heat != NULL) {
        rc = s_heatmap(c, nr, layer, neuron, side, z, heat);
    }
    if (rc == SP_EXIT_OK && acts != NULL) {
        rc = s_activations(c, nr, layer, neuron, acts);
    }
    if (rc == SP_EXIT_OK && (heat != NULL || acts != NULL)) {
        if (c->json) {
            sp_json_t j;
            sp_json_init(&j, stdout);
            sp_json_obj_begin(&j);
            sp_json_ku64(&j, "layer", layer);
            sp_json_ku64(&j, "neuron", neuron);
            if (heat != NULL) {
                sp_json_kstr(&j, "heatmap", heat);
                sp_json_ku64(&j, "z", z);
                sp_json_ku64(&j, "side", side);
            }
            if (acts != NULL) {
                sp_json_kstr(&j, "activations", acts);
            }
            sp_json_obj_end(&j);
        } else {
            if (heat != NULL) {
                printf("layer %" PRIu32 " neuron %" PRIu32 ": memory slice z %" PRIu32
                       " written to %s\n",
                       layer, neuron, z, heat);
            }
            if (acts != NULL) {
                printf("layer %" PRIu32 " neuron %" PRIu32 ": activation map written to %s\n",
                       layer, neuron, acts);
            }
        }
    }
    sp_network_destroy(&net);
    return rc;
}
