//! Single-producer (interrupt) / single-consumer (main loop) byte ring: each side writes
//! only its own index, so no lock is needed on a single core.
#include "aiot/rxring.h"

//! Power of two. The host sends one request (<= AIOT_FRAME_MAX_PAYLOAD + header) and waits
//! for the answer, so in normal use this never fills.
#define RX_RING 512u

static uint8_t ring[RX_RING];
static volatile uint32_t head;  // written by the interrupt only
static volatile uint32_t tail;  // written by the main loop only
static volatile uint32_t dropped;

void aiot_rxring_put(uint8_t byte) {
    uint32_t h = head;
    if (h - tail < RX_RING) {
        ring[h & (RX_RING - 1u)] = byte;
        head = h + 1u;
    } else {
        dropped++;
    }
}

int aiot_rxring_get(void) {
    uint32_t t = tail;
    if (t == head) return -1;
    int c = ring[t & (RX_RING - 1u)];
    tail = t + 1u;
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

uint32_t aiot_rxring_dropped(void) { return dropped; }

void aiot_nvic_enable(uint32_t irq) {
    volatile uint32_t *iser = (volatile uint32_t *)0xE000E100u;  // NVIC_ISER0..
    iser[irq / 32u] = 1u << (irq % 32u);
}
