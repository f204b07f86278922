//! STM32 embedded flash behind aiot_flash_t, for the model-update slots (firmware/src/update).
//! F4/F7: sector erase (FLASH_CR.SER + SNB) and 32-bit programming (PSIZE x32), RM0390 §3.6
//! and RM0410 §3.3; G0: 2 KB page erase (PER + PNB) and 64-bit double-word programming,
//! RM0444 §3.3.6-§3.3.8. Addresses are offsets from the update region's base; which sectors
//! (pages) exist there and their numbers come from the board file's layout as a table
//! (aiot/flash_map.h): an erase must start a listed sector, a program must stay inside
//! listed sectors, so the firmware's own sectors between the areas are never touched.
//! Code runs from the same flash bank: the CPU stalls on fetches while BSY is set, which is
//! what the reference manuals describe for single-bank parts; nothing here runs from RAM.
#include <stdint.h>

#include "aiot/flash_map.h"
#include "aiot/update.h"
#include "stm32.h"

#if defined(AIOT_STM32_F4) || defined(AIOT_STM32_F7)
#define FLASH_R_BASE 0x40023C00u
#define FLASH_KEYR STM32_REG(FLASH_R_BASE + 0x04u)
#define FLASH_SR STM32_REG(FLASH_R_BASE + 0x0Cu)
#define FLASH_CR STM32_REG(FLASH_R_BASE + 0x10u)
#define FLASH_SR_ERRORS (0xF2u)        // OPERR, WRPERR, PGAERR, PGPERR, PGSERR
#define FLASH_SR_BSY (1u << 16)
#define FLASH_CR_PG (1u << 0)
#define FLASH_CR_SER (1u << 1)
#define FLASH_CR_SNB_SHIFT 3u
#define FLASH_CR_SNB_MASK (0x1Fu << 3)
#define FLASH_CR_PSIZE_X32 (2u << 8)
#define FLASH_CR_STRT (1u << 16)
#define FLASH_CR_LOCK (1u << 31)
#define PROGRAM_UNIT 4u
#elif defined(AIOT_STM32_G0)
#define FLASH_R_BASE 0x40022000u
#define FLASH_KEYR STM32_REG(FLASH_R_BASE + 0x08u)
#define FLASH_SR STM32_REG(FLASH_R_BASE + 0x10u)
#define FLASH_CR STM32_REG(FLASH_R_BASE + 0x14u)
#define FLASH_SR_ERRORS (0xC3FAu)      // OPERR, PROGERR, WRPERR, PGAERR, SIZERR, PGSERR, MISSERR, FASTERR, RDERR, OPTVERR
#define FLASH_SR_BSY ((1u << 16) | (1u << 18))  // BSY1, CFGBSY
#define FLASH_CR_PG (1u << 0)
#define FLASH_CR_PER (1u << 1)
#define FLASH_CR_PNB_SHIFT 3u
#define FLASH_CR_PNB_MASK (0x7Fu << 3)
#define FLASH_CR_STRT (1u << 16)
#define FLASH_CR_LOCK (1u << 31)
#define PROGRAM_UNIT 8u
#endif
#define FLASH_KEY1 0x45670123u
#define FLASH_KEY2 0xCDEF89ABu

//! Where the update region lives: its address and the sectors (pages) of its areas.
typedef struct {
    uint32_t base;
    aiot_flash_map_t map;
} aiot_stm32_flash_region_t;

static void unlock(void) {
    if (FLASH_CR & FLASH_CR_LOCK) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
}

static int wait_done(void) {
    while (FLASH_SR & FLASH_SR_BSY) {
    }
    uint32_t sr = FLASH_SR;
    FLASH_SR = sr & FLASH_SR_ERRORS;  // error flags clear by writing 1
    return (sr & FLASH_SR_ERRORS) ? -1 : 0;
}

static int stm32_erase(const aiot_flash_t *f, uint32_t addr) {
    const aiot_stm32_flash_region_t *r = (const aiot_stm32_flash_region_t *)f->ctx;
    const aiot_flash_sector_t *sec = aiot_flash_sector_at(&r->map, addr);
    if (sec == NULL) return -2;
    uint32_t n = sec->number;
    unlock();
    if (wait_done() != 0) return -1;
#if defined(AIOT_STM32_G0)
    FLASH_CR = (FLASH_CR & ~(FLASH_CR_PNB_MASK | FLASH_CR_PG)) | FLASH_CR_PER | (n << FLASH_CR_PNB_SHIFT);
    FLASH_CR |= FLASH_CR_STRT;
    int rc = wait_done();
    FLASH_CR &= ~(FLASH_CR_PER | FLASH_CR_PNB_MASK);
#else
    FLASH_CR = (FLASH_CR & ~(FLASH_CR_SNB_MASK | FLASH_CR_PG)) | FLASH_CR_SER | FLASH_CR_PSIZE_X32 |
               (n << FLASH_CR_SNB_SHIFT);
    FLASH_CR |= FLASH_CR_STRT;
    int rc = wait_done();
    FLASH_CR &= ~(FLASH_CR_SER | FLASH_CR_SNB_MASK);
#endif
    FLASH_CR |= FLASH_CR_LOCK;
    return rc;
}

static int stm32_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    const aiot_stm32_flash_region_t *r = (const aiot_stm32_flash_region_t *)f->ctx;
    if (!aiot_flash_range_ok(&r->map, addr, len, PROGRAM_UNIT)) return -2;
    const uint8_t *src = (const uint8_t *)data;
    int rc = 0;
    unlock();
    if (wait_done() != 0) return -1;
#if defined(AIOT_STM32_G0)
    FLASH_CR |= FLASH_CR_PG;
#else
    FLASH_CR = (FLASH_CR & ~(3u << 8)) | FLASH_CR_PSIZE_X32 | FLASH_CR_PG;
#endif
    for (uint32_t i = 0; i < len && rc == 0; i += PROGRAM_UNIT) {
        volatile uint32_t *dst = (volatile uint32_t *)(uintptr_t)(r->base + addr + i);
        for (uint32_t w = 0; w < PROGRAM_UNIT; w += 4u) {  // data may be unaligned: assemble words
            const uint8_t *p = src + i + w;
            dst[w / 4u] = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        }
        __asm volatile("dsb" ::: "memory");  // F7: the write must leave the store buffer
        rc = wait_done();
    }
    FLASH_CR &= ~FLASH_CR_PG;
    FLASH_CR |= FLASH_CR_LOCK;
    return rc;
}

static const uint8_t *stm32_map(const aiot_flash_t *f, uint32_t addr) {
    return (const uint8_t *)(uintptr_t)(((const aiot_stm32_flash_region_t *)f->ctx)->base + addr);
}

//! Fill *f for the region described by *r (kept by the caller for the life of f).
void aiot_stm32_flash_init(aiot_flash_t *f, const aiot_stm32_flash_region_t *r, uint32_t sector_size) {
    f->sector_size = sector_size;
    f->program_align = PROGRAM_UNIT;
    f->erase = stm32_erase;
    f->program = stm32_program;
    f->map = stm32_map;
    f->ctx = (void *)(uintptr_t)r;
}

#ifdef AIOT_APP_UPDATE
//! The board file's [update] region: AIOT_UPDATE_REGION_BASE (address), AIOT_UPDATE_SECTORS
//! (its sectors: offset, size, number) and AIOT_UPDATE_SECTOR (the slots' erase unit).
const aiot_flash_t *aiot_port_update_flash(void) {
    static const aiot_flash_sector_t sectors[] = {AIOT_UPDATE_SECTORS};
    static const aiot_stm32_flash_region_t r = {AIOT_UPDATE_REGION_BASE,
                                                {sectors, (uint32_t)(sizeof sectors / sizeof sectors[0])}};
    static aiot_flash_t f;
    aiot_stm32_flash_init(&f, &r, AIOT_UPDATE_SECTOR);
    return &f;
}
#endif
