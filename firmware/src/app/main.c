//! Device entry point: hand every received byte to the protocol app, and sleep while
//! nothing arrives (aiot_port_idle: WFI on boards with an interrupt-driven console).
#include "aiot/port.h"
#include "app/app.h"

int main(void) {
    aiot_app_init();
    for (;;) {
        // A polled 1-byte register cannot overrun because a host on a real serial port sends
        // one request and waits for its answer; with the interrupt-driven ring a host may send
        // ahead (QEMU), and a full ring pauses reception instead of dropping (rxring.c).
        int c = aiot_port_uart_getc();
        if (c >= 0)
            aiot_app_feed((uint8_t)c);
        else
            aiot_port_idle();
    }
}
