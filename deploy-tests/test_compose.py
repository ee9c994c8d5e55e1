"""compose.yaml (+ compose.ci.yaml): parses, builds what k8s/ runs, routes like the tutorial."""
from __future__ import annotations

import os
import shutil

import pytest
import yaml

from conftest import (COMPOSE_FILES, EXTERNAL_IMAGES, REPO, check_config,
                      compose_services, dockerfile_stages, load_compose, run)

APP_SERVICES = {"gateway": "gateway", "proxy": "proxy", "target": "target", "target-v2": "target"}


def _compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is available (run docker/ci/install.sh)")


@pytest.mark.parametrize("files", [COMPOSE_FILES[:1], COMPOSE_FILES], ids=["compose", "compose+ci"])
def test_compose_config_is_valid(files):
    args = [a for f in files for a in ("-f", str(f))]
    res = run(_compose_cmd() + ["--project-directory", str(REPO)] + args + ["config", "-q"], cwd=REPO)
    assert res.returncode == 0, res.stderr


def test_compose_has_no_top_level_name():
    # docker-compose 1.29 rejects it; both tools accept the file without it.
    for f in COMPOSE_FILES:
        assert "name" not in yaml.safe_load(f.read_text()), f.name


def test_services_and_ports():
    svcs = compose_services(REPO / "compose.yaml")
    assert set(svcs) == {"jaeger", "gateway", "proxy", "target", "target-v2"}
    gw_ports = [str(p) for p in svcs["gateway"]["ports"]]
    assert any(p.endswith(":8080") for p in gw_ports) and any(p.endswith(":9901") for p in gw_ports)
    jaeger_ports = " ".join(str(p) for p in svcs["jaeger"]["ports"])
    for p in ("16686", "4317", "4318"):
        assert f":{p}" in jaeger_ports
    assert svcs["jaeger"]["image"] in EXTERNAL_IMAGES


def test_builds_use_dockerfile_stages_and_one_context():
    stages = dockerfile_stages()
    contexts = set()
    for name, svc in load_compose().items():
        if "build" not in svc:
            continue
        b = svc["build"]
        assert b["target"] in stages, f"{name}: build target {b['target']} is no stage of docker/Dockerfile"
        contexts.add((b["context"], b["dockerfile"]))
    # One context + Dockerfile for all: the builder stage is then shared (one compile).
    assert contexts == {(".", "docker/Dockerfile")}


def test_target_versions():
    svcs = compose_services(REPO / "compose.yaml")
    assert svcs["target"]["build"]["args"]["TARGET_VERSION"] == "v1"
    assert svcs["target-v2"]["build"]["args"]["TARGET_VERSION"] == "v2"
    assert svcs["target"]["image"] == "mirror-target:v1" and svcs["target-v2"]["image"] == "mirror-target:v2"


def test_images_are_unique_per_build():
    seen = {}
    for name, svc in load_compose().items():
        if "build" in svc:
            assert svc["image"] not in seen, f"{name} and {seen.get(svc['image'])} both build {svc['image']}"
            seen[svc["image"]] = name


def test_telemetry_env_and_health_ordering():
    svcs = compose_services(REPO / "compose.yaml")
    for name, otel_name in APP_SERVICES.items():
        env = svcs[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc", name
        assert env["OTEL_SERVICE_NAME"] == otel_name, name
    deps = svcs["gateway"]["depends_on"]
    for up in ("proxy", "target", "target-v2"):
        assert deps[up]["condition"] == "service_healthy"


def test_ci_override_swaps_jaeger_for_the_receiver():
    ci = compose_services(REPO / "compose.ci.yaml")
    assert set(ci) == {"jaeger"}
    assert ci["jaeger"]["build"]["target"] == "otlp-receiver"


def _gateway_config_file() -> str:
    gw = compose_services(REPO / "compose.yaml")["gateway"]
    target = gw["environment"]["GATEWAY_CONFIG"]
    for v in gw["volumes"]:
        host, cont = v.split(":")[:2]
        if cont == target:
            return host
    pytest.fail(f"GATEWAY_CONFIG {target} is not mounted from the repo")


def test_compose_gateway_config_passes_check_config():
    f = (REPO / _gateway_config_file()).resolve()
    assert f.is_file(), f
    res = check_config(f)
    assert res.returncode == 0, f"gateway --check-config rejected {f}:\n{res.stdout}\n{res.stderr}"


def test_compose_gateway_config_routes_like_the_tutorial():
    cfg = yaml.safe_load((REPO / _gateway_config_file()).read_text())
    assert cfg["services"]["proxy"] == {"v1": ["proxy:8090"]}
    assert cfg["services"]["target"] == {"v1": ["target:8090"], "v2": ["target-v2:8090"]}
    routes = {r["match"]["prefix"]: r for r in cfg["routes"]}
    assert (routes["/proxy/"]["to"], routes["/proxy/"]["rewrite"]) == ("proxy/v1", "/")
    assert (routes["/target/"]["to"], routes["/target/"]["rewrite"]) == ("target/v1", "/")
    assert [m["to"] for m in routes["/target/"]["mirrors"]] == ["target/v2"]
