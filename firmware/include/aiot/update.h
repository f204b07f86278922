//! Model updates in the field: signed model packages, two slots, a power-cut-safe record.
//!
//! A model package is an MCUboot image (signed by imgtool, Ed25519 over the SHA-256 of
//! header + body + protected TLVs) whose body is an "AIPK" container: metadata, the .tflite,
//! the monitor configuration and golden vectors (format: docs/lifecycle.md). The device keeps
//! two slots and a small record (two copies, sequence number, CRC-32) that says which slot
//! runs and whether a new one is on trial; every change of the record is one sector write,
//! so a power cut at any moment leaves either the old or the new record valid.
//!
//! All flash access goes through aiot_flash_t, so the same logic runs in the host build
//! (a simulated flash that can cut power at any write), under QEMU and on boards.
#ifndef AIOT_UPDATE_H
#define AIOT_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "aiot/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

//! Layout version of the AIPK container and of the model data a firmware can run.
//! A package states the ABI it needs; a firmware refuses any other.
#ifndef AIOT_MODEL_ABI
#define AIOT_MODEL_ABI 1u
#endif

//! Why a package was refused or a trial reverted (first byte of the device's answer).
typedef enum {
    AIOT_UPD_OK = 0,
    AIOT_UPD_TRUNCATED = 1,       //!< shorter than its headers and TLVs say
    AIOT_UPD_NOT_IMAGE = 2,       //!< no MCUboot image header (magic)
    AIOT_UPD_BAD_TLV = 3,         //!< TLV area malformed
    AIOT_UPD_BAD_HASH = 4,        //!< SHA-256 of the image differs from its hash TLV (corrupted)
    AIOT_UPD_UNSIGNED = 5,        //!< no Ed25519 signature TLV
    AIOT_UPD_WRONG_KEY = 6,       //!< signed by a key this device does not trust
    AIOT_UPD_BAD_SIGNATURE = 7,   //!< signature does not verify
    AIOT_UPD_NOT_PACKAGE = 8,     //!< body is not an AIPK model package, or a section is broken
    AIOT_UPD_WRONG_ABI = 9,       //!< package needs another model ABI than this firmware's
    AIOT_UPD_WRONG_SCHEMA = 10,   //!< package is for another sensor schema than this installation
    AIOT_UPD_TOO_LARGE = 11,      //!< does not fit a slot
    AIOT_UPD_BAD_OFFSET = 12,     //!< chunk beyond the next expected offset (resume from ack)
    AIOT_UPD_NOT_STARTED = 13,    //!< chunk or finish without a begin
    AIOT_UPD_INCOMPLETE = 14,     //!< finish before every byte arrived
    AIOT_UPD_FLASH = 15,          //!< flash erase/program failed (or power was lost)
    AIOT_UPD_BUSY = 16,           //!< a trial is running: confirm or revert it first
    AIOT_UPD_GOLDEN_MISMATCH = 17,//!< trial: the model did not reproduce its golden vectors
    AIOT_UPD_TRIAL_RESET = 18,    //!< trial: the device reset (watchdog, crash, power) before confirming
    AIOT_UPD_SELF_TEST = 19,      //!< trial: a self-test failed
    AIOT_UPD_SLOT_INVALID = 20,   //!< the slot the record names no longer verifies
} aiot_update_reason_t;

//! Short English text for a reason (never NULL).
const char *aiot_update_reason_text(int reason);

// ---------------------------------------------------------------------------------------
// Package verification

//! MCUboot TLV types used (bootutil/image.h).
#define AIOT_IMG_MAGIC 0x96f3b83du
#define AIOT_IMG_TLV_INFO_MAGIC 0x6907u
#define AIOT_IMG_TLV_PROT_INFO_MAGIC 0x6908u
#define AIOT_IMG_TLV_KEYHASH 0x01u
#define AIOT_IMG_TLV_PUBKEY 0x02u
#define AIOT_IMG_TLV_SHA256 0x10u
#define AIOT_IMG_TLV_ED25519 0x24u

//! AIPK section kinds.
enum {
    AIOT_PKG_META = 1,      //!< JSON metadata (version, ABI, schema, data hash, settings, ...)
    AIOT_PKG_TFLITE = 2,    //!< the int8 .tflite
    AIOT_PKG_MONITOR = 3,   //!< aiot_monitor_config_t bytes
    AIOT_PKG_GOLDEN = 4,    //!< count u16, input_bytes u16, output_bytes u16, 0 u16, then pairs
    AIOT_PKG_PLAN = 5,      //!< reserved: the engine plan as data
};
#define AIOT_PKG_MAGIC 0x4b504941u  //!< "AIPK" little-endian
#define AIOT_PKG_HEADER 24u
#define AIOT_PKG_SECTION 16u
#define AIOT_PKG_MAX_SECTIONS 8u

//! What the device expects of a package.
typedef struct {
    const uint8_t *public_key;  //!< 32-byte Ed25519 key the device trusts
    uint32_t abi;               //!< AIOT_MODEL_ABI of this firmware
    uint32_t schema_id;         //!< input schema of this installation; 0 = accept any
} aiot_pkg_expect_t;

typedef struct {
    uint32_t image_bytes;       //!< whole signed image, TLVs included
    uint8_t digest[32];         //!< SHA-256 from the image (identity of a release)
    uint8_t version[8];         //!< MCUboot version: major u8, minor u8, revision u16, build u32
    uint32_t abi, schema_id, model_version;
    uint32_t body_offset;       //!< AIPK container offset in the image (the header size)
    uint32_t section_offset[AIOT_PKG_MAX_SECTIONS + 1];  //!< by kind, from the image start; 0 = absent
    uint32_t section_length[AIOT_PKG_MAX_SECTIONS + 1];
} aiot_pkg_info_t;

//! Check a whole package in memory. Returns AIOT_UPD_OK or the reason it is refused;
//! fills *info (when not NULL) as far as it got.
int aiot_pkg_verify(const uint8_t *image, uint32_t len, const aiot_pkg_expect_t *expect, aiot_pkg_info_t *info);

//! Ed25519 (RFC 8032) check of sig over msg, using the bundled crypto library.
//! Returns 0 when it verifies.
int aiot_ed25519_check(const uint8_t sig[64], const uint8_t public_key[32], const uint8_t *msg, size_t len);
//! SHA-256 of len bytes (bundled crypto library).
void aiot_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

// ---------------------------------------------------------------------------------------
// Flash and slots

//! A NOR-like flash: erase sets a sector to 0xFF, program only clears bits, reads are
//! memory-mapped. Addresses are offsets from the start of the update region.
typedef struct aiot_flash {
    uint32_t sector_size;
    uint32_t program_align;  //!< program address and length must be multiples of this
    int (*erase)(const struct aiot_flash *f, uint32_t addr);   //!< one sector; 0 on success
    int (*program)(const struct aiot_flash *f, uint32_t addr, const void *data, uint32_t len);
    const uint8_t *(*map)(const struct aiot_flash *f, uint32_t addr);
    void *ctx;
} aiot_flash_t;

//! Region layout: two record sectors, then two slots (each slot_size, a sector multiple).
typedef struct {
    uint32_t record_addr[2];
    uint32_t slot_addr[2];
    uint32_t slot_size;
} aiot_slot_layout_t;

enum { AIOT_REC_CONFIRMED = 0, AIOT_REC_TRIAL = 1 };
#define AIOT_REC_MAGIC 0x52554941u  //!< "AIUR"
#define AIOT_NO_SLOT 0xFFu

//! The record, written whole into one sector (two copies alternate).
typedef struct {
    uint32_t magic;
    uint32_t seq;            //!< higher wins (serial arithmetic); each write increments it
    uint8_t active;          //!< confirmed slot, AIOT_NO_SLOT = the firmware's built-in model
    uint8_t state;           //!< AIOT_REC_CONFIRMED or AIOT_REC_TRIAL
    uint8_t trial;           //!< slot on trial (state TRIAL)
    uint8_t trial_boots;     //!< boots of the trial so far
    uint8_t last_reason;     //!< why the last trial reverted (aiot_update_reason_t), 0 none
    uint8_t reverted_slot;   //!< slot that was reverted, AIOT_NO_SLOT none
    uint8_t reserved[2];
    uint32_t slot_bytes[2];  //!< image size in each slot, 0 = empty
    uint8_t slot_digest[2][8];  //!< first bytes of each slot's SHA-256 (names the release)
    uint32_t reserved2;      //!< pads the record to 48 bytes (a multiple of every program size)
    uint32_t crc;            //!< CRC-32 of everything above
} aiot_update_record_t;

typedef struct {
    const aiot_flash_t *flash;
    aiot_slot_layout_t layout;
    aiot_pkg_expect_t expect;
    uint8_t max_trial_boots;     //!< a trial that boots more often than this reverts (default 1)
    uint32_t trial_runs_needed;  //!< successful trial runs before the candidate is confirmed
    // state
    aiot_update_record_t rec;
    uint8_t rec_copy;            //!< which copy rec came from (the other is written next)
    uint8_t rx_active;
    uint8_t rx_slot;
    uint32_t rx_total, rx_next;
    uint32_t trial_runs;
} aiot_update_t;

//! Read the record (newest valid copy) and act on a trial: count this boot, or revert it
//! when it already booted max_trial_boots times without confirming. Verifies the slot
//! that will run; falls back to the confirmed one (or the built-in model) if it does not.
int aiot_update_boot(aiot_update_t *u);
//! Slot whose model runs now (the trial slot during a trial), AIOT_NO_SLOT = built-in.
uint8_t aiot_update_running(const aiot_update_t *u);
//! Start receiving `total` bytes into the inactive slot (erases it).
int aiot_update_begin(aiot_update_t *u, uint32_t total);
//! Write a chunk at `offset`. A chunk before the next expected offset is acknowledged
//! without writing (a resend after a lost answer); one past it is refused. *next_out
//! receives the next offset the device expects.
int aiot_update_write(aiot_update_t *u, uint32_t offset, const uint8_t *data, uint32_t len, uint32_t *next_out);
//! All bytes received: verify the package in the slot and, if it passes, record it as the
//! trial (it runs from the next boot).
int aiot_update_finish(aiot_update_t *u);
//! Report one run of the trial model: ok (golden vectors and self-tests passed) or the
//! reason it failed. A failure reverts at once; trial_runs_needed successes confirm.
int aiot_update_trial_report(aiot_update_t *u, int reason);
//! Confirm the trial now (the trial slot becomes the active one), whatever the run count:
//! for a caller that keeps its own trial period (the device service's runs and time).
int aiot_update_trial_confirm(aiot_update_t *u);

//! CRC-32 used by the record (same as the protocol's).
uint32_t aiot_update_record_crc(const aiot_update_record_t *r);

// ---------------------------------------------------------------------------------------
// The model as data (firmware/src/update/plan.c): a package's PLAN section walked with the
// engine's kernels (aiot.lifecycle.plan; format in docs/lifecycle.md). Version 2 runs
// FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D, ADD/SUB, MUL,
// MINIMUM/MAXIMUM, SOFTMAX, MEAN, int8 QUANTIZE, RELU, RELU6, LOGISTIC, TANH and LEAKY_RELU
// layers (reshapes cost nothing); version 1 plans (FULLY_CONNECTED only) still load.

#include "aiot/engine.h"

#ifndef AIOT_PLAN_MAX_LAYERS
#define AIOT_PLAN_MAX_LAYERS 16u  //!< layers a plan may have (MLPerf Tiny vww needs 32)
#endif
#define AIOT_PLAN_MAGIC 0x314e4c50u  //!< "PLN1"
#define AIOT_PLAN_HEADER 44u
#define AIOT_PLAN_LAYER 48u          //!< a version 1 record
#define AIOT_PLAN_RECORD 16u         //!< a version 2 record's head (kind, bytes, in0, in1, out)

//! Version 2 layer kinds (aiot.lifecycle.plan KIND_*).
enum {
    AIOT_PLAN_FC = 1,
    AIOT_PLAN_CONV = 2,
    AIOT_PLAN_DEPTHWISE = 3,
    AIOT_PLAN_AVG_POOL = 4,
    AIOT_PLAN_MAX_POOL = 5,
    AIOT_PLAN_ADD = 6,
    AIOT_PLAN_SOFTMAX = 7,
    AIOT_PLAN_MEAN = 8,
    AIOT_PLAN_MUL = 9,
    AIOT_PLAN_REQUANTIZE = 10,  //!< int8 QUANTIZE, RELU
    AIOT_PLAN_CLAMP = 11,       //!< RELU6
    AIOT_PLAN_LOGISTIC = 12,
    AIOT_PLAN_TANH = 13,
    AIOT_PLAN_LEAKY_RELU = 14,
    AIOT_PLAN_MIN_MAX = 15,
};

typedef struct {
    uint8_t kind;              //!< AIOT_PLAN_*
    uint8_t wide;              //!< conv/depthwise: int16 (wide) filter, else int8
    uint32_t in_offset, in2_offset, out_offset;  //!< arena offsets
    const void *weights;       //!< in the plan (the kernel's layout)
    const int32_t *bias;
    union {                    //!< the kernel's parameters; tables point into the plan
        aiot_fc_params_t fc;
        aiot_conv_params_t conv;
        aiot_pool_params_t pool;
        aiot_add_params_t add;
        aiot_softmax_params_t softmax;
        aiot_mean_params_t mean;
        aiot_mul_params_t mul;
        aiot_requantize_params_t requantize;
        aiot_sigmoid_params_t sigmoid;
        aiot_leaky_relu_params_t leaky;
        struct { aiot_bcast_t shape; uint8_t is_max; } min_max;
        struct { uint32_t size; int32_t lo, hi; } clamp;
    } p;
} aiot_plan_layer_t;

typedef struct {
    uint16_t num_layers;
    uint32_t arena_bytes, input_offset, output_offset, input_bytes, output_bytes;
    aiot_plan_layer_t layer[AIOT_PLAN_MAX_LAYERS];
} aiot_plan_t;

//! Check a plan (4-byte aligned, read in place) against itself and an arena of arena_cap
//! bytes, and prepare its layers. Returns AIOT_UPD_OK or why it cannot run.
int aiot_plan_load(const uint8_t *plan, uint32_t len, uint32_t arena_cap, aiot_plan_t *out);
//! Run every layer on arena (input at input_offset, output at output_offset).
int aiot_plan_invoke(const aiot_plan_t *p, int8_t *arena);

// ---------------------------------------------------------------------------------------
// Device service (firmware/src/update/service.c, linked with -DAIOT_APP_UPDATE): the
// UPDATE_* protocol requests, the boot-time trial self-test, the trial period.

//! The board's update region (firmware/port/<family>/flash.c), NULL if it has none.
//! Layout defines (aiot.lifecycle.firmware.layout_defines, from the board file's [update]):
//! AIOT_UPDATE_SECTOR (the slots' erase unit), AIOT_UPDATE_SLOT_SIZE, AIOT_UPDATE_AREAS
//! (offsets of record 0, record 1, slot 0, slot 1 from the region's base),
//! AIOT_UPDATE_SECTORS (the areas' sectors, aiot/flash_map.h) and, on real boards,
//! AIOT_UPDATE_REGION_BASE (the region's address).
const aiot_flash_t *aiot_port_update_flash(void);

//! At boot, before serving requests: read the record, run a trial's golden vectors.
void aiot_update_service_init(void);
//! Handle an UPDATE_* or REBOOT request; returns 0 if f is not one of them.
int aiot_update_service_handle(const aiot_frame_t *f, aiot_frame_tx_t *tx, aiot_write_fn write);
//! The monitor configuration section of the package that runs (NULL if none): the app
//! applies it at boot; a configuration the monitor refuses fails the trial.
const void *aiot_update_service_monitor_config(size_t *len);
//! One run of the served model (ok = 1) or a self-test failure (ok = 0) during a trial.
//! Every invoke of aiot_served_model() reports itself (INFER, the monitor's windows, any
//! other path); the app reports a window the monitor could not score. Only tallied here:
//! the trial is decided by aiot_update_service_settle(), between requests.
void aiot_update_service_model_ran(int ok);
//! Decide the trial from what was tallied: a failure reverts (SELF_TEST), enough runs
//! (AIOT_UPDATE_TRIAL_RUNS) and, when AIOT_UPDATE_TRIAL_MS is set, that long since the
//! trial's boot (the port's clock) confirm. Call where no model run is in progress (the app
//! does after every request). Returns 1 when the model that serves changed (a revert):
//! the caller sets up what depends on it (the monitor) again; else 0.
int aiot_update_service_settle(void);

#include "aiot/model.h"
//! The model the device serves (INFER, INFO, the monitor's score): the running release's
//! own network when its package carries a plan (the model as data), else the model
//! compiled into the firmware. Same calls as model.h, through pointers chosen at boot and
//! after each trial decision. A release without a plan, or none, serves the compiled-in
//! model with its own info and functions (info == &aiot_model_info).
typedef struct {
    const aiot_model_info_t *info;
    int8_t *(*input)(void);
    const int8_t *(*output)(void);
    int (*invoke)(void);
} aiot_served_model_t;
//! The model that serves now (never NULL in a firmware with a compiled-in model; NULL
//! without one unless a release's plan serves).
const aiot_served_model_t *aiot_served_model(void);

#ifdef __cplusplus
}
#endif
#endif
