//! Contract between generated model code (toolkit.codegen) and everything that runs it.
//! A generated model.c defines the symbols below; the app, the host library and the
//! benchmarks only use this header. The caller never allocates: the arena is static.
#ifndef AIOT_MODEL_H
#define AIOT_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;          //!< model name from the package manifest
    uint32_t hash;             //!< CRC-32 of the .tflite the code was generated from
    uint32_t input_bytes;      //!< bytes of the input tensor (of every input, in order, when several): int8
                               //!< elements, or 2 per element of an int16 one (16x8 mode, little-endian)
    uint32_t output_bytes;     //!< bytes of the output tensor (of every output, in order, when several), the same way
    uint32_t arena_bytes;      //!< static arena size from the memory plan
    float input_scale;
    int32_t input_zero_point;
    float output_scale;
    int32_t output_zero_point;
    uint16_t num_layers;       //!< kernel calls in aiot_model_invoke()
} aiot_model_info_t;

extern const aiot_model_info_t aiot_model_info;

//! Input tensor inside the arena; write input_bytes bytes before invoking (a 16x8 model's
//! int16 input is read through this pointer as int16_t, 2-byte aligned).
int8_t *aiot_model_input(void);
//! Output tensor inside the arena; valid after a successful invoke.
const int8_t *aiot_model_output(void);
//! Every input and output tensor, in the .tflite's order (the generated model.h defines
//! AIOT_MODEL_NUM_INPUTS / AIOT_MODEL_NUM_OUTPUTS): tensor i of aiot_model_<role>_sizes[i] bytes
//! (int8 elements; two per int16 element in the 16x8 mode), NULL past the last. Input 0 is
//! aiot_model_input(), output 0 aiot_model_output().
extern const uint32_t aiot_model_num_inputs;
extern const uint32_t aiot_model_input_sizes[];
int8_t *aiot_model_input_n(uint32_t i);
extern const uint32_t aiot_model_num_outputs;
extern const uint32_t aiot_model_output_sizes[];
const int8_t *aiot_model_output_n(uint32_t i);
//! Put every state back where it starts (an SVDF's memory), as tflite-micro's Reset does;
//! a model without state has nothing to do. The state also starts so at power-up.
void aiot_model_reset(void);
//! Run every layer once. Returns 0 on success, a negative aiot status otherwise.
int aiot_model_invoke(void);

#ifdef AIOT_PROFILE
//! With -DAIOT_PROFILE, invoke() stores each layer's duration in port ticks here.
extern uint32_t aiot_model_layer_ticks[];
extern const char *const aiot_model_layer_names[];
#endif

#ifdef __cplusplus
}
#endif
#endif
