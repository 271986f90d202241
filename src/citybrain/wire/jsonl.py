"""JSON lines: the file form of the device registry (one record a line, blank lines ignored)."""

from __future__ import annotations

import json
from pathlib import Path


def read_records(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
