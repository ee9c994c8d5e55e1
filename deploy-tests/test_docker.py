"""docker/: hadolint, and the builder copies every workspace member."""
from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest

from conftest import DOCKERFILE, REPO, all_dockerfiles, require_tool, run


def test_there_is_a_dockerfile():
    assert DOCKERFILE in all_dockerfiles()


@pytest.mark.parametrize("dockerfile", all_dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint(dockerfile):
    hadolint = require_tool("hadolint")
    res = run([hadolint, "--no-color", str(dockerfile)], cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr


def test_build_context_keeps_every_workspace_member():
    # The builder does `COPY . .`: a member hidden by .dockerignore breaks the build.
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    patterns = [l.strip().rstrip("/") for l in (REPO / ".dockerignore").read_text().splitlines()
                if l.strip() and not l.startswith("#") and not l.startswith("!")]
    for m in members:
        for p in patterns:
            assert not fnmatch.fnmatch(m, p) and not fnmatch.fnmatch(f"{m}/Cargo.toml", p), \
                f".dockerignore pattern {p!r} hides workspace member {m}"
    for f in ("Cargo.toml", "Cargo.lock"):
        assert not any(fnmatch.fnmatch(f, p) for p in patterns), f

def test_one_builder_serves_every_image():
    text = DOCKERFILE.read_text()
    for stage in ("gateway", "proxy-svc", "target-svc", "otlp-receiver"):
        block = re.search(rf"(?ms)^FROM\s+\S+\s+AS\s+{stage}\s*$(.*?)(?=^FROM|\Z)", text)
        assert block, f"stage {stage} missing"
        assert "--from=builder" in block.group(1), f"stage {stage} does not copy from the builder"
        assert "cargo" not in block.group(1), f"stage {stage} compiles on its own"
        assert "HEALTHCHECK" in block.group(1) and "--health-check" in block.group(1), stage
    assert len(re.findall(r"(?m)^RUN .*cargo build", text)) + len(re.findall(r"(?m)^\s+cargo build", text)) >= 1


def test_dockerignore_keeps_target_and_git_out():
    lines = (REPO / ".dockerignore").read_text().split()
    assert "target/" in lines and ".git/" in lines
