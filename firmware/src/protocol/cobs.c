//! Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999), buffer-to-buffer form.
//! A full 254-byte block at the very end is not followed by an empty 0x01 block: the
//! same canonical form as the `cobs` Python package and the Wikipedia examples.
#include "aiot/protocol.h"

size_t aiot_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
    size_t o = 0;      // next free output byte
    size_t code_at;    // where the current block's code byte goes
    uint8_t code = 1;  // 1 + data bytes in the current block
    if (cap == 0) return 0;
    code_at = o++;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code = 1;
            if (o >= cap) return 0;
            code_at = o++;
            continue;
        }
        if (o >= cap) return 0;
        out[o++] = in[i];
        code++;
        if (code == 0xFF) {
            out[code_at] = code;
            code = 1;
            if (i + 1 == len) return o;  // canonical form: no trailing empty block
            if (o >= cap) return 0;
            code_at = o++;
        }
    }
    out[code_at] = code;
    return o;
}

long aiot_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        if (code == 0) return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= len || in[i] == 0 || o >= cap) return -1;
            out[o++] = in[i++];
        }
        // Every block but a full one ends with an implicit zero, except at the very end.
        if (code != 0xFF && i < len) {
            if (o >= cap) return -1;
            out[o++] = 0;
        }
    }
    return (long)o;
}
