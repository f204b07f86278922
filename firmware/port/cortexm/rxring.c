//! Single-producer (interrupt) / single-consumer (main loop) byte ring: each side writes
//! only its own index, so no lock is needed on a single core.
#include "aiot/port.h"
#include "aiot/rxring.h"

#define NVIC_ISER ((volatile uint32_t *)0xE000E100u)
#define NVIC_ICER ((volatile uint32_t *)0xE000E180u)
#define NVIC_ISPR ((volatile uint32_t *)0xE000E200u)

void aiot_nvic_enable(uint32_t irq) { NVIC_ISER[irq / 32u] = 1u << (irq % 32u); }

#ifdef AIOT_UART_RX_IRQ
//! Power of two. The host sends one request (<= AIOT_FRAME_MAX_PAYLOAD + header) and waits
//! for the answer on hardware; on QEMU it may pipeline, and a full ring pauses the interrupt.
//! (The HIL suite builds a 32-byte ring to make that path run: -DAIOT_RX_RING_BYTES=32.)
#ifndef AIOT_RX_RING_BYTES
#define AIOT_RX_RING_BYTES 512u
#endif
#define RX_RING ((uint32_t)(AIOT_RX_RING_BYTES))
_Static_assert(RX_RING >= 2u && (RX_RING & (RX_RING - 1u)) == 0u, "AIOT_RX_RING_BYTES must be a power of two");
#define IRQ_BIT (1u << (AIOT_UART_RX_IRQ % 32u))
#define IRQ_WORD (AIOT_UART_RX_IRQ / 32u)

static uint8_t ring[RX_RING];
static volatile uint32_t head;    // written by the interrupt only
static volatile uint32_t tail;    // written by the main loop only
static volatile uint32_t paused;  // set by the interrupt, cleared by the main loop

int aiot_rxring_full(void) { return head - tail >= RX_RING; }

void aiot_rxring_put(uint8_t byte) {
    uint32_t h = head;
    ring[h & (RX_RING - 1u)] = byte;
    head = h + 1u;
}

void aiot_rxring_pause(void) {
    NVIC_ICER[IRQ_WORD] = IRQ_BIT;
    __asm volatile("dsb\n isb" ::: "memory");
    paused = 1u;
}

int aiot_rxring_get(void) {
    uint32_t t = tail;
    if (t == head) return -1;
    int c = ring[t & (RX_RING - 1u)];
    tail = t + 1u;  // the handler may only pause before this (it saw the ring full)
    if (paused) {
        paused = 0u;
        // the byte left in the UART may no longer assert the line (CMSDK clears it in the
        // handler), so make the handler run once: it reads whatever is waiting
        NVIC_ISPR[IRQ_WORD] = IRQ_BIT;
        NVIC_ISER[IRQ_WORD] = IRQ_BIT;
    }
    return c;
}

void aiot_rxring_idle(void) {
    // Interrupts masked while deciding, so a byte arriving between the check and the WFI
    // still wakes the core (WFI wakes on a pending interrupt even when PRIMASK masks it);
    // unmasking then runs the handler.
    __asm volatile("cpsid i" ::: "memory");
    if (tail == head) __asm volatile("dsb\n wfi" ::: "memory");
    __asm volatile("cpsie i\n isb" ::: "memory");
}

// With an interrupt-driven console the port boundary's receive side is the ring itself.
int aiot_port_uart_getc(void) { return aiot_rxring_get(); }
void aiot_port_idle(void) { aiot_rxring_idle(); }
#endif
