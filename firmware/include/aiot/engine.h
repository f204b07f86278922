//! Interpreter-free int8 kernels called straight-line by generated model code.
//! Arithmetic is TFLite Micro's reference arithmetic, so outputs match it bit for bit;
//! everything TFLM derives at run time (multipliers, shifts, folded biases, padding,
//! activation ranges) is computed by the code generator and passed in the param structs.
#ifndef AIOT_ENGINE_H
#define AIOT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AIOT_OK = 0,
    AIOT_ERR_NULL = -1,      //!< a required pointer was NULL
    AIOT_ERR_PARAM = -2,     //!< an inconsistent parameter (zero size, bad shift...)
} aiot_status_t;

//! One channel's requantization in the fast form. The generator emits it only when it
//! has proved, from the weights and bias, that every accumulator of the layer satisfies
//! |acc| < 2^30 for any int8 input, and that the channel's shift is <= -1. Then
//! SRDHM(acc, m) == SMMULR(2 * acc, m) exactly, and the rounding right shift by r is
//! an add and two shifts: the same integers as TFLM's double rounding (fixedpoint.h).
typedef struct {
    int32_t multiplier;  //!< Q31 significand from QuantizeMultiplier (>= 0)
    int32_t pre_shift;   //!< r - 1 for the rounding right shift r = -shift (0..30)
} aiot_rq_ch_t;

//! Output requantization shared by the matmul-like kernels. The tables hold one entry
//! per output channel when per_channel is set, a single entry otherwise. Either `fast`
//! is set, with one entry per output channel and per_channel = 1 (multiplier and shift
//! may then be NULL), or multiplier and shift are.
typedef struct {
    const int32_t *multiplier;  //!< Q31 significands from QuantizeMultiplier
    const int32_t *shift;       //!< exponents (>0: left shift, <0: rounding right shift)
    int32_t output_offset;      //!< output zero point
    int32_t act_min;            //!< fused activation clamp, in output units
    int32_t act_max;
    uint8_t per_channel;
    const aiot_rq_ch_t *fast;   //!< non-NULL: the proven fast form (see aiot_rq_ch_t)
} aiot_requant_t;

//! Requantize one accumulator of output channel `channel`: MBQM, add zero point, clamp.
int8_t aiot_requant_s8(const aiot_requant_t *rq, uint32_t channel, int32_t acc);

//! The same for channels channel..channel+3 into y[0..3].
void aiot_requant4_s8(const aiot_requant_t *rq, uint32_t channel, int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                      int8_t *y);

//! TFLM's MultiplyByQuantizedMultiplier (double rounding: SRDHM then rounding shift).
int32_t aiot_mul_by_quant_mult(int32_t x, int32_t multiplier, int32_t shift);
int32_t aiot_srdhm(int32_t a, int32_t b);
int32_t aiot_rounding_divide_by_pot(int32_t x, int32_t exponent);

//! Packed weights: output channels in groups of four; for each group and each segment of
//! `len` columns, blocks of 16 bytes hold 4 columns of channel 0, 1, 2, 3, then the
//! len % 4 tail columns channel by channel. Channels past the last full group are plain
//! rows. aiot_dot4_s8 adds one segment's four dot products to acc[0..3]; aiot_dot1_s8 is
//! the plain-row dot product; aiot_packed_at reads one weight of a packed segment.
void aiot_dot4_s8(const int8_t *w, const int8_t *x, uint32_t len, int32_t *acc);
int32_t aiot_dot1_s8(const int8_t *w, const int8_t *x, uint32_t len);
int8_t aiot_packed_at(const int8_t *w, uint32_t len, uint32_t c, uint32_t k);

//! Wide weights (`--optimize speed`): int16, output channels in groups of four (the
//! generator pads the last group with zero rows). For each group and segment of `len`
//! columns, blocks of 32 bytes hold, per block of 4 columns k..k+3, for channel 0..3 the
//! pairs (w[k], w[k+2]) and (w[k+1], w[k+3]): exactly the operands SMLAD wants against
//! SXTB16 of an input word, so the inner loop does no unpacking. The len % 4 tail columns
//! follow channel by channel. aiot_dot4_s16w adds one segment's four dot products to
//! acc[0..3]; aiot_wide_at reads one weight of a wide segment.
void aiot_dot4_s16w(const int16_t *w, const int8_t *x, uint32_t len, int32_t *acc);
int16_t aiot_wide_at(const int16_t *w, uint32_t len, uint32_t c, uint32_t k);

typedef struct {
    uint16_t batches;
    uint16_t in_features;
    uint16_t out_features;
    aiot_requant_t rq;
} aiot_fc_params_t;

//! out[b][o] = requant(sum_k w[o][k] * in[b][k] + bias[o]).
//! The caller folds -input_zero_point * sum_k w[o][k] into bias (so bias is never NULL),
//! weights are [out_features][in_features] packed (see above), zero point 0 (symmetric).
aiot_status_t aiot_fully_connected_s8(const aiot_fc_params_t *p, const int8_t *input, const int8_t *weights,
                                      const int32_t *bias, int8_t *output);
//! Same with wide int16 weights (see aiot_dot4_s16w): out_features rounded up to a
//! multiple of 4 rows in `weights`, bias has out_features entries.
aiot_status_t aiot_fully_connected_s8_wide(const aiot_fc_params_t *p, const int8_t *input, const int16_t *weights,
                                           const int32_t *bias, int8_t *output);

typedef struct {
    uint16_t in_h, in_w, in_c;
    uint16_t out_h, out_w, out_c;
    uint16_t k_h, k_w;
    uint16_t stride_h, stride_w;
    uint16_t dil_h, dil_w;
    int16_t pad_top, pad_left;
    uint16_t depth_multiplier;  //!< depthwise only
    uint16_t seg_len;           //!< conv2d: packed columns per kernel row, k_w*in_c rounded up
                                //!< to 4 with zero weights (lets border-free pixels read whole words)
    int32_t input_zero_point;   //!< value a tap in the padding reads
    aiot_requant_t rq;
    //! The bias before the zero-point fold (out_c entries), or NULL. With it, a pixel
    //! whose window crosses the border sums w * (x - zero point) over its taps inside
    //! the image only (TFLM's own arithmetic), at SIMD speed; without it, it reads the
    //! padding as the zero point one tap at a time.
    const int32_t *border_bias;
} aiot_conv_params_t;

//! NHWC conv, batch 1. filter is [out_c][k_h][k_w][in_c], packed per channel group with one
//! segment of k_w*in_c columns per kernel row; bias has out_c entries with
//! -input_zero_point * sum(filter[c]) folded in. TFLM skips padding taps; reading them as
//! the zero point against the folded bias gives the same integers.
aiot_status_t aiot_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                             const int32_t *bias, int8_t *output);
//! Same with wide int16 filters: out_c rounded up to a multiple of 4 zero-padded rows,
//! one wide segment of seg_len columns per kernel row.
aiot_status_t aiot_conv2d_s8_wide(const aiot_conv_params_t *p, const int8_t *input, const int16_t *filter,
                                  const int32_t *bias, int8_t *output);
//! NHWC depthwise conv, batch 1. filter is [1][k_h][k_w][out_c] (not packed),
//! out_c = in_c * depth_multiplier; bias folded the same way as aiot_conv2d_s8.
aiot_status_t aiot_depthwise_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                       const int32_t *bias, int8_t *output);
//! Same with wide int16 filters (`--optimize speed`, depth_multiplier 1 only): per group of
//! four channels c..c+3 (out_c rounded down to 4) and per tap (ky, kx) in order, the pairs
//! (w[c], w[c+2]) and (w[c+1], w[c+3]): the halves SMLABB/SMLATT take against SXTB16 of
//! the input word; then the out_c % 4 tail channels, per tap, channel by channel.
aiot_status_t aiot_depthwise_conv2d_s8_wide(const aiot_conv_params_t *p, const int8_t *input,
                                            const int16_t *filter, const int32_t *bias, int8_t *output);

typedef struct {
    uint16_t in_h, in_w, channels;
    uint16_t out_h, out_w;
    uint16_t k_h, k_w;
    uint16_t stride_h, stride_w;
    int16_t pad_top, pad_left;
    int32_t act_min, act_max;
} aiot_pool_params_t;

//! NHWC pooling, batch 1; input and output share scale and zero point (TFLM requires it).
aiot_status_t aiot_avg_pool_s8(const aiot_pool_params_t *p, const int8_t *input, int8_t *output);
aiot_status_t aiot_max_pool_s8(const aiot_pool_params_t *p, const int8_t *input, int8_t *output);

//! Per-element requantize: out = clamp(out_zp + MBQM(in - in_zp, multiplier, shift)).
//! Serves QUANTIZE (int8 -> int8), RELU and RELU6 (act range set by the generator).
//! output may equal input (in place).
typedef struct {
    uint32_t size;
    int32_t input_zero_point;
    int32_t multiplier;
    int32_t shift;
    int32_t output_zero_point;
    int32_t act_min, act_max;
} aiot_requantize_params_t;
aiot_status_t aiot_requantize_s8(const aiot_requantize_params_t *p, const int8_t *input, int8_t *output);

//! Clamp only (no rescale): RELU6 and friends when TFLM keeps the input scale.
aiot_status_t aiot_clamp_s8(uint32_t size, int32_t lo, int32_t hi, const int8_t *input, int8_t *output);

//! Float <-> int8 at a graph boundary (TFLM AffineQuantize / Dequantize).
aiot_status_t aiot_quantize_f32_s8(uint32_t size, float scale, int32_t zero_point, const float *input,
                                   int8_t *output);
aiot_status_t aiot_dequantize_s8_f32(uint32_t size, float scale, int32_t zero_point, const int8_t *input,
                                     float *output);
//! The same at the boundary of a 16x8 model (float32 <-> int16).
aiot_status_t aiot_quantize_f32_s16(uint32_t size, float scale, int32_t zero_point, const float *input,
                                    int16_t *output);
aiot_status_t aiot_dequantize_s16_f32(uint32_t size, float scale, int32_t zero_point, const int16_t *input,
                                      float *output);

//! Broadcast shape for the binary ops: 5-D, input strides are 0 along broadcast axes.
#define AIOT_MAX_DIMS 5
typedef struct {
    uint32_t out_dims[AIOT_MAX_DIMS];
    uint32_t in1_strides[AIOT_MAX_DIMS];
    uint32_t in2_strides[AIOT_MAX_DIMS];
    uint8_t broadcast;  //!< 0: both inputs have the output's shape (flat loop)
    uint32_t size;      //!< output elements
} aiot_bcast_t;

typedef struct {
    aiot_bcast_t shape;
    int32_t input1_offset, input2_offset;  //!< -zero points
    int32_t left_shift;                    //!< 20 for int8, as TFLM
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t output_offset;
    int32_t act_min, act_max;
    uint8_t subtract;  //!< 1: SUB (in1 - in2), same rescaling as ADD
} aiot_add_params_t;

//! ADD and SUB with TFLM's shared-scale rescaling (inputs shifted left, then rescaled).
aiot_status_t aiot_add_s8(const aiot_add_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *output);

typedef struct {
    aiot_bcast_t shape;
    int32_t input1_offset, input2_offset;
    int32_t output_multiplier, output_shift;
    int32_t output_offset;
    int32_t act_min, act_max;
} aiot_mul_params_t;
aiot_status_t aiot_mul_s8(const aiot_mul_params_t *p, const int8_t *in1, const int8_t *in2, int8_t *output);

//! TRANSPOSE_CONV, NHWC batch 1, weights [out_c][k_h][k_w][in_c] as in the file; bias may
//! be NULL. pad_h/pad_w as TFLM computes them from the output size.
typedef struct {
    uint16_t in_h, in_w, in_c;
    uint16_t out_h, out_w, out_c;
    uint16_t k_h, k_w;
    uint16_t stride_h, stride_w;
    uint16_t pad_h, pad_w;
    int32_t input_offset;  //!< -input zero point
    aiot_requant_t rq;
} aiot_transpose_conv_params_t;
aiot_status_t aiot_transpose_conv_s8(const aiot_transpose_conv_params_t *p, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias, int8_t *output);
//! The same by output phase over wide weights (speed mode). Sub-row s is the taps of one
//! phase (py, px) and one fy = py + j * stride_h, from the last fx of the phase down to
//! px: its weights, at weights + offset[s], are the [out_c][ni * in_c] matrix in
//! aiot_dot4_wide's layout (groups of four output channels, the last zero-padded; ni =
//! ceil((k_w - px) / stride_w)); phase py * stride_w + px owns sub-rows first[ph] up to
//! first[ph + 1], j rising. row_bias[s][4 * ceil(out_c / 4)] = input_offset x the sub-row's
//! weight sums; bias [out_c] (zeros when the layer has none). A phase may read at most
//! AIOT_TCONV_MAX_ROWS sub-rows and AIOT_TCONV_PATCH input bytes per pixel (its stack copy
//! at the edges), else AIOT_ERR_PARAM: the generator keeps the int8 kernel for those.
#define AIOT_TCONV_MAX_ROWS 16u
#define AIOT_TCONV_PATCH 768u
typedef struct {
    const uint16_t *first;   //!< [stride_h * stride_w + 1]
    const uint32_t *offset;  //!< [sub-rows], in int16 weights
} aiot_tconv_rows_t;
aiot_status_t aiot_transpose_conv_s8_wide(const aiot_transpose_conv_params_t *p, const aiot_tconv_rows_t *rows,
                                          const int8_t *input, const int16_t *weights, const int32_t *row_bias,
                                          const int32_t *bias, int8_t *output);
//! The same over packed int8 weights (size mode): each sub-row's matrix in aiot_dot4_s8's
//! layout (pack_weights: blocks of four output channels, the out_c % 4 last rows plain).
aiot_status_t aiot_transpose_conv_s8_packed(const aiot_transpose_conv_params_t *p, const aiot_tconv_rows_t *rows,
                                            const int8_t *input, const int8_t *weights, const int32_t *row_bias,
                                            const int32_t *bias, int8_t *output);

//! SVDF as TFLM's integer kernel (EvalIntegerSvdfReference): the state (batches x filters x
//! memory, int8 or, with wide_state, int16 like the time weights) shifts left by one, each
//! filter's feature dot product (input - input zero point) is rescaled (m1, s1) into its
//! newest slot with the state zero point, clamped to the state type; each unit sums its
//! rank filters' time dot products (state - state zero point), plus the bias (may be NULL),
//! rescaled (m2, s2) to int8. No fused activation: TFLM's int8 kernel applies none.
typedef struct {
    uint16_t batches, input_size, filters, rank, memory;
    uint8_t wide_state;
    int32_t input_zero_point, state_zero_point, output_zero_point;
    int32_t m1, s1, m2, s2;
} aiot_svdf_params_t;
aiot_status_t aiot_svdf_s8(const aiot_svdf_params_t *p, const int8_t *input, const int8_t *weights_feature,
                           const void *weights_time, const int32_t *bias, void *state, int8_t *output);

//! UNIDIRECTIONAL_SEQUENCE_LSTM, int8 activations and weights (per tensor), int32 biases,
//! int16 cell state: tflite-micro's integer kernel. Each gate: (input - input zero point) x
//! its input weights + its bias, requantized to Q3.12 and clamped to int16, plus (hidden -
//! hidden zero point) x its recurrent weights requantized the same way, added with int16
//! saturation, then sigmoid (the cell gate: tanh; the only one tflite-micro runs) to Q0.15.
//! cell = forget x cell (forget_*) + input x cell gate (input_*), each clamped to int16, the
//! sum saturated, then clipped to +-cell_clip when clip is set; hidden = output gate x
//! tanh(cell) (tanh_* rescale the cell to the table's input, as aiot_lut16_params_t),
//! requantized (hidden_*) plus the hidden zero point, clamped to int8, and copied to the
//! output at each step. input [batches][steps][n_input] ([steps][batches][n_input] with
//! time_major), output likewise with n_cell; hidden (int8) and cell (int16) hold
//! [batches][n_cell] across calls; scratch holds 4 x n_cell int16.
enum { AIOT_LSTM_INPUT = 0, AIOT_LSTM_FORGET = 1, AIOT_LSTM_CELL = 2, AIOT_LSTM_OUTPUT = 3 };
typedef struct {
    const int8_t *input_weights;      //!< [n_cell][n_input]
    const int8_t *recurrent_weights;  //!< [n_cell][n_cell]
    const int32_t *bias;              //!< [n_cell]
    int32_t input_multiplier, input_shift;
    int32_t recurrent_multiplier, recurrent_shift;
} aiot_lstm_gate_t;
typedef struct {
    uint16_t batches, steps, n_input, n_cell;
    uint8_t time_major, clip;
    int16_t cell_clip;
    int32_t input_zero_point, hidden_zero_point;
    aiot_lstm_gate_t gates[4];  //!< AIOT_LSTM_INPUT, _FORGET, _CELL, _OUTPUT
    int32_t forget_multiplier, forget_shift;
    int32_t input_multiplier, input_shift;
    int32_t hidden_multiplier, hidden_shift;
    int32_t tanh_multiplier, tanh_shift;
} aiot_lstm_params_t;
aiot_status_t aiot_lstm_s8(const aiot_lstm_params_t *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                           int16_t *scratch, int8_t *output);
//! The same with the gates' dot products over wide weights (speed mode), per gate (indexed
//! like gates[]): each [n_cell][n_input] and [n_cell][n_cell] matrix in aiot_dot4_wide's
//! layout (groups of four cells, the last zero-padded), and the biases with the zero points
//! folded in, 4 * ceil(n_cell / 4) each: input_bias = bias - input zero point x the input
//! weights' row sums, recurrent_bias = -hidden zero point x the recurrent weights' row sums.
//! The int8 weights in p->gates are not read (may be NULL); the multipliers are.
typedef struct {
    const int16_t *input_weights, *recurrent_weights;
    const int32_t *input_bias, *recurrent_bias;
} aiot_lstm_wide_gate_t;
aiot_status_t aiot_lstm_s8_wide(const aiot_lstm_params_t *p, const aiot_lstm_wide_gate_t *wide, const int8_t *input,
                                int8_t *hidden, int16_t *cell, int16_t *scratch, int8_t *output);

//! MAXIMUM (is_max = 1) and MINIMUM of raw int8 values, broadcasting; inputs and output
//! share one quantization (the converter's rule), as TFLM assumes.
aiot_status_t aiot_min_max_s8(const aiot_bcast_t *shape, uint8_t is_max, const int8_t *in1, const int8_t *in2,
                              int8_t *output);

//! TRANSPOSE and STRIDED_SLICE: `walk` has the output's dims and, as in1_strides, the
//! input steps along each (TRANSPOSE: the input's strides in the permuted order; a slice:
//! stride times the input's stride, from `input` already at the first element).
aiot_status_t aiot_transpose_s8(const aiot_bcast_t *walk, const int8_t *input, int8_t *output);

//! STRIDED_SLICE with negative strides: `walk` as above with each step stored modulo 2^32
//! (a negative step as its two's complement), `first` the input offset of the first element.
aiot_status_t aiot_strided_slice_s8(const aiot_bcast_t *walk, uint32_t first, const int8_t *input, int8_t *output);

//! MEAN over the middle axis of a tensor viewed as [outer][reduce][inner], TFLM's
//! integer QuantizedMeanOrSum: the generator folds 1/reduce into multiplier/shift.
typedef struct {
    uint32_t outer, reduce, inner;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
} aiot_mean_params_t;
aiot_status_t aiot_mean_s8(const aiot_mean_params_t *p, const int8_t *input, int8_t *output);

//! PAD of a tensor viewed as 4-D [d0][d1][d2][d3]; pad_value is the output zero point.
typedef struct {
    uint32_t in_dims[4];
    uint32_t before[4];
    uint32_t after[4];
    int8_t pad_value;
} aiot_pad_params_t;
aiot_status_t aiot_pad_s8(const aiot_pad_params_t *p, const int8_t *input, int8_t *output);

//! MIRROR_PAD of a tensor viewed as 4-D: outside the input, each axis reads its mirror
//! image (offset 1: REFLECT, the edge is not repeated; offset 0: SYMMETRIC, it is).
typedef struct {
    uint32_t in_dims[4];
    uint32_t before[4];
    uint32_t after[4];
    uint8_t offset;
} aiot_mirror_pad_params_t;
aiot_status_t aiot_mirror_pad_s8(const aiot_mirror_pad_params_t *p, const int8_t *input, int8_t *output);

//! CONCATENATION of same-scale int8 tensors viewed as [outer][axis_size_i * inner].
aiot_status_t aiot_concat_s8(uint32_t outer, uint32_t num_inputs, const int8_t *const *inputs,
                             const uint32_t *copy_sizes, int8_t *output);

//! LOGISTIC / TANH with TFLM's fixed-point arithmetic (gemmlowp tanh/logistic).
typedef struct {
    uint32_t size;
    int32_t input_zero_point;
    int32_t input_range_radius;
    int32_t input_multiplier;
    int32_t input_left_shift;
} aiot_sigmoid_params_t;
aiot_status_t aiot_logistic_s8(const aiot_sigmoid_params_t *p, const int8_t *input, int8_t *output);
aiot_status_t aiot_tanh_s8(const aiot_sigmoid_params_t *p, const int8_t *input, int8_t *output);

//! LEAKY_RELU as TFLM's QuantizeLeakyRelu: x - input zero point, rescaled by the identity
//! multiplier where >= 0 and by the alpha one where < 0, plus the output zero point.
typedef struct {
    uint32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t identity_multiplier, identity_shift;
    int32_t alpha_multiplier, alpha_shift;
} aiot_leaky_relu_params_t;
aiot_status_t aiot_leaky_relu_s8(const aiot_leaky_relu_params_t *p, const int8_t *input, int8_t *output);

//! SOFTMAX over the last axis with TFLM's fixed-point exp (output scale 1/256, zp -128).
typedef struct {
    uint32_t outer, depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} aiot_softmax_params_t;
aiot_status_t aiot_softmax_s8(const aiot_softmax_params_t *p, const int8_t *input, int8_t *output);

//! ---- The 16x8 mode: int16 activations (zero point 0), int8 weights -----------------
//! TFLM's reference arithmetic for int16 tensors: no zero points (the converter makes
//! int16 activations symmetric), results clamped to the int16 activation range.

//! Requantization of a 16x8 matmul-like layer. acc64 = 1 (an int64 bias, the converter's
//! default): an int64 accumulator and TFLM's 64-bit MultiplyByQuantizedMultiplier (the
//! multiplier rounded to 16 bits, one rounding shift); acc64 = 0 (an int32 bias or none,
//! CONV_2D only): an int32 accumulator (wrapping as TFLM's does) and the int32 form.
typedef struct {
    const int32_t *multiplier;  //!< Q31 significands, one per channel (per_channel) or one
    const int32_t *shift;
    int32_t act_min, act_max;   //!< int16 activation clamp
    uint8_t per_channel;
    uint8_t acc64;
} aiot_requant16_t;

//! TFLM's MultiplyByQuantizedMultiplier for an int64 accumulator.
int32_t aiot_mul_by_quant_mult64(int64_t x, int32_t multiplier, int32_t shift);

//! CONV_2D (depthwise = 0) and DEPTHWISE_CONV_2D (depthwise = 1) with int16 input and
//! output, NHWC batch 1, filters as in the file (conv [out_c][k_h][k_w][in_c], depthwise
//! [1][k_h][k_w][out_c]); padding taps are skipped. FULLY_CONNECTED is the 1x1 case with
//! in_h = batches, in_w = 1. bias has out_c entries (int32 ones widened) or is NULL.
//! `filter` is int8 as in the file, or (wide = 1, `--optimize speed`, not depthwise) the
//! same weights widened to int16, which DSP cores multiply two at a time.
typedef struct {
    aiot_conv_params_t geom;  //!< the shape fields (in_h .. depth_multiplier); the int8 ones unused
    uint8_t depthwise;
    aiot_requant16_t rq;
    uint8_t wide;
} aiot_conv16_params_t;
aiot_status_t aiot_conv2d_s16(const aiot_conv16_params_t *p, const int16_t *input, const void *filter,
                              const int64_t *bias, int16_t *output);

//! ADD/SUB and MUL of int16 tensors: the int8 parameter structs, TFLM's left shift of 15
//! for ADD, int16 clamps.
aiot_status_t aiot_add_s16(const aiot_add_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *output);
aiot_status_t aiot_mul_s16(const aiot_mul_params_t *p, const int16_t *in1, const int16_t *in2, int16_t *output);

//! Pooling of int16 tensors (the int8 parameters, int16 clamps).
aiot_status_t aiot_avg_pool_s16(const aiot_pool_params_t *p, const int16_t *input, int16_t *output);
aiot_status_t aiot_max_pool_s16(const aiot_pool_params_t *p, const int16_t *input, int16_t *output);

//! QUANTIZE between int16 and int8/int16 tensors (TFLM Requantize): in16 / out16 say
//! whether input / output elements are int16 (else int8); the clamp is the output type's.
aiot_status_t aiot_requantize_x16(const aiot_requantize_params_t *p, uint8_t in16, const void *input, uint8_t out16,
                                  void *output);

//! LOGISTIC and TANH of int16 tensors (zero point 0, output scale 2^-15), TFLM's table
//! interpolation: the input times multiplier, rounding right shift by left_shift (the
//! generator computes both as TFLM's Prepare does; multiplier 0 marks a power-of-two scale).
typedef struct {
    uint32_t size;
    int32_t multiplier;
    int32_t left_shift;
} aiot_lut16_params_t;
aiot_status_t aiot_logistic_s16(const aiot_lut16_params_t *p, const int16_t *input, int16_t *output);
aiot_status_t aiot_tanh_s16(const aiot_lut16_params_t *p, const int16_t *input, int16_t *output);

//! SOFTMAX of int16 tensors over the last axis (output scale 2^-15, zero point 0): the
//! difference to the row's maximum rescaled so [-65535, 0] spans [-10, 0], exp and the
//! reciprocal of the sum from TFLM's two 513-entry tables (filled by the generator).
typedef struct {
    uint32_t outer, depth;
    int32_t input_multiplier;
    int32_t input_left_shift;
    const int16_t *exp_lut;    //!< exp over [-10, 0], Q0.15 in [-1, 1]
    const int16_t *recip_lut;  //!< 1 / (1 + x) over [0, 1]
} aiot_softmax16_params_t;
aiot_status_t aiot_softmax_s16(const aiot_softmax16_params_t *p, const int16_t *input, int16_t *output);

//! LEAKY_RELU, RELU6 (a clamp) and MAXIMUM/MINIMUM of int16 tensors: the int8 parameters,
//! int16 clamps.
aiot_status_t aiot_leaky_relu_s16(const aiot_leaky_relu_params_t *p, const int16_t *input, int16_t *output);
aiot_status_t aiot_clamp_s16(uint32_t size, int32_t lo, int32_t hi, const int16_t *input, int16_t *output);
aiot_status_t aiot_mean_s16(const aiot_mean_params_t *p, const int16_t *input, int16_t *output);
aiot_status_t aiot_min_max_s16(const aiot_bcast_t *shape, uint8_t is_max, const int16_t *in1, const int16_t *in2,
                               int16_t *output);

#ifdef __cplusplus
}
#endif
#endif
