"""Whether W&B logs online: ``auto`` (the default logger's ``offline``, ``gipc-eval --wandb``) is online
where the user has run ``wandb login`` and W&B's server answers, offline elsewhere, so that a machine
without an account or a network never waits on one. Read from the environment and wandb's own files,
without importing wandb or Lightning.
"""

from __future__ import annotations

import configparser
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from gipc.errors import ConfigError

WANDB_HOST = "https://api.wandb.ai"
"""W&B's server unless ``wandb login --host`` or ``WANDB_BASE_URL`` names another."""
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
"""The variables that send wandb's requests through a proxy (requests reads them)."""


def _wandb_settings() -> configparser.SectionProxy | dict[str, str]:
    """The ``[default]`` section of wandb's settings file (``wandb login --host``, ``wandb offline`` write it)."""
    folder = Path(os.environ.get("WANDB_CONFIG_DIR") or Path.home() / ".config" / "wandb")
    parser = configparser.ConfigParser()
    try:
        parser.read(folder / "settings")
    except (OSError, configparser.Error):
        return {}
    return parser["default"] if parser.has_section("default") else {}


def _logged_in(host: str) -> bool:
    """What ``wandb login`` leaves: an API key (or identity token) in the environment, or ``host`` in the netrc file."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _answers(hostname: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the server opens within ``timeout`` s (wandb itself would retry for minutes)."""
    try:
        socket.create_connection((hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


WANDB_MODES = ("online", "offline", "disabled", "dryrun", "shared", "run")
"""The values wandb takes in ``WANDB_MODE``."""
OFFLINE_MODES = ("offline", "dryrun", "disabled")
"""Those of them under which nothing goes to W&B's server."""


def check_wandb_mode() -> None:
    """Refuse a ``WANDB_MODE`` wandb cannot read (``export WANDB_MODE=`` leaves it empty): wandb's own
    refusal is a multi-line validation error, when its run starts."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode!r} is no W&B mode; set it to online, offline or disabled, or unset it (unset WANDB_MODE)")


def wandb_offline(offline: bool | str) -> tuple[bool, str]:
    """``logger.wandb.offline`` resolved, and why: ``auto`` is online where the user has run ``wandb
    login`` (or set ``WANDB_API_KEY``) and W&B's server answers, offline elsewhere; ``WANDB_MODE`` or
    ``wandb offline`` / ``wandb online`` decide first. ``true`` and ``false`` are as they say."""
    check_wandb_mode()
    if isinstance(offline, bool):
        return offline, f"logger.wandb.offline={str(offline).lower()}"
    if offline != "auto":
        raise ConfigError(f"logger.wandb.offline must be true, false or auto, got {offline!r}")
    settings = _wandb_settings()
    for source, mode in (("WANDB_MODE", os.environ.get("WANDB_MODE")), ("wandb's settings (wandb online/offline)", settings.get("mode"))):
        if mode in OFFLINE_MODES:
            return True, f"{source} is {mode}"
        if mode == "online":
            return False, f"{source} is online"
    url = os.environ.get("WANDB_BASE_URL") or settings.get("base_url") or WANDB_HOST
    parts = urlsplit(url)
    hostname = parts.hostname or url
    if not _logged_in(hostname):
        return True, "no W&B login here (`wandb login` puts runs online)"
    proxy = next((name for name in PROXIES if os.environ.get(name)), None)
    if proxy is not None:  # wandb goes through it; a direct connection would say nothing of the way there
        return False, f"logged in to {url} (through {proxy}, not probed)"
    if not _answers(hostname, parts.port or (80 if parts.scheme == "http" else 443)):
        return True, f"logged in, but {url} does not answer; `wandb sync` uploads the run later"
    return False, f"logged in to {url}"
