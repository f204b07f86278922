//! AVERAGE_POOL_2D and MAX_POOL_2D int8 (and int16, the 16x8 mode), NHWC, batch 1. Padding taps are excluded from
//! both the window and the average's divisor, as in TFLM.
#include "aiot/fixedpoint.h"

#include <stddef.h>

typedef struct {
    int32_t y0, y1, x0, x1;
} window_t;

static window_t window(const aiot_pool_params_t *p, int32_t oy, int32_t ox)
{
    window_t w;
    const int32_t iy = oy * p->stride_h - p->pad_top;
    const int32_t ix = ox * p->stride_w - p->pad_left;
    w.y0 = iy < 0 ? 0 : iy;
    w.x0 = ix < 0 ? 0 : ix;
    w.y1 = iy + p->k_h > p->in_h ? p->in_h : iy + p->k_h;
    w.x1 = ix + p->k_w > p->in_w ? p->in_w : ix + p->k_w;
    return w;
}

static int bad(const aiot_pool_params_t *p, const void *input, const void *output)
{
    return p == NULL || input == NULL || output == NULL;
}

// One body per element type (int8, and int16 for the 16x8 mode): TFLM's arithmetic is
// the same, only the tensors' type differs.
#define AIOT_POOL_KERNELS(T, SUFFIX)                                                                              \
    aiot_status_t aiot_avg_pool_##SUFFIX(const aiot_pool_params_t *p, const T *input, T *output)                  \
    {                                                                                                             \
        if (bad(p, input, output)) {                                                                              \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                                               \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                                           \
                const window_t w = window(p, oy, ox);                                                             \
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);                                              \
                for (uint32_t c = 0; c < p->channels; ++c) {                                                      \
                    int32_t acc = 0;                                                                              \
                    for (int32_t y = w.y0; y < w.y1; ++y) {                                                       \
                        for (int32_t x = w.x0; x < w.x1; ++x) {                                                   \
                            acc += input[((size_t)y * p->in_w + x) * p->channels + c];                            \
                        }                                                                                         \
                    }                                                                                             \
                    int32_t avg = 0;                                                                              \
                    if (count > 0) { /* round half away from zero, like TFLM */                                   \
                        avg = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;                    \
                    }                                                                                             \
                    avg = avg < p->act_min ? p->act_min : avg;                                                    \
                    avg = avg > p->act_max ? p->act_max : avg;                                                    \
                    output[((size_t)oy * p->out_w + ox) * p->channels + c] = (T)avg;                              \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }                                                                                                             \
                                                                                                                  \
    aiot_status_t aiot_max_pool_##SUFFIX(const aiot_pool_params_t *p, const T *input, T *output)                  \
    {                                                                                                             \
        if (bad(p, input, output)) {                                                                              \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                                               \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                                           \
                const window_t w = window(p, oy, ox);                                                             \
                for (uint32_t c = 0; c < p->channels; ++c) {                                                      \
                    int32_t m = INT32_MIN;                                                                        \
                    for (int32_t y = w.y0; y < w.y1; ++y) {                                                       \
                        for (int32_t x = w.x0; x < w.x1; ++x) {                                                   \
                            const int32_t v = input[((size_t)y * p->in_w + x) * p->channels + c];                 \
                            m = v > m ? v : m;                                                                    \
                        }                                                                                         \
                    }                                                                                             \
                    m = m < p->act_min ? p->act_min : m;                                                          \
                    m = m > p->act_max ? p->act_max : m;                                                          \
                    output[((size_t)oy * p->out_w + ox) * p->channels + c] = (T)m;                                \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_POOL_KERNELS(int8_t, s8)
AIOT_POOL_KERNELS(int16_t, s16)
