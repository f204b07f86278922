//! Benchmark app: runs the generated model AIOT_BENCH_RUNS times on pseudo-random
//! inputs and prints, as text lines on the console UART, the ticks of every run, the
//! per-layer ticks (with -DAIOT_PROFILE) and every output byte, so the host can check
//! bit-exactness against tflite-micro on the very same inputs. Then exits via
//! semihosting. The input generator is a 32-bit LCG the host reproduces exactly.
#include <stdint.h>

#include "aiot/model.h"
#include "aiot/console.h"
#include "aiot/port.h"
#if defined(__has_include)
#if __has_include("model.h")
#include "model.h"  // the generated sizes; AIOT_MODEL_FLOAT_INPUT/OUTPUT for a float-interface model
#endif
#endif

#ifndef AIOT_BENCH_RUNS
#define AIOT_BENCH_RUNS 16
#endif
#define AIOT_BENCH_SEED 0x2545F491u

int main(void) {
    uint32_t lcg = AIOT_BENCH_SEED;
    aiot_console_puts("bench ");
    aiot_console_puts(aiot_model_info.name);
    aiot_console_puts(" runs ");
    aiot_console_put_u64(AIOT_BENCH_RUNS);
    aiot_console_puts("\n");
    for (uint32_t run = 0; run < AIOT_BENCH_RUNS; run++) {
#ifdef AIOT_MODEL_FLOAT_INPUT
        // float inputs (top 16 bits / 4096, exact), quantized by the model's own entry point
        static float in_f32[AIOT_MODEL_INPUT_ELEMENTS];
        for (uint32_t i = 0; i < AIOT_MODEL_INPUT_ELEMENTS; i++) {
            lcg = lcg * 1664525u + 1013904223u;
            in_f32[i] = (float)(int16_t)(uint16_t)(lcg >> 16) * (1.0f / 4096.0f);
        }
        if (aiot_model_quantize_input(in_f32) != 0) {
            aiot_console_puts("error quantize_input\n");
            return 2;
        }
#else
        // every input in the .tflite's order, one LCG stream across them
        for (uint32_t k = 0; k < aiot_model_num_inputs; k++) {
            int8_t *in = aiot_model_input_n(k);
            for (uint32_t i = 0; i < aiot_model_input_sizes[k]; i++) {
                lcg = lcg * 1664525u + 1013904223u;
                in[i] = (int8_t)(uint8_t)(lcg >> 24);
            }
        }
#endif
        uint64_t t0 = aiot_port_ticks();
        int status = aiot_model_invoke();
        uint64_t t1 = aiot_port_ticks();
        if (status != 0) {
            aiot_console_puts("error invoke ");
            aiot_console_put_u64((uint32_t)(-status));
            aiot_console_puts("\n");
            return 2;
        }
        aiot_console_puts("run ");
        aiot_console_put_u64(run);
        aiot_console_puts(" ticks ");
        aiot_console_put_u64((uint32_t)(t1 - t0));
        aiot_console_puts(" out ");
#ifdef AIOT_MODEL_FLOAT_OUTPUT
        static float out_f32[AIOT_MODEL_OUTPUT_ELEMENTS];
        if (aiot_model_dequantize_output(out_f32) != 0) {
            aiot_console_puts("\nerror dequantize_output\n");
            return 2;
        }
        aiot_console_put_hex(out_f32, sizeof out_f32);  // the float32 bytes, little-endian
#else
        for (uint32_t k = 0; k < aiot_model_num_outputs; k++) {  // every output, in order, on one line
            aiot_console_put_hex(aiot_model_output_n(k), aiot_model_output_sizes[k]);
        }
#endif
        aiot_console_puts("\n");
#ifdef AIOT_PROFILE
        for (uint32_t l = 0; l < aiot_model_info.num_layers; l++) {
            aiot_console_puts("layer ");
            aiot_console_put_u64(l);
            aiot_console_puts(" ");
            aiot_console_puts(aiot_model_layer_names[l]);
            aiot_console_puts(" ");
            aiot_console_put_u64(aiot_model_layer_ticks[l]);
            aiot_console_puts("\n");
        }
#endif
    }
    aiot_console_puts("done\n");
    return 0;
}
