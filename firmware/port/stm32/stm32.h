//! STM32 register map for the series this family supports, picked by one of the
//! AIOT_STM32_F4 / AIOT_STM32_F7 / AIOT_STM32_G0 defines (from the board file's
//! [stm32] series). Only the registers the port touches: RCC, FLASH_ACR, PWR, GPIO and
//! the USART. Addresses and bit positions cite the reference manuals:
//!   F4: RM0090 (F405/F407) and RM0390 (F446), F7: RM0410 (F76x/F77x), G0: RM0444 (G0x1).
#ifndef AIOT_STM32_H
#define AIOT_STM32_H

#include <stdint.h>

#define STM32_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#if defined(AIOT_STM32_F4) || defined(AIOT_STM32_F7)
// RM0390 §2.2.2 memory map (identical on F405 and F76x for these blocks).
#define RCC_BASE 0x40023800u
#define RCC_CR STM32_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR STM32_REG(RCC_BASE + 0x04u)
#define RCC_CFGR STM32_REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR STM32_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR STM32_REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR STM32_REG(RCC_BASE + 0x44u)
#define RCC_GPIOEN RCC_AHB1ENR            // GPIOxEN = bit x (RM0390 §6.3.10)
#define RCC_APB1_PWREN (1u << 28)
#define RCC_CFGR_SW_PLL 0x2u               // SW[1:0] = 10: PLL (P output)
#define RCC_CFGR_SW_MASK 0x3u
#define RCC_CFGR_SWS_SHIFT 2u
#define RCC_CFGR_SWS_MASK 0x3u
#define RCC_CFGR_HPRE_SHIFT 4u
#define RCC_CFGR_PPRE1_SHIFT 10u
#define RCC_CFGR_PPRE2_SHIFT 13u
#define FLASH_ACR STM32_REG(0x40023C00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#if defined(AIOT_STM32_F4)
#define FLASH_ACR_SPEED ((1u << 8) | (1u << 9) | (1u << 10))  // PRFTEN, ICEN, DCEN (RM0390 §3.8.1)
#else
#define FLASH_ACR_SPEED ((1u << 8) | (1u << 9))  // PRFTEN, ARTEN (RM0410 §3.7.1)
#endif
// Over-drive (F446 above 168 MHz, F7 above 180 MHz): PWR_CR(1) ODEN/ODSWEN, PWR_CSR(1)
// ODRDY/ODSWRDY (RM0390 §5.4.1/§5.4.2, RM0410 §4.4.1/§4.4.2).
#define PWR_CR STM32_REG(0x40007000u)
#define PWR_CSR STM32_REG(0x40007004u)
#define PWR_ODEN (1u << 16)
#define PWR_ODSWEN (1u << 17)
#define PWR_ODRDY (1u << 16)
#define PWR_ODSWRDY (1u << 17)
#define GPIO_BASE(port) (0x40020000u + 0x400u * (uint32_t)(port))
#elif defined(AIOT_STM32_G0)
// RM0444 §2.2.2 memory map.
#define RCC_BASE 0x40021000u
#define RCC_CR STM32_REG(RCC_BASE + 0x00u)
#define RCC_CFGR STM32_REG(RCC_BASE + 0x08u)
#define RCC_PLLCFGR STM32_REG(RCC_BASE + 0x0Cu)
#define RCC_IOPENR STM32_REG(RCC_BASE + 0x34u)
#define RCC_APB1ENR STM32_REG(RCC_BASE + 0x3Cu)  // RCC_APBENR1
#define RCC_APB2ENR STM32_REG(RCC_BASE + 0x40u)  // RCC_APBENR2
#define RCC_GPIOEN RCC_IOPENR                    // GPIOxEN = bit x (RM0444 §5.4.13)
#define RCC_APB1_PWREN (1u << 28)
#define RCC_CFGR_SW_PLL 0x2u                     // SW[2:0] = 010: PLLRCLK
#define RCC_CFGR_SW_MASK 0x7u
#define RCC_CFGR_SWS_SHIFT 3u
#define RCC_CFGR_SWS_MASK 0x7u
#define RCC_CFGR_HPRE_SHIFT 8u
#define RCC_CFGR_PPRE1_SHIFT 12u                 // the G0 has one APB: PPRE[14:12]
#define FLASH_ACR STM32_REG(0x40022000u)
#define FLASH_ACR_LATENCY_MASK 0x7u
#define FLASH_ACR_SPEED ((1u << 8) | (1u << 9))  // PRFTEN, ICEN (RM0444 §3.7.1)
#define GPIO_BASE(port) (0x50000000u + 0x400u * (uint32_t)(port))  // IOPORT bus
#else
#error "stm32 port: the board file must set [stm32] series (f4, f7 or g0)"
#endif

// RCC_CR bits common to all three series (RM0390 §6.3.1, RM0410 §5.3.1, RM0444 §5.4.1).
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)

// GPIO port registers, same layout on all three (RM0390 §7.4, RM0444 §7.4).
#define GPIO_MODER(port) STM32_REG(GPIO_BASE(port) + 0x00u)
#define GPIO_OSPEEDR(port) STM32_REG(GPIO_BASE(port) + 0x08u)
#define GPIO_PUPDR(port) STM32_REG(GPIO_BASE(port) + 0x0Cu)
#define GPIO_AFR(port, pin) STM32_REG(GPIO_BASE(port) + 0x20u + ((pin) >= 8u ? 4u : 0u))

//! Peripheral clock the console USART runs from after aiot_stm32_clock_init(): the
//! board's APB clock, or the reset clock if the set-up was skipped or timed out.
extern uint32_t aiot_stm32_uart_pclk_hz;

void aiot_stm32_clock_init(void);
void aiot_stm32_uart_init(void);

#endif
