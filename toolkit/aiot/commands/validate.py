"""`aiot validate`: validate a model on the target, against tflite-micro, vector by vector.

Like ST Edge AI's validate-on-target: stream N input vectors through the device (QEMU or a
real board on a serial port), compare every output with TFLite Micro's reference kernels,
and report exact-match rate, error metrics per output, instructions/cycles and milliseconds
per inference at the board's clock, and throughput. Writes report.json and report.html."""

from __future__ import annotations

import html
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from aiot.errors import ToolkitError
from aiot.commands import SECONDS, SEED, Command, OutPath, deprecated, wrote


@dataclass
class ModelInput:
    name: str
    tflite: bytes
    x_int8: np.ndarray  # (n, features) stored test vectors, may be empty
    source: Path


def load_model_input(path: Path) -> ModelInput:
    """A package folder (manifest.json) or any folder with model.tflite (+ vectors.npz)."""
    p = Path(path)
    if p.is_dir() and (p / "manifest.json").is_file():
        from aiot.model.package import load_package

        pkg = load_package(p)
        tfl = pkg.tflite_bytes()
        vec = pkg.vectors() if (p / "vectors.npz").is_file() else {}
        x = vec.get("x_int8", np.zeros((0, 0), np.int8))
        return ModelInput(pkg.name, tfl, np.asarray(x, np.int8).reshape(len(x), -1), p)
    if not p.exists():
        raise ToolkitError(f"{p}: no such file or folder",
                           hint="pass a model package folder with --package (made by `aiot train` and `aiot quantize --package PKG`) or a .tflite file with --model")
    tfl_path = p if p.suffix == ".tflite" else p / "model.tflite"
    if not tfl_path.is_file():
        raise ToolkitError(f"{p}: neither a model package (manifest.json) nor a folder with model.tflite",
                           hint="pass the folder written by `aiot train` + `aiot quantize --package PKG`")
    vec = tfl_path.parent / "vectors.npz"
    x = np.zeros((0, 0), np.int8)
    if vec.is_file():
        try:
            with np.load(vec, allow_pickle=False) as z:
                if "x_int8" in z.files:
                    x = np.asarray(z["x_int8"], np.int8)
                    x = x.reshape(len(x), -1)
        except Exception as e:
            raise ToolkitError(f"{vec}: unreadable ({e})") from None
    name = tfl_path.parent.name if tfl_path.name == "model.tflite" else tfl_path.stem
    data = tfl_path.read_bytes()
    from aiot.model.tflite import parse

    parse(data, str(tfl_path))  # a truncated or foreign file is named here, not by tflite-micro's loader
    return ModelInput(name, data, x, tfl_path.parent)


def make_inputs(stored: np.ndarray, n: int, features: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """The first n stored vectors, topped up with seeded uniform int8 vectors; (inputs, stored used)."""
    if stored.size and stored.shape[1] != features:
        raise ToolkitError(f"stored test vectors have {stored.shape[1]} values, the model takes {features}",
                           hint="vectors.npz does not belong to this model; re-run `aiot quantize --package PKG`")
    used = min(n, len(stored))
    extra = np.random.default_rng(seed).integers(-128, 128, (n - used, features), dtype=np.int16).astype(np.int8)
    return np.concatenate([stored[:used].astype(np.int8), extra]) if used else extra, used


def make_tensor_inputs(stored: np.ndarray, n: int, inputs, seed: int = 0) -> tuple[np.ndarray, int]:
    """make_inputs() for the tensors a device serves (aiot.device.protocol.TensorSpec, in
    order): an all-int8 model gets exactly make_inputs()'s vectors; otherwise (int16 inputs,
    the 16x8 mode) seeded values uniform over each input's type, one row per vector with every
    input's values one after the other (int16; int32 when int8 and int16 inputs mix); the
    stored int8 test vectors are not used then."""
    features = sum(t.elements for t in inputs)
    if all(t.dtype == np.int8 for t in inputs):
        return make_inputs(stored, n, features, seed)
    rng = np.random.default_rng(seed)
    cols = [rng.integers(np.iinfo(t.dtype).min, np.iinfo(t.dtype).max + 1, (n, t.elements)) for t in inputs]
    kind = inputs[0].dtype.name if len({t.dtype for t in inputs}) == 1 else "int32"
    return np.concatenate(cols, axis=1).astype(kind), 0


def _per_input(xs: np.ndarray, inputs) -> list:
    """Rows of every input's values as the device client takes them: the rows themselves when
    every input has one type, else one array per input in its own type."""
    if len({t.dtype for t in inputs}) == 1:
        return xs.astype(inputs[0].dtype.name)
    out = []
    for x in xs:
        at, parts = 0, []
        for t in inputs:
            parts.append(x[at : at + t.elements].astype(t.dtype.name))
            at += t.elements
        out.append(parts)
    return out


def output_quantization(tflite_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) of every output value, in order (each output's own), for the
    dequantized error metrics; a float-interface model's are its int8 core output's."""
    from aiot.model import tflite

    g = tflite.load(tflite_bytes, check=False)
    d = tflite.float_output_dequantize(g)
    ids = [d.inputs[0]] if d is not None else list(g.outputs)
    scale, zp = [], []
    for i in ids:
        t = g.tensors[i]
        s, z = t.qparams()
        scale += [s] * t.size
        zp += [z] * t.size
    return np.asarray(scale, np.float64), np.asarray(zp, np.int64)


def make_float_inputs(n: int, features: int, scale: float, zero_point: int, seed: int = 0) -> np.ndarray:
    """n seeded float32 vectors for a float-input model: uniform over the range its int8
    input represents, and a tenth beyond it on each side (saturation)."""
    lo, hi = (-128 - zero_point) * scale, (127 - zero_point) * scale
    pad = (hi - lo) / 10
    return np.random.default_rng(seed).uniform(lo - pad, hi + pad, (n, features)).astype(np.float32)


def compare_float(device: np.ndarray, reference: np.ndarray, scale: float) -> dict:
    """compare() for (n, outputs) float32 outputs: an output matches when its bits do;
    errors dequantized and in steps of the output's scale (the *_q fields)."""
    d, r = np.asarray(device, np.float32), np.asarray(reference, np.float32)
    same = d.view(np.uint32) == r.view(np.uint32)
    diff = d.astype(np.float64) - r.astype(np.float64)
    steps = np.rint(diff / scale).astype(np.int64)
    out = compare(steps, np.zeros_like(steps), 1.0, 0)  # the step histogram and per-output counts
    absf = np.abs(diff)
    rows = same.all(axis=1)
    ref_norm = float(np.sqrt((r.astype(np.float64) ** 2).sum()))
    out.update({
        "exact_match_pct": float(100.0 * rows.mean()) if len(d) else 0.0,
        "exact_bytes_pct": float(100.0 * same.mean()) if d.size else 0.0,
        "mismatched_vectors": int((~rows).sum()),
        "first_mismatch": int(np.argmax(~rows)) if (~rows).any() else None,
        "max_abs_error": float(absf.max()) if d.size else 0.0, "mae": float(absf.mean()) if d.size else 0.0,
        "rmse": float(np.sqrt((diff ** 2).mean())) if d.size else 0.0,
        "l2r": float(np.sqrt((diff ** 2).sum()) / ref_norm) if ref_norm > 0 else float(np.sqrt((diff ** 2).sum())),
        "float32": True,
    })
    for j, p in enumerate(out["per_output"]):
        p["mismatches"] = int((~same[:, j]).sum())
        p["rmse"] = float(np.sqrt((diff[:, j] ** 2).mean()))
    return out


def compare(device: np.ndarray, reference: np.ndarray, scale: float, zero_point: int) -> dict:
    """Error metrics between (n, outputs) int8 arrays; *_q in int8 steps, the rest dequantized."""
    d = device.astype(np.int32)
    r = reference.astype(np.int32)
    diff = d - r
    absd = np.abs(diff)
    fd = (d - zero_point) * scale
    fr = (r - zero_point) * scale
    ferr = fd - fr
    exact_rows = (absd == 0).all(axis=1)
    ref_norm = float(np.sqrt((fr**2).sum()))
    return {
        "vectors": int(len(d)),
        "exact_match_pct": float(100.0 * exact_rows.mean()) if len(d) else 0.0,
        "exact_bytes_pct": float(100.0 * (absd == 0).mean()) if d.size else 0.0,
        "mismatched_vectors": int((~exact_rows).sum()),
        "first_mismatch": int(np.argmax(~exact_rows)) if (~exact_rows).any() else None,
        "max_abs_error_q": int(absd.max()) if d.size else 0,
        "mean_abs_error_q": float(absd.mean()) if d.size else 0.0,
        "max_abs_error": float(np.abs(ferr).max()) if d.size else 0.0,
        "mae": float(np.abs(ferr).mean()) if d.size else 0.0,
        "rmse": float(np.sqrt((ferr**2).mean())) if d.size else 0.0,
        # ST's l2r: relative L2 error of the whole output set against the reference.
        "l2r": float(np.sqrt((ferr**2).sum()) / ref_norm) if ref_norm > 0 else float(np.sqrt((ferr**2).sum())),
        "error_histogram_q": {str(k): int(v) for k, v in zip(*np.unique(diff, return_counts=True))},
        "per_output": [
            {"index": j, "max_abs_error_q": int(absd[:, j].max()), "mean_abs_error_q": float(absd[:, j].mean()),
             "rmse": float(np.sqrt((ferr[:, j] ** 2).mean())), "mismatches": int((absd[:, j] != 0).sum())}
            for j in range(d.shape[1])
        ] if d.size else [],
    }


def timing(ticks: np.ndarray, board, info) -> dict:
    """Per-inference cost. QEMU (-icount shift=0): ticks -> instructions (1 per ns), and
    milliseconds at the board's clock assume one instruction per cycle. Hardware: SysTick
    counts CPU cycles, so ticks -> cycles -> milliseconds directly."""
    t = ticks.astype(np.float64)
    out: dict = {"ticks_mean": float(t.mean()), "ticks_min": int(t.min()), "ticks_max": int(t.max()),
                 "tick_hz": info.tick_hz, "cpu_hz": board.cpu_hz}
    if board.emulated and board.systick_hz:
        from aiot.device.parity import instructions_from_ticks

        instr = instructions_from_ticks(board, t)
        out.update(measure="instructions (QEMU -icount: 1 instruction = 1 ns)",
                   instructions_mean=float(instr.mean()), instructions_min=float(instr.min()),
                   instructions_max=float(instr.max()))
        cycles = instr  # assumption stated above
    else:
        cycles = t * board.cpu_hz / info.tick_hz
        out.update(measure="cycles (SysTick on the CPU clock)")
    out["cycles_mean"] = float(cycles.mean())
    ms = cycles / board.cpu_hz * 1e3
    out.update(ms_mean=float(ms.mean()), ms_min=float(ms.min()), ms_max=float(ms.max()),
               inferences_per_s=float(1e3 / ms.mean()) if ms.mean() > 0 else None)
    return out


# --- HTML --------------------------------------------------------------------------------
# A chart only where it says something: a bit-exact run has no error to plot, and a cost
# that does not vary is one number, so both are said in words instead.

def _bars(values: list[float], labels: list[str], title: str, w: int = 640, h: int = 160) -> str:
    """Vertical bars with a value axis: the count over each bar, its label under it."""
    vmax = max(values) if values and max(values) > 0 else 1.0
    n = max(len(values), 1)
    left = 50
    bw = min((w - left - 10) / n, 48.0)  # a few bars stay bars, not blocks
    parts = [f'<svg class="chart" width="{w}" height="{h + 44}" xmlns="http://www.w3.org/2000/svg" '
             f'font-family="sans-serif" font-size="10">',
             f'<text x="{left}" y="12">{html.escape(title)}</text>',
             f'<line x1="{left}" x2="{w - 10}" y1="{h + 20}" y2="{h + 20}" stroke="#495057"/>',
             f'<text x="{left - 4}" y="{26}" text-anchor="end">{vmax:,.0f}</text>',
             f'<text x="{left - 4}" y="{h + 23}" text-anchor="end">0</text>']
    for i, (v, lab) in enumerate(zip(values, labels)):
        bh = (h - 20) * v / vmax
        x = left + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{h + 20 - bh:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
                     f'fill="#3b7dd8"><title>{html.escape(lab)}: {v:,.0f}</title></rect>')
        if n <= 32:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{h + 34}" text-anchor="middle">{html.escape(lab)}</text>')
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{h + 16 - bh:.1f}" text-anchor="middle">{v:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _line(values: np.ndarray, title: str, unit: str, w: int = 640, h: int = 140) -> str:
    """A value per inference, in order, with its min and max on the axis."""
    if not len(values):
        return ""
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or 1.0
    left = 80
    pts = " ".join(f"{left + i * (w - left - 10) / max(len(values) - 1, 1):.1f},"
                   f"{20 + (h - 30) * (1 - (v - lo) / span):.1f}" for i, v in enumerate(values))
    return (f'<svg class="chart" width="{w}" height="{h + 16}" xmlns="http://www.w3.org/2000/svg" '
            f'font-family="sans-serif" font-size="10"><text x="{left}" y="12">{html.escape(title)}</text>'
            f'<text x="{left - 4}" y="23" text-anchor="end">{hi:,.0f}</text>'
            f'<text x="{left - 4}" y="{h - 7}" text-anchor="end">{lo:,.0f}</text>'
            f'<text x="{left}" y="{h + 12}">inference 1</text>'
            f'<text x="{w - 10}" y="{h + 12}" text-anchor="end">{len(values):,} ({html.escape(unit)})</text>'
            f'<polyline fill="none" stroke="#d8573b" points="{pts}"/></svg>')


def _link_row(link: dict | None) -> list[tuple[str, str]]:
    """A table row on the link, only when it needed retries or saw broken or stray frames."""
    if not link or link.get("clean", True):
        return []
    from aiot.device.hil import counts_text

    kinds = counts_text(link.get("broken_kinds", {}))
    return [("link (unreliable)", f'requests {link["requests"]}, retries {link["retries"]}, '
                                  f'corrupt frames {link["broken_frames"]}{f" ({kinds})" if kinds else ""}, '
                                  f'stray frames {link["stray_frames"]}')]


def firmware_memory(elf: Path | None, board) -> dict | None:
    """The image's flash/RAM split (build.json beside the ELF, written by every build) and the
    board's flash and RAM; None when the run had no ELF (a board flashed beforehand)."""
    if elf is None or not (Path(elf).parent / "build.json").is_file():
        return None
    size = json.loads((Path(elf).parent / "build.json").read_text()).get("size")
    if not size:
        return None
    return {**size, "board_flash": board.flash.length, "board_ram": board.ram.length}


def _table(rows: list[tuple[str, str]], cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _memory_section(fw: dict | None) -> str:
    if not fw:
        return ("<h2>Flash and RAM</h2><p>Not measured: this run had no firmware image to read (a board flashed "
                "beforehand). <code>aiot build --board BOARD --package PKG</code> prints the split; "
                "<code>aiot validate</code> reads it when given that image with <code>--elf</code>.</p>")
    def pct(n: int, of: int) -> str:
        return f" ({100 * n / of:.1f} % of the board's {of // 1024:,} KB)" if of else ""
    flash = [("engine code (kernels, generated invoke)", f'{fw["engine_code"]:,} B'),
             ("model weights and constants", f'{fw["weights"]:,} B'),
             ("rest (start-up, port, protocol, monitor, libc)", f'{fw["app_code"]:,} B'),
             ("<b>flash total</b>", f'<b>{fw["flash_total"]:,} B</b>{pct(fw["flash_total"], fw.get("board_flash", 0))}')]
    ram = [("tensor arena", f'{fw["arena"]:,} B'), ("stack", f'{fw["stack"]:,} B'),
           ("rest (data, bss: protocol buffers, monitor state)", f'{fw["app_ram"]:,} B'),
           ("<b>RAM total</b>", f'<b>{fw["ram_total"]:,} B</b>{pct(fw["ram_total"], fw.get("board_ram", 0))}')]
    rows = lambda items: "".join(f"<tr><td>{k}</td><td class='n'>{v}</td></tr>" for k, v in items)  # noqa: E731
    return (f"<h2>Flash and RAM</h2><p class='note'>The firmware image this run streamed through "
            f"(arm-none-eabi-size and nm on its ELF; the stack is the board file's reservation).</p>"
            f"<table class='mem'><tr><th colspan=2>flash</th></tr>{rows(flash)}"
            f"<tr><th colspan=2>RAM</th></tr>{rows(ram)}</table>")


def _parity_section(report: dict, device: np.ndarray | None, reference: np.ndarray | None) -> str:
    m = report["metrics"]
    per = m["per_output"]
    outputs = len(per)
    total = m["vectors"] * outputs
    same = round(total * m["exact_bytes_pct"] / 100)
    types = {t["type"] for t in report.get("tensors", {}).get("outputs", [])}
    kind = "float32" if m.get("float32") else types.pop() if len(types) == 1 else "int8 and int16" if types else "int8"
    rows = [("vectors compared", f'{m["vectors"]:,} x {outputs:,} outputs = {total:,} {kind} outputs'),
            ("byte-identical outputs", f'{same:,} of {total:,} ({m["exact_bytes_pct"]:.3f} %)'),
            ("vectors identical in every output", f'{m["vectors"] - m["mismatched_vectors"]:,} '
                                                   f'({m["exact_match_pct"]:.2f} %)'),
            ("max |error|", f'{m["max_abs_error_q"]} LSB ({m["max_abs_error"]:.6g} dequantized)'),
            ("MAE / RMSE / l2r (dequantized)", f'{m["mae"]:.6g} / {m["rmse"]:.6g} / {m["l2r"]:.6g}')]
    head = (f"<h2>Parity with tflite-micro</h2><p class='note'>Each vector's {kind} outputs from the device against "
            "tflite-micro's reference kernels on the same input (the project's golden reference).</p>")
    if m["mismatched_vectors"] == 0:
        return (head + _table(rows, "parity") + f"<p class='verdict ok'>All {total:,} outputs byte-identical to "
                "tflite-micro: no error to chart.</p>")
    hist = m["error_histogram_q"]
    differ = sorted((p for p in per if p["mismatches"]), key=lambda p: (-p["mismatches"], p["index"]))
    out_rows = "".join(f"<tr><td>{p['index']}</td><td class='n'>{p['mismatches']:,}</td>"
                       f"<td class='n'>{p['max_abs_error_q']}</td><td class='n'>{p['mean_abs_error_q']:.3f}</td></tr>"
                       for p in differ[:16])
    more = f"<p class='note'>... and {len(differ) - 16} more outputs differ (report.json).</p>" if len(differ) > 16 else ""
    first = ""
    if device is not None and reference is not None:
        vec, out = np.nonzero(device != reference)  # row-major: the first vectors first
        v = (lambda a: f"{float(a):.9g}") if kind == "float32" else (lambda a: str(int(a)))  # noqa: E731
        step = report["device"]["output_scale"] if kind == "float32" else 1
        first = "".join(f"<tr><td class='n'>{i}</td><td class='n'>{j}</td><td class='n'>{v(device[i, j])}</td>"
                        f"<td class='n'>{v(reference[i, j])}</td>"
                        f"<td class='n'>{round((float(device[i, j]) - float(reference[i, j])) / step):+d}</td></tr>"
                        for i, j in zip(vec[:12], out[:12]))
        first = ("<h3>The first outputs that differ</h3><table class='list'><tr><th>vector</th><th>output</th>"
                 f"<th>device</th><th>tflite-micro</th><th>difference (LSB)</th></tr>{first}</table>"
                 + (f"<p class='note'>... {len(vec) - 12:,} more (outputs.npz holds them all).</p>"
                    if len(vec) > 12 else ""))
    return (head + _table(rows, "parity")
            + f"<p class='verdict bad'>{m['mismatched_vectors']:,} of {m['vectors']:,} vectors differ "
              f"(first: vector {m['first_mismatch']}).</p>"
            + _bars([float(v) for k, v in hist.items() if int(k)], [f"{int(k):+d}" for k in hist if int(k)],
                    "outputs per non-zero error (device - tflite-micro, int8 steps)")
            + f"<p class='note'>Not drawn: the {hist.get('0', 0):,} outputs with no error.</p>"
            + "<h3>Outputs that differ</h3><table class='list'><tr><th>output</th><th>vectors differing</th>"
              f"<th>max |error| (LSB)</th><th>mean |error| (LSB)</th></tr>{out_rows}</table>{more}{first}")


def _tensors_section(tensors: dict | None) -> str:
    """The inputs and outputs the device served, for a model with several or with int16
    ones (one int8 input and output need no table), each output with the vectors that differ
    in it."""
    if not tensors:
        return ""
    ins, outs = tensors.get("inputs", []), tensors.get("outputs", [])
    if len(ins) <= 1 and len(outs) <= 1 and all(t["type"] == "int8" for t in (*ins, *outs)):
        return ""
    rows = "".join(
        f"<tr><td>{role} {k}</td><td>{html.escape(t['name'])}</td><td>{html.escape(str(t['shape']))}</td>"
        f"<td>{html.escape(t['type'])}</td><td class='n'>{t['bytes']:,}</td>"
        f"<td class='n'>{'' if role == 'input' else format(t['mismatched_vectors'], ',')}</td></tr>"
        for role, items in (("input", ins), ("output", outs)) for k, t in enumerate(items))
    return ("<h2>Inputs and outputs</h2><p class='note'>As the device served them (INFO, protocol 1.2), in the "
            ".tflite's order: each vector is every input's values one after the other, each answer every "
            "output's.</p><table class='list'><tr><th></th><th>tensor</th><th>shape</th><th>type</th>"
            f"<th>bytes</th><th>vectors differing</th></tr>{rows}</table>")


def _cost_section(t: dict, ticks: np.ndarray) -> str:
    instr = "instructions_mean" in t
    unit = "instructions" if instr else "cycles"
    mean = t.get("instructions_mean", t["cycles_mean"])
    lo, hi = (t["instructions_min"], t["instructions_max"]) if instr else (
        t["ticks_min"] * t["cpu_hz"] / t["tick_hz"], t["ticks_max"] * t["cpu_hz"] / t["tick_hz"])
    spread = (hi - lo) / mean if mean else 0.0
    rows = [(f"{unit} per inference", f"{mean:,.0f} (min {lo:,.0f}, max {hi:,.0f})"),
            ("time per inference", f'{t["ms_mean"]:.3f} ms at {t["cpu_hz"] / 1e6:g} MHz'
                                   + (" (one instruction per cycle assumed)" if instr else "")),
            ("throughput on the board", f'{t["inferences_per_s"]:,.1f} inferences/s')]
    if spread > 0.05 and len(ticks) > 1:  # a few % is the link's interrupts, not the model: no chart for that
        scale = mean / t["ticks_mean"] if t["ticks_mean"] else 1.0  # ticks -> instructions / cycles: linear
        chart = _line(ticks.astype(float) * scale, f"{unit} per inference, in order", unit)
    else:
        chart = (f"<p>Every inference took {lo:,.0f} to {hi:,.0f} {unit}: a spread of {100 * spread:.1f} % of "
                 "the mean, so no chart.</p>")
    return (f"<h2>Cost per inference</h2>{_table(rows)}{chart}<p class='note'>Measured: "
            f"{html.escape(t['measure'])}.</p>")


def write_html(path: Path, report: dict, ticks: np.ndarray, device: np.ndarray | None = None,
               reference: np.ndarray | None = None) -> None:
    """The validation page: verdict, parity table (and, only when outputs differ, the error
    charts and the first differing vectors), flash/RAM split, cost per inference."""
    m, t = report["metrics"], report["timing"]
    ok = m["mismatched_vectors"] == 0
    rows = [("board", html.escape(report["board"])), ("model", html.escape(report["model"])),
            ("model hash (CRC-32 of the .tflite)", html.escape(report["model_hash"])),
            ("transport", html.escape(report["transport"])),
            ("vectors", f'{m["vectors"]:,} ({report["inputs"]["stored"]:,} stored test vectors, '
                        f'{report["inputs"]["random"]:,} seeded random)'),
            ("through the link", f'{report["host"]["inferences_per_s"]:,.1f} inferences/s'),
            *((k, html.escape(v)) for k, v in _link_row(report.get("link")))]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>aiot validate {html.escape(report["model"])}</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto;color:#212529}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{padding:2px 10px;border:1px solid #dee2e6;text-align:left}}
td.n{{text-align:right}}.note{{color:#495057;font-size:90%}}.verdict{{font-weight:bold}}
.ok{{color:#1a7f37}}.bad{{color:#c62828}}</style></head><body>
<h1>Validation on {html.escape(report["board"])}: <span class="{'ok' if ok else 'bad'}">
{'bit-exact' if ok else f'{m["mismatched_vectors"]} vectors differ'}</span></h1>
{_table(rows)}
{_parity_section(report, device, reference)}
{_tensors_section(report.get("tensors"))}
{_memory_section(report.get("firmware"))}
{_cost_section(t, ticks)}
</body></html>"""
    path.write_text(doc)


# --- command -------------------------------------------------------------------------------

class _TfliteOrOldPackage(click.Path):
    """--model: a .tflite file. A folder was this option's meaning before --package: it is
    still taken as the package, with a deprecation line, for one release."""

    def __init__(self):
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if Path(value).is_dir():
            deprecated(ctx, "--model PKG_FOLDER", "--package PKG_FOLDER (--model takes a .tflite file)")
            return Path(value)
        return super().convert(value, param, ctx)


def _tensors_report(tflite_bytes: bytes, ins, outs, dev_out: np.ndarray, ref_out: np.ndarray, float_out: bool) -> dict:
    """Each input and output the device served (name, shape, type, bytes) and, per output, how
    many vectors differ in it."""
    from aiot.model import tflite

    g = tflite.load(tflite_bytes, check=False)
    d = tflite.float_output_dequantize(g)
    q = tflite.float_input_quantize(g)
    in_ids = [q.outputs[0]] if q is not None else list(g.inputs)
    out_ids = [d.inputs[0]] if d is not None else list(g.outputs)

    def entry(i, spec):
        t = g.tensors[i]
        return {"name": t.name, "shape": [int(v) for v in t.shape], "type": spec.dtype.name, "bytes": spec.bytes}

    same = (dev_out.view(np.uint32) == ref_out.view(np.uint32)) if float_out else (dev_out == ref_out)
    report_outs, at = [], 0
    for i, spec in zip(out_ids, outs):
        e = entry(i, spec)
        if float_out:
            e["type"] = "float32 (dequantized on the host)"
        e["mismatched_vectors"] = int((~same[:, at : at + spec.elements].all(axis=1)).sum()) if len(same) else 0
        report_outs.append(e)
        at += spec.elements
    return {"inputs": [entry(i, s) for i, s in zip(in_ids, ins)], "outputs": report_outs}


@click.command("validate", cls=Command)
@click.option("--board", "-b", default="mps2-an386", show_default=True, help="Board name (see `aiot boards`).")
@click.option("--package", "-p", "package", type=click.Path(file_okay=False, path_type=Path),
              help="Model package folder (aiot train + aiot quantize), or any folder with model.tflite "
                   "[+ vectors.npz].")
@click.option("--model", "-m", "model", type=_TfliteOrOldPackage(),
              help="An int8 (or 16x8) .tflite file, any number of inputs and outputs (instead of --package).")
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Vectors to stream: the stored test vectors first, then seeded random ones (int8; int16 "
                   "for a 16x8 model's int16 inputs; every input of a model with several).")
@click.option("--transport", type=click.Choice(["qemu", "serial"]), default="qemu", show_default=True)
@click.option("--port", help="Serial port or pyserial URL for --transport serial.")
@click.option("--baud", type=int, help="Baud rate for --transport serial [default: the board's].")
@click.option("--elf", type=click.Path(path_type=Path), help="Prebuilt firmware for QEMU (default: build it).")
@click.option("--out", type=OutPath(), help="Report folder [default: build/validate/BOARD-MODEL under the current folder].")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random input vectors.")
@click.option("--timeout", type=SECONDS, default=5.0, show_default=True, help="Seconds to wait for each answer.")
def command(board: str, package: Path | None, model: Path | None, count: int, transport: str, port: str | None, baud: int | None,
            elf: Path | None, out: Path | None, seed: int, timeout: float) -> None:
    """Validate a model on the target against tflite-micro, vector by vector.

    Streams N input vectors through the firmware, compares every output with TFLite
    Micro's reference kernels and reports exact-match %, error metrics (overall and per
    output), instructions or cycles and milliseconds per inference at the board's clock,
    and throughput. Writes report.json and report.html. Exits 1 if any output differs.

    \b
    Examples:
      aiot validate --board mps2-an386 --package build/demo/pkg -n 200
      aiot validate --board mps2-an386 --model build/demo/pkg/model.tflite
      aiot validate --board nucleo-f446re --package build/pkg --transport serial --port /dev/ttyACM0
    """
    import sys

    from aiot import paths
    from aiot.target.boards import get_board
    from aiot.device.hil import open_device
    from aiot.progress import Bar, step
    from aiot.model.reference import TflmReference

    if (package is None) == (model is None):
        raise click.UsageError("give the model to validate: --package PKG or --model FILE.tflite (one of them)")
    b = get_board(board)
    mi = load_model_input(package if package is not None else model)
    from aiot.model.tflite import parse

    g = parse(mi.tflite, str(mi.source))
    if transport == "qemu":
        b.qemu_args()  # real hardware stops here, before anything is built or written
    crc = zlib.crc32(mi.tflite) & 0xFFFFFFFF
    ref = TflmReference(mi.tflite)
    from aiot.device.hil import model_tensors

    in_specs, out_specs = model_tensors(mi.tflite)  # what the device serves: int8 (int16: 16x8), every one in order
    features = sum(t.elements for t in in_specs)
    from aiot.model.tflite import float_input_quantize, float_output_dequantize

    float_in, float_out = float_input_quantize(g) is not None, float_output_dequantize(g) is not None
    if float_in:  # float vectors in: the device gets them quantized by the model's own entry point
        in_s, in_zp = g.tensors[float_input_quantize(g).outputs[0]].qparams()
        xs_ref, stored = make_float_inputs(count, features, in_s, in_zp, seed), 0
    else:
        xs_ref, stored = make_tensor_inputs(mi.x_int8, count, in_specs, seed)
    out = Path(out or paths.build_dir() / "validate" / f"{b.name}-{mi.name}")
    from aiot.outputs import output_folder

    # the firmware, the report and the outputs it is made from appear together when the
    # run is done; a run that fails or is killed leaves the previous report whole
    with output_folder(out, "aiot validate") as run:
        stage = run.folder

        from aiot.codegen import generate

        if transport == "qemu" and elf is None:
            from aiot.target.firmware import build

            with step(f"building firmware for {b.name} with {mi.name}"):
                generate(mi.tflite, stage / "c", name=mi.name)
                elf = build(b, stage / "fw", stage / "c").elf
        edges = None
        if float_in or float_out:
            # the device speaks int8 (docs/engine.md); a float-interface model's edges are its
            # generated aiot_model_quantize_input / aiot_model_dequantize_output, compiled for
            # this machine (the same C the bench firmware checks on the M4)
            from aiot.codegen.host import HostModel

            if not (stage / "c" / "model.c").is_file():
                generate(mi.tflite, stage / "c", name=mi.name)
            edges = HostModel(stage / "c")
        # the float edges give the int8 core's input bytes (int16 little-endian in the 16x8 mode)
        xs = np.stack([edges.quantize_input(x).view(in_specs[0].dtype) for x in xs_ref]) if float_in else xs_ref

        with open_device(board=b, elf=elf, transport=transport, port=port, baud=baud, timeout=timeout) as dev:
            info = dev.require_model(mi.tflite, str(mi.source))
            outs, ticks = [], []
            t0 = time.monotonic()
            with Bar(len(xs), "validating") as bar:
                for start in range(0, len(xs), 64):
                    # One request at a time: pipelined, the next requests' bytes arrive during an
                    # inference and the receive interrupt's instructions count in its ticks.
                    for r in dev.infer_many(_per_input(xs[start : start + 64], in_specs), depth=1):
                        outs.append(r.output)
                        ticks.append(r.ticks)
                    bar.update(min(64, len(xs) - start))
            wall = time.monotonic() - t0
        refs = [ref.invoke(x).reshape(-1) for x in xs_ref]
        dev_out, ref_out = np.stack(outs), np.stack(refs)
        ticks_a = np.asarray(ticks)
        if float_out:  # float32 outputs, compared bit for bit with tflite-micro's
            dev_out = np.stack([edges.dequantize_output(y.astype(out_specs[0].dtype).view(np.int8)) for y in dev_out])
            metrics = compare_float(dev_out, ref_out, info.output_scale)
        else:  # each output value dequantized with its own output's scale and zero point
            metrics = compare(dev_out, ref_out, *output_quantization(mi.tflite))
        report = {
            "board": b.name, "model": mi.name, "model_hash": f"{crc:08x}", "transport": transport,
            "device": info.to_json(),
            "inputs": {"stored": stored, "random": len(xs) - stored, "seed": seed, "features": features,
                       **({"float32": True} if float_in else {})},
            # what the device served, in the .tflite's order (protocol 1.2's INFO table)
            "tensors": _tensors_report(mi.tflite, in_specs, out_specs, dev_out, ref_out, float_out),
            "metrics": metrics, "timing": timing(ticks_a, b, info),
            "host": {"seconds": wall, "inferences_per_s": len(xs) / wall if wall > 0 else None},
            "link": dev.counters.to_json(),
        }
        if edges is not None:
            report["float_edges"] = ("the model's aiot_model_quantize_input / aiot_model_dequantize_output, "
                                     "compiled for this machine; the integer graph ran on the device")
        report["firmware"] = firmware_memory(elf, b)
        (stage / "report.json").write_text(json.dumps(report, indent=2))
        np.savez(stage / "outputs.npz", inputs=xs_ref, device=dev_out, reference=ref_out, ticks=ticks_a)
        write_html(stage / "report.html", report, ticks_a, dev_out, ref_out)
        if (stage / "fw" / "build.json").is_file():
            run.relocate("fw/build.json")  # it names the image where it will be

    t = report["timing"]
    cost = (f'{t["instructions_mean"]:,.0f} instructions' if "instructions_mean" in t else f'{t["cycles_mean"]:,.0f} cycles')
    click.echo(f"{b.name} / {mi.name}: {metrics['vectors']} vectors ({stored} stored, {len(xs) - stored} random)")
    click.echo(f"  exact match      {metrics['exact_match_pct']:.2f} %  ({metrics['exact_bytes_pct']:.3f} % of bytes)")
    click.echo(f"  max |error|      {metrics['max_abs_error_q']} LSB = {metrics['max_abs_error']:.6g}; "
               f"MAE {metrics['mae']:.6g}, RMSE {metrics['rmse']:.6g}, l2r {metrics['l2r']:.6g}")
    click.echo(f"  per inference    {cost}, {t['ms_mean']:.3f} ms at {b.cpu_hz / 1e6:g} MHz "
               f"(min {t['ms_min']:.3f}, max {t['ms_max']:.3f})")
    click.echo(f"  throughput       {t['inferences_per_s']:,.1f} inferences/s on the board, "
               f"{report['host']['inferences_per_s']:,.1f}/s through the link")
    link = dev.link_report()  # said only when the link needed retries or dropped frames
    if link:
        click.secho(f"  link             {link[0]}\n                   {link[1]}", fg="yellow")
    if "float_edges" in report:
        click.echo(f"  float edges      {report['float_edges']}")
    click.echo(f"  report           {out / 'report.json'}, {out / 'report.html'}")
    wrote(out, "report.json, report.html, outputs.npz")
    if metrics["mismatched_vectors"]:
        click.secho(f"MISMATCH: {metrics['mismatched_vectors']} vectors differ from tflite-micro "
                    f"(first: vector {metrics['first_mismatch']})", fg="red", err=True)
        sys.exit(1)
