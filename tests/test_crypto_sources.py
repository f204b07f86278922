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
