//! Update region of the emulated CMSDK boards (QEMU mps2-*): a RAM mirror backed, write
//! through, by a host file over semihosting, so the region survives a reset and a power
//! cut (QEMU killed) exactly as flash would: each erase or program is written to the file
//! before it returns. NOR rules as on a chip: erase sets 0xFF, program only clears bits.
//! The file is AIOT_UPDATE_FLASH_FILE (default "aiot-flash.bin", relative to QEMU's
//! working directory); it is created erased when missing.
#include <string.h>

#include "aiot/flash_map.h"
#include "aiot/update.h"

#if defined(AIOT_APP_UPDATE) && AIOT_SEMIHOSTING
#ifndef AIOT_UPDATE_FLASH_FILE
#define AIOT_UPDATE_FLASH_FILE "aiot-flash.bin"
#endif
#define REGION_BYTES (2u * AIOT_UPDATE_SECTOR + 2u * AIOT_UPDATE_SLOT_SIZE)

static uint8_t mirror[REGION_BYTES];
// The region's sectors, as the board drivers take them (aiot/flash_map.h): the same checks.
static const aiot_flash_sector_t sectors[] = {AIOT_UPDATE_SECTORS};
static const aiot_flash_map_t map = {sectors, (uint32_t)(sizeof sectors / sizeof sectors[0])};
static int handle = -1;
static aiot_flash_t region;

// Semihosting call (ARM DUI0471 ch. 8). startup.c has its own, private to the exit path.
static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
enum { SYS_OPEN = 0x01, SYS_WRITE = 0x05, SYS_READ = 0x06, SYS_SEEK = 0x0A, SYS_FLEN = 0x0C };

static int file_put(uint32_t addr, uint32_t len) {
    uint32_t seek[2] = {(uint32_t)handle, addr};
    if (semihost(SYS_SEEK, seek) != 0) return -1;
    uint32_t wr[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)(mirror + addr), len};
    return semihost(SYS_WRITE, wr) == 0 ? 0 : -1;  // returns the bytes NOT written
}

static int sh_erase(const aiot_flash_t *f, uint32_t addr) {
    (void)f;
    const aiot_flash_sector_t *sec = aiot_flash_sector_at(&map, addr);
    if (sec == NULL || sec->offset + sec->size > REGION_BYTES) return -2;
    memset(mirror + addr, 0xFF, sec->size);
    return file_put(addr, sec->size);
}

static int sh_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    if (!aiot_flash_range_ok(&map, addr, len, f->program_align) || addr + len > REGION_BYTES) return -2;
    const uint8_t *d = (const uint8_t *)data;
    for (uint32_t i = 0; i < len; i++) mirror[addr + i] &= d[i];
    return file_put(addr, len);
}

static const uint8_t *sh_map(const aiot_flash_t *f, uint32_t addr) {
    (void)f;
    return mirror + addr;
}

const aiot_flash_t *aiot_port_update_flash(void) {
    static const char name[] = AIOT_UPDATE_FLASH_FILE;
    if (handle < 0) {
        uint32_t open_rw[3] = {(uint32_t)(uintptr_t)name, 3u /* "r+b" */, sizeof name - 1u};
        handle = semihost(SYS_OPEN, open_rw);
        if (handle < 0) {  // first boot: create it erased
            uint32_t open_w[3] = {(uint32_t)(uintptr_t)name, 7u /* "w+b" */, sizeof name - 1u};
            handle = semihost(SYS_OPEN, open_w);
            if (handle < 0) return NULL;
            memset(mirror, 0xFF, sizeof mirror);
            if (file_put(0, sizeof mirror) != 0) return NULL;
        } else {
            uint32_t flen[1] = {(uint32_t)handle};
            uint32_t rd[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)mirror, sizeof mirror};
            memset(mirror, 0xFF, sizeof mirror);
            if (semihost(SYS_FLEN, flen) < 0) return NULL;
            uint32_t seek[2] = {(uint32_t)handle, 0};
            if (semihost(SYS_SEEK, seek) != 0) return NULL;
            (void)semihost(SYS_READ, rd);  // a short file reads as erased beyond its end
        }
    }
    region.sector_size = AIOT_UPDATE_SECTOR;
    region.program_align = 8u;
    region.erase = sh_erase;
    region.program = sh_program;
    region.map = sh_map;
    region.ctx = NULL;
    return &region;
}
#endif
