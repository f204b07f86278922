//! UNIDIRECTIONAL_SEQUENCE_LSTM with int8 activations and weights and an int16 cell state:
//! the integer arithmetic tflite-micro runs for it (its int8 x int8 -> int16 LSTM). Per time
//! step and batch row, each gate is FC(input) + FC(hidden) in Q3.12 (two requantizations,
//! each clamped to int16, then a saturating add), a sigmoid (the cell gate: tanh) to Q0.15; the cell becomes forget x cell + input x cell gate (each product requantized and
//! clamped to int16, the sum saturated, then clipped if the layer has a cell clip); the
//! hidden state becomes output gate x tanh(cell), requantized to int8, and is copied to the
//! output. Rows are independent, so a time-major layer's batch rows are run one by one.
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

// One time step of one row: updates h (n_cell int8) and c (n_cell int16) in place.
static void step(const aiot_lstm_params_t *p, const aiot_lstm_wide_gate_t *wide, const int8_t *x, int8_t *h,
                 int16_t *c, int16_t *scratch)
{
    const uint32_t n = p->n_cell;
    int16_t *forget = scratch, *in = scratch + n, *cell = scratch + 2u * n, *out = scratch + 3u * n;
    const aiot_lut16_params_t unit = {n, 0, 0};  // Q3.12 in, Q0.15 out
    static const uint8_t order[4] = {AIOT_LSTM_FORGET, AIOT_LSTM_INPUT, AIOT_LSTM_CELL, AIOT_LSTM_OUTPUT};
    int16_t *const pre[4] = {forget, in, cell, out};
    for (uint32_t k = 0; k < 4u; k++) {
        const uint32_t gi = order[k];
        if (wide != NULL) {
            gate_preactivation_wide(p, &p->gates[gi], &wide[gi], x, h, pre[k]);
        } else {
            gate_preactivation(p, &p->gates[gi], x, h, pre[k]);
        }
    }
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
    for (uint32_t j = 0; j < n; j++) {
        const int32_t v = aiot_fp_mbqm((int32_t)out[j] * cell[j], p->hidden_multiplier, p->hidden_shift);
        h[j] = (int8_t)clamp(v + p->hidden_zero_point, INT8_MIN, INT8_MAX);
    }
}

static aiot_status_t run(const aiot_lstm_params_t *p, const aiot_lstm_wide_gate_t *wide, const int8_t *input,
                         int8_t *hidden, int16_t *cell, int16_t *scratch, int8_t *output)
{
    const uint32_t B = p->batches, T = p->steps, n_in = p->n_input, n = p->n_cell;
    for (uint32_t b = 0; b < B; b++) {
        int8_t *h = hidden + b * n;
        int16_t *c = cell + b * n;
        for (uint32_t t = 0; t < T; t++) {
            const uint32_t row = p->time_major ? t * B + b : b * T + t;
            step(p, wide, input + row * n_in, h, c, scratch);
            memcpy(output + row * n, h, n);
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
    return run(p, NULL, input, hidden, cell, scratch, output);
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
    return run(p, wide, input, hidden, cell, scratch, output);
}
