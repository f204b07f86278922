"""One installation's monitor, as the product builds it: the validated window and monitor
knobs, the commissioning split, per-sensor noise floors, the sample period in whole
milliseconds, the int8 model of the installation in the monitor's noise units (trained and
cached), its firmware image, and the environment a model was made in.

`aiot commission` builds an installation's firmware from these; the evaluation
(aiot.evaluate) runs recordings through the same pieces. The monitor feeds its model
windows in *noise units* of each installation ((x - commissioned baseline) / commissioned
noise, clipped), so the device models are trained on normal data normalized exactly that
way, segment by segment, and the training normalization aiot.model.train adds on top is
folded into the first and last layers before int8 conversion: the int8 model takes noise
units in and gives noise units out.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
from pathlib import Path

import numpy as np

from aiot.data import Series
from aiot.data.spikes import reject_spikes, say_spikes
from aiot.errors import ToolkitError
from aiot.paths import cache_dir, private_build_dir, publish_cache_dir

#: Window length per target with the best validated F1 (monitor: window 32 validated F1 0.081).
VALIDATED_WINDOW = {"reference": 32, "device": 8}


#: Every module whose code shapes a trained model: the training recipe, the windows and their
#: gap rule (features.py, data.py), the int8 conversion, the generated C and the .tflite
#: parser it reads (tests/test_evaluate_installation_models.py checks that every toolkit
#: module they import is listed here or known not to shape a model). Model caches are
#: keyed by their content, so a change in any of them retrains (data.py was missing until
#: 3 Dec: a model cached before its gap rule changed could outlive the change).
TRAINING_MODULES = ("model/train.py", "model/quantize.py", "model/features.py", "data/__init__.py", "data/spikes.py",
                    "model/tflite.py", "codegen/__init__.py", "codegen/ops.py", "codegen/ops16.py",
                    "codegen/plan.py", "codegen/quant.py")


def hash_training_code(h) -> None:
    """Feed the source of every module in TRAINING_MODULES into the hash ``h``: a change in
    the recipe invalidates the model caches."""
    for mod in TRAINING_MODULES:
        # a listed module that is missing is a bug here, never an empty hash (a stale cache)
        h.update((Path(__file__).resolve().parent / mod).read_bytes())


#: The monitor's default relative noise floor (monitor.c aiot_monitor_default_config).
MONITOR_REL_FLOOR = 1e-3


def fleet_floors(fleet_mean: np.ndarray, fleet_std: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sensor noise floors (absolute, relative) that make each sensor's noise at least
    ``floor x`` the spread it shows over the whole fleet recording (what it legitimately
    wanders), carried over to an installation at another operating point:

    - a sensor whose fleet level stands clear of zero (|mean| > spread) gets a *relative*
      floor, ``floor x spread / |mean|`` of the installation's own commissioned level: the
      fleet's coefficient of variation, so a pump running at a quarter of the fleet's flow
      gets a quarter of its flow floor instead of a floor that hides its faults;
    - a sensor that sits near zero (a pressure offset, a centred signal) keeps the absolute
      ``floor x spread``: a level near zero says nothing about its scale.

    At the fleet's own operating point both give ``floor x spread``. These go into the
    monitor's ``noise_floor`` / ``noise_floor_rel`` (aiot_monitor_config_t).
    """
    mean, std = np.abs(np.asarray(fleet_mean, np.float64)), np.asarray(fleet_std, np.float64)
    if floor <= 0:
        return np.zeros_like(std), np.full_like(std, MONITOR_REL_FLOOR)  # the monitor's defaults
    rel_ok = mean > std
    absolute = np.where(rel_ok, 0.0, floor * std)
    relative = np.where(rel_ok, floor * std / np.where(rel_ok, mean, 1.0), 0.0)
    return absolute, np.maximum(relative, MONITOR_REL_FLOOR)


def floored_noise(sd: np.ndarray, level: np.ndarray, absolute: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """The commissioned noise after the floors, as monitor.c ``commission()`` computes it."""
    return np.maximum(sd, np.maximum(absolute, relative * np.abs(level)))


#: Evaluation knob: 0 (default) the fleet autoencoder; 0 < v < 1 the linear model of the
#: window means that keeps the components explaining v of their variance
#: (:func:`_build_device_pca_model`; with monitor.h residual_score 4). Not a C setting: it
#: chooses the model, as fleet_noise_floor chooses its inputs.
PCA_KNOB = "fleet_pca_variance"
#: The linear model leaves at least this many directions of the window means to its residual
#: (monitor.c POOLED_MIN: the pooled term needs four sensors' worth).
PCA_LEFT_OUT = 4


def fleet_model_only(knobs: dict, what: str) -> None:
    """``fleet_pca_variance`` chooses the fleet model; one model per installation (``what``) is
    the autoencoder of its own commissioning rows: refused, never silently ignored."""
    if float(knobs.get(PCA_KNOB, 0.0)) > 0:
        raise ToolkitError(f"fleet_pca_variance {knobs[PCA_KNOB]} chooses the fleet model (a linear model of the "
                           f"fleet's window means); {what} trains one autoencoder per installation",
                           hint="leave fleet_pca_variance out of the settings, or evaluate with the fleet model")


#: Bump when the device-model recipe below changes (invalidates cached models).
RECIPE = "device-fleet-3"  # 3: relative per-sensor floors (fleet_floors)
#: What the evaluation adds to the monitor's header defaults. The shipped settings are one set,
#: declared once: the C settings of the pick are monitor.h's defaults (what `aiot build` images,
#: the seeded scenarios, the host build, `aiot evaluate` and `aiot commission` run); only the
#: fleet noise floor is not a C setting (it shapes the model's training data and becomes
#: per-sensor noise_floor values from the spread of the data the model was trained on). The pick:
#: `aiot tune --labels SKAB --format skab --far-budget 10 --labels TEP --format tep --far-budget 5
#: --target device` with the scenario gate (MONITOR_GRID, 2,448 settings; every pick keeps the
#: seeded suite at 15/15 faults, 0 false alerts, 59/59 gaps with the int8 and the float model),
#: chosen on all 56 files (7 Dec, seventh run: residual_score 3 in the grid; the eighth run's 3,600
#: settings, with residual_score 4 and the linear fleet model, picked the same):
#: margins 2.5 / clear 1.875, 3 of 5, recover_ratio 0, score_average 1, level_windows 1,
#: clear_band 6, spread_score 1, residual_score 3 (the energy pooled without the largest
#: sensor), fleet_noise_floor 1.0. Held out: SKAB F1 0.608 / FAR 9.37 %, TEP detection 0.675
#: / false alarms 0.00 % (docs/evaluation.md).
EVAL_KNOBS = {"fleet_noise_floor": 1.0}


#: The defaults of one model per installation (data without a fleet recording, `aiot evaluate
#: --per-file`, `aiot commission` without --fleet-data), over the header's: the gated joint
#: cross-validation *with such models* (each file's autoencoder trained on its own commissioning
#: rows), among the settings that score a sensor's level (`aiot tune --labels SKAB --format skab
#: --far-budget 10 --labels TEP --format tep --far-budget 5 --target device --per-file
#: --level-only`; 7 Dec), chosen on all 56 files. Without a level score such a model is blind
#: to a slow sensor leaving its level (tests/test_per_file_defaults.py); the fleet model's
#: defaults run with these models alert on 30 % of SKAB's and 35 % of TEP's normal rows. Held
#: out: SKAB F1 0.462 / FAR 9.08 %, TEP detection 0.489 / false alarms 2.31 % (docs/evaluation.md).
#: Every axis of the grid written, off values too.
PER_FILE_KNOBS = {"alert_margin": 4.0, "clear_margin": 3.0, "persist_k": 3, "persist_n": 5, "recover_ratio": 0.0,
                  "score_average": 1, "level_windows": 1, "clear_band": 6, "spread_score": 1, "residual_score": 1,
                  "fleet_noise_floor": 1.0}


def validated_knobs(per_file: bool = False) -> dict:
    """The knobs the device targets add to the header defaults when no alert-settings file is
    given, each the pick of a cross-validation run with that kind of model: the fleet model
    (:data:`EVAL_KNOBS`, the header's own defaults) or one model per installation trained on
    its own commissioning rows (:data:`PER_FILE_KNOBS`; ``per_file``). ``fleet_noise_floor`` is
    against the fleet's spread for the one, the installation's own commissioning spread for
    the other (:func:`device_file_model`)."""
    return dict(PER_FILE_KNOBS if per_file else EVAL_KNOBS)


#: Evaluation knob: each sensor's noise is at least this many times the fleet's long-term
#: spread of that sensor, scaled to the installation's level (0: the monitor's own floor
#: only). Becomes the monitor's noise_floor / noise_floor_rel fields: :func:`fleet_floors`.
FLOOR_KNOB = "fleet_noise_floor"
#: Pseudo-installation length when cutting the normal data into device-normalized segments.
SEGMENT_ROWS = 1150


def monitor_knobs(window: int, commissioning_rows: int) -> dict:
    """Commissioning budget split for the monitor: half the rows learn the noise profile,
    the rest (up to the monitor's capacity) are calibration windows."""
    from aiot import monitor as M

    commission = max(2, commissioning_rows // 2)
    cal = min(M.MAX_CALIBRATION, (commissioning_rows - commission) // window)
    if cal < 4:
        raise ToolkitError(
            f"{commissioning_rows} commissioning rows leave {max(cal, 0)} calibration windows of {window} samples "
            f"(the monitor needs 4: at least {min_commissioning_rows(window)} commissioning rows at this window)",
            hint="commission on more rows (--train-rows), record longer, or use a smaller --window",
        )
    return {"commission_samples": commission, "calibration_windows": cal}


def min_commissioning_rows(window: int) -> int:
    """The fewest commissioning rows :func:`monitor_knobs` accepts at ``window``."""
    rows = 2
    while (rows - max(2, rows // 2)) // window < 4:
        rows += 1
    return rows


def fleet_spread(fleet: Series) -> tuple[np.ndarray, np.ndarray]:
    """Each sensor's long-term mean and spread over the whole fleet recording."""
    v = np.where(fleet.valid, fleet.values, np.nan)
    return np.nanmean(v, axis=0), np.nanstd(v, axis=0)


def _device_normalized(fleet: Series, commission: int, floors: tuple[np.ndarray, np.ndarray],
                       segment_rows: int = SEGMENT_ROWS) -> Series:
    """``fleet`` cut into segments of ``segment_rows`` (pseudo-installations), each in its
    own noise units as the monitor would see it, baseline and noise from its first
    ``commission`` rows; a long time gap between segments keeps training windows from
    straddling two. One installation's own rows are one segment (``segment_rows`` = its
    rows): every row in, in its own order, so labels and rows stay one for one.
    ``floors``: the per-sensor (absolute, relative) noise floors of :func:`fleet_floors`."""
    if fleet.rows <= commission:
        raise ToolkitError(
            f"{fleet.source or 'the fleet recording'}: {fleet.rows} normal rows; the monitor learns each sensor's "
            f"noise from the first {commission} commissioning rows, so no fleet training segment fits",
            hint="commission on fewer rows (--train-rows/--train-fraction), or train on a longer --fleet recording",
        )
    vals, ts = [], []
    t0 = 0.0
    for a in range(0, fleet.rows - commission, segment_rows):
        seg = fleet.slice(a, min(a + segment_rows, fleet.rows))
        head = np.where(seg.valid[:commission], seg.values[:commission], np.nan)
        mean = np.nanmean(head, axis=0)
        sd = np.nanstd(head, axis=0, ddof=1)
        sd = floored_noise(sd, mean, *floors) + 1e-12
        vals.append(np.clip((seg.values - mean) / sd, -8.0, 8.0))
        ts.append(seg.timestamps - seg.timestamps[0] + t0)
        t0 = ts[-1][-1] + 1000.0
    v = np.concatenate(vals)
    return Series(timestamps=np.concatenate(ts), values=v, valid=~np.isnan(v), labels=None,
                  channels=list(fleet.channels), source=fleet.source, meta={"generator": "device-normalized"})


def _fold_normalization(model, mean: np.ndarray, std: np.ndarray):
    """A copy of ``model`` that takes and returns raw features instead of (x - mean) / std."""
    from aiot.quiet import import_keras

    keras = import_keras()

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    dense = [l for l in clone.layers if isinstance(l, keras.layers.Dense)]
    first, last = dense[0], dense[-1]
    w, b = first.get_weights()
    first.set_weights([w / std[:, None], b - (mean / std) @ w])
    w, b = last.get_weights()
    last.set_weights([w * std[None, :], b * std + mean])
    return clone


def _model_dir(key: list, prefix: str) -> Path:
    """The cache folder of a device model: ``key`` plus the recipe and the code that trains it."""
    h = hashlib.sha256(json.dumps(key).encode())
    h.update(RECIPE.encode())
    # how the training rows are chosen, normalized, floored and trained: a change retrains
    for fn in (device_fleet_model, device_file_model, normal_only, reject_spikes, fleet_spread, fleet_floors,
               _device_normalized, _build_device_model, _build_device_pca_model):
        h.update(inspect.getsource(fn).encode())
    hash_training_code(h)
    return cache_dir() / "models" / f"{prefix}-{h.hexdigest()[:16]}"


def _build_device_pca_model(z: Series, out: Path, window: int, variance: float, name: str, meta: dict) -> Path:
    """The linear model of the window means (``fleet_pca_variance``): the principal components
    of the fleet's window means (in the monitor's noise units, every complete window) that
    explain ``variance`` of their variance, at most all but PCA_LEFT_OUT (the pooled residual,
    monitor.h residual_score 4, needs that many directions to pool), at least one. As two Dense
    layers on the flattened window, no activation: the first projects the window mean onto
    the components, the second puts the mean's reconstruction at every sample; int8 like the
    autoencoder, the same generated C. Its residual is each sensor's departure from the
    relations the fleet's sensors keep (a plant's balances and control loops): what
    residual_score 4 pools. No training run: the components are computed."""
    from aiot.codegen import generate
    from aiot.model.features import Normalization, make_windows
    from aiot.model.quantize import convert_int8
    from aiot.quiet import import_keras

    keras = import_keras()
    C = len(z.channels)
    w = make_windows(z, Normalization(np.zeros(C), np.ones(C)), window)
    x = np.asarray(w.x[w.complete], np.float64)
    means = x.reshape(len(x), window, C).mean(1)
    m = means.mean(0)
    _, sv, vt = np.linalg.svd(means - m, full_matrices=False)
    frac = np.cumsum(sv ** 2) / np.sum(sv ** 2)
    k = int(max(1, min(np.searchsorted(frac, variance) + 1, C - PCA_LEFT_OUT)))
    v = vt[:k].T  # (C, k)
    enc = np.tile(v / window, (window, 1))  # (W*C, k): the window mean, projected
    dec = np.tile(v.T, (1, window))         # (k, W*C): the mean's reconstruction, at every sample
    model = keras.Sequential([keras.Input(shape=(window * C,), name="window"),
                              keras.layers.Dense(k, activation=None, name="dense_0"),
                              keras.layers.Dense(window * C, activation=None, name="reconstruction")])
    model.layers[0].set_weights([enc.astype(np.float32), (-(m @ v)).astype(np.float32)])
    model.layers[1].set_weights([dec.astype(np.float32), np.tile(m, window).astype(np.float32)])
    tmp = private_build_dir(out)
    tmp.mkdir(parents=True, exist_ok=True)
    rep = x[np.linspace(0, len(x) - 1, min(len(x), 500)).round().astype(int)].astype(np.float32)
    tfl = convert_int8(model, rep)
    (tmp / "model.tflite").write_bytes(tfl)
    generate(tfl, tmp / "c", name=name)
    (tmp / "meta.json").write_text(json.dumps({**meta, "window": window, "epochs": 0, "pca_components": k,
                                               "pca_variance": variance}, indent=2))
    return publish_cache_dir(tmp, out, "c/model.c")


def _build_device_model(z: Series, out: Path, window: int, epochs: int, seed: int, hidden: tuple[int, ...],
                        train_rows: int, name: str, meta: dict) -> Path:
    """Train on ``z`` (already in the monitor's noise units), fold the training normalization
    into the first and last layers, convert to int8 and generate its C: OUT/model.tflite,
    OUT/c/model.c, OUT/meta.json (``meta`` + what was folded). ``out`` only ever holds a
    complete model (built in a private folder, then renamed)."""
    from aiot.codegen import generate
    from aiot.model.package import load_package
    from aiot.model.quantize import convert_int8
    from aiot.model.train import train

    tmp = private_build_dir(out)
    train(z, tmp / "pkg", window=window, epochs=epochs, seed=seed, train_rows=train_rows,
          hidden=hidden, name=name, progress=False, reject_garbage=False)  # z: cleaned and clipped
    from aiot.quiet import import_keras

    keras = import_keras()

    pkg = load_package(tmp / "pkg")
    norm = pkg.normalization
    mean = np.tile(norm.mean.astype(np.float64), window)
    std = np.tile(norm.std.astype(np.float64), window)
    model = keras.models.load_model(pkg.file("keras"), compile=False)
    folded = _fold_normalization(model, mean, std)
    rep = pkg.vectors()["x_representative"].astype(np.float64) * std + mean
    tfl = convert_int8(folded, rep.astype(np.float32))
    (tmp / "model.tflite").write_bytes(tfl)
    generate(tfl, tmp / "c", name=name)
    (tmp / "meta.json").write_text(json.dumps({**meta, "window": window, "epochs": epochs,
                                               "training_normalization_folded": norm.to_json()}, indent=2))
    return publish_cache_dir(tmp, out, "c/model.c")


def device_fleet_model(fleet: Series, source_sha: str, window: int, epochs: int, seed: int,
                       commissioning_rows: int, hidden: tuple[int, ...] = (16, 8), noise_floor: float = 0.0,
                       pca_variance: float = 0.0) -> Path:
    """Train (cached) the fleet model for the monitor: DIR/model.tflite + DIR/c/model.c.
    ``noise_floor`` > 0: trained in the noise units the monitor sees with that per-sensor floor.
    ``pca_variance`` > 0: instead of the autoencoder, the linear model of the window means
    (:func:`_build_device_pca_model`, the ``fleet_pca_variance`` knob). Isolated garbage samples
    of the recording are left out, said, and recorded in meta.json (``rejected_spikes``)."""
    raw = fleet
    fleet, rejected = reject_spikes(raw)
    say_spikes(raw, rejected, raw.source or "the fleet recording")
    knobs = monitor_knobs(window, commissioning_rows)
    key = [source_sha, list(fleet.channels), window, epochs, seed, knobs, list(hidden)] + (
        [noise_floor] if noise_floor > 0 else []) + ([f"pca {pca_variance}"] if pca_variance > 0 else [])
    out = _model_dir(key, "device")
    if (out / "c" / "model.c").is_file():
        return out
    from aiot.progress import step

    with step(f"device fleet model ({fleet.rows} normal rows in noise units), cached as {out.name}"):
        f_mean, f_std = fleet_spread(fleet)
        z = _device_normalized(fleet, knobs["commission_samples"], fleet_floors(f_mean, f_std, noise_floor))
        meta = {"kind": "fleet", "knobs": knobs, "noise_floor": noise_floor, "rejected_spikes": rejected,
                "fleet_mean": f_mean.tolist(), "fleet_std": f_std.tolist()}
        if pca_variance > 0:
            return _build_device_pca_model(z, out, window, pca_variance, "fleet_device", meta)
        return _build_device_model(z, out, window, epochs, seed, hidden, int(0.9 * z.rows), "fleet_device", meta)


def normal_only(head: Series) -> Series:
    """``head`` with its labelled rows marked missing: an installation learns its noise and
    baseline from normal running, and a failure recorded while it was commissioned is
    neither (the device is shown those rows as missing samples, its model's noise units
    leave them out). Unlabelled: ``head`` itself."""
    if head.labels is None or not np.any(head.labels):
        return head
    out = head.slice(0, head.rows)
    out.valid = out.valid & (np.asarray(out.labels) == 0)[:, None]
    return out


def device_file_model(head: Series, window: int, epochs: int, seed: int, hidden: tuple[int, ...] = (16, 8),
                      noise_floor: float = 0.0, name: str = "installation") -> Path:
    """One installation's own model for the monitor, trained (cached) on its commissioning
    rows ``head`` alone, in the noise units the monitor will commission on those same rows
    (baseline and noise from the first half). No fleet recording: the per-sensor floors of
    ``noise_floor`` are taken against the installation's own spread over ``head`` (what
    ``fleet_mean`` / ``fleet_std`` stand for in its meta.json). Rows labelled as a fault
    (when a commissioning log says so) are kept out of the training windows, as the
    reference target keeps them out of its baseline, and out of the noise units and floors
    (:func:`normal_only`: the device commissions on them as missing samples); so are isolated
    garbage samples (:func:`aiot.data.spikes.reject_spikes`), said and recorded in meta.json."""
    knobs = monitor_knobs(window, head.rows)
    normal, rejected = reject_spikes(normal_only(head))
    say_spikes(head, rejected, head.source or name)
    dead = [c for c, ok in zip(head.channels, normal.valid[: knobs["commission_samples"]].any(axis=0)) if not ok]
    if dead:
        raise ToolkitError(
            f"sensor(s) {', '.join(dead)} sent no valid sample in the first {knobs['commission_samples']} "
            f"commissioning rows (the rows the monitor learns each sensor's baseline and noise from)",
            hint="fix or reconnect the sensor and commission again, or leave its column out of the data",
        )
    key = [head.digest(), list(head.channels), window, epochs, seed, knobs, list(hidden), noise_floor]
    out = _model_dir(key, "device-file")
    if (out / "c" / "model.c").is_file():
        return out
    own_mean, own_std = fleet_spread(normal)
    # one segment: all the commissioning rows train, in the units the monitor takes from their first half
    z = _device_normalized(normal, knobs["commission_samples"], fleet_floors(own_mean, own_std, noise_floor),
                           segment_rows=head.rows)
    z.labels = head.labels
    return _build_device_model(z, out, window, epochs, seed, hidden, z.rows, "installation_device",
                               {"kind": "per-file", "installation": name, "knobs": knobs, "noise_floor": noise_floor,
                                "rejected_spikes": rejected,
                                "fleet_mean": own_mean.tolist(), "fleet_std": own_std.tolist(),
                                "spread_from": "the installation's own commissioning rows"})


def firmware_sources_sha() -> str:
    """Hash of every firmware source and header: host and QEMU results only compare when equal."""
    from aiot.paths import FIRMWARE

    h = hashlib.sha256()
    for p in sorted(FIRMWARE.rglob("*")):
        if p.is_file() and p.suffix in (".c", ".h", ".S", ".s", ".ld"):
            h.update(p.relative_to(FIRMWARE).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def firmware_elf(model_dir: Path, board_name: str, build: bool = False, quiet: bool = False) -> Path:
    """The device firmware (monitor + protocol + this model) for ``board_name``, built once
    per state of everything that goes into the image: the firmware sources (a changed
    monitor.c means a new build), the model's generated C and the board file. The folder is
    ``BOARD-SOURCES-INPUTS``: SOURCES is :func:`firmware_sources_sha`."""
    from aiot.paths import BOARDS

    # The monitor's capacity is a build constant (default 8 channels): a model of more
    # sensors (a 52-variable plant) gets an image built for all of them, keyed by it.
    meta = Path(model_dir) / "meta.json"
    from aiot.monitor import capacity_defines

    channels = len(json.loads(meta.read_text()).get("fleet_mean") or []) if meta.is_file() else 0
    defines = capacity_defines(channels)
    h = hashlib.sha256()
    for f in [*sorted((Path(model_dir) / "c").glob("*")), BOARDS / f"{board_name}.toml"]:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    for d in defines:  # none up to 8 channels: those images keep their folder
        h.update(d.encode())
    out = Path(model_dir) / "fw" / f"{board_name}-{firmware_sources_sha()}-{h.hexdigest()[:8]}"
    elf = out / "firmware.elf"
    from aiot.target.firmware import image_complete

    if image_complete(elf):  # not a file an interrupted build left behind: that one is built again
        return elf
    if not build:
        raise ToolkitError(f"{elf}: firmware not built", hint="the evaluation builds it before streaming")
    from contextlib import nullcontext

    from aiot.target.boards import get_board
    from aiot.target.firmware import build as build_fw
    from aiot.progress import step

    # quiet: one image per installation, the run's progress bar tells the story
    with nullcontext() if quiet else step(f"firmware for {board_name} with the fleet model"):
        build_fw(get_board(board_name), out, model_dir=Path(model_dir) / "c", app="device", defines=defines)
    return elf


def firmware_size(elf: Path | str) -> dict | None:
    """The flash/RAM split recorded next to a built image (its build.json), if any."""
    build_json = Path(elf).parent / "build.json"
    return json.loads(build_json.read_text()).get("size") if build_json.is_file() else None


def config_knobs(model_dir: Path, knobs: dict | None) -> dict:
    """``knobs`` as monitor config fields: the evaluation's ``fleet_noise_floor`` becomes the
    per-sensor ``noise_floor`` / ``noise_floor_rel`` lists of the spread the model in
    ``model_dir`` was trained against (its meta.json), which must be the same floor."""
    out = dict(knobs or {})
    floor = float(out.pop(FLOOR_KNOB, 0.0))
    pca = float(out.pop(PCA_KNOB, 0.0))
    meta_file = Path(model_dir) / "meta.json"
    # read once; a floor needs it (its absence is an error), the model kind only when it is there
    meta = json.loads(meta_file.read_text()) if floor > 0 or meta_file.is_file() else {}
    if pca != float(meta.get("pca_variance", 0.0)):
        raise ToolkitError(f"{model_dir}: model built with fleet_pca_variance {meta.get('pca_variance', 0.0)}, "
                           f"run asks for {pca}", hint="build the device model with the same fleet_pca_variance")
    if floor > 0:
        if float(meta.get("noise_floor", 0.0)) != floor:
            raise ToolkitError(f"{model_dir}: model trained with noise floor {meta.get('noise_floor', 0.0)}, "
                               f"run asks for {floor}", hint="train the device model with the same floor")
        absolute, relative = fleet_floors(np.array(meta["fleet_mean"]), np.array(meta["fleet_std"]), floor)
        out.update(noise_floor=absolute.tolist(), noise_floor_rel=relative.tolist())
    return out


#: How far (relative) a recording's sample period may be from a whole number of milliseconds,
#: the unit of the monitor's sample_period_ms (a uint32). Within it, each timestamp step rounds
#: to the right number of periods; beyond it (0.1 ms read as 1 ms, 1.5 ms as 2 ms) the monitor
#: would reject samples as early or count gaps that are not there.
PERIOD_TOLERANCE = 0.01
MAX_PERIOD_MS = 0xFFFFFFFF


def installation_period_ms(head: Series, where) -> int:
    """The sample period of ``head`` (an installation's commissioning rows) in the whole
    milliseconds the monitor works in. A period that is not one (within PERIOD_TOLERANCE), or
    beyond a uint32 of them, is an error that names ``where`` (the file) and the period."""
    period_s = head.sample_period_s
    ms = period_s * 1000.0
    whole = round(ms) if np.isfinite(ms) else 0
    if not 1 <= whole <= MAX_PERIOD_MS:
        raise ToolkitError(
            f"{where}: sample period {period_s:g} s ({ms:g} ms) is outside the monitor's range of 1 to "
            f"{MAX_PERIOD_MS} whole milliseconds",
            hint="the monitor works in whole milliseconds: resample the recording (or check its timestamp column "
                 "and units)",
        )
    if abs(ms - whole) > PERIOD_TOLERANCE * whole:
        raise ToolkitError(
            f"{where}: sample period {period_s:g} s ({ms:g} ms) is not a whole number of milliseconds",
            hint="the monitor works in whole milliseconds: resample the recording to a whole-millisecond period "
                 "(or check its timestamp column and units)",
        )
    return int(whole)


def installation_config(head: Series, window: int, knobs: dict):
    """The monitor configuration (``aiot.monitor.Config``) of an installation commissioned
    on ``head``: its sensors and sample period (:func:`installation_period_ms`), the
    commissioning split of :func:`monitor_knobs`, and ``knobs`` (config fields,
    :func:`config_knobs`) on top."""
    from aiot import monitor as M

    period_ms = installation_period_ms(head, head.source or "recording")
    knobs = M.by_sensor(knobs, list(head.channels))  # {"sensor": value} settings, one per sensor
    return M.default_config(len(head.channels), window, period_ms, **monitor_knobs(window, head.rows), **knobs)


def environment() -> dict:
    """Python and the versions of the packages a trained model depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "tensorflow-cpu", "tensorflow", "keras", "tflite-micro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
