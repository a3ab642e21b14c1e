"""Production packaging (DESIGN §6): the Dockerfile, deploy/k8s and deploy/compose.yaml.

Static checks only (no cluster, no Docker engine): every file parses, and the properties the
service relies on in production hold, so that a manifest losing one of them fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.bootstrap import ROLES
from service.config import Settings, Topics

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PREFIX = "KB_INGEST_"
TOPIC_PREFIX = "KB_INGEST_TOPIC_"
WORKER_ROLES = tuple(r for r in ROLES if r != "api")
SHUTDOWN_GRACE_DEFAULT = Settings.model_fields["shutdown_grace_s"].default
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"kb-ingest:{PROJECT_VERSION}"

# What KEDA scales on: role -> (consumer group setting, topic setting, partitions setting).
SCALED = {
    "producer": ("GROUP_PRODUCER", "TOPIC_DOCUMENTS", "PARTITIONS_DOCUMENTS"),
    "consumer": ("GROUP_CONSUMER", "TOPIC_CHUNKS", "PARTITIONS_CHUNKS"),
}


# -- loading -----------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def manifest_files() -> list[Path]:
    return [p for p in k8s_files() if p.name not in ("kustomization.yaml", "kustomization.yml")]


def load_all(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in load_all(path)]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind} {name!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    maps = of_kind(objects, "ConfigMap")
    assert len(maps) == 1, "expected one ConfigMap with the non-secret settings"
    return maps[0]


@pytest.fixture(scope="module")
def secret(objects: list[dict[str, Any]]) -> dict[str, Any]:
    secrets = of_kind(objects, "Secret")
    assert len(secrets) == 1, "expected one Secret with the secret settings"
    return secrets[0]


@pytest.fixture(scope="module")
def config(configmap: dict[str, Any]) -> dict[str, str]:
    data = configmap.get("data") or {}
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return data


@pytest.fixture(scope="module")
def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployments by role (the app.kubernetes.io/component label)."""
    by_role: dict[str, dict[str, Any]] = {}
    for d in of_kind(objects, "Deployment"):
        role = d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        assert role not in by_role, f"two Deployments for role {role!r}"
        by_role[role] = d
    return by_role


@pytest.fixture(scope="module")
def migration_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = of_kind(objects, "Job")
    assert len(jobs) == 1, "expected one migration Job"
    return jobs[0]


def workloads(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod-running object (Deployments and the Job), with a readable id."""
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o


def the_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod: the kb-ingest process"
    container: dict[str, Any] = containers[0]
    return container


def effective_env(container: dict[str, Any], config: dict[str, str]) -> dict[str, str]:
    """The ConfigMap's settings, overridden by the container's own literal env entries."""
    env = dict(config)
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
    return env


def role_port(role: str, env: dict[str, str]) -> int:
    """The port on which a role serves /healthz, /readyz and /metrics."""
    return int(env[f"{PREFIX}API_PORT" if role == "api" else f"{PREFIX}HEALTH_PORT"])


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's target port, resolving a named container port."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    named = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


# -- quantities --------------------------------------------------------------------------------

_SUFFIXES = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match.group(2) in _SUFFIXES, f"not a quantity: {value!r}"
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def duration_s(value: str | int) -> float:
    """A compose duration ("30s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"([0-9.]+)(ms|us|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# -- every file parses; kustomization ----------------------------------------------------------


@pytest.mark.parametrize("path", [*k8s_files(), COMPOSE], ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert isinstance(doc, dict)
        if path.parent == K8S:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: apiVersion/kind"


def test_kustomization_lists_every_file() -> None:
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization.get("resources") or []
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == sorted(p.name for p in manifest_files())


def test_manifests_are_namespace_agnostic(objects: list[dict[str, Any]]) -> None:
    with_ns = [o["metadata"]["name"] for o in objects if "namespace" in o["metadata"]]
    assert not with_ns, f"hard-coded namespace in {with_ns}"
    assert "namespace" not in load_all(K8S / "kustomization.yaml")[0]


# -- settings: every key is a real setting, every value validates -----------------------------


def known_setting(key: str) -> bool:
    if key.startswith(TOPIC_PREFIX):
        return key.removeprefix(TOPIC_PREFIX).lower() in Topics.model_fields
    return key.startswith(PREFIX) and key.removeprefix(PREFIX).lower() in Settings.model_fields


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as the process would build them from exactly this environment."""
    for key in list(os.environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_configmap_and_secret_hold_valid_settings(
    config: dict[str, str], secret: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt key would be ignored silently by pydantic-settings (extra="ignore")."""
    secret_data = secret.get("stringData") or {}
    env = {**config, **secret_data}
    unknown = sorted(k for k in env if not known_setting(k))
    assert not unknown, f"not a kb-ingest setting: {unknown}"
    settings = settings_from(env, monkeypatch)
    assert settings.kafka_bootstrap == config[f"{PREFIX}KAFKA_BOOTSTRAP"]


def test_secrets_are_in_the_secret_and_only_placeholders(
    config: dict[str, str], secret: dict[str, Any]
) -> None:
    secret_keys = {f"{PREFIX}DATABASE_URL", f"{PREFIX}API_TOKEN", f"{PREFIX}KAFKA_SASL_PASSWORD"}
    assert not secret_keys & set(config), "a secret setting is in the ConfigMap"
    data = secret.get("stringData") or {}
    assert {f"{PREFIX}DATABASE_URL", f"{PREFIX}API_TOKEN"} <= set(data)
    for key, value in data.items():
        assert "CHANGE-ME" in value, f"{key}: the committed Secret must hold placeholders only"


# -- Deployments -------------------------------------------------------------------------------


def test_one_deployment_per_role(deployments: dict[str, dict[str, Any]]) -> None:
    assert sorted(deployments) == sorted(ROLES)
    for role, d in deployments.items():
        assert d["metadata"]["name"] == f"kb-ingest-{role}"
        container = the_container(d)
        assert container["args"] == ["run", role]
        assert container.get("command") in (None, ["kb-ingest"]), "keep the image ENTRYPOINT"
        assert container["image"] == IMAGE


def test_deployment_selectors_match_their_pods(deployments: dict[str, dict[str, Any]]) -> None:
    for role, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), role
        assert selector.get("app.kubernetes.io/component") == role, (
            f"{role}: the selector must tell the roles apart"
        )


@pytest.mark.parametrize("role", ROLES)
def test_probes_hit_healthz_and_readyz_on_the_role_port(
    role: str, deployments: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    container = the_container(deployments[role])
    port = role_port(role, effective_env(container, config))
    assert port in [p["containerPort"] for p in container.get("ports") or []]
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    if "startupProbe" in container:
        expected["startupProbe"] = "/healthz"
    for probe_name, path in expected.items():
        probe = container.get(probe_name)
        assert probe, f"{role}: no {probe_name}"
        assert probe["httpGet"]["path"] == path, f"{role} {probe_name}"
        assert resolve_port(container, probe["httpGet"]["port"]) == port, f"{role} {probe_name}"
    # /readyz pings Postgres then Kafka with a 2 s timeout each: a shorter probe timeout would
    # mark a healthy pod unready whenever one backend is slow.
    assert container["readinessProbe"].get("timeoutSeconds", 1) > 4


@pytest.mark.parametrize("role", ROLES)
def test_metrics_are_scrapable(
    role: str,
    deployments: dict[str, dict[str, Any]],
    objects: list[dict[str, Any]],
    config: dict[str, str],
) -> None:
    d = deployments[role]
    container = the_container(d)
    port = role_port(role, effective_env(container, config))
    annotations = d["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/port") == str(port)
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"
    labels = d["spec"]["template"]["metadata"]["labels"]
    services = [
        s
        for s in of_kind(objects, "Service")
        if s["spec"].get("selector") and s["spec"]["selector"].items() <= labels.items()
    ]
    assert services, f"{role}: no Service selects its pods"
    targets = [
        resolve_port(container, p.get("targetPort", p["port"]))
        for s in services
        for p in s["spec"]["ports"]
    ]
    assert port in targets, f"{role}: no Service port reaches {port}"


def test_api_service_maps_80_to_the_api_port(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    service = one(objects, "Service", "kb-ingest-api")
    api = deployments["api"]
    container = the_container(api)
    assert service["spec"].get("clusterIP") != "None"
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    target = resolve_port(container, port["targetPort"])
    assert target == role_port("api", effective_env(container, config)) == 8080


@pytest.mark.parametrize("role", ROLES)
def test_termination_grace_exceeds_shutdown_grace(
    role: str, deployments: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    pod = deployments[role]["spec"]["template"]["spec"]
    container = the_container(deployments[role])
    env = effective_env(container, config)
    shutdown = float(env.get(f"{PREFIX}SHUTDOWN_GRACE_S", SHUTDOWN_GRACE_DEFAULT))
    # A preStop hook runs before SIGTERM and eats into the same budget.
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    delay = 0.0
    if "exec" in pre_stop:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep" and len(command) == 2, f"{role}: unexpected preStop"
        delay = float(command[1])
    elif "sleep" in pre_stop:
        delay = float(pre_stop["sleep"]["seconds"])
    assert "terminationGracePeriodSeconds" in pod, f"{role}: say it explicitly"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > delay + shutdown, f"{role}: SIGKILL before the shutdown grace ends"
    assert grace > SHUTDOWN_GRACE_DEFAULT, role


def test_deployments_scaled_by_keda_leave_replicas_alone(
    deployments: dict[str, dict[str, Any]],
) -> None:
    """A replicas field would reset KEDA's count on every `kubectl apply`."""
    for role in SCALED:
        assert "replicas" not in deployments[role]["spec"], role


# -- every pod: security, resources, configuration ---------------------------------------------


def test_every_workload_is_checked(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(name.split("/")[0] for name, _ in workloads(objects))
    assert kinds == ["Deployment"] * len(ROLES) + ["Job"]


def test_workloads_run_as_non_root_with_a_locked_down_container(
    objects: list[dict[str, Any]],
) -> None:
    for name, w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        container = the_container(w)
        pod_sc = pod.get("securityContext") or {}
        sc = container.get("securityContext") or {}
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 10001)) != 0, name
        assert sc.get("allowPrivilegeEscalation") is False, name
        assert sc.get("readOnlyRootFilesystem") is True, name
        assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), name
        assert sc.get("privileged") is not True, name
        # With a read-only root, /tmp must be a writable emptyDir.
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        assert "/tmp" in mounts, f"{name}: no /tmp mount"
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is not an emptyDir"


def test_workloads_have_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for name, w in workloads(objects):
        resources = the_container(w).get("resources") or {}
        for kind in ("cpu", "memory"):
            request = resources.get("requests", {}).get(kind)
            limit = resources.get("limits", {}).get(kind)
            assert request is not None and limit is not None, f"{name}: {kind} request/limit"
            assert 0 < quantity(request) <= quantity(limit), f"{name}: {kind}"


def test_workloads_read_the_configmap_and_the_secret(
    objects: list[dict[str, Any]], configmap: dict[str, Any], secret: dict[str, Any]
) -> None:
    for name, w in workloads(objects):
        env_from = the_container(w).get("envFrom") or []
        maps = [e["configMapRef"]["name"] for e in env_from if "configMapRef" in e]
        secrets = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
        assert maps == [configmap["metadata"]["name"]], name
        assert secrets == [secret["metadata"]["name"]], name


def test_workloads_disable_service_links(objects: list[dict[str, Any]]) -> None:
    """Service links would inject KB_INGEST_<SERVICE>_PORT=tcp://... (e.g. for a Service named
    kb-ingest-api: KB_INGEST_API_PORT), clashing with the service's own settings."""
    for name, w in workloads(objects):
        assert w["spec"]["template"]["spec"].get("enableServiceLinks") is False, name


# -- PodDisruptionBudgets ----------------------------------------------------------------------


def test_a_pdb_per_deployment(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    pdbs = of_kind(objects, "PodDisruptionBudget")
    for role, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        matching = [p for p in pdbs if p["spec"]["selector"].get("matchLabels") == selector]
        assert len(matching) == 1, f"{role}: expected one PodDisruptionBudget"
        spec = matching[0]["spec"]
        assert spec.get("maxUnavailable") == 1 and "minAvailable" not in spec, role
    assert len(pdbs) == len(deployments)


# -- KEDA --------------------------------------------------------------------------------------


def test_scaled_objects_follow_the_lag_of_producer_and_consumer(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    scaled = of_kind(objects, "ScaledObject")
    targets = {s["spec"]["scaleTargetRef"]["name"]: s for s in scaled}
    assert len(targets) == len(scaled), "two ScaledObjects target the same Deployment"
    assert sorted(targets) == sorted(deployments[r]["metadata"]["name"] for r in SCALED)
    for role, (group_key, topic_key, partitions_key) in SCALED.items():
        so = targets[deployments[role]["metadata"]["name"]]
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
        # The same group, topic and brokers as the workers it scales.
        assert meta["consumerGroup"] == config[f"{PREFIX}{group_key}"], role
        assert meta["topic"] == config[f"{PREFIX}{topic_key}"], role
        assert meta["bootstrapServers"] == config[f"{PREFIX}KAFKA_BOOTSTRAP"], role
        assert int(meta["lagThreshold"]) > 0
        # The service's consumers start a new group from the earliest offset.
        assert meta.get("offsetResetPolicy") == "earliest", role
        assert so["spec"].get("minReplicaCount", 0) >= 1, f"{role}: never scale to zero"
        assert so["spec"]["maxReplicaCount"] == int(config[f"{PREFIX}{partitions_key}"]), role
    # ... and those are the code's defaults for the roles' groups and topics.
    producer, consumer = (targets[f"kb-ingest-{r}"]["spec"]["triggers"][0] for r in SCALED)
    assert producer["metadata"]["consumerGroup"] == Settings.model_fields["group_producer"].default
    assert producer["metadata"]["topic"] == Topics.model_fields["documents"].default
    assert consumer["metadata"]["consumerGroup"] == Settings.model_fields["group_consumer"].default
    assert consumer["metadata"]["topic"] == Topics.model_fields["chunks"].default


# -- migration Job -----------------------------------------------------------------------------


def test_migration_job_runs_migrate(migration_job: dict[str, Any]) -> None:
    container = the_container(migration_job)
    assert container["args"] == ["migrate"]
    assert container.get("command") in (None, ["kb-ingest"])
    assert container["image"] == IMAGE
    assert migration_job["spec"].get("backoffLimit", 0) >= 1
    restart = migration_job["spec"]["template"]["spec"].get("restartPolicy")
    assert restart in ("Never", "OnFailure")


# -- Dockerfile --------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, the global ARGs as stage 0."""
    result: list[list[tuple[str, str]]] = [[]]
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"use the exec (JSON) form: {arguments}"
    return value


def test_dockerfile_is_multi_stage_from_python_slim() -> None:
    global_args = dict(a.partition("=")[::2] for kw, a in stages()[0] if kw == "ARG" and "=" in a)
    froms = [args for kw, args in dockerfile_instructions() if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage: a builder and a runtime stage"
    for args in froms:
        image = shlex.split(args)[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim"), image
    final = stages()[-1]
    copied = [a for kw, a in final if kw == "COPY" and "--from=" in a]
    assert copied, "the final stage copies the built environment from an earlier stage"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for kw, args in stages()[-1] if kw == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    # Numeric, so that Kubernetes can verify runAsNonRoot without a runAsUser.
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}"


def test_dockerfile_entrypoint_and_default_command() -> None:
    final = dict(stages()[-1])
    assert exec_form(final["ENTRYPOINT"]) == ["kb-ingest"]
    assert exec_form(final["CMD"]) == ["run", "api"]
    exposed = set(final["EXPOSE"].split())
    assert {"8080", "8081"} <= exposed
    env = final["ENV"]
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    entries = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", ".cache", ".pytest_cache", ".mypy_cache"} <= entries


# -- compose -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_all(COMPOSE)
    assert isinstance(doc, dict)
    return doc


def test_compose_runs_kafka_postgres_migrate_and_every_role(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "migrate", *ROLES} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    for role in ROLES:
        assert services[role]["command"] == ["run", role]
    for name in ("migrate", *ROLES):
        service = services[name]
        assert service["image"] == IMAGE
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        assert duration_s(service.get("stop_grace_period", "10s")) > SHUTDOWN_GRACE_DEFAULT


def test_compose_starts_roles_after_healthy_backends_and_the_migration(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for backend in ("kafka", "postgres"):
        assert services[backend].get("healthcheck", {}).get("test"), f"{backend}: healthcheck"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for role in ROLES:
        depends = services[role]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", role
        assert depends["postgres"]["condition"] == "service_healthy", role
        assert depends["migrate"]["condition"] == "service_completed_successfully", role
        check = " ".join(services[role]["healthcheck"]["test"])
        port = 8080 if role == "api" else 8081
        assert f":{port}/readyz" in check, role


def test_compose_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].split(":")[0] in ("apache/kafka", "bitnami/kafka")
    env = kafka["environment"]
    roles = env.get("KAFKA_PROCESS_ROLES", env.get("KAFKA_CFG_PROCESS_ROLES", ""))
    assert set(roles.split(",")) == {"broker", "controller"}


def test_compose_environment_is_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("migrate", *ROLES):
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        unknown = sorted(k for k in env if not known_setting(k))
        assert not unknown, f"{name}: not a kb-ingest setting: {unknown}"
        settings = settings_from(env, monkeypatch)
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.database_url.get_secret_value().startswith("postgresql://")
