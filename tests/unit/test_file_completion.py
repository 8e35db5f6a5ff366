"""Tab after /source and /save offers file names (offline, in a directory of the test's own)."""

from __future__ import annotations

import pytest

from qmpsh.completion import Candidate, FileName, files, wanted


@pytest.mark.parametrize("text, prefix", [("/source ", ""), ("/source scr", "scr"), ("/save out/x", "out/x")])
def test_the_file_after_source_and_save_is_wanted(text, prefix):
    assert wanted(text) == FileName(prefix)


def test_files_and_directories_that_start_with_what_is_typed(tmp_path, monkeypatch):
    (tmp_path / "stream.qmp").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "mirror.qmp").write_text("")
    (tmp_path / ".hidden.qmp").write_text("")
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    assert files("s") == [Candidate("scripts/", "directory"), Candidate("stream.qmp", "file")]
    assert files("scripts/m") == [Candidate("scripts/mirror.qmp", "file")]
    assert files("") == [Candidate("notes.txt", "file"), Candidate("scripts/", "directory"),
                         Candidate("stream.qmp", "file")]  # no hidden files unless a dot is typed
    assert files(".h") == [Candidate(".hidden.qmp", "file")]
    assert files(f"{tmp_path}/n") == [Candidate(f"{tmp_path}/notes.txt", "file")]
    assert files("nowhere/x") == []
