//! Framed serial protocol between the host (toolkit.hil) and the device app.
//!
//! A frame before encoding:  type u8 | seq u8 | length u16 LE | payload[length] | crc32 u32 LE
//! with the CRC-32 (zlib / IEEE 802.3) over type..payload. The frame is COBS-encoded, so it
//! contains no 0x00, and terminated by a single 0x00: a receiver that lost sync simply
//! restarts at the next 0x00. Full specification: docs/protocol.md.
//!
//! Memory: the receiver owns one buffer of AIOT_FRAME_MAX_PAYLOAD + 8 bytes, decoded in
//! place as bytes arrive; the transmitter COBS-encodes on the fly through one 255-byte
//! block, so a response payload is never assembled in RAM (the app streams it from where
//! the data already is, e.g. the model's output tensor).
#ifndef AIOT_PROTOCOL_H
#define AIOT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AIOT_PROTO_VERSION_MAJOR 1u
#define AIOT_PROTO_VERSION_MINOR 3u  // 1.1: CONFIG_PART, CONFIG_GET by offset, INFO ends with the device id;
                                     // 1.2: every input and output (INFO's tensor table, INFER carries them all);
                                     // 1.3: STATS [first channel u8], for installations wider than one answer

#ifndef AIOT_FRAME_MAX_PAYLOAD
//! Largest payload either side may send. Sized for one int8 input tensor of up to 1 KiB;
//! raise it (-DAIOT_FRAME_MAX_PAYLOAD=...) for bigger inputs on boards with RAM to spare.
#define AIOT_FRAME_MAX_PAYLOAD 1024u
#endif
#if AIOT_FRAME_MAX_PAYLOAD > 65535u
#error "AIOT_FRAME_MAX_PAYLOAD must fit the u16 length field"
#endif

#define AIOT_FRAME_HEADER 4u  //!< type, seq, length
#define AIOT_FRAME_CRC 4u
#define AIOT_FRAME_OVERHEAD (AIOT_FRAME_HEADER + AIOT_FRAME_CRC)
#define AIOT_FRAME_MAX_DECODED (AIOT_FRAME_MAX_PAYLOAD + AIOT_FRAME_OVERHEAD)
//! Worst-case COBS size of a maximal frame, delimiter included.
#define AIOT_FRAME_MAX_ENCODED (AIOT_FRAME_MAX_DECODED + AIOT_FRAME_MAX_DECODED / 254u + 2u)

//! Request types. A response carries type | AIOT_MSG_RESPONSE and the request's seq.
typedef enum {
    AIOT_MSG_INFO = 0x01,
    AIOT_MSG_INFER = 0x02,
    AIOT_MSG_PUSH = 0x03,
    AIOT_MSG_EVENTS = 0x04,
    AIOT_MSG_STATS = 0x05,
    AIOT_MSG_CONFIG_GET = 0x06,
    AIOT_MSG_CONFIG_SET = 0x07,
    AIOT_MSG_RESET_BASELINE = 0x08,
    AIOT_MSG_INFER_INPUT = 0x09,   //!< one chunk of an input larger than a frame: offset u32 | bytes
    AIOT_MSG_INFER_OUTPUT = 0x0A,  //!< read part of the last INFER's output: offset u32 | length u16
    AIOT_MSG_CONFIG_PART = 0x0B,   //!< one part of a monitor configuration larger than a frame
                                   //!< (protocol 1.1): offset u16 | total u16 | crc32 u32 | flags u8 | 0 u8 | bytes
    AIOT_MSG_EXIT = 0x0F,
    // Model updates (firmware built with -DAIOT_APP_UPDATE; docs/lifecycle.md).
    AIOT_MSG_UPDATE_BEGIN = 0x20,
    AIOT_MSG_UPDATE_CHUNK = 0x21,
    AIOT_MSG_UPDATE_FINISH = 0x22,
    AIOT_MSG_UPDATE_STATUS = 0x23,
    AIOT_MSG_REBOOT = 0x24,
    AIOT_MSG_ERROR = 0x7F,
    AIOT_MSG_RESPONSE = 0x80,
} aiot_msg_type_t;

//! Error codes: first payload byte of an AIOT_MSG_ERROR frame.
typedef enum {
    AIOT_PERR_BAD_CRC = 1,       //!< CRC mismatch: the frame was dropped, not acted on
    AIOT_PERR_BAD_LENGTH = 2,    //!< shorter than a header + CRC, or length field != payload size
    AIOT_PERR_UNKNOWN_TYPE = 3,  //!< valid frame, but not a request type this firmware knows
    AIOT_PERR_BAD_PAYLOAD = 4,   //!< valid frame, but the payload does not fit the request
    AIOT_PERR_TOO_LARGE = 5,     //!< more than AIOT_FRAME_MAX_PAYLOAD bytes before the delimiter
    AIOT_PERR_MODEL_ERROR = 6,   //!< aiot_model_invoke() failed
    AIOT_PERR_NO_MODEL = 7,      //!< firmware built without a model (AIOT_NO_MODEL)
    AIOT_PERR_BAD_ENCODING = 8,  //!< COBS block ran past the delimiter (line noise, lost bytes)
    AIOT_PERR_NO_MONITOR = 9,    //!< firmware built without the monitor
    AIOT_PERR_MONITOR_ERROR = 10,  //!< the monitor rejected the request (detail says why)
} aiot_proto_error_t;

// ---------------------------------------------------------------------------------------
// CRC-32 and COBS primitives

//! zlib-compatible running CRC-32: crc32(b, crc32(a, 0)) == crc32(a || b); start with 0.
uint32_t aiot_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

//! COBS-encode len bytes (no delimiter appended). Returns the encoded size, or 0 if it does
//! not fit cap (the encoding of anything, even empty input, is at least 1 byte).
//! Caller guarantees: in and out do not overlap.
size_t aiot_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

//! Decode one COBS block sequence (without its 0x00 delimiter). Returns the decoded size,
//! or -1 if the input contains a 0x00, a block runs past the end, or the result exceeds cap.
long aiot_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

// ---------------------------------------------------------------------------------------
// Receiver: feed bytes one at a time as they arrive.

typedef enum {
    AIOT_RX_NONE = 0,   //!< nothing complete yet (or an empty frame was skipped)
    AIOT_RX_FRAME = 1,  //!< a valid frame is in *out; act on it
    AIOT_RX_ERROR = 2,  //!< a broken frame ended; out->error says why; never act on it
} aiot_rx_result_t;

typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t length;
    const uint8_t *payload;  //!< points into the receiver's buffer; valid until the next push
    uint8_t error;           //!< aiot_proto_error_t when AIOT_RX_ERROR, else 0
} aiot_frame_t;

typedef struct {
    uint16_t len;   //!< decoded bytes so far (stops growing at the buffer size)
    uint8_t left;   //!< data bytes remaining in the current COBS block
    uint8_t code;   //!< current block's code byte; 0 before the first one
    uint8_t overflow;
    uint8_t buf[AIOT_FRAME_MAX_DECODED];
} aiot_frame_rx_t;

void aiot_frame_rx_init(aiot_frame_rx_t *rx);

//! Push one received byte. On AIOT_RX_FRAME / AIOT_RX_ERROR the receiver has already
//! reset for the next frame, but out->payload stays valid until the next push.
//! For an error, out->type/seq are the (unverified) bytes received, 0 if there were none.
aiot_rx_result_t aiot_frame_rx_push(aiot_frame_rx_t *rx, uint8_t byte, aiot_frame_t *out);

// ---------------------------------------------------------------------------------------
// Transmitter: stream one frame out through a write callback.

typedef void (*aiot_write_fn)(void *ctx, const uint8_t *data, size_t len);

typedef struct {
    aiot_write_fn write;
    void *ctx;
    uint32_t crc;
    uint16_t remaining;  //!< payload bytes still owed by the caller
    uint8_t n;           //!< data bytes in block[1..]
    uint8_t block[255];  //!< block[0] is the code byte slot
} aiot_frame_tx_t;

//! Start a frame whose payload will be exactly `length` bytes (appended in any pieces).
void aiot_frame_tx_begin(aiot_frame_tx_t *tx, aiot_write_fn write, void *ctx, uint8_t type, uint8_t seq,
                         uint16_t length);
//! Append payload bytes. Bytes beyond the declared length are dropped (a caller bug).
void aiot_frame_tx_append(aiot_frame_tx_t *tx, const void *data, size_t len);
//! Finish the frame: pads a short payload with zeros (so the frame stays well-formed),
//! then writes the CRC, the last block and the delimiter. Returns 0, or -1 if it had to pad.
int aiot_frame_tx_end(aiot_frame_tx_t *tx);

//! Encode a whole frame into memory (host tools, tests). Returns the encoded size including
//! the 0x00 delimiter, or 0 if it does not fit cap or len > AIOT_FRAME_MAX_PAYLOAD.
size_t aiot_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
