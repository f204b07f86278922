"""One module per CLI verb; each defines a click command named `command`.

Parameter types shared by the verbs live here: an output path is checked when the command
line is parsed, so a run that would fail to write its result fails before its work, not
after a 15-minute tuning run or a whole benchmark."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

#: Every seed option: numpy and TensorFlow take 0 .. 2**32 - 1.
SEED = click.IntRange(0, 2**32 - 1)


class FloatRange(click.FloatRange):
    """click's FloatRange without NaN: 'nan' is a float that no bound compares false with, so
    click let --hours nan through to a traceback."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v != v:
            self.fail(f"{value} is not a number in the range {self._describe_range()}.", param, ctx)
        return v


class OutPath(click.ParamType):
    """A path the command will write: a folder (``kind="dir"``) or a file (``kind="file"``).
    The folder must exist or be possible to make, and must take a file: it is made and
    probed with a temporary file, then the probe and every folder made for it are removed,
    so a run that stops later leaves nothing behind. Converts to :class:`Path`."""

    name = "path"

    def __init__(self, kind: str = "dir"):
        if kind not in ("dir", "file"):
            raise ValueError(f"OutPath kind must be 'dir' or 'file', not {kind!r}")
        self.kind = kind

    def convert(self, value, param, ctx) -> Path:
        path = Path(value).expanduser()
        if self.kind == "dir" and path.exists() and not path.is_dir():
            self.fail(f"'{path}' is a file; give a folder (it is made when missing)", param, ctx)
        if self.kind == "file" and path.is_dir():
            self.fail(f"'{path}' is a folder; give the path of the file to write", param, ctx)
        folder = path if self.kind == "dir" else path.parent
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".aiot-write-probe-"):
                pass
        except OSError as e:
            reason = e.strerror or str(e)
            where = f"'{e.filename}'" if e.filename else f"'{folder}'"
            self.fail(f"cannot write to '{folder}': {reason} ({where}); choose a writable "
                      + ("folder" if self.kind == "dir" else "file path"), param, ctx)
        finally:  # a check, not a side effect: the verb makes its folders when it writes
            for p in missing:  # innermost first
                try:
                    p.rmdir()
                except OSError:
                    pass
        return path

    def __repr__(self) -> str:
        return f"OutPath({self.kind!r})"



class Seconds(click.ParamType):
    """A duration in seconds: a finite number above zero (NaN, inf, 0 and negatives are
    refused; a NaN deadline would never pass)."""

    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"'{value}' is not a number of seconds", param, ctx)
        if not (v > 0 and v != float("inf")):
            self.fail(f"{value} is not a duration: give a finite number of seconds above 0", param, ctx)
        return v


SECONDS = Seconds()


# --- one vocabulary for every verb ------------------------------------------------------------
#
# --data (a CSV file or a folder of them), --package (a model package folder), --model (a
# .tflite file), --out (what the verb writes), --json PATH (a path everywhere; - is stdout),
# --board/-b, and -v/-q on every verb. Spellings a verb used before stay for one release as
# hidden aliases that say so on stderr (:func:`renamed`).

#: ctx.meta key of the values given through a deprecated spelling, per context.
_RENAMED = "aiot.renamed"
_VERBOSITY = "aiot.verbosity"


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta.setdefault(_VERBOSITY, {})[id(ctx)] = ctx.meta.get(_VERBOSITY, {}).get(id(ctx), 1) + (
            1 if param.name == "verbose" else -1)


class Command(click.Command):
    """A verb: -v/--verbose and -q/--quiet are added, and values given through a deprecated
    spelling (:func:`renamed`) land in the parameter's current name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        have = {o for p in self.params for o in getattr(p, "opts", ())}
        if "--verbose" not in have:
            self.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                                            callback=_verbosity, help="Say more (what is run, the settings used)."))
        if "--quiet" not in have:
            self.params.append(click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                                            callback=_verbosity, help="Say less: results and errors only."))

    def invoke(self, ctx: click.Context):
        from click.core import ParameterSource

        from aiot.progress import VERBOSITY_ENV

        for dest, (old, new, value) in ctx.meta.get(_RENAMED, {}).pop(id(ctx), {}).items():
            if ctx.get_parameter_source(dest) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
                raise click.UsageError(f"{old} is the old spelling of {new}: give only {new}", ctx)
            ctx.params[dest] = value
        level = ctx.meta.get(_VERBOSITY, {}).pop(id(ctx), 1)
        saved = os.environ.get(VERBOSITY_ENV)
        os.environ[VERBOSITY_ENV] = str(max(0, min(2, level)))
        try:
            from aiot.progress import detail

            detail(f"aiot {ctx.command_path.split(' ', 1)[-1]}: " + ", ".join(
                f"{name}={value}" for name, value in ctx.params.items()))  # -v: the settings used, defaults included
            return super().invoke(ctx)
        finally:
            if saved is None:
                os.environ.pop(VERBOSITY_ENV, None)
            else:
                os.environ[VERBOSITY_ENV] = saved


def deprecated(ctx: click.Context, old: str, new: str) -> None:
    """The line a deprecated spelling prints on stderr."""
    verb = ctx.command_path.split(" ", 1)[-1]  # "scenarios evaluate", whatever the program is called
    click.echo(f"warning: aiot {verb} {old} is deprecated, use {new} (the old spelling goes in the "
               "next release)", err=True)


def renamed(old: str, new: str, dest: str, **option_kwargs):
    """A hidden option ``old``, the spelling of ``new`` before this release: its value goes to
    the parameter ``dest`` (a :class:`Command` does it), with a deprecation line on stderr.
    ``option_kwargs``: the same type (and flags) as ``new``."""
    name = f"renamed_{old.lstrip('-').replace('-', '_')}"

    def keep(ctx: click.Context, param: click.Parameter, value):
        from click.core import ParameterSource

        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            return
        deprecated(ctx, old, new)
        ctx.meta.setdefault(_RENAMED, {}).setdefault(id(ctx), {})[dest] = (old, new, value)

    return click.option(old, name, hidden=True, expose_value=False, callback=keep, **option_kwargs)


class HiddenArgument(click.Argument):
    """A positional argument kept for one release and left out of the usage line (its
    option is the documented spelling)."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


#: --json given with no path: the old flag (print to stdout), deprecated.
_BARE_JSON = "\0bare-json"


class JsonOut(OutPath):
    """``--json PATH``: the file to write the machine-readable result to; ``-`` is stdout.
    A bare ``--json`` (the old flag) still means stdout, with a deprecation line."""

    name = "path"

    def __init__(self):
        super().__init__("file")

    def convert(self, value, param, ctx):
        if value == _BARE_JSON:
            deprecated(ctx, "--json (with no path)", "--json - (stdout) or --json FILE")
            return "-"
        if value == "-" or isinstance(value, Path) and str(value) == "-":
            return "-"
        return super().convert(value, param, ctx)

    def __repr__(self) -> str:
        return "JsonOut()"


def json_option(what: str = "the result"):
    """The ``--json PATH`` option of a verb."""
    return click.option("--json", "json_out", type=JsonOut(), is_flag=False, flag_value=_BARE_JSON, default=None,
                        metavar="PATH", help=f"Write {what} as JSON to PATH (- for stdout).")


def write_json(json_out: Path | str | None, doc) -> None:
    """``doc`` to ``--json``'s PATH (stdout for -); says where it went."""
    import json

    if json_out is None:
        return
    text = json.dumps(doc, indent=2) + "\n"
    if str(json_out) == "-":
        click.echo(text, nl=False)
        return
    path = Path(json_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # renamed when whole: a kill leaves the old file
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    wrote(path)


def wrote(path: Path, what: str = "", err: bool = False) -> None:
    """Say where a verb wrote, relative to the current folder when under it ("wrote
    build/fw/mps2-an386/firmware.elf"): on stdout with the verb's other results (``err``: on
    stderr, when stdout carries JSON); not with -q."""
    from aiot.progress import level

    if level() < 1:
        return
    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    click.echo(f"wrote {p}" + (f" ({what})" if what else ""), err=err)
