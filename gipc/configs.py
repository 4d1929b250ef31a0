"""The checkout's ``conf/`` tree read without Hydra, for code that builds objects outside a run
(``gipc-fuse``'s defaults, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = next((d for d in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if d.is_dir()), _PACKAGE / "conf").resolve()
"""The config tree ``gipc/run.py`` composes: the checkout's ``conf/``, which ``gipc/conf`` links to and
an installed wheel carries as ``gipc/conf`` (a checkout without symbolic links falls back to ``conf/``)."""


def conf_group(group: str, name: str = "gipc") -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` as plain values, e.g. a network's constructor arguments: Hydra's keys
    (``_target_``, ...) at every level, interpolations into other groups (``${loss}``,
    ``${data.patch_size}``) and the model's ``metrics`` object are left out, the rest resolved."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))
    return OmegaConf.to_container(OmegaConf.create(_plain(raw)), resolve=True)


def _plain(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    return {
        k: _plain(v)
        for k, v in node.items()
        if not k.startswith("_") and k != "metrics" and not (isinstance(v, str) and v.startswith("${") and not v.startswith("${."))
    }
