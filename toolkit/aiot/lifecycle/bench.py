"""Benchmark of the model as data on the emulated board: instructions per inference of
the package's plan walked by firmware/src/update/plan.c against the compiled-in model, on
the same golden vectors, measured by the device during a trial (QEMU -icount shift=0:
one instruction per ns, so instructions = ticks x 1e9 / tick_hz).

    python -m aiot.lifecycle.bench [MODEL.tflite VECTORS.npz]     # default: the HIL ae24 model
    python -m aiot.lifecycle.bench --served [MODEL.tflite VECTORS.npz]   # INFER: served plan vs compiled-in
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def plan_vs_compiled(tflite: Path, vectors: Path, board_name: str = "mps2-an386", n: int = 16,
                     defines: tuple[str, ...] = (), slot_size: int | None = None) -> dict:
    """``defines``: extra firmware defines (e.g. ``AIOT_UPDATE_PLAN_ARENA=16000u`` for a
    conv model); ``slot_size``: a larger emulated update slot than the board file's, for a
    package that does not fit it (the emulated region is a host file)."""
    from aiot.codegen import generate
    from aiot.device.hil import open_device
    from aiot.lifecycle import package as P
    from aiot.lifecycle.client import UpdateClient
    from aiot.lifecycle.firmware import build_update_firmware
    from aiot.lifecycle.plan import build_plan
    from aiot.model.reference import TflmReference
    from aiot.target.boards import get_board

    tfl = Path(tflite).read_bytes()
    x = np.load(vectors)["x_int8"]
    x = x.reshape(len(x), -1)[:n]
    y = TflmReference(tfl).run(x).reshape(len(x), -1)
    board = get_board(board_name)
    if slot_size is not None:
        import dataclasses

        board = dataclasses.replace(board, update=dataclasses.replace(board.update, slot_size=slot_size))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = P.generate_key(d / "k.pem")
        generate(tfl, d / "c", name="bench")
        fw = build_update_firmware(board, d / "fw", d / "c", public_key=P.public_key(key), flash_file=d / "flash.bin",
                                   defines=defines, plan_ops="all")  # any model's plan
        img = P.sign(P.build_container({}, tflite=tfl, golden=list(zip(x, y)), plan=build_plan(tfl), schema=1,
                                       model_version=1), key, version="1.0.0", out=d / "rel.bin")
        with open_device(board=board, elf=fw.elf) as dev:
            up = UpdateClient(dev)
            up.send(img)
            up.reboot()
            st = up.status()
            hz = dev.info().tick_hz
    if st.golden_path != 2 or not st.timed_runs or not st.compiled_ticks:
        raise RuntimeError(f"the trial did not time both paths: {st}")
    per = lambda t: t / st.timed_runs * 1e9 / hz  # noqa: E731
    return {"inferences": st.timed_runs, "plan_instructions": per(st.plan_ticks),
            "compiled_instructions": per(st.compiled_ticks), "ratio": st.plan_ticks / st.compiled_ticks,
            "plan_bytes": len(build_plan(tfl))}


def served_vs_compiled(tflite: Path, vectors: Path, board_name: str = "mps2-an386") -> dict:
    """Instructions per INFER (the device's own tick count around the invoke) on the same
    vectors: firmware without update support (compiled-in model), the update firmware with
    no release (compiled-in model through the served-model pointers), and the same firmware
    once a release of the same model with its plan is confirmed (the plan serves). Every
    output is checked against tflite-micro's."""
    from aiot.codegen import generate
    from aiot.device.hil import open_device
    from aiot.lifecycle import package as P
    from aiot.lifecycle.client import UpdateClient
    from aiot.lifecycle.firmware import build_update_firmware
    from aiot.lifecycle.plan import build_plan
    from aiot.model.reference import TflmReference
    from aiot.target import firmware
    from aiot.target.boards import get_board

    tfl = Path(tflite).read_bytes()
    x = np.load(vectors)["x_int8"]
    x = x.reshape(len(x), -1)
    y = TflmReference(tfl).run(x).reshape(len(x), -1)
    board = get_board(board_name)

    def infer_all(dev) -> list[int]:
        ticks = []
        for row, want in zip(x, y):
            r = dev.infer(row)
            if not np.array_equal(r.output.reshape(-1), want):
                raise RuntimeError("device output differs from tflite-micro's")
            ticks.append(r.ticks)
        return ticks

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = P.generate_key(d / "k.pem")
        generate(tfl, d / "c", name="bench")
        plain = firmware.build(board, d / "plain", d / "c")
        fw = build_update_firmware(board, d / "fw", d / "c", public_key=P.public_key(key), trial_runs=2,
                                   flash_file=d / "flash.bin")
        img = P.sign(P.build_container({"name": "bench-plan"}, tflite=tfl, golden=list(zip(x[:16], y[:16])),
                                       plan=build_plan(tfl), schema=1, model_version=1), key, version="1.0.0",
                     out=d / "rel.bin")
        with open_device(board=board, elf=plain.elf) as dev:
            hz = dev.info().tick_hz
            t_plain = infer_all(dev)
        with open_device(board=board, elf=fw.elf) as dev:
            up = UpdateClient(dev)
            t_upd = infer_all(dev)
            up.send(img)
            up.reboot()
            while up.status().trial:
                dev.infer(x[0])
            if not up.status().serving_plan:
                raise RuntimeError(f"the release's plan does not serve: {up.status()}")
            t_served = infer_all(dev)
    per = lambda t: sum(t) / len(t) * 1e9 / hz  # noqa: E731
    return {"inferences": len(x), "tick_hz": hz, "compiled_no_update": per(t_plain), "compiled_update_fw": per(t_upd),
            "served_plan": per(t_served)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--served"]:
        from aiot.paths import ROOT

        args = sys.argv[2:] or [str(ROOT / "hil_tests/fixtures/ae24/model.tflite"), str(ROOT / "hil_tests/fixtures/ae24/vectors.npz")]
        r = served_vs_compiled(Path(args[0]), Path(args[1]))
        print(f"{args[0]}: instructions per INFER over {r['inferences']} inferences (ticks at {r['tick_hz']} Hz): "
              f"compiled-in, no update support {r['compiled_no_update']:.0f}; compiled-in, update firmware "
              f"{r['compiled_update_fw']:.0f}; the confirmed release's plan serving {r['served_plan']:.0f} "
              f"({100 * (r['served_plan'] / r['compiled_no_update'] - 1):+.2f} %)")
        sys.exit(0)
    from aiot.paths import ROOT

    args = sys.argv[1:] or [str(ROOT / "hil_tests/fixtures/ae24/model.tflite"), str(ROOT / "hil_tests/fixtures/ae24/vectors.npz")]
    r = plan_vs_compiled(Path(args[0]), Path(args[1]))
    print(f"{args[0]}: plan {r['plan_instructions']:.0f} vs compiled {r['compiled_instructions']:.0f} instructions per "
          f"inference over {r['inferences']} inferences (x{r['ratio']:.4f}, {100 * (r['ratio'] - 1):+.2f} %); "
          f"plan {r['plan_bytes']:,} bytes")
