//! BATCH_MATMUL of int8 and (16x8) int16 tensors as tflite-micro's reference: per output
//! element the exact sum of (lhs - its zero point) x (rhs - its zero point) over the shared
//! axis (int32 for int8, int64 for int16), then MultiplyByQuantizedMultiplier (its int64
//! form for int16), plus the output zero point, clamped to the type. Both operands are read
//! in place through strides, so adj_x / adj_y and broadcast batch dimensions need no copy.
#include "aiot/fixedpoint.h"

#include <stddef.h>

#define AIOT_BATCH_MATMUL_KERNEL(T, SUFFIX, ACC, REQUANT, LO, HI)                                                \
    aiot_status_t aiot_batch_matmul_##SUFFIX(const aiot_batch_matmul_params_t *p, const T *lhs, const T *rhs,    \
                                             T *output)                                                           \
    {                                                                                                             \
        if (p == NULL || lhs == NULL || rhs == NULL || output == NULL) {                                          \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        T *y = output;                                                                                            \
        for (uint32_t b0 = 0; b0 < p->batches[0]; ++b0) {                                                         \
            for (uint32_t b1 = 0; b1 < p->batches[1]; ++b1) {                                                     \
                for (uint32_t b2 = 0; b2 < p->batches[2]; ++b2) {                                                 \
                    const T *a = lhs + (size_t)b0 * p->lhs_batch_strides[0] + (size_t)b1 * p->lhs_batch_strides[1] + \
                                 (size_t)b2 * p->lhs_batch_strides[2];                                            \
                    const T *b = rhs + (size_t)b0 * p->rhs_batch_strides[0] + (size_t)b1 * p->rhs_batch_strides[1] + \
                                 (size_t)b2 * p->rhs_batch_strides[2];                                            \
                    for (uint32_t i = 0; i < p->rows; ++i) {                                                      \
                        for (uint32_t j = 0; j < p->cols; ++j) {                                                  \
                            ACC total = 0;                                                                        \
                            for (uint32_t k = 0; k < p->depth; ++k) {                                             \
                                const int32_t u = a[(size_t)i * p->lhs_row_stride + (size_t)k * p->lhs_depth_stride] + \
                                                  p->lhs_offset;                                                  \
                                const int32_t v = b[(size_t)k * p->rhs_depth_stride + (size_t)j * p->rhs_col_stride] + \
                                                  p->rhs_offset;                                                  \
                                total += (ACC)u * v;                                                              \
                            }                                                                                     \
                            int32_t out = REQUANT(total, p->multiplier, p->shift) + p->output_zero_point;         \
                            out = out < (LO) ? (LO) : (out > (HI) ? (HI) : out);                                  \
                            *y++ = (T)out;                                                                        \
                        }                                                                                         \
                    }                                                                                             \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_BATCH_MATMUL_KERNEL(int8_t, s8, int32_t, aiot_fp_mbqm, -128, 127)
AIOT_BATCH_MATMUL_KERNEL(int16_t, s16, int64_t, aiot_mul_by_quant_mult64, -32768, 32767)
