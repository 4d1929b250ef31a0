"""The checkout's ``conf/`` tree read without Hydra, for code that builds objects outside a run
(``gipc-fuse``'s defaults, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The config tree ``gipc/run.py`` composes (the checkout's ``conf/``)."""


def conf_group(group: str, name: str = "gipc") -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` as plain values: Hydra's keys and the cross-group interpolations
    (``loss``, ``patch_size``, ``metrics`` of the model group) are left out, the rest resolved."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))
    kept = {k: v for k, v in raw.items() if not k.startswith("_") and k not in ("loss", "patch_size", "metrics")}
    return OmegaConf.to_container(OmegaConf.create(kept), resolve=True)
