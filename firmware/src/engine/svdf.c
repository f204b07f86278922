//! SVDF int8 with TFLM's integer semantics (EvalIntegerSvdfReference), int8 or int16 state
//! and time weights. The per-filter time products are summed straight into each unit (the
//! same int32 sums TFLM's two scratch buffers hold; integer sums do not depend on order).
#include "aiot/fixedpoint.h"

#include <stddef.h>
#include <string.h>

static inline int32_t element(const void *a, uint32_t i, uint8_t wide)
{
    return wide ? (int32_t)((const int16_t *)a)[i] : (int32_t)((const int8_t *)a)[i];
}

aiot_status_t aiot_svdf_s8(const aiot_svdf_params_t *p, const int8_t *input, const int8_t *weights_feature,
                           const void *weights_time, const int32_t *bias, void *state, int8_t *output)
{
    if (p == NULL || input == NULL || weights_feature == NULL || weights_time == NULL || state == NULL ||
        output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->rank == 0 || p->filters % p->rank != 0 || p->memory == 0) {
        return AIOT_ERR_PARAM;
    }
    const uint8_t wide = p->wide_state;
    const uint32_t esize = wide ? 2u : 1u;
    const uint32_t filters = p->filters, memory = p->memory, units = filters / p->rank;
    const uint32_t n = (uint32_t)p->batches * filters * memory;
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    memmove(state, (uint8_t *)state + esize, (size_t)(n - 1u) * esize);  // the oldest slot drops out
    for (uint32_t b = 0; b < p->batches; b++) {
        const int8_t *x = input + b * p->input_size;
        for (uint32_t f = 0; f < filters; f++) {
            const int8_t *w = weights_feature + f * p->input_size;
            int32_t acc = 0;
            for (uint32_t c = 0; c < p->input_size; c++) {
                acc += (int32_t)w[c] * ((int32_t)x[c] - p->input_zero_point);
            }
            acc = aiot_fp_mbqm(acc, p->m1, p->s1) + p->state_zero_point;
            acc = acc < lo ? lo : acc > hi ? hi : acc;
            const uint32_t newest = (b * filters + f) * memory + memory - 1u;
            if (wide) {
                ((int16_t *)state)[newest] = (int16_t)acc;
            } else {
                ((int8_t *)state)[newest] = (int8_t)acc;
            }
        }
        for (uint32_t u = 0; u < units; u++) {
            int32_t acc = bias != NULL ? bias[u] : 0;
            for (uint32_t f = u * p->rank; f < (u + 1u) * p->rank; f++) {
                const uint32_t row = (b * filters + f) * memory;
                for (uint32_t j = 0; j < memory; j++) {
                    acc += element(weights_time, f * memory + j, wide) *
                           (element(state, row + j, wide) - p->state_zero_point);
                }
            }
            acc = aiot_fp_mbqm(acc, p->m2, p->s2) + p->output_zero_point;
            output[b * units + u] = (int8_t)(acc < INT8_MIN ? INT8_MIN : acc > INT8_MAX ? INT8_MAX : acc);
        }
    }
    return AIOT_OK;
}
