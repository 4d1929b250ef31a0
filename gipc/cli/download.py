"""``gipc-download``: fetch a public multi-focus data set.

    gipc-download NAME -o DIR [--url URL] [--sha256 HEX]

Resumable, checked and unpacked whole by :mod:`gipc.data.download`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from gipc.cli.common import Parser, guarded
from gipc.data.download import REGISTRY, download, part_path

PROG = "gipc-download"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gipc-download``: 0 on success, 2 when offline, refused or corrupt."""
    parser = Parser(prog=PROG, description="Download and unpack a public multi-focus data set.")
    parser.add_argument("name", choices=list(REGISTRY), help="data set")
    parser.add_argument("-o", "--out", "--dest", dest="dest", metavar="DIR", type=Path, required=True,
                        help="folder to unpack into (as DIR/NAME); -o/--out as every gipc command takes it, --dest as before")
    parser.add_argument("--url", help="archive URL (overrides the registry)")
    parser.add_argument("--sha256", help="expected sha256 of the archive (overrides the registry)")
    args = parser.parse_args(argv)

    def body() -> int:
        path = download(args.name, args.dest, args.url, args.sha256)
        note = REGISTRY[args.name].note
        print(f"{args.name}: {path}" + (f" ({note})" if note else ""))
        return 0

    def interrupted() -> str:
        part = part_path(args.dest, args.name)  # gone when stopped before the transfer or while unpacking
        return f"interrupted; the partial download stays in {part}, run the same command again to resume" if part.exists() else "interrupted; nothing written"

    return guarded(PROG, body, interrupted)


if __name__ == "__main__":
    sys.exit(main())
