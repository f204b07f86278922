"""Release registry and gate: `aiot release` refuses a candidate that misses an incident
the current release caught or raises more false alarms (unless the regression is accepted,
and then the reason is recorded); `aiot models` promotes only to firmware that can run it."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("imgtool")

from aiot.cli import main  # noqa: E402
from aiot.errors import ToolkitError  # noqa: E402
from aiot.lifecycle.registry import Registry, gate  # noqa: E402
from aiot.paths import ROOT  # noqa: E402

AE24 = ROOT / "hil_tests" / "fixtures" / "ae24"


def _report(detected=(True, True, False), false_alarms=1):
    incidents = [{"start_row": 100 * i, "end_row": 100 * i + 20, "detected": d} for i, d in enumerate(detected)]
    alerts = [{"start_row": 5 + 10 * k, "end_row": 6 + 10 * k, "true": False} for k in range(false_alarms)]
    alerts += [{"start_row": 100 * i + 3, "end_row": 100 * i + 9, "true": True} for i, d in enumerate(detected) if d]
    return {"aggregate": {}, "files": [{"file": "valve1/3.csv", "incidents": incidents, "alerts": alerts}]}


def test_gate_refuses_a_missed_incident_and_more_false_alarms():
    current = _report()
    assert gate(_report(), current)["passed"]
    assert gate(_report((True, True, True), 0), current)["passed"]  # better on both
    missed = gate(_report((True, False, True), 0), current)
    assert not missed["passed"] and missed["missed"] == [{"file": "valve1/3.csv", "start_row": 100, "end_row": 120}]
    noisier = gate(_report(false_alarms=2), current)
    assert not noisier["passed"] and noisier["false_alarms"] == {"candidate": 2, "current": 1}
    other = copy.deepcopy(current)
    other["files"][0]["incidents"][0]["start_row"] = 1
    with pytest.raises(ToolkitError, match="different incidents"):
        gate(_report(), other)


@pytest.fixture
def cli(tmp_path):
    runner = CliRunner()
    reg = tmp_path / "registry"
    key = tmp_path / "release.pem"

    def release(version, *extra):
        args = ["release", "--model", str(AE24 / "model.tflite"), "--vectors", str(AE24 / "vectors.npz"),
                "--golden", "4", "--channels", "a,b,c", "--window", "8", "--name", "pump-ae", "--version", version,
                "--key", str(key), "--registry", str(reg), *extra]
        if not key.exists():
            args.append("--new-key")
        return runner.invoke(main, args, catch_exceptions=False)

    def reports(**cand):
        (tmp_path / "cur.json").write_text(json.dumps(_report()))
        (tmp_path / "cand.json").write_text(json.dumps(_report(**cand)))
        return ["--report", str(tmp_path / "cand.json"), "--baseline-report", str(tmp_path / "cur.json")]

    def models(*args):
        return runner.invoke(main, ["models", *args, "--registry", str(reg)], catch_exceptions=False)

    return release, reports, models, reg


def test_release_gate_promote_rollback(cli):
    release, reports, models, reg = cli
    first = release("1.1.0")
    assert first.exit_code == 0, first.output
    worse = release("1.2.0", "--parent", "pump-ae-1.1.0", *reports(detected=(True, False, False)))
    assert worse.exit_code == 2 and "misses valve1/3.csv rows 100-120" in worse.output and "--accept-regression" in worse.output
    assert "pump-ae-1.2.0" not in Registry(reg).releases()  # nothing signed, nothing recorded
    noisier = release("1.2.0", "--parent", "pump-ae-1.1.0", *reports(false_alarms=3))
    assert noisier.exit_code == 2 and "false alarms 3 > 1" in noisier.output
    ok = release("1.2.0", "--parent", "pump-ae-1.1.0", *reports(detected=(True, True, True)))
    assert ok.exit_code == 0 and "PASSED" in ok.output, ok.output
    accepted = release("1.3.0", "--parent", "pump-ae-1.2.0", *reports(false_alarms=2),
                       "--accept-regression", "new sensor mounting; reviewed by ops")
    assert accepted.exit_code == 0, accepted.output
    rel = Registry(reg).get("pump-ae-1.3.0")
    assert rel["gate"]["accepted_regression"] == "new sensor mounting; reviewed by ops" and not rel["gate"]["passed"]
    assert rel["parent"] == "pump-ae-1.2.0" and rel["abi"] == 1 and rel["data_hash"]

    refused = models("promote", "--release", "pump-ae-1.2.0", "--device", "pump-room-3", "--firmware-abi", "2")
    assert refused.exit_code == 2 and "needs model ABI 1" in refused.output
    no_updates = reg.parent / "build.json"
    no_updates.write_text(json.dumps({"board": "nucleo-f446re"}))  # a firmware built without --update-key
    refused = models("promote", "--release", "pump-ae-1.2.0", "--device", "pump-room-3", "--firmware", str(no_updates))
    assert refused.exit_code == 2 and "takes no model updates" in refused.output
    no_updates.write_text(json.dumps({"board": "nucleo-f446re", "model_abi": 1}))
    assert models("promote", "--release", "pump-ae-1.2.0", "--device", "pump-room-3", "--firmware", str(no_updates)).exit_code == 0
    assert models("promote", "--release", "pump-ae-1.3.0", "--device", "pump-room-3").exit_code == 0
    listed = models("list").output
    assert "device pump-room-3: runs pump-ae-1.3.0" in listed and "regression accepted" in listed
    assert models("rollback", "--device", "pump-room-3").exit_code == 0
    assert Registry(reg).devices()["pump-room-3"]["release"] == "pump-ae-1.2.0"
    assert models("rollback", "--device", "pump-room-3").exit_code == 2  # nothing before 1.2.0


def test_devices_are_keyed_by_info_id_with_labels_as_aliases(cli):
    release, _, models, reg = cli
    assert release("1.1.0").exit_code == 0 and release("1.2.0", "--accept-regression", "no history yet").exit_code == 0
    uid = "uid:3a0021000b51363038383937"
    r = models("promote", "--release", "pump-ae-1.1.0", "--device", uid, "--label", "pump-room-3", "--firmware-abi", "1")
    assert r.exit_code == 0, r.output
    assert models("promote", "--release", "pump-ae-1.2.0", "--device", "pump-room-3").exit_code == 0  # by its label
    assert models("promote", "--release", "pump-ae-1.2.0", "--device", uid).exit_code == 0  # again: no new history
    d = Registry(reg).devices()
    assert list(d) == [uid] and d[uid]["release"] == "pump-ae-1.2.0" and d[uid]["history"] == ["pump-ae-1.1.0"]
    assert f"device {uid} (pump-room-3): runs pump-ae-1.2.0" in models("list").output
    other = models("promote", "--release", "pump-ae-1.1.0", "--device", "uid:00ff", "--label", "pump-room-3",
                   "--firmware-abi", "1")
    assert other.exit_code == 2 and f"label pump-room-3 already names device {uid}" in other.output
    assert models("rollback", "--device", "pump-room-3").exit_code == 0
    assert Registry(reg).devices()[uid]["release"] == "pump-ae-1.1.0"


def test_update_takes_the_release_as_package_too(tmp_path):
    """`aiot update --board B --port P --package REL` (the spelling of the lifecycle's
    description) is `--release REL`: the same file check, not an unknown option."""
    from click.testing import CliRunner

    from aiot.cli import main

    missing = tmp_path / "rel.bin"
    (tmp_path / "fw.elf").write_bytes(b"")  # the image is only looked at once the release was found
    for spelling in ("--release", "--package"):
        r = CliRunner().invoke(main, ["update", "--board", "mps2-an386", "--qemu", "--elf", str(tmp_path / "fw.elf"),
                                      spelling, str(missing)])
        assert r.exit_code == 2 and f"--release {missing}: no such file" in r.output, (spelling, r.output)
