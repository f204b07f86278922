//! Simulated NOR flash for the host build: a RAM image with NOR rules (erase sets 0xFF,
//! program only clears bits), an operation counter and a power cut at a chosen operation.
//! The cut leaves that operation half done (the first half of a program, or a sector
//! whose erase was interrupted, with its second half still holding old bytes) and fails
//! every later one, as a device whose supply dropped. Tests then "reboot" on the same image.
//! Which erases and programs are allowed is decided by aiot/flash_map.h from a sector table,
//! the same checks the board drivers and the QEMU boards' flash make (sectors may differ in
//! size, as on an STM32F4: an erase clears the whole sector that begins at the address).
#include <string.h>

#include "aiot/flash_map.h"
#include "aiot/update.h"

typedef struct {
    uint8_t *mem;
    uint32_t size;
    uint32_t ops;      //!< erase + program calls so far
    int32_t cut_at;    //!< operation index that loses power, -1 = never
    uint8_t dead;      //!< power is off: every operation fails
    uint32_t erases, programs, program_bytes;
    aiot_flash_map_t map;
} aiot_flash_sim_t;

static int sim_op(aiot_flash_sim_t *s) {
    if (s->dead) return -1;
    if (s->cut_at >= 0 && (int32_t)s->ops == s->cut_at) {
        s->ops++;
        s->dead = 1;
        return 1;  // this operation is cut half way
    }
    s->ops++;
    return 0;
}

static int sim_erase(const aiot_flash_t *f, uint32_t addr) {
    aiot_flash_sim_t *s = (aiot_flash_sim_t *)f->ctx;
    const aiot_flash_sector_t *sec = aiot_flash_sector_at(&s->map, addr);
    if (sec == NULL || sec->offset + sec->size > s->size) return -2;
    int cut = sim_op(s);
    if (cut < 0) return -1;
    s->erases++;
    memset(s->mem + addr, 0xFF, cut ? aiot_flash_cut_done(sec->size) : sec->size);
    return cut ? -1 : 0;
}

static int sim_program(const aiot_flash_t *f, uint32_t addr, const void *data, uint32_t len) {
    aiot_flash_sim_t *s = (aiot_flash_sim_t *)f->ctx;
    if (!aiot_flash_range_ok(&s->map, addr, len, f->program_align) || addr + len > s->size) return -2;
    int cut = sim_op(s);
    if (cut < 0) return -1;
    s->programs++;
    uint32_t n = cut ? aiot_flash_cut_done(len) : len;
    const uint8_t *d = (const uint8_t *)data;
    for (uint32_t i = 0; i < n; i++) s->mem[addr + i] &= d[i];  // NOR: bits only go 1 -> 0
    s->program_bytes += n;
    return cut ? -1 : 0;
}

static const uint8_t *sim_map(const aiot_flash_t *f, uint32_t addr) {
    return ((aiot_flash_sim_t *)f->ctx)->mem + addr;
}

//! Set up f over the caller's memory as it is (a flash that kept its contents over a reset)
//! and its sector table (count entries, kept by the caller); sector_size is the slots' erase unit.
void aiot_flash_sim_attach(aiot_flash_t *f, aiot_flash_sim_t *s, uint8_t *mem, uint32_t size, uint32_t sector_size,
                           uint32_t program_align, const aiot_flash_sector_t *sectors, uint32_t count) {
    memset(s, 0, sizeof *s);
    s->mem = mem;
    s->size = size;
    s->map.sector = sectors;
    s->map.count = count;
    s->cut_at = -1;
    f->sector_size = sector_size;
    f->program_align = program_align;
    f->erase = sim_erase;
    f->program = sim_program;
    f->map = sim_map;
    f->ctx = s;
}

//! The same over memory erased to 0xFF here (size bytes).
void aiot_flash_sim_init(aiot_flash_t *f, aiot_flash_sim_t *s, uint8_t *mem, uint32_t size, uint32_t sector_size,
                         uint32_t program_align, const aiot_flash_sector_t *sectors, uint32_t count) {
    aiot_flash_sim_attach(f, s, mem, size, sector_size, program_align, sectors, count);
    memset(mem, 0xFF, size);
}

//! Cut power at operation `at` (counted from now); -1 = never. Power comes back on.
void aiot_flash_sim_cut(aiot_flash_sim_t *s, int32_t at) {
    s->ops = 0;
    s->dead = 0;
    s->cut_at = at;
}

uint32_t aiot_flash_sim_ops(const aiot_flash_sim_t *s) { return s->ops; }
uint32_t aiot_flash_sim_size(void) { return (uint32_t)sizeof(aiot_flash_sim_t); }
uint32_t aiot_update_sizeof(void) { return (uint32_t)sizeof(aiot_update_t); }
uint32_t aiot_flash_sizeof(void) { return (uint32_t)sizeof(aiot_flash_t); }
