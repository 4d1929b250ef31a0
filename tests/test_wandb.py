"""W&B dashboards offline: names, groups, tags, config, losses, learning rates, metric table, image panels;
the sweep YAMLs in sweeps/ drive gipc/run.py with overrides Hydra accepts."""

from __future__ import annotations

import itertools
import json
import re
import socket
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from omegaconf import OmegaConf
from PIL import Image

import gipc.wandb_mode
from gipc.callbacks import ImagePanels, image_panel
from gipc.errors import ConfigError
from gipc.wandb_mode import wandb_offline
from helpers import CONF, REPO, run_gipc

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc, length, type)-framed chunks


def wandb_records(path: Path) -> list:
    """Every protobuf Record of an offline ``run-*.wandb`` file, read without a W&B server."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunk, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7
            continue
        chunk += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.mark.slow
def test_offline_run_holds_config_losses_lrs_metrics_table_and_panels(tmp_path):
    args = (
        "ablation=without_int", "loss.ratio=0.2", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=1", "trainer.log_every_n_steps=1",
        "data.patch_size=16", "data.batch_size=2", "data.source.max_side=64", "data.source.val_count=2",
        "callbacks.test_report.baselines=[]", "callbacks.test_report.shipped=false",  # one row: the model's
    )
    done = run_gipc(tmp_path, *args, env={"WANDB_SILENT": "false"})
    assert "wandb: WARNING" not in done.stdout + done.stderr  # Lightning's anonymous=None is left out
    # and what every run printed that says nothing about the run (gipc.experiment.quiet_library_noise)
    assert not re.search(r"Tip: |model summary|LeafSpec", done.stdout + done.stderr)
    (run_dir,) = (tmp_path / "outputs" / "quick" / "runs").iterdir()
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    records = wandb_records(next(offline.glob("run-*.wandb")))

    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert "ablation=without_int" in run.display_name and "loss.ratio=0.2" in run.display_name
    assert run.run_group == "quick"
    assert {"quick", "ablation=without_int", "ratio=0.2"} <= set(run.tags)

    config = {item_key(i): json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config" for i in r.config.update}
    assert config["loss"]["l1"] == 0.0 and config["loss"]["l2"] == 1.0 and config["loss"]["ratio"] == 0.2
    assert config["trainer"]["max_epochs"] == 1  # the resolved Hydra config, not only the module's hparams

    history = {item_key(i) for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
    for key in ("train/g_loss", "train/d_loss", "train/g_total", "train/d_total", "train/lr_g", "train/lr_d", "val/QABF", "test/QABF"):
        assert key in history, key
    assert any(k.startswith("train/g_") and k not in ("train/g_loss", "train/g_total", "train/g_steps") for k in history)
    assert any(k.startswith("val/panels") for k in history) and any(k.startswith("test/per_image") for k in history)

    panels = sorted((offline / "files" / "media" / "images" / "val" / "panels").glob("*.png"))
    assert len(panels) == 2  # max_images of the two validation images
    for path in panels:
        with Image.open(path) as png:
            width, height = png.size
        assert width % 4 == 0 and height % 2 == 0  # A | B | fused | GT over their Laplacian maps
    (table,) = (offline / "files" / "media" / "table" / "test").glob("per_image*.table.json")
    content = json.loads(table.read_text())
    assert content["columns"][:3] == ["image", "method", "EN"]
    assert [row[:2] for row in content["data"]] == [["cell", "gipc"], ["cell", "gipc+map"]]  # one test image, both rules

    summary = {item_key(i): i.value_json for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    report = (run_dir / "metrics.csv").read_text().splitlines()
    qabf = float(report[1].split(",")[report[0].split(",").index("QABF")])
    assert float(summary["test/QABF"]) == pytest.approx(qabf, abs=1e-6)

    # Resumed for one more epoch: the same W&B run (one id), so `wandb sync` uploads both launches as one.
    run_gipc(tmp_path, *args[:2], "trainer.max_epochs=2", *args[3:], f"resume={run_dir}")
    launches = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(launches) == 2
    ids = {next(r.run for r in wandb_records(next(p.glob("run-*.wandb"))) if r.WhichOneof("record_type") == "run").run_id for p in launches}
    assert ids == {(run_dir / "wandb" / "gipc-run-id").read_text().strip()}


@pytest.fixture
def no_wandb_setup(tmp_path, monkeypatch):
    """A home with no W&B login, settings or mode: what a new user's machine has."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC", *gipc.wandb_mode.PROXIES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    return tmp_path


def _login(home: Path, host: str) -> None:
    """What ``wandb login`` writes: the host's API key in ~/.netrc."""
    (home / ".netrc").write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    (home / ".netrc").chmod(0o600)


def test_auto_logs_online_only_where_the_user_has_logged_in_and_the_server_answers(no_wandb_setup, monkeypatch):
    home = no_wandb_setup
    assert wandb_offline("auto") == (True, "no W&B login here (`wandb login` puts runs online)")
    with socket.create_server(("127.0.0.1", 0)) as server:  # a server of our own, named as `wandb login --host` names one
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", url)
        assert wandb_offline("auto")[0] is True  # still no login for it
        _login(home, "127.0.0.1")
        assert wandb_offline("auto") == (False, f"logged in to {url}")
    assert wandb_offline("auto") == (True, f"logged in, but {url} does not answer; `wandb sync` uploads the run later")
    monkeypatch.delenv("WANDB_BASE_URL")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setattr(gipc.wandb_mode, "_answers", lambda hostname, port: (hostname, port) == ("api.wandb.ai", 443))
    assert wandb_offline("auto") == (False, "logged in to https://api.wandb.ai")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # only the proxy answers here: wandb goes through it
    monkeypatch.setattr(gipc.wandb_mode, "_answers", lambda hostname, port: False)
    assert wandb_offline("auto") == (False, "logged in to https://api.wandb.ai (through HTTPS_PROXY, not probed)")


def test_the_users_own_wandb_mode_decides_before_auto_and_true_false_force_it(no_wandb_setup, monkeypatch):
    config = no_wandb_setup / "wandb-config"
    config.mkdir()
    (config / "settings").write_text("[default]\nmode = online\n")  # `wandb online`
    assert wandb_offline("auto") == (False, "wandb's settings (wandb online/offline) is online")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline("auto") == (True, "WANDB_MODE is offline")
    assert wandb_offline(False) == (False, "logger.wandb.offline=false")
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_offline(True) == (True, "logger.wandb.offline=true")
    with pytest.raises(ConfigError, match="^logger.wandb.offline must be true, false or auto, got 'maybe'$"):
        wandb_offline("maybe")


@pytest.mark.parametrize("mode", ["", "ofline"])
def test_a_wandb_mode_wandb_cannot_read_is_one_line_whatever_the_setting(no_wandb_setup, monkeypatch, mode):
    # `export WANDB_MODE=` left it empty: wandb's own refusal was a multi-line validation error once its run started
    monkeypatch.setenv("WANDB_MODE", mode)
    for offline in ("auto", True, False):
        with pytest.raises(ConfigError, match=rf"^WANDB_MODE='{mode}' is no W&B mode; set it to online, offline or disabled, or unset it"):
            wandb_offline(offline)


# ----------------------------------------------------------------- image panels, in process
def test_online_without_a_login_is_one_line_naming_wandb_login_and_the_offline_default(tmp_path):
    env = {"WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_CONFIG_DIR": str(tmp_path / "cfg")}
    done = run_gipc(tmp_path, "logger.wandb.offline=false", "trainer.max_epochs=1", env=env, check=False)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith("error: W&B cannot start the run: ") and "wandb login" in last and "logger.wandb.offline=true" in last
    (run_dir,) = (tmp_path / "outputs" / "quick" / "runs").iterdir()
    assert (run_dir / "FAILED").read_text().strip() == last.removeprefix("error: ")
    assert not (run_dir / "checkpoints").exists()  # it stopped before training


def test_image_panel_stacks_images_over_shared_scale_laplacian_maps():
    sharp = torch.zeros(3, 8, 8)
    sharp[:, :, 4:] = 1.0  # a step edge
    blurred = sharp * 0.5 + 0.25  # same edge, half the contrast
    panel = image_panel(sharp, blurred, sharp, sharp, "8-neighbour")
    assert panel.shape == (3, 16, 32)
    assert torch.equal(panel[:, :8, 8:16], blurred)  # top row: the inputs as given
    maps = panel[0, 8:]
    edge = torch.zeros(8, 8)
    edge[:, 3:5] = 1.0  # |Laplacian| is as bright on the dark side of the step as on the light side
    assert torch.equal(maps[:, :8], edge)  # the sharp edge sets the common scale
    torch.testing.assert_close(maps[:, 8:16], edge / 2)  # half the contrast, half the brightness
    green = torch.zeros(3, 8, 8)
    green[1, :, 4:] = 1.0  # an edge in the green channel alone
    grey = sharp * 0.587  # the same edge in luminance (BT.601: green weighs 0.587)
    maps = image_panel(green, grey, grey, None, "8-neighbour")[:, 8:]
    torch.testing.assert_close(maps[:, :, :8], maps[:, :, 8:16])
    assert maps.max() == 1.0
    gray = image_panel(torch.rand(1, 5, 6), torch.rand(1, 5, 6), torch.rand(1, 5, 6), None, "4-neighbour")
    assert gray.shape == (1, 10, 18)


def test_image_panels_log_only_to_wandb_every_n_epochs(tmp_path):
    wandb_logger = WandbLogger(offline=True, save_dir=str(tmp_path))  # lazy: starts no run
    csv_logger = CSVLogger(str(tmp_path))
    callback = ImagePanels(every_n_epochs=2)

    def trainer(epoch: int, loggers: list, sanity_checking: bool = False, is_global_zero: bool = True) -> SimpleNamespace:
        return SimpleNamespace(sanity_checking=sanity_checking, is_global_zero=is_global_zero, current_epoch=epoch, loggers=loggers)

    assert callback._loggers(trainer(1, [csv_logger, wandb_logger])) == [wandb_logger]  # 2nd epoch
    assert callback._loggers(trainer(0, [csv_logger, wandb_logger])) == []
    assert callback._loggers(trainer(1, [csv_logger])) == []
    assert callback._loggers(trainer(1, [wandb_logger], sanity_checking=True)) == []  # Lightning's check before training
    assert callback._loggers(trainer(1, [wandb_logger], is_global_zero=False)) == []  # rank zero logs


@pytest.mark.parametrize("setting, value", [("every_n_epochs", 0), ("max_images", 0), ("max_images", 1.5)])
def test_image_panels_refuse_a_setting_below_one_or_not_whole(setting: str, value) -> None:
    with pytest.raises(ValueError, match=rf"^callbacks\.image_panels\.{setting} must be an integer >= 1, got {value}$"):
        ImagePanels(**{setting: value})


def test_image_panels_log_the_real_images_first_panels_in_8_bits_with_their_captions(tmp_path, monkeypatch):
    logger = WandbLogger(offline=True, save_dir=str(tmp_path))
    logged: list[dict] = []
    monkeypatch.setattr(logger, "log_image", lambda **kwargs: logged.append(kwargs))
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=0, global_step=7, loggers=[logger])
    module = SimpleNamespace(weights=SimpleNamespace(laplacian="8-neighbour"))
    levels = torch.randint(0, 255, (4, 3, 1, 4, 6), generator=torch.Generator().manual_seed(0))
    a, b, fused, gt = (levels + 0.6) / 255  # 8-bit levels 0.6 above a whole one: rounding gives the next
    fused[0, 0, 0, 0] = 1.2  # out of range: shown white
    callback = ImagePanels(max_images=3)
    callback.on_validation_epoch_start(trainer, module)
    # The third image is DDP padding (outputs["real"] 2); the next batch, without ground truth, fills the third panel.
    callback.on_validation_batch_end(trainer, module, {"fused": fused, "real": 2}, {"a": a, "b": b, "gt": gt, "name": ["x", "y", "pad"]}, 0)
    callback.on_validation_batch_end(trainer, module, {"fused": fused}, {"a": a, "b": b, "name": ["z", "u", "v"]}, 1)
    callback.on_validation_epoch_end(trainer, module)
    assert [entry["key"] for entry in logged] == ["val/panels/x", "val/panels/y", "val/panels/z"]
    assert [entry["caption"] for entry in logged] == [
        ["x: A | B | fused | GT (Laplacian below)"], ["y: A | B | fused | GT (Laplacian below)"], ["z: A | B | fused (Laplacian below)"]]
    assert all(entry["step"] == 7 for entry in logged)
    expected = (levels + 1).to(torch.uint8)
    expected[2, 0, 0, 0, 0] = 255
    for i, entry in enumerate(logged):
        (panel,) = entry["images"]
        shown = expected[:, i, 0] if i < 2 else expected[:3, 0, 0]  # z is the first image of its batch
        assert panel.dtype == np.uint8 and panel.shape == (8, 6 * len(shown))
        assert np.array_equal(panel[:4], np.concatenate(list(shown.numpy()), axis=1))
        assert panel[4:].max() == 255  # the Laplacian maps, scaled to their maximum


# ----------------------------------------------------------------- W&B sweeps
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def test_every_paper_study_has_a_wandb_sweep():
    assert {p.stem for p in SWEEPS} == {"ablation", "ratio", "betas"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_wandb_sweep_runs_are_hydra_overrides_that_compose(path, monkeypatch):
    """Every grid point, expanded by W&B's own ``${args_no_hyphens}`` code, composes to the swept values."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")  # what `wandb agent` exports to each run
    monkeypatch.setenv("WANDB_RUN_ID", "run1")
    sweep = yaml.safe_load(path.read_text())
    # runs ranked on validation pairs, as the Optuna sweep optimises: never on the test set
    assert (sweep["program"], sweep["method"], sweep["metric"]) == ("gipc/run.py", "grid", {"name": "val/QABF", "goal": "maximize"})
    command = sweep["command"]
    assert command[:3] == ["${env}", "python", "${program}"] and command[-1] == "${args_no_hyphens}"
    params = sweep["parameters"]
    for values in itertools.product(*(p["values"] for p in params.values())):
        args = {key: {"value": value} for key, value in zip(params, values)}
        overrides = create_sweep_command_args({"args": args})["args_no_hyphens"]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*command[3:-1], *overrides], return_hydra_config=True)
        assert cfg.logger.wandb.offline is False  # sweep runs must reach the server
        assert cfg.hydra.run.dir == "outputs/quick/wandb-sweeps/sweep1/run1"
        for key, value in zip(params, values):
            got = cfg.hydra.runtime.choices[key] if key in cfg.hydra.runtime.choices else OmegaConf.select(cfg, key)
            assert got == value, (key, got, value)
