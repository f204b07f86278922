"""Local release registry: one folder (no server) holding every signed release, its
lineage (data hash, settings, parent release), the model ABI it needs, its evaluation
reports, the gate's verdict, and which device runs which release; and the firmware image
each commissioned installation runs (`aiot commission --fleet`: its model compiled in).

    reg = Registry(Path("build/registry"))
    rel = reg.add(signed_image, name=..., version=..., parent="pump-ae-1.2.0", report=..., gate=...,
                  model_dir=PKG, alert_settings={...}, evaluations={"candidate": DIR, "current": DIR})
    reg.promote(rel.id, device="uid:0123456789abcdef", firmware_abi=1, label="pump-room-3")
    reg.rollback("pump-room-3")          # a device by its id or its label
    reg.add_image("pump7", {"board": ..., "elf": "pump7/firmware.elf", ...})

Layout: registry.json (the index, rewritten atomically: written to a temporary file,
renamed), ID.bin (the signed release) and ID/ (ID/model: the package the release was made
from, manifest.json + model.tflite + alert-settings.json, which later gates evaluate again;
ID/evaluation/candidate|current: the gate's two `aiot evaluate` reports). Devices are keyed
by the id their INFO answer reports; a label (the installation's name) is an alias."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from aiot.errors import ToolkitError
from aiot.lifecycle import package as P
from aiot.lifecycle.client import image_digest


#: The alert settings a release was gated with, kept beside its model.
ALERT_SETTINGS = "alert-settings.json"


@dataclass
class Release:
    id: str
    entry: dict


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.index = self.root / "registry.json"

    def _load(self) -> dict:
        if not self.index.is_file():
            return {"releases": {}, "devices": {}, "images": {}}
        try:
            doc = json.loads(self.index.read_text())
        except json.JSONDecodeError as e:
            raise ToolkitError(f"{self.index} is not valid JSON ({e})",
                               hint="restore it from a backup; the release files next to it are intact") from e
        doc.setdefault("images", {})  # a registry written before it held commissioned images
        return doc

    def _save(self, doc: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index.with_name(f".registry.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.index)

    def add(self, image: bytes, *, name: str, version: str, parent: str | None = None, report: dict | None = None,
            gate: dict | None = None, model_dir: Path | None = None, alert_settings: dict | None = None,
            evaluations: dict[str, Path] | None = None) -> Release:
        """Record a signed release. ``model_dir``: the `aiot train` package it was made from
        (its manifest.json and model.tflite are kept, with ``alert_settings``, so that a later
        candidate's gate can evaluate this release again); ``evaluations``: name -> an
        `aiot evaluate` output folder whose report.json and report.html are kept."""
        body = image[P.IMAGE_HEADER_SIZE:]
        c = P.read_container(body)
        rid = f"{name}-{version}"
        doc = self._load()
        if rid in doc["releases"]:
            raise ToolkitError(f"release {rid} is already in the registry {self.root}",
                               hint="give the new release another --version")
        if parent is not None and parent not in doc["releases"]:
            raise ToolkitError(f"parent release {parent} is not in the registry {self.root}",
                               hint="aiot models list shows the releases it holds")
        self.root.mkdir(parents=True, exist_ok=True)
        files = self.root / rid
        if files.exists():  # left by an add that failed before the index named it
            shutil.rmtree(files)
        stored: dict = {}
        if model_dir is not None:
            (files / "model").mkdir(parents=True)
            for f in ("manifest.json", "model.tflite"):
                shutil.copy2(Path(model_dir) / f, files / "model" / f)
            if alert_settings is not None:
                (files / "model" / ALERT_SETTINGS).write_text(json.dumps(alert_settings, indent=2) + "\n")
            stored["model"] = f"{rid}/model"
        for what, folder in (evaluations or {}).items():
            (files / "evaluation" / what).mkdir(parents=True)
            for f in ("report.json", "report.html"):
                if (Path(folder) / f).is_file():
                    shutil.copy2(Path(folder) / f, files / "evaluation" / what / f)
            stored[f"evaluation_{what}"] = f"{rid}/evaluation/{what}/report.json"
        path = self.root / f"{rid}.bin"
        path.write_bytes(image)
        meta = c["meta"]
        entry = {
            "file": path.name, "name": name, "version": version, "digest": image_digest(image).hex(),
            "abi": c["abi"], "schema_id": c["schema_id"], "model_version": c["model_version"],
            "data_hash": meta.get("data_hash"), "settings": meta.get("settings"), "parent": parent,
            "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "report": report, "gate": gate, "alert_settings": alert_settings, "stored": stored,
        }
        doc["releases"][rid] = entry
        self._save(doc)
        return Release(rid, entry)

    def add_image(self, installation: str, entry: dict) -> dict:
        """Record the firmware image commissioned for ``installation`` (paths relative to the
        registry folder, hashes, model, board); a new commissioning replaces the entry, the
        model it replaces is kept under ``previous_models``."""
        doc = self._load()
        old = doc["images"].get(installation)
        history = [] if old is None else [*old.get("previous_models", []), old.get("model_sha256")]
        doc["images"][installation] = {**entry, "installation": installation, "previous_models": history,
                                       "registered": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._save(doc)
        return doc["images"][installation]

    def images(self) -> dict[str, dict]:
        return self._load()["images"]

    def releases(self) -> dict[str, dict]:
        return self._load()["releases"]

    def devices(self) -> dict[str, dict]:
        return self._load()["devices"]

    def get(self, rid: str) -> dict:
        rel = self.releases().get(rid)
        if rel is None:
            raise ToolkitError(f"no release {rid} in the registry {self.root}", hint="aiot models list")
        return rel

    def image(self, rid: str) -> bytes:
        return (self.root / self.get(rid)["file"]).read_bytes()

    def model_dir(self, rid: str) -> Path | None:
        """The package ``rid`` was made from (manifest.json, model.tflite), if it was kept."""
        stored = (self.get(rid).get("stored") or {}).get("model")
        return self.root / stored if stored and (self.root / stored / "manifest.json").is_file() else None

    def alert_settings_file(self, rid: str) -> Path | None:
        d = self.model_dir(rid)
        return d / ALERT_SETTINGS if d is not None and (d / ALERT_SETTINGS).is_file() else None

    def digest_release(self, digest: bytes) -> str | None:
        """The id of the release whose image digest is ``digest`` (or starts with it)."""
        for rid, r in self.releases().items():
            if bytes.fromhex(r["digest"]).startswith(digest):
                return rid
        return None

    @staticmethod
    def _resolve(doc: dict, device: str) -> str | None:
        if device in doc["devices"]:
            return device
        named = [d for d, e in doc["devices"].items() if device in e.get("labels", [])]
        return named[0] if named else None

    def device(self, device: str) -> tuple[str, dict]:
        """(id, record) of a device named by its INFO id or one of its labels."""
        doc = self._load()
        did = self._resolve(doc, device)
        if did is None:
            raise ToolkitError(f"no device {device} in the registry {self.root}",
                               hint="aiot models list shows the devices (by INFO id and label); aiot update "
                                    "records a device when it updates it")
        return did, doc["devices"][did]

    def promote(self, rid: str, *, device: str, firmware_abi: int | None = None, label: str | None = None) -> dict:
        """Record that ``device`` (its INFO id, or a label it already has) should run ``rid``;
        refuses a release its firmware cannot run. ``label`` names the device (an alias)."""
        doc = self._load()
        rel = doc["releases"].get(rid)
        if rel is None:
            raise ToolkitError(f"no release {rid} in the registry {self.root}", hint="aiot models list")
        did = self._resolve(doc, device) or device
        if label:
            other = self._resolve(doc, label)
            if other is not None and other != did:
                raise ToolkitError(f"label {label} already names device {other}",
                                   hint="give this device another --label")
        dev = doc["devices"].setdefault(did, {"release": None, "history": [], "firmware_abi": None})
        labels = dev.setdefault("labels", [])
        if label and label not in labels:
            labels.append(label)
        if firmware_abi is not None:
            dev["firmware_abi"] = int(firmware_abi)
        if dev["firmware_abi"] is None:
            raise ToolkitError(f"the registry does not know which model ABI device {device}'s firmware runs",
                               hint="pass --firmware-abi N (aiot update --port P --board B prints the device's status)")
        if rel["abi"] != dev["firmware_abi"]:
            raise ToolkitError(
                f"release {rid} needs model ABI {rel['abi']}, device {device}'s firmware runs ABI {dev['firmware_abi']}",
                hint="update the device's firmware first, or promote a release built for its ABI")
        if dev["release"] == rid:  # recorded again (aiot update run twice): no new history entry
            self._save(doc)
            return dev
        if dev["release"]:
            dev["history"].append(dev["release"])
        dev["release"] = rid
        self._save(doc)
        return dev

    def rollback(self, device: str) -> dict:
        doc = self._load()
        dev = doc["devices"].get(self._resolve(doc, device) or device)
        if not dev or not dev["history"]:
            raise ToolkitError(f"device {device} has no earlier release to roll back to",
                               hint="aiot models list shows what each device ran")
        dev["release"] = dev["history"].pop()
        self._save(doc)
        return dev


# ---------------------------------------------------------------------------------------
# Release gate: the candidate against the current release on the installation's history


def _incidents(report: dict) -> dict[tuple, bool]:
    return {(f["file"], i["start_row"], i["end_row"]): bool(i["detected"]) for f in report["files"] for i in f["incidents"]}


def _false_alarms(report: dict) -> int:
    return sum(1 for f in report["files"] for a in f["alerts"] if not a["true"])


def gate(candidate: dict, current: dict) -> dict:
    """Compare two `aiot evaluate` report.json documents made on the same recorded history.
    Returns {"passed", "missed" (incidents current caught and candidate misses), "false_alarms"}."""
    cand_inc, cur_inc = _incidents(candidate), _incidents(current)
    if set(cand_inc) != set(cur_inc):
        raise ToolkitError("the two evaluation reports cover different incidents: they were not made on the same history",
                           hint="run aiot evaluate for both releases on the same installation data")
    missed = sorted(k for k, caught in cur_inc.items() if caught and not cand_inc[k])
    fa = {"candidate": _false_alarms(candidate), "current": _false_alarms(current)}
    return {
        "passed": not missed and fa["candidate"] <= fa["current"],
        "missed": [{"file": f, "start_row": s, "end_row": e} for f, s, e in missed],
        "false_alarms": fa,
        "caught": {"candidate": sum(cand_inc.values()), "current": sum(cur_inc.values()), "incidents": len(cur_inc)},
    }
