"""Wire models (pydantic v2): the single source of the JSON Schemas in ``schemas/``.

Input models keep unknown extra fields (``extra="allow"``) so nothing a finder sends
is lost; scalar fields are strict so ``"12"`` is not silently taken for 12.
Timestamps must be RFC 3339 *with* an offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

Number = StrictFloat | StrictInt


def _not_a_number(v: object) -> object:
    # pydantic would read a number as epoch seconds; the contract says RFC 3339 text.
    if isinstance(v, (int, float)):
        raise ValueError("ts must be RFC 3339 text with an offset, not a number")
    return v


def _this_era(v: datetime) -> datetime:
    if v.year < 2000:
        raise ValueError(f"ts {v.isoformat()} is before the year 2000")
    return v


# Every input's and command's ts: RFC 3339 with an offset (a number is refused, not read as
# epoch seconds), from the year 2000 on (a year 0001 is a broken clock, not an incident).
Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_this_era)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Lon = Annotated[Number, Field(ge=-180, le=180)]
Lat = Annotated[Number, Field(ge=-90, le=90)]

SensorType = Literal[
    "water_level", "manhole_tilt", "smoke", "residual_current", "cable_temperature",
    "gas_lel", "pm25", "pm10", "noise_db", "water_ph", "water_turbidity",
    "streetlight_status", "pipe_pressure", "bin_fill",
]
Algorithm = Literal[
    "road_ponding", "fire_smoke", "illegal_parking", "street_vending", "garbage_overflow",
    "crowd_gathering", "traffic_accident", "illegal_construction", "fallen_person",
    "forest_smoke",
]
Channel = Literal["grid_app", "hotline_12345", "citizen_app"]
Severity = Literal["low", "normal", "high", "urgent"]
# 预警分级 (DESIGN §12): blue < yellow < orange < red.
WarningLevel = Literal["blue", "yellow", "orange", "red"]
# 应急响应级别: IV (四级, the lowest) … I (一级, the highest).
EmergencyLevel = Literal["IV", "III", "II", "I"]
# Where a finding came from: a sensor (物联感知), a camera's algorithm (视频), a person (上报).
Source = Literal["iot", "video", "report"]


class _Input(BaseModel):
    """What every input record shares: extra fields kept, frozen."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


InputRecord = _Input   # the public name of what the input models share


class IotReading(_Input):
    """`ingest.iot.readings`, keyed by device_id."""

    device_id: Id
    sensor_type: SensorType
    value: Number
    unit: StrictStr | None = None
    ts: Timestamp
    seq: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] | None = None
    lon: Lon | None = None
    lat: Lat | None = None
    battery: Annotated[Number, Field(ge=0, le=1)] | None = None


class VideoAlert(_Input):
    """`ingest.video.alerts`, keyed by camera_id."""

    alert_id: Id
    camera_id: Id
    algorithm: Algorithm
    confidence: Annotated[Number, Field(ge=0, le=1)]
    ts: Timestamp
    lon: Lon | None = None
    lat: Lat | None = None
    snapshot_url: Annotated[StrictStr, Field(max_length=2048)] | None = None
    bbox: Annotated[list[Number], Field(min_length=4, max_length=4)] | None = None
    object_count: Annotated[StrictInt, Field(ge=0)] | None = None


class ExternalRef(BaseModel):
    """Another platform's own case id (a 12345 hotline's, 数字城管's): kept on the event and the
    order, so every public change of the order goes back to that system (docs/integration.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    id: Id


class IncidentReport(_Input):
    """`ingest.reports` (and ``POST /api/v1/reports``), keyed by reporter_id."""

    report_id: Id
    channel: Channel = "grid_app"
    reporter_id: Id
    category: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    description: Annotated[StrictStr, Field(max_length=2000)] = ""
    ts: Timestamp
    lon: Lon | None = Field(None, description="lon and lat, or an address without them: the gazetteer "
                                              "locates it, or the order waits in triage (needs_location)")
    lat: Lat | None = None
    grid_code: Annotated[StrictStr, Field(pattern=r"^\d{15}$")] | None = None
    address: Annotated[StrictStr, Field(max_length=500)] | None = None
    photos: Annotated[list[Annotated[StrictStr, Field(max_length=2048)]], Field(max_length=20)] = []
    contact_phone: Annotated[StrictStr, Field(max_length=32)] | None = None
    external_ref: ExternalRef | None = Field(None, description="the case id of the platform it came from "
                                                               "(a gateway's report): status callbacks go back")


class DeviceStatus(_Input):
    """`ingest.device.status`, keyed by device_id: a platform's word on a device (cameras)."""

    device_id: Id
    status: Literal["online", "offline", "fault"]
    ts: Timestamp
    detail: Annotated[StrictStr, Field(max_length=500)] | None = None


# 区域预警的种类 (DESIGN §15): what an outside authority warns of (labels: enums.WARNING_KIND_ZH).
WarningKind = Literal["rainstorm", "flood", "typhoon", "gale", "heat", "cold_wave", "blizzard", "fog", "haze",
                      "thunderstorm", "hail", "road_icing", "frost", "drought", "sandstorm", "air",
                      "geological", "forest_fire"]
DistrictCode = Annotated[StrictStr, Field(pattern=r"^\d{6}$")]
StreetCode = Annotated[StrictStr, Field(pattern=r"^\d{9}$")]


class GeoPolygon(BaseModel):
    """A GeoJSON geometry (RFC 7946): a Polygon or MultiPolygon in WGS84 lon/lat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["Polygon", "MultiPolygon"]
    coordinates: Annotated[list[Any], Field(min_length=1, max_length=100)]


class WarningArea(BaseModel):
    """Where a warning holds: districts, streets and/or a polygon (their union)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    district_codes: Annotated[list[DistrictCode], Field(max_length=100)] = []
    street_codes: Annotated[list[StreetCode], Field(max_length=1000)] = []
    polygon: GeoPolygon | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> WarningArea:
        if not (self.district_codes or self.street_codes or self.polygon):
            raise ValueError("area needs district_codes, street_codes or a polygon")
        return self


class AreaWarning(BaseModel):
    """`ingest.warnings` (compacted), keyed by warning_id: an area warning from an outside
    authority (weather, water, environment).  A later record under the same id amends it
    (level, area, valid_to moved earlier) or, with ``cancelled``, withdraws it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    warning_id: Id
    issuer: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    kind: WarningKind
    level: WarningLevel
    area: WarningArea
    valid_from: Timestamp
    valid_to: Timestamp
    ts: Timestamp
    title: Annotated[StrictStr, Field(max_length=500)] | None = None
    cancelled: StrictBool = False

    @model_validator(mode="after")
    def _valid_span(self) -> AreaWarning:
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class RegistryRecord(BaseModel):
    """`registry.devices` (compacted; a null value retires the id)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    device_id: Id
    kind: Literal["sensor", "camera"]
    sensor_type: SensorType | None = None
    name: StrictStr | None = None
    lon: Lon
    lat: Lat
    owner_department: StrictStr | None = None
    status: Literal["active", "retired"] = "active"
    interval_seconds: float | None = Field(None, gt=0, description="the device's own reporting interval "
                                           "(overrides its sensor type's; 设备完好率)")


class Location(BaseModel):
    lon: float
    lat: float
    district_code: str = Field(pattern=r"^\d{6}$")
    street_code: str = Field(pattern=r"^\d{9}$")
    community_code: str = Field(pattern=r"^\d{12}$")
    grid_code: str = Field(pattern=r"^\d{15}$")


class SourceRef(BaseModel):
    topic: str
    partition: int
    offset: int
    extra: dict[str, Any] = Field(default_factory=dict,
                        description="unknown fields of the source record, kept as sent")


class CityEvent(BaseModel):
    """`events.normalized`, keyed by street code: one finding, normalised."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="deterministic from the source id")
    source: Source
    kind: Literal["alarm", "recovery", "report"]
    category: str
    category_name: str
    severity: Severity
    occurred_at: datetime
    ingested_at: datetime = Field(description="the source record's Kafka timestamp")
    location: Location
    device_id: str | None = None
    sensor_type: str | None = None
    camera_id: str | None = None
    alert_id: str | None = None
    algorithm: str | None = None
    report_id: str | None = None
    reporter_id: str | None = None
    channel: str | None = None
    asset_owner: str | None = Field(None, description="owner_department from the registry")
    value: float | None = None
    level: WarningLevel | None = Field(None, description="an alarm's warning level (预警等级), for "
                                                          "sensor rules that grade it")
    confidence: float | None = None
    evidence: list[str] = Field(default_factory=list)
    description: str = Field("", description="masked (脱敏)")
    address: str | None = None
    contact_phone: str | None = Field(None, description="masked form only")
    needs_location: bool = Field(False, description="a report whose address could not be located: its "
                                                    "location is a placeholder (the area its address names, "
                                                    "else the city's first district); it fuses with nothing "
                                                    "and its order waits in triage")
    external_ref: ExternalRef | None = Field(None, description="a report's case id on its own platform")
    source_ref: SourceRef


DeadLetterReason = Literal[
    "too_large", "invalid_utf8", "not_json", "not_object", "missing_field", "invalid_field",
    "unknown_device", "retired_device", "device_type_mismatch", "out_of_area",
    "future_timestamp", "unknown_category", "value_out_of_range", "missing_location",
    "wrong_key", "output_rejected", "internal_error", "callback_failed",
]


class DeadLetter(BaseModel):
    """`deadletter`, keyed by the original key: input that could not be used."""

    reason: DeadLetterReason
    detail: str = Field(description="what was wrong, for a person")
    field: str | None = Field(None, description="the field at fault, dotted path")
    source: Literal["iot", "video", "report", "registry", "command", "event", "device", "callback", "warning"]
    exception_type: str | None = Field(None, description="for internal_error: the exception's type "
                                                         "(its stack is in the worker's log)")
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None = None
    original_key_b64: str | None = None
    original_b64: str = Field(description="the original record bytes, base64 — only the first "
                                          "bytes when original_truncated (the whole record stays on "
                                          "its source topic for the topic's retention)")
    original_kept: Literal["masked", "full", "none"] = Field(
        "full", description="how original_b64 holds the original: masked (phone and ID-card numbers "
                            "masked, the default), full, or none (empty)")
    original_size: int = Field(description="the original record's length in bytes")
    original_truncated: bool = False
    original_sha256: str = Field("", description="SHA-256 of the whole original, hex")
    dead_at: datetime


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "iot_reading": IotReading,
    "video_alert": VideoAlert,
    "incident_report": IncidentReport,
    "registry_record": RegistryRecord,
    "device_status": DeviceStatus,
    "area_warning": AreaWarning,
    "city_event": CityEvent,
    "dead_letter": DeadLetter,
}


# -- work orders (issue 3) ----------------------------------------------------------

WorkOrderStatus = Literal["registered", "dispatched", "accepted", "handled", "closed", "cancelled", "merged"]
WORK_ORDER_STATUSES: tuple[str, ...] = get_args(WorkOrderStatus)
# Open (未结案): the lifecycle still runs — every status but the ends. The one list.
OPEN_STATUSES: tuple[str, ...] = ("registered", "dispatched", "accepted", "handled")
# Ended (终态): closed (结案), cancelled (作废), merged into another order (并单). The other list.
CLOSED_STATUSES: tuple[str, ...] = tuple(s for s in WORK_ORDER_STATUSES if s not in OPEN_STATUSES)


class Actor(BaseModel):
    id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    role: Literal["system", "operator", "department", "street", "grid", "gateway"]
    department: str | None = Field(None, description="role department: whose orders it may act on; role "
                                                      "street: its desk, street.<street_code>")
    street_code: str | None = Field(None, pattern=r"^\d{9}$", description="role street (属地): its street")
    grid_prefix: str | None = Field(None, pattern=r"^\d{6,15}$",
                                    description="role grid: the grid-code prefix it covers")


class EventRef(BaseModel):
    """One finding attached to a work order."""

    event_id: str
    source: Source
    kind: Literal["alarm", "recovery", "report"]
    category: str
    occurred_at: datetime
    finder: str | None = Field(None, description="device_id, camera_id or reporter_id")
    lon: float
    lat: float
    level: WarningLevel | None = None
    report_id: str | None = Field(None, description="a report's id: its reporter follows the order")
    evidence: list[str] = Field(default_factory=list, description="the evidence URLs this finding brought "
                                                                  "(a split moves them with it)")


class OrderExternalRef(BaseModel):
    """A platform's case kept on an order, with the report that brought it (docs/integration.md)."""

    system: str
    id: str
    report_id: str | None = None


Satisfaction = Literal["satisfied", "basically_satisfied", "unsatisfied"]


class Visit(BaseModel):
    """回访: what a reporter said of the outcome, recorded by an operator."""

    satisfaction: Satisfaction
    at: datetime
    by: str = Field(description="the operator who called back")
    report_id: str | None = None
    note: str = ""


AssistStatus = Literal["dispatched", "accepted", "handled", "released"]


class Assist(BaseModel):
    """One assisting department's part of an order (协办), with its own clocks."""

    department: str
    status: AssistStatus
    added_by: str = Field(description="what brought it in: routing:<rule>, emergency:<level>, "
                                      "operator:<id>")
    dispatched_at: datetime
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    released_at: datetime | None = None
    stage_started_at: datetime | None = Field(None, description="when its running stage began")
    accept_due_at: datetime | None = Field(None, description="set while dispatched")
    handle_due_at: datetime | None = Field(None, description="set while accepted")


class WorkOrder(BaseModel):
    """The full snapshot of one work order (工单/案卷)."""

    work_order_id: str = Field(description="WO-<fusion group>-<hash of the first event id>")
    version: int = Field(ge=1)
    status: WorkOrderStatus
    category: str
    category_name: str
    fusion_group: str
    priority: Severity
    department: str | None = Field(None, description="None: stays registered for triage")
    route_rule: str = Field(description="which routing rule decided the department")
    location: Location
    description: str = ""
    address: str | None = Field(None, description="the address of the first report that gave one "
                                                  "(masked like the description)")
    reporter_contact: str | None = Field(None, description="the contact phone of the first report that gave "
                                                           "one, masked (138****5678): never the clear number")
    needs_location: bool = Field(False, description="opened by a report whose address could not be located: "
                                                    "the location is a placeholder; registered for triage "
                                                    "(route_rule needs_location)")
    opened_at: datetime = Field(description="occurred_at of the first event")
    created_at: datetime
    source_ingested_at: datetime = Field(description="Kafka timestamp of the first event's source record")
    dispatched_at: datetime | None = None
    time_limit_basis: Literal["natural", "working"] = Field(
        "natural", description="limits in natural hours (自然时) or working hours (工作时) on the calendar")
    time_limit_hours: float = Field(description="the whole order's limit, extensions included")
    due_at: datetime = Field(description="结案 due: created_at + time_limit_hours on the basis")
    accept_limit_hours: float = Field(0, description="签收 stage limit, extensions included")
    handle_limit_hours: float = Field(0, description="处置 stage limit, extensions included")
    stage_started_at: datetime | None = Field(None, description="when the running stage (accept/handle) began")
    accept_due_at: datetime | None = Field(None, description="set while dispatched")
    handle_due_at: datetime | None = Field(None, description="set while accepted")
    supervision_steps: list[str] = Field(default_factory=list,
                                         description="supervision steps fired, as clock@share (e.g. accept@1.5)")
    last_recovery_at: datetime | None = Field(None, description="occurred_at of the latest sensor recovery")
    events: list[EventRef]
    evidence: list[str] = Field(default_factory=list)
    finders: list[str] = Field(default_factory=list)
    recovered_finders: list[str] = Field(default_factory=list)
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    cancelled_at: datetime | None = None
    merged_at: datetime | None = Field(None, description="when it was merged into another order (并单)")
    merged_into: str | None = Field(None, description="status merged: the order that took its findings")
    merged_from: list[str] = Field(default_factory=list, description="orders merged into this one")
    split_from: str | None = Field(None, description="the order this one was split from (拆单)")
    split_into: list[str] = Field(default_factory=list, description="orders split from this one")
    return_count: int = 0
    rework_count: int = 0
    extension_count: int = 0
    extended_hours: dict[str, float] = Field(
        default_factory=dict, description="hours added by extend per clock (order, accept, handle): "
                                          "kept when recategorise / reprioritise re-apply the limits")
    supervision_level: int = Field(0, ge=0, le=3, description="0 none, 1 street, 2 district, 3 city")
    assists: list[Assist] = Field(default_factory=list, description="assisting departments (协办)")
    warning_level: WarningLevel | None = Field(None, description="the highest level of its alarming sensors "
                                                                 "and of the area warnings it met")
    sensor_levels: dict[str, WarningLevel] = Field(default_factory=dict,
                                                   description="device_id → its current warning level")
    area_warnings: dict[str, WarningLevel] = Field(
        default_factory=dict, description="区域预警: warning_id → the level that area warning gave the order "
                                          "(at 立案 or escalating it while open); kept after the warning ends")
    emergency_level: EmergencyLevel | None = Field(None, description="应急响应级别, None: no emergency response")
    emergency_set_by: str | None = Field(None, description="rule:<category>@<trigger> or operator:<id>")
    escalations: list[str] = Field(default_factory=list,
                                   description="one-off escalations done, e.g. finders@5")
    visits: list[Visit] = Field(default_factory=list, description="回访 (reporter follow-up calls)")
    external_refs: list[OrderExternalRef] = Field(
        default_factory=list, description="the cases of other platforms (12345, 数字城管) this order answers: "
                                          "each hears the order's public changes (docs/integration.md)")
    notes: list[str] = Field(default_factory=list)
    applied_commands: list[str] = Field(default_factory=list, description="command_ids applied")


LifecycleAction = Literal["dispatch", "accept", "return", "handle", "verify", "reject_verification",
                          "cancel", "extend", "supervise", "comment", "assist", "release_assist",
                          "set_emergency_level", "visit", "recategorise", "reprioritise", "merge", "split"]


class Command(BaseModel):
    """`workorders.commands` (and ``POST /api/v1/workorders/{id}/commands``)."""

    model_config = ConfigDict(extra="forbid")

    command_id: Id = Field(description="idempotency key")
    work_order_id: Id
    action: LifecycleAction
    actor: Actor
    ts: Timestamp
    note: Annotated[StrictStr, Field(max_length=2000)] = ""
    department: StrictStr | None = Field(None, description="for dispatch, assist and release_assist; "
                                         "an operator's accept/handle/return of an assisting part")
    emergency_level: EmergencyLevel | Literal["none"] | None = Field(
        None, description="for set_emergency_level (none: end the emergency response)")
    satisfaction: Satisfaction | None = Field(None, description="for visit (回访)")
    report_id: Id | None = Field(None, description="for visit: the report whose reporter was called")
    evidence: Annotated[list[Annotated[StrictStr, Field(max_length=2048)]], Field(max_length=20)] = Field(
        [], description="URLs added to the order; for split: what moves to the new order (event ids, "
                        "report ids or evidence URLs of the order)")
    category: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        None, description="for recategorise: the new category")
    priority: Severity | None = Field(None, description="for reprioritise: the new priority")
    into: Id | None = Field(None, description="for merge: the work order that survives (this one "
                                              "becomes merged)")
    extend_minutes: Annotated[StrictInt, Field(gt=0, le=60 * 24 * 90)] | None = None


RejectionReason = Literal["duplicate_command", "not_allowed_in_state", "forbidden_role", "out_of_scope",
                          "missing_field", "unknown_department", "unknown_work_order", "assist_open",
                          "unknown_category", "invalid_field"]


class CommandRejection(BaseModel):
    """`workorders.rejected`: a command that was refused, with the reason."""

    command: Command
    reason: RejectionReason
    detail: str
    status: WorkOrderStatus | None = None
    at: datetime


# 督办 levels, lowest first: street (街道), district (区), city (市).
SupervisionLevel = Literal["street", "district", "city"]


class SupervisionInfo(BaseModel):
    """Which clock and step raised an automatic supervision (督办)."""

    clock: Literal["order", "accept", "handle"]
    department: str | None = Field(None, description="an assisting department's part; None: the lead's")
    share: float = Field(description="share of the clock's limit, 1.0 = due")
    level: SupervisionLevel
    due_at: datetime


class Escalation(BaseModel):
    """What an ``escalated`` / ``deescalated`` change moved, and why."""

    reason: Literal["warning_level", "finders", "operator", "alarm_cleared", "area_warning"]
    warning_from: WarningLevel | None = None
    warning_to: WarningLevel | None = None
    priority_from: Severity
    priority_to: Severity
    emergency_from: EmergencyLevel | None = None
    emergency_to: EmergencyLevel | None = None
    area_warning: str | None = Field(None, description="for reason area_warning: the warning_id (区域预警)")


ChangeType = Literal["created", "dispatched", "evidence_added", "recovery_recorded", "accepted",
                     "returned", "handled", "verified", "verification_rejected", "cancelled",
                     "extended", "supervised", "commented", "escalated", "deescalated",
                     "assist_added", "assist_accepted", "assist_handled", "assist_returned",
                     "assist_released", "visited", "recategorised", "reprioritised", "merged",
                     "merge_absorbed", "split"]


class MergeInfo(BaseModel):
    """What a merge (并单) moved: on the duplicate's ``merged`` change and the survivor's
    ``merge_absorbed``."""

    duplicate: str = Field(description="the order merged away (now status merged)")
    survivor: str = Field(description="the order that took its findings")
    events: list[str] = Field(description="the event ids that moved")


class SplitInfo(BaseModel):
    """What a split (拆单) moved: on the original's ``split`` change and the new order's
    ``created``."""

    original: str
    new: str
    events: list[str] = Field(description="the event ids that moved")
    evidence: list[str] = Field(description="the evidence URLs that moved")


class WorkOrderChange(BaseModel):
    """`workorders.events` (and the records on `dispatch.<department>` and
    `command.emergency`): one change."""

    work_order_id: str
    version: int
    type: ChangeType
    at: datetime
    actor: Actor
    snapshot: WorkOrder
    supervision: SupervisionInfo | None = Field(None, description="for type supervised by the timers")
    role: Literal["lead", "assist"] | None = Field(
        None, description="on dispatch.<department>: whether that department leads (主办) or assists (协办)")
    part: str | None = Field(None, description="assist_*: the assisting department whose part changed")
    escalation: Escalation | None = Field(None, description="for escalated / deescalated")
    merge: MergeInfo | None = Field(None, description="for merged / merge_absorbed")
    split: SplitInfo | None = Field(None, description="for split, and created of an order split off")


class MergeTransfer(BaseModel):
    """Internal, on the fusion inbox (keyed by fusion group): one hop of a merge between
    two orders that may live on different partitions (docs/lifecycle.md "Merge and split").
    ``close``: to the duplicate's partition, after the survivor's was found open;
    ``absorb``: to the survivor's partition, with the duplicate as it was before it closed."""

    transfer: Literal["close", "absorb"]
    command: Command
    duplicate: WorkOrder | None = Field(None, description="absorb: the duplicate before the merge")
    visited: list[str] = Field(default_factory=list, description="absorb: orders passed through "
                                                                 "(a survivor merged on meanwhile)")
    at: datetime


class OrderStep(BaseModel):
    """One change of an order, as its timeline shows it."""

    version: int
    type: str
    at: datetime
    actor: Actor
    status: str = Field(description="the order's status after the change")
    supervision: SupervisionInfo | None = None
    note: str | None = Field(None, description="the note this change added, if any")
    part: str | None = Field(None, description="assist_*: the assisting department")
    escalation: Escalation | None = None


class OrderState(BaseModel):
    """`workorders.state` (compacted, key work_order_id): an order's latest snapshot with
    its timeline, so a reader starts from it instead of replaying every change.  Written
    with every change; an open order's record is written again at least daily, so every
    open order lies in the topic's last day (readers start at a time offset)."""

    work_order_id: str
    version: int
    at: datetime = Field(description="the latest change's time")
    snapshot: WorkOrder
    steps: list[OrderStep] = Field(description="the changes in version order, at most 30: beyond "
                                               "that evidence steps are dropped first, then the "
                                               "oldest; see steps_omitted")
    steps_omitted: int = 0


class ReporterNotification(BaseModel):
    """`notifications.reporters` (key reporter_id): what became of a report (反馈)."""

    reporter_id: str
    report_id: str
    work_order_id: str
    version: int = Field(description="the order's version this tells of")
    change: str = Field(description="the change type")
    status: WorkOrderStatus
    message: str = Field(description="for the reporter, in Chinese")
    at: datetime


WIRE_MODELS.update({"work_order": WorkOrder, "work_order_change": WorkOrderChange,
                    "order_state": OrderState, "command": Command, "command_rejection": CommandRejection,
                    "reporter_notification": ReporterNotification, "merge_transfer": MergeTransfer})
