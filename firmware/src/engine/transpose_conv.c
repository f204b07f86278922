//! TRANSPOSE_CONV int8 (NHWC, batch 1, OHWI filter) as a gather: each output pixel sums
//! the taps whose input pixel lands on it, with the same integers TFLM's scatter into an
//! int32 scratch adds up (integer sums do not depend on their order), then the bias and
//! the per-channel requantization. No scratch buffer.
#include "aiot/fixedpoint.h"

#include <stddef.h>

aiot_status_t aiot_transpose_conv_s8(const aiot_transpose_conv_params_t *p, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias, int8_t *output)
{
    if (p == NULL || input == NULL || weights == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0) {
        return AIOT_ERR_PARAM;
    }
    int8_t *y = output;
    for (int32_t oy = 0; oy < (int32_t)p->out_h; ++oy) {
        for (int32_t ox = 0; ox < (int32_t)p->out_w; ++ox) {
            for (uint32_t oc = 0; oc < p->out_c; ++oc) {
                int32_t acc = 0;
                for (int32_t fy = 0; fy < (int32_t)p->k_h; ++fy) {
                    // output row oy = iy * stride_h - pad_h + fy
                    const int32_t ty = oy + (int32_t)p->pad_h - fy;
                    if (ty < 0 || ty % (int32_t)p->stride_h != 0 || ty / (int32_t)p->stride_h >= (int32_t)p->in_h) {
                        continue;
                    }
                    const int32_t iy = ty / (int32_t)p->stride_h;
                    for (int32_t fx = 0; fx < (int32_t)p->k_w; ++fx) {
                        const int32_t tx = ox + (int32_t)p->pad_w - fx;
                        if (tx < 0 || tx % (int32_t)p->stride_w != 0 ||
                            tx / (int32_t)p->stride_w >= (int32_t)p->in_w) {
                            continue;
                        }
                        const int32_t ix = tx / (int32_t)p->stride_w;
                        const int8_t *x = input + ((size_t)iy * p->in_w + (size_t)ix) * p->in_c;
                        const int8_t *w = weights + (((size_t)oc * p->k_h + (size_t)fy) * p->k_w + (size_t)fx) * p->in_c;
                        for (uint32_t ic = 0; ic < p->in_c; ++ic) {
                            acc += ((int32_t)x[ic] + p->input_offset) * (int32_t)w[ic];
                        }
                    }
                }
                if (bias != NULL) {
                    acc += bias[oc];
                }
                *y++ = aiot_fp_requant(&p->rq, oc, acc);
            }
        }
    }
    return AIOT_OK;
}
