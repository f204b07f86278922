//! Two model slots and the record that says which one runs, over any aiot_flash_t.
//!
//! Power-cut safety: the record has two copies in two sectors. A write goes to the copy
//! that is not the newest valid one (erase, then program the whole record), with seq + 1;
//! until its CRC is complete the other copy stays the newest valid one. A slot is only
//! erased or written while the record names it neither active nor on trial, so a cut
//! during a transfer never touches the model that runs.
#include <string.h>

#include "aiot/protocol.h"
#include "aiot/update.h"

#define REC_SIZE ((uint32_t)sizeof(aiot_update_record_t))

uint32_t aiot_update_record_crc(const aiot_update_record_t *r) {
    return aiot_crc32_update(0, (const uint8_t *)r, offsetof(aiot_update_record_t, crc));
}

static int record_valid(const aiot_update_record_t *r) {
    return r->magic == AIOT_REC_MAGIC && r->crc == aiot_update_record_crc(r) && r->state <= AIOT_REC_TRIAL;
}

static void record_factory(aiot_update_record_t *r) {
    memset(r, 0, sizeof *r);
    r->magic = AIOT_REC_MAGIC;
    r->active = AIOT_NO_SLOT;
    r->trial = AIOT_NO_SLOT;
    r->reverted_slot = AIOT_NO_SLOT;
}

// Write *r as the next record: seq + 1, into the copy that does not hold the current one.
static int record_write(aiot_update_t *u, aiot_update_record_t *r) {
    const aiot_flash_t *f = u->flash;
    uint8_t copy = (uint8_t)(u->rec_copy ^ 1u);
    r->magic = AIOT_REC_MAGIC;
    r->seq = u->rec.seq + 1u;
    r->crc = aiot_update_record_crc(r);
    uint32_t addr = u->layout.record_addr[copy];
    if (f->erase(f, addr) != 0) return AIOT_UPD_FLASH;
    if (f->program(f, addr, r, REC_SIZE) != 0) return AIOT_UPD_FLASH;
    if (memcmp(f->map(f, addr), r, REC_SIZE) != 0) return AIOT_UPD_FLASH;
    u->rec = *r;
    u->rec_copy = copy;
    return AIOT_UPD_OK;
}

static void record_read(aiot_update_t *u) {
    const aiot_flash_t *f = u->flash;
    aiot_update_record_t c[2];
    int valid[2];
    for (int i = 0; i < 2; i++) {
        memcpy(&c[i], f->map(f, u->layout.record_addr[i]), REC_SIZE);
        valid[i] = record_valid(&c[i]);
    }
    int pick;
    if (valid[0] && valid[1]) pick = (int32_t)(c[1].seq - c[0].seq) > 0 ? 1 : 0;
    else if (valid[0] || valid[1]) pick = valid[1];
    else pick = -1;
    if (pick < 0) {  // a device that never took an update: the built-in model runs
        record_factory(&u->rec);
        u->rec_copy = 1;  // so the first write goes to copy 0
        return;
    }
    u->rec = c[pick];
    u->rec_copy = (uint8_t)pick;
}

static int slot_verify(aiot_update_t *u, uint8_t slot) {
    if (slot > 1 || u->rec.slot_bytes[slot] == 0 || u->rec.slot_bytes[slot] > u->layout.slot_size)
        return AIOT_UPD_SLOT_INVALID;
    const uint8_t *img = u->flash->map(u->flash, u->layout.slot_addr[slot]);
    aiot_pkg_info_t info;
    int r = aiot_pkg_verify(img, u->rec.slot_bytes[slot], &u->expect, &info);
    if (r != AIOT_UPD_OK) return r;
    if (memcmp(info.digest, u->rec.slot_digest[slot], sizeof u->rec.slot_digest[slot]) != 0) return AIOT_UPD_SLOT_INVALID;
    return AIOT_UPD_OK;
}

static int revert(aiot_update_t *u, int reason) {
    aiot_update_record_t r = u->rec;
    r.reverted_slot = r.trial;
    r.state = AIOT_REC_CONFIRMED;
    r.trial = AIOT_NO_SLOT;
    r.trial_boots = 0;
    r.last_reason = (uint8_t)reason;
    u->trial_runs = 0;
    return record_write(u, &r);
}

int aiot_update_boot(aiot_update_t *u) {
    if (u->max_trial_boots == 0) u->max_trial_boots = 1;
    u->rx_active = 0;
    u->trial_runs = 0;
    record_read(u);
    if (u->rec.state == AIOT_REC_TRIAL) {
        if (u->rec.trial_boots >= u->max_trial_boots) return revert(u, AIOT_UPD_TRIAL_RESET);
        int v = slot_verify(u, u->rec.trial);
        if (v != AIOT_UPD_OK) return revert(u, v);
        aiot_update_record_t r = u->rec;
        r.trial_boots++;
        int w = record_write(u, &r);
        if (w != AIOT_UPD_OK) return w;
    } else if (u->rec.active != AIOT_NO_SLOT && slot_verify(u, u->rec.active) != AIOT_UPD_OK) {
        // The confirmed slot no longer verifies (flash decay): run the built-in model
        // rather than an unverified one; aiot_update_running() says so.
        u->rec.active = AIOT_NO_SLOT;
        u->rec.last_reason = AIOT_UPD_SLOT_INVALID;
    }
    return AIOT_UPD_OK;
}

uint8_t aiot_update_running(const aiot_update_t *u) {
    return u->rec.state == AIOT_REC_TRIAL ? u->rec.trial : u->rec.active;
}

int aiot_update_begin(aiot_update_t *u, uint32_t total) {
    const aiot_flash_t *f = u->flash;
    if (u->rec.state == AIOT_REC_TRIAL) return AIOT_UPD_BUSY;
    if (total == 0 || total > u->layout.slot_size) return AIOT_UPD_TOO_LARGE;
    uint8_t slot = u->rec.active == 0 ? 1 : 0;
    // Forget the slot's old content in the record first: if power is cut while it is
    // erased, the record must not name a half-erased slot.
    if (u->rec.slot_bytes[slot] != 0) {
        aiot_update_record_t r = u->rec;
        r.slot_bytes[slot] = 0;
        memset(r.slot_digest[slot], 0, sizeof r.slot_digest[slot]);
        int w = record_write(u, &r);
        if (w != AIOT_UPD_OK) return w;
    }
    for (uint32_t a = 0; a < total; a += f->sector_size)
        if (f->erase(f, u->layout.slot_addr[slot] + a) != 0) return AIOT_UPD_FLASH;
    u->rx_active = 1;
    u->rx_slot = slot;
    u->rx_total = total;
    u->rx_next = 0;
    return AIOT_UPD_OK;
}

int aiot_update_write(aiot_update_t *u, uint32_t offset, const uint8_t *data, uint32_t len, uint32_t *next_out) {
    const aiot_flash_t *f = u->flash;
    if (!u->rx_active) return AIOT_UPD_NOT_STARTED;
    if (next_out) *next_out = u->rx_next;
    if (offset + len <= u->rx_next) return AIOT_UPD_OK;  // already have it: a resend
    if (offset != u->rx_next) return AIOT_UPD_BAD_OFFSET;
    if (len > u->rx_total - offset) return AIOT_UPD_TOO_LARGE;
    uint32_t align = f->program_align ? f->program_align : 1u;
    uint32_t whole = len - len % align;
    if (whole != len && offset + len != u->rx_total) return AIOT_UPD_BAD_OFFSET;  // only the last chunk may be ragged
    uint32_t base = u->layout.slot_addr[u->rx_slot] + offset;
    if (offset % align != 0) return AIOT_UPD_BAD_OFFSET;
    if (whole && f->program(f, base, data, whole) != 0) return AIOT_UPD_FLASH;
    if (whole != len) {  // pad the tail to the program size with the erased value
        uint8_t tail[16];
        if (align > sizeof tail) return AIOT_UPD_FLASH;
        memset(tail, 0xFF, sizeof tail);
        memcpy(tail, data + whole, len - whole);
        if (f->program(f, base + whole, tail, align) != 0) return AIOT_UPD_FLASH;
    }
    u->rx_next = offset + len;
    if (next_out) *next_out = u->rx_next;
    return AIOT_UPD_OK;
}

int aiot_update_finish(aiot_update_t *u) {
    if (!u->rx_active) return AIOT_UPD_NOT_STARTED;
    if (u->rx_next != u->rx_total) return AIOT_UPD_INCOMPLETE;
    const uint8_t *img = u->flash->map(u->flash, u->layout.slot_addr[u->rx_slot]);
    aiot_pkg_info_t info;
    int v = aiot_pkg_verify(img, u->rx_total, &u->expect, &info);
    u->rx_active = 0;
    if (v != AIOT_UPD_OK) return v;
    aiot_update_record_t r = u->rec;
    r.slot_bytes[u->rx_slot] = info.image_bytes;
    memcpy(r.slot_digest[u->rx_slot], info.digest, sizeof r.slot_digest[u->rx_slot]);
    r.state = AIOT_REC_TRIAL;
    r.trial = u->rx_slot;
    r.trial_boots = 0;
    r.last_reason = 0;
    r.reverted_slot = AIOT_NO_SLOT;
    return record_write(u, &r);
}

int aiot_update_trial_report(aiot_update_t *u, int reason) {
    if (u->rec.state != AIOT_REC_TRIAL) return AIOT_UPD_NOT_STARTED;
    if (reason != AIOT_UPD_OK) return revert(u, reason);
    if (++u->trial_runs < u->trial_runs_needed) return AIOT_UPD_OK;
    return aiot_update_trial_confirm(u);
}

int aiot_update_trial_confirm(aiot_update_t *u) {
    if (u->rec.state != AIOT_REC_TRIAL) return AIOT_UPD_NOT_STARTED;
    aiot_update_record_t r = u->rec;
    r.active = r.trial;
    r.trial = AIOT_NO_SLOT;
    r.state = AIOT_REC_CONFIRMED;
    r.trial_boots = 0;
    u->trial_runs = 0;
    return record_write(u, &r);
}
