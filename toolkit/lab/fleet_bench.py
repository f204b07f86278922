"""Fleet benchmarks (figures for docs/fleet.md; never run by the test suite). From a checkout:

    PYTHONPATH=toolkit python -m lab.fleet_bench gateway [--events 10000] [--mqtt mqtt://HOST:PORT]
    PYTHONPATH=toolkit python -m lab.fleet_bench evaluate --data DIR [--format skab] [--workers 0,1,2] [--limit N]
    PYTHONPATH=toolkit python -m lab.fleet_bench rollout [--devices 50] [--gateways 2] [--canary 5%]

gateway: events per second through one gateway, end to end (a synthetic device hands its
events over in batches of 8 as the firmware does, each batch fsync'd into the journal
before its ack, published QoS 1, counted when a subscriber has them), and the journal's
size per 10,000 events. Starts mosquitto on a free loopback port unless --mqtt is given.

evaluate: installations per minute of `aiot evaluate --per-file --scheduler local` with 1
and 2 workers, and of the local path without Dask (workers 0, the baseline whose predictions
the others are compared with); every model trained afresh: an empty model cache per run.

rollout: the wall time of `aiot rollout`'s work (Rollout.run) for a release of the ae24 test
model (hil_tests/fixtures/ae24) to N host-built devices (aiot.device.host: the firmware's C,
trial = the golden vectors, trial_runs=1) behind G gateways, canary first."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiot.errors import ToolkitError

EVENT_CYCLE = [("ALERT_RAISED", "ANOMALY"), ("SEVERITY_CHANGED", "ANOMALY"), ("ALERT_CLEARED", "NORMAL"),
               ("DRIFT_DETECTED", "DRIFT"), ("RECAL_DONE", "NORMAL")]


class SyntheticDevice:
    """``total`` monitor events, handed over ``batch`` at a time like the firmware's EVENTS."""

    def __init__(self, total: int, batch: int = 8):
        self.total, self.batch, self.next = total, batch, 0

    def event_batches(self):
        """One batch at a time, as aiot.device.hil.Device hands them over (a batch counts as
        acknowledged when the next one is asked for)."""
        from aiot.monitor import Event

        for _ in range(8):  # hand control back now and then, as Device does
            if self.next >= self.total:
                return
            batch = []
            for seq in range(self.next, min(self.next + self.batch, self.total)):
                kind, state = EVENT_CYCLE[seq % len(EVENT_CYCLE)]
                batch.append(Event(timestamp_ms=1000 * seq, seq=seq & 0xFFFF, type=kind, channel=1, channels=(1, 2),
                                   severity=2 if kind.startswith("ALERT_R") else 0, state=state, value=1.5))
            yield batch
            self.next += len(batch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto(workdir: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise ToolkitError("mosquitto is not installed", hint="apt-get install -y mosquitto (make setup), or pass --mqtt")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"mqtt://127.0.0.1:{port}"


def bench_gateway(events: int, mqtt: str | None = None) -> dict:
    import paho.mqtt.client as mqttc

    from aiot.fleet.gateway import Gateway, parse_broker

    work = Path(tempfile.mkdtemp(prefix="aiot-gw-bench-"))
    broker = None
    try:
        if mqtt is None:
            broker, mqtt = _mosquitto(work)
        host, port = parse_broker(mqtt)
        got = set()
        done = threading.Event()

        def on_message(_c, _u, msg):
            p = json.loads(msg.payload)
            if "seq" in p and p.get("kind") != "state":
                got.add(p["id"])
                if len(got) >= events:
                    done.set()

        sub = mqttc.Client(mqttc.CallbackAPIVersion.VERSION2, protocol=mqttc.MQTTv5)
        sub.on_message = on_message
        sub.connect(host, port)
        sub.subscribe("aiot/bench/#", qos=1)
        sub.loop_start()
        time.sleep(0.3)
        gw = Gateway(work / "journal.db", mqtt, site="bench", gateway_id="bench")
        dev = SyntheticDevice(events)
        gw.add("dev1", lambda: dev, poll=0.0, stats_every=0)
        t0 = time.monotonic()
        gw.start()
        finished = done.wait(max(60.0, events / 50))
        seconds = time.monotonic() - t0
        journaled = gw.bridges[0].journaled
        gw.stop(drain=5)
        sub.loop_stop()
        sub.disconnect()
        db = work / "journal.db"
        from aiot.fleet.journal import Journal

        j = Journal(db)
        j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.stat().st_size  # every message still in it (the run is shorter than a prune period)
        pruned = j.prune()
        j._db.execute("VACUUM")
        j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        j.close()
        after = db.stat().st_size
        return {
            "events": events, "delivered": len(got), "finished": finished, "seconds": round(seconds, 2),
            "events_per_second": round(len(got) / seconds, 1), "journal_messages": journaled,
            "journal_bytes_per_10k_events": round(size * 10_000 / events),
            "journal_bytes_after_prune": after, "pruned_messages": pruned,
            "protocol": ("one gateway, one synthetic device handing over batches of 8 events (each batch one "
                         "fsync'd SQLite transaction, synchronous=FULL, WAL) as fast as journaled; published QoS 1 "
                         "to a local mosquitto, at most 64 in flight; timed from start until a QoS 1 subscriber "
                         "on the same host holds every event (state-change messages not counted); journal size = "
                         "the database after a WAL checkpoint, every message kept (before pruning)"),
            "host": f"{os.cpu_count()} CPU(s), {sys.platform}",
        }
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def bench_rollout(devices: int, gateways: int, canary: str, mqtt: str | None = None) -> dict:
    import numpy as np

    from aiot.codegen import generate
    from aiot.device.host import HostFirmware
    from aiot.fleet.gateway import Gateway, parse_broker
    from aiot.fleet.rollout import Rollout
    from aiot.lifecycle import package as P
    from aiot.model.reference import TflmReference
    from aiot.paths import ROOT

    work = Path(tempfile.mkdtemp(prefix="aiot-rollout-bench-"))
    broker, gws, boards = None, [], []
    try:
        if mqtt is None:
            broker, mqtt = _mosquitto(work)
        ae24 = ROOT / "hil_tests" / "fixtures" / "ae24"
        generate(ae24 / "model.tflite", work / "model-c", name="ae24")
        tfl = (ae24 / "model.tflite").read_bytes()
        x = np.load(ae24 / "vectors.npz")["x_int8"].reshape(-1, 24)[:4]
        key = P.generate_key(work / "release.pem")
        image = P.sign(P.build_container({"name": "ae24"}, tflite=tfl, golden=list(zip(x, TflmReference(tfl).run(x))),
                                         schema=P.schema_id(["a", "b", "c"], 8), model_version=1),
                       key, version="1.1.0", out=work / "ae24-1.1.0.bin")
        fw = HostFirmware(work / "model-c", public_key=P.public_key(key), trial_runs=1,
                          defines=("AIOT_APP_CHANNELS=3", "AIOT_APP_WINDOW=8", "AIOT_APP_PERIOD_MS=1000"))
        names = [f"pump-{i:04d}" for i in range(devices)]
        boards = [fw.power_on(n) for n in names]
        for g in range(gateways):
            gw = Gateway(work / f"gw{g}.db", mqtt, site="bench", gateway_id=f"gw{g}", commands=True)
            for n, b in list(zip(names, boards))[g::gateways]:
                gw.add(n, b.opener(), stats_every=0, poll=0.1)
            gws.append(gw.start())
        time.sleep(2.0)  # every bridge and command session up
        marks = []
        r = Rollout.start(work / "rollout.json", site="bench", release="ae24-1.1.0", image=image, devices=names,
                          canary=canary, trial_timeout=60)
        t0 = time.monotonic()
        summary = r.run(parse_broker(mqtt), canary_timeout=120, timeout=600,
                        progress=lambda m: marks.append((time.monotonic() - t0, m)))
        seconds = time.monotonic() - t0
        canary_done = next((t for t, m in marks if m.startswith("every canary passed")), None)
        return {"devices": devices, "gateways": gateways, "canary": len(summary["canary"]), "phase": summary["phase"],
                "passed": len(summary["passed"]), "release_bytes": len(image), "seconds": round(seconds, 2),
                "canary_seconds": None if canary_done is None else round(canary_done, 2),
                "protocol": ("host-built devices (the firmware's C in-process, trial = golden vectors, trial_runs=1), "
                             "one bridge thread per device, mosquitto on the same host; timed from the rollout's start "
                             "to its last device's final outcome"),
                "host": f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"}
    finally:
        for gw in gws:
            gw.stop()
        for b in boards:
            b.close()
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def bench_evaluate(data: Path, fmt: str, workers: list[int], limit: int | None, epochs: int,
                   train_rows: int | None, keep: Path | None = None) -> list[dict]:
    """``workers`` 0 is the local path (one process, no Dask): the baseline the others'
    predictions are compared with."""
    from aiot.evaluate.run import evaluate

    rows = []
    for w in workers:
        work = Path(tempfile.mkdtemp(prefix=f"aiot-fleet-bench-{w}-"))
        os.environ["AIOT_CACHE_DIR"] = str(work / "cache")  # every model trained afresh
        out = (keep / f"workers-{w}") if keep else work / "out"
        t0 = time.monotonic()
        summary = evaluate(data=data, fmt=fmt, out=out, per_file=True, target="host", epochs=epochs,
                           jobs=max(w, 1), limit=limit, scheduler="local" if w else None, train_rows=train_rows,
                           skip_bad_files=True)
        minutes = (time.monotonic() - t0) / 60
        models = [f["commissioning"]["model"]["sha256"] for f in json.loads((out / "report.json").read_text())["files"]]
        rows.append({"workers": w or "local (no Dask)", "installations": summary["files"], "minutes": round(minutes, 2),
                     "installations_per_minute": round(summary["files"] / minutes, 2),
                     "predictions_sha256": _sha(out / "predictions.csv"), "model_sha256": models})
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _sha(path: Path) -> str:
    from aiot.data import sha256_file

    return sha256_file(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.fleet_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("gateway")
    g.add_argument("--events", type=int, default=10_000)
    g.add_argument("--mqtt", default=None)
    r = sub.add_parser("rollout")
    r.add_argument("--devices", type=int, default=50)
    r.add_argument("--gateways", type=int, default=2)
    r.add_argument("--canary", default="5%")
    r.add_argument("--mqtt", default=None)
    e = sub.add_parser("evaluate")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--format", default="skab")
    e.add_argument("--workers", default="1,2")
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--epochs", type=int, default=30)
    e.add_argument("--train-rows", type=int, default=None)
    e.add_argument("--keep", type=Path, default=None, help="keep each run's reports in KEEP/workers-N")
    a = ap.parse_args(argv)
    try:
        if a.what == "gateway":
            res = bench_gateway(a.events, a.mqtt)
        elif a.what == "rollout":
            res = bench_rollout(a.devices, a.gateways, a.canary, a.mqtt)
        else:
            res = {"data": str(a.data), "format": a.format, "epochs": a.epochs, "limit": a.limit,
                   "runs": bench_evaluate(a.data, a.format, [int(x) for x in a.workers.split(",")], a.limit,
                                          a.epochs, a.train_rows, a.keep),
                   "protocol": "aiot evaluate --per-file --target host --scheduler local (LocalCluster, one thread "
                               "per worker), empty model cache per run; wall time of the whole evaluate call "
                               "(reading, cluster start, every task, reports)",
                   "host": f"{os.cpu_count()} CPU(s) shared with other work"}
    except ToolkitError as err:
        sys.exit(f"error: {err.message}" + (f"\n  hint: {err.hint}" if err.hint else ""))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
