"""The journal of finished work: what it keeps, what a kill leaves, what it refuses."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from gipc.journal import Journal, JournalError, file_states, read_journal


def test_pieces_read_back_to_the_bit_and_a_piece_written_again_replaces_its_first(tmp_path: Path) -> None:
    path = tmp_path / "work.jsonl"
    journal = Journal.start(path, {"folder": tmp_path, "sizes": (3, 5)})
    values = [0.1 + 0.2, 1e-300, -0.0, math.pi, 2.0**-1074]  # floats whose shortest decimal forms are long or odd
    journal.add("a", {"rows": values})
    journal.add("b", {"rows": [1.5]})
    journal.add("a", {"rows": [2.5]})
    kept = read_journal(path)
    assert kept.header == {"folder": str(tmp_path), "sizes": [3, 5]}  # as the file holds it: paths as strings, tuples as lists
    assert kept.entries == {"a": {"rows": [2.5]}, "b": {"rows": [1.5]}} == journal.entries
    Journal.start(path, {}).add("x", values)
    assert [v.hex() for v in read_journal(path).entries["x"]] == [v.hex() for v in values]  # -0.0 and the subnormal too


def test_a_line_cut_short_by_a_kill_is_the_unfinished_piece_and_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "work.jsonl"
    journal = Journal.start(path, {"n": 1})
    journal.add("a", [1.0])
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"key": "b", "value": [2.')  # killed while writing b's line
    assert read_journal(path).entries == {"a": [1.0]}
    Journal.resume(path, {"n": 1}).add("b", [2.0])  # going on drops the cut line's remains first
    assert read_journal(path).entries == {"a": [1.0], "b": [2.0]}
    with open(path, "a", encoding="utf-8") as file:
        file.write("not json\n")  # a whole line that is no piece: damage, named, not a silent loss
    with pytest.raises(JournalError, match=r"work.jsonl is damaged; start afresh \(--overwrite instead of --resume\)"):
        read_journal(path)


def test_resume_refuses_other_settings_naming_them_and_a_missing_journal(tmp_path: Path) -> None:
    path = tmp_path / "out" / "work.jsonl"
    with pytest.raises(JournalError, match=rf"nothing to go on with: {tmp_path / 'out'} holds no interrupted work \(work.jsonl\)"):
        Journal.resume(path, {})
    Journal.start(path, {"--baselines": ["gff"], "--gt": None, "--fused": {"ours": "a"}})
    with pytest.raises(JournalError, match=r"other settings \(--baselines was gff, now gff,dwt; --gt was not given, now g; --fused was ours=a, now ours=b\)"):
        Journal.resume(path, {"--baselines": ["gff", "dwt"], "--gt": "g", "--fused": {"ours": "b"}})
    assert Journal.resume(path, {"--baselines": ("gff",), "--gt": None, "--fused": {"ours": "a"}}).entries == {}


def test_a_files_state_changes_with_its_content_or_time(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.write_bytes(b"1234")
    before = file_states([path])
    assert before == [[str(path.resolve()), 4, path.stat().st_mtime_ns]]
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))
    assert file_states([path]) != before
