//! The model as data: walk a package's PLAN section (aiot.lifecycle.plan) with the engine's
//! kernels. Loading checks every record, array offset and size against the plan and every
//! tensor against the arena once (a hostile plan is refused, never read or written out of
//! bounds); the walk then only calls kernels with prepared parameters, so it costs a loop
//! iteration and a switch per layer more than the generated straight-line code.
#include <string.h>

#include "aiot/le.h"
#include "aiot/engine.h"
#include "aiot/update.h"

#define BAD AIOT_UPD_NOT_PACKAGE

static int within(uint32_t off, uint64_t bytes, uint32_t len) { return off <= len && bytes <= (uint64_t)(len - off); }

//! An array of `bytes` at `off` in the plan, 4-byte aligned, or NULL.
static const void *array(const uint8_t *plan, uint32_t len, uint32_t off, uint64_t bytes) {
    return (off & 3u) == 0 && off >= AIOT_PLAN_HEADER && within(off, bytes, len) ? plan + off : NULL;
}

static uint32_t word(const uint8_t *w, uint32_t k) { return aiot_le_rd32(w + 4u * k); }

// Version 2 parameter words per kind (aiot.lifecycle.plan KIND_WORDS); 0: unknown kind.
#define RQ_WORDS 7u
static const uint8_t kind_words[] = {0, 5 + RQ_WORDS, 21 + RQ_WORDS, 21 + RQ_WORDS, 13, 13, 30, 5, 7, 24, 7, 3, 5, 5, 7, 18};

//! A requantization block (fast, per_channel, zero point, act min, act max, table, shifts).
static int load_rq(const uint8_t *plan, uint32_t len, const uint8_t *w, uint32_t channels, aiot_requant_t *rq) {
    const uint32_t fast = word(w, 0), per_channel = word(w, 1);
    if (fast > 1u || per_channel > 1u || (fast && !per_channel)) return BAD;
    const uint32_t entries = per_channel ? channels : 1u;
    rq->output_offset = (int32_t)word(w, 2);
    rq->act_min = (int32_t)word(w, 3);
    rq->act_max = (int32_t)word(w, 4);
    rq->per_channel = (uint8_t)per_channel;
    if (fast) {
        rq->fast = (const aiot_rq_ch_t *)array(plan, len, word(w, 5), (uint64_t)entries * 8u);
        if (rq->fast == NULL) return BAD;
        for (uint32_t c = 0; c < entries; c++)  // rounding shifts the kernels can do
            if ((uint32_t)rq->fast[c].pre_shift > 30u) return BAD;
    } else {
        rq->multiplier = (const int32_t *)array(plan, len, word(w, 5), (uint64_t)entries * 4u);
        rq->shift = (const int32_t *)array(plan, len, word(w, 6), (uint64_t)entries * 4u);
        if (rq->multiplier == NULL || rq->shift == NULL) return BAD;
    }
    return AIOT_UPD_OK;
}

//! Tensor bytes at `off` in an arena of `arena` bytes (at least one).
static int tensor(uint32_t off, uint64_t bytes, uint32_t arena) { return bytes != 0 && within(off, bytes, arena); }

static int is_u16(uint32_t v) { return v >= 1u && v <= 0xffffu; }

static int load_conv(const uint8_t *plan, uint32_t len, const uint8_t *w, aiot_plan_layer_t *l, uint32_t arena) {
    uint32_t d[16];
    for (uint32_t k = 0; k < 16u; k++) d[k] = word(w, k);
    // in_h in_w in_c out_h out_w out_c k_h k_w stride_h stride_w dil_h dil_w pad_t pad_l dm seg
    for (uint32_t k = 0; k < 8u; k++)
        if (!is_u16(d[k])) return BAD;
    for (uint32_t k = 6; k < 12u; k++)  // windows, strides and dilations: 1..255 (no int32 overflow in the kernels)
        if (d[k] < 1u || d[k] > 255u) return BAD;
    if (d[12] > (d[6] - 1u) * d[10] || d[13] > (d[7] - 1u) * d[11] || d[12] > 0x7fffu || d[13] > 0x7fffu)
        return BAD;  // SAME padding at most, and an int16
    const int depthwise = l->kind == AIOT_PLAN_DEPTHWISE;
    const uint32_t wide = word(w, 20), in_zp = word(w, 16);
    const uint64_t row = (uint64_t)d[7] * d[2];
    if (wide > 1u || (int32_t)in_zp < -128 || (int32_t)in_zp > 127) return BAD;
    if (depthwise ? (d[14] < 1u || (uint64_t)d[2] * d[14] != d[5] || d[15] != row || (wide && d[14] != 1u))
                  : (d[14] != 1u || d[15] != ((row + 3u) & ~3ull)))
        return BAD;
    if (d[15] > 0xffffu) return BAD;
    const uint64_t taps = (uint64_t)d[6] * d[7], rows4 = (d[5] + 3u) & ~3u;
    const uint64_t wbytes = depthwise ? taps * d[5] * (wide ? 2u : 1u)
                                      : (wide ? rows4 * d[6] * d[15] * 2u : (uint64_t)d[5] * d[6] * d[15]);
    l->wide = (uint8_t)wide;
    l->weights = array(plan, len, word(w, 17), wbytes);
    l->bias = (const int32_t *)array(plan, len, word(w, 18), (uint64_t)d[5] * 4u);
    if (l->weights == NULL || l->bias == NULL) return BAD;
    aiot_conv_params_t *c = &l->p.conv;
    c->in_h = (uint16_t)d[0], c->in_w = (uint16_t)d[1], c->in_c = (uint16_t)d[2];
    c->out_h = (uint16_t)d[3], c->out_w = (uint16_t)d[4], c->out_c = (uint16_t)d[5];
    c->k_h = (uint16_t)d[6], c->k_w = (uint16_t)d[7], c->stride_h = (uint16_t)d[8], c->stride_w = (uint16_t)d[9];
    c->dil_h = (uint16_t)d[10], c->dil_w = (uint16_t)d[11], c->pad_top = (int16_t)d[12], c->pad_left = (int16_t)d[13];
    c->depth_multiplier = (uint16_t)d[14], c->seg_len = (uint16_t)d[15];
    c->input_zero_point = (int32_t)in_zp;
    c->border_bias = NULL;
    if (word(w, 19) != 0u) {
        c->border_bias = (const int32_t *)array(plan, len, word(w, 19), (uint64_t)d[5] * 4u);
        if (c->border_bias == NULL) return BAD;
    }
    if (!tensor(l->in_offset, (uint64_t)d[0] * d[1] * d[2], arena) ||
        !tensor(l->out_offset, (uint64_t)d[3] * d[4] * d[5], arena))
        return BAD;
    return load_rq(plan, len, w + 4u * 21u, d[5], &c->rq);
}

static int load_fc(const uint8_t *plan, uint32_t len, const uint8_t *w, aiot_plan_layer_t *l, uint32_t arena) {
    const uint32_t batches = word(w, 0), n_in = word(w, 1), n_out = word(w, 2);
    if (!is_u16(batches) || !is_u16(n_in) || !is_u16(n_out)) return BAD;
    l->weights = array(plan, len, word(w, 3), (uint64_t)((n_out + 3u) & ~3u) * n_in * 2u);
    l->bias = (const int32_t *)array(plan, len, word(w, 4), (uint64_t)n_out * 4u);
    if (l->weights == NULL || l->bias == NULL) return BAD;
    if (!tensor(l->in_offset, (uint64_t)batches * n_in, arena) || !tensor(l->out_offset, (uint64_t)batches * n_out, arena))
        return BAD;
    l->p.fc.batches = (uint16_t)batches, l->p.fc.in_features = (uint16_t)n_in, l->p.fc.out_features = (uint16_t)n_out;
    return load_rq(plan, len, w + 20u, n_out, &l->p.fc.rq);
}

static int load_pool(const uint8_t *w, aiot_plan_layer_t *l, uint32_t arena) {
    uint32_t d[11];
    for (uint32_t k = 0; k < 11u; k++) d[k] = word(w, k);
    // in_h in_w channels out_h out_w k_h k_w stride_h stride_w pad_t pad_l
    for (uint32_t k = 0; k < 5u; k++)
        if (!is_u16(d[k])) return BAD;
    for (uint32_t k = 5; k < 9u; k++)
        if (d[k] < 1u || d[k] > 255u) return BAD;
    if (d[9] >= d[5] || d[10] >= d[6]) return BAD;
    aiot_pool_params_t *p = &l->p.pool;
    p->in_h = (uint16_t)d[0], p->in_w = (uint16_t)d[1], p->channels = (uint16_t)d[2];
    p->out_h = (uint16_t)d[3], p->out_w = (uint16_t)d[4], p->k_h = (uint16_t)d[5], p->k_w = (uint16_t)d[6];
    p->stride_h = (uint16_t)d[7], p->stride_w = (uint16_t)d[8], p->pad_top = (int16_t)d[9], p->pad_left = (int16_t)d[10];
    p->act_min = (int32_t)word(w, 11), p->act_max = (int32_t)word(w, 12);
    if (!tensor(l->in_offset, (uint64_t)d[0] * d[1] * d[2], arena) ||
        !tensor(l->out_offset, (uint64_t)d[3] * d[4] * d[2], arena))
        return BAD;
    return AIOT_UPD_OK;
}

//! Bytes a broadcast walk reads of an input with these strides (the whole output when flat).
static uint64_t extent(const aiot_bcast_t *s, const uint32_t *strides) {
    if (!s->broadcast) return s->size;
    uint64_t last = 0;
    for (uint32_t k = 0; k < AIOT_MAX_DIMS; k++) last += (uint64_t)(s->out_dims[k] - 1u) * strides[k];
    return last + 1u;
}

//! A broadcast shape (17 words) whose walks stay inside the arena for both inputs and the output.
static int load_bcast(const uint8_t *w, const aiot_plan_layer_t *l, aiot_bcast_t *s, uint32_t arena) {
    uint64_t size = 1;
    for (uint32_t k = 0; k < AIOT_MAX_DIMS; k++) {
        s->out_dims[k] = word(w, k);
        s->in1_strides[k] = word(w, 5u + k);
        s->in2_strides[k] = word(w, 10u + k);
        if (s->out_dims[k] == 0u) return BAD;
        size *= s->out_dims[k];
        if (size > arena) return BAD;
    }
    if (word(w, 15) > 1u || word(w, 16) != size) return BAD;
    s->broadcast = (uint8_t)word(w, 15);
    s->size = (uint32_t)size;
    if (!tensor(l->in_offset, extent(s, s->in1_strides), arena) || !tensor(l->in2_offset, extent(s, s->in2_strides), arena) ||
        !tensor(l->out_offset, size, arena))
        return BAD;
    return AIOT_UPD_OK;
}

static int load_add(const uint8_t *w, aiot_plan_layer_t *l, uint32_t arena) {
    aiot_add_params_t *a = &l->p.add;
    if (load_bcast(w, l, &a->shape, arena) != AIOT_UPD_OK) return BAD;
    int32_t v[13];
    for (uint32_t k = 0; k < 13u; k++) v[k] = (int32_t)word(w, 17u + k);
    if (v[2] < 0 || v[2] > 20 || (uint32_t)v[12] > 1u) return BAD;  // left shift as TFLM's int8 (20) at most
    a->input1_offset = v[0], a->input2_offset = v[1], a->left_shift = v[2];
    a->input1_multiplier = v[3], a->input1_shift = v[4], a->input2_multiplier = v[5], a->input2_shift = v[6];
    a->output_multiplier = v[7], a->output_shift = v[8], a->output_offset = v[9];
    a->act_min = v[10], a->act_max = v[11], a->kind = (uint8_t)v[12];
    return AIOT_UPD_OK;
}

//! Element-wise layers of `size` values (in and out may be the same bytes).
static int elementwise(const aiot_plan_layer_t *l, uint32_t size, uint32_t arena) {
    return tensor(l->in_offset, size, arena) && tensor(l->out_offset, size, arena) ? AIOT_UPD_OK : BAD;
}

static int load_v2_layer(const uint8_t *plan, uint32_t len, const uint8_t *r, aiot_plan_layer_t *l, uint32_t arena) {
    const uint8_t *w = r + AIOT_PLAN_RECORD;
    l->in_offset = aiot_le_rd32(r + 4);
    l->in2_offset = aiot_le_rd32(r + 8);
    l->out_offset = aiot_le_rd32(r + 12);
#ifndef AIOT_PLAN_ALL_OPS
    // built without the other kernels (the default, aiot build --plan-ops dense): a layer this firmware cannot run
    if (l->kind != AIOT_PLAN_FC) return AIOT_UPD_WRONG_ABI;
#endif
    switch (l->kind) {
    case AIOT_PLAN_FC: return load_fc(plan, len, w, l, arena);
    case AIOT_PLAN_CONV:
    case AIOT_PLAN_DEPTHWISE: return load_conv(plan, len, w, l, arena);
    case AIOT_PLAN_AVG_POOL:
    case AIOT_PLAN_MAX_POOL: return load_pool(w, l, arena);
    case AIOT_PLAN_ADD: return load_add(w, l, arena);
    case AIOT_PLAN_SOFTMAX: {
        aiot_softmax_params_t *s = &l->p.softmax;
        s->outer = word(w, 0), s->depth = word(w, 1);
        s->input_multiplier = (int32_t)word(w, 2), s->input_left_shift = (int32_t)word(w, 3);
        s->diff_min = (int32_t)word(w, 4);
        const uint64_t n = (uint64_t)s->outer * s->depth;
        return tensor(l->in_offset, n, arena) && tensor(l->out_offset, n, arena) ? AIOT_UPD_OK : BAD;
    }
    case AIOT_PLAN_MUL: {
        aiot_mul_params_t *m = &l->p.mul;
        if (load_bcast(w, l, &m->shape, arena) != AIOT_UPD_OK) return BAD;
        m->input1_offset = (int32_t)word(w, 17), m->input2_offset = (int32_t)word(w, 18);
        m->output_multiplier = (int32_t)word(w, 19), m->output_shift = (int32_t)word(w, 20);
        m->output_offset = (int32_t)word(w, 21), m->act_min = (int32_t)word(w, 22), m->act_max = (int32_t)word(w, 23);
        return AIOT_UPD_OK;
    }
    case AIOT_PLAN_MIN_MAX:
        if (word(w, 17) > 1u) return BAD;
        l->p.min_max.is_max = (uint8_t)word(w, 17);
        return load_bcast(w, l, &l->p.min_max.shape, arena);
    case AIOT_PLAN_REQUANTIZE: {
        aiot_requantize_params_t *q = &l->p.requantize;
        q->size = word(w, 0), q->input_zero_point = (int32_t)word(w, 1), q->multiplier = (int32_t)word(w, 2);
        q->shift = (int32_t)word(w, 3), q->output_zero_point = (int32_t)word(w, 4);
        q->act_min = (int32_t)word(w, 5), q->act_max = (int32_t)word(w, 6);
        return elementwise(l, q->size, arena);
    }
    case AIOT_PLAN_CLAMP:
        l->p.clamp.size = word(w, 0), l->p.clamp.lo = (int32_t)word(w, 1), l->p.clamp.hi = (int32_t)word(w, 2);
        return elementwise(l, l->p.clamp.size, arena);
    case AIOT_PLAN_LOGISTIC:
    case AIOT_PLAN_TANH: {
        aiot_sigmoid_params_t *g = &l->p.sigmoid;
        g->size = word(w, 0), g->input_zero_point = (int32_t)word(w, 1), g->input_range_radius = (int32_t)word(w, 2);
        g->input_multiplier = (int32_t)word(w, 3), g->input_left_shift = (int32_t)word(w, 4);
        return elementwise(l, g->size, arena);
    }
    case AIOT_PLAN_LEAKY_RELU: {
        aiot_leaky_relu_params_t *k = &l->p.leaky;
        k->size = word(w, 0), k->input_zero_point = (int32_t)word(w, 1), k->output_zero_point = (int32_t)word(w, 2);
        k->identity_multiplier = (int32_t)word(w, 3), k->identity_shift = (int32_t)word(w, 4);
        k->alpha_multiplier = (int32_t)word(w, 5), k->alpha_shift = (int32_t)word(w, 6);
        return elementwise(l, k->size, arena);
    }
    default: {  // AIOT_PLAN_MEAN
        aiot_mean_params_t *m = &l->p.mean;
        m->outer = word(w, 0), m->reduce = word(w, 1), m->inner = word(w, 2);
        m->input_zero_point = (int32_t)word(w, 3), m->output_zero_point = (int32_t)word(w, 4);
        m->multiplier = (int32_t)word(w, 5), m->shift = (int32_t)word(w, 6);
        const uint64_t out = (uint64_t)m->outer * m->inner;
        return m->reduce != 0u && tensor(l->in_offset, out * m->reduce, arena) && tensor(l->out_offset, out, arena)
                   ? AIOT_UPD_OK : BAD;
    }
    }
}

//! A version 1 record (FULLY_CONNECTED, fixed 48 bytes).
static int load_v1_layer(const uint8_t *plan, uint32_t len, const uint8_t *r, aiot_plan_layer_t *l, uint32_t arena) {
    uint32_t fast = aiot_le_rd16(r + 2), batches = aiot_le_rd16(r + 4), n_in = aiot_le_rd16(r + 6), n_out = aiot_le_rd16(r + 8);
    uint32_t w = aiot_le_rd32(r + 20), b = aiot_le_rd32(r + 24), rq = aiot_le_rd32(r + 28), sh = aiot_le_rd32(r + 32);
    if (aiot_le_rd16(r) != 1u || batches == 0 || n_in == 0 || n_out == 0 || fast > 1u) return BAD;
    uint32_t rows = (n_out + 3u) & ~3u;  // pack_weights_wide pads the rows to a multiple of 4
    uint32_t per_channel = aiot_le_rd16(r + 10) || fast ? 1u : 0u;
    uint32_t rq_entries = per_channel ? n_out : 1u;
    l->kind = AIOT_PLAN_FC;
    l->weights = array(plan, len, w, (uint64_t)rows * n_in * 2u);
    l->bias = (const int32_t *)array(plan, len, b, (uint64_t)n_out * 4u);
    if (l->weights == NULL || l->bias == NULL) return BAD;
    l->in_offset = aiot_le_rd32(r + 12);
    l->out_offset = aiot_le_rd32(r + 16);
    if (!tensor(l->in_offset, (uint64_t)batches * n_in, arena) || !tensor(l->out_offset, (uint64_t)batches * n_out, arena))
        return BAD;
    aiot_fc_params_t *p = &l->p.fc;
    p->batches = (uint16_t)batches, p->in_features = (uint16_t)n_in, p->out_features = (uint16_t)n_out;
    p->rq.output_offset = (int32_t)aiot_le_rd32(r + 36);
    p->rq.act_min = (int32_t)aiot_le_rd32(r + 40);
    p->rq.act_max = (int32_t)aiot_le_rd32(r + 44);
    p->rq.per_channel = (uint8_t)per_channel;
    if (fast) {
        p->rq.fast = (const aiot_rq_ch_t *)array(plan, len, rq, (uint64_t)rq_entries * 8u);
        if (p->rq.fast == NULL) return BAD;
    } else {
        p->rq.multiplier = (const int32_t *)array(plan, len, rq, (uint64_t)rq_entries * 4u);
        p->rq.shift = (const int32_t *)array(plan, len, sh, (uint64_t)rq_entries * 4u);
        if (p->rq.multiplier == NULL || p->rq.shift == NULL) return BAD;
    }
    return AIOT_UPD_OK;
}

int aiot_plan_load(const uint8_t *plan, uint32_t len, uint32_t arena_cap, aiot_plan_t *out) {
    memset(out, 0, sizeof *out);
    if (((uintptr_t)plan & 3u) != 0) return BAD;  // arrays are read in place
    if (len < AIOT_PLAN_HEADER || aiot_le_rd32(plan) != AIOT_PLAN_MAGIC) return BAD;
    const uint32_t version = aiot_le_rd16(plan + 4), n = aiot_le_rd16(plan + 6);
    if (version != 1u && version != 2u) return BAD;
    out->arena_bytes = aiot_le_rd32(plan + 8);
    out->input_offset = aiot_le_rd32(plan + 12);
    out->output_offset = aiot_le_rd32(plan + 16);
    out->input_bytes = aiot_le_rd32(plan + 20);
    out->output_bytes = aiot_le_rd32(plan + 24);
    if (n == 0 || n > AIOT_PLAN_MAX_LAYERS) return BAD;
    if (version == 1u && !within(AIOT_PLAN_HEADER, (uint64_t)n * AIOT_PLAN_LAYER, len)) return BAD;
    if (out->arena_bytes > arena_cap) return AIOT_UPD_TOO_LARGE;
    if (!tensor(out->input_offset, out->input_bytes, out->arena_bytes) ||
        !tensor(out->output_offset, out->output_bytes, out->arena_bytes))
        return BAD;
    uint32_t pos = AIOT_PLAN_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        aiot_plan_layer_t *l = &out->layer[i];
        int rc;
        if (version == 1u) {
            rc = load_v1_layer(plan, len, plan + AIOT_PLAN_HEADER + i * AIOT_PLAN_LAYER, l, out->arena_bytes);
        } else {
            if (!within(pos, AIOT_PLAN_RECORD, len)) return BAD;
            const uint8_t *r = plan + pos;
            const uint32_t kind = aiot_le_rd16(r), bytes = aiot_le_rd16(r + 2);
            if (kind == 0u || kind >= sizeof kind_words || bytes != AIOT_PLAN_RECORD + 4u * kind_words[kind] ||
                !within(pos, bytes, len))
                return BAD;
            l->kind = (uint8_t)kind;
            rc = load_v2_layer(plan, len, r, l, out->arena_bytes);
            pos += bytes;
        }
        if (rc != AIOT_UPD_OK) {
            memset(out, 0, sizeof *out);
            return rc;
        }
    }
    out->num_layers = (uint16_t)n;
    return AIOT_UPD_OK;
}

int aiot_plan_invoke(const aiot_plan_t *p, int8_t *arena) {
    for (uint32_t i = 0; i < p->num_layers; i++) {
        const aiot_plan_layer_t *l = &p->layer[i];
        const int8_t *x = arena + l->in_offset;
        int8_t *y = arena + l->out_offset;
        aiot_status_t rc;
        switch (l->kind) {
        case AIOT_PLAN_FC: rc = aiot_fully_connected_s8_wide(&l->p.fc, x, l->weights, l->bias, y); break;
#ifdef AIOT_PLAN_ALL_OPS  // else the loader refuses every other kind: their kernels are not linked
        case AIOT_PLAN_CONV:
            rc = l->wide ? aiot_conv2d_s8_wide(&l->p.conv, x, l->weights, l->bias, y)
                         : aiot_conv2d_s8(&l->p.conv, x, l->weights, l->bias, y);
            break;
        case AIOT_PLAN_DEPTHWISE:
            rc = l->wide ? aiot_depthwise_conv2d_s8_wide(&l->p.conv, x, l->weights, l->bias, y)
                         : aiot_depthwise_conv2d_s8(&l->p.conv, x, l->weights, l->bias, y);
            break;
        case AIOT_PLAN_AVG_POOL: rc = aiot_avg_pool_s8(&l->p.pool, x, y); break;
        case AIOT_PLAN_MAX_POOL: rc = aiot_max_pool_s8(&l->p.pool, x, y); break;
        case AIOT_PLAN_ADD: rc = aiot_add_s8(&l->p.add, x, arena + l->in2_offset, y); break;
        case AIOT_PLAN_SOFTMAX: rc = aiot_softmax_s8(&l->p.softmax, x, y); break;
        case AIOT_PLAN_MEAN: rc = aiot_mean_s8(&l->p.mean, x, y); break;
        case AIOT_PLAN_MUL: rc = aiot_mul_s8(&l->p.mul, x, arena + l->in2_offset, y); break;
        case AIOT_PLAN_MIN_MAX:
            rc = aiot_min_max_s8(&l->p.min_max.shape, l->p.min_max.is_max, x, arena + l->in2_offset, y);
            break;
        case AIOT_PLAN_REQUANTIZE: rc = aiot_requantize_s8(&l->p.requantize, x, y); break;
        case AIOT_PLAN_CLAMP: rc = aiot_clamp_s8(l->p.clamp.size, l->p.clamp.lo, l->p.clamp.hi, x, y); break;
        case AIOT_PLAN_LOGISTIC: rc = aiot_logistic_s8(&l->p.sigmoid, x, y); break;
        case AIOT_PLAN_TANH: rc = aiot_tanh_s8(&l->p.sigmoid, x, y); break;
        case AIOT_PLAN_LEAKY_RELU: rc = aiot_leaky_relu_s8(&l->p.leaky, x, y); break;
#endif
        default: return AIOT_ERR_PARAM;
        }
        if (rc != AIOT_OK) return (int)rc;
    }
    return 0;
}
