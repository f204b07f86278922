"""MQTT topic names and timestamps shared by the gateway, its command path and the rollout."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from aiot.errors import ToolkitError

TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.:-]+$")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def topic_level(name: str, what: str) -> str:
    """``name`` checked as one MQTT topic level (no '/', '+', '#', spaces)."""
    if not TOPIC_LEVEL.match(name or ""):
        raise ToolkitError(f"{what} {name!r} cannot be an MQTT topic level",
                           hint="use letters, digits and _ . : - only (e.g. --site plant-3 --name pump7)")
    return name


def topic(site: str, device: str, kind: str) -> str:
    return f"aiot/{site}/{device}/{kind}"
