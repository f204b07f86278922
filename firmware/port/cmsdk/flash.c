//! Update region of the emulated CMSDK boards (QEMU mps2-*): a RAM mirror backed, write
//! through, by a host file over semihosting, so the region survives a reset and a power
//! cut (QEMU killed) exactly as flash would: each erase or program is written to the file
//! before it returns. NOR rules as on a chip: erase sets 0xFF, program only clears bits.
//! The file is AIOT_UPDATE_FLASH_FILE (default "aiot-flash.bin", relative to QEMU's
//! working directory); it is created erased when missing.
//!
//! Opt-in power cut (AIOT_FLASH_CUT_FILE, emulated boards only, for the sweep in
//! aiot.lifecycle.sweep): at boot the firmware opens that host file, little-endian u32 words
//!   [0] cut index N (int32; -1 = no cut)   [1] erases + programs done since the file was written
//!   [2 + 2k], [3 + 2k] operation k: its offset in the region, (kind << 24) | length (kind 1 erase, 2 program)
//! and keeps counting there across resets. Operation N is done half (aiot_flash_cut_done, the
//! same rule as the host simulation's cut), written through to the flash file, and the device
//! stops dead: semihosting exit with AIOT_FLASH_CUT_EXIT, as if the supply had dropped. No file:
//! no cut, no counting. One image serves every cut point.
#include <string.h>

#include "aiot/flash_map.h"
#include "aiot/port.h"
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

#ifdef AIOT_FLASH_CUT_FILE
#define AIOT_FLASH_CUT_EXIT 86  //!< the exit code of a cut: neither a test result nor a fault
#define CUT_TRACE_MAX 4096u     //!< operations traced; counting goes on beyond
static int cut_handle = -1;
static int32_t cut_at = -1;
static uint32_t cut_ops;

static void cut_put(uint32_t offset, const uint32_t *words, uint32_t n) {
    uint32_t seek[2] = {(uint32_t)cut_handle, offset};
    if (semihost(SYS_SEEK, seek) != 0) return;
    uint32_t wr[3] = {(uint32_t)cut_handle, (uint32_t)(uintptr_t)words, 4u * n};
    (void)semihost(SYS_WRITE, wr);
}

static void cut_open(void) {
    static const char name[] = AIOT_FLASH_CUT_FILE;
    uint32_t open_rw[3] = {(uint32_t)(uintptr_t)name, 3u /* "r+b" */, sizeof name - 1u};
    cut_handle = semihost(SYS_OPEN, open_rw);
    if (cut_handle < 0) return;
    uint32_t head[2] = {0xFFFFFFFFu, 0u};
    uint32_t rd[3] = {(uint32_t)cut_handle, (uint32_t)(uintptr_t)head, sizeof head};
    if (semihost(SYS_READ, rd) != 0) {  // returns the bytes NOT read: a short file is no cut
        cut_handle = -1;
        return;
    }
    cut_at = (int32_t)head[0];  // the words are little-endian, as the Cortex-M is
    cut_ops = head[1];
}

//! Count (and trace) one operation; 1 when it is the one the power cut interrupts.
static int cut_here(uint32_t addr, uint32_t kind, uint32_t len) {
    if (cut_handle < 0) return 0;
    uint32_t k = cut_ops++;
    if (k < CUT_TRACE_MAX) {
        uint32_t rec[2] = {addr, (kind << 24) | len};
        cut_put(8u + 8u * k, rec, 2u);
    }
    cut_put(4u, &cut_ops, 1u);
    return cut_at >= 0 && k == (uint32_t)cut_at;
}
#define CUT_HERE(addr, kind, len) cut_here((addr), (kind), (len))
#define CUT_STOP() aiot_port_exit(AIOT_FLASH_CUT_EXIT)
#else
#define CUT_HERE(addr, kind, len) 0
#define CUT_STOP() ((void)0)
#endif

static int sh_erase(const aiot_flash_t *f, uint32_t addr) {
    (void)f;
    const aiot_flash_sector_t *sec = aiot_flash_sector_at(&map, addr);
    if (sec == NULL || sec->offset + sec->size > REGION_BYTES) return -2;
    int cut = CUT_HERE(addr, 1u, sec->size);
    uint32_t n = cut ? aiot_flash_cut_done(sec->size) : sec->size;
    memset(mirror + addr, 0xFF, n);
    int r = file_put(addr, n);
    if (cut) CUT_STOP();
    return r;
}

static int sh_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    if (!aiot_flash_range_ok(&map, addr, len, f->program_align) || addr + len > REGION_BYTES) return -2;
    int cut = CUT_HERE(addr, 2u, len);
    uint32_t n = cut ? aiot_flash_cut_done(len) : len;
    const uint8_t *d = (const uint8_t *)data;
    for (uint32_t i = 0; i < n; i++) mirror[addr + i] &= d[i];
    int r = file_put(addr, n);
    if (cut) CUT_STOP();
    return r;
}

static const uint8_t *sh_map(const aiot_flash_t *f, uint32_t addr) {
    (void)f;
    return mirror + addr;
}

const aiot_flash_t *aiot_port_update_flash(void) {
    static const char name[] = AIOT_UPDATE_FLASH_FILE;
    if (handle < 0) {
#ifdef AIOT_FLASH_CUT_FILE
        cut_open();
#endif
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
