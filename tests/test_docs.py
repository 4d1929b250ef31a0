"""The commands the README and the docs show are commands the code takes: each ``python gipc/run.py``
line composes under Hydra with every value it sweeps, each ``gipc-*`` flag is one its ``--help`` lists,
and the README's tables name every installed command and every config group and option."""

from __future__ import annotations

import itertools
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image as PILImage

from gipc.cli.fuse import main
from gipc.imaging import read_image
from helpers import CONF, REPO

DOCS = sorted([REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("*/README.md"), *REPO.glob("gipc/**/*.md")])
RUN = "python gipc/run.py"
SHELL = {"&&", "||", ";", "|", "&", ">", ">>", "2>&1"}  # where a shell line's next command or redirection starts
COMMANDS = {entry.name: entry for entry in entry_points(group="console_scripts") if entry.name.startswith("gipc-")}


def _lines(path: Path) -> list[tuple[int, str]]:
    """``path``'s lines with their numbers, a line that ends in a backslash joined to the next (a shell
    command over several) and numbered as its first."""
    joined: list[tuple[int, str]] = []
    carry = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        start, text = carry if carry is not None else (number, "")
        text += line
        carry = (start, text[:-1] + " ") if line.endswith("\\") else None
        if carry is None:
            joined.append((start, text))
    return joined


def _commands(prefix: str) -> list[tuple[str, list[str]]]:
    """(where, words after ``prefix``) of each command in the docs that starts with ``prefix``:
    inside an inline code span, up to its end; on a code line, up to a comment or the next shell command."""
    found = []
    for path in DOCS:
        for number, line in _lines(path):
            for span in re.findall(r"`([^`]*)`", line) if "`" in line else [line]:
                for start in (m.end() for m in re.finditer(re.escape(prefix) + r"(?=\s|$)", span)):
                    try:
                        words = shlex.split(span[start:], comments=True)
                    except ValueError:  # an unclosed quote: prose, not a command
                        continue
                    cut = next((i for i, word in enumerate(words) if word in SHELL), len(words))
                    found.append((f"{path.relative_to(REPO)}:{number}", words[:cut]))
    return found


def _placeholder(words: list[str]) -> bool:
    """A command written with a stand-in (``<run dir>``, ``...``) that only a reader can fill in."""
    return any("<" in word or "..." in word for word in words)


RUNS = [(where, words) for where, words in _commands(RUN) if not _placeholder(words)]
FLAGS = [(where, name, words) for name in COMMANDS for where, words in _commands(name)]


def test_the_docs_show_commands_of_each_kind():
    """The extraction itself finds what the README shows, so the tests below cannot pass on nothing."""
    assert ("README.md", ["-m", "ablation=none,without_int,without_gra"]) in [(w.split(":")[0], words) for w, words in RUNS]
    assert {"gipc-fuse", "gipc-eval", "gipc-compare"} <= {name for _, name, _ in FLAGS}
    assert len(RUNS) >= 20


def _expanded(overrides: list[str]) -> list[list[str]]:
    """Every run a sweep's overrides make (``a=1,2 b=x,y``: four), as plain ``key=value`` lists."""
    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]
        choices.append([f"{key}={value}" for value in values])
    return [list(run) for run in itertools.product(*choices)]


@pytest.mark.parametrize(("where", "words"), RUNS, ids=[f"{where} {' '.join(words)}"[:100] for where, words in RUNS])
def test_each_run_command_in_the_docs_composes(where: str, words: list[str]) -> None:
    overrides = [word for word in words if word != "-m"]
    assert all(not word.startswith("-") for word in overrides), f"{where}: a flag gipc/run.py does not take"
    runs = _expanded(overrides) if "-m" in words else [overrides]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for run in runs:
            cfg = compose("config", overrides=run, return_hydra_config=True)  # an unknown key or option raises
            for override in run:
                key, value = override.split("=", 1)
                if key in cfg.hydra.runtime.choices:
                    assert cfg.hydra.runtime.choices[key] == value, (where, override)


def _help_flags(name: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[name].load()(["--help"])
    assert exit_.value.code == 0
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out))


@pytest.mark.parametrize("name", sorted({name for _, name, _ in FLAGS}))
def test_each_flag_the_docs_give_a_command_is_one_it_takes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    known = _help_flags(name, capsys)
    used = {(where, word.split("=", 1)[0]) for where, command, words in FLAGS if command == name for word in words if word.startswith("--")}
    assert used, f"no {name} flag found in the docs"
    assert not [(where, flag) for where, flag in sorted(used) if flag not in known], f"{name} --help lists {sorted(known)}"


def _readme_table(first_column: str) -> dict[str, str]:
    """The README's table rows whose first cell is a code span matching ``first_column``: {name: rest of the row}."""
    rows = re.findall(r"^\| `([^`]+)` \|(.*)$", (REPO / "README.md").read_text(), re.M)
    return {name: rest for name, rest in rows if re.fullmatch(first_column, name)}


def test_the_readme_lists_every_command_the_package_installs():
    assert set(_readme_table(r"gipc-[a-z-]+")) == set(COMMANDS)


def test_run_help_names_every_command_the_package_installs():
    """``python gipc/run.py --help`` ends by naming the other commands: exactly the installed ones."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        help_ = compose("config", return_hydra_config=True).hydra.help
    assert help_.app_name == "gipc" and "resume=<run or sweep dir>" in help_.header
    assert set(re.findall(r"gipc-[a-z-]+[a-z]", help_.footer)) == set(COMMANDS)


def test_the_readmes_config_table_lists_every_group_with_its_options():
    """Every config group of conf/ a user picks from (not Hydra's own settings, nor the output paths),
    with exactly the options its folder holds."""
    table = _readme_table(r"[a-z_]+")
    groups = {path.name for path in CONF.iterdir() if path.is_dir()} - {"hydra", "paths"}
    assert set(table) == groups
    for group, rest in table.items():
        options = set(re.findall(r"`([a-z0-9_]+)`", rest.split("|")[0]))
        assert options == {path.stem for path in (CONF / group).glob("*.yaml")}, group


def test_the_readmes_python_example_runs_and_writes_as_gipc_fuse_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python block, run as it stands on two small photos: the fused file keeps their
    EXIF and is the file gipc-fuse writes from them, to the pixel."""
    (block,) = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    for name, blurred in (("a", slice(0, 32)), ("b", slice(32, 64))):
        photo = scene.copy()
        photo[:, blurred] = np.asarray(PILImage.fromarray(scene).resize((16, 12)).resize((64, 48)))[:, blurred]
        exif = PILImage.Exif()
        exif[0x010F] = f"camera {name}"
        PILImage.fromarray(photo).save(tmp_path / f"{name}.jpg", quality=95, exif=exif)
    monkeypatch.chdir(tmp_path)
    exec(block, {})
    assert main(["a.jpg", "b.jpg", "--out", "by-command.png"]) == 0
    by_api, by_command = read_image("fused.png"), read_image("by-command.png")
    assert torch.equal(by_api.stored, by_command.stored) and by_api.exif == by_command.exif
    with PILImage.open("fused.png") as im:
        assert im.getexif()[0x010F] == "camera a"
