//! Pure arithmetic of the STM32 clock tree and USART, shared by the driver and its host
//! tests (tests/test_ports.py compiles this header with the host gcc). No register I/O
//! here, so every value the driver programs can be checked on a PC.
#ifndef AIOT_STM32_CALC_H
#define AIOT_STM32_CALC_H

#include <stdint.h>

//! USART BRR for oversampling by 16. USARTDIV = f_ck / baud, and BRR holds it in 12.4
//! fixed point (F4: RM0090 §30.6.3 / RM0390 §25.6.3 DIV_Mantissa:DIV_Fraction; F7/G0:
//! RM0410 §34.5.4 / RM0444 §32.5.4 BRR = USARTDIV), so BRR = f_ck / baud, rounded to nearest.
static inline uint32_t stm32_usart_brr(uint32_t pclk_hz, uint32_t baud) {
    return (pclk_hz + baud / 2u) / baud;
}

//! Baud rate the USART really produces with a given BRR (for the error-budget check).
static inline uint32_t stm32_usart_actual_baud(uint32_t pclk_hz, uint32_t brr) {
    return brr ? (pclk_hz + brr / 2u) / brr : 0u;
}

//! RCC_CFGR HPRE field value for an AHB divider (RM0390 §6.3.3: 0xxx = /1, 1000 = /2,
//! 1001 = /4 ... 1111 = /512, no /32). Returns 0xFF for a divider the hardware lacks.
static inline uint32_t stm32_hpre_bits(uint32_t div) {
    switch (div) {
        case 1: return 0x0u;
        case 2: return 0x8u;
        case 4: return 0x9u;
        case 8: return 0xAu;
        case 16: return 0xBu;
        case 64: return 0xCu;
        case 128: return 0xDu;
        case 256: return 0xEu;
        case 512: return 0xFu;
        default: return 0xFFu;
    }
}

//! RCC_CFGR PPRE1/PPRE2 (G0: PPRE) field value for an APB divider (0xx = /1, 100 = /2,
//! 101 = /4, 110 = /8, 111 = /16). Returns 0xFF for a divider the hardware lacks.
static inline uint32_t stm32_ppre_bits(uint32_t div) {
    switch (div) {
        case 1: return 0x0u;
        case 2: return 0x4u;
        case 4: return 0x5u;
        case 8: return 0x6u;
        case 16: return 0x7u;
        default: return 0xFFu;
    }
}

//! F4/F7 RCC_PLLCFGR (RM0390 §6.3.2, RM0410 §5.3.2): PLLM[5:0], PLLN[14:6],
//! PLLP[17:16] = P/2 - 1, PLLSRC[22] (1 = HSE), PLLQ[27:24], PLLR[30:28].
static inline uint32_t stm32f4_pllcfgr(uint32_t m, uint32_t n, uint32_t p, uint32_t q, uint32_t r,
                                       int src_hse) {
    return (m & 0x3Fu) | ((n & 0x1FFu) << 6) | (((p / 2u - 1u) & 0x3u) << 16) |
           ((src_hse ? 1u : 0u) << 22) | ((q & 0xFu) << 24) | ((r & 0x7u) << 28);
}

//! G0 RCC_PLLCFGR (RM0444 §5.4.4): PLLSRC[1:0] (2 = HSI16, 3 = HSE), PLLM[6:4] = M - 1,
//! PLLN[14:8], PLLP[21:17] = P - 1, PLLQ[27:25] = Q - 1, PLLR[31:29] = R - 1, with only
//! the R output (the system clock) enabled: PLLREN[28].
static inline uint32_t stm32g0_pllcfgr(uint32_t m, uint32_t n, uint32_t r, int src_hse) {
    return (src_hse ? 3u : 2u) | (((m - 1u) & 0x7u) << 4) | ((n & 0x7Fu) << 8) | (1u << 28) |
           (((r - 1u) & 0x7u) << 29);
}

//! SYSCLK the PLL produces: f_in / M * N / P (F4/F7 P output, G0 R output).
static inline uint32_t stm32_pll_out_hz(uint32_t f_in, uint32_t m, uint32_t n, uint32_t div) {
    return (uint32_t)(((uint64_t)f_in / m * n) / div);
}

#endif
