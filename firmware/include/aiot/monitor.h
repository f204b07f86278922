//! On-device sensor monitor: turns a stream of timestamped multi-channel samples into
//! windows of normalized features, asks a model to reconstruct them, and keeps track of
//! data gaps, per-sensor noise profiles, calibration drift, remount steps, a calibrated
//! confidence and persistent alerts. Pure maths: no port.h, no malloc, state in the
//! caller-owned aiot_monitor_t, so the host build (toolkit/monitor.py) is the device code.
//!
//! Life of an installation (see docs/monitor.md):
//!   1. COMMISSIONING: the first `commission_samples` valid samples of every channel give
//!      its noise profile (baseline = mean, noise = standard deviation). State RECALIBRATING.
//!   2. CALIBRATION: the next `calibration_windows` windows are scored; their scores are the
//!      conformal calibration set, their per-channel errors the channel references.
//!   3. ARMED: every window gives NORMAL / DRIFT / RECALIBRATING / ANOMALY / NO_DATA.
//!
//! Wire format: every struct below is plain, fixed-size and has no pointers, so a serial
//! protocol can send it as little-endian bytes in field order (sizes are checked by the
//! static asserts in monitor.c: sample 8 + 4*MAX_CHANNELS, output 32, event 16 bytes).
#ifndef AIOT_MONITOR_H
#define AIOT_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//! Compile-time capacity. Override with -D to shrink RAM on small parts: with
//! 4 channels x 16 samples x 48 calibration scores the monitor takes 2.2 KB (aiot_monitor_sizeof()).
#ifndef AIOT_MONITOR_MAX_CHANNELS
#define AIOT_MONITOR_MAX_CHANNELS 8 //!< at most 8: valid masks are one byte per sample
#endif
#ifndef AIOT_MONITOR_MAX_WINDOW
#define AIOT_MONITOR_MAX_WINDOW 32
#endif
#ifndef AIOT_MONITOR_MAX_CALIBRATION
#define AIOT_MONITOR_MAX_CALIBRATION 64 //!< conformal calibration scores kept on the device
#endif
#ifndef AIOT_MONITOR_MAX_AVERAGE
#define AIOT_MONITOR_MAX_AVERAGE 16 //!< largest score_average (windows in the trailing mean)
#endif
#ifndef AIOT_MONITOR_MAX_LEVEL
#define AIOT_MONITOR_MAX_LEVEL 8 //!< largest level_windows (windows in the level mean)
#endif
#ifndef AIOT_MONITOR_EVENT_CAPACITY
#define AIOT_MONITOR_EVENT_CAPACITY 16 //!< ring buffer of events, newest kept on overflow
#endif

//! A push can close the current window and report a long timestamp gap: 2 outputs max.
#define AIOT_MONITOR_MAX_OUTPUTS 2
#define AIOT_MONITOR_NO_CHANNEL 0xFFu

typedef enum {
    AIOT_MONITOR_OK = 0,
    AIOT_MONITOR_EINVAL = -1,   //!< bad argument or configuration
    AIOT_MONITOR_ESCORE = -2,   //!< the score callback failed (window reported as NO_DATA)
    AIOT_MONITOR_ESTATE = -3,   //!< call not allowed in the current phase
} aiot_monitor_status_t;

typedef enum {
    AIOT_STATE_NORMAL = 0,
    AIOT_STATE_ANOMALY = 1,
    AIOT_STATE_NO_DATA = 2,       //!< window quality below min_quality: nothing can be said
    AIOT_STATE_DRIFT = 3,         //!< a channel's baseline is being tracked (slow drift)
    AIOT_STATE_RECALIBRATING = 4, //!< a channel is re-learning its level (step), or learning
    AIOT_STATE_RECOVERING = 5,    //!< an alert ended while the score is on its way back down
                                  //!< (recover_ratio): still off normal, no alert
} aiot_monitor_state_t;

typedef enum {
    AIOT_PHASE_COMMISSIONING = 0,
    AIOT_PHASE_CALIBRATING = 1,
    AIOT_PHASE_ARMED = 2,
} aiot_monitor_phase_t;

//! Output flags.
#define AIOT_OUT_LEARNING 0x01u    //!< commissioning or calibration still running
#define AIOT_OUT_GAP 0x02u         //!< output covers a timestamp gap (no samples at all)
#define AIOT_OUT_SCORE_ERROR 0x04u //!< the score callback failed for this window
#define AIOT_OUT_ALERT 0x08u       //!< an alert is latched (also set while NO_DATA hides it)
#define AIOT_OUT_VOTE 0x10u        //!< this window alone was over the alert threshold

typedef enum {
    AIOT_EVENT_COMMISSIONED = 1,  //!< noise profiles learned
    AIOT_EVENT_CALIBRATED = 2,    //!< conformal set complete; value = largest calibration score
    AIOT_EVENT_ALERT_RAISED = 3,  //!< value = score, channel = top contributor, severity set
    AIOT_EVENT_ALERT_CLEARED = 4,
    AIOT_EVENT_SEVERITY_CHANGED = 5, //!< severity of the latched alert went up
    AIOT_EVENT_DRIFT_DETECTED = 6,   //!< value = residual bias (noise units)
    AIOT_EVENT_RECAL_STARTED = 7,    //!< value = step size (noise units)
    AIOT_EVENT_RECAL_DONE = 8,       //!< value = total level shift applied (noise units)
    AIOT_EVENT_RECAL_REJECTED = 9,   //!< step too large, reshaped or unstable: kept as a fault
    AIOT_EVENT_BASELINE_LIMIT = 10,  //!< drift reached max_baseline_shift: sensor needs service
    AIOT_EVENT_DATA_LOST = 11,       //!< NO_DATA began; value = quality
    AIOT_EVENT_DATA_RESTORED = 12,
    AIOT_EVENT_BASELINE_RESET = 13,  //!< aiot_monitor_reset_baseline() was called
    AIOT_EVENT_RECOVERING = 14,      //!< the alert ended into RECOVERING; value = score. The
                                     //!< incident closes with ALERT_CLEARED once the score is
                                     //!< under clear_margin, or reopens with ALERT_RAISED
} aiot_monitor_event_type_t;

//! Knobs. aiot_monitor_default_config() fills sensible values; units are stated per field.
//! "noise units" = the channel's commissioning standard deviation.
typedef struct {
    uint8_t num_channels;         //!< 1..AIOT_MONITOR_MAX_CHANNELS
    uint8_t window;               //!< samples per window, 2..AIOT_MONITOR_MAX_WINDOW
    uint8_t persist_k;            //!< raise an alert when k of the last n windows vote
    uint8_t persist_n;            //!< 1..16, and the clear hysteresis length
    uint32_t sample_period_ms;    //!< nominal sampling period; larger timestamp steps are gaps
    uint32_t commission_samples;  //!< valid samples per channel for the noise profile
    uint16_t calibration_windows; //!< scored windows for the calibration set (<= MAX_CALIBRATION)
    uint8_t recal_windows;        //!< a step must settle within this many windows
    uint8_t drift_hold;           //!< windows a channel stays in DRIFT after its detector fired
    uint8_t isolation;            //!< 1: one extra model call per channel to tell which sensor
                                  //!< moved (each window costs 1 + channels calls); 0: off
    //! 0 or 1: each window's score stands alone. N > 1: the score that votes, calibrates and
    //! is reported is the mean of the last N scored windows' (fewer right after
    //! commissioning): noise averages out over N windows while a fault that persists stays,
    //! at the cost of up to N - 1 windows of delay (an EWMA chart's trade). <= MAX_AVERAGE.
    uint8_t score_average;
    //! 0: the score is the model's reconstruction error (an energy: each window's squared
    //! deviations). N in 1..MAX_LEVEL: the score is a level shift instead: per channel, the
    //! mean of its raw samples over the last N windows, minus its baseline, in units of the
    //! spread those N-window means showed while commissioning (measured, so a slow sensor's
    //! wander and a white one's sqrt(N) averaging are both what they are; floored like the
    //! noise); the worst channel's |z| scores. A shift of a fraction of a sample's noise that
    //! lasts minutes stands out of an average where an energy test keeps the noise. The
    //! model still runs every window for isolation, drift and remount handling. Changing it
    //! needs a new commissioning (the spreads are per N).
    uint8_t level_windows;
    uint8_t reserved;
    float min_quality;            //!< NO_DATA when the worst channel has fewer valid samples (0..1)
    float clip;                   //!< features clipped to +-clip noise units
    float alert_margin;           //!< vote when score > alert_margin x largest calibration score
    float clear_margin;           //!< alert clears after n windows all below this margin (hysteresis)
    float severity_major;         //!< severity 2 at this multiple of the alert threshold
    float severity_critical;      //!< severity 3 at this multiple of the alert threshold
    float cusum_slack;            //!< drift CUSUM k, in units of the calibration deviation spread
    float cusum_threshold;        //!< drift CUSUM h, same units
    float step_threshold;         //!< smallest jump of a channel's deviation that is a step
                                  //!< (noise units; also at least 4 x its calibration spread)
    float max_recal_step;         //!< largest step accepted as a remount (noise units)
    float drift_gain;             //!< fraction of the residual bias corrected per window in DRIFT
    float max_drift_rate;         //!< baseline tracking limit, noise units per hour
    float max_baseline_shift;     //!< total drift correction allowed (noise units)
    float gate_ratio;             //!< adaptation of a channel is blocked when the other channels
                                  //!< (reconstructed without it) or its own residual shape exceed
                                  //!< gate_ratio x their calibration reference
    float stability_halflife;     //!< windows for a baseline change to halve its confidence penalty
    //! 0: off. In (0, 1): an alert whose last persist_n windows all scored below
    //! recover_ratio x its peak (and not all below clear_margin) ends into RECOVERING: the
    //! deviation is on its way back, as when a machine settles after an intervention, and
    //! its slow tail is not a new incident. RECOVERING raises again on persist_k of
    //! persist_n windows above that level (and the alert threshold), and ends as a normal
    //! clear once persist_n windows are all below clear_margin.
    float recover_ratio;
    //! Per-channel noise floors, applied when commissioning ends: a channel's noise is at
    //! least max(noise_floor[c], noise_floor_rel[c] x |commissioned level|). A quiet sensor
    //! commissioned over a few calm minutes must not turn its normal long-term wander into
    //! many "noise units"; the fleet's spread of each sensor is the usual source of these
    //! floors. Defaults: 0 and 1e-3 (only guards a stuck or perfectly quiet sensor).
    float noise_floor[AIOT_MONITOR_MAX_CHANNELS];      //!< raw units, >= 0
    float noise_floor_rel[AIOT_MONITOR_MAX_CHANNELS];  //!< fraction of |level|, >= 0
} aiot_monitor_config_t;

//! One timestamped sample. Bit c of valid_mask says value[c] is present; NaN/inf values
//! are treated as missing whatever the mask says.
typedef struct {
    uint32_t timestamp_ms;        //!< wraps after 49 days; only differences are used
    uint32_t valid_mask;
    float value[AIOT_MONITOR_MAX_CHANNELS];
} aiot_sample_t;

//! One output per completed window (or per timestamp gap longer than what fits in one).
typedef struct {
    uint32_t t_start_ms;          //!< first sample slot of the window
    uint32_t t_end_ms;            //!< last sample slot of the window
    uint8_t state;                //!< aiot_monitor_state_t
    uint8_t severity;             //!< 0 none, 1 minor, 2 major, 3 critical
    uint8_t flags;                //!< AIOT_OUT_*
    uint8_t top_channels[3];      //!< largest error contributions first, NO_CHANNEL if unused
    uint16_t reserved;
    float score;                  //!< window error / alert threshold (1.0 = threshold)
    float p_value;                //!< conformal p-value of the score against calibration
    float confidence;             //!< 0..1 confidence in `state`, x quality x stability
    float quality;                //!< 0..1 valid fraction of the worst channel
} aiot_monitor_output_t;

typedef struct {
    uint32_t timestamp_ms;
    uint16_t seq;                 //!< increments per event; a jump tells the host it missed some
    uint8_t type;                 //!< aiot_monitor_event_type_t
    uint8_t channel;              //!< main channel or NO_CHANNEL
    uint8_t channel_mask;         //!< contributing channels (alerts)
    uint8_t severity;
    uint8_t state;                //!< monitor state after the event
    uint8_t reserved;
    float value;                  //!< meaning per event type
} aiot_monitor_event_t;

//! The model: reconstruct `n` = window x channels features (time-major: features[t*C + c]).
//! Returns 0 on success. Missing samples are imputed before the call; their errors are
//! ignored afterwards, so imputation never makes a window look more normal than it is.
typedef int (*aiot_score_fn)(void *ctx, const float *features, size_t n, float *reconstruction);

typedef struct {
    float baseline;       //!< current level (raw units)
    float baseline0;      //!< commissioned level
    float noise;          //!< commissioning standard deviation (raw units)
    float acc_mean, acc_m2;  //!< Welford accumulators (commissioning)
    uint32_t acc_n;
    float sum_err, sum_dev, sum_dev2, sum_shape, sum_rest, sum_lev; //!< calibration sums
    float leverage;       //!< fraction of a level offset on this channel the model reproduces
    float err_ref;        //!< mean calibration error (noise units squared)
    float dev_sd;         //!< spread of the isolated deviation during calibration
    float shape_ref;      //!< mean isolated residual variance during calibration
    float rest_ref;       //!< mean error of the other channels with this one unknown
    float cusum_pos, cusum_neg;
    float recent_shift;   //!< decaying sum of |baseline changes| (noise units)
    float recal_from;     //!< baseline before the current recalibration
    float last_error;     //!< last window's error (noise units squared)
    float last_dev;       //!< last window's isolated deviation (noise units)
    float last_rest;      //!< last window's error of the others with this one unknown
    float dev_prev;       //!< deviation one scored window ago
    float dev_before;     //!< deviation two scored windows ago
    float dev_older;      //!< deviation three scored windows ago
    float dev_oldest;     //!< deviation four scored windows ago
    float lvl_mean, lvl_m2; //!< Welford accumulators of the N-window means (commissioning)
    uint32_t lvl_n;
    float lvl_sd;         //!< spread of the N-window means (raw units), level_windows > 0
    uint8_t mode;         //!< 0 ok, 1 drift, 2 recalibrating
    uint8_t hold;         //!< drift windows left / recal windows used
    uint8_t settled;      //!< consecutive settled windows during recalibration
    uint8_t flags;        //!< internal: recal blocked, baseline limit reported
} aiot_monitor_channel_t;

//! All state. Treat as opaque; size it with sizeof or aiot_monitor_sizeof().
typedef struct {
    aiot_monitor_config_t cfg;
    aiot_score_fn score;
    void *score_ctx;
    uint8_t phase;
    uint8_t fill;               //!< samples in the current window
    uint8_t alert;              //!< alert latched
    uint8_t alert_severity;
    uint8_t last_state;
    uint8_t has_last;
    uint16_t vote_high;         //!< bit history, newest in bit 0
    uint16_t vote_low;
    uint16_t cal_count;
    uint16_t event_seq;
    uint16_t since_recal;       //!< scored windows since the last recalibration ended
    uint16_t vote_rec;          //!< alert: windows near its peak; recovering: above its level
    uint32_t last_ts;
    uint32_t win_start;
    uint32_t windows;           //!< windows completed
    uint32_t rejected_samples;  //!< duplicates, too early or late samples (aiot_monitor_push)
    uint32_t score_errors;
    uint32_t events_dropped;
    float alert_peak;           //!< highest score (x threshold) of the latched alert
    float recover_level;        //!< recovering: score (x threshold) that reopens the alert
    uint8_t recovering;         //!< 1: RECOVERING (never together with alert)
    uint8_t ev_head, ev_count;
    uint8_t valid[AIOT_MONITOR_MAX_WINDOW];
    float win[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];
    float recon[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];
    float probe[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];       //!< isolation input
    float probe_recon[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS]; //!< isolation output
    float cal[AIOT_MONITOR_MAX_CALIBRATION]; //!< sorted ascending
    float avg[AIOT_MONITOR_MAX_AVERAGE];     //!< last raw window scores (score_average ring)
    uint8_t avg_count, avg_pos;
    //! raw window means per channel (NaN: no valid sample), the level_windows ring
    float lvl_ring[AIOT_MONITOR_MAX_LEVEL * AIOT_MONITOR_MAX_CHANNELS];
    uint8_t lvl_count, lvl_pos;
    aiot_monitor_channel_t ch[AIOT_MONITOR_MAX_CHANNELS];
    aiot_monitor_event_t events[AIOT_MONITOR_EVENT_CAPACITY];
} aiot_monitor_t;

//! Sensible defaults for `num_channels` channels, `window` samples per window.
void aiot_monitor_default_config(aiot_monitor_config_t *cfg, uint8_t num_channels, uint8_t window,
                                 uint32_t sample_period_ms);

//! Check a configuration. Returns AIOT_MONITOR_OK or AIOT_MONITOR_EINVAL.
int aiot_monitor_check_config(const aiot_monitor_config_t *cfg);

//! Start a fresh installation (commissioning). `score` must stay valid for the monitor's life.
int aiot_monitor_init(aiot_monitor_t *m, const aiot_monitor_config_t *cfg, aiot_score_fn score, void *ctx);

//! Change knobs live. Structural fields (channels, window, commissioning and calibration
//! lengths, period) must not change: returns AIOT_MONITOR_EINVAL and keeps the old config.
int aiot_monitor_update_config(aiot_monitor_t *m, const aiot_monitor_config_t *cfg);

//! Push one sample. Writes up to AIOT_MONITOR_MAX_OUTPUTS outputs (max_out must be at least
//! that) and returns how many, or a negative status. Duplicate timestamps, samples closer
//! than half a period, and late samples (back by at most one window's span) are counted in
//! rejected_samples and ignored. A clock that moved (back by more than a window, or forward
//! by 2^31 ms = 24.8 days or more, which uint32 milliseconds cannot tell apart) restarts the
//! stream at the new time: the window in progress is dropped and one gap output (NO_DATA)
//! stands for the unknown span; the monitor never stops taking samples.
int aiot_monitor_push(aiot_monitor_t *m, const aiot_sample_t *sample, aiot_monitor_output_t *out, size_t max_out);

//! Push samples until they are all consumed or `out` could overflow. Sets *consumed and
//! returns the number of outputs written (or a negative status). What a PUSH request runs.
int aiot_monitor_push_batch(aiot_monitor_t *m, const aiot_sample_t *samples, size_t n, aiot_monitor_output_t *out,
                            size_t max_out, size_t *consumed);

//! Oldest pending event into *ev; returns 1, or 0 if the ring buffer is empty.
int aiot_monitor_pop_event(aiot_monitor_t *m, aiot_monitor_event_t *ev);

//! Forget the learned profiles and calibration and commission again (events are kept).
void aiot_monitor_reset_baseline(aiot_monitor_t *m);

//! sizeof(aiot_monitor_t) for bindings that treat it as opaque bytes.
size_t aiot_monitor_sizeof(void);

//! What a host may want to see of one channel (diagnostics, CONFIG get).
typedef struct {
    float baseline;       //!< current level (raw units)
    float baseline0;      //!< commissioned level (raw units)
    float noise;          //!< commissioning standard deviation (raw units)
    float error_ref;      //!< mean calibration error (noise units squared)
    float last_error;     //!< last scored window's error (noise units squared)
    float last_deviation; //!< last scored window's isolated deviation (noise units)
    float last_rest;      //!< error of the other channels with this one unknown
    float deviation_sd;   //!< calibration spread of the deviation (noise units)
    float leverage;       //!< fraction of a level offset the model reproduces (0..0.9)
    uint8_t mode;         //!< 0 ok, 1 drift, 2 recalibrating
    uint8_t reserved[3];
} aiot_monitor_channel_info_t;

typedef struct {
    uint8_t phase;             //!< aiot_monitor_phase_t
    uint8_t state;             //!< last reported state
    uint8_t alert;             //!< 1 while an alert is latched
    uint8_t events_pending;
    uint32_t windows;          //!< windows completed
    uint32_t rejected_samples; //!< duplicate or backwards timestamps
    uint32_t score_errors;
    uint32_t events_dropped;   //!< overwritten before the host drained them
} aiot_monitor_stats_t;

//! Returns AIOT_MONITOR_EINVAL for a channel out of range.
int aiot_monitor_channel_info(const aiot_monitor_t *m, uint8_t channel, aiot_monitor_channel_info_t *info);
void aiot_monitor_stats(const aiot_monitor_t *m, aiot_monitor_stats_t *stats);

//! Adapter for the generated int8 engine (engine_adapter.c, needs aiot/model.h symbols):
//! quantizes features with the model's input scale/zero point, invokes, dequantizes.
//! ctx is unused. Returns AIOT_MONITOR_EINVAL if n differs from the model's tensors.
int aiot_monitor_engine_score(void *ctx, const float *features, size_t n, float *reconstruction);

#ifdef __cplusplus
}
#endif
#endif
