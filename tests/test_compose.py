"""docker-compose.yaml, as `docker-compose config` resolves it (no Docker engine needed)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from colsum import settings as settings_module

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yaml"
INFRA = ("redis", "rabbitmq", "s3")
APPS = ("backend", "executor")
# What each app needs before it can start.
NEEDS = {"backend": ("redis", "rabbitmq"), "executor": ("redis", "rabbitmq", "s3")}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def compose_command() -> list[str] | None:
    """The docker-compose v1 binary, else the `docker compose` v2 plugin, else None."""
    if binary := shutil.which("docker-compose"):
        return [binary]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


def require_compose() -> list[str]:
    """The compose command; without one, fail under CI=true and skip elsewhere."""
    command = compose_command()
    if command is None:
        message = (
            "no docker-compose binary (nor `docker compose` plugin): "
            "install the Debian package docker-compose (apt-get install -y docker-compose)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return command


def compose_config(**overrides: str) -> dict:
    """The file as compose resolves it, with the file's own defaults rather than whatever
    the developer's shell exports, except for `overrides`."""
    command = require_compose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COMPOSE_", "LOG_"))}
    env.update(overrides)
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{' '.join(command)} config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config()


def volume_source(volume: str | dict) -> str:
    return volume["source"] if isinstance(volume, dict) else volume.split(":")[0]


def volume_target(volume: str | dict) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def read_only(volume: str | dict) -> bool:
    return bool(volume.get("read_only")) if isinstance(volume, dict) else volume.endswith(":ro")


def settings_env_names() -> set[str]:
    """Names of the variables `Settings.from_env` reads: the literal first arguments of its
    calls (text("REDIS_URL", ...), optional("AWS_ID"), number("PORT", ...), env.get(...))."""
    tree = ast.parse(inspect.getsource(settings_module))
    from_env = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "from_env"
    )
    names = set()
    for node in ast.walk(from_env):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and ENV_NAME.fullmatch(first.value)
            ):
                names.add(first.value)
    return names


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a mapping, whichever form the config printed."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def published_ports(service: dict) -> set[int]:
    published = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                published.add(int(port["published"]))
        else:
            # "HOST:CONTAINER", "IP:HOST:CONTAINER", optionally "/tcp"
            parts = str(port).split("/")[0].split(":")
            if len(parts) >= 2:
                published.add(int(parts[-2]))
    return published


def seconds(duration: str | int | float) -> float:
    """A compose duration ("40s", "1m30s", "1m", 40) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration):
        total += float(amount) * units[unit]
    return total


def test_settings_env_names_are_found() -> None:
    # Guards the other tests: if from_env changes shape, the scan must not silently find nothing.
    assert {"REDIS_URL", "AMQP_URL", "DATA_DIR", "HOST", "PORT", "STOP_GRACE"} <= (
        settings_env_names()
    )


def test_compose_is_installed() -> None:
    # Without it every test below is skipped (or, under CI=true, errors): say so once, plainly.
    assert require_compose()


def test_all_services_exist(config: dict) -> None:
    assert set(INFRA + APPS) <= set(config["services"])


@pytest.mark.parametrize("name", INFRA)
def test_infrastructure_has_a_healthcheck(config: dict, name: str) -> None:
    healthcheck = config["services"][name].get("healthcheck") or {}
    assert healthcheck.get("test"), f"{name} has no healthcheck"
    assert not healthcheck.get("disable")


@pytest.mark.parametrize("name", APPS)
def test_app_waits_for_healthy_infrastructure(config: dict, name: str) -> None:
    depends_on = config["services"][name].get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form"
    for dependency in NEEDS[name]:
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", (
            f"{name} does not wait for {dependency} to be healthy"
        )


def test_executor_can_be_scaled(config: dict) -> None:
    executor = config["services"]["executor"]
    assert "container_name" not in executor
    assert not executor.get("ports")


def test_backend_publishes_8000(config: dict) -> None:
    backend = config["services"]["backend"]
    assert 8000 in published_ports(backend)
    assert environment(backend).get("PORT") == "8000"
    assert environment(backend).get("HOST") == "0.0.0.0"


@pytest.mark.parametrize("name", APPS)
def test_app_environment_names_are_read_by_settings(config: dict, name: str) -> None:
    unknown = set(environment(config["services"][name])) - settings_env_names()
    assert not unknown, f"{name} sets variables colsum/settings.py never reads: {sorted(unknown)}"


def test_apps_share_the_same_redis_broker_and_data(config: dict) -> None:
    backend, executor = (environment(config["services"][name]) for name in APPS)
    for name in ("REDIS_URL", "AMQP_URL", "DATA_DIR"):
        assert backend.get(name), f"backend does not set {name}"
        assert backend.get(name) == executor.get(name), f"{name} differs"


def test_broker_credentials_match_rabbitmq_user(config: dict) -> None:
    rabbitmq = environment(config["services"]["rabbitmq"])
    for name in APPS:
        url = urlsplit(environment(config["services"][name])["AMQP_URL"])
        assert url.hostname == "rabbitmq"
        assert (url.username, url.password) == (
            rabbitmq["RABBITMQ_DEFAULT_USER"],
            rabbitmq["RABBITMQ_DEFAULT_PASS"],
        )


def test_every_dependency_waits_for_health_or_completion(config: dict) -> None:
    for name, service in config["services"].items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition.get("condition") in (
                "service_healthy",
                "service_completed_successfully",
            ), f"{name} starts without waiting for {dependency}"
            if condition["condition"] == "service_healthy":
                assert config["services"][dependency].get("healthcheck"), dependency


@pytest.mark.parametrize("name", APPS)
def test_apps_use_the_local_s3_store_by_default(config: dict, name: str) -> None:
    env = environment(config["services"][name])
    assert urlsplit(env["AWS_URL"]).hostname == "s3"
    assert env["AWS_ID"] and env["AWS_SECRET"] and env["AWS_REGION"]


def test_an_empty_aws_url_means_aws_itself_for_the_apps_only() -> None:
    # The seeding job must never create buckets in the user's real account.
    aws = compose_config(AWS_URL="", AWS_ID="AKIA-real", AWS_SECRET="real-secret")
    for name in APPS:
        assert environment(aws["services"][name])["AWS_URL"] == ""
        assert environment(aws["services"][name])["AWS_ID"] == "AKIA-real"
    seeding = environment(aws["services"]["s3-init"])
    assert urlsplit(seeding["AWS_URL"]).hostname == "s3"
    assert seeding["AWS_ID"] != "AKIA-real"


def test_s3_init_is_a_one_shot_job_that_seeds_sample_csv(config: dict) -> None:
    job = config["services"]["s3-init"]
    assert job.get("restart", "no") == "no"
    assert job["depends_on"]["s3"]["condition"] == "service_healthy"
    command = job["command"]
    script = next(part for part in command if part.endswith(".py"))
    mounts = {volume_target(v): volume_source(v) for v in job.get("volumes") or []}
    assert Path(mounts[script]) == ROOT / "deploy" / "seed_s3.py"
    assert command[-2:] == ["colsum", "/app/sample.csv"]


def test_executor_stop_grace_period_exceeds_stop_grace(config: dict) -> None:
    executor = config["services"]["executor"]
    stop_grace = float(
        environment(executor).get("STOP_GRACE") or settings_module.Settings().stop_grace
    )
    assert seconds(executor.get("stop_grace_period", "10s")) > stop_grace


def test_uploads_go_to_the_bucket_the_seeding_job_creates(config: dict) -> None:
    # The container's user cannot write to a bind mount owned by the host's user.
    backend = config["services"]["backend"]
    assert environment(backend)["UPLOAD_BUCKET"] == config["services"]["s3-init"]["command"][-2]
    assert all(read_only(volume) for volume in backend.get("volumes") or [])


def test_built_services_do_not_share_an_image_tag(config: dict) -> None:
    # Parallel builds of one tag fail with "image already exists".
    tags = [s["image"] for s in config["services"].values() if s.get("build") and "image" in s]
    assert len(tags) == len(set(tags))


@pytest.mark.parametrize("name", ["s3", "rabbitmq"])
def test_unauthenticated_or_admin_ports_listen_on_loopback_only(config: dict, name: str) -> None:
    for published in config["services"][name].get("ports") or []:
        if isinstance(published, dict):
            assert published.get("host_ip") == "127.0.0.1", published
        else:
            assert str(published).startswith("127.0.0.1:"), published


@pytest.mark.parametrize("name", APPS)
def test_webhooks_may_not_reach_the_compose_network_by_default(config: dict, name: str) -> None:
    env = environment(config["services"][name])
    assert env["WEBHOOK_ALLOW_PRIVATE"] == "false"
    assert env["WEBHOOK_ALLOWED_HOSTS"] == ""


def test_webhook_settings_pass_through_to_the_executor() -> None:
    passed = compose_config(
        WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_ALLOWED_HOSTS="receiver", WEBHOOK_SECRET="s3cret"
    )
    env = environment(passed["services"]["executor"])
    assert (env["WEBHOOK_ALLOW_PRIVATE"], env["WEBHOOK_ALLOWED_HOSTS"]) == ("true", "receiver")
    assert env["WEBHOOK_SECRET"] == "s3cret"
