//! Dot-product building blocks of FULLY_CONNECTED and CONV_2D over weights the code
//! generator pre-arranged ("packed"): four output channels interleaved per block of four
//! columns, so one pass over the input feeds four accumulators. Cores with the DSP
//! extension use SXTB16 + SMLAD (two 8-bit MACs per instruction); others plain C.
#include "aiot/simd.h"

#include <stddef.h>
#include <string.h>

int16_t aiot_wide_at(const int16_t *w, uint32_t len, uint32_t c, uint32_t k)
{
    const uint32_t len4 = len & ~3u;
    if (k < len4) {
        // within a block, channel c holds k+0, k+2, k+1, k+3 (see engine.h)
        static const uint8_t slot[4] = {0, 2, 1, 3};
        return w[(k & ~3u) * 4u + c * 4u + slot[k & 3u]];
    }
    return w[len4 * 4u + c * (len - len4) + (k - len4)];
}

int8_t aiot_packed_at(const int8_t *w, uint32_t len, uint32_t c, uint32_t k)
{
    const uint32_t len4 = len & ~3u;
    if (k < len4) {
        return w[(k & ~3u) * 4u + c * 4u + (k & 3u)];
    }
    return w[len4 * 4u + c * (len - len4) + (k - len4)];
}

#ifdef AIOT_DSP
#define load32 aiot_load32
#define sxtb16_ror8 aiot_sxtb16_ror8
#endif

void aiot_dot4_s8(const int8_t *w, const int8_t *x, uint32_t len, int32_t *acc)
{
    const uint32_t blocks = len >> 2;
    const uint32_t tail = len & 3u;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
#ifdef AIOT_DSP
    if (blocks != 0) {
        // Per 4 columns x 4 channels: LDR + 2 SXTB16 for the input word, one LDM of the
        // four weight words (packed blocks are word-aligned: the generator aligns the
        // arrays), 2 SXTB16 + 2 SMLAD per channel, CMP + branch: 22 instructions for 16
        // MACs. Assembly because GCC's version of this loop takes 25 (two LDRDs, an extra
        // pointer add); the LDM register list must be ascending, hence the fixed r8-r11.
        const int8_t *const x_end = x + 4u * blocks;
        uint32_t xw, x02, t;
        __asm__ volatile(
            "1:\n\t"
            "ldr    %[xw], [%[x]], #4\n\t"
            "ldmia  %[w]!, {r8, r9, r10, r11}\n\t"
            "sxtb16 %[x02], %[xw]\n\t"
            "sxtb16 %[xw], %[xw], ror #8\n\t"
            "sxtb16 %[t], r8\n\t"
            "sxtb16 r8, r8, ror #8\n\t"
            "smlad  %[a0], %[t], %[x02], %[a0]\n\t"
            "smlad  %[a0], r8, %[xw], %[a0]\n\t"
            "sxtb16 %[t], r9\n\t"
            "sxtb16 r9, r9, ror #8\n\t"
            "smlad  %[a1], %[t], %[x02], %[a1]\n\t"
            "smlad  %[a1], r9, %[xw], %[a1]\n\t"
            "sxtb16 %[t], r10\n\t"
            "sxtb16 r10, r10, ror #8\n\t"
            "smlad  %[a2], %[t], %[x02], %[a2]\n\t"
            "smlad  %[a2], r10, %[xw], %[a2]\n\t"
            "sxtb16 %[t], r11\n\t"
            "sxtb16 r11, r11, ror #8\n\t"
            "smlad  %[a3], %[t], %[x02], %[a3]\n\t"
            "smlad  %[a3], r11, %[xw], %[a3]\n\t"
            "cmp    %[x], %[xe]\n\t"
            "bne    1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
              [xw] "=&r"(xw), [x02] "=&r"(x02), [t] "=&r"(t)
            : [xe] "r"(x_end)
            : "r8", "r9", "r10", "r11", "cc", "memory");
    }
#else
    for (uint32_t b = 0; b < blocks; ++b) {
        const int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
        a0 += w[0] * x0 + w[1] * x1 + w[2] * x2 + w[3] * x3;
        a1 += w[4] * x0 + w[5] * x1 + w[6] * x2 + w[7] * x3;
        a2 += w[8] * x0 + w[9] * x1 + w[10] * x2 + w[11] * x3;
        a3 += w[12] * x0 + w[13] * x1 + w[14] * x2 + w[15] * x3;
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
}

int32_t aiot_dot1_s8(const int8_t *w, const int8_t *x, uint32_t len)
{
    int32_t acc = 0;
    uint32_t k = 0;
#ifdef AIOT_DSP
    for (; k + 4 <= len; k += 4) {
        const uint32_t ww = load32(w + k), xw = load32(x + k);
        acc = __smlad(__sxtb16(ww), __sxtb16(xw), acc);
        acc = __smlad(sxtb16_ror8(ww), sxtb16_ror8(xw), acc);
    }
#endif
    for (; k < len; ++k) {
        acc += (int32_t)w[k] * (int32_t)x[k];
    }
    return acc;
}

void aiot_dot4_s16w(const int16_t *w, const int8_t *x, uint32_t len, int32_t *acc)
{
    (void)aiot_dot4_wide(w, x, len, acc);
}
