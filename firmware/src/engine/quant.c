//! Fixed-point helpers with TFLite Micro's exact rounding (gemmlowp semantics).
//! Everything else in the engine reduces to these three functions.
#include "aiot/engine.h"

int32_t aiot_srdhm(int32_t a, int32_t b)
{
    // Saturating rounding doubling high multiply: the only overflow is MIN * MIN.
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    // C division truncates toward zero, which is what the reference relies on.
    return (int32_t)((ab + nudge) / (1LL << 31));
}

int32_t aiot_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    // Round half away from zero; arithmetic right shift of negatives (gcc, armcc: yes).
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t aiot_mul_by_quant_mult(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    // Left shift through unsigned so a (TFLM-identical) wrap is not undefined behaviour.
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return aiot_rounding_divide_by_pot(aiot_srdhm(shifted, multiplier), right);
}
