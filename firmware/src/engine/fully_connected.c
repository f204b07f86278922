//! FULLY_CONNECTED int8 (per-tensor or per-channel), TFLM reference arithmetic with the
//! input zero-point term pre-folded into the bias and the weights packed by the generator.
#include "aiot/simd.h"

#include <stddef.h>

aiot_status_t aiot_fully_connected_s8(const aiot_fc_params_t *p, const int8_t *input, const int8_t *weights,
                                      const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || bias == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    const uint32_t n_in = p->in_features;
    const uint32_t n_out = p->out_features;
    const uint32_t full = n_out & ~3u;
    const aiot_requant_t rq = p->rq;  // local: the int8 stores could alias the params
    const aiot_rq4_t r4 = aiot_fp_rq4(&rq);
    for (uint32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * n_in;
        int8_t *y = output + (size_t)b * n_out;
        const int8_t *w = weights;
        for (uint32_t o = 0; o < full; o += 4) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
            aiot_dot4_s8(w, x, n_in, acc);
            if (rq.fast != NULL) {
                aiot_fp_requant4_fast(rq.fast + o, &r4, acc[0],
                                      acc[1], acc[2], acc[3], y + o);
            } else {
                aiot_fp_requant4(&rq, o, acc[0], acc[1], acc[2], acc[3], y + o);
            }
            w += 4u * n_in;
        }
        for (uint32_t o = full; o < n_out; ++o) {
            y[o] = aiot_requant_s8(&rq, o, bias[o] + aiot_dot1_s8(w, x, n_in));
            w += n_in;
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_fully_connected_s8_wide(const aiot_fc_params_t *p, const int8_t *input, const int16_t *weights,
                                           const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || bias == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    const uint32_t n_in = p->in_features;
    const uint32_t n_out = p->out_features;
    const uint32_t full = n_out & ~3u;
    // A local copy: stores through the int8 output may alias anything, which would make
    // the compiler reload every requantization field for every output byte.
    const aiot_requant_t rq = p->rq;
    const aiot_rq4_t r4 = aiot_fp_rq4(&rq);
    for (uint32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * n_in;
        int8_t *y = output + (size_t)b * n_out;
        const int16_t *w = weights;
        const int32_t *bp = bias;
        if (rq.fast != NULL) {
            const aiot_rq_ch_t *q = rq.fast;
            for (int8_t *const y_end = y + full; y != y_end; y += 4, bp += 4, q += 4) {
                int32_t acc[4] = {bp[0], bp[1], bp[2], bp[3]};
                w = aiot_dot4_wide(w, x, n_in, acc);
                aiot_fp_requant4_fast(q, &r4, acc[0], acc[1], acc[2], acc[3], y);
            }
        } else {
            for (uint32_t o = 0; o < full; o += 4, bp += 4, y += 4) {
                int32_t acc[4] = {bp[0], bp[1], bp[2], bp[3]};
                w = aiot_dot4_wide(w, x, n_in, acc);
                aiot_fp_requant4(&rq, o, acc[0], acc[1], acc[2], acc[3], y);
            }
        }
        if (full < n_out) {  // the zero-padded rows of the last group are computed, never stored
            int32_t acc[4] = {0, 0, 0, 0};
            (void)aiot_dot4_wide(w, x, n_in, acc);
            for (uint32_t o = full; o < n_out; ++o) {
                *y++ = aiot_requant_s8(&rq, o, acc[o - full] + bias[o]);
            }
        }
    }
    return AIOT_OK;
}
