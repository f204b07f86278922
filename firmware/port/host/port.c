//! Host port: the device app (app.c, the monitor, the update service) built into a shared
//! library and driven in-process (aiot.device.host): the UART is a pair of memory buffers,
//! the update region a simulated NOR flash (firmware/src/update/flash_sim.c) over memory the
//! caller owns, so it outlives a reset. EXIT and a reset unwind to host_feed(), which says
//! which; the caller restarts a reset device on a fresh copy of the library (RAM lost).
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "aiot/port.h"
#include "app/app.h"

#ifdef AIOT_APP_UPDATE
#include "aiot/flash_map.h"
#include "aiot/update.h"
#endif

#define HOST_RESET (-2)

static uint8_t out_buf[1 << 16];
static size_t out_len;
static jmp_buf exit_jmp;
static int exit_code = -1;
static uint64_t ticks;

void aiot_port_init(void) {}
uint64_t aiot_port_ticks(void) { return ticks += 3; }
uint32_t aiot_port_tick_hz(void) { return 1000000u; }
int aiot_port_uart_getc(void) { return -1; }
void aiot_port_idle(void) {}
void aiot_port_log(const char *text) { (void)text; }
void aiot_port_exit(int code) {
    exit_code = code;
    longjmp(exit_jmp, 1);
}
void aiot_port_reset(void) {
    exit_code = HOST_RESET;
    longjmp(exit_jmp, 1);
}
void aiot_port_uart_write(const uint8_t *data, size_t len) {
    if (len > sizeof out_buf - out_len) len = sizeof out_buf - out_len;  // the caller reads after every feed
    memcpy(out_buf + out_len, data, len);
    out_len += len;
}

#ifdef AIOT_APP_UPDATE
void aiot_flash_sim_attach(aiot_flash_t *f, void *s, uint8_t *mem, uint32_t size, uint32_t sector_size,
                           uint32_t program_align, const aiot_flash_sector_t *sectors, uint32_t count);
uint32_t aiot_flash_sim_size(void);
static aiot_flash_t flash;
static uint64_t flash_sim[16];  // aiot_flash_sim_t (checked against aiot_flash_sim_size in host_attach_flash)
static int has_flash;
static aiot_flash_sector_t sectors[256];  // the region in equal sectors, numbered from 0

const aiot_flash_t *aiot_port_update_flash(void) { return has_flash ? &flash : NULL; }

//! The update region: size bytes at mem (two record sectors, then two slots, in sectors of
//! sector_size), kept as it is. Returns 0, or -1 if the simulator's state or the sector table
//! does not fit here.
int host_attach_flash(uint8_t *mem, uint32_t size, uint32_t sector_size, uint32_t program_align) {
    uint32_t count = sector_size ? size / sector_size : 0u;
    if (aiot_flash_sim_size() > sizeof flash_sim || count == 0u || count > sizeof sectors / sizeof sectors[0]) return -1;
    for (uint32_t i = 0; i < count; i++) sectors[i] = (aiot_flash_sector_t){i * sector_size, sector_size, i};
    aiot_flash_sim_attach(&flash, flash_sim, mem, size, sector_size, program_align, sectors, count);
    has_flash = 1;
    return 0;
}
#endif

//! Power on: the app's start-up (the update service's boot and trial first).
//! Returns -1, or -2 if the start-up reset the device (the caller boots it again).
int host_boot(void) {
    exit_code = -1;
    if (setjmp(exit_jmp) == 0) aiot_app_init();
    return exit_code;
}

//! Feed bytes to the app. Returns -1, the exit code if the app asked to stop, or -2 if it
//! reset (the bytes after the one that caused it are not read: a reset device lost them).
int host_feed(const uint8_t *data, size_t len) {
    exit_code = -1;
    if (setjmp(exit_jmp) == 0) {
        for (size_t i = 0; i < len; i++) aiot_app_feed(data[i]);
    }
    return exit_code;
}

//! Move what the app sent into out (up to cap bytes); returns the count.
size_t host_take(uint8_t *out, size_t cap) {
    size_t n = out_len < cap ? out_len : cap;
    memcpy(out, out_buf, n);
    memmove(out_buf, out_buf + n, out_len - n);
    out_len -= n;
    return n;
}
