"""schemas/ is generated from the wire models: fail when they drift."""

import json

from citybrain.paths import SCHEMAS_DIR
from citybrain.wire.models import WIRE_MODELS, CityEvent
from citybrain.wire.schemas import drifted, render_all


def test_schema_files_match_the_models():
    bad = drifted(SCHEMAS_DIR)
    assert not bad, f"schemas drifted: {bad}; run `make schemas` (citybrain schemas --write)"


def test_every_wire_model_has_a_schema_file():
    assert set(render_all()) == {f"{n}.schema.json" for n in WIRE_MODELS}
    assert {p.name for p in SCHEMAS_DIR.glob("*.schema.json")} == set(render_all())


def test_drift_is_detected(tmp_path):
    for name, text in render_all().items():
        (tmp_path / name).write_text(text)
    assert drifted(tmp_path) == []
    data = json.loads((tmp_path / "city_event.schema.json").read_text())
    data["properties"].pop("severity")
    (tmp_path / "city_event.schema.json").write_text(json.dumps(data))
    assert drifted(tmp_path) == ["city_event.schema.json"]


def test_city_event_schema_has_the_contract_fields():
    props = json.loads(render_all()["city_event.schema.json"])["properties"]
    for field in ("event_id", "source", "kind", "category", "severity", "occurred_at",
                  "ingested_at", "location", "evidence", "description", "source_ref"):
        assert field in props
    assert set(CityEvent.model_fields) == set(props)
