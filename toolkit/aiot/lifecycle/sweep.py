"""Power-cut sweep of a model update on an emulated board (QEMU): the device's update
region is a host file (firmware/port/cmsdk/flash.c) and a firmware built with
``AIOT_FLASH_CUT_FILE`` cuts power at the N-th flash erase/program named in a small host
file: that operation is done half, then the device stops dead (exit code ``CUT_EXIT``).

The sweep counts the erases and programs of a full update once (transfer, finish, reboot
into the trial, the trial's runs and its confirmation), then for every cut point N: the
flash file back to "old release confirmed", the same update with the cut at N, a boot with
no cut (a trial left pending runs to its end), and the device must run exactly the old or
the new release (its digest in UPDATE_STATUS; the slot is re-verified at boot) and serve
INFER with tflite-micro's output. ``python -m aiot.lifecycle.sweep --board mps2-an386``."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from aiot.errors import ToolkitError

CUT_EXIT = 86  # AIOT_FLASH_CUT_EXIT in firmware/port/cmsdk/flash.c
KINDS = {1: "erase", 2: "program"}
AREAS = ("record 0", "record 1", "slot 0", "slot 1")


def cut_define(cut_file: Path) -> str:
    """The -D define that builds the opt-in cut into an emulated board's firmware."""
    return f'AIOT_FLASH_CUT_FILE="{Path(cut_file).resolve()}"'


def write_cut(cut_file: Path, at: int | None) -> None:
    """Arm a cut at operation ``at`` counted from the next boot (None: count only, no cut)."""
    Path(cut_file).write_bytes(struct.pack("<iI", -1 if at is None else int(at), 0))


@dataclass(frozen=True)
class FlashOp:
    index: int
    kind: str       # erase | program
    offset: int     # in the update region
    length: int
    area: str       # record 0 | record 1 | slot 0 | slot 1
    phase: str = ""  # transfer | reboot into trial | trial runs


def read_ops(cut_file: Path, areas: Sequence[int]) -> list[FlashOp]:
    """The operations the firmware counted and traced in ``cut_file`` since it was armed."""
    raw = Path(cut_file).read_bytes()
    (count,) = struct.unpack_from("<I", raw, 4)
    ops = []
    for k in range(min(count, (len(raw) - 8) // 8)):
        addr, kl = struct.unpack_from("<II", raw, 8 + 8 * k)
        area = max(i for i, a in enumerate(areas) if a <= addr)
        ops.append(FlashOp(k, KINDS.get(kl >> 24, f"kind {kl >> 24}"), addr, kl & 0xFFFFFF, AREAS[area]))
    if len(ops) != count:
        raise ToolkitError(f"{cut_file}: {count} flash operations counted, {len(ops)} traced",
                           hint="the trace holds 4096 operations: sweep a smaller update")
    return ops


@dataclass
class CutResult:
    op: FlashOp
    ended: str | None     # old | new | None (neither: not recovered)
    exit_code: int | None
    trial_resumed: bool   # the boot after the cut found a trial pending and ran it
    last_reason: int
    error: str = ""

    @property
    def recovered(self) -> bool:
        return self.ended in ("old", "new") and self.exit_code == CUT_EXIT and not self.error


@dataclass
class SweepResult:
    board: str
    scenario: str  # into an empty slot | over an older release
    ops: list[FlashOp]
    results: list[CutResult] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        ended = [r.ended for r in self.results]
        return {"board": self.board, "scenario": self.scenario, "flash_ops": len(self.ops), "cut_points": len(self.results),
                "old": ended.count("old"), "new": ended.count("new"),
                "recovered": sum(r.recovered for r in self.results),
                "all_recovered": all(r.recovered for r in self.results), "seconds": round(self.seconds, 1)}

    def line(self) -> str:
        s = self.summary()
        verdict = "all recovered" if s["all_recovered"] else f"{s['cut_points'] - s['recovered']} NOT recovered"
        return (f"{s['board']}, {s['scenario']}: {s['cut_points']} cut points of {s['flash_ops']} flash operations: "
                f"{s['old']} old, {s['new']} new, {verdict} ({s['seconds']:.0f} s)")

    def to_json(self) -> dict:
        return {**self.summary(), "points": [
            {**dataclasses.asdict(r.op), "ended": r.ended, "exit_code": r.exit_code, "trial_resumed": r.trial_resumed,
             "last_reason": r.last_reason, "recovered": r.recovered, **({"error": r.error} if r.error else {})}
            for r in self.results]}


@dataclass
class SweepKit:
    """A firmware built with the cut, its flash and cut files, two signed releases of one
    model and inputs with tflite-micro's outputs for them (the golden reference)."""
    board: object
    elf: Path
    flash: Path
    cut: Path
    old: bytes
    new: bytes
    x: np.ndarray
    y: np.ndarray
    trial_runs: int
    older: bytes | None = None  # confirmed before ``old``: the update then reuses its slot


class UpdateSweep:
    def __init__(self, kit: SweepKit):
        from aiot.lifecycle.firmware import update_layout

        self.kit = kit
        self.areas = update_layout(kit.board).offsets()
        self.base: bytes | None = None

    def _open(self):
        from aiot.device.hil import open_device

        return open_device(board=self.kit.board, elf=self.kit.elf)

    def _update(self, dev, image: bytes | None = None, marks: list[int] | None = None) -> object:
        """An update (default: to the new release): transfer and finish, reboot into the
        trial, its runs until confirmed. ``marks``: the operation count after each phase."""
        from aiot.lifecycle.client import UpdateClient

        up = UpdateClient(dev)
        up.send(self.kit.new if image is None else image)
        mark = (lambda: marks.append(struct.unpack_from("<I", self.kit.cut.read_bytes(), 4)[0])) if marks is not None \
            else (lambda: None)
        mark()
        up.reboot()
        st = up.status()
        if not (st.trial and st.trial_boots == 1):
            raise ToolkitError(f"{self.kit.board.name}: the release is not on trial after the reboot ({st.describe()})",
                               hint="run tests/test_lifecycle_qemu.py to check updates without cuts")
        mark()
        for _ in range(self.kit.trial_runs):
            dev.infer(self.kit.x[0])
        return up.status()

    def _check_confirmed(self, st, image: bytes, what: str) -> None:
        from aiot.lifecycle.client import image_digest

        if st.trial or st.running_digest() != image_digest(image)[:8]:
            raise ToolkitError(f"{self.kit.board.name}: the {what} release did not confirm without a cut ({st.describe()})",
                               hint="run tests/test_lifecycle_qemu.py to check updates without cuts")

    def prepare(self) -> list[FlashOp]:
        """On an erased device the older release (if the kit has one: the new release then
        goes into its slot) and the old one, confirmed: the starting flash, kept. Then the
        update once with no cut: its flash operations, each with its phase."""
        kit = self.kit
        kit.flash.unlink(missing_ok=True)
        kit.cut.unlink(missing_ok=True)  # no cut file: no cut, no counting
        with self._open() as dev:
            for image, what in ((kit.older, "older"), (kit.old, "old")):
                if image is not None:
                    self._check_confirmed(self._update(dev, image), image, what)
        self.base = kit.flash.read_bytes()
        write_cut(kit.cut, None)
        marks: list[int] = []
        with self._open() as dev:
            self._check_confirmed(self._update(dev, marks=marks), kit.new, "new")
        ops = read_ops(kit.cut, self.areas)
        phase = lambda k: "transfer" if k < marks[0] else "reboot into trial" if k < marks[1] else "trial runs"  # noqa: E731
        return [dataclasses.replace(o, phase=phase(o.index)) for o in ops]

    def cut(self, op: FlashOp) -> CutResult:
        """The update with power cut at ``op``, then a boot with no cut: which release runs."""
        from aiot.lifecycle.client import NO_SLOT, UpdateClient, image_digest

        kit = self.kit
        assert self.base is not None, "prepare() first"
        kit.flash.write_bytes(self.base)
        write_cut(kit.cut, op.index)
        code, error = None, ""
        try:
            with self._open() as dev:
                try:
                    self._update(dev)
                    error = f"the update finished: operation {op.index} was never reached"
                except Exception:  # the device stopped dead: the link breaks wherever it was
                    pass
                code = dev.transport.wait_exit(10.0)[0]
        except Exception as e:  # noqa: BLE001  (a cut before the handshake: a write of the boot itself)
            if f"QEMU exited with code {CUT_EXIT}" in str(e):
                code = CUT_EXIT
            else:
                error = f"{type(e).__name__}: {e}"
        if code != CUT_EXIT and not error:
            error = f"QEMU exited with code {code}, not the cut's {CUT_EXIT}"
        kit.cut.unlink(missing_ok=True)  # power back on, no cut
        digests = {image_digest(kit.old)[:8]: "old", image_digest(kit.new)[:8]: "new"}
        ended, resumed, reason = None, False, 0
        try:
            with self._open() as dev:
                up = UpdateClient(dev)
                st = up.status()
                if st.trial:  # the cut came before the trial ended: it runs now
                    resumed = True
                    for _ in range(kit.trial_runs):
                        dev.infer(kit.x[0])
                    st = up.status()
                reason = st.last_reason
                got = digests.get(st.running_digest()) if st.running != NO_SLOT else None
                out = dev.infer(kit.x[0]).output.reshape(-1)
                if st.trial:
                    error = error or f"still on trial after its runs ({st.describe()})"
                elif got is None:
                    error = error or f"runs neither release ({st.describe()})"
                elif not np.array_equal(out, np.asarray(kit.y[0]).reshape(-1)):
                    error = error or "INFER differs from tflite-micro's output"
                ended = got
        except Exception as e:  # noqa: BLE001
            error = error or f"after the cut: {type(e).__name__}: {e}"
        return CutResult(op, ended, code, resumed, reason, error)

    def run(self, points: Sequence[int] | str | None = None,
            progress: Callable[[CutResult], None] | None = None) -> SweepResult:
        """Cut at every operation (``points`` None), at the listed ones, or "cover" (:func:`covering_points`)."""
        t0 = time.monotonic()
        ops = self.prepare()
        res = SweepResult(self.kit.board.name, "over an older release" if self.kit.older else "into an empty slot", ops)
        if points == "cover":
            points = covering_points(ops)
        bad = [k for k in (points or ()) if not 0 <= k < len(ops)]
        if bad:
            raise ToolkitError(f"cut points {bad}: the update has {len(ops)} flash operations (0..{len(ops) - 1})",
                               hint="python -m aiot.lifecycle.sweep --points cover")
        for k in (range(len(ops)) if points is None else points):
            r = self.cut(ops[k])
            res.results.append(r)
            if progress:
                progress(r)
        res.seconds = time.monotonic() - t0
        return res


def covering_points(ops: Sequence[FlashOp]) -> list[int]:
    """A few cut points that cover each (kind, area, phase) met in the update once: the
    first erase and program of each area in each phase, and the last operation."""
    seen, out = set(), []
    for o in ops:
        if (o.kind, o.area, o.phase) not in seen:
            seen.add((o.kind, o.area, o.phase))
            out.append(o.index)
    if ops and ops[-1].index not in out:
        out.append(ops[-1].index)
    return out


def build_kit(board, out: Path, *, model: Path | None = None, trial_runs: int = 3) -> SweepKit:
    """Key, firmware with the cut (``model`` compiled in; default the hil ae24 model) and
    releases of that model (1.2.0 old, 1.3.0 new, 1.1.0 older: set ``older`` to sweep over
    it) with golden vectors from tflite-micro."""
    from aiot.codegen import generate
    from aiot.lifecycle import package as P
    from aiot.lifecycle.firmware import build_update_firmware
    from aiot.model.reference import TflmReference
    from aiot.paths import ROOT

    from aiot.lifecycle.firmware import update_layout

    if update_layout(board).records is not None:  # absolute addresses: a real part's flash, no host file to cut
        raise ToolkitError(f"board {board.name}: the power-cut sweep runs on emulated boards only (its update region "
                           "is a host file there)", hint="python -m aiot.lifecycle.sweep --board mps2-an386")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(model) if model else ROOT / "hil_tests" / "fixtures" / "ae24" / "model.tflite"
    if not model.exists():
        raise ToolkitError(f"model {model} not found", hint="python -m aiot.lifecycle.sweep --model model.tflite")
    tfl = model.read_bytes()
    key = out / "release.pem"  # a key for this sweep only, kept for the next run over the same folder
    if not key.exists():
        P.generate_key(key)
    generate(model, out / "model-c", name=model.stem)
    flash, cut = out / "flash.bin", out / "cut.bin"
    fw = build_update_firmware(board, out / "fw", out / "model-c", public_key=P.public_key(key), trial_runs=trial_runs,
                               flash_file=flash, device_id="sweep-qemu-0001", defines=[cut_define(cut)])
    ref = TflmReference(tfl)
    n_in = int(np.prod(ref.input_details["shape"]))
    x = np.random.default_rng(0).integers(-128, 128, (4, n_in), dtype=np.int8)
    y = ref.run(x).reshape(len(x), -1)
    schema = P.schema_id([f"c{i}" for i in range(n_in)], 1)

    def release(version: str) -> bytes:
        body = P.build_container({"name": model.stem}, tflite=tfl, golden=list(zip(x, y)), schema=schema,
                                 model_version=int(version.split(".")[1]))
        return P.sign(body, key, version=version, out=out / f"{version}.bin")

    return SweepKit(board, fw.elf, flash, cut, release("1.2.0"), release("1.3.0"), x, y, trial_runs, release("1.1.0"))


def main(argv: Sequence[str] | None = None) -> int:
    import click

    from aiot.target.boards import get_board

    @click.command(help=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
    @click.option("--board", default="mps2-an386", show_default=True, help="an emulated board with an [update] table")
    @click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                  help=".tflite compiled in and released twice (default: the hil ae24 model)")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/sweep"), show_default=True)
    @click.option("--points", default=None, help="cut points to run, e.g. 0,5,9 or 'cover' (default: every operation)")
    @click.option("--scenario", type=click.Choice(["empty", "reuse", "both"]), default="both", show_default=True,
                  help="the new release goes into an empty slot, or over an older release's slot")
    @click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
    @click.option("-v", "--verbose", is_flag=True, help="one line per cut point")
    def cli(board, model, out, points, scenario, json_path, verbose):
        b = get_board(board)
        try:
            chosen = points if points in (None, "cover") else [int(p) for p in points.split(",")]
        except ValueError:
            raise click.BadParameter(f"{points!r}: not 'cover' nor numbers like 0,5,9", param_hint="--points") from None
        kit = build_kit(b, out, model=model)

        def show(r: CutResult) -> None:
            if verbose:
                o = r.op
                click.echo(f"  cut {o.index:3d} {o.phase:17s} {o.kind:7s} {o.area} +0x{o.offset:x} ({o.length} B): "
                           f"{r.ended or 'NEITHER'}" + (" (trial ran again)" if r.trial_resumed else "")
                           + (f" ERROR {r.error}" if r.error else ""))

        runs = []
        for older in {"empty": [None], "reuse": [kit.older], "both": [None, kit.older]}[scenario]:
            runs.append(UpdateSweep(dataclasses.replace(kit, older=older)).run(chosen, progress=show))
            click.echo(runs[-1].line())
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"scenarios": [r.to_json() for r in runs]}, indent=1))
        return 0 if all(r.summary()["all_recovered"] for r in runs) else 1

    try:
        return cli.main(args=list(argv) if argv is not None else None, standalone_mode=False) or 0
    except ToolkitError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.ClickException as e:
        e.show()
        return e.exit_code


if __name__ == "__main__":
    if not shutil.which("qemu-system-arm"):
        sys.exit("needs qemu-system-arm (docs/lifecycle.md)")
    sys.exit(main())
