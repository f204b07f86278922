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

// Round half away from zero, like TFLM; an empty window (all padding) averages to 0.
static inline int32_t average(int32_t acc, int32_t count)
{
    if (count <= 0) {
        return 0;
    }
    return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

// One body per pooling and element type (int8, and int16 for the 16x8 mode): TFLM's
// arithmetic is the same, only the reduction and the tensors' type differ. Per output
// element: acc = INIT, STEP for every input value v of the window, then RESULT clamped.
#define AIOT_POOL_KERNEL(NAME, T, INIT, STEP, RESULT)                                                            \
    aiot_status_t NAME(const aiot_pool_params_t *p, const T *input, T *output)                                   \
    {                                                                                                             \
        if (bad(p, input, output)) {                                                                              \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                                               \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                                           \
                const window_t w = window(p, oy, ox);                                                             \
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);                                              \
                (void)count;                                                                                      \
                for (uint32_t c = 0; c < p->channels; ++c) {                                                      \
                    int32_t acc = INIT;                                                                           \
                    for (int32_t y = w.y0; y < w.y1; ++y) {                                                       \
                        for (int32_t x = w.x0; x < w.x1; ++x) {                                                   \
                            const int32_t v = input[((size_t)y * p->in_w + x) * p->channels + c];                 \
                            STEP;                                                                                 \
                        }                                                                                         \
                    }                                                                                             \
                    int32_t r = RESULT;                                                                           \
                    r = r < p->act_min ? p->act_min : r;                                                          \
                    r = r > p->act_max ? p->act_max : r;                                                          \
                    output[((size_t)oy * p->out_w + ox) * p->channels + c] = (T)r;                                \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_POOL_KERNEL(aiot_avg_pool_s8, int8_t, 0, acc += v, average(acc, count))
AIOT_POOL_KERNEL(aiot_max_pool_s8, int8_t, INT32_MIN, acc = v > acc ? v : acc, acc)
AIOT_POOL_KERNEL(aiot_avg_pool_s16, int16_t, 0, acc += v, average(acc, count))
AIOT_POOL_KERNEL(aiot_max_pool_s16, int16_t, INT32_MIN, acc = v > acc ? v : acc, acc)
