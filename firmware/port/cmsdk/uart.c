//! ARM CMSDK APB UART (MPS2 boards): polled console. Registers per the CMSDK TRM.
#include <stdint.h>

#include "aiot/port.h"

#define UART_DATA (*(volatile uint32_t *)(AIOT_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(AIOT_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(AIOT_UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(AIOT_UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u

void aiot_family_init(void) {
    UART_BAUDDIV = AIOT_CPU_HZ / AIOT_UART_BAUD;
    UART_CTRL = 0x3u;  // TX and RX enable, no interrupts
}

void aiot_port_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = data[i];
    }
}

int aiot_port_uart_getc(void) {
    if (UART_STATE & STATE_RX_FULL) return (int)(UART_DATA & 0xFFu);
    return -1;
}
