"""趋势研判: each category × district's orders opened on a day against its own baseline —
the same weekday of the previous ``weeks`` weeks (DESIGN §15).

z = (count − mean) / max(sd, min_sd), sd the population standard deviation of the
baseline days (a weekday with no orders counts 0). ``min_sd`` keeps a quiet row (the
same count every week, sd 0) from calling one more order an anomaly of infinite z.
An anomaly when |z| > k.

Pure: day counts in (the day windows' ``opened`` summed over streets), rows out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrendSettings(BaseModel):
    """``config/analytics.toml`` ``[trends]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    k: float = Field(3.0, gt=0, le=20, description="an anomaly beyond k standard deviations")
    weeks: int = Field(8, ge=2, le=52, description="baseline: the same weekday of this many weeks before")
    min_sd: float = Field(1.0, gt=0, le=1000, description="the least standard deviation z divides by")


def baseline_days(day: date, weeks: int) -> list[date]:
    """The same weekday of the ``weeks`` weeks before ``day``, oldest first."""
    return [day - timedelta(weeks=w) for w in range(weeks, 0, -1)]


def trend(count: int, baseline: list[int], settings: TrendSettings) -> dict[str, Any]:
    mean = sum(baseline) / len(baseline)
    sd = math.sqrt(sum((b - mean) ** 2 for b in baseline) / len(baseline))
    z = (count - mean) / max(sd, settings.min_sd)
    return {"count": count, "baseline_mean": round(mean, 4), "baseline_sd": round(sd, 4),
            "z": round(z, 4), "anomaly": abs(z) > settings.k}


def trends(day: date, counts: Mapping[tuple[date, str, str], int], settings: TrendSettings) -> list[dict[str, Any]]:
    """``counts``: (day, category, district) → orders opened that day. One row per
    category × district seen on ``day`` or any baseline day; the largest |z| first."""
    days = baseline_days(day, settings.weeks)
    rows = {(c, d) for (when, c, d) in counts if when == day or when in days}
    out = []
    for category, district in rows:
        row = trend(counts.get((day, category, district), 0),
                    [counts.get((b, category, district), 0) for b in days], settings)
        out.append({"category": category, "district": district, **row})
    out.sort(key=lambda r: (-abs(r["z"]), r["category"], r["district"]))
    return out
