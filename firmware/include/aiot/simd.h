//! Engine building blocks: the multi-row dot product over wide (int16, SMLAD-ordered)
//! weights as a static inline function, so the kernels that loop over channel groups keep
//! accumulators in registers instead of going through memory for every group of four.
//! aiot/engine.h describes the weight layout (aiot_dot4_s16w exports the same code).
#ifndef AIOT_ENGINE_SIMD_H
#define AIOT_ENGINE_SIMD_H

#include "aiot/fixedpoint.h"

#include <string.h>

#ifdef AIOT_DSP
static inline uint32_t aiot_load32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);  // unaligned word load (LDR) on v7E-M/v8-M Main
    return v;
}

static inline int32_t aiot_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

//! acc[j] += sum_k w_j[k] * x[k] for the four channels of one wide segment of `len`
//! columns; returns the weights pointer past the segment. Caller guarantees: w is
//! word-aligned and laid out as engine.h describes; x has len readable bytes.
static inline __attribute__((always_inline)) const int16_t *aiot_dot4_wide(const int16_t *w, const int8_t *x, uint32_t len, int32_t acc[4])
{
    const uint32_t blocks = len >> 2;
    const uint32_t tail = len & 3u;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#ifdef AIOT_DSP
    // Per 4 columns x 4 channels: LDR + 2 SXTB16 for the input word, two LDMs of four
    // weight words (two channels each), 8 SMLAD: 13 instructions for 16 MACs, plus CMP +
    // branch per two blocks. Written as assembly because GCC splits the weight loads into
    // single LDRs and shuffles registers (23 instructions for one block); the LDM
    // register list must be ascending, hence the fixed r8-r11.
#define AIOT_WIDE_BLOCK                                   \
    "ldr    %[xw], [%[x]], #4\n\t"                        \
    "ldmia  %[w]!, {r8, r9, r10, r11}\n\t"                \
    "sxtb16 %[x02], %[xw]\n\t"                            \
    "sxtb16 %[xw], %[xw], ror #8\n\t"                     \
    "smlad  %[a0], r8, %[x02], %[a0]\n\t"                 \
    "smlad  %[a0], r9, %[xw], %[a0]\n\t"                  \
    "smlad  %[a1], r10, %[x02], %[a1]\n\t"                \
    "smlad  %[a1], r11, %[xw], %[a1]\n\t"                 \
    "ldmia  %[w]!, {r8, r9, r10, r11}\n\t"                \
    "smlad  %[a2], r8, %[x02], %[a2]\n\t"                 \
    "smlad  %[a2], r9, %[xw], %[a2]\n\t"                  \
    "smlad  %[a3], r10, %[x02], %[a3]\n\t"                \
    "smlad  %[a3], r11, %[xw], %[a3]\n\t"
    uint32_t xw, x02;
    if (blocks & 1u) {
        __asm__ volatile(AIOT_WIDE_BLOCK
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
                           [xw] "=&r"(xw), [x02] "=&r"(x02)
                         :
                         : "r8", "r9", "r10", "r11", "memory");
    }
    if (blocks >= 2u) {
        const int8_t *const x_end = x + 4u * (blocks & ~1u);
        __asm__ volatile("1:\n\t" AIOT_WIDE_BLOCK AIOT_WIDE_BLOCK
                         "cmp    %[x], %[xe]\n\t"
                         "bne    1b\n\t"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
                           [xw] "=&r"(xw), [x02] "=&r"(x02)
                         : [xe] "r"(x_end)
                         : "r8", "r9", "r10", "r11", "cc", "memory");
    }
// AIOT_WIDE_BLOCK stays defined: conv.c's 4-channel inner loop runs the same block.
#else
    for (uint32_t b = 0; b < blocks; ++b) {
        const int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
        a0 += w[0] * x0 + w[1] * x2 + w[2] * x1 + w[3] * x3;
        a1 += w[4] * x0 + w[5] * x2 + w[6] * x1 + w[7] * x3;
        a2 += w[8] * x0 + w[9] * x2 + w[10] * x1 + w[11] * x3;
        a3 += w[12] * x0 + w[13] * x2 + w[14] * x1 + w[15] * x3;
        w += 16;
        x += 4;
    }
#endif
    for (uint32_t t = 0; t < tail; ++t) {
        const int32_t xv = x[t];
        a0 += w[t] * xv;
        a1 += w[tail + t] * xv;
        a2 += w[2 * tail + t] * xv;
        a3 += w[3 * tail + t] * xv;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    return w + 4u * tail;
}

#endif
