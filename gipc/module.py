"""GIPCGAN LightningModule: Algorithm 1 with manual optimisation (t discriminator steps per generator step)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal, Mapping

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from gipc.color import fuse_color, from_net, to_net
from gipc.losses import LossWeights, discriminator_loss, generator_loss, gradient
from gipc.models import Discriminator, Generator

NonFiniteAction = Literal["stop", "skip", "reduce_lr"]


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss term became NaN or inf."""


class GIPCGAN(L.LightningModule):
    """Generator + discriminator trained as in Algorithm 1.

    Each loaded batch holds ``d_steps_per_g_step + 1`` sub-batches, so every D step and the G
    step see fresh patches (the paper selects new patches for each step). Both learning rates
    decay linearly to 0 over the whole run, stepped once per G step.
    """

    def __init__(
        self,
        loss: LossWeights | Mapping[str, Any],
        patch_size: int,
        generator: dict[str, Any] | None = None,
        discriminator: dict[str, Any] | None = None,
        d_steps_per_g_step: int = 2,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        on_nonfinite: NonFiniteAction = "stop",
        metrics: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        if d_steps_per_g_step < 1:
            raise ValueError(f"model.d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if on_nonfinite not in ("stop", "skip", "reduce_lr"):
            raise ValueError(f"model.on_nonfinite must be stop, skip or reduce_lr, got {on_nonfinite!r}")
        # Stored as a plain dict so checkpoints load with torch.load(weights_only=True).
        loss = asdict(loss) if isinstance(loss, LossWeights) else dict(loss)
        self.save_hyperparameters(ignore=["metrics"])
        self.automatic_optimization = False
        self.generator = Generator(**(generator or {}))
        self.discriminator = Discriminator(patch_size, **(discriminator or {}))
        self.weights = LossWeights(**loss)
        self.metrics = metrics
        self.d_steps = 0
        self.g_steps = 0
        self.lr_scale = 1.0

    # ----------------------------------------------------------------- fusion
    def fuse_y(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fuse two luminance batches in [0, 1] with the generator."""
        return from_net(self.generator(to_net(a), to_net(b)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fuse two colour or gray batches (B, C, H, W) in [0, 1] through the YCbCr pipeline."""
        return fuse_color(self.fuse_y, a, b)

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        parts = self.hparams.d_steps_per_g_step + 1
        if batch["a"].shape[0] % parts:
            raise ValueError(f"train batch of {batch['a'].shape[0]} patches cannot be split into {parts} sub-batches")
        subs = [dict(zip(batch, chunk)) for chunk in zip(*(batch[k].chunk(parts) for k in ("a", "b", "gt")))]

        d_terms: dict[str, torch.Tensor] = {}
        self.toggle_optimizer(opt_d)
        for sub in subs[:-1]:
            with torch.no_grad():
                fused = self.generator(to_net(sub["a"]), to_net(sub["b"]))
            d_terms = discriminator_loss(fused, to_net(sub["gt"]), self.discriminator, self.weights)
            if not self._finite(d_terms, "D"):
                self.untoggle_optimizer(opt_d)
                return
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_terms["total"])
            opt_d.step()
            self.d_steps += 1
        self.untoggle_optimizer(opt_d)

        sub = subs[-1]
        self.toggle_optimizer(opt_g)
        fused = self.generator(to_net(sub["a"]), to_net(sub["b"]))
        g_terms = generator_loss(fused, to_net(sub["gt"]), self.discriminator, self.weights)
        if self._finite(g_terms, "G"):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_terms["total"])
            opt_g.step()
            self.g_steps += 1
        self.untoggle_optimizer(opt_g)

        for scheduler in self.lr_schedulers():
            scheduler.step()
        self.log_dict({f"train/g_{k}": v.detach() for k, v in g_terms.items()}, prog_bar=False)
        self.log_dict({f"train/d_{k}": v.detach() for k, v in d_terms.items()})
        self.log("train/g_loss", g_terms["total"].detach(), prog_bar=True)
        self.log("train/d_loss", d_terms["total"].detach(), prog_bar=True)
        self.log_dict(
            {
                "train/lr_g": opt_g.param_groups[0]["lr"],
                "train/lr_d": opt_d.param_groups[0]["lr"],
                "train/g_steps": float(self.g_steps),
                "train/d_steps": float(self.d_steps),
            }
        )

    def _finite(self, terms: dict[str, torch.Tensor], net: str) -> bool:
        """Divergence guard: stop (default), skip the batch, or halve the learning rates."""
        bad = [name for name, value in terms.items() if name != "total" and not torch.isfinite(value)]
        if not bad:
            return True
        where = f"{net} loss term(s) {', '.join(bad)} became non-finite at G step {self.g_steps} (D step {self.d_steps})"
        action = self.hparams.on_nonfinite
        if action == "stop":
            raise NonFiniteLossError(f"{where}; the last good checkpoint is kept. Lower the learning rate or set model.on_nonfinite=skip")
        if action == "reduce_lr":
            self.lr_scale /= 2
        self.print(f"warning: {where}; {'skipped the batch' if action == 'skip' else f'learning rates scaled by {self.lr_scale}'}")
        return False

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        total = max(int(self.trainer.estimated_stepping_batches), 1)

        def linear(step: int) -> float:
            return max(0.0, 1.0 - step / total) * self.lr_scale

        schedulers = [{"scheduler": LambdaLR(opt, linear), "interval": "step"} for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gipc"] = {"d_steps": self.d_steps, "g_steps": self.g_steps, "lr_scale": self.lr_scale}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("gipc", {})
        self.d_steps = state.get("d_steps", 0)
        self.g_steps = state.get("g_steps", 0)
        self.lr_scale = state.get("lr_scale", 1.0)

    # ------------------------------------------------------------ evaluation
    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        fused = self(batch["a"], batch["b"])
        if self.metrics is not None:
            self.metrics.update(batch["a"], batch["b"], fused, batch.get("gt"))
        return {"fused": fused, "name": batch.get("name")}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        if self.metrics is None:
            return
        values = self.metrics.compute()
        self.log_dict({f"{stage}/{k}": v.float() for k, v in values.items()}, sync_dist=False)
        self.metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")


__all__ = ["GIPCGAN", "NonFiniteLossError", "gradient"]
