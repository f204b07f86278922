//! Request dispatch. Every valid request gets exactly one response frame (its type | 0x80,
//! or AIOT_MSG_ERROR), every broken frame one error frame, and nothing is acted on unless
//! its CRC and length check out. Responses are streamed straight from where the data lives
//! (model output tensor, info struct), so the app needs no transmit buffer beyond the
//! 255-byte COBS block inside aiot_frame_tx_t.
#include "app/app.h"

#include <string.h>

#include "aiot/port.h"
#include "aiot/protocol.h"
#ifndef AIOT_NO_MODEL
#include "aiot/model.h"
#endif

static aiot_frame_rx_t rx;
static aiot_frame_tx_t tx;

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
    uint16_t flags = 0;
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

static void dispatch(const aiot_frame_t *f) {
    switch (f->type) {
        case AIOT_MSG_INFO:
            handle_info(f);
            break;
        case AIOT_MSG_INFER:
            handle_infer(f);
            break;
        case AIOT_MSG_EXIT:
            handle_exit(f);
            break;
        default:
            send_error(f->seq, AIOT_PERR_UNKNOWN_TYPE, f->type, "unknown request type");
            break;
    }
}

void aiot_app_init(void) { aiot_frame_rx_init(&rx); }

void aiot_app_feed(uint8_t byte) {
    aiot_frame_t f;
    switch (aiot_frame_rx_push(&rx, byte, &f)) {
        case AIOT_RX_FRAME:
            dispatch(&f);
            break;
        case AIOT_RX_ERROR:
            send_error(f.seq, f.error, f.type, NULL);
            break;
        default:
            break;
    }
}
