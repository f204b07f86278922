//! The model as data: walk a package's PLAN section (aiot.lifecycle.plan) with the engine's
//! kernels. Loading checks every offset and size against the plan and the arena once; the
//! walk then only calls kernels with prepared parameters, so it costs a loop iteration per
//! layer more than the generated straight-line code.
#include <string.h>

#include "aiot/le.h"
#include "aiot/engine.h"
#include "aiot/update.h"


static int within(uint32_t off, uint32_t bytes, uint32_t len) { return off <= len && bytes <= len - off; }

int aiot_plan_load(const uint8_t *plan, uint32_t len, uint32_t arena_cap, aiot_plan_t *out) {
    memset(out, 0, sizeof *out);
    if (((uintptr_t)plan & 3u) != 0) return AIOT_UPD_NOT_PACKAGE;  // arrays are read in place
    if (len < AIOT_PLAN_HEADER || aiot_le_rd32(plan) != AIOT_PLAN_MAGIC || aiot_le_rd16(plan + 4) != 1u) return AIOT_UPD_NOT_PACKAGE;
    uint32_t n = aiot_le_rd16(plan + 6);
    out->arena_bytes = aiot_le_rd32(plan + 8);
    out->input_offset = aiot_le_rd32(plan + 12);
    out->output_offset = aiot_le_rd32(plan + 16);
    out->input_bytes = aiot_le_rd32(plan + 20);
    out->output_bytes = aiot_le_rd32(plan + 24);
    if (n == 0 || n > AIOT_PLAN_MAX_LAYERS || !within(AIOT_PLAN_HEADER, n * AIOT_PLAN_LAYER, len)) return AIOT_UPD_NOT_PACKAGE;
    if (out->arena_bytes > arena_cap) return AIOT_UPD_TOO_LARGE;
    if (!within(out->input_offset, out->input_bytes, out->arena_bytes) ||
        !within(out->output_offset, out->output_bytes, out->arena_bytes))
        return AIOT_UPD_NOT_PACKAGE;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = plan + AIOT_PLAN_HEADER + i * AIOT_PLAN_LAYER;
        aiot_plan_layer_t *l = &out->layer[i];
        uint32_t fast = aiot_le_rd16(r + 2), batches = aiot_le_rd16(r + 4), n_in = aiot_le_rd16(r + 6), n_out = aiot_le_rd16(r + 8);
        uint32_t w = aiot_le_rd32(r + 20), b = aiot_le_rd32(r + 24), rq = aiot_le_rd32(r + 28), sh = aiot_le_rd32(r + 32);
        if (aiot_le_rd16(r) != 1u || batches == 0 || n_in == 0 || n_out == 0) return AIOT_UPD_NOT_PACKAGE;
        uint32_t rows = (n_out + 3u) & ~3u;  // pack_weights_wide pads the rows to a multiple of 4
        uint32_t rq_entries = aiot_le_rd16(r + 10) || fast ? n_out : 1u;
        if (((w | b | rq | sh) & 3u) != 0 || !within(w, rows * n_in * 2u, len) || !within(b, n_out * 4u, len) ||
            !within(rq, rq_entries * (fast ? 8u : 4u), len) || (!fast && !within(sh, rq_entries * 4u, len)))
            return AIOT_UPD_NOT_PACKAGE;
        l->in_offset = aiot_le_rd32(r + 12);
        l->out_offset = aiot_le_rd32(r + 16);
        if (!within(l->in_offset, batches * n_in, out->arena_bytes) ||
            !within(l->out_offset, batches * n_out, out->arena_bytes))
            return AIOT_UPD_NOT_PACKAGE;
        l->weights = (const int16_t *)(const void *)(plan + w);
        l->bias = (const int32_t *)(const void *)(plan + b);
        l->p.batches = (uint16_t)batches;
        l->p.in_features = (uint16_t)n_in;
        l->p.out_features = (uint16_t)n_out;
        l->p.rq.output_offset = (int32_t)aiot_le_rd32(r + 36);
        l->p.rq.act_min = (int32_t)aiot_le_rd32(r + 40);
        l->p.rq.act_max = (int32_t)aiot_le_rd32(r + 44);
        l->p.rq.per_channel = (uint8_t)(fast ? 1u : aiot_le_rd16(r + 10));
        if (fast) {
            l->p.rq.fast = (const aiot_rq_ch_t *)(const void *)(plan + rq);
        } else {
            l->p.rq.multiplier = (const int32_t *)(const void *)(plan + rq);
            l->p.rq.shift = (const int32_t *)(const void *)(plan + sh);
        }
    }
    out->num_layers = (uint16_t)n;
    return AIOT_UPD_OK;
}

int aiot_plan_invoke(const aiot_plan_t *p, int8_t *arena) {
    for (uint32_t i = 0; i < p->num_layers; i++) {
        const aiot_plan_layer_t *l = &p->layer[i];
        int rc = (int)aiot_fully_connected_s8_wide(&l->p, arena + l->in_offset, l->weights, l->bias,
                                                   arena + l->out_offset);
        if (rc != 0) return rc;
    }
    return 0;
}
