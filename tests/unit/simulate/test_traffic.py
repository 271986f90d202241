"""The simulator is deterministic for a seed and produces every kind of traffic."""

from collections import Counter

import orjson

from citybrain.sample.registry_builder import load
from citybrain.simulate.traffic import MALFORMED, CitySimulator


def make(config, seed=5, duration=200, rate=300):
    return CitySimulator(load(config.registry_path), seed=seed, rate=rate, duration=duration,
                         start=1_800_000_000.0, malformed_share=0.02)


def test_same_seed_same_records(config):
    a = [(r.source, r.key, r.value, r.at) for r in make(config, duration=20).records()]
    b = [(r.source, r.key, r.value, r.at) for r in make(config, duration=20).records()]
    assert a == b and len(a) >= 20 * 300
    c = [(r.source, r.key, r.value) for r in make(config, seed=6, duration=20).records()]
    assert a[:100] != c[:100]


def test_traffic_mix_and_scenarios(config):
    records = list(make(config).records())
    labels = Counter(r.label for r in records)
    assert labels["normal"] > 0.8 * len(records)
    assert labels["drift"] and labels["flap"] and labels["duplicate"]
    for reason in MALFORMED:
        assert labels[f"malformed:{reason}"] > 0, reason
    for scenario in ("rainstorm", "gas_leak", "cable_fire"):
        assert labels[f"scenario:{scenario}"] > 0, scenario
    assert labels["scenario:device_fault"] == 2          # the camera's fault and its recovery
    sources = Counter(r.source for r in records)
    assert sources["iot"] > sources["video"] > sources["report"] > 0
    times = [r.at for r in records]
    assert all(0 <= t < 201 for t in times)


def test_rainstorm_gauges_rise_past_the_alarm_threshold_and_hold(config):
    records = [r for r in make(config).records() if r.key == b"WLV-UP-01"]
    values = [orjson.loads(r.value)["value"] for r in records]
    above = [r.at for r, v in zip(records, values) if v > 0.15]
    assert above and above[-1] - above[0] >= 60   # long enough to raise the alarm


def test_background_leaves_scripted_devices_alone(config):
    scripted = {b"WLV-UP-01", b"GAS-LEAK-01", b"CAM-UP-01"}
    for r in make(config, duration=5).records():   # before any scenario starts
        assert r.key not in scripted
