//! CONV_2D and DEPTHWISE_CONV_2D int8, NHWC, batch 1, TFLM reference arithmetic
//! (per-channel requantization, taps in the padding skipped, dilation supported).
#include "aiot/engine.h"

#include <stddef.h>

static int8_t requant_one(const aiot_requant_t *rq, uint32_t ch, int32_t acc)
{
    const uint32_t c = rq->per_channel ? ch : 0;
    acc = aiot_mul_by_quant_mult(acc, rq->multiplier[c], rq->shift[c]) + rq->output_offset;
    acc = acc < rq->act_min ? rq->act_min : acc;
    acc = acc > rq->act_max ? rq->act_max : acc;
    return (int8_t)acc;
}

static int check(const aiot_conv_params_t *p, const void *in, const void *f, const void *b, const void *out)
{
    if (p == NULL || in == NULL || f == NULL || b == NULL || out == NULL) {
        return AIOT_ERR_NULL;
    }
    if (p->stride_h == 0 || p->stride_w == 0 || p->dil_h == 0 || p->dil_w == 0) {
        return AIOT_ERR_PARAM;
    }
    return AIOT_OK;
}

aiot_status_t aiot_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                             const int32_t *bias, int8_t *output)
{
    const int rc = check(p, input, filter, bias, output);
    if (rc != AIOT_OK) {
        return (aiot_status_t)rc;
    }
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t off = p->input_offset;
    int8_t *y = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            for (uint32_t oc = 0; oc < p->out_c; ++oc) {
                const int8_t *w_oc = filter + (size_t)oc * p->k_h * p->k_w * in_c;
                int32_t acc = bias[oc];
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        const int8_t *x = input + ((size_t)iy * in_w + ix) * in_c;
                        const int8_t *w = w_oc + ((size_t)ky * p->k_w + kx) * in_c;
                        for (int32_t ic = 0; ic < in_c; ++ic) {
                            acc += (int32_t)w[ic] * ((int32_t)x[ic] + off);
                        }
                    }
                }
                *y++ = requant_one(&p->rq, oc, acc);
            }
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_depthwise_conv2d_s8(const aiot_conv_params_t *p, const int8_t *input, const int8_t *filter,
                                       const int32_t *bias, int8_t *output)
{
    const int rc = check(p, input, filter, bias, output);
    if (rc != AIOT_OK) {
        return (aiot_status_t)rc;
    }
    if (p->depth_multiplier == 0 || p->out_c != p->in_c * p->depth_multiplier) {
        return AIOT_ERR_PARAM;
    }
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
    const int32_t off = p->input_offset;
    int8_t *y = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_left;
            for (int32_t oc = 0; oc < out_c; ++oc) {
                const int32_t ic = oc / p->depth_multiplier;
                int32_t acc = bias[oc];
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        const int32_t xv = input[((size_t)iy * in_w + ix) * in_c + ic];
                        const int32_t wv = filter[((size_t)ky * p->k_w + kx) * out_c + oc];
                        acc += wv * (xv + off);
                    }
                }
                *y++ = requant_one(&p->rq, (uint32_t)oc, acc);
            }
        }
    }
    return AIOT_OK;
}
