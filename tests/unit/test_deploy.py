"""Deployment artefacts: the alert rules (promtool), the dashboard (generated, no drift;
rows, variables, every exported metric charted), Alertmanager (amtool), docker-compose.yml
(structure) and deploy/k8s (Kubernetes schemas)."""

import json
import re
import subprocess

import kubernetes_validate
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from citybrain import metrics, observability
from citybrain.paths import PROJECT_ROOT

from ..deploy_files import hosted

DEPLOY = PROJECT_ROOT / "deploy"
PROMTOOL = "/usr/bin/promtool"   # Debian's prometheus package (scripts/ensure-test-tools.sh)
AMTOOL = "/usr/bin/amtool"       # Debian's prometheus-alertmanager package (the same script)


def test_alert_rules_pass_promtool_check_and_unit_tests():
    rules = DEPLOY / "prometheus" / "rules"
    check = subprocess.run([PROMTOOL, "check", "rules", "citybrain.rules.yml"], cwd=rules,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "citybrain.rules.test.yml"], cwd=rules,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "citybrain.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "citybrain.rules.test.yml").read_text())
    tested = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", [])
              if a["exp_alerts"]}
    quiet = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", [])
             if not a["exp_alerts"]}
    assert alerts == tested == quiet == {
        "CitybrainDispatchLatencyHigh", "CitybrainOverdueOrdersRising", "CitybrainDeadLetterSpike",
        "CitybrainConsumerLagGrowing", "CitybrainWorkerDown", "CitybrainBrokerDown", "CitybrainStageFailing",
        "CitybrainWorkerNotReady", "CitybrainMajorEmergency", "CitybrainDeviceIntactRatioDrop",
        "CitybrainRedAreaWarning"}
    for rule in (r for g in rules["groups"] for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        summary = rule["annotations"]["summary"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in summary) and "(" in summary, rule["alert"]


def test_dashboard_file_is_the_generated_one():
    assert observability.DASHBOARD_PATH.read_text(encoding="utf-8") == observability.render(), (
        "deploy/grafana/dashboards/citybrain.json drifted: run `citybrain dashboard --write`")
    board = json.loads(observability.DASHBOARD_PATH.read_text(encoding="utf-8"))
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert [r.split(" (")[0] for r in rows] == ["吞吐", "时延", "工单流转", "研判", "设备健康", "故障"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"district", "department", "category"}
    for v in variables.values():
        assert v["query"]["query"].startswith("label_values(citybrain_") and v["allValue"] == ".*"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 30
    for panel in board["panels"]:
        title = panel["title"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in title) and "(" in title and title.endswith(")"), title
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        assert panel["description"].startswith("指标 metrics: citybrain_") or "up" in panel["description"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for name in ("$district", "$department", "$category"):      # each variable filters something
        assert name in exprs, name
    # Nothing left unresolved where the Prometheus test asks.
    assert not any("$" in e for e in observability.expressions())


def exported_series() -> set[str]:
    """The series names of every metric citybrain.metrics defines (counters as _total,
    histograms as _bucket)."""
    names = set()
    for obj in vars(metrics).values():
        kind = getattr(obj, "_type", None) if isinstance(obj, MetricWrapperBase) else None
        if kind in {"counter", "gauge", "histogram"} and obj._name.startswith("citybrain_"):
            names.add(obj._name + {"counter": "_total", "gauge": "", "histogram": "_bucket"}[kind])
    return names


def test_every_exported_metric_is_charted():
    charted = set(re.findall(r"citybrain_[a-z0-9_]+", " ".join(observability.expressions())))
    exported = exported_series()
    assert len(exported) > 40
    assert "citybrain_evaluation_hours" in exported and "citybrain_worker_ready" in exported
    assert exported - charted == set()
    # The evaluation's five rates each have their own line.
    assert {r for r, _ in observability._RATES} == {"on_time_closure", "rework", "return", "extension",
                                                     "satisfaction"}


def alertmanager_config() -> dict:
    return yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))


def test_alertmanager_config_passes_amtool_and_routes_every_alert_to_the_webhook(tmp_path):
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["alertmanager"]
    script = service["command"][0]
    placeholder = alertmanager_config()["receivers"][0]["webhook_configs"][0]["url"]
    assert placeholder in script and "${CITYBRAIN_ALERT_WEBHOOK_URL}" in script.replace("$$", "$")
    assert service["environment"]["CITYBRAIN_ALERT_WEBHOOK_URL"].startswith("${CITYBRAIN_ALERT_WEBHOOK_URL:-http")
    # The file as the container renders it, with a URL set.
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text((DEPLOY / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
                        .replace(placeholder, "https://duty.example.org/hooks/citybrain"), encoding="utf-8")
    check = subprocess.run([AMTOOL, "check-config", str(rendered)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    config = alertmanager_config()
    receivers = {r["name"]: r for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    assert {r["receiver"] for r in route["routes"]} <= set(receivers)
    assert {m for r in route["routes"] for m in r["matchers"]} == {'severity="page"', 'severity="ticket"'}
    assert all(w["send_resolved"] for w in receivers[route["receiver"]]["webhook_configs"])
    # The rules' labels are what it groups by.
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "citybrain.rules.yml").read_text())
    assert {"stage", "emergency_level", "kind", "district", "instance"} <= set(route["group_by"])
    assert all(r["labels"]["severity"] in {"page", "ticket"} for g in rules["groups"] for r in g["rules"]
               if "alert" in r)


def test_a_broken_alertmanager_config_is_refused(tmp_path):
    config = alertmanager_config()
    config["route"]["receiver"] = "nobody"                  # a receiver that is not defined
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(config), encoding="utf-8")
    check = subprocess.run([AMTOOL, "check-config", str(bad)], capture_output=True, text=True, timeout=60)
    assert check.returncode != 0 and "nobody" in check.stdout + check.stderr


def test_compose_has_kafka_two_workers_a_console_prometheus_and_provisioned_grafana():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "worker-1", "worker-2", "console", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"      # KRaft
    w1, w2 = services["worker-1"], services["worker-2"]
    assert w1["command"] == w2["command"] and w1["build"] == w2["build"] == "."
    assert w1["volumes"] != w2["volumes"]                                     # own state each
    # Three KRaft nodes (issue 38): every one in the bootstrap list, the workers static members.
    assert w1["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092,kafka-2:9092,kafka-3:9092"
    assert {"kafka-2", "kafka-3"} <= set(services)
    assert services["kafka-3"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == \
        "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert [services[k]["environment"]["KAFKA_NODE_ID"] for k in ("kafka", "kafka-2", "kafka-3")] == [1, 2, 3]
    assert w1["environment"]["CITYBRAIN_INSTANCE_ID"] != w2["environment"]["CITYBRAIN_INSTANCE_ID"]
    assert w2["environment"]["CITYBRAIN_REPLICATION_FACTOR"] == 3
    # The stage workers serve no console; the console process hosts no stage and takes the
    # console's port (config refuses a process that hosts neither).
    console = services["console"]
    assert w1["environment"]["CITYBRAIN_CONSOLE"] == w2["environment"]["CITYBRAIN_CONSOLE"] == "false"
    assert (console["environment"]["CITYBRAIN_STAGES"], console["environment"]["CITYBRAIN_CONSOLE"]) == ("none", "true")
    assert console["ports"] == ["127.0.0.1:6066:6066"] and console["volumes"] not in (w1["volumes"], w2["volumes"])
    for name in ("worker-1", "worker-2", "console"):
        stages, console_here = hosted(services[name]["environment"])
        assert stages or console_here, name
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), source
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["worker-1:6066", "worker-2:6066", "console:6066"]
    assert prom["rule_files"] == ["/etc/prometheus/rules/citybrain.rules.yml"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "alertmanager" in services and "alertmanager" in services["prometheus"]["depends_on"]
    assert (DEPLOY / "grafana" / "provisioning" / "dashboards" / "citybrain.yml").exists()
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"             # the dashboard's datasource uid
    assert (PROJECT_ROOT / "Dockerfile").exists()


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "citybrain.yaml").read_text()) if d]


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
def test_k8s_manifests_validate_against_the_kubernetes_schemas(version):
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)   # raises on any violation


def test_k8s_workers_are_a_statefulset_with_state_volume_probes_and_requests():
    kinds = {d["kind"]: d for d in documents()}
    assert {"StatefulSet", "Service", "ConfigMap", "Secret", "Namespace"} <= set(kinds)
    sts = kinds["StatefulSet"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/citybrain"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    secret = kinds["Secret"]["stringData"]["auth.toml"]
    assert "sha256" in secret and "demo-operator" not in secret


def test_a_broken_manifest_is_refused():
    bad = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "serviceName": "s", "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)
