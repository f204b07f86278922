//! Benchmark app: runs the generated model AIOT_BENCH_RUNS times on pseudo-random
//! inputs and prints, as text lines on the console UART, the ticks of every run, the
//! per-layer ticks (with -DAIOT_PROFILE) and every output byte, so the host can check
//! bit-exactness against tflite-micro on the very same inputs. Then exits via
//! semihosting. The input generator is a 32-bit LCG the host reproduces exactly.
#include <stdint.h>

#include "aiot/model.h"
#include "aiot/port.h"

#ifndef AIOT_BENCH_RUNS
#define AIOT_BENCH_RUNS 16
#endif
#define AIOT_BENCH_SEED 0x2545F491u

static void put(const char *s) {
    const char *e = s;
    while (*e) e++;
    aiot_port_uart_write((const uint8_t *)s, (size_t)(e - s));
}

static void put_u32(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    put(&buf[i]);
}

static void put_hex_bytes(const int8_t *p, uint32_t n) {
    static const char digits[] = "0123456789abcdef";
    char pair[3] = {0, 0, 0};
    for (uint32_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)p[i];
        pair[0] = digits[b >> 4];
        pair[1] = digits[b & 0xFu];
        put(pair);
    }
}

int main(void) {
    uint32_t lcg = AIOT_BENCH_SEED;
    put("bench ");
    put(aiot_model_info.name);
    put(" runs ");
    put_u32(AIOT_BENCH_RUNS);
    put("\n");
    for (uint32_t run = 0; run < AIOT_BENCH_RUNS; run++) {
        int8_t *in = aiot_model_input();
        for (uint32_t i = 0; i < aiot_model_info.input_bytes; i++) {
            lcg = lcg * 1664525u + 1013904223u;
            in[i] = (int8_t)(uint8_t)(lcg >> 24);
        }
        uint64_t t0 = aiot_port_ticks();
        int status = aiot_model_invoke();
        uint64_t t1 = aiot_port_ticks();
        if (status != 0) {
            put("error invoke ");
            put_u32((uint32_t)(-status));
            put("\n");
            return 2;
        }
        put("run ");
        put_u32(run);
        put(" ticks ");
        put_u32((uint32_t)(t1 - t0));
        put(" out ");
        put_hex_bytes(aiot_model_output(), aiot_model_info.output_bytes);
        put("\n");
#ifdef AIOT_PROFILE
        for (uint32_t l = 0; l < aiot_model_info.num_layers; l++) {
            put("layer ");
            put_u32(l);
            put(" ");
            put(aiot_model_layer_names[l]);
            put(" ");
            put_u32(aiot_model_layer_ticks[l]);
            put("\n");
        }
#endif
    }
    put("done\n");
    return 0;
}
