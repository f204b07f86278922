//! UNIDIRECTIONAL_SEQUENCE_LSTM with int8 activations and weights and an int16 cell state:
//! the integer arithmetic tflite-micro runs for it (its int8 x int8 -> int16 LSTM). Per time
//! step and batch row, each gate is FC(input) + FC(hidden) in Q3.12 (two requantizations,
//! each clamped to int16, then a saturating add), a sigmoid (the cell gate: tanh) to Q0.15; the cell becomes forget x cell + input x cell gate (each product requantized and
//! clamped to int16, the sum saturated, then clipped if the layer has a cell clip); the
//! hidden state becomes output gate x tanh(cell), requantized to int8, and is copied to the
//! output. Rows are independent, so a time-major layer's batch rows are run one by one.
//! The 16x8 flavour (aiot_lstm_s16): int16 input and hidden state, int64 biases, the gates'
//! fully connected parts in int64 with the 64-bit requantization; the cell arithmetic is shared.
#include "aiot/simd.h"

#include <stddef.h>
#include <string.h>

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

// One gate for one row: Q3.12 pre-activation of every cell into `pre`.
static void gate_preactivation(const aiot_lstm_params_t *p, const aiot_lstm_gate_t *g, const int8_t *x,
                               const int8_t *h, int16_t *pre)
{
    const uint32_t n_in = p->n_input, n_cell = p->n_cell;
    for (uint32_t j = 0; j < n_cell; j++) {
        const int8_t *wi = g->input_weights + j * n_in;
        int32_t acc = g->bias[j];
        for (uint32_t k = 0; k < n_in; k++) {
            acc += (int32_t)wi[k] * ((int32_t)x[k] - p->input_zero_point);
        }
        const int32_t a = clamp(aiot_fp_mbqm(acc, g->input_multiplier, g->input_shift), INT16_MIN, INT16_MAX);
        const int8_t *wr = g->recurrent_weights + j * n_cell;
        acc = 0;
        for (uint32_t k = 0; k < n_cell; k++) {
            acc += (int32_t)wr[k] * ((int32_t)h[k] - p->hidden_zero_point);
        }
        const int32_t r = clamp(aiot_fp_mbqm(acc, g->recurrent_multiplier, g->recurrent_shift), INT16_MIN, INT16_MAX);
        pre[j] = (int16_t)clamp(a + r, INT16_MIN, INT16_MAX);
    }
}

// The same over wide weights (speed mode): four cells per pass of aiot_dot4_wide (SMLAD on
// DSP cores) over the raw input and hidden state, the zero points folded into the biases
// (bias - zero point x row sums, as TFLM's Prepare folds them). Cells past n_cell in the
// last group have zero weights: computed, never stored.
static void gate_preactivation_wide(const aiot_lstm_params_t *p, const aiot_lstm_gate_t *g,
                                    const aiot_lstm_wide_gate_t *wg, const int8_t *x, const int8_t *h, int16_t *pre)
{
    const uint32_t n_in = p->n_input, n_cell = p->n_cell;
    const int16_t *wi = wg->input_weights, *wr = wg->recurrent_weights;
    for (uint32_t j = 0; j < n_cell; j += 4) {
        int32_t a[4] = {wg->input_bias[j], wg->input_bias[j + 1], wg->input_bias[j + 2], wg->input_bias[j + 3]};
        int32_t r[4] = {wg->recurrent_bias[j], wg->recurrent_bias[j + 1], wg->recurrent_bias[j + 2],
                        wg->recurrent_bias[j + 3]};
        wi = aiot_dot4_wide(wi, x, n_in, a);
        wr = aiot_dot4_wide(wr, h, n_cell, r);
        const uint32_t m = n_cell - j < 4u ? n_cell - j : 4u;
        for (uint32_t k = 0; k < m; k++) {
            const int32_t qa = clamp(aiot_fp_mbqm(a[k], g->input_multiplier, g->input_shift), INT16_MIN, INT16_MAX);
            const int32_t qr =
                clamp(aiot_fp_mbqm(r[k], g->recurrent_multiplier, g->recurrent_shift), INT16_MIN, INT16_MAX);
            pre[j + k] = (int16_t)clamp(qa + qr, INT16_MIN, INT16_MAX);
        }
    }
}

// The 16x8 flavour of gate_preactivation: int16 input and hidden state (zero points 0),
// an int64 bias; both parts accumulate in int64 and requantize with TFLM's 64-bit
// MultiplyByQuantizedMultiplier, as its FullyConnected does for int16 x int8 with int64 biases.
static void gate_preactivation16(const aiot_lstm_params_t *p, const aiot_lstm_gate_t *g, const int64_t *bias,
                                 const int16_t *x, const int16_t *h, int16_t *pre)
{
    const uint32_t n_in = p->n_input, n_cell = p->n_cell;
    for (uint32_t j = 0; j < n_cell; j++) {
        const int8_t *wi = g->input_weights + j * n_in;
        int64_t acc = bias[j];
        for (uint32_t k = 0; k < n_in; k++) {
            acc += (int32_t)wi[k] * (int32_t)x[k];
        }
        const int32_t a =
            clamp(aiot_mul_by_quant_mult64(acc, g->input_multiplier, g->input_shift), INT16_MIN, INT16_MAX);
        const int8_t *wr = g->recurrent_weights + j * n_cell;
        acc = 0;
        for (uint32_t k = 0; k < n_cell; k++) {
            acc += (int32_t)wr[k] * (int32_t)h[k];
        }
        const int32_t r =
            clamp(aiot_mul_by_quant_mult64(acc, g->recurrent_multiplier, g->recurrent_shift), INT16_MIN, INT16_MAX);
        pre[j] = (int16_t)clamp(a + r, INT16_MIN, INT16_MAX);
    }
}

// The gates (pre-activations in scratch: forget, input, cell, output) to the new cell state c
// and tanh(c) in the cell gate's place (scratch + 2 n_cell), which it returns; the output
// gate stays at scratch + 3 n_cell. The same for both activation types.
static const int16_t *update_cell(const aiot_lstm_params_t *p, int16_t *c, int16_t *scratch)
{
    const uint32_t n = p->n_cell;
    int16_t *forget = scratch, *in = scratch + n, *cell = scratch + 2u * n, *out = scratch + 3u * n;
    const aiot_lut16_params_t unit = {n, 0, 0};  // Q3.12 in, Q0.15 out
    (void)aiot_logistic_s16(&unit, forget, forget);
    (void)aiot_logistic_s16(&unit, in, in);
    (void)aiot_tanh_s16(&unit, cell, cell);
    (void)aiot_logistic_s16(&unit, out, out);
    for (uint32_t j = 0; j < n; j++) {
        const int32_t kept = clamp(aiot_fp_mbqm((int32_t)forget[j] * c[j], p->forget_multiplier, p->forget_shift),
                                   INT16_MIN, INT16_MAX);
        const int32_t added = clamp(aiot_fp_mbqm((int32_t)in[j] * cell[j], p->input_multiplier, p->input_shift),
                                    INT16_MIN, INT16_MAX);
        int32_t v = clamp(kept + added, INT16_MIN, INT16_MAX);
        if (p->clip) {
            v = clamp(v, -(int32_t)p->cell_clip, p->cell_clip);
        }
        c[j] = (int16_t)v;
    }
    const aiot_lut16_params_t cell_tanh = {n, p->tanh_multiplier, p->tanh_shift};
    (void)aiot_tanh_s16(&cell_tanh, c, cell);  // the cell gate's buffer is free again
    return cell;
}

// The gates' order in scratch (update_cell's) as indices of p->gates.
static const uint8_t ORDER[4] = {AIOT_LSTM_FORGET, AIOT_LSTM_INPUT, AIOT_LSTM_CELL, AIOT_LSTM_OUTPUT};

// One time step of one row: updates h (n_cell int8) and c (n_cell int16) in place; `ctx`
// is the wide gates or NULL.
static void step8(const aiot_lstm_params_t *p, const void *ctx, const void *xv, void *hv, int16_t *c,
                  int16_t *scratch)
{
    const aiot_lstm_wide_gate_t *wide = ctx;
    const int8_t *x = xv;
    int8_t *h = hv;
    const uint32_t n = p->n_cell;
    for (uint32_t k = 0; k < 4u; k++) {
        const uint32_t gi = ORDER[k];
        if (wide != NULL) {
            gate_preactivation_wide(p, &p->gates[gi], &wide[gi], x, h, scratch + k * n);
        } else {
            gate_preactivation(p, &p->gates[gi], x, h, scratch + k * n);
        }
    }
    const int16_t *cell = update_cell(p, c, scratch), *out = scratch + 3u * n;
    for (uint32_t j = 0; j < n; j++) {
        const int32_t v = aiot_fp_mbqm((int32_t)out[j] * cell[j], p->hidden_multiplier, p->hidden_shift);
        h[j] = (int8_t)clamp(v + p->hidden_zero_point, INT8_MIN, INT8_MAX);
    }
}

// The same for int16 h (zero point 0); `ctx` is the four int64 biases.
static void step16(const aiot_lstm_params_t *p, const void *ctx, const void *xv, void *hv, int16_t *c,
                   int16_t *scratch)
{
    const int64_t *const *bias = ctx;
    const int16_t *x = xv;
    int16_t *h = hv;
    const uint32_t n = p->n_cell;
    for (uint32_t k = 0; k < 4u; k++) {
        gate_preactivation16(p, &p->gates[ORDER[k]], bias[ORDER[k]], x, h, scratch + k * n);
    }
    const int16_t *cell = update_cell(p, c, scratch), *out = scratch + 3u * n;
    for (uint32_t j = 0; j < n; j++) {
        const int32_t v = aiot_fp_mbqm((int32_t)out[j] * cell[j], p->hidden_multiplier, p->hidden_shift);
        h[j] = (int16_t)clamp(v, INT16_MIN, INT16_MAX);
    }
}

typedef void (*step_fn)(const aiot_lstm_params_t *p, const void *ctx, const void *x, void *h, int16_t *c,
                        int16_t *scratch);

// Every row and step; `size` is the activations' bytes per value (1: int8, 2: int16).
static aiot_status_t run(const aiot_lstm_params_t *p, step_fn step, const void *ctx, size_t size, const void *input,
                         void *hidden, int16_t *cell, int16_t *scratch, void *output)
{
    const uint32_t B = p->batches, T = p->steps, n_in = p->n_input, n = p->n_cell;
    const uint8_t *in = input;
    uint8_t *hid = hidden, *outp = output;
    for (uint32_t b = 0; b < B; b++) {
        uint8_t *h = hid + (size_t)b * n * size;
        int16_t *c = cell + b * n;
        for (uint32_t t = 0; t < T; t++) {
            const uint32_t row = p->time_major ? t * B + b : b * T + t;
            step(p, ctx, in + (size_t)row * n_in * size, h, c, scratch);
            memcpy(outp + (size_t)row * n * size, h, (size_t)n * size);
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_lstm_s8(const aiot_lstm_params_t *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                           int16_t *scratch, int8_t *output)
{
    if (p == NULL || input == NULL || hidden == NULL || cell == NULL || scratch == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t g = 0; g < 4u; g++) {
        if (p->gates[g].input_weights == NULL || p->gates[g].recurrent_weights == NULL || p->gates[g].bias == NULL) {
            return AIOT_ERR_NULL;
        }
    }
    return run(p, step8, NULL, 1, input, hidden, cell, scratch, output);
}

aiot_status_t aiot_lstm_s8_wide(const aiot_lstm_params_t *p, const aiot_lstm_wide_gate_t *wide, const int8_t *input,
                                int8_t *hidden, int16_t *cell, int16_t *scratch, int8_t *output)
{
    if (p == NULL || wide == NULL || input == NULL || hidden == NULL || cell == NULL || scratch == NULL ||
        output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t g = 0; g < 4u; g++) {
        if (wide[g].input_weights == NULL || wide[g].recurrent_weights == NULL || wide[g].input_bias == NULL ||
            wide[g].recurrent_bias == NULL) {
            return AIOT_ERR_NULL;
        }
    }
    return run(p, step8, wide, 1, input, hidden, cell, scratch, output);
}

aiot_status_t aiot_lstm_s16(const aiot_lstm_params_t *p, const int64_t *const bias[4], const int16_t *input,
                            int16_t *hidden, int16_t *cell, int16_t *scratch, int16_t *output)
{
    if (p == NULL || bias == NULL || input == NULL || hidden == NULL || cell == NULL || scratch == NULL ||
        output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t g = 0; g < 4u; g++) {
        if (p->gates[g].input_weights == NULL || p->gates[g].recurrent_weights == NULL || bias[g] == NULL) {
            return AIOT_ERR_NULL;
        }
    }
    return run(p, step16, bias, 2, input, hidden, cell, scratch, output);
}
