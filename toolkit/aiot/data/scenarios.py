"""Labelled synthetic streams of a pump + motor with four sensors, with the nuisances real
installations have (calibration drift, remount steps, gaps under high load, sensors of
different noise) and real faults (bearing wear, cavitation, sudden imbalance).

Incidents (faults) and nuisances are labelled separately, as intervals and as CSV columns.
Every scenario starts with a one-hour commissioning run through the operating range (how
a product is installed), so the first hour is always healthy and nuisance-free."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aiot.errors import ToolkitError

CHANNELS = ("vibration_mm_s", "bearing_temp_c", "motor_current_a", "discharge_pressure_bar")
VIB, TEMP, CURRENT, PRESSURE = range(4)
SAMPLE_PERIOD_MS = 10_000
WINDOW = 16
COMMISSION_HOURS = 1.0
LEARNING_HOURS = 3.5  # commissioning + calibration, with margin: nothing happens before
FAULTS = ("bearing_wear", "cavitation", "imbalance")
NUISANCES = ("drift", "remount", "gap", "outage")
SUITE_SEED = 20_240
HOUR_MS = 3_600_000


@dataclass
class Interval:
    kind: str
    start_ms: int
    end_ms: int
    channels: tuple[int, ...] = ()
    detail: str = ""

    def overlaps(self, t0: int, t1: int) -> bool:
        return t0 <= self.end_ms and t1 >= self.start_ms


@dataclass
class Scenario:
    name: str
    seed: int
    timestamps_ms: np.ndarray  # int64, rows removed where the logger was down
    values: np.ndarray  # (N, 4) float32, NaN = sample missing
    incidents: list[Interval] = field(default_factory=list)
    nuisances: list[Interval] = field(default_factory=list)
    channels: tuple[str, ...] = CHANNELS
    sample_period_ms: int = SAMPLE_PERIOD_MS

    @property
    def duration_ms(self) -> int:
        return int(self.timestamps_ms[-1] - self.timestamps_ms[0]) + self.sample_period_ms

    def labels(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "channels": list(self.channels),
            "sample_period_ms": self.sample_period_ms,
            "incidents": [asdict(i) for i in self.incidents],
            "nuisances": [asdict(i) for i in self.nuisances],
        }


# ----------------------------------------------------------------- the machine
def _lag(x: np.ndarray, tau_samples: float) -> np.ndarray:
    a = 1.0 / max(tau_samples, 1.0)
    y = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):
        acc += a * (v - acc)
        y[i] = acc
    return y


def _load_profile(rng: np.random.Generator, n: int, per_hour: int) -> np.ndarray:
    """Operating points held 20-90 min, smooth transitions; the first hour sweeps the range."""
    sweep = np.repeat([0.45, 0.6, 0.75, 0.9, 1.0, 0.8, 0.55], per_hour // 7 + 1)[:per_hour]
    target = np.empty(n)
    target[:per_hour] = sweep
    i = per_hour
    while i < n:
        hold = int(rng.uniform(20, 90) / 60 * per_hour)
        target[i : i + hold] = rng.uniform(0.45, 1.0)
        i += hold
    load = _lag(target, per_hour / 20)  # ~3 min
    jitter = _lag(rng.normal(0, 0.02, n), 3) * 3
    return np.clip(load + jitter, 0.3, 1.05)


def _machine(rng: np.random.Generator, n: int, per_hour: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Healthy readings (N, 4) and the load; each installation gets its own gains and noise."""
    t_h = np.arange(n) / per_hour
    load = _load_profile(rng, n, per_hour)
    g = lambda: rng.uniform(0.9, 1.1)  # noqa: E731 - installation spread
    noise = {
        "vib": 0.05 * rng.uniform(0.5, 2.0),
        "temp": 0.12 * rng.uniform(0.5, 2.0),
        "current": 0.10 * rng.uniform(0.5, 2.0),
        "pressure": 0.03 * rng.uniform(0.5, 2.0),
    }
    ambient = 22 + 3 * np.sin(2 * np.pi * (t_h / 24 + rng.uniform()))
    vib_level = (0.8 * g() + 1.4 * g() * load) * (1 + _lag(rng.normal(0, 0.04, n), 2))
    temp = _lag(ambient + 12 * g() + 22 * g() * load, per_hour / 4)  # ~15 min thermal lag
    current = 6 * g() + 14 * g() * load
    pressure = 1.0 * g() + 4.0 * g() * load**2
    x = np.stack([vib_level, temp, current, pressure], axis=1)
    sig = np.array([noise["vib"], noise["temp"], noise["current"], noise["pressure"]])
    x = x + rng.normal(0, 1, x.shape) * sig
    return x, load, {"vib_level": vib_level, "noise": sig}


# ----------------------------------------------------------------- faults
def _bearing_wear(rng, x, t_h, t0, parts, incidents, ms):
    dur = rng.uniform(4, 6)
    tau = dur / 3
    g = np.clip((np.exp((t_h - t0) / tau) - 1) / (np.exp(dur / tau) - 1), 0, None)
    g = np.minimum(g, 1.0) * (t_h >= t0)
    x[:, VIB] += 1.6 * g * (1 + rng.normal(0, 0.15 * g + 1e-9, len(g)))
    x[:, TEMP] += 12 * g
    x[:, CURRENT] += 0.6 * g
    # Wear does not heal: the incident lasts until the end of the stream.
    incidents.append(Interval("bearing_wear", ms(t0), ms(t_h[-1]), (VIB, TEMP), f"{dur:.1f} h to full"))


def _cavitation(rng, x, t_h, t0, parts, incidents, ms):
    dur = rng.uniform(1.0, 2.0)
    on = np.clip((t_h - t0) / (10 / 60), 0, 1) * (t_h < t0 + dur)
    n = len(t_h)
    x[:, PRESSURE] -= on * (0.12 * x[:, PRESSURE] + rng.normal(0, 0.25, n))
    x[:, VIB] += on * (0.3 + np.abs(rng.normal(0, 0.45, n)))
    x[:, CURRENT] += on * rng.normal(-0.3, 0.4, n)
    incidents.append(Interval("cavitation", ms(t0), ms(min(t0 + dur, t_h[-1])), (PRESSURE, VIB, CURRENT)))


def _imbalance(rng, x, t_h, t0, parts, incidents, ms):
    dur = rng.uniform(2.0, 4.0)
    on = (t_h >= t0) & (t_h < t0 + dur)
    factor = rng.uniform(1.3, 1.8)
    x[:, VIB] += on * factor * parts["vib_level"] * (1 + rng.normal(0, 0.1, len(t_h)))
    x[:, CURRENT] += on * 0.4
    incidents.append(Interval("imbalance", ms(t0), ms(min(t0 + dur, t_h[-1])), (VIB, CURRENT), f"x{1 + factor:.1f}"))


# ----------------------------------------------------------------- nuisances
def _drift(rng, x, t_h, t0, nuisances, ms, channel=None):
    c = channel if channel is not None else int(rng.choice([TEMP, CURRENT, PRESSURE]))
    per_hour = {TEMP: 0.45, CURRENT: 0.2, PRESSURE: 0.06}[c] * rng.uniform(0.7, 1.3)
    x[:, c] += np.clip(t_h - t0, 0, None) * per_hour
    nuisances.append(Interval("drift", ms(t0), ms(t_h[-1]), (c,), f"{per_hour:+.3f} {CHANNELS[c]}/h"))


def _remount(rng, x, t_h, t0, nuisances, ms, parts):
    c = int(rng.choice([VIB, TEMP]))
    after = t_h >= t0
    if c == VIB:  # coupling changes the gain of the accelerometer
        gain = 1 + rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
        x[after, VIB] *= gain
        detail = f"gain x{gain:.2f}"
    else:  # probe moved on the housing: an offset
        off = rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
        x[after, TEMP] += off
        detail = f"offset {off:+.1f} C"
    nuisances.append(Interval("remount", ms(t0), ms(t0) + 1, (c,), detail))


def _gaps(rng, x, keep, load, t_h, nuisances, ms, per_hour, n_gaps):
    """Dropouts when the machine works hardest (radio links and loggers suffer from heat/EMI)."""
    after = int(LEARNING_HOURS * per_hour)
    busy = np.flatnonzero(load[after:] > np.quantile(load[after:], 0.8)) + after
    busy = busy[busy < len(load) - per_hour]  # a gap needs samples after it to be reported
    taken = np.zeros(len(load), bool)  # gaps never overlap: each is reported on its own
    for _ in range(n_gaps):
        free = busy[~taken[busy]]
        if not len(free):
            break
        i = int(rng.choice(free))
        taken[max(i - per_hour // 4, 0) : i + per_hour] = True
        if rng.uniform() < 0.5:
            length = int(rng.uniform(5, 30) / 60 * per_hour)
            c = int(rng.choice([VIB, TEMP, PRESSURE]))
            x[i : i + length, c] = np.nan
            nuisances.append(Interval("gap", ms(t_h[i]), ms(t_h[min(i + length, len(t_h)) - 1]), (c,)))
        else:
            length = int(rng.uniform(5, 40) / 60 * per_hour)
            keep[i : i + length] = False
            nuisances.append(Interval("outage", ms(t_h[i]), ms(t_h[min(i + length, len(t_h)) - 1]), tuple(range(4))))
    # Sporadic single lost samples everywhere.
    lost = rng.uniform(size=x.shape) < 0.002
    lost[: int(COMMISSION_HOURS * per_hour)] = False
    x[lost] = np.nan


# ----------------------------------------------------------------- public API
def generate(
    seed: int,
    *,
    fault: str | None = None,
    drift: bool = False,
    remount: bool = False,
    gaps: int = 2,
    hours: float = 24.0,
    name: str | None = None,
) -> Scenario:
    """One labelled stream. Everything is drawn from ``seed``; faults and nuisances start
    after the learning phase (LEARNING_HOURS)."""
    if fault is not None and fault not in FAULTS:
        raise ToolkitError(f"unknown fault {fault!r}", hint=f"choose one of {', '.join(FAULTS)}")
    shortest = LEARNING_HOURS + (8.5 if fault else 2)
    if hours < shortest:
        raise ToolkitError(f"{hours} h is too short{' for a fault' if fault else ''}",
                           hint=f"use at least {shortest} h")
    rng = np.random.default_rng(seed)
    per_hour = HOUR_MS // SAMPLE_PERIOD_MS
    n = int(hours * per_hour)
    t_h = np.arange(n) / per_hour
    ms = lambda h: int(round(h * HOUR_MS / SAMPLE_PERIOD_MS)) * SAMPLE_PERIOD_MS  # noqa: E731
    x, load, parts = _machine(rng, n, per_hour)
    incidents: list[Interval] = []
    nuisances: list[Interval] = []
    keep = np.ones(n, bool)
    fault_at = rng.uniform(LEARNING_HOURS + 2.5, hours - 6) if fault else None
    if drift:
        _drift(rng, x, t_h, rng.uniform(LEARNING_HOURS + 0.5, LEARNING_HOURS + 6), nuisances, ms)
    if remount:
        t = rng.uniform(LEARNING_HOURS + 1, hours - 2)
        if fault_at is not None and abs(t - fault_at) < 1.5:
            t = fault_at - 2 if fault_at - 2 > LEARNING_HOURS + 0.5 else fault_at + 7
        t = min(t, hours - 1)
        _remount(rng, x, t_h, t, nuisances, ms, parts)
    if fault == "bearing_wear":
        _bearing_wear(rng, x, t_h, fault_at, parts, incidents, ms)
    elif fault == "cavitation":
        _cavitation(rng, x, t_h, fault_at, parts, incidents, ms)
    elif fault == "imbalance":
        _imbalance(rng, x, t_h, fault_at, parts, incidents, ms)
    _gaps(rng, x, keep, load, t_h, nuisances, ms, per_hour, gaps)
    ts = (np.arange(n, dtype=np.int64) * SAMPLE_PERIOD_MS)[keep]
    label = name or f"s{seed}-{fault or 'healthy'}{'-drift' if drift else ''}{'-remount' if remount else ''}"
    return Scenario(label, seed, ts, x[keep].astype(np.float32), incidents, nuisances)


def suite(count: int = 20, seed: int = SUITE_SEED, hours: float = 24.0) -> list[Scenario]:
    """The fixed evaluation suite: faults cycle (none, bearing wear, cavitation, imbalance),
    drift and remount nuisances are mixed in, every scenario has gaps under load."""
    if count < 1:
        raise ToolkitError(f"--count {count}: need at least one scenario")
    kinds = (None, *FAULTS)
    out = []
    for i in range(count):
        out.append(
            generate(
                seed + i,
                fault=kinds[i % 4],
                drift=i % 3 != 2,
                remount=i % 3 != 1,
                gaps=2 + i % 3,
                hours=hours,
            )
        )
    return out


def normal_streams(count: int, seed: int = 7_000, hours: float = 12.0) -> list[Scenario]:
    """Healthy, nuisance-free installations (for training a fleet model). Seeds are disjoint
    from the evaluation suite."""
    return [generate(seed + i, gaps=0, hours=hours, name=f"normal{seed + i}") for i in range(count)]


# ----------------------------------------------------------------- CSV
def write_csv(s: Scenario, out_dir: Path) -> Path:
    """``<name>.csv`` (timestamp_ms, channels, incident, nuisance) + ``<name>.labels.json``.
    Missing samples are empty cells; logger outages are missing rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{s.name}.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp_ms", *s.channels, "incident", "nuisance"])
        for t, row in zip(s.timestamps_ms, s.values):
            inc = ";".join(sorted({i.kind for i in s.incidents if i.start_ms <= t <= i.end_ms}))
            nui = ";".join(sorted({i.kind for i in s.nuisances if i.start_ms <= t <= i.end_ms or (i.kind in ("drift", "remount") and t >= i.start_ms)}))
            w.writerow([int(t), *("" if not np.isfinite(v) else f"{v:.4f}" for v in row), inc, nui])
    (out_dir / f"{s.name}.labels.json").write_text(json.dumps(s.labels(), indent=1))
    return path


def read_csv(path: Path) -> Scenario:
    """Load a scenario CSV (and its labels file when present). Empty cells and NaN are
    missing samples; anything else that is not a number is an error naming row and column."""
    from aiot.data import MAX_CSV_BYTES, check_input_file

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ToolkitError(f"{path}: no such file", hint="generate scenarios with: aiot scenarios generate --out DIR")
    check_input_file(path, "a scenario CSV", MAX_CSV_BYTES)  # no FIFO, no file read whole before failing
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ToolkitError(f"{path}: not a UTF-8 text file (byte {e.start} is 0x{e.object[e.start]:02x})",
                           hint="a scenario is a CSV as `aiot scenarios generate` writes it") from None
    except csv.Error as e:
        raise ToolkitError(f"{path}: not a readable CSV ({e})",
                           hint="a scenario is a CSV as `aiot scenarios generate` writes it") from None
    if not rows:
        raise ToolkitError(f"{path}: empty file", hint="expected a header: timestamp_ms,<channels>...")
    header = rows[0]
    if not header or header[0] != "timestamp_ms":
        raise ToolkitError(f"{path}, row 1: first column is {header[:1]}, expected 'timestamp_ms'")
    label_cols = {"incident", "nuisance"}
    channels = tuple(h for h in header[1:] if h not in label_cols)
    if not channels:
        raise ToolkitError(f"{path}, row 1: no sensor columns after timestamp_ms")
    ts, vals = [], []
    inc_col = header.index("incident") if "incident" in header else None
    first_marked = None  # the first row whose incident column names a fault
    for r, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ToolkitError(f"{path}, row {r}: {len(row)} columns, header has {len(header)}")
        if first_marked is None and inc_col is not None and row[inc_col].strip():
            first_marked = (r, row[inc_col].strip())
        try:
            t = int(row[0])
        except ValueError:
            raise ToolkitError(f"{path}, row {r}, column timestamp_ms: {row[0]!r} is not an integer (ms)") from None
        if ts and t <= ts[-1]:
            raise ToolkitError(f"{path}, row {r}: timestamp {t} is not after {ts[-1]}",
                               hint="sort the rows by time and drop duplicates")
        v = []
        for c, name in enumerate(header[1:], start=1):
            if name in label_cols:
                continue
            cell = row[c].strip()
            if cell == "" or cell.lower() == "nan":
                v.append(np.nan)
                continue
            try:
                v.append(float(cell))
            except ValueError:
                raise ToolkitError(f"{path}, row {r}, column {name}: {cell!r} is not a number",
                                   hint="use an empty cell or NaN for a missing sample") from None
        ts.append(t)
        vals.append(v)
    if not ts:
        raise ToolkitError(f"{path}: header but no samples")
    period = int(np.median(np.diff(ts))) if len(ts) > 1 else SAMPLE_PERIOD_MS
    s = Scenario(path.stem, -1, np.array(ts, np.int64), np.array(vals, np.float32), channels=channels,
                 sample_period_ms=period)
    labels = path.with_suffix(".labels.json")
    if labels.exists() or labels.is_symlink():
        from aiot.data.readers import MAX_LABELS_BYTES

        check_input_file(labels, "a scenario's labels JSON", MAX_LABELS_BYTES)
    if not labels.is_file() and first_marked is not None:
        # scored without its labels every alert would count as false and every fault as absent
        raise ToolkitError(f"{labels}: missing, but {path.name} marks an incident ({first_marked[1]!r} from row "
                           f"{first_marked[0]})", hint="restore the labels file next to the CSV (aiot scenarios "
                                                       "generate writes both), or clear the incident column")
    if labels.is_file():
        try:
            meta = json.loads(labels.read_text())
            s.incidents = [Interval(**{**i, "channels": tuple(i["channels"])}) for i in meta["incidents"]]
            s.nuisances = [Interval(**{**i, "channels": tuple(i["channels"])}) for i in meta["nuisances"]]
            s.seed = int(meta.get("seed", -1))
        except (ValueError, KeyError, TypeError) as e:
            raise ToolkitError(f"{labels}: unreadable labels ({e})", hint="regenerate it or delete it") from None
        for key, intervals in (("incidents", s.incidents), ("nuisances", s.nuisances)):
            for k, iv in enumerate(intervals):
                where = f"{labels}: {key}[{k}] ({iv.kind}, {iv.start_ms}..{iv.end_ms} ms)"
                if iv.start_ms > iv.end_ms:
                    raise ToolkitError(f"{where} ends before it starts", hint="swap start_ms and end_ms")
                if iv.start_ms > s.timestamps_ms[-1] or iv.end_ms < s.timestamps_ms[0]:
                    raise ToolkitError(f"{where} lies outside the data ({int(s.timestamps_ms[0])}..{int(s.timestamps_ms[-1])} ms)",
                                       hint="is this the labels file of this CSV? regenerate it or fix the times")
                bad = [c for c in iv.channels if not 0 <= c < len(channels)]
                if bad:
                    raise ToolkitError(f"{where} names channel(s) {bad}; the CSV has {len(channels)} "
                                       f"({', '.join(channels)}), numbered from 0")
    return s
