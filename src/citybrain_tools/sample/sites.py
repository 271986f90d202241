"""Named places of the SAMPLE city used by the scripted incidents (all synthetic)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    name: str
    lon: float
    lat: float

    def offset(self, east_m: float, north_m: float) -> tuple[float, float]:
        """The point ``east_m``/``north_m`` metres away (flat-earth; fine at city scale)."""
        dlat = north_m / 111_195.0
        dlon = east_m / (111_195.0 * math.cos(math.radians(self.lat)))
        return round(self.lon + dlon, 7), round(self.lat + dlat, 7)


UNDERPASS = Site("大街下穿隧道 Dajie underpass", 117.8625, 36.7935)
EAST_DIP = Site("东环路低洼路段 East-ring dip (2 km east)", 117.8849, 36.7935)
CABLE_ROOM = Site("永安商厦配电间 Yong'an mall switch room", 117.8520, 36.8120)
RESTAURANT = Site("丝绸路餐饮店 Silk Road restaurant", 117.8780, 36.7850)

# Scenario devices: (device_id, kind, sensor_type, site, east_m, north_m, owner)
# A water-main pressure gauge on a gateway that reports every 5 s (its own interval in the
# registry): in the demo it falls silent for a minute and comes back (设备完好率).
GATEWAY_GAUGE, GATEWAY_INTERVAL = "PIP-GW-01", 5.0

SCENARIO_DEVICES = [
    ("WLV-UP-01", "sensor", "water_level", UNDERPASS, 0, 0, None),
    ("WLV-UP-02", "sensor", "water_level", UNDERPASS, 35, 10, None),
    ("WLV-UP-03", "sensor", "water_level", UNDERPASS, -30, -25, None),
    ("CAM-UP-01", "camera", None, UNDERPASS, 20, 40, None),
    ("CAM-UP-02", "camera", None, UNDERPASS, -45, 15, None),
    ("WLV-EP-01", "sensor", "water_level", EAST_DIP, 0, 0, None),
    ("CAM-EP-01", "camera", None, EAST_DIP, 25, -20, None),
    ("CBT-FIRE-01", "sensor", "cable_temperature", CABLE_ROOM, 0, 0, "power_utility"),
    ("RCM-FIRE-01", "sensor", "residual_current", CABLE_ROOM, 5, 0, None),
    ("SMK-FIRE-01", "sensor", "smoke", CABLE_ROOM, 8, 4, None),
    ("CAM-FIRE-01", "camera", None, CABLE_ROOM, 30, 30, None),
    ("GAS-LEAK-01", "sensor", "gas_lel", RESTAURANT, 0, 0, "gas_utility"),
    (GATEWAY_GAUGE, "sensor", "pipe_pressure", EAST_DIP, -60, 40, "water"),
]
