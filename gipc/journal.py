"""Finished work recorded as it finishes, beside a command's outputs, so that an interrupted or failed
command goes on where it stopped instead of starting again (``gipc-eval --resume``).

A journal is a JSON-lines file: a header (the work's settings), then one line per finished piece,
``{"key": ..., "value": ...}`` (a key written again replaces its piece). Each line is appended and
flushed whole as its piece finishes; a last line cut short by a kill is the piece that was being
written, and is dropped on reading. JSON keeps every float to the bit (Python writes the shortest
repr that reads back the same). A piece may carry :func:`file_states` of the files it read, so that
one whose files changed since is done again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from gipc.errors import UserError


class JournalError(UserError):
    """A journal that cannot be gone on with: missing, damaged, or of other settings."""


class Journal:
    """The pieces of one piece of work finished so far (``entries``, by key)."""

    def __init__(self, path: Path, header: Mapping[str, Any], entries: dict[str, Any]) -> None:
        self.path, self.header, self.entries = path, dict(header), entries

    @classmethod
    def start(cls, path: Path, header: Mapping[str, Any]) -> Journal:
        """A new journal at ``path`` (replacing any there), holding ``header`` alone."""
        header = _as_stored(header)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(json.dumps({"header": header}) + "\n")
        return cls(path, header, {})

    @classmethod
    def resume(cls, path: Path, header: Mapping[str, Any]) -> Journal:
        """The journal at ``path``, refused unless it was started with ``header`` (the same settings)."""
        kept = read_journal(path)
        if changed := changed_settings(kept.header, header):
            raise JournalError(f"{path} was started with other settings ({'; '.join(changed)}); give the same settings, or start afresh (--overwrite instead of --resume)")
        with open(path, "rb+") as file:  # a line cut short by a kill goes, so that the next piece starts a line of its own
            file.truncate(file.read().rfind(b"\n") + 1)
        return kept

    def add(self, key: str, value: Any) -> None:
        """Record a finished piece: one line, flushed to the system (a killed process loses nothing written)."""
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"key": key, "value": value}) + "\n")
        self.entries[key] = _as_stored(value)

    def remove(self) -> None:
        """The work is done (its outputs written whole): the journal goes."""
        self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> Journal:
    """The journal at ``path`` as written: its header and the pieces whose lines are whole."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JournalError(f"nothing to go on with: {path.parent} holds no interrupted work ({path.name})") from None
    whole = text.split("\n")[:-1]  # after the last newline: nothing, or a line cut short by a kill (its piece unfinished)
    try:
        records = [json.loads(line) for line in whole]
        header = records[0]["header"]
        entries = {record["key"]: record["value"] for record in records[1:]}
    except (ValueError, LookupError, TypeError):
        raise JournalError(f"{path} is damaged; start afresh (--overwrite instead of --resume)") from None
    return Journal(path, header, entries)


def changed_settings(kept: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Each setting in which ``now`` differs from the stored ``kept`` (compared as both read back from a
    file), in words: ``rule was map, now direct``; none: the same settings."""
    now = _as_stored(now)
    keys = dict.fromkeys([*kept, *now])
    return [f"{key} was {_words(kept.get(key))}, now {_words(now.get(key))}" for key in keys if kept.get(key) != now.get(key)]


def file_states(paths: Sequence[Path]) -> list[list[Any]]:
    """Each file's absolute path, size and modification time, as a journal's piece holds them: the
    piece stands while they do."""
    states = []
    for path in paths:
        stat = path.stat()
        states.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return states


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back from the file (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


def _words(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "not given"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
