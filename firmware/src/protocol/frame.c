//! Frame receiver (streaming COBS decode + validation) and transmitter (streaming encode).
#include <string.h>

#include "aiot/le.h"
#include "aiot/protocol.h"


void aiot_frame_rx_init(aiot_frame_rx_t *rx) {
    rx->len = 0;
    rx->left = 0;
    rx->code = 0;
    rx->overflow = 0;
}

static void rx_store(aiot_frame_rx_t *rx, uint8_t byte) {
    if (rx->len < sizeof rx->buf) {
        rx->buf[rx->len++] = byte;
    } else {
        rx->overflow = 1;  // keep consuming until the delimiter; the frame is reported TOO_LARGE
    }
}

static aiot_rx_result_t rx_finish(aiot_frame_rx_t *rx, aiot_frame_t *out) {
    uint16_t n = rx->len;
    uint8_t truncated = rx->left != 0;
    uint8_t overflow = rx->overflow;
    uint8_t seen = rx->code != 0;
    aiot_frame_rx_init(rx);
    out->type = n > 0 ? rx->buf[0] : 0;
    out->seq = n > 1 ? rx->buf[1] : 0;
    out->length = 0;
    out->payload = rx->buf + AIOT_FRAME_HEADER;
    out->error = 0;
    if (!seen) return AIOT_RX_NONE;  // 0x00 0x00: an idle line or a host flushing the parser
    if (overflow) {
        out->error = AIOT_PERR_TOO_LARGE;
    } else if (truncated) {
        out->error = AIOT_PERR_BAD_ENCODING;
    } else if (n < AIOT_FRAME_OVERHEAD) {
        out->error = AIOT_PERR_BAD_LENGTH;
    } else if (aiot_crc32_update(0, rx->buf, n - AIOT_FRAME_CRC) != aiot_le_rd32(rx->buf + n - AIOT_FRAME_CRC)) {
        out->error = AIOT_PERR_BAD_CRC;
    } else if (aiot_le_rd16(rx->buf + 2) != n - AIOT_FRAME_OVERHEAD) {
        out->error = AIOT_PERR_BAD_LENGTH;
    } else {
        out->length = aiot_le_rd16(rx->buf + 2);
        return AIOT_RX_FRAME;
    }
    return AIOT_RX_ERROR;
}

aiot_rx_result_t aiot_frame_rx_push(aiot_frame_rx_t *rx, uint8_t byte, aiot_frame_t *out) {
    if (byte == 0) return rx_finish(rx, out);
    if (rx->left == 0) {
        // A code byte. The block before it ended with an implicit zero unless it was full;
        // only now do we know that zero was not the end of the frame.
        if (rx->code != 0 && rx->code != 0xFF) rx_store(rx, 0);
        rx->code = byte;
        rx->left = (uint8_t)(byte - 1u);
    } else {
        rx_store(rx, byte);
        rx->left--;
    }
    return AIOT_RX_NONE;
}

// --- transmitter -----------------------------------------------------------------------

static void tx_flush_block(aiot_frame_tx_t *tx) {
    tx->block[0] = (uint8_t)(tx->n + 1u);
    tx->write(tx->ctx, tx->block, (size_t)tx->n + 1u);
    tx->n = 0;
}

static void tx_byte(aiot_frame_tx_t *tx, uint8_t b) {
    if (tx->n == 254u) tx_flush_block(tx);  // lazily, so a final full block gets no 0x01 tail
    if (b == 0) {
        tx_flush_block(tx);
    } else {
        tx->block[++tx->n] = b;
    }
}

static void tx_bytes(aiot_frame_tx_t *tx, const uint8_t *p, size_t len) {
    tx->crc = aiot_crc32_update(tx->crc, p, len);
    for (size_t i = 0; i < len; i++) tx_byte(tx, p[i]);
}

void aiot_frame_tx_begin(aiot_frame_tx_t *tx, aiot_write_fn write, void *ctx, uint8_t type, uint8_t seq,
                         uint16_t length) {
    const uint8_t hdr[4] = {type, seq, (uint8_t)(length & 0xFFu), (uint8_t)(length >> 8)};
    tx->write = write;
    tx->ctx = ctx;
    tx->crc = 0;
    tx->n = 0;
    tx->remaining = length;
    tx_bytes(tx, hdr, sizeof hdr);
}

void aiot_frame_tx_append(aiot_frame_tx_t *tx, const void *data, size_t len) {
    if (len > tx->remaining) len = tx->remaining;
    tx->remaining = (uint16_t)(tx->remaining - len);
    tx_bytes(tx, (const uint8_t *)data, len);
}

int aiot_frame_tx_end(aiot_frame_tx_t *tx) {
    static const uint8_t zero = 0;
    static const uint8_t delim = 0;
    int rc = tx->remaining ? -1 : 0;
    while (tx->remaining) {
        tx->remaining--;
        tx_bytes(tx, &zero, 1);
    }
    uint32_t c = tx->crc;
    const uint8_t crc[4] = {(uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), (uint8_t)(c >> 24)};
    for (size_t i = 0; i < sizeof crc; i++) tx_byte(tx, crc[i]);
    // Blocks are flushed lazily, so the pending one is never an empty tail after a full block.
    tx_flush_block(tx);
    tx->write(tx->ctx, &delim, 1);
    return rc;
}

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t len;
    uint8_t overflow;
} mem_sink_t;

static void mem_write(void *ctx, const uint8_t *data, size_t len) {
    mem_sink_t *s = (mem_sink_t *)ctx;
    if (s->len + len > s->cap) {
        s->overflow = 1;
        return;
    }
    memcpy(s->out + s->len, data, len);
    s->len += len;
}

size_t aiot_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out, size_t cap) {
    aiot_frame_tx_t tx;
    mem_sink_t sink = {out, cap, 0, 0};
    if (len > AIOT_FRAME_MAX_PAYLOAD) return 0;
    aiot_frame_tx_begin(&tx, mem_write, &sink, type, seq, (uint16_t)len);
    aiot_frame_tx_append(&tx, payload, len);
    aiot_frame_tx_end(&tx);
    return sink.overflow ? 0 : sink.len;
}
