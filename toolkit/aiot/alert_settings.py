"""Alert settings: the rule that turns a stream of scores into alerts (:class:`AlertRule`,
the reference target's) and the monitor knobs, as a file: what `aiot tune --out DIR` picks (by cross-validation on
labelled recordings, or on the validation harness), and what `aiot evaluate --alert-settings FILE` runs with.

One file holds one operating point for one kind of target:

    {"aiot_alert_settings": 1, "target": "reference", "window": 32,
     "rule": {AlertRule fields}, "picked_by": {...}}
    {"aiot_alert_settings": 1, "target": "device", "window": 8,
     "knobs": {monitor config fields, "fleet_noise_floor"}, "picked_by": {...}}

"reference" settings drive ``--target reference``; "device" settings drive the monitor C
(``--target host`` and ``--target qemu:BOARD``). ``picked_by`` records how the point was
chosen (FAR budget, validation F1/FAR/MAR, harness); it is copied into report.json as is.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from aiot.data import GAP_FACTOR
from aiot.errors import ToolkitError

FORMAT_VERSION = 1
KINDS = ("reference", "device")


@dataclass
class AlertRule:
    """When a stream of window scores becomes an alert (same for every file).

    An alert starts after ``raise_after`` consecutive windows above the threshold and
    ends after ``clear_after`` consecutive windows below it: one noisy window is not an
    incident, and one quiet window does not end one.

    With ``recover_ratio`` r > 0 an alert also ends, into *recovering*, once ``clear_after``
    consecutive windows sit below r x its peak score: the deviation is on its way back (a
    machine settling after the intervention), which is the end of the incident even while
    the signals are still off normal. Recovering raises again only on ``raise_after``
    windows above r x that peak (the fault came back or grew) and returns to normal after
    ``clear_after`` windows below the threshold.
    """

    # Defaults = the pick of aiot.evaluate.tuning (anomaly-free data + injected faults,
    # no SKAB experiment row involved); see docs/evaluation.md.
    threshold_quantile: float = 0.99  #: of the commissioning windows' scores
    threshold_margin: float = 1.5  #: threshold = margin * quantile
    raise_after: int = 3
    clear_after: int = 5
    confidence_span: int = 8  #: confidence = share of the last N windows above threshold
    smooth: int = 10  #: score = mean of the last `smooth` window scores (noise averages out, a fault stays)
    noise_floor: float = 1.0  #: per-sensor scale >= noise_floor x the fleet's (long-term) spread (fleet_floors)
    #: a window may span timestamp steps up to this many periods (clock slips); longer steps are
    #: gaps. The data's own gap rule by default, as training windows and Series.gap_count use
    max_slip: float = GAP_FACTOR
    #: "mean": mean squared error over the window (all sensors pooled); "max_channel": the
    #: worst sensor's error relative to its own commissioning error (a one-sensor fault is
    #: not diluted by the healthy ones)
    score: str = "mean"
    #: > 0: each sensor's level follows healthy data with this time constant (samples), frozen
    #: while the alert is on or the window is above threshold; 0: levels fixed at commissioning
    track_tau: int = 0
    #: > 0: the installation's levels and noise are fitted on this first fraction of the
    #: commissioning rows and the threshold on the windows of the rest (held out: they carry
    #: the drift of the first minutes after the levels were taken); 0: both on all rows
    calib_split: float = 0.0
    #: > 0: an alert whose score fell below this fraction of its peak is *recovering* (no
    #: alert; raises again only above the same level); 0: off
    recover_ratio: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AlertSettings:
    target: str  #: "reference" or "device"
    window: int
    rule: AlertRule | None = None  #: target "reference"
    knobs: dict | None = None  #: target "device"
    picked_by: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        doc = {"aiot_alert_settings": FORMAT_VERSION, "target": self.target, "window": self.window}
        if self.target == "reference":
            doc["rule"] = self.rule.to_json()
        else:
            doc["knobs"] = dict(self.knobs)
        doc["picked_by"] = self.picked_by
        return doc

    def fits(self, target: str) -> bool:
        """Whether these settings drive ``target`` (reference, host, qemu:BOARD)."""
        return (target == "reference") == (self.target == "reference")

    def window_for(self, source: Path, window: int | None) -> int:
        """The window these settings run at: theirs; another ``window`` asked for is an error."""
        if window is not None and window != self.window:
            raise ToolkitError(f"{source}: picked at window {self.window}, but --window {window} given",
                               hint="leave --window out (the file's window is used) or pick settings at that window")
        return self.window

    def require_model(self, source: Path, per_file: bool, hint: str | None = None) -> None:
        """Settings picked with one kind of model (fleet, or one per installation) run only
        with that kind."""
        kind = self.picked_by.get("model", "fleet")
        if kind != ("per-file" if per_file else "fleet"):
            raise ToolkitError(
                f"{source}: picked with {'one model per file' if kind == 'per-file' else 'the fleet model'}, "
                f"but this run uses {'one model per file' if per_file else 'the fleet model'}",
                hint=hint or "per-file picks run with --per-file (or on data without a fleet recording), fleet "
                             "picks with a fleet model",
            )


def save(path: Path, settings: AlertSettings) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings.to_json(), indent=2) + "\n")
    return path


def _bad(path: Path, what: str, hint: str | None = None) -> ToolkitError:
    return ToolkitError(f"{path}: {what}", hint=hint or "write it with `aiot tune --data NORMAL.csv --out DIR`")


def load(path: Path) -> AlertSettings:
    """Read and check an alert-settings file; every problem names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{path}: no such alert-settings file",
                           hint="give the JSON that `aiot tune --data NORMAL.csv --out DIR` wrote")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"not JSON ({e})") from None
    if not isinstance(doc, dict) or "aiot_alert_settings" not in doc:
        raise _bad(path, "not an alert-settings file (no 'aiot_alert_settings' version field)")
    if doc["aiot_alert_settings"] != FORMAT_VERSION:
        raise _bad(path, f"alert-settings version {doc['aiot_alert_settings']!r}; this toolkit reads {FORMAT_VERSION}",
                   hint="re-run the tuning with this toolkit version")
    target = doc.get("target")
    if target not in KINDS:
        raise _bad(path, f"'target' is {target!r}, expected one of {', '.join(KINDS)}")
    window = doc.get("window")
    if not isinstance(window, int) or isinstance(window, bool) or not 2 <= window <= 256:
        raise _bad(path, f"'window' is {window!r}, expected a whole number of samples in 2..256")
    picked_by = doc.get("picked_by", {})
    if not isinstance(picked_by, dict):
        raise _bad(path, "'picked_by' is not an object")
    if target == "reference":
        return AlertSettings(target, window, rule=_rule(path, doc.get("rule")), picked_by=picked_by)
    return AlertSettings(target, window, knobs=_knobs(path, doc.get("knobs")), picked_by=picked_by)


def _rule(path: Path, raw) -> AlertRule:
    if not isinstance(raw, dict):
        raise _bad(path, "target 'reference' needs a 'rule' object (AlertRule fields)")
    fields = {f.name: f for f in dataclasses.fields(AlertRule)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise _bad(path, f"unknown rule field(s) {', '.join(unknown)}", hint="known fields: " + ", ".join(fields))
    default = AlertRule()
    for name, value in raw.items():
        want = type(getattr(default, name))
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if isinstance(value, bool) or not ok:
            raise _bad(path, f"rule field {name!r} is {value!r}, expected a {want.__name__}")
    rule = AlertRule(**raw)
    if rule.raise_after < 1 or rule.clear_after < 1 or rule.smooth < 1 or rule.threshold_margin <= 0:
        raise _bad(path, "rule needs raise_after, clear_after, smooth >= 1 and threshold_margin > 0")
    if not 0.0 < rule.threshold_quantile <= 1.0 or not 0.0 <= rule.recover_ratio < 1.0:
        raise _bad(path, "rule needs 0 < threshold_quantile <= 1 and 0 <= recover_ratio < 1")
    return rule


def _knobs(path: Path, raw) -> dict:
    """The device knobs of a settings file, each checked against its range (the monitor's,
    :func:`aiot.monitor.check_knob`; ``fleet_noise_floor`` >= 0; ``fleet_pca_variance`` in [0, 1)). An empty object is an
    error: the monitor would run on the bare C defaults (alert_margin 2.5 and no per-sensor
    noise floor), a point no tuning picked and far from the validated one, while the file
    looks like it holds a pick."""
    import math

    from aiot.monitor import KNOB_ORDER_RULES, Config, check_knob
    from aiot.installation import FLOOR_KNOB, PCA_KNOB

    if not isinstance(raw, dict):
        raise _bad(path, "target 'device' needs a 'knobs' object (monitor config fields)")
    if not raw:
        raise _bad(path, "'knobs' is empty: the monitor would run on the C defaults alone (alert_margin 2.5, no "
                         "fleet_noise_floor), which no tuning picked",
                   hint="leave --alert-settings out to run with the validated knobs, or give the knobs to run with "
                        "(as `aiot tune --data NORMAL.csv --out DIR` writes them)")
    known = [name for name, _ in Config._fields_ if name != "reserved"] + [FLOOR_KNOB, PCA_KNOB]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise _bad(path, f"unknown monitor knob(s) {', '.join(unknown)}", hint="known knobs: " + ", ".join(known))
    for name, value in raw.items():
        if name == FLOOR_KNOB:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise _bad(path, f"monitor knob {name!r} is {value!r}, expected one number >= 0 (0: no floor; "
                                 f"k: each sensor's noise at least k x the fleet's spread of it)")
            continue
        if name == PCA_KNOB:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise _bad(path, f"monitor knob {name!r} is {value!r}, expected one number in [0, 1) (0: the fleet "
                                 f"autoencoder; v: the linear model of the window means keeping v of their variance)")
            continue
        try:
            check_knob(name, value)
        except ToolkitError as e:
            raise _bad(path, f"invalid monitor configuration: {e.message}", hint="see the knob ranges in firmware/include/aiot/monitor.h") from None
    for small, large in KNOB_ORDER_RULES:
        if small in raw and large in raw and not raw[small] <= raw[large]:
            raise _bad(path, f"invalid monitor configuration: monitor knob {small!r} is {raw[small]!r}, more than {large!r} {raw[large]!r}; "
                             f"{small} must be at most {large}")
    return dict(raw)
