"""The gazetteer (地名地址库): free Chinese address text → ranked named places of the city.

Built from the city layer — every district (区县), street (街道/镇), community (社区/村) and
grid (网格) by name, with its codes and a representative point of its polygon (the union
of its grids: a point inside it, not merely its centroid) — plus ``config/places.toml``:
roads (name, street or district, a line of points) and places (name, aliases, a point).

``lookup(text)`` finds every name that occurs in the text and ranks them:

- **longest wins**: a name found inside a longer name found at the same spot is dropped
  ("青年路" inside "青年路街道", "王村一村" inside "王村一村1号网格");
- **most specific wins** at equal length: grid > place > road > community > street > district;
- **a district named narrows the rest**: when the text names one or more districts, candidates
  in other districts are dropped; a candidate lying in a street or district the text names
  scores higher;
- a road is one point: its midpoint (half-way along the line). **House numbers are not
  resolved**: "青年路88号" is 青年路's midpoint, whatever the number.

``score`` is 10 per character matched, plus the kind's specificity (1..6), plus 5 per named
district or street the candidate lies in, less 2 when the match was an alias.

``locate(text)`` returns the best candidate only when it is unambiguous enough to put a
report on the map (the rule, ``locate``'s docstring): otherwise the report needs a location
(``needs_location``) from a person.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shapely.geometry import LineString, Point
from shapely.ops import unary_union

from citybrain.domain.geo import CityMap

Kind = Literal["district", "street", "community", "grid", "road", "place"]
SPECIFICITY: dict[str, int] = {"district": 1, "street": 2, "community": 3, "road": 4, "place": 5, "grid": 6}
# What locate() accepts as a report's location: a street or a district is several km across.
LOCATABLE: frozenset[str] = frozenset({"grid", "place", "road", "community"})
AREAS: frozenset[str] = frozenset({"district", "street", "community", "grid"})   # the city layer's
PER_CHAR, PER_NAMED_ANCESTOR, ALIAS_PENALTY = 10, 5, 2
# locate(): the best must beat any runner-up that is not an ancestor of it by this much
# (one more character matched).
MARGIN = PER_CHAR
CODE_KEYS = ("district_code", "street_code", "community_code", "grid_code")


class RoadSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def district_code(self) -> str | None: ...
    @property
    def street_code(self) -> str | None: ...
    @property
    def points(self) -> Sequence[Sequence[float]]: ...


class PlaceSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def lon(self) -> float: ...
    @property
    def lat(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    kind: Kind
    codes: dict[str, str]
    lon: float
    lat: float
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    kind: Kind
    codes: dict[str, str]
    lon: float
    lat: float
    score: int
    matched: str        # the text that matched (the name or an alias)
    start: int = field(default=0, compare=False)   # where in the (normalised) text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "codes": self.codes, "lon": self.lon, "lat": self.lat,
                "score": self.score, "matched": self.matched}

    def within(self, other: Candidate) -> bool:
        """This candidate lies in ``other`` (other is an ancestor, or the same area)."""
        return other.kind in AREAS and all(self.codes.get(k) == v for k, v in other.codes.items())


def normalise(text: str) -> str:
    """NFKC (full-width digits and letters → ASCII), whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _district_short(name: str) -> str | None:
    # 周村区 → 周村, 桓台县 → 桓台 (people drop the suffix); never a single character.
    for suffix in ("区", "县", "市"):
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return None


class Gazetteer:
    def __init__(self, city: CityMap, roads: Iterable[RoadSpec] = (), places: Iterable[PlaceSpec] = ()):
        self.city = city
        entries: list[Entry] = []
        by_street: dict[str, list[Any]] = {}
        by_community: dict[str, list[Any]] = {}
        by_district: dict[str, list[Any]] = {}
        for code in city.grid_codes:
            loc = city.grid(code)
            assert loc is not None
            poly = city.grid_polygon(code)
            by_street.setdefault(loc.street_code, []).append(poly)
            by_community.setdefault(loc.community_code, []).append(poly)
            by_district.setdefault(loc.district_code, []).append(poly)
            p = poly.representative_point()
            entries.append(Entry(city.grid_names.get(code, code), "grid", _codes(loc.district_code, loc.street_code,
                                 loc.community_code, code), p.x, p.y))
        for code, name in city.district_names.items():
            if code not in by_district:
                continue
            p = unary_union(by_district[code]).representative_point()
            short = _district_short(name)
            entries.append(Entry(name, "district", _codes(code), p.x, p.y, (short,) if short else ()))
        for code, name in city.street_names.items():
            if code not in by_street:
                continue
            p = unary_union(by_street[code]).representative_point()
            entries.append(Entry(name, "street", _codes(city.district_of(code), code), p.x, p.y))
        for code, name in city.community_names.items():
            if code not in by_community:
                continue
            p = unary_union(by_community[code]).representative_point()
            street = code[:9]
            entries.append(Entry(name, "community", _codes(street[:6], street, code), p.x, p.y))
        for road in roads:
            entries.append(self._road(road))
        for place in places:
            where = city.locate(place.lon, place.lat)
            if where is None:
                raise ValueError(f"places.toml: place {place.name} ({place.lon}, {place.lat}) lies outside "
                                 "every grid of the city")
            entries.append(Entry(normalise(place.name), "place", _codes(where.district_code, where.street_code,
                                 where.community_code, where.grid_code), place.lon, place.lat,
                                 tuple(normalise(a) for a in place.aliases)))
        self.entries = entries
        # name → entries bearing it (as name or alias); names shared by several entries
        # (two 人民医院 in two districts) are kept: ranking and narrowing tell them apart.
        self._names: dict[str, list[tuple[Entry, bool]]] = {}
        for e in entries:
            self._names.setdefault(normalise(e.name), []).append((e, False))
            for a in e.aliases:
                if a and a != e.name:
                    self._names.setdefault(a, []).append((e, True))
        self._by_first: dict[str, list[str]] = {}
        for n in sorted(self._names, key=len, reverse=True):
            self._by_first.setdefault(n[0], []).append(n)

    def _road(self, road: RoadSpec) -> Entry:
        pts = [(float(p[0]), float(p[1])) for p in road.points]
        mid = LineString(pts).interpolate(0.5, normalized=True) if len(pts) > 1 else Point(pts[0])
        where = self.city.locate(mid.x, mid.y)
        if where is None:
            raise ValueError(f"places.toml: road {road.name}: its midpoint ({mid.x:.6f}, {mid.y:.6f}) lies outside "
                             "every grid of the city")
        for lon, lat in pts:
            at = self.city.locate(lon, lat)
            if at is None:
                raise ValueError(f"places.toml: road {road.name}: point ({lon}, {lat}) lies outside every grid")
            if road.street_code and at.street_code != road.street_code:
                raise ValueError(f"places.toml: road {road.name}: point ({lon}, {lat}) lies in street "
                                 f"{at.street_code}, not its street {road.street_code}")
            district = road.district_code or (road.street_code or "")[:6]
            if at.district_code != district:
                raise ValueError(f"places.toml: road {road.name}: point ({lon}, {lat}) lies in district "
                                 f"{at.district_code}, not {district}")
        codes = (_codes(road.street_code[:6], road.street_code) if road.street_code
                 else _codes(road.district_code or where.district_code))
        return Entry(normalise(road.name), "road", codes, mid.x, mid.y, tuple(normalise(a) for a in road.aliases))

    # -- lookups -------------------------------------------------------------------

    def _matches(self, text: str) -> list[Candidate]:
        found: list[Candidate] = []
        for i, ch in enumerate(text):
            for n in self._by_first.get(ch, ()):
                if text.startswith(n, i):
                    for entry, alias in self._names[n]:
                        found.append(Candidate(entry.name, entry.kind, entry.codes, entry.lon, entry.lat,
                                               len(n) * PER_CHAR + SPECIFICITY[entry.kind]
                                               - (ALIAS_PENALTY if alias else 0), n, i))
        # Longest wins: drop a match lying inside a longer match of another name.
        spans = {(c.start, c.start + len(c.matched)) for c in found}
        kept = [c for c in found
                if not any(s <= c.start and c.start + len(c.matched) <= e and e - s > len(c.matched)
                           for s, e in spans)]
        # One candidate per entry: its best match.
        best: dict[tuple[str, str, tuple[tuple[str, str], ...]], Candidate] = {}
        for c in kept:
            key = (c.kind, c.name, tuple(sorted(c.codes.items())))
            if key not in best or c.score > best[key].score:
                best[key] = c
        return list(best.values())

    def lookup(self, text: str, limit: int = 10) -> list[Candidate]:
        """Ranked candidates for ``text``, best first (score, then specificity, then name)."""
        norm = normalise(text)
        if not norm:
            return []
        found = self._matches(norm)
        districts = {c.codes["district_code"] for c in found if c.kind == "district"}
        streets = {c.codes["street_code"] for c in found if c.kind == "street"}
        ranked: list[Candidate] = []
        for c in found:
            if districts and c.codes.get("district_code") not in districts:
                continue   # the text names another district
            bonus = 0
            if c.kind != "district" and c.codes.get("district_code") in districts:
                bonus += PER_NAMED_ANCESTOR
            if c.kind not in ("district", "street") and c.codes.get("street_code") in streets:
                bonus += PER_NAMED_ANCESTOR
            ranked.append(Candidate(c.name, c.kind, c.codes, c.lon, c.lat, c.score + bonus, c.matched, c.start))
        ranked.sort(key=lambda c: (-c.score, -SPECIFICITY[c.kind], c.name, sorted(c.codes.items())))
        return ranked[:max(limit, 0)]

    def locate(self, text: str) -> Candidate | None:
        """The best *locatable* candidate, when it is unambiguous enough to place a report:

        1. locatable: a grid, place, road or community (a street or a district alone is
           several kilometres across: not a location);
        2. every other candidate ranked above it, or within ``MARGIN`` below it (one character
           matched), is an area of the city layer containing it (its district, street or
           community, named too: "青年路街道青年路5号") — not a rival;
        otherwise None: the report ``needs_location`` from a person."""
        ranked = self.lookup(text, limit=50)
        best = next((c for c in ranked if c.kind in LOCATABLE), None)
        if best is None:
            return None
        for other in ranked:
            if other is best or other.score <= best.score - MARGIN:
                continue
            if not best.within(other):
                return None
        return best


    def placeholder(self, text: str) -> Candidate:
        """Where a report whose address ``locate`` refused is put while it waits in triage
        (needs_location): the best candidate of any kind (the street or district its address
        names), else the city's first district (by code) — a placeholder, never a location."""
        ranked = self.lookup(text, limit=1)
        if ranked:
            return ranked[0]
        first = min((e for e in self.entries if e.kind == "district"), key=lambda e: e.codes["district_code"])
        return Candidate(first.name, first.kind, first.codes, first.lon, first.lat, 0, "")


def _codes(district: str, street: str | None = None, community: str | None = None,
           grid: str | None = None) -> dict[str, str]:
    values = (district, street, community, grid)
    return {k: v for k, v in zip(CODE_KEYS, values, strict=True) if v}
