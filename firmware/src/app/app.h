//! The device app: a request/response server over the framed protocol (aiot/protocol.h).
//! main() feeds it every UART byte; it answers each complete frame before reading on.
#ifndef AIOT_APP_H
#define AIOT_APP_H

#include <stdint.h>

#ifndef AIOT_FIRMWARE_VERSION
#define AIOT_FIRMWARE_VERSION "0.1.0"
#endif

//! Reset the receiver. Call once before the first aiot_app_feed().
void aiot_app_init(void);

//! Consume one received byte; when it completes a frame, handle it and send the answer
//! (through aiot_port_uart_write) before returning. May not return (EXIT request).
void aiot_app_feed(uint8_t byte);

#endif
