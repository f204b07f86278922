//! On-device sensor monitor: turns a stream of timestamped multi-channel samples into
//! windows of normalized features, asks a model to reconstruct them, and keeps track of
//! data gaps, per-sensor noise profiles, calibration drift, remount steps, a calibrated
//! confidence and persistent alerts. Pure maths: no port.h, no malloc, state in the
//! caller-owned aiot_monitor_t, so the host build (toolkit/monitor.py) is the device code.
//!
//! Life of an installation (see docs/monitor.md):
//!   1. COMMISSIONING: the first `commission_samples` valid samples of every channel give
//!      its noise profile (baseline = mean, noise = standard deviation), spikes and garbage
//!      rejected and counted. State RECALIBRATING.
//!   2. CALIBRATION: the next `calibration_windows` windows are scored; their scores are the
//!      conformal calibration set, their per-channel errors the channel references.
//!   3. ARMED: every window gives NORMAL / DRIFT / RECALIBRATING / ANOMALY / NO_DATA.
//!
//! Wire format: every struct below is plain, fixed-size and has no pointers, so a serial
//! protocol can send it as little-endian bytes in field order (sizes are checked by the
//! static asserts in monitor.c: sample 16 + 4*MAX_CHANNELS, output 32, event 16 bytes).
#ifndef AIOT_MONITOR_H
#define AIOT_MONITOR_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//! Compile-time capacity. Override with -D to shrink RAM on small parts: with
//! 4 channels x 16 samples x 48 calibration scores the monitor takes 2.5 KB (aiot_monitor_sizeof()).
//! Each channel of capacity costs 4 x MAX_WINDOW x 4 bytes of window buffers plus about
//! 200 bytes of state and settings (docs/monitor.md, "RAM").
#ifndef AIOT_MONITOR_MAX_CHANNELS
#define AIOT_MONITOR_MAX_CHANNELS 8 //!< 1..64 (a 52-sensor plant needs a build with 64)
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

//! One bit per channel: the narrowest type the capacity needs (RAM per window slot).
#if AIOT_MONITOR_MAX_CHANNELS <= 8
typedef uint8_t aiot_monitor_mask_t;
#elif AIOT_MONITOR_MAX_CHANNELS <= 32
typedef uint32_t aiot_monitor_mask_t;
#else
typedef uint64_t aiot_monitor_mask_t;
#endif

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
                                  //!< (recover_ratio) and its sensors are back in their
                                  //!< commissioned band: still off normal, no alert
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
#define AIOT_OUT_PARTIAL 0x20u     //!< scored without a lost or uncommissioned channel

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
    AIOT_EVENT_BASELINE_LIMIT = 10,  //!< no longer emitted (CALIBRATION_ALERT replaced it)
    AIOT_EVENT_DATA_LOST = 11,       //!< NO_DATA began; value = quality
    AIOT_EVENT_DATA_RESTORED = 12,
    AIOT_EVENT_BASELINE_RESET = 13,  //!< aiot_monitor_reset_baseline() was called
    AIOT_EVENT_RECOVERING = 14,      //!< the alert ended into RECOVERING; value = score. The
                                     //!< incident closes with ALERT_CLEARED once the score is
                                     //!< under clear_margin, or reopens with ALERT_RAISED
    AIOT_EVENT_COMMISSION_REJECTED = 15, //!< channel's commissioning rejected samples (spikes,
                                         //!< outliers, non-finite); value = how many
    AIOT_EVENT_CHANNEL_STUCK = 16,   //!< every accepted commissioning sample of the channel was
                                     //!< the same value: a stuck sensor; value = that value.
                                     //!< Its noise is the floor: any movement will show
    AIOT_EVENT_CALIBRATION_ALERT = 17, //!< the drift compensation of a channel passed its
                                       //!< calibration_tolerance (or max_baseline_shift);
                                       //!< value = absorbed offset (raw units). The channel is
                                       //!< scored against its commissioned baseline again and
                                       //!< no longer adapted until reset_baseline: service it
    AIOT_EVENT_DRIFT_PERSISTENT = 18,  //!< a channel has been in DRIFT for drift_alarm_hours;
                                       //!< value = hours (once per DRIFT episode)
    AIOT_EVENT_TIME_RESET = 19,        //!< a sample's timestamp was earlier than the last accepted
                                       //!< one (NTP correction, repeated hour, restarted clock):
                                       //!< value = how far back it stepped (s). The stream goes
                                       //!< on from the new time; the window in progress is
                                       //!< dropped (its samples were before the step)
    AIOT_EVENT_CHANNEL_LOST = 20,      //!< a channel sent no usable data for channel_lost_minutes:
                                       //!< value = minutes. The other channels are scored
                                       //!< without it (outputs flagged AIOT_OUT_PARTIAL)
    AIOT_EVENT_CHANNEL_BACK = 21,      //!< a lost channel sends again (value = minutes it was
                                       //!< silent): it is scored again from this window on
    AIOT_EVENT_RECAL_GAIN = 22,        //!< the channel's last remount changed its gain, not its
                                       //!< level: its residual grew with its own level as that
                                       //!< gain predicts. value = the gain; the channel's
                                       //!< commissioned profile (level, noise, band, spreads)
                                       //!< is re-expressed at it, RECAL_DONE's offset taken back
    AIOT_EVENT_ALERT_HELD = 23,        //!< the alert's score has been under the clear level for
                                       //!< the clear period, yet the alert stays: a sensor it
                                       //!< implicated is still outside its band or moving away.
                                       //!< channel = the implicated one furthest from its
                                       //!< baseline, value = that distance (noise
                                       //!< units; 0: no data). Once an alert. A sensor remounted or
                                       //!< repaired during the fault: reset_baseline
} aiot_monitor_event_type_t;

//! Every monitor setting, declared once: the config struct, the defaults
//! (aiot_monitor_default_config), the range checks (aiot_monitor_check_config) and the
//! Python side (aiot.monitor reads this table from this header) all come from it.
//!   X(name, C type, default, min, max, bounds, "meaning")
//! bounds: AIOT_RANGE_CLOSED [min, max], AIOT_RANGE_LO_OPEN (min, max], AIOT_RANGE_HI_OPEN
//! [min, max). Float bounds are finite, so inf and NaN are refused everywhere. The order is
//! the struct's (its wire layout): keep the u8/u16/u32 fields before the floats.
//! num_channels, window and sample_period_ms take their defaults from
//! aiot_monitor_default_config()'s arguments (the 0 below is never used).
//! Rules between settings (persist_k <= persist_n, ...) are in aiot_monitor_check_config.
#define AIOT_MONITOR_SETTINGS(X)                                                                              \
    X(num_channels, uint8_t, 0, 1, AIOT_MONITOR_MAX_CHANNELS, AIOT_RANGE_CLOSED, "sensors per sample")      \
    X(window, uint8_t, 0, 2, AIOT_MONITOR_MAX_WINDOW, AIOT_RANGE_CLOSED, "samples per window")               \
    X(persist_k, uint8_t, 3, 1, 16, AIOT_RANGE_CLOSED, "raise an alert when k of the last n windows vote")   \
    X(persist_n, uint8_t, 5, 1, 16, AIOT_RANGE_CLOSED, "vote history length; also the clear period (windows)") \
    X(sample_period_ms, uint32_t, 0, 1, 86400000, AIOT_RANGE_CLOSED,                                          \
      "nominal sampling period (ms, at most a day); larger timestamp steps are gaps")                         \
    X(commission_samples, uint32_t, 360, 2, 0xFFFFFFFF, AIOT_RANGE_CLOSED,                                   \
      "valid samples per channel for its noise profile")                                                      \
    X(calibration_windows, uint16_t, 48, 4, AIOT_MONITOR_MAX_CALIBRATION, AIOT_RANGE_CLOSED,                 \
      "scored windows in the conformal calibration set")                                                      \
    X(recal_windows, uint8_t, 12, 1, 255, AIOT_RANGE_CLOSED, "a remount step must settle within this many windows") \
    X(drift_hold, uint8_t, 24, 0, 255, AIOT_RANGE_CLOSED, "windows a channel stays in DRIFT after its detector fired") \
    X(isolation, uint8_t, 1, 0, 255, AIOT_RANGE_CLOSED,                                                       \
      "nonzero: one extra model call per channel to tell which sensor moved (1 + channels calls per window)")  \
    X(score_average, uint8_t, 1, 0, AIOT_MONITOR_MAX_AVERAGE, AIOT_RANGE_CLOSED,                              \
      "N > 1: the score is the mean of the last N window scores (0 or 1: each window alone)")                \
    X(level_windows, uint8_t, 1, 0, AIOT_MONITOR_MAX_LEVEL, AIOT_RANGE_CLOSED,                                \
      "N > 0: the score is the worst channel's N-window mean shift over its commissioned spread")            \
    X(clear_band, uint8_t, 6, 1, 10, AIOT_RANGE_CLOSED,                                                     \
      "an alert clears only with its sensors inside their commissioned span widened to >= +-clear_band noise units, none moving away") \
    X(spread_score, uint8_t, 1, 0, 1, AIOT_RANGE_CLOSED,                                                     \
      "1: each sensor also scores its window's spread (standard deviation) against its commissioned window spreads; the larger z counts (needs level_windows > 0)") \
    X(residual_score, uint8_t, 3, 0, 4, AIOT_RANGE_CLOSED,                                                   \
      "1: each sensor also scores the model's residual of it (its mean over about level_windows windows) against the spread it showed while calibrating; the largest z counts (needs level_windows > 0); 2: also the residual energy pooled over the sensors, their largest quarter left out (a change in how they move together that no one sensor shows); 3: the same with only the largest one left out (a change a few sensors show); 4: the pool (largest left out) of each sensor's window-mean residual squared instead of its per-sample error (relations a model of the window means keeps: aiot's fleet_pca_variance)") \
    X(channel_lost_minutes, uint16_t, 60, 0, 65535, AIOT_RANGE_CLOSED,                                      \
      "a sensor without data this long (minutes) is lost: CHANNEL_LOST, and the others are scored without it; 0: never (the device stays NO_DATA while any sensor is silent)") \
    X(min_quality, float, 0.5f, 0.0f, 1.0f, AIOT_RANGE_LO_OPEN,                                               \
      "NO_DATA when the worst channel has a smaller valid fraction of the window")                           \
    X(clip, float, 8.0f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN, "features clipped to +-clip noise units")            \
    X(alert_margin, float, 2.5f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN,                                              \
      "a window votes when its score > alert_margin x the largest calibration score")                       \
    X(clear_margin, float, 1.875f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN,                                              \
      "an alert clears after persist_n windows all below clear_margin x the largest calibration score")       \
    X(severity_major, float, 3.0f, 1.0f, FLT_MAX, AIOT_RANGE_CLOSED, "severity 2 at this multiple of the threshold") \
    X(severity_critical, float, 10.0f, 1.0f, FLT_MAX, AIOT_RANGE_CLOSED, "severity 3 at this multiple of the threshold") \
    X(cusum_slack, float, 1.0f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED, "drift CUSUM k (calibration deviation spreads)") \
    X(cusum_threshold, float, 8.0f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN, "drift CUSUM h (same units)")              \
    X(step_threshold, float, 0.5f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN,                                            \
      "smallest jump of a channel's deviation that is a step (noise units, and >= 4 calibration spreads)")    \
    X(max_recal_step, float, 3.0f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN, "largest step accepted as a remount (noise units)") \
    X(drift_gain, float, 0.2f, 0.0f, 1.0f, AIOT_RANGE_CLOSED, "fraction of the residual bias corrected per window in DRIFT") \
    X(max_baseline_shift, float, 6.0f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED,                                         \
      "total drift compensation allowed (noise units); beyond it: CALIBRATION_ALERT")                         \
    X(gate_ratio, float, 4.0f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN,                                                \
      "adaptation of a channel is blocked when the others or its own residual shape exceed this x reference") \
    X(stability_halflife, float, 20.0f, 0.0f, FLT_MAX, AIOT_RANGE_LO_OPEN,                                       \
      "windows for a baseline change to halve its confidence penalty")                                       \
    X(recover_ratio, float, 0.0f, 0.0f, 1.0f, AIOT_RANGE_HI_OPEN,                                             \
      "0 off; in (0,1): an alert whose score fell under its threshold and under recover_ratio x its peak (sensors back in band) is RECOVERING until under clear_margin") \
    X(drift_alarm_hours, float, 12.0f, 0.0f, 8760.0f, AIOT_RANGE_LO_OPEN,                                     \
      "a channel in DRIFT longer than this raises DRIFT_PERSISTENT (hours)")                                  \
    X(commission_reject, float, 8.0f, 2.0f, FLT_MAX, AIOT_RANGE_CLOSED,                                          \
      "commissioning sample rejected beyond this many robust spreads from its window's median")

//! Per-sensor settings, one value per channel (arrays of AIOT_MONITOR_MAX_CHANNELS after the
//! settings above; slots past num_channels are 0). Same columns as AIOT_MONITOR_SETTINGS.
#define AIOT_MONITOR_CHANNEL_SETTINGS(X)                                                                      \
    X(noise_floor, float, 0.0f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED, "noise is at least this (raw units)")        \
    X(noise_floor_rel, float, 1e-3f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED, "noise is at least this x |commissioned level|") \
    X(calibration_tolerance, float, 0.0f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED,                                    \
      "largest total drift compensation (raw units); 0: the commissioned span (max - min of accepted samples)") \
    X(max_drift_rate, float, 0.25f, 0.0f, FLT_MAX, AIOT_RANGE_CLOSED,                                          \
      "drift compensation rate limit of this sensor (its noise units per hour); 0: no drift tracking")

#define AIOT_RANGE_CLOSED 0
#define AIOT_RANGE_LO_OPEN 1
#define AIOT_RANGE_HI_OPEN 2

#define AIOT_MONITOR_FIELD_(name, type, def, lo, hi, bounds, doc) type name;
#define AIOT_MONITOR_CHANNEL_FIELD_(name, type, def, lo, hi, bounds, doc) type name[AIOT_MONITOR_MAX_CHANNELS];

//! The settings (see the table above for each field's meaning, default and range). Plain
//! and fixed-size: it travels as bytes (CONFIG_SET / CONFIG_GET), its size depends on
//! AIOT_MONITOR_MAX_CHANNELS (the per-channel arrays at its end).
typedef struct {
    AIOT_MONITOR_SETTINGS(AIOT_MONITOR_FIELD_)
    AIOT_MONITOR_CHANNEL_SETTINGS(AIOT_MONITOR_CHANNEL_FIELD_)
} aiot_monitor_config_t;

//! One timestamped sample. Bit c of valid_mask says value[c] is present; NaN/inf values
//! are treated as missing whatever the mask says.
typedef struct {
    uint32_t timestamp_ms;        //!< wraps after 49 days; only differences are used
    uint32_t reserved;
    uint64_t valid_mask;
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
    //! The contributing channels (alerts: the top 3; per-channel events: `channel`). When
    //! channel_ext is 0 (always, on a device of <= 8 channels) channel_mask has bit c set for
    //! channel c of 0..7. When one of them is 8 or more, channel_ext has bit 7 set and the set
    //! is `channel` plus channel_mask and channel_ext & 0x7F, each a channel number or 0x7F
    //! (none). aiot.monitor.event_channels() decodes both.
    uint8_t channel_mask;
    uint8_t severity;
    uint8_t state;                //!< monitor state after the event
    uint8_t channel_ext;
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
    float tolerance;      //!< largest total drift compensation (raw units), set at commissioning
                          //!< (here: it fills the 8-byte alignment of the union below)
    //! Commissioning, calibration and the armed phase never overlap: their state shares the
    //! bytes (commission() zeroes them when it ends, calibrate() hands them to `away`).
    union {
        struct {
            double acc_mean, acc_m2; //!< Welford accumulators of the accepted commissioning samples
        };
        struct {
            float sum_err, sum_dev, sum_dev2, sum_shape; //!< calibration sums
        };
        //! armed: the last 16 windows' |mean - baseline| in 1/8 noise units (255: no data),
        //! the trend that tells a sensor still moving away (the clearing rule, clear_band)
        uint8_t away[16];
    };
    float acc_min, acc_max;  //!< range of the accepted commissioning samples (the commissioned span)
    union {
        //! commissioning: last accepted sample; a far one awaiting its successor
        struct {
            float last, pending;
        };
        //! afterwards (spread_score): the commissioned mean of the window spreads (standard
        //! deviation of a window's samples, raw units) and their spread, floored like the noise
        struct {
            float spr_ref, spr_sd;
        };
    };
    //! Commissioning: the Welford accumulators of the window spreads (spr_ref and spr_sd come
    //! from them); armed: the drift CUSUM and the DRIFT episode's length. Same bytes.
    union {
        struct {
            float spr_mean, spr_m2;
            uint32_t spr_n;
        };
        struct {
            float cusum_pos, cusum_neg;
            uint32_t drift_windows;  //!< scored windows in the current DRIFT episode
        };
        //! calibration (residual_score): the range of the residual's running mean, which gives
        //! the calibration's largest residual z once its reference is known
        struct {
            float res_min, res_max;
        };
    };
    uint16_t rejected;    //!< commissioning samples rejected (saturates)
    uint8_t health;       //!< AIOT_CH_* flags (commissioning outcome, calibration alert)
    union {
        struct {
            float sum_rest, sum_lev; //!< calibration sums
        };
        //! armed, after a remount (gain_test()): the channel's raw level at RECAL_DONE and the
        //! evidence for a gain so far (1/64 of the residual's variance, saturating): how much
        //! better a gain explains the residuals than the offset, and what it leaves unexplained
        struct {
            float gain_x0;
            int16_t gain_better;
            uint16_t gain_miss;
        };
    };
    float leverage;       //!< fraction of a level offset on this channel the model reproduces
    float err_ref;        //!< mean calibration error (noise units squared)
    float dev_sd;         //!< spread of the isolated deviation during calibration
    float shape_ref;      //!< mean isolated residual variance during calibration
    float rest_ref;       //!< mean error of the other channels with this one unknown
    float recent_shift;   //!< decaying sum of |baseline changes| (noise units)
    float recal_from;     //!< baseline before the current recalibration; after RECAL_DONE, while
                          //!< gain_test() watches, the level the sensor would read without the remount
    float last_error;     //!< last window's error (noise units squared)
    float last_dev;       //!< last window's isolated deviation (noise units)
    float last_rest;      //!< last window's error of the others with this one unknown
    float dev_prev;       //!< deviation one scored window ago
    float dev_before;     //!< deviation two scored windows ago
    float dev_older;      //!< deviation three scored windows ago
    float dev_oldest;     //!< deviation four scored windows ago
    //! Commissioning only: the accepted sample count and the Welford accumulators of the
    //! N-window means. Their bytes then hold the residual_score state: the running mean of the
    //! channel's residual (noise units, both phases), its Welford accumulators while
    //! calibrating, its reference (mean) and spread once armed.
    union {
        struct {
            uint32_t acc_n;
            float lvl_mean, lvl_m2;
            uint32_t lvl_n;
        };
        struct {
            float res_run;         //!< running mean of the residual (exponential, about level_windows windows)
            float res_mean, res_m2; //!< calibration: Welford of res_run; armed: res_mean is the reference
            uint32_t res_n;        //!< calibration: windows in them
        };
        struct {
            float res_run_, res_ref, res_sd; //!< armed: reference and floored spread of res_run
            uint32_t silent_windows;  //!< armed: consecutive windows without enough of its data
        };
    };
    float lvl_sd;         //!< spread of the N-window means (raw units), level_windows > 0
    uint8_t mode;         //!< 0 ok, 1 drift, 2 recalibrating
    uint8_t hold;         //!< drift windows left / recal windows used
    uint8_t settled;      //!< consecutive settled windows during recalibration; then the windows gain_test() watched
    uint8_t flags;        //!< internal: recal blocked, drift reported, gain watch
} aiot_monitor_channel_t;

//! All state. Treat as opaque; size it with sizeof or aiot_monitor_sizeof().
typedef struct {
    aiot_monitor_config_t cfg;
    //! residual_score 2, 3: the pooled energy's calibration mean, then its reference (here: in
    //! what would be padding before the pointers on a 64-bit host)
    float en_ref;
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
    uint8_t away_pos, away_count; //!< ring position and fill of the channels' `away` (armed)
    uint32_t last_ts;
    uint32_t win_start;
    uint32_t windows;           //!< windows completed
    uint32_t rejected_samples;  //!< duplicates and too early samples (aiot_monitor_push)
    uint32_t score_errors;
    uint32_t events_dropped;
    uint32_t time_resets;       //!< samples earlier than the last accepted one (clock stepped back)
    float alert_peak;           //!< highest score (x threshold) of the latched alert (kept while recovering)
    //! residual_score 2, 3, armed: the pooled energy's z on the per-sensor score's scale per unit
    //! of energy over its reference (energy_reference())
    float en_gain;
    uint8_t recovering;         //!< 1: RECOVERING (never together with alert)
    uint8_t ev_head, ev_count;
    uint8_t en_n;               //!< calibration (residual_score 2, 3): windows in the energy's accumulators
    uint16_t band_out;          //!< bit history: an implicated channel was out of its band
    uint8_t held;               //!< 1: this alert's ALERT_HELD was emitted
    aiot_monitor_mask_t alert_mask; //!< channels implicated in the latched alert
    float escalate_score;       //!< alert: score at the last severity change
    union {
        float escalate_dist;    //!< alert: implicated channels' distance out of band then
        float en_max;           //!< calibration (residual_score 2, 3): the largest window energy
    };
    union {
        float recover_min;      //!< recovering: lowest score since it began
        float en_m2;            //!< calibration (residual_score 2, 3): the energy's sum of squares
    };
    aiot_monitor_mask_t valid[AIOT_MONITOR_MAX_WINDOW];
    float win[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];
    float recon[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];
    float probe[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS];       //!< isolation input
    float probe_recon[AIOT_MONITOR_MAX_WINDOW * AIOT_MONITOR_MAX_CHANNELS]; //!< isolation output
    float cal[AIOT_MONITOR_MAX_CALIBRATION]; //!< sorted ascending
    float avg[AIOT_MONITOR_MAX_AVERAGE];     //!< last raw window scores (score_average ring)
    //! raw window means per channel (NaN: no valid sample), the level_windows ring
    float lvl_ring[AIOT_MONITOR_MAX_LEVEL * AIOT_MONITOR_MAX_CHANNELS];
    uint8_t avg_count, avg_pos;  //!< (next to the other bytes: no padding between them)
    uint8_t lvl_count, lvl_pos;
    //! per event slot: the confidence of the window that emitted it x 254, rounded; 255 none
    //! (a byte, not a float in the event: the ring stays 16 bytes an event)
    uint8_t ev_confidence[AIOT_MONITOR_EVENT_CAPACITY];
    aiot_monitor_channel_t ch[AIOT_MONITOR_MAX_CHANNELS];
    aiot_monitor_event_t events[AIOT_MONITOR_EVENT_CAPACITY];
} aiot_monitor_t;

//! Sensible defaults for `num_channels` channels, `window` samples per window.
void aiot_monitor_default_config(aiot_monitor_config_t *cfg, uint8_t num_channels, uint8_t window,
                                 uint32_t sample_period_ms);

//! Check a configuration. Returns AIOT_MONITOR_OK or AIOT_MONITOR_EINVAL.
int aiot_monitor_check_config(const aiot_monitor_config_t *cfg);

//! Why a configuration is refused (names the setting), or NULL when it is valid.
const char *aiot_monitor_config_problem(const aiot_monitor_config_t *cfg);

//! Start a fresh installation (commissioning). `score` must stay valid for the monitor's life.
int aiot_monitor_init(aiot_monitor_t *m, const aiot_monitor_config_t *cfg, aiot_score_fn score, void *ctx);

//! Change knobs live. Structural fields (channels, window, commissioning and calibration
//! lengths, period) must not change: returns AIOT_MONITOR_EINVAL and keeps the old config.
int aiot_monitor_update_config(aiot_monitor_t *m, const aiot_monitor_config_t *cfg);

//! Push one sample. Writes up to AIOT_MONITOR_MAX_OUTPUTS outputs (max_out must be at least
//! that) and returns how many, or a negative status. Duplicate timestamps and samples closer
//! than half a period are counted in rejected_samples and ignored. A sample earlier than the
//! last accepted one is a time reset (an NTP correction, a repeated hour, a restarted
//! clock; also a jump forward by 2^31 ms = 24.8 days or more, which uint32 milliseconds
//! cannot tell from one back): counted in time_resets, reported by AIOT_EVENT_TIME_RESET,
//! and the stream goes on from the new time with this sample. The window in progress is
//! dropped (no window spans the step) and no gap is reported (the step is not missing data).
int aiot_monitor_push(aiot_monitor_t *m, const aiot_sample_t *sample, aiot_monitor_output_t *out, size_t max_out);

//! Push samples until they are all consumed or `out` could overflow. Sets *consumed and
//! returns the number of outputs written (or a negative status). What a PUSH request runs.
int aiot_monitor_push_batch(aiot_monitor_t *m, const aiot_sample_t *samples, size_t n, aiot_monitor_output_t *out,
                            size_t max_out, size_t *consumed);

//! Oldest pending event into *ev; returns 1, or 0 if the ring buffer is empty.
int aiot_monitor_pop_event(aiot_monitor_t *m, aiot_monitor_event_t *ev);

//! aiot_monitor_pop_event, and *confidence (when not NULL) = the confidence of the window whose
//! scoring emitted the event (its aiot_monitor_output_t.confidence, to within 1/508: alerts,
//! and drift events found while scoring), or -1 when no scored window emitted it
//! (commissioning, a NO_DATA window or gap, a time reset, reset_baseline).
int aiot_monitor_pop_event_confidence(aiot_monitor_t *m, aiot_monitor_event_t *ev, float *confidence);

//! Forget the learned profiles and calibration and commission again (events are kept).
void aiot_monitor_reset_baseline(aiot_monitor_t *m);

//! sizeof(aiot_monitor_t) for bindings that treat it as opaque bytes.
size_t aiot_monitor_sizeof(void);
//! sizeof(aiot_monitor_config_t): bindings check their copy of the settings table with it.
size_t aiot_monitor_config_sizeof(void);

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
    uint8_t health;       //!< AIOT_CH_* flags
    uint16_t rejected;    //!< commissioning samples rejected (spikes, outliers, non-finite)
} aiot_monitor_channel_info_t;

//! Channel health flags (aiot_monitor_channel_info_t.health).
#define AIOT_CH_STUCK 0x01u       //!< commissioning samples all equal: a stuck sensor
#define AIOT_CH_CAL_ALERT 0x02u   //!< drift compensation passed its tolerance: needs service
#define AIOT_CH_NOT_COMMISSIONED 0x04u //!< no usable commissioning sample: the channel is not scored
#define AIOT_CH_LOST 0x08u        //!< no data for channel_lost_minutes: left out until it sends again

typedef struct {
    uint8_t phase;             //!< aiot_monitor_phase_t
    uint8_t state;             //!< last reported state
    uint8_t alert;             //!< 1 while an alert is latched
    uint8_t events_pending;
    uint32_t windows;          //!< windows completed
    uint32_t rejected_samples; //!< duplicate or too early timestamps
    uint32_t score_errors;
    uint32_t events_dropped;   //!< overwritten before the host drained them
    uint32_t time_resets;      //!< clock steps back (AIOT_EVENT_TIME_RESET)
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
