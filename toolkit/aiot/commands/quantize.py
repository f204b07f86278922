"""`aiot quantize`: full-int8 model for a package, checked against the float model."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("quantize")
@click.option("--package", "package", type=click.Path(path_type=Path), required=True,
              help="Package folder from `aiot train`.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(package: Path, as_json: bool) -> None:
    """Quantize to int8 (TFLite) and compare float vs int8 anomaly scores (tflite-micro).

    Writes PKG/model.tflite (int8 in and out, int8 kernels only), fills the manifest's
    quantization parameters and the int8 test vectors, and prints how well the int8
    scores and decisions agree with the float model on the held-out windows.

    \b
    Example:
      aiot quantize --package build/pkg
      aiot quantize --package build/pkg --json > agreement.json
    """
    from aiot.model.quantize import quantize

    report = quantize(package, progress=not as_json)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.summary())
        click.echo(f"next: aiot codegen --package {package}")
