"""The update service's third-party crypto C comes from two source distributions, fetched
once into the cache (aiot.lifecycle.crypto_sources)."""

from __future__ import annotations

import subprocess

import pytest

from aiot.errors import ToolkitError
from aiot.lifecycle import crypto_sources as C


def test_only_the_package_itself_is_asked_for_as_source_its_build_tools_may_be_wheels(tmp_path, monkeypatch):
    # `--no-binary :all:` also refuses wheels for what pip installs to read the sdist's
    # metadata (pymonocypher needs Cython): a fresh machine then compiled Cython from source,
    # minutes of CPU, before the first update build.
    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "cache"))
    asked = []

    def pip(cmd, **kw):
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no index here")

    monkeypatch.setattr(C.subprocess, "run", pip)
    for name, (version, sha, files) in C.SDISTS.items():
        with pytest.raises(ToolkitError, match=f"could not download the {name} {version}"):
            C._fetch(name, version, sha, files)
        cmd = asked.pop()
        assert cmd[cmd.index("--no-binary") + 1] == name and ":all:" not in cmd
        assert f"{name}=={version}" in cmd and "--no-deps" in cmd


def test_a_second_process_never_reads_a_half_downloaded_archive(tmp_path, monkeypatch):
    # pytest workers on an empty cache fetch the same sdist at once: one must never read the
    # other's archive while pip is still writing it (its SHA-256 would not match: a failed build)
    import hashlib
    import io
    import tarfile

    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "cache"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = b"int x;\n" * 2000
        info = tarfile.TarInfo("fakepkg-1.0/a.c")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    sdist = buf.getvalue()
    sha = hashlib.sha256(sdist).hexdigest()
    arrived, calls = [], []

    def pip(cmd, **kw):  # writes the archive in two halves; between them another "process" arrives
        path = C.Path(cmd[cmd.index("-d") + 1]) / "fakepkg-1.0.tar.gz"
        calls.append(path)
        with open(path, "wb") as f:
            f.write(sdist[: len(sdist) // 2])
            f.flush()
            if len(calls) == 1:
                arrived.append(C._fetch("fakepkg", "1.0", sha, ("a.c",)))
            f.write(sdist[len(sdist) // 2 :])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(C.subprocess, "run", pip)
    first = C._fetch("fakepkg", "1.0", sha, ("a.c",))
    assert arrived and (arrived[0] / "a.c").read_bytes() == (first / "a.c").read_bytes() == b"int x;\n" * 2000
