"""Routing (分类分办): asset owner > most specific override > category default."""

import pytest

from citybrain.domain.routing import Router, RoutingConfig

DAJIE = ("370306002001016", "370306002001", "370306002", "370306")
BEIJIAO = ("370306100200001", "370306100200", "370306100", "370306")
NIGHT_MARKET = ("370306002002005", "370306002002", "370306002", "370306")


def test_category_default(config):
    r = config.router.route("waterlogging", DAJIE)
    assert (r.department, r.priority, r.rule) == ("water", "high", "category:waterlogging")


def test_area_override_by_street(config):
    r = config.router.route("waterlogging", BEIJIAO)
    assert r.department == "emergency" and r.rule == "override:370306100:waterlogging"
    assert config.router.route("fire", BEIJIAO).department == "fire"   # other categories untouched


def test_priority_override_by_community(config):
    r = config.router.route("street_vending", NIGHT_MARKET)
    assert (r.department, r.priority) == ("city_mgmt", "normal")
    assert config.router.route("street_vending", DAJIE).priority == "low"


def test_asset_owner_wins(config):
    r = config.router.route("electrical_fire_risk", DAJIE, asset_owner="power_utility")
    assert r.department == "power_utility" and r.rule == "asset_owner:power_utility"
    r = config.router.route("waterlogging", BEIJIAO, asset_owner="water")
    assert r.department == "water"
    # An owner that is not a department of ours is ignored, not trusted.
    assert config.router.route("fire", DAJIE, asset_owner="acme").department == "fire"


def test_unroutable_category_has_no_department(config):
    r = config.router.route("other", DAJIE)
    assert r.department is None and r.priority == "normal"


def test_most_specific_override_wins(config):
    cfg = RoutingConfig.model_validate({
        "defaults": {},
        "override": [{"area": "370306", "category": "*", "department": "police"},
                     {"area": "370306002", "category": "noise", "department": "housing"},
                     {"area": "370306002001", "category": "*", "department": "health"}]})
    router = Router(cfg, config.taxonomy)
    assert router.route("noise", DAJIE).department == "health"        # 12 digits beat 9
    assert router.route("noise", NIGHT_MARKET).department == "housing"
    assert router.route("fire", NIGHT_MARKET).department == "police"


def test_bad_routing_config_is_refused(config):
    with pytest.raises(ValueError, match="navy"):
        Router(RoutingConfig.model_validate({
            "defaults": {},
            "override": [{"area": "370306", "department": "navy"}]}), config.taxonomy)
    with pytest.raises(ValueError, match="neither"):
        RoutingConfig.model_validate({
            "defaults": {},
            "override": [{"area": "370306"}]})


def test_a_route_to_the_street_desk_goes_to_the_street_of_the_location(config):
    """属地处置 (DESIGN §13): the SAMPLE sends street vending in 青年路街道 to its street desk."""
    router = config.router
    route = router.route("street_vending", ("370306003001001", "370306003001", "370306003", "370306"))
    assert route.department == "street.370306003" and route.rule == "override:370306003:street_vending"
    elsewhere = router.route("street_vending", ("370306005001001", "370306005001", "370306005", "370306"))
    assert elsewhere.department == "city_mgmt"
    assert "street.370306003" in config.desks and config.desks["street.370306003"].startswith("青年路")


def test_a_district_wide_override_reaches_every_street_of_that_district_only(config):
    """A city of several districts: the SAMPLE sends 桓台县's overflowing bins to the street
    desk of wherever they are; 张店区's go to the category default."""
    router = config.router
    for street in ("370321100", "370321002"):
        codes = (f"{street}200001", f"{street}200", street, "370321")
        assert router.route("garbage_overflow", codes).department == f"street.{street}"
    zhangdian = router.route("garbage_overflow", ("370303001001001", "370303001001", "370303001", "370303"))
    assert zhangdian.department == config.taxonomy.category("garbage_overflow").department
    assert {f"street.{s}" for s in config.city_map.street_names} <= set(config.desks)
