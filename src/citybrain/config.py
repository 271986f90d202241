"""Configuration: validated data under ``config/`` plus environment overrides."""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citybrain.domain.analytics import AnalyticsConfig
from citybrain.domain.area_warnings import WarningsConfig
from citybrain.domain.calendar import WorkCalendar
from citybrain.domain.deadlines import Deadlines, LifecycleConfig
from citybrain.domain.escalation import EscalationConfig, Escalator
from citybrain.domain.evaluation import Evaluation
from citybrain.domain.gazetteer import Gazetteer
from citybrain.domain.geo import CityMap
from citybrain.domain.hotspots import HotspotConfig
from citybrain.domain.routing import Router, RoutingConfig, street_desk
from citybrain.domain.sensor_rules import SensorRule
from citybrain.domain.taxonomy import Taxonomy
from citybrain.paths import config_dir


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic_prefix: str = ""
    partitions: int = Field(6, ge=1, le=1000)
    # Replication is config/topics.toml's [replication] (Config.topic_retention.replication);
    # this older key is still read where that names no factor.
    replication_factor: int | None = Field(None, ge=1)
    # Security to the cluster (docs/security.md; kafka/clients.py reads these, the
    # environment's KAFKA_SECURITY_PROTOCOL … override; the SASL password comes only from
    # KAFKA_SASL_PASSWORD).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = None
    sasl_username: str | None = None
    ssl_cafile: str | None = None


StageName = Literal["normalise", "fuse"]
STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)


def _names(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _stage_names(v: str) -> list[str]:
    """CITYBRAIN_STAGES: names, or ``none`` (a console process).  Text that names nothing
    (",") stays itself, so that validation refuses it by name rather than read it as none."""
    if v.strip().lower() == "none":
        return []
    return _names(v) or [v]


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str = "citybrain"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # rocksdb://: each stage state's copy on local disk with the changelog offset it
    # reflects, so a restart reads only the changelog's tail; memory://: none (a restart
    # reads every changelog from the beginning).
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    # exactly_once: a stage's outputs, changelog writes and input offsets commit in one
    # Kafka transaction; at_least_once: outputs may repeat after a crash (each carries
    # its dedupe key).  The default and its measured cost: docs/architecture.md.
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "at_least_once"
    session_timeout_seconds: float = Field(6.0, ge=6, le=300)
    heartbeat_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Static group membership (KIP-345): the stages' consumers join as this instance, so a
    # worker back within the session takes its partitions again with no rebalance.  Empty:
    # the pod's name (HOSTNAME) or the host's, and the web port — two workers on one host
    # must not share an id (the broker would fence one).  worker_instance_id() reads it.
    instance_id: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,200}$")
    # A graceful stop (SIGTERM): leave the group at once, so the others take the partitions
    # now, rather than hold them for a return within the session (docs/performance.md).
    leave_group_on_stop: bool = True
    # A closed or cancelled order leaves the fuse stage's hot state (a changelog
    # tombstone) this long after it closed: memory and restarts follow the open orders.
    # Until then a replay of any of its events is a duplicate; it must outlast the
    # retention of every topic fusion can replay (checked at start).
    closed_state_days: float = Field(14.0, gt=0)
    # The hot path's stages this worker process hosts.  Both by default; one each in two
    # processes (a normalise worker and a fuse worker, each with a core of its own) keeps
    # one stage's batches from holding the other's event loop — docs/performance.md.
    # None (``[]``, CITYBRAIN_STAGES=none): a console process.
    stages: list[StageName] = Field(default_factory=lambda: list(STAGE_NAMES))
    # Whether this process serves the console: the order views, the history, the 研判
    # windows, media and the HTTP API, each a reader of its own topics.  false: a stage
    # process that answers /metrics, /healthz and /readyz only — the readers' fetches and
    # folds no longer share the hot path's event loop (docs/performance.md, "The console
    # in a process of its own").
    console: bool = True

    @field_validator("stages")
    @classmethod
    def _each_stage_once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"each stage at most once: {v}")
        return v

    @model_validator(mode="after")
    def _hosts_something(self) -> WorkerSettings:
        if not self.stages and not self.console:
            raise ValueError("本进程无事可做 this worker process would host nothing: worker.stages is none "
                             "and worker.console is false")
        return self


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_record_bytes: int = Field(65536, ge=1024)
    max_future_seconds: float = Field(300, ge=0)
    max_description_chars: int = 2000
    # A dead letter's copy of the original (personal data at rest, docs/security.md):
    # masked (phone and ID-card numbers), full, or none — the reason, field, coordinates,
    # length and SHA-256 stay; the original itself is on its source topic for its retention.
    dead_letter_original: Literal["masked", "full", "none"] = "masked"
    # Unknown input fields kept on events.normalized (source_ref.extra), text masked; every
    # other unknown field is dropped at the edge (personal data: docs/security.md).
    keep_extra_fields: list[str] = Field(default_factory=list)
    # The environment variable holding the key of reporter pseudonyms (HMAC-SHA256, at least
    # 16 characters): reporter ids are replaced by rp_<hex> at normalisation (DESIGN §16,
    # docs/security.md). Unset: a public development key, and a warning at start.
    reporter_key_env: str = Field("CITYBRAIN_REPORTER_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # The largest record a stage sends (events, orders, dead letters): below the broker's
    # message.max.bytes (1 MB by default); a larger output makes its input an
    # output_rejected dead letter instead of a produce the broker would refuse.
    max_output_bytes: int = Field(1_000_000, ge=65536)


class CitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geography: str
    registry: str


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A map tile URL template ({z}/{x}/{y}); empty: the grid layer is drawn without tiles,
    # so the console works with the network cut off.
    tile_url: str = ""
    # Closed and cancelled orders stay in every worker's order view this long after their
    # last change (the log keeps them all; `citybrain timeline` reads it).
    closed_retention_days: float = Field(7.0, gt=0)


class ApiSettings(BaseModel):
    """Per-token limits on the HTTP API (per worker): beyond them a 429 with Retry-After."""

    model_config = ConfigDict(extra="forbid")
    requests_per_second: float = Field(50.0, gt=0)
    request_burst: int = Field(200, ge=1)
    max_streams_per_token: int = Field(8, ge=1)   # live SSE streams open at once


class Open311Settings(BaseModel):
    """Open311 GeoReport v2 under /open311 (DESIGN §16, docs/console.md "Open311")."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # The jurisdiction this endpoint serves; a request naming another is refused (404).
    # Empty: the city layer's city code.
    jurisdiction_id: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    # GET requests without an api_key (the spec's reads are public); false: a gateway or
    # operator token as api_key (docs/security.md: every API call carries a token).
    public_reads: bool = False
    contact: str = Field("", max_length=500)       # discovery's contact; empty: the city's name
    # The endpoint's public URL as discovery gives it (e.g. https://open311.city.example/open311);
    # empty: from the request (scheme and Host as the worker sees them).
    base_url: str = Field("", pattern=r"^(https?://[^\s]+)?$")


# What can reach fusion again if replayed: the raw inputs and the fusion inbox.
REPLAYABLE_BY_FUSION = ("ingest.iot.readings", "ingest.video.alerts", "ingest.reports", "citybrain.fusion.inbox")


class Replication(BaseModel):
    """``[replication]`` of ``config/topics.toml`` (DESIGN §17): copies of each partition,
    and how many must hold a record before an ``acks=all`` produce is acknowledged."""

    model_config = ConfigDict(extra="forbid")
    factor: int = Field(1, ge=1)
    min_insync_replicas: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _isr_within_factor(self) -> Replication:
        if self.min_insync_replicas > self.factor:
            raise ValueError(f"topics.toml [replication]: min_insync_replicas {self.min_insync_replicas} "
                             f"cannot exceed factor {self.factor} (every produce would be refused)")
        return self


class TopicRetention(BaseModel):
    """``config/topics.toml``: days each topic keeps its records (-1: forever), and the
    topics' replication."""

    model_config = ConfigDict(extra="forbid")
    default_retention_days: float = Field(400, gt=0)
    retention_days: dict[str, float] = Field(default_factory=dict)
    replication: Replication = Replication()

    def days(self, name: str) -> float:
        days = self.retention_days.get(name, self.default_retention_days)
        if days != -1 and days <= 0:
            raise ValueError(f"topics.toml: retention of {name} must be positive or -1 (forever)")
        return days

    def retention_ms(self, name: str) -> str:
        days = self.days(name)
        return "-1" if days == -1 else str(int(days * 86_400_000))


_PlaceName = Field(min_length=2, max_length=64)
_Point = tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]]


class RoadConfig(BaseModel):
    """A road of ``config/places.toml``: a line of points (lon, lat) in one street (or, when it
    crosses streets, one district); it is found at its midpoint (house numbers are not resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, _PlaceName]
    aliases: list[Annotated[str, _PlaceName]] = []
    district_code: Annotated[str, Field(pattern=r"^\d{6}$")] | None = None
    street_code: Annotated[str, Field(pattern=r"^\d{9}$")] | None = None
    points: list[_Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _street_or_district(self) -> RoadConfig:
        if self.street_code is None and self.district_code is None:
            raise ValueError(f"road {self.name}: give its street_code (or district_code when it crosses streets)")
        if self.street_code and self.district_code and not self.street_code.startswith(self.district_code):
            raise ValueError(f"road {self.name}: street {self.street_code} is not in district {self.district_code}")
        return self


class PlaceConfig(BaseModel):
    """A named place of ``config/places.toml`` (a hospital, a scenic area, a station)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, _PlaceName]
    aliases: list[Annotated[str, _PlaceName]] = []
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class PlacesConfig(BaseModel):
    """``config/places.toml``: the gazetteer's roads and places beside the city layer's names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sample_data: bool = False
    road: list[RoadConfig] = []
    place: list[PlaceConfig] = []

    @model_validator(mode="after")
    def _unique_names(self) -> PlacesConfig:
        seen: set[str] = set()
        names = [*(n for r in self.road for n in (r.name, *r.aliases)),
                 *(n for p in self.place for n in (p.name, *p.aliases))]
        for n in names:
            if n in seen:
                raise ValueError(f"places.toml: the name {n!r} is given twice")
            seen.add(n)
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kafka: KafkaSettings = KafkaSettings()
    console: ConsoleSettings = ConsoleSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    open311: Open311Settings = Open311Settings()
    city: CitySettings


_ENV: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "CITYBRAIN_TOPIC_PREFIX": ("kafka", "topic_prefix", str),
    "CITYBRAIN_PARTITIONS": ("kafka", "partitions", int),
    "CITYBRAIN_APP_ID": ("worker", "app_id", str),
    "CITYBRAIN_WEB_PORT": ("worker", "web_port", int),
    "CITYBRAIN_WEB_HOST": ("worker", "web_host", str),
    "CITYBRAIN_STORE": ("worker", "store", str),
    "CITYBRAIN_PROCESSING_GUARANTEE": ("worker", "processing_guarantee", str),
    "CITYBRAIN_STAGES": ("worker", "stages", _stage_names),
    "CITYBRAIN_CONSOLE": ("worker", "console", str),
    "CITYBRAIN_INSTANCE_ID": ("worker", "instance_id", str),
    "CITYBRAIN_LEAVE_GROUP_ON_STOP": ("worker", "leave_group_on_stop", str),
}


def worker_instance_id(worker: WorkerSettings, env: Mapping[str, str] | None = None) -> str:
    """The stages' static group member id: ``worker.instance_id``, else the pod's (or
    host's) name and the web port — stable across restarts of the same worker."""
    if worker.instance_id:
        return worker.instance_id
    given = os.environ if env is None else env
    host = (given.get("HOSTNAME") or socket.gethostname() or "worker").strip()
    return f"{re.sub(r'[^A-Za-z0-9._-]', '-', host)}-{worker.web_port}"


def _read_toml(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


class Config:
    """Everything a worker or tool reads from ``config/``, validated once."""

    def __init__(self, directory: Path | None = None, env: Mapping[str, str] | None = None):
        self.directory = directory or config_dir()
        given: Mapping[str, str] = os.environ if env is None else env
        self._env = given
        raw = _read_toml(self.directory / "citybrain.toml")
        for var, (section, key, cast) in _ENV.items():
            if given.get(var) not in (None, ""):
                raw.setdefault(section, {})[key] = cast(given[var])
        self.settings = Settings.model_validate(raw)

    @cached_property
    def topic_retention(self) -> TopicRetention:
        path = self.directory / "topics.toml"
        raw = _read_toml(path) if path.exists() else {}
        older = self.settings.kafka.replication_factor
        if older is not None and "factor" not in raw.get("replication", {}):
            raw.setdefault("replication", {})["factor"] = older
        # The environment over the file (a three-node test cluster, a one-node demo).
        for var, key in (("CITYBRAIN_REPLICATION_FACTOR", "factor"),
                         ("CITYBRAIN_MIN_INSYNC_REPLICAS", "min_insync_replicas")):
            if self._env.get(var) not in (None, ""):
                raw.setdefault("replication", {})[key] = int(self._env[var])
        return TopicRetention.model_validate(raw)

    def check_closed_state_days(self) -> None:
        """Closed orders must stay in hot state longer than fusion's inputs can be
        replayed, or a replay could open a closed incident again."""
        keep = self.settings.worker.closed_state_days
        replayable = {n: self.topic_retention.days(n) for n in REPLAYABLE_BY_FUSION}
        longest = max(replayable.values(), key=lambda d: float("inf") if d == -1 else d)
        if longest == -1 or longest >= keep:
            raise ValueError(f"worker.closed_state_days = {keep:g} must be longer than the retention of the "
                             f"topics fusion can replay ({', '.join(f'{n} {d:g} d' for n, d in replayable.items())}"
                             "): shorten those in topics.toml or keep closed orders longer")

    @cached_property
    def taxonomy(self) -> Taxonomy:
        data = _read_toml(self.directory / "departments.toml")
        data.update(_read_toml(self.directory / "categories.toml"))
        return Taxonomy(departments=data["department"], categories=data["category"])

    @cached_property
    def sensor_rules(self) -> dict[str, SensorRule]:
        raw = _read_toml(self.directory / "sensor_rules.toml")
        return {name: SensorRule.model_validate(rule) for name, rule in raw.items()}

    @cached_property
    def video_thresholds(self) -> dict[str, float]:
        raw = _read_toml(self.directory / "video.toml")["thresholds"]
        for algo, t in raw.items():
            if not 0 <= t <= 1:
                raise ValueError(f"video.toml: threshold for {algo} must be within 0..1")
        return raw

    @cached_property
    def router(self) -> Router:
        return Router(RoutingConfig.model_validate(_read_toml(self.directory / "routing.toml")),
                      self.taxonomy)

    @cached_property
    def lifecycle(self) -> LifecycleConfig:
        cfg = LifecycleConfig.model_validate(_read_toml(self.directory / "lifecycle.toml"))
        for cat in cfg.category_time_limits:
            if self.taxonomy.category(cat) is None:
                raise ValueError(f"lifecycle.toml category_time_limits: unknown category {cat!r}")
        return cfg

    @cached_property
    def deadlines(self) -> Deadlines:
        c = self.lifecycle.calendar
        calendar = WorkCalendar.load([self.directory / f for f in c.files], c.working_hours, c.timezone)
        return Deadlines(self.lifecycle, calendar)

    @cached_property
    def desks(self) -> dict[str, str]:
        """Every desk an order can be dispatched to, code → 中文 name: the line departments
        and a street desk (属地, ``street.<street_code>``) per street of the city (DESIGN §13)."""
        desks = {d.code: d.name_zh for d in self.taxonomy.departments}
        desks.update({street_desk(code): f"{name}街道办" if not name.endswith(("街道", "镇")) else f"{name}（属地）"
                      for code, name in self.city_map.street_names.items()})
        return desks

    @cached_property
    def escalator(self) -> Escalator:
        cfg = EscalationConfig.model_validate(_read_toml(self.directory / "escalation.toml"))
        return Escalator(cfg, self.router, self.deadlines, frozenset(self.desks))

    def new_evaluation(self) -> Evaluation:
        """An empty evaluation as the worker and ``citybrain kpis`` keep it: a closed
        order's versions are kept as long as the fuse stage keeps the order (it makes no
        change to it after that), plus a day."""
        return Evaluation(self.lifecycle.calendar.timezone,
                          keep_closed_days=self.settings.worker.closed_state_days + 1)

    @cached_property
    def city_map(self) -> CityMap:
        return CityMap.load(self.directory / self.settings.city.geography)

    @cached_property
    def places(self) -> PlacesConfig:
        path = self.directory / "places.toml"
        return PlacesConfig.model_validate(_read_toml(path) if path.exists() else {})

    @cached_property
    def analytics(self) -> AnalyticsConfig:
        """``config/analytics.toml``: 研判 windows, trends and 高发 hotspots (category codes checked)."""
        path = self.directory / "analytics.toml"
        cfg = AnalyticsConfig.model_validate(_read_toml(path) if path.exists() else {})
        unknown = set(cfg.hotspots.categories) - {c.code for c in self.taxonomy.categories}
        if unknown:
            raise ValueError(f"analytics.toml [hotspots]: unknown categories {sorted(unknown)}")
        return cfg

    @property
    def hotspots(self) -> HotspotConfig:
        """``[hotspots]`` of config/analytics.toml: 高发 rules, a default and per category."""
        return self.analytics.hotspots

    @cached_property
    def gazetteer(self) -> Gazetteer:
        """The city layer's names and places.toml's roads and places (each checked to lie
        where it says)."""
        return Gazetteer(self.city_map, self.places.road, self.places.place)

    @cached_property
    def warnings(self) -> WarningsConfig:
        """``config/warnings.toml``: what each kind of area warning does (区域预警, categories checked)."""
        path = self.directory / "warnings.toml"
        cfg = WarningsConfig.model_validate(_read_toml(path) if path.exists() else {})
        return cfg.check(c.code for c in self.taxonomy.categories)

    @property
    def auth_path(self) -> Path:
        """API tokens (hashes only); CITYBRAIN_AUTH_FILE points elsewhere in deployment."""
        return Path(os.environ.get("CITYBRAIN_AUTH_FILE") or self.directory / "auth.toml")

    @property
    def registry_path(self) -> Path:
        return self.directory / self.settings.city.registry
