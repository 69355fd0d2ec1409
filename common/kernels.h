/* kernels: the numerical hot loops of the spatium network, kept apart from
 * control flow. Every kernel has a portable scalar `_ref` oracle; the public
 * entry point picks the widest variant the CPU supports (AVX-512, AVX2+FMA,
 * else the ref) at run time. A given variant is deterministic: same inputs,
 * same bits. The GEMMs split only their outputs between threads and fix each
 * output's summation order, so their results are bit-identical for any nth.
 *
 * Packed runs (common/quant.h): weight i of a run at bit offset i*bits (1, 2
 * or 4), low bits first in each byte; level L means L/(2^b-1)*2-1 (computed
 * as float operations in that order, the bits of sp_quant_value). The
 * occupancy bitmap `occ` has bit i%64 of word i/64 set when weight i exists;
 * an absent weight counts as 0. `occ` may be NULL: every weight present.
 * Kernels read exactly sp_quant_packed_size(n, bits) bytes of `packed` and
 * (n+63)/64 words of `occ`, never more, and write nothing outside bits
 * 0..n*bits-1 / occupancy bits 0..n-1 (bits past n in the last byte / word
 * are kept). Bad arguments (bits not 1/2/4, NULL where not allowed) are bugs
 * of the caller and trip SP_ASSERT: these are internal, hot, trusted calls. */
#ifndef SP_KERNELS_H
#define SP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Instruction-set variants. */
typedef enum {
    SP_KERN_REF = 0,    /* portable scalar C */
    SP_KERN_AVX2 = 1,   /* AVX2 + FMA */
    SP_KERN_AVX512 = 2, /* AVX-512 F/BW/VL (+VNNI where the kernel says so) */
} sp_kern_isa_t;

/* Widest variant this CPU runs (what the dispatching entry points use). */
sp_kern_isa_t sp_kern_isa(void);
/* True when this CPU can run `isa` (tests skip the variants it cannot). */
int sp_kern_isa_supported(sp_kern_isa_t isa);
/* "ref", "avx2" or "avx512". */
const char *sp_kern_isa_name(sp_kern_isa_t isa);
/* True when the u8 x s8 GEMM has a fast path here (AVX-512 VNNI). */
int sp_kern_has_vnni(void);

/* ---- 1. single-neuron forward on packed words ---------------------------
 * Returns sum over present i of value(level_i) * x[i], i < n. The caller
 * keeps n_present. Fast variants differ from the ref only by float rounding
 * (tests allow 1e-5 * n * max|x|). */
float sp_kern_dot_packed(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
                         unsigned bits);
float sp_kern_dot_packed_ref(const uint8_t *packed, const uint64_t *occ, const float *x, size_t n,
                             unsigned bits);
/* Runs one variant explicitly (for tests and benchmarks); isa must be supported. */
float sp_kern_dot_packed_isa(sp_kern_isa_t isa, const uint8_t *packed, const uint64_t *occ,
                             const float *x, size_t n, unsigned bits);

/* ---- 2. local-learn update and re-quantization --------------------------
 * For i < n: master[i] = clamp(master[i] - rate_err * x[i], -1, 1); writes
 * the nearest level of master[i] into the packed run and sets occupancy bit i
 * iff |master[i]| >= presence_threshold (threshold 0: all present). `occ`
 * must not be NULL here. Returns the new number of present weights.
 * Nearest level: floor((w + 1) / 2 * (2^b - 1) + 0.5) of the clamped w (the
 * level sp_quant_level gives; NaN counts as 0).
 * The master update is exact float arithmetic (one fma per weight), so every
 * variant gives the same master, packed bits and occupancy as the ref. */
size_t sp_kern_learn_packed(float *master, uint8_t *packed, uint64_t *occ, const float *x, size_t n,
                            unsigned bits, float rate_err, float presence_threshold);
size_t sp_kern_learn_packed_ref(float *master, uint8_t *packed, uint64_t *occ, const float *x,
                                size_t n, unsigned bits, float rate_err, float presence_threshold);
size_t sp_kern_learn_packed_isa(sp_kern_isa_t isa, float *master, uint8_t *packed, uint64_t *occ,
                                const float *x, size_t n, unsigned bits, float rate_err,
                                float presence_threshold);

/* Re-quantization alone (after an optimizer step on the float master):
 * levels of w[0..n) (clamped, nearest) into `packed`, occupancy bit i iff
 * |w[i]| >= presence_threshold. `occ` may be NULL (then not written). Returns
 * the number present. Same results in every variant. */
size_t sp_kern_quantize_row(const float *w, size_t n, unsigned bits, float presence_threshold,
                            uint8_t *packed, uint64_t *occ);
size_t sp_kern_quantize_row_ref(const float *w, size_t n, unsigned bits, float presence_threshold,
                                uint8_t *packed, uint64_t *occ);
size_t sp_kern_quantize_row_isa(sp_kern_isa_t isa, const float *w, size_t n, unsigned bits,
                                float presence_threshold, uint8_t *packed, uint64_t *occ);

/* ---- 3. unpack a packed run into a dense row ----------------------------
 * out[i] = value(level_i) if present, else 0.0f, for i < n. Exact: every
 * variant writes the same bits as the ref. */
void sp_kern_unpack_row(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                        float *out);
void sp_kern_unpack_row_ref(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                            float *out);
/* Same, times `scale`: out[i] = value * scale (one float multiply) if present,
 * else +0.0f. For rows like gain / n_present. Exact in every variant. */
void sp_kern_unpack_row_scaled(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               float scale, float *out);
void sp_kern_unpack_row_scaled_ref(const uint8_t *packed, const uint64_t *occ, size_t n,
                                   unsigned bits, float scale, float *out);
/* One variant explicitly (SP_KERN_REF here is the portable byte-table path). */
void sp_kern_unpack_row_scaled_isa(sp_kern_isa_t isa, const uint8_t *packed, const uint64_t *occ,
                                   size_t n, unsigned bits, float scale, float *out);
/* Integer form for the u8 x s8 GEMM: out[i] = 2*level_i - (2^b - 1) if
 * present, else 0; value = out[i] / (2^b - 1) (so scale 1/15 at 4 bits,
 * 1/3 at 2 bits, 1 at 1 bit). */
void sp_kern_unpack_row_s8(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                           int8_t *out);
void sp_kern_unpack_row_s8_ref(const uint8_t *packed, const uint64_t *occ, size_t n, unsigned bits,
                               int8_t *out);

/* ---- 4. float GEMMs for a batched layer (row-major, contiguous rows) ----
 * Shapes: X is B x n_in, W is n_out x n_in, G (dLoss/dS) is B x n_out.
 * (ith, nth): this call computes only thread ith's share of the OUTPUT
 * (0 <= ith < nth); call it with every ith in 0..nth-1 (typically from
 * inside an OpenMP parallel region with omp_get_thread_num/num_threads) and
 * the whole output is written once. No sum is split across threads and each
 * output element's summation order is fixed, so the result is bit-identical
 * for any nth. Inputs must not alias outputs.
 * Exactness: dW and dX are one fma chain per element in the stated order,
 * the ref's own arithmetic, so every variant gives the ref's bits. S is a
 * 16-lane (AVX-512) or 8-lane (AVX2) fma chain then a fixed lane reduction:
 * deterministic for a variant, within float rounding of the ref.
 * Zeros: a row k of X (dW) or W (dX) that is all zero over a 64-column
 * block adds exactly nothing and may be skipped (image inputs are about half
 * zeros). This equals the ref for finite G; Inf or NaN in G is not
 * propagated through such zeros as the ref would (0 * Inf = NaN there). */

/* S = X * W^T: S[b][o] = sum_i X[b][i] * W[o][i] (S is B x n_out, overwritten). */
void sp_kern_gemm_xwt(size_t B, size_t n_in, size_t n_out, const float *X, const float *W, float *S,
                      int ith, int nth);
/* dW += G^T * X: dW[o][i] += sum_b G[b][o] * X[b][i] (dW n_out x n_in, accumulated,
 * summed in b order, added to the old dW once at the end). */
void sp_kern_gemm_gtx_acc(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                          float *dW, int ith, int nth);
/* dX = G * W: dX[b][i] = sum_o G[b][o] * W[o][i] (dX B x n_in, overwritten, summed in o order). */
void sp_kern_gemm_gw(size_t B, size_t n_in, size_t n_out, const float *G, const float *W, float *dX,
                     int ith, int nth);

/* Convenience forms for callers outside a parallel region: open one
 * `omp parallel` of n_threads (<= 0: OpenMP's default) and run the slices. */
void sp_kern_gemm_xwt_omp(size_t B, size_t n_in, size_t n_out, const float *X, const float *W,
                          float *S, int n_threads);
void sp_kern_gemm_gtx_acc_omp(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                              float *dW, int n_threads);
void sp_kern_gemm_gw_omp(size_t B, size_t n_in, size_t n_out, const float *G, const float *W,
                         float *dX, int n_threads);

/* Refs (whole output, scalar, fmaf in the stated order) and explicit variants. */
void sp_kern_gemm_xwt_ref(size_t B, size_t n_in, size_t n_out, const float *X, const float *W,
                          float *S);
void sp_kern_gemm_gtx_acc_ref(size_t B, size_t n_in, size_t n_out, const float *G, const float *X,
                              float *dW);
void sp_kern_gemm_gw_ref(size_t B, size_t n_in, size_t n_out, const float *G, const float *W,
                         float *dX);
/* One dot product in the canonical order of S = X W^T (16 lanes, pairwise
 * lane sum; see kernels.c). Every variant of gemm_xwt gives these bits, so the
 * forward pass is the same on every CPU. */
float sp_kern_dot16(const float *x, const float *w, size_t n);
void sp_kern_gemm_xwt_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out, const float *X,
                          const float *W, float *S, int ith, int nth);
void sp_kern_gemm_gtx_acc_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out,
                              const float *G, const float *X, float *dW, int ith, int nth);
void sp_kern_gemm_gw_isa(sp_kern_isa_t isa, size_t B, size_t n_in, size_t n_out, const float *G,
                         const float *W, float *dX, int ith, int nth);

/* ---- 4b. exact integer forward for byte inputs --------------------------
 * S[b][o] = x_scale * w_scale * sum_i X8[b][i] * W8[o][i], the integer sum
 * exact in int32 (n_in <= 65536 keeps it in range for any int8 W8), then one
 * float multiply: S = (float)isum * (x_scale * w_scale). X8 is B x n_in
 * bytes (e.g. raw pixels, x_scale 1/255), W8 is n_out x n_in int8 (e.g. from
 * sp_kern_unpack_row_s8, w_scale 1/15).
 * Every variant gives the same bits as the ref (integer sums are exact). */
void sp_kern_gemm_u8s8(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                       float x_scale, float w_scale, float *S, int ith, int nth);
void sp_kern_gemm_u8s8_ref(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                           float x_scale, float w_scale, float *S);
void sp_kern_gemm_u8s8_omp(size_t B, size_t n_in, size_t n_out, const uint8_t *X8, const int8_t *W8,
                           float x_scale, float w_scale, float *S, int n_threads);

/* Inputs as bytes for the u8 x s8 GEMM: X8[k] = p, the nearest integer of
 * X[k] * divisor clamped to 0..255 (NaN gives 0). Returns how many X[k] are
 * NOT exactly (float)p / divisor (0: the byte path sees exactly the float
 * inputs, e.g. pixels stored as p / 255.0f with divisor 255). */
size_t sp_kern_inputs_to_u8(const float *X, size_t n, float divisor, uint8_t *X8);
size_t sp_kern_inputs_to_u8_ref(const float *X, size_t n, float divisor, uint8_t *X8);

/* Per-neuron scales: S[b][o] = (float)isum * row_scale[o] (row_scale has
 * n_out entries, e.g. x_scale * gain_o / (n_present_o * (2^b - 1))).
 * Bit-identical to its ref for any variant and thread count. */
void sp_kern_gemm_u8s8_rows(size_t B, size_t n_in, size_t n_out, const uint8_t *X8,
                            const int8_t *W8, const float *row_scale, float *S, int ith, int nth);
void sp_kern_gemm_u8s8_rows_ref(size_t B, size_t n_in, size_t n_out, const uint8_t *X8,
                                const int8_t *W8, const float *row_scale, float *S);

/* Index of the first NaN or infinity among v[0..n), n when every value is
 * finite. Tests the exponent bits (all ones: exactly the NaNs and
 * infinities), so the answer holds under any floating-point flags; the
 * all-finite case is one branch-free vectorised pass, and only a hit pays
 * for a second, early-exit one. */
size_t sp_kern_first_nonfinite(const float *v, size_t n);

/* The slice [*lo, *hi) of n items that thread ith of nth owns: blocks of
 * `align` items spread as evenly as possible, in order; only the end of the
 * whole range can be a partial block. Slices may be empty. */
void sp_kern_split(size_t n, size_t align, int ith, int nth, size_t *lo, size_t *hi);

#endif
