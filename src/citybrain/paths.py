"""Where the project's files are: config, schemas, local state.

From a source checkout (``make demo``, ``make test``: an editable install) everything is
found next to the code. An installed package has no checkout around it: it finds its
configuration by setting (``CITYBRAIN_CONFIG_DIR``) and keeps its state under
``CITYBRAIN_STATE_DIR`` or the user's state directory. The developer tools (the local
broker, ``citybrain schemas``, ``citybrain dashboard``) work in a checkout only."""

from __future__ import annotations

import os
from pathlib import Path

# src/citybrain/paths.py -> the checkout's root, when it runs from one.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "config").is_dir()


class ConfigNotFound(RuntimeError):
    pass


def config_dir() -> Path:
    if os.environ.get("CITYBRAIN_CONFIG_DIR"):
        return Path(os.environ["CITYBRAIN_CONFIG_DIR"])
    if IN_CHECKOUT:
        return PROJECT_ROOT / "config"
    raise ConfigNotFound("未找到配置 no configuration: citybrain runs outside its source checkout; "
                         "set CITYBRAIN_CONFIG_DIR to a directory like the project's config/")


def state_dir() -> Path:
    """Local runtime state (the demo broker, worker RocksDB data): gitignored ``var/`` in a
    checkout, else ``$XDG_STATE_HOME/citybrain`` (``~/.local/state/citybrain``)."""
    if os.environ.get("CITYBRAIN_STATE_DIR"):
        return Path(os.environ["CITYBRAIN_STATE_DIR"])
    if IN_CHECKOUT:
        return PROJECT_ROOT / "var"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "citybrain"


SCHEMAS_DIR = PROJECT_ROOT / "schemas"
