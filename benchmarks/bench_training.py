"""Training throughput: GIPCGAN under Lightning in fp32, bf16 and bf16 + channels_last, vs a plain PyTorch loop.

    python benchmarks/bench_training.py [--patch 48] [--batch 8] [--steps 20] [--warmup 3] [--d-steps 2] [--repeats 1]
    python benchmarks/bench_training.py --patch 80 --batch 32      # the paper's size (section 4.2)

Both loops read the same random patches through the same DataLoader: each loaded batch holds
``d_steps + 1`` sub-batches of ``--batch`` patches (fresh patches per step, as ``GIPCGAN`` splits
them), then take ``d_steps`` Adam steps of D on ``discriminator_loss`` and one of G on
``generator_loss`` (``gipc.losses``, weights from ``conf/loss/gipc.yaml``), with the linear lr
decay. Patches/s counts every patch a step consumed, timed from the end of the warm-up steps to
the last step (steady state); the end-to-end column adds setup (Trainer, optimisers). The
Lightning side is the real module, so its cost includes GIPCGAN's logging and divergence guard.
It runs three times: fp32 NCHW (``trainer.precision=32-true``), bf16 autocast
(``bf16-mixed``, losses in fp32) and bf16 with both networks in channels_last (what
``trainer.precision=auto`` and ``model.channels_last=true`` give on a CPU with native bf16);
the bf16 rows are left out where the device has no native bf16 (gipc.hardware).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from typing import Any, Callable

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset

from gipc.color import to_net
from gipc.configs import CONF_DIR, conf_group
from gipc.experiment import build_model
from gipc.hardware import native_bf16
from gipc.losses import LossWeights, discriminator_loss, generator_loss
from gipc.models import Discriminator, Generator

VARIANTS = {  # name: (Lightning precision, channels_last)
    "Lightning fp32": ("32-true", False),
    "Lightning bf16": ("bf16-mixed", False),
    "Lightning bf16+CL": ("bf16-mixed", True),
}


class Patches(Dataset):
    """Fixed random (1, P, P) patch triplets, indexed like ``PatchDataset``'s items."""

    def __init__(self, count: int, patch: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.data = torch.rand(count, 3, 1, patch, patch, generator=generator)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, b, gt = self.data[index]
        return {"a": a, "b": b, "gt": gt}


def loss_weights() -> LossWeights:
    """The paper's weights as the training config sets them (conf/loss/gipc.yaml)."""
    return LossWeights(**conf_group("loss"))


class Clock:
    """Wall and process CPU seconds between :meth:`start` and the last :meth:`stop`.

    On a shared, loaded CPU the wall time mostly measures the other jobs; the CPU time of this
    process (all its threads) is what the loop itself cost.
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.begin = self.end = (0.0, 0.0)

    def _now(self) -> tuple[float, float]:
        self.sync()
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self.begin = self._now()

    def stop(self) -> None:
        self.end = self._now()

    @property
    def seconds(self) -> tuple[float, float]:
        """(wall, CPU) seconds."""
        return self.end[0] - self.begin[0], self.end[1] - self.begin[1]


class StepClock(L.Callback):
    """Times Lightning's batches from the start of batch ``warmup`` to the end of the last one."""

    def __init__(self, warmup: int, clock: Clock) -> None:
        self.warmup, self.clock = warmup, clock
        self.batches = 0

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.clock.start()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.clock.stop()
        self.batches = batch_idx + 1


Timing = tuple[float, float, float]
"""Steady-state wall seconds, steady-state CPU seconds, end-to-end wall seconds."""


def lightning_loop(
    loader: DataLoader, args: argparse.Namespace, sync: Callable[[], None], precision: str, channels_last: bool
) -> Timing:
    """Timing of ``Trainer.fit`` on the real module (conf/model settings) at ``precision``."""
    begin = time.perf_counter()
    clock = Clock(sync)
    torch.manual_seed(0)
    overrides = [f"data.patch_size={args.patch}", f"model.d_steps_per_g_step={args.d_steps}", f"model.channels_last={channels_last}"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "model.metrics=null"])  # as gipc/run.py builds it
    module = build_model(cfg.model, seed=0)
    trainer = L.Trainer(
        accelerator=args.device, devices=1, max_epochs=1, logger=False, enable_checkpointing=False, precision=precision,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps,  # the module's logging cost, as a run pays it
        callbacks=[StepClock(args.warmup, clock)],
    )
    trainer.fit(module, train_dataloaders=loader)
    if trainer.callbacks[0].batches != len(loader):
        raise RuntimeError(f"Lightning ran {trainer.callbacks[0].batches} of {len(loader)} batches; the comparison would be unfair")
    return *clock.seconds, time.perf_counter() - begin


def plain_loop(loader: DataLoader, args: argparse.Namespace, sync: Callable[[], None]) -> Timing:
    """The same Algorithm 1 steps written directly: ``d_steps`` D steps, then one G step, per batch."""
    begin = time.perf_counter()
    clock = Clock(sync)
    device = torch.device(args.device)
    torch.manual_seed(0)
    weights, model = loss_weights(), conf_group("model")
    generator = Generator(**model["generator"]).to(device).train()
    discriminator = Discriminator(args.patch, **model["discriminator"]).to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=model["lr"], betas=tuple(model["betas"]))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=model["lr"], betas=tuple(model["betas"]))
    schedulers = [LambdaLR(opt, lambda step: max(0.0, 1.0 - step / len(loader))) for opt in (opt_g, opt_d)]
    for index, batch in enumerate(loader):
        if index == args.warmup:
            clock.start()
        subs = [{k: batch[k].chunk(args.d_steps + 1)[i].to(device) for k in ("a", "b", "gt")} for i in range(args.d_steps + 1)]
        for sub in subs[:-1]:
            with torch.no_grad():
                fused = generator(to_net(sub["a"]), to_net(sub["b"]))
            loss = discriminator_loss(fused, to_net(sub["gt"]), discriminator, weights)["total"]
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        sub = subs[-1]
        discriminator.requires_grad_(False)  # as Lightning's toggle_optimizer: no D gradients in the G step
        fused = generator(to_net(sub["a"]), to_net(sub["b"]))
        loss = generator_loss(fused, to_net(sub["gt"]), discriminator, weights)["total"]
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
        for scheduler in schedulers:
            scheduler.step()
    clock.stop()
    return *clock.seconds, time.perf_counter() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=48, help="patch side, a multiple of 16 (paper: 80)")
    parser.add_argument("--batch", type=int, default=8, help="patches per D or G step (paper: 32)")
    parser.add_argument("--steps", type=int, default=20, help="G steps per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=3, help="first G steps left out of the steady-state time")
    parser.add_argument("--d-steps", type=int, default=2, help="D steps per G step (paper: t = 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each loop, interleaved; each column keeps its fastest")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps:
        parser.error("need 0 <= --warmup < --steps")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners between rows
    for noise in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*treespec.*"):  # both loops load in-process, no val
        warnings.filterwarnings("ignore", noise)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    per_step = args.batch * (args.d_steps + 1)
    loader = DataLoader(Patches(args.steps * per_step, args.patch), batch_size=per_step, shuffle=False)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
    print(f"device: {where}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"{args.steps} G steps x ({args.d_steps} D + 1 G) x {args.batch} patches of {args.patch}x{args.patch} "
          f"= {per_step} patches per step; steady state over the last {args.steps - args.warmup} steps")

    loops: dict[str, Callable[[], Timing]] = {"plain PyTorch fp32": lambda: plain_loop(loader, args, sync)}
    for name, (precision, channels_last) in VARIANTS.items():
        if precision == "32-true" or native_bf16(args.device):
            loops[name] = lambda p=precision, c=channels_last: lightning_loop(loader, args, sync, p, c)
    if len(loops) < len(VARIANTS) + 1:
        print(f"no native bf16 on {args.device}: bf16 rows left out")
    best: dict[str, Timing] = {}
    for _ in range(args.repeats):
        for name, loop in loops.items():
            timing = loop()
            best[name] = tuple(map(min, zip(best[name], timing))) if name in best else timing  # type: ignore[assignment]
    measured, steps = (args.steps - args.warmup) * per_step, args.steps - args.warmup
    print(f"{'loop':<20} {'patches/s':>10} {'s/G step':>9} {'patches/CPU-s':>14} {'CPU-s/G step':>13} {'end-to-end s':>13}")
    for name, (wall, cpu, total) in best.items():
        print(f"{name:<20} {measured / wall:>10.2f} {wall / steps:>9.3f} {measured / cpu:>14.2f} {cpu / steps:>13.3f} {total:>13.2f}")
    (plain_wall, plain_cpu, plain_total), (light_wall, light_cpu, light_total) = best["plain PyTorch fp32"], best["Lightning fp32"]
    print(f"Lightning / plain time per step: wall {light_wall / plain_wall:.3f}, CPU {light_cpu / plain_cpu:.3f} "
          f"(Lightning overhead {light_wall / plain_wall - 1:+.1%} wall, {light_cpu / plain_cpu - 1:+.1%} CPU); "
          f"end-to-end {light_total / plain_total:.3f}")
    for name in list(best)[2:]:
        print(f"{name} speed-up over Lightning fp32: {light_wall / best[name][0]:.2f}x wall, {light_cpu / best[name][1]:.2f}x CPU")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
