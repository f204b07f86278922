"""Incident-by-incident evaluation of the device monitor on the seeded scenario suite,
side by side with the classic static-threshold detector.

A "device" is anything with ``push(timestamps_ms, values) -> outputs`` (OUTPUT_DTYPE
records); the host build (SimulatedDevice) is one, a board behind the serial protocol
can be another. The fleet model is trained once on healthy synthetic installations;
each scenario only commissions its own noise profiles and calibration."""

from __future__ import annotations

import hashlib
import os
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from aiot import monitor as mon
from aiot.data import scenarios as sc
from aiot.errors import ToolkitError
from aiot.installation import hash_training_code
from aiot.paths import cache_dir, private_build_dir, publish_cache_dir

GRACE_MS = 30 * 60 * 1000  # an alert may outlive its incident by the clear hysteresis
REMOUNT_INFLUENCE_MS = 2 * sc.HOUR_MS


class Device(Protocol):
    name: str

    def push(self, timestamps_ms: np.ndarray, values: np.ndarray) -> np.ndarray: ...


def device_config(**knobs: float | int) -> mon.Config:
    """The monitor configuration the suite runs with (4 sensors, 16 x 10 s windows)."""
    return mon.default_config(
        len(sc.CHANNELS),
        sc.WINDOW,
        sc.SAMPLE_PERIOD_MS,
        commission_samples=int(sc.COMMISSION_HOURS * sc.HOUR_MS // sc.SAMPLE_PERIOD_MS),
        **knobs,
    )


# ----------------------------------------------------------------- the fleet model
def fleet_pca(config: mon.Config, streams: int = 8, components: int = 2) -> mon.PcaScorer:
    """PCA autoencoder trained on device-normalized windows of healthy installations
    (cached in the build directory: the suite is deterministic)."""
    key = hashlib.sha256(
        repr((sorted(config.as_dict().items()), streams, components, Path(sc.__file__).read_bytes())).encode()
    ).hexdigest()[:12]
    cache = cache_dir() / "scenarios" / f"fleet-pca-{key}.npz"
    if cache.is_file():
        z = np.load(cache)
        return mon.PcaScorer(z["mean"], z["components"])
    windows = [mon.extract_windows(config, s.timestamps_ms, s.values) for s in sc.normal_streams(streams)]
    scorer = mon.PcaScorer.fit(np.concatenate(windows), k=components)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # parallel runs (pytest -n, several evaluations) may fit the same model: each writes its
    # own file and renames it into place, so a reader never sees half of one
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mean=scorer.mean, components=scorer.components)
    os.replace(tmp, cache)
    return scorer


def fleet_int8(config: mon.Config, streams: int = 8, components: int = 2) -> Path:
    """The same fleet model as the device runs it: the PCA autoencoder written as a linear
    Keras autoencoder (64 -> k -> 64), full-int8 via aiot.model.quantize, C via aiot.codegen.
    Returns DIR with DIR/model.tflite and DIR/c/model.c (cached)."""
    pca = fleet_pca(config, streams, components)
    key = hashlib.sha256(pca.mean.tobytes() + pca.components.tobytes())
    hash_training_code(key)  # the int8 conversion and the code generator shape it
    out = cache_dir() / "scenarios" / f"fleet-int8-{key.hexdigest()[:12]}"
    if (out / "c" / "model.c").is_file():
        return out
    from aiot.quiet import import_keras

    try:
        keras = import_keras()
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ToolkitError("the int8 fleet model needs TensorFlow/Keras", hint="pip install -e '.[ml]' (make setup)") from e
    from aiot.codegen import generate
    from aiot.progress import step
    from aiot.model.quantize import convert_int8

    n = pca.mean.size
    with step(f"int8 fleet model (linear autoencoder {n}->{components}->{n}), cached as {out.name}"):
        model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(components), keras.layers.Dense(n)])
        enc, dec = model.layers
        enc.set_weights([pca.components.T, -(pca.mean @ pca.components.T)])
        dec.set_weights([pca.components, pca.mean])
        rep = np.concatenate([mon.extract_windows(config, s.timestamps_ms, s.values).reshape(-1, n)
                              for s in sc.normal_streams(2, seed=9_000)])
        tfl = convert_int8(model, rep.astype(np.float32))

        tmp = private_build_dir(out)  # private: parallel runs may build it too
        tmp.mkdir(parents=True)
        (tmp / "model.tflite").write_bytes(tfl)
        generate(tfl, tmp / "c", name="scenario_fleet")
        publish_cache_dir(tmp, out, "c/model.c")
    return out


def int8_library(model_dir: Path):
    """Host build of monitor + engine + generated model + engine adapter."""
    from aiot.codegen import engine_sources

    c_dir = Path(model_dir) / "c"
    return mon.library([c_dir / "model.c", *engine_sources(), mon.engine_adapter_source()],
                       include_dirs=[c_dir], name="aiot_scenario_monitor")


class QemuDevice:
    """The firmware (monitor + protocol + int8 fleet model) in QEMU, over the serial
    protocol; one fresh boot per scenario so every installation commissions from zero."""

    def __init__(self, model_dir: Path, config: mon.Config, board: str = "mps2-an386"):
        self.name = f"qemu:{board}"
        self.board = board
        self.config = config
        from aiot.evaluate.monitor_device import firmware_elf

        self.elf = firmware_elf(Path(model_dir), board, build=True)

    def push(self, timestamps_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        from aiot.target.boards import get_board
        from aiot.device.hil import open_device

        with open_device(get_board(self.board), self.elf) as dev:
            dev.configure(self.config, fresh=True)
            return dev.push(timestamps_ms, values)


# ----------------------------------------------------------------- static threshold baseline
class StaticThresholdDevice:
    """The classic IoT detector: per-sensor limits mean +- k sigma learned on the same
    commissioning hour, checked on window means, with the same k-of-n persistence.
    Missing data is simply skipped (it has no notion of NO_DATA)."""

    name = "static-threshold"

    def __init__(self, config: mon.Config, sigmas: float = 3.0):
        self.cfg = config
        self.sigmas = sigmas

    def push(self, timestamps_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        W, N = self.cfg.window, len(values)
        ncom = int(self.cfg.commission_samples)
        mu = np.nanmean(values[:ncom], axis=0)
        sd = np.nanstd(values[:ncom], axis=0)
        n_win = N // W
        out = np.zeros(n_win, dtype=mon.OUTPUT_DTYPE)
        hist: list[bool] = []
        for w in range(n_win):
            blk = values[w * W : (w + 1) * W]
            o = out[w]
            o["t_start_ms"], o["t_end_ms"] = timestamps_ms[w * W], timestamps_ms[(w + 1) * W - 1]
            o["quality"] = 1.0
            if (w + 1) * W <= ncom:
                o["state"] = mon.RECALIBRATING
                continue
            present = np.isfinite(blk)
            counts = present.sum(axis=0)
            m = np.where(counts > 0, np.where(present, blk, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)
            dev = np.abs(m - mu) / np.maximum(sd, 1e-9)
            vote = bool(np.nanmax(dev, initial=0.0) > self.sigmas) if np.isfinite(dev).any() else False
            hist = (hist + [vote])[-self.cfg.persist_n :]
            o["score"] = float(np.nanmax(dev, initial=0.0)) / self.sigmas
            o["state"] = mon.ANOMALY if sum(hist) >= self.cfg.persist_k else mon.NORMAL
        return out


# ----------------------------------------------------------------- scoring the outputs
@dataclass
class ScenarioResult:
    name: str
    detector: str
    incidents: list[dict] = field(default_factory=list)  # kind, start, detected, delay_min
    false_alerts: int = 0  # alert episodes outside every incident (+ grace)
    false_alerts_nuisance: int = 0  # ... of which during a nuisance period
    false_alert_windows: int = 0
    long_gaps: int = 0
    long_gaps_no_data: int = 0
    states: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> int:
        return len(self.incidents)

    @property
    def detected(self) -> int:
        return sum(1 for i in self.incidents if i["detected"])


def _nuisance_windows(s: sc.Scenario) -> list[tuple[int, int]]:
    spans = []
    for n in s.nuisances:
        if n.kind == "remount":
            spans.append((n.start_ms, n.start_ms + REMOUNT_INFLUENCE_MS))
        else:
            spans.append((n.start_ms, n.end_ms))
    return spans


def score_outputs(s: sc.Scenario, outputs: np.ndarray, detector: str, window_ms: int) -> ScenarioResult:
    """Compare a device's outputs with the scenario labels."""
    r = ScenarioResult(s.name, detector)
    t0, t1, st = outputs["t_start_ms"].astype(np.int64), outputs["t_end_ms"].astype(np.int64), outputs["state"]
    # Device timestamps are 32-bit; the suite stays far below the wrap, but be explicit.
    base = int(s.timestamps_ms[0]) & ~0xFFFFFFFF
    t0, t1 = t0 + base, t1 + base
    r.states = {mon.STATES[k]: int(np.sum(st == k)) for k in range(len(mon.STATES)) if np.any(st == k)}
    anomalous = st == mon.ANOMALY
    for inc in s.incidents:
        hit = np.flatnonzero(anomalous & (t1 >= inc.start_ms) & (t0 <= inc.end_ms + GRACE_MS))
        first = int(t1[hit[0]]) if len(hit) else None
        r.incidents.append(
            {
                "kind": inc.kind,
                "start_h": round(inc.start_ms / sc.HOUR_MS, 2),
                "detected": first is not None,
                "delay_min": None if first is None else round(max(first - inc.start_ms, 0) / 60000, 1),
            }
        )
    # Alert episodes: runs of ANOMALY, NO_DATA in between does not end them.
    episodes: list[list[int]] = []
    open_ep = False
    for i, state in enumerate(st):
        if state == mon.ANOMALY:
            if open_ep:
                episodes[-1].append(i)
            else:
                episodes.append([i])
                open_ep = True
        elif state != mon.NO_DATA:
            open_ep = False
    nuis = _nuisance_windows(s)
    for ep in episodes:
        a, b = int(t0[ep[0]]), int(t1[ep[-1]])
        if any(inc.overlaps(a, b) or (inc.end_ms <= a <= inc.end_ms + GRACE_MS) for inc in s.incidents):
            continue
        r.false_alerts += 1
        r.false_alert_windows += len(ep)
        if any(x <= b and a <= y for x, y in nuis):
            r.false_alerts_nuisance += 1
    for g in s.nuisances:
        if g.kind not in ("gap", "outage") or g.end_ms - g.start_ms + s.sample_period_ms <= window_ms:
            continue
        r.long_gaps += 1
        overlap = (t1 >= g.start_ms) & (t0 <= g.end_ms)
        inside = (t0 >= g.start_ms) & (t1 <= g.end_ms)
        if np.any(overlap & (st == mon.NO_DATA)) and np.all(st[inside] == mon.NO_DATA):
            r.long_gaps_no_data += 1
    return r


# ----------------------------------------------------------------- the suite
def totals(results: Sequence[ScenarioResult]) -> dict:
    delays = [i["delay_min"] for r in results for i in r.incidents if i["detected"]]
    by_kind: dict[str, list] = {}
    for r in results:
        for i in r.incidents:
            by_kind.setdefault(i["kind"], []).append(i)
    return {
        "by_fault": {
            k: {"detected": sum(i["detected"] for i in v), "faults": len(v),
                "median_delay_min": float(np.median([i["delay_min"] for i in v if i["detected"]]))
                if any(i["detected"] for i in v) else None}
            for k, v in sorted(by_kind.items())
        },
        "scenarios": len(results),
        "faults": sum(r.faults for r in results),
        "faults_detected": sum(r.detected for r in results),
        "median_delay_min": float(np.median(delays)) if delays else None,
        "false_alerts": sum(r.false_alerts for r in results),
        "false_alerts_during_nuisances": sum(r.false_alerts_nuisance for r in results),
        "false_alert_windows": sum(r.false_alert_windows for r in results),
        "long_gaps": sum(r.long_gaps for r in results),
        "long_gaps_reported_no_data": sum(r.long_gaps_no_data for r in results),
    }


def evaluate(
    scenarios: Sequence[sc.Scenario],
    make_devices: Callable[[], Sequence[Device]],
    progress: Callable[[], None] | None = None,
) -> dict:
    """Run every scenario through fresh devices; returns the JSON-able report."""
    per: dict[str, list[ScenarioResult]] = {}
    window_ms = sc.WINDOW * sc.SAMPLE_PERIOD_MS
    for s in scenarios:
        for dev in make_devices():
            out = dev.push(s.timestamps_ms, s.values)
            per.setdefault(dev.name, []).append(score_outputs(s, out, dev.name, window_ms))
        if progress:
            progress()
    return {
        "detectors": {
            name: {"total": totals(rs), "scenarios": [{**asdict(r), "faults": r.faults, "detected": r.detected} for r in rs]}
            for name, rs in per.items()
        }
    }


def host_devices(config: mon.Config, scorer: mon.Scorer) -> Callable[[], list[Device]]:
    def make() -> list[Device]:
        return [mon.SimulatedDevice(config, scorer), StaticThresholdDevice(config)]

    return make


def load_scenarios(data_dir: Path) -> list[sc.Scenario]:
    """Scenario CSVs written by ``aiot scenarios generate`` (possibly edited) from a folder.
    The fleet model knows this machine: four sensors in the generator's order, 10 s."""
    data_dir = Path(data_dir)
    files = sorted(data_dir.glob("*.csv")) if data_dir.is_dir() else []
    if not files:
        raise ToolkitError(f"{data_dir}: no scenario .csv files", hint="write some with: aiot scenarios generate --out DIR")
    out = []
    for f in files:
        s = sc.read_csv(f)
        if tuple(s.channels) != sc.CHANNELS:
            raise ToolkitError(f"{f}: columns {', '.join(s.channels)}; the scenario fleet model expects "
                               f"{', '.join(sc.CHANNELS)} in that order",
                               hint="evaluate other machines with `aiot evaluate`, which trains on your data")
        if s.sample_period_ms != sc.SAMPLE_PERIOD_MS:
            raise ToolkitError(f"{f}: samples every {s.sample_period_ms} ms, the suite runs at {sc.SAMPLE_PERIOD_MS} ms")
        out.append(s)
    return out


def run_suite(count: int = 20, seed: int = sc.SUITE_SEED, progress: Callable[[], None] | None = None,
              model: str = "float", qemu: int = 0, board: str = "mps2-an386",
              scenarios: Sequence[sc.Scenario] | None = None, knobs: dict | None = None) -> dict:
    """The acceptance run: fixed seeded suite through the host build of the device code
    with the fleet model, float ("float": the PCA autoencoder called from Python) or as the
    device runs it ("int8": generated engine + model, all in C). ``qemu`` > 0 also runs the
    first ``qemu`` scenarios in QEMU on ``board`` and compares the states window by window.
    ``knobs``: monitor settings over the header defaults (the cross-validation's scenario
    gate, :class:`ScenarioGate`); the fleet model is fitted under the same configuration."""
    if model not in ("float", "int8"):
        raise ToolkitError(f"unknown model {model!r}", hint="use float or int8")
    if qemu and model != "int8":
        raise ToolkitError("the QEMU comparison needs the int8 model (the device runs the int8 engine)",
                           hint="add --model int8")
    cfg = device_config(**(knobs or {}))
    scenarios = list(scenarios) if scenarios is not None else sc.suite(count, seed)
    if model == "float":
        scorer = fleet_pca(cfg)
        make = host_devices(cfg, scorer)
        label = "fleet PCA autoencoder 64->2->64 (float, Python scorer, host build of the monitor)"
    else:
        model_dir = fleet_int8(cfg)
        lib = int8_library(model_dir)
        make = lambda: [mon.SimulatedDevice(cfg, lib.aiot_monitor_engine_score, lib), StaticThresholdDevice(cfg)]  # noqa: E731
        label = "fleet linear autoencoder 64->2->64, full int8, generated C engine (host build)"
    report = evaluate(scenarios, make, progress)
    report["model"] = label
    report["config"] = cfg.as_dict()
    report["seed"] = seed
    if qemu:
        report["qemu"] = qemu_parity(scenarios[:qemu], QemuDevice(model_dir, cfg, board), lambda: make()[0])
    return report


def qemu_parity(scenarios: Sequence[sc.Scenario], device: Device, make_host: Callable[[], Device]) -> dict:
    """Same samples into a board (QEMU) and a fresh host build: the same states?"""
    rows = []
    for s in scenarios:
        q = device.push(s.timestamps_ms, s.values)
        h = make_host().push(s.timestamps_ms, s.values)
        same_len = len(q) == len(h)
        n = min(len(q), len(h))
        same = int(np.sum((q["state"][:n] == h["state"][:n]) & (q["t_end_ms"][:n] == h["t_end_ms"][:n])))
        rows.append({"name": s.name, "windows_qemu": int(len(q)), "windows_host": int(len(h)),
                     "same_states": same, "identical": bool(same_len and same == n),
                     "max_score_diff": float(np.max(np.abs(q["score"][:n] - h["score"][:n]))) if n else 0.0})
    return {"device": device.name, "scenarios": rows, "all_identical": all(r["identical"] for r in rows)}


def format_report(report: dict) -> str:
    """Side-by-side text table, per scenario then in total."""
    dets = list(report["detectors"])
    lines = []
    head = f"{'scenario':34s}" + "".join(f"| {d[:24]:24s}" for d in dets)
    lines.append(head)
    lines.append(f"{'':34s}" + "| faults  false  gaps->NO_DATA " * len(dets))
    lines.append("-" * len(lines[-1]))
    n = len(report["detectors"][dets[0]]["scenarios"])
    for i in range(n):
        row = f"{report['detectors'][dets[0]]['scenarios'][i]['name'][:33]:34s}"
        for d in dets:
            r = report["detectors"][d]["scenarios"][i]
            row += f"| {r['detected']}/{r['faults']:<5d} {r['false_alerts']:<6d} {r['long_gaps_no_data']}/{r['long_gaps']:<10d}"
        lines.append(row)
    lines.append("")
    for d in dets:
        t = report["detectors"][d]["total"]
        lines.append(
            f"{d}: faults detected {t['faults_detected']}/{t['faults']} (median delay {t['median_delay_min']} min), "
            f"false alerts {t['false_alerts']} ({t['false_alerts_during_nuisances']} during nuisances), "
            f"gaps > window reported NO_DATA {t['long_gaps_reported_no_data']}/{t['long_gaps']}"
        )
        lines.append("    " + ", ".join(f"{k} {v['detected']}/{v['faults']} (median {v['median_delay_min']} min)"
                                      for k, v in t["by_fault"].items()))
    if "qemu" in report:
        q = report["qemu"]
        for r in q["scenarios"]:
            lines.append(f"{q['device']} vs host, {r['name']}: {r['same_states']}/{r['windows_host']} windows with the "
                         f"same state ({'identical' if r['identical'] else 'DIFFERENT'}), "
                         f"max score difference {r['max_score_diff']:.2g}")
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scenario_report.json"
    path.write_text(json.dumps(report, indent=1))
    return path


def acceptance_failures(report: dict, detector: str = "host") -> list[str]:
    """What keeps the device monitor from passing acceptance (empty list = passes)."""
    if detector not in report["detectors"]:
        raise ToolkitError(f"no results for detector {detector!r}")
    t = report["detectors"][detector]["total"]
    bad = []
    if t["faults_detected"] != t["faults"]:
        bad.append(f"{t['faults'] - t['faults_detected']} fault(s) missed")
    if t["false_alerts"]:
        bad.append(f"{t['false_alerts']} false alert(s)")
    if t["long_gaps_reported_no_data"] != t["long_gaps"]:
        bad.append(f"{t['long_gaps'] - t['long_gaps_reported_no_data']} long gap(s) not reported as NO_DATA")
    return bad


# ----------------------------------------------------------------- the scenario gate of a tuning
#: Settings that describe the suite's own installation (4 sensors, 10 s samples, 16-sample
#: windows, one hour of commissioning): a tuned setting of another installation's shape
#: (its window, its commissioning split) says nothing about them, so the suite keeps its own.
SUITE_SHAPE = ("num_channels", "window", "sample_period_ms", "commission_samples", "calibration_windows")


def scenario_knobs(knobs: dict) -> tuple[dict, dict]:
    """``knobs`` split into (the monitor settings the seeded suite runs with, the rest).

    They apply: every scalar setting of monitor.h's table except the installation's shape
    (:data:`SUITE_SHAPE`), so alert_margin, clear_margin, persist_k/n, recover_ratio,
    score_average, level_windows, clear_band, spread_score and any setting added to the
    table later; a per-sensor setting given as one value for every sensor. They do not: the
    evaluation's ``fleet_noise_floor`` (floors from the fleet recording of the data being
    tuned on, not the suite's fleet), per-sensor values given by sensor name or per channel
    (other sensors than the suite's), and anything that is not a monitor setting."""
    scalar = {s.name for s in mon.settings() if not s.per_channel} - set(SUITE_SHAPE)
    per_channel = {s.name for s in mon.settings() if s.per_channel}
    applied, other = {}, {}
    for k, v in knobs.items():
        ok = k in scalar or (k in per_channel and np.ndim(v) == 0 and not isinstance(v, dict))
        (applied if ok else other)[k] = v
    return applied, other


class ScenarioGate:
    """Whether a tuned setting keeps the seeded suite's acceptance (every fault detected, no
    false alert, every long gap NO_DATA: :func:`acceptance_failures`) when the suite runs
    with the setting's monitor knobs (:func:`scenario_knobs`) over the header defaults.

    A constraint from synthetic data only, never from the rows a tuning scores, so a
    cross-validation may apply it inside every fold. ``failures(knobs)`` runs the suite once
    per combination of applicable knobs (memoized: one run is a few seconds); ``suite``
    (knobs -> acceptance failures) replaces the int8 and float host-build runs (tests)."""

    def __init__(self, count: int = 20, seed: int = sc.SUITE_SEED, suite: Callable[[dict], list[str]] | None = None):
        self.count, self.seed = count, seed
        self._suite = suite or self._both_models
        self._memo: dict[str, list[str]] = {}

    def _both_models(self, knobs: dict) -> list[str]:
        """The suite's acceptance with the int8 model the device runs and with the float model
        (both are acceptance runs: tests/test_scenarios.py); the residual term makes the score
        depend on the model, so a setting must pass with each."""
        out = acceptance_failures(run_suite(self.count, self.seed, model="int8", knobs=knobs))
        return out + [f"float model: {f}" for f in acceptance_failures(run_suite(self.count, self.seed, model="float",
                                                                                 knobs=knobs))]

    @staticmethod
    def key(knobs: dict) -> str:
        return json.dumps(scenario_knobs(knobs)[0], sort_keys=True)

    @property
    def runs(self) -> int:
        """Suite runs so far (one per distinct combination of applicable knobs)."""
        return len(self._memo)

    def failures(self, knobs: dict) -> list[str]:
        """What keeps ``knobs`` from the suite's acceptance, e.g. ["8 false alert(s)"]; empty: passes."""
        key = self.key(knobs)
        if key not in self._memo:
            applied = json.loads(key)
            try:
                self._memo[key] = list(self._suite(applied))
            except ToolkitError as e:  # a setting the suite's monitor refuses cannot ship either
                self._memo[key] = [f"refused on the suite's installation: {e.message}"]
            from aiot.progress import note

            # a fold may walk past dozens of settings: say what each suite run found
            note(f"scenario gate, suite run {self.runs}: {key}: {'; '.join(self._memo[key]) or 'passes'}")
        return self._memo[key]

    def describe(self) -> dict:
        return {"suite": f"{self.count} seeded scenarios (seed {self.seed}), int8 and float fleet models, host build "
                         "of the monitor", "accepts": "every fault detected, 0 false alerts, every gap longer than a window "
                                               "reported NO_DATA",
                "applies": "every monitor.h setting except the installation's shape (" + ", ".join(SUITE_SHAPE)
                           + ") and per-sensor values given by sensor name; not fleet_noise_floor",
                "suite_runs": self.runs}
