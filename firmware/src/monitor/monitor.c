//! Sensor monitor (see aiot/monitor.h and docs/monitor.md): windowing with gap tracking,
//! commissioning, conformal calibration, CUSUM drift/step handling and k-of-n alerting.
#include "aiot/monitor.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if AIOT_MONITOR_MAX_CHANNELS > 64 || AIOT_MONITOR_MAX_CHANNELS < 1
#error "AIOT_MONITOR_MAX_CHANNELS must be 1..64 (valid masks are 64 bits per sample)"
#endif
#if AIOT_MONITOR_MAX_CHANNELS % 2
#error "AIOT_MONITOR_MAX_CHANNELS must be even (a sample is 16 + 4 x capacity bytes; its 64-bit mask would pad an odd one)"
#endif
#if AIOT_MONITOR_MAX_WINDOW > 255 || AIOT_MONITOR_EVENT_CAPACITY > 255
#error "window and event capacity must fit in a byte"
#endif

// Wire sizes promised in monitor.h.
typedef char aiot_static_output_size[(sizeof(aiot_monitor_output_t) == 32) ? 1 : -1];
typedef char aiot_static_event_size[(sizeof(aiot_monitor_event_t) == 16) ? 1 : -1];
typedef char aiot_static_sample_size[(sizeof(aiot_sample_t) == 16 + 4 * AIOT_MONITOR_MAX_CHANNELS) ? 1 : -1];
// The moving-away ring holds the longest clear period (persist_n <= 16) in the bytes of the
// commissioning / calibration accumulators, so it costs no RAM.
typedef char aiot_static_away_ring[(sizeof(((aiot_monitor_channel_t *)0)->away) == 16) ? 1 : -1];

#define BIT(c) ((aiot_monitor_mask_t)1 << (c))

enum { CH_OK = 0, CH_DRIFT = 1, CH_RECAL = 2 };
enum { CHF_RECAL_BLOCKED = 0x01, CHF_DRIFT_REPORTED = 0x04, CHF_PENDING = 0x08, CHF_GAIN_TEST = 0x10 };

#define MS_PER_HOUR 3600000.0f
#define TINY 1e-6f
#define BAND_NOISE 3.0f  // "away": outside the commissioned band widened to +-3 noise units
#define AWAY_STEP 1.0f   // moving away: farther by this over a clear period (noise units)
#define AWAY_RING 16      // distances kept per channel: the longest clear period (persist_n)
#define AWAY_UNIT 0.125f  // their resolution (noise units); 254 x 0.125 = 31.75 is far out of any band
#define AWAY_TOP 31.75f
#define AWAY_NONE 255u
#define RESIDUAL_SD_FLOOR 0.05f  // residual spreads are at least this (noise units), as dev_sd,
                                 // and at least the channel's noise floor
#define POOLED_MIN 4             // residual_score 2, 3 pool at least this many channels (the largest left out)
#define GAIN_EVIDENCE 16.0f      // a remount is a gain once that explains the residual this much better (chi^2, 1 dof)
#define GAIN_MISS 4.0f           // ... and leaves at most this much unexplained per window (x the residual's variance)
#define RESIDUAL_CAP 1e6f        // |residual| beyond this (noise units) counts as this: a model
                                 // answering 1e15 alerts, its running mean and spread stay finite

void aiot_monitor_default_config(aiot_monitor_config_t *cfg, uint8_t num_channels, uint8_t window,
                                 uint32_t sample_period_ms) {
    int c;
    memset(cfg, 0, sizeof(*cfg));
#define DEFAULT_(name, type, def, lo, hi, bounds, doc) cfg->name = (type)(def);
#define CHANNEL_DEFAULT_(name, type, def, lo, hi, bounds, doc) \
    for (c = 0; c < num_channels && c < AIOT_MONITOR_MAX_CHANNELS; c++) cfg->name[c] = (type)(def);
    AIOT_MONITOR_SETTINGS(DEFAULT_)
    AIOT_MONITOR_CHANNEL_SETTINGS(CHANNEL_DEFAULT_)
#undef DEFAULT_
#undef CHANNEL_DEFAULT_
    cfg->num_channels = num_channels;
    cfg->window = window;
    cfg->sample_period_ms = sample_period_ms;
}

//! Is x inside [lo, hi] / (lo, hi] / [lo, hi)? NaN is never inside. Taken as double so
//! that every field type compares exactly.
static int in_range(double x, double lo, double hi, int bounds) {
    if (!(bounds == AIOT_RANGE_LO_OPEN ? x > lo : x >= lo)) return 0;
    return bounds == AIOT_RANGE_HI_OPEN ? x < hi : x <= hi;
}

const char *aiot_monitor_config_problem(const aiot_monitor_config_t *c) {
    int ch;
    if (!c) return "invalid monitor configuration: none given";
#define CHECK_(name, type, def, lo, hi, bounds, doc) \
    if (!in_range((double)c->name, (double)(lo), (double)(hi), bounds)) return "invalid monitor configuration: " #name " out of range (monitor.h)";
    AIOT_MONITOR_SETTINGS(CHECK_)
#undef CHECK_
    for (ch = 0; ch < c->num_channels; ch++) {
#define CHANNEL_CHECK_(name, type, def, lo, hi, bounds, doc) \
    if (!in_range((double)c->name[ch], (double)(lo), (double)(hi), bounds)) return "invalid monitor configuration: " #name " out of range (monitor.h)";
        AIOT_MONITOR_CHANNEL_SETTINGS(CHANNEL_CHECK_)
#undef CHANNEL_CHECK_
    }
    if (c->persist_k > c->persist_n) return "invalid monitor configuration: persist_k more than persist_n";
    if (c->clear_margin > c->alert_margin) return "invalid monitor configuration: clear_margin more than alert_margin";
    if (c->severity_critical < c->severity_major) return "invalid monitor configuration: severity_critical less than severity_major";
    if (c->max_recal_step < c->step_threshold) return "invalid monitor configuration: max_recal_step less than step_threshold";
    // A window must be much shorter than the 2^31 ms a uint32 clock can tell apart.
    if ((uint64_t)c->window * c->sample_period_ms > 0x40000000u)
        return "invalid monitor configuration: sample_period_ms x window over 2^30 ms (12.4 days)";
    // the spread of N-window means needs two of them while commissioning
    if (c->level_windows && c->commission_samples < (uint32_t)(c->level_windows + 1u) * c->window)
        return "invalid monitor configuration: level_windows needs (level_windows + 1) x window commission_samples";
    // the spread z is a term of the per-sensor score (level_windows > 0), not of the model's error
    if (c->spread_score && !c->level_windows)
        return "invalid monitor configuration: spread_score needs level_windows > 0 (the per-sensor score)";
    if (c->residual_score && !c->level_windows)
        return "invalid monitor configuration: residual_score needs level_windows > 0 (the per-sensor score)";
    return NULL;
}

int aiot_monitor_check_config(const aiot_monitor_config_t *c) {
    return aiot_monitor_config_problem(c) ? AIOT_MONITOR_EINVAL : AIOT_MONITOR_OK;
}

size_t aiot_monitor_sizeof(void) { return sizeof(aiot_monitor_t); }
size_t aiot_monitor_config_sizeof(void) { return sizeof(aiot_monitor_config_t); }

int aiot_monitor_channel_info(const aiot_monitor_t *m, uint8_t channel, aiot_monitor_channel_info_t *info) {
    const aiot_monitor_channel_t *ch;
    if (!m || !info || channel >= m->cfg.num_channels) return AIOT_MONITOR_EINVAL;
    ch = &m->ch[channel];
    memset(info, 0, sizeof(*info));
    info->baseline = ch->baseline;
    info->baseline0 = ch->baseline0;
    info->noise = ch->noise;
    info->error_ref = ch->err_ref;
    info->last_error = ch->last_error;
    info->last_deviation = ch->last_dev;
    info->last_rest = ch->last_rest;
    info->deviation_sd = ch->dev_sd;
    info->leverage = ch->leverage;
    info->mode = ch->mode;
    info->health = ch->health;
    info->rejected = ch->rejected;
    return AIOT_MONITOR_OK;
}

void aiot_monitor_stats(const aiot_monitor_t *m, aiot_monitor_stats_t *st) {
    if (!m || !st) return;
    memset(st, 0, sizeof(*st));
    st->phase = m->phase;
    st->state = m->last_state;
    st->alert = m->alert;
    st->events_pending = m->ev_count;
    st->windows = m->windows;
    st->rejected_samples = m->rejected_samples;
    st->score_errors = m->score_errors;
    st->events_dropped = m->events_dropped;
    st->time_resets = m->time_resets;
}

static void reset_learning(aiot_monitor_t *m) {
    memset(m->ch, 0, sizeof(m->ch));
    memset(m->cal, 0, sizeof(m->cal));
    m->phase = AIOT_PHASE_COMMISSIONING;
    m->cal_count = 0;
    m->alert = 0;
    m->alert_severity = 0;
    m->recovering = 0;
    m->vote_high = m->vote_low = m->vote_rec = 0;
    m->band_out = 0;
    m->held = 0;
    m->alert_mask = 0;
    m->fill = 0;
    m->avg_count = m->avg_pos = 0;
    m->lvl_count = m->lvl_pos = 0;
    m->away_count = m->away_pos = 0;
    m->en_ref = m->en_m2 = m->en_max = m->en_gain = 0.0f;
    m->en_n = 0;
}

//! The window score that counts: s itself, or with score_average N > 1 the mean of the
//! last N raw scores (s included). The ring starts empty at commissioning.
static float averaged(aiot_monitor_t *m, float s) {
    const int n = m->cfg.score_average;
    float sum = 0.0f;
    int i;
    if (n <= 1) return s;
    if (m->avg_pos >= n) m->avg_pos = 0;  // score_average lowered by update_config
    m->avg[m->avg_pos] = s;
    m->avg_pos = (uint8_t)((m->avg_pos + 1) % n);
    if (m->avg_count < n) m->avg_count++;
    if (m->avg_count > n) m->avg_count = (uint8_t)n;
    for (i = 0; i < m->avg_count; i++) sum += m->avg[i];
    return sum / (float)m->avg_count;
}

int aiot_monitor_init(aiot_monitor_t *m, const aiot_monitor_config_t *cfg, aiot_score_fn score, void *ctx) {
    if (!m || !score || aiot_monitor_check_config(cfg) != AIOT_MONITOR_OK) return AIOT_MONITOR_EINVAL;
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->score = score;
    m->score_ctx = ctx;
    m->last_state = AIOT_STATE_RECALIBRATING;
    reset_learning(m);
    return AIOT_MONITOR_OK;
}

int aiot_monitor_update_config(aiot_monitor_t *m, const aiot_monitor_config_t *cfg) {
    if (!m || aiot_monitor_check_config(cfg) != AIOT_MONITOR_OK) return AIOT_MONITOR_EINVAL;
    const aiot_monitor_config_t *o = &m->cfg;
    if (cfg->num_channels != o->num_channels || cfg->window != o->window ||
        cfg->sample_period_ms != o->sample_period_ms || cfg->commission_samples != o->commission_samples ||
        cfg->calibration_windows != o->calibration_windows || cfg->level_windows != o->level_windows ||
        cfg->spread_score != o->spread_score || cfg->residual_score != o->residual_score)
        return AIOT_MONITOR_EINVAL;
    m->cfg = *cfg;
    if (m->phase != AIOT_PHASE_COMMISSIONING) {  // a new tolerance applies at once
        int c;
        for (c = 0; c < cfg->num_channels; c++)
            m->ch[c].tolerance = cfg->calibration_tolerance[c] > 0.0f ? cfg->calibration_tolerance[c]
                                                                       : m->ch[c].acc_max - m->ch[c].acc_min;
    }
    return AIOT_MONITOR_OK;
}

// ---------------------------------------------------------------- events

//! The event's channel fields for `channel` and the set `mask` (at most `channel` and two
//! others: the top 3 of a window): a bitmask while they are all below 8 (the only form a
//! device of <= 8 channels sends), else the two others by number (monitor.h).
static void event_channels(aiot_monitor_event_t *e, uint8_t channel, aiot_monitor_mask_t mask) {
    uint8_t other[2] = {0x7Fu, 0x7Fu};
    int c, n = 0;
    if ((mask >> 8) == 0 && (channel < 8u || channel == AIOT_MONITOR_NO_CHANNEL)) {
        e->channel_mask = (uint8_t)mask;
        e->channel_ext = 0;
        return;
    }
    for (c = 0; c < AIOT_MONITOR_MAX_CHANNELS && n < 2; c++)
        if (((mask >> c) & 1u) && c != channel) other[n++] = (uint8_t)c;
    e->channel_mask = other[0];
    e->channel_ext = (uint8_t)(0x80u | other[1]);
}

#define NO_CONFIDENCE 255u  //!< ev_confidence of an event no scored window emitted

static void emit(aiot_monitor_t *m, uint32_t ts, uint8_t type, uint8_t channel, aiot_monitor_mask_t mask,
                 float value) {
    aiot_monitor_event_t *e;
    if (m->ev_count == AIOT_MONITOR_EVENT_CAPACITY) {
        // Keep the newest: overwrite the oldest and count what the host never saw.
        m->ev_head = (uint8_t)((m->ev_head + 1) % AIOT_MONITOR_EVENT_CAPACITY);
        m->ev_count--;
        m->events_dropped++;
    }
    m->ev_confidence[(m->ev_head + m->ev_count) % AIOT_MONITOR_EVENT_CAPACITY] = NO_CONFIDENCE;
    e = &m->events[(m->ev_head + m->ev_count) % AIOT_MONITOR_EVENT_CAPACITY];
    m->ev_count++;
    e->timestamp_ms = ts;
    e->seq = m->event_seq++;
    e->type = type;
    e->channel = channel;
    event_channels(e, channel, mask);
    e->severity = m->alert ? m->alert_severity : 0;
    e->state = m->last_state;
    e->value = value;
}

int aiot_monitor_pop_event_confidence(aiot_monitor_t *m, aiot_monitor_event_t *ev, float *confidence) {
    uint8_t code;
    if (!m || !ev || m->ev_count == 0) return 0;
    *ev = m->events[m->ev_head];
    code = m->ev_confidence[m->ev_head];
    if (confidence) *confidence = code == NO_CONFIDENCE ? -1.0f : (float)code / 254.0f;
    m->ev_head = (uint8_t)((m->ev_head + 1) % AIOT_MONITOR_EVENT_CAPACITY);
    m->ev_count--;
    return 1;
}

int aiot_monitor_pop_event(aiot_monitor_t *m, aiot_monitor_event_t *ev) {
    return aiot_monitor_pop_event_confidence(m, ev, NULL);
}

void aiot_monitor_reset_baseline(aiot_monitor_t *m) {
    if (!m) return;
    reset_learning(m);
    m->last_state = AIOT_STATE_RECALIBRATING;
    emit(m, m->last_ts, AIOT_EVENT_BASELINE_RESET, AIOT_MONITOR_NO_CHANNEL, 0, 0.0f);
}

// ---------------------------------------------------------------- small maths

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

//! Welford update for the n-th value x (n counts x itself).
static void welford(float *mean, float *m2, uint32_t n, float x) {
    float d = x - *mean;
    *mean += d / (float)n;
    *m2 += d * (x - *mean);
}

static int popcount16(uint16_t v) {
    int n = 0;
    while (v) {
        v &= (uint16_t)(v - 1u);
        n++;
    }
    return n;
}

//! 2^k as a float, for k in -126..127: its exponent bits (exact).
static float pow2i(int k) {
    const uint32_t bits = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

//! e^x from single-precision +, -, * only, so that every build of the monitor (host glibc,
//! newlib on Cortex-M, soft float) gives the same bits: the C library's expf differs by an
//! ULP between them (issue 19: p_value and confidence in 32 of SKAB's 34 files). No fused
//! multiply-add: every build says -ffp-contract=off (aiot.target.firmware.COMMON_CFLAGS,
//! hostbuild.HOST_CFLAGS), and one operation per statement keeps it out elsewhere too.
//! x = k ln2 + r with |r| <= ln2/2 (ln2 in two parts, k ln2_hi exact), e^r by its Taylor
//! series to r^7, times 2^k (in two steps below 2^-126). Within 1 ULP of glibc's expf.
static float exp_portable(float x) {
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723e-6f;
    float r, y, t;
    int k;
    if (x != x) return x;
    if (x > 88.7228f) return INFINITY;
    if (x < -103.98f) return 0.0f;
    t = x * 1.44269504f;
    k = (int)(t < 0.0f ? t - 0.5f : t + 0.5f);  // nearest, half away from zero
    t = (float)k * ln2_hi;
    r = x - t;
    t = (float)k * ln2_lo;
    r = r - t;
    y = r * (1.0f / 5040.0f);
    y = y + 1.0f / 720.0f;
    y = y * r;
    y = y + 1.0f / 120.0f;
    y = y * r;
    y = y + 1.0f / 24.0f;
    y = y * r;
    y = y + 1.0f / 6.0f;
    y = y * r;
    y = y + 0.5f;
    y = y * r;
    y = y + 1.0f;
    y = y * r;
    y = y + 1.0f;
    if (k > 127) return y * pow2i(k - 1) * 2.0f;
    if (k < -126) return y * pow2i(k + 64) * pow2i(-64);
    return y * pow2i(k);
}

//! Conformal p-value of score s against the sorted calibration set, with an exponential
//! tail beyond the largest calibration score so that confidence keeps growing with s.
static float p_value(const aiot_monitor_t *m, float s) {
    int n = m->cal_count, ge = 0, i;
    float top, tail;
    for (i = n - 1; i >= 0 && m->cal[i] >= s; i--) ge++;
    if (ge > 0) return (float)(1 + ge) / (float)(n + 1);
    top = m->cal[n - 1];
    tail = top - m->cal[n / 2];
    if (tail < TINY) tail = TINY;
    return exp_portable(-(s - top) / tail) / (float)(n + 1);
}

static void cal_insert(aiot_monitor_t *m, float s) {
    int i = m->cal_count;
    while (i > 0 && m->cal[i - 1] > s) {
        m->cal[i] = m->cal[i - 1];
        i--;
    }
    m->cal[i] = s;
    m->cal_count++;
}

// ---------------------------------------------------------------- level shift

//! Into the level ring: each channel's mean of the window's valid raw samples (NaN if none).
//! Called on the raw window, before normalize().
static void level_push(aiot_monitor_t *m) {
    const int C = m->cfg.num_channels, W = m->cfg.window, n = m->cfg.level_windows;
    float *slot;
    int c, t;
    if (n == 0) return;
    slot = &m->lvl_ring[m->lvl_pos * AIOT_MONITOR_MAX_CHANNELS];
    for (c = 0; c < C; c++) {
        double sum = 0.0;  // 32 samples near FLT_MAX must not sum to inf (then "no data")
        int nv = 0;
        for (t = 0; t < W; t++) {
            if ((m->valid[t] >> c) & 1u) {
                sum += (double)m->win[t * C + c];
                nv++;
            }
        }
        slot[c] = nv ? (float)(sum / nv) : NAN;
    }
    m->lvl_pos = (uint8_t)((m->lvl_pos + 1) % n);
    if (m->lvl_count < n) m->lvl_count++;
}

//! Channel c's mean over the last level_windows windows (fewer until the ring is full),
//! windows without a valid sample of c left out; NaN when none has one.
static float level_mean(const aiot_monitor_t *m, int c) {
    double sum = 0.0;  // means near FLT_MAX must not sum to inf (which reads as "no data")
    int i, nv = 0;
    for (i = 0; i < m->lvl_count; i++) {
        const float v = m->lvl_ring[i * AIOT_MONITOR_MAX_CHANNELS + c];
        if (!isnan(v)) {
            sum += (double)v;
            nv++;
        }
    }
    return nv ? (float)(sum / nv) : NAN;
}

//! The standard deviation of n values, in double (samples near FLT_MAX must not overflow);
//! 0 for fewer than 2.
static double spread_of(const float *x, int n) {
    double mean = 0.0, ss = 0.0;
    int i;
    if (n < 2) return 0.0;
    for (i = 0; i < n; i++) mean += (double)x[i];
    mean /= n;
    for (i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    return sqrt(ss / (n - 1));
}

//! spread_score: each channel's spread z, (window spread - commissioned mean of the window
//! spreads) / their commissioned spread, only upwards (a quieter window is not a fault here),
//! NaN when fewer than 2 valid samples. On the raw window, before normalize(). Capped at
//! FLT_MAX: a garbage sample is a huge spread, never inf.
static void window_spreads(const aiot_monitor_t *m, float *z) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    float x[AIOT_MONITOR_MAX_WINDOW];
    int c, t;
    for (c = 0; c < C; c++) {
        const aiot_monitor_channel_t *ch = &m->ch[c];
        int nv = 0;
        for (t = 0; t < W; t++)
            if ((m->valid[t] >> c) & 1u) x[nv++] = m->win[t * C + c];
        if (nv < 2) {
            z[c] = NAN;
        } else {
            const double d = (spread_of(x, nv) - (double)ch->spr_ref) / (double)ch->spr_sd;
            z[c] = d > 0.0 ? (d < (double)FLT_MAX ? (float)d : FLT_MAX) : 0.0f;  // NaN: 0; no libm call (M0 flash)
        }
    }
}

//! The per-sensor score: the largest |N-window mean - baseline| / spread over the channels
//! (a recalibrating channel and one without data left out), with spread_score the larger of
//! that and the channel's spread z (`spread`, NULL when off), with residual_score the larger
//! of those and its residual z (`resid`, NULL when off); each channel's z in z[].
static float level_score(const aiot_monitor_t *m, const float *spread, const float *resid, float *z) {
    float s = 0.0f;
    int c, bad = 0;
    for (c = 0; c < m->cfg.num_channels; c++) {
        const float mean = level_mean(m, c);
        // No data (NaN) leaves the channel out; a level beyond float (inf) is never "0".
        z[c] = (m->ch[c].mode == CH_RECAL || isnan(mean)) ? 0.0f : fabsf(mean - m->ch[c].baseline) / m->ch[c].lvl_sd;
        if (spread && m->ch[c].mode != CH_RECAL && spread[c] > z[c]) z[c] = spread[c];  // NaN: no spread
        if (resid && m->ch[c].mode != CH_RECAL && resid[c] > z[c]) z[c] = resid[c];     // NaN: no data
        if (!isfinite(z[c])) bad = 1;  // NaN or inf: the window becomes a score error
        else if (z[c] > s) s = z[c];
    }
    return bad ? INFINITY : s;
}

// ---------------------------------------------------------------- windows

typedef struct {
    float quality;
    float ch_quality[AIOT_MONITOR_MAX_CHANNELS];
} window_quality_t;

//! Each channel's valid fraction of the window; the window's quality (the worst channel's,
//! among those not left out) is leave_out()'s, once track_silent() has said which are lost.
static void window_quality(const aiot_monitor_t *m, window_quality_t *q) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    int c, t;
    for (c = 0; c < C; c++) {
        int nv = 0;
        for (t = 0; t < W; t++) nv += (m->valid[t] >> c) & 1u;
        q->ch_quality[c] = (float)nv / (float)W;
    }
}

#define CH_LEFT_OUT (AIOT_CH_LOST | AIOT_CH_NOT_COMMISSIONED)

//! Armed: a channel whose window has too little of its data (valid fraction under
//! min_quality) for channel_lost_minutes in a row, while other channels send, is lost:
//! CHANNEL_LOST naming it. A short dropout leaves the whole window NO_DATA (nothing can be
//! said); a sensor gone for longer (a broken cable, a dead sensor) must not blind the device
//! to the others. Every channel silent at once is an outage (DATA_LOST), not lost sensors:
//! those windows do not count. With its first window of data again it is back
//! (CHANNEL_BACK) and scored.
static void track_silent(aiot_monitor_t *m, const window_quality_t *q, uint32_t ts) {
    const aiot_monitor_config_t *k = &m->cfg;
    const float window_minutes = (float)k->window * (float)k->sample_period_ms / 60000.0f;
    int c, sending = 0;
    for (c = 0; c < k->num_channels; c++) sending |= q->ch_quality[c] >= k->min_quality;
    if (!sending) return;
    for (c = 0; c < k->num_channels; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        if (q->ch_quality[c] >= k->min_quality) {
            if (ch->health & AIOT_CH_LOST) {
                ch->health &= (uint8_t)~AIOT_CH_LOST;
                emit(m, ts, AIOT_EVENT_CHANNEL_BACK, (uint8_t)c, BIT(c), (float)ch->silent_windows * window_minutes);
            }
            ch->silent_windows = 0;
            continue;
        }
        if (ch->silent_windows < 0xFFFFFFFFu) ch->silent_windows++;
        if (!(ch->health & AIOT_CH_LOST) && k->channel_lost_minutes &&
            (float)ch->silent_windows * window_minutes >= (float)k->channel_lost_minutes) {
            ch->health |= AIOT_CH_LOST;
            if (ch->mode == CH_RECAL) {  // a remount it can no longer finish: its level back
                ch->baseline = ch->recal_from;
                ch->mode = CH_OK;
            }
            emit(m, ts, AIOT_EVENT_CHANNEL_LOST, (uint8_t)c, BIT(c), (float)ch->silent_windows * window_minutes);
        }
    }
}

//! Lost and uncommissioned channels are left out of the window: their samples are dropped
//! (every later step sees a channel without data: out of the score, never "back in band")
//! and the window's quality is that of the others. Returns 1 when one was left out; with
//! every channel left out the quality is 0 (NO_DATA).
static int leave_out(aiot_monitor_t *m, window_quality_t *q) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    int c, t, out = 0, kept = 0;
    q->quality = 1.0f;
    for (c = 0; c < C; c++) {
        if (m->ch[c].health & CH_LEFT_OUT) {
            for (t = 0; t < W; t++) m->valid[t] &= ~BIT(c);
            q->ch_quality[c] = 0.0f;
            out = 1;
            continue;
        }
        kept++;
        if (q->ch_quality[c] < q->quality) q->quality = q->ch_quality[c];
    }
    if (!kept) q->quality = 0.0f;
    return out;
}

//! Welford update in double: one 1e20 garbage sample must not overflow the accumulators
//! (in float its square is inf). Commissioning only: the cost is a few hundred samples.
static void welford_d(double *mean, double *m2, uint32_t n, double x) {
    double d = x - *mean;
    *mean += d / (double)n;
    *m2 += d * (x - *mean);
}

static void sort_floats(float *v, int n) {
    int i, j;
    for (i = 1; i < n; i++) {
        float x = v[i];
        for (j = i; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

static float median_sorted(const float *v, int n) { return 0.5f * (v[(n - 1) / 2] + v[n / 2]); }

//! The channel's noise floor (raw units) for a level: max(noise_floor, noise_floor_rel x |level|).
static float noise_floor_of(const aiot_monitor_t *m, int c, float level) {
    float f = m->cfg.noise_floor_rel[c] * fabsf(level);
    return fmaxf(f, m->cfg.noise_floor[c]);
}

//! One commissioning window of channel c, robustly. A sample is a spike (rejected and
//! counted) when it is further than commission_reject robust spreads from the window's
//! median *and* from both its neighbours in time: a level that changes (a sample-and-hold
//! analyzer, a switching sensor) is confirmed by the next sample and kept; a spike or
//! garbage value is not. The last sample of a window, if it is far, waits for the next
//! window's first sample to decide (ch->pending). The spread is the largest of: the window's
//! deviations from its median with its top quarter left out, as a standard deviation (the
//! 75th percentile of |N(0,1)| is 1.15; steadier than the MAD on 8 samples), the spread
//! accepted so far, and the noise floor. More than a quarter of the window far from its
//! median is the signal's own shape: then nothing is rejected.
static void commission_channel(aiot_monitor_t *m, int c) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    aiot_monitor_channel_t *ch = &m->ch[c];
    float seq[AIOT_MONITOR_MAX_WINDOW + 1], v[AIOT_MONITOR_MAX_WINDOW + 1], med, spread, lim;
    int t, i, n = 0, out = 0, kept = 0;
    if (ch->flags & CHF_PENDING) seq[n++] = ch->pending;  // last sample of the previous window
    ch->flags &= (uint8_t)~CHF_PENDING;
    for (t = 0; t < W; t++)
        if ((m->valid[t] >> c) & 1u) seq[n++] = m->win[t * C + c];
    if (n == 0) return;
    memcpy(v, seq, (size_t)n * sizeof(float));
    sort_floats(v, n);
    med = median_sorted(v, n);
    for (i = 0; i < n; i++) v[i] = fabsf(seq[i] - med);
    sort_floats(v, n);
    spread = v[n - 1 - n / 4] / 1.15f;
    if (ch->acc_n > 1) spread = fmaxf(spread, (float)sqrt(ch->acc_m2 / (double)(ch->acc_n - 1)));
    spread = fmaxf(spread, noise_floor_of(m, c, med));
    lim = m->cfg.commission_reject * spread;
    for (i = 0; i < n; i++) out += !(fabsf(seq[i] - med) <= lim);  // an inf spread rejects nothing
    if (out > n / 4) out = 0;
    for (i = 0; i < n; i++) {
        const float x = seq[i];
        if (out && !(fabsf(x - med) <= lim)) {
            const int left = i > 0 ? fabsf(x - seq[i - 1]) <= lim : (ch->acc_n > 0 && fabsf(x - ch->last) <= lim);
            if (!left && i == n - 1) {  // decided by the next sample
                ch->pending = x;
                ch->flags |= CHF_PENDING;
                continue;
            }
            if (!left && !(i < n - 1 && fabsf(x - seq[i + 1]) <= lim)) {
                if (ch->rejected < 0xFFFFu) ch->rejected++;
                continue;
            }
        }
        welford_d(&ch->acc_mean, &ch->acc_m2, ++ch->acc_n, (double)x);
        if (ch->acc_n == 1 || x < ch->acc_min) ch->acc_min = x;
        if (ch->acc_n == 1 || x > ch->acc_max) ch->acc_max = x;
        ch->last = x;
        v[kept++] = x;  // the accepted samples, for the window's spread (v is free again)
    }
    // The window's spread from its accepted samples (spikes left out), into the commissioned
    // distribution of window spreads (spread_score).
    if (kept >= 2) {
        const float sd = (float)spread_of(v, kept);
        if (isfinite(sd)) welford(&ch->spr_mean, &ch->spr_m2, ++ch->spr_n, sd);
    }
}

static void commission(aiot_monitor_t *m, uint32_t ts) {
    const int C = m->cfg.num_channels;
    int c, done = 1;
    for (c = 0; c < C; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        commission_channel(m, c);
        if (ch->acc_n < m->cfg.commission_samples) done = 0;
        if (m->cfg.level_windows && m->lvl_count == m->cfg.level_windows) {
            const float mean = level_mean(m, c);
            if (isfinite(mean)) welford(&ch->lvl_mean, &ch->lvl_m2, ++ch->lvl_n, mean);
        }
    }
    if (!done) return;
    for (c = 0; c < C; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        const float level = (float)ch->acc_mean;
        if (ch->flags & CHF_PENDING) {  // a far last sample no later one confirmed
            ch->flags &= (uint8_t)~CHF_PENDING;
            if (ch->rejected < 0xFFFFu) ch->rejected++;
        }
        float sd = (float)sqrt(ch->acc_m2 / (double)(ch->acc_n - 1));
        // The configured floors; TINY keeps a stuck sensor from dividing by zero.
        float floor_ = noise_floor_of(m, c, level) + TINY;
        ch->baseline = ch->baseline0 = level;
        ch->noise = sd > floor_ ? sd : floor_;
        // The level's spread is floored as the noise is: never known better than the floor.
        sd = ch->lvl_n > 1 ? sqrtf(ch->lvl_m2 / (float)(ch->lvl_n - 1)) : 0.0f;
        ch->lvl_sd = sd > floor_ ? sd : floor_;
        // So is the spread of the window spreads. Their accumulators' bytes are the armed
        // phase's drift CUSUM: zeroed once read.
        sd = ch->spr_n > 1 ? sqrtf(ch->spr_m2 / (float)(ch->spr_n - 1)) : 0.0f;
        ch->spr_ref = ch->spr_mean;
        ch->spr_sd = sd > floor_ ? sd : floor_;
        ch->spr_mean = ch->spr_m2 = 0.0f;
        ch->spr_n = 0;
        if (!isfinite(ch->baseline) || !isfinite(ch->noise) || !isfinite(ch->lvl_sd) || !isfinite(ch->spr_ref) ||
            !isfinite(ch->spr_sd)) {
            // Samples too large for float maths: say so, never score it silently as 0.
            ch->health |= AIOT_CH_NOT_COMMISSIONED;
            ch->baseline = ch->baseline0 = 0.0f;
            ch->noise = ch->lvl_sd = ch->spr_sd = 1.0f;
            ch->spr_ref = 0.0f;
        }
        ch->tolerance = m->cfg.calibration_tolerance[c] > 0.0f ? m->cfg.calibration_tolerance[c]
                                                                : ch->acc_max - ch->acc_min;
        if (!(ch->acc_max > ch->acc_min)) ch->health |= AIOT_CH_STUCK;
        ch->acc_mean = ch->acc_m2 = 0.0;
        // acc_n and the level accumulators share their bytes with the residual state
        ch->acc_n = ch->lvl_n = 0;
        ch->lvl_mean = ch->lvl_m2 = 0.0f;
    }
    m->phase = AIOT_PHASE_CALIBRATING;
    emit(m, ts, AIOT_EVENT_COMMISSIONED, AIOT_MONITOR_NO_CHANNEL, 0, 0.0f);
    for (c = 0; c < C; c++) {
        const aiot_monitor_channel_t *ch = &m->ch[c];
        if (ch->rejected) emit(m, ts, AIOT_EVENT_COMMISSION_REJECTED, (uint8_t)c, BIT(c), (float)ch->rejected);
        if (ch->health & AIOT_CH_STUCK) emit(m, ts, AIOT_EVENT_CHANNEL_STUCK, (uint8_t)c, BIT(c), ch->baseline0);
    }
}

//! Normalize the raw window in place; missing samples take the mean of the channel's
//! valid samples in this window (no level step for the model, and excluded from errors).
static void normalize(aiot_monitor_t *m) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    const float clip = m->cfg.clip;
    int c, t;
    for (c = 0; c < C; c++) {
        const aiot_monitor_channel_t *ch = &m->ch[c];
        float sum = 0.0f, fillv = 0.0f;
        int nv = 0;
        for (t = 0; t < W; t++) {
            if ((m->valid[t] >> c) & 1u) {
                float z = clampf((m->win[t * C + c] - ch->baseline) / ch->noise, -clip, clip);
                m->win[t * C + c] = z;
                sum += z;
                nv++;
            }
        }
        if (nv) fillv = sum / (float)nv;
        for (t = 0; t < W; t++)
            if (!((m->valid[t] >> c) & 1u)) m->win[t * C + c] = fillv;
    }
}

typedef struct {
    float err[AIOT_MONITOR_MAX_CHANNELS];   //!< plain reconstruction error (noise units squared)
    float dev[AIOT_MONITOR_MAX_CHANNELS];   //!< mean residual of c reconstructed from the others
    float shape[AIOT_MONITOR_MAX_CHANNELS]; //!< residual variance of c around dev
    float rest[AIOT_MONITOR_MAX_CHANNELS];  //!< mean error of the other channels, c unknown
    float lev[AIOT_MONITOR_MAX_CHANNELS];   //!< calibration only: response of c to a +1 offset
} window_stats_t;

//! Mean squared and mean signed residual per channel over the valid samples only.
static void channel_errors(const aiot_monitor_t *m, const float *recon, float *err, float *bias) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    int c, t;
    for (c = 0; c < C; c++) {
        float se = 0.0f, sb = 0.0f;
        int nv = 0;
        for (t = 0; t < W; t++) {
            if ((m->valid[t] >> c) & 1u) {
                float r = m->win[t * C + c] - recon[t * C + c];
                se += r * r;
                sb += r;
                nv++;
            }
        }
        err[c] = nv ? se / (float)nv : 0.0f;
        bias[c] = nv ? sb / (float)nv : 0.0f;
    }
}

//! Reconstruction-based isolation. A reconstruction model spreads one sensor's offset over
//! every correlated channel, so the plain residual points at the wrong sensor. The model
//! reproduces a fraction L_c (its leverage, measured during calibration) of a level offset
//! on channel c, so the offset of c against what the other channels predict is
//! dev = bias / (1 - L_c). A second call with that offset removed from c tells whether the
//! rest of the machine is then normal (rest[c] small: a sensor issue) or not (a fault).
//! Cost: 1 + channels model calls per window.
static int window_stats(aiot_monitor_t *m, window_stats_t *w) {
    const int C = m->cfg.num_channels, n = m->cfg.window * C, W = m->cfg.window;
    const int calibrating = m->phase == AIOT_PHASE_CALIBRATING;
    float bias[AIOT_MONITOR_MAX_CHANNELS], perr[AIOT_MONITOR_MAX_CHANNELS], pbias[AIOT_MONITOR_MAX_CHANNELS];
    int c, d, t;
    channel_errors(m, m->recon, w->err, bias);
    for (c = 0; c < C; c++) {
        float rest = 0.0f;
        // Calibration measures the leverage with a +1 probe; afterwards the probe removes dev.
        w->dev[c] = calibrating ? bias[c] : bias[c] / (1.0f - m->ch[c].leverage);
        w->lev[c] = 0.0f;
        for (d = 0; d < C; d++) {
            perr[d] = w->err[d];
            pbias[d] = bias[d];
        }
        if (m->cfg.isolation) {
            const float shift = calibrating ? 1.0f : -w->dev[c];
            memcpy(m->probe, m->win, (size_t)n * sizeof(float));
            for (t = 0; t < W; t++) m->probe[t * C + c] += shift;
            if (m->score(m->score_ctx, m->probe, (size_t)n, m->probe_recon) != 0) return AIOT_MONITOR_ESCORE;
            if (calibrating) {
                for (t = 0; t < W; t++) w->lev[c] += m->probe_recon[t * C + c] - m->recon[t * C + c];
                w->lev[c] /= (float)W;
            } else {
                channel_errors(m, m->probe_recon, perr, pbias);
            }
        }
        for (d = 0; d < C; d++)
            if (d != c) rest += perr[d];
        w->shape[c] = fmaxf(perr[c] - pbias[c] * pbias[c], 0.0f);
        w->rest[c] = C > 1 ? rest / (float)(C - 1) : 0.0f;
    }
    for (c = 0; c < C; c++) {
        m->ch[c].last_error = w->err[c];
        m->ch[c].last_dev = w->dev[c];
        m->ch[c].last_rest = w->rest[c];
    }
    return AIOT_MONITOR_OK;
}

// ---------------------------------------------------------------- residual (residual_score)

//! Channel c's residual in this window: the mean of (normalized sample - reconstruction)
//! over its valid samples (noise units), the same statistic while calibrating and armed
//! (armed, w->dev is it divided by 1 - leverage), capped at +-RESIDUAL_CAP.
static float window_residual(const aiot_monitor_t *m, int c, const window_stats_t *w) {
    const float r = m->phase == AIOT_PHASE_ARMED ? w->dev[c] * (1.0f - m->ch[c].leverage) : w->dev[c];
    return clampf(r, -RESIDUAL_CAP, RESIDUAL_CAP);
}

//! Into channel c's running residual mean: exponential, the newest window weighing
//! 2 / (N + 1) for level_windows N, whose variance on independent windows is an N-window
//! mean's (N = 1: the window's own residual). One float of state instead of a ring of N.
static void residual_push(aiot_monitor_t *m, int c, const window_stats_t *w, int first) {
    aiot_monitor_channel_t *ch = &m->ch[c];
    const float r = window_residual(m, c, w);
    ch->res_run = first ? r : ch->res_run + 2.0f / (float)(m->cfg.level_windows + 1u) * (r - ch->res_run);
}

//! Armed: each channel's residual z, |running residual mean - its calibration mean| / their
//! calibration spread; NaN (left out, the running mean kept) when c has no valid sample
//! (`ch_quality`: each channel's valid fraction of the window, window_quality()).
static void residual_scores(aiot_monitor_t *m, const window_stats_t *w, const float *ch_quality, float *z) {
    int c;
    for (c = 0; c < m->cfg.num_channels; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        if (!(ch_quality[c] > 0.0f)) {
            z[c] = NAN;
            continue;
        }
        residual_push(m, c, w, 0);
        z[c] = fabsf(ch->res_run - ch->res_ref) / ch->res_sd;  // both capped: finite
    }
}

//! Calibration window: the running residual means into their Welford accumulators and range.
static void residual_calibrate(aiot_monitor_t *m, const window_stats_t *w, const float *ch_quality) {
    int c;
    for (c = 0; c < m->cfg.num_channels; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        if (!(ch_quality[c] > 0.0f)) continue;
        residual_push(m, c, w, ch->res_n == 0);
        welford(&ch->res_mean, &ch->res_m2, ++ch->res_n, ch->res_run);
        if (ch->res_n == 1 || ch->res_run < ch->res_min) ch->res_min = ch->res_run;
        if (ch->res_n == 1 || ch->res_run > ch->res_max) ch->res_max = ch->res_run;
    }
}

//! End of calibration: each channel's residual reference and spread (floored at
//! RESIDUAL_SD_FLOOR), and the largest residual z the calibration windows had (from each
//! channel's range: exact, as the windows' per-sensor score is a max). That z becomes the top
//! of the calibration set when it is larger, so the threshold is that of the combined score
//! (the lower entries, which only shape the p-value, stay those of the level and spread).
static void residual_reference(aiot_monitor_t *m) {
    float top = 0.0f;
    int c;
    for (c = 0; c < m->cfg.num_channels; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        const float sd = ch->res_n > 1 ? sqrtf(fmaxf(ch->res_m2, 0.0f) / (float)(ch->res_n - 1u)) : 0.0f;
        const uint32_t seen = ch->res_n;
        ch->res_ref = ch->res_mean;  // (the same bytes: kept as the reference)
        // Floored like the noise, the level and the spread: never more sensitive than the
        // configured noise floor (in noise units; the short calibration cannot show the wander
        // of a process that fleet floors describe), and never ~0 (RESIDUAL_SD_FLOOR).
        ch->res_sd = fmaxf(sd, fmaxf(noise_floor_of(m, c, ch->baseline0) / ch->noise, RESIDUAL_SD_FLOOR));
        if (seen) top = fmaxf(top, fmaxf(fabsf(ch->res_max - ch->res_ref), fabsf(ch->res_min - ch->res_ref)) / ch->res_sd);
        // the range's bytes are the armed phase's drift CUSUM: zeroed once read
        ch->cusum_pos = ch->cusum_neg = 0.0f;
        ch->drift_windows = 0;
    }
    if (isfinite(top) && top > m->cal[m->cal_count - 1]) m->cal[m->cal_count - 1] = top;
}

// ---------------------------------------------------------------- pooled energy (residual_score 2, 3)

//! The window's residual energy, pooled: the mean squared residual (noise units squared;
//! features are clipped, so it is finite) of the channels with data and not recalibrating,
//! the largest of them left out: one sensor off (a remount, a drift, a fault of its own) is
//! the per-sensor scores' to judge; this is a change in how several move together.
//! residual_score 2 leaves the largest quarter out (a process whose variability grows
//! everywhere a little), 3 only the largest one (a change a few sensors show: a loop that
//! starts to oscillate), 4 pools each channel's window-mean residual squared instead of its
//! per-sample error, the largest left out: with a model of the window means (a linear one:
//! the relations a plant's sensors keep, its balances and control loops), a broken relation
//! no sample's own noise hides. Each window alone: score_average smooths it as it smooths the rest.
//! Returns 0 with fewer than POOLED_MIN such channels: one sensor's own scores (with their
//! floors) say it all.
static int window_energy(const aiot_monitor_t *m, const window_stats_t *w, const float *ch_quality, float *e) {
    float v[AIOT_MONITOR_MAX_CHANNELS], sum = 0.0f;
    int c, i, n = 0;
    for (c = 0; c < m->cfg.num_channels; c++) {
        if (!(ch_quality[c] > 0.0f) || m->ch[c].mode == CH_RECAL) continue;
        if (m->cfg.residual_score == 4) {
            const float r = window_residual(m, c, w);
            v[n++] = r * r;
        } else {
            v[n++] = w->err[c];
        }
    }
    if (n < POOLED_MIN) return 0;
    sort_floats(v, n);
    n -= m->cfg.residual_score >= 3 ? 1 : n / 4;
    for (i = 0; i < n; i++) sum += v[i];
    *e = sum / (float)n;
    return 1;
}

//! Armed: the energy z, (window energy - its calibration mean) / their spread, upwards only
//! (a quieter machine is not a fault here), on the per-sensor score's scale (en_gain); 0
//! without data.
static float energy_score(const aiot_monitor_t *m, const window_stats_t *w, const float *ch_quality) {
    float e, z;
    if (!window_energy(m, w, ch_quality, &e)) return 0.0f;
    z = (e - m->en_ref) * m->en_gain;
    return z > 0.0f ? z : 0.0f;
}

//! Calibration window: its energy into the Welford accumulators and the maximum.
static void energy_calibrate(aiot_monitor_t *m, const window_stats_t *w, const float *ch_quality) {
    float e;
    if (!window_energy(m, w, ch_quality, &e)) return;
    welford(&m->en_ref, &m->en_m2, ++m->en_n, e);
    if (m->en_n == 1 || e > m->en_max) m->en_max = e;
}

//! End of calibration: the energy's spread, floored at what a mean of channels x window
//! independent squared unit residuals would spread (sqrt(2 / (C W)) of its mean: a short
//! calibration cannot make it more sensitive than chance), at what the sensors' own floors
//! allow (each may wander by its noise floor, in noise units, as its residual z is floored:
//! the mean of those floors squared, x sqrt(2 / C) for a mean of C independent wanders) and
//! at RESIDUAL_SD_FLOOR. residual_score 4 (window-mean residuals): at sqrt(2 / C) of its mean
//! only, as C independent squared terms would spread (never 0: TINY). Its z is then put on
//! the per-sensor score's scale: x the calibration set's top / the largest energy z the
//! calibration windows had (at least 1), so each meets
//! the threshold at alert_margin x its own calibration maximum and neither raises the other's.
static void energy_reference(aiot_monitor_t *m) {
    const int C = m->cfg.num_channels;
    const float dof = (float)C * (float)m->cfg.window;
    const float measured = m->en_n > 1 ? sqrtf(fmaxf(m->en_m2, 0.0f) / (float)(m->en_n - 1u)) : 0.0f;
    float sd, wander = 0.0f, top;
    int c;
    if (m->cfg.residual_score == 4) {
        // window means: C terms, not C x W; the sensors' wander along what the model of the
        // means keeps does not reach its residual, so no floor from the noise floors
        sd = fmaxf(measured, fmaxf(m->en_ref * sqrtf(2.0f / (float)C), TINY));
    } else {
        sd = fmaxf(measured, fmaxf(m->en_ref * sqrtf(2.0f / dof), RESIDUAL_SD_FLOOR));
        for (c = 0; c < C; c++) {
            const float f = noise_floor_of(m, c, m->ch[c].baseline0) / m->ch[c].noise;
            wander += f * f;
        }
        sd = fmaxf(sd, wander / (float)C * sqrtf(2.0f / (float)C));
    }
    top = m->en_n ? (m->en_max - m->en_ref) / sd : 1.0f;
    if (!(top >= 1.0f)) top = 1.0f;  // NaN too
    m->en_gain = m->cal[m->cal_count - 1] / (sd * top);
    if (!isfinite(m->en_gain)) m->en_gain = 0.0f;
    m->en_m2 = m->en_max = 0.0f;  // their bytes are recover_min and escalate_dist once armed
}

//! One calibration window; `level` is its level-shift score when level_windows is set;
//! `ch_quality` each channel's valid fraction of the window (window_quality()).
static void calibrate(aiot_monitor_t *m, uint32_t ts, const window_stats_t *w, float level, const float *ch_quality) {
    const int C = m->cfg.num_channels;
    float s = 0.0f, n;
    int c;
    for (c = 0; c < C; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        ch->sum_err += w->err[c];
        ch->sum_dev += w->dev[c];
        ch->sum_dev2 += w->dev[c] * w->dev[c];
        ch->sum_shape += w->shape[c];
        ch->sum_rest += w->rest[c];
        ch->sum_lev += w->lev[c];
        s += w->err[c];
    }
    if (m->cfg.residual_score) residual_calibrate(m, w, ch_quality);
    if (m->cfg.residual_score >= 2) energy_calibrate(m, w, ch_quality);
    cal_insert(m, averaged(m, m->cfg.level_windows ? level : s / (float)C));
    if (m->cal_count < m->cfg.calibration_windows) return;
    n = (float)m->cal_count;
    for (c = 0; c < C; c++) {
        aiot_monitor_channel_t *ch = &m->ch[c];
        float mean = ch->sum_dev / n;
        float var = (ch->sum_dev2 - n * mean * mean) / (n - 1.0f);
        float sd;
        // Bounded so that a model that copies its input cannot blow the deviation up.
        ch->leverage = clampf(ch->sum_lev / n, 0.0f, 0.9f);
        sd = sqrtf(fmaxf(var, 0.0f)) / (1.0f - ch->leverage);
        ch->err_ref = fmaxf(ch->sum_err / n, TINY);
        // A model that reconstructs too well must not make the CUSUM hair-triggered, nor may a
        // short calibration: floored like every per-sensor spread (level, window spread,
        // residual) by the configured noise floor in noise units, so wander the floor calls
        // normal is not drift.
        ch->dev_sd = fmaxf(sd, fmaxf(noise_floor_of(m, c, ch->baseline0) / ch->noise, 0.05f));
        ch->shape_ref = fmaxf(ch->sum_shape / n, TINY);
        ch->rest_ref = fmaxf(ch->sum_rest / n, TINY);
    }
    if (m->cfg.residual_score) residual_reference(m);
    if (m->cfg.residual_score >= 2) energy_reference(m);
    for (c = 0; c < C; c++) m->ch[c].silent_windows = 0;  // the union's armed bytes (residual_reference read them)
    m->phase = AIOT_PHASE_ARMED;
    m->since_recal = 0xFFFFu;
    m->away_count = m->away_pos = 0;  // the channels' `away` rings now own the calibration sums' bytes
    emit(m, ts, AIOT_EVENT_CALIBRATED, AIOT_MONITOR_NO_CHANNEL, 0, m->cal[m->cal_count - 1]);
}

//! A model that returns NaN/inf is a failed model call, never a NORMAL window.
static int stats_finite(const aiot_monitor_t *m, const window_stats_t *w) {
    int c;
    for (c = 0; c < m->cfg.num_channels; c++)
        if (!isfinite(w->err[c]) || !isfinite(w->dev[c]) || !isfinite(w->rest[c]) || !isfinite(w->shape[c])) return 0;
    return 1;
}

static int recalibrating_channel(const aiot_monitor_t *m) {
    int c;
    for (c = 0; c < m->cfg.num_channels; c++)
        if (m->ch[c].mode == CH_RECAL) return c;
    return -1;
}

//! May channel c's baseline move? Only when no alert is latched, no other channel is
//! being recalibrated, the other channels look normal without c, and c's residual is a
//! level offset (its spread around the deviation is normal): a sensor, not the machine.
static int gate_open(const aiot_monitor_t *m, int c, const window_stats_t *w) {
    const float g = m->cfg.gate_ratio;
    const int r = recalibrating_channel(m);
    if (m->alert || m->recovering || (r >= 0 && r != c)) return 0;
    return w->rest[c] <= g * m->ch[c].rest_ref && w->shape[c] <= g * m->ch[c].shape_ref;
}

static void shift_baseline(aiot_monitor_channel_t *ch, float delta_noise_units) {
    ch->baseline += delta_noise_units * ch->noise;
    ch->recent_shift += fabsf(delta_noise_units);
}

//! The compensation of channel c has absorbed more than its calibration tolerance (or
//! max_baseline_shift): a sensor out of calibration, or a fault slow enough to look like
//! drift. Either way it is no longer the monitor's to absorb: back to the commissioned
//! baseline (so the whole offset is scored), no more adaptation until reset_baseline, and
//! an event naming the sensor.
static void calibration_alert(aiot_monitor_t *m, int c, uint32_t ts, float offset) {
    aiot_monitor_channel_t *ch = &m->ch[c];
    ch->recent_shift += fabsf(ch->baseline - ch->baseline0) / ch->noise;
    ch->baseline = ch->baseline0;
    ch->mode = CH_OK;
    ch->hold = 0;
    ch->cusum_pos = ch->cusum_neg = 0.0f;
    ch->drift_windows = 0;
    ch->flags &= (uint8_t)~CHF_GAIN_TEST;
    ch->health |= AIOT_CH_CAL_ALERT;
    emit(m, ts, AIOT_EVENT_CALIBRATION_ALERT, (uint8_t)c, BIT(c), offset);
}

//! Is `level` (a baseline the compensation would move to, or a window's mean) further from
//! the commissioned level than channel c may absorb?
static int beyond_tolerance(const aiot_monitor_t *m, const aiot_monitor_channel_t *ch, float level) {
    const float offset = level - ch->baseline0;
    return fabsf(offset) > ch->tolerance || fabsf(offset) / ch->noise > m->cfg.max_baseline_shift;
}

//! A remount says how far a sensor's level moved at that moment, not whether its gain or
//! its zero moved (an accelerometer's coupling scales it; a probe moved on a housing
//! offsets it). RECAL_DONE corrects an offset; this starts the watch that tells a gain:
//! the offset seen at raw level x0 is a gain of x0 / (x0 - offset), and under the offset
//! correction such a gain leaves a residual of offset / x0 times how far the sensor's own
//! level has moved since. Only for a ratio (both levels on one side of zero, within 2x).
//! recal_from becomes the level the sensor would read without the remount (x0 - offset).
static void gain_test_start(aiot_monitor_t *m, int c, float x0) {
    aiot_monitor_channel_t *ch = &m->ch[c];
    const float off = ch->baseline - ch->recal_from, before = x0 - off;
    ch->flags &= (uint8_t)~CHF_GAIN_TEST;
    if (!(isfinite(x0) && x0 * before > 0.0f && off != 0.0f && fabsf(off) <= 0.5f * fabsf(before))) return;
    ch->flags |= CHF_GAIN_TEST;
    ch->recal_from = before;
    ch->gain_x0 = x0;
    ch->gain_better = 0;
    ch->gain_miss = 0;
    ch->settled = 0;
}

//! Into a saturating evidence counter, in 1/64 of the residual's variance (NaN: nothing,
//! never a float-to-int conversion of NaN).
static int32_t evidence_add(int32_t sum, float add, int32_t lo, int32_t hi) {
    const float x = clampf(add * 64.0f, -65536.0f, 65536.0f);
    if (isnan(x)) return sum;
    sum += (int32_t)(x < 0.0f ? x - 0.5f : x + 0.5f);
    return sum < lo ? lo : (sum > hi ? hi : sum);
}

//! One window of the watch on channel c (raw window mean `mean`), while the rest of the
//! machine is normal without it. The gain replaces the offset once it explains the
//! residuals GAIN_EVIDENCE better (the drop of their sum of squares, in the residual's
//! calibration variance) and leaves at most GAIN_MISS a window unexplained: a fault that
//! moves the sensor faster than the gain predicts is not one. Undecided after
//! 4 x recal_windows such windows (the quiet time after a remount), the offset stays. The
//! switch re-expresses the channel's commissioned profile at the new gain (every raw-unit
//! quantity x gain, the remount's offset taken back), so its samples read as before the
//! remount; RECAL_GAIN.
static void gain_test(aiot_monitor_t *m, int c, uint32_t ts, float mean, const window_stats_t *w) {
    aiot_monitor_channel_t *ch = &m->ch[c];
    const float x0 = ch->gain_x0, off = x0 - ch->recal_from, b = off / x0, var = ch->dev_sd * ch->dev_sd;
    const unsigned horizon = 4u * m->cfg.recal_windows < 255u ? 4u * m->cfg.recal_windows : 255u;
    float moved, miss, g;
    if (!isfinite(mean) || !(w->rest[c] <= m->cfg.gate_ratio * ch->rest_ref)) return;
    moved = (mean - x0) / ch->noise;
    miss = (w->dev[c] - b * moved) * (w->dev[c] - b * moved) / var;
    ch->gain_better = (int16_t)evidence_add(ch->gain_better, w->dev[c] * w->dev[c] / var - miss, -32768, 32767);
    ch->gain_miss = (uint16_t)evidence_add(ch->gain_miss, miss, 0, 65535);
    ch->settled++;
    if (ch->gain_better >= (int32_t)(64.0f * GAIN_EVIDENCE) &&
        ch->gain_miss <= (int32_t)(64.0f * GAIN_MISS) * ch->settled) {
        g = x0 / ch->recal_from;
        ch->baseline = g * (ch->baseline - off);
        ch->baseline0 *= g;
        ch->noise *= g;
        ch->tolerance *= g;
        ch->acc_min *= g;
        ch->acc_max *= g;
        ch->lvl_sd *= g;
        ch->spr_ref *= g;
        ch->spr_sd *= g;
        ch->flags &= (uint8_t)~CHF_GAIN_TEST;
        emit(m, ts, AIOT_EVENT_RECAL_GAIN, (uint8_t)c, BIT(c), g);
    } else if (ch->settled >= horizon) {
        ch->flags &= (uint8_t)~CHF_GAIN_TEST;
    }
}

//! Drift and step handling for one channel after a scored window.
//! `suspect` is the channel whose removal leaves the rest of the machine most normal: only
//! that one may take a step as a remount (a fault on one sensor can otherwise be "explained"
//! as the opposite offset on a correlated one).
static void adapt_channel(aiot_monitor_t *m, int c, int suspect, uint32_t ts, const window_stats_t *w, float mean) {
    const aiot_monitor_config_t *k = &m->cfg;
    aiot_monitor_channel_t *ch = &m->ch[c];
    const float dev = w->dev[c];
    const int gate = gate_open(m, c, w);
    const float last = ch->dev_prev;
    const float settle = fmaxf(0.5f * k->step_threshold, 2.0f * ch->dev_sd); // "back to normal"
    const float jump = fmaxf(k->step_threshold, 4.0f * ch->dev_sd);           // "significant"
    float u, base;

    // Pre-step level: the mean of the deviations three and four windows ago, so a step (and
    // the window it fell in) is still "new" two full windows after the jump, while a
    // creeping change is not.
    base = 0.5f * (ch->dev_older + ch->dev_oldest);
    ch->dev_oldest = ch->dev_older;
    ch->dev_older = ch->dev_before;
    ch->dev_before = ch->dev_prev;
    ch->dev_prev = dev;
    if (ch->health & AIOT_CH_CAL_ALERT) return;  // scored against its commissioned baseline
    if ((ch->flags & CHF_GAIN_TEST) && ch->mode != CH_RECAL) gain_test(m, c, ts, mean, w);

    if (ch->mode == CH_RECAL) {
        float total = (ch->baseline - ch->recal_from) / ch->noise + dev;
        ch->hold++;
        if (!gate || fabsf(total) > k->max_recal_step || ch->hold > k->recal_windows) {
            // Not a remount after all: put the level back so the model sees the whole change.
            ch->baseline = ch->recal_from;
            ch->mode = CH_OK;
            ch->flags |= CHF_RECAL_BLOCKED;
            ch->cusum_pos = ch->cusum_neg = 0.0f;
            m->since_recal = 0;
            emit(m, ts, AIOT_EVENT_RECAL_REJECTED, (uint8_t)c, BIT(c), total);
            return;
        }
        shift_baseline(ch, dev);
        ch->settled = fabsf(dev) < settle ? (uint8_t)(ch->settled + 1) : 0;
        if (ch->settled >= 2) {
            ch->mode = CH_OK;
            ch->cusum_pos = ch->cusum_neg = 0.0f;
            m->since_recal = 0;
            emit(m, ts, AIOT_EVENT_RECAL_DONE, (uint8_t)c, BIT(c),
                 (ch->baseline - ch->recal_from) / ch->noise);
            gain_test_start(m, c, mean);
            if (beyond_tolerance(m, ch, ch->baseline)) calibration_alert(m, c, ts, ch->baseline - ch->baseline0);
        }
        return;
    }

    // A rejected step stays a fault until the deviation is back near zero.
    if ((ch->flags & CHF_RECAL_BLOCKED) && fabsf(dev) < settle)
        ch->flags &= (uint8_t)~CHF_RECAL_BLOCKED;

    // Step test, every window: a remount is sudden (the level was normal three windows ago,
    // then this window and the previous one both sit a significant jump away), small, the best
    // explanation, alone, and rare (not again within 4 x recal_windows): a creeping change,
    // or sensors "stepping" in turn, are the machine and are left to the alerting.
    {
        const float j = dev - base, jp = last - base;
        const int sudden = fabsf(base) <= 2.0f * ch->dev_sd && fabsf(j) >= jump && fabsf(jp) >= jump && j * jp > 0.0f;
        const int quiet = m->since_recal >= 4u * k->recal_windows;
        if (sudden && gate && quiet && c == suspect && fabsf(dev) <= k->max_recal_step &&
            !(ch->flags & CHF_RECAL_BLOCKED)) {
            ch->mode = CH_RECAL;
            ch->recal_from = ch->baseline;
            ch->flags &= (uint8_t)~CHF_GAIN_TEST;  // a new remount: the watch starts again at its end
            ch->hold = 0;
            ch->settled = 0;
            ch->cusum_pos = ch->cusum_neg = 0.0f;
            emit(m, ts, AIOT_EVENT_RECAL_STARTED, (uint8_t)c, BIT(c), dev);
            shift_baseline(ch, dev);
            return;
        }
    }

    // Drift test: CUSUM on the standardized deviation; only offsets below a significant jump
    // are drift (a large one that was not a remount is the machine's business).
    u = dev / ch->dev_sd;
    ch->cusum_pos = fmaxf(0.0f, ch->cusum_pos + u - k->cusum_slack);
    ch->cusum_neg = fmaxf(0.0f, ch->cusum_neg - u - k->cusum_slack);
    if (ch->cusum_pos > k->cusum_threshold || ch->cusum_neg > k->cusum_threshold) {
        ch->cusum_pos = ch->cusum_neg = 0.0f;
        if (fabsf(dev) < jump) {
            if (ch->mode != CH_DRIFT) emit(m, ts, AIOT_EVENT_DRIFT_DETECTED, (uint8_t)c, BIT(c), dev);
            ch->mode = CH_DRIFT;
            ch->hold = k->drift_hold;
        }
    }
    // Keep tracking until the offset is compensated, then hold for drift_hold windows.
    if (ch->mode == CH_DRIFT && fabsf(dev) > k->cusum_slack * ch->dev_sd) ch->hold = k->drift_hold;

    if (ch->mode == CH_DRIFT) {
        if (gate && !(ch->flags & CHF_RECAL_BLOCKED)) {
            float max_step = k->max_drift_rate[c] * (float)k->window * (float)k->sample_period_ms / MS_PER_HOUR;
            const float delta = clampf(k->drift_gain * dev, -max_step, max_step);
            const float next = ch->baseline + delta * ch->noise;
            if (beyond_tolerance(m, ch, next)) {
                calibration_alert(m, c, ts, next - ch->baseline0);
                return;
            }
            shift_baseline(ch, delta);
        }
        // No silent state lasts: a channel tracked for drift_alarm_hours is reported.
        ch->drift_windows++;
        if (!(ch->flags & CHF_DRIFT_REPORTED) &&
            (float)ch->drift_windows * (float)k->window * (float)k->sample_period_ms >= k->drift_alarm_hours * MS_PER_HOUR) {
            ch->flags |= CHF_DRIFT_REPORTED;
            emit(m, ts, AIOT_EVENT_DRIFT_PERSISTENT, (uint8_t)c, BIT(c),
                 (float)ch->drift_windows * (float)k->window * (float)k->sample_period_ms / MS_PER_HOUR);
        }
        if (ch->hold > 0) ch->hold--;
        if (ch->hold == 0) ch->mode = CH_OK;
    }
    if (ch->mode != CH_DRIFT) {
        ch->drift_windows = 0;
        ch->flags &= (uint8_t)~CHF_DRIFT_REPORTED;
    }
}

//! The channels past their calibration tolerance: a CALIBRATION_ALERT, and this window's
//! mean (raw, `mean`) still further from the commissioned level than the compensation may
//! absorb (beyond_tolerance(): the tolerance or max_baseline_shift, what raised the alert). A
//! sensor that far off needs a technician either way (issue 19, principle 1): it holds the
//! alert, whatever the score, until it is back within them. No data: not known, not past.
static aiot_monitor_mask_t past_tolerance(const aiot_monitor_t *m, const float *mean) {
    aiot_monitor_mask_t past = 0;
    int c;
    for (c = 0; c < m->cfg.num_channels; c++) {
        const aiot_monitor_channel_t *ch = &m->ch[c];
        if ((ch->health & AIOT_CH_CAL_ALERT) && !(ch->health & CH_LEFT_OUT) && isfinite(mean[c]) &&
            beyond_tolerance(m, ch, mean[c]))
            past |= BIT(c);
    }
    return past;
}

static void top3(const float *err, const aiot_monitor_t *m, uint8_t *top, aiot_monitor_mask_t *mask) {
    const int C = m->cfg.num_channels;
    int i, c;
    *mask = 0;
    for (i = 0; i < 3; i++) {
        int best = -1;
        for (c = 0; c < C; c++) {
            if ((*mask >> c) & 1u) continue;
            if (best < 0 || err[c] > err[best]) best = c;
        }
        top[i] = best < 0 ? AIOT_MONITOR_NO_CHANNEL : (uint8_t)best;
        if (best >= 0) *mask |= BIT(best);
    }
}

static uint8_t severity_of(const aiot_monitor_config_t *k, float score) {
    if (score >= k->severity_critical) return 3;
    if (score >= k->severity_major) return 2;
    return score >= 1.0f ? 1 : 0;
}

//! The window's state. The events emitted since seq `first` (the window's) carry it and the
//! window's confidence (negative: none, a window that scored nothing): an event's state is the
//! monitor's state after the window that emitted it (COMMISSIONED: calibrating,
//! ALERT_CLEARED: normal), never the previous window's.
static void set_state(aiot_monitor_t *m, uint32_t ts, uint8_t state, float quality, uint16_t first,
                      float confidence) {
    const uint8_t code =
        confidence < 0.0f ? NO_CONFIDENCE : (uint8_t)(fminf(confidence, 1.0f) * 254.0f + 0.5f);
    uint16_t emitted;
    uint8_t i;
    if (state == AIOT_STATE_NO_DATA && m->last_state != AIOT_STATE_NO_DATA) {
        m->last_state = state;
        emit(m, ts, AIOT_EVENT_DATA_LOST, AIOT_MONITOR_NO_CHANNEL, 0, quality);
    } else if (state != AIOT_STATE_NO_DATA && m->last_state == AIOT_STATE_NO_DATA) {
        m->last_state = state;
        emit(m, ts, AIOT_EVENT_DATA_RESTORED, AIOT_MONITOR_NO_CHANNEL, 0, quality);
    }
    m->last_state = state;
    emitted = (uint16_t)(m->event_seq - first);
    for (i = 0; i < m->ev_count; i++) {
        const uint8_t slot = (uint8_t)((m->ev_head + i) % AIOT_MONITOR_EVENT_CAPACITY);
        if ((uint16_t)(m->events[slot].seq - first) < emitted) {
            m->events[slot].state = state;
            m->ev_confidence[slot] = code;
        }
    }
}

//! Each channel's mean of the raw window's valid samples (NaN: none). Before normalize().
static void window_means(const aiot_monitor_t *m, float *mean) {
    const int C = m->cfg.num_channels, W = m->cfg.window;
    int c, t;
    for (c = 0; c < C; c++) {
        double sum = 0.0;
        int nv = 0;
        for (t = 0; t < W; t++) {
            if ((m->valid[t] >> c) & 1u) {
                sum += (double)m->win[t * C + c];
                nv++;
            }
        }
        mean[c] = nv ? (float)(sum / nv) : NAN;
    }
}

//! How far (noise units) channel c's window mean sits outside its commissioned band: the
//! span of its accepted commissioning samples, carried along by its baseline, widened to at
//! least +-`band` noise units (with the configured noise floors the noise can be wider than
//! what the commissioning minutes showed). 0 when inside; +inf without data in this window.
static float channel_band_distance(const aiot_monitor_channel_t *ch, float mean, float band) {
    if (!isfinite(mean)) return INFINITY;
    return fmaxf(0.0f, fmaxf(mean - (ch->baseline + fmaxf(ch->acc_max - ch->baseline0, band * ch->noise)),
                             (ch->baseline - fmaxf(ch->baseline0 - ch->acc_min, band * ch->noise)) - mean) /
                           ch->noise);
}

//! The farthest channel of `mask` outside its band (channel_band_distance): 0 when all are
//! inside; a channel without data in this window is not known to be back (+inf).
static float band_distance(const aiot_monitor_t *m, aiot_monitor_mask_t mask, const float *mean, float band) {
    float worst = 0.0f;
    int c;
    for (c = 0; c < m->cfg.num_channels; c++)
        if ((mask >> c) & 1u) worst = fmaxf(worst, channel_band_distance(&m->ch[c], mean[c], band));
    return worst;
}

//! How far (noise units) a window mean `mean` of the channel sits from its baseline.
static float baseline_distance(const aiot_monitor_channel_t *ch, float mean) {
    return fabsf(mean - ch->baseline) / ch->noise;
}

//! The alert is held by its sensors alone (its score under the clear level for the clear
//! period; issue 19, principle 2): say which, once an alert. ALERT_HELD names the implicated
//! channel furthest from its baseline, value = that distance (noise units; 0: no data).
static void report_held(aiot_monitor_t *m, uint32_t ts, const float *mean) {
    float off = -1.0f;
    int c, best = 0;
    for (c = 0; c < m->cfg.num_channels; c++) {
        float o;
        if (!((m->alert_mask >> c) & 1u)) continue;
        o = isfinite(mean[c]) ? fminf(baseline_distance(&m->ch[c], mean[c]), FLT_MAX) : 0.0f;
        if (o > off) {
            best = c;
            off = o;
        }
    }
    m->held = 1;
    emit(m, ts, AIOT_EVENT_ALERT_HELD, (uint8_t)best, BIT(best), off);
}

//! Into each channel's ring of recent distances from its baseline (AWAY_UNIT steps, 255: no
//! data). Every armed window, so that the trend is known from the first window of an alert.
static void away_push(aiot_monitor_t *m, const float *mean) {
    int c;
    for (c = 0; c < m->cfg.num_channels; c++) {
        const float d = baseline_distance(&m->ch[c], mean[c]);
        m->ch[c].away[m->away_pos] = !isfinite(d) ? AWAY_NONE : (uint8_t)(fminf(d, AWAY_TOP) / AWAY_UNIT + 0.5f);
    }
    m->away_pos = (uint8_t)((m->away_pos + 1u) % AWAY_RING);
    if (m->away_count < AWAY_RING) m->away_count++;
}

//! Is a channel of `mask` still moving away? The least-squares trend of its distance from
//! its baseline over the last clear period (persist_n windows, at least 3) rises by
//! AWAY_STEP noise units or more across the period, and it sits outside the +-BAND_NOISE
//! band. Such a sensor is not back, whatever clear_band says.
static int moving_away(const aiot_monitor_t *m, aiot_monitor_mask_t mask, const float *mean) {
    const int n = m->cfg.persist_n < 3 ? 3 : m->cfg.persist_n;
    int c, i;
    if (m->away_count < n) return 0;
    for (c = 0; c < m->cfg.num_channels; c++) {
        float sx = 0.0f, sy = 0.0f, sxx = 0.0f, sxy = 0.0f, k = 0.0f;
        if (!((mask >> c) & 1u) || !(channel_band_distance(&m->ch[c], mean[c], BAND_NOISE) > 0.0f)) continue;
        for (i = 0; i < n; i++) {  // i = 0 the oldest of the period
            const uint8_t v = m->ch[c].away[(m->away_pos + AWAY_RING - n + i) % AWAY_RING];
            if (v == AWAY_NONE) continue;
            sx += (float)i;
            sy += (float)v * AWAY_UNIT;
            sxx += (float)i * (float)i;
            sxy += (float)i * (float)v * AWAY_UNIT;
            k += 1.0f;
        }
        if (k >= 3.0f && (k * sxy - sx * sy) / (k * sxx - sx * sx) * (float)(n - 1) >= AWAY_STEP) return 1;
    }
    return 0;
}

//! A window that cannot be scored (model failure, non-finite statistics): NO_DATA, never NORMAL.
static void score_error(aiot_monitor_t *m, aiot_monitor_output_t *o, uint16_t first) {
    m->score_errors++;
    o->state = AIOT_STATE_NO_DATA;
    o->score = 0.0f;
    o->p_value = 1.0f;
    o->confidence = 0.0f;
    o->flags = (uint8_t)(AIOT_OUT_SCORE_ERROR | (m->alert ? AIOT_OUT_ALERT : 0) |
                         (m->phase != AIOT_PHASE_ARMED ? AIOT_OUT_LEARNING : 0));
    set_state(m, o->t_start_ms, o->state, 0.0f, first, -1.0f);
}

static void close_window(aiot_monitor_t *m, aiot_monitor_output_t *o, uint32_t t_end) {
    const aiot_monitor_config_t *k = &m->cfg;
    const int C = k->num_channels;
    window_quality_t q;
    window_stats_t w;
    float s = 0.0f, cal_top, threshold, p, stability, shift_sum = 0.0f, decay, dist = 0.0f;
    float contrib[AIOT_MONITOR_MAX_CHANNELS], level_z[AIOT_MONITOR_MAX_CHANNELS], mean[AIOT_MONITOR_MAX_CHANNELS];
    float spread[AIOT_MONITOR_MAX_CHANNELS], resid[AIOT_MONITOR_MAX_CHANNELS];
    int c, r;
    aiot_monitor_mask_t mask, past;
    uint16_t keep;
    uint8_t partial;
    const uint16_t first_event = m->event_seq;  // the events this window emits carry its state and confidence

    memset(o, 0, sizeof(*o));
    o->t_start_ms = m->win_start;
    o->t_end_ms = t_end;
    o->p_value = 1.0f;
    for (c = 0; c < 3; c++) o->top_channels[c] = AIOT_MONITOR_NO_CHANNEL;
    window_quality(m, &q);
    if (m->phase == AIOT_PHASE_ARMED) track_silent(m, &q, t_end);
    partial = leave_out(m, &q) ? AIOT_OUT_PARTIAL : 0;
    o->quality = q.quality;
    m->windows++;
    m->fill = 0;

    if (m->phase == AIOT_PHASE_COMMISSIONING) {
        level_push(m);
        commission(m, t_end);
        o->flags = AIOT_OUT_LEARNING;
        o->state = q.quality < k->min_quality ? AIOT_STATE_NO_DATA : AIOT_STATE_RECALIBRATING;
        set_state(m, o->t_start_ms, o->state, q.quality, first_event, -1.0f);
        return;
    }
    if (q.quality < k->min_quality) {
        // Nothing is scored: the alert history neither gains nor loses a vote.
        o->state = AIOT_STATE_NO_DATA;
        o->flags = (uint8_t)((m->phase != AIOT_PHASE_ARMED ? AIOT_OUT_LEARNING : 0) | (m->alert ? AIOT_OUT_ALERT : 0) |
                             partial);
        set_state(m, o->t_start_ms, o->state, q.quality, first_event, -1.0f);
        return;
    }
    level_push(m);
    window_means(m, mean);
    if (k->spread_score) window_spreads(m, spread);
    normalize(m);
    if (m->score(m->score_ctx, m->win, (size_t)(k->window * C), m->recon) != 0 || window_stats(m, &w) != 0 ||
        !stats_finite(m, &w)) {
        score_error(m, o, first_event);
        return;
    }
    if (m->phase == AIOT_PHASE_CALIBRATING) {
        // residual_score: its reference is measured by these windows; calibrate() puts its
        // largest z into the set once it is known
        const float level = k->level_windows ? level_score(m, k->spread_score ? spread : NULL, NULL, level_z) : 0.0f;
        if (!isfinite(level)) {  // never into the calibration set: it would disarm the threshold
            score_error(m, o, first_event);
            return;
        }
        calibrate(m, t_end, &w, level, q.ch_quality);
        o->state = AIOT_STATE_RECALIBRATING;
        o->flags = (uint8_t)(AIOT_OUT_LEARNING | partial);
        set_state(m, o->t_start_ms, o->state, q.quality, first_event, -1.0f);
        return;
    }

    // Drift / step handling first, so a channel that starts recalibrating in this window
    // is already left out of the score of this window.
    if (m->since_recal < 0xFFFFu) m->since_recal++;
    r = 0;
    for (c = 1; c < C; c++)
        if (w.rest[c] / m->ch[c].rest_ref < w.rest[r] / m->ch[r].rest_ref) r = c;
    for (c = 0; c < C; c++)
        if (!(m->ch[c].health & CH_LEFT_OUT)) adapt_channel(m, c, r, t_end, &w, mean[c]);

    cal_top = m->cal[m->cal_count - 1];
    r = recalibrating_channel(m);
    if (r >= 0) {
        // Score the machine from the other channels, on the scale of the calibration set.
        float cal_mean = 0.0f;
        for (c = 0; c < m->cal_count; c++) cal_mean += m->cal[c];
        cal_mean /= (float)m->cal_count;
        s = w.rest[r] * cal_mean / m->ch[r].rest_ref;
    } else {
        for (c = 0; c < C; c++) s += w.err[c];
        s /= (float)C;
    }
    if (k->residual_score) residual_scores(m, &w, q.ch_quality, resid);
    if (k->level_windows)  // a recalibrating channel is left out there
        s = level_score(m, k->spread_score ? spread : NULL, k->residual_score ? resid : NULL, level_z);
    if (k->level_windows && k->residual_score >= 2)  // inf stays inf
        s = fmaxf(s, energy_score(m, &w, q.ch_quality));
    if (!isfinite(s)) {  // before the average: one bad window must not poison the next N
        score_error(m, o, first_event);
        return;
    }
    s = averaged(m, s);
    threshold = fmaxf(k->alert_margin * cal_top, TINY);
    o->score = s / threshold;
    if (!isfinite(o->score)) {
        score_error(m, o, first_event);
        return;
    }
    past = past_tolerance(m, mean);
    if (past && o->score < 1.0f) o->score = 1.0f;  // at least the threshold: it votes and never clears
    p = p_value(m, s);
    o->p_value = p;
    keep = (uint16_t)((1u << k->persist_n) - 1u);
    m->vote_high = (uint16_t)(((m->vote_high << 1) | (o->score >= 1.0f)) & keep);
    m->vote_low = (uint16_t)(((m->vote_low << 1) | (s >= k->clear_margin * cal_top || past)) & keep);
    if (o->score >= 1.0f) o->flags |= AIOT_OUT_VOTE;
    o->flags |= partial;

    for (c = 0; c < C; c++)  // a sensor past its tolerance is named first
        contrib[c] = (past >> c) & 1u ? FLT_MAX
                     : c == r         ? 0.0f
                     : k->level_windows ? level_z[c]
                                        : w.err[c] / m->ch[c].err_ref;
    top3(contrib, m, o->top_channels, &mask);
    away_push(m, mean);
    if (m->alert || m->recovering) {
        // The machine is back only when every sensor the alert implicated is back in band.
        // The escalation measures the distance out of the +-BAND_NOISE band; the clearing
        // rule asks for the clear_band band, and that no implicated sensor still moves away.
        const int away = moving_away(m, m->alert_mask, mean);
        dist = band_distance(m, m->alert_mask, mean, BAND_NOISE);
        m->band_out = (uint16_t)(((m->band_out << 1) |
                                  (away || band_distance(m, m->alert_mask, mean, k->clear_band) > 0.0f)) & keep);
    }
    if (m->alert) {
        // Not on its way back yet: still over the alert threshold, or above recover_ratio x
        // its peak (always when off). A score over the threshold is never "back", however far
        // below its peak (issue 19: an alert ends only when the machine is back).
        m->alert_peak = fmaxf(m->alert_peak, o->score);
        m->vote_rec = (uint16_t)(((m->vote_rec << 1) | (k->recover_ratio <= 0.0f || o->score >= 1.0f ||
                                                        o->score >= k->recover_ratio * m->alert_peak)) & keep);
    } else if (m->recovering) {
        // Back over the alert (or the recover) level, or rising again: twice its lowest
        // since recovering began and over the clear level.
        const int rising = o->score >= 2.0f * m->recover_min && o->score >= k->clear_margin / k->alert_margin;
        m->recover_min = fminf(m->recover_min, o->score);
        m->vote_rec = (uint16_t)(((m->vote_rec << 1) |
                                  (o->score >= fmaxf(1.0f, k->recover_ratio * m->alert_peak) || rising)) & keep);
    }
    if (!m->alert && (popcount16(m->recovering ? m->vote_rec : m->vote_high) >= k->persist_k ||
                      (m->recovering && popcount16(m->band_out) >= k->persist_k))) {
        m->alert = 1;
        m->recovering = 0;
        m->alert_peak = o->score;
        m->vote_rec = keep;
        m->alert_mask |= mask;  // reopened: still the sensors of the first raise too
        m->band_out = 0;
        m->held = 0;
        m->alert_severity = severity_of(k, o->score);
        m->escalate_score = o->score;
        m->escalate_dist = band_distance(m, m->alert_mask, mean, BAND_NOISE);
        if (!isfinite(m->escalate_dist)) m->escalate_dist = 0.0f;
        emit(m, t_end, AIOT_EVENT_ALERT_RAISED, o->top_channels[0], mask, o->score);
    } else if ((m->alert || m->recovering) && m->vote_low == 0 && m->band_out == 0) {
        m->alert = 0;
        m->recovering = 0;
        m->alert_severity = 0;
        m->alert_mask = 0;
        m->held = 0;
        emit(m, t_end, AIOT_EVENT_ALERT_CLEARED, AIOT_MONITOR_NO_CHANNEL, 0, o->score);
    } else if (m->alert && m->vote_rec == 0 && m->band_out == 0) {
        m->alert = 0;
        m->recovering = 1;
        m->recover_min = o->score;
        m->alert_severity = 0;
        emit(m, t_end, AIOT_EVENT_RECOVERING, o->top_channels[0], mask, o->score);
    } else if (m->alert && m->alert_severity < 3 &&
               (severity_of(k, o->score) > m->alert_severity || o->score >= 2.0f * m->escalate_score ||
                (isfinite(dist) && dist >= 2.0f * fmaxf(m->escalate_dist, 1.0f)))) {
        // Worse than at the last severity: past the next severity threshold, or the score or
        // the implicated sensors' distance out of band doubled. A growing fault escalates.
        uint8_t sev = severity_of(k, o->score);
        m->alert_severity = sev > m->alert_severity ? sev : (uint8_t)(m->alert_severity + 1u);
        m->escalate_score = fmaxf(m->escalate_score, o->score);
        m->escalate_dist = isfinite(dist) ? fmaxf(m->escalate_dist, dist) : m->escalate_dist;
        m->alert_mask |= mask;
        emit(m, t_end, AIOT_EVENT_SEVERITY_CHANGED, o->top_channels[0], mask, o->score);
    }
    if ((m->alert || m->recovering) && !m->held && m->vote_low == 0 && m->band_out != 0) report_held(m, t_end, mean);

    // Confidence: calibrated p-value, discounted by missing data and recent baseline moves.
    decay = exp_portable(-0.69314718f / k->stability_halflife);
    for (c = 0; c < C; c++) {
        shift_sum += m->ch[c].recent_shift;
        m->ch[c].recent_shift *= decay;
    }
    stability = 1.0f / (1.0f + shift_sum);
    if (m->alert) {
        o->state = AIOT_STATE_ANOMALY;
        o->severity = m->alert_severity;
        o->flags |= AIOT_OUT_ALERT;
        o->confidence = 1.0f - p;
    } else if (m->recovering) {
        o->state = AIOT_STATE_RECOVERING;
        o->confidence = 1.0f - p;  // how sure the machine is still off normal
    } else {
        // How far from the alert threshold this window is, in calibrated terms: 0.5 at the
        // threshold, near 1 for typical scores.
        float p_thr = p_value(m, threshold);
        o->confidence = p + p_thr > 0.0f ? p / (p + p_thr) : (o->score < 1.0f ? 1.0f : 0.0f);
        o->state = AIOT_STATE_NORMAL;
        for (c = 0; c < C; c++) {
            if (m->ch[c].mode == CH_RECAL) o->state = AIOT_STATE_RECALIBRATING;
            else if (m->ch[c].mode == CH_DRIFT && o->state == AIOT_STATE_NORMAL) o->state = AIOT_STATE_DRIFT;
        }
    }
    o->confidence *= q.quality * stability;
    if (!isfinite(o->confidence)) o->confidence = 0.0f;  // never NaN on the wire
    set_state(m, o->t_start_ms, o->state, q.quality, first_event, o->confidence);
}

static void gap_output(aiot_monitor_t *m, aiot_monitor_output_t *o, uint32_t t0, uint32_t t1) {
    const uint16_t first = m->event_seq;
    int c;
    memset(o, 0, sizeof(*o));
    o->t_start_ms = t0;
    o->t_end_ms = t1;
    o->state = AIOT_STATE_NO_DATA;
    o->flags = (uint8_t)(AIOT_OUT_GAP | (m->alert ? AIOT_OUT_ALERT : 0) |
                         (m->phase != AIOT_PHASE_ARMED ? AIOT_OUT_LEARNING : 0));
    o->p_value = 1.0f;
    for (c = 0; c < 3; c++) o->top_channels[c] = AIOT_MONITOR_NO_CHANNEL;
    set_state(m, t0, AIOT_STATE_NO_DATA, 0.0f, first, -1.0f);
}

//! Append one sample slot; returns 1 when it completed a window (written to *o).
static int append(aiot_monitor_t *m, uint32_t ts, uint64_t mask, const float *values, aiot_monitor_output_t *o) {
    const int C = m->cfg.num_channels;
    aiot_monitor_mask_t valid = 0;
    int c;
    if (m->fill == 0) m->win_start = ts;
    for (c = 0; c < C; c++) {
        float v = values ? values[c] : 0.0f;
        if (values && ((mask >> c) & 1u) && isfinite(v) && !(m->ch[c].health & AIOT_CH_NOT_COMMISSIONED)) {
            valid |= BIT(c);
            m->win[m->fill * C + c] = v;
        } else {
            // a value sent as present but NaN/inf: garbage, counted while commissioning
            if (values && ((mask >> c) & 1u) && !isfinite(v) && m->phase == AIOT_PHASE_COMMISSIONING &&
                m->ch[c].rejected < 0xFFFFu)
                m->ch[c].rejected++;
            m->win[m->fill * C + c] = 0.0f;
        }
    }
    m->valid[m->fill] = valid;
    m->fill++;
    if (m->fill < m->cfg.window) return 0;
    close_window(m, o, ts);
    return 1;
}

int aiot_monitor_push(aiot_monitor_t *m, const aiot_sample_t *s, aiot_monitor_output_t *out, size_t max_out) {
    const uint32_t period = m ? m->cfg.sample_period_ms : 0;
    int n = 0;
    if (!m || !s || !out || max_out < AIOT_MONITOR_MAX_OUTPUTS) return AIOT_MONITOR_EINVAL;
    if (m->has_last) {
        uint32_t dt = s->timestamp_ms - m->last_ts;
        uint32_t missing, fit, i;
        if (dt >= 0x80000000u) {
            // The clock stepped back (NTP, a repeated hour, a restarted clock; or forward by
            // 2^31 ms or more, which a uint32 of milliseconds cannot tell from backwards).
            // The sample is real data: go on from its time. The window in progress cannot be
            // completed without spanning the step, and nothing is missing: no gap output.
            m->time_resets++;
            m->fill = 0;
            emit(m, s->timestamp_ms, AIOT_EVENT_TIME_RESET, AIOT_MONITOR_NO_CHANNEL, 0,
                 (float)(0u - dt) / 1000.0f);
        } else if (dt < period / 2u + 1u) {
            m->rejected_samples++; // a duplicate or too early
            return 0;
        } else {
            missing = (dt + period / 2u) / period - 1u;
            fit = missing < (uint32_t)(m->cfg.window - m->fill) ? missing : (uint32_t)(m->cfg.window - m->fill);
            for (i = 1; i <= fit; i++) n += append(m, m->last_ts + i * period, 0, NULL, &out[n]);
            missing -= fit;
            if (missing >= m->cfg.window) {
                gap_output(m, &out[n++], m->last_ts + (fit + 1u) * period, m->last_ts + (fit + missing) * period);
            } else {
                for (i = 1; i <= missing; i++) n += append(m, m->last_ts + (fit + i) * period, 0, NULL, &out[n]);
            }
        }
    }
    m->has_last = 1;
    m->last_ts = s->timestamp_ms;
    n += append(m, s->timestamp_ms, s->valid_mask, s->value, &out[n]);
    return n;
}

int aiot_monitor_push_batch(aiot_monitor_t *m, const aiot_sample_t *samples, size_t n, aiot_monitor_output_t *out,
                            size_t max_out, size_t *consumed) {
    size_t i, written = 0;
    if (!m || (!samples && n) || !out || !consumed) return AIOT_MONITOR_EINVAL;
    for (i = 0; i < n && written + AIOT_MONITOR_MAX_OUTPUTS <= max_out; i++) {
        int r = aiot_monitor_push(m, &samples[i], out + written, max_out - written);
        if (r < 0) {
            *consumed = i;
            return r;
        }
        written += (size_t)r;
    }
    *consumed = i;
    return (int)written;
}
