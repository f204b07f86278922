"""`aiot` command line. Thin on purpose: each verb lives in toolkit/aiot/commands/<verb>.py
and calls one toolkit module. Commands are discovered and imported lazily so that
`aiot --help` stays fast (TensorFlow is only imported by the verbs that need it)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from aiot import __version__
from aiot.errors import ToolkitError


def _verbs() -> list[str]:
    from aiot import commands

    return sorted(
        m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")
    )


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return _verbs()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _verbs():
            return None
        module = importlib.import_module(f"aiot.commands.{name.replace('-', '_')}")
        return module.command

    def invoke(self, ctx: click.Context):  # one place turns ToolkitError into a clean exit
        try:
            return super().invoke(ctx)
        except ToolkitError as e:
            click.secho(f"error: {e.message}", fg="red", err=True)
            if e.hint:
                click.echo(f"  hint: {e.hint}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:
            if e.filename is None:  # not a file-system error on a path we can name: a real bug, keep the traceback
                raise
            # the last resort for a path the verb did not check up front (those name their option)
            path = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
            click.secho(f"error: {path}: {e.strerror or e}", fg="red", err=True)
            click.echo("  hint: check the path, that its folders exist or can be made, and your permissions", err=True)
            sys.exit(2)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aiot")
def main() -> None:
    """aiot: train, quantize, compile and run anomaly-detection models on Cortex-M.

    \b
    The whole pipeline, on an emulated board, with no data needed:
      aiot demo
    Step by step:
      aiot train --data pump.csv --out build/pkg
      aiot quantize --package build/pkg
      aiot codegen --package build/pkg
      aiot build --board mps2-an386 --package build/pkg
      aiot run --board mps2-an386 --package build/pkg
    Your own Keras autoencoder, calibrated on your data:
      aiot quantize --keras model.keras --data pump.csv --out build/mine
    Recorded installations (did it flag each fault, and stay quiet otherwise?):
      aiot evaluate --data recordings/ --format generic --out build/eval
      aiot tune --data normal.csv --far-budget 20 --out build/picks
      aiot commission --data pump7.csv --board nucleo-f446re --out build/pump7

    Every verb writes under the current folder (./build by default) or its --out, and
    takes -v (say more) and -q (results and errors only); --json PATH (- for stdout)
    where there is a machine-readable result.
    """


if __name__ == "__main__":
    main()
