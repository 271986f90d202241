"""SASL_SSL as docs/security.md describes it, wired in docker-compose.yml and deploy/k8s
(issue 38 item 3): each broker's settings as the apache/kafka image turns its environment
into server.properties, checked against what every client of the same file is given — the
listener they bootstrap from is SASL_SSL, the mechanism and user are the brokers', the
password and the CA come from mounted secrets (never a literal), the replication the
workers reconcile (config/topics.toml [replication] under their environment) is what the
brokers were built for — and the development certificates of scripts/kafka-dev-secrets.sh
pass a TLS handshake made by the clients' own code for every broker name."""

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from citybrain.config import Config
from citybrain.kafka.clients import KafkaSecurity
from citybrain.paths import PROJECT_ROOT

from ..deploy_files import (
    SECRETS_DIR,
    START_SCRIPT,
    broker_properties,
    compose,
    listeners,
    make_dev_secrets,
    protocol_map,
)


def check_broker(props: dict, mounted: set[str], brokers: int) -> None:
    """One broker: SASL_SSL for clients and brokers, mutual TLS for the controllers, TLS
    files it mounts, the internal topics replicated like the data topics."""
    protocols = protocol_map(props)
    assert set(listeners(props["listeners"])) == set(protocols)          # every listener mapped
    assert "PLAINTEXT" not in protocols.values() and "SASL_PLAINTEXT" not in protocols.values()
    advertised = listeners(props["advertised.listeners"])
    assert {protocols[name] for name in advertised} == {"SASL_SSL"}     # all that clients are told of
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    assert props["sasl.mechanism.inter.broker.protocol"] in props["sasl.enabled.mechanisms"].split(",")
    controller = props["controller.listener.names"]
    assert protocols[controller] == "SSL" and props[f"listener.name.{controller.lower()}.ssl.client.auth"] == "required"
    for path in (props["ssl.keystore.location"], props["ssl.truststore.location"],
                 f"{SECRETS_DIR}/{props['ssl.keystore.credentials']}", f"{SECRETS_DIR}/{props['ssl.key.credentials']}",
                 f"{SECRETS_DIR}/broker-password", f"{SECRETS_DIR}/client-password"):   # the script reads the last two
        assert path in mounted, path
    assert props["ssl.truststore.type"] == "PEM" and props["ssl.keystore.type"] == "PKCS12"
    assert not any("password" in key for key in props)                  # none set in clear
    assert int(props["default.replication.factor"]) == int(props["offsets.topic.replication.factor"]) == \
        int(props["transaction.state.log.replication.factor"]) == brokers
    assert int(props["min.insync.replicas"]) == int(props["transaction.state.log.min.isr"]) == brokers - 1


def check_client(env: dict, brokers: dict[str, dict], mechanism: str, username: str) -> None:
    """One client's environment against the brokers' settings."""
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == mechanism and env["KAFKA_SASL_USERNAME"] == username
    advertised = {address for props in brokers.values() for name, address in
                  listeners(props["advertised.listeners"]).items() if protocol_map(props)[name] == "SASL_SSL"}
    assert set(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == advertised
    assert "KAFKA_SASL_PASSWORD" not in env or not isinstance(env["KAFKA_SASL_PASSWORD"], str)   # no literal
    # The replication the worker reconciles at start (topics.toml under this environment).
    replication = Config(env={k: str(v) for k, v in env.items() if not isinstance(v, dict)}).topic_retention.replication
    first = next(iter(brokers.values()))
    assert (replication.factor, replication.min_insync_replicas) == \
        (int(first["default.replication.factor"]), int(first["min.insync.replicas"])) == (len(brokers), len(brokers) - 1)


# docker-compose.yml ------------------------------------------------------------------------


def compose_mounts(service: dict) -> dict[str, str]:
    """target path → the top-level secret it mounts."""
    out = {}
    for item in service.get("secrets", []):
        source, target = (item, item) if isinstance(item, str) else (item["source"], item.get("target", item["source"]))
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return out


def compose_brokers(services: dict) -> dict[str, dict]:
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")}


def test_compose_brokers_listen_sasl_ssl_only_with_mtls_controllers_and_their_secrets():
    doc = compose()
    services = doc["services"]
    brokers = compose_brokers(services)
    assert len(brokers) == 3
    for name, service in brokers.items():
        env = service["environment"]
        props = broker_properties(env)
        mounts = compose_mounts(service)
        check_broker(props, set(mounts), len(brokers))
        assert listeners(props["advertised.listeners"]) == {"SASL_SSL": f"{name}:9092"}
        assert service["entrypoint"] == ["/bin/bash", "/opt/citybrain/start-sasl-ssl.sh"]
        assert "./deploy/kafka/start-sasl-ssl.sh:/opt/citybrain/start-sasl-ssl.sh:ro" in service["volumes"]
        assert "--command-config" in service["healthcheck"]["test"][1]        # the probe authenticates too
        # Every secret it mounts is a file of the deployment's secrets directory, none inline.
        for source in mounts.values():
            assert doc["secrets"][source]["file"].startswith("./deploy/kafka/secrets/")
    voters = {v.split("@")[1] for v in brokers["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
    assert voters == {f"{name}:9093" for name in brokers}


def test_every_compose_client_uses_the_brokers_sasl_ssl_listener_with_secrets_not_literals():
    doc = compose()
    services = doc["services"]
    brokers = {name: broker_properties(s["environment"]) for name, s in compose_brokers(services).items()}
    broker = compose_brokers(services)["kafka"]
    broker_mounts = compose_mounts(broker)
    mechanism = brokers["kafka"]["sasl.enabled.mechanisms"]
    clients = {name: s for name, s in services.items() if "KAFKA_BOOTSTRAP_SERVERS" in s.get("environment", {})}
    assert {"setup", "worker-1", "worker-2"} <= set(clients)
    for name, service in clients.items():
        env = service["environment"]
        check_client(env, brokers, mechanism, broker["environment"]["SCRAM_CLIENT_USERNAME"])
        mounts = compose_mounts(service)
        # The password and the CA: files of mounted secrets, the very ones the brokers use.
        assert mounts[env["KAFKA_SASL_PASSWORD_FILE"]] == broker_mounts[f"{SECRETS_DIR}/client-password"], name
        assert mounts[env["KAFKA_SSL_CAFILE"]] == broker_mounts[brokers["kafka"]["ssl.truststore.location"]], name
        assert not {broker_mounts[f"{SECRETS_DIR}/broker.p12"], broker_mounts[f"{SECRETS_DIR}/broker-password"]} \
            & set(mounts.values()), name                                   # a client never holds a broker's key


def test_no_password_is_written_in_compose():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    for service in compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key and not key.endswith("_FILE"):
                pytest.fail(f"{key}={value}: a password belongs in a secret")
    assert "password=" not in text.lower().replace("password=${", "")


# deploy/k8s --------------------------------------------------------------------------------


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all((PROJECT_ROOT / "deploy" / "k8s" / "citybrain.yaml").read_text()) if d]


def by(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def pod_env(container: dict, pod: str, configmaps: dict[str, dict]) -> dict:
    """A container's environment as Kubernetes gives it, with what its start command
    exports for pod ``pod`` (node id and advertised listener); a secret stays its reference."""
    env: dict = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            env[item["name"]] = configmaps[ref["configMapKeyRef"]["name"]]["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[item["name"]] = item.get("value", ref)
    script = " ".join(container.get("args", []))
    if "KAFKA_NODE_ID" in script:
        env["KAFKA_NODE_ID"] = pod.rsplit("-", 1)[1]
        env["KAFKA_ADVERTISED_LISTENERS"] = f"SASL_SSL://{pod}.kafka.citybrain.svc:9092"
        assert 'KAFKA_ADVERTISED_LISTENERS="SASL_SSL://${HOSTNAME}.kafka.citybrain.svc:9092"' in script
    return env


def k8s_mounts(spec: dict, container: dict) -> dict[str, tuple[str, str]]:
    """file path → (secret, key) for the container's secret volumes (projected or not)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        secrets = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        if "secret" in volume:
            secrets.append({"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")})
        for secret in secrets:
            keys = {"kafka-tls": ["ca.pem", "broker.p12", "keystore-password"],
                    "kafka-sasl": ["broker-password", "client-password"]}.get(secret["name"], [])
            for item in secret.get("items") or [{"key": k, "path": k} for k in keys]:
                out[f"{mount['mountPath']}/{item['path']}"] = (secret["name"], item["key"])
    return out


def test_k8s_brokers_listen_sasl_ssl_only_with_mtls_controllers_and_their_secrets():
    configmaps = by("ConfigMap")
    kafka = by("StatefulSet")["kafka"]
    spec = kafka["spec"]["template"]["spec"]
    container = spec["containers"][0]
    brokers = {}
    for ordinal in range(kafka["spec"]["replicas"]):
        pod = f"kafka-{ordinal}"
        props = broker_properties(pod_env(container, pod, configmaps))
        check_broker(props, set(k8s_mounts(spec, container)), kafka["spec"]["replicas"])
        brokers[pod] = props
        assert props["node.id"] == str(ordinal)
    assert container["args"][0].rstrip().endswith("exec /bin/bash /opt/citybrain/start-sasl-ssl.sh")
    mounts = k8s_mounts(spec, container)
    assert mounts[f"{SECRETS_DIR}/ca.pem"] == ("kafka-tls", "ca.pem")
    assert mounts[f"{SECRETS_DIR}/client-password"] == ("kafka-sasl", "client-password")
    # The start script is the repository's, byte for byte.
    assert configmaps["kafka-start"]["data"]["start-sasl-ssl.sh"] == START_SCRIPT.read_text()
    assert {"name": "start", "mountPath": "/opt/citybrain", "readOnly": True} in container["volumeMounts"]
    assert container["image"] == compose()["services"]["kafka"]["image"]


def test_every_k8s_client_uses_the_brokers_sasl_ssl_listener_with_secrets_not_literals():
    configmaps = by("ConfigMap")
    kafka = by("StatefulSet")["kafka"]
    kafka_spec = kafka["spec"]["template"]["spec"]
    kafka_container = kafka_spec["containers"][0]
    brokers = {f"kafka-{i}": broker_properties(pod_env(kafka_container, f"kafka-{i}", configmaps))
               for i in range(kafka["spec"]["replicas"])}
    broker_mounts = k8s_mounts(kafka_spec, kafka_container)
    username = pod_env(kafka_container, "kafka-0", configmaps)["SCRAM_CLIENT_USERNAME"]
    clients = [(doc["metadata"]["name"], doc["spec"]["template"]["spec"], container)
               for doc in documents() if doc["kind"] in {"StatefulSet", "Deployment", "Job"} and doc is not kafka
               for container in doc["spec"]["template"]["spec"]["containers"]
               if "KAFKA_BOOTSTRAP_SERVERS" in pod_env(container, "pod-0", configmaps)]
    assert "citybrain" in {name for name, *_ in clients}
    for name, spec, container in clients:
        env = pod_env(container, f"{name}-0", configmaps)
        check_client(env, brokers, brokers["kafka-0"]["sasl.enabled.mechanisms"], username)
        password = env["KAFKA_SASL_PASSWORD"]["secretKeyRef"]
        assert (password["name"], password["key"]) == broker_mounts[f"{SECRETS_DIR}/client-password"], name
        mounts = k8s_mounts(spec, container)
        assert mounts[env["KAFKA_SSL_CAFILE"]] == broker_mounts[brokers["kafka-0"]["ssl.truststore.location"]], name
        assert set(mounts.values()) == {("kafka-tls", "ca.pem")}, name       # the CA only, no broker key


def test_no_kafka_secret_is_written_in_the_k8s_manifests():
    for doc in documents():
        if doc["kind"] == "Secret":   # the deployment's own (the notifier's and platforms' too)
            assert doc["metadata"]["name"] not in {"kafka-tls", "kafka-sasl", "citybrain-delivery"}
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for item in container.get("env", []):
                # A …_FILE names a mounted file (envsecrets.py), never the password itself.
                if "PASSWORD" in item["name"] and not item["name"].endswith("_FILE"):
                    assert "value" not in item and "secretKeyRef" in item["valueFrom"], item


# scripts/kafka-dev-secrets.sh ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_secrets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kafka-secrets")
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in yaml.safe_load_all(make_dev_secrets(out, "--k8s"))}
    assert secrets == {"kafka-tls": {"ca.pem", "broker.p12", "keystore-password"},
                       "kafka-sasl": {"broker-password", "client-password"}}
    return out


def test_dev_secrets_hold_a_keystore_that_opens_with_its_password_and_distinct_passwords(dev_secrets):
    opened = subprocess.run(["openssl", "pkcs12", "-in", str(dev_secrets / "broker.p12"), "-nokeys", "-passin",
                             f"file:{dev_secrets / 'keystore-password'}"], capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0 and "BEGIN CERTIFICATE" in opened.stdout, opened.stderr
    passwords = [(dev_secrets / n).read_text().strip() for n in ("keystore-password", "broker-password", "client-password")]
    assert len(set(passwords)) == 3 and all(len(p) >= 32 for p in passwords)


@pytest.mark.parametrize("host", ["kafka", "kafka-2", "kafka-3", "kafka-1.kafka.citybrain.svc"])
async def test_the_clients_tls_settings_accept_the_dev_broker_certificate_for_every_broker_name(dev_secrets, host):
    """A TLS server with the development broker certificate; the client's SSL context from
    kafka/clients.py (KAFKA_SSL_CAFILE = the CA) checks it under each broker's name."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev_secrets / "broker.pem", dev_secrets / "broker.key")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    security = KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "citybrain",
                                       "KAFKA_SASL_PASSWORD_FILE": str(dev_secrets / "client-password"),
                                       "KAFKA_SSL_CAFILE": str(dev_secrets / "ca.pem")})
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=security.ssl_context(), server_hostname=host)
        writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):                 # a name it was not made for
            await asyncio.open_connection("127.0.0.1", port, ssl=security.ssl_context(), server_hostname="kafka-9")
    finally:
        server.close()
        await server.wait_closed()
