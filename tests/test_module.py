"""The manual optimisation loop of Algorithm 1: step counts, learning-rate decay, resume."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import hydra.utils
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import gipc.module
from gipc.errors import NonFiniteLossError
from gipc.module import GIPCGAN
from gipc.experiment import build_model
from gipc.pretrained import SHIPPED_WEIGHTS, export_generator, load_generator, shipped_weights_exist
from helpers import CONF, Patches, paper_model, paper_weights


def make(d_steps: int = 2, **kw) -> GIPCGAN:
    return paper_model(generator={"width": 4}, d_steps_per_g_step=d_steps, **kw)


def loader(steps: int, batch: int, d_steps: int) -> DataLoader:
    return DataLoader(Patches(steps * batch * (d_steps + 1)), batch_size=batch * (d_steps + 1))


def trainer(tmp_path, **kw) -> L.Trainer:
    opts = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", devices=1)
    return L.Trainer(**{**opts, **kw})


class LrProbe(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        g, d = module.optimizers()
        self.lrs.append((g.param_groups[0]["lr"], d.param_groups[0]["lr"]))


@pytest.mark.parametrize("d_steps", [1, 2, 3])
def test_d_steps_t_times_per_g_step_and_linear_lr_decay(tmp_path, d_steps):
    steps = 4
    model, probe = make(d_steps), LrProbe()
    trainer(tmp_path, callbacks=[probe]).fit(model, loader(steps, 2, d_steps))
    opt_g, opt_d = model.optimizers()
    adam_steps = lambda opt: {int(s["step"]) for s in opt.optimizer.state.values()}  # noqa: E731
    assert adam_steps(opt_d) == {d_steps * steps} and adam_steps(opt_g) == {steps}
    assert (model.progress.d_steps, model.progress.g_steps) == (d_steps * steps, steps)
    # Linear decay to 0 over the run: after half of it the rate is half the initial 1e-4, for G and D.
    assert probe.lrs[steps // 2 - 1] == pytest.approx((0.5e-4, 0.5e-4))
    assert probe.lrs[-1] == pytest.approx((0.0, 0.0))


def test_each_step_sees_different_patches(tmp_path):
    seen: list[torch.Tensor] = []
    model = make(2)
    model.generator.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    trainer(tmp_path).fit(model, loader(1, 2, 2))
    assert len(seen) == 3  # two D steps and one G step, each with its own forward
    assert all(not torch.equal(seen[i], seen[j]) for i in range(3) for j in range(i + 1, 3))


def test_generator_loss_falls_over_a_short_run(tmp_path):
    torch.manual_seed(0)
    model = make(1, lr=1e-3)
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(trainer.callback_metrics["train/g_content_int"]))

    trainer(tmp_path, max_epochs=3, log_every_n_steps=1, callbacks=[Record()]).fit(model, loader(20, 4, 1))
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])


def test_resume_continues_step_counters_and_lr_schedule(tmp_path):
    ckpt = tmp_path / "mid.ckpt"
    first = trainer(tmp_path, max_epochs=1)
    model = make(2)
    first.fit(model, loader(3, 2, 2))
    first.save_checkpoint(ckpt)
    resumed, probe = make(2), LrProbe()
    trainer(tmp_path, max_epochs=2, callbacks=[probe]).fit(resumed, loader(3, 2, 2), ckpt_path=str(ckpt))
    assert (resumed.progress.g_steps, resumed.progress.d_steps) == (6, 12)
    # Linear decay over the 6 batches of the resumed run, continued from batch 3, not restarted.
    assert [lr for pair in probe.lrs for lr in pair] == pytest.approx([1e-4 * 2 / 6] * 2 + [1e-4 / 6] * 2 + [0.0] * 2)
    opt_g, _ = resumed.optimizers()
    assert {int(s["step"]) for s in opt_g.optimizer.state.values()} == {6}


def test_step_metrics_are_logged_only_on_the_batches_lightning_writes(tmp_path, monkeypatch):
    """self.log costs Python time per value; batches whose values no logger writes log none, and the
    logger still gets every row it would (the values of those very batches)."""
    calls: list[int] = []
    model = make(2)
    log = model.log
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: calls.append(model.trainer.fit_loop.epoch_loop._batches_that_stepped) or log(*args, **kwargs))
    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            value = trainer.callback_metrics.get("train/g_steps")
            seen.append(None if value is None else float(value))

    logger = CSVLogger(tmp_path, name="csv")
    trainer(tmp_path, logger=logger, log_every_n_steps=3, callbacks=[Record()]).fit(model, loader(7, 2, 2))
    assert sorted(set(calls)) == [2, 5]  # batches 3 and 6 (0-based 2 and 5) of 7
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["train/g_steps"]]
    assert [(int(row["step"]), float(row["train/g_steps"])) for row in rows] == [(2, 3.0), (5, 6.0)]
    assert seen == [None, None, 3.0, 3.0, 3.0, 6.0, 6.0]  # what callbacks and the progress bar see: the last written


def test_non_finite_loss_stops_with_the_step_and_term(tmp_path):
    model = make(1)
    with torch.no_grad():
        model.generator.decoder[-2].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"D loss term\(s\) fake_int.*G step 0"):
        trainer(tmp_path).fit(model, loader(2, 2, 1))


def test_non_finite_loss_can_skip_the_batch(tmp_path):
    model = make(1, on_nonfinite="skip")
    with torch.no_grad():
        model.generator.decoder[-2].bias.fill_(float("nan"))
    trainer(tmp_path).fit(model, loader(2, 2, 1))
    assert (model.progress.d_steps, model.progress.g_steps) == (0, 0)


def test_d_steps_below_one_is_rejected():
    with pytest.raises(ValueError, match="d_steps_per_g_step must be >= 1"):
        make(0)


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_content_warmup_trains_g_alone_on_whole_batches_then_the_full_objective(tmp_path):
    model = make(2, content_warmup=0.5)
    g_batch_sizes: list[int] = []
    model.generator.register_forward_hook(lambda m, args, out: g_batch_sizes.append(out.shape[0]))
    d_calls: list[int] = []
    model.discriminator.register_forward_hook(lambda m, args, out: d_calls.append(1))
    d_before: list[torch.Tensor] = []
    d_calls_per_batch: list[int] = []

    class AfterWarmup(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            d_calls_per_batch.append(len(d_calls) - sum(d_calls_per_batch))
            if batch_idx == 1:
                d_before.append(_flat(module.discriminator))

    initial_d = _flat(model.discriminator)
    trainer(tmp_path, callbacks=[AfterWarmup()]).fit(model, loader(4, 2, 2))
    assert torch.equal(d_before[0], initial_d)  # the warm-up never touched D
    assert d_calls_per_batch[:2] == [0, 0] and all(calls > 0 for calls in d_calls_per_batch[2:])  # nor even ran it
    # Two warm-up G steps on all 6 patches, then per batch two D steps (no grad) and a G step on 2 each.
    assert g_batch_sizes == [6, 6, 2, 2, 2, 2, 2, 2]
    assert (model.progress.g_steps, model.progress.d_steps) == (4, 4)


@pytest.mark.parametrize(
    "ablation, g_adversarial, d_adversarial",
    [  # section 4.2 and conf/ablation: (l1, l2) weigh G's intensity and gradient terms, (l3, l4, l5, l6) D's
        ("none", (0.1, 1.0), (0.1, 1.0, 0.1, 1.0)),
        ("without_int", (0.0, 1.0), (0.0, 1.0, 0.0, 1.0)),
        ("without_gra", (0.1, 0.0), (0.1, 0.0, 0.1, 0.0)),
    ],
)
def test_each_step_optimises_the_configured_objective(tmp_path, monkeypatch, ablation, g_adversarial, d_adversarial):
    """The weights each G and D step hands the losses are the composed config's, an ablation's zeros
    included, and both Adams use section 4.2's betas (0.5, 0.999)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"ablation={ablation}"])
    weights = hydra.utils.instantiate(cfg.loss)
    seen: dict[str, list] = {"G": [], "D": []}
    for net, name in (("G", "generator_loss"), ("D", "discriminator_loss")):
        loss = getattr(gipc.module, name)
        monkeypatch.setattr(gipc.module, name, lambda *args, net=net, loss=loss: seen[net].append(args[3]) or loss(*args))
    model = make(2, loss=weights)
    trainer(tmp_path).fit(model, loader(3, 2, 2))
    assert len(seen["G"]) == 3 and len(seen["D"]) == 6  # two D steps per G step, an ablation's too
    assert all((w.lam, w.beta1, w.beta2) == (9.3, 1.3, 4.5) for w in seen["G"] + seen["D"])  # eq. 10-12
    assert all((w.l1, w.l2) == pytest.approx(g_adversarial) for w in seen["G"])
    assert all((w.l3, w.l4, w.l5, w.l6) == pytest.approx(d_adversarial) for w in seen["D"])
    assert [opt.param_groups[0]["betas"] for opt in model.optimizers()] == [(0.5, 0.999)] * 2


def test_content_only_ablation_never_runs_the_discriminator(tmp_path):
    zero = dict(l1=0.0, l2=0.0, l3=0.0, l4=0.0, l5=0.0, l6=0.0)
    model = make(2, loss=paper_weights(**zero))
    calls: list[int] = []
    model.discriminator.register_forward_hook(lambda m, args, out: calls.append(1))
    trainer(tmp_path).fit(model, loader(3, 2, 2))
    assert calls == [] and (model.progress.g_steps, model.progress.d_steps) == (3, 0)


def test_bf16_mixed_steps_run_the_networks_in_bf16_and_stay_finite(tmp_path):
    model = make(2, channels_last=True)
    out_dtypes: set[torch.dtype] = set()
    model.generator.register_forward_hook(lambda m, args, out: out_dtypes.add(out.dtype))
    logged: list[dict[str, float]] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            logged.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    trainer(tmp_path, precision="bf16-mixed", log_every_n_steps=1, callbacks=[Record()]).fit(model, loader(3, 2, 2))
    assert out_dtypes == {torch.bfloat16}
    assert (model.progress.g_steps, model.progress.d_steps) == (3, 6)
    assert all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in logged)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    conv = model.generator.enc_a[1][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_init_generator_starts_g_from_an_exported_file_and_d_fresh(tmp_path):
    source = make(2)
    torch.nn.init.normal_(source.generator.decoder[-2].weight)  # weights no fresh init would draw
    with torch.no_grad():
        for p in source.discriminator.parameters():
            p.fill_(0.123)  # a D no fresh init draws: it must not come along
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {"generator": {"width": 4}}}, ckpt)
    exported = export_generator(ckpt, tmp_path / "g.pt")
    for init in (exported, ckpt):  # the exported file, and the full checkpoint that also holds D
        tuned = make(2, init_generator=str(init))
        assert torch.equal(_flat(tuned.generator), _flat(source.generator))
        assert not (_flat(tuned.discriminator) == 0.123).any()


@pytest.mark.skipif(not shipped_weights_exist(), reason="this install holds no shipped generator")
def test_the_config_builds_the_networks_and_starts_g_from_the_shipped_weights_outside_the_module():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["model.init_generator=shipped", "model.generator.head=weights", "data.patch_size=32"])
    model = build_model(cfg.model, seed=0)
    shipped = load_generator(SHIPPED_WEIGHTS).state_dict()
    last = model.generator.output_layer()
    state = model.generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in shipped.items() if not k.startswith(last))
    assert not torch.equal(state[f"{last}weight"], shipped[f"{last}weight"])  # the other head's last layer starts fresh
    assert model.discriminator.head.in_features == 128 * (32 // 16) ** 2 and model.hparams["generator"]["head"] == "weights"
    assert model.weights.lam == cfg.loss.lam  # the config's LossWeights object itself, not a dict


def test_init_generator_of_another_shape_is_one_clear_error(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": make(2).state_dict(), "hyper_parameters": {"generator": {"width": 4}}}, ckpt)
    with pytest.raises(ValueError, match=r"model.init_generator=.*do not fit model.generator \(size mismatch"):
        paper_model(generator={"width": 8}, init_generator=str(ckpt))


def test_content_warmup_raises_no_scheduler_order_warning(tmp_path, recwarn):
    trainer(tmp_path).fit(make(2, content_warmup=0.5), loader(4, 2, 2))
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_model_summary_counts_the_generators_flops_of_table_1():
    """The summary Lightning prints at the start of fit counts 2 FLOPs per multiply-accumulate: for
    the paper's widths, 155,056 MACs per pixel by Table 1's arithmetic (benchmarks/bench_runtime.py)."""
    model = paper_model()
    summary = ModelSummary(model)
    assert summary.total_flops == 2 * 155_056 * 64 * 64
    assert model.training  # the summary's forward ran in eval mode and put the mode back


@pytest.mark.parametrize("stage", ["val", "test"])
def test_each_image_counts_once_where_ddp_pads_an_uneven_split(stage: str) -> None:
    """5 images on 2 ranks in batches of 2: DistributedSampler gives rank 0 images 0, 2, 4 and rank 1
    images 1, 3 and a repeat of image 0. Counted by hand: rank 0's batches hold 2 and 1 real images,
    rank 1's 2 and then none, 5 in all."""
    model = make()
    counts = {}
    for rank in (0, 1):
        sampler = DistributedSampler(range(5), num_replicas=2, rank=rank, shuffle=False)
        batches = DataLoader(range(5), batch_size=2, sampler=sampler)
        model._trainer = SimpleNamespace(**{f"{stage}_dataloaders": batches})
        counts[rank] = [model._real_samples(stage, index, len(batch)) for index, batch in enumerate(batches)]
    assert counts == {0: [2, 1], 1: [2, 0]}
