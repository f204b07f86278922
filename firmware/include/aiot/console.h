//! Plain-text console output over the port UART, for the bring-up and bench apps (the
//! product app speaks the framed protocol instead). Header-only: no printf, no heap.
#ifndef AIOT_CONSOLE_H
#define AIOT_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "aiot/port.h"

//! Write a NUL-terminated string.
static inline void aiot_console_puts(const char *s) {
    const char *e = s;
    while (*e) e++;
    aiot_port_uart_write((const uint8_t *)s, (size_t)(e - s));
}

//! Write an unsigned number in decimal.
static inline void aiot_console_put_u64(uint64_t v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    aiot_console_puts(&buf[i]);
}

//! Write n bytes as lowercase hex pairs, no separators.
static inline void aiot_console_put_hex(const void *data, size_t n) {
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)data;
    char pair[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        pair[0] = digits[p[i] >> 4];
        pair[1] = digits[p[i] & 0xFu];
        aiot_console_puts(pair);
    }
}

#endif
