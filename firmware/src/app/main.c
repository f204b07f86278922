//! Temporary boot check until the protocol app lands: greet and exit.
#include "aiot/port.h"

int main(void) {
    static const char msg[] = "aiot boot " AIOT_BOARD_NAME "\n";
    aiot_port_uart_write((const uint8_t *)msg, sizeof msg - 1);
    aiot_port_log("semihosting ok\n");
    return 0;
}
