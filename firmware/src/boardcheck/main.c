//! Board bring-up check (`app="boardcheck"`): proves a port before the real app runs on it.
//!   1. TX:    prints "aiot boot <board>".
//!   2. Timer: runs a loop of a known instruction count between two reads of the tick
//!             counter and prints "calib <instructions> <ticks> <tick_hz>". Under QEMU
//!             -icount shift=0 one instruction is 1 ns, so the tick rate QEMU really
//!             gives SysTick is ticks * 1e9 / instructions: the board file's systick_hz
//!             is checked against this measurement, not assumed.
//!   3. RX:    prints "ready", then echoes one line ("echo <line>") and exits with 0.
//! Uses only port.h, so it runs unchanged on every family and on real boards.
#include <stdint.h>

#include "aiot/console.h"
#include "aiot/port.h"

#define CALIB_ITERATIONS 200000u

int main(void) {
    aiot_console_puts("aiot boot " AIOT_BOARD_NAME "\n");

    // Exactly 2 instructions per iteration (subs + taken bne; the last bne falls
    // through), valid Thumb-1 so it runs on Armv6-M too.
    uint32_t n = CALIB_ITERATIONS;
    uint64_t t0 = aiot_port_ticks();
#if __ARM_ARCH_ISA_THUMB == 1
#define CALIB_SUBS "sub %0, #1\n"  // Armv6-M: gcc emits divided syntax, where 16-bit SUB sets flags
#else
#define CALIB_SUBS "subs %0, %0, #1\n"
#endif
    __asm volatile("1: " CALIB_SUBS "   bne 1b\n" : "+l"(n) : : "cc");
    uint64_t t1 = aiot_port_ticks();
    aiot_console_puts("calib ");
    aiot_console_put_u64(2ull * CALIB_ITERATIONS);
    aiot_console_puts(" ");
    aiot_console_put_u64(t1 - t0);
    aiot_console_puts(" ");
    aiot_console_put_u64(aiot_port_tick_hz());
    aiot_console_puts("\nready\n");

    char line[64];
    unsigned len = 0;
    for (;;) {
        int c = aiot_port_uart_getc();
        if (c < 0) continue;
        if (c == '\n' || len == sizeof line - 1) break;
        line[len++] = (char)c;
    }
    line[len] = 0;
    aiot_console_puts("echo ");
    aiot_console_puts(line);
    aiot_console_puts("\n");
    return 0;
}
