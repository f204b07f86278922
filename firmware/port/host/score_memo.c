//! Host only (the evaluation's settings grid, aiot.evaluate.tuning): the served model of a
//! host build of the monitor is the compiled-in int8 engine with a memo in front of it.
//! Built with -DAIOT_APP_UPDATE so that the monitor's engine adapter (engine_adapter.c,
//! unchanged: it quantizes, invokes, dequantizes) invokes the model through
//! aiot_served_model(), defined here. The engine is a pure function of its int8 input, so an
//! input it has seen before (every byte equal) gets the output bytes the engine gave it then;
//! any other input runs the engine. Running a grid of alert settings over one recording then
//! costs the engine about once per distinct window, not once per setting. The monitor itself
//! runs whole for every setting and decides everything.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aiot/served_model.h"

static struct {
    size_t n;           //!< bytes per input and per output
    size_t cap;         //!< slots, a power of two (0: no memo, every call runs the engine)
    size_t limit;       //!< largest cap it may grow to
    size_t used;
    uint64_t hits, misses, not_stored;
    uint64_t *hash;     //!< 0 = empty slot
    int8_t *keys;       //!< cap x n inputs
    int8_t *vals;       //!< cap x n outputs
    const int8_t *out;  //!< what MODEL_OUTPUT() returns after the last invoke
} memo;

static uint64_t hash_of(const int8_t *x, size_t n) {
    uint64_t h = 1469598103934665603ull, w;  // FNV-1a over 8-byte words, then the tail bytes
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, x + i, 8);
        h = (h ^ w) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (uint8_t)x[i]) * 1099511628211ull;
    return h ? h : 1;
}

static void drop(void) {
    free(memo.hash);
    free(memo.keys);
    free(memo.vals);
    memo.hash = NULL;
    memo.keys = memo.vals = NULL;
    memo.cap = memo.used = 0;
}

//! The slot of input `x` (hash `h`): where it is stored, or the empty slot it would go to.
static size_t slot(const int8_t *x, uint64_t h) {
    size_t i = (size_t)h & (memo.cap - 1);
    while (memo.hash[i] && !(memo.hash[i] == h && memcmp(memo.keys + i * memo.n, x, memo.n) == 0))
        i = (i + 1) & (memo.cap - 1);
    return i;
}

static int alloc(size_t cap) {
    memo.hash = (uint64_t *)calloc(cap, sizeof(uint64_t));
    memo.keys = (int8_t *)malloc(cap * memo.n);
    memo.vals = (int8_t *)malloc(cap * memo.n);
    memo.cap = cap;
    memo.used = 0;
    if (memo.hash && memo.keys && memo.vals) return 0;
    drop();
    return -1;
}

//! Twice the slots, every entry moved over; on failure the memo stays as it was.
static void grow(void) {
    uint64_t *hash = memo.hash;
    int8_t *keys = memo.keys, *vals = memo.vals;
    size_t cap = memo.cap, used = memo.used, i;
    if (alloc(2 * cap) != 0) {
        memo.hash = hash;
        memo.keys = keys;
        memo.vals = vals;
        memo.cap = cap;
        memo.used = used;
        return;
    }
    for (i = 0; i < cap; i++) {
        if (!hash[i]) continue;
        size_t j = slot(keys + i * memo.n, hash[i]);
        memo.hash[j] = hash[i];
        memcpy(memo.keys + j * memo.n, keys + i * memo.n, memo.n);
        memcpy(memo.vals + j * memo.n, vals + i * memo.n, memo.n);
        memo.used++;
    }
    free(hash);
    free(keys);
    free(vals);
}

//! Forget everything and start a memo of `cap` slots that may grow to `limit` (both rounded
//! up to powers of two; cap 0: no memo). Returns 0, or -1 when out of memory (then no memo).
int aiot_score_memo_reset(size_t cap, size_t limit) {
    size_t c = 1, l = 1;
    drop();
    memo.n = aiot_model_info.input_bytes;
    memo.hits = memo.misses = memo.not_stored = 0;
    if (!cap || memo.n != aiot_model_info.output_bytes) return 0;
    while (c < cap) c <<= 1;
    while (l < limit) l <<= 1;
    memo.limit = l < c ? c : l;
    return alloc(c);
}

//! hits, misses, misses not stored (the memo at its limit)
void aiot_score_memo_counts(uint64_t *out3) {
    out3[0] = memo.hits;
    out3[1] = memo.misses;
    out3[2] = memo.not_stored;
}

static int8_t *input(void) { return aiot_model_input(); }

static const int8_t *output(void) { return memo.out ? memo.out : aiot_model_output(); }

static int invoke(void) {
    const int8_t *x = aiot_model_input();
    uint64_t h;
    size_t i;
    int rc;
    memo.out = NULL;
    if (!memo.cap) return aiot_model_invoke();
    h = hash_of(x, memo.n);
    i = slot(x, h);
    if (memo.hash[i]) {
        memo.hits++;
        memo.out = memo.vals + i * memo.n;
        return 0;
    }
    memo.misses++;
    if (2 * (memo.used + 1) > memo.cap) {  // at most half full: probes stay short
        if (memo.cap < memo.limit) grow();
        if (2 * (memo.used + 1) > memo.cap) {
            memo.not_stored++;
            return aiot_model_invoke();
        }
        i = slot(x, h);
    }
    // the key is copied before the engine runs: its arena may reuse the input's bytes
    memcpy(memo.keys + i * memo.n, x, memo.n);
    rc = aiot_model_invoke();
    if (rc != 0) return rc;
    memo.hash[i] = h;
    memcpy(memo.vals + i * memo.n, aiot_model_output(), memo.n);
    memo.used++;
    return 0;
}

static const aiot_served_model_t served = {&aiot_model_info, input, output, invoke};

const aiot_served_model_t *aiot_served_model(void) { return &served; }
