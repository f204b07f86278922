"""What the device reported: the monitor's events of one evaluated file in report.json's
words (sensor names, the recording's clock, each value with its unit), the ones a
technician must act on, and the one line `aiot evaluate` prints about them."""

from __future__ import annotations

import collections

from aiot.data import format_time
from aiot.evaluate.outputs import DeviceEvent

#: The unit of each event type's value, as monitor.h (aiot_monitor_event_type_t) and
#: docs/monitor.md define it; None: the value means nothing (written as null).
UNITS = {
    "COMMISSIONED": None,
    "CALIBRATED": "window score",  # the largest calibration score: the alert threshold is alert_margin x it
    "ALERT_RAISED": "x alert threshold",
    "ALERT_CLEARED": "x alert threshold",
    "SEVERITY_CHANGED": "x alert threshold",
    "RECOVERING": "x alert threshold",
    "ALERT_HELD": "noise units",
    "DRIFT_DETECTED": "noise units",
    "RECAL_STARTED": "noise units",
    "RECAL_DONE": "noise units",
    "RECAL_REJECTED": "noise units",
    "RECAL_GAIN": "gain (x)",
    "BASELINE_LIMIT": None,
    "DATA_LOST": "valid fraction",
    "DATA_RESTORED": "valid fraction",
    "BASELINE_RESET": None,
    "COMMISSION_REJECTED": "samples",
    "CHANNEL_STUCK": "sensor units",
    "CALIBRATION_ALERT": "sensor units",
    "DRIFT_PERSISTENT": "hours",
    "TIME_RESET": "s",
    "CHANNEL_LOST": "minutes",
    "CHANNEL_BACK": "minutes",
}

#: The events that tell a user something about the installation itself (a sensor to look
#: at, a clock to fix): per type, a few words for the printed line ("bearing_temp lost") and a
#: sentence for report.html's table.
SERVICE = {
    "CALIBRATION_ALERT": ("calibration alert",
                          "calibration alert: its drift compensation passed its tolerance, service it"),
    "DRIFT_PERSISTENT": ("drift persistent", "in drift for drift_alarm_hours"),
    "CHANNEL_LOST": ("lost", "lost: no data for channel_lost_minutes, the others are monitored without it"),
    "CHANNEL_BACK": ("back", "back: it sends again and is scored again"),
    "CHANNEL_STUCK": ("stuck", "stuck: the same value throughout its commissioning"),
    "COMMISSION_REJECTED": ("commissioning samples rejected",
                            "samples rejected while commissioning (spikes, outliers, non-finite)"),
    "TIME_RESET": ("clock stepped back", "the clock stepped back"),
    "RECAL_GAIN": ("remounted with another gain",
                   "remounted with another gain (value): its readings are rescaled; check the mounting"),
    "ALERT_HELD": ("holds the alert",
                   "holds the alert: the score is back, this sensor is not (value: how far off); "
                   "remounted or repaired during the fault: reset its baseline"),
}
PRINTED = 3  #: service events named in the printed line; the rest are counted


def when(series, seconds: float) -> str | float:
    """A time in the recording's clock as report.json writes rows' times: ISO-8601 UTC for a
    dated recording, else its own number."""
    return format_time(seconds) if series.iso_time else round(float(seconds), 6)


def sensor_name(series, channel: int | None) -> str | None:
    if channel is None:
        return None
    return series.channels[channel] if 0 <= channel < len(series.channels) else f"channel {channel}"


def event_json(series, ev: DeviceEvent) -> dict:
    unit = UNITS.get(ev.type)
    return {"time": when(series, ev.time), "row": ev.row, "type": ev.type, "sensor": sensor_name(series, ev.channel),
            "sensors": [sensor_name(series, c) for c in ev.channels],
            "value": None if unit is None else round(ev.value, 6), "unit": unit,
            "severity": ev.severity, "state": ev.state, "seq": ev.seq}


def event_counts(events: list[DeviceEvent]) -> dict[str, int]:
    """How many events of each type, in the order each type first came."""
    return dict(collections.Counter(e.type for e in events))


def file_events(series, outputs) -> dict:
    """report.json's per-file ``events``, ``event_counts`` and ``events_dropped`` (null on a
    target without the device's monitor)."""
    if outputs.events is None:
        return {"events": None, "event_counts": None, "events_dropped": None}
    return {"events": [event_json(series, e) for e in outputs.events], "event_counts": event_counts(outputs.events),
            "events_dropped": outputs.events_dropped}


def service_events(series, outputs) -> list[dict]:
    """The events of :data:`SERVICE`, as report.json writes them."""
    return [event_json(series, e) for e in outputs.events or [] if e.type in SERVICE]


def pooled(results) -> dict:
    """report.json's aggregate ``device_events``: counts over all files, the service events
    (each with its file), and the files whose device dropped events."""
    counts: collections.Counter = collections.Counter()
    service, dropped = [], {}
    for r in results:
        out, s = r.outputs, r.recording.series
        if out.events is None:
            continue
        counts.update(e.type for e in out.events)
        service += [{"file": r.recording.name, **e} for e in service_events(s, out)]
        if out.events_dropped:
            dropped[r.recording.name] = out.events_dropped
    return {"counts": dict(counts), "service": service, "dropped": dropped}


def summary_line(device_events: dict | None) -> str:
    """One line on the service events and dropped events of a run ("" when none):
    "device events: bearing_temp lost (lost.csv, 2020-03-09T11:00:00Z), ...; and 4 more in
    report.json"."""
    if not device_events:
        return ""
    service, dropped = device_events.get("service", []), device_events.get("dropped", {})
    if not service and not dropped:
        return ""
    said = []
    for e in service[:PRINTED]:
        who = f"{e['sensor']} " if e.get("sensor") else ""
        said.append(f"{who}{SERVICE[e['type']][0] if e['type'] in SERVICE else e['type']} ({e['file']}, {e['time']})")
    line = "device events: " + (", ".join(said) if said else "no service event")
    if len(service) > PRINTED:
        line += f"; and {len(service) - PRINTED} more in report.json"
    if dropped:
        line += (f"; WARNING: the device's event ring overflowed, {sum(dropped.values())} event(s) lost in "
                 + ", ".join(dropped) + " (report.json's events_dropped)")
    return line
