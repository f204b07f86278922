//! Data-movement and reduction kernels: MEAN, PAD, MIRROR_PAD, CONCATENATION
//! (and PACK), SPLIT (and SPLIT_V, UNPACK) (no rescaling except
//! MEAN's, which follows TFLM's integer QuantizedMeanOrSum).
#include "aiot/fixedpoint.h"

#include <stddef.h>
#include <string.h>

// MEAN of int8 and (16x8) int16 tensors: TFLM's integer QuantizedMeanOrSum, one body.
#define AIOT_MEAN_KERNEL(T, SUFFIX, LO, HI)                                                                      \
    aiot_status_t aiot_mean_##SUFFIX(const aiot_mean_params_t *p, const T *input, T *output)                     \
    {                                                                                                             \
        if (p == NULL || input == NULL || output == NULL) {                                                       \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        if (p->reduce == 0) {                                                                                     \
            return AIOT_ERR_PARAM;                                                                                \
        }                                                                                                         \
        const int32_t zp_term = p->input_zero_point * (int32_t)p->reduce;                                         \
        for (uint32_t o = 0; o < p->outer; ++o) {                                                                 \
            const T *base = input + (size_t)o * p->reduce * p->inner;                                             \
            for (uint32_t i = 0; i < p->inner; ++i) {                                                             \
                int32_t sum = 0;                                                                                  \
                for (uint32_t r = 0; r < p->reduce; ++r) {                                                        \
                    sum += base[(size_t)r * p->inner + i];                                                        \
                }                                                                                                 \
                int32_t v = aiot_fp_mbqm(sum - zp_term, p->multiplier, p->shift) + p->output_zero_point;           \
                v = v < (LO) ? (LO) : (v > (HI) ? (HI) : v);                                                      \
                output[(size_t)o * p->inner + i] = (T)v;                                                          \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_MEAN_KERNEL(int8_t, s8, -128, 127)
AIOT_MEAN_KERNEL(int16_t, s16, -32768, 32767)

static inline void fill_s8(int8_t *y, int16_t v, uint32_t n)
{
    memset(y, (int8_t)v, n);
}

static inline void fill_s16(int16_t *y, int16_t v, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i) {
        y[i] = v;
    }
}

// PAD of int8 and (16x8, a pad value other than 0) int16 tensors, one body: rows of the
// innermost axis, each the pad value or before / the input row / after.
#define AIOT_PAD_KERNEL(T, SUFFIX)                                                                               \
    aiot_status_t aiot_pad_##SUFFIX(const aiot_pad_params_t *p, const T *input, T *output)                       \
    {                                                                                                             \
        if (p == NULL || input == NULL || output == NULL) {                                                       \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        uint32_t od[4];                                                                                           \
        for (int k = 0; k < 4; ++k) {                                                                             \
            od[k] = p->before[k] + p->in_dims[k] + p->after[k];                                                   \
        }                                                                                                         \
        T *y = output;                                                                                            \
        for (uint32_t a = 0; a < od[0]; ++a) {                                                                    \
            for (uint32_t b = 0; b < od[1]; ++b) {                                                                \
                for (uint32_t c = 0; c < od[2]; ++c) {                                                            \
                    const int inside = a >= p->before[0] && a < p->before[0] + p->in_dims[0] &&                   \
                                       b >= p->before[1] && b < p->before[1] + p->in_dims[1] &&                   \
                                       c >= p->before[2] && c < p->before[2] + p->in_dims[2];                     \
                    if (!inside) {                                                                                \
                        fill_##SUFFIX(y, p->pad_value, od[3]);                                                    \
                    } else {                                                                                      \
                        const size_t row = (((size_t)(a - p->before[0]) * p->in_dims[1] + (b - p->before[1])) *   \
                                                p->in_dims[2] +                                                   \
                                            (c - p->before[2])) *                                                 \
                                           p->in_dims[3];                                                         \
                        fill_##SUFFIX(y, p->pad_value, p->before[3]);                                             \
                        memcpy(y + p->before[3], input + row, p->in_dims[3] * sizeof(T));                         \
                        fill_##SUFFIX(y + p->before[3] + p->in_dims[3], p->pad_value, p->after[3]);               \
                    }                                                                                             \
                    y += od[3];                                                                                   \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_PAD_KERNEL(int8_t, s8)
AIOT_PAD_KERNEL(int16_t, s16)

// Input index along one axis of the output position `o` (mirror image outside the input).
static uint32_t mirror_index(uint32_t o, uint32_t before, uint32_t size, uint32_t offset)
{
    if (o < before) {
        return before - o - 1u + offset;
    }
    const uint32_t i = o - before;
    if (i < size) {
        return i;
    }
    return 2u * size - i - 1u - offset;
}

aiot_status_t aiot_mirror_pad_s8(const aiot_mirror_pad_params_t *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    uint32_t od[4];
    for (int k = 0; k < 4; ++k) {
        // a mirror reaches at most size - offset elements beyond each edge
        if (p->offset > 1u || p->before[k] + p->offset > p->in_dims[k] || p->after[k] + p->offset > p->in_dims[k]) {
            return AIOT_ERR_PARAM;
        }
        od[k] = p->before[k] + p->in_dims[k] + p->after[k];
    }
    int8_t *y = output;
    for (uint32_t a = 0; a < od[0]; ++a) {
        const size_t ia = mirror_index(a, p->before[0], p->in_dims[0], p->offset);
        for (uint32_t b = 0; b < od[1]; ++b) {
            const size_t ib = ia * p->in_dims[1] + mirror_index(b, p->before[1], p->in_dims[1], p->offset);
            for (uint32_t c = 0; c < od[2]; ++c) {
                const size_t ic = ib * p->in_dims[2] + mirror_index(c, p->before[2], p->in_dims[2], p->offset);
                const int8_t *row = input + ic * p->in_dims[3];
                for (uint32_t d = 0; d < p->before[3]; ++d) {
                    *y++ = row[mirror_index(d, p->before[3], p->in_dims[3], p->offset)];
                }
                memcpy(y, row, p->in_dims[3]);
                y += p->in_dims[3];
                for (uint32_t d = p->before[3] + p->in_dims[3]; d < od[3]; ++d) {
                    *y++ = row[mirror_index(d, p->before[3], p->in_dims[3], p->offset)];
                }
            }
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_concat_s8(uint32_t outer, uint32_t num_inputs, const int8_t *const *inputs,
                             const uint32_t *copy_sizes, int8_t *output)
{
    if (inputs == NULL || copy_sizes == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    int8_t *y = output;
    for (uint32_t o = 0; o < outer; ++o) {
        for (uint32_t i = 0; i < num_inputs; ++i) {
            if (inputs[i] == NULL) {
                return AIOT_ERR_NULL;
            }
            memcpy(y, inputs[i] + (size_t)o * copy_sizes[i], copy_sizes[i]);
            y += copy_sizes[i];
        }
    }
    return AIOT_OK;
}

aiot_status_t aiot_split_s8(uint32_t outer, uint32_t num_outputs, int8_t *const *outputs, const uint32_t *copy_sizes,
                            const int8_t *input)
{
    if (outputs == NULL || copy_sizes == NULL || input == NULL) {
        return AIOT_ERR_NULL;
    }
    const int8_t *x = input;
    for (uint32_t o = 0; o < outer; ++o) {
        for (uint32_t i = 0; i < num_outputs; ++i) {
            if (outputs[i] == NULL) {
                return AIOT_ERR_NULL;
            }
            memcpy(outputs[i] + (size_t)o * copy_sizes[i], x, copy_sizes[i]);
            x += copy_sizes[i];
        }
    }
    return AIOT_OK;
}
