"""Topic names (with the configured prefix) and their creation."""

from __future__ import annotations

from dataclasses import dataclass, field


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
        self.registry = f"{p}registry.devices"
        self.events = f"{p}events.normalized"
        self.commands = f"{p}workorders.commands"
        self.workorder_events = f"{p}workorders.events"
        self.rejected = f"{p}workorders.rejected"
        self.deadletter = f"{p}deadletter"
        # Internal: CityEvents keyed by fusion group, so every candidate order of an
        # event lives in one partition whatever border lies between them.
        self.fusion_inbox = f"{p}citybrain.fusion.inbox"

    def dispatch(self, department: str) -> str:
        return f"{self.prefix}dispatch.{department}"

    def supervision(self, level: str) -> str:
        """督办: the records for the street / district / city supervision desks."""
        return f"{self.prefix}dispatch.supervision.{level}"

    def specs(self, departments: list[str], partitions: int,
              supervision_levels: tuple[str, ...] = ("street", "district", "city")) -> list[TopicSpec]:
        plain = [self.iot, self.video, self.reports, self.events, self.commands,
                 self.workorder_events, self.rejected, self.deadletter, self.fusion_inbox]
        specs = [TopicSpec(name, partitions) for name in plain]
        # Compacted: the latest record per device id is the registry (一源一码).
        specs.append(TopicSpec(self.registry, partitions,
                               {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}))
        specs += [TopicSpec(self.dispatch(d), partitions) for d in departments]
        specs += [TopicSpec(self.supervision(level), partitions) for level in supervision_levels]
        return specs
