"""Cache entries are published whole: built in a private folder, then renamed into place."""

from pathlib import Path

import pytest

from aiot.paths import private_build_dir, publish_cache_dir


def _entry(folder: Path, text: str) -> Path:
    (folder / "c").mkdir(parents=True)
    (folder / "c" / "model.c").write_text(text)
    return folder


def test_a_private_entry_replaces_a_half_written_one(tmp_path):
    out = tmp_path / "fleet-1"
    (out / "c").mkdir(parents=True)  # a killed build left a folder without its model.c
    tmp = private_build_dir(out)
    assert tmp != out and not tmp.exists()
    publish_cache_dir(_entry(tmp, "mine"), out, "c/model.c")
    assert (out / "c" / "model.c").read_text() == "mine" and not tmp.exists()


def test_an_entry_another_process_published_first_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "fleet-1"
    tmp = _entry(private_build_dir(out), "mine")

    def theirs_first(self, target):  # the other process renames between our rmtree and rename
        _entry(Path(target), "theirs")
        raise OSError("Directory not empty")

    monkeypatch.setattr(Path, "rename", theirs_first)
    publish_cache_dir(tmp, out, "c/model.c")
    assert (out / "c" / "model.c").read_text() == "theirs" and not tmp.exists()


def test_a_failed_rename_without_a_complete_entry_is_an_error(tmp_path, monkeypatch):
    out = tmp_path / "fleet-1"
    tmp = _entry(private_build_dir(out), "mine")

    def fails(self, target):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "rename", fails)
    with pytest.raises(OSError):
        publish_cache_dir(tmp, out, "c/model.c")


def test_a_complete_entry_another_process_published_before_us_is_not_removed(tmp_path):
    """Two processes built the same entry (installations of one fleet commissioned in parallel
    against one fleet model): the later one dropped the earlier one's complete entry before
    renaming its own, under the feet of the process reading it (copying its C)."""
    out = _entry(tmp_path / "fleet-1", "theirs")
    reading = (out / "c" / "model.c").open()  # the other process is reading it
    publish_cache_dir(_entry(private_build_dir(out), "mine"), out, "c/model.c")
    assert reading.read() == "theirs" and (out / "c" / "model.c").read_text() == "theirs"
    reading.close()
    assert [p.name for p in tmp_path.iterdir()] == ["fleet-1"]  # ours dropped
