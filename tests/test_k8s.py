"""deploy/k8s, checked offline: the manifests kustomize would build are valid Kubernetes
objects (kubernetes-validate's bundled schemas), and they agree with Colsum itself: its
settings, its health routes, its stop grace, the counts KEDA scales on."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from colsum.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
VERSION = "1.37.0"
CUSTOM = {"keda.sh/v1alpha1"}  # KEDA's CRDs: not in the bundled schemas, checked below


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def built() -> list[dict]:
    """What `kustomize build deploy/k8s` puts out, for what this kustomization uses."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects = [
        document
        for resource in kustomization["resources"]
        for document in yaml.safe_load_all((K8S / resource).read_text())
        if document
    ]
    for generator in kustomization["configMapGenerator"]:
        data = {}
        for env in generator.get("envs", []):
            data.update(env_file(K8S / env))
        for entry in generator.get("files", []):
            key, _, source = entry.partition("=")
            data[key] = (K8S / source).read_text()
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for generator in kustomization["secretGenerator"]:
        data = {}
        for env in generator["envs"]:
            data.update(env_file(K8S / env))
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "stringData": data,
            }
        )
    for item in objects:
        if item["kind"] != "Namespace":
            item["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def find(kind: str, name: str) -> dict:
    return next(o for o in built() if o["kind"] == kind and o["metadata"]["name"] == name)


def containers() -> list[dict]:
    return [
        container
        for item in built()
        if item["kind"] in ("Deployment", "StatefulSet")
        for container in item["spec"]["template"]["spec"]["containers"]
    ]


def settings_read() -> set[str]:
    """Every environment variable Settings.from_env reads."""
    source = (ROOT / "colsum" / "settings.py").read_text()
    return set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]+)"', source))


@pytest.mark.parametrize(
    "item", [o for o in built() if o["apiVersion"] not in CUSTOM], ids=lambda o: o["kind"]
)
def test_each_object_is_valid_for_kubernetes(item):
    kubernetes_validate.validate(item, VERSION, strict=True)


def test_the_settings_files_name_only_settings_colsum_reads():
    known = settings_read() | {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"}
    for name in ("settings.env", "secrets.env"):
        assert set(env_file(K8S / name)) <= known, name
    for container in containers():
        assert {e["name"] for e in container.get("env", [])} - {
            "RABBITMQ_DEFAULT_USER",
            "RABBITMQ_DEFAULT_PASS",
        } <= known


def test_executors_live_through_the_stop_grace_of_their_task():
    grace = float(env_file(K8S / "settings.env").get("STOP_GRACE", Settings().stop_grace))
    pod = find("Deployment", "executor")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= grace + 10


def test_the_backends_probes_are_its_health_routes():
    container = find("Deployment", "backend")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    spec = yaml.safe_load((ROOT / "swagger.yaml").read_text())
    assert {"/readyz", "/healthz"} <= set(spec["paths"])


def test_executor_threads_match_the_cpus_the_pod_may_use():
    container = find("Deployment", "executor")["spec"]["template"]["spec"]["containers"][0]
    threads = next(e["value"] for e in container["env"] if e["name"] == "EXECUTOR_THREADS")
    assert float(container["resources"]["limits"]["cpu"]) == float(threads)


def test_keda_scales_the_executors_on_the_active_count_the_admin_reads():
    scaled = find("ScaledObject", "executor")
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == find("Deployment", "executor")["metadata"]["name"]
    )
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "metrics-api"
    assert trigger["metadata"]["url"].endswith("/tasks/active")
    # The admin's GET /tasks/active holds every client's counts under "all".
    assert trigger["metadata"]["valueLocation"] == "all.active"
    assert "ADMIN_TOKEN" in env_file(K8S / "secrets.env")
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    reference = auth["spec"]["secretTargetRef"][0]
    assert (reference["name"], reference["key"]) == ("colsum-secrets", "ADMIN_TOKEN")


def test_every_secret_and_config_map_a_pod_names_is_built():
    names = {o["metadata"]["name"] for o in built() if o["kind"] in ("Secret", "ConfigMap")}
    for container in containers():
        for source in container.get("envFrom", []):
            reference = source.get("configMapRef") or source.get("secretRef")
            assert reference["name"] in names
        for variable in container.get("env", []):
            if "valueFrom" in variable:
                assert variable["valueFrom"]["secretKeyRef"]["name"] in names
