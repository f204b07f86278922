//! Fixed-point helpers with TFLite Micro's exact rounding (gemmlowp semantics), exported
//! for generated code and tests; kernels use the inline copies in aiot/fixedpoint.h.
#include "aiot/fixedpoint.h"

int32_t aiot_srdhm(int32_t a, int32_t b)
{
    return aiot_fp_srdhm(a, b);
}

int32_t aiot_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    return aiot_fp_rdivpot(x, exponent);
}

int32_t aiot_mul_by_quant_mult(int32_t x, int32_t multiplier, int32_t shift)
{
    return aiot_fp_mbqm(x, multiplier, shift);
}

int8_t aiot_requant_s8(const aiot_requant_t *rq, uint32_t channel, int32_t acc)
{
    return aiot_fp_requant(rq, channel, acc);
}

void aiot_requant4_s8(const aiot_requant_t *rq, uint32_t channel, int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                      int8_t *y)
{
    y[0] = aiot_fp_requant(rq, channel, a0);
    y[1] = aiot_fp_requant(rq, channel + 1u, a1);
    y[2] = aiot_fp_requant(rq, channel + 2u, a2);
    y[3] = aiot_fp_requant(rq, channel + 3u, a3);
}
