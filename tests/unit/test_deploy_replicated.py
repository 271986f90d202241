"""deploy/k8s in the production shape (issue 38 item 3, DESIGN §17): three KRaft brokers,
topics at three replicas and min ISR 2, workers as static members named after their pods,
PodDisruptionBudgets, readiness that gates traffic."""

import yaml

from citybrain.paths import PROJECT_ROOT

from ..deploy_files import hosted


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((PROJECT_ROOT / "deploy" / "k8s" / "citybrain.yaml").read_text()) if d]


def by(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_three_kraft_brokers_with_replicated_internal_topics():
    kafka = by("StatefulSet")["kafka"]
    assert kafka["spec"]["replicas"] == 3 and kafka["spec"]["podManagementPolicy"] == "Parallel"
    env = env_of(kafka["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == ["0", "1", "2"]       # node id = pod ordinal
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    assert by("Service")["kafka"]["spec"]["clusterIP"] == "None"
    assert by("PodDisruptionBudget")["kafka"]["spec"]["maxUnavailable"] == 1


def test_workers_are_static_members_with_replicated_topics_and_a_disruption_budget():
    settings = by("ConfigMap")["citybrain-settings"]["data"]
    assert len(settings["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    assert settings["CITYBRAIN_REPLICATION_FACTOR"] == "3" and settings["CITYBRAIN_MIN_INSYNC_REPLICAS"] == "2"
    assert settings["CITYBRAIN_LEAVE_GROUP_ON_STOP"] == "true"
    workers = by("StatefulSet")["citybrain"]
    container = workers["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["CITYBRAIN_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"   # traffic only once caught up
    pdb = by("PodDisruptionBudget")["citybrain"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == workers["spec"]["selector"]["matchLabels"]


def test_the_console_runs_apart_from_the_stage_workers_and_alone_behind_the_api_service():
    stages, console = by("StatefulSet")["citybrain"], by("StatefulSet")["citybrain-console"]

    def hosts(sts: dict):
        return hosted(env_of(sts["spec"]["template"]["spec"]["containers"][0]))
    assert hosts(stages) == (["normalise", "fuse"], False) and hosts(console) == ([], True)
    assert console["spec"]["replicas"] >= 2 and console["spec"]["volumeClaimTemplates"]   # its history on its own volume
    pods = {name: sts["spec"]["template"]["metadata"]["labels"] for name, sts in (("stages", stages), ("console", console))}
    assert pods["stages"] != pods["console"]
    services, budgets = by("Service"), by("PodDisruptionBudget")

    def selects(selector: dict) -> set[str]:
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}
    assert selects(services["citybrain"]["spec"]["selector"]) == {"console"}          # the API: consoles only
    assert selects(services["citybrain-workers"]["spec"]["selector"]) == {"stages"}
    assert selects(budgets["citybrain"]["spec"]["selector"]["matchLabels"]) == {"stages"}
    assert selects(budgets["citybrain-console"]["spec"]["selector"]["matchLabels"]) == {"console"}
    assert console["spec"]["serviceName"] == "citybrain-consoles" and services["citybrain-consoles"]["spec"]["clusterIP"] == "None"
