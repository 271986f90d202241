"""``config/analytics.toml``: the 研判 settings in one file (DESIGN §15) — the windows
(domain/aggregates.py), trends (domain/trends.py) and 高发 hotspots (domain/hotspots.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from citybrain.domain.aggregates import WindowSettings
from citybrain.domain.hotspots import HotspotConfig
from citybrain.domain.trends import TrendSettings


class AnalyticsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    windows: WindowSettings = WindowSettings()
    trends: TrendSettings = TrendSettings()
    hotspots: HotspotConfig = Field(default_factory=HotspotConfig)
