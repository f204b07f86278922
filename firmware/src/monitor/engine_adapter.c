//! Score callback for the monitor backed by the generated int8 engine (aiot/model.h):
//! the app passes aiot_monitor_engine_score to aiot_monitor_init and nothing else changes.
#include "aiot/monitor.h"
#include "aiot/served_model.h"  // a running release's own network may serve instead (docs/lifecycle.md)

#include <math.h>

static int8_t quantize(float x, float scale, int32_t zero_point) {
    float q = roundf(x / scale) + (float)zero_point;
    if (q < -128.0f) return -128;
    if (q > 127.0f) return 127;
    return (int8_t)q;
}

int aiot_monitor_engine_score(void *ctx, const float *features, size_t n, float *reconstruction) {
    const aiot_model_info_t *info = &MODEL_INFO;
    int8_t *in;
    const int8_t *out;
    size_t i;
    int rc;
    (void)ctx;
    if (!features || !reconstruction || n != info->input_bytes || n != info->output_bytes || !(info->input_scale > 0.0f) ||
        !aiot_served_one_int8())
        return AIOT_MONITOR_EINVAL;
    in = MODEL_INPUT();
    for (i = 0; i < n; i++) in[i] = quantize(features[i], info->input_scale, info->input_zero_point);
    rc = MODEL_INVOKE();
    if (rc != 0) return rc;
    out = MODEL_OUTPUT();
    for (i = 0; i < n; i++) reconstruction[i] = info->output_scale * (float)((int32_t)out[i] - info->output_zero_point);
    return 0;
}
