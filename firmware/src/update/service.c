//! The device side of model updates: UPDATE_BEGIN / CHUNK / FINISH / STATUS and REBOOT
//! requests over the framed protocol, the trial's golden-vector self-test at boot and the
//! trial period (runs of the served model, whichever path ran them, and optionally a time)
//! before the candidate is confirmed.
//!
//! Built with -DAIOT_APP_UPDATE, -DAIOT_UPDATE_PUBLIC_KEY=<32 comma-separated bytes> (the
//! release key, from `aiot build --update-key`), the region layout defines of update.h,
//! and optionally AIOT_UPDATE_TRIAL_RUNS (default 16), AIOT_UPDATE_TRIAL_MS (default 0:
//! no time condition) and AIOT_UPDATE_SCHEMA_ID.
#include <string.h>

#include "aiot/le.h"
#include "aiot/port.h"
#include "aiot/update.h"

#ifndef AIOT_UPDATE_PUBLIC_KEY
#error "define AIOT_UPDATE_PUBLIC_KEY (the release key's 32 bytes) to build the update service"
#endif
#if !defined(AIOT_UPDATE_SECTOR) || !defined(AIOT_UPDATE_AREAS)
#error "define AIOT_UPDATE_SECTOR, AIOT_UPDATE_SLOT_SIZE, AIOT_UPDATE_AREAS (the board file's [update] table)"
#endif
#ifndef AIOT_UPDATE_TRIAL_RUNS
//! Successful runs before a trial is confirmed: the golden-vector check counts as one.
#define AIOT_UPDATE_TRIAL_RUNS 16u
#endif
#ifndef AIOT_UPDATE_TRIAL_MS
//! Milliseconds (the port's clock, from the trial's boot) before a trial may be confirmed,
//! on top of the runs; 0: the runs alone decide.
#define AIOT_UPDATE_TRIAL_MS 0u
#endif
#ifndef AIOT_UPDATE_SCHEMA_ID
#define AIOT_UPDATE_SCHEMA_ID 0u  //!< schema of the built-in model's installation; 0 = any
#endif

#ifndef AIOT_UPDATE_PLAN_ARENA
//! Arena for a package's own model (its PLAN section), used by the trial's golden check.
#define AIOT_UPDATE_PLAN_ARENA 2048u
#endif
#define GOLDEN_TIMING_REPEATS 8u  //!< golden set runs timed (plan and compiled) for STATUS

static const uint8_t release_key[32] = {AIOT_UPDATE_PUBLIC_KEY};
static aiot_plan_t plan;
static int8_t plan_arena[AIOT_UPDATE_PLAN_ARENA] __attribute__((aligned(16)));
static uint8_t golden_path;       // 0 none, 1 the compiled-in model, 2 the package's own plan
static uint32_t plan_ticks, compiled_ticks, timed_runs;  // ticks per golden set, both paths
static aiot_update_t upd;
static uint8_t ready;          // the board has an update region
static uint8_t boot_result;    // what aiot_update_boot() said
static uint8_t self_test;      // golden-vector result of this boot's trial (0 ok)
static uint8_t rx_digest[8];   // first digest bytes of the package being received (resume identity)
static uint32_t tally_ok;      // trial runs that succeeded since the last settle
static uint8_t tally_fail;     // the first failure since the last settle (a reason), 0 none
static uint64_t trial_t0;      // aiot_port_ticks() when this boot's trial began


static const uint8_t *slot_image(uint8_t slot) { return upd.flash->map(upd.flash, upd.layout.slot_addr[slot]); }

#ifndef AIOT_NO_MODEL
//! The golden set through the compiled-in model: ticks for all of them, or -1 on a mismatch.
static int64_t golden_compiled(const uint8_t *p, uint32_t count, uint32_t n_in, uint32_t n_out) {
    uint64_t t = 0;
    for (uint32_t i = 0; i < count; i++, p += n_in + n_out) {
        memcpy(aiot_model_input(), p, n_in);  // refill: the engine may reuse the input memory
        uint64_t t0 = aiot_port_ticks();
        int rc = aiot_model_invoke();
        t += aiot_port_ticks() - t0;
        if (rc != 0 || memcmp(aiot_model_output(), p + n_in, n_out) != 0) return -1;
    }
    return (int64_t)t;
}
#endif

//! The golden set through the package's own plan.
static int64_t golden_plan(const uint8_t *p, uint32_t count, uint32_t n_in, uint32_t n_out) {
    uint64_t t = 0;
    for (uint32_t i = 0; i < count; i++, p += n_in + n_out) {
        memcpy(plan_arena + plan.input_offset, p, n_in);
        uint64_t t0 = aiot_port_ticks();
        int rc = aiot_plan_invoke(&plan, plan_arena);
        t += aiot_port_ticks() - t0;
        if (rc != 0 || memcmp(plan_arena + plan.output_offset, p + n_in, n_out) != 0) return -1;
    }
    return (int64_t)t;
}

//! Run the package's golden vectors, bit for bit: on its own model when it carries a plan
//! (the model as data), else on the firmware's compiled-in model.
static int golden_check(uint8_t slot) {
    aiot_pkg_info_t info;
    const uint8_t *img = slot_image(slot);
    int v = aiot_pkg_verify(img, upd.rec.slot_bytes[slot], &upd.expect, &info);
    if (v != AIOT_UPD_OK) return v;
    uint32_t off = info.section_offset[AIOT_PKG_GOLDEN], len = info.section_length[AIOT_PKG_GOLDEN];
    if (off == 0 || len < 8) return AIOT_UPD_GOLDEN_MISMATCH;  // a package must carry its vectors
    const uint8_t *g = img + off;
    uint32_t count = (uint32_t)g[0] | ((uint32_t)g[1] << 8);
    uint32_t n_in = (uint32_t)g[2] | ((uint32_t)g[3] << 8), n_out = (uint32_t)g[4] | ((uint32_t)g[5] << 8);
    if (count == 0 || 8u + count * (n_in + n_out) > len) return AIOT_UPD_GOLDEN_MISMATCH;
    const uint8_t *vec = g + 8;
    int compiled_fits = 0;
#ifndef AIOT_NO_MODEL
    compiled_fits = n_in == aiot_model_info.input_bytes && n_out == aiot_model_info.output_bytes;
#endif
    if (info.section_offset[AIOT_PKG_PLAN] != 0) {
        int r = aiot_plan_load(img + info.section_offset[AIOT_PKG_PLAN], info.section_length[AIOT_PKG_PLAN],
                               sizeof plan_arena, &plan);
        if (r != AIOT_UPD_OK) return r;
        if (plan.input_bytes != n_in || plan.output_bytes != n_out) return AIOT_UPD_GOLDEN_MISMATCH;
        golden_path = 2;
        if (golden_plan(vec, count, n_in, n_out) < 0) return AIOT_UPD_GOLDEN_MISMATCH;
        // Timing for STATUS: the same vectors through both paths (the compiled one only if
        // its sizes fit; its outputs may differ when the package carries another network).
        for (uint32_t k = 0; k < GOLDEN_TIMING_REPEATS; k++) {
            plan_ticks += (uint32_t)golden_plan(vec, count, n_in, n_out);
#ifndef AIOT_NO_MODEL
            if (compiled_fits) {
                uint64_t t = 0;
                const uint8_t *p = vec;
                for (uint32_t i = 0; i < count; i++, p += n_in + n_out) {
                    memcpy(aiot_model_input(), p, n_in);
                    uint64_t t0 = aiot_port_ticks();
                    (void)aiot_model_invoke();
                    t += aiot_port_ticks() - t0;
                }
                compiled_ticks += (uint32_t)t;
            }
#endif
        }
        timed_runs = GOLDEN_TIMING_REPEATS * count;
        return AIOT_UPD_OK;
    }
    golden_path = 1;
#ifdef AIOT_NO_MODEL
    (void)compiled_fits;
    return AIOT_UPD_GOLDEN_MISMATCH;  // nothing here can run the package's model
#else
    if (!compiled_fits) return AIOT_UPD_GOLDEN_MISMATCH;
    return golden_compiled(vec, count, n_in, n_out) < 0 ? AIOT_UPD_GOLDEN_MISMATCH : AIOT_UPD_OK;
#endif
}

//! The installation's schema: that of the package that runs, else the built-in one. Also
//! keeps the running package's sections, so later look-ups need no second verification.
static aiot_pkg_info_t running_info;
static uint8_t running_info_valid;

static void set_expected_schema(void) {
    upd.expect.schema_id = AIOT_UPDATE_SCHEMA_ID;
    running_info_valid = 0;
    uint8_t slot = aiot_update_running(&upd);
    if (slot == AIOT_NO_SLOT) return;
    upd.expect.schema_id = 0;
    if (aiot_pkg_verify(slot_image(slot), upd.rec.slot_bytes[slot], &upd.expect, &running_info) == AIOT_UPD_OK) {
        upd.expect.schema_id = running_info.schema_id;
        running_info_valid = 1;
    }
}

// --- the model that serves ----------------------------------------------------------------

static aiot_model_info_t plan_info;  // INFO's view of the running release's network
static char plan_name[48];
static uint8_t serving_plan;         // 1: the running release's plan serves, 0: the compiled-in model

static int8_t *plan_input(void) { return plan_arena + plan.input_offset; }
static const int8_t *plan_output(void) { return plan_arena + plan.output_offset; }
//! Every run of the served model, whichever path asked for it, is a trial run.
static int counted(int rc) {
    aiot_update_service_model_ran(rc == 0);
    return rc;
}
static int plan_invoke(void) { return counted(aiot_plan_invoke(&plan, plan_arena)); }
static const aiot_served_model_t from_plan = {&plan_info, plan_input, plan_output, plan_invoke};
#ifndef AIOT_NO_MODEL
static int compiled_invoke(void) { return counted(aiot_model_invoke()); }
static const aiot_served_model_t compiled = {&aiot_model_info, aiot_model_input, aiot_model_output, compiled_invoke};
#endif

const aiot_served_model_t *aiot_served_model(void) {
    if (serving_plan) return &from_plan;
#ifdef AIOT_NO_MODEL
    return NULL;
#else
    return &compiled;
#endif
}

//! The "name" string of the release's metadata JSON (json.dumps output), or "" if absent.
//! An escaped character is kept as the character after the backslash: INFO shows it only.
static void meta_name(const uint8_t *json, uint32_t len, char *out, size_t cap) {
    static const char key[] = "\"name\"";
    out[0] = '\0';
    for (uint32_t i = 0; i + sizeof key - 1 <= len; i++) {
        if (memcmp(json + i, key, sizeof key - 1) != 0) continue;
        uint32_t j = i + (uint32_t)sizeof key - 1;
        while (j < len && (json[j] == ' ' || json[j] == ':')) j++;
        if (j >= len || json[j] != '"') return;
        size_t n = 0;
        for (j++; j < len && json[j] != '"' && n + 1 < cap; j++) {
            if (json[j] == '\\' && j + 1 < len) j++;
            out[n++] = (char)json[j];
        }
        out[n] = '\0';
        return;
    }
}

static float rdf32(const uint8_t *p) {
    uint32_t v = aiot_le_rd32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

//! Serve the running release's plan when it has one that loads into the arena, else the
//! compiled-in model. Called at boot and whenever a trial decision changes what runs.
static void serve_running_release(void) {
    serving_plan = 0;
    uint8_t slot = ready ? aiot_update_running(&upd) : AIOT_NO_SLOT;
    if (slot == AIOT_NO_SLOT || !running_info_valid || running_info.section_offset[AIOT_PKG_PLAN] == 0) return;
    const uint8_t *img = slot_image(slot);
    const uint8_t *p = img + running_info.section_offset[AIOT_PKG_PLAN];
    if (aiot_plan_load(p, running_info.section_length[AIOT_PKG_PLAN], sizeof plan_arena, &plan) != AIOT_UPD_OK) return;
    memset(&plan_info, 0, sizeof plan_info);
    meta_name(img + running_info.section_offset[AIOT_PKG_META], running_info.section_length[AIOT_PKG_META], plan_name,
              sizeof plan_name);
    plan_info.name = plan_name;
    // The same identity as a compiled-in model's: CRC-32 (zlib) of the .tflite it came from.
    plan_info.hash = aiot_crc32_update(0, img + running_info.section_offset[AIOT_PKG_TFLITE],
                                       running_info.section_length[AIOT_PKG_TFLITE]);
    plan_info.input_bytes = plan.input_bytes;
    plan_info.output_bytes = plan.output_bytes;
    plan_info.arena_bytes = plan.arena_bytes;
    plan_info.input_scale = rdf32(p + 28);  // header quantization (aiot.lifecycle.plan.HEADER)
    plan_info.input_zero_point = (int32_t)aiot_le_rd32(p + 32);
    plan_info.output_scale = rdf32(p + 36);
    plan_info.output_zero_point = (int32_t)aiot_le_rd32(p + 40);
    plan_info.num_layers = plan.num_layers;
    serving_plan = 1;
}

void aiot_update_service_init(void) {
    const aiot_flash_t *f = aiot_port_update_flash();
    memset(&upd, 0, sizeof upd);
    ready = f != NULL;
    if (!ready) return;
    upd.flash = f;
    static const uint32_t areas[4] = {AIOT_UPDATE_AREAS};  // record 0, record 1, slot 0, slot 1
    upd.layout.record_addr[0] = areas[0];
    upd.layout.record_addr[1] = areas[1];
    upd.layout.slot_addr[0] = areas[2];
    upd.layout.slot_addr[1] = areas[3];
    upd.layout.slot_size = AIOT_UPDATE_SLOT_SIZE;
    upd.expect.public_key = release_key;
    upd.expect.abi = AIOT_MODEL_ABI;
    upd.expect.schema_id = 0;  // the record's slots were checked against the schema when received
    upd.max_trial_boots = 1;
    upd.trial_runs_needed = AIOT_UPDATE_TRIAL_RUNS;
    boot_result = (uint8_t)aiot_update_boot(&upd);
    self_test = 0;
    tally_ok = 0;
    tally_fail = 0;
    trial_t0 = aiot_port_ticks();
    if (upd.rec.state == AIOT_REC_TRIAL) {
        self_test = (uint8_t)golden_check(upd.rec.trial);
        if (self_test != AIOT_UPD_OK) (void)aiot_update_trial_report(&upd, self_test);
        else tally_ok = 1;  // the golden vectors count as the first trial run
    }
    set_expected_schema();
    serve_running_release();
    (void)aiot_update_service_settle();  // AIOT_UPDATE_TRIAL_RUNS=1 and no time: confirmed now
}

const void *aiot_update_service_monitor_config(size_t *len) {
    uint8_t slot = ready ? aiot_update_running(&upd) : AIOT_NO_SLOT;
    *len = 0;
    if (slot == AIOT_NO_SLOT || !running_info_valid || running_info.section_offset[AIOT_PKG_MONITOR] == 0) return NULL;
    *len = running_info.section_length[AIOT_PKG_MONITOR];
    return slot_image(slot) + running_info.section_offset[AIOT_PKG_MONITOR];
}

void aiot_update_service_model_ran(int ok) {
    if (!ready || upd.rec.state != AIOT_REC_TRIAL) return;
    if (!ok) {
        if (!tally_fail) tally_fail = AIOT_UPD_SELF_TEST;
    } else if (tally_ok < 0xFFFFFFFFu) {
        tally_ok++;
    }
}

//! The trial's time condition: AIOT_UPDATE_TRIAL_MS since this boot's trial began.
static int trial_time_served(void) {
#if AIOT_UPDATE_TRIAL_MS > 0
    // ticks per ms: every port's clock runs at a multiple of 1 kHz (no 64-bit division)
    return aiot_port_ticks() - trial_t0 >= (uint64_t)AIOT_UPDATE_TRIAL_MS * (aiot_port_tick_hz() / 1000u);
#else
    return 1;
#endif
}

int aiot_update_service_settle(void) {
    uint32_t ok = tally_ok;
    uint8_t fail = tally_fail;
    tally_ok = 0;
    tally_fail = 0;
    if (!ready || upd.rec.state != AIOT_REC_TRIAL) return 0;
    uint32_t room = 0xFFFFFFFFu - upd.trial_runs;
    upd.trial_runs += ok < room ? ok : room;
    if (fail) {
        (void)aiot_update_trial_report(&upd, fail);
    } else if (upd.trial_runs >= upd.trial_runs_needed && trial_time_served()) {
        (void)aiot_update_trial_confirm(&upd);
    }
    if (upd.rec.state == AIOT_REC_TRIAL) return 0;
    set_expected_schema();
    serve_running_release();  // a revert brings back the previous release's (or the built-in) model
    return fail != 0;         // a confirmation keeps the same package serving
}

static void reply(const aiot_frame_t *f, aiot_frame_tx_t *tx, aiot_write_fn write, const uint8_t *p, size_t n) {
    aiot_frame_tx_begin(tx, write, NULL, f->type | AIOT_MSG_RESPONSE, f->seq, (uint16_t)n);
    aiot_frame_tx_append(tx, p, n);
    aiot_frame_tx_end(tx);
}

static void reply_result(const aiot_frame_t *f, aiot_frame_tx_t *tx, aiot_write_fn write, int reason, uint32_t next) {
    uint8_t r[8] = {(uint8_t)reason, upd.rx_slot, 0, 0};
    aiot_le_wr32(r + 4, next);
    reply(f, tx, write, r, sizeof r);
}

static void reply_status(const aiot_frame_t *f, aiot_frame_tx_t *tx, aiot_write_fn write) {
    uint8_t s[88];
    memset(s, 0, sizeof s);
    s[0] = ready;
    s[1] = aiot_update_running(&upd);
    s[2] = upd.rec.state;
    s[3] = upd.rec.trial_boots;
    s[4] = upd.rec.last_reason;
    s[5] = upd.rec.reverted_slot;
    s[6] = upd.rx_active;
    s[7] = boot_result;
    aiot_le_wr32(s + 8, upd.rec.seq);
    aiot_le_wr32(s + 12, upd.rx_total);
    aiot_le_wr32(s + 16, upd.rx_next);
    aiot_le_wr32(s + 20, AIOT_MODEL_ABI);
    aiot_le_wr32(s + 24, upd.expect.schema_id);
    aiot_le_wr32(s + 28, upd.rec.slot_bytes[0]);
    aiot_le_wr32(s + 32, upd.rec.slot_bytes[1]);
    memcpy(s + 36, upd.rec.slot_digest[0], 8);
    memcpy(s + 44, upd.rec.slot_digest[1], 8);
    memcpy(s + 52, rx_digest, 8);
    aiot_le_wr32(s + 60, upd.trial_runs);
    aiot_le_wr32(s + 64, upd.trial_runs_needed);
    aiot_le_wr32(s + 68, AIOT_UPDATE_SLOT_SIZE);
    s[72] = self_test;
    s[73] = upd.rx_slot;
    s[74] = golden_path;
    s[75] = serving_plan;
    aiot_le_wr32(s + 76, plan_ticks);
    aiot_le_wr32(s + 80, compiled_ticks);
    aiot_le_wr32(s + 84, timed_runs);
    reply(f, tx, write, s, sizeof s);
}

int aiot_update_service_handle(const aiot_frame_t *f, aiot_frame_tx_t *tx, aiot_write_fn write) {
    switch (f->type) {
    case AIOT_MSG_UPDATE_STATUS:
        reply_status(f, tx, write);
        return 1;
    case AIOT_MSG_REBOOT:
        reply(f, tx, write, NULL, 0);
        aiot_port_reset();  // the answer is on the wire (a blocking write) before the reset
    case AIOT_MSG_UPDATE_BEGIN:
    case AIOT_MSG_UPDATE_CHUNK:
    case AIOT_MSG_UPDATE_FINISH:
        break;
    default:
        return 0;
    }
    if (!ready) {
        reply_result(f, tx, write, AIOT_UPD_FLASH, 0);
        return 1;
    }
    if (f->type == AIOT_MSG_UPDATE_BEGIN) {
        if (f->length != 12) {
            reply_result(f, tx, write, AIOT_UPD_NOT_STARTED, 0);
            return 1;
        }
        int r = aiot_update_begin(&upd, aiot_le_rd32(f->payload));
        memcpy(rx_digest, f->payload + 4, 8);
        if (r != AIOT_UPD_OK) memset(rx_digest, 0, sizeof rx_digest);
        reply_result(f, tx, write, r, upd.rx_next);
    } else if (f->type == AIOT_MSG_UPDATE_CHUNK) {
        uint32_t next = upd.rx_next;
        int r = f->length < 4 ? AIOT_UPD_BAD_OFFSET
                              : aiot_update_write(&upd, aiot_le_rd32(f->payload), f->payload + 4, f->length - 4u, &next);
        reply_result(f, tx, write, r, next);
    } else {
        int r = aiot_update_finish(&upd);
        memset(rx_digest, 0, sizeof rx_digest);
        reply_result(f, tx, write, r, 0);
    }
    return 1;
}
