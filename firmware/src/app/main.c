//! Device entry point: poll the console UART and hand every byte to the protocol app.
#include "aiot/port.h"
#include "app/app.h"

int main(void) {
    aiot_app_init();
    for (;;) {
        // Polled, not interrupt driven: the host only sends after each answer (one request
        // in flight), so the 1-byte CMSDK receive register cannot overrun between frames.
        int c = aiot_port_uart_getc();
        if (c >= 0) aiot_app_feed((uint8_t)c);
    }
}
