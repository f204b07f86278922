//! Nordic nRF51 / nRF52 UART (the legacy, non-DMA UART at 0x40002000), polled. The same
//! register block on both series (nRF51 RM v3.0 §29, nRF52840 PS v1.7 §6.34), so one
//! driver serves the micro:bit (QEMU) and the nRF52840-DK (whose UARTE0 shares the
//! address and falls back to this register set when ENABLE = 4).
//!
//! Events are registers the hardware sets to 1 and software clears by writing 0. The
//! order matters (nRF51 RM §29.2/§29.3): clear TXDRDY before writing TXD, and clear
//! RXDRDY before reading RXD, or a byte that arrives in between is never seen.
#include <stdint.h>

#include "aiot/port.h"

#define NRF_REG(off) (*(volatile uint32_t *)(uintptr_t)(AIOT_UART_BASE + (off)))
#define UART_TASKS_STARTRX NRF_REG(0x000u)
#define UART_TASKS_STARTTX NRF_REG(0x008u)
#define UART_EVENTS_RXDRDY NRF_REG(0x108u)
#define UART_EVENTS_TXDRDY NRF_REG(0x11Cu)
#define UART_EVENTS_ERROR NRF_REG(0x124u)
#define UART_ERRORSRC NRF_REG(0x480u)
#define UART_ENABLE NRF_REG(0x500u)
#define UART_PSELRTS NRF_REG(0x508u)
#define UART_PSELTXD NRF_REG(0x50Cu)
#define UART_PSELCTS NRF_REG(0x510u)
#define UART_PSELRXD NRF_REG(0x514u)
#define UART_RXD NRF_REG(0x518u)
#define UART_TXD NRF_REG(0x51Cu)
#define UART_BAUDRATE NRF_REG(0x524u)
#define UART_CONFIG NRF_REG(0x56Cu)
#define UART_ENABLE_UART 4u
#define PSEL_DISCONNECTED 0xFFFFFFFFu

// GPIO: the TX pin must be an output driving high (idle) before the UART takes it
// (nRF51 RM §29.1 "pin configuration"; nRF52840 PS §6.34.2). P0 at 0x50000000, P1 at
// 0x50000300 on the nRF52840; PIN_CNF[n] at 0x700 + 4n, OUTSET at 0x508.
#define GPIO_PORT(pin) (0x50000000u + ((pin) >= 32u ? 0x300u : 0u))
#define GPIO_OUTSET(pin) (*(volatile uint32_t *)(uintptr_t)(GPIO_PORT(pin) + 0x508u))
#define GPIO_PIN_CNF(pin) (*(volatile uint32_t *)(uintptr_t)(GPIO_PORT(pin) + 0x700u + 4u * ((pin) & 31u)))
#define PIN_CNF_OUTPUT 0x1u          // DIR = output, input buffer connected
#define PIN_CNF_INPUT_PULLUP 0xCu    // DIR = input, input buffer connected, pull-up

// HFCLK: the UART runs from HFCLK either way, but the internal RC is only ±1.5-5 %
// accurate (nRF52840 PS §6.4.2, nRF51 PS §8.5); the 32/16 MHz crystal keeps the baud
// rate inside the receiver's tolerance. CLOCK block at 0x40000000 on both series.
#define CLOCK_TASKS_HFCLKSTART (*(volatile uint32_t *)0x40000000u)
#define CLOCK_EVENTS_HFCLKSTARTED (*(volatile uint32_t *)0x40000100u)

#ifndef AIOT_CLOCK_SETUP
#define AIOT_CLOCK_SETUP 0
#endif

void aiot_family_init(void) {
#if AIOT_CLOCK_SETUP
    // Bounded wait: QEMU does not model the CLOCK block; a board without the crystal
    // keeps running on the RC oscillator rather than hanging here.
    CLOCK_EVENTS_HFCLKSTARTED = 0u;
    CLOCK_TASKS_HFCLKSTART = 1u;
    for (uint32_t i = 0; i < 1000000u && !CLOCK_EVENTS_HFCLKSTARTED; i++) {
    }
#endif
#if defined(AIOT_UART_TX_PIN)
    GPIO_OUTSET(AIOT_UART_TX_PIN) = 1u << (AIOT_UART_TX_PIN & 31u);
    GPIO_PIN_CNF(AIOT_UART_TX_PIN) = PIN_CNF_OUTPUT;
    GPIO_PIN_CNF(AIOT_UART_RX_PIN) = PIN_CNF_INPUT_PULLUP;
    UART_PSELTXD = AIOT_UART_TX_PIN;  // nRF52: bit 5 = port, bits 4:0 = pin, i.e. 32 + n for P1.n
    UART_PSELRXD = AIOT_UART_RX_PIN;
#endif
    UART_PSELRTS = PSEL_DISCONNECTED;
    UART_PSELCTS = PSEL_DISCONNECTED;
    UART_CONFIG = 0u;  // no hardware flow control, no parity
    UART_BAUDRATE = AIOT_NRF_BAUDRATE;
    UART_ENABLE = UART_ENABLE_UART;
    UART_EVENTS_TXDRDY = 0u;
    UART_EVENTS_RXDRDY = 0u;
    UART_TASKS_STARTTX = 1u;
    UART_TASKS_STARTRX = 1u;
}

void aiot_port_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        UART_EVENTS_TXDRDY = 0u;
        UART_TXD = data[i];
        while (!UART_EVENTS_TXDRDY) {
        }
    }
}

int aiot_port_uart_getc(void) {
    if (UART_EVENTS_ERROR) {
        // Overrun/framing error: clear the sources (write-1-to-clear) so reception goes on;
        // the protocol's CRC catches the damaged frame.
        UART_ERRORSRC = UART_ERRORSRC;
        UART_EVENTS_ERROR = 0u;
    }
    if (!UART_EVENTS_RXDRDY) return -1;
    UART_EVENTS_RXDRDY = 0u;
    return (int)(UART_RXD & 0xFFu);
}

//! Polled receive: nothing to sleep on (no receive interrupt wired up yet).
void aiot_port_idle(void) {}
