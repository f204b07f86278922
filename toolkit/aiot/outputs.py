"""Output folders that hold one run's files, all of them or none, and one run at a time.

    with OutputRun(out, "aiot evaluate") as run:
        write_predictions(run.path("predictions.csv"), ...)   # written into a staging folder
        write_json(run.path("report.json"), ...)               # may record run.id
        run.commit()                                           # all files appear together

A verb whose writer makes a tree of files (generated C, an exported project, a firmware
build) hands it the staging folder instead, and says where the files will be once committed:

    with output_folder(out, "aiot codegen") as run:         # commits when the block ends
        res = generate(model, run.folder)
        for f in res.files:
            click.echo(f"wrote {run.final(f)}")

A second run into the same folder while one is under way is refused (an advisory ``flock``
on ``OUT/.aiot.lock``, released by the kernel when the process dies, so a killed run never
leaves the folder locked). Files are written under ``OUT/.aiot-staging-<id>/`` and moved
into place at :meth:`OutputRun.commit`; the commit first writes ``OUT/.aiot-commit.json``
(the run id and each file's sha256), so a run killed half-way through the renames is
completed by the next run that opens the folder, or by :func:`verify`. Once committed,
``OUT/.aiot-run.json`` names the run id every file of the folder shares, with their hashes;
a file of an earlier run that this run did not write again is removed, so the folder never
mixes two runs. A run that fails or is killed before its commit leaves the previous run's
files as they were. A run that adds a file to a folder written by another verb (``adds=True``:
aiot scenarios evaluate's report beside the suite aiot scenarios generate wrote) keeps the
earlier run's files instead, and its record lists them with their hashes and, under ``kept``,
the run each came from."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from aiot.errors import ToolkitError

LOCK = ".aiot.lock"
RUN_RECORD = ".aiot-run.json"
COMMIT_RECORD = ".aiot-commit.json"
STAGING_PREFIX = ".aiot-staging-"


class FolderInUse(ToolkitError):
    """Another run holds the output folder (never a result of the run itself: stop)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_synced(path: Path, text: str) -> None:
    """``text`` into ``path`` under a private name, synced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class OutputRun:
    """One run's hold on an output folder; see the module docstring."""

    def __init__(self, out: Path | str, what: str = "aiot", adds: bool = False):
        self.out = Path(out)
        self.what = what
        self.adds = adds
        self.id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        self.staging = self.out / f"{STAGING_PREFIX}{self.id}"
        self.committed = False
        self._lock_file = None

    # -- the lock --

    def __enter__(self) -> "OutputRun":
        if self.out.exists() and not self.out.is_dir():
            raise ToolkitError(f"{self.out}: exists and is not a folder", hint="choose another --out")
        self._created = not self.out.exists()  # removed again if the run ends with nothing written
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            recover(self.out)
            self.staging.mkdir()
        except BaseException:
            self._unlock()
            raise
        return self

    def _lock(self) -> None:
        import fcntl

        while True:
            f = open(self.out / LOCK, "a+", encoding="utf-8")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise FolderInUse(f"{self.out} is being written by another run ({holder})",
                                   hint="wait for that run to finish, or give this one another --out folder") from None
            try:  # the lock file a run that wrote nothing removes on its way out is not the lock any more
                if os.stat(self.out / LOCK).st_ino == os.fstat(f.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            f.close()
        f.seek(0)
        f.truncate()
        f.write(f"{self.what}, pid {os.getpid()}, run {self.id}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
        f.flush()
        self._lock_file = f

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    def __exit__(self, *exc: object) -> None:
        try:
            marker = self.out / COMMIT_RECORD
            if not (marker.is_file() and self.staging.name in marker.read_text()):
                shutil.rmtree(self.staging, ignore_errors=True)  # what an uncommitted run wrote
            # (a commit stopped half-way keeps its staging folder: the next opener completes it)
            if self._created and not self.committed and [p.name for p in self.out.iterdir()] == [LOCK]:
                (self.out / LOCK).unlink()  # a run that failed before writing leaves no folder
                self.out.rmdir()
        finally:
            self._unlock()

    # -- the files --

    def path(self, name: str) -> Path:
        """Where to write the run's file ``name`` (a plain file name) until the commit."""
        if Path(name).name != name or name.startswith(".aiot"):
            raise ValueError(f"output file names are plain names, not {name!r}")
        return self.staging / name

    @property
    def folder(self) -> Path:
        """The staging folder, for a writer that makes files and subfolders of its own."""
        return self.staging

    def final(self, staged: Path | str) -> Path:
        """Where a file written under :attr:`folder` is once the run is committed."""
        p = Path(staged)
        try:
            return self.out / p.relative_to(self.staging)
        except ValueError:
            return p  # not one of the run's files

    def relocate(self, name: str) -> None:
        """Rewrite the staged text file ``name`` (a path under :attr:`folder`) so that the paths
        it records name the files where they will be after the commit."""
        p = self.staging / name
        p.write_text(p.read_text(encoding="utf-8").replace(str(self.staging), str(self.out)), encoding="utf-8")

    def commit(self) -> dict:
        """Move every staged file into the folder as one step; returns the run record."""
        if self._lock_file is None:
            raise RuntimeError("OutputRun.commit() outside its with-block")
        staged = sorted(p for p in self.staging.rglob("*") if p.is_file() and not p.is_symlink())
        files = {p.relative_to(self.staging).as_posix(): _sha256(p) for p in staged}
        record = {"run_id": self.id, "by": self.what, "files": files,
                  "committed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        previous = _read_record(self.out) if self.adds else None
        if previous is not None:  # the earlier run's files stay, recorded as whose they are
            earlier = previous.get("kept", {})
            kept = {n: sha for n, sha in previous["files"].items() if n not in files and (self.out / n).is_file()}
            record["files"] = {**kept, **files}
            record["kept"] = {n: earlier.get(n, previous.get("run_id")) for n in kept}
        for p in staged:  # the data itself on disk before the record says it is there
            with p.open("rb") as f:
                os.fsync(f.fileno())
        _write_synced(self.out / COMMIT_RECORD, json.dumps({**record, "staging": self.staging.name}, indent=2))
        _finish_commit(self.out)
        self.committed = True
        return record


@contextlib.contextmanager
def output_folder(out: Path | str, what: str = "aiot", adds: bool = False):
    """An :class:`OutputRun` committed when the with-block ends without an exception."""
    with OutputRun(out, what, adds=adds) as run:
        try:
            yield run
        except ToolkitError as e:  # the files it names are the folder's, not their staging copies
            e.message = e.message.replace(str(run.staging), str(run.out))
            raise
        run.commit()


def _finish_commit(out: Path) -> None:
    """Roll the commit recorded in ``OUT/.aiot-commit.json`` forward: move what is still in its
    staging folder, drop files of earlier runs, write the run record, remove the marker."""
    marker = out / COMMIT_RECORD
    rec = json.loads(marker.read_text())
    staging = out / rec.pop("staging")
    if not all(_inside(name) for name in rec["files"]):
        raise ValueError(f"{COMMIT_RECORD} names a file outside the folder")
    for name in rec["files"]:
        if (staging / name).exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
    previous = _read_record(out)
    for name in (previous or {}).get("files", {}):
        if name not in rec["files"] and _inside(name):
            (out / name).unlink(missing_ok=True)  # an earlier run's file this run did not write
            for parent in (out / name).parents:  # and the subfolders that held only such files
                if parent == out or not parent.is_relative_to(out):
                    break
                with contextlib.suppress(OSError):
                    parent.rmdir()
    _write_synced(out / RUN_RECORD, json.dumps(rec, indent=2) + "\n")
    _sync_dir(out)
    marker.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _inside(name: str) -> bool:
    """Whether a file name from a record stays inside the folder (the records are plain JSON
    anyone can edit: a name never leads a run to move or remove a file elsewhere)."""
    p = Path(name)
    return not p.is_absolute() and ".." not in p.parts and bool(p.parts)


def _read_record(out: Path) -> dict | None:
    try:
        rec = json.loads((out / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("files"), dict) else None


def recover(out: Path) -> None:
    """Finish a commit a killed run left half-done, and remove staging folders of runs that
    never committed. Call with the folder's lock held (OutputRun does)."""
    out = Path(out)
    if (out / COMMIT_RECORD).is_file():
        try:
            _finish_commit(out)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ToolkitError(f"{out}: a previous run stopped while committing its files and cannot be "
                               f"completed ({e})", hint=f"remove {out} (or its {COMMIT_RECORD}) and run again") from None
    for p in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


def verify(out: Path | str) -> dict:
    """The folder's run record, after checking that every file it names is there with its
    hash (finishing an interrupted commit first); raises ToolkitError otherwise."""
    out = Path(out)
    with OutputRun(out, "aiot verify"):
        rec = _read_record(out)
        if rec is None:
            raise ToolkitError(f"{out}: no run record ({RUN_RECORD}): not written by a committed run",
                               hint="run the command again into this folder")
        bad = [n for n, sha in rec["files"].items() if not (out / n).is_file() or _sha256(out / n) != sha]
        if bad:
            raise ToolkitError(f"{out}: {', '.join(bad)} changed or missing since run {rec['run_id']}",
                               hint="run the command again into this folder")
    return rec


if __name__ == "__main__":  # python -m aiot.outputs OUT: check a folder's files against its run record
    try:
        print(json.dumps(verify(sys.argv[1]), indent=2))
    except ToolkitError as e:
        sys.exit(f"error: {e.message}\nhint: {e.hint}")
