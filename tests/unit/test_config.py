"""config/ is validated data: the shipped files load, bad files are refused clearly."""

import shutil

import pytest
from pydantic import ValidationError

from citybrain.config import Config
from citybrain.paths import config_dir


def test_shipped_config_loads_and_matches_the_contract():
    cfg = Config()
    depts = {d.code for d in cfg.taxonomy.departments}
    assert depts == {"city_mgmt", "water", "fire", "emergency", "police", "traffic",
                     "environment", "housing", "gas_utility", "power_utility", "health"}
    cats = {c.code: c for c in cfg.taxonomy.categories}
    assert len(cats) == 21          # DESIGN §4a's twenty and §13's device_fault (设备故障)
    assert cats["device_fault"].department == ""
    assert cats["gas_leak"].department == "gas_utility" and cats["gas_leak"].priority == "urgent"
    assert cats["other"].department == ""
    assert cfg.taxonomy.for_algorithm("forest_smoke").code == "forest_fire"
    assert cfg.taxonomy.for_sensor("cable_temperature").code == "electrical_fire_risk"
    assert set(cfg.video_thresholds) == set(cfg.taxonomy._by_algorithm)


def test_environment_overrides(monkeypatch):
    cfg = Config(env={"CITYBRAIN_TOPIC_PREFIX": "t1.", "CITYBRAIN_WEB_PORT": "7001"})
    assert cfg.settings.kafka.topic_prefix == "t1." and cfg.settings.worker.web_port == 7001


def test_unknown_department_in_a_category_is_refused(tmp_path):
    shutil.copytree(config_dir(), tmp_path / "c")
    p = tmp_path / "c" / "categories.toml"
    p.write_text(p.read_text().replace('department = "water"', 'department = "navy"', 1))
    with pytest.raises(ValidationError, match="navy"):
        _ = Config(tmp_path / "c").taxonomy


def test_unknown_setting_is_refused(tmp_path):
    shutil.copytree(config_dir(), tmp_path / "c")
    p = tmp_path / "c" / "citybrain.toml"
    p.write_text(p.read_text().replace("partitions = 6", "partitons = 6"))
    with pytest.raises(ValidationError, match="partitons"):
        Config(tmp_path / "c")


def test_the_extra_field_allow_list_is_named_as_the_contract_names_it(tmp_path):
    # DESIGN §16: [ingest] keep_extra_fields; the old name is an unknown setting now.
    assert Config().settings.ingest.keep_extra_fields == []
    shutil.copytree(config_dir(), tmp_path / "c")
    p = tmp_path / "c" / "citybrain.toml"
    p.write_text(p.read_text().replace("keep_extra_fields = []", 'keep_extra_fields = ["firmware"]'))
    assert Config(tmp_path / "c").settings.ingest.keep_extra_fields == ["firmware"]
    p.write_text(p.read_text().replace("keep_extra_fields", "extra_allow"))
    with pytest.raises(ValidationError, match="extra_allow"):
        Config(tmp_path / "c")


def test_a_worker_hosts_both_stages_unless_told_which():
    assert Config(env={}).settings.worker.stages == ["normalise", "fuse"]
    assert Config(env={"CITYBRAIN_STAGES": "fuse"}).settings.worker.stages == ["fuse"]
    assert Config(env={"CITYBRAIN_STAGES": " normalise , fuse "}).settings.worker.stages == ["normalise", "fuse"]


@pytest.mark.parametrize("given, fault", [("fuze", "fuze"), ("fuse,fuse", "at most once"), (",", "input_value=','")])
def test_a_stage_list_that_names_no_stage_or_one_twice_is_refused(given, fault):
    with pytest.raises(ValidationError, match=fault):
        Config(env={"CITYBRAIN_STAGES": given})


def test_a_worker_serves_the_console_unless_told_not_to():
    assert Config(env={}).settings.worker.console is True
    stages_only = Config(env={"CITYBRAIN_CONSOLE": "false"}).settings.worker
    assert (stages_only.console, stages_only.stages) == (False, ["normalise", "fuse"])
    console_only = Config(env={"CITYBRAIN_STAGES": "none"}).settings.worker
    assert (console_only.console, console_only.stages) == (True, [])


def test_a_process_with_no_stage_and_no_console_is_refused():
    with pytest.raises(ValidationError, match="would host nothing"):
        Config(env={"CITYBRAIN_STAGES": "None", "CITYBRAIN_CONSOLE": "0"})
