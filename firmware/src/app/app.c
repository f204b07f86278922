//! Request dispatch. Every valid request gets exactly one response frame (its type | 0x80,
//! or AIOT_MSG_ERROR), every broken frame one error frame, and nothing is acted on unless
//! its CRC and length check out. Responses are streamed straight from where the data lives
//! (model output tensor, info struct), so the app needs no transmit buffer beyond the
//! 255-byte COBS block inside aiot_frame_tx_t.
#include "app/app.h"

#include <string.h>

#include "aiot/monitor.h"
#include "aiot/port.h"
#include "aiot/protocol.h"
#ifndef AIOT_NO_MODEL
#include "aiot/model.h"
#endif

#ifndef AIOT_APP_PUSH_OUTPUTS
//! Window outputs one PUSH may return. A batch stops early (the response says how many
//! samples were consumed) rather than buffer more: 8 x 32 B of RAM on every board.
#define AIOT_APP_PUSH_OUTPUTS 8
#endif
#ifndef AIOT_APP_EVENT_BATCH
//! Events one EVENTS response carries; they stay held on the device until acknowledged.
#define AIOT_APP_EVENT_BATCH 8
#endif
#if AIOT_APP_PUSH_OUTPUTS < AIOT_MONITOR_MAX_OUTPUTS
#error "AIOT_APP_PUSH_OUTPUTS must hold the outputs of at least one sample"
#endif
#if 8u + AIOT_APP_PUSH_OUTPUTS * 32u > AIOT_FRAME_MAX_PAYLOAD || 8u + AIOT_APP_EVENT_BATCH * 16u > AIOT_FRAME_MAX_PAYLOAD
#error "PUSH or EVENTS responses would not fit AIOT_FRAME_MAX_PAYLOAD"
#endif

// Monitor structs travel as raw little-endian bytes in field order (monitor.h promises a
// plain layout). Their sizes are stated on the wire (STATS) or checked (CONFIG_SET), so a
// host with a different monitor.h gets a clear error instead of misread fields.

static aiot_frame_rx_t rx;
static aiot_frame_tx_t tx;

static aiot_monitor_t monitor;
static uint8_t monitor_ready;  // a configuration was accepted (boot default or CONFIG_SET)
static aiot_monitor_output_t push_out[AIOT_APP_PUSH_OUTPUTS];
static aiot_monitor_event_t held[AIOT_APP_EVENT_BATCH];  // sent, not yet acknowledged
static uint8_t held_count;

//! Link counters for STATS: what arrived broken is counted, never acted on.
static struct {
    uint32_t frames_ok;
    uint32_t errors[AIOT_PERR_MONITOR_ERROR + 1];
} link;

static void uart_sink(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    aiot_port_uart_write(data, len);
}

static void put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}
static inline void put_f32(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    put_u32(p, v);
}

static void begin(uint8_t type, uint8_t seq, size_t len) {
    aiot_frame_tx_begin(&tx, uart_sink, NULL, type, seq, (uint16_t)len);
}

static void send_error(uint8_t seq, uint8_t code, uint8_t req_type, const char *detail) {
    size_t n = detail ? strlen(detail) : 0;
    const uint8_t head[2] = {code, req_type};
    if (code < sizeof link.errors / sizeof link.errors[0]) link.errors[code]++;
    if (n > 200) n = 200;
    begin(AIOT_MSG_ERROR, seq, sizeof head + n);
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, detail, n);
    aiot_frame_tx_end(&tx);
}

static void append_str(const char *s) {
    size_t n = s ? strlen(s) : 0;
    uint8_t len;
    if (n > 255) n = 255;
    len = (uint8_t)n;
    aiot_frame_tx_append(&tx, &len, 1);
    aiot_frame_tx_append(&tx, s, n);
}

static size_t str_field(const char *s) {
    size_t n = s ? strlen(s) : 0;
    return 1 + (n > 255 ? 255 : n);
}

//! Decimal text of v for error details (no printf: keeps newlib's stdio out of the image).
static inline char *fmt_u32(char *end, uint32_t v) {
    *--end = '\0';
    do {
        *--end = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    return end;
}

static void handle_info(const aiot_frame_t *f) {
    uint8_t fixed[48];
    const char *model_name = "";
    uint16_t flags = 0x2u;  // the monitor is always linked into the device app
#ifdef AIOT_UART_RX_IRQ
    flags |= 0x4u;  // interrupt-driven receive: the core sleeps between requests
#endif
    memset(fixed, 0, sizeof fixed);
    fixed[0] = AIOT_PROTO_VERSION_MAJOR;
    fixed[1] = AIOT_PROTO_VERSION_MINOR;
#ifndef AIOT_NO_MODEL
    flags |= 0x1u;
    model_name = aiot_model_info.name;
    put_u32(fixed + 4, aiot_model_info.hash);
    put_u32(fixed + 8, aiot_model_info.input_bytes);
    put_u32(fixed + 12, aiot_model_info.output_bytes);
    put_u32(fixed + 16, aiot_model_info.arena_bytes);
    put_f32(fixed + 20, aiot_model_info.input_scale);
    put_u32(fixed + 24, (uint32_t)aiot_model_info.input_zero_point);
    put_f32(fixed + 28, aiot_model_info.output_scale);
    put_u32(fixed + 32, (uint32_t)aiot_model_info.output_zero_point);
    put_u16(fixed + 46, aiot_model_info.num_layers);
#endif
    put_u16(fixed + 2, flags);
    put_u32(fixed + 36, aiot_port_tick_hz());
    put_u32(fixed + 40, AIOT_CPU_HZ);
    put_u16(fixed + 44, AIOT_FRAME_MAX_PAYLOAD);
    begin(f->type | AIOT_MSG_RESPONSE, f->seq,
          sizeof fixed + str_field(AIOT_FIRMWARE_VERSION) + str_field(AIOT_BOARD_NAME) + str_field(model_name));
    aiot_frame_tx_append(&tx, fixed, sizeof fixed);
    append_str(AIOT_FIRMWARE_VERSION);
    append_str(AIOT_BOARD_NAME);
    append_str(model_name);
    aiot_frame_tx_end(&tx);
}

static void handle_infer(const aiot_frame_t *f) {
#ifdef AIOT_NO_MODEL
    send_error(f->seq, AIOT_PERR_NO_MODEL, f->type, "firmware built without a model");
#else
    uint8_t head[5];
    uint64_t t0, t1;
    int rc;
    if (f->length != aiot_model_info.input_bytes) {
        char num[12], msg[64] = "expected input_bytes = ";
        strcat(msg, fmt_u32(num + sizeof num, aiot_model_info.input_bytes));
        strcat(msg, ", got ");
        strcat(msg, fmt_u32(num + sizeof num, f->length));
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, msg);
        return;
    }
    memcpy(aiot_model_input(), f->payload, f->length);
    t0 = aiot_port_ticks();
    rc = aiot_model_invoke();
    t1 = aiot_port_ticks();
    if (rc != 0) {
        char num[12], msg[48] = "aiot_model_invoke returned -";
        strcat(msg, fmt_u32(num + sizeof num, (uint32_t)(-rc)));
        send_error(f->seq, AIOT_PERR_MODEL_ERROR, f->type, msg);
        return;
    }
    head[0] = 0;
    put_u32(head + 1, (uint32_t)(t1 - t0));
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, sizeof head + aiot_model_info.output_bytes);
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, aiot_model_output(), aiot_model_info.output_bytes);
    aiot_frame_tx_end(&tx);
#endif
}

static void handle_exit(const aiot_frame_t *f) {
    if (f->length != 1) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, "EXIT takes one byte: the exit code");
        return;
    }
    uint8_t code = f->payload[0];
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, 0);
    aiot_frame_tx_end(&tx);
    aiot_port_exit(code);
}

// --- monitor requests ------------------------------------------------------------------

#ifdef AIOT_NO_MODEL
//! Without a model the monitor scores deviation from the learned baselines: reconstructing
//! every normalized feature as 0 makes the window error a sum of squared z-scores.
static int zero_score(void *ctx, const float *features, size_t n, float *reconstruction) {
    (void)ctx;
    (void)features;
    memset(reconstruction, 0, n * sizeof *reconstruction);
    return 0;
}
#define APP_SCORE zero_score
#else
#define APP_SCORE aiot_monitor_engine_score
#endif

//! Returns 0 for a live update, 1 for a fresh installation, -1 (and *why) if refused;
//! a refused configuration leaves the running monitor untouched.
static int monitor_configure(const aiot_monitor_config_t *cfg, int fresh, const char **why) {
    if (aiot_monitor_check_config(cfg) != AIOT_MONITOR_OK) {
        *why = "invalid monitor configuration (aiot_monitor_check_config)";
        return -1;
    }
#ifndef AIOT_NO_MODEL
    if ((uint32_t)cfg->num_channels * cfg->window != aiot_model_info.input_bytes ||
        aiot_model_info.input_bytes != aiot_model_info.output_bytes) {
        *why = "num_channels x window must equal the model's input and output size";
        return -1;
    }
#endif
    const aiot_monitor_config_t *cur = &monitor.cfg;
    if (monitor_ready && !fresh && cfg->num_channels == cur->num_channels && cfg->window == cur->window &&
        cfg->sample_period_ms == cur->sample_period_ms && cfg->commission_samples == cur->commission_samples &&
        cfg->calibration_windows == cur->calibration_windows) {
        if (aiot_monitor_update_config(&monitor, cfg) != AIOT_MONITOR_OK) {
            *why = "the monitor refused the configuration update";
            return -1;
        }
        return 0;
    }
    // New structure: a fresh installation (commissioning again); drop held events too.
    if (aiot_monitor_init(&monitor, cfg, APP_SCORE, NULL) != AIOT_MONITOR_OK) {
        monitor_ready = 0;
        *why = "aiot_monitor_init failed";
        return -1;
    }
    held_count = 0;
    monitor_ready = 1;
    return 1;
}

static int require_monitor(const aiot_frame_t *f) {
    if (monitor_ready) return 1;
    send_error(f->seq, AIOT_PERR_MONITOR_ERROR, f->type, "monitor not configured: send CONFIG_SET first");
    return 0;
}

static void handle_push(const aiot_frame_t *f) {
    if (!require_monitor(f)) return;
    if (f->length < 4) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, "PUSH needs count u16, channels u8, reserved u8");
        return;
    }
    uint32_t count = (uint32_t)f->payload[0] | ((uint32_t)f->payload[1] << 8);
    uint8_t channels = f->payload[2];
    uint32_t stride = 5u + 4u * channels;
    if (channels != monitor.cfg.num_channels) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, "channel count differs from the monitor configuration");
        return;
    }
    if (f->length != 4u + count * stride) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, "length != 4 + count x (5 + 4 x channels)");
        return;
    }
    uint32_t consumed = 0;
    int n_out = 0;
    const uint8_t *p = f->payload + 4;
    // Stop while a worst-case sample (AIOT_MONITOR_MAX_OUTPUTS outputs) still fits.
    while (consumed < count && n_out + AIOT_MONITOR_MAX_OUTPUTS <= AIOT_APP_PUSH_OUTPUTS) {
        aiot_sample_t s;
        memset(&s, 0, sizeof s);
        memcpy(&s.timestamp_ms, p, 4);  // little-endian on every supported core
        s.valid_mask = p[4];
        memcpy(s.value, p + 5, 4u * channels);
        int r = aiot_monitor_push(&monitor, &s, &push_out[n_out], AIOT_APP_PUSH_OUTPUTS - (size_t)n_out);
        if (r < 0) break;  // EINVAL cannot happen with a checked config; never loop on it
        n_out += r;
        consumed++;
        p += stride;
    }
    aiot_monitor_stats_t st;
    aiot_monitor_stats(&monitor, &st);
    uint8_t head[4];
    put_u16(head, consumed);
    head[2] = (uint8_t)n_out;
    head[3] = (uint8_t)(st.events_pending + held_count);
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, sizeof head + (size_t)n_out * sizeof push_out[0]);
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, push_out, (size_t)n_out * sizeof push_out[0]);
    aiot_frame_tx_end(&tx);
}

static void handle_events(const aiot_frame_t *f) {
    if (!require_monitor(f)) return;
    if (f->length != 3) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, "EVENTS takes ack_valid u8, ack_seq u16");
        return;
    }
    if (f->payload[0]) {
        // Drop what the host confirmed: every held event up to ack_seq (serial arithmetic),
        // so a retried request with the same ack gets the same batch again.
        uint16_t ack = (uint16_t)(f->payload[1] | (f->payload[2] << 8));
        uint8_t keep = 0;
        for (uint8_t i = 0; i < held_count; i++) {
            if ((uint16_t)(ack - held[i].seq) >= 0x8000u) held[keep++] = held[i];
        }
        held_count = keep;
    }
    while (held_count < AIOT_APP_EVENT_BATCH && aiot_monitor_pop_event(&monitor, &held[held_count])) held_count++;
    aiot_monitor_stats_t st;
    aiot_monitor_stats(&monitor, &st);
    uint8_t head[8];
    head[0] = held_count;
    head[1] = st.events_pending;
    put_u16(head + 2, 0);
    put_u32(head + 4, st.events_dropped);
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, sizeof head + (size_t)held_count * sizeof held[0]);
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, held, (size_t)held_count * sizeof held[0]);
    aiot_frame_tx_end(&tx);
}

static void handle_stats(const aiot_frame_t *f) {
    aiot_monitor_stats_t st;
    uint8_t head[4] = {monitor_ready, 0, (uint8_t)sizeof(aiot_monitor_stats_t),
                       (uint8_t)sizeof(aiot_monitor_channel_info_t)};
    uint8_t counters[4 * 8 + 8];
    uint8_t channels = monitor_ready ? monitor.cfg.num_channels : 0;
    memset(&st, 0, sizeof st);
    if (monitor_ready) aiot_monitor_stats(&monitor, &st);
    head[1] = channels;
    put_u32(counters, link.frames_ok);
    put_u32(counters + 4, link.errors[AIOT_PERR_BAD_CRC]);
    put_u32(counters + 8, link.errors[AIOT_PERR_BAD_LENGTH]);
    put_u32(counters + 12, link.errors[AIOT_PERR_BAD_ENCODING]);
    put_u32(counters + 16, link.errors[AIOT_PERR_TOO_LARGE]);
    put_u32(counters + 20, link.errors[AIOT_PERR_UNKNOWN_TYPE]);
    put_u32(counters + 24, link.errors[AIOT_PERR_BAD_PAYLOAD]);
    put_u32(counters + 28, link.errors[AIOT_PERR_MODEL_ERROR] + link.errors[AIOT_PERR_MONITOR_ERROR]);
    uint64_t now = aiot_port_ticks();
    put_u32(counters + 32, (uint32_t)now);
    put_u32(counters + 36, (uint32_t)(now >> 32));
    begin(f->type | AIOT_MSG_RESPONSE, f->seq,
          sizeof head + sizeof st + sizeof counters + (size_t)channels * sizeof(aiot_monitor_channel_info_t));
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, &st, sizeof st);
    aiot_frame_tx_append(&tx, counters, sizeof counters);
    for (uint8_t c = 0; c < channels; c++) {
        aiot_monitor_channel_info_t ci;
        aiot_monitor_channel_info(&monitor, c, &ci);
        aiot_frame_tx_append(&tx, &ci, sizeof ci);
    }
    aiot_frame_tx_end(&tx);
}

static void handle_config_get(const aiot_frame_t *f) {
    uint8_t head[4] = {monitor_ready, 0, 0, 0};
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, sizeof head + sizeof monitor.cfg);
    aiot_frame_tx_append(&tx, head, sizeof head);
    aiot_frame_tx_append(&tx, &monitor.cfg, sizeof monitor.cfg);  // zeros until configured
    aiot_frame_tx_end(&tx);
}

static void handle_config_set(const aiot_frame_t *f) {
    aiot_monitor_config_t cfg;
    const char *why = "";
    if (f->length != sizeof cfg && !(f->length == sizeof cfg + 1u && f->payload[sizeof cfg] <= 1u)) {
        char num[12], msg[80] = "CONFIG_SET takes an aiot_monitor_config_t of ";
        strcat(msg, fmt_u32(num + sizeof num, (uint32_t)sizeof cfg));
        strcat(msg, " bytes [+ fresh u8 0|1]");
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, msg);
        return;
    }
    memcpy(&cfg, f->payload, sizeof cfg);
    int r = monitor_configure(&cfg, f->length > sizeof cfg && f->payload[sizeof cfg], &why);
    if (r < 0) {
        send_error(f->seq, AIOT_PERR_BAD_PAYLOAD, f->type, why);
        return;
    }
    uint8_t reinit = (uint8_t)r;
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, 1);
    aiot_frame_tx_append(&tx, &reinit, 1);
    aiot_frame_tx_end(&tx);
}

static void handle_reset_baseline(const aiot_frame_t *f) {
    if (!require_monitor(f)) return;
    aiot_monitor_reset_baseline(&monitor);
    begin(f->type | AIOT_MSG_RESPONSE, f->seq, 0);
    aiot_frame_tx_end(&tx);
}

static void dispatch(const aiot_frame_t *f) {
    switch (f->type) {
        case AIOT_MSG_INFO:
            handle_info(f);
            break;
        case AIOT_MSG_INFER:
            handle_infer(f);
            break;
        case AIOT_MSG_PUSH:
            handle_push(f);
            break;
        case AIOT_MSG_EVENTS:
            handle_events(f);
            break;
        case AIOT_MSG_STATS:
            handle_stats(f);
            break;
        case AIOT_MSG_CONFIG_GET:
            handle_config_get(f);
            break;
        case AIOT_MSG_CONFIG_SET:
            handle_config_set(f);
            break;
        case AIOT_MSG_RESET_BASELINE:
            handle_reset_baseline(f);
            break;
        case AIOT_MSG_EXIT:
            handle_exit(f);
            break;
        default:
            send_error(f->seq, AIOT_PERR_UNKNOWN_TYPE, f->type, "unknown request type");
            break;
    }
}

void aiot_app_init(void) {
    aiot_frame_rx_init(&rx);
#if defined(AIOT_APP_CHANNELS) && defined(AIOT_APP_WINDOW) && defined(AIOT_APP_PERIOD_MS)
    // Built for a known sensor set-up: start commissioning at boot, no CONFIG_SET needed.
    aiot_monitor_config_t cfg;
    const char *why;
    aiot_monitor_default_config(&cfg, AIOT_APP_CHANNELS, AIOT_APP_WINDOW, AIOT_APP_PERIOD_MS);
    (void)monitor_configure(&cfg, 1, &why);
#endif
}

void aiot_app_feed(uint8_t byte) {
    aiot_frame_t f;
    switch (aiot_frame_rx_push(&rx, byte, &f)) {
        case AIOT_RX_FRAME:
            link.frames_ok++;
            dispatch(&f);
            break;
        case AIOT_RX_ERROR:
            send_error(f.seq, f.error, f.type, NULL);
            break;
        default:
            break;
    }
}
