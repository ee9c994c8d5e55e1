#!/usr/bin/env bash
# CI only. End-to-end check of compose.yaml, with compose.ci.yaml swapping Jaeger
# for the project's OTLP receiver (no image can be pulled here):
#   1. base images (docker/ci/base-images.sh)     2. build all images (one compile)
#   3. up -d, wait until every container is healthy (bounded)
#   4. curl through the gateway's published port: /target/index and /proxy/proxy?url=...
#   5. target v2 received the mirrored copy (its log shows our request id)
#   6. the receiver got spans with traffic.shadow=true
# Prints one PASS/FAIL line per check, the containers' logs on failure, and
# always tears the project down (`down -v`). Exit status: non-zero on any failure.
#
# Env: COMPOSE_TEST_PROJECT (default mirror-ci-<pid>), HEALTH_TIMEOUT (180 s),
#      SPAN_TIMEOUT (60 s), KEEP_UP=1 (leave the stack running, for debugging).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PROJECT=${COMPOSE_TEST_PROJECT:-mirror-ci-$$}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-180}
SPAN_TIMEOUT=${SPAN_TIMEOUT:-60}
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/compose-test.XXXXXX")

if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    COMPOSE=(docker compose)
fi
DC=("${COMPOSE[@]}" -p "$PROJECT" -f compose.yaml -f compose.ci.yaml)
# Without the buildx plugin the docker CLI can only use the legacy builder.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
fi

# Free host ports, so the test never collides with anything on the machine.
read -r GATEWAY_PORT GATEWAY_ADMIN_PORT JAEGER_UI_PORT OTLP_GRPC_PORT OTLP_HTTP_PORT < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
export GATEWAY_PORT GATEWAY_ADMIN_PORT JAEGER_UI_PORT OTLP_GRPC_PORT OTLP_HTTP_PORT

PASSED=0
FAILED=0
T0=$(date +%s)
say() { printf '[compose-test] %s\n' "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-28s %s\n' "$1" "${2:-}"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-28s %s\n' "$1" "${2:-}"; }
since() { echo "$(( $(date +%s) - $1 ))s"; }

finish() {
    local rc=$?
    if ((FAILED > 0 || rc != 0)); then
        say "failure: container states and logs follow"
        "${DC[@]}" ps 2>&1 || true
        "${DC[@]}" logs --no-color --tail=150 2>&1 | tee "$LOGDIR/containers.log" || true
    fi
    if [[ "${KEEP_UP:-0}" == 1 ]]; then
        say "KEEP_UP=1: leaving project $PROJECT up (gateway on localhost:$GATEWAY_PORT)"
    else
        "${DC[@]}" down -v --remove-orphans >"$LOGDIR/down.log" 2>&1 || cat "$LOGDIR/down.log" >&2
    fi
    # Keep the logs for CI's artifacts (.artifacts/ is git-ignored).
    if [[ -n "${COMPOSE_TEST_ARTIFACTS-x}" ]]; then  # set it empty to keep nothing
        local dest=${COMPOSE_TEST_ARTIFACTS:-$REPO/.artifacts/compose-test}
        mkdir -p "$dest" && cp "$LOGDIR"/*.log "$dest"/ 2>/dev/null || true
    fi
    rm -rf "$LOGDIR"
    echo "compose-test: total $(since "$T0")"
    echo "compose-test: $PASSED passed, $FAILED failed"
    if ((FAILED > 0)); then exit 1; fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

abort() { fail "$1" "$2"; exit 1; }

# --- 1. base images ----------------------------------------------------------
t=$(date +%s)
if bash docker/ci/base-images.sh >"$LOGDIR/base.log" 2>&1; then
    pass base-images "$(since "$t")"
else
    cat "$LOGDIR/base.log" >&2; abort base-images "see above"
fi

# --- 2. build ------------------------------------------------------------------
# Sequential on purpose: the first image compiles the workspace in the shared
# builder stage, the others reuse its cached layers.
t=$(date +%s)
if "${DC[@]}" build >"$LOGDIR/build.log" 2>&1; then
    # How much the layer cache saved: cargo runs only when a builder layer was rebuilt.
    pass build "$(since "$t") (cargo runs: $(grep -a -o 'Finished `release`' "$LOGDIR/build.log" | wc -l))"
else
    tail -80 "$LOGDIR/build.log" >&2; abort build "see above"
fi

# --- 3. up + health ----------------------------------------------------------
t=$(date +%s)
if ! timeout "$HEALTH_TIMEOUT" "${DC[@]}" up -d >"$LOGDIR/up.log" 2>&1; then
    cat "$LOGDIR/up.log" >&2; abort up "docker-compose up -d failed or took over ${HEALTH_TIMEOUT}s"
fi
deadline=$((t + HEALTH_TIMEOUT))
while :; do
    ids=$("${DC[@]}" ps -q)
    n=0; healthy=0; states=""
    for id in $ids; do
        n=$((n + 1))
        st=$(docker inspect -f '{{.Name}}={{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
        states+=" ${st#/}"
        [[ "$st" == *=healthy ]] && healthy=$((healthy + 1))
    done
    if ((n == 5 && healthy == n)); then
        pass healthy "$(since "$t") (5/5 containers)"
        break
    fi
    if (($(date +%s) >= deadline)); then
        abort healthy "after ${HEALTH_TIMEOUT}s:$states"
    fi
    sleep 2
done

# --- 4. the tutorial's two requests, through the gateway's published port -----
RID=compose-test-$(date +%s)-$RANDOM
expect_index() {  # name url
    local body="" i
    for i in 1 2 3 4 5; do
        body=$(curl -sS --max-time 10 -H "x-request-id: $RID-$1" "$2" 2>&1) && [[ "$body" == index ]] && break
        sleep 1
    done
    if [[ "$body" == index ]]; then pass "$1" "$2 -> index"; else fail "$1" "$2 -> '${body:0:200}'"; fi
}
BASE=http://127.0.0.1:$GATEWAY_PORT
expect_index curl-target "$BASE/target/index?probe=$RID"
expect_index curl-proxy "$BASE/proxy/proxy?url=http://target:8090/index"

# --- 5. target v2 received the mirrored copy -----------------------------------
t=$(date +%s)
got=""
while (($(date +%s) < t + 30)); do
    # (to a file first: `logs | grep -q` under pipefail fails when grep stops early)
    "${DC[@]}" logs --no-color target-v2 >"$LOGDIR/v2.log" 2>&1
    if grep -q -- "$RID-curl-target" "$LOGDIR/v2.log"; then got=yes; break; fi
    sleep 1
done
if [[ -n "$got" ]]; then
    pass mirror-to-v2 "target-v2 logged request $RID-curl-target"
else
    fail mirror-to-v2 "no line with $RID in target-v2's log after 30s"
fi
# The primary still went to v1 only (the copy is extra, not a move).
"${DC[@]}" logs --no-color target >"$LOGDIR/v1.log" 2>&1
if grep -q -- "$RID-curl-target" "$LOGDIR/v1.log"; then
    pass primary-to-v1 "target (v1) logged request $RID-curl-target"
else
    fail primary-to-v1 "no line with $RID in target's log"
fi

# --- 6. spans with traffic.shadow=true at the receiver ---------------------------
# Reads GET /spans (JSON list of spans, see docs/CONTRACT.md); exit 0 once a
# shadow span is there, printing a one-line summary.
cat >"$LOGDIR/spans.py" <<'PYEOF'
import json, sys
spans = json.load(sys.stdin)
def shadow(s):
    return str((s.get("attributes") or {}).get("traffic.shadow")).lower() == "true"
def who(s):
    return f"{s.get('service_name')}/{s.get('service_version', '?')}"
copies = [s for s in spans if shadow(s)]
by_gateway = [s for s in copies if s.get("service_name") == "gateway"]
at_v2 = [s for s in copies if who(s) == "target/v2"]
# The copy belongs to the caller's trace, beside the primary request to v1.
primary_traces = {s["trace_id"] for s in spans if who(s) == "target/v1" and not shadow(s)}
same_trace = [s for s in at_v2 if s["trace_id"] in primary_traces]
if not (by_gateway and same_trace):
    sys.exit(1)
print(f"{len(copies)} of {len(spans)} spans; gateway {by_gateway[0].get('name')!r} + target v2 "
      f"{same_trace[0].get('name')!r} in the primary's trace {same_trace[0]['trace_id'][:8]}")
PYEOF
t=$(date +%s)
summary=""
while (($(date +%s) < t + SPAN_TIMEOUT)); do
    if summary=$(curl -sS --max-time 5 "http://127.0.0.1:$OTLP_HTTP_PORT/spans" \
                 | python3 "$LOGDIR/spans.py" "$RID" 2>"$LOGDIR/spans.err"); then
        break
    fi
    summary=""
    sleep 2
done
if [[ -n "$summary" ]]; then
    pass shadow-spans "$summary"
else
    fail shadow-spans "no traffic.shadow=true spans from both gateway and target v2 (in the primary's trace) after ${SPAN_TIMEOUT}s"
fi
