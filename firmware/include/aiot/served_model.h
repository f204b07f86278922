//! The model the device serves, for the app and the monitor's engine adapter alike.
//! With model updates built in (AIOT_APP_UPDATE) it is the running release's own network
//! when the release carries one (aiot_served_model(), firmware/src/update/service.c), else
//! the compiled-in model of aiot/model.h; without them, always the compiled-in model.
#ifndef AIOT_SERVED_MODEL_H
#define AIOT_SERVED_MODEL_H

#include "aiot/model.h"

#ifdef AIOT_APP_UPDATE
#include "aiot/update.h"
#define MODEL_INFO (*aiot_served_model()->info)
#define MODEL_INPUT (aiot_served_model()->input)
#define MODEL_OUTPUT (aiot_served_model()->output)
#define MODEL_INVOKE (aiot_served_model()->invoke)
#else
#define MODEL_INFO aiot_model_info
#define MODEL_INPUT aiot_model_input
#define MODEL_OUTPUT aiot_model_output
#define MODEL_INVOKE aiot_model_invoke
#endif

// --- every input and output tensor of the served model (protocol 1.2) ---------------------
// INFER carries every input one after the other in the .tflite's order (the flat vector the
// host build and tflite-micro's reference take) and answers every output the same way; INFO
// lists them with their types. A release's plan has one int8 input and one int8 output.

//! Tensor types, TFLite's TensorType codes (what INFO reports for each tensor).
#define AIOT_TENSOR_INT16 7u
#define AIOT_TENSOR_INT8 9u

//! Each tensor's TensorType, written by `aiot codegen` only for a model with an int16 (16x8)
//! input or output; absent (NULL: a weak reference), every tensor is int8.
extern const uint8_t aiot_model_input_types[] __attribute__((weak));
extern const uint8_t aiot_model_output_types[] __attribute__((weak));

//! 1 when the compiled-in model serves (its tables apply), 0 for a release's plan.
static inline int aiot_served_compiled(void) {
#ifdef AIOT_APP_UPDATE
    return aiot_served_model()->info == &aiot_model_info;
#else
    return 1;
#endif
}

//! How many outputs (outputs = 1) or inputs (outputs = 0) the served model has.
static inline uint32_t aiot_served_count(int outputs) {
    if (!aiot_served_compiled()) return 1u;
    return outputs ? aiot_model_num_outputs : aiot_model_num_inputs;
}

//! Bytes of input (or output) tensor i.
static inline uint32_t aiot_served_size(int outputs, uint32_t i) {
    if (!aiot_served_compiled()) return outputs ? MODEL_INFO.output_bytes : MODEL_INFO.input_bytes;
    return outputs ? aiot_model_output_sizes[i] : aiot_model_input_sizes[i];
}

//! TensorType of input (or output) tensor i.
static inline uint8_t aiot_served_type(int outputs, uint32_t i) {
    const uint8_t *types = outputs ? aiot_model_output_types : aiot_model_input_types;
    if (!aiot_served_compiled() || !types) return AIOT_TENSOR_INT8;
    return types[i];
}

//! Input tensor i's memory.
static inline int8_t *aiot_served_input_n(uint32_t i) {
    return aiot_served_compiled() ? aiot_model_input_n(i) : MODEL_INPUT();
}

//! Output tensor i's memory (valid after a successful invoke).
static inline const int8_t *aiot_served_output_n(uint32_t i) {
    return aiot_served_compiled() ? aiot_model_output_n(i) : MODEL_OUTPUT();
}

//! 1 when the served model has one int8 input and one int8 output (what the monitor scores with).
static inline int aiot_served_one_int8(void) {
    return aiot_served_count(0) == 1u && aiot_served_count(1) == 1u && aiot_served_type(0, 0) == AIOT_TENSOR_INT8 &&
           aiot_served_type(1, 0) == AIOT_TENSOR_INT8;
}

#endif
