"""The project as a wheel, not a checkout: what ``pip install .`` gives a user; and a checkout's
``gipc/run.py`` runs that checkout, whichever gipc is installed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building a wheel offline needs setuptools in this environment")
    # From a copy: setuptools builds in the source tree, and a stale build/ there would be packed.
    source = tmp_path_factory.mktemp("source") / "gipc"
    skip = shutil.ignore_patterns(".*", "outputs", "build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, cwd=out,
    )
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("gipc-*.whl")
    return path


def test_the_wheel_carries_every_config_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"gipc/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert expected and expected <= names
    assert {"gipc/weights/gipc-cpu.pt", "gipc/weights/MODEL_CARD.md"} <= names


@pytest.fixture
def site(wheel: Path, tmp_path: Path) -> Path:
    """The wheel unpacked as an installed package would lie in site-packages (put it on PYTHONPATH)."""
    path = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(path)
    return path


def test_gipc_fuse_reads_its_defaults_from_the_installed_package(site: Path, tmp_path: Path) -> None:
    probe = (
        "import gipc, gipc.configs as c, pathlib, sys;"
        "print(pathlib.Path(gipc.__file__).parent, c.CONF_DIR);"
        "from gipc.cli.fuse import main; sys.exit(main(['--help']))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    package, conf = run.stdout.splitlines()[0].split()
    assert Path(package) == site / "gipc" and Path(conf) == site / "gipc" / "conf"
    assert "--rule" in run.stdout


def test_training_composes_from_the_installed_package_alone(site: Path, tmp_path: Path) -> None:
    """``python -m gipc.run`` from a wheel, outside any checkout: the config tree is the package's own
    (a path beside ``run.py``, ``../conf``, is no file of the wheel), and it composes."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-m", "gipc.run", "--info", "all", "experiment=full"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    assert f"file://{site / 'gipc' / 'conf'} " in run.stdout  # Hydra's search path
    assert "\ntask_name: full\n" in run.stdout  # the composed config


def test_a_checkouts_run_py_composes_that_checkouts_configs_with_its_code(tmp_path: Path) -> None:
    """``python <checkout>/gipc/run.py`` with another gipc installed (this suite's): the configs Hydra
    searches are the script's checkout's, which ``gipc.configs`` places beside the code it imported."""
    other = tmp_path / "checkout"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "gipc", other / "gipc", symlinks=True, ignore=skip)  # gipc/conf links to ../conf
    shutil.copytree(ROOT / "conf", other / "conf", ignore=skip)
    run = subprocess.run([sys.executable, str(other / "gipc" / "run.py"), "--info", "searchpath"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"file://{other / 'conf'} " in run.stdout
