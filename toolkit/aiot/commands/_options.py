"""Options several verbs share, declared once: how a sensor CSV is read (--strict-time,
--time-format, --label-column, --label-map), the per-sensor drift-rate bound (--drift-rate)
and a duration (--early-warning 12h)."""

from __future__ import annotations

import math

import click


def reading_options(fn):
    """--strict-time, --time-format, --label-column and --label-map (docs/evaluation.md, "Reading
    CSV files"); the command gets them as the four keyword arguments, :func:`csv_options` makes
    them load_csv's."""
    for option in reversed(_READING_OPTIONS):
        fn = option(fn)
    return fn


def csv_options(strict_time: bool, time_format: str | None, label_column: str, label_map: str | None) -> dict:
    """The reading options as :func:`aiot.data.load_csv` keywords."""
    from aiot.data import parse_label_map

    return {"strict_time": strict_time, "time_format": time_format,
            "label_column": None if label_column.lower() == "none" else label_column,
            "label_map": parse_label_map(label_map)}


_READING_OPTIONS = [
    click.option("--strict-time", "strict_time", is_flag=True,
                 help="Refuse a file whose clock steps back or repeats a timestamp. Default: a step back is read "
                      "as a time reset (as the device does: counted, warned about, the stream restarts there)."),
    click.option("--time-format", "time_format", default=None, metavar="FORMAT",
                 help="How the time column is written when it is not ISO-8601 or seconds: a strptime format "
                      "('%d/%m/%Y %H:%M:%S'; no offset = UTC) or unix_s / unix_ms / unix_us / unix_ns."),
    click.option("--label-column", "label_column", default="auto", show_default=True, metavar="NAME",
                 help="The column that marks faults (0/1, or words: normal/ok = 0, fault/alarm/broken = 1); never "
                      "read as a sensor; 'none' for unlabelled data; auto = 'label' or 'anomaly' when present."),
    click.option("--label-map", "label_map", default=None, metavar="VALUE=0|1,...",
                 help="What the label column's values mean, e.g. NORMAL=0,BROKEN=1,RECOVERING=1."),
]


def drift_rate_option(fn):
    """--drift-rate SENSOR=RATE (repeatable): the per-sensor ``max_drift_rate`` of the monitor."""
    return click.option(
        "--drift-rate", "drift_rates", multiple=True, metavar="SENSOR=RATE",
        help="Bound the monitor's drift compensation of one sensor to RATE of its noise units per hour "
             "(max_drift_rate, default 0.25 for each); '*=RATE' for every sensor not named. Repeatable.")(fn)


def drift_rate_knobs(values: tuple[str, ...]) -> dict:
    """``--drift-rate`` values as monitor knobs: ``{"max_drift_rate": {sensor: rate}}``, or {}."""
    rates: dict[str, float] = {}
    for text in values:
        name, sep, rate = text.partition("=")
        name = name.strip()
        try:
            value = float(rate)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value) or value < 0:
            raise click.BadParameter(f"{text!r}: expected SENSOR=RATE with RATE a number >= 0 (noise units per "
                                     "hour), e.g. --drift-rate bearing_temp=0.1", param_hint="--drift-rate")
        if name in rates:
            raise click.BadParameter(f"{name!r} given twice", param_hint="--drift-rate")
        rates[name] = value
    return {"max_drift_rate": rates} if rates else {}


_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(click.ParamType):
    """A duration: a number with a unit (90s, 30min, 12h, 2d) or plain seconds; in seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            number = text.rstrip("abcdefghijklmnopqrstuvwxyz").strip()
            unit = text[len(number):].strip() if number != text else "s"
            try:
                seconds = float(number) * _UNITS[unit]
            except (ValueError, KeyError):
                seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r}: expected a duration >= 0: a number with s, min, h or d (90s, 30min, 12h, 2d), "
                      "or plain seconds", param, ctx)
        return seconds
