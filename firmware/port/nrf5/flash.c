//! nRF52 NVMC behind aiot_flash_t, for the model-update slots (firmware/src/update):
//! 4 KB page erase and 32-bit word writes (nRF52840 PS v1.7 §4.3: CONFIG.WEN = Een for
//! ERASEPAGE, Wen for writes, wait for READY after each). Addresses are offsets into the
//! update region, which must start on a page boundary.
#include <stdint.h>

#include "aiot/update.h"

#define NVMC_REG(off) (*(volatile uint32_t *)(uintptr_t)(0x4001E000u + (off)))
#define NVMC_READY NVMC_REG(0x400u)
#define NVMC_CONFIG NVMC_REG(0x504u)
#define NVMC_ERASEPAGE NVMC_REG(0x508u)
#define NVMC_CONFIG_REN 0u
#define NVMC_CONFIG_WEN 1u
#define NVMC_CONFIG_EEN 2u
#define NRF52_PAGE 4096u

static void wait_ready(void) {
    while ((NVMC_READY & 1u) == 0u) {
    }
}

static int nvmc_erase(const aiot_flash_t *f, uint32_t addr) {
    if (addr % f->sector_size != 0) return -2;
    uint32_t base = (uint32_t)(uintptr_t)f->ctx;
    NVMC_CONFIG = NVMC_CONFIG_EEN;
    wait_ready();
    NVMC_ERASEPAGE = base + addr;
    wait_ready();
    NVMC_CONFIG = NVMC_CONFIG_REN;
    wait_ready();
    return 0;
}

static int nvmc_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    if (addr % 4u != 0 || len % 4u != 0) return -2;
    uint32_t base = (uint32_t)(uintptr_t)f->ctx;
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
    return (const uint8_t *)(uintptr_t)((uint32_t)(uintptr_t)f->ctx + addr);
}

//! Fill *f for the update region starting at `base` (page aligned).
void aiot_nrf52_flash_init(aiot_flash_t *f, uint32_t base) {
    f->sector_size = NRF52_PAGE;
    f->program_align = 4u;
    f->erase = nvmc_erase;
    f->program = nvmc_program;
    f->map = nvmc_map;
    f->ctx = (void *)(uintptr_t)base;
}

#ifdef AIOT_APP_UPDATE
//! The board file's [update] region at AIOT_UPDATE_REGION_BASE (4 KB pages).
const aiot_flash_t *aiot_port_update_flash(void) {
    static aiot_flash_t f;
    aiot_nrf52_flash_init(&f, AIOT_UPDATE_REGION_BASE);
    return &f;
}
#endif
