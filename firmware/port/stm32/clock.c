//! STM32 family init: system clock (HSI/HSE -> PLL), flash wait states, the console
//! USART's pins and clock. Every parameter is a -D define derived from the board file
//! (toolkit/ports.py checks them against the reference-manual limits first).
//!
//! Every wait on a hardware flag is bounded. QEMU's STM32 machines do not model the RCC
//! or the flash interface (their registers read as 0), and a real board with a missing
//! crystal must not hang either: if a step times out the core stays on the 16 MHz HSI
//! it reset on, and the USART baud rate is computed for that clock instead.
#include <stdint.h>

#include "aiot/port.h"
#include "stm32.h"
#include "stm32_calc.h"

#ifndef AIOT_CLOCK_SETUP
#define AIOT_CLOCK_SETUP 0
#endif
#ifndef AIOT_UART_PCLK_HZ
#define AIOT_UART_PCLK_HZ AIOT_CPU_HZ
#endif
#define HSI_HZ 16000000u  // HSI RC: 16 MHz on F4, F7 and G0 (HSISYS /1 at reset on G0)
#define WAIT_LOOPS 2000000u  // > 100 ms at 16 MHz: the longest HSE start-up the datasheets allow

uint32_t aiot_stm32_uart_pclk_hz = AIOT_UART_PCLK_HZ;

#if AIOT_CLOCK_SETUP
static int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t want) {
    for (uint32_t i = 0; i < WAIT_LOOPS; i++) {
        if ((*reg & mask) == want) return 1;
    }
    return 0;
}

#ifndef AIOT_STM32_G0
#define APB2_DIV AIOT_APB2_DIV
#else
#define APB2_DIV AIOT_APB1_DIV  // one APB bus on the G0
#endif

// Clock of the UART's APB bus if the set-up stops after the prescalers were written.
static uint32_t hsi_pclk(void) {
    return HSI_HZ / AIOT_AHB_DIV / (AIOT_UART_RCC_BUS == 2 ? APB2_DIV : AIOT_APB1_DIV);
}

static int clock_setup(void) {
    aiot_stm32_uart_pclk_hz = HSI_HZ;  // until the switch to the PLL succeeds
    const int hse = AIOT_CLOCK_SRC != 0;
    if (hse) {
        // HSE: a crystal (SRC 1) or the ST-LINK's 8 MHz MCO on OSC_IN (SRC 2, bypass).
        RCC_CR |= (AIOT_CLOCK_SRC == 2 ? RCC_CR_HSEBYP : 0u);
        RCC_CR |= RCC_CR_HSEON;
        if (!wait_set(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY)) return 0;
    }
    RCC_APB1ENR |= RCC_APB1_PWREN;
    (void)RCC_APB1ENR;  // read back: the enable takes effect before PWR is touched
#if defined(AIOT_STM32_G0)
    RCC_PLLCFGR = stm32g0_pllcfgr(AIOT_PLL_M, AIOT_PLL_N, AIOT_PLL_R, hse);
#else
    RCC_PLLCFGR = stm32f4_pllcfgr(AIOT_PLL_M, AIOT_PLL_N, AIOT_PLL_P, AIOT_PLL_Q, AIOT_PLL_R, hse);
#endif
    RCC_CR |= RCC_CR_PLLON;
    if (!wait_set(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) return 0;
#if defined(AIOT_OVERDRIVE) && AIOT_OVERDRIVE
    // RM0390 §5.1.4 / RM0410 §4.1.4: enable over-drive after the PLL locks, before the switch.
    PWR_CR |= PWR_ODEN;
    if (!wait_set(&PWR_CSR, PWR_ODRDY, PWR_ODRDY)) return 0;
    PWR_CR |= PWR_ODSWEN;
    if (!wait_set(&PWR_CSR, PWR_ODSWRDY, PWR_ODSWRDY)) return 0;
#endif
    // More wait states before the faster clock, checked by reading back (RM0390 §3.5.1).
    FLASH_ACR = AIOT_FLASH_LATENCY | FLASH_ACR_SPEED;
    if (!wait_set(&FLASH_ACR, FLASH_ACR_LATENCY_MASK, AIOT_FLASH_LATENCY)) return 0;
    // Prescalers first so no bus ever runs above its limit, then the switch.
    uint32_t cfgr = RCC_CFGR;
    cfgr &= ~((0xFu << RCC_CFGR_HPRE_SHIFT) | (0x7u << RCC_CFGR_PPRE1_SHIFT));
    cfgr |= stm32_hpre_bits(AIOT_AHB_DIV) << RCC_CFGR_HPRE_SHIFT;
    cfgr |= stm32_ppre_bits(AIOT_APB1_DIV) << RCC_CFGR_PPRE1_SHIFT;
#if !defined(AIOT_STM32_G0)
    cfgr &= ~(0x7u << RCC_CFGR_PPRE2_SHIFT);
    cfgr |= stm32_ppre_bits(AIOT_APB2_DIV) << RCC_CFGR_PPRE2_SHIFT;
#endif
    RCC_CFGR = cfgr;
    aiot_stm32_uart_pclk_hz = hsi_pclk();
    RCC_CFGR = (cfgr & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    if (!wait_set(&RCC_CFGR, RCC_CFGR_SWS_MASK << RCC_CFGR_SWS_SHIFT, RCC_CFGR_SW_PLL << RCC_CFGR_SWS_SHIFT))
        return 0;
    aiot_stm32_uart_pclk_hz = AIOT_UART_PCLK_HZ;
    return 1;
}
#endif

#if defined(AIOT_CACHE_ENABLE) && AIOT_CACHE_ENABLE
// Cortex-M7 L1 caches (ARMv7-M ARM §B2.2.7, Cortex-M7 TRM §3.4): code and constant
// weights are fetched over AXI from flash, so without them every load waits on flash.
#define SCB_CCR STM32_REG(0xE000ED14u)
#define SCB_CCSIDR STM32_REG(0xE000ED80u)
#define SCB_CSSELR STM32_REG(0xE000ED84u)
#define SCB_ICIALLU STM32_REG(0xE000EF50u)
#define SCB_DCISW STM32_REG(0xE000EF60u)
static void cache_enable(void) {
    __asm volatile("dsb\n isb" ::: "memory");
    SCB_ICIALLU = 0u;
    SCB_CSSELR = 0u;  // level 1 data cache
    __asm volatile("dsb" ::: "memory");
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u, ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    for (uint32_t s = 0; s < sets; s++)
        for (uint32_t w = 0; w < ways; w++) SCB_DCISW = (s << 5) | (w << 30);  // 4 ways, 32-byte lines
    __asm volatile("dsb" ::: "memory");
    SCB_CCR |= (1u << 17) | (1u << 16);  // IC, DC
    __asm volatile("dsb\n isb" ::: "memory");
}
#endif

void aiot_stm32_clock_init(void) {
#if defined(AIOT_CACHE_ENABLE) && AIOT_CACHE_ENABLE
    cache_enable();
#endif
#if AIOT_CLOCK_SETUP
    if (!clock_setup()) aiot_port_log("aiot: clock set-up timed out, running on HSI\n");
#endif
}

void aiot_family_init(void) {
    aiot_stm32_clock_init();
    aiot_stm32_uart_init();
}
