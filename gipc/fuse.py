"""Fusing files: plan which sources make which output, then fuse them whole or tiled, writing
each output whole or not at all and never over an input (the ``gipc-fuse`` command is
:mod:`gipc.cli.fuse`).

Networks fuse under the rule of ``conf/fusion/default.yaml`` (:mod:`gipc.fusion`) unless asked
otherwise; baselines fuse as they are. Outputs keep the sources' bit depth and kind (gray stays
gray). Large images go through the network in overlapping tiles (docs/paper.md section 9).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from tqdm import tqdm

from gipc.align import align
from gipc.data.sources import SOURCE_NAME, group_sources, stack_folders, stack_frames
from gipc.errors import FuseInputError, UserError
from gipc.files import check_output_folder, check_writable, write_text
from gipc.fusion import Fused, Fusion
from gipc.imaging import JPEG_SUFFIXES, Image, check_output_format, check_sources, first_exif, profile, read_matching, write_image
from gipc.journal import changed_settings
from gipc.tiling import Fuser


@dataclass(frozen=True)
class Job:
    """One fusion: sources in focus order into ``output`` (and its decision map into ``map_output``)."""

    sources: tuple[Path, ...]
    output: Path
    map_output: Path | None = None
    depth: int = 8
    """The sources' deepest bit depth (8 or 16), from their headers: the output's, where its format holds it."""

    @property
    def rounded(self) -> bool:
        """Whether the output is a JPEG of 16-bit sources: written rounded to 8 bits, all JPEG holds."""
        return self.depth == 16 and self.output.suffix.lower() in JPEG_SUFFIXES


def pending(jobs: list[Job]) -> list[Job]:
    """The jobs an earlier run of the same command left unfinished: an output (the image, its map)
    missing. Outputs are written whole or not at all (:mod:`gipc.files`), so one that exists is done."""
    return [job for job in jobs if not all(path.is_file() for path in (job.output, job.map_output) if path is not None)]


RECORD = "gipc-fuse.json"
"""What made a folder of fused images, written into it before its first output: ``settings``, all that
decides the outputs' pixels (the method or the weights' sha256, the rule and the map's settings,
alignment, the network's device, precision and runtime), and ``made with``, for the record alone
(the command, gipc's version, the weights file, when)."""


def read_record(folder: Path) -> dict[str, Any] | None:
    """``folder``'s :data:`RECORD`, ``{"settings": ..., "made with": ...}``; None where it holds none."""
    path = folder / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        record = None
    if not (isinstance(record, dict) and isinstance(record.get("settings"), dict) and isinstance(record.get("made with"), dict)):
        raise FuseInputError(f"{path} is damaged; fuse into a new folder, or pass --overwrite to fuse every group again")
    return record


def check_record(folder: Path, settings: Mapping[str, Any]) -> str | None:
    """Refuse to add outputs of ``settings`` to a ``folder`` whose :data:`RECORD` names others (a folder
    must not mix two settings' images); a line to say where there is no record to compare with."""
    record = read_record(folder)
    if record is None:
        return f"{folder} holds no {RECORD}: the outputs there are taken as made with these settings"
    if changed := changed_settings(record["settings"], settings):
        if any(line.startswith("rule ") for line in changed):  # the other rule's settings go with it: the rule says it
            changed = [line for line in changed if not line.startswith("map ")]
        raise FuseInputError(
            f"{folder} holds outputs of other settings ({'; '.join(changed)}); fuse into a new folder, "
            "or pass --overwrite to fuse every group again"
        )
    return None


def made_by(folder: Path) -> str | None:
    """``folder``'s :data:`RECORD` in words, for a command that reads the folder's images (``gipc-eval``
    names what it scores); None where it holds no readable record."""
    try:
        record = read_record(folder)
    except FuseInputError:
        return None
    if record is None:
        return None
    settings, made = record["settings"], record["made with"]
    if settings.get("method"):
        what = f"method {settings['method']}"
    else:
        what = f"weights sha256 {str(settings.get('weights sha256'))[:12]}, {settings.get('device')} {settings.get('precision')} {settings.get('backend')}"
    aligned = f", aligned ({settings['align']})" if settings.get("align") else ""
    return f"made by gipc-fuse {made.get('gipc')}, rule {settings.get('rule')}{aligned}, {what} ({made.get('command')})"


def write_record(folder: Path, settings: Mapping[str, Any], made_with: Mapping[str, Any]) -> None:
    """``folder``'s :data:`RECORD` (replaced whole)."""
    write_text(folder / RECORD, json.dumps({"settings": settings, "made with": made_with}, indent=2, default=str) + "\n")


def fuse_images(fuse: Fusion | Fuser, images: list[torch.Tensor]) -> torch.Tensor:
    """Fuse (C, H, W) sources in [0, 1]: under a :class:`~gipc.fusion.Fusion`'s rule, or a plain luminance
    fuser's direct output (in turn for a sequence, colour through YCbCr)."""
    return (fuse if isinstance(fuse, Fusion) else Fusion(fuse)).fuse(images)


def plan_jobs(
    sources: list[Path],
    pairs: Path | None,
    out: Path,
    overwrite: bool,
    maps: Path | None = None,
    suffix: str | None = None,
    stacks: Path | None = None,
) -> list[Job]:
    """Jobs for explicit sources (``out`` a file, or a folder), for a folder of groups (``pairs``) or
    of focus stacks (``stacks``, a subfolder each; ``out`` a folder, each output ``<name>-fused`` +
    ``suffix``, default ``.png``; a file names its own format). One folder given as the sources is one
    stack: its frames in name order (:func:`gipc.data.sources.stack_frames`).

    Checked before any fusion: every source's header (it exists and is an image, one kind and size
    per job, no file twice; each job's ``depth`` read there), so a bad file in a folder stops the command before its first output; no
    output replaces an input, the output folder is not the ``pairs`` folder nor holds it, no output lies
    where it would be read as a stack's frame next time, and an
    existing output file or a non-empty output folder needs ``overwrite``; the same for the ``maps``
    folder, which gets ``<output stem>-map.png`` per job (a ``-fused`` ending dropped from the stem).
    """
    out_is_file = bool(out.suffix) and not out.is_dir()
    if out_is_file and suffix is not None:
        raise FuseInputError(f"{out}: a file's suffix names its format; give --format with an output folder")
    suffix = suffix or ".png"
    folder = pairs if pairs is not None else stacks
    if folder is not None:
        flag, each = ("--pairs", "group") if pairs is not None else ("--stacks", "stack")
        if sources:
            raise FuseInputError(f"give either source files or {flag} DIR, not both")
        if out_is_file:
            raise FuseInputError(f"{out}: {flag} writes one image per {each}; give an output folder")
        grouped = group_sources(folder, f", or --stacks {folder} if each is one focus stack") if pairs is not None else stack_folders(folder)
        jobs = [Job(group, out / f"{name}-fused{suffix}") for name, group in grouped]
    elif any(path.is_dir() for path in sources):
        folder = next(path for path in sources if path.is_dir())
        if len(sources) > 1:
            raise FuseInputError(f"{folder} is a folder: give source files, or one folder of a stack's frames alone")
        frames = stack_frames(folder)
        if out_is_file:
            check_output_format(out)
        jobs = [Job(frames, out if out_is_file else out / f"{folder.resolve().name}-fused{suffix}")]
    elif len(sources) < 2:
        raise FuseInputError("give two or more source images (in focus order), a folder of one stack's frames, --pairs DIR or --stacks DIR")
    elif out_is_file:
        check_output_format(out)
        jobs = [Job(tuple(sources), out)]
    else:
        match = SOURCE_NAME.match(sources[0].stem)
        jobs = [Job(tuple(sources), out / f"{match['name'] if match else sources[0].stem}-fused{suffix}")]
    if folder is not None and pairs is None:  # every image in a stack's folder is a frame
        for written, is_file in ((out, out_is_file), (maps, False)):
            if written is not None:
                _outside_stacks(written, is_file, folder, stacks is not None)
    if not out_is_file:
        check_output_folder(out, overwrite, [folder] if folder is not None else [])
    if maps is not None:
        if maps.suffix and not maps.is_dir():
            raise FuseInputError(f"--save-maps {maps}: give a folder; each fusion's map is written into it")
        check_output_folder(maps, overwrite, [folder] if folder is not None else [])
        jobs = [replace(job, map_output=maps / f"{job.output.stem.removesuffix('-fused')}-map.png") for job in jobs]
    for i, job in enumerate(jobs):
        resolved = [path.resolve() for path in job.sources]
        twice = next((path for path, real in zip(job.sources, resolved) if resolved.count(real) > 1), None)
        if twice is not None:
            raise FuseInputError(f"{twice}: the same file is given twice as a source; give each source once")
        jobs[i] = replace(job, depth=max(item.bit_depth for item in check_sources(job.sources)))
    inputs = tuple(p for job in jobs for p in job.sources)
    outputs = [path for job in jobs for path in (job.output, job.map_output) if path is not None]
    if len({path.resolve() for path in outputs}) < len(outputs):
        raise FuseInputError("two outputs would share a file name; give --save-maps a folder apart from --out")
    for path in outputs:
        check_writable(path, overwrite, inputs)
    return jobs


def _outside_stacks(written: Path, is_file: bool, folder: Path, of_stacks: bool) -> None:
    """Refuse an output (``written``, a file or a folder) that the command, run again, would read as
    a frame: one in the stack ``folder`` itself, or anywhere in a ``--stacks`` folder (a subfolder of images is a stack)."""
    place, inside = (written.parent if is_file else written).resolve(), folder.resolve()
    if place == inside or (of_stacks and inside in place.parents):
        raise FuseInputError(f"{written}: inside {folder}, where the next run would read it as {'a stack' if of_stacks else 'a frame'}; write it outside")


def fuse_job(
    images: list[Image], fusion: Fusion, align_model: str | None = None, report: Callable[[str], None] | None = None
) -> Fused:
    """One job's decoded sources fused (a network through tiles where the image is large: ``fusion.tile``),
    first registered onto the first source and cropped to their common area when ``align_model`` is
    given (``report`` gets a line on what registering did)."""
    pixels = [image.stored for image in images]  # 8 or 16 bits a value until fused: a long stack's frames take 1-2 bytes, not 4
    if align_model is not None:
        try:
            pixels = align(pixels, align_model, report)
        except UserError as error:  # name the pair: in a folder of pairs "source 2" alone says too little
            raise type(error)(f"{', '.join(str(image.path) for image in images)}: {error}") from None
    with torch.inference_mode():
        return fusion([p.unsqueeze(0) for p in pixels])


def write_outputs(job: Job, images: list[Image], fused: Fused, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """The fused image at the sources' deepest bit depth, in their colour profile and with the first
    one's EXIF (and its 8-bit map, with neither), never over one of ``inputs``."""
    write_image(
        job.output, fused.image[0], max(image.bit_depth for image in images), overwrite=overwrite, protected=inputs,
        icc=profile(images), exif=first_exif(images),
    )
    if job.map_output is not None and (shades := fused.map_image()) is not None:
        write_image(job.map_output, shades[0], 8, overwrite=overwrite, protected=inputs)


def run_jobs(
    jobs: list[Job],
    fusion: Fusion,
    overwrite: bool,
    align_model: str | None = None,
    report: Callable[[Job, str], None] | None = None,
    failed: Callable[[Job, UserError], None] | None = None,
) -> Iterator[Path]:
    """Fuse and write each job (and its map), yielding each output once it is complete on disk;
    ``report`` gets each job's line on what registering its sources did (``align_model`` given).
    With ``failed``, a job whose sources cannot be decoded or fused (a :class:`UserError`) goes to it
    and the others go on; without, that error ends the run.

    A folder runs as a pipeline: while the network fuses job i, a worker thread decodes job i + 1
    and encodes job i - 1 (Pillow and zlib release the GIL), so the network sets the pace. Outputs
    are yielded in order; when fusing stops (an error, Ctrl-C) the write in flight is finished and
    yielded first, so every output counted is whole and every whole output is counted.
    """
    inputs = tuple(p for job in jobs for p in job.sources)
    writing: tuple[Future, Path] | None = None

    def written() -> Iterator[Path]:
        """The output of the write in flight, once it is whole on disk."""
        if writing is not None:
            writing[0].result()
            yield writing[1]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gipc-io") as io:
        reading = io.submit(read_matching, jobs[0].sources) if jobs else None
        for i, job in enumerate(tqdm(jobs, desc="fusing", unit="image", disable=len(jobs) < 2, file=sys.stderr)):
            try:
                try:
                    images = reading.result()
                finally:  # the next job's sources are read whatever became of this one's
                    reading = io.submit(read_matching, jobs[i + 1].sources) if i + 1 < len(jobs) else None
                fused = fuse_job(images, fusion, align_model, None if report is None else lambda line: report(job, line))
            except BaseException as err:
                if failed is not None and isinstance(err, UserError):
                    failed(job, err)
                    continue
                if reading is not None:
                    reading.cancel()
                yield from written()
                raise
            yield from written()
            writing = (io.submit(write_outputs, job, images, fused, overwrite, inputs), job.output)
        yield from written()
