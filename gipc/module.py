"""GIPCGAN LightningModule: Algorithm 1 with manual optimisation (t discriminator steps per generator step)."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, replace
from typing import Any, Callable, Literal

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DistributedSampler

from gipc.checkpointing import TrainingProgress
from gipc.color import fuse_color, from_net, to_net
from gipc.errors import ConfigError, NonFiniteLossError
from gipc.fusion import Fusion
from gipc.inference import InferenceGenerator, choose_path, prepare
from gipc.losses import LossWeights, discriminator_loss, generator_loss
from gipc.models import Discriminator, Generator
from gipc.tiling import remember_last

NonFiniteAction = Literal["stop", "skip", "reduce_lr"]


class GIPCGAN(L.LightningModule):
    """Generator + discriminator trained as in Algorithm 1.

    Each loaded batch holds ``d_steps_per_g_step + 1`` sub-batches, so every D step and the G
    step see fresh patches (the paper selects new patches for each step). Both learning rates
    decay linearly to 0 over the whole run, stepped once per batch (a batch the divergence guard
    skips included, so the schedule still ends at 0).
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        loss: LossWeights,
        d_steps_per_g_step: int,
        lr: float,
        betas: tuple[float, float],
        on_nonfinite: NonFiniteAction = "stop",
        metrics: torch.nn.Module | None = None,
        seed: int = 0,
        content_warmup: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        """The networks and the loss weights come built from ``conf/model`` and ``conf/loss`` (Tables 1-2,
        eq. 9 and 17); every other paper number (Algorithm 1, section 4.2) too.

        ``seed`` starts the soft-label generator (:class:`~gipc.checkpointing.TrainingProgress`).
        ``content_warmup``: the leading fraction of the run's batches trained on the content loss alone
        (no D work). ``channels_last``: both networks in NHWC memory, faster with oneDNN and cuDNN."""
        super().__init__()
        if d_steps_per_g_step < 1:
            raise ConfigError(f"model.d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if on_nonfinite not in ("stop", "skip", "reduce_lr"):
            raise ConfigError(f"model.on_nonfinite must be stop, skip or reduce_lr, got {on_nonfinite!r}")
        if not 0.0 <= content_warmup <= 1.0:
            raise ConfigError(f"model.content_warmup must be a fraction of the run in [0, 1], got {content_warmup}")
        if not lr > 0:
            raise ConfigError(f"model.lr must be > 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"model.betas must be two values in [0, 1), got {list(betas)}")
        self.save_hyperparameters(ignore=["generator", "discriminator", "loss", "metrics"])
        # Recorded as plain dicts, so checkpoints load with torch.load(weights_only=True) and a checkpoint
        # alone rebuilds its generator (gipc.pretrained.load_generator).
        self.hparams.update(generator=generator.settings, loss=asdict(loss))
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.weights = loss
        self.content_weights = replace(loss, l1=0.0, l2=0.0)
        self.total_batches = 1
        self.test_network: InferenceGenerator | None = None
        self.test_fusion: Fusion | None = None
        self.metrics = metrics
        self.progress = TrainingProgress(seed)
        # Lightning's model summary runs this through forward (eval mode, no grad) to show the
        # generator's FLOPs and sizes for one 64x64 gray pair; without it the FLOPs column reads 0.
        self.example_input_array = (torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))

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
        if self.content_only():
            # No D step needs patches: the G step takes the whole batch.
            d_terms: dict[str, torch.Tensor] | None = {}
            g_terms = self._generator_step(opt_g, batch, self.content_weights)
        else:
            parts = self.hparams.d_steps_per_g_step + 1
            if batch["a"].shape[0] % parts:
                raise ValueError(f"train batch of {batch['a'].shape[0]} patches cannot be split into {parts} sub-batches")
            subs = [dict(zip(batch, chunk)) for chunk in zip(*(batch[k].chunk(parts) for k in ("a", "b", "gt")))]
            d_terms = self._discriminator_steps(opt_d, subs[:-1])
            g_terms = self._generator_step(opt_g, subs[-1], self.weights) if d_terms is not None else None
        with warnings.catch_warnings():
            # The schedule counts batches, skipped ones and D's idle warm-up ones too, so a scheduler may
            # step before its optimiser ever has: on purpose, not the ordering bug PyTorch warns about.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            for scheduler in self.lr_schedulers():
                scheduler.step()
        if d_terms is None or g_terms is None or not self._writes_step_metrics():
            return
        self.log_dict({f"train/g_{k}": v.detach() for k, v in g_terms.items()}, prog_bar=False)
        self.log("train/g_loss", g_terms["total"].detach(), prog_bar=True)
        if d_terms:
            self.log_dict({f"train/d_{k}": v.detach() for k, v in d_terms.items()})
            self.log("train/d_loss", d_terms["total"].detach(), prog_bar=True)
        counters = {
            "train/lr_g": opt_g.param_groups[0]["lr"],
            "train/lr_d": opt_d.param_groups[0]["lr"],
            "train/g_steps": self.progress.g_steps,
            "train/d_steps": self.progress.d_steps,
        }
        # CPU tensors: Lightning would copy plain numbers to the GPU, a wait for its queue each.
        self.log_dict({k: torch.tensor(float(v)) for k, v in counters.items()})

    def _writes_step_metrics(self) -> bool:
        """Whether Lightning writes this batch's step metrics (every ``trainer.log_every_n_steps`` batches,
        or once training is to stop). Other batches log nothing: each ``self.log`` call costs about 0.35 ms of
        Python, 5.7 ms for this step's 16 values, and no logger would write them; callbacks and the progress
        bar see the last values written (``trainer.log_every_n_steps=1`` for every batch's)."""
        return self.trainer._logger_connector.should_update_logs  # Lightning's own test, so the two never disagree

    def content_only(self) -> bool:
        """No adversarial work this batch: D has nothing to learn (every adversarial weight 0, the
        ``content_only`` ablation), or the run is still in its content warm-up."""
        w = self.weights
        if not any((w.l1, w.l2, w.l3, w.l4, w.l5, w.l6)):
            return True
        done = self.lr_schedulers()[0].last_epoch if self._trainer is not None else 0
        return done < self.hparams.content_warmup * self.total_batches

    def _mixed_precision(self) -> tuple[contextlib.AbstractContextManager, Callable[[torch.Tensor], torch.Tensor]]:
        """An fp32 context for the loss arithmetic (MSEs, Laplacians, least squares), and D as a scorer
        that runs under the autocast the trainer's precision put around the step and answers in fp32."""
        device = self.device.type
        enabled, dtype = torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)

        def score(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device, dtype=dtype, enabled=enabled):
                return self.discriminator(x).float()

        return torch.autocast(device, enabled=False), score

    def _discriminator_steps(self, opt_d: Any, subs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
        """One D step per sub-batch; ``None`` when the divergence guard skips the rest of the batch."""
        d_terms: dict[str, torch.Tensor] | None = None
        self.toggle_optimizer(opt_d)
        for sub in subs:
            with torch.no_grad():
                fused = self.generator(to_net(sub["a"]), to_net(sub["b"]))
            full, score = self._mixed_precision()
            with full:
                d_terms = discriminator_loss(fused.float(), to_net(sub["gt"]), score, self.weights, self.progress.label_rng)
            if not self._finite(d_terms, "D"):
                d_terms = None
                break
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_terms["total"])
            opt_d.step()
            self.progress.d_steps += 1
        self.untoggle_optimizer(opt_d)
        return d_terms

    def _generator_step(self, opt_g: Any, sub: dict[str, torch.Tensor], weights: LossWeights) -> dict[str, torch.Tensor] | None:
        """The G step; ``None`` when the divergence guard skips it."""
        self.toggle_optimizer(opt_g)
        fused = self.generator(to_net(sub["a"]), to_net(sub["b"]))
        full, score = self._mixed_precision()
        with full:
            g_terms: dict[str, torch.Tensor] | None = generator_loss(
                fused.float(), to_net(sub["gt"]), score, weights, self.progress.label_rng
            )
        if self._finite(g_terms, "G"):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_terms["total"])
            opt_g.step()
            self.progress.g_steps += 1
        else:
            g_terms = None
        self.untoggle_optimizer(opt_g)
        return g_terms

    def _finite(self, terms: dict[str, torch.Tensor], net: str) -> bool:
        """Divergence guard: stop (default), skip the batch, or halve the learning rates."""
        parts = {name: value.detach() for name, value in terms.items() if name != "total"}
        if bool(torch.isfinite(torch.stack([value.float() for value in parts.values()])).all()):
            return True  # one wait for the GPU per step, not one per term
        bad = [name for name, value in parts.items() if not torch.isfinite(value)]
        where = f"{net} loss term(s) {', '.join(bad)} became non-finite at G step {self.progress.g_steps} (D step {self.progress.d_steps})"
        action = self.hparams.on_nonfinite
        if action == "stop":
            raise NonFiniteLossError(f"{where}; lower model.lr, or set model.on_nonfinite=skip or reduce_lr")
        if action == "reduce_lr":
            self.progress.lr_scale /= 2
        self.print(f"warning: {where}; {'skipped the batch' if action == 'skip' else f'learning rates scaled by {self.progress.lr_scale}'}")
        return False

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        total = self.total_batches = max(int(self.trainer.estimated_stepping_batches), 1)

        def linear(step: int) -> float:
            return max(0.0, 1.0 - step / total) * self.progress.lr_scale

        schedulers = [{"scheduler": LambdaLR(opt, linear), "interval": "step"} for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    def on_train_start(self) -> None:
        # Lightning 2.6 gives a stateful train loader its saved position in FitLoop.setup_data, which
        # returns early here: estimated_stepping_batches (configure_optimizers) set the loader up before
        # the checkpoint was read. Without this a resumed run would replay the epoch's first batches.
        self.trainer.fit_loop._load_combined_loader_states()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gipc"] = self.progress.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        self.progress.load_state_dict(checkpoint.get("gipc", {}), resuming)

    # ------------------------------------------------------------ evaluation
    def on_test_start(self) -> None:
        # Test the weights as gipc-fuse runs them (BatchNorm folded, channels_last, bf16 where native), the
        # paper's direct rule here (the test report adds the other rules); an eval-only copy kept outside
        # the module's submodules (object.__setattr__), so training keeps BatchNorm and checkpoints stay as they are.
        network = prepare(self.generator, choose_path(self.device))
        object.__setattr__(self, "test_network", network)
        # The test report's map rule feeds the network the same pair: remember_last lets it reuse this pass.
        direct = network.fusion("direct")
        object.__setattr__(self, "test_fusion", replace(direct, net=remember_last(direct.sized_net), tile=0))
        self.print(f"test: generator on {network.path.describe()}")

    def on_test_end(self) -> None:
        object.__setattr__(self, "test_network", None)
        object.__setattr__(self, "test_fusion", None)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> dict[str, Any]:
        if stage == "test" and self.test_fusion is not None:
            fused = self.test_fusion([batch["a"], batch["b"]]).image
        else:
            fused = fuse_color(self.fuse_y, batch["a"], batch["b"])
        real = self._real_samples(stage, batch_idx, fused.shape[0])
        if stage == "val" and self.metrics is not None and real:  # the test set is scored by the test report
            gt = batch.get("gt")
            self.metrics.update(batch["a"][:real], batch["b"][:real], fused[:real], None if gt is None else gt[:real])
        return {"fused": fused, "name": batch.get("name"), "real": real}

    def _real_samples(self, stage: str, batch_idx: int, size: int) -> int:
        """How many leading samples of this batch are real images: DDP's DistributedSampler pads an
        uneven val/test set by repeating images at the end of some ranks, which must not count twice."""
        if self._trainer is None:
            return size
        loader = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
            return size
        # Rank r holds positions r, r + W, r + 2W, ... of the padded index list; positions >= len(dataset) repeat.
        mine = len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))
        return max(0, min(size, mine - batch_idx * loader.batch_size))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        if self.metrics is None:
            return
        # compute() has already reduced the metrics over the ranks, so each rank holds the same values and
        # sync_dist's mean leaves them as they are; without it Lightning warns once per metric under DDP.
        self.log_dict({f"val/{k}": v.float() for k, v in self.metrics.compute().items()}, sync_dist=True)
        self.metrics.reset()


__all__ = ["GIPCGAN"]
