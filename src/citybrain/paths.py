"""Where the project's files are: config, schemas, local state."""

from __future__ import annotations

import os
from pathlib import Path

# src/citybrain/paths.py -> project root (an editable install runs from the checkout).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    return Path(os.environ.get("CITYBRAIN_CONFIG_DIR", PROJECT_ROOT / "config"))


def state_dir() -> Path:
    """Local runtime state (the demo broker, worker RocksDB data): gitignored ``var/``."""
    return Path(os.environ.get("CITYBRAIN_STATE_DIR", PROJECT_ROOT / "var"))


SCHEMAS_DIR = PROJECT_ROOT / "schemas"
