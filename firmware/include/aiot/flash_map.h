//! Which erase units make up a board's model-update region, and the checks every flash
//! behind aiot_flash_t makes with them: the STM32 and nRF52 drivers, the QEMU boards'
//! host-file flash (port/cmsdk/flash.c) and the host build's simulated flash
//! (src/update/flash_sim.c) all refuse the same erases and programs, from the same table.
//!
//! The table lists, in address order, every sector (STM32 F4/F7) or page (STM32 G0,
//! nRF52) of the region's four areas (two record copies, two slots), as offsets from the
//! region's base, with the number the flash controller knows it by (FLASH_CR.SNB/PNB).
//! The sectors between the areas (on an F446, the firmware's own code) are not in it, so
//! no erase or program can reach them. aiot build generates it from the board file
//! (AIOT_UPDATE_SECTORS, aiot.lifecycle.firmware.layout_defines).
#ifndef AIOT_FLASH_MAP_H
#define AIOT_FLASH_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t offset;  //!< from the region's base
    uint32_t size;
    uint32_t number;  //!< sector/page number for the flash controller
} aiot_flash_sector_t;

typedef struct {
    const aiot_flash_sector_t *sector;  //!< in address order
    uint32_t count;
} aiot_flash_map_t;

//! The listed sector that begins at `offset`, NULL if none does (an erase anywhere else is refused).
static inline const aiot_flash_sector_t *aiot_flash_sector_at(const aiot_flash_map_t *m, uint32_t offset) {
    for (uint32_t i = 0; i < m->count; i++)
        if (m->sector[i].offset == offset) return &m->sector[i];
    return NULL;
}

//! 1 when [offset, offset + len) is aligned to `align` and lies in listed sectors that follow
//! each other without a gap; 0 otherwise (a program that would touch anything else).
static inline int aiot_flash_range_ok(const aiot_flash_map_t *m, uint32_t offset, uint32_t len, uint32_t align) {
    if (align == 0u || offset % align != 0u || len % align != 0u) return 0;
    if (len == 0u) return 1;
    for (uint32_t i = 0; i < m->count; i++) {
        const aiot_flash_sector_t *s = &m->sector[i];
        if (offset < s->offset || offset - s->offset >= s->size) continue;
        uint32_t end = s->offset + s->size;  // covered so far, contiguously
        while ((uint64_t)offset + len > end) {
            if (++i >= m->count || m->sector[i].offset != end) return 0;
            end += m->sector[i].size;
        }
        return 1;
    }
    return 0;
}

//! What an erase or a program interrupted by a power cut leaves done: the first half of its
//! bytes (an erase: the sector's first half is 0xFF, the second half still holds old bytes;
//! a program: its first len/2 bytes are written). The host simulation (update/flash_sim.c)
//! and the QEMU boards' opt-in cut (port/cmsdk/flash.c, AIOT_FLASH_CUT_FILE) both apply it.
static inline uint32_t aiot_flash_cut_done(uint32_t len) { return len / 2u; }

#endif
