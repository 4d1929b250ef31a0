"""Scoring fused images of any method (files, or classic baselines run here) on source pairs
(the ``gipc-eval`` command is :mod:`gipc.cli.evaluate`).

Sources are a pair folder as the data package reads it (``<scene>-A.*``/``<scene>-B.*``, or ``A/`` +
``B/`` [+ ``GT/``] subfolders, and the public sets' layouts: :mod:`gipc.data.sources`). A fused image belongs to scene ``S`` when its stem is ``S``,
``S-fused`` or ``S_fused``, compared case-insensitively, in any image format (``lytro-01-fused.png``
as ``gipc-fuse`` writes it, ``lytro-01.png``, ``LYTRO-01.jpg``...); two candidates for one scene are
an error, files matching no scene are ignored. Ground truth from ``--gt DIR`` matches stems
``S``, ``S-gt``, ``S_gt``, ``S-F`` or ``S_F`` (Real-MFF) the same way; a method's decision maps (``--maps NAME=DIR``, stems ``S``,
``S-map`` or ``S_map``, as ``gipc-fuse --save-maps`` writes them) are scored against the true maps
of a built set's ``maps/`` folder (accuracy ``MAP_ACC``, boundary F-score ``MAP_BF``). Metrics are computed on the luminance (docs/paper.md section 7),
so a gray fused image of RGB sources is scored as it is.

The tables are the ones training's test step writes (``gipc.report``): ``metrics.csv``, one row
per image and method, ``metrics.md``, mean +- std per method, and ``metrics.tex``, the means as
a paper's LaTeX table (the best of each metric in bold, the second underlined), written into ``--out`` (a new
or empty folder; ``--overwrite`` to reuse one) once every score is in. Until then each pair's rows
are kept there as they come (:mod:`gipc.journal`), so that a failed or interrupted run goes on with
``--resume`` instead of starting again. Without ``--out`` the table is only printed. ``--wandb`` also
logs both tables to a W&B run under ``--out`` (``auto``: online after ``wandb login``, as training logs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import torch
from tqdm import tqdm

from gipc.choices import expand, unknown
from gipc.color import fuse_color
from gipc.data.datasets import PairFolder
from gipc.data.scene import Scene
from gipc.data.sources import image_files
from gipc.configs import conf_group
from gipc.errors import EvalInputError
from gipc.imaging import read_image, sized
from gipc.report import numeric_columns, score_batch, summarize
from gipc.tiling import Steps, fuse_sequence

FUSED_SUFFIXES = ("", "-fused", "_fused")
GT_SUFFIXES = ("", "-gt", "_gt", "-f", "_f")  # _F: Real-MFF's all-in-focus images
MAP_SUFFIXES = ("", "-map", "_map")

Row = dict[str, Any]
FusedFor = Callable[[Scene], torch.Tensor | None]
"""A method as the evaluation sees it: the fused (C, H, W) image in [0, 1] of a scene, None if it has none."""


def evaluate_pairs(
    pairs: Iterable[Scene],
    fused_by_method: Mapping[str, FusedFor],
    progress: bool = False,
    maps_by_method: Mapping[str, FusedFor] = {},
    extra: Sequence[str] = (),
    done: Mapping[int, Sequence[Row]] = {},
    scored: Callable[[int, list[Row]], None] | None = None,
    only: Sequence[str] | None = None,
) -> list[Row]:
    """Score every method on every scene (with its ``gt`` when the scene has one), on every metric
    or ``only`` those named.

    Scenes are read one at a time, so memory holds one scene whatever the set's size. Rows come
    grouped by method in the order given, then by scene; a method with no image for a scene
    (``None``) simply has no row for it. A method's decision maps (``maps_by_method``: A's weight,
    (1, H, W)) are scored against the scene's true ``focus_map``; the ``extra`` metrics
    (:data:`gipc.metrics.EXTRA_NAMES`) are scored too. ``done`` holds the rows of scenes (by index)
    scored before, by an interrupted run: they are not read again; ``scored(index, rows)`` is told
    each scene's rows as they come (:mod:`gipc.journal` keeps them).
    """
    rows: list[Row] = []
    pairs = pairs if isinstance(pairs, Sequence) else list(pairs)
    quiet = True if not progress or len(pairs) - len(done) < 2 else None  # None: tqdm shows the bar on a terminal only
    with tqdm(total=len(pairs), initial=len(done), desc="scoring", unit="scene", disable=quiet, file=sys.stderr) as bar:
        for index in range(len(pairs)):
            if index in done:
                rows += done[index]
                continue
            scene = pairs[index]
            fused = {}
            for method, fused_for in fused_by_method.items():
                image = fused_for(scene)
                if image is not None:
                    fused[method] = _as_kind(image, scene.a.shape[0])[None]
            gt = None if scene.gt is None else _as_kind(scene.gt, scene.a.shape[0])[None]
            maps = {method: _as_kind(image, 1)[None] for method, map_for in maps_by_method.items() if (image := map_for(scene)) is not None}
            true_map = None if scene.focus_map is None else scene.focus_map[None]
            more = [source[None] for source in scene.more]
            new = score_batch([scene.name], scene.a[None], scene.b[None], fused, gt, maps, true_map, extra, only, more)
            if scored is not None:
                scored(index, new)
            rows += new
            bar.update()
    order = {method: i for i, method in enumerate(fused_by_method)}
    return sorted(rows, key=lambda row: order[row["method"]])  # stable: scenes keep their order


def _as_kind(image: torch.Tensor, channels: int) -> torch.Tensor:
    """A (C, H, W) image as ``channels`` channels with the same 0..255 luminance the metrics score.

    Gray -> RGB repeats the level (rgb2gray's weights sum to 1); RGB -> gray is the luminance itself.
    """
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1)
    from gipc.metrics import gray255  # the metrics load torchmetrics (0.8 s): only where scores are made

    return (gray255(image[None])[0] / 255.0).to(image.dtype)


def match_stems(names: Sequence[str], folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    """The file of ``folder`` for each scene name whose stem is ``name + suffix`` (case-insensitive).

    Scenes without a file are left out; two files for one scene are an error.
    """
    if not folder.is_dir():
        raise EvalInputError(f"{what} folder {folder} does not exist or is not a folder")
    by_key: dict[str, list[Path]] = {}
    for path in image_files(folder):
        by_key.setdefault(path.stem.casefold(), []).append(path)
    found = {}
    for name in names:
        candidates = [p for suffix in suffixes for p in by_key.get((name + suffix).casefold(), [])]
        if len(candidates) > 1:
            raise EvalInputError(
                f"{what} folder {folder} holds {len(candidates)} files for scene {name!r} "
                f"({', '.join(p.name for p in candidates)}); keep one"
            )
        if candidates:
            found[name] = candidates[0]
    return found


def _missing_error(missing: Sequence[str], folder: Path, what: str, hint: str) -> EvalInputError:
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return EvalInputError(f"{what} folder {folder} has no image for {len(missing)} scene(s): {shown}; {hint}")


def check_size(path: Path, size: tuple[int, int], scene: str, want: tuple[int, int], what: str) -> None:
    """Refuse ``path`` in one line unless its ``size`` is its scene's, ``want`` (both (height, width))."""
    if size != want:
        raise EvalInputError(
            f"{path} is {size[1]}x{size[0]} but the sources of scene {scene!r} are {want[1]}x{want[0]}; "
            f"{what} images must keep the sources' size"
        )


def check_sizes(pairs: PairFolder, files: Mapping[str, Path], what: str) -> int:
    """Every file of ``files`` (by scene) has its scene's size, from the headers alone: a wrong one is
    refused before any scoring starts. Returns how many of them are grayscale where their sources are
    colour, from the same headers: every metric reads luminance, so the colour they lack never counts."""
    gray_of_colour = 0
    for scene, paths, *_ in pairs.entries:
        if scene in files:
            source, made = sized([paths[0], files[scene]])
            check_size(files[scene], (made.height, made.width), scene, (source.height, source.width), what)
            gray_of_colour += (source.kind, made.kind) == ("RGB", "grayscale")
    return gray_of_colour


def _read_for(scene: Scene, path: Path, what: str) -> torch.Tensor:
    """Read ``path`` and check it has the size of the scene's sources."""
    image = read_image(path).pixels
    check_size(path, tuple(image.shape[1:]), scene.name, tuple(scene.a.shape[1:]), what)
    return image


@dataclass(frozen=True)
class FolderMethod:
    """A method whose fused images (or decision maps, ``what``) are ``files``, by scene name (see
    :func:`match_stems`): a :data:`FusedFor` that can say which file it reads."""

    files: Mapping[str, Path]
    what: str = "fused"
    gray_of_colour: int = 0
    """How many of the files are grayscale where their scene's sources are colour (:func:`check_sizes`)."""

    def __call__(self, scene: Scene) -> torch.Tensor | None:
        return _read_for(scene, self.files[scene.name], self.what) if scene.name in self.files else None


def baseline_method(name: str, steps: Steps | None = None) -> FusedFor:
    """A classic baseline of :data:`gipc.baselines.BASELINES`, fusing each scene on the fly (a focus
    sequence in turn, as gipc-fuse does); ``steps`` wraps its long loops for a progress display."""
    from gipc.baselines import get_baseline

    fuse_y = get_baseline(name, steps=steps)

    def fused_for(scene: Scene) -> torch.Tensor:
        with torch.inference_mode():
            return fuse_sequence(lambda a, b: fuse_color(fuse_y, a, b), [source[None] for source in scene.sources])[0]

    return fused_for


def plan_maps(pairs: PairFolder, values: Sequence[str], methods: Mapping[str, FusedFor]) -> dict[str, FusedFor]:
    """``--maps NAME=DIR``: each named method's decision maps, one per scene, scored against the sources' ``maps/``."""
    names = [name for name, *_ in pairs.entries]
    if values and not all(focus_map is not None for *_, focus_map in pairs.entries):
        raise EvalInputError(f"--maps: {pairs.root} has no maps/ folder of true decision maps (gipc-build-data writes one) to score them against")
    maps = {}
    for method, folder in parse_fused(values, None, flag="--maps").items():
        if method not in methods:
            raise EvalInputError(f"--maps {method}=...: no method {method!r} to attach them to; name a --fused method "
                                 f"(--maps NAME=DIR, NAME one of {', '.join(methods)})")
        files = match_stems(names, folder, MAP_SUFFIXES, f"--maps {method}:")
        missing = [n for n in names if n not in files]
        if missing:
            raise _missing_error(missing, folder, f"--maps {method}:", "name maps <scene>-map.png, as gipc-fuse --save-maps writes them")
        check_sizes(pairs, files, "decision-map")
        maps[method] = FolderMethod(files, "decision-map")
    return maps


def parse_fused(values: Sequence[str], method: str | None, flag: str = "--fused") -> dict[str, Path]:
    """``--fused`` values (``DIR`` or ``NAME=DIR``) as {method: folder}; a bare DIR is named by ``--method`` or its own name."""
    if method is not None and len(values) != 1:
        raise EvalInputError("--method names one --fused DIR; with several folders write --fused NAME=DIR")
    folders: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or Path(value).is_dir():  # a folder whose name holds '=' stays a folder
            name, folder = "", value
        if name and method is not None:
            raise EvalInputError(f"--fused {value} already names its method; drop --method {method}")
        name = name or method or Path(folder).resolve().name
        if name in folders:
            raise EvalInputError(f"two {flag} folders are both called {name!r}; name them: {flag} NAME=DIR")
        folders[name] = Path(folder)
    return folders


def attach_gt(pairs: Sequence[Scene], gt_dir: Path) -> WithGroundTruth:
    """``pairs`` with ground truth read lazily from ``gt_dir``; every scene must have one."""
    names = [name for name, *_ in pairs.entries] if isinstance(pairs, PairFolder) else [s.name for s in pairs]
    files = match_stems(names, gt_dir, GT_SUFFIXES, "ground-truth")
    missing = [n for n in names if n not in files]
    if missing:
        raise _missing_error(missing, gt_dir, "ground-truth", "PSNR/SSIM need the all-in-focus image of every scene")
    if isinstance(pairs, PairFolder):
        check_sizes(pairs, files, "ground-truth")
    return WithGroundTruth(pairs, files)


class WithGroundTruth(Sequence[Scene]):
    """Scenes of a pair folder with their ground truth from another folder, read when a scene is."""

    def __init__(self, pairs: Sequence[Scene], files: Mapping[str, Path]) -> None:
        self.pairs, self.files = pairs, files

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Scene:  # type: ignore[override]
        scene = self.pairs[index]
        return replace(scene, gt=_read_for(scene, self.files[scene.name], "ground-truth"))


def fused_files(names: Sequence[str], folder: Path, method: str, allow_missing: bool | None = None) -> dict[str, Path]:
    """A method's fused file for each scene of ``names``. A scene without one is an error unless
    ``allow_missing`` (gipc-eval's flag; ``None``: the command has no such flag), then a warning; a
    folder with none at all always is."""
    files = match_stems(names, folder, FUSED_SUFFIXES, f"--fused {method}:")
    missing = [n for n in names if n not in files]
    if not files or missing and not allow_missing:
        hint = ("name fused files <scene>.<ext> or <scene>-fused.<ext>" if not files
                else "fuse them" + (", or pass --allow-missing to score the rest" if allow_missing is not None else ""))
        raise _missing_error(missing, folder, f"--fused {method}:", hint)
    if missing:
        print(f"gipc-eval: warning: {method} has no image for {len(missing)} scene(s): {', '.join(missing)}", file=sys.stderr)
    return files


def listed(text: str, names: Iterable[str], what: str, flag: str) -> list[str]:
    """``flag``'s comma-separated ``text`` of ``names`` (``all``: every one), refused in one line where
    one is not among them (``--baselines gfdf,all``, ``--extra-metrics QMI,QY``)."""
    asked = expand((name.strip() for name in text.split(",") if name.strip()), names)
    if problem := unknown(asked, names, what):
        raise EvalInputError(f"{flag}: {problem}")
    return asked


def check_apart(fused: Collection[str], baselines: Sequence[str]) -> None:
    """Refuse a ``--fused`` folder named as a baseline fused here: the two columns would share one name."""
    if both := [name for name in baselines if name in fused]:
        raise EvalInputError(f"method name {both[0]!r} is both a --fused folder and a --baseline; rename the folder: --fused NAME=DIR")


def plan_methods(
    pairs: PairFolder, fused: Mapping[str, Path], baselines: Sequence[str], allow_missing: bool, steps: Steps | None = None
) -> dict[str, FusedFor]:
    """Every method to score, file folders first, checked against the scenes (names and sizes) before
    any scoring; ``steps``: the baselines' progress display (:func:`baseline_method`)."""
    names = [name for name, *_ in pairs.entries]
    methods = {}
    for method, folder in fused.items():
        files = fused_files(names, folder, method, allow_missing)
        methods[method] = FolderMethod(files, gray_of_colour=check_sizes(pairs, files, "fused"))
    check_apart(fused, baselines)
    for name in baselines:
        methods[name] = baseline_method(name, steps)
    if not methods:
        raise EvalInputError("nothing to score: give --fused DIR and/or --baselines NAMES")
    return methods


def scene_files(folder: PairFolder, pairs: Sequence[Scene], methods: Mapping[str, FusedFor], maps: Mapping[str, FusedFor]) -> dict[str, list[Path]]:
    """Every file scoring a scene reads, by scene: its sources, ground truth and true map, and each
    file method's fused image and decision map (what an interrupted run's kept scores stand on)."""
    truths = pairs.files if isinstance(pairs, WithGroundTruth) else {}
    folders = [method.files for method in [*methods.values(), *maps.values()] if isinstance(method, FolderMethod)]
    return {
        name: [path for path in (*sources, gt, focus_map, truths.get(name), *(files.get(name) for files in folders)) if path is not None]
        for name, sources, gt, focus_map in folder.entries
    }


def log_wandb(rows: Sequence[Row], out: Path, mode: str, config: Mapping[str, Any]) -> str:
    """Log the per-image table and the per-method means to a W&B run under ``out``; returns the run's folder."""
    import wandb

    metrics = numeric_columns(rows)
    columns = ["image", "method", *metrics]
    means = [[method, *(stats.get(c, (None,))[0] for c in metrics)] for method, stats in summarize(rows, "method", metrics).items()]
    run = wandb.init(project=conf_group("logger", "wandb")["wandb"]["project"],  # the training runs' project
                     job_type="eval", mode=mode, dir=str(out), config=dict(config))
    try:
        run.log({
            "eval/per_image": wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows]),
            "eval/mean": wandb.Table(columns=["method", *metrics], data=means),
        })
        return str(run.dir)
    finally:
        run.finish()
