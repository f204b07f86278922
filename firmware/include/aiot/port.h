//! Porting boundary: the only functions that know the chip. A chip family implements
//! them once in firmware/port/<family>/; boards pick a family and pass addresses and
//! clocks as -D defines generated from boards/<board>.toml. The host build
//! (firmware/port/host) implements them over memory buffers so the same app runs in-process on a PC.
#ifndef AIOT_PORT_H
#define AIOT_PORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//! Clocks, UART and the tick timer. Called once from reset before main().
void aiot_port_init(void);

//! Blocking write of len bytes to the host link (the board's console UART).
void aiot_port_uart_write(const uint8_t *data, size_t len);

//! Next received byte (0..255), or -1 if none is pending. Never blocks.
int aiot_port_uart_getc(void);

//! Nothing to do until the next byte: sleep until an interrupt (WFI) on ports whose receive
//! path is interrupt driven, return at once on polled ones. Never loses a byte: a byte that
//! arrived before the call makes it return without sleeping. Boards whose file gives
//! uart.rx_irq are built with AIOT_UART_RX_IRQ and sleep; INFO reports it (flags bit 2).
void aiot_port_idle(void);

//! Free-running tick counter (SysTick based on Cortex-M), monotonic, 64-bit.
uint64_t aiot_port_ticks(void);

//! Frequency of aiot_port_ticks() in Hz.
uint32_t aiot_port_tick_hz(void);

//! Stop the program with an exit code: semihosting SYS_EXIT under QEMU, a halt
//! (or reset, per board) on hardware. Never returns.
void aiot_port_exit(int code) __attribute__((noreturn));

//! System reset: the device restarts from its reset vector (RAM lost, flash kept). Cortex-M:
//! SCB AIRCR SYSRESETREQ; the host build (firmware/port/host) reloads the app. Never returns.
void aiot_port_reset(void) __attribute__((noreturn));

//! Short diagnostic text (semihosting stderr under QEMU; dropped on hardware).
void aiot_port_log(const char *text);

#ifdef __cplusplus
}
#endif
#endif
