//! Device entry point: hand every received byte to the protocol app, and sleep while
//! nothing arrives (aiot_port_idle: WFI on boards with an interrupt-driven console).
#include "aiot/port.h"
#include "app/app.h"

int main(void) {
    aiot_app_init();
    for (;;) {
        // The host sends one request and waits for the answer, so the receive path (a ring
        // buffer or the polled 1-byte register) cannot overrun between frames.
        int c = aiot_port_uart_getc();
        if (c >= 0)
            aiot_app_feed((uint8_t)c);
        else
            aiot_port_idle();
    }
}
