"""The notifier and the platforms' callbacks in docker-compose.yml and deploy/k8s: one
notifier (two would escalate twice), its 签收 port scraped apart from the workers, and every
secret the shipped configuration names — SMTP, SMPP, the webhook key, each platform's key,
the roster — a mounted file the development script makes, read through ``…_FILE``."""

import os
import subprocess
import tomllib

import pytest
import yaml

from citybrain.config import Config
from citybrain.notify.app import roster_path
from citybrain.notify.settings import NotifySettings, secret
from citybrain.paths import PROJECT_ROOT
from citybrain.platforms.settings import PlatformsConfig

SCRIPT = PROJECT_ROOT / "scripts" / "delivery-dev-secrets.sh"


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def k8s() -> list[dict]:
    return [d for d in yaml.safe_load_all((PROJECT_ROOT / "deploy" / "k8s" / "citybrain.yaml").read_text()) if d]


def notifier_secrets() -> set[str]:
    s = NotifySettings.load(PROJECT_ROOT / "config" / "notify.toml")
    return {s.smtp.password_env, s.smpp.password_env, s.webhook.secret_env}


def platform_secrets() -> set[str]:
    return {p.secret_env for p in PlatformsConfig.load(PROJECT_ROOT / "config" / "platforms.toml").platform}


def compose_files(service: dict, doc: dict) -> dict[str, str]:
    """An env var of the service → the file of the compose secret it points at."""
    mounted = {f"/run/secrets/{name}": doc["secrets"][name]["file"] for name in service["secrets"]}
    return {k: mounted[v] for k, v in service["environment"].items() if isinstance(v, str) and v in mounted}


@pytest.fixture(scope="module")
def dev_secrets(tmp_path_factory):
    out = tmp_path_factory.mktemp("delivery-secrets")
    done = subprocess.run(["bash", str(SCRIPT), "--k8s"], env={**os.environ, "CITYBRAIN_DELIVERY_SECRETS_DIR": str(out)},
                          capture_output=True, text=True, timeout=60, check=True)
    return out, yaml.safe_load(done.stdout)


def test_compose_runs_one_notifier_and_the_platforms_with_every_configured_secret_from_a_file(dev_secrets):
    out, _ = dev_secrets
    doc = compose()
    notifier, platforms = doc["services"]["notifier"], doc["services"]["platforms"]
    assert notifier["command"][:3] == ["citybrain", "notifier", "run"]
    assert platforms["command"][:3] == ["citybrain", "platforms", "run"]
    assert notifier.get("deploy", {}).get("replicas", 1) == 1
    for service, wanted in ((notifier, notifier_secrets() | {"CITYBRAIN_ROSTER"}), (platforms, platform_secrets())):
        files = {k: v for k, v in compose_files(service, doc).items() if not k.startswith("KAFKA_")}
        assert set(files) == {f"{v}_FILE" for v in wanted}
        for path in files.values():   # the development script makes each one
            assert path.startswith("./deploy/citybrain/secrets/"), path
            assert (out / path.removeprefix("./deploy/citybrain/secrets/")).stat().st_size > 0, path
    # Each one's port is scraped, in a job of its own (the workers' alerts count job="citybrain").
    prom = yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in prom["scrape_configs"]}
    for name, service in (("notifier", notifier), ("platforms", platforms)):
        port = service["command"][service["command"].index("--http-port") + 1]
        assert jobs[f"citybrain-{name}"] == [f"{name}:{port}"] and f"{name}:{port}" not in jobs["citybrain"]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_k8s_runs_one_notifier_replaced_not_rolled_and_the_platforms_with_the_delivery_secret(dev_secrets):
    _, secret_doc = dev_secrets
    deployments = {d["metadata"]["name"]: d for d in k8s() if d["kind"] == "Deployment"}
    notifier, platforms = deployments["citybrain-notifier"], deployments["citybrain-platforms"]
    assert notifier["spec"]["replicas"] == 1 and notifier["spec"]["strategy"] == {"type": "Recreate"}
    for deployment, wanted in ((notifier, notifier_secrets()), (platforms, platform_secrets())):
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        mount = next(m["mountPath"] for m in container["volumeMounts"]
                     if next(v for v in spec["volumes"] if v["name"] == m["name"]).get("secret", {}).get(
                         "secretName") == "citybrain-delivery")
        env = {e["name"]: e.get("value") for e in container["env"]}
        keys = {env[f"{v}_FILE"].removeprefix(mount + "/") for v in wanted}
        assert all(env[f"{v}_FILE"].startswith(mount + "/") for v in wanted)
        assert keys <= set(secret_doc["data"]), keys - set(secret_doc["data"])   # the Secret the script makes
    notifier_env = {e["name"]: e.get("value") for e in notifier["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert notifier_env["CITYBRAIN_ROSTER_FILE"].endswith("/roster.toml") and "roster.toml" in secret_doc["data"]
    service = next(d for d in k8s() if d["kind"] == "Service" and d["metadata"]["name"] == "citybrain-notifier")
    assert service["spec"]["selector"] == notifier["spec"]["selector"]["matchLabels"]
    assert (secret_doc["kind"], secret_doc["metadata"]["name"]) == ("Secret", "citybrain-delivery")


def test_the_services_read_the_files_the_script_made(dev_secrets, monkeypatch):
    out, _ = dev_secrets
    doc = compose()
    for name in ("notifier", "platforms"):
        for var, path in compose_files(doc["services"][name], doc).items():
            if var.startswith("KAFKA_"):
                continue
            monkeypatch.delenv(var.removesuffix("_FILE"), raising=False)
            monkeypatch.setenv(var, str(out / path.removeprefix("./deploy/citybrain/secrets/")))
    for var in notifier_secrets():
        assert len(secret(var)) == 48, var                     # openssl rand -hex 24
    for platform in PlatformsConfig.load(PROJECT_ROOT / "config" / "platforms.toml").platform:
        assert len(platform.key()) == 48, platform.name
    roster = roster_path(Config())
    assert roster == out / "roster.toml"
    assert tomllib.loads(roster.read_text()) == tomllib.loads((PROJECT_ROOT / "config" / "roster.toml").read_text())
