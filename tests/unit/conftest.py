import time

import pytest

from citybrain.config import Config
from citybrain.domain.normalize import IngestLimits, Normalizer, RecordMeta
from citybrain.wire.models import RegistryRecord
from citybrain_tools.sample.registry_builder import load


@pytest.fixture(scope="session")
def config():
    return Config()


@pytest.fixture(scope="session")
def registry(config):
    return {r["device_id"]: RegistryRecord.model_validate(r) for r in load(config.registry_path)}


@pytest.fixture(scope="session")
def normalizer(config, registry):
    return Normalizer(taxonomy=config.taxonomy, sensor_rules=config.sensor_rules,
                      video_thresholds=config.video_thresholds, city=config.city_map,
                      registry=registry.get, limits=IngestLimits(65536, 300))


@pytest.fixture(scope="session")
def meta():
    def make(topic="ingest.iot.readings", key=None, offset=0, timestamp=None):
        return RecordMeta(topic, 0, offset, timestamp or time.time(), key)
    return make
