"""``citybrain pseudonym``: a reporter's pseudonym (rp_…) under this deployment's key, to find
their reports and orders (the console's and the history's search, ``citybrain tail``) —
pseudonyms are all the topics hold (docs/security.md)."""

from __future__ import annotations

import sys

from citybrain.cli.common import load_config


def cmd_pseudonym(args) -> int:
    from citybrain.reporterkey import reporter_pseudonymiser

    cfg = load_config()
    try:
        pseudonym = reporter_pseudonymiser(cfg, "cli")
    except ValueError as e:
        print(f"错误 error: {e}", file=sys.stderr)
        return 2
    for reporter_id in args.reporter_id:
        print(f"{reporter_id}\t{pseudonym(reporter_id)}")
    if pseudonym.development:
        print(f"注意 note: the development key ({cfg.settings.ingest.reporter_key_env} is not set) — these match "
              "only a deployment that runs without the key too", file=sys.stderr)
    return 0
