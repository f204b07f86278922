//! FULLY_CONNECTED int8 (per-tensor or per-channel), TFLM reference arithmetic with the
//! input zero-point term pre-folded into the bias by the code generator.
#include "aiot/engine.h"

#include <stddef.h>

aiot_status_t aiot_fully_connected_s8(const aiot_fc_params_t *p, const int8_t *input, const int8_t *weights,
                                      const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || bias == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    const aiot_requant_t *rq = &p->rq;
    const uint32_t n_in = p->in_features;
    for (uint32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * n_in;
        int8_t *y = output + (size_t)b * p->out_features;
        for (uint32_t o = 0; o < p->out_features; ++o) {
            const int8_t *w = weights + (size_t)o * n_in;
            int32_t acc = bias[o];
            for (uint32_t k = 0; k < n_in; ++k) {
                acc += (int32_t)w[k] * (int32_t)x[k];
            }
            const uint32_t c = rq->per_channel ? o : 0;
            acc = aiot_mul_by_quant_mult(acc, rq->multiplier[c], rq->shift[c]) + rq->output_offset;
            acc = acc < rq->act_min ? rq->act_min : acc;
            acc = acc > rq->act_max ? rq->act_max : acc;
            y[o] = (int8_t)acc;
        }
    }
    return AIOT_OK;
}
