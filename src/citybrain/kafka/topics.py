"""Topic names (with the configured prefix) and their creation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from citybrain.wire.enums import SUPERVISION_LEVELS

MEDIA_RECORD_BYTES = 5 * 1024 * 1024 + 64 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


class Topics:
    """Every topic of the wire contract (DESIGN §2), prefixed."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        p = prefix
        self.iot = f"{p}ingest.iot.readings"
        self.video = f"{p}ingest.video.alerts"
        self.reports = f"{p}ingest.reports"
        # 设备状态: camera platforms state their cameras' status (DESIGN §13).
        self.device_status = f"{p}ingest.device.status"
        self.registry = f"{p}registry.devices"
        # 联网率: each device's "heard within its reporting interval", written by the normalise
        # stage when it changes (compacted, key device id); every worker folds it whole.
        self.liveness = f"{p}devices.liveness"
        self.events = f"{p}events.normalized"
        self.commands = f"{p}workorders.commands"
        self.workorder_events = f"{p}workorders.events"
        self.workorder_state = f"{p}workorders.state"
        self.rejected = f"{p}workorders.rejected"
        self.deadletter = f"{p}deadletter"
        # 应急指挥: every change of an order under emergency response (DESIGN §12).
        self.emergency = f"{p}command.emergency"
        # 反馈: what became of each report, for the reporters' apps (DESIGN §13).
        self.reporter_notifications = f"{p}notifications.reporters"
        # Internal: CityEvents keyed by fusion group, so every candidate order of an
        # event lives in one partition whatever border lies between them.
        self.fusion_inbox = f"{p}citybrain.fusion.inbox"
        # Photos of cases, keyed by their SHA-256 (compacted: each kept once, for ever).
        self.media = f"{p}media.objects"
        # 区域预警: area warnings of outside authorities, keyed by warning_id (compacted: the
        # latest record per warning amends or withdraws it; every worker reads it whole).
        self.warnings = f"{p}ingest.warnings"
        # 研判 windows, key window|granularity|category|district|street (compacted; DESIGN §15).
        self.analytics_windows = f"{p}analytics.windows"
        # 高发 hotspots, key hotspot_id (compacted: the latest per hotspot, a tombstone when it ends).
        self.analytics_hotspots = f"{p}analytics.hotspots"

    @property
    def ingest(self) -> list[str]:
        """Every ingest topic, the normalise stage's inputs (the benchmarks' loops read the same)."""
        return [self.iot, self.video, self.reports, self.device_status]

    def dispatch(self, department: str) -> str:
        return f"{self.prefix}dispatch.{department}"

    def supervision(self, level: str) -> str:
        """督办: the records for the street / district / city supervision desks."""
        return f"{self.prefix}dispatch.supervision.{level}"

    def specs(self, departments: list[str], partitions: int,
              supervision_levels: tuple[str, ...] = SUPERVISION_LEVELS,
              retention=None, changelogs: Sequence[str] = ()) -> list[TopicSpec]:
        """Every topic with its settings.  ``retention``: a ``TopicRetention`` (days per
        unprefixed name; the broker's default when None); ``changelogs``: the stages'
        state topics (compacted, partitioned like their inputs)."""
        plain = [*self.ingest, self.events, self.commands,
                 self.workorder_events, self.rejected, self.deadletter, self.fusion_inbox, self.emergency,
                 self.reporter_notifications]
        plain += [self.dispatch(d) for d in departments]
        plain += [self.supervision(level) for level in supervision_levels]

        def kept(name: str) -> dict[str, str]:
            if retention is None:
                return {}
            return {"cleanup.policy": "delete", "retention.ms": retention.retention_ms(self.unprefixed(name))}
        specs = [TopicSpec(name, partitions, kept(name)) for name in plain]
        # Compacted: the latest record per device id is the registry (一源一码).
        specs.append(TopicSpec(self.registry, partitions, dict(COMPACTED, **{"min.cleanable.dirty.ratio": "0.1"})))
        # Compacted: the latest snapshot of every order (DESIGN §11).
        specs.append(TopicSpec(self.workorder_state, partitions, dict(COMPACTED)))
        # Compacted: the latest liveness of every device (联网率).
        specs.append(TopicSpec(self.liveness, partitions, dict(COMPACTED)))
        # Compacted, records up to a photo's limit (web.media: 5 MiB and the record's overhead).
        specs.append(TopicSpec(self.media, partitions, dict(COMPACTED, **{"max.message.bytes": str(MEDIA_RECORD_BYTES)})))
        # Compacted, and a window unchanged for the retention (a year and a month) goes.
        specs.append(TopicSpec(self.analytics_windows, partitions, {
            "cleanup.policy": "compact,delete",
            "retention.ms": retention.retention_ms("analytics.windows") if retention is not None
            else str(400 * 86_400_000)}))
        specs.append(TopicSpec(self.analytics_hotspots, partitions, dict(COMPACTED)))
        specs.append(TopicSpec(self.warnings, partitions, dict(COMPACTED)))
        specs += [TopicSpec(name, partitions, dict(COMPACTED)) for name in changelogs]
        return specs

    def unprefixed(self, name: str) -> str:
        return name[len(self.prefix):] if name.startswith(self.prefix) else name

    def co_partitioned(self, changelogs: dict[str, str]) -> list[list[str]]:
        """Topics a stage reads by partition number together (``changelogs``: state name →
        topic): a stage's inputs, and each state with the input it follows."""
        normalise = list(self.ingest)
        fuse = [self.fusion_inbox]
        for state, topic in changelogs.items():
            (normalise if state in ("sensor_state", "device_health") else fuse).append(topic)
        return [normalise, fuse]


COMPACTED = {"cleanup.policy": "compact"}
