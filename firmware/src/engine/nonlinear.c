//! LOGISTIC, TANH and SOFTMAX int8, RSQRT int8 and int16, with TFLM's fixed-point maths (gemmlowp semantics:
//! exp on negative values by barrel shifter, Newton-Raphson reciprocal). No tables,
//! no floats: every step is an int32 operation with the reference rounding.
#include "aiot/fixedpoint.h"

#include <stddef.h>

// A Qm.n value is carried as its raw int32; `ib` below is the number of integer bits.

static int32_t fx_mul(int32_t a, int32_t b)  // Q(ia) * Q(ib) -> Q(ia + ib)
{
    return aiot_fp_srdhm(a, b);
}

// SaturatingRoundingMultiplyByPOT with a positive exponent (saturating left shift).
static int32_t sat_shl(int32_t x, int exponent)
{
    const int32_t threshold = (int32_t)((1LL << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

// Change the number of integer bits from `from` to `to` (gemmlowp Rescale).
static int32_t rescale(int32_t x, int from, int to)
{
    const int e = from - to;
    if (e > 0) {
        return sat_shl(x, e);
    }
    if (e < 0) {
        return aiot_fp_rdivpot(x, -e);
    }
    return x;
}

static int32_t rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

// exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8.
static int32_t exp_quarter_interval(int32_t a)
{
    const int32_t constant_term = 1895147668;  // exp(-1/8)
    const int32_t one_third = 715827883;
    const int32_t x = a + (1 << 28);  // x = a + 1/8
    const int32_t x2 = fx_mul(x, x);
    const int32_t x3 = fx_mul(x2, x);
    const int32_t x4 = fx_mul(x2, x2);
    const int32_t x4_over_4 = aiot_fp_rdivpot(x4, 2);
    const int32_t poly = aiot_fp_rdivpot(fx_mul(x4_over_4 + x3, one_third) + x2, 1);
    return constant_term + fx_mul(constant_term, x + poly);
}

// exp(a) for a <= 0 given with `ib` integer bits; result Q0.31.
static int32_t exp_on_negative_values(int32_t a, int ib)
{
    const int frac = 31 - ib;
    const int32_t one_quarter = (int32_t)1 << (frac - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result = exp_quarter_interval(rescale(a_mod_quarter_minus_one_quarter, ib, 0));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    // exp(-2^k) for k = -2..4 in Q0.31: multiply in one factor per set bit of the remainder.
    static const int32_t factors[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    for (int k = -2; k <= 4; ++k) {
        if (ib > k && (remainder & ((int32_t)1 << (frac + k)))) {
            result = fx_mul(result, factors[k + 2]);
        }
    }
    if (ib > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - ib));  // below -32 the result is 0
        if (a < clamp) {
            result = 0;
        }
    }
    return a == 0 ? INT32_MAX : result;
}

// Newton-Raphson 2 / (1 + a) for a in [0, 1): Q0.31 in, Q2.29 out.
static int32_t two_over_one_plus_x(int32_t a)
{
    const int32_t half_denominator = rounding_half_sum(a, INT32_MAX);
    int32_t x = 1515870810 + fx_mul(half_denominator, -1010580540);  // 48/17 - 32/17 * d
    for (int i = 0; i < 3; ++i) {
        const int32_t hd_x = fx_mul(half_denominator, x);
        const int32_t one_minus = (1 << 29) - hd_x;
        x = x + rescale(fx_mul(x, one_minus), 4, 2);
    }
    return x;
}

static int32_t one_over_one_plus_x(int32_t a)  // Q0.31
{
    return rescale(two_over_one_plus_x(a), 1, 0);  // x / 2 is the same raw with 1 integer bit
}

static int32_t one_minus_x_over_one_plus_x(int32_t a)  // Q0.31
{
    return rescale(two_over_one_plus_x(a) - (1 << 29), 2, 0);
}

static int32_t logistic_q4(int32_t a)  // Q4.27 in, Q0.31 out
{
    if (a == 0) {
        return 1 << 30;
    }
    const int32_t abs_a = a > 0 ? a : -a;
    const int32_t pos = one_over_one_plus_x(exp_on_negative_values(-abs_a, 4));
    return a > 0 ? pos : INT32_MAX - pos;
}

static int32_t tanh_q4(int32_t a)  // Q4.27 in, Q0.31 out
{
    if (a == 0) {
        return 0;
    }
    const int32_t n = a < 0 ? a : -a;  // -|a|, then exp(2n) via one more integer bit
    const int32_t t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, 5));
    return a < 0 ? -t : t;
}

typedef int32_t (*fx_fn_t)(int32_t);

static aiot_status_t sigmoid_like(const aiot_sigmoid_params_t *p, const int8_t *input, int8_t *output, fx_fn_t fn,
                                  int out_bits, int32_t out_zp)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        int32_t y;
        if (x <= -p->input_range_radius) {
            y = -128;
        } else if (x >= p->input_range_radius) {
            y = 127;
        } else {
            const int32_t q4 = aiot_fp_mbqm(x, p->input_multiplier, p->input_left_shift);
            y = aiot_fp_rdivpot(fn(q4), 31 - out_bits) + out_zp;
            y = y < -128 ? -128 : (y > 127 ? 127 : y);
        }
        output[i] = (int8_t)y;
    }
    return AIOT_OK;
}

aiot_status_t aiot_logistic_s8(const aiot_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    return sigmoid_like(p, input, output, logistic_q4, 8, -128);  // output scale 1/256, zp -128
}

aiot_status_t aiot_tanh_s8(const aiot_sigmoid_params_t *p, const int8_t *input, int8_t *output)
{
    return sigmoid_like(p, input, output, tanh_q4, 7, 0);  // output scale 1/128, zp 0
}

static int count_leading_zeros(uint32_t x)
{
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

aiot_status_t aiot_softmax_s8(const aiot_softmax_params_t *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL) {
        return AIOT_ERR_NULL;
    }
    enum { DIFF_BITS = 5, ACC_BITS = 12 };
    for (uint32_t r = 0; r < p->outer; ++r) {
        const int8_t *x = input + (size_t)r * p->depth;
        int8_t *y = output + (size_t)r * p->depth;
        int32_t max_in_row = -128;
        for (uint32_t c = 0; c < p->depth; ++c) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        int32_t sum_of_exps = 0;  // Q12.19
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t scaled = aiot_fp_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                sum_of_exps += rescale(exp_on_negative_values(scaled, DIFF_BITS), 0, ACC_BITS);
            }
        }
        const int headroom_plus_one = count_leading_zeros((uint32_t)sum_of_exps);
        const int num_bits_over_unit = ACC_BITS - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            int32_t out = -128;
            if (diff >= p->diff_min) {
                const int32_t scaled = aiot_fp_srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
                const int32_t e = exp_on_negative_values(scaled, DIFF_BITS);
                out = aiot_fp_rdivpot(fx_mul(shifted_scale, e), num_bits_over_unit + 31 - 8) - 128;
                out = out > 127 ? 127 : (out < -128 ? -128 : out);
            }
            y[c] = (int8_t)out;
        }
    }
    return AIOT_OK;
}

// 1/sqrt(value) for value >= 2 as TFLM's GetInvSqrtQuantizedMultiplierExp with its reverse
// shift of -1: value scaled into [2^27, 2^29) by pairs of bits (Q3.28), five Newton-Raphson
// steps x = 3/2 x - value/2 x^3 from x = 1, times sqrt(2)/2; returns the Q0.31 multiplier,
// *shift the exponent MultiplyByQuantizedMultiplier takes.
static int32_t inv_sqrt_multiplier(int32_t value, int32_t *shift)
{
    int32_t right = 11;
    while (value >= (1 << 29)) {
        value /= 4;
        ++right;
    }
    const int pairs = (count_leading_zeros((uint32_t)value) - 1) / 2 - 1;
    right -= pairs;
    value = (int32_t)((uint32_t)value << (2 * pairs));
    const int32_t half_input = aiot_fp_rdivpot(value >> 1, 1);  // Q3.28
    const int32_t three_halves = (1 << 28) + (1 << 27);
    int32_t x = 1 << 28;  // 1.0 in Q3.28
    for (int i = 0; i < 5; ++i) {
        const int32_t x3 = rescale(fx_mul(fx_mul(x, x), x), 9, 3);
        x = rescale((int32_t)((uint32_t)fx_mul(three_halves, x) - (uint32_t)fx_mul(half_input, x3)), 6, 3);
    }
    x = fx_mul(x, 1518500250);  // sqrt(2)/2 in Q0.31
    if (right < 0) {
        x = (int32_t)((uint32_t)x << -right);
        right = 0;
    }
    *shift = -right;
    return x;
}

// RSQRT as TFLM's RsqrtEvalQuantized: value = x - input zero point (0: the type's maximum;
// below 0: AIOT_ERR_DOMAIN, as tflite-micro fails the Invoke), 1/sqrt(value) as a 2^20-scaled
// integer, rescaled by 1 / (sqrt(input scale) * output scale).
#define AIOT_RSQRT_KERNEL(T, SUFFIX, LO, HI)                                                                     \
    aiot_status_t aiot_rsqrt_##SUFFIX(const aiot_rsqrt_params_t *p, const T *input, T *output)                   \
    {                                                                                                             \
        if (p == NULL || input == NULL || output == NULL) {                                                       \
            return AIOT_ERR_NULL;                                                                                 \
        }                                                                                                         \
        for (uint32_t i = 0; i < p->size; ++i) {                                                                  \
            const int32_t value = (int32_t)input[i] - p->input_zero_point;                                        \
            if (value < 0) {                                                                                      \
                return AIOT_ERR_DOMAIN;                                                                           \
            }                                                                                                     \
            if (value == 0) {                                                                                     \
                output[i] = (T)(HI);                                                                              \
                continue;                                                                                         \
            }                                                                                                     \
            int32_t m = INT32_MAX, sh = 0;                                                                        \
            if (value > 1) {                                                                                      \
                m = inv_sqrt_multiplier(value, &sh);                                                              \
            }                                                                                                     \
            const int32_t scaled = aiot_fp_mbqm(1, m, sh + 20);                                                   \
            int32_t v = aiot_fp_mbqm(scaled, p->multiplier, p->shift - 20) + p->output_zero_point;                \
            v = v < (LO) ? (LO) : (v > (HI) ? (HI) : v);                                                          \
            output[i] = (T)v;                                                                                     \
        }                                                                                                         \
        return AIOT_OK;                                                                                           \
    }

AIOT_RSQRT_KERNEL(int8_t, s8, -128, 127)
AIOT_RSQRT_KERNEL(int16_t, s16, -32768, 32767)
