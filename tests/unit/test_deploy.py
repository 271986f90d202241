"""Deployment artefacts: the alert rules (promtool), the dashboard (generated, no drift),
docker-compose.yml (structure) and deploy/k8s (Kubernetes schemas)."""

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from citybrain import observability
from citybrain.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PROMTOOL = "/usr/bin/promtool"   # Debian's prometheus package (scripts/ensure-test-tools.sh)


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
    assert alerts == tested == {"CitybrainDispatchLatencyHigh", "CitybrainOverdueOrdersRising",
                                "CitybrainDeadLetterSpike", "CitybrainConsumerLagGrowing", "CitybrainWorkerDown"}


def test_dashboard_file_is_the_generated_one():
    assert observability.DASHBOARD_PATH.read_text(encoding="utf-8") == observability.render(), (
        "deploy/grafana/dashboards/citybrain.json drifted: run `citybrain dashboard --write`")
    board = json.loads(observability.DASHBOARD_PATH.read_text(encoding="utf-8"))
    assert len(board["panels"]) >= 10
    for panel in board["panels"]:
        title = panel["title"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in title) and "(" in title and title.endswith(")"), title
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_compose_has_kafka_two_workers_prometheus_and_provisioned_grafana():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"      # KRaft
    w1, w2 = services["worker-1"], services["worker-2"]
    assert w1["command"] == w2["command"] and w1["build"] == w2["build"] == "."
    assert w1["volumes"] != w2["volumes"]                                     # own state each
    assert w1["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), source
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["worker-1:6066", "worker-2:6066"]
    assert prom["rule_files"] == ["/etc/prometheus/rules/citybrain.rules.yml"]
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
