//! Interrupt-fed console receive (port/cortexm/rxring.c), shared by the chip families whose board file gives
//! uart.rx_irq (built with AIOT_UART_RX_IRQ): the family's receive interrupt handler puts
//! each byte here, the main loop takes them (aiot_port_uart_getc) and sleeps in WFI while
//! there are none (aiot_port_idle).
#ifndef AIOT_RXRING_H
#define AIOT_RXRING_H

#include <stdint.h>

//! From the receive interrupt only. A byte that finds the ring full is dropped and counted;
//! the frame it belonged to then fails its CRC, which the protocol reports.
void aiot_rxring_put(uint8_t byte);

//! Next byte, or -1 when the ring is empty (main loop only).
int aiot_rxring_get(void);

//! Sleep until an interrupt unless a byte is already waiting; never misses one.
void aiot_rxring_idle(void);

//! Bytes dropped because the ring was full, since reset.
uint32_t aiot_rxring_dropped(void);

//! Enable external interrupt `irq` in the NVIC.
void aiot_nvic_enable(uint32_t irq);

//! The receive interrupt handler the family defines; the vector table points at it.
void aiot_port_uart_rx_isr(void);

#endif
