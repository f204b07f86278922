//! Interrupt-fed console receive (port/cortexm/rxring.c), shared by the chip families whose
//! board file gives uart.rx_irq (built with AIOT_UART_RX_IRQ): the family's receive
//! interrupt handler puts each byte here, the main loop takes them (aiot_port_uart_getc) and
//! sleeps in WFI while there are none (aiot_port_idle); rxring.c defines both of those then,
//! and the family only its handler.
//!
//! Never drops a byte: when the ring is full the handler leaves the byte in the UART and
//! pauses the interrupt (aiot_rxring_pause); the next byte taken resumes it. The UART then
//! back-pressures (QEMU) or overruns (hardware, as a polled UART would; the frame CRC
//! catches it), so a host that sends ahead never corrupts what was already received.
#ifndef AIOT_RXRING_H
#define AIOT_RXRING_H

#include <stdint.h>

//! From the receive interrupt: 1 when no byte can be put.
int aiot_rxring_full(void);

//! From the receive interrupt, after aiot_rxring_full() said 0.
void aiot_rxring_put(uint8_t byte);

//! From the receive interrupt when the ring is full: stop the interrupt until space frees.
void aiot_rxring_pause(void);

//! Next byte, or -1 when the ring is empty (main loop only); resumes a paused interrupt.
int aiot_rxring_get(void);

//! Sleep until an interrupt unless a byte is already waiting; never misses one.
void aiot_rxring_idle(void);

//! Enable external interrupt `irq` in the NVIC.
void aiot_nvic_enable(uint32_t irq);

//! The receive interrupt handler the family defines; the vector table points at it.
void aiot_port_uart_rx_isr(void);

#endif
