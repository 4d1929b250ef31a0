"""Precise BatchNorm: running statistics re-estimated exactly, nothing else touched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gipc.models.batchnorm import recalibrate_batchnorm
from gipc.rundir import run_datamodule, training_inputs

from helpers import random_eval_generator, run_dir_with_checkpoints


class _Norm(nn.Module):
    """One BatchNorm behind a conv whose output is its input (weight 1, bias 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        nn.init.ones_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.norm = nn.BatchNorm2d(1, momentum=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def test_statistics_are_the_equal_mean_over_batches_by_hand() -> None:
    model = _Norm().eval()
    model.norm.running_mean.fill_(7.0)  # stale statistics, as training leaves them
    model.norm.running_var.fill_(9.0)
    model.norm.num_batches_tracked.fill_(500)  # momentum=None averages over this count unless it restarts at 0
    batches = [(torch.tensor([0.0, 2.0]).view(2, 1, 1, 1),), (torch.tensor([4.0, 4.0, 10.0]).view(3, 1, 1, 1),)]
    assert recalibrate_batchnorm(model, batches) == 2
    # Batch means 1 and 6 -> 3.5; unbiased variances 2 and 12 -> 7.
    assert model.norm.running_mean.item() == pytest.approx(3.5)
    assert model.norm.running_var.item() == pytest.approx(7.0)
    assert model.norm.momentum == 0.3 and not model.training and not model.norm.training
    assert model.conv.weight.item() == 1.0 and model.norm.weight.item() == 1.0 and model.norm.bias.item() == 0.0


@pytest.mark.parametrize(("norm", "shape"), [(nn.BatchNorm1d, (-1, 1)), (nn.BatchNorm3d, (-1, 1, 1, 1, 1))])
def test_every_batchnorm_kind_is_recalibrated(norm: type[nn.Module], shape: tuple[int, ...]) -> None:
    model = norm(1, momentum=0.3).eval()
    batches = [(torch.tensor([0.0, 2.0]).view(shape),), (torch.tensor([4.0, 4.0, 10.0]).view(shape),)]
    recalibrate_batchnorm(model, batches)
    # The by-hand batches above: means 1 and 6, unbiased variances 2 and 12.
    assert model.running_mean.item() == pytest.approx(3.5) and model.running_var.item() == pytest.approx(7.0)


def test_a_failing_batch_still_restores_momentum_and_mode() -> None:
    model = _Norm().eval()
    batches = [(torch.zeros(2, 1, 1, 1),), (torch.zeros(2, 3, 1, 1),)]  # the second has 3 channels: the conv fails
    with pytest.raises(RuntimeError):
        recalibrate_batchnorm(model, batches)
    assert model.norm.momentum == 0.3 and not model.training and not model.norm.training


def test_no_batches_is_an_error_and_leaves_the_statistics() -> None:
    model = _Norm()
    model.norm.running_mean.fill_(7.0)
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batchnorm(model, iter([]))
    assert model.norm.running_mean.item() == 7.0 and model.training


def test_a_generator_calibrated_on_one_batch_fuses_it_as_in_training() -> None:
    """With exact statistics, eval mode on that batch matches train mode (up to the n/(n-1) of the variance)."""
    generator = random_eval_generator(seed=3)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(64, 1, 12, 12, generator=g) * 2 - 1, torch.rand(64, 1, 12, 12, generator=g) * 2 - 1
    stale = generator(a, b)
    recalibrate_batchnorm(generator, [(a, b)])
    with torch.no_grad():
        calibrated = generator(a, b)
        in_training = generator.train()(a, b)
    assert (calibrated - in_training).abs().max() < 0.02 < (stale - in_training).abs().max()


def test_training_inputs_are_the_runs_patches_in_the_networks_range(tmp_path) -> None:
    """A loader batch holds one training batch per D and G step (3 here); BatchNorm must see each alone,
    mapped from [0, 1] to the network's [-1, 1] as in training."""
    data = run_datamodule(run_dir_with_checkpoints(tmp_path, batches_per_step=3))
    loaded = next(iter(data.train_dataloader()))
    assert loaded["a"].shape[0] == 3 * data.batch_size
    inputs = list(training_inputs(data, 3))
    assert len(inputs) == 3
    for i, (a, b) in enumerate(inputs):
        part = slice(i * data.batch_size, (i + 1) * data.batch_size)
        assert a.shape == b.shape == (data.batch_size, 1, data.patch_size, data.patch_size)
        assert torch.equal(a, loaded["a"][part] * 2 - 1) and torch.equal(b, loaded["b"][part] * 2 - 1)
        assert a.min() >= -1 and a.max() <= 1 and a.min() < 0 < a.max()


def test_recalibration_gives_each_module_its_own_mode_back() -> None:
    """A BatchNorm frozen in eval inside a model in training mode stays frozen (model.train() would unfreeze it)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    model[1].eval()
    recalibrate_batchnorm(model, [(torch.rand(2, 1, 8, 8),)])
    assert [m.training for m in model.modules()] == [True, True, False]
