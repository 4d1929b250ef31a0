"""The pool of all-in-focus photos that on-the-fly synthesis draws from.

scikit-image's bundled photos (no download) and any folders of the user's own all-in-focus
photos, e.g. the 24 Kodak photos. Photos keep their colour here: training takes their luminance,
the held-out pairs are fused and scored in colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from gipc.data.sources import image_files, refuse_pair_set
from gipc.data.embedded import CATALOGUE, load_photo
from gipc.data.synthesis import fit_longest_side
from gipc.errors import DataError, ImageError
from gipc.imaging import read_image


def photo_pool(embedded: bool, folders: Sequence[str | Path], max_side: int | None = None) -> dict[str, torch.Tensor]:
    """Photos (C, H, W) in [0, 1] by name: the embedded catalogue (if ``embedded``), then each folder's
    images by stem, longest side cut to ``max_side`` (``None``: full resolution). Names must be unique."""
    pool: dict[str, torch.Tensor] = {}
    if embedded:
        pool.update((name, load_photo(name, max_side).image) for name in CATALOGUE)
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(
                f"data.source.photo_dirs: {folder} does not exist or is not a folder; "
                "pass folders of all-in-focus photos, or data.source.photo_dirs=[] for the embedded photos only"
            )
        files = image_files(folder)
        if not files:
            raise DataError(f"data.source.photo_dirs: {folder} holds no images")
        refuse_pair_set(folder, files, "data.source.photo_dirs:")
        for path in files:
            if path.stem in pool:
                raise DataError(f"photo name {path.stem!r} of {path} is already in the pool; rename one of them")
            try:
                pixels = read_image(path).pixels
            except ImageError as err:
                raise DataError(str(err)) from None
            pool[path.stem] = fit_longest_side(pixels.float(), max_side).contiguous()
    if not pool:
        raise DataError("the photo pool is empty: set data.source.embedded_photos=true or give data.source.photo_dirs")
    return pool

