//! ARM CMSDK APB UART (MPS2 boards): the console. Registers per the CMSDK TRM.
//!
//! With AIOT_UART_RX_IRQ (the board file's uart.rx_irq) receive is interrupt driven: the
//! handler moves each byte into the shared receive ring (port/cortexm/rxring.c) and the main
//! loop sleeps (WFI) while it is empty, so an idle device draws sleep current instead of
//! spinning. Without it the port polls the 1-byte receive register. Transmit is polled
//! either way (the protocol answers one request at a time).
#include <stdint.h>

#include "aiot/rxring.h"
#include "aiot/port.h"

#define UART_DATA (*(volatile uint32_t *)(AIOT_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(AIOT_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(AIOT_UART_BASE + 0x08u))
#define UART_INTCLEAR (*(volatile uint32_t *)(AIOT_UART_BASE + 0x0Cu))  // write 1 to clear
#define UART_BAUDDIV (*(volatile uint32_t *)(AIOT_UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INT_EN 0x8u
#define INT_RX 0x2u

void aiot_family_init(void) {
    UART_BAUDDIV = AIOT_CPU_HZ / AIOT_UART_BAUD;
#ifdef AIOT_UART_RX_IRQ
    UART_INTCLEAR = 0xFu;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    aiot_nvic_enable(AIOT_UART_RX_IRQ);
#else
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN;  // no interrupts: polled
#endif
}

void aiot_port_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}

#ifdef AIOT_UART_RX_IRQ
void aiot_port_uart_rx_isr(void) {
    UART_INTCLEAR = INT_RX;  // before reading: a byte landing meanwhile raises it again
    while (UART_STATE & STATE_RX_FULL) {
        if (aiot_rxring_full()) {  // leave it in the UART (QEMU back-pressures) until space frees
            aiot_rxring_pause();
            return;
        }
        aiot_rxring_put((uint8_t)(UART_DATA & 0xFFu));
    }
}
// aiot_port_uart_getc / aiot_port_idle come from the shared ring (rxring.c)
#else
int aiot_port_uart_getc(void) {
    if (UART_STATE & STATE_RX_FULL) return (int)(UART_DATA & 0xFFu);
    return -1;
}

void aiot_port_idle(void) {}
#endif
