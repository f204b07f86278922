"""The device's crypto comes from well-kept libraries fetched from PyPI at build time and
never committed: Monocypher (the pymonocypher sdist carries monocypher.c/.h) for the
Ed25519 equation, pycryptodome's portable SHA-256/SHA-512 (its sdist carries the C).

Both sdists are pinned by version and SHA-256; they are downloaded once with pip and
extracted under cache_dir()/crypto."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE, cache_dir
from aiot.target.hostbuild import UNPACKED_C

# name, version, sha256 of the sdist, files taken from its folder
SDISTS = {
    "pymonocypher": (
        "4.0.3.4",
        "5e56e3d3eb770a53e0b9f6274146663c11a11f3d0de5cd48e3be0428d1b07a4a",
        ("monocypher.c", "monocypher.h", "LICENSE.txt"),
    ),
    "pycryptodome": (
        "4.5.0",
        "51e97a8d1cf101974bc40c20b3191cb1903891e5c172346943d5d4f3bc4f9d83",
        (
            "src/SHA256.c", "src/SHA512.c", "src/hash_SHA2_template.c", "src/hash_SHA2_compress_portable.c",
            "src/common.h", "src/errors.h", "src/endianess.h", "LICENSE.rst",
        ),
    ),
}
#: pycryptodome's common.h: use <stdint.h>, and newlib's memalign for the (unused) allocating init.
CRYPTO_DEFINES = ("HAVE_STDINT_H", "HAVE_MEMALIGN")


@dataclass(frozen=True)
class CryptoSources:
    sources: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    defines: tuple[str, ...] = CRYPTO_DEFINES


def _check(archive: Path, sha256: str, name: str, version: str) -> None:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != sha256:
        raise ToolkitError(
            f"{archive} has SHA-256 {digest}, expected {sha256}",
            hint=f"delete it and run the command again to download {name}=={version} afresh",
        )


def _fetch(name: str, version: str, sha256: str, files: tuple[str, ...]) -> Path:
    root = cache_dir() / UNPACKED_C / f"{name}-{version}"
    if all((root / Path(f).name).is_file() for f in files):
        return root
    dl = cache_dir() / UNPACKED_C / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    archive = dl / f"{name}-{version}.tar.gz"
    if not archive.is_file():
        # into a folder of this call's own, checked there, then renamed into place: a process
        # arriving meanwhile (pytest workers on an empty cache) never reads a half-written archive
        private = Path(tempfile.mkdtemp(prefix=".download-", dir=dl))
        try:
            got = private / archive.name
            # the sdist of this package only: the tools pip installs to read its metadata (Cython)
            # come as wheels (":all:" had pip compile Cython from source, minutes of CPU)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name,
                   f"{name}=={version}", "-d", str(private), "-q"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not got.is_file():
                raise ToolkitError(
                    f"could not download the {name} {version} source distribution for the device crypto:\n"
                    f"{proc.stderr.strip()[-800:]}",
                    hint=f"check access to PyPI, or put {archive.name} into {dl} by hand (pip download {name}=={version} --no-deps --no-binary {name})",
                )
            _check(got, sha256, name, version)
            os.replace(got, archive)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    else:  # one already there (an earlier run's, or put there by hand): checked before use
        _check(archive, sha256, name, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    prefix = f"{name}-{version}/"
    with tarfile.open(archive) as tar:
        for f in files:
            member = tar.getmember(prefix + f)
            data = tar.extractfile(member)
            if data is None:
                raise ToolkitError(f"{archive} has no file {f}", hint="delete the archive and run again")
            (tmp / Path(f).name).write_bytes(data.read())
    if root.exists():  # another process finished first
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    else:
        tmp.rename(root)
    return root


def crypto_sources() -> CryptoSources:
    """Third-party C files to compile into anything that verifies packages."""
    mono = _fetch("pymonocypher", *SDISTS["pymonocypher"])
    pcd = _fetch("pycryptodome", *SDISTS["pycryptodome"])
    return CryptoSources(
        sources=(mono / "monocypher.c", pcd / "SHA256.c", pcd / "SHA512.c"),
        include_dirs=(mono, pcd),
    )


def update_sources() -> list[Path]:
    """Our own C for package verification and slots (device and host)."""
    src = FIRMWARE / "src"
    return [src / "update" / "package.c", src / "update" / "signature.c", src / "update" / "slots.c",
            src / "protocol" / "crc32.c"]
