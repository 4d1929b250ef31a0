"""GIPCGAN LightningModule: Algorithm 1 with manual optimisation (t discriminator steps per generator step)."""

from __future__ import annotations

import contextlib
import random
import warnings
from dataclasses import asdict, replace
from typing import Any, Callable, Literal, Mapping

import lightning as L
import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DistributedSampler

from gipc.color import fuse_color, from_net, to_net
from gipc.errors import ConfigError, NonFiniteLossError
from gipc.inference import InferenceGenerator, choose_path, prepare
from gipc.losses import LossWeights, discriminator_loss, generator_loss, gradient
from gipc.models import Discriminator, Generator
from gipc.pretrained import initial_generator

NonFiniteAction = Literal["stop", "skip", "reduce_lr"]


def global_rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states as plain lists and tensors (loadable with
    ``torch.load(weights_only=True)``, unlike numpy's own state tuple)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": list(random.getstate()),
    }


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`global_rng_state` saved (CUDA only when this process has the same devices)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class GIPCGAN(L.LightningModule):
    """Generator + discriminator trained as in Algorithm 1.

    Each loaded batch holds ``d_steps_per_g_step + 1`` sub-batches, so every D step and the G
    step see fresh patches (the paper selects new patches for each step). Both learning rates
    decay linearly to 0 over the whole run, stepped once per batch (a batch the divergence guard
    skips included, so the schedule still ends at 0).
    """

    def __init__(
        self,
        loss: LossWeights | Mapping[str, Any],
        patch_size: int,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        d_steps_per_g_step: int,
        lr: float,
        betas: tuple[float, float],
        on_nonfinite: NonFiniteAction = "stop",
        metrics: torch.nn.Module | None = None,
        seed: int = 0,
        content_warmup: float = 0.0,
        channels_last: bool = False,
        init_generator: str | None = None,
    ) -> None:
        """Every paper number (Tables 1-2, Algorithm 1, section 4.2) comes from ``conf/model``.

        ``seed`` starts the soft-label generator; it is the module's own, saved in checkpoints, so
        a resumed run draws the labels the uninterrupted run would have drawn. ``content_warmup``:
        the leading fraction of the run's batches trained on the content loss alone (no D work).
        ``channels_last``: both networks in NHWC memory, faster with oneDNN and cuDNN.
        ``init_generator``: start G from these weights (``shipped``, an exported file or a run's
        checkpoint, read weights-only) to fine-tune it, all but the last layer when their head differs
        from ``generator["head"]``; D starts fresh."""
        super().__init__()
        if d_steps_per_g_step < 1:
            raise ConfigError(f"model.d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if on_nonfinite not in ("stop", "skip", "reduce_lr"):
            raise ConfigError(f"model.on_nonfinite must be stop, skip or reduce_lr, got {on_nonfinite!r}")
        if not 0.0 <= content_warmup <= 1.0:
            raise ConfigError(f"model.content_warmup must be a fraction of the run in [0, 1], got {content_warmup}")
        # Stored as a plain dict so checkpoints load with torch.load(weights_only=True).
        loss = asdict(loss) if isinstance(loss, LossWeights) else dict(loss)
        self.save_hyperparameters(ignore=["metrics"])
        self.automatic_optimization = False
        self.generator = Generator(**generator)
        if init_generator:
            try:
                start = initial_generator(init_generator)
                state = start.state_dict()
                if start.head != self.generator.head:  # the last layer means something else: it starts fresh
                    state |= {k: v for k, v in self.generator.state_dict().items() if k.startswith(self.generator.output_layer())}
                self.generator.load_state_dict(state)
            except RuntimeError as err:
                first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
                raise ConfigError(f"model.init_generator={init_generator}: its weights do not fit model.generator ({first})") from None
        self.discriminator = Discriminator(patch_size, **discriminator)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.weights = LossWeights(**loss)
        self.content_weights = replace(self.weights, l1=0.0, l2=0.0)
        self.total_batches = 1
        self.test_network: InferenceGenerator | None = None
        self.metrics = metrics
        self.d_steps = 0
        self.g_steps = 0
        self.lr_scale = 1.0
        self.label_rng = torch.Generator().manual_seed(seed)

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
        if d_terms is None or g_terms is None:
            return
        self.log_dict({f"train/g_{k}": v.detach() for k, v in g_terms.items()}, prog_bar=False)
        self.log("train/g_loss", g_terms["total"].detach(), prog_bar=True)
        if d_terms:
            self.log_dict({f"train/d_{k}": v.detach() for k, v in d_terms.items()})
            self.log("train/d_loss", d_terms["total"].detach(), prog_bar=True)
        self.log_dict(
            {
                "train/lr_g": opt_g.param_groups[0]["lr"],
                "train/lr_d": opt_d.param_groups[0]["lr"],
                "train/g_steps": float(self.g_steps),
                "train/d_steps": float(self.d_steps),
            }
        )

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
                d_terms = discriminator_loss(fused.float(), to_net(sub["gt"]), score, self.weights, self.label_rng)
            if not self._finite(d_terms, "D"):
                d_terms = None
                break
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_terms["total"])
            opt_d.step()
            self.d_steps += 1
        self.untoggle_optimizer(opt_d)
        return d_terms

    def _generator_step(self, opt_g: Any, sub: dict[str, torch.Tensor], weights: LossWeights) -> dict[str, torch.Tensor] | None:
        """The G step; ``None`` when the divergence guard skips it."""
        self.toggle_optimizer(opt_g)
        fused = self.generator(to_net(sub["a"]), to_net(sub["b"]))
        full, score = self._mixed_precision()
        with full:
            g_terms: dict[str, torch.Tensor] | None = generator_loss(
                fused.float(), to_net(sub["gt"]), score, weights, self.label_rng
            )
        if self._finite(g_terms, "G"):
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_terms["total"])
            opt_g.step()
            self.g_steps += 1
        else:
            g_terms = None
        self.untoggle_optimizer(opt_g)
        return g_terms

    def _finite(self, terms: dict[str, torch.Tensor], net: str) -> bool:
        """Divergence guard: stop (default), skip the batch, or halve the learning rates."""
        bad = [name for name, value in terms.items() if name != "total" and not torch.isfinite(value)]
        if not bad:
            return True
        where = f"{net} loss term(s) {', '.join(bad)} became non-finite at G step {self.g_steps} (D step {self.d_steps})"
        action = self.hparams.on_nonfinite
        if action == "stop":
            raise NonFiniteLossError(f"{where}; lower model.lr, or set model.on_nonfinite=skip or reduce_lr")
        if action == "reduce_lr":
            self.lr_scale /= 2
        self.print(f"warning: {where}; {'skipped the batch' if action == 'skip' else f'learning rates scaled by {self.lr_scale}'}")
        return False

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[dict[str, Any]]]:
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        total = self.total_batches = max(int(self.trainer.estimated_stepping_batches), 1)

        def linear(step: int) -> float:
            return max(0.0, 1.0 - step / total) * self.lr_scale

        schedulers = [{"scheduler": LambdaLR(opt, linear), "interval": "step"} for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    def on_train_start(self) -> None:
        # Lightning 2.6 gives a stateful train loader its saved position in FitLoop.setup_data, which
        # returns early here: estimated_stepping_batches (configure_optimizers) set the loader up before
        # the checkpoint was read. Without this a resumed run would replay the epoch's first batches.
        self.trainer.fit_loop._load_combined_loader_states()

    def __getstate__(self) -> dict[str, Any]:
        # DDP's spawn start method pickles the module through torch.multiprocessing, which cannot carry a
        # torch.Generator (its state is a temporary tensor shared by file descriptor): send the state as bytes.
        state = super().__getstate__()
        state["label_rng"] = self.label_rng.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        rng = torch.Generator()
        rng.set_state(torch.frombuffer(bytearray(state["label_rng"]), dtype=torch.uint8))
        super().__setstate__({**state, "label_rng": rng})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gipc"] = {
            "d_steps": self.d_steps,
            "g_steps": self.g_steps,
            "lr_scale": self.lr_scale,
            "label_rng": self.label_rng.get_state(),
            "global_rng": global_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("gipc", {})
        self.d_steps = state.get("d_steps", 0)
        self.g_steps = state.get("g_steps", 0)
        self.lr_scale = state.get("lr_scale", 1.0)
        if "label_rng" in state:
            self.label_rng.set_state(state["label_rng"])
        # Only a resumed fit takes over the process-wide RNGs; loading weights to fuse leaves them alone.
        if "global_rng" in state and self._trainer is not None and self.trainer.state.fn == "fit":
            set_global_rng_state(state["global_rng"])

    # ------------------------------------------------------------ evaluation
    def on_test_start(self) -> None:
        # Test the weights as gipc-fuse runs them (BatchNorm folded, channels_last, bf16 where native), the
        # paper's direct rule here (the test report adds the other rules); an eval-only copy kept outside
        # the module's submodules (object.__setattr__), so training keeps BatchNorm and checkpoints stay as they are.
        object.__setattr__(self, "test_network", prepare(self.generator, choose_path(self.device)))
        self.print(f"test: generator on {self.test_network.path.describe()}")

    def on_test_end(self) -> None:
        object.__setattr__(self, "test_network", None)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> dict[str, Any]:
        if stage == "test" and self.test_network is not None:
            fused = self.test_network.fusion("direct")([batch["a"], batch["b"]]).image
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

    def _log_metrics(self, stage: str) -> None:
        if self.metrics is None:
            return
        values = self.metrics.compute()
        self.log_dict({f"{stage}/{k}": v.float() for k, v in values.items()}, sync_dist=False)
        self.metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")


__all__ = ["GIPCGAN", "gradient"]
