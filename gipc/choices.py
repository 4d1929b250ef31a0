"""Names a user lists from a fixed set (the classic baselines, the survey's extra metrics): ``all``
for every one, and one line for any that is none of them."""

from __future__ import annotations

from typing import Iterable, Sequence

ALL = "all"


def expand(asked: Iterable[str], names: Iterable[str]) -> list[str]:
    """``asked`` with ``all`` standing for every one of ``names``, each kept once, in the order first
    asked; a name that is none of them is kept, for :func:`unknown` to refuse."""
    every = tuple(names)
    return list(dict.fromkeys(name for item in asked for name in (every if item == ALL else (item,))))


def unknown(asked: Sequence[str], names: Iterable[str], what: str) -> str | None:
    """What is wrong with ``asked`` in words (``no baseline nope; choose from average, gff or all``,
    ``what`` naming the kind), None where every one is among ``names``; each caller prefixes its setting."""
    every = tuple(names)
    missing = [name for name in asked if name not in every]
    return f"no {what} {', '.join(missing)}; choose from {', '.join(every)} or {ALL}" if missing else None
