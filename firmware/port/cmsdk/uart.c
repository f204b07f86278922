//! ARM CMSDK APB UART (MPS2 boards): the console. Registers per the CMSDK TRM.
//!
//! With AIOT_UART_RX_IRQ (the board file's uart.rx_irq) receive is interrupt driven: the
//! handler moves each byte into a ring buffer and the main loop sleeps (WFI) while the
//! buffer is empty, so an idle device draws sleep current instead of spinning. Without it
//! the port polls the 1-byte receive register. Transmit is polled either way (the protocol
//! answers one request at a time).
#include <stdint.h>

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

#ifdef AIOT_UART_RX_IRQ
#define NVIC_ISER(n) (*(volatile uint32_t *)(0xE000E100u + 4u * (n)))

//! Power of two; the host sends at most one frame (<= AIOT_FRAME_MAX_PAYLOAD + header)
//! before it waits for the answer, so this never fills in normal use. A byte that finds it
//! full is dropped and counted: the frame's CRC then fails, which the protocol reports.
#define RX_RING 512u
static uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head;  // written by the handler only
static volatile uint32_t rx_tail;  // written by the main loop only
static volatile uint32_t rx_dropped;

void aiot_port_uart_rx_isr(void);
void aiot_port_uart_rx_isr(void) {
    UART_INTCLEAR = INT_RX;  // before reading: a byte landing meanwhile re-raises it
    while (UART_STATE & STATE_RX_FULL) {
        uint8_t b = (uint8_t)(UART_DATA & 0xFFu);
        uint32_t h = rx_head;
        if (h - rx_tail < RX_RING) {
            rx_ring[h & (RX_RING - 1u)] = b;
            rx_head = h + 1u;
        } else {
            rx_dropped++;
        }
    }
}
#endif

void aiot_family_init(void) {
    UART_BAUDDIV = AIOT_CPU_HZ / AIOT_UART_BAUD;
#ifdef AIOT_UART_RX_IRQ
    UART_INTCLEAR = 0xFu;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    NVIC_ISER(AIOT_UART_RX_IRQ / 32u) = 1u << (AIOT_UART_RX_IRQ % 32u);
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
int aiot_port_uart_getc(void) {
    uint32_t t = rx_tail;
    if (t == rx_head) return -1;
    int c = rx_ring[t & (RX_RING - 1u)];
    rx_tail = t + 1u;
    return c;
}

void aiot_port_idle(void) {
    // Interrupts masked while deciding, so a byte arriving between the check and the WFI
    // still wakes the core (WFI wakes on a pending interrupt even when PRIMASK masks it);
    // unmasking then runs the handler.
    __asm volatile("cpsid i" ::: "memory");
    if (rx_tail == rx_head) __asm volatile("dsb\n wfi" ::: "memory");
    __asm volatile("cpsie i\n isb" ::: "memory");
}
#else
int aiot_port_uart_getc(void) {
    if (UART_STATE & STATE_RX_FULL) return (int)(UART_DATA & 0xFFu);
    return -1;
}

void aiot_port_idle(void) {}
#endif
