//! LOGISTIC, TANH and SOFTMAX of int16 tensors (the 16x8 mode), TFLM's reference
//! arithmetic. LOGISTIC/TANH: the input rescaled to 1/(3 * 4096) per unit (so +-2^17 spans
//! +-10.7), then linear interpolation in a 256-entry table of sigmoid over [0, 10.7);
//! tanh(x) = 2 sigmoid(2x) - 1 reads the same table at twice the resolution. SOFTMAX: exp
//! and 1/(1 + x) from 513-entry tables the generator fills as TFLM's Prepare does.
#include "aiot/fixedpoint.h"

#include <stddef.h>

// sigmoid(i / 24) in unsigned 0.16 fixed point, i = 0..255: the table TFLM's int16
// LOGISTIC and TANH interpolate (its values are data of the format, reproduced exactly).
static const uint16_t sigmoid_q16[256] = {
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
};

// The input in the table's scale: x * multiplier, rounded right shift (multiplier 0: a
// power-of-two input scale, TFLM's 3 << shift with no shift).
static int32_t lut_input(const aiot_lut16_params_t *p, int16_t x)
{
    int32_t m = p->multiplier, s = p->left_shift;
    if (m == 0) {
        m = 3 << s;
        s = 0;
    }
    const int32_t round = s > 0 ? 1 << (s - 1) : 0;
    return ((int32_t)x * m + round) >> s;
}

// |v| / 2^frac_bits indexes the table, its low frac_bits interpolate; returns the
// unsigned value with frac_bits more fraction bits, or `saturated` past the table's end.
static uint32_t interpolate(uint32_t a, uint32_t frac_bits, uint32_t saturated)
{
    const uint32_t i = a >> frac_bits;
    if (i >= 255u) {
        return saturated;
    }
    const uint32_t lo = sigmoid_q16[i], hi = sigmoid_q16[i + 1u];
    return (lo << frac_bits) + (a & ((1u << frac_bits) - 1u)) * (hi - lo);
}

aiot_status_t aiot_logistic_s16(const aiot_lut16_params_t *p, const int16_t *input, int16_t *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t k = 0; k < p->size; ++k) {
        const int32_t v = lut_input(p, input[k]);
        const uint32_t r = interpolate(v < 0 ? (uint32_t)-v : (uint32_t)v, 9u, 0x7FFFu << 10);
        // sigmoid(-x) = 1 - sigmoid(x); output in Q0.15 after dropping 10 bits with rounding
        const uint32_t y = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
        output[k] = (int16_t)(y >> 10);
    }
    return AIOT_OK;
}

aiot_status_t aiot_tanh_s16(const aiot_lut16_params_t *p, const int16_t *input, int16_t *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t k = 0; k < p->size; ++k) {
        const int32_t v = lut_input(p, input[k]);
        const int32_t r = (int32_t)interpolate(v < 0 ? (uint32_t)-v : (uint32_t)v, 8u, 0xFFFFu << 8);
        // 2 sigmoid - 1, mirrored for negative inputs, to Q0.15 with rounding
        const int32_t y = v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
        output[k] = (int16_t)(y >> 8);
    }
    return AIOT_OK;
}

// A 513-entry table indexed by the top 9 bits of an int16, interpolated on the low 7.
static int16_t lut513(const int16_t *lut, int16_t v)
{
    const uint32_t i = (uint32_t)(256 + (v >> 7));
    const int32_t slope = lut[i + 1u] - lut[i];
    return (int16_t)(lut[i] + ((slope * (v & 0x7f) + 64) >> 7));
}

static int16_t sat16(int32_t v)
{
    return (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
}

aiot_status_t aiot_softmax_s16(const aiot_softmax16_params_t *p, const int16_t *input, int16_t *output)
{
    if (p == NULL || input == NULL || output == NULL || p->exp_lut == NULL || p->recip_lut == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t r = 0; r < p->outer; ++r) {
        const int16_t *x = input + (size_t)r * p->depth;
        int16_t *y = output + (size_t)r * p->depth;
        int32_t max = -32768;
        for (uint32_t c = 0; c < p->depth; ++c) {
            max = x[c] > max ? x[c] : max;
        }
        // exp(x - max) in Q0.15 (kept in the output), and their sum
        int32_t sum = 0;
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t scaled = aiot_fp_mbqm((int32_t)x[c] - max, p->input_multiplier, p->input_left_shift);
            y[c] = lut513(p->exp_lut, sat16(scaled + 32767));
            sum += y[c];
        }
        // 1 / sum: the sum normalised to [1, 2), read as 1 / (1 + x) with x recentred
        uint32_t lz = 0;
        while (lz < 32u && !((uint32_t)sum & (0x80000000u >> lz))) {
            ++lz;
        }
        const int32_t shifted = (int32_t)((((int64_t)sum << (lz - 1u)) + (1 << 13)) >> 14);
        const int16_t recip = lut513(p->recip_lut, sat16(shifted - (1 << 15) - (1 << 16)));
        const uint32_t right = 31u - lz;
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t v = (int32_t)(((int64_t)y[c] * recip + ((int64_t)1 << (right - 1u))) >> right);
            y[c] = (int16_t)(v < 0 ? 0 : (v > 32767 ? 32767 : v));
        }
    }
    return AIOT_OK;
}
