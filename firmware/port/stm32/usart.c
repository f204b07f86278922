//! STM32 USART: the console on the ST-LINK virtual COM port (Nucleo boards) or QEMU's
//! serial0 (netduinoplus2). Receive is polled, or interrupt driven into the shared receive
//! ring with WFI between requests when the board file gives uart.rx_irq (AIOT_UART_RX_IRQ).
//! Two register layouts:
//!   F4 "v1" (RM0390 §25.6): SR 0x00, DR 0x04, BRR 0x08, CR1 0x0C; UE is CR1 bit 13.
//!   F7/G0 "v2" (RM0410 §34.8, RM0444 §32.8): CR1 0x00, BRR 0x0C, ISR 0x1C, ICR 0x20,
//!   RDR 0x24, TDR 0x28; UE is CR1 bit 0.
//! Status bits are the same in SR and ISR: TXE 7, RXNE 5, ORE 3.
#include <stdint.h>

#include "aiot/port.h"
#include "aiot/rxring.h"
#include "stm32.h"
#include "stm32_calc.h"

#define USART(off) STM32_REG(AIOT_UART_BASE + (off))
#if defined(AIOT_STM32_F4)
#define USART_STATUS USART(0x00u)
#define USART_RXDATA USART(0x04u)
#define USART_TXDATA USART(0x04u)
#define USART_BRR USART(0x08u)
#define USART_CR1 USART(0x0Cu)
#define CR1_UE (1u << 13)
#else
#define USART_CR1 USART(0x00u)
#define USART_BRR USART(0x0Cu)
#define USART_STATUS USART(0x1Cu)
#define USART_ICR USART(0x20u)
#define USART_RXDATA USART(0x24u)
#define USART_TXDATA USART(0x28u)
#define CR1_UE (1u << 0)
#endif
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)  // same bit on v1 and v2 (RM0390 §25.6.4, RM0410 §34.8.1)
#define ST_ORE (1u << 3)
#define ST_RXNE (1u << 5)
#define ST_TXE (1u << 7)

#if defined(AIOT_UART_TX_PORT)
// Alternate-function mode, high speed, pull-up on the pin (RM0390 §7.4.1-§7.4.10).
static void pin_af(uint32_t port, uint32_t pin, uint32_t af) {
    RCC_GPIOEN |= 1u << port;
    (void)RCC_GPIOEN;  // read back: the port clock is on before its registers are written
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    GPIO_OSPEEDR(port) |= 3u << (2u * pin);
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2u * pin))) | (1u << (2u * pin));
    uint32_t shift = 4u * (pin & 7u);
    GPIO_AFR(port, pin) = (GPIO_AFR(port, pin) & ~(0xFu << shift)) | (af << shift);
}
#endif

void aiot_stm32_uart_init(void) {
#if defined(AIOT_UART_RCC_BUS)
    if (AIOT_UART_RCC_BUS == 2) {
        RCC_APB2ENR |= 1u << AIOT_UART_RCC_BIT;
        (void)RCC_APB2ENR;
    } else {
        RCC_APB1ENR |= 1u << AIOT_UART_RCC_BIT;
        (void)RCC_APB1ENR;
    }
#endif
#if defined(AIOT_UART_TX_PORT)
    pin_af(AIOT_UART_TX_PORT, AIOT_UART_TX_PIN, AIOT_UART_AF);
    pin_af(AIOT_UART_RX_PORT, AIOT_UART_RX_PIN, AIOT_UART_AF);
#endif
    USART_CR1 = 0u;  // BRR may only change while the USART is disabled (v2: RM0410 §34.8.4)
    USART_BRR = stm32_usart_brr(aiot_stm32_uart_pclk_hz, AIOT_UART_BAUD);
#ifdef AIOT_UART_RX_IRQ
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;  // 8N1, oversampling by 16
    aiot_nvic_enable(AIOT_UART_RX_IRQ);
#else
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE;  // 8N1, oversampling by 16
#endif
}

void aiot_port_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (!(USART_STATUS & ST_TXE)) {
        }
        USART_TXDATA = data[i];
    }
}

//! Read a status word's received byte (or -1), clearing an overrun first: an overrun blocks
//! further reception until cleared, v1 by reading SR then DR (RM0390 §25.6.1), v2 by writing
//! ORECF (RM0410 §34.8.11). The lost bytes show up as a frame CRC error one level up, which
//! the protocol already handles. With RXNEIE an overrun also raises the interrupt (v2), so
//! the handler must clear it too or it would run forever.
static int take(uint32_t st) {
    if (st & ST_ORE) {
#if defined(AIOT_STM32_F4)
        if (!(st & ST_RXNE)) (void)USART_RXDATA;
#else
        USART_ICR = ST_ORE;
#endif
    }
    if (st & ST_RXNE) return (int)(USART_RXDATA & 0xFFu);
    return -1;
}

#ifdef AIOT_UART_RX_IRQ
void aiot_port_uart_rx_isr(void) {
    uint32_t st = USART_STATUS;
    if ((st & ST_RXNE) && aiot_rxring_full()) {  // RXNE stays set: the line fires again on resume
        aiot_rxring_pause();
        return;
    }
    int c = take(st);
    if (c >= 0) aiot_rxring_put((uint8_t)c);
}
// aiot_port_uart_getc / aiot_port_idle come from the shared ring (rxring.c)
#else
int aiot_port_uart_getc(void) { return take(USART_STATUS); }
void aiot_port_idle(void) {}
#endif
