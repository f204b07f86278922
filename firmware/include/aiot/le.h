//! Little-endian fields of protocol frames, package records and plans, read and written in
//! one place (byte by byte: no alignment or host byte-order assumption).
#ifndef AIOT_LE_H
#define AIOT_LE_H

#include <stdint.h>

static inline uint16_t aiot_le_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t aiot_le_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void aiot_le_wr16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void aiot_le_wr32(uint8_t *p, uint32_t v) {
    aiot_le_wr16(p, v);
    aiot_le_wr16(p + 2, v >> 16);
}

#endif
