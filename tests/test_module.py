"""The manual optimisation loop of Algorithm 1: step counts, learning-rate decay, resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from gipc.module import GIPCGAN, NonFiniteLossError
from helpers import PATCH, Patches, paper_weights

def make(d_steps: int = 2, **kw) -> GIPCGAN:
    return GIPCGAN(loss=paper_weights(), patch_size=PATCH, generator={"width": 4}, d_steps_per_g_step=d_steps, **kw)


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
    assert (model.d_steps, model.g_steps) == (d_steps * steps, steps)
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

    trainer(tmp_path, max_epochs=3, callbacks=[Record()]).fit(model, loader(20, 4, 1))
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])


def test_resume_continues_step_counters_and_lr_schedule(tmp_path):
    ckpt = tmp_path / "mid.ckpt"
    first = trainer(tmp_path, max_epochs=1)
    model = make(2)
    first.fit(model, loader(3, 2, 2))
    first.save_checkpoint(ckpt)
    resumed = make(2)
    trainer(tmp_path, max_epochs=2).fit(resumed, loader(3, 2, 2), ckpt_path=str(ckpt))
    assert (resumed.g_steps, resumed.d_steps) == (6, 12)
    opt_g, _ = resumed.optimizers()
    assert {int(s["step"]) for s in opt_g.optimizer.state.values()} == {6}


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
    assert (model.d_steps, model.g_steps) == (0, 0)


def test_d_steps_below_one_is_rejected():
    with pytest.raises(ValueError, match="d_steps_per_g_step must be >= 1"):
        make(0)
