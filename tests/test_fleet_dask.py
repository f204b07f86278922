"""The fleet on Dask: `aiot evaluate --per-file --scheduler local` (a LocalCluster) gives the
very bytes of predictions.csv the local processes give, and a failing installation is
reported while the others finish."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the fleet extra is not installed: pip install -e '.[fleet]'")


def write_installation(path: Path, rows: int, fault: tuple[int, int], seed: int) -> None:
    """A 3-sensor pump: sinusoidal load, noise, and a 15-sigma step on sensor b over ``fault``."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float64)
    v = np.stack([10 + 0.5 * np.sin(t / 7) + 0.1 * rng.normal(size=rows),
                  5 + 0.2 * rng.normal(size=rows),
                  0.3 * rng.normal(size=rows)], axis=1)
    v[fault[0]:fault[1], 1] += 3.0
    lab = np.zeros(rows, np.int8)
    lab[fault[0]:fault[1]] = 1
    lines = ["timestamp,a,b,c,label"] + [f"{int(ti)},{a:.5f},{b:.5f},{c:.5f},{y}"
                                         for ti, (a, b, c), y in zip(t, v, lab)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path) -> Path:
    data = tmp_path / "site"
    data.mkdir()
    for i, fault in enumerate([(600, 700), (650, 800), (700, 760)], start=1):
        write_installation(data / f"p{i}.csv", 900, fault, seed=i)
    return data


@pytest.mark.slow
def test_a_local_cluster_of_two_workers_gives_the_local_predictions_byte_for_byte(tmp_path, site, monkeypatch):
    from aiot.evaluate.run import evaluate

    (site / "short.csv").write_text("timestamp,a,b,c,label\n0,1,2,3,0\n1,1,2,3,0\n")  # cannot be commissioned

    from aiot.testing import fresh_model_cache

    outs = {}
    for how, scheduler in (("local", None), ("dask", "local")):
        # separate caches: each way trains its own models, none reuses the other's (the
        # suite's compiled C is shared, as any build shares it)
        fresh_model_cache(monkeypatch, tmp_path / f"cache-{how}")
        monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / f"build-{how}"))
        outs[how] = tmp_path / how
        # locally a bad file stops the run unless asked; on a cluster it is always reported and left out
        evaluate(data=site, fmt="generic", out=outs[how], train_rows=400, target="host", per_file=True,
                 epochs=3, jobs=1 if scheduler is None else 2, scheduler=scheduler,
                 skip_bad_files=scheduler is None)
    local = (outs["local"] / "predictions.csv").read_bytes()
    assert local.count(b"\n") > 3 * (900 - 400)  # every streamed row of the three files
    assert (outs["dask"] / "predictions.csv").read_bytes() == local
    reps = {how: json.loads((o / "report.json").read_text()) for how, o in outs.items()}
    [skipped] = reps["dask"]["aggregate"]["skipped_files"]
    assert skipped["file"].endswith("short.csv") and "2 rows" in skipped["reason"]
    assert reps["dask"]["aggregate"] == reps["local"]["aggregate"]
    assert [f["file"] for f in reps["dask"]["files"]] == [f["file"] for f in reps["local"]["files"]]


def test_a_failing_task_is_reported_by_name_and_the_others_finish():
    from aiot.fleet.dask_runner import dask_mapper

    before = dict(os.environ)
    mapper = dask_mapper("local", workers=2, name_of=str)
    got = list(mapper(int, ["1", "pump-x", "3"]))
    # and the caller's process is left as it was: Dask's nanny sets OMP_NUM_THREADS=1,
    # PYTHONHASHSEED, ... in os.environ (a TensorFlow trained after it would run on one thread)
    assert dict(os.environ) == before
    assert got[0] == 1 and got[2] == 3
    assert got[1][0] == "error" and got[1][1].startswith("pump-x: its task failed: ValueError")
    assert got[1][4] is True  # skippable: pipeline.run reports it with the skipped files


def test_pipeline_run_reports_a_failed_installation_and_keeps_the_rest(silent_device, tmp_path, site):
    """The seam: outcomes from a mapper go where the local pool's go."""
    from aiot.data import readers
    from aiot.evaluate import pipeline
    from aiot.evaluate.device import rule_for

    ds = readers.read("generic", site, None)
    settings = pipeline.Settings(format="generic", target="host", train_rows=400, train_fraction=None, window=8,
                                 epochs=1, jobs=1, rule=rule_for(8, per_file=True))

    def mapper(fn, tasks):
        for t in tasks:
            if t[0].name.endswith("p2.csv"):
                yield ("error", f"{t[0].name}: its task failed: MemoryError: ", "run it alone", 1, True)
            else:
                yield pipeline._worker_here(t)

    skipped: list = []
    results = pipeline.run(ds, settings, Path("unused-fleet-package"), skipped=skipped, mapper=mapper)
    assert [r.recording.name for r in results] == [r.name for r in ds.recordings if not r.name.endswith("p2.csv")]
    assert len(skipped) == 1 and skipped[0][0].endswith("p2.csv") and "MemoryError" in skipped[0][1]


def test_an_unreachable_scheduler_is_a_clear_error():
    from aiot.errors import ToolkitError
    from aiot.fleet.dask_runner import client_for

    with pytest.raises(ToolkitError) as e:
        with client_for("tcp://127.0.0.1:9", connect_timeout=1):
            pass
    assert "127.0.0.1:9" in e.value.message and "--scheduler local" in e.value.hint


@pytest.mark.slow
def test_commission_fleet_writes_one_image_per_installation_and_lists_the_failed_one(tmp_path):
    from aiot.testing import have_arm_toolchain

    if not have_arm_toolchain():
        pytest.skip("arm-none-eabi-gcc is not installed (make setup)")
    from aiot.fleet.commissioning import commission_fleet

    site = tmp_path / "site"
    site.mkdir()
    write_installation(site / "pump1.csv", 450, (440, 450), seed=1)
    (site / "pump2.csv").write_text("timestamp,a,b,c\n0,1,2,3\n1,1,2,3\n")  # two rows: nothing to learn from
    out = tmp_path / "registry"
    index = commission_fleet(site, "mps2-an386", out, scheduler="local", jobs=2, rows=400, epochs=2)
    from aiot.lifecycle.registry import Registry

    assert Registry(out).images() == {"pump1": index["installations"][0]}  # registered in the lifecycle registry
    [done] = index["installations"]
    assert done["installation"] == "pump1" and (out / done["elf"]).is_file() and done["elf"] == "pump1/firmware.elf"
    from aiot.data import sha256_file

    assert done["bin_sha256"] == sha256_file(out / done["bin"])
    assert json.loads((out / done["commission"]).read_text())["model"]["sha256"] == done["model_sha256"]
    [failed] = index["failed"]
    assert failed["installation"] == "pump2" and "pump2.csv" in failed["reason"] and "400" in failed["reason"]
