"""``launch.remove_orphaned_workdirs``: what a killed qmpsh left goes, and nothing else, ever.

Real directories, real locks; the QEMU side is in tests/integration/test_launch.py.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from qmpsh.launch import LOG, MARK, SOCKET, remove_orphaned_workdirs


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def left(tmp: Path, name: str = "qmpsh-left", files: tuple[str, ...] = (LOG, SOCKET),
         marked: tuple[str, ...] = (LOG, SOCKET, MARK)) -> Path:
    """A work directory as a killed qmpsh leaves it: ``files`` and a mark naming ``marked``."""
    workdir = tmp / name
    workdir.mkdir()
    for file in files:
        (workdir / file).write_text("")
    (workdir / MARK).write_text("".join(f"{file}\n" for file in marked))
    return workdir


def test_a_directory_with_only_the_files_its_mark_names_goes(tmp):
    left(tmp)
    remove_orphaned_workdirs()
    assert list(tmp.iterdir()) == []


def test_a_file_the_mark_does_not_name_keeps_the_directory_whole(tmp):
    workdir = left(tmp, files=(LOG, "b.qcow2"))
    remove_orphaned_workdirs()
    assert sorted(path.name for path in workdir.iterdir()) == sorted([LOG, "b.qcow2", MARK])


def test_a_locked_mark_means_in_use(tmp):
    workdir = left(tmp)
    fd = os.open(workdir / MARK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        remove_orphaned_workdirs()
        assert (workdir / LOG).exists()
    finally:
        os.close(fd)


def test_a_mark_without_its_own_name_is_one_being_made(tmp):
    workdir = left(tmp, marked=())
    remove_orphaned_workdirs()
    assert (workdir / LOG).exists()


def test_without_a_mark_or_the_prefix_nothing_is_touched(tmp):
    unmarked = tmp / "qmpsh-older"
    unmarked.mkdir()
    (unmarked / LOG).write_text("")
    other = left(tmp, name="other")
    remove_orphaned_workdirs()
    assert (unmarked / LOG).exists() and (other / LOG).exists()


def test_a_symbolic_link_is_not_followed(tmp, tmp_path_factory):
    elsewhere = left(tmp_path_factory.mktemp("elsewhere"))
    (tmp / "qmpsh-link").symlink_to(elsewhere)
    remove_orphaned_workdirs()
    assert (elsewhere / LOG).exists() and (tmp / "qmpsh-link").is_symlink()
