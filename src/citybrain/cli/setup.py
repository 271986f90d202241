"""Setting up: topics, the registry, schemas, the package picture, the dashboard."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from citybrain.cli.common import broker_address, load_config
from citybrain.display import wrap_items, wrap_words
from citybrain.paths import SCHEMAS_DIR


def cmd_topics(args) -> int:
    from citybrain.stream.topology import topic_specs
    cfg = load_config()
    specs = topic_specs(cfg)
    created = asyncio.run(ensure_topics(cfg, broker_address(), specs))
    if created:
        print(wrap_items(f"主题 topics: {len(specs)} in all, created {len(created)}: ", created, indent=4))
    else:
        print(f"主题 topics: {len(specs)} in all, created 0 (all existed)")
    return 0


async def ensure_topics(cfg, bootstrap: str, specs) -> list[str]:
    """Create the missing topics, then reconcile every one with the configuration
    (retention altered; partitions that differ stop here with the reason)."""
    from citybrain.kafka.admin import create_topics, reconcile_topics
    from citybrain.stream.topology import co_partitioned
    factor = cfg.topic_retention.replication.factor
    created = await create_topics(bootstrap, specs, factor)
    for line in await reconcile_topics(bootstrap, specs, co_partitioned(cfg), replication=factor):
        print(f"主题设置已更新 topic setting reconciled: {line}", flush=True)
    return created


def cmd_registry(args) -> int:
    from citybrain.kafka.admin import RegistryNotPublished, publish_registry
    from citybrain.kafka.topics import Topics
    from citybrain.wire.jsonl import read_records
    cfg = load_config()
    path = Path(args.file) if args.file else cfg.registry_path
    records = read_records(path)
    # What the workers would refuse is refused here, before anything is sent: a refused
    # record would also take its key's device out of the registry (docs/contract.md).
    problems = registry_problems(records)
    if problems:
        print(f"设备台账无效 registry not published: {len(problems):,} bad records in {path}", file=sys.stderr)
        for line in problems[:10]:
            print(f"  {line}", file=sys.stderr)
        return 1
    topic = Topics(cfg.settings.kafka.topic_prefix).registry
    try:
        n = asyncio.run(publish_registry(broker_address(), topic, records))
    except RegistryNotPublished as e:
        print(f"错误 error: {e}", file=sys.stderr)
        return 1
    print(wrap_words(f"设备台账已发布 registry published: {n:,} devices/cameras from {path} → {topic}"))
    return 0


def registry_problems(records: list) -> list[str]:
    """``line N: …`` for each record the workers would not take as a device."""
    from pydantic import ValidationError

    from citybrain.wire.models import RegistryRecord
    problems = []
    for n, record in enumerate(records, 1):
        try:
            RegistryRecord.model_validate(record)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            problems.append(f"line {n}: {'.'.join(map(str, err['loc'])) or 'record'}: {err['msg']}")
    return problems


def cmd_schemas(args) -> int:
    from citybrain.wire.schemas import drifted, write_all
    if args.write:
        for p in write_all(SCHEMAS_DIR):
            print(f"wrote {p}")
        return 0
    bad = drifted(SCHEMAS_DIR)
    if bad:
        print("schemas/ 与模型不一致 drifted from the models: " + ", ".join(bad)
              + " — run `citybrain schemas --write`", file=sys.stderr)
        return 1
    print("schemas/ 与模型一致 up to date")
    return 0


def cmd_layout(args) -> int:
    """Check (default) or --write docs/architecture.md's package picture from the imports."""
    from citybrain import layout
    rel = layout.ARCHITECTURE_DOC.relative_to(layout.PROJECT_ROOT)
    try:
        if args.write:
            layout.write()
            print(f"wrote {rel} (模块关系图 package picture)")
            return 0
        if layout.drifted():
            print(f"过期 {rel}: 模块关系图与代码不一致 the package picture differs from the imports — "
                  "run `citybrain layout --write` (make docs)", file=sys.stderr)
            return 1
    except layout.MarkersMissing as e:
        print(f"标记缺失 {rel}: {e}", file=sys.stderr)
        return 2
    print(f"一致 {rel}: 模块关系图 up to date")
    return 0


def cmd_dashboard(args) -> int:
    """Check (default) or --write the Grafana dashboard generated from citybrain.observability."""
    from citybrain import observability
    if args.write:
        print(f"wrote {observability.write()}")
        return 0
    current = observability.DASHBOARD_PATH.read_text(encoding="utf-8") if observability.DASHBOARD_PATH.exists() else ""
    if current != observability.render():
        print(f"过期 {observability.DASHBOARD_PATH} differs from citybrain.observability: "
              "run `citybrain dashboard --write`", file=sys.stderr)
        return 1
    print(f"一致 {observability.DASHBOARD_PATH} is up to date ({len(observability.PANELS)} panels)")
    return 0
