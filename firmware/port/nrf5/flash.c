//! nRF52 NVMC behind aiot_flash_t, for the model-update slots (firmware/src/update):
//! 4 KB page erase and 32-bit word writes (nRF52840 PS v1.7 §4.3: CONFIG.WEN = Een for
//! ERASEPAGE, Wen for writes, wait for READY after each). Addresses are offsets into the
//! update region; which pages belong to it comes from the board file's layout as a table
//! (aiot/flash_map.h): an erase must start a listed page, a program must stay in listed pages.
#include <stdint.h>

#include "aiot/flash_map.h"
#include "aiot/update.h"

#define NVMC_REG(off) (*(volatile uint32_t *)(uintptr_t)(0x4001E000u + (off)))
#define NVMC_READY NVMC_REG(0x400u)
#define NVMC_CONFIG NVMC_REG(0x504u)
#define NVMC_ERASEPAGE NVMC_REG(0x508u)
#define NVMC_CONFIG_REN 0u
#define NVMC_CONFIG_WEN 1u
#define NVMC_CONFIG_EEN 2u
#define NRF52_PAGE 4096u

typedef struct {
    uint32_t base;
    aiot_flash_map_t map;
} aiot_nrf52_flash_region_t;

static void wait_ready(void) {
    while ((NVMC_READY & 1u) == 0u) {
    }
}

static int nvmc_erase(const aiot_flash_t *f, uint32_t addr) {
    const aiot_nrf52_flash_region_t *r = (const aiot_nrf52_flash_region_t *)f->ctx;
    if (aiot_flash_sector_at(&r->map, addr) == NULL) return -2;
    uint32_t base = r->base;
    NVMC_CONFIG = NVMC_CONFIG_EEN;
    wait_ready();
    NVMC_ERASEPAGE = base + addr;
    wait_ready();
    NVMC_CONFIG = NVMC_CONFIG_REN;
    wait_ready();
    return 0;
}

static int nvmc_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    const aiot_nrf52_flash_region_t *r = (const aiot_nrf52_flash_region_t *)f->ctx;
    if (!aiot_flash_range_ok(&r->map, addr, len, 4u)) return -2;
    uint32_t base = r->base;
    const uint8_t *src = (const uint8_t *)data;
    NVMC_CONFIG = NVMC_CONFIG_WEN;
    wait_ready();
    for (uint32_t i = 0; i < len; i += 4u) {
        const uint8_t *p = src + i;
        *(volatile uint32_t *)(uintptr_t)(base + addr + i) =
            (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        wait_ready();
    }
    NVMC_CONFIG = NVMC_CONFIG_REN;
    wait_ready();
    // Read back: a word written twice without an erase only ANDs bits (PS §4.3).
    const volatile uint8_t *dst = (const volatile uint8_t *)(uintptr_t)(base + addr);
    for (uint32_t i = 0; i < len; i++)
        if (dst[i] != src[i]) return -1;
    return 0;
}

static const uint8_t *nvmc_map(const aiot_flash_t *f, uint32_t addr) {
    return (const uint8_t *)(uintptr_t)(((const aiot_nrf52_flash_region_t *)f->ctx)->base + addr);
}

//! Fill *f for the region described by *r (page aligned; kept by the caller for the life of f).
void aiot_nrf52_flash_init(aiot_flash_t *f, const aiot_nrf52_flash_region_t *r) {
    f->sector_size = NRF52_PAGE;
    f->program_align = 4u;
    f->erase = nvmc_erase;
    f->program = nvmc_program;
    f->map = nvmc_map;
    f->ctx = (void *)(uintptr_t)r;
}

#ifdef AIOT_APP_UPDATE
//! The board file's [update] region at AIOT_UPDATE_REGION_BASE, its pages AIOT_UPDATE_SECTORS.
const aiot_flash_t *aiot_port_update_flash(void) {
    static const aiot_flash_sector_t pages[] = {AIOT_UPDATE_SECTORS};
    static const aiot_nrf52_flash_region_t r = {AIOT_UPDATE_REGION_BASE,
                                                {pages, (uint32_t)(sizeof pages / sizeof pages[0])}};
    static aiot_flash_t f;
    aiot_nrf52_flash_init(&f, &r);
    return &f;
}
#endif
