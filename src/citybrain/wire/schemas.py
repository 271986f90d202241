"""JSON Schemas generated from the wire models (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from citybrain.wire.models import WIRE_MODELS


def render_all() -> dict[str, str]:
    """file name -> schema text, exactly as written to ``schemas/``."""
    out = {}
    for name, model in WIRE_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"citybrain/{name}.schema.json"
        out[f"{name}.schema.json"] = json.dumps(schema, ensure_ascii=False, indent=2,
                                                sort_keys=True) + "\n"
    return out


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render_all().items():
        path = directory / fname
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drifted(directory: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    bad = []
    for fname, text in render_all().items():
        path = directory / fname
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            bad.append(fname)
    return bad
