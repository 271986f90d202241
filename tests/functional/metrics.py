"""The in-process Prometheus registry as the worker's /metrics would show it. Several
tests share one process (and pytest-xdist puts other files beside them), so a test reads
what changed while it ran, not the totals."""

from __future__ import annotations

from prometheus_client import REGISTRY


def total(name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(s.value for m in REGISTRY.collect() for s in m.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


class Deltas:
    """``d = Deltas(); …; d("name", label=…)``: how far a sample moved since ``d`` was made."""

    def __init__(self):
        self.before = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for m in REGISTRY.collect() for s in m.samples}

    def __call__(self, name: str, **labels: str) -> float:
        now = total(name, **labels)
        then = sum(v for (n, lab), v in self.before.items()
                   if n == name and all(dict(lab).get(k) == val for k, val in labels.items()))
        return now - then
