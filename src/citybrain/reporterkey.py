"""The reporter pseudonym key of this process (docs/security.md): read once from the
environment variable ``[ingest] reporter_key_env`` names, by every process that writes or
matches pseudonyms — the workers (normalisation), the notifier (the reporters' roster) and
``citybrain pseudonym``."""

from __future__ import annotations

import logging
import os

from citybrain.config import Config
from citybrain.domain.pseudonym import Pseudonymiser, from_environment

log = logging.getLogger("citybrain.security")


def reporter_pseudonymiser(cfg: Config, process: str) -> Pseudonymiser:
    variable = cfg.settings.ingest.reporter_key_env
    p = from_environment(os.environ, variable)
    if p.development:
        log.warning("报告人假名使用公开的开发密钥 %s: reporter pseudonyms use the public development key — "
                    "set %s (32 random bytes) in production, the same in every worker and notifier",
                    process, variable)
    return p
