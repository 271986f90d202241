"""Normalisation: one input record → one CityEvent, nothing, or one dead letter.

Pure domain code: it sees bytes plus where they came from, and returns an
outcome.  Every record ends in exactly one of ``normal``, ``event``,
``suppressed`` or ``deadletter`` — the conservation law the metrics show.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from citybrain.domain.gazetteer import Gazetteer
from citybrain.domain.geo import AdminLocation, CityMap
from citybrain.domain.ids import stable_id
from citybrain.domain.masking import mask_bytes, mask_phone, mask_text
from citybrain.domain.pseudonym import DEVELOPMENT
from citybrain.domain.registry import Device
from citybrain.domain.sensor_rules import LEVEL_ZH, DeviceState, ReadingOutcome, SensorRule, apply_reading
from citybrain.domain.taxonomy import Taxonomy
from citybrain.wire.models import (
    CityEvent,
    DeadLetter,
    DeviceStatus,
    IncidentReport,
    InputRecord,
    IotReading,
    Location,
    SourceRef,
    VideoAlert,
)

M = TypeVar("M", bound=BaseModel)

Source = Literal["iot", "video", "report", "device"]
OriginalKept = Literal["masked", "full", "none"]
OutcomeName = Literal["normal", "event", "suppressed", "deadletter"]


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """Where a record came from: its Kafka coordinates and timestamp (epoch seconds)."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Result:
    outcome: OutcomeName
    event: CityEvent | None = None
    dead: DeadLetter | None = None
    reason: str | None = None          # suppressed/deadletter reason code
    state: DeviceState | None = None   # IoT only: the device state to store …
    state_key: str | None = None       # … under this device_id


class Rejected(Exception):
    """Internal: the record is a dead letter for ``reason``."""

    def __init__(self, reason: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.field = reason, detail, field


@dataclass(frozen=True)
class IngestLimits:
    max_record_bytes: int = 65536
    max_future_seconds: float = 300.0
    # Unknown extra fields are kept, but not nested deeper than this: the record is
    # serialised again downstream, and pydantic refuses (raises) past ~255 levels.
    max_extra_depth: int = 32
    dead_letter_original: OriginalKept = "masked"
    # Unknown input fields that travel on events.normalized (source_ref.extra, kept 400
    # days): only these names, their text masked (phone and ID numbers); every other one
    # is dropped at the edge — a gateway's caller_phone or caller_name never rides along.
    keep_extra_fields: frozenset[str] = frozenset()


# Each wire model's field names (``model.model_fields`` is a computed property: looked up
# per key it cost 14 % of normalising a reading — measured).
_FIELDS: dict[type, frozenset[str]] = {}


class Normalizer:
    def __init__(self, *, taxonomy: Taxonomy, sensor_rules: dict[str, SensorRule],
                 video_thresholds: dict[str, float], city: CityMap,
                 registry: Callable[[str], Device | None],
                 limits: IngestLimits = IngestLimits(), gazetteer: Gazetteer | None = None,
                 pseudonym: Callable[[str], str] = DEVELOPMENT):
        self.taxonomy = taxonomy
        self.sensor_rules = sensor_rules
        self.video_thresholds = video_thresholds
        self.city = city
        self.registry = registry
        self.limits = limits
        self.gazetteer = gazetteer   # reports by address (None: a report needs lon/lat)
        # A reporter's id leaves the normaliser only as its pseudonym (domain/pseudonym.py).
        self.pseudonym = pseudonym

    # -- the three sources -------------------------------------------------------

    def reading(self, raw: bytes | None, meta: RecordMeta,
                state_of: Callable[[str], DeviceState]) -> Result:
        """``state_of(device_id)`` gives the device's stored state."""
        try:
            r: IotReading = self._parse(raw, IotReading)
            if meta.key != r.device_id.encode("utf-8"):
                # Each device's alarm state lives in the partition of its key.
                raise Rejected("wrong_key", f"record key {_show_key(meta.key)} is not the "
                               f"device_id {r.device_id!r}; gateways must key readings by "
                               "device_id", "key")
            device = self._device(r.device_id, "sensor", r.sensor_type)
            rule = self.sensor_rules.get(r.sensor_type)
            category = self.taxonomy.for_sensor(r.sensor_type)
            if rule is None or category is None:
                raise Rejected("invalid_field", f"no rule configured for sensor_type {r.sensor_type}",
                               "sensor_type")
            if not rule.in_range(r.value):
                lo, hi = rule.valid_range
                raise Rejected("value_out_of_range",
                               f"value {r.value} outside the sensor's range {lo}..{hi} {rule.unit}",
                               "value")
            ts = r.ts.timestamp()   # once: an aware datetime's timestamp() is not cheap
            self._not_future(ts, meta)
            lon, lat, where = self._where(r.lon, r.lat, device)
        except Rejected as why:
            return self._dead("iot", raw, meta, why)
        state = state_of(r.device_id)
        new_state, outcome = apply_reading(rule, state, float(r.value), ts, r.seq)
        if outcome in (ReadingOutcome.DUPLICATE, ReadingOutcome.OUT_OF_ORDER):
            return Result("suppressed", reason=outcome.value)
        if outcome is ReadingOutcome.NORMAL:
            changed = new_state != state
            return Result("normal", state=new_state if changed else None,
                          state_key=r.device_id if changed else None)
        # A level move is an alarm of the device at its new level (预警升级/降级).
        kind = "recovery" if outcome is ReadingOutcome.RECOVERY else "alarm"
        level = new_state.level if kind == "alarm" else None
        shown = f" {LEVEL_ZH[level]}预警 {level}" if level else ""
        event = CityEvent(
            event_id=stable_id("ev", "iot", r.device_id, kind, ts, r.seq),
            source="iot", kind=kind, category=category.code, category_name=category.name_zh,
            severity=category.priority, occurred_at=r.ts,
            ingested_at=_utc(meta.timestamp), location=_location(lon, lat, where),
            device_id=r.device_id, sensor_type=r.sensor_type,
            asset_owner=device.owner_department, value=float(r.value), level=level,
            description=f"{category.name_zh}{shown}: {r.sensor_type} = {r.value} {r.unit or rule.unit}",
            source_ref=_ref(meta, r, self.limits.keep_extra_fields),
        )
        return Result("event", event=event, state=new_state, state_key=r.device_id)

    def device_status(self, raw: bytes | None, meta: RecordMeta) -> tuple[Result, DeviceStatus | None]:
        """``ingest.device.status``: a platform's word on one of its devices (no event by
        itself: the stage knows whether the status changed)."""
        try:
            st: DeviceStatus = self._parse(raw, DeviceStatus)
            if meta.key != st.device_id.encode("utf-8"):
                raise Rejected("wrong_key", f"record key {_show_key(meta.key)} is not the device_id "
                               f"{st.device_id!r}; platforms must key statuses by device_id", "key")
            device = self.registry(st.device_id)
            if device is None:
                raise Rejected("unknown_device", f"{st.device_id} is not in the device registry", "device_id")
            if device.status == "retired":
                raise Rejected("retired_device", f"{st.device_id} is retired in the registry", "device_id")
            self._not_future(st.ts.timestamp(), meta)
        except Rejected as why:
            return self._dead("device", raw, meta, why), None
        return Result("normal"), st

    def health_event(self, device_id: str, kind: str, at: float, meta: RecordMeta, why: str) -> CityEvent | None:
        """设备故障: a ``device_fault`` alarm (silent, offline, fault) or its recovery, for a
        registered device; None when the registry no longer knows it (or it is retired)."""
        device = self.registry(device_id)
        category = self.taxonomy.category("device_fault")
        if device is None or device.status == "retired" or category is None:
            return None
        where = self.city.locate(device.lon, device.lat)
        if where is None:
            return None
        occurred = _utc(at)
        what = "设备恢复 back online" if kind == "recovery" else "设备故障"
        return CityEvent(
            event_id=stable_id("ev", "health", device_id, kind, at),
            source="video" if device.kind == "camera" else "iot", kind=kind, category=category.code,
            category_name=category.name_zh, severity=category.priority, occurred_at=occurred,
            ingested_at=_utc(meta.timestamp), location=_location(device.lon, device.lat, where),
            device_id=device_id if device.kind == "sensor" else None,
            camera_id=device_id if device.kind == "camera" else None, sensor_type=device.sensor_type,
            asset_owner=device.owner_department, description=f"{what}: {device_id} {why}",
            source_ref=SourceRef(topic=meta.topic, partition=meta.partition, offset=meta.offset))

    def video(self, raw: bytes | None, meta: RecordMeta) -> Result:
        try:
            a: VideoAlert = self._parse(raw, VideoAlert)
            camera = self._device(a.camera_id, "camera", None)
            category = self.taxonomy.for_algorithm(a.algorithm)
            if category is None:
                raise Rejected("invalid_field", f"algorithm {a.algorithm} has no category", "algorithm")
            self._not_future(a.ts.timestamp(), meta)
            lon, lat, where = self._where(a.lon, a.lat, camera)
        except Rejected as why:
            return self._dead("video", raw, meta, why)
        threshold = self.video_thresholds.get(a.algorithm, 1.0)
        if a.confidence < threshold:
            return Result("suppressed", reason="low_confidence")
        event = CityEvent(
            event_id=stable_id("ev", "video", a.alert_id),
            source="video", kind="alarm", category=category.code, category_name=category.name_zh,
            severity=category.priority, occurred_at=a.ts, ingested_at=_utc(meta.timestamp),
            location=_location(lon, lat, where), camera_id=a.camera_id, alert_id=a.alert_id,
            algorithm=a.algorithm, asset_owner=camera.owner_department,
            confidence=float(a.confidence),
            evidence=[a.snapshot_url] if a.snapshot_url else [],
            description=f"{category.name_zh}: {a.algorithm} ({a.confidence:.2f})",
            source_ref=_ref(meta, a, self.limits.keep_extra_fields),
        )
        return Result("event", event=event)

    def report(self, raw: bytes | None, meta: RecordMeta) -> Result:
        try:
            r: IncidentReport = self._parse(raw, IncidentReport)
            category = self.taxonomy.category(r.category)
            if category is None:
                raise Rejected("unknown_category", f"category {r.category!r} is not in the taxonomy",
                               "category")
            self._not_future(r.ts.timestamp(), meta)
            lon, lat, needs_location = self._by_address(r)
            lon, lat, where = self._where(lon, lat, None)
            if r.grid_code is not None and r.grid_code != where.grid_code:
                # The app's own grid wins when it names a real grid: grid members
                # report for their grid even standing just across its border.
                named = self.city.grid(r.grid_code)
                if named is None:
                    raise Rejected("invalid_field", f"grid_code {r.grid_code} is not a grid of this city",
                                   "grid_code")
                where = named
        except Rejected as why:
            return self._dead("report", raw, meta, why)
        event = CityEvent(
            event_id=stable_id("ev", "report", r.report_id),
            source="report", kind="report", category=category.code,
            category_name=category.name_zh, severity=category.priority, occurred_at=r.ts,
            ingested_at=_utc(meta.timestamp), location=_location(lon, lat, where),
            report_id=r.report_id, reporter_id=self.pseudonym(r.reporter_id), channel=r.channel,
            evidence=list(r.photos), description=mask_text(r.description),
            address=mask_text(r.address) if r.address else None,
            contact_phone=mask_phone(r.contact_phone) if r.contact_phone else None,
            needs_location=needs_location, external_ref=r.external_ref,
            source_ref=_ref(meta, r, self.limits.keep_extra_fields),
        )
        return Result("event", event=event)

    # -- shared checks -----------------------------------------------------------

    def _parse(self, raw: bytes | None, model: type[M]) -> M:
        if raw is None:
            raise Rejected("not_json", "empty record (null value)")
        if len(raw) > self.limits.max_record_bytes:
            raise Rejected("too_large", f"record is {len(raw)} bytes; the limit is "
                                        f"{self.limits.max_record_bytes}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            if "utf-8" in str(e).lower():
                raise Rejected("invalid_utf8", f"not valid UTF-8: {e}") from None
            raise Rejected("not_json", f"not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise Rejected("not_object", f"expected a JSON object, got {type(obj).__name__}")
        too_deep = extra_nested_too_deep(obj, model, self.limits.max_extra_depth)
        if too_deep is not None:
            raise Rejected("invalid_field", f"extra field {too_deep!r} is nested more than "
                                            f"{self.limits.max_extra_depth} levels deep", too_deep)
        try:
            return model.model_validate(obj)
        except ValidationError as e:
            reason, field, err = validation_failure(e)
            raise Rejected(reason, f"{field}: {err['msg']}", field) from None

    def _device(self, device_id: str, kind: str, sensor_type: str | None) -> Device:
        field = "device_id" if kind == "sensor" else "camera_id"
        device = self.registry(device_id)
        if device is None:
            raise Rejected("unknown_device", f"{device_id} is not in the device registry", field)
        if device.status == "retired":
            raise Rejected("retired_device", f"{device_id} is retired in the registry", field)
        if device.kind != kind or (sensor_type and device.sensor_type != sensor_type):
            raise Rejected("device_type_mismatch",
                           f"{device_id} is registered as {device.kind}/{device.sensor_type}, "
                           f"not {kind}/{sensor_type}", field)
        return device

    def _not_future(self, ts: float, meta: RecordMeta) -> None:
        ahead = ts - meta.timestamp
        if ahead > self.limits.max_future_seconds:
            raise Rejected("future_timestamp",
                           f"ts is {ahead:.0f}s ahead of the record's Kafka time "
                           f"(limit {self.limits.max_future_seconds:.0f}s)", "ts")

    def _by_address(self, r: IncidentReport) -> tuple[float | None, float | None, bool]:
        """A report with an address and no point: the gazetteer's point, or — when it cannot
        locate the address — a placeholder and needs_location (the order waits in triage)."""
        if r.lon is not None or r.lat is not None or not r.address or self.gazetteer is None:
            return r.lon, r.lat, False
        found = self.gazetteer.locate(r.address)
        if found is not None:
            return found.lon, found.lat, False
        spot = self.gazetteer.placeholder(r.address)
        return spot.lon, spot.lat, True

    def _where(self, lon: float | None, lat: float | None, device: Device | None) -> tuple[float, float, AdminLocation]:
        if lon is None or lat is None:
            if device is None:
                raise Rejected("missing_location", "no lon/lat", "lon")
            lon, lat = device.lon, device.lat
        where = self.city.locate(float(lon), float(lat))
        if where is None:
            raise Rejected("out_of_area", f"({lon}, {lat}) is outside every grid of "
                                          f"{self.city.city_name} {self.city.city_code}".rstrip(), "lon")
        return float(lon), float(lat), where

    def _dead(self, source: Source, raw: bytes | None, meta: RecordMeta, why: Rejected) -> Result:
        return Result("deadletter", reason=why.reason, dead=dead_letter(
            source, raw, meta, why.reason, why.detail, why.field, keep_bytes=self.limits.max_record_bytes,
            keep_original=self.limits.dead_letter_original))


KEEP_ORIGINAL_BYTES = 65536   # a dead letter's copy of the original; the rest is on its source topic
KEEP_KEY_BYTES = 1024
MAX_DETAIL_CHARS = 1000


def dead_letter(source: str, raw: bytes | None, meta: RecordMeta, reason: str, detail: str,
                field: str | None = None, *, keep_bytes: int = KEEP_ORIGINAL_BYTES,
                exception_type: str | None = None, keep_original: OriginalKept = "masked") -> DeadLetter:
    """A bounded dead letter: whatever the original's size, the record stays well under
    the broker's limit — a larger original is kept as its first ``keep_bytes`` with its
    length and SHA-256 (the whole record stays on its source topic).  ``keep_original``
    (personal data at rest, DESIGN §11 / docs/security.md): ``masked`` keeps the bytes
    with phone and ID-card numbers masked, ``full`` as they came, ``none`` nothing — the
    reason, field, coordinates, length and hash of the original stay in every case."""
    raw = raw or b""
    key = meta.key[:KEEP_KEY_BYTES] if meta.key is not None else None
    if key is not None and keep_original != "full":
        key = mask_bytes(key)   # a report's key is its reporter id, often a phone number
    kept = raw[:keep_bytes]
    if keep_original == "masked":
        kept = mask_bytes(kept)
    elif keep_original == "none":
        kept = b""
    return DeadLetter(
        reason=reason, detail=detail[:MAX_DETAIL_CHARS], field=(field or "")[:200] or None, source=source,
        exception_type=exception_type,
        source_topic=meta.topic, source_partition=meta.partition, source_offset=meta.offset,
        source_timestamp=_utc(meta.timestamp) if meta.timestamp else None,
        original_key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_b64=base64.b64encode(kept).decode(), original_kept=keep_original, original_size=len(raw),
        original_truncated=len(raw) > keep_bytes, original_sha256=hashlib.sha256(raw).hexdigest(),
        dead_at=datetime.now(UTC),
    )


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The dead letter's own Kafka key: the original key with phone and ID-card numbers
    masked (a report's key is its reporter id: deadletter keeps it 400 days), or its SHA-256
    when it is too long to repeat."""
    if key is None or len(key) <= KEEP_KEY_BYTES:
        return mask_bytes(key) if key is not None else None
    return hashlib.sha256(key).hexdigest().encode()


def extra_nested_too_deep(obj: dict[str, Any], model: type[BaseModel], limit: int) -> str | None:
    """The first extra field (not one of ``model``'s) nested deeper than ``limit``, if any:
    kept extras are serialised again downstream, and serialisers refuse past ~255 levels."""
    fields = _FIELDS.get(model) or _FIELDS.setdefault(model, frozenset(model.model_fields))
    for name, value in obj.items():
        if name not in fields and isinstance(value, (dict, list)) and nested_deeper_than(value, limit):
            return name
    return None


def nested_deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether a parsed JSON value nests dicts/lists more than ``limit`` levels (iterative:
    no recursion limit to hit, stops at the first branch too deep)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        children = v.values() if isinstance(v, dict) else v
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def validation_failure(e: ValidationError) -> tuple[str, str | None, ErrorDetails]:
    """A pydantic error as a dead-letter reason (``missing_field`` | ``invalid_field``),
    the field at fault, and the first error itself."""
    err = e.errors(include_url=False)[0]
    return ("missing_field" if err["type"] == "missing" else "invalid_field"), field_path(err["loc"]), err


def field_path(loc: tuple[int | str, ...]) -> str | None:
    """Dotted path of the field at fault, without pydantic's union-member tags
    (``("value", "float")`` → ``value``; ``("photos", 3)`` → ``photos.3``)."""
    if not loc:
        return None
    return ".".join([str(loc[0])] + [str(p) for p in loc[1:] if isinstance(p, int)])


def _show_key(key: bytes | None) -> str:
    return "null" if key is None else repr(key.decode("utf-8", "replace"))


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _location(lon: float, lat: float, where: AdminLocation) -> Location:
    return Location(lon=lon, lat=lat, district_code=where.district_code,
                    street_code=where.street_code, community_code=where.community_code,
                    grid_code=where.grid_code)


def _ref(meta: RecordMeta, record: InputRecord, allow: frozenset[str]) -> SourceRef:
    return SourceRef(topic=meta.topic, partition=meta.partition, offset=meta.offset,
                     extra=kept_extras(record.extra_fields(), allow))


def kept_extras(extra: dict[str, Any], allow: frozenset[str]) -> dict[str, Any]:
    """The allowed extra fields, every string inside them masked; the rest dropped."""
    return {k: _masked(v) for k, v in extra.items() if k in allow}


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value
